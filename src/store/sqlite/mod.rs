//! The SQLite backend: the correlator's [`Repo`] and the store's [`Tx`] over a SQLite
//! transaction, and its [`Reads`]. Times are stored as microseconds since the epoch, JSON as
//! text. The engine (writer thread, group commit, read pool) is in `writer.rs`, the job queue's
//! SQL in `jobs.rs`, the schema in `migrations.rs`.

pub mod jobs;
pub mod migrations;
mod slack;
mod writer;

pub use writer::{open_in_memory, Db, JOURNAL_SIZE_LIMIT};

use chrono::{Datelike, Duration};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::alertmanager::ValidNotification;
use crate::incident::*;
use crate::store::report_cache::{BlockReads, BlockRow, ReportCache};
use crate::store::{
    IncidentFilter, Job, JobStatus, ListFilter, NewJob, Page, Reads, Related, Search, StoreError,
    StoredDraft, Tx, RELATED_WALK, SEARCH_WALK,
};
use crate::time::{from_micros, to_micros};

fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(to_micros)
}

fn opt_time(us: Option<i64>) -> Option<Timestamp> {
    us.map(from_micros)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn bad_column(i: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

/// Sets `incidents.alert_tally` of incident `?1` from its occurrences (the form:
/// `store::ReportRowsBuilder`); the same expression as migration 11's triggers (a test in
/// `migrations.rs` checks it).
pub(crate) const ALERT_TALLY_UPDATE: &str = "UPDATE incidents SET alert_tally = (\
     SELECT CASE WHEN length(CAST(t AS BLOB)) > 1000 THEN '*' ELSE t END FROM (\
     SELECT coalesce(group_concat(n || ':' || length(CAST(alertname AS BLOB)) || ':' || alertname, ''), '') AS t \
     FROM (SELECT alertname, count(*) AS n FROM occurrences WHERE incident_id = ?1 GROUP BY alertname))) \
     WHERE id = ?1";

const OCCURRENCE_COLUMNS: &str = "fingerprint, starts_at, status, ends_at, alertname, labels, \
     annotations, generator_url, group_key, first_seen_at, last_seen_at, resolved_by, incident_id";

fn occurrence_from_row(r: &Row) -> rusqlite::Result<(Occurrence, String)> {
    let status: String = r.get(2)?;
    let labels: String = r.get(5)?;
    let annotations: String = r.get(6)?;
    Ok((
        Occurrence {
            fingerprint: r.get(0)?,
            starts_at: from_micros(r.get(1)?),
            status: AlertStatus::parse(&status)
                .ok_or_else(|| bad_column(2, "alert status", &status))?,
            ends_at: opt_time(r.get(3)?),
            alertname: r.get(4)?,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            annotations: serde_json::from_str(&annotations).unwrap_or_default(),
            generator_url: r.get(7)?,
            group_key: r.get(8)?,
            first_seen_at: from_micros(r.get(9)?),
            last_seen_at: from_micros(r.get(10)?),
            resolved_by: r.get(11)?,
        },
        r.get(12)?,
    ))
}

const INCIDENT_COLUMNS: &str = "id, key, title, status, severity, service, impact_start, \
     impact_start_method, fired_at, detected_at, acknowledged_at, acknowledged_by, resolved_at, \
     resolved_by, reopen_count, received, duplicate, stale, version";

fn incident_from_row(r: &Row) -> rusqlite::Result<Incident> {
    let status: String = r.get(3)?;
    let method: String = r.get(7)?;
    Ok(Incident {
        id: r.get(0)?,
        key: r.get(1)?,
        title: r.get(2)?,
        status: Status::parse(&status).ok_or_else(|| bad_column(3, "status", &status))?,
        severity: r.get(4)?,
        service: r.get(5)?,
        impact_start: opt_time(r.get(6)?),
        impact_start_method: ImpactMethod::parse(&method)
            .ok_or_else(|| bad_column(7, "impact start method", &method))?,
        fired_at: from_micros(r.get(8)?),
        detected_at: from_micros(r.get(9)?),
        acknowledged_at: opt_time(r.get(10)?),
        acknowledged_by: r.get(11)?,
        resolved_at: opt_time(r.get(12)?),
        resolved_by: r.get(13)?,
        reopen_count: r.get(14)?,
        notifications: NotificationCounts {
            received: r.get::<_, i64>(15)? as u64,
            duplicate: r.get::<_, i64>(16)? as u64,
            stale: r.get::<_, i64>(17)? as u64,
        },
        version: r.get::<_, i64>(18)? as u64,
        alerts: Vec::new(),
        timeline: Vec::new(),
    })
}

fn event_from_row(r: &Row) -> rusqlite::Result<TimelineEvent> {
    let kind: String = r.get(1)?;
    Ok(TimelineEvent {
        at: from_micros(r.get(0)?),
        kind: EventKind::parse(&kind).ok_or_else(|| bad_column(1, "event kind", &kind))?,
        actor: r.get(2)?,
        text: r.get(3)?,
    })
}

/// The correlator's view of the database inside one write transaction.
pub struct SqliteRepo<'a> {
    pub tx: &'a Transaction<'a>,
    pub now: Timestamp,
}

impl Repo for SqliteRepo<'_> {
    type Error = StoreError;

    fn occurrence(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<(Occurrence, String)>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {OCCURRENCE_COLUMNS} FROM occurrences WHERE fingerprint = ?1 AND starts_at = ?2"
            ))?
            .query_row(params![fingerprint, to_micros(starts_at)], occurrence_from_row)
            .optional()?)
    }

    fn candidates(
        &mut self,
        key: &str,
        start: Timestamp,
        end: Option<Timestamp>,
        window: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let reach_end = end.map_or(i64::MAX, |e| {
            to_micros(e).saturating_add(window.num_microseconds().unwrap_or(i64::MAX))
        });
        let reach_start =
            to_micros(start).saturating_sub(window.num_microseconds().unwrap_or(i64::MAX));
        let mut stmt = self.tx.prepare_cached(
            "SELECT id FROM incidents WHERE key = ?1 AND fired_at <= ?2 \
             AND (span_end IS NULL OR span_end >= ?3) ORDER BY seq",
        )?;
        let ids = stmt
            .query_map(params![key, reach_end, reach_start], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    fn load(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        let Some(mut incident) = incident_by_id(self.tx, id)? else {
            return Ok(None);
        };
        incident.alerts = members(self.tx, id)?;
        incident.timeline = timeline(self.tx, id, true)?;
        Ok(Some(incident))
    }

    fn history(&mut self, id: &str) -> Result<Vec<TimelineEvent>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT at, kind, actor, text FROM timeline WHERE incident_id = ?1 AND human = 0 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![id], event_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn next_id(&mut self, now: Timestamp) -> Result<String, StoreError> {
        let n: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO incident_sequences (year, last) VALUES (?1, 1) \
                 ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
            )?
            .query_row(params![now.year()], |r| r.get(0))?;
        Ok(format!("INC-{}-{:04}", now.year(), n))
    }

    fn save(
        &mut self,
        incident: &Incident,
        members: &[&Occurrence],
        appended: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        let tx = self.tx;
        let span_end = if incident.alerts.is_empty() {
            None
        } else {
            crate::incident::lifecycle::span(&incident.alerts).1
        };
        let n = &incident.notifications;
        tx.prepare_cached(
            "INSERT INTO incidents (id, seq, key, title, status, severity, service, impact_start, \
               impact_start_method, fired_at, detected_at, acknowledged_at, acknowledged_by, \
               resolved_at, resolved_by, span_end, reopen_count, received, duplicate, stale, \
               version, updated_at) \
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM incidents), ?2, ?3, ?4, ?5, ?6, ?7, \
               ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21) \
             ON CONFLICT (id) DO UPDATE SET key = excluded.key, title = excluded.title, \
               status = excluded.status, severity = excluded.severity, service = excluded.service, \
               impact_start = excluded.impact_start, impact_start_method = excluded.impact_start_method, \
               fired_at = excluded.fired_at, detected_at = excluded.detected_at, \
               acknowledged_at = excluded.acknowledged_at, acknowledged_by = excluded.acknowledged_by, \
               resolved_at = excluded.resolved_at, resolved_by = excluded.resolved_by, \
               span_end = excluded.span_end, reopen_count = excluded.reopen_count, \
               received = excluded.received, duplicate = excluded.duplicate, stale = excluded.stale, \
               version = excluded.version, updated_at = excluded.updated_at",
        )?
        .execute(params![
            incident.id,
            incident.key,
            incident.title,
            incident.status.as_str(),
            incident.severity,
            incident.service,
            opt_micros(incident.impact_start),
            incident.impact_start_method.as_str(),
            to_micros(incident.fired_at),
            to_micros(incident.detected_at),
            opt_micros(incident.acknowledged_at),
            incident.acknowledged_by,
            opt_micros(incident.resolved_at),
            incident.resolved_by,
            opt_micros(span_end),
            incident.reopen_count,
            n.received as i64,
            n.duplicate as i64,
            n.stale as i64,
            incident.version as i64,
            to_micros(self.now),
        ])?;
        let mut upsert = tx.prepare_cached(
            "INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, ends_at, alertname, \
               labels, annotations, generator_url, group_key, first_seen_at, last_seen_at, resolved_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (fingerprint, starts_at) DO UPDATE SET incident_id = excluded.incident_id, \
               status = excluded.status, ends_at = excluded.ends_at, annotations = excluded.annotations, \
               first_seen_at = excluded.first_seen_at, last_seen_at = excluded.last_seen_at, \
               resolved_by = excluded.resolved_by",
        )?;
        for o in members {
            upsert.execute(params![
                o.fingerprint,
                to_micros(o.starts_at),
                incident.id,
                o.status.as_str(),
                opt_micros(o.ends_at),
                o.alertname,
                json(&o.labels),
                json(&o.annotations),
                o.generator_url,
                o.group_key,
                to_micros(o.first_seen_at),
                to_micros(o.last_seen_at),
                o.resolved_by,
            ])?;
        }
        // The reports' tally of its alerts, once per save that changed any (a trigger per
        // inserted alert would make an incident of 100,000 alerts quadratic); moves and
        // deletions have triggers.
        if !members.is_empty() {
            tx.prepare_cached(ALERT_TALLY_UPDATE)?
                .execute(params![incident.id])?;
        }
        // Human rows are rewritten as given; derived rows are history and only ever appended.
        tx.prepare_cached("DELETE FROM timeline WHERE incident_id = ?1 AND human = 1")?
            .execute(params![incident.id])?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO timeline (incident_id, at, kind, actor, text, human) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (events, human) in [(&incident.timeline[..], true), (appended, false)] {
            for e in events {
                insert.execute(params![
                    incident.id,
                    to_micros(e.at),
                    e.kind.as_str(),
                    e.actor,
                    e.text,
                    human
                ])?;
            }
        }
        Ok(())
    }

    fn seen(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<Seen>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT incident_id, status, ends_at, first_seen_at, annotations FROM occurrences \
                 WHERE fingerprint = ?1 AND starts_at = ?2",
            )?
            .query_row(params![fingerprint, to_micros(starts_at)], |r| {
                let status: String = r.get(1)?;
                let annotations: String = r.get(4)?;
                Ok(Seen {
                    incident_id: r.get(0)?,
                    status: AlertStatus::parse(&status)
                        .ok_or_else(|| bad_column(1, "alert status", &status))?,
                    ends_at: opt_time(r.get(2)?),
                    first_seen_at: from_micros(r.get(3)?),
                    annotations: serde_json::from_str(&annotations).unwrap_or_default(),
                })
            })
            .optional()?)
    }

    fn touch(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
        at: Timestamp,
        annotations: Option<&LabelSet>,
    ) -> Result<(), StoreError> {
        let (fp, start, at) = (fingerprint, to_micros(starts_at), to_micros(at));
        match annotations {
            None => self
                .tx
                .prepare_cached(
                    "UPDATE occurrences SET first_seen_at = min(first_seen_at, ?3), \
                     last_seen_at = max(last_seen_at, ?3) WHERE fingerprint = ?1 AND starts_at = ?2",
                )?
                .execute(params![fp, start, at])?,
            Some(a) => self
                .tx
                .prepare_cached(
                    "UPDATE occurrences SET first_seen_at = min(first_seen_at, ?3), \
                     last_seen_at = max(last_seen_at, ?3), annotations = ?4 \
                     WHERE fingerprint = ?1 AND starts_at = ?2",
                )?
                .execute(params![fp, start, at, json(a)])?,
        };
        Ok(())
    }

    fn count(&mut self, incident_id: &str, counts: NotificationCounts) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE incidents SET received = received + ?2, duplicate = duplicate + ?3, \
                 stale = stale + ?4 WHERE id = ?1",
            )?
            .execute(params![
                incident_id,
                counts.received as i64,
                counts.duplicate as i64,
                counts.stale as i64
            ])?;
        Ok(())
    }
}

fn incident_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Incident>> {
    conn.prepare_cached(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
    ))?
    .query_row(params![id], incident_from_row)
    .optional()
}

fn members(conn: &Connection, id: &str) -> rusqlite::Result<Vec<Occurrence>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OCCURRENCE_COLUMNS} FROM occurrences WHERE incident_id = ?1 ORDER BY starts_at, fingerprint"
    ))?;
    let rows = stmt.query_map(params![id], |r| occurrence_from_row(r).map(|(o, _)| o))?;
    rows.collect()
}

fn timeline(conn: &Connection, id: &str, human_only: bool) -> rusqlite::Result<Vec<TimelineEvent>> {
    let sql = if human_only {
        "SELECT at, kind, actor, text FROM timeline WHERE incident_id = ?1 AND human = 1 ORDER BY at, id"
    } else {
        "SELECT at, kind, actor, text FROM timeline WHERE incident_id = ?1 ORDER BY at, id"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![id], event_from_row)?;
    rows.collect()
}

/// An incident with its alerts and its whole stored timeline.
pub fn full_incident(conn: &Connection, id: &str) -> rusqlite::Result<Option<Incident>> {
    let Some(mut incident) = incident_by_id(conn, id)? else {
        return Ok(None);
    };
    incident.alerts = members(conn, id)?;
    incident.timeline = timeline(conn, id, false)?;
    Ok(Some(incident))
}

/// The incidents page's query (see [`Reads::find_incidents`]). Unresolved incidents come
/// from the partial index `incidents_unresolved_seq`, resolved ones from
/// `incidents_status_seq`: both walk `seq` downwards and stop after `limit` matches.
///
/// A search first tests the next [`SEARCH_WALK`] incidents the other filters keep; if that
/// does not fill the page, a term of 3 characters or more continues in the FTS5 table
/// `incident_search` (migration 10), newest first, its candidates checked against the same
/// conditions, so the index only has to be a superset. A shorter term is tested on every
/// incident the other filters keep, newest first, until `limit` match, in the narrow covering
/// index of the phase, first on the characters each incident contains (migrations 12 and 14,
/// see [`short_search`]).
pub fn find_incidents(
    conn: &Connection,
    f: &IncidentFilter,
    resolved: bool,
    before_seq: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<(i64, Incident)>> {
    let Some(search) = f.search_query() else {
        return walk(conn, f, resolved, before_seq, limit);
    };
    let Some(term) = &search.indexed else {
        return short_search(conn, f, &search, resolved, before_seq, limit);
    };
    // The walk: the predicate as a column, so that the rows it rejects count too.
    let mut q = Query::new(&format!("SELECT {INCIDENT_COLUMNS}, seq, "));
    q.matches(&search, "incidents");
    q.sql.push_str(" FROM incidents WHERE ");
    q.filters(f, resolved, before_seq, "incidents");
    q.arg(" ORDER BY seq DESC LIMIT ?", i64::from(SEARCH_WALK));
    let mut found = Vec::new();
    let (mut walked, mut last) = (0u32, None);
    {
        let mut stmt = conn.prepare_cached(&q.sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(q.args.iter()))?;
        while let Some(r) = rows.next()? {
            walked += 1;
            let seq: i64 = r.get(19)?;
            last = Some(seq);
            if r.get::<_, bool>(20)? {
                found.push((seq, incident_from_row(r)?));
                if found.len() >= limit as usize {
                    return Ok(found);
                }
            }
        }
    }
    if walked < SEARCH_WALK {
        return Ok(found); // every incident the filters keep was tested
    }
    // The index: rowid is -seq, so its fastest order (upwards) is newest first.
    let mut q = Query::new(&format!(
        "SELECT {}, i.seq FROM incident_search CROSS JOIN incidents i \
         ON i.seq = -incident_search.rowid WHERE ",
        prefixed_incident_columns("i")
    ));
    q.arg("incident_search MATCH ?", fts_query(term, resolved));
    if let Some(seq) = last {
        q.arg(" AND incident_search.rowid > ?", -seq);
    }
    q.sql.push_str(" AND ");
    q.filters(f, resolved, None, "i");
    q.sql.push_str(" AND ");
    q.matches(&search, "i");
    q.arg(
        " ORDER BY incident_search.rowid LIMIT ?",
        i64::from(limit) - found.len() as i64,
    );
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.args.iter()), |r| {
        Ok((r.get::<_, i64>(19)?, incident_from_row(r)?))
    })?;
    for row in rows {
        found.push(row?);
    }
    Ok(found)
}

/// Incidents in `seq` order, newest first, tested one by one: the list without a search.
fn walk(
    conn: &Connection,
    f: &IncidentFilter,
    resolved: bool,
    before_seq: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<(i64, Incident)>> {
    let mut q = Query::new(&format!(
        "SELECT {INCIDENT_COLUMNS}, seq FROM incidents WHERE "
    ));
    q.filters(f, resolved, before_seq, "incidents");
    q.arg(" ORDER BY seq DESC LIMIT ?", i64::from(limit));
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.args.iter()), |r| {
        Ok((r.get::<_, i64>(19)?, incident_from_row(r)?))
    })?;
    rows.collect()
}

/// A term too short for the trigram index: every incident of the phase is tested, newest
/// first, until `limit` match, in the phase's covering index (`incidents_unresolved_search`
/// or `incidents_resolved_search`, migrations 12 and 14: `seq` and only the columns the
/// filters and the search read, a fraction of a row); then the rows of the matches alone are
/// read, in the same statement (one snapshot).
///
/// Each incident is first tested on the characters it contains (`search_chars`, migration
/// 14, see [`search_chars`]: its title's, its alert names' and, since migration 15, its id's
/// first two, as an id matches by its start): one that lacks a character of the term cannot
/// match and is rejected with an integer test; the others are tested with the `LIKE`s of
/// [`Query::matches`], so the answer is theirs. In the resolved phase (nearly every incident)
/// the walk goes block by block (`incident_search_blocks`, 64 incidents by `seq`), newest
/// first, and skips a block none of whose incidents has the term's characters: at 100,000
/// incidents `zz` (no incident has a `z`) reads 1,563 block rows instead of 99,000 index
/// entries with three `LIKE`s each; when at least half the blocks have the term's
/// characters, the phase's index is walked entry by entry instead. The unresolved phase
/// always walks its index entry by entry: it is small, and its incidents are scattered one
/// or two to a block.
///
/// A term of two characters goes further (migration 16): the blocks are those that have the
/// pair itself in a row (`incident_search_pairs`, see [`search_pair`]), so `db`, whose
/// characters every incident of the benchmark has and none in a row, visits no block instead
/// of testing the `LIKE`s on all 100,000 incidents. A pair most blocks have walks the index.
fn short_search(
    conn: &Connection,
    f: &IncidentFilter,
    search: &Search,
    resolved: bool,
    before_seq: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<(i64, Incident)>> {
    let index = if resolved {
        "incidents_resolved_search"
    } else {
        "incidents_unresolved_search"
    };
    let needed = search_chars(&search.term);
    let pair = search_pair(&search.term);
    // The unresolved phase is small by nature (incidents get resolved), and its incidents
    // are scattered over many blocks (the benchmark's 1,000 over 832): a seek per block costs more
    // than the entries it skips. The resolved phase holds the rest, 64 to a block.
    // Blocks only pay when they skip: with a term whose characters most blocks have (`in`:
    // every one), a seek per block costs more than walking the entries (see BENCHMARKS.md).
    let walk = if !resolved || (needed == 0 && pair.is_none()) {
        Walk::Entries
    } else {
        let (with, all): (i64, i64) = conn
            .prepare_cached(
                "SELECT CASE WHEN ?2 IS NULL \
                     THEN (SELECT count(*) FROM incident_search_blocks \
                           WHERE resolved = 1 AND (chars & ?1) = ?1) \
                     ELSE (SELECT count(*) FROM incident_search_pairs WHERE pair = ?2) END, \
                 (SELECT count(*) FROM incident_search_blocks WHERE resolved = 1)",
            )?
            .query_row(params![needed, pair], |r| Ok((r.get(0)?, r.get(1)?)))?;
        match pair {
            _ if with * 2 > all => Walk::Entries,
            Some(pair) => Walk::Pairs(pair),
            None => Walk::Characters,
        }
    };
    let mut q = Query::new(&format!(
        "SELECT {}, i.seq FROM (",
        prefixed_incident_columns("i")
    ));
    match &walk {
        Walk::Entries => {
            q.sql.push_str(&format!(
                "SELECT incidents.seq FROM incidents INDEXED BY {index} WHERE "
            ));
            q.filters(f, resolved, before_seq, "incidents");
            if needed != 0 {
                q.arg(" AND (incidents.search_chars & ?) = ?", needed);
            }
        }
        Walk::Pairs(_) | Walk::Characters => {
            // The blocks whose incidents may have the term (its pair, else its characters),
            // newest first; in each, its incidents of the phase that have its characters,
            // newest first.
            let from = match walk {
                Walk::Pairs(_) => "incident_search_pairs",
                _ => "incident_search_blocks",
            };
            q.sql.push_str(&format!(
                "SELECT incidents.seq FROM {from} b \
                 CROSS JOIN incidents INDEXED BY {index} \
                 ON incidents.seq >= (b.block << {BLOCK_BITS}) \
                 AND incidents.seq < ((b.block + 1) << {BLOCK_BITS}) WHERE "
            ));
            match &walk {
                Walk::Pairs(pair) => q.arg("b.pair = ?", pair.clone()),
                _ => {
                    q.arg("b.resolved = ?", i64::from(resolved));
                    q.arg(" AND (b.chars & ?) = ?", needed);
                }
            }
            if let Some(seq) = before_seq {
                q.arg(&format!(" AND b.block <= (? >> {BLOCK_BITS})"), seq);
            }
            q.sql.push_str(" AND ");
            q.filters(f, resolved, before_seq, "incidents");
            q.arg(" AND (incidents.search_chars & ?) = ?", needed);
        }
    }
    q.sql.push_str(" AND ");
    q.matches(search, "incidents");
    let order = match walk {
        Walk::Entries => " ORDER BY incidents.seq DESC",
        _ => " ORDER BY b.block DESC, incidents.seq DESC",
    };
    q.sql.push_str(order);
    q.arg(" LIMIT ?", i64::from(limit));
    q.sql
        .push_str(") m CROSS JOIN incidents i ON i.seq = m.seq ORDER BY m.seq DESC");
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(q.args.iter()), |r| {
        Ok((r.get::<_, i64>(19)?, incident_from_row(r)?))
    })?;
    rows.collect()
}

/// How a short term's walk reaches the incidents it tests ([`short_search`]).
enum Walk {
    /// Every entry of the phase's index.
    Entries,
    /// The blocks that have the term's characters (`incident_search_blocks`).
    Characters,
    /// The blocks that have the term's pair of characters (`incident_search_pairs`).
    Pairs(String),
}

/// `incident_search_blocks.block` is `seq >> BLOCK_BITS`: 64 incidents in creation order
/// (migration 14).
const BLOCK_BITS: u32 = 6;

/// The characters `incidents.search_chars` records (migrations 14 and 15): bit `i` is set when
/// the incident's title, alert names or first two characters of its id contain character `i`
/// of this list, a letter in either case. The 26 letters, the 10 digits and the 26
/// punctuation marks likeliest in a search.
pub(crate) const SEARCH_CHARS: &str =
    "abcdefghijklmnopqrstuvwxyz0123456789 -_.:/%=,()[]{}\"'@#+*&!?<>";

/// The bits of `incidents.search_chars` an incident needs for `term` to match it: one per
/// character of the term in [`SEARCH_CHARS`] (a letter in either case, as `LIKE` folds ASCII
/// letters), none for the others (`É`, a newline: the walk tests them with `LIKE` alone).
/// `LIKE` reads its pattern up to the first NUL, so characters after one are not needed.
pub(crate) fn search_chars(term: &str) -> i64 {
    term.chars()
        .take_while(|&c| c != '\0')
        .filter_map(|c| SEARCH_CHARS.find(c.to_ascii_lowercase()))
        .fold(0, |bits, i| bits | 1 << i)
}

/// The pair a term of two characters is looked up by in `incident_search_pairs` (migration
/// 16), lower-cased as `LIKE` folds it (ASCII letters only, as SQLite's `lower`); `None` for
/// any other length, or with a NUL (`LIKE` reads its pattern up to it: the term is shorter
/// than it looks).
pub(crate) fn search_pair(term: &str) -> Option<String> {
    let pair: String = term.chars().map(|c| c.to_ascii_lowercase()).collect();
    (pair.chars().count() == 2 && !pair.contains('\0')).then_some(pair)
}

/// An FTS5 query: the term as one phrase (its trigrams in a row: a substring) in the id,
/// title or alert names, of an incident in the phase asked for.
fn fts_query(term: &str, resolved: bool) -> String {
    let phase = if resolved {
        "status : \"resolved\""
    } else {
        "(status : \"open\" OR status : \"acknowledged\")"
    };
    format!(
        "{{id title alertnames}} : \"{}\" AND {phase}",
        term.replace('"', "\"\"")
    )
}

fn prefixed_incident_columns(table: &str) -> String {
    INCIDENT_COLUMNS
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A query built clause by clause, its arguments numbered as they come.
struct Query {
    sql: String,
    args: Vec<rusqlite::types::Value>,
}

impl Query {
    fn new(head: &str) -> Query {
        Query {
            sql: head.to_string(),
            args: Vec::new(),
        }
    }

    /// `clause` with its `?` numbered for `v`.
    fn arg(&mut self, clause: &str, v: impl Into<rusqlite::types::Value>) {
        self.args.push(v.into());
        self.sql
            .push_str(&clause.replace('?', &format!("?{}", self.args.len())));
    }

    /// The phase, the page's start and every filter but the search, on `table`'s row.
    fn filters(
        &mut self,
        f: &IncidentFilter,
        resolved: bool,
        before_seq: Option<i64>,
        table: &str,
    ) {
        self.sql.push_str(&if resolved {
            format!("{table}.status = 'resolved'")
        } else {
            format!("{table}.status <> 'resolved'")
        });
        if let Some(seq) = before_seq {
            self.arg(&format!(" AND {table}.seq < ?"), seq);
        }
        if let Some(status) = f.status {
            self.arg(
                &format!(" AND {table}.status = ?"),
                status.as_str().to_string(),
            );
        }
        if let Some(service) = &f.service {
            self.arg(&format!(" AND {table}.service = ?"), service.clone());
        }
        if let Some(severity) = &f.severity {
            self.arg(&format!(" AND {table}.severity = ?"), severity.clone());
        }
        if let Some(t) = f.fired_from {
            self.arg(&format!(" AND {table}.fired_at >= ?"), to_micros(t));
        }
        if let Some(t) = f.fired_until {
            self.arg(&format!(" AND {table}.fired_at < ?"), to_micros(t));
        }
    }

    /// The search's condition on `table`'s row.
    ///
    /// Each pattern is `+?`, not `?`: SQLite's planner reads the value bound to a bare `?`
    /// right of `LIKE` (for an index range on a prefix, which these columns' BINARY indexes
    /// cannot give a case-insensitive `LIKE`) and marks the statement to be prepared again
    /// whenever that parameter is bound, so a cached statement was compiled anew on every
    /// request: for a common short term that was most of the query (`/?q=e`: 0.16 against
    /// 0.05 ms, Python's sqlite3 on the benchmark's data; see BENCHMARKS.md). Unary `+`
    /// returns its operand unchanged, so the test is the same.
    fn matches(&mut self, search: &Search, table: &str) {
        let names = if search.per_alert {
            format!(
                "EXISTS (SELECT 1 FROM occurrences o WHERE o.incident_id = {table}.id \
                 AND o.alertname LIKE +? ESCAPE '\\')"
            )
        } else {
            format!("{table}.alertnames LIKE +? ESCAPE '\\'")
        };
        self.arg(
            &format!("({table}.id LIKE +? ESCAPE '\\'"),
            search.id_prefix.clone(),
        );
        self.arg(
            &format!(" OR {table}.title LIKE +? ESCAPE '\\'"),
            search.contains.clone(),
        );
        self.arg(&format!(" OR {names})"), search.contains.clone());
    }
}

/// Incidents newest first, without alerts and timeline. One row more than the limit is read,
/// so the page knows whether another follows and a client never asks for an empty last page.
pub fn list_incidents(conn: &Connection, f: &ListFilter) -> rusqlite::Result<Page> {
    let before_seq: i64 = match &f.before {
        Some(id) => conn
            .prepare_cached("SELECT seq FROM incidents WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
        None => i64::MAX,
    };
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE seq < ?1");
    if f.status.is_some() {
        sql.push_str(" AND status = ?2");
    }
    if f.service.is_some() {
        sql.push_str(" AND service = ?3");
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?4");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            before_seq,
            f.status.map(Status::as_str),
            f.service,
            i64::from(f.limit) + 1
        ],
        incident_from_row,
    )?;
    let mut incidents = rows.collect::<rusqlite::Result<Vec<_>>>()?;
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

/// How many incidents are in each status.
pub fn count_by_status(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT status, count(*) FROM incidents GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The rows of `q` through `cache` (`store::report_cache`), in one read transaction of
/// `conn`: the caller's if it has one open (`Db::read` does), else one of its own.
pub(crate) fn cached_report_rows(
    conn: &Connection,
    cache: &ReportCache,
    q: &crate::store::ReportQuery,
    flapping: usize,
) -> Result<crate::store::ReportRows, StoreError> {
    let _own = match conn.is_autocommit() {
        true => Some(conn.unchecked_transaction()?),
        false => None,
    };
    cache.report_rows(&mut SqliteBlocks(conn), q, flapping)
}

/// The report cache's reads (`store::report_cache`), from migration 13's `report_blocks`
/// and the index `incidents_report`.
struct SqliteBlocks<'a>(&'a Connection);

impl BlockReads for SqliteBlocks<'_> {
    fn versions(
        &mut self,
        blocks: std::ops::Range<i64>,
    ) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT block, version FROM report_blocks WHERE block >= ?1 AND block < ?2",
        )?;
        let versions = stmt
            .query_map(params![blocks.start, blocks.end], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(versions)
    }

    fn block(
        &mut self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(BlockRow<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT service, status, fired_at, impact_start, detected_at, acknowledged_at, \
                    resolved_at, reopen_count, alert_tally, seq \
             FROM incidents INDEXED BY incidents_report \
             WHERE fired_at >= ?1 AND fired_at < ?2 ORDER BY fired_at",
        )?;
        let mut read = stmt.query(params![from, to])?;
        while let Some(r) = read.next()? {
            let status = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            each(BlockRow {
                service: r
                    .get_ref(0)?
                    .as_str_or_null()
                    .map_err(rusqlite::Error::from)?,
                status: Status::parse(status).ok_or_else(|| bad_column(1, "status", status))?,
                fired_at: r.get(2)?,
                times: ResponseTimes {
                    impact_start: opt_time(r.get(3)?),
                    detected_at: from_micros(r.get(4)?),
                    acknowledged_at: opt_time(r.get(5)?),
                    resolved_at: opt_time(r.get(6)?),
                },
                reopen_count: r.get(7)?,
                alert_tally: r.get_ref(8)?.as_str().map_err(rusqlite::Error::from)?,
                seq: r.get(9)?,
            })?;
        }
        Ok(())
    }

    fn untallied_alerts(
        &mut self,
        q: &crate::store::ReportQuery,
        each: &mut dyn FnMut(Option<&str>, &str, i64, i64),
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(UNTALLIED_ALERTS)?;
        let mut read = stmt.query(params![to_micros(q.since), to_micros(q.until), q.service])?;
        while let Some(r) = read.next()? {
            each(
                r.get_ref(0)?
                    .as_str_or_null()
                    .map_err(rusqlite::Error::from)?,
                r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
                r.get(2)?,
                r.get(3)?,
            );
        }
        Ok(())
    }

    fn flapping(&mut self, seq: i64) -> Result<crate::store::FlappingIncident, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, title, service, severity, status, fired_at, reopen_count \
             FROM incidents WHERE seq = ?1",
        )?;
        Ok(stmt.query_row(params![seq], flapping_from_row)?)
    }
}

/// The alerts of the incidents of a report's range (`?1`..`?2`, service `?3` or all) whose
/// `alert_tally` is `*`, by service and name: incidents, firings.
pub(crate) const UNTALLIED_ALERTS: &str =
    "SELECT i.service, o.alertname, count(DISTINCT o.incident_id), count(*) \
     FROM incidents i JOIN occurrences o ON o.incident_id = i.id \
     WHERE i.fired_at >= ?1 AND i.fired_at < ?2 AND (?3 IS NULL OR i.service = ?3) \
       AND i.alert_tally = '*' \
     GROUP BY i.service, o.alertname";

/// An incident that reopened, from `id, title, service, severity, status, fired_at,
/// reopen_count`.
pub(crate) fn flapping_from_row(r: &Row) -> rusqlite::Result<crate::store::FlappingIncident> {
    let status: String = r.get(4)?;
    Ok(crate::store::FlappingIncident {
        id: r.get(0)?,
        title: r.get(1)?,
        service: r.get(2)?,
        severity: r.get(3)?,
        status: Status::parse(&status).ok_or_else(|| bad_column(4, "status", &status))?,
        fired_at: from_micros(r.get(5)?),
        reopen_count: r.get(6)?,
    })
}

/// Reports: the incidents whose first alert fired in `[since, until)` (of one service or all),
/// oldest first, as numbers with their alerts' tally, read from the one covering index
/// `incidents_report` (migration 11); the alerts of incidents tallied `*` from `occurrences`;
/// and the `flapping` incidents that reopened most. The plain read: the store serves reports
/// through [`ReportCache`], which is tested against this.
pub fn report_rows(
    conn: &Connection,
    q: &crate::store::ReportQuery,
    flapping: usize,
) -> rusqlite::Result<crate::store::ReportRows> {
    let range = params![to_micros(q.since), to_micros(q.until), q.service];
    let mut rows = crate::store::ReportRowsBuilder::new();
    let mut stmt = conn.prepare_cached(
        "SELECT service, status, fired_at, impact_start, detected_at, acknowledged_at, \
                resolved_at, reopen_count, alert_tally \
         FROM incidents INDEXED BY incidents_report \
         WHERE fired_at >= ?1 AND fired_at < ?2 AND (?3 IS NULL OR service = ?3) \
         ORDER BY fired_at",
    )?;
    let mut read = stmt.query(range)?;
    while let Some(r) = read.next()? {
        let status = r.get_ref(1)?.as_str()?;
        let status = Status::parse(status).ok_or_else(|| bad_column(1, "status", status))?;
        let times = ResponseTimes {
            impact_start: opt_time(r.get(3)?),
            detected_at: from_micros(r.get(4)?),
            acknowledged_at: opt_time(r.get(5)?),
            resolved_at: opt_time(r.get(6)?),
        };
        let tally = r.get_ref(8)?.as_str()?;
        rows.incident(
            r.get_ref(0)?.as_str_or_null()?,
            status,
            from_micros(r.get(2)?),
            times,
            r.get(7)?,
            tally,
        )
        .map_err(|e| bad_column(8, "alert_tally", &e))?;
    }
    if rows.untallied > 0 {
        let mut stmt = conn.prepare_cached(UNTALLIED_ALERTS)?;
        let mut read = stmt.query(range)?;
        while let Some(r) = read.next()? {
            rows.alerts(
                r.get_ref(0)?.as_str_or_null()?,
                r.get_ref(1)?.as_str()?,
                r.get::<_, i64>(2)?.max(0) as u64,
                r.get::<_, i64>(3)?.max(0) as u64,
            );
        }
    }
    // The few that reopened most, found in the index; only their rows are read.
    let mut stmt = conn.prepare_cached(
        "SELECT id, title, service, severity, status, fired_at, reopen_count FROM incidents \
         WHERE rowid IN (SELECT rowid FROM incidents INDEXED BY incidents_report \
             WHERE fired_at >= ?1 AND fired_at < ?2 AND (?3 IS NULL OR service = ?3) \
               AND reopen_count > 0 \
             ORDER BY reopen_count DESC, fired_at DESC, seq DESC LIMIT ?4) \
         ORDER BY reopen_count DESC, fired_at DESC, seq DESC",
    )?;
    let flaps = stmt.query_map(
        params![
            to_micros(q.since),
            to_micros(q.until),
            q.service,
            flapping as i64
        ],
        flapping_from_row,
    )?;
    rows.flapping(flaps.collect::<rusqlite::Result<_>>()?);
    Ok(rows.finish())
}

/// Keep the payload exactly as received, for audit: one row per notification, each distinct
/// body stored once (`hash` is its SHA-256).
#[allow(clippy::too_many_arguments)]
pub fn insert_notification(
    tx: &Transaction,
    received_at: Timestamp,
    receiver: &str,
    status: &str,
    group_key: &str,
    alerts: usize,
    hash: &[u8],
    body: &[u8],
) -> rusqlite::Result<()> {
    let known: Option<i64> = tx
        .prepare_cached("SELECT id FROM payloads WHERE hash = ?1")?
        .query_row(params![hash], |r| r.get(0))
        .optional()?;
    let payload_id = match known {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO payloads (hash, body) VALUES (?1, ?2)")?
                .execute(params![hash, body])?;
            tx.last_insert_rowid()
        }
    };
    tx.prepare_cached(
        "INSERT INTO notifications (received_at, receiver, status, group_key, alerts, payload_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        to_micros(received_at),
        receiver,
        status,
        group_key,
        alerts as i64,
        payload_id
    ])?;
    Ok(())
}

/// Delete notifications received before `cutoff`, and the bodies no notification uses any
/// more; returns how many notifications.
pub fn prune_notifications(tx: &Transaction, cutoff: Timestamp) -> rusqlite::Result<usize> {
    let n = tx
        .prepare_cached("DELETE FROM notifications WHERE received_at < ?1")?
        .execute(params![to_micros(cutoff)])?;
    if n > 0 {
        tx.prepare_cached(
            "DELETE FROM payloads WHERE NOT EXISTS \
             (SELECT 1 FROM notifications WHERE payload_id = payloads.id)",
        )?
        .execute([])?;
    }
    Ok(n)
}

/// How many raw payloads are kept.
pub fn count_notifications(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM notifications", [], |r| r.get(0))
}

/// Earlier incidents with the same key or a shared alert name, newest first:
/// `(incident, same_key, shared alert names)`. The [`super::RELATED_WALK`] incidents just
/// before it are tested one by one; older ones are looked up by key and alert name.
pub fn related_incidents(
    conn: &Connection,
    incident: &Incident,
    limit: u32,
) -> rusqlite::Result<Vec<(Incident, bool, Vec<String>)>> {
    let names: Vec<&str> = incident
        .alerts
        .iter()
        .map(|a| a.alertname.as_str())
        .collect();
    let names_json = serde_json::to_string(&names).unwrap_or_else(|_| "[]".into());
    let Some(before) = conn
        .query_row(
            "SELECT seq FROM incidents WHERE id = ?1",
            [&incident.id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    else {
        return Ok(Vec::new());
    };
    const RELATED_TO: &str = "(i.key = ?2 OR EXISTS (SELECT 1 FROM occurrences o \
         WHERE o.incident_id = i.id AND o.alertname IN (SELECT value FROM json_each(?3))))";
    // The newest RELATED_WALK incidents before it, each tested; where they end.
    let (walked, floor): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), min(seq) FROM \
             (SELECT seq FROM incidents WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2)",
        )?
        .query_row(params![before, RELATED_WALK], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let Some(floor) = floor else {
        return Ok(Vec::new());
    };
    let mut found: Vec<Incident> = conn
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i \
             WHERE i.seq < ?1 AND i.seq >= ?5 AND {RELATED_TO} ORDER BY i.seq DESC LIMIT ?4"
        ))?
        .query_map(
            params![before, incident.key, names_json, limit, floor],
            incident_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    // Older ones, if the walk did not fill the list and did not reach the first incident:
    // the candidates by key and by alert name.
    if found.len() < limit as usize && walked == RELATED_WALK {
        let mut older = conn.prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.seq IN ( \
                 SELECT seq FROM incidents WHERE key = ?2 AND seq < ?1 \
                 UNION SELECT j.seq FROM occurrences o JOIN incidents j ON j.id = o.incident_id \
                 WHERE o.alertname IN (SELECT value FROM json_each(?3)) AND j.seq < ?1) \
             ORDER BY i.seq DESC LIMIT ?4"
        ))?;
        let rest = i64::from(limit) - found.len() as i64;
        for row in older.query_map(
            params![floor, incident.key, names_json, rest],
            incident_from_row,
        )? {
            found.push(row?);
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for other in found {
        let mut shared: Vec<String> = members(conn, &other.id)?
            .into_iter()
            .map(|o| o.alertname)
            .filter(|n| names.contains(&n.as_str()))
            .collect();
        shared.sort();
        shared.dedup();
        let same_key = other.key == incident.key;
        out.push((other, same_key, shared));
    }
    Ok(out)
}

/// Record the impact start the evidence job found (and how); `true` when it changed. Refused
/// when it is later than the incident's `fired_at`: an earlier alert joined meanwhile, so the
/// value is stale and the join has queued a new search. Correlation keeps a value set here
/// (it recomputes `impact_start` only while the method is `starts_at`, or when an alert that
/// fired earlier joins).
pub fn set_impact_start(
    tx: &Transaction,
    incident_id: &str,
    at: Timestamp,
    method: ImpactMethod,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE incidents SET impact_start = ?2, impact_start_method = ?3, \
               version = version + 1, updated_at = ?4 \
             WHERE id = ?1 AND fired_at >= ?2 \
               AND (impact_start IS NOT ?2 OR impact_start_method IS NOT ?3)",
        )?
        .execute(params![
            incident_id,
            to_micros(at),
            method.as_str(),
            to_micros(now)
        ])?;
    Ok(changed > 0)
}

/// Store an incident's evidence (JSON) and charts, replacing what was there.
pub fn put_evidence(
    tx: &Transaction,
    incident_id: &str,
    collected_at: Timestamp,
    body: &serde_json::Value,
    charts: &[(String, String)],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO evidence (incident_id, collected_at, body) VALUES (?1, ?2, ?3) \
         ON CONFLICT (incident_id) DO UPDATE SET collected_at = excluded.collected_at, body = excluded.body",
    )?
    .execute(params![incident_id, to_micros(collected_at), body.to_string()])?;
    tx.prepare_cached("DELETE FROM charts WHERE incident_id = ?1")?
        .execute(params![incident_id])?;
    let mut insert =
        tx.prepare_cached("INSERT INTO charts (incident_id, name, svg) VALUES (?1, ?2, ?3)")?;
    for (name, svg) in charts {
        insert.execute(params![incident_id, name, svg])?;
    }
    Ok(())
}

/// An incident's evidence JSON, if any was gathered.
pub fn evidence(
    conn: &Connection,
    incident_id: &str,
) -> rusqlite::Result<Option<serde_json::Value>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM evidence WHERE incident_id = ?1")?
        .query_row(params![incident_id], |r| r.get(0))
        .optional()?;
    Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
}

/// An incident's charts: `(name, svg)`.
pub fn charts(conn: &Connection, incident_id: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT name, svg FROM charts WHERE incident_id = ?1 ORDER BY name")?;
    let rows = stmt.query_map(params![incident_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// One chart's SVG.
pub fn chart(conn: &Connection, incident_id: &str, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT svg FROM charts WHERE incident_id = ?1 AND name = ?2")?
        .query_row(params![incident_id, name], |r| r.get(0))
        .optional()
}

/// Where the incident's Slack thread is: `(channel, ts)`.
pub fn slack_thread(
    conn: &Connection,
    incident_id: &str,
) -> rusqlite::Result<Option<(String, String)>> {
    conn.prepare_cached("SELECT channel, ts FROM slack_threads WHERE incident_id = ?1")?
        .query_row(params![incident_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// The Slack messages delivered for an incident, oldest first: `(done_at, job payload)`.
/// Finished jobs are pruned with `storage.raw_payload_retention`, so older ones are gone.
pub fn slack_deliveries(
    conn: &Connection,
    incident_id: &str,
) -> rusqlite::Result<Vec<(Timestamp, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT done_at, payload FROM jobs WHERE incident_id = ?1 AND kind = 'slack' \
         AND state = 'done' AND done_at IS NOT NULL ORDER BY done_at, id",
    )?;
    let rows = stmt.query_map(params![incident_id], |r| {
        Ok((from_micros(r.get(0)?), r.get(1)?))
    })?;
    rows.collect()
}

/// Record the incident's Slack thread.
pub fn set_slack_thread(
    tx: &Transaction,
    incident_id: &str,
    channel: &str,
    ts: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO slack_threads (incident_id, channel, ts) VALUES (?1, ?2, ?3) \
         ON CONFLICT (incident_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
    )?
    .execute(params![incident_id, channel, ts])?;
    Ok(())
}

/// Delete incidents that resolved before `cutoff`, with everything that hangs off them
/// (alerts, timeline, evidence, charts, jobs, Slack thread: foreign keys cascade); returns
/// how many incidents.
pub fn prune_incidents(tx: &Transaction, cutoff: Timestamp) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM incidents WHERE status = 'resolved' AND resolved_at < ?1")?
        .execute(params![to_micros(cutoff)])
}

/// Every firing occurrence: `(fingerprint, starts_at, annotations)`.
pub fn firing_occurrences(
    conn: &Connection,
) -> rusqlite::Result<Vec<(String, Timestamp, LabelSet)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, starts_at, annotations FROM occurrences WHERE status = 'firing'",
    )?;
    let rows = stmt.query_map([], |r| {
        let annotations: String = r.get(2)?;
        Ok((
            r.get(0)?,
            from_micros(r.get(1)?),
            serde_json::from_str(&annotations).unwrap_or_default(),
        ))
    })?;
    rows.collect()
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let transient = matches!(
            e.sqlite_error_code(),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | ReadOnly
                    | OutOfMemory
            )
        );
        StoreError::Database {
            message: e.to_string(),
            transient,
        }
    }
}

impl Tx for SqliteRepo<'_> {
    fn set_now(&mut self, now: Timestamp) {
        self.now = now;
    }

    fn record_notification(
        &mut self,
        n: &ValidNotification,
        hash: &[u8],
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<(), StoreError> {
        Ok(insert_notification(
            self.tx,
            received_at,
            &n.receiver,
            n.status.as_str(),
            &n.group_key,
            n.alerts.len(),
            hash,
            body,
        )?)
    }

    fn enqueue(&mut self, job: &NewJob) -> Result<i64, StoreError> {
        Ok(jobs::enqueue(self.tx, job)?)
    }

    fn lock(&mut self, _names: &[String]) -> Result<(), StoreError> {
        // One writer thread does every write: transactions never overlap.
        Ok(())
    }

    fn claim(
        &mut self,
        kind: &str,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        Ok(jobs::claim(self.tx, kind, now, holder, lease_until)?)
    }

    fn renew_job(
        &mut self,
        id: i64,
        holder: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(jobs::renew(self.tx, id, holder, lease_until)?)
    }

    fn acquire_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(jobs::acquire_lease(self.tx, name, holder, now, until)?)
    }

    fn release_lease(&mut self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")?
            .execute(params![name, holder])?;
        Ok(())
    }

    fn secret(&mut self, name: &str, fresh: &str) -> Result<String, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, fresh])?;
        Ok(self
            .tx
            .prepare_cached("SELECT value FROM secrets WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))?)
    }

    fn put_draft(&mut self, d: &StoredDraft) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO drafts (incident_id, markdown, sha256, rendered_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (incident_id) DO UPDATE SET \
                 markdown = excluded.markdown, sha256 = excluded.sha256, \
                 rendered_at = excluded.rendered_at",
            )?
            .execute(params![
                d.incident_id,
                d.markdown,
                d.sha256,
                to_micros(d.rendered_at)
            ])?;
        Ok(())
    }

    fn complete(&mut self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        Ok(jobs::complete(self.tx, id, now)?)
    }

    fn fail(
        &mut self,
        id: i64,
        error: &str,
        retry_in: Option<Duration>,
        payload: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        Ok(jobs::fail(self.tx, id, error, retry_in, payload, now)?)
    }

    fn set_impact_start(
        &mut self,
        incident_id: &str,
        at: Timestamp,
        method: ImpactMethod,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(set_impact_start(self.tx, incident_id, at, method, now)?)
    }

    fn put_evidence(
        &mut self,
        incident_id: &str,
        collected_at: Timestamp,
        body: &serde_json::Value,
        charts: &[(String, String)],
    ) -> Result<(), StoreError> {
        Ok(put_evidence(
            self.tx,
            incident_id,
            collected_at,
            body,
            charts,
        )?)
    }

    fn set_slack_thread(
        &mut self,
        incident_id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        Ok(set_slack_thread(self.tx, incident_id, channel, ts)?)
    }

    fn prune_notifications(&mut self, cutoff: Timestamp) -> Result<usize, StoreError> {
        Ok(prune_notifications(self.tx, cutoff)?)
    }

    fn prune_jobs(&mut self, cutoff: Timestamp) -> Result<usize, StoreError> {
        Ok(jobs::prune(self.tx, cutoff)?)
    }

    fn prune_incidents(&mut self, cutoff: Timestamp) -> Result<usize, StoreError> {
        Ok(prune_incidents(self.tx, cutoff)?)
    }
}

/// The store's queries over a pooled read-only connection, with the database's
/// [`ReportCache`].
pub struct SqliteReads<'a>(pub &'a Connection, pub &'a ReportCache);

impl Reads for SqliteReads<'_> {
    fn incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(full_incident(self.0, id)?)
    }

    fn evidence(&mut self, incident_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(evidence(self.0, incident_id)?)
    }

    fn list_incidents(&mut self, filter: &ListFilter) -> Result<Page, StoreError> {
        Ok(list_incidents(self.0, filter)?)
    }

    fn find_incidents(
        &mut self,
        filter: &IncidentFilter,
        resolved: bool,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Incident)>, StoreError> {
        Ok(find_incidents(self.0, filter, resolved, before_seq, limit)?)
    }

    fn chart(&mut self, incident_id: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(chart(self.0, incident_id, name)?)
    }

    fn charts(&mut self, incident_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(charts(self.0, incident_id)?)
    }

    fn related_incidents(
        &mut self,
        incident: &Incident,
        limit: u32,
    ) -> Result<Vec<Related>, StoreError> {
        Ok(related_incidents(self.0, incident, limit)?
            .into_iter()
            .map(|(incident, same_key, shared_alertnames)| Related {
                incident,
                same_key,
                shared_alertnames,
            })
            .collect())
    }

    fn slack_thread(&mut self, incident_id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(slack_thread(self.0, incident_id)?)
    }

    fn slack_deliveries(
        &mut self,
        incident_id: &str,
    ) -> Result<Vec<(Timestamp, String)>, StoreError> {
        Ok(slack_deliveries(self.0, incident_id)?)
    }

    fn count_by_status(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(count_by_status(self.0)?)
    }

    fn report_rows(
        &mut self,
        q: &crate::store::ReportQuery,
        flapping: usize,
    ) -> Result<crate::store::ReportRows, StoreError> {
        cached_report_rows(self.0, self.1, q, flapping)
    }

    fn job_depth(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(jobs::depth(self.0)?)
    }

    fn job_status(&mut self, id: i64) -> Result<Option<JobStatus>, StoreError> {
        Ok(jobs::status(self.0, id)?)
    }

    fn jobs_of_incident(
        &mut self,
        incident_id: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>, StoreError> {
        Ok(jobs::of_incident(self.0, incident_id)?)
    }

    fn firing_occurrences(&mut self) -> Result<Vec<(String, Timestamp, LabelSet)>, StoreError> {
        Ok(firing_occurrences(self.0)?)
    }

    fn draft(&mut self, incident_id: &str) -> Result<Option<StoredDraft>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT incident_id, markdown, sha256, rendered_at FROM drafts WHERE incident_id = ?1",
            )?
            .query_row(params![incident_id], |r| {
                Ok(StoredDraft {
                    incident_id: r.get(0)?,
                    markdown: r.get(1)?,
                    sha256: r.get(2)?,
                    rendered_at: from_micros(r.get(3)?),
                })
            })
            .optional()?)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        Ok(self.0.query_row("SELECT 1", [], |_| Ok(()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::ValidAlert;
    use crate::incident::{ingest, Rules};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn firing(fp: &str, starts_at: &str) -> ValidAlert {
        ValidAlert {
            status: AlertStatus::Firing,
            alertname: "PoolHigh".into(),
            labels: LabelSet::from([("service".to_string(), "pay".to_string())]),
            annotations: LabelSet::new(),
            starts_at: t(starts_at),
            ends_at: None,
            generator_url: String::new(),
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn a_found_impact_start_is_stored_but_never_one_later_than_the_firing() {
        let mut conn = Connection::open_in_memory().expect("db");
        crate::store::sqlite::migrations::migrate(&mut conn).expect("migrate");
        let tx = conn.transaction().expect("tx");
        let now = t("2026-11-23T02:27:00Z");
        let mut repo = SqliteRepo { tx: &tx, now };
        let rules = Rules::default();
        let id = ingest(
            &mut repo,
            &rules,
            "g",
            &firing("a", "2026-11-23T02:26:28Z"),
            now,
        )
        .expect("ingest")
        .incident_id;
        let stored = |tx: &Transaction| {
            let i = incident_by_id(tx, &id).expect("read").expect("exists");
            (i.impact_start, i.impact_start_method, i.version)
        };
        let (_, _, version) = stored(&tx);

        let found = t("2026-11-23T02:26:22.4Z");
        assert!(set_impact_start(&tx, &id, found, ImpactMethod::RuleReevaluation, now).unwrap());
        assert_eq!(
            stored(&tx),
            (Some(found), ImpactMethod::RuleReevaluation, version + 1)
        );
        // The same answer again changes nothing.
        assert!(!set_impact_start(&tx, &id, found, ImpactMethod::RuleReevaluation, now).unwrap());

        // An alert that fired at 02:26:10 joined meanwhile: a start at 02:26:22 is stale.
        let mut repo = SqliteRepo { tx: &tx, now };
        ingest(
            &mut repo,
            &rules,
            "g",
            &firing("b", "2026-11-23T02:26:10Z"),
            now,
        )
        .expect("join");
        let late = t("2026-11-23T02:26:20Z");
        assert!(!set_impact_start(&tx, &id, late, ImpactMethod::RuleReevaluation, now).unwrap());
        let (start, method, _) = stored(&tx);
        assert_eq!(
            (start, method),
            (Some(t("2026-11-23T02:26:10Z")), ImpactMethod::StartsAt)
        );
    }

    #[test]
    fn a_late_firing_from_before_the_window_reopens_and_keeps_the_resolved_row_as_memory_does() {
        // Issue 13: a resolved incident, then a `firing` whose startsAt lies before it.
        let rules = Rules::default();
        let resolved = |mut a: ValidAlert, ends: &str| {
            a.status = AlertStatus::Resolved;
            a.ends_at = Some(t(ends));
            a
        };
        let steps = [
            (firing("a", "2026-11-23T02:10:00Z"), "2026-11-23T02:10:05Z"),
            (
                resolved(firing("a", "2026-11-23T02:10:00Z"), "2026-11-23T02:15:00Z"),
                "2026-11-23T02:15:05Z",
            ),
            (firing("b", "2026-11-23T02:05:00Z"), "2026-11-23T02:40:00Z"),
        ];
        let mut memory = crate::incident::memory::MemoryRepo::new();
        let mut conn = crate::store::open_in_memory().expect("db");
        let mut id = String::new();
        let mut rows_before: Vec<TimelineEvent> = Vec::new();
        for (alert, at) in &steps {
            let now = t(at);
            let want = crate::incident::ingest(&mut memory, &rules, "g", alert, now)
                .unwrap_or_else(|never| match never {});
            let tx = conn.transaction().expect("tx");
            let mut repo = SqliteRepo { tx: &tx, now };
            let got = ingest(&mut repo, &rules, "g", alert, now).expect("ingest");
            assert_eq!(got, want);
            id = got.incident_id.clone();
            let stored = full_incident(&tx, &id).expect("read").expect("exists");
            tx.commit().expect("commit");
            let mine = memory.full(&id).expect("in memory");
            assert_eq!(
                (stored.status, stored.reopen_count),
                (mine.status, mine.reopen_count)
            );
            let key = |e: &TimelineEvent| (e.at, e.kind, e.actor.clone(), e.text.clone());
            let mut a: Vec<_> = stored.timeline.iter().map(key).collect();
            let mut b: Vec<_> = mine.timeline.iter().map(key).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "SQLite and memory hold the same timeline");
            for e in &rows_before {
                assert!(stored.timeline.contains(e), "{e:?} disappeared");
            }
            rows_before = stored.timeline;
        }
        let i = full_incident(&conn, &id).expect("read").expect("exists");
        assert_eq!((i.status, i.reopen_count), (Status::Open, 1));
        let kinds: Vec<EventKind> = i.timeline.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&EventKind::Resolved), "{kinds:?}");
        assert!(kinds.contains(&EventKind::Reopened), "{kinds:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// For any sequence of deliveries (late ones, resolves before firings, repeats), the
        /// SQLite repo holds what the in-memory reference holds, timelines included, and never
        /// loses a timeline row it stored.
        #[test]
        fn sqlite_and_memory_keep_the_same_append_only_timelines(
            steps in proptest::collection::vec(
                (0usize..4, 0i64..12, proptest::option::of(1i64..6), proptest::bool::ANY),
                1..24,
            ),
            window in proptest::sample::select(vec![0i64, 10, 30]),
        ) {
            let rules = Rules {
                reopen_window: chrono::Duration::minutes(window),
                ..Rules::default()
            };
            let base = t("2026-11-23T02:00:00Z");
            let minutes = |m: i64| base + chrono::Duration::minutes(m);
            let mut memory = crate::incident::memory::MemoryRepo::new();
            let mut conn = crate::store::open_in_memory().expect("db");
            let mut seen: Vec<(String, Vec<TimelineEvent>)> = Vec::new();
            for (n, (fp, start, dur, other_service)) in steps.into_iter().enumerate() {
                let now = minutes(100 + n as i64);
                let mut a = firing(&format!("f{fp}"), "2026-11-23T02:00:00Z");
                a.alertname = format!("Alert{fp}");
                a.starts_at = minutes(start * 5);
                if other_service {
                    a.labels.insert("service".into(), "shop".into());
                    a.fingerprint = format!("s{fp}");
                }
                if let Some(d) = dur {
                    a.status = AlertStatus::Resolved;
                    a.ends_at = Some(a.starts_at + chrono::Duration::minutes(d * 3));
                }
                let want = crate::incident::ingest(&mut memory, &rules, "g", &a, now)
                    .unwrap_or_else(|never| match never {});
                let tx = conn.transaction().expect("tx");
                let mut repo = SqliteRepo { tx: &tx, now };
                let got = ingest(&mut repo, &rules, "g", &a, now).expect("ingest");
                proptest::prop_assert_eq!(&got, &want);
                let mut now_seen = Vec::new();
                for mine in memory.incidents() {
                    let mut stored = full_incident(&tx, &mine.id).expect("read").expect("exists");
                    stored.timeline.retain(|e| e.kind != EventKind::Notifications);
                    let key = |e: &TimelineEvent| (e.at, e.kind, e.actor.clone(), e.text.clone());
                    let mut a: Vec<_> = stored.timeline.iter().map(key).collect();
                    let mut b: Vec<_> = mine.timeline.iter().map(key).collect();
                    a.sort();
                    b.sort();
                    proptest::prop_assert_eq!(&a, &b, "timelines of {}", mine.id);
                    proptest::prop_assert_eq!(
                        (stored.status, stored.reopen_count, stored.resolved_at),
                        (mine.status, mine.reopen_count, mine.resolved_at)
                    );
                    if let Some((_, before)) = seen.iter().find(|(id, _)| *id == mine.id) {
                        for e in before {
                            proptest::prop_assert!(
                                stored.timeline.contains(e),
                                "{}: {:?} disappeared",
                                mine.id,
                                e
                            );
                        }
                    }
                    now_seen.push((mine.id.clone(), stored.timeline));
                }
                tx.commit().expect("commit");
                seen = now_seen;
            }
        }
    }

    #[test]
    fn nanosecond_times_from_alertmanager_read_back_as_correlation_computed_them() {
        // Two alerts whose startsAt differ below a microsecond are one occurrence to the
        // store; correlation must see them so too (found by the `store` fuzz target).
        let body = include_str!(
            "../../../tests/fixtures/scenario-single/webhooks/01-firing-DatabaseConnectionPoolHigh.json"
        );
        let mut n = crate::alertmanager::decode(
            body.replace("02:26:28.738Z", "02:26:28.7380001Z")
                .as_bytes(),
        )
        .expect("decodes");
        let mut again = crate::alertmanager::decode(
            body.replace("02:26:28.738Z", "02:26:28.7380009Z")
                .as_bytes(),
        )
        .expect("decodes");
        n.alerts.append(&mut again.alerts);
        let (rules, now) = (Rules::default(), t("2026-11-23T14:00:00Z"));

        let mut memory = crate::incident::memory::MemoryRepo::new();
        let expected = crate::incident::ingest_all(&mut memory, &rules, "g", &n.alerts, now)
            .unwrap_or_else(|never| match never {});
        let mut conn = crate::store::open_in_memory().expect("db");
        let tx = conn.transaction().expect("tx");
        let mut repo = SqliteRepo { tx: &tx, now };
        let got =
            crate::incident::ingest_all(&mut repo, &rules, "g", &n.alerts, now).expect("ingest");
        assert_eq!(got, expected);
        let want = memory.incidents();
        assert_eq!(want.len(), 1);
        assert_eq!(want[0].alerts.len(), 1, "one occurrence, repeated");
        let stored = full_incident(&tx, &want[0].id)
            .expect("read")
            .expect("exists");
        assert_eq!(stored.alerts, want[0].alerts);
        assert_eq!(
            (stored.fired_at, stored.impact_start),
            (want[0].fired_at, want[0].impact_start)
        );
    }

    #[test]
    fn repeated_bodies_are_stored_once_and_pruning_drops_what_no_notification_uses() {
        let mut conn = Connection::open_in_memory().expect("db");
        crate::store::sqlite::migrations::migrate(&mut conn).expect("migrate");
        let tx = conn.transaction().expect("tx");
        let (old, new) = (t("2026-11-01T00:00:00Z"), t("2026-11-23T00:00:00Z"));
        for (at, body) in [(old, "a"), (new, "a"), (old, "b"), (old, "b")] {
            let hash = body.repeat(32);
            insert_notification(
                &tx,
                at,
                "r",
                "firing",
                "g",
                1,
                hash.as_bytes(),
                body.as_bytes(),
            )
            .expect("insert");
        }
        let payloads = |tx: &Transaction| -> i64 {
            tx.query_row("SELECT count(*) FROM payloads", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count_notifications(&tx).unwrap(), payloads(&tx)), (4, 2));
        assert_eq!(
            prune_notifications(&tx, t("2026-11-10T00:00:00Z")).unwrap(),
            3
        );
        assert_eq!(
            (count_notifications(&tx).unwrap(), payloads(&tx)),
            (1, 1),
            "body a is still used"
        );
    }
}
