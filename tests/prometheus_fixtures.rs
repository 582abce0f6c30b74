//! The evidence machinery against the recorded real Prometheus answers of `scenario-single`,
//! served by a local mock server, and against a Prometheus that fails in the usual ways.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use incidentd::evidence_rules::{EvidenceRules, Unit};
use incidentd::incident::{ImpactMethod, LabelSet};
use incidentd::prometheus::snapshot::{plan_snapshot, AlertInput};
use incidentd::prometheus::{
    find_impact_start, find_rule, split_comparison, Client, ClientOptions, Error, ImpactOptions,
    IncidentWindow, SnapshotOptions,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenario-single")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

/// Answers query_range by the expression asked for (whatever the window: the recordings
/// cover the whole scenario at 1 s), with an empty matrix for expressions not recorded.
struct RecordedRanges {
    by_expr: BTreeMap<String, Vec<u8>>,
}

impl RecordedRanges {
    fn new(dir: &str) -> RecordedRanges {
        let rules: serde_json::Value =
            serde_json::from_slice(&read(&format!("{dir}/prom-api-v1-rules.json"))).expect("json");
        let mut by_expr = BTreeMap::new();
        for r in rules["data"]["groups"][0]["rules"]
            .as_array()
            .expect("rules")
        {
            let name = r["name"].as_str().expect("name");
            let expr = r["query"].as_str().expect("query");
            let body = read(&format!("{dir}/prom-api-v1-query_range-{name}.json"));
            // Only the whole (filtered) expressions were recorded; serve them for the
            // measured side too, which then shows the values above the threshold.
            if let Some(c) = split_comparison(expr) {
                by_expr.insert(c.left.clone(), body.clone());
            }
            by_expr.insert(expr.to_string(), body);
        }
        // The measured side of the pool rule was recorded in full.
        by_expr.insert(
            "db_connection_pool_active / db_connection_pool_max".to_string(),
            read(&format!("{dir}/prom-api-v1-query_range-pool-ratio.json")),
        );
        RecordedRanges { by_expr }
    }
}

fn form_param(req: &Request, key: &str) -> Option<String> {
    let body = String::from_utf8_lossy(&req.body);
    let url = reqwest::Url::parse(&format!("http://x/?{body}")).ok()?;
    let found = url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned());
    found
}

impl Respond for RecordedRanges {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let expr = form_param(req, "query").unwrap_or_default();
        match self.by_expr.get(&expr) {
            Some(body) => ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json"),
            None => ResponseTemplate::new(200).set_body_raw(
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "application/json",
            ),
        }
    }
}

async fn recorded_prometheus(dir: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/rules"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            read(&format!("{dir}/prom-api-v1-rules.json")),
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/alerts"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            read(&format!("{dir}/prom-api-v1-alerts.json")),
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/query_range"))
        .respond_with(RecordedRanges::new(dir))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/query"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795400837.535,"512"]}]}}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    server
}

fn client(url: &str, timeout: Duration) -> Client {
    Client::new(&ClientOptions {
        url: url.to_string(),
        timeout,
        bearer_token: None,
        basic_auth: None,
        headers: vec![],
    })
    .expect("client")
}

/// Alerts of the recorded webhooks: (alertname, labels, startsAt).
fn webhook_alerts() -> Vec<(String, LabelSet, DateTime<Utc>)> {
    let mut out = Vec::new();
    for f in [
        "webhooks/01-firing-DatabaseConnectionPoolHigh.json",
        "webhooks/02-firing-HighRequestLatency.json",
    ] {
        let v: serde_json::Value = serde_json::from_slice(&read(f)).expect("json");
        let a = &v["alerts"][0];
        let labels: LabelSet = serde_json::from_value(a["labels"].clone()).expect("labels");
        out.push((
            labels["alertname"].clone(),
            labels,
            t(a["startsAt"].as_str().expect("startsAt")),
        ));
    }
    out
}

#[tokio::test]
async fn impact_start_from_recorded_answers_is_within_one_second_of_the_true_start() {
    let server = recorded_prometheus("prometheus-peak").await;
    let client = client(&server.uri(), Duration::from_secs(5));
    let rules = client.rules().await.expect("rules");
    // exporter-phases.jsonl: the exporter switched to "incident" at 02:26:22.392Z.
    let truth = t("2026-11-23T02:26:22.392Z");
    for (alertname, labels, starts_at) in webhook_alerts() {
        assert_eq!(starts_at, t("2026-11-23T02:26:28.738Z"));
        let rule = find_rule(&rules, &alertname, &labels).expect("rule");
        let impact = find_impact_start(
            &client,
            &rule,
            &labels,
            starts_at,
            &ImpactOptions::default(),
        )
        .await
        .expect("impact start");
        assert_eq!(
            impact.method,
            ImpactMethod::RuleReevaluation,
            "{alertname}: {impact:?}"
        );
        let error = (impact.at - truth).num_milliseconds().abs();
        assert!(
            error <= 1000,
            "{alertname}: impact start {} is {error} ms from the truth {truth}",
            impact.at
        );
        // Not the 6 s late that startsAt − for... would be without re-evaluation.
        assert!(impact.at < starts_at - chrono::Duration::seconds(5));
    }
}

#[tokio::test]
async fn snapshot_of_the_recovered_incident_has_pool_ratio_baseline_peak_and_resolution() {
    let server = recorded_prometheus("prometheus-recovered").await;
    let client = client(&server.uri(), Duration::from_secs(5));
    let rules = client.rules().await.expect("rules");
    let evidence =
        EvidenceRules::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"))
            .expect("rules/");
    let alerts: Vec<AlertInput> = webhook_alerts()
        .into_iter()
        .map(|(alertname, labels, _)| AlertInput {
            rule: find_rule(&rules, &alertname, &labels),
            alertname,
            labels,
        })
        .collect();
    let window = IncidentWindow {
        impact_start: t("2026-11-23T02:26:23.381Z"),
        resolved_at: Some(t("2026-11-23T02:27:02.738Z")),
        now: t("2026-11-23T02:27:17.548Z"),
    };
    let plan = plan_snapshot(&alerts, &evidence, &window);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert!(
        plan.queries.len() >= 4,
        "alert expressions and rules/ queries"
    );
    assert!(plan.impact.iter().any(|q| q.name == "failed_requests"));
    // Different measures stay apart (failed and all requests, p50 and p99); the same measure
    // over another window (the rules/ p99 beside HighRequestLatency's own) runs once.
    assert!(plan.impact.iter().any(|q| q.name == "total_requests"));
    let names: Vec<&str> = plan.queries.iter().map(|q| q.name.as_str()).collect();
    assert!(names.contains(&"request_throughput"), "{names:?}");
    assert!(names.contains(&"latency_p50"), "{names:?}");
    assert!(!names.contains(&"latency_p99"), "{names:?}");
    assert!(plan.aliases.contains(&(
        "latency_p99".to_string(),
        "alert-HighRequestLatency".to_string()
    )));
    assert!(plan
        .actions
        .iter()
        .any(|a| a.spec.action.contains("statement timeout")));
    let options = SnapshotOptions {
        baseline: Duration::from_secs(10),
        margin: Duration::from_secs(10),
        ..SnapshotOptions::default()
    };
    let report = incidentd::prometheus::run_snapshot(&client, &plan, &window, &options).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let pool = report
        .snapshots
        .iter()
        .find(|s| s.name == "alert-DatabaseConnectionPoolHigh")
        .expect("pool snapshot");
    assert_eq!(
        pool.query,
        "db_connection_pool_active / db_connection_pool_max"
    );
    assert_eq!(pool.unit, Unit::Ratio);
    assert_eq!(pool.threshold, Some(0.95));
    assert_eq!(pool.baseline, Some(0.19));
    assert_eq!(pool.peak, Some(1.0));
    assert_eq!(pool.peak_at, Some(t("2026-11-23T02:26:24.381Z")));
    // At resolution: the first value at or after the resolve (02:27:02.738), not the last
    // one before it.
    assert_eq!(pool.at_resolution, Some(0.25));
    assert_eq!(pool.summary, "19 % → 100 % → 25 %");
    // Nothing past the moment of collection.
    for s in &report.snapshots {
        assert!(s.end <= window.now, "{} ends at {}", s.name, s.end);
        for series in &s.series {
            assert!(series.points.iter().all(|p| p.at <= window.now));
        }
    }

    let latency = report
        .snapshots
        .iter()
        .find(|s| s.name == "alert-HighRequestLatency")
        .expect("latency snapshot");
    assert_eq!(latency.unit, Unit::Seconds);
    assert_eq!(latency.threshold, Some(1.0));
    assert!(latency.peak.expect("peak") > 4.0, "{latency:?}");

    let failed = report
        .impact
        .iter()
        .find(|f| f.name == "failed_requests")
        .expect("impact");
    assert_eq!(failed.formatted.as_deref(), Some("512"));
    let json = serde_json::to_value(&report).expect("serializes");
    assert!(json["snapshots"][0]["series"][0]["points"].is_array());
}

async fn failing_prometheus(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(template.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

async fn range_error(client: &Client) -> Error {
    client
        .query_range(
            "up",
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T01:00:00Z"),
            Duration::from_secs(15),
        )
        .await
        .expect_err("should fail")
}

#[tokio::test]
async fn prometheus_answering_500_is_a_retryable_failure() {
    let server = failing_prometheus(ResponseTemplate::new(500).set_body_string("oops")).await;
    let err = range_error(&client(&server.uri(), Duration::from_secs(5))).await;
    assert!(matches!(err, Error::Http { status: 500, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn prometheus_error_envelope_is_a_permanent_api_error() {
    let server = failing_prometheus(ResponseTemplate::new(422).set_body_raw(
        r#"{"status":"error","errorType":"execution","error":"found duplicate series for the match group"}"#,
        "application/json",
    ))
    .await;
    let err = range_error(&client(&server.uri(), Duration::from_secs(5))).await;
    match &err {
        Error::Api {
            status,
            error_type,
            message,
            ..
        } => {
            assert_eq!((*status, error_type.as_str()), (422, "execution"));
            assert!(message.contains("duplicate series"));
        }
        other => panic!("expected Api error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("duplicate series"), "{err}");
}

#[tokio::test]
async fn prometheus_answering_slowly_times_out_and_is_retryable() {
    let server = failing_prometheus(
        ResponseTemplate::new(200)
            .set_body_raw(
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "application/json",
            )
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let started = std::time::Instant::now();
    let err = range_error(&client(&server.uri(), Duration::from_millis(300))).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout bounds the wait"
    );
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn prometheus_unreachable_is_retryable_and_recorded_per_query_in_a_snapshot() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = client(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let err = range_error(&client).await;
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().ends_with(": connection refused"), "{err}");
    assert!(err.is_retryable());

    let rule = incidentd::prometheus::RuleContext::from_generator_url(
        "X",
        "http://p/graph?g0.expr=up+%3D%3D+0",
    )
    .expect("rule");
    let plan = plan_snapshot(
        &[AlertInput {
            alertname: "X".into(),
            labels: LabelSet::new(),
            rule: Some(rule),
        }],
        &EvidenceRules::default(),
        &IncidentWindow {
            impact_start: t("2026-01-01T00:00:00Z"),
            resolved_at: None,
            now: t("2026-01-01T00:10:00Z"),
        },
    );
    let report = incidentd::prometheus::run_snapshot(
        &client,
        &plan,
        &IncidentWindow {
            impact_start: t("2026-01-01T00:00:00Z"),
            resolved_at: None,
            now: t("2026-01-01T00:10:00Z"),
        },
        &SnapshotOptions::default(),
    )
    .await;
    assert!(report.snapshots.is_empty());
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].query.as_deref(), Some("up"));
    assert!(report.has_retryable_errors());
}

#[tokio::test]
async fn auth_and_custom_headers_are_sent() {
    let server = MockServer::start().await;
    Mock::given(path("/prefix/api/v1/alerts"))
        .and(wiremock::matchers::header("authorization", "Bearer s3cret"))
        .and(wiremock::matchers::header("x-scope-orgid", "tenant-1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            read("prometheus-peak/prom-api-v1-alerts.json"),
            "application/json",
        ))
        .mount(&server)
        .await;
    let client = Client::new(&ClientOptions {
        url: format!("{}/prefix/", server.uri()),
        timeout: Duration::from_secs(5),
        bearer_token: Some("s3cret".into()),
        basic_auth: None,
        headers: vec![("X-Scope-OrgID".into(), "tenant-1".into())],
    })
    .expect("client");
    let alerts = client.alerts().await.expect("alerts");
    assert_eq!(alerts.len(), 3);
    assert_eq!(alerts[0].state, "firing");
}
