//! Running queued jobs: loops per kind, paced so that a storm of webhooks comes first, with
//! bounded retries and a bounded shutdown. What is queued, and when, is decided elsewhere
//! (`followup`); the queue itself is in the store.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::store::Job;
use crate::store::Store;

/// Why a job did not succeed, and whether to try again.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub message: String,
    /// When to try again; `None`: never (a permanent failure, kept with its error).
    pub retry_in: Option<chrono::Duration>,
    /// A new payload to keep with the job (progress made before the failure).
    pub payload: Option<serde_json::Value>,
}

impl JobFailure {
    pub fn retry(message: impl Into<String>, after: chrono::Duration) -> Self {
        JobFailure {
            message: message.into(),
            retry_in: Some(after),
            payload: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        JobFailure {
            message: message.into(),
            retry_in: None,
            payload: None,
        }
    }
}

/// Runs one job.
pub type Handler =
    Arc<dyn Fn(Job) -> Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send>> + Send + Sync>;

/// The pause of a job loop after its first retryable failure, and the longest.
const MIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// A job that failed this many times is given up.
pub const MAX_ATTEMPTS: u32 = 30;

/// How long a job in flight when shutdown begins may take to finish. After that it is
/// dropped where it stands and stays `running` in the table: the next start queues it again
/// (see the store's recovery at start-up), as after a crash. Bounds shutdown whatever a handler
/// waits on (a slow Prometheus, Slack's pace, timeouts one after another).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs queued jobs: loops of their own for each kind, so slow evidence queries never hold
/// up Slack. A kind may have several loops (`workers`): jobs of different incidents then run
/// side by side, while the jobs of one incident still run one after the other (a job is not
/// claimable while an earlier one of its kind and incident is unfinished; claims go through
/// the single writer, so two loops never claim the same job).
pub struct Runner {
    store: Store,
    handlers: HashMap<&'static str, (Handler, usize, Pace)>,
    wake: Arc<Notify>,
    /// Where the kinds that run and their failures are counted.
    metrics: Arc<Metrics>,
    /// How busy ingestion is: extra loops of a kind wait while webhooks pour in.
    ingestion: Arc<Ingestion>,
    grace: std::time::Duration,
}

impl Runner {
    pub fn new(
        store: Store,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
        ingestion: Arc<Ingestion>,
    ) -> Self {
        Runner {
            store,
            handlers: HashMap::new(),
            wake,
            metrics,
            ingestion,
            grace: SHUTDOWN_GRACE,
        }
    }

    /// Another grace period than [`SHUTDOWN_GRACE`] for jobs in flight at shutdown.
    pub fn with_grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Run jobs of `kind` with `handler` in `workers` loops (at least one), yielding to a
    /// burst of webhooks as `pace` says.
    pub fn handle(&mut self, kind: &'static str, handler: Handler, workers: usize, pace: Pace) {
        self.handlers.insert(kind, (handler, workers.max(1), pace));
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    /// Start the loops; they end when `stop` turns true, at the latest the grace period
    /// after it (a job still running then is left for the next start).
    pub fn spawn(self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        self.metrics.job_kinds(&self.kinds());
        let mut loops = Vec::new();
        for (kind, (handler, workers, pace)) in self.handlers {
            for worker in 0..workers {
                let job_loop = JobLoop {
                    kind,
                    handler: handler.clone(),
                    store: self.store.clone(),
                    wake: self.wake.clone(),
                    metrics: self.metrics.clone(),
                    yields_to: (worker > 0 || pace == Pace::YieldAll)
                        .then(|| self.ingestion.clone()),
                    grace: self.grace,
                };
                loops.push(tokio::spawn(job_loop.run(stop.clone())));
            }
        }
        loops
    }
}

/// How a kind's loops share the machine with a burst of webhooks (see [`Ingestion`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Every loop waits while webhooks pour in (for at most [`Ingestion::MAX_YIELD`]): work
    /// that competes with ingestion for the disk and the CPU and that nobody waits for
    /// second by second (drafts, evidence).
    YieldAll,
    /// The first loop keeps going, the others wait: work whose delay people notice at once
    /// (Slack messages), and which mostly waits on the network.
    KeepOne,
}

/// One loop running jobs of one kind.
struct JobLoop {
    kind: &'static str,
    handler: Handler,
    store: Store,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Set for a kind's extra loops, which wait while webhooks pour in.
    yields_to: Option<Arc<Ingestion>>,
    /// How long a job in flight at shutdown may still run.
    grace: std::time::Duration,
}

impl JobLoop {
    /// Claim and run jobs until `stop` turns true.
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let JobLoop {
            kind,
            handler,
            store,
            wake,
            metrics,
            yields_to,
            grace,
        } = self;
        let clock = chrono::Utc::now;
        // After a retryable failure the dependency (Prometheus, Slack) is probably down for the
        // other jobs of this kind too: pause before the next one instead of failing them all in
        // a tight loop, each failure a write of its own. Doubles up to MAX_PAUSE; a success ends it.
        let mut pause = std::time::Duration::ZERO;
        loop {
            if *stop.borrow() {
                return;
            }
            if yields_to.as_ref().is_some_and(|i| i.should_yield()) {
                tokio::select! {
                    _ = tokio::time::sleep(Ingestion::QUIET) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            let now = clock();
            let claimed = store.claim_job(kind, now).await;
            let job = match claimed {
                Ok(Some(job)) => job,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        _ = wake.notified() => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "cannot claim a job; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            };
            let (id, attempts, incident) = (job.id, job.attempts + 1, job.incident_id.clone());
            let run = handler(job);
            tokio::pin!(run);
            // The job is this process's while its lease holds; renewed while it runs, so a
            // replica that dies leaves it to the others once the lease expires.
            let every = store.job_lease() / 3;
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let result = loop {
                tokio::select! {
                    result = &mut run => break result,
                    _ = renew.tick() => match store.renew_job(id, clock()).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(kind, id, incident = ?incident, "a job's lease was taken over by another replica while it ran"),
                        Err(e) => tracing::warn!(kind, id, error = %e, "cannot renew a running job's lease"),
                    },
                    // A closed channel means stop too, as `changed()` below treats it.
                    () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                        match tokio::time::timeout(grace, &mut run).await {
                            Ok(result) => break result,
                            Err(_) => {
                                tracing::warn!(kind, id, incident = ?incident, grace_s = grace.as_secs_f64(), "job still running at the end of the shutdown grace period; left for the next start");
                                return;
                            }
                        }
                    }
                }
            };
            let now = clock();
            let retryable_failure = matches!(&result, Err(f) if f.retry_in.is_some());
            let recorded = match result {
                Ok(()) => {
                    tracing::debug!(kind, id, incident = ?incident, "job done");
                    store.complete_job(id, now).await
                }
                Err(f) => {
                    metrics.job_failed(kind);
                    let retry_in = f.retry_in.filter(|_| attempts < MAX_ATTEMPTS);
                    match retry_in {
                        Some(d) => {
                            tracing::warn!(kind, id, incident = ?incident, attempts, retry_in_s = d.num_seconds(), error = %f.message, "job failed; will retry")
                        }
                        None => {
                            tracing::error!(kind, id, incident = ?incident, attempts, error = %f.message, "job failed for good")
                        }
                    }
                    store
                        .fail_job(id, f.message, retry_in, f.payload, now)
                        .await
                }
            };
            if let Err(e) = recorded {
                // The job stays 'running' and runs again after a restart.
                tracing::error!(kind, id, error = %e, "cannot record a job's result");
            }
            pause = if retryable_failure {
                (pause * 2).clamp(MIN_PAUSE, MAX_PAUSE)
            } else {
                std::time::Duration::ZERO
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

// ---------- follow-up work yields to ingestion ----------

/// How busy webhook ingestion is, as far as follow-up work needs to know.
///
/// In an alert storm, webhooks (which Alertmanager waits for, and retries) and follow-up work
/// (drafts: CPU and fsyncs) compete for the same two cores and disk. While webhooks arrive,
/// the job loops wait (all of a kind's, or all but its first: [`Pace`]) until ingestion has
/// been quiet for [`Ingestion::QUIET`], then all of them drain the backlog (meanwhile a pending job of an
/// incident absorbed its later changes, so each draft is rendered once, in its latest state).
/// Under load that never stops, the loops stop waiting after [`Ingestion::MAX_YIELD`]:
/// follow-up work must not fall behind without bound.
#[derive(Debug)]
pub struct Ingestion {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch` of the latest webhook (0: none yet).
    last: std::sync::atomic::AtomicU64,
    /// Milliseconds since `epoch` when the current busy period began (0: quiet).
    busy_since: std::sync::atomic::AtomicU64,
}

impl Default for Ingestion {
    fn default() -> Self {
        Ingestion {
            epoch: std::time::Instant::now(),
            last: Default::default(),
            busy_since: Default::default(),
        }
    }
}

impl Ingestion {
    /// Ingestion counts as quiet this long after the latest webhook.
    pub const QUIET: std::time::Duration = std::time::Duration::from_millis(200);
    /// The longest the extra job loops wait for a busy period to end.
    pub const MAX_YIELD: std::time::Duration = std::time::Duration::from_secs(10);

    fn millis(&self) -> u64 {
        // Never 0, which means "never".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// A webhook arrived.
    pub fn webhook(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.millis();
        let last = self.last.swap(now, Relaxed);
        if last == 0 || now.saturating_sub(last) > Self::QUIET.as_millis() as u64 {
            self.busy_since.store(now, Relaxed);
        }
    }

    /// Whether an extra job loop should wait now.
    pub fn should_yield(&self) -> bool {
        self.should_yield_at(self.millis())
    }

    fn should_yield_at(&self, now: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last.load(Relaxed);
        let busy = last != 0 && now.saturating_sub(last) <= Self::QUIET.as_millis() as u64;
        busy && now.saturating_sub(self.busy_since.load(Relaxed))
            < Self::MAX_YIELD.as_millis() as u64
    }
}

#[cfg(test)]
mod ingestion_tests {
    use super::*;

    #[test]
    fn extra_loops_yield_during_a_burst_of_webhooks_and_not_once_it_is_over() {
        let i = Ingestion::default();
        assert!(!i.should_yield(), "no webhook yet");
        i.webhook();
        assert!(i.should_yield(), "a webhook just arrived");
        std::thread::sleep(Ingestion::QUIET + std::time::Duration::from_millis(50));
        assert!(!i.should_yield(), "quiet since");
    }

    #[test]
    fn extra_loops_stop_yielding_under_load_that_never_stops() {
        use std::sync::atomic::Ordering::Relaxed;
        let i = Ingestion::default();
        // A busy period that began longer ago than MAX_YIELD, webhooks still arriving.
        let now = i.millis() + Ingestion::MAX_YIELD.as_millis() as u64 + 1;
        i.busy_since.store(1, Relaxed);
        i.last.store(now, Relaxed);
        assert!(!i.should_yield_at(now));
        // The same when it began within MAX_YIELD: wait.
        i.busy_since.store(now - 1_000, Relaxed);
        assert!(i.should_yield_at(now));
    }
}

// ---------- where the blocking part of follow-up work runs ----------

/// Threads for the blocking part of follow-up work (rendering, writing and fsyncing drafts),
/// off the async runtime and below its CPU priority.
///
/// The runtime's threads serve the webhooks: a draft written on them (a few milliseconds of
/// CPU, several fsyncs) holds up every request queued behind it, and in an alert storm
/// follow-up work would set the pace of ingestion. Here it runs on its own threads at nice
/// [`WorkPool::NICE`] (Linux), so the scheduler gives ingestion the CPU first and follow-up
/// work the rest; it still gets all of it when ingestion is quiet.
pub struct WorkPool {
    queue: std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

impl WorkPool {
    /// The nice value of the pool's threads (0 is the daemon's own; 19 the lowest).
    pub const NICE: i32 = 10;

    /// A pool of `threads` threads (at least one) named `name`.
    pub fn new(name: &str, threads: usize) -> std::io::Result<WorkPool> {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    lower_priority();
                    loop {
                        let next = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match next {
                            // A panic is the work's failure (its caller sees `None`), not
                            // the end of the thread.
                            Ok(work) => {
                                let _ =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                            }
                            Err(_) => return, // the pool was dropped
                        }
                    }
                })?;
        }
        Ok(WorkPool {
            queue: std::sync::Mutex::new(tx),
        })
    }

    /// Run `f` on the pool; resolves with its result. `None` if the pool is gone or `f`
    /// panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let work: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = done.send(f());
        });
        self.queue.lock().ok()?.send(work).ok()?;
        wait.await.ok()
    }
}

/// Lower the calling thread's CPU priority by [`WorkPool::NICE`] (Linux keeps a nice value
/// per thread; elsewhere this does nothing). A failure only costs the priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(WorkPool::NICE) {
        tracing::debug!(error = %e, "cannot lower a work thread's priority");
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_pool_at_lower_priority_and_returns_its_result() {
        let pool = WorkPool::new("test-pool", 2).expect("pool");
        let on = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .expect("ran");
        assert_eq!(on.as_deref(), Some("test-pool"));
        #[cfg(target_os = "linux")]
        {
            // On Linux "the process" of getpriority(PRIO_PROCESS, 0) is the calling thread.
            let nice = || rustix::process::getpriority_process(None).expect("getpriority");
            let ours = nice();
            let theirs = pool.run(nice).await.expect("ran");
            assert_eq!(theirs, (ours + WorkPool::NICE).min(19));
        }
        // Work that panics is reported as missing, and the pool goes on.
        assert!(pool.run(|| panic!("boom")).await.is_none());
        assert_eq!(pool.run(|| 2 + 2).await, Some(4));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A store with one job of kind `test` (no incident) due now; returns the job's id.
    async fn store_with_a_job(dir: &std::path::Path) -> (Store, i64) {
        let store = Store::open_sqlite(dir).expect("store");
        let spec = crate::followup::JobSpec {
            kind: "test",
            payload: serde_json::Value::Null,
            coalesce: false,
            delay: chrono::Duration::zero(),
        };
        let id = store
            .schedule(None, spec, chrono::Utc::now())
            .await
            .expect("enqueue");
        (store, id)
    }

    async fn state_of(store: &Store, id: i64) -> String {
        store
            .job_status(id)
            .await
            .expect("status")
            .expect("the job exists")
            .state
    }

    /// Runs the job with `handler`, stops once it is running; returns how long the loop took
    /// to end after the stop, and the job's state then.
    async fn stop_while_running(grace: Duration, handler: Handler) -> (Duration, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, id) = store_with_a_job(dir.path()).await;
        let mut runner = Runner::new(
            store.clone(),
            Arc::new(Notify::new()),
            Arc::new(Metrics::new()),
            Arc::new(Ingestion::default()),
        )
        .with_grace(grace);
        runner.handle("test", handler, 1, Pace::KeepOne);
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = runner.spawn(stop_rx);
        let deadline = Instant::now() + Duration::from_secs(10);
        while state_of(&store, id).await != "running" {
            assert!(Instant::now() < deadline, "the job never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopped = Instant::now();
        stop_tx.send(true).expect("stop");
        for w in workers {
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .expect("the loop ends")
                .expect("no panic");
        }
        let took = stopped.elapsed();
        let state = state_of(&store, id).await;
        store.close().await;
        (took, state)
    }

    #[tokio::test]
    async fn a_job_that_outlasts_the_shutdown_grace_is_left_running_for_the_next_start() {
        let forever: Handler = Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
        });
        let (took, state) = stop_while_running(Duration::from_millis(200), forever).await;
        assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
        assert!(took >= Duration::from_millis(200), "no grace: {took:?}");
        // `running` is what start-up requeues (the SQLite store's recovery at start-up).
        assert_eq!(state, "running");
    }

    #[tokio::test]
    async fn a_job_that_finishes_within_the_grace_is_recorded_done() {
        let quick: Handler = Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            })
        });
        let (took, state) = stop_while_running(Duration::from_secs(5), quick).await;
        assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
        assert_eq!(state, "done");
    }
}
