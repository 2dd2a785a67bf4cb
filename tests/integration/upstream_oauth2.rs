//! The generic `oauth2` connector: the seed-004 Keycloak configuration (OAuthenticator's
//! `GenericOAuthenticator` keys) works one to one against a provider's token and userinfo
//! endpoints, without discovery or ID tokens.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;
use crate::upstream_oidc::{alice, FakeOidc, Twist, UPSTREAM_SECRET};

/// The seed's `jupyterhub_config.py`, key for key (username_key is OAuthenticator's older name).
fn seed_004_toml(fake: &FakeOidc, extra: &str) -> String {
    let base = &fake.issuer;
    format!(
        r#"
[[connectors]]
type = "oauth2"
id = "keycloak"
name = "JIVE Keycloak"
client_id = "hubauth"
client_secret = "{UPSTREAM_SECRET}"
username_key = "preferred_username"
authorize_url = "{base}/auth/realms/JIVEHUB/protocol/openid-connect/auth"
token_url = "{base}/token"
userdata_url = "{base}/userinfo"
{extra}
"#
    )
}

async fn login(app: &TestApp, fake: &FakeOidc) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "keycloak").await;
    assert!(up.path().ends_with("/protocol/openid-connect/auth"), "{up}");
    assert!(up.query_pairs().all(|(k, _)| k != "nonce"), "plain OAuth2: no nonce");
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, alice(), Twist::default());
    browser.upstream_callback("keycloak", &[("code", &code), ("state", &state)]).await
}

#[tokio::test]
async fn the_seed_keycloak_config_logs_in_with_the_userdata_username() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&seed_004_toml(&fake, r#"groups_claim = "realm_access.roles""#)).await;
    let res = login(&app, &fake).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let user = app.store.user_by_username("alice").await.unwrap().expect("user from userdata");
    assert_eq!(user.groups, vec!["keycloak:physics", "keycloak:hpc-users"]);
    let (form, basic) = fake.last_token_request();
    assert!(basic.is_some(), "HTTP Basic by default");
    assert!(form.contains_key("code_verifier"), "PKCE by default");
}

#[tokio::test]
async fn basic_auth_false_sends_the_secret_in_the_body_and_extra_params_reach_the_provider() {
    let fake = FakeOidc::start().await;
    let extra = r#"basic_auth = false
scope = ["openid", "profile"]
[connectors.extra_authorize_params]
kc_idp_hint = "escape-iam"
"#;
    let app = TestApp::with_extra_toml(&seed_004_toml(&fake, extra)).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "keycloak").await;
    let q: std::collections::HashMap<_, _> = up.query_pairs().into_owned().collect();
    assert_eq!(q["kc_idp_hint"], "escape-iam");
    assert_eq!(q["scope"], "openid profile");
    let code = fake.approve(&up, alice(), Twist::default());
    let res = browser.upstream_callback("keycloak", &[("code", &code), ("state", &q["state"])]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let (form, basic) = fake.last_token_request();
    assert!(basic.is_none());
    assert_eq!(form.get("client_secret").map(String::as_str), Some(UPSTREAM_SECRET));
}

#[tokio::test]
async fn a_userdata_answer_without_the_username_claim_is_a_clear_error() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&seed_004_toml(&fake, "").replace("preferred_username", "uid")).await;
    let res = login(&app, &fake).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert!(res.text().contains("no `uid` to use as the username"), "{}", res.text());
    let _ = json!(null);
}
