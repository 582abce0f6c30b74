//! A fake Slack on 127.0.0.1 (port 0) speaking the real API shapes:
//! `chat.postMessage` / `chat.update` answering `{"ok":true,"channel":"C…","ts":"…"}`,
//! `{"ok":false,"error":"…"}` errors with HTTP 200, 429 with `Retry-After`, an
//! incoming webhook answering `ok`, and `users.info` (a form with `user`) answering the
//! users added with [`FakeSlack::add_user`] (`user_not_found` for others). It records every
//! request, answered or not.
//!
//! Self-contained so that other test binaries can use it:
//! `#[path = "../slack_fake/fake.rs"] mod fake;`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The bot token the fake accepts.
pub const TOKEN: &str = "xoxb-test-0000-token";
/// Path of the fake's incoming webhook.
pub const WEBHOOK_PATH: &str = "services/T0000/B0000/hooksecret";

/// A scripted answer, used once, before the default success.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer as Slack would (lets a later scripted failure hit the next request).
    Pass,
    /// 429 with `Retry-After: seconds` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after: u64 },
    /// HTTP 200 with `{"ok":false,"error":<error>}` (webhook: 404 with the error as text).
    ApiError(&'static str),
    /// HTTP 503 with an HTML page, as a load balancer would.
    Unavailable,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `chat.postMessage`, `chat.update`, or `webhook`.
    pub method: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// HTTP status the fake answered.
    pub status: u16,
    /// The `ts` given to a posted message.
    pub ts: Option<String>,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    down: bool,
    next_ts: u64,
    /// (channel id, ts) of every message posted: threads and updates must name one.
    messages: Vec<(String, String)>,
    requests: Vec<Recorded>,
    /// users.info: id → (real_name, display_name).
    users: std::collections::HashMap<String, (String, String)>,
}

#[derive(Clone)]
pub struct FakeSlack {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

/// Slack answers with channel IDs; `#payments-incidents` becomes `C0PAYMENTSINCIDENTS`.
pub fn channel_id(channel: &str) -> String {
    match channel.strip_prefix('#') {
        Some(name) => format!(
            "C0{}",
            name.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_uppercase()
        ),
        None => channel.to_string(),
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/api/{method}", post(api))
            .route(&format!("/{WEBHOOK_PATH}"), post(webhook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake slack");
        let addr = listener.local_addr().expect("fake slack address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake slack serves");
        });
        FakeSlack {
            base: format!("http://{addr}/"),
            inner,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}api/", self.base)
    }

    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.base)
    }

    /// Queues an answer for the next request.
    pub fn push_reply(&self, reply: Reply) {
        self.inner.lock().unwrap().script.push_back(reply);
    }

    /// A workspace member `users.info` knows.
    pub fn add_user(&self, id: &str, real_name: &str, display_name: &str) {
        self.inner
            .lock()
            .unwrap()
            .users
            .insert(id.into(), (real_name.into(), display_name.into()));
    }

    /// How many times `users.info` was asked.
    pub fn users_info_calls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "users.info")
            .count()
    }

    /// While down, every request gets a 503.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The requests Slack accepted (2xx and `ok:true`).
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200 && r.body_ok())
            .collect()
    }
}

impl Recorded {
    fn body_ok(&self) -> bool {
        // Set by the fake on acceptance; see `answer_api`.
        self.ts.is_some() || self.method == "webhook"
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn take_failure(inner: &mut Inner) -> Option<Reply> {
    if inner.down {
        return Some(Reply::Unavailable);
    }
    match inner.script.pop_front() {
        Some(Reply::Pass) | None => None,
        failure => failure,
    }
}

async fn api(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if method == "users.info" {
        return users_info(&mut inner, &headers, &body);
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut record = Recorded {
        method: method.clone(),
        authorization: header(&headers, "authorization"),
        content_type: header(&headers, "content-type"),
        body: body.clone(),
        status: 200,
        ts: None,
    };
    let (status, response) = answer_api(&mut inner, &method, &record, &body);
    record.status = status.as_u16();
    if status == StatusCode::OK && response.get("ok") == Some(&Value::Bool(true)) {
        record.ts = response
            .get("ts")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    inner.requests.push(record);
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            let retry_after = response["retry_after"].as_u64().unwrap_or(1).to_string();
            (
                status,
                [("retry-after", retry_after)],
                Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response()
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            (status, "<html>503 Service Unavailable</html>").into_response()
        }
        _ => (status, Json(response)).into_response(),
    }
}

fn answer_api(
    inner: &mut Inner,
    method: &str,
    record: &Recorded,
    body: &Value,
) -> (StatusCode, Value) {
    match take_failure(inner) {
        Some(Reply::Unavailable) => return (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        Some(Reply::RateLimited { retry_after }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"retry_after": retry_after}),
            )
        }
        Some(Reply::ApiError(error)) => {
            return (StatusCode::OK, json!({"ok": false, "error": error}))
        }
        Some(Reply::Pass) | None => {}
    }
    let error = |e: &str| (StatusCode::OK, json!({"ok": false, "error": e}));
    match record.authorization.as_deref() {
        None => return error("not_authed"),
        Some(a) if a != format!("Bearer {TOKEN}") => return error("invalid_auth"),
        Some(_) => {}
    }
    if !record
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return error("invalid_form_data");
    }
    let Some(channel) = body.get("channel").and_then(Value::as_str) else {
        return error("channel_not_found");
    };
    let channel = channel_id(channel);
    if body
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        && body.get("blocks").is_none()
    {
        return error("no_text");
    }
    let known = |ts: &str| inner.messages.iter().any(|(c, t)| *c == channel && t == ts);
    match method {
        "chat.postMessage" => {
            if let Some(thread) = body.get("thread_ts").and_then(Value::as_str) {
                if !known(thread) {
                    return error("thread_not_found");
                }
            }
            inner.next_ts += 100;
            let ts = format!("1700000000.{:06}", inner.next_ts);
            inner.messages.push((channel.clone(), ts.clone()));
            (
                StatusCode::OK,
                json!({
                    "ok": true, "channel": channel, "ts": ts,
                    "message": {"type": "message", "subtype": "bot_message", "bot_id": "B0INCIDENTD",
                                "text": body["text"], "ts": ts}
                }),
            )
        }
        "chat.update" => {
            let ts = body.get("ts").and_then(Value::as_str).unwrap_or("");
            if !known(ts) {
                return error("message_not_found");
            }
            (
                StatusCode::OK,
                json!({"ok": true, "channel": channel, "ts": ts, "text": body["text"],
                       "message": {"text": body["text"]}}),
            )
        }
        _ => error("unknown_method"),
    }
}

/// `users.info`: a form body (`user=U…`), as Slack's read methods take.
fn users_info(inner: &mut Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    let user = form_urlencoded::parse(body)
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let authorization = header(headers, "authorization");
    let answer = if take_failure(inner).is_some() {
        json!({"ok": false, "error": "internal_error"})
    } else if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        json!({"ok": false, "error": "invalid_auth"})
    } else {
        match inner.users.get(&user) {
            Some((real, display)) => json!({"ok": true, "user": {
                "id": user, "team_id": "T0", "name": display.to_lowercase(), "deleted": false,
                "real_name": real, "tz": "Europe/Berlin", "is_bot": false,
                "profile": {"real_name": real, "display_name": display, "title": ""}
            }}),
            None => json!({"ok": false, "error": "user_not_found"}),
        }
    };
    inner.requests.push(Recorded {
        method: "users.info".into(),
        authorization,
        content_type: header(headers, "content-type"),
        body: json!({ "user": user }),
        status: 200,
        ts: None,
    });
    (StatusCode::OK, Json(answer)).into_response()
}

async fn webhook(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut retry_after = None;
    let (status, text): (StatusCode, String) = match take_failure(&mut inner) {
        Some(Reply::Unavailable) => (StatusCode::SERVICE_UNAVAILABLE, "<html>503</html>".into()),
        Some(Reply::RateLimited { retry_after: s }) => {
            retry_after = Some(s.to_string());
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
        }
        Some(Reply::ApiError(e)) => (StatusCode::NOT_FOUND, e.into()),
        Some(Reply::Pass) | None if body.get("text").is_none() => {
            (StatusCode::BAD_REQUEST, "invalid_payload".into())
        }
        Some(Reply::Pass) | None => (StatusCode::OK, "ok".into()),
    };
    inner.requests.push(Recorded {
        method: "webhook".into(),
        authorization: header(&headers, "authorization"),
        content_type: header(&headers, "content-type"),
        body,
        status: status.as_u16(),
        ts: None,
    });
    match retry_after {
        Some(s) => (status, [("retry-after", s)], text).into_response(),
        None => (status, text).into_response(),
    }
}
