//! The incident domain: occurrences, correlation, lifecycle, timeline and durations.
//! Pure code: nothing here does I/O, and every function that needs the time takes it.

pub mod model;

pub use model::*;
pub mod alert;
pub use alert::{correlation_key, grafana_keys, ValidAlert};
pub mod conversation;
pub mod correlate;
pub mod lifecycle;
pub mod memory;

pub use correlate::{
    act, ingest, ingest_all, Action, ActionError, Effect, Outcome, Repo, Seen, Split,
};
pub use lifecycle::Rules;
#[cfg(test)]
mod tests;
