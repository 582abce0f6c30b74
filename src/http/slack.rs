//! Slack's requests: `POST /slack/interactions` (the "Acknowledge" button), `POST
//! /slack/events` (the Events API: replies in incident threads) and `POST /slack/commands`
//! (`/incident …`). The request signature is checked before anything else is read from the
//! request; a refused request stores nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{api, ApiError, AppState};
use crate::incident::Action;
use crate::slack::events::{self, Envelope, Event, Subcommand};
use crate::slack::message::escape;
use crate::slack::{signature, thread, InteractionAction};
use crate::store::slack::Received;

/// Slack, when its requests can be verified; otherwise the answer (404 when no signing
/// secret is configured, 401 when the signature does not hold).
fn verified(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    what: &str,
) -> Result<Arc<crate::slack::job::Slack>, Box<Response>> {
    let Some((slack, secret)) = state
        .slack
        .as_ref()
        .and_then(|s| Some((s.clone(), s.signing_secret.clone()?)))
    else {
        return Err(Box::new(
            ApiError::NotFound(
                "Slack interactivity is not configured (slack.signing_secret_file)".into(),
            )
            .into_response(),
        ));
    };
    // Slack signs with its wall clock: compare with ours, not with the domain clock.
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = signature::verify_headers(secret.expose().as_bytes(), headers, body, now) {
        tracing::warn!(error = %e, "Slack {what} refused");
        return Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": format!("Slack signature: {e}") })),
            )
                .into_response(),
        ));
    }
    Ok(slack)
}

pub async fn interactions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&state, &headers, &body, "interaction") {
        return *refused;
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

/// `POST /slack/events`: the URL check answered with its challenge; an event in an
/// incident's thread recorded once by `event_id` and queued durably, then 200 (Slack wants
/// its answer within 3 seconds and delivers again otherwise, with `X-Slack-Retry-Num`).
pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let slack = match verified(&state, &headers, &body, "event") {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let envelope = match events::parse_envelope(&body) {
        Ok(e) => e,
        Err(e) => return ApiError::BadRequest(format!("Slack event: {e}")).into_response(),
    };
    let (event_id, event) = match envelope {
        Envelope::UrlVerification { challenge } => {
            return Json(json!({ "challenge": challenge })).into_response()
        }
        Envelope::Other(kind) => {
            tracing::debug!(kind, "Slack envelope ignored");
            return StatusCode::OK.into_response();
        }
        Envelope::Callback {
            event_id, event, ..
        } => (event_id, event),
    };
    let retry = headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    if let Event::Reacted { reaction, .. } = &event {
        let rules = &slack.capture;
        if *reaction != rules.capture_reaction
            && !rules.milestone_reactions.iter().any(|(_, r)| r == reaction)
        {
            return StatusCode::OK.into_response(); // a reaction that marks nothing
        }
    }
    let Some((target, reply, job)) = thread::job_for(&event) else {
        if let Event::Ignored(why) = event {
            tracing::debug!(event_id, why, "Slack event ignored");
        }
        return StatusCode::OK.into_response();
    };
    match state
        .store
        .receive_slack_event(&event_id, target, reply, job, chrono::Utc::now())
        .await
    {
        Ok(received) => {
            tracing::debug!(event_id, retry, ?received, "Slack event received");
            if matches!(received, Received::Queued { .. }) {
                state.wake.notify_waiters();
            }
            StatusCode::OK.into_response()
        }
        // Slack delivers it again.
        Err(e) => ApiError::Store(e).into_response(),
    }
}

/// A slash command's answer, seen only by who typed it.
fn ephemeral(text: impl Into<String>) -> Response {
    Json(json!({ "response_type": "ephemeral", "text": text.into() })).into_response()
}

/// How long a slash command waits for `users.info` before using the Slack handle: Slack
/// wants the answer within 3 seconds.
const NAME_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// `POST /slack/commands`: `/incident ack | note <text> | resolve | status [INC-…]`, acting
/// through the same operation as the API, with the Slack user's name as the actor. The
/// incident is the one named, else the channel's one unresolved incident (Slack sends no
/// thread for a command typed in a thread); several → the answer lists them. The answer is
/// ephemeral; what changed is posted in the incident's thread by the Slack job the action
/// queues, like every acknowledgement, note and resolve.
pub async fn commands(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let slack = match verified(&state, &headers, &body, "command") {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let cmd = match events::parse_command(&body) {
        Ok(c) => c,
        Err(e) => return ApiError::BadRequest(format!("Slack command: {e}")).into_response(),
    };
    if cmd.subcommand == Subcommand::Help {
        return ephemeral(events::USAGE);
    }
    let id = match &cmd.incident_id {
        Some(id) => id.clone(),
        None => match state.store.channel_incidents(&cmd.channel_id).await {
            Err(e) => return ApiError::Store(e).into_response(),
            Ok(open) if open.len() == 1 => open[0].id.clone(),
            Ok(open) if open.is_empty() => {
                return ephemeral(
                    "No unresolved incident has its thread in this channel. Name one:                      `/incident status INC-2026-0007`.",
                )
            }
            Ok(open) => {
                let list: Vec<String> = open
                    .iter()
                    .map(|i| format!("• `{}` ({}) {}", i.id, i.status.as_str(), escape(&i.title)))
                    .collect();
                return ephemeral(format!(
                    "{} incidents are open in this channel; name one, e.g. `/incident ack {}`:\n{}",
                    open.len(),
                    open[0].id,
                    list.join("\n")
                ));
            }
        },
    };
    let by = match tokio::time::timeout(NAME_WAIT, slack.name_of(&state.store, &cmd.user_id)).await
    {
        Ok(Ok(name)) => name,
        _ if !cmd.user_name.is_empty() => cmd.user_name.clone(),
        _ => cmd.user_id.clone(),
    };
    let (action, done) = match &cmd.subcommand {
        Subcommand::Ack => (Action::Acknowledge, "acknowledged"),
        Subcommand::Note(text) => (Action::Note(text.clone()), "noted on"),
        Subcommand::Resolve => (Action::Resolve, "resolved"),
        Subcommand::Status | Subcommand::Help => return status(&state, &id).await,
    };
    match api::perform(&state, &id, &by, action).await {
        Ok(()) => ephemeral(format!(
            "{} `{id}` as {}; the thread says so in a moment.",
            capitalize(done),
            escape(&by)
        )),
        Err(ApiError::Conflict(m) | ApiError::NotFound(m) | ApiError::BadRequest(m)) => {
            ephemeral(format!("`{id}`: {}", escape(&m)))
        }
        Err(e) => e.into_response(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `/incident status`: where the incident stands, with its figures so far.
async fn status(state: &AppState, id: &str) -> Response {
    let incident = match state.store.incident(id).await {
        Ok(Some(i)) => i,
        Ok(None) => return ephemeral(format!("`{}`: no such incident", escape(id))),
        Err(e) => return ApiError::Store(e).into_response(),
    };
    let d = |s: Option<f64>| s.map(crate::time::human_duration);
    let mut lines = vec![format!(
        "*{}* · {} · {}{}",
        escape(&incident.id),
        incident.status.as_str(),
        incident
            .severity
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "no severity".into()),
        incident
            .service
            .as_deref()
            .map(|s| format!(" · {}", escape(s)))
            .unwrap_or_default()
    )];
    lines.push(escape(&incident.title));
    let firing = incident
        .alerts
        .iter()
        .filter(|a| a.status == crate::incident::AlertStatus::Firing)
        .count();
    lines.push(format!(
        "Alerts: {} firing of {}",
        firing,
        incident.alerts.len()
    ));
    let mut figures = vec![format!(
        "TTD {}",
        d(incident.ttd_seconds()).unwrap_or_else(|| "unknown".into())
    )];
    figures.push(
        match (&incident.acknowledged_by, d(incident.tta_seconds())) {
            (Some(by), Some(t)) => format!("TTA {t} (by {})", escape(by)),
            _ => "not acknowledged".into(),
        },
    );
    let m = incident.milestones();
    for (name, milestone) in [
        ("triage", &m.triaged),
        ("identify", &m.identified),
        ("mitigate", &m.mitigated),
    ] {
        figures.push(match milestone {
            Some(ms) => format!(
                "time to {name} {}",
                crate::time::human_duration(incident.since_detection_seconds(ms.at))
            ),
            None => format!("{name}: not recorded"),
        });
    }
    if let Some(t) = d(incident.ttr_seconds()) {
        figures.push(format!("TTR {t}"));
    }
    lines.push(format!("{} (times from detection)", figures.join(" · ")));
    ephemeral(lines.join("\n"))
}
