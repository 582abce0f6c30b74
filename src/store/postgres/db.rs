//! The PostgreSQL backend's engine: group commit over a few writer threads, reads on pooled
//! sessions in `spawn_blocking`.
//!
//! As SQLite's writer (`store/sqlite/writer.rs`): callers queue their work; a writer drains
//! what is queued into one transaction (each caller's work inside its own savepoint, so one
//! failure rolls back only that caller's changes; the first caller's needs none, see
//! `try_batch`), commits once and only then answers every caller. Unlike SQLite, several
//! writers (up to [`MAX_WRITERS`], never more than the pool's size) drain the one queue, each
//! taking a pooled session per batch, so a slow round trip does not hold every webhook back,
//! and concurrent webhooks still share commits.
//!
//! What a batch's operations repeat costs little: the transaction remembers the locks it
//! holds and what `seen` read, and postpones notification records, touches and counters into
//! one statement for the whole batch (`pending.rs`). A batch whose first operation waited for a
//! lock takes what was queued meanwhile (`top_up`), so webhooks for one busy key share a commit
//! rather than each writer's small batch waiting for the key in turn.
//!
//! Retries: when the whole transaction fails transiently (serialization failure, deadlock,
//! the connection lost, PostgreSQL restarting or unreachable), the batch is run again from
//! the start, up to [`BATCH_ATTEMPTS`] times with a short backoff, on a fresh session (a broken
//! one is dropped by the pool); the results of a failed attempt are discarded. Then every
//! caller gets the (transient) error: a webhook answers 503 and Alertmanager retries. (A
//! connection lost during COMMIT leaves its outcome unknown; running the batch again may then
//! apply it twice, which ingestion absorbs as a repeated notification.)
//!
//! Locks: an operation that needs a correlation key (or the incident numbering lock) held by
//! another transaction waits for it only when it is the first operation of its batch, so it
//! holds nothing while it waits; later operations only try, and a busy lock defers the
//! operation to the writer's next transaction, where it comes first. Two batches thus never
//! wait for each other's advisory locks. Within a replica, a key is awaited by one writer at
//! most: work that needs a key another writer holds or awaits is handed to that writer's batch
//! (`keys.rs`) instead of its own, so the replica's other writers serve other keys and a busy
//! key's batches grow rather than queue. What remains (two transactions waiting for each
//! other's rows, e.g. the pending job a coalesced enqueue updates) PostgreSQL detects after
//! `deadlock_timeout`; the losing operation's savepoint is rolled back and it runs again in
//! the next transaction, as any operation that failed transiently, at most [`OP_RETRIES`]
//! times.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::IsolationLevel;
use tokio::sync::{mpsc, oneshot};

use super::keys::{Claiming, Claims, Keys};
use super::pending::Pending;
use super::tx::{Conn, PgReads, PgTx};
use super::{migrations, Pool};
use crate::config::PostgresConfig;
use crate::store::{ReportCache, StoreError};

/// How an operation ran inside the transaction.
enum Ran {
    Ok,
    Failed { transient: bool },
}

type Run = Box<dyn for<'a, 'c> FnMut(&mut PgTx<'a, 'c>) -> Ran + Send>;
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One caller's work: `run` does it inside the transaction (and may be run again);
/// `finish` answers the caller once the commit's outcome is known.
struct Op {
    run: Run,
    finish: Finish,
    /// Times it was run again after a transient failure of its own.
    retries: u32,
    /// Times a busy lock, or one another writer claims (`keys.rs`), made it run again.
    blocked: u32,
}

enum Msg {
    Op(Op),
    /// Stop taking work; queued work finishes.
    Close,
}

/// How many queued operations one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Writer threads at most (each uses one pooled session while it commits a batch).
pub const MAX_WRITERS: usize = 4;
/// Attempts at a batch whose transaction fails transiently.
pub const BATCH_ATTEMPTS: u32 = 4;
/// Times an operation is run again after a transient failure of its own savepoint.
pub const OP_RETRIES: u32 = 3;
/// Times an operation blocked on a lock is handed to the writer that claims it (`keys.rs`);
/// later it runs as if no writer claimed any lock (blocked, it comes first in its writer's next
/// transaction, and waits), so that work needing locks two writers keep claiming in turn runs.
const HANDOFFS: u32 = 4;

/// The database: a queue to the writers and the pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    queue: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Always `Some` until dropped.
    pool: Option<Pool>,
    receiver: Mutex<mpsc::Receiver<Msg>>,
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Which writer holds or awaits each advisory lock, with the work handed to it.
    keys: Keys<Op>,
    location: String,
    /// Reports' rows kept between reports (`store::report_cache`).
    report_cache: Arc<ReportCache>,
}

impl Db {
    /// Connect, migrate, and start the writers. Blocks: call from a blocking thread.
    pub fn open(config: &PostgresConfig) -> Result<Db, StoreError> {
        let location = config.url.redacted();
        let open_err = |message: String| StoreError::Open {
            location: location.clone(),
            message,
        };
        let pool = Pool::new(config.clone());
        {
            let mut client = pool.get().map_err(|e| open_err(e.to_string()))?;
            migrations::migrate(&mut client).map_err(|e| open_err(e.to_string()))?;
        }
        // No start-up recovery of running jobs: they may be another replica's, alive; a dead
        // replica's are claimed again when their leases expire.
        let (tx, rx) = mpsc::channel::<Msg>(8192);
        let shared = Arc::new(Shared {
            pool: Some(pool),
            receiver: Mutex::new(rx),
            writers: Mutex::new(Vec::new()),
            keys: Keys::new(),
            location: location.clone(),
            report_cache: Arc::default(),
        });
        let writers = config.pool_size.clamp(1, MAX_WRITERS);
        let mut handles = Vec::with_capacity(writers);
        for i in 0..writers {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("incidentd-pg-writer-{i}"))
                .spawn(move || writer_loop(&shared, i))
                .map_err(|e| open_err(e.to_string()))?;
            handles.push(handle);
        }
        *lock(&shared.writers) = handles;
        Ok(Db { queue: tx, shared })
    }

    /// The server, redacted (`user@host:port/db`).
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    /// Run `f` inside the next group-committed write transaction; resolves after the commit.
    /// If `f` fails, only its own changes are rolled back. `f` may run more than once (a
    /// transient failure of the transaction runs the batch again); the last run's result is
    /// the one answered.
    pub async fn write<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut PgTx) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let slot: Arc<Mutex<Option<Result<T, StoreError>>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let op = Op {
            run: Box::new(move |tx: &mut PgTx| {
                let result = f(tx);
                let ran = match &result {
                    Ok(_) => Ran::Ok,
                    Err(e) => Ran::Failed {
                        transient: e.is_transient(),
                    },
                };
                *lock(&slot) = Some(result);
                ran
            }),
            finish: Box::new(move |commit: Result<(), StoreError>| {
                let result = lock(&out).take().unwrap_or(Err(StoreError::Closed));
                let _ = done.send(commit.and(result));
            }),
            retries: 0,
            blocked: 0,
        };
        self.queue
            .send(Msg::Op(op))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Run read-only queries in one read-only transaction on a pooled session, off the async
    /// runtime. A session found broken (the server restarted since it was last used) is
    /// replaced and the read tried once more.
    pub async fn read<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut PgReads) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.shared.pool().clone();
        let cache = self.shared.report_cache.clone();
        tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                tries += 1;
                let mut client = pool.get()?;
                let result = (|| {
                    let (session, stmts) = client.parts();
                    let mut tx = session
                        .build_transaction()
                        .isolation_level(IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()?;
                    let out = f(&mut PgReads(Conn::new(&mut tx, stmts), &cache))?;
                    tx.commit()?;
                    Ok(out)
                })();
                match result {
                    Err(e) if tries < 2 && client.is_closed() => {
                        tracing::debug!(error = %e, "a pooled session was broken; reading again");
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Stop taking work, finish what is queued, and wait for the writers. Later writes fail
    /// with [`StoreError::Closed`].
    pub async fn close(&self) {
        let _ = self.queue.send(Msg::Close).await;
        let handles = std::mem::take(&mut *lock(&self.shared.writers));
        if handles.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await;
    }
}

impl Shared {
    fn pool(&self) -> &Pool {
        self.pool
            .as_ref()
            .expect("the pool lives as long as the engine")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The pool's idle sessions each stop a small runtime of their own when dropped, which
        // panics on an async runtime's thread: let the last reference go on a plain thread.
        let Some(pool) = self.pool.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("incidentd-pg-close".into())
                .spawn(move || drop(pool));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn writer_loop(shared: &Shared, writer: usize) {
    let mut carry: Vec<Op> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carry);
        let mut ended = false;
        if batch.is_empty() {
            // One writer at a time waits for work (holding the receiver while it waits) and
            // drains the queue; the others run their batches meanwhile.
            let mut rx = lock(&shared.receiver);
            match rx.blocking_recv() {
                Some(Msg::Op(op)) => batch.push(op),
                Some(Msg::Close) => rx.close(),
                None => ended = true,
            }
            drain(&mut rx, &mut batch);
        } else {
            // Work deferred from the last transaction runs now, with what is queued if no
            // other writer holds the receiver: one that does may be waiting there for work
            // that never comes (every caller may be waiting for this very work).
            top_up(shared, &mut batch);
        }
        if batch.is_empty() {
            if ended {
                break;
            }
            continue;
        }
        let started = Instant::now();
        let size = batch.len();
        carry = run_batch(shared, writer, batch);
        tracing::trace!(
            size,
            deferred = carry.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
    }
}

/// What became of an operation in a committed transaction.
enum Fate {
    /// Committed (its own failure, if any, rolled back to its savepoint): answer it.
    Answer,
    /// Run it again in the next transaction.
    Defer,
    /// A lock it needs is busy: run it again, in the transaction of the writer that holds or
    /// awaits the lock when there is one (see `keys.rs`), else in the next transaction.
    HandOff(String),
}

/// Run a batch until it commits or fails for good; answer its callers; return the operations
/// deferred to the next transaction.
fn run_batch(shared: &Shared, writer: usize, batch: Vec<Op>) -> Vec<Op> {
    let claims = shared.keys.batch(writer);
    let mut deferred = try_until_done(shared, &claims, batch);
    // Its transaction ended: work handed to this writer that it did not take runs next.
    deferred.extend(claims.end());
    deferred
}

fn try_until_done(shared: &Shared, claims: &Claims<Op>, mut batch: Vec<Op>) -> Vec<Op> {
    let mut attempt = 0;
    // Postpone writes (see `pending.rs`) unless sending them failed for good.
    let mut postpone = true;
    loop {
        attempt += 1;
        match try_batch(shared, claims, &mut batch, postpone) {
            Ok(fates) => {
                let mut deferred = Vec::new();
                for (op, fate) in batch.into_iter().zip(fates) {
                    match fate {
                        Fate::Answer => (op.finish)(Ok(())),
                        Fate::Defer => deferred.push(op),
                        Fate::HandOff(name) => {
                            if let Err(op) = claims.hand_off(&name, op) {
                                deferred.push(op);
                            }
                        }
                    }
                }
                return deferred;
            }
            Err(Failed::Postponed(e)) if postpone && !e.is_transient() => {
                // Run every statement at once instead, so that only an operation whose data
                // the server refuses fails.
                tracing::warn!(error = %e, size = batch.len(), "postponed writes failed; running the batch again without postponing");
                postpone = false;
                attempt -= 1;
            }
            Err(Failed::Postponed(e) | Failed::Other(e))
                if e.is_transient() && attempt < BATCH_ATTEMPTS =>
            {
                tracing::warn!(error = %e, attempt, size = batch.len(), "write transaction failed; running it again");
                std::thread::sleep(Duration::from_millis(50 << attempt));
            }
            Err(Failed::Postponed(e) | Failed::Other(e)) => {
                tracing::error!(error = %e, size = batch.len(), "write transaction failed; every caller in the batch gets the error");
                for op in batch {
                    (op.finish)(Err(e.clone()));
                }
                return Vec::new();
            }
        }
    }
}

/// Add to the batch what was queued while its first operation ran: that one may have waited
/// for a correlation key another writer's transaction held (the benchmark's webhooks all need
/// one key), and what queued meanwhile then shares this commit instead of waiting in batches
/// of its own, each for the key in turn. Skipped when another writer is taking work from the
/// queue (it waits there only when the queue is empty).
fn top_up(shared: &Shared, batch: &mut Vec<Op>) {
    if let Ok(mut rx) = shared.receiver.try_lock() {
        drain(&mut rx, batch);
    }
}

/// Take what is queued, up to [`MAX_BATCH`] operations in the batch.
fn drain(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Op>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Msg::Op(op)) => batch.push(op),
            Ok(Msg::Close) => rx.close(),
            Err(_) => break,
        }
    }
}

/// Why a transaction failed as a whole.
enum Failed {
    /// Sending postponed writes.
    Postponed(StoreError),
    Other(StoreError),
}

impl<E: Into<StoreError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Other(e.into())
    }
}

fn begin<'c>(session: &'c mut postgres::Client) -> Result<postgres::Transaction<'c>, StoreError> {
    Ok(session
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()?)
}

/// Savepoints cost a round trip each, so they are only taken where needed: an operation runs
/// inside savepoint `op` only when earlier operations' work is in the transaction (its
/// failure then rolls back to the savepoint) and it sends a statement (one whose work is all
/// postponed or already known needs none, see `pending.rs`); the first operation, or one after
/// such a restart, runs without one, and its failure rolls back the whole transaction, which
/// then starts again empty. A succeeded operation's savepoint is released together with the
/// next one's creation (one round trip), and the last one is committed with the transaction.
fn try_batch(
    shared: &Shared,
    claims: &Claims<Op>,
    batch: &mut Vec<Op>,
    postpone: bool,
) -> Result<Vec<Fate>, Failed> {
    let mut client = shared.pool().get()?;
    let (session, stmts) = client.parts();
    let mut tx = begin(session)?;
    let mut pending = Pending::new(postpone);
    let mut fates = Vec::with_capacity(batch.len());
    // Work of earlier operations is in the transaction.
    let mut kept = false;
    for i in 0.. {
        if i == 1 {
            top_up(shared, batch);
        }
        if i >= 1 {
            claims.take(batch, MAX_BATCH);
        }
        let Some(op) = batch.get_mut(i) else {
            break;
        };
        let in_savepoint = kept;
        let affinity = op.blocked < HANDOFFS;
        pending.start_op(in_savepoint);
        // Only the first operation waits for a busy lock: it holds nothing yet.
        let (ran, blocked) = {
            let conn = Conn::for_op(&mut tx, stmts, &mut pending);
            let claims: Option<&dyn Claiming> = affinity.then_some(claims);
            let mut pgtx = PgTx::new(conn, i == 0, claims);
            let ran = (op.run)(&mut pgtx);
            (ran, pgtx.blocked)
        };
        if let Some(e) = pending.broken.take() {
            return Err(Failed::Postponed(e));
        }
        match ran {
            Ran::Ok => {
                pending.op_succeeded();
                kept = true;
                fates.push(Fate::Answer);
            }
            Ran::Failed { transient } => {
                let sent = pending.started();
                pending.op_failed();
                if sent && in_savepoint {
                    tx.batch_execute("ROLLBACK TO op; RELEASE op")?;
                } else if sent {
                    tx.rollback()?;
                    tx = begin(session)?;
                    pending = Pending::new(postpone);
                }
                if let Some(name) = blocked {
                    op.blocked += 1;
                    fates.push(if affinity {
                        Fate::HandOff(name)
                    } else {
                        Fate::Defer
                    });
                } else if transient && op.retries < OP_RETRIES {
                    op.retries += 1;
                    fates.push(Fate::Defer);
                } else {
                    fates.push(Fate::Answer);
                }
            }
        }
    }
    let sent = pending.finish(&mut tx, stmts).map_err(Failed::Postponed)?;
    if kept && !sent {
        // PostgreSQL answers COMMIT of a failed transaction with a quiet ROLLBACK: were an
        // operation ever to swallow an SQL error and report success, its callers would get a
        // 2xx for work that is gone. One statement first fails loudly in that state (as the
        // postponed writes, when there are any, already did).
        tx.batch_execute("SELECT 1")?;
    }
    tx.commit()?;
    Ok(fates)
}
