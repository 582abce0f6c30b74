//! The per-incident figures on `/metrics` (`incidentd_incident_*_seconds`): observed once,
//! when they become known (TTA at the first acknowledgement, TTR, duration and TTD at the
//! first resolution), with the incident's own values, and valid for `promtool check metrics`.

use serde_json::json;

use crate::helpers::*;
use crate::metrics::{promtool, promtool_check};

async fn exposition(app: &TestApp) -> String {
    let r = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of the sample whose name and labels start with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn figures_are_observed_once_when_they_become_known() {
    let app = spawn_app().await;
    app.set_time(time("2026-11-23T02:26:29.743Z"));
    app.post_webhook(payload(|_| {})).await;
    let incident = &app.incidents().await[0];
    let id = incident["id"].as_str().unwrap().to_string();
    let labels = format!(
        r#"{{service="{}",severity="{}"}}"#,
        incident["service"].as_str().unwrap(),
        incident["severity"].as_str().unwrap()
    );
    let text = exposition(&app).await;
    assert!(
        !text.contains("incidentd_incident_tta_seconds_count{"),
        "nothing known yet:\n{text}"
    );
    assert!(text.contains("# TYPE incidentd_incident_ttd_seconds histogram"));

    // The first acknowledgement makes TTA known: observed once, with the incident's value.
    app.set_time(time("2026-11-23T02:28:29.743Z"));
    let ack = |by: &'static str| {
        app.client
            .post(format!("{}/api/v1/incidents/{id}/ack", app.url))
            .json(&json!({ "by": by }))
            .send()
    };
    assert_eq!(ack("alice").await.unwrap().status(), 200);
    let text = exposition(&app).await;
    let count = format!("incidentd_incident_tta_seconds_count{labels}");
    assert_eq!(value(&text, &count), Some(1.0), "{count} in\n{text}");
    let tta = app.incident(&id).await["tta_seconds"].as_f64().unwrap();
    let sum = format!("incidentd_incident_tta_seconds_sum{labels}");
    assert_eq!(value(&text, &sum), Some(tta), "{text}");
    // 120 s falls in the 120 s bucket, not the 60 s one.
    let bucket = |le: &str| {
        value(
            &text,
            &format!(
                "incidentd_incident_tta_seconds_bucket{{le=\"{le}\",{}",
                &labels[1..]
            ),
        )
    };
    assert_eq!(
        (bucket("60.0"), bucket("120.0")),
        (Some(0.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(ack("bob").await.unwrap().status(), 409);
    assert!(
        !text.contains("incidentd_incident_ttr_seconds_count{"),
        "{text}"
    );

    // Resolving by hand makes TTR and duration known.
    app.set_time(time("2026-11-23T02:36:29.743Z"));
    let r = app
        .client
        .post(format!("{}/api/v1/incidents/{id}/resolve", app.url))
        .json(&json!({"by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let resolved = app.incident(&id).await;
    let text = exposition(&app).await;
    for (family, field) in [
        ("ttr", "ttr_seconds"),
        ("duration", "duration_seconds"),
        ("ttd", "ttd_seconds"),
        ("tta", "tta_seconds"),
    ] {
        let own = resolved[field].as_f64().unwrap();
        let count = format!("incidentd_incident_{family}_seconds_count{labels}");
        let sum = format!("incidentd_incident_{family}_seconds_sum{labels}");
        assert_eq!(value(&text, &count), Some(1.0), "{count} in\n{text}");
        assert_eq!(value(&text, &sum), Some(own), "{sum} in\n{text}");
    }
    if let Some(promtool) = promtool() {
        let (ok, printed) = promtool_check(promtool, &text);
        assert!(
            ok && printed.trim().is_empty(),
            "promtool:\n{printed}\non\n{text}"
        );
    }
}

#[tokio::test]
async fn an_incident_resolved_by_its_alerts_is_observed_once() {
    let (app, incident) = crate::reports::scenario_app().await;
    let labels = format!(
        r#"{{service="{}",severity="{}"}}"#,
        incident["service"].as_str().unwrap(),
        incident["severity"].as_str().unwrap()
    );
    let text = exposition(&app).await;
    for (family, field) in [("ttr", "ttr_seconds"), ("tta", "tta_seconds")] {
        let count = format!("incidentd_incident_{family}_seconds_count{labels}");
        let sum = format!("incidentd_incident_{family}_seconds_sum{labels}");
        assert_eq!(value(&text, &count), Some(1.0), "{count} in\n{text}");
        assert_eq!(
            value(&text, &sum),
            incident[field].as_f64(),
            "{sum} in\n{text}"
        );
    }
    // The scenario's repeated resolves change nothing: still one observation.
    let (_, _, last) = recorded_webhooks().pop().unwrap();
    app.post_webhook(last).await;
    let text = exposition(&app).await;
    let count = format!("incidentd_incident_ttr_seconds_count{labels}");
    assert_eq!(value(&text, &count), Some(1.0), "{text}");
}
