//! incidentd: Alertmanager webhooks in, incidents with timelines, evidence and
//! post-mortem drafts out.

#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod app;
pub mod chart;
pub mod cli;
pub mod config;
pub mod core;
pub mod draft;
pub mod evidence;
pub mod evidence_rules;
pub mod followup;
pub mod http;
pub mod incident;
pub mod jobs;
pub mod metrics;
pub mod net_error;
pub mod postmortem;
pub mod prometheus;
pub mod reconcile;
pub mod report;
pub mod retry;
pub mod slack;
pub mod store;
pub mod time;
