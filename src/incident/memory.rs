//! An in-memory [`Repo`]: the reference for the correlation property tests and for fuzzing.
//! It keeps exactly what the SQLite store keeps, in plain collections.

use std::collections::BTreeMap;
use std::convert::Infallible;

use chrono::{Datelike, Duration};

use super::correlate::{Repo, Seen};
use super::lifecycle;
use super::model::*;

/// Incidents and occurrences held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryRepo {
    /// Header and human events of each incident (its `alerts` are kept empty here).
    incidents: BTreeMap<String, Incident>,
    /// Derived timeline rows of each incident.
    derived: BTreeMap<String, Vec<TimelineEvent>>,
    /// `(fingerprint, starts_at)` → (occurrence, incident id).
    occurrences: BTreeMap<(String, Timestamp), (Occurrence, String)>,
    sequence: BTreeMap<i32, u32>,
}

impl MemoryRepo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every incident with its members and full timeline, ordered by id.
    pub fn incidents(&self) -> Vec<Incident> {
        self.incidents
            .keys()
            .map(|id| self.full(id).expect("listed ids exist"))
            .collect()
    }

    /// One incident with members and full timeline (human and derived rows, by time).
    pub fn full(&self, id: &str) -> Option<Incident> {
        let mut incident = self.incidents.get(id)?.clone();
        incident.alerts = self.members(id);
        incident
            .timeline
            .extend(self.derived.get(id).cloned().unwrap_or_default());
        incident.timeline.sort_by_key(|e| (e.at, e.kind));
        Some(incident)
    }

    fn members(&self, id: &str) -> Vec<Occurrence> {
        self.occurrences
            .values()
            .filter(|(_, owner)| owner == id)
            .map(|(o, _)| o.clone())
            .collect()
    }
}

impl Repo for MemoryRepo {
    type Error = Infallible;

    fn occurrence(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<(Occurrence, String)>, Infallible> {
        Ok(self
            .occurrences
            .get(&(fingerprint.to_string(), starts_at))
            .cloned())
    }

    fn candidates(
        &mut self,
        key: &str,
        start: Timestamp,
        end: Option<Timestamp>,
        window: Duration,
    ) -> Result<Vec<String>, Infallible> {
        Ok(self
            .incidents
            .values()
            .filter(|i| i.key == key)
            .filter(|i| {
                let members = self.members(&i.id);
                !members.is_empty()
                    && lifecycle::connected((start, end), lifecycle::span(&members), window)
            })
            .map(|i| i.id.clone())
            .collect())
    }

    fn load(&mut self, id: &str) -> Result<Option<Incident>, Infallible> {
        Ok(self.incidents.get(id).map(|i| {
            let mut i = i.clone();
            i.alerts = self.members(id);
            i
        }))
    }

    fn history(&mut self, id: &str) -> Result<Vec<TimelineEvent>, Infallible> {
        Ok(self.derived.get(id).cloned().unwrap_or_default())
    }

    fn next_id(&mut self, now: Timestamp) -> Result<String, Infallible> {
        let n = self.sequence.entry(now.year()).or_insert(0);
        *n += 1;
        Ok(format!("INC-{}-{:04}", now.year(), n))
    }

    fn save(
        &mut self,
        incident: &Incident,
        members: &[&Occurrence],
        appended: &[TimelineEvent],
    ) -> Result<(), Infallible> {
        let mut header = incident.clone();
        header.alerts = Vec::new();
        self.incidents.insert(incident.id.clone(), header);
        for m in members {
            self.occurrences.insert(
                (m.fingerprint.clone(), m.starts_at),
                ((*m).clone(), incident.id.clone()),
            );
        }
        self.derived
            .entry(incident.id.clone())
            .or_default()
            .extend_from_slice(appended);
        Ok(())
    }

    fn seen(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
    ) -> Result<Option<Seen>, Infallible> {
        Ok(self
            .occurrences
            .get(&(fingerprint.to_string(), starts_at))
            .map(|(o, id)| Seen {
                incident_id: id.clone(),
                status: o.status,
                ends_at: o.ends_at,
                first_seen_at: o.first_seen_at,
                annotations: o.annotations.clone(),
            }))
    }

    fn touch(
        &mut self,
        fingerprint: &str,
        starts_at: Timestamp,
        at: Timestamp,
        annotations: Option<&LabelSet>,
    ) -> Result<(), Infallible> {
        if let Some((o, _)) = self
            .occurrences
            .get_mut(&(fingerprint.to_string(), starts_at))
        {
            o.first_seen_at = o.first_seen_at.min(at);
            o.last_seen_at = o.last_seen_at.max(at);
            if let Some(a) = annotations {
                o.annotations = a.clone();
            }
        }
        Ok(())
    }

    fn count(&mut self, incident_id: &str, counts: NotificationCounts) -> Result<(), Infallible> {
        if let Some(i) = self.incidents.get_mut(incident_id) {
            i.notifications.received += counts.received;
            i.notifications.duplicate += counts.duplicate;
            i.notifications.stale += counts.stale;
        }
        Ok(())
    }
}
