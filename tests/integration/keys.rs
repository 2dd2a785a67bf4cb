//! Signing-key rotation: the new key signs, the old one stays published until its tokens expire.

use hubauth::crypto::keys::{KeyManager, Retirement};
use hubauth::crypto::SigningAlgorithm;

use crate::harness::*;

const RETIREMENT: Retirement = Retirement { published_for: 900, verifies_for: 3600 };

fn kid_of(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

#[tokio::test]
async fn rotation_switches_the_signer_and_keeps_the_old_key_published_until_expiry() {
    let app = TestApp::new().await;
    let before = app.login_and_exchange("ada", "ada-pw").await;
    let old_token = before["id_token"].as_str().unwrap().to_string();
    let old_kid = kid_of(&old_token);

    KeyManager::rotate(
        app.store.as_ref(),
        app.clock.now_secs(),
        SigningAlgorithm::RS256,
        RETIREMENT,
        Some(&test_sealer()),
    )
    .await
    .unwrap();
    app.state.keys.reload().await.unwrap();

    let after = app.login_and_exchange("ada", "ada-pw").await;
    let new_kid = kid_of(after["id_token"].as_str().unwrap());
    assert_ne!(old_kid, new_kid);
    let jwks = app.get("/jwks").await.json();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    // Tokens signed before rotation still verify against the published set.
    verify_jwt(&app, &old_token, "hub").await;
    verify_jwt(&app, after["id_token"].as_str().unwrap(), "hub").await;

    app.clock.advance(901);
    app.state.keys.reload().await.unwrap();
    let jwks = app.get("/jwks").await.json();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(!kids.contains(&old_kid.as_str()), "expired key is no longer published");
    assert!(kids.contains(&new_kid.as_str()));
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let app = TestApp::new().await;
    let jwks1 = app.get("/jwks").await.json();
    let again = KeyManager::load_or_init(app.store.clone(), app.clock.clone(), app.state.sealer.clone()).await.unwrap();
    assert_eq!(&jwks1, again.current().jwks());
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for hubauth::clock::MockClock {
    fn now_secs(&self) -> i64 {
        use hubauth::clock::Clock;
        self.now()
    }
}
