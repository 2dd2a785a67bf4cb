//! RFC 6749 §4.1.1-4.1.2.1, RFC 7636, RFC 9207, OIDC Core §3.1.2.

use axum::http::StatusCode;

use crate::harness::*;

#[tokio::test]
async fn unknown_client_gets_an_error_page_not_a_redirect() {
    let app = TestApp::new().await;
    let res = app.get(&AuthParams::hub(&Pkce::new()).set("client_id", "nope").uri()).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.headers.get("location").is_none());
    assert!(res.text().contains("not registered"));
}

#[tokio::test]
async fn redirect_uri_must_match_exactly() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    for bad in [
        "http://127.0.0.1:8000/hub/oauth_callback/",
        "http://127.0.0.1:8000/hub/oauth_callback?x=1",
        "http://127.0.0.1:8000/hub/OAUTH_callback",
        "http://127.0.0.1:8000/hub/oauth_callback#frag",
        "http://evil.example/hub/oauth_callback",
        "HTTP://127.0.0.1:8000/hub/oauth_callback",
    ] {
        let res = app.get(&AuthParams::hub(&pkce).set("redirect_uri", bad).uri()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.headers.get("location").is_none(), "{bad} must not be redirected to");
    }
    let missing = app.get(&AuthParams::hub(&pkce).without("redirect_uri").uri()).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.headers.get("location").is_none());
}

#[tokio::test]
async fn registered_redirect_uri_with_query_keeps_its_query() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let mut b = app.browser();
    let res = b
        .submit_login(&AuthParams::hub(&pkce).set("redirect_uri", "http://127.0.0.1:8000/other?x=1"), "ada", "ada-pw")
        .await;
    let q = res.query();
    assert_eq!(q["x"], "1");
    assert!(q.contains_key("code"));
}

async fn error_redirect(app: &TestApp, params: AuthParams) -> std::collections::HashMap<String, String> {
    let res = app.get(&params.uri()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let loc = res.location();
    assert_eq!(format!("{}://{}{}", loc.scheme(), loc.authority(), loc.path()), HUB_REDIRECT);
    res.query()
}

#[tokio::test]
async fn errors_after_a_valid_redirect_uri_are_redirected_with_state_and_iss() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let cases = [
        (AuthParams::hub(&pkce).set("response_type", "token"), "unsupported_response_type"),
        (AuthParams::hub(&pkce).set("response_type", "code id_token"), "unsupported_response_type"),
        (AuthParams::hub(&pkce).without("response_type"), "invalid_request"),
        (AuthParams::hub(&pkce).set("scope", "profile"), "invalid_scope"),
        (AuthParams::hub(&pkce).set("code_challenge_method", "plain"), "invalid_request"),
        (AuthParams::hub(&pkce).without("code_challenge_method"), "invalid_request"),
        (AuthParams::hub(&pkce).without("code_challenge"), "invalid_request"),
        (AuthParams::hub(&pkce).set("code_challenge", "short"), "invalid_request"),
        (AuthParams::hub(&pkce).set("prompt", "none login"), "invalid_request"),
        (AuthParams::hub(&pkce).set("prompt", "bogus"), "invalid_request"),
        (AuthParams::hub(&pkce).set("max_age", "-1"), "invalid_request"),
        (AuthParams::hub(&pkce).set("request", "eyJ..."), "request_not_supported"),
        (AuthParams::hub(&pkce).set("request_uri", "https://x"), "request_uri_not_supported"),
        (AuthParams::hub(&pkce).set("response_mode", "fragment"), "invalid_request"),
    ];
    for (params, expected) in cases {
        let q = error_redirect(&app, params).await;
        assert_eq!(q["error"], expected);
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], ISSUER);
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn public_clients_must_use_pkce() {
    let app = TestApp::new().await;
    let params = AuthParams::hub(&Pkce::new())
        .set("client_id", "pub")
        .set("redirect_uri", PUBLIC_REDIRECT)
        .without("code_challenge")
        .without("code_challenge_method");
    let res = app.get(&params.uri()).await;
    let q = res.query();
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PKCE"));
}

#[tokio::test]
async fn confidential_clients_may_skip_pkce() {
    let app = TestApp::new().await;
    let params = AuthParams::hub(&Pkce::new()).without("code_challenge").without("code_challenge_method");
    let code = app.browser().login_for_code(&params, "ada", "ada-pw").await;
    let res = app.token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", HUB_REDIRECT)]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn login_redirect_carries_code_state_and_iss() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let res = app.browser().submit_login(&AuthParams::hub(&pkce), "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let q = res.query();
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], ISSUER);
    assert!(q["code"].len() >= 43);
}

#[tokio::test]
async fn wrong_password_rerenders_the_form_with_401() {
    let app = TestApp::new().await;
    let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "ada", "wrong").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.text().contains("Wrong username or password"));
    let unknown = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "mallory", "x").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.text().contains("Wrong username or password"));
}

#[tokio::test]
async fn prompt_none_without_session_answers_login_required() {
    let app = TestApp::new().await;
    let q = error_redirect(&app, AuthParams::hub(&Pkce::new()).set("prompt", "none")).await;
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-123");
}

#[tokio::test]
async fn login_form_needs_the_browser_that_started_it() {
    let app = TestApp::new().await;
    let mut alice = app.browser();
    let (action, request, csrf) = alice.open_login_form(&AuthParams::hub(&Pkce::new())).await;
    // Same form values from a browser without the binding cookie (login CSRF).
    let mut other = app.browser();
    let res = other
        .post(&action, &[("request", &request), ("csrf", &csrf), ("username", "ada"), ("password", "ada-pw")])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.headers.get("location").is_none());
    // Right browser, wrong CSRF token.
    let res = alice
        .post(&action, &[("request", &request), ("csrf", "forged"), ("username", "ada"), ("password", "ada-pw")])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // Right browser and token still works afterwards.
    let res = alice
        .post(&action, &[("request", &request), ("csrf", &csrf), ("username", "ada"), ("password", "ada-pw")])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_pending_login_completes_only_once_and_expires() {
    let app = TestApp::new().await;
    let mut b = app.browser();
    let (action, request, csrf) = b.open_login_form(&AuthParams::hub(&Pkce::new())).await;
    let binding = b.cookies.clone();
    let form = [("request", request.as_str()), ("csrf", csrf.as_str()), ("username", "ada"), ("password", "ada-pw")];
    assert_eq!(b.post(&action, &form).await.status, StatusCode::SEE_OTHER);
    b.cookies = binding;
    let again = b.post(&action, &form).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.text().contains("expired"));

    let mut late = app.browser();
    let (action, request, csrf) = late.open_login_form(&AuthParams::hub(&Pkce::new())).await;
    app.clock.advance(16 * 60);
    let res = late
        .post(&action, &[("request", &request), ("csrf", &csrf), ("username", "ada"), ("password", "ada-pw")])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn login_hint_prefills_the_username() {
    let app = TestApp::new().await;
    let mut b = app.browser();
    let res = b.get(&AuthParams::hub(&Pkce::new()).set("login_hint", "sam").uri()).await;
    let page = b.get(&format!("/login?{}", res.location().query().unwrap())).await;
    assert!(page.text().contains("value=\"sam\""));
}

#[tokio::test]
async fn repeated_wrong_passwords_throttle_the_account_for_a_while() {
    let app = TestApp::new().await;
    for _ in 0..5 {
        let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "ada", "guess").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused now, with a clear message…
    let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.text().contains("Too many sign-in attempts"));
    // …other accounts are unaffected…
    let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "sam", "sam-pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    // …and the account opens again once the window has passed.
    app.clock.advance(301);
    let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}
