//! The people's half of the timeline from Slack, end to end through the daemon: Events API
//! deliveries and `/incident` slash commands signed with the signing secret, shaped as
//! Slack's documentation shows them, against the fake Slack (which answers `users.info`).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use incidentd::config::{Config, Secret, SlackConfig};
use incidentd::incident::conversation::{Capture, CaptureRules};
use incidentd::incident::MilestoneKind;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::fake::{channel_id, FakeSlack, TOKEN};
use crate::helpers::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// 2026-11-23T02:26:00Z, as Slack writes times (`ts`).
const T0: i64 = 1795400760;

fn config(fake: &FakeSlack, capture: CaptureRules) -> Config {
    let mut config = Config::default();
    config.web.external_url = Some("http://incidentd.example.com:9097/".into());
    config.slack = Some(SlackConfig {
        api_url: fake.api_url(),
        bot_token: Some(Secret::new(TOKEN)),
        channel: "#incidents".into(),
        signing_secret: Some(Secret::new(SECRET)),
        webhook_url: None,
        routes: Vec::new(),
        capture,
    });
    config
}

fn rules(capture: Capture) -> CaptureRules {
    CaptureRules {
        capture,
        capture_reaction: "pushpin".into(),
        milestone_reactions: vec![
            (MilestoneKind::Triaged, "mag".into()),
            (MilestoneKind::Mitigated, "adhesive_bandage".into()),
        ],
    }
}

fn sign(body: &str, timestamp: i64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// POST a body signed as Slack signs it, `age` seconds ago, with `secret`.
async fn post_signed(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &str,
    age: i64,
    secret: &str,
    retry: Option<u32>,
) -> (u16, Value) {
    let timestamp = chrono::Utc::now().timestamp() - age;
    let mut request = app
        .client
        .post(format!("{}{path}", app.url))
        .header("Content-Type", content_type)
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header("X-Slack-Signature", sign(body, timestamp, secret));
    if let Some(n) = retry {
        request = request
            .header("X-Slack-Retry-Num", n.to_string())
            .header("X-Slack-Retry-Reason", "http_timeout");
    }
    let r = request.body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An Events API delivery, as Slack wraps every event.
fn envelope(event_id: &str, event: Value) -> String {
    json!({
        "token": "XXYYZZ", "team_id": "T0INCIDENTD", "api_app_id": "A0INCIDENTD",
        "event": event, "type": "event_callback", "event_id": event_id,
        "event_time": T0 + 60, "authorizations": [{"team_id": "T0INCIDENTD", "user_id": "U0BOT", "is_bot": true}],
        "is_ext_shared_channel": false, "event_context": "4-eyJldCI6Im1lc3NhZ2UifQ"
    })
    .to_string()
}

async fn deliver(app: &TestApp, event_id: &str, event: Value) -> u16 {
    let body = envelope(event_id, event);
    post_signed(
        app,
        "/slack/events",
        "application/json",
        &body,
        0,
        SECRET,
        None,
    )
    .await
    .0
}

/// The incident's thread as incidentd posted it: `(channel id, root ts)`.
struct Thread {
    channel: String,
    root: String,
}

impl Thread {
    fn ts(seconds: i64) -> String {
        format!("{}.000000", T0 + seconds)
    }

    /// A reply `seconds` after T0, as Slack delivers a `message` event in a thread.
    fn reply(&self, user: &str, seconds: i64, text: &str) -> Value {
        json!({
            "type": "message", "channel": self.channel, "user": user, "text": text,
            "ts": Self::ts(seconds), "thread_ts": self.root, "event_ts": Self::ts(seconds),
            "channel_type": "channel", "team": "T0INCIDENTD",
            "blocks": [{"type": "rich_text", "block_id": "b1", "elements": []}]
        })
    }

    fn edit(&self, user: &str, seconds: i64, old: &str, new: &str, at: i64) -> Value {
        json!({
            "type": "message", "subtype": "message_changed", "hidden": true,
            "channel": self.channel, "ts": Self::ts(at), "event_ts": Self::ts(at),
            "message": {"type": "message", "user": user, "text": new, "ts": Self::ts(seconds),
                        "thread_ts": self.root, "edited": {"user": user, "ts": Self::ts(at)}},
            "previous_message": {"type": "message", "user": user, "text": old,
                                 "ts": Self::ts(seconds), "thread_ts": self.root},
            "channel_type": "channel"
        })
    }

    fn deletion(&self, user: &str, seconds: i64, old: &str, at: i64) -> Value {
        json!({
            "type": "message", "subtype": "message_deleted", "hidden": true,
            "channel": self.channel, "ts": Self::ts(at), "event_ts": Self::ts(at),
            "deleted_ts": Self::ts(seconds),
            "previous_message": {"type": "message", "user": user, "text": old,
                                 "ts": Self::ts(seconds), "thread_ts": self.root},
            "channel_type": "channel"
        })
    }

    fn reaction(&self, user: &str, reaction: &str, seconds: i64, at: i64) -> Value {
        json!({
            "type": "reaction_added", "user": user, "reaction": reaction, "item_user": "U0ALICE",
            "item": {"type": "message", "channel": self.channel, "ts": Self::ts(seconds)},
            "event_ts": Self::ts(at)
        })
    }
}

/// Open an incident (the standard test payload) and wait for its Slack root.
async fn open(app: &TestApp, fake: &FakeSlack) -> Thread {
    app.post_webhook(payload(|_| {})).await;
    let root = wait_for(|| {
        fake.accepted()
            .iter()
            .find(|r| r.method == "chat.postMessage" && r.str("thread_ts").is_none())
            .and_then(|r| r.ts.clone())
    })
    .await;
    // incidentd records the root right after Slack accepted it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Thread {
        channel: channel_id("#incidents"),
        root,
    }
}

/// Poll (bounded: 15 s) until `f` gives something.
async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The incident's timeline rows of these kinds, once (bounded) there are `n` of them.
async fn rows(app: &TestApp, id: &str, kinds: &[&str], n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let i = app.incident(id).await;
        let got: Vec<Value> = i["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| kinds.contains(&e["kind"].as_str().unwrap()))
            .cloned()
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} rows {kinds:?}: {:#}",
            got.len(),
            i["timeline"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stored draft, once (bounded: 20 s) it contains `needle`: drafts are rendered by a job
/// a moment after each change.
async fn draft(app: &TestApp, id: &str, needle: &str) -> String {
    draft_where(app, id, |md| md.contains(needle)).await
}

async fn draft_where(app: &TestApp, id: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let md = app
            .get_text(&format!("/api/v1/incidents/{id}/postmortem"))
            .await;
        if ready(&md) {
            return md;
        }
        assert!(Instant::now() < deadline, "never ready:\n{md}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const PEOPLE: &[&str] = &[
    "slack_message",
    "slack_message_edited",
    "slack_message_deleted",
    "milestone_marked",
];

#[tokio::test]
async fn the_url_check_is_answered_with_its_challenge_once_signed() {
    let fake = FakeSlack::start().await;
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let body = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification",
                      "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    .to_string();
    let (status, answer) = post_signed(
        &app,
        "/slack/events",
        "application/json",
        &body,
        0,
        SECRET,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let (status, _) = post_signed(
        &app,
        "/slack/events",
        "application/json",
        &body,
        0,
        "wrong",
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn replies_are_captured_with_names_edits_append_deletions_remove_bots_are_ignored() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "Alice Martin", "alice");
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let t = open(&app, &fake).await;

    assert_eq!(
        deliver(&app, "Ev01", t.reply("U0ALICE", 10, "looking at the pool")).await,
        200
    );
    let got = rows(&app, "INC-2026-0001", PEOPLE, 1).await;
    assert_eq!(got[0]["actor"], "Alice Martin", "{got:#?}");
    assert_eq!(got[0]["text"], "looking at the pool");
    assert_eq!(
        got[0]["at"], "2026-11-23T02:26:10Z",
        "the message's own time"
    );

    // The same author again: the name comes from the cache (no new users.info; the first
    // lookup may have been retried when a loaded machine made it time out).
    let looked_up = fake.users_info_calls();
    assert!(looked_up >= 1, "{:#?}", fake.requests());
    deliver(
        &app,
        "Ev02",
        t.reply("U0ALICE", 20, "pool is at 100%, restarting"),
    )
    .await;
    rows(&app, "INC-2026-0001", PEOPLE, 2).await;
    assert_eq!(fake.users_info_calls(), looked_up, "{:#?}", fake.requests());

    // A bot's message (incidentd's own replies look like this) and a channel message: ignored.
    let mut bot = t.reply("U0BOT", 25, "INC-2026-0001 acknowledged");
    bot["bot_id"] = json!("B0INCIDENTD");
    bot["subtype"] = json!("bot_message");
    deliver(&app, "Ev03", bot).await;
    let mut channel_message = t.reply("U0ALICE", 26, "unrelated");
    channel_message.as_object_mut().unwrap().remove("thread_ts");
    deliver(&app, "Ev04", channel_message).await;

    // An edit: a new row with the new text; the first one stays.
    deliver(
        &app,
        "Ev05",
        t.edit(
            "U0ALICE",
            20,
            "pool is at 100%, restarting",
            "pool is at 100%, restarting the primary",
            40,
        ),
    )
    .await;
    let got = rows(&app, "INC-2026-0001", PEOPLE, 3).await;
    assert_eq!(got[2]["kind"], "slack_message_edited");
    assert_eq!(got[2]["text"], "pool is at 100%, restarting the primary");
    assert_eq!(got[2]["at"], "2026-11-23T02:26:40Z");
    assert_eq!(
        got[1]["text"], "pool is at 100%, restarting",
        "history kept"
    );

    // A deletion: recorded in the timeline, gone from the draft.
    deliver(
        &app,
        "Ev06",
        t.deletion("U0ALICE", 10, "looking at the pool", 50),
    )
    .await;
    let got = rows(&app, "INC-2026-0001", PEOPLE, 4).await;
    assert_eq!(
        got.len(),
        4,
        "the bot's and the channel's messages are not here: {got:#?}"
    );
    assert_eq!(got[3]["kind"], "slack_message_deleted");
    assert_eq!(got[3]["actor"], "Alice Martin");

    let md = draft_where(&app, "INC-2026-0001", |md| {
        md.contains("restarting the primary (in the Slack thread, edited)")
            && !md.contains("looking at the pool")
    })
    .await;
    let timeline = &md[md.find("## Timeline").unwrap()..];
    let timeline = &timeline[..timeline.find("\n---").unwrap()];
    assert!(
        timeline.contains("pool is at 100%, restarting the primary (in the Slack thread, edited)"),
        "{timeline}"
    );
    assert!(
        !timeline.contains("restarting |"),
        "the old text is not shown: {timeline}"
    );
    assert!(
        !timeline.contains("looking at the pool"),
        "deleted: {timeline}"
    );
    assert!(!timeline.contains("unrelated"), "{timeline}");
    assert!(
        !timeline.contains("what people saw and did"),
        "people's rows were captured, so no TODO row asks for them: {timeline}"
    );
    let communication = &md[md.find("## Communication").unwrap()..];
    assert!(
        communication.contains("Alice Martin (1 reply in the thread"),
        "{communication}"
    );
}

#[tokio::test]
async fn mentions_read_with_names_in_replies_and_edits() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "Alice Martin", "alice");
    fake.add_user("U0BOB", "Bob Chen", "bob");
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let t = open(&app, &fake).await;
    deliver(
        &app,
        "Ev0M1",
        t.reply(
            "U0BOB",
            10,
            "<@U0ALICE> can you look at <@U0ALICE|alice>'s dashboard?",
        ),
    )
    .await;
    let got = rows(&app, "INC-2026-0001", PEOPLE, 1).await;
    assert_eq!(got[0]["actor"], "Bob Chen");
    assert_eq!(
        got[0]["text"], "@Alice Martin can you look at @alice's dashboard?",
        "{got:#?}"
    );
    deliver(
        &app,
        "Ev0M2",
        t.edit(
            "U0BOB",
            10,
            "<@U0ALICE> can you look at <@U0ALICE|alice>'s dashboard?",
            "<@U0ALICE> never mind, <@U0NOBODY> has it",
            30,
        ),
    )
    .await;
    let got = rows(&app, "INC-2026-0001", PEOPLE, 2).await;
    // A user Slack does not know keeps the id.
    assert_eq!(got[1]["text"], "@Alice Martin never mind, @U0NOBODY has it");
}

#[tokio::test]
async fn a_retried_delivery_is_one_entry_and_a_refused_one_stores_nothing() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0BOB", "Bob Chen", "bob");
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let t = open(&app, &fake).await;
    let body = envelope("Ev0RETRY", t.reply("U0BOB", 12, "checking the dashboards"));

    // Bad signatures and a replay older than 5 minutes: 401, nothing kept (not even the
    // event id: the genuine delivery below is still taken).
    for (secret, age) in [("not-the-secret", 0), (SECRET, 301), (SECRET, -400)] {
        let (status, _) = post_signed(
            &app,
            "/slack/events",
            "application/json",
            &body,
            age,
            secret,
            None,
        )
        .await;
        assert_eq!(status, 401, "secret {secret}, {age}s old");
    }
    let unsigned = app
        .client
        .post(format!("{}/slack/events", app.url))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let i = app.incident("INC-2026-0001").await;
    assert!(
        !i["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "slack_message"),
        "{i:#}"
    );

    // Delivered, then delivered again by Slack's retry: one row.
    for retry in [None, Some(1), Some(2)] {
        let (status, _) = post_signed(
            &app,
            "/slack/events",
            "application/json",
            &body,
            0,
            SECRET,
            retry,
        )
        .await;
        assert_eq!(status, 200);
    }
    rows(&app, "INC-2026-0001", PEOPLE, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = rows(&app, "INC-2026-0001", PEOPLE, 1).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["actor"], "Bob Chen");
}

#[tokio::test]
async fn marked_only_keeps_pinned_and_milestone_replies_and_milestones_count() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "Alice Martin", "alice");
    fake.add_user("U0BOB", "Bob Chen", "bob");
    let app = spawn_app_with(config(&fake, rules(Capture::Marked))).await;
    let t = open(&app, &fake).await;

    deliver(&app, "Ev11", t.reply("U0BOB", 5, "anyone else paged?")).await;
    deliver(
        &app,
        "Ev12",
        t.reply("U0ALICE", 8, "pool exhausted on the primary"),
    )
    .await;
    deliver(
        &app,
        "Ev13",
        t.reply(
            "U0BOB",
            15,
            "Root cause: nightly report query holds 40 connections",
        ),
    )
    .await;
    deliver(
        &app,
        "Ev14",
        t.reply("U0ALICE", 20, "killed the report query"),
    )
    .await;
    // Pinned: captured; a milestone reaction: captured and marked.
    deliver(&app, "Ev15", t.reaction("U0BOB", "pushpin", 8, 30)).await;
    deliver(
        &app,
        "Ev16",
        t.reaction("U0BOB", "adhesive_bandage", 20, 31),
    )
    .await;
    deliver(&app, "Ev17", t.reaction("U0BOB", "mag", 5, 32)).await;

    let got = rows(&app, "INC-2026-0001", PEOPLE, 6).await;
    let texts: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    assert!(
        texts.contains(&("slack_message", "pool exhausted on the primary")),
        "{texts:#?}"
    );
    assert!(texts.contains(&(
        "slack_message",
        "Root cause: nightly report query holds 40 connections"
    )));
    assert!(texts.contains(&("slack_message", "killed the report query")));
    assert!(texts.contains(&(
        "milestone_marked",
        "mitigated: killed the report query (marked :adhesive_bandage: by Bob Chen)"
    )));
    // The unmarked chatter is only in because a milestone reaction (triage) marked it.
    assert!(texts.contains(&("slack_message", "anyone else paged?")));

    let i = app.incident("INC-2026-0001").await;
    let m = &i["milestones"];
    assert_eq!(m["identified_by"], "Bob Chen", "{m:#}");
    assert_eq!(m["identified_at"], "2026-11-23T02:26:15Z");
    assert_eq!(m["mitigated_by"], "Alice Martin");
    assert_eq!(m["mitigated_at"], "2026-11-23T02:26:20Z");
    assert_eq!(m["triaged_at"], "2026-11-23T02:26:05Z");
    assert!(m["time_to_mitigate_seconds"].is_number(), "{m:#}");
    draft(
        &app,
        "INC-2026-0001",
        "mitigated: killed the report query (in the Slack thread)",
    )
    .await;
}

#[tokio::test]
async fn marked_only_leaves_an_unmarked_thread_out() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0BOB", "Bob Chen", "bob");
    let app = spawn_app_with(config(&fake, rules(Capture::Marked))).await;
    let t = open(&app, &fake).await;
    deliver(&app, "Ev21", t.reply("U0BOB", 5, "anyone else paged?")).await;
    deliver(&app, "Ev22", t.reaction("U0BOB", "eyes", 5, 6)).await;
    deliver(
        &app,
        "Ev23",
        t.reply("U0BOB", 9, "mitigated: failed over to the replica"),
    )
    .await;
    let got = rows(&app, "INC-2026-0001", PEOPLE, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got2 = rows(&app, "INC-2026-0001", PEOPLE, 1).await;
    assert_eq!(got, got2);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["text"], "mitigated: failed over to the replica");
}

fn command(t: &Thread, user: &str, name: &str, text: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0INCIDENTD"),
        ("team_domain", "example"),
        ("channel_id", t.channel.as_str()),
        ("channel_name", "incidents"),
        ("user_id", user),
        ("user_name", name),
        ("command", "/incident"),
        ("text", text),
        ("api_app_id", "A0INCIDENTD"),
        ("response_url", "https://hooks.slack.com/commands/T0/1/abc"),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
    .unwrap()
}

async fn slash(app: &TestApp, t: &Thread, user: &str, text: &str) -> (u16, Value) {
    let body = command(t, user, "alice", text);
    post_signed(
        app,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
        0,
        SECRET,
        None,
    )
    .await
}

#[tokio::test]
async fn slash_commands_ack_note_resolve_and_status_the_channels_incident() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "Alice Martin", "alice");
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let t = open(&app, &fake).await;

    // Refused: a bad signature and a replay.
    let body = command(&t, "U0ALICE", "alice", "ack");
    for (secret, age) in [("nope", 0), (SECRET, 360)] {
        let (status, _) = post_signed(
            &app,
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
            age,
            secret,
            None,
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(app.incident("INC-2026-0001").await["status"], "open");

    let (status, answer) = slash(&app, &t, "U0ALICE", "status").await;
    assert_eq!(status, 200);
    assert_eq!(answer["response_type"], "ephemeral");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("INC-2026-0001") && text.contains("open"),
        "{text}"
    );
    assert!(text.contains("not acknowledged"), "{text}");

    let (_, answer) = slash(&app, &t, "U0ALICE", "ack").await;
    assert!(
        answer["text"].as_str().unwrap().contains("Acknowledged"),
        "{answer}"
    );
    let i = app.incident("INC-2026-0001").await;
    assert_eq!(i["status"], "acknowledged");
    assert_eq!(
        i["acknowledged_by"], "Alice Martin",
        "the name from users.info"
    );

    let (_, answer) = slash(
        &app,
        &t,
        "U0ALICE",
        "note triage: pool exhausted on the primary",
    )
    .await;
    assert!(
        answer["text"].as_str().unwrap().contains("Noted"),
        "{answer}"
    );
    let i = app.incident("INC-2026-0001").await;
    assert_eq!(i["milestones"]["triaged_by"], "Alice Martin");

    let (_, answer) = slash(&app, &t, "U0ALICE", "ack").await;
    assert!(
        answer["text"].as_str().unwrap().contains("already"),
        "a conflict, told: {answer}"
    );

    let (_, answer) = slash(&app, &t, "U0ALICE", "resolve").await;
    assert!(
        answer["text"].as_str().unwrap().contains("Resolved"),
        "{answer}"
    );
    assert_eq!(app.incident("INC-2026-0001").await["status"], "resolved");

    // Each action was told in the incident's thread by incidentd's Slack job.
    let replies = wait_for(|| {
        let r: Vec<String> = fake
            .accepted()
            .iter()
            .filter(|r| r.method == "chat.postMessage" && r.str("thread_ts") == Some(&t.root))
            .map(|r| r.str("text").unwrap_or_default().to_string())
            .collect();
        (r.len() >= 3).then_some(r)
    })
    .await;
    assert!(
        replies.iter().any(|r| r.contains("Alice Martin")),
        "{replies:#?}"
    );

    // Nothing open in the channel any more: the answer says how to name one.
    let (_, answer) = slash(&app, &t, "U0ALICE", "status").await;
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("No unresolved incident"),
        "{answer}"
    );
    let (_, answer) = slash(&app, &t, "U0ALICE", "status INC-2026-0001").await;
    assert!(
        answer["text"].as_str().unwrap().contains("resolved"),
        "{answer}"
    );
    let (_, answer) = slash(&app, &t, "U0ALICE", "dance").await;
    assert!(
        answer["text"].as_str().unwrap().contains("Usage"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_command_in_a_channel_with_two_open_incidents_lists_them() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "Alice Martin", "alice");
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let t = open(&app, &fake).await;
    app.post_webhook(payload(|v| {
        v["alerts"][0]["labels"]["service"] = "search".into();
        v["alerts"][0]["fingerprint"] = "00000000000search".into();
    }))
    .await;
    wait_for(|| {
        (fake
            .accepted()
            .iter()
            .filter(|r| r.method == "chat.postMessage" && r.str("thread_ts").is_none())
            .count()
            == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, answer) = slash(&app, &t, "U0ALICE", "ack").await;
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("INC-2026-0001") && text.contains("INC-2026-0002"),
        "{text}"
    );
    assert_eq!(app.incident("INC-2026-0001").await["status"], "open");
    let (_, answer) = slash(&app, &t, "U0ALICE", "ack INC-2026-0002").await;
    assert!(
        answer["text"].as_str().unwrap().contains("Acknowledged"),
        "{answer}"
    );
    assert_eq!(
        app.incident("INC-2026-0002").await["status"],
        "acknowledged"
    );
}

/// The recorded scenario, with the conversation people had in its thread meanwhile: the
/// draft's timeline reads as one story, machine and people in time order, with names.
#[tokio::test]
async fn the_scenario_with_its_conversation_makes_one_timeline() {
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "Alice Martin", "alice");
    fake.add_user("U0BOB", "Bob Chen", "bob");
    fake.add_user("U0CAROL", "Carol Diaz", "carol");
    let app = spawn_app_with(config(&fake, rules(Capture::All))).await;
    let hooks = recorded_webhooks();
    for (_, at, body) in &hooks[..3] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    let root = wait_for(|| {
        fake.accepted()
            .iter()
            .find(|r| r.method == "chat.postMessage" && r.str("thread_ts").is_none())
            .and_then(|r| r.ts.clone())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Thread {
        channel: channel_id("#incidents"),
        root,
    };
    let at = |s: i64| chrono::DateTime::from_timestamp(T0 + s, 0).unwrap();

    deliver(
        &app,
        "EvS1",
        t.reply("U0BOB", 33, "looking — payment-service p99 is over 4s"),
    )
    .await;
    app.set_time(at(36));
    slash(&app, &t, "U0ALICE", "ack").await;
    deliver(
        &app,
        "EvS2",
        t.reply(
            "U0ALICE",
            38,
            "triage: connection pool on the payments primary is exhausted, checkout is failing",
        ),
    )
    .await;
    deliver(
        &app,
        "EvS3",
        t.reply(
            "U0BOB",
            42,
            "root cause: a long-running report query holds connections",
        ),
    )
    .await;
    deliver(
        &app,
        "EvS4",
        t.reply("U0CAROL", 44, "is this yesterday's deploy?"),
    )
    .await;
    deliver(
        &app,
        "EvS5",
        t.edit(
            "U0BOB",
            42,
            "root cause: a long-running report query holds connections",
            "root cause: the nightly report query holds 40 of 50 connections",
            47,
        ),
    )
    .await;
    deliver(
        &app,
        "EvS6",
        t.reply("U0ALICE", 48, "killed the report query, pool draining"),
    )
    .await;
    deliver(
        &app,
        "EvS7",
        t.deletion("U0CAROL", 44, "is this yesterday's deploy?", 50),
    )
    .await;
    deliver(
        &app,
        "EvS8",
        t.reaction("U0BOB", "adhesive_bandage", 48, 51),
    )
    .await;
    for (_, at, body) in &hooks[3..] {
        app.set_time(*at);
        app.post_webhook(body.clone()).await;
    }
    app.set_time(at(70));
    slash(
        &app,
        &t,
        "U0BOB",
        "note INC-2026-0001 verified: error rate and latency back to baseline",
    )
    .await;
    deliver(
        &app,
        "EvS9",
        t.reply(
            "U0ALICE",
            75,
            "closing; moving the report to the replica is the follow-up",
        ),
    )
    .await;
    rows(&app, "INC-2026-0001", PEOPLE, 9).await;

    draft(&app, "INC-2026-0001", "closing; moving the report").await;
    let md = draft(&app, "INC-2026-0001", "verified: error rate").await;
    println!("{md}");
    let start = md.find("## Timeline").unwrap();
    let timeline = &md[start..start + md[start..].find("\n---").unwrap()];
    let rows: Vec<&str> = timeline
        .lines()
        .filter(|l| l.starts_with("| 2026"))
        .collect();
    let order: Vec<usize> = [
        "Bob Chen |",
        "Alice Martin |", // the acknowledgement
        "triage: connection pool",
        "root cause: the nightly report query holds 40 of 50 connections (in the Slack thread, edited)",
        "mitigated: killed the report query",
        "verified: error rate",
        "closing; moving the report",
    ]
    .iter()
    .map(|needle| {
        rows.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle:?}:\n{timeline}"))
    })
    .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "in time order:\n{timeline}");
    // Machine rows interleave: an alert resolves between the mitigation and the verification.
    let resolved = rows
        .iter()
        .position(|r| r.contains("resolved") && r.contains("Prometheus"))
        .unwrap_or_else(|| panic!("an alert resolved row:\n{timeline}"));
    assert!(order[4] < resolved && resolved < order[6], "{timeline}");
    assert!(
        !timeline.contains("yesterday's deploy"),
        "deleted:\n{timeline}"
    );
    assert!(!timeline.contains("what people saw and did"), "{timeline}");
    let communication = &md[md.find("## Communication").unwrap()..];
    for name in [
        "Alice Martin (acknowledged, 3 replies",
        "Bob Chen (1 note, 2 replies",
    ] {
        assert!(communication.contains(name), "{name}");
    }
    assert!(
        !communication.contains("Carol Diaz"),
        "her one reply was deleted"
    );
    // What people said fills the root cause and the fix, for a person to confirm.
    assert!(
        md.contains(
            "**Root cause:** as said during the incident: \"the nightly report query holds 40 of 50 connections\" (Bob Chen, 2026-11-23 02:26:42 UTC)"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "**Immediate fix:** as said during the incident: \"killed the report query, pool draining\" (Alice Martin, 2026-11-23 02:26:48 UTC)"
        ),
        "{md}"
    );
}
