//! Slack delivery against a local fake Slack speaking the real API shapes:
//! the exact request sequence of an incident's thread, retries, permanent
//! errors, an outage across a restart, webhook mode, and the rendered messages.

mod fake;
mod scenario;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake::{FakeSlack, Recorded, Reply, TOKEN};
use incidentd::incident::Incident;
use incidentd::slack::client::DEFAULT_TIMEOUT;
use incidentd::slack::delivery::{Clock, Pacer};
use incidentd::slack::message::{event_message, resolve_summary, root_message};
use incidentd::slack::{
    ChannelRoutes, Delivered, DeliveryError, MessageSettings, Notifier, Progress, Retry, RootRef,
    Route, Secret, SlackClient, SlackError, SlackEvent, SlackState, StateError,
};
use serde_json::Value;

/// The job table's part, in memory: where each incident's root is.
#[derive(Default, Clone)]
struct MemState {
    roots: Arc<Mutex<HashMap<String, RootRef>>>,
}

impl SlackState for MemState {
    fn root(&self, incident_id: &str) -> Result<Option<RootRef>, StateError> {
        Ok(self.roots.lock().unwrap().get(incident_id).cloned())
    }
    fn set_root(&self, incident_id: &str, root: &RootRef) -> Result<(), StateError> {
        self.roots
            .lock()
            .unwrap()
            .insert(incident_id.to_string(), root.clone());
        Ok(())
    }
}

/// A clock that moves only when the pacer sleeps on it; it records the sleeps.
#[derive(Clone)]
struct FakeClock {
    now: Arc<Mutex<Instant>>,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl FakeClock {
    fn new() -> FakeClock {
        FakeClock {
            now: Arc::new(Mutex::new(Instant::now())),
            sleeps: Arc::default(),
        }
    }
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        self.sleeps.lock().unwrap().push(d);
        *self.now.lock().unwrap() += d;
        std::future::ready(())
    }
}

fn settings() -> MessageSettings {
    MessageSettings {
        timezone: chrono_tz::UTC,
        external_url: "http://incidentd.example.com:9097/".into(),
        ack_button: true,
    }
}

fn bot(fake: &FakeSlack, clock: &FakeClock, routes: ChannelRoutes) -> Notifier<FakeClock> {
    let client =
        SlackClient::bot(&fake.api_url(), Secret::new(TOKEN), DEFAULT_TIMEOUT).expect("client");
    Notifier::with_pacer(
        client,
        routes,
        settings(),
        Pacer::new(clock.clone(), Duration::from_secs(1)),
    )
}

async fn deliver(
    n: &Notifier<FakeClock>,
    state: &MemState,
    incident: &Incident,
    event: SlackEvent,
) -> Result<Delivered, DeliveryError> {
    n.deliver(
        state,
        incident,
        &event,
        &scenario::evidence(),
        &mut Progress::default(),
    )
    .await
}

/// `method channel [thread_ts|ts]` of each request, to compare sequences at a glance.
fn sequence(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let mut s = format!("{} {}", r.method, r.str("channel").unwrap_or("-"));
            if let Some(t) = r.str("thread_ts") {
                s.push_str(&format!(" thread_ts={t}"));
            }
            if r.method == "chat.update" {
                s.push_str(&format!(" ts={}", r.str("ts").unwrap_or("-")));
            }
            if r.status != 200 {
                s.push_str(&format!(" -> {}", r.status));
            }
            s
        })
        .collect()
}

fn block_texts(body: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(t)) = o.get("text") {
                    out.push(t.clone());
                }
                o.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&body["blocks"], &mut out);
    out.join("\n")
}

fn has_ack_button(body: &Value) -> bool {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["elements"].as_array().into_iter().flatten())
        .any(|e| e["action_id"] == "incidentd_ack")
}

const ROOT_TS: &str = "1700000000.000100";

#[tokio::test]
async fn an_incident_opening_getting_a_note_and_resolving_makes_one_thread_kept_current() {
    let fake = FakeSlack::start().await;
    let clock = FakeClock::new();
    let n = bot(&fake, &clock, ChannelRoutes::single("#incidents"));
    let state = MemState::default();

    let opened = deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .expect("open");
    assert_eq!(
        opened,
        Delivered::Root {
            root: RootRef {
                channel: "C0INCIDENTS".into(),
                ts: ROOT_TS.into()
            },
            reply_ts: None
        }
    );
    let note = SlackEvent::Note {
        by: "alice".into(),
        text: scenario::NOTE.into(),
    };
    deliver(&n, &state, &scenario::acknowledged_with_note(), note)
        .await
        .expect("note");
    deliver(&n, &state, &scenario::resolved(), SlackEvent::Resolved)
        .await
        .expect("resolve");

    let requests = fake.requests();
    assert_eq!(
        sequence(&requests),
        [
            "chat.postMessage #incidents",
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100",
            "chat.update C0INCIDENTS ts=1700000000.000100",
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100",
            "chat.update C0INCIDENTS ts=1700000000.000100",
        ]
    );
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert!(!r.str("text").unwrap_or("").is_empty(), "fallback text");
    }

    // Root: open, with the button; later updated to resolved, without it.
    let root = &requests[0].body;
    assert!(has_ack_button(root));
    assert!(block_texts(root).contains(":red_circle: Open"));
    let note_reply = block_texts(&requests[1].body);
    assert!(
        note_reply.contains(
            "Note from *alice*\nPool at 100% &amp; p99 &gt; 4s; restarting payment-service &lt;primary&gt;"
        ),
        "{note_reply}"
    );
    let acked_root = &requests[2].body;
    assert!(!has_ack_button(acked_root));
    assert!(block_texts(acked_root).contains(":large_yellow_circle: Acknowledged"));
    assert!(block_texts(acked_root).contains("*Acknowledged*\n2026-11-23 02:26:45 UTC by alice"));
    assert!(block_texts(acked_root).contains("*Alerts (3)*"));
    let summary = block_texts(&requests[3].body);
    for expected in [
        "INC-2026-0007 resolved* after 39s",
        "*TTD*\n6s",
        "*TTA*\n15s",
        "*TTR*\n33s",
        "• *DB connection pool in use (primary)*: 20% → 100%",
        "<http://incidentd.example.com:9097/incidents/INC-2026-0007|Post-mortem draft>",
    ] {
        assert!(summary.contains(expected), "{expected:?} not in {summary}");
    }
    let final_root = block_texts(&requests[4].body);
    assert!(final_root.contains(":white_check_mark: Resolved 2026-11-23 02:27:02 UTC"));
    assert!(!has_ack_button(&requests[4].body));

    // One message per second per channel: the root went to "#incidents", the
    // two replies to its ID one second apart (updates are not paced).
    assert_eq!(clock.sleeps(), [Duration::from_secs(1)]);
}

#[tokio::test]
async fn a_rate_limited_reply_is_retried_after_what_retry_after_says() {
    let fake = FakeSlack::start().await;
    let clock = FakeClock::new();
    let n = bot(&fake, &clock, ChannelRoutes::single("#incidents"));
    let state = MemState::default();
    deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .expect("open");

    let incident = scenario::acknowledged_with_note();
    let event = SlackEvent::Acknowledged { by: "alice".into() };
    let mut progress = Progress::default();
    fake.push_reply(Reply::RateLimited { retry_after: 7 });
    let err = n
        .deliver(&state, &incident, &event, &[], &mut progress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Slack(SlackError::RateLimited {
                retry_after: Some(d)
            }) if d == Duration::from_secs(7)
        ),
        "{err:?}"
    );
    assert_eq!(err.retry(), Retry::After(Duration::from_secs(7)));
    assert_eq!(err.retry_delay(3), Some(Duration::from_secs(7)));
    assert_eq!(progress.reply_ts, None, "nothing reached Slack");

    n.deliver(&state, &incident, &event, &[], &mut progress)
        .await
        .expect("retry");
    assert_eq!(
        sequence(&fake.requests()),
        [
            "chat.postMessage #incidents",
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100 -> 429",
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100",
            "chat.update C0INCIDENTS ts=1700000000.000100",
        ]
    );
}

#[tokio::test]
async fn a_failed_root_update_is_retried_alone_because_progress_remembers_the_reply() {
    let fake = FakeSlack::start().await;
    let clock = FakeClock::new();
    let n = bot(&fake, &clock, ChannelRoutes::single("#incidents"));
    let state = MemState::default();
    deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .expect("open");

    let incident = scenario::acknowledged_with_note();
    let event = SlackEvent::Acknowledged { by: "alice".into() };
    let mut progress = Progress::default();
    fake.push_reply(Reply::Pass);
    fake.push_reply(Reply::Unavailable);
    let err = n
        .deliver(&state, &incident, &event, &[], &mut progress)
        .await
        .unwrap_err();
    assert_eq!(err.retry(), Retry::Backoff);
    assert_eq!(progress.reply_ts.as_deref(), Some("1700000000.000200"));
    // The job table stores the progress with the job; it comes back on the retry.
    let stored = serde_json::to_string(&progress).unwrap();
    let mut progress: Progress = serde_json::from_str(&stored).unwrap();
    n.deliver(&state, &incident, &event, &[], &mut progress)
        .await
        .expect("retry");
    assert_eq!(
        sequence(&fake.requests()[1..]),
        [
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100",
            "chat.update C0INCIDENTS ts=1700000000.000100 -> 503",
            "chat.update C0INCIDENTS ts=1700000000.000100",
        ]
    );
}

#[tokio::test]
async fn an_unknown_channel_is_a_permanent_error_and_records_no_root() {
    let fake = FakeSlack::start().await;
    let n = bot(
        &fake,
        &FakeClock::new(),
        ChannelRoutes::single("#incidents"),
    );
    let state = MemState::default();
    fake.push_reply(Reply::ApiError("channel_not_found"));
    let err = deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Slack(SlackError::Api { method: "chat.postMessage", error }) if error == "channel_not_found"),
        "{err:?}"
    );
    assert_eq!(err.retry(), Retry::Never);
    assert_eq!(err.retry_delay(1), None);
    assert!(state.root("INC-2026-0007").unwrap().is_none());
}

#[tokio::test]
async fn a_wrong_token_is_invalid_auth_and_is_not_retried() {
    let fake = FakeSlack::start().await;
    let client = SlackClient::bot(&fake.api_url(), Secret::new("xoxb-wrong"), DEFAULT_TIMEOUT)
        .expect("client");
    let message = root_message(&scenario::opened(), &[], &settings());
    let err = client
        .post_message("#incidents", None, &message)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlackError::Api { error, .. } if error == "invalid_auth"),
        "{err:?}"
    );
    assert_eq!(err.retry(), Retry::Never);
    assert!(!err.to_string().contains("xoxb-wrong"));
}

#[tokio::test]
async fn slack_unreachable_is_a_network_error_worth_retrying() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = SlackClient::bot(
        &format!("http://127.0.0.1:{port}/api/"),
        Secret::new(TOKEN),
        Duration::from_secs(2),
    )
    .expect("client");
    let message = root_message(&scenario::opened(), &[], &settings());
    let err = client
        .post_message("#incidents", None, &message)
        .await
        .unwrap_err();
    assert!(matches!(err, SlackError::Network(_)), "{err:?}");
    assert_eq!(err.to_string(), "cannot reach Slack: connection refused");
    assert_eq!(err.retry(), Retry::Backoff);
}

/// What the job table does, in miniature: one incident's jobs in order, each
/// retried until it succeeds, progress saved with the job on every failure.
struct Job {
    incident: Incident,
    event: SlackEvent,
    progress: Progress,
    attempts: u32,
}

#[tokio::test]
async fn slack_down_through_open_and_resolve_then_a_restart_then_back_delivers_each_message_once_in_order(
) {
    let fake = FakeSlack::start().await;
    let state = MemState::default();
    let mut jobs: Vec<Job> = [
        (scenario::opened(), SlackEvent::Opened),
        (
            scenario::acknowledged_with_note(),
            SlackEvent::Note {
                by: "alice".into(),
                text: scenario::NOTE.into(),
            },
        ),
        (scenario::resolved(), SlackEvent::Resolved),
    ]
    .into_iter()
    .map(|(incident, event)| Job {
        incident,
        event,
        progress: Progress::default(),
        attempts: 0,
    })
    .collect();

    fake.set_down(true);
    {
        // First daemon: every try fails; the head job keeps being retried,
        // later jobs wait behind it.
        let n = bot(
            &fake,
            &FakeClock::new(),
            ChannelRoutes::single("#incidents"),
        );
        for _ in 0..3 {
            let job = &mut jobs[0];
            job.attempts += 1;
            let err = n
                .deliver(&state, &job.incident, &job.event, &[], &mut job.progress)
                .await
                .unwrap_err();
            assert_eq!(err.retry(), Retry::Backoff);
            assert!(err.retry_delay(job.attempts).is_some());
        }
    } // "restart": the notifier goes; state and jobs (the database) stay.

    fake.set_down(false);
    let n = bot(
        &fake,
        &FakeClock::new(),
        ChannelRoutes::single("#incidents"),
    );
    for job in &mut jobs {
        // Bounded: the outage is over, each job needs one try.
        let mut delivered = false;
        for _ in 0..3 {
            job.attempts += 1;
            if n.deliver(
                &state,
                &job.incident,
                &job.event,
                &scenario::evidence(),
                &mut job.progress,
            )
            .await
            .is_ok()
            {
                delivered = true;
                break;
            }
        }
        assert!(delivered, "{:?} not delivered", job.event);
    }

    let requests = fake.requests();
    assert_eq!(requests.iter().filter(|r| r.status == 503).count(), 3);
    assert_eq!(
        sequence(&fake.accepted()),
        [
            "chat.postMessage #incidents",
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100",
            "chat.update C0INCIDENTS ts=1700000000.000100",
            "chat.postMessage C0INCIDENTS thread_ts=1700000000.000100",
            "chat.update C0INCIDENTS ts=1700000000.000100",
        ]
    );
    let accepted = fake.accepted();
    assert!(block_texts(&accepted[1].body).contains("Note from *alice*"));
    assert!(block_texts(&accepted[3].body).contains("resolved* after 39s"));
}

#[tokio::test]
async fn a_root_posted_but_not_recorded_is_recorded_on_the_retry_not_posted_again() {
    /// A state whose first `set_root` fails, like a busy database.
    #[derive(Default)]
    struct Flaky {
        inner: MemState,
        failed: Mutex<bool>,
    }
    impl SlackState for Flaky {
        fn root(&self, id: &str) -> Result<Option<RootRef>, StateError> {
            self.inner.root(id)
        }
        fn set_root(&self, id: &str, root: &RootRef) -> Result<(), StateError> {
            let mut failed = self.failed.lock().unwrap();
            if !*failed {
                *failed = true;
                return Err(StateError("database is locked".into()));
            }
            self.inner.set_root(id, root)
        }
    }
    let fake = FakeSlack::start().await;
    let n = bot(
        &fake,
        &FakeClock::new(),
        ChannelRoutes::single("#incidents"),
    );
    let state = Flaky::default();
    let mut progress = Progress::default();
    let err = n
        .deliver(
            &state,
            &scenario::opened(),
            &SlackEvent::Opened,
            &[],
            &mut progress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::State(_)));
    assert_eq!(err.retry(), Retry::Backoff);
    n.deliver(
        &state,
        &scenario::opened(),
        &SlackEvent::Opened,
        &[],
        &mut progress,
    )
    .await
    .expect("retry");
    assert_eq!(
        state.root("INC-2026-0007").unwrap().map(|r| r.ts),
        Some(ROOT_TS.to_string())
    );
    // Opened again with a known root only updates it.
    assert_eq!(
        sequence(&fake.requests()),
        [
            "chat.postMessage #incidents",
            "chat.update C0INCIDENTS ts=1700000000.000100",
        ]
    );
}

#[tokio::test]
async fn the_root_goes_to_the_channel_of_the_first_matching_route() {
    let fake = FakeSlack::start().await;
    let routes = ChannelRoutes {
        default_channel: "#incidents".into(),
        routes: vec![
            Route {
                matchers: [("team".to_string(), "search".to_string())].into(),
                channel: "#search-incidents".into(),
            },
            Route {
                matchers: [("team".to_string(), "payments".to_string())].into(),
                channel: "#payments-incidents".into(),
            },
        ],
    };
    let n = bot(&fake, &FakeClock::new(), routes);
    let state = MemState::default();
    deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .expect("open");
    deliver(&n, &state, &scenario::resolved(), SlackEvent::Resolved)
        .await
        .expect("resolve");
    assert_eq!(
        sequence(&fake.requests()),
        [
            "chat.postMessage #payments-incidents",
            "chat.postMessage C0PAYMENTSINCIDENTS thread_ts=1700000000.000100",
            "chat.update C0PAYMENTSINCIDENTS ts=1700000000.000100",
        ]
    );
}

#[tokio::test]
async fn webhook_mode_posts_one_message_per_event_without_threads_or_buttons() {
    let fake = FakeSlack::start().await;
    let client =
        SlackClient::webhook(Secret::new(fake.webhook_url()), DEFAULT_TIMEOUT).expect("client");
    let clock = FakeClock::new();
    let n = Notifier::with_pacer(
        client,
        ChannelRoutes::single("#ignored"),
        settings(),
        Pacer::new(clock.clone(), Duration::from_secs(1)),
    );
    let state = MemState::default();
    for (incident, event) in [
        (scenario::opened(), SlackEvent::Opened),
        (
            scenario::acknowledged_with_note(),
            SlackEvent::Acknowledged { by: "alice".into() },
        ),
        (scenario::resolved(), SlackEvent::Resolved),
    ] {
        assert_eq!(
            deliver(&n, &state, &incident, event).await.expect("post"),
            Delivered::Webhook
        );
    }
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.method, "webhook");
        assert_eq!(r.status, 200);
        assert!(r.body.get("thread_ts").is_none() && r.body.get("channel").is_none());
        assert!(!has_ack_button(&r.body));
        assert!(r.authorization.is_none(), "the URL is the credential");
    }
    assert!(block_texts(&requests[1].body).starts_with("*INC-2026-0007* · "));
    assert!(state.root("INC-2026-0007").unwrap().is_none());
    assert_eq!(
        clock.sleeps(),
        [Duration::from_secs(1), Duration::from_secs(1)]
    );

    // Webhook errors: 404 channel_not_found is permanent, 429 honours Retry-After.
    fake.push_reply(Reply::ApiError("channel_not_found"));
    let err = deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .unwrap_err();
    assert_eq!(err.retry(), Retry::Never);
    fake.push_reply(Reply::RateLimited { retry_after: 3 });
    let err = deliver(&n, &state, &scenario::opened(), SlackEvent::Opened)
        .await
        .unwrap_err();
    assert_eq!(err.retry(), Retry::After(Duration::from_secs(3)));
    assert!(!format!("{err:?} {err}").contains("hooksecret"));
}

#[tokio::test]
async fn a_webhook_client_refuses_to_thread_or_update() {
    let client = SlackClient::webhook(
        Secret::new("https://hooks.slack.com/services/T/B/x"),
        DEFAULT_TIMEOUT,
    )
    .expect("client");
    let m = root_message(&scenario::opened(), &[], &settings());
    let err = client.post_message("#c", None, &m).await.unwrap_err();
    assert!(matches!(err, SlackError::Config(_)));
    assert_eq!(err.retry(), Retry::Never);
}

/// The rendered messages of the scenario, reviewed like code (docs/slack.md shows them).
#[test]
fn the_scenario_messages_render_as_reviewed() {
    let s = settings();
    let pretty = |m| serde_json::to_string_pretty(&m).unwrap();
    insta::assert_snapshot!(
        "root_open",
        pretty(root_message(&scenario::opened(), &scenario::evidence(), &s))
    );
    insta::assert_snapshot!(
        "reply_note",
        pretty(event_message(
            &scenario::acknowledged_with_note(),
            &SlackEvent::Note {
                by: "alice".into(),
                text: scenario::NOTE.into()
            },
            &[],
            &s
        ))
    );
    insta::assert_snapshot!(
        "resolve_summary",
        pretty(resolve_summary(
            &scenario::resolved(),
            &scenario::evidence(),
            &s
        ))
    );
    insta::assert_snapshot!(
        "root_resolved",
        pretty(root_message(
            &scenario::resolved(),
            &scenario::evidence(),
            &s
        ))
    ); // Raised by Grafana: its dashboard, panel and silence links, and a "Silence in Grafana"
       // button while it fires.
    insta::assert_snapshot!(
        "root_open_grafana",
        pretty(root_message(
            &scenario::opened_in_grafana(),
            &scenario::evidence(),
            &s
        ))
    );
}

#[test]
fn a_delivery_can_run_on_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let client = SlackClient::bot(
        "http://127.0.0.1:9/api/",
        Secret::new(TOKEN),
        DEFAULT_TIMEOUT,
    )
    .expect("client");
    let n = Notifier::new(client, ChannelRoutes::single("#incidents"), settings());
    let state = MemState::default();
    let incident = scenario::opened();
    let mut progress = Progress::default();
    let fut = n.deliver(&state, &incident, &SlackEvent::Opened, &[], &mut progress);
    assert_send(&fut);
}

#[test]
fn the_docs_show_the_root_message_the_code_produces() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/slack.md"))
        .expect("docs/slack.md");
    let json = serde_json::to_string_pretty(&root_message(
        &scenario::opened(),
        &scenario::evidence(),
        &settings(),
    ))
    .unwrap();
    assert!(
        docs.contains(&json),
        "docs/slack.md is out of date: paste tests/slack_fake/snapshots/slack_fake__root_open.snap"
    );
}
