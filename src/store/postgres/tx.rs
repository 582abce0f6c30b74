//! The PostgreSQL backend's statements: the correlator's [`Repo`] and the store's [`Tx`] over a
//! `postgres::Transaction` ([`PgTx`]), and its [`Reads`] ([`PgReads`]). Every statement is the
//! port of its twin in `store/sqlite/mod.rs` and `store/sqlite/jobs.rs`, with the same meaning
//! over the same schema; where PostgreSQL differs:
//!
//! - `IS` → `IS NOT DISTINCT FROM`, `min/max(a, b)` → `LEAST/GREATEST`, `json_each` → `= ANY`;
//! - ids come from `RETURNING id`;
//! - `incidents.seq` is `max(seq) + 1` under a transaction-level advisory lock
//!   ([`SEQ_LOCK_NAME`], taken when an incident id is allocated and again before an incident is
//!   inserted): incident creation is serialized across replicas (as the per-year counter row of
//!   `incident_sequences` already serializes it), so `seq` stays dense and in creation order,
//!   exactly as SQLite numbers it, without a schema change;
//! - an existing incident is updated with `UPDATE` (not an upsert that would also check a
//!   proposed `seq` against other replicas' uncommitted rows);
//! - a coalesced job first tries to join the pending one with `UPDATE`, so an absorbed job does
//!   not use up an identity value (job ids then follow SQLite's);
//! - claiming a job locks its row `FOR UPDATE SKIP LOCKED`: two replicas never claim one job.
//!
//! In a write transaction, [`Conn`] also carries what the transaction holds and postpones
//! (`pending.rs`): `touch`, `count` and `record_notification` are postponed, `seen` answered
//! from memory when it can be, and every other statement first sends what is postponed.
//!
//! Transactions run at READ COMMITTED: correlation is serialized by [`Tx::lock`]
//! (`pg_advisory_xact_lock` on each correlation key), and every other write is a single-row
//! upsert or update.

use std::collections::HashMap;

use chrono::{Datelike, Duration};
use postgres::types::ToSql;
use postgres::{Row, Statement};

use crate::alertmanager::ValidNotification;
use crate::incident::*;
use crate::store::report_cache::{BlockReads, BlockRow};
use crate::store::{
    IncidentFilter, Job, JobStatus, NewJob, Reads, Related, Search, StoreError, StoredDraft, Tx,
    SEARCH_WALK,
};
use crate::store::{ListFilter, Page, ReportCache, RELATED_WALK};
use crate::time::{from_micros, to_micros};

use super::keys::Claiming;
use super::pending::{Notification, Pending};
use super::statements::{prepared, StmtCache};

mod slack;

/// The advisory-lock name under which incidents are numbered (`incidents.seq`, and the
/// per-year counter of their ids). Not a correlation key: those never contain `/seq:`
/// preceded by this prefix.
pub const SEQ_LOCK_NAME: &str = "incidentd/seq: incident numbering";

fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(to_micros)
}

fn opt_time(us: Option<i64>) -> Option<Timestamp> {
    us.map(from_micros)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn bad_column(what: &str, value: &str) -> StoreError {
    StoreError::Database {
        message: format!("unknown {what} {value:?}"),
        transient: false,
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A transaction and its session's prepared statements: runs SQL text as cached statements.
/// In a write transaction, also what the transaction holds and postpones ([`Pending`]): every
/// statement first sends the postponed writes it could see, except those that only take a
/// lock or read `seen` (the `*_keeping` methods).
pub struct Conn<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
    stmts: &'a mut StmtCache,
    pending: Option<&'a mut Pending>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a, 'c> Conn<'a, 'c> {
    /// For reads.
    pub fn new(tx: &'a mut postgres::Transaction<'c>, stmts: &'a mut StmtCache) -> Self {
        Conn {
            tx,
            stmts,
            pending: None,
        }
    }

    /// For one operation of a write transaction.
    pub fn for_op(
        tx: &'a mut postgres::Transaction<'c>,
        stmts: &'a mut StmtCache,
        pending: &'a mut Pending,
    ) -> Self {
        Conn {
            tx,
            stmts,
            pending: Some(pending),
        }
    }

    fn prepare(&mut self, sql: &str, keeps: bool) -> Result<Statement> {
        if let Some(p) = self.pending.as_deref_mut() {
            p.before(self.tx, self.stmts, keeps)?;
        }
        Ok(prepared(self.tx, self.stmts, sql)?)
    }

    fn query(&mut self, sql: &str, params: Params) -> Result<Vec<Row>> {
        let s = self.prepare(sql, false)?;
        Ok(self.tx.query(&s, params)?)
    }

    fn query_opt(&mut self, sql: &str, params: Params) -> Result<Option<Row>> {
        let s = self.prepare(sql, false)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    fn query_one(&mut self, sql: &str, params: Params) -> Result<Row> {
        let s = self.prepare(sql, false)?;
        Ok(self.tx.query_one(&s, params)?)
    }

    fn execute(&mut self, sql: &str, params: Params) -> Result<u64> {
        let s = self.prepare(sql, false)?;
        Ok(self.tx.execute(&s, params)?)
    }

    /// A statement that only reads `seen` or takes a lock: postponed writes stay postponed.
    fn query_keeping(&mut self, sql: &str, params: Params) -> Result<Vec<Row>> {
        let s = self.prepare(sql, true)?;
        Ok(self.tx.query(&s, params)?)
    }

    fn query_opt_keeping(&mut self, sql: &str, params: Params) -> Result<Option<Row>> {
        let s = self.prepare(sql, true)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    fn query_one_keeping(&mut self, sql: &str, params: Params) -> Result<Row> {
        let s = self.prepare(sql, true)?;
        Ok(self.tx.query_one(&s, params)?)
    }

    fn execute_keeping(&mut self, sql: &str, params: Params) -> Result<u64> {
        let s = self.prepare(sql, true)?;
        Ok(self.tx.execute(&s, params)?)
    }
}

const OCCURRENCE_COLUMNS: &str = "fingerprint, starts_at, status, ends_at, alertname, labels, \
     annotations, generator_url, group_key, first_seen_at, last_seen_at, resolved_by, incident_id";

fn occurrence_from_row(r: &Row) -> Result<(Occurrence, String)> {
    let status: String = r.try_get(2)?;
    let labels: String = r.try_get(5)?;
    let annotations: String = r.try_get(6)?;
    Ok((
        Occurrence {
            fingerprint: r.try_get(0)?,
            starts_at: from_micros(r.try_get(1)?),
            status: AlertStatus::parse(&status)
                .ok_or_else(|| bad_column("alert status", &status))?,
            ends_at: opt_time(r.try_get(3)?),
            alertname: r.try_get(4)?,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            annotations: serde_json::from_str(&annotations).unwrap_or_default(),
            generator_url: r.try_get(7)?,
            group_key: r.try_get(8)?,
            first_seen_at: from_micros(r.try_get(9)?),
            last_seen_at: from_micros(r.try_get(10)?),
            resolved_by: r.try_get(11)?,
        },
        r.try_get(12)?,
    ))
}

const INCIDENT_COLUMNS: &str = "id, key, title, status, severity, service, impact_start, \
     impact_start_method, fired_at, detected_at, acknowledged_at, acknowledged_by, resolved_at, \
     resolved_by, reopen_count, received, duplicate, stale, version";

fn incident_from_row(r: &Row) -> Result<Incident> {
    let status: String = r.try_get(3)?;
    let method: String = r.try_get(7)?;
    Ok(Incident {
        id: r.try_get(0)?,
        key: r.try_get(1)?,
        title: r.try_get(2)?,
        status: Status::parse(&status).ok_or_else(|| bad_column("status", &status))?,
        severity: r.try_get(4)?,
        service: r.try_get(5)?,
        impact_start: opt_time(r.try_get(6)?),
        impact_start_method: ImpactMethod::parse(&method)
            .ok_or_else(|| bad_column("impact start method", &method))?,
        fired_at: from_micros(r.try_get(8)?),
        detected_at: from_micros(r.try_get(9)?),
        acknowledged_at: opt_time(r.try_get(10)?),
        acknowledged_by: r.try_get(11)?,
        resolved_at: opt_time(r.try_get(12)?),
        resolved_by: r.try_get(13)?,
        reopen_count: r.try_get::<_, i64>(14)? as u32,
        notifications: NotificationCounts {
            received: r.try_get::<_, i64>(15)? as u64,
            duplicate: r.try_get::<_, i64>(16)? as u64,
            stale: r.try_get::<_, i64>(17)? as u64,
        },
        version: r.try_get::<_, i64>(18)? as u64,
        alerts: Vec::new(),
        timeline: Vec::new(),
    })
}

fn event_from_row(r: &Row) -> Result<TimelineEvent> {
    let kind: String = r.try_get(1)?;
    Ok(TimelineEvent {
        at: from_micros(r.try_get(0)?),
        kind: EventKind::parse(&kind).ok_or_else(|| bad_column("event kind", &kind))?,
        actor: r.try_get(2)?,
        text: r.try_get(3)?,
    })
}

fn incident_by_id(c: &mut Conn<'_, '_>, id: &str) -> Result<Option<Incident>> {
    c.query_opt(
        &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"),
        &[&id],
    )?
    .map(|r| incident_from_row(&r))
    .transpose()
}

fn members(c: &mut Conn<'_, '_>, id: &str) -> Result<Vec<Occurrence>> {
    c.query(
        &format!(
            "SELECT {OCCURRENCE_COLUMNS} FROM occurrences WHERE incident_id = $1 \
             ORDER BY starts_at, fingerprint"
        ),
        &[&id],
    )?
    .iter()
    .map(|r| occurrence_from_row(r).map(|(o, _)| o))
    .collect()
}

/// The timeline: all of it, or only the rows a person wrote (`human`) or only derived ones.
fn timeline(c: &mut Conn<'_, '_>, id: &str, human: Option<bool>) -> Result<Vec<TimelineEvent>> {
    let rows = match human {
        None => c.query(
            "SELECT at, kind, actor, text FROM timeline WHERE incident_id = $1 ORDER BY at, id",
            &[&id],
        )?,
        Some(h) => c.query(
            "SELECT at, kind, actor, text FROM timeline WHERE incident_id = $1 AND human = $2 \
             ORDER BY at, id",
            &[&id, &h],
        )?,
    };
    rows.iter().map(event_from_row).collect()
}

/// An incident with its alerts and its whole stored timeline.
fn full_incident(c: &mut Conn<'_, '_>, id: &str) -> Result<Option<Incident>> {
    let Some(mut incident) = incident_by_id(c, id)? else {
        return Ok(None);
    };
    incident.alerts = members(c, id)?;
    incident.timeline = timeline(c, id, None)?;
    Ok(Some(incident))
}

/// The correlator's view of the database inside one write transaction, and the store's
/// writes. Made by the engine (`db.rs`) for each operation of a batch.
pub struct PgTx<'a, 'c> {
    c: Conn<'a, 'c>,
    pub(super) now: Timestamp,
    /// Whether a busy advisory lock is waited for: only by the first operation of a batch,
    /// which holds nothing yet. Later ones only try, so that two batches never wait for each
    /// other's locks (a deadlock): a busy lock defers the operation to the next transaction
    /// ([`PgTx::blocked`]).
    pub(super) may_wait: bool,
    /// A lock was busy (or claimed by another writer) and not waited for: the operation is to
    /// be run again. The lock's name.
    pub(super) blocked: Option<String>,
    /// Which writer of this replica holds or awaits each lock (`keys.rs`): a lock another
    /// writer claims is not asked for, the operation is handed to that writer instead.
    claims: Option<&'a dyn Claiming>,
}

impl<'a, 'c> PgTx<'a, 'c> {
    pub(super) fn new(c: Conn<'a, 'c>, may_wait: bool, claims: Option<&'a dyn Claiming>) -> Self {
        PgTx {
            c,
            now: chrono::Utc::now(),
            may_wait,
            blocked: None,
            claims,
        }
    }

    fn lock_names<S: AsRef<str>>(&mut self, names: &[S]) -> Result<()> {
        for name in names {
            let name = name.as_ref();
            if self.c.pending.as_deref().is_some_and(|p| p.holds(name)) {
                continue;
            }
            let claims = self.claims;
            let got = if claims.is_some_and(|c| c.others_claim(name)) {
                false
            } else if self.may_wait && claims.is_none_or(|c| c.claim(name)) {
                self.c.execute_keeping(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&name],
                )?;
                true
            } else {
                let got: bool = self
                    .c
                    .query_one_keeping(
                        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                        &[&name],
                    )?
                    .try_get(0)?;
                if let (true, Some(c)) = (got, claims) {
                    c.claim(name);
                }
                got
            };
            if !got {
                self.blocked = Some(name.to_string());
                return Err(StoreError::Database {
                    message: "a correlation key is locked by another transaction; \
                              retried in the next one"
                        .into(),
                    transient: true,
                });
            }
            if let Some(p) = self.c.pending.as_deref_mut() {
                p.took(name);
            }
        }
        Ok(())
    }

    fn pending(&mut self) -> Option<&mut Pending> {
        self.c.pending.as_deref_mut()
    }

    /// Read what `seen` will be asked about the alerts of a notification (after its keys are
    /// locked), in one statement rather than one per alert; remembered while postponing.
    fn read_seen(&mut self, alerts: &[crate::incident::ValidAlert]) -> Result<()> {
        let Some(p) = self.pending() else {
            return Ok(());
        };
        let mut keys: Vec<(String, i64)> = alerts
            .iter()
            .map(|a| (a.fingerprint.clone(), to_micros(a.starts_at)))
            .filter(|k| p.seen(k).is_none())
            .collect();
        keys.sort();
        keys.dedup();
        if keys.len() < 2 {
            return Ok(()); // as cheap to read when asked
        }
        let (fps, starts): (Vec<&str>, Vec<i64>) =
            keys.iter().map(|(f, s)| (f.as_str(), *s)).unzip();
        let rows = self.c.query_keeping(
            "SELECT o.fingerprint, o.starts_at, o.incident_id, o.status, o.ends_at, \
               o.first_seen_at, o.annotations \
             FROM unnest($1::text[], $2::bigint[]) AS k(fingerprint, starts_at) \
             JOIN occurrences o ON o.fingerprint = k.fingerprint AND o.starts_at = k.starts_at",
            &[&fps, &starts],
        )?;
        let mut found = HashMap::new();
        for r in &rows {
            let status: String = r.try_get(3)?;
            let annotations: String = r.try_get(6)?;
            let key: (String, i64) = (r.try_get(0)?, r.try_get(1)?);
            found.insert(
                key,
                Seen {
                    incident_id: r.try_get(2)?,
                    status: AlertStatus::parse(&status)
                        .ok_or_else(|| bad_column("alert status", &status))?,
                    ends_at: opt_time(r.try_get(4)?),
                    first_seen_at: from_micros(r.try_get(5)?),
                    annotations: serde_json::from_str(&annotations).unwrap_or_default(),
                },
            );
        }
        if let Some(p) = self.pending() {
            for key in keys {
                let seen = found.remove(&key);
                p.remember(key, seen);
            }
        }
        Ok(())
    }
}

impl Repo for PgTx<'_, '_> {
    type Error = StoreError;

    fn occurrence(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<(Occurrence, String)>> {
        self.c
            .query_opt(
                &format!(
                    "SELECT {OCCURRENCE_COLUMNS} FROM occurrences \
                     WHERE fingerprint = $1 AND starts_at = $2"
                ),
                &[&fingerprint, &to_micros(starts_at)],
            )?
            .map(|r| occurrence_from_row(&r))
            .transpose()
    }

    fn candidates(
        &mut self,
        key: &str,
        start: Timestamp,
        end: Option<Timestamp>,
        window: Duration,
    ) -> Result<Vec<String>> {
        let reach_end = end.map_or(i64::MAX, |e| {
            to_micros(e).saturating_add(window.num_microseconds().unwrap_or(i64::MAX))
        });
        let reach_start =
            to_micros(start).saturating_sub(window.num_microseconds().unwrap_or(i64::MAX));
        let rows = self.c.query(
            "SELECT id FROM incidents WHERE key = $1 AND fired_at <= $2 \
             AND (span_end IS NULL OR span_end >= $3) ORDER BY seq",
            &[&key, &reach_end, &reach_start],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    fn load(&mut self, id: &str) -> Result<Option<Incident>> {
        let Some(mut incident) = incident_by_id(&mut self.c, id)? else {
            return Ok(None);
        };
        incident.alerts = members(&mut self.c, id)?;
        incident.timeline = timeline(&mut self.c, id, Some(true))?;
        Ok(Some(incident))
    }

    fn history(&mut self, id: &str) -> Result<Vec<TimelineEvent>> {
        timeline(&mut self.c, id, Some(false))
    }

    fn next_id(&mut self, now: Timestamp) -> Result<String> {
        self.lock_names(&[SEQ_LOCK_NAME])?;
        let n: i64 = self
            .c
            .query_one(
                "INSERT INTO incident_sequences (year, last) VALUES ($1, 1) \
                 ON CONFLICT (year) DO UPDATE SET last = incident_sequences.last + 1 \
                 RETURNING last",
                &[&i64::from(now.year())],
            )?
            .try_get(0)?;
        Ok(format!("INC-{}-{:04}", now.year(), n))
    }

    fn save(
        &mut self,
        incident: &Incident,
        members: &[&Occurrence],
        appended: &[TimelineEvent],
    ) -> Result<()> {
        let span_end = if incident.alerts.is_empty() {
            None
        } else {
            crate::incident::lifecycle::span(&incident.alerts).1
        };
        let n = &incident.notifications;
        let (impact_start, acknowledged_at, resolved_at, span_end) = (
            opt_micros(incident.impact_start),
            opt_micros(incident.acknowledged_at),
            opt_micros(incident.resolved_at),
            opt_micros(span_end),
        );
        let (fired_at, detected_at, now) = (
            to_micros(incident.fired_at),
            to_micros(incident.detected_at),
            to_micros(self.now),
        );
        let (reopen_count, received, duplicate, stale, version) = (
            i64::from(incident.reopen_count),
            n.received as i64,
            n.duplicate as i64,
            n.stale as i64,
            incident.version as i64,
        );
        let params: [&(dyn ToSql + Sync); 21] = [
            &incident.id,
            &incident.key,
            &incident.title,
            &incident.status.as_str(),
            &incident.severity,
            &incident.service,
            &impact_start,
            &incident.impact_start_method.as_str(),
            &fired_at,
            &detected_at,
            &acknowledged_at,
            &incident.acknowledged_by,
            &resolved_at,
            &incident.resolved_by,
            &span_end,
            &reopen_count,
            &received,
            &duplicate,
            &stale,
            &version,
            &now,
        ];
        let updated = self.c.execute(
            "UPDATE incidents SET key = $2, title = $3, status = $4, severity = $5, \
               service = $6, impact_start = $7, impact_start_method = $8, fired_at = $9, \
               detected_at = $10, acknowledged_at = $11, acknowledged_by = $12, \
               resolved_at = $13, resolved_by = $14, span_end = $15, reopen_count = $16, \
               received = $17, duplicate = $18, stale = $19, version = $20, updated_at = $21 \
             WHERE id = $1",
            &params,
        )?;
        if updated == 0 {
            // A new incident: numbered under the lock its id was allocated under.
            self.lock_names(&[SEQ_LOCK_NAME])?;
            self.c.execute(
                "INSERT INTO incidents (id, seq, key, title, status, severity, service, \
                   impact_start, impact_start_method, fired_at, detected_at, acknowledged_at, \
                   acknowledged_by, resolved_at, resolved_by, span_end, reopen_count, received, \
                   duplicate, stale, version, updated_at) \
                 VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM incidents), $2, $3, $4, $5, \
                   $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
                &params,
            )?;
        }
        const UPSERT: &str =
            "INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, ends_at, \
               alertname, labels, annotations, generator_url, group_key, first_seen_at, \
               last_seen_at, resolved_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (fingerprint, starts_at) DO UPDATE SET \
               incident_id = EXCLUDED.incident_id, status = EXCLUDED.status, \
               ends_at = EXCLUDED.ends_at, annotations = EXCLUDED.annotations, \
               first_seen_at = EXCLUDED.first_seen_at, last_seen_at = EXCLUDED.last_seen_at, \
               resolved_by = EXCLUDED.resolved_by";
        for o in members {
            self.c.execute(
                UPSERT,
                &[
                    &o.fingerprint,
                    &to_micros(o.starts_at),
                    &incident.id,
                    &o.status.as_str(),
                    &opt_micros(o.ends_at),
                    &o.alertname,
                    &json(&o.labels),
                    &json(&o.annotations),
                    &o.generator_url,
                    &o.group_key,
                    &to_micros(o.first_seen_at),
                    &to_micros(o.last_seen_at),
                    &o.resolved_by,
                ],
            )?;
        }
        // The reports' tally of its alerts, once per save that changed any (as SQLite's).
        if !members.is_empty() {
            self.c.execute(
                "UPDATE incidents SET alert_tally = incidentd_alert_tally($1) WHERE id = $1",
                &[&incident.id],
            )?;
        }
        // Human rows are rewritten as given; derived rows are history and only ever appended.
        self.c.execute(
            "DELETE FROM timeline WHERE incident_id = $1 AND human",
            &[&incident.id],
        )?;
        if incident.timeline.is_empty() && appended.is_empty() {
            return Ok(());
        }
        const INSERT: &str = "INSERT INTO timeline (incident_id, at, kind, actor, text, human) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        for (events, human) in [(&incident.timeline[..], true), (appended, false)] {
            for e in events {
                self.c.execute(
                    INSERT,
                    &[
                        &incident.id,
                        &to_micros(e.at),
                        &e.kind.as_str(),
                        &e.actor,
                        &e.text,
                        &human,
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn seen(&mut self, fingerprint: &str, starts_at: Timestamp) -> Result<Option<Seen>> {
        let key = (fingerprint.to_string(), to_micros(starts_at));
        if let Some(known) = self.pending().and_then(|p| p.seen(&key)) {
            return Ok(known);
        }
        let read = match self.c.query_opt_keeping(
            "SELECT incident_id, status, ends_at, first_seen_at, annotations FROM occurrences \
             WHERE fingerprint = $1 AND starts_at = $2",
            &[&fingerprint, &key.1],
        )? {
            None => None,
            Some(r) => {
                let status: String = r.try_get(1)?;
                let annotations: String = r.try_get(4)?;
                Some(Seen {
                    incident_id: r.try_get(0)?,
                    status: AlertStatus::parse(&status)
                        .ok_or_else(|| bad_column("alert status", &status))?,
                    ends_at: opt_time(r.try_get(2)?),
                    first_seen_at: from_micros(r.try_get(3)?),
                    annotations: serde_json::from_str(&annotations).unwrap_or_default(),
                })
            }
        };
        Ok(match self.pending() {
            Some(p) => p.remember(key, read),
            None => read,
        })
    }

    fn touch(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
        at: Timestamp,
        annotations: Option<&LabelSet>,
    ) -> Result<()> {
        let key = (fingerprint.to_string(), to_micros(starts_at));
        if self
            .pending()
            .is_some_and(|p| p.touch(key.clone(), at, annotations, json))
        {
            return Ok(());
        }
        let (fp, start, at) = (fingerprint, key.1, to_micros(at));
        match annotations {
            None => self.c.execute(
                "UPDATE occurrences SET first_seen_at = LEAST(first_seen_at, $3), \
                 last_seen_at = GREATEST(last_seen_at, $3) \
                 WHERE fingerprint = $1 AND starts_at = $2",
                &[&fp, &start, &at],
            )?,
            Some(a) => self.c.execute(
                "UPDATE occurrences SET first_seen_at = LEAST(first_seen_at, $3), \
                 last_seen_at = GREATEST(last_seen_at, $3), annotations = $4 \
                 WHERE fingerprint = $1 AND starts_at = $2",
                &[&fp, &start, &at, &json(a)],
            )?,
        };
        Ok(())
    }

    fn count(&mut self, incident_id: &str, counts: NotificationCounts) -> Result<()> {
        if self.pending().is_some_and(|p| p.count(incident_id, counts)) {
            return Ok(());
        }
        self.c.execute(
            "UPDATE incidents SET received = received + $2, duplicate = duplicate + $3, \
             stale = stale + $4 WHERE id = $1",
            &[
                &incident_id,
                &(counts.received as i64),
                &(counts.duplicate as i64),
                &(counts.stale as i64),
            ],
        )?;
        Ok(())
    }
}

fn job_from_row(r: &Row) -> Result<Job> {
    let payload: String = r.try_get(3)?;
    Ok(Job {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        incident_id: r.try_get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        attempts: r.try_get::<_, i64>(4)? as u32,
        run_at: from_micros(r.try_get(5)?),
    })
}

impl Tx for PgTx<'_, '_> {
    fn set_now(&mut self, now: Timestamp) {
        self.now = now;
    }

    fn record_notification(
        &mut self,
        n: &ValidNotification,
        hash: &[u8],
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<()> {
        let (at, alerts) = (to_micros(received_at), n.alerts.len() as i64);
        if let Some(p) = self.pending().filter(|p| p.defer) {
            let row = Notification {
                hash: hash.to_vec(),
                received_at: at,
                receiver: n.receiver.clone(),
                status: n.status.as_str().to_string(),
                group_key: n.group_key.clone(),
                alerts,
            };
            if p.record(row, body) {
                return self.read_seen(&n.alerts);
            }
        }
        // One round trip in the usual cases: the body is stored already, or this stores it.
        // (The statement's snapshot misses a row another replica commits meanwhile: then the
        // insert of the body does nothing and neither does the notification's; see below.)
        let recorded = self.c.query_opt(
            "WITH known AS (SELECT id FROM payloads WHERE hash = $1), \
             stored AS (INSERT INTO payloads (hash, body) SELECT $1::bytea, $2::bytea \
               WHERE NOT EXISTS (SELECT 1 FROM known) ON CONFLICT (hash) DO NOTHING RETURNING id), \
             payload AS (SELECT id FROM known UNION ALL SELECT id FROM stored) \
             INSERT INTO notifications (received_at, receiver, status, group_key, alerts, \
               payload_id) \
             SELECT $3::bigint, $4::text, $5::text, $6::text, $7::bigint, id FROM payload LIMIT 1 \
             RETURNING payload_id",
            &[
                &hash,
                &body,
                &at,
                &n.receiver,
                &n.status.as_str(),
                &n.group_key,
                &alerts,
            ],
        )?;
        if recorded.is_some() {
            return Ok(());
        }
        // Another replica stored the same body after this statement's snapshot was taken (the
        // insert waited for it, then did nothing): a new statement sees its row.
        let payload_id: i64 = self
            .c
            .query_one("SELECT id FROM payloads WHERE hash = $1", &[&hash])?
            .try_get(0)?;
        self.c.execute(
            "INSERT INTO notifications (received_at, receiver, status, group_key, alerts, \
             payload_id) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &at,
                &n.receiver,
                &n.status.as_str(),
                &n.group_key,
                &alerts,
                &payload_id,
            ],
        )?;
        Ok(())
    }

    fn enqueue(&mut self, job: &NewJob) -> Result<i64> {
        let (run_at, now) = (to_micros(job.run_at), to_micros(job.now));
        if job.coalesce {
            // Join the pending job without touching the identity sequence (an upsert would).
            let joined = self.c.query_opt(
                "UPDATE jobs SET run_at = LEAST(run_at, $3) \
                 WHERE kind = $1 AND incident_id = $2 AND \"coalesce\" AND state = 'pending' \
                 RETURNING id",
                &[&job.kind, &job.incident_id, &run_at],
            )?;
            if let Some(r) = joined {
                return Ok(r.try_get(0)?);
            }
        }
        Ok(self
            .c
            .query_one(
                "INSERT INTO jobs (kind, incident_id, payload, \"coalesce\", state, run_at, \
                   created_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6) \
                 ON CONFLICT (kind, incident_id) WHERE \"coalesce\" AND state = 'pending' \
                 DO UPDATE SET run_at = LEAST(jobs.run_at, EXCLUDED.run_at) RETURNING id",
                &[
                    &job.kind,
                    &job.incident_id,
                    &job.payload.to_string(),
                    &job.coalesce,
                    &run_at,
                    &now,
                ],
            )?
            .try_get(0)?)
    }

    fn lock(&mut self, names: &[String]) -> Result<()> {
        self.lock_names(names)
    }

    fn claim(
        &mut self,
        kind: &str,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
    ) -> Result<Option<Job>> {
        let row = self.c.query_opt(
            "SELECT id, kind, incident_id, payload, attempts, run_at FROM jobs j \
             WHERE kind = $2 AND ((state = 'pending' AND run_at <= $1) \
                   OR (state = 'running' AND lease_until < $1)) \
               AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.kind = j.kind \
                   AND e.incident_id IS NOT DISTINCT FROM j.incident_id AND e.id < j.id \
                   AND e.state IN ('pending', 'running')) \
             ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&to_micros(now), &kind],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        self.c.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, holder = $2, \
             lease_until = $3 WHERE id = $1",
            &[&job.id, &holder, &to_micros(lease_until)],
        )?;
        Ok(Some(job))
    }

    fn renew_job(&mut self, id: i64, holder: &str, lease_until: Timestamp) -> Result<bool> {
        let n = self.c.execute(
            "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND holder = $2 AND state = 'running'",
            &[&id, &holder, &to_micros(lease_until)],
        )?;
        Ok(n > 0)
    }

    fn acquire_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        let n = self.c.execute(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE leases.holder = EXCLUDED.holder OR leases.until < $3",
            &[&name, &holder, &to_micros(now), &to_micros(until)],
        )?;
        Ok(n > 0)
    }

    fn release_lease(&mut self, name: &str, holder: &str) -> Result<()> {
        self.c.execute(
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )?;
        Ok(())
    }

    fn secret(&mut self, name: &str, fresh: &str) -> Result<String> {
        self.c.execute(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &fresh],
        )?;
        Ok(self
            .c
            .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])?
            .try_get(0)?)
    }

    fn put_draft(&mut self, d: &StoredDraft) -> Result<()> {
        self.c.execute(
            "INSERT INTO drafts (incident_id, markdown, sha256, rendered_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (incident_id) DO UPDATE SET \
             markdown = EXCLUDED.markdown, sha256 = EXCLUDED.sha256, \
             rendered_at = EXCLUDED.rendered_at",
            &[
                &d.incident_id,
                &d.markdown,
                &d.sha256,
                &to_micros(d.rendered_at),
            ],
        )?;
        Ok(())
    }

    fn complete(&mut self, id: i64, now: Timestamp) -> Result<()> {
        self.c.execute(
            "UPDATE jobs SET state = 'done', done_at = $2, last_error = NULL WHERE id = $1",
            &[&id, &to_micros(now)],
        )?;
        Ok(())
    }

    fn fail(
        &mut self,
        id: i64,
        error: &str,
        retry_in: Option<Duration>,
        payload: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<()> {
        if let Some(p) = payload {
            self.c.execute(
                "UPDATE jobs SET payload = $2 WHERE id = $1",
                &[&id, &p.to_string()],
            )?;
        }
        match retry_in {
            Some(delay) => {
                // See sqlite/jobs.rs: a coalesced job with a pending sibling is superseded.
                let sibling = self.c.query_opt(
                    "SELECT s.id FROM jobs j JOIN jobs s ON s.kind = j.kind \
                       AND s.incident_id IS NOT DISTINCT FROM j.incident_id \
                     WHERE j.id = $1 AND j.\"coalesce\" AND s.\"coalesce\" \
                       AND s.state = 'pending' AND s.id <> j.id LIMIT 1",
                    &[&id],
                )?;
                if let Some(by) = sibling {
                    let by: i64 = by.try_get(0)?;
                    self.c.execute(
                        "UPDATE jobs SET state = 'done', done_at = $2, last_error = $3 \
                         WHERE id = $1",
                        &[
                            &id,
                            &to_micros(now),
                            &format!("{error} (superseded by job {by}, which redoes this work)"),
                        ],
                    )?;
                } else {
                    self.c.execute(
                        "UPDATE jobs SET state = 'pending', run_at = $2, last_error = $3 \
                         WHERE id = $1",
                        &[&id, &to_micros(now + delay), &error],
                    )?;
                }
            }
            None => {
                self.c.execute(
                    "UPDATE jobs SET state = 'failed', done_at = $2, last_error = $3 WHERE id = $1",
                    &[&id, &to_micros(now), &error],
                )?;
            }
        }
        Ok(())
    }

    fn set_impact_start(
        &mut self,
        incident_id: &str,
        at: Timestamp,
        method: ImpactMethod,
        now: Timestamp,
    ) -> Result<bool> {
        let changed = self.c.execute(
            "UPDATE incidents SET impact_start = $2, impact_start_method = $3, \
               version = version + 1, updated_at = $4 \
             WHERE id = $1 AND fired_at >= $2 \
               AND (impact_start IS DISTINCT FROM $2 OR impact_start_method IS DISTINCT FROM $3)",
            &[
                &incident_id,
                &to_micros(at),
                &method.as_str(),
                &to_micros(now),
            ],
        )?;
        Ok(changed > 0)
    }

    fn put_evidence(
        &mut self,
        incident_id: &str,
        collected_at: Timestamp,
        body: &serde_json::Value,
        charts: &[(String, String)],
    ) -> Result<()> {
        self.c.execute(
            "INSERT INTO evidence (incident_id, collected_at, body) VALUES ($1, $2, $3) \
             ON CONFLICT (incident_id) DO UPDATE SET collected_at = EXCLUDED.collected_at, \
             body = EXCLUDED.body",
            &[&incident_id, &to_micros(collected_at), &body.to_string()],
        )?;
        self.c
            .execute("DELETE FROM charts WHERE incident_id = $1", &[&incident_id])?;
        for (name, svg) in charts {
            self.c.execute(
                "INSERT INTO charts (incident_id, name, svg) VALUES ($1, $2, $3)",
                &[&incident_id, name, svg],
            )?;
        }
        Ok(())
    }

    fn set_slack_thread(&mut self, incident_id: &str, channel: &str, ts: &str) -> Result<()> {
        self.c.execute(
            "INSERT INTO slack_threads (incident_id, channel, ts) VALUES ($1, $2, $3) \
             ON CONFLICT (incident_id) DO UPDATE SET channel = EXCLUDED.channel, ts = EXCLUDED.ts",
            &[&incident_id, &channel, &ts],
        )?;
        Ok(())
    }

    fn prune_notifications(&mut self, cutoff: Timestamp) -> Result<usize> {
        let n = self.c.execute(
            "DELETE FROM notifications WHERE received_at < $1",
            &[&to_micros(cutoff)],
        )?;
        if n > 0 {
            self.c.execute(
                "DELETE FROM payloads WHERE NOT EXISTS \
                 (SELECT 1 FROM notifications WHERE payload_id = payloads.id)",
                &[],
            )?;
        }
        Ok(n as usize)
    }

    fn prune_jobs(&mut self, cutoff: Timestamp) -> Result<usize> {
        Ok(self.c.execute(
            "DELETE FROM jobs WHERE state IN ('done', 'failed') AND done_at < $1",
            &[&to_micros(cutoff)],
        )? as usize)
    }

    fn prune_incidents(&mut self, cutoff: Timestamp) -> Result<usize> {
        Ok(self.c.execute(
            "DELETE FROM incidents WHERE status = 'resolved' AND resolved_at < $1",
            &[&to_micros(cutoff)],
        )? as usize)
    }
}

/// A query built clause by clause, its arguments numbered as they come.
struct PgQuery {
    sql: String,
    args: Vec<Box<dyn ToSql + Sync>>,
}

impl PgQuery {
    fn new(head: &str) -> PgQuery {
        PgQuery {
            sql: head.to_string(),
            args: Vec::new(),
        }
    }

    /// `clause` with its `?` numbered for `v`.
    fn arg(&mut self, clause: &str, v: impl ToSql + Sync + 'static) {
        self.args.push(Box::new(v));
        self.sql
            .push_str(&clause.replace('?', &format!("${}", self.args.len())));
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(|a| a.as_ref()).collect()
    }

    /// The phase, the page's start and every filter but the search.
    fn filters(&mut self, f: &IncidentFilter, resolved: bool, before_seq: Option<i64>) {
        self.sql.push_str(if resolved {
            "status = 'resolved'"
        } else {
            "status <> 'resolved'"
        });
        if let Some(seq) = before_seq {
            self.arg(" AND seq < ?", seq);
        }
        if let Some(status) = f.status {
            self.arg(" AND status = ?", status.as_str().to_string());
        }
        if let Some(service) = &f.service {
            self.arg(" AND service = ?", service.clone());
        }
        if let Some(severity) = &f.severity {
            self.arg(" AND severity = ?", severity.clone());
        }
        if let Some(t) = f.fired_from {
            self.arg(" AND fired_at >= ?", to_micros(t));
        }
        if let Some(t) = f.fired_until {
            self.arg(" AND fired_at < ?", to_micros(t));
        }
    }

    /// The search's condition: `ILIKE`, as the `pg_trgm` indexes serve it for titles and
    /// alert names. An id prefix is found in the B-tree `incidents_id_search` on `lower(id)`
    /// (a trigram index pays for every common trigram of `INC-2026-…`: 5 ms at 100,000): the
    /// range of the lowered ids starting with the lowered term (ids are ASCII, never
    /// U+10FFFF), then `ILIKE` decides.
    fn matches(&mut self, search: &Search) {
        self.arg(
            "((lower(id) ~>=~ lower(?) AND lower(id) ~<~ (lower(?) || chr(1114111))",
            search.term.clone(),
        );
        self.arg(" AND id ILIKE ? ESCAPE '\\')", search.id_prefix.clone());
        self.arg(" OR title ILIKE ? ESCAPE '\\'", search.contains.clone());
        if search.per_alert {
            self.arg(
                " OR EXISTS (SELECT 1 FROM occurrences o WHERE o.incident_id = incidents.id \
                 AND o.alertname ILIKE ? ESCAPE '\\'))",
                search.contains.clone(),
            );
        } else {
            self.arg(
                " OR alertnames ILIKE ? ESCAPE '\\')",
                search.contains.clone(),
            );
        }
    }
}

/// The store's queries, inside one read-only transaction (so a read of several parts, e.g.
/// a draft's inputs, sees one moment), with the database's [`ReportCache`].
pub struct PgReads<'a, 'c>(pub Conn<'a, 'c>, pub &'a ReportCache);

/// The report cache's reads (`store::report_cache`), from migration 17's `report_blocks` and
/// the index `incidents_report`.
impl BlockReads for Conn<'_, '_> {
    fn versions(&mut self, blocks: std::ops::Range<i64>) -> Result<HashMap<i64, i64>> {
        self.query(
            "SELECT block, sum(version)::bigint FROM report_blocks \
             WHERE block >= $1 AND block < $2 GROUP BY block",
            &[&blocks.start, &blocks.end],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }

    fn block(
        &mut self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(BlockRow<'_>) -> Result<()>,
    ) -> Result<()> {
        for r in self.query(
            "SELECT service, status, fired_at, impact_start, detected_at, acknowledged_at, \
                    resolved_at, reopen_count, alert_tally, seq \
             FROM incidents WHERE fired_at >= $1 AND fired_at < $2 ORDER BY fired_at",
            &[&from, &to],
        )? {
            let status: &str = r.try_get(1)?;
            each(BlockRow {
                service: r.try_get(0)?,
                status: Status::parse(status).ok_or_else(|| bad_column("status", status))?,
                fired_at: r.try_get(2)?,
                times: ResponseTimes {
                    impact_start: opt_time(r.try_get(3)?),
                    detected_at: from_micros(r.try_get(4)?),
                    acknowledged_at: opt_time(r.try_get(5)?),
                    resolved_at: opt_time(r.try_get(6)?),
                },
                reopen_count: r.try_get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
                alert_tally: r.try_get(8)?,
                seq: r.try_get(9)?,
            })?;
        }
        Ok(())
    }

    fn untallied_alerts(
        &mut self,
        q: &crate::store::ReportQuery,
        each: &mut dyn FnMut(Option<&str>, &str, i64, i64),
    ) -> Result<()> {
        for r in self.query(
            "SELECT i.service, o.alertname, count(DISTINCT o.incident_id), count(*) \
             FROM incidents i JOIN occurrences o ON o.incident_id = i.id \
             WHERE i.fired_at >= $1 AND i.fired_at < $2 \
               AND ($3::text IS NULL OR i.service = $3) AND i.alert_tally = '*' \
             GROUP BY i.service, o.alertname",
            &[&to_micros(q.since), &to_micros(q.until), &q.service],
        )? {
            each(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        }
        Ok(())
    }

    fn flapping(&mut self, seq: i64) -> Result<crate::store::FlappingIncident> {
        let r = self.query_one(
            "SELECT id, title, service, severity, status, fired_at, reopen_count \
             FROM incidents WHERE seq = $1",
            &[&seq],
        )?;
        let status: String = r.try_get(4)?;
        Ok(crate::store::FlappingIncident {
            id: r.try_get(0)?,
            title: r.try_get(1)?,
            service: r.try_get(2)?,
            severity: r.try_get(3)?,
            status: Status::parse(&status).ok_or_else(|| bad_column("status", &status))?,
            fired_at: from_micros(r.try_get(5)?),
            reopen_count: r.try_get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
        })
    }
}

impl Reads for PgReads<'_, '_> {
    fn incident(&mut self, id: &str) -> Result<Option<Incident>> {
        full_incident(&mut self.0, id)
    }

    fn evidence(&mut self, incident_id: &str) -> Result<Option<serde_json::Value>> {
        let body: Option<String> = self
            .0
            .query_opt(
                "SELECT body FROM evidence WHERE incident_id = $1",
                &[&incident_id],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// Without a search, or with a term shorter than 3 characters, one query walks `seq`
    /// downwards testing each incident. A longer term first tests the next [`SEARCH_WALK`]
    /// incidents the other filters keep (a term most incidents match fills the page there);
    /// if that does not fill the page, the rest comes from the search indexes of migration 10
    /// (`pg_trgm` GIN on title and alert names, a B-tree for id prefixes, see
    /// [`PgQuery::matches`]) as a bitmap, sorted: the planner is kept from
    /// walking `seq` instead, which it would for a term its statistics call common even when
    /// its matches are all old (an id prefix such as `INC-2026-1`: 118 ms at 100,000).
    fn find_incidents(
        &mut self,
        f: &IncidentFilter,
        resolved: bool,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Incident)>> {
        let search = f.search_query();
        let indexed = search.as_ref().is_some_and(|s| s.indexed.is_some());
        if !indexed {
            let mut q = PgQuery::new(&format!(
                "SELECT {INCIDENT_COLUMNS}, seq FROM incidents WHERE "
            ));
            q.filters(f, resolved, before_seq);
            if let Some(search) = &search {
                q.sql.push_str(" AND ");
                q.matches(search);
            }
            q.arg(" ORDER BY seq DESC LIMIT ?", i64::from(limit));
            return self
                .0
                .query(&q.sql, &q.params())?
                .iter()
                .map(|r| Ok((r.try_get::<_, i64>(19)?, incident_from_row(r)?)))
                .collect();
        }
        let search = search.expect("indexed");
        let mut q = PgQuery::new(&format!("SELECT {INCIDENT_COLUMNS}, seq, "));
        q.matches(&search);
        q.sql.push_str(" FROM incidents WHERE ");
        q.filters(f, resolved, before_seq);
        q.arg(" ORDER BY seq DESC LIMIT ?", i64::from(SEARCH_WALK));
        let walked = self.0.query(&q.sql, &q.params())?;
        let mut found = Vec::new();
        for r in &walked {
            if r.try_get::<_, bool>(20)? {
                found.push((r.try_get::<_, i64>(19)?, incident_from_row(r)?));
                if found.len() >= limit as usize {
                    return Ok(found);
                }
            }
        }
        let last = match walked.last() {
            Some(r) if walked.len() == SEARCH_WALK as usize => r.try_get::<_, i64>(19)?,
            _ => return Ok(found), // every incident the filters keep was tested
        };
        let mut q = PgQuery::new(&format!(
            "SELECT {INCIDENT_COLUMNS}, seq FROM incidents WHERE "
        ));
        q.filters(f, resolved, Some(last));
        q.sql.push_str(" AND ");
        q.matches(&search);
        q.arg(
            " ORDER BY seq DESC LIMIT ?",
            i64::from(limit) - found.len() as i64,
        );
        self.0.execute("SET LOCAL enable_indexscan = off", &[])?;
        self.0.execute("SET LOCAL enable_seqscan = off", &[])?;
        let rest = self.0.query(&q.sql, &q.params());
        self.0
            .execute("SET LOCAL enable_indexscan TO DEFAULT", &[])?;
        self.0.execute("SET LOCAL enable_seqscan TO DEFAULT", &[])?;
        for r in &rest? {
            found.push((r.try_get::<_, i64>(19)?, incident_from_row(r)?));
        }
        Ok(found)
    }

    fn list_incidents(&mut self, f: &ListFilter) -> Result<Page> {
        let before_seq: i64 = match &f.before {
            Some(id) => self
                .0
                .query_opt("SELECT seq FROM incidents WHERE id = $1", &[id])?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(0),
            None => i64::MAX,
        };
        let status = f.status.map(Status::as_str);
        let limit = i64::from(f.limit) + 1;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&before_seq];
        let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE seq < $1");
        if let Some(status) = &status {
            params.push(status);
            sql.push_str(&format!(" AND status = ${}", params.len()));
        }
        if let Some(service) = &f.service {
            params.push(service);
            sql.push_str(&format!(" AND service = ${}", params.len()));
        }
        params.push(&limit);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", params.len()));
        let mut incidents = self
            .0
            .query(&sql, &params)?
            .iter()
            .map(incident_from_row)
            .collect::<Result<Vec<_>>>()?;
        let more = incidents.len() > f.limit as usize;
        incidents.truncate(f.limit as usize);
        let next_before = if more {
            incidents.last().map(|i| i.id.clone())
        } else {
            None
        };
        Ok(Page {
            incidents,
            next_before,
        })
    }

    fn chart(&mut self, incident_id: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .0
            .query_opt(
                "SELECT svg FROM charts WHERE incident_id = $1 AND name = $2",
                &[&incident_id, &name],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn charts(&mut self, incident_id: &str) -> Result<Vec<(String, String)>> {
        self.0
            .query(
                "SELECT name, svg FROM charts WHERE incident_id = $1 ORDER BY name",
                &[&incident_id],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn related_incidents(&mut self, incident: &Incident, limit: u32) -> Result<Vec<Related>> {
        let names: Vec<&str> = incident
            .alerts
            .iter()
            .map(|a| a.alertname.as_str())
            .collect();
        // As SQLite's: the RELATED_WALK incidents just before it tested one by one (OFFSET 0
        // keeps PostgreSQL from hashing every occurrence of a common alert name for the
        // test), then the older ones by key and alert name.
        let Some(before) = self
            .0
            .query_opt("SELECT seq FROM incidents WHERE id = $1", &[&incident.id])?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
        else {
            return Ok(Vec::new());
        };
        let walk = self.0.query_one(
            "SELECT count(*), min(seq) FROM \
             (SELECT seq FROM incidents WHERE seq < $1 ORDER BY seq DESC LIMIT $2) w",
            &[&before, &RELATED_WALK],
        )?;
        let (walked, floor): (i64, Option<i64>) = (walk.try_get(0)?, walk.try_get(1)?);
        let Some(floor) = floor else {
            return Ok(Vec::new());
        };
        let mut found = self
            .0
            .query(
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents i \
                     WHERE i.seq < $1 AND i.seq >= $5 \
                       AND (i.key = $2 OR EXISTS (SELECT 1 FROM occurrences o \
                            WHERE o.incident_id = i.id AND o.alertname = ANY($3) OFFSET 0)) \
                     ORDER BY i.seq DESC LIMIT $4"
                ),
                &[&before, &incident.key, &names, &i64::from(limit), &floor],
            )?
            .iter()
            .map(incident_from_row)
            .collect::<Result<Vec<_>>>()?;
        if found.len() < limit as usize && walked == RELATED_WALK {
            let rest = i64::from(limit) - found.len() as i64;
            for row in self.0.query(
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.seq IN ( \
                         SELECT seq FROM incidents WHERE key = $2 AND seq < $1 \
                         UNION SELECT j.seq FROM occurrences o \
                         JOIN incidents j ON j.id = o.incident_id \
                         WHERE o.alertname = ANY($3) AND j.seq < $1) \
                     ORDER BY i.seq DESC LIMIT $4"
                ),
                &[&floor, &incident.key, &names, &rest],
            )? {
                found.push(incident_from_row(&row)?);
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for other in found {
            let mut shared: Vec<String> = members(&mut self.0, &other.id)?
                .into_iter()
                .map(|o| o.alertname)
                .filter(|n| names.contains(&n.as_str()))
                .collect();
            shared.sort();
            shared.dedup();
            let same_key = other.key == incident.key;
            out.push(Related {
                incident: other,
                same_key,
                shared_alertnames: shared,
            });
        }
        Ok(out)
    }

    fn slack_thread(&mut self, incident_id: &str) -> Result<Option<(String, String)>> {
        self.0
            .query_opt(
                "SELECT channel, ts FROM slack_threads WHERE incident_id = $1",
                &[&incident_id],
            )?
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
    }

    fn slack_deliveries(&mut self, incident_id: &str) -> Result<Vec<(Timestamp, String)>> {
        self.0
            .query(
                "SELECT done_at, payload FROM jobs WHERE incident_id = $1 AND kind = 'slack' \
                 AND state = 'done' AND done_at IS NOT NULL ORDER BY done_at, id",
                &[&incident_id],
            )?
            .iter()
            .map(|r| Ok((from_micros(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    fn report_rows(
        &mut self,
        q: &crate::store::ReportQuery,
        flapping: usize,
    ) -> Result<crate::store::ReportRows> {
        // In the read's one `REPEATABLE READ` transaction (`Db::read`).
        self.1.report_rows(&mut self.0, q, flapping)
    }

    fn count_by_status(&mut self) -> Result<Vec<(String, i64)>> {
        self.0
            .query(
                "SELECT status, count(*) FROM incidents GROUP BY status ORDER BY status",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn job_depth(&mut self) -> Result<Vec<(String, i64)>> {
        self.0
            .query(
                "SELECT kind, count(*) FROM jobs WHERE state IN ('pending', 'running') \
                 GROUP BY kind ORDER BY kind",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn job_status(&mut self, id: i64) -> Result<Option<JobStatus>> {
        self.0
            .query_opt(
                "SELECT state, attempts, last_error FROM jobs WHERE id = $1",
                &[&id],
            )?
            .map(|r| {
                Ok(JobStatus {
                    state: r.try_get(0)?,
                    attempts: r.try_get::<_, i64>(1)? as u32,
                    last_error: r.try_get(2)?,
                })
            })
            .transpose()
    }

    fn jobs_of_incident(
        &mut self,
        incident_id: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>> {
        self.0
            .query(
                "SELECT kind, state, payload FROM jobs WHERE incident_id = $1 ORDER BY id",
                &[&incident_id],
            )?
            .iter()
            .map(|r| {
                let payload: String = r.try_get(2)?;
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    serde_json::from_str(&payload).unwrap_or_default(),
                ))
            })
            .collect()
    }

    fn firing_occurrences(&mut self) -> Result<Vec<(String, Timestamp, LabelSet)>> {
        self.0
            .query(
                "SELECT fingerprint, starts_at, annotations FROM occurrences WHERE status = 'firing'",
                &[],
            )?
            .iter()
            .map(|r| {
                let annotations: String = r.try_get(2)?;
                Ok((
                    r.try_get(0)?,
                    from_micros(r.try_get(1)?),
                    serde_json::from_str(&annotations).unwrap_or_default(),
                ))
            })
            .collect()
    }

    fn draft(&mut self, incident_id: &str) -> Result<Option<StoredDraft>> {
        self.0
            .query_opt(
                "SELECT incident_id, markdown, sha256, rendered_at FROM drafts \
                 WHERE incident_id = $1",
                &[&incident_id],
            )?
            .map(|r| {
                Ok(StoredDraft {
                    incident_id: r.try_get(0)?,
                    markdown: r.try_get(1)?,
                    sha256: r.try_get(2)?,
                    rendered_at: from_micros(r.try_get(3)?),
                })
            })
            .transpose()
    }

    fn ping(&mut self) -> Result<()> {
        self.0.query_one("SELECT 1", &[])?;
        Ok(())
    }
}
