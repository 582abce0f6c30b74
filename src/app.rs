//! Build the daemon from its configuration, serve until told to stop, shut down cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, StorageBackend};
use crate::core::{Core, Turn};
use crate::draft::{self, Drafts};
use crate::evidence::Collector;
use crate::evidence_rules::EvidenceRules;
use crate::followup::{Change, JobSpec, Planner};
use crate::http::{self, auth::WebhookAuth, AppState};
use crate::incident::Rules;
use crate::jobs::{Pace, Runner, WorkPool};
use crate::metrics::Metrics;
use crate::postmortem::{DraftWriter, RenderSettings, Renderer};
use crate::slack::job::{Slack, SlackJob};
use crate::store::Store;
use crate::time::chrono_duration;

/// Where the daemon listens and keeps its data, after flags override the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen_address: String,
    /// Overrides `storage.path`.
    pub storage_path: Option<PathBuf>,
}

pub use crate::time::{system_clock, Clock};

/// The correlation rules a configuration asks for.
pub fn rules(config: &Config) -> Rules {
    Rules {
        group_by: config.correlation.group_by.clone(),
        reopen_window: chrono_duration(config.correlation.reopen_window),
        severity_order: config.correlation.severity_order.clone(),
    }
}

/// Which jobs each change to an incident calls for, given what is configured.
pub fn planner(config: &Config) -> Arc<Planner> {
    let slack = config.slack.is_some();
    let render = draft::render_job(config);
    let evidence = config
        .prometheus
        .as_ref()
        .map(crate::evidence::Schedule::from_config);
    Arc::new(move |change: &Change| {
        // Drafts always: a burst of changes renders once, a moment after the first.
        let mut jobs = vec![render.clone()];
        if let Some(schedule) = &evidence {
            jobs.extend(crate::evidence::job_for(change, schedule));
        }
        if slack {
            // Every event is its own message, delivered in order.
            for event in crate::slack::job::event_for(change) {
                // A refresh of the root message: one pending is enough.
                let coalesce = event == crate::slack::SlackEvent::EvidenceUpdated;
                let job = SlackJob {
                    event,
                    progress: Default::default(),
                };
                jobs.push(JobSpec {
                    kind: crate::slack::job::JOB_KIND,
                    payload: serde_json::to_value(job).unwrap_or_default(),
                    coalesce,
                    delay: chrono::Duration::zero(),
                });
            }
        }
        jobs
    })
}

/// The draft renderer and writer the configuration asks for.
pub fn drafts(config: &Config) -> anyhow::Result<Drafts> {
    let settings = RenderSettings {
        timezone: config.postmortem.timezone,
        second_timezone: config.postmortem.second_timezone,
        external_url: config.web.external_url.clone(),
        prometheus_url: config.prometheus.as_ref().map(|p| p.url.clone()),
        alertmanager_url: config.alertmanager.as_ref().map(|a| a.url.clone()),
        severity_map: config.postmortem.severity_map.clone(),
    };
    let renderer = Renderer::new(settings, config.postmortem.template.as_deref())
        .context("postmortem.template")?;
    let no_evidence = match &config.prometheus {
        None => "no Prometheus is configured (prometheus.url), so incidentd gathered no metrics"
            .to_string(),
        Some(p) => format!(
            "evidence from Prometheus at {} has not been gathered yet",
            p.url
        ),
    };
    Ok(Drafts::new(
        renderer,
        DraftWriter::new(config.postmortem.output_dir.clone()),
        no_evidence,
    ))
}

/// The evidence rules a configuration points at: only read when Prometheus is configured
/// (nothing else uses them). `rules_dir: ""` means none; otherwise the directory must load
/// (configuration validation already refused a missing one).
pub fn evidence_rules(config: &Config) -> anyhow::Result<EvidenceRules> {
    match (&config.prometheus, &config.rules_dir) {
        (Some(_), Some(dir)) => EvidenceRules::load_dir(dir)
            .with_context(|| format!("loading rules_dir {}", dir.display())),
        (Some(_), None) => {
            tracing::info!("rules_dir is \"\": snapshots cover the alert expressions only");
            Ok(EvidenceRules::default())
        }
        (None, _) => Ok(EvidenceRules::default()),
    }
}

/// Drafts rendered side by side. Rendering one is a few milliseconds of CPU and several
/// fsyncs (the draft, its hash sidecar, their directory, the job's claim and completion), so
/// a single loop spends most of its time waiting on the disk: eight keep an alert storm's
/// drafts in step with it on two cores (BENCHMARKS.md, "Alert storm").
const RENDER_WORKERS: usize = 8;
/// Evidence jobs side by side: each is a handful of Prometheus queries; a few at once keep a
/// storm moving without hammering Prometheus.
const EVIDENCE_WORKERS: usize = 4;
/// Slack deliveries side by side. An incident's messages still go one after the other (in
/// order), and the pacer keeps each channel at Slack's one message a second; the loops let a
/// channel that is waiting for its slot (or a 429) not hold up the others.
const SLACK_WORKERS: usize = 4;

/// A built daemon, bound to its address, not yet serving.
pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    config: Config,
    /// Evidence from Prometheus, when configured.
    collector: Option<Arc<Collector>>,
    /// `--web.config.file`: TLS, basic auth and headers (see `http::web_config`).
    web_config: Option<Arc<http::web_config::WebConfigFile>>,
}

impl App {
    /// Open the store and bind the listener.
    pub async fn build(config: Config, options: Options, clock: Clock) -> anyhow::Result<App> {
        let storage = options
            .storage_path
            .clone()
            .unwrap_or_else(|| config.storage.path.clone());
        let store = open_store(&config, &storage)
            .await?
            .with_followups(Arc::new(rules(&config)), planner(&config))
            .with_job_lease(config.storage.job_lease);
        let listener = TcpListener::bind(&options.listen_address)
            .await
            .with_context(|| format!("listening on {}", options.listen_address))?;
        let webhook_auth = match &config.web.webhook_auth {
            Some(a) => WebhookAuth {
                bearer_token: a.bearer_token.clone(),
                basic_auth: a
                    .basic_auth
                    .as_ref()
                    .map(|b| (b.username.clone(), b.password.clone())),
            },
            None => WebhookAuth::default(),
        };
        let drafts = Arc::new(drafts(&config)?);
        // A draft or chart being written when the process died left only a temp file (the
        // rename that publishes it is atomic); remove those. Never a reason not to start.
        match drafts.sweep_temp_files() {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                output_dir = %drafts.output_dir().display(),
                "removed temp files of drafts interrupted by the last stop"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                output_dir = %drafts.output_dir().display(),
                "cannot look for temp files of interrupted drafts"
            ),
        }
        let slack = Slack::from_config(&config, draft::render_job(&config))?.map(Arc::new);
        let collector = Collector::from_config(&config, evidence_rules(&config)?)
            .context("configuring the Prometheus client")?
            .map(Arc::new);
        // The pages' form secret, shared through the store by every replica.
        // Never a reason not to start: without it, forms hold within this process only.
        let form_secret = {
            use crate::http::pages::{random_secret, SECRET_NAME};
            let stored = store.shared_secret(SECRET_NAME, random_secret()).await;
            match stored.map(|s| <[u8; 32]>::try_from(s.as_slice())) {
                Ok(Ok(secret)) => secret,
                Ok(Err(_)) => {
                    tracing::warn!(name = SECRET_NAME, "the stored secret is not 32 bytes; forms served by other replicas will be refused here");
                    random_secret()
                }
                Err(e) => {
                    tracing::warn!(name = SECRET_NAME, error = %e, "cannot read the shared secret; forms served by other replicas will be refused here");
                    random_secret()
                }
            }
        };
        let core = Arc::new(Core {
            store,
            clock,
            wake: Arc::new(tokio::sync::Notify::new()),
            ingestion: Default::default(),
            metrics: Arc::new(Metrics::new()),
        });
        let state = Arc::new(AppState {
            core: core.clone(),
            drafts,
            slack,
            webhook_auth,
            api_token: config.web.api_token.clone(),
            max_body_bytes: config.web.max_body_bytes,
            request_timeout: config.web.request_timeout,
            metrics: core.metrics.clone(),
            pages: Arc::new(crate::http::pages::Pages::new(&config.web, form_secret)),
        });
        Ok(App {
            listener,
            state,
            config,
            collector,
            web_config: None,
        })
    }

    /// Serve behind `--web.config.file` (already loaded and checked): TLS when it has
    /// `tls_server_config` now, basic auth and headers as it says at each request.
    pub fn with_web_config(mut self, file: Arc<http::web_config::WebConfigFile>) -> App {
        // The pages' cookies are `Secure` when served over TLS.
        if file.current().is_ok_and(|c| c.has_tls()) {
            self.state.pages.set_tls();
        }
        self.web_config = Some(file);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves: then stop accepting, finish in-flight requests,
    /// stop background work and close the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            config,
            collector,
            web_config,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut runner = Runner::new(
            state.store.clone(),
            state.wake.clone(),
            state.metrics.clone(),
            state.ingestion.clone(),
        );
        runner.handle(
            draft::JOB_KIND,
            state.drafts.clone().handler(
                state.store.clone(),
                state.clock.clone(),
                Arc::new(
                    WorkPool::new("incidentd-drafts", RENDER_WORKERS)
                        .context("starting the draft threads")?,
                ),
            ),
            RENDER_WORKERS,
            Pace::YieldAll,
        );
        if let Some(slack) = &state.slack {
            runner.handle(
                crate::slack::job::JOB_KIND,
                slack.clone().handler(state.store.clone()),
                SLACK_WORKERS,
                Pace::KeepOne,
            );
            // Replies in incident threads, one incident's in order.
            runner.handle(
                crate::slack::thread::JOB_KIND,
                slack.clone().thread_handler(state.store.clone()),
                1,
                Pace::KeepOne,
            );
        }
        if let Some(collector) = collector {
            runner.handle(
                crate::evidence::JOB_KIND,
                collector.handler(state.store.clone(), state.clock.clone(), state.wake.clone()),
                EVIDENCE_WORKERS,
                Pace::YieldAll,
            );
        }
        let mut workers = runner.spawn(stop_rx.clone());
        if let Some(am) = &config.alertmanager {
            let reconciler = crate::reconcile::Reconciler::new(am.clone())?;
            workers.push(tokio::spawn(crate::reconcile::run(
                reconciler,
                state.core.clone(),
                stop_rx.clone(),
            )));
        }
        let retention = tokio::spawn(prune_loop(
            state.core.clone(),
            config.storage.clone(),
            stop_rx.clone(),
        ));
        tracing::info!(address = %listener.local_addr()?, database = %state.store.location(), "incidentd listening");
        let mut router = http::router(state.clone());
        let mut tls = None;
        if let Some(file) = web_config {
            let now = file.current()?;
            tracing::info!(
                file = %file.path().display(),
                tls = now.has_tls(),
                basic_auth = now.has_users(),
                "serving behind the web config file"
            );
            if now.has_tls() {
                tls = Some(file.clone());
            }
            let tokens = http::web_config::Tokens {
                api: config.web.api_token.clone(),
                webhook: config
                    .web
                    .webhook_auth
                    .as_ref()
                    .and_then(|a| a.bearer_token.clone()),
            };
            router = http::web_config::layer(router, file, tokens);
        }
        http::server::serve(
            listener,
            router,
            config.web.read_header_timeout,
            tls,
            shutdown,
        )
        .await;
        tracing::info!("HTTP stopped; finishing background work");
        let _ = stop_tx.send(true);
        let _ = retention.await;
        for w in workers {
            let _ = w.await;
        }
        state.store.close().await;
        tracing::info!("database closed; bye");
        Ok(())
    }
}

/// At startup and every `storage.prune_interval`: drop raw payloads and finished jobs past
/// `storage.raw_payload_retention`, and resolved incidents past `storage.incident_retention`.
async fn prune_loop(
    state: Arc<Core>,
    storage: crate::config::StorageConfig,
    mut stop: watch::Receiver<bool>,
) {
    // One replica prunes at a time.
    let mut turn = Turn::new("pruner", storage.prune_interval);
    loop {
        if turn.due(&state.store).await {
            let now = state.now();
            let payload_cutoff = now - chrono_duration(storage.raw_payload_retention);
            let incident_cutoff = (!storage.incident_retention.is_zero())
                .then(|| now - chrono_duration(storage.incident_retention));
            match state.store.prune(payload_cutoff, incident_cutoff).await {
                Ok(p) if p != crate::store::Pruned::default() => {
                    tracing::info!(
                        payloads = p.notifications,
                        jobs = p.jobs,
                        incidents = p.incidents,
                        "pruned past retention"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning past retention failed; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(turn.pause()) => {}
            _ = stop.changed() => break,
        }
    }
    turn.release(&state.store).await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        _ = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// Render an incident's draft straight from the database (the daemon may be running).
pub async fn render_offline(config: &Config, id: &str) -> anyhow::Result<String> {
    crate::http::api::check_id(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let drafts = drafts(config)?;
    let store = match config.storage.backend {
        StorageBackend::Sqlite => {
            let path = config.storage.path.join("incidentd.db");
            anyhow::ensure!(path.exists(), "no database at {}", path.display());
            Store::open_sqlite_read_only(&config.storage.path).with_context(|| {
                format!("opening the database in {}", config.storage.path.display())
            })?
        }
        StorageBackend::Postgres => open_store(config, &config.storage.path).await?,
    };
    let markdown = drafts
        .markdown(&store, id, chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"));
    store.close().await;
    markdown
}

/// Open the configured database: SQLite in `sqlite_dir`, or PostgreSQL (connected and
/// migrated on a blocking thread).
async fn open_store(config: &Config, sqlite_dir: &std::path::Path) -> anyhow::Result<Store> {
    match config.storage.backend {
        StorageBackend::Sqlite => Store::open_sqlite(sqlite_dir)
            .with_context(|| format!("opening the database in {}", sqlite_dir.display())),
        StorageBackend::Postgres => {
            let pg = config
                .storage
                .postgres
                .clone()
                .context("storage.backend is postgres but storage.postgres is not set")?;
            let target = pg.url.redacted();
            tokio::task::spawn_blocking(move || Store::open_postgres(&pg))
                .await
                .context("opening the PostgreSQL database")?
                .with_context(|| format!("opening the PostgreSQL database {target}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_keeps_the_precision_the_store_keeps() {
        let clock = system_clock();
        for _ in 0..100 {
            assert_eq!(clock().timestamp_subsec_nanos() % 1_000, 0);
        }
    }
}
