//! What a person is told when an HTTP request (to Prometheus, Slack, Alertmanager or the
//! daemon itself) fails before an answer: the cause, not reqwest's "error sending request".
//!
//! reqwest keeps the cause at the end of its `source()` chain: an `io::Error` with a kind
//! (refused, reset, unreachable), hyper-util's connect error (`"dns error"` for a name that
//! does not resolve), or a `rustls::Error` (certificate, protocol) wrapped in `io::Error`s,
//! whose own `source()` skips the wrapped error, so [`io::Error::get_ref`] is followed too.

use std::error::Error as StdError;
use std::io;

/// The cause of a failed request in a few words, e.g. `connection refused`, `timed out …`,
/// `DNS failure: name not resolved (…)`, `TLS error: …`. Never contains the URL (callers name
/// it when it is not a secret).
pub fn describe(err: &reqwest::Error) -> String {
    let chain = chain(err);
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return tls_error(tls);
    }
    if err.is_timeout() || io_kind(&chain) == Some(io::ErrorKind::TimedOut) {
        return if err.is_connect() {
            "timed out connecting".to_string()
        } else {
            "timed out waiting for the answer".to_string()
        };
    }
    // hyper-util names the resolver's failure "dns error"; the cause under it is the
    // resolver's own message (e.g. "failed to lookup address information: Name or service
    // not known").
    if let Some(pos) = chain.iter().position(|e| e.to_string() == "dns error") {
        return match chain.get(pos + 1) {
            Some(cause) => format!("DNS failure: name not resolved ({cause})"),
            None => "DNS failure: name not resolved".to_string(),
        };
    }
    let closed = "connection closed by the server before a complete answer";
    if chain
        .iter()
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(hyper::Error::is_incomplete_message)
    {
        return closed.to_string();
    }
    if let Some(kind) = io_kind(&chain) {
        let words = match kind {
            io::ErrorKind::ConnectionRefused => Some("connection refused"),
            io::ErrorKind::ConnectionReset => Some("connection reset by the server"),
            io::ErrorKind::ConnectionAborted => Some("connection aborted"),
            io::ErrorKind::NotConnected | io::ErrorKind::BrokenPipe => Some("connection closed"),
            io::ErrorKind::UnexpectedEof => Some(closed),
            io::ErrorKind::HostUnreachable => Some("host unreachable"),
            io::ErrorKind::NetworkUnreachable => Some("network unreachable"),
            io::ErrorKind::AddrNotAvailable => Some("address not available"),
            _ => None,
        };
        if let Some(words) = words {
            return words.to_string();
        }
    }
    // Anything else: the innermost message, which is the most specific one, after what
    // reqwest was doing (its own message without the URL).
    let what = message_without_url(err);
    match chain.last() {
        Some(cause) if chain.len() > 1 => format!("{what}: {cause}"),
        _ => what,
    }
}

/// `err` and its causes, outermost first, looking inside `io::Error`s that wrap another error.
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// The kind of the innermost `io::Error` that has a telling one.
fn io_kind(chain: &[&(dyn StdError + 'static)]) -> Option<io::ErrorKind> {
    chain
        .iter()
        .rev()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .map(io::Error::kind)
        .find(|k| !matches!(k, io::ErrorKind::Other | io::ErrorKind::InvalidData))
}

fn tls_error(err: &rustls::Error) -> String {
    match err {
        // What a plain-HTTP server's answer looks like to a TLS client.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => format!(
            "TLS error: {err} (the server does not speak TLS: an https:// URL for a plain \
             http:// server?)"
        ),
        _ => format!("TLS error: {err}"),
    }
}

/// reqwest's own message without the URL (it can hold credentials, e.g. a Slack webhook).
fn message_without_url(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>"),
        None => text,
    }
}

/// An error and its causes, `: `-separated (for errors whose `Display` shows only the first,
/// such as rust-postgres'), without repeating a cause the text already ends with.
pub fn with_causes(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn failure(url: &str, timeout: Duration) -> String {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let err = client.get(url).send().await.unwrap_err();
        describe(&err)
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused() {
        let text = failure("http://127.0.0.1:1/", Duration::from_secs(5)).await;
        assert_eq!(text, "connection refused");
    }

    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let text = failure(&format!("http://{addr}/"), Duration::from_millis(300)).await;
        assert_eq!(text, "timed out waiting for the answer");
        held.abort();
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_dns_failure() {
        let text = failure("http://no-such-host.invalid/", Duration::from_secs(10)).await;
        assert!(text.starts_with("DNS failure: name not resolved"), "{text}");
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let text = failure(&format!("https://{addr}/"), Duration::from_secs(5)).await;
        assert!(text.starts_with("TLS error: "), "{text}");
        assert!(text.contains("does not speak TLS"), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_without_answering_closed_the_connection() {
        // A server that closes the connection as soon as it has read the request.
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
            }
        });
        let text = failure(&format!("http://{addr}/"), Duration::from_secs(5)).await;
        assert_eq!(
            text,
            "connection closed by the server before a complete answer"
        );
        server.abort();
    }
}
