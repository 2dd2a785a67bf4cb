//! The embedded default: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time; concurrent write transactions that start as readers fail
//! with "database is locked" instead of waiting. So every write goes through a one-connection
//! pool (one writer path), reads use their own pool, and `busy_timeout` covers other processes
//! (the CLI) touching the same file.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use super::*;

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

fn backend(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Backend(e.into())
}

const USER_COLUMNS: &str =
    "u.id, u.username, u.name, u.email, u.email_verified, u.groups_json, u.created_at, u.updated_at, u.last_login_at";
const GRANT_COLUMNS: &str = "g.id AS g_id, g.client_id, g.user_id, g.session_id, g.scope AS g_scope, g.auth_time, g.created_at AS g_created_at";

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    let groups_json: String = row.try_get("groups_json").map_err(backend)?;
    Ok(User {
        id: row.try_get("id").map_err(backend)?,
        username: row.try_get("username").map_err(backend)?,
        name: row.try_get("name").map_err(backend)?,
        email: row.try_get("email").map_err(backend)?,
        email_verified: row.try_get::<i64, _>("email_verified").map_err(backend)? != 0,
        groups: serde_json::from_str(&groups_json).map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        updated_at: row.try_get("updated_at").map_err(backend)?,
        last_login_at: row.try_get("last_login_at").map_err(backend)?,
    })
}

fn grant_from_row(row: &SqliteRow) -> StoreResult<Grant> {
    Ok(Grant {
        id: row.try_get("g_id").map_err(backend)?,
        client_id: row.try_get("client_id").map_err(backend)?,
        user_id: row.try_get("user_id").map_err(backend)?,
        session_id: row.try_get("session_id").map_err(backend)?,
        scope: row.try_get("g_scope").map_err(backend)?,
        auth_time: row.try_get("auth_time").map_err(backend)?,
        created_at: row.try_get("g_created_at").map_err(backend)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path`) and migrates it.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open SQLite database {url:?}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("database migration failed")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("cannot open SQLite database {url:?} for reading"))?;
        Ok(Self { reader, writer })
    }

    async fn insert_tokens(
        tx: &mut sqlx::SqliteConnection,
        grant_id: &str,
        tokens: &IssuedTokens,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO access_tokens (token_hash, grant_id, scope, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&tokens.access_hash)
            .bind(grant_id)
            .bind(&tokens.access_scope)
            .bind(tokens.created_at)
            .bind(tokens.access_expires_at)
            .execute(&mut *tx)
            .await?;
        if let Some((hash, expires_at)) = &tokens.refresh {
            sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
                .bind(hash)
                .bind(grant_id)
                .bind(tokens.created_at)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn revoke_grant_in(
        tx: &mut sqlx::SqliteConnection,
        grant_id: &str,
        reason: &str,
        now: UnixTime,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(grant_id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_user_for_identity(
        &self,
        identity: &UpstreamIdentity,
        now: UnixTime,
    ) -> StoreResult<User> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM user_identities WHERE connector_id = ? AND upstream_subject = ?",
        )
        .bind(&identity.connector_id)
        .bind(&identity.subject)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let holder: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = ?")
            .bind(&identity.username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let groups = serde_json::to_string(&identity.groups).map_err(backend)?;
        let user_id = match existing {
            Some(user_id) => {
                if holder.as_deref().is_some_and(|h| h != user_id) {
                    return Err(StoreError::UsernameTaken(identity.username.clone()));
                }
                sqlx::query(
                    "UPDATE users SET username = ?, name = ?, email = ?, email_verified = ?, groups_json = ?, \
                     updated_at = ?, last_login_at = ? WHERE id = ?",
                )
                .bind(&identity.username)
                .bind(&identity.name)
                .bind(&identity.email)
                .bind(identity.email_verified as i64)
                .bind(&groups)
                .bind(now)
                .bind(now)
                .bind(&user_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                user_id
            }
            None => {
                if holder.is_some() {
                    return Err(StoreError::UsernameTaken(identity.username.clone()));
                }
                let user_id = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO users (id, username, name, email, email_verified, groups_json, created_at, updated_at, last_login_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&user_id)
                .bind(&identity.username)
                .bind(&identity.name)
                .bind(&identity.email)
                .bind(identity.email_verified as i64)
                .bind(&groups)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                sqlx::query("INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES (?, ?, ?, ?)")
                    .bind(&identity.connector_id)
                    .bind(&identity.subject)
                    .bind(&user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                user_id
            }
        };
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(&user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let user = user_from_row(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_browser_session(&self, s: &BrowserSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO browser_sessions (id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.token_hash)
        .bind(&s.user_id)
        .bind(&s.connector_id)
        .bind(&s.csrf_token)
        .bind(s.auth_time)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn browser_session(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<BrowserSession>> {
        let row = sqlx::query(
            "SELECT id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at FROM browser_sessions \
             WHERE token_hash = ? AND ended_at IS NULL AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.map(|r| -> Result<_, sqlx::Error> {
            Ok(BrowserSession {
                id: r.try_get("id")?,
                token_hash: r.try_get("token_hash")?,
                user_id: r.try_get("user_id")?,
                connector_id: r.try_get("connector_id")?,
                csrf_token: r.try_get("csrf_token")?,
                auth_time: r.try_get("auth_time")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        sqlx::query("UPDATE browser_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_pending_authorization(&self, p: &PendingAuthorization) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO pending_authorizations (id, request_json, browser_binding_hash, csrf_token, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.id)
        .bind(&p.request_json)
        .bind(&p.browser_binding_hash)
        .bind(&p.csrf_token)
        .bind(p.created_at)
        .bind(p.expires_at)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn pending_authorization(
        &self,
        id: &str,
        now: UnixTime,
    ) -> StoreResult<Option<PendingAuthorization>> {
        let row = sqlx::query(
            "SELECT id, request_json, browser_binding_hash, csrf_token, created_at, expires_at FROM pending_authorizations \
             WHERE id = ? AND expires_at > ?",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.map(|r| -> Result<_, sqlx::Error> {
            Ok(PendingAuthorization {
                id: r.try_get("id")?,
                request_json: r.try_get("request_json")?,
                browser_binding_hash: r.try_get("browser_binding_hash")?,
                csrf_token: r.try_get("csrf_token")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
        .map_err(backend)
    }

    async fn delete_pending_authorization(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM pending_authorizations WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_authorization_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(&c.session_id)
        .bind(&c.request_json)
        .bind(c.auth_time)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        now: UnixTime,
    ) -> StoreResult<CodeRedemption> {
        // The conditional UPDATE is the single-use guarantee: of two racing redemptions, one wins.
        let row = sqlx::query(
            "UPDATE authorization_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL \
             RETURNING code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        if let Some(r) = row {
            let code = (|| -> Result<_, sqlx::Error> {
                Ok(AuthorizationCode {
                    code_hash: r.try_get("code_hash")?,
                    client_id: r.try_get("client_id")?,
                    user_id: r.try_get("user_id")?,
                    session_id: r.try_get("session_id")?,
                    request_json: r.try_get("request_json")?,
                    auth_time: r.try_get("auth_time")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })()
            .map_err(backend)?;
            return Ok(CodeRedemption::Redeemed(code));
        }
        let used: Option<Option<String>> =
            sqlx::query_scalar("SELECT grant_id FROM authorization_codes WHERE code_hash = ?")
                .bind(code_hash)
                .fetch_optional(&self.writer)
                .await
                .map_err(backend)?;
        Ok(match used {
            Some(grant_id) => CodeRedemption::Replayed { grant_id },
            None => CodeRedemption::Unknown,
        })
    }

    async fn create_grant(
        &self,
        grant: &Grant,
        tokens: &IssuedTokens,
        from_code: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO grants (id, client_id, user_id, session_id, scope, auth_time, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&grant.id)
        .bind(&grant.client_id)
        .bind(&grant.user_id)
        .bind(&grant.session_id)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(grant.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        Self::insert_tokens(&mut tx, &grant.id, tokens)
            .await
            .map_err(backend)?;
        if let Some(code_hash) = from_code {
            sqlx::query("UPDATE authorization_codes SET grant_id = ? WHERE code_hash = ?")
                .bind(&grant.id)
                .bind(code_hash)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        client_id: &str,
        new_tokens: &IssuedTokens,
        now: UnixTime,
    ) -> StoreResult<RefreshRotation> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let row = sqlx::query(&format!(
            "SELECT r.used_at, r.expires_at AS r_expires_at, g.revoked_at, {GRANT_COLUMNS}, {USER_COLUMNS} \
             FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
             WHERE r.token_hash = ?"
        ))
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(RefreshRotation::Invalid);
        };
        let grant = grant_from_row(&row)?;
        let used_at: Option<i64> = row.try_get("used_at").map_err(backend)?;
        let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(backend)?;
        let expires_at: i64 = row.try_get("r_expires_at").map_err(backend)?;
        // A token presented by another client is not "reuse" by its owner: refuse, change nothing.
        if grant.client_id != client_id || revoked_at.is_some() || expires_at <= now {
            return Ok(RefreshRotation::Invalid);
        }
        if used_at.is_some() {
            Self::revoke_grant_in(&mut tx, &grant.id, "refresh token reuse", now)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            return Ok(RefreshRotation::Reused { grant_id: grant.id });
        }
        let user = user_from_row(&row)?;
        sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?")
            .bind(now)
            .bind(old_hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        Self::insert_tokens(&mut tx, &grant.id, new_tokens)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(RefreshRotation::Rotated {
            grant,
            user: Box::new(user),
        })
    }

    async fn access_token(
        &self,
        hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AccessTokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT a.scope AS a_scope, a.created_at AS a_created_at, a.expires_at AS a_expires_at, {GRANT_COLUMNS}, {USER_COLUMNS} \
             FROM access_tokens a JOIN grants g ON g.id = a.grant_id JOIN users u ON u.id = g.user_id \
             WHERE a.token_hash = ? AND a.revoked_at IS NULL AND a.expires_at > ? AND g.revoked_at IS NULL"
        ))
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AccessTokenRecord {
            grant: grant_from_row(&row)?,
            user: user_from_row(&row)?,
            scope: row.try_get("a_scope").map_err(backend)?,
            created_at: row.try_get("a_created_at").map_err(backend)?,
            expires_at: row.try_get("a_expires_at").map_err(backend)?,
        }))
    }

    async fn refresh_token(
        &self,
        hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT r.created_at AS r_created_at, r.expires_at AS r_expires_at, {GRANT_COLUMNS}, {USER_COLUMNS} \
             FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
             WHERE r.token_hash = ? AND r.used_at IS NULL AND r.expires_at > ? AND g.revoked_at IS NULL"
        ))
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RefreshTokenRecord {
            grant: grant_from_row(&row)?,
            user: user_from_row(&row)?,
            created_at: row.try_get("r_created_at").map_err(backend)?,
            expires_at: row.try_get("r_expires_at").map_err(backend)?,
        }))
    }

    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(hash)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(backend)?;
        Self::revoke_grant_in(&mut conn, grant_id, reason, now)
            .await
            .map_err(backend)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_pkcs8, created_at, rotated_at, expires_at FROM signing_keys",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let alg: String = r.try_get("alg").map_err(backend)?;
                Ok(StoredSigningKey {
                    kid: r.try_get("kid").map_err(backend)?,
                    alg: SigningAlgorithm::parse(&alg).ok_or_else(|| {
                        backend(anyhow::anyhow!("stored key has unknown algorithm {alg:?}"))
                    })?,
                    private_pkcs8: r.try_get("private_pkcs8").map_err(backend)?,
                    created_at: r.try_get("created_at").map_err(backend)?,
                    rotated_at: r.try_get("rotated_at").map_err(backend)?,
                    expires_at: r.try_get("expires_at").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, k: &StoredSigningKey) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (kid, alg, private_pkcs8, created_at, rotated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&k.kid)
            .bind(k.alg.as_str())
            .bind(&k.private_pkcs8)
            .bind(k.created_at)
            .bind(k.rotated_at)
            .bind(k.expires_at)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn retire_signing_keys(
        &self,
        alg: SigningAlgorithm,
        rotated_at: UnixTime,
        expires_at: UnixTime,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET rotated_at = ?, expires_at = ? WHERE alg = ? AND rotated_at IS NULL")
            .bind(rotated_at)
            .bind(expires_at)
            .bind(alg.as_str())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        // Spent codes are kept a day past expiry so a late replay still revokes what they issued.
        let statements = [
            "DELETE FROM pending_authorizations WHERE expires_at <= ?1",
            "DELETE FROM authorization_codes WHERE expires_at <= ?1 - 86400",
            "DELETE FROM access_tokens WHERE expires_at <= ?1",
            "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
            "DELETE FROM browser_sessions WHERE expires_at <= ?1 OR ended_at IS NOT NULL",
            "DELETE FROM signing_keys WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        ];
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let mut removed = 0;
        for sql in statements {
            removed += sqlx::query(sql)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(removed)
    }
}
