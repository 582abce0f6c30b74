//! `POST /webhook/alertmanager`: authenticate, read, decode and validate on the async side;
//! correlate and store in the writer's next group commit; answer 2xx only once committed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use bytes::Bytes;
use serde_json::json;

use super::{ApiError, AppState};

use crate::alertmanager::{self, ValidNotification};
use crate::incident::{Effect, Outcome};

pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let result = handle(&state, &headers, body).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(ApiError::BadRequest(_)) => "bad_request",
        Err(ApiError::Unauthorized { .. }) => "unauthorized",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(ApiError::UnsupportedMediaType(_)) => "unsupported_media_type",
        Err(ApiError::Store(e)) if e.is_transient() => "unavailable",
        Err(_) => "error",
    };
    state.metrics.webhook(outcome);
    if let Err(e) = &result {
        tracing::warn!(outcome, error = %e, "webhook refused");
    }
    result
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.ingestion.webhook();
    state.webhook_auth.check(headers)?;
    check_content_type(headers)?;
    let raw = read_body(body, state.max_body_bytes).await?;
    let notification =
        alertmanager::decode(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let received_at = state.now();
    let alerts = notification.alerts.len();
    let group_key = notification.group_key.clone();
    let outcomes = ingest(state, notification, raw, received_at).await?;

    let mut incidents: Vec<&str> = outcomes.iter().map(|o| o.incident_id.as_str()).collect();
    incidents.dedup();
    for o in &outcomes {
        state.metrics.alert(effect_name(&o.effect));
    }
    let changed = outcomes.iter().filter(|o| o.changed()).count();
    if changed > 0 {
        state.wake.notify_waiters();
    }
    state.observe_resolutions(&outcomes).await;
    tracing::info!(
        group_key = %group_key,
        alerts,
        changed,
        incidents = %incidents.join(","),
        effects = %summarize(&outcomes),
        "webhook accepted"
    );
    Ok(Json(json!({
        "status": "success",
        "alerts": alerts,
        "incidents": incidents,
    })))
}

/// Store one notification and correlate its alerts; durable when this returns.
async fn ingest(
    state: &Arc<AppState>,
    notification: ValidNotification,
    raw: Bytes,
    received_at: crate::incident::Timestamp,
) -> Result<Vec<Outcome>, ApiError> {
    Ok(state.store.ingest(notification, raw, received_at).await?)
}

pub(crate) fn effect_name(e: &Effect) -> &'static str {
    match e {
        Effect::Opened => "opened",
        Effect::Joined => "joined",
        Effect::Reopened => "reopened",
        Effect::AlertResolved {
            incident_resolved: true,
        } => "incident_resolved",
        Effect::AlertResolved {
            incident_resolved: false,
        } => "alert_resolved",
        Effect::Duplicate => "duplicate",
        Effect::Stale => "stale",
    }
}

fn summarize(outcomes: &[Outcome]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for o in outcomes {
        *counts.entry(effect_name(&o.effect)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else if value.is_empty() {
        Err(ApiError::UnsupportedMediaType(
            "Content-Type: missing; Alertmanager webhooks are application/json".into(),
        ))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type: {value:?} is not supported; Alertmanager webhooks are application/json"
        )))
    }
}

/// Read at most `limit` bytes of body; more is a 413 that says the limit.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .map(|s| s.to_string().contains("length limit"))
            .unwrap_or(false)
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::PayloadTooLarge(format!(
                "body: larger than the {limit} byte limit (web.max_body_bytes)"
            ))
        } else {
            ApiError::BadRequest(format!("body: could not be read: {e}"))
        }
    })
}
