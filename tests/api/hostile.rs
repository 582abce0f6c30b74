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
        .get_text("/api/v1/incidents/INC-2026-0001/postmortem")
        .await;
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

    // A 1 MiB label value, and a 64 KiB value of the label that decides the incident.
    let key = "k".repeat(64 << 10);
    let huge_labels = payload(|v| {
        v["alerts"][0]["fingerprint"] = "eeeeeeeeeeeeeeee".into();
        v["alerts"][0]["labels"]["service"] = key.clone().into();
        v["alerts"][0]["labels"]["pool"] = "p".repeat(1 << 20).into();
    });
    assert_eq!(app.post_webhook(huge_labels).await.status(), 200);
    let list = app.incidents().await;
    let stored = list
        .iter()
        .find(|i| i["service"].as_str() == Some(key.as_str()))
        .expect("the incident of the long key");
    let i = app.incident(stored["id"].as_str().unwrap()).await;
    assert_eq!(
        i["alerts"][0]["labels"]["pool"].as_str().map(str::len),
        Some(1 << 20),
        "stored whole"
    );
}

/// A config whose HTTP deadlines are short enough to test.
fn short_deadlines() -> incidentd::config::Config {
    let mut config = incidentd::config::Config::default();
    config.web.read_header_timeout = std::time::Duration::from_secs(1);
    config.web.request_timeout = std::time::Duration::from_secs(1);
    config
}

/// Reads from `stream` until the server closes it or answers; what it read and how long it
/// took. Bounded: gives up after 10 s.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> (Vec<u8>, std::time::Duration) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let remaining = std::time::Duration::from_secs(10).saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
    (got, started.elapsed())
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected_at_the_header_deadline() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(short_deadlines()).await;
    let addr = app.url.trim_start_matches("http://").to_string();

    // Slowloris: a request head that never ends, one header every 200 ms.
    let mut trickler = tokio::net::TcpStream::connect(&addr).await.unwrap();
    trickler
        .write_all(b"POST /webhook/alertmanager HTTP/1.1\r\nHost: incidentd\r\n")
        .await
        .unwrap();
    let trickling = tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let header = format!("X-Trickle-{i}: x\r\n");
            if trickler.write_all(header.as_bytes()).await.is_err() {
                return (i, trickler);
            }
        }
        (50, trickler)
    });
    // A client that connects and says nothing at all.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();

    // Meanwhile an honest webhook is served at once.
    assert_eq!(app.post_webhook(payload(|_| {})).await.status(), 200);

    let (got, after) = read_until_closed(&mut silent).await;
    assert!(got.is_empty(), "no answer to a request never sent: {got:?}");
    assert!(
        after < std::time::Duration::from_secs(4),
        "the silent connection was closed after {after:?}, not at the 1 s deadline"
    );
    let (sent, mut trickler) = trickling.await.unwrap();
    let (got, _) = read_until_closed(&mut trickler).await;
    assert!(
        sent < 20,
        "the trickling client could still send headers after {sent} × 200 ms; answer {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        app.incidents().await.len(),
        1,
        "only the honest webhook was stored"
    );
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_at_the_request_deadline_and_nothing_is_stored() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(short_deadlines()).await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let body = payload(|_| {});
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nHost: incidentd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickling = tokio::spawn(async move {
        // Ten bytes every 200 ms: the whole body would take minutes.
        for chunk in body.as_bytes().chunks(10).take(100) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "answered after {:?}, not at the 1 s deadline",
        started.elapsed()
    );
    trickling.abort();
    assert!(app.incidents().await.is_empty());
    assert_eq!(stored_notifications(app.dir.path()), 0);
}

#[tokio::test]
async fn a_payload_of_100_000_alerts_is_refused_by_the_default_limit_and_stored_whole_under_a_larger_one(
) {
    let one: Value = serde_json::from_str(&payload(|_| {})).unwrap();
    let mut many = one.clone();
    let alerts: Vec<Value> = (0..100_000)
        .map(|n| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "NodeDown", "service": "fleet", "instance": format!("10.{}.{}.{}:9100", n / 65536, n / 256 % 256, n % 256)},
                "annotations": {},
                "startsAt": "2026-11-23T14:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": format!("{n:016x}"),
            })
        })
        .collect();
    many["alerts"] = alerts.into();
    let body = many.to_string().into_bytes();
    assert!(body.len() > incidentd::config::DEFAULT_MAX_BODY_BYTES);

    let app = spawn_app().await;
    let (status, answer) = post_raw(&app, body.clone()).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("web.max_body_bytes"));
    assert!(app.incidents().await.is_empty());

    let mut config = incidentd::config::Config::default();
    config.web.max_body_bytes = 64 << 20;
    // Storing 100,000 alerts in a debug build on a loaded CI machine can outlast the default
    // request timeout; the timeout is not what this test is about.
    config.web.request_timeout = std::time::Duration::from_secs(600);
    let app = spawn_app_with(config).await;
    let started = std::time::Instant::now();
    let (status, answer) = post_raw(&app, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alerts"], 100_000);
    eprintln!("100,000 alerts stored in {:?}", started.elapsed());
    // Counted in the database: serving a 100,000-alert incident as JSON is another test.
    let conn = rusqlite::Connection::open(app.dir.path().join("data/incidentd.db")).unwrap();
    let stored: (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT incident_id) FROM occurrences",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored, (100_000, 1), "one incident of 100,000 alerts");
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
