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
