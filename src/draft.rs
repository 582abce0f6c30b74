//! Post-mortem drafts of stored incidents: gather what the store knows about an incident,
//! render it, store it, and export it to `<output_dir>/<ID>.md` (as a coalesced job after
//! changes).
//!
//! The database is the source of truth for the rendered draft: the render job saves it
//! ([`Store::save_draft`]) before anything touches the disk, and the API and Slack's links
//! serve the stored version, so every replica shows the same draft. The file is an export
//! that each replica writes to its `postmortem.output_dir` (its own or a shared one). Before
//! replacing a file, the export checks that incidentd produced it: its hash must be the one
//! of the draft stored before this render (what was last rendered, by any replica) or one
//! the directory's sidecar names (what incidentd last wrote there). Anything else is a
//! person's edit, kept, with the new version in `<ID>.generated.md`
//! ([`crate::postmortem::decide`] has the rule). A crash between the save and the export
//! leaves the previous export on disk, still named by its sidecar: the job runs again and
//! replaces it.

use std::sync::Arc;

use crate::incident::{Incident, Timestamp};
use crate::jobs::{Handler, JobFailure, WorkPool};
use crate::postmortem::{
    Chart, Communication, DraftWriter, Evidence, PostmortemError, RelatedIncident, RenderInput,
    Renderer, WriteOutcome,
};
use crate::store::{DraftInputs, Store, StoredDraft};
use crate::time::Clock;

/// Job kind of draft rendering.
pub const JOB_KIND: &str = "render";

/// The render job any change queues (coalesced: a burst of changes renders once,
/// `postmortem.render_delay` after the first).
pub fn render_job(config: &crate::config::Config) -> crate::followup::JobSpec {
    crate::followup::JobSpec {
        kind: JOB_KIND,
        payload: serde_json::Value::Null,
        coalesce: true,
        delay: crate::time::chrono_duration(config.postmortem.render_delay),
    }
}

/// Everything a draft is rendered from.
pub struct DraftData {
    pub incident: Incident,
    pub evidence: Evidence,
    pub related: Vec<RelatedIncident>,
    pub charts: Vec<Chart>,
    pub communication: Communication,
}

/// An incident's draft inputs, from what the store read. `no_evidence` explains missing
/// evidence when none is stored.
pub fn gather(inputs: DraftInputs, no_evidence: &str) -> DraftData {
    let evidence = inputs
        .evidence
        .and_then(|v| serde_json::from_value::<Evidence>(v).ok())
        .unwrap_or_else(|| Evidence {
            missing_reason: Some(no_evidence.to_string()),
            ..Evidence::default()
        });
    let related = inputs
        .related
        .into_iter()
        .map(|r| RelatedIncident {
            duration_seconds: r.incident.duration_seconds(),
            started_at: r.incident.impact_start.unwrap_or(r.incident.fired_at),
            id: r.incident.id,
            title: r.incident.title,
            status: r.incident.status,
            same_key: r.same_key,
            shared_alertnames: r.shared_alertnames,
        })
        .collect();
    let charts = inputs
        .charts
        .into_iter()
        .map(|(file_name, svg)| Chart { file_name, svg })
        .collect();
    let communication = Communication {
        slack_thread: inputs.slack_thread,
        slack_updates: inputs
            .slack_deliveries
            .into_iter()
            .filter_map(|(at, payload)| {
                let job: crate::slack::job::SlackJob = serde_json::from_str(&payload).ok()?;
                slack_update_words(&job.event).map(|w| (at, w))
            })
            .collect(),
        thread_messages: inputs.thread_messages,
    };
    DraftData {
        incident: inputs.incident,
        evidence,
        related,
        charts,
        communication,
    }
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

    /// The zone drafts show times in (`postmortem.timezone`); reports cut periods in it too.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.renderer.settings().timezone
    }

    pub fn output_dir(&self) -> &std::path::Path {
        self.writer.output_dir()
    }

    /// See [`DraftWriter::sweep_temp_files`].
    pub fn sweep_temp_files(&self) -> std::io::Result<usize> {
        self.writer.sweep_temp_files()
    }

    /// The Markdown of an incident's draft as of `now`, rendered live from the data (not the
    /// stored draft): for the API before the first render, and `incidentd render`.
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
        let inputs = store
            .draft_inputs(id)
            .await?
            .ok_or_else(|| DraftError::NotFound(id.to_string()))?;
        Ok(gather(inputs, &self.no_evidence))
    }

    /// How drafts show times and links: the pages show them the same way.
    pub fn settings(&self) -> &crate::postmortem::RenderSettings {
        self.renderer.settings()
    }

    /// What a draft of `id` as of `now` is rendered from, as the template sees it; `None`
    /// when there is no such incident. The incident page shows the same figures.
    pub async fn context(
        &self,
        store: &Store,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<(crate::postmortem::RenderContext, DraftData)>, DraftError> {
        let data = match self.load(store, id).await {
            Ok(data) => data,
            Err(DraftError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let ctx = crate::postmortem::build_context(
            &RenderInput {
                incident: &data.incident,
                evidence: &data.evidence,
                related: &data.related,
                communication: &data.communication,
                generated_at: now,
            },
            self.renderer.settings(),
        );
        Ok(Some((ctx, data)))
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

    /// Render an incident's draft, store it, then export it (and its charts) to the output
    /// directory. Rendering and writing run on `pool`: rendering is CPU and writing is
    /// fsyncs, neither belongs on the async runtime.
    pub async fn write(
        self: &Arc<Self>,
        store: &Store,
        pool: &WorkPool,
        id: &str,
        now: Timestamp,
    ) -> Result<WriteOutcome, DraftError> {
        let data = self.load(store, id).await?;
        let drafts = self.clone();
        let (markdown, charts) = pool
            .run(move || {
                let markdown = drafts.render(&data, now)?;
                Ok::<_, DraftError>((markdown, data.charts))
            })
            .await
            .unwrap_or_else(|| Err(DraftError::Interrupted))?;
        // What was last rendered, by whichever replica: a file holding it is incidentd's.
        let previous = store.draft(id).await?.map(|d| d.sha256);
        let stored = StoredDraft::new(id, markdown, now);
        store.save_draft(stored.clone()).await?;
        self.export(pool, stored, charts, previous).await
    }

    /// Write a stored draft and its charts to the output directory, keeping a person's
    /// edits; `previous` is the hash of the draft stored before it, if any.
    async fn export(
        self: &Arc<Self>,
        pool: &WorkPool,
        draft: StoredDraft,
        charts: Vec<Chart>,
        previous: Option<String>,
    ) -> Result<WriteOutcome, DraftError> {
        let drafts = self.clone();
        pool.run(move || {
            let rendered: Vec<&str> = previous.iter().map(String::as_str).collect();
            Ok(drafts
                .writer
                .write_with(&draft.incident_id, &draft.markdown, &charts, &rendered)?)
        })
        .await
        .unwrap_or_else(|| Err(DraftError::Interrupted))
    }

    /// The job that keeps an incident's stored draft and its export on disk current,
    /// rendered and written on `pool`.
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
                    Err(e) => Err(JobFailure::retry(
                        e.to_string(),
                        crate::retry::JOBS.after_chrono(job.attempts + 1),
                    )),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    /// A store holding the recorded scenario's first incident, and its id.
    async fn store_with_incident(dir: &Path) -> (Store, String) {
        let store = Store::open_sqlite(&dir.join("data")).expect("store");
        let body = fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/scenario-single/webhooks/01-firing-DatabaseConnectionPoolHigh.json"
        ))
        .expect("fixture");
        let notification = crate::alertmanager::decode(&body).expect("payload");
        let outcomes = store
            .ingest(notification, body.into(), at(0))
            .await
            .expect("ingest");
        (store, outcomes[0].incident_id.clone())
    }

    fn at(seconds: i64) -> Timestamp {
        crate::time::from_micros(1_796_000_000_000_000 + seconds * 1_000_000)
    }

    /// A replica's draft job, exporting to `output_dir`.
    fn replica(output_dir: &Path) -> Arc<Drafts> {
        let mut config = crate::config::Config::default();
        config.postmortem.output_dir = output_dir.to_path_buf();
        Arc::new(crate::app::drafts(&config).expect("drafts"))
    }

    fn read(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path).expect("read")
    }

    /// Render on `replica` at `now`: the stored draft's Markdown after it.
    async fn render(replica: &Arc<Drafts>, store: &Store, id: &str, now: i64) -> WriteOutcome {
        let pool = WorkPool::new("test-drafts", 1).expect("pool");
        replica
            .write(store, &pool, id, at(now))
            .await
            .expect("render")
    }

    async fn stored(store: &Store, id: &str) -> String {
        store
            .draft(id)
            .await
            .expect("read")
            .expect("stored")
            .markdown
    }

    #[tokio::test]
    async fn replicas_with_their_own_directories_export_the_stored_draft_and_keep_edits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, id) = store_with_incident(dir.path()).await;
        let (a, b) = (
            replica(&dir.path().join("a")),
            replica(&dir.path().join("b")),
        );
        let (file_a, file_b) = (a.writer.draft_path(&id), b.writer.draft_path(&id));

        assert!(matches!(
            render(&a, &store, &id, 1).await,
            WriteOutcome::Written { .. }
        ));
        assert_eq!(read(&file_a), stored(&store, &id).await);
        assert!(matches!(
            render(&b, &store, &id, 2).await,
            WriteOutcome::Written { .. }
        ));
        assert_eq!(read(&file_b), stored(&store, &id).await);
        // A's file is two renders old, but A wrote it (its sidecar says so): replaced.
        assert!(matches!(
            render(&a, &store, &id, 3).await,
            WriteOutcome::Written { .. }
        ));
        assert_eq!(read(&file_a), stored(&store, &id).await);

        // A person edits B's export, whose sidecar is gone too: kept, on every replica's turn.
        fs::write(&file_b, "# Root cause: a slow query\n").expect("edit");
        fs::remove_file(dir.path().join(format!("b/.{id}.md.sha256"))).expect("sidecar");
        assert!(matches!(
            render(&a, &store, &id, 4).await,
            WriteOutcome::Written { .. }
        ));
        let out = render(&b, &store, &id, 5).await;
        assert!(matches!(out, WriteOutcome::KeptEdited { .. }), "{out:?}");
        assert_eq!(read(&file_b), "# Root cause: a slow query\n");
        assert_eq!(
            read(b.writer.generated_path(&id)),
            stored(&store, &id).await
        );
        store.close().await;
    }

    #[tokio::test]
    async fn replicas_sharing_a_directory_take_turns_without_clobbering_an_edit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, id) = store_with_incident(dir.path()).await;
        let shared = dir.path().join("nfs");
        let (a, b) = (replica(&shared), replica(&shared));
        let file = a.writer.draft_path(&id);

        render(&a, &store, &id, 1).await;
        // The sidecar is lost; the file is still the stored draft, so B replaces it.
        fs::remove_file(shared.join(format!(".{id}.md.sha256"))).expect("sidecar");
        assert!(matches!(
            render(&b, &store, &id, 2).await,
            WriteOutcome::Written { .. }
        ));
        assert_eq!(read(&file), stored(&store, &id).await);
        assert!(matches!(
            render(&a, &store, &id, 3).await,
            WriteOutcome::Written { .. }
        ));

        fs::write(&file, "edited\n").expect("edit");
        for (replica, now) in [(&b, 4), (&a, 5), (&b, 6)] {
            let out = render(replica, &store, &id, now).await;
            assert!(matches!(out, WriteOutcome::KeptEdited { .. }), "{out:?}");
            assert_eq!(read(&file), "edited\n");
            assert_eq!(
                read(a.writer.generated_path(&id)),
                stored(&store, &id).await
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_crash_between_the_save_and_the_export_is_repaired_by_the_next_render() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, id) = store_with_incident(dir.path()).await;
        let a = replica(&dir.path().join("a"));
        let file = a.writer.draft_path(&id);
        render(&a, &store, &id, 1).await;
        let exported = read(&file);
        // Rendered and saved, then the process died before the export.
        let data = a.load(&store, &id).await.expect("load");
        let markdown = a.render(&data, at(2)).expect("render");
        store
            .save_draft(StoredDraft::new(&id, markdown, at(2)))
            .await
            .expect("save");
        assert_eq!(read(&file), exported);

        assert!(matches!(
            render(&a, &store, &id, 3).await,
            WriteOutcome::Written { .. }
        ));
        assert_eq!(read(&file), stored(&store, &id).await);
        assert!(!a.writer.generated_path(&id).exists());
        store.close().await;
    }
}
