//! The single writer path, with group commit.
//!
//! SQLite allows one writer at a time, and most of a small write's cost is the transaction around
//! it: taking the file locks and appending the WAL frames of every page touched. One thread owns
//! the writer connection and runs whatever writes are queued when it gets to them in one
//! `IMMEDIATE` transaction, each inside its own savepoint, so one failing write rolls back alone
//! while the batch shares one commit. Callers get their answer only after that commit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// Enough to amortise the commit; small enough that one batch stays a short lock.
const MAX_BATCH: usize = 256;

trait Job: Send {
    /// Runs the write; false if it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the outcome once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Write<F, T> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for Write<F, T>
where
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
    T: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            tracing::error!("a storage write panicked; it was rolled back");
            Err(StoreError::Backend(anyhow::anyhow!("the storage write failed unexpectedly")))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let outcome = match (self.result, commit) {
            // A write that failed reports its own error whatever happened to the batch.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(StoreError::Backend(anyhow::anyhow!(e))),
            (None, Ok(())) => Err(StoreError::Backend(anyhow::anyhow!("the storage write did not run"))),
        };
        // The caller may have gone away (request cancelled); its write still stands.
        let _ = self.reply.send(outcome);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Moves `conn` to its own thread; the thread ends when the last `Writer` is dropped.
    pub fn spawn(conn: Connection) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new().name("hubauth-sqlite-writer".into()).spawn(move || run(conn, queue))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in a write transaction (possibly shared with other writes) and returns its
    /// result once committed. An `Err` from `work` undoes everything it did.
    pub async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Write { work: Some(work), result: None, reply }))
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("the storage writer has stopped")))?;
        answer.await.map_err(|_| StoreError::Backend(anyhow::anyhow!("the storage writer has stopped")))?
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = commit_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, writes = batch.len(), "a storage transaction failed; its writes were not saved");
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

fn commit_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
    let applied = (|| -> rusqlite::Result<()> {
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT job")?.execute([])?;
            if !job.run(conn) {
                conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            }
            conn.prepare_cached("RELEASE job")?.execute([])?;
        }
        conn.execute_batch("COMMIT")
    })();
    applied.map_err(|e| {
        // Leave no transaction open for the next batch.
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<T: Send + 'static>(
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> (Box<dyn Job>, oneshot::Receiver<StoreResult<T>>) {
        let (reply, answer) = oneshot::channel();
        (Box::new(Write { work: Some(work), result: None, reply }), answer)
    }

    fn insert(conn: &Connection, v: i64) -> StoreResult<()> {
        conn.execute("INSERT INTO t (v) VALUES (?)", [v]).map_err(|e| StoreError::Backend(e.into()))?;
        Ok(())
    }

    #[test]
    fn a_failing_write_rolls_back_alone_within_its_batch() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)").unwrap();
        let (first, mut first_answer) = job(|c| insert(c, 1));
        let (failing, mut failing_answer) = job(|c| {
            insert(c, 2)?;
            Err::<(), _>(StoreError::UsernameTaken("x".into()))
        });
        let (panicking, mut panicking_answer) = job(|c| -> StoreResult<()> {
            insert(c, 3)?;
            panic!("bug in a write")
        });
        let (last, mut last_answer) = job(|c| insert(c, 4));
        let mut batch = vec![first, failing, panicking, last];
        assert_eq!(commit_batch(&conn, &mut batch), Ok(()));
        for j in batch {
            j.finish(Ok(()));
        }
        assert!(first_answer.try_recv().unwrap().is_ok());
        assert!(matches!(failing_answer.try_recv().unwrap(), Err(StoreError::UsernameTaken(_))));
        assert!(panicking_answer.try_recv().unwrap().is_err());
        assert!(last_answer.try_recv().unwrap().is_ok());
        let stored: Vec<i64> = conn
            .prepare("SELECT v FROM t ORDER BY v")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(stored, vec![1, 4]);
    }

    #[test]
    fn a_failed_commit_fails_every_write_in_the_batch() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)").unwrap();
        let (mut ok, mut answer) = job(|c| insert(c, 1));
        assert!(ok.run(&conn), "the write itself succeeds");
        ok.finish(Err("disk I/O error".into()));
        assert!(answer.try_recv().unwrap().is_err());
    }
}
