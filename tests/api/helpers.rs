//! `spawn_app()`: the daemon on 127.0.0.1 port 0 with a fresh database and a scripted clock.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use incidentd::app::{App, Options};
use incidentd::config::Config;
use serde_json::Value;

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub clock: Arc<Mutex<DateTime<Utc>>>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn scenario(file: &str) -> PathBuf {
    fixtures().join("scenario-single").join(file)
}

pub fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The recorded webhooks of scenario-single with their arrival times, in arrival order.
pub fn recorded_webhooks() -> Vec<(String, DateTime<Utc>, Vec<u8>)> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(scenario("webhooks/index.json")).unwrap()).unwrap();
    index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().to_string();
            let at = time(e["received_at"].as_str().unwrap());
            let body = std::fs::read(scenario(&file)).unwrap();
            (file, at, body)
        })
        .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_in(config, dir).await
}

pub async fn spawn_app_in(mut config: Config, dir: tempfile::TempDir) -> TestApp {
    config.postmortem.output_dir = dir.path().join("drafts");
    let clock = Arc::new(Mutex::new(time("2026-11-23T14:00:00Z")));
    let c = clock.clone();
    let app = App::build(
        config,
        Options {
            listen_address: "127.0.0.1:0".into(),
            storage_path: Some(dir.path().join("data")),
        },
        Arc::new(move || *c.lock().unwrap()),
    )
    .await
    .expect("the app builds");
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        url,
        client: reqwest::Client::new(),
        clock,
        dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn set_time(&self, t: DateTime<Utc>) {
        *self.clock.lock().unwrap() = t;
    }

    pub async fn post_webhook(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/webhook/alertmanager", self.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{}", self.url, path))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The body of a GET of `path` as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        self.get_text_with(path, &[]).await
    }

    /// [`Self::get_text`] with these request headers.
    pub async fn get_text_with(&self, path: &str, headers: &[(&str, &str)]) -> String {
        let mut request = self.client.get(format!("{}{}", self.url, path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap().text().await.unwrap()
    }

    pub async fn incidents(&self) -> Vec<Value> {
        let (status, body) = self.get_json("/api/v1/incidents").await;
        assert_eq!(status, 200, "{body}");
        body["incidents"].as_array().unwrap().clone()
    }

    /// Wait (bounded) until `path` exists.
    pub async fn wait_for_file(&self, path: &Path) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn incident(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/v1/incidents/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Stop serving and close the database; returns the data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

/// How many raw notifications the database holds (read from the SQLite file itself).
pub fn stored_notifications(dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("data/incidentd.db")).unwrap();
    conn.query_row("SELECT count(*) FROM notifications", [], |r| r.get(0))
        .unwrap()
}

/// A one-alert payload built from the recorded firing webhook, with changes.
pub fn payload(edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(scenario(
            "webhooks/01-firing-DatabaseConnectionPoolHigh.json",
        ))
        .unwrap(),
    )
    .unwrap();
    edit(&mut v);
    v.to_string()
}

/// The real binary, serving on a free loopback port; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start the binary on `data` and wait until it is ready.
pub async fn start_daemon(data: &std::path::Path) -> Daemon {
    start_daemon_with(data, None, &[]).await
}

/// Start the binary on `data` with a configuration file and environment variables.
pub async fn start_daemon_with(
    data: &std::path::Path,
    config: Option<&Path>,
    env: &[(&str, &str)],
) -> Daemon {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_incidentd"));
    command.args(["serve", &format!("--web.listen-address=127.0.0.1:{port}")]);
    if let Some(config) = config {
        command.arg(format!("--config.file={}", config.display()));
    }
    let child = command
        .envs(env.iter().copied())
        .arg(format!("--storage.path={}", data.display()))
        // Drafts go to ./drafts: keep them beside the data, out of the repository.
        .current_dir(data.parent().expect("data has a parent"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the incidentd binary starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/-/ready")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "incidentd did not become ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Daemon { child, url }
}

/// A daemon behind `--web.config.file` with TLS (a fresh self-signed certificate, also in
/// `dir/ca.crt` for clients to trust) and basic auth (`alice` / `s3cret`), and a client that
/// trusts it (no redirects followed). Stops when dropped.
pub struct TlsApp {
    pub url: String,
    pub client: reqwest::Client,
    /// Holds `ca.crt`, `web.yml`, the data and the drafts.
    pub dir: tempfile::TempDir,
    /// The web config file, read again per request: tests rewrite it.
    pub web_yml: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TlsApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A bcrypt hash at the lowest cost, to keep tests fast (the format is the same).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// A web config file: TLS with `tls/server.*`, a header, and these users.
pub fn web_yml(users: &[(&str, &str)]) -> String {
    let mut yml = "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n\
                   http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        .to_string();
    if !users.is_empty() {
        yml.push_str("basic_auth_users:\n");
        for (user, password) in users {
            yml.push_str(&format!("  {user}: '{}'\n", bcrypt_hash(password)));
        }
    }
    yml
}

/// [`TlsApp`], its configuration edited first.
pub async fn spawn_tls_with(edit: impl FnOnce(&mut Config)) -> TlsApp {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/server.crt"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("tls/server.key"),
        certified.key_pair.serialize_pem(),
    )
    .unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, web_yml(&[("alice", "s3cret")])).unwrap();
    let file = incidentd::http::web_config::WebConfigFile::load(&web).unwrap();
    let mut config = Config::default();
    config.postmortem.output_dir = dir.path().join("drafts");
    edit(&mut config);
    let clock = Arc::new(Mutex::new(time("2026-11-23T14:00:00Z")));
    let app = App::build(
        config,
        Options {
            listen_address: "127.0.0.1:0".into(),
            storage_path: Some(dir.path().join("data")),
        },
        Arc::new(move || *clock.lock().unwrap()),
    )
    .await
    .unwrap()
    .with_web_config(file);
    let url = format!("https://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    std::fs::write(dir.path().join("ca.crt"), certified.cert.pem()).unwrap();
    TlsApp {
        url,
        client,
        dir,
        web_yml: web,
        stop: Some(stop),
    }
}

/// A daemon asking the Prometheus at `url`, with short delays so tests stay fast, and the
/// repository's evidence rules.
pub fn prometheus_config(url: &str) -> Config {
    let mut prometheus = incidentd::config::PrometheusConfig::new(url);
    prometheus.timeout = std::time::Duration::from_secs(2);
    prometheus.quick_snapshot_delay = std::time::Duration::from_millis(50);
    prometheus.snapshot_delay = std::time::Duration::from_millis(100);
    prometheus.retry_backoff = std::time::Duration::from_millis(100);
    Config {
        prometheus: Some(prometheus),
        rules_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")),
        ..Config::default()
    }
}

/// Polls the incident until `done` holds (at most 15 s); returns it.
pub async fn wait_for_incident(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let incident = app.incident(id).await;
        if done(&incident) {
            return incident;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw {what}: {incident:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Whether the incident has evidence snapshots.
pub fn has_snapshots(i: &Value) -> bool {
    i["snapshots"].as_array().is_some_and(|s| !s.is_empty())
}
