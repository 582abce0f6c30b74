//! What the HTTP handlers, the job handlers and the reconciler share, below all of them: the
//! store, the clock, and the signals between the webhook path and the job loops.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::incident::Timestamp;
use crate::jobs::Ingestion;
use crate::store::Store;
use crate::time::Clock;

pub struct Core {
    pub store: Store,
    /// The domain's clock (the real one, or a scripted one in tests).
    pub clock: Clock,
    /// Wakes the job loops after a commit that queued jobs.
    pub wake: Arc<Notify>,
    /// Told of every webhook, so follow-up work can yield to a storm of them.
    pub ingestion: Arc<Ingestion>,
    /// The daemon's own metrics (served at `/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Core {
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Observe the per-incident figures (`/metrics`) of the incidents that alerts this
    /// process just applied resolved for the first time: all their alerts resolved (an
    /// incident a person resolved was observed then), and it never reopened.
    pub async fn observe_resolutions(&self, outcomes: &[crate::incident::Outcome]) {
        use crate::incident::{Effect, Status};
        let mut ids: Vec<&str> = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o.effect,
                    Effect::AlertResolved {
                        incident_resolved: true
                    }
                )
            })
            .map(|o| o.incident_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            match self.store.incident(id).await {
                Ok(Some(i))
                    if i.status == Status::Resolved
                        && i.resolved_by.is_none()
                        && i.reopen_count == 0 =>
                {
                    self.metrics.incident_resolved(&i)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "cannot read a resolved incident's figures for /metrics")
                }
            }
        }
    }
}

/// Work that one replica at a time does (reconciling with Alertmanager, pruning): the
/// replica holding the named lease does it every `every`. The lease is short and renewed
/// at every check, so when its holder dies another replica takes over within
/// [`Turn::LEASE`]; a clean stop hands it over at once.
pub struct Turn {
    name: &'static str,
    every: std::time::Duration,
    last: Option<std::time::Instant>,
}

impl Turn {
    /// How long a lease holds without renewal.
    pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);
    /// How often the lease is checked (renewed or tried).
    const CHECK: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn new(name: &'static str, every: std::time::Duration) -> Turn {
        Turn {
            name,
            every,
            last: None,
        }
    }

    /// How long to wait before asking [`Turn::due`] again.
    pub fn pause(&self) -> std::time::Duration {
        self.every.min(Self::CHECK)
    }

    /// Whether this replica does the work now: it holds the lease (taken or renewed here)
    /// and `every` has passed since it last did it.
    pub async fn due(&mut self, store: &Store) -> bool {
        match store
            .acquire_lease(self.name, chrono::Utc::now(), Self::LEASE)
            .await
        {
            Ok(true) => {
                let due = self.last.is_none_or(|t| t.elapsed() >= self.every);
                if due {
                    self.last = Some(std::time::Instant::now());
                }
                due
            }
            Ok(false) => {
                tracing::debug!(lease = self.name, "another replica holds the lease");
                self.last = None;
                false
            }
            Err(e) => {
                tracing::warn!(lease = self.name, error = %e, "cannot take or renew the lease; will retry");
                false
            }
        }
    }

    /// Give the lease up (a clean stop), so another replica need not wait for it to lapse.
    pub async fn release(&self, store: &Store) {
        if let Err(e) = store.release_lease(self.name).await {
            tracing::debug!(lease = self.name, error = %e, "cannot release the lease");
        }
    }
}
