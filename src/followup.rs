//! Follow-up work: which jobs a change to an incident calls for. Pure: the store queues them
//! in the same transaction as the change.

use crate::incident::{Action, Outcome};

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
    /// People's replies in the incident's Slack thread changed its timeline.
    Conversation { incident_id: &'a str },
}

impl Change<'_> {
    pub fn incident_id(&self) -> &str {
        match self {
            Change::Alert(o) => &o.incident_id,
            Change::Person { incident_id, .. } => incident_id,
            Change::Evidence { incident_id }
            | Change::Split { incident_id }
            | Change::Conversation { incident_id } => incident_id,
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
pub fn none(_: &Change) -> Vec<JobSpec> {
    Vec::new()
}

/// The jobs that `changes` call for: `(incident id, job)`. A split plans work for every
/// part, whose members changed without an alert of its own saying so.
pub fn plan(planner: &Planner, changes: &[Change]) -> Vec<(String, JobSpec)> {
    let mut jobs = Vec::new();
    let mut add = |change: &Change| {
        let id = change.incident_id().to_string();
        jobs.extend(planner(change).into_iter().map(|spec| (id.clone(), spec)));
    };
    for change in changes {
        if let Change::Alert(o) = change {
            if !o.changed() {
                continue;
            }
            if let Some(split) = &o.split {
                for id in std::iter::once(&split.from).chain(&split.into) {
                    add(&Change::Split { incident_id: id });
                }
            }
        }
        add(change);
    }
    jobs
}
