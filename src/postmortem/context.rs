//! What a post-mortem is rendered from, and the render context a template sees.
//!
//! The inputs ([`Evidence`](super::evidence::Evidence), [`RelatedIncident`], [`RenderSettings`])
//! are plain serializable structs that the evidence and store modules fill in. [`build_context`]
//! turns them and an [`Incident`] into a [`RenderContext`]: every figure a template needs
//! precomputed (TTD and its parts, durations, offsets, flags, generated sentences), so
//! templates only choose words and layout. Times stay RFC 3339 in the context and are
//! printed through the `time` helper; generated sentences are already escaped Markdown.

use std::collections::BTreeMap;

use chrono::Duration;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::evidence::{ConditionStart, Evidence, ImpactFigure, RuleInfo};
use super::helpers;
use crate::incident::grafana_keys;
use crate::incident::{EventKind, ImpactMethod, Incident, LabelSet, Occurrence, Status, Timestamp};

/// An earlier incident with the same correlation key or a shared alert name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelatedIncident {
    pub id: String,
    pub title: String,
    pub started_at: Timestamp,
    pub duration_seconds: Option<f64>,
    pub status: Status,
    /// It had the same correlation key.
    pub same_key: bool,
    /// Alert names it shares with this incident.
    pub shared_alertnames: Vec<String>,
}

/// Rendering settings from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderSettings {
    pub timezone: Tz,
    /// Times are also shown in this zone, in brackets.
    pub second_timezone: Option<Tz>,
    /// `web.external_url`: base of the incident's API link.
    pub external_url: Option<String>,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
    /// `postmortem.severity_map`: the organisation's severity for an alert `severity` label.
    pub severity_map: BTreeMap<String, String>,
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            timezone: Tz::UTC,
            second_timezone: None,
            external_url: None,
            prometheus_url: None,
            alertmanager_url: None,
            severity_map: BTreeMap::new(),
        }
    }
}

/// One render's input.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// With `alerts` and `timeline` filled.
    pub incident: &'a Incident,
    pub evidence: &'a Evidence,
    pub related: &'a [RelatedIncident],
    /// Where the incident was discussed and what incidentd posted there.
    pub communication: &'a Communication,
    /// When the draft is rendered: stated in the footer, and the end of an open window.
    pub generated_at: Timestamp,
}

// ---------------------------------------------------------------------------------------
// The render context: the template's contract. Field names here are what templates use.
// ---------------------------------------------------------------------------------------

/// Everything a template sees. `Option` fields are `null`; guard them with `{{#if}}`.
#[derive(Debug, Clone, Serialize)]
pub struct RenderContext {
    pub id: String,
    pub title: String,
    pub key: String,
    /// The incident's status: `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub severity: Option<String>,
    pub services: Vec<String>,
    /// What raised the alerts, for "How detected": Prometheus through Alertmanager, Grafana's
    /// own alerting, or both.
    pub detected_by: String,
    /// The start of the incident (impact start, else firing): the report's date.
    pub start: String,
    /// Resolution time, `null` while open.
    pub end: Option<String>,
    pub generated_at: String,
    pub version: u64,
    pub times: Times,
    pub figures: Figures,
    pub summary: Summary,
    pub ttd: Option<TtdContext>,
    pub alerts: Vec<AlertContext>,
    pub timeline: Vec<TimelineRow>,
    /// Whether the timeline has what people said or did beyond acknowledging and resolving
    /// (notes, Slack thread replies); without, a row asks for it.
    pub timeline_has_people: bool,
    /// What people said the root cause and the mitigation were (milestone notes and replies).
    pub people_said: PeopleSaid,
    pub evidence: EvidenceContext,
    pub root_cause: RootCause,
    pub resolution: Resolution,
    /// Suggestions from the rules directory; templates add a row for hand-written ones.
    pub action_items: Vec<ActionItemRow>,
    /// The id for one more, hand-written action item: `AI-<n+1>`.
    pub next_action_id: String,
    pub lessons: Lessons,
    pub related: Vec<RelatedRow>,
    pub references: References,
    pub flags: Flags,
    /// The organisation's severity (`postmortem.severity_map`) for `severity`, if mapped.
    pub severity_org: Option<String>,
    /// Response milestones: acknowledge, triage, root cause identified, mitigated, resolved.
    pub response: Vec<MilestoneRow>,
    pub communication: CommunicationContext,
    /// The action items grouped by horizon: immediate, short-term, long-term.
    pub action_groups: Vec<ActionGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Times {
    pub impact_start: Option<String>,
    /// How the impact start was found, in words.
    pub impact_start_method: String,
    pub fired_at: String,
    pub detected_at: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    /// A person's name for a manual resolve.
    pub resolved_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub ttd_seconds: Option<f64>,
    pub tta_seconds: Option<f64>,
    pub ttr_seconds: Option<f64>,
    /// The TTR in words when it is negative: `1d 2h before detection`.
    pub resolved_before_detection: Option<String>,
    pub duration_seconds: Option<f64>,
    pub reopen_count: u32,
    pub notifications_received: u64,
    pub notifications_duplicate: u64,
    pub notifications_stale: u64,
}

/// Generated sentences (escaped Markdown) for the executive summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub what_happened: String,
    pub impact: Option<String>,
    pub detection: String,
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TtdContext {
    pub total_seconds: f64,
    pub parts: Vec<TtdPart>,
    /// The detection-quality line (escaped Markdown).
    pub quality: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TtdPart {
    pub label: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertContext {
    pub alertname: String,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub labels: Vec<NameValue>,
    /// `alert`, `expr`, `for`, `labels`: for `{{yaml_block rule}}`.
    pub rule: Value,
    /// Where the rule came from: a sentence of escaped Markdown.
    pub rule_source: String,
    pub for_seconds: Option<u64>,
    /// When the condition became true: from Prometheus when the evidence has it, else
    /// `startsAt − for` when `for` is known.
    pub condition_true_at: Option<String>,
    /// How `condition_true_at` was found, in words.
    pub condition_true_method: Option<String>,
    pub fired_at: String,
    pub received_at: String,
    /// Seconds from firing to incidentd receiving it.
    pub delivery_seconds: f64,
    pub resolved_at: Option<String>,
    /// Seconds it fired for, when resolved.
    pub firing_seconds: Option<f64>,
    /// Alertmanager lost the resolve and incidentd's reconciler noticed.
    pub resolved_by_reconciler: bool,
    /// Grafana-managed alerts only: the values of the rule's queries in the last
    /// notification, e.g. `B=44.2, C=1`.
    pub values: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
    /// `name="value"`, for `{{code pair}}`.
    pub pair: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    pub at: String,
    /// Seconds since the incident's start.
    pub offset_seconds: f64,
    pub kind: String,
    pub event: String,
    pub actor: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceContext {
    pub available: bool,
    pub missing_reason: Option<String>,
    pub collected_at: Option<String>,
    /// The metrics table's headings for what the figures are when read: `Peak so far` and
    /// `Now (14:02, still firing)` while open, `Peak` and `At resolution` after the resolve.
    pub peak_heading: String,
    pub last_heading: String,
    pub snapshots: Vec<SnapshotRow>,
    pub impact: Vec<ImpactFigure>,
    pub slo: Option<SloContext>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    pub name: String,
    pub query: String,
    pub unit: String,
    pub baseline: Option<f64>,
    pub peak: Option<f64>,
    /// `peak` is the lowest value, not the highest.
    pub lower_is_worse: bool,
    /// Only from data at or after the resolve (`None` otherwise).
    pub at_resolution: Option<f64>,
    /// The last column: the value at resolution, or now while the incident is open.
    pub last: Option<f64>,
    /// Said instead of `last` when it is not measured yet.
    pub last_text: Option<String>,
    /// The query returned no data.
    pub no_data: bool,
    /// e.g. `computed over 12s of history, less than the query's 1m window`.
    pub note: Option<String>,
    /// Formatted: `×5.3`, `+30%`, `not enough data`.
    pub change: String,
    pub threshold: Option<f64>,
    /// Relative path of the chart from the draft: `<ID>/<name>.svg`.
    pub chart_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SloContext {
    pub target_ratio: f64,
    pub window_seconds: f64,
    pub budget_seconds: f64,
    /// The incident's duration, counted as if it were all downtime.
    pub used_seconds: f64,
    pub used_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RootCause {
    pub first_question: String,
    /// Escaped Markdown, pre-filled from the lead alert's description.
    pub first_answer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// Escaped Markdown; `null` while open.
    pub resolved: Option<String>,
    pub notes: Vec<NoteRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoteRow {
    pub at: String,
    pub by: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionItemRow {
    pub id: String,
    pub action: String,
    pub priority: Option<String>,
    pub alertname: Option<String>,
}

/// Pre-filled lessons (escaped Markdown), only where the facts support them.
#[derive(Debug, Clone, Serialize)]
pub struct Lessons {
    pub went_well: Vec<String>,
    pub went_wrong: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelatedRow {
    pub id: String,
    pub title: String,
    pub started_at: String,
    pub duration_seconds: Option<f64>,
    pub status: String,
    /// `same key`, `same alert HighErrorRate`, …
    pub matched_on: String,
    /// Relative link to that incident's draft beside this one.
    pub draft: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct References {
    pub runbooks: Vec<Reference>,
    pub dashboards: Vec<Reference>,
    /// Prometheus's generatorURL of each alert: a graph of its expression.
    pub alert_sources: Vec<Reference>,
    /// vmalert's generatorURL: the alert's rule as vmalert serves it.
    pub vmalert_rules: Vec<Reference>,
    /// A Grafana-managed alert's generatorURL: its alert rule's page in Grafana.
    pub grafana_rules: Vec<Reference>,
    pub prometheus_graph: Option<String>,
    pub alertmanager: Option<String>,
    pub incident_api: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Flags {
    pub is_resolved: bool,
    pub has_acknowledgement: bool,
    pub has_evidence: bool,
    pub has_snapshots: bool,
    pub has_charts: bool,
    pub has_impact_figures: bool,
    pub has_slo: bool,
    pub has_notes: bool,
    pub has_related: bool,
    pub has_reopened: bool,
    pub resolved_by_hand: bool,
}

// ---------------------------------------------------------------------------------------

/// Severity order for choosing the lead alert; mirrors the configuration's default.
fn severity_rank(sev: Option<&str>) -> usize {
    match sev {
        Some("critical") => 0,
        Some("error") => 1,
        Some("warning") => 2,
        Some("info") => 3,
        _ => 4,
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// `5` → `5s`, `300` → `5m`, `5400` → `1h30m`: the form Prometheus rules use.
pub(crate) fn prom_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    for (v, u) in [(h, "h"), (m, "m"), (s, "s")] {
        if v > 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    out
}

/// The `g0.expr` of a Prometheus generatorURL: the rule's expression when the rules API
/// could not be asked.
pub(crate) fn expr_from_generator_url(generator_url: &str) -> Option<String> {
    let (_, query) = generator_url.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "g0.expr")
        .map(|(_, v)| v.into_owned())
}

/// For `A > 0.95`, `A`: the left side is what is worth graphing.
fn left_of_threshold(expr: &str) -> &str {
    for op in [" >= ", " > ", " <= ", " < "] {
        if let Some((left, right)) = expr.rsplit_once(op) {
            if right.trim().parse::<f64>().is_ok() {
                return left.trim();
            }
        }
    }
    expr.trim()
}

fn join_words(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `<ID>/<file>` as a Markdown image target: spaces and brackets would end it early.
fn chart_path(id: &str, file: &str) -> String {
    let mut out = String::new();
    for c in format!("{id}/{file}").chars() {
        match c {
            ' ' => out.push_str("%20"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Builds the render context. Pure: the clock comes in as `input.generated_at`.
pub fn build_context(input: &RenderInput<'_>, settings: &RenderSettings) -> RenderContext {
    let inc = input.incident;
    let ev = input.evidence;
    let zone = settings.timezone;
    let second = settings.second_timezone;
    let t = |at: Timestamp| helpers::time(at, zone, second);

    let start = inc.impact_start.unwrap_or(inc.fired_at).min(inc.fired_at);
    let is_resolved = inc.status == Status::Resolved && inc.resolved_at.is_some();
    let end = if is_resolved { inc.resolved_at } else { None };

    // Alerts in firing order; among simultaneous ones the most severe leads.
    let mut alerts: Vec<&Occurrence> = inc.alerts.iter().collect();
    alerts.sort_by(|a, b| {
        a.starts_at
            .cmp(&b.starts_at)
            .then(severity_rank(a.severity()).cmp(&severity_rank(b.severity())))
            .then(a.alertname.cmp(&b.alertname))
    });
    let lead = alerts.first().copied();
    let rule_of = |name: &str| ev.rules.iter().find(|r| r.alertname == name);

    let mut services: Vec<String> = Vec::new();
    if let Some(s) = &inc.service {
        services.push(s.clone());
    }
    for a in &alerts {
        if let Some(s) = a.labels.get("service") {
            if !services.contains(s) {
                services.push(s.clone());
            }
        }
    }

    let alert_contexts: Vec<AlertContext> = alerts
        .iter()
        .map(|a| {
            let start = ev
                .condition_starts
                .iter()
                .find(|c| c.fingerprint == a.fingerprint && c.fired_at == a.starts_at);
            alert_context(
                a,
                rule_of(&a.alertname),
                start,
                ev.missing_reason.as_deref(),
                ev.rules_problem.as_deref(),
            )
        })
        .collect();

    // Alert names, grouped as "A (critical), followed by B and C (warning)".
    let names: Vec<String> = {
        let mut seen: Vec<&str> = Vec::new();
        for a in &alerts {
            if !seen.contains(&a.alertname.as_str()) {
                seen.push(&a.alertname);
            }
        }
        seen.iter().map(|n| helpers::code(n, false)).collect()
    };
    let who = if services.is_empty() {
        "an incident opened".to_string()
    } else {
        let names: Vec<String> = services.iter().map(|s| helpers::inline(s)).collect();
        format!("{} started alerting", join_words(&names))
    };
    let mut what = match lead {
        Some(l) => {
            let sev = l
                .severity()
                .map(|s| format!(" ({})", helpers::inline(s)))
                .unwrap_or_default();
            let rest = &names[1..];
            let followed = if rest.is_empty() {
                String::new()
            } else {
                format!(", followed by {}", join_words(rest))
            };
            format!(
                "At {}, {who}: {}{sev} fired first{followed}.",
                t(start),
                names[0]
            )
        }
        None => format!("At {}, {who} opened an incident.", t(start)),
    };
    match end {
        Some(e) => {
            // Only say "the condition" when some alert's condition time is known (the
            // detection section says "unknown" otherwise).
            let condition_known = inc.impact_start_method != ImpactMethod::StartsAt
                && alert_contexts.iter().any(|a| a.condition_true_at.is_some());
            what.push_str(&format!(
                " All alerts had resolved by {}, {} after {}.",
                t(e),
                helpers::duration(seconds(e - start)),
                if condition_known {
                    "the condition first became true"
                } else {
                    "the first alert fired"
                }
            ))
        }
        None => what.push_str(&format!(
            " The incident is still {} ({} so far).",
            inc.status.as_str(),
            helpers::duration(seconds(input.generated_at - start))
        )),
    }

    let ttd = ttd_context(inc, lead.and_then(|l| rule_of(&l.alertname)));

    let slo = match (&ev.slo, inc.duration_seconds()) {
        (Some(slo), Some(used)) if slo.window_seconds > 0 && slo.target_percent < 100.0 => {
            let target = slo.target_percent / 100.0;
            let budget = (1.0 - target) * slo.window_seconds as f64;
            Some(SloContext {
                target_ratio: target,
                window_seconds: slo.window_seconds as f64,
                budget_seconds: budget,
                used_seconds: used,
                used_ratio: used / budget,
            })
        }
        _ => None,
    };

    let view = super::evidence_view::View::new(inc, ev, zone, input.generated_at);
    let impact_figures = view.impact(&ev.impact);
    let impact_sentence = {
        let mut parts: Vec<String> = impact_figures
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    helpers::inline(&f.name),
                    helpers::inline(&f.value)
                )
            })
            .collect();
        if let Some(s) = &slo {
            parts.push(format!(
                "at most {} of the {} error budget of the {} SLO ({})",
                helpers::duration(s.used_seconds),
                helpers::duration(s.budget_seconds),
                helpers::percent(s.target_ratio),
                helpers::percent(s.used_ratio)
            ));
        }
        (!parts.is_empty()).then(|| format!("{}.", parts.join("; ")))
    };

    let detection = match (lead, &ttd) {
        (Some(l), Some(ttd)) => format!(
            "Prometheus alert {}, TTD {}.",
            helpers::code(&l.alertname, false),
            helpers::duration(ttd.total_seconds)
        ),
        (Some(l), None) => format!(
            "Prometheus alert {}; the impact start, and so the TTD, is unknown.",
            helpers::code(&l.alertname, false)
        ),
        (None, _) => "No alert is attached to this incident.".to_string(),
    };

    let resolution_sentence = resolution_sentence(inc, &alerts, end, &t);

    // The impact start belongs to the alert whose condition became true first, which need not
    // be the one that fired first (a group's alerts often fire together).
    let impact_lead = inc
        .impact_start
        .and_then(|is| {
            ev.condition_starts
                .iter()
                .filter(|c| c.at == is)
                .find_map(|c| {
                    alerts
                        .iter()
                        .find(|a| a.fingerprint == c.fingerprint && a.starts_at == c.fired_at)
                })
                .copied()
        })
        .or(lead);
    let timeline = timeline_rows(
        inc,
        impact_lead,
        start,
        &input.communication.thread_messages,
    );
    let timeline_has_people = timeline.iter().any(|r| {
        r.kind == EventKind::NoteAdded.as_str() || r.kind == EventKind::SlackMessage.as_str()
    });

    let notes: Vec<NoteRow> = inc
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::NoteAdded)
        .map(|e| NoteRow {
            at: rfc3339(e.at),
            by: e.actor.clone(),
            text: e.text.clone(),
        })
        .collect();

    let snapshots: Vec<SnapshotRow> = ev
        .snapshots
        .iter()
        .map(|s| SnapshotRow {
            name: s.name.clone(),
            query: s.query.clone(),
            unit: s.unit.as_str().to_string(),
            baseline: s.baseline,
            peak: s.peak,
            lower_is_worse: s.lower_is_worse,
            at_resolution: (view.state == super::evidence_view::EvidenceState::Resolved)
                .then_some(s.at_resolution)
                .flatten(),
            last: view.last_value(s, ev.data_until.is_none()),
            last_text: view.not_measured(),
            no_data: s.no_data,
            note: s.note.clone(),
            change: match (s.change, s.baseline) {
                (Some(c), Some(b)) => helpers::change(Some(b), Some(b * c)),
                (Some(c), None) => helpers::change(Some(1.0), Some(c)),
                (None, _) => helpers::change(s.baseline, s.peak),
            },
            threshold: s.threshold,
            chart_path: s.chart.as_ref().map(|c| chart_path(&inc.id, c)),
        })
        .collect();

    let root_cause = root_cause(lead, &services, ev);

    let action_items: Vec<ActionItemRow> = ev
        .action_items
        .iter()
        .enumerate()
        .map(|(i, s)| ActionItemRow {
            id: format!("AI-{}", i + 1),
            action: s.action.clone(),
            priority: s.priority.clone(),
            alertname: s.alertname.clone(),
        })
        .collect();

    let grouped_actions = action_groups(&action_items);

    let lessons = lessons(
        inc,
        &alerts,
        ttd.as_ref(),
        lead.and_then(|l| rule_of(&l.alertname)),
    );

    let related: Vec<RelatedRow> = input
        .related
        .iter()
        .filter(|r| r.id != inc.id)
        .map(|r| {
            let mut on = Vec::new();
            if r.same_key {
                on.push("same key".to_string());
            }
            for n in &r.shared_alertnames {
                on.push(format!("same alert {}", helpers::code(n, true)));
            }
            RelatedRow {
                id: r.id.clone(),
                title: r.title.clone(),
                started_at: rfc3339(r.started_at),
                duration_seconds: r.duration_seconds,
                status: r.status.as_str().to_string(),
                matched_on: on.join(", "),
                draft: format!("{}.md", r.id),
            }
        })
        .collect();

    let references = references(
        inc,
        &alerts,
        ev,
        settings,
        start,
        end.unwrap_or(input.generated_at),
    );

    let flags = Flags {
        is_resolved,
        has_acknowledgement: inc.acknowledged_at.is_some(),
        has_evidence: ev.missing_reason.is_none(),
        has_snapshots: !snapshots.is_empty(),
        has_charts: snapshots.iter().any(|s| s.chart_path.is_some()),
        has_impact_figures: !ev.impact.is_empty(),
        has_slo: slo.is_some(),
        has_notes: !notes.is_empty(),
        has_related: !related.is_empty(),
        has_reopened: inc.reopen_count > 0,
        resolved_by_hand: is_resolved && inc.resolved_by.is_some(),
    };

    let from_grafana = |a: &&Occurrence| a.from_grafana();
    let detected_by = match (
        alerts.iter().any(from_grafana),
        alerts.iter().all(from_grafana),
    ) {
        (false, _) => "Prometheus alerts routed through Alertmanager",
        (true, true) => "Grafana-managed alerts (Grafana's webhook contact point)",
        (true, false) => {
            "Prometheus alerts routed through Alertmanager, and Grafana-managed alerts"
        }
    }
    .to_string();
    RenderContext {
        detected_by,
        id: inc.id.clone(),
        title: if inc.title.trim().is_empty() {
            lead.map(|l| {
                l.annotations
                    .get("summary")
                    .cloned()
                    .unwrap_or_else(|| l.alertname.clone())
            })
            .unwrap_or_else(|| inc.key.clone())
        } else {
            inc.title.clone()
        },
        key: inc.key.clone(),
        status: inc.status.as_str().to_string(),
        severity: inc.severity.clone(),
        services,
        start: rfc3339(start),
        end: end.map(rfc3339),
        generated_at: rfc3339(input.generated_at),
        version: inc.version,
        times: Times {
            impact_start: inc.impact_start.map(rfc3339),
            impact_start_method: impact_method_words(inc.impact_start_method).to_string(),
            fired_at: rfc3339(inc.fired_at),
            detected_at: rfc3339(inc.detected_at),
            acknowledged_at: inc.acknowledged_at.map(rfc3339),
            acknowledged_by: inc.acknowledged_by.clone(),
            resolved_at: end.map(rfc3339),
            resolved_by: if is_resolved {
                inc.resolved_by.clone()
            } else {
                None
            },
        },
        figures: Figures {
            ttd_seconds: ttd.as_ref().map(|t| t.total_seconds),
            tta_seconds: inc.tta_seconds(),
            ttr_seconds: if is_resolved { inc.ttr_seconds() } else { None },
            resolved_before_detection: inc
                .ttr_seconds()
                .filter(|s| is_resolved && *s < 0.0)
                .map(crate::time::since_detection),
            duration_seconds: if is_resolved {
                end.map(|e| seconds(e - start))
            } else {
                None
            },
            reopen_count: inc.reopen_count,
            notifications_received: inc.notifications.received,
            notifications_duplicate: inc.notifications.duplicate,
            notifications_stale: inc.notifications.stale,
        },
        summary: Summary {
            what_happened: what,
            impact: impact_sentence,
            detection,
            resolution: resolution_sentence.clone(),
        },
        ttd,
        alerts: alert_contexts,
        timeline,
        timeline_has_people,
        people_said: people_said(inc, &input.communication.thread_messages),
        evidence: EvidenceContext {
            available: ev.missing_reason.is_none(),
            missing_reason: ev.missing_reason.clone(),
            collected_at: ev.collected_at.map(rfc3339),
            peak_heading: view.peak_heading(),
            last_heading: view.last_heading(),
            snapshots,
            impact: impact_figures,
            slo,
        },
        root_cause,
        resolution: Resolution {
            resolved: resolution_sentence,
            notes,
        },
        next_action_id: format!("AI-{}", action_items.len() + 1),
        action_items,
        lessons,
        related,
        references,
        flags,
        severity_org: severity_org(inc.severity.as_deref(), &settings.severity_map),
        response: response_rows(inc, start),
        communication: communication(inc, input.communication),
        action_groups: grouped_actions,
    }
}

fn impact_method_words(m: ImpactMethod) -> &'static str {
    match m {
        ImpactMethod::RuleReevaluation => "the rule's expression re-evaluated in Prometheus",
        ImpactMethod::StartsAtMinusFor => "the alert's firing time minus the rule's `for`",
        ImpactMethod::StartsAt => {
            "the alert's firing time (the rule's `for` was unknown, so the real start was earlier)"
        }
    }
}

fn alert_context(
    a: &Occurrence,
    rule: Option<&RuleInfo>,
    start: Option<&ConditionStart>,
    missing: Option<&str>,
    rules_problem: Option<&str>,
) -> AlertContext {
    let (expr, for_seconds, rule_labels, source) = match rule {
        Some(r) => (Some(r.expr.clone()), r.for_seconds, r.labels.clone(), {
            let group = r
                .group
                .as_ref()
                .map(|g| format!(" (group {})", helpers::code(g, false)))
                .unwrap_or_default();
            match r.source.as_deref() {
                Some("vmalert_rules") => format!(
                    "Rule from vmalert's rules API{group}, found through the alert's generatorURL."
                ),
                Some("vmalert_alert") => "Expression and labels from vmalert's alert at the \
                        alert's generatorURL; the rule's `for` is unknown."
                    .to_string(),
                Some("generator_url") => "Expression from the alert's generatorURL; its \
                        `for` and labels are unknown."
                    .to_string(),
                _ => format!("Rule from the Prometheus rules API{group}."),
            }
        }),
        None => {
            let why = match (missing, rules_problem) {
                (Some(m), _) => format!("the rules API was not asked: {}", helpers::inline(m)),
                (None, Some(p)) => format!("the rules API: {}", helpers::inline(p)),
                (None, None) => "Prometheus did not list the rule".to_string(),
            };
            match expr_from_generator_url(&a.generator_url) {
                Some(e) => (
                    Some(e),
                    None,
                    LabelSet::new(),
                    format!(
                        "Expression from the alert's generatorURL; its `for` and labels are unknown ({why})."
                    ),
                ),
                None => (
                    None,
                    None,
                    LabelSet::new(),
                    if a.generator_url.trim().is_empty() {
                        format!("The rule is unknown ({why}), and the alert carries no generatorURL.")
                    } else {
                        format!(
                            "The rule is unknown ({why}), and the alert's generatorURL ({}) names no expression.",
                            helpers::code(&a.generator_url, false)
                        )
                    },
                ),
            }
        }
    };
    let mut rule_map = Map::new();
    rule_map.insert("alert".into(), Value::String(a.alertname.clone()));
    if let Some(e) = &expr {
        rule_map.insert("expr".into(), Value::String(e.clone()));
    }
    if let Some(f) = for_seconds {
        rule_map.insert("for".into(), Value::String(prom_duration(f)));
    }
    if !rule_labels.is_empty() {
        let labels: Map<String, Value> = rule_labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        rule_map.insert("labels".into(), Value::Object(labels));
    }
    let condition_true = match start {
        // Only a re-evaluation says more than the arithmetic below.
        Some(c) if c.method == ImpactMethod::RuleReevaluation => Some((
            c.at,
            if c.at_or_before {
                "or earlier: re-evaluating the rule in Prometheus found it already true at the start of the range"
            } else {
                "found by re-evaluating the rule in Prometheus"
            },
        )),
        _ => for_seconds.map(|f| {
            (
                a.starts_at - Duration::seconds(f as i64),
                "firing time minus `for`",
            )
        }),
    };
    AlertContext {
        alertname: a.alertname.clone(),
        severity: a.severity().map(str::to_string),
        summary: a.annotations.get("summary").cloned(),
        description: a.annotations.get("description").cloned(),
        labels: a
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| NameValue {
                name: k.clone(),
                value: v.clone(),
                pair: format!("{k}={v:?}"),
            })
            .collect(),
        rule: Value::Object(rule_map),
        rule_source: source,
        for_seconds,
        condition_true_at: condition_true.map(|(at, _)| rfc3339(at)),
        condition_true_method: condition_true.map(|(_, how)| how.to_string()),
        fired_at: rfc3339(a.starts_at),
        received_at: rfc3339(a.first_seen_at),
        delivery_seconds: seconds(a.first_seen_at - a.starts_at),
        resolved_at: a.ends_at.map(rfc3339),
        firing_seconds: a.ends_at.map(|e| seconds(e - a.starts_at)),
        resolved_by_reconciler: a.resolved_by.as_deref() == Some("reconciler"),
        values: a.annotations.get(grafana_keys::VALUES).cloned(),
    }
}

fn ttd_context(inc: &Incident, lead_rule: Option<&RuleInfo>) -> Option<TtdContext> {
    let impact_start = inc.impact_start?;
    let total = seconds(inc.detected_at - impact_start);
    let delivery = seconds(inc.detected_at - inc.fired_at);
    let pending = seconds(inc.fired_at - impact_start);
    let mut parts = Vec::new();
    let for_secs = lead_rule.and_then(|r| r.for_seconds).map(|f| f as f64);
    match (inc.impact_start_method, for_secs) {
        (ImpactMethod::StartsAt, _) => {}
        (_, Some(f)) if pending > 0.0 => {
            let in_for = f.min(pending);
            parts.push(TtdPart {
                label: format!("rule `for: {}`", prom_duration(f as u64)),
                seconds: in_for,
            });
            if pending - in_for >= 0.001 {
                parts.push(TtdPart {
                    label: "scrape and rule evaluation".to_string(),
                    seconds: pending - in_for,
                });
            }
        }
        _ if pending > 0.0 => parts.push(TtdPart {
            label: "pending before firing".to_string(),
            seconds: pending,
        }),
        _ => {}
    }
    parts.push(TtdPart {
        label: "Alertmanager grouping and delivery".to_string(),
        seconds: delivery,
    });

    let speed = if total <= 300.0 {
        "Fast"
    } else if total <= 900.0 {
        "Acceptable"
    } else {
        "Slow"
    };
    let mut quality = format!(
        "{speed}: {} from the condition becoming true to incidentd receiving the alert",
        helpers::duration(total)
    );
    if inc.impact_start_method == ImpactMethod::StartsAt {
        quality = format!(
            "Unknown: the rule's `for` could not be read, so the {} counted here starts at the firing time and leaves out the pending time",
            helpers::duration(total)
        );
    } else if let Some(p) = parts.first().filter(|p| p.label.starts_with("rule `for")) {
        // Whole percent: "79%" says as much as "78.59%" about a share of the TTD.
        let share = if total > 0.0 {
            100.0 * p.seconds / total
        } else {
            0.0
        };
        quality.push_str(&format!(
            "; the {} cost {} of it ({share:.0}%), Alertmanager's grouping and delivery {}",
            p.label,
            helpers::duration(p.seconds),
            helpers::duration(delivery)
        ));
    }
    quality.push('.');
    Some(TtdContext {
        total_seconds: total,
        parts,
        quality,
    })
}

/// Who evaluates the alerts' rules: `Prometheus`, `Grafana` or `Prometheus and Grafana`.
fn rule_evaluators<'a>(alerts: impl IntoIterator<Item = &'a Occurrence>) -> &'static str {
    let (mut grafana, mut other) = (false, false);
    for a in alerts {
        if a.from_grafana() {
            grafana = true;
        } else {
            other = true;
        }
    }
    match (other, grafana) {
        (false, true) => "Grafana",
        (true, true) => "Prometheus and Grafana",
        _ => "Prometheus",
    }
}

fn resolution_sentence(
    inc: &Incident,
    alerts: &[&Occurrence],
    end: Option<Timestamp>,
    t: &dyn Fn(Timestamp) -> String,
) -> Option<String> {
    let end = end?;
    let since = crate::time::since_detection(seconds(end - inc.detected_at));
    let mut s = match &inc.resolved_by {
        Some(person) => format!(
            "{} resolved the incident by hand at {}, {since}.",
            helpers::inline(person),
            t(end)
        ),
        None => {
            let last = alerts
                .iter()
                .filter(|a| a.ends_at == Some(end))
                .map(|a| helpers::code(&a.alertname, false))
                .next();
            let by_reconciler = |a: &&&Occurrence| a.resolved_by.as_deref() == Some("reconciler");
            let reconciled = names(alerts.iter().filter(by_reconciler));
            let notified = names(alerts.iter().filter(|a| !by_reconciler(a)));
            let how = match (notified.is_empty(), reconciled.is_empty()) {
                (_, true) => format!(
                    "Every alert resolved in {}, none by hand",
                    rule_evaluators(alerts.iter().copied())
                ),
                (true, false) => "No resolve notification arrived: incidentd marked every alert \
                    resolved itself because Alertmanager no longer had them (their resolve \
                    notifications were lost), none by hand"
                    .to_string(),
                (false, false) => format!(
                    "Every alert resolved without a person: {} by Alertmanager's resolve \
                     notifications, {} by incidentd because Alertmanager no longer had them \
                     (their resolve notifications were lost)",
                    join_words(&notified),
                    join_words(&reconciled)
                ),
            };
            return Some(match last {
                Some(name) => format!("{how}; the last, {name}, at {}, {since}.", t(end)),
                None => format!("{how}; all by {}, {since}.", t(end)),
            });
        }
    };
    let reconciled = names(
        alerts
            .iter()
            .filter(|a| a.resolved_by.as_deref() == Some("reconciler")),
    );
    if !reconciled.is_empty() {
        s.push_str(&format!(
            " incidentd marked {} resolved itself because Alertmanager no longer had them (a resolve notification was lost).",
            join_words(&reconciled)
        ));
    }
    Some(s)
}

/// The distinct alert names of `alerts`, as code, in order.
fn names<'a>(alerts: impl Iterator<Item = &'a &'a Occurrence>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in alerts {
        let name = helpers::code(&a.alertname, false);
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn timeline_rows(
    inc: &Incident,
    lead: Option<&Occurrence>,
    start: Timestamp,
    thread: &[crate::incident::conversation::ThreadMessage],
) -> Vec<TimelineRow> {
    let mut rows: Vec<(Timestamp, usize, TimelineRow)> = Vec::new();
    if let (Some(is), Some(l)) = (inc.impact_start, lead) {
        if inc.impact_start_method != ImpactMethod::StartsAt {
            let how = match inc.impact_start_method {
                ImpactMethod::RuleReevaluation => "rule re-evaluated in Prometheus",
                _ => "startsAt minus the rule's for",
            };
            rows.push((
                is,
                0,
                TimelineRow {
                    at: rfc3339(is),
                    offset_seconds: seconds(is - start),
                    kind: "impact_start".to_string(),
                    event: format!(
                        "Impact start: the condition of {} first became true ({how})",
                        l.alertname
                    ),
                    actor: crate::incident::ACTOR_PROMETHEUS.to_string(),
                },
            ));
        }
    }
    // Thread replies as they read now (see `incident::conversation`): the current text,
    // "(edited)", nothing for a deleted one; their history rows stay in the API's timeline.
    let history_only = [
        EventKind::SlackMessage,
        EventKind::SlackMessageEdited,
        EventKind::SlackMessageDeleted,
        EventKind::MilestoneMarked,
    ];
    for (i, m) in thread.iter().filter(|m| m.shown()).enumerate() {
        let mut event = m.text.trim().to_string();
        if let Some(kind) = m.milestone {
            if crate::incident::MilestoneKind::of_note(&event) != Some(kind) {
                event = format!("{} {event}", kind.prefix());
            }
        }
        event.push_str(if m.edited_at.is_some() {
            " (in the Slack thread, edited)"
        } else {
            " (in the Slack thread)"
        });
        rows.push((
            m.at,
            inc.timeline.len() + 1 + i,
            TimelineRow {
                at: rfc3339(m.at),
                offset_seconds: seconds(m.at - start),
                kind: EventKind::SlackMessage.as_str().to_string(),
                event,
                actor: m.author_name().to_string(),
            },
        ));
    }
    for (i, e) in inc.timeline.iter().enumerate() {
        if history_only.contains(&e.kind) {
            continue;
        }
        rows.push((
            e.at,
            i + 1,
            TimelineRow {
                at: rfc3339(e.at),
                offset_seconds: seconds(e.at - start),
                kind: e.kind.as_str().to_string(),
                event: e.text.clone(),
                actor: e.actor.clone(),
            },
        ));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    rows.into_iter().map(|(_, _, r)| r).collect()
}

fn root_cause(lead: Option<&Occurrence>, services: &[String], ev: &Evidence) -> RootCause {
    let subject = services
        .first()
        .map(|s| helpers::inline(s))
        .unwrap_or_else(|| "the service".to_string());
    let first_question = format!("Why was {subject} degraded?");
    let first_answer = match lead {
        Some(l) => {
            let said = l
                .annotations
                .get("description")
                .or_else(|| l.annotations.get("summary"))
                .map(|d| {
                    format!(
                        ": \"{}\" (its description in the last notification)",
                        helpers::inline(d)
                    )
                })
                .unwrap_or_default();
            let peak = ev
                .snapshots
                .iter()
                .find(|s| s.alertname.as_deref() == Some(&l.alertname) && s.peak.is_some())
                .and_then(|s| {
                    s.peak.map(|p| {
                        format!(
                            " {} peaked at {}.",
                            helpers::inline(&s.name),
                            helpers::metric(p, s.unit)
                        )
                    })
                })
                .unwrap_or_default();
            format!(
                "{} fired first{said}.{peak} {}",
                helpers::code(&l.alertname, false),
                helpers::todo("confirm, or say what really failed first")
            )
        }
        None => helpers::todo("what failed first"),
    };
    RootCause {
        first_question,
        first_answer,
    }
}

fn lessons(
    inc: &Incident,
    alerts: &[&Occurrence],
    ttd: Option<&TtdContext>,
    lead_rule: Option<&RuleInfo>,
) -> Lessons {
    let mut well = Vec::new();
    let mut wrong = Vec::new();
    if let Some(ttd) = ttd {
        if inc.impact_start_method != ImpactMethod::StartsAt {
            if ttd.total_seconds <= 300.0 {
                well.push(format!(
                    "Fast detection: the alert reached incidentd {} after the condition became true.",
                    helpers::duration(ttd.total_seconds)
                ));
            } else if ttd.total_seconds > 900.0 {
                wrong.push(format!(
                    "Slow detection: {} passed between the condition becoming true and incidentd receiving the alert.",
                    helpers::duration(ttd.total_seconds)
                ));
            }
            if let Some(f) = lead_rule.and_then(|r| r.for_seconds) {
                let f = f as f64;
                if ttd.total_seconds > 120.0 && f / ttd.total_seconds > 0.5 {
                    wrong.push(format!(
                        "The rule's `for: {}` was most of the TTD; _TODO: could it be shorter without making the alert noisy?_",
                        prom_duration(f as u64)
                    ));
                }
            }
        }
    }
    match (inc.tta_seconds(), &inc.acknowledged_by) {
        (Some(tta), by) => {
            let by = by
                .as_deref()
                .map(|b| format!(" by {}", helpers::inline(b)))
                .unwrap_or_default();
            if tta <= 300.0 {
                well.push(format!(
                    "Quick acknowledgement{by}: {} after detection.",
                    helpers::duration(tta)
                ));
            } else if tta > 900.0 {
                wrong.push(format!(
                    "Slow acknowledgement{by}: {} after detection.",
                    helpers::duration(tta)
                ));
            }
        }
        (None, _) => {
            let unacked = match inc.resolved_at {
                Some(r) if inc.status == Status::Resolved => seconds(r - inc.detected_at),
                _ => 0.0,
            };
            if unacked > 900.0 {
                wrong.push(format!(
                    "Nobody acknowledged the incident during the {} it was open.",
                    helpers::duration(unacked)
                ));
            }
        }
    }
    if inc.reopen_count > 0 {
        wrong.push(format!(
            "The incident reopened {}: the alerts flapped. _TODO: thresholds, `for` or `keep_firing_for`?_",
            match inc.reopen_count {
                1 => "once".to_string(),
                2 => "twice".to_string(),
                n => plural(u64::from(n), "time", "times"),
            }
        ));
    }
    let mut names: Vec<&str> = alerts.iter().map(|a| a.alertname.as_str()).collect();
    names.dedup();
    let without_runbook: Vec<String> = names
        .iter()
        .filter(|n| {
            !alerts
                .iter()
                .any(|a| a.alertname == **n && a.annotations.contains_key("runbook_url"))
        })
        .map(|n| helpers::code(n, false))
        .collect();
    if !alerts.is_empty() && without_runbook.is_empty() {
        well.push("Every alert carried a runbook link.".to_string());
    } else if !without_runbook.is_empty() {
        wrong.push(format!(
            "{} had no `runbook_url` annotation.",
            join_words(&without_runbook)
        ));
    }
    Lessons {
        went_well: well,
        went_wrong: wrong,
    }
}

fn references(
    inc: &Incident,
    alerts: &[&Occurrence],
    ev: &Evidence,
    settings: &RenderSettings,
    start: Timestamp,
    end: Timestamp,
) -> References {
    let mut runbooks: Vec<Reference> = Vec::new();
    let mut dashboards: Vec<Reference> = Vec::new();
    let mut sources: Vec<Reference> = Vec::new();
    let mut grafana_rules: Vec<Reference> = Vec::new();
    let mut vmalert_rules: Vec<Reference> = Vec::new();
    let add = |list: &mut Vec<Reference>, name: &str, url: &str| {
        if let Some(existing) = list.iter_mut().find(|r| r.url == url) {
            if !existing.label.split(", ").any(|l| l == name) {
                existing.label.push_str(", ");
                existing.label.push_str(name);
            }
        } else {
            list.push(Reference {
                label: name.to_string(),
                url: url.to_string(),
            });
        }
    };
    for a in alerts {
        if let Some(u) = a.annotations.get("runbook_url") {
            add(&mut runbooks, &a.alertname, u);
        }
        if let Some(u) = a.annotations.get("dashboard_url") {
            add(&mut dashboards, &a.alertname, u);
        }
        // Grafana-managed alerts link their dashboard and panel.
        for key in [grafana_keys::DASHBOARD_URL, grafana_keys::PANEL_URL] {
            if let Some(u) = a.annotations.get(key) {
                add(&mut dashboards, &a.alertname, u);
            }
        }
        if !a.generator_url.is_empty() {
            let list = if a.from_grafana() {
                &mut grafana_rules
            } else if crate::prometheus::VmalertUrls::parse(&a.generator_url).is_some() {
                &mut vmalert_rules
            } else {
                &mut sources
            };
            add(list, &a.alertname, &a.generator_url);
        }
    }

    let prometheus_graph = settings.prometheus_url.as_ref().and_then(|base| {
        let mut exprs: Vec<String> = Vec::new();
        for a in alerts {
            let expr = ev
                .rules
                .iter()
                .find(|r| r.alertname == a.alertname)
                .map(|r| r.expr.clone())
                .or_else(|| expr_from_generator_url(&a.generator_url));
            if let Some(e) = expr {
                let left = left_of_threshold(&e).to_string();
                if !exprs.contains(&left) {
                    exprs.push(left);
                }
            }
        }
        if exprs.is_empty() {
            return None;
        }
        // The window with five minutes either side, so the baseline shows.
        let from = start - Duration::minutes(5);
        let to = end + Duration::minutes(5);
        let range = prom_duration((to - from).num_seconds().max(60) as u64);
        let end_input = to.format("%Y-%m-%d %H:%M:%S").to_string();
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (i, e) in exprs.iter().enumerate() {
            q.append_pair(&format!("g{i}.expr"), e);
            q.append_pair(&format!("g{i}.tab"), "0");
            q.append_pair(&format!("g{i}.range_input"), &range);
            q.append_pair(&format!("g{i}.end_input"), &end_input);
        }
        Some(format!("{}?{}", join_url(base, "graph"), q.finish()))
    });

    let alertmanager = settings.alertmanager_url.as_ref().map(|base| {
        // A key made of label matchers doubles as an Alertmanager filter; a groupKey does not.
        if inc.key.contains('=') && !inc.key.starts_with('{') {
            let filter: String =
                form_urlencoded::byte_serialize(format!("{{{}}}", inc.key).as_bytes()).collect();
            format!("{}/#/alerts?filter={filter}", base.trim_end_matches('/'))
        } else {
            format!("{}/#/alerts", base.trim_end_matches('/'))
        }
    });

    let api_path = format!("api/v1/incidents/{}", inc.id);
    References {
        runbooks,
        dashboards,
        alert_sources: sources,
        grafana_rules,
        vmalert_rules,
        prometheus_graph,
        alertmanager,
        // The incident's page where incidentd has an address; its API path otherwise.
        incident_api: match &settings.external_url {
            Some(base) => join_url(base, &format!("incidents/{}", inc.id)),
            None => format!("/{api_path}"),
        },
    }
}

/// Label sets for tests and samples.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect::<BTreeMap<_, _>>()
}

// ---------------------------------------------------------------------------------------
// Communication, organisation severity, response milestones, grouped action items.
// ---------------------------------------------------------------------------------------

/// What the store knows of how the incident was communicated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Communication {
    /// The incident's Slack thread: `(channel, thread ts)`.
    pub slack_thread: Option<(String, String)>,
    /// Messages incidentd delivered to Slack for the incident: `(when, what)`, oldest first.
    pub slack_updates: Vec<(Timestamp, String)>,
    /// People's replies in the thread that are in the timeline (current text), oldest first.
    pub thread_messages: Vec<crate::incident::conversation::ThreadMessage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommunicationContext {
    pub slack_channel: Option<String>,
    pub slack_thread_ts: Option<String>,
    /// People who acknowledged, wrote notes or resolved, in order of first appearance.
    pub participants: Vec<ParticipantRow>,
    pub updates: Vec<UpdateRow>,
    /// Replies in the Slack thread shown in the timeline, and by how many people.
    pub thread_replies: usize,
    pub thread_authors: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantRow {
    pub name: String,
    /// What they did, in words: `acknowledged, 2 notes`.
    pub did: String,
    pub first_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateRow {
    pub at: String,
    pub what: String,
}

/// One response milestone: `at` is `null` when nobody recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct MilestoneRow {
    /// `Acknowledged`, `Triaged`, `Root cause identified`, `Mitigated`, `Resolved`.
    pub name: String,
    /// `Time to acknowledge (TTA)`, …
    pub figure: String,
    pub at: Option<String>,
    pub by: Option<String>,
    pub since_detection_seconds: Option<f64>,
    pub since_impact_start_seconds: Option<f64>,
    /// How a person records it: `a note starting with "triage:"`.
    pub how: String,
    /// The placeholder's text when nobody recorded it.
    pub missing: String,
}

/// Action items of one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct ActionGroup {
    /// `Immediate`, `Short-term`, `Long-term`.
    pub name: String,
    /// `high priority, during or right after the incident`, …
    pub horizon: String,
    pub items: Vec<ActionItemRow>,
    /// The placeholder's text when the group is empty: `immediate actions`.
    pub missing: String,
}

/// The organisation's severity for an alert severity label, matched ignoring case.
fn severity_org(label: Option<&str>, map: &BTreeMap<String, String>) -> Option<String> {
    let label = label?;
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(label))
        .map(|(_, v)| v.clone())
        .filter(|v| !v.trim().is_empty())
}

fn is_person(actor: &str) -> bool {
    ![
        crate::incident::ACTOR_PROMETHEUS,
        crate::incident::ACTOR_ALERTMANAGER,
        crate::incident::ACTOR_GRAFANA,
        crate::incident::ACTOR_INCIDENTD,
    ]
    .contains(&actor)
}

fn response_rows(inc: &Incident, start: Timestamp) -> Vec<MilestoneRow> {
    let m = inc.milestones();
    let since_impact = |at: Timestamp| Some(seconds(at - start));
    let row = |name: &str, figure: &str, how: &str, at: Option<Timestamp>, by: Option<String>| {
        MilestoneRow {
            name: name.to_string(),
            figure: figure.to_string(),
            at: at.map(rfc3339),
            by,
            since_detection_seconds: at.map(|a| inc.since_detection_seconds(a)),
            since_impact_start_seconds: at.and_then(since_impact),
            how: how.to_string(),
            missing: format!("when, if it happened; record it with {how}"),
        }
    };
    let resolved = (inc.status == Status::Resolved)
        .then_some(inc.resolved_at)
        .flatten();
    vec![
        row(
            "Acknowledged",
            "Time to acknowledge (TTA)",
            "an acknowledgement (API, CLI or the Slack button)",
            inc.acknowledged_at,
            inc.acknowledged_by.clone(),
        ),
        row(
            "Triaged",
            "Time to triage",
            "a note or Slack thread reply starting with \"triage:\"",
            m.triaged.as_ref().map(|x| x.at),
            m.triaged.as_ref().map(|x| x.by.clone()),
        ),
        row(
            "Root cause identified",
            "Time to identify the root cause",
            "a note or Slack thread reply starting with \"root cause:\" or \"identified:\"",
            m.identified.as_ref().map(|x| x.at),
            m.identified.as_ref().map(|x| x.by.clone()),
        ),
        row(
            "Mitigated",
            "Time to mitigate",
            "a note or Slack thread reply starting with \"mitigated:\"",
            m.mitigated.as_ref().map(|x| x.at),
            m.mitigated.as_ref().map(|x| x.by.clone()),
        ),
        row(
            "Resolved",
            "Time to resolve (TTR)",
            "the alerts resolving, or resolving by hand",
            resolved,
            resolved.map(|_| {
                inc.resolved_by
                    .clone()
                    .unwrap_or_else(|| match rule_evaluators(&inc.alerts) {
                        "Grafana" => "the alerts (Grafana)".to_string(),
                        "Prometheus and Grafana" => {
                            "the alerts (Alertmanager and Grafana)".to_string()
                        }
                        _ => "the alerts (Alertmanager)".to_string(),
                    })
            }),
        ),
    ]
}

fn communication(inc: &Incident, c: &Communication) -> CommunicationContext {
    // (name, first seen, what they did, notes, thread replies)
    let mut participants: Vec<(String, Timestamp, Vec<String>, u64, u64)> = Vec::new();
    let mut events: Vec<&crate::incident::TimelineEvent> = inc
        .timeline
        .iter()
        .filter(|e| is_person(&e.actor))
        .collect();
    events.sort_by_key(|e| e.at);
    for e in events {
        let i = match participants.iter().position(|p| p.0 == e.actor) {
            Some(i) => i,
            None => {
                participants.push((e.actor.clone(), e.at, Vec::new(), 0, 0));
                participants.len() - 1
            }
        };
        let p = &mut participants[i];
        let did = match e.kind {
            EventKind::Acknowledged => "acknowledged",
            EventKind::Resolved => "resolved by hand",
            EventKind::NoteAdded => {
                p.3 += 1;
                continue;
            }
            _ => continue,
        };
        if !p.2.iter().any(|d| d == did) {
            p.2.push(did.to_string());
        }
    }
    // Replies are counted from the thread's messages the draft shows (not deleted), as the
    // thread's own count is: one source for both.
    for m in c.thread_messages.iter().filter(|m| m.shown()) {
        let name = m.author_name();
        match participants.iter_mut().find(|p| p.0 == name) {
            Some(p) => p.4 += 1,
            None => participants.push((name.to_string(), m.at, Vec::new(), 0, 1)),
        }
    }
    CommunicationContext {
        slack_channel: c.slack_thread.as_ref().map(|t| t.0.clone()),
        slack_thread_ts: c.slack_thread.as_ref().map(|t| t.1.clone()),
        participants: participants
            .into_iter()
            // Someone whose only replies were deleted left nothing to name them for.
            .filter(|p| !p.2.is_empty() || p.3 > 0 || p.4 > 0)
            .map(|(name, first, mut did, notes, replies)| {
                if notes > 0 {
                    did.push(plural(notes, "note", "notes"));
                }
                if replies > 0 {
                    did.push(plural(
                        replies,
                        "reply in the thread",
                        "replies in the thread",
                    ));
                }
                ParticipantRow {
                    name,
                    did: did.join(", "),
                    first_at: rfc3339(first),
                }
            })
            .collect(),
        thread_replies: c.thread_messages.iter().filter(|m| m.shown()).count(),
        thread_authors: {
            let mut authors: Vec<&str> = c
                .thread_messages
                .iter()
                .filter(|m| m.shown())
                .map(|m| m.author_name())
                .collect();
            authors.sort_unstable();
            authors.dedup();
            authors.len()
        },
        updates: c
            .slack_updates
            .iter()
            .map(|(at, what)| UpdateRow {
                at: rfc3339(*at),
                what: what.clone(),
            })
            .collect(),
    }
}

/// Words a person wrote during the incident.
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    pub text: String,
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeopleSaid {
    pub root_cause: Option<Quote>,
    pub mitigation: Option<Quote>,
}

/// The first note or thread reply (as it reads now) marking the root cause and the
/// mitigation, without its prefix.
fn people_said(
    inc: &Incident,
    thread: &[crate::incident::conversation::ThreadMessage],
) -> PeopleSaid {
    use crate::incident::MilestoneKind;
    let strip = |text: &str| -> String {
        let t = text.trim_start();
        match t.find(':') {
            Some(i) if MilestoneKind::of_note(t).is_some() => t[i + 1..].trim().to_string(),
            _ => t.trim().to_string(),
        }
    };
    let mut said: Vec<(Timestamp, MilestoneKind, String, String)> = inc
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::NoteAdded)
        .filter_map(|e| {
            Some((
                e.at,
                MilestoneKind::of_note(&e.text)?,
                strip(&e.text),
                e.actor.clone(),
            ))
        })
        .collect();
    said.extend(thread.iter().filter(|m| m.shown()).filter_map(|m| {
        let kind = MilestoneKind::of_note(&m.text).or(m.milestone)?;
        Some((m.at, kind, strip(&m.text), m.author_name().to_string()))
    }));
    said.sort_by_key(|s| s.0);
    let first = |k: MilestoneKind| {
        said.iter()
            .find(|s| s.1 == k)
            .map(|(at, _, text, by)| Quote {
                text: text.clone(),
                by: by.clone(),
                at: rfc3339(*at),
            })
    };
    PeopleSaid {
        root_cause: first(MilestoneKind::Identified),
        mitigation: first(MilestoneKind::Mitigated),
    }
}

/// The horizon of a priority: 0 immediate (P0, P1, high, critical, urgent), 2 long-term
/// (P3 and lower, low), else 1 short-term (P2, medium, none or unknown: a person decides).
fn horizon(priority: Option<&str>) -> usize {
    let Some(p) = priority.map(|p| p.trim().to_ascii_lowercase()) else {
        return 1;
    };
    match p.as_str() {
        "p0" | "p1" | "high" | "critical" | "urgent" | "sev-1" | "sev1" => 0,
        "p2" | "medium" | "normal" => 1,
        "low" => 2,
        _ => match p.strip_prefix('p').and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n >= 3 => 2,
            _ => 1,
        },
    }
}

fn action_groups(items: &[ActionItemRow]) -> Vec<ActionGroup> {
    let names = [
        (
            "Immediate",
            "high priority: during or right after the incident",
        ),
        (
            "Short-term",
            "medium priority, or not yet prioritised: within weeks",
        ),
        ("Long-term", "low priority: within months"),
    ];
    names
        .iter()
        .enumerate()
        .map(|(h, (name, horizon_words))| ActionGroup {
            name: name.to_string(),
            horizon: horizon_words.to_string(),
            items: items
                .iter()
                .filter(|i| horizon(i.priority.as_deref()) == h)
                .cloned()
                .collect(),
            missing: format!("more {} actions from the review", name.to_lowercase()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_persons_replies_are_the_thread_messages_the_draft_shows() {
        use crate::incident::conversation::ThreadMessage;
        let (mut inc, _, _, at) = crate::postmortem::sample::sample_full();
        inc.timeline.retain(|e| !is_person(&e.actor));
        let reply = |ts: &str, text: &str| {
            let mut m = ThreadMessage::received(&inc.id, "C0", ts, "U0ALICE", text).unwrap();
            m.author = Some("Alice Martin".into());
            m.captured = true;
            m
        };
        let (first, second) = (
            reply("1763864800.000100", "a"),
            reply("1763864810.000100", "b"),
        );
        for m in [&first, &second] {
            inc.timeline.push(crate::incident::TimelineEvent {
                at: m.at,
                kind: EventKind::SlackMessage,
                actor: "Alice Martin".into(),
                text: m.text.clone(),
            });
        }
        let mut deleted = second.clone();
        deleted.deleted_at = Some(at);
        let said = |messages: Vec<ThreadMessage>| {
            let c = Communication {
                slack_thread: None,
                slack_updates: Vec::new(),
                thread_messages: messages,
            };
            let got = communication(&inc, &c);
            let did: Vec<String> = got
                .participants
                .iter()
                .map(|p| format!("{}: {}", p.name, p.did))
                .collect();
            (did, got.thread_replies)
        };
        assert_eq!(
            said(vec![first.clone(), second]),
            (vec!["Alice Martin: 2 replies in the thread".to_string()], 2)
        );
        // A deletion whose own timeline row is not there (yet) still takes the reply off her
        // count: both counts read the same messages, so the draft never says 2 and 1.
        assert_eq!(
            said(vec![first, deleted.clone()]),
            (vec!["Alice Martin: 1 reply in the thread".to_string()], 1)
        );
        assert_eq!(said(vec![deleted]), (Vec::<String>::new(), 0));
    }

    #[test]
    fn the_draft_says_where_each_rule_was_found_and_why_one_is_unknown() {
        let (incident, evidence, _, _) = crate::postmortem::sample::sample_full();
        let mut alert = incident.alerts[0].clone();
        alert.generator_url.clear();
        let mut rule = evidence.rules[0].clone();
        let says = |a: &Occurrence, r: Option<&RuleInfo>| {
            alert_context(a, r, None, None, None).rule_source
        };
        assert!(says(&alert, Some(&rule)).starts_with("Rule from the Prometheus rules API"));
        rule.source = Some("vmalert_rules".into());
        assert!(says(&alert, Some(&rule)).starts_with("Rule from vmalert's rules API"));
        rule.source = Some("vmalert_alert".into());
        assert!(says(&alert, Some(&rule)).contains("`for` is unknown"));
        // Unknown rule: no generatorURL at all, or one that names no expression (vmalert's).
        assert!(says(&alert, None).ends_with("carries no generatorURL."));
        alert.generator_url =
            "http://vmalert:8880/vmalert/api/v1/alert?group_id=1&alert_id=2".into();
        let text = says(&alert, None);
        assert!(text.contains("names no expression"), "{text}");
        assert!(!text.contains("carries no generatorURL"), "{text}");
        // A rules API that answered but listed nothing says so, even when queries had data.
        let problem = "it lists no alerting rule (VictoriaMetrics without -vmalert.proxyURL?)";
        let text = alert_context(&alert, None, None, None, Some(problem)).rule_source;
        assert!(text.contains("-vmalert.proxyURL"), "{text}");
        assert!(!text.contains("Prometheus did not list the rule"), "{text}");
    }

    #[test]
    fn the_resolution_sentence_says_who_resolved_each_alert_and_never_contradicts_itself() {
        let (mut inc, _, _, at) = crate::postmortem::sample::sample_full();
        inc.resolved_by = None;
        let mut second = inc.alerts[0].clone();
        second.alertname = "SecondAlert".into();
        second.fingerprint = "second".into();
        inc.alerts.push(second);
        for a in &mut inc.alerts {
            a.ends_at = Some(at);
            a.resolved_by = Some("alertmanager".into());
        }
        let t = |x: Timestamp| rfc3339(x);
        let say = |inc: &Incident| {
            let alerts: Vec<&Occurrence> = inc.alerts.iter().collect();
            resolution_sentence(inc, &alerts, Some(at), &t).expect("a sentence")
        };
        let all_am = say(&inc);
        assert!(
            all_am.starts_with("Every alert resolved in Prometheus, none by hand"),
            "{all_am}"
        );
        assert!(!all_am.contains("incidentd marked"), "{all_am}");

        inc.alerts.last_mut().expect("alerts").resolved_by = Some("reconciler".into());
        let mixed = say(&inc);
        assert!(
            mixed.contains("by Alertmanager's resolve notifications"),
            "{mixed}"
        );
        assert!(mixed.contains("`SecondAlert` by incidentd"), "{mixed}");
        assert!(!mixed.contains("resolved in Prometheus"), "{mixed}");

        for a in &mut inc.alerts {
            a.resolved_by = Some("reconciler".into());
        }
        let all_reconciled = say(&inc);
        assert!(
            all_reconciled.starts_with("No resolve notification arrived"),
            "{all_reconciled}"
        );
        assert!(
            !all_reconciled.contains("resolved in Prometheus"),
            "{all_reconciled}"
        );
    }

    #[test]
    fn rule_durations_print_the_way_prometheus_writes_them() {
        assert_eq!(prom_duration(5), "5s");
        assert_eq!(prom_duration(300), "5m");
        assert_eq!(prom_duration(5400), "1h30m");
    }

    #[test]
    fn the_expression_comes_from_the_generator_url_when_rules_are_unknown() {
        let url = "http://127.0.0.1:19090/graph?g0.expr=db_connection_pool_active+%2F+db_connection_pool_max+%3E+0.95&g0.tab=1";
        assert_eq!(
            expr_from_generator_url(url).as_deref(),
            Some("db_connection_pool_active / db_connection_pool_max > 0.95")
        );
        assert_eq!(expr_from_generator_url("http://x/graph"), None);
    }

    #[test]
    fn graphs_plot_the_left_side_of_a_threshold() {
        assert_eq!(left_of_threshold("a / b > 0.95"), "a / b");
        assert_eq!(left_of_threshold("up == 0"), "up == 0");
        assert_eq!(left_of_threshold("x > y"), "x > y");
    }

    #[test]
    fn the_impact_start_is_credited_to_the_alert_whose_condition_became_true_first() {
        let (mut incident, mut evidence, related, at) = super::super::sample::sample_full();
        // Two alerts fire at the same moment; the less severe one's condition came first.
        let mut second = incident.alerts[0].clone();
        second.alertname = "EarlierCondition".into();
        second.fingerprint = "earlier".into();
        second.labels.insert("severity".into(), "info".into());
        incident.alerts.push(second.clone());
        let mut start = evidence.condition_starts[0].clone();
        start.fingerprint = second.fingerprint.clone();
        start.fired_at = second.starts_at;
        start.at = evidence.condition_starts[0].at - chrono::Duration::seconds(40);
        start.method = ImpactMethod::RuleReevaluation;
        evidence.condition_starts.push(start.clone());
        incident.impact_start = Some(start.at);
        incident.impact_start_method = ImpactMethod::RuleReevaluation;
        let input = RenderInput {
            incident: &incident,
            evidence: &evidence,
            related: &related,
            communication: &Default::default(),
            generated_at: at,
        };
        let ctx = build_context(&input, &super::super::sample::sample_settings());
        let row = ctx
            .timeline
            .iter()
            .find(|r| r.kind == "impact_start")
            .expect("an impact start row");
        assert!(row.event.contains("EarlierCondition"), "{}", row.event);
    }

    #[test]
    fn an_alerts_condition_start_comes_from_prometheus_when_known_else_from_for() {
        let (incident, mut evidence, related, at) = super::super::sample::sample_full();
        let alert = |ev: &Evidence| {
            let input = RenderInput {
                incident: &incident,
                evidence: ev,
                related: &related,
                communication: &Default::default(),
                generated_at: at,
            };
            let ctx = build_context(&input, &super::super::sample::sample_settings());
            let a = ctx
                .alerts
                .into_iter()
                .find(|a| a.alertname == "CheckoutErrors")
                .expect("alert");
            (a.condition_true_at, a.condition_true_method)
        };
        // The sample's re-evaluation: two minutes before firing, not `for` (120 s) by chance.
        evidence.condition_starts[0].at = "2026-03-02T09:57:31Z".parse().unwrap();
        assert_eq!(
            alert(&evidence),
            (
                Some("2026-03-02T09:57:31.000Z".into()),
                Some("found by re-evaluating the rule in Prometheus".into())
            )
        );
        evidence.condition_starts[0].at_or_before = true;
        assert!(alert(&evidence).1.unwrap().starts_with("or earlier"));
        // Another occurrence of the same alert (a later firing) does not borrow it.
        evidence.condition_starts[0].fired_at = "2026-03-02T10:45:00Z".parse().unwrap();
        assert_eq!(
            alert(&evidence),
            (
                Some("2026-03-02T09:58:00.000Z".into()),
                Some("firing time minus `for`".into())
            )
        );
        // A start that is itself only the arithmetic says nothing more.
        evidence.condition_starts[0].fired_at = "2026-03-02T10:00:00Z".parse().unwrap();
        evidence.condition_starts[0].method = ImpactMethod::StartsAtMinusFor;
        assert_eq!(
            alert(&evidence).1.as_deref(),
            Some("firing time minus `for`")
        );
    }

    #[test]
    fn an_incident_over_before_incidentd_heard_of_it_says_so_instead_of_a_negative_ttr() {
        let (mut incident, evidence, related, at) = super::super::sample::sample_full();
        // The first notification arrived a day after the resolve (incidentd was down).
        incident.detected_at = incident.resolved_at.unwrap() + Duration::hours(26);
        incident.acknowledged_at = None;
        let input = RenderInput {
            incident: &incident,
            evidence: &evidence,
            related: &related,
            communication: &Default::default(),
            generated_at: at,
        };
        let ctx = build_context(&input, &super::super::sample::sample_settings());
        assert_eq!(
            ctx.figures.resolved_before_detection.as_deref(),
            Some("1d 2h before detection")
        );
        let sentence = ctx.summary.resolution.unwrap();
        assert!(sentence.contains("1d 2h before detection"), "{sentence}");
        assert!(!sentence.contains("-1d"), "{sentence}");
    }
}
