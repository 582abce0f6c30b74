//! The SQLite backend's engine: one database in WAL mode, written by a single writer thread
//! with group commit and read through a small pool of read-only connections.
//!
//! Durability: `synchronous=FULL` with WAL means a commit has reached the disk when it returns.
//! Callers hand their work to the writer, which drains whatever is queued into one
//! transaction (each caller's work inside its own savepoint, so one failure rolls back only
//! that caller's changes), commits once, and only then answers every caller. Many concurrent
//! webhooks thus share one fsync.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{jobs, migrations};
use crate::store::ReportCache;
use crate::store::{Recovered, StoreError};

/// One caller's work: `run` does it inside the transaction (false: it failed, roll it back);
/// `finish` answers the caller once the commit's outcome is known.
struct Op {
    run: Box<dyn FnOnce(&Transaction) -> bool + Send>,
    finish: Finish,
}

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What the writer thread is asked to do.
enum Msg {
    Op(Op),
    /// Finish queued work, checkpoint, close the database, then answer.
    Close(oneshot::Sender<()>),
}

/// How many queued operations one transaction takes at most.
const MAX_BATCH: usize = 1024;

/// The database: a writer handle and a reader pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: mpsc::Sender<Msg>,
    readers: Arc<ReadPool>,
    path: PathBuf,
    /// Reports' rows kept between reports (`report_cache`).
    report_cache: Arc<ReportCache>,
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Largest size the WAL file is cut back to when SQLite restarts it from the beginning.
///
/// Without a limit the `-wal` file keeps the size of the largest burst between two
/// checkpoints forever (SQLite reuses it, never truncates it): a backlog of webhooks, or a
/// prune deleting a day of payloads in one transaction, could leave hundreds of megabytes
/// behind. 64 MiB is far above what a busy steady state needs (the automatic checkpoint
/// runs every 1,000 pages, about 4 MiB), so truncating costs no extra work in normal running.
pub const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How much of the database file a read connection maps (SQLite's `mmap_size`).
pub const READ_MMAP_SIZE: i64 = 256 * 1024 * 1024;

/// The writer's pragmas, all in one place.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(())
}

/// A private in-memory database with the daemon's settings and the full schema, used
/// synchronously (no writer thread): for differential tests and fuzzing of the SQL against
/// the in-memory repo, so they run the same migrations and pragmas as [`Store::open`].
pub fn open_in_memory() -> Result<Connection, StoreError> {
    let open_err = |e: rusqlite::Error| StoreError::Open {
        location: ":memory:".into(),
        message: e.to_string(),
    };
    let mut conn = Connection::open_in_memory().map_err(open_err)?;
    configure(&conn).map_err(open_err)?;
    migrations::migrate(&mut conn).map_err(open_err)?;
    Ok(conn)
}

impl Db {
    /// Open (creating if needed) the database in `dir`, migrate it, and start the writer.
    pub fn open(dir: &Path) -> Result<Db, StoreError> {
        let open_err = |message: String| StoreError::Open {
            location: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let path = dir.join("incidentd.db");
        let mut conn = Connection::open(&path).map_err(|e| open_err(e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| open_err(e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("cannot switch to WAL mode (got {mode})")));
        }
        configure(&conn).map_err(|e| open_err(e.to_string()))?;
        migrations::migrate(&mut conn).map_err(|e| open_err(e.to_string()))?;
        // What a crash can leave behind is repaired here, in one transaction, and said once.
        let recovered = jobs::requeue_running(&mut conn, chrono::Utc::now())
            .map_err(|e| open_err(format!("recovering interrupted jobs: {e}")))?;
        if recovered != Recovered::default() {
            tracing::info!(
                requeued = recovered.requeued,
                superseded = recovered.superseded,
                "recovered jobs interrupted by the last stop"
            );
        }

        let (tx, rx) = mpsc::channel::<Msg>(8192);
        std::thread::Builder::new()
            .name("incidentd-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Db {
            writer: tx,
            readers: Arc::new(ReadPool {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            path,
            report_cache: Arc::default(),
        })
    }

    /// Open an existing database for reading only (e.g. `incidentd render` beside a running
    /// daemon); writes fail with [`StoreError::Closed`].
    pub fn open_read_only(dir: &Path) -> Result<Db, StoreError> {
        let path = dir.join("incidentd.db");
        if !path.exists() {
            return Err(StoreError::Open {
                location: dir.display().to_string(),
                message: "no incidentd.db there".into(),
            });
        }
        let (tx, _) = mpsc::channel::<Msg>(1);
        Ok(Db {
            writer: tx,
            readers: Arc::new(ReadPool {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            path,
            report_cache: Arc::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` inside the next group-committed write transaction; resolves after the commit
    /// is durable. If `f` fails, only its own changes are rolled back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let slot: Arc<Mutex<Option<Result<T, StoreError>>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let op = Op {
            run: Box::new(move |tx: &Transaction| {
                let result = f(tx);
                let ok = result.is_ok();
                if let Ok(mut s) = slot.lock() {
                    *s = Some(result);
                }
                ok
            }),
            finish: Box::new(move |commit: Result<(), StoreError>| {
                let result = out
                    .lock()
                    .ok()
                    .and_then(|mut s| s.take())
                    .unwrap_or(Err(StoreError::Closed));
                let _ = done.send(commit.and(result));
            }),
        };
        self.writer
            .send(Msg::Op(op))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Run read-only queries on a pooled connection, off the async runtime, all in one read
    /// transaction: every query of `f` sees the same snapshot, as PostgreSQL's reads do (a
    /// draft's timeline and its thread's replies, read one after the other, agree even while
    /// the writer commits between them).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection, &ReportCache) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.readers.clone();
        let cache = self.report_cache.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            conn.execute_batch("BEGIN DEFERRED")?;
            let result = f(&conn, &cache);
            // A read transaction has nothing to keep: ending it only lets the WAL move on.
            let ended = conn.execute_batch("ROLLBACK");
            if ended.is_ok() && conn.is_autocommit() {
                pool.give_back(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Close the database: queued work finishes, the WAL is checkpointed into the main file
    /// and the writer thread ends. Later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
        let (done, wait) = oneshot::channel::<()>();
        if self.writer.send(Msg::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl ReadPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Reads map the database file instead of copying each page into the connection's
        // own cache: a report reads every incident of its range (100,000: about 10 MB of
        // index, far more than the default 2 MB cache holds). The mapped pages are the
        // kernel's page cache, shared by every connection; writes are not mapped.
        conn.pragma_update(None, "mmap_size", READ_MMAP_SIZE)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < 8 {
                idle.push(conn);
            }
        }
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut closing = None;
    while let Some(first) = rx.blocking_recv() {
        match first {
            Msg::Op(op) => batch.push(op),
            Msg::Close(done) => closing = Some(done),
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Op(op)) => batch.push(op),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let size = batch.len();
            run_batch(&mut conn, &mut batch);
            tracing::trace!(
                size,
                elapsed_us = started.elapsed().as_micros() as u64,
                "group commit"
            );
        }
        if closing.is_some() {
            break;
        }
    }
    rx.close();
    // Work that raced with closing gets a clear error rather than silence.
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Op(op) = msg {
            (op.finish)(Err(StoreError::Closed));
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the database failed");
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn run_batch(conn: &mut Connection, batch: &mut Vec<Op>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "cannot begin a write transaction");
            for op in batch.drain(..) {
                (op.finish)(Err(err.clone()));
            }
            return;
        }
    };
    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut failed: Option<StoreError> = None;
    for op in batch.drain(..) {
        if let Err(e) = tx.execute_batch("SAVEPOINT op") {
            failed = Some(StoreError::from(e));
            finishes.push(op.finish);
            continue;
        }
        let ok = (op.run)(&tx);
        let end = if ok {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        };
        if let Err(e) = tx.execute_batch(end) {
            failed = Some(StoreError::from(e));
        }
        finishes.push(op.finish);
    }
    let commit = match failed {
        // A savepoint could not be ended or begun: the transaction's state is unknown.
        Some(err) => {
            tracing::error!(error = %err, "savepoint failed; rolling back the whole batch");
            drop(tx);
            Err(err)
        }
        None => tx.commit().map_err(StoreError::from),
    };
    if let Err(e) = &commit {
        tracing::error!(error = %e, "commit failed; every caller in the batch gets an error");
    }
    for finish in finishes {
        finish(commit.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wal_is_cut_back_to_the_size_limit_after_a_burst_larger_than_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Db::open(dir.path()).expect("open");
        let burst_mib = JOURNAL_SIZE_LIMIT / (1024 * 1024) + 8;
        store
            .write(move |tx| {
                tx.execute_batch("CREATE TABLE filler (body BLOB NOT NULL)")?;
                tx.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                     INSERT INTO filler SELECT randomblob(1048576) FROM n",
                    [burst_mib],
                )?;
                Ok(())
            })
            .await
            .expect("burst");
        let wal = dir.path().join("incidentd.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len() as i64).unwrap_or(0);
        assert!(
            size() > JOURNAL_SIZE_LIMIT,
            "the burst went through the WAL"
        );
        // The burst's commit checkpointed it; the next write starts the WAL over and trims it.
        store
            .write(|tx| {
                tx.execute_batch("DELETE FROM filler")?;
                Ok(())
            })
            .await
            .expect("small write");
        assert!(
            size() <= JOURNAL_SIZE_LIMIT,
            "WAL still {} bytes after a checkpointed burst",
            size()
        );
        store.close().await;
    }

    #[tokio::test]
    async fn one_read_sees_one_snapshot_while_the_writer_commits_between_its_queries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Db::open(dir.path()).expect("open");
        store
            .write(|tx| {
                tx.execute_batch("CREATE TABLE t (v INTEGER NOT NULL); INSERT INTO t VALUES (1)")?;
                Ok(())
            })
            .await
            .expect("create");
        let path = dir.path().join("incidentd.db");
        let (first, second) = store
            .read(move |conn, _| {
                let v = |c: &Connection| c.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0));
                let first = v(conn)?;
                // Another connection commits between this read's two queries.
                let other = Connection::open(&path)?;
                other.busy_timeout(std::time::Duration::from_secs(5))?;
                other.execute("UPDATE t SET v = 2", [])?;
                Ok((first, v(conn)?))
            })
            .await
            .expect("read");
        assert_eq!(
            (first, second),
            (1, 1),
            "both queries read the same snapshot"
        );
        // The connection went back to the pool with its transaction ended: the next read sees
        // the commit.
        let now = store
            .read(|conn, _| Ok(conn.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))?))
            .await
            .expect("read again");
        assert_eq!(now, 2);
        store.close().await;
    }

    #[test]
    fn an_in_memory_database_has_the_whole_schema_and_enforces_foreign_keys() {
        let conn = open_in_memory().expect("opens");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version as usize, migrations::MIGRATIONS.len());
        let orphan = conn.execute(
            "INSERT INTO timeline (incident_id, at, kind, actor, text, human) \
             VALUES ('INC-2026-0001', 0, 'detected', 'incidentd', '', 0)",
            [],
        );
        assert!(orphan.is_err(), "a row for a missing incident was accepted");
    }
}
