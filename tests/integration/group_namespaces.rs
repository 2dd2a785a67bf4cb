//! A group name from one source never grants what another source's group grants: each upstream
//! connector names its groups under its own prefix (`github:…`), so a free GitHub organisation
//! called `admins` or a second OIDC issuer's `staff` cannot pass for the operator's groups; and
//! `check-config` warns about rules a stranger could still satisfy.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fakes::github::{GithubFake, User, CLIENT_ID, CLIENT_SECRET};
use crate::fakes::{hub_code, round_trip};
use crate::harness::*;
use crate::upstream_oidc::{FakeOidc, Twist};

fn github_toml(fake: &GithubFake, extra: &str) -> String {
    format!(
        "[[connectors]]\ntype = \"github\"\nid = \"github\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         github_url = \"{}\"\napi_url = \"{}\"\n{extra}\n",
        fake.base,
        fake.api_url()
    )
}

async fn github_login(app: &TestApp, fake: &GithubFake, login: &str) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    round_trip(&mut browser, &AuthParams::hub(&pkce), "github", |url| fake.approve(url, login)).await
}

async fn userinfo_after(app: &TestApp, res: &TestResponse, pkce: &Pkce) -> Value {
    let tokens = app.exchange(&hub_code(res), pkce).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    app.userinfo(tokens.json()["access_token"].as_str().unwrap()).await.json()
}

/// Someone who made free GitHub organisations named after the demo's and the hub's admin groups.
fn mallory() -> User {
    User::new(666, "mallory").org("admins", "active", "admin").org("hub-admins", "active", "admin")
}

#[tokio::test]
async fn a_github_organisation_named_after_an_admin_group_gains_nothing() {
    let fake = GithubFake::start().await;
    fake.add_user(mallory());
    let access = "[access]\nallowed_groups = [\"admins\", \"students\"]\nadmin_groups = [\"admins\"]\nadmin_group = \"hub-admins\"\n";
    let app = TestApp::with_extra_toml(&format!("{access}{}", github_toml(&fake, ""))).await;
    let res = github_login(&app, &fake, "mallory").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "not admitted by another source's group: {}", res.text());
    assert!(res.text().contains("not_allowed"));

    // Admitted for another reason, the organisations are still only GitHub's names.
    let access = "[access]\nallow_all = true\nadmin_groups = [\"admins\"]\nadmin_group = \"hub-admins\"\n";
    let app = TestApp::with_extra_toml(&format!("{access}{}", github_toml(&fake, ""))).await;
    let pkce = Pkce::new();
    let res =
        round_trip(&mut app.browser(), &AuthParams::hub(&pkce), "github", |url| fake.approve(url, "mallory")).await;
    let info = userinfo_after(&app, &res, &pkce).await;
    assert_eq!(info["groups"], json!(["github:admins", "github:hub-admins"]), "{info}");
    // The demo's admin still is one: the dev connector's groups are the config's own.
    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let info = app.userinfo(ada["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["admins", "hub-admins"]));
}

#[tokio::test]
async fn the_operator_names_a_github_organisation_by_its_qualified_name() {
    let fake = GithubFake::start().await;
    fake.add_user(User::new(7, "octocat").org("carpentries", "active", "member"));
    fake.add_user(mallory());
    let app = TestApp::with_extra_toml(&format!(
        "[access]\nallowed_groups = [\"github:carpentries\"]\n{}",
        github_toml(&fake, "")
    ))
    .await;
    assert_eq!(github_login(&app, &fake, "octocat").await.status, StatusCode::SEE_OTHER);
    assert_eq!(github_login(&app, &fake, "mallory").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn two_oidc_issuers_sending_the_same_group_name_stay_apart() {
    let (one, two) = (FakeOidc::start().await, FakeOidc::start().await);
    let rule = "groups_claim = \"groups\"";
    let app = TestApp::with_extra_toml(&format!(
        "[access]\nallowed_groups = [\"one:staff\"]\n{}{}",
        one.connector_toml("one", rule),
        two.connector_toml("two", rule)
    ))
    .await;
    assert_eq!(oidc_login(&app, &one, "one", "s1").await.status, StatusCode::SEE_OTHER, "issuer one's staff");
    let res = oidc_login(&app, &two, "two", "s2").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "issuer two's \"staff\" is not issuer one's: {}", res.text());
}

async fn oidc_login(app: &TestApp, fake: &FakeOidc, id: &str, sub: &str) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), id).await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let claims = json!({"sub": sub, "preferred_username": sub, "groups": ["staff"]});
    let code = fake.approve(&up, claims, Twist::default());
    browser.upstream_callback(id, &[("code", &code), ("state", &state)]).await
}

/// `hubauth check-config` on `toml` (with the connectors' secrets); its stderr.
fn check_config(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hubauth.toml");
    std::fs::write(&path, format!("{}\n{toml}", config_toml(dir.path().join("h.db").to_str().unwrap()))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .env("HUBAUTH_CRYPT_KEY", TEST_CRYPT_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const GITHUB: &str = "[[connectors]]\ntype = \"github\"\nid = \"github\"\nclient_id = \"x\"\nclient_secret = \"y\"\n";

#[test]
fn check_config_warns_about_rules_a_stranger_could_satisfy() {
    // The default namespaces: the demo's admins group comes from the config only; nothing to say.
    let quiet = check_config(&format!(
        "[access]\nadmin_groups = [\"admins\"]\nallowed_groups = [\"github:carpentries\"]\n{GITHUB}"
    ));
    assert!(!quiet.contains("warning"), "{quiet}");

    // GitHub's names put in the shared namespace: a free organisation called `admins` is an admin.
    let loud = check_config(&format!("[access]\nadmin_groups = [\"admins\"]\n{GITHUB}group_prefix = \"\"\n"));
    assert!(
        loud.contains("access.admin_groups[0] = \"admins\" can be satisfied by someone you do not control")
            && loud.contains("GitHub organisations are free to create"),
        "{loud}"
    );
    assert!(loud.contains("can come from connector dev") && loud.contains("and from connector github"), "{loud}");

    // The same for an unprefixed OIDC issuer.
    let oidc = "[[connectors]]\ntype = \"oidc\"\nid = \"kc\"\nissuer = \"https://kc.example.org/realms/x\"\nclient_id = \"x\"\nclient_secret = \"y\"\ngroup_prefix = \"\"\n";
    let kc = check_config(&format!("[access]\nallowed_groups = [\"staff\"]\n{oidc}"));
    assert!(kc.contains("\"staff\" can be satisfied") && kc.contains("the provider, which sends"), "{kc}");
}

#[test]
fn check_config_points_old_unqualified_names_at_the_connectors_namespace() {
    let out = check_config(&format!("[access]\nallowed_groups = [\"carpentries\"]\n{GITHUB}"));
    assert!(out.contains("no connector, static group or account produces this group"), "{out}");
    assert!(out.contains("did you mean \"github:carpentries\""), "{out}");
}

#[test]
fn a_group_prefix_without_a_separator_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{}\n{GITHUB}group_prefix = \"gh\"\n", config_toml("h.db"));
    let err = hubauth::config::Config::parse(&toml, &dir.path().join("h.toml")).unwrap_err().to_string();
    assert!(err.contains("connectors[1].group_prefix") && err.contains("separator"), "{err}");
}
