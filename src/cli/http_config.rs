//! `--http.config.file`: how the client commands connect to a daemon behind
//! `--web.config.file` (TLS, basic auth), in the format `amtool` and `promtool` take (the
//! client half of Prometheus's `http_config`), so one file serves all three:
//!
//! ```yaml
//! basic_auth:              # or authorization (not both)
//!   username: alice
//!   password_file: alice.pw  # or password:
//! # authorization:
//! #   type: Bearer         # the default
//! #   credentials_file: api-token   # or credentials:
//! tls_config:
//!   ca_file: ca.crt        # trust this CA (PEM, one or more certificates)
//!   cert_file: client.crt  # a client certificate, for client_auth_type on the daemon
//!   key_file: client.key
//!   insecure_skip_verify: false
//! ```
//!
//! Relative paths are relative to the file, as Prometheus reads them. Unknown keys are errors
//! that name the key (including `http_config` keys incidentd does not implement, such as
//! `oauth2`, `proxy_url` or `tls_config.server_name`), never silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CliError;

/// How to connect: the credentials every request carries and the TLS settings. The default
/// is plain: no credentials, the system's trust roots.
#[derive(Clone, Default)]
pub struct HttpConfig {
    auth: Option<Credentials>,
    tls: Tls,
}

#[derive(Clone)]
enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// `Authorization: <scheme> <credentials>`.
    Authorization {
        scheme: String,
        credentials: String,
    },
}

#[derive(Clone, Default)]
struct Tls {
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    basic_auth: Option<RawBasic>,
    authorization: Option<RawAuthorization>,
    tls_config: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(rename = "type")]
    scheme: Option<String>,
    credentials: Option<String>,
    credentials_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

impl HttpConfig {
    /// Reads and checks `path`; every error names the file and the key.
    pub fn load(path: &Path) -> Result<HttpConfig, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |key: &str, message: String| {
            CliError::InvalidArguments(format!("http config {}: {key}: {message}", path.display()))
        };
        let raw: Raw = if text.trim().is_empty() {
            Raw {
                basic_auth: None,
                authorization: None,
                tls_config: None,
            }
        } else {
            let de = serde_norway::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                bad(&key, e.into_inner().to_string())
            })?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let read = |key: &str, file: &Path| {
            std::fs::read(dir.join(file)).map_err(|e| bad(key, format!("{}: {e}", file.display())))
        };
        let secret = |key: &str, inline: Option<String>, file: Option<PathBuf>| match (inline, file)
        {
            (Some(_), Some(_)) => Err(bad(key, "give the secret or its file, not both".into())),
            (Some(s), None) => Ok(s),
            (None, Some(f)) => {
                let bytes = read(&format!("{key}_file"), &f)?;
                let s = String::from_utf8_lossy(&bytes).trim().to_string();
                if s.is_empty() {
                    return Err(bad(
                        &format!("{key}_file"),
                        format!("{} is empty", f.display()),
                    ));
                }
                Ok(s)
            }
            (None, None) => Err(bad(key, "missing".into())),
        };
        let auth = match (raw.basic_auth, raw.authorization) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "basic_auth",
                    "at most one of basic_auth and authorization may be configured".into(),
                ))
            }
            (Some(b), None) => Some(Credentials::Basic {
                password: secret("basic_auth.password", b.password, b.password_file)?,
                username: b.username,
            }),
            (None, Some(a)) => {
                let scheme = a.scheme.unwrap_or_else(|| "Bearer".into());
                if scheme.eq_ignore_ascii_case("basic") {
                    return Err(bad(
                        "authorization.type",
                        "cannot be Basic: use basic_auth instead".into(),
                    ));
                }
                Some(Credentials::Authorization {
                    credentials: secret(
                        "authorization.credentials",
                        a.credentials,
                        a.credentials_file,
                    )?,
                    scheme,
                })
            }
            (None, None) => None,
        };
        let mut tls = Tls::default();
        if let Some(t) = raw.tls_config {
            if let Some(ca) = &t.ca_file {
                let pem = read("tls_config.ca_file", ca)?;
                match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => {}
                    Ok(_) => {
                        return Err(bad(
                            "tls_config.ca_file",
                            "not PEM certificates: none found".into(),
                        ))
                    }
                    Err(e) => {
                        return Err(bad(
                            "tls_config.ca_file",
                            format!("not PEM certificates: {e}"),
                        ))
                    }
                }
                tls.ca_pem = Some(pem);
            }
            match (&t.cert_file, &t.key_file) {
                (Some(cert), Some(key)) => {
                    let mut pem = read("tls_config.cert_file", cert)?;
                    pem.push(b'\n');
                    pem.extend(read("tls_config.key_file", key)?);
                    reqwest::Identity::from_pem(&pem).map_err(|e| {
                        bad(
                            "tls_config.cert_file",
                            format!("not a certificate and key: {e}"),
                        )
                    })?;
                    tls.identity_pem = Some(pem);
                }
                (None, None) => {}
                _ => {
                    return Err(bad(
                        "tls_config",
                        "cert_file and key_file go together".into(),
                    ))
                }
            }
            tls.insecure_skip_verify = t.insecure_skip_verify;
        }
        Ok(HttpConfig { auth, tls })
    }

    /// The HTTP client every command uses, with these TLS settings.
    pub(crate) fn client(&self) -> Result<reqwest::Client, CliError> {
        let failed = |e: reqwest::Error| {
            CliError::InvalidArguments(format!("cannot build HTTP client: {e}"))
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("incidentd-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(super::REQUEST_TIMEOUT)
            .connect_timeout(super::CONNECT_TIMEOUT);
        if let Some(pem) = &self.tls.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(failed)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &self.tls.identity_pem {
            builder = builder.identity(reqwest::Identity::from_pem(pem).map_err(failed)?);
        }
        if self.tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder.build().map_err(failed)
    }

    /// `request` with the configured credentials, if any.
    pub(crate) fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            None => request,
            Some(Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            Some(Credentials::Authorization {
                scheme,
                credentials,
            }) => request.header(
                reqwest::header::AUTHORIZATION,
                format!("{scheme} {credentials}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, files: &[(&str, &str)]) -> Result<HttpConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let path = dir.path().join("http.yml");
        std::fs::write(&path, yaml).unwrap();
        HttpConfig::load(&path).map_err(|e| e.to_string())
    }

    fn header(config: &HttpConfig) -> Option<String> {
        let request = config
            .authorize(reqwest::Client::new().get("http://127.0.0.1:1/"))
            .build()
            .unwrap();
        request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn credentials_come_from_the_file_or_files_next_to_it() {
        let c = load(
            "basic_auth:\n  username: alice\n  password_file: pw\n",
            &[("pw", "s3cret\n")],
        )
        .unwrap();
        // base64("alice:s3cret")
        assert_eq!(header(&c).as_deref(), Some("Basic YWxpY2U6czNjcmV0"));
        let c = load(
            "authorization:\n  credentials_file: token\n",
            &[("token", "tok-1\n")],
        )
        .unwrap();
        assert_eq!(header(&c).as_deref(), Some("Bearer tok-1"));
        let c = load("authorization:\n  type: Token\n  credentials: x\n", &[]).unwrap();
        assert_eq!(header(&c).as_deref(), Some("Token x"));
        assert_eq!(header(&load("", &[]).unwrap()), None);
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("oauth2:\n  client_id: x\n", "oauth2"),
            ("tls_config:\n  server_name: x\n", "tls_config"),
            (
                "basic_auth:\n  username: a\n  password: b\nauthorization:\n  credentials: c\n",
                "at most one of basic_auth and authorization",
            ),
            (
                "authorization:\n  type: Basic\n  credentials: c\n",
                "authorization.type: cannot be Basic",
            ),
            (
                "basic_auth:\n  username: a\n",
                "basic_auth.password: missing",
            ),
            (
                "basic_auth:\n  username: a\n  password_file: nope\n",
                "basic_auth.password_file: nope",
            ),
            (
                "tls_config:\n  cert_file: c\n",
                "cert_file and key_file go together",
            ),
            (
                "tls_config:\n  ca_file: ca\n",
                "tls_config.ca_file: not PEM certificates",
            ),
        ];
        for (yaml, want) in cases {
            let err = load(yaml, &[("ca", "not a certificate")])
                .err()
                .unwrap_or_else(|| panic!("{yaml:?} was accepted"));
            assert!(err.contains(want), "{yaml:?}: {err}");
            assert!(err.contains("http.yml"), "{err}");
        }
    }
}
