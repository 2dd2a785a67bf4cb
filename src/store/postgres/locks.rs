//! Locks shared by every replica, as PostgreSQL advisory locks.
//!
//! The per-user lock is a session lock held on a connection of a pool of its own while the
//! holder talks to a provider (seconds, at worst): a replica that dies releases it with its
//! connection, and waiting for it never takes a connection from the pool serving requests.

use super::*;

/// How often a waiter asks for a lock someone else holds.
const POLL: Duration = Duration::from_millis(20);

struct Held {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    user_id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let user_id = std::mem::take(&mut self.user_id);
        // Unlocking is a round trip; when it cannot be made the connection is closed, which
        // releases the lock all the same.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                    .bind(&user_id)
                    .fetch_one(&mut *conn)
                    .await;
                if !matches!(unlocked, Ok(true)) {
                    let _ = conn.close().await;
                }
            });
        } else {
            drop(conn.detach());
        }
    }
}

pub(super) async fn lock_user(pool: &PgPool, user_id: &str, wait: Duration) -> StoreResult<UserLock> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut conn = pool.acquire().await.map_err(backend)?;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
        if got {
            return Ok(UserLock::held(Held { conn: Some(conn), user_id: user_id.to_owned() }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(backend(anyhow::anyhow!(
                "another replica has been working on this person's sign-in for over {wait:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
