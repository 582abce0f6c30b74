//! Evidence from Prometheus: the HTTP API client, the alerting rule behind an alert, the true
//! impact start (when the rule's condition first became true), and metric snapshots.
//!
//! The I/O lives in [`client`] and in the `async` runners ([`impact::find_impact_start`],
//! [`snapshot::run_snapshot`]); everything they decide is done by pure functions beside them
//! (run finding, the PromQL comparison split, statistics, unit formatting) so tests can drive
//! the decisions without a server.

pub mod client;
pub mod impact;
pub mod promql;
pub mod rule;
pub mod snapshot;

pub use client::{
    step_for_range, ActiveAlert, AlertingRule, Client, ClientOptions, Error, InstantSample, Point,
    QueryData, RangeSeries, Rule, RuleGroup, RulesData, VmalertAlert, MAX_POINTS_PER_SERIES,
};
pub use impact::{find_impact_start, run_start, ImpactOptions, ImpactStart};
pub use promql::{split_comparison, Comparison, ComparisonOp};
pub use rule::{
    empty_rules_problem, expr_from_generator_url, find_rule, lookup_rule, rule_context,
    RuleContext, RuleSource, VmalertUrls,
};
pub use snapshot::{
    build_snapshot, format_value, nice_step, plan_alert_query, plan_snapshot, run_snapshot,
    series_stats, AlertInput, ImpactFigure, IncidentWindow, QuerySource, SeriesSnapshot,
    SeriesStats, Snapshot, SnapshotError, SnapshotOptions, SnapshotPlan, SnapshotQuery,
    SnapshotReport,
};
