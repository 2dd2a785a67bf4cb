//! The password-login throttle every replica shares: one row per key holding its GCRA
//! theoretical arrival time (`login_throttle`, migration 2). Times are nanoseconds of the app's
//! clock, not the server's `now()`, like every other timestamp hubauth stores.

use super::*;
use crate::store::throttle::gcra_step;

/// Takes the allowance of `charges` in order, in one transaction: the rows are locked first (in
/// key order, so two attempts sharing keys cannot deadlock), then the charged ones are written.
pub(super) async fn take(
    conn: &mut PgConnection,
    charges: &[ThrottleCharge],
    now: i64,
) -> StoreResult<ThrottleOutcome> {
    let mut sorted: Vec<&[u8]> = charges.iter().map(|c| &c.key[..]).collect();
    sorted.sort_unstable();
    let mut tx = sqlx::Connection::begin(conn).await.map_err(backend)?;
    // A missing key is inserted at `now` (a full allowance, the same as absent): a row that
    // only exists in this transaction's future cannot be locked any other way. The no-op
    // update locks an existing row and returns what the last writer committed.
    let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
        "INSERT INTO login_throttle (key, tat) SELECT k, $2 FROM unnest($1::bytea[]) AS k ORDER BY k \
         ON CONFLICT (key) DO UPDATE SET tat = login_throttle.tat RETURNING key, tat",
    )
    .bind(&sorted)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    let tat_of = |key: &[u8]| rows.iter().find(|(k, _)| k == key).map(|(_, tat)| *tat);
    let (mut keys, mut tats) = (Vec::new(), Vec::new());
    let mut outcome = ThrottleOutcome::Taken;
    for (index, charge) in charges.iter().enumerate() {
        match gcra_step(tat_of(&charge.key), now, charge) {
            Ok(next) => {
                keys.push(&charge.key[..]);
                tats.push(next);
            }
            Err(wait) => {
                outcome = ThrottleOutcome::Refused { index, wait };
                break;
            }
        }
    }
    let untouched: Vec<&[u8]> = charges[keys.len()..].iter().map(|c| &c.key[..]).collect();
    // Charged rows get their new arrival time; the others are deleted if they hold a full
    // allowance (inserted above, or refilled), so a refused attempt leaves nothing behind.
    sqlx::query(
        "WITH charged AS (UPDATE login_throttle t SET tat = c.tat FROM unnest($1::bytea[], $2::bigint[]) AS c(key, tat) \
         WHERE t.key = c.key) \
         DELETE FROM login_throttle WHERE key = ANY($3::bytea[]) AND tat <= $4",
    )
    .bind(&keys)
    .bind(&tats)
    .bind(&untouched)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(outcome)
}

/// One statement; a key forgotten meanwhile stays forgotten (it has its full allowance).
pub(super) async fn give_back(conn: &mut PgConnection, charges: &[ThrottleCharge]) -> StoreResult<()> {
    let keys: Vec<&[u8]> = charges.iter().map(|c| &c.key[..]).collect();
    let every: Vec<i64> = charges.iter().map(|c| c.every).collect();
    sqlx::query(
        "UPDATE login_throttle t SET tat = t.tat - c.every FROM unnest($1::bytea[], $2::bigint[]) AS c(key, every) \
         WHERE t.key = c.key",
    )
    .bind(&keys)
    .bind(&every)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Counting stops at `up_to`, so a full table costs a bounded scan.
pub(super) async fn entries(conn: &mut PgConnection, now: i64, up_to: u64) -> StoreResult<u64> {
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    async fn count(conn: &mut PgConnection, up_to: i64) -> StoreResult<i64> {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM (SELECT 1 FROM login_throttle LIMIT $1) AS s")
            .bind(up_to)
            .fetch_one(conn)
            .await
            .map_err(backend)
    }
    let mut n = count(&mut *conn, up_to).await?;
    if n >= up_to {
        // SKIP LOCKED: rows an attempt holds are in use, and waiting on them could deadlock
        // with its key-ordered locking.
        sqlx::query(
            "DELETE FROM login_throttle WHERE key IN \
             (SELECT key FROM login_throttle WHERE tat <= $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        n = count(&mut *conn, up_to).await?;
    }
    Ok(n as u64)
}

#[async_trait]
impl ThrottleStore for PostgresStore {
    fn shares_login_throttle(&self) -> bool {
        true
    }

    async fn take_login_allowance(&self, charges: &[ThrottleCharge], now: i64) -> StoreResult<ThrottleOutcome> {
        throttle::take(&mut *self.conn().await?, charges, now).await
    }

    async fn give_back_login_allowance(&self, charges: &[ThrottleCharge]) -> StoreResult<()> {
        throttle::give_back(&mut *self.conn().await?, charges).await
    }

    async fn login_throttle_entries(&self, now: i64, up_to: u64) -> StoreResult<u64> {
        throttle::entries(&mut *self.conn().await?, now, up_to).await
    }
}
