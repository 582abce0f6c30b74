//! The reports page (`/reports`): the figures of [`crate::report::build`] (the same as
//! `GET /api/v1/reports` and `incidentd report`) as tables, with bar charts drawn on the
//! server as inline SVG. Pure: no I/O.

use chrono_tz::Tz;
use serde::Serialize;

use crate::postmortem::format_time;
use crate::report::{Figures, Report, Stat};
use crate::time::human_duration;

/// The query string, as typed in the page's form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub service: String,
}

/// One figure of a set of incidents: mean, p50, p90 in words, and how many it counts.
#[derive(Debug, Serialize)]
pub struct StatView {
    pub mean: String,
    pub p50: String,
    pub p90: String,
    /// e.g. `n=12, 3 left out`.
    pub counted: String,
}

#[derive(Debug, Serialize)]
pub struct FiguresView {
    pub name: String,
    pub partial: bool,
    pub incidents: u64,
    pub open: u64,
    pub acknowledged: u64,
    pub resolved: u64,
    pub reopens: u64,
    pub ttd: StatView,
    pub tta: StatView,
    pub ttr: StatView,
    pub duration: StatView,
}

/// One bar of a chart, laid out.
#[derive(Debug, Serialize)]
pub struct Bar {
    pub label: String,
    pub value: String,
    pub y: u32,
    pub width: u32,
    pub text_y: u32,
}

/// A horizontal bar chart: one row per bar.
#[derive(Debug, Serialize)]
pub struct BarChart {
    pub title: String,
    pub bars: Vec<Bar>,
    pub height: u32,
}

#[derive(Debug, Serialize)]
pub struct AlertView {
    pub alertname: String,
    pub incidents: u64,
    pub firings: u64,
    pub services: String,
}

#[derive(Debug, Serialize)]
pub struct FlapView {
    pub id: String,
    pub title: String,
    pub service: String,
    pub status: String,
    pub fired_at: String,
    pub reopen_count: u32,
}

#[derive(Debug, Serialize)]
pub struct View {
    pub params: Params,
    pub range: String,
    pub by: String,
    pub timezone: String,
    pub generated_at: String,
    pub total: FiguresView,
    pub services: Vec<FiguresView>,
    /// Says that services were left out of the list and summed, when they were.
    pub services_note: Option<String>,
    pub periods: Vec<FiguresView>,
    pub top_alerts: Vec<AlertView>,
    pub top_flapping: Vec<FlapView>,
    pub charts: Vec<BarChart>,
    pub definitions: Vec<(String, String)>,
    pub week: bool,
}

fn seconds(s: Option<f64>) -> String {
    s.map(human_duration).unwrap_or_else(|| "none".into())
}

fn stat(s: &Stat) -> StatView {
    StatView {
        mean: seconds(s.mean_seconds),
        p50: seconds(s.p50_seconds),
        p90: seconds(s.p90_seconds),
        counted: if s.excluded == 0 {
            format!("n={}", s.n)
        } else {
            format!("n={}, {} left out", s.n, s.excluded)
        },
    }
}

fn figures(name: String, partial: bool, f: &Figures) -> FiguresView {
    FiguresView {
        name,
        partial,
        incidents: f.incidents,
        open: f.open,
        acknowledged: f.acknowledged,
        resolved: f.resolved,
        reopens: f.reopens,
        ttd: stat(&f.ttd),
        tta: stat(&f.tta),
        ttr: stat(&f.ttr),
        duration: stat(&f.duration),
    }
}

fn service_name(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "(no service)".into())
}

/// Width of the bars' area, in SVG units (labels take the left 200).
const BAR_AREA: f64 = 440.0;
const ROW: u32 = 22;

/// A chart of `values` (label, value, value in words); bars scale to the largest.
pub fn bar_chart(title: &str, values: &[(String, f64, String)]) -> BarChart {
    let max = values.iter().map(|v| v.1).fold(0.0_f64, f64::max);
    let bars = values
        .iter()
        .enumerate()
        .map(|(i, (label, value, text))| {
            let width = if max > 0.0 {
                ((value / max) * BAR_AREA)
                    .round()
                    .max(if *value > 0.0 { 1.0 } else { 0.0 })
            } else {
                0.0
            };
            Bar {
                label: label.chars().take(28).collect(),
                value: text.clone(),
                y: i as u32 * ROW + 4,
                width: width as u32,
                text_y: i as u32 * ROW + 18,
            }
        })
        .collect();
    BarChart {
        title: title.to_string(),
        bars,
        height: values.len() as u32 * ROW + 8,
    }
}

pub fn view(params: &Params, r: &Report, zone: Tz, second: Option<Tz>) -> View {
    let t = |at| format_time(at, zone, second);
    let periods: Vec<FiguresView> = r
        .periods
        .iter()
        .map(|p| figures(p.label.clone(), p.partial, &p.figures))
        .collect();
    let mut charts = vec![bar_chart(
        &format!("Incidents per {}", r.by.as_str()),
        &r.periods
            .iter()
            .map(|p| {
                (
                    p.label.clone(),
                    p.figures.incidents as f64,
                    p.figures.incidents.to_string(),
                )
            })
            .collect::<Vec<_>>(),
    )];
    charts.push(bar_chart(
        &format!("MTTR (mean) per {}", r.by.as_str()),
        &r.periods
            .iter()
            .map(|p| {
                let v = p.figures.ttr.mean_seconds;
                (p.label.clone(), v.unwrap_or(0.0), seconds(v))
            })
            .collect::<Vec<_>>(),
    ));
    if !r.services.is_empty() {
        charts.push(bar_chart(
            if r.other_services.is_some() {
                "Incidents per service (the services with most)"
            } else {
                "Incidents per service"
            },
            &r.services
                .iter()
                .map(|s| {
                    (
                        service_name(&s.service),
                        s.figures.incidents as f64,
                        s.figures.incidents.to_string(),
                    )
                })
                .collect::<Vec<_>>(),
        ));
    }
    if !r.top_alerts.is_empty() {
        charts.push(bar_chart(
            "Alerts that fire most (firings)",
            &r.top_alerts
                .iter()
                .map(|a| (a.alertname.clone(), a.firings as f64, a.firings.to_string()))
                .collect::<Vec<_>>(),
        ));
    }
    let d = &r.definitions;
    View {
        params: params.clone(),
        range: format!("{} to {}", t(r.since), t(r.until)),
        by: r.by.as_str().to_string(),
        timezone: r.timezone.clone(),
        generated_at: t(r.generated_at),
        total: figures("All services".into(), false, &r.total),
        services: r
            .services
            .iter()
            .map(|s| figures(service_name(&s.service), false, &s.figures))
            .chain(r.other_services.iter().map(|o| {
                figures(
                    format!(
                        "The other {} service{}, together",
                        o.services,
                        if o.services == 1 { "" } else { "s" }
                    ),
                    false,
                    &o.figures,
                )
            }))
            .collect(),
        services_note: r.other_services.as_ref().map(|o| {
            format!(
                "The {} services with most incidents are listed; the other {} are summed in \
                 the last row (their figures over all their incidents together).",
                r.services.len(),
                o.services
            )
        }),
        periods,
        top_alerts: r
            .top_alerts
            .iter()
            .map(|a| AlertView {
                alertname: a.alertname.clone(),
                incidents: a.incidents,
                firings: a.firings,
                services: {
                    let mut names = a
                        .services
                        .iter()
                        .map(service_name)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let more = a.services_total.saturating_sub(a.services.len() as u64);
                    if more > 0 {
                        names.push_str(&format!(" and {more} more"));
                    }
                    names
                },
            })
            .collect(),
        top_flapping: r
            .top_flapping
            .iter()
            .map(|f| FlapView {
                id: f.id.clone(),
                title: f.title.clone(),
                service: service_name(&f.service),
                status: f.status.as_str().to_string(),
                fired_at: t(f.fired_at),
                reopen_count: f.reopen_count,
            })
            .collect(),
        charts,
        definitions: [
            ("Period", d.period),
            ("TTD", d.ttd),
            ("TTA", d.tta),
            ("TTR", d.ttr),
            ("Duration", d.duration),
            ("Percentiles", d.percentiles),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        week: r.by == crate::report::Period::Week,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_zero_draws_nothing() {
        let c = bar_chart(
            "x",
            &[
                ("a".into(), 2.0, "2".into()),
                ("b".into(), 1.0, "1".into()),
                ("c".into(), 0.0, "0".into()),
            ],
        );
        let widths: Vec<u32> = c.bars.iter().map(|b| b.width).collect();
        assert_eq!(widths, [440, 220, 0]);
        assert_eq!(c.height, 3 * ROW + 8);
    }
}
