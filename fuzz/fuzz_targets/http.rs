//! Fuzz target `http`: one request per input through the real router
//! (`incidentd::http::router`) of a daemon built by `App::build` over a temp-dir database,
//! with webhook auth (bearer and basic), an API token and a Slack signing secret set so
//! every auth path is reachable. Nothing listens: requests go in with `oneshot`.
//!
//! The request is built with `arbitrary`: a method, one of the real routes with fuzzed ids,
//! chart names and query, or a free path; content type and credentials from a few variants
//! (right, wrong, malformed); a body that is free bytes, an API body, a Slack interaction
//! (signed or not), or a recorded webhook with one field changed.
//!
//! The daemon is built once per process and seeded with the recorded scenario, so incidents
//! `INC-2026-0001..` exist for the writing routes; it is rebuilt fresh every
//! `REBUILD_EVERY` inputs to keep the database (and each check) small. A crash found after
//! many inputs may therefore depend on earlier ones: replay it, and if it passes alone, look
//! at the logged route of the inputs before it.
//!
//! Checked for every input:
//! - no panic, and never a 5xx (500: a bug; 503: storage failing, which it must not here);
//! - every 4xx answer is `{"error": "<non-empty>"}` as JSON (the API's promise), and a 401
//!   outside Slack carries `WWW-Authenticate`;
//! - a writing route never answers 2xx without its credential;
//! - a refused request (any non-2xx) or any read changes nothing stored;
//! - the database still answers, and (every `DEEP_CHECK_EVERY` inputs and at each rebuild)
//!   passes `PRAGMA quick_check` and `PRAGMA foreign_key_check`.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use chrono::{Duration, TimeZone, Utc};
use incidentd::app::{App, Options};
use incidentd::config::{BasicAuth, Config, Secret, SlackConfig, WebhookAuth};
use incidentd::http::AppState;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt;

const WEBHOOK_TOKEN: &str = "webhook-token";
const WEBHOOK_USER: &str = "alertmanager";
const WEBHOOK_PASSWORD: &str = "webhook-password";
const API_TOKEN: &str = "api-token";
const SIGNING_SECRET: &str = "signing-secret";
const REBUILD_EVERY: u64 = 2_000;
const DEEP_CHECK_EVERY: u64 = 200;
/// The router's own limit is 8 MiB; answers here are small, but bound the read anyway.
const MAX_ANSWER: usize = 64 << 20;

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Get,
    Post,
    Put,
    Delete,
    Head,
    Options,
    Patch,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Id {
    /// One of the incidents the seed creates (or a near miss).
    Known(u8),
    /// Well formed, likely absent.
    Formatted(u16, u32),
    Raw(Segment),
}

/// A path segment: percent-encoded unless `raw` (then put in the path as is, `/`, `..` and
/// `%` included; a URI that does not parse is skipped).
#[derive(Arbitrary, Debug)]
struct Segment {
    text: String,
    raw: bool,
}

#[derive(Arbitrary, Debug)]
enum Route {
    Webhook,
    List,
    Show(Id),
    Ack(Id),
    Notes(Id),
    Resolve(Id),
    Postmortem(Id),
    Chart(Id, Segment),
    Slack,
    Metrics,
    Healthy,
    Ready,
    /// Somewhere under the API, or anywhere.
    Free(Vec<Segment>),
}

#[derive(Arbitrary, Debug)]
enum QueryKey {
    Status,
    Service,
    Limit,
    Before,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum ContentType {
    None,
    Json,
    JsonCharset,
    Form,
    Text,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    WebhookBearer,
    WebhookBasic,
    ApiBearer,
    WrongBearer(String),
    WrongBasic(String, String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum BodyChoice {
    Empty,
    Raw(Vec<u8>),
    By(String),
    Note(String, String),
    /// A recorded webhook (by index) with one field set to a fuzzed value.
    Webhook(u8, Option<Edit>),
    Slack(SlackBody),
}

/// Which field of a recorded webhook to change.
#[derive(Arbitrary, Debug)]
enum Field {
    Version,
    Status,
    GroupKey,
    Receiver,
    AlertStatus(u8),
    Fingerprint(u8),
    StartsAt(u8),
    EndsAt(u8),
    Label(u8, String),
    Annotation(u8, String),
    Alerts,
}

#[derive(Arbitrary, Debug)]
enum JsonValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Time(i64, u32),
    Array(Vec<String>),
}

#[derive(Arbitrary, Debug)]
struct Edit {
    field: Field,
    value: JsonValue,
}

#[derive(Arbitrary, Debug)]
struct SlackBody {
    kind: Option<String>,
    action_id: Option<String>,
    incident: Id,
    user: String,
    /// Sign it correctly with the current time (else the signature headers are whatever
    /// `bad_signature` says, or absent).
    sign: bool,
    bad_signature: Option<(String, String)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: MethodChoice,
    route: Route,
    query: Vec<(QueryKey, String)>,
    content_type: ContentType,
    auth: Auth,
    body: BodyChoice,
    /// Advance the daemon's clock this many seconds before the request.
    advance: u16,
}

struct Daemon {
    router: Router,
    state: Arc<AppState>,
    /// Kept so the database directory lives as long as the daemon.
    _dir: tempfile::TempDir,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    daemon: Option<Daemon>,
    inputs: u64,
    /// Answers by route and status, printed at each rebuild when `INCIDENTD_FUZZ_STATS` is
    /// set: to see which routes the fuzzer reaches beyond their refusals.
    stats: std::collections::BTreeMap<(String, u16), u64>,
}

/// Seconds since the fixed base time, advanced by the inputs.
static CLOCK: AtomicI64 = AtomicI64::new(0);

fn base() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0)
        .single()
        .expect("a valid time")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn recorded_webhooks() -> &'static [Vec<u8>] {
    static BODIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BODIES.get_or_init(|| {
        let dir = fixtures().join("scenario-single/webhooks");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("the scenario webhooks")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('0') && n.ends_with(".json"))
            })
            .collect();
        files.sort();
        files.push(fixtures().join("bench/payload-firing-10.json"));
        files
            .iter()
            .map(|p| std::fs::read(p).expect("a fixture"))
            .collect()
    })
}

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.web.webhook_auth = Some(WebhookAuth {
        bearer_token: Some(Secret::new(WEBHOOK_TOKEN)),
        basic_auth: Some(BasicAuth {
            username: WEBHOOK_USER.into(),
            password: Secret::new(WEBHOOK_PASSWORD),
        }),
    });
    config.web.api_token = Some(Secret::new(API_TOKEN));
    // Slack is configured so its route checks signatures; nothing delivers (no job runner),
    // and the address is closed anyway.
    config.slack = Some(SlackConfig {
        api_url: "http://127.0.0.1:9/api".into(),
        bot_token: Some(Secret::new("xoxb-fuzz")),
        channel: "#incidents".into(),
        signing_secret: Some(Secret::new(SIGNING_SECRET)),
        webhook_url: None,
        routes: Vec::new(),
        capture: Default::default(),
    });
    config.postmortem.output_dir = dir.join("drafts");
    config
}

const DIR_PREFIX: &str = "incidentd-fuzz-";

/// tmpfs where there is one: `synchronous=FULL` costs an fsync per webhook otherwise. Named
/// after the process, so that directories left behind by ended runs (the last daemon is never
/// dropped: libFuzzer exits the process) can be swept.
fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    sweep(&parent);
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&parent)
        .expect("a temp dir")
}

/// Remove the directories of fuzz processes that are gone (only where `/proc` says so).
fn sweep(parent: &std::path::Path) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
            if pid != std::process::id() && gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

async fn build() -> Daemon {
    let dir = temp_dir();
    CLOCK.store(0, Ordering::SeqCst);
    let clock = Arc::new(|| base() + Duration::seconds(CLOCK.load(Ordering::SeqCst)));
    let app = App::build(
        config(dir.path()),
        Options {
            listen_address: "127.0.0.1:0".into(),
            storage_path: Some(dir.path().join("data")),
        },
        clock,
    )
    .await
    .expect("the daemon builds");
    let state = app.state();
    // The listener closes here: requests go straight to the router.
    drop(app);
    let router = incidentd::http::router(state.clone());
    // The recorded scenario, so the incident routes have incidents to act on.
    for body in recorded_webhooks().iter().take(6) {
        let req = Request::post("/webhook/alertmanager")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {WEBHOOK_TOKEN}"))
            .body(Body::from(body.clone()))
            .expect("a request");
        let status = router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible")
            .status();
        assert_eq!(status, StatusCode::OK, "seeding the scenario");
        CLOCK.fetch_add(60, Ordering::SeqCst);
    }
    Daemon {
        router,
        state,
        _dir: dir,
    }
}

fn harness() -> &'static Mutex<Harness> {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Mutex::new(Harness {
            runtime,
            daemon: None,
            inputs: 0,
            stats: Default::default(),
        })
    })
}

fuzz_target!(|input: Input| {
    let mut guard = harness().lock().unwrap_or_else(|p| p.into_inner());
    let h = &mut *guard;
    h.inputs += 1;
    let rebuild = h.inputs % REBUILD_EVERY == 1;
    let deep = rebuild || h.inputs.is_multiple_of(DEEP_CHECK_EVERY);
    let runtime = &h.runtime;
    if rebuild {
        if std::env::var_os("INCIDENTD_FUZZ_STATS").is_some() && !h.stats.is_empty() {
            eprintln!("http answers after {} inputs: {:?}", h.inputs - 1, h.stats);
        }
        if let Some(old) = h.daemon.take() {
            runtime.block_on(async {
                deep_check(&old.state).await;
                old.state.store.close().await;
            });
        }
        h.daemon = Some(runtime.block_on(build()));
    }
    let Some(daemon) = h.daemon.as_ref() else {
        return;
    };
    let Some((req, kind)) = request(&input) else {
        return;
    };
    CLOCK.fetch_add(i64::from(input.advance), Ordering::SeqCst);
    let stats = &mut h.stats;
    runtime.block_on(async {
        let before = fingerprint(&daemon.state).await;
        let method = req.method().clone();
        let path = req.uri().to_string();
        let response = daemon
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let challenge = response.headers().contains_key(header::WWW_AUTHENTICATE);
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .expect("the answer is readable");
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let what = format!("{method} {path} -> {status} {content_type:?} {shown}");
        *stats
            .entry((
                format!("{method} {}", route_name(&input.route)),
                status.as_u16(),
            ))
            .or_default() += 1;

        assert!(!status.is_server_error(), "server error: {what}");
        // The pages (`/`, `/incidents/…`, `/reports`) answer a person's mistakes with an HTML
        // page saying what was wrong; the API, the webhook and Slack's routes answer JSON.
        let machine_route = ["/api/", "/webhook", "/slack", "/metrics", "/-/"]
            .iter()
            .any(|p| path.starts_with(p));
        let page_error = status.is_client_error()
            && method != Method::HEAD
            && !machine_route
            && content_type.starts_with("text/html");
        if page_error {
            let page = String::from_utf8_lossy(&body);
            assert!(
                page.contains("<h1>") && page.contains("<p>"),
                "an error page without its message: {what}"
            );
        }
        if status.is_client_error() && method != Method::HEAD && !page_error {
            assert!(
                content_type.starts_with("application/json"),
                "an error that is not JSON: {what}"
            );
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
            assert!(
                error.is_some_and(|e| !e.is_empty()),
                "an error without an \"error\" message: {what}"
            );
            if status == StatusCode::UNAUTHORIZED && kind != Kind::Slack {
                assert!(challenge, "401 without WWW-Authenticate: {what}");
            }
        }
        if status.is_success() {
            match kind {
                Kind::Webhook => assert!(
                    webhook_credential(&input.auth),
                    "webhook accepted without a credential: {what}"
                ),
                Kind::ApiWrite => assert!(
                    matches!(input.auth, Auth::ApiBearer),
                    "a writing route accepted without the API token: {what}"
                ),
                Kind::Slack => assert!(
                    matches!(&input.body, BodyChoice::Slack(s) if s.sign),
                    "a Slack interaction accepted unsigned: {what}"
                ),
                Kind::Other => {}
            }
        }
        let after = fingerprint(&daemon.state).await;
        if !status.is_success() || method == Method::GET || method == Method::HEAD {
            assert_eq!(before, after, "stored data changed: {what}");
        }
        if deep {
            deep_check(&daemon.state).await;
        }
    });
});

fn route_name(route: &Route) -> &'static str {
    match route {
        Route::Webhook => "webhook",
        Route::List => "list",
        Route::Show(_) => "show",
        Route::Ack(_) => "ack",
        Route::Notes(_) => "notes",
        Route::Resolve(_) => "resolve",
        Route::Postmortem(_) => "postmortem",
        Route::Chart(..) => "chart",
        Route::Slack => "slack",
        Route::Metrics => "metrics",
        Route::Healthy => "healthy",
        Route::Ready => "ready",
        Route::Free(_) => "free",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Webhook,
    ApiWrite,
    Slack,
    Other,
}

/// Whether a raw `Authorization` value holds one of the real secrets (then it is not a
/// wrong credential, and the input is skipped).
fn carries_a_credential(value: &str) -> bool {
    use base64::Engine;
    let decoded = value
        .split_whitespace()
        .filter_map(|part| base64::engine::general_purpose::STANDARD.decode(part).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    std::iter::once(value.to_string()).chain(decoded).any(|v| {
        [WEBHOOK_TOKEN, API_TOKEN, WEBHOOK_PASSWORD]
            .iter()
            .any(|s| v.contains(s))
    })
}

fn webhook_credential(auth: &Auth) -> bool {
    matches!(auth, Auth::WebhookBearer | Auth::WebhookBasic)
}

/// A read-only connection to the daemon's SQLite file, beside its own.
fn sqlite(state: &AppState) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        state.store.location(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the database file opens")
}

/// What a request may change, cheaply: rows and versions. Also proves the database reads.
async fn fingerprint(state: &AppState) -> (i64, i64, i64, i64, i64) {
    sqlite(state)
        .query_row(
            "SELECT (SELECT count(*) FROM notifications), (SELECT count(*) FROM occurrences), \
             (SELECT count(*) FROM timeline), (SELECT coalesce(sum(version), 0) FROM incidents), \
             (SELECT count(*) FROM incidents)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("the database answers")
}

async fn deep_check(state: &AppState) {
    let c = sqlite(state);
    let check: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .expect("quick_check runs");
    let violations: i64 = c
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check runs");
    assert_eq!(check, "ok", "PRAGMA quick_check");
    assert_eq!(violations, 0, "foreign key violations");
}

fn encode(segment: &Segment) -> String {
    if segment.raw {
        return segment.text.clone();
    }
    let mut out = String::new();
    for b in segment.text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn id(id: &Id) -> String {
    match id {
        Id::Known(n) => match n % 8 {
            0..=3 => format!("INC-2026-{:04}", n % 8 + 1),
            4 => "INC-2026-00001".into(),
            5 => "inc-2026-0001".into(),
            6 => "INC-2025-0001".into(),
            _ => "INC-2026-0001/".into(),
        },
        Id::Formatted(y, n) => format!("INC-{y:04}-{n:04}"),
        Id::Raw(s) => encode(s),
    }
}

fn json_value(v: &JsonValue) -> Value {
    match v {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Bool(*b),
        JsonValue::Int(i) => Value::from(*i),
        JsonValue::Float(f) => Value::from(*f),
        JsonValue::Str(s) => Value::from(s.as_str()),
        JsonValue::Time(secs, nanos) => {
            // Around the scenario, with sub-second digits, sometimes far away.
            let secs = if secs % 4 == 0 {
                *secs
            } else {
                base().timestamp() + secs % 100_000
            };
            match Utc.timestamp_opt(secs, nanos % 1_000_000_000).single() {
                Some(t) => Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                None => Value::from(secs),
            }
        }
        JsonValue::Array(items) => Value::from(items.clone()),
    }
}

fn edited_webhook(which: u8, edit: &Option<Edit>) -> Vec<u8> {
    let bodies = recorded_webhooks();
    let raw = &bodies[usize::from(which) % bodies.len()];
    let Some(edit) = edit else {
        return raw.clone();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(raw) else {
        return raw.clone();
    };
    let value = json_value(&edit.value);
    let alerts = v["alerts"].as_array().map_or(0, Vec::len).max(1);
    let alert = |i: &u8| usize::from(*i) % alerts;
    match &edit.field {
        Field::Version => v["version"] = value,
        Field::Status => v["status"] = value,
        Field::GroupKey => v["groupKey"] = value,
        Field::Receiver => v["receiver"] = value,
        Field::AlertStatus(i) => v["alerts"][alert(i)]["status"] = value,
        Field::Fingerprint(i) => v["alerts"][alert(i)]["fingerprint"] = value,
        Field::StartsAt(i) => v["alerts"][alert(i)]["startsAt"] = value,
        Field::EndsAt(i) => v["alerts"][alert(i)]["endsAt"] = value,
        Field::Label(i, name) => v["alerts"][alert(i)]["labels"][name.as_str()] = value,
        Field::Annotation(i, name) => v["alerts"][alert(i)]["annotations"][name.as_str()] = value,
        Field::Alerts => v["alerts"] = value,
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| raw.clone())
}

fn slack_body(s: &SlackBody) -> Vec<u8> {
    let payload = serde_json::json!({
        "type": s.kind.as_deref().unwrap_or("block_actions"),
        "user": {"id": "U024BE7LH", "username": s.user},
        "actions": [{
            "action_id": s.action_id.as_deref().unwrap_or("incidentd_ack"),
            "value": id(&s.incident),
            "type": "button",
        }],
        "channel": {"id": "C0INCIDENTS"},
        "message": {"ts": "1700000000.000100"},
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

/// The request an input describes, or `None` when it cannot be expressed in HTTP (a path
/// or header value that does not parse).
fn request(input: &Input) -> Option<(Request<Body>, Kind)> {
    let method = match &input.method {
        MethodChoice::Get => Method::GET,
        MethodChoice::Post => Method::POST,
        MethodChoice::Put => Method::PUT,
        MethodChoice::Delete => Method::DELETE,
        MethodChoice::Head => Method::HEAD,
        MethodChoice::Options => Method::OPTIONS,
        MethodChoice::Patch => Method::PATCH,
        MethodChoice::Other(m) => Method::from_bytes(m.as_bytes()).ok()?,
    };
    let api = "/api/v1/incidents";
    let (mut path, kind) = match &input.route {
        Route::Webhook => ("/webhook/alertmanager".to_string(), Kind::Webhook),
        Route::List => (api.to_string(), Kind::Other),
        Route::Show(i) => (format!("{api}/{}", id(i)), Kind::Other),
        Route::Ack(i) => (format!("{api}/{}/ack", id(i)), Kind::ApiWrite),
        Route::Notes(i) => (format!("{api}/{}/notes", id(i)), Kind::ApiWrite),
        Route::Resolve(i) => (format!("{api}/{}/resolve", id(i)), Kind::ApiWrite),
        Route::Postmortem(i) => (format!("{api}/{}/postmortem", id(i)), Kind::Other),
        Route::Chart(i, name) => (
            format!("{api}/{}/charts/{}", id(i), encode(name)),
            Kind::Other,
        ),
        Route::Slack => ("/slack/interactions".to_string(), Kind::Slack),
        Route::Metrics => ("/metrics".to_string(), Kind::Other),
        Route::Healthy => ("/-/healthy".to_string(), Kind::Other),
        Route::Ready => ("/-/ready".to_string(), Kind::Other),
        Route::Free(segments) => {
            let joined: Vec<String> = segments.iter().map(encode).collect();
            (format!("/{}", joined.join("/")), Kind::Other)
        }
    };
    if !input.query.is_empty() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &input.query {
            let key = match k {
                QueryKey::Status => "status",
                QueryKey::Service => "service",
                QueryKey::Limit => "limit",
                QueryKey::Before => "before",
                QueryKey::Other(o) => o.as_str(),
            };
            q.append_pair(key, v);
        }
        path.push('?');
        path.push_str(&q.finish());
    }
    let mut builder = Request::builder().method(method).uri(path);
    let content_type = match &input.content_type {
        ContentType::None => None,
        ContentType::Json => Some("application/json".to_string()),
        ContentType::JsonCharset => Some("application/json; charset=utf-8".to_string()),
        ContentType::Form => Some("application/x-www-form-urlencoded".to_string()),
        ContentType::Text => Some("text/plain".to_string()),
        ContentType::Raw(s) => Some(s.clone()),
    };
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_str(&ct).ok()?);
    }
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let authorization = match &input.auth {
        Auth::None => None,
        Auth::WebhookBearer => Some(format!("Bearer {WEBHOOK_TOKEN}")),
        Auth::WebhookBasic => Some(basic(WEBHOOK_USER, WEBHOOK_PASSWORD)),
        Auth::ApiBearer => Some(format!("Bearer {API_TOKEN}")),
        Auth::WrongBearer(t) if t == WEBHOOK_TOKEN || t == API_TOKEN => None,
        Auth::WrongBearer(t) => Some(format!("Bearer {t}")),
        Auth::WrongBasic(u, p) if u == WEBHOOK_USER && p == WEBHOOK_PASSWORD => None,
        Auth::WrongBasic(u, p) => Some(basic(u, p)),
        Auth::Raw(s) => Some(s.clone()),
    };
    if let Some(a) = authorization {
        // A raw header that happens to carry a real credential is not a wrong one.
        if matches!(input.auth, Auth::Raw(_)) && carries_a_credential(&a) {
            return None;
        }
        builder = builder.header(header::AUTHORIZATION, HeaderValue::from_str(&a).ok()?);
    }
    let body = match &input.body {
        BodyChoice::Empty => Vec::new(),
        BodyChoice::Raw(b) => b.clone(),
        BodyChoice::By(by) => serde_json::to_vec(&serde_json::json!({ "by": by })).ok()?,
        BodyChoice::Note(by, text) => {
            serde_json::to_vec(&serde_json::json!({ "by": by, "text": text })).ok()?
        }
        BodyChoice::Webhook(which, edit) => edited_webhook(*which, edit),
        BodyChoice::Slack(s) => {
            let body = slack_body(s);
            if s.sign {
                let ts = Utc::now().timestamp().to_string();
                let signature =
                    incidentd::slack::signature::sign(SIGNING_SECRET.as_bytes(), &ts, &body);
                builder = builder
                    .header("x-slack-request-timestamp", ts)
                    .header("x-slack-signature", signature);
            } else if let Some((ts, signature)) = &s.bad_signature {
                builder = builder
                    .header("x-slack-request-timestamp", HeaderValue::from_str(ts).ok()?)
                    .header("x-slack-signature", HeaderValue::from_str(signature).ok()?);
            }
            body
        }
    };
    let req = builder.body(Body::from(body)).ok()?;
    // A free path may still land on a real route: judge it by where it lands.
    let landed = req.uri().path();
    let kind = match kind {
        Kind::Other if landed == "/webhook/alertmanager" => Kind::Webhook,
        Kind::Other if landed == "/slack/interactions" => Kind::Slack,
        Kind::Other
            if landed.starts_with("/api/")
                && ["/ack", "/notes", "/resolve"]
                    .iter()
                    .any(|w| landed.ends_with(w)) =>
        {
            Kind::ApiWrite
        }
        k => k,
    };
    Some((req, kind))
}
