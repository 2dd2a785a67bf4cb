//! Malformed and hostile requests on every endpoint: never a 500, never a panic, and nothing
//! stored is lost (a login made before the barrage still works after it).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::harness::*;

const ENDPOINTS: [&str; 15] = [
    "/",
    "/.well-known/openid-configuration",
    "/jwks",
    "/authorize",
    "/login",
    "/login/dev",
    "/login/nope",
    "/token",
    "/userinfo",
    "/revoke",
    "/introspect",
    "/logout",
    "/callback/uni",
    "/callback/dev",
    "/callback/nope",
];

fn nasty_queries() -> Vec<String> {
    let long = "a".repeat(20_000);
    vec![
        String::new(),
        "%".into(),
        "%zz=%G0&&&==&=".into(),
        "client_id=hub&client_id=hub".into(),
        "client_id=%00%ff%fe".into(),
        format!("client_id=hub&redirect_uri={HUB_REDIRECT}&response_type=code&scope=openid&state={long}"),
        format!("request={long}"),
        "client_id=hub&redirect_uri=javascript:alert(1)".into(),
        "client_id=<script>&redirect_uri=%0d%0aSet-Cookie:x=y".into(),
        "request=abc&connector=../../etc/passwd".into(),
        "id_token_hint=...&post_logout_redirect_uri=http://evil".into(),
        "state=forged&code=stolen".into(),
        format!("state={long}&code={long}"),
        "error=access_denied&error_description=%3Cscript%3E&state=x".into(),
        "code=x&state=".into(),
    ]
}

fn nasty_bodies() -> Vec<(Option<&'static str>, Vec<u8>)> {
    vec![
        (Some("application/x-www-form-urlencoded"), b"".to_vec()),
        (Some("application/x-www-form-urlencoded"), b"grant_type=authorization_code&grant_type=refresh_token".to_vec()),
        (Some("application/x-www-form-urlencoded"), b"\xff\xfe\x00garbage=%%%".to_vec()),
        (
            Some("application/x-www-form-urlencoded"),
            format!("grant_type=refresh_token&refresh_token={}", "x".repeat(60_000)).into_bytes(),
        ),
        (Some("application/json"), br#"{"grant_type":"authorization_code"}"#.to_vec()),
        (None, b"grant_type=authorization_code".to_vec()),
        (Some("multipart/form-data; boundary=x"), b"--x\r\n\r\n--x--".to_vec()),
        (Some("application/x-www-form-urlencoded"), vec![b'a'; 100_000]),
    ]
}

fn check(status: StatusCode, what: &str) {
    assert!(status != StatusCode::INTERNAL_SERVER_ERROR && status.as_u16() < 500, "{what} -> {status}");
}

#[tokio::test]
async fn no_request_on_any_endpoint_causes_a_server_error_or_loses_data() {
    // With an upstream connector too, so its callback is in the barrage.
    let fake = crate::upstream_oidc::FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", "")).await;
    let before = app.login_and_exchange("ada", "ada-pw").await;
    let mut b = app.browser();
    let pkce = Pkce::new();
    b.open_login_form(&AuthParams::hub(&pkce)).await; // leaves a binding cookie in the browser

    for path in ENDPOINTS {
        for q in nasty_queries() {
            let uri = format!("{path}?{q}");
            let Ok(req) = Request::get(&uri).body(Body::empty()) else {
                continue;
            };
            let res = app.send(req).await;
            check(res.status, &format!("GET {path}?…"));
        }
        for (ct, body) in nasty_bodies() {
            for method in [Method::POST, Method::PUT, Method::DELETE] {
                let mut req = Request::builder().method(method.clone()).uri(path);
                if let Some(ct) = ct {
                    req = req.header("content-type", ct);
                }
                let res = app.send(req.body(Body::from(body.clone())).unwrap()).await;
                check(res.status, &format!("{method} {path} ({ct:?})"));
            }
        }
        for auth in ["Basic", "Basic !!!", "Basic Og==", "Bearer", "Bearer  ", "Basic aHViOg==", "\u{7f}"] {
            let Ok(req) = Request::post(path)
                .header("authorization", auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("grant_type=authorization_code&code=x"))
            else {
                continue;
            };
            check(app.send(req).await.status, &format!("POST {path} with Authorization {auth:?}"));
        }
        let cookie_req =
            Request::get(path).header("cookie", "hubauth_session=%%%; hubauth_login=\u{1}").body(Body::empty());
        if let Ok(req) = cookie_req {
            check(app.send(req).await.status, &format!("GET {path} with junk cookies"));
        }
    }

    // The earlier login is intact: its access token still answers and its refresh token rotates.
    assert_eq!(app.userinfo(before["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", before["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn error_bodies_of_the_token_endpoint_are_json_with_rfc_codes() {
    let app = TestApp::new().await;
    let res = app
        .send(Request::post("/token").header("content-type", "application/json").body(Body::from("{}")).unwrap())
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error(), "invalid_request");
    assert_eq!(res.headers["content-type"], "application/json");
}

#[tokio::test]
async fn unknown_paths_get_a_page_not_a_stack_trace() {
    let app = TestApp::new().await;
    let res = app.get("/../../etc/passwd").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.text().contains("Page not found"));
}
