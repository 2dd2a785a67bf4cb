//! The embedded default: one SQLite file in WAL mode, through rusqlite.
//!
//! Reads take microseconds, so they run right on the async worker on a small pool of read-only
//! connections, which WAL lets run beside the writer (a thread hop per read, not SQLite, would
//! dominate their cost). SQLite allows one writer at a time: every write goes to the one writer
//! thread ([`writer`]), which commits queued writes together in `IMMEDIATE` transactions (so they
//! never fail half-way with "database is locked"); `busy_timeout` covers other processes such as
//! the CLI touching the same file.

mod access_list;
mod accounts;
mod admin_tokens;
mod audit;
mod files;
mod identities;
mod invites;
mod keys;
mod readers;
mod rows;
mod sign_ins;
mod tokens;
mod vacuum;
mod writer;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{named_params, params, Connection, OpenFlags, OptionalExtension, Row};
use rusqlite_migration::{Migrations, M};

pub use self::files::create_private_dir;
use self::readers::Readers;
use self::rows::*;
use self::vacuum::*;
use self::writer::Writer;
use super::*;

/// SQLite's default: checkpoint once the WAL holds ~4 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 1000;
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Readers,
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
        M::up(include_str!("../../../migrations/sqlite/0007_access_list.sql")),
        M::up(include_str!("../../../migrations/sqlite/0008_user_activity.sql")),
        M::up(include_str!("../../../migrations/sqlite/0009_admin_tokens.sql")),
        M::up(include_str!("../../../migrations/sqlite/0010_user_audit.sql")),
    ])
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATION_COUNT as i64
}

const MIGRATION_COUNT: usize = 10;

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
    // No memory map: in WAL mode a connection drops its whole map (munmap, and a TLB shootdown
    // on every core) at the start of each read after any commit, which under steady writes cost
    // more than the pread()s it saves (ES256 refresh 11k/s with a 256 MiB map, 18k/s without).
    conn.pragma_update(None, "mmap_size", 0)?;
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
        let readers = Readers::open(&path)?;
        Ok(Self { writer: Writer::spawn(writer)?, readers, path })
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

    /// A read connection (see [`Readers::get`]).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.readers.get()
    }

    /// Runs `f` on the writer inside a transaction; its changes stand once this returns Ok.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.writer.write(f).await
    }
}

/// One process owns the file: the throttle stays in that process's memory.
impl ThrottleStore for SqliteStore {}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        const PROBE: &str = "SELECT count(*) FROM signing_keys";
        self.reader().query_row(PROBE, [], |_| Ok(())).map_err(backend)?;
        self.write(|conn| conn.query_row(PROBE, [], |_| Ok(())).map_err(backend)).await
    }

    async fn usage(&self, now: UnixTime, active_since: &[UnixTime], with_groups: bool) -> StoreResult<Usage> {
        let conn = self.reader();
        let users = conn.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)).map_err(backend)?;
        let mut usage = Usage { users: users as u64, ..Default::default() };
        let mut active = conn.prepare_cached("SELECT count(*) FROM users WHERE updated_at >= ?").map_err(backend)?;
        for since in active_since {
            usage.active_users.push(active.query_row([since], |r| r.get::<_, i64>(0)).map_err(backend)? as u64);
        }
        usage.live_browser_sessions = conn
            .query_row("SELECT count(*) FROM browser_sessions WHERE ended_at IS NULL AND expires_at > ?", [now], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(backend)? as u64;
        if with_groups {
            let mut stmt = conn
                .prepare_cached("SELECT username, groups_json FROM users WHERE groups_json <> '[]' ORDER BY username")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(backend)?;
            for row in rows {
                let (username, groups) = row.map_err(backend)?;
                usage.memberships.push((username, serde_json::from_str(&groups).map_err(backend)?));
            }
        }
        Ok(usage)
    }

    async fn close(&self) -> StoreResult<()> {
        // From a connection of its own: the writer's sits in its thread, and a checkpoint cannot
        // run inside the transactions it wraps every write in. TRUNCATE waits (busy_timeout) for
        // a write still in flight from a background task, then empties the WAL file.
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(backend)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(backend)?;
            if busy != 0 {
                return Err(backend(anyhow::anyhow!(
                    "the checkpoint of {} was blocked by another connection",
                    path.display()
                )));
            }
            Ok(())
        })
        .await
        .map_err(backend)?
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
