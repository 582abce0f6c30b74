//! What a person sees and does in the browser.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::MockServer;

use crate::helpers::*;
use crate::recorded_prometheus::{mount, RecordedPrometheus};
use crate::webdriver::Browser;

/// Whether every image matching `css` has loaded (and there is at least one).
fn images_loaded(css: &str) -> String {
    format!(
        "const imgs = [...document.querySelectorAll({css:?})]; \
         return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"
    )
}

#[tokio::test]
async fn the_recorded_incident_in_a_browser_list_timeline_charts_draft_and_acknowledging_with_a_note(
) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let server = MockServer::start().await;
    mount(&server, &RecordedPrometheus::new()).await;
    let app = spawn_app_with(prometheus_config(&server.uri())).await;
    // The firing notifications only: the incident is open, as when someone first looks.
    for (file, at, body) in recorded_webhooks() {
        if file.contains("resolved") {
            break;
        }
        app.set_time(at);
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let id = "INC-2026-0001";
    let before = wait_for_incident(&app, id, "evidence with charts", |i| {
        has_snapshots(i) && i["snapshots"][0]["chart_url"].is_string()
    })
    .await;

    // The list shows the incident, open, with its figures.
    browser.goto(&format!("{}/", app.url)).await;
    let row = browser
        .eval(
            &format!("const a = document.querySelector('a[href=\"/incidents/{id}\"]'); return a && a.closest('tr').innerText;"),
            json!([]),
        )
        .await;
    let row = row
        .as_str()
        .expect("the list has a row linking to the incident");
    assert!(row.contains(id) && row.contains("open"), "{row}");
    assert!(row.contains("not yet acknowledged"), "{row}");
    assert!(row.contains(before["title"].as_str().unwrap()), "{row}");
    browser.screenshot("pages-list-open").await;

    // Its page: every timeline row, rendered charts, the draft with its images.
    browser.click(&format!("a[href=\"/incidents/{id}\"]")).await;
    browser
        .wait_until(
            "the incident page",
            "return !!document.getElementById('timeline');",
            Duration::from_secs(10),
        )
        .await;
    let rows: Vec<String> = serde_json::from_value(
        browser
            .eval(
                "return [...document.querySelectorAll('#timeline li')].map(li => li.innerText);",
                json!([]),
            )
            .await,
    )
    .unwrap();
    for e in before["timeline"].as_array().unwrap() {
        let (text, actor) = (e["text"].as_str().unwrap(), e["actor"].as_str().unwrap());
        assert!(
            rows.iter().any(|r| r.contains(text) && r.contains(actor)),
            "the page's timeline has no row for {e}: {rows:#?}"
        );
    }
    browser
        .wait_until(
            "the charts loaded",
            &images_loaded("figure.chart img"),
            Duration::from_secs(10),
        )
        .await;
    let charts = before["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["chart_url"].is_string())
        .count();
    let shown = browser
        .eval(
            "return document.querySelectorAll('figure.chart img').length;",
            json!([]),
        )
        .await;
    assert_eq!(
        shown.as_u64(),
        Some(charts as u64),
        "one chart per snapshot with one"
    );
    // The chart behind each image is an SVG with something drawn in it.
    let src = browser
        .eval(
            "return document.querySelector('figure.chart img').src;",
            json!([]),
        )
        .await;
    let r = app.client.get(src.as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the chart is SVG");
    let drawn = doc
        .descendants()
        .filter(|n| matches!(n.tag_name().name(), "path" | "polyline" | "line" | "rect"))
        .count();
    assert!(drawn > 0, "the chart's SVG draws nothing: {svg}");
    let labels = browser
        .eval(
            "return document.querySelector('figure.chart dl.values').innerText;",
            json!([]),
        )
        .await;
    let labels = labels.as_str().unwrap();
    assert!(
        labels.contains("Baseline") && labels.contains("Peak so far") && labels.contains("Now"),
        "{labels}"
    );
    browser
        .wait_until(
            "the draft's images loaded",
            &images_loaded("#draft img"),
            Duration::from_secs(10),
        )
        .await;
    let draft = browser
        .eval(
            "return document.getElementById('draft').innerText;",
            json!([]),
        )
        .await;
    assert!(
        draft.as_str().unwrap().contains(id),
        "the draft renders: {draft}"
    );
    let download = browser
        .eval(
            "return document.querySelector('a[download]').getAttribute('href');",
            json!([]),
        )
        .await;
    assert_eq!(
        download,
        json!(format!("/api/v1/incidents/{id}/postmortem"))
    );
    browser.screenshot("pages-incident-open").await;
    browser
        .eval(
            "document.getElementById('evidence-h').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.screenshot("pages-incident-evidence").await;
    browser
        .eval(
            "document.getElementById('draft-h').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.screenshot("pages-incident-draft").await;

    // Acknowledge with a note, from the page.
    app.set_time(time("2026-11-23T02:28:00Z"));
    browser
        .eval(
            "document.getElementById('act-h').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.type_into("#by", "Ada Lovelace").await;
    browser
        .type_into("#note", "Pool exhausted by the batch job; pausing it.")
        .await;
    browser.click("button[value=acknowledge]").await;
    browser
        .wait_until(
            "the acknowledgement in the timeline",
            "return !!document.querySelector('#timeline li.kind-acknowledged');",
            Duration::from_secs(10),
        )
        .await;
    let after = app.incident(id).await;
    assert_eq!(after["status"], "acknowledged");
    assert_eq!(after["acknowledged_by"], "Ada Lovelace");
    let rows: Vec<String> = serde_json::from_value(
        browser
            .eval(
                "return [...document.querySelectorAll('#timeline li')].map(li => li.innerText);",
                json!([]),
            )
            .await,
    )
    .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.contains("Ada Lovelace") && r.contains("acknowledged")),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.contains("Ada Lovelace")
            && r.contains("Pool exhausted by the batch job; pausing it.")),
        "{rows:#?}"
    );
    let tta = browser
        .eval(
            "return document.querySelector('[data-figure=TTA]').innerText;",
            json!([]),
        )
        .await;
    let expected = incidentd::time::human_duration(after["tta_seconds"].as_f64().unwrap());
    assert_eq!(
        tta.as_str(),
        Some(expected.as_str()),
        "the page's TTA is the API's"
    );
    let status = browser
        .eval(
            "return document.querySelector('.meta .badge').innerText;",
            json!([]),
        )
        .await;
    assert_eq!(status, "acknowledged");
    browser
        .eval(
            "document.getElementById('timeline-h').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.screenshot("pages-incident-acknowledged").await;
    // Readable in a dark scheme: light text on a dark background.
    browser.prefer_dark(true).await;
    let colors = browser
        .eval(
            "const s = getComputedStyle(document.body); return [s.color, s.backgroundColor];",
            json!([]),
        )
        .await;
    assert_eq!(
        colors,
        json!(["rgb(230, 237, 243)", "rgb(13, 17, 23)"]),
        "dark scheme"
    );
    browser.screenshot("pages-incident-dark").await;
    browser.prefer_dark(false).await;

    // The rest of the scenario: the incident resolves; the list shows it so.
    for (file, at, body) in recorded_webhooks() {
        if file.contains("resolved") {
            app.set_time(at);
            assert_eq!(app.post_webhook(body).await.status(), 200);
        }
    }
    wait_for_incident(&app, id, "the resolve", |i| i["status"] == "resolved").await;
    browser.goto(&format!("{}/?status=resolved", app.url)).await;
    let text = browser.text().await;
    assert!(text.contains(id) && text.contains("resolved"), "{text}");
    browser.screenshot("pages-list-resolved").await;
    browser.goto(&format!("{}/incidents/{id}", app.url)).await;
    let labels = browser
        .eval(
            "return document.querySelector('figure.chart dl.values').innerText;",
            json!([]),
        )
        .await;
    let labels = labels.as_str().unwrap();
    assert!(
        labels.contains("Peak") && !labels.contains("Now ("),
        "resolved: no \"now\" column: {labels}"
    );
    browser.screenshot("pages-incident-resolved").await;

    browser.quit().await;
    app.stop().await;
}

/// The scripts hostile input would run: each sets `window.__pwned` or the title.
const PAYLOADS: [&str; 3] = [
    "<script>window.__pwned=1;document.title='pwned'</script>",
    "<img src=x onerror=\"window.__pwned=2;document.title='pwned'\">",
    "\"><svg onload=\"window.__pwned=3\">",
];

#[tokio::test]
async fn hostile_labels_annotations_notes_and_names_show_as_text_and_no_script_runs() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let nasty = PAYLOADS.join(" ");
    let body = payload(|v| {
        v["alerts"][0]["labels"]["service"] = nasty.clone().into();
        v["alerts"][0]["labels"]["pool"] = nasty.clone().into();
        v["alerts"][0]["annotations"]["summary"] = nasty.clone().into();
        v["alerts"][0]["annotations"]["description"] = nasty.clone().into();
        v["alerts"][0]["annotations"]["runbook_url"] = "javascript:window.__pwned=4".into();
    });
    assert_eq!(app.post_webhook(body).await.status(), 200);
    let id = "INC-2026-0001";

    browser.goto(&format!("{}/", app.url)).await;
    let title = browser
        .eval(
            "return [document.title, window.__pwned === undefined];",
            json!([]),
        )
        .await;
    assert_eq!(
        title,
        json!(["Incidents · incidentd", true]),
        "no script ran on the list"
    );
    assert!(
        browser.text().await.contains(PAYLOADS[0]),
        "the list shows the title as text"
    );
    browser.screenshot("pages-hostile-list").await;

    browser.goto(&format!("{}/incidents/{id}", app.url)).await;
    browser.type_into("#by", PAYLOADS[1]).await;
    browser.type_into("#note", &nasty).await;
    browser.click("button[value=note]").await;
    browser
        .wait_until(
            "the note in the timeline",
            "return !!document.querySelector('#timeline li.kind-note_added');",
            Duration::from_secs(10),
        )
        .await;
    let state = browser
        .eval(
            "return [window.__pwned === undefined, document.title === 'pwned', \
             document.querySelectorAll('main script, main svg, #timeline img, .alert img').length, \
             [...document.querySelectorAll('a')].some(a => a.href.startsWith('javascript:'))];",
            json!([]),
        )
        .await;
    assert_eq!(
        state,
        json!([true, false, 0, false]),
        "no script ran, no element was injected"
    );
    let text = browser.text().await;
    for p in PAYLOADS {
        assert!(text.contains(p), "the page shows {p:?} as text");
    }
    let actor = browser
        .eval(
            "return document.querySelector('#timeline li.kind-note_added .actor').innerText;",
            json!([]),
        )
        .await;
    assert_eq!(
        actor.as_str(),
        Some(PAYLOADS[1]),
        "the name typed is shown as text"
    );
    browser.screenshot("pages-hostile-incident").await;

    // The reports name the service in tables and in the charts' SVG: as text there too.
    browser.goto(&format!("{}/reports", app.url)).await;
    let state = browser
        .eval(
            "return [window.__pwned === undefined, document.title, \
             [...document.querySelectorAll('figure.bars svg text')].some(t => t.textContent.startsWith('<script>')), \
             document.querySelectorAll('main script, figure.bars svg svg, figure.bars svg img').length];",
            json!([]),
        )
        .await;
    assert_eq!(
        state,
        json!([true, "Reports · incidentd", true, 0]),
        "no script ran on the reports"
    );
    assert!(
        browser.text().await.contains(PAYLOADS[0]),
        "the reports show the service as text"
    );
    browser.screenshot("pages-hostile-reports").await;
    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn the_reports_page_shows_the_figures_the_api_returns() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    // The recorded incident, resolved; another, acknowledged, in another service.
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    app.set_time(time("2026-11-24T09:00:00Z"));
    let body = payload(|v| {
        let a = &mut v["alerts"][0];
        a["labels"]["service"] = "checkout".into();
        a["labels"]["alertname"] = "CheckoutErrors".into();
        a["fingerprint"] = "c1".into();
        a["startsAt"] = "2026-11-24T08:59:00Z".into();
        v["groupKey"] = "{}:{service=\"checkout\"}".into();
    });
    assert_eq!(app.post_webhook(body).await.status(), 200);
    app.set_time(time("2026-11-24T09:05:00Z"));
    let r = app
        .client
        .post(format!("{}/api/v1/incidents/INC-2026-0002/ack", app.url))
        .json(&json!({"by": "Grace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.set_time(time("2026-11-30T12:00:00Z"));

    let query = "since=2026-11-01&until=2026-12-01&by=week";
    let (status, api) = app.get_json(&format!("/api/v1/reports?{query}")).await;
    assert_eq!(status, 200, "{api}");
    browser.goto(&format!("{}/reports?{query}", app.url)).await;
    let figure = |name: &str| {
        let b = &browser;
        let script = format!("return document.querySelector('[data-figure={name}]').innerText;");
        async move {
            b.eval(&script, json!([]))
                .await
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let words = |v: &Value| match v.as_f64() {
        Some(s) => incidentd::time::human_duration(s),
        None => "none".to_string(),
    };
    assert_eq!(
        figure("incidents").await,
        api["total"]["incidents"].to_string()
    );
    assert_eq!(api["total"]["incidents"], 2);
    assert_eq!(
        figure("mttd").await,
        words(&api["total"]["ttd"]["mean_seconds"])
    );
    assert_eq!(
        figure("mtta").await,
        words(&api["total"]["tta"]["mean_seconds"])
    );
    assert_eq!(
        figure("mttr").await,
        words(&api["total"]["ttr"]["mean_seconds"])
    );
    assert_eq!(
        figure("duration").await,
        words(&api["total"]["duration"]["mean_seconds"])
    );
    assert_ne!(figure("mtta").await, "none", "the acknowledgement counts");

    // Per service and per week: the same rows, the same figures.
    let rows = |id: &str| {
        let b = &browser;
        let script = format!(
            "return [...document.querySelectorAll('#{id} tbody tr')].map(tr => [...tr.children].map(c => c.innerText.trim()));"
        );
        async move { b.eval(&script, json!([])).await }
    };
    let services = rows("services").await;
    let api_services = api["services"].as_array().unwrap();
    assert_eq!(services.as_array().unwrap().len(), api_services.len());
    for (row, s) in services.as_array().unwrap().iter().zip(api_services) {
        assert_eq!(row[0], s["service"], "{row}");
        assert_eq!(row[1], s["incidents"].to_string().as_str(), "{row}");
        assert_eq!(row[3], words(&s["ttd"]["mean_seconds"]).as_str(), "{row}");
        assert_eq!(row[4], words(&s["ttd"]["p50_seconds"]).as_str(), "{row}");
        assert_eq!(row[5], words(&s["ttd"]["p90_seconds"]).as_str(), "{row}");
        assert_eq!(row[9], words(&s["ttr"]["mean_seconds"]).as_str(), "{row}");
    }
    let periods = rows("periods").await;
    let api_periods = api["periods"].as_array().unwrap();
    assert_eq!(periods.as_array().unwrap().len(), api_periods.len());
    for (row, p) in periods.as_array().unwrap().iter().zip(api_periods) {
        assert!(
            row[0]
                .as_str()
                .unwrap()
                .starts_with(p["label"].as_str().unwrap()),
            "{row}"
        );
        assert_eq!(row[1], p["incidents"].to_string().as_str(), "{row}");
    }
    let alerts = rows("top-alerts").await;
    let api_alerts = api["top_alerts"].as_array().unwrap();
    assert_eq!(alerts.as_array().unwrap().len(), api_alerts.len());
    for (row, a) in alerts.as_array().unwrap().iter().zip(api_alerts) {
        assert_eq!(row[0], a["alertname"], "{row}");
        assert_eq!(row[1], a["firings"].to_string().as_str(), "{row}");
    }
    // The charts: one bar per period in the first.
    let bars = browser
        .eval(
            "return document.querySelector('figure.bars svg').querySelectorAll('rect.bar').length;",
            json!([]),
        )
        .await;
    assert_eq!(bars.as_u64(), Some(api_periods.len() as u64));
    browser.screenshot("pages-reports").await;
    browser
        .eval(
            "document.getElementById('services-h').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.screenshot("pages-reports-tables").await;
    browser.quit().await;
    app.stop().await;
}
