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

/// Two replicas starting on one new database at the same moment: each finds no key and makes
/// one, but only one per algorithm may end up signing (else the replicas sign with different
/// keys and one of them is missing from the other's JWKS until it reloads).
#[tokio::test]
async fn replicas_starting_together_create_one_active_key_per_algorithm() {
    use hubauth::store::{SqliteStore, Store};
    use std::sync::Arc;
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hubauth.db").display());
        let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        let clock = || -> Arc<dyn hubauth::clock::Clock> { Arc::new(hubauth::clock::MockClock::new(START)) };
        let sealer = || Some(Arc::new(test_sealer()));
        let (ka, kb) = tokio::join!(
            KeyManager::load_or_init(a.clone(), clock(), sealer()),
            KeyManager::load_or_init(b.clone(), clock(), sealer())
        );
        let (ka, kb) = (ka.unwrap(), kb.unwrap());
        let keys = a.signing_keys().await.unwrap();
        for alg in SigningAlgorithm::ALL {
            let active = keys.iter().filter(|k| k.alg == alg && k.rotated_at.is_none()).count();
            assert_eq!(active, 1, "round {round}: {} active {} keys", active, alg.as_str());
        }
        assert_eq!(ka.current().jwks(), kb.current().jwks(), "round {round}: both replicas publish the same keys");
    }
}

/// A database where an older race left two RS256 keys signing: the upgrade keeps the newest as
/// the signer and retires the other, still published, instead of failing on the new index.
#[tokio::test]
async fn an_upgrade_retires_all_but_the_newest_of_several_active_keys() {
    use hubauth::store::{KeyStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubauth.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    for m in [
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/sqlite/0002_refresh_token_chain.sql"),
        include_str!("../../migrations/sqlite/0003_sealed_signing_keys.sql"),
        include_str!("../../migrations/sqlite/0004_signing_key_trust.sql"),
        include_str!("../../migrations/sqlite/0005_pending_limits.sql"),
    ] {
        conn.execute_batch(m).unwrap();
    }
    conn.pragma_update(None, "user_version", 5).unwrap();
    for (kid, created) in [("old", 10), ("new", 20)] {
        conn.execute(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, created_at) VALUES (?, 'RS256', x'01', ?)",
            rusqlite::params![kid, created],
        )
        .unwrap();
    }
    drop(conn);
    let store = SqliteStore::open(&format!("sqlite://{}", db.display())).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    let new = keys.iter().find(|k| k.kid == "new").unwrap();
    let old = keys.iter().find(|k| k.kid == "old").unwrap();
    assert!(new.rotated_at.is_none(), "the newest keeps signing");
    assert!(old.rotated_at.is_some() && old.expires_at.is_some(), "the other is retired, still published");
}
