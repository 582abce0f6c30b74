//! The durable job queue: slow work (evidence, drafts, Slack) recorded in the same
//! transaction as the change that needs it, so a restart or an outage loses nothing.

use chrono::Duration;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::incident::Timestamp;
use crate::time::{from_micros, to_micros};

/// A job as claimed by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub incident_id: Option<String>,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub run_at: Timestamp,
}

/// Queue a job to run at `run_at`. With `coalesce`, a job of the same kind for the same
/// incident that is still pending absorbs this one (a burst of changes renders once).
pub fn enqueue(
    tx: &Transaction,
    kind: &str,
    incident_id: Option<&str>,
    payload: &serde_json::Value,
    coalesce: bool,
    run_at: Timestamp,
    now: Timestamp,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO jobs (kind, incident_id, payload, coalesce, state, run_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6) \
         ON CONFLICT (kind, incident_id) WHERE coalesce = 1 AND state = 'pending' DO NOTHING",
    )?
    .execute(params![
        kind,
        incident_id,
        payload.to_string(),
        coalesce,
        to_micros(run_at),
        to_micros(now)
    ])?;
    Ok(())
}

/// Claim the oldest due job of `kind`. Jobs of one incident run in order: a job is not due
/// while an earlier job of the same kind for the same incident is unfinished.
pub fn claim(tx: &Transaction, kind: &str, now: Timestamp) -> rusqlite::Result<Option<Job>> {
    let job = tx
        .prepare_cached(
            "SELECT id, kind, incident_id, payload, attempts, run_at FROM jobs j \
             WHERE state = 'pending' AND kind = ?2 AND run_at <= ?1 \
               AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.kind = j.kind \
                   AND e.incident_id IS j.incident_id AND e.id < j.id \
                   AND e.state IN ('pending', 'running')) \
             ORDER BY run_at, id LIMIT 1",
        )?
        .query_row(params![to_micros(now), kind], |r| {
            let payload: String = r.get(3)?;
            Ok(Job {
                id: r.get(0)?,
                kind: r.get(1)?,
                incident_id: r.get(2)?,
                payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                attempts: r.get(4)?,
                run_at: from_micros(r.get(5)?),
            })
        })
        .optional()?;
    if let Some(j) = &job {
        tx.prepare_cached(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1 WHERE id = ?1",
        )?
        .execute(params![j.id])?;
    }
    Ok(job)
}

/// The job succeeded.
pub fn complete(tx: &Transaction, id: i64, now: Timestamp) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET state = 'done', done_at = ?2, last_error = NULL WHERE id = ?1",
    )?
    .execute(params![id, to_micros(now)])?;
    Ok(())
}

/// The job failed: retry after `retry_in`, or give up (`None`) and keep the error. A new
/// `payload` replaces the job's (a handler's progress, so a retry does not redo steps).
pub fn fail(
    tx: &Transaction,
    id: i64,
    error: &str,
    retry_in: Option<Duration>,
    payload: Option<&serde_json::Value>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    if let Some(p) = payload {
        tx.prepare_cached("UPDATE jobs SET payload = ?2 WHERE id = ?1")?
            .execute(params![id, p.to_string()])?;
    }
    match retry_in {
        Some(delay) => tx
            .prepare_cached(
                "UPDATE jobs SET state = 'pending', run_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, to_micros(now + delay), error])?,
        None => tx
            .prepare_cached(
                "UPDATE jobs SET state = 'failed', done_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, to_micros(now), error])?,
    };
    Ok(())
}

/// A job's current row, for tests and diagnostics: `(state, attempts, last_error)`.
pub fn status(
    conn: &Connection,
    id: i64,
) -> rusqlite::Result<Option<(String, u32, Option<String>)>> {
    conn.prepare_cached("SELECT state, attempts, last_error FROM jobs WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

/// Every job of an incident, oldest first: `(kind, state, payload)`.
pub fn of_incident(
    conn: &Connection,
    incident_id: &str,
) -> rusqlite::Result<Vec<(String, String, serde_json::Value)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, state, payload FROM jobs WHERE incident_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![incident_id], |r| {
        let payload: String = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            serde_json::from_str(&payload).unwrap_or_default(),
        ))
    })?;
    rows.collect()
}

/// After a restart, jobs that were running when the process died run again.
pub fn requeue_running(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE jobs SET state = 'pending' WHERE state = 'running'",
        [],
    )
}

/// Pending and running jobs, by kind.
pub fn depth(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, count(*) FROM jobs WHERE state IN ('pending', 'running') GROUP BY kind",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Delete finished jobs older than `cutoff`.
pub fn prune(tx: &Transaction, cutoff: Timestamp) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM jobs WHERE state IN ('done', 'failed') AND done_at < ?1")?
        .execute(params![to_micros(cutoff)])
}
