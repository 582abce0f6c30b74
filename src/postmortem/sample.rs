//! Built-in sample incidents that `check-config` renders a template against: a full one
//! where every optional part is present and every flag is true, and a minimal one where
//! each is absent, so strict mode reaches both branches of every conditional.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::context::{labels, RelatedIncident, RenderSettings};
use super::evidence::{
    ActionSuggestion, ConditionStart, Evidence, ImpactFigure, RuleInfo, Slo, Snapshot,
};
use super::helpers::Unit;
use crate::incident::{
    AlertStatus, EventKind, ImpactMethod, Incident, NotificationCounts, Occurrence, Status,
    TimelineEvent, ACTOR_ALERTMANAGER, ACTOR_INCIDENTD, ACTOR_PROMETHEUS,
};

/// A sample render's inputs: incident, evidence, related incidents, render time.
pub type Sample = (Incident, Evidence, Vec<RelatedIncident>, DateTime<Utc>);

fn at(s: &str) -> DateTime<Utc> {
    // Constant, known-good literals: a failure here is a bug in this file.
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

pub(crate) fn sample_settings() -> RenderSettings {
    RenderSettings {
        timezone: Tz::UTC,
        second_timezone: Some(Tz::Asia__Seoul),
        external_url: Some("http://incidentd.example.com:9097/".into()),
        prometheus_url: Some("http://prometheus.example.com:9090".into()),
        alertmanager_url: Some("http://alertmanager.example.com:9093".into()),
        severity_map: [("critical", "SEV-1 (P1)"), ("warning", "SEV-3 (P3)")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A Slack thread with the messages incidentd delivered, for the full sample.
pub(crate) fn sample_communication() -> super::Communication {
    super::Communication {
        slack_thread: Some(("C0INCIDENTS".into(), "1763864789.000100".into())),
        slack_updates: vec![
            (
                at("2026-03-02T10:00:32Z"),
                "Incident posted (root message of the thread)".into(),
            ),
            (at("2026-03-02T11:10:02Z"), "Resolve summary".into()),
        ],
        thread_messages: Vec::new(),
    }
}

fn occurrence(name: &str, severity: &str, starts: &str, ends: Option<&str>) -> Occurrence {
    let starts_at = at(starts);
    Occurrence {
        fingerprint: format!("{:016x}", name.len()),
        starts_at,
        ends_at: ends.map(at),
        status: if ends.is_some() {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        alertname: name.into(),
        labels: labels(&[
            ("alertname", name),
            ("service", "checkout"),
            ("severity", severity),
        ]),
        annotations: labels(&[
            ("summary", "Checkout is failing"),
            ("description", "12% of checkout requests fail."),
            ("runbook_url", "https://runbooks.example.com/checkout"),
            ("dashboard_url", "https://grafana.example.com/d/checkout"),
        ]),
        generator_url: "http://prometheus.example.com:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
            .into(),
        group_key: "{}:{service=\"checkout\"}".into(),
        first_seen_at: starts_at + Duration::seconds(31),
        last_seen_at: starts_at + Duration::seconds(600),
        resolved_by: ends.map(|_| "alertmanager".to_string()),
    }
}

fn event(at_: &str, kind: EventKind, actor: &str, text: &str) -> TimelineEvent {
    TimelineEvent {
        at: at(at_),
        kind,
        actor: actor.into(),
        text: text.into(),
    }
}

/// Every part present: acknowledged, noted, reopened, resolved by hand, with evidence,
/// charts, impact figures, an SLO and a related incident.
pub fn sample_full() -> Sample {
    let incident = Incident {
        id: "INC-2026-0042".into(),
        key: "service=\"checkout\"".into(),
        title: "Checkout is failing".into(),
        status: Status::Resolved,
        severity: Some("critical".into()),
        service: Some("checkout".into()),
        impact_start: Some(at("2026-03-02T09:58:00Z")),
        impact_start_method: ImpactMethod::RuleReevaluation,
        fired_at: at("2026-03-02T10:00:00Z"),
        detected_at: at("2026-03-02T10:00:31Z"),
        acknowledged_at: Some(at("2026-03-02T10:22:00Z")),
        acknowledged_by: Some("alice".into()),
        resolved_at: Some(at("2026-03-02T11:10:00Z")),
        resolved_by: Some("bob".into()),
        reopen_count: 1,
        notifications: NotificationCounts {
            received: 12,
            duplicate: 8,
            stale: 1,
        },
        version: 9,
        alerts: vec![
            occurrence(
                "CheckoutErrors",
                "critical",
                "2026-03-02T10:00:00Z",
                Some("2026-03-02T11:05:00Z"),
            ),
            occurrence(
                "CheckoutLatency",
                "warning",
                "2026-03-02T10:01:00Z",
                Some("2026-03-02T11:10:00Z"),
            ),
        ],
        timeline: vec![
            event(
                "2026-03-02T10:00:00Z",
                EventKind::AlertFiring,
                ACTOR_PROMETHEUS,
                "CheckoutErrors firing (critical)",
            ),
            event(
                "2026-03-02T10:00:31Z",
                EventKind::Detected,
                ACTOR_INCIDENTD,
                "Incident opened",
            ),
            event(
                "2026-03-02T10:22:00Z",
                EventKind::Acknowledged,
                "alice",
                "Acknowledged",
            ),
            event(
                "2026-03-02T10:25:00Z",
                EventKind::NoteAdded,
                "bob",
                "triage: only card payments fail",
            ),
            event(
                "2026-03-02T10:30:00Z",
                EventKind::NoteAdded,
                "alice",
                "Mitigated: rolled back v2.3.1",
            ),
            event(
                "2026-03-02T10:40:00Z",
                EventKind::AlertResolved,
                ACTOR_ALERTMANAGER,
                "CheckoutErrors resolved",
            ),
            event(
                "2026-03-02T10:45:00Z",
                EventKind::Reopened,
                ACTOR_INCIDENTD,
                "Reopened: CheckoutErrors firing again",
            ),
            event(
                "2026-03-02T11:10:00Z",
                EventKind::Resolved,
                "bob",
                "Resolved by bob",
            ),
        ],
    };
    let evidence = Evidence {
        rules: vec![RuleInfo {
            alertname: "CheckoutErrors".into(),
            expr: "sum(rate(errors_total[5m])) / sum(rate(requests_total[5m])) > 0.05".into(),
            for_seconds: Some(120),
            labels: labels(&[("severity", "critical")]),
            annotations: labels(&[("summary", "Checkout is failing")]),
            group: Some("checkout.rules".into()),
            source: None,
        }],
        snapshots: vec![Snapshot {
            name: "Error ratio".into(),
            query: "sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))".into(),
            unit: Unit::Ratio,
            baseline: Some(0.002),
            peak: Some(0.12),
            lower_is_worse: false,
            at_resolution: Some(0.003),
            latest: Some(0.003),
            latest_at: Some(at("2026-03-02T11:11:00Z")),
            no_data: false,
            note: None,
            change: None,
            threshold: Some(0.05),
            chart: Some("error-ratio.svg".into()),
            alertname: Some("CheckoutErrors".into()),
        }],
        impact: vec![ImpactFigure {
            name: "Failed requests".into(),
            value: "12,345".into(),
            query: "sum(increase(errors_total[72m]))".into(),
        }],
        slo: Some(Slo {
            target_percent: 99.9,
            window_seconds: 30 * 86_400,
        }),
        action_items: vec![ActionSuggestion {
            action: "Add a canary stage to checkout deploys".into(),
            priority: Some("P1".into()),
            alertname: Some("CheckoutErrors".into()),
        }],
        missing_reason: None,
        rules_problem: None,
        collected_at: Some(at("2026-03-02T11:11:00Z")),
        data_until: Some(at("2026-03-02T11:11:00Z")),
        resolved_at: Some(at("2026-03-02T11:10:00Z")),
        full_delay_seconds: Some(60),
        condition_starts: vec![ConditionStart {
            fingerprint: format!("{:016x}", "CheckoutErrors".len()),
            fired_at: at("2026-03-02T10:00:00Z"),
            at: at("2026-03-02T09:58:00Z"),
            method: ImpactMethod::RuleReevaluation,
            at_or_before: false,
        }],
    };
    let related = vec![RelatedIncident {
        id: "INC-2026-0017".into(),
        title: "Checkout is failing".into(),
        started_at: at("2026-02-11T16:04:00Z"),
        duration_seconds: Some(1260.0),
        status: Status::Resolved,
        same_key: true,
        shared_alertnames: vec!["CheckoutErrors".into()],
    }];
    (incident, evidence, related, at("2026-03-02T11:12:00Z"))
}

/// Every optional part absent: still open, never acknowledged, no impact start, no
/// Prometheus, no related incidents.
pub fn sample_minimal() -> Sample {
    let mut alert = occurrence("CheckoutErrors", "critical", "2026-03-02T10:00:00Z", None);
    alert.annotations.clear();
    alert.labels.remove("service");
    alert.generator_url.clear();
    let incident = Incident {
        id: "INC-2026-0043".into(),
        key: "{}:{alertname=\"CheckoutErrors\"}".into(),
        title: String::new(),
        status: Status::Open,
        severity: None,
        service: None,
        impact_start: None,
        impact_start_method: ImpactMethod::StartsAt,
        fired_at: at("2026-03-02T10:00:00Z"),
        detected_at: at("2026-03-02T10:00:31Z"),
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        reopen_count: 0,
        notifications: NotificationCounts::default(),
        version: 1,
        alerts: vec![alert],
        timeline: vec![event(
            "2026-03-02T10:00:31Z",
            EventKind::Detected,
            ACTOR_INCIDENTD,
            "Incident opened",
        )],
    };
    let evidence = Evidence {
        missing_reason: Some("no Prometheus URL is configured".into()),
        ..Evidence::default()
    };
    (incident, evidence, Vec::new(), at("2026-03-02T10:05:00Z"))
}
