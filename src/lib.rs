//! incidentd: Alertmanager webhooks in, incidents with timelines, evidence and
//! post-mortem drafts out.

#![forbid(unsafe_code)]

pub mod cli;
pub mod incident;
