//! Lifecycle: everything about an incident that follows from its member occurrences and the
//! people's actions — status, times, severity, title, reopen count and the derived timeline.
//!
//! Derivation is a pure function of the members and human events, never of the order in which
//! notifications arrived: that is what makes incidents order-independent.

use chrono::Duration;

use super::model::*;

/// Settings that derivation depends on.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Label names whose values make the correlation key.
    pub group_by: Vec<String>,
    /// How long after resolving an incident may still reopen. Zero: never.
    pub reopen_window: Duration,
    /// Severities, most severe first.
    pub severity_order: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            group_by: vec!["service".into()],
            reopen_window: Duration::minutes(30),
            severity_order: ["critical", "error", "warning", "info"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Rules {
    /// Rank of a severity: 0 is the most severe; unknown severities rank below every known one.
    fn rank(&self, severity: Option<&str>) -> usize {
        match severity {
            Some(s) => self
                .severity_order
                .iter()
                .position(|o| o.eq_ignore_ascii_case(s))
                .unwrap_or(self.severity_order.len()),
            None => self.severity_order.len() + 1,
        }
    }
}

/// What derivation computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub status: Status,
    pub title: String,
    pub severity: Option<String>,
    pub service: Option<String>,
    pub fired_at: Timestamp,
    pub detected_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<Timestamp>,
    pub resolved_by: Option<String>,
    pub reopen_count: u32,
    /// The timeline rows that follow from the alerts (human rows are kept as they are).
    pub events: Vec<TimelineEvent>,
}

/// One stretch of time during which at least one member was firing.
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: Timestamp,
    /// `None` while still firing.
    end: Option<Timestamp>,
    /// The end came from a person resolving by hand.
    manual: bool,
}

/// The later of two ends, where `None` (still firing) is later than any time.
pub fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(a.max(b)),
    }
}

/// A short human description of one alert firing, for timeline rows. A Grafana alert's row
/// carries the values Grafana sent with it, when they are the firing values (a row first
/// made from a resolve notification would otherwise show the values at the resolve).
fn describe(o: &Occurrence) -> String {
    let mut text = match o.annotations.get("summary").filter(|s| !s.is_empty()) {
        Some(summary) => format!("{} fired: {}", o.alertname, summary),
        None => format!("{} fired", o.alertname),
    };
    if o.status == AlertStatus::Firing {
        push_grafana_values(&mut text, o);
    }
    text
}

/// ` (Grafana: B=0.97, C=1)`: the values of a Grafana alert's queries as its latest
/// notification sent them. Rows are history: a stored row keeps the values it was made with.
fn push_grafana_values(text: &mut String, o: &Occurrence) {
    if let Some(values) = o.grafana_values() {
        text.push_str(&format!(" (Grafana: {values})"));
    }
}

/// Who raised an alert and sends its notifications: Grafana for Grafana-managed alerts,
/// else Prometheus (through Alertmanager).
fn alert_actor(o: &Occurrence) -> &'static str {
    if o.from_grafana() {
        ACTOR_GRAFANA
    } else {
        ACTOR_PROMETHEUS
    }
}

/// The latest manual resolve, if any: `(at, by)`.
fn manual_resolve(human: &[TimelineEvent]) -> Option<(Timestamp, &str)> {
    human
        .iter()
        .filter(|e| e.kind == EventKind::Resolved)
        .max_by_key(|e| e.at)
        .map(|e| (e.at, e.actor.as_str()))
}

/// Derive an incident's state. `members` must not be empty.
pub fn derive(members: &[Occurrence], human: &[TimelineEvent], rules: &Rules) -> Derived {
    // Simultaneous alerts: the most severe first, so they raise no spurious severity change.
    let mut sorted: Vec<&Occurrence> = members.iter().collect();
    sorted.sort_by(|a, b| {
        (a.starts_at, rules.rank(a.severity()), &a.fingerprint).cmp(&(
            b.starts_at,
            rules.rank(b.severity()),
            &b.fingerprint,
        ))
    });
    let first = sorted[0];
    let manual = manual_resolve(human);

    // Effective end: a person resolving by hand ends every member that had started by then.
    let effective_end = |o: &Occurrence| -> (Option<Timestamp>, bool) {
        match manual {
            Some((at, _)) if o.starts_at <= at && o.ends_at.is_none_or(|e| e > at) => {
                (Some(at), true)
            }
            _ => (o.ends_at, false),
        }
    };

    let mut episodes: Vec<Episode> = Vec::new();
    let mut reopened_by: Vec<&Occurrence> = Vec::new();
    for o in &sorted {
        let (end, manual_end) = effective_end(o);
        match episodes.last_mut() {
            Some(ep) if ep.end.is_none_or(|e| o.starts_at <= e) => {
                ep.end = later(ep.end, end);
                ep.manual |= manual_end;
            }
            last => {
                if last.is_some() {
                    reopened_by.push(o);
                }
                episodes.push(Episode {
                    start: o.starts_at,
                    end,
                    manual: manual_end,
                });
            }
        }
    }
    // An episode ended by hand only if its end is the manual resolve (a later real end wins).
    for ep in &mut episodes {
        ep.manual = ep.manual && ep.end.is_some() && ep.end == manual.map(|m| m.0);
    }
    let current = *episodes.last().expect("members is not empty");

    let first_ack = human
        .iter()
        .filter(|e| e.kind == EventKind::Acknowledged)
        .min_by_key(|e| e.at);
    let acked_current = human
        .iter()
        .any(|e| e.kind == EventKind::Acknowledged && e.at >= current.start);
    let status = match current.end {
        Some(_) => Status::Resolved,
        None if acked_current => Status::Acknowledged,
        None => Status::Open,
    };

    // Severity: the highest member's; raising it is an event at the raising alert's start.
    let mut events = Vec::with_capacity(sorted.len() * 2 + episodes.len() * 2 + 1);
    let mut severity: Option<&str> = None;
    for o in &sorted {
        let s = o.severity();
        if severity.is_none() {
            severity = s;
        } else if s.is_some() && rules.rank(s) < rules.rank(severity) {
            events.push(TimelineEvent {
                at: o.starts_at,
                kind: EventKind::SeverityChanged,
                actor: ACTOR_INCIDENTD.into(),
                text: format!(
                    "Severity raised from {} to {} by {}",
                    severity.unwrap_or("none"),
                    s.unwrap_or("none"),
                    o.alertname
                ),
            });
            severity = s;
        }
    }

    let title_source = sorted
        .iter()
        .min_by_key(|o| (rules.rank(o.severity()), o.starts_at))
        .copied()
        .unwrap_or(first);
    let service = sorted.iter().find_map(|o| o.labels.get("service").cloned());
    let title = match title_source
        .annotations
        .get("summary")
        .filter(|s| !s.trim().is_empty())
    {
        Some(summary) => summary.trim().to_string(),
        None => match &service {
            Some(svc) => format!("{} on {}", title_source.alertname, svc),
            None => title_source.alertname.clone(),
        },
    };

    // The first notification: its sender is the detection's actor.
    let first_notified = sorted
        .iter()
        .min_by_key(|o| o.first_seen_at)
        .copied()
        .unwrap_or(first);
    let detected_at = first_notified.first_seen_at;

    for o in &sorted {
        events.push(TimelineEvent {
            at: o.starts_at,
            kind: EventKind::AlertFiring,
            actor: alert_actor(o).into(),
            text: describe(o),
        });
        if let Some(end) = o.ends_at {
            let by_reconciler = o.resolved_by.as_deref() == Some("reconciler");
            events.push(TimelineEvent {
                at: end,
                kind: EventKind::AlertResolved,
                actor: if by_reconciler {
                    ACTOR_INCIDENTD
                } else {
                    alert_actor(o)
                }
                .into(),
                text: if by_reconciler {
                    format!("{} resolved: Alertmanager no longer had it", o.alertname)
                } else {
                    let mut text = format!("{} resolved", o.alertname);
                    // The values Grafana sent with the resolve (the alert's annotations are
                    // the latest notification's, and the resolve is the last one that counts).
                    if o.status == AlertStatus::Resolved {
                        push_grafana_values(&mut text, o);
                    }
                    text
                },
            });
        }
    }
    events.push(TimelineEvent {
        at: detected_at,
        kind: EventKind::Detected,
        actor: if first_notified.from_grafana() {
            ACTOR_GRAFANA
        } else {
            ACTOR_ALERTMANAGER
        }
        .into(),
        text: "First notification reached incidentd".into(),
    });
    for (ep, by) in episodes.iter().skip(1).zip(&reopened_by) {
        events.push(TimelineEvent {
            at: ep.start,
            kind: EventKind::Reopened,
            actor: ACTOR_INCIDENTD.into(),
            text: format!("Reopened: {} fired again", by.alertname),
        });
    }
    for ep in &episodes {
        if let (Some(end), false) = (ep.end, ep.manual) {
            events.push(TimelineEvent {
                at: end,
                kind: EventKind::Resolved,
                actor: ACTOR_INCIDENTD.into(),
                text: "Resolved: every alert resolved".into(),
            });
        }
    }
    events.sort_by(|a, b| (a.at, a.kind, &a.text).cmp(&(b.at, b.kind, &b.text)));

    Derived {
        status,
        title,
        severity: severity.map(str::to_string),
        service,
        fired_at: first.starts_at,
        detected_at,
        acknowledged_at: first_ack.map(|e| e.at),
        acknowledged_by: first_ack.map(|e| e.actor.clone()),
        resolved_at: current.end,
        resolved_by: match (current.end, current.manual, manual) {
            (Some(_), true, Some((_, by))) => Some(by.to_string()),
            _ => None,
        },
        reopen_count: (episodes.len() - 1) as u32,
        events,
    }
}

/// Do two intervals come within `window` of each other? `None` ends are open (still firing).
pub fn connected(
    a: (Timestamp, Option<Timestamp>),
    b: (Timestamp, Option<Timestamp>),
    window: Duration,
) -> bool {
    let reaches =
        |start: Timestamp, end: Option<Timestamp>| end.is_none_or(|e| start <= e + window);
    reaches(a.0, b.1) && reaches(b.0, a.1)
}

/// Distance between two intervals; zero when they overlap.
pub fn distance(a: (Timestamp, Option<Timestamp>), b: (Timestamp, Option<Timestamp>)) -> Duration {
    let gap = |end: Option<Timestamp>, start: Timestamp| match end {
        Some(e) if start > e => start - e,
        _ => Duration::zero(),
    };
    gap(a.1, b.0).max(gap(b.1, a.0))
}

/// An incident's span: earliest start to latest real end (`None` while any member fires).
pub fn span(members: &[Occurrence]) -> (Timestamp, Option<Timestamp>) {
    let start = members
        .iter()
        .map(|o| o.starts_at)
        .min()
        .expect("members is not empty");
    let end = members.iter().map(|o| o.ends_at).reduce(later).flatten();
    (start, end)
}

/// Split members into groups that are connected within `window` (by their real intervals).
/// Groups are ordered by earliest start.
pub fn components(members: &[Occurrence], window: Duration) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        (members[a].starts_at, &members[a].fingerprint)
            .cmp(&(members[b].starts_at, &members[b].fingerprint))
    });
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut reach: Option<Option<Timestamp>> = None; // current group's latest end
    for i in order {
        let o = &members[i];
        match reach {
            Some(end) if end.is_none_or(|e| o.starts_at <= e + window) => {
                groups.last_mut().expect("a group is open").push(i);
                reach = Some(later(end, o.ends_at));
            }
            _ => {
                groups.push(vec![i]);
                reach = Some(o.ends_at);
            }
        }
    }
    groups
}

/// What makes two derived timeline rows the same row of history: the time, the kind, the
/// actor and what it is about. An alert's row is about the alert (its name, the first word of
/// the text), not its summary, which follows the latest annotations; `detected` and
/// `reopened` rows are about the incident; any other row is its text. An incident has one
/// `detected` row, whatever its time: the first notification's receipt only moves earlier
/// when old payloads are replayed with the clock set back.
fn row_identity(e: &TimelineEvent) -> (Timestamp, EventKind, &str, &str) {
    if e.kind == EventKind::Detected {
        return (Timestamp::MIN_UTC, e.kind, "", "");
    }
    let (subject, actor) = match e.kind {
        EventKind::AlertFiring | EventKind::AlertResolved => (
            e.text.split_whitespace().next().unwrap_or(""),
            // Grafana's alert rows were credited to Prometheus before Grafana was named:
            // either is the sender of the alert (only the reconciler's rows differ).
            match e.actor.as_str() {
                ACTOR_GRAFANA => ACTOR_PROMETHEUS,
                other => other,
            },
        ),
        EventKind::Detected | EventKind::Reopened => ("", e.actor.as_str()),
        _ => (e.text.as_str(), e.actor.as_str()),
    };
    (e.at, e.kind, actor, subject)
}

/// The timeline is append-only history: what people have seen stays, a change is a new row.
/// Of the rows `derived` from the incident's current state, those not already in `stored`
/// (the derived rows stored before; matched as multisets by [`row_identity`]).
pub fn unseen(stored: &[TimelineEvent], derived: Vec<TimelineEvent>) -> Vec<TimelineEvent> {
    let mut have: std::collections::HashMap<(Timestamp, EventKind, &str, &str), usize> =
        std::collections::HashMap::with_capacity(stored.len());
    for e in stored {
        *have.entry(row_identity(e)).or_insert(0) += 1;
    }
    let mut keep = vec![true; derived.len()];
    for (i, e) in derived.iter().enumerate() {
        if let Some(n) = have.get_mut(&row_identity(e)) {
            if *n > 0 {
                *n -= 1;
                keep[i] = false;
            }
        }
    }
    let mut keep = keep.into_iter();
    derived
        .into_iter()
        .filter(|_| keep.next().unwrap_or(true))
        .collect()
}
