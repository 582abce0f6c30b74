//! What can go wrong talking to PostgreSQL, and which of it is worth retrying.

use std::time::Duration;

use postgres::error::SqlState;

use crate::store::StoreError;

/// Why a PostgreSQL call failed. No variant ever holds the password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// Connecting (TCP, TLS, authentication) or setting up the session failed. `target` is the
    /// redacted connection string (`user@host:port/db`).
    #[error("cannot connect to PostgreSQL {target} (sslmode={sslmode}): {message}")]
    Connect {
        target: String,
        sslmode: super::SslMode,
        message: String,
        transient: bool,
    },
    /// A statement failed. `code` is the SQLSTATE when the server sent one.
    #[error("database error: {message}")]
    Query {
        message: String,
        code: Option<String>,
        transient: bool,
    },
    /// The TLS settings cannot be used (an unreadable or empty `sslrootcert`).
    #[error("PostgreSQL TLS settings: {0}")]
    Tls(String),
    /// Every connection of the pool stayed in use for this long.
    #[error("all {size} PostgreSQL connections stayed busy for {waited:?}")]
    PoolTimeout { size: usize, waited: Duration },
    /// The database was migrated by a newer incidentd.
    #[error(
        "database schema version {found} is newer than this incidentd knows ({known}); \
         upgrade incidentd"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

impl PgError {
    /// Whether the caller should answer "try again later" (503) rather than "this is wrong":
    /// the server is unreachable, restarting, overloaded, or the transaction lost a race.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Connect { transient, .. } | PgError::Query { transient, .. } => *transient,
            PgError::PoolTimeout { .. } => true,
            PgError::Tls(_) | PgError::SchemaTooNew { .. } => false,
        }
    }

    /// The SQLSTATE of a failed statement, e.g. `23505` for a unique violation.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A connection failure, classified.
    pub(crate) fn connect(target: String, sslmode: super::SslMode, e: &postgres::Error) -> Self {
        PgError::Connect {
            target,
            sslmode,
            message: crate::net_error::with_causes(e),
            transient: is_transient(e),
        }
    }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Query {
            message: crate::net_error::with_causes(&e),
            code: e.code().map(|c| c.code().to_owned()),
            transient: is_transient(&e),
        }
    }
}

/// The store's error for a PostgreSQL failure, transient or not as [`PgError::is_transient`] says.
impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        StoreError::Database {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        PgError::from(e).into()
    }
}

/// SQLSTATEs worth retrying: the server going away or coming back, resources running out for a
/// while, and transactions that lost a race.
fn transient_code(code: &SqlState) -> bool {
    let c = code.code();
    // Class 08: connection exception; 53: insufficient resources (disk full, out of memory,
    // too many connections); 58: system error (I/O).
    c.starts_with("08")
        || c.starts_with("53")
        || c.starts_with("58")
        || [
            SqlState::ADMIN_SHUTDOWN,            // 57P01: the server is shutting down
            SqlState::CRASH_SHUTDOWN,            // 57P02
            SqlState::CANNOT_CONNECT_NOW,        // 57P03: starting up or in recovery
            SqlState::QUERY_CANCELED,            // 57014: statement_timeout
            SqlState::T_R_SERIALIZATION_FAILURE, // 40001
            SqlState::T_R_DEADLOCK_DETECTED,     // 40P01
            SqlState::LOCK_NOT_AVAILABLE,        // 55P03
            SqlState::READ_ONLY_SQL_TRANSACTION, // 25006: a failover left us on a standby
        ]
        .contains(code)
}

/// One place decides: a SQLSTATE says so; without one, a closed connection or an I/O failure
/// is transient, and a TLS verification failure (a rustls error) is not.
pub(crate) fn is_transient(e: &postgres::Error) -> bool {
    if let Some(code) = e.code() {
        return transient_code(code);
    }
    if e.is_closed() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io = false;
    while let Some(cause) = source {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return false;
        }
        if let Some(err) = cause.downcast_ref::<std::io::Error>() {
            if err
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return false;
            }
            io = true;
        }
        source = cause.source();
    }
    // rust-postgres reports a connect timeout as its own kind, without an io::Error.
    io || e.to_string().starts_with("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for code in [
            "08006", "08001", "57P01", "57P03", "40001", "40P01", "53300", "57014",
        ] {
            assert!(transient_code(&SqlState::from_code(code)), "{code}");
        }
        for code in ["42601", "23505", "23503", "42P01", "28P01", "XX000"] {
            assert!(!transient_code(&SqlState::from_code(code)), "{code}");
        }
    }
}
