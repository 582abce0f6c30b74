//! The recorded scenario (tests/fixtures/scenario-single) as an Incident: the
//! payment-service connection pool runs out, latency and 5xx follow, all three
//! alerts resolve about half a minute later.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use incidentd::incident::{
    AlertStatus, EventKind, ImpactMethod, Incident, Occurrence, Status, TimelineEvent,
};
use incidentd::slack::EvidenceFigure;
use serde_json::Value;

const WEBHOOKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/scenario-single/webhooks"
);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("fixture time")
        .with_timezone(&Utc)
}

fn read(name: &str) -> Value {
    let path = format!("{WEBHOOKS}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("label object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Receipt times from the fixture's index.json.
fn received(index: usize) -> DateTime<Utc> {
    let idx = read("index.json");
    at(idx[index]["received_at"].as_str().expect("received_at"))
}

fn occurrence(payload: &Value, received_at: DateTime<Utc>) -> Occurrence {
    let a = &payload["alerts"][0];
    let labels = map(&a["labels"]);
    Occurrence {
        fingerprint: a["fingerprint"].as_str().unwrap().into(),
        starts_at: at(a["startsAt"].as_str().unwrap()),
        ends_at: None,
        status: AlertStatus::Firing,
        alertname: labels["alertname"].clone(),
        labels,
        annotations: map(&a["annotations"]),
        generator_url: a["generatorURL"].as_str().unwrap().into(),
        group_key: payload["groupKey"].as_str().unwrap().into(),
        first_seen_at: received_at,
        last_seen_at: received_at,
        resolved_by: None,
    }
}

/// The incident right after its first webhook: one critical alert.
pub fn opened() -> Incident {
    let first = occurrence(
        &read("01-firing-DatabaseConnectionPoolHigh.json"),
        received(0),
    );
    let detected = received(0);
    Incident {
        id: "INC-2026-0007".into(),
        key: "service=\"payment-service\"".into(),
        title: first.annotations["summary"].clone(),
        status: Status::Open,
        severity: Some("critical".into()),
        service: Some("payment-service".into()),
        // The rules' `for: 5s` before startsAt.
        impact_start: Some(first.starts_at - chrono::Duration::seconds(5)),
        impact_start_method: ImpactMethod::StartsAtMinusFor,
        fired_at: first.starts_at,
        detected_at: detected,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        reopen_count: 0,
        notifications: Default::default(),
        version: 1,
        timeline: vec![
            TimelineEvent {
                at: first.starts_at,
                kind: EventKind::AlertFiring,
                actor: "Prometheus".into(),
                text: "DatabaseConnectionPoolHigh fired".into(),
            },
            TimelineEvent {
                at: detected,
                kind: EventKind::Detected,
                actor: "incidentd".into(),
                text: "incident opened".into(),
            },
        ],
        alerts: vec![first],
    }
}

/// The same incident raised by Grafana-managed alerting (webhook contact point): the alert
/// carries Grafana's fields, kept by the decoder as `grafana.…` annotations, and its
/// generatorURL is the alert rule's page in Grafana.
pub fn opened_in_grafana() -> Incident {
    use incidentd::incident::grafana_keys;
    let mut inc = opened();
    let a = &mut inc.alerts[0];
    a.generator_url = "https://grafana.example.com/alerting/grafana/pool-high/view?orgId=1".into();
    for (k, v) in [
        (grafana_keys::VALUES, "B=0.97, C=1"),
        (
            grafana_keys::DASHBOARD_URL,
            "https://grafana.example.com/d/payment?orgId=1",
        ),
        (
            grafana_keys::PANEL_URL,
            "https://grafana.example.com/d/payment?orgId=1&viewPanel=2",
        ),
        (
            grafana_keys::SILENCE_URL,
            "https://grafana.example.com/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DDatabaseConnectionPoolHigh&matcher=service%3Dpayment-service&orgId=1",
        ),
    ] {
        a.annotations.insert(k.into(), v.into());
    }
    inc.timeline[0].actor = "Grafana".into();
    inc.timeline[0].text = "DatabaseConnectionPoolHigh fired (Grafana: B=0.97, C=1)".into();
    inc
}

/// All three alerts firing, acknowledged by alice, with her note.
pub fn acknowledged_with_note() -> Incident {
    let mut inc = opened();
    inc.alerts.push(occurrence(
        &read("02-firing-HighRequestLatency.json"),
        received(1),
    ));
    inc.alerts.push(occurrence(
        &read("03-firing-HighErrorRate.json"),
        received(2),
    ));
    inc.status = Status::Acknowledged;
    inc.acknowledged_at = Some(at("2026-11-23T02:26:45Z"));
    inc.acknowledged_by = Some("alice".into());
    inc.timeline.push(TimelineEvent {
        at: at("2026-11-23T02:26:45Z"),
        kind: EventKind::Acknowledged,
        actor: "alice".into(),
        text: "acknowledged".into(),
    });
    inc.timeline.push(TimelineEvent {
        at: at("2026-11-23T02:26:50Z"),
        kind: EventKind::NoteAdded,
        actor: "alice".into(),
        text: NOTE.into(),
    });
    inc.version = 5;
    inc
}

/// alice's note (with characters Slack must not read as markup).
pub const NOTE: &str = "Pool at 100% & p99 > 4s; restarting payment-service <primary>";

/// Every alert resolved (their endsAt from the resolved webhooks).
pub fn resolved() -> Incident {
    let mut inc = acknowledged_with_note();
    for (i, name) in [
        (3, "04-resolved-DatabaseConnectionPoolHigh.json"),
        (4, "05-resolved-HighErrorRate.json"),
        (5, "06-resolved-HighRequestLatency.json"),
    ] {
        let p = read(name);
        let a = &p["alerts"][0];
        let fp = a["fingerprint"].as_str().unwrap();
        let end = at(a["endsAt"].as_str().unwrap());
        let o = inc
            .alerts
            .iter_mut()
            .find(|o| o.fingerprint == fp)
            .expect("alert");
        o.status = AlertStatus::Resolved;
        o.ends_at = Some(end);
        o.last_seen_at = received(i);
        o.resolved_by = Some("alertmanager".into());
    }
    let resolved_at = inc.alerts.iter().filter_map(|o| o.ends_at).max();
    inc.status = Status::Resolved;
    inc.resolved_at = resolved_at;
    inc.timeline.push(TimelineEvent {
        at: resolved_at.unwrap(),
        kind: EventKind::Resolved,
        actor: "Alertmanager".into(),
        text: "all alerts resolved".into(),
    });
    inc.version = 9;
    inc
}

/// The pool-ratio query of prometheus-peak/query_range-pool-ratio.json: 0.2 before, 1.0 at peak.
pub fn evidence() -> Vec<EvidenceFigure> {
    vec![EvidenceFigure {
        metric: "DB connection pool in use (primary)".into(),
        baseline: "20%".into(),
        peak: "100%".into(),
        last: None,
    }]
}
