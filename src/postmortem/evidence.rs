//! What Prometheus and the rules directory told about an incident, as a draft is rendered
//! from it: plain serializable structs that the evidence module fills in and the store keeps.

use serde::{Deserialize, Serialize};

use super::helpers::Unit;
use crate::incident::{ImpactMethod, LabelSet, Timestamp};

/// The rule behind an alert, as Prometheus' `/api/v1/rules` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub alertname: String,
    pub expr: String,
    /// The rule's `for`, in seconds; `None` when unknown.
    pub for_seconds: Option<u64>,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// The rule group's name.
    pub group: Option<String>,
    /// Where the rule was found: `rules_api` (the backend's `/api/v1/rules`; also when
    /// absent, as in evidence stored before this field), `vmalert_rules` (vmalert's own
    /// rules API, through the alert's generatorURL) or `vmalert_alert` (vmalert's alert at
    /// the generatorURL: no `for`) or `generator_url` (a Prometheus generatorURL's `g0.expr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One queried series over the incident window, reduced to the figures a post-mortem quotes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Human name, e.g. `Connection pool utilisation`.
    pub name: String,
    /// The PromQL that produced it.
    pub query: String,
    pub unit: Unit,
    /// Typical value before the incident.
    pub baseline: Option<f64>,
    /// Worst value during the incident: the highest, or the lowest when `lower_is_worse`.
    pub peak: Option<f64>,
    /// A drop is the bad direction (throughput, availability): `peak` is the lowest value.
    #[serde(default)]
    pub lower_is_worse: bool,
    /// The first value at or after the resolution: only from data collected after the
    /// resolve (`None` while open, or before the full snapshot).
    pub at_resolution: Option<f64>,
    /// The last value of the data and its time (at most the collection time): "now" while
    /// the incident is open.
    #[serde(default)]
    pub latest: Option<f64>,
    #[serde(default)]
    pub latest_at: Option<Timestamp>,
    /// The query returned no data at all (listed, not dropped).
    #[serde(default)]
    pub no_data: bool,
    /// Why a figure is less than it seems, e.g. computed over too little history.
    #[serde(default)]
    pub note: Option<String>,
    /// Peak relative to baseline, `peak / baseline`; computed from the two when `None`.
    pub change: Option<f64>,
    /// The alert threshold the series was compared with, for `A > threshold` rules.
    pub threshold: Option<f64>,
    /// The chart's file name inside the draft's `<ID>/` directory, e.g. `pool-ratio.svg`.
    pub chart: Option<String>,
    /// The alert this query belongs to, if any.
    pub alertname: Option<String>,
}

/// A figure from an impact query, already formatted by whoever ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactFigure {
    /// e.g. `Failed requests (5xx)`.
    pub name: String,
    /// e.g. `310`.
    pub value: String,
    pub query: String,
}

/// The service level objective an incident spends error budget from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// e.g. `99.9`.
    pub target_percent: f64,
    /// e.g. 30 days in seconds.
    pub window_seconds: u64,
}

/// An action item a rule file suggests for an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSuggestion {
    pub action: String,
    /// e.g. `P1`.
    pub priority: Option<String>,
    pub alertname: Option<String>,
}

/// Everything Prometheus and the rules directory told us about an incident. Every part
/// may be empty; `missing_reason` says why Prometheus could not be asked at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub rules: Vec<RuleInfo>,
    pub snapshots: Vec<Snapshot>,
    pub impact: Vec<ImpactFigure>,
    pub slo: Option<Slo>,
    pub action_items: Vec<ActionSuggestion>,
    /// e.g. `no Prometheus URL is configured`, `Prometheus at http://… timed out after 10s`.
    pub missing_reason: Option<String>,
    /// What was wrong with the rules API's answer even though other queries had data, e.g.
    /// "it lists no alerting rule at all (VictoriaMetrics without -vmalert.proxyURL?)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_problem: Option<String>,
    pub collected_at: Option<Timestamp>,
    /// The end of the data (never after `collected_at`).
    #[serde(default)]
    pub data_until: Option<Timestamp>,
    /// The resolution this evidence was measured after: set only when the data reaches the
    /// resolve, so `at_resolution` figures are true.
    #[serde(default)]
    pub resolved_at: Option<Timestamp>,
    /// `prometheus.snapshot_delay` in seconds: the evidence after a resolve is collected
    /// this long after it.
    #[serde(default)]
    pub full_delay_seconds: Option<u64>,
    /// When each alert's condition became true, as Prometheus showed it.
    #[serde(default)]
    pub condition_starts: Vec<ConditionStart>,
}

/// When one alert's condition became true: the alert's impact start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionStart {
    /// The alert (Alertmanager's fingerprint) and its firing time: together one occurrence.
    pub fingerprint: String,
    pub fired_at: Timestamp,
    pub at: Timestamp,
    pub method: ImpactMethod,
    /// The condition was already true at the start of the lookback: `at` or earlier.
    #[serde(default)]
    pub at_or_before: bool,
}
