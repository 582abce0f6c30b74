//! Correlation: where each alert occurrence belongs, and what a notification or a person's
//! action changes. Storage sits behind the [`Repo`] trait so this logic stays pure and is the
//! same code whether it runs on SQLite, in memory (tests, fuzzing) or on a later backend.
//!
//! The rules (DESIGN.md, "Domain rules"):
//! - an occurrence is `(fingerprint, startsAt)`; repeats update it and never duplicate it;
//! - resolved wins: a `firing` for a resolved occurrence is stale and ignored;
//! - an occurrence joins the incident of its key whose span it comes within
//!   `reopen_window` of (an open incident's span has no end, so it joins any open incident);
//!   otherwise it opens a new one;
//! - incidents are never merged: a late occurrence that would bridge two incidents joins the
//!   nearer one. They are split when a resolve shows that their members no longer connect,
//!   so the result does not depend on the order of arrival (a property test checks it); the
//!   part holding the alert that opened the incident keeps its id.

use std::collections::{BTreeSet, HashMap};

use chrono::Duration;

use super::alert::{correlation_key, ValidAlert};
use super::lifecycle::{self, Rules};
use super::model::*;

/// What the correlator needs from storage, inside one transaction.
pub trait Repo {
    type Error;

    /// The occurrence with this identity and the id of its incident.
    fn occurrence(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<(Occurrence, String)>, Self::Error>;

    /// Ids of incidents of `key` whose span `[fired_at, end]` comes within `window` of
    /// `[start, end]` (open ends reach forever).
    fn candidates(
        &mut self,
        key: &str,
        start: Timestamp,
        end: Option<Timestamp>,
        window: Duration,
    ) -> Result<Vec<String>, Self::Error>;

    /// An incident with all its members in `alerts` and only its human events in `timeline`.
    fn load(&mut self, id: &str) -> Result<Option<Incident>, Self::Error>;

    /// The derived (not human) timeline rows stored for an incident so far.
    fn history(&mut self, id: &str) -> Result<Vec<TimelineEvent>, Self::Error>;

    /// A fresh id for an incident opened at `now`.
    fn next_id(&mut self, now: Timestamp) -> Result<String, Self::Error>;

    /// Store an incident's header, the given members (inserted, updated or moved to it), its
    /// human events as given, and append `appended` to its derived timeline. The timeline is
    /// append-only history: a derived row once stored is never removed or changed.
    fn save(
        &mut self,
        incident: &Incident,
        members: &[&Occurrence],
        appended: &[TimelineEvent],
    ) -> Result<(), Self::Error>;

    /// What a repeat needs to know of a known occurrence, cheaply (the common case).
    fn seen(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<Seen>, Self::Error>;

    /// A repeat or stale notification: mark the occurrence seen at `at` and replace its
    /// annotations when they changed, nothing else.
    fn touch(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
        at: Timestamp,
        annotations: Option<&LabelSet>,
    ) -> Result<(), Self::Error>;

    /// Add to an incident's notification counters.
    fn count(&mut self, incident_id: &str, counts: NotificationCounts) -> Result<(), Self::Error>;
}

/// A known occurrence as a repeat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub incident_id: String,
    pub status: AlertStatus,
    pub ends_at: Option<Timestamp>,
    pub first_seen_at: Timestamp,
    pub annotations: LabelSet,
}

/// What one alert of a notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A new incident opened.
    Opened,
    /// The occurrence joined an existing incident.
    Joined,
    /// The occurrence joined a resolved incident and reopened it.
    Reopened,
    /// The occurrence resolved; the incident may or may not have resolved with it.
    AlertResolved { incident_resolved: bool },
    /// A repeat of something known.
    Duplicate,
    /// `firing` for an occurrence already resolved: ignored.
    Stale,
}

/// The outcome of one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub incident_id: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    pub effect: Effect,
    /// The incident's severity changed: `(from, to)`.
    pub severity_changed: Option<(Option<String>, Option<String>)>,
    /// The occurrence could have joined more than one incident and joined the nearer.
    pub bridged: bool,
    /// The incident this alert resolved in was split, because the resolve showed that its
    /// members no longer connect.
    pub split: Option<Split>,
}

/// An incident split in parts: `from` keeps the part holding the alert that opened it; each
/// of `into` is a new incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub from: String,
    pub into: Vec<String>,
}

impl Outcome {
    /// Whether the incident changed in a way later stages (drafts, Slack) care about.
    pub fn changed(&self) -> bool {
        !matches!(self.effect, Effect::Duplicate | Effect::Stale)
    }
}

fn one(received: bool, duplicate: bool, stale: bool) -> NotificationCounts {
    NotificationCounts {
        received: received as u64,
        duplicate: duplicate as u64,
        stale: stale as u64,
    }
}

/// Apply one alert of a notification received at `now`.
pub fn ingest<R: Repo>(
    repo: &mut R,
    rules: &Rules,
    group_key: &str,
    alert: &ValidAlert,
    now: Timestamp,
) -> Result<Outcome, R::Error> {
    let mut outcomes = ingest_all(repo, rules, group_key, std::slice::from_ref(alert), now)?;
    Ok(outcomes.remove(0))
}

/// Apply every alert of a notification received at `now`, in order. Each incident the
/// notification changes is recomputed and written once at the end, and repeats only add to
/// counters, so a notification of thousands of alerts costs linear time.
pub fn ingest_all<R: Repo>(
    repo: &mut R,
    rules: &Rules,
    group_key: &str,
    alerts: &[ValidAlert],
    now: Timestamp,
) -> Result<Vec<Outcome>, R::Error> {
    let mut batch = Batch::new(rules, now);
    for alert in alerts {
        batch.alert(repo, group_key, alert)?;
    }
    batch.finish(repo)
}

/// Resolve a firing occurrence that Alertmanager no longer has (its resolve notification was
/// lost), as noticed at `noticed_at`. `None` when there is nothing to do. Should the real
/// resolve arrive later, its earlier `endsAt` replaces this one.
pub fn resolve_gone<R: Repo>(
    repo: &mut R,
    rules: &Rules,
    fingerprint: &str,
    starts_at: Timestamp,
    noticed_at: Timestamp,
) -> Result<Option<Outcome>, R::Error> {
    let mut batch = Batch::new(rules, noticed_at);
    let Some(seen) = repo.seen(fingerprint, starts_at)? else {
        return Ok(None);
    };
    if seen.status == AlertStatus::Resolved {
        return Ok(None);
    }
    let Some(w) = batch.load(repo, &seen.incident_id)? else {
        return Ok(None);
    };
    let key = (fingerprint.to_string(), starts_at);
    let Some(&(_, m)) = batch.members.get(&key) else {
        return Ok(None);
    };
    let work = &mut batch.work[w];
    let occ = &mut work.incident.alerts[m];
    occ.status = AlertStatus::Resolved;
    occ.ends_at = Some(noticed_at.max(occ.starts_at));
    occ.resolved_by = Some("reconciler".into());
    work.touched(key.clone(), true);
    batch.push_outcome(
        w,
        key,
        Effect::AlertResolved {
            incident_resolved: false,
        },
    );
    Ok(batch.finish(repo)?.into_iter().next())
}

type Key = (String, Timestamp);

/// An incident loaded or opened while applying one notification.
struct Work {
    incident: Incident,
    /// Members to write back.
    changed: BTreeSet<Key>,
    /// Status and severity before this notification; `None` when it opened the incident.
    before: Option<(Status, Option<String>)>,
    dirty: bool,
    /// A member's end moved earlier: the incident may no longer hang together.
    shrank: bool,
    /// The incident's span, kept current as members join; `None` when it must be recomputed.
    span: Option<(Timestamp, Option<Timestamp>)>,
}

impl Work {
    fn touched(&mut self, key: Key, shrank: bool) {
        self.changed.insert(key);
        self.dirty = true;
        if shrank {
            self.shrank = true;
            self.span = None;
        }
    }

    fn span(&mut self) -> (Timestamp, Option<Timestamp>) {
        *self
            .span
            .get_or_insert_with(|| lifecycle::span(&self.incident.alerts))
    }
}

/// The incidents one notification touches, applied in memory and written once at the end.
struct Batch<'r> {
    rules: &'r Rules,
    now: Timestamp,
    work: Vec<Work>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, Vec<usize>>,
    /// Every member of a loaded incident: `(work index, member index)`.
    members: HashMap<Key, (usize, usize)>,
    /// Repeats of occurrences whose incident is not loaded: counters only.
    repeats: Vec<(String, NotificationCounts)>,
    outcomes: Vec<Outcome>,
    /// For each outcome: its occurrence and, when it touched a loaded incident, which one.
    origins: Vec<(Key, Option<usize>)>,
}

enum Meaning {
    Stale,
    Resolve,
    Repeat,
}

/// What a notification's alert means for an occurrence in state `(status, ends_at)`.
fn classify(status: AlertStatus, ends_at: Option<Timestamp>, alert: &ValidAlert) -> Meaning {
    let shrinks = match (ends_at, alert.ends_at) {
        (None, Some(_)) => true,
        (Some(old), Some(new)) => new < old,
        _ => false,
    };
    match (status, alert.status) {
        (AlertStatus::Resolved, AlertStatus::Firing) => Meaning::Stale,
        (_, AlertStatus::Resolved) if shrinks => Meaning::Resolve,
        _ => Meaning::Repeat,
    }
}

impl<'r> Batch<'r> {
    fn new(rules: &'r Rules, now: Timestamp) -> Self {
        Batch {
            rules,
            now,
            work: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            members: HashMap::new(),
            repeats: Vec::new(),
            outcomes: Vec::new(),
            origins: Vec::new(),
        }
    }

    fn register(&mut self, incident: Incident, before: Option<(Status, Option<String>)>) -> usize {
        let w = self.work.len();
        for (m, o) in incident.alerts.iter().enumerate() {
            self.members
                .insert((o.fingerprint.clone(), o.starts_at), (w, m));
        }
        self.by_id.insert(incident.id.clone(), w);
        self.by_key.entry(incident.key.clone()).or_default().push(w);
        self.work.push(Work {
            incident,
            changed: BTreeSet::new(),
            before,
            dirty: false,
            shrank: false,
            span: None,
        });
        w
    }

    /// The incident in the batch, loading it from the store on first use.
    fn load<R: Repo>(&mut self, repo: &mut R, id: &str) -> Result<Option<usize>, R::Error> {
        if let Some(&w) = self.by_id.get(id) {
            return Ok(Some(w));
        }
        let Some(incident) = repo.load(id)? else {
            return Ok(None);
        };
        let before = Some((incident.status, incident.severity.clone()));
        Ok(Some(self.register(incident, before)))
    }

    fn push_outcome(&mut self, w: usize, key: Key, effect: Effect) {
        self.outcomes
            .push(simple(self.work[w].incident.id.clone(), &key.0, effect));
        self.origins.push((key, Some(w)));
    }

    fn alert<R: Repo>(
        &mut self,
        repo: &mut R,
        group_key: &str,
        alert: &ValidAlert,
    ) -> Result<(), R::Error> {
        let key: Key = (alert.fingerprint.clone(), alert.starts_at);
        if !self.members.contains_key(&key) {
            match repo.seen(&alert.fingerprint, alert.starts_at)? {
                None => return self.place_new(repo, group_key, alert, key),
                Some(seen) => {
                    // Receipt times only move earlier when deliveries are replayed out of
                    // order; then the incident's detection time must follow.
                    let earlier = self.now < seen.first_seen_at;
                    let change = classify(seen.status, seen.ends_at, alert);
                    if matches!(change, Meaning::Repeat | Meaning::Stale)
                        && !earlier
                        && !self.by_id.contains_key(&seen.incident_id)
                    {
                        let stale = matches!(change, Meaning::Stale);
                        let counts = one(true, !stale, stale);
                        let changed =
                            (seen.annotations != alert.annotations).then_some(&alert.annotations);
                        repo.touch(&alert.fingerprint, alert.starts_at, self.now, changed)?;
                        match self
                            .repeats
                            .iter_mut()
                            .find(|(id, _)| *id == seen.incident_id)
                        {
                            Some((_, total)) => add_counts(total, counts),
                            None => self.repeats.push((seen.incident_id.clone(), counts)),
                        }
                        let effect = if stale {
                            Effect::Stale
                        } else {
                            Effect::Duplicate
                        };
                        self.outcomes
                            .push(simple(seen.incident_id, &alert.fingerprint, effect));
                        self.origins.push((key, None));
                        return Ok(());
                    }
                    if self.load(repo, &seen.incident_id)?.is_none()
                        || !self.members.contains_key(&key)
                    {
                        // Its incident is gone (pruned): nothing to update.
                        self.outcomes.push(simple(
                            seen.incident_id,
                            &alert.fingerprint,
                            Effect::Duplicate,
                        ));
                        self.origins.push((key, None));
                        return Ok(());
                    }
                }
            }
        }
        let (w, m) = self.members[&key];
        let now = self.now;
        let work = &mut self.work[w];
        let occ = &mut work.incident.alerts[m];
        occ.first_seen_at = occ.first_seen_at.min(now);
        occ.last_seen_at = occ.last_seen_at.max(now);
        occ.annotations = alert.annotations.clone();
        let (counts, effect, shrank) = match classify(occ.status, occ.ends_at, alert) {
            Meaning::Stale => (one(true, false, true), Effect::Stale, false),
            Meaning::Resolve => {
                occ.status = AlertStatus::Resolved;
                occ.ends_at = alert.ends_at;
                occ.resolved_by = Some("alertmanager".into());
                let effect = Effect::AlertResolved {
                    incident_resolved: false,
                };
                (one(true, false, false), effect, true)
            }
            Meaning::Repeat => (one(true, true, false), Effect::Duplicate, false),
        };
        add_counts(&mut work.incident.notifications, counts);
        work.touched(key.clone(), shrank);
        self.push_outcome(w, key, effect);
        Ok(())
    }

    fn place_new<R: Repo>(
        &mut self,
        repo: &mut R,
        group_key: &str,
        alert: &ValidAlert,
        key: Key,
    ) -> Result<(), R::Error> {
        let occ = new_occurrence(group_key, alert, self.now);
        let incident_key = key_of(self.rules, &occ.labels, group_key);
        let interval = (occ.starts_at, occ.ends_at);
        let window = self.rules.reopen_window;

        let mut ids = repo.candidates(&incident_key, occ.starts_at, occ.ends_at, window)?;
        for &w in self.by_key.get(&incident_key).into_iter().flatten() {
            let id = &self.work[w].incident.id;
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        let mut best: Option<(Duration, Timestamp, String, usize)> = None;
        let mut matches = 0;
        for id in ids {
            let Some(w) = self.load(repo, &id)? else {
                continue;
            };
            if self.work[w].incident.alerts.is_empty() {
                continue;
            }
            let sp = self.work[w].span();
            if !lifecycle::connected(interval, sp, window) {
                continue;
            }
            matches += 1;
            let rank = (lifecycle::distance(interval, sp), sp.0, id);
            if best
                .as_ref()
                .is_none_or(|(d, s, i, _)| (&rank.0, &rank.1, &rank.2) < (d, s, i))
            {
                best = Some((rank.0, rank.1, rank.2, w));
            }
        }

        let w = match best {
            Some((_, _, _, w)) => w,
            None => {
                let id = repo.next_id(self.now)?;
                let incident = Incident {
                    id,
                    key: incident_key,
                    title: String::new(),
                    status: Status::Open,
                    severity: None,
                    service: None,
                    impact_start: None,
                    impact_start_method: ImpactMethod::StartsAt,
                    fired_at: occ.starts_at,
                    detected_at: self.now,
                    acknowledged_at: None,
                    acknowledged_by: None,
                    resolved_at: None,
                    resolved_by: None,
                    reopen_count: 0,
                    notifications: NotificationCounts::default(),
                    version: 0,
                    alerts: Vec::new(),
                    timeline: Vec::new(),
                };
                self.register(incident, None)
            }
        };
        let work = &mut self.work[w];
        let m = work.incident.alerts.len();
        if let Some((start, end)) = work.span {
            work.span = Some((start.min(occ.starts_at), lifecycle::later(end, occ.ends_at)));
        }
        work.incident.alerts.push(occ);
        add_counts(&mut work.incident.notifications, one(true, false, false));
        work.touched(key.clone(), false);
        let effect = if work.before.is_none() && m == 0 {
            Effect::Opened
        } else {
            Effect::Joined
        };
        self.members.insert(key.clone(), (w, m));
        self.push_outcome(w, key, effect);
        if matches > 1 {
            if let Some(o) = self.outcomes.last_mut() {
                o.bridged = true;
            }
        }
        Ok(())
    }

    /// Recompute and write every changed incident once, splitting those whose members no
    /// longer connect; flush the counters of repeats.
    fn finish<R: Repo>(mut self, repo: &mut R) -> Result<Vec<Outcome>, R::Error> {
        let rules = self.rules;
        let now = self.now;
        let mut moved: HashMap<Key, String> = HashMap::new();
        let mut split_off: HashMap<usize, Vec<String>> = HashMap::new();
        // Rows telling the part that keeps the id which alerts left, and for where.
        let mut split_rows: HashMap<usize, Vec<TimelineEvent>> = HashMap::new();
        for w in 0..self.work.len() {
            if !self.work[w].dirty {
                continue;
            }
            let work = &mut self.work[w];
            if work.shrank {
                let groups = lifecycle::components(&work.incident.alerts, rules.reopen_window);
                if groups.len() > 1 {
                    // The incident keeps its id (and with it its Slack thread, acknowledgement
                    // and notes) for the part people know it by: the one holding the alert
                    // that opened it, the first to reach us.
                    let members = &work.incident.alerts;
                    let first_seen = |i: &usize| {
                        let o = &members[*i];
                        (o.first_seen_at, o.starts_at, &o.fingerprint)
                    };
                    let keep = (0..groups.len())
                        .min_by_key(|&g| groups[g].iter().map(first_seen).min())
                        .unwrap_or(0);
                    let mut all: Vec<Option<Occurrence>> =
                        work.incident.alerts.drain(..).map(Some).collect();
                    let mut take = |idx: &[usize]| -> Vec<Occurrence> {
                        idx.iter().filter_map(|&i| all[i].take()).collect()
                    };
                    let kept = take(&groups[keep]);
                    let parts: Vec<Vec<Occurrence>> = groups
                        .iter()
                        .enumerate()
                        .filter(|(g, _)| *g != keep)
                        .map(|(_, members)| take(members))
                        .collect();
                    work.incident.alerts = kept;
                    for members in parts {
                        let id = repo.next_id(now)?;
                        let mut part = Incident {
                            id: id.clone(),
                            alerts: members,
                            timeline: Vec::new(),
                            version: 0,
                            notifications: NotificationCounts::default(),
                            acknowledged_at: None,
                            acknowledged_by: None,
                            impact_start_method: ImpactMethod::StartsAt,
                            ..work.incident.clone()
                        };
                        let derived = apply(&mut part, rules);
                        let appended = record(repo, &mut part, derived, None)?;
                        let refs: Vec<&Occurrence> = part.alerts.iter().collect();
                        repo.save(&part, &refs, &appended)?;
                        for o in &part.alerts {
                            moved.insert((o.fingerprint.clone(), o.starts_at), id.clone());
                        }
                        let mut names: Vec<&str> =
                            part.alerts.iter().map(|o| o.alertname.as_str()).collect();
                        names.sort_unstable();
                        names.dedup();
                        split_rows.entry(w).or_default().push(TimelineEvent {
                            at: now,
                            kind: EventKind::Split,
                            actor: ACTOR_INCIDENTD.into(),
                            text: format!(
                                "Split: {} moved to {id} (it had ended long before the others began)",
                                names.join(", ")
                            ),
                        });
                        split_off.entry(w).or_default().push(id);
                    }
                }
            }
            let derived = apply(&mut work.incident, rules);
            let late = work.before.as_ref().map(|(status, _)| {
                // The occurrence that fired in this notification, should it reopen the
                // incident although it started before the incident resolved.
                let reopener = work
                    .incident
                    .alerts
                    .iter()
                    .filter(|o| o.ends_at.is_none())
                    .filter(|o| work.changed.contains(&(o.fingerprint.clone(), o.starts_at)))
                    .min_by_key(|o| (o.starts_at, &o.fingerprint))
                    .map(|o| (o.alertname.clone(), o.starts_at));
                Transition {
                    before: *status,
                    now,
                    reopener,
                }
            });
            let mut appended = record(repo, &mut work.incident, derived, late)?;
            appended.extend(split_rows.remove(&w).unwrap_or_default());
            let refs: Vec<&Occurrence> = work
                .incident
                .alerts
                .iter()
                .filter(|o| work.changed.contains(&(o.fingerprint.clone(), o.starts_at)))
                .collect();
            repo.save(&work.incident, &refs, &appended)?;
        }

        // Effects that only the final state tells: reopened, resolved, severity raised.
        let mut reopened: BTreeSet<usize> = BTreeSet::new();
        let mut severity_told: BTreeSet<usize> = BTreeSet::new();
        for (o, (key, w)) in self.outcomes.iter_mut().zip(&self.origins) {
            if let Some(id) = moved.get(key) {
                o.incident_id = id.clone();
            }
            let Some(w) = *w else { continue };
            let work = &self.work[w];
            let status = work.incident.status;
            match &mut o.effect {
                Effect::AlertResolved { incident_resolved } => {
                    *incident_resolved = status == Status::Resolved && !moved.contains_key(key);
                    if let Some(into) = split_off.remove(&w) {
                        o.split = Some(Split {
                            from: work.incident.id.clone(),
                            into,
                        });
                    }
                }
                Effect::Joined => {
                    if let Some((Status::Resolved, _)) = work.before {
                        if status != Status::Resolved && reopened.insert(w) {
                            o.effect = Effect::Reopened;
                        }
                    }
                }
                _ => {}
            }
            if let Some((_, before)) = &work.before {
                if *before != work.incident.severity
                    && matches!(o.effect, Effect::Joined | Effect::Reopened)
                    && severity_told.insert(w)
                {
                    o.severity_changed = Some((before.clone(), work.incident.severity.clone()));
                }
            }
        }
        for (incident_id, counts) in &self.repeats {
            repo.count(incident_id, *counts)?;
        }
        Ok(self.outcomes)
    }
}

fn simple(incident_id: String, fingerprint: &str, effect: Effect) -> Outcome {
    Outcome {
        incident_id,
        fingerprint: fingerprint.to_string(),
        effect,
        severity_changed: None,
        bridged: false,
        split: None,
    }
}

fn new_occurrence(group_key: &str, alert: &ValidAlert, now: Timestamp) -> Occurrence {
    Occurrence {
        fingerprint: alert.fingerprint.clone(),
        starts_at: alert.starts_at,
        ends_at: alert.ends_at,
        status: alert.status,
        alertname: alert.alertname.clone(),
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        generator_url: alert.generator_url.clone(),
        group_key: group_key.to_string(),
        first_seen_at: now,
        last_seen_at: now,
        resolved_by: alert.ends_at.map(|_| "alertmanager".to_string()),
    }
}

/// The correlation key of an alert: the `group_by` labels, else Alertmanager's group key.
pub fn key_of(rules: &Rules, labels: &LabelSet, group_key: &str) -> String {
    correlation_key(labels, &rules.group_by).unwrap_or_else(|| format!("groupKey={group_key}"))
}

fn add_counts(total: &mut NotificationCounts, more: NotificationCounts) {
    total.received += more.received;
    total.duplicate += more.duplicate;
    total.stale += more.stale;
}

/// Recompute an incident's derived fields in place; returns the derived timeline.
fn apply(incident: &mut Incident, rules: &Rules) -> Vec<TimelineEvent> {
    let d = lifecycle::derive(&incident.alerts, &incident.timeline, rules);
    incident.status = d.status;
    incident.title = d.title;
    incident.severity = d.severity;
    incident.service = d.service;
    incident.fired_at = d.fired_at;
    incident.detected_at = d.detected_at;
    incident.acknowledged_at = d.acknowledged_at;
    incident.acknowledged_by = d.acknowledged_by;
    incident.resolved_at = d.resolved_at;
    incident.resolved_by = d.resolved_by;
    incident.reopen_count = d.reopen_count;
    // A start found by the evidence job stands, unless an alert that fired even earlier
    // joined since: then it is stale, and firing is the best known until the job runs again.
    if incident.impact_start_method == ImpactMethod::StartsAt
        || incident.impact_start.is_none_or(|s| s > d.fired_at)
    {
        incident.impact_start = Some(d.fired_at);
        incident.impact_start_method = ImpactMethod::StartsAt;
    }
    incident.version += 1;
    d.events
}

/// How a notification changed an incident that existed before it.
struct Transition {
    /// The incident's status before the notification.
    before: Status,
    /// When the notification was received.
    now: Timestamp,
    /// A firing occurrence the notification carried: `(alertname, startsAt)`.
    reopener: Option<(String, Timestamp)>,
}

/// The timeline is append-only history. Of the rows `derived` from the incident's new state,
/// return those its stored history lacks, plus the rows a late delivery calls for: when a
/// notification reopens a resolved incident (or resolves it again) without a row of its own in
/// the derivation (a late `firing` whose `startsAt` lies before the resolve joins the earlier
/// episode rather than starting a new one), a `reopened` (or `resolved`) row at the moment
/// incidentd learned it. Sets the reopen count to the reopenings the history records.
fn record<R: Repo>(
    repo: &mut R,
    incident: &mut Incident,
    derived: Vec<TimelineEvent>,
    transition: Option<Transition>,
) -> Result<Vec<TimelineEvent>, R::Error> {
    let stored = if incident.version > 1 || transition.is_some() {
        repo.history(&incident.id)?
    } else {
        Vec::new()
    };
    let mut appended = lifecycle::unseen(&stored, derived);
    if let Some(t) = transition {
        let now_resolved = incident.status == Status::Resolved;
        let was_resolved = t.before == Status::Resolved;
        let has = |kind: EventKind, rows: &[TimelineEvent]| rows.iter().any(|e| e.kind == kind);
        if was_resolved && !now_resolved && !has(EventKind::Reopened, &appended) {
            let text = match &t.reopener {
                Some((name, starts_at)) => format!(
                    "Reopened: {name} fired again (a late notification: it started at {}, before the incident resolved)",
                    starts_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => "Reopened: an alert fired again (a late notification)".to_string(),
            };
            appended.push(TimelineEvent {
                at: t.now,
                kind: EventKind::Reopened,
                actor: ACTOR_INCIDENTD.into(),
                text,
            });
        } else if !was_resolved
            && now_resolved
            && incident.resolved_by.is_none()
            && !has(EventKind::Resolved, &appended)
            && has(EventKind::Reopened, &stored)
        {
            appended.push(TimelineEvent {
                at: t.now,
                kind: EventKind::Resolved,
                actor: ACTOR_INCIDENTD.into(),
                text: "Resolved again: every alert resolved".into(),
            });
        }
    }
    incident.reopen_count = stored
        .iter()
        .chain(&appended)
        .filter(|e| e.kind == EventKind::Reopened)
        .count() as u32;
    Ok(appended)
}

/// Why a person's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError<E> {
    /// No incident has that id.
    #[error("incident {0} not found")]
    NotFound(String),
    /// The action makes no sense in the incident's state (e.g. acknowledging a resolved one).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error(transparent)]
    Repo(E),
}

/// A person's action on an incident.
#[derive(Debug, Clone)]
pub enum Action {
    Acknowledge,
    Note(String),
    Resolve,
}

/// Apply a person's action at `now` and return the updated incident (human events only in
/// its timeline).
pub fn act<R: Repo>(
    repo: &mut R,
    rules: &Rules,
    id: &str,
    by: &str,
    action: &Action,
    now: Timestamp,
) -> Result<Incident, ActionError<R::Error>> {
    let mut incident = repo
        .load(id)
        .map_err(ActionError::Repo)?
        .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
    let event = match action {
        Action::Acknowledge => {
            match incident.status {
                Status::Resolved => {
                    return Err(ActionError::Conflict(format!(
                        "incident {id} is resolved; there is nothing to acknowledge"
                    )))
                }
                Status::Acknowledged => {
                    return Err(ActionError::Conflict(format!(
                        "incident {id} is already acknowledged"
                    )))
                }
                Status::Open => {}
            }
            TimelineEvent {
                at: now,
                kind: EventKind::Acknowledged,
                actor: by.to_string(),
                text: format!("Acknowledged by {by}"),
            }
        }
        Action::Note(text) => TimelineEvent {
            at: now,
            kind: EventKind::NoteAdded,
            actor: by.to_string(),
            text: text.clone(),
        },
        Action::Resolve => {
            if incident.status == Status::Resolved {
                return Err(ActionError::Conflict(format!(
                    "incident {id} is already resolved"
                )));
            }
            TimelineEvent {
                at: now,
                kind: EventKind::Resolved,
                actor: by.to_string(),
                text: format!("Resolved by hand by {by}"),
            }
        }
    };
    incident.timeline.push(event);
    let derived = apply(&mut incident, rules);
    let appended = record(repo, &mut incident, derived, None).map_err(ActionError::Repo)?;
    repo.save(&incident, &[], &appended)
        .map_err(ActionError::Repo)?;
    Ok(incident)
}
