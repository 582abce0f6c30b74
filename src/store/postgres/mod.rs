//! PostgreSQL storage (`storage.backend: postgres`), so that several incidentd replicas can
//! share one database.
//!
//! The store's statements are in `tx.rs` (the same meaning as SQLite's, over the same
//! schema), its engine (group commit over a few writer threads, retries of transient failures,
//! reads in `spawn_blocking`) in `db.rs`. This module also owns connecting (TLS with libpq's
//! sslmode semantics, timeouts, the session's `statement_timeout`), a small pool of
//! connections for blocking threads and the statements prepared on each (`statements.rs`),
//! the schema (`migrations.rs`, the same tables and columns as SQLite's) and the
//! classification of errors into transient and permanent ([`PgError::is_transient`]).
//!
//! The driver is the synchronous `postgres` crate: the domain's `Repo` trait is synchronous and
//! the SQLite store already runs its SQL on dedicated threads, so the PostgreSQL store does the
//! same. Each [`postgres::Client`] drives its own connection; call these functions from blocking
//! threads (a dedicated thread or `spawn_blocking`), never directly on the async runtime.

mod db;
pub mod error;
mod keys;
pub mod migrations;
mod pending;
pub mod pool;
pub mod statements;
mod tls;
pub mod tx;

pub use crate::config::postgres::{Dsn, SslMode};
pub use db::Db;
pub use error::PgError;
pub use pool::{Pool, PooledClient};

use crate::config::PostgresConfig;

/// The `application_name` incidentd's sessions show in `pg_stat_activity`, unless the
/// connection string sets another.
pub const APPLICATION_NAME: &str = "incidentd";

/// Opens one session: TLS per `sslmode`, `connect_timeout`, `application_name`, then
/// `SET statement_timeout`. Errors name the server redacted (`user@host:port/db`) and the
/// sslmode, never the password.
pub fn connect(config: &PostgresConfig) -> Result<postgres::Client, PgError> {
    let mut pg = config.url.client_config();
    pg.connect_timeout(config.connect_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name(APPLICATION_NAME);
    }
    pg.ssl_mode(match config.sslmode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            postgres::config::SslMode::Require
        }
    });
    let tls = tls::connector(config.sslmode, config.sslrootcert.as_deref())?;
    let failed = |e: postgres::Error| PgError::connect(config.url.redacted(), config.sslmode, &e);
    let mut client = pg.connect(tls).map_err(failed)?;
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            config.statement_timeout.as_millis()
        ))
        .map_err(failed)?;
    Ok(client)
}
