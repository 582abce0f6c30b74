//! Storage: the one boundary between incidentd and its database.
//!
//! Everything above this module asks for operations named by what they mean (ingest a
//! notification, act on an incident, resolve occurrences Alertmanager no longer has, save
//! evidence, claim / complete / fail a job, prune, and the typed reads); none of it sees SQL,
//! a connection or a transaction. What an operation does is decided once, here, over two small
//! traits ([`Tx`] for the writes inside one transaction, [`Reads`] for the queries); each
//! backend implements them beside the others (`sqlite/`, the embedded default; `postgres/`,
//! which several replicas share).
//!
//! A write returns once it is durable: a 2xx answered after one means the data survives a
//! crash. A backend may run a write's closure more than once (PostgreSQL runs a transaction
//! again after a transient failure), so the closures only touch the database.

pub mod migrate;
pub mod postgres;
mod report_cache;
mod report_rows;
pub mod slack;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use crate::alertmanager::ValidNotification;
use crate::followup::{self, Change, JobSpec, Planner};
use crate::incident::{
    self, correlate, Action, ActionError, EventKind, ImpactMethod, Incident, NotificationCounts,
    Occurrence, Outcome, Repo, Rules, Seen, TimelineEvent, Timestamp,
};

pub use report_cache::ReportCache;
pub(crate) use report_rows::{read_alert_tally, AlertTallies, Names};
pub use report_rows::{
    AlertTally, FlappingIncident, IncidentSummary, ReportQuery, ReportRows, ReportRowsBuilder,
};
pub use sqlite::open_in_memory;

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused; transient ones (busy, locked, full disk, I/O, connection lost)
    /// are worth retrying.
    #[error("database error: {message}")]
    Database { message: String, transient: bool },
    /// The store is closed (shutting down), or opened read-only.
    #[error("the database is closed")]
    Closed,
    /// Opening or migrating the database failed.
    #[error("cannot open database {location}: {message}")]
    Open { location: String, message: String },
}

impl StoreError {
    /// Whether the caller should answer "try again later" (503) rather than "this is wrong".
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database { transient, .. } => *transient,
            StoreError::Closed => true,
            StoreError::Open { .. } => false,
        }
    }

    /// A value that cannot be encoded for storage: a bug, never worth retrying.
    pub fn encoding(what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Database {
            message: format!("cannot encode {what}: {e}"),
            transient: false,
        }
    }
}

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

/// A job to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub incident_id: Option<&'a str>,
    pub payload: &'a serde_json::Value,
    /// One pending job of this kind per incident absorbs the others; it runs at the earlier
    /// of the two times.
    pub coalesce: bool,
    /// Wall-clock time (jobs run on operational time, whatever clock the domain runs on).
    pub run_at: Timestamp,
    pub now: Timestamp,
}

/// A job's current row, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A rendered post-mortem draft as stored: what every replica serves, and what incidentd
/// last wrote to disk (to tell a person's edits from its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDraft {
    pub incident_id: String,
    pub markdown: String,
    /// Hex SHA-256 of `markdown`.
    pub sha256: String,
    pub rendered_at: Timestamp,
}

impl StoredDraft {
    pub fn new(incident_id: &str, markdown: String, rendered_at: Timestamp) -> StoredDraft {
        use sha2::Digest;
        StoredDraft {
            incident_id: incident_id.to_string(),
            sha256: hex::encode(sha2::Sha256::digest(markdown.as_bytes())),
            markdown,
            rendered_at,
        }
    }
}

/// What start-up found left over from a process that did not finish its jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Jobs that were running: queued to run again.
    pub requeued: usize,
    /// Coalesced jobs that were running while a later one of the same kind and incident was
    /// already pending: that one redoes their work, so they are marked done (superseded).
    pub superseded: usize,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub notifications: usize,
    pub jobs: usize,
    pub incidents: usize,
    /// Slack event ids kept to recognise retries.
    pub slack_events: usize,
}

/// An earlier incident related to another: same key, or alert names in common.
#[derive(Debug, Clone)]
pub struct Related {
    pub incident: Incident,
    pub same_key: bool,
    pub shared_alertnames: Vec<String>,
}

/// Everything a post-mortem draft is rendered from, read at one moment.
#[derive(Debug, Clone)]
pub struct DraftInputs {
    pub incident: Incident,
    pub evidence: Option<serde_json::Value>,
    pub related: Vec<Related>,
    /// `(file name, svg)`.
    pub charts: Vec<(String, String)>,
    /// `(channel, ts)` of the incident's Slack thread.
    pub slack_thread: Option<(String, String)>,
    /// Slack messages delivered: `(when, job payload)`, oldest first.
    pub slack_deliveries: Vec<(Timestamp, String)>,
    /// People's replies in the thread that are in the timeline, oldest first.
    pub thread_messages: Vec<incident::conversation::ThreadMessage>,
}

/// Evidence gathered for an incident, saved in one transaction with what follows from it.
#[derive(Debug, Clone)]
pub struct NewEvidence {
    pub incident_id: String,
    /// The impact start found by re-evaluating the rules, and how.
    pub impact_start: Option<(Timestamp, ImpactMethod)>,
    pub body: serde_json::Value,
    /// `(file name, svg)`; they replace the incident's charts.
    pub charts: Vec<(String, String)>,
    pub collected_at: Timestamp,
    /// The next evidence job, while the incident stays open.
    pub next: Option<(JobSpec, Timestamp)>,
}

/// What the incidents page lists: every filter is optional; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub status: Option<incident::Status>,
    pub service: Option<String>,
    pub severity: Option<String>,
    /// Incidents that fired at or after this time.
    pub fired_from: Option<Timestamp>,
    /// Incidents that fired before this time.
    pub fired_until: Option<Timestamp>,
    /// Matches an id starting with it, or a title or an alert name containing it (ASCII
    /// case-insensitive). A term of 3 characters or more is looked up in an index (SQLite
    /// FTS5; PostgreSQL `pg_trgm`, and a B-tree for id prefixes); a shorter one is tested on
    /// each incident in turn (SQLite: in a narrow covering index, not the table's rows, first
    /// on which characters each incident contains, skipping blocks of 64 that lack one).
    pub search: Option<String>,
}

/// What separates the alert names in `incidents.alertnames` (sorted, each once), the column
/// a search tests and indexes instead of every alert's row. A term without it is contained
/// in that column exactly when it is contained in one of the names.
pub(crate) const ALERTNAMES_SEPARATOR: char = '\n';

/// The shortest term a trigram index can find; shorter ones are tested on every incident.
pub(crate) const TRIGRAM: usize = 3;

/// How many incidents a search tests one by one, newest first, before it asks the trigram
/// index for the rest: enough for a term most incidents match, or for filters (a service, a
/// time) that leave few incidents, to finish there; few enough to cost about a millisecond.
pub(crate) const SEARCH_WALK: u32 = 200;

/// A search as the backends run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Search {
    /// The term as given.
    pub term: String,
    /// `LIKE` pattern (escaped with `\\`) of an id starting with the term.
    pub id_prefix: String,
    /// `LIKE` pattern of a title or an alert name containing the term.
    pub contains: String,
    /// The term, when long enough for a trigram index ([`TRIGRAM`]).
    pub indexed: Option<String>,
    /// The term contains [`ALERTNAMES_SEPARATOR`]: `incidents.alertnames` could match it
    /// across two names, so each alert's name is tested instead.
    pub per_alert: bool,
}

impl IncidentFilter {
    /// The search, if any, as the backends run it.
    pub(crate) fn search_query(&self) -> Option<Search> {
        self.search.as_deref().map(|s| {
            let mut escaped = String::with_capacity(s.len());
            for c in s.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            Search {
                term: s.to_string(),
                id_prefix: format!("{escaped}%"),
                contains: format!("%{escaped}%"),
                indexed: (s.chars().count() >= TRIGRAM).then(|| s.to_string()),
                per_alert: s.contains(ALERTNAMES_SEPARATOR),
            }
        })
    }
}

/// Where a page of [`Store::find_incidents`] starts: after the incident of creation order
/// `seq` among the unresolved (`resolved == false`, listed first) or the resolved ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub resolved: bool,
    pub seq: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = if self.resolved { 'r' } else { 'u' };
        write!(f, "{phase}{}", self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Cursor, String> {
        let bad = || {
            format!(
                "{:?} is not a page cursor",
                s.chars().take(40).collect::<String>()
            )
        };
        let resolved = match s.as_bytes().first() {
            Some(b'u') => false,
            Some(b'r') => true,
            _ => return Err(bad()),
        };
        let seq = s[1..].parse::<i64>().map_err(|_| bad())?;
        Ok(Cursor { resolved, seq })
    }
}

/// One page of [`Store::find_incidents`]: unresolved incidents first, then resolved ones,
/// each newest first; without alerts and timeline.
#[derive(Debug, Clone, Default)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// Where the next page starts, only when there is one.
    pub next: Option<Cursor>,
}

/// Why a person's action was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("incident {0} not found")]
    NotFound(String),
    /// The action makes no sense in the incident's state.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Filters of the incident list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<incident::Status>,
    pub service: Option<String>,
    /// Only incidents created before this one (paging cursor).
    pub before: Option<String>,
    pub limit: u32,
}

/// One page of the incident list.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// At most `limit` incidents, newest first.
    pub incidents: Vec<Incident>,
    /// The cursor of the next page (the last incident's id), only when there is one.
    pub next_before: Option<String>,
}

/// The writes a backend offers inside one transaction, besides the correlator's [`Repo`].
pub trait Tx: Repo<Error = StoreError> + slack::SlackTx {
    /// The time rows changed now are stamped with (`updated_at`).
    fn set_now(&mut self, now: Timestamp);
    /// Keep a notification's body exactly as received; each distinct body once (`hash` is its
    /// SHA-256).
    fn record_notification(
        &mut self,
        notification: &ValidNotification,
        hash: &[u8],
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Queue a job; returns its id (the pending job's, when coalesced into it).
    fn enqueue(&mut self, job: &NewJob) -> Result<i64, StoreError>;
    /// Serialize with other replicas' transactions that lock any of `names` (correlation
    /// keys), until this transaction ends. `names` come sorted. A no-op where a single writer
    /// does all the writing (SQLite).
    fn lock(&mut self, names: &[String]) -> Result<(), StoreError>;
    /// Claim the oldest due job of `kind` for `holder` until `lease_until`: a pending one, or
    /// a running one whose holder's lease expired (that replica died). Jobs of one incident
    /// and kind run in order.
    fn claim(
        &mut self,
        kind: &str,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
    ) -> Result<Option<Job>, StoreError>;
    /// Extend `holder`'s lease on a running job; `false` when it is no longer theirs.
    fn renew_job(
        &mut self,
        id: i64,
        holder: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Take or keep the named lease for `holder` until `until`, unless another holder's
    /// lease is still valid at `now`; `true` when `holder` has it.
    fn acquire_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Give up `holder`'s named lease.
    fn release_lease(&mut self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// The shared secret `name`: `fresh` stored if there was none yet, then what is stored.
    fn secret(&mut self, name: &str, fresh: &str) -> Result<String, StoreError>;
    /// Store the rendered draft of an incident, replacing the previous one.
    fn put_draft(&mut self, draft: &StoredDraft) -> Result<(), StoreError>;
    fn complete(&mut self, id: i64, now: Timestamp) -> Result<(), StoreError>;
    /// The job failed: retry after `retry_in`, or give up (`None`) and keep the error.
    fn fail(
        &mut self,
        id: i64,
        error: &str,
        retry_in: Option<chrono::Duration>,
        payload: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Record the impact start the evidence found; `true` when it changed.
    fn set_impact_start(
        &mut self,
        incident_id: &str,
        at: Timestamp,
        method: ImpactMethod,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Store an incident's evidence and charts, replacing what was there.
    fn put_evidence(
        &mut self,
        incident_id: &str,
        collected_at: Timestamp,
        body: &serde_json::Value,
        charts: &[(String, String)],
    ) -> Result<(), StoreError>;
    fn set_slack_thread(
        &mut self,
        incident_id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError>;
    /// Notifications received before `cutoff`, and bodies no longer used.
    fn prune_notifications(&mut self, cutoff: Timestamp) -> Result<usize, StoreError>;
    /// Finished jobs older than `cutoff`.
    fn prune_jobs(&mut self, cutoff: Timestamp) -> Result<usize, StoreError>;
    /// Incidents resolved before `cutoff`, with everything that hangs off them.
    fn prune_incidents(&mut self, cutoff: Timestamp) -> Result<usize, StoreError>;
}

/// The queries a backend answers.
pub trait Reads: slack::SlackReads {
    /// An incident with its alerts and whole stored timeline.
    fn incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError>;
    fn evidence(&mut self, incident_id: &str) -> Result<Option<serde_json::Value>, StoreError>;
    fn list_incidents(&mut self, filter: &ListFilter) -> Result<Page, StoreError>;
    fn chart(&mut self, incident_id: &str, name: &str) -> Result<Option<String>, StoreError>;
    fn charts(&mut self, incident_id: &str) -> Result<Vec<(String, String)>, StoreError>;
    fn related_incidents(
        &mut self,
        incident: &Incident,
        limit: u32,
    ) -> Result<Vec<Related>, StoreError>;
    fn slack_thread(&mut self, incident_id: &str) -> Result<Option<(String, String)>, StoreError>;
    fn slack_deliveries(
        &mut self,
        incident_id: &str,
    ) -> Result<Vec<(Timestamp, String)>, StoreError>;
    fn count_by_status(&mut self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Pending and running jobs, by kind.
    fn job_depth(&mut self) -> Result<Vec<(String, i64)>, StoreError>;
    fn job_status(&mut self, id: i64) -> Result<Option<JobStatus>, StoreError>;
    /// Every job of an incident, oldest first: `(kind, state, payload)`.
    fn jobs_of_incident(
        &mut self,
        incident_id: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>, StoreError>;
    /// Every firing occurrence: `(fingerprint, starts_at, annotations)`.
    fn firing_occurrences(
        &mut self,
    ) -> Result<Vec<(String, Timestamp, incident::LabelSet)>, StoreError>;
    /// Incidents matching `filter`, resolved or not as `resolved` says, created before
    /// `before_seq` when given, newest first, at most `limit`: `(seq, incident)`, without
    /// alerts and timeline. A search ([`IncidentFilter::search`]) uses the backend's trigram
    /// index when the term is long enough, and costs about the same however deep the page.
    fn find_incidents(
        &mut self,
        filter: &IncidentFilter,
        resolved: bool,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, Incident)>, StoreError>;
    /// The stored rendered draft of an incident.
    fn draft(&mut self, incident_id: &str) -> Result<Option<StoredDraft>, StoreError>;
    /// Reports: the incidents of `q`, oldest first, their alerts by service and alert name,
    /// and at most `flapping` of those that reopened most.
    fn report_rows(&mut self, q: &ReportQuery, flapping: usize) -> Result<ReportRows, StoreError>;
    /// A trivial query: the database answers.
    fn ping(&mut self) -> Result<(), StoreError>;
}

/// Which database.
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

/// What a change to an incident sets in motion, queued in the same transaction.
struct Followups {
    rules: Arc<Rules>,
    planner: Arc<Planner>,
}

/// The database, with its operations. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    followups: Arc<Followups>,
    /// This process, as the holder of job and named leases.
    holder: Arc<str>,
    /// How long a claimed job belongs to this process without renewal (`storage.job_lease`).
    /// Its job loop renews it while the job runs ([`Store::renew_job`], every third of it);
    /// when a replica dies, its running jobs are claimed again once their leases expire.
    job_lease: std::time::Duration,
}

/// How many related incidents a draft lists.
const RELATED: u32 = 5;

/// How many of the incidents just before an incident a backend's `related_incidents` tests
/// one by one, newest first, before it looks the older ones up by key and by alert name
/// instead. Related incidents are usually recent ones of a common alert, found in the first
/// few; an incident whose key and alert names are rare would otherwise have every older
/// incident tested (130-170 ms at 100,000 incidents on SQLite), and a lookup by a common alert
/// name is what costs (PostgreSQL hashed all 100,000 occurrences of one: 85 ms).
pub(crate) const RELATED_WALK: i64 = 500;

impl Store {
    /// Open (creating and migrating if needed) the SQLite database in `dir`, repairing what
    /// an interrupted process left behind.
    pub fn open_sqlite(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store::new(Backend::Sqlite(sqlite::Db::open(dir)?)))
    }

    /// Open an existing SQLite database for reading only (e.g. `incidentd render` beside a
    /// running daemon); writes fail with [`StoreError::Closed`].
    pub fn open_sqlite_read_only(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store::new(Backend::Sqlite(sqlite::Db::open_read_only(
            dir,
        )?)))
    }

    /// Connect to PostgreSQL and migrate its schema (under an advisory lock, so replicas
    /// starting together migrate once). Blocks: call from a blocking thread (e.g.
    /// `spawn_blocking`), never on the async runtime. Running jobs are left alone: they may be
    /// another replica's; a dead replica's are claimed again when their leases expire.
    pub fn open_postgres(config: &crate::config::PostgresConfig) -> Result<Store, StoreError> {
        Ok(Store::new(Backend::Postgres(postgres::Db::open(config)?)))
    }

    fn new(backend: Backend) -> Store {
        Store {
            backend,
            followups: Arc::new(Followups {
                rules: Arc::new(Rules::default()),
                planner: Arc::new(followup::none),
            }),
            holder: holder_name().into(),
            job_lease: crate::config::DEFAULT_JOB_LEASE,
        }
    }

    /// How long a claimed job stays this process's without renewal.
    pub fn with_job_lease(mut self, lease: std::time::Duration) -> Store {
        self.job_lease = lease;
        self
    }

    pub fn job_lease(&self) -> std::time::Duration {
        self.job_lease
    }

    /// This process's name as a holder of leases (host, pid and a random part).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The correlation rules and the planner of follow-up jobs that writes apply.
    pub fn with_followups(mut self, rules: Arc<Rules>, planner: Arc<Planner>) -> Store {
        self.followups = Arc::new(Followups { rules, planner });
        self
    }

    /// Where the data is, for logs (never a password).
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(db) => db.path().display().to_string(),
            Backend::Postgres(db) => format!("postgres://{}", db.location()),
        }
    }

    /// Finish queued work and close the database; later writes fail with
    /// [`StoreError::Closed`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(db) => db.close().await,
            Backend::Postgres(db) => db.close().await,
        }
    }

    /// Run `f` in the next write transaction; resolves once the commit is durable. If `f`
    /// fails, none of its changes are kept.
    async fn write<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |tx| {
                    let mut tx = sqlite::SqliteRepo {
                        tx,
                        now: chrono::Utc::now(),
                    };
                    f(&mut tx)
                })
                .await
            }
            Backend::Postgres(db) => db.write(move |tx| f(tx)).await,
        }
    }

    /// Run read-only queries, off the async runtime.
    async fn read<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut dyn Reads) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |c, cache| f(&mut sqlite::SqliteReads(c, cache)))
                    .await
            }
            Backend::Postgres(db) => db.read(move |r| f(r)).await,
        }
    }

    // ---------- writes ----------

    /// Store a notification exactly as received, correlate its alerts into incidents, and
    /// queue what follows: one transaction.
    pub async fn ingest(
        &self,
        notification: ValidNotification,
        raw: bytes::Bytes,
        received_at: Timestamp,
    ) -> Result<Vec<Outcome>, StoreError> {
        use sha2::Digest;
        // Hashed here, on the caller's side, so the writer only looks it up.
        let hash = sha2::Sha256::digest(&raw);
        let followups = self.followups.clone();
        self.write(move |tx| {
            tx.set_now(received_at);
            let mut keys: Vec<String> = notification
                .alerts
                .iter()
                .map(|a| correlate::key_of(&followups.rules, &a.labels, &notification.group_key))
                .collect();
            keys.sort();
            keys.dedup();
            tx.lock(&keys)?;
            tx.record_notification(&notification, &hash, &raw, received_at)?;
            let outcomes = correlate::ingest_all(
                &mut Dyn(tx),
                &followups.rules,
                &notification.group_key,
                &notification.alerts,
                received_at,
            )?;
            let changes: Vec<Change> = outcomes.iter().map(Change::Alert).collect();
            queue_followups(tx, &*followups.planner, &changes)?;
            Ok(outcomes)
        })
        .await
    }

    /// A person's action (acknowledge, note, resolve) on an incident, and what follows.
    pub async fn act(
        &self,
        id: &str,
        by: &str,
        action: Action,
        now: Timestamp,
    ) -> Result<Incident, ActError> {
        let followups = self.followups.clone();
        let (id, by) = (id.to_string(), by.to_string());
        let acted = self
            .write(move |tx| {
                tx.set_now(now);
                lock_incidents(tx, std::slice::from_ref(&id))?;
                match correlate::act(&mut Dyn(tx), &followups.rules, &id, &by, &action, now) {
                    Ok(incident) => {
                        let change = Change::Person {
                            incident_id: &id,
                            by: &by,
                            action: &action,
                        };
                        queue_followups(tx, &*followups.planner, &[change])?;
                        Ok(Ok(incident))
                    }
                    Err(ActionError::Repo(e)) => Err(e),
                    Err(ActionError::NotFound(m)) => Ok(Err(ActError::NotFound(m))),
                    Err(ActionError::Conflict(m)) => Ok(Err(ActError::Conflict(m))),
                }
            })
            .await?;
        acted
    }

    /// Resolve firing occurrences that Alertmanager no longer has (their resolve was lost):
    /// `((fingerprint, starts_at), noticed missing since)`.
    pub async fn resolve_gone(
        &self,
        gone: Vec<((String, Timestamp), Timestamp)>,
        now: Timestamp,
    ) -> Result<Vec<Outcome>, StoreError> {
        let followups = self.followups.clone();
        self.write(move |tx| {
            tx.set_now(now);
            let mut ids = Vec::new();
            for ((fingerprint, starts_at), _) in &gone {
                if let Some(seen) = tx.seen(fingerprint, *starts_at)? {
                    ids.push(seen.incident_id);
                }
            }
            lock_incidents(tx, &ids)?;
            let mut outcomes = Vec::new();
            for ((fingerprint, starts_at), since) in &gone {
                if let Some(o) = correlate::resolve_gone(
                    &mut Dyn(tx),
                    &followups.rules,
                    fingerprint,
                    *starts_at,
                    *since,
                )? {
                    outcomes.push(o);
                }
            }
            let changes: Vec<Change> = outcomes.iter().map(Change::Alert).collect();
            queue_followups(tx, &*followups.planner, &changes)?;
            Ok(outcomes)
        })
        .await
    }

    /// Save an incident's evidence, its impact start and charts, queue the next evidence job
    /// and what new evidence sets in motion (a draft, Slack's figures): one transaction.
    pub async fn save_evidence(&self, evidence: NewEvidence) -> Result<(), StoreError> {
        let followups = self.followups.clone();
        self.write(move |tx| {
            let e = &evidence;
            tx.set_now(e.collected_at);
            if let Some((at, method)) = e.impact_start {
                // The incident's row is correlation's too: a replica correlating into it
                // meanwhile would write back the impact start it read.
                lock_incidents(tx, std::slice::from_ref(&e.incident_id))?;
                tx.set_impact_start(&e.incident_id, at, method, e.collected_at)?;
            }
            tx.put_evidence(&e.incident_id, e.collected_at, &e.body, &e.charts)?;
            if let Some((spec, at)) = &e.next {
                schedule(tx, Some(&e.incident_id), spec, *at)?;
            }
            let change = Change::Evidence {
                incident_id: &e.incident_id,
            };
            queue_followups(tx, &*followups.planner, &[change])?;
            Ok(())
        })
        .await
    }

    /// Queue a job to run at `run_at` (wall clock); returns its id.
    pub async fn schedule(
        &self,
        incident_id: Option<&str>,
        spec: JobSpec,
        run_at: Timestamp,
    ) -> Result<i64, StoreError> {
        let incident_id = incident_id.map(str::to_string);
        self.write(move |tx| schedule(tx, incident_id.as_deref(), &spec, run_at))
            .await
    }

    /// Record where the incident's Slack thread is.
    pub async fn set_slack_thread(
        &self,
        incident_id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        let (id, channel, ts) = (incident_id.to_string(), channel.to_string(), ts.to_string());
        self.write(move |tx| tx.set_slack_thread(&id, &channel, &ts))
            .await
    }

    /// Claim the oldest due job of `kind` for this process, for its job lease.
    pub async fn claim_job(&self, kind: &str, now: Timestamp) -> Result<Option<Job>, StoreError> {
        let (kind, holder) = (kind.to_string(), self.holder.clone());
        let until = now + crate::time::chrono_duration(self.job_lease);
        self.write(move |tx| tx.claim(&kind, now, &holder, until))
            .await
    }

    /// Extend this process's lease on a running job by its job lease from `now`; `false`
    /// when the job is no longer this process's.
    pub async fn renew_job(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        let holder = self.holder.clone();
        let until = now + crate::time::chrono_duration(self.job_lease);
        self.write(move |tx| tx.renew_job(id, &holder, until)).await
    }

    /// Hold the named lease (e.g. the reconciler's) for `ttl` from `now`, unless another
    /// replica holds it; `true` when this process has it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), self.holder.clone());
        let until = now + crate::time::chrono_duration(ttl);
        self.write(move |tx| tx.acquire_lease(&name, &holder, now, until))
            .await
    }

    /// Give up this process's named lease, if it holds it.
    pub async fn release_lease(&self, name: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), self.holder.clone());
        self.write(move |tx| tx.release_lease(&name, &holder)).await
    }

    /// The secret `name` that every replica on this database shares: `fresh` (random bytes
    /// of the caller's) becomes it when the first process asks; later ones get that one.
    pub async fn shared_secret(&self, name: &str, fresh: [u8; 32]) -> Result<Vec<u8>, StoreError> {
        let (name, fresh) = (name.to_string(), hex::encode(fresh));
        let stored = self.write(move |tx| tx.secret(&name, &fresh)).await?;
        hex::decode(&stored).map_err(|e| StoreError::Database {
            message: format!("the stored secret is not hex: {e}"),
            transient: false,
        })
    }

    /// Store an incident's rendered draft.
    pub async fn save_draft(&self, draft: StoredDraft) -> Result<(), StoreError> {
        self.write(move |tx| tx.put_draft(&draft)).await
    }

    /// The job succeeded.
    pub async fn complete_job(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        self.write(move |tx| tx.complete(id, now)).await
    }

    /// The job failed: retry after `retry_in`, or give up (`None`). A new `payload` replaces
    /// the job's (a handler's progress, so a retry does not redo steps).
    pub async fn fail_job(
        &self,
        id: i64,
        error: String,
        retry_in: Option<chrono::Duration>,
        payload: Option<serde_json::Value>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(move |tx| tx.fail(id, &error, retry_in, payload.as_ref(), now))
            .await
    }

    /// Delete what is past retention: notifications and finished jobs before
    /// `payload_cutoff`, resolved incidents before `incident_cutoff`.
    pub async fn prune(
        &self,
        payload_cutoff: Timestamp,
        incident_cutoff: Option<Timestamp>,
    ) -> Result<Pruned, StoreError> {
        self.write(move |tx| {
            Ok(Pruned {
                notifications: tx.prune_notifications(payload_cutoff)?,
                jobs: tx.prune_jobs(payload_cutoff)?,
                incidents: match incident_cutoff {
                    Some(cutoff) => tx.prune_incidents(cutoff)?,
                    None => 0,
                },
                slack_events: slack::prune(tx, payload_cutoff)?,
            })
        })
        .await
    }

    // ---------- reads ----------

    /// An incident with its alerts and timeline (ignored notifications summed up in a row).
    pub async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let id = id.to_string();
        self.read(move |r| Ok(r.incident(&id)?.map(with_ignored_row)))
            .await
    }

    /// An incident and its evidence JSON.
    pub async fn incident_with_evidence(
        &self,
        id: &str,
    ) -> Result<Option<(Incident, Option<serde_json::Value>)>, StoreError> {
        let id = id.to_string();
        self.read(move |r| {
            let Some(incident) = r.incident(&id)? else {
                return Ok(None);
            };
            Ok(Some((with_ignored_row(incident), r.evidence(&id)?)))
        })
        .await
    }

    /// What Slack's messages are made from: the incident, its thread, its evidence.
    #[allow(clippy::type_complexity)]
    pub async fn slack_view(
        &self,
        id: &str,
    ) -> Result<
        Option<(
            Incident,
            Option<(String, String)>,
            Option<serde_json::Value>,
        )>,
        StoreError,
    > {
        let id = id.to_string();
        self.read(move |r| {
            let Some(incident) = r.incident(&id)? else {
                return Ok(None);
            };
            Ok(Some((
                with_ignored_row(incident),
                r.slack_thread(&id)?,
                r.evidence(&id)?,
            )))
        })
        .await
    }

    /// Everything a post-mortem draft needs.
    pub async fn draft_inputs(&self, id: &str) -> Result<Option<DraftInputs>, StoreError> {
        let id = id.to_string();
        self.read(move |r| {
            let Some(incident) = r.incident(&id)? else {
                return Ok(None);
            };
            let incident = with_ignored_row(incident);
            Ok(Some(DraftInputs {
                evidence: r.evidence(&id)?,
                related: r.related_incidents(&incident, RELATED)?,
                charts: r.charts(&id)?,
                slack_thread: r.slack_thread(&id)?,
                slack_deliveries: r.slack_deliveries(&id)?,
                thread_messages: slack::thread_messages(r, &id)?,
                incident,
            }))
        })
        .await
    }

    /// Incidents newest first, without alerts and timeline.
    pub async fn list_incidents(&self, filter: ListFilter) -> Result<Page, StoreError> {
        self.read(move |r| r.list_incidents(&filter)).await
    }

    /// The incidents page: unresolved incidents first, then resolved ones, each newest
    /// first, `limit` at a time from `after`. Keyset paging: every page costs the same,
    /// however deep.
    pub async fn find_incidents(
        &self,
        filter: IncidentFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<IncidentPage, StoreError> {
        self.read(move |r| find_page(r, &filter, after, limit))
            .await
    }

    /// One chart's SVG.
    pub async fn chart(&self, incident_id: &str, name: &str) -> Result<Option<String>, StoreError> {
        let (id, name) = (incident_id.to_string(), name.to_string());
        self.read(move |r| r.chart(&id, &name)).await
    }

    /// Incidents by status and queued jobs by kind, for `/metrics`.
    #[allow(clippy::type_complexity)]
    pub async fn overview(&self) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
        self.read(|r| Ok((r.count_by_status()?, r.job_depth()?)))
            .await
    }

    /// Every firing occurrence that Alertmanager's API can list, `(fingerprint, starts_at)`:
    /// Grafana-managed alerts reach incidentd from Grafana directly, never through an
    /// Alertmanager, so their absence there says nothing.
    pub async fn firing_in_alertmanager(&self) -> Result<Vec<(String, Timestamp)>, StoreError> {
        self.read(|r| {
            Ok(r.firing_occurrences()?
                .into_iter()
                .filter(|(_, _, annotations)| !incident::raised_by_grafana(annotations))
                .map(|(fingerprint, starts_at, _)| (fingerprint, starts_at))
                .collect())
        })
        .await
    }

    /// A job's current state.
    pub async fn job_status(&self, id: i64) -> Result<Option<JobStatus>, StoreError> {
        self.read(move |r| r.job_status(id)).await
    }

    /// Every job of an incident, oldest first: `(kind, state, payload)`.
    pub async fn jobs_of_incident(
        &self,
        incident_id: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>, StoreError> {
        let id = incident_id.to_string();
        self.read(move |r| r.jobs_of_incident(&id)).await
    }

    /// An incident's stored draft, as last rendered.
    pub async fn draft(&self, incident_id: &str) -> Result<Option<StoredDraft>, StoreError> {
        let id = incident_id.to_string();
        self.read(move |r| r.draft(&id)).await
    }

    /// What a report is built from (`crate::report::build`), with at most `flapping` of
    /// the incidents that reopened most.
    pub async fn report_rows(
        &self,
        q: ReportQuery,
        flapping: usize,
    ) -> Result<ReportRows, StoreError> {
        self.read(move |r| r.report_rows(&q, flapping)).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|r| r.ping()).await
    }
}

/// One page of the incidents list over the two phases (unresolved, then resolved). One row
/// more than `limit` is read, so the page knows whether another follows.
fn find_page(
    r: &mut dyn Reads,
    filter: &IncidentFilter,
    after: Option<Cursor>,
    limit: u32,
) -> Result<IncidentPage, StoreError> {
    let want = limit as usize + 1;
    let mut rows: Vec<(bool, i64, Incident)> = Vec::new();
    let wants_unresolved = filter.status != Some(incident::Status::Resolved);
    let wants_resolved =
        filter.status.is_none() || filter.status == Some(incident::Status::Resolved);
    if wants_unresolved && !after.is_some_and(|c| c.resolved) {
        let before = after.map(|c| c.seq);
        for (seq, i) in r.find_incidents(filter, false, before, want as u32)? {
            rows.push((false, seq, i));
        }
    }
    if wants_resolved && rows.len() < want {
        let before = after.filter(|c| c.resolved).map(|c| c.seq);
        let rest = (want - rows.len()) as u32;
        for (seq, i) in r.find_incidents(filter, true, before, rest)? {
            rows.push((true, seq, i));
        }
    }
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|(resolved, seq, _)| Cursor {
            resolved: *resolved,
            seq: *seq,
        })
    } else {
        None
    };
    Ok(IncidentPage {
        incidents: rows.into_iter().map(|(_, _, i)| i).collect(),
        next,
    })
}

/// Lock the correlation keys of these incidents (see [`Tx::lock`]), so that what
/// correlation changes under a key is changed by one replica at a time.
fn lock_incidents(tx: &mut dyn Tx, ids: &[String]) -> Result<(), StoreError> {
    let mut keys = Vec::new();
    for id in ids {
        if let Some(incident) = tx.load(id)? {
            keys.push(incident.key);
        }
    }
    keys.sort();
    keys.dedup();
    tx.lock(&keys)
}

/// A name for this process among replicas: host, pid and a random part.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let nonce: u32 = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish() as u32
    };
    format!("{host}/{}/{nonce:08x}", std::process::id())
}

/// Queue the jobs that `changes` call for, in the caller's transaction.
fn queue_followups(
    tx: &mut dyn Tx,
    planner: &Planner,
    changes: &[Change],
) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    for (incident_id, spec) in followup::plan(planner, changes) {
        schedule(tx, Some(&incident_id), &spec, now + spec.delay)?;
    }
    Ok(())
}

fn schedule(
    tx: &mut dyn Tx,
    incident_id: Option<&str>,
    spec: &JobSpec,
    run_at: Timestamp,
) -> Result<i64, StoreError> {
    tx.enqueue(&NewJob {
        kind: spec.kind,
        incident_id,
        payload: &spec.payload,
        coalesce: spec.coalesce,
        run_at,
        now: chrono::Utc::now(),
    })
}

/// Repeats and stale notifications change nothing; the timeline says how many there were, in
/// one row at the last time an alert was seen.
fn with_ignored_row(mut incident: Incident) -> Incident {
    let n = incident.notifications;
    if n.duplicate + n.stale > 0 {
        let last_seen = incident.alerts.iter().map(|o| o.last_seen_at).max();
        if let Some(at) = last_seen {
            let mut parts = Vec::new();
            if n.duplicate > 0 {
                parts.push(format!("{} repeated", n.duplicate));
            }
            if n.stale > 0 {
                parts.push(format!("{} stale (firing after resolved)", n.stale));
            }
            incident.timeline.push(TimelineEvent {
                at,
                kind: EventKind::Notifications,
                actor: incident::ACTOR_ALERTMANAGER.into(),
                text: format!(
                    "{} of {} alert notifications changed nothing and were ignored",
                    parts.join(" and "),
                    n.received
                ),
            });
        }
    }
    incident.timeline.sort_by_key(|e| e.at);
    incident
}

/// The correlator's [`Repo`] over any backend's transaction.
struct Dyn<'a>(&'a mut dyn Tx);

impl Repo for Dyn<'_> {
    type Error = StoreError;

    fn occurrence(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<(Occurrence, String)>, StoreError> {
        self.0.occurrence(fingerprint, starts_at)
    }

    fn candidates(
        &mut self,
        key: &str,
        start: Timestamp,
        end: Option<Timestamp>,
        window: chrono::Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.0.candidates(key, start, end, window)
    }

    fn load(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.0.load(id)
    }

    fn history(&mut self, id: &str) -> Result<Vec<TimelineEvent>, StoreError> {
        self.0.history(id)
    }

    fn next_id(&mut self, now: Timestamp) -> Result<String, StoreError> {
        self.0.next_id(now)
    }

    fn save(
        &mut self,
        incident: &Incident,
        members: &[&Occurrence],
        appended: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        self.0.save(incident, members, appended)
    }

    fn seen(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<Seen>, StoreError> {
        self.0.seen(fingerprint, starts_at)
    }

    fn touch(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
        at: Timestamp,
        annotations: Option<&incident::LabelSet>,
    ) -> Result<(), StoreError> {
        self.0.touch(fingerprint, starts_at, at, annotations)
    }

    fn count(&mut self, incident_id: &str, counts: NotificationCounts) -> Result<(), StoreError> {
        self.0.count(incident_id, counts)
    }
}
