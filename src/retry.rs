//! The one retry policy: after a failure, wait `first`, then twice as long after each further
//! failure, never longer than `max` (or `first`, if that is longer). Jobs, evidence queries
//! and Slack deliveries differ only in their two numbers.

use std::time::Duration;

/// Exponential backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Follow-up jobs whose handler failed on something worth retrying (the store, a draft's
/// file): 5 s, 10 s, 20 s, ... at most 10 minutes.
pub const JOBS: Backoff = Backoff {
    first: Duration::from_secs(5),
    max: Duration::from_secs(600),
};

/// Slack's Web API when it gives no `Retry-After`: 2 s, 4 s, 8 s, ... at most 5 minutes.
pub const SLACK: Backoff = Backoff {
    first: Duration::from_secs(2),
    max: Duration::from_secs(300),
};

/// The ceiling of evidence retries, whose first wait is `prometheus.retry_backoff`.
pub const EVIDENCE_MAX: Duration = Duration::from_secs(600);

impl Backoff {
    /// The wait before the next attempt after attempt number `attempt` (1 for the first)
    /// failed.
    pub fn after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        let ceiling = self.max.max(self.first);
        self.first
            .checked_mul(factor)
            .unwrap_or(ceiling)
            .min(ceiling)
    }

    /// [`Backoff::after`] as the store's duration type.
    pub fn after_chrono(&self, attempt: u32) -> chrono::Duration {
        crate::time::chrono_duration(self.after(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_the_ceiling() {
        let secs = |b: Backoff| (1..=9).map(|a| b.after(a).as_secs()).collect::<Vec<_>>();
        assert_eq!(secs(JOBS), [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(secs(SLACK), [2, 4, 8, 16, 32, 64, 128, 256, 300]);
        for b in [JOBS, SLACK] {
            assert_eq!(b.after(0), b.first, "attempt 0 counts as the first");
            assert_eq!(b.after(u32::MAX), b.max);
        }
        let evidence = Backoff {
            first: Duration::from_millis(100),
            max: EVIDENCE_MAX,
        };
        assert_eq!(evidence.after(3), Duration::from_millis(400));
        assert_eq!(evidence.after(u32::MAX), EVIDENCE_MAX);
        // A first wait above the ceiling is kept, never cut below what was configured.
        let long = Backoff {
            first: Duration::from_secs(900),
            max: EVIDENCE_MAX,
        };
        assert_eq!(long.after(4), Duration::from_secs(900));
    }
}
