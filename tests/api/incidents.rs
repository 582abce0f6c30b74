//! The incident API: list filters and paging, acknowledge, notes, resolve, errors.

use incidentd::config::{Config, Secret};
use serde_json::{json, Value};

use crate::helpers::*;

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.post(format!("{}{}", app.url, path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn service_payload(service: &str, fingerprint: &str) -> String {
    payload(|v| {
        v["alerts"][0]["labels"]["service"] = service.into();
        v["alerts"][0]["fingerprint"] = fingerprint.into();
    })
}

#[tokio::test]
async fn acknowledging_noting_and_resolving_by_hand_show_in_the_timeline() {
    let mut config = Config::default();
    config.web.api_token = Some(Secret::new("api-t0ken"));
    let app = spawn_app_with(config).await;
    app.set_time(time("2026-11-23T02:26:29.743Z"));
    app.post_webhook(payload(|_| {})).await;
    let id = app.incidents().await[0]["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/incidents/{id}");

    let (status, body) = post(&app, &format!("{base}/ack"), None, json!({"by": "alice"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            401,
            Some("this route needs the API token (Authorization: Bearer …)")
        )
    );
    let (status, _) = post(
        &app,
        &format!("{base}/ack"),
        Some("wrong"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(status, 401);

    app.set_time(time("2026-11-23T02:28:29.743Z"));
    let (status, i) = post(
        &app,
        &format!("{base}/ack"),
        Some("api-t0ken"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(status, 200, "{i}");
    assert_eq!(
        (i["status"].as_str(), i["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("alice"))
    );
    assert_eq!(i["tta_seconds"], 120.0);
    let (status, e) = post(
        &app,
        &format!("{base}/ack"),
        Some("api-t0ken"),
        json!({"by": "bob"}),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (
            409,
            Some(format!("incident {id} is already acknowledged").as_str())
        )
    );

    let note = "Raised pool size from 50 to 100 | restarted pods";
    let (status, _) = post(
        &app,
        &format!("{base}/notes"),
        Some("api-t0ken"),
        json!({"by": "alice", "text": note}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, e) = post(
        &app,
        &format!("{base}/notes"),
        Some("api-t0ken"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("missing field `text` at line 1 column 14"))
    );
    let (status, e) = post(
        &app,
        &format!("{base}/notes"),
        Some("api-t0ken"),
        json!({"by": " ", "text": "x"}),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("by: must name who did it"))
    );

    app.set_time(time("2026-11-23T02:36:29.743Z"));
    let (status, i) = post(
        &app,
        &format!("{base}/resolve"),
        Some("api-t0ken"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (i["status"].as_str(), i["resolved_by"].as_str()),
        (Some("resolved"), Some("alice"))
    );
    assert_eq!(i["resolved_at"], "2026-11-23T02:36:29.743Z");
    let kinds: Vec<&str> = i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "alert_firing",
            "detected",
            "acknowledged",
            "note_added",
            "resolved"
        ]
    );
    let noted = i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "note_added")
        .unwrap();
    assert_eq!(
        (noted["actor"].as_str(), noted["text"].as_str()),
        (Some("alice"), Some(note))
    );
    let (status, _) = post(
        &app,
        &format!("{base}/resolve"),
        Some("api-t0ken"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn notes_marking_triage_root_cause_and_mitigation_are_milestones_in_the_json() {
    let mut config = Config::default();
    config.web.api_token = Some(Secret::new("api-t0ken"));
    let app = spawn_app_with(config).await;
    app.set_time(time("2026-11-23T02:26:29.743Z"));
    app.post_webhook(payload(|_| {})).await;
    let id = app.incidents().await[0]["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/incidents/{id}");
    let i = app.incidents().await[0].clone();
    assert_eq!(i["milestones"]["triaged_at"], Value::Null, "{i}");
    assert_eq!(i["milestones"]["time_to_mitigate_seconds"], Value::Null);

    for (at, by, text) in [
        ("2026-11-23T02:27:29.743Z", "bob", "looking at the pool"),
        (
            "2026-11-23T02:28:29.743Z",
            "bob",
            "  Triage: only writes fail",
        ),
        (
            "2026-11-23T02:29:29.743Z",
            "alice",
            "Identified: batch job holds connections",
        ),
        (
            "2026-11-23T02:30:29.743Z",
            "alice",
            "root cause: the batch job, again",
        ),
        (
            "2026-11-23T02:31:29.743Z",
            "bob",
            "MITIGATED: batch job paused",
        ),
    ] {
        app.set_time(time(at));
        let (status, _) = post(
            &app,
            &format!("{base}/notes"),
            Some("api-t0ken"),
            json!({"by": by, "text": text}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let i = app.incident(&id).await;
    let m = &i["milestones"];
    assert_eq!(m["triaged_at"], "2026-11-23T02:28:29.743Z", "{m}");
    assert_eq!(m["triaged_by"], "bob");
    assert_eq!(m["time_to_triage_seconds"], 120.0);
    assert_eq!(
        m["identified_at"], "2026-11-23T02:29:29.743Z",
        "the first one counts"
    );
    assert_eq!(m["identified_by"], "alice");
    assert_eq!(m["time_to_identify_seconds"], 180.0);
    assert_eq!(m["mitigated_at"], "2026-11-23T02:31:29.743Z");
    assert_eq!(m["time_to_mitigate_seconds"], 300.0);
    // Without Prometheus the impact start is the firing time (startsAt 02:26:28.738).
    assert_eq!(m["mitigated_after_impact_start_seconds"], 301.005);
    // The notes stay in the timeline as written.
    let texts: Vec<&str> = i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "note_added")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 5);
    assert!(texts.contains(&"Triage: only writes fail"), "{texts:?}");
}

#[tokio::test]
async fn unknown_and_malformed_incident_ids_are_404_and_400_on_every_route() {
    let app = spawn_app().await;
    let (status, e) = app.get_json("/api/v1/incidents/INC-2026-0042").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("incident INC-2026-0042 not found"))
    );
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "INC-20x6-0001",
        "INC-2026-1;DROP",
        "x",
    ] {
        let (status, e) = app.get_json(&format!("/api/v1/incidents/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert!(e["error"].as_str().unwrap().starts_with("id: "), "{e}");
        for action in ["ack", "resolve"] {
            let (status, _) = post(
                &app,
                &format!("/api/v1/incidents/{bad}/{action}"),
                None,
                json!({"by": "a"}),
            )
            .await;
            assert_eq!(status, 400, "{bad}/{action}");
        }
    }
    let (status, _) = post(
        &app,
        "/api/v1/incidents/INC-2026-0042/ack",
        None,
        json!({"by": "a"}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_last_page_has_no_cursor_even_when_it_is_full() {
    let app = spawn_app().await;
    for (i, svc) in ["pay", "shop", "search"].iter().enumerate() {
        app.post_webhook(service_payload(svc, &format!("fp{i}")))
            .await;
    }
    // Exactly one full page: nothing follows it, so no cursor.
    let (_, all) = app.get_json("/api/v1/incidents?limit=3").await;
    assert_eq!(all["incidents"].as_array().unwrap().len(), 3);
    assert_eq!(all["next_before"], Value::Null, "{all}");
    // Walking one at a time takes exactly three requests, the last without a cursor.
    let mut seen = Vec::new();
    let mut path = "/api/v1/incidents?limit=1".to_string();
    for request in 1.. {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        let incidents = page["incidents"].as_array().unwrap();
        assert_eq!(
            incidents.len(),
            1,
            "request {request} got an empty page: {page}"
        );
        seen.push(incidents[0]["service"].as_str().unwrap().to_string());
        match page["next_before"].as_str() {
            Some(before) => path = format!("/api/v1/incidents?limit=1&before={before}"),
            None => {
                assert_eq!(request, 3);
                break;
            }
        }
    }
    assert_eq!(seen, ["search", "shop", "pay"]);
}

#[tokio::test]
async fn the_list_filters_by_status_and_service_and_pages_newest_first() {
    let app = spawn_app().await;
    for (i, svc) in ["pay", "shop", "pay", "search"].iter().enumerate() {
        app.post_webhook(service_payload(svc, &format!("fp{i}")))
            .await;
    }
    // Resolve the shop incident's alert.
    app.post_webhook(payload(|v| {
        v["alerts"][0]["labels"]["service"] = "shop".into();
        v["alerts"][0]["fingerprint"] = "fp1".into();
        v["alerts"][0]["status"] = "resolved".into();
        v["alerts"][0]["endsAt"] = "2026-11-23T02:30:00Z".into();
    }))
    .await;
    let ids = |v: &Value| -> Vec<String> {
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["service"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = app.get_json("/api/v1/incidents").await;
    assert_eq!(ids(&all), ["search", "shop", "pay"]);
    let (_, open) = app.get_json("/api/v1/incidents?status=open").await;
    assert_eq!(ids(&open), ["search", "pay"]);
    let (_, pay) = app.get_json("/api/v1/incidents?service=pay").await;
    assert_eq!(ids(&pay), ["pay"]);
    let (_, page1) = app.get_json("/api/v1/incidents?limit=2").await;
    assert_eq!(ids(&page1), ["search", "shop"]);
    let before = page1["next_before"].as_str().unwrap();
    let (_, page2) = app
        .get_json(&format!("/api/v1/incidents?limit=2&before={before}"))
        .await;
    assert_eq!(ids(&page2), ["pay"]);
    assert_eq!(page2["next_before"], Value::Null);

    let (status, e) = app.get_json("/api/v1/incidents?status=closed").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (
            400,
            Some("status: \"closed\" is not one of open, acknowledged, resolved")
        )
    );
    let (status, e) = app.get_json("/api/v1/incidents?limit=0").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("limit: \"0\" is not a number from 1 to 500"))
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    for (path, text) in [
        ("/-/healthy", "incidentd is Healthy.\n"),
        ("/-/ready", "incidentd is Ready.\n"),
    ] {
        let r = app
            .client
            .get(format!("{}{}", app.url, path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), text);
    }
}
