//! Follow-up work: which jobs a change to an incident calls for, queued in the same
//! transaction as the change (the job table itself lives in `store::jobs`).

use crate::incident::{Action, Outcome};
use crate::store::jobs as queue;

/// A change to an incident that later stages (evidence, drafts, Slack) may react to.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// An alert of a notification did this.
    Alert(&'a Outcome),
    /// A person acted on an incident.
    Person {
        incident_id: &'a str,
        by: &'a str,
        action: &'a Action,
    },
    /// New evidence from Prometheus was stored for an incident.
    Evidence { incident_id: &'a str },
    /// An incident was split (see [`crate::incident::Split`]): this is one of its parts, whose
    /// members changed without an alert of its own saying so.
    Split { incident_id: &'a str },
}

impl Change<'_> {
    pub fn incident_id(&self) -> &str {
        match self {
            Change::Alert(o) => &o.incident_id,
            Change::Person { incident_id, .. } => incident_id,
            Change::Evidence { incident_id } | Change::Split { incident_id } => incident_id,
        }
    }
}

/// A job to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub kind: &'static str,
    pub payload: serde_json::Value,
    /// One pending job of this kind per incident absorbs the others (drafts: a burst of
    /// webhooks renders once). Messages that must each be delivered do not coalesce.
    pub coalesce: bool,
    pub delay: chrono::Duration,
}

/// Decides which jobs a change calls for; built once from the configuration.
pub type Planner = dyn Fn(&Change) -> Vec<JobSpec> + Send + Sync;

/// A planner that queues nothing (no evidence, drafts or Slack configured).
pub fn no_followups(_: &Change) -> Vec<JobSpec> {
    Vec::new()
}

/// Queue the jobs that `changes` call for, inside the caller's transaction. Jobs are
/// scheduled on the wall clock (operational time), whatever clock the domain runs on.
pub fn plan(
    planner: &Planner,
    tx: &rusqlite::Transaction,
    changes: &[Change],
) -> rusqlite::Result<()> {
    let now = chrono::Utc::now();
    for change in changes {
        if let Change::Alert(o) = change {
            if !o.changed() {
                continue;
            }
            if let Some(split) = &o.split {
                for id in std::iter::once(&split.from).chain(&split.into) {
                    enqueue_all(planner, tx, &Change::Split { incident_id: id }, now)?;
                }
            }
        }
        enqueue_all(planner, tx, change, now)?;
    }
    Ok(())
}

fn enqueue_all(
    planner: &Planner,
    tx: &rusqlite::Transaction,
    change: &Change,
    now: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<()> {
    for spec in planner(change) {
        queue::enqueue(
            tx,
            spec.kind,
            Some(change.incident_id()),
            &spec.payload,
            spec.coalesce,
            now + spec.delay,
            now,
        )?;
    }
    Ok(())
}

// ---------- running jobs ----------

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use crate::store::jobs::Job;
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
/// (see [`queue::requeue_running`]), as after a crash. Bounds shutdown whatever a handler
/// waits on (a slow Prometheus, Slack's pace, timeouts one after another).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The usual wait before retry `attempt` (1-based): 5 s doubling, at most 10 minutes.
pub fn backoff(attempt: u32) -> chrono::Duration {
    let secs = 5i64.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    chrono::Duration::seconds(secs.min(600))
}

/// Runs queued jobs: one loop per kind, so slow evidence queries never hold up Slack.
pub struct Runner {
    store: Store,
    handlers: HashMap<&'static str, Handler>,
    wake: Arc<Notify>,
    grace: std::time::Duration,
}

impl Runner {
    pub fn new(store: Store, wake: Arc<Notify>) -> Self {
        Runner {
            store,
            handlers: HashMap::new(),
            wake,
            grace: SHUTDOWN_GRACE,
        }
    }

    /// Another grace period than [`SHUTDOWN_GRACE`] for jobs in flight at shutdown.
    pub fn with_grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn handle(&mut self, kind: &'static str, handler: Handler) {
        self.handlers.insert(kind, handler);
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    /// Start the loops; they end when `stop` turns true, at the latest the grace period
    /// after it (a job still running then is left for the next start).
    pub fn spawn(self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let grace = self.grace;
        self.handlers
            .into_iter()
            .map(|(kind, handler)| {
                let (store, wake, stop) = (self.store.clone(), self.wake.clone(), stop.clone());
                tokio::spawn(run_kind(kind, handler, store, wake, stop, grace))
            })
            .collect()
    }
}

async fn run_kind(
    kind: &'static str,
    handler: Handler,
    store: Store,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    grace: std::time::Duration,
) {
    let clock = chrono::Utc::now;
    // After a retryable failure the dependency (Prometheus, Slack) is probably down for the
    // other jobs of this kind too: pause before the next one instead of failing them all in
    // a tight loop, each failure a write of its own. Doubles up to MAX_PAUSE; a success ends it.
    let mut pause = std::time::Duration::ZERO;
    loop {
        if *stop.borrow() {
            return;
        }
        let now = clock();
        let claimed = store
            .write(move |tx| Ok(queue::claim(tx, kind, now)?))
            .await;
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
        let result = tokio::select! {
            result = &mut run => result,
            // A closed channel means stop too, as `changed()` below treats it.
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                match tokio::time::timeout(grace, &mut run).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(kind, id, incident = ?incident, grace_s = grace.as_secs_f64(), "job still running at the end of the shutdown grace period; left for the next start");
                        return;
                    }
                }
            }
        };
        let now = clock();
        let retryable_failure = matches!(&result, Err(f) if f.retry_in.is_some());
        let recorded = match result {
            Ok(()) => {
                tracing::debug!(kind, id, incident = ?incident, "job done");
                store
                    .write(move |tx| Ok(queue::complete(tx, id, now)?))
                    .await
            }
            Err(f) => {
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
                    .write(move |tx| {
                        Ok(queue::fail(
                            tx,
                            id,
                            &f.message,
                            retry_in,
                            f.payload.as_ref(),
                            now,
                        )?)
                    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A store with one job of kind `test` (no incident) due now; returns the job's id.
    async fn store_with_a_job(dir: &std::path::Path) -> (Store, i64) {
        let store = Store::open(dir).expect("store");
        let id = store
            .write(|tx| {
                let now = chrono::Utc::now();
                queue::enqueue(tx, "test", None, &serde_json::Value::Null, false, now, now)?;
                Ok(tx.last_insert_rowid())
            })
            .await
            .expect("enqueue");
        (store, id)
    }

    async fn state_of(store: &Store, id: i64) -> String {
        store
            .read(move |c| queue::status(c, id))
            .await
            .expect("status")
            .expect("the job exists")
            .0
    }

    /// Runs the job with `handler`, stops once it is running; returns how long the loop took
    /// to end after the stop, and the job's state then.
    async fn stop_while_running(grace: Duration, handler: Handler) -> (Duration, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, id) = store_with_a_job(dir.path()).await;
        let mut runner = Runner::new(store.clone(), Arc::new(Notify::new())).with_grace(grace);
        runner.handle("test", handler);
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
        // `running` is what start-up requeues (store::jobs::requeue_running).
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
