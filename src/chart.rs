//! SVG charts of snapshots: one per query, time axis in the configured zone, the incident
//! window shaded, the threshold drawn where known, series labelled in a legend.
//!
//! Hand-written SVG: no plotting crate, no fonts needed to build or render (text uses the
//! viewer's `sans-serif`), deterministic output that golden files can pin.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::evidence_rules::Unit;
use crate::incident::LabelSet;
use crate::prometheus::snapshot::{format_value, Snapshot};

const WIDTH: f64 = 800.0;
const PLOT_LEFT: f64 = 78.0;
const PLOT_RIGHT: f64 = WIDTH - 24.0;
const PLOT_TOP: f64 = 62.0;
const PLOT_HEIGHT: f64 = 220.0;
const PLOT_BOTTOM: f64 = PLOT_TOP + PLOT_HEIGHT;
const LEGEND_ROW: f64 = 18.0;

/// Colour-blind-friendly palette (Okabe–Ito, then a few more).
const PALETTE: [&str; 10] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#999999", "#882255",
];

/// The incident's bounds as the chart marks them.
#[derive(Debug, Clone, Copy)]
pub struct ChartWindow {
    pub impact_start: DateTime<Utc>,
    /// `None` while open: shading runs to the right edge.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Renders `snapshot` as a standalone SVG document.
pub fn render_svg(snapshot: &Snapshot, window: &ChartWindow, tz: Tz) -> String {
    let t0 = snapshot.start;
    let t1 = if snapshot.end > snapshot.start {
        snapshot.end
    } else {
        snapshot.start + Duration::seconds(1)
    };
    let span_ms = (t1 - t0).num_milliseconds().max(1) as f64;
    let x_of = |t: DateTime<Utc>| {
        let f = (t - t0).num_milliseconds() as f64 / span_ms;
        PLOT_LEFT + f.clamp(0.0, 1.0) * (PLOT_RIGHT - PLOT_LEFT)
    };

    let values = snapshot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.value))
        .chain(snapshot.threshold)
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let has_data = snapshot
        .series
        .iter()
        .any(|s| s.points.iter().any(|p| p.value.is_finite()));
    let (y_min, y_max, y_step) = y_axis(lo, hi, snapshot.unit);
    let y_of = |v: f64| {
        let f = (v - y_min) / (y_max - y_min);
        PLOT_BOTTOM - f.clamp(0.0, 1.0) * PLOT_HEIGHT
    };

    let legend = legend_labels(snapshot);
    let legend_rows = legend.len().div_ceil(2);
    let height = PLOT_BOTTOM + 52.0 + legend_rows as f64 * LEGEND_ROW + 8.0;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = write!(svg, "<title>{}</title>", esc(&snapshot.title));
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    // Title and the headline figures.
    let _ = write!(
        svg,
        r##"<text x="{PLOT_LEFT}" y="22" font-size="16" font-weight="bold" fill="#222">{}</text>"##,
        esc(&truncate(&snapshot.title, 72))
    );
    // Say what the last figure is: "at resolution" only from data after the resolve.
    let caption = match (
        window.resolved_at,
        snapshot.at_resolution,
        snapshot.latest_at,
    ) {
        (Some(r), Some(_), _) if snapshot.end >= r => "baseline → peak → at resolution".to_string(),
        (Some(_), _, _) => "baseline → peak → latest (before the resolve)".to_string(),
        (None, _, Some(at)) => format!(
            "baseline → peak so far → now ({}, still firing)",
            at.with_timezone(&tz).format("%H:%M")
        ),
        (None, _, None) => "baseline → peak so far → now (still firing)".to_string(),
    };
    let _ = write!(
        svg,
        r##"<text class="summary" x="{PLOT_LEFT}" y="42" fill="#444">{}: {}</text>"##,
        esc(&caption),
        esc(&snapshot.summary)
    );

    // Incident window.
    let shade_from = x_of(window.impact_start);
    let shade_to = window.resolved_at.map_or(PLOT_RIGHT, x_of);
    if shade_to > shade_from {
        let _ = write!(
            svg,
            r##"<rect class="incident-window" x="{shade_from:.1}" y="{PLOT_TOP}" width="{:.1}" height="{PLOT_HEIGHT}" fill="#d62728" fill-opacity="0.10"/>"##,
            shade_to - shade_from
        );
        let _ = write!(
            svg,
            r##"<line class="impact-start" x1="{shade_from:.1}" y1="{PLOT_TOP}" x2="{shade_from:.1}" y2="{PLOT_BOTTOM}" stroke="#d62728" stroke-width="1"/>"##
        );
        if window.resolved_at.is_some() {
            let _ = write!(
                svg,
                r##"<line class="resolved" x1="{shade_to:.1}" y1="{PLOT_TOP}" x2="{shade_to:.1}" y2="{PLOT_BOTTOM}" stroke="#2ca02c" stroke-width="1"/>"##
            );
        }
        let label = if window.resolved_at.is_some() {
            "incident"
        } else {
            "incident (open)"
        };
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" fill="#d62728" font-size="11">{label}</text>"##,
            shade_from + 4.0,
            PLOT_BOTTOM - 6.0
        );
    }

    // Y grid and labels.
    let mut v = y_min;
    let mut guard = 0;
    while v <= y_max + y_step * 1e-6 && guard < 20 {
        let y = y_of(v);
        let _ = write!(
            svg,
            r##"<line class="grid" x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}" stroke="#e5e5e5"/>"##
        );
        let _ = write!(
            svg,
            r##"<text class="y-label" x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            PLOT_LEFT - 6.0,
            y + 4.0,
            esc(&format_value(snapshot.unit, clean_zero(v)))
        );
        v += y_step;
        guard += 1;
    }

    // X ticks in the configured zone.
    let (interval, _) = x_interval(t1 - t0);
    let offset_s = i64::from(
        tz.offset_from_utc_datetime(&t0.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let crosses_day = tz.from_utc_datetime(&t0.naive_utc()).date_naive()
        != tz.from_utc_datetime(&t1.naive_utc()).date_naive();
    let first_local = (t0.timestamp() + offset_s).div_euclid(interval) * interval + interval;
    let mut tick = first_local - offset_s;
    let mut guard = 0;
    while tick <= t1.timestamp() && guard < 50 {
        if let Some(at) = DateTime::<Utc>::from_timestamp(tick, 0) {
            let x = x_of(at);
            let local = at.with_timezone(&tz);
            let fmt = match (crosses_day, interval < 60) {
                (true, _) => "%m-%d %H:%M",
                (false, true) => "%H:%M:%S",
                (false, false) => "%H:%M",
            };
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{PLOT_BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#888"/>"##,
                PLOT_BOTTOM + 4.0
            );
            let _ = write!(
                svg,
                r##"<text class="x-label" x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                PLOT_BOTTOM + 17.0,
                local.format(fmt)
            );
        }
        tick += interval;
        guard += 1;
    }
    let start_local = t0.with_timezone(&tz);
    let _ = write!(
        svg,
        r##"<text class="x-caption" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{} ({})</text>"##,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        PLOT_BOTTOM + 36.0,
        start_local.format("%Y-%m-%d"),
        esc(tz.name())
    );

    // Axes.
    let _ = write!(
        svg,
        r##"<line x1="{PLOT_LEFT}" y1="{PLOT_BOTTOM}" x2="{PLOT_RIGHT}" y2="{PLOT_BOTTOM}" stroke="#888"/>"##
    );
    let _ = write!(
        svg,
        r##"<line x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" y2="{PLOT_BOTTOM}" stroke="#888"/>"##
    );

    // Threshold.
    if let Some(th) = snapshot.threshold.filter(|t| t.is_finite()) {
        let y = y_of(th);
        let _ = write!(
            svg,
            r##"<line class="threshold" x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>"##
        );
        let _ = write!(
            svg,
            r##"<text class="threshold-label" x="{:.1}" y="{:.1}" text-anchor="end" fill="#d62728" font-size="11">threshold {}</text>"##,
            PLOT_RIGHT - 4.0,
            y - 4.0,
            esc(&format_value(snapshot.unit, th))
        );
    }

    // Series: a gap of more than two steps (or a NaN) breaks the line.
    let max_gap = Duration::milliseconds((snapshot.step_seconds * 2000.0).max(1.0) as i64);
    for (i, s) in snapshot.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut d = String::new();
        let mut prev: Option<DateTime<Utc>> = None;
        for p in &s.points {
            if !p.value.is_finite() || p.at < t0 || p.at > t1 {
                prev = None;
                continue;
            }
            let cmd = match prev {
                Some(pt) if p.at - pt <= max_gap => 'L',
                _ => 'M',
            };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", x_of(p.at), y_of(p.value));
            prev = Some(p.at);
        }
        if !d.is_empty() {
            let _ = write!(
                svg,
                r##"<path class="series" d="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"/>"##,
                d.trim_end()
            );
        }
    }
    if !has_data {
        let _ = write!(
            svg,
            r##"<text class="no-data" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888" font-size="14">no data</text>"##,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            PLOT_TOP + PLOT_HEIGHT / 2.0
        );
    }

    // Legend, two columns (one when there is a single series, so its labels fit).
    let col_width = (PLOT_RIGHT - PLOT_LEFT) / 2.0;
    let max_chars = if legend.len() == 1 { 110 } else { 52 };
    for (i, label) in legend.iter().enumerate() {
        let x = PLOT_LEFT + (i % 2) as f64 * col_width;
        let y = PLOT_BOTTOM + 56.0 + (i / 2) as f64 * LEGEND_ROW;
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="14" height="4" fill="{colour}"/>"##,
            y - 6.0
        );
        let _ = write!(
            svg,
            r##"<text class="legend" x="{:.1}" y="{y:.1}" fill="#333">{}</text>"##,
            x + 20.0,
            esc(&truncate(label, max_chars))
        );
    }
    if snapshot.series_omitted > 0 {
        let y = PLOT_BOTTOM + 56.0 + legend_rows as f64 * LEGEND_ROW;
        let _ = write!(
            svg,
            r##"<text x="{PLOT_LEFT}" y="{y:.1}" fill="#888" font-size="11">+{} more series not shown</text>"##,
            snapshot.series_omitted
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `-0` prints as `0`.
fn clean_zero(v: f64) -> f64 {
    if v.abs() < 1e-12 {
        0.0
    } else {
        v
    }
}

/// A y range from 0 (when all values are non-negative) to a rounded maximum, with ~5 ticks of
/// a 1-2-5 step; ratios and percentages are clamped to their natural scale when they fit.
fn y_axis(lo: f64, hi: f64, unit: Unit) -> (f64, f64, f64) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    if lo >= 0.0 {
        lo = 0.0;
    }
    if unit == Unit::Ratio && hi <= 1.0 && hi > 0.5 {
        hi = 1.0;
    }
    if (hi - lo).abs() < 1e-12 {
        hi = lo + if lo == 0.0 { 1.0 } else { lo.abs() };
    }
    let step = nice_number((hi - lo) / 5.0);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    (lo, hi, step)
}

fn nice_number(raw: f64) -> f64 {
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    let f = raw / base;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * base
}

/// The smallest readable tick interval (seconds) giving at most 8 ticks.
fn x_interval(span: Duration) -> (i64, usize) {
    const CANDIDATES: [i64; 19] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
        604800,
    ];
    let secs = span.num_seconds().max(1);
    for c in CANDIDATES {
        let n = (secs / c) as usize;
        if n <= 8 {
            return (c, n);
        }
    }
    (secs / 8 + 1, 8)
}

/// One label per series: the labels that differ between series, or the title for one series.
fn legend_labels(snapshot: &Snapshot) -> Vec<String> {
    let sets: Vec<&LabelSet> = snapshot.series.iter().map(|s| &s.labels).collect();
    if sets.len() <= 1 {
        return sets
            .first()
            .map(|l| {
                vec![if l.is_empty() {
                    snapshot.title.clone()
                } else {
                    format_labels(l, |_| true)
                }]
            })
            .unwrap_or_default();
    }
    let varies = |k: &str| {
        let first = sets[0].get(k);
        sets.iter().any(|s| s.get(k) != first)
    };
    sets.iter()
        .map(|l| {
            let s = format_labels(l, |k| varies(k));
            if s == "{}" {
                format_labels(l, |_| true)
            } else {
                s
            }
        })
        .collect()
}

fn format_labels(l: &LabelSet, keep: impl Fn(&str) -> bool) -> String {
    let inner: Vec<String> = l
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence_rules::Direction;
    use crate::prometheus::client::RangeSeries;
    use crate::prometheus::snapshot::{build_snapshot, QuerySource, SnapshotQuery};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn recorded_pool_snapshot() -> (Snapshot, ChartWindow) {
        let body: serde_json::Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/scenario-single/prometheus-recovered/prom-api-v1-query_range-pool-ratio.json"
            ))
            .expect("fixture"),
        )
        .expect("json");
        let series: Vec<RangeSeries> =
            serde_json::from_value(body["data"]["result"].clone()).expect("matrix");
        let q = SnapshotQuery {
            name: "alert-DatabaseConnectionPoolHigh".into(),
            title: "DatabaseConnectionPoolHigh: connection pool utilisation".into(),
            query: "db_connection_pool_active / db_connection_pool_max".into(),
            unit: Unit::Ratio,
            direction: Direction::HigherIsWorse,
            threshold: Some(0.95),
            source: QuerySource::Alert {
                alertname: "DatabaseConnectionPoolHigh".into(),
            },
            eval_interval: None,
        };
        let window = ChartWindow {
            impact_start: t("2026-11-23T02:26:23.381Z"),
            resolved_at: Some(t("2026-11-23T02:27:02.738Z")),
        };
        let snap = build_snapshot(
            &q,
            series,
            &crate::prometheus::snapshot::SnapshotTimes {
                impact_start: window.impact_start,
                incident_end: t("2026-11-23T02:27:02.738Z"),
                resolved_at: Some(t("2026-11-23T02:27:02.738Z")),
                start: t("2026-11-23T02:26:12.381Z"),
                end: t("2026-11-23T02:27:17.381Z"),
                step: std::time::Duration::from_secs(1),
            },
            &[],
            10,
        );
        (snap, window)
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"))
    }

    fn with_class<'a>(
        doc: &'a roxmltree::Document<'a>,
        class: &str,
    ) -> Vec<roxmltree::Node<'a, 'a>> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .collect()
    }

    #[test]
    fn the_pool_chart_is_well_formed_svg_with_window_threshold_and_series() {
        let (snap, window) = recorded_pool_snapshot();
        let svg = render_svg(&snap, &window, chrono_tz::Europe::Paris);
        let doc = parse(&svg);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert_eq!(with_class(&doc, "incident-window").len(), 1);
        assert_eq!(with_class(&doc, "threshold").len(), 1);
        assert_eq!(with_class(&doc, "series").len(), 1);
        let threshold_label: Vec<_> = with_class(&doc, "threshold-label")
            .iter()
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(threshold_label, ["threshold 95 %"]);
        // 02:26 UTC is 03:26 in Paris in November; the caption names the zone and the date.
        let x_labels: Vec<&str> = with_class(&doc, "x-label")
            .iter()
            .filter_map(|n| n.text())
            .collect();
        assert!(
            x_labels.iter().all(|l| l.starts_with("03:2")),
            "{x_labels:?}"
        );
        assert!(x_labels.len() >= 4, "{x_labels:?}");
        let caption = with_class(&doc, "x-caption")[0].text().expect("caption");
        assert_eq!(caption, "2026-11-23 (Europe/Paris)");
        let summary = with_class(&doc, "summary")[0].text().expect("summary");
        // "At resolution" is the first value at or after the resolve (25 %), not the last before.
        assert!(
            summary.ends_with("at resolution: 19 % → 100 % → 25 %"),
            "{summary}"
        );
        let y_labels: Vec<&str> = with_class(&doc, "y-label")
            .iter()
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(y_labels.first(), Some(&"0 %"));
        assert_eq!(y_labels.last(), Some(&"100 %"));
    }

    #[test]
    fn the_committed_example_chart_matches_the_renderer() {
        let (snap, window) = recorded_pool_snapshot();
        let svg = render_svg(&snap, &window, chrono_tz::UTC);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/chart-example.svg");
        if std::env::var_os("UPDATE_CHART_EXAMPLE").is_some() {
            std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).expect("docs/");
            std::fs::write(path, &svg).expect("write example");
        }
        let committed = std::fs::read_to_string(path).expect("docs/chart-example.svg exists");
        assert_eq!(
            committed, svg,
            "rerun with UPDATE_CHART_EXAMPLE=1 and review the chart"
        );
    }

    #[test]
    fn an_empty_snapshot_still_renders_and_says_no_data() {
        let (mut snap, window) = recorded_pool_snapshot();
        snap.series.clear();
        snap.threshold = None;
        snap.title = "A <tricky> & \"quoted\" title".into();
        let svg = render_svg(
            &snap,
            &ChartWindow {
                resolved_at: None,
                ..window
            },
            chrono_tz::UTC,
        );
        let doc = parse(&svg);
        assert_eq!(with_class(&doc, "no-data").len(), 1);
        assert!(with_class(&doc, "threshold").is_empty());
        assert!(with_class(&doc, "series").is_empty());
        assert!(svg.contains("A &lt;tricky&gt; &amp; &quot;quoted&quot; title"));
        assert!(svg.contains("incident (open)"));
    }

    #[test]
    fn many_series_get_distinct_colours_and_legend_labels_that_differ() {
        let (mut snap, window) = recorded_pool_snapshot();
        let base = snap.series[0].clone();
        snap.series = (0..3)
            .map(|i| {
                let mut s = base.clone();
                s.labels.insert("instance".into(), format!("db-{i}"));
                for p in &mut s.points {
                    p.value *= 0.5 + 0.2 * i as f64;
                }
                s
            })
            .collect();
        let svg = render_svg(&snap, &window, chrono_tz::UTC);
        let doc = parse(&svg);
        let strokes: std::collections::BTreeSet<_> = with_class(&doc, "series")
            .iter()
            .filter_map(|n| n.attribute("stroke"))
            .collect();
        assert_eq!(strokes.len(), 3);
        let legend: Vec<&str> = with_class(&doc, "legend")
            .iter()
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(
            legend,
            [
                r#"{instance="db-0"}"#,
                r#"{instance="db-1"}"#,
                r#"{instance="db-2"}"#
            ]
        );
    }

    #[test]
    fn a_gap_in_the_data_breaks_the_line() {
        let (mut snap, window) = recorded_pool_snapshot();
        snap.series[0].points.drain(20..25);
        let svg = render_svg(&snap, &window, chrono_tz::UTC);
        let doc = parse(&svg);
        let d = with_class(&doc, "series")[0].attribute("d").expect("d");
        assert_eq!(d.matches('M').count(), 2, "{d}");
    }
}
