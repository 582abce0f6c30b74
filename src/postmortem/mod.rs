//! Post-mortem drafts: the template registry, its helpers, the embedded default template,
//! the render context built from an incident and its evidence, and the writer that exports
//! drafts to disk without overwriting a person's edits (the rendered draft itself is stored
//! in the database by [`crate::draft`]; the file is an export of it).
//!
//! ```text
//! Incident + Evidence + related ──build_context──► RenderContext ──Renderer──► Markdown ──store──► DraftWriter──► <ID>.md
//! ```
//!
//! Templates run in Handlebars strict mode, so a misspelt field is an error rather than an
//! empty string; [`check_template`] renders a template against built-in samples so
//! `check-config` catches that before a real incident does. One gap strict mode leaves:
//! `{{#if misspelt}}` is silently false, so the samples cover both branches of every flag.

mod context;
mod evidence;
pub mod evidence_view;
mod helpers;
mod sample;
mod writer;

use std::path::{Path, PathBuf};

use handlebars::Handlebars;

pub use context::{
    build_context, Communication, RelatedIncident, RenderContext, RenderInput, RenderSettings,
};
pub use evidence::{
    ActionSuggestion, ConditionStart, Evidence, ImpactFigure, RuleInfo, Slo, Snapshot,
};
pub use helpers::{metric as format_metric, time as format_time, Unit};
pub use sample::{sample_full, sample_minimal};
pub use writer::{decide, Chart, Decision, DraftWriter, WriteOutcome};

/// The default template, embedded in the binary.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/postmortem.md.hbs");

const TEMPLATE_NAME: &str = "postmortem";

/// What can go wrong between a template and a draft on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostmortemError {
    /// The template file could not be read.
    #[error("cannot read post-mortem template {path}: {source}")]
    TemplateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The template does not parse (unclosed block, bad expression…).
    #[error("post-mortem template {origin} does not compile: {source}")]
    TemplateCompile {
        /// The file, or `the embedded default`.
        origin: String,
        #[source]
        source: Box<handlebars::TemplateError>,
    },
    /// Rendering failed: in strict mode usually a misspelt field or a helper given `null`.
    #[error("post-mortem template {origin} failed to render{during}: {source}")]
    Render {
        origin: String,
        /// Which sample was being rendered, for `check_template`; empty otherwise.
        during: String,
        #[source]
        source: Box<handlebars::RenderError>,
    },
    /// A draft, chart or sidecar file could not be written or read.
    #[error("cannot write post-mortem file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An incident id or chart name that would not stay inside the output directory.
    #[error("invalid {what} {name:?}: it must be a plain file name")]
    InvalidName { what: &'static str, name: String },
}

/// A compiled template with its helpers, ready to render incidents. Build it once at
/// startup (and after a config reload); rendering takes `&self` and is thread-safe.
pub struct Renderer {
    registry: Handlebars<'static>,
    settings: RenderSettings,
    origin: String,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("origin", &self.origin)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Compiles `template` (a file path), or the embedded default when `None`.
    pub fn new(settings: RenderSettings, template: Option<&Path>) -> Result<Self, PostmortemError> {
        let (source, origin) = match template {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|source| PostmortemError::TemplateRead {
                    path: path.to_path_buf(),
                    source,
                })?,
                path.display().to_string(),
            ),
            None => (
                DEFAULT_TEMPLATE.to_string(),
                "the embedded default".to_string(),
            ),
        };
        Self::from_source(settings, &source, origin)
    }

    /// Compiles a template given as text; `origin` names it in errors.
    pub fn from_source(
        settings: RenderSettings,
        source: &str,
        origin: impl Into<String>,
    ) -> Result<Self, PostmortemError> {
        let origin = origin.into();
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // Markdown, not HTML: escaping is the helpers' job (`cell`, `inline`, `code`).
        registry.register_escape_fn(handlebars::no_escape);
        helpers::register_helpers(&mut registry, settings.timezone, settings.second_timezone);
        registry
            .register_template_string(TEMPLATE_NAME, source)
            .map_err(|e| PostmortemError::TemplateCompile {
                origin: origin.clone(),
                source: Box::new(e),
            })?;
        Ok(Renderer {
            registry,
            settings,
            origin,
        })
    }

    pub fn settings(&self) -> &RenderSettings {
        &self.settings
    }

    /// Renders one incident's draft as Markdown.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<String, PostmortemError> {
        let ctx = build_context(input, &self.settings);
        self.render_context(&ctx, String::new())
    }

    fn render_context(
        &self,
        ctx: &RenderContext,
        during: String,
    ) -> Result<String, PostmortemError> {
        let out =
            self.registry
                .render(TEMPLATE_NAME, ctx)
                .map_err(|e| PostmortemError::Render {
                    origin: self.origin.clone(),
                    during,
                    source: Box::new(e),
                })?;
        Ok(tidy(&out))
    }
}

/// Collapses the blank lines that template conditionals leave behind (outside code
/// blocks), and ends the document with exactly one newline.
fn tidy(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut blank_run = 0;
    let mut fence: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|c| *c == '`').count();
        if ticks >= 3 {
            match &fence {
                None => fence = Some("`".repeat(ticks)),
                Some(f) if trimmed.trim_end() == f.as_str() => fence = None,
                _ => {}
            }
        }
        if fence.is_none() && line.trim().is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank_run = 0;
        out.push_str(line.trim_end_matches(' ').trim_end_matches('\t'));
        // Markdown hard line breaks are two trailing spaces; keep them.
        if line.ends_with("  ") && !line.trim().is_empty() {
            out.push_str("  ");
        }
        out.push('\n');
    }
    let trimmed = out.trim_matches('\n');
    format!("{trimmed}\n")
}

/// Compiles a template (or the embedded default) and renders it against the built-in
/// samples, a full one and a minimal one, so that both sides of every conditional run.
/// For `check-config`.
pub fn check_template(path: Option<&Path>) -> Result<(), PostmortemError> {
    let renderer = Renderer::new(sample::sample_settings(), path)?;
    for (name, (incident, evidence, related, at), communication) in [
        (
            "full sample incident",
            sample::sample_full(),
            sample::sample_communication(),
        ),
        (
            "minimal sample incident",
            sample::sample_minimal(),
            Communication::default(),
        ),
    ] {
        let input = RenderInput {
            incident: &incident,
            evidence: &evidence,
            related: &related,
            communication: &communication,
            generated_at: at,
        };
        let ctx = build_context(&input, renderer.settings());
        renderer.render_context(&ctx, format!(" (against the {name})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_template_passes_its_own_check() {
        check_template(None).expect("default template renders both samples");
    }

    #[test]
    fn a_misspelt_field_in_a_custom_template_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("custom.md.hbs");
        std::fs::write(&path, "# {{titel}}\n").expect("write");
        let err = check_template(Some(&path)).expect_err("strict mode");
        let msg = err.to_string();
        assert!(matches!(err, PostmortemError::Render { .. }), "{msg}");
        assert!(msg.contains("custom.md.hbs"), "{msg}");
        assert!(
            format!("{:?}", err).contains("titel"),
            "the error names the field: {err:?}"
        );
    }

    #[test]
    fn a_helper_given_null_is_an_error_not_the_word_null() {
        let r = Renderer::from_source(
            RenderSettings::default(),
            "{{time times.acknowledged_at}}",
            "t",
        )
        .expect("compiles");
        let (incident, evidence, related, at) = sample::sample_minimal();
        let err = r
            .render(&RenderInput {
                incident: &incident,
                evidence: &evidence,
                related: &related,
                communication: &Default::default(),
                generated_at: at,
            })
            .expect_err("null time");
        assert!(
            format!("{err:?}").contains("guard optional values"),
            "{err:?}"
        );
    }

    #[test]
    fn a_template_that_does_not_parse_names_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("broken.hbs");
        std::fs::write(&path, "{{#if flags.is_resolved}}unclosed").expect("write");
        let err = check_template(Some(&path)).expect_err("does not compile");
        assert!(matches!(err, PostmortemError::TemplateCompile { .. }));
        assert!(err.to_string().contains("broken.hbs"));
    }

    #[test]
    fn without_a_known_condition_time_the_summary_counts_from_the_first_firing() {
        let (mut incident, evidence, related, at) = sample::sample_minimal();
        incident.status = crate::incident::Status::Resolved;
        incident.resolved_at = Some(at);
        let renderer = Renderer::new(sample::sample_settings(), None).expect("template");
        let md = renderer
            .render(&RenderInput {
                incident: &incident,
                evidence: &evidence,
                related: &related,
                communication: &Default::default(),
                generated_at: at,
            })
            .expect("renders");
        assert!(md.contains("after the first alert fired."), "{md}");
        assert!(
            !md.contains("after the condition first became true"),
            "{md}"
        );
    }

    #[test]
    fn a_renderer_can_be_shared_between_worker_threads() {
        fn assert_shareable<T: Send + Sync>() {}
        assert_shareable::<Renderer>();
    }

    #[test]
    fn a_grafana_alerts_values_and_dashboard_links_show_in_the_draft() {
        use crate::incident::grafana_keys;
        let (mut incident, evidence, related, at) = sample::sample_minimal();
        let a = &mut incident.alerts[0];
        for (k, v) in [
            (grafana_keys::VALUES, "B=44.23943737541908, C=1"),
            (
                grafana_keys::DASHBOARD_URL,
                "https://grafana.example.com/d/abc",
            ),
            (
                grafana_keys::PANEL_URL,
                "https://grafana.example.com/d/abc?viewPanel=2",
            ),
            (
                grafana_keys::SILENCE_URL,
                "https://grafana.example.com/alerting/silence/new",
            ),
        ] {
            a.annotations.insert(k.to_string(), v.to_string());
        }
        // Grafana's generatorURL is the alert rule's page.
        a.generator_url = "https://grafana.example.com/alerting/grafana/uid1/view".into();
        // The timeline as correlation makes it from this alert.
        let derived = crate::incident::lifecycle::derive(
            &incident.alerts,
            &[],
            &crate::incident::Rules::default(),
        );
        incident.timeline = derived.events;
        let renderer = Renderer::new(sample::sample_settings(), None).expect("template");
        let md = renderer
            .render(&RenderInput {
                incident: &incident,
                evidence: &evidence,
                related: &related,
                communication: &Default::default(),
                generated_at: at,
            })
            .expect("renders");
        assert!(
            md.contains(
                "**Query values (Grafana, last notification):** `B=44.23943737541908, C=1`"
            ),
            "{md}"
        );
        for url in [
            "https://grafana.example.com/d/abc",
            "https://grafana.example.com/d/abc?viewPanel=2",
        ] {
            assert!(
                md.lines()
                    .any(|l| l.starts_with("- **Dashboard**") && l.contains(url)),
                "{url} in the references: {md}"
            );
        }
        assert!(
            md.contains("**How detected:** automated monitoring, Grafana-managed alerts"),
            "{md}"
        );
        assert!(!md.contains("routed through Alertmanager"), "{md}");
        // The timeline table: Grafana raised it, with the values it sent.
        assert!(
            md.contains("| CheckoutErrors fired (Grafana: B=44.23943737541908, C=1) | Grafana |"),
            "{md}"
        );
        // The rule link is Grafana's rule page, not a Prometheus expression.
        assert!(
            md.contains(
                "- **Alert rule in Grafana** (CheckoutErrors): [rule](https://grafana.example.com/alerting/grafana/uid1/view)"
            ),
            "{md}"
        );
        assert!(!md.contains("Alert expression in Prometheus"), "{md}");
    }

    #[test]
    fn tidy_collapses_blank_lines_but_not_inside_code() {
        let md = "a\n\n\n\nb\n```\nx\n\n\ny\n```\n\n\n";
        assert_eq!(tidy(md), "a\n\nb\n```\nx\n\n\ny\n```\n");
    }
}
