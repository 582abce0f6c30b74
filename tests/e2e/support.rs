//! Support for the end-to-end tests: finding the real Prometheus and Alertmanager binaries
//! (or skipping loudly), processes that die with the test, the payment-service exporter the
//! test drives, a relay that records what Alertmanager delivers to incidentd, the
//! configurations derived from `examples/`, and bounded waiting.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Set to `1` to fail instead of skipping when a binary is missing (CI sets it).
pub const REQUIRE_ENV: &str = "INCIDENTD_REQUIRE_E2E";
/// Set to `1` to keep each test's temporary directory (configs, logs, database, drafts).
pub const KEEP_ENV: &str = "INCIDENTD_E2E_KEEP";

/// The service the exporter plays.
pub const SERVICE: &str = "payment-service";
/// The three alerts of the example rules, sorted.
pub const ALERTS: [&str; 3] = [
    "DatabaseConnectionPoolHigh",
    "HighErrorRate",
    "HighRequestLatency",
];

/// The repository root (tests run with the package root as working directory, but do not
/// rely on it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Binaries, or a loud skip.

/// The real tools the end-to-end tests drive.
#[derive(Debug, Clone)]
pub struct Tools {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
    pub alertmanager: PathBuf,
    pub amtool: PathBuf,
}

/// First of `names` on PATH, unless the variable `env` names a binary.
fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The tools, or `None` after a loud SKIP (a panic under `INCIDENTD_REQUIRE_E2E=1`).
pub fn tools_or_skip(test: &str) -> Option<Tools> {
    let found = (
        find_binary("PROMETHEUS_BIN", &["prometheus"]),
        find_binary("PROMTOOL_BIN", &["promtool"]),
        // Debian names the binary prometheus-alertmanager; upstream tarballs alertmanager.
        find_binary(
            "ALERTMANAGER_BIN",
            &["prometheus-alertmanager", "alertmanager"],
        ),
        find_binary("AMTOOL_BIN", &["amtool"]),
    );
    match found {
        (Some(prometheus), Some(promtool), Some(alertmanager), Some(amtool)) => Some(Tools {
            prometheus,
            promtool,
            alertmanager,
            amtool,
        }),
        (p, pt, am, at) => {
            let missing: Vec<&str> = [
                ("prometheus", p.is_none()),
                ("promtool", pt.is_none()),
                ("prometheus-alertmanager", am.is_none()),
                ("amtool", at.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| n)
            .collect();
            let msg = format!(
                "{} not found; install them with `apt-get install -y --no-install-recommends \
                 prometheus prometheus-alertmanager` (or set PROMETHEUS_BIN, PROMTOOL_BIN, \
                 ALERTMANAGER_BIN, AMTOOL_BIN)",
                missing.join(", ")
            );
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_ENV}=1 but {msg}");
            }
            // Straight to the stderr handle: libtest captures eprintln! of passing tests.
            let bang = "!".repeat(78);
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n{bang}\nSKIP {test}: {msg}\n{bang}\n"
            );
            None
        }
    }
}

/// VictoriaMetrics, vmalert and Alertmanager, for the VictoriaMetrics end-to-end test.
#[derive(Debug, Clone)]
pub struct VmTools {
    pub victoria_metrics: PathBuf,
    pub vmalert: PathBuf,
    pub alertmanager: PathBuf,
}

/// The VictoriaMetrics tools, or `None` after a loud SKIP (a panic under
/// `INCIDENTD_REQUIRE_E2E=1`).
pub fn vm_tools_or_skip(test: &str) -> Option<VmTools> {
    let found = (
        find_binary("VICTORIA_METRICS_BIN", &["victoria-metrics"]),
        find_binary("VMALERT_BIN", &["vmalert"]),
        find_binary(
            "ALERTMANAGER_BIN",
            &["prometheus-alertmanager", "alertmanager"],
        ),
    );
    match found {
        (Some(victoria_metrics), Some(vmalert), Some(alertmanager)) => Some(VmTools {
            victoria_metrics,
            vmalert,
            alertmanager,
        }),
        (v, va, am) => {
            let missing: Vec<&str> = [
                ("victoria-metrics", v.is_none()),
                ("vmalert", va.is_none()),
                ("prometheus-alertmanager", am.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| n)
            .collect();
            let msg = format!(
                "{} not found; install them with `apt-get install -y --no-install-recommends \
                 victoria-metrics prometheus-alertmanager` (or set VICTORIA_METRICS_BIN, \
                 VMALERT_BIN, ALERTMANAGER_BIN)",
                missing.join(", ")
            );
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_ENV}=1 but {msg}");
            }
            loud(&format!("SKIP {test}: {msg}"));
            None
        }
    }
}

/// A message that must be seen even when the test passes (libtest captures `eprintln!`).
pub fn loud(text: &str) {
    let bang = "!".repeat(78);
    let _ = writeln!(std::io::stderr().lock(), "\n{bang}\n{text}\n{bang}\n");
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A child process killed when dropped (panics included); its log's tail is shown when the
/// test fails.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin args…` in `dir`, stdout and stderr to `dir/<name>.log`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create a process log");
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", bin.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Fails if the process has exited already (a bad flag or config shows up here).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}; its log:\n{}",
                self.name,
                tail(&self.log, 40)
            );
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr().lock(),
                "--- {} log (last lines) ---\n{}",
                self.name,
                tail(&self.log, 40)
            );
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free loopback port, for programs that must be told their port up front. (Bound, read,
/// released: another process could take it in between, which on a test machine is rare
/// enough.)
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 250 ms until it yields, failing after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `url` answers 2xx.
pub async fn wait_ready(http: &reqwest::Client, what: &str, url: &str, procs: &mut [&mut Proc]) {
    wait_for(what, Duration::from_secs(30), || {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        let req = http.get(url).timeout(Duration::from_secs(2)).send();
        async move {
            let r = req.await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The exporter.

/// What the payment service is going through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Normal,
    /// Connection pool at 97–100 %, a quarter of requests failing, p99 latency of seconds.
    Incident,
    Recovered,
}

/// Upper bounds of the request-duration histogram's buckets (+Inf implied).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests per second, whatever the phase.
const RPS: f64 = 50.0;

impl Phase {
    /// Share of requests per bucket (not cumulative); they sum to 1.
    fn latency_shares(self) -> [f64; 11] {
        match self {
            // p99 ≈ 0.25 s.
            Phase::Normal | Phase::Recovered => {
                [0.0, 0.1, 0.3, 0.3, 0.2, 0.095, 0.005, 0.0, 0.0, 0.0, 0.0]
            }
            // p99 ≈ 4.9 s.
            Phase::Incident => [0.0, 0.0, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.0],
        }
    }

    fn error_share(self) -> f64 {
        match self {
            Phase::Normal | Phase::Recovered => 0.01,
            Phase::Incident => 0.25,
        }
    }

    /// Active connections of a pool of 100 at the `n`th scrape.
    fn pool_active(self, n: u64) -> f64 {
        match self {
            Phase::Normal => 18.0 + (n % 5) as f64,
            Phase::Incident => 97.0 + (n % 4) as f64,
            Phase::Recovered => 25.0 + (n % 5) as f64,
        }
    }
}

struct Counters {
    phase: Phase,
    /// Traffic is accounted up to here.
    last: Instant,
    scrapes: u64,
    ok: f64,
    e500: f64,
    e503: f64,
    buckets: [f64; 11],
    sum: f64,
    count: f64,
}

impl Counters {
    /// Adds the traffic of the current phase since `last`.
    fn advance(&mut self, now: Instant) {
        let n = RPS * now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let err = self.phase.error_share();
        self.ok += n * (1.0 - err);
        self.e500 += n * err * 2.0 / 3.0;
        self.e503 += n * err / 3.0;
        let shares = self.phase.latency_shares();
        let mut lower = 0.0;
        for (i, share) in shares.iter().enumerate() {
            self.buckets[i] += n * share;
            self.sum += n * share * (lower + BUCKETS[i]) / 2.0;
            lower = BUCKETS[i];
        }
        self.count += n;
    }

    fn render(&mut self) -> String {
        self.scrapes += 1;
        let pool = self.phase.pool_active(self.scrapes);
        let mut out = String::new();
        out.push_str("# HELP db_connection_pool_active Connections of the pool in use.\n");
        out.push_str("# TYPE db_connection_pool_active gauge\n");
        out.push_str(&format!(
            "db_connection_pool_active{{pool=\"primary\"}} {pool}\n"
        ));
        out.push_str("# HELP db_connection_pool_max Size of the pool.\n");
        out.push_str("# TYPE db_connection_pool_max gauge\n");
        out.push_str("db_connection_pool_max{pool=\"primary\"} 100\n");
        out.push_str("# HELP http_requests_total Requests served, by status code.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for (code, v) in [("200", self.ok), ("500", self.e500), ("503", self.e503)] {
            out.push_str(&format!(
                "http_requests_total{{handler=\"/api/v1/payments\",method=\"POST\",code=\"{code}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP http_request_duration_seconds Request latency.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        let mut cumulative = 0.0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i];
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{handler=\"/api/v1/payments\",le=\"{le}\"}} {cumulative}\n"
            ));
        }
        out.push_str(&format!(
            "http_request_duration_seconds_bucket{{handler=\"/api/v1/payments\",le=\"+Inf\"}} {}\n\
             http_request_duration_seconds_sum{{handler=\"/api/v1/payments\"}} {}\n\
             http_request_duration_seconds_count{{handler=\"/api/v1/payments\"}} {}\n",
            self.count, self.sum, self.count
        ));
        out
    }
}

/// The payment-service exporter, served by the test on 127.0.0.1 (port 0).
#[derive(Clone)]
pub struct Exporter {
    pub addr: String,
    counters: Arc<Mutex<Counters>>,
}

async fn serve_metrics(State(counters): State<Arc<Mutex<Counters>>>) -> impl IntoResponse {
    let mut c = counters.lock().expect("exporter lock");
    c.advance(Instant::now());
    ([("content-type", "text/plain; version=0.0.4")], c.render())
}

impl Exporter {
    pub async fn start() -> Exporter {
        let counters = Arc::new(Mutex::new(Counters {
            phase: Phase::Normal,
            last: Instant::now(),
            scrapes: 0,
            ok: 0.0,
            e500: 0.0,
            e503: 0.0,
            buckets: [0.0; 11],
            sum: 0.0,
            count: 0.0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the exporter");
        let addr = listener.local_addr().expect("exporter address").to_string();
        let app = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(counters.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Exporter { addr, counters }
    }

    /// Switches phase and returns the moment of the switch: the truth the test measures
    /// incidentd against.
    pub fn switch(&self, phase: Phase) -> DateTime<Utc> {
        let mut c = self.counters.lock().expect("exporter lock");
        c.advance(Instant::now());
        c.phase = phase;
        Utc::now()
    }
}

// ---------------------------------------------------------------------------------------------
// The relay between Alertmanager and incidentd.

/// One webhook Alertmanager delivered, as incidentd answered it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The sending Alertmanager's `externalURL`.
    pub from: String,
    pub authorization: Option<String>,
    /// incidentd's answer; 0 when the relay could not reach incidentd at all.
    pub status: u16,
    /// What incidentd answered, or why the relay could not deliver.
    pub answer: String,
    pub body: Value,
    pub body_bytes: Bytes,
    pub at: DateTime<Utc>,
}

impl Delivery {
    /// `(alertname, status)` of each alert.
    pub fn alerts(&self) -> Vec<(String, String)> {
        self.body["alerts"]
            .as_array()
            .map(|alerts| {
                alerts
                    .iter()
                    .map(|a| {
                        (
                            a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                            a["status"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct RelayState {
    target: String,
    http: reqwest::Client,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    in_flight: Arc<AtomicUsize>,
}

/// A transparent relay in front of incidentd's webhook: Alertmanager's receiver URL points
/// here, every request is forwarded as it came (body, content type, Authorization) and
/// incidentd's answer is passed back. It lets the test count exactly what Alertmanager
/// delivered and which replica sent it, which incidentd's own counters must then match.
#[derive(Clone)]
pub struct Relay {
    pub url: String,
    state: RelayState,
}

async fn relay(State(s): State<RelayState>, headers: HeaderMap, body: Bytes) -> Response {
    s.in_flight.fetch_add(1, Ordering::SeqCst);
    let mut req = s.http.post(&s.target).body(body.clone());
    for name in ["content-type", "authorization", "user-agent"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, answer) = match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap_or_default())
        }
        // The relay itself could not deliver: not incidentd's answer, so no HTTP status of
        // incidentd's is recorded (0), and Alertmanager gets a 502 and retries.
        Err(e) => (0, Bytes::from(format!("relay: {e}"))),
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.deliveries.lock().expect("relay lock").push(Delivery {
        from: parsed["externalURL"].as_str().unwrap_or("").to_string(),
        authorization,
        status,
        answer: String::from_utf8_lossy(&answer).into_owned(),
        body: parsed,
        body_bytes: body,
        at: Utc::now(),
    });
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        answer,
    )
        .into_response()
}

impl Relay {
    /// Relays `POST /webhook/alertmanager` to `target`.
    pub async fn start(target: String) -> Relay {
        let state = RelayState {
            target,
            // A fresh connection for every delivery. incidentd (hyper) closes a keep-alive
            // connection that stays idle for `web.read_header_timeout`; a pooled connection
            // reused at that very moment fails before incidentd sees the request, which a CI
            // run once recorded as incidentd answering 502.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("the relay's HTTP client"),
            deliveries: Arc::default(),
            in_flight: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let app = Router::new()
            .route("/webhook/alertmanager", post(relay))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Relay {
            url: format!("http://{addr}/webhook/alertmanager"),
            state,
        }
    }

    /// Deliveries answered so far, and whether one is still in flight.
    pub fn deliveries(&self) -> (Vec<Delivery>, bool) {
        let busy = self.state.in_flight.load(Ordering::SeqCst) > 0;
        let d = self.state.deliveries.lock().expect("relay lock").clone();
        (d, busy)
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations. Prometheus rules and the Alertmanager route come from `examples/`, with the
// timings shortened, so that the examples are what the test runs.

/// `examples/prometheus-rules.yml` made fast: every group evaluated each second, every `for`
/// 5s, every `[5m]` range 10s.
pub fn fast_rules(example: &str) -> String {
    let mut doc: Value = serde_norway::from_str(example).expect("the example rules are YAML");
    let groups = doc["groups"]
        .as_array_mut()
        .expect("the example rules have groups");
    for group in groups {
        group["interval"] = Value::from("1s");
        for rule in group["rules"].as_array_mut().expect("a group has rules") {
            let expr = rule["expr"].as_str().expect("a rule has an expr");
            rule["expr"] = Value::from(expr.replace("[5m]", "[10s]"));
            if rule.get("for").is_some() {
                rule["for"] = Value::from("5s");
            }
        }
    }
    serde_norway::to_string(&doc).expect("rules serialise")
}

/// `examples/alertmanager.yml` pointed at `url`, with the token from `token_file`, and the
/// timings of the scenario (group_wait 1s, group_interval 5s).
pub fn fast_alertmanager(example: &str, url: &str, token_file: &Path) -> String {
    let mut doc: Value = serde_norway::from_str(example).expect("the example is YAML");
    doc["route"]["group_wait"] = Value::from("1s");
    doc["route"]["group_interval"] = Value::from("5s");
    let receivers = doc["receivers"]
        .as_array_mut()
        .expect("the example has receivers");
    assert_eq!(receivers.len(), 1, "the example has one receiver");
    let hook = &mut receivers[0]["webhook_configs"][0];
    assert_eq!(hook["send_resolved"], Value::Bool(true));
    hook["url"] = Value::from(url);
    hook["http_config"]["authorization"]["credentials_file"] =
        Value::from(token_file.display().to_string());
    serde_norway::to_string(&doc).expect("config serialises")
}

pub fn prometheus_config(rules: &Path, exporter: &str, alertmanagers: &[u16]) -> String {
    let targets: Vec<String> = alertmanagers
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         alerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs:\n        - targets: [{targets}]\n\
         scrape_configs:\n  - job_name: {SERVICE}\n    static_configs:\n      - targets: ['{exporter}']\n        labels:\n          service: {SERVICE}\n          env: e2e\n",
        rules = rules.display(),
        targets = targets.join(", "),
    )
}

/// A Prometheus-style scrape configuration for VictoriaMetrics' `-promscrape.config`: the
/// exporter every second, with the labels `prometheus_config` gives it.
pub fn vm_scrape_config(exporter: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: {SERVICE}\n    static_configs:\n      - targets: ['{exporter}']\n        labels:\n          service: {SERVICE}\n          env: e2e\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Reading incidentd's answers.

/// A time field of the incident JSON.
pub fn time(v: &Value, field: &str) -> DateTime<Utc> {
    let s = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a time in {v:#}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{field} = {s:?}: {e}"))
        .with_timezone(&Utc)
}

/// `b − a` in seconds.
pub fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// Every array under a key named `snapshots`, anywhere in the JSON: wherever the evidence
/// ends up in the incident, the test finds it.
pub fn find_snapshots(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(a)) = map.get("snapshots") {
                return Some(a.clone());
            }
            map.values().find_map(find_snapshots)
        }
        Value::Array(a) => a.iter().find_map(find_snapshots),
        _ => None,
    }
}
