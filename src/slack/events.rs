//! What Slack sends incidentd besides button clicks: the Events API (`POST /slack/events`:
//! replies, edits, deletions and reactions in incident threads) and the `/incident` slash
//! command (`POST /slack/commands`). Pure parsing into incidentd's words; the signature is
//! checked before any of this runs ([`super::signature`]).
//!
//! Shapes as Slack documents them:
//! - envelope: `{"type": "url_verification", "challenge": …}` once when the URL is set;
//!   then `{"type": "event_callback", "event_id": "Ev…", "event_time": 1700000000,
//!   "event": {…}}`, delivered again on failure with the same `event_id` (and
//!   `X-Slack-Retry-Num`);
//! - `message`: `channel`, `user`, `text`, `ts`, and `thread_ts` (the root's) for a reply;
//!   `bot_id` (or subtype `bot_message`) when a bot posted it — incidentd's own messages too;
//!   subtype `message_changed` with the new `message` (its `edited.ts`) and the
//!   `previous_message`; subtype `message_deleted` with `deleted_ts` and `previous_message`;
//! - `reaction_added` / `reaction_removed`: `user`, `reaction` (no colons), `item.channel`,
//!   `item.ts`;
//! - slash command: a form with `command`, `text`, `channel_id`, `user_id`, `user_name`,
//!   `response_url`, `trigger_id`. Slack sends no `thread_ts` for a command typed in a
//!   thread, so a command acts on the channel's one unresolved incident, or on the id given.

use serde_json::Value;

use crate::incident::conversation::time_of_ts;
use crate::incident::Timestamp;

/// An Events API request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// Slack checks the URL: answer the challenge.
    UrlVerification { challenge: String },
    Callback {
        event_id: String,
        event_time: Option<Timestamp>,
        event: Event,
    },
    /// Another envelope type (`app_rate_limited`, …): answered 200, nothing done.
    Other(String),
}

/// An event, as far as incident threads care.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A person's reply in a thread.
    Posted {
        channel: String,
        thread_ts: String,
        ts: String,
        user: String,
        text: String,
        /// The users the text mentions (`@U123` in `text`), whose names the job looks up.
        mentions: Vec<String>,
    },
    /// A person edited their reply.
    Edited {
        channel: String,
        thread_ts: String,
        ts: String,
        text: String,
        at: Timestamp,
        mentions: Vec<String>,
    },
    /// A reply was deleted.
    Deleted {
        channel: String,
        thread_ts: String,
        ts: String,
        at: Timestamp,
    },
    /// A person added a reaction to a message.
    Reacted {
        channel: String,
        ts: String,
        user: String,
        reaction: String,
    },
    /// Not about a person's reply in a thread (a bot's message, a channel message, a
    /// removed reaction, …): why.
    Ignored(&'static str),
}

/// Why a body is not an Events API request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EventsError(pub String);

/// A message's text as people read it in Slack: its control sequences (`<@U123>`,
/// `<#C123|general>`, `<!here>`, `<https://x|label>`) written out, then the `&`, `<` and `>`
/// that Slack escapes in `text` unescaped. A mention keeps the user's id (`@U123`) here; the
/// job puts the name in ([`mentions`] lists whose).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        match (target.chars().next(), label) {
            (Some('@'), Some(l)) => out.push_str(&format!("@{l}")),
            (Some('@'), None) => out.push_str(target),
            (Some('#'), Some(l)) => out.push_str(&format!("#{l}")),
            (Some('#'), None) => out.push_str(target),
            (Some('!'), l) => {
                let name = l.unwrap_or_else(|| target[1..].split('^').next().unwrap_or_default());
                out.push_str(&format!("@{}", name.trim_start_matches('@')));
            }
            (_, Some(l)) if l != target => out.push_str(&format!("{l} ({target})")),
            _ => out.push_str(target),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The users a message's text mentions (`<@U123>`, no label), each once.
fn mentions(text: &str) -> Vec<String> {
    let mut users: Vec<String> = text
        .split("<@")
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(inner, _)| inner))
        .filter(|inner| !inner.contains('|') && !inner.is_empty())
        .map(str::to_string)
        .collect();
    users.sort();
    users.dedup();
    users
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Parse an Events API body.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EventsError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| EventsError(format!("not JSON: {e}")))?;
    match str_of(&v, "type") {
        Some("url_verification") => Ok(Envelope::UrlVerification {
            challenge: str_of(&v, "challenge")
                .ok_or_else(|| EventsError("url_verification without a challenge".into()))?
                .to_string(),
        }),
        Some("event_callback") => {
            let event_id = str_of(&v, "event_id")
                .ok_or_else(|| EventsError("event_callback without event_id".into()))?
                .to_string();
            let event_time = v
                .get("event_time")
                .and_then(Value::as_i64)
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0));
            let event = v
                .get("event")
                .ok_or_else(|| EventsError("event_callback without event".into()))?;
            Ok(Envelope::Callback {
                event_id,
                event_time,
                event: parse_event(event, event_time),
            })
        }
        Some(other) => Ok(Envelope::Other(other.to_string())),
        None => Err(EventsError("no type".into())),
    }
}

/// A message posted by a bot (incidentd included) or an app.
fn by_bot(m: &Value) -> bool {
    m.get("bot_id").is_some_and(|b| !b.is_null()) || str_of(m, "subtype") == Some("bot_message")
}

/// A reply in a thread: `thread_ts` set and not the message itself (a root has both equal).
fn reply_thread(m: &Value) -> Option<(&str, &str)> {
    let ts = str_of(m, "ts")?;
    let thread_ts = str_of(m, "thread_ts")?;
    (thread_ts != ts).then_some((thread_ts, ts))
}

fn parse_event(e: &Value, event_time: Option<Timestamp>) -> Event {
    let channel = str_of(e, "channel").unwrap_or_default().to_string();
    let event_ts = str_of(e, "event_ts")
        .or_else(|| str_of(e, "ts"))
        .and_then(time_of_ts)
        .or(event_time);
    match str_of(e, "type") {
        Some("message") => match str_of(e, "subtype") {
            None | Some("thread_broadcast") | Some("file_share") => {
                if by_bot(e) {
                    return Event::Ignored("a bot's message");
                }
                let (Some((thread_ts, ts)), Some(user)) = (reply_thread(e), str_of(e, "user"))
                else {
                    return Event::Ignored("not a reply in a thread");
                };
                Event::Posted {
                    channel,
                    thread_ts: thread_ts.into(),
                    ts: ts.into(),
                    user: user.into(),
                    text: plain(str_of(e, "text").unwrap_or_default()),
                    mentions: mentions(str_of(e, "text").unwrap_or_default()),
                }
            }
            Some("message_changed") => {
                let m = e.get("message").unwrap_or(&Value::Null);
                if by_bot(m) {
                    return Event::Ignored("a bot's message");
                }
                let Some((thread_ts, ts)) = reply_thread(m) else {
                    return Event::Ignored("not a reply in a thread");
                };
                let at = m
                    .get("edited")
                    .and_then(|ed| str_of(ed, "ts"))
                    .and_then(time_of_ts)
                    .or(event_ts);
                let Some(at) = at else {
                    return Event::Ignored("an edit without a time");
                };
                Event::Edited {
                    channel,
                    thread_ts: thread_ts.into(),
                    ts: ts.into(),
                    text: plain(str_of(m, "text").unwrap_or_default()),
                    at,
                    mentions: mentions(str_of(m, "text").unwrap_or_default()),
                }
            }
            Some("message_deleted") => {
                let prev = e.get("previous_message").unwrap_or(&Value::Null);
                if by_bot(prev) {
                    return Event::Ignored("a bot's message");
                }
                let (Some(ts), Some(thread_ts)) =
                    (str_of(e, "deleted_ts"), str_of(prev, "thread_ts"))
                else {
                    return Event::Ignored("not a reply in a thread");
                };
                if ts == thread_ts {
                    return Event::Ignored("a thread's root");
                }
                let Some(at) = event_ts else {
                    return Event::Ignored("a deletion without a time");
                };
                Event::Deleted {
                    channel,
                    thread_ts: thread_ts.into(),
                    ts: ts.into(),
                    at,
                }
            }
            Some(_) => Event::Ignored("a message subtype incidentd does not capture"),
        },
        Some("reaction_added") => {
            let item = e.get("item").unwrap_or(&Value::Null);
            match (
                str_of(item, "channel"),
                str_of(item, "ts"),
                str_of(e, "user"),
                str_of(e, "reaction"),
            ) {
                (Some(channel), Some(ts), Some(user), Some(reaction)) => Event::Reacted {
                    channel: channel.into(),
                    ts: ts.into(),
                    user: user.into(),
                    reaction: reaction.into(),
                },
                _ => Event::Ignored("a reaction to something other than a message"),
            }
        }
        Some("reaction_removed") => {
            Event::Ignored("a removed reaction: what was captured stays in the timeline")
        }
        _ => Event::Ignored("an event type incidentd does not use"),
    }
}

/// What `/incident …` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    Ack,
    Note(String),
    Resolve,
    Status,
    /// Anything else: the usage is shown.
    Help,
}

/// A slash command request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    pub command: String,
    pub channel_id: String,
    pub user_id: String,
    pub user_name: String,
    /// The incident named in the text (`/incident ack INC-2026-0007`), if any.
    pub incident_id: Option<String>,
    pub subcommand: Subcommand,
}

/// How to use the command, as the help answer says it.
pub const USAGE: &str = "Usage: `/incident ack`, `/incident note <text>`, `/incident resolve`, \
    `/incident status`. They act on this channel's open incident; with several open, name one \
    first: `/incident ack INC-2026-0007`.";

fn is_incident_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("INC-") else {
        return false;
    };
    let mut parts = rest.splitn(2, '-');
    matches!(
        (parts.next(), parts.next()),
        (Some(y), Some(n)) if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit())
            && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    )
}

/// Parse a slash command's form body.
pub fn parse_command(body: &[u8]) -> Result<SlashCommand, EventsError> {
    let mut fields = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        fields.insert(k.into_owned(), v.into_owned());
    }
    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let (channel_id, user_id) = (field("channel_id"), field("user_id"));
    if channel_id.is_empty() || user_id.is_empty() {
        return Err(EventsError(
            "not a slash command: channel_id and user_id are required".into(),
        ));
    }
    let text = field("text");
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_lowercase();
    let mut rest: Vec<&str> = words.collect();
    let incident_id = match rest.first() {
        Some(w) if is_incident_id(&w.to_ascii_uppercase()) => {
            let id = w.to_ascii_uppercase();
            rest.remove(0);
            Some(id)
        }
        _ => None,
    };
    let subcommand = match verb.as_str() {
        "ack" | "acknowledge" => Subcommand::Ack,
        "resolve" => Subcommand::Resolve,
        "status" => Subcommand::Status,
        "note" if !rest.is_empty() => {
            // The note as typed: everything after the verb (and the id).
            let after_verb = text.trim_start()[verb.len()..].trim_start();
            let note = match &incident_id {
                Some(_) => after_verb
                    .split_once(char::is_whitespace)
                    .map_or("", |(_, n)| n),
                None => after_verb,
            };
            Subcommand::Note(note.trim().to_string())
        }
        _ => Subcommand::Help,
    };
    Ok(SlashCommand {
        command: field("command"),
        channel_id,
        user_id,
        user_name: field("user_name"),
        incident_id,
        subcommand,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn control_sequences_read_as_in_slack() {
        assert_eq!(
            plain("<@U0A1> look at <https://grafana.example/d/x?a=1&amp;b=2|the dashboard> in <#C9|payments>, <!here>"),
            "@U0A1 look at the dashboard (https://grafana.example/d/x?a=1&b=2) in #payments, @here"
        );
        assert_eq!(plain("<https://x.example/>"), "https://x.example/");
        assert_eq!(
            plain("<!subteam^S1|@oncall> p99 &gt; 1 s &amp;&lt;"),
            "@oncall p99 > 1 s &<"
        );
        assert_eq!(plain("a &lt;b&gt; <unclosed"), "a <b> <unclosed");
        assert_eq!(
            mentions("<@U2> and <@U1>, <@U2>, <@U3|carol>, <#C1>, <@"),
            ["U1", "U2"]
        );
    }

    use super::*;
    use serde_json::json;

    fn callback(event: Value) -> Event {
        let body = json!({"type": "event_callback", "event_id": "Ev1", "event_time": 1795400000,
                          "team_id": "T1", "event": event});
        match parse_envelope(body.to_string().as_bytes()).expect("parses") {
            Envelope::Callback { event, .. } => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_challenge_is_read() {
        let body = br#"{"token":"x","challenge":"3eZbrw1aB","type":"url_verification"}"#;
        assert_eq!(
            parse_envelope(body).expect("parses"),
            Envelope::UrlVerification {
                challenge: "3eZbrw1aB".into()
            }
        );
    }

    #[test]
    fn replies_edits_deletions_and_reactions_are_read_bots_and_roots_ignored() {
        let reply = json!({"type": "message", "channel": "C1", "user": "U1", "text": "on it",
                           "ts": "1795400010.000200", "thread_ts": "1795400000.000100"});
        assert!(matches!(callback(reply.clone()), Event::Posted { ref user, .. } if user == "U1"));
        let mut bot = reply.clone();
        bot["bot_id"] = json!("B1");
        assert!(matches!(callback(bot), Event::Ignored(_)));
        let root = json!({"type": "message", "channel": "C1", "user": "U1", "text": "hi",
                          "ts": "1795400000.000100"});
        assert!(matches!(callback(root), Event::Ignored(_)));
        let edit = json!({"type": "message", "subtype": "message_changed", "channel": "C1",
            "hidden": true, "ts": "1795400050.000300",
            "message": {"type": "message", "user": "U1", "text": "on it, pool", "ts": "1795400010.000200",
                        "thread_ts": "1795400000.000100", "edited": {"user": "U1", "ts": "1795400040.000000"}},
            "previous_message": {"type": "message", "user": "U1", "text": "on it", "ts": "1795400010.000200",
                        "thread_ts": "1795400000.000100"}});
        match callback(edit) {
            Event::Edited { at, text, .. } => {
                assert_eq!(at.timestamp(), 1795400040);
                assert_eq!(text, "on it, pool");
            }
            other => panic!("{other:?}"),
        }
        let deleted = json!({"type": "message", "subtype": "message_deleted", "channel": "C1",
            "hidden": true, "ts": "1795400060.000400", "deleted_ts": "1795400010.000200",
            "previous_message": {"type": "message", "user": "U1", "text": "on it", "ts": "1795400010.000200",
                                 "thread_ts": "1795400000.000100"}});
        assert!(
            matches!(callback(deleted), Event::Deleted { ref ts, .. } if ts == "1795400010.000200")
        );
        let reaction = json!({"type": "reaction_added", "user": "U2", "reaction": "pushpin",
            "item_user": "U1", "item": {"type": "message", "channel": "C1", "ts": "1795400010.000200"},
            "event_ts": "1795400070.000500"});
        assert!(
            matches!(callback(reaction), Event::Reacted { ref reaction, .. } if reaction == "pushpin")
        );
    }

    #[test]
    fn commands_name_an_incident_or_not() {
        let cmd = |text: &str| {
            let body = format!(
                "command=%2Fincident&text={}&channel_id=C1&user_id=U1&user_name=alice&response_url=x&trigger_id=t",
                form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
            );
            parse_command(body.as_bytes()).expect("parses")
        };
        assert_eq!(cmd("ack").subcommand, Subcommand::Ack);
        assert_eq!(cmd("ack").incident_id, None);
        let c = cmd("note inc-2026-0007 rolled back  v2.3");
        assert_eq!(c.incident_id.as_deref(), Some("INC-2026-0007"));
        assert_eq!(c.subcommand, Subcommand::Note("rolled back  v2.3".into()));
        assert_eq!(
            cmd("note mitigated: rolled back").subcommand,
            Subcommand::Note("mitigated: rolled back".into())
        );
        assert_eq!(cmd("note").subcommand, Subcommand::Help);
        assert_eq!(cmd("dance").subcommand, Subcommand::Help);
        assert!(parse_command(b"text=ack").is_err());
    }
}
