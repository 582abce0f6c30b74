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
}

impl Core {
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }
}
