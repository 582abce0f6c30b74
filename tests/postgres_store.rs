//! The PostgreSQL backend's foundations against a real, throwaway server: connecting (sslmode,
//! session settings, errors without the password), the pool, error classification when the
//! server goes away, and migrations (fresh, repeated, concurrent, newer than us), plus the
//! guard that keeps the PostgreSQL schema equal to SQLite's.
//!
//! Tests share one throwaway cluster while they run (each in its own database); those that
//! stop, restart or reconfigure the server start their own. They skip loudly without the
//! PostgreSQL binaries, and fail under `INCIDENTD_REQUIRE_E2E=1`.

#[path = "support/postgres.rs"]
mod pg;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use incidentd::config::PostgresConfig;
use incidentd::store::postgres::migrations::{self, MIGRATIONS, MIGRATION_LOCK};
use incidentd::store::postgres::{connect, Dsn, PgError, Pool, SslMode};

fn config(url: &str) -> PostgresConfig {
    PostgresConfig::new(Dsn::parse(url).expect("test URL parses"))
}

fn versions(client: &mut postgres::Client) -> Vec<(i64, String)> {
    client
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn all_versions() -> Vec<(i64, String)> {
    MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned()))
        .collect()
}

#[test]
fn migrations_apply_to_an_empty_database_once_and_survive_a_restart() {
    let Some(mut cluster) = pg::Cluster::start_or_skip("migrations_apply") else {
        return;
    };
    let config = config(&cluster.create_database("incidentd"));
    let mut client = connect(&config).unwrap();
    assert_eq!(migrations::schema_version(&mut client).unwrap(), 0);
    assert_eq!(migrations::migrate(&mut client).unwrap(), MIGRATIONS.len());
    assert_eq!(versions(&mut client), all_versions());
    assert_eq!(
        migrations::schema_version(&mut client).unwrap(),
        migrations::latest_version()
    );
    // migrate() lifted the session's statement_timeout and put it back.
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .unwrap()
        .get(0);
    assert_eq!(timeout, "30s");
    // The lock is released: another session can take it without waiting.
    let mut other = connect(&config).unwrap();
    let free: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .unwrap()
        .get(0);
    assert!(free, "the migration lock was left held");
    drop((client, other));

    cluster.restart();
    let mut client = connect(&config).unwrap();
    assert_eq!(migrations::migrate(&mut client).unwrap(), 0);
    assert_eq!(versions(&mut client), all_versions());
}

#[test]
fn four_replicas_migrating_at_once_apply_each_migration_once() {
    let Some(cluster) = pg::shared_or_skip("four_replicas_migrating") else {
        return;
    };
    let config = config(&cluster.create_database("four_replicas"));
    let barrier = std::sync::Barrier::new(4);
    let applied: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut client = connect(&config).unwrap();
                    barrier.wait();
                    migrations::migrate(&mut client).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        applied.iter().sum::<usize>(),
        MIGRATIONS.len(),
        "{applied:?}"
    );
    assert_eq!(
        applied.iter().filter(|&&n| n > 0).count(),
        1,
        "one replica migrates, the others find it done: {applied:?}"
    );
    let mut client = connect(&config).unwrap();
    assert_eq!(versions(&mut client), all_versions());
}

#[test]
fn a_database_migrated_by_a_newer_incidentd_is_refused() {
    let Some(cluster) = pg::shared_or_skip("newer_schema_refused") else {
        return;
    };
    let config = config(&cluster.create_database("newer_schema"));
    let mut client = connect(&config).unwrap();
    migrations::migrate(&mut client).unwrap();
    let newer = migrations::latest_version() + 1;
    client
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
            &[&newer],
        )
        .unwrap();
    let err = migrations::migrate(&mut client).unwrap_err();
    assert!(matches!(err, PgError::SchemaTooNew { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        format!(
            "database schema version {newer} is newer than this incidentd knows ({}); upgrade \
             incidentd",
            migrations::latest_version()
        )
    );
    // Refusing released the lock and left the session usable.
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .unwrap()
        .get(0);
    assert!(free);
}

/// The schema as lines: columns with their types and nullability, primary keys, unique
/// constraints, indexes, foreign keys. Types in PostgreSQL's words.
type Schema = BTreeSet<String>;

/// SQLite's schema, its types mapped as `store/postgres/migrations.rs` documents.
fn sqlite_schema() -> Schema {
    let conn = incidentd::store::open_in_memory().unwrap();
    let mut out = Schema::new();
    let tables: Vec<String> = conn
        // The search index is each backend's own: SQLite's FTS5 table `incident_search` (and
        // its shadow tables) and indexes `*_search`, PostgreSQL's indexes `*_search`. So is
        // `report_blocks` (the reports' cache: SQLite's 13, with a row per block; PostgreSQL's
        // 17, with a row per block and session).
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name NOT LIKE 'incident_search%' AND name <> 'report_blocks'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in &tables {
        let mut pk: Vec<(i64, String)> = Vec::new();
        let columns: Vec<(String, String, bool, i64)> = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // `incidents.search_chars` (migration 14) is SQLite's own search device, like the
        // `*_search` indexes it serves.
        let columns = columns
            .into_iter()
            .filter(|(name, ..)| !(table == "incidents" && name == "search_chars"));
        for (position, (name, ty, not_null, pk_index)) in columns.enumerate() {
            let pg_type = match (ty.as_str(), table.as_str(), name.as_str()) {
                // The two 0/1 flags are BOOLEAN in PostgreSQL.
                ("INTEGER", "timeline", "human") | ("INTEGER", "jobs", "coalesce") => "boolean",
                ("INTEGER", ..) => "bigint",
                ("TEXT", ..) => "text",
                ("BLOB", ..) => "bytea",
                (other, ..) => panic!("{table}.{name}: unmapped SQLite type {other}"),
            };
            let null = if not_null || pk_index > 0 {
                " not null"
            } else {
                ""
            };
            out.insert(format!("column {table}.{position}: {name} {pg_type}{null}"));
            if pk_index > 0 {
                pk.push((pk_index, name));
            }
        }
        pk.sort();
        let pk: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
        out.insert(format!("primary key {table} ({})", pk.join(", ")));

        let indexes: Vec<(String, bool, String, bool)> = conn
            .prepare(&format!("PRAGMA index_list({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (index, unique, origin, partial) in indexes {
            if index.ends_with("_search") {
                continue; // each backend's own search index, as PostgreSQL's below
            }
            let cols: Vec<String> = conn
                .prepare(&format!("PRAGMA index_info({index})"))
                .unwrap()
                .query_map([], |r| r.get(2))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let cols = cols.join(", ");
            match origin.as_str() {
                "pk" => {} // listed with the columns above
                "u" => {
                    out.insert(format!("unique {table} ({cols})"));
                }
                _ => {
                    out.insert(format!(
                        "index {index} on {table} ({cols}){}{}",
                        if unique { " unique" } else { "" },
                        if partial { " partial" } else { "" }
                    ));
                }
            }
        }

        let fks: Vec<(String, String, String, String)> = conn
            .prepare(&format!("PRAGMA foreign_key_list({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (to_table, from, to, on_delete) in fks {
            out.insert(format!(
                "foreign key {table}.{from} references {to_table} ({to}) on delete {on_delete}"
            ));
        }
    }
    out
}

fn postgres_schema(client: &mut postgres::Client) -> Schema {
    let mut out = Schema::new();
    // `schema_migrations` is PostgreSQL's `PRAGMA user_version`: not part of the comparison;
    // nor is `report_blocks`, each backend's own (SQLite's 13, PostgreSQL's 17).
    for row in client
        .query(
            "SELECT table_name::text, ordinal_position::bigint - 1, column_name::text,
                    data_type::text, is_nullable = 'NO'
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name NOT IN ('schema_migrations', 'report_blocks')",
            &[],
        )
        .unwrap()
    {
        let (table, position, name, ty, not_null): (String, i64, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let null = if not_null { " not null" } else { "" };
        out.insert(format!("column {table}.{position}: {name} {ty}{null}"));
    }
    let columns = "array(SELECT a.attname::text
                         FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                         ORDER BY k.n)";
    for row in client
        .query(
            &format!(
                "SELECT c.contype::text, t.relname::text, {columns},
                        f.relname::text,
                        array(SELECT a.attname::text
                              FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
                              JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                              ORDER BY k.n),
                        CASE c.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'c' THEN 'CASCADE'
                             WHEN 'r' THEN 'RESTRICT' WHEN 'n' THEN 'SET NULL'
                             WHEN 'd' THEN 'SET DEFAULT' END
                 FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 JOIN pg_namespace ns ON ns.oid = t.relnamespace
                 LEFT JOIN pg_class f ON f.oid = c.confrelid
                 WHERE ns.nspname = current_schema() AND t.relname NOT IN ('schema_migrations', 'report_blocks')
                   AND c.contype IN ('p', 'u', 'f')"
            ),
            &[],
        )
        .unwrap()
    {
        let kind: String = row.get(0);
        let table: String = row.get(1);
        let cols: Vec<String> = row.get(2);
        let cols = cols.join(", ");
        match kind.as_str() {
            "p" => out.insert(format!("primary key {table} ({cols})")),
            "u" => out.insert(format!("unique {table} ({cols})")),
            _ => {
                let to_table: String = row.get(3);
                let to: Vec<String> = row.get(4);
                let on_delete: String = row.get(5);
                out.insert(format!(
                    "foreign key {table}.{cols} references {to_table} ({}) on delete {on_delete}",
                    to.join(", ")
                ))
            }
        };
    }
    for row in client
        .query(
            "SELECT i.relname::text, t.relname::text,
                    array(SELECT a.attname::text
                          FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                          ORDER BY k.n),
                    ix.indisunique, ix.indpred IS NOT NULL
             FROM pg_index ix
             JOIN pg_class i ON i.oid = ix.indexrelid
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace ns ON ns.oid = t.relnamespace
             WHERE ns.nspname = current_schema() AND t.relname NOT IN ('schema_migrations', 'report_blocks')
               AND i.relname NOT LIKE '%\\_search'
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)",
            &[],
        )
        .unwrap()
    {
        let (index, table, cols, unique, partial): (String, String, Vec<String>, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        out.insert(format!(
            "index {index} on {table} ({}){}{}",
            cols.join(", "),
            if unique { " unique" } else { "" },
            if partial { " partial" } else { "" }
        ));
    }
    out
}

#[test]
fn the_postgresql_schema_has_exactly_the_tables_columns_keys_and_indexes_of_sqlite() {
    let Some(cluster) = pg::shared_or_skip("schema_equality") else {
        return;
    };
    let mut client = connect(&config(&cluster.create_database("schema_equality"))).unwrap();
    migrations::migrate(&mut client).unwrap();
    let sqlite = sqlite_schema();
    let postgres = postgres_schema(&mut client);
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "schemas differ\nonly in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_postgres:#?}"
    );
    // The comparison saw the whole schema, not two empty sets.
    assert!(sqlite
        .iter()
        .any(|l| l.starts_with("index jobs_coalesced on jobs (kind, incident_id) unique partial")));
    assert!(sqlite.len() > 100, "{}", sqlite.len());
}

#[test]
fn the_jobs_coalescing_index_allows_one_pending_coalesced_job_per_kind_and_incident() {
    let Some(cluster) = pg::shared_or_skip("jobs_coalescing") else {
        return;
    };
    let mut client = connect(&config(&cluster.create_database("jobs_coalescing"))).unwrap();
    migrations::migrate(&mut client).unwrap();
    client
        .batch_execute(
            "INSERT INTO incidents VALUES ('INC-2026-0001', 1, 'k', 't', 'open', NULL, NULL,
                 NULL, 'm', 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 1, 0, 0, 1, 0)",
        )
        .unwrap();
    let insert = "INSERT INTO jobs (kind, incident_id, payload, \"coalesce\", state, run_at, \
                  created_at) VALUES ('render', 'INC-2026-0001', '{}', $1, $2, 0, 0)";
    client.execute(insert, &[&true, &"pending"]).unwrap();
    client.execute(insert, &[&false, &"pending"]).unwrap();
    client.execute(insert, &[&true, &"running"]).unwrap();
    let err = PgError::from(client.execute(insert, &[&true, &"pending"]).unwrap_err());
    assert_eq!(err.code(), Some("23505"), "{err}");
    assert!(!err.is_transient(), "a constraint violation is permanent");
    // Deleting the incident cascades to its jobs.
    client
        .execute("DELETE FROM incidents WHERE id = 'INC-2026-0001'", &[])
        .unwrap();
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0);
}

#[test]
fn a_session_is_named_incidentd_and_has_the_statement_timeout() {
    let Some(cluster) = pg::shared_or_skip("session_settings") else {
        return;
    };
    let mut config = config(&cluster.url());
    config.statement_timeout = Duration::from_millis(1500);
    let mut client = connect(&config).unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('statement_timeout')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "incidentd");
    assert_eq!(row.get::<_, String>(1), "1500ms");
    // A statement past the limit is cancelled: transient (57014).
    let err = PgError::from(client.batch_execute("SELECT pg_sleep(3)").unwrap_err());
    assert_eq!(err.code(), Some("57014"), "{err}");
    assert!(err.is_transient());
    // A syntax error is permanent.
    let err = PgError::from(client.batch_execute("SELEC 1").unwrap_err());
    assert_eq!(err.code(), Some("42601"), "{err}");
    assert!(!err.is_transient());
}

#[test]
fn sslmode_require_against_a_server_without_tls_fails_naming_sslmode() {
    let Some(cluster) = pg::shared_or_skip("sslmode_require") else {
        return;
    };
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let url = format!(
            "postgres://incidentd:hunter2@127.0.0.1:{}/postgres?sslmode={mode}",
            cluster.port()
        );
        let err = connect(&config(&url)).err().expect("no TLS on the server");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "cannot connect to PostgreSQL incidentd@127.0.0.1:{}/postgres (sslmode={mode}): \
                 error performing TLS handshake: server does not support TLS",
                cluster.port()
            )
        );
        assert!(!format!("{err:?}").contains("hunter2"));
        assert!(!err.is_transient(), "a configuration mismatch is permanent");
    }
    // prefer falls back to plain TCP, as with libpq.
    let url = format!("postgres://incidentd@127.0.0.1:{}/postgres", cluster.port());
    let config = config(&url);
    assert_eq!(config.sslmode, SslMode::Prefer);
    connect(&config).unwrap();
}

#[test]
fn a_stopped_server_gives_transient_errors_and_the_pool_reconnects_when_it_is_back() {
    let Some(mut cluster) = pg::Cluster::start_or_skip("stopped_server") else {
        return;
    };
    let mut config = config(&cluster.url());
    config.connect_timeout = Duration::from_secs(2);
    let pool = Pool::new(config);
    {
        let mut client = pool.get().unwrap();
        client.batch_execute("SELECT 1").unwrap();
    }
    assert_eq!((pool.open(), pool.idle()), (1, 1));

    cluster.stop();
    {
        // The idle session does not know yet; its first statement finds out.
        let mut client = pool.get().unwrap();
        let err = PgError::from(client.batch_execute("SELECT 1").unwrap_err());
        assert!(err.is_transient(), "{err:?}");
    }
    // The broken session was dropped, not given back; a new one cannot connect.
    assert_eq!(pool.open(), 0);
    let err = pool.get().err().expect("nothing listens");
    assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
    assert!(err.is_transient(), "connection refused is transient: {err}");
    assert!(err.to_string().starts_with(&format!(
        "cannot connect to PostgreSQL incidentd@127.0.0.1:{}/postgres (sslmode=disable): ",
        cluster.port()
    )));
    assert_eq!(pool.open(), 0);

    cluster.start();
    let mut client = pool.get().unwrap();
    client.batch_execute("SELECT 1").unwrap();
}

#[test]
fn an_administrator_terminating_a_session_is_transient() {
    let Some(cluster) = pg::shared_or_skip("admin_shutdown") else {
        return;
    };
    let config = config(&cluster.url());
    let mut victim = connect(&config).unwrap();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut admin = connect(&config).unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let err = PgError::from(victim.batch_execute("SELECT 1").unwrap_err());
    assert!(err.is_transient(), "{err:?}");
    // The server says why (57P01) when the message arrives before the socket closes.
    if let Some(code) = err.code() {
        assert_eq!(code, "57P01");
    }
}

#[test]
fn the_pool_opens_at_most_pool_size_sessions_and_waits_for_one_back() {
    let Some(cluster) = pg::shared_or_skip("pool_size") else {
        return;
    };
    let mut config = config(&cluster.url());
    config.pool_size = 2;
    config.connect_timeout = Duration::from_millis(300);
    config.statement_timeout = Duration::ZERO;
    let pool = Pool::new(config);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let started = Instant::now();
    let err = pool.get().err().expect("both sessions are out");
    assert!(
        matches!(err, PgError::PoolTimeout { size: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A session given back wakes a waiter.
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.get().map(|mut c| c.batch_execute("SELECT 1").is_ok()))
    };
    std::thread::sleep(Duration::from_millis(50));
    drop(a);
    assert!(waiter.join().unwrap().unwrap());
    assert_eq!(pool.open(), 2);
    b.discard();
    assert_eq!(pool.open(), 1);
}

#[test]
fn connection_errors_never_show_the_password() {
    // No server needed: nothing listens on port 1.
    let config = config("postgres://incidentd:hunter2@127.0.0.1:1/incidentd?sslmode=disable");
    let err = connect(&config).err().expect("nothing listens");
    assert!(err.is_transient(), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("incidentd@127.0.0.1:1/incidentd"), "{shown}");
    }
}

#[test]
fn tls_modes_check_the_certificate_as_libpq_does() {
    let Some(mut cluster) = pg::Cluster::start_or_skip("tls_modes") else {
        return;
    };
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postgres-tls");
    // The server's certificate is for IP 127.0.0.1, signed by ca.pem.
    cluster.enable_tls(&fixtures.join("server.pem"), &fixtures.join("server.key"));
    let ca = fixtures.join("ca.pem");
    let other_ca = fixtures.join("other-ca.pem");
    let attempt = |host: &str, mode: SslMode, root: Option<&std::path::Path>| {
        let mut config = config(&format!(
            "postgres://incidentd@{host}:{}/postgres",
            cluster.port()
        ));
        config.sslmode = mode;
        config.sslrootcert = root.map(|p| p.to_path_buf());
        connect(&config).map(|mut client| {
            // The session is encrypted.
            let ssl: bool = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .unwrap()
                .get(0);
            ssl
        })
    };
    // Encrypted without checking: any certificate.
    assert!(attempt("127.0.0.1", SslMode::Prefer, None).unwrap());
    assert!(attempt("127.0.0.1", SslMode::Require, None).unwrap());
    // verify-full: the chain and the name.
    assert!(attempt("127.0.0.1", SslMode::VerifyFull, Some(&ca)).unwrap());
    // "localhost" is not the name in the certificate: verify-full refuses, verify-ca accepts.
    let err = attempt("localhost", SslMode::VerifyFull, Some(&ca)).expect_err("wrong name");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("sslmode=verify-full"), "{err}");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("not valid for name"),
        "{err}"
    );
    assert!(attempt("localhost", SslMode::VerifyCa, Some(&ca)).unwrap());
    // Another CA: both verify modes refuse, and so does require with a root certificate.
    for mode in [SslMode::VerifyCa, SslMode::VerifyFull, SslMode::Require] {
        let err = attempt("127.0.0.1", mode, Some(&other_ca)).expect_err("unknown issuer");
        assert!(!err.is_transient(), "{err}");
        assert!(err.to_string().contains("UnknownIssuer"), "{mode}: {err}");
    }
    // Without sslrootcert the verify modes trust the Mozilla roots, which did not sign it.
    assert!(attempt("127.0.0.1", SslMode::VerifyFull, None).is_err());
    // An sslrootcert that is not there is a TLS settings error, before any connection.
    let err = attempt(
        "127.0.0.1",
        SslMode::VerifyFull,
        Some(&fixtures.join("missing.pem")),
    )
    .expect_err("missing file");
    assert!(matches!(err, PgError::Tls(_)), "{err:?}");
}

fn alertnames(client: &mut postgres::Client) -> Vec<(String, String)> {
    client
        .query("SELECT id, alertnames FROM incidents ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn the_search_migration_fills_alert_names_of_existing_incidents_and_triggers_keep_them() {
    let Some(cluster) = pg::shared_or_skip("search_migration") else {
        return;
    };
    let mut client = connect(&config(&cluster.create_database("search_migration"))).unwrap();
    // A database as version 9 left it, with incidents and alerts.
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .unwrap();
    for m in &MIGRATIONS[..9] {
        client.batch_execute(m.sql).unwrap();
        client
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO incidents VALUES
                 ('INC-2026-0001', 1, 'k1', 'Disk full', 'open', NULL, NULL, NULL, 'm', 0, 0,
                  NULL, NULL, NULL, NULL, NULL, 0, 1, 0, 0, 1, 0),
                 ('INC-2026-0002', 2, 'k2', 'Other', 'resolved', NULL, NULL, NULL, 'm', 0, 0,
                  NULL, NULL, NULL, NULL, NULL, 0, 1, 0, 0, 1, 0);
             INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, alertname,
                 labels, annotations, generator_url, group_key, first_seen_at, last_seen_at)
             VALUES ('a', 0, 'INC-2026-0001', 'firing', 'NodeDown', '{}', '{}', '', '', 0, 0),
                    ('b', 0, 'INC-2026-0001', 'firing', 'DiskFull', '{}', '{}', '', '', 0, 0),
                    ('c', 1, 'INC-2026-0001', 'firing', 'NodeDown', '{}', '{}', '', '', 0, 0);",
        )
        .unwrap();
    assert_eq!(
        migrations::migrate(&mut client).unwrap(),
        MIGRATIONS.len() - 9
    );
    let pair = |id: &str, names: &str| (id.to_string(), names.to_string());
    assert_eq!(
        alertnames(&mut client),
        vec![
            pair("INC-2026-0001", "DiskFull\nNodeDown"),
            pair("INC-2026-0002", "")
        ]
    );
    // Kept by the writes: an alert added, one deleted, one moved to another incident.
    client
        .batch_execute(
            "INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, alertname,
                 labels, annotations, generator_url, group_key, first_seen_at, last_seen_at)
             VALUES ('d', 0, 'INC-2026-0002', 'firing', 'Added', '{}', '{}', '', '', 0, 0);
             DELETE FROM occurrences WHERE fingerprint = 'b';
             UPDATE occurrences SET incident_id = 'INC-2026-0002' WHERE fingerprint = 'a';",
        )
        .unwrap();
    assert_eq!(
        alertnames(&mut client),
        vec![
            pair("INC-2026-0001", "NodeDown"),
            pair("INC-2026-0002", "Added\nNodeDown")
        ]
    );
}
