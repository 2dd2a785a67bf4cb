//! What only the PostgreSQL backend has: TLS to the server, schema versions shared by several
//! releases, locks that hold across replicas, and `db copy` from SQLite. (Everything the two
//! backends share is in `store_conformance.rs` and the whole suite under
//! `HUBAUTH_TEST_BACKEND=postgres`.)

use std::sync::Arc;
use std::time::Duration;

use hubauth::config::StorageConfig;
use hubauth::store::{Migrate, PostgresStore, Store};

use crate::harness::*;

fn storage(url: &str) -> StorageConfig {
    StorageConfig { url: url.into(), ..Default::default() }
}

async fn side_sql(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
}

fn with_query(url: &str, query: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_query(Some(query));
    u.to_string()
}

#[tokio::test]
async fn verified_tls_needs_the_servers_ca() {
    let Some(db) = crate::pg::database().await else { return };
    let Some(ca) = crate::pg::server_ca() else {
        eprintln!("skipping: HUBAUTH_TEST_POSTGRES_CA is not set");
        return;
    };
    let verified = StorageConfig {
        ssl_mode: Some("verify-full".into()),
        ssl_root_cert: Some(ca.clone().into()),
        ..storage(&db.url)
    };
    let store = PostgresStore::open(&verified, true).await.expect("verify-full with the server's CA");
    store.health().await.unwrap();
    // The URL's own parameters work the same way.
    let in_url = storage(&with_query(&db.url, &format!("sslmode=verify-full&sslrootcert={ca}")));
    PostgresStore::open(&in_url, true).await.expect("sslmode in the URL");

    // Without the CA the server's certificate is not trusted: a clear refusal, no plaintext fallback.
    let unverified = StorageConfig { ssl_mode: Some("verify-full".into()), ..storage(&db.url) };
    let err = PostgresStore::open(&unverified, true).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("cannot connect to PostgreSQL"), "{message}");
    assert!(!message.contains("hubauth-test"), "no password in errors: {message}");
}

#[tokio::test]
async fn a_schema_newer_than_this_release_is_refused_unless_it_says_this_release_can_read_it() {
    let Some(db) = crate::pg::database().await else { return };
    PostgresStore::open(&storage(&db.url), true).await.unwrap();
    // A later release added migration 99 and said releases from schema 1 on still work.
    side_sql(
        &db.url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', true, '\\x00', 0)",
    )
    .await;
    let store = PostgresStore::open(&storage(&db.url), true).await.expect("compatible: a rolling upgrade");
    store.health().await.unwrap();
    // Then one that dropped something this release needs.
    side_sql(&db.url, "UPDATE hubauth_schema SET oldest_reader = 99").await;
    let err = PostgresStore::open(&storage(&db.url), true).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("newer than this hubauth") && message.contains("99"), "{message}");
}

#[tokio::test]
async fn without_migrate_an_outdated_schema_is_refused_and_db_migrate_upgrades_it() {
    let Some(db) = crate::pg::database().await else { return };
    let err = hubauth::store::open(&storage(&db.url), Migrate::Refuse).await.err().expect("refused");
    assert!(format!("{err:#}").contains("hubauth db migrate"), "{err:#}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubauth.toml");
    std::fs::write(&config, config_toml_with_url(&db.url).replace("[storage]", "[storage]\nmigrate = false")).unwrap();
    let hubauth = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let status = hubauth(&["db", "status"]);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("schema is at version 0"), "{status:?}");
    let migrated = hubauth(&["db", "migrate"]);
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let stdout = String::from_utf8_lossy(&migrated.stdout).to_string();
    assert!(stdout.contains("schema up to date") && !stdout.contains("hubauth-test"), "no password shown: {stdout}");
    assert!(hubauth(&["db", "status"]).status.success());
    hubauth::store::open(&storage(&db.url), Migrate::Refuse).await.expect("now current");
}

/// Two replicas (two stores on one database): a person's lock held by one makes the other wait,
/// and is free for it once released — or once the holder's connection dies.
#[tokio::test]
async fn a_user_lock_holds_across_replicas() {
    let Some(db) = crate::pg::database().await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::open(&storage(&db.url), true).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::open(&storage(&db.url), true).await.unwrap());
    let held = a.lock_user("u1", Duration::from_secs(5)).await.unwrap();
    let err = b.lock_user("u1", Duration::from_millis(300)).await.err().expect("held by the other replica");
    assert!(err.to_string().contains("another replica"), "{err}");
    let other_user = b.lock_user("u2", Duration::from_millis(300)).await.expect("only that person is locked");
    drop(other_user);

    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock_user("u1", Duration::from_secs(10)).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "waits while the other replica holds it");
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("released").unwrap().unwrap();

    // A replica that dies: its connection closes, the lock goes with it.
    let dying = PostgresStore::open(&storage(&db.url), true).await.unwrap();
    let lock = dying.lock_user("u3", Duration::from_secs(5)).await.unwrap();
    std::mem::forget(lock);
    drop(dying);
    side_sql(
        &db.url,
        // Only this test's database: other tests' sessions on the server (migrations hold advisory
        // locks too) are not ours to end.
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    let _freed = b.lock_user("u3", Duration::from_secs(5)).await.expect("free once the holder's session ended");
}

/// Moving to PostgreSQL keeps everybody signed in: the hub's refresh token still refreshes, its
/// access token still reads userinfo, the JWKS is the same, and the browser session holds.
#[tokio::test]
async fn db_copy_moves_a_live_deployment_without_signing_anyone_out() {
    let Some(db) = crate::pg::database().await else { return };
    let before = TestApp::sqlite().await;
    let tokens = before.login_and_exchange("ada", "ada-pw").await;
    let (access, refresh) =
        (tokens["access_token"].as_str().unwrap().to_string(), tokens["refresh_token"].as_str().unwrap().to_string());
    let jwks_before = before.get("/jwks").await.text();
    let entry = hubauth::store::AccessEntry {
        id: "e1".into(),
        selector: hubauth::store::AccessSelector::Login { connector_id: "dev".into(), login: "Sam".into() },
        groups: vec!["guests".into()],
        note: Some("visiting".into()),
        expires_at: Some(START + 3600),
        created_by: "cli:root".into(),
        created_at: START,
    };
    before.store.put_access_entry(&entry).await.unwrap();
    // sam is blocked and ada used a token: both come along.
    before.login_and_exchange("sam", "sam-pw").await;
    let sam = before.store.user_by_username("sam").await.unwrap().unwrap();
    before.store.block_user(&sam.id, START + 1).await.unwrap();
    let ada_id = before.store.user_by_username("ada").await.unwrap().unwrap().id;
    before.store.note_token_use(&ada_id, START + 2).await.unwrap();
    let activity_before = before.store.activity(START + 3).await.unwrap();
    let counts_before: Vec<i64> = {
        let mut v = Vec::new();
        for t in [
            "users",
            "user_identities",
            "browser_sessions",
            "grants",
            "access_tokens",
            "refresh_tokens",
            "signing_keys",
            "audit_events",
            "access_entries",
        ] {
            v.push(before.sql_count(t).await);
        }
        v
    };
    let sqlite_url = before.state.config.storage.url.clone();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["db", "copy", "--from", &sqlite_url])
        .env("HUBAUTH_COPY_TO", &db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains("refresh_tokens") && !report.contains("hubauth-test"), "{report}");

    let after = TestApp::at_url(&db.url).await;
    let mut counts_after = Vec::new();
    for t in [
        "users",
        "user_identities",
        "browser_sessions",
        "grants",
        "access_tokens",
        "refresh_tokens",
        "signing_keys",
        "audit_events",
        "access_entries",
    ] {
        counts_after.push(after.sql_count(t).await);
    }
    assert_eq!(counts_after, counts_before, "every row came along");
    assert_eq!(after.store.access_entries().await.unwrap(), [entry], "the allow-list came along as it was");
    assert_eq!(after.store.activity(START + 3).await.unwrap(), activity_before, "blocks and token use too");
    assert_eq!(after.get("/jwks").await.text(), jwks_before, "the same keys");
    let info = after.userinfo(&access).await;
    assert_eq!(info.status, axum::http::StatusCode::OK, "{}", info.text());
    assert_eq!(info.json()["preferred_username"], "ada");
    let refreshed = after.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    assert_eq!(refreshed.status, axum::http::StatusCode::OK, "{}", refreshed.text());

    // The target now holds data: a second copy refuses rather than mixing two deployments.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(["db", "copy", "--from", &sqlite_url, "--to", &db.url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(err.contains("already holds data") && !err.contains("hubauth-test"), "{err}");
}

/// Replicas purge on their own timers: two purging the same rows at once neither fail nor wait
/// on each other's batches, and between them everything expired goes, once.
#[tokio::test]
async fn replicas_purging_together_do_not_collide() {
    let Some(db) = crate::pg::database().await else { return };
    let a: Arc<dyn Store> = Arc::new(PostgresStore::open(&storage(&db.url), true).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::open(&storage(&db.url), true).await.unwrap());
    let limits = hubauth::store::PendingLimits { per_browser: 1, per_address: u32::MAX, total: u32::MAX };
    for i in 0..1200 {
        let pending = hubauth::store::PendingAuthorization {
            id: format!("p{i}"),
            request_json: "{}".into(),
            browser_binding_hash: format!("b{i}"),
            csrf_token: "c".into(),
            client_address: String::new(),
            created_at: 1,
            expires_at: 10,
        };
        a.create_pending_authorization(&pending, limits).await.unwrap();
    }
    let (ra, rb) = tokio::join!(a.purge_expired(100), b.purge_expired(100));
    assert_eq!(ra.unwrap() + rb.unwrap(), 1200, "each row purged by exactly one replica");
    assert_eq!(a.purge_expired(100).await.unwrap(), 0);
}
