//! The incident API: list, show, acknowledge, add notes, resolve by hand.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::check_api_token;
use super::{ApiError, AppState, Path, Query};
use crate::draft::DraftError;
use crate::incident::{Action, Incident, Status};
use crate::postmortem::Evidence;
use crate::store::{ActError, ListFilter};
use crate::time::format_duration;
use crate::time::rfc3339;

/// Longest name accepted in `by`, and longest note.
const MAX_BY: usize = 200;
pub const MAX_NOTE: usize = 10_000;
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Response milestones recorded with notes (`triage:`, `root cause:`/`identified:`,
/// `mitigated:`): when, by whom, and how long after detection (`time_to_*_seconds`, like
/// TTA) and after the impact start (`*_after_impact_start_seconds`); `null` where unknown.
fn milestones_json(i: &Incident) -> Value {
    let m = i.milestones();
    let mut v = json!({});
    for (name, noun, milestone) in [
        ("triaged", "triage", &m.triaged),
        ("identified", "identify", &m.identified),
        ("mitigated", "mitigate", &m.mitigated),
    ] {
        let at = milestone.as_ref().map(|m| m.at);
        v[format!("{name}_at")] = json!(at.map(rfc3339));
        v[format!("{name}_by")] = json!(milestone.as_ref().map(|m| m.by.clone()));
        v[format!("time_to_{noun}_seconds")] = json!(at.map(|a| i.since_detection_seconds(a)));
        v[format!("{name}_after_impact_start_seconds")] =
            json!(at.and_then(|a| i.since_impact_start_seconds(a)));
    }
    v
}

/// The JSON of an incident: stored fields plus derived figures; `details` adds alerts and timeline.
pub fn incident_json(i: &Incident, details: bool) -> Value {
    let time = |t: Option<crate::incident::Timestamp>| t.map(rfc3339);
    let mut v = json!({
        "id": i.id,
        "title": i.title,
        "status": i.status.as_str(),
        "severity": i.severity,
        "service": i.service,
        "key": i.key,
        "impact_start": time(i.impact_start),
        "impact_start_method": i.impact_start_method.as_str(),
        "fired_at": rfc3339(i.fired_at),
        "detected_at": rfc3339(i.detected_at),
        "acknowledged_at": time(i.acknowledged_at),
        "acknowledged_by": i.acknowledged_by,
        "resolved_at": time(i.resolved_at),
        "resolved_by": i.resolved_by,
        "ttd_seconds": i.ttd_seconds(),
        "tta_seconds": i.tta_seconds(),
        "ttr_seconds": i.ttr_seconds(),
        "duration_seconds": i.duration_seconds(),
        "reopen_count": i.reopen_count,
        "milestones": milestones_json(i),
        "notifications": i.notifications,
        "version": i.version,
    });
    if details {
        v["alerts"] = i
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "fingerprint": a.fingerprint,
                    "alertname": a.alertname,
                    "status": a.status.as_str(),
                    "starts_at": rfc3339(a.starts_at),
                    "ends_at": time(a.ends_at),
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "generator_url": a.generator_url,
                    "first_seen_at": rfc3339(a.first_seen_at),
                    "last_seen_at": rfc3339(a.last_seen_at),
                    "resolved_by": a.resolved_by,
                })
            })
            .collect();
        v["timeline"] = i
            .timeline
            .iter()
            .map(|e| json!({"at": rfc3339(e.at), "kind": e.kind.as_str(), "actor": e.actor, "text": e.text}))
            .collect();
    }
    v
}

/// Adds what the evidence knows to an incident's JSON (made with `details`): per alert its
/// `rule` (`expr`, `for`) when known, and the incident's `snapshots` with their chart URLs.
pub fn add_evidence(v: &mut Value, i: &Incident, evidence: Option<&Evidence>) {
    let rules = evidence.map(|e| e.rules.as_slice()).unwrap_or_default();
    if let Some(alerts) = v["alerts"].as_array_mut() {
        for a in alerts {
            let rule = a["alertname"]
                .as_str()
                .and_then(|name| rules.iter().find(|r| r.alertname == name));
            a["rule"] = match rule {
                Some(r) => json!({
                    "expr": r.expr,
                    "for": r.for_seconds.map(|s| format_duration(std::time::Duration::from_secs(s))),
                    "for_seconds": r.for_seconds,
                    "group": r.group,
                }),
                None => Value::Null,
            };
        }
    }
    use crate::postmortem::evidence_view::{state, EvidenceState};
    let ev_state = evidence.map(|e| state(i, e));
    let at_resolution_true = ev_state == Some(EvidenceState::Resolved);
    v["snapshots"] = evidence
        .map(|e| {
            e.snapshots
                .iter()
                .map(|s| {
                    let name = s
                        .chart
                        .as_deref()
                        .and_then(|c| c.strip_suffix(".svg"))
                        .unwrap_or(&s.name);
                    json!({
                        "name": name,
                        "title": s.name,
                        "query": s.query,
                        "unit": s.unit.as_str(),
                        "baseline": s.baseline,
                        "peak": s.peak,
                        // Only from data at or after this resolve; `null` while open and
                        // until the full snapshot is in.
                        "at_resolution": if at_resolution_true { s.at_resolution } else { None },
                        // The last value of the data and its time ("now" while open).
                        "latest": s.latest.or(if e.data_until.is_none() && !at_resolution_true { s.at_resolution } else { None }),
                        "latest_at": s.latest_at.map(rfc3339),
                        "no_data": s.no_data,
                        "lower_is_worse": s.lower_is_worse,
                        "alertname": s.alertname,
                        "note": s.note,
                        "threshold": s.threshold,
                        "chart_url": s.chart.as_ref().map(|c| format!("/api/v1/incidents/{}/charts/{c}", i.id)),
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into();
    v["evidence"] = match evidence {
        Some(e) => {
            let (state_name, due) = match &ev_state {
                Some(EvidenceState::Open { .. }) | None => ("open", None),
                Some(EvidenceState::Pending { due, .. }) => ("resolve_pending", *due),
                Some(EvidenceState::Resolved) => ("resolved", None),
            };
            json!({
                "collected_at": e.collected_at.map(rfc3339),
                "data_until": e.data_until.or(e.collected_at).map(rfc3339),
                "state": state_name,
                "after_resolve_due_at": due.map(rfc3339),
                "missing_reason": e.missing_reason,
            })
        }
        None => Value::Null,
    };
}

/// An incident with its alerts, timeline and evidence, as `GET /api/v1/incidents/{id}` serves it.
async fn detailed(state: &AppState, id: String) -> Result<Option<Value>, ApiError> {
    let found = state.store.incident_with_evidence(&id).await?;
    Ok(found.map(|(i, evidence)| {
        let evidence: Option<Evidence> = evidence.and_then(|e| serde_json::from_value(e).ok());
        let mut v = incident_json(&i, true);
        add_evidence(&mut v, &i, evidence.as_ref());
        v
    }))
}

/// Incident ids are `INC-<year>-<digits>`; anything else is refused before it reaches a query.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let mut parts = id.splitn(3, '-');
    let ok = parts.next() == Some("INC")
        && parts
            .next()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|n| (4..=9).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "id: {:?} is not an incident id (INC-<year>-<number>)",
            id.chars().take(64).collect::<String>()
        )))
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    service: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status: {s:?} is not one of open, acknowledged, resolved"
            ))
        })?),
    };
    let limit = match p.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit: {l:?} is not a number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    if let Some(before) = &p.before {
        check_id(before).map_err(|_| {
            ApiError::BadRequest(format!("before: {before:?} is not an incident id"))
        })?;
    }
    let filter = ListFilter {
        status,
        service: p.service.filter(|s| !s.is_empty()),
        before: p.before,
        limit,
    };
    let page = state.store.list_incidents(filter).await?;
    Ok(Json(json!({
        "incidents": page.incidents.iter().map(|i| incident_json(i, false)).collect::<Vec<_>>(),
        "next_before": page.next_before,
    })))
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    match detailed(&state, id.clone()).await? {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::NotFound(format!("incident {id} not found"))),
    }
}

/// `GET /api/v1/incidents/{id}/charts/{name}.svg`: one chart of the incident's evidence.
pub async fn chart(
    State(state): State<Arc<AppState>>,
    Path((id, file)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    check_id(&id)?;
    check_chart_file(&file)?;
    let svg = state.store.chart(&id, &file).await?;
    match svg {
        Some(svg) => Ok((
            [
                (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
                // Charts are data, not pages: no scripts even if one slipped into a label.
                (
                    axum::http::header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            svg,
        )
            .into_response()),
        None => Err(ApiError::NotFound(format!(
            "incident {id} has no chart {file}"
        ))),
    }
}

/// Chart file names are `<name>.svg` with `name` of `[A-Za-z0-9_.-]`, never `..`.
pub fn check_chart_file(file: &str) -> Result<(), ApiError> {
    let ok = !file.contains("..")
        && file.strip_suffix(".svg").is_some_and(|name| {
            !name.is_empty()
                && name.len() <= 200
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "name: {:?} is not a chart name (<letters, digits, _ . ->.svg)",
            file.chars().take(64).collect::<String>()
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByBody {
    by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    by: String,
    text: String,
}

/// Parse a JSON body, naming the field on error.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| ApiError::BadRequest(crate::alertmanager::json_error(e, "body")))
}

fn check_by(by: &str) -> Result<String, ApiError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(ApiError::BadRequest("by: must name who did it".into()));
    }
    if by.chars().count() > MAX_BY || by.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "by: must be at most {MAX_BY} characters, without control characters"
        )));
    }
    Ok(by.to_string())
}

/// Apply a person's action (API, CLI or Slack button) and queue what follows from it.
pub async fn perform(state: &AppState, id: &str, by: &str, action: Action) -> Result<(), ApiError> {
    check_id(id)?;
    let by = check_by(by)?;
    let now = state.now();
    let kind = match &action {
        Action::Acknowledge => "acknowledged",
        Action::Note(_) => "note_added",
        Action::Resolve => "resolved",
    };
    let acknowledging = matches!(action, Action::Acknowledge);
    let result = match state.store.act(id, &by, action, now).await {
        Ok(incident) => {
            observe_figures(state, &incident, acknowledging, now);
            Ok(())
        }
        Err(ActError::NotFound(m)) => Err(ApiError::NotFound(format!("incident {m} not found"))),
        Err(ActError::Conflict(m)) => Err(ApiError::Conflict(m)),
        Err(ActError::Store(e)) => Err(e.into()),
    };
    result?;
    state.wake.notify_waiters();
    tracing::info!(incident = %id, by = %by, action = kind, "incident updated by a person");
    Ok(())
}

/// The per-incident figures a person's action made known, for `/metrics`: TTA at the first
/// acknowledgement (the incident's `acknowledged_at` is this action's time), TTR, duration
/// and TTD when a person resolves an incident that never reopened (resolving twice is
/// refused, so this is its first resolution).
fn observe_figures(
    state: &AppState,
    incident: &Incident,
    acknowledging: bool,
    now: crate::incident::Timestamp,
) {
    if acknowledging && incident.acknowledged_at == Some(now) {
        state.metrics.incident_acknowledged(incident);
    }
    if incident.status == Status::Resolved
        && incident.resolved_at == Some(now)
        && incident.reopen_count == 0
    {
        state.metrics.incident_resolved(incident);
    }
}

/// Apply a person's action and answer with the incident. Callers check the API token
/// first, before reading the body, so an unauthenticated caller learns nothing from it.
async fn act(
    state: Arc<AppState>,
    id: String,
    by: String,
    action: Action,
) -> Result<Json<Value>, ApiError> {
    perform(&state, &id, &by, action).await?;
    let incident = detailed(&state, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("incident vanished".into()))?;
    Ok(Json(incident))
}

pub async fn acknowledge(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    check_api_token(state.api_token.as_ref(), &headers)?;
    let b: ByBody = parse_body(&body)?;
    act(state, id, b.by, Action::Acknowledge).await
}

pub async fn resolve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    check_api_token(state.api_token.as_ref(), &headers)?;
    let b: ByBody = parse_body(&body)?;
    act(state, id, b.by, Action::Resolve).await
}

pub async fn add_note(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    check_api_token(state.api_token.as_ref(), &headers)?;
    let b: NoteBody = parse_body(&body)?;
    let text = b.text.trim().to_string();
    if text.is_empty() {
        return Err(ApiError::BadRequest("text: must not be empty".into()));
    }
    if text.chars().count() > MAX_NOTE {
        return Err(ApiError::BadRequest(format!(
            "text: longer than {MAX_NOTE} characters"
        )));
    }
    act(state, id, b.by, Action::Note(text)).await
}

/// `X-Incidentd-Draft`: `stored` when the draft served is the one the render job stored
/// (every replica serves the same bytes, also written to disk), `provisional` when none is
/// stored yet and it was rendered for this request.
pub const DRAFT_HEADER: &str = "x-incidentd-draft";

/// `GET /api/v1/incidents/{id}/postmortem`: the stored draft, with `ETag` (its SHA-256) and
/// `Last-Modified` (when it was rendered), `304` for a matching `If-None-Match`. Before the
/// render job first ran (`postmortem.render_delay`), a provisional draft rendered now.
pub async fn postmortem(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    check_id(&id)?;
    const MARKDOWN: (header::HeaderName, &str) =
        (header::CONTENT_TYPE, "text/markdown; charset=utf-8");
    if let Some(draft) = state.store.draft(&id).await? {
        let etag = format!("\"{}\"", draft.sha256);
        let last_modified = http_date(draft.rendered_at);
        let validators = [
            (header::ETAG, etag.clone()),
            (header::LAST_MODIFIED, last_modified),
            // Always ask again: a draft changes with every render.
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ];
        let stored = (axum::http::HeaderName::from_static(DRAFT_HEADER), "stored");
        if none_match(&headers, &draft.sha256) {
            return Ok((StatusCode::NOT_MODIFIED, validators, [stored]).into_response());
        }
        return Ok((validators, [stored, MARKDOWN], draft.markdown).into_response());
    }
    match state.drafts.markdown(&state.store, &id, state.now()).await {
        Ok(md) => Ok((
            [
                MARKDOWN,
                (
                    axum::http::HeaderName::from_static(DRAFT_HEADER),
                    "provisional",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            md,
        )
            .into_response()),
        Err(DraftError::NotFound(_)) => Err(ApiError::NotFound(format!("incident {id} not found"))),
        Err(DraftError::Store(e)) => Err(ApiError::Store(e)),
        Err(e @ DraftError::Interrupted) => Err(ApiError::Internal(e.to_string())),
        Err(DraftError::Render(e)) => {
            tracing::error!(incident = %id, error = %e, "rendering the draft failed");
            Err(ApiError::Internal(format!(
                "rendering the draft failed: {e}"
            )))
        }
    }
}

/// An HTTP date (RFC 9110, IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: crate::incident::Timestamp) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Whether `If-None-Match` names the entity tag `"<sha256>"` (weakly compared) or is `*`.
fn none_match(headers: &HeaderMap, sha256: &str) -> bool {
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) == Some(sha256)
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    service: Option<String>,
}

/// `GET /api/v1/reports?since=30d&until=…&by=week|month&service=…`: figures across incidents
/// ([`crate::report`]), periods cut in the drafts' time zone.
pub async fn report(
    State(state): State<Arc<AppState>>,
    Query(p): Query<ReportParams>,
) -> Result<Json<crate::report::Report>, ApiError> {
    let now = state.now();
    let zone = state.drafts.timezone();
    let request = crate::report::parse_request(
        p.since.as_deref(),
        p.until.as_deref(),
        p.by.as_deref(),
        p.service.as_deref(),
        now,
        zone,
    )
    .map_err(ApiError::BadRequest)?;
    Ok(Json(state.report(&request, zone, now).await?))
}
