//! Drafts: written to disk after changes, served by the API, hand edits kept.

use crate::helpers::*;

#[tokio::test]
async fn a_draft_is_written_after_the_scenario_and_served_by_the_api() {
    let app = spawn_app().await;
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let path = app.dir.path().join("drafts/INC-2026-0001.md");
    let on_disk = app.wait_for_file(&path).await;
    assert!(on_disk.contains("INC-2026-0001"), "{on_disk}");
    assert!(on_disk.contains("Database connection pool nearly exhausted on payment-service"));

    let r = app
        .client
        .get(format!(
            "{}/api/v1/incidents/INC-2026-0001/postmortem",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/markdown; charset=utf-8"
    );
    let served = r.text().await.unwrap();
    for section in [
        "## Executive Summary",
        "## Timeline",
        "## Detection",
        "## Action Items",
        "## Lessons Learned",
    ] {
        assert!(served.contains(section), "missing {section}:\n{served}");
    }
    assert!(
        served.contains("no Prometheus is configured"),
        "says why evidence is missing"
    );
    assert!(!served.contains("null"));

    let (status, _) = app
        .get_json("/api/v1/incidents/INC-2026-0002/postmortem")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_hand_edited_draft_is_never_overwritten() {
    let app = spawn_app().await;
    let hooks = recorded_webhooks();
    app.set_time(hooks[0].1);
    app.post_webhook(hooks[0].2.clone()).await;
    let path = app.dir.path().join("drafts/INC-2026-0001.md");
    app.wait_for_file(&path).await;
    std::fs::write(&path, "# My own words\n").unwrap();
    for (_, at, body) in &hooks[1..] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    let generated = app.dir.path().join("drafts/INC-2026-0001.generated.md");
    let text = app.wait_for_file(&generated).await;
    assert!(text.contains("INC-2026-0001"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# My own words\n");
}

#[tokio::test]
async fn drafts_show_times_in_the_configured_second_zone_too() {
    let mut config = incidentd::config::Config::default();
    config.postmortem.timezone = chrono_tz::Europe::Berlin;
    config.postmortem.second_timezone = Some(chrono_tz::Asia::Tokyo);
    let app = spawn_app_with(config).await;
    let (_, at, body) = recorded_webhooks().remove(0);
    app.set_time(at);
    assert_eq!(app.post_webhook(body).await.status(), 200);
    let draft = app
        .wait_for_file(&app.dir.path().join("drafts/INC-2026-0001.md"))
        .await;
    // The first recorded firing, 02:26:28 UTC: 03:26:28 in Berlin, 11:26:28 in Tokyo.
    assert!(
        draft.contains("2026-11-23 03:26:28 CET (2026-11-23 11:26:28 JST)"),
        "{draft}"
    );
}

/// One alert of the recorded firing payload: `name`, fingerprint `fp`, firing from `starts`
/// and, when `ends` is given, resolved then.
fn alert_payload(name: &str, fp: &str, starts: &str, ends: Option<&str>) -> String {
    payload(|v| {
        let a = &mut v["alerts"][0];
        a["labels"]["alertname"] = name.into();
        a["fingerprint"] = fp.into();
        a["startsAt"] = starts.into();
        if let Some(ends) = ends {
            a["status"] = "resolved".into();
            a["endsAt"] = ends.into();
            v["status"] = "resolved".into();
        }
    })
}

#[tokio::test]
async fn both_parts_of_a_split_incident_get_their_own_draft() {
    let mut config = incidentd::config::Config::default();
    config.correlation.reopen_window = std::time::Duration::ZERO;
    let app = spawn_app_with(config).await;
    // B fires; A, which started earlier, arrives late and joins B's incident; A's resolve
    // then shows it ended before B began: two problems, so A is split off.
    app.set_time(time("2026-11-23T14:20:01Z"));
    let b = alert_payload("PoolHigh", "bbbbbbbbbbbbbbbb", "2026-11-23T14:20:00Z", None);
    assert_eq!(app.post_webhook(b).await.status(), 200);
    app.set_time(time("2026-11-23T14:21:00Z"));
    let a = alert_payload(
        "LatencyHigh",
        "aaaaaaaaaaaaaaaa",
        "2026-11-23T14:00:00Z",
        None,
    );
    assert_eq!(app.post_webhook(a).await.status(), 200);
    assert_eq!(app.incidents().await.len(), 1);
    let drafts = app.dir.path().join("drafts");
    let first = app.wait_for_file(&drafts.join("INC-2026-0001.md")).await;
    assert!(first.contains("LatencyHigh"), "{first}");

    app.set_time(time("2026-11-23T14:22:00Z"));
    let resolved = alert_payload(
        "LatencyHigh",
        "aaaaaaaaaaaaaaaa",
        "2026-11-23T14:00:00Z",
        Some("2026-11-23T14:05:00Z"),
    );
    assert_eq!(app.post_webhook(resolved).await.status(), 200);
    assert_eq!(app.incidents().await.len(), 2);

    let part = app.wait_for_file(&drafts.join("INC-2026-0002.md")).await;
    assert!(
        part.contains("LatencyHigh") && !part.contains("PoolHigh"),
        "{part}"
    );
    // The original is rendered again without the alert that left it; its timeline keeps
    // what people saw (append-only) and says where the alert went.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let first = std::fs::read_to_string(drafts.join("INC-2026-0001.md")).unwrap();
        if !first.contains("### LatencyHigh") {
            assert!(first.contains("### PoolHigh"), "{first}");
            assert!(
                first.contains("Split: LatencyHigh moved to INC-2026-0002"),
                "{first}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "INC-2026-0001's draft still lists the split-off alert:\n{first}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
