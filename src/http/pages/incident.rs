//! An incident's page (`/incidents/{id}`): its figures, timeline, alerts, evidence and the
//! post-mortem draft as HTML. Pure: built from the draft's context, so the page and the draft
//! say the same things the same way (times with date and zone, the evidence's headings).

use serde::Serialize;
use serde_json::Value;

use crate::incident::{Incident, Status};
use crate::postmortem::{format_metric, Evidence, RenderContext, Unit};

/// Everything the page is made from.
pub struct Inputs<'a> {
    pub ctx: &'a RenderContext,
    pub incident: &'a Incident,
    pub evidence: &'a Evidence,
    /// The stored draft (or, before its first render, one rendered now).
    pub draft_markdown: Option<&'a str>,
    /// The form's CSRF token.
    pub token: &'a str,
    /// The user an authenticating proxy names: the form then asks no name.
    pub proxy_user: Option<&'a str>,
    /// Why the forms do not act, when they do not.
    pub forms_off: Option<&'a str>,
    /// When the page is made: running figures ("so far") are measured then.
    pub now: crate::incident::Timestamp,
    /// The drafts' time zones: times are shown as the drafts show them.
    pub zone: chrono_tz::Tz,
    pub second_zone: Option<chrono_tz::Tz>,
}

#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub value: String,
    pub explain: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct AlertView {
    pub alertname: String,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub labels: Vec<(String, String)>,
    pub rule_expr: Option<String>,
    pub rule_source: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    pub links: Vec<Link>,
}

#[derive(Debug, Serialize)]
pub struct ChartView {
    pub name: String,
    pub query: String,
    pub baseline: String,
    pub peak: String,
    pub last: String,
    pub change: String,
    pub note: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TimelineView {
    pub at: String,
    /// e.g. `+4m 10s`, from the incident's start.
    pub offset: String,
    pub kind: String,
    /// `kind` as a CSS class: `note_added`.
    pub kind_class: String,
    pub event: String,
    pub actor: String,
    /// A person did it (acknowledged, noted, resolved), not a machine.
    pub human: bool,
}

#[derive(Debug, Serialize)]
pub struct View {
    pub id: String,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub services: String,
    pub is_resolved: bool,
    pub is_acknowledged: bool,
    pub times: Vec<Figure>,
    pub figures: Vec<Figure>,
    pub timeline: Vec<TimelineView>,
    pub alerts: Vec<AlertView>,
    pub references: Vec<Link>,
    pub evidence_missing: Option<String>,
    pub evidence_collected_at: Option<String>,
    pub peak_heading: String,
    pub last_heading: String,
    pub charts: Vec<ChartView>,
    pub draft_html: Option<String>,
    pub draft_download: String,
    pub token: String,
    pub proxy_user: Option<String>,
    pub forms_off: Option<String>,
    pub generated_at: String,
}

pub fn view(i: Inputs<'_>) -> View {
    let ctx = i.ctx;
    let inc = i.incident;
    // The context keeps RFC 3339 (the template formats); the page formats the same way.
    let t = |s: &str| -> String {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|at| {
                crate::postmortem::format_time(
                    at.with_timezone(&chrono::Utc),
                    i.zone,
                    i.second_zone,
                )
            })
            .unwrap_or_else(|_| s.to_string())
    };
    let ot = |s: &Option<String>| s.as_deref().map(t);
    let f = super::list::figures(inc, i.now);
    let unknown = |o: &Option<String>, why: &str| o.clone().unwrap_or_else(|| why.to_string());
    let resolved = inc.status == Status::Resolved;
    let times = vec![
        Figure {
            name: "Impact start",
            value: match &ctx.times.impact_start {
                Some(at) => format!("{} ({})", t(at), ctx.times.impact_start_method),
                None => "unknown (not found)".into(),
            },
            explain: "when the problem began, as far as incidentd can tell",
        },
        Figure {
            name: "Fired",
            value: t(&ctx.times.fired_at),
            explain: "the earliest alert's startsAt",
        },
        Figure {
            name: "Detected",
            value: t(&ctx.times.detected_at),
            explain: "when incidentd received the first notification",
        },
        Figure {
            name: "Acknowledged",
            value: match (ot(&ctx.times.acknowledged_at), &ctx.times.acknowledged_by) {
                (Some(at), Some(by)) => format!("{at} by {by}"),
                (Some(at), None) => at,
                _ if resolved => "never acknowledged".into(),
                _ => "not yet acknowledged".into(),
            },
            explain: "",
        },
        Figure {
            name: "Resolved",
            value: match (ot(&ctx.times.resolved_at), &ctx.times.resolved_by) {
                (Some(at), Some(by)) => format!("{at} by {by}"),
                (Some(at), None) => at,
                _ => unknown(&None, "not yet resolved"),
            },
            explain: "",
        },
    ];
    let figures = vec![
        Figure {
            name: "TTD",
            value: f.ttd,
            explain: "time to detect: impact start to detection",
        },
        Figure {
            name: "TTA",
            value: f.tta,
            explain: "time to acknowledge: detection to acknowledgement",
        },
        Figure {
            name: "TTR",
            value: f.ttr,
            explain: "time to resolve: detection to resolution",
        },
        Figure {
            name: "Duration",
            value: f.duration,
            explain: "impact start to resolution",
        },
        Figure {
            name: "Reopened",
            value: format!("{} times", ctx.figures.reopen_count),
            explain: "resolved, then firing again",
        },
    ];
    let timeline = ctx
        .timeline
        .iter()
        .map(|row| TimelineView {
            at: t(&row.at),
            offset: if row.offset_seconds < 0.0 {
                format!("-{}", crate::time::human_duration(-row.offset_seconds))
            } else {
                format!("+{}", crate::time::human_duration(row.offset_seconds))
            },
            kind: row.kind.replace('_', " "),
            kind_class: row.kind.clone(),
            event: row.event.clone(),
            actor: row.actor.clone(),
            human: matches!(row.kind.as_str(), "acknowledged" | "note_added")
                || (row.kind == "resolved" && !is_machine(&row.actor)),
        })
        .collect();
    let alerts = ctx
        .alerts
        .iter()
        .map(|a| {
            let occurrence = inc.alerts.iter().find(|o| o.alertname == a.alertname);
            let mut links = Vec::new();
            if let Some(o) = occurrence {
                for (key, label) in [
                    ("runbook_url", "Runbook"),
                    ("runbook", "Runbook"),
                    ("dashboard_url", "Dashboard"),
                    ("dashboard", "Dashboard"),
                ] {
                    if let Some(url) = o.annotations.get(key).filter(|u| safe_url(u)) {
                        links.push(Link {
                            label: label.into(),
                            url: url.clone(),
                        });
                    }
                }
                if safe_url(&o.generator_url) {
                    links.push(Link {
                        label: "Source (generatorURL)".into(),
                        url: o.generator_url.clone(),
                    });
                }
            }
            AlertView {
                alertname: a.alertname.clone(),
                severity: a.severity.clone(),
                summary: a.summary.clone(),
                description: a.description.clone(),
                labels: a
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                rule_expr: a
                    .rule
                    .get("expr")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                rule_source: a.rule_source.clone(),
                fired_at: t(&a.fired_at),
                resolved_at: ot(&a.resolved_at),
                links,
            }
        })
        .collect();
    let r = &ctx.references;
    let mut references: Vec<Link> = Vec::new();
    if let Some(url) = r.prometheus_graph.as_ref().filter(|u| safe_url(u)) {
        references.push(Link {
            label: "Prometheus: the alerts' expressions".into(),
            url: url.clone(),
        });
    }
    if let Some(url) = r.alertmanager.as_ref().filter(|u| safe_url(u)) {
        references.push(Link {
            label: "Alertmanager: this incident's alerts".into(),
            url: url.clone(),
        });
    }
    for (prefix, refs) in [
        ("Runbook", &r.runbooks),
        ("Dashboard", &r.dashboards),
        ("Grafana rule", &r.grafana_rules),
        ("vmalert rule", &r.vmalert_rules),
    ] {
        for x in refs.iter().filter(|x| safe_url(&x.url)) {
            references.push(Link {
                label: format!("{prefix}: {}", x.label),
                url: x.url.clone(),
            });
        }
    }
    let charts = ctx
        .evidence
        .snapshots
        .iter()
        .map(|s| {
            let unit: Unit =
                serde_json::from_value(Value::String(s.unit.clone())).unwrap_or_default();
            let v = |x: Option<f64>| x.map(|x| format_metric(x, unit));
            ChartView {
                name: s.name.clone(),
                query: s.query.clone(),
                baseline: v(s.baseline).unwrap_or_else(|| "no data".into()),
                peak: v(s.peak).unwrap_or_else(|| "no data".into()),
                last: v(s.last)
                    .or_else(|| s.last_text.clone())
                    .unwrap_or_else(|| "not measured yet".into()),
                change: s.change.clone(),
                note: s.note.clone(),
                image: s.chart_path.as_deref().and_then(|p| chart_url(&inc.id, p)),
            }
        })
        .collect();
    View {
        id: inc.id.clone(),
        title: inc.title.clone(),
        status: inc.status.as_str().into(),
        severity: inc.severity.clone().unwrap_or_else(|| "none".into()),
        services: if ctx.services.is_empty() {
            "none".into()
        } else {
            ctx.services.join(", ")
        },
        is_resolved: resolved,
        is_acknowledged: inc.acknowledged_at.is_some(),
        times,
        figures,
        timeline,
        alerts,
        references,
        evidence_missing: i
            .evidence
            .missing_reason
            .clone()
            .or_else(|| (!ctx.evidence.available).then(|| "no evidence gathered yet".to_string())),
        evidence_collected_at: ot(&ctx.evidence.collected_at),
        peak_heading: ctx.evidence.peak_heading.clone(),
        last_heading: ctx.evidence.last_heading.clone(),
        charts,
        draft_html: i.draft_markdown.map(|md| draft_html(&inc.id, md)),
        draft_download: format!("/api/v1/incidents/{}/postmortem", inc.id),
        token: i.token.to_string(),
        proxy_user: i.proxy_user.map(str::to_string),
        forms_off: i.forms_off.map(str::to_string),
        generated_at: t(&ctx.generated_at),
    }
}

/// The actors that are not people.
fn is_machine(actor: &str) -> bool {
    use crate::incident::{ACTOR_ALERTMANAGER, ACTOR_GRAFANA, ACTOR_INCIDENTD, ACTOR_PROMETHEUS};
    [
        ACTOR_PROMETHEUS,
        ACTOR_ALERTMANAGER,
        ACTOR_GRAFANA,
        ACTOR_INCIDENTD,
    ]
    .contains(&actor)
}

/// Links the pages make clickable: http(s) only (never `javascript:` or `data:`).
fn safe_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The URL of a chart from its path in the draft (`<ID>/<name>.svg`).
fn chart_url(id: &str, path: &str) -> Option<String> {
    let file = path.strip_prefix(id)?.strip_prefix('/')?;
    super::super::api::check_chart_file(file).ok()?;
    Some(format!("/api/v1/incidents/{id}/charts/{file}"))
}

/// The draft's Markdown as sanitized HTML. Paths that work beside the draft on disk are
/// made to work in the browser: its charts (`<ID>/<name>.svg`) come from the chart route,
/// related drafts (`<ID>.md`) are those incidents' pages.
pub fn draft_html(id: &str, markdown: &str) -> String {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
    let rewrite = |dest: CowStr<'_>| -> CowStr<'static> {
        if let Some(url) = chart_url(id, &dest) {
            return url.into();
        }
        if let Some(other) = dest.strip_suffix(".md") {
            if super::super::api::check_id(other).is_ok() {
                return format!("/incidents/{other}").into();
            }
        }
        dest.into_string().into()
    };
    let parser = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS,
    )
    .map(|event| match event {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: rewrite(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: rewrite(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .clean(&html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drafts_chart_and_related_links_resolve_in_the_browser() {
        let md = "![pool](INC-2026-0001/pool-ratio.svg)\n\nSee [INC-2025-0042](INC-2025-0042.md) \
                  and [x](javascript:alert(1)).\n\n<script>alert(1)</script><img src=x onerror=alert(1)>";
        let html = draft_html("INC-2026-0001", md);
        assert!(
            html.contains(r#"src="/api/v1/incidents/INC-2026-0001/charts/pool-ratio.svg""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="/incidents/INC-2025-0042""#),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
    }

    #[test]
    fn only_web_links_are_links() {
        assert!(safe_url("https://runbooks.example/x"));
        assert!(!safe_url("javascript:alert(1)"));
        assert!(!safe_url(" data:text/html,x"));
    }
}
