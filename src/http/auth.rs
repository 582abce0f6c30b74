//! Credentials on incoming requests: bearer tokens and basic auth, compared in constant time.

use axum::http::{header, HeaderMap};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::Secret;

/// What the webhook accepts. With neither set, the webhook is open.
#[derive(Clone, Default)]
pub struct WebhookAuth {
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<(String, Secret)>,
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = authorization(headers)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether the request carries `Authorization: Bearer <expected>`.
pub(crate) fn bearer_is(expected: &Secret, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|got| equal(expected.expose().as_bytes(), got.as_bytes()))
}

/// `Authorization: Basic` as `(user, password)`.
pub(crate) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = authorization(headers)?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

impl WebhookAuth {
    /// Accept the request if it carries any configured credential.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.bearer_token.is_none() && self.basic_auth.is_none() {
            return Ok(());
        }
        if let Some(expected) = &self.bearer_token {
            if bearer_is(expected, headers) {
                return Ok(());
            }
        }
        if let (Some((user, pass)), Some((got_user, got_pass))) = (&self.basic_auth, basic(headers))
        {
            // Both compared, always, so timing does not tell which one was wrong.
            let u = equal(user.as_bytes(), got_user.as_bytes());
            let p = equal(pass.expose().as_bytes(), got_pass.as_bytes());
            if u & p {
                return Ok(());
            }
        }
        let challenge = if self.bearer_token.is_some() {
            r#"Bearer realm="incidentd""#
        } else {
            r#"Basic realm="incidentd""#
        };
        Err(ApiError::Unauthorized {
            message: if authorization(headers).is_some() {
                "invalid credentials for the webhook".into()
            } else {
                "the webhook needs credentials (Authorization header)".into()
            },
            challenge,
        })
    }
}

/// Guard the writing API routes with the API token, when one is configured.
pub fn check_api_token(token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = token else { return Ok(()) };
    match bearer(headers) {
        _ if bearer_is(expected, headers) => Ok(()),
        got => Err(ApiError::Unauthorized {
            message: if got.is_some() {
                "invalid API token".into()
            } else {
                "this route needs the API token (Authorization: Bearer …)".into()
            },
            challenge: r#"Bearer realm="incidentd""#,
        }),
    }
}
