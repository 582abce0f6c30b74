//! `incidentd report --since 30d [--until …] [--by week|month] [--service S] [--json]`: figures
//! across incidents from a running daemon's `GET /api/v1/reports`, printed as tables (or the
//! daemon's JSON with `--json`).
//!
//! Like the other commands it decodes only what it prints, so a daemon with more fields works.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::format::{self, Table, UNKNOWN};
use super::{endpoint, parse_base_url, send, CliError, Daemon};

/// Arguments of `incidentd report`.
pub struct ReportArgs<'a> {
    pub daemon: &'a Daemon,
    pub since: String,
    pub until: Option<String>,
    /// `week` or `month`.
    pub by: Option<String>,
    pub service: Option<String>,
    /// Print the daemon's JSON answer instead of tables.
    pub json: bool,
    pub out: &'a mut (dyn Write + Send),
}

#[derive(Debug, Clone, Default, Deserialize)]
struct StatView {
    #[serde(default)]
    n: u64,
    #[serde(default)]
    excluded: u64,
    mean_seconds: Option<f64>,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct FiguresView {
    #[serde(default)]
    incidents: u64,
    #[serde(default)]
    open: u64,
    #[serde(default)]
    acknowledged: u64,
    #[serde(default)]
    ttd: StatView,
    #[serde(default)]
    tta: StatView,
    #[serde(default)]
    ttr: StatView,
    #[serde(default)]
    duration: StatView,
}

#[derive(Debug, Clone, Deserialize)]
struct ServiceView {
    service: Option<String>,
    #[serde(flatten)]
    figures: FiguresView,
}

#[derive(Debug, Clone, Deserialize)]
struct OtherServicesView {
    services: u64,
    #[serde(flatten)]
    figures: FiguresView,
}

#[derive(Debug, Clone, Deserialize)]
struct PeriodView {
    label: String,
    #[serde(default)]
    partial: bool,
    #[serde(flatten)]
    figures: FiguresView,
}

#[derive(Debug, Clone, Deserialize)]
struct AlertView {
    alertname: String,
    incidents: u64,
    firings: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct FlapView {
    id: String,
    #[serde(default)]
    title: String,
    service: Option<String>,
    #[serde(default)]
    status: String,
    reopen_count: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct ReportView {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    #[serde(default)]
    by: String,
    #[serde(default)]
    timezone: String,
    generated_at: Option<DateTime<Utc>>,
    service: Option<String>,
    total: FiguresView,
    #[serde(default)]
    services: Vec<ServiceView>,
    /// The services the daemon left out of `services`, summed.
    #[serde(default)]
    other_services: Option<OtherServicesView>,
    #[serde(default)]
    periods: Vec<PeriodView>,
    #[serde(default)]
    top_alerts: Vec<AlertView>,
    #[serde(default)]
    top_flapping: Vec<FlapView>,
}

/// `GET /api/v1/reports` with the arguments, printed as tables.
pub async fn report(args: ReportArgs<'_>) -> Result<(), CliError> {
    let base = parse_base_url(&args.daemon.url)?;
    let mut url = endpoint(&base, &["api", "v1", "reports"]);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("since", &args.since);
        for (name, value) in [
            ("until", &args.until),
            ("by", &args.by),
            ("service", &args.service),
        ] {
            if let Some(v) = value {
                query.append_pair(name, v);
            }
        }
    }
    let http = &args.daemon.http;
    let request = http.authorize(http.client()?.get(url.clone()));
    let (_, body) = send("GET", &url, request).await?;
    if args.json {
        writeln!(args.out, "{}", body.trim_end())?;
        return Ok(());
    }
    let report: ReportView = serde_json::from_str(&body).map_err(|source| CliError::Decode {
        url: url.to_string(),
        source,
    })?;
    write!(args.out, "{}", render(&report))?;
    Ok(())
}

/// `mean / p50 / p90 (n=…, k excluded)`.
fn stat(s: &StatView) -> String {
    if s.n == 0 {
        return format!("{UNKNOWN} (n=0, {} excluded)", s.excluded);
    }
    let excluded = if s.excluded > 0 {
        format!(", {} excluded", s.excluded)
    } else {
        String::new()
    };
    format!(
        "{} / {} / {} (n={}{excluded})",
        format::duration(s.mean_seconds),
        format::duration(s.p50_seconds),
        format::duration(s.p90_seconds),
        s.n
    )
}

fn figures_row(first: String, f: &FiguresView) -> Vec<String> {
    vec![
        first,
        f.incidents.to_string(),
        format!("{}/{}", f.open, f.acknowledged),
        stat(&f.ttd),
        stat(&f.tta),
        stat(&f.ttr),
        stat(&f.duration),
    ]
}

const FIGURE_COLUMNS: [&str; 6] = [
    "INCIDENTS",
    "OPEN/ACKED",
    "TTD mean/p50/p90",
    "TTA mean/p50/p90",
    "TTR mean/p50/p90",
    "DURATION mean/p50/p90",
];

fn figures_table(first: &str) -> Table {
    let mut header = vec![first];
    header.extend(FIGURE_COLUMNS);
    Table::new(&header)
}

fn render(r: &ReportView) -> String {
    let mut out = format!(
        "Incidents whose first alert fired from {} to {}{}, by {} ({}); read at {}.\n\
         Durations: mean / p50 / p90; n = incidents the figure is known for, excluded = not \
         acknowledged / resolved / impact start unknown (yet), or resolved before incidentd \
         was first notified.\n\n",
        format::time(Some(r.since)),
        format::time(Some(r.until)),
        r.service
            .as_deref()
            .map(|s| format!(", service {s}"))
            .unwrap_or_default(),
        r.by,
        r.timezone,
        format::time(r.generated_at),
    );
    let mut total = figures_table("SERVICE");
    for s in &r.services {
        total.row(figures_row(
            format::or_unknown(s.service.as_deref()),
            &s.figures,
        ));
    }
    if let Some(o) = &r.other_services {
        total.row(figures_row(
            format!("({} other services)", o.services),
            &o.figures,
        ));
    }
    total.row(figures_row("(all)".into(), &r.total));
    out.push_str(&total.render());

    out.push('\n');
    let mut periods = figures_table(if r.by == "month" { "MONTH" } else { "WEEK" });
    for p in &r.periods {
        let label = if p.partial {
            format!("{} (part)", p.label)
        } else {
            p.label.clone()
        };
        periods.row(figures_row(label, &p.figures));
    }
    out.push_str(&periods.render());

    out.push_str("\nAlerts that fire most:\n");
    if r.top_alerts.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(&["ALERT", "FIRINGS", "INCIDENTS"]);
        for a in &r.top_alerts {
            t.row(vec![
                a.alertname.clone(),
                a.firings.to_string(),
                a.incidents.to_string(),
            ]);
        }
        out.push_str(&t.render());
    }

    out.push_str("\nIncidents that flap most (reopened):\n");
    if r.top_flapping.is_empty() {
        out.push_str("  none reopened\n");
    } else {
        let mut t = Table::new(&["ID", "REOPENED", "STATUS", "SERVICE", "TITLE"]);
        for f in &r.top_flapping {
            t.row(vec![
                f.id.clone(),
                format!("{}x", f.reopen_count),
                f.status.clone(),
                format::or_unknown(f.service.as_deref()),
                f.title.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{ResponseTimes, Status};
    use crate::report::{build, Period};
    use crate::store::{FlappingIncident, ReportQuery, ReportRowsBuilder};

    #[test]
    fn the_daemons_report_prints_as_tables_with_units() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut rows = ReportRowsBuilder::new();
        let fired_at = t("2026-11-23T02:25:00Z");
        rows.incident(
            Some("payment-service"),
            Status::Resolved,
            fired_at,
            ResponseTimes {
                impact_start: Some(t("2026-11-23T02:24:13Z")),
                detected_at: t("2026-11-23T02:26:28Z"),
                acknowledged_at: Some(t("2026-11-23T02:29:00Z")),
                resolved_at: Some(t("2026-11-23T02:36:13Z")),
            },
            2,
            "3:13:HighErrorRate",
        )
        .unwrap();
        rows.flapping(vec![FlappingIncident {
            id: "INC-2026-0001".into(),
            title: "payment-service: HighErrorRate".into(),
            service: Some("payment-service".into()),
            severity: Some("critical".into()),
            status: Status::Resolved,
            fired_at,
            reopen_count: 2,
        }]);
        let q = ReportQuery {
            since: t("2026-11-20T00:00:00Z"),
            until: t("2026-11-30T00:00:00Z"),
            service: None,
        };
        let report = build(&q, Period::Week, chrono_tz::UTC, q.until, &rows.finish());
        let json = serde_json::to_string(&report).unwrap();
        let view: ReportView = serde_json::from_str(&json).unwrap();
        let text = render(&view);
        assert!(text.contains("2026-11-20 00:00:00 UTC"), "{text}");
        // TTD 2m 15s, TTR 9m 45s, duration 12m: the figures the examples quote.
        assert!(text.contains("2m 15s / 2m 15s / 2m 15s (n=1)"), "{text}");
        assert!(text.contains("9m 45s / 9m 45s / 9m 45s (n=1)"), "{text}");
        assert!(text.contains("12m / 12m / 12m (n=1)"), "{text}");
        assert!(text.contains("2026-W47 (part)"), "{text}");
        assert!(text.contains("2026-W48"), "{text}");
        assert!(text.contains("HighErrorRate  3"), "{text}");
        assert!(text.contains("INC-2026-0001  2x"), "{text}");
        // An empty week: no figure is known, and none is made up.
        assert!(text.contains("— (n=0, 0 excluded)"), "{text}");
    }
}
