//! The Prometheus HTTP API client: `/api/v1/query`, `/api/v1/query_range`, `/api/v1/rules`,
//! `/api/v1/alerts`, their JSON shapes, the error envelope, and the one place that decides
//! whether a failure is worth retrying ([`Error::is_retryable`]).
//!
//! Thanos and Mimir speak the same API, often behind a proxy, hence the optional bearer or
//! basic auth and free-form headers, and a base URL that may carry a path prefix.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::incident::LabelSet;

/// Prometheus refuses range queries with more points than this per series.
pub const MAX_POINTS_PER_SERIES: u64 = 11_000;

/// How to reach a Prometheus-compatible API. The lead's config maps onto this.
#[derive(Clone)]
pub struct ClientOptions {
    /// Base URL, e.g. `http://prometheus:9090` or `https://proxy/prometheus/` (prefix kept).
    pub url: String,
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    pub bearer_token: Option<String>,
    /// `(username, password)`.
    pub basic_auth: Option<(String, String)>,
    /// Extra headers sent on every request (e.g. `X-Scope-OrgID` for Mimir).
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets print as <secret> so options can be logged.
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<secret>"),
            )
            .field(
                "basic_auth",
                &self
                    .basic_auth
                    .as_ref()
                    .map(|(u, _)| (u.as_str(), "<secret>")),
            )
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| (k.as_str(), "<secret>"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a Prometheus call failed. [`Error::is_retryable`] says whether to try again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options cannot make a client: bad URL, header name or value, TLS setup.
    #[error("invalid Prometheus client options: {0}")]
    InvalidOptions(String),
    /// No complete answer within the configured timeout.
    #[error("Prometheus {endpoint} did not answer within {timeout:?}")]
    Timeout {
        endpoint: &'static str,
        timeout: Duration,
    },
    /// Could not connect, or the connection broke before a full answer.
    #[error(
        "cannot reach Prometheus {endpoint} at {url}: {}",
        crate::net_error::describe(source)
    )]
    Unreachable {
        endpoint: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered with its error envelope (`{"status":"error",...}`).
    #[error("Prometheus {endpoint} answered HTTP {status}, {error_type}: {message}")]
    Api {
        endpoint: &'static str,
        status: u16,
        /// Prometheus's `errorType`: `bad_data`, `execution`, `timeout`, `internal`, ...
        error_type: String,
        message: String,
    },
    /// A failure status without an envelope: usually a proxy or load balancer in front.
    #[error("Prometheus {endpoint} answered HTTP {status}: {body}")]
    Http {
        endpoint: &'static str,
        status: u16,
        /// The start of the body, for the log.
        body: String,
    },
    /// A success answer that is not the JSON this client expects.
    #[error("cannot decode Prometheus {endpoint} answer: {message}")]
    Decode {
        endpoint: &'static str,
        message: String,
    },
}

impl Error {
    /// The one place that decides retry versus give up: timeouts, connection failures, 5xx,
    /// 429 (and 408) and Prometheus's own `timeout`/`canceled`/`unavailable`/`internal` errors
    /// are worth retrying; bad queries (`bad_data`, `execution`, other 4xx), undecodable
    /// answers and bad options are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Unreachable { .. } => true,
            Error::Api {
                error_type, status, ..
            } => match error_type.as_str() {
                "bad_data" | "execution" | "not_found" | "not_acceptable" => false,
                "timeout" | "canceled" | "unavailable" | "internal" => true,
                _ => retryable_status(*status),
            },
            Error::Http { status, .. } => retryable_status(*status),
            Error::InvalidOptions(_) | Error::Decode { .. } => false,
        }
    }
}

fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// One `[timestamp, "value"]` pair; `NaN` and `±Inf` decode as such.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "(f64, String)")]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

impl TryFrom<(f64, String)> for Point {
    type Error = String;

    fn try_from((ts, v): (f64, String)) -> Result<Self, Self::Error> {
        let at = timestamp_from_secs(ts).ok_or_else(|| format!("timestamp {ts} out of range"))?;
        let value = parse_sample_value(&v).ok_or_else(|| format!("sample value {v:?}"))?;
        Ok(Point { at, value })
    }
}

/// Prometheus timestamps are float seconds with millisecond precision.
pub(crate) fn timestamp_from_secs(ts: f64) -> Option<DateTime<Utc>> {
    if !ts.is_finite() {
        return None;
    }
    DateTime::from_timestamp_millis((ts * 1000.0).round() as i64)
}

fn parse_sample_value(v: &str) -> Option<f64> {
    match v {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok(),
    }
}

/// One series of a range query (`resultType: matrix`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeSeries {
    pub metric: LabelSet,
    /// Float samples; native-histogram samples (`histograms`) are not used and are skipped.
    #[serde(default)]
    pub values: Vec<Point>,
}

/// One sample of an instant query (`resultType: vector`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstantSample {
    pub metric: LabelSet,
    /// Absent for a native-histogram sample.
    #[serde(default)]
    pub value: Option<Point>,
}

/// The `data` of a query answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    Matrix(Vec<RangeSeries>),
    Vector(Vec<InstantSample>),
    Scalar(Point),
    String(serde_json::Value),
}

/// `/api/v1/rules` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RulesData {
    pub groups: Vec<RuleGroup>,
}

/// A rule group: its evaluation interval is the natural resolution for re-evaluating its rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    /// vmalert's group ID (the `group_id` of its alerts' generatorURLs); empty from Prometheus.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub file: String,
    /// Evaluation interval in seconds.
    #[serde(default)]
    pub interval: f64,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl RuleGroup {
    /// The evaluation interval, when Prometheus reported a positive one.
    pub fn interval(&self) -> Option<Duration> {
        secs_to_duration(self.interval).filter(|d| !d.is_zero())
    }
}

pub(crate) fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_millis((secs * 1000.0).round() as u64))
}

/// A rule in a group; only alerting rules matter here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Rule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
    /// A rule type this client does not know about.
    #[serde(other)]
    Other,
}

/// A recording rule (kept so decoding a whole answer succeeds).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordingRule {
    pub name: String,
    #[serde(default)]
    pub query: String,
}

/// An alerting rule as `/api/v1/rules` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlertingRule {
    pub name: String,
    /// The expression, as Prometheus re-printed it (label matchers may be reordered).
    pub query: String,
    /// `for`, in seconds.
    #[serde(default)]
    pub duration: f64,
    /// `keep_firing_for`, in seconds (Prometheus ≥ 2.42).
    #[serde(default, rename = "keepFiringFor")]
    pub keep_firing_for: f64,
    #[serde(default)]
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    #[serde(default)]
    pub alerts: Vec<ActiveAlert>,
    #[serde(default)]
    pub health: String,
    #[serde(default)]
    pub state: String,
}

/// An alert as vmalert's `/api/v1/alert?group_id=…&alert_id=…` reports it (vmalert's
/// `APIAlert`: the JSON object itself, no envelope). vmalert alerts' generatorURL points there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VmalertAlert {
    /// The alerting rule's name.
    pub name: String,
    /// The rule's expression.
    pub expression: String,
    /// The alert's labels (the rule's static labels among them).
    #[serde(default)]
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    #[serde(default)]
    pub group_id: String,
    #[serde(default)]
    pub rule_id: String,
}

/// An alert as `/api/v1/alerts` (or a rule's `alerts`) reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActiveAlert {
    pub labels: LabelSet,
    #[serde(default)]
    pub annotations: LabelSet,
    /// `pending` or `firing`.
    pub state: String,
    /// When the condition became true *at an evaluation* (pending start).
    #[serde(default, rename = "activeAt")]
    pub active_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<ActiveAlert>,
}

/// The envelope every API answer comes in.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// A Prometheus HTTP API client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Without the configured credentials and headers: for URLs of another origin than
    /// `base` (a vmalert generatorURL), which must not be sent Prometheus's secrets.
    plain: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client; fails on a URL that is not http(s) or a header that HTTP cannot carry.
    pub fn new(options: &ClientOptions) -> Result<Client, Error> {
        let url = reqwest::Url::parse(&options.url)
            .map_err(|e| Error::InvalidOptions(format!("url {:?}: {e}", options.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::InvalidOptions(format!(
                "url {:?}: scheme must be http or https",
                options.url
            )));
        }
        if options.timeout.is_zero() {
            return Err(Error::InvalidOptions("timeout must be positive".into()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::InvalidOptions(format!("header name {name:?}")))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| Error::InvalidOptions(format!("value of header {name:?}")))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let auth = match (&options.bearer_token, &options.basic_auth) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidOptions(
                    "bearer_token and basic_auth are mutually exclusive".into(),
                ))
            }
            (Some(token), None) => Some(format!("Bearer {}", token.trim())),
            (None, Some((user, pass))) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            )),
            (None, None) => None,
        };
        if let Some(auth) = auth {
            let mut v = HeaderValue::from_str(&auth)
                .map_err(|_| Error::InvalidOptions("credentials are not a valid header".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(options.timeout)
            .default_headers(headers)
            .user_agent(concat!("incidentd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidOptions(format!("HTTP client: {e}")))?;
        let plain = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(options.timeout)
            .user_agent(concat!("incidentd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidOptions(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            plain,
            base: options.url.trim_end_matches('/').to_string(),
            timeout: options.timeout,
        })
    }

    /// The base URL (no trailing slash), for links such as a graph of the incident window.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Instant query at `at`.
    pub async fn query(&self, expr: &str, at: DateTime<Utc>) -> Result<QueryData, Error> {
        let form = [("query", expr.to_string()), ("time", prom_time(at))];
        self.call("query", self.http.post(self.url("query")).form(&form))
            .await
    }

    /// Range query over `[start, end]`. `step` is raised when needed so no series exceeds
    /// [`MAX_POINTS_PER_SERIES`]; [`step_for_range`] tells the caller which step was used.
    pub async fn query_range(
        &self,
        expr: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, Error> {
        let step = step_for_range(start, end, step);
        let form = [
            ("query", expr.to_string()),
            ("start", prom_time(start)),
            ("end", prom_time(end)),
            ("step", format!("{:.3}", step.as_secs_f64())),
        ];
        let data: QueryData = self
            .call(
                "query_range",
                self.http.post(self.url("query_range")).form(&form),
            )
            .await?;
        match data {
            QueryData::Matrix(series) => Ok(series),
            other => Err(Error::Decode {
                endpoint: "query_range",
                message: format!("expected a matrix, got {}", result_type(&other)),
            }),
        }
    }

    /// All rule groups (alerting rules only are asked for).
    pub async fn rules(&self) -> Result<RulesData, Error> {
        let req = self.http.get(self.url("rules")).query(&[("type", "alert")]);
        self.call("rules", req).await
    }

    /// Active (pending and firing) alerts.
    pub async fn alerts(&self) -> Result<Vec<ActiveAlert>, Error> {
        let data: AlertsData = self
            .call("alerts", self.http.get(self.url("alerts")))
            .await?;
        Ok(data.alerts)
    }

    /// `/api/v1/rules` at another URL (vmalert's, found from an alert's generatorURL).
    /// Credentials go only to the configured origin.
    pub async fn rules_at(&self, url: &str) -> Result<RulesData, Error> {
        let req = self.http_for(url).get(url).query(&[("type", "alert")]);
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport("vmalert rules", url, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport("vmalert rules", url, e))?;
        decode_answer("vmalert rules", status, &body)
    }

    /// vmalert's alert JSON at `url` (an alert's generatorURL, made to point at the API).
    pub async fn vmalert_alert(&self, url: &str) -> Result<VmalertAlert, Error> {
        let endpoint = "vmalert alert";
        let resp = self
            .http_for(url)
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport(endpoint, url, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(endpoint, url, e))?;
        if !(200..300).contains(&status) {
            return Err(Error::Http {
                endpoint,
                status,
                body: excerpt(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            endpoint,
            message: format!("{e}: {}", excerpt(&body)),
        })
    }

    /// The authenticated client for the configured origin, the plain one elsewhere.
    fn http_for(&self, url: &str) -> &reqwest::Client {
        let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
        if origin(url).is_some() && origin(url) == origin(&self.base) {
            &self.http
        } else {
            &self.plain
        }
    }

    fn transport(&self, endpoint: &'static str, url: &str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                endpoint,
                timeout: self.timeout,
            }
        } else {
            Error::Unreachable {
                endpoint,
                url: url.to_string(),
                source: e.without_url(),
            }
        }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/v1/{endpoint}", self.base)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let transport = |e: reqwest::Error| self.transport(endpoint, &self.base, e);
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        decode_answer(endpoint, status, &body)
    }
}

/// Turns an HTTP status and body into data or the right [`Error`]. Pure, so tests can feed it
/// recorded answers.
pub(crate) fn decode_answer<T: DeserializeOwned>(
    endpoint: &'static str,
    status: u16,
    body: &[u8],
) -> Result<T, Error> {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    match envelope {
        Some(env) if env.status == "success" && (200..300).contains(&status) => {
            if !env.warnings.is_empty() {
                tracing::warn!(endpoint, warnings = ?env.warnings, "Prometheus answered with warnings");
            }
            let data = env.data.ok_or_else(|| Error::Decode {
                endpoint,
                message: "success answer without data".into(),
            })?;
            serde_path_to_error::deserialize(data).map_err(|e| Error::Decode {
                endpoint,
                message: format!("at {}: {}", e.path(), e.inner()),
            })
        }
        Some(env) if env.status == "error" => Err(Error::Api {
            endpoint,
            status,
            error_type: env.error_type.unwrap_or_default(),
            message: env.error.unwrap_or_default(),
        }),
        _ if !(200..300).contains(&status) => Err(Error::Http {
            endpoint,
            status,
            body: excerpt(body),
        }),
        _ => Err(Error::Decode {
            endpoint,
            message: format!("not a Prometheus API answer: {}", excerpt(body)),
        }),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn result_type(d: &QueryData) -> &'static str {
    match d {
        QueryData::Matrix(_) => "matrix",
        QueryData::Vector(_) => "vector",
        QueryData::Scalar(_) => "scalar",
        QueryData::String(_) => "string",
    }
}

/// Unix seconds with milliseconds, the form every Prometheus-compatible API accepts.
fn prom_time(t: DateTime<Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

/// The step to use for `[start, end]`: `wanted` (at least 1 ms), raised to the smallest
/// whole-millisecond step that keeps every series within [`MAX_POINTS_PER_SERIES`] points.
pub fn step_for_range(start: DateTime<Utc>, end: DateTime<Utc>, wanted: Duration) -> Duration {
    let range_ms = u64::try_from((end - start).num_milliseconds()).unwrap_or(0);
    // floor(range / step) + 1 points; keeping floor(range / step) ≤ MAX − 1 bounds it.
    let min_ms = range_ms.div_ceil(MAX_POINTS_PER_SERIES - 1).max(1);
    wanted.max(Duration::from_millis(min_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn step_is_raised_so_a_range_never_exceeds_eleven_thousand_points() {
        let start = at("2026-01-01T00:00:00Z");
        for (days, wanted) in [(1, 1), (30, 1), (365, 15), (0, 1)] {
            let end = start + chrono::Duration::days(days);
            let step = step_for_range(start, end, Duration::from_secs(wanted));
            let range_ms = (end - start).num_milliseconds() as u128;
            let points = range_ms / step.as_millis() + 1;
            assert!(
                points <= 11_000,
                "{days}d at {step:?} gives {points} points"
            );
            assert!(step >= Duration::from_secs(wanted));
        }
        // A short range keeps the wanted step untouched.
        let end = start + chrono::Duration::hours(1);
        assert_eq!(
            step_for_range(start, end, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn error_envelope_becomes_an_api_error_and_bad_data_is_permanent() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#;
        let err = decode_answer::<QueryData>("query", 400, body).unwrap_err();
        match &err {
            Error::Api {
                status,
                error_type,
                message,
                ..
            } => {
                assert_eq!(*status, 400);
                assert_eq!(error_type, "bad_data");
                assert!(message.contains("parse error"));
            }
            other => panic!("expected Api error, got {other:?}"),
        }
        assert!(!err.is_retryable());
    }

    #[test]
    fn retry_decision_follows_status_and_error_type() {
        let api = |status, t: &str| Error::Api {
            endpoint: "query",
            status,
            error_type: t.into(),
            message: String::new(),
        };
        let http = |status| Error::Http {
            endpoint: "query",
            status,
            body: String::new(),
        };
        assert!(api(503, "timeout").is_retryable());
        assert!(api(500, "internal").is_retryable());
        assert!(api(503, "unavailable").is_retryable());
        assert!(!api(422, "execution").is_retryable());
        assert!(!api(400, "bad_data").is_retryable());
        assert!(api(502, "something_new").is_retryable());
        assert!(!api(403, "something_new").is_retryable());
        assert!(http(502).is_retryable());
        assert!(http(429).is_retryable());
        assert!(!http(401).is_retryable());
        assert!(!http(404).is_retryable());
        assert!(Error::Timeout {
            endpoint: "query",
            timeout: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(!Error::InvalidOptions("x".into()).is_retryable());
    }

    #[test]
    fn a_proxy_error_page_is_an_http_error_with_an_excerpt() {
        let err =
            decode_answer::<RulesData>("rules", 502, b"<html>Bad Gateway</html>").unwrap_err();
        assert!(
            matches!(err, Error::Http { status: 502, ref body, .. } if body.contains("Bad Gateway"))
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn recorded_answers_decode() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/scenario-single/prometheus-peak/"
        );
        let read = |f: &str| std::fs::read(format!("{dir}{f}")).expect("fixture");
        let rules: RulesData =
            decode_answer("rules", 200, &read("prom-api-v1-rules.json")).expect("rules");
        assert_eq!(rules.groups[0].interval(), Some(Duration::from_secs(1)));
        let Rule::Alerting(r) = &rules.groups[0].rules[0] else {
            panic!("first rule is an alerting rule")
        };
        assert_eq!(r.name, "DatabaseConnectionPoolHigh");
        assert_eq!(r.duration, 5.0);
        let alerts: AlertsData =
            decode_answer("alerts", 200, &read("prom-api-v1-alerts.json")).expect("alerts");
        assert_eq!(alerts.alerts.len(), 3);
        assert_eq!(
            alerts.alerts[0].active_at,
            Some(at("2026-11-23T02:26:23.738522132Z"))
        );
        let data: QueryData = decode_answer(
            "query_range",
            200,
            &read("prom-api-v1-query_range-pool-ratio.json"),
        )
        .expect("range");
        let QueryData::Matrix(series) = data else {
            panic!("matrix expected")
        };
        assert_eq!(series[0].values[0].at, at("2026-11-23T02:26:12.381Z"));
        assert_eq!(series[0].values[0].value, 0.2);
    }

    #[test]
    fn special_sample_values_decode() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1700000000,"NaN"]},
            {"metric":{"a":"2"},"value":[1700000000.5,"+Inf"]},
            {"metric":{"a":"3"},"value":[1700000000,"-Inf"]}]}}"#;
        let QueryData::Vector(v) = decode_answer("query", 200, body).expect("vector") else {
            panic!("vector expected")
        };
        let vals: Vec<f64> = v.iter().map(|s| s.value.expect("float").value).collect();
        assert!(vals[0].is_nan());
        assert_eq!(vals[1], f64::INFINITY);
        assert_eq!(vals[2], f64::NEG_INFINITY);
        assert_eq!(v[1].value.expect("float").at.timestamp_subsec_millis(), 500);
    }

    #[test]
    fn options_debug_output_hides_secrets() {
        let o = ClientOptions {
            url: "http://p:9090".into(),
            timeout: Duration::from_secs(1),
            bearer_token: Some("tok-123".into()),
            basic_auth: Some(("me".into(), "pw-456".into())),
            headers: vec![("X-Scope-OrgID".into(), "tenant-789".into())],
        };
        let s = format!("{o:?}");
        for secret in ["tok-123", "pw-456", "tenant-789"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(
            Client::new(&o).is_err(),
            "bearer and basic together are refused"
        );
    }
}
