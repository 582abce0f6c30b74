//! `incidentd incidents list|show|ack|note|resolve`: reads and updates incidents through a
//! running daemon's HTTP API and prints them as tables (or the daemon's JSON with `--json`).
//!
//! The views below decode only what the tables show and ignore everything else, so the CLI
//! keeps working against a daemon that has grown new fields.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Deserialize;

use super::format::{self, Table, UNKNOWN};
use super::{endpoint, parse_base_url, read_secret, send, CliError, Daemon};
use crate::incident::Status;

/// Arguments of `incidentd incidents list`.
pub struct ListArgs<'a> {
    pub daemon: &'a Daemon,
    pub status: Option<Status>,
    pub service: Option<String>,
    pub limit: Option<u32>,
    /// Print the daemon's JSON answer instead of a table.
    pub json: bool,
    pub out: &'a mut (dyn Write + Send),
}

/// Arguments of `incidentd incidents show ID`.
pub struct ShowArgs<'a> {
    pub daemon: &'a Daemon,
    pub id: String,
    /// Print the daemon's JSON answer instead of the report.
    pub json: bool,
    pub out: &'a mut (dyn Write + Send),
}

/// An incident as the API serves it, reduced to what the CLI shows.
#[derive(Debug, Clone, Deserialize)]
pub struct IncidentView {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// Kept as text so a status added later still prints.
    pub status: String,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub impact_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub impact_start_method: Option<String>,
    #[serde(default)]
    pub fired_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub detected_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resolved_by: Option<String>,
    #[serde(default)]
    pub ttd_seconds: Option<f64>,
    #[serde(default)]
    pub tta_seconds: Option<f64>,
    #[serde(default)]
    pub ttr_seconds: Option<f64>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub reopen_count: Option<u32>,
    #[serde(default)]
    pub alerts: Vec<AlertView>,
    #[serde(default)]
    pub timeline: Vec<TimelineView>,
}

/// One alert occurrence of an incident.
#[derive(Debug, Clone, Deserialize)]
pub struct AlertView {
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub alertname: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

/// One timeline row of an incident.
#[derive(Debug, Clone, Deserialize)]
pub struct TimelineView {
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Deserialize)]
struct ListBody {
    incidents: Vec<IncidentView>,
}

/// `GET /api/v1/incidents` with the filters, printed as a table, newest first (the
/// daemon's order).
pub async fn list(args: ListArgs<'_>) -> Result<(), CliError> {
    let base = parse_base_url(&args.daemon.url)?;
    let mut url = endpoint(&base, &["api", "v1", "incidents"]);
    {
        let mut query = url.query_pairs_mut();
        if let Some(status) = args.status {
            query.append_pair("status", status.as_str());
        }
        if let Some(service) = &args.service {
            query.append_pair("service", service);
        }
        if let Some(limit) = args.limit {
            query.append_pair("limit", &limit.to_string());
        }
    }
    // An empty query would leave a bare `?` behind.
    if url.query() == Some("") {
        url.set_query(None);
    }
    let http = &args.daemon.http;
    let request = http.authorize(http.client()?.get(url.clone()));
    let (_, body) = send("GET", &url, request).await?;
    if args.json {
        return print_raw(args.out, &body);
    }
    let list: ListBody = decode(&url, &body)?;
    if list.incidents.is_empty() {
        writeln!(args.out, "no incidents")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID", "STATUS", "SEVERITY", "SERVICE", "FIRED", "DURATION", "TITLE",
    ]);
    for incident in &list.incidents {
        table.row(vec![
            incident.id.clone(),
            incident.status.clone(),
            format::or_unknown(incident.severity.as_deref()),
            format::or_unknown(incident.service.as_deref()),
            format::time(incident.fired_at),
            format::duration(incident.duration_seconds),
            incident.title.clone(),
        ]);
    }
    write!(args.out, "{}", table.render())?;
    Ok(())
}

/// `GET /api/v1/incidents/{id}`, printed as a header with times and figures, then the alerts
/// and the timeline.
pub async fn show(args: ShowArgs<'_>) -> Result<(), CliError> {
    let base = parse_base_url(&args.daemon.url)?;
    let url = endpoint(&base, &["api", "v1", "incidents", &args.id]);
    let http = &args.daemon.http;
    let request = http.authorize(http.client()?.get(url.clone()));
    let (_, body) = send("GET", &url, request).await?;
    if args.json {
        return print_raw(args.out, &body);
    }
    let incident: IncidentView = decode(&url, &body)?;
    write!(args.out, "{}", render_incident(&incident))?;
    Ok(())
}

/// `POST /api/v1/incidents/{id}/ack` as `by`.
pub async fn ack(
    daemon: &Daemon,
    id: &str,
    by: &str,
    token_file: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let body = serde_json::json!({ "by": by });
    let answer = post_action(daemon, id, "ack", &body, token_file).await?;
    writeln!(out, "{id} acknowledged by {by}{}", status_suffix(&answer))?;
    Ok(())
}

/// `POST /api/v1/incidents/{id}/notes` as `by`.
pub async fn note(
    daemon: &Daemon,
    id: &str,
    by: &str,
    text: &str,
    token_file: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let body = serde_json::json!({ "by": by, "text": text });
    post_action(daemon, id, "notes", &body, token_file).await?;
    writeln!(out, "note added to {id} by {by}")?;
    Ok(())
}

/// `POST /api/v1/incidents/{id}/resolve` as `by`.
pub async fn resolve(
    daemon: &Daemon,
    id: &str,
    by: &str,
    token_file: Option<&Path>,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let body = serde_json::json!({ "by": by });
    let answer = post_action(daemon, id, "resolve", &body, token_file).await?;
    writeln!(out, "{id} resolved by {by}{}", status_suffix(&answer))?;
    Ok(())
}

/// Posts to one of the writing routes, returning the answer's body.
async fn post_action(
    daemon: &Daemon,
    id: &str,
    action: &str,
    body: &serde_json::Value,
    token_file: Option<&Path>,
) -> Result<String, CliError> {
    let base = parse_base_url(&daemon.url)?;
    let url = endpoint(&base, &["api", "v1", "incidents", id, action]);
    let token = token_file.map(read_secret).transpose()?;
    let request = daemon.http.client()?.post(url.clone()).json(body);
    // The API token, when given, is the one credential sent: it is what the writing routes
    // demand, and the daemon's basic auth accepts it too (a request has one Authorization).
    let request = match &token {
        Some(token) => request.bearer_auth(token),
        None => daemon.http.authorize(request),
    };
    let (_, answer) = send("POST", &url, request).await?;
    Ok(answer)
}

/// ` (status: acknowledged)` when the daemon answered with the updated incident; the
/// contract does not promise a body, so nothing otherwise.
fn status_suffix(answer: &str) -> String {
    serde_json::from_str::<IncidentView>(answer)
        .map(|incident| format!(" (status: {})", incident.status))
        .unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(url: &Url, body: &str) -> Result<T, CliError> {
    serde_json::from_str(body).map_err(|source| CliError::Decode {
        url: url.to_string(),
        source,
    })
}

fn print_raw(out: &mut (dyn Write + Send), body: &str) -> Result<(), CliError> {
    write!(out, "{body}")?;
    if !body.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

fn with_actor(time: Option<DateTime<Utc>>, by: Option<&str>) -> String {
    match (time, by) {
        (Some(t), Some(by)) if !by.is_empty() => format!("{} by {by}", format::time(Some(t))),
        _ => format::time(time),
    }
}

/// The report `incidents show` prints.
pub fn render_incident(incident: &IncidentView) -> String {
    let method = match incident.impact_start_method.as_deref() {
        Some("rule_reevaluation") => " (rule re-evaluated over the range before it fired)",
        Some("starts_at_minus_for") => " (startsAt − the rule's for)",
        Some("starts_at") => " (startsAt: the rule's for is unknown)",
        _ => "",
    };
    let impact_start = if incident.impact_start.is_some() {
        format!("{}{method}", format::time(incident.impact_start))
    } else {
        UNKNOWN.to_string()
    };
    let header: Vec<(&str, String)> = vec![
        ("Status", incident.status.clone()),
        ("Severity", format::or_unknown(incident.severity.as_deref())),
        ("Service", format::or_unknown(incident.service.as_deref())),
        ("Key", format::or_unknown(incident.key.as_deref())),
        (
            "Reopened",
            incident
                .reopen_count
                .map_or(UNKNOWN.to_string(), |n| n.to_string()),
        ),
        ("", String::new()),
        ("Impact start", impact_start),
        ("Fired", format::time(incident.fired_at)),
        ("Detected", format::time(incident.detected_at)),
        (
            "Acknowledged",
            with_actor(
                incident.acknowledged_at,
                incident.acknowledged_by.as_deref(),
            ),
        ),
        (
            "Resolved",
            with_actor(incident.resolved_at, incident.resolved_by.as_deref()),
        ),
        ("", String::new()),
        ("TTD", format::duration(incident.ttd_seconds)),
        ("TTA", format::duration(incident.tta_seconds)),
        ("TTR", format::duration(incident.ttr_seconds)),
        ("Duration", format::duration(incident.duration_seconds)),
    ];

    let mut out = format!("{}  {}\n\n", incident.id, incident.title);
    for (label, value) in header {
        if label.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
        }
    }

    out.push_str(&format!("\nAlerts ({})\n", incident.alerts.len()));
    let mut alerts = Table::new(&[
        "ALERTNAME",
        "STATUS",
        "SEVERITY",
        "STARTED",
        "ENDED",
        "FINGERPRINT",
    ]);
    for alert in &incident.alerts {
        let name = if alert.alertname.is_empty() {
            alert.labels.get("alertname").cloned().unwrap_or_default()
        } else {
            alert.alertname.clone()
        };
        alerts.row(vec![
            name,
            format::or_unknown(Some(&alert.status)),
            format::or_unknown(alert.labels.get("severity").map(String::as_str)),
            format::time(alert.starts_at),
            format::time(alert.ends_at),
            alert.fingerprint.clone(),
        ]);
    }
    out.push_str(&alerts.render());

    out.push_str(&format!("\nTimeline ({})\n", incident.timeline.len()));
    let mut timeline = Table::new(&["TIME", "EVENT", "ACTOR", "TEXT"]);
    for event in &incident.timeline {
        timeline.row(vec![
            format::time(event.at),
            event.kind.replace('_', " "),
            format::or_unknown(Some(&event.actor)),
            event.text.clone(),
        ]);
    }
    out.push_str(&timeline.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn fixture() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/api/incident-INC-2026-0001.json"),
        )
        .unwrap()
    }

    fn fixture_value() -> serde_json::Value {
        serde_json::from_str(&fixture()).unwrap()
    }

    /// An open incident with no service, nothing acknowledged or resolved yet.
    fn open_incident() -> serde_json::Value {
        serde_json::json!({
            "id": "INC-2026-0002",
            "key": "{}:{alertname=\"DiskFull\"}",
            "title": "Disk almost full on db-1",
            "status": "open",
            "severity": "warning",
            "service": null,
            "impact_start": null,
            "fired_at": "2026-11-23T03:10:00Z",
            "detected_at": "2026-11-23T03:10:01.2Z",
            "acknowledged_at": null,
            "resolved_at": null,
            "ttd_seconds": null,
            "tta_seconds": null,
            "ttr_seconds": null,
            "duration_seconds": null,
            "reopen_count": 0,
            "some_future_field": {"nested": true}
        })
    }

    #[test]
    fn the_api_fixture_is_a_domain_incident_with_consistent_figures() {
        let incident: Incident = serde_json::from_str(&fixture()).unwrap();
        let value = fixture_value();
        assert_eq!(value["ttd_seconds"].as_f64(), incident.ttd_seconds());
        assert_eq!(value["tta_seconds"].as_f64(), incident.tta_seconds());
        assert_eq!(value["ttr_seconds"].as_f64(), incident.ttr_seconds());
        assert_eq!(
            value["duration_seconds"].as_f64(),
            incident.duration_seconds()
        );
        assert_eq!(incident.alerts.len(), 3);
    }

    #[tokio::test]
    async fn list_passes_the_filters_and_prints_a_table() {
        let server = MockServer::start().await;
        let mut resolved = fixture_value();
        let object = resolved.as_object_mut().unwrap();
        object.remove("alerts");
        object.remove("timeline");
        Mock::given(method("GET"))
            .and(path("/api/v1/incidents"))
            .and(query_param("status", "open"))
            .and(query_param("service", "payment-service"))
            .and(query_param("limit", "20"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"incidents": [open_incident(), resolved]})),
            )
            .expect(1)
            .mount(&server)
            .await;

        let mut out = Vec::new();
        list(ListArgs {
            daemon: &Daemon::new(server.uri()),
            status: Some(Status::Open),
            service: Some("payment-service".into()),
            limit: Some(20),
            json: false,
            out: &mut out,
        })
        .await
        .unwrap();

        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\
ID             STATUS    SEVERITY  SERVICE          FIRED                    DURATION  TITLE
INC-2026-0002  open      warning   —                2026-11-23 03:10:00 UTC  —         Disk almost full on db-1
INC-2026-0001  resolved  critical  payment-service  2026-11-23 02:26:28 UTC  39s       Database connection pool nearly exhausted on payment-service
"
        );
    }

    #[tokio::test]
    async fn list_with_json_prints_the_daemons_answer_unchanged() {
        let server = MockServer::start().await;
        let answer = r#"{"incidents":[]}"#;
        Mock::given(method("GET"))
            .and(path("/api/v1/incidents"))
            .respond_with(ResponseTemplate::new(200).set_body_string(answer))
            .mount(&server)
            .await;
        let mut out = Vec::new();
        list(ListArgs {
            daemon: &Daemon::new(server.uri()),
            status: None,
            service: None,
            limit: None,
            json: true,
            out: &mut out,
        })
        .await
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{answer}\n"));
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests[0].url.query(), None);
    }

    #[tokio::test]
    async fn an_empty_list_says_so() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"incidents": []})),
            )
            .mount(&server)
            .await;
        let mut out = Vec::new();
        list(ListArgs {
            daemon: &Daemon::new(server.uri()),
            status: Some(Status::Resolved),
            service: None,
            limit: None,
            json: false,
            out: &mut out,
        })
        .await
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no incidents\n");
    }

    #[tokio::test]
    async fn show_prints_times_figures_alerts_and_timeline() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v1/incidents/INC-2026-0001"))
            .respond_with(ResponseTemplate::new(200).set_body_string(fixture()))
            .mount(&server)
            .await;
        let mut out = Vec::new();
        show(ShowArgs {
            daemon: &Daemon::new(server.uri()),
            id: "INC-2026-0001".into(),
            json: false,
            out: &mut out,
        })
        .await
        .unwrap();
        let expected = "\
INC-2026-0001  Database connection pool nearly exhausted on payment-service

Status:       resolved
Severity:     critical
Service:      payment-service
Key:          service=\"payment-service\"
Reopened:     0

Impact start: 2026-11-23 02:26:23 UTC (startsAt − the rule's for)
Fired:        2026-11-23 02:26:28 UTC
Detected:     2026-11-23 02:26:29 UTC
Acknowledged: 2026-11-23 02:26:41 UTC by alice
Resolved:     2026-11-23 02:27:02 UTC

TTD:          6s
TTA:          11s
TTR:          33s
Duration:     39s

Alerts (3)
ALERTNAME                   STATUS    SEVERITY  STARTED                  ENDED                    FINGERPRINT
DatabaseConnectionPoolHigh  resolved  critical  2026-11-23 02:26:28 UTC  2026-11-23 02:26:53 UTC  f359ea1a0f5279b1
HighRequestLatency          resolved  warning   2026-11-23 02:26:28 UTC  2026-11-23 02:27:02 UTC  468c7f5d7eab4d7d
HighErrorRate               resolved  warning   2026-11-23 02:26:30 UTC  2026-11-23 02:27:00 UTC  c39ecdcbd7b9ce5a

Timeline (10)
TIME                     EVENT           ACTOR         TEXT
2026-11-23 02:26:28 UTC  alert firing    Prometheus    DatabaseConnectionPoolHigh firing (critical): Database connection pool nearly exhausted on payment-service
2026-11-23 02:26:28 UTC  alert firing    Prometheus    HighRequestLatency firing (warning): High p99 latency on payment-service
2026-11-23 02:26:29 UTC  detected        Alertmanager  First notification received (receiver e2e-webhook)
2026-11-23 02:26:30 UTC  alert firing    Prometheus    HighErrorRate firing (warning): High 5xx error rate on payment-service
2026-11-23 02:26:41 UTC  acknowledged    alice         Acknowledged by alice
2026-11-23 02:26:48 UTC  note added      alice         Pool at 100% since the 02:26 deploy; rolling back payment-service
2026-11-23 02:26:53 UTC  alert resolved  Alertmanager  DatabaseConnectionPoolHigh resolved
2026-11-23 02:27:00 UTC  alert resolved  Alertmanager  HighErrorRate resolved
2026-11-23 02:27:02 UTC  alert resolved  Alertmanager  HighRequestLatency resolved
2026-11-23 02:27:02 UTC  resolved        incidentd     All 3 alerts resolved
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn an_open_incident_shows_unknown_figures_as_dashes() {
        let incident: IncidentView = serde_json::from_value(open_incident()).unwrap();
        let report = render_incident(&incident);
        assert!(report.contains("Impact start: —\n"), "{report}");
        assert!(report.contains("Acknowledged: —\n"), "{report}");
        assert!(report.contains("TTD:          —\n"), "{report}");
        assert!(report.contains("Duration:     —\n"), "{report}");
        assert!(report.contains("Service:      —\n"), "{report}");
        assert!(report.contains("Alerts (0)\n"), "{report}");
    }

    #[tokio::test]
    async fn show_of_an_unknown_id_reports_the_daemons_error() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(404).set_body_json(
                    serde_json::json!({"error": "incident INC-2026-0404 not found"}),
                ),
            )
            .mount(&server)
            .await;
        let mut out = Vec::new();
        let err = show(ShowArgs {
            daemon: &Daemon::new(server.uri()),
            id: "INC-2026-0404".into(),
            json: false,
            out: &mut out,
        })
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!(
                "GET {}/api/v1/incidents/INC-2026-0404 answered 404 Not Found: incident INC-2026-0404 not found",
                server.uri()
            )
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_incident_is_a_decode_error_naming_the_url() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy login</html>"))
            .mount(&server)
            .await;
        let mut out = Vec::new();
        let err = show(ShowArgs {
            daemon: &Daemon::new(server.uri()),
            id: "INC-2026-0001".into(),
            json: false,
            out: &mut out,
        })
        .await
        .unwrap_err();
        assert!(matches!(err, CliError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("/api/v1/incidents/INC-2026-0001"));
    }

    #[tokio::test]
    async fn ack_note_and_resolve_post_the_documented_bodies_with_the_api_token() {
        let server = MockServer::start().await;
        let mut acknowledged = fixture_value();
        acknowledged["status"] = "acknowledged".into();
        Mock::given(method("POST"))
            .and(path("/api/v1/incidents/INC-2026-0001/ack"))
            .and(header("authorization", "Bearer api-token"))
            .and(body_json(serde_json::json!({"by": "alice"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(acknowledged))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v1/incidents/INC-2026-0001/notes"))
            .and(header("authorization", "Bearer api-token"))
            .and(body_json(
                serde_json::json!({"by": "alice", "text": "rolled back v2.14.1"}),
            ))
            .respond_with(ResponseTemplate::new(201))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v1/incidents/INC-2026-0001/resolve"))
            .and(header("authorization", "Bearer api-token"))
            .and(body_json(serde_json::json!({"by": "bob"})))
            .respond_with(ResponseTemplate::new(200).set_body_string(fixture()))
            .expect(1)
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("api-token");
        std::fs::write(&token, "api-token\n").unwrap();

        let mut out = Vec::new();
        let daemon = Daemon::new(server.uri());
        ack(&daemon, "INC-2026-0001", "alice", Some(&token), &mut out)
            .await
            .unwrap();
        note(
            &daemon,
            "INC-2026-0001",
            "alice",
            "rolled back v2.14.1",
            Some(&token),
            &mut out,
        )
        .await
        .unwrap();
        resolve(&daemon, "INC-2026-0001", "bob", Some(&token), &mut out)
            .await
            .unwrap();

        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INC-2026-0001 acknowledged by alice (status: acknowledged)\n\
             note added to INC-2026-0001 by alice\n\
             INC-2026-0001 resolved by bob (status: resolved)\n"
        );
    }

    #[tokio::test]
    async fn a_refused_ack_reports_the_status_and_the_daemons_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(serde_json::json!({"error": "missing or wrong API token"})),
            )
            .mount(&server)
            .await;
        let mut out = Vec::new();
        let err = ack(
            &Daemon::new(server.uri()),
            "INC-2026-0001",
            "alice",
            None,
            &mut out,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("answered 401 Unauthorized: missing or wrong API token"),
            "{err}"
        );
        let requests = server.received_requests().await.unwrap();
        assert!(!requests[0].headers.contains_key("authorization"));
    }
}
