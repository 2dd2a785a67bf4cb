//! The connections that serve store calls (deadpool, holding sqlx connections).
//!
//! sqlx's own pool pings every connection as it goes back (a round trip to the server, on both
//! sides' CPUs, after every store call): two of the five round trips a refresh made. This pool
//! hands a connection back as it is, and checks it only when there is a reason to:
//! - it was idle for a while when taken out (the server may have gone since): pinged first;
//! - it comes back with something unsent or a transaction open (a call was cancelled midway,
//!   leaving sqlx's queued ROLLBACK): flushed and pinged before it is reused, so no lock is
//!   held while it sits idle;
//! - a connection-level error (I/O, TLS, protocol) happened anywhere since it was taken out:
//!   pinged, and dropped if it fails, so a database restart clears the pool by itself.
//!
//! A call cancelled while waiting for its answer leaves the answer unread; sqlx reads it before
//! the connection's next statement, so that is safe without a check.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// A connection idle this long is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connection-level errors seen so far, by every store in the process: a lease that saw this
/// change while it was out checks its connection before handing it back.
static CONNECTION_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Counts `e` if it may have left its connection unusable (anything but an answer the server
/// gave, or a row that was not there).
pub(super) fn note_error(e: &sqlx::Error) {
    if !matches!(e, sqlx::Error::Database(_) | sqlx::Error::RowNotFound) {
        CONNECTION_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) struct Manager {
    options: PgConnectOptions,
}

impl managed::Manager for Manager {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(&self, conn: &mut PgConnection, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if metrics.last_used() >= PING_IF_IDLE_FOR {
            conn.ping().await.map_err(RecycleError::Backend)?;
        }
        Ok(())
    }
}

pub(super) type Pool = managed::Pool<Manager>;

pub(super) fn build(options: PgConnectOptions, size: u32, wait: Duration) -> anyhow::Result<Pool> {
    Ok(managed::Pool::builder(Manager { options })
        .max_size(size as usize)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

/// A connection taken from the pool for one store call.
pub(crate) struct Lease {
    conn: Option<Object<Manager>>,
    errors_when_taken: u64,
}

pub(super) async fn take(pool: &Pool) -> Result<Lease, managed::PoolError<sqlx::Error>> {
    let errors_when_taken = CONNECTION_ERRORS.load(Ordering::Relaxed);
    let conn = pool.get().await?;
    Ok(Lease { conn: Some(conn), errors_when_taken })
}

impl Deref for Lease {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let suspect = conn.should_flush()
            || conn.is_in_transaction()
            || CONNECTION_ERRORS.load(Ordering::Relaxed) != self.errors_when_taken;
        if !suspect {
            return; // back to the pool as it is
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = conn.ping().await {
                        tracing::info!(error = %e, "dropping a PostgreSQL connection that failed its check");
                        // Out of the pool; dropping it closes the socket (the server rolls back).
                        drop(Object::take(conn));
                    }
                });
            }
            // No runtime to check it on (shutting down): do not reuse it.
            Err(_) => drop(Object::take(conn)),
        }
    }
}
