//! Slack in the daemon: which changes become messages, the durable delivery job that posts
//! them (in order, per incident), and where each incident's thread is kept.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::client::DEFAULT_TIMEOUT;
use super::{
    ChannelRoutes, EvidenceFigure, LastFigure, MessageSettings, Notifier, Progress, RootRef,
    SlackClient, SlackEvent, SlackState, StateError,
};
use crate::config::Config;
use crate::followup::{Change, JobSpec};
use crate::incident::{Action, Effect, Incident};
use crate::jobs::{Handler, JobFailure};
use crate::postmortem::{format_metric, Evidence};
use crate::store::Store;

/// Job kind of Slack deliveries. Not coalesced: every event is a message.
pub const JOB_KIND: &str = "slack";

/// A Slack job's payload: the event, and what of it already reached Slack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackJob {
    pub event: SlackEvent,
    #[serde(default)]
    pub progress: Progress,
}

/// The Slack message a change calls for, if any.
pub fn event_for(change: &Change) -> Vec<SlackEvent> {
    match change {
        Change::Alert(o) => {
            let mut events = Vec::new();
            match &o.effect {
                Effect::Opened => events.push(SlackEvent::Opened),
                Effect::Joined => events.push(SlackEvent::AlertJoined {
                    fingerprint: o.fingerprint.clone(),
                }),
                Effect::Reopened => events.push(SlackEvent::Reopened),
                Effect::AlertResolved {
                    incident_resolved: true,
                } => events.push(SlackEvent::Resolved),
                Effect::AlertResolved {
                    incident_resolved: false,
                }
                | Effect::Duplicate
                | Effect::Stale => {}
            }
            if let (Some((from, to)), false) =
                (&o.severity_changed, matches!(o.effect, Effect::Opened))
            {
                events.push(SlackEvent::SeverityChanged {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
            events
        }
        Change::Evidence { .. } => vec![SlackEvent::EvidenceUpdated],
        // A split is told through the resolve that caused it; the parts' threads stay as
        // they are (the new parts have none), and their root messages refresh with evidence.
        Change::Split { .. } => Vec::new(),
        // People said it in the thread themselves.
        Change::Conversation { .. } => Vec::new(),
        Change::Person { by, action, .. } => vec![match action {
            Action::Acknowledge => SlackEvent::Acknowledged { by: by.to_string() },
            Action::Note(text) => SlackEvent::Note {
                by: by.to_string(),
                text: text.clone(),
            },
            Action::Resolve => SlackEvent::Resolved,
        }],
    }
}

/// At most this many metrics in a message: the draft has them all.
const MAX_FIGURES: usize = 4;

/// The metrics a message quotes from the stored evidence: each snapshot with a peak, its
/// baseline and peak formatted with their unit (`19%` → `100%`), the alerts' own first.
pub fn figures(evidence: &Evidence, incident: &Incident) -> Vec<EvidenceFigure> {
    use crate::postmortem::evidence_view::{state, EvidenceState};
    let ev_state = state(incident, evidence);
    let mut with_peak: Vec<_> = evidence
        .snapshots
        .iter()
        .filter(|s| s.peak.is_some())
        .collect();
    // Stable: the alerts' expressions first, then rules/ queries, each in stored order.
    with_peak.sort_by_key(|s| s.alertname.is_none());
    with_peak
        .into_iter()
        .take(MAX_FIGURES)
        .map(|s| {
            let fmt =
                |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format_metric(v, s.unit));
            let last = match &ev_state {
                EvidenceState::Open { as_of } => {
                    let value = s.latest.or(if evidence.data_until.is_none() {
                        s.at_resolution
                    } else {
                        None
                    });
                    match (value, s.latest_at.or(*as_of)) {
                        (Some(v), Some(at)) => Some(LastFigure::Now {
                            value: format_metric(v, s.unit),
                            at,
                        }),
                        _ => None,
                    }
                }
                EvidenceState::Resolved => s.at_resolution.map(|v| LastFigure::AtResolution {
                    value: format_metric(v, s.unit),
                }),
                EvidenceState::Pending { due, .. } => {
                    Some(LastFigure::NotMeasuredYet { due: *due })
                }
            };
            EvidenceFigure {
                metric: s.name.clone(),
                baseline: fmt(s.baseline),
                peak: fmt(s.peak),
                last,
            }
        })
        .collect()
}

/// Channels by label from `slack.routes`, `slack.channel` otherwise.
fn routes(sc: &crate::config::SlackConfig) -> ChannelRoutes {
    ChannelRoutes {
        default_channel: sc.channel.clone(),
        routes: sc
            .routes
            .iter()
            .map(|r| super::Route {
                matchers: r.matchers.clone(),
                channel: r.channel.clone(),
            })
            .collect(),
    }
}

/// Slack as configured: the notifier, and the signing secret for the button.
pub struct Slack {
    notifier: Notifier,
    /// The same client, for `users.info` (thread replies' authors).
    pub(super) client: SlackClient,
    /// Which thread replies become timeline rows (`slack.capture`, …).
    pub capture: crate::incident::conversation::CaptureRules,
    pub signing_secret: Option<crate::config::Secret>,
    /// The draft's render job (`crate::draft::render_job`): a delivered message is in the
    /// draft's Communication section, so the stored draft is rendered again after it.
    redraft: JobSpec,
}

impl Slack {
    /// `None` when the configuration has no `slack` section. `redraft` is the job that renders
    /// the draft again after a delivery.
    pub fn from_config(config: &Config, redraft: JobSpec) -> anyhow::Result<Option<Slack>> {
        let Some(sc) = &config.slack else {
            return Ok(None);
        };
        let client = match (&sc.bot_token, &sc.webhook_url) {
            (Some(token), _) => SlackClient::bot(&sc.api_url, token.clone(), DEFAULT_TIMEOUT)?,
            (None, Some(url)) => SlackClient::webhook(url.clone(), DEFAULT_TIMEOUT)?,
            (None, None) => anyhow::bail!("slack: needs bot_token_file or webhook_url_file"),
        };
        let bot = sc.bot_token.is_some();
        let settings = MessageSettings {
            timezone: config.postmortem.timezone,
            external_url: config.web.external_url.clone().unwrap_or_default(),
            ack_button: bot && sc.signing_secret.is_some(),
        };
        Ok(Some(Slack {
            notifier: Notifier::new(client.clone(), routes(sc), settings),
            client,
            capture: sc.capture.clone(),
            signing_secret: sc.signing_secret.clone(),
            redraft,
        }))
    }

    /// The delivery job.
    pub fn handler(self: Arc<Self>, store: Store) -> Handler {
        Arc::new(move |job| {
            let (slack, store) = (self.clone(), store.clone());
            Box::pin(async move {
                let id = job
                    .incident_id
                    .clone()
                    .ok_or_else(|| JobFailure::permanent("Slack job without an incident"))?;
                let mut payload: SlackJob = serde_json::from_value(job.payload.clone())
                    .map_err(|e| JobFailure::permanent(format!("unreadable Slack job: {e}")))?;
                let loaded = store.slack_view(&id).await.map_err(|e| {
                    JobFailure::retry(
                        e.to_string(),
                        crate::retry::JOBS.after_chrono(job.attempts + 1),
                    )
                })?;
                let Some((incident, thread, evidence)) = loaded else {
                    return Ok(()); // pruned meanwhile
                };
                let state = Thread {
                    root: Mutex::new(thread.map(|(channel, ts)| RootRef { channel, ts })),
                    recorded: Mutex::new(None),
                };
                let figures = evidence
                    .and_then(|v| serde_json::from_value::<Evidence>(v).ok())
                    .map(|e| figures(&e, &incident))
                    .unwrap_or_default();
                let result = slack
                    .notifier
                    .deliver(
                        &state,
                        &incident,
                        &payload.event,
                        &figures,
                        &mut payload.progress,
                    )
                    .await;
                // Record a freshly posted root before anything else, so replies find it.
                let recorded = state.recorded.lock().ok().and_then(|mut r| r.take());
                if let Some(root) = recorded {
                    store
                        .set_slack_thread(&id, &root.channel, &root.ts)
                        .await
                        .map_err(|e| JobFailure {
                            message: format!("posted the Slack root but cannot record it: {e}"),
                            retry_in: Some(crate::retry::JOBS.after_chrono(job.attempts + 1)),
                            payload: serde_json::to_value(&payload).ok(),
                        })?;
                }
                match result {
                    Ok(_) => {
                        slack.redraft(&store, &id, &payload.event).await;
                        Ok(())
                    }
                    Err(e) => Err(JobFailure {
                        message: e.to_string(),
                        retry_in: e
                            .retry_delay(job.attempts + 1)
                            .map(crate::time::chrono_duration),
                        payload: serde_json::to_value(&payload).ok(),
                    }),
                }
            })
        })
    }
}

impl Slack {
    /// After a delivery the draft lists (its Communication section), queue a render so the
    /// stored draft, which the API and the links serve, says so too. Coalesced with any
    /// pending render; queued `postmortem.render_delay` ahead (wall clock, like every job),
    /// by when this delivery is recorded as done. A failure is logged: the message went out
    /// and must not be sent again, and the next change renders the draft anyway.
    async fn redraft(&self, store: &Store, incident_id: &str, event: &SlackEvent) {
        if *event == SlackEvent::EvidenceUpdated {
            return; // a refresh of the root's figures, not in the draft
        }
        let run_at = crate::time::system_clock()() + self.redraft.delay;
        if let Err(e) = store
            .schedule(Some(incident_id), self.redraft.clone(), run_at)
            .await
        {
            tracing::warn!(incident = %incident_id, error = %e, "cannot queue the draft after a Slack message");
        }
    }
}

/// The incident's thread as loaded for one delivery; a root posted during it is kept here
/// and written to the store right after.
struct Thread {
    root: Mutex<Option<RootRef>>,
    recorded: Mutex<Option<RootRef>>,
}

impl SlackState for Thread {
    fn root(&self, _incident_id: &str) -> Result<Option<RootRef>, StateError> {
        Ok(self
            .root
            .lock()
            .map_err(|e| StateError(e.to_string().into()))?
            .clone())
    }

    fn set_root(&self, _incident_id: &str, root: &RootRef) -> Result<(), StateError> {
        *self
            .root
            .lock()
            .map_err(|e| StateError(e.to_string().into()))? = Some(root.clone());
        *self
            .recorded
            .lock()
            .map_err(|e| StateError(e.to_string().into()))? = Some(root.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postmortem::{Snapshot, Unit};

    fn open_incident() -> Incident {
        let at: crate::incident::Timestamp = "2026-11-23T02:26:28Z".parse().expect("time");
        Incident {
            id: "INC-2026-0001".into(),
            key: "k".into(),
            title: "t".into(),
            status: crate::incident::Status::Open,
            severity: None,
            service: None,
            impact_start: None,
            impact_start_method: crate::incident::ImpactMethod::StartsAt,
            fired_at: at,
            detected_at: at,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            reopen_count: 0,
            notifications: crate::incident::NotificationCounts::default(),
            version: 1,
            alerts: Vec::new(),
            timeline: Vec::new(),
        }
    }

    fn snap(
        name: &str,
        alert: Option<&str>,
        unit: Unit,
        b: Option<f64>,
        p: Option<f64>,
    ) -> Snapshot {
        Snapshot {
            name: name.into(),
            query: "q".into(),
            unit,
            baseline: b,
            peak: p,
            lower_is_worse: false,
            at_resolution: None,
            latest: None,
            latest_at: None,
            no_data: false,
            note: None,
            change: None,
            threshold: None,
            chart: None,
            alertname: alert.map(str::to_string),
        }
    }

    #[test]
    fn figures_quote_the_alerts_metrics_first_with_units_as_people_read_them() {
        let evidence = Evidence {
            snapshots: vec![
                snap(
                    "Request throughput",
                    None,
                    Unit::PerSecond,
                    Some(2400.0),
                    Some(310.0),
                ),
                snap(
                    "Pool used",
                    Some("PoolHigh"),
                    Unit::Ratio,
                    Some(0.19),
                    Some(1.0),
                ),
                snap("No peak", Some("X"), Unit::Plain, Some(1.0), None),
                snap("p99 latency", Some("Slow"), Unit::Seconds, None, Some(4.51)),
            ],
            ..Evidence::default()
        };
        let got = figures(&evidence, &open_incident());
        let rows: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|f| (f.metric.as_str(), f.baseline.as_str(), f.peak.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("Pool used", "19%", "100%"),
                ("p99 latency", "–", "4.51s"),
                ("Request throughput", "2,400/s", "310/s"),
            ]
        );
        assert!(figures(&Evidence::default(), &open_incident()).is_empty());
    }
}
