//! Handing purged space back to the file system (incremental auto_vacuum).

use super::*;

/// Free pages (4 KiB each) returned per transaction.
pub(super) const VACUUM_BATCH_PAGES: u32 = 2000;

/// Lets SQLite return freed pages (`PRAGMA incremental_vacuum`). A new file takes the setting at
/// once; an older one needs a single full VACUUM, done here at start-up. (Not a migration:
/// migrations run inside a transaction, where VACUUM cannot.)
pub(super) fn enable_incremental_vacuum(conn: &Connection) -> anyhow::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode = |conn: &Connection| conn.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0));
    if mode(conn)? == INCREMENTAL {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    if mode(conn)? != INCREMENTAL {
        tracing::info!("switching the database to incremental vacuum (once; may take a while on a large file)");
        conn.execute_batch("VACUUM").context("VACUUM to enable incremental vacuum")?;
    }
    Ok(())
}

impl SqliteStore {
    /// Hands pages freed by deletes back to the file system, a batch per transaction.
    pub(super) async fn reclaim_free_pages(&self) -> StoreResult<()> {
        let mut before = i64::MAX;
        loop {
            let free = self
                .write(|conn| {
                    conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_BATCH_PAGES})")).map_err(backend)?;
                    conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0)).map_err(backend)
                })
                .await?;
            // Done, or nothing more comes back (another process holds the file's mode back).
            if free == 0 || free >= before {
                return Ok(());
            }
            before = free;
        }
    }
}
