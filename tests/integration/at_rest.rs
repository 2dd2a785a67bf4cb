//! What hubauth leaves on disk: database files only its own user can read, and signing keys
//! sealed with the crypt keyring, so a copied database holds no usable key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hubauth::store::{SqliteStore, Store};

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
