//! TEMPORARY stand-in until the config branch lands: the structs only, with defaults.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone)]
pub struct Secret(String);
impl Secret {
    pub fn new(s: String) -> Self { Secret(s) }
    pub fn expose(&self) -> &str { &self.0 }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("<secret>") }
}
#[derive(Debug, Clone)]
pub struct Config {
    pub web: WebConfig,
    pub storage: StorageConfig,
    pub correlation: CorrelationConfig,
    pub prometheus: Option<PrometheusConfig>,
    pub alertmanager: Option<AlertmanagerConfig>,
    pub rules_dir: PathBuf,
    pub postmortem: PostmortemConfig,
    pub slack: Option<SlackConfig>,
}
#[derive(Debug, Clone)]
pub struct WebConfig { pub external_url: Option<String>, pub webhook_auth: Option<WebhookAuth>, pub api_token: Option<Secret>, pub max_body_bytes: usize }
#[derive(Debug, Clone)]
pub struct WebhookAuth { pub bearer_token: Option<Secret>, pub basic_auth: Option<BasicAuth> }
#[derive(Debug, Clone)]
pub struct BasicAuth { pub username: String, pub password: Secret }
#[derive(Debug, Clone)]
pub struct StorageConfig { pub path: PathBuf, pub raw_payload_retention: Duration }
#[derive(Debug, Clone)]
pub struct CorrelationConfig { pub group_by: Vec<String>, pub reopen_window: Duration, pub severity_order: Vec<String> }
#[derive(Debug, Clone)]
pub struct PrometheusConfig { pub url: String, pub timeout: Duration, pub bearer_token: Option<Secret>, pub basic_auth: Option<BasicAuth>, pub headers: BTreeMap<String, String>, pub snapshot_delay: Duration }
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig { pub url: String, pub reconcile_interval: Duration, pub bearer_token: Option<Secret>, pub basic_auth: Option<BasicAuth> }
#[derive(Debug, Clone)]
pub struct PostmortemConfig { pub output_dir: PathBuf, pub template: Option<PathBuf>, pub timezone: chrono_tz::Tz }
#[derive(Debug, Clone)]
pub struct SlackConfig { pub api_url: String, pub bot_token: Option<Secret>, pub channel: String, pub signing_secret: Option<Secret>, pub webhook_url: Option<Secret> }
impl Default for Config {
    fn default() -> Self {
        Config {
            web: WebConfig { external_url: None, webhook_auth: None, api_token: None, max_body_bytes: 8 << 20 },
            storage: StorageConfig { path: "./data".into(), raw_payload_retention: Duration::from_secs(30 * 86400) },
            correlation: CorrelationConfig { group_by: vec!["service".into()], reopen_window: Duration::from_secs(1800), severity_order: vec!["critical".into(), "error".into(), "warning".into(), "info".into()] },
            prometheus: None, alertmanager: None, rules_dir: "./rules".into(),
            postmortem: PostmortemConfig { output_dir: "./drafts".into(), template: None, timezone: chrono_tz::UTC },
            slack: None,
        }
    }
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> { Err(ConfigError(format!("{}: config loading not built yet", path.display()))) }
}
