//! The incident domain's data: occurrences of alerts, incidents, timeline events.
//!
//! These types carry no behaviour beyond derived figures (TTD, TTA, TTR, duration);
//! correlation and lifecycle live in `correlate.rs` and `lifecycle.rs`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every time in incidentd is a UTC instant.
pub type Timestamp = DateTime<Utc>;

/// Label or annotation set, sorted by name.
pub type LabelSet = BTreeMap<String, String>;

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// At least one alert is firing and nobody has acknowledged the current episode.
    Open,
    /// Firing, and someone acknowledged it after it last (re)opened.
    Acknowledged,
    /// Every alert resolved, or a person resolved it by hand.
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "acknowledged" => Some(Status::Acknowledged),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }
}

/// An alert occurrence's state as Alertmanager last told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// How `impact_start` was found (see DESIGN.md, "Times").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpactMethod {
    /// The rule's expression re-evaluated over a range before `startsAt`.
    RuleReevaluation,
    /// `startsAt − for`, with `for` from the rule.
    StartsAtMinusFor,
    /// Only `startsAt` is known: impact start is when the alert fired.
    StartsAt,
}

impl ImpactMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ImpactMethod::RuleReevaluation => "rule_reevaluation",
            ImpactMethod::StartsAtMinusFor => "starts_at_minus_for",
            ImpactMethod::StartsAt => "starts_at",
        }
    }

    pub fn parse(s: &str) -> Option<ImpactMethod> {
        match s {
            "rule_reevaluation" => Some(ImpactMethod::RuleReevaluation),
            "starts_at_minus_for" => Some(ImpactMethod::StartsAtMinusFor),
            "starts_at" => Some(ImpactMethod::StartsAt),
            _ => None,
        }
    }
}

/// One firing episode of one alert: identity `(fingerprint, starts_at)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub fingerprint: String,
    pub starts_at: Timestamp,
    /// Set once resolved: the earliest `endsAt` any resolved notification reported.
    pub ends_at: Option<Timestamp>,
    pub status: AlertStatus,
    pub alertname: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub generator_url: String,
    /// Alertmanager's `groupKey` of the notification that first carried it.
    pub group_key: String,
    /// Receipt time of the first notification that carried it (our clock).
    pub first_seen_at: Timestamp,
    /// Receipt time of the latest notification that carried it (our clock).
    pub last_seen_at: Timestamp,
    /// Who resolved it: `alertmanager`, or `reconciler` when Alertmanager no longer had it.
    pub resolved_by: Option<String>,
}

impl Occurrence {
    /// The `severity` label, if any.
    pub fn severity(&self) -> Option<&str> {
        self.labels.get("severity").map(String::as_str)
    }

    /// Whether Grafana-managed alerting raised it: the decoder keeps Grafana's per-alert
    /// fields as annotations named `grafana.…` ([`crate::incident::grafana_keys`]), and
    /// Grafana sends at least its `silenceURL` with every alert.
    pub fn from_grafana(&self) -> bool {
        raised_by_grafana(&self.annotations)
    }

    /// Grafana's values of the rule's queries as the latest notification sent them:
    /// `values` (`B=0.97, C=1`), else `valueString`. `None` for other senders.
    pub fn grafana_values(&self) -> Option<&str> {
        use crate::incident::grafana_keys;
        [grafana_keys::VALUES, grafana_keys::VALUE_STRING]
            .iter()
            .find_map(|k| self.annotations.get(*k))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// What happened, as a timeline row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An alert started firing (its `startsAt`).
    AlertFiring,
    /// incidentd received the first notification of the incident.
    Detected,
    /// An alert resolved (its `endsAt`).
    AlertResolved,
    /// The incident's severity went up because a more severe alert joined.
    SeverityChanged,
    /// An alert fired again after every alert had resolved.
    Reopened,
    /// A person acknowledged the incident.
    Acknowledged,
    /// A person added a note.
    NoteAdded,
    /// The incident resolved: every alert resolved, or a person resolved it.
    Resolved,
    /// Repeated and stale notifications, counted rather than listed.
    Notifications,
    /// Alerts left the incident for a new one: a resolve showed they had ended long before
    /// the others began.
    Split,
    /// A person's reply in the incident's Slack thread, at the message's own time.
    SlackMessage,
    /// A captured Slack reply was edited: the new text, at the edit's time (the first row
    /// stays: what people have seen stays in the timeline; a change is a new event).
    SlackMessageEdited,
    /// A captured Slack reply was deleted.
    SlackMessageDeleted,
    /// A reaction marked a captured reply as a response milestone; the text starts with the
    /// milestone's prefix (`mitigated: …`), as a note marking it would.
    MilestoneMarked,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AlertFiring => "alert_firing",
            EventKind::Detected => "detected",
            EventKind::AlertResolved => "alert_resolved",
            EventKind::SeverityChanged => "severity_changed",
            EventKind::Reopened => "reopened",
            EventKind::Acknowledged => "acknowledged",
            EventKind::NoteAdded => "note_added",
            EventKind::Resolved => "resolved",
            EventKind::Notifications => "notifications",
            EventKind::Split => "split",
            EventKind::SlackMessage => "slack_message",
            EventKind::SlackMessageEdited => "slack_message_edited",
            EventKind::SlackMessageDeleted => "slack_message_deleted",
            EventKind::MilestoneMarked => "milestone_marked",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "alert_firing" => EventKind::AlertFiring,
            "detected" => EventKind::Detected,
            "alert_resolved" => EventKind::AlertResolved,
            "severity_changed" => EventKind::SeverityChanged,
            "reopened" => EventKind::Reopened,
            "acknowledged" => EventKind::Acknowledged,
            "note_added" => EventKind::NoteAdded,
            "resolved" => EventKind::Resolved,
            "notifications" => EventKind::Notifications,
            "split" => EventKind::Split,
            "slack_message" => EventKind::SlackMessage,
            "slack_message_edited" => EventKind::SlackMessageEdited,
            "slack_message_deleted" => EventKind::SlackMessageDeleted,
            "milestone_marked" => EventKind::MilestoneMarked,
            _ => return None,
        })
    }
}

/// Who did it: `Prometheus`, `Alertmanager`, `Grafana`, `incidentd`, or a person's name.
pub const ACTOR_PROMETHEUS: &str = "Prometheus";
pub const ACTOR_ALERTMANAGER: &str = "Alertmanager";
/// Grafana-managed alerting: it evaluates the rule and sends the notifications itself.
pub const ACTOR_GRAFANA: &str = "Grafana";
pub const ACTOR_INCIDENTD: &str = "incidentd";

/// One row of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    pub actor: String,
    pub text: String,
}

/// How many notifications touched the incident, and how many changed nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationCounts {
    /// Alerts received for this incident's occurrences, all kinds.
    pub received: u64,
    /// Repeats of something already known (Alertmanager resends whole groups).
    pub duplicate: u64,
    /// `firing` for an occurrence already resolved (HA replicas, late retries): ignored.
    pub stale: u64,
}

/// An incident with its alerts and timeline, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `INC-<year>-<sequence>`.
    pub id: String,
    /// The correlation key, e.g. `service="payment-service"`.
    pub key: String,
    pub title: String,
    pub status: Status,
    pub severity: Option<String>,
    pub service: Option<String>,
    pub impact_start: Option<Timestamp>,
    pub impact_start_method: ImpactMethod,
    pub fired_at: Timestamp,
    pub detected_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<Timestamp>,
    /// A person's name when resolved by hand; `None` when the alerts resolved it.
    pub resolved_by: Option<String>,
    pub reopen_count: u32,
    pub notifications: NotificationCounts,
    /// Bumped on every change; later work (drafts, Slack) keys off it.
    pub version: u64,
    pub alerts: Vec<Occurrence>,
    pub timeline: Vec<TimelineEvent>,
}

fn millis_between(from: Option<Timestamp>, to: Option<Timestamp>) -> Option<i64> {
    match (from, to) {
        (Some(f), Some(t)) => Some((t - f).num_milliseconds()),
        _ => None,
    }
}

/// The four instants the response figures are computed from: what an incident's figures and
/// a report's (`crate::report`, read from a compact row) share, so both compute them once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTimes {
    pub impact_start: Option<Timestamp>,
    pub detected_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
}

/// The response figures in whole milliseconds (`None`: not known), in the order
/// [`ResponseTimes::millis`] gives them: time to detect, acknowledge, resolve, and duration.
pub type ResponseMillis = [Option<i64>; 4];

impl ResponseTimes {
    /// Time to detect in whole milliseconds: `detected_at − impact_start`.
    pub fn ttd_millis(&self) -> Option<i64> {
        millis_between(self.impact_start, Some(self.detected_at))
    }

    /// Time to acknowledge in whole milliseconds: `acknowledged_at − detected_at`.
    pub fn tta_millis(&self) -> Option<i64> {
        millis_between(Some(self.detected_at), self.acknowledged_at)
    }

    /// Time to resolve in whole milliseconds: `resolved_at − detected_at`.
    pub fn ttr_millis(&self) -> Option<i64> {
        millis_between(Some(self.detected_at), self.resolved_at)
    }

    /// Duration in whole milliseconds: `resolved_at − impact_start`.
    pub fn duration_millis(&self) -> Option<i64> {
        millis_between(self.impact_start, self.resolved_at)
    }

    /// The four figures at once, in the order of [`ResponseMillis`] (what a report keeps).
    pub fn millis(&self) -> ResponseMillis {
        [
            self.ttd_millis(),
            self.tta_millis(),
            self.ttr_millis(),
            self.duration_millis(),
        ]
    }

    /// Time to detect: `detected_at − impact_start`.
    pub fn ttd_seconds(&self) -> Option<f64> {
        self.ttd_millis().map(seconds)
    }

    /// Time to acknowledge: `acknowledged_at − detected_at`.
    pub fn tta_seconds(&self) -> Option<f64> {
        self.tta_millis().map(seconds)
    }

    /// Time to resolve: `resolved_at − detected_at`.
    pub fn ttr_seconds(&self) -> Option<f64> {
        self.ttr_millis().map(seconds)
    }

    /// Duration: `resolved_at − impact_start`.
    pub fn duration_seconds(&self) -> Option<f64> {
        self.duration_millis().map(seconds)
    }
}

/// Whole milliseconds as seconds.
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Incident {
    /// The instants its response figures are computed from.
    pub fn response_times(&self) -> ResponseTimes {
        ResponseTimes {
            impact_start: self.impact_start,
            detected_at: self.detected_at,
            acknowledged_at: self.acknowledged_at,
            resolved_at: self.resolved_at,
        }
    }

    /// Time to detect: `detected_at − impact_start`.
    pub fn ttd_seconds(&self) -> Option<f64> {
        self.response_times().ttd_seconds()
    }

    /// Time to acknowledge: `acknowledged_at − detected_at`.
    pub fn tta_seconds(&self) -> Option<f64> {
        self.response_times().tta_seconds()
    }

    /// Time to resolve: `resolved_at − detected_at`.
    pub fn ttr_seconds(&self) -> Option<f64> {
        self.response_times().ttr_seconds()
    }

    /// Duration: `resolved_at − impact_start`.
    pub fn duration_seconds(&self) -> Option<f64> {
        self.response_times().duration_seconds()
    }
}

/// A response milestone a person recorded with a note (see [`Milestones`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestone {
    pub at: Timestamp,
    pub by: String,
    /// The note's text as written.
    pub note: String,
}

/// Which response milestone a note marks: its text starts with `triage:`, `root cause:` or
/// `identified:`, or `mitigated:` (case-insensitive, after leading spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MilestoneKind {
    Triaged,
    Identified,
    Mitigated,
}

impl MilestoneKind {
    pub const ALL: [MilestoneKind; 3] = [
        MilestoneKind::Triaged,
        MilestoneKind::Identified,
        MilestoneKind::Mitigated,
    ];

    /// Its name in configuration and storage: `triage`, `identified`, `mitigated`.
    pub fn as_str(self) -> &'static str {
        match self {
            MilestoneKind::Triaged => "triage",
            MilestoneKind::Identified => "identified",
            MilestoneKind::Mitigated => "mitigated",
        }
    }

    pub fn parse(s: &str) -> Option<MilestoneKind> {
        MilestoneKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The prefix that marks it, as a row recording it is written: `triage:`.
    pub fn prefix(self) -> &'static str {
        match self {
            MilestoneKind::Triaged => "triage:",
            MilestoneKind::Identified => "identified:",
            MilestoneKind::Mitigated => "mitigated:",
        }
    }

    /// The milestone a note's text marks, if any.
    pub fn of_note(text: &str) -> Option<MilestoneKind> {
        let t = text.trim_start().to_lowercase();
        [
            ("triage:", MilestoneKind::Triaged),
            ("root cause:", MilestoneKind::Identified),
            ("identified:", MilestoneKind::Identified),
            ("mitigated:", MilestoneKind::Mitigated),
        ]
        .into_iter()
        .find(|(prefix, _)| t.starts_with(prefix))
        .map(|(_, kind)| kind)
    }
}

/// When the response reached triage, root-cause identification and mitigation: the first
/// note, captured Slack reply (or its edit) or reaction marking each (the rows stay in the
/// timeline as written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestones {
    pub triaged: Option<Milestone>,
    pub identified: Option<Milestone>,
    pub mitigated: Option<Milestone>,
}

impl Incident {
    /// The response milestones people recorded in notes.
    pub fn milestones(&self) -> Milestones {
        let mut m = Milestones::default();
        let mut notes: Vec<&TimelineEvent> = self
            .timeline
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::NoteAdded
                        | EventKind::SlackMessage
                        | EventKind::SlackMessageEdited
                        | EventKind::MilestoneMarked
                )
            })
            .collect();
        notes.sort_by_key(|e| e.at);
        for e in notes {
            let slot = match MilestoneKind::of_note(&e.text) {
                Some(MilestoneKind::Triaged) => &mut m.triaged,
                Some(MilestoneKind::Identified) => &mut m.identified,
                Some(MilestoneKind::Mitigated) => &mut m.mitigated,
                None => continue,
            };
            if slot.is_none() {
                *slot = Some(Milestone {
                    at: e.at,
                    by: e.actor.clone(),
                    note: e.text.clone(),
                });
            }
        }
        m
    }

    /// Seconds from detection to a moment (like TTA), and from the impact start.
    pub fn since_detection_seconds(&self, at: Timestamp) -> f64 {
        (at - self.detected_at).num_milliseconds() as f64 / 1000.0
    }

    /// Seconds from the impact start to a moment; `None` when the impact start is unknown.
    pub fn since_impact_start_seconds(&self, at: Timestamp) -> Option<f64> {
        millis_between(self.impact_start, Some(at)).map(seconds)
    }
}

/// Whether an alert with these annotations was raised by Grafana-managed alerting (see
/// [`Occurrence::from_grafana`]).
pub fn raised_by_grafana(annotations: &LabelSet) -> bool {
    annotations
        .keys()
        .any(|k| k.starts_with(crate::incident::grafana_keys::PREFIX))
}
