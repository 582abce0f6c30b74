//! Evidence in the daemon: which changes call for a snapshot (a quick one shortly after an
//! incident opens, the full one a while after it resolves), the durable `evidence` job that
//! asks Prometheus (rules, true impact start, range queries), renders the charts and stores
//! the result, and the pure mapping from what Prometheus said to the post-mortem's
//! [`Evidence`].
//!
//! No SQL here: the job reads and writes through the store's operations. Prometheus being down or
//! slow only delays this job (retried with backoff); ingestion never waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::chart::{render_svg, ChartWindow};
use crate::config::{Config, PrometheusConfig};
use crate::evidence_rules::{EvidenceRules, Unit as QueryUnit};
use crate::followup::{Change, JobSpec};
use crate::incident::{Action, Effect, Incident, Occurrence, Status, Timestamp};
use crate::jobs::{Handler, JobFailure};
use crate::postmortem::{self, ActionSuggestion, Evidence, RuleInfo, Unit};
use crate::prometheus::snapshot::{plan_snapshot, run_snapshot, QuerySource};
use crate::prometheus::{
    empty_rules_problem, find_impact_start, lookup_rule, AlertInput, Client, ClientOptions,
    ImpactOptions, ImpactStart, IncidentWindow, RuleContext, RuleSource, SnapshotOptions,
    SnapshotPlan, SnapshotReport,
};
use crate::store::{Job, NewEvidence, Store, StoreError};
use crate::time::Clock;

/// Job kind of evidence snapshots. Coalesced: a pending snapshot absorbs later requests.
pub const JOB_KIND: &str = "evidence";

/// After this many failed attempts (about 40 minutes with the default backoff) the job gives
/// up and the incident keeps the reason evidence is missing.
pub const MAX_ATTEMPTS: u32 = 10;

/// Which snapshot a job was queued for. Informational: the job always looks at the incident
/// as it is when it runs (open: up to now; resolved: the whole window), because a pending job
/// absorbs later requests of either phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Shortly after the incident opened or reopened, or an alert joined.
    Quick,
    /// A while after the incident resolved, when the data after the resolution is in.
    Full,
    /// Every `prometheus.refresh_interval` while the incident stays open.
    Refresh,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Quick => "quick",
            Phase::Full => "full",
            Phase::Refresh => "refresh",
        }
    }
}

/// An evidence job's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceJob {
    pub phase: Phase,
}

/// When snapshots run after the changes that call for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub quick_delay: Duration,
    pub full_delay: Duration,
    /// While open, the evidence is gathered again this long after each snapshot.
    pub refresh_interval: Duration,
}

impl Schedule {
    pub fn from_config(p: &PrometheusConfig) -> Schedule {
        Schedule {
            quick_delay: p.quick_snapshot_delay,
            full_delay: p.snapshot_delay,
            refresh_interval: p.refresh_interval,
        }
    }
}

/// What an evidence job does with the incident as it finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Gather evidence now; then, while open, queue a refresh at `refresh_at`.
    Collect { refresh_at: Option<Timestamp> },
    /// Resolved, but the data after the resolve is not in yet: gather nothing now, queue
    /// the full snapshot for `at` (a refresh that was pending at the resolve ends here).
    WaitForFull { at: Timestamp },
}

/// Decides an evidence job's step: open incidents are collected and refreshed; resolved
/// ones only once `snapshot_delay` has passed since the resolve. Pure.
pub fn next_step(incident: &Incident, schedule: &Schedule, now: Timestamp) -> NextStep {
    match (incident.status, incident.resolved_at) {
        (Status::Resolved, Some(r)) => {
            let at = r + crate::time::chrono_duration(schedule.full_delay);
            if now < at {
                NextStep::WaitForFull { at }
            } else {
                NextStep::Collect { refresh_at: None }
            }
        }
        _ => NextStep::Collect {
            refresh_at: Some(now + crate::time::chrono_duration(schedule.refresh_interval)),
        },
    }
}

/// The evidence job a change calls for, if any.
pub fn job_for(change: &Change, schedule: &Schedule) -> Option<JobSpec> {
    let phase = match change {
        Change::Alert(o) => match o.effect {
            // A joining alert brings its own rule and queries (and may have fired earlier).
            Effect::Opened | Effect::Reopened | Effect::Joined => Phase::Quick,
            Effect::AlertResolved {
                incident_resolved: true,
            } => Phase::Full,
            Effect::AlertResolved {
                incident_resolved: false,
            }
            | Effect::Duplicate
            | Effect::Stale => return None,
        },
        Change::Person {
            action: Action::Resolve,
            ..
        } => Phase::Full,
        // Each part has other alerts, rules and a window of its own now.
        Change::Split { .. } => Phase::Quick,
        Change::Person { .. } | Change::Evidence { .. } | Change::Conversation { .. } => {
            return None
        }
    };
    let delay = match phase {
        Phase::Quick => schedule.quick_delay,
        Phase::Full => schedule.full_delay,
        Phase::Refresh => schedule.refresh_interval,
    };
    Some(JobSpec {
        kind: JOB_KIND,
        payload: serde_json::to_value(EvidenceJob { phase }).unwrap_or_default(),
        coalesce: true,
        delay: crate::time::chrono_duration(delay),
    })
}

/// The Prometheus client options a configuration asks for.
pub fn client_options(p: &PrometheusConfig) -> ClientOptions {
    ClientOptions {
        url: p.url.clone(),
        timeout: p.timeout,
        bearer_token: p.bearer_token.as_ref().map(|s| s.expose().to_string()),
        basic_auth: p
            .basic_auth
            .as_ref()
            .map(|b| (b.username.clone(), b.password.expose().to_string())),
        headers: p
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Why evidence could not be gathered this time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Prometheus is down, slow or overloaded: worth asking again later.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one run learnt from Prometheus about an incident.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The rule behind each distinct alert name, where one was found.
    pub rules: Vec<RuleContext>,
    /// The rules API failed for good (rules then come from generatorURLs).
    pub rules_error: Option<String>,
    /// The earliest impact start over the incident's alerts.
    pub impact: Option<ImpactStart>,
    /// Each distinct alert's impact start: (fingerprint, firing time, start).
    pub starts: Vec<(String, Timestamp, ImpactStart)>,
    pub window: IncidentWindow,
    /// The end of the data: the resolution plus the margin, or the collection time while
    /// open; never after the collection time.
    pub data_until: Timestamp,
    /// `prometheus.snapshot_delay`: when the evidence after a resolve is collected.
    pub full_delay: Duration,
    pub plan: SnapshotPlan,
    pub report: SnapshotReport,
}

/// Gathers evidence for incidents: the Prometheus client, the rules/ entries and the knobs.
pub struct Collector {
    client: Client,
    url: String,
    rules: EvidenceRules,
    impact: ImpactOptions,
    snapshot: SnapshotOptions,
    timezone: Tz,
    retry_backoff: Duration,
    schedule: Schedule,
    /// How far behind now the backend answers (`prometheus.query_lag`).
    query_lag: Duration,
}

impl Collector {
    /// `None` when no Prometheus is configured.
    pub fn from_config(
        config: &Config,
        rules: EvidenceRules,
    ) -> Result<Option<Collector>, crate::prometheus::Error> {
        let Some(p) = &config.prometheus else {
            return Ok(None);
        };
        Ok(Some(Collector {
            client: Client::new(&client_options(p))?,
            url: p.url.clone(),
            rules,
            impact: ImpactOptions::default(),
            snapshot: SnapshotOptions {
                baseline: p.snapshot_baseline,
                margin: p.snapshot_margin,
                ..SnapshotOptions::default()
            },
            timezone: config.postmortem.timezone,
            retry_backoff: p.retry_backoff,
            schedule: Schedule::from_config(p),
            query_lag: p.query_lag,
        }))
    }

    /// Asks Prometheus about `incident`. Failures worth retrying are an `Err`; others are
    /// recorded in the result (fallback impact start, per-query errors).
    pub async fn collect(
        &self,
        incident: &Incident,
        now: Timestamp,
    ) -> Result<Collected, EvidenceError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            EvidenceError::Unavailable(format!("{what}: {e}"))
        };
        let (rules_data, rules_error) = match self.client.rules().await {
            Ok(r) => {
                let problem = empty_rules_problem(&self.url, &r);
                (Some(r), problem)
            }
            Err(e) if e.is_retryable() => return Err(unavailable("the rules API", &e)),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut inputs = Vec::new();
        let mut starts = Vec::new();
        for alert in distinct_alerts(&incident.alerts) {
            let rule = lookup_rule(
                &self.client,
                rules_data.as_ref(),
                &alert.alertname,
                &alert.labels,
                &alert.generator_url,
            )
            .await;
            let start = match &rule {
                Some(r) => {
                    match find_impact_start(
                        &self.client,
                        r,
                        &alert.labels,
                        alert.starts_at,
                        &self.impact,
                    )
                    .await
                    {
                        Ok(s) => s,
                        Err(e) if e.is_retryable() => {
                            return Err(unavailable(
                                &format!("re-evaluating the rule of {}", alert.alertname),
                                &e,
                            ))
                        }
                        Err(e) => ImpactStart {
                            note: Some(e.to_string()),
                            ..ImpactStart::fallback(alert.starts_at, r.known_for())
                        },
                    }
                }
                None => ImpactStart::fallback(alert.starts_at, None),
            };
            starts.push((alert.fingerprint.clone(), alert.starts_at, start));
            inputs.push(AlertInput {
                alertname: alert.alertname.clone(),
                labels: alert.labels.clone(),
                rule,
            });
        }
        let impact = earliest(starts.iter().map(|(_, _, s)| s.clone()).collect());
        // The backend's data is final only up to `query_lag` ago (VictoriaMetrics'
        // -search.latencyOffset): the snapshot ends there, never at a "now" it cannot show yet.
        let now = now - crate::time::chrono_duration(self.query_lag);
        let window = incident_window(incident, impact.as_ref(), self.snapshot.margin, now);
        let plan = plan_snapshot(&inputs, &self.rules, &window);
        let report = run_snapshot(&self.client, &plan, &window, &self.snapshot).await;
        if let Some(e) = report.errors.iter().find(|e| e.retryable) {
            return Err(EvidenceError::Unavailable(format!(
                "query {}: {}",
                e.name, e.error
            )));
        }
        let mut rules: Vec<RuleContext> = Vec::new();
        for r in inputs.into_iter().filter_map(|a| a.rule) {
            if !rules.iter().any(|k| k.alertname == r.alertname) {
                rules.push(r);
            }
        }
        let margin = crate::time::chrono_duration(self.snapshot.margin);
        let data_until = (window.incident_end().min(now) + margin).min(now);
        Ok(Collected {
            rules,
            rules_error,
            impact,
            starts,
            window,
            data_until,
            full_delay: self.schedule.full_delay,
            plan,
            report,
        })
    }

    /// The job that gathers and stores an incident's evidence.
    pub fn handler(self: Arc<Self>, store: Store, clock: Clock, wake: Arc<Notify>) -> Handler {
        Arc::new(move |job| {
            let (me, store, clock, wake) =
                (self.clone(), store.clone(), clock.clone(), wake.clone());
            Box::pin(async move { me.run(job, &store, &clock, &wake).await })
        })
    }

    async fn run(
        &self,
        job: Job,
        store: &Store,
        clock: &Clock,
        wake: &Notify,
    ) -> Result<(), JobFailure> {
        let attempt = job.attempts + 1;
        let retry_in = crate::retry::Backoff {
            first: self.retry_backoff,
            max: crate::retry::EVIDENCE_MAX,
        }
        .after_chrono(attempt);
        let id = job
            .incident_id
            .clone()
            .ok_or_else(|| JobFailure::permanent("evidence job without an incident"))?;
        // Only for the log: the incident's state decides what is gathered.
        let phase = serde_json::from_value::<EvidenceJob>(job.payload.clone())
            .map_or(Phase::Quick, |j| j.phase);
        let loaded = store
            .incident_with_evidence(&id)
            .await
            .map_err(|e| JobFailure::retry(e.to_string(), retry_in))?;
        let Some((incident, stored)) = loaded else {
            return Ok(()); // gone meanwhile
        };
        let stored: Option<Evidence> = stored.and_then(|v| serde_json::from_value(v).ok());
        let now = clock();
        let refresh_at = match next_step(&incident, &self.schedule, now) {
            NextStep::WaitForFull { at } => {
                tracing::debug!(incident = %id, phase = phase.as_str(), full_at = %crate::time::rfc3339(at), "resolved: the full snapshot waits for the data after the resolve");
                queue_evidence(store, &id, Phase::Full, at, now)
                    .await
                    .map_err(|e| JobFailure::retry(e.to_string(), retry_in))?;
                return Ok(());
            }
            NextStep::Collect { refresh_at } => refresh_at,
        };
        match self.collect(&incident, now).await {
            Ok(collected) => {
                let evidence = to_evidence(&collected, &self.url, now);
                let charts = render_charts(&collected.report, &collected.window, self.timezone);
                tracing::info!(
                    incident = %id,
                    phase = phase.as_str(),
                    impact_start = ?collected.impact.as_ref().map(|i| i.at),
                    impact_method = ?collected.impact.as_ref().map(|i| i.method.as_str()),
                    snapshots = evidence.snapshots.len(),
                    failed_queries = collected.report.errors.len(),
                    missing = ?evidence.missing_reason,
                    "evidence gathered"
                );
                for e in &collected.report.errors {
                    tracing::warn!(incident = %id, query = %e.name, error = %e.error, "an evidence query failed");
                }
                // A later run that got nothing usable keeps what an earlier run gathered.
                let earlier_usable = stored.as_ref().is_some_and(|e| e.missing_reason.is_none());
                if evidence.missing_reason.is_some() && earlier_usable {
                    tracing::warn!(incident = %id, missing = ?evidence.missing_reason, "keeping the evidence gathered earlier");
                    if let Some(at) = refresh_at {
                        queue_evidence(store, &id, Phase::Refresh, at, now)
                            .await
                            .map_err(|e| JobFailure::retry(e.to_string(), retry_in))?;
                    }
                    return Ok(());
                }
                self.save(
                    store,
                    &id,
                    collected.impact,
                    &evidence,
                    charts,
                    now,
                    refresh_at,
                )
                .await
                .map_err(|e| JobFailure::retry(e.to_string(), retry_in))?;
                wake.notify_waiters();
                Ok(())
            }
            Err(EvidenceError::Store(e)) => Err(JobFailure::retry(e.to_string(), retry_in)),
            Err(EvidenceError::Unavailable(error)) => {
                let give_up = attempt >= MAX_ATTEMPTS;
                let reason = if give_up {
                    format!(
                        "Prometheus at {} could not be asked ({attempt} attempts): {error}",
                        self.url
                    )
                } else {
                    format!(
                        "Prometheus at {} could not be asked yet: {error}; incidentd keeps retrying",
                        self.url
                    )
                };
                // Keep evidence gathered earlier (e.g. the quick snapshot); otherwise say why
                // there is none, so the draft does not wait silently.
                let usable = stored.as_ref().is_some_and(|e| e.missing_reason.is_none());
                let same = stored
                    .as_ref()
                    .is_some_and(|e| e.missing_reason.as_deref() == Some(reason.as_str()));
                if !usable && !same {
                    let missing = Evidence {
                        missing_reason: Some(reason),
                        collected_at: Some(now),
                        ..Evidence::default()
                    };
                    match self
                        .save(store, &id, None, &missing, Vec::new(), now, None)
                        .await
                    {
                        Ok(()) => wake.notify_waiters(),
                        Err(e) => {
                            tracing::warn!(incident = %id, error = %e, "cannot record why evidence is missing")
                        }
                    }
                }
                if give_up {
                    // Still open: try again at the next refresh rather than never.
                    if let Some(at) = refresh_at {
                        if let Err(e) = queue_evidence(store, &id, Phase::Refresh, at, now).await {
                            tracing::warn!(incident = %id, error = %e, "cannot queue the next evidence refresh");
                        }
                    }
                    Err(JobFailure::permanent(format!(
                        "giving up after {attempt} attempts: {error}"
                    )))
                } else {
                    Err(JobFailure::retry(error, retry_in))
                }
            }
        }
    }

    /// Stores the impact start, the evidence and its charts, and queues a draft render, in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    async fn save(
        &self,
        store: &Store,
        id: &str,
        impact: Option<ImpactStart>,
        evidence: &Evidence,
        charts: Vec<(String, String)>,
        now: Timestamp,
        refresh_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let body =
            serde_json::to_value(evidence).map_err(|e| StoreError::encoding("evidence", e))?;
        store
            .save_evidence(NewEvidence {
                incident_id: id.to_string(),
                impact_start: impact.map(|i| (i.at, i.method)),
                body,
                charts,
                collected_at: now,
                // Still open: gather again later (coalesced: never more than one pending).
                next: refresh_at.map(|at| evidence_job(Phase::Refresh, at, now)),
            })
            .await
    }
}

/// Queues an evidence job of `phase` for `at` (domain time; the queue runs on the wall
/// clock, so the wait is carried over). Coalesced with a pending one, which keeps the
/// earlier time.
async fn queue_evidence(
    store: &Store,
    id: &str,
    phase: Phase,
    at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (spec, run_at) = evidence_job(phase, at, now);
    store.schedule(Some(id), spec, run_at).await.map(|_| ())
}

/// An evidence job of `phase` for `at` (domain time), and when it runs on the wall clock.
fn evidence_job(phase: Phase, at: Timestamp, now: Timestamp) -> (JobSpec, Timestamp) {
    let wait = (at - now).max(chrono::Duration::zero());
    let spec = JobSpec {
        kind: JOB_KIND,
        payload: serde_json::to_value(EvidenceJob { phase }).unwrap_or_default(),
        coalesce: true,
        delay: wait,
    };
    (spec, chrono::Utc::now() + wait)
}

/// One occurrence per alert (fingerprint): the earliest, whose impact start is the earliest.
fn distinct_alerts(alerts: &[Occurrence]) -> Vec<&Occurrence> {
    let mut first: HashMap<&str, &Occurrence> = HashMap::new();
    for a in alerts {
        first
            .entry(a.fingerprint.as_str())
            .and_modify(|o| {
                if a.starts_at < o.starts_at {
                    *o = a;
                }
            })
            .or_insert(a);
    }
    let mut out: Vec<&Occurrence> = first.into_values().collect();
    out.sort_by(|a, b| {
        (a.starts_at, &a.alertname, &a.fingerprint).cmp(&(
            b.starts_at,
            &b.alertname,
            &b.fingerprint,
        ))
    });
    out
}

/// The earliest of the alerts' impact starts (the incident's).
pub fn earliest(starts: Vec<ImpactStart>) -> Option<ImpactStart> {
    starts.into_iter().min_by_key(|s| s.at)
}

/// The window a snapshot covers: from the impact start (else the firing), to the resolution
/// plus `margin` when resolved, to `now` (the domain clock) while open. A resolved incident's
/// window comes from its own times, so it does not depend on when the job runs.
pub fn incident_window(
    incident: &Incident,
    impact: Option<&ImpactStart>,
    margin: Duration,
    now: Timestamp,
) -> IncidentWindow {
    let impact_start = impact.map_or(incident.fired_at, |i| i.at);
    let resolved_at = if incident.status == Status::Resolved {
        incident.resolved_at
    } else {
        None
    };
    let _ = margin; // applied by the snapshot, which never reaches past `now`
    IncidentWindow {
        impact_start,
        resolved_at,
        now,
    }
}

/// A chart's file name for a snapshot name: only `[A-Za-z0-9_.-]`, never `..`, `.svg` added.
pub fn chart_file_name(snapshot_name: &str) -> String {
    let mut safe: String = snapshot_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while safe.contains("..") {
        safe = safe.replace("..", "_");
    }
    // "x." would make "x..svg".
    let safe = safe.trim_matches('.');
    let safe = if safe.is_empty() { "chart" } else { safe };
    format!("{safe}.svg")
}

/// Whether a snapshot has anything to show.
fn has_data(s: &crate::prometheus::Snapshot) -> bool {
    s.series.iter().any(|x| !x.points.is_empty())
}

/// The post-mortem's unit for a query unit, and the divisor of its values (the post-mortem
/// has no "percent": 97 % is the ratio 0.97).
pub fn unit_of(unit: QueryUnit) -> (Unit, f64) {
    match unit {
        QueryUnit::Percent => (Unit::Ratio, 100.0),
        QueryUnit::Ratio => (Unit::Ratio, 1.0),
        QueryUnit::Seconds => (Unit::Seconds, 1.0),
        QueryUnit::Bytes => (Unit::Bytes, 1.0),
        QueryUnit::RequestsPerSecond => (Unit::PerSecond, 1.0),
        QueryUnit::Count => (Unit::Plain, 1.0),
    }
}

fn rule_info(r: &RuleContext) -> RuleInfo {
    RuleInfo {
        alertname: r.alertname.clone(),
        expr: r.expr.clone(),
        for_seconds: r.known_for().map(|d| d.as_secs()),
        labels: r.labels.clone(),
        annotations: r.annotations.clone(),
        group: r.group.clone(),
        source: match r.source {
            RuleSource::RulesApi => None,
            RuleSource::GeneratorUrl => Some("generator_url".into()),
            RuleSource::VmalertRules => Some("vmalert_rules".into()),
            RuleSource::VmalertAlert => Some("vmalert_alert".into()),
        },
    }
}

fn snapshot(s: &crate::prometheus::Snapshot) -> postmortem::Snapshot {
    let (unit, divisor) = unit_of(s.unit);
    let scaled = |v: Option<f64>| v.map(|v| v / divisor);
    let data = has_data(s);
    postmortem::Snapshot {
        // Series named by their labels: "Errors per second by status code (code="500")".
        name: if s.labels_text.is_empty() {
            s.title.clone()
        } else {
            format!("{} ({})", s.title, s.labels_text)
        },
        query: s.query.clone(),
        unit,
        baseline: scaled(s.baseline),
        peak: scaled(s.peak),
        lower_is_worse: s.direction == crate::evidence_rules::Direction::LowerIsWorse,
        at_resolution: scaled(s.at_resolution),
        latest: scaled(s.latest),
        latest_at: s.latest_at,
        no_data: !data,
        note: s.history_note.clone(),
        change: None,
        threshold: scaled(s.threshold),
        chart: data.then(|| chart_file_name(&s.name)),
        alertname: match &s.source {
            QuerySource::Alert { alertname } => Some(alertname.clone()),
            QuerySource::Rules { .. } => None,
        },
    }
}

/// Why the evidence says nothing, when it does not: every query failed, or none had data.
fn missing_reason(c: &Collected, url: &str) -> Option<String> {
    if c.report.snapshots.iter().any(has_data) || !c.report.impact.is_empty() {
        return None;
    }
    let mut problems: Vec<String> = Vec::new();
    if let Some(e) = &c.rules_error {
        problems.push(format!("the rules API: {e}"));
    }
    for e in &c.report.errors {
        let p = match &e.query {
            Some(_) => format!("query {}: {}", e.name, e.error),
            None => e.error.clone(),
        };
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        if c.report.snapshots.is_empty() {
            return None; // nothing was asked: the template says so
        }
        return Some(format!(
            "Prometheus at {url} has no data for the incident's queries between {} and {}",
            crate::time::rfc3339(c.window.impact_start),
            crate::time::rfc3339(c.window.incident_end())
        ));
    }
    let shown = problems.len().min(3);
    let more = problems.len() - shown;
    let mut text = format!(
        "Prometheus at {url} gave no usable answer: {}",
        problems[..shown].join("; ")
    );
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    Some(text)
}

/// What the post-mortem is told: the rules (from the rules API only: a generatorURL
/// expression is the renderer's own fallback), the snapshots with data (each with its chart),
/// the impact figures with a value, the first SLO, the suggested action items, and why
/// evidence is missing when nothing usable came back. Pure.
pub fn to_evidence(c: &Collected, url: &str, collected_at: Timestamp) -> Evidence {
    Evidence {
        rules: c
            .rules
            .iter()
            .filter(|r| r.source != RuleSource::GeneratorUrl)
            .map(rule_info)
            .collect(),
        // Queries without data are listed as such (`no_data`), not dropped.
        snapshots: c.report.snapshots.iter().map(snapshot).collect(),
        impact: c
            .report
            .impact
            .iter()
            .filter_map(|f| {
                Some(postmortem::ImpactFigure {
                    name: f.title.clone(),
                    value: f.formatted.clone()?,
                    query: f.query.clone(),
                })
            })
            .collect(),
        slo: c.plan.slos.first().map(|(_, s)| postmortem::Slo {
            target_percent: s.target,
            window_seconds: s.window.as_secs(),
        }),
        action_items: applicable_actions(c),
        missing_reason: missing_reason(c, url),
        rules_problem: c.rules_error.clone(),
        collected_at: Some(collected_at),
        data_until: Some(c.data_until.min(collected_at)),
        resolved_at: c
            .window
            .resolved_at
            .filter(|r| *r <= c.data_until.min(collected_at)),
        full_delay_seconds: Some(c.full_delay.as_secs()),
        condition_starts: c
            .starts
            .iter()
            .map(|(fingerprint, fired_at, s)| postmortem::ConditionStart {
                fingerprint: fingerprint.clone(),
                fired_at: *fired_at,
                at: s.at,
                method: s.method,
                at_or_before: s.at_or_before,
            })
            .collect(),
    }
}

/// Whether a snapshot's worst value is on the bad side of its threshold.
pub fn crossed(s: &crate::prometheus::Snapshot) -> bool {
    match (s.peak, s.threshold) {
        (Some(p), Some(t)) => match s.direction {
            crate::evidence_rules::Direction::HigherIsWorse => p > t,
            crate::evidence_rules::Direction::LowerIsWorse => p < t,
        },
        _ => false,
    }
}

/// The rules/ action items that apply to this incident: those whose `crossed:` query did
/// cross its threshold (not one without data) and whose `longer_than:` the incident lasted,
/// deduplicated, highest priority first (stable). Pure.
pub fn applicable_actions(c: &Collected) -> Vec<ActionSuggestion> {
    let duration = c.window.duration();
    let snapshot_named = |name: &str| {
        // A query may have been merged into another (same measure, or the same points).
        let name = c
            .plan
            .aliases
            .iter()
            .chain(&c.report.aliases)
            .find(|(from, _)| from == name)
            .map_or(name, |(_, to)| to.as_str());
        c.report.snapshots.iter().find(|s| s.name == name)
    };
    let mut out: Vec<(crate::evidence_rules::Priority, ActionSuggestion)> = c
        .plan
        .actions
        .iter()
        .filter(|a| {
            a.spec
                .crossed
                .as_deref()
                .is_none_or(|q| snapshot_named(q).is_some_and(crossed))
        })
        .filter(|a| a.spec.longer_than.is_none_or(|d| duration >= d))
        .map(|a| {
            (
                a.spec.priority,
                ActionSuggestion {
                    action: a.spec.action.clone(),
                    priority: Some(a.spec.priority.as_str().to_string()),
                    alertname: Some(a.alertname.clone()),
                },
            )
        })
        .collect();
    out.sort_by_key(|(p, _)| *p);
    out.into_iter().map(|(_, a)| a).collect()
}

/// An SVG chart per snapshot with data, named as [`to_evidence`] names them. Pure.
pub fn render_charts(
    report: &SnapshotReport,
    window: &IncidentWindow,
    tz: Tz,
) -> Vec<(String, String)> {
    let cw = ChartWindow {
        impact_start: window.impact_start,
        resolved_at: window.resolved_at,
    };
    report
        .snapshots
        .iter()
        .filter(|s| has_data(s))
        .map(|s| (chart_file_name(&s.name), render_svg(s, &cw, tz)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence_rules::Direction;
    use crate::incident::{
        AlertStatus, ImpactMethod, LabelSet, NotificationCounts, Outcome, Status,
    };
    use crate::prometheus::snapshot::{ImpactFigure, SeriesSnapshot, SeriesStats, SnapshotError};
    use crate::prometheus::{Point, Snapshot};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn outcome(effect: Effect) -> Outcome {
        Outcome {
            incident_id: "INC-2026-0001".into(),
            fingerprint: "f".into(),
            effect,
            severity_changed: None,
            bridged: false,
            split: None,
        }
    }

    const SCHEDULE: Schedule = Schedule {
        quick_delay: Duration::from_secs(2),
        full_delay: Duration::from_secs(300),
        refresh_interval: Duration::from_secs(60),
    };

    fn phase_of(spec: &JobSpec) -> Phase {
        serde_json::from_value::<EvidenceJob>(spec.payload.clone())
            .expect("payload")
            .phase
    }

    #[test]
    fn opening_reopening_and_joining_queue_a_coalesced_quick_snapshot_after_the_short_delay() {
        for effect in [Effect::Opened, Effect::Reopened, Effect::Joined] {
            let o = outcome(effect);
            let spec = job_for(&Change::Alert(&o), &SCHEDULE).expect("a job");
            assert_eq!((spec.kind, phase_of(&spec)), (JOB_KIND, Phase::Quick));
            assert!(spec.coalesce);
            assert_eq!(spec.delay, chrono::Duration::seconds(2));
        }
    }

    #[test]
    fn each_part_of_a_split_incident_gets_a_quick_snapshot_of_its_own() {
        let spec = job_for(
            &Change::Split {
                incident_id: "INC-2026-0002",
            },
            &SCHEDULE,
        )
        .expect("a job");
        assert_eq!((spec.kind, phase_of(&spec)), (JOB_KIND, Phase::Quick));
        assert!(spec.coalesce);
    }

    #[test]
    fn resolving_the_incident_by_alerts_or_by_hand_queues_the_full_snapshot_after_the_delay() {
        let o = outcome(Effect::AlertResolved {
            incident_resolved: true,
        });
        let by_alerts = job_for(&Change::Alert(&o), &SCHEDULE).expect("a job");
        let by_hand = job_for(
            &Change::Person {
                incident_id: "INC-2026-0001",
                by: "ana",
                action: &Action::Resolve,
            },
            &SCHEDULE,
        )
        .expect("a job");
        for spec in [by_alerts, by_hand] {
            assert_eq!(phase_of(&spec), Phase::Full);
            assert_eq!(spec.delay, chrono::Duration::minutes(5));
        }
    }

    #[test]
    fn changes_that_bring_nothing_new_queue_no_snapshot() {
        for effect in [
            Effect::AlertResolved {
                incident_resolved: false,
            },
            Effect::Duplicate,
            Effect::Stale,
        ] {
            let o = outcome(effect);
            assert_eq!(job_for(&Change::Alert(&o), &SCHEDULE), None);
        }
        for action in [Action::Acknowledge, Action::Note("x".into())] {
            let change = Change::Person {
                incident_id: "INC-2026-0001",
                by: "ana",
                action: &action,
            };
            assert_eq!(job_for(&change, &SCHEDULE), None);
        }
    }

    #[test]
    fn client_options_carry_url_timeout_credentials_and_headers() {
        let mut p = PrometheusConfig::new("http://prometheus:9090/prefix/");
        p.timeout = Duration::from_secs(3);
        p.basic_auth = Some(crate::config::BasicAuth {
            username: "incidentd".into(),
            password: crate::config::Secret::new("pw"),
        });
        p.headers.insert("X-Scope-OrgID".into(), "team-a".into());
        let o = client_options(&p);
        assert_eq!(o.url, "http://prometheus:9090/prefix/");
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.bearer_token, None);
        assert_eq!(o.basic_auth, Some(("incidentd".into(), "pw".into())));
        assert_eq!(
            o.headers,
            [("X-Scope-OrgID".to_string(), "team-a".to_string())]
        );
    }

    #[test]
    fn chart_file_names_keep_only_safe_characters_and_never_climb() {
        assert_eq!(chart_file_name("alert-PoolHigh"), "alert-PoolHigh.svg");
        assert_eq!(
            chart_file_name("pool_utilisation-2"),
            "pool_utilisation-2.svg"
        );
        assert_eq!(chart_file_name("a b/c"), "a_b_c.svg");
        assert_eq!(chart_file_name("../../etc/passwd"), "____etc_passwd.svg");
        assert_eq!(chart_file_name("..."), "_.svg");
        assert_eq!(chart_file_name("x."), "x.svg");
        assert_eq!(chart_file_name(""), "chart.svg");
        for n in [
            "../x", "....", ".hidden", "x/../y", "é", "a.", "a...", ".", "-",
        ] {
            let f = chart_file_name(n);
            assert!(!f.contains(".."), "{n} → {f}");
            let stem = f.strip_suffix(".svg").expect("suffix");
            assert!(
                !stem.contains("..") && !stem.starts_with('.') && !stem.is_empty(),
                "{n} → {f}"
            );
            assert!(stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
        }
    }

    #[test]
    fn percent_becomes_a_ratio_and_rates_and_counts_keep_their_values() {
        assert_eq!(unit_of(QueryUnit::Percent), (Unit::Ratio, 100.0));
        assert_eq!(unit_of(QueryUnit::Ratio), (Unit::Ratio, 1.0));
        assert_eq!(
            unit_of(QueryUnit::RequestsPerSecond),
            (Unit::PerSecond, 1.0)
        );
        assert_eq!(unit_of(QueryUnit::Count), (Unit::Plain, 1.0));
        assert_eq!(unit_of(QueryUnit::Seconds), (Unit::Seconds, 1.0));
        assert_eq!(unit_of(QueryUnit::Bytes), (Unit::Bytes, 1.0));
    }

    fn incident(status: Status, resolved_at: Option<&str>) -> Incident {
        Incident {
            id: "INC-2026-0001".into(),
            key: "service=\"payment-service\"".into(),
            title: "t".into(),
            status,
            severity: Some("critical".into()),
            service: Some("payment-service".into()),
            impact_start: Some(t("2026-11-23T02:26:28.738Z")),
            impact_start_method: ImpactMethod::StartsAt,
            fired_at: t("2026-11-23T02:26:28.738Z"),
            detected_at: t("2026-11-23T02:26:29.743Z"),
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: resolved_at.map(t),
            resolved_by: None,
            reopen_count: 0,
            notifications: NotificationCounts::default(),
            version: 1,
            alerts: Vec::new(),
            timeline: Vec::new(),
        }
    }

    fn start(at: &str, method: ImpactMethod) -> ImpactStart {
        ImpactStart {
            at: t(at),
            method,
            step_seconds: None,
            at_or_before: false,
            note: None,
        }
    }

    #[test]
    fn a_resolved_incident_is_snapshotted_from_its_own_times_but_never_past_the_collection() {
        let i = incident(Status::Resolved, Some("2026-11-23T02:27:02.738Z"));
        let impact = start("2026-11-23T02:26:23.381Z", ImpactMethod::RuleReevaluation);
        for now in [
            "2026-11-23T02:27:04Z",
            "2030-01-01T00:00:00Z",
            "2020-01-01T00:00:00Z",
        ] {
            let w = incident_window(&i, Some(&impact), Duration::from_secs(300), t(now));
            assert_eq!(w.impact_start, t("2026-11-23T02:26:23.381Z"));
            assert_eq!(w.resolved_at, Some(t("2026-11-23T02:27:02.738Z")));
            // The snapshot's range ends at min(resolve + margin, now): never in the future.
            assert_eq!(w.now, t(now));
        }
    }

    #[test]
    fn open_incidents_are_collected_and_refreshed_resolved_ones_wait_for_the_data_after() {
        let open = incident(Status::Open, None);
        let now = t("2026-11-23T02:27:00Z");
        assert_eq!(
            next_step(&open, &SCHEDULE, now),
            NextStep::Collect {
                refresh_at: Some(t("2026-11-23T02:28:00Z"))
            }
        );
        let resolved = incident(Status::Resolved, Some("2026-11-23T02:27:02Z"));
        // A refresh that was pending at the resolve only queues the full snapshot.
        assert_eq!(
            next_step(&resolved, &SCHEDULE, t("2026-11-23T02:28:00Z")),
            NextStep::WaitForFull {
                at: t("2026-11-23T02:32:02Z")
            }
        );
        // The full snapshot: collected once, no refresh after it.
        assert_eq!(
            next_step(&resolved, &SCHEDULE, t("2026-11-23T02:32:02Z")),
            NextStep::Collect { refresh_at: None }
        );
    }

    #[test]
    fn an_open_incident_is_snapshotted_up_to_now_and_from_its_firing_without_an_impact_start() {
        // Reopened incidents keep their old resolved_at; only the status counts.
        let i = incident(Status::Open, Some("2026-11-23T02:27:02.738Z"));
        let w = incident_window(
            &i,
            None,
            Duration::from_secs(300),
            t("2026-11-23T02:30:00Z"),
        );
        assert_eq!(w.impact_start, i.fired_at);
        assert_eq!(w.resolved_at, None);
        assert_eq!(w.now, t("2026-11-23T02:30:00Z"));
    }

    #[test]
    fn the_incident_impact_start_is_the_earliest_over_its_alerts_with_that_alerts_method() {
        let found = earliest(vec![
            start("2026-11-23T02:26:25.7Z", ImpactMethod::StartsAtMinusFor),
            start("2026-11-23T02:26:23.381Z", ImpactMethod::RuleReevaluation),
            start("2026-11-23T02:26:28.738Z", ImpactMethod::StartsAt),
        ])
        .expect("some");
        assert_eq!(found.at, t("2026-11-23T02:26:23.381Z"));
        assert_eq!(found.method, ImpactMethod::RuleReevaluation);
        assert_eq!(earliest(Vec::new()), None);
    }

    #[test]
    fn one_search_per_alert_from_its_earliest_occurrence() {
        let occ = |fp: &str, at: &str| Occurrence {
            fingerprint: fp.into(),
            starts_at: t(at),
            ends_at: None,
            status: AlertStatus::Firing,
            alertname: format!("A{fp}"),
            labels: LabelSet::new(),
            annotations: LabelSet::new(),
            generator_url: String::new(),
            group_key: String::new(),
            first_seen_at: t(at),
            last_seen_at: t(at),
            resolved_by: None,
        };
        let alerts = vec![
            occ("b", "2026-11-23T02:40:00Z"),
            occ("a", "2026-11-23T02:30:00Z"),
            occ("b", "2026-11-23T02:20:00Z"),
        ];
        let distinct: Vec<(&str, Timestamp)> = distinct_alerts(&alerts)
            .iter()
            .map(|o| (o.fingerprint.as_str(), o.starts_at))
            .collect();
        assert_eq!(
            distinct,
            [
                ("b", t("2026-11-23T02:20:00Z")),
                ("a", t("2026-11-23T02:30:00Z"))
            ]
        );
    }

    fn rule(alertname: &str, source: RuleSource) -> RuleContext {
        RuleContext {
            alertname: alertname.into(),
            expr: "db_connection_pool_active / db_connection_pool_max > 0.95".into(),
            for_: Duration::from_secs(5),
            keep_firing_for: Duration::ZERO,
            group: Some("payment-service.rules".into()),
            file: None,
            group_interval: Some(Duration::from_secs(1)),
            labels: LabelSet::from([("severity".into(), "critical".into())]),
            annotations: LabelSet::new(),
            source,
        }
    }

    fn pct_snapshot(name: &str, points: &[(&str, f64)]) -> Snapshot {
        let points: Vec<Point> = points
            .iter()
            .map(|(at, value)| Point {
                at: t(at),
                value: *value,
            })
            .collect();
        Snapshot {
            name: name.into(),
            title: "Pool used".into(),
            query: "pool_used_percent".into(),
            unit: QueryUnit::Percent,
            direction: Direction::HigherIsWorse,
            threshold: Some(95.0),
            source: QuerySource::Alert {
                alertname: "PoolHigh".into(),
            },
            baseline: Some(19.0),
            peak: Some(100.0),
            peak_at: None,
            at_resolution: Some(26.0),
            latest: Some(25.0),
            latest_at: None,
            summary: String::new(),
            start: t("2026-11-23T02:25:00Z"),
            end: t("2026-11-23T02:28:00Z"),
            step_seconds: 1.0,
            labels_text: String::new(),
            history_note: None,
            history: None,
            series: if points.is_empty() {
                Vec::new()
            } else {
                vec![SeriesSnapshot {
                    labels: LabelSet::new(),
                    stats: SeriesStats {
                        baseline: Some(19.0),
                        peak: Some(100.0),
                        peak_at: None,
                        at_resolution: Some(26.0),
                        latest: Some(25.0),
                        latest_at: None,
                        short_history: false,
                    },
                    points,
                }]
            },
            series_omitted: 0,
        }
    }

    fn collected(report: SnapshotReport, rules: Vec<RuleContext>) -> Collected {
        Collected {
            rules,
            rules_error: None,
            impact: Some(start(
                "2026-11-23T02:26:23Z",
                ImpactMethod::RuleReevaluation,
            )),
            starts: vec![(
                "6a9c1a3e7b1c0f2d".into(),
                t("2026-11-23T02:26:44Z"),
                start("2026-11-23T02:26:23Z", ImpactMethod::RuleReevaluation),
            )],
            window: IncidentWindow {
                impact_start: t("2026-11-23T02:26:23Z"),
                resolved_at: Some(t("2026-11-23T02:27:02Z")),
                now: t("2026-11-23T02:32:02Z"),
            },
            data_until: t("2026-11-23T02:32:02Z"),
            full_delay: Duration::from_secs(300),
            plan: SnapshotPlan {
                slos: vec![(
                    "http".into(),
                    crate::evidence_rules::Slo {
                        target: 99.9,
                        window: Duration::from_secs(30 * 86400),
                    },
                )],
                actions: vec![crate::prometheus::snapshot::PlannedAction {
                    spec: crate::evidence_rules::ActionSpec {
                        action: "Set a statement timeout".into(),
                        priority: crate::evidence_rules::Priority::High,
                        crossed: None,
                        longer_than: None,
                    },
                    alertname: "PoolHigh".into(),
                }],
                ..SnapshotPlan::default()
            },
            report,
        }
    }

    const URL: &str = "http://prometheus:9090";

    #[test]
    fn action_items_apply_only_where_their_query_crossed_and_the_incident_lasted_long_enough() {
        use crate::evidence_rules::{ActionSpec, Priority};
        use crate::prometheus::snapshot::PlannedAction;
        let action = |text: &str, priority, crossed: Option<&str>, longer_than| PlannedAction {
            spec: ActionSpec {
                action: text.into(),
                priority,
                crossed: crossed.map(str::to_string),
                longer_than,
            },
            alertname: "PoolHigh".into(),
        };
        // The pool crossed 95 % (peak 100); "quiet" never crossed its threshold.
        let mut quiet = pct_snapshot("quiet", &[("2026-11-23T02:26:30Z", 10.0)]);
        quiet.peak = Some(10.0);
        let report = SnapshotReport {
            snapshots: vec![
                pct_snapshot("alert-PoolHigh", &[("2026-11-23T02:26:30Z", 100.0)]),
                quiet,
            ],
            ..SnapshotReport::default()
        };
        let mut c = collected(report, Vec::new());
        c.report.aliases = vec![("pool_utilisation".into(), "alert-PoolHigh".into())];
        c.plan.actions = vec![
            action("low always", Priority::Low, None, None),
            action(
                "pool crossed",
                Priority::High,
                Some("pool_utilisation"),
                None,
            ),
            action("quiet crossed", Priority::High, Some("quiet"), None),
            action("no data", Priority::High, Some("missing"), None),
            action(
                "long incident",
                Priority::Medium,
                None,
                Some(Duration::from_secs(600)),
            ),
            action(
                "short enough",
                Priority::Medium,
                None,
                Some(Duration::from_secs(30)),
            ),
        ];
        let got: Vec<(String, Option<String>)> = applicable_actions(&c)
            .into_iter()
            .map(|a| (a.action, a.priority))
            .collect();
        // The window lasts 39 s: highest priority first.
        assert_eq!(
            got,
            [
                ("pool crossed".to_string(), Some("high".to_string())),
                ("short enough".to_string(), Some("medium".to_string())),
                ("low always".to_string(), Some("low".to_string())),
            ]
        );
    }

    #[test]
    fn snapshots_with_data_become_post_mortem_rows_with_their_chart_and_units_as_ratios() {
        let with_data = pct_snapshot("alert-PoolHigh", &[("2026-11-23T02:26:30Z", 100.0)]);
        let empty = pct_snapshot("pool_active", &[]);
        let report = SnapshotReport {
            snapshots: vec![with_data, empty],
            impact: vec![
                ImpactFigure {
                    name: "failed_requests".into(),
                    title: "Failed requests (5xx)".into(),
                    query: "sum(increase(x[39s]))".into(),
                    unit: QueryUnit::Count,
                    value: Some(310.0),
                    formatted: Some("310".into()),
                },
                ImpactFigure {
                    name: "none".into(),
                    title: "Nothing".into(),
                    query: "absent".into(),
                    unit: QueryUnit::Count,
                    value: None,
                    formatted: None,
                },
            ],
            errors: Vec::new(),
            aliases: Vec::new(),
        };
        let c = collected(
            report,
            vec![
                rule("PoolHigh", RuleSource::RulesApi),
                rule("FromUrl", RuleSource::GeneratorUrl),
            ],
        );
        let ev = to_evidence(&c, URL, t("2026-11-23T02:32:10Z"));
        assert_eq!(ev.missing_reason, None);
        assert_eq!(ev.collected_at, Some(t("2026-11-23T02:32:10Z")));
        assert_eq!(
            ev.snapshots.len(),
            2,
            "the empty query is listed, as no data"
        );
        assert!(ev.snapshots[1].no_data && ev.snapshots[1].chart.is_none());
        assert!(!ev.snapshots[0].no_data);
        // The data reaches past the resolve: its values at resolution are true.
        assert_eq!(ev.resolved_at, Some(t("2026-11-23T02:27:02Z")));
        assert_eq!(ev.data_until, Some(t("2026-11-23T02:32:02Z")));
        assert_eq!(ev.full_delay_seconds, Some(300));
        let s = &ev.snapshots[0];
        assert_eq!(s.name, "Pool used");
        assert_eq!(s.unit, Unit::Ratio);
        assert_eq!(
            (s.baseline, s.peak, s.at_resolution),
            (Some(0.19), Some(1.0), Some(0.26))
        );
        assert_eq!(s.threshold, Some(0.95));
        assert_eq!(s.chart.as_deref(), Some("alert-PoolHigh.svg"));
        assert_eq!(s.alertname.as_deref(), Some("PoolHigh"));
        // Only the rules API's rules: the renderer has its own generatorURL fallback.
        assert_eq!(ev.rules.len(), 1);
        assert_eq!(ev.rules[0].for_seconds, Some(5));
        assert_eq!(ev.rules[0].group.as_deref(), Some("payment-service.rules"));
        assert_eq!(ev.impact.len(), 1);
        assert_eq!(ev.impact[0].value, "310");
        assert_eq!(
            ev.slo,
            Some(postmortem::Slo {
                target_percent: 99.9,
                window_seconds: 30 * 86400
            })
        );
        assert_eq!(ev.action_items[0].action, "Set a statement timeout");

        let charts = render_charts(&c.report, &c.window, chrono_tz::Europe::Berlin);
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].0, "alert-PoolHigh.svg");
        assert!(charts[0].1.starts_with("<svg") || charts[0].1.starts_with("<?xml"));
        // The time axis is in the configured zone (02:26 UTC is 03:26 in Berlin).
        assert!(charts[0].1.contains("03:2"), "{}", charts[0].1);
    }

    #[test]
    fn when_every_query_failed_the_evidence_says_which_prometheus_and_what_it_answered() {
        let report = SnapshotReport {
            snapshots: Vec::new(),
            impact: Vec::new(),
            errors: vec![
                SnapshotError {
                    name: "alert-PoolHigh".into(),
                    query: Some("pool".into()),
                    error: "Prometheus query_range answered HTTP 400, bad_data: parse error".into(),
                    retryable: false,
                },
                SnapshotError {
                    name: "alert-Other".into(),
                    query: None,
                    error: "the rule of alert Other is unknown".into(),
                    retryable: false,
                },
            ],
            aliases: Vec::new(),
        };
        let mut c = collected(report, Vec::new());
        c.rules_error = Some("Prometheus rules answered HTTP 404: not found".into());
        let ev = to_evidence(&c, URL, t("2026-11-23T02:32:10Z"));
        assert_eq!(
            ev.missing_reason.as_deref(),
            Some(
                "Prometheus at http://prometheus:9090 gave no usable answer: the rules API: \
                 Prometheus rules answered HTTP 404: not found; query alert-PoolHigh: Prometheus \
                 query_range answered HTTP 400, bad_data: parse error; the rule of alert Other \
                 is unknown"
            )
        );
    }

    #[test]
    fn queries_without_data_are_said_to_have_none_and_no_queries_at_all_says_nothing() {
        let report = SnapshotReport {
            snapshots: vec![pct_snapshot("alert-PoolHigh", &[])],
            ..SnapshotReport::default()
        };
        let ev = to_evidence(
            &collected(report, Vec::new()),
            URL,
            t("2026-11-23T02:32:10Z"),
        );
        assert_eq!(
            ev.missing_reason.as_deref(),
            Some(
                "Prometheus at http://prometheus:9090 has no data for the incident's queries \
                 between 2026-11-23T02:26:23Z and 2026-11-23T02:27:02Z"
            )
        );
        let ev = to_evidence(
            &collected(SnapshotReport::default(), Vec::new()),
            URL,
            t("2026-11-23T02:32:10Z"),
        );
        assert_eq!(ev.missing_reason, None);
    }
}
