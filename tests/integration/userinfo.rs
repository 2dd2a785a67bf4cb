//! OIDC Core §5.3 and RFC 6750.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn userinfo_returns_the_claims_of_the_granted_scopes() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let res = app.userinfo(t["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
    let u = res.json();
    let claims = verify_jwt(&app, t["id_token"].as_str().unwrap(), "hub").await;
    assert_eq!(u["sub"], claims["sub"]);
    assert_eq!(u["preferred_username"], "ada");
    assert_eq!(u["name"], "Ada Lovelace");
    assert_eq!(u["email"], "ada@example.org");
    assert_eq!(u["email_verified"], true);
    assert_eq!(u["groups"], serde_json::json!(["admins"]));
}

#[tokio::test]
async fn userinfo_accepts_post_with_the_header_or_a_form_body() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("sam", "sam-pw").await;
    let at = t["access_token"].as_str().unwrap();
    let res = app
        .send(Request::post("/userinfo").header("authorization", format!("Bearer {at}")).body(Body::empty()).unwrap())
        .await;
    assert_eq!(res.json()["preferred_username"], "sam");
    let res = app.post_form("/userinfo", &[("access_token", at)], None).await;
    assert_eq!(res.json()["groups"], serde_json::json!(["students"]));
}

#[tokio::test]
async fn userinfo_errors_carry_bearer_challenges() {
    let app = TestApp::new().await;
    let none = app.get("/userinfo").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"hubauth\"");
    let bad = app.userinfo("hat_nonsense").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let basic = app
        .send(Request::get("/userinfo").header("authorization", "Basic Zm9vOmJhcg==").body(Body::empty()).unwrap())
        .await;
    assert_eq!(basic.status, StatusCode::BAD_REQUEST);
    assert!(basic.headers["www-authenticate"].to_str().unwrap().contains("invalid_request"));
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    app.clock.advance(601);
    assert_eq!(app.userinfo(t["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sub_is_stable_across_logins_and_distinct_between_users() {
    let app = TestApp::new().await;
    let a1 = app.login_and_exchange("ada", "ada-pw").await;
    let a2 = app.login_and_exchange("ada", "ada-pw").await;
    let s = app.login_and_exchange("sam", "sam-pw").await;
    let sub = |t: &serde_json::Value| t["access_token"].as_str().unwrap().to_string();
    let u1 = app.userinfo(&sub(&a1)).await.json()["sub"].clone();
    let u2 = app.userinfo(&sub(&a2)).await.json()["sub"].clone();
    let us = app.userinfo(&sub(&s)).await.json()["sub"].clone();
    assert_eq!(u1, u2);
    assert_ne!(u1, us);
    assert_ne!(u1, "ada", "sub is not the username");
}
