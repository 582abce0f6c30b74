//! Evidence from Prometheus in the running daemon: the recorded scenario against the recorded
//! Prometheus answers (true impact start, snapshots, charts, the draft's metrics), and a
//! Prometheus that is down, failing, slow or answering with an error envelope: ingestion stays
//! fast, the job retries, and evidence arrives once Prometheus answers.

use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::{MockServer, ResponseTemplate};

use crate::helpers::*;

pub use crate::recorded_prometheus::{mount, RecordedPrometheus};

fn snapshot<'a>(i: &'a Value, name: &str) -> &'a Value {
    i["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no snapshot {name}: {:#}", i["snapshots"]))
}

/// Posts a webhook at its recorded time and checks ingestion answered 200 fast.
async fn post_fast(app: &TestApp, at: chrono::DateTime<chrono::Utc>, body: Vec<u8>) {
    app.set_time(at);
    let started = Instant::now();
    let r = app.post_webhook(body).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(took < Duration::from_secs(1), "the webhook took {took:?}");
}

#[tokio::test]
async fn the_recorded_scenario_gets_the_true_impact_start_snapshots_charts_and_a_draft_with_metrics(
) {
    let server = MockServer::start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let app = spawn_app_with(prometheus_config(&server.uri())).await;
    for (_, at, body) in recorded_webhooks() {
        post_fast(&app, at, body).await;
    }
    let i = wait_for_incident(
        &app,
        "INC-2026-0001",
        "evidence of the resolved incident",
        |i| {
            i["status"] == "resolved"
                && i["impact_start_method"] == "rule_reevaluation"
                && has_snapshots(i)
        },
    )
    .await;

    // exporter-phases.jsonl: the exporter switched to "incident" at 02:26:22.392Z; the alert
    // fired at 02:26:28.738Z and its `for` is 5 s, so only re-evaluation gets within 1 s.
    let truth = time("2026-11-23T02:26:22.392Z");
    let impact_start = time(i["impact_start"].as_str().unwrap());
    let error_ms = (impact_start - truth).num_milliseconds().abs();
    assert!(
        error_ms <= 1000,
        "impact start {impact_start} is {error_ms} ms from {truth}"
    );
    let detected = time(i["detected_at"].as_str().unwrap());
    let resolved = time(i["resolved_at"].as_str().unwrap());
    let seconds = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    assert_eq!(
        i["ttd_seconds"].as_f64(),
        Some(seconds(detected - impact_start))
    );
    assert!(
        i["ttd_seconds"].as_f64().unwrap() > 6.0,
        "TTD counts from the true start"
    );
    assert_eq!(
        i["duration_seconds"].as_f64(),
        Some(seconds(resolved - impact_start))
    );

    let pool_alert = i["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alertname"] == "DatabaseConnectionPoolHigh")
        .unwrap();
    assert_eq!(
        pool_alert["rule"]["expr"],
        "db_connection_pool_active / db_connection_pool_max > 0.95"
    );
    assert_eq!(pool_alert["rule"]["for"], "5s");

    let pool = snapshot(&i, "alert-DatabaseConnectionPoolHigh");
    assert_eq!(
        pool["query"],
        "db_connection_pool_active / db_connection_pool_max"
    );
    assert_eq!(pool["unit"], "ratio");
    assert_eq!(pool["peak"], 1.0);
    assert_eq!(pool["baseline"], 0.19);
    assert_eq!(pool["threshold"], 0.95);
    let chart_url = pool["chart_url"].as_str().unwrap();
    assert_eq!(
        chart_url,
        "/api/v1/incidents/INC-2026-0001/charts/alert-DatabaseConnectionPoolHigh.svg"
    );
    assert!(
        i["evidence"]["missing_reason"].is_null(),
        "{:#}",
        i["evidence"]
    );

    // The chart route serves the SVG.
    let r = app
        .client
        .get(format!("{}{chart_url}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.unwrap();
    assert!(
        svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );

    // The draft on disk has the metrics table and its charts beside it.
    let drafts = app.dir.path().join("drafts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let draft = loop {
        let text = std::fs::read_to_string(drafts.join("INC-2026-0001.md")).unwrap_or_default();
        if text.contains("| Metric | Baseline | Peak |") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics table in the draft:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        draft.contains("](INC-2026-0001/alert-DatabaseConnectionPoolHigh.svg)"),
        "{draft}"
    );
    assert!(
        !draft.contains("Evidence from Prometheus is missing"),
        "{draft}"
    );
    let on_disk =
        std::fs::read_to_string(drafts.join("INC-2026-0001/alert-DatabaseConnectionPoolHigh.svg"))
            .unwrap();
    assert!(on_disk.contains("<svg"));
}

#[tokio::test]
async fn the_chart_route_refuses_bad_names_and_answers_404_for_unknown_charts() {
    let server = MockServer::start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let app = spawn_app_with(prometheus_config(&server.uri())).await;
    let (at, body) = (recorded_webhooks()[0].1, recorded_webhooks()[0].2.clone());
    post_fast(&app, at, body).await;
    wait_for_incident(&app, "INC-2026-0001", "snapshots", has_snapshots).await;
    let get = |path: String| {
        let (client, url) = (app.client.clone(), app.url.clone());
        async move { client.get(format!("{url}{path}")).send().await.unwrap() }
    };
    let base = "/api/v1/incidents/INC-2026-0001/charts";
    for bad in [
        "..%2Fdata.svg",
        "a%20b.svg",
        "pool.png",
        ".svg",
        "..svg",
        "x%2Fy.svg",
    ] {
        let r = get(format!("{base}/{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().starts_with("name:"),
            "{body}"
        );
    }
    assert_eq!(get(format!("{base}/no-such-chart.svg")).await.status(), 404);
    assert_eq!(
        get("/api/v1/incidents/INC-2026-0009/charts/alert-DatabaseConnectionPoolHigh.svg".into())
            .await
            .status(),
        404
    );
    assert_eq!(
        get(format!("{base}/alert-DatabaseConnectionPoolHigh.svg"))
            .await
            .status(),
        200
    );
}

/// Opens the scenario's incident while `failure` is served, checks the job keeps retrying and
/// the incident says why evidence is missing, then lets Prometheus answer and waits for it.
async fn evidence_arrives_after_recovery(failure: ResponseTemplate, timeout: Duration) {
    let server = MockServer::start().await;
    let prometheus = RecordedPrometheus::new();
    prometheus.fail_with(Some(failure));
    mount(&server, &prometheus).await;
    let mut config = prometheus_config(&server.uri());
    if let Some(p) = config.prometheus.as_mut() {
        p.timeout = timeout;
    }
    let app = spawn_app_with(config).await;
    let (at, body) = (recorded_webhooks()[0].1, recorded_webhooks()[0].2.clone());
    post_fast(&app, at, body).await;

    let i = wait_for_incident(&app, "INC-2026-0001", "why evidence is missing", |i| {
        i["evidence"]["missing_reason"].is_string()
    })
    .await;
    let reason = i["evidence"]["missing_reason"].as_str().unwrap();
    assert!(reason.contains(&server.uri()), "names the URL: {reason}");
    assert!(reason.contains("keeps retrying"), "{reason}");
    // More webhooks are still taken fast while Prometheus fails.
    let (at, body) = (recorded_webhooks()[1].1, recorded_webhooks()[1].2.clone());
    post_fast(&app, at, body).await;
    // Retried: the rules API was asked more than once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let asked = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/api/v1/rules")
            .count();
        if asked >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the evidence job was not retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    prometheus.fail_with(None);
    // Snapshots and the re-evaluated impact start. Seen once in CI under load: snapshots stored
    // while the impact start was still the firing time; the cause is not pinned down (a
    // collection whose re-evaluation fell back, improved by a later one, would do it), so the
    // test waits for both rather than taking the first snapshot as final.
    let i = wait_for_incident(&app, "INC-2026-0001", "evidence after recovery", |i| {
        has_snapshots(i) && i["impact_start_method"] == "rule_reevaluation"
    })
    .await;
    assert_eq!(
        snapshot(&i, "alert-DatabaseConnectionPoolHigh")["peak"],
        1.0
    );
    assert!(
        i["evidence"]["missing_reason"].is_null(),
        "{:#}",
        i["evidence"]
    );
}

#[tokio::test]
async fn prometheus_answering_500_delays_evidence_until_it_recovers() {
    evidence_arrives_after_recovery(
        ResponseTemplate::new(500).set_body_string("upstream connect error"),
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test]
async fn prometheus_answering_slower_than_its_timeout_delays_evidence_until_it_recovers() {
    evidence_arrives_after_recovery(
        ResponseTemplate::new(200)
            .set_body_raw(
                r#"{"status":"success","data":{"groups":[]}}"#,
                "application/json",
            )
            .set_delay(Duration::from_secs(3)),
        Duration::from_millis(300),
    )
    .await;
}

#[tokio::test]
async fn prometheus_answering_an_unavailable_error_envelope_delays_evidence_until_it_recovers() {
    evidence_arrives_after_recovery(
        ResponseTemplate::new(503).set_body_raw(
            r#"{"status":"error","errorType":"unavailable","error":"TSDB not ready"}"#,
            "application/json",
        ),
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test]
async fn prometheus_unreachable_delays_evidence_until_it_listens() {
    // A port nobody listens on, until the mock server takes it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(prometheus_config(&url)).await;
    let (at, body) = (recorded_webhooks()[0].1, recorded_webhooks()[0].2.clone());
    post_fast(&app, at, body).await;
    let i = wait_for_incident(&app, "INC-2026-0001", "why evidence is missing", |i| {
        i["evidence"]["missing_reason"].is_string()
    })
    .await;
    let reason = i["evidence"]["missing_reason"].as_str().unwrap();
    assert!(
        reason.contains(&url)
            && reason.contains("cannot reach")
            && reason.contains("connection refused"),
        "{reason}"
    );

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = MockServer::builder().listener(listener).start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let i = wait_for_incident(
        &app,
        "INC-2026-0001",
        "evidence once Prometheus listens",
        has_snapshots,
    )
    .await;
    assert_eq!(
        snapshot(&i, "alert-DatabaseConnectionPoolHigh")["peak"],
        1.0
    );
}

#[tokio::test]
async fn a_bad_data_error_envelope_is_not_retried_and_the_incident_says_exactly_why() {
    let server = MockServer::start().await;
    let prometheus = RecordedPrometheus::new();
    prometheus.fail_with(Some(ResponseTemplate::new(400).set_body_raw(
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error"}"#,
        "application/json",
    )));
    mount(&server, &prometheus).await;
    let app = spawn_app_with(prometheus_config(&server.uri())).await;
    let (at, body) = (recorded_webhooks()[0].1, recorded_webhooks()[0].2.clone());
    post_fast(&app, at, body).await;
    let i = wait_for_incident(&app, "INC-2026-0001", "why evidence is missing", |i| {
        i["evidence"]["missing_reason"].is_string()
    })
    .await;
    let reason = i["evidence"]["missing_reason"].as_str().unwrap();
    assert!(reason.contains(&server.uri()), "{reason}");
    assert!(
        reason.contains("bad_data") && reason.contains("parse error"),
        "{reason}"
    );
    assert!(!reason.contains("retrying"), "{reason}");
    // Without the rules API the rule's `for` is unknown: the impact start is when it fired.
    assert_eq!(i["impact_start_method"], "starts_at");

    // Given up at once: no second attempt follows.
    let asked = || async {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/api/v1/rules")
            .count()
    };
    let before = asked().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(asked().await, before);
    assert_eq!(before, 1);

    let draft = app
        .wait_for_file(&app.dir.path().join("drafts/INC-2026-0001.md"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut draft = draft;
    while !draft.contains("bad_data") {
        assert!(
            Instant::now() < deadline,
            "the draft never said why:\n{draft}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        draft = std::fs::read_to_string(app.dir.path().join("drafts/INC-2026-0001.md")).unwrap();
    }
    assert!(
        draft.contains("Evidence from Prometheus is missing"),
        "{draft}"
    );
}

#[tokio::test]
async fn an_alert_that_fired_earlier_joining_later_moves_the_impact_start_back() {
    let server = MockServer::start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let app = spawn_app_with(prometheus_config(&server.uri())).await;
    let (at, body) = (recorded_webhooks()[0].1, recorded_webhooks()[0].2.clone());
    post_fast(&app, at, body).await;
    wait_for_incident(&app, "INC-2026-0001", "the re-evaluated start", |i| {
        i["impact_start_method"] == "rule_reevaluation"
    })
    .await;

    // Another instance of the rule fired at 02:26:00, before the found start (02:26:23).
    let late = payload(|v| {
        v["alerts"][0]["fingerprint"] = "00000000000000aa".into();
        v["alerts"][0]["startsAt"] = "2026-11-23T02:26:00Z".into();
    });
    post_fast(&app, time("2026-11-23T02:26:40Z"), late.into_bytes()).await;
    // Its condition is not in the recorded range, so the new earliest is startsAt − for.
    let i = wait_for_incident(&app, "INC-2026-0001", "the earlier start", |i| {
        i["impact_start_method"] == "starts_at_minus_for"
    })
    .await;
    assert_eq!(i["impact_start"], "2026-11-23T02:25:55Z");
    assert_eq!(i["fired_at"], "2026-11-23T02:26:00Z");
}

#[tokio::test]
async fn the_slack_root_message_is_updated_with_the_figures_once_evidence_arrives() {
    let server = MockServer::start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let fake = crate::fake::FakeSlack::start().await;
    let mut config = prometheus_config(&server.uri());
    config.slack = Some(incidentd::config::SlackConfig {
        api_url: fake.api_url(),
        bot_token: Some(incidentd::config::Secret::new(crate::fake::TOKEN)),
        channel: "#incidents".into(),
        signing_secret: None,
        webhook_url: None,
        routes: Vec::new(),
        capture: Default::default(),
    });
    let app = spawn_app_with(config).await;
    for (_, at, body) in recorded_webhooks() {
        post_fast(&app, at, body).await;
    }
    wait_for_incident(&app, "INC-2026-0001", "snapshots", |i| {
        i["status"] == "resolved" && has_snapshots(i)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let accepted = fake.accepted();
        // After the resolve summary: the update for the resolve, then one for the evidence
        // the full snapshot brought.
        let summary = accepted
            .iter()
            .rposition(|r| r.method == "chat.postMessage")
            .unwrap_or(0);
        let updates: Vec<_> = accepted[summary..]
            .iter()
            .filter(|r| r.method == "chat.update")
            .collect();
        let shows_figures =
            updates.len() >= 2 && updates.last().unwrap().body.to_string().contains("→");
        if shows_figures {
            // No extra reply in the thread for it: one root, replies for 2 joins and the resolve.
            let replies = accepted
                .iter()
                .filter(|r| r.method == "chat.postMessage")
                .count();
            assert_eq!(replies, 4, "{accepted:#?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the root never showed the figures: {accepted:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `prometheus.query_lag` (VictoriaMetrics answers `-search.latencyOffset` behind): no
/// snapshot asks the backend about the newest `query_lag` of data, which it does not have yet.
#[tokio::test]
async fn with_a_query_lag_no_snapshot_reaches_into_the_last_query_lag_of_data() {
    let server = MockServer::start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let mut config = prometheus_config(&server.uri());
    let lag = Duration::from_secs(20);
    if let Some(p) = config.prometheus.as_mut() {
        p.query_lag = lag;
    }
    let app = spawn_app_with(config).await;
    let (_, at, body) = recorded_webhooks()
        .into_iter()
        .next()
        .expect("a recorded webhook");
    post_fast(&app, at, body).await;
    let i = wait_for_incident(&app, "INC-2026-0001", "evidence", |i| {
        i["evidence"]["data_until"].is_string()
    })
    .await;
    let collected = time(i["evidence"]["collected_at"].as_str().unwrap());
    let until = time(i["evidence"]["data_until"].as_str().unwrap());
    assert!(
        until <= collected - chrono::Duration::from_std(lag).unwrap(),
        "data until {until}, collected at {collected}, lag {lag:?}"
    );
}
