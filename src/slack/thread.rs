//! The people's half of the timeline in the daemon: which Events API events become a
//! durable job, and the job that looks up the author's name (`users.info`, cached in the
//! store) and applies the change to the reply ([`crate::store::Store::apply_thread_change`]).
//!
//! The HTTP handler only records the event (once per `event_id`) and queues the job, so
//! Slack gets its answer well within its 3 seconds whatever `users.info` does; the jobs of
//! one incident run in order, so an edit is applied after the reply it edits.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::events::Event;
use super::SlackError;
use crate::followup::JobSpec;
use crate::incident::conversation::ThreadChange;
use crate::incident::Timestamp;
use crate::jobs::{Handler, JobFailure};
use crate::store::slack::{Reply, Target};
use crate::store::Store;

/// Job kind of captured thread events.
pub const JOB_KIND: &str = "slack_thread";

/// How long a looked-up name is used before `users.info` is asked again.
pub const NAME_TTL: chrono::Duration = chrono::Duration::hours(24);

/// A thread event's job payload: the reply it concerns, and what happened (with user ids;
/// the job looks their names up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadJob {
    pub channel: String,
    pub ts: String,
    pub change: RawChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RawChange {
    Posted {
        user: String,
        /// Users the text mentions, by id (absent in jobs queued before names were looked up).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
    },
    Edited {
        text: String,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
    },
    Deleted {
        at: Timestamp,
    },
    Reacted {
        reaction: String,
        user: String,
    },
}

/// Where an event happened, the reply to keep at once (a new one), and its job; `None` for
/// events that do not concern a reply.
pub fn job_for(event: &Event) -> Option<(Target, Option<Reply>, JobSpec)> {
    let thread = |channel: &str, thread_ts: &str| Target::Thread {
        channel: channel.into(),
        thread_ts: thread_ts.into(),
    };
    let (target, reply, job) = match event {
        Event::Posted {
            channel,
            thread_ts,
            ts,
            user,
            text,
            mentions,
        } => (
            thread(channel, thread_ts),
            Some(Reply {
                ts: ts.clone(),
                user: user.clone(),
                text: text.clone(),
            }),
            ThreadJob {
                channel: channel.clone(),
                ts: ts.clone(),
                change: RawChange::Posted {
                    user: user.clone(),
                    mentions: mentions.clone(),
                },
            },
        ),
        Event::Edited {
            channel,
            thread_ts,
            ts,
            text,
            at,
            mentions,
        } => (
            thread(channel, thread_ts),
            None,
            ThreadJob {
                channel: channel.clone(),
                ts: ts.clone(),
                change: RawChange::Edited {
                    text: text.clone(),
                    at: *at,
                    mentions: mentions.clone(),
                },
            },
        ),
        Event::Deleted {
            channel,
            thread_ts,
            ts,
            at,
        } => (
            thread(channel, thread_ts),
            None,
            ThreadJob {
                channel: channel.clone(),
                ts: ts.clone(),
                change: RawChange::Deleted { at: *at },
            },
        ),
        Event::Reacted {
            channel,
            ts,
            user,
            reaction,
        } => (
            Target::Message {
                channel: channel.clone(),
                ts: ts.clone(),
            },
            None,
            ThreadJob {
                channel: channel.clone(),
                ts: ts.clone(),
                change: RawChange::Reacted {
                    reaction: reaction.clone(),
                    user: user.clone(),
                },
            },
        ),
        Event::Ignored(_) => return None,
    };
    let spec = JobSpec {
        kind: JOB_KIND,
        payload: serde_json::to_value(job).ok()?,
        coalesce: false,
        delay: chrono::Duration::zero(),
    };
    Some((target, reply, spec))
}

impl super::job::Slack {
    /// A Slack user's name: cached in the store for [`NAME_TTL`], else `users.info`. When
    /// Slack does not know the user, the stale name or the id will do; other failures are
    /// returned (the job retries).
    pub async fn name_of(&self, store: &Store, user: &str) -> Result<String, NameError> {
        let now = chrono::Utc::now();
        let cached = store.slack_user(user).await.map_err(NameError::Store)?;
        if let Some((name, at)) = &cached {
            if now - *at < NAME_TTL {
                return Ok(name.clone());
            }
        }
        match self.client.user_name(user).await {
            Ok(name) => {
                store
                    .save_slack_user(user, &name, now)
                    .await
                    .map_err(NameError::Store)?;
                Ok(name)
            }
            Err(e) if e.retry() == super::Retry::Never => {
                tracing::warn!(user, error = %e, "users.info failed; using the id");
                Ok(cached.map_or_else(|| user.to_string(), |(n, _)| n))
            }
            Err(e) => Err(NameError::Slack(e)),
        }
    }

    /// The job applying thread events.
    pub fn thread_handler(self: Arc<Self>, store: Store) -> Handler {
        Arc::new(move |job| {
            let (slack, store) = (self.clone(), store.clone());
            Box::pin(async move {
                let payload: ThreadJob = serde_json::from_value(job.payload.clone())
                    .map_err(|e| JobFailure::permanent(format!("unreadable thread job: {e}")))?;
                let retry = |e: &dyn std::fmt::Display| {
                    JobFailure::retry(
                        e.to_string(),
                        crate::retry::JOBS.after_chrono(job.attempts + 1),
                    )
                };
                let named = |users: Vec<String>| {
                    let (slack, store) = (&slack, &store);
                    async move {
                        let mut names = Vec::with_capacity(users.len());
                        for user in users {
                            let name = slack.name_of(store, &user).await?;
                            names.push((user, name));
                        }
                        Ok::<_, NameError>(names)
                    }
                };
                let change = match payload.change {
                    RawChange::Posted { user, mentions } => ThreadChange::Posted {
                        author: slack
                            .name_of(&store, &user)
                            .await
                            .map_err(|e| e.failure(job.attempts + 1))?,
                        mentions: named(mentions)
                            .await
                            .map_err(|e| e.failure(job.attempts + 1))?,
                    },
                    RawChange::Edited { text, at, mentions } => {
                        let names = named(mentions)
                            .await
                            .map_err(|e| e.failure(job.attempts + 1))?;
                        ThreadChange::Edited {
                            text: crate::incident::conversation::name_mentions(&text, &names),
                            at,
                        }
                    }
                    RawChange::Deleted { at } => ThreadChange::Deleted { at },
                    RawChange::Reacted { reaction, user } => ThreadChange::Reacted {
                        reaction,
                        by: slack
                            .name_of(&store, &user)
                            .await
                            .map_err(|e| e.failure(job.attempts + 1))?,
                    },
                };
                store
                    .apply_thread_change(
                        &payload.channel,
                        &payload.ts,
                        change,
                        slack.capture.clone(),
                    )
                    .await
                    .map_err(|e| retry(&e))?;
                Ok(())
            })
        })
    }
}

/// Why a name could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(transparent)]
    Store(crate::store::StoreError),
    #[error(transparent)]
    Slack(SlackError),
}

impl NameError {
    fn failure(&self, attempt: u32) -> JobFailure {
        let retry_in = match self {
            NameError::Slack(e) => e.retry_delay(attempt).map(crate::time::chrono_duration),
            NameError::Store(_) => Some(crate::retry::JOBS.after_chrono(attempt)),
        };
        JobFailure {
            message: self.to_string(),
            retry_in,
            payload: None,
        }
    }
}
