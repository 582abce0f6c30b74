//! What the evidence's figures are, when they are read: "peak so far" and "now (HH:MM, still
//! firing)" while the incident is open; "at resolution" only from data collected at or after
//! the resolve; "not measured yet" for a resolved incident whose full snapshot is not in yet.
//! Pure; the draft's metrics table, impact figures and chart captions use it.

use chrono_tz::Tz;

use super::evidence::{Evidence, ImpactFigure, Snapshot};
use crate::incident::{Incident, Status, Timestamp};

/// Where the stored evidence stands against the incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceState {
    /// The incident is open: figures are as of `as_of`.
    Open { as_of: Option<Timestamp> },
    /// Resolved, but the evidence was collected before the data after the resolve existed:
    /// figures end at `as_of`; the full snapshot is due at `due` (when known).
    Pending {
        as_of: Option<Timestamp>,
        due: Option<Timestamp>,
    },
    /// Resolved, and the evidence reaches past the resolve: "at resolution" is true.
    Resolved,
}

/// The state of `ev` for `incident`.
pub fn state(incident: &Incident, ev: &Evidence) -> EvidenceState {
    let as_of = ev.data_until.or(ev.collected_at);
    let resolved = match (incident.status, incident.resolved_at) {
        (Status::Resolved, Some(r)) => r,
        _ => return EvidenceState::Open { as_of },
    };
    let covered = match ev.data_until {
        Some(_) => ev.resolved_at == Some(resolved),
        // Evidence stored by an older incidentd: only what was collected after the resolve.
        None => ev.collected_at.is_some_and(|c| c > resolved),
    };
    if covered {
        EvidenceState::Resolved
    } else {
        EvidenceState::Pending {
            as_of,
            due: ev
                .full_delay_seconds
                .map(|s| resolved + chrono::Duration::seconds(s as i64)),
        }
    }
}

fn hhmm(at: Timestamp, zone: Tz) -> String {
    at.with_timezone(&zone).format("%H:%M").to_string()
}

/// Headings, cells and captions for one state, in one zone.
#[derive(Debug, Clone)]
pub struct View {
    pub state: EvidenceState,
    zone: Tz,
    generated_at: Timestamp,
}

impl View {
    pub fn new(incident: &Incident, ev: &Evidence, zone: Tz, generated_at: Timestamp) -> View {
        View {
            state: state(incident, ev),
            zone,
            generated_at,
        }
    }

    /// The peak column's heading: `Peak`, `Peak so far`, `Peak until 14:02`.
    pub fn peak_heading(&self) -> String {
        match &self.state {
            EvidenceState::Resolved => "Peak".into(),
            EvidenceState::Open { .. } => "Peak so far".into(),
            EvidenceState::Pending { as_of: Some(a), .. } => {
                format!("Peak until {}", hhmm(*a, self.zone))
            }
            EvidenceState::Pending { as_of: None, .. } => "Peak before the resolve".into(),
        }
    }

    /// The last column's heading: `At resolution`, or `Now (14:02, still firing)`.
    pub fn last_heading(&self) -> String {
        match &self.state {
            EvidenceState::Open { as_of: Some(a) } => {
                format!("Now ({}, still firing)", hhmm(*a, self.zone))
            }
            EvidenceState::Open { as_of: None } => "Now (still firing)".into(),
            _ => "At resolution".into(),
        }
    }

    /// Why the "at resolution" cells are empty, for a resolved incident without its full
    /// snapshot: `not measured yet (evidence after the resolve is collected at 14:07)`.
    pub fn not_measured(&self) -> Option<String> {
        match &self.state {
            EvidenceState::Pending { due: Some(d), .. } if *d >= self.generated_at => Some(format!(
                "not measured yet (evidence after the resolve is collected at {})",
                hhmm(*d, self.zone)
            )),
            EvidenceState::Pending { due: Some(d), .. } => Some(format!(
                "not measured yet (evidence after the resolve was due at {}; Prometheus has not answered since)",
                hhmm(*d, self.zone)
            )),
            EvidenceState::Pending { due: None, .. } => Some("not measured yet".into()),
            _ => None,
        }
    }

    /// The last column's value of a row: the true value at resolution, the latest value
    /// while open, nothing (see [`View::not_measured`]) while the full snapshot is pending.
    pub fn last_value(&self, s: &Snapshot, legacy: bool) -> Option<f64> {
        match &self.state {
            EvidenceState::Resolved => s.at_resolution,
            // Older evidence kept the latest value in `at_resolution`.
            EvidenceState::Open { .. } => s.latest.or(if legacy { s.at_resolution } else { None }),
            EvidenceState::Pending { .. } => None,
        }
    }

    /// What an impact figure counts when the evidence does not reach the resolve:
    /// `Failed requests (5xx), until 14:02 (still firing)`.
    pub fn impact(&self, figures: &[ImpactFigure]) -> Vec<ImpactFigure> {
        let suffix = match &self.state {
            EvidenceState::Resolved => None,
            EvidenceState::Open { as_of: Some(a) } => {
                Some(format!(", so far (until {}, still firing)", hhmm(*a, self.zone)))
            }
            EvidenceState::Open { as_of: None } => Some(", so far (still firing)".to_string()),
            EvidenceState::Pending { as_of, .. } => Some(match as_of {
                Some(a) => format!(
                    ", until {} only (counted before the resolve; not measured over the whole incident yet)",
                    hhmm(*a, self.zone)
                ),
                None => ", before the resolve only".to_string(),
            }),
        };
        figures
            .iter()
            .map(|f| ImpactFigure {
                name: match &suffix {
                    Some(s) => format!("{}{s}", f.name),
                    None => f.name.clone(),
                },
                ..f.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{ImpactMethod, NotificationCounts};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn incident(status: Status, resolved_at: Option<&str>) -> Incident {
        Incident {
            id: "INC-2026-0001".into(),
            key: "k".into(),
            title: "t".into(),
            status,
            severity: None,
            service: None,
            impact_start: None,
            impact_start_method: ImpactMethod::StartsAt,
            fired_at: t("2026-11-23T02:26:28Z"),
            detected_at: t("2026-11-23T02:26:29Z"),
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: resolved_at.map(t),
            resolved_by: None,
            reopen_count: 0,
            notifications: NotificationCounts::default(),
            version: 1,
            alerts: Vec::new(),
            timeline: Vec::new(),
        }
    }

    fn snap() -> Snapshot {
        Snapshot {
            name: "Pool".into(),
            query: "q".into(),
            unit: super::super::Unit::Ratio,
            baseline: Some(0.2),
            peak: Some(0.98),
            lower_is_worse: false,
            at_resolution: Some(0.25),
            latest: Some(0.97),
            latest_at: Some(t("2026-11-23T02:26:31Z")),
            no_data: false,
            note: None,
            change: None,
            threshold: Some(0.95),
            chart: None,
            alertname: None,
        }
    }

    fn quick() -> Evidence {
        Evidence {
            collected_at: Some(t("2026-11-23T02:26:31Z")),
            data_until: Some(t("2026-11-23T02:26:31Z")),
            resolved_at: None,
            full_delay_seconds: Some(300),
            impact: vec![ImpactFigure {
                name: "Requests served".into(),
                value: "441".into(),
                query: "q".into(),
            }],
            snapshots: vec![snap()],
            ..Evidence::default()
        }
    }

    #[test]
    fn an_open_incident_shows_the_peak_so_far_and_the_value_now() {
        let i = incident(Status::Open, None);
        let v = View::new(&i, &quick(), Tz::UTC, t("2026-11-23T02:27:00Z"));
        assert_eq!(v.peak_heading(), "Peak so far");
        assert_eq!(v.last_heading(), "Now (02:26, still firing)");
        assert_eq!(v.last_value(&snap(), false), Some(0.97));
        assert_eq!(v.not_measured(), None);
        assert!(v.impact(&quick().impact)[0].name.contains("so far"));
    }

    #[test]
    fn a_resolved_incident_with_only_the_quick_snapshot_shows_no_value_at_resolution() {
        let i = incident(Status::Resolved, Some("2026-11-23T02:27:10Z"));
        let v = View::new(&i, &quick(), Tz::UTC, t("2026-11-23T02:27:12Z"));
        assert_eq!(v.last_heading(), "At resolution");
        assert_eq!(v.peak_heading(), "Peak until 02:26");
        assert_eq!(v.last_value(&snap(), false), None);
        assert_eq!(
            v.not_measured().as_deref(),
            Some("not measured yet (evidence after the resolve is collected at 02:32)")
        );
        assert!(v.impact(&quick().impact)[0]
            .name
            .contains("before the resolve"));
        // Long after the due time without a full snapshot: say so.
        let v = View::new(&i, &quick(), Tz::UTC, t("2026-11-23T03:00:00Z"));
        assert!(v
            .not_measured()
            .expect("pending")
            .contains("was due at 02:32"));
    }

    #[test]
    fn at_resolution_only_from_evidence_that_reaches_past_this_resolve() {
        let i = incident(Status::Resolved, Some("2026-11-23T02:27:10Z"));
        let mut full = quick();
        full.collected_at = Some(t("2026-11-23T02:32:10Z"));
        full.data_until = Some(t("2026-11-23T02:32:10Z"));
        full.resolved_at = Some(t("2026-11-23T02:27:10Z"));
        let v = View::new(&i, &full, Tz::UTC, t("2026-11-23T02:33:00Z"));
        assert_eq!(v.state, EvidenceState::Resolved);
        assert_eq!(v.last_value(&snap(), false), Some(0.25));
        assert_eq!(v.impact(&full.impact)[0].name, "Requests served");
        // Reopened and resolved again later: the old full snapshot is not this resolve's.
        let again = incident(Status::Resolved, Some("2026-11-23T02:40:00Z"));
        let v = View::new(&again, &full, Tz::UTC, t("2026-11-23T02:41:00Z"));
        assert!(matches!(v.state, EvidenceState::Pending { .. }));
    }
}
