//! The impact start against a REAL Prometheus (the Debian package's binary).
//!
//! The test serves a one-gauge exporter itself (axum on 127.0.0.1, port 0), starts Prometheus
//! on a free loopback port with a temporary config and data directory (scrape and evaluation
//! every 1 s, a rule with `for: 5s`), switches the gauge from normal to bad, waits for the
//! alert, and checks that the impact start computed by incidentd is within one evaluation
//! interval of the moment Prometheus could first know (the first scrape after the switch).
//!
//! Without a `prometheus` binary (on PATH, or `PROMETHEUS_BIN`) it prints a loud SKIP and
//! passes, unless `INCIDENTD_REQUIRE_E2E=1`, in which case it fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use incidentd::incident::{ImpactMethod, LabelSet};
use incidentd::prometheus::{
    find_impact_start, find_rule, Client, ClientOptions, ImpactOptions, QueryData,
};

const ALERT: &str = "E2EPoolHigh";

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// Kills Prometheus when the test ends, panics included; shows its log on failure.
struct PrometheusGuard {
    child: Child,
    log: PathBuf,
}

impl Drop for PrometheusGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- prometheus log (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

async fn metrics(State(bad): State<Arc<AtomicBool>>) -> String {
    let v = if bad.load(Ordering::SeqCst) {
        0.99
    } else {
        0.2
    };
    format!(
        "# HELP incidentd_e2e_pool_ratio Share of the connection pool in use.\n\
         # TYPE incidentd_e2e_pool_ratio gauge\n\
         incidentd_e2e_pool_ratio{{pool=\"primary\"}} {v}\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn write_config(dir: &Path, exporter: &str) {
    std::fs::write(
        dir.join("rules.yml"),
        format!(
            "groups:\n  - name: e2e\n    interval: 1s\n    rules:\n      - alert: {ALERT}\n        expr: incidentd_e2e_pool_ratio > 0.95\n        for: 5s\n        labels:\n          severity: critical\n"
        ),
    )
    .expect("rules.yml");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: ['{exporter}']\n        labels:\n          service: e2e-service\n",
            dir.join("rules.yml").display()
        ),
    )
    .expect("prometheus.yml");
}

/// Polls `check` every 200 ms until it yields, failing after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impact_start_from_a_real_prometheus_is_within_one_evaluation_interval_of_the_switch() {
    let Some(binary) = prometheus_binary() else {
        let msg = "prometheus binary not found (install the Debian package `prometheus` or set PROMETHEUS_BIN)";
        if std::env::var("INCIDENTD_REQUIRE_E2E").as_deref() == Ok("1") {
            panic!("INCIDENTD_REQUIRE_E2E=1 but {msg}");
        }
        // Straight to the stderr handle: libtest captures eprintln! of passing tests.
        let bang = "!".repeat(72);
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n{bang}\nSKIP prometheus_real: {msg}\n{bang}\n"
        );
        return;
    };

    // The exporter.
    let bad = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let exporter = listener.local_addr().expect("addr").to_string();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(bad.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // Prometheus.
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &exporter);
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(&binary)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("start prometheus");
    let _guard = PrometheusGuard { child, log };
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&ClientOptions {
        url: url.clone(),
        timeout: Duration::from_secs(5),
        bearer_token: None,
        basic_auth: None,
        headers: vec![],
    })
    .expect("client");

    let http = reqwest::Client::new();
    wait_for("Prometheus to be ready", Duration::from_secs(30), || {
        let http = http.clone();
        let url = format!("{url}/-/ready");
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    // Some normal history first, so the re-evaluation sees the condition false before.
    wait_for("5 normal scrapes", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let d = client
                .query("count_over_time(incidentd_e2e_pool_ratio[1m])", Utc::now())
                .await
                .ok()?;
            match d {
                QueryData::Vector(v) => v
                    .first()
                    .and_then(|s| s.value)
                    .filter(|p| p.value >= 5.0)
                    .map(|_| ()),
                _ => None,
            }
        }
    })
    .await;

    bad.store(true, Ordering::SeqCst);
    let switched_at = Utc::now();

    let alert = wait_for("the alert to fire", Duration::from_secs(40), || {
        let client = client.clone();
        async move {
            let alerts = client.alerts().await.ok()?;
            alerts.into_iter().find(|a| {
                a.labels.get("alertname").map(String::as_str) == Some(ALERT) && a.state == "firing"
            })
        }
    })
    .await;
    let rules = client.rules().await.expect("rules");
    let rule = find_rule(&rules, ALERT, &alert.labels).expect("the alert's rule");
    assert_eq!(rule.for_, Duration::from_secs(5));
    let active_at = alert.active_at.expect("activeAt");
    // What Alertmanager would send as startsAt: Prometheus fires at the first evaluation at
    // least `for` after activeAt; evaluations are 1 s apart and aligned with activeAt.
    let starts_at = active_at + chrono::Duration::seconds(5);

    let impact = find_impact_start(
        &client,
        &rule,
        &alert.labels,
        starts_at,
        &ImpactOptions::default(),
    )
    .await
    .expect("impact start");

    // The first scrape that saw the bad value: the earliest Prometheus could know.
    let first_bad_scrape = first_bad_sample(&client, starts_at).await;
    let scrape_delay = first_bad_scrape - switched_at;
    let vs_scrape = impact.at - first_bad_scrape;
    let vs_switch = impact.at - switched_at;
    eprintln!(
        "switched {switched_at}, first bad scrape {first_bad_scrape} (+{} ms), activeAt {active_at}, \
         startsAt {starts_at}, impact start {} (+{} ms after the switch, +{} ms after the scrape)",
        scrape_delay.num_milliseconds(),
        impact.at,
        vs_switch.num_milliseconds(),
        vs_scrape.num_milliseconds()
    );
    assert_eq!(impact.method, ImpactMethod::RuleReevaluation, "{impact:?}");
    // Found at the group interval (1 s), then narrowed at a tenth of it.
    assert_eq!(impact.step_seconds, Some(0.1));
    // An instant query sees a sample from its timestamp on, so the re-evaluation can never
    // be before the first bad scrape, and the 100 ms grid lands within 100 ms after it.
    assert!(
        vs_scrape >= chrono::Duration::zero() && vs_scrape <= chrono::Duration::milliseconds(100),
        "impact start {} ms after the first bad scrape",
        vs_scrape.num_milliseconds()
    );
    // Against the switch: one evaluation interval plus the scrape delay measured above (the
    // exporter switched between two scrapes; Prometheus cannot know before the next one,
    // itself at most one scrape interval, 1 s, later).
    assert!(
        scrape_delay <= chrono::Duration::milliseconds(1100),
        "scrape delay {scrape_delay}"
    );
    assert!(
        vs_switch <= chrono::Duration::milliseconds(1000) + scrape_delay,
        "impact start {} ms after the switch (scrape delay {} ms)",
        vs_switch.num_milliseconds(),
        scrape_delay.num_milliseconds()
    );
    // And clearly better than the fallbacks: startsAt − for is at activeAt, startsAt 5 s later.
    assert!(impact.at <= starts_at - chrono::Duration::seconds(5));
}

/// Timestamp of the first raw sample above the threshold, from the TSDB itself.
async fn first_bad_sample(client: &Client, before: DateTime<Utc>) -> DateTime<Utc> {
    let d = client
        .query("incidentd_e2e_pool_ratio[2m]", before)
        .await
        .expect("raw samples");
    let QueryData::Matrix(series) = d else {
        panic!("a range vector selector answers a matrix")
    };
    let empty = LabelSet::new();
    let s = series.first().expect("one series");
    assert_ne!(s.metric, empty);
    s.values
        .iter()
        .find(|p| p.value > 0.95)
        .map(|p| p.at)
        .expect("a bad sample before startsAt")
}
