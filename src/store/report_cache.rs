//! Reports' rows kept between reports, for both backends.
//!
//! A report reads every incident of its range: 100,000 rows of 9 columns, about 60 ms of
//! SQLite and decoding (on PostgreSQL about 170 ms of the server's and as much again of
//! decoding), for figures that change only where an incident changed. So the incidents are
//! kept here by *block* (the incidents whose `fired_at` shifted right by [`BLOCK_SHIFT`] is
//! the same number: about 19 hours each), decoded once, with the version the block had when
//! it was read. Triggers count each block's changes in the table `report_blocks` (SQLite's
//! migration 13, PostgreSQL's 17): any insert, delete, or update of a column a report reads
//! bumps the blocks of the row's old and new `fired_at`, in the writer's transaction. A
//! block's version is the sum of its counts (no row: version 0).
//!
//! A report opens one read transaction (PostgreSQL's is `REPEATABLE READ`: one snapshot),
//! reads the versions of its blocks and re-reads only the blocks whose version differs from
//! the kept one, in that same snapshot: every block it uses holds exactly what the snapshot
//! holds, so the rows equal a read of the whole range (`tests`: both ways over the same
//! writes). A version only grows, by one per committed change, and a later snapshot sees
//! every change an earlier one saw: an equal version is the same block. The writers never
//! wait on the cache; reports share one lock while they look up and re-read stale blocks, so
//! a report that finds a changed block makes the others wait for that read (a block: a few
//! thousand rows at most in a busy installation).
//!
//! On PostgreSQL two replicas write one database: one counter row per block would make every
//! write to the incidents of the same ~19 hours wait for the other writers' commits. So each
//! session counts in its own row, `(block, writer)` with `writer` its `pg_backend_pid()`
//! (unique among the sessions open at once), and a block's version is the sum of its rows.
//! Each replica keeps its own cache and sees the other's writes through the versions.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::incident::{ResponseTimes, Status};
use crate::store::{
    read_alert_tally, AlertTallies, FlappingIncident, IncidentSummary, Names, ReportQuery,
    ReportRows, StoreError,
};
use crate::time::{from_micros, to_micros};

/// One incident as a block reads it (the backend has checked its status).
pub(crate) struct BlockRow<'a> {
    pub service: Option<&'a str>,
    pub status: Status,
    pub fired_at: i64,
    pub times: ResponseTimes,
    pub reopen_count: u32,
    pub alert_tally: &'a str,
    pub seq: i64,
}

/// What the cache asks of a backend, all inside the report's one read transaction.
pub(crate) trait BlockReads {
    /// The versions of the blocks in `blocks` that have any (others: 0).
    fn versions(&mut self, blocks: Range<i64>) -> Result<HashMap<i64, i64>, StoreError>;
    /// The incidents whose `fired_at` is in `[from, to)`, oldest first.
    fn block(
        &mut self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(BlockRow<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// The alerts of the range's incidents whose `alert_tally` is `*`, by service and name:
    /// `(service, alertname, incidents, firings)`.
    fn untallied_alerts(
        &mut self,
        q: &ReportQuery,
        each: &mut dyn FnMut(Option<&str>, &str, i64, i64),
    ) -> Result<(), StoreError>;
    /// The incident numbered `seq`, as the report lists those that reopened.
    fn flapping(&mut self, seq: i64) -> Result<FlappingIncident, StoreError>;
}

/// A block is the incidents whose `fired_at` (µs since the epoch) shifted right by this many
/// bits is the same: 2^36 µs, about 19.1 hours. The triggers of SQLite's migration 13 and
/// PostgreSQL's 17 compute the same number (`fired_at >> 36`; both shift negative numbers
/// arithmetically, as Rust does).
pub const BLOCK_SHIFT: u32 = 36;

/// How many incidents the cache keeps at most (about 100 bytes each) before it forgets the
/// blocks used least recently; a report over more still reads them all.
const MAX_KEPT: usize = 500_000;

/// How many names (services and alert names) the cache keeps at most: names are never
/// forgotten one by one (kept blocks refer to them by index), so past this many, as after
/// months of services that each lived a day, the cache starts again empty.
const MAX_NAMES: usize = 600_000;

fn block_of(micros: i64) -> i64 {
    micros >> BLOCK_SHIFT
}

/// The cache of one database (see the module's documentation).
pub struct ReportCache {
    state: Mutex<State>,
    /// [`MAX_NAMES`], smaller in tests.
    max_names: usize,
}

impl Default for ReportCache {
    fn default() -> ReportCache {
        ReportCache {
            state: Mutex::default(),
            max_names: MAX_NAMES,
        }
    }
}

#[derive(Default)]
struct State {
    blocks: HashMap<i64, Arc<Block>>,
    services: Names,
    alertnames: Names,
    /// Incidents in `blocks`.
    kept: usize,
    /// Reports served, to forget the blocks used least recently.
    clock: u64,
    /// How often the cache started again empty ([`MAX_NAMES`]).
    restarts: u64,
}

/// The incidents of one block as of `version`, oldest first.
struct Block {
    version: i64,
    incidents: Vec<Kept>,
    /// The tallies of `incidents` ([`Kept::tally`]): alert name index and firings.
    tallies: Vec<(u32, u64)>,
    /// Incidents whose tally is `*` (their alerts are tallied from `occurrences`).
    untallied: usize,
    /// `State::clock` when a report last used it.
    used: std::sync::atomic::AtomicU64,
}

struct Kept {
    summary: IncidentSummary,
    fired_at: i64,
    seq: i64,
    /// Its alerts in `Block::tallies`; `None`: tallied apart (`*`).
    tally: Option<Range<u32>>,
}

impl ReportCache {
    /// The rows of `q` (as `sqlite::report_rows` reads them), from `reads`: one read
    /// transaction, which the caller opens.
    pub(crate) fn report_rows(
        &self,
        reads: &mut dyn BlockReads,
        q: &ReportQuery,
        flapping: usize,
    ) -> Result<ReportRows, StoreError> {
        let (since, until) = (to_micros(q.since), to_micros(q.until));
        // One lock from the blocks to the names' snapshot: the blocks index these names.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let blocks = if since < until {
            blocks(
                &mut state,
                reads,
                block_of(since)..block_of(until - 1) + 1,
                self.max_names,
            )?
        } else {
            Vec::new()
        };
        let service = match &q.service {
            Some(name) => match state.services.find(Some(name)) {
                Some(i) => Some(i),
                // No incident kept has it: none in the range.
                None => Some(u32::MAX),
            },
            None => None,
        };
        let inside = |k: &Kept| {
            k.fired_at >= since
                && k.fired_at < until
                && service.is_none_or(|s| s == k.summary.service)
        };
        let mut tallies = AlertTallies::with_capacity(
            state.services.len(),
            blocks.iter().map(|b| b.tallies.len()).sum(),
        );
        if blocks.iter().any(|b| b.untallied > 0) {
            // Rare (an incident with alerts whose names pass 1,000 bytes): read apart.
            let state = &mut *state;
            reads.untallied_alerts(q, &mut |service, name, incidents, firings| {
                let s = state.services.index(service);
                let name = state.alertnames.index(Some(name));
                tallies.add(s, name, incidents.max(0) as u64, firings.max(0) as u64);
            })?;
        }
        let (services, alertnames) = (state.services.list(), state.alertnames.list());
        drop(state);

        let mut incidents = Vec::with_capacity(blocks.iter().map(|b| b.incidents.len()).sum());
        // The few that reopened most: (reopen_count, fired_at, seq), highest first.
        let mut flaps: Vec<(u32, i64, i64)> = Vec::new();
        for b in &blocks {
            for k in b.incidents.iter().filter(|k| inside(k)) {
                incidents.push(k.summary.clone());
                if let Some(r) = &k.tally {
                    for (name, firings) in &b.tallies[r.start as usize..r.end as usize] {
                        tallies.add(k.summary.service, *name, 1, *firings);
                    }
                }
                if k.summary.reopen_count > 0 {
                    flaps.push((k.summary.reopen_count, k.fired_at, k.seq));
                }
            }
        }
        flaps.sort_unstable_by(|a, b| b.cmp(a));
        flaps.truncate(flapping);
        let flapping = flaps
            .into_iter()
            .map(|(_, _, seq)| reads.flapping(seq))
            .collect::<Result<_, _>>()?;
        Ok(ReportRows {
            services,
            incidents,
            alertnames,
            alerts: tallies.finish(),
            flapping,
        })
    }
}

/// The blocks `range`, each as the read transaction's snapshot holds it: kept ones whose
/// version is still current, the others read again (and kept).
fn blocks(
    state: &mut State,
    reads: &mut dyn BlockReads,
    range: Range<i64>,
    max_names: usize,
) -> Result<Vec<Arc<Block>>, StoreError> {
    let versions = reads.versions(range.clone())?;
    if state.services.len() + state.alertnames.len() > max_names {
        // Before any block of this report is taken: all of them index the new names.
        *state = State {
            clock: state.clock,
            restarts: state.restarts + 1,
            ..State::default()
        };
    }
    state.clock += 1;
    let now = state.clock;
    let mut out = Vec::with_capacity((range.end - range.start).clamp(0, 4096) as usize);
    for block in range.clone() {
        let version = versions.get(&block).copied().unwrap_or(0);
        let kept = state
            .blocks
            .get(&block)
            .filter(|b| b.version == version)
            .cloned();
        let b = match kept {
            Some(b) => b,
            None => {
                let b = Arc::new(read_block(reads, state, block, version)?);
                let before = state.blocks.insert(block, b.clone());
                state.kept += b.incidents.len();
                state.kept -= before.map_or(0, |old| old.incidents.len());
                b
            }
        };
        b.used.store(now, std::sync::atomic::Ordering::Relaxed);
        out.push(b);
    }
    forget_least_used(state, &range);
    Ok(out)
}

/// Forgets the blocks used least recently, outside `range` (the report's own), until at
/// most [`MAX_KEPT`] incidents are kept. Names stay: they are few beside the incidents.
fn forget_least_used(state: &mut State, range: &Range<i64>) {
    if state.kept <= MAX_KEPT {
        return;
    }
    let mut by_use: Vec<(u64, i64)> = state
        .blocks
        .iter()
        .filter(|(k, _)| !range.contains(k))
        .map(|(k, b)| (b.used.load(std::sync::atomic::Ordering::Relaxed), *k))
        .collect();
    by_use.sort_unstable();
    for (_, k) in by_use {
        if state.kept <= MAX_KEPT {
            break;
        }
        if let Some(b) = state.blocks.remove(&k) {
            state.kept -= b.incidents.len();
        }
    }
}

/// The incidents of `block`, as `reads` has them.
fn read_block(
    reads: &mut dyn BlockReads,
    state: &mut State,
    block: i64,
    version: i64,
) -> Result<Block, StoreError> {
    let mut b = Block {
        version,
        incidents: Vec::new(),
        tallies: Vec::new(),
        untallied: 0,
        used: Default::default(),
    };
    let start = block << BLOCK_SHIFT;
    // The last block's end does not fit an i64: every later `fired_at` is in it.
    let end = block
        .checked_add(1)
        .and_then(|n| n.checked_mul(1 << BLOCK_SHIFT))
        .unwrap_or(i64::MAX);
    reads.block(start, end, &mut |r| {
        let service = state.services.index(r.service);
        let first = b.tallies.len() as u32;
        let (names, tallies) = (&mut state.alertnames, &mut b.tallies);
        let tallied = read_alert_tally(r.alert_tally, |name, firings| {
            tallies.push((names.index(Some(name)), firings))
        })
        .map_err(|message| StoreError::Database {
            message,
            transient: false,
        })?;
        if !tallied {
            b.untallied += 1;
        }
        b.incidents.push(Kept {
            summary: IncidentSummary {
                service,
                status: r.status,
                fired_at: from_micros(r.fired_at),
                millis: r.times.millis(),
                reopen_count: r.reopen_count,
            },
            fired_at: r.fired_at,
            seq: r.seq,
            tally: tallied.then_some(first..b.tallies.len() as u32),
        });
        Ok(())
    })?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{
        act, ingest, Action, AlertStatus, ImpactMethod, LabelSet, Rules, Timestamp, ValidAlert,
    };
    use crate::report::{build, Period};
    use crate::store::sqlite::SqliteRepo;
    use crate::store::sqlite::{
        cached_report_rows, migrations, prune_incidents, report_rows, set_impact_start,
    };
    use rusqlite::Connection;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    /// Rows as names, in one order: two reads agree whatever their name indexes.
    fn by_name(rows: &ReportRows) -> (Vec<String>, Vec<String>, Vec<FlappingIncident>) {
        let name = |list: &Vec<Option<Arc<str>>>, i: u32| format!("{:?}", list[i as usize]);
        let mut incidents: Vec<String> = rows
            .incidents
            .iter()
            .map(|i| {
                let s = name(&rows.services, i.service);
                format!(
                    "{s} {:?} {} {:?} {}",
                    i.status, i.fired_at, i.millis, i.reopen_count
                )
            })
            .collect();
        incidents.sort();
        let mut alerts: Vec<String> = rows
            .alerts
            .iter()
            .map(|a| {
                let s = name(&rows.services, a.service);
                let n = name(&rows.alertnames, a.alertname);
                format!("{s} {n} {} {}", a.incidents, a.firings)
            })
            .collect();
        alerts.sort();
        (incidents, alerts, rows.flapping.clone())
    }

    /// Writes of every kind a report sees (new incidents in several blocks, resolutions,
    /// reopenings, alerts joining, acknowledgements, impact starts, pruning), and after each
    /// round the cached rows equal a read of the whole range, for ranges that cut blocks, a
    /// service, and a service no incident has; so do the reports built from them.
    #[test]
    fn kept_blocks_read_as_the_whole_range_after_any_write() {
        let mut conn = Connection::open_in_memory().expect("db");
        migrations::migrate(&mut conn).expect("migrate");
        // The second starts again empty whenever it knows more than 30 names.
        let caches = [
            ReportCache::default(),
            ReportCache {
                max_names: 30,
                ..ReportCache::default()
            },
        ];
        let rules = Rules::default();
        let base = t("2026-11-01T00:00:00Z");
        let mut seed: u64 = 42;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut fired: Vec<(String, Timestamp, String)> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        let mut kept_reads = 0;
        for round in 0..8 {
            let tx = conn.transaction().expect("tx");
            let now = base + chrono::Duration::days(6) + chrono::Duration::hours(round);
            for _ in 0..60 {
                let mut repo = SqliteRepo { tx: &tx, now };
                let op = next(10);
                if op < 4 || fired.is_empty() {
                    let fp = format!("{:x}", next(1 << 40));
                    let starts = base + chrono::Duration::minutes(next(6 * 24 * 60) as i64);
                    let service = format!("svc-{}", next(40));
                    let mut labels = LabelSet::from([("service".to_string(), service)]);
                    labels.insert("pod".into(), fp.clone());
                    let alert = ValidAlert {
                        status: AlertStatus::Firing,
                        alertname: ["PoolHigh", "Latency", "Errors"][next(3) as usize].into(),
                        labels,
                        annotations: LabelSet::new(),
                        starts_at: starts,
                        ends_at: None,
                        generator_url: String::new(),
                        fingerprint: fp.clone(),
                    };
                    let group = format!("g{}", next(1000));
                    let out = ingest(&mut repo, &rules, &group, &alert, now).expect("ingest");
                    ids.push(out.incident_id);
                    fired.push((fp, starts, group));
                } else if op < 7 {
                    // Resolve one, or fire it again after it resolved (a reopening).
                    let (fp, starts, group) = fired[next(fired.len() as u64) as usize].clone();
                    let ends = starts + chrono::Duration::minutes(5 + next(90) as i64);
                    let resolved = next(2) == 0;
                    let alert = ValidAlert {
                        status: if resolved {
                            AlertStatus::Resolved
                        } else {
                            AlertStatus::Firing
                        },
                        alertname: "PoolHigh".into(),
                        labels: LabelSet::from([("service".to_string(), "svc-0".to_string())]),
                        annotations: LabelSet::new(),
                        starts_at: if resolved {
                            starts
                        } else {
                            ends + chrono::Duration::minutes(1)
                        },
                        ends_at: resolved.then_some(ends),
                        generator_url: String::new(),
                        fingerprint: fp,
                    };
                    let _ = ingest(&mut repo, &rules, &group, &alert, now);
                } else if op < 9 {
                    let id = &ids[next(ids.len() as u64) as usize];
                    let _ = act(&mut repo, &rules, id, "alice", &Action::Acknowledge, now);
                } else {
                    let id = &ids[next(ids.len() as u64) as usize];
                    let at = base + chrono::Duration::minutes(next(6 * 24 * 60) as i64);
                    let _ = set_impact_start(&tx, id, at, ImpactMethod::RuleReevaluation, now);
                }
            }
            if round == 5 {
                prune_incidents(&tx, base + chrono::Duration::days(2)).expect("prune");
            }
            tx.commit().expect("commit");

            for (since, until, service) in [
                ("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z", None),
                ("2026-11-02T05:17:00Z", "2026-11-05T13:02:30Z", None),
                (
                    "2026-11-01T00:00:00Z",
                    "2026-11-08T00:00:00Z",
                    Some("svc-1"),
                ),
                (
                    "2026-11-01T00:00:00Z",
                    "2026-11-08T00:00:00Z",
                    Some("svc-none"),
                ),
                ("2026-11-03T00:00:00Z", "2026-11-03T00:00:00Z", None),
            ] {
                let q = ReportQuery {
                    since: t(since),
                    until: t(until),
                    service: service.map(str::to_string),
                };
                let read = report_rows(&conn, &q, 5).expect("read");
                for cache in &caches {
                    let kept = cached_report_rows(&conn, cache, &q, 5).expect("cached");
                    assert_eq!(by_name(&kept), by_name(&read), "round {round}: {q:?}");
                    let report =
                        |rows: &ReportRows| build(&q, Period::Week, chrono_tz::UTC, base, rows);
                    assert_eq!(report(&kept), report(&read), "round {round}: {q:?}");
                    kept_reads += kept.incidents.len();
                }
            }
        }
        assert!(kept_reads > 1000, "the ranges held incidents: {kept_reads}");
        let state = caches[0].state.lock().unwrap();
        assert!(
            state.blocks.len() > 5,
            "blocks kept: {}",
            state.blocks.len()
        );
        assert_eq!(state.restarts, 0);
        let small = caches[1].state.lock().unwrap();
        assert!(
            small.restarts > 10,
            "started again {} times",
            small.restarts
        );
    }
}
