//! Fuzz target `store` (differential): the same notifications go into the in-memory repo
//! (`MemoryRepo`, the reference) and into the real SQLite repo (`SqliteRepo` over a fresh
//! in-memory database with the daemon's migrations and pragmas), and both must agree.
//!
//! Input format as in `webhook`: split on 0xFF into up to eight notifications received seven
//! minutes apart, the first decodable one delivered again at the end; the first byte picks
//! the reopen window. The SQLite side does what `POST /webhook/alertmanager` does inside its
//! transaction (raw payload row, correlation, job planning), synchronously, one transaction
//! per notification.
//!
//! Checked after every notification:
//! - SQLite never fails (the webhook would answer 500);
//! - both repos give the same outcome per alert;
//! - both hold the same incidents: ids, every stored field, members, and timeline rows;
//! - the notification and its payload row are stored (each distinct body once).
//!
//! At the end: `PRAGMA integrity_check` and `PRAGMA foreign_key_check` find nothing.
#![no_main]

use chrono::{Duration, TimeZone, Utc};
use incidentd::alertmanager::{decode, ValidNotification};
use incidentd::config::Config;
use incidentd::incident::memory::MemoryRepo;
use incidentd::incident::{ingest_all, EventKind, Incident, Rules};
use incidentd::jobs::{self, Change};
use incidentd::store::sqlite::{full_incident, insert_notification, SqliteRepo};
use libfuzzer_sys::fuzz_target;
use rusqlite::{Connection, TransactionBehavior};
use sha2::{Digest, Sha256};

const MAX_NOTIFICATIONS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let window = match data.first() {
        Some(b) => Duration::minutes(i64::from(b % 4) * 15),
        None => Duration::zero(),
    };
    let rules = Rules {
        reopen_window: window,
        ..Rules::default()
    };
    let base = Utc
        .with_ymd_and_hms(2026, 11, 23, 14, 0, 0)
        .single()
        .expect("a valid time");

    let mut decoded: Vec<(&[u8], ValidNotification)> = data
        .split(|&b| b == 0xFF)
        .take(MAX_NOTIFICATIONS)
        .filter_map(|part| decode(part).ok().map(|n| (part, n)))
        .collect();
    if decoded.is_empty() {
        return;
    }
    let first = decoded[0].clone();
    decoded.push(first);

    // Drafts only, as with no Prometheus and no Slack configured.
    let planner = incidentd::app::planner(&Config::default());
    let mut memory = MemoryRepo::new();
    let mut conn = incidentd::store::open_in_memory().expect("an in-memory database opens");
    let mut bodies = std::collections::BTreeSet::new();
    for (i, (raw, n)) in decoded.iter().enumerate() {
        let now = base + Duration::minutes(7 * i as i64);
        let expected = match ingest_all(&mut memory, &rules, &n.group_key, &n.alerts, now) {
            Ok(o) => o,
            Err(never) => match never {},
        };

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("a write transaction");
        let hash = Sha256::digest(raw);
        insert_notification(
            &tx,
            now,
            &n.receiver,
            n.status.as_str(),
            &n.group_key,
            n.alerts.len(),
            &hash,
            raw,
        )
        .expect("the notification is stored");
        bodies.insert(hash.to_vec());
        let mut repo = SqliteRepo { tx: &tx, now };
        let got = ingest_all(&mut repo, &rules, &n.group_key, &n.alerts, now)
            .unwrap_or_else(|e| panic!("SQLite ingest failed: {e}"));
        let changes: Vec<Change> = got.iter().map(Change::Alert).collect();
        jobs::plan(&*planner, &tx, &changes).expect("jobs are planned");
        tx.commit().expect("commit");

        assert_eq!(got, expected, "outcomes differ (SQLite left, memory right)");
        compare(&memory, &conn);
        let stored: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM notifications), (SELECT count(*) FROM payloads)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("counts");
        assert_eq!(stored, ((i + 1) as i64, bodies.len() as i64));
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
