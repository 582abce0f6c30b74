//! Post-mortem drafts of stored incidents: gather what the store knows about an incident,
//! render it, and keep `<output_dir>/<ID>.md` up to date (as a coalesced job after changes).

use std::sync::Arc;

use rusqlite::Connection;

use crate::app::Clock;
use crate::incident::{Incident, Timestamp};
use crate::jobs::{backoff, Handler, JobFailure, WorkPool};
use crate::postmortem::{
    Chart, Communication, DraftWriter, Evidence, PostmortemError, RelatedIncident, RenderInput,
    Renderer, WriteOutcome,
};
use crate::store::{sqlite, Store};

/// Job kind of draft rendering.
pub const JOB_KIND: &str = "render";

/// How many related incidents a draft lists.
const RELATED: u32 = 5;

/// Everything a draft is rendered from.
pub struct DraftData {
    pub incident: Incident,
    pub evidence: Evidence,
    pub related: Vec<RelatedIncident>,
    pub charts: Vec<Chart>,
    pub communication: Communication,
}

/// Read an incident's draft inputs. `no_evidence` explains missing evidence when none is stored.
pub fn gather(
    conn: &Connection,
    id: &str,
    no_evidence: &str,
) -> rusqlite::Result<Option<DraftData>> {
    let Some(incident) = sqlite::full_incident(conn, id)? else {
        return Ok(None);
    };
    let evidence = sqlite::evidence(conn, id)?
        .and_then(|v| serde_json::from_value::<Evidence>(v).ok())
        .unwrap_or_else(|| Evidence {
            missing_reason: Some(no_evidence.to_string()),
            ..Evidence::default()
        });
    let related = sqlite::related_incidents(conn, &incident, RELATED)?
        .into_iter()
        .map(|(other, same_key, shared_alertnames)| RelatedIncident {
            duration_seconds: other.duration_seconds(),
            id: other.id,
            title: other.title,
            started_at: other.impact_start.unwrap_or(other.fired_at),
            status: other.status,
            same_key,
            shared_alertnames,
        })
        .collect();
    let charts = sqlite::charts(conn, id)?
        .into_iter()
        .map(|(file_name, svg)| Chart { file_name, svg })
        .collect();
    let communication = Communication {
        slack_thread: sqlite::slack_thread(conn, id)?,
        slack_updates: sqlite::slack_deliveries(conn, id)?
            .into_iter()
            .filter_map(|(at, payload)| {
                let job: crate::slack::job::SlackJob = serde_json::from_str(&payload).ok()?;
                slack_update_words(&job.event).map(|w| (at, w))
            })
            .collect(),
    };
    Ok(Some(DraftData {
        incident,
        evidence,
        related,
        charts,
        communication,
    }))
}

/// What a delivered Slack message told, for the draft's Communication section.
fn slack_update_words(event: &crate::slack::SlackEvent) -> Option<String> {
    use crate::slack::SlackEvent as E;
    Some(match event {
        E::Opened => "Incident posted (root message of the thread)".to_string(),
        E::AlertJoined { .. } => "An alert joined the incident".to_string(),
        E::SeverityChanged { from, to } => format!(
            "Severity changed from {} to {}",
            from.as_deref().unwrap_or("none"),
            to.as_deref().unwrap_or("none")
        ),
        E::Acknowledged { by } => format!("Acknowledged by {by}"),
        E::Note { by, .. } => format!("Note from {by}"),
        E::Reopened => "Incident reopened".to_string(),
        E::Resolved => "Resolve summary".to_string(),
        E::EvidenceUpdated => return None,
    })
}

/// Why a draft could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    #[error("incident {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Render(#[from] PostmortemError),
    /// The rendering thread went away (shutting down) or the renderer panicked.
    #[error("rendering the draft was interrupted")]
    Interrupted,
}

/// Renders drafts and writes them to the output directory.
pub struct Drafts {
    renderer: Renderer,
    writer: DraftWriter,
    /// Said in a draft when no evidence is stored for its incident.
    no_evidence: String,
}

impl Drafts {
    pub fn new(renderer: Renderer, writer: DraftWriter, no_evidence: String) -> Self {
        Drafts {
            renderer,
            writer,
            no_evidence,
        }
    }

    pub fn output_dir(&self) -> &std::path::Path {
        self.writer.output_dir()
    }

    /// See [`DraftWriter::sweep_temp_files`].
    pub fn sweep_temp_files(&self) -> std::io::Result<usize> {
        self.writer.sweep_temp_files()
    }

    /// The Markdown of an incident's draft as of `now`.
    pub async fn markdown(
        &self,
        store: &Store,
        id: &str,
        now: Timestamp,
    ) -> Result<String, DraftError> {
        let data = self.load(store, id).await?;
        Ok(self.render(&data, now)?)
    }

    async fn load(&self, store: &Store, id: &str) -> Result<DraftData, DraftError> {
        let (key, no_evidence) = (id.to_string(), self.no_evidence.clone());
        store
            .read(move |c| gather(c, &key, &no_evidence))
            .await?
            .ok_or_else(|| DraftError::NotFound(id.to_string()))
    }

    pub fn render(&self, data: &DraftData, now: Timestamp) -> Result<String, PostmortemError> {
        self.renderer.render(&RenderInput {
            incident: &data.incident,
            evidence: &data.evidence,
            related: &data.related,
            communication: &data.communication,
            generated_at: now,
        })
    }

    /// Render and write an incident's draft (and its charts) on `pool`: rendering is CPU and
    /// writing is fsyncs, neither belongs on the async runtime.
    pub async fn write(
        self: &Arc<Self>,
        store: &Store,
        pool: &WorkPool,
        id: &str,
        now: Timestamp,
    ) -> Result<WriteOutcome, DraftError> {
        let data = self.load(store, id).await?;
        let (drafts, id) = (self.clone(), id.to_string());
        pool.run(move || {
            let markdown = drafts.render(&data, now)?;
            Ok(drafts.writer.write(&id, &markdown, &data.charts)?)
        })
        .await
        .unwrap_or_else(|| Err(DraftError::Interrupted))
    }

    /// The job that keeps an incident's draft on disk current, rendered and written on
    /// `pool`.
    pub fn handler(self: Arc<Self>, store: Store, clock: Clock, pool: Arc<WorkPool>) -> Handler {
        Arc::new(move |job| {
            let (drafts, store, clock, pool) =
                (self.clone(), store.clone(), clock.clone(), pool.clone());
            Box::pin(async move {
                let id = job
                    .incident_id
                    .ok_or_else(|| JobFailure::permanent("render job without an incident"))?;
                match drafts.write(&store, &pool, &id, clock()).await {
                    Ok(WriteOutcome::KeptEdited { edited, generated }) => {
                        tracing::warn!(
                            incident = %id,
                            edited = %edited.display(),
                            generated = %generated.display(),
                            "draft was edited by hand; the new version is written beside it"
                        );
                        Ok(())
                    }
                    Ok(outcome) => {
                        tracing::info!(incident = %id, path = %outcome.rendered_path().display(), "draft written");
                        Ok(())
                    }
                    Err(DraftError::NotFound(_)) => Ok(()), // pruned meanwhile
                    Err(e @ DraftError::Render(PostmortemError::Render { .. })) => {
                        Err(JobFailure::permanent(e.to_string()))
                    }
                    Err(e) => Err(JobFailure::retry(e.to_string(), backoff(job.attempts + 1))),
                }
            })
        })
    }
}
