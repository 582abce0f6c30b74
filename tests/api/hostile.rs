//! Hostile and odd input: every case gets a clear 4xx or is stored safely, never a panic,
//! and what was stored before is intact.

use serde_json::Value;

use crate::helpers::*;

async fn post_raw(app: &TestApp, body: Vec<u8>) -> (u16, Value) {
    let r = app.post_webhook(body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_and_extreme_payloads_are_refused_and_leave_stored_incidents_intact() {
    let app = spawn_app().await;
    assert_eq!(app.post_webhook(payload(|_| {})).await.status(), 200);
    let before = app.incident("INC-2026-0001").await;

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut invalid_utf8 = payload(|_| {}).into_bytes();
    let at = invalid_utf8
        .windows(9)
        .position(|w| w == b"\"primary\"")
        .unwrap();
    invalid_utf8[at + 1] = 0xff;
    let dup = payload(|_| {}).replacen(
        r#""pool":"primary""#,
        r#""pool":"primary","pool":"replica""#,
        1,
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("deep nesting", deep.into_bytes(), "invalid type: sequence"),
        ("invalid UTF-8", invalid_utf8, "invalid JSON payload"),
        (
            "duplicate label",
            dup.into_bytes(),
            "alerts[0].labels: duplicate name \"pool\"",
        ),
        (
            "far past",
            payload(|v| v["alerts"][0]["startsAt"] = "1900-01-01T00:00:00Z".into()).into_bytes(),
            "alerts[0].startsAt: time \"1900-01-01T00:00:00Z\" is outside 1970..9999",
        ),
        (
            "empty fingerprint",
            payload(|v| v["alerts"][0]["fingerprint"] = "".into()).into_bytes(),
            "alerts[0].fingerprint: must not be empty",
        ),
        (
            "number as label",
            payload(|v| v["alerts"][0]["labels"]["pool"] = 7.into()).into_bytes(),
            "alerts[0].labels",
        ),
        (
            "not an object",
            b"[]".to_vec(),
            "invalid length 0, expected struct Notification",
        ),
    ];
    for (name, body, expected) in cases {
        let (status, body) = post_raw(&app, body).await;
        assert_eq!(status, 400, "{name}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{name}: {error:?} should contain {expected:?}"
        );
    }
    assert_eq!(
        app.incident("INC-2026-0001").await,
        before,
        "nothing stored was touched"
    );
    assert_eq!(app.incidents().await.len(), 1);
}

#[tokio::test]
async fn metacharacters_in_every_string_are_stored_and_served_verbatim() {
    let app = spawn_app().await;
    let nasty =
        "x'); DROP TABLE incidents;-- | `code` <script>alert(1)</script>\n# heading \u{0}nul ☃";
    let body = payload(|v| {
        v["alerts"][0]["labels"]["service"] = nasty.into();
        v["alerts"][0]["labels"]["pool"] = nasty.into();
        v["alerts"][0]["annotations"]["summary"] = nasty.into();
        v["alerts"][0]["annotations"]["description"] = nasty.into();
        v["groupKey"] = nasty.into();
        v["receiver"] = nasty.into();
    });
    assert_eq!(app.post_webhook(body).await.status(), 200);
    let i = app.incident("INC-2026-0001").await;
    assert_eq!(i["service"], nasty);
    assert_eq!(i["title"], nasty);
    assert_eq!(i["alerts"][0]["labels"]["pool"], nasty);
    let md = app
        .client
        .get(format!(
            "{}/api/v1/incidents/INC-2026-0001/postmortem",
            app.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Raw values appear only inside code spans, where Markdown renders no HTML.
    for line in md.lines().filter(|l| l.contains("<script>")) {
        let code = line.find("``").unwrap_or(usize::MAX);
        assert!(
            code < line.find("<script>").unwrap(),
            "live HTML in the draft: {line}"
        );
    }
    for line in md.lines().filter(|l| l.starts_with('|')) {
        assert!(!line.contains('\n'));
    }
}

#[tokio::test]
async fn many_alerts_and_huge_values_within_the_body_limit_are_stored() {
    let app = spawn_app().await;
    let one: Value = serde_json::from_str(&payload(|_| {})).unwrap();
    let mut many = one.clone();
    let alerts: Vec<Value> = (0..5_000)
        .map(|n| {
            let mut a = one["alerts"][0].clone();
            a["fingerprint"] = format!("{n:016x}").into();
            a["labels"]["instance"] = format!("10.0.{}.{}:9100", n / 256, n % 256).into();
            a
        })
        .collect();
    many["alerts"] = alerts.into();
    let (status, body) = post_raw(&app, many.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alerts"], 5_000);
    let i = app.incident("INC-2026-0001").await;
    assert_eq!(
        i["alerts"].as_array().unwrap().len(),
        5_000,
        "one incident for one service"
    );

    let huge = payload(|v| {
        v["alerts"][0]["fingerprint"] = "ffffffffffffffff".into();
        v["alerts"][0]["labels"]["service"] = "big".into();
        v["alerts"][0]["annotations"]["description"] = "x".repeat(1 << 20).into();
    });
    assert_eq!(app.post_webhook(huge).await.status(), 200);
}

#[tokio::test]
async fn errors_the_router_itself_answers_are_json_too() {
    // Found by the `http` fuzz target: axum's own rejections were empty or plain text.
    let app = spawn_app().await;
    let cases = [
        (
            "GET",
            "/webhook/alertmanager",
            405,
            "GET is not allowed here",
        ),
        (
            "DELETE",
            "/api/v1/incidents",
            405,
            "DELETE is not allowed here",
        ),
        (
            "GET",
            "/api/v1/incidents?status=open&status=resolved",
            400,
            "query:",
        ),
        ("GET", "/api/v1/incidents?limit=1&limit=2", 400, "query:"),
        ("GET", "/api/v1/incidents/%FF", 400, "path:"),
        (
            "GET",
            "/api/v1/incidents/INC-2026-0001/charts/%C3%28.svg",
            400,
            "path:",
        ),
        ("POST", "/api/v1/incidents/%FF/ack", 400, "path:"),
        ("GET", "/nowhere", 404, "no such route"),
    ];
    for (method, path, status, message) in cases {
        let r = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let allow = r.headers().get("allow").cloned();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(message), "{method} {path}: {body}");
        if status == 405 {
            assert!(allow.is_some(), "{method} {path}: 405 without Allow");
        }
    }
}
