//! Scenario and property tests of correlation and lifecycle, on the in-memory repo.

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::lifecycle;
use super::memory::MemoryRepo;
use super::*;
use crate::incident::ValidAlert;

fn t(minute: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap() + Duration::minutes(minute)
}

fn alert(fp: &str, service: &str, severity: &str, start: i64, end: Option<i64>) -> ValidAlert {
    let labels: LabelSet = [
        ("alertname", format!("Alert_{fp}")),
        ("service", service.to_string()),
        ("severity", severity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ValidAlert {
        status: if end.is_some() {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        alertname: format!("Alert_{fp}"),
        annotations: [("summary".to_string(), format!("summary of {fp}"))].into(),
        labels,
        starts_at: t(start),
        ends_at: end.map(t),
        generator_url: String::new(),
        fingerprint: fp.to_string(),
    }
}

fn rules(window_minutes: i64) -> Rules {
    Rules {
        reopen_window: Duration::minutes(window_minutes),
        ..Rules::default()
    }
}

fn send(repo: &mut MemoryRepo, rules: &Rules, a: &ValidAlert, now: i64) -> Outcome {
    ingest(repo, rules, "{}:{}", a, t(now)).unwrap()
}

#[test]
fn alerts_of_one_service_make_one_incident_with_the_highest_severity() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    assert_eq!(
        send(&mut repo, &r, &alert("a", "pay", "warning", 0, None), 1).effect,
        Effect::Opened
    );
    assert_eq!(
        send(&mut repo, &r, &alert("b", "pay", "critical", 2, None), 3).effect,
        Effect::Joined
    );
    assert_eq!(
        send(&mut repo, &r, &alert("c", "shop", "info", 2, None), 3).effect,
        Effect::Opened
    );
    let all = repo.incidents();
    assert_eq!(all.len(), 2);
    let pay = all.iter().find(|i| i.key == r#"service="pay""#).unwrap();
    assert_eq!(pay.alerts.len(), 2);
    assert_eq!(pay.severity.as_deref(), Some("critical"));
    assert_eq!(
        pay.title, "summary of b",
        "the most severe alert names the incident"
    );
    assert!(pay
        .timeline
        .iter()
        .any(|e| e.kind == EventKind::SeverityChanged && e.at == t(2)));
}

#[test]
fn a_found_impact_start_survives_later_correlation_until_an_earlier_alert_joins() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(&mut repo, &r, &alert("a", "pay", "warning", 5, None), 6).incident_id;
    // The evidence job found the condition true from minute 3.
    let mut found = repo.load(&id).unwrap().unwrap();
    found.impact_start = Some(t(3));
    found.impact_start_method = ImpactMethod::RuleReevaluation;
    repo.save(&found, &[], &[]).unwrap();

    send(&mut repo, &r, &alert("a", "pay", "warning", 5, None), 7); // a repeat
    send(&mut repo, &r, &alert("b", "pay", "critical", 6, None), 7); // a later join
    send(&mut repo, &r, &alert("b", "pay", "critical", 6, Some(8)), 9); // a resolve
    let kept = repo.full(&id).unwrap();
    assert_eq!(
        (kept.impact_start, kept.impact_start_method),
        (Some(t(3)), ImpactMethod::RuleReevaluation)
    );

    // An alert that fired before the found start makes it stale: back to firing time.
    send(&mut repo, &r, &alert("c", "pay", "info", 1, None), 10);
    let reset = repo.full(&id).unwrap();
    assert_eq!(
        (reset.impact_start, reset.impact_start_method),
        (Some(t(1)), ImpactMethod::StartsAt)
    );
}

#[test]
fn repeats_never_duplicate_and_are_counted() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    for now in 0..5 {
        send(&mut repo, &r, &alert("a", "pay", "warning", 0, None), now);
    }
    let i = &repo.incidents()[0];
    assert_eq!(i.alerts.len(), 1);
    assert_eq!(i.notifications.received, 5);
    assert_eq!(i.notifications.duplicate, 4);
    assert_eq!(
        i.timeline
            .iter()
            .filter(|e| e.kind == EventKind::AlertFiring)
            .count(),
        1
    );
}

#[test]
fn ha_replicas_resending_firing_after_resolved_leave_the_incident_resolved() {
    // firing(am1) → resolved(am1) → firing(am2, same startsAt) → resolved(am2)
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, None), 0);
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, Some(5)), 5);
    assert_eq!(
        send(&mut repo, &r, &alert("a", "pay", "critical", 0, None), 6).effect,
        Effect::Stale
    );
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, Some(5)), 6);
    let all = repo.incidents();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, Status::Resolved);
    assert_eq!(all[0].resolved_at, Some(t(5)));
    assert_eq!(all[0].notifications.stale, 1);
}

#[test]
fn a_new_episode_within_the_reopen_window_reopens_and_later_opens_a_new_incident() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, None), 0);
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, Some(5)), 5);
    // Same fingerprint, new startsAt 10 minutes later: reopens.
    let o = send(&mut repo, &r, &alert("a", "pay", "critical", 15, None), 15);
    assert_eq!(o.effect, Effect::Reopened);
    let i = repo.full(&o.incident_id).unwrap();
    assert_eq!((i.status, i.reopen_count), (Status::Open, 1));
    assert!(i
        .timeline
        .iter()
        .any(|e| e.kind == EventKind::Reopened && e.at == t(15)));
    send(
        &mut repo,
        &r,
        &alert("a", "pay", "critical", 15, Some(20)),
        20,
    );
    // Two hours later: a new incident.
    let o2 = send(
        &mut repo,
        &r,
        &alert("a", "pay", "critical", 140, None),
        140,
    );
    assert_eq!(o2.effect, Effect::Opened);
    assert_ne!(o2.incident_id, o.incident_id);
    assert_eq!(repo.incidents().len(), 2);
}

#[test]
fn a_zero_reopen_window_never_reopens() {
    let (mut repo, r) = (MemoryRepo::new(), rules(0));
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, Some(5)), 5);
    let o = send(&mut repo, &r, &alert("a", "pay", "critical", 6, None), 6);
    assert_eq!(o.effect, Effect::Opened);
}

#[test]
fn a_late_occurrence_that_would_bridge_two_incidents_joins_the_nearer() {
    let (mut repo, r) = (MemoryRepo::new(), rules(10));
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, Some(5)), 5);
    send(
        &mut repo,
        &r,
        &alert("b", "pay", "critical", 30, Some(35)),
        35,
    );
    assert_eq!(repo.incidents().len(), 2);
    // [12, 22] is within 10 minutes of both; it is 7 from the first and 8 from the second.
    let o = send(
        &mut repo,
        &r,
        &alert("c", "pay", "critical", 12, Some(22)),
        40,
    );
    assert!(o.bridged);
    assert_eq!(repo.incidents().len(), 2, "never merged");
    let first = repo
        .incidents()
        .into_iter()
        .find(|i| i.fired_at == t(0))
        .unwrap();
    assert_eq!(o.incident_id, first.id);
}

#[test]
fn a_resolve_that_disconnects_members_splits_the_incident() {
    // b fires first, a (started earlier) joins the open incident, then a's resolve shows it
    // ended long before b began: with no reopen window they are two problems.
    let (mut repo, r) = (MemoryRepo::new(), rules(0));
    send(&mut repo, &r, &alert("b", "pay", "critical", 20, None), 20);
    assert_eq!(
        send(&mut repo, &r, &alert("a", "pay", "critical", 0, None), 21).effect,
        Effect::Joined
    );
    let o = send(
        &mut repo,
        &r,
        &alert("a", "pay", "critical", 0, Some(5)),
        22,
    );
    let split = o.split.expect("a split");
    assert_eq!(split.into.len(), 1);
    let all = repo.incidents();
    assert_eq!(all.len(), 2);
    // The incident b opened keeps its id (its thread, acks and notes); a leaves.
    let members = |id: &str| -> Vec<String> {
        let i = all.iter().find(|i| i.id == id).expect("incident");
        i.alerts.iter().map(|o| o.fingerprint.clone()).collect()
    };
    assert_eq!(members(&split.from), ["b"]);
    assert_eq!(members(&split.into[0]), ["a"]);
    assert_eq!(o.incident_id, split.into[0]);
    assert!(all.iter().all(|i| i.alerts.len() == 1));
    // The part that keeps the id keeps a's rows (history) and says where a went.
    let kept = all.iter().find(|i| i.id == split.from).expect("kept");
    assert!(kept
        .timeline
        .iter()
        .any(|e| e.kind == EventKind::AlertFiring && e.text.starts_with("Alert_a")));
    let row = kept
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::Split)
        .expect("a split row");
    assert_eq!(
        (row.at, row.text.as_str()),
        (
            t(22),
            format!(
                "Split: Alert_a moved to {} (it had ended long before the others began)",
                split.into[0]
            )
            .as_str()
        )
    );
}

#[test]
fn acknowledging_and_resolving_by_hand_follow_the_episode() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(&mut repo, &r, &alert("a", "pay", "critical", 0, None), 1).incident_id;
    let i = act(&mut repo, &r, &id, "alice", &Action::Acknowledge, t(3)).unwrap();
    assert_eq!(i.status, Status::Acknowledged);
    assert!(matches!(
        act(&mut repo, &r, &id, "bob", &Action::Acknowledge, t(4)),
        Err(ActionError::Conflict(_))
    ));
    act(
        &mut repo,
        &r,
        &id,
        "alice",
        &Action::Note("restarted pgbouncer".into()),
        t(5),
    )
    .unwrap();
    let i = act(&mut repo, &r, &id, "alice", &Action::Resolve, t(8)).unwrap();
    assert_eq!(i.status, Status::Resolved);
    assert_eq!(
        (i.resolved_at, i.resolved_by.as_deref()),
        (Some(t(8)), Some("alice"))
    );
    // Repeats of the still-firing alert do not undo a person's resolve...
    send(&mut repo, &r, &alert("a", "pay", "critical", 0, None), 9);
    assert_eq!(repo.full(&id).unwrap().status, Status::Resolved);
    // ...but a new firing episode reopens it, unacknowledged.
    let o = send(&mut repo, &r, &alert("b", "pay", "critical", 12, None), 12);
    assert_eq!(
        (o.incident_id.as_str(), o.effect),
        (id.as_str(), Effect::Reopened)
    );
    let i = repo.full(&id).unwrap();
    assert_eq!((i.status, i.reopen_count), (Status::Open, 1));
    assert_eq!(
        i.acknowledged_at,
        Some(t(3)),
        "TTA keeps the first acknowledgement"
    );
}

#[test]
fn an_unknown_incident_is_not_found() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    assert!(matches!(
        act(
            &mut repo,
            &r,
            "INC-2026-9999",
            "x",
            &Action::Acknowledge,
            t(0)
        ),
        Err(ActionError::NotFound(_))
    ));
}

// ---------- order independence ----------

/// One true alert episode: fingerprint index and times in minutes.
#[derive(Debug, Clone)]
struct Episode {
    fp: usize,
    start: i64,
    end: Option<i64>,
}

/// A delivery: an alert as some notification carried it.
type Delivery = ValidAlert;

fn fp_alert(fp: usize, start: i64, end: Option<i64>) -> ValidAlert {
    let service = ["pay", "shop"][fp % 2];
    let severity = ["critical", "warning", "info"][fp % 3];
    alert(&format!("f{fp}"), service, severity, start, end)
}

fn episodes() -> impl Strategy<Value = Vec<Episode>> {
    prop::collection::vec(
        (
            0usize..5,
            0i64..8,
            1i64..40,
            prop::option::weighted(0.8, 1i64..30),
        ),
        1..7,
    )
    .prop_map(|raw| {
        // Episodes of one fingerprint follow each other; distinct startsAt.
        let mut next_free = [0i64; 5];
        raw.into_iter()
            .map(|(fp, gap, _, dur)| {
                let start = next_free[fp] + gap * 7;
                next_free[fp] = start + dur.unwrap_or(1000) + 1;
                Episode {
                    fp,
                    start,
                    end: dur.map(|d| start + d),
                }
            })
            .collect()
    })
}

fn deliveries(eps: &[Episode]) -> impl Strategy<Value = Vec<Delivery>> {
    let eps = eps.to_vec();
    prop::collection::vec((1usize..3, 0usize..3, any::<bool>()), eps.len()).prop_map(move |reps| {
        let mut out = Vec::new();
        for (e, (firing, resolved, late_replica)) in eps.iter().zip(reps) {
            let firing = if e.end.is_some() { firing - 1 } else { firing }; // a firing may be lost
            for _ in 0..firing {
                out.push(fp_alert(e.fp, e.start, None));
            }
            if let Some(end) = e.end {
                for _ in 0..resolved.max(1) {
                    out.push(fp_alert(e.fp, e.start, Some(end)));
                }
                if late_replica {
                    // The other Alertmanager replica saw the resolve a little later.
                    out.push(fp_alert(e.fp, e.start, Some(end + 1)));
                }
            }
        }
        out
    })
}

/// What must not depend on arrival order: incidents with their members, statuses and times.
/// The timeline and the reopen count are history (what people saw, in the order they saw
/// it), so they may differ; [`history_holds_the_state`] checks what they must contain.
fn canonical(repo: &MemoryRepo) -> Vec<String> {
    let mut out: Vec<String> = repo
        .incidents()
        .into_iter()
        .map(|i| {
            let mut members: Vec<String> = i
                .alerts
                .iter()
                .map(|o| {
                    format!(
                        "{}@{}-{:?}:{:?}",
                        o.fingerprint, o.starts_at, o.ends_at, o.status
                    )
                })
                .collect();
            members.sort();
            format!(
                "{} {:?} sev={:?} title={} fired={} resolved={:?} members={:?}",
                i.key, i.status, i.severity, i.title, i.fired_at, i.resolved_at, members
            )
        })
        .collect();
    out.sort();
    out
}

/// Every row the incident's final state derives is in its timeline, and the reopen count is
/// the number of `reopened` rows (at least the reopenings the final state shows).
fn history_holds_the_state(repo: &MemoryRepo, r: &Rules) -> Result<(), TestCaseError> {
    for i in repo.incidents() {
        let human: Vec<TimelineEvent> = Vec::new();
        let d = lifecycle::derive(&i.alerts, &human, r);
        let missing = lifecycle::unseen(&i.timeline, d.events);
        prop_assert!(missing.is_empty(), "{}: rows missing {:?}", i.id, missing);
        let reopened = i
            .timeline
            .iter()
            .filter(|e| e.kind == EventKind::Reopened)
            .count() as u32;
        prop_assert_eq!(i.reopen_count, reopened);
        prop_assert!(i.reopen_count >= d.reopen_count);
    }
    Ok(())
}

/// Every incident's timeline rows, for the append-only check.
fn timelines(repo: &MemoryRepo) -> Vec<(String, Vec<TimelineEvent>)> {
    repo.incidents()
        .into_iter()
        .map(|i| (i.id, i.timeline))
        .collect()
}

/// Every row of `before` is still in `after`, in the same incident (as multisets).
fn still_there(
    before: &[(String, Vec<TimelineEvent>)],
    after: &[(String, Vec<TimelineEvent>)],
) -> Result<(), TestCaseError> {
    for (id, rows) in before {
        let now = after
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let mut left = now.clone();
        for e in rows {
            let at = left.iter().position(|n| n == e);
            prop_assert!(
                at.is_some(),
                "{}: row {:?} disappeared; now {:?}",
                id,
                e,
                now
            );
            left.remove(at.unwrap());
        }
    }
    Ok(())
}

/// The reference answer: connected components of the final intervals per key.
fn expected_partition(eps: &[Episode], window: i64) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for service in ["pay", "shop"] {
        let mut mine: Vec<&Episode> = eps
            .iter()
            .filter(|e| ["pay", "shop"][e.fp % 2] == service)
            .collect();
        mine.sort_by_key(|e| e.start);
        let mut reach: Option<Option<i64>> = None;
        for e in mine {
            let name = format!("f{}@{}", e.fp, t(e.start));
            match reach {
                Some(r) if r.is_none_or(|r| e.start <= r + window) => {
                    groups.last_mut().unwrap().push(name);
                    reach = Some(match (r, e.end) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    });
                }
                _ => {
                    groups.push(vec![name]);
                    reach = Some(e.end);
                }
            }
        }
    }
    for g in &mut groups {
        g.sort();
    }
    groups.sort();
    groups
}

fn partition(repo: &MemoryRepo) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = repo
        .incidents()
        .iter()
        .map(|i| {
            let mut g: Vec<String> = i
                .alerts
                .iter()
                .map(|o| format!("{}@{}", o.fingerprint, o.starts_at))
                .collect();
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

/// Deliver in notifications of `chunk` alerts each (Alertmanager sends whole groups).
fn run(ds: &[Delivery], r: &Rules, chunk: usize) -> (MemoryRepo, bool) {
    let mut repo = MemoryRepo::new();
    let mut bridged = false;
    for (i, n) in ds.chunks(chunk).enumerate() {
        let outcomes = ingest_all(&mut repo, r, "{}:{}", n, t(1000 + i as i64)).unwrap();
        bridged |= outcomes.iter().any(|o| o.bridged);
    }
    (repo, bridged)
}

fn scenario() -> impl Strategy<Value = (Vec<Episode>, Vec<Delivery>, Vec<Delivery>, i64, usize)> {
    (
        episodes(),
        prop::sample::select(vec![0i64, 5, 30]),
        1usize..5,
    )
        .prop_flat_map(|(eps, window, chunk)| {
            let eps2 = eps.clone();
            deliveries(&eps).prop_flat_map(move |ds| {
                let (eps, ds2) = (eps2.clone(), ds.clone());
                Just(ds2)
                    .prop_shuffle()
                    .prop_map(move |shuffled| (eps.clone(), ds.clone(), shuffled, window, chunk))
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_duplication_of_deliveries_yields_the_same_incidents(
        (eps, in_order, shuffled, window, chunk) in scenario()
    ) {
        let r = rules(window);
        let (a, bridged_a) = run(&in_order, &r, 1);
        let (b, bridged_b) = run(&shuffled, &r, chunk);
        // Every occurrence belongs to exactly one incident, whatever happened.
        let members: usize = b.incidents().iter().map(|i| i.alerts.len()).sum();
        prop_assert_eq!(members, eps.len());
        if !bridged_a && !bridged_b {
            prop_assert_eq!(partition(&b), expected_partition(&eps, window));
            prop_assert_eq!(canonical(&a), canonical(&b));
        }
        history_holds_the_state(&a, &r)?;
        history_holds_the_state(&b, &r)?;
    }

    /// The timeline is append-only: whatever arrives later, in whatever order, every row once
    /// stored is still there, in the same incident.
    #[test]
    fn every_stored_timeline_row_survives_later_deliveries(
        (_eps, _in_order, shuffled, window, chunk) in scenario()
    ) {
        let r = rules(window);
        let mut repo = MemoryRepo::new();
        let mut seen = timelines(&repo);
        for (i, n) in shuffled.chunks(chunk).enumerate() {
            ingest_all(&mut repo, &r, "{}:{}", n, t(1000 + i as i64)).unwrap();
            let now = timelines(&repo);
            still_there(&seen, &now)?;
            seen = now;
        }
    }
}

#[test]
fn a_late_firing_that_started_before_the_resolve_reopens_and_keeps_the_resolved_row() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(&mut repo, &r, &alert("a", "pay", "critical", 10, None), 10).incident_id;
    send(
        &mut repo,
        &r,
        &alert("a", "pay", "critical", 10, Some(15)),
        15,
    );
    let resolved = repo.full(&id).unwrap();
    assert_eq!(resolved.status, Status::Resolved);
    let resolved_row = resolved
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::Resolved)
        .cloned()
        .expect("a resolved row");
    assert_eq!(resolved_row.at, t(15));

    // b fired at minute 5, before the incident's window, and its notification arrives late.
    let o = send(&mut repo, &r, &alert("b", "pay", "critical", 5, None), 40);
    assert_eq!(
        (o.incident_id.as_str(), o.effect),
        (id.as_str(), Effect::Reopened)
    );
    let reopened = repo.full(&id).unwrap();
    assert_eq!((reopened.status, reopened.reopen_count), (Status::Open, 1));
    assert!(
        reopened.timeline.contains(&resolved_row),
        "what people saw stays: {:?}",
        reopened.timeline
    );
    let row = reopened
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::Reopened)
        .expect("a reopened row");
    assert_eq!(row.at, t(40), "reopened when incidentd learned it");
    assert!(row.text.contains("Alert_b"), "{}", row.text);

    // b resolves: the incident resolves again, with a row of its own.
    send(
        &mut repo,
        &r,
        &alert("b", "pay", "critical", 5, Some(12)),
        45,
    );
    let again = repo.full(&id).unwrap();
    assert_eq!(again.status, Status::Resolved);
    assert_eq!(again.reopen_count, 1);
    let resolves: Vec<Timestamp> = again
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::Resolved)
        .map(|e| e.at)
        .collect();
    assert_eq!(resolves, [t(15), t(45)]);
}

#[test]
fn a_late_resolved_alert_from_before_the_window_does_not_reopen() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(
        &mut repo,
        &r,
        &alert("a", "pay", "critical", 10, Some(15)),
        15,
    )
    .incident_id;
    send(
        &mut repo,
        &r,
        &alert("b", "pay", "critical", 5, Some(12)),
        40,
    );
    let i = repo.full(&id).unwrap();
    assert_eq!((i.status, i.reopen_count), (Status::Resolved, 0));
    assert_eq!(
        i.timeline
            .iter()
            .filter(|e| e.kind == EventKind::Resolved)
            .count(),
        1
    );
}

// ---------- Grafana-managed alerts ----------

/// `alert(..)` as Grafana's webhook sends it: its fields kept as `grafana.…` annotations.
fn grafana_alert(fp: &str, start: i64, end: Option<i64>, values: &str) -> ValidAlert {
    use crate::incident::grafana_keys;
    let mut a = alert(fp, "pay", "critical", start, end);
    a.annotations
        .insert(grafana_keys::VALUES.to_string(), values.to_string());
    a.annotations.insert(
        grafana_keys::SILENCE_URL.to_string(),
        "https://grafana.example.com/alerting/silence/new".to_string(),
    );
    a
}

fn rows(i: &Incident, kind: EventKind) -> Vec<&TimelineEvent> {
    i.timeline.iter().filter(|e| e.kind == kind).collect()
}

#[test]
fn a_grafana_alerts_rows_name_grafana_and_carry_the_values_sent_when_each_was_made() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(
        &mut repo,
        &r,
        &grafana_alert("a", 0, None, "B=0.97, C=1"),
        1,
    )
    .incident_id;
    // A repeat with other values: the stored row is history and stays as it was.
    send(
        &mut repo,
        &r,
        &grafana_alert("a", 0, None, "B=0.99, C=1"),
        2,
    );
    send(
        &mut repo,
        &r,
        &grafana_alert("a", 0, Some(5), "B=0.41, C=0"),
        6,
    );
    let i = repo.full(&id).unwrap();
    let firing = rows(&i, EventKind::AlertFiring);
    assert_eq!(firing.len(), 1, "{:?}", i.timeline);
    assert_eq!(firing[0].actor, ACTOR_GRAFANA);
    assert_eq!(
        firing[0].text,
        "Alert_a fired: summary of a (Grafana: B=0.97, C=1)"
    );
    let resolved = rows(&i, EventKind::AlertResolved);
    assert_eq!(resolved.len(), 1, "{:?}", i.timeline);
    assert_eq!(resolved[0].actor, ACTOR_GRAFANA);
    assert_eq!(resolved[0].text, "Alert_a resolved (Grafana: B=0.41, C=0)");
    assert_eq!(rows(&i, EventKind::Detected)[0].actor, ACTOR_GRAFANA);
    // What follows from the incident stays incidentd's.
    assert_eq!(rows(&i, EventKind::Resolved)[0].actor, ACTOR_INCIDENTD);
}

#[test]
fn a_grafana_alert_first_heard_of_resolved_shows_no_resolve_values_as_firing_ones() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(
        &mut repo,
        &r,
        &grafana_alert("a", 0, Some(5), "B=0.41, C=0"),
        6,
    )
    .incident_id;
    let i = repo.full(&id).unwrap();
    assert_eq!(
        rows(&i, EventKind::AlertFiring)[0].text,
        "Alert_a fired: summary of a"
    );
    assert_eq!(
        rows(&i, EventKind::AlertResolved)[0].text,
        "Alert_a resolved (Grafana: B=0.41, C=0)"
    );
}

#[test]
fn prometheus_alerts_keep_their_actors_beside_grafana_ones() {
    let (mut repo, r) = (MemoryRepo::new(), rules(30));
    let id = send(&mut repo, &r, &alert("p", "pay", "critical", 0, None), 1).incident_id;
    send(&mut repo, &r, &grafana_alert("g", 1, None, "B=1"), 2);
    let i = repo.full(&id).unwrap();
    let actor_of = |name: &str| {
        rows(&i, EventKind::AlertFiring)
            .into_iter()
            .find(|e| e.text.starts_with(name))
            .map(|e| e.actor.clone())
    };
    assert_eq!(actor_of("Alert_p").as_deref(), Some(ACTOR_PROMETHEUS));
    assert_eq!(actor_of("Alert_g").as_deref(), Some(ACTOR_GRAFANA));
    assert!(!rows(&i, EventKind::AlertFiring)[0]
        .text
        .contains("Grafana:"));
    // The first notification came through Alertmanager.
    assert_eq!(rows(&i, EventKind::Detected)[0].actor, ACTOR_ALERTMANAGER);
}

#[test]
fn a_grafana_row_stored_with_prometheus_as_its_actor_is_not_repeated() {
    // Before Grafana was named, its alerts' rows said Prometheus: the same row of history.
    let stored = TimelineEvent {
        at: t(0),
        kind: EventKind::AlertFiring,
        actor: ACTOR_PROMETHEUS.into(),
        text: "Alert_a fired: summary of a".into(),
    };
    let derived = TimelineEvent {
        actor: ACTOR_GRAFANA.into(),
        text: "Alert_a fired: summary of a (Grafana: B=1)".into(),
        ..stored.clone()
    };
    assert!(lifecycle::unseen(&[stored], vec![derived]).is_empty());
}
