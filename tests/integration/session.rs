//! The broker-side browser session: SSO, prompt=login, max_age, cookie attributes.

use axum::http::StatusCode;

use crate::harness::*;

#[tokio::test]
async fn session_cookie_is_httponly_lax_and_not_secure_on_loopback_http() {
    let app = TestApp::new().await;
    let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    let cookie = res
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("hubauth_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"));
}

#[tokio::test]
async fn session_cookie_is_secure_on_https_issuers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    let toml = config_toml(db.to_str().unwrap())
        .replace(&format!("issuer = \"{ISSUER}\""), "issuer = \"https://auth.example.org\"\nlisten = \"127.0.0.1:0\"");
    let app = TestApp::with_toml(dir, &toml).await;
    let res = app.get(&AuthParams::hub(&Pkce::new()).uri()).await;
    let cookie = res.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
}

#[tokio::test]
async fn second_authorization_is_single_sign_on() {
    let app = TestApp::new().await;
    let mut b = app.browser();
    b.login_for_code(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    // Another client, same browser: straight back with a code, no form.
    let es = AuthParams::hub(&Pkce::new()).set("client_id", "es").set("redirect_uri", ES_REDIRECT);
    let res = b.get(&es.uri()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let q = res.query();
    assert!(q.contains_key("code"));
    assert_eq!(q["iss"], ISSUER);
    // prompt=none works with a session.
    let res = b.get(&AuthParams::hub(&Pkce::new()).set("prompt", "none").uri()).await;
    assert!(res.query().contains_key("code"));
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_login() {
    let app = TestApp::new().await;
    let mut b = app.browser();
    b.login_for_code(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    let res = b.get(&AuthParams::hub(&Pkce::new()).set("prompt", "login").uri()).await;
    assert_eq!(res.location().path(), "/login");
    app.clock.advance(120);
    let res = b.get(&AuthParams::hub(&Pkce::new()).set("max_age", "60").uri()).await;
    assert_eq!(res.location().path(), "/login");
    let res = b.get(&AuthParams::hub(&Pkce::new()).set("max_age", "600").uri()).await;
    assert!(res.query().contains_key("code"));
}

#[tokio::test]
async fn auth_time_in_the_id_token_is_the_original_login() {
    let app = TestApp::new().await;
    let mut b = app.browser();
    b.login_for_code(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    app.clock.advance(100);
    let pkce = Pkce::new();
    let res = b.get(&AuthParams::hub(&pkce).uri()).await;
    let code = res.query()["code"].clone();
    let tok = app.exchange(&code, &pkce).await.json();
    let claims = verify_jwt(&app, tok["id_token"].as_str().unwrap(), "hub").await;
    assert_eq!(claims["auth_time"], START);
    assert_eq!(claims["iat"], START + 100);
}

#[tokio::test]
async fn expired_session_means_login_again() {
    let app = TestApp::new().await;
    let mut b = app.browser();
    b.login_for_code(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    app.clock.advance(13 * 3600);
    let res = b.get(&AuthParams::hub(&Pkce::new()).uri()).await;
    assert_eq!(res.location().path(), "/login");
}
