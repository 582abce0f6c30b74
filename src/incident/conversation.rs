//! The people's half of the timeline: replies in an incident's Slack thread become timeline
//! rows. Pure: the store loads a reply's state, [`apply`] says what a change to it means
//! (the new state and the rows to append), and the store saves both.
//!
//! The product rule: what people have seen stays in the timeline; a change is a new event.
//! So a captured reply's row is never rewritten: an edit appends a
//! [`EventKind::SlackMessageEdited`] row with the new text, a deletion a
//! [`EventKind::SlackMessageDeleted`] row. The reply's *current* state (text, edited,
//! deleted) is kept beside it, and the draft shows that: the current text, marked
//! "edited", and nothing for a deleted reply.

use serde::{Deserialize, Serialize};

use super::{EventKind, MilestoneKind, TimelineEvent, Timestamp};

/// Which replies become timeline rows (`slack.capture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// Every reply in the thread.
    #[default]
    All,
    /// Only replies marked with the capture reaction, or with a milestone (a prefix such as
    /// `mitigated:` or a milestone reaction): noisy threads stay clean.
    Marked,
}

/// How replies are captured, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRules {
    pub capture: Capture,
    /// The reaction that marks a reply for capture (`pushpin`), without colons.
    pub capture_reaction: String,
    /// Reactions that mark a reply as a milestone (`mitigated` → `adhesive_bandage`).
    pub milestone_reactions: Vec<(MilestoneKind, String)>,
}

impl Default for CaptureRules {
    fn default() -> Self {
        CaptureRules {
            capture: Capture::All,
            capture_reaction: "pushpin".into(),
            milestone_reactions: Vec::new(),
        }
    }
}

/// A reply in an incident's Slack thread, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMessage {
    pub incident_id: String,
    pub channel: String,
    /// Slack's `ts` of the reply: its identity in the channel, and its time.
    pub ts: String,
    pub at: Timestamp,
    pub user_id: String,
    /// The author's name; `None` until the reply's own event was applied (the name is
    /// looked up then, not while Slack waits for its answer).
    pub author: Option<String>,
    /// The current text.
    pub text: String,
    /// Whether it is in the timeline.
    pub captured: bool,
    /// A milestone a reaction marked it as.
    pub milestone: Option<MilestoneKind>,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
}

impl ThreadMessage {
    /// A reply as received, before its event is applied.
    pub fn received(
        incident_id: &str,
        channel: &str,
        ts: &str,
        user_id: &str,
        text: &str,
    ) -> Option<ThreadMessage> {
        Some(ThreadMessage {
            incident_id: incident_id.into(),
            channel: channel.into(),
            ts: ts.into(),
            at: time_of_ts(ts)?,
            user_id: user_id.into(),
            author: None,
            text: text.into(),
            captured: false,
            milestone: None,
            edited_at: None,
            deleted_at: None,
        })
    }

    /// Who wrote it: the name, else the Slack user id.
    pub fn author_name(&self) -> &str {
        self.author.as_deref().unwrap_or(&self.user_id)
    }

    /// Whether the draft shows it: captured and not deleted.
    pub fn shown(&self) -> bool {
        self.captured && self.deleted_at.is_none()
    }
}

/// What happened to a reply, with the names already looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ThreadChange {
    Posted {
        author: String,
        /// `(user id, name)` of the users the text mentions, for [`name_mentions`].
        #[serde(default)]
        mentions: Vec<(String, String)>,
    },
    Edited {
        text: String,
        at: Timestamp,
    },
    Deleted {
        at: Timestamp,
    },
    Reacted {
        reaction: String,
        by: String,
    },
}

/// `text` with each mention of a user (`@U123`, as Slack's `<@U123>` reads once written out)
/// replaced by the name people know them by (`@Alice Martin`). Only whole ids: `@U12`
/// does not touch `@U123`.
pub fn name_mentions(text: &str, names: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (id, name) in names {
        let needle = format!("@{id}");
        let mut from = 0;
        while let Some(found) = out[from..].find(&needle) {
            let start = from + found;
            let end = start + needle.len();
            let whole = !out[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            if whole {
                let replacement = format!("@{name}");
                out.replace_range(start..end, &replacement);
                from = start + replacement.len();
            } else {
                from = end;
            }
        }
    }
    out
}

/// Apply `change` to `message`; returns the rows to append to the incident's timeline.
/// Applying the same change twice appends nothing the second time.
pub fn apply(
    rules: &CaptureRules,
    message: &mut ThreadMessage,
    change: &ThreadChange,
) -> Vec<TimelineEvent> {
    let mut rows = Vec::new();
    if message.deleted_at.is_some() {
        return rows;
    }
    match change {
        ThreadChange::Posted { author, mentions } => {
            if message.author.is_some() {
                return rows; // applied already
            }
            message.author = Some(author.clone());
            message.text = name_mentions(&message.text, mentions);
            if rules.capture == Capture::All || MilestoneKind::of_note(&message.text).is_some() {
                capture(message, &mut rows);
            }
        }
        ThreadChange::Edited { text, at } => {
            if *text == message.text {
                return rows; // an unfurl or a re-delivery: nothing people see changed
            }
            message.text = text.clone();
            message.edited_at = Some(*at);
            if message.captured {
                rows.push(TimelineEvent {
                    at: *at,
                    kind: EventKind::SlackMessageEdited,
                    actor: message.author_name().to_string(),
                    text: text.clone(),
                });
            } else if MilestoneKind::of_note(text).is_some() {
                capture(message, &mut rows);
            }
        }
        ThreadChange::Deleted { at } => {
            message.deleted_at = Some(*at);
            if message.captured {
                rows.push(TimelineEvent {
                    at: *at,
                    kind: EventKind::SlackMessageDeleted,
                    actor: message.author_name().to_string(),
                    text: format!(
                        "deleted their Slack reply of {}",
                        crate::time::rfc3339(message.at)
                    ),
                });
            }
        }
        ThreadChange::Reacted { reaction, by } => {
            let milestone = rules
                .milestone_reactions
                .iter()
                .find(|(_, r)| r == reaction)
                .map(|(k, _)| *k);
            if *reaction == rules.capture_reaction || milestone.is_some() {
                capture(message, &mut rows);
            }
            if let (Some(kind), None) = (milestone, message.milestone) {
                message.milestone = Some(kind);
                rows.push(TimelineEvent {
                    at: message.at,
                    kind: EventKind::MilestoneMarked,
                    actor: message.author_name().to_string(),
                    text: format!(
                        "{} {} (marked :{reaction}: by {by})",
                        kind.prefix(),
                        message.text
                    ),
                });
            }
        }
    }
    rows
}

/// Put the reply in the timeline (once), at its own time with its current text.
fn capture(message: &mut ThreadMessage, rows: &mut Vec<TimelineEvent>) {
    if message.captured {
        return;
    }
    message.captured = true;
    rows.push(TimelineEvent {
        at: message.at,
        kind: EventKind::SlackMessage,
        actor: message.author_name().to_string(),
        text: message.text.clone(),
    });
}

/// The time a Slack `ts` (`"1700000000.123456"`: seconds and microseconds) stands for.
pub fn time_of_ts(ts: &str) -> Option<Timestamp> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs: i64 = secs.parse().ok()?;
    let frac = format!("{frac:0<6}");
    let micros: u32 = frac.get(..6)?.parse().ok()?;
    chrono::DateTime::from_timestamp(secs, micros * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> ThreadMessage {
        ThreadMessage::received("INC-1", "C1", "1795400000.000100", "U1", text).expect("ts")
    }

    fn marked() -> CaptureRules {
        CaptureRules {
            capture: Capture::Marked,
            capture_reaction: "pushpin".into(),
            milestone_reactions: vec![(MilestoneKind::Mitigated, "adhesive_bandage".into())],
        }
    }

    #[test]
    fn ts_is_seconds_and_microseconds() {
        let t = time_of_ts("1795400000.000100").expect("ts");
        assert_eq!(t.timestamp(), 1795400000);
        assert_eq!(t.timestamp_subsec_micros(), 100);
        assert_eq!(time_of_ts("x.1"), None);
    }

    #[test]
    fn a_reply_is_captured_once_edits_and_deletions_append() {
        let rules = CaptureRules::default();
        let mut m = msg("looking at the pool");
        let posted = ThreadChange::Posted {
            author: "Alice".into(),
            mentions: vec![],
        };
        let rows = apply(&rules, &mut m, &posted);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].kind, rows[0].actor.as_str()),
            (EventKind::SlackMessage, "Alice")
        );
        assert!(
            apply(&rules, &mut m, &posted).is_empty(),
            "a retry appends nothing"
        );
        let at = m.at + chrono::Duration::seconds(30);
        let edit = ThreadChange::Edited {
            text: "looking at the primary's pool".into(),
            at,
        };
        assert_eq!(
            apply(&rules, &mut m, &edit)[0].kind,
            EventKind::SlackMessageEdited
        );
        assert!(apply(&rules, &mut m, &edit).is_empty());
        assert_eq!(m.text, "looking at the primary's pool");
        let rows = apply(&rules, &mut m, &ThreadChange::Deleted { at });
        assert_eq!(rows[0].kind, EventKind::SlackMessageDeleted);
        assert!(!m.shown());
    }

    #[test]
    fn marked_mode_captures_pinned_prefixed_and_milestone_replies_only() {
        let rules = marked();
        let posted = ThreadChange::Posted {
            author: "Bob".into(),
            mentions: vec![],
        };
        let mut chatter = msg("anyone else seeing this?");
        assert!(apply(&rules, &mut chatter, &posted).is_empty());
        let mut prefixed = msg("Root cause: slow query holds connections");
        assert_eq!(apply(&rules, &mut prefixed, &posted).len(), 1);
        let pin = ThreadChange::Reacted {
            reaction: "pushpin".into(),
            by: "Carol".into(),
        };
        assert_eq!(apply(&rules, &mut chatter, &pin).len(), 1);
        let mut fix = msg("rolled back 2.3");
        apply(&rules, &mut fix, &posted);
        let bandage = ThreadChange::Reacted {
            reaction: "adhesive_bandage".into(),
            by: "Carol".into(),
        };
        let rows = apply(&rules, &mut fix, &bandage);
        let kinds: Vec<_> = rows.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [EventKind::SlackMessage, EventKind::MilestoneMarked]);
        assert_eq!(
            MilestoneKind::of_note(&rows[1].text),
            Some(MilestoneKind::Mitigated)
        );
        assert!(apply(&rules, &mut fix, &bandage).is_empty());
    }

    #[test]
    fn mentions_read_with_the_names_people_know() {
        let names = vec![
            ("U0ALICE".to_string(), "Alice Martin".to_string()),
            ("U1".to_string(), "Bob".to_string()),
        ];
        assert_eq!(
            name_mentions("@U0ALICE, @U1 and @U12 see @U1: <@U1>", &names),
            "@Alice Martin, @Bob and @U12 see @Bob: <@Bob>"
        );
        assert_eq!(name_mentions("no one", &names), "no one");
        let rules = CaptureRules::default();
        let mut m = msg("@U1 restarting the primary");
        let posted = ThreadChange::Posted {
            author: "Alice".into(),
            mentions: names,
        };
        let rows = apply(&rules, &mut m, &posted);
        assert_eq!(rows[0].text, "@Bob restarting the primary");
        assert_eq!(m.text, "@Bob restarting the primary");
    }
}
