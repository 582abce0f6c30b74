//! The daemon's own metrics at `GET /metrics`, in the Prometheus text format.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::store::{jobs, sqlite};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EffectLabel {
    effect: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
    code: String,
}

/// The metrics and their registry.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<OutcomeLabel, Counter>,
    alerts: Family<EffectLabel, Counter>,
    incidents: Family<StatusLabel, Gauge>,
    jobs_queued: Family<KindLabel, Gauge>,
    requests: Family<RouteLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("incidentd");
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhooks_received",
            "Alertmanager webhook requests by outcome",
            webhooks.clone(),
        );
        let alerts = Family::<EffectLabel, Counter>::default();
        registry.register(
            "alerts_processed",
            "Alerts in accepted webhooks by what they did (opened, joined, duplicate, stale, ...)",
            alerts.clone(),
        );
        let incidents = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "incidents",
            "Incidents stored, by status",
            incidents.clone(),
        );
        let jobs_queued = Family::<KindLabel, Gauge>::default();
        registry.register(
            "jobs_queued",
            "Jobs pending or running, by kind (evidence, drafts, Slack)",
            jobs_queued.clone(),
        );
        let requests = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status code",
            requests.clone(),
        );
        Metrics {
            registry,
            webhooks,
            alerts,
            incidents,
            jobs_queued,
            requests,
        }
    }

    pub fn webhook(&self, outcome: &str) {
        self.webhooks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn alert(&self, effect: &str) {
        self.alerts
            .get_or_create(&EffectLabel {
                effect: effect.into(),
            })
            .inc();
    }

    pub fn observe_request(&self, route: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteLabel {
                route: route.into(),
                code: code.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    let counts = state
        .store
        .read(|c| Ok((sqlite::count_by_status(c)?, jobs::depth(c)?)))
        .await;
    let m = &state.metrics;
    match counts {
        Ok((by_status, depth)) => {
            for status in ["open", "acknowledged", "resolved"] {
                let n = by_status
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                m.incidents
                    .get_or_create(&StatusLabel {
                        status: status.into(),
                    })
                    .set(n);
            }
            m.jobs_queued.clear();
            for (kind, n) in depth {
                m.jobs_queued.get_or_create(&KindLabel { kind }).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read incident counts for /metrics"),
    }
    let mut body = String::new();
    if encode(&mut body, &m.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
