//! HTTP: the router, the webhook receiver, the incident API, the pages, health and metrics,
//! and the one mapping from errors to status codes.

pub mod api;
pub mod auth;
pub mod metrics;
pub mod pages;
pub mod server;
pub mod slack;
pub mod web_config;
pub mod webhook;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::timeout::TimeoutLayer;

use crate::core::Core;
use crate::store::StoreError;

/// Everything the handlers share.
pub struct AppState {
    /// The store, the clock and the job loops' signals, shared with the background work.
    pub core: Arc<Core>,
    pub webhook_auth: auth::WebhookAuth,
    pub api_token: Option<crate::config::Secret>,
    pub max_body_bytes: usize,
    /// Deadline for reading a request's body and answering it (`web.request_timeout`).
    pub request_timeout: std::time::Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub drafts: Arc<crate::draft::Drafts>,
    /// Slack, when configured.
    pub slack: Option<Arc<crate::slack::job::Slack>>,
    /// The pages' templates and form secret.
    pub pages: Arc<pages::Pages>,
}

impl std::ops::Deref for AppState {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl AppState {
    /// The report `request` asks for, as of `now`: its rows read from the store, then built
    /// on a blocking thread (tens of milliseconds of CPU at 100,000 incidents, which would
    /// hold up every other request on an async worker).
    pub async fn report(
        &self,
        request: &crate::report::Request,
        zone: chrono_tz::Tz,
        now: crate::incident::Timestamp,
    ) -> Result<crate::report::Report, crate::store::StoreError> {
        let rows = self
            .store
            .report_rows(request.query.clone(), crate::report::TOP)
            .await?;
        let (query, by) = (request.query.clone(), request.by);
        let built =
            tokio::task::spawn_blocking(move || crate::report::build(&query, by, zone, now, &rows));
        match built.await {
            Ok(report) => Ok(report),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: the runtime is shutting down.
                Err(_) => Err(crate::store::StoreError::Closed),
            },
        }
    }
}

/// The whole HTTP interface.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::list_page))
        .route(
            "/incidents/{id}",
            get(pages::incident_page).post(pages::act),
        )
        .route("/reports", get(pages::reports_page))
        .route("/assets/style.css", get(pages::style))
        .route("/webhook/alertmanager", post(webhook::receive))
        .route("/api/v1/incidents", get(api::list))
        .route("/api/v1/incidents/{id}", get(api::show))
        .route("/api/v1/incidents/{id}/ack", post(api::acknowledge))
        .route("/api/v1/incidents/{id}/notes", post(api::add_note))
        .route("/api/v1/incidents/{id}/resolve", post(api::resolve))
        .route("/api/v1/incidents/{id}/postmortem", get(api::postmortem))
        .route("/api/v1/incidents/{id}/charts/{file}", get(api::chart))
        .route("/api/v1/reports", get(api::report))
        .route("/slack/interactions", post(slack::interactions))
        .route("/slack/events", post(slack::events))
        .route("/slack/commands", post(slack::commands))
        .route("/metrics", get(metrics::serve))
        .route("/-/healthy", get(|| async { "incidentd is Healthy.\n" }))
        .route("/-/ready", get(ready))
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::MethodNotAllowed(format!(
                "{method} is not allowed here (the Allow header lists what is)"
            ))
        })
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // A client that trickles its body is cut off with a 408; slow headers are bounded
        // earlier, by the server's header deadline (`server.rs`).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.request_timeout,
        ))
        .with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => "incidentd is Ready.\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("incidentd is not ready: {e}\n"),
        )
            .into_response(),
    }
}

/// axum's `Path`, refusing with an [`ApiError`] (JSON naming the path) instead of plain text,
/// e.g. for a segment that is not UTF-8 once percent-decoded.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// axum's `Query`, refusing with an [`ApiError`] (JSON naming the query) instead of plain
/// text, e.g. for a parameter given twice.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The message of an extractor's rejection, as a 400 naming `what`; a 5xx rejection is a
/// routing bug.
fn rejection(what: &str, status: StatusCode, text: String) -> ApiError {
    if status.is_server_error() {
        ApiError::Internal(format!("{what}: {text}"))
    } else {
        ApiError::BadRequest(format!("{what}: {text}"))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        rejection("path", e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        rejection("query", e.status(), e.body_text())
    }
}

/// Request latency by route, for `/metrics`.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe_request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// Every error the HTTP interface answers with, as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials.
    #[error("{message}")]
    Unauthorized {
        message: String,
        challenge: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    /// The route exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The action does not fit the incident's state.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Storage failed: transient failures ask the client to retry (Alertmanager retries 5xx).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or a broken template: logged, shown in short.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &self {
            // Internals are logged, not shown.
            ApiError::Store(e) => {
                tracing::error!(error = %e, "storage failed");
                if e.is_transient() {
                    "storage is temporarily unavailable; retry later".to_string()
                } else {
                    "internal storage error".to_string()
                }
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        match &self {
            ApiError::Unauthorized { challenge, .. } => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            ApiError::Store(e) if e.is_transient() => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
