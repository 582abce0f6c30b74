//! The YAML configuration: loading, embedded defaults, validation, secrets and durations.
//!
//! This module owns everything between a configuration file on disk and a [`Config`] the rest
//! of the daemon can trust: it parses strictly (unknown keys anywhere are errors), fills in the
//! defaults of DESIGN.md, resolves secrets, resolves relative paths and validates every value.
//! Every [`ConfigError`] names the file and the key path (`web.webhook_auth.bearer_token_file`).
//!
//! # Secrets
//!
//! Secrets never appear inline in the YAML. Each one comes from a `*_file` key (the file's
//! content, with trailing newlines trimmed) or from an environment variable:
//!
//! | secret | file key | environment variable |
//! |---|---|---|
//! | webhook bearer token | `web.webhook_auth.bearer_token_file` | `INCIDENTD_WEBHOOK_BEARER_TOKEN` |
//! | webhook basic-auth password | `web.webhook_auth.basic_auth.password_file` | `INCIDENTD_WEBHOOK_PASSWORD` |
//! | API token | `web.api_token_file` | `INCIDENTD_API_TOKEN` |
//! | Prometheus bearer token | `prometheus.bearer_token_file` | `INCIDENTD_PROMETHEUS_BEARER_TOKEN` |
//! | Prometheus password | `prometheus.basic_auth.password_file` | `INCIDENTD_PROMETHEUS_PASSWORD` |
//! | Alertmanager bearer token | `alertmanager.bearer_token_file` | `INCIDENTD_ALERTMANAGER_BEARER_TOKEN` |
//! | Alertmanager password | `alertmanager.basic_auth.password_file` | `INCIDENTD_ALERTMANAGER_PASSWORD` |
//! | Slack bot token | `slack.bot_token_file` | `INCIDENTD_SLACK_BOT_TOKEN` |
//! | Slack signing secret | `slack.signing_secret_file` | `INCIDENTD_SLACK_SIGNING_SECRET` |
//! | Slack incoming-webhook URL | `slack.webhook_url_file` | `INCIDENTD_SLACK_WEBHOOK_URL` |
//! | PostgreSQL connection string | `storage.postgres.url_file` | `INCIDENTD_POSTGRES_URL` |
//!
//! The PostgreSQL connection string is the one secret that may also be inline
//! (`storage.postgres.url`), and only when it holds no password; with one, it is refused like
//! any inline secret. `url` and `url_file` are exclusive; either wins over the variable.
//!
//! A `*_file` key in the YAML wins over the environment variable (a warning is logged when
//! both are set): the file is the explicit, reviewed, `check-config`-validated source, and an
//! inherited environment must not silently replace a configured credential. Environment
//! variables for a section that is absent are ignored (no `prometheus:` section, no Prometheus),
//! with one exception that keeps the daemon closed rather than open:
//! `INCIDENTD_WEBHOOK_BEARER_TOKEN` and `INCIDENTD_API_TOKEN` turn authentication on even when
//! `web.webhook_auth` / `web.api_token_file` are absent, including on embedded defaults
//! ([`Config::from_env`]). A secret file that is missing, unreadable or empty, and an empty
//! environment variable, are errors that name the key and the file or variable, never the value.
//! [`Secret`] prints as `<secret>` in `Debug` and `Display`.
//!
//! # Relative paths
//!
//! As in Prometheus, files the configuration points at (`*_file`, `postmortem.template`,
//! `rules_dir`) are relative to the directory of the configuration file; directories incidentd
//! writes to (`storage.path`, `postmortem.output_dir`) are relative to the working directory,
//! like Prometheus' `--storage.tsdb.path`. With no configuration file, everything is relative to
//! the working directory.
//!
//! # Durations
//!
//! Durations are strings in Prometheus form, parsed by [`parse_duration`]: a sequence of
//! `<integer><unit>` with units `y` (365 days), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once
//! and largest first (`1h30m`), or `0`.

pub mod postgres;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de;
use serde::Deserialize;

use crate::time::{format_duration, parse_duration};

/// Environment variable for `web.webhook_auth.bearer_token`.
pub const ENV_WEBHOOK_BEARER_TOKEN: &str = "INCIDENTD_WEBHOOK_BEARER_TOKEN";
/// Environment variable for `web.webhook_auth.basic_auth.password`.
pub const ENV_WEBHOOK_PASSWORD: &str = "INCIDENTD_WEBHOOK_PASSWORD";
/// Environment variable for `web.api_token`.
pub const ENV_API_TOKEN: &str = "INCIDENTD_API_TOKEN";
/// Environment variable for `prometheus.bearer_token`.
pub const ENV_PROMETHEUS_BEARER_TOKEN: &str = "INCIDENTD_PROMETHEUS_BEARER_TOKEN";
/// Environment variable for `prometheus.basic_auth.password`.
pub const ENV_PROMETHEUS_PASSWORD: &str = "INCIDENTD_PROMETHEUS_PASSWORD";
/// Environment variable for `alertmanager.bearer_token`.
pub const ENV_ALERTMANAGER_BEARER_TOKEN: &str = "INCIDENTD_ALERTMANAGER_BEARER_TOKEN";
/// Environment variable for `alertmanager.basic_auth.password`.
pub const ENV_ALERTMANAGER_PASSWORD: &str = "INCIDENTD_ALERTMANAGER_PASSWORD";
/// Environment variable for `slack.bot_token`.
pub const ENV_SLACK_BOT_TOKEN: &str = "INCIDENTD_SLACK_BOT_TOKEN";
/// Environment variable for `slack.signing_secret`.
pub const ENV_SLACK_SIGNING_SECRET: &str = "INCIDENTD_SLACK_SIGNING_SECRET";
/// Environment variable for `slack.webhook_url`.
pub const ENV_SLACK_WEBHOOK_URL: &str = "INCIDENTD_SLACK_WEBHOOK_URL";
/// Environment variable for `storage.postgres.url`.
pub const ENV_POSTGRES_URL: &str = "INCIDENTD_POSTGRES_URL";

/// Every secret: its key path (the YAML key is this plus `_file`) and its environment variable.
pub const SECRETS: &[(&str, &str)] = &[
    ("web.webhook_auth.bearer_token", ENV_WEBHOOK_BEARER_TOKEN),
    ("web.webhook_auth.basic_auth.password", ENV_WEBHOOK_PASSWORD),
    ("web.api_token", ENV_API_TOKEN),
    ("prometheus.bearer_token", ENV_PROMETHEUS_BEARER_TOKEN),
    ("prometheus.basic_auth.password", ENV_PROMETHEUS_PASSWORD),
    ("alertmanager.bearer_token", ENV_ALERTMANAGER_BEARER_TOKEN),
    (
        "alertmanager.basic_auth.password",
        ENV_ALERTMANAGER_PASSWORD,
    ),
    ("slack.bot_token", ENV_SLACK_BOT_TOKEN),
    ("slack.signing_secret", ENV_SLACK_SIGNING_SECRET),
    ("slack.webhook_url", ENV_SLACK_WEBHOOK_URL),
];

/// Default `web.max_body_bytes`: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default `web.read_header_timeout`: a client must send its request line and headers
/// within this long of connecting (or of its previous answer on a kept-alive connection).
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `web.request_timeout`: reading the body and answering must end within this long.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `storage.path`.
pub const DEFAULT_STORAGE_PATH: &str = "./data";
/// Default `storage.raw_payload_retention`: 30 days.
pub const DEFAULT_RAW_PAYLOAD_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default `storage.job_lease`: how long a claimed job belongs to its replica without renewal.
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(60);
/// Default `storage.prune_interval`: 1 hour.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Default `storage.postgres.pool_size`: sessions per replica.
pub const DEFAULT_POSTGRES_POOL_SIZE: usize = 8;
/// Default `storage.postgres.statement_timeout`.
pub const DEFAULT_POSTGRES_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `storage.postgres.connect_timeout`.
pub const DEFAULT_POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `correlation.group_by`.
pub const DEFAULT_GROUP_BY: &[&str] = &["service"];
/// Default `correlation.reopen_window`: 30 minutes.
pub const DEFAULT_REOPEN_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Default `correlation.severity_order`, highest first.
pub const DEFAULT_SEVERITY_ORDER: &[&str] = &["critical", "error", "warning", "info"];
/// Default `prometheus.timeout`.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `postmortem.render_delay`: a draft is rendered this long after the change that
/// calls for it, so a burst of notifications renders once.
pub const DEFAULT_RENDER_DELAY: Duration = Duration::from_millis(500);

/// Default `prometheus.snapshot_delay`: the full evidence snapshot runs this long after resolve.
pub const DEFAULT_SNAPSHOT_DELAY: Duration = Duration::from_secs(5 * 60);
/// Default `prometheus.quick_snapshot_delay`: the quick snapshot waits this long after an
/// incident opens, so the first alerts of a group are in it.
pub const DEFAULT_QUICK_SNAPSHOT_DELAY: Duration = Duration::from_secs(2);
/// Default `prometheus.snapshot_baseline`: how much history before the impact start a
/// snapshot shows (the baseline is computed over it).
pub const DEFAULT_SNAPSHOT_BASELINE: Duration = Duration::from_secs(3600);
/// Default `prometheus.snapshot_margin`: how much a snapshot shows after the resolution.
pub const DEFAULT_SNAPSHOT_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Default `prometheus.refresh_interval`: while an incident stays open its evidence is
/// gathered again this often (the draft and Slack show current figures).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `prometheus.retry_backoff`: the first wait before an evidence job that failed
/// on a transient error runs again; it doubles on each failure, up to 10 minutes.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Default `prometheus.query_lag`: the backend answers queries up to now.
pub const DEFAULT_QUERY_LAG: Duration = Duration::ZERO;
/// Default `alertmanager.reconcile_interval`.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Default `rules_dir`.
pub const DEFAULT_RULES_DIR: &str = "./rules";
/// Default `postmortem.output_dir`.
pub const DEFAULT_OUTPUT_DIR: &str = "./drafts";
/// Default `slack.api_url`.
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api/";

/// The daemon's whole configuration, validated, with secrets resolved and paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `web`: the HTTP server.
    pub web: WebConfig,
    /// `storage`: the database (SQLite, or PostgreSQL).
    pub storage: StorageConfig,
    /// `correlation`: how alerts group into incidents.
    pub correlation: CorrelationConfig,
    /// `prometheus`: where evidence comes from; `None` when the section is absent.
    pub prometheus: Option<PrometheusConfig>,
    /// `alertmanager`: lost-resolve reconciliation; `None` when the section is absent.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// `rules_dir`: per-alert queries, impact queries, SLOs, action items; `None` when set to
    /// `""` (no extra queries). With Prometheus configured, a directory that exists.
    pub rules_dir: Option<PathBuf>,
    /// `postmortem`: draft output.
    pub postmortem: PostmortemConfig,
    /// `slack`: summaries and buttons; `None` when the section is absent.
    pub slack: Option<SlackConfig>,
}

/// `web`: the HTTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// Base URL of links in drafts and Slack messages.
    pub external_url: Option<String>,
    /// Authentication for `POST /webhook/alertmanager`; `None` accepts any caller.
    pub webhook_auth: Option<WebhookAuth>,
    /// Bearer token for the writing API routes; `None` leaves them open.
    pub api_token: Option<Secret>,
    /// Largest accepted request body (413 above it).
    pub max_body_bytes: usize,
    /// Deadline for a client's request line and headers; the connection is closed after it
    /// (slow or silent clients), and it is also how long an idle kept-alive connection lives.
    pub read_header_timeout: Duration,
    /// Deadline for reading the body and answering (408 after it).
    pub request_timeout: Duration,
    /// `web.auth_proxy_header`, e.g. `X-Forwarded-User`: the request header naming the user
    /// of a page's form (acknowledge, note, resolve), as an authenticating proxy in front of
    /// incidentd sets it. Off by default: only set it behind a proxy that removes the header
    /// from what clients send, or anyone can act under any name.
    pub auth_proxy_header: Option<String>,
}

/// `web.webhook_auth`: a request is accepted if it matches any configured method.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAuth {
    /// Expected `Authorization: Bearer` token.
    pub bearer_token: Option<Secret>,
    /// Expected `Authorization: Basic` credentials.
    pub basic_auth: Option<BasicAuth>,
}

/// HTTP basic authentication credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    /// The user name (not secret).
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// `storage`: the database.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Which database: SQLite in `path` (the default) or PostgreSQL (`postgres`).
    pub backend: StorageBackend,
    /// SQLite's database directory, relative to the working directory.
    pub path: PathBuf,
    /// The PostgreSQL connection; `Some` exactly when `backend` is `postgres`.
    pub postgres: Option<PostgresConfig>,
    /// How long raw webhook payloads are kept for audit.
    pub raw_payload_retention: Duration,
    /// How long resolved incidents are kept (with their alerts, timeline, evidence and
    /// jobs); zero keeps them forever. Drafts on disk are never deleted.
    pub incident_retention: Duration,
    /// How often rows past their retention are deleted (also once at startup).
    pub prune_interval: Duration,
    /// How long a job a replica claimed stays its own without renewal (renewed every third
    /// of it while it runs): after a replica dies, its jobs run elsewhere this much later.
    pub job_lease: Duration,
}

/// `storage.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One SQLite database in `storage.path`, for one incidentd.
    #[default]
    Sqlite,
    /// A PostgreSQL database, which several incidentd replicas can share.
    Postgres,
}

/// `storage.postgres`: the PostgreSQL connection. `Debug` shows the connection string
/// redacted (`user@host:port/db`).
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    /// The connection string (libpq URI or `key=value`), from `url_file`, `url` or
    /// `INCIDENTD_POSTGRES_URL`.
    pub url: postgres::Dsn,
    /// `sslmode`: the key, else the connection string's, else `prefer` (as libpq).
    pub sslmode: postgres::SslMode,
    /// `sslrootcert`: CA certificates (PEM) the server's must chain to, or `system` for the
    /// Mozilla roots; the key (relative to the configuration file), else the connection
    /// string's (relative to the working directory).
    pub sslrootcert: Option<PathBuf>,
    /// Sessions per incidentd at most.
    pub pool_size: usize,
    /// Each statement's limit (`SET statement_timeout`); zero: none.
    pub statement_timeout: Duration,
    /// Limit on connecting: the key, else the connection string's `connect_timeout`, else 5s.
    pub connect_timeout: Duration,
}

impl PostgresConfig {
    /// The defaults around a connection string, with its own sslmode, sslrootcert and
    /// connect timeout where it sets them.
    pub fn new(url: postgres::Dsn) -> PostgresConfig {
        PostgresConfig {
            sslmode: url.sslmode().unwrap_or_default(),
            sslrootcert: url.sslrootcert().map(Path::to_path_buf),
            pool_size: DEFAULT_POSTGRES_POOL_SIZE,
            statement_timeout: DEFAULT_POSTGRES_STATEMENT_TIMEOUT,
            connect_timeout: url
                .connect_timeout()
                .unwrap_or(DEFAULT_POSTGRES_CONNECT_TIMEOUT),
            url,
        }
    }
}

/// `correlation`: how alerts group into incidents.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationConfig {
    /// Label names forming the correlation key.
    pub group_by: Vec<String>,
    /// A resolved incident reopens if the same key fires within this window; zero never reopens.
    pub reopen_window: Duration,
    /// Severity label values, highest first.
    pub severity_order: Vec<String>,
}

/// `prometheus`: the Prometheus HTTP API evidence is pulled from.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Timeout of each request.
    pub timeout: Duration,
    /// Bearer token sent to Prometheus (exclusive with `basic_auth`).
    pub bearer_token: Option<Secret>,
    /// Basic auth sent to Prometheus (exclusive with `bearer_token`).
    pub basic_auth: Option<BasicAuth>,
    /// Extra request headers (not secret; `Authorization` is refused here).
    pub headers: BTreeMap<String, String>,
    /// The full evidence snapshot runs this long after an incident resolves.
    pub snapshot_delay: Duration,
    /// The quick evidence snapshot runs this long after an incident opens or reopens.
    pub quick_snapshot_delay: Duration,
    /// History shown before the impact start; the baseline is computed over it.
    pub snapshot_baseline: Duration,
    /// Time shown after the resolution.
    pub snapshot_margin: Duration,
    /// First wait before retrying evidence after a transient failure (doubles, at most 10m).
    pub retry_backoff: Duration,
    /// How far behind real time the backend answers queries: data newer than `now −
    /// query_lag` is not there yet, or not final. 0 for Prometheus; VictoriaMetrics'
    /// `-search.latencyOffset` (30s by default) for VictoriaMetrics. Always shorter than
    /// `snapshot_delay` when set.
    pub query_lag: Duration,
    /// While an incident is open, its evidence is gathered again this often.
    pub refresh_interval: Duration,
}

impl PrometheusConfig {
    /// A section with only `url` set: every other key at its default.
    pub fn new(url: impl Into<String>) -> PrometheusConfig {
        PrometheusConfig {
            url: url.into(),
            timeout: DEFAULT_PROMETHEUS_TIMEOUT,
            bearer_token: None,
            basic_auth: None,
            headers: BTreeMap::new(),
            snapshot_delay: DEFAULT_SNAPSHOT_DELAY,
            quick_snapshot_delay: DEFAULT_QUICK_SNAPSHOT_DELAY,
            snapshot_baseline: DEFAULT_SNAPSHOT_BASELINE,
            snapshot_margin: DEFAULT_SNAPSHOT_MARGIN,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            query_lag: DEFAULT_QUERY_LAG,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
        }
    }
}

/// `alertmanager`: the Alertmanager API used to reconcile lost resolves.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    /// How often open occurrences are compared with `/api/v2/alerts`.
    pub reconcile_interval: Duration,
    /// Bearer token sent to Alertmanager (exclusive with `basic_auth`).
    pub bearer_token: Option<Secret>,
    /// Basic auth sent to Alertmanager (exclusive with `bearer_token`).
    pub basic_auth: Option<BasicAuth>,
}

/// `postmortem`: draft output.
#[derive(Debug, Clone, PartialEq)]
pub struct PostmortemConfig {
    /// Where drafts are written, relative to the working directory.
    pub output_dir: PathBuf,
    /// A Handlebars template overriding the embedded one (`""` in YAML means `None`).
    pub template: Option<PathBuf>,
    /// Zone times are shown in.
    pub timezone: chrono_tz::Tz,
    /// A second zone drafts also show times in, in brackets (e.g. a team abroad).
    pub second_timezone: Option<chrono_tz::Tz>,
    /// How long after a change an incident's draft is rendered: the changes of a burst
    /// within it render once.
    pub render_delay: Duration,
    /// The organisation's severity for each alert `severity` label (e.g. `critical` →
    /// `SEV-1 (P1)`), shown beside the label in drafts. Labels are matched ignoring case.
    pub severity_map: std::collections::BTreeMap<String, String>,
}

/// `slack`: where summaries go. Exactly one of `bot_token` and `webhook_url` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    /// Slack Web API base URL (overridable for tests).
    pub api_url: String,
    /// Bot token for the Web API (`chat.postMessage`, threads, buttons).
    pub bot_token: Option<Secret>,
    /// Channel to post to, e.g. `#incidents`.
    pub channel: String,
    /// Verifies interactive requests (buttons) from Slack.
    pub signing_secret: Option<Secret>,
    /// Incoming-webhook URL, the alternative to a bot token (it embeds a credential).
    pub webhook_url: Option<Secret>,
    /// Channels chosen by labels, first match wins; `channel` when none matches.
    pub routes: Vec<SlackRoute>,
    /// Which thread replies become timeline rows (`capture`, `capture_reaction`,
    /// `milestone_reactions`).
    pub capture: crate::incident::conversation::CaptureRules,
}

/// `slack.routes[]`: incidents whose labels match all of `matchers` go to `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackRoute {
    /// Label name → value; `severity` and `service` match the incident's own.
    pub matchers: BTreeMap<String, String>,
    pub channel: String,
}

/// A secret value: `Debug` and `Display` print `<secret>`; [`Secret::expose`] gives the value.
///
/// Equality is constant-time in the content, so comparing a presented credential with
/// `==` does not leak how much of it matched.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself; keep it out of logs and error messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

/// Why a configuration could not be loaded. Every message names the file and, where there is
/// one, the key path; none contains a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    // The io::Error is part of the message rather than a `#[source]`: `check-config` prints
    // the Display, and a chained source would print the reason twice.
    #[error("{}: cannot read the configuration file: {error}", file.display())]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// The YAML is malformed, a key is unknown (an inline secret among them), or a value has
    /// the wrong type or form (durations, time zones).
    #[error("{}{}", prefix(file, key), with_location(message, *location))]
    Parse {
        /// The configuration file.
        file: PathBuf,
        /// Key path, e.g. `correlation.reopen_window`; empty for the document as a whole.
        key: String,
        /// What is wrong.
        message: String,
        /// 1-based line and column, where the YAML parser knows them.
        location: Option<(usize, usize)>,
    },
    /// A value is well-formed but not acceptable.
    #[error("{}{message}", prefix(file, key))]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// Key path, e.g. `correlation.group_by[1]`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A secret file is missing or unreadable.
    #[error("{}cannot read secret file {}: {error}", prefix(file, key), path.display())]
    SecretFile {
        /// The configuration file.
        file: PathBuf,
        /// The `*_file` key, e.g. `web.api_token_file`.
        key: String,
        /// The secret file, resolved against the configuration file's directory.
        path: PathBuf,
        /// What went wrong (never the content).
        error: io::Error,
    },
    /// A secret file or environment variable is empty.
    #[error("{}{origin} is empty", prefix(file, key))]
    EmptySecret {
        /// The configuration file.
        file: PathBuf,
        /// The key, e.g. `web.api_token_file`.
        key: String,
        /// Where the empty value came from: `secret file …` or `environment variable …`.
        origin: String,
    },
    /// Several of the errors above (validation goes on after the first one, so that one run
    /// of `check-config` shows them all); printed one per line.
    #[error("{}", lines(.0))]
    Many(Vec<ConfigError>),
}

fn lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// Each error on its own (one, or the several of [`ConfigError::Many`]).
    pub fn errors(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(errors) => errors.iter().collect(),
            single => vec![single],
        }
    }
}

fn prefix(file: &Path, key: &str) -> String {
    if key.is_empty() {
        format!("{}: ", file.display())
    } else {
        format!("{}: {key}: ", file.display())
    }
}

fn with_location(message: &str, location: Option<(usize, usize)>) -> String {
    match location {
        // libyaml's syntax errors already carry their positions in the text.
        Some((line, column)) if !message.contains(" at line ") => {
            format!("{message} (line {line}, column {column})")
        }
        _ => message.to_owned(),
    }
}

impl Default for Config {
    /// The embedded defaults of DESIGN.md: what `serve` runs on without a configuration file.
    fn default() -> Self {
        Config {
            web: WebConfig {
                external_url: None,
                webhook_auth: None,
                api_token: None,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                auth_proxy_header: None,
            },
            storage: StorageConfig {
                backend: StorageBackend::Sqlite,
                path: PathBuf::from(DEFAULT_STORAGE_PATH),
                postgres: None,
                raw_payload_retention: DEFAULT_RAW_PAYLOAD_RETENTION,
                incident_retention: Duration::ZERO,
                prune_interval: DEFAULT_PRUNE_INTERVAL,
                job_lease: DEFAULT_JOB_LEASE,
            },
            correlation: CorrelationConfig {
                group_by: DEFAULT_GROUP_BY.iter().map(|s| s.to_string()).collect(),
                reopen_window: DEFAULT_REOPEN_WINDOW,
                severity_order: DEFAULT_SEVERITY_ORDER
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
            prometheus: None,
            alertmanager: None,
            rules_dir: Some(PathBuf::from(DEFAULT_RULES_DIR)),
            postmortem: PostmortemConfig {
                output_dir: PathBuf::from(DEFAULT_OUTPUT_DIR),
                template: None,
                timezone: chrono_tz::UTC,
                second_timezone: None,
                render_delay: DEFAULT_RENDER_DELAY,
                severity_map: std::collections::BTreeMap::new(),
            },
            slack: None,
        }
    }
}

/// Looks a variable up in the process environment; a value that is not Unicode counts as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What [`Config::from_env`] names as the file in its messages.
const EMBEDDED_DEFAULTS: &str = "(embedded defaults)";

impl Config {
    /// Reads, parses, resolves secrets (files and the process environment) and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &process_env)
    }

    /// [`Config::load`] with an injected environment lookup (tests, embedding).
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_owned(),
            error,
        })?;
        Self::from_yaml_with_env(&text, path, env)
    }

    /// Parses YAML text as if read from `origin`, which names the file in messages and is the
    /// base of relative paths. Secrets come from files and the process environment.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Self::from_yaml_with_env(text, origin, &process_env)
    }

    /// [`Config::from_yaml`] with an injected environment lookup.
    pub fn from_yaml_with_env(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, origin)?;
        let base = origin.parent().unwrap_or(Path::new(""));
        Resolver {
            file: origin,
            base,
            env,
            errors: Default::default(),
        }
        .config(raw)
    }

    /// The embedded defaults plus secrets from the process environment: what `serve` runs on
    /// without a configuration file (`INCIDENTD_WEBHOOK_BEARER_TOKEN` and `INCIDENTD_API_TOKEN`
    /// still turn authentication on).
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_env_with(&process_env)
    }

    /// [`Config::from_env`] with an injected environment lookup.
    pub fn from_env_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Self::from_yaml_with_env("", Path::new(EMBEDDED_DEFAULTS), env)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: the raw YAML shape. Secrets and paths stay unresolved here; defaults are filled in
// by the resolver so that "absent" and "explicitly the default" behave the same.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawConfig {
    web: Option<RawWeb>,
    storage: Option<RawStorage>,
    correlation: Option<RawCorrelation>,
    prometheus: Option<RawPrometheus>,
    alertmanager: Option<RawAlertmanager>,
    rules_dir: Option<PathBuf>,
    postmortem: Option<RawPostmortem>,
    slack: Option<RawSlack>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawWeb {
    external_url: Option<String>,
    webhook_auth: Option<RawWebhookAuth>,
    api_token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    read_header_timeout: Option<DurationValue>,
    request_timeout: Option<DurationValue>,
    auth_proxy_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawWebhookAuth {
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<RawBasicAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawBasicAuth {
    username: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawStorage {
    backend: Option<StorageBackend>,
    path: Option<PathBuf>,
    postgres: Option<RawPostgres>,
    raw_payload_retention: Option<DurationValue>,
    incident_retention: Option<DurationValue>,
    prune_interval: Option<DurationValue>,
    job_lease: Option<DurationValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawPostgres {
    url: Option<String>,
    url_file: Option<PathBuf>,
    sslmode: Option<String>,
    sslrootcert: Option<PathBuf>,
    pool_size: Option<usize>,
    statement_timeout: Option<DurationValue>,
    connect_timeout: Option<DurationValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawCorrelation {
    group_by: Option<Vec<String>>,
    reopen_window: Option<DurationValue>,
    severity_order: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawPrometheus {
    url: Option<String>,
    timeout: Option<DurationValue>,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<RawBasicAuth>,
    headers: Option<BTreeMap<String, String>>,
    snapshot_delay: Option<DurationValue>,
    quick_snapshot_delay: Option<DurationValue>,
    snapshot_baseline: Option<DurationValue>,
    snapshot_margin: Option<DurationValue>,
    retry_backoff: Option<DurationValue>,
    query_lag: Option<DurationValue>,
    refresh_interval: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawAlertmanager {
    url: Option<String>,
    reconcile_interval: Option<DurationValue>,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<RawBasicAuth>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawPostmortem {
    output_dir: Option<PathBuf>,
    template: Option<PathBuf>,
    timezone: Option<TimezoneValue>,
    second_timezone: Option<TimezoneValue>,
    render_delay: Option<DurationValue>,
    severity_map: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawSlack {
    api_url: Option<String>,
    bot_token_file: Option<PathBuf>,
    channel: Option<String>,
    signing_secret_file: Option<PathBuf>,
    webhook_url_file: Option<PathBuf>,
    #[serde(default)]
    routes: Vec<RawSlackRoute>,
    capture: Option<String>,
    capture_reaction: Option<String>,
    milestone_reactions: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawSlackRoute {
    #[serde(rename = "match")]
    matchers: BTreeMap<String, String>,
    channel: String,
}

/// A duration in Prometheus form; parse errors carry the offending text.
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationValue, E> {
                parse_duration(s)
                    .map(DurationValue)
                    .map_err(|why| E::custom(format!("invalid duration {s:?}: {why}")))
            }
            // YAML reads a bare `0` as an integer; Prometheus accepts "0", so do we. Any
            // other bare number lacks its unit.
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationValue, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationValue, E> {
                self.visit_str(&n.to_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// An IANA time zone name.
struct TimezoneValue(chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimezoneValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<chrono_tz::Tz>()
            .map(TimezoneValue)
            .map_err(|_| {
                de::Error::custom(format!(
                    "unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\""
                ))
            })
    }
}

fn parse_raw(text: &str, origin: &Path) -> Result<RawConfig, ConfigError> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    // `Option` so that an empty or comments-only file means "all defaults".
    match serde_path_to_error::deserialize::<_, Option<RawConfig>>(deserializer) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(err) => {
            // `?` is serde_path_to_error's segment for "somewhere unknown" (syntax errors).
            let segments: Vec<String> = err
                .path()
                .iter()
                .map(|s| s.to_string())
                .filter(|s| s != "?")
                .collect();
            let key = join_path(&segments);
            let inner = err.into_inner();
            let location = inner.location().map(|l| (l.line(), l.column()));
            let mut message = yaml_words(&bare_message(&inner.to_string(), &segments, location));
            // An inline secret is an unknown key to the parser; say where the secret belongs
            // instead of listing the keys that are allowed.
            if let Some((_, env_var)) = SECRETS.iter().find(|(secret, _)| *secret == key) {
                if message.starts_with("unknown field") {
                    message = format!(
                        "inline secrets are not allowed; put the value in a file and set \
                         {key}_file, or set the environment variable {env_var}"
                    );
                }
            }
            Err(ConfigError::Parse {
                file: origin.to_owned(),
                key,
                message,
                location,
            })
        }
    }
}

/// Joins path segments the way serde_path_to_error and serde_norway print them
/// (`a.b[1].c`).
fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments {
        if segment.starts_with('[') || out.is_empty() {
            out.push_str(segment);
        } else {
            out.push('.');
            out.push_str(segment);
        }
    }
    out
}

/// serde names Rust types in its messages ("expected usize", "invalid type: map"); a
/// configuration is YAML, so say it in YAML's words.
fn yaml_words(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_owned();
    };
    let (found, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
    let found = match found {
        "map" => "a mapping".to_owned(),
        "sequence" => "a list".to_owned(),
        "unit value" => "null".to_owned(),
        // Integers too large for 64 bits are reported with the Rust type that held them.
        other => other
            .trim_end_matches(" as u128")
            .trim_end_matches(" as i128")
            .to_owned(),
    };
    let expected = match expected {
        "usize" | "u8" | "u16" | "u32" | "u64" => "a non-negative integer",
        "isize" | "i8" | "i16" | "i32" | "i64" => "an integer",
        "f32" | "f64" => "a number",
        "a map" => "a mapping",
        "a sequence" => "a list",
        "path string" | "a path string" => "a path (a string)",
        "a boolean" => "true or false",
        "" => return format!("{found} is not allowed here"),
        other => other,
    };
    format!("expected {expected}, got {found}")
}

/// serde_norway prefixes its message with its own idea of the path (the parent map for an
/// unknown field) and suffixes the position; both are printed by [`ConfigError::Parse`]
/// already, so they are removed here.
fn bare_message(display: &str, segments: &[String], location: Option<(usize, usize)>) -> String {
    let mut message = display;
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        message = message.strip_suffix(suffix.as_str()).unwrap_or(message);
    }
    for len in (1..=segments.len()).rev() {
        let candidate = format!("{}: ", join_path(&segments[..len]));
        if let Some(rest) = message.strip_prefix(candidate.as_str()) {
            return rest.to_owned();
        }
    }
    message.to_owned()
}

// ---------------------------------------------------------------------------------------------
// Resolution: defaults, secrets, paths, validation.

struct Resolver<'a> {
    file: &'a Path,
    /// Directory of the configuration file: the base of paths the configuration points at.
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Errors found so far: validation goes on after one, so that all are reported at once.
    errors: std::cell::RefCell<Vec<ConfigError>>,
}

impl Resolver<'_> {
    /// Keeps an error and lets validation go on.
    fn report(&self, error: ConfigError) {
        self.errors.borrow_mut().push(error);
    }

    /// A section's value, or `None` after keeping its error.
    fn section<T>(&self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.report(e)).ok()
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Every section is resolved even after one fails; then all errors are returned.
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let web = self.section(self.web(raw.web.unwrap_or_default()));
        let storage = self.section(self.storage(raw.storage.unwrap_or_default()));
        let correlation = self.section(self.correlation(raw.correlation.unwrap_or_default()));
        let prometheus_set = raw.prometheus.is_some();
        let prometheus = raw
            .prometheus
            .and_then(|p| self.section(self.prometheus(p)));
        let alertmanager = raw
            .alertmanager
            .and_then(|a| self.section(self.alertmanager(a)));
        let rules_dir = self.rules_dir(raw.rules_dir, prometheus_set);
        let postmortem = self.section(self.postmortem(raw.postmortem.unwrap_or_default()));
        let slack = raw.slack.and_then(|s| self.section(self.slack(s)));
        let mut errors = self.errors.take();
        if errors.len() > 1 {
            return Err(ConfigError::Many(errors));
        }
        if let Some(error) = errors.pop() {
            return Err(error);
        }
        Ok(Config {
            web: web.unwrap_or(defaults.web),
            storage: storage.unwrap_or(defaults.storage),
            correlation: correlation.unwrap_or(defaults.correlation),
            prometheus,
            alertmanager,
            rules_dir,
            postmortem: postmortem.unwrap_or(defaults.postmortem),
            slack,
        })
    }

    /// `rules_dir`: `""` means none. With Prometheus configured the directory must exist,
    /// whether set or the default: without it every draft silently lacks the per-alert
    /// queries, impact queries and SLOs.
    fn rules_dir(&self, raw: Option<PathBuf>, prometheus: bool) -> Option<PathBuf> {
        let path = raw.unwrap_or_else(|| PathBuf::from(DEFAULT_RULES_DIR));
        if path.as_os_str().is_empty() {
            return None;
        }
        let path = self.relative_to_config(path);
        if prometheus {
            let problem = match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some(format!("{} is not a directory", path.display())),
                Err(e) => Some(format!("cannot read directory {}: {e}", path.display())),
            };
            if let Some(problem) = problem {
                self.report(self.invalid(
                    "rules_dir",
                    format!(
                        "{problem}; with prometheus set, drafts would silently lack the \
                         per-alert queries, impact queries and SLOs: create it, or set \
                         rules_dir: \"\" to run without"
                    ),
                ));
            }
        }
        Some(path)
    }

    fn web(&self, raw: RawWeb) -> Result<WebConfig, ConfigError> {
        let external_url = raw
            .external_url
            .map(|url| self.http_url("web.external_url", url))
            .transpose()?;
        let webhook_auth = match raw.webhook_auth {
            Some(auth) => Some(self.webhook_auth(auth)?),
            // Without the section, the variable alone still turns authentication on: an
            // operator who sets a token expects it to be enforced.
            None => self
                .env_secret("web.webhook_auth.bearer_token", ENV_WEBHOOK_BEARER_TOKEN)?
                .map(|token| WebhookAuth {
                    bearer_token: Some(token),
                    basic_auth: None,
                }),
        };
        let api_token = self.secret("web.api_token", raw.api_token_file, ENV_API_TOKEN)?;
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            self.report(self.invalid("web.max_body_bytes", "must be greater than 0"));
        }
        let read_header_timeout = raw
            .read_header_timeout
            .map_or(DEFAULT_READ_HEADER_TIMEOUT, |d| d.0);
        if read_header_timeout.is_zero() {
            self.report(self.invalid("web.read_header_timeout", "must be greater than 0s"));
        }
        let request_timeout = raw.request_timeout.map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0);
        if request_timeout.is_zero() {
            self.report(self.invalid("web.request_timeout", "must be greater than 0s"));
        }
        let auth_proxy_header = raw.auth_proxy_header.filter(|h| !h.is_empty());
        if let Some(h) = &auth_proxy_header {
            if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                self.report(self.invalid("web.auth_proxy_header", "is not an HTTP header name"));
            }
        }
        Ok(WebConfig {
            external_url,
            webhook_auth,
            api_token,
            max_body_bytes,
            read_header_timeout,
            request_timeout,
            auth_proxy_header,
        })
    }

    fn webhook_auth(&self, raw: RawWebhookAuth) -> Result<WebhookAuth, ConfigError> {
        let bearer_token = self.secret(
            "web.webhook_auth.bearer_token",
            raw.bearer_token_file,
            ENV_WEBHOOK_BEARER_TOKEN,
        )?;
        let basic_auth = raw
            .basic_auth
            .map(|b| self.basic_auth("web.webhook_auth.basic_auth", b, ENV_WEBHOOK_PASSWORD))
            .transpose()?;
        if bearer_token.is_none() && basic_auth.is_none() {
            return Err(self.invalid(
                "web.webhook_auth",
                format!(
                    "set bearer_token_file (or {ENV_WEBHOOK_BEARER_TOKEN}) and/or basic_auth; \
                     remove the section to accept webhooks without authentication"
                ),
            ));
        }
        Ok(WebhookAuth {
            bearer_token,
            basic_auth,
        })
    }

    fn basic_auth(
        &self,
        key: &str,
        raw: RawBasicAuth,
        env_var: &str,
    ) -> Result<BasicAuth, ConfigError> {
        let username = match raw.username {
            Some(name) if !name.is_empty() => name,
            _ => return Err(self.invalid(&format!("{key}.username"), "required")),
        };
        let password = self.secret(&format!("{key}.password"), raw.password_file, env_var)?;
        match password {
            Some(password) => Ok(BasicAuth { username, password }),
            None => Err(self.invalid(
                &format!("{key}.password_file"),
                format!("required (or set {env_var})"),
            )),
        }
    }

    fn storage(&self, raw: RawStorage) -> Result<StorageConfig, ConfigError> {
        let path = raw
            .path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORAGE_PATH));
        let path = self.non_empty_path("storage.path", path)?;
        let raw_payload_retention = raw
            .raw_payload_retention
            .map_or(DEFAULT_RAW_PAYLOAD_RETENTION, |d| d.0);
        if raw_payload_retention.is_zero() {
            self.report(self.invalid(
                "storage.raw_payload_retention",
                "must be greater than 0s: raw payloads are the audit trail",
            ));
        }
        let prune_interval = raw.prune_interval.map_or(DEFAULT_PRUNE_INTERVAL, |d| d.0);
        if prune_interval.is_zero() {
            self.report(self.invalid("storage.prune_interval", "must be greater than 0s"));
        }
        let job_lease = raw.job_lease.map_or(DEFAULT_JOB_LEASE, |d| d.0);
        if job_lease < Duration::from_secs(3) {
            self.report(self.invalid(
                "storage.job_lease",
                "must be at least 3s (it is renewed every third of it)",
            ));
        }
        let backend = raw.backend.unwrap_or_default();
        let postgres = match (backend, raw.postgres) {
            (StorageBackend::Sqlite, None) => None,
            (StorageBackend::Sqlite, Some(_)) => {
                self.report(self.invalid(
                    "storage.postgres",
                    "is set but storage.backend is sqlite: set storage.backend: postgres, or \
                     remove the section",
                ));
                None
            }
            // The section may be absent: INCIDENTD_POSTGRES_URL alone can name the database.
            (StorageBackend::Postgres, raw) => self.section(self.postgres(raw.unwrap_or_default())),
        };
        Ok(StorageConfig {
            backend,
            path,
            postgres,
            raw_payload_retention,
            incident_retention: raw.incident_retention.map_or(Duration::ZERO, |d| d.0),
            prune_interval,
            job_lease,
        })
    }

    fn postgres(&self, raw: RawPostgres) -> Result<PostgresConfig, ConfigError> {
        use postgres::{Dsn, SslMode};
        const KEY: &str = "storage.postgres.url";
        let (url, inline) = match (raw.url, raw.url_file) {
            (Some(_), Some(_)) => {
                return Err(
                    self.invalid("storage.postgres", "url and url_file are both set; use one")
                )
            }
            (Some(url), None) => {
                if (self.env)(ENV_POSTGRES_URL).is_some() {
                    tracing::warn!(
                        key = KEY,
                        variable = ENV_POSTGRES_URL,
                        "connection string set both in the configuration file and the \
                         environment; using the file"
                    );
                }
                (Secret(url), true)
            }
            (None, file) => match self.secret(KEY, file, ENV_POSTGRES_URL)? {
                Some(url) => (url, false),
                None => {
                    return Err(self.invalid(
                        "storage.postgres.url_file",
                        format!(
                            "required with storage.backend: postgres (or set \
                             {ENV_POSTGRES_URL}, or storage.postgres.url if the connection \
                             string holds no password)"
                        ),
                    ))
                }
            },
        };
        // The message says what is wrong, never the string (it may hold a password).
        let url = Dsn::parse(url.expose()).map_err(|why| self.invalid(KEY, why))?;
        if inline && url.has_password() {
            return Err(self.invalid(
                KEY,
                format!(
                    "the connection string holds a password, and inline secrets are not \
                     allowed; put it in a file and set {KEY}_file, or set the environment \
                     variable {ENV_POSTGRES_URL}"
                ),
            ));
        }
        let mut config = PostgresConfig::new(url);
        if let Some(mode) = raw.sslmode {
            match mode.parse::<SslMode>() {
                Ok(mode) => config.sslmode = mode,
                Err(why) => self.report(self.invalid("storage.postgres.sslmode", why)),
            }
        }
        if let Some(path) = raw.sslrootcert {
            let path = self.non_empty_path("storage.postgres.sslrootcert", path)?;
            config.sslrootcert = Some(if path == Path::new("system") {
                path
            } else {
                self.relative_to_config(path)
            });
        }
        if let Some(path) = &config.sslrootcert {
            if let Err(why) = postgres::read_root_certificates(path) {
                self.report(self.invalid("storage.postgres.sslrootcert", why));
            }
        }
        if let Some(size) = raw.pool_size {
            config.pool_size = size;
        }
        if config.pool_size == 0 {
            self.report(self.invalid("storage.postgres.pool_size", "must be greater than 0"));
        }
        if let Some(timeout) = raw.statement_timeout {
            config.statement_timeout = timeout.0;
        }
        if let Some(timeout) = raw.connect_timeout {
            config.connect_timeout = timeout.0;
        }
        if config.connect_timeout.is_zero() {
            self.report(self.invalid(
                "storage.postgres.connect_timeout",
                "must be greater than 0s",
            ));
        }
        Ok(config)
    }

    fn correlation(&self, raw: RawCorrelation) -> Result<CorrelationConfig, ConfigError> {
        let group_by = raw
            .group_by
            .unwrap_or_else(|| DEFAULT_GROUP_BY.iter().map(|s| s.to_string()).collect());
        if group_by.is_empty() {
            return Err(self.invalid("correlation.group_by", "must list at least one label name"));
        }
        for (i, name) in group_by.iter().enumerate() {
            let key = format!("correlation.group_by[{i}]");
            if !is_label_name(name) {
                self.report(self.invalid(
                    &key,
                    format!("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
                ));
            } else if group_by[..i].contains(name) {
                self.report(self.invalid(&key, format!("label {name:?} is listed twice")));
            }
        }
        let reopen_window = raw.reopen_window.map_or(DEFAULT_REOPEN_WINDOW, |d| d.0);
        let severity_order = raw.severity_order.unwrap_or_else(|| {
            DEFAULT_SEVERITY_ORDER
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        if severity_order.is_empty() {
            return Err(self.invalid(
                "correlation.severity_order",
                "must list at least one severity",
            ));
        }
        for (i, severity) in severity_order.iter().enumerate() {
            let key = format!("correlation.severity_order[{i}]");
            if severity.is_empty() {
                self.report(self.invalid(&key, "must not be empty"));
            } else if severity_order[..i].contains(severity) {
                self.report(self.invalid(&key, format!("severity {severity:?} is listed twice")));
            }
        }
        Ok(CorrelationConfig {
            group_by,
            reopen_window,
            severity_order,
        })
    }

    fn prometheus(&self, raw: RawPrometheus) -> Result<PrometheusConfig, ConfigError> {
        let url = self.required_url("prometheus.url", raw.url, "http://prometheus:9090")?;
        let timeout = raw.timeout.map_or(DEFAULT_PROMETHEUS_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            self.report(self.invalid("prometheus.timeout", "must be greater than 0s"));
        }
        let bearer_token = self.secret(
            "prometheus.bearer_token",
            raw.bearer_token_file,
            ENV_PROMETHEUS_BEARER_TOKEN,
        )?;
        let basic_auth = raw
            .basic_auth
            .map(|b| self.basic_auth("prometheus.basic_auth", b, ENV_PROMETHEUS_PASSWORD))
            .transpose()?;
        self.one_authorization(
            "prometheus",
            &bearer_token,
            &basic_auth,
            ENV_PROMETHEUS_BEARER_TOKEN,
        )?;
        let headers = raw.headers.unwrap_or_default();
        for (name, value) in &headers {
            if let Err(e) = self.header("prometheus.headers", name, value) {
                self.report(e);
            }
        }
        let snapshot_delay = raw.snapshot_delay.map_or(DEFAULT_SNAPSHOT_DELAY, |d| d.0);
        let quick_snapshot_delay = raw
            .quick_snapshot_delay
            .map_or(DEFAULT_QUICK_SNAPSHOT_DELAY, |d| d.0);
        let snapshot_baseline = raw
            .snapshot_baseline
            .map_or(DEFAULT_SNAPSHOT_BASELINE, |d| d.0);
        let snapshot_margin = raw.snapshot_margin.map_or(DEFAULT_SNAPSHOT_MARGIN, |d| d.0);
        let retry_backoff = raw.retry_backoff.map_or(DEFAULT_RETRY_BACKOFF, |d| d.0);
        if retry_backoff.is_zero() {
            self.report(self.invalid("prometheus.retry_backoff", "must be greater than 0s"));
        }
        let query_lag = raw.query_lag.map_or(DEFAULT_QUERY_LAG, |d| d.0);
        if !query_lag.is_zero() && query_lag >= snapshot_delay {
            self.report(self.invalid(
                "prometheus.query_lag",
                format!(
                    "{} is not shorter than prometheus.snapshot_delay ({}): the full snapshot \
                     would run before the backend shows the resolution; raise snapshot_delay \
                     (VictoriaMetrics answers -search.latencyOffset behind, 30s by default)",
                    format_duration(query_lag),
                    format_duration(snapshot_delay)
                ),
            ));
        }
        let refresh_interval = raw
            .refresh_interval
            .map_or(DEFAULT_REFRESH_INTERVAL, |d| d.0);
        if refresh_interval < Duration::from_secs(1) {
            self.report(self.invalid("prometheus.refresh_interval", "must be at least 1s"));
        }
        if snapshot_margin > snapshot_delay {
            self.report(self.invalid(
                "prometheus.snapshot_margin",
                format!(
                    "{} is longer than prometheus.snapshot_delay ({}): the full snapshot runs \
                     snapshot_delay after the resolve and would ask Prometheus about a future \
                     it has no data for; make snapshot_margin at most snapshot_delay",
                    format_duration(snapshot_margin),
                    format_duration(snapshot_delay)
                ),
            ));
        }
        Ok(PrometheusConfig {
            url,
            timeout,
            bearer_token,
            basic_auth,
            headers,
            snapshot_delay,
            quick_snapshot_delay,
            snapshot_baseline,
            snapshot_margin,
            retry_backoff,
            query_lag,
            refresh_interval,
        })
    }

    fn alertmanager(&self, raw: RawAlertmanager) -> Result<AlertmanagerConfig, ConfigError> {
        let url = self.required_url("alertmanager.url", raw.url, "http://alertmanager:9093")?;
        let reconcile_interval = raw
            .reconcile_interval
            .map_or(DEFAULT_RECONCILE_INTERVAL, |d| d.0);
        if reconcile_interval.is_zero() {
            self.report(self.invalid("alertmanager.reconcile_interval", "must be greater than 0s"));
        }
        let bearer_token = self.secret(
            "alertmanager.bearer_token",
            raw.bearer_token_file,
            ENV_ALERTMANAGER_BEARER_TOKEN,
        )?;
        let basic_auth = raw
            .basic_auth
            .map(|b| self.basic_auth("alertmanager.basic_auth", b, ENV_ALERTMANAGER_PASSWORD))
            .transpose()?;
        self.one_authorization(
            "alertmanager",
            &bearer_token,
            &basic_auth,
            ENV_ALERTMANAGER_BEARER_TOKEN,
        )?;
        Ok(AlertmanagerConfig {
            url,
            reconcile_interval,
            bearer_token,
            basic_auth,
        })
    }

    fn postmortem(&self, raw: RawPostmortem) -> Result<PostmortemConfig, ConfigError> {
        let output_dir = raw
            .output_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT_DIR));
        let output_dir = self.non_empty_path("postmortem.output_dir", output_dir)?;
        let template = raw
            .template
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| self.relative_to_config(p));

        let timezone = raw.timezone.map_or(chrono_tz::UTC, |tz| tz.0);
        // The same zone twice would only repeat every time in brackets.
        let second_timezone = raw
            .second_timezone
            .map(|tz| tz.0)
            .filter(|tz| *tz != timezone);
        Ok(PostmortemConfig {
            output_dir,
            template,
            timezone,
            second_timezone,
            render_delay: raw.render_delay.map_or(DEFAULT_RENDER_DELAY, |d| d.0),
            severity_map: raw.severity_map.unwrap_or_default(),
        })
    }

    fn slack(&self, raw: RawSlack) -> Result<SlackConfig, ConfigError> {
        let api_url = self.http_url(
            "slack.api_url",
            raw.api_url
                .unwrap_or_else(|| DEFAULT_SLACK_API_URL.to_owned()),
        )?;
        let channel = match raw.channel {
            Some(channel) if !channel.trim().is_empty() => channel,
            _ => {
                return Err(self.invalid(
                    "slack.channel",
                    "required: the channel to post to, e.g. \"#incidents\"",
                ))
            }
        };
        let bot_token = self.secret("slack.bot_token", raw.bot_token_file, ENV_SLACK_BOT_TOKEN)?;
        let signing_secret = self.secret(
            "slack.signing_secret",
            raw.signing_secret_file,
            ENV_SLACK_SIGNING_SECRET,
        )?;
        let webhook_url = self.secret(
            "slack.webhook_url",
            raw.webhook_url_file,
            ENV_SLACK_WEBHOOK_URL,
        )?;
        match (&bot_token, &webhook_url) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "slack",
                    format!(
                        "set exactly one of bot_token_file (or {ENV_SLACK_BOT_TOKEN}) and \
                         webhook_url_file (or {ENV_SLACK_WEBHOOK_URL}); both are set"
                    ),
                ))
            }
            (None, None) => {
                return Err(self.invalid(
                    "slack",
                    format!(
                        "set exactly one of bot_token_file (or {ENV_SLACK_BOT_TOKEN}) and \
                         webhook_url_file (or {ENV_SLACK_WEBHOOK_URL}); neither is set"
                    ),
                ))
            }
            _ => {}
        }
        if let Some(url) = &webhook_url {
            // The URL is itself a credential: say what is wrong without echoing it.
            if !is_http_url(url.expose()) {
                return Err(self.invalid(
                    "slack.webhook_url",
                    format!(
                        "the value of webhook_url_file (or {ENV_SLACK_WEBHOOK_URL}) is not an \
                         http(s) URL; it is not shown because it is a secret"
                    ),
                ));
            }
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.into_iter().enumerate() {
            let key = format!("slack.routes[{i}]");
            if r.channel.trim().is_empty() {
                self.report(self.invalid(&format!("{key}.channel"), "must not be empty"));
            }
            if r.matchers.is_empty() {
                self.report(self.invalid(
                    &format!("{key}.match"),
                    "needs at least one label, e.g. {team: payments}",
                ));
            }
            if let Some(bad) = r.matchers.keys().find(|k| !is_label_name(k)) {
                self.report(self.invalid(
                    &format!("{key}.match"),
                    format!("{bad:?} is not a valid label name"),
                ));
            }
            routes.push(SlackRoute {
                matchers: r.matchers,
                channel: r.channel,
            });
        }
        let capture =
            self.slack_capture(&raw.capture, raw.capture_reaction, raw.milestone_reactions);
        Ok(SlackConfig {
            api_url,
            bot_token,
            channel,
            signing_secret,
            webhook_url,
            routes,
            capture,
        })
    }

    /// `slack.capture`, `slack.capture_reaction`, `slack.milestone_reactions`.
    fn slack_capture(
        &self,
        capture: &Option<String>,
        reaction: Option<String>,
        milestones: Option<BTreeMap<String, String>>,
    ) -> crate::incident::conversation::CaptureRules {
        use crate::incident::conversation::{Capture, CaptureRules};
        use crate::incident::MilestoneKind;
        let mut rules = CaptureRules::default();
        match capture.as_deref() {
            None | Some("all") => {}
            Some("marked") => rules.capture = Capture::Marked,
            Some(other) => self.report(self.invalid(
                "slack.capture",
                format!(
                    "{other:?}: use all (every reply) or marked (replies with capture_reaction)"
                ),
            )),
        }
        let emoji = |key: &str, v: String| {
            let v = v.trim().trim_matches(':').to_string();
            if v.is_empty() || v.contains(char::is_whitespace) {
                self.report(self.invalid(key, "an emoji name such as pushpin (colons optional)"));
            }
            v
        };
        if let Some(r) = reaction {
            rules.capture_reaction = emoji("slack.capture_reaction", r);
        }
        for (name, r) in milestones.unwrap_or_default() {
            let key = format!("slack.milestone_reactions.{name}");
            match MilestoneKind::parse(&name) {
                Some(kind) => rules.milestone_reactions.push((kind, emoji(&key, r))),
                None => self
                    .report(self.invalid(&key, "milestones are triage, identified and mitigated")),
            }
        }
        rules
    }

    // --- helpers -----------------------------------------------------------------------------

    /// Resolves one secret: the `<key>_file` key wins, then `env_var`, else `None`.
    fn secret(
        &self,
        key: &str,
        file: Option<PathBuf>,
        env_var: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        let file_key = format!("{key}_file");
        let Some(path) = file else {
            return self.env_secret(key, env_var);
        };
        if (self.env)(env_var).is_some() {
            tracing::warn!(
                key = %file_key,
                variable = env_var,
                "secret set both in the configuration file and the environment; using the file"
            );
        }
        let path = self.non_empty_path(&file_key, path)?;
        self.read_secret_file(&file_key, &self.relative_to_config(path))
            .map(Some)
    }

    fn env_secret(&self, key: &str, env_var: &str) -> Result<Option<Secret>, ConfigError> {
        match (self.env)(env_var) {
            None => Ok(None),
            Some(value) if value.is_empty() => Err(ConfigError::EmptySecret {
                file: self.file.to_owned(),
                key: key.to_owned(),
                origin: format!("environment variable {env_var}"),
            }),
            Some(value) => Ok(Some(Secret(value))),
        }
    }

    fn read_secret_file(&self, file_key: &str, path: &Path) -> Result<Secret, ConfigError> {
        let mut content =
            std::fs::read_to_string(path).map_err(|error| ConfigError::SecretFile {
                file: self.file.to_owned(),
                key: file_key.to_owned(),
                path: path.to_owned(),
                error,
            })?;
        // Editors and `echo` end files with a newline that is not part of the secret.
        let len = content.trim_end_matches(['\n', '\r']).len();
        content.truncate(len);
        if content.is_empty() {
            return Err(ConfigError::EmptySecret {
                file: self.file.to_owned(),
                key: file_key.to_owned(),
                origin: format!("secret file {}", path.display()),
            });
        }
        Ok(Secret(content))
    }

    fn one_authorization(
        &self,
        key: &str,
        bearer_token: &Option<Secret>,
        basic_auth: &Option<BasicAuth>,
        env_var: &str,
    ) -> Result<(), ConfigError> {
        if bearer_token.is_some() && basic_auth.is_some() {
            return Err(self.invalid(
                key,
                format!(
                    "a bearer token (bearer_token_file or {env_var}) and basic_auth are both \
                     set; use one"
                ),
            ));
        }
        Ok(())
    }

    fn header(&self, key: &str, name: &str, value: &str) -> Result<(), ConfigError> {
        let key = format!("{key}.{name}");
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.invalid(&key, format!("invalid header name {name:?}")))?;
        if header == reqwest::header::AUTHORIZATION
            || header == reqwest::header::PROXY_AUTHORIZATION
        {
            return Err(self.invalid(
                &key,
                "credentials do not belong in headers (they are not secret there); use \
                 bearer_token_file or basic_auth",
            ));
        }
        let reserved = [
            reqwest::header::HOST,
            reqwest::header::CONTENT_LENGTH,
            reqwest::header::CONTENT_TYPE,
            reqwest::header::TRANSFER_ENCODING,
            reqwest::header::CONNECTION,
        ];
        if reserved.contains(&header) {
            return Err(self.invalid(
                &key,
                "is set by incidentd's HTTP client and cannot be overridden",
            ));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(self.invalid(&key, "invalid header value"));
        }
        Ok(())
    }

    fn required_url(
        &self,
        key: &str,
        url: Option<String>,
        example: &str,
    ) -> Result<String, ConfigError> {
        match url {
            Some(url) => self.http_url(key, url),
            None => Err(self.invalid(key, format!("required, e.g. {example}"))),
        }
    }

    fn http_url(&self, key: &str, url: String) -> Result<String, ConfigError> {
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                Ok(url)
            }
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => Err(self.invalid(
                key,
                format!("invalid URL {url:?}: must start with http:// or https://"),
            )),
            Ok(_) => Err(self.invalid(key, format!("invalid URL {url:?}: no host"))),
            Err(why) => Err(self.invalid(key, format!("invalid URL {url:?}: {why}"))),
        }
    }

    fn non_empty_path(&self, key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
        if path.as_os_str().is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        Ok(path)
    }

    /// Resolves a path the configuration points at against the configuration file's directory.
    fn relative_to_config(&self, path: PathBuf) -> PathBuf {
        if path.is_absolute() || self.base.as_os_str().is_empty() {
            return path;
        }
        // Drop a leading `./` so that messages show `config/rules`, not `config/./rules`.
        let rest: PathBuf = path
            .components()
            .skip_while(|c| matches!(c, Component::CurDir))
            .collect();
        self.base.join(rest)
    }
}

fn is_http_url(s: &str) -> bool {
    reqwest::Url::parse(s)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .unwrap_or(false)
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = "tests/fixtures/config";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }

    fn load_fixture(name: &str) -> Result<Config, ConfigError> {
        Config::load_with_env(&fixture(name), &no_env)
    }

    /// Parses `text` as if it were a file in the fixtures directory, with `env` as environment.
    fn parse_in_fixtures(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| value.to_string())
        };
        Config::from_yaml_with_env(text, &fixture("inline.yml"), &lookup)
    }

    /// One entry per failure fixture, with the exact message `check-config` prints.
    const FAILURES: &[(&str, &str)] = &[
        ("alertmanager-zero-interval.yml", "alertmanager.reconcile_interval: must be greater than 0s"),
        ("bad-duration.yml", r#"correlation.reopen_window: invalid duration "5x": unknown unit "x", expected one of y, w, d, h, m, s, ms (line 2, column 18)"#),
        ("bad-external-url.yml", r#"web.external_url: invalid URL "incidentd.example.com:9097": must start with http:// or https://"#),
        ("bad-label-name.yml", r#"correlation.group_by[1]: invalid label name "team-name": must match [a-zA-Z_][a-zA-Z0-9_]*"#),
        ("bad-timezone.yml", r#"postmortem.timezone: unknown time zone "Europe/Berln": use an IANA name such as "UTC" or "Europe/Berlin" (line 2, column 3)"#),
        ("basic-auth-without-password.yml", "web.webhook_auth.basic_auth.password_file: required (or set INCIDENTD_WEBHOOK_PASSWORD)"),
        ("basic-auth-without-username.yml", "web.webhook_auth.basic_auth.username: required"),
        ("duplicate-group-by.yml", r#"correlation.group_by[2]: label "service" is listed twice"#),
        ("duplicate-severity.yml", r#"correlation.severity_order[2]: severity "critical" is listed twice"#),
        ("duration-out-of-order.yml", r#"alertmanager.reconcile_interval: invalid duration "30s1m": unit "m" after "s": write units largest first, e.g. 1h30m (line 3, column 23)"#),
        ("duration-without-unit.yml", r#"storage.raw_payload_retention: invalid duration "30": missing unit after "30", e.g. "30s" (line 2, column 26)"#),
        ("empty-group-by.yml", "correlation.group_by: must list at least one label name"),
        ("not-a-mapping.yml", r#"web: expected a mapping, got string "lots" (line 1, column 6)"#),
        ("rules-dir-missing.yml", r#"rules_dir: cannot read directory tests/fixtures/config/no-such-rules: No such file or directory (os error 2); with prometheus set, drafts would silently lack the per-alert queries, impact queries and SLOs: create it, or set rules_dir: "" to run without"#),
        ("several-errors.yml", "web.max_body_bytes: must be greater than 0\n\
            tests/fixtures/config/several-errors.yml: correlation.group_by[1]: invalid label name \"team-name\": must match [a-zA-Z_][a-zA-Z0-9_]*\n\
            tests/fixtures/config/several-errors.yml: prometheus.timeout: must be greater than 0s"),
        ("snapshot-margin-after-delay.yml", "prometheus.snapshot_margin: 10m is longer than prometheus.snapshot_delay (5m): the full snapshot runs snapshot_delay after the resolve and would ask Prometheus about a future it has no data for; make snapshot_margin at most snapshot_delay"),
        ("empty-secret-file.yml", "web.webhook_auth.bearer_token_file: secret file tests/fixtures/config/secrets/empty is empty"),
        ("empty-severity-order.yml", "correlation.severity_order: must list at least one severity"),
        ("empty-storage-path.yml", "storage.path: must not be empty"),
        ("empty-webhook-auth.yml", "web.webhook_auth: set bearer_token_file (or INCIDENTD_WEBHOOK_BEARER_TOKEN) and/or basic_auth; remove the section to accept webhooks without authentication"),
        ("inline-password.yml", "prometheus.basic_auth.password: inline secrets are not allowed; put the value in a file and set prometheus.basic_auth.password_file, or set the environment variable INCIDENTD_PROMETHEUS_PASSWORD (line 5, column 5)"),
        ("inline-secret.yml", "web.webhook_auth.bearer_token: inline secrets are not allowed; put the value in a file and set web.webhook_auth.bearer_token_file, or set the environment variable INCIDENTD_WEBHOOK_BEARER_TOKEN (line 4, column 5)"),
        ("invalid-yaml.yml", "did not find expected key at line 3 column 2, while parsing a block mapping"),
        ("missing-secret-file.yml", "web.api_token_file: cannot read secret file tests/fixtures/config/secrets/does-not-exist: No such file or directory (os error 2)"),
        ("postgres-bad-backend.yml", "storage.backend: unknown variant `mysql`, expected `sqlite` or `postgres` (line 2, column 12)"),
        ("postgres-bad-sslmode.yml", r#"storage.postgres.url: invalid sslmode "verify": expected one of disable, prefer, require, verify-ca, verify-full"#),
        ("postgres-bad-sslmode-key.yml", r#"storage.postgres.sslmode: invalid sslmode "allow": expected one of disable, prefer, require, verify-ca, verify-full"#),
        ("postgres-inline-password.yml", "storage.postgres.url: the connection string holds a password, and inline secrets are not allowed; put it in a file and set storage.postgres.url_file, or set the environment variable INCIDENTD_POSTGRES_URL"),
        ("postgres-missing-sslrootcert.yml", "storage.postgres.sslrootcert: cannot read tests/fixtures/config/no-such-ca.pem: No such file or directory (os error 2)"),
        ("postgres-section-with-sqlite.yml", "storage.postgres: is set but storage.backend is sqlite: set storage.backend: postgres, or remove the section"),
        ("postgres-url-and-url-file.yml", "storage.postgres: url and url_file are both set; use one"),
        ("postgres-without-url.yml", "storage.postgres.url_file: required with storage.backend: postgres (or set INCIDENTD_POSTGRES_URL, or storage.postgres.url if the connection string holds no password)"),
        ("postgres-zero-connect-timeout.yml", "storage.postgres.connect_timeout: must be greater than 0s"),
        ("postgres-zero-pool-size.yml", "storage.postgres.pool_size: must be greater than 0"),
        ("prometheus-authorization-header.yml", "prometheus.headers.Authorization: credentials do not belong in headers (they are not secret there); use bearer_token_file or basic_auth"),
        ("prometheus-bad-url.yml", r#"prometheus.url: invalid URL "ftp://prometheus:9090": must start with http:// or https://"#),
        ("prometheus-bearer-and-basic-auth.yml", "prometheus: a bearer token (bearer_token_file or INCIDENTD_PROMETHEUS_BEARER_TOKEN) and basic_auth are both set; use one"),
        ("prometheus-without-url.yml", "prometheus.url: required, e.g. http://prometheus:9090"),
        ("prometheus-zero-timeout.yml", "prometheus.timeout: must be greater than 0s"),
        ("prometheus-zero-retry-backoff.yml", "prometheus.retry_backoff: must be greater than 0s"),
        ("prometheus-query-lag-past-delay.yml", "prometheus.query_lag: 5m is not shorter than prometheus.snapshot_delay (5m): the full snapshot would run before the backend shows the resolution; raise snapshot_delay (VictoriaMetrics answers -search.latencyOffset behind, 30s by default)"),
        ("slack-bot-token-and-webhook-url.yml", "slack: set exactly one of bot_token_file (or INCIDENTD_SLACK_BOT_TOKEN) and webhook_url_file (or INCIDENTD_SLACK_WEBHOOK_URL); both are set"),
        ("slack-webhook-url-not-a-url.yml", "slack.webhook_url: the value of webhook_url_file (or INCIDENTD_SLACK_WEBHOOK_URL) is not an http(s) URL; it is not shown because it is a secret"),
        ("slack-without-channel.yml", r##"slack.channel: required: the channel to post to, e.g. "#incidents""##),
        ("slack-without-token.yml", "slack: set exactly one of bot_token_file (or INCIDENTD_SLACK_BOT_TOKEN) and webhook_url_file (or INCIDENTD_SLACK_WEBHOOK_URL); neither is set"),
        ("unknown-key.yml", "web.webhok_auth: unknown field `webhok_auth`, expected one of `external_url`, `webhook_auth`, `api_token_file`, `max_body_bytes`, `read_header_timeout`, `request_timeout`, `auth_proxy_header` (line 3, column 3)"),
        ("unknown-top-level-key.yml", "slak: unknown field `slak`, expected one of `web`, `storage`, `correlation`, `prometheus`, `alertmanager`, `rules_dir`, `postmortem`, `slack` (line 2, column 1)"),
        ("wrong-type.yml", r#"web.max_body_bytes: expected a non-negative integer, got string "lots" (line 2, column 19)"#),
        ("zero-max-body-bytes.yml", "web.max_body_bytes: must be greater than 0"),
        ("zero-prune-interval.yml", "storage.prune_interval: must be greater than 0s"),
        ("zero-read-header-timeout.yml", "web.read_header_timeout: must be greater than 0s"),
        ("zero-request-timeout.yml", "web.request_timeout: must be greater than 0s"),
        ("zero-retention.yml", "storage.raw_payload_retention: must be greater than 0s: raw payloads are the audit trail"),
    ];

    #[test]
    fn every_failure_fixture_fails_with_a_message_naming_the_file_and_the_key() {
        for (name, expected) in FAILURES {
            let err = load_fixture(name).expect_err(name);
            assert_eq!(
                err.to_string(),
                format!("{FIXTURES}/{name}: {expected}"),
                "fixture {name}"
            );
        }
    }

    #[test]
    fn every_failure_fixture_has_an_asserted_message() {
        let mut unlisted = Vec::new();
        for entry in std::fs::read_dir(FIXTURES).expect("fixtures directory") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".yml")
                && name != "good.yml"
                && !FAILURES.iter().any(|(f, _)| *f == name)
            {
                unlisted.push(name);
            }
        }
        assert!(
            unlisted.is_empty(),
            "fixtures without an expected error: {unlisted:?}"
        );
    }

    #[test]
    fn the_good_fixture_sets_every_key_and_resolves_secrets_and_paths() {
        let config = load_fixture("good.yml").expect("good.yml loads");
        let dir = Path::new(FIXTURES);
        let secret = |s: &str| Secret::new(s.to_owned());
        let expected = Config {
            web: WebConfig {
                external_url: Some("https://incidentd.example.com/".into()),
                webhook_auth: Some(WebhookAuth {
                    bearer_token: Some(secret("fixture-webhook-token")),
                    basic_auth: Some(BasicAuth {
                        username: "alertmanager".into(),
                        password: secret("fixture-prometheus-password"),
                    }),
                }),
                api_token: Some(secret("fixture-api-token")),
                max_body_bytes: 1_048_576,
                read_header_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(60),
                auth_proxy_header: None,
            },
            storage: StorageConfig {
                backend: StorageBackend::Postgres,
                path: "/var/lib/incidentd".into(),
                postgres: Some(PostgresConfig {
                    url: postgres::Dsn::parse(
                        "postgres://incidentd:fixture-postgres-password@db.example.com:5432/\
                         incidentd?sslmode=verify-full",
                    )
                    .unwrap(),
                    // The key wins over the connection string's verify-full.
                    sslmode: postgres::SslMode::VerifyCa,
                    sslrootcert: Some(dir.join("postgres-ca.pem")),
                    pool_size: 4,
                    statement_timeout: Duration::from_secs(10),
                    connect_timeout: Duration::from_secs(2),
                }),
                raw_payload_retention: Duration::from_secs(7 * 24 * 3600),
                incident_retention: Duration::from_secs(365 * 24 * 3600),
                prune_interval: Duration::from_secs(10 * 60),
                job_lease: Duration::from_secs(20),
            },
            correlation: CorrelationConfig {
                group_by: vec!["service".into(), "cluster".into()],
                reopen_window: Duration::ZERO,
                severity_order: vec!["page".into(), "ticket".into()],
            },
            prometheus: Some(PrometheusConfig {
                url: "https://prometheus.example.com:9090/".into(),
                timeout: Duration::from_secs(90),
                bearer_token: None,
                basic_auth: Some(BasicAuth {
                    username: "incidentd".into(),
                    password: secret("fixture-prometheus-password"),
                }),
                headers: BTreeMap::from([("X-Scope-OrgID".into(), "team-a".into())]),
                snapshot_delay: Duration::from_secs(90),
                quick_snapshot_delay: Duration::from_millis(500),
                snapshot_baseline: Duration::from_secs(2 * 3600),
                snapshot_margin: Duration::from_secs(60),
                retry_backoff: Duration::from_secs(1),
                query_lag: Duration::from_secs(30),
                refresh_interval: DEFAULT_REFRESH_INTERVAL,
            }),
            alertmanager: Some(AlertmanagerConfig {
                url: "http://alertmanager:9093".into(),
                reconcile_interval: Duration::from_secs(120),
                bearer_token: Some(secret("fixture-webhook-token")),
                basic_auth: None,
            }),
            rules_dir: Some(dir.join("rules")),
            postmortem: PostmortemConfig {
                output_dir: "drafts".into(),
                template: Some(dir.join("templates/postmortem.md.hbs")),
                timezone: chrono_tz::Europe::Berlin,
                second_timezone: Some(chrono_tz::America::New_York),
                render_delay: Duration::from_secs(2),
                severity_map: Default::default(),
            },
            slack: Some(SlackConfig {
                api_url: "http://127.0.0.1:8080/api/".into(),
                bot_token: Some(secret("xoxb-fixture-bot-token")),
                channel: "#ops".into(),
                signing_secret: Some(secret("fixture-signing-secret")),
                webhook_url: None,
                routes: vec![SlackRoute {
                    matchers: [("team".to_string(), "payments".to_string())].into(),
                    channel: "#payments-incidents".into(),
                }],
                capture: Default::default(),
            }),
        };
        assert_eq!(config, expected);
        // PathBuf equality ignores `./`; the printed form should not show it either.
        assert_eq!(
            config.rules_dir.as_deref().unwrap().to_string_lossy(),
            format!("{FIXTURES}/rules")
        );
    }

    #[test]
    fn the_shipped_config_file_documents_exactly_the_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/incidentd.yml");
        let config = Config::load_with_env(&path, &no_env).expect("config/incidentd.yml loads");
        // rules_dir is the one file-relative default: it resolves beside the config file.
        let expected = Config {
            rules_dir: Some(path.parent().expect("has a parent").join("rules")),
            ..Config::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn the_embedded_defaults_are_those_of_the_design() {
        let config = Config::default();
        assert_eq!(config.storage.path, Path::new("./data"));
        assert_eq!(
            config.storage.raw_payload_retention,
            parse_duration("30d").unwrap()
        );
        assert_eq!(config.storage.prune_interval, parse_duration("1h").unwrap());
        assert_eq!(config.correlation.group_by, ["service"]);
        assert_eq!(
            config.correlation.reopen_window,
            parse_duration("30m").unwrap()
        );
        assert_eq!(
            config.correlation.severity_order,
            ["critical", "error", "warning", "info"]
        );
        assert_eq!(config.web.max_body_bytes, 8_388_608);
        assert_eq!(config.web.read_header_timeout, Duration::from_secs(10));
        assert_eq!(config.web.request_timeout, Duration::from_secs(30));
        assert!(config.web.webhook_auth.is_none() && config.web.api_token.is_none());
        assert!(config.prometheus.is_none() && config.alertmanager.is_none());
        assert_eq!(
            PrometheusConfig::new("http://vm:8428").query_lag,
            Duration::ZERO
        );
        assert!(config.slack.is_none());
        assert_eq!(config.rules_dir.as_deref(), Some(Path::new("./rules")));
        assert_eq!(config.postmortem.output_dir, Path::new("./drafts"));
        assert_eq!(config.postmortem.template, None);
        assert_eq!(config.postmortem.timezone, chrono_tz::UTC);
        assert_eq!(config.postmortem.second_timezone, None);
    }

    #[test]
    fn an_empty_or_comment_only_file_means_the_defaults() {
        for text in ["", "\n", "# nothing configured\n", "---\n"] {
            let config = Config::from_yaml_with_env(text, Path::new("incidentd.yml"), &no_env);
            assert_eq!(config.expect(text), Config::default(), "{text:?}");
        }
    }

    #[test]
    fn an_empty_template_means_the_embedded_one_and_a_set_one_is_relative_to_the_config() {
        let origin = Path::new("/etc/incidentd/incidentd.yml");
        let none = Config::from_yaml_with_env("postmortem: {template: \"\"}", origin, &no_env);
        assert_eq!(none.expect("loads").postmortem.template, None);
        let set = Config::from_yaml_with_env("postmortem: {template: pm.hbs}", origin, &no_env);
        assert_eq!(
            set.expect("loads").postmortem.template,
            Some(PathBuf::from("/etc/incidentd/pm.hbs"))
        );
    }

    #[test]
    fn relative_paths_follow_prometheus_conventions() {
        let text = "rules_dir: rules\nstorage: {path: ./data}\npostmortem: {output_dir: out}\n";
        let config = Config::from_yaml_with_env(text, Path::new("/etc/incidentd/x.yml"), &no_env)
            .expect("loads");
        // Read by incidentd: beside the configuration file.
        assert_eq!(
            config.rules_dir.as_deref(),
            Some(Path::new("/etc/incidentd/rules"))
        );
        // Written by incidentd: the working directory.
        assert_eq!(config.storage.path, Path::new("./data"));
        assert_eq!(config.postmortem.output_dir, Path::new("out"));

        let absolute =
            Config::from_yaml_with_env("rules_dir: /srv/rules", Path::new("/etc/x.yml"), &no_env);
        assert_eq!(
            absolute.expect("loads").rules_dir.as_deref(),
            Some(Path::new("/srv/rules"))
        );
    }

    #[test]
    fn with_prometheus_the_default_rules_dir_must_exist_and_an_empty_one_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("incidentd.yml");
        let load = |text: &str| Config::from_yaml_with_env(text, &origin, &no_env);
        let prometheus = "prometheus: {url: http://prometheus:9090}\n";
        // The default ./rules beside the file does not exist: refused, naming the key.
        let err = load(prometheus).expect_err("no rules directory");
        assert!(
            err.to_string().contains(&format!(
                "rules_dir: cannot read directory {}",
                dir.path().join("rules").display()
            )),
            "{err}"
        );
        // `rules_dir: ""` says so on purpose.
        let none = load(&format!("{prometheus}rules_dir: \"\"\n")).expect("loads");
        assert_eq!(none.rules_dir, None);
        // Once it exists, the default is fine.
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let found = load(prometheus).expect("loads");
        assert_eq!(found.rules_dir, Some(dir.path().join("rules")));
        // Without Prometheus nothing reads it, so nothing is checked.
        let unused = load("rules_dir: elsewhere\n").expect("loads");
        assert_eq!(unused.rules_dir, Some(dir.path().join("elsewhere")));
    }

    #[test]
    fn a_snapshot_margin_equal_to_the_delay_is_fine() {
        let text = "prometheus: {url: http://p:9090, snapshot_delay: 5m, snapshot_margin: 5m}\n";
        parse_in_fixtures(text, &[]).expect("loads");
    }

    #[test]
    fn several_errors_are_each_their_own_error_with_the_file_and_key() {
        let err = load_fixture("several-errors.yml").expect_err("three mistakes");
        let keys: Vec<&str> = err
            .errors()
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { key, .. } => key.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "web.max_body_bytes",
                "correlation.group_by[1]",
                "prometheus.timeout"
            ]
        );
    }

    #[test]
    fn type_errors_read_as_yaml_not_rust() {
        for (text, expected) in [
            (
                "correlation: [a]",
                "correlation: expected a mapping, got a list",
            ),
            (
                "correlation: {group_by: service}",
                r#"correlation.group_by: expected a list, got string "service""#,
            ),
            (
                "web: {max_body_bytes: -5}",
                "web.max_body_bytes: expected a non-negative integer, got integer `-5`",
            ),
            (
                "rules_dir: [a]",
                "rules_dir: expected a path (a string), got a list",
            ),
            (
                "web:\n  webhook_auth: true",
                "web.webhook_auth: expected a mapping, got boolean `true`",
            ),
            ("- a", "expected a mapping, got a list"),
        ] {
            let err = parse_in_fixtures(text, &[]).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            for rust in [
                "usize", "struct", "Raw", "sequence", "got map", "a map ", "u128",
            ] {
                assert!(!err.contains(rust), "{text:?}: {err}");
            }
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error_naming_it() {
        let err = load_fixture("no-such-config.yml").expect_err("missing file");
        assert_eq!(
            err.to_string(),
            format!("{FIXTURES}/no-such-config.yml: cannot read the configuration file: No such file or directory (os error 2)")
        );
    }

    #[test]
    fn a_bare_zero_is_a_valid_duration_and_means_never_reopen() {
        let config = parse_in_fixtures("correlation: {reopen_window: 0}", &[]).expect("loads");
        assert_eq!(config.correlation.reopen_window, Duration::ZERO);
    }

    #[test]
    fn secret_files_lose_trailing_newlines_only() {
        let config = load_fixture("good.yml").expect("loads");
        // api-token ends with \r\n, slack-signing-secret has no newline at all.
        assert_eq!(
            config.web.api_token.as_ref().map(Secret::expose),
            Some("fixture-api-token")
        );
        let slack = config.slack.expect("slack");
        assert_eq!(
            slack.signing_secret.as_ref().map(Secret::expose),
            Some("fixture-signing-secret")
        );
    }

    #[test]
    fn the_environment_supplies_a_secret_when_the_file_key_is_absent() {
        let config = parse_in_fixtures(
            "slack: {channel: '#ops'}\n",
            &[
                (ENV_SLACK_BOT_TOKEN, "xoxb-from-env"),
                (ENV_SLACK_SIGNING_SECRET, "sign-from-env"),
            ],
        )
        .expect("loads");
        let slack = config.slack.expect("slack");
        assert_eq!(
            slack.bot_token.as_ref().map(Secret::expose),
            Some("xoxb-from-env")
        );
        assert_eq!(
            slack.signing_secret.as_ref().map(Secret::expose),
            Some("sign-from-env")
        );
    }

    #[test]
    fn a_file_key_in_the_yaml_wins_over_the_environment() {
        let config = parse_in_fixtures(
            "web: {api_token_file: secrets/api-token}\n",
            &[(ENV_API_TOKEN, "token-from-env")],
        )
        .expect("loads");
        assert_eq!(
            config.web.api_token.as_ref().map(Secret::expose),
            Some("fixture-api-token")
        );
    }

    #[test]
    fn an_empty_environment_variable_is_an_error_naming_it() {
        let err = parse_in_fixtures("", &[(ENV_API_TOKEN, "")]).expect_err("empty variable");
        assert_eq!(
            err.to_string(),
            format!("{FIXTURES}/inline.yml: web.api_token: environment variable INCIDENTD_API_TOKEN is empty")
        );
    }

    #[test]
    fn tokens_in_the_environment_turn_authentication_on_without_a_config_file() {
        let env = |name: &str| match name {
            ENV_WEBHOOK_BEARER_TOKEN => Some("hook-from-env".to_owned()),
            ENV_API_TOKEN => Some("api-from-env".to_owned()),
            _ => None,
        };
        let config = Config::from_env_with(&env).expect("loads");
        let auth = config.web.webhook_auth.expect("webhook auth is on");
        assert_eq!(
            auth.bearer_token.as_ref().map(Secret::expose),
            Some("hook-from-env")
        );
        assert_eq!(auth.basic_auth, None);
        assert_eq!(
            config.web.api_token.as_ref().map(Secret::expose),
            Some("api-from-env")
        );
        assert_eq!(
            Config::from_env_with(&no_env).expect("loads"),
            Config::default()
        );
    }

    #[test]
    fn environment_secrets_of_an_absent_section_are_ignored() {
        let config = parse_in_fixtures(
            "",
            &[
                (ENV_SLACK_BOT_TOKEN, "xoxb"),
                (ENV_PROMETHEUS_BEARER_TOKEN, "t"),
                (ENV_WEBHOOK_PASSWORD, "p"),
            ],
        )
        .expect("loads");
        let expected = Config {
            rules_dir: Some(fixture("rules")),
            ..Config::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn slack_capture_keys_are_read_and_checked() {
        use crate::incident::conversation::Capture;
        use crate::incident::MilestoneKind;
        let config = parse_in_fixtures(
            "slack: {channel: '#ops', bot_token_file: secrets/slack-bot-token, capture: marked, \
             capture_reaction: ':round_pushpin:', milestone_reactions: {mitigated: adhesive_bandage}}\n",
            &[],
        )
        .expect("loads");
        let rules = config.slack.expect("slack").capture;
        assert_eq!(rules.capture, Capture::Marked);
        assert_eq!(rules.capture_reaction, "round_pushpin");
        assert_eq!(
            rules.milestone_reactions,
            [(MilestoneKind::Mitigated, "adhesive_bandage".to_string())]
        );
        let err = parse_in_fixtures(
            "slack: {channel: '#ops', bot_token_file: secrets/slack-bot-token, capture: some, \
             milestone_reactions: {resolved: white_check_mark}}\n",
            &[],
        )
        .expect_err("unknown values");
        let err = err.to_string();
        assert!(err.contains("slack.capture"), "{err}");
        assert!(err.contains("slack.milestone_reactions.resolved"), "{err}");
    }

    #[test]
    fn a_bot_token_file_and_a_webhook_url_in_the_environment_conflict() {
        let err = parse_in_fixtures(
            "slack: {channel: '#ops', bot_token_file: secrets/slack-bot-token}\n",
            &[(
                ENV_SLACK_WEBHOOK_URL,
                "https://hooks.slack.com/services/T/B/x",
            )],
        )
        .expect_err("two Slack modes");
        assert!(err.to_string().ends_with("both are set"), "{err}");
    }

    #[test]
    fn every_secret_key_refuses_an_inline_value_and_points_to_its_file_key_and_variable() {
        for (key, env_var) in SECRETS {
            let segments: Vec<&str> = key.split('.').collect();
            let mut text = String::new();
            for (depth, segment) in segments.iter().enumerate() {
                let value = if depth + 1 == segments.len() {
                    " inline-fixture-secret"
                } else {
                    ""
                };
                text.push_str(&format!("{}{segment}:{value}\n", "  ".repeat(depth)));
            }
            let err = parse_in_fixtures(&text, &[]).expect_err(key);
            let expected = format!(
                "{FIXTURES}/inline.yml: {key}: inline secrets are not allowed; put the value in a \
                 file and set {key}_file, or set the environment variable {env_var} (line {}, column {})",
                segments.len(),
                2 * segments.len() - 1
            );
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = load_fixture("good.yml").expect("loads");
        let debug = format!("{config:?} {config:#?}");
        for value in [
            "fixture-webhook-token",
            "fixture-api-token",
            "fixture-prometheus-password",
            "xoxb-fixture-bot-token",
            "fixture-signing-secret",
            "fixture-postgres-password",
        ] {
            assert!(!debug.contains(value), "{value} leaked into Debug");
        }
        assert!(debug.contains("Dsn(incidentd@db.example.com:5432/incidentd)"));
        assert!(debug.contains("<secret>"));
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<secret> <secret>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secrets_never_appear_in_error_messages() {
        let cases = [
            ("inline-secret.yml", "inline-fixture-secret"),
            ("inline-password.yml", "inline-fixture-password"),
            (
                "prometheus-authorization-header.yml",
                "inline-fixture-secret",
            ),
            (
                "slack-webhook-url-not-a-url.yml",
                "not-a-url-fixture-secret",
            ),
            ("postgres-inline-password.yml", "inline-fixture-password"),
        ];
        for (name, value) in cases {
            let err = load_fixture(name).expect_err(name);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(value), "{name}: secret in {shown}");
        }
        // An error after secrets were read must not carry them either.
        let err = parse_in_fixtures(
            "web: {api_token_file: secrets/api-token}\ncorrelation: {group_by: []}\n",
            &[(ENV_WEBHOOK_BEARER_TOKEN, "env-secret-value")],
        )
        .expect_err("empty group_by");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("fixture-api-token") && !shown.contains("env-secret-value"));
    }

    const PG_SECTION: &str = "storage: {backend: postgres, postgres: {pool_size: 2}}\n";

    #[test]
    fn the_postgres_connection_string_comes_from_the_environment_without_a_file_key() {
        let config = parse_in_fixtures(
            PG_SECTION,
            &[(
                ENV_POSTGRES_URL,
                "host=db user=incidentd password=env-secret dbname=inc",
            )],
        )
        .expect("loads");
        let pg = config.storage.postgres.expect("postgres");
        assert_eq!(pg.url.redacted(), "incidentd@db:5432/inc");
        assert_eq!(pg.pool_size, 2);
        assert_eq!(pg.sslmode, postgres::SslMode::Prefer);
        assert_eq!(pg.statement_timeout, Duration::from_secs(30));
        assert_eq!(pg.connect_timeout, Duration::from_secs(5));
        assert!(!format!("{pg:?}").contains("env-secret"));

        // The section may be left out: the variable alone names the database.
        let config = parse_in_fixtures(
            "storage: {backend: postgres}\n",
            &[(
                ENV_POSTGRES_URL,
                "postgres://u@db/x?connect_timeout=9&sslmode=require",
            )],
        )
        .expect("loads");
        let pg = config.storage.postgres.expect("postgres");
        assert_eq!(pg.connect_timeout, Duration::from_secs(9));
        assert_eq!(pg.sslmode, postgres::SslMode::Require);
        assert_eq!(pg.pool_size, DEFAULT_POSTGRES_POOL_SIZE);
    }

    #[test]
    fn a_postgres_url_file_wins_over_the_environment_and_is_trimmed() {
        let config = parse_in_fixtures(
            "storage: {backend: postgres, postgres: {url_file: secrets/postgres-url}}\n",
            &[(ENV_POSTGRES_URL, "postgres://other@elsewhere/x")],
        )
        .expect("loads");
        let pg = config.storage.postgres.expect("postgres");
        assert_eq!(pg.url.redacted(), "incidentd@db.example.com:5432/incidentd");
        assert_eq!(pg.sslmode, postgres::SslMode::VerifyFull);
    }

    #[test]
    fn postgres_settings_of_the_environment_are_ignored_with_sqlite() {
        let config =
            parse_in_fixtures("", &[(ENV_POSTGRES_URL, "postgres://u@db/x")]).expect("loads");
        assert_eq!(config.storage.backend, StorageBackend::Sqlite);
        assert!(config.storage.postgres.is_none());
    }

    #[test]
    fn bad_postgres_settings_are_reported_together_and_never_show_the_password() {
        let err = parse_in_fixtures(
            "storage: {backend: postgres, postgres: {pool_size: 0, sslmode: bogus, \
             connect_timeout: 0s}}\n",
            &[(ENV_POSTGRES_URL, "postgres://u:env-secret@db/x")],
        )
        .expect_err("three errors");
        let keys: Vec<String> = err
            .errors()
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { key, .. } => key.clone(),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "storage.postgres.sslmode",
                "storage.postgres.pool_size",
                "storage.postgres.connect_timeout"
            ]
        );
        let err = parse_in_fixtures(
            PG_SECTION,
            &[(ENV_POSTGRES_URL, "postgres://u:env-secret@db:x/y")],
        )
        .expect_err("bad port");
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("storage.postgres.url: ") && !shown.contains("env-secret"),
            "{shown}"
        );
        let err = parse_in_fixtures(PG_SECTION, &[(ENV_POSTGRES_URL, "")]).expect_err("empty");
        assert_eq!(
            err.to_string(),
            format!("{FIXTURES}/inline.yml: storage.postgres.url: environment variable INCIDENTD_POSTGRES_URL is empty")
        );
    }

    #[test]
    fn an_inline_postgres_url_without_a_password_is_fine() {
        let config = parse_in_fixtures(
            "storage:\n  backend: postgres\n  postgres:\n    url: host=/run/postgresql dbname=incidentd\n    sslrootcert: system\n",
            &[],
        )
        .expect("loads");
        let pg = config.storage.postgres.expect("postgres");
        assert_eq!(pg.url.redacted(), "/run/postgresql:5432/incidentd");
        assert_eq!(pg.sslrootcert.as_deref(), Some(Path::new("system")));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }
}
