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
//!   so the result does not depend on the order of arrival (a property test checks it).

use chrono::Duration;

use super::lifecycle::{self, Rules};
use super::model::*;
use crate::alertmanager::{correlation_key, ValidAlert};

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

    /// A fresh id for an incident opened at `now`.
    fn next_id(&mut self, now: Timestamp) -> Result<String, Self::Error>;

    /// Store an incident's header, the given members (inserted, updated or moved to it), its
    /// human events as given, and replace its derived timeline with `derived`.
    fn save(
        &mut self,
        incident: &Incident,
        members: &[&Occurrence],
        derived: &[TimelineEvent],
    ) -> Result<(), Self::Error>;

    /// A repeat or stale notification: update the occurrence's seen times and annotations and
    /// add to the incident's counters, without touching anything else.
    fn touch(
        &mut self,
        incident_id: &str,
        occurrence: &Occurrence,
        counts: NotificationCounts,
    ) -> Result<(), Self::Error>;
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
    /// Incidents split off because a resolve showed their members no longer connect.
    pub split_off: Vec<String>,
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
    match repo.occurrence(&alert.fingerprint, alert.starts_at)? {
        Some((mut occ, incident_id)) => {
            // Receipt times only move earlier when deliveries are replayed out of order; then
            // the incident's detection time must follow, so it is recomputed.
            let earlier = now < occ.first_seen_at;
            occ.first_seen_at = occ.first_seen_at.min(now);
            occ.last_seen_at = occ.last_seen_at.max(now);
            occ.annotations = alert.annotations.clone();
            let shrinks = match (occ.ends_at, alert.ends_at) {
                (None, Some(_)) => true,
                (Some(old), Some(new)) => new < old,
                _ => false,
            };
            let (counts, effect) = match (occ.status, alert.status) {
                (AlertStatus::Resolved, AlertStatus::Firing) => {
                    (one(true, false, true), Effect::Stale)
                }
                (_, AlertStatus::Resolved) if shrinks => {
                    occ.status = AlertStatus::Resolved;
                    occ.ends_at = alert.ends_at;
                    occ.resolved_by = Some("alertmanager".into());
                    (
                        one(true, false, false),
                        Effect::AlertResolved {
                            incident_resolved: false,
                        },
                    )
                }
                _ => (one(true, true, false), Effect::Duplicate),
            };
            if matches!(effect, Effect::Stale | Effect::Duplicate) && !earlier {
                repo.touch(&incident_id, &occ, counts)?;
                return Ok(simple(incident_id, &alert.fingerprint, effect));
            }
            update_member(repo, rules, &incident_id, occ, counts, effect, now)
        }
        None => place_new(repo, rules, group_key, alert, now),
    }
}

fn simple(incident_id: String, fingerprint: &str, effect: Effect) -> Outcome {
    Outcome {
        incident_id,
        fingerprint: fingerprint.to_string(),
        effect,
        severity_changed: None,
        bridged: false,
        split_off: Vec::new(),
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

fn place_new<R: Repo>(
    repo: &mut R,
    rules: &Rules,
    group_key: &str,
    alert: &ValidAlert,
    now: Timestamp,
) -> Result<Outcome, R::Error> {
    let occ = new_occurrence(group_key, alert, now);
    let key = key_of(rules, &occ.labels, group_key);
    let interval = (occ.starts_at, occ.ends_at);
    let window = rules.reopen_window;

    let mut best: Option<(Duration, Timestamp, Incident)> = None;
    let mut matches = 0;
    for id in repo.candidates(&key, occ.starts_at, occ.ends_at, window)? {
        let Some(incident) = repo.load(&id)? else {
            continue;
        };
        if incident.alerts.is_empty() {
            continue;
        }
        let sp = lifecycle::span(&incident.alerts);
        if !lifecycle::connected(interval, sp, window) {
            continue;
        }
        matches += 1;
        let rank = (lifecycle::distance(interval, sp), sp.0);
        let better = match &best {
            None => true,
            Some((d, s, b)) => (rank.0, rank.1, &incident.id) < (*d, *s, &b.id),
        };
        if better {
            best = Some((rank.0, rank.1, incident));
        }
    }

    let counts = one(true, false, false);
    match best {
        None => {
            let id = repo.next_id(now)?;
            let mut incident = Incident {
                id: id.clone(),
                key,
                title: String::new(),
                status: Status::Open,
                severity: None,
                service: None,
                impact_start: None,
                impact_start_method: ImpactMethod::StartsAt,
                fired_at: occ.starts_at,
                detected_at: now,
                acknowledged_at: None,
                acknowledged_by: None,
                resolved_at: None,
                resolved_by: None,
                reopen_count: 0,
                notifications: counts,
                version: 0,
                alerts: vec![occ],
                timeline: Vec::new(),
            };
            let derived = apply(&mut incident, rules);
            let members: Vec<&Occurrence> = incident.alerts.iter().collect();
            repo.save(&incident, &members, &derived)?;
            Ok(simple(id, &alert.fingerprint, Effect::Opened))
        }
        Some((_, _, mut incident)) => {
            let was_resolved = incident.status == Status::Resolved;
            let severity_before = incident.severity.clone();
            incident.alerts.push(occ);
            add_counts(&mut incident.notifications, counts);
            let derived = apply(&mut incident, rules);
            let member = incident.alerts.last().expect("just pushed");
            repo.save(&incident, &[member], &derived)?;
            let effect = if was_resolved && incident.status != Status::Resolved {
                Effect::Reopened
            } else {
                Effect::Joined
            };
            Ok(Outcome {
                severity_changed: (incident.severity != severity_before)
                    .then(|| (severity_before, incident.severity.clone())),
                incident_id: incident.id,
                fingerprint: alert.fingerprint.clone(),
                effect,
                bridged: matches > 1,
                split_off: Vec::new(),
            })
        }
    }
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

/// Replace a member of its incident and recompute; `effect` is what the caller saw happen.
fn update_member<R: Repo>(
    repo: &mut R,
    rules: &Rules,
    incident_id: &str,
    occ: Occurrence,
    counts: NotificationCounts,
    effect: Effect,
    now: Timestamp,
) -> Result<Outcome, R::Error> {
    let Some(mut incident) = repo.load(incident_id)? else {
        // The occurrence points at an incident that is gone (pruned): nothing to update.
        return Ok(simple(
            incident_id.to_string(),
            &occ.fingerprint,
            Effect::Duplicate,
        ));
    };
    let severity_before = incident.severity.clone();
    add_counts(&mut incident.notifications, counts);
    let Some(slot) = incident
        .alerts
        .iter_mut()
        .find(|m| m.fingerprint == occ.fingerprint && m.starts_at == occ.starts_at)
    else {
        return Ok(simple(
            incident_id.to_string(),
            &occ.fingerprint,
            Effect::Duplicate,
        ));
    };
    *slot = occ.clone();

    // A member's end moved earlier: its incident may no longer hang together.
    let groups = lifecycle::components(&incident.alerts, rules.reopen_window);
    let mut split_off = Vec::new();
    let mut home = incident.id.clone();
    if groups.len() > 1 {
        let mut all: Vec<Option<Occurrence>> = incident.alerts.drain(..).map(Some).collect();
        let mut take = |idx: &[usize]| -> Vec<Occurrence> {
            idx.iter().filter_map(|&i| all[i].take()).collect()
        };
        let kept = take(&groups[0]);
        let parts: Vec<Vec<Occurrence>> = groups[1..].iter().map(|g| take(g)).collect();
        incident.alerts = kept;
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
                ..incident.clone()
            };
            part.impact_start_method = ImpactMethod::StartsAt;
            let derived = apply(&mut part, rules);
            let refs: Vec<&Occurrence> = part.alerts.iter().collect();
            repo.save(&part, &refs, &derived)?;
            if part
                .alerts
                .iter()
                .any(|m| m.fingerprint == occ.fingerprint && m.starts_at == occ.starts_at)
            {
                home = id.clone();
            }
            split_off.push(id);
        }
    }
    let derived = apply(&mut incident, rules);
    let member = incident
        .alerts
        .iter()
        .find(|m| m.fingerprint == occ.fingerprint && m.starts_at == occ.starts_at);
    let members: Vec<&Occurrence> = member.into_iter().collect();
    repo.save(&incident, &members, &derived)?;
    let effect = match effect {
        Effect::AlertResolved { .. } => Effect::AlertResolved {
            incident_resolved: incident.status == Status::Resolved,
        },
        other => other,
    };
    Ok(Outcome {
        severity_changed: (incident.severity != severity_before)
            .then(|| (severity_before, incident.severity.clone())),
        incident_id: home,
        fingerprint: occ.fingerprint.clone(),
        effect,
        bridged: false,
        split_off,
    })
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
    repo.save(&incident, &[], &derived)
        .map_err(ActionError::Repo)?;
    Ok(incident)
}
