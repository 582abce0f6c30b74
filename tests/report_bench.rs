//! The reports' read with 100,000 stored incidents (the goal for the reports page is
//! 200 ms at p99): `cargo test --release --test report_bench -- --ignored --nocapture`.
//! Rows are written straight into a SQLite file with the daemon's schema; the timing is the
//! store's read plus `report::build`, the part of the page this crate owns.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use incidentd::report::{build, Period};
use incidentd::store::{ReportQuery, Store};

const INCIDENTS: i64 = 100_000;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run with --release -- --ignored"]
async fn a_report_over_100k_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).unwrap();
    store.close().await;
    let now = t("2026-12-01T00:00:00Z");
    // 100,000 incidents over two years, 12 services, 40 alert names, 1 to 3 firings each.
    {
        let mut conn = rusqlite::Connection::open(dir.path().join("incidentd.db")).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut inc = tx
                .prepare(
                    "INSERT INTO incidents (id, seq, key, title, status, severity, service, \
                     impact_start, impact_start_method, fired_at, detected_at, acknowledged_at, \
                     resolved_at, reopen_count, received, duplicate, stale, version, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'critical', ?6, ?7, 'starts_at', ?8, ?9, ?10, \
                     ?11, ?12, 1, 0, 0, 1, ?9)",
                )
                .unwrap();
            let mut occ = tx
                .prepare(
                    "INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, \
                     alertname, labels, annotations, generator_url, group_key, first_seen_at, \
                     last_seen_at) VALUES (?1, ?2, ?3, 'resolved', ?4, '{}', '{}', '', '', ?2, ?2)",
                )
                .unwrap();
            let span = 2 * 365 * 86_400_000_000i64;
            for n in 0..INCIDENTS {
                let fired =
                    (now - Duration::microseconds(span)).timestamp_micros() + span / INCIDENTS * n;
                let id = format!("INC-2026-{n:06}");
                let service = format!("service-{}", n % 12);
                let resolved = n % 10 != 0;
                inc.execute(rusqlite::params![
                    id,
                    n,
                    format!("service=\"{service}\""),
                    format!("{service}: alert {}", n % 40),
                    if resolved { "resolved" } else { "open" },
                    service,
                    fired - 60_000_000,
                    fired,
                    fired + 30_000_000,
                    (n % 3 != 0).then_some(fired + 200_000_000),
                    resolved.then_some(fired + 1_800_000_000 + n % 1000 * 1_000_000),
                    n % 7 / 5,
                ])
                .unwrap();
                for k in 0..(1 + n % 3) {
                    occ.execute(rusqlite::params![
                        format!("{n:x}-{k}"),
                        fired + k * 1_000_000,
                        id,
                        format!("Alert{}", (n + k) % 40),
                    ])
                    .unwrap();
                }
            }
        }
        // The alerts' tallies, as saving an incident sets them (migration 11).
        tx.execute_batch(
            "UPDATE incidents SET alert_tally = (SELECT coalesce(group_concat(n || ':' || \
             length(CAST(alertname AS BLOB)) || ':' || alertname, ''), '') FROM (SELECT \
             alertname, count(*) AS n FROM occurrences WHERE incident_id = incidents.id \
             GROUP BY alertname))",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open_sqlite(dir.path()).unwrap();
    for (label, days, by) in [
        ("30 days by week", 30, Period::Week),
        ("1 year by month", 365, Period::Month),
        ("all 2 years by month", 731, Period::Month),
        ("all 2 years by week", 731, Period::Week),
    ] {
        let query = ReportQuery {
            since: now - Duration::days(days),
            until: now,
            service: None,
        };
        let (mut times, mut reads, mut builds, mut json) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut incidents = 0;
        for _ in 0..30 {
            let started = Instant::now();
            let rows = store
                .report_rows(query.clone(), incidentd::report::TOP)
                .await
                .unwrap();
            let read = started.elapsed();
            reads.push(read);
            let report = build(&query, by, chrono_tz::UTC, now, &rows);
            let built = started.elapsed();
            builds.push(built - read);
            let body = serde_json::to_vec(&report).unwrap();
            json.push(started.elapsed() - built);
            times.push(built);
            incidents = report.total.incidents;
            assert!(!body.is_empty());
        }
        times.sort();
        reads.sort();
        builds.sort();
        json.sort();
        println!(
            "report over {label}: {incidents} incidents of {INCIDENTS}; read + build p50 {:?}, \
             p99 {:?} (read alone p50 {:?}, build alone p50 {:?}, JSON alone p50 {:?})",
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            reads[reads.len() / 2],
            builds[builds.len() / 2],
            json[json.len() / 2],
        );
        assert!(incidents > 0);
    }
    store.close().await;
}
