//! The connection string: parsed once (at configuration time, so `check-config` reports a bad
//! one), kept secret, and shown only redacted (`user@host:port/db`).
//!
//! Both libpq forms are accepted: a URI (`postgres://user:pw@host:5432/db?sslmode=require`) and
//! a `key=value` string (`host=db user=incidentd password='…' dbname=incidentd`). rust-postgres
//! knows only `sslmode` disable, prefer and require; libpq users also write verify-ca and
//! verify-full and name a CA file with `sslrootcert`, so those two parameters are taken out here
//! and implemented with rustls (`tls.rs`) before the rest goes to rust-postgres.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::Secret;
use rustls_pki_types::pem::PemObject;

/// libpq's `sslmode`, all five of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked
    /// (libpq's default).
    #[default]
    Prefer,
    /// TLS or fail. The certificate is not checked unless `sslrootcert` is given, in which case
    /// it must chain to it (as libpq does: require with a root certificate is verify-ca).
    Require,
    /// TLS, and the certificate must chain to `sslrootcert` (or the Mozilla roots).
    VerifyCa,
    /// As verify-ca, and the certificate must also name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Every mode, as written in a connection string.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "invalid sslmode {s:?}: expected one of disable, prefer, require, verify-ca, \
                     verify-full"
                )
            })
    }
}

/// A parsed connection string. `Debug` and `Display` show `user@host:port/db`, never the
/// password; equality compares the whole string (in constant time, like [`Secret`]).
#[derive(Clone)]
pub struct Dsn {
    raw: Secret,
    config: postgres::Config,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
}

impl PartialEq for Dsn {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({})", self.redacted())
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Dsn {
    /// Parses a URI or `key=value` connection string. The error never contains the string
    /// (it may hold a password), only what is wrong with it.
    pub fn parse(s: &str) -> Result<Dsn, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the connection string is empty".into());
        }
        let (rest, sslmode, sslrootcert) =
            if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                split_uri(s)?
            } else {
                split_key_values(s)?
            };
        let sslmode = sslmode.map(|m| m.parse::<SslMode>()).transpose()?;
        let config = postgres::Config::from_str(&rest).map_err(|e| {
            // rust-postgres names the option, never its value.
            crate::net_error::with_causes(&e)
        })?;
        if config.get_hosts().is_empty() {
            return Err("no host: set one, e.g. postgres://incidentd@db:5432/incidentd".into());
        }
        Ok(Dsn {
            raw: Secret::new(s),
            config,
            sslmode,
            sslrootcert: sslrootcert.map(PathBuf::from),
        })
    }

    /// Whether the string carries a password (then it is a secret and cannot be inline).
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// The `sslmode` the string sets, if any.
    pub fn sslmode(&self) -> Option<SslMode> {
        self.sslmode
    }

    /// The `sslrootcert` the string sets, if any (relative to the working directory, as in
    /// libpq).
    pub fn sslrootcert(&self) -> Option<&Path> {
        self.sslrootcert.as_deref()
    }

    /// The connect timeout the string sets, if any.
    pub fn connect_timeout(&self) -> Option<std::time::Duration> {
        self.config.get_connect_timeout().copied()
    }

    /// `user@host:port/db`, for logs and messages.
    pub fn redacted(&self) -> String {
        use postgres::config::Host;
        let c = &self.config;
        let ports = c.get_ports();
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                    Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string(),
                };
                // One port for all hosts, or one each; 5432 when none is given.
                let port = ports
                    .get(i)
                    .or_else(|| (ports.len() == 1).then(|| &ports[0]))
                    .copied()
                    .unwrap_or(5432);
                format!("{name}:{port}")
            })
            .collect();
        let mut out = String::new();
        if let Some(user) = c.get_user() {
            out.push_str(user);
            out.push('@');
        }
        out.push_str(&hosts.join(","));
        if let Some(db) = c.get_dbname() {
            out.push('/');
            out.push_str(db);
        }
        out
    }

    /// The rust-postgres settings (without sslmode and sslrootcert, which `connect` applies).
    pub(crate) fn client_config(&self) -> postgres::Config {
        self.config.clone()
    }
}

type Split = (String, Option<String>, Option<String>);

/// Takes `sslmode` and `sslrootcert` out of a URI's query string.
fn split_uri(s: &str) -> Result<Split, String> {
    let Some((base, query)) = s.split_once('?') else {
        return Ok((s.to_owned(), None, None));
    };
    let (mut sslmode, mut sslrootcert) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key)?.as_str() {
            "sslmode" => sslmode = Some(percent_decode(value)?),
            "sslrootcert" => sslrootcert = Some(percent_decode(value)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, sslmode, sslrootcert))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid percent-encoding in a query parameter")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a query parameter is not UTF-8".to_owned())
}

/// Takes `sslmode` and `sslrootcert` out of a `key=value` string and writes the rest back with
/// every value quoted.
fn split_key_values(s: &str) -> Result<Split, String> {
    let (mut sslmode, mut sslrootcert) = (None, None);
    let mut kept = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "expected key=value pairs or a postgres:// URI; `{key}` has no `=`"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("unterminated quoted value of `{key}`")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quoted value of `{key}`")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(c) = chars.next() {
                        value.push(c);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        match key.as_str() {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            _ => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok((kept.join(" "), sslmode, sslrootcert))
}

/// The trust anchors: the certificates of `path` (PEM), or the Mozilla roots. The error says
/// what is wrong with the file and names it.
pub fn roots(path: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    match path {
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(p) if p == Path::new("system") => {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
        }
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("no PEM certificate in {}", path.display()));
            }
        }
    }
    Ok(store)
}

/// Reads the CA certificates of an `sslrootcert` file (`system`: the Mozilla roots) and says
/// how many there are; for `check-config`. The error names the file.
pub fn read_root_certificates(path: &Path) -> Result<usize, String> {
    Ok(roots(Some(path))?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_is_shown_without_its_password_and_loses_its_ssl_parameters() {
        let dsn = Dsn::parse(
            "postgres://incidentd:s3cr%20et@db.example.com:6432/incidents?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(dsn.redacted(), "incidentd@db.example.com:6432/incidents");
        assert_eq!(
            format!("{dsn:?}"),
            "Dsn(incidentd@db.example.com:6432/incidents)"
        );
        assert_eq!(dsn.sslmode(), Some(SslMode::VerifyFull));
        assert_eq!(dsn.sslrootcert(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            dsn.connect_timeout(),
            Some(std::time::Duration::from_secs(3))
        );
        assert!(dsn.has_password());
        assert_eq!(dsn.client_config().get_password(), Some(&b"s3cr et"[..]));
    }

    #[test]
    fn a_key_value_string_is_parsed_with_quotes_and_escapes() {
        let dsn = Dsn::parse(
            r"host=db port = 5433 user=incidentd password='it\'s a secret' dbname=inc sslmode=verify-ca",
        )
        .unwrap();
        assert_eq!(dsn.redacted(), "incidentd@db:5433/inc");
        assert_eq!(dsn.sslmode(), Some(SslMode::VerifyCa));
        assert_eq!(
            dsn.client_config().get_password(),
            Some(&b"it's a secret"[..])
        );
    }

    #[test]
    fn an_invalid_sslmode_is_named_and_the_password_is_not() {
        let err = Dsn::parse("postgres://u:hunter2@db/x?sslmode=verify").unwrap_err();
        assert_eq!(
            err,
            "invalid sslmode \"verify\": expected one of disable, prefer, require, verify-ca, \
             verify-full"
        );
        let err = Dsn::parse("host=db password=hunter2 bogus=1").unwrap_err();
        assert!(err.contains("bogus") && !err.contains("hunter2"), "{err}");
        let err = Dsn::parse("postgres://u:hunter2@db:notaport/x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_string_without_a_host_is_refused() {
        assert!(Dsn::parse("user=incidentd dbname=x")
            .unwrap_err()
            .contains("no host"));
        assert!(Dsn::parse("").unwrap_err().contains("empty"));
    }

    #[test]
    fn several_hosts_and_sockets_are_all_shown() {
        let dsn = Dsn::parse("host=a,b port=1,2 user=u").unwrap();
        assert_eq!(dsn.redacted(), "u@a:1,b:2");
        let dsn = Dsn::parse("host=/run/postgresql dbname=x").unwrap();
        assert_eq!(dsn.redacted(), "/run/postgresql:5432/x");
    }
}
