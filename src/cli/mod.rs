//! Client side of the command line: the commands that talk to a running daemon over its
//! HTTP interface (`replay`, `incidents list|show|ack|note|resolve`, `report`).
//!
//! `main.rs` owns the flags; the functions here take plain argument structs and a writer for
//! their output so tests can drive them against a mock server and read what they print.
//! Everything here only relies on the HTTP contract of DESIGN.md, never on the daemon's types
//! beyond the shared `Status` enum, so an older or newer daemon with extra fields still works.

pub mod format;
pub mod http_config;
pub mod incidents;
pub mod replay;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

/// What can go wrong in a client command. Every variant names the file or URL involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The `--url` given is not an absolute http(s) URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The arguments contradict each other (e.g. bearer and basic auth at once).
    #[error("{0}")]
    InvalidArguments(String),

    /// A payload, index or secret file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A secret file exists but holds nothing but whitespace.
    #[error("{} is empty: expected a secret", path.display())]
    EmptySecret { path: PathBuf },

    /// A payload file is not JSON, or not a JSON object or array of objects.
    #[error("{} is not a webhook payload: {reason}", path.display())]
    InvalidPayload { path: PathBuf, reason: String },

    /// A replay index (`index.json`) lists a file that cannot be found.
    #[error("{} lists {file:?}, which does not exist next to it", index.display())]
    IndexEntryMissing { index: PathBuf, file: String },

    /// The path given to replay has no payload files.
    #[error("{}: no *.json payload files to replay", path.display())]
    NothingToReplay { path: PathBuf },

    /// The daemon could not be reached, or the connection broke: the cause in words
    /// (connection refused, timed out, DNS failure, TLS error), see [`crate::net_error`].
    #[error("{method} {url}: {}", crate::net_error::describe(source))]
    Request {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The daemon answered with a status other than 2xx.
    #[error("{method} {url} answered {status}: {message}")]
    Status {
        method: &'static str,
        url: String,
        status: reqwest::StatusCode,
        /// The `error` field of the JSON body, or the start of the body as text.
        message: String,
    },

    /// The daemon answered 2xx with a body that is not the documented shape.
    #[error("{url} answered with an unexpected body: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },

    /// A replay stopped at a failing post; earlier posts were delivered.
    #[error("replay stopped at {item}: {source} ({sent} of {total} payloads were sent before it)")]
    ReplayStopped {
        /// `file` or `file[index]` for files holding an array of payloads.
        item: String,
        sent: usize,
        total: usize,
        #[source]
        source: Box<CliError>,
    },

    /// Writing the command's output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// How long one request may take before the command gives up on it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon a command talks to: its base URL (`--url`) and how to connect to it
/// (`--http.config.file`).
pub struct Daemon {
    /// e.g. `http://127.0.0.1:9097`.
    pub url: String,
    pub http: http_config::HttpConfig,
}

impl Daemon {
    /// `url` with a plain connection: no credentials, the system's trust roots.
    pub fn new(url: impl Into<String>) -> Daemon {
        Daemon {
            url: url.into(),
            http: Default::default(),
        }
    }
}

/// Parses a daemon URL given on the command line.
pub(crate) fn parse_base_url(url: &str) -> Result<Url, CliError> {
    let invalid = |reason: &str| CliError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(invalid("expected an http:// or https:// URL"));
    }
    if parsed.cannot_be_a_base() {
        return Err(invalid("expected an http:// or https:// URL"));
    }
    Ok(parsed)
}

/// `base` with `segments` appended as path segments. Each segment is percent-encoded, so an
/// incident id such as `../x` or `a/b` can never address another route. A base with a path
/// (daemon behind a reverse proxy under `/incidentd/`) keeps it.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        // `http://host/` and `http://host/prefix/` end in an empty segment.
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// Reads a secret (token or password) from a file. Surrounding whitespace is dropped because
/// files written by `echo` or editors end with a newline that is not part of the secret.
pub(crate) fn read_secret(path: &Path) -> Result<String, CliError> {
    let raw = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = raw.trim();
    if secret.is_empty() {
        return Err(CliError::EmptySecret {
            path: path.to_path_buf(),
        });
    }
    Ok(secret.to_string())
}

/// The message to show for a non-2xx answer: the `error` field of the documented
/// `{"error": "..."}` body, or else the start of the body as text.
pub(crate) fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
        return parsed.error;
    }
    let text = one_line(body, 300);
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text
    }
}

/// `text` on one line (whitespace runs collapsed) and at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Sends a request and returns the body of a 2xx answer; anything else becomes an error that
/// names the method, URL, status and the daemon's message.
pub(crate) async fn send(
    method: &'static str,
    url: &Url,
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), CliError> {
    let request_error = |source| CliError::Request {
        method,
        url: url.to_string(),
        source,
    };
    let response = request.send().await.map_err(request_error)?;
    let status = response.status();
    let body = response.text().await.map_err(request_error)?;
    if !status.is_success() {
        return Err(CliError::Status {
            method,
            url: url.to_string(),
            status,
            message: error_message(&body),
        });
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_segments_to_a_bare_or_prefixed_base() {
        let bare = parse_base_url("http://127.0.0.1:9097").unwrap();
        assert_eq!(
            endpoint(&bare, &["api", "v1", "incidents"]).as_str(),
            "http://127.0.0.1:9097/api/v1/incidents"
        );
        let prefixed = parse_base_url("https://ops.example.com/incidentd/").unwrap();
        assert_eq!(
            endpoint(&prefixed, &["api", "v1", "incidents"]).as_str(),
            "https://ops.example.com/incidentd/api/v1/incidents"
        );
    }

    #[test]
    fn endpoint_percent_encodes_an_incident_id_so_it_cannot_change_the_route() {
        let base = parse_base_url("http://127.0.0.1:9097/").unwrap();
        let url = endpoint(&base, &["api", "v1", "incidents", "../../metrics"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9097/api/v1/incidents/..%2F..%2Fmetrics"
        );
    }

    #[test]
    fn a_url_without_http_scheme_is_rejected_with_the_reason() {
        let err = parse_base_url("127.0.0.1:9097").unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:9097"), "{err}");
        let err = parse_base_url("ftp://example.com").unwrap_err().to_string();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn error_message_prefers_the_documented_error_field() {
        assert_eq!(
            error_message(r#"{"error": "field `version`: expected \"4\""}"#),
            "field `version`: expected \"4\""
        );
        assert_eq!(error_message("Bad\n  Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(""), "(empty body)");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_an_empty_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        assert_eq!(read_secret(&token).unwrap(), "s3cret");
        std::fs::write(&token, " \n").unwrap();
        let err = read_secret(&token).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = read_secret(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
