//! PostgreSQL, for several replicas sharing one database (sqlx connections, in [`pool`]).
//!
//! Every guarantee the SQLite backend gets from its single writer thread is in the SQL here:
//! single use by conditional UPDATEs (PostgreSQL re-checks a racing row after the lock is
//! released), uniqueness by constraints mapped to typed errors, one active signing key by a
//! partial unique index. Each trait call commits once (one statement, or one transaction where it
//! writes twice), so a replica that dies or loses the database mid-call leaves nothing
//! half-written. The per-user lock is a session advisory lock
//! held on a connection of its own pool, so a refresh waiting at a provider never starves the
//! pool that serves everyone else.

mod access_list;
mod accounts;
mod admin_tokens;
mod audit;
mod identities;
mod invites;
mod keys;
mod locks;
pub(crate) mod pool;
mod rows;
mod schema;
mod sign_ins;
mod throttle;
mod tokens;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{AssertSqlSafe, Row};

use self::rows::*;
use super::*;
use crate::config::StorageConfig;

type SqlResult<T> = Result<T, sqlx::Error>;

pub struct PostgresStore {
    pool: pool::Pool,
    /// Connections that hold per-user advisory locks (see [`locks`]).
    lock_pool: PgPool,
}

fn backend(e: impl Into<anyhow::Error>) -> StoreError {
    let e = e.into();
    if let Some(sql) = e.downcast_ref::<sqlx::Error>() {
        pool::note_error(sql);
    }
    StoreError::Backend(e)
}

/// The constraint (or unique index) a statement broke, when it was a uniqueness rule.
fn unique_violation(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}

/// Connection settings from `[storage]`: the URL's own parameters (`sslmode`, `sslrootcert`,
/// …) hold unless the config names them.
pub(crate) fn connect_options(config: &StorageConfig) -> anyhow::Result<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(&config.url)
        .with_context(|| format!("{} is not a usable PostgreSQL URL", config.display_url()))?
        .application_name("hubauth")
        .options([("statement_timeout", format!("{}ms", config.statement_timeout.as_millis()))]);
    if let Some(mode) = &config.ssl_mode {
        options = options.ssl_mode(PgSslMode::from_str(mode).with_context(|| format!("ssl_mode {mode:?}"))?);
    }
    if let Some(ca) = &config.ssl_root_cert {
        options = options.ssl_root_cert(ca);
    }
    Ok(options)
}

impl PostgresStore {
    /// Connects to the database `config` names and checks (or, with `migrate`, brings up to
    /// date) its schema.
    pub async fn open(config: &StorageConfig, migrate: bool) -> anyhow::Result<Self> {
        let options = connect_options(config)?;
        // The first connection now: a wrong URL or password fails the start, not the first call.
        let pool = pool::build(options.clone(), config.pool_size, config.connect_timeout)?;
        let first = pool::take(&pool).await.map_err(|e| match e {
            deadpool::managed::PoolError::Backend(e) => anyhow::Error::new(e),
            e => anyhow::anyhow!("{e}"),
        });
        drop(first.with_context(|| format!("cannot connect to PostgreSQL at {}", config.display_url()))?);
        // Migrations wait for each other's lock and may rewrite big tables: no statement
        // timeout on their own short-lived pool.
        let migrations = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.connect_timeout)
            .connect_with(options.clone().options([("statement_timeout", "0")]))
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", config.display_url()))?;
        schema::prepare(&migrations, migrate).await?;
        migrations.close().await;
        let lock_pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool, lock_pool })
    }

    /// (schema version of the database, newest this binary knows).
    pub async fn schema_versions(config: &StorageConfig) -> anyhow::Result<(i64, i64)> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.connect_timeout)
            .connect_with(connect_options(config)?)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", config.display_url()))?;
        let applied = schema::applied_version(&pool).await?;
        pool.close().await;
        Ok((applied, schema::latest_version()))
    }

    /// A connection for one store call (or for whole-database work, `db copy`).
    pub(crate) async fn conn(&self) -> StoreResult<pool::Lease> {
        pool::take(&self.pool).await.map_err(|e| match e {
            deadpool::managed::PoolError::Backend(e) => backend(e),
            e => backend(anyhow::anyhow!("no PostgreSQL connection: {e}")),
        })
    }

    /// Runs one statement that changes rows, outside any longer transaction; how many changed.
    async fn execute(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> StoreResult<u64> {
        Ok(query.execute(&mut *self.conn().await?).await.map_err(backend)?.rows_affected())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn lock_user(&self, user_id: &str, wait: Duration) -> StoreResult<UserLock> {
        locks::lock_user(&self.lock_pool, user_id, wait).await
    }

    async fn health(&self) -> StoreResult<()> {
        // A read inside a transaction that writes nothing: the pool hands out a working
        // connection and the server answers.
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(backend)?;
        sqlx::query("SELECT count(*) FROM signing_keys").execute(&mut *tx).await.map_err(backend)?;
        tx.rollback().await.map_err(backend)
    }

    async fn usage(&self, now: UnixTime, active_since: &[UnixTime], with_groups: bool) -> StoreResult<Usage> {
        // One statement, one snapshot: the counts agree with each other.
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM users), \
                    (SELECT array_agg((SELECT count(*) FROM users WHERE updated_at >= s.t) ORDER BY s.o) \
                     FROM unnest($1::BIGINT[]) WITH ORDINALITY AS s(t, o)), \
                    (SELECT count(*) FROM browser_sessions WHERE ended_at IS NULL AND expires_at > $2)",
        )
        .bind(active_since)
        .bind(now)
        .fetch_one(&mut *self.conn().await?)
        .await
        .map_err(backend)?;
        let active: Option<Vec<i64>> = row.try_get(1).map_err(backend)?;
        let mut usage = Usage {
            users: row.try_get::<i64, _>(0).map_err(backend)? as u64,
            active_users: active.unwrap_or_default().into_iter().map(|n| n as u64).collect(),
            live_browser_sessions: row.try_get::<i64, _>(2).map_err(backend)? as u64,
            memberships: Vec::new(),
        };
        if with_groups {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT username, groups_json FROM users WHERE groups_json <> '[]' ORDER BY username COLLATE \"C\"",
            )
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(backend)?;
            for (username, groups) in rows {
                usage.memberships.push((username, serde_json::from_str(&groups).map_err(backend)?));
            }
        }
        Ok(usage)
    }

    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        // Spent codes are kept a day past expiry so a late replay still revokes what they issued.
        // (table, key column, what is purged)
        let tables = [
            ("pending_authorizations", "id", "expires_at <= $1"),
            ("upstream_attempts", "state_hash", "expires_at <= $1"),
            ("service_tokens", "token_hash", "expires_at <= $1"),
            ("authorization_codes", "code_hash", "expires_at <= $1 - 86400"),
            ("access_tokens", "token_hash", "expires_at <= $1"),
            ("refresh_tokens", "token_hash", "expires_at <= $1"),
            ("browser_sessions", "id", "expires_at <= $1 OR ended_at IS NOT NULL"),
            ("signing_keys", "kid", "expires_at IS NOT NULL AND GREATEST(expires_at, coalesce(verify_until, 0)) <= $1"),
            ("login_throttle", "key", "tat <= $1 * 1000000000"),
        ];
        let mut removed = 0u64;
        for (table, key, condition) in tables {
            // SKIP LOCKED: replicas purging at the same moment take different rows instead of
            // queueing on each other (or on a request holding one).
            let sql = format!(
                "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {condition} \
                 LIMIT {PURGE_BATCH} FOR UPDATE SKIP LOCKED)"
            );
            loop {
                let n = self.execute(sqlx::query(AssertSqlSafe(sql.clone())).bind(now)).await?;
                removed += n;
                if n < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(removed)
    }
}

/// Upstream trips kept per pending sign-in.
const ATTEMPTS_PER_PENDING: i64 = 4;
