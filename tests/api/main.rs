//! Integration tests: the real router on a real port with a real SQLite file, driven over
//! real HTTP; the restart tests run the real binary.

mod cli;
mod crash;
mod drafts;
mod evidence;
#[path = "../slack_fake/fake.rs"]
mod fake;
mod faults;
mod helpers;
mod hostile;
mod incident_metrics;
mod incidents;
mod logs;
mod metrics;
#[path = "../support/postgres.rs"]
mod pg;
mod postgres;
mod readme;
mod reconcile;
#[path = "../support/recorded_prometheus.rs"]
mod recorded_prometheus;
mod replicas;
mod reports;
mod restart;
mod senders;
mod slack;
mod slack_events;
mod web_config;
mod webhook;
