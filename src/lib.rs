//! incidentd: Alertmanager webhooks in, incidents with timelines, evidence and
//! post-mortem drafts out.

#![forbid(unsafe_code)]

pub mod chart;
pub mod evidence_rules;
pub mod incident;
pub mod prometheus;
