//! RFC 7009 and RFC 7662.

use axum::http::StatusCode;

use crate::harness::*;

async fn introspect(app: &TestApp, token: &str) -> serde_json::Value {
    let res = app.post_form("/introspect", &[("token", token)], Some(("hub", HUB_SECRET))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

#[tokio::test]
async fn introspection_describes_active_tokens() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let at = introspect(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(at["active"], true);
    assert_eq!(at["client_id"], "hub");
    assert_eq!(at["username"], "ada");
    assert_eq!(at["token_type"], "Bearer");
    assert_eq!(at["exp"], START + 600);
    assert!(at["scope"].as_str().unwrap().contains("groups"));
    let rt = introspect(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(rt["active"], true);
    assert_eq!(rt["token_type"], "refresh_token");
    assert_eq!(introspect(&app, "hat_made_up").await, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn introspection_is_for_authenticated_confidential_clients_and_their_own_tokens() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let at = t["access_token"].as_str().unwrap();
    let anon = app.post_form("/introspect", &[("token", at)], None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let public = app.post_form("/introspect", &[("token", at), ("client_id", "pub")], None).await;
    assert_eq!(public.status, StatusCode::UNAUTHORIZED);
    assert_eq!(public.error(), "invalid_client");
    let other = app.post_form("/introspect", &[("token", at)], Some(ES_CLIENT)).await;
    assert_eq!(other.json(), serde_json::json!({"active": false}));
    let missing = app.post_form("/introspect", &[], Some(("hub", HUB_SECRET))).await;
    assert_eq!(missing.error(), "invalid_request");
}

#[tokio::test]
async fn revoking_an_access_token_ends_only_that_token() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let at = t["access_token"].as_str().unwrap();
    let res = app
        .post_form("/revoke", &[("token", at), ("token_type_hint", "access_token")], Some(("hub", HUB_SECRET)))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(app.userinfo(at).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect(&app, at).await["active"], false);
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(app.token(&[("grant_type", "refresh_token"), ("refresh_token", rt)]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_whole_grant() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let rt = t["refresh_token"].as_str().unwrap();
    // Wrong hint: still found (the hint only orders the lookups).
    let res = app
        .post_form("/revoke", &[("token", rt), ("token_type_hint", "access_token")], Some(("hub", HUB_SECRET)))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(app.userinfo(t["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.token(&[("grant_type", "refresh_token"), ("refresh_token", rt)]).await.error(), "invalid_grant");
}

#[tokio::test]
async fn revocation_edge_cases() {
    let app = TestApp::new().await;
    let t = app.login_and_exchange("ada", "ada-pw").await;
    let at = t["access_token"].as_str().unwrap();
    // Unknown tokens: 200, as RFC 7009 §2.2 says.
    assert_eq!(
        app.post_form("/revoke", &[("token", "nothing")], Some(("hub", HUB_SECRET))).await.status,
        StatusCode::OK
    );
    // Another client cannot revoke the hub's token.
    let other = app.post_form("/revoke", &[("token", at)], Some(ES_CLIENT)).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(app.userinfo(at).await.status, StatusCode::OK);
    // No credentials: invalid_client; no token: invalid_request.
    assert_eq!(app.post_form("/revoke", &[("token", at)], None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.post_form("/revoke", &[], Some(("hub", HUB_SECRET))).await.error(), "invalid_request");
}
