//! `POST /slack/interactions`: the "Acknowledge" button. The request signature is checked
//! before anything else is read from the request.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{api, ApiError, AppState};
use crate::incident::Action;
use crate::slack::{signature, InteractionAction};

pub async fn interactions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = state.slack.as_ref().and_then(|s| s.signing_secret.clone()) else {
        return ApiError::NotFound(
            "Slack interactivity is not configured (slack.signing_secret_file)".into(),
        )
        .into_response();
    };
    // Slack signs with its wall clock: compare with ours, not with the domain clock.
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = signature::verify_headers(secret.expose().as_bytes(), &headers, &body, now) {
        tracing::warn!(error = %e, "Slack interaction refused");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": format!("Slack signature: {e}") })),
        )
            .into_response();
    }
    let interaction = match signature::parse_interaction(&body) {
        Ok(i) => i,
        Err(e) => return ApiError::BadRequest(format!("Slack interaction: {e}")).into_response(),
    };
    match interaction.action {
        InteractionAction::Acknowledge { incident_id } => {
            let by = if interaction.user_name.is_empty() {
                interaction.user_id.clone()
            } else {
                interaction.user_name.clone()
            };
            match api::perform(&state, &incident_id, &by, Action::Acknowledge).await {
                // The root message is updated by the Slack job the acknowledgement queued.
                Ok(()) | Err(ApiError::Conflict(_)) => StatusCode::OK.into_response(),
                Err(e) => e.into_response(),
            }
        }
        InteractionAction::Other { .. } => StatusCode::OK.into_response(),
    }
}
