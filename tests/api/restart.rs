//! Durability: incidents survive a clean restart, and every webhook answered 2xx survives kill -9.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn a_clean_restart_keeps_every_incident() {
    let app = spawn_app().await;
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let before = app.incident("INC-2026-0001").await;
    let dir = app.stop().await;
    let app = spawn_app_in(incidentd::config::Config::default(), dir).await;
    assert_eq!(app.incident("INC-2026-0001").await, before);
}

#[tokio::test]
async fn every_webhook_answered_2xx_before_kill_9_is_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = start_daemon(&data).await;
    let client = reqwest::Client::new();
    // Eight concurrent senders, each at most 200 webhooks for distinct services, so each
    // answered one is its own incident; the daemon is killed while they are in flight.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, accepted) = (client.clone(), daemon.url.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let n = worker * 1000 + i;
                let body = payload(|v| {
                    v["alerts"][0]["labels"]["service"] = format!("svc-{n}").into();
                    v["alerts"][0]["fingerprint"] = format!("fp{n}").into();
                });
                let r = client
                    .post(format!("{url}/webhook/alertmanager"))
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => accepted.lock().unwrap().push(n),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the daemon is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.lock().unwrap().len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 300,
        "most webhooks before the kill were answered: {}",
        accepted.len()
    );
    drop(daemon);

    // The daemon recovers the database on start; then every answered webhook must be there.
    let daemon = start_daemon(&data).await;
    let last = accepted.iter().max().unwrap();
    let r = client
        .get(format!(
            "{}/api/v1/incidents?service=svc-{last}",
            daemon.url
        ))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["incidents"].as_array().unwrap().len(), 1);
    let conn = rusqlite::Connection::open(data.join("incidentd.db")).unwrap();
    let mut stmt = conn.prepare("SELECT service FROM incidents").unwrap();
    let services: std::collections::HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|s| s.unwrap())
        .collect();
    for n in &accepted {
        assert!(
            services.contains(&format!("svc-{n}")),
            "webhook {n} was answered 200 but is lost"
        );
    }
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = start_daemon(&data).await;
    let status = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "incidentd did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
    // A clean close checkpoints the WAL into the database file.
    let wal = data.join("incidentd.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[tokio::test]
async fn resolved_incidents_past_their_retention_are_pruned_and_open_ones_kept() {
    let app = spawn_app().await;
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        app.post_webhook(body).await;
    }
    app.set_time(time("2026-11-23T13:00:00Z"));
    app.post_webhook(payload(|v| {
        v["alerts"][0]["labels"]["service"] = "still-open".into();
        v["alerts"][0]["fingerprint"] = "00000000000open".into();
        v["alerts"][0]["startsAt"] = "2026-11-23T12:59:00Z".into();
    }))
    .await;
    let dir = app.stop().await;

    // At startup (14:00) with a one-hour retention: the 02:27 resolve is long past.
    let mut config = incidentd::config::Config::default();
    config.storage.incident_retention = std::time::Duration::from_secs(3600);
    let app = spawn_app_in(config, dir).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = app.get_json("/api/v1/incidents/INC-2026-0001").await;
        if status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = app.incidents().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["service"], "still-open");
    let conn = rusqlite::Connection::open(app.dir.path().join("data/incidentd.db")).unwrap();
    let orphans: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM occurrences WHERE incident_id = 'INC-2026-0001') \
             + (SELECT count(*) FROM timeline WHERE incident_id = 'INC-2026-0001') \
             + (SELECT count(*) FROM jobs WHERE incident_id = 'INC-2026-0001')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "its alerts, timeline and jobs went with it");
}

#[tokio::test]
async fn pruning_repeats_every_prune_interval_while_the_daemon_runs() {
    // Startup prune at 14:00 with a day's retention: the 02:27 resolve is kept.
    let mut config = incidentd::config::Config::default();
    config.storage.incident_retention = std::time::Duration::from_secs(24 * 3600);
    config.storage.prune_interval = std::time::Duration::from_millis(100);
    let app = spawn_app_with(config).await;
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        app.post_webhook(body).await;
    }
    app.set_time(time("2026-11-23T14:00:00Z"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = app.get_json("/api/v1/incidents/INC-2026-0001").await;
    assert_eq!(status, 200, "within its retention it stays");

    // Two days later, without a restart: a later round of the loop removes it.
    app.set_time(time("2026-11-25T14:00:00Z"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = app.get_json("/api/v1/incidents/INC-2026-0001").await;
        if status == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never pruned after startup"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
