//! The read-only connections. The first is opened with the store; each further one only when
//! every open one is busy at the same moment, so a broker that has just started (or is mostly
//! idle) has not paid for them: opening one costs a few milliseconds of the start, every time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use super::{configure, lock};

/// At most this many reads run at once; more wait for a connection.
pub(super) const READERS: usize = 4;

pub(super) struct Readers {
    path: PathBuf,
    first: Mutex<Connection>,
    /// Opened on demand; `None` when opening failed (logged): the others serve instead.
    more: [OnceLock<Option<Mutex<Connection>>>; READERS - 1],
    next: AtomicUsize,
}

impl Readers {
    /// Opens the first connection, so that a database that cannot be read fails at start.
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            first: Mutex::new(open_reader(path)?),
            more: Default::default(),
            next: AtomicUsize::new(0),
        })
    }

    /// An idle open connection if there is one, else a newly opened one while fewer than
    /// [`READERS`] are open, else wait for the next in turn.
    pub(super) fn get(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Some(guard) = self.slot((start + i) % READERS).and_then(|m| m.try_lock().ok()) {
                return guard;
            }
        }
        for cell in &self.more {
            if cell.get().is_none() {
                let opened = cell.get_or_init(|| self.open_another());
                if let Some(guard) = opened.as_ref().and_then(|m| m.try_lock().ok()) {
                    return guard;
                }
            }
        }
        lock(self.slot(start % READERS).unwrap_or(&self.first))
    }

    /// How many connections are open.
    #[cfg(test)]
    pub(super) fn opened(&self) -> usize {
        1 + self.more.iter().filter(|c| matches!(c.get(), Some(Some(_)))).count()
    }

    fn slot(&self, i: usize) -> Option<&Mutex<Connection>> {
        match i {
            0 => Some(&self.first),
            _ => self.more[i - 1].get().and_then(Option::as_ref),
        }
    }

    fn open_another(&self) -> Option<Mutex<Connection>> {
        match open_reader(&self.path) {
            Ok(conn) => Some(Mutex::new(conn)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not open another SQLite read connection; reads share the open ones");
                None
            }
        }
    }
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("cannot open {} for reading", path.display()))?;
    configure(&conn)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7);").unwrap();
        (dir, path)
    }

    fn read(conn: &Connection) -> i64 {
        conn.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn one_connection_until_reads_overlap() {
        let (_dir, path) = database();
        let readers = Readers::open(&path).unwrap();
        assert_eq!(readers.opened(), 1, "only the first is opened at start");
        for _ in 0..10 {
            assert_eq!(read(&readers.get()), 7);
        }
        assert_eq!(readers.opened(), 1, "reads one after another share one connection");

        let held: Vec<_> = (0..READERS).map(|_| readers.get()).collect();
        assert_eq!(readers.opened(), READERS, "overlapping reads open more, up to the limit");
        assert!(held.iter().all(|c| read(c) == 7));
        drop(held);
        assert_eq!(readers.opened(), READERS);
    }

    #[test]
    fn a_database_that_cannot_be_read_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let err = Readers::open(&dir.path().join("missing.db")).err().expect("no such file");
        assert!(format!("{err:#}").contains("for reading"), "{err:#}");
    }
}
