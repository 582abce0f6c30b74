//! What one write transaction (a batch of operations, see `db.rs`) knows and postpones across
//! its operations, so that the operations of a batch that repeat what an earlier one did cost
//! no round trip to the server:
//!
//! - **locks held**: an advisory lock this transaction already holds is not asked for again;
//! - **`seen` answers**: an occurrence's state, once read, is answered from memory (with the
//!   transaction's own postponed touches applied) until a statement that may change it runs;
//! - **postponed writes**: the notification record, the `touch` of a repeated occurrence and
//!   the counters of its incident are kept in memory and sent together, in one statement each
//!   for the whole batch, before the next statement that could see them and before COMMIT.
//!
//! Why it means the same as running every statement at once: the postponed writes only
//! change what `seen` answers (applied to it here) and rows that no other statement of the
//! transaction reads before they are sent (every other statement sends them first, see
//! `Conn::before` in `tx.rs`). What another transaction commits meanwhile cannot make a
//! remembered answer stale: occurrences change only in correlation, under the advisory lock
//! of their correlation key, which this transaction holds from the moment it took it until it
//! ends; an answer read before a lock was taken is forgotten when it is taken. (The one
//! exception, pruning a long-resolved incident, deletes rows whose later updates then change
//! nothing, as if the operation had run just before the prune.)
//!
//! An operation's own postponed writes are kept apart until it succeeds: a failed operation's
//! are dropped with everything it remembered, as its savepoint is rolled back. Writes of
//! succeeded operations are sent before the next operation's savepoint, so rolling that one
//! back never undoes them. A failure while sending them breaks the whole transaction: the
//! engine runs the batch again, without postponing when the error was not transient, so that
//! an operation whose data the server refuses fails alone, as it did before.

use std::collections::{HashMap, HashSet};

use postgres::Transaction;

use super::statements::{prepared, StmtCache};
use crate::incident::{LabelSet, NotificationCounts, Seen, Timestamp};
use crate::store::StoreError;
use crate::time::to_micros;

/// An occurrence: `(fingerprint, starts_at in microseconds)`.
pub(super) type OccKey = (String, i64);

/// One transaction's memory; made by the engine for each attempt at a batch.
pub struct Pending {
    /// Whether writes are postponed and `seen` answers remembered (locks held are tracked
    /// either way).
    pub(super) defer: bool,
    /// The current operation runs inside savepoint `op` (earlier operations' work is kept).
    in_savepoint: bool,
    /// Savepoint `op` is open, from an earlier operation that succeeded inside it (it is
    /// released together with the creation of the next one).
    open: bool,
    /// The current operation has sent a statement (after its savepoint, when it needs one).
    started: bool,
    /// Advisory locks (by name) this transaction holds.
    held: HashSet<String>,
    /// Of those, the ones the current operation took (released if it fails).
    acquired: Vec<String>,
    /// Remembered `seen` answers.
    seen: HashMap<OccKey, Option<Seen>>,
    /// Postponed writes of operations that succeeded.
    done: Writes,
    /// Postponed writes of the current operation.
    op: Writes,
    /// Sending postponed writes of succeeded operations failed: the transaction is unusable.
    pub(super) broken: Option<StoreError>,
}

/// A notification to record: its row, and the hash of its body (kept in `Writes::bodies`).
pub(super) struct Notification {
    pub hash: Vec<u8>,
    pub received_at: i64,
    pub receiver: String,
    pub status: String,
    pub group_key: String,
    pub alerts: i64,
}

/// The net effect of `touch` calls on one occurrence.
#[derive(Clone)]
pub(super) struct Touch {
    pub first: i64,
    pub last: i64,
    /// The annotations last set, if any.
    pub annotations: Option<String>,
}

#[derive(Default)]
pub(super) struct Writes {
    /// Bodies by hash, each once.
    pub bodies: HashMap<Vec<u8>, Vec<u8>>,
    /// In the order received.
    pub notifications: Vec<Notification>,
    pub touches: HashMap<OccKey, Touch>,
    /// Counter increments by incident: `(received, duplicate, stale)`.
    pub counts: HashMap<String, (i64, i64, i64)>,
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.notifications.is_empty() && self.touches.is_empty() && self.counts.is_empty()
    }

    /// Add `later`'s writes after these.
    fn absorb(&mut self, later: Writes) {
        for (hash, body) in later.bodies {
            self.bodies.entry(hash).or_insert(body);
        }
        self.notifications.extend(later.notifications);
        for (key, t) in later.touches {
            match self.touches.get_mut(&key) {
                Some(mine) => mine.merge(t),
                None => {
                    self.touches.insert(key, t);
                }
            }
        }
        for (id, (r, d, s)) in later.counts {
            let c = self.counts.entry(id).or_default();
            c.0 += r;
            c.1 += d;
            c.2 += s;
        }
    }

    /// Send them, in one statement (one round trip) in the usual cases: each body stored
    /// once (if not stored already), the notifications, the touches and the counters.
    /// Returns whether anything was sent.
    fn send(
        &self,
        tx: &mut Transaction<'_>,
        stmts: &mut StmtCache,
    ) -> Result<bool, postgres::Error> {
        if self.is_empty() {
            return Ok(false);
        }
        let (hashes, bodies): (Vec<&[u8]>, Vec<&[u8]>) = self
            .bodies
            .iter()
            .map(|(h, b)| (h.as_slice(), b.as_slice()))
            .unzip();
        let rows: Vec<&Notification> = self.notifications.iter().collect();
        let (h, at, receiver, status, group_key, alerts) = columns(&rows);
        let n = self.touches.len();
        let (mut fps, mut starts, mut firsts, mut lasts, mut annotations) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((fp, start), t) in &self.touches {
            fps.push(fp.as_str());
            starts.push(*start);
            firsts.push(t.first);
            lasts.push(t.last);
            annotations.push(t.annotations.as_deref());
        }
        let n = self.counts.len();
        let (mut ids, mut received, mut duplicate, mut stale) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (id, (r, d, s)) in &self.counts {
            ids.push(id.as_str());
            received.push(*r);
            duplicate.push(*d);
            stale.push(*s);
        }
        // Every data-modifying part of a WITH runs, read or not; they all see the snapshot the
        // statement starts with, and change different tables.
        let s = prepared(
            tx,
            stmts,
            "WITH b AS (SELECT * FROM unnest($1::bytea[], $2::bytea[]) AS b(hash, body)), \
             stored AS (INSERT INTO payloads (hash, body) SELECT hash, body FROM b \
               WHERE NOT EXISTS (SELECT 1 FROM payloads p WHERE p.hash = b.hash) \
               ON CONFLICT (hash) DO NOTHING RETURNING id, hash), \
             payload AS (SELECT id, hash FROM payloads WHERE hash = ANY($3) \
               UNION ALL SELECT id, hash FROM stored), \
             recorded AS (INSERT INTO notifications (received_at, receiver, status, group_key, \
               alerts, payload_id) \
               SELECT r.received_at, r.receiver, r.status, r.group_key, r.alerts, payload.id \
               FROM unnest($3::bytea[], $4::bigint[], $5::text[], $6::text[], $7::text[], \
                 $8::bigint[]) WITH ORDINALITY \
                 AS r(hash, received_at, receiver, status, group_key, alerts, n) \
               JOIN payload ON payload.hash = r.hash ORDER BY r.n \
               RETURNING payload_id), \
             touched AS (UPDATE occurrences o SET first_seen_at = LEAST(o.first_seen_at, u.first), \
               last_seen_at = GREATEST(o.last_seen_at, u.last), \
               annotations = COALESCE(u.annotations, o.annotations) \
               FROM unnest($9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[]) \
                 AS u(fingerprint, starts_at, first, last, annotations) \
               WHERE o.fingerprint = u.fingerprint AND o.starts_at = u.starts_at), \
             counted AS (UPDATE incidents i SET received = i.received + u.r, \
               duplicate = i.duplicate + u.d, stale = i.stale + u.s \
               FROM unnest($14::text[], $15::bigint[], $16::bigint[], $17::bigint[]) \
                 AS u(id, r, d, s) \
               WHERE i.id = u.id) \
             SELECT payload_id FROM recorded",
        )?;
        let recorded = tx.query(
            &s,
            &[
                &hashes,
                &bodies,
                &h,
                &at,
                &receiver,
                &status,
                &group_key,
                &alerts,
                &fps,
                &starts,
                &firsts,
                &lasts,
                &annotations,
                &ids,
                &received,
                &duplicate,
                &stale,
            ],
        )?;
        if recorded.len() < rows.len() {
            record_missing(tx, stmts, &rows, &recorded)?;
        }
        Ok(true)
    }
}

/// Another replica stored a body after the statement's snapshot was taken (the insert
/// waited for it, then did nothing), so its notifications were left out: a new statement
/// sees its row.
fn record_missing(
    tx: &mut Transaction<'_>,
    stmts: &mut StmtCache,
    rows: &[&Notification],
    recorded: &[postgres::Row],
) -> Result<(), postgres::Error> {
    let ids: Vec<i64> = recorded
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let s = prepared(tx, stmts, "SELECT hash FROM payloads WHERE id = ANY($1)")?;
    let found: HashSet<Vec<u8>> = tx
        .query(&s, &[&ids])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let missing: Vec<&Notification> = rows
        .iter()
        .copied()
        .filter(|n| !found.contains(&n.hash))
        .collect();
    let (h, at, receiver, status, group_key, alerts) = columns(&missing);
    let s = prepared(
        tx,
        stmts,
        "INSERT INTO notifications (received_at, receiver, status, group_key, alerts, \
           payload_id) \
         SELECT r.received_at, r.receiver, r.status, r.group_key, r.alerts, p.id \
         FROM unnest($1::bytea[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
           $6::bigint[]) WITH ORDINALITY \
           AS r(hash, received_at, receiver, status, group_key, alerts, n) \
         JOIN payloads p ON p.hash = r.hash ORDER BY r.n",
    )?;
    tx.execute(&s, &[&h, &at, &receiver, &status, &group_key, &alerts])?;
    Ok(())
}

/// The notifications' columns, as arrays.
#[allow(clippy::type_complexity)]
fn columns<'n>(
    rows: &[&'n Notification],
) -> (
    Vec<&'n [u8]>,
    Vec<i64>,
    Vec<&'n str>,
    Vec<&'n str>,
    Vec<&'n str>,
    Vec<i64>,
) {
    let mut c = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for n in rows.iter().copied() {
        c.0.push(n.hash.as_slice());
        c.1.push(n.received_at);
        c.2.push(n.receiver.as_str());
        c.3.push(n.status.as_str());
        c.4.push(n.group_key.as_str());
        c.5.push(n.alerts);
    }
    c
}

impl Touch {
    fn merge(&mut self, later: Touch) {
        self.first = self.first.min(later.first);
        self.last = self.last.max(later.last);
        if later.annotations.is_some() {
            self.annotations = later.annotations;
        }
    }
}

impl Pending {
    pub fn new(defer: bool) -> Pending {
        Pending {
            defer,
            in_savepoint: false,
            open: false,
            started: false,
            held: HashSet::new(),
            acquired: Vec::new(),
            seen: HashMap::new(),
            done: Writes::default(),
            op: Writes::default(),
            broken: None,
        }
    }

    /// The next operation starts; `in_savepoint` when earlier operations' work is kept (its
    /// statements then run inside savepoint `op`, taken before the first of them).
    pub fn start_op(&mut self, in_savepoint: bool) {
        self.in_savepoint = in_savepoint;
        self.started = false;
        self.acquired.clear();
        self.op = Writes::default();
    }

    /// Whether the current operation sent a statement (so there is something to roll back).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The current operation succeeded: its postponed writes join the transaction's.
    pub fn op_succeeded(&mut self) {
        if self.started && self.in_savepoint {
            self.open = true;
        }
        let op = std::mem::take(&mut self.op);
        self.done.absorb(op);
        self.acquired.clear();
    }

    /// The current operation failed and what it sent was rolled back to its savepoint
    /// (which is then released): forget what it did and what it read.
    pub fn op_failed(&mut self) {
        if self.started && self.in_savepoint {
            self.open = false;
        }
        self.op = Writes::default();
        for name in self.acquired.drain(..) {
            self.held.remove(&name);
        }
        self.seen.clear();
    }

    /// Before a statement of the current operation: send the succeeded operations' writes
    /// and take its savepoint, the first time; then, unless the statement only takes a lock or
    /// reads `seen` (`keeps`), send its own writes and forget the remembered answers.
    pub(super) fn before(
        &mut self,
        tx: &mut Transaction<'_>,
        stmts: &mut StmtCache,
        keeps: bool,
    ) -> Result<(), StoreError> {
        if !self.started {
            self.started = true;
            let done = std::mem::take(&mut self.done);
            let mut first = done.send(tx, stmts).map(drop);
            if first.is_ok() && self.in_savepoint {
                first = tx.batch_execute(if self.open {
                    "RELEASE op; SAVEPOINT op"
                } else {
                    "SAVEPOINT op"
                });
            }
            if let Err(e) = first {
                let e = StoreError::from(e);
                self.broken = Some(e.clone());
                return Err(e);
            }
        }
        if !keeps {
            let op = std::mem::take(&mut self.op);
            op.send(tx, stmts)?;
            self.seen.clear();
        }
        Ok(())
    }

    /// After the last operation: send what is postponed. Returns whether a statement was sent.
    pub fn finish(
        &mut self,
        tx: &mut Transaction<'_>,
        stmts: &mut StmtCache,
    ) -> Result<bool, StoreError> {
        let done = std::mem::take(&mut self.done);
        Ok(done.send(tx, stmts)?)
    }

    pub(super) fn holds(&self, name: &str) -> bool {
        self.held.contains(name)
    }

    /// The lock was taken by the current operation: answers remembered before may be stale.
    pub(super) fn took(&mut self, name: &str) {
        self.held.insert(name.to_string());
        self.acquired.push(name.to_string());
        self.seen.clear();
    }

    /// A remembered answer of `seen`, if any (`Some(None)`: known not to exist).
    pub(super) fn seen(&self, key: &OccKey) -> Option<Option<Seen>> {
        if !self.defer {
            return None;
        }
        self.seen.get(key).cloned()
    }

    /// Remember what `seen` read from the server, with this transaction's postponed touches
    /// applied; returns it.
    pub(super) fn remember(&mut self, key: OccKey, read: Option<Seen>) -> Option<Seen> {
        if !self.defer {
            return read;
        }
        let mut seen = read;
        if let Some(s) = seen.as_mut() {
            for w in [&self.done, &self.op] {
                if let Some(t) = w.touches.get(&key) {
                    apply(s, t);
                }
            }
        }
        self.seen.insert(key, seen.clone());
        seen
    }

    /// Postpone a touch, if postponing; `false` when it is to be sent now.
    pub(super) fn touch(
        &mut self,
        key: OccKey,
        at: Timestamp,
        annotations: Option<&LabelSet>,
        json: impl Fn(&LabelSet) -> String,
    ) -> bool {
        if !self.defer {
            return false;
        }
        let at = to_micros(at);
        let t = Touch {
            first: at,
            last: at,
            annotations: annotations.map(json),
        };
        if let Some(Some(s)) = self.seen.get_mut(&key) {
            apply(s, &t);
        }
        match self.op.touches.get_mut(&key) {
            Some(mine) => mine.merge(t),
            None => {
                self.op.touches.insert(key, t);
            }
        }
        true
    }

    /// Postpone counting notifications of an incident, if postponing.
    pub(super) fn count(&mut self, incident_id: &str, n: NotificationCounts) -> bool {
        if !self.defer {
            return false;
        }
        let c = self.op.counts.entry(incident_id.to_string()).or_default();
        c.0 += n.received as i64;
        c.1 += n.duplicate as i64;
        c.2 += n.stale as i64;
        true
    }

    /// Postpone recording a notification, if postponing.
    pub(super) fn record(&mut self, n: Notification, body: &[u8]) -> bool {
        if !self.defer {
            return false;
        }
        if !self.done.bodies.contains_key(&n.hash) && !self.op.bodies.contains_key(&n.hash) {
            self.op.bodies.insert(n.hash.clone(), body.to_vec());
        }
        self.op.notifications.push(n);
        true
    }
}

/// What a touch does to the occurrence's `seen` state.
fn apply(seen: &mut Seen, t: &Touch) {
    seen.first_seen_at = seen.first_seen_at.min(crate::time::from_micros(t.first));
    if let Some(a) = &t.annotations {
        seen.annotations = serde_json::from_str(a).unwrap_or_default();
    }
}
