//! Accepting connections: HTTP/1.1 with a deadline on the request head, and a graceful
//! shutdown that lets answers in flight finish.
//!
//! `axum::serve` sets no header read deadline, so a client that connects and trickles its
//! headers a byte at a time (or sends nothing) would hold a connection and a task forever.
//! Here hyper closes such a connection after `web.read_header_timeout`; the body and the
//! answer are bounded separately by `web.request_timeout` in the router.
//!
//! Only HTTP/1.1 is served: Alertmanager, Slack and curl all speak it to a plain-HTTP
//! endpoint, and cleartext HTTP/2 would need deadlines of its own.
//!
//! With `tls_server_config` in `--web.config.file` every connection is TLS (rustls). Each
//! handshake reads the configuration and the certificate files as they are then (as
//! exporter-toolkit does), so a renewed certificate is served without a restart; the
//! handshake shares the request head's deadline.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::web_config::WebConfigFile;

/// How long a shutdown waits for answers in flight before closing their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting, let requests
/// in flight finish (up to [`DRAIN_TIMEOUT`]) and return. With `tls`, over TLS configured by
/// that file.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    read_header_timeout: Duration,
    tls: Option<std::sync::Arc<WebConfigFile>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // back off briefly rather than spin, and keep serving the others.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let Some(tls) = tls.clone() else {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    // A header deadline passing, a malformed request head, a client hanging
                    // up: the client's problem, not ours.
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            continue;
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(read_header_timeout, handshake(stream, &tls));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake took longer than the header deadline");
                    return;
                }
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections were still busy {} after shutdown began; closing them",
            crate::time::human_duration(DRAIN_TIMEOUT.as_secs_f64())
        );
    }
}

/// A TLS handshake with the configuration the web config file gives now.
async fn handshake(
    stream: tokio::net::TcpStream,
    file: &WebConfigFile,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = acceptor.await?;
    let config = match file.tls_config() {
        Ok(config) => config,
        Err(e) => {
            // Once per handshake while the file stays broken: loud, since nobody can connect.
            tracing::error!(error = %e, "the web config file's TLS settings are unusable");
            return Err(std::io::Error::other(e));
        }
    };
    start.into_stream(config).await
}
