//! Delivering one incident's events to Slack: the [`Notifier`] posts the root
//! message on first need, answers in its thread, keeps the root current with
//! `chat.update`, and paces messages to about one per second per channel.
//!
//! Durability and ordering belong to the caller's job table: it stores each
//! [`SlackEvent`] with a [`Progress`], runs one incident's jobs strictly in order
//! (the next only once the previous succeeded or failed permanently), and on an
//! error saves the `Progress` and retries as [`DeliveryError::retry`] says. The
//! `Progress` records what already reached Slack, so that a retry does not post
//! the same reply twice.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{Mode, Posted, Retry, SlackClient, SlackError};
use super::message::{
    event_message, root_message, standalone_message, EvidenceFigure, MessageSettings, SlackEvent,
};
use crate::incident::Incident;

/// The root message of an incident's thread.
pub type RootRef = Posted;

/// A failure of the caller's storage, carried through [`DeliveryError::State`].
#[derive(Debug, thiserror::Error)]
#[error("Slack delivery state: {0}")]
pub struct StateError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Where each incident's root message is, kept by the caller (the job table's
/// database). Both calls are short and synchronous; `Sync` so that a delivery
/// can run on any worker task.
pub trait SlackState: Send + Sync {
    /// The incident's root message, if one was posted.
    fn root(&self, incident_id: &str) -> Result<Option<RootRef>, StateError>;
    /// Records the incident's root message, right after it was posted.
    fn set_root(&self, incident_id: &str, root: &RootRef) -> Result<(), StateError>;
}

/// What of one job already reached Slack; saved by the caller with the job
/// whenever [`Notifier::deliver`] fails, and passed back on the retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The root this job posted, in case recording it in the state failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootRef>,
    /// The `ts` of this job's thread reply, once posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_ts: Option<String>,
}

/// What a successful delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Bot mode: the root message was posted (and replied to unless the event was `Opened`).
    Root {
        root: RootRef,
        reply_ts: Option<String>,
    },
    /// Bot mode: a reply went into the existing thread (unless `Opened`) and the root was updated.
    Thread {
        root: RootRef,
        reply_ts: Option<String>,
    },
    /// Webhook mode: one message was posted.
    Webhook,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Slack refused or could not be reached.
    #[error(transparent)]
    Slack(#[from] SlackError),
    /// The caller's state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl DeliveryError {
    /// Whether to retry: Slack's answer decides ([`SlackError::retry`]); a
    /// storage failure is retried with backoff.
    pub fn retry(&self) -> Retry {
        match self {
            DeliveryError::Slack(e) => e.retry(),
            DeliveryError::State(_) => Retry::Backoff,
        }
    }

    /// When to try again on the `attempt`-th try (1-based); `None` for never.
    pub fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        match self {
            DeliveryError::Slack(e) => e.retry_delay(attempt),
            DeliveryError::State(_) => Some(crate::retry::SLACK.after(attempt)),
        }
    }
}

/// Time for the [`Pacer`]: real time in the daemon, a fake one in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock: `Instant::now` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}

/// Slack allows about one message per second per channel; beyond that it
/// answers 429. The pacer hands out send slots per channel, `interval` apart.
#[derive(Debug)]
pub struct Pacer<C: Clock = TokioClock> {
    clock: C,
    interval: Duration,
    next_slot: Mutex<HashMap<String, Instant>>,
}

/// One message per second per channel.
pub const DEFAULT_PACE: Duration = Duration::from_secs(1);

impl<C: Clock> Pacer<C> {
    pub fn new(clock: C, interval: Duration) -> Pacer<C> {
        Pacer {
            clock,
            interval,
            next_slot: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the channel's next send slot; returns how long to wait for it.
    pub fn reserve(&self, channel: &str) -> Duration {
        let now = self.clock.now();
        // A poisoned lock only means another task panicked mid-update of a map
        // of instants: its contents are still usable.
        let mut slots = self
            .next_slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() > 1024 {
            slots.retain(|_, at| *at > now);
        }
        let slot = slots
            .get(channel)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        slots.insert(channel.to_string(), slot + self.interval);
        slot - now
    }

    /// Waits for the channel's next send slot.
    pub async fn wait(&self, channel: &str) {
        let d = self.reserve(channel);
        if !d.is_zero() {
            self.clock.sleep(d).await;
        }
    }
}

/// One label-matcher route: incidents whose labels match every entry go to `channel`.
/// In config: `routes: [{match: {team: payments}, channel: "#payments-incidents"}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub channel: String,
}

/// Picks the channel of an incident's root message: the first matching route,
/// else the default channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRoutes {
    pub default_channel: String,
    pub routes: Vec<Route>,
}

impl ChannelRoutes {
    /// Only the default channel.
    pub fn single(channel: impl Into<String>) -> ChannelRoutes {
        ChannelRoutes {
            default_channel: channel.into(),
            routes: Vec::new(),
        }
    }

    /// The channel for this incident. `severity` and `service` match the
    /// incident's own (the highest severity, the service); any other label
    /// matches if one of the incident's alerts carries that value.
    pub fn channel_for(&self, incident: &Incident) -> &str {
        let matches = |name: &str, value: &str| match name {
            "severity" => incident.severity.as_deref() == Some(value),
            "service" => incident.service.as_deref() == Some(value),
            _ => incident
                .alerts
                .iter()
                .any(|o| o.labels.get(name).map(String::as_str) == Some(value)),
        };
        self.routes
            .iter()
            .find(|r| r.matchers.iter().all(|(n, v)| matches(n, v)))
            .map(|r| r.channel.as_str())
            .unwrap_or(&self.default_channel)
    }
}

/// Delivers incident events to Slack. Share one per daemon (its pacer must see
/// every message).
#[derive(Debug)]
pub struct Notifier<C: Clock = TokioClock> {
    client: SlackClient,
    routes: ChannelRoutes,
    settings: MessageSettings,
    pacer: Pacer<C>,
}

/// Pacing key for incoming-webhook mode: a webhook posts to one fixed channel.
const WEBHOOK_PACE_KEY: &str = "<webhook>";

impl Notifier<TokioClock> {
    pub fn new(client: SlackClient, routes: ChannelRoutes, settings: MessageSettings) -> Self {
        Notifier::with_pacer(
            client,
            routes,
            settings,
            Pacer::new(TokioClock, DEFAULT_PACE),
        )
    }
}

impl<C: Clock> Notifier<C> {
    pub fn with_pacer(
        client: SlackClient,
        routes: ChannelRoutes,
        mut settings: MessageSettings,
        pacer: Pacer<C>,
    ) -> Self {
        if client.mode() == Mode::Webhook {
            // A webhook message cannot be updated after a click, so no button.
            settings.ack_button = false;
        }
        Notifier {
            client,
            routes,
            settings,
            pacer,
        }
    }

    pub fn settings(&self) -> &MessageSettings {
        &self.settings
    }

    /// Delivers one event of `incident` (its current state). Bot mode: posts the
    /// root message if the incident has none yet, posts the event's reply in the
    /// thread (not for `Opened`), then `chat.update`s the root so it shows the
    /// current status, severity and duration. Webhook mode: posts one message.
    ///
    /// On error, save `progress` with the job and retry as
    /// [`DeliveryError::retry`] says; steps already done are not repeated.
    pub async fn deliver(
        &self,
        state: &dyn SlackState,
        incident: &Incident,
        event: &SlackEvent,
        evidence: &[EvidenceFigure],
        progress: &mut Progress,
    ) -> Result<Delivered, DeliveryError> {
        if self.client.mode() == Mode::Webhook {
            if *event == SlackEvent::EvidenceUpdated {
                // An incoming webhook cannot edit what it posted; a new message for new
                // figures would be noise.
                return Ok(Delivered::Webhook);
            }
            self.pacer.wait(WEBHOOK_PACE_KEY).await;
            let message = standalone_message(incident, event, evidence, &self.settings);
            self.client.post_webhook(&message).await?;
            return Ok(Delivered::Webhook);
        }

        let known = match state.root(&incident.id)? {
            Some(root) => Some(root),
            None => match progress.root.clone() {
                // Posted by an earlier try of this job that could not record it.
                Some(root) => {
                    state.set_root(&incident.id, &root)?;
                    Some(root)
                }
                None => None,
            },
        };
        let (root, fresh) = match known {
            Some(root) => (root, false),
            None => {
                let channel = self.routes.channel_for(incident);
                self.pacer.wait(channel).await;
                let message = root_message(incident, evidence, &self.settings);
                let root = self.client.post_message(channel, None, &message).await?;
                progress.root = Some(root.clone());
                state.set_root(&incident.id, &root)?;
                (root, true)
            }
        };

        if event.has_reply() && progress.reply_ts.is_none() {
            // Pace by channel ID: after the root, every message goes to it.
            self.pacer.wait(&root.channel).await;
            let reply = event_message(incident, event, evidence, &self.settings);
            let posted = self
                .client
                .post_message(&root.channel, Some(&root.ts), &reply)
                .await?;
            progress.reply_ts = Some(posted.ts);
        }

        if fresh {
            // Just posted from the current state: nothing to update.
            return Ok(Delivered::Root {
                root,
                reply_ts: progress.reply_ts.clone(),
            });
        }
        // chat.update edits a message rather than posting one: it is not
        // subject to the one-message-per-second pace.
        let message = root_message(incident, evidence, &self.settings);
        self.client
            .update_message(&root.channel, &root.ts, &message)
            .await?;
        Ok(Delivered::Thread {
            root,
            reply_ts: progress.reply_ts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clock that only moves when something sleeps on it, recording the sleeps.
    #[derive(Clone)]
    struct FakeClock {
        now: Arc<Mutex<Instant>>,
        sleeps: Arc<Mutex<Vec<Duration>>>,
    }

    impl FakeClock {
        fn new() -> FakeClock {
            FakeClock {
                now: Arc::new(Mutex::new(Instant::now())),
                sleeps: Arc::new(Mutex::new(Vec::new())),
            }
        }
        fn advance(&self, d: Duration) {
            *self.now.lock().unwrap() += d;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.now.lock().unwrap()
        }
        fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
            self.sleeps.lock().unwrap().push(d);
            self.advance(d);
            std::future::ready(())
        }
    }

    #[test]
    fn messages_to_one_channel_are_spaced_one_second_apart() {
        let clock = FakeClock::new();
        let pacer = Pacer::new(clock.clone(), Duration::from_secs(1));
        assert_eq!(pacer.reserve("C1"), Duration::ZERO);
        assert_eq!(pacer.reserve("C1"), Duration::from_secs(1));
        assert_eq!(pacer.reserve("C1"), Duration::from_secs(2));
        clock.advance(Duration::from_millis(2500));
        assert_eq!(pacer.reserve("C1"), Duration::from_millis(500));
    }

    #[test]
    fn channels_are_paced_independently() {
        let pacer = Pacer::new(FakeClock::new(), Duration::from_secs(1));
        assert_eq!(pacer.reserve("C1"), Duration::ZERO);
        assert_eq!(pacer.reserve("C2"), Duration::ZERO);
        assert_eq!(pacer.reserve("C1"), Duration::from_secs(1));
    }

    #[test]
    fn a_channel_quiet_for_longer_than_the_interval_sends_at_once() {
        let clock = FakeClock::new();
        let pacer = Pacer::new(clock.clone(), Duration::from_secs(1));
        pacer.reserve("C1");
        clock.advance(Duration::from_secs(10));
        assert_eq!(pacer.reserve("C1"), Duration::ZERO);
    }

    #[tokio::test]
    async fn waiting_sleeps_on_the_injected_clock() {
        let clock = FakeClock::new();
        let pacer = Pacer::new(clock.clone(), Duration::from_secs(1));
        for _ in 0..3 {
            pacer.wait("C1").await;
        }
        assert_eq!(
            *clock.sleeps.lock().unwrap(),
            vec![Duration::from_secs(1), Duration::from_secs(1)]
        );
    }

    fn incident_with(severity: &str, team: &str) -> Incident {
        let mut labels = crate::incident::LabelSet::new();
        labels.insert("team".into(), team.into());
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-23T02:26:28Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        Incident {
            id: "INC-2026-0001".into(),
            key: "service=\"x\"".into(),
            title: "t".into(),
            status: crate::incident::Status::Open,
            severity: Some(severity.into()),
            service: Some("x".into()),
            impact_start: None,
            impact_start_method: crate::incident::ImpactMethod::StartsAt,
            fired_at: t,
            detected_at: t,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            reopen_count: 0,
            notifications: Default::default(),
            version: 1,
            alerts: vec![crate::incident::Occurrence {
                fingerprint: "f".into(),
                starts_at: t,
                ends_at: None,
                status: crate::incident::AlertStatus::Firing,
                alertname: "A".into(),
                labels,
                annotations: Default::default(),
                generator_url: String::new(),
                group_key: String::new(),
                first_seen_at: t,
                last_seen_at: t,
                resolved_by: None,
            }],
            timeline: vec![],
        }
    }

    #[test]
    fn the_first_route_whose_matchers_all_match_picks_the_channel() {
        let routes: Vec<Route> = serde_norway::from_str(
            r##"
- match: {team: payments, severity: critical}
  channel: "#payments-pager"
- match: {team: payments}
  channel: "#payments-incidents"
"##,
        )
        .unwrap();
        let routes = ChannelRoutes {
            default_channel: "#incidents".into(),
            routes,
        };
        assert_eq!(
            routes.channel_for(&incident_with("critical", "payments")),
            "#payments-pager"
        );
        assert_eq!(
            routes.channel_for(&incident_with("warning", "payments")),
            "#payments-incidents"
        );
        assert_eq!(
            routes.channel_for(&incident_with("critical", "search")),
            "#incidents"
        );
    }

    #[test]
    fn a_route_with_an_unknown_key_is_a_config_error() {
        let err = serde_norway::from_str::<Vec<Route>>("- matchers: {team: x}\n  channel: c\n")
            .unwrap_err();
        assert!(err.to_string().contains("matchers"), "{err}");
    }
}
