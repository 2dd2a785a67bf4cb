//! RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2), OIDC Core §12, and the
//! reuse grace for a retry whose answer was lost.

use std::sync::Arc;

use axum::http::StatusCode;

use crate::harness::*;
use crate::upstream_oidc::{self, alice, Twist};

/// `[tokens] refresh_token_reuse_grace`'s default, in seconds.
const GRACE: i64 = 30;

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
async fn reusing_a_rotated_refresh_token_after_the_grace_revokes_the_family() {
    let app = TestApp::new().await;
    let first = app.login_and_exchange("ada", "ada-pw").await;
    let old = first["refresh_token"].as_str().unwrap();
    let second = refresh(&app, old).await.json();
    app.clock.advance(GRACE);
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
    app.clock.advance(GRACE + 1);
    assert_eq!(refresh(&app, old).await.error(), "invalid_grant");
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

fn refresh_token_of(res: &TestResponse) -> String {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["refresh_token"].as_str().unwrap().to_string()
}

/// A client whose answer got lost presents the token it sent again: within the grace it gets a
/// fresh pair, the one it never saw is withdrawn, and the login goes on.
#[tokio::test]
async fn a_retry_within_the_grace_gets_fresh_tokens_and_the_family_lives_on() {
    let app = TestApp::new().await;
    let first = app.login_and_exchange("ada", "ada-pw").await;
    let old = first["refresh_token"].as_str().unwrap();
    let lost = refresh(&app, old).await.json();
    app.clock.advance(GRACE - 1);
    let retried = refresh(&app, old).await;
    let current = refresh_token_of(&retried);
    assert_ne!(current, lost["refresh_token"].as_str().unwrap());
    let access = retried.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.userinfo(&access).await.status, StatusCode::OK);
    assert_eq!(
        app.userinfo(lost["access_token"].as_str().unwrap()).await.status,
        StatusCode::UNAUTHORIZED,
        "the lost pair is withdrawn"
    );
    let next = refresh_token_of(&refresh(&app, &current).await);
    refresh_token_of(&refresh(&app, &next).await);
}

/// The grace covers only the token just rotated away, and only while its successor is unused:
/// anything else is two parties holding one login.
#[tokio::test]
async fn reuse_of_an_older_token_or_once_the_new_one_was_used_revokes_the_family() {
    let app = TestApp::new().await;
    let first = app.login_and_exchange("ada", "ada-pw").await;
    let oldest = first["refresh_token"].as_str().unwrap();
    let second = refresh_token_of(&refresh(&app, oldest).await);
    let third = refresh_token_of(&refresh(&app, &second).await);
    assert_eq!(refresh(&app, oldest).await.error(), "invalid_grant");
    assert_eq!(refresh(&app, &third).await.error(), "invalid_grant", "the family is revoked");

    let first = app.login_and_exchange("ada", "ada-pw").await;
    let old = first["refresh_token"].as_str().unwrap();
    let lost = refresh_token_of(&refresh(&app, old).await);
    let retried = refresh_token_of(&refresh(&app, old).await);
    // The pair the retry replaced turns up after all: someone else has the login too.
    assert_eq!(refresh(&app, &lost).await.error(), "invalid_grant");
    assert_eq!(refresh(&app, &retried).await.error(), "invalid_grant", "the family is revoked");
}

#[tokio::test]
async fn a_zero_grace_revokes_on_any_reuse() {
    let app = TestApp::with_extra_toml("[tokens]\nrefresh_token_reuse_grace = \"0s\"\n").await;
    let first = app.login_and_exchange("ada", "ada-pw").await;
    let old = first["refresh_token"].as_str().unwrap();
    let second = refresh_token_of(&refresh(&app, old).await);
    assert_eq!(refresh(&app, old).await.error(), "invalid_grant");
    assert_eq!(refresh(&app, &second).await.error(), "invalid_grant", "the family is revoked");
}

#[test]
fn the_reuse_grace_is_bounded() {
    let toml = format!("{}\n[tokens]\nrefresh_token_reuse_grace = \"2m\"\n", config_toml("/tmp/x.db"));
    let err = hubauth::config::Config::parse(&toml, std::path::Path::new("/tmp/hubauth.toml")).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("tokens.refresh_token_reuse_grace") && err.contains("at most 60s"), "{err}");
}

/// The re-check at the provider runs before the rotation is committed: while it waits, the
/// presented token is still unspent, so a client that gives up and retries (even with no grace)
/// simply refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_token_is_spent_only_after_the_re_check_at_the_provider() {
    let policy = "\n[access]\nrecheck_after = \"5m\"\n[tokens]\nrefresh_token_reuse_grace = \"0s\"\n";
    let (app, fake) = upstream_oidc::setup(policy).await;
    let (res, pkce) = upstream_oidc::upstream_login(&app, &fake, alice(), Twist::default()).await;
    let tokens = app.exchange(&res.query()["code"], &pkce).await.json();
    let old = tokens["refresh_token"].as_str().unwrap().to_string();
    app.clock.advance(301);

    let app = Arc::new(app);
    let held = fake.hold_token_endpoint().await;
    let arrived = fake.token_calls();
    let waiting = tokio::spawn({
        let (app, old) = (app.clone(), old.clone());
        async move { refresh(&app, &old).await.status }
    });
    for _ in 0..500 {
        if fake.token_calls() > arrived {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(fake.token_calls() > arrived, "the refresh re-checks at the provider");
    let seen = app.post_form("/introspect", &[("token", &old)], Some(("hub", HUB_SECRET))).await.json();
    assert_eq!(seen["active"], true, "not spent while the re-check waits");

    // The client gives up, and its request goes away with the connection. The provider stays
    // unreachable (so the stalled call cannot spend its token either): the last known memberships
    // stand for the retry.
    waiting.abort();
    fake.outage(Some(StatusCode::SERVICE_UNAVAILABLE));
    drop(held);
    let next = refresh_token_of(&refresh(&app, &old).await);
    refresh_token_of(&refresh(&app, &next).await);
}
