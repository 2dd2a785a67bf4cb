//! OpenID Connect RP-Initiated Logout 1.0.

use axum::http::StatusCode;

use crate::harness::*;

const AFTER: &str = "http://127.0.0.1:8000/hub/";

async fn logged_in(app: &TestApp) -> (Browser<'_>, String) {
    let mut b = app.browser();
    let pkce = Pkce::new();
    let code = b.login_for_code(&AuthParams::hub(&pkce), "ada", "ada-pw").await;
    let t = app.exchange(&code, &pkce).await.json();
    (b, t["id_token"].as_str().unwrap().to_string())
}

fn logout_uri(pairs: &[(&str, &str)]) -> String {
    format!("/logout?{}", form(pairs))
}

#[tokio::test]
async fn logout_with_id_token_hint_ends_the_session_and_returns_with_state() {
    let app = TestApp::new().await;
    let (mut b, id_token) = logged_in(&app).await;
    let res = b
        .get(&logout_uri(&[("id_token_hint", &id_token), ("post_logout_redirect_uri", AFTER), ("state", "bye")]))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let loc = res.location();
    assert!(loc.as_str().starts_with(AFTER));
    assert_eq!(res.query()["state"], "bye");
    // The session is gone: the next authorization shows the login form.
    let again = b.get(&AuthParams::hub(&Pkce::new()).uri()).await;
    assert_eq!(again.location().path(), "/login");
}

#[tokio::test]
async fn post_logout_redirect_uri_must_be_registered_exactly() {
    let app = TestApp::new().await;
    let (mut b, id_token) = logged_in(&app).await;
    for bad in ["http://127.0.0.1:8000/hub", "http://evil.example/", "http://127.0.0.1:8000/hub/?x"] {
        let res = b.get(&logout_uri(&[("id_token_hint", &id_token), ("post_logout_redirect_uri", bad)])).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.headers.get("location").is_none());
    }
    // Without a way to know the client, no redirect at all.
    let res = b.get(&logout_uri(&[("post_logout_redirect_uri", AFTER)])).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // With client_id instead of a hint, the URI is checked against that client.
    let res = b.get(&logout_uri(&[("client_id", "hub"), ("post_logout_redirect_uri", AFTER)])).await;
    assert_eq!(res.status, StatusCode::OK, "asks for confirmation");
}

#[tokio::test]
async fn logout_without_hint_asks_for_confirmation_protected_by_csrf() {
    let app = TestApp::new().await;
    let (mut b, _) = logged_in(&app).await;
    let page = b.get("/logout").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("Sign out?"));
    let csrf = input_value(&html, "csrf");
    let forged = b.post("/logout", &[("confirm", "yes"), ("csrf", "forged")]).await;
    assert!(forged.text().contains("Sign out?"), "still signed in");
    let done = b.post("/logout", &[("confirm", "yes"), ("csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.text().contains("Signed out"));
    assert_eq!(b.get(&AuthParams::hub(&Pkce::new()).uri()).await.location().path(), "/login");
}

#[tokio::test]
async fn forged_or_foreign_id_token_hints_are_refused() {
    let app = TestApp::new().await;
    let (mut b, id_token) = logged_in(&app).await;
    let mut parts: Vec<String> = id_token.split('.').map(str::to_string).collect();
    parts[1] = hubauth::crypto::random::b64url(br#"{"iss":"http://127.0.0.1:5556","aud":"hub","sub":"x"}"#);
    let forged = parts.join(".");
    for hint in [forged.as_str(), "not-a-jwt", "a.b.c"] {
        let res = b.get(&logout_uri(&[("id_token_hint", hint), ("post_logout_redirect_uri", AFTER)])).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{hint}");
    }
    // Still signed in after all that.
    assert!(b.get(&AuthParams::hub(&Pkce::new()).uri()).await.query().contains_key("code"));
}

/// Rotated out of the JWKS (its ID tokens have expired) and purged, the old key still vouches for
/// the hints it signed while a session it signed for can still be alive.
#[tokio::test]
async fn a_hint_signed_by_a_retired_key_still_ends_the_session() {
    use hubauth::clock::Clock;
    let app = TestApp::new().await;
    let (mut b, id_token) = logged_in(&app).await;
    let old_kid = jsonwebtoken::decode_header(&id_token).unwrap().kid.unwrap();
    // As `hubauth keys rotate` does it.
    let retirement = hubauth::crypto::keys::Retirement::for_config(&app.state.config);
    let alg = hubauth::crypto::SigningAlgorithm::RS256;
    let rotate = hubauth::crypto::keys::KeyManager::rotate;
    rotate(app.store.as_ref(), app.clock.now(), alg, retirement, Some(&test_sealer())).await.unwrap();
    app.clock.advance(retirement.published_for + 1);
    app.store.purge_expired(app.clock.now()).await.unwrap();
    app.state.keys.reload().await.unwrap();
    let jwks = app.get("/jwks").await.json();
    assert!(!jwks.to_string().contains(&old_kid), "the retired key is no longer published");

    let res = b.get(&logout_uri(&[("id_token_hint", &id_token), ("post_logout_redirect_uri", AFTER)])).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert!(res.location().as_str().starts_with(AFTER));
    assert_eq!(b.get(&AuthParams::hub(&Pkce::new()).uri()).await.location().path(), "/login", "signed out");

    // Not for ever: once no session it signed for can be alive, the key is gone.
    assert!(retirement.verifies_for >= app.state.config.session.lifetime.as_secs() as i64);
    assert!(retirement.verifies_for >= app.state.config.tokens.refresh_token_lifetime.as_secs() as i64);
    app.clock.advance(retirement.verifies_for);
    app.store.purge_expired(app.clock.now()).await.unwrap();
    app.state.keys.reload().await.unwrap();
    let res = b.get(&logout_uri(&[("id_token_hint", &id_token)])).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}
