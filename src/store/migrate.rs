//! Moving an installation from SQLite to PostgreSQL (`incidentd migrate`): every table, row
//! for row, in one PostgreSQL transaction, checked by counting afterwards.
//!
//! Run it with the daemon stopped. The two schemas have the same tables and columns (a test
//! keeps them equal), so the copy is generic: each column's value is converted by the type
//! PostgreSQL declares for it. Jobs that were running when the old daemon stopped are queued
//! again, as a start would; named leases are not copied (they belong to processes).

use std::path::Path;

use postgres::types::ToSql;
use rusqlite::types::ValueRef;

use crate::config::PostgresConfig;

/// Tables in the order their foreign keys need; every table of the schema must be listed.
const TABLES: &[&str] = &[
    "incident_sequences",
    "incidents",
    "occurrences",
    "timeline",
    "payloads",
    "notifications",
    "evidence",
    "charts",
    "slack_threads",
    "jobs",
    "drafts",
    "slack_events",
    "slack_messages",
    "slack_users",
    "secrets",
];

/// Tables that are not copied, and why.
const SKIPPED: &[(&str, &str)] = &[
    ("leases", "held by processes, not data"),
    // SQLite's search index (FTS5) and its shadow tables, and its short terms' blocks
    // (migrations 14 and 16): PostgreSQL's is made of `pg_trgm` indexes on `incidents`,
    // filled as its rows are copied.
    ("incident_search", SEARCH_INDEX),
    ("incident_search_config", SEARCH_INDEX),
    ("incident_search_data", SEARCH_INDEX),
    ("incident_search_docsize", SEARCH_INDEX),
    ("incident_search_idx", SEARCH_INDEX),
    (
        "report_blocks",
        "counts changes for the reports' cache; PostgreSQL's (a row per block and session) is filled by its triggers as incidents are copied",
    ),
    ("incident_search_blocks", SEARCH_INDEX),
    ("incident_search_pairs", SEARCH_INDEX),
];

const SEARCH_INDEX: &str = "SQLite's search index; PostgreSQL indexes the copied rows";

/// Columns that are not copied: SQLite's search index's, kept by its triggers (migration 14).
const SQLITE_ONLY_COLUMNS: &[(&str, &str)] = &[("incidents", "search_chars")];

/// What was copied: `(table, rows)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(String, u64)>,
}

/// Copy the SQLite database in `sqlite_dir` into the (empty) PostgreSQL database of `to`,
/// creating its schema first. The source is brought to this version's schema if it is older.
pub fn sqlite_to_postgres(sqlite_dir: &Path, to: &PostgresConfig) -> anyhow::Result<Copied> {
    use anyhow::Context;
    let path = sqlite_dir.join("incidentd.db");
    anyhow::ensure!(path.exists(), "no SQLite database at {}", path.display());
    let mut source =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    super::sqlite::migrations::migrate(&mut source)
        .with_context(|| format!("bringing {} to this version's schema", path.display()))?;
    let target = to.url.redacted();
    let mut dest =
        super::postgres::connect(to).with_context(|| format!("connecting to {target}"))?;
    super::postgres::migrations::migrate(&mut dest)
        .with_context(|| format!("creating the schema in {target}"))?;

    let tables: Vec<String> = source
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for t in &tables {
        anyhow::ensure!(
            TABLES.contains(&t.as_str()) || SKIPPED.iter().any(|(s, _)| s == t),
            "table {t} of the SQLite database is unknown to the migration (a bug: list it in store::migrate)"
        );
    }

    let mut tx = dest.transaction()?;
    let held: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM incidents) + (SELECT count(*) FROM notifications) \
             + (SELECT count(*) FROM jobs)",
            &[],
        )?
        .get(0);
    anyhow::ensure!(
        held == 0,
        "{target} already holds incidents, notifications or jobs; migrate into an empty database"
    );
    let mut copied = Vec::new();
    for &table in TABLES {
        let n = copy_table(&source, &mut tx, table).with_context(|| format!("copying {table}"))?;
        copied.push((table.to_string(), n));
    }
    reset_identities(&mut tx)?;
    for (table, n) in &copied {
        let there: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
            .get(0);
        anyhow::ensure!(
            there as u64 == *n,
            "{table}: {n} rows copied but {there} in PostgreSQL; nothing was committed"
        );
    }
    tx.commit()?;
    Ok(Copied { tables: copied })
}

/// One column's value as PostgreSQL takes it.
#[derive(Debug)]
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Int(v) => v,
            Value::Bool(v) => v,
            Value::Text(v) => v,
            Value::Bytes(v) => v,
        }
    }
}

fn copy_table(
    source: &rusqlite::Connection,
    tx: &mut postgres::Transaction,
    table: &str,
) -> anyhow::Result<u64> {
    let columns: Vec<String> = source
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))?
        .query_map([], |r| r.get::<_, String>(0))?
        .filter(|c| {
            !c.as_ref()
                .is_ok_and(|c| SQLITE_ONLY_COLUMNS.contains(&(table, c.as_str())))
        })
        .collect::<Result<_, _>>()?;
    let mut types = Vec::with_capacity(columns.len());
    for c in &columns {
        let row = tx.query_opt(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
            &[&table, c],
        )?;
        let Some(row) = row else {
            anyhow::bail!("column {table}.{c} is not in PostgreSQL's schema");
        };
        types.push(row.get::<_, String>(0));
    }
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = tx.prepare(&format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        quoted.join(", "),
        placeholders.join(", ")
    ))?;
    let mut stmt = source.prepare(&format!("SELECT {} FROM {table}", quoted.join(", ")))?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, ty) in types.iter().enumerate() {
            values.push(
                convert(row.get_ref(i)?, ty)
                    .map_err(|e| anyhow::anyhow!("{table}.{}: {e}", columns[i]))?,
            );
        }
        if table == "jobs" {
            requeue_if_running(&columns, &mut values);
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::as_sql).collect();
        tx.execute(&insert, &params)?;
        n += 1;
    }
    Ok(n)
}

/// A job that was running when the old daemon stopped runs again, as after any start.
fn requeue_if_running(columns: &[String], values: &mut [Value]) {
    let at = |name: &str| columns.iter().position(|c| c == name);
    let running =
        at("state").is_some_and(|i| matches!(&values[i], Value::Text(Some(s)) if s == "running"));
    if !running {
        return;
    }
    if let Some(i) = at("state") {
        values[i] = Value::Text(Some("pending".into()));
    }
    if let Some(i) = at("holder") {
        values[i] = Value::Text(None);
    }
    if let Some(i) = at("lease_until") {
        values[i] = Value::Int(None);
    }
}

fn convert(v: ValueRef, pg_type: &str) -> Result<Value, String> {
    let wrong = |what: &str| Err(format!("a {what} cannot go into a {pg_type} column"));
    Ok(match pg_type {
        "bigint" | "integer" | "smallint" => match v {
            ValueRef::Null => Value::Int(None),
            ValueRef::Integer(i) => Value::Int(Some(i)),
            _ => return wrong("non-integer"),
        },
        "boolean" => match v {
            ValueRef::Null => Value::Bool(None),
            ValueRef::Integer(i) => Value::Bool(Some(i != 0)),
            _ => return wrong("non-integer"),
        },
        "text" => match v {
            ValueRef::Null => Value::Text(None),
            ValueRef::Text(t) => Value::Text(Some(
                std::str::from_utf8(t)
                    .map_err(|_| "text that is not UTF-8".to_string())?
                    .to_string(),
            )),
            ValueRef::Integer(i) => Value::Text(Some(i.to_string())),
            _ => return wrong("blob or real"),
        },
        "bytea" => match v {
            ValueRef::Null => Value::Bytes(None),
            ValueRef::Blob(b) | ValueRef::Text(b) => Value::Bytes(Some(b.to_vec())),
            _ => return wrong("number"),
        },
        other => return Err(format!("column type {other} is not handled")),
    })
}

/// Identity columns and sequences continue after the copied ids.
fn reset_identities(tx: &mut postgres::Transaction) -> anyhow::Result<()> {
    let owned = tx.query(
        "SELECT c.table_name::text, c.column_name::text, \
                pg_get_serial_sequence(quote_ident(c.table_name), c.column_name) \
         FROM information_schema.columns c \
         WHERE c.table_schema = current_schema() \
           AND pg_get_serial_sequence(quote_ident(c.table_name), c.column_name) IS NOT NULL",
        &[],
    )?;
    for row in owned {
        let (table, column, sequence): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        tx.execute(
            &format!(
                "SELECT setval($1::text::regclass, COALESCE((SELECT max(\"{column}\") FROM {table}), 0) + 1, false)"
            ),
            &[&sequence],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_the_schema_is_copied_or_said_why_not() {
        let conn = crate::store::open_in_memory().expect("schema");
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for t in &tables {
            assert!(
                TABLES.contains(&t.as_str()) || SKIPPED.iter().any(|(s, _)| s == t),
                "{t} is neither copied nor skipped"
            );
        }
        assert_eq!(tables.len(), TABLES.len() + SKIPPED.len());
    }

    #[test]
    fn values_convert_by_the_column_type_postgresql_declares() {
        assert!(matches!(
            convert(ValueRef::Integer(1), "boolean"),
            Ok(Value::Bool(Some(true)))
        ));
        assert!(matches!(
            convert(ValueRef::Null, "bigint"),
            Ok(Value::Int(None))
        ));
        assert!(matches!(
            convert(ValueRef::Blob(b"x"), "bytea"),
            Ok(Value::Bytes(Some(_)))
        ));
        assert!(convert(ValueRef::Real(1.5), "bigint").is_err());
        assert!(convert(ValueRef::Integer(1), "jsonb").is_err());
    }
}
