//! Webhook bodies that other projects published (`../shared/fixtures/external`, byte for
//! byte, with `MANIFEST.tsv` naming each one's source and class): each is accepted and stored
//! exactly, or refused with a 400 naming the field at fault, as its class says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};
use incidentd::alertmanager::fingerprint;
use incidentd::incident::grafana_keys;
use serde_json::Value;

use crate::helpers::*;

fn external() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/external")
}

struct Entry {
    file: String,
    class: String,
    /// The field a refusal must name; alternatives separated by `|`.
    expect_field: String,
    body: Vec<u8>,
}

fn manifest() -> Vec<Entry> {
    let dir = external();
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("MANIFEST.tsv").display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, class, expect) = (col("file"), col("class"), col("expect_field"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            let path = dir.join("payloads").join(cells[file]);
            Entry {
                file: cells[file].to_string(),
                class: cells[class].to_string(),
                expect_field: cells[expect].to_string(),
                body: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            }
        })
        .collect()
}

fn accepted_class(class: &str) -> bool {
    matches!(class, "am-modern" | "am-legacy" | "grafana-v1")
}

#[test]
fn the_manifest_names_every_payload_once() {
    let entries = manifest();
    let mut listed: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(external().join("payloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(listed, files);
    assert_eq!(entries.len(), 26);
    let accepted = entries.iter().filter(|e| accepted_class(&e.class)).count();
    assert_eq!(accepted, 17, "7 am-modern, 5 am-legacy, 5 grafana-v1");
}

fn time_of(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .with_timezone(&Utc)
}

/// What the body says, at the store's precision (microseconds).
fn sent_time(s: &str) -> DateTime<Utc> {
    time_of(s).trunc_subsecs(6)
}

async fn stored_alerts(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for i in app.incidents().await {
        let i = app.incident(i["id"].as_str().unwrap()).await;
        out.extend(i["alerts"].as_array().unwrap().iter().cloned());
    }
    out
}

async fn check_accepted(e: &Entry) {
    let app = spawn_app().await;
    let r = app.post_webhook(e.body.clone()).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{} ({}): {text}", e.file, e.class);
    let sent: Value = serde_json::from_slice(&e.body).unwrap();
    let alerts = sent["alerts"].as_array().unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["alerts"], alerts.len(), "{}", e.file);

    let stored = stored_alerts(&app).await;
    assert_eq!(stored.len(), alerts.len(), "{}: {stored:#?}", e.file);
    for (i, a) in alerts.iter().enumerate() {
        let what = format!("{} alerts[{i}]", e.file);
        let labels: BTreeMap<String, String> = serde_json::from_value(a["labels"].clone()).unwrap();
        let fp = match a["fingerprint"].as_str() {
            Some(f) => f.to_string(),
            None => {
                assert_eq!(e.class, "am-legacy", "{what}: only legacy bodies lack it");
                fingerprint(&labels)
            }
        };
        let starts_at = sent_time(a["startsAt"].as_str().unwrap());
        let got = stored
            .iter()
            .find(|s| {
                s["fingerprint"] == fp.as_str()
                    && time_of(s["starts_at"].as_str().unwrap()) == starts_at
            })
            .unwrap_or_else(|| panic!("{what}: no stored alert {fp} at {starts_at}: {stored:#?}"));
        assert_eq!(got["labels"], a["labels"], "{what}");
        assert_eq!(got["status"], a["status"], "{what}");
        assert_eq!(
            got["alertname"].as_str(),
            labels.get("alertname").map(String::as_str),
            "{what}"
        );
        assert_eq!(
            got["generator_url"],
            a.get("generatorURL").cloned().unwrap_or_else(|| "".into()),
            "{what}"
        );
        match a["status"].as_str().unwrap() {
            "resolved" => assert_eq!(
                time_of(got["ends_at"].as_str().unwrap()),
                sent_time(a["endsAt"].as_str().unwrap()),
                "{what}"
            ),
            _ => assert_eq!(
                got["ends_at"],
                Value::Null,
                "{what}: a firing alert's endsAt is a guess"
            ),
        }
        let annotations = got["annotations"].as_object().unwrap();
        for (k, v) in a["annotations"].as_object().unwrap() {
            assert_eq!(annotations.get(k), Some(v), "{what}: annotation {k}");
        }
        if e.class == "grafana-v1" {
            for (key, field) in [
                (grafana_keys::VALUE_STRING, "valueString"),
                (grafana_keys::DASHBOARD_URL, "dashboardURL"),
                (grafana_keys::PANEL_URL, "panelURL"),
                (grafana_keys::SILENCE_URL, "silenceURL"),
                (grafana_keys::IMAGE_URL, "imageURL"),
            ] {
                match a[field].as_str().filter(|s| !s.is_empty()) {
                    Some(v) => assert_eq!(annotations[key], v, "{what}: {field}"),
                    None => assert!(!annotations.contains_key(key), "{what}: {field}"),
                }
            }
            match a["values"].as_object().filter(|v| !v.is_empty()) {
                Some(values) => {
                    let shown = annotations[grafana_keys::VALUES].as_str().unwrap();
                    for (name, value) in values {
                        assert!(
                            shown.contains(&format!("{name}={value}")),
                            "{what}: {shown}"
                        );
                    }
                }
                None => assert!(!annotations.contains_key(grafana_keys::VALUES), "{what}"),
            }
        } else {
            assert!(
                !annotations.keys().any(|k| k.starts_with("grafana.")),
                "{what}: Grafana's fields only for Grafana's bodies"
            );
        }
    }
    check_timeline_credits(&app, e).await;
}

/// The rows each alert caused name its sender: Grafana for Grafana's bodies (with the values
/// it sent), Prometheus for Alertmanager's.
async fn check_timeline_credits(app: &TestApp, e: &Entry) {
    let grafana = e.class == "grafana-v1";
    for i in app.incidents().await {
        let i = app.incident(i["id"].as_str().unwrap()).await;
        for row in i["timeline"].as_array().unwrap() {
            let (kind, actor, text) = (
                row["kind"].as_str().unwrap(),
                row["actor"].as_str().unwrap(),
                row["text"].as_str().unwrap(),
            );
            let what = format!("{}: {row}", e.file);
            match kind {
                "alert_firing" | "alert_resolved" => {
                    assert_eq!(
                        actor,
                        if grafana { "Grafana" } else { "Prometheus" },
                        "{what}"
                    );
                }
                "detected" => {
                    assert_eq!(
                        actor,
                        if grafana { "Grafana" } else { "Alertmanager" },
                        "{what}"
                    );
                }
                _ => {}
            }
            if !grafana {
                assert!(!text.contains("(Grafana: "), "{what}");
            }
        }
        if !grafana {
            continue;
        }
        // Each alert's row of its state as sent carries the values sent with it.
        for a in i["alerts"].as_array().unwrap() {
            let annotations = &a["annotations"];
            let Some(values) = annotations[grafana_keys::VALUES]
                .as_str()
                .or(annotations[grafana_keys::VALUE_STRING].as_str())
            else {
                continue;
            };
            let kind = match a["status"].as_str().unwrap() {
                "firing" => "alert_firing",
                _ => "alert_resolved",
            };
            let name = a["alertname"].as_str().unwrap();
            let shown = format!("(Grafana: {values})");
            assert!(
                i["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["kind"] == kind
                        && r["text"].as_str().unwrap().starts_with(name)
                        && r["text"].as_str().unwrap().ends_with(&shown)),
                "{}: no {kind} row of {name} with {shown}: {:#}",
                e.file,
                i["timeline"]
            );
        }
    }
}

async fn check_refused(e: &Entry) {
    let app = spawn_app().await;
    let r = app.post_webhook(e.body.clone()).await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 400, "{} ({}): {body}", e.file, e.class);
    let error = body["error"].as_str().unwrap();
    assert!(
        e.expect_field.split('|').any(|f| error.contains(f)),
        "{} ({}): {error:?} should name {}",
        e.file,
        e.class,
        e.expect_field
    );
    if matches!(e.class.as_str(), "am-pre-v4" | "am-exec") {
        // The version is checked before anything that follows from it.
        assert!(error.starts_with("version: "), "{}: {error}", e.file);
    }
    assert!(
        app.incidents().await.is_empty(),
        "{}: nothing stored",
        e.file
    );
    assert_eq!(stored_notifications(app.dir.path()), 0, "{}", e.file);
}

#[tokio::test]
async fn every_published_body_is_accepted_and_stored_exactly_or_refused_naming_the_field() {
    for e in manifest() {
        if accepted_class(&e.class) {
            check_accepted(&e).await;
        } else {
            check_refused(&e).await;
        }
    }
}

/// Bodies that Alertmanager's own code wrote carry its fingerprints: ours, computed from the
/// labels, are the same (those of Alertmanager before 0.19 are computed the same way).
#[test]
fn published_alertmanager_fingerprints_are_the_ones_computed_from_the_labels() {
    // Published with edited labels or fingerprints (no Alertmanager sends these pairs):
    let edited = [
        // "lightly edited": its two alerts have one label set and two fingerprints.
        ("zulip-alert.json", 1),
        // The example's labels (namespace "whatever/promstack") were evidently changed after
        // capture: none of the three hashes to the fingerprint published beside it.
        ("msteams-card-grafana-inspired-payload.json", 0),
        ("msteams-card-grafana-inspired-payload.json", 1),
        ("msteams-card-grafana-inspired-payload.json", 2),
    ];
    let mut checked = 0;
    for e in manifest() {
        // am-exec: written by Alertmanager's exec notifier under test.
        if !matches!(e.class.as_str(), "am-modern" | "am-exec") {
            continue;
        }
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        for (i, a) in v["alerts"].as_array().unwrap().iter().enumerate() {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(a["labels"].clone()).unwrap();
            let ours = fingerprint(&labels);
            let theirs = a["fingerprint"].as_str().unwrap();
            if edited.contains(&(e.file.as_str(), i)) {
                assert_ne!(
                    ours, theirs,
                    "{} alerts[{i}] is no longer an exception",
                    e.file
                );
                continue;
            }
            assert_eq!(ours, theirs, "{} alerts[{i}]", e.file);
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

/// The recorded pool alert as Grafana-managed alerting's webhook contact point would send it:
/// version "1" with Grafana's fields, the values of the rule's queries as given.
fn grafana_body(values: Value, resolved_at: Option<&str>) -> String {
    payload(|v| {
        let status = if resolved_at.is_some() {
            "resolved"
        } else {
            "firing"
        };
        v["version"] = "1".into();
        v["orgId"] = 1.into();
        v["state"] = if resolved_at.is_some() {
            "ok"
        } else {
            "alerting"
        }
        .into();
        v["title"] = format!("[{}:1] DatabaseConnectionPoolHigh", status.to_uppercase()).into();
        v["message"] = "pool".into();
        v["status"] = status.into();
        let a = &mut v["alerts"][0];
        a["status"] = status.into();
        if let Some(end) = resolved_at {
            a["endsAt"] = end.into();
        }
        a.as_object_mut().unwrap().insert("values".into(), values);
        a["valueString"] = "[ var='B' labels={pool=primary} value=0.97 ]".into();
        a["generatorURL"] =
            "https://grafana.example.com/alerting/grafana/pool-high/view?orgId=1".into();
        a["dashboardURL"] = "https://grafana.example.com/d/payment?orgId=1".into();
        a["panelURL"] = "https://grafana.example.com/d/payment?orgId=1&viewPanel=2".into();
        a["silenceURL"] =
            "https://grafana.example.com/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DDatabaseConnectionPoolHigh".into();
        a["imageURL"] = "".into();
    })
}

/// Grafana's alerts in the timeline: rows credited to Grafana, each carrying the values Grafana
/// sent when the row was made (a repeat with other values changes no row); the draft's
/// timeline table shows them, and its references link Grafana's rule page.
#[tokio::test]
async fn a_grafana_alerts_timeline_names_grafana_with_the_values_it_sent() {
    let app = spawn_app().await;
    app.set_time(time("2026-11-23T02:26:29.743Z"));
    let firing = grafana_body(serde_json::json!({"B": 0.97, "C": 1}), None);
    assert_eq!(app.post_webhook(firing).await.status(), 200);
    app.set_time(time("2026-11-23T02:26:59.743Z"));
    let repeat = grafana_body(serde_json::json!({"B": 0.99, "C": 1}), None);
    assert_eq!(app.post_webhook(repeat).await.status(), 200);
    app.set_time(time("2026-11-23T02:27:10.000Z"));
    let resolved = grafana_body(
        serde_json::json!({"B": 0.41, "C": 0}),
        Some("2026-11-23T02:27:08.738Z"),
    );
    assert_eq!(app.post_webhook(resolved).await.status(), 200);

    let list = app.incidents().await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let incident = app.incident(&id).await;
    assert_eq!(incident["status"], "resolved", "{incident:#}");
    let timeline = incident["timeline"].as_array().unwrap();
    let rows =
        |kind: &str| -> Vec<&Value> { timeline.iter().filter(|e| e["kind"] == kind).collect() };
    let firing = rows("alert_firing");
    assert_eq!(firing.len(), 1, "{timeline:#?}");
    assert_eq!(firing[0]["actor"], "Grafana");
    assert_eq!(
        firing[0]["text"],
        "DatabaseConnectionPoolHigh fired: Database connection pool nearly exhausted on \
         payment-service (Grafana: B=0.97, C=1)"
    );
    let resolved = rows("alert_resolved");
    assert_eq!(resolved.len(), 1, "{timeline:#?}");
    assert_eq!(resolved[0]["actor"], "Grafana");
    assert_eq!(
        resolved[0]["text"],
        "DatabaseConnectionPoolHigh resolved (Grafana: B=0.41, C=0)"
    );
    assert_eq!(rows("detected")[0]["actor"], "Grafana");
    assert!(
        !timeline.iter().any(|e| e["actor"] == "Prometheus"),
        "{timeline:#?}"
    );

    // The draft (rendered once the resolve is in).
    let path = format!("/api/v1/incidents/{id}/postmortem");
    let mut draft = String::new();
    for _ in 0..100 {
        let r = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        draft = r.text().await.unwrap();
        if draft.contains("(Grafana: B=0.41, C=0)") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        draft.contains("payment-service (Grafana: B=0.97, C=1) | Grafana |"),
        "{draft}"
    );
    assert!(
        draft.contains("| DatabaseConnectionPoolHigh resolved (Grafana: B=0.41, C=0) | Grafana |"),
        "{draft}"
    );
    assert!(
        draft.contains(
            "- **Alert rule in Grafana** (DatabaseConnectionPoolHigh): \
             [rule](https://grafana.example.com/alerting/grafana/pool-high/view?orgId=1)"
        ),
        "{draft}"
    );
    assert!(!draft.contains("Alert expression in Prometheus"), "{draft}");
    for url in [
        "https://grafana.example.com/d/payment?orgId=1",
        "https://grafana.example.com/d/payment?orgId=1&viewPanel=2",
    ] {
        assert!(
            draft
                .lines()
                .any(|l| l.starts_with("- **Dashboard**") && l.contains(url)),
            "{url}: {draft}"
        );
    }
    assert!(
        draft.contains("Every alert resolved in Grafana, none by hand"),
        "{draft}"
    );
}
