//! `GET /api/v1/reports` and `incidentd report` against the daemon loaded with the recorded
//! scenario: the figures are the incidents' own (TTD, TTA, TTR, duration as the incident
//! API serves them), bad parameters are 400s naming the parameter.

use serde_json::{json, Value};

use crate::helpers::*;

/// The recorded scenario, acknowledged by alice between the webhooks: one resolved incident.
pub(crate) async fn scenario_app() -> (TestApp, Value) {
    let app = spawn_app().await;
    for (i, (_, at, body)) in recorded_webhooks().into_iter().enumerate() {
        app.set_time(at);
        assert_eq!(app.post_webhook(body).await.status(), 200);
        if i == 2 {
            let id = app.incidents().await[0]["id"].as_str().unwrap().to_string();
            app.set_time(at + chrono::Duration::seconds(90));
            let r = app
                .client
                .post(format!("{}/api/v1/incidents/{id}/ack", app.url))
                .json(&json!({"by": "alice"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    let incidents = app.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let id = incidents[0]["id"].as_str().unwrap().to_string();
    let incident = app.incident(&id).await;
    assert_eq!(incident["status"], "resolved", "{incident}");
    (app, incident)
}

#[tokio::test]
async fn the_report_shows_the_incidents_own_figures_per_service_and_week() {
    let (app, incident) = scenario_app().await;
    app.set_time(time("2026-11-30T12:00:00Z"));
    let (status, r) = app
        .get_json("/api/v1/reports?since=2026-11-01&until=2026-11-30T00:00:00Z&by=week")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["since"], "2026-11-01T00:00:00Z");
    assert_eq!(r["timezone"], "UTC");
    assert_eq!(r["generated_at"], "2026-11-30T12:00:00Z");
    assert_eq!(r["total"]["incidents"], 1);
    for (figure, field) in [
        ("ttd", "ttd_seconds"),
        ("tta", "tta_seconds"),
        ("ttr", "ttr_seconds"),
        ("duration", "duration_seconds"),
    ] {
        let own = &incident[field];
        assert!(own.is_number(), "{field} of {incident}");
        let stat = &r["total"][figure];
        assert_eq!(stat["n"], 1, "{figure}: {stat}");
        assert_eq!(stat["excluded"], 0, "{figure}: {stat}");
        for agg in ["mean_seconds", "p50_seconds", "p90_seconds"] {
            assert_eq!(&stat[agg], own, "{figure} {agg}");
        }
    }
    let services = r["services"].as_array().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["service"], incident["service"]);
    assert_eq!(services[0]["incidents"], 1);
    let weeks: Vec<(&str, u64)> = r["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["label"].as_str().unwrap(),
                p["incidents"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weeks,
        [
            ("2026-W44", 0),
            ("2026-W45", 0),
            ("2026-W46", 0),
            ("2026-W47", 0),
            ("2026-W48", 1)
        ]
    );
    // Every alert of the incident, counted once per firing.
    let alerts = incident["alerts"].as_array().unwrap();
    let top = r["top_alerts"].as_array().unwrap();
    let firings: u64 = top.iter().map(|a| a["firings"].as_u64().unwrap()).sum();
    assert_eq!(firings as usize, alerts.len(), "{top:?}");
    assert!(top.iter().all(|a| a["incidents"] == 1), "{top:?}");
    assert_eq!(r["top_flapping"], json!([]));

    // Another service, or a range without it: no incidents, figures unknown, not zero.
    let (_, other) = app
        .get_json("/api/v1/reports?since=2026-11-01&until=2026-11-30T00:00:00Z&service=nope")
        .await;
    assert_eq!(other["total"]["incidents"], 0);
    assert_eq!(other["total"]["ttr"]["mean_seconds"], Value::Null);
    let (_, month) = app.get_json("/api/v1/reports?since=60d&by=month").await;
    let labels: Vec<&str> = month["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["2026-10", "2026-11"]);
    assert_eq!(month["total"]["incidents"], 1);
}

#[tokio::test]
async fn an_open_incident_is_counted_and_excluded_from_the_figures_it_lacks() {
    let app = spawn_app().await;
    app.set_time(time("2026-11-23T02:26:29.743Z"));
    app.post_webhook(payload(|_| {})).await;
    let (status, r) = app.get_json("/api/v1/reports?since=7d").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["total"]["incidents"], 1);
    assert_eq!(r["total"]["open"], 1);
    for figure in ["tta", "ttr", "duration"] {
        assert_eq!(r["total"][figure]["n"], 0, "{figure}");
        assert_eq!(r["total"][figure]["excluded"], 1, "{figure}");
    }
}

#[tokio::test]
async fn bad_parameters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, starts) in [
        ("since=yesterday", "since: "),
        ("until=soon", "until: "),
        ("by=day", "by: "),
        ("since=1d&until=2d", "since: "),
        ("since=4000d", "since: "),
        ("servce=api", "query: "),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/reports?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.starts_with(starts), "{query}: {message}");
    }
}

/// Runs `incidentd ARGS` off the runtime that serves the daemon.
async fn incidentd(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_cli_prints_the_report_as_tables_with_units() {
    let (app, incident) = scenario_app().await;
    app.set_time(time("2026-11-30T12:00:00Z"));
    let out = incidentd(args(&[
        "report",
        "--url",
        &app.url,
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-30T00:00:00Z",
    ]))
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ttr = incidentd::time::human_duration(incident["ttr_seconds"].as_f64().unwrap());
    assert!(
        text.contains(&format!("{ttr} / {ttr} / {ttr} (n=1)")),
        "{text}"
    );
    assert!(text.contains("2026-W48"), "{text}");
    assert!(text.contains("2026-11-01 00:00:00 UTC"), "{text}");
    let json = incidentd(args(&[
        "report", "--url", &app.url, "--since", "30d", "--json", "--by", "month",
    ]))
    .await;
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["by"], "month");
    let bad = incidentd(args(&["report", "--url", &app.url, "--since", "whenever"])).await;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("since: "), "{err}");
}

/// Many services: the report lists the 20 with most incidents and sums the others, on the
/// API, the page and the CLI alike; an incident with more alert names than its tally holds
/// (`*`, read from the alerts instead) is counted exactly.
#[tokio::test]
async fn many_services_are_listed_busiest_first_with_the_others_summed() {
    let app = spawn_app().await;
    app.set_time(time("2026-11-23T03:00:00Z"));
    // 23 services; service k has 1 incident, svc-00 three (other fingerprints).
    for k in 0..25 {
        let service = format!("svc-{:02}", k.min(22));
        let body = payload(|v| {
            v["groupKey"] = json!(format!("{{}}:{{service=\"{service}\"}}"));
            v["groupLabels"]["service"] = json!(service);
            v["commonLabels"]["service"] = json!(service);
            let a = &mut v["alerts"][0];
            a["labels"]["service"] = json!(service);
            a["fingerprint"] = json!(format!("{k:016x}"));
        });
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    // One more incident, of svc-00, with 60 alerts of as many names: a tally longer than
    // 1,000 bytes.
    let body = payload(|v| {
        v["groupKey"] = json!("{}:{service=\"svc-00\", burst=\"1\"}");
        v["commonLabels"]["service"] = json!("svc-00");
        let one = v["alerts"][0].clone();
        let alerts: Vec<Value> = (0..60)
            .map(|n| {
                let mut a = one.clone();
                a["labels"]["service"] = json!("svc-00");
                a["labels"]["burst"] = json!("1");
                a["labels"]["alertname"] = json!(format!("BurstAlertNumber{n:02}WithALongName"));
                a["fingerprint"] = json!(format!("b{n:015x}"));
                a
            })
            .collect();
        v["alerts"] = json!(alerts);
    });
    assert_eq!(app.post_webhook(body).await.status(), 200);

    let (status, r) = app.get_json("/api/v1/reports?since=1d").await;
    assert_eq!(status, 200, "{r}");
    let services = r["services"].as_array().unwrap();
    assert_eq!(services.len(), 20, "{r}");
    let incidents = r["total"]["incidents"].as_u64().unwrap();
    let listed: u64 = services
        .iter()
        .map(|s| s["incidents"].as_u64().unwrap())
        .sum();
    assert_eq!(r["other_services"]["services"], 3, "{r}");
    assert_eq!(
        listed + r["other_services"]["incidents"].as_u64().unwrap(),
        incidents,
        "{r}"
    );
    // The busiest first, and every alert counted: 25 firings of the recorded alert and one
    // of each burst alert.
    let busiest = &services[0];
    assert_eq!(busiest["service"], "svc-00", "{r}");
    let top = r["top_alerts"].as_array().unwrap();
    assert_eq!(top[0]["alertname"], "DatabaseConnectionPoolHigh", "{r}");
    assert_eq!(top[0]["firings"], 25, "{r}");
    assert_eq!(top[0]["services_total"], 23, "{r}");
    assert_eq!(top[0]["services"].as_array().unwrap().len(), 10, "{r}");
    assert_eq!(
        top[1]["alertname"], "BurstAlertNumber00WithALongName",
        "{r}"
    );
    assert_eq!(
        (&top[1]["incidents"], &top[1]["firings"]),
        (&json!(1), &json!(1))
    );
    let per_service = busiest["top_alerts"].as_array().unwrap();
    assert_eq!(per_service.len(), 5, "{busiest}");

    let page = app.get_text("/reports?since=1d").await;
    assert!(
        page.contains("The 20 services with most incidents are listed; the other 3 are summed"),
        "{page}"
    );
    assert!(page.contains("The other 3 services, together"), "{page}");
    let out = incidentd(args(&["report", "--url", &app.url, "--since", "1d"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(3 other services)"), "{text}");
}
