//! The `github` connector through the whole hubauth login, against the fake GitHub in
//! `fakes/github.rs`: paginated organization and team memberships, pending memberships and
//! pending team invitations (read with the organization credential), the refusals, rate limits,
//! failures and slowness that must end a login with a clear page rather than fewer groups, GitHub
//! Enterprise Server's API location, and refresh.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hubauth::clock::Clock;
use hubauth::connectors::{
    ConnectorError, ConnectorKind, Membership, MembershipState, RedirectConnector, UpstreamTokens,
};
use hubauth::web::upstream::token_context;
use serde_json::Value;

use crate::fakes::github::{GithubFake, Invitation, User, CLIENT_ID, CLIENT_SECRET};
use crate::fakes::{hub_code, page_text, round_trip, Fault};
use crate::harness::*;

const ORG_CREDENTIAL: &str = "ghs_org-installation-token-0123456789";

fn connector_toml(fake: &GithubFake, extra: &str) -> String {
    format!(
        r#"
[[connectors]]
type = "github"
id = "github"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
github_url = "{}"
api_url = "{}"
{extra}
"#,
        fake.base,
        fake.api_url()
    )
}

pub async fn app_for(fake: &GithubFake, extra: &str) -> TestApp {
    TestApp::with_extra_toml(&connector_toml(fake, extra)).await
}

/// hubauth → GitHub (where `login` approves) → hubauth's callback; hubauth's answer.
pub async fn login(app: &TestApp, fake: &GithubFake, login: &str) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    round_trip(&mut browser, &AuthParams::hub(&pkce), "github", |url| fake.approve(url, login)).await
}

/// A whole login and the hub's code exchange; returns the userinfo claims.
async fn login_and_userinfo(app: &TestApp, fake: &GithubFake, login: &str) -> Value {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let res = round_trip(&mut browser, &AuthParams::hub(&pkce), "github", |url| fake.approve(url, login)).await;
    let code = hub_code(&res);
    let tokens = app.exchange(&code, &pkce).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let info = app.userinfo(tokens.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text());
    info.json()
}

async fn stored_memberships(app: &TestApp, subject: &str) -> Vec<Membership> {
    let stored = app.store.upstream_of("github", subject).await.unwrap().expect("the identity is stored");
    serde_json::from_str(&stored.memberships_json).unwrap()
}

async fn stored_tokens(app: &TestApp, subject: &str) -> (String, UpstreamTokens) {
    let stored = app.store.upstream_of("github", subject).await.unwrap().expect("the identity is stored");
    let sealed = stored.tokens_sealed.expect("tokens are kept");
    let plain = test_sealer().open(&token_context("github", subject), &sealed).expect("sealed for this identity");
    (sealed, UpstreamTokens::from_payload(&plain).expect("a token payload"))
}

fn connector(app: &TestApp) -> std::sync::Arc<dyn RedirectConnector> {
    match &app.state.connectors.get("github").expect("configured").kind {
        ConnectorKind::Redirect(c) => c.clone(),
        ConnectorKind::Password(_) => panic!("github is a redirect connector"),
    }
}

/// The `groups` claim, each name checked to be in the connector's namespace and shown without it.
fn groups(info: &Value) -> Vec<String> {
    let names = info["groups"].as_array().expect("a groups claim").iter().map(|g| g.as_str().unwrap());
    names.map(|g| g.strip_prefix("github:").unwrap_or_else(|| panic!("{g:?} lacks github:")).to_string()).collect()
}

pub fn octocat() -> User {
    User::new(1001, "octocat").name("Mona Lisa Octocat").email("mona@old.example", false, true).email(
        "mona@example.org",
        true,
        true,
    )
}

#[tokio::test]
async fn github_login_reads_every_page_of_organizations_and_teams() {
    let fake = GithubFake::start().await;
    let mut user = octocat();
    for i in 0..120 {
        user = user.org(&format!("org-{i:03}"), "active", if i == 0 { "admin" } else { "member" });
    }
    for i in 0..150 {
        user = user.team(&format!("org-{:03}", i % 120), &format!("team-{i:03}"), &format!("Team {i}"));
    }
    fake.add_user(user);
    let app = app_for(&fake, "").await;

    // The authorization request GitHub gets.
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let upstream = browser.start_upstream(&AuthParams::hub(&pkce), "github").await;
    let q: std::collections::HashMap<String, String> = upstream.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "read:user user:email read:org");
    assert_eq!(q["redirect_uri"], format!("{ISSUER}/callback/github"));
    assert_eq!(q["code_challenge_method"], "S256");
    let code = fake.approve(&upstream, "octocat");
    let res = browser.upstream_callback("github", &[("code", &code), ("state", &q["state"])]).await;
    let hub = hub_code(&res);
    let tokens = app.exchange(&hub, &pkce).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let info = app.userinfo(tokens.json()["access_token"].as_str().unwrap()).await.json();

    assert_eq!(info["preferred_username"], "octocat");
    assert_eq!(info["name"], "Mona Lisa Octocat");
    assert_eq!(info["email"], "mona@example.org", "the primary address, not the first listed");
    assert_eq!(info["email_verified"], true);
    let groups = groups(&info);
    assert_eq!(groups.len(), 120 + 150, "{groups:?}");
    assert!(groups.contains(&"org-119".to_string()), "an organization from page 2");
    assert!(groups.contains(&"org-029:team-149".to_string()), "a team from page 2");

    let memberships = stored_memberships(&app, "1001").await;
    let orgs: Vec<_> = memberships.iter().filter(|m| matches!(m, Membership::GithubOrg { .. })).collect();
    let teams: Vec<_> = memberships.iter().filter(|m| matches!(m, Membership::GithubTeam { .. })).collect();
    assert_eq!((orgs.len(), teams.len()), (120, 150));
    assert!(memberships.contains(&Membership::GithubOrg {
        org: "org-000".into(),
        state: MembershipState::Active,
        role: "admin".into()
    }));
    assert!(memberships.contains(&Membership::GithubTeam {
        org: "org-029".into(),
        team: "team-149".into(),
        name: "Team 149".into(),
        state: MembershipState::Active
    }));

    // Requests: one token exchange, then /user, /user/emails and two pages of each list.
    let token_requests: Vec<_> =
        fake.requests().into_iter().filter(|r| r.path == "/login/oauth/access_token").collect();
    assert_eq!(token_requests.len(), 1);
    let t = &token_requests[0];
    assert_eq!(t.method, "POST");
    assert_eq!(t.field("client_secret"), Some(CLIENT_SECRET), "client_secret in the body");
    assert_eq!(t.field("redirect_uri"), Some(format!("{ISSUER}/callback/github").as_str()));
    assert!(t.field("code_verifier").is_some(), "PKCE");
    assert!(
        t.header_values("accept").iter().any(|a| a.contains("application/json")),
        "GitHub answers JSON only when asked"
    );
    for path in ["/user/memberships/orgs", "/user/teams"] {
        let seen = fake.api_requests(path);
        assert_eq!(seen.len(), 2, "{path}: both pages, once each");
        assert!(seen.iter().all(|r| r.param("per_page") == Some("100")), "{path}: per_page=100 on every page");
        assert_eq!(seen[1].param("page"), Some("2"), "{path}: the next link was followed");
    }
    assert_eq!(fake.api_requests("/user").len(), 1);
    assert_eq!(fake.api_requests("/user/emails")[0].param("per_page"), Some("100"));
    let api: Vec<_> = fake.requests().into_iter().filter(|r| r.path != "/login/oauth/access_token").collect();
    assert_eq!(api.len(), 6, "no request beyond what the login needs");
    for r in &api {
        assert_eq!(r.header_values("accept"), vec!["application/vnd.github+json"], "{}: one Accept, GitHub's", r.path);
        assert_eq!(r.header_values("x-github-api-version"), vec!["2022-11-28"]);
        assert!(r.header_values("authorization")[0].starts_with("Bearer gho_"));
    }

    // The upstream token is kept, sealed.
    let issued = fake.access_tokens();
    assert_eq!(issued.len(), 1);
    let (sealed, kept) = stored_tokens(&app, "1001").await;
    assert!(!sealed.contains(&issued[0]), "the stored value does not show the token");
    assert_eq!(kept.access_token.expose(), issued[0]);
    assert!(kept.refresh_token.is_none() && kept.expires_at.is_none(), "OAuth-app tokens neither expire nor refresh");
}

#[tokio::test]
async fn github_user_without_organizations_logs_in_with_no_groups() {
    let fake = GithubFake::start().await;
    fake.add_user(User::new(2002, "loner").email("loner@example.org", true, true));
    let app = app_for(&fake, "").await;
    fake.preapprove("code-for-loner", "loner");
    let pkce = Pkce::new();
    let code = app.browser().upstream_login_for_code(&AuthParams::hub(&pkce), "github", "code-for-loner").await;
    let tokens = app.exchange(&code, &pkce).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let info = app.userinfo(tokens.json()["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["preferred_username"], "loner");
    assert!(groups(&info).is_empty());
    assert!(stored_memberships(&app, "2002").await.is_empty());
    assert_eq!(fake.api_requests("/user/teams").len(), 1, "an empty list is one page");
}

#[tokio::test]
async fn github_pending_organization_membership_is_kept_as_pending() {
    let fake = GithubFake::start().await;
    fake.add_user(
        octocat().org("acme", "pending", "member").org("beta", "active", "member").team("beta", "core", "Core"),
    );
    let app = app_for(&fake, "").await;
    let info = login_and_userinfo(&app, &fake, "octocat").await;
    assert_eq!(groups(&info), vec!["beta", "beta:core"], "a pending membership is no group (yet)");
    let memberships = stored_memberships(&app, "1001").await;
    assert!(memberships.contains(&Membership::GithubOrg {
        org: "acme".into(),
        state: MembershipState::Pending,
        role: "member".into()
    }));
    assert!(
        fake.api_requests("/user/memberships/orgs").iter().all(|r| r.param("state").is_none()),
        "no state filter: active and pending are both listed"
    );
}

#[tokio::test]
async fn github_pending_team_invitations_are_found_with_the_organization_credential() {
    let fake = GithubFake::start().await;
    // Invited to acme (GitHub shows the person a pending membership, but not the teams); invited
    // by e-mail address to beta, which the person's token does not show at all; active in gamma.
    fake.add_user(octocat().org("acme", "pending", "member").org("gamma", "active", "member"));
    fake.add_invitation(Invitation {
        id: 77,
        org: "acme".into(),
        login: Some("OctoCat".into()),
        email: None,
        role: "direct_member".into(),
        teams: vec![("data-science".into(), "Data Science".into()), ("ta".into(), "Teaching assistants".into())],
    });
    fake.add_invitation(Invitation {
        id: 78,
        org: "acme".into(),
        login: Some("someone-else".into()),
        email: None,
        role: "direct_member".into(),
        teams: vec![("admins".into(), "Admins".into())],
    });
    fake.add_invitation(Invitation {
        id: 91,
        org: "beta".into(),
        login: None,
        email: Some("MONA@example.org".into()),
        role: "admin".into(),
        teams: vec![("staff".into(), "Staff".into())],
    });
    fake.add_invitation(Invitation {
        id: 92,
        org: "beta".into(),
        login: None,
        email: Some("unverified@example.org".into()),
        role: "direct_member".into(),
        teams: vec![("wrong".into(), "Wrong".into())],
    });
    fake.add_org_credential(ORG_CREDENTIAL, &["acme", "beta", "gamma"]);
    let app = app_for(
        &fake,
        &format!(
            r#"organization_credential = "{ORG_CREDENTIAL}"
organizations = ["acme", "beta", "gamma"]"#
        ),
    )
    .await;
    let info = login_and_userinfo(&app, &fake, "octocat").await;
    assert_eq!(groups(&info), vec!["gamma"], "pending memberships give no groups");

    let memberships = stored_memberships(&app, "1001").await;
    let pending_team = |org: &str, team: &str, name: &str| Membership::GithubTeam {
        org: org.into(),
        team: team.into(),
        name: name.into(),
        state: MembershipState::Pending,
    };
    assert!(memberships.contains(&pending_team("acme", "data-science", "Data Science")), "{memberships:?}");
    assert!(memberships.contains(&pending_team("acme", "ta", "Teaching assistants")));
    assert!(memberships.contains(&pending_team("beta", "staff", "Staff")), "matched by a verified address");
    assert!(!memberships
        .iter()
        .any(|m| matches!(m, Membership::GithubTeam { team, .. } if team == "admins" || team == "wrong")));
    assert!(memberships.contains(&Membership::GithubOrg {
        org: "beta".into(),
        state: MembershipState::Pending,
        role: "admin".into()
    }));
    let acme: Vec<_> =
        memberships.iter().filter(|m| matches!(m, Membership::GithubOrg { org, .. } if org == "acme")).collect();
    assert_eq!(acme.len(), 1, "the pending acme membership is listed once");

    let invitation_requests: Vec<_> = fake.requests().into_iter().filter(|r| r.path.starts_with("/orgs/")).collect();
    // Organizations are looked up concurrently: compare without order.
    let mut paths: Vec<&str> = invitation_requests.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "/orgs/acme/invitations",
            "/orgs/acme/invitations/77/teams",
            "/orgs/beta/invitations",
            "/orgs/beta/invitations/91/teams"
        ],
        "no lookup for gamma, where the person is already a member"
    );
    for r in &invitation_requests {
        assert_eq!(r.header_values("authorization"), vec![format!("Bearer {ORG_CREDENTIAL}")]);
        assert_eq!(r.param("per_page"), Some("100"));
    }
}

#[tokio::test]
async fn github_refused_organization_credential_fails_the_login_clearly() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat().org("acme", "pending", "member"));
    fake.add_org_credential(ORG_CREDENTIAL, &["acme"]);
    let app = app_for(
        &fake,
        r#"organization_credential = "ghs_expired-or-wrong"
organizations = ["acme"]"#,
    )
    .await;
    let res = login(&app, &fake, "octocat").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    let page = page_text(&res);
    assert!(page.contains("GitHub"), "{page}");
    assert!(page.contains("organization credential for acme"), "{page}");
    assert!(page.contains("401"), "{page}");
    assert!(app.store.user_by_username("octocat").await.unwrap().is_none(), "no half-read login is recorded");

    // A credential that is valid but may not read this organization's invitations: the same.
    let fake = GithubFake::start().await;
    fake.add_user(octocat());
    fake.add_org_credential(ORG_CREDENTIAL, &["other-org"]);
    let app =
        app_for(&fake, &format!("organization_credential = \"{ORG_CREDENTIAL}\"\norganizations = [\"acme\"]")).await;
    let res = login(&app, &fake, "octocat").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert!(page_text(&res).contains("organization credential for acme (403"), "{}", res.text());
}

#[tokio::test]
async fn github_rate_limit_shows_a_busy_page_and_issues_no_code() {
    let fake = GithubFake::start().await;
    let mut user = octocat();
    for i in 0..130 {
        user = user.team("acme", &format!("t{i}"), &format!("T{i}"));
    }
    fake.add_user(user.org("acme", "active", "member"));
    fake.api_fault("/user/teams", Some("2"), Fault::GithubRateLimit { reset_in: 1800 }, None);
    let app = app_for(&fake, "").await;
    let started = Instant::now();
    let res = login(&app, &fake, "octocat").await;
    assert!(started.elapsed() < Duration::from_secs(2), "a long rate limit is not waited out");
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text());
    assert!(res.headers.get("location").is_none(), "no redirect (and so no code) to the hub");
    let page = page_text(&res);
    assert!(page.contains("GitHub is busy right now"), "{page}");
    assert!(page.contains("Try again in about 30 minute(s)"), "{page}");
    assert!(app.store.user_by_username("octocat").await.unwrap().is_none());
}

#[tokio::test]
async fn github_short_rate_limit_with_retry_after_is_waited_out() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat().org("acme", "active", "member"));
    fake.api_fault("/user/memberships/orgs", None, Fault::TooManyRequests { retry_after: 1 }, Some(1));
    let app = app_for(&fake, "").await;
    let started = Instant::now();
    let info = login_and_userinfo(&app, &fake, "octocat").await;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_eq!(groups(&info), vec!["acme"]);
    assert_eq!(fake.api_requests("/user/memberships/orgs").len(), 2, "asked again once");
}

#[tokio::test]
async fn github_server_error_on_teams_fails_the_login_and_creates_no_user() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat().org("acme", "active", "member"));
    fake.api_fault("/user/teams", None, Fault::Status(500, serde_json::json!({"message": "Server Error"})), None);
    let app = app_for(&fake, "").await;
    let res = login(&app, &fake, "octocat").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    let page = page_text(&res);
    assert!(page.contains("GitHub is not answering properly"), "{page}");
    assert!(page.contains("/user/teams"), "says which request failed: {page}");
    assert!(app.store.user_by_username("octocat").await.unwrap().is_none());
    assert!(app.store.upstream_of("github", "1001").await.unwrap().is_none());
}

#[tokio::test]
async fn github_that_does_not_answer_in_time_fails_the_login() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat());
    fake.api_fault("/user", None, Fault::Delay(Duration::from_secs(3)), None);
    let app = app_for(&fake, r#"timeout = "150ms""#).await;
    let started = Instant::now();
    let res = login(&app, &fake, "octocat").await;
    assert!(started.elapsed() < Duration::from_secs(2), "the timeout applies: {:?}", started.elapsed());
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert!(page_text(&res).contains("did not answer in time"), "{}", res.text());
    assert!(app.store.user_by_username("octocat").await.unwrap().is_none());
}

#[tokio::test]
async fn github_enterprise_server_api_is_found_under_api_v3() {
    let fake = GithubFake::start_enterprise().await;
    fake.add_user(octocat().org("research", "active", "member").team("research", "hpc", "HPC"));
    // Only github_url: the API location is derived from it.
    let toml = format!(
        r#"
[[connectors]]
type = "github"
id = "github"
name = "GitHub Enterprise"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
github_url = "{}"
"#,
        fake.base
    );
    let app = TestApp::with_extra_toml(&toml).await;
    let info = login_and_userinfo(&app, &fake, "octocat").await;
    assert_eq!(groups(&info), vec!["research", "research:hpc"]);
    let api: Vec<_> = fake.requests().into_iter().filter(|r| r.path != "/login/oauth/access_token").collect();
    assert_eq!(api.len(), 4);
    assert!(
        api.iter().all(|r| r.path.starts_with("/api/v3/")),
        "{:?}",
        api.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn github_access_denied_on_the_callback_is_a_403_naming_github() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat());
    let app = app_for(&fake, "").await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let upstream = browser.start_upstream(&AuthParams::hub(&pkce), "github").await;
    let state = crate::fakes::query_value(&upstream, "state").unwrap();
    let res = browser
        .upstream_callback(
            "github",
            &[
                ("error", "access_denied"),
                ("error_description", "The user has denied your application access."),
                (
                    "error_uri",
                    "https://docs.github.com/apps/troubleshooting-authorization-request-errors/#access-denied",
                ),
                ("state", &state),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    assert!(page_text(&res).contains("Sign-in with GitHub did not go through"), "{}", res.text());
    assert!(fake.requests().is_empty(), "nothing was asked of GitHub");
}

#[tokio::test]
async fn github_without_the_granted_read_org_scope_fails_rather_than_reading_fewer_groups() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat().org("acme", "active", "member"));
    fake.set_granted_scope("read:user,user:email");
    let app = app_for(&fake, "").await;
    let res = login(&app, &fake, "octocat").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert!(page_text(&res).contains("did not grant the read:org scope"), "{}", res.text());
}

#[tokio::test]
async fn github_refresh_rereads_memberships_and_a_revoked_token_ends_the_session() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat().org("acme", "active", "member"));
    let app = app_for(&fake, "").await;
    login_and_userinfo(&app, &fake, "octocat").await;
    let (_, tokens) = stored_tokens(&app, "1001").await;
    let github = connector(&app);

    // Added to a team since: a refresh (no refresh token: the same token, read again) sees it.
    fake.add_user(octocat().org("acme", "active", "member").team("acme", "new-team", "New team"));
    fake.clear_requests();
    let fresh = github.refresh(&tokens, "1001", app.clock.now()).await.expect("refreshed");
    assert_eq!(fresh.identity.groups, vec!["acme", "acme:new-team"]);
    assert_eq!(fresh.tokens.access_token.expose(), tokens.access_token.expose());
    assert!(fake.requests().iter().all(|r| r.path != "/login/oauth/access_token"), "nothing to refresh at GitHub");

    // Another account's subject: refused.
    let other = github.refresh(&tokens, "4242", app.clock.now()).await;
    assert!(matches!(other, Err(ConnectorError::Failed(_))), "{other:?}");

    // The person revoked the app: the session is over.
    fake.revoke_token(tokens.access_token.expose());
    let ended = github.refresh(&tokens, "1001", app.clock.now()).await;
    assert!(matches!(ended, Err(ConnectorError::SessionEnded(_))), "{ended:?}");
}

#[tokio::test]
async fn github_app_expiring_tokens_are_refreshed_and_a_bad_refresh_token_ends_the_session() {
    let fake = GithubFake::start().await;
    fake.set_expiring_tokens(true);
    fake.add_user(octocat().org("acme", "active", "member"));
    let app = app_for(&fake, "").await;
    login_and_userinfo(&app, &fake, "octocat").await;
    let (_, tokens) = stored_tokens(&app, "1001").await;
    let old_refresh = tokens.refresh_token.clone().expect("a refresh token");
    assert_eq!(tokens.expires_at, Some(START + 28800));
    let github = connector(&app);

    let fresh = github.refresh(&tokens, "1001", app.clock.now()).await.expect("refreshed");
    assert_ne!(fresh.tokens.access_token.expose(), tokens.access_token.expose());
    let new_refresh = fresh.tokens.refresh_token.clone().expect("GitHub rotates the refresh token");
    assert_ne!(new_refresh.expose(), old_refresh.expose());
    assert_eq!(fresh.identity.groups, vec!["acme"]);
    let refresh_request = fake.requests().into_iter().rfind(|r| r.path == "/login/oauth/access_token").unwrap();
    assert_eq!(refresh_request.field("grant_type"), Some("refresh_token"));
    assert_eq!(refresh_request.field("client_secret"), Some(CLIENT_SECRET));

    // The old refresh token was used up by the rotation.
    let ended = github.refresh(&tokens, "1001", app.clock.now()).await;
    assert!(matches!(ended, Err(ConnectorError::SessionEnded(_))), "{ended:?}");
}

#[tokio::test]
async fn github_independent_reads_are_made_at_the_same_time() {
    let fake = GithubFake::start().await;
    fake.add_user(octocat().org("acme", "active", "member").team("acme", "core", "Core"));
    // /user answers only once /user/teams has been asked too: a client that reads one list after
    // the other fails here.
    fake.api_fault(
        "/user",
        None,
        Fault::WaitFor { path: "/user/teams".into(), within: Duration::from_millis(800) },
        None,
    );
    fake.api_fault(
        "/user/emails",
        None,
        Fault::WaitFor { path: "/user/memberships/orgs".into(), within: Duration::from_millis(800) },
        None,
    );
    let app = app_for(&fake, "").await;
    let info = login_and_userinfo(&app, &fake, "octocat").await;
    assert_eq!(groups(&info), vec!["acme", "acme:core"]);
}
