//! The embedded default: one SQLite file in WAL mode, through rusqlite.
//!
//! Reads take microseconds, so they run right on the async worker on a small pool of read-only
//! connections, which WAL lets run beside the writer (a thread hop per read, not SQLite, would
//! dominate their cost). SQLite allows one writer at a time: every write goes to the one writer
//! thread ([`writer`]), which commits queued writes together in `IMMEDIATE` transactions (so they
//! never fail half-way with "database is locked"); `busy_timeout` covers other processes such as
//! the CLI touching the same file.

mod files;
mod identities;
mod rows;
mod tokens;
mod vacuum;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{named_params, params, Connection, OpenFlags, OptionalExtension, Row};
use rusqlite_migration::{Migrations, M};

pub use self::files::create_private_dir;
use self::identities::*;
use self::rows::*;
use self::tokens::*;
use self::vacuum::*;
use self::writer::Writer;
use super::*;

const READERS: usize = 4;
/// SQLite's default: checkpoint once the WAL holds ~4 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 1000;
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

pub struct SqliteStore {
    writer: Writer,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn backend(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Backend(e.into())
}

/// The columns of the UNIQUE (or primary key) constraint a statement broke, as SQLite names
/// them (`users.username`), so the callers can answer with a typed error.
fn unique_violation(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            msg.strip_prefix("UNIQUE constraint failed: ")
        }
        _ => None,
    }
}

/// A write about `identity` that broke a uniqueness rule: whose username or account it was.
fn identity_conflict(identity: &UpstreamIdentity) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match unique_violation(&e) {
        Some(c) if c.starts_with("users.username") => StoreError::UsernameTaken(identity.username.clone()),
        Some(c) if c.starts_with("user_identities.") => {
            StoreError::IdentityTaken { connector_id: identity.connector_id.clone(), subject: identity.subject.clone() }
        }
        _ => backend(e),
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic elsewhere cannot leave a connection half-used: SQLite rolls back on its own.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../../migrations/sqlite/0001_init.sql")),
        M::up(include_str!("../../../migrations/sqlite/0002_refresh_token_chain.sql")),
        M::up(include_str!("../../../migrations/sqlite/0003_sealed_signing_keys.sql")),
        M::up(include_str!("../../../migrations/sqlite/0004_signing_key_trust.sql")),
        M::up(include_str!("../../../migrations/sqlite/0005_pending_limits.sql")),
        M::up(include_str!("../../../migrations/sqlite/0006_one_active_signing_key.sql")),
    ])
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATION_COUNT as i64
}

const MIGRATION_COUNT: usize = 6;

/// The schema version of the database in `conn` (SQLite's `user_version`; 0 when new).
pub fn applied_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// One process owns a SQLite file, so there are no rolling upgrades to allow for: a newer schema
/// is refused, and an older one too unless migrating is allowed.
fn check_version(conn: &Connection, path: &std::path::Path, migrate: Migrate) -> anyhow::Result<()> {
    let (applied, latest) = (applied_version(conn)?, latest_version());
    anyhow::ensure!(
        applied <= latest,
        "{} has schema version {applied}, newer than this hubauth (it knows up to {latest}): run the newer \
         hubauth, or restore a backup taken before the upgrade",
        path.display()
    );
    anyhow::ensure!(
        applied == latest || migrate == Migrate::Apply,
        "{} has schema version {applied} and this hubauth needs version {latest}: run `hubauth db migrate \
         --config …` (or set [storage] migrate = true)",
        path.display()
    );
    Ok(())
}

/// `sqlite://path/to/file.db` (optionally with a `?…` that is ignored) → the file path.
fn path_of(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url.strip_prefix("sqlite://").with_context(|| format!("{url:?} is not a sqlite:// URL"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    anyhow::ensure!(!file.is_empty(), "{url:?} names no file");
    Ok(PathBuf::from(file))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Reads through a memory map instead of one pread() per page.
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path`) and migrates it.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with(url, Migrate::Apply).await
    }

    /// Opens the database at `url`; with [`Migrate::Refuse`], an outdated schema is an error
    /// instead of being upgraded. A schema newer than this binary always is.
    pub async fn open_with(url: &str, migrate: Migrate) -> anyhow::Result<Self> {
        let path = path_of(url)?;
        files::prepare_private_database(&path)?;
        let mut writer =
            Connection::open(&path).with_context(|| format!("cannot open SQLite database {}", path.display()))?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot switch {} to WAL mode", path.display()))?;
        configure(&writer)?;
        enable_incremental_vacuum(&writer)?;
        check_version(&writer, &path, migrate)?;
        migrations()
            .to_latest(&mut writer)
            .with_context(|| format!("database migration of {} failed", path.display()))?;
        // Checkpoints run on the writer thread, after a commit, between batches: with no write
        // landing in the middle, each one copies the whole WAL back and the next write starts it
        // over. (Checkpointing from another connection under steady writes never catches up, and
        // the WAL grows without end.) The size limit hands the space back after a burst.
        writer.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r =
                Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .with_context(|| format!("cannot open {} for reading", path.display()))?;
            configure(&r)?;
            readers.push(Mutex::new(r));
        }
        Ok(Self { writer: Writer::spawn(writer)?, readers, next_reader: AtomicUsize::new(0) })
    }

    /// (schema version of the file, newest this binary knows); 0 for a file that does not exist.
    pub fn schema_versions(url: &str) -> anyhow::Result<(i64, i64)> {
        let path = path_of(url)?;
        if !path.exists() {
            return Ok((0, latest_version()));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok((applied_version(&conn)?, latest_version()))
    }

    /// A free read connection if there is one, else wait for the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(guard) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return guard;
            }
        }
        lock(&self.readers[start % self.readers.len()])
    }

    /// Runs `f` on the writer inside a transaction; its changes stand once this returns Ok.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.writer.write(f).await
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
impl Store for SqliteStore {
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
        let conn = self.reader();
        let Some(owner) = owner_of(&conn, identity, link_by_verified_email).map_err(backend)? else {
            return Ok(None);
        };
        let primary =
            !owner.linked_by_email && is_primary_identity(&conn, &owner.user_id, identity).map_err(backend)?;
        Ok(user_by(&conn, "id", &owner.user_id).map_err(backend)?.map(|user| LoginTarget { user, primary }))
    }

    async fn upstream_for_user(&self, user_id: &str) -> StoreResult<Option<StoredUpstream>> {
        self.reader()
            .prepare_cached(
                "SELECT user_id, connector_id, upstream_subject, memberships_json, tokens_sealed, tokens_expire_at, refreshed_at, upstream_username \
                 FROM user_identities WHERE user_id = ? ORDER BY refreshed_at DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([user_id], stored_upstream_from_row).optional())
            .map_err(backend)
    }

    async fn link_identity(&self, user_id: &str, connector_id: &str, subject: &str, now: UnixTime) -> StoreResult<()> {
        let (user_id, connector_id, subject) = (user_id.to_owned(), connector_id.to_owned(), subject.to_owned());
        self.write(move |conn| {
            // Insert first: the primary key says whether someone else holds the account.
            let inserted = conn
                .execute(
                    "INSERT INTO user_identities (connector_id, upstream_subject, user_id, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                    params![connector_id, subject, user_id, now],
                )
                .map_err(backend)?;
            if inserted == 1 {
                return Ok(());
            }
            let holder: String = conn
                .query_row(
                    "SELECT user_id FROM user_identities WHERE connector_id = ? AND upstream_subject = ?",
                    [&connector_id, &subject],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if holder == user_id {
                Ok(())
            } else {
                Err(StoreError::IdentityTaken { connector_id, subject })
            }
        })
        .await
    }

    async fn all_identities(&self) -> StoreResult<Vec<(StoredUpstream, String)>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT i.user_id, i.connector_id, i.upstream_subject, i.memberships_json, i.tokens_sealed, i.tokens_expire_at, \
                 i.refreshed_at, i.upstream_username, u.username FROM user_identities i JOIN users u ON u.id = i.user_id \
                 ORDER BY u.username, i.created_at",
            )
            .map_err(backend)?;
        let rows =
            stmt.query_map([], |r| Ok((stored_upstream_from_row(r)?, r.get::<_, String>(8)?))).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn identity_of_user(&self, user_id: &str, connector_id: &str) -> StoreResult<Option<StoredUpstream>> {
        self.reader()
            .prepare_cached(
                "SELECT user_id, connector_id, upstream_subject, memberships_json, tokens_sealed, tokens_expire_at, refreshed_at, \
                 upstream_username FROM user_identities WHERE user_id = ? AND connector_id = ? ORDER BY refreshed_at DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([user_id, connector_id], stored_upstream_from_row).optional())
            .map_err(backend)
    }

    async fn update_upstream_tokens(
        &self,
        connector_id: &str,
        subject: &str,
        tokens_sealed: Option<&str>,
        tokens_expire_at: Option<UnixTime>,
    ) -> StoreResult<()> {
        let (connector_id, subject, sealed) =
            (connector_id.to_owned(), subject.to_owned(), tokens_sealed.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE user_identities SET tokens_sealed = ?, tokens_expire_at = ? WHERE connector_id = ? AND upstream_subject = ?",
                params![sealed, tokens_expire_at, connector_id, subject],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn create_service_token(&self, t: &ServiceToken) -> StoreResult<()> {
        let t = t.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO service_tokens (token_hash, client_id, scope, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                params![t.token_hash, t.client_id, t.scope, t.created_at, t.expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn service_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<ServiceToken>> {
        self.reader()
            .prepare_cached(
                "SELECT token_hash, client_id, scope, created_at, expires_at FROM service_tokens \
                 WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
            )
            .and_then(|mut s| {
                s.query_row(params![hash, now], |r| {
                    Ok(ServiceToken {
                        token_hash: r.get(0)?,
                        client_id: r.get(1)?,
                        scope: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn revoke_service_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE service_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                    params![now, hash],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str, reason: &str, now: UnixTime) -> StoreResult<u64> {
        let (user_id, reason) = (user_id.to_owned(), reason.to_owned());
        self.write(move |conn| {
            let grants = conn
                .execute(
                    "UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL",
                    params![now, reason, user_id],
                )
                .map_err(backend)?;
            conn.execute(
                "UPDATE browser_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
                params![now, user_id],
            )
            .map_err(backend)?;
            Ok(grants as u64)
        })
        .await
    }

    async fn upstream_of(&self, connector_id: &str, subject: &str) -> StoreResult<Option<StoredUpstream>> {
        self.reader()
            .prepare_cached(
                "SELECT user_id, connector_id, upstream_subject, memberships_json, tokens_sealed, tokens_expire_at, refreshed_at, upstream_username \
                 FROM user_identities WHERE connector_id = ? AND upstream_subject = ?",
            )
            .and_then(|mut s| {
                s.query_row([connector_id, subject], |r| {
                    stored_upstream_from_row(r)
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn create_upstream_attempt(&self, a: &UpstreamAttempt) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO upstream_attempts (state_hash, pending_id, connector_id, pkce_verifier, nonce, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![a.state_hash, a.pending_id, a.connector_id, a.pkce_verifier, a.nonce, a.created_at, a.expires_at],
            )
            .map_err(backend)?;
            // Reloading the login page starts a new trip each time: keep only the newest few.
            conn.prepare_cached(
                "DELETE FROM upstream_attempts WHERE state_hash IN (SELECT state_hash FROM upstream_attempts \
                 WHERE pending_id = ? ORDER BY created_at DESC, state_hash LIMIT -1 OFFSET ?)",
            )
            .and_then(|mut s| s.execute(params![a.pending_id, ATTEMPTS_PER_PENDING]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        self.reader()
            .prepare_cached(&format!("SELECT {ATTEMPT_COLUMNS} FROM upstream_attempts WHERE state_hash = ?"))
            .and_then(|mut s| s.query_row([state_hash], attempt_from_row).optional())
            .map(|a| a.filter(|a| a.expires_at > now))
            .map_err(backend)
    }

    async fn take_upstream_attempt(&self, state_hash: &str, now: UnixTime) -> StoreResult<Option<UpstreamAttempt>> {
        let state_hash = state_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "DELETE FROM upstream_attempts WHERE state_hash = ? RETURNING {ATTEMPT_COLUMNS}"
            ))
            .and_then(|mut s| s.query_row([state_hash], attempt_from_row).optional())
            .map(|a| a.filter(|a| a.expires_at > now))
            .map_err(backend)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        user_by(&self.reader(), "id", id).map_err(backend)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        user_by(&self.reader(), "username", username).map_err(backend)
    }

    async fn create_browser_session(&self, s: &BrowserSession) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO browser_sessions (id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![s.id, s.token_hash, s.user_id, s.connector_id, s.csrf_token, s.auth_time, s.created_at, s.expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn browser_session(&self, token_hash: &str, now: UnixTime) -> StoreResult<Option<BrowserSession>> {
        self.reader()
            .prepare_cached(
                "SELECT id, token_hash, user_id, connector_id, csrf_token, auth_time, created_at, expires_at FROM browser_sessions \
                 WHERE token_hash = ? AND ended_at IS NULL AND expires_at > ?",
            )
            .and_then(|mut s| s.query_row(params![token_hash, now], session_from_row).optional())
            .map_err(backend)
    }

    async fn end_browser_session(&self, id: &str, now: UnixTime) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE browser_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                params![now, id],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn create_pending_authorization(
        &self,
        p: &PendingAuthorization,
        limits: PendingLimits,
    ) -> StoreResult<PendingAdmission> {
        let p = p.clone();
        self.write(move |conn| {
            let total: u32 = conn
                .prepare_cached("SELECT count(*) FROM pending_authorizations WHERE expires_at > ?")
                .and_then(|mut s| s.query_row([p.created_at], |r| r.get(0)))
                .map_err(backend)?;
            if total >= limits.total {
                return Ok(PendingAdmission::Full);
            }
            if !p.client_address.is_empty() {
                let from_address: u32 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM pending_authorizations WHERE client_address = ? AND expires_at > ?",
                    )
                    .and_then(|mut s| s.query_row(params![p.client_address, p.created_at], |r| r.get(0)))
                    .map_err(backend)?;
                if from_address >= limits.per_address {
                    return Ok(PendingAdmission::AddressFull);
                }
            }
            // Make room for the new one among the browser's newest, with the trips to providers
            // the dropped ones started.
            let beyond_cap = "SELECT id FROM pending_authorizations \
                 WHERE browser_binding_hash = ?1 ORDER BY created_at DESC, id LIMIT -1 OFFSET ?2";
            for sql in [
                format!("DELETE FROM upstream_attempts WHERE pending_id IN ({beyond_cap})"),
                format!("DELETE FROM pending_authorizations WHERE id IN ({beyond_cap})"),
            ] {
                conn.prepare_cached(&sql)
                    .and_then(|mut s| s.execute(params![p.browser_binding_hash, limits.per_browser.saturating_sub(1)]))
                    .map_err(backend)?;
            }
            conn.execute(
                "INSERT INTO pending_authorizations (id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![p.id, p.request_json, p.browser_binding_hash, p.csrf_token, p.client_address, p.created_at, p.expires_at],
            )
            .map_err(backend)?;
            Ok(PendingAdmission::Stored)
        })
        .await
    }

    async fn pending_authorization(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        self.reader()
            .prepare_cached(
                "SELECT id, request_json, browser_binding_hash, csrf_token, client_address, created_at, expires_at \
                 FROM pending_authorizations WHERE id = ? AND expires_at > ?",
            )
            .and_then(|mut s| {
                s.query_row(params![id, now], |r| {
                    Ok(PendingAuthorization {
                        id: r.get("id")?,
                        request_json: r.get("request_json")?,
                        browser_binding_hash: r.get("browser_binding_hash")?,
                        csrf_token: r.get("csrf_token")?,
                        client_address: r.get("client_address")?,
                        created_at: r.get("created_at")?,
                        expires_at: r.get("expires_at")?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn delete_pending_authorization(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM pending_authorizations WHERE id = ?", [id]).map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn create_authorization_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![c.code_hash, c.client_id, c.user_id, c.session_id, c.request_json, c.auth_time, c.created_at, c.expires_at])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<StoredCode>> {
        self.reader()
            .prepare_cached(
                "SELECT code_hash, client_id, user_id, session_id, request_json, auth_time, created_at, expires_at, \
                 used_at IS NOT NULL FROM authorization_codes WHERE code_hash = ?",
            )
            .and_then(|mut s| {
                s.query_row([code_hash], |r| Ok(StoredCode { code: code_from_row(r)?, spent: r.get(8)? })).optional()
            })
            .map_err(backend)
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        grant: &Grant,
        tokens: &IssuedTokens,
        now: UnixTime,
    ) -> StoreResult<CodeRedemption> {
        let (code_hash, grant, tokens) = (code_hash.to_owned(), grant.clone(), tokens.clone());
        self.write(move |tx| redeem_code(tx, &code_hash, &grant, &tokens, now)).await
    }

    async fn create_grant(&self, grant: &Grant, tokens: &IssuedTokens) -> StoreResult<()> {
        let (grant, tokens) = (grant.clone(), tokens.clone());
        self.write(move |tx| {
            insert_grant(tx, &grant).map_err(backend)?;
            insert_tokens(tx, &grant.id, &tokens).map_err(backend)
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        client_id: &str,
        now: UnixTime,
        reuse_grace: UnixTime,
        issue: IssueOnRotation,
    ) -> StoreResult<RefreshRotation> {
        let (old_hash, client_id) = (old_hash.to_owned(), client_id.to_owned());
        self.write(move |tx| rotate_refresh(tx, &old_hash, &client_id, now, reuse_grace, issue)).await
    }

    async fn refresh_token_holder(&self, hash: &str, client_id: &str, now: UnixTime) -> StoreResult<Option<User>> {
        let found = presented_refresh(&self.reader(), hash).map_err(backend)?;
        Ok(found.filter(|p| p.grant.client_id == client_id && !p.grant_revoked && p.expires_at > now).map(|p| p.user))
    }

    async fn access_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<AccessTokenRecord>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, a.scope, a.created_at, a.expires_at \
                 FROM access_tokens a JOIN grants g ON g.id = a.grant_id JOIN users u ON u.id = g.user_id \
                 WHERE a.token_hash = ? AND a.revoked_at IS NULL AND a.expires_at > ? AND g.revoked_at IS NULL"
            ))
            .and_then(|mut s| {
                s.query_row(params![hash, now], |r| {
                    Ok(AccessTokenRecord {
                        grant: grant_from_row(r)?,
                        user: user_from_row(r, GRANT_WIDTH)?,
                        scope: r.get(AFTER_GRANT_USER)?,
                        created_at: r.get(AFTER_GRANT_USER + 1)?,
                        expires_at: r.get(AFTER_GRANT_USER + 2)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn refresh_token(&self, hash: &str, now: UnixTime) -> StoreResult<Option<RefreshTokenRecord>> {
        self.reader()
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS}, {USER_COLUMNS}, r.created_at, r.expires_at \
                 FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id \
                 WHERE r.token_hash = ? AND r.used_at IS NULL AND r.expires_at > ? AND g.revoked_at IS NULL"
            ))
            .and_then(|mut s| {
                s.query_row(params![hash, now], |r| {
                    Ok(RefreshTokenRecord {
                        grant: grant_from_row(r)?,
                        user: user_from_row(r, GRANT_WIDTH)?,
                        created_at: r.get(AFTER_GRANT_USER)?,
                        expires_at: r.get(AFTER_GRANT_USER + 1)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }

    async fn revoke_access_token(&self, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let hash = hash.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                    params![now, hash],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: UnixTime) -> StoreResult<()> {
        let (grant_id, reason) = (grant_id.to_owned(), reason.to_owned());
        self.write(move |conn| revoke_grant_in(conn, &grant_id, &reason, now).map_err(backend)).await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, expires_at, verify_until \
                 FROM signing_keys",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(backend)?;
        let mut keys = Vec::new();
        for row in rows {
            let (kid, alg, plain, sealed, created_at, rotated_at, expires_at, verify_until) = row.map_err(backend)?;
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
        let k = k.clone();
        self.write(move |conn| {
            let (plain, sealed) = private_columns(&k.private_key);
            // The check and the insert are one statement in the writer's transaction; the partial
            // unique index (migration 6) backs it for any other writer.
            let n = conn
                .execute(
                    "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, \
                     expires_at, verify_until) SELECT ?1, ?2, ?3, ?4, ?5, NULL, NULL, NULL WHERE NOT EXISTS \
                     (SELECT 1 FROM signing_keys WHERE alg = ?2 AND rotated_at IS NULL \
                      AND (expires_at IS NULL OR expires_at > ?6)) \
                     ON CONFLICT DO NOTHING",
                    params![k.kid, k.alg.as_str(), plain, sealed, k.created_at, now],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn rotate_signing_key(
        &self,
        k: &StoredSigningKey,
        rotated_at: UnixTime,
        expires_at: UnixTime,
        verify_until: UnixTime,
    ) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |conn| {
            conn.execute(
                "UPDATE signing_keys SET rotated_at = ?, expires_at = ?, verify_until = ? WHERE alg = ? AND rotated_at IS NULL",
                params![rotated_at, expires_at, verify_until, k.alg.as_str()],
            )
            .map_err(backend)?;
            let (plain, sealed) = private_columns(&k.private_key);
            conn.execute(
                "INSERT INTO signing_keys (kid, alg, private_pkcs8, private_sealed, created_at, rotated_at, expires_at, \
                 verify_until) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)",
                params![k.kid, k.alg.as_str(), plain, sealed, k.created_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn replace_signing_key_private(&self, kid: &str, private_key: &StoredPrivateKey) -> StoreResult<()> {
        let (kid, private_key) = (kid.to_owned(), private_key.clone());
        self.write(move |conn| {
            let (plain, sealed) = private_columns(&private_key);
            conn.execute(
                "UPDATE signing_keys SET private_pkcs8 = ?, private_sealed = ? WHERE kid = ?",
                params![plain, sealed, kid],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn create_invite(&self, i: &Invite) -> StoreResult<()> {
        let i = i.clone();
        let groups = serde_json::to_string(&i.groups).map_err(backend)?;
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO invites (id, token_hash, note, groups_json, connector_id, max_uses, uses, created_at, expires_at, revoked_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![i.id, i.token_hash, i.note, groups, i.connector_id, i.max_uses, i.uses, i.created_at, i.expires_at, i.revoked_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn invites(&self) -> StoreResult<Vec<Invite>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {INVITE_COLUMNS} FROM invites ORDER BY created_at DESC"))
            .map_err(backend)?;
        let rows = stmt.query_map([], invite_from_row).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn invite_by_token(&self, token_hash: &str) -> StoreResult<Option<Invite>> {
        self.reader()
            .prepare_cached(&format!("SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = ?"))
            .and_then(|mut s| s.query_row([token_hash], invite_from_row).optional())
            .map_err(backend)
    }

    async fn revoke_invite(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute("UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", params![now, id])
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn redeem_invite(&self, id: &str, user_id: &str, now: UnixTime) -> StoreResult<Redemption> {
        let (id, user_id) = (id.to_owned(), user_id.to_owned());
        self.write(move |conn| {
            // The redemption row first: only a person not counted before takes a place, and of
            // two racing redemptions by one person only the one that inserted counts.
            let first_time = conn
                .execute(
                    "INSERT INTO invite_redemptions (invite_id, user_id, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    params![id, user_id, now],
                )
                .map_err(backend)?
                == 1;
            let open = if first_time {
                "UPDATE invites SET uses = uses + 1 WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
                 AND (max_uses IS NULL OR uses < max_uses)"
            } else {
                "UPDATE invites SET uses = uses WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2"
            };
            if conn.execute(open, params![id, now]).map_err(backend)? == 1 {
                return Ok(Redemption::Redeemed);
            }
            if first_time {
                // No place left (or no longer open): this person was not let in.
                conn.execute(
                    "DELETE FROM invite_redemptions WHERE invite_id = ? AND user_id = ?",
                    params![id, user_id],
                )
                .map_err(backend)?;
            }
            Ok(Redemption::Closed)
        })
        .await
    }

    async fn invites_of_user(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<Invite>> {
        let conn = self.reader();
        let cols = INVITE_COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM invites i JOIN invite_redemptions r ON r.invite_id = i.id \
                 WHERE r.user_id = ? AND i.revoked_at IS NULL AND i.expires_at > ?"
            ))
            .map_err(backend)?;
        let rows = stmt.query_map(params![user_id, now], invite_from_row).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn record_audit(&self, e: &AuditEvent) -> StoreResult<()> {
        let e = e.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit_events (at, kind, reason, username, user_id, connector_id, client_id, request_id, detail) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![e.at, e.kind, e.reason, e.username, e.user_id, e.connector_id, e.client_id, e.request_id, e.detail])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn audit_events(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at, kind, reason, username, user_id, connector_id, client_id, request_id, detail \
                 FROM audit_events ORDER BY id DESC LIMIT ?",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(AuditEvent {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    reason: r.get(2)?,
                    username: r.get(3)?,
                    user_id: r.get(4)?,
                    connector_id: r.get(5)?,
                    client_id: r.get(6)?,
                    request_id: r.get(7)?,
                    detail: r.get(8)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    async fn health(&self) -> StoreResult<()> {
        const PROBE: &str = "SELECT count(*) FROM signing_keys";
        self.reader().query_row(PROBE, [], |_| Ok(())).map_err(backend)?;
        self.write(|conn| conn.query_row(PROBE, [], |_| Ok(())).map_err(backend)).await
    }

    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        // Spent codes are kept a day past expiry so a late replay still revokes what they issued.
        // (table, key column, what is purged)
        let tables = [
            ("pending_authorizations", "id", "expires_at <= ?1"),
            ("upstream_attempts", "state_hash", "expires_at <= ?1"),
            ("service_tokens", "token_hash", "expires_at <= ?1"),
            ("authorization_codes", "code_hash", "expires_at <= ?1 - 86400"),
            ("access_tokens", "token_hash", "expires_at <= ?1"),
            ("refresh_tokens", "token_hash", "expires_at <= ?1"),
            ("browser_sessions", "id", "expires_at <= ?1 OR ended_at IS NOT NULL"),
            ("signing_keys", "kid", "expires_at IS NOT NULL AND max(expires_at, coalesce(verify_until, 0)) <= ?1"),
        ];
        let mut removed = 0u64;
        for (table, key, condition) in tables {
            let sql = format!(
                "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {PURGE_BATCH})"
            );
            // One short transaction per batch: logins and token requests queue behind a batch,
            // never behind the whole purge.
            loop {
                let sql = sql.clone();
                let n = self.write(move |tx| tx.execute(&sql, [now]).map_err(backend)).await? as u64;
                removed += n;
                if n < PURGE_BATCH {
                    break;
                }
            }
        }
        self.reclaim_free_pages().await?;
        Ok(removed)
    }
}

/// Rows deleted per purge transaction.
pub const PURGE_BATCH: u64 = 500;
/// Upstream trips kept per pending sign-in.
const ATTEMPTS_PER_PENDING: u32 = 4;

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }

    #[test]
    fn the_latest_version_counts_every_migration() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_latest(&mut conn).unwrap();
        assert_eq!(super::applied_version(&conn).unwrap(), super::latest_version());
    }
}
