//! Lost resolves: what Alertmanager no longer has is resolved, what it has stays firing.

use std::time::{Duration, Instant};

use incidentd::config::{AlertmanagerConfig, Config};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn a_firing_alert_that_alertmanager_no_longer_has_is_resolved_by_reconciliation() {
    let am = MockServer::start().await;
    // Alertmanager still has the shop alert, and has forgotten the payment-service one.
    let shop = payload(|v| {
        v["alerts"][0]["labels"]["service"] = "shop".into();
        v["alerts"][0]["fingerprint"] = "0000000000000shop".into();
    });
    let shop_alert: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&shop).unwrap()["alerts"][0].clone();
    Mock::given(method("GET"))
        .and(path("/api/v2/alerts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "fingerprint": shop_alert["fingerprint"],
            "startsAt": shop_alert["startsAt"],
            "endsAt": "2026-11-23T02:40:00Z",
            "labels": shop_alert["labels"],
            "annotations": {},
            "receivers": [{"name": "incidentd"}],
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
            "updatedAt": "2026-11-23T02:26:28.742Z"
        }])))
        .mount(&am)
        .await;
    let config = Config {
        alertmanager: Some(AlertmanagerConfig {
            url: am.uri(),
            reconcile_interval: Duration::from_millis(200),
            bearer_token: None,
            basic_auth: None,
        }),
        ..Config::default()
    };
    let app = spawn_app_with(config).await;
    app.set_time(time("2026-11-23T02:30:00Z"));
    app.post_webhook(payload(|_| {})).await;
    app.post_webhook(shop).await;
    // A Grafana-managed alert (its per-alert fields kept as `grafana.` annotations) never
    // passes through an Alertmanager: its absence there is no lost resolve.
    app.post_webhook(payload(|v| {
        v["alerts"][0]["labels"]["service"] = "grafana-managed".into();
        v["alerts"][0]["fingerprint"] = "00000000grafana1".into();
        v["alerts"][0]["annotations"]["grafana.silenceURL"] =
            "https://grafana.example.com/alerting/silence/new".into();
    }))
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let incident = loop {
        let i = app.incident("INC-2026-0001").await;
        if i["status"] == "resolved" {
            break i;
        }
        assert!(Instant::now() < deadline, "never reconciled: {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(incident["alerts"][0]["resolved_by"], "reconciler");
    assert_eq!(
        incident["resolved_at"], "2026-11-23T02:30:00Z",
        "when it was first noticed missing"
    );
    let texts: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Alertmanager no longer had it")),
        "{texts:?}"
    );
    // Alertmanager still has the shop alert: it stays open; so does Grafana's.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.incident("INC-2026-0002").await["status"], "open");
    let grafana = app.incident("INC-2026-0003").await;
    assert_eq!(grafana["service"], "grafana-managed");
    assert_eq!(grafana["status"], "open", "{grafana}");
}

#[tokio::test]
async fn an_alert_alertmanager_lists_at_milliseconds_stays_firing_and_its_real_resolve_counts() {
    // vmalert (and Alertmanager itself, for alerts posted without startsAt) stamps
    // nanoseconds, which the webhook carries; /api/v2/alerts lists milliseconds.
    let am = MockServer::start().await;
    let firing = payload(|v| {
        v["alerts"][0]["startsAt"] = "2026-11-23T02:26:14.286260419Z".into();
    });
    let alert: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&firing).unwrap()["alerts"][0].clone();
    Mock::given(method("GET"))
        .and(path("/api/v2/alerts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "fingerprint": alert["fingerprint"],
            "startsAt": "2026-11-23T02:26:14.286Z",
            "endsAt": "2026-11-23T02:40:00.000Z",
            "labels": alert["labels"],
            "annotations": {},
            "receivers": [{"name": "incidentd"}],
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
            "updatedAt": "2026-11-23T02:26:14.290Z"
        }])))
        .mount(&am)
        .await;
    let config = Config {
        alertmanager: Some(AlertmanagerConfig {
            url: am.uri(),
            reconcile_interval: Duration::from_millis(100),
            bearer_token: None,
            basic_auth: None,
        }),
        ..Config::default()
    };
    let app = spawn_app_with(config).await;
    app.set_time(time("2026-11-23T02:30:00Z"));
    assert_eq!(app.post_webhook(firing.clone()).await.status(), 200);

    // Many rounds, each one interval apart: enough for two misses in a row.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let requests = am.received_requests().await.unwrap_or_default().len();
        if requests >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        am.received_requests().await.unwrap().len() >= 3,
        "reconciler never asked"
    );
    let incident = app.incident("INC-2026-0001").await;
    assert_eq!(incident["status"], "open", "{incident}");
    assert_eq!(incident["alerts"][0]["status"], "firing");

    // The real resolve is not taken for a repeat of an occurrence already resolved.
    let resolved = firing
        .replace("\"status\":\"firing\"", "\"status\":\"resolved\"")
        .replace(
            alert["endsAt"].as_str().unwrap(),
            "2026-11-23T02:41:14.286260419Z",
        );
    app.set_time(time("2026-11-23T02:42:00Z"));
    assert_eq!(app.post_webhook(resolved).await.status(), 200);
    let incident = app.incident("INC-2026-0001").await;
    assert_eq!(incident["status"], "resolved", "{incident}");
    assert_eq!(incident["alerts"][0]["resolved_by"], "alertmanager");
    assert_eq!(incident["resolved_at"], "2026-11-23T02:41:14.286260Z");
}
