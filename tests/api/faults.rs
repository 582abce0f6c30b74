//! Faults: a full disk gets 503 (Alertmanager retries) and recovers; repeated kill -9 under
//! load loses no answered webhook and leaves a sound database.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A small tmpfs of our own, unmounted when dropped. `None` where mounting is not allowed.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn big_payload(n: usize) -> String {
    payload(|v| {
        v["alerts"][0]["fingerprint"] = format!("{n:016x}").into();
        v["alerts"][0]["labels"]["service"] = format!("svc-{n}").into();
        v["alerts"][0]["annotations"]["description"] = "d".repeat(64 * 1024).into();
    })
}

#[tokio::test]
async fn a_full_disk_answers_503_keeps_running_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("small"), "3m") else {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root); the full-disk test did not run");
        return;
    };
    let data = dir.path().join("small/data");
    let daemon = start_daemon(&data).await;
    let client = reqwest::Client::new();
    let post = |n: usize| {
        let (client, url) = (client.clone(), daemon.url.clone());
        async move {
            let r = client
                .post(format!("{url}/webhook/alertmanager"))
                .header("Content-Type", "application/json")
                .body(big_payload(n))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").is_some();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, retry_after, body)
        }
    };
    let mut accepted = Vec::new();
    let mut full = None;
    for n in 0..200 {
        let (status, retry_after, body) = post(n).await;
        match status {
            200 => accepted.push(n),
            503 => {
                full = Some((retry_after, body));
                break;
            }
            other => panic!("webhook {n}: unexpected {other}: {body}"),
        }
    }
    let (retry_after, body) = full.expect("the disk filled up within 200 webhooks of 64 KiB");
    assert!(retry_after, "503 carries Retry-After");
    assert_eq!(
        body["error"],
        "storage is temporarily unavailable; retry later"
    );
    assert!(!accepted.is_empty());
    let health = client
        .get(format!("{}/-/healthy", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the daemon stays up");

    fs.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(10);
    let n = 1000;
    loop {
        let (status, _, body) = post(n).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "never recovered after space returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    accepted.push(n);
    for n in accepted {
        let r: serde_json::Value = client
            .get(format!("{}/api/v1/incidents?service=svc-{n}", daemon.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            r["incidents"].as_array().unwrap().len(),
            1,
            "webhook {n} answered 200 but is lost"
        );
    }
    drop(daemon);
}

#[tokio::test]
async fn rounds_of_kill_9_under_load_lose_no_answered_webhook_and_jobs_still_complete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut accepted: Vec<usize> = Vec::new();
    for round in 0..4 {
        let mut daemon = start_daemon(&data).await;
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..4 {
            let (client, url, done) = (client.clone(), daemon.url.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..300 {
                    let n = round * 10_000 + worker * 1000 + i;
                    let body = payload(|v| {
                        v["alerts"][0]["labels"]["service"] = format!("svc-{n}").into();
                        v["alerts"][0]["fingerprint"] = format!("{n:016x}").into();
                    });
                    let r = client
                        .post(format!("{url}/webhook/alertmanager"))
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => done.lock().unwrap().push(n),
                        _ => return,
                    }
                }
            }));
        }
        // Kill at a different moment each round.
        let target = 50 + round * 60;
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.lock().unwrap().len() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        accepted.extend(done.lock().unwrap().iter());
    }
    let daemon = start_daemon(&data).await;
    let conn = rusqlite::Connection::open(data.join("incidentd.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let services: std::collections::HashSet<String> = conn
        .prepare("SELECT service FROM incidents")
        .unwrap()
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
    // Drafts queued before the kills are written after the last restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} jobs never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(daemon);
}
