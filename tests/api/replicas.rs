//! Two replicas of the real binary on one throwaway PostgreSQL (issue 15): one is killed with
//! SIGKILL in the middle of a load. Every webhook either replica answered 2xx is there, the
//! other replica keeps answering (a load balancer would send it everything), and the jobs
//! the dead one had claimed are finished by the survivor once their lease expires. A slow
//! Prometheus (every answer 300 ms late) keeps evidence jobs running long enough that the kill
//! finds the replica holding some. Skips without the PostgreSQL binaries; fails under
//! `INCIDENTD_REQUIRE_E2E=1`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::pg;

/// Webhooks in the load: one firing alert of its own service each, so one incident each.
const WEBHOOKS: usize = 60;
/// How many of them are sent before the kill (half to each replica).
const BEFORE_KILL: usize = 30;
/// The job lease of the test: short, so the takeover is quick.
const JOB_LEASE: &str = "3s";

/// A Prometheus that answers every query, with no data, 300 ms late.
async fn slow_prometheus() -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(300))
                .set_body_json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "matrix", "result": [], "groups": []}
                })),
        )
        .mount(&server)
        .await;
    server
}

fn config(dir: &Path, url: &str, prometheus: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/postgres-url"), url).unwrap();
    let path = dir.join("incidentd.yml");
    std::fs::write(
        &path,
        format!(
            "storage:\n  backend: postgres\n  job_lease: {JOB_LEASE}\n  postgres:\n    url_file: secrets/postgres-url\n    sslmode: disable\n\
             postmortem:\n  output_dir: {}\n  render_delay: 200ms\n\
             rules_dir: \"\"\n\
             prometheus:\n  url: {prometheus}\n  quick_snapshot_delay: 100ms\n",
            dir.join("drafts").display()
        ),
    )
    .unwrap();
    path
}

fn webhook(i: usize) -> String {
    payload(|v| {
        let alert = &mut v["alerts"][0];
        alert["labels"]["service"] = format!("svc-{i:03}").into();
        alert["fingerprint"] = format!("{i:016x}").into();
        v["groupKey"] = format!("{{}}:{{service=\"svc-{i:03}\"}}").into();
        v["commonLabels"]["service"] = format!("svc-{i:03}").into();
    })
}

/// Posts webhook `i` to `url`; `true` when answered 2xx.
async fn post(http: &reqwest::Client, url: &str, i: usize) -> bool {
    http.post(format!("{url}/webhook/alertmanager"))
        .header("content-type", "application/json")
        .body(webhook(i))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// One count from the database (the sync client, off the async runtime).
async fn pg_count(url: &str, sql: &str) -> i64 {
    let (url, sql) = (url.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client.query_one(sql.as_str(), &[]).unwrap().get(0)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_no_answered_webhook_and_its_jobs_finish_on_the_other() {
    let Some(cluster) = pg::shared_or_skip("replica killed under load") else {
        return;
    };
    // The sync client of the cluster helper runs off the async runtime.
    let url = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.create_database("killed"))
            .await
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let prometheus = slow_prometheus().await;
    let config = config(dir.path(), &url, &prometheus.uri());
    for side in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    let mut a = start_daemon_with(&dir.path().join("a/data"), Some(&config), &[]).await;
    let b = start_daemon_with(&dir.path().join("b/data"), Some(&config), &[]).await;
    let a_pid = a.child.id();
    let http = reqwest::Client::new();

    // The first part of the load, to both replicas at once, with the kill in the middle.
    let answered = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for i in 0..BEFORE_KILL {
        let (http, answered) = (http.clone(), answered.clone());
        let target = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        tasks.push(tokio::spawn(async move {
            if post(&http, &target, i).await {
                answered.lock().unwrap().insert(i);
            }
        }));
    }
    // The kill comes while the replica holds running jobs (evidence, waiting on Prometheus).
    let mine =
        format!("SELECT count(*) FROM jobs WHERE state = 'running' AND holder LIKE '%/{a_pid}/%'");
    let deadline = Instant::now() + Duration::from_secs(15);
    let held = loop {
        let held = pg_count(&url, &mine).await;
        if held > 0 {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "replica a never held a running job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    eprintln!("the killed replica held {held} running jobs");
    for t in tasks {
        t.await.unwrap();
    }
    // The rest goes to the survivor, which answers every one.
    for i in BEFORE_KILL..WEBHOOKS {
        assert!(
            post(&http, &b.url, i).await,
            "the surviving replica refused webhook {i}"
        );
        answered.lock().unwrap().insert(i);
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= WEBHOOKS - BEFORE_KILL / 2);

    // Every webhook answered 2xx is an incident, whichever replica answered it.
    let list: serde_json::Value = http
        .get(format!("{}/api/v1/incidents?limit=500", b.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let services: BTreeSet<String> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["service"].as_str().map(str::to_string))
        .collect();
    for i in &answered {
        assert!(
            services.contains(&format!("svc-{i:03}")),
            "webhook {i} was answered 2xx but its incident is not there"
        );
    }
    assert_eq!(
        pg_count(&url, "SELECT count(*) FROM incidents").await,
        services.len() as i64,
        "one incident per service"
    );

    // The dead replica's jobs are taken over once their lease lapses and end, and every other
    // job finishes too (open incidents keep one evidence refresh pending, minutes ahead).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = pg_count(
            &url,
            "SELECT count(*) FROM jobs WHERE state = 'running' OR (state = 'pending' \
             AND NOT (kind = 'evidence' AND payload LIKE '%refresh%'))",
        )
        .await;
        let dead = pg_count(&url, &mine).await;
        if left == 0 && dead == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} jobs unfinished ({dead} still the dead replica's) a minute after the load"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pg_count(&url, "SELECT count(*) FROM jobs WHERE state = 'failed'").await,
        0
    );
    let stored = pg_count(&url, "SELECT count(*) FROM drafts").await;
    assert_eq!(stored, services.len() as i64, "a stored draft per incident");
    for id in list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
    {
        assert!(
            dir.path().join("drafts").join(format!("{id}.md")).exists(),
            "no draft on disk for {id}"
        );
    }
}
