//! `incidentd replay FILE|DIR --url URL`: posts captured Alertmanager payloads to a daemon's
//! webhook, in order, as Alertmanager would have.
//!
//! A directory is replayed in the order of its `index.json` when it has one in the capture
//! format (`[{"file": …, "received_at": …, "headers": {…}}, …]`, see
//! `tests/fixtures/scenario-single/webhooks/`), otherwise every `*.json` file by name. A file
//! holds one payload (the body Alertmanager sent) or a JSON array of payloads. Every file is
//! read and checked before the first post, so a typo never leaves a half-replayed scenario;
//! the first failed post stops the replay, because later notifications of a scenario only
//! make sense after the earlier ones.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{endpoint, one_line, parse_base_url, read_secret, send, CliError, Daemon};

/// The webhook route of DESIGN.md's HTTP interface.
const WEBHOOK_PATH: [&str; 2] = ["webhook", "alertmanager"];

/// The name of a capture's index file; never replayed itself.
const INDEX_FILE: &str = "index.json";

/// Arguments of `incidentd replay`.
pub struct ReplayArgs<'a> {
    /// A payload file, or a directory of them.
    pub path: PathBuf,
    /// The daemon: its base URL (`http://127.0.0.1:9097`) or its full webhook URL.
    pub daemon: &'a Daemon,
    /// File holding the webhook bearer token (`web.webhook_auth.bearer_token_file`).
    pub bearer_token_file: Option<PathBuf>,
    /// User name and the file holding the password, for webhook basic auth.
    pub basic_auth: Option<(String, PathBuf)>,
    /// Pause between two posts.
    pub delay: Option<Duration>,
    /// Where the one-line-per-post report goes.
    pub out: &'a mut (dyn Write + Send),
}

/// What a finished replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Payloads posted, all answered 2xx.
    pub sent: usize,
    /// Files they came from.
    pub files: usize,
    /// The webhook URL they were posted to.
    pub url: String,
}

/// One payload to post.
#[derive(Debug)]
struct Delivery {
    /// `file` or `file[i]`, as shown to the user.
    label: String,
    body: Vec<u8>,
}

enum Auth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

/// Posts every payload under `args.path` to the daemon; see the module docs for the order.
pub async fn run(args: ReplayArgs<'_>) -> Result<ReplaySummary, CliError> {
    let ReplayArgs {
        path,
        daemon,
        bearer_token_file,
        basic_auth,
        delay,
        out,
    } = args;
    let webhook = webhook_url(&daemon.url)?;
    let auth = match (bearer_token_file, basic_auth) {
        (Some(_), Some(_)) => {
            return Err(CliError::InvalidArguments(
                "give either a bearer token file or basic auth, not both: \
                 a request carries one Authorization header"
                    .to_string(),
            ))
        }
        (Some(file), None) => Auth::Bearer(read_secret(&file)?),
        (None, Some((user, file))) => Auth::Basic {
            user,
            password: read_secret(&file)?,
        },
        (None, None) => Auth::None,
    };

    let files = payload_files(&path, out)?;
    let mut deliveries = Vec::new();
    for file in &files {
        deliveries.extend(load_payloads(file)?);
    }
    let total = deliveries.len();

    let client = daemon.http.client()?;
    for (i, delivery) in deliveries.iter().enumerate() {
        if i > 0 {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
        }
        let mut request = client
            .post(webhook.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.body.clone());
        // The webhook's own credentials, when given, replace the file's: one Authorization.
        request = match &auth {
            Auth::None => daemon.http.authorize(request),
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
        };
        let stopped = |source: CliError| CliError::ReplayStopped {
            item: delivery.label.clone(),
            sent: i,
            total,
            source: Box::new(source),
        };
        match send("POST", &webhook, request).await {
            Ok((status, body)) => {
                writeln!(
                    out,
                    "{}: {} {}",
                    delivery.label,
                    status,
                    one_line(&body, 200)
                )?;
            }
            Err(err) => {
                if let CliError::Status {
                    status, message, ..
                } = &err
                {
                    writeln!(out, "{}: {} {}", delivery.label, status, message)?;
                }
                return Err(stopped(err));
            }
        }
    }
    writeln!(
        out,
        "sent {total} payload{} from {} file{} to {webhook}",
        if total == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
    )?;
    Ok(ReplaySummary {
        sent: total,
        files: files.len(),
        url: webhook.to_string(),
    })
}

/// The webhook URL for a `--url` that is either the daemon's base or already the webhook.
fn webhook_url(url: &str) -> Result<Url, CliError> {
    let parsed = parse_base_url(url)?;
    if parsed
        .path()
        .trim_end_matches('/')
        .ends_with("/webhook/alertmanager")
    {
        return Ok(parsed);
    }
    Ok(endpoint(&parsed, &WEBHOOK_PATH))
}

/// One entry of a capture's `index.json`; only the order and the file matter here.
#[derive(Deserialize)]
struct IndexEntry {
    file: String,
}

/// The files to replay, in order. Notes about the choice go to `out`.
fn payload_files(path: &Path, out: &mut dyn Write) -> Result<Vec<PathBuf>, CliError> {
    let meta = std::fs::metadata(path).map_err(|source| CliError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        // `replay capture/index.json` means the capture, not the index as a payload.
        if path.file_name().is_some_and(|n| n == INDEX_FILE) {
            if let Some(files) = read_index(path)? {
                return Ok(files);
            }
        }
        return Ok(vec![path.to_path_buf()]);
    }

    let read_dir_error = |source| CliError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let mut by_name = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_dir_error)? {
        let entry = entry.map_err(read_dir_error)?;
        let name = entry.file_name();
        let is_json = Path::new(&name).extension().is_some_and(|e| e == "json");
        if is_json && name != INDEX_FILE && entry.path().is_file() {
            by_name.push(entry.path());
        }
    }
    by_name.sort();

    let index_path = path.join(INDEX_FILE);
    let ordered = if index_path.is_file() {
        match read_index(&index_path)? {
            Some(files) => {
                writeln!(
                    out,
                    "order from {} ({} files)",
                    index_path.display(),
                    files.len()
                )?;
                let unlisted: Vec<String> = by_name
                    .iter()
                    .filter(|f| !files.iter().any(|listed| same_file(listed, f)))
                    .map(|f| display_name(f))
                    .collect();
                if !unlisted.is_empty() {
                    writeln!(
                        out,
                        "not listed in {INDEX_FILE}, skipped: {}",
                        unlisted.join(", ")
                    )?;
                }
                files
            }
            None => {
                writeln!(
                    out,
                    "{} is not a capture index (a list of {{\"file\": …}}); replaying by file name",
                    index_path.display()
                )?;
                by_name
            }
        }
    } else {
        by_name
    };
    if ordered.is_empty() {
        return Err(CliError::NothingToReplay {
            path: path.to_path_buf(),
        });
    }
    Ok(ordered)
}

/// The files an index lists, resolved; `None` when the file is not in the capture format.
fn read_index(index_path: &Path) -> Result<Option<Vec<PathBuf>>, CliError> {
    let text = std::fs::read_to_string(index_path).map_err(|source| CliError::ReadFile {
        path: index_path.to_path_buf(),
        source,
    })?;
    let Ok(entries) = serde_json::from_str::<Vec<IndexEntry>>(&text) else {
        return Ok(None);
    };
    let dir = index_path.parent().unwrap_or(Path::new("."));
    entries
        .into_iter()
        .map(|entry| {
            resolve_index_entry(dir, &entry.file).ok_or_else(|| CliError::IndexEntryMissing {
                index: index_path.to_path_buf(),
                file: entry.file.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Where an index entry's file is. Captures record paths relative to the scenario directory
/// (`webhooks/01-….json` in `scenario/webhooks/index.json`), so besides the index's own
/// directory its parent and the bare file name next to the index are tried.
fn resolve_index_entry(dir: &Path, file: &str) -> Option<PathBuf> {
    let listed = Path::new(file);
    let mut candidates = vec![dir.join(listed)];
    if let Some(parent) = dir.parent() {
        candidates.push(parent.join(listed));
    }
    if let Some(name) = listed.file_name() {
        candidates.push(dir.join(name));
    }
    candidates.into_iter().find(|c| c.is_file())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The payloads in one file, byte for byte as captured: one object, or each element of an
/// array of objects.
fn load_payloads(file: &Path) -> Result<Vec<Delivery>, CliError> {
    let bytes = std::fs::read(file).map_err(|source| CliError::ReadFile {
        path: file.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| CliError::InvalidPayload {
        path: file.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let name = display_name(file);
    let is_object = |raw: &RawValue| raw.get().trim_start().starts_with('{');
    match text.trim_start().chars().next() {
        Some('{') => {
            serde_json::from_str::<&RawValue>(text).map_err(|e| invalid(e.to_string()))?;
            Ok(vec![Delivery {
                label: name,
                body: bytes,
            }])
        }
        Some('[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
            if items.is_empty() {
                return Err(invalid("an empty array".to_string()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, raw)| {
                    if !is_object(raw) {
                        return Err(invalid(format!("element {i} is not a JSON object")));
                    }
                    Ok(Delivery {
                        label: format!("{name}[{i}]"),
                        body: raw.get().as_bytes().to_vec(),
                    })
                })
                .collect()
        }
        _ => Err(invalid(
            "expected a JSON object or an array of objects".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    fn scenario_webhooks() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-single/webhooks")
    }

    async fn accepting_daemon() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/webhook/alertmanager"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"status": "ok", "incidents": ["INC-2026-0001"]}),
                ),
            )
            .mount(&server)
            .await;
        server
    }

    fn alertnames(requests: &[Request]) -> Vec<(String, String)> {
        requests
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                (
                    body["status"].as_str().unwrap().to_string(),
                    body["alerts"][0]["labels"]["alertname"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_captured_scenario_is_posted_in_index_order_with_the_bearer_token() {
        let server = accepting_daemon().await;
        let dir = tempfile::tempdir().unwrap();
        // Copy the capture and reverse its index: the index, not the file names, decides.
        let webhooks = dir.path().join("webhooks");
        std::fs::create_dir(&webhooks).unwrap();
        for entry in std::fs::read_dir(scenario_webhooks()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), webhooks.join(entry.file_name())).unwrap();
        }
        let mut index: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(webhooks.join("index.json")).unwrap())
                .unwrap();
        index.reverse();
        std::fs::write(
            webhooks.join("index.json"),
            serde_json::to_string(&index).unwrap(),
        )
        .unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "replay-token\n").unwrap();

        let mut out = Vec::new();
        let summary = run(ReplayArgs {
            path: webhooks.clone(),
            daemon: &Daemon::new(server.uri()),
            bearer_token_file: Some(token),
            basic_auth: None,
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap();

        assert_eq!(summary.sent, 6);
        let requests = server.received_requests().await.unwrap();
        assert_eq!(
            alertnames(&requests),
            vec![
                ("resolved".into(), "HighRequestLatency".into()),
                ("resolved".into(), "HighErrorRate".into()),
                ("resolved".into(), "DatabaseConnectionPoolHigh".into()),
                ("firing".into(), "HighErrorRate".into()),
                ("firing".into(), "HighRequestLatency".into()),
                ("firing".into(), "DatabaseConnectionPoolHigh".into()),
            ]
        );
        for request in &requests {
            assert_eq!(request.headers["authorization"], "Bearer replay-token");
            assert_eq!(request.headers["content-type"], "application/json");
        }
        // The body is what Alertmanager sent, byte for byte.
        assert_eq!(
            requests[5].body,
            std::fs::read(webhooks.join("01-firing-DatabaseConnectionPoolHigh.json")).unwrap()
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("order from"), "{out}");
        assert!(
            out.contains(
                r#"06-resolved-HighRequestLatency.json: 200 OK {"incidents":["INC-2026-0001"],"status":"ok"}"#
            ),
            "{out}"
        );
        assert!(
            !out.contains("replay-token"),
            "the token must never be printed: {out}"
        );
        assert!(out.trim_end().ends_with(&format!(
            "sent 6 payloads from 6 files to {}/webhook/alertmanager",
            server.uri()
        )));
    }

    #[tokio::test]
    async fn the_recorded_capture_is_replayed_in_its_recorded_order() {
        let server = accepting_daemon().await;
        let mut out = Vec::new();
        run(ReplayArgs {
            path: scenario_webhooks(),
            daemon: &Daemon::new(format!("{}/webhook/alertmanager", server.uri())),
            bearer_token_file: None,
            basic_auth: None,
            delay: Some(Duration::from_millis(1)),
            out: &mut out,
        })
        .await
        .unwrap();
        let requests = server.received_requests().await.unwrap();
        let names: Vec<String> = alertnames(&requests)
            .into_iter()
            .map(|(s, a)| format!("{s} {a}"))
            .collect();
        assert_eq!(names.len(), 6);

        // Naming the index itself replays the capture it describes.
        run(ReplayArgs {
            path: scenario_webhooks().join("index.json"),
            daemon: &Daemon::new(server.uri()),
            bearer_token_file: None,
            basic_auth: None,
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap();
        let again: Vec<(String, String)> =
            alertnames(&server.received_requests().await.unwrap()[6..]);
        assert_eq!(again, alertnames(&requests));
        assert_eq!(
            names,
            [
                "firing DatabaseConnectionPoolHigh",
                "firing HighRequestLatency",
                "firing HighErrorRate",
                "resolved DatabaseConnectionPoolHigh",
                "resolved HighErrorRate",
                "resolved HighRequestLatency",
            ]
        );
        assert!(requests
            .iter()
            .all(|r| !r.headers.contains_key("authorization")));
    }

    #[tokio::test]
    async fn a_directory_without_index_goes_by_file_name_and_arrays_are_split() {
        let server = accepting_daemon().await;
        let dir = tempfile::tempdir().unwrap();
        let first = r#"{"version":"4","status":"firing","alerts":[{"labels":{"alertname":"B"}}]}"#;
        let second =
            r#"{"version":"4","status":"resolved","alerts":[{"labels":{"alertname":"C"}}]}"#;
        std::fs::write(dir.path().join("b.json"), format!("[{first}, {second}]")).unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"version":"4","status":"firing","alerts":[{"labels":{"alertname":"A"}}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a payload").unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "hunter2").unwrap();

        let mut out = Vec::new();
        run(ReplayArgs {
            path: dir.path().to_path_buf(),
            daemon: &Daemon::new(format!("{}/", server.uri())),
            bearer_token_file: None,
            basic_auth: Some(("alertmanager".into(), password)),
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap();

        let requests = server.received_requests().await.unwrap();
        let names: Vec<String> = alertnames(&requests).into_iter().map(|(_, a)| a).collect();
        assert_eq!(names, ["A", "B", "C"]);
        // Array elements are sent exactly as they appear in the file.
        assert_eq!(requests[1].body, first.as_bytes());
        // base64("alertmanager:hunter2")
        assert_eq!(
            requests[0].headers["authorization"],
            "Basic YWxlcnRtYW5hZ2VyOmh1bnRlcjI="
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("b.json[1]: 200 OK"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
    }

    #[tokio::test]
    async fn a_rejected_post_stops_the_replay_and_says_what_was_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(
                serde_json::json!({"error": "alerts[0].startsAt: invalid timestamp"}),
            ))
            .mount(&server)
            .await;

        let mut out = Vec::new();
        let err = run(ReplayArgs {
            path: scenario_webhooks(),
            daemon: &Daemon::new(server.uri()),
            bearer_token_file: None,
            basic_auth: None,
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap_err();

        let message = err.to_string();
        assert!(
            message.starts_with("replay stopped at 03-firing-HighErrorRate.json:"),
            "{message}"
        );
        assert!(message.contains("400 Bad Request"), "{message}");
        assert!(
            message.contains("alerts[0].startsAt: invalid timestamp"),
            "{message}"
        );
        assert!(
            message.contains("(2 of 6 payloads were sent before it)"),
            "{message}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("03-firing-HighErrorRate.json: 400 Bad Request alerts[0].startsAt"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_payload_is_named_and_nothing_is_sent() {
        let server = accepting_daemon().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("01.json"), r#"{"version":"4"}"#).unwrap();
        std::fs::write(dir.path().join("02.json"), r#"{"version":"4","#).unwrap();
        let mut out = Vec::new();
        let err = run(ReplayArgs {
            path: dir.path().to_path_buf(),
            daemon: &Daemon::new(server.uri()),
            bearer_token_file: None,
            basic_auth: None,
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("02.json is not a webhook payload"), "{err}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_index_naming_a_missing_file_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("01.json"), "{}").unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            r#"[{"file": "01.json"}, {"file": "webhooks/02-gone.json"}]"#,
        )
        .unwrap();
        let mut out = Vec::new();
        let err = run(ReplayArgs {
            path: dir.path().to_path_buf(),
            daemon: &Daemon::new("http://127.0.0.1:9"),
            bearer_token_file: None,
            basic_auth: None,
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("index.json lists \"webhooks/02-gone.json\""),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_daemon_stops_the_replay_at_the_first_payload() {
        // A port that was just free: nothing listens there, so the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let mut out = Vec::new();
        let err = run(ReplayArgs {
            path: scenario_webhooks().join("01-firing-DatabaseConnectionPoolHigh.json"),
            daemon: &Daemon::new(url.clone()),
            bearer_token_file: None,
            basic_auth: None,
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!(
                "replay stopped at 01-firing-DatabaseConnectionPoolHigh.json: POST {url}/webhook/alertmanager"
            )),
            "{err}"
        );
        assert!(
            err.contains("(0 of 1 payloads were sent before it)"),
            "{err}"
        );
    }

    #[test]
    fn the_webhook_path_is_added_to_a_base_url_only_once() {
        assert_eq!(
            webhook_url("http://127.0.0.1:9097").unwrap().as_str(),
            "http://127.0.0.1:9097/webhook/alertmanager"
        );
        assert_eq!(
            webhook_url("http://127.0.0.1:9097/webhook/alertmanager")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9097/webhook/alertmanager"
        );
        assert_eq!(
            webhook_url("https://ops.example.com/incidentd/")
                .unwrap()
                .as_str(),
            "https://ops.example.com/incidentd/webhook/alertmanager"
        );
    }

    #[tokio::test]
    async fn bearer_and_basic_auth_together_are_refused() {
        let mut out = Vec::new();
        let err = run(ReplayArgs {
            path: scenario_webhooks(),
            daemon: &Daemon::new("http://127.0.0.1:9"),
            bearer_token_file: Some("t".into()),
            basic_auth: Some(("u".into(), "p".into())),
            delay: None,
            out: &mut out,
        })
        .await
        .unwrap_err();
        assert!(matches!(err, CliError::InvalidArguments(_)), "{err}");
    }
}
