//! `hubauth db copy`: moves a deployment from its SQLite file to PostgreSQL row for row, so
//! nobody is signed out: users, identities (with their sealed upstream tokens), browser
//! sessions, grants and every token hash, signing keys (the JWKS stays the same), invites, the
//! runtime allow-list and the audit log.
//!
//! The source is read in one read transaction (a consistent snapshot, while `serve` may still
//! be running on it); the target is written in one transaction and must be empty, so a copy
//! that fails half-way leaves nothing behind and can simply be run again.

use anyhow::Context;
use rusqlite::types::Value;
use sqlx::{AssertSqlSafe, QueryBuilder};

use crate::config::StorageConfig;

/// How a column's values cross over.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// SQLite's 0/1 into BOOLEAN.
    Bool,
    Blob,
}

use Kind::*;

/// Every table, parents before children, with the columns both schemas share. The SQLite
/// expression comes first (usually the column itself).
/// (SQLite expression, PostgreSQL column, kind)
type Column = (&'static str, &'static str, Kind);

const TABLES: &[(&str, &[Column])] = &[
    (
        "users",
        &[
            ("id", "id", Text),
            ("username", "username", Text),
            ("name", "name", Text),
            ("email", "email", Text),
            ("email_verified", "email_verified", Bool),
            ("groups_json", "groups_json", Text),
            ("created_at", "created_at", Int),
            ("updated_at", "updated_at", Int),
            ("last_login_at", "last_login_at", Int),
            ("last_token_use_at", "last_token_use_at", Int),
            ("blocked_at", "blocked_at", Int),
        ],
    ),
    (
        "user_identities",
        &[
            ("connector_id", "connector_id", Text),
            ("upstream_subject", "upstream_subject", Text),
            ("user_id", "user_id", Text),
            ("created_at", "created_at", Int),
            // The order identities were added in decides which one names the user.
            ("rowid", "seq", Int),
            ("memberships_json", "memberships_json", Text),
            ("upstream_username", "upstream_username", Text),
            ("tokens_sealed", "tokens_sealed", Text),
            ("tokens_expire_at", "tokens_expire_at", Int),
            ("refreshed_at", "refreshed_at", Int),
        ],
    ),
    (
        "browser_sessions",
        &[
            ("id", "id", Text),
            ("token_hash", "token_hash", Text),
            ("user_id", "user_id", Text),
            ("connector_id", "connector_id", Text),
            ("csrf_token", "csrf_token", Text),
            ("auth_time", "auth_time", Int),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("ended_at", "ended_at", Int),
        ],
    ),
    (
        "pending_authorizations",
        &[
            ("id", "id", Text),
            ("request_json", "request_json", Text),
            ("browser_binding_hash", "browser_binding_hash", Text),
            ("csrf_token", "csrf_token", Text),
            ("client_address", "client_address", Text),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
        ],
    ),
    (
        "upstream_attempts",
        &[
            ("state_hash", "state_hash", Text),
            ("pending_id", "pending_id", Text),
            ("connector_id", "connector_id", Text),
            ("pkce_verifier", "pkce_verifier", Text),
            ("nonce", "nonce", Text),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
        ],
    ),
    (
        "authorization_codes",
        &[
            ("code_hash", "code_hash", Text),
            ("client_id", "client_id", Text),
            ("user_id", "user_id", Text),
            ("session_id", "session_id", Text),
            ("request_json", "request_json", Text),
            ("auth_time", "auth_time", Int),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("used_at", "used_at", Int),
            ("grant_id", "grant_id", Text),
        ],
    ),
    (
        "grants",
        &[
            ("id", "id", Text),
            ("client_id", "client_id", Text),
            ("user_id", "user_id", Text),
            ("session_id", "session_id", Text),
            ("scope", "scope", Text),
            ("auth_time", "auth_time", Int),
            ("created_at", "created_at", Int),
            ("revoked_at", "revoked_at", Int),
            ("revoked_reason", "revoked_reason", Text),
        ],
    ),
    (
        "access_tokens",
        &[
            ("token_hash", "token_hash", Text),
            ("grant_id", "grant_id", Text),
            ("scope", "scope", Text),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("revoked_at", "revoked_at", Int),
        ],
    ),
    (
        "refresh_tokens",
        &[
            ("token_hash", "token_hash", Text),
            ("grant_id", "grant_id", Text),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("used_at", "used_at", Int),
            ("replaced_by", "replaced_by", Text),
            ("access_hash", "access_hash", Text),
        ],
    ),
    (
        "signing_keys",
        &[
            ("kid", "kid", Text),
            ("alg", "alg", Text),
            ("private_pkcs8", "private_pkcs8", Blob),
            ("private_sealed", "private_sealed", Text),
            ("created_at", "created_at", Int),
            ("rotated_at", "rotated_at", Int),
            ("expires_at", "expires_at", Int),
            ("verify_until", "verify_until", Int),
        ],
    ),
    (
        "audit_events",
        &[
            ("id", "id", Int),
            ("at", "at", Int),
            ("kind", "kind", Text),
            ("reason", "reason", Text),
            ("username", "username", Text),
            ("user_id", "user_id", Text),
            ("connector_id", "connector_id", Text),
            ("client_id", "client_id", Text),
            ("request_id", "request_id", Text),
            ("detail", "detail", Text),
            ("actor", "actor", Text),
        ],
    ),
    (
        "admin_tokens",
        &[
            ("id", "id", Text),
            ("token_hash", "token_hash", Text),
            ("name", "name", Text),
            ("scope", "scope", Text),
            ("created_by", "created_by", Text),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("revoked_at", "revoked_at", Int),
            ("last_used_at", "last_used_at", Int),
        ],
    ),
    (
        "invites",
        &[
            ("id", "id", Text),
            ("token_hash", "token_hash", Text),
            ("note", "note", Text),
            ("groups_json", "groups_json", Text),
            ("connector_id", "connector_id", Text),
            ("max_uses", "max_uses", Int),
            ("uses", "uses", Int),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("revoked_at", "revoked_at", Int),
        ],
    ),
    ("invite_redemptions", &[("invite_id", "invite_id", Text), ("user_id", "user_id", Text), ("at", "at", Int)]),
    (
        "access_entries",
        &[
            ("id", "id", Text),
            ("kind", "kind", Text),
            ("connector_id", "connector_id", Text),
            ("value", "value", Text),
            ("value_key", "value_key", Text),
            ("groups_json", "groups_json", Text),
            ("note", "note", Text),
            ("expires_at", "expires_at", Int),
            ("created_by", "created_by", Text),
            ("created_at", "created_at", Int),
        ],
    ),
    (
        "service_tokens",
        &[
            ("token_hash", "token_hash", Text),
            ("client_id", "client_id", Text),
            ("scope", "scope", Text),
            ("created_at", "created_at", Int),
            ("expires_at", "expires_at", Int),
            ("revoked_at", "revoked_at", Int),
        ],
    ),
];

/// Rows per INSERT: well under PostgreSQL's 65,535 bind parameters for the widest table.
const BATCH: usize = 1000;

/// Rows copied, per table.
pub type CopyReport = Vec<(&'static str, u64)>;

/// Copies everything in the SQLite database `from` (`sqlite://path`) into the empty PostgreSQL
/// database `to` (its schema created or brought up to date first).
pub async fn sqlite_to_postgres(from: &str, to: &StorageConfig) -> anyhow::Result<CopyReport> {
    anyhow::ensure!(to.is_postgres(), "the target must be a postgres:// URL");
    let path = from.strip_prefix("sqlite://").unwrap_or(from).split('?').next().unwrap_or_default().to_owned();
    // Opening a missing file would create an empty database and "copy" nothing.
    anyhow::ensure!(std::path::Path::new(&path).is_file(), "{path} does not exist: nothing to copy");
    // Opening through the store brings an older file up to date (as `serve` would) and refuses
    // one newer than this binary; then the rows are read directly.
    drop(crate::store::SqliteStore::open(from).await?);
    let tables = tokio::task::spawn_blocking(move || read_all(&path)).await??;

    let target = crate::store::PostgresStore::open(to, true).await?;
    let mut lease = target.conn().await.context("cannot connect to the copy's target")?;
    let mut tx = sqlx::Connection::begin(&mut *lease).await.context("cannot start the copy's transaction")?;
    for (table, _) in TABLES {
        let present: bool = sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {table})")))
            .fetch_one(&mut *tx)
            .await?;
        anyhow::ensure!(
            !present,
            "{} already holds data (table {table}): db copy only fills an empty database",
            to.display_url()
        );
    }
    let mut report = Vec::new();
    for ((table, columns), rows) in TABLES.iter().zip(tables) {
        let names = columns.iter().map(|(_, target, _)| *target).collect::<Vec<_>>().join(", ");
        for batch in rows.chunks(BATCH) {
            let mut insert = QueryBuilder::<sqlx::Postgres>::new(format!("INSERT INTO {table} ({names}) "));
            insert.push_values(batch, |mut b, row| {
                for (value, (_, _, kind)) in row.iter().zip(columns.iter()) {
                    match (kind, value) {
                        (Text, Value::Text(t)) => b.push_bind(t.clone()),
                        (Text, _) => b.push_bind(None::<String>),
                        (Int, Value::Integer(i)) => b.push_bind(*i),
                        (Int, _) => b.push_bind(None::<i64>),
                        (Bool, Value::Integer(i)) => b.push_bind(*i != 0),
                        (Bool, _) => b.push_bind(None::<bool>),
                        (Blob, Value::Blob(bytes)) => b.push_bind(bytes.clone()),
                        (Blob, _) => b.push_bind(None::<Vec<u8>>),
                    };
                }
            });
            insert.build().execute(&mut *tx).await.with_context(|| format!("copying {table}"))?;
        }
        report.push((*table, rows.len() as u64));
    }
    // Rows added after the copy continue the numbering instead of colliding with it.
    for (table, column) in [("audit_events", "id"), ("user_identities", "seq")] {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await.context("cannot commit the copy")?;
    Ok(report)
}

/// Every table's rows, read in one snapshot.
fn read_all(path: &str) -> anyhow::Result<Vec<Vec<Vec<Value>>>> {
    let mut conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {path}"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let tx = conn.transaction()?;
    let mut all = Vec::new();
    for (table, columns) in TABLES {
        let select = columns.iter().map(|(source, _, _)| *source).collect::<Vec<_>>().join(", ");
        let mut stmt = tx.prepare(&format!("SELECT {select} FROM {table}"))?;
        let rows = stmt
            .query_map([], |r| (0..columns.len()).map(|i| r.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>())?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading {table}"))?;
        all.push(rows);
    }
    Ok(all)
}
