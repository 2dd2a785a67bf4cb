//! Access follows the provider without a logout: stale memberships are read again on userinfo
//! and on refresh; a person no longer admitted loses their tokens at once; an upstream outage
//! does not lock people out; concurrent callers share one upstream refresh.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;
use crate::upstream_oidc::{alice, FakeOidc, Twist};

const POLICY: &str = r#"
[access]
allowed_groups = ["uni:physics"]
recheck_after = "5m"
"#;

async fn setup() -> (TestApp, FakeOidc, Value) {
    let fake = FakeOidc::start().await;
    let toml = format!("{POLICY}{}", fake.connector_toml("uni", r#"groups_claim = "realm_access.roles""#));
    let app = TestApp::with_extra_toml(&toml).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, alice(), Twist::default());
    let res = browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let tokens = app.exchange(&res.query()["code"], &pkce).await.json();
    (app, fake, tokens)
}

fn without_physics() -> Value {
    let mut a = alice();
    a["realm_access"]["roles"] = json!(["hpc-users"]);
    a
}

#[tokio::test]
async fn groups_follow_the_provider_once_the_cached_ones_are_stale() {
    let (app, fake, tokens) = setup().await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut a = alice();
    a["realm_access"]["roles"] = json!(["physics", "gpu"]);
    fake.set_claims(a);

    app.clock.advance(60);
    let info = app.userinfo(access).await.json();
    assert_eq!(info["groups"], json!(["uni:physics", "uni:hpc-users"]), "within recheck_after the cached groups stand");
    assert_eq!(fake.refresh_grants(), 0);

    app.clock.advance(300);
    let info = app.userinfo(access).await.json();
    assert_eq!(info["groups"], json!(["uni:physics", "uni:gpu"]), "stale: read again at the provider");
    assert_eq!(fake.refresh_grants(), 1);
    let info = app.userinfo(access).await.json();
    assert_eq!(info["groups"], json!(["uni:physics", "uni:gpu"]));
    assert_eq!(fake.refresh_grants(), 1, "fresh again: no second upstream call");
}

#[tokio::test]
async fn someone_removed_from_the_allowed_group_loses_userinfo_and_refresh() {
    let (app, fake, tokens) = setup().await;
    fake.set_claims(without_physics());
    app.clock.advance(301);

    let res = app.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.error(), "invalid_token");
    // What OAuthenticator does next: the refresh grant. It is refused too, and stays refused.
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error(), "invalid_grant");

    let audit = app.store.audit_events(20).await.unwrap();
    let revoked = audit.iter().find(|e| e.kind == "access_revoked").expect("audited");
    assert_eq!(revoked.reason.as_deref(), Some("not_allowed"));
    assert_eq!(revoked.username.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_refresh_grant_after_the_staleness_window_applies_the_new_memberships() {
    let (app, fake, tokens) = setup().await;
    fake.set_claims(without_physics());
    app.clock.advance(301);
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(res.error(), "invalid_grant");
    // Everything the grant issued is gone, not only the refresh token.
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_ended_upstream_session_ends_access() {
    let (app, fake, tokens) = setup().await;
    fake.revoke_refresh_tokens();
    app.clock.advance(301);
    let res = app.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let audit = app.store.audit_events(20).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "access_revoked" && e.reason.as_deref() == Some("upstream_session_ended")));
}

#[tokio::test]
async fn an_upstream_outage_keeps_the_last_known_memberships() {
    let (app, fake, tokens) = setup().await;
    let access = tokens["access_token"].as_str().unwrap();
    fake.outage(Some(StatusCode::SERVICE_UNAVAILABLE));
    app.clock.advance(301);
    let res = app.userinfo(access).await;
    assert_eq!(res.status, StatusCode::OK, "not locked out by the provider's outage");
    assert_eq!(res.json()["groups"], json!(["uni:physics", "uni:hpc-users"]));
    // Recovered, and past the retry pause: the next stale request re-checks for real.
    fake.outage(None);
    fake.set_claims(without_physics());
    app.clock.advance(61);
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_upstream_refresh() {
    let (app, fake, tokens) = setup().await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    app.clock.advance(301);
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, access) = (app.clone(), access.clone());
        tasks.push(tokio::spawn(async move { app.userinfo(&access).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(fake.refresh_grants(), 1, "one refresh for twenty callers (the provider rotates refresh tokens)");
}

#[tokio::test]
async fn single_sign_on_is_not_granted_to_someone_no_longer_admitted() {
    let fake = FakeOidc::start().await;
    let toml = format!("{POLICY}{}", fake.connector_toml("uni", r#"groups_claim = "realm_access.roles""#));
    let app = TestApp::with_extra_toml(&toml).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, alice(), Twist::default());
    let res = browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);

    // Still admitted: the browser session signs in again without the provider.
    let res = browser.get(&AuthParams::hub(&pkce).uri()).await;
    assert!(res.query().contains_key("code"), "single sign-on while admitted");

    fake.set_claims(without_physics());
    app.clock.advance(301);
    let res = browser.get(&AuthParams::hub(&pkce).uri()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location().path(), "/login", "no code: a fresh sign-in is required");
}
