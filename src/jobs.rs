//! Follow-up work: which jobs a change to an incident calls for, queued in the same
//! transaction as the change (the job table itself lives in `store::jobs`).

use crate::incident::{Action, Outcome, Timestamp};
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
}

impl Change<'_> {
    pub fn incident_id(&self) -> &str {
        match self {
            Change::Alert(o) => &o.incident_id,
            Change::Person { incident_id, .. } => incident_id,
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

/// Queue the jobs that `changes` call for, inside the caller's transaction.
pub fn plan(
    planner: &Planner,
    tx: &rusqlite::Transaction,
    changes: &[Change],
    now: Timestamp,
) -> rusqlite::Result<()> {
    for change in changes {
        if let Change::Alert(o) = change {
            if !o.changed() {
                continue;
            }
        }
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
    }
    Ok(())
}
