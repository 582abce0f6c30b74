//! Metric snapshots of an incident: which queries to run ([`plan_snapshot`], pure), running
//! them over `[impact_start − baseline, resolved_at + margin]` ([`run_snapshot`]), and per
//! series the baseline, peak and value at resolution ([`series_stats`], pure), with values
//! formatted as humans read them ([`format_value`]: 97 %, 8.7 s, 2,400 req/s, 1.2 GiB).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::client::{step_for_range, Client, Point, QueryData};
use super::promql::split_comparison;
use super::rule::RuleContext;
use crate::evidence_rules::{render_query, Direction, EvidenceRules, Slo, Unit};
use crate::incident::LabelSet;

/// The incident's times that bound a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncidentWindow {
    pub impact_start: DateTime<Utc>,
    /// `None` while the incident is open: the snapshot ends at `now`.
    pub resolved_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

impl IncidentWindow {
    /// Where the incident ends for statistics: resolution, or now while open.
    pub fn incident_end(&self) -> DateTime<Utc> {
        self.resolved_at.unwrap_or(self.now).max(self.impact_start)
    }

    /// The incident's length so far (the `{{range}}` of rules/ queries), at least 1 s.
    pub fn duration(&self) -> Duration {
        (self.incident_end() - self.impact_start)
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_secs(1))
    }
}

/// How much to show around the incident.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Shown before `impact_start`; the baseline is computed over it.
    pub baseline: Duration,
    /// Shown after `resolved_at`.
    pub margin: Duration,
    /// Aim for about this many points per series (the step is rounded to a nice value).
    pub target_points: u32,
    /// Never step finer than this (the scrape interval is a good value).
    pub min_step: Duration,
    /// Keep at most this many series per query (the worst ones) so charts stay readable.
    pub max_series: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            baseline: Duration::from_secs(3600),
            margin: Duration::from_secs(600),
            target_points: 400,
            min_step: Duration::from_secs(1),
            max_series: 10,
        }
    }
}

/// Where a snapshot query came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuerySource {
    /// The measured side of an alert's expression.
    Alert { alertname: String },
    /// A query listed in rules/.
    Rules { entry: String },
}

/// One query to run, fully rendered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotQuery {
    /// File-safe and unique within the incident: names charts (`{name}.svg`).
    pub name: String,
    pub title: String,
    pub query: String,
    pub unit: Unit,
    pub direction: Direction,
    pub threshold: Option<f64>,
    pub source: QuerySource,
    /// The alert rule's evaluation interval (alert queries only): the peak is sought with a
    /// subquery at least this fine, so a value the rule saw cannot fall between two steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_interval: Option<Duration>,
}

/// An alert as the planner needs it.
#[derive(Debug, Clone)]
pub struct AlertInput {
    pub alertname: String,
    pub labels: LabelSet,
    pub rule: Option<RuleContext>,
}

/// The queries of one snapshot, and what could not be planned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotPlan {
    pub queries: Vec<SnapshotQuery>,
    /// Evaluated once over the whole incident (`{{range}}`), e.g. failed requests.
    pub impact: Vec<SnapshotQuery>,
    /// SLOs of matching rules/ entries, by entry name.
    pub slos: Vec<(String, Slo)>,
    /// Suggested action items from matching rules/ entries, deduplicated by text, in order,
    /// each with the alert it came for and the names its `crossed:` query ran under.
    pub actions: Vec<PlannedAction>,
    /// A rules/ query not run because an earlier one measures the same: (its name, the
    /// name of the one that ran).
    pub aliases: Vec<(String, String)>,
    pub errors: Vec<SnapshotError>,
}

/// A suggested action item in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedAction {
    pub spec: crate::evidence_rules::ActionSpec,
    pub alertname: String,
}

/// A query that could not be planned or run; the incident records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotError {
    pub name: String,
    pub query: Option<String>,
    pub error: String,
    /// Worth retrying the snapshot later (Prometheus slow or down).
    pub retryable: bool,
}

/// The query for an alert's own expression: for `A <op> threshold` the measured side `A`,
/// with the threshold and the bad direction from the operator; otherwise the whole expression.
/// `unit` comes from a rules/ entry's `alert_unit` when one matches, else a guess from names.
pub fn plan_alert_query(rule: &RuleContext, unit: Option<Unit>) -> SnapshotQuery {
    let split = split_comparison(&rule.expr);
    let (query, threshold, direction) = match split.as_ref().and_then(|c| c.series_and_threshold())
    {
        Some((series, op, t)) => (
            series.to_string(),
            Some(t),
            match op.higher_is_worse() {
                Some(false) => Direction::LowerIsWorse,
                _ => Direction::HigherIsWorse,
            },
        ),
        None => (rule.expr.clone(), None, Direction::HigherIsWorse),
    };
    let unit = unit.unwrap_or_else(|| guess_unit(&query, threshold));
    SnapshotQuery {
        name: file_safe(&format!("alert-{}", rule.alertname)),
        title: rule.alertname.clone(),
        query,
        unit,
        direction,
        threshold,
        source: QuerySource::Alert {
            alertname: rule.alertname.clone(),
        },
        eval_interval: Some(rule.group_interval.unwrap_or(Duration::from_secs(1))),
    }
}

/// A unit from metric-name conventions, for alert expressions no rules/ entry describes.
fn guess_unit(query: &str, threshold: Option<f64>) -> Unit {
    if query.contains("_seconds")
        || query.contains("histogram_quantile") && query.contains("duration")
    {
        Unit::Seconds
    } else if query.contains("_bytes") {
        Unit::Bytes
    } else if query.contains("_ratio")
        || query.contains('/') && threshold.is_some_and(|t| (0.0..=1.0).contains(&t))
    {
        Unit::Ratio
    } else if query.contains("_percent") {
        Unit::Percent
    } else if query.contains("rate(") && query.contains("_total") {
        Unit::RequestsPerSecond
    } else {
        Unit::Count
    }
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A query without its whitespace: two spellings of one expression compare equal.
pub fn normalise_query(q: &str) -> String {
    q.chars().filter(|c| !c.is_whitespace()).collect()
}

/// What a query measures, without its range windows, grouping, spacing and equality label
/// matchers (which only scope it to a service or instance): `sum by (service)
/// (rate(x{code=~"5.."}[10s]))` and `sum(rate(x{service="p",code=~"5.."}[1m]))` are both
/// `sum(rate(x{code=~"5.."}))`, while `sum(rate(x[1m]))` is another measure.
pub fn query_shape(q: &str) -> String {
    let mut out = String::new();
    let mut depth_bracket = 0usize;
    let mut selector: Option<String> = None;
    let mut in_string: Option<char> = None;
    for c in q.chars() {
        if let Some(sel) = selector.as_mut() {
            if let Some(quote) = in_string {
                sel.push(c);
                if c == quote {
                    in_string = None;
                }
                continue;
            }
            match c {
                '"' | '\'' | '`' => {
                    in_string = Some(c);
                    sel.push(c);
                }
                '}' => {
                    let mut kept: Vec<String> = split_matchers(sel)
                        .into_iter()
                        .map(|m| m.chars().filter(|c| !c.is_whitespace()).collect::<String>())
                        .filter(|m| m.contains("=~") || m.contains("!=") || m.contains("!~"))
                        .collect();
                    kept.sort();
                    if !kept.is_empty() {
                        out.push('{');
                        out.push_str(&kept.join(","));
                        out.push('}');
                    }
                    selector = None;
                }
                _ => sel.push(c),
            }
            continue;
        }
        match c {
            '{' => selector = Some(String::new()),
            '[' => depth_bracket += 1,
            ']' => depth_bracket = depth_bracket.saturating_sub(1),
            _ if depth_bracket > 0 => {}
            _ if c.is_whitespace() => out.push(' '),
            _ => out.push(c),
        }
    }
    // Grouping clauses: `by (...)`, `without (...)`, as words.
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    for kw in ["by", "without"] {
        let mut from = 0;
        while let Some(off) = out[from..].find(kw) {
            let i = from + off;
            let bytes = out.as_bytes();
            let before_ok = i == 0 || !ident(bytes[i - 1]);
            let after = &out[i + kw.len()..];
            let trimmed = after.trim_start();
            if before_ok && trimmed.starts_with('(') {
                if let Some(close) = trimmed.find(')') {
                    let end = i + kw.len() + (after.len() - trimmed.len()) + close + 1;
                    out.replace_range(i..end, " ");
                    continue;
                }
            }
            from = i + kw.len();
        }
    }
    out.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A selector's matchers, split at commas outside quotes.
fn split_matchers(sel: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut from = 0;
    for (i, c) in sel.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None if c == ',' => {
                out.push(&sel[from..i]);
                from = i + 1;
            }
            None => {}
        }
    }
    out.push(&sel[from..]);
    out.into_iter().filter(|m| !m.trim().is_empty()).collect()
}

/// Decides the queries of a snapshot: each alert's expression, then the queries and impact
/// queries of every rules/ entry that matches an alert, rendered with that alert's labels and
/// the window's duration. Identical rendered queries run once.
pub fn plan_snapshot(
    alerts: &[AlertInput],
    rules: &EvidenceRules,
    window: &IncidentWindow,
) -> SnapshotPlan {
    let mut plan = SnapshotPlan::default();
    let range = window.duration();
    let mut aliases: Vec<(String, String)> = Vec::new();
    let mut push = |list: &mut Vec<SnapshotQuery>, mut q: SnapshotQuery, is_impact: bool| {
        // The same expression written with other spacing, or the same measure over another
        // window or label selection (an alert's `[10s]` error ratio and a rules/ `[1m]` one),
        // is one row: the first (the alert's own) stays.
        // Impact figures are single numbers of their own: only exact repeats merge.
        if let Some(o) = list.iter().find(|o| {
            normalise_query(&o.query) == normalise_query(&q.query)
                || (!is_impact && query_shape(&o.query) == query_shape(&q.query))
        }) {
            aliases.push((q.name.clone(), o.name.clone()));
            return;
        }
        // Two alerts may both bring a query of the same name with different labels.
        let base = q.name.clone();
        let mut n = 2;
        while list.iter().any(|o| o.name == q.name) {
            q.name = format!("{base}-{n}");
            n += 1;
        }
        list.push(q);
    };
    for alert in alerts {
        let entries: Vec<_> = rules.matching(&alert.labels).collect();
        match &alert.rule {
            Some(rule) => {
                let unit = entries.iter().find_map(|e| e.alert_unit);
                push(&mut plan.queries, plan_alert_query(rule, unit), false);
            }
            None => plan.errors.push(SnapshotError {
                name: file_safe(&format!("alert-{}", alert.alertname)),
                query: None,
                error: format!("the rule of alert {} is unknown", alert.alertname),
                retryable: false,
            }),
        }
        for entry in entries {
            for (specs, is_impact) in [(&entry.queries, false), (&entry.impact, true)] {
                for spec in specs {
                    match render_query(entry, spec, &alert.labels, range) {
                        Ok(query) => {
                            let q = SnapshotQuery {
                                name: spec.name.clone(),
                                title: spec.display_title().to_string(),
                                query,
                                unit: spec.unit,
                                direction: spec.direction,
                                threshold: spec.threshold,
                                source: QuerySource::Rules {
                                    entry: entry.name.clone(),
                                },
                                eval_interval: None,
                            };
                            if is_impact {
                                push(&mut plan.impact, q, true);
                            } else {
                                push(&mut plan.queries, q, false);
                            }
                        }
                        Err(e) => plan.errors.push(SnapshotError {
                            name: spec.name.clone(),
                            query: None,
                            error: e.to_string(),
                            retryable: false,
                        }),
                    }
                }
            }
            if let Some(slo) = entry.slo {
                if !plan.slos.iter().any(|(n, _)| n == &entry.name) {
                    plan.slos.push((entry.name.clone(), slo));
                }
            }
            for a in &entry.actions {
                if !plan.actions.iter().any(|p| p.spec.action == a.action) {
                    plan.actions.push(PlannedAction {
                        spec: a.clone(),
                        alertname: alert.alertname.clone(),
                    });
                }
            }
        }
    }
    plan.aliases = aliases;
    plan
}

/// Baseline, peak, latest value and value at resolution of one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesStats {
    /// Median of the samples before `impact_start`.
    pub baseline: Option<f64>,
    /// The worst value (by direction) within `[impact_start, incident end]`.
    pub peak: Option<f64>,
    pub peak_at: Option<DateTime<Utc>>,
    /// The first sample at or after the resolution; `None` while the incident is open, or
    /// when the data does not reach past the resolution yet.
    pub at_resolution: Option<f64>,
    /// The last sample of the data (never later than the snapshot's collection time).
    pub latest: Option<f64>,
    pub latest_at: Option<DateTime<Utc>>,
    /// A reported figure (peak, latest, at resolution) comes from a point whose query window
    /// reached back before the series' first data: computed over too little history.
    pub short_history: bool,
}

/// Statistics of one series. NaN samples are ignored. `resolved_at` is the resolution when
/// the incident is resolved; `full_history_from` is the first time whose query window is
/// covered by data (`None`: every point is).
pub fn series_stats(
    points: &[Point],
    impact_start: DateTime<Utc>,
    incident_end: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    full_history_from: Option<DateTime<Utc>>,
    direction: Direction,
) -> SeriesStats {
    let finite = || points.iter().filter(|p| !p.value.is_nan());
    let full = |p: &Point| full_history_from.is_none_or(|f| p.at >= f);
    let mut before: Vec<f64> = finite()
        .filter(|p| p.at < impact_start && full(p))
        .map(|p| p.value)
        .collect();
    let baseline = median(&mut before);
    let worse = |a: f64, b: f64| match direction {
        Direction::HigherIsWorse => a > b,
        Direction::LowerIsWorse => a < b,
    };
    let within = || finite().filter(|p| p.at >= impact_start && p.at <= incident_end);
    // Points over too little history only when there is nothing better.
    let use_all = !within().any(full);
    let mut peak: Option<&Point> = None;
    for p in within().filter(|p| use_all || full(p)) {
        if peak.is_none_or(|best| worse(p.value, best.value)) {
            peak = Some(p);
        }
    }
    let at_resolution =
        resolved_at.and_then(|r| finite().filter(|p| p.at >= r).min_by_key(|p| p.at));
    let latest = finite().max_by_key(|p| p.at);
    let short_history = [peak, at_resolution, latest]
        .iter()
        .flatten()
        .any(|p| !full(p));
    SeriesStats {
        baseline,
        peak: peak.map(|p| p.value),
        peak_at: peak.map(|p| p.at),
        at_resolution: at_resolution.map(|p| p.value),
        latest: latest.map(|p| p.value),
        latest_at: latest.map(|p| p.at),
        short_history,
    }
}

/// The query with every range selector's window (`[1m]`, not a subquery's `[5m:30s]`) set
/// to `window`.
pub fn shrink_windows(query: &str, window: Duration) -> String {
    let mut out = String::with_capacity(query.len());
    let mut quote: Option<char> = None;
    let mut chars = query.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                quote = Some(c);
                out.push(c);
            }
            '[' => {
                let after = &query[i + 1..];
                match after.find(']') {
                    Some(close)
                        if !after[..close].contains(':')
                            && crate::time::parse_prom_duration(&after[..close]).is_ok() =>
                    {
                        out.push('[');
                        out.push_str(&crate::time::format_duration(window));
                        out.push(']');
                        // Skip the old window and its ']'.
                        while let Some((j, _)) = chars.peek() {
                            if *j > i + close + 1 {
                                break;
                            }
                            chars.next();
                        }
                    }
                    _ => out.push(c),
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The longest range selector (`[1m]`, `[5m:30s]`'s `5m`) in a query: the history each point
/// of it needs. `None` without one.
pub fn longest_window(query: &str) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    let mut rest = query;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inside = &after[..close];
        let range = inside.split(':').next().unwrap_or("");
        if let Ok(d) = crate::time::parse_prom_duration(range) {
            best = Some(best.map_or(d, |b: Duration| b.max(d)));
        }
        rest = &after[close + 1..];
    }
    best
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// One series of a snapshot: labels, statistics, points (for the chart).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesSnapshot {
    pub labels: LabelSet,
    #[serde(flatten)]
    pub stats: SeriesStats,
    pub points: Vec<Point>,
}

/// One query's snapshot. The headline figures are those of the worst series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub name: String,
    pub title: String,
    pub query: String,
    pub unit: Unit,
    pub direction: Direction,
    pub threshold: Option<f64>,
    pub source: QuerySource,
    pub baseline: Option<f64>,
    pub peak: Option<f64>,
    pub peak_at: Option<DateTime<Utc>>,
    /// The first value at or after the resolution; `None` while open or not measured yet.
    pub at_resolution: Option<f64>,
    /// The last value of the data and its time (at most the collection time).
    pub latest: Option<f64>,
    pub latest_at: Option<DateTime<Utc>>,
    /// "19 % → 100 % → 28 %": baseline → peak → at resolution (or latest), formatted.
    pub summary: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step_seconds: f64,
    /// The headline (worst) series' distinguishing labels, e.g. `code="500"`; empty when
    /// there is one series and nothing to tell apart.
    pub labels_text: String,
    /// Why a figure is less than it seems, e.g. `over 12s of history, less than the query's
    /// 1m window`.
    pub history_note: Option<String>,
    /// With `history_note`: how much history the headline series has (its data began
    /// within the range).
    #[serde(skip)]
    pub history: Option<Duration>,
    /// The worst series first; at most `max_series`.
    pub series: Vec<SeriesSnapshot>,
    /// Series dropped to respect `max_series`.
    pub series_omitted: usize,
}

impl Snapshot {
    /// The query returned no points at all.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| !s.points.is_empty())
    }
}

/// A single figure over the whole incident, e.g. failed requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpactFigure {
    pub name: String,
    pub title: String,
    pub query: String,
    pub unit: Unit,
    /// Sum over the result's series; `None` when the query returned nothing.
    pub value: Option<f64>,
    pub formatted: Option<String>,
}

/// Everything one snapshot run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotReport {
    pub snapshots: Vec<Snapshot>,
    pub impact: Vec<ImpactFigure>,
    pub errors: Vec<SnapshotError>,
    /// Queries not shown because an earlier one returned the same points: (its name, the
    /// name of the one shown).
    pub aliases: Vec<(String, String)>,
}

impl SnapshotReport {
    /// Some query failed in a way worth retrying (the job should run again later).
    pub fn has_retryable_errors(&self) -> bool {
        self.errors.iter().any(|e| e.retryable)
    }
}

/// A step near `range / target_points`, rounded up to a value people read easily
/// (1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m, 5m, ...), at least `min_step`.
pub fn nice_step(range: Duration, target_points: u32, min_step: Duration) -> Duration {
    const NICE: [u64; 17] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    ];
    let raw = range.as_secs_f64() / f64::from(target_points.max(1));
    let secs = NICE
        .iter()
        .copied()
        .find(|s| *s as f64 >= raw)
        .unwrap_or_else(|| (raw / 86400.0).ceil() as u64 * 86400);
    Duration::from_secs(secs).max(min_step)
}

/// The start of a range query moved back so that `end` itself is one of its evaluation
/// times (Prometheus evaluates at `start + k·step`): the last seconds are never cut off.
pub fn align_start(start: DateTime<Utc>, end: DateTime<Utc>, step: Duration) -> DateTime<Utc> {
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX).max(1);
    let range_ms = (end - start).num_milliseconds().max(0);
    let n = (range_ms + step_ms - 1) / step_ms;
    end - chrono::Duration::milliseconds(n * step_ms)
}

/// The subquery that finds a query's worst value over `[from, end]` at `resolution`:
/// `max_over_time((q)[D:res])` (`min_over_time` when lower is worse), to be evaluated at
/// `end`. `D` reaches one resolution further back, so a sample held from just before `from`
/// counts.
pub fn peak_subquery(
    q: &SnapshotQuery,
    from: DateTime<Utc>,
    end: DateTime<Utc>,
    resolution: Duration,
) -> String {
    let span = peak_span(from, end, resolution);
    let f = match q.direction {
        Direction::HigherIsWorse => "max_over_time",
        Direction::LowerIsWorse => "min_over_time",
    };
    format!(
        "{f}(({})[{}:{}])",
        q.query,
        crate::time::format_duration(span),
        crate::time::format_duration(resolution)
    )
}

/// The range of the peak subquery: from `from` to `end`, two resolutions more, in whole
/// seconds rounded up.
pub fn peak_span(from: DateTime<Utc>, end: DateTime<Utc>, resolution: Duration) -> Duration {
    let span = (end - from).to_std().unwrap_or_default() + resolution * 2;
    Duration::from_secs(span.as_secs() + u64::from(span.subsec_nanos() > 0))
}

/// The resolution of the peak subquery: 1 s (no scrape or evaluation is finer) for spans up
/// to a day, else the rule's evaluation interval, and never more than 100,000 evaluations.
pub fn peak_resolution(span: Duration, eval_interval: Duration) -> Duration {
    let fine = if span <= Duration::from_secs(86_400) {
        Duration::from_secs(1)
    } else {
        eval_interval.max(Duration::from_secs(1))
    };
    fine.max(Duration::from_secs(span.as_secs().div_ceil(100_000)))
}

/// Runs a plan: a range query per query over `[impact_start − baseline, end + margin]`
/// (`end` = resolution, or now while open), never past `window.now` (the collection time),
/// its start aligned so the last evaluation is at the range end; for alert queries a peak
/// subquery at one-second resolution; and an instant query per impact query at the incident
/// end. Failures are collected per query, never fatal. Snapshots whose series are identical
/// to an earlier one's are dropped (one row per distinct series).
pub async fn run_snapshot(
    client: &Client,
    plan: &SnapshotPlan,
    window: &IncidentWindow,
    options: &SnapshotOptions,
) -> SnapshotReport {
    let mut report = SnapshotReport {
        errors: plan.errors.clone(),
        ..SnapshotReport::default()
    };
    let to_chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    // Nothing after the moment of collection: Prometheus would repeat the last value.
    let incident_end = window.incident_end().min(window.now);
    let end = (incident_end + to_chrono(options.margin)).min(window.now);
    let start = window.impact_start.min(end) - to_chrono(options.baseline);
    let range = (end - start).to_std().unwrap_or_default();
    let step = step_for_range(
        start,
        end,
        nice_step(range, options.target_points, options.min_step),
    );
    let start = align_start(start, end, step);
    let resolved_at = window.resolved_at.filter(|r| *r <= end);
    for q in &plan.queries {
        let series = match client.query_range(&q.query, start, end, step).await {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(SnapshotError {
                    name: q.name.clone(),
                    query: Some(q.query.clone()),
                    retryable: e.is_retryable(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let mut peaks = Vec::new();
        if let Some(eval) = q.eval_interval {
            let span = (incident_end - window.impact_start)
                .to_std()
                .unwrap_or_default();
            let res = peak_resolution(span, eval);
            let sub = peak_subquery(q, window.impact_start.min(incident_end), incident_end, res);
            match client.query(&sub, incident_end).await {
                Ok(QueryData::Vector(v)) => {
                    for s in v {
                        if let Some(p) = s.value {
                            peaks.push((s.metric, p.value));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if e.is_retryable() => report.errors.push(SnapshotError {
                    name: q.name.clone(),
                    query: Some(sub),
                    retryable: true,
                    error: e.to_string(),
                }),
                // The range query's peak stands.
                Err(_) => {}
            }
        }
        let times = SnapshotTimes {
            impact_start: window.impact_start,
            incident_end,
            resolved_at,
            start,
            end,
            step,
        };
        let mut snapshot = build_snapshot(q, series, &times, &peaks, options.max_series);
        // A rules/ rate whose window is longer than the history Prometheus has: ask again
        // with the window shrunk to half that history, and keep that answer if its figures
        // rest on full windows.
        if let (QuerySource::Rules { .. }, Some(had), Some(w)) =
            (&q.source, snapshot.history, longest_window(&q.query))
        {
            let shrunk = Duration::from_secs((had.as_secs() / 2).max(2 * step.as_secs().max(1)));
            if shrunk < w {
                let sq = SnapshotQuery {
                    query: shrink_windows(&q.query, shrunk),
                    ..q.clone()
                };
                if let Ok(series) = client.query_range(&sq.query, start, end, step).await {
                    let again = build_snapshot(&sq, series, &times, &peaks, options.max_series);
                    if again.peak.is_some() && again.history_note.is_none() {
                        snapshot = Snapshot {
                            history_note: Some(format!(
                                "window shrunk from {} to {}: Prometheus has {} of history",
                                crate::time::format_duration(w),
                                crate::time::format_duration(shrunk),
                                crate::time::format_duration(had)
                            )),
                            ..again
                        };
                    }
                }
            }
        }
        if let Some(o) = report
            .snapshots
            .iter()
            .find(|o| o.has_data() && same_series(o, &snapshot))
        {
            report.aliases.push((q.name.clone(), o.name.clone()));
            continue;
        }
        report.snapshots.push(snapshot);
    }
    for q in &plan.impact {
        match client.query(&q.query, incident_end).await {
            Ok(data) => {
                let value = sum_of(&data);
                report.impact.push(ImpactFigure {
                    name: q.name.clone(),
                    title: q.title.clone(),
                    query: q.query.clone(),
                    unit: q.unit,
                    value,
                    formatted: value.map(|v| format_value(q.unit, v)),
                })
            }
            Err(e) => report.errors.push(SnapshotError {
                name: q.name.clone(),
                query: Some(q.query.clone()),
                retryable: e.is_retryable(),
                error: e.to_string(),
            }),
        }
    }
    report
}

/// Two snapshots show the same data: the same points (times and values) in every series,
/// whatever the labels (`a / b` keeps the target's labels, `max by (pool) (a / b)` only
/// `pool`: one series twice).
pub fn same_series(a: &Snapshot, b: &Snapshot) -> bool {
    let key = |s: &Snapshot| {
        let mut v: Vec<Vec<(i64, u64)>> = s
            .series
            .iter()
            .map(|x| {
                x.points
                    .iter()
                    .map(|p| (p.at.timestamp_millis(), p.value.to_bits()))
                    .collect()
            })
            .collect();
        v.sort();
        v
    };
    b.has_data() && a.series_omitted == b.series_omitted && key(a) == key(b)
}

fn without_name(l: &LabelSet) -> LabelSet {
    let mut l = l.clone();
    l.remove("__name__");
    l
}

fn sum_of(data: &QueryData) -> Option<f64> {
    match data {
        QueryData::Scalar(p) => Some(p.value),
        QueryData::Vector(v) => {
            let vals: Vec<f64> = v.iter().filter_map(|s| s.value.map(|p| p.value)).collect();
            (!vals.is_empty()).then(|| vals.iter().sum())
        }
        QueryData::Matrix(_) | QueryData::String(_) => None,
    }
}

/// The times a snapshot's statistics are computed against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotTimes {
    pub impact_start: DateTime<Utc>,
    /// Resolution, or the collection time while open.
    pub incident_end: DateTime<Utc>,
    /// The resolution, when resolved and within the data.
    pub resolved_at: Option<DateTime<Utc>>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step: Duration,
}

/// The labels that tell the headline series apart: those whose values differ between the
/// series, and those the query groups by (`by (code)`), `__name__` never. `code="500"`.
pub fn distinguishing_labels(query: &str, head: &LabelSet, all: &[&LabelSet]) -> String {
    let mut by: Vec<String> = Vec::new();
    let mut rest = query;
    while let Some(i) = rest.find("by") {
        let before_ok = i == 0
            || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        let after = rest[i + 2..].trim_start();
        if before_ok && after.starts_with('(') {
            if let Some(close) = after.find(')') {
                by.extend(after[1..close].split(',').map(|k| k.trim().to_string()));
            }
        }
        rest = &rest[i + 2..];
    }
    head.iter()
        .filter(|(k, v)| {
            k.as_str() != "__name__"
                && (by.iter().any(|b| b == *k) || all.iter().any(|o| o.get(k.as_str()) != Some(*v)))
        })
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statistics for every series, the worst first; pure, so the runner stays thin. `peaks`
/// are per-series worst values from the peak subquery (labels without `__name__`): they
/// replace a range-query peak that is less bad.
pub fn build_snapshot(
    q: &SnapshotQuery,
    series: Vec<super::client::RangeSeries>,
    times: &SnapshotTimes,
    peaks: &[(LabelSet, f64)],
    max_series: usize,
) -> Snapshot {
    let window = longest_window(&q.query);
    let worse = |a: f64, b: f64| match q.direction {
        Direction::HigherIsWorse => a > b,
        Direction::LowerIsWorse => a < b,
    };
    let mut history_from: Option<DateTime<Utc>> = None;
    let mut all: Vec<SeriesSnapshot> = series
        .into_iter()
        .map(|s| {
            // A series that starts within the range (not at its first step) had no data
            // before: its points need the query's window of history after its first one.
            let first = s.values.iter().find(|p| !p.value.is_nan()).map(|p| p.at);
            let full_from = match (window, first) {
                (Some(w), Some(f))
                    if f > times.start + crate::time::chrono_duration(times.step) =>
                {
                    Some(f + crate::time::chrono_duration(w))
                }
                _ => None,
            };
            let mut stats = series_stats(
                &s.values,
                times.impact_start,
                times.incident_end,
                times.resolved_at,
                full_from,
                q.direction,
            );
            let bare = without_name(&s.metric);
            if let Some((_, v)) = peaks.iter().find(|(l, _)| without_name(l) == bare) {
                if stats.peak.is_none_or(|p| worse(*v, p)) {
                    stats.peak = Some(*v);
                    stats.peak_at = None;
                }
            }
            if stats.short_history {
                history_from = history_from.max(
                    full_from.map(|f| f - crate::time::chrono_duration(window.unwrap_or_default())),
                );
            }
            SeriesSnapshot {
                stats,
                labels: s.metric,
                points: s.values,
            }
        })
        .collect();
    // Worst peak first; series without a peak last.
    let key = |s: &SeriesSnapshot| match (s.stats.peak, q.direction) {
        (None, _) => f64::NEG_INFINITY,
        (Some(p), Direction::HigherIsWorse) => p,
        (Some(p), Direction::LowerIsWorse) => -p,
    };
    all.sort_by(|a, b| key(b).total_cmp(&key(a)));
    let labels_text = match all.first() {
        Some(h) => {
            let others: Vec<&LabelSet> = all.iter().map(|s| &s.labels).collect();
            distinguishing_labels(&q.query, &h.labels, &others)
        }
        None => String::new(),
    };
    let omitted = all.len().saturating_sub(max_series.max(1));
    all.truncate(max_series.max(1));
    let head = all.first().map(|s| s.stats);
    let baseline = head.and_then(|s| s.baseline);
    let peak = head.and_then(|s| s.peak);
    let at_resolution = head.and_then(|s| s.at_resolution);
    let latest = head.and_then(|s| s.latest);
    let (history_note, history) =
        match (head.is_some_and(|s| s.short_history), window, history_from) {
            (true, Some(w), Some(from)) => {
                let had =
                    Duration::from_secs((times.end - from).to_std().unwrap_or_default().as_secs());
                (
                    Some(format!(
                        "computed over {} of history, less than the query's {} window",
                        crate::time::format_duration(had),
                        crate::time::format_duration(w)
                    )),
                    Some(had),
                )
            }
            _ => (None, None),
        };
    let fmt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format_value(q.unit, v));
    Snapshot {
        name: q.name.clone(),
        title: q.title.clone(),
        query: q.query.clone(),
        unit: q.unit,
        direction: q.direction,
        threshold: q.threshold,
        source: q.source.clone(),
        baseline,
        peak,
        peak_at: head.and_then(|s| s.peak_at),
        at_resolution,
        latest,
        latest_at: head.and_then(|s| s.latest_at),
        summary: format!(
            "{} → {} → {}",
            fmt(baseline),
            fmt(peak),
            fmt(if times.resolved_at.is_some() {
                at_resolution
            } else {
                latest
            })
        ),
        start: times.start,
        end: times.end,
        step_seconds: times.step.as_secs_f64(),
        labels_text,
        history_note,
        history,
        series: all,
        series_omitted: omitted,
    }
}

/// A value as people write it in a post-mortem: `97 %`, `8.7 s`, `287 ms`, `2m 15s`,
/// `2,400 req/s`, `1.2 GiB`, `1,247`.
pub fn format_value(unit: Unit, v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞" } else { "−∞" }.to_string();
    }
    match unit {
        Unit::Ratio => format!("{} %", number(v * 100.0)),
        Unit::Percent => format!("{} %", number(v)),
        Unit::Seconds => format_seconds(v),
        Unit::Bytes => format_bytes(v),
        Unit::RequestsPerSecond => format!("{} req/s", number(v)),
        Unit::Count => number(v),
    }
}

/// Three significant digits below 1000, whole numbers with thousands separators above.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 999.5 {
        return group_thousands(v.round());
    }
    if a == 0.0 {
        return "0".to_string();
    }
    let magnitude = a.log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn format_seconds(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    if a == 0.0 {
        "0 s".to_string()
    } else if a < 1e-3 {
        format!("{} µs", number(v * 1e6))
    } else if a < 1.0 {
        format!("{} ms", number(v * 1e3))
    } else if a < 60.0 {
        format!("{} s", number(v))
    } else {
        let total = a.round() as u64;
        let (d, h, m, s) = (
            total / 86400,
            total % 86400 / 3600,
            total % 3600 / 60,
            total % 60,
        );
        let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
            .iter()
            .skip_while(|(n, _)| *n == 0)
            .take(2)
            .filter(|(n, _)| *n != 0)
            .map(|(n, u)| format!("{n}{u}"))
            .collect();
        format!("{sign}{}", parts.join(" "))
    }
}

fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut x = v.abs();
    let mut i = 0;
    while x >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if i == 0 {
        format!("{sign}{} B", number(x.round()))
    } else {
        format!("{sign}{} {}", number(x), UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn pts(start: &str, values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                at: t(start) + chrono::Duration::seconds(i as i64),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn values_are_formatted_as_people_write_them() {
        let cases = [
            (Unit::Ratio, 0.97, "97 %"),
            (Unit::Ratio, 1.0, "100 %"),
            (Unit::Ratio, 0.087, "8.7 %"),
            (Unit::Ratio, 0.002, "0.2 %"),
            (Unit::Percent, 99.94, "99.9 %"),
            (Unit::Seconds, 8.7, "8.7 s"),
            (Unit::Seconds, 0.287, "287 ms"),
            (Unit::Seconds, 4.488636, "4.49 s"),
            (Unit::Seconds, 135.0, "2m 15s"),
            (Unit::Seconds, 3600.0, "1h"),
            (Unit::Seconds, 0.00005, "50 µs"),
            (Unit::RequestsPerSecond, 2400.0, "2,400 req/s"),
            (Unit::RequestsPerSecond, 125.0, "125 req/s"),
            (Unit::RequestsPerSecond, 0.5, "0.5 req/s"),
            (Unit::Bytes, 1.2 * 1024.0 * 1024.0 * 1024.0, "1.2 GiB"),
            (Unit::Bytes, 512.0, "512 B"),
            (Unit::Count, 1247.0, "1,247"),
            (Unit::Count, 1_234_567.0, "1,234,567"),
            (Unit::Count, 23.0, "23"),
            (Unit::Count, 0.0, "0"),
            (Unit::Count, f64::NAN, "NaN"),
        ];
        for (unit, v, want) in cases {
            assert_eq!(format_value(unit, v), want, "{unit:?} {v}");
        }
    }

    #[test]
    fn baseline_is_the_median_before_impact_and_peak_the_worst_within() {
        // 00..04 normal, impact from 05, resolved at 09, after that recovered.
        let p = pts(
            "2026-01-01T00:00:00Z",
            &[0.2, 0.1, 0.3, 0.9, 0.2, 0.8, 1.0, 0.97, 0.6, 0.3, 0.25, 5.0],
        );
        let s = series_stats(
            &p,
            t("2026-01-01T00:00:05Z"),
            t("2026-01-01T00:00:09Z"),
            Some(t("2026-01-01T00:00:09Z")),
            None,
            Direction::HigherIsWorse,
        );
        assert_eq!(s.baseline, Some(0.2));
        assert_eq!(s.peak, Some(1.0));
        assert_eq!(s.peak_at, Some(t("2026-01-01T00:00:06Z")));
        assert_eq!(s.at_resolution, Some(0.3));
        let s = series_stats(
            &p,
            t("2026-01-01T00:00:05Z"),
            t("2026-01-01T00:00:09Z"),
            Some(t("2026-01-01T00:00:09Z")),
            None,
            Direction::LowerIsWorse,
        );
        assert_eq!(s.peak, Some(0.3));
    }

    #[test]
    fn empty_and_nan_series_give_no_figures() {
        let s = series_stats(
            &[],
            t("2026-01-01T00:00:05Z"),
            t("2026-01-01T00:00:09Z"),
            Some(t("2026-01-01T00:00:09Z")),
            None,
            Direction::HigherIsWorse,
        );
        assert_eq!((s.baseline, s.peak, s.at_resolution), (None, None, None));
        let p = pts("2026-01-01T00:00:00Z", &[f64::NAN, 1.0, 3.0, f64::NAN]);
        let s = series_stats(
            &p,
            t("2026-01-01T00:00:02Z"),
            t("2026-01-01T00:00:03Z"),
            Some(t("2026-01-01T00:00:02Z")),
            None,
            Direction::HigherIsWorse,
        );
        assert_eq!(
            (s.baseline, s.peak, s.at_resolution, s.latest),
            (Some(1.0), Some(3.0), Some(3.0), Some(3.0))
        );
    }

    #[test]
    fn nice_steps_keep_charts_near_the_target_resolution() {
        let min = Duration::from_secs(1);
        assert_eq!(
            nice_step(Duration::from_secs(100), 400, min),
            Duration::from_secs(1)
        );
        assert_eq!(
            nice_step(Duration::from_secs(7200), 400, min),
            Duration::from_secs(30)
        );
        assert_eq!(
            nice_step(Duration::from_secs(30 * 86400), 400, min),
            Duration::from_secs(7200)
        );
        assert_eq!(
            nice_step(Duration::from_secs(100), 400, Duration::from_secs(15)),
            Duration::from_secs(15)
        );
    }

    fn rule(expr: &str) -> RuleContext {
        RuleContext {
            alertname: "DatabaseConnectionPoolHigh".into(),
            expr: expr.into(),
            for_: Duration::from_secs(5),
            keep_firing_for: Duration::ZERO,
            group: None,
            file: None,
            group_interval: None,
            labels: LabelSet::new(),
            annotations: LabelSet::new(),
            source: super::super::rule::RuleSource::RulesApi,
        }
    }

    #[test]
    fn an_alert_expression_is_charted_as_its_measured_side_against_the_threshold() {
        let q = plan_alert_query(
            &rule("db_connection_pool_active / db_connection_pool_max > 0.95"),
            None,
        );
        assert_eq!(
            q.query,
            "db_connection_pool_active / db_connection_pool_max"
        );
        assert_eq!(q.threshold, Some(0.95));
        assert_eq!(q.unit, Unit::Ratio);
        assert_eq!(q.direction, Direction::HigherIsWorse);
        assert_eq!(q.name, "alert-DatabaseConnectionPoolHigh");
        let q = plan_alert_query(&rule("free_ratio < 0.1"), Some(Unit::Percent));
        assert_eq!(
            (q.direction, q.unit),
            (Direction::LowerIsWorse, Unit::Percent)
        );
        let q = plan_alert_query(&rule("absent(up)"), None);
        assert_eq!((q.query.as_str(), q.threshold), ("absent(up)", None));
    }

    #[test]
    fn a_range_ends_exactly_at_its_end_and_the_peak_subquery_reaches_back_past_the_start() {
        let end = t("2026-11-23T02:27:02.738Z");
        let start = align_start(t("2026-11-23T01:26:00Z"), end, Duration::from_secs(15));
        assert_eq!((end - start).num_milliseconds() % 15_000, 0);
        assert!(start <= t("2026-11-23T01:26:00Z"));
        let q = plan_alert_query(&rule("errors / requests > 0.05"), None);
        assert_eq!(
            peak_subquery(
                &q,
                t("2026-11-23T02:26:23.381Z"),
                end,
                Duration::from_secs(1)
            ),
            "max_over_time((errors / requests)[42s:1s])"
        );
        let q = plan_alert_query(&rule("free_ratio < 0.1"), None);
        assert!(peak_subquery(&q, end, end, Duration::from_secs(1)).starts_with("min_over_time("));
        assert_eq!(
            peak_resolution(Duration::from_secs(3600), Duration::from_secs(15)),
            Duration::from_secs(1)
        );
        assert_eq!(
            peak_resolution(Duration::from_secs(30 * 86400), Duration::from_secs(15)),
            Duration::from_secs(26)
        );
    }

    #[test]
    fn rate_figures_over_less_history_than_their_window_are_said_so_and_not_the_peak() {
        // A throughput series that starts mid-range (the exporter or Prometheus just
        // started): the first minute of rate(x[1m]) is over too little history.
        let q = SnapshotQuery {
            name: "request_throughput".into(),
            title: "Request throughput".into(),
            query: "sum(rate(http_requests_total[1m]))".into(),
            unit: Unit::RequestsPerSecond,
            direction: Direction::LowerIsWorse,
            threshold: None,
            source: QuerySource::Rules { entry: "x".into() },
            eval_interval: None,
        };
        assert_eq!(longest_window(&q.query), Some(Duration::from_secs(60)));
        assert_eq!(
            longest_window("max_over_time(x[5m:30s]) + y[1m]"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(longest_window("up"), None);
        assert_eq!(
            shrink_windows(
                "sum(rate(x{a=\"[1m]\"}[1m])) / max_over_time(y[5m:30s]) + z[2m]",
                Duration::from_secs(25)
            ),
            "sum(rate(x{a=\"[1m]\"}[25s])) / max_over_time(y[5m:30s]) + z[25s]"
        );
        // Ramp 3.3, 6.3, ... then the true 50/s from 60 s after the first point.
        let mut values: Vec<f64> = (1..=20).map(|i| f64::from(i) * 50.0 / 20.0).collect();
        values.extend(std::iter::repeat_n(50.0, 60));
        let series = vec![super::super::client::RangeSeries {
            metric: LabelSet::new(),
            values: pts("2026-01-01T00:10:00Z", &values),
        }];
        let times = SnapshotTimes {
            impact_start: t("2026-01-01T00:10:05Z"),
            incident_end: t("2026-01-01T00:11:19Z"),
            resolved_at: None,
            start: t("2026-01-01T00:00:00Z"),
            end: t("2026-01-01T00:11:19Z"),
            step: Duration::from_secs(1),
        };
        let snap = build_snapshot(&q, series.clone(), &times, &[], 10);
        assert_eq!(
            snap.peak,
            Some(50.0),
            "the ramp is not the lowest throughput"
        );
        assert_eq!(snap.history_note, None);
        // Only the ramp within the incident: said to be over too little history.
        let times = SnapshotTimes {
            incident_end: t("2026-01-01T00:10:15Z"),
            end: t("2026-01-01T00:10:15Z"),
            ..times
        };
        let snap = build_snapshot(&q, series, &times, &[], 10);
        assert_eq!(
            snap.history_note.as_deref(),
            Some("computed over 15s of history, less than the query's 1m window")
        );
    }

    #[test]
    fn series_are_named_by_the_labels_that_tell_them_apart() {
        let l = |pairs: &[(&str, &str)]| -> LabelSet {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = l(&[("code", "500"), ("job", "api")]);
        let b = l(&[("code", "503"), ("job", "api")]);
        assert_eq!(
            distinguishing_labels("sum by (code) (rate(x[1m]))", &a, &[&a, &b]),
            "code=\"500\""
        );
        assert_eq!(
            distinguishing_labels("sum by (code) (rate(x[1m]))", &a, &[&a]),
            "code=\"500\""
        );
        assert_eq!(distinguishing_labels("sum(rate(x[1m]))", &a, &[&a]), "");
        let named = l(&[("__name__", "up"), ("instance", "a")]);
        assert_eq!(distinguishing_labels("up", &named, &[&named]), "");
    }

    #[test]
    fn identical_spellings_and_the_same_measure_over_other_windows_run_once() {
        assert_eq!(normalise_query("a / b"), normalise_query("a/b"));
        assert_eq!(
            query_shape(
                r#"sum by (service) (rate(http_requests_total{code=~"5.."}[10s])) / sum by (service) (rate(http_requests_total[10s]))"#
            ),
            query_shape(
                r#"sum(rate(http_requests_total{service="p",code=~"5.."}[1m])) / sum(rate(http_requests_total{service="p"}[1m]))"#
            )
        );
        assert_eq!(query_shape(r#"x{a="}{[",b=~'x'}"#), "x{b=~'x'}");
        // Errors and all requests are different measures.
        assert_ne!(
            query_shape(r#"sum(rate(x{service="p",code=~"5.."}[1m]))"#),
            query_shape(r#"sum(rate(x{service="p"}[1m]))"#)
        );
        assert_ne!(
            query_shape("histogram_quantile(0.99, sum by (le) (rate(x[1m])))"),
            query_shape("histogram_quantile(0.5, sum by (le) (rate(x[1m])))")
        );
        assert_ne!(
            query_shape("sum(rate(a[1m]))"),
            query_shape("sum(rate(b[1m]))")
        );
    }

    /// Prometheus' instant value of a gauge at `at`: the last raw sample at or before it.
    fn value_at(raw: &[(i64, f64)], at: i64) -> Option<f64> {
        raw.iter().rev().find(|(ts, _)| *ts <= at).map(|(_, v)| *v)
    }

    proptest::proptest! {
        /// For an alert `A > t` that fired (some rule evaluation saw `A > t`), the peak the
        /// snapshot reports over the firing — the range query aligned to its end and the
        /// one-second peak subquery — is above `t`. A gauge scraped every 1–15 s, rules
        /// evaluated every 1–60 s at any offset, the incident end anywhere after the last
        /// true evaluation (a quick snapshot taken at that very moment included).
        #[test]
        fn the_peak_of_an_alert_that_fired_crosses_its_threshold(
            scrape_ms in 1000i64..15_000,
            scrape_offset in 0i64..15_000,
            eval_ms in 1000i64..60_000,
            eval_offset in 0i64..60_000,
            spike in 5usize..200,
            spike_len in 1usize..4,
            tail_ms in 0i64..120_000,
            base in 0.0f64..0.9,
        ) {
            let threshold = 0.95;
            let t0 = 1_790_000_000_000i64;
            let raw: Vec<(i64, f64)> = (0..400usize)
                .map(|i| {
                    let at = t0 + scrape_offset + i as i64 * scrape_ms;
                    let v = if (spike..spike + spike_len).contains(&i) { 1.0 } else { base };
                    (at, v)
                })
                .collect();
            // The rule's evaluations that saw the condition true.
            let true_evals: Vec<i64> = (0..)
                .map(|k| t0 + eval_offset + k * eval_ms)
                .take_while(|e| *e < raw.last().unwrap().0)
                .filter(|e| value_at(&raw, *e).is_some_and(|v| v > threshold))
                .collect();
            proptest::prop_assume!(!true_evals.is_empty());
            let ms = |x: i64| DateTime::<Utc>::from_timestamp_millis(x).unwrap();
            let from = ms(true_evals[0]);
            let end = ms(*true_evals.last().unwrap() + tail_ms);
            // The range query: aligned so that `end` is one of its points.
            let step = Duration::from_secs(15);
            let start = align_start(from - chrono::Duration::hours(1), end, step);
            let step_ms = step.as_millis() as i64;
            let mut seen: Vec<f64> = (0..)
                .map(|k| start.timestamp_millis() + k * step_ms)
                .take_while(|x| *x <= end.timestamp_millis())
                .filter(|x| *x >= from.timestamp_millis())
                .filter_map(|x| value_at(&raw, x))
                .collect();
            // The peak subquery: multiples of the resolution in (end − span, end].
            let span_ms = (end - from).num_milliseconds();
            let res = peak_resolution(Duration::from_millis(span_ms as u64), Duration::from_millis(eval_ms as u64));
            let span = peak_span(from, end, res).as_millis() as i64;
            let res_ms = res.as_millis() as i64;
            let lo = end.timestamp_millis() - span;
            let mut x = (lo / res_ms + 1) * res_ms;
            while x <= end.timestamp_millis() {
                seen.extend(value_at(&raw, x));
                x += res_ms;
            }
            let peak = seen.into_iter().fold(f64::NEG_INFINITY, f64::max);
            proptest::prop_assert!(peak > threshold, "peak {} ≤ {}", peak, threshold);
        }
    }
}
