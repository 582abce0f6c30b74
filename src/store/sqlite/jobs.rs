//! The durable job queue: slow work (evidence, drafts, Slack) recorded in the same
//! transaction as the change that needs it, so a restart or an outage loses nothing.

use chrono::Duration;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::incident::Timestamp;
use crate::store::{Job, JobStatus, NewJob, Recovered};
use crate::time::{from_micros, to_micros};

/// Queue a job to run at `run_at`. With `coalesce`, a job of the same kind for the same
/// incident that is still pending absorbs this one (a burst of changes renders once); it
/// runs at the earlier of the two times, so a request is never delayed by a later one.
pub fn enqueue(tx: &Transaction, job: &NewJob) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO jobs (kind, incident_id, payload, coalesce, state, run_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6) \
         ON CONFLICT (kind, incident_id) WHERE coalesce = 1 AND state = 'pending' \
         DO UPDATE SET run_at = MIN(run_at, excluded.run_at) RETURNING id",
    )?
    .query_row(
        params![
            job.kind,
            job.incident_id,
            job.payload.to_string(),
            job.coalesce,
            to_micros(job.run_at),
            to_micros(job.now)
        ],
        |r| r.get(0),
    )
}

/// Claim the oldest due job of `kind` for `holder` until `lease_until`: a pending one, or
/// a running one whose lease expired (its holder died). Jobs of one incident run in order:
/// a job is not due while an earlier job of the same kind for the same incident is
/// unfinished (a running one counts while its lease holds).
pub fn claim(
    tx: &Transaction,
    kind: &str,
    now: Timestamp,
    holder: &str,
    lease_until: Timestamp,
) -> rusqlite::Result<Option<Job>> {
    let job = tx
        .prepare_cached(
            "SELECT id, kind, incident_id, payload, attempts, run_at FROM jobs j \
             WHERE kind = ?2 AND ((state = 'pending' AND run_at <= ?1) \
                   OR (state = 'running' AND lease_until < ?1)) \
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
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, holder = ?2, \
             lease_until = ?3 WHERE id = ?1",
        )?
        .execute(params![j.id, holder, to_micros(lease_until)])?;
    }
    Ok(job)
}

/// Extend `holder`'s lease on a running job; `false` when it is no longer theirs.
pub fn renew(
    tx: &Transaction,
    id: i64,
    holder: &str,
    lease_until: Timestamp,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND holder = ?2 AND state = 'running'",
        )?
        .execute(params![id, holder, to_micros(lease_until)])?;
    Ok(n > 0)
}

/// Take or keep the named lease for `holder` until `until`, unless another holder's lease
/// is still valid at `now`.
pub fn acquire_lease(
    tx: &Transaction,
    name: &str,
    holder: &str,
    now: Timestamp,
    until: Timestamp,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE leases.holder = excluded.holder OR leases.until < ?3",
        )?
        .execute(params![name, holder, to_micros(now), to_micros(until)])?;
    Ok(n > 0)
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
///
/// A coalesced job that is to be retried while a later job of its kind for its incident is
/// already pending is not put back: that pending job redoes its work anyway (coalesced work
/// is "bring this incident up to date"), and two pending coalesced jobs of one kind and
/// incident are what the `jobs_coalesced` index forbids. It is recorded as superseded.
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
        Some(delay) => {
            if let Some(by) = pending_sibling(tx, id)? {
                tx.prepare_cached(
                    "UPDATE jobs SET state = 'done', done_at = ?2, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    to_micros(now),
                    format!("{error} (superseded by job {by}, which redoes this work)")
                ])?;
            } else {
                tx.prepare_cached(
                    "UPDATE jobs SET state = 'pending', run_at = ?2, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![id, to_micros(now + delay), error])?;
            }
        }
        None => {
            tx.prepare_cached(
                "UPDATE jobs SET state = 'failed', done_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, to_micros(now), error])?;
        }
    };
    Ok(())
}

/// For a coalesced job, the id of another pending coalesced job of the same kind and incident.
fn pending_sibling(conn: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT s.id FROM jobs j JOIN jobs s ON s.kind = j.kind AND s.incident_id IS j.incident_id \
         WHERE j.id = ?1 AND j.coalesce = 1 AND s.coalesce = 1 AND s.state = 'pending' \
           AND s.id <> j.id LIMIT 1",
    )?
    .query_row(params![id], |r| r.get(0))
    .optional()
}

/// A job's current row, for tests and diagnostics: `(state, attempts, last_error)`.
pub fn status(conn: &Connection, id: i64) -> rusqlite::Result<Option<JobStatus>> {
    conn.prepare_cached("SELECT state, attempts, last_error FROM jobs WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok(JobStatus {
                state: r.get(0)?,
                attempts: r.get(1)?,
                last_error: r.get(2)?,
            })
        })
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

/// After a restart, jobs that were running when the process died run again, except a
/// coalesced one whose later sibling is already pending (it would be a second pending
/// coalesced job of that kind and incident: the sibling does the work). One transaction,
/// so a crash during recovery leaves the same state to recover from.
pub fn requeue_running(conn: &mut Connection, now: Timestamp) -> rusqlite::Result<Recovered> {
    let tx = conn.transaction()?;
    let superseded = tx.execute(
        "UPDATE jobs SET state = 'done', done_at = ?1, \
             last_error = 'interrupted by a restart; superseded by a pending job of the same kind' \
         WHERE state = 'running' AND coalesce = 1 AND EXISTS (SELECT 1 FROM jobs s \
             WHERE s.kind = jobs.kind AND s.incident_id IS jobs.incident_id \
               AND s.coalesce = 1 AND s.state = 'pending')",
        params![to_micros(now)],
    )?;
    // Two running coalesced jobs of one kind and incident (not made by this version, but a
    // crash must never stop a start): keep the newest, the others are superseded by it.
    let superseded_running = tx.execute(
        "UPDATE jobs SET state = 'done', done_at = ?1, \
             last_error = 'interrupted by a restart; superseded by a later job of the same kind' \
         WHERE state = 'running' AND coalesce = 1 AND EXISTS (SELECT 1 FROM jobs s \
             WHERE s.kind = jobs.kind AND s.incident_id IS jobs.incident_id \
               AND s.coalesce = 1 AND s.state = 'running' AND s.id > jobs.id)",
        params![to_micros(now)],
    )?;
    let requeued = tx.execute(
        "UPDATE jobs SET state = 'pending' WHERE state = 'running'",
        [],
    )?;
    tx.commit()?;
    Ok(Recovered {
        requeued,
        superseded: superseded + superseded_running,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    /// A migrated database without foreign keys, so jobs need no incident rows.
    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().expect("db");
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("pragma");
        crate::store::sqlite::migrations::migrate(&mut conn).expect("migrate");
        conn
    }

    fn with_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction) -> T) -> T {
        let tx = conn.transaction().expect("tx");
        let out = f(&tx);
        tx.commit().expect("commit");
        out
    }

    fn render(conn: &mut Connection, now: Timestamp) {
        with_tx(conn, |tx| {
            enqueue(
                tx,
                &NewJob {
                    kind: "render",
                    incident_id: Some("INC-1"),
                    payload: &serde_json::Value::Null,
                    coalesce: true,
                    run_at: now,
                    now,
                },
            )
            .expect("enqueue")
        });
    }

    fn states(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn
            .prepare("SELECT id, state FROM jobs ORDER BY id")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    }

    /// The state issue 12 found after `kill -9`: one coalesced render running, the next one
    /// queued behind it. Start-up used to fail on the unique index; now it recovers.
    #[test]
    fn a_running_and_a_pending_coalesced_job_of_one_incident_survive_a_crash() {
        let now = t("2026-12-01T10:00:00Z");
        let mut conn = db();
        render(&mut conn, now);
        let claimed = with_tx(&mut conn, |tx| {
            claim(tx, "render", now, "me", now + Duration::minutes(1)).expect("claim")
        });
        let first = claimed.expect("a job is due").id;
        render(&mut conn, now); // a change while the first renders: a second, pending job
        assert_eq!(
            states(&conn),
            vec![(first, "running".into()), (first + 1, "pending".into())]
        );
        // The process dies here. Start-up:
        let recovered = requeue_running(&mut conn, now).expect("recovers");
        assert_eq!(
            recovered,
            Recovered {
                requeued: 0,
                superseded: 1
            }
        );
        assert_eq!(
            states(&conn),
            vec![(first, "done".into()), (first + 1, "pending".into())]
        );
        // ... and the pending one runs: the incident's draft is brought up to date.
        let next = with_tx(&mut conn, |tx| {
            claim(tx, "render", now, "me", now + Duration::minutes(1)).expect("claim")
        });
        assert_eq!(next.map(|j| j.id), Some(first + 1));
        // Recovering again (a crash during recovery) is harmless.
        with_tx(&mut conn, |tx| {
            complete(tx, first + 1, now).expect("complete")
        });
        assert_eq!(
            requeue_running(&mut conn, now).expect("again"),
            Recovered::default()
        );
    }

    /// Evidence refreshes: never more than one pending per incident, and a request for an
    /// earlier time (a quick snapshot, the full one) moves it earlier, never later.
    #[test]
    fn a_coalesced_job_runs_at_the_earliest_time_asked_for() {
        let now = t("2026-12-01T10:00:00Z");
        let mut conn = db();
        let evidence = |conn: &mut Connection, at: &str| {
            with_tx(conn, |tx| {
                enqueue(
                    tx,
                    &NewJob {
                        kind: "evidence",
                        incident_id: Some("INC-1"),
                        payload: &serde_json::Value::Null,
                        coalesce: true,
                        run_at: t(at),
                        now,
                    },
                )
                .expect("enqueue")
            })
        };
        evidence(&mut conn, "2026-12-01T10:05:00Z");
        evidence(&mut conn, "2026-12-01T10:01:00Z");
        evidence(&mut conn, "2026-12-01T10:10:00Z");
        let pending: Vec<i64> = conn
            .prepare("SELECT run_at FROM jobs WHERE state = 'pending'")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(pending, [to_micros(t("2026-12-01T10:01:00Z"))]);
    }

    #[test]
    fn running_jobs_with_nothing_queued_behind_them_run_again() {
        let now = t("2026-12-01T10:00:00Z");
        let mut conn = db();
        render(&mut conn, now);
        with_tx(&mut conn, |tx| {
            enqueue(
                tx,
                &NewJob {
                    kind: "slack",
                    incident_id: Some("INC-1"),
                    payload: &serde_json::json!({"n": 1}),
                    coalesce: false,
                    run_at: now,
                    now,
                },
            )
            .expect("enqueue");
            enqueue(
                tx,
                &NewJob {
                    kind: "slack",
                    incident_id: Some("INC-1"),
                    payload: &serde_json::json!({"n": 2}),
                    coalesce: false,
                    run_at: now,
                    now,
                },
            )
            .expect("enqueue");
        });
        with_tx(&mut conn, |tx| {
            claim(tx, "render", now, "me", now + Duration::minutes(1))
                .expect("claim")
                .expect("due");
            claim(tx, "slack", now, "me", now + Duration::minutes(1))
                .expect("claim")
                .expect("due");
        });
        let recovered = requeue_running(&mut conn, now).expect("recovers");
        assert_eq!(
            recovered,
            Recovered {
                requeued: 2,
                superseded: 0
            }
        );
        assert!(states(&conn).iter().all(|(_, s)| s == "pending"));
    }

    /// The same conflict without a crash: a coalesced job failing (to be retried) while its
    /// successor is pending used to hit the unique index, so its result was never recorded
    /// and it stayed 'running' until the next start.
    #[test]
    fn a_coalesced_job_that_fails_while_its_successor_is_pending_is_superseded() {
        let now = t("2026-12-01T10:00:00Z");
        let mut conn = db();
        render(&mut conn, now);
        let first = with_tx(&mut conn, |tx| {
            claim(tx, "render", now, "me", now + Duration::minutes(1)).expect("claim")
        })
        .expect("due")
        .id;
        render(&mut conn, now);
        with_tx(&mut conn, |tx| {
            fail(
                tx,
                first,
                "disk full",
                Some(Duration::seconds(5)),
                None,
                now,
            )
            .expect("recorded")
        });
        assert_eq!(
            states(&conn),
            vec![(first, "done".into()), (first + 1, "pending".into())]
        );
        let error = status(&conn, first)
            .expect("status")
            .expect("row")
            .last_error;
        assert!(error.expect("error kept").contains("superseded by job"));
        // Without a successor the failure is retried as before.
        let second = with_tx(&mut conn, |tx| {
            claim(tx, "render", now, "me", now + Duration::minutes(1)).expect("claim")
        })
        .expect("due")
        .id;
        with_tx(&mut conn, |tx| {
            fail(
                tx,
                second,
                "disk full",
                Some(Duration::seconds(5)),
                None,
                now,
            )
            .expect("recorded")
        });
        assert_eq!(
            status(&conn, second).expect("status").expect("row").state,
            "pending"
        );
    }
}
