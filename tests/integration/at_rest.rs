//! What hubauth leaves on disk: database files only its own user can read, and signing keys
//! sealed with the crypt keyring, so a copied database holds no usable key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use hubauth::crypto::key_sealing::signing_key_context;
use hubauth::crypto::keys::{KeyManager, SigningKey};
use hubauth::crypto::{Sealer, SigningAlgorithm};
use hubauth::store::{SqliteStore, Store, StoredPrivateKey};

use crate::harness::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A write, so that SQLite has made its `-wal` and `-shm` files.
async fn write_something(store: &dyn Store) {
    store.record_audit(&hubauth::store::AuditEvent { at: 1, kind: "test".into(), ..Default::default() }).await.unwrap();
}

fn wal_and_shm(db: &Path) -> [std::path::PathBuf; 2] {
    let name = db.file_name().unwrap().to_str().unwrap();
    [db.with_file_name(format!("{name}-wal")), db.with_file_name(format!("{name}-shm"))]
}

#[tokio::test]
async fn a_new_database_and_its_directory_are_private_to_hubauth() {
    let dir = tempfile::tempdir().unwrap();
    // The directory does not exist yet: hubauth makes it, for its own user only.
    let db = dir.path().join("state/hubauth/hubauth.db");
    let config = hubauth::config::Config::parse(&config_toml(db.to_str().unwrap()), &dir.path().join("h.toml"))
        .expect("test config is valid");
    let store = hubauth::app::open_store(&config).await.unwrap();
    write_something(store.as_ref()).await;
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
    for file in wal_and_shm(&db) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn an_existing_database_readable_by_others_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubauth.db");
    let url = format!("sqlite://{}", db.display());
    {
        let store = SqliteStore::open(&url).await.unwrap();
        write_something(&store).await;
    }
    // As an older hubauth (or a restore from backup) left them.
    for file in std::iter::once(db.clone()).chain(wal_and_shm(&db)).filter(|f| f.exists()) {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = SqliteStore::open(&url).await.unwrap();
    write_something(&store).await;
    for file in std::iter::once(db.clone()).chain(wal_and_shm(&db)) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn the_demo_data_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let args = hubauth::cli::demo::DemoArgs {
        listen: "127.0.0.1:5598".parse().unwrap(),
        data_dir: dir.path().join("demo-data"),
        hub_url: "http://127.0.0.1:8000".into(),
        issuer: None,
    };
    let config_path = hubauth::cli::demo::prepare(&args).unwrap();
    let config = hubauth::config::Config::load(&config_path).unwrap();
    let store = hubauth::app::open_store(&config).await.unwrap();
    write_something(store.as_ref()).await;
    assert_eq!(mode(&args.data_dir), 0o700);
    assert_eq!(mode(&args.data_dir.join("hubauth.db")), 0o600);
}

// ------------------------------------------------------------------ signing keys at rest

/// The app's SQLite file: these tests read the bytes at rest (PostgreSQL's are the server's).
fn db_of(app: &TestApp) -> std::path::PathBuf {
    app._dir.path().join("hubauth.db")
}

/// Every value stored in the signing-key table, as bytes.
fn signing_key_cells(db: &Path) -> Vec<(String, Vec<u8>)> {
    use rusqlite::types::ValueRef;
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM signing_keys").unwrap();
    let names: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let mut rows = stmt.query([]).unwrap();
    let mut cells = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        for (i, name) in names.iter().enumerate() {
            let bytes = match row.get_ref(i).unwrap() {
                ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                _ => continue,
            };
            cells.push((name.clone(), bytes));
        }
    }
    cells
}

/// No value in the table is a private key anyone could use.
fn assert_no_usable_key_in(db: &Path) {
    let cells = signing_key_cells(db);
    assert!(cells.iter().any(|(name, _)| name == "kid"), "there are keys");
    for (name, bytes) in cells {
        for alg in SigningAlgorithm::ALL {
            assert!(
                SigningKey::from_pkcs8("x".into(), alg, &bytes).is_err(),
                "column {name} holds a usable {alg:?} key"
            );
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "column {name} holds a PEM key");
    }
}

fn sealer() -> Option<Arc<Sealer>> {
    Some(Arc::new(test_sealer()))
}

/// The private halves, opened with the test keyring: what a copy must not reveal.
async fn private_keys(store: &dyn Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in store.signing_keys().await.unwrap() {
        let StoredPrivateKey::Sealed(sealed) = &k.private_key else { panic!("key {} is not sealed", k.kid) };
        out.push(test_sealer().open(&signing_key_context(&k.kid, k.alg), sealed).unwrap());
    }
    out
}

#[tokio::test]
async fn signing_keys_are_stored_sealed() {
    let app = TestApp::sqlite().await;
    assert_no_usable_key_in(&db_of(&app));
    let keys = private_keys(app.store.as_ref()).await;
    assert_eq!(keys.len(), SigningAlgorithm::ALL.len());
}

#[tokio::test]
async fn a_copied_database_without_the_crypt_key_yields_no_key() {
    let app = TestApp::sqlite().await;
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    let side = rusqlite::Connection::open(db_of(&app)).unwrap();
    side.execute("VACUUM INTO ?", [copy.to_str().unwrap()]).unwrap();
    drop(side);
    let bytes = std::fs::read(&copy).unwrap();
    for key in private_keys(app.store.as_ref()).await {
        assert!(!bytes.windows(key.len()).any(|w| w == key), "the key's PKCS#8 is in the copied file");
    }
    assert_no_usable_key_in(&copy);
    // Nor does hubauth itself get a key out of it without the keyring, or with another one.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&format!("sqlite://{}", copy.display())).await.unwrap());
    let clock = Arc::new(hubauth::clock::MockClock::new(START));
    let err = KeyManager::load_or_init(store.clone(), clock.clone(), None).await.err().expect("refused");
    assert!(err.to_string().contains("HUBAUTH_CRYPT_KEY"), "{err}");
    let other = Sealer::from_keyring(&Sealer::generate_key()).unwrap();
    assert!(KeyManager::load_or_init(store.clone(), clock, Some(Arc::new(other))).await.is_err());
    assert_eq!(store.signing_keys().await.unwrap().len(), SigningAlgorithm::ALL.len(), "no keys made instead");
}

/// A database as hubauth wrote it before keys were sealed (the first schema, an RSA and an EC
/// key in the clear), opened by today's store.
struct OldDatabase {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    store: Arc<dyn Store>,
    clock: Arc<hubauth::clock::MockClock>,
    keys: Vec<(SigningKey, Vec<u8>)>,
}

impl OldDatabase {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hubauth.db");
        let keys: Vec<_> = SigningAlgorithm::ALL.iter().map(|alg| SigningKey::generate(*alg).unwrap()).collect();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql")).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        for (key, der) in &keys {
            conn.execute(
                "INSERT INTO signing_keys (kid, alg, private_pkcs8, created_at) VALUES (?, ?, ?, ?)",
                rusqlite::params![key.kid, key.alg.as_str(), der, START - 100],
            )
            .unwrap();
        }
        drop(conn);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&format!("sqlite://{}", db.display())).await.unwrap());
        Self { _dir: dir, db, store, clock: Arc::new(hubauth::clock::MockClock::new(START)), keys }
    }

    fn jwks(&self) -> Vec<String> {
        sorted_jwks(&serde_json::json!({ "keys": self.keys.iter().map(|(k, _)| k.public_jwk()).collect::<Vec<_>>() }))
    }
}

#[tokio::test]
async fn keys_stored_in_the_clear_still_load_and_get_sealed_with_the_same_jwks() {
    let old = OldDatabase::new().await;
    let keys = KeyManager::load_or_init(old.store.clone(), old.clock.clone(), sealer()).await.unwrap();
    assert_eq!(sorted_jwks(keys.current().jwks()), old.jwks(), "the same keys, no new ones");
    assert_no_usable_key_in(&old.db);
    let mut opened = private_keys(old.store.as_ref()).await;
    opened.sort();
    let mut plain: Vec<Vec<u8>> = old.keys.iter().map(|(_, der)| der.clone()).collect();
    plain.sort();
    assert_eq!(opened, plain, "sealed, not lost");
    // And the next start reads them sealed.
    let again = KeyManager::load_or_init(old.store.clone(), old.clock.clone(), sealer()).await.unwrap();
    assert_eq!(sorted_jwks(again.current().jwks()), old.jwks());
}

#[tokio::test]
async fn without_a_keyring_keys_from_before_still_load() {
    let old = OldDatabase::new().await;
    let keys = KeyManager::load_or_init(old.store.clone(), old.clock.clone(), None).await.unwrap();
    assert_eq!(sorted_jwks(keys.current().jwks()), old.jwks());
}

fn sorted_jwks(jwks: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = jwks["keys"].as_array().unwrap().iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn keys_reseal_moves_signing_keys_to_the_new_crypt_key() {
    let app = TestApp::sqlite().await;
    let jwks = app.get("/jwks").await.json();
    let config = app._dir.path().join("hubauth.toml");
    std::fs::write(&config, config_toml(db_of(&app).to_str().unwrap())).unwrap();
    let new_key = Sealer::generate_key();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["keys", "reseal", "--config", config.to_str().unwrap()])
        .env("HUBAUTH_CRYPT_KEY", format!("{new_key};{TEST_CRYPT_KEY}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("signing keys: 2 re-sealed"), "{stdout}");
    let only_new = Sealer::from_keyring(&new_key).unwrap();
    for k in app.store.signing_keys().await.unwrap() {
        let StoredPrivateKey::Sealed(sealed) = &k.private_key else { panic!("key {} is not sealed", k.kid) };
        assert!(only_new.is_current(sealed), "key {} is under the new crypt key", k.kid);
    }
    // The old crypt key can now go: the new one alone loads the same keys.
    let keys = KeyManager::load_or_init(app.store.clone(), app.clock.clone(), Some(Arc::new(only_new))).await.unwrap();
    assert_eq!(sorted_jwks(keys.current().jwks()), sorted_jwks(&jwks));
    assert!(KeyManager::load_or_init(app.store.clone(), app.clock.clone(), sealer()).await.is_err(), "old key only");
}

/// `hubauth demo` as people run it, with no keyring in the environment: it keeps its own
/// crypt key (beside the database, for this user only) and seals the signing keys with it.
#[test]
fn the_demo_seals_its_signing_keys_with_its_own_crypt_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"));
    demo.args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data.to_str().unwrap()])
        .env_remove("HUBAUTH_CRYPT_KEY");
    let log = run_until_listening(demo);
    assert!(!log.iter().any(|l| l.contains("stored unsealed")), "{log:?}");
    assert_no_usable_key_in(&data.join("hubauth.db"));
    assert_eq!(mode(&data.join(hubauth::cli::demo::CRYPT_KEY_FILE)), 0o600);
}
