//! The store's Slack conversation operations: Events API deliveries recorded once by
//! `event_id` (Slack retries), replies in incident threads and their timeline rows, the
//! users' names cache, and the incidents a slash command may mean. Written once over
//! [`SlackTx`] and [`SlackReads`], which every backend implements beside its [`Tx`] and
//! [`Reads`].

use super::{queue_followups, schedule, Reads, Store, StoreError, Tx};
use crate::followup::{Change, JobSpec};
use crate::incident::conversation::{self, CaptureRules, ThreadChange, ThreadMessage};
use crate::incident::{Status, TimelineEvent, Timestamp};

/// Where an event happened: a reply in a thread (`thread_ts` is the root's), or an existing
/// message (reactions, which name only the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Thread { channel: String, thread_ts: String },
    Message { channel: String, ts: String },
}

/// What became of a delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Its `event_id` was recorded before: a retry, nothing done.
    Duplicate,
    /// Not in an incident's thread: recorded, nothing queued.
    NotOurs,
    /// Queued for the incident.
    Queued { incident_id: String },
}

/// A new reply, kept as soon as it is received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ts: String,
    pub user: String,
    pub text: String,
}

/// An open incident whose thread is in a channel (a slash command's candidates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelIncident {
    pub id: String,
    pub title: String,
    pub status: Status,
}

/// The Slack writes inside one transaction.
pub trait SlackTx {
    /// Record a delivered event's id; `false` when it was recorded already.
    fn record_slack_event(&mut self, event_id: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// The incident whose root message is `(channel, ts)`.
    fn thread_incident(&mut self, channel: &str, ts: &str) -> Result<Option<String>, StoreError>;
    fn thread_message(
        &mut self,
        channel: &str,
        ts: &str,
    ) -> Result<Option<ThreadMessage>, StoreError>;
    /// Insert or replace a reply's state.
    fn put_thread_message(&mut self, message: &ThreadMessage) -> Result<(), StoreError>;
    /// Append derived rows to an incident's timeline and bump its version.
    fn append_timeline(
        &mut self,
        incident_id: &str,
        rows: &[TimelineEvent],
    ) -> Result<(), StoreError>;
    fn put_slack_user(
        &mut self,
        user_id: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Event ids recorded before `cutoff`.
    fn prune_slack_events(&mut self, cutoff: Timestamp) -> Result<usize, StoreError>;
}

/// The Slack queries.
pub trait SlackReads {
    /// A cached name: `(name, fetched_at)`.
    fn slack_user(&mut self, user_id: &str) -> Result<Option<(String, Timestamp)>, StoreError>;
    /// The replies of an incident's thread that are in its timeline, oldest first.
    fn thread_messages(&mut self, incident_id: &str) -> Result<Vec<ThreadMessage>, StoreError>;
    /// Unresolved incidents whose thread is in `channel`, newest first.
    fn channel_incidents(&mut self, channel: &str) -> Result<Vec<ChannelIncident>, StoreError>;
}

impl Store {
    /// Record a delivered Slack event once (by `event_id`) and, when it happened in an
    /// incident's thread, queue `job` for that incident: one transaction, so Slack can be
    /// answered 200 as soon as it returns. A new reply (`posted`: its user and text) is kept
    /// at once, so a reaction or an edit arriving before its job ran still finds it.
    pub async fn receive_slack_event(
        &self,
        event_id: &str,
        target: Target,
        reply: Option<Reply>,
        job: JobSpec,
        now: Timestamp,
    ) -> Result<Received, StoreError> {
        let event_id = event_id.to_string();
        self.write(move |tx| {
            if !tx.record_slack_event(&event_id, now)? {
                return Ok(Received::Duplicate);
            }
            let (incident_id, channel) = match &target {
                Target::Thread { channel, thread_ts } => {
                    (tx.thread_incident(channel, thread_ts)?, channel)
                }
                Target::Message { channel, ts } => (
                    tx.thread_message(channel, ts)?.map(|m| m.incident_id),
                    channel,
                ),
            };
            let Some(incident_id) = incident_id else {
                return Ok(Received::NotOurs);
            };
            if let Some(r) = &reply {
                if tx.thread_message(channel, &r.ts)?.is_none() {
                    if let Some(m) =
                        ThreadMessage::received(&incident_id, channel, &r.ts, &r.user, &r.text)
                    {
                        tx.put_thread_message(&m)?;
                    }
                }
            }
            schedule(tx, Some(&incident_id), &job, now + job.delay)?;
            Ok(Received::Queued { incident_id })
        })
        .await
    }

    /// Apply a change to a reply of an incident's thread: its state, the timeline rows it
    /// appends, and what follows (the draft): one transaction. Returns the rows appended;
    /// a reply unknown here (pruned) changes nothing.
    pub async fn apply_thread_change(
        &self,
        channel: &str,
        ts: &str,
        change: ThreadChange,
        rules: CaptureRules,
    ) -> Result<Vec<TimelineEvent>, StoreError> {
        let (channel, ts) = (channel.to_string(), ts.to_string());
        let followups = self.followups.clone();
        self.write(move |tx| {
            let Some(mut message) = tx.thread_message(&channel, &ts)? else {
                return Ok(Vec::new());
            };
            let before = message.clone();
            let rows = conversation::apply(&rules, &mut message, &change);
            if message != before {
                tx.put_thread_message(&message)?;
            }
            if !rows.is_empty() {
                tx.append_timeline(&message.incident_id, &rows)?;
            }
            if message != before {
                let change = Change::Conversation {
                    incident_id: &message.incident_id,
                };
                queue_followups(tx, &*followups.planner, &[change])?;
            }
            Ok(rows)
        })
        .await
    }

    /// A Slack user's cached name and when it was looked up.
    pub async fn slack_user(
        &self,
        user_id: &str,
    ) -> Result<Option<(String, Timestamp)>, StoreError> {
        let id = user_id.to_string();
        self.read(move |r| r.slack_user(&id)).await
    }

    /// Cache a Slack user's name.
    pub async fn save_slack_user(
        &self,
        user_id: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (id, name) = (user_id.to_string(), name.to_string());
        self.write(move |tx| tx.put_slack_user(&id, &name, now))
            .await
    }

    /// The unresolved incidents whose thread is in `channel`.
    pub async fn channel_incidents(
        &self,
        channel: &str,
    ) -> Result<Vec<ChannelIncident>, StoreError> {
        let channel = channel.to_string();
        self.read(move |r| r.channel_incidents(&channel)).await
    }
}

/// For [`Reads`] users that want the replies shown in the draft.
pub(super) fn thread_messages(
    r: &mut dyn Reads,
    incident_id: &str,
) -> Result<Vec<ThreadMessage>, StoreError> {
    r.thread_messages(incident_id)
}

/// For [`Tx`] users pruning.
pub(super) fn prune(tx: &mut dyn Tx, cutoff: Timestamp) -> Result<usize, StoreError> {
    tx.prune_slack_events(cutoff)
}
