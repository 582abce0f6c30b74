//! Drafts: rendered and stored after changes, exported to disk, the stored version served by
//! the API, hand edits kept.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

const ID: &str = "INC-2026-0001";
/// In the draft of the scenario's incident once its last webhook (the resolve) is in.
const RESOLVED: &str = "(the incident is resolved)";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `GET /api/v1/incidents/{id}/postmortem`.
async fn get_draft(app: &TestApp, id: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut r = app
        .client
        .get(format!("{}/api/v1/incidents/{id}/postmortem", app.url));
    if let Some(tag) = if_none_match {
        r = r.header("If-None-Match", tag);
    }
    r.send().await.unwrap()
}

/// Wait (bounded) until the API serves a stored draft whose bytes are those of `path`, and
/// return them: the export caught up with the database.
async fn settled(app: &TestApp, id: &str, path: &Path) -> String {
    settled_when(app, id, path, |_| true).await
}

/// [`settled`] on a draft that satisfies `until`.
async fn settled_when(
    app: &TestApp,
    id: &str,
    path: &Path,
    until: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get_draft(app, id, None).await;
        let stored = r
            .headers()
            .get("x-incidentd-draft")
            .map(|v| v.to_str().unwrap().to_string());
        let served = r.text().await.unwrap();
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        if stored.as_deref() == Some("stored") && served == on_disk && until(&served) {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "the API ({stored:?}) and {} never agreed:\n{served}\n---\n{on_disk}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

    let served = settled(&app, ID, &path).await;
    let r = get_draft(&app, ID, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/markdown; charset=utf-8"
    );
    assert_eq!(r.text().await.unwrap(), served);
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

#[tokio::test]
async fn the_api_serves_the_stored_draft_byte_for_byte_with_validators() {
    let app = spawn_app().await;
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let path = app.dir.path().join(format!("drafts/{ID}.md"));
    let on_disk = settled_when(&app, ID, &path, |d| d.contains(RESOLVED)).await;

    let r = get_draft(&app, ID, None).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(on_disk.as_bytes())));
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    // Rendered at the scripted time of the last change (the resolve), as an HTTP date.
    let rendered_at = chrono::DateTime::parse_from_rfc2822(&last_modified)
        .unwrap_or_else(|e| panic!("{last_modified}: {e}"));
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    assert_eq!(
        rendered_at.timestamp(),
        recorded_webhooks().last().unwrap().1.timestamp()
    );
    assert_eq!(r.headers()["x-incidentd-draft"], "stored");
    assert_eq!(r.bytes().await.unwrap(), on_disk.as_bytes());

    // A client holding that version is told nothing changed, whatever the form of the tag.
    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_string(),
    ] {
        let r = get_draft(&app, ID, Some(&tag)).await;
        assert_eq!(r.status(), 304, "If-None-Match: {tag}");
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = get_draft(&app, ID, Some("\"0000\"")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), on_disk);

    // The same bytes however often it is asked: nothing is rendered at request time.
    app.set_time(time("2026-11-30T00:00:00Z"));
    let again = get_draft(&app, ID, None).await;
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(again.text().await.unwrap(), on_disk);
}

#[tokio::test]
async fn before_the_first_render_the_api_says_its_draft_is_provisional() {
    let mut config = incidentd::config::Config::default();
    config.postmortem.render_delay = Duration::from_secs(3600);
    let app = spawn_app_with(config).await;
    let (_, at, body) = recorded_webhooks().remove(0);
    app.set_time(at);
    assert_eq!(app.post_webhook(body).await.status(), 200);

    let r = get_draft(&app, ID, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-incidentd-draft"], "provisional");
    assert!(r.headers().get("etag").is_none());
    assert!(r.headers().get("last-modified").is_none());
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/markdown; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains(ID) && text.contains("## Timeline"), "{text}");
    assert!(!app.dir.path().join(format!("drafts/{ID}.md")).exists());
    // No stored version to match, so a tag never gets a 304.
    assert_eq!(get_draft(&app, ID, Some("*")).await.status(), 200);
}

#[tokio::test]
async fn a_hand_edit_is_kept_even_without_the_sidecar() {
    let app = spawn_app().await;
    let hooks = recorded_webhooks();
    app.set_time(hooks[0].1);
    app.post_webhook(hooks[0].2.clone()).await;
    let drafts = app.dir.path().join("drafts");
    let path = drafts.join(format!("{ID}.md"));
    settled(&app, ID, &path).await;
    // A person edits the file, and the record of what incidentd wrote there is gone
    // (deleted, or this is a directory another replica filled).
    std::fs::write(&path, "# My own words\n").unwrap();
    std::fs::remove_file(drafts.join(format!(".{ID}.md.sha256"))).unwrap();
    for (_, at, body) in &hooks[1..] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    let generated = drafts.join(format!("{ID}.generated.md"));
    let text = settled_when(&app, ID, &generated, |d| d.contains(RESOLVED)).await;
    assert!(text.contains(ID), "{text}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# My own words\n");
}

#[tokio::test]
async fn without_the_sidecar_an_unedited_export_is_still_replaced() {
    let app = spawn_app().await;
    let hooks = recorded_webhooks();
    app.set_time(hooks[0].1);
    app.post_webhook(hooks[0].2.clone()).await;
    let drafts = app.dir.path().join("drafts");
    let path = drafts.join(format!("{ID}.md"));
    let first = settled(&app, ID, &path).await;
    // The file is what the database says was rendered: incidentd's, sidecar or not.
    std::fs::remove_file(drafts.join(format!(".{ID}.md.sha256"))).unwrap();
    for (_, at, body) in &hooks[1..] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&path).unwrap() == first {
        assert!(Instant::now() < deadline, "the draft was never replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settled(&app, ID, &path).await;
    assert!(!drafts.join(format!("{ID}.generated.md")).exists());
}

#[tokio::test]
async fn a_crash_between_storing_and_exporting_is_repaired_by_the_next_render() {
    let app = spawn_app().await;
    let hooks = recorded_webhooks();
    app.set_time(hooks[0].1);
    app.post_webhook(hooks[0].2.clone()).await;
    let path = app.dir.path().join(format!("drafts/{ID}.md"));
    let exported = settled(&app, ID, &path).await;
    let dir = app.stop().await;

    // A render stored its draft, and the process died before writing the file.
    let store = incidentd::store::Store::open_sqlite(&dir.path().join("data")).unwrap();
    store
        .save_draft(incidentd::store::StoredDraft::new(
            ID,
            "# rendered, stored, never exported\n".into(),
            hooks[0].1 + chrono::Duration::seconds(1),
        ))
        .await
        .unwrap();
    store.close().await;

    let app = spawn_app_in(incidentd::config::Config::default(), dir).await;
    // The database is the truth: the API serves the stored draft, the disk still the old one.
    let r = get_draft(&app, ID, None).await;
    assert_eq!(r.headers()["x-incidentd-draft"], "stored");
    assert_eq!(
        r.text().await.unwrap(),
        "# rendered, stored, never exported\n"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), exported);

    // The next change renders again: the file left behind is recognised and replaced.
    for (_, at, body) in &hooks[1..] {
        app.set_time(*at);
        assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    }
    let repaired = settled(&app, ID, &path).await;
    assert_ne!(repaired, exported);
    assert!(repaired.contains(ID), "{repaired}");
    assert!(!app
        .dir
        .path()
        .join(format!("drafts/{ID}.generated.md"))
        .exists());
}
