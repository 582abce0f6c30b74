//! Slack's inbound requests: verifying their signature, and reading the
//! interaction payload of a click on the "Acknowledge" button.
//!
//! Pure functions: the caller passes the headers, the raw body and `now`. The
//! signature is checked before anything else touches the body: `v0=` + hex
//! HMAC-SHA256 over `v0:{timestamp}:{body}` with the app's signing secret,
//! compared in constant time, with a 5-minute window either side of `now`
//! against replays.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::message::ACK_ACTION_ID;

/// Header carrying the request's Unix timestamp (seconds).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Header carrying `v0=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// How far a request's timestamp may be from `now`, either way, in seconds.
pub const REPLAY_WINDOW_SECONDS: i64 = 5 * 60;

/// Why a request's signature was refused. Every variant means: answer 401 and do nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Slack-Request-Timestamp` header.
    #[error("missing X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    /// No `X-Slack-Signature` header.
    #[error("missing X-Slack-Signature header")]
    MissingSignature,
    /// The timestamp is not a whole number of seconds.
    #[error("X-Slack-Request-Timestamp is not a Unix time")]
    MalformedTimestamp,
    /// The signature is not `v0=` followed by 64 hex digits.
    #[error("X-Slack-Signature is not v0=<hex>")]
    MalformedSignature,
    /// The request is older than the replay window.
    #[error("request timestamp is {age_seconds}s old (more than 5 minutes): possible replay")]
    TooOld { age_seconds: i64 },
    /// The request claims a time beyond the window ahead of our clock.
    #[error("request timestamp is {ahead_seconds}s in the future (more than 5 minutes)")]
    InFuture { ahead_seconds: i64 },
    /// The HMAC does not match: wrong secret, or body or timestamp changed on the way.
    #[error("signature does not match the request")]
    Mismatch,
}

/// The `v0` signature of a request: `v0=` + hex HMAC-SHA256 over `v0:{timestamp}:{body}`.
pub fn sign(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(signing_secret, timestamp, body)))
}

fn mac(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(signing_secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Verifies a request from the two header values (as received, `None` when
/// absent), the raw body and `now` (Unix seconds).
pub fn verify(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?.trim();
    let signature = signature.ok_or(SignatureError::MissingSignature)?.trim();
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let age = now.saturating_sub(ts);
    if age > REPLAY_WINDOW_SECONDS {
        return Err(SignatureError::TooOld { age_seconds: age });
    }
    if -age > REPLAY_WINDOW_SECONDS {
        return Err(SignatureError::InFuture {
            ahead_seconds: -age,
        });
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(SignatureError::MalformedSignature)?;
    let expected = mac(signing_secret, timestamp, body);
    if bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// [`verify`] with the values taken from the request's headers.
pub fn verify_headers(
    signing_secret: &[u8],
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    verify(
        signing_secret,
        get(TIMESTAMP_HEADER),
        get(SIGNATURE_HEADER),
        body,
        now,
    )
}

/// Why an (already verified) interaction request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InteractionError {
    /// The form body has no `payload` field.
    #[error("interaction body has no payload field")]
    MissingPayload,
    /// `payload` is not the JSON Slack documents.
    #[error("interaction payload is not valid: {0}")]
    InvalidPayload(String),
    /// Not a `block_actions` interaction (e.g. a shortcut or a modal).
    #[error("unsupported interaction type {0:?}")]
    UnsupportedType(String),
    /// A `block_actions` payload with no action in it.
    #[error("interaction has no action")]
    NoAction,
}

/// What the click asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InteractionAction {
    /// The "Acknowledge" button: acknowledge this incident.
    Acknowledge { incident_id: String },
    /// Another of our elements (the draft link button also reports its clicks):
    /// answer 200 and do nothing.
    Other { action_id: String },
}

/// A `block_actions` interaction: who clicked what, and where to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// Slack user ID, e.g. `U0123ABCD`.
    pub user_id: String,
    /// The user's handle, to record as the acknowledger (falls back to the ID).
    pub user_name: String,
    pub action: InteractionAction,
    /// URL to answer or update the message through, valid 30 minutes.
    pub response_url: Option<String>,
    /// Channel ID and `ts` of the message clicked.
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
}

#[derive(Deserialize)]
struct Form {
    payload: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    container: Option<Container>,
    #[serde(default)]
    channel: Option<Channel>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    message_ts: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct Channel {
    id: String,
}

/// Reads an interaction request body (`application/x-www-form-urlencoded` with
/// a `payload` JSON field). Call only after [`verify`] accepted the request.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, InteractionError> {
    let form: Form = serde_urlencoded::from_bytes(body)
        .map_err(|e| InteractionError::InvalidPayload(e.to_string()))?;
    let payload = form.payload.ok_or(InteractionError::MissingPayload)?;
    let payload: Payload = serde_json::from_str(&payload)
        .map_err(|e| InteractionError::InvalidPayload(e.to_string()))?;
    if payload.kind != "block_actions" {
        return Err(InteractionError::UnsupportedType(payload.kind));
    }
    // Prefer our button if Slack ever batches actions; else report the first.
    let action = payload
        .actions
        .iter()
        .find(|a| a.action_id == ACK_ACTION_ID)
        .or_else(|| payload.actions.first())
        .ok_or(InteractionError::NoAction)?;
    let action = match (&*action.action_id, &action.value) {
        (ACK_ACTION_ID, Some(id)) if !id.trim().is_empty() => InteractionAction::Acknowledge {
            incident_id: id.trim().to_string(),
        },
        (ACK_ACTION_ID, _) => {
            return Err(InteractionError::InvalidPayload(
                "acknowledge action without an incident id".into(),
            ))
        }
        (other, _) => InteractionAction::Other {
            action_id: other.to_string(),
        },
    };
    let user_name = payload
        .user
        .username
        .or(payload.user.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| payload.user.id.clone());
    let (message_ts, container_channel) = payload
        .container
        .map(|c| (c.message_ts, c.channel_id))
        .unwrap_or((None, None));
    Ok(Interaction {
        user_id: payload.user.id,
        user_name,
        action,
        response_url: payload.response_url,
        channel_id: container_channel.or(payload.channel.map(|c| c.id)),
        message_ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const NOW: i64 = 1_795_400_800;

    fn body() -> Vec<u8> {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0"},
            "api_app_id": "A0",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": "1700000000.000100",
                          "channel_id": "C0INCIDENT", "is_ephemeral": false},
            "trigger_id": "1.2.3",
            "team": {"id": "T0", "domain": "example"},
            "channel": {"id": "C0INCIDENT", "name": "incidents"},
            "response_url": "https://hooks.slack.com/actions/T0/1/abc",
            "actions": [{"action_id": "incidentd_ack", "block_id": "incidentd_actions",
                         "text": {"type": "plain_text", "text": "Acknowledge", "emoji": true},
                         "value": "INC-2026-0007", "type": "button", "action_ts": "1700000001.1"}]
        });
        serde_urlencoded::to_string([("payload", payload.to_string())])
            .unwrap()
            .into_bytes()
    }

    fn check(ts: Option<&str>, sig: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
        verify(SECRET, ts, sig, body, NOW)
    }

    #[test]
    fn a_correctly_signed_fresh_request_passes() {
        let ts = NOW.to_string();
        let sig = sign(SECRET, &ts, &body());
        assert_eq!(check(Some(&ts), Some(&sig), &body()), Ok(()));
    }

    #[test]
    fn the_signature_matches_slacks_documented_example() {
        // Slack's "Verifying requests" guide: this secret, timestamp and body sign to this value.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(SECRET, "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        let sig = sign(SECRET, "1531420618", body);
        assert_eq!(
            verify(
                SECRET,
                Some("1531420618"),
                Some(&sig),
                body,
                1531420618 + 10
            ),
            Ok(())
        );
    }

    #[test]
    fn a_signature_made_with_another_secret_is_a_mismatch() {
        let ts = NOW.to_string();
        let sig = sign(b"not-the-secret", &ts, &body());
        assert_eq!(
            check(Some(&ts), Some(&sig), &body()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let ts = NOW.to_string();
        let sig = sign(SECRET, &ts, &body());
        let mut tampered = body();
        let at = tampered.len() - 3;
        tampered[at] ^= 1;
        assert_eq!(
            check(Some(&ts), Some(&sig), &tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_replayed_timestamp_changed_to_look_fresh_is_a_mismatch() {
        let old = (NOW - 3600).to_string();
        let sig = sign(SECRET, &old, &body());
        let now = NOW.to_string();
        assert_eq!(
            check(Some(&now), Some(&sig), &body()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_request_older_than_five_minutes_is_refused_even_if_signed() {
        let ts = (NOW - 301).to_string();
        let sig = sign(SECRET, &ts, &body());
        assert_eq!(
            check(Some(&ts), Some(&sig), &body()),
            Err(SignatureError::TooOld { age_seconds: 301 })
        );
        let ts = (NOW - 300).to_string();
        let sig = sign(SECRET, &ts, &body());
        assert_eq!(check(Some(&ts), Some(&sig), &body()), Ok(()));
    }

    #[test]
    fn a_request_from_more_than_five_minutes_ahead_is_refused() {
        let ts = (NOW + 301).to_string();
        let sig = sign(SECRET, &ts, &body());
        assert_eq!(
            check(Some(&ts), Some(&sig), &body()),
            Err(SignatureError::InFuture { ahead_seconds: 301 })
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_refused_each_with_its_own_error() {
        let ts = NOW.to_string();
        let sig = sign(SECRET, &ts, &body());
        assert_eq!(
            check(None, Some(&sig), &body()),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            check(Some(&ts), None, &body()),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check(Some("yesterday"), Some(&sig), &body()),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check(Some(&ts), Some(&sig[3..]), &body()),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            check(Some(&ts), Some("v0=zz"), &body()),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            check(Some(&ts), Some(&sig[..sig.len() - 2]), &body()),
            Err(SignatureError::MalformedSignature)
        );
    }

    #[test]
    fn headers_are_read_case_insensitively_from_a_header_map() {
        let ts = NOW.to_string();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("X-Slack-Request-Timestamp", ts.parse().unwrap());
        headers.insert(
            "X-Slack-Signature",
            sign(SECRET, &ts, &body()).parse().unwrap(),
        );
        assert_eq!(verify_headers(SECRET, &headers, &body(), NOW), Ok(()));
        headers.remove("x-slack-signature");
        assert_eq!(
            verify_headers(SECRET, &headers, &body(), NOW),
            Err(SignatureError::MissingSignature)
        );
    }

    #[test]
    fn an_acknowledge_click_names_the_incident_and_the_user() {
        let i = parse_interaction(&body()).unwrap();
        assert_eq!(
            i.action,
            InteractionAction::Acknowledge {
                incident_id: "INC-2026-0007".into()
            }
        );
        assert_eq!(i.user_id, "U0ALICE");
        assert_eq!(i.user_name, "alice");
        assert_eq!(
            i.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/T0/1/abc")
        );
        assert_eq!(i.channel_id.as_deref(), Some("C0INCIDENT"));
        assert_eq!(i.message_ts.as_deref(), Some("1700000000.000100"));
    }

    fn form(payload: serde_json::Value) -> Vec<u8> {
        serde_urlencoded::to_string([("payload", payload.to_string())])
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn a_click_on_the_draft_link_is_reported_as_another_action() {
        let body = form(serde_json::json!({
            "type": "block_actions", "user": {"id": "U1", "name": "bob"},
            "actions": [{"action_id": "incidentd_postmortem", "type": "button"}]
        }));
        let i = parse_interaction(&body).unwrap();
        assert_eq!(
            i.action,
            InteractionAction::Other {
                action_id: "incidentd_postmortem".into()
            }
        );
        assert_eq!(i.user_name, "bob");
    }

    #[test]
    fn unreadable_interactions_are_refused_with_the_reason() {
        assert_eq!(
            parse_interaction(b"token=x"),
            Err(InteractionError::MissingPayload)
        );
        assert!(matches!(
            parse_interaction(b"payload=%7Bnot-json"),
            Err(InteractionError::InvalidPayload(_))
        ));
        assert_eq!(
            parse_interaction(&form(serde_json::json!({
                "type": "view_submission", "user": {"id": "U1"}
            }))),
            Err(InteractionError::UnsupportedType("view_submission".into()))
        );
        assert_eq!(
            parse_interaction(&form(serde_json::json!({
                "type": "block_actions", "user": {"id": "U1"}, "actions": []
            }))),
            Err(InteractionError::NoAction)
        );
        assert!(matches!(
            parse_interaction(&form(serde_json::json!({
                "type": "block_actions", "user": {"id": "U1"},
                "actions": [{"action_id": "incidentd_ack", "value": " "}]
            }))),
            Err(InteractionError::InvalidPayload(_))
        ));
    }
}
