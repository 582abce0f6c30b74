//! `/metrics` as Prometheus reads it: the exposition must pass `promtool check metrics` (the
//! Debian package `prometheus` ships promtool; CI installs it), and an idle daemon shows a
//! zero series for every job kind it runs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use incidentd::config::{Config, PrometheusConfig, Secret, SlackConfig};

use crate::helpers::*;

/// `promtool`, or `None` after a loud SKIP (a panic under `INCIDENTD_REQUIRE_E2E=1`).
pub(crate) fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    let msg = "promtool not found on PATH (install the Debian package `prometheus`)";
    if std::env::var("INCIDENTD_REQUIRE_E2E").as_deref() == Ok("1") {
        panic!("INCIDENTD_REQUIRE_E2E=1 but {msg}");
    }
    // Straight to the stderr handle: libtest captures eprintln! of passing tests.
    let bang = "!".repeat(72);
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n{bang}\nSKIP metrics: {msg}\n{bang}\n"
    );
    None
}

/// Runs `promtool check metrics` on `exposition`: its exit status and everything it printed.
pub(crate) fn promtool_check(promtool: &str, exposition: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// Prometheus and Slack both configured, both unreachable (port 1 on loopback refuses), so
/// every kind of job runs and evidence and Slack jobs fail.
fn everything_configured_nothing_reachable() -> Config {
    let mut prometheus = PrometheusConfig::new("http://127.0.0.1:1");
    prometheus.quick_snapshot_delay = Duration::from_millis(50);
    prometheus.retry_backoff = Duration::from_millis(100);
    Config {
        prometheus: Some(prometheus),
        rules_dir: Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")),
        slack: Some(SlackConfig {
            api_url: "http://127.0.0.1:1/api/".into(),
            bot_token: Some(Secret::new("xoxb-test")),
            channel: "#incidents".into(),
            signing_secret: None,
            webhook_url: None,
            routes: Vec::new(),
        }),
        ..Config::default()
    }
}

async fn metrics(app: &TestApp) -> (String, String) {
    let response = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.text().await.unwrap())
}

/// Fetches `/metrics` until every line of `wanted` holds (at most 10 s).
async fn metrics_until(app: &TestApp, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = metrics(app).await;
        if wanted(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never saw {what} in\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn an_idle_daemon_shows_every_job_kind_at_zero() {
    let app = spawn_app_with(everything_configured_nothing_reachable()).await;
    let text = metrics_until(&app, "the job kinds", |t| {
        sample(t, r#"incidentd_jobs_queued{kind="render"}"#).is_some()
    })
    .await;
    for kind in ["render", "evidence", "slack"] {
        for family in ["incidentd_jobs_queued", "incidentd_job_failures_total"] {
            let series = format!(r#"{family}{{kind="{kind}"}}"#);
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in\n{text}");
        }
    }
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"incidentd_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
    // Without Prometheus or Slack only drafts are rendered: no series for the others.
    let plain = spawn_app().await;
    let text = metrics_until(&plain, "the render kind", |t| {
        sample(t, r#"incidentd_jobs_queued{kind="render"}"#).is_some()
    })
    .await;
    assert!(!text.contains(r#"kind="evidence""#), "{text}");
    assert!(!text.contains(r#"kind="slack""#), "{text}");
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics_and_count_failed_jobs_by_kind() {
    let Some(promtool) = promtool() else { return };
    let app = spawn_app_with(everything_configured_nothing_reachable()).await;
    let response = app.post_webhook(payload(|_| {})).await;
    assert_eq!(response.status(), 200);
    app.post_webhook("{").await;
    // Prometheus and Slack refuse: their jobs fail, each attempt counted.
    let text = metrics_until(&app, "failed evidence and Slack jobs", |t| {
        ["evidence", "slack"].iter().all(|kind| {
            sample(
                t,
                &format!(r#"incidentd_job_failures_total{{kind="{kind}"}}"#),
            )
            .is_some_and(|n| n >= 1.0)
        })
    })
    .await;
    let (content_type, _) = metrics(&app).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for name in [
        "incidentd_webhooks_received_total",
        "incidentd_alerts_processed_total",
        "incidentd_http_request_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing in\n{text}"
        );
    }
    let (ok, printed) = promtool_check(promtool, &text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics (exit ok: {ok}):\n{printed}\non\n{text}"
    );
}
