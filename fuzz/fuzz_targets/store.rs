//! Fuzz target `store` (differential): the same notifications and actions go into the
//! in-memory repo (`MemoryRepo`, the reference) and into the real SQLite repo (`SqliteRepo`
//! over a fresh in-memory database with the daemon's migrations and pragmas), and both must
//! agree.
//!
//! Input format as in `webhook`: split on 0xFF into up to eight parts received seven minutes
//! apart, the first decodable notification delivered again at the end; the first byte picks
//! the reopen window. In addition, a part that starts with `!` (never JSON) is a script of
//! what people and the reconciler do at that moment, two bytes per step: acknowledge, add a
//! note, resolve by hand (on the n-th incident), or resolve as lost (the n-th firing
//! occurrence), applied to both repos. The SQLite side does what the daemon does inside its
//! transaction (`POST /webhook/alertmanager`: raw payload row, correlation, job planning;
//! the API: `act` and job planning; the reconciler: `resolve_gone`), synchronously, one
//! transaction per part.
//!
//! Checked after every part:
//! - SQLite never fails (the daemon would answer 500);
//! - both repos give the same outcome per alert and per action (or the same refusal);
//! - both hold the same incidents: ids, every stored field, members, and timeline rows;
//! - every notification and each distinct payload body is stored once.
//!
//! At the end: `PRAGMA integrity_check` and `PRAGMA foreign_key_check` find nothing.
#![no_main]

#[path = "input.rs"]
mod input;

use chrono::Duration;
use incidentd::alertmanager::{decode, ValidNotification};
use incidentd::config::Config;
use incidentd::incident::correlate::resolve_gone;
use incidentd::incident::memory::MemoryRepo;
use incidentd::incident::{
    act, ingest_all, Action, ActionError, AlertStatus, EventKind, Incident, Rules, Timestamp,
};
use incidentd::followup::{self, Change, Planner};
use incidentd::store::sqlite::{full_incident, insert_notification, SqliteRepo};
use incidentd::store::{NewJob, Tx};
use libfuzzer_sys::fuzz_target;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

const MAX_PARTS: usize = 8;
const MAX_STEPS: usize = 16;

enum Part<'a> {
    Notification(&'a [u8], ValidNotification),
    Script(&'a [u8]),
}

fuzz_target!(|data: &[u8]| {
    let (rules, base) = input::rules_and_start(data);

    let mut parts: Vec<Part> = data
        .split(|&b| b == input::SEPARATOR)
        .take(MAX_PARTS)
        .filter_map(|part| match part.strip_prefix(b"!") {
            Some(script) => Some(Part::Script(script)),
            None => decode(part).ok().map(|n| Part::Notification(part, n)),
        })
        .collect();
    let first = parts.iter().find_map(|p| match p {
        Part::Notification(raw, n) => Some(Part::Notification(raw, n.clone())),
        Part::Script(_) => None,
    });
    let Some(first) = first else {
        return;
    };
    parts.push(first);

    // Drafts only, as with no Prometheus and no Slack configured.
    let planner = incidentd::app::planner(&Config::default());
    let planner: &Planner = &*planner;
    let mut memory = MemoryRepo::new();
    let mut conn = incidentd::store::open_in_memory().expect("an in-memory database opens");
    let mut notifications = 0;
    let mut bodies = std::collections::BTreeSet::new();
    for (i, part) in parts.iter().enumerate() {
        let now = base + Duration::minutes(7 * i as i64);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("a write transaction");
        match part {
            Part::Notification(raw, n) => {
                let hash = Sha256::digest(raw);
                bodies.insert(hash.to_vec());
                notifications += 1;
                notify(&mut memory, &tx, planner, &rules, raw, &hash, n, now);
            }
            Part::Script(script) => {
                for step in script.chunks_exact(2).take(MAX_STEPS) {
                    perform(&mut memory, &tx, planner, &rules, step[0], step[1], now);
                }
            }
        }
        tx.commit().expect("commit");
        compare(&memory, &conn);
        let stored: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM notifications), (SELECT count(*) FROM payloads)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("counts");
        assert_eq!(stored, (notifications, bodies.len() as i64));
    }

    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check runs");
    assert_eq!(integrity, "ok");
    let violations: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check runs");
    assert_eq!(violations, 0, "foreign key violations");
});

/// One webhook, as `POST /webhook/alertmanager` stores it, and into the reference.
#[allow(clippy::too_many_arguments)]
fn notify(
    memory: &mut MemoryRepo,
    tx: &Transaction,
    planner: &Planner,
    rules: &Rules,
    raw: &[u8],
    hash: &[u8],
    n: &ValidNotification,
    now: Timestamp,
) {
    let expected = match ingest_all(memory, rules, &n.group_key, &n.alerts, now) {
        Ok(o) => o,
        Err(never) => match never {},
    };
    insert_notification(
        tx,
        now,
        &n.receiver,
        n.status.as_str(),
        &n.group_key,
        n.alerts.len(),
        hash,
        raw,
    )
    .expect("the notification is stored");
    let mut repo = SqliteRepo { tx, now };
    let got = ingest_all(&mut repo, rules, &n.group_key, &n.alerts, now)
        .unwrap_or_else(|e| panic!("SQLite ingest failed: {e}"));
    let changes: Vec<Change> = got.iter().map(Change::Alert).collect();
    plan(planner, tx, &changes);
    assert_eq!(got, expected, "outcomes differ (SQLite left, memory right)");
}

/// One step of a script: a person's action on an incident (as the API applies it), or the
/// reconciler resolving a firing occurrence as lost.
fn perform(
    memory: &mut MemoryRepo,
    tx: &Transaction,
    planner: &Planner,
    rules: &Rules,
    op: u8,
    arg: u8,
    now: Timestamp,
) {
    let incidents = memory.incidents();
    let mut repo = SqliteRepo { tx, now };
    if op % 4 == 3 {
        let firing: Vec<(String, Timestamp)> = incidents
            .iter()
            .flat_map(|i| &i.alerts)
            .filter(|o| o.status == AlertStatus::Firing)
            .map(|o| (o.fingerprint.clone(), o.starts_at))
            .collect();
        let Some((fp, starts_at)) = firing.get(usize::from(arg) % firing.len().max(1)) else {
            return;
        };
        // The reconciler resolves as of when it first noticed the alert missing.
        let noticed = now - Duration::minutes(i64::from(arg % 8));
        let expected = match resolve_gone(memory, rules, fp, *starts_at, noticed) {
            Ok(o) => o,
            Err(never) => match never {},
        };
        let got = resolve_gone(&mut repo, rules, fp, *starts_at, noticed)
            .unwrap_or_else(|e| panic!("SQLite resolve_gone failed: {e}"));
        if let Some(o) = &got {
            plan(planner, tx, &[Change::Alert(o)]);
        }
        assert_eq!(got, expected, "resolve_gone differs (SQLite left)");
        return;
    }
    // Mostly an incident that exists; now and then one that does not.
    let id = match incidents.get(usize::from(arg) % (incidents.len() + 1)) {
        Some(i) => i.id.clone(),
        None => format!("INC-2026-{:04}", 9000 + u32::from(arg)),
    };
    let action = match op % 4 {
        0 => Action::Acknowledge,
        1 => Action::Note(format!("note {arg}: `x` | <b> '; DROP TABLE incidents; --")),
        _ => Action::Resolve,
    };
    let by = "carol";
    let expected = act(memory, rules, &id, by, &action, now);
    let got = act(&mut repo, rules, &id, by, &action, now);
    match (got, expected) {
        (Ok(got), Ok(expected)) => {
            assert_eq!(
                normalize(got),
                normalize(expected),
                "acted incident differs (SQLite left)"
            );
            let change = Change::Person {
                incident_id: &id,
                by,
                action: &action,
            };
            plan(planner, tx, &[change]);
        }
        (Err(ActionError::Repo(e)), _) => panic!("SQLite act failed: {e}"),
        (Err(ActionError::NotFound(a)), Err(ActionError::NotFound(b))) => assert_eq!(a, b),
        (Err(ActionError::Conflict(a)), Err(ActionError::Conflict(b))) => assert_eq!(a, b),
        (got, expected) => panic!("act differs: SQLite {got:?}, memory {expected:?}"),
    }
}

fn compare(memory: &MemoryRepo, conn: &Connection) {
    let mut ids: Vec<String> = conn
        .prepare("SELECT id FROM incidents")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("incident ids");
    ids.sort();
    let expected = memory.incidents();
    let expected_ids: Vec<&str> = expected.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, expected_ids, "incident ids differ (SQLite left)");
    for want in expected {
        let got = full_incident(conn, &want.id)
            .expect("the incident reads back")
            .expect("the incident exists");
        assert_eq!(
            normalize(got),
            normalize(want),
            "incident differs (SQLite left)"
        );
    }
}

/// Members by identity and timeline rows by content: among rows at the same instant each
/// repo has its own order (SQLite: human rows first, then derived in insertion order;
/// memory: by kind), which is presentation, not state. The API's summary row of repeated
/// notifications is added on read by SQLite only, from counters compared anyway.
fn normalize(mut i: Incident) -> Incident {
    i.alerts
        .sort_by(|a, b| (&a.fingerprint, a.starts_at).cmp(&(&b.fingerprint, b.starts_at)));
    i.timeline.retain(|e| e.kind != EventKind::Notifications);
    i.timeline
        .sort_by(|a, b| (a.at, a.kind, &a.actor, &a.text).cmp(&(b.at, b.kind, &b.actor, &b.text)));
    i
}

/// Queue the follow-up jobs of `changes` in `tx`, as the store does.
fn plan(planner: &Planner, tx: &Transaction, changes: &[Change]) {
    let now = chrono::Utc::now();
    let mut repo = SqliteRepo { tx, now };
    for (id, spec) in followup::plan(planner, changes) {
        repo.enqueue(&NewJob {
            kind: spec.kind,
            incident_id: Some(&id),
            payload: &spec.payload,
            coalesce: spec.coalesce,
            run_at: now + spec.delay,
            now,
        })
        .expect("jobs are planned");
    }
}
