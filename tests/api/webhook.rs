//! The webhook: the recorded scenario in any order, HA replicas, reopening, bad input.

use serde_json::{json, Value};

use crate::helpers::*;

async fn replay(app: &TestApp, order: &[usize], times: usize) {
    let hooks = recorded_webhooks();
    for &i in order {
        let (file, at, body) = &hooks[i];
        for _ in 0..times {
            app.set_time(*at);
            let r = app.post_webhook(body.clone()).await;
            assert_eq!(r.status(), 200, "{file}: {}", r.text().await.unwrap());
        }
    }
}

async fn assert_scenario_incident(app: &TestApp) {
    let list = app.incidents().await;
    assert_eq!(
        list.len(),
        1,
        "one incident for the whole scenario: {list:#?}"
    );
    let i = app.incident(list[0]["id"].as_str().unwrap()).await;
    assert_eq!(i["status"], "resolved");
    assert_eq!(i["service"], "payment-service");
    assert_eq!(i["severity"], "critical");
    assert_eq!(
        i["title"],
        "Database connection pool nearly exhausted on payment-service"
    );
    assert_eq!(i["fired_at"], "2026-11-23T02:26:28.738Z");
    assert_eq!(i["resolved_at"], "2026-11-23T02:27:02.738Z");
    assert_eq!(i["detected_at"], "2026-11-23T02:26:29.743833Z");
    assert_eq!(i["reopen_count"], 0);
    let mut names: Vec<&str> = i["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "DatabaseConnectionPoolHigh",
            "HighErrorRate",
            "HighRequestLatency"
        ]
    );
    assert!(i["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status"] == "resolved"));

    let timeline = i["timeline"].as_array().unwrap();
    let rows: Vec<(String, String)> = timeline
        .iter()
        .filter(|e| e["kind"] != "notifications")
        .map(|e| {
            (
                e["at"].as_str().unwrap().to_string(),
                e["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut unique = rows.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        rows.len(),
        "no duplicated timeline entries: {rows:#?}"
    );
    let count = |kind: &str| timeline.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(
        (
            count("alert_firing"),
            count("alert_resolved"),
            count("resolved")
        ),
        (3, 3, 1)
    );
    assert_eq!(count("detected"), 1);
}

#[tokio::test]
async fn the_recorded_scenario_in_order_makes_one_resolved_incident() {
    let app = spawn_app().await;
    replay(&app, &[0, 1, 2, 3, 4, 5], 1).await;
    assert_scenario_incident(&app).await;
    let i = &app.incidents().await[0];
    // Times a post-mortem quotes, from the recorded receipt times.
    assert_eq!(i["impact_start"], "2026-11-23T02:26:28.738Z");
    assert_eq!(i["ttd_seconds"], 1.005);
    assert_eq!(i["ttr_seconds"], 32.994);
    assert_eq!(i["duration_seconds"], 34.0);
    assert_eq!(i["tta_seconds"], Value::Null);
}

#[tokio::test]
async fn the_recorded_scenario_reversed_and_twice_gives_the_same_incident() {
    let app = spawn_app().await;
    replay(&app, &[5, 4, 3, 2, 1, 0], 2).await;
    assert_scenario_incident(&app).await;
    let i = &app.incidents().await[0];
    assert_eq!(i["notifications"]["received"], 12);
    // Reversed, every firing arrives after its resolve: stale, ignored, counted.
    assert_eq!(i["notifications"]["stale"], 6);
    assert_eq!(i["notifications"]["duplicate"], 3);
}

fn alert_payload(status: &str, starts_at: &str, ends_at: Option<&str>) -> String {
    payload(|v| {
        v["status"] = status.into();
        v["alerts"][0]["status"] = status.into();
        v["alerts"][0]["startsAt"] = starts_at.into();
        v["alerts"][0]["endsAt"] = ends_at.unwrap_or("0001-01-01T00:00:00Z").into();
    })
}

#[tokio::test]
async fn ha_replicas_repeating_firing_after_resolved_leave_the_incident_resolved_and_reopen_or_open_later(
) {
    let app = spawn_app().await;
    let start = "2026-11-23T14:00:00Z";
    let end = "2026-11-23T14:05:00Z";
    // am1: firing, resolved; am2 (15 s behind, cluster peer timeout): firing, resolved.
    for (status, ends_at, at) in [
        ("firing", None, "2026-11-23T14:00:01Z"),
        ("resolved", Some(end), "2026-11-23T14:05:01Z"),
        ("firing", None, "2026-11-23T14:05:16Z"),
        ("resolved", Some(end), "2026-11-23T14:05:31Z"),
    ] {
        app.set_time(time(at));
        assert_eq!(
            app.post_webhook(alert_payload(status, start, ends_at))
                .await
                .status(),
            200
        );
    }
    let list = app.incidents().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "resolved");
    assert_eq!(list[0]["resolved_at"], "2026-11-23T14:05:00Z");
    assert_eq!(list[0]["notifications"]["stale"], 1);
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Same fingerprint, new startsAt ten minutes later: the incident reopens.
    app.set_time(time("2026-11-23T14:15:01Z"));
    app.post_webhook(alert_payload("firing", "2026-11-23T14:15:00Z", None))
        .await;
    let i = app.incident(&id).await;
    assert_eq!(
        (i["status"].as_str(), i["reopen_count"].as_u64()),
        (Some("open"), Some(1))
    );
    assert!(i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "reopened"));
    app.post_webhook(alert_payload(
        "resolved",
        "2026-11-23T14:15:00Z",
        Some("2026-11-23T14:20:00Z"),
    ))
    .await;

    // Two hours after that: a new incident.
    app.set_time(time("2026-11-23T16:20:01Z"));
    app.post_webhook(alert_payload("firing", "2026-11-23T16:20:00Z", None))
        .await;
    let list = app.incidents().await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["status"], "open", "newest first");
    assert_ne!(list[0]["id"], json!(id));
    assert_eq!(app.incident(&id).await["status"], "resolved");
}

/// Post a bad request and assert status, error text, and that nothing was stored.
async fn refused(
    app: &TestApp,
    content_type: Option<&str>,
    auth: Option<&str>,
    body: Vec<u8>,
    status: u16,
    error_contains: &str,
) {
    let mut req = app
        .client
        .post(format!("{}/webhook/alertmanager", app.url))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), status);
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(error_contains),
        "{error:?} should contain {error_contains:?}"
    );
    if status == 401 {
        assert!(www.is_some(), "401 carries WWW-Authenticate");
    }
    assert!(
        app.incidents().await.is_empty(),
        "nothing stored for a refused request"
    );
    assert_eq!(stored_notifications(app.dir.path()), 0);
}

#[tokio::test]
async fn bad_payloads_are_refused_with_an_error_naming_the_field_and_nothing_is_stored() {
    let mut config = incidentd::config::Config::default();
    config.web.max_body_bytes = 4096;
    let app = spawn_app_with(config).await;
    let json = Some("application/json");
    let p = |edit: fn(&mut Value)| payload(edit).into_bytes();

    refused(
        &app,
        json,
        None,
        b"{not json".to_vec(),
        400,
        "invalid JSON payload",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| v["version"] = "3".into()),
        400,
        "version: unsupported",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| {
            v.as_object_mut().unwrap().remove("alerts");
        }),
        400,
        "missing field `alerts`",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| {
            // A body from Alertmanager before 0.19 has no fingerprints, but every field
            // Alertmanager sends: without both, it is no Alertmanager's.
            v["alerts"][0]
                .as_object_mut()
                .unwrap()
                .remove("fingerprint");
            v.as_object_mut().unwrap().remove("externalURL");
        }),
        400,
        "alerts[0].fingerprint: missing; only a complete body from Alertmanager before 0.19",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| v["alerts"][0]["startsAt"] = "2026-13-45T99:00:00Z".into()),
        400,
        "alerts[0].startsAt: invalid RFC 3339 time",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| v["alerts"][0]["status"] = "pending".into()),
        400,
        "alerts[0].status: unknown variant `pending`",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| {
            v["alerts"][0]["status"] = "resolved".into();
            v["alerts"][0]["endsAt"] = "2020-01-01T00:00:00Z".into();
        }),
        400,
        "alerts[0].endsAt: 2020-01-01T00:00:00Z is before startsAt",
    )
    .await;
    refused(
        &app,
        json,
        None,
        p(|v| v["alerts"][0]["labels"] = json!({})),
        400,
        "alerts[0].labels: an alert needs at least one label",
    )
    .await;
    refused(
        &app,
        Some("text/plain"),
        None,
        p(|_| {}),
        415,
        "Content-Type: \"text/plain\" is not supported",
    )
    .await;
    refused(&app, None, None, p(|_| {}), 415, "Content-Type: missing").await;
    refused(
        &app,
        json,
        None,
        vec![b' '; 5000],
        413,
        "larger than the 4096 byte limit",
    )
    .await;
}

#[tokio::test]
async fn the_webhook_demands_the_configured_bearer_token_or_basic_auth() {
    use base64::Engine;
    use incidentd::config::{BasicAuth, Secret, WebhookAuth};
    let mut config = incidentd::config::Config::default();
    config.web.webhook_auth = Some(WebhookAuth {
        bearer_token: Some(Secret::new("s3cret-token")),
        basic_auth: Some(BasicAuth {
            username: "alertmanager".into(),
            password: Secret::new("pa55"),
        }),
    });
    let app = spawn_app_with(config).await;
    let json = Some("application/json");
    let body = payload(|_| {}).into_bytes();
    refused(&app, json, None, body.clone(), 401, "needs credentials").await;
    refused(
        &app,
        json,
        Some("Bearer wrong"),
        body.clone(),
        401,
        "invalid credentials",
    )
    .await;
    let bad_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alertmanager:nope")
    );
    refused(
        &app,
        json,
        Some(&bad_basic),
        body.clone(),
        401,
        "invalid credentials",
    )
    .await;

    let ok = |auth: String| {
        let app = &app;
        let body = body.clone();
        async move {
            app.client
                .post(format!("{}/webhook/alertmanager", app.url))
                .header("Content-Type", "application/json")
                .header("Authorization", auth)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(ok("Bearer s3cret-token".into()).await, 200);
    let good_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alertmanager:pa55")
    );
    assert_eq!(ok(good_basic).await, 200);
    assert_eq!(app.incidents().await.len(), 1);
}

#[tokio::test]
async fn metrics_count_webhooks_by_outcome_and_incidents_by_status() {
    let app = spawn_app().await;
    app.post_webhook(payload(|_| {})).await;
    app.post_webhook(payload(|_| {})).await;
    app.post_webhook("{").await;
    let text = app.get_text("/metrics").await;
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        r#"incidentd_webhooks_received_total{outcome="accepted"} 2"#,
        r#"incidentd_webhooks_received_total{outcome="bad_request"} 1"#,
        r#"incidentd_alerts_processed_total{effect="opened"} 1"#,
        r#"incidentd_alerts_processed_total{effect="duplicate"} 1"#,
        r#"incidentd_incidents{status="open"} 1"#,
    ] {
        assert!(lines.contains(&expected), "missing {expected} in\n{text}");
    }
    assert!(text.contains("incidentd_http_request_duration_seconds_bucket"));
}
