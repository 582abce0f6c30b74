//! `GET /metrics`: the daemon's own metrics (see `crate::metrics`), with the store's counts
//! read at the moment of the scrape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    let counts = match state.store.overview().await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read incident counts for /metrics");
            None
        }
    };
    match state.metrics.exposition(counts) {
        Some(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
