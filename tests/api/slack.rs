//! Slack end to end through the daemon: a fake Slack speaking the real API shapes.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use incidentd::config::{Config, Secret, SlackConfig};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::fake::{FakeSlack, Recorded, TOKEN};
use crate::helpers::*;

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn slack_config(fake: &FakeSlack) -> Config {
    let mut config = Config::default();
    config.web.external_url = Some("http://incidentd.example.com:9097/".into());
    config.slack = Some(SlackConfig {
        api_url: fake.api_url(),
        bot_token: Some(Secret::new(TOKEN)),
        channel: "#incidents".into(),
        signing_secret: Some(Secret::new(SIGNING_SECRET)),
        webhook_url: None,
        routes: Vec::new(),
        capture: Default::default(),
    });
    config
}

/// Wait (bounded) until Slack accepted `n` requests.
async fn wait_accepted(fake: &FakeSlack, n: usize, within: Duration) -> Vec<Recorded> {
    let deadline = Instant::now() + within;
    loop {
        let got = fake.accepted();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "Slack got {} of {n} messages: {got:#?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(method, thread_ts is the root, text start)` of each accepted request.
fn shape(requests: &[Recorded]) -> Vec<(String, bool)> {
    let root = requests[0].ts.clone().unwrap();
    requests
        .iter()
        .map(|r| {
            let threaded =
                r.str("thread_ts") == Some(root.as_str()) || r.str("ts") == Some(root.as_str());
            (r.method.clone(), threaded)
        })
        .collect()
}

#[tokio::test]
async fn an_incident_opens_a_thread_that_gets_replies_updates_and_a_resolve_summary() {
    let fake = FakeSlack::start().await;
    let app = spawn_app_with(slack_config(&fake)).await;
    let hooks = recorded_webhooks();
    for (_, at, body) in &hooks[..3] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    // Root, then per joined alert: a reply and an update of the root.
    let got = wait_accepted(&fake, 5, Duration::from_secs(20)).await;
    assert_eq!(got[0].method, "chat.postMessage");
    assert_eq!(got[0].str("thread_ts"), None, "the root is not in a thread");
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let root_text = got[0].str("text").unwrap();
    assert!(root_text.contains("INC-2026-0001"), "{root_text}");

    for (_, at, body) in &hooks[3..] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    let got = wait_accepted(&fake, 7, Duration::from_secs(20)).await;
    let shape = shape(&got);
    assert_eq!(
        shape,
        [
            ("chat.postMessage".to_string(), false),
            ("chat.postMessage".to_string(), true),
            ("chat.update".to_string(), true),
            ("chat.postMessage".to_string(), true),
            ("chat.update".to_string(), true),
            ("chat.postMessage".to_string(), true),
            ("chat.update".to_string(), true),
        ],
        "{got:#?}"
    );
    let summary = got[5].str("text").unwrap();
    assert!(summary.to_lowercase().contains("resolved"), "{summary}");
    // Nothing more: the other alert resolutions say nothing on their own.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.accepted().len(), 7);

    // The draft's Communication section names the thread and what incidentd posted there.
    let draft = app
        .get_text("/api/v1/incidents/INC-2026-0001/postmortem")
        .await;
    let communication = &draft[draft.find("## Communication").expect("section")..];
    let communication = &communication[..communication.find("\n## Action").unwrap()];
    let root_ts = got[0].ts.clone().unwrap();
    for expected in [
        format!("thread `{root_ts}`"),
        "Incident posted (root message of the thread)".to_string(),
        "An alert joined the incident".to_string(),
        "Resolve summary".to_string(),
    ] {
        assert!(
            communication.contains(&expected),
            "{expected}:\n{communication}"
        );
    }
}

fn sign(body: &str, timestamp: i64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn interaction_body(incident: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U024BE7LH", "username": "carol", "name": "carol"},
        "actions": [{"action_id": "incidentd_ack", "value": incident, "type": "button"}],
        "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "channel": {"id": "C0INCIDENTS"},
        "message": {"ts": "1700000000.000100"}
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

async fn click(app: &TestApp, body: &str, timestamp: i64, signature: &str) -> u16 {
    app.client
        .post(format!("{}/slack/interactions", app.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header("X-Slack-Signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_acknowledge_button_needs_a_valid_signature() {
    let fake = FakeSlack::start().await;
    let app = spawn_app_with(slack_config(&fake)).await;
    app.post_webhook(payload(|_| {})).await;
    let body = interaction_body("INC-2026-0001");
    let now = chrono::Utc::now().timestamp();

    assert_eq!(
        click(&app, &body, now, &sign(&body, now, "wrong-secret")).await,
        401
    );
    assert_eq!(
        click(
            &app,
            &body,
            now - 600,
            &sign(&body, now - 600, SIGNING_SECRET)
        )
        .await,
        401
    );
    let tampered = interaction_body("INC-2026-0002");
    assert_eq!(
        click(&app, &tampered, now, &sign(&body, now, SIGNING_SECRET)).await,
        401
    );
    assert_eq!(
        app.incident("INC-2026-0001").await["status"],
        "open",
        "nothing changed"
    );

    assert_eq!(
        click(&app, &body, now, &sign(&body, now, SIGNING_SECRET)).await,
        200
    );
    let i = app.incident("INC-2026-0001").await;
    assert_eq!(
        (i["status"].as_str(), i["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("carol"))
    );
}

#[tokio::test]
async fn slack_down_through_open_resolve_and_a_restart_still_gets_every_message_once_in_order() {
    let fake = FakeSlack::start().await;
    fake.set_down(true);
    let app = spawn_app_with(slack_config(&fake)).await;
    for (_, at, body) in recorded_webhooks() {
        app.set_time(at);
        app.post_webhook(body).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(fake.accepted().is_empty());
    let dir = app.stop().await;
    let app = spawn_app_in(slack_config(&fake), dir).await;
    fake.set_down(false);
    // Opened, two alerts joined, resolved: root + 3 × (reply, update).
    let got = wait_accepted(&fake, 7, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.accepted().len(), 7, "each message once");
    assert_eq!(got[0].str("thread_ts"), None);
    let replies: Vec<&Value> = got[1..]
        .iter()
        .filter(|r| r.method == "chat.postMessage")
        .map(|r| &r.body)
        .collect();
    assert_eq!(replies.len(), 3);
    assert!(
        replies[2]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("resolved"),
        "resolve summary last"
    );
    drop(app);
}

#[tokio::test]
async fn incidents_go_to_the_channel_their_labels_route_them_to() {
    let fake = FakeSlack::start().await;
    let mut config = slack_config(&fake);
    if let Some(slack) = config.slack.as_mut() {
        slack.routes = vec![incidentd::config::SlackRoute {
            matchers: [("team".to_string(), "payments".to_string())].into(),
            channel: "#payments-incidents".into(),
        }];
    }
    let app = spawn_app_with(config).await;
    app.post_webhook(payload(|_| {})).await; // team="payments"
    app.post_webhook(payload(|v| {
        v["alerts"][0]["labels"]["team"] = "search".into();
        v["alerts"][0]["labels"]["service"] = "search".into();
        v["alerts"][0]["fingerprint"] = "00000000000search".into();
    }))
    .await;
    let got = wait_accepted(&fake, 2, Duration::from_secs(20)).await;
    let mut channels: Vec<&str> = got.iter().map(|r| r.str("channel").unwrap()).collect();
    channels.sort();
    assert_eq!(channels, ["#incidents", "#payments-incidents"], "{got:#?}");
}
