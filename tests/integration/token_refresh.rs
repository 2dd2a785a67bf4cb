//! RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2), OIDC Core §12.

use axum::http::StatusCode;

use crate::harness::*;

async fn refresh(app: &TestApp, token: &str) -> TestResponse {
    app.token(&[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_returns_a_new_id_token() {
    let app = TestApp::new().await;
    let first = app.login_and_exchange("ada", "ada-pw").await;
    app.clock.advance(30);
    let res = refresh(&app, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let second = res.json();
    assert_eq!(second["token_type"], "Bearer");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let claims = verify_jwt(&app, second["id_token"].as_str().unwrap(), "hub").await;
    let original = verify_jwt(&app, first["id_token"].as_str().unwrap(), "hub").await;
    assert_eq!(claims["sub"], original["sub"]);
    assert_eq!(claims["auth_time"], original["auth_time"]);
    assert_eq!(claims["iat"], START + 30);
    assert!(claims.get("nonce").is_none());
    assert_eq!(app.userinfo(second["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_family() {
    let app = TestApp::new().await;
    let first = app.login_and_exchange("ada", "ada-pw").await;
    let old = first["refresh_token"].as_str().unwrap();
    let second = refresh(&app, old).await.json();
    let reuse = refresh(&app, old).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.error(), "invalid_grant");
    // Everything of that login is gone: the newest refresh token and the access tokens.
    assert_eq!(refresh(&app, second["refresh_token"].as_str().unwrap()).await.error(), "invalid_grant");
    assert_eq!(app.userinfo(second["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.userinfo(first["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn other_logins_survive_a_family_revocation() {
    let app = TestApp::new().await;
    let a = app.login_and_exchange("ada", "ada-pw").await;
    let b = app.login_and_exchange("ada", "ada-pw").await;
    let old = a["refresh_token"].as_str().unwrap();
    refresh(&app, old).await;
    refresh(&app, old).await;
    assert_eq!(app.userinfo(b["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(refresh(&app, b["refresh_token"].as_str().unwrap()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_token_of_another_client_is_refused_without_burning_it() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let res = app.post_form("/token", &[("grant_type", "refresh_token"), ("refresh_token", rt)], Some(ES_CLIENT)).await;
    assert_eq!(res.error(), "invalid_grant");
    assert_eq!(refresh(&app, rt).await.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_scope_can_narrow_but_not_widen() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let wider = app.token(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("scope", "openid admin")]).await;
    assert_eq!(wider.error(), "invalid_scope");
    let narrow =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("scope", "openid profile")]).await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.text());
    let n = narrow.json();
    assert_eq!(n["scope"], "openid profile");
    let info = app.userinfo(n["access_token"].as_str().unwrap()).await.json();
    assert!(info.get("groups").is_none() && info.get("email").is_none());
    assert_eq!(info["preferred_username"], "ada");
}

#[tokio::test]
async fn expired_or_unknown_refresh_tokens_are_invalid_grant() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    assert_eq!(refresh(&app, "hrt_unknown").await.error(), "invalid_grant");
    assert_eq!(app.token(&[("grant_type", "refresh_token")]).await.error(), "invalid_request");
    app.clock.advance(31 * 24 * 3600);
    assert_eq!(refresh(&app, t["refresh_token"].as_str().unwrap()).await.error(), "invalid_grant");
}
