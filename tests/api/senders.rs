//! Webhook bodies that other projects published (`../shared/fixtures/external`, byte for
//! byte, with `MANIFEST.tsv` naming each one's source and class): each is accepted and stored
//! exactly, or refused with a 400 naming the field at fault, as its class says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};
use incidentd::alertmanager::{fingerprint, grafana_keys};
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
