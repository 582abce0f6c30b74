//! `incidentd migrate`: an installation on SQLite (the recorded scenario, with evidence-less
//! drafts, jobs and raw payloads) copied into a throwaway PostgreSQL, every row there, the
//! identities continuing after the copied ids, and a second migration into the same database
//! refused. Skips without the PostgreSQL binaries, fails under `INCIDENTD_REQUIRE_E2E=1`.

#[path = "support/postgres.rs"]
mod pg;

use std::process::Command;
use std::sync::Arc;

use incidentd::config::{Config, PostgresConfig};
use incidentd::store::postgres::{connect, Dsn};
use incidentd::store::Store;

/// A SQLite installation after the recorded scenario: incidents, timeline, payloads, jobs.
async fn installation(dir: &std::path::Path) -> usize {
    let config = Config::default();
    let store = Store::open_sqlite(dir).expect("opens").with_followups(
        Arc::new(incidentd::app::rules(&config)),
        incidentd::app::planner(&config),
    );
    let webhooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenario-single/webhooks");
    let mut names: Vec<_> = std::fs::read_dir(&webhooks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "index.json")
        .collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        let raw = std::fs::read(path).unwrap();
        let n = incidentd::alertmanager::decode(&raw).expect("a recorded webhook decodes");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T02:26:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
            + chrono::Duration::seconds(10 * i as i64);
        store.ingest(n, raw.into(), at).await.expect("ingested");
    }
    // One job left running, as when the old daemon was stopped mid-job.
    let job = store
        .claim_job("render", chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("claims");
    assert!(job.is_some(), "the scenario queued drafts");
    store.close().await;
    names.len()
}

fn count(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn an_sqlite_installation_moves_to_postgresql_whole() {
    let Some(cluster) = pg::shared_or_skip("migrate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let webhooks = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(installation(&data));

    let url = cluster.create_database("migrated");
    std::fs::write(dir.path().join("pg-url"), &url).unwrap();
    std::fs::write(
        dir.path().join("incidentd.yml"),
        "storage:\n  backend: postgres\n  postgres:\n    url_file: pg-url\n    sslmode: disable\n",
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_incidentd"))
            .arg("migrate")
            .arg("--from")
            .arg(format!("sqlite:{}", data.display()))
            .arg("--config.file")
            .arg(dir.path().join("incidentd.yml"))
            .output()
            .expect("runs")
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("incidents"), "{stdout}");

    // Every row, compared with the source table by table.
    let source = rusqlite::Connection::open(data.join("incidentd.db")).unwrap();
    let mut client = connect(&PostgresConfig::new(Dsn::parse(&url).unwrap())).unwrap();
    for table in [
        "incidents",
        "occurrences",
        "timeline",
        "payloads",
        "notifications",
        "jobs",
        "incident_sequences",
    ] {
        let want: i64 = source
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert!(want > 0, "the installation has {table}");
        assert_eq!(
            count(&mut client, &format!("SELECT count(*) FROM {table}")),
            want,
            "{table}"
        );
    }
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM notifications"),
        webhooks as i64
    );
    // The bodies byte for byte.
    let bodies: Vec<Vec<u8>> = source
        .prepare("SELECT body FROM payloads ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let copied: Vec<Vec<u8>> = client
        .query("SELECT body FROM payloads ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bodies, copied);
    // The search's alert names arrive with the incidents, as PostgreSQL's triggers would have
    // made them, and its trigram index finds them.
    let names: Vec<(String, String)> = source
        .prepare("SELECT id, alertnames FROM incidents ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(names.iter().all(|(_, n)| !n.is_empty()), "{names:?}");
    let copied: Vec<(String, String)> = client
        .query("SELECT id, alertnames FROM incidents ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(names, copied);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM incidents WHERE alertnames <> incident_alertnames(id)"
        ),
        0
    );
    let with_name = |names: &[(String, String)]| {
        names
            .iter()
            .filter(|(_, n)| n.to_ascii_lowercase().contains("higherror"))
            .count() as i64
    };
    assert!(with_name(&names) > 0, "{names:?}");
    client
        .batch_execute("SET enable_seqscan = off; SET enable_indexscan = off")
        .unwrap();
    let search = "SELECT count(*) FROM incidents WHERE alertnames ILIKE '%higherror%'";
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {search}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("incidents_alertnames_search")),
        "{plan:#?}"
    );
    assert_eq!(count(&mut client, search), with_name(&names));
    client
        .batch_execute("RESET enable_seqscan; RESET enable_indexscan")
        .unwrap();
    // The job that was running is queued again; none is left running.
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM jobs WHERE state = 'running'"
        ),
        0
    );
    // Identities continue after the copied ids.
    let max_job = count(&mut client, "SELECT max(id) FROM jobs");
    let next: i64 = client
        .query_one(
            "INSERT INTO jobs (kind, payload, \"coalesce\", state, run_at, created_at) \
             VALUES ('test', 'null', false, 'done', 0, 0) RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(next > max_job, "new job id {next} after {max_job}");

    // A second migration into a database that holds data is refused, and changes nothing.
    let again = run();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("migrate into an empty database"), "{err}");
}
