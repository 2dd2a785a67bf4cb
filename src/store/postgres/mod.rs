//! PostgreSQL, for several replicas sharing one database (through sqlx's pool).
//!
//! Every guarantee the SQLite backend gets from its single writer thread is in the SQL here:
//! single use by conditional UPDATEs (PostgreSQL re-checks a racing row after the lock is
//! released), uniqueness by constraints mapped to typed errors, one active signing key by a
//! partial unique index. Each trait call is one transaction, so a replica that dies or loses the
//! database mid-call leaves nothing half-written. The per-user lock is a session advisory lock
//! held on a connection of its own pool, so a refresh waiting at a provider never starves the
//! pool that serves everyone else.

mod identities;
mod locks;
mod rows;
mod schema;
mod tokens;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{AssertSqlSafe, Row};

use self::rows::*;
use self::tokens::*;
use super::*;
use crate::config::StorageConfig;

type SqlResult<T> = Result<T, sqlx::Error>;

/// A pooled connection idle this long is pinged before use (see [`PostgresStore::open`]).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub struct PostgresStore {
    pool: PgPool,
    /// Connections that hold per-user advisory locks (see [`locks`]).
    lock_pool: PgPool,
}

fn backend(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Backend(e.into())
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
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            // sqlx pings a connection (a round trip) when it goes back to the pool and, by
            // default, again when it is taken out: on a busy replica that is one round trip per
            // store call for a check made microseconds earlier. Ping on acquire only connections
            // idle for a while (the database may have gone since); a fresh one that broke fails
            // its one call with a clear error and its release ping drops it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", config.display_url()))?;
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

    /// The pool behind the store, for whole-database work (`db copy`).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(backend)
    }

    async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        self.pool.acquire().await.map_err(backend)
    }

    /// Runs one statement that changes rows, outside any longer transaction; how many changed.
    async fn execute(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> StoreResult<u64> {
        Ok(query.execute(&self.pool).await.map_err(backend)?.rows_affected())
    }
}

/// A private key's two columns: in the clear, or sealed; the other one NULL.
fn private_columns(key: &StoredPrivateKey) -> (Option<&[u8]>, Option<&str>) {
    match key {
        StoredPrivateKey::Plain(der) => (Some(der), None),
        StoredPrivateKey::Sealed(sealed) => (None, Some(sealed)),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn record_upstream_login(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User> {
        self.upsert_identity(identity, upstream, now, true).await
    }

    async fn record_recheck(
        &self,
        identity: &UpstreamIdentity,
        upstream: &UpstreamRecord,
        now: UnixTime,
    ) -> StoreResult<User> {
        self.upsert_identity(identity, upstream, now, false).await
    }

    async fn login_target(
        &self,
        identity: &UpstreamIdentity,
        link_by_verified_email: bool,
    ) -> StoreResult<Option<LoginTarget>> {
        let mut conn = self.conn().await?;
        let Some(owner) = identities::owner_of(&mut conn, identity, link_by_verified_email).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let primary = !owner.linked_by_email
            && identities::is_primary_identity(&mut conn, &owner.user_id, identity).await.map_err(backend)?;
        let user = user_by(&mut conn, UserKey::Id, &owner.user_id).await.map_err(backend)?;
        Ok(user.map(|user| LoginTarget { user, primary }))
    }

    async fn upstream_of(&self, connector_id: &str, subject: &str) -> StoreResult<Option<StoredUpstream>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS} FROM user_identities i WHERE i.connector_id = $1 AND i.upstream_subject = $2"
        )))
        .bind(connector_id)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| stored_upstream_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn upstream_for_user(&self, user_id: &str) -> StoreResult<Option<StoredUpstream>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS} FROM user_identities i WHERE i.user_id = $1 \
             ORDER BY i.refreshed_at DESC NULLS LAST LIMIT 1"
        )))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| stored_upstream_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn link_identity(&self, user_id: &str, connector_id: &str, subject: &str, now: UnixTime) -> StoreResult<()> {
        // Insert first: the primary key says whether someone else holds the account.
        let holder: Option<String> = sqlx::query_scalar(
            "WITH added AS (INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING user_id) \
             SELECT user_id FROM added UNION ALL \
             SELECT user_id FROM user_identities WHERE connector_id = $1 AND upstream_subject = $2 LIMIT 1",
        )
        .bind(connector_id)
        .bind(subject)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        match holder {
            Some(h) if h == user_id => Ok(()),
            _ => Err(StoreError::IdentityTaken { connector_id: connector_id.into(), subject: subject.into() }),
        }
    }

    async fn all_identities(&self) -> StoreResult<Vec<(StoredUpstream, String)>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS}, u.username FROM user_identities i JOIN users u ON u.id = i.user_id \
             ORDER BY u.username, i.created_at, i.seq"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| Ok((stored_upstream_from_row(r)?, r.try_get::<String, _>(8)?)))
            .collect::<SqlResult<Vec<_>>>()
            .map_err(backend)
    }

    async fn identity_of_user(&self, user_id: &str, connector_id: &str) -> StoreResult<Option<StoredUpstream>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {UPSTREAM_COLUMNS} FROM user_identities i WHERE i.user_id = $1 AND i.connector_id = $2 \
             ORDER BY i.refreshed_at DESC NULLS LAST LIMIT 1"
        )))
        .bind(user_id)
        .bind(connector_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| stored_upstream_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn update_upstream_tokens(
        &self,
        connector_id: &str,
        subject: &str,
        tokens_sealed: Option<&str>,
        tokens_expire_at: Option<UnixTime>,
    ) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "UPDATE user_identities SET tokens_sealed = $1, tokens_expire_at = $2 \
                 WHERE connector_id = $3 AND upstream_subject = $4",
            )
            .bind(tokens_sealed)
            .bind(tokens_expire_at)
            .bind(connector_id)
            .bind(subject),
        )
        .await?;
        Ok(())
    }

    async fn create_service_token(&self, t: &ServiceToken) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO service_tokens (token_hash, client_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&t.token_hash)
            .bind(&t.client_id)
            .bind(&t.scope)
            .bind(t.created_at)
            .bind(t.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn service_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<ServiceToken>> {
        let row: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT token_hash, client_id, scope, created_at, expires_at FROM service_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(|(token_hash, client_id, scope, created_at, expires_at)| ServiceToken {
            token_hash,
            client_id,
            scope,
            created_at,
            expires_at,
        }))
    }

    async fn revoke_service_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE service_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(hash),
            )
            .await?;
        Ok(n == 1)
    }

    async fn revoke_user(&self, user_id: &str, reason: &str, now: UnixTime) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let grants = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        sqlx::query("UPDATE browser_sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(grants)
    }

    async fn create_upstream_attempt(&self, a: &UpstreamAttempt) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO upstream_attempts (state_hash, pending_id, connector_id, pkce_verifier, nonce, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.state_hash)
        .bind(&a.pending_id)
        .bind(&a.connector_id)
        .bind(&a.pkce_verifier)
        .bind(&a.nonce)
        .bind(a.created_at)
        .bind(a.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Reloading the login page starts a new trip each time: keep only the newest few.
        sqlx::query(
            "DELETE FROM upstream_attempts WHERE state_hash IN (SELECT state_hash FROM upstream_attempts \
             WHERE pending_id = $1 ORDER BY created_at DESC, state_hash OFFSET $2)",
        )
        .bind(&a.pending_id)
        .bind(ATTEMPTS_PER_PENDING)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM upstream_attempts WHERE state_hash = $1 AND expires_at > $2"
        )))
        .bind(state_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| attempt_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn take_upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        let taken = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM upstream_attempts WHERE state_hash = $1 RETURNING {ATTEMPT_COLUMNS}"
        )))
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| attempt_from_row(&r).map_err(backend))
        .transpose()?;
        Ok(taken.filter(|a| a.expires_at > now))
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        user_by(&mut *self.conn().await?, UserKey::Id, id).await.map_err(backend)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        user_by(&mut *self.conn().await?, UserKey::Username, username).await.map_err(backend)
    }

    async fn create_browser_session(&self, s: &BrowserSession) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO browser_sessions (id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&s.id)
            .bind(&s.token_hash)
            .bind(&s.user_id)
            .bind(&s.connector_id)
            .bind(&s.csrf_token)
            .bind(s.auth_time)
            .bind(s.created_at)
            .bind(s.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn browser_session(&self, token_hash: &str, now: UnixTime) -> StoreResult<Option<BrowserSession>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM browser_sessions WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2"
        )))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| session_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        self.execute(
            sqlx::query("UPDATE browser_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(now)
                .bind(id),
        )
        .await?;
        Ok(())
    }

    async fn create_pending_authorization(
        &self,
        p: &PendingAuthorization,
        limits: PendingLimits,
    ) -> StoreResult<PendingAdmission> {
        let mut tx = self.begin().await?;
        // The caps count rows other replicas insert at the same moment: one transaction-scoped
        // lock makes count-then-insert a single step across replicas (held for a few
        // statements; sign-ins start far less often than tokens are used).
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(locks::PENDING_CAPS)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // Under the lock, one statement counts, makes room among the browser's newest (with the
        // trips to providers the dropped ones started) and inserts, so the lock every sign-in
        // start waits for is held for this round trip and the commit, not five (bench/storm:
        // a burst of sign-ins queues on it). Its snapshot is taken after the lock was granted,
        // so it sees every row the previous holder committed.
        let (total, stored): (i64, bool) = sqlx::query_as(
            "WITH counts AS (SELECT count(*) AS total, count(*) FILTER (WHERE client_address = $5) AS here \
             FROM pending_authorizations WHERE expires_at > $6), \
             admitted AS (SELECT 1 FROM counts WHERE total < $8 AND ($5 = '' OR here < $9)), \
             dropped AS (DELETE FROM pending_authorizations WHERE EXISTS (SELECT 1 FROM admitted) AND id IN \
             (SELECT id FROM pending_authorizations WHERE browser_binding_hash = $3 ORDER BY created_at DESC, id OFFSET $10) \
             RETURNING id), \
             attempts AS (DELETE FROM upstream_attempts WHERE pending_id IN (SELECT id FROM dropped)), \
             stored AS (INSERT INTO pending_authorizations \
             (id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 FROM admitted RETURNING 1) \
             SELECT total, EXISTS (SELECT 1 FROM stored) FROM counts",
        )
        .bind(&p.id)
        .bind(&p.request_json)
        .bind(&p.browser_binding_hash)
        .bind(&p.csrf_token)
        .bind(&p.client_address)
        .bind(p.created_at)
        .bind(p.expires_at)
        .bind(i64::from(limits.total))
        .bind(i64::from(limits.per_address))
        .bind(i64::from(limits.per_browser.saturating_sub(1)))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if !stored {
            // Nothing changed: the transaction ends with its lock when `tx` drops.
            // Not admitted: the total cap first, as before; else the address was full.
            return Ok(if total >= i64::from(limits.total) {
                PendingAdmission::Full
            } else {
                PendingAdmission::AddressFull
            });
        }
        tx.commit().await.map_err(backend)?;
        Ok(PendingAdmission::Stored)
    }

    async fn pending_authorization(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PENDING_COLUMNS} FROM pending_authorizations WHERE id = $1 AND expires_at > $2"
        )))
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| pending_from_row(&r).map_err(backend))
        .transpose()
    }

    async fn delete_pending_authorization(&self, id: &str) -> StoreResult<bool> {
        Ok(self.execute(sqlx::query("DELETE FROM pending_authorizations WHERE id = $1").bind(id)).await? == 1)
    }

    async fn create_authorization_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&c.code_hash)
            .bind(&c.client_id)
            .bind(&c.user_id)
            .bind(&c.session_id)
            .bind(&c.request_json)
            .bind(c.auth_time)
            .bind(c.created_at)
            .bind(c.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<StoredCode>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS}, used_at IS NOT NULL FROM authorization_codes WHERE code_hash = $1"
        )))
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| Ok(StoredCode { code: code_from_row(&r)?, spent: r.try_get(8)? }))
        .transpose()
        .map_err(|e: sqlx::Error| backend(e))
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        grant: &Grant,
        tokens: &IssuedTokens,
        now: UnixTime,
    ) -> StoreResult<CodeRedemption> {
        let mut tx = self.begin().await?;
        let outcome = redeem_code(&mut tx, code_hash, grant, tokens, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }

    async fn create_grant(&self, grant: &Grant, tokens: &IssuedTokens) -> StoreResult<()> {
        // One statement: no transaction around it needed.
        insert_tokens(&mut *self.conn().await?, &grant.id, tokens, Lead::Grant(grant)).await.map_err(backend)?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        client_id: &str,
        now: UnixTime,
        reuse_grace: UnixTime,
        issue: IssueOnRotation,
    ) -> StoreResult<RefreshRotation> {
        let mut tx = self.begin().await?;
        let outcome = rotate_refresh(&mut tx, old_hash, client_id, now, reuse_grace, issue).await?;
        match outcome {
            // Nothing changed: no need to keep anything.
            RefreshRotation::Invalid | RefreshRotation::Declined => tx.rollback().await.map_err(backend)?,
            _ => tx.commit().await.map_err(backend)?,
        }
        Ok(outcome)
    }

    async fn refresh_token_holder(&self, hash: &str, client_id: &str, now: UnixTime) -> StoreResult<Option<User>> {
        let found = presented_refresh(&mut *self.conn().await?, hash).await.map_err(backend)?;
        Ok(found.filter(|p| p.grant.client_id == client_id && !p.grant_revoked && p.expires_at > now).map(|p| p.user))
    }

    async fn access_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<AccessTokenRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, a.scope, a.created_at, a.expires_at \
             FROM access_tokens a JOIN grants g ON g.id = a.grant_id JOIN users u ON u.id = g.user_id \
             WHERE a.token_hash = $1 AND a.revoked_at IS NULL AND a.expires_at > $2 AND g.revoked_at IS NULL"
        )))
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| {
            Ok(AccessTokenRecord {
                grant: grant_from_row(&r)?,
                user: user_from_row(&r, GRANT_WIDTH)?,
                scope: r.try_get(AFTER_GRANT_USER)?,
                created_at: r.try_get(AFTER_GRANT_USER + 1)?,
                expires_at: r.try_get(AFTER_GRANT_USER + 2)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| backend(e))
    }

    async fn refresh_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, r.created_at, r.expires_at \
             FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
             WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > $2 AND g.revoked_at IS NULL"
        )))
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| {
            Ok(RefreshTokenRecord {
                grant: grant_from_row(&r)?,
                user: user_from_row(&r, GRANT_WIDTH)?,
                created_at: r.try_get(AFTER_GRANT_USER)?,
                expires_at: r.try_get(AFTER_GRANT_USER + 1)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| backend(e))
    }

    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(hash),
            )
            .await?;
        Ok(n == 1)
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()> {
        revoke_grant_in(&mut *self.conn().await?, grant_id, reason, now).await.map_err(backend)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        type KeyRow = (String, String, Option<Vec<u8>>, Option<String>, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, expires_at, verify_until \
             FROM signing_keys",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut keys = Vec::with_capacity(rows.len());
        for (kid, alg, plain, sealed, created_at, rotated_at, expires_at, verify_until) in rows {
            let alg = SigningAlgorithm::parse(&alg)
                .ok_or_else(|| backend(anyhow::anyhow!("stored key {kid} has unknown algorithm {alg:?}")))?;
            // The table's CHECK keeps exactly one of the two.
            let private_key = match (sealed, plain) {
                (Some(sealed), _) => StoredPrivateKey::Sealed(sealed),
                (None, Some(plain)) => StoredPrivateKey::Plain(plain),
                (None, None) => return Err(backend(anyhow::anyhow!("stored key {kid} has no private half"))),
            };
            keys.push(StoredSigningKey { kid, alg, private_key, created_at, rotated_at, expires_at, verify_until });
        }
        Ok(keys)
    }

    async fn create_first_signing_key(&self, k: &StoredSigningKey, now: UnixTime) -> StoreResult<bool> {
        let (plain, sealed) = private_columns(&k.private_key);
        // Check and insert in one statement; of replicas starting together, the partial unique
        // index lets one insert and the others' ON CONFLICT do nothing.
        let n = self
            .execute(
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at) \
                     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                     (SELECT 1 FROM signing_keys WHERE alg = $2 AND rotated_at IS NULL \
                      AND (expires_at IS NULL OR expires_at > $6)) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&k.kid)
                .bind(k.alg.as_str())
                .bind(plain)
                .bind(sealed)
                .bind(k.created_at)
                .bind(now),
            )
            .await?;
        Ok(n == 1)
    }

    async fn replace_signing_key_private(&self, kid: &str, private_key: &StoredPrivateKey) -> StoreResult<()> {
        let (plain, sealed) = private_columns(private_key);
        self.execute(
            sqlx::query("UPDATE signing_keys SET private_pkcs8 = $1, private_sealed = $2 WHERE kid = $3")
                .bind(plain)
                .bind(sealed)
                .bind(kid),
        )
        .await?;
        Ok(())
    }

    async fn rotate_signing_key(
        &self,
        k: &StoredSigningKey,
        rotated_at: UnixTime,
        expires_at: UnixTime,
        verify_until: UnixTime,
    ) -> StoreResult<()> {
        let (plain, sealed) = private_columns(&k.private_key);
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET rotated_at = $1, expires_at = $2, verify_until = $3 WHERE alg = $4 AND rotated_at IS NULL",
        )
        .bind(rotated_at)
        .bind(expires_at)
        .bind(verify_until)
        .bind(k.alg.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.kid)
        .bind(k.alg.as_str())
        .bind(plain)
        .bind(sealed)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn create_invite(&self, i: &Invite) -> StoreResult<()> {
        let groups = serde_json::to_string(&i.groups).map_err(backend)?;
        self.execute(
            sqlx::query(
                "INSERT INTO invites (id, token_hash, note, groups_json, connector_id, max_uses, uses, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&i.id)
            .bind(&i.token_hash)
            .bind(&i.note)
            .bind(groups)
            .bind(&i.connector_id)
            .bind(i.max_uses)
            .bind(i.uses)
            .bind(i.created_at)
            .bind(i.expires_at)
            .bind(i.revoked_at),
        )
        .await?;
        Ok(())
    }

    async fn invites(&self) -> StoreResult<Vec<Invite>> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {INVITE_COLUMNS} FROM invites i ORDER BY i.created_at DESC")))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter().map(invite_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn invite_by_token(&self, token_hash: &str) -> StoreResult<Option<Invite>> {
        sqlx::query(AssertSqlSafe(format!("SELECT {INVITE_COLUMNS} FROM invites i WHERE i.token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|r| invite_from_row(&r).map_err(backend))
            .transpose()
    }

    async fn revoke_invite(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE invites SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id),
            )
            .await?;
        Ok(n == 1)
    }

    async fn redeem_invite(&self, id: &str, user_id: &str, now: UnixTime) -> StoreResult<Redemption> {
        let mut tx = self.begin().await?;
        // The redemption row first: only a person not counted before takes a place, and of two
        // racing redemptions by one person only the one that inserted counts. The count is a
        // conditional UPDATE: racing newcomers queue on the invite's row and each re-checks
        // the places left.
        let first_time = sqlx::query(
            "INSERT INTO invite_redemptions (invite_id, user_id, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        let open = if first_time {
            "UPDATE invites SET uses = uses + 1 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             AND (max_uses IS NULL OR uses < max_uses)"
        } else {
            "SELECT 1 FROM invites WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2"
        };
        let still_open =
            sqlx::query(open).bind(id).bind(now).execute(&mut *tx).await.map_err(backend)?.rows_affected() == 1;
        if still_open {
            tx.commit().await.map_err(backend)?;
            return Ok(Redemption::Redeemed);
        }
        // No place left (or no longer open): this person was not let in, and nothing is kept.
        tx.rollback().await.map_err(backend)?;
        Ok(Redemption::Closed)
    }

    async fn invites_of_user(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<Invite>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM invites i JOIN invite_redemptions r ON r.invite_id = i.id \
             WHERE r.user_id = $1 AND i.revoked_at IS NULL AND i.expires_at > $2"
        )))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(invite_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO audit_events (at, kind, reason, username, user_id, connector_id, client_id, request_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.reason)
            .bind(&e.username)
            .bind(&e.user_id)
            .bind(&e.connector_id)
            .bind(&e.client_id)
            .bind(&e.request_id)
            .bind(&e.detail),
        )
        .await?;
        Ok(())
    }

    async fn audit_events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {AUDIT_COLUMNS} FROM audit_events ORDER BY id DESC LIMIT $1")))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter().map(audit_from_row).collect::<SqlResult<_>>().map_err(backend)
    }

    async fn lock_user(&self, user_id: &str, wait: Duration) -> StoreResult<UserLock> {
        locks::lock_user(&self.lock_pool, user_id, wait).await
    }

    async fn health(&self) -> StoreResult<()> {
        // A read inside a transaction that writes nothing: the pool hands out a working
        // connection and the server answers.
        let mut tx = self.begin().await?;
        sqlx::query("SELECT count(*) FROM signing_keys").execute(&mut *tx).await.map_err(backend)?;
        tx.rollback().await.map_err(backend)
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
