//! The Slack HTTP client, in one of two modes:
//!
//! - **bot token**: the Web API (`chat.postMessage`, `chat.update`) under a
//!   configurable `api_url`, JSON bodies with `Authorization: Bearer <token>`.
//!   Messages can be threaded and updated in place.
//! - **incoming webhook**: one POST per message to the webhook URL. Slack gives
//!   back no `ts`, so there are no threads and no updates in this mode.
//!
//! This module owns the one decision of what is worth retrying:
//! [`SlackError::retry`]. Secrets (the bot token, the webhook URL, which is a
//! secret itself) never appear in logs, errors or `Debug` output.

use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use super::message::Message;

/// Slack's Web API base URL, the default `slack.api_url`.
pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

/// How long one call to Slack may take before it counts as a network failure.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `ok:false` errors that Slack documents as transient; every other one is permanent.
const TRANSIENT_API_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

pub use crate::config::Secret;

/// Which way messages reach Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Web API with a bot token: threads and updates.
    Bot,
    /// Incoming webhook: one message per event.
    Webhook,
}

#[derive(Debug, Clone)]
enum Target {
    Bot { api_url: String, token: Secret },
    Webhook { url: Secret },
}

/// Where a posted message lives: the channel **ID** Slack answered with (which
/// `chat.update` needs, a `#name` will not do) and the message's `ts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying cannot help (bad token, unknown channel, message too long...).
    Never,
    /// Try again later, with the caller's backoff.
    Backoff,
    /// Try again after exactly this long (Slack's `Retry-After`).
    After(Duration),
}

/// Why a call to Slack failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlackError {
    /// Slack could not be reached, or did not answer within the timeout.
    #[error("cannot reach Slack: {}", crate::net_error::describe(.0))]
    Network(#[source] reqwest::Error),
    /// Slack answered 429, or `ok:false` with `ratelimited`.
    #[error("rate limited by Slack (Retry-After: {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// An HTTP status other than 2xx and 429 (webhooks answer 4xx for bad
    /// payloads and unknown channels, anything may answer 5xx).
    #[error("Slack answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The Web API answered `"ok": false` with this error code.
    #[error("Slack {method} failed: {error}")]
    Api { method: &'static str, error: String },
    /// The answer was not what the API documents (not JSON, no `ts`...).
    #[error("unexpected answer from Slack {method}: {detail}")]
    InvalidResponse {
        method: &'static str,
        detail: String,
    },
    /// The client cannot do this in its mode (threads with a webhook), or its
    /// configuration is unusable.
    #[error("Slack client: {0}")]
    Config(String),
}

impl SlackError {
    /// The one place that decides whether a failure is worth retrying.
    /// Network errors, 5xx, 408, 429/`ratelimited` and Slack's documented
    /// transient errors are retried; `ok:false` errors such as
    /// `channel_not_found`, `invalid_auth`, `not_in_channel` or `msg_too_long`
    /// and other 4xx are not.
    pub fn retry(&self) -> Retry {
        match self {
            SlackError::Network(_) | SlackError::InvalidResponse { .. } => Retry::Backoff,
            SlackError::RateLimited {
                retry_after: Some(d),
            } => Retry::After(*d),
            SlackError::RateLimited { retry_after: None } => Retry::Backoff,
            SlackError::Http { status, .. } if *status >= 500 || *status == 408 => Retry::Backoff,
            SlackError::Http { .. } => Retry::Never,
            SlackError::Api { error, .. } if TRANSIENT_API_ERRORS.contains(&error.as_str()) => {
                Retry::Backoff
            }
            SlackError::Api { .. } | SlackError::Config(_) => Retry::Never,
        }
    }

    /// When to try again after this failure on the `attempt`-th try (1-based):
    /// `None` for never; `Retry-After` as Slack said; else exponential backoff.
    pub fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        match self.retry() {
            Retry::Never => None,
            Retry::After(d) => Some(d),
            Retry::Backoff => Some(crate::retry::SLACK.after(attempt)),
        }
    }
}

/// The Web API's answer envelope (the fields incidentd reads).
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

/// `chat.postMessage` / `chat.update` / webhook body.
#[derive(Debug, Serialize)]
struct MessageBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    text: &'a str,
    blocks: &'a [super::message::Block],
    #[serde(skip_serializing_if = "Option::is_none")]
    unfurl_links: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unfurl_media: Option<bool>,
}

/// Talks to Slack in one [`Mode`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    target: Target,
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, SlackError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("incidentd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SlackError::Config(format!("cannot build HTTP client: {e}")))
}

impl SlackClient {
    /// A bot-token client against `api_url` (e.g. [`DEFAULT_API_URL`]).
    pub fn bot(api_url: &str, token: Secret, timeout: Duration) -> Result<SlackClient, SlackError> {
        let parsed = reqwest::Url::parse(api_url)
            .map_err(|e| SlackError::Config(format!("slack.api_url {api_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SlackError::Config(format!(
                "slack.api_url {api_url:?}: must be http or https"
            )));
        }
        let mut api_url = api_url.to_string();
        if !api_url.ends_with('/') {
            api_url.push('/');
        }
        Ok(SlackClient {
            http: http_client(timeout)?,
            target: Target::Bot { api_url, token },
        })
    }

    /// An incoming-webhook client. The URL is a secret: anyone holding it can post.
    pub fn webhook(url: Secret, timeout: Duration) -> Result<SlackClient, SlackError> {
        // Do not echo the URL in the error: it is the credential.
        reqwest::Url::parse(url.expose())
            .map_err(|e| SlackError::Config(format!("slack webhook URL does not parse: {e}")))?;
        Ok(SlackClient {
            http: http_client(timeout)?,
            target: Target::Webhook { url },
        })
    }

    pub fn mode(&self) -> Mode {
        match self.target {
            Target::Bot { .. } => Mode::Bot,
            Target::Webhook { .. } => Mode::Webhook,
        }
    }

    /// `chat.postMessage` to `channel` (a `#name` or an ID), as a reply in the
    /// thread `thread_ts` when given. Returns the channel ID and the message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<Posted, SlackError> {
        let body = MessageBody {
            channel: Some(channel),
            ts: None,
            thread_ts,
            text: &message.text,
            blocks: &message.blocks,
            unfurl_links: Some(false),
            unfurl_media: Some(false),
        };
        self.call_api("chat.postMessage", &body).await
    }

    /// `chat.update` of the message `ts` in `channel` (the channel **ID**).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        message: &Message,
    ) -> Result<Posted, SlackError> {
        let body = MessageBody {
            channel: Some(channel),
            ts: Some(ts),
            thread_ts: None,
            text: &message.text,
            blocks: &message.blocks,
            unfurl_links: None,
            unfurl_media: None,
        };
        self.call_api("chat.update", &body).await
    }

    /// Posts one message to the incoming webhook.
    pub async fn post_webhook(&self, message: &Message) -> Result<(), SlackError> {
        let Target::Webhook { url } = &self.target else {
            return Err(SlackError::Config(
                "post_webhook needs an incoming-webhook client".into(),
            ));
        };
        let body = MessageBody {
            channel: None,
            ts: None,
            thread_ts: None,
            text: &message.text,
            blocks: &message.blocks,
            unfurl_links: Some(false),
            unfurl_media: Some(false),
        };
        let response = self
            .http
            .post(url.expose())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(
                serde_json::to_vec(&body).map_err(|e| SlackError::InvalidResponse {
                    method: "webhook",
                    detail: format!("cannot encode message: {e}"),
                })?,
            )
            .send()
            .await
            // The webhook URL is the credential: keep it out of the error.
            .map_err(|e| SlackError::Network(e.without_url()))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| SlackError::Network(e.without_url()))?;
        tracing::debug!(status = status.as_u16(), "slack webhook answered");
        http_outcome(status, retry_after, &text)?;
        Ok(())
    }

    /// `users.info`: the name people know a user by (`real_name`, else the profile's
    /// `display_name`, else the handle).
    pub async fn user_name(&self, user: &str) -> Result<String, SlackError> {
        const METHOD: &str = "users.info";
        let Target::Bot { api_url, token } = &self.target else {
            return Err(SlackError::Config(format!("{METHOD} needs a bot token")));
        };
        let response = self
            .http
            .post(format!("{api_url}{METHOD}"))
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .form(&[("user", user)])
            .send()
            .await
            .map_err(SlackError::Network)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(SlackError::Network)?;
        http_outcome(status, retry_after, &text)?;
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| SlackError::InvalidResponse {
                method: METHOD,
                detail: format!("not a Web API answer ({e}): {}", short(&text)),
            })?;
        if answer["ok"] != serde_json::Value::Bool(true) {
            let error = answer["error"]
                .as_str()
                .unwrap_or("unknown_error")
                .to_string();
            if error == "ratelimited" {
                return Err(SlackError::RateLimited { retry_after });
            }
            return Err(SlackError::Api {
                method: METHOD,
                error,
            });
        }
        let u = &answer["user"];
        let name = [
            &u["real_name"],
            &u["profile"]["real_name"],
            &u["profile"]["display_name"],
            &u["name"],
        ]
        .into_iter()
        .filter_map(|v| v.as_str())
        .map(str::trim)
        .find(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or(SlackError::InvalidResponse {
            method: METHOD,
            detail: "the user has no name".into(),
        });
        name
    }

    async fn call_api(
        &self,
        method: &'static str,
        body: &MessageBody<'_>,
    ) -> Result<Posted, SlackError> {
        let Target::Bot { api_url, token } = &self.target else {
            return Err(SlackError::Config(format!(
                "{method} needs a bot token; an incoming webhook cannot thread or update"
            )));
        };
        let encoded = serde_json::to_vec(body).map_err(|e| SlackError::InvalidResponse {
            method,
            detail: format!("cannot encode message: {e}"),
        })?;
        let response = self
            .http
            .post(format!("{api_url}{method}"))
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(encoded)
            .send()
            .await
            .map_err(SlackError::Network)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(SlackError::Network)?;
        tracing::debug!(method, status = status.as_u16(), "slack answered");
        http_outcome(status, retry_after, &text)?;
        let answer: ApiAnswer =
            serde_json::from_str(&text).map_err(|e| SlackError::InvalidResponse {
                method,
                detail: format!("not a Web API answer ({e}): {}", short(&text)),
            })?;
        if !answer.ok {
            let error = answer.error.unwrap_or_else(|| "unknown_error".to_string());
            if error == "ratelimited" || error == "rate_limited" {
                return Err(SlackError::RateLimited { retry_after });
            }
            return Err(SlackError::Api { method, error });
        }
        match (answer.channel, answer.ts) {
            (Some(channel), Some(ts)) => Ok(Posted { channel, ts }),
            _ => Err(SlackError::InvalidResponse {
                method,
                detail: "ok:true without channel and ts".to_string(),
            }),
        }
    }
}

/// `Retry-After` in seconds, as Slack sends it.
/// Slack's HTTP status as an outcome: 429 is rate limiting (with its `Retry-After`), any
/// other failure an HTTP error with the start of the body.
fn http_outcome(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    text: &str,
) -> Result<(), SlackError> {
    if status.as_u16() == 429 {
        return Err(SlackError::RateLimited { retry_after });
    }
    if !status.is_success() {
        return Err(SlackError::Http {
            status: status.as_u16(),
            body: short(text),
        });
    }
    Ok(())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Bodies go into error messages: keep them short.
fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(error: &str) -> SlackError {
        SlackError::Api {
            method: "chat.postMessage",
            error: error.to_string(),
        }
    }

    #[test]
    fn permanent_api_errors_are_never_retried() {
        for e in [
            "channel_not_found",
            "invalid_auth",
            "not_in_channel",
            "msg_too_long",
            "not_authed",
            "is_archived",
        ] {
            assert_eq!(api(e).retry(), Retry::Never, "{e}");
        }
    }

    #[test]
    fn transient_api_errors_server_errors_and_timeouts_are_retried_with_backoff() {
        assert_eq!(api("internal_error").retry(), Retry::Backoff);
        assert_eq!(api("service_unavailable").retry(), Retry::Backoff);
        for status in [500, 502, 503, 408] {
            let e = SlackError::Http {
                status,
                body: String::new(),
            };
            assert_eq!(e.retry(), Retry::Backoff, "{status}");
        }
        let e = SlackError::Http {
            status: 404,
            body: "channel_not_found".into(),
        };
        assert_eq!(e.retry(), Retry::Never);
    }

    #[test]
    fn rate_limits_wait_exactly_what_retry_after_says() {
        let e = SlackError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(e.retry(), Retry::After(Duration::from_secs(30)));
        assert_eq!(e.retry_delay(7), Some(Duration::from_secs(30)));
        let e = SlackError::RateLimited { retry_after: None };
        assert_eq!(e.retry_delay(1), Some(crate::retry::SLACK.after(1)));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let client = SlackClient::bot(
            "https://slack.com/api/",
            Secret::new("xoxb-very-secret"),
            DEFAULT_TIMEOUT,
        )
        .expect("client");
        assert!(!format!("{client:?}").contains("xoxb-very-secret"));
        let hook = SlackClient::webhook(
            Secret::new("https://hooks.slack.com/services/T0/B0/hush"),
            DEFAULT_TIMEOUT,
        )
        .expect("client");
        assert!(!format!("{hook:?}").contains("hush"));
    }

    #[test]
    fn an_api_url_that_is_not_http_is_refused() {
        let e = SlackClient::bot("ftp://x/", Secret::new("t"), DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("slack.api_url"), "{e}");
    }
}
