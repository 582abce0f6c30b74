//! `--web.config.file`: TLS and basic authentication in the format of
//! prometheus/exporter-toolkit, so one file secures incidentd the way it secures Prometheus
//! and Alertmanager.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # or cert: <PEM>
//!   key_file: server.key           # or key: <PEM>
//!   client_auth_type: RequireAndVerifyClientCert   # NoClientCert (default),
//!                                                  # VerifyClientCertIfGiven too
//!   client_ca_file: ca.crt         # or client_ca: <PEM>
//!   min_version: TLS12             # TLS12 (default) or TLS13; max_version likewise
//! http_server_config:
//!   headers:                       # the toolkit's five, with its allowed values
//!     X-Frame-Options: deny
//! basic_auth_users:
//!   alice: $2y$10$...              # bcrypt (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! As in the toolkit, the file is read again for every request and every TLS handshake, so a
//! new password or certificate applies at once; when it has become invalid the request is
//! answered 500 (the handshake fails) and the error is logged. A file that is invalid at
//! start-up stops incidentd with an error naming the key. Whether TLS is served is decided at
//! start-up (as in the toolkit). Keys the toolkit has and incidentd does not implement
//! (`cipher_suites`, `curve_preferences`, `client_allowed_sans`, `rate_limit`, the client
//! certificate types rustls cannot express) are refused by name rather than ignored.
//!
//! Basic auth guards every route, as in Prometheus, except `/slack/*`: Slack cannot send a
//! password, and those requests are verified by Slack's signature. A user name not in the
//! file is checked against a fixed hash, so the time taken does not tell which names exist;
//! bcrypt compares in constant time; results are cached per (user, hash, password) as the
//! toolkit does, so only the first request with a password pays bcrypt's cost.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::Secret;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::Digest;

/// Why a web configuration file is unusable. The message names the file and the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("web config {}: {key}: {message}", file.display())]
pub struct WebConfigError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

/// The user a request was authenticated as (a request extension), for who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthUser(pub String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; incidentd serves HTTP/1.1 only.
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// Where PEM comes from: a file (relative to the web config file's directory) or inline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Pem::File(p) => std::fs::read(p),
            Pem::Inline(s) => Ok(s.as_bytes().to_vec()),
        }
    }
}

/// Client certificates: the toolkit's `client_auth_type` values that rustls can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Tls {
    cert: Pem,
    key: Pem,
    client_auth: ClientAuth,
    client_ca: Option<Pem>,
    tls13_only: bool,
    tls12_only: bool,
}

/// A web configuration, checked.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    tls: Option<Tls>,
    /// User name → bcrypt hash.
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// Whether it asks for TLS.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests need a user and password.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }
}

/// The headers the toolkit lets a file set, with the values it allows (`None`: any).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// A bcrypt hash of a password nobody has: checked for unknown user names so they take as
/// long as known ones.
const DECOY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

fn parse(file: &Path, text: &[u8]) -> Result<WebConfig, WebConfigError> {
    let err = |key: &str, message: String| WebConfigError {
        file: file.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let deserializer = serde_norway::Deserializer::from_slice(text);
    let raw: RawFile = match serde_path_to_error::deserialize::<_, Option<RawFile>>(deserializer) {
        Ok(raw) => raw.unwrap_or_default(),
        Err(e) => {
            let key = e
                .path()
                .iter()
                .map(|s| s.to_string())
                .filter(|s| s != "?")
                .collect::<Vec<_>>()
                .join(".");
            let message = e.into_inner().to_string();
            // serde_norway starts its message with the path of the enclosing map.
            let parent = key.rsplit_once('.').map_or("", |(p, _)| p);
            let message = [key.as_str(), parent]
                .iter()
                .filter(|p| !p.is_empty())
                .find_map(|p| message.strip_prefix(&format!("{p}: ")))
                .map_or(message.clone(), str::to_string);
            return Err(err(if key.is_empty() { "(file)" } else { &key }, message));
        }
    };
    if raw.rate_limit.is_some() {
        return Err(err(
            "rate_limit",
            "not supported by incidentd; limit requests in a reverse proxy".into(),
        ));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut config = WebConfig::default();
    if let Some(t) = raw.tls_server_config {
        config.tls = parse_tls(t, dir, &err)?;
    }
    if let Some(h) = raw.http_server_config {
        let _ = h.http2;
        for (name, value) in h.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) = HEADERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(&name))
            else {
                return Err(err(
                    &key,
                    format!(
                        "this header can not be configured (only {})",
                        HEADERS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            if value.is_empty() {
                continue;
            }
            if let Some(allowed) = allowed {
                if !allowed.contains(&value.as_str()) {
                    return Err(err(
                        &key,
                        format!("{value:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| err(&key, "not a valid header value".into()))?;
            config
                .headers
                .push((HeaderName::from_static(lower(canonical)), value));
        }
    }
    for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(err(
                &format!("basic_auth_users.{user}"),
                "not a bcrypt hash (make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')".into(),
            ));
        }
        config.users.insert(user, hash);
    }
    Ok(config)
}

/// The lower-case form `HeaderName::from_static` wants, for the five known names.
fn lower(name: &'static str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn parse_tls(
    t: RawTls,
    dir: &Path,
    err: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Option<Tls>, WebConfigError> {
    let k = |name: &str| format!("tls_server_config.{name}");
    for (name, given) in [
        ("cipher_suites", t.cipher_suites.is_some()),
        ("curve_preferences", t.curve_preferences.is_some()),
        ("client_allowed_sans", t.client_allowed_sans.is_some()),
    ] {
        if given {
            return Err(err(
                &k(name),
                "not supported by incidentd (rustls chooses safe defaults)".into(),
            ));
        }
    }
    let _ = t.prefer_server_cipher_suites;
    let pem = |file: Option<PathBuf>,
               inline: Option<String>,
               file_key: &str,
               inline_key: &str|
     -> Result<Option<Pem>, WebConfigError> {
        match (file, inline) {
            (Some(_), Some(_)) => Err(err(
                &k(inline_key),
                format!("give {file_key} or {inline_key}, not both"),
            )),
            (Some(f), None) if f.as_os_str().is_empty() => Ok(None),
            (Some(f), None) => Ok(Some(Pem::File(dir.join(f)))),
            (None, Some(s)) if s.is_empty() => Ok(None),
            (None, Some(s)) => Ok(Some(Pem::Inline(s))),
            (None, None) => Ok(None),
        }
    };
    let cert = pem(t.cert_file, t.cert, "cert_file", "cert")?;
    let key = pem(t.key_file, t.key, "key_file", "key")?;
    let client_ca = pem(t.client_ca_file, t.client_ca, "client_ca_file", "client_ca")?;
    let (cert, key) = match (cert, key) {
        (None, None) if client_ca.is_none() && t.client_auth_type.is_none() => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (None, _) => {
            return Err(err(
                &k("cert_file"),
                "missing: TLS needs a certificate".into(),
            ))
        }
        (_, None) => {
            return Err(err(
                &k("key_file"),
                "missing: TLS needs a private key".into(),
            ))
        }
    };
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("") | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerify,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(err(
                &k("client_auth_type"),
                format!(
                    "{other} accepts unverified certificates and is not supported; use \
                     RequireAndVerifyClientCert"
                ),
            ))
        }
        Some(other) => {
            return Err(err(
                &k("client_auth_type"),
                format!(
                    "{other:?} is not one of NoClientCert, VerifyClientCertIfGiven, \
                     RequireAndVerifyClientCert"
                ),
            ))
        }
    };
    if client_auth != ClientAuth::None && client_ca.is_none() {
        return Err(err(
            &k("client_ca_file"),
            "missing: verifying client certificates needs the CA that signs them".into(),
        ));
    }
    let version = |key: &str, v: &Option<String>, default: u8| -> Result<u8, WebConfigError> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(other @ ("TLS10" | "TLS11")) => Err(err(
                &k(key),
                format!("{other} is not supported (TLS12 and TLS13 are)"),
            )),
            Some(other) => Err(err(&k(key), format!("{other:?} is not TLS12 or TLS13"))),
        }
    };
    let min = version("min_version", &t.min_version, 12)?;
    let max = version("max_version", &t.max_version, 13)?;
    if min > max {
        return Err(err(&k("min_version"), "is above max_version".to_string()));
    }
    Ok(Some(Tls {
        cert,
        key,
        client_auth,
        client_ca,
        tls13_only: min == 13,
        tls12_only: max == 12,
    }))
}

/// Build rustls's server configuration from the certificate, key and CA as they are now.
fn server_config(file: &Path, tls: &Tls) -> Result<ServerConfig, WebConfigError> {
    let err = |key: &str, message: String| WebConfigError {
        file: file.to_path_buf(),
        key: format!("tls_server_config.{key}"),
        message,
    };
    let source = |pem: &Pem, file_key: &'static str, inline_key: &'static str| match pem {
        Pem::File(p) => (file_key, format!("{}", p.display())),
        Pem::Inline(_) => (inline_key, "the inline PEM".to_string()),
    };
    let read = |pem: &Pem, file_key: &'static str, inline_key: &'static str| {
        let (key, what) = source(pem, file_key, inline_key);
        pem.read()
            .map_err(|e| err(key, format!("cannot read {what}: {e}")))
            .map(|bytes| (bytes, key, what))
    };
    let certs = |pem: &Pem, file_key: &'static str, inline_key: &'static str| {
        let (bytes, key, what) = read(pem, file_key, inline_key)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| err(key, format!("{what} is not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(err(key, format!("{what} holds no certificate")));
        }
        Ok(certs)
    };
    let chain = certs(&tls.cert, "cert_file", "cert")?;
    let (key_bytes, key_key, key_what) = read(&tls.key, "key_file", "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| err(key_key, format!("{key_what} is not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls13_only {
        &[&rustls::version::TLS13]
    } else if tls.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| err("min_version", e.to_string()))?;
    let builder = match (&tls.client_auth, &tls.client_ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca, "client_ca_file", "client_ca")? {
                roots
                    .add(c)
                    .map_err(|e| err("client_ca_file", format!("not a usable CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if *mode == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| err("client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| err(key_key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The web configuration file, read again whenever it is needed.
pub struct WebConfigFile {
    path: PathBuf,
    cache: Mutex<Cache>,
    /// Serializes bcrypt, which is CPU-heavy by design (the toolkit does the same).
    bcrypt: Mutex<()>,
}

#[derive(Default)]
struct Cache {
    /// The file's bytes and what they parsed to.
    parsed: Option<(Vec<u8>, Arc<WebConfig>)>,
    /// The TLS inputs' bytes and the server configuration built from them.
    tls: Option<(Vec<u8>, Arc<ServerConfig>)>,
    /// SHA-256 of (user, hash, password) → whether they match.
    checked: HashMap<[u8; 32], bool>,
}

/// Cached password checks kept at most; the cache starts over when full.
const MAX_CHECKED: usize = 1024;

impl WebConfigFile {
    /// Read and check the file, its certificate and key: at start-up, so that a bad file
    /// stops incidentd with an error naming the key.
    pub fn load(path: &Path) -> Result<Arc<WebConfigFile>, WebConfigError> {
        let file = Arc::new(WebConfigFile {
            path: path.to_path_buf(),
            cache: Mutex::default(),
            bcrypt: Mutex::new(()),
        });
        let config = file.current()?;
        if config.has_tls() {
            file.tls_config()?;
        }
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration as the file says now.
    pub fn current(&self) -> Result<Arc<WebConfig>, WebConfigError> {
        let bytes = std::fs::read(&self.path).map_err(|e| WebConfigError {
            file: self.path.clone(),
            key: "(file)".into(),
            message: format!("cannot read it: {e}"),
        })?;
        if let Some((seen, config)) = &self.cache().parsed {
            if *seen == bytes {
                return Ok(config.clone());
            }
        }
        let config = Arc::new(parse(&self.path, &bytes)?);
        self.cache().parsed = Some((bytes, config.clone()));
        Ok(config)
    }

    /// rustls's configuration for a handshake starting now, from the files as they are now.
    pub fn tls_config(&self) -> Result<Arc<ServerConfig>, WebConfigError> {
        let config = self.current()?;
        let Some(tls) = &config.tls else {
            return Err(WebConfigError {
                file: self.path.clone(),
                key: "tls_server_config".into(),
                message: "removed since start-up; TLS needs it (restart to serve plain HTTP)"
                    .into(),
            });
        };
        // What the server configuration is built from, byte for byte.
        let mut inputs = format!("{tls:?}").into_bytes();
        for pem in [Some(&tls.cert), Some(&tls.key), tls.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            inputs.extend(pem.read().unwrap_or_default());
            inputs.push(0);
        }
        if let Some((seen, built)) = &self.cache().tls {
            if *seen == inputs {
                return Ok(built.clone());
            }
        }
        let built = Arc::new(server_config(&self.path, tls)?);
        self.cache().tls = Some((inputs, built.clone()));
        Ok(built)
    }

    /// Whether `user` and `password` are in `config`, in about the same time for every user
    /// name; bcrypt's answer is cached.
    fn check(&self, config: &WebConfig, user: &str, password: &str) -> bool {
        let known = config.users.get(user);
        let hash = known.map_or(DECOY_HASH, String::as_str);
        let mut h = sha2::Sha256::new();
        for part in [user, hash, password] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest: [u8; 32] = h.finalize().into();
        if let Some(ok) = self.cache().checked.get(&digest) {
            return *ok;
        }
        let ok = {
            let _one = self.bcrypt.lock().unwrap_or_else(|e| e.into_inner());
            bcrypt::verify(password, hash).unwrap_or(false)
        } && known.is_some();
        let mut cache = self.cache();
        if cache.checked.len() >= MAX_CHECKED {
            cache.checked.clear();
        }
        cache.checked.insert(digest, ok);
        ok
    }
}

/// Routes basic auth never guards: Slack cannot send a password; its requests carry Slack's
/// signature, which the Slack routes verify.
pub fn unguarded(path: &str) -> bool {
    path.starts_with("/slack/")
}

/// incidentd's own bearer tokens, which pass basic auth where they guard a route: a request
/// carries one `Authorization` header, so a client holding the API token (or Alertmanager
/// holding the webhook's token) could not also send a password. The token is the stronger
/// credential: it is what the route itself demands.
#[derive(Clone, Default)]
pub struct Tokens {
    /// `web.api_token_file`: accepted on every route.
    pub api: Option<Secret>,
    /// `web.webhook_auth.bearer_token_file`: accepted on the webhook.
    pub webhook: Option<Secret>,
}

impl Tokens {
    fn pass(&self, path: &str, headers: &axum::http::HeaderMap) -> bool {
        let is = |t: &Option<Secret>| {
            t.as_ref()
                .is_some_and(|t| super::auth::bearer_is(t, headers))
        };
        is(&self.api) || (path.starts_with("/webhook/") && is(&self.webhook))
    }
}

/// The middleware: the file's headers on every answer, and basic auth on every route but
/// [`unguarded`] ones when the file lists users (or one of [`Tokens`] where it applies).
pub async fn guard(
    State((file, tokens)): State<(Arc<WebConfigFile>, Arc<Tokens>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let config = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || file.current()).await
    };
    let config = match config {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the web config file is unusable; answering 500");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut response = if !config.has_users()
        || unguarded(req.uri().path())
        || tokens.pass(req.uri().path(), req.headers())
    {
        next.run(req).await
    } else {
        let credentials = super::auth::basic(req.headers());
        let ok = match credentials.clone() {
            Some((user, password)) => {
                let (file, config) = (file.clone(), config.clone());
                tokio::task::spawn_blocking(move || file.check(&config, &user, &password))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        match (ok, credentials) {
            (true, Some((user, _))) => {
                req.extensions_mut().insert(BasicAuthUser(user));
                next.run(req).await
            }
            _ => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response(),
        }
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// `router` behind the web configuration file.
pub fn layer(router: axum::Router, file: Arc<WebConfigFile>, tokens: Tokens) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        (file, Arc::new(tokens)),
        guard,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> Result<WebConfig, WebConfigError> {
        parse(Path::new("/etc/incidentd/web.yml"), yaml.as_bytes())
    }

    #[test]
    fn an_empty_file_guards_nothing() {
        let c = parsed("").unwrap();
        assert!(!c.has_tls() && !c.has_users() && c.headers.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            ("basic_auth_users:\n  alice: plain\n", "basic_auth_users.alice"),
            ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file"),
            ("tls_server_config:\n  cert_file: c\n", "tls_server_config.key_file"),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS11\n",
                "tls_server_config.min_version",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n",
                "tls_server_config.client_ca_file",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "http_server_config.headers.X-Frame-Options",
            ),
            (
                "http_server_config:\n  headers:\n    Server: me\n",
                "http_server_config.headers.Server",
            ),
            (
                "tls_server_config:\n  cert_fille: c\n",
                "tls_server_config.cert_fille",
            ),
            ("rate_limit:\n  burst: 1\n", "rate_limit"),
        ] {
            let e = parsed(yaml).unwrap_err();
            assert_eq!(e.key, key, "{yaml}: {e}");
            assert!(e.to_string().starts_with("web config /etc/incidentd/web.yml: "), "{e}");
        }
    }

    #[test]
    fn files_are_relative_to_the_config_and_headers_are_checked() {
        let c = parsed(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, Pem::File("/etc/incidentd/tls/server.crt".into()));
        assert_eq!(tls.key, Pem::File("/abs/server.key".into()));
        assert_eq!(c.headers.len(), 2);
    }

    #[test]
    fn unknown_users_take_the_decoy_and_answers_are_cached() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let file = WebConfigFile::load(&path).unwrap();
        let c = file.current().unwrap();
        assert!(file.check(&c, "alice", "s3cret"));
        assert!(file.check(&c, "alice", "s3cret"));
        assert!(!file.check(&c, "alice", "wrong"));
        assert!(!file.check(&c, "mallory", "s3cret"));
        assert!(!file.check(&c, "mallory", "fakepassword"));
        assert_eq!(file.cache().checked.len(), 4);
    }
}
