//! Post-mortem drafts rendered from the recorded `scenario-single` run: three alerts of
//! payment-service (connection pool, latency, 5xx errors) that fired and resolved within
//! a minute. The incident is built here the way the core builds it, from the recorded
//! webhooks, their receipt times, the rules file and the recovered Prometheus answers.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use incidentd::incident::{
    AlertStatus, EventKind, ImpactMethod, Incident, NotificationCounts, Occurrence, Status,
    TimelineEvent, ACTOR_INCIDENTD, ACTOR_PROMETHEUS,
};
use incidentd::postmortem::{
    ActionSuggestion, Communication, ConditionStart, DraftWriter, Evidence, ImpactFigure,
    PostmortemError, RenderInput, RenderSettings, Renderer, RuleInfo, Slo, Snapshot, Unit,
    WriteOutcome,
};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-single")
}

fn read_json(rel: &str) -> Value {
    let path = fixture_dir().join(rel);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn unix(t: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((t * 1000.0).round() as i64).expect("valid unix time")
}

fn label_set(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("label object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
        .collect()
}

/// The occurrences as the core keeps them: identity (fingerprint, startsAt), first and
/// last receipt, annotations and endsAt from the latest notification.
fn occurrences() -> (Vec<Occurrence>, u64) {
    let index = read_json("webhooks/index.json");
    let mut by_id: BTreeMap<(String, String), Occurrence> = BTreeMap::new();
    let mut received = 0;
    for entry in index.as_array().expect("index is a list") {
        let at = time(entry["received_at"].as_str().expect("received_at"));
        let payload = read_json(entry["file"].as_str().expect("file"));
        let group_key = payload["groupKey"].as_str().expect("groupKey").to_string();
        for a in payload["alerts"].as_array().expect("alerts") {
            received += 1;
            let fp = a["fingerprint"].as_str().expect("fingerprint").to_string();
            let starts = a["startsAt"].as_str().expect("startsAt").to_string();
            let labels = label_set(&a["labels"]);
            let annotations = label_set(&a["annotations"]);
            let resolved = a["status"] == "resolved";
            let ends_at = resolved.then(|| time(a["endsAt"].as_str().expect("endsAt")));
            let occ = by_id
                .entry((fp.clone(), starts.clone()))
                .or_insert_with(|| Occurrence {
                    fingerprint: fp,
                    starts_at: time(&starts),
                    ends_at: None,
                    status: AlertStatus::Firing,
                    alertname: labels["alertname"].clone(),
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                    generator_url: a["generatorURL"].as_str().expect("url").to_string(),
                    group_key: group_key.clone(),
                    first_seen_at: at,
                    last_seen_at: at,
                    resolved_by: None,
                });
            occ.last_seen_at = at;
            occ.annotations = annotations;
            if resolved {
                occ.status = AlertStatus::Resolved;
                occ.ends_at = ends_at;
                occ.resolved_by = Some("alertmanager".to_string());
            }
        }
    }
    (by_id.into_values().collect(), received)
}

/// The first instant any alert expression was true, from the recovered range queries:
/// what the core's rule re-evaluation finds.
/// The first time the recorded re-evaluation of `alertname`'s rule was true.
fn first_true_of(alertname: &str) -> DateTime<Utc> {
    let v = read_json(&format!(
        "prometheus-recovered/prom-api-v1-query_range-{alertname}.json"
    ));
    let first = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|series| series["values"][0][0].as_f64().expect("timestamp"))
        .fold(f64::MAX, f64::min);
    unix(first)
}

fn first_true() -> DateTime<Utc> {
    [
        "DatabaseConnectionPoolHigh",
        "HighErrorRate",
        "HighRequestLatency",
    ]
    .into_iter()
    .map(first_true_of)
    .min()
    .expect("rules")
}

fn scenario_incident() -> Incident {
    let (mut alerts, received) = occurrences();
    // Firing order, the most severe first among simultaneous ones, as the core lists them.
    alerts.sort_by_key(|a| (a.starts_at, a.severity() != Some("critical")));
    let fired_at = alerts.iter().map(|a| a.starts_at).min().expect("alerts");
    let detected_at = alerts
        .iter()
        .map(|a| a.first_seen_at)
        .min()
        .expect("alerts");
    let resolved_at = alerts.iter().filter_map(|a| a.ends_at).max();
    let mut timeline = Vec::new();
    for a in &alerts {
        timeline.push(TimelineEvent {
            at: a.starts_at,
            kind: EventKind::AlertFiring,
            actor: ACTOR_PROMETHEUS.to_string(),
            text: format!(
                "{} fired ({}): {}",
                a.alertname,
                a.severity().unwrap_or("no severity"),
                a.annotations
                    .get("summary")
                    .map(String::as_str)
                    .unwrap_or("")
            ),
        });
        if let Some(end) = a.ends_at {
            timeline.push(TimelineEvent {
                at: end,
                kind: EventKind::AlertResolved,
                actor: ACTOR_PROMETHEUS.to_string(),
                text: format!("{} resolved", a.alertname),
            });
        }
    }
    timeline.push(TimelineEvent {
        at: detected_at,
        kind: EventKind::Detected,
        actor: ACTOR_INCIDENTD.to_string(),
        text: "First notification received; incident opened".to_string(),
    });
    if let Some(end) = resolved_at {
        timeline.push(TimelineEvent {
            at: end,
            kind: EventKind::Resolved,
            actor: ACTOR_INCIDENTD.to_string(),
            text: "All alerts resolved; incident resolved".to_string(),
        });
    }
    timeline.sort_by_key(|e| e.at);
    Incident {
        id: "INC-2026-0001".to_string(),
        key: "service=\"payment-service\"".to_string(),
        title: "Database connection pool nearly exhausted on payment-service".to_string(),
        status: Status::Resolved,
        severity: Some("critical".to_string()),
        service: Some("payment-service".to_string()),
        impact_start: Some(first_true()),
        impact_start_method: ImpactMethod::RuleReevaluation,
        fired_at,
        detected_at,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at,
        resolved_by: None,
        reopen_count: 0,
        notifications: NotificationCounts {
            received,
            duplicate: 0,
            stale: 0,
        },
        version: 6,
        alerts,
        timeline,
    }
}

fn prom_duration_secs(s: &str) -> u64 {
    let (num, unit) = s.split_at(s.len() - 1);
    let n: u64 = num.parse().expect("duration number");
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        other => panic!("unit {other}"),
    }
}

fn rules() -> Vec<RuleInfo> {
    let text = fs::read_to_string(fixture_dir().join("config/rules.yml")).expect("rules.yml");
    let doc: Value = serde_norway::from_str(&text).expect("rules.yml parses");
    let mut out = Vec::new();
    for g in doc["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            out.push(RuleInfo {
                alertname: r["alert"].as_str().expect("alert").to_string(),
                expr: r["expr"].as_str().expect("expr").to_string(),
                for_seconds: r["for"].as_str().map(prom_duration_secs),
                labels: label_set(&r["labels"]),
                annotations: label_set(&r["annotations"]),
                group: g["name"].as_str().map(str::to_string),
                source: None,
            });
        }
    }
    out
}

/// Values of one recovered range query, as (time, value).
fn series(name: &str) -> Vec<(DateTime<Utc>, f64)> {
    let v = read_json(&format!(
        "prometheus-recovered/prom-api-v1-query_range-{name}.json"
    ));
    v["data"]["result"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            let t = p[0].as_f64().expect("t");
            let x: f64 = p[1].as_str().expect("v").parse().expect("number");
            (unix(t), x)
        })
        .collect()
}

/// Baseline (mean before the impact start), peak, and the last value at or before the
/// resolution: what the evidence module computes from the same answers.
fn reduce(
    points: &[(DateTime<Utc>, f64)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    let before: Vec<f64> = points.iter().filter(|p| p.0 < start).map(|p| p.1).collect();
    let baseline = (!before.is_empty()).then(|| before.iter().sum::<f64>() / before.len() as f64);
    let peak = points
        .iter()
        .filter(|p| p.0 >= start && p.0 <= end)
        .map(|p| p.1)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    // Only a sample within two steps of the resolution counts as "at resolution".
    let at_end = points
        .iter()
        .rfind(|p| p.0 <= end && (end - p.0).num_milliseconds() <= 2000)
        .map(|p| p.1);
    (baseline, peak, at_end)
}

fn scenario_evidence(incident: &Incident) -> Evidence {
    let start = incident.impact_start.expect("impact start");
    let end = incident.resolved_at.expect("resolved");
    let pool = reduce(&series("pool-ratio"), start, end);
    // The error-rate and latency answers are of the alert expressions themselves, which
    // drop every point under the threshold: no baseline, and nothing at resolution.
    let errors = reduce(&series("HighErrorRate"), start, end);
    let latency = reduce(&series("HighRequestLatency"), start, end);
    let rules = rules();
    let expr = |name: &str| {
        rules
            .iter()
            .find(|r| r.alertname == name)
            .map(|r| r.expr.clone())
            .expect("rule")
    };
    Evidence {
        snapshots: vec![
            Snapshot {
                name: "Connection pool utilisation".into(),
                query: "db_connection_pool_active / db_connection_pool_max".into(),
                unit: Unit::Ratio,
                baseline: pool.0,
                peak: pool.1,
                lower_is_worse: false,
                at_resolution: pool.2,
                latest: pool.2,
                latest_at: None,
                no_data: false,
                note: None,
                change: None,
                threshold: Some(0.95),
                chart: Some("pool-ratio.svg".into()),
                alertname: Some("DatabaseConnectionPoolHigh".into()),
            },
            Snapshot {
                name: "p99 request latency".into(),
                query: expr("HighRequestLatency"),
                unit: Unit::Seconds,
                baseline: latency.0,
                peak: latency.1,
                lower_is_worse: false,
                at_resolution: latency.2,
                latest: latency.2,
                latest_at: None,
                no_data: false,
                note: None,
                change: None,
                threshold: Some(1.0),
                chart: Some("HighRequestLatency.svg".into()),
                alertname: Some("HighRequestLatency".into()),
            },
            Snapshot {
                name: "5xx error ratio".into(),
                query: expr("HighErrorRate"),
                unit: Unit::Ratio,
                baseline: errors.0,
                peak: errors.1,
                lower_is_worse: false,
                at_resolution: errors.2,
                latest: errors.2,
                latest_at: None,
                no_data: false,
                note: None,
                change: None,
                threshold: Some(0.05),
                chart: Some("HighErrorRate.svg".into()),
                alertname: Some("HighErrorRate".into()),
            },
        ],
        rules,
        // The 5xx counters at the recovered capture (prom-federate.txt: 217 + 93); the
        // exporter started seconds before the incident, so nearly all of them are its.
        impact: vec![ImpactFigure {
            name: "Failed requests (5xx)".into(),
            value: "310".into(),
            query: "sum(http_requests_total{service=\"payment-service\",code=~\"5..\"})".into(),
        }],
        condition_starts: incident
            .alerts
            .iter()
            .map(|a| ConditionStart {
                fingerprint: a.fingerprint.clone(),
                fired_at: a.starts_at,
                at: first_true_of(&a.alertname),
                method: ImpactMethod::RuleReevaluation,
                at_or_before: false,
            })
            .collect(),
        // Configuration of the rules directory, not recorded: an SLO and suggestions.
        slo: Some(Slo {
            target_percent: 99.9,
            window_seconds: 30 * 86_400,
        }),
        action_items: vec![
            ActionSuggestion {
                action: "Add a warning alert at 80% connection pool utilisation".into(),
                priority: Some("P2".into()),
                alertname: Some("DatabaseConnectionPoolHigh".into()),
            },
            ActionSuggestion {
                action: "Set a statement timeout on payment-service's database connections".into(),
                priority: Some("P1".into()),
                alertname: Some("DatabaseConnectionPoolHigh".into()),
            },
        ],
        missing_reason: None,
        rules_problem: None,
        collected_at: Some(time("2026-11-23T02:27:17.548Z")),
        // The recording was taken after the resolve: its values at resolution are true.
        data_until: Some(time("2026-11-23T02:27:17.548Z")),
        resolved_at: Some(end),
        full_delay_seconds: Some(15),
    }
}

fn settings() -> RenderSettings {
    RenderSettings {
        timezone: Tz::UTC,
        second_timezone: None,
        external_url: Some("http://127.0.0.1:18080/".into()),
        prometheus_url: Some("http://127.0.0.1:19090".into()),
        alertmanager_url: Some("http://127.0.0.1:19093".into()),
        severity_map: Default::default(),
    }
}

fn render(incident: &Incident, evidence: &Evidence) -> String {
    let renderer = Renderer::new(settings(), None).expect("default template compiles");
    renderer
        .render(&RenderInput {
            incident,
            evidence,
            related: &[],
            communication: &Default::default(),
            generated_at: time("2026-11-23T02:27:18Z"),
        })
        .expect("renders")
}

/// Lines outside fenced code blocks, with their line numbers.
fn prose_lines(md: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<usize> = None;
    let mut out = Vec::new();
    for (i, line) in md.lines().enumerate() {
        let ticks = line.chars().take_while(|c| *c == '`').count();
        match fence {
            None if ticks >= 3 => fence = Some(ticks),
            Some(n) if ticks >= n && line.trim_end().chars().all(|c| c == '`') => fence = None,
            None => out.push((i + 1, line)),
            Some(_) => {}
        }
    }
    assert!(fence.is_none(), "a code fence is left open");
    out
}

/// Cells of a table row: split on pipes that no backslash escapes.
fn cell_count(row: &str) -> usize {
    let mut count: usize = 0;
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => count += 1,
            _ => escaped = false,
        }
    }
    count.saturating_sub(1)
}

/// Checks every table keeps its shape and has rows, and nothing prints `null` or a raw
/// RFC 3339 time.
fn assert_well_formed(md: &str) {
    let lines = prose_lines(md);
    let mut i = 0;
    while i < lines.len() {
        let (n, line) = lines[i];
        if line.starts_with('|') {
            let width = cell_count(line);
            let mut rows = 0;
            let mut j = i + 1;
            while j < lines.len() && lines[j].1.starts_with('|') {
                assert_eq!(
                    cell_count(lines[j].1),
                    width,
                    "line {} has another column count than its header (line {n}): {}",
                    lines[j].0,
                    lines[j].1
                );
                rows += 1;
                j += 1;
            }
            assert!(rows >= 2, "table at line {n} has no rows");
            i = j;
        } else {
            i += 1;
        }
    }
    for (n, line) in &lines {
        assert!(!line.contains("null"), "line {n} prints null: {line}");
        let bytes = line.as_bytes();
        for w in bytes.windows(16) {
            let looks_rfc3339 = w[..4].iter().all(u8::is_ascii_digit)
                && w[4] == b'-'
                && w[7] == b'-'
                && w[10] == b'T'
                && w[13] == b':';
            assert!(!looks_rfc3339, "line {n} has a raw RFC 3339 time: {line}");
        }
    }
}

/// A line with its code spans removed: inside them `<script>` is text, not a tag.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '`' && (i == 0 || chars[i - 1] != '\\') {
            let run = chars[i..].iter().take_while(|c| **c == '`').count();
            let fence: String = "`".repeat(run);
            let rest: String = chars[i + run..].iter().collect();
            let closing = rest.match_indices(&fence).find(|(at, _)| {
                let after = rest[at + run..].chars().next();
                let before = rest[..*at].chars().last();
                after != Some('`') && before != Some('`')
            });
            if let Some((at, _)) = closing {
                i += run + rest[..at].chars().count() + run;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn headings(md: &str) -> Vec<String> {
    prose_lines(md)
        .into_iter()
        .filter(|(_, l)| l.trim_start_matches(['>', ' ']).starts_with('#'))
        .map(|(_, l)| l.to_string())
        .collect()
}

#[test]
fn the_scenario_single_draft_matches_the_reviewed_snapshot() {
    let incident = scenario_incident();
    let md = render(&incident, &scenario_evidence(&incident));
    assert_well_formed(&md);
    insta::assert_snapshot!("scenario_single", md);
}

/// The image references of a Markdown document: `![alt](target)` and `<img src=…>`.
fn image_targets(md: &str) -> Vec<String> {
    let markdown = regex::Regex::new(r#"!\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)"#).expect("regex");
    let html = regex::Regex::new(r#"(?i)<img\b[^>]*?\bsrc\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)"#)
        .expect("regex");
    let mut out = Vec::new();
    for c in markdown.captures_iter(md) {
        out.push(
            c[1].trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        );
    }
    for c in html.captures_iter(md) {
        out.push(c[1].trim_matches(['"', '\'']).to_string());
    }
    out
}

#[test]
fn image_targets_finds_markdown_and_html_images() {
    let md = "![a](x/a.svg) text ![b](<y b.svg> \"t\")\n<IMG alt=q src='z.png'> <img src=w.svg>\n[not](an/image.svg)";
    assert_eq!(image_targets(md), ["x/a.svg", "y b.svg", "z.png", "w.svg"]);
}

/// Every image an example document shows (`examples/*.md`) is a file of the repository,
/// relative to the document: the showcase's charts are committed with it.
#[test]
fn every_image_in_the_examples_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // In a git checkout the image must be tracked, not only present in the work tree.
    let tracked: Option<Vec<PathBuf>> = std::process::Command::new("git")
        .args(["ls-files", "-z", "--", "examples"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .map(|o| {
            o.stdout
                .split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
                .collect()
        });
    let mut checked = 0;
    let mut missing = Vec::new();
    for entry in fs::read_dir(root.join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let md = fs::read_to_string(&path).expect("read example");
        let dir = path.parent().expect("parent");
        for target in image_targets(&md) {
            checked += 1;
            let file = target.split(['#', '?']).next().unwrap_or_default();
            let local = !file.is_empty()
                && !file.contains("://")
                && !file.starts_with('/')
                && !file.starts_with("data:");
            let resolved = dir.join(file.replace("%20", " "));
            let present = local
                && resolved.is_file()
                && tracked.as_ref().is_none_or(|t| {
                    let canonical = resolved.canonicalize().ok();
                    t.iter().any(|p| p.canonicalize().ok() == canonical)
                });
            if !present {
                missing.push(format!("{}: {target}", path.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "images not in the repository: {missing:#?}"
    );
    assert!(checked > 0, "the showcase draft shows its charts");
}

#[test]
fn the_scenario_figures_are_the_ones_the_fixtures_imply() {
    let incident = scenario_incident();
    let md = render(&incident, &scenario_evidence(&incident));
    // Impact start 02:26:23.381 (first true sample), detected 02:26:29.744, last endsAt
    // 02:27:02.738: TTD 6s, TTR 33s, duration 39s; `for: 5s` of the TTD.
    assert!(md.contains("| Time to detect (TTD) | 6s |"), "{md}");
    assert!(md.contains("| Time to resolve (TTR, detection to resolution) | 33s |"));
    assert!(md.contains("| Duration (impact start to resolution) | 39s |"));
    assert!(md.contains("| rule `for: 5s` | 5s |"));
    assert!(md.contains("2026-11-23 02:26:23 UTC"));
    assert!(md.contains("| Connection pool utilisation (threshold 95%) | 19.09% | 100% | 26% |"));
}

#[test]
fn hostile_label_and_annotation_values_do_not_break_the_document() {
    let mut incident = scenario_incident();
    let clean = headings(&render(&incident, &scenario_evidence(&incident)));
    let nasty =
        "a | b `tick` <script>alert(1)</script>\n# Injected heading\r\n| x | y |\n```\n- item";
    incident.title = format!("Pool {nasty}");
    for a in &mut incident.alerts {
        a.labels.insert("pool".into(), nasty.into());
        a.labels.insert("instance".into(), "host|1\n## two".into());
        a.annotations
            .insert("summary".into(), format!("## {nasty}"));
        a.annotations
            .insert("description".into(), format!("# {nasty}"));
        a.annotations.insert(
            "runbook_url".into(),
            "https://x.example/a b)|`<script>".into(),
        );
        a.annotations
            .insert("dashboard_url".into(), "javascript:alert(1)\n# h".into());
    }
    for e in &mut incident.timeline {
        e.text = format!("{} {nasty}", e.text);
    }
    incident.timeline.push(TimelineEvent {
        at: incident.detected_at,
        kind: EventKind::NoteAdded,
        actor: "eve | <b>".into(),
        text: nasty.into(),
    });
    let mut evidence = scenario_evidence(&incident);
    evidence.impact[0].name = nasty.into();
    evidence.impact[0].value = "1 | 2".into();
    evidence.snapshots[0].name = nasty.into();
    evidence.action_items[0].action = nasty.into();
    evidence.missing_reason = None;

    let md = render(&incident, &evidence);
    assert_well_formed(&md);
    assert_eq!(headings(&md).len(), clean.len(), "headings changed:\n{md}");
    for (n, line) in prose_lines(&md) {
        let line = without_code_spans(line);
        assert!(
            !line.to_ascii_lowercase().contains("<script"),
            "line {n} carries a live tag: {line}"
        );
        assert!(!line.contains("<b>"), "line {n} carries a live tag: {line}");
        assert!(
            !line.starts_with("- item"),
            "line {n} became a list item: {line}"
        );
        assert!(
            !line.contains("](javascript:"),
            "line {n} links to javascript: {line}"
        );
    }
}

#[test]
fn without_evidence_the_draft_says_what_is_missing_and_why() {
    let incident = scenario_incident();
    let evidence = Evidence {
        missing_reason: Some(
            "Prometheus at http://127.0.0.1:19090 did not answer within 10s".into(),
        ),
        ..Evidence::default()
    };
    let md = render(&incident, &evidence);
    assert_well_formed(&md);
    assert!(md.contains(
        "**Evidence from Prometheus is missing:** Prometheus at http://127.0.0.1:19090 did not answer within 10s."
    ));
    assert!(md.contains(
        "No impact figures: evidence from Prometheus is missing (Prometheus at http://127.0.0.1:19090 did not answer within 10s)."
    ));
    // The rule still shows, from the generatorURL, and says what that leaves out.
    assert!(md.contains("expr: db_connection_pool_active / db_connection_pool_max > 0.95"));
    assert!(md.contains(
        "Expression from the alert's generatorURL; its `for` and labels are unknown (the rules API was not asked: Prometheus at"
    ));
    assert!(!md.contains("| Metric | Baseline |"));
}

#[test]
fn a_hand_edited_draft_survives_a_re_render() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = DraftWriter::new(dir.path());
    let mut incident = scenario_incident();
    let evidence = scenario_evidence(&incident);
    let first = render(&incident, &evidence);
    writer
        .write(&incident.id, &first, &[])
        .expect("first write");

    let edited = first.replace(
        "**Root cause:** _TODO: one sentence_",
        "**Root cause:** a slow query held every pool connection.",
    );
    assert_ne!(edited, first);
    fs::write(writer.draft_path(&incident.id), &edited).expect("edit");

    incident.timeline.push(TimelineEvent {
        at: incident.resolved_at.expect("resolved"),
        kind: EventKind::NoteAdded,
        actor: "sarah".into(),
        text: "Killed the long-running report query".into(),
    });
    incident.version += 1;
    let second = render(&incident, &evidence);
    let outcome = writer
        .write(&incident.id, &second, &[])
        .expect("second write");

    assert!(
        matches!(outcome, WriteOutcome::KeptEdited { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        fs::read_to_string(writer.draft_path(&incident.id)).expect("read"),
        edited
    );
    let generated = fs::read_to_string(writer.generated_path(&incident.id)).expect("read");
    assert!(generated.contains("Killed the long-running report query"));
}

#[test]
fn a_custom_template_with_a_misspelt_field_fails_with_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("team.md.hbs");
    fs::write(&path, "# {{title}}\n\n{{summary.what_hapened}}\n").expect("write");
    let renderer = Renderer::new(settings(), Some(&path)).expect("compiles");
    let incident = scenario_incident();
    let err = renderer
        .render(&RenderInput {
            incident: &incident,
            evidence: &Evidence::default(),
            related: &[],
            communication: &Default::default(),
            generated_at: time("2026-11-23T02:27:18Z"),
        })
        .expect_err("strict mode");
    assert!(matches!(err, PostmortemError::Render { .. }));
    assert!(format!("{err:?}").contains("what_hapened"), "{err:?}");
    assert!(err.to_string().contains("team.md.hbs"), "{err}");
}

#[test]
fn a_metric_where_lower_is_worse_says_its_peak_is_the_lowest_value() {
    let incident = scenario_incident();
    let mut evidence = scenario_evidence(&incident);
    evidence.snapshots[0].lower_is_worse = true;
    let md = render(&incident, &evidence);
    let row = md
        .lines()
        .find(|l| l.starts_with("| Connection pool utilisation"))
        .expect("the pool row");
    assert!(row.contains("(lowest)"), "{row}");
    let other = md
        .lines()
        .find(|l| l.starts_with("| p99 request latency"))
        .expect("the latency row");
    assert!(!other.contains("(lowest)"), "{other}");
}

/// The section kinds that at least two of the five hand-written post-mortems in
/// `../shared/postmortem-examples` have, as the draft's headings name them.
const SECTIONS: &[&str] = &[
    "# Post-Mortem:",
    "## Executive Summary",
    "## Impact",
    "## Detection",
    "## Response",
    "## Timeline",
    "## What Changed Before the Incident",
    "## Metrics During the Incident",
    "## Root Cause Analysis",
    "## Resolution",
    "## Communication",
    "### Internal",
    "### External",
    "## Action Items",
    "### Immediate",
    "### Short-term",
    "### Long-term",
    "## Prevention",
    "## Lessons Learned",
    "### Surprising findings",
    "## Related Incidents",
    "## References",
    "## Sign-off",
];

/// The text of one `## ` section, up to the next one.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}:\n{md}"));
    let rest = &md[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |e| e + heading.len());
    &rest[..end]
}

fn render_with(
    incident: &Incident,
    evidence: &Evidence,
    communication: &Communication,
    severity_map: &[(&str, &str)],
) -> String {
    let mut settings = settings();
    settings.severity_map = severity_map
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Renderer::new(settings, None)
        .expect("default template compiles")
        .render(&RenderInput {
            incident,
            evidence,
            related: &[],
            communication,
            generated_at: time("2026-11-23T02:27:18Z"),
        })
        .expect("renders")
}

#[test]
fn the_draft_has_every_section_the_examples_share_filled_where_known() {
    let mut incident = scenario_incident();
    let detected = incident.detected_at;
    let at = |s: i64| detected + chrono::Duration::seconds(s);
    incident.acknowledged_at = Some(at(5));
    incident.acknowledged_by = Some("alice".into());
    for (s, kind, actor, text) in [
        (5, EventKind::Acknowledged, "alice", "Acknowledged by alice"),
        (8, EventKind::NoteAdded, "bob", "Triage: only writes fail"),
        (
            12,
            EventKind::NoteAdded,
            "alice",
            "ROOT CAUSE: batch job holds connections",
        ),
        (
            20,
            EventKind::NoteAdded,
            "bob",
            "mitigated: batch job paused",
        ),
        (21, EventKind::NoteAdded, "carol", "watching the pool"),
    ] {
        incident.timeline.push(TimelineEvent {
            at: at(s),
            kind,
            actor: actor.into(),
            text: text.into(),
        });
    }
    incident.timeline.sort_by_key(|e| e.at);
    let evidence = scenario_evidence(&incident);
    let communication = Communication {
        slack_thread: Some(("C0PAYMENTS".into(), "1763864789.000100".into())),
        slack_updates: vec![
            (at(1), "Incident posted (root message of the thread)".into()),
            (at(6), "Acknowledged by alice".into()),
        ],
        thread_messages: Vec::new(),
    };
    let md = render_with(
        &incident,
        &evidence,
        &communication,
        &[("critical", "SEV-1 (P1)"), ("warning", "SEV-3 (P3)")],
    );
    assert_well_formed(&md);
    for heading in SECTIONS {
        assert!(
            md.lines().any(|l| l.starts_with(heading)),
            "no {heading}:\n{md}"
        );
    }

    // Organisation severity beside the alert label.
    assert!(
        md.contains("**Severity:** SEV-1 (P1), alert severity critical  "),
        "{md}"
    );
    // Milestones from the notes, with their times after detection; the notes stay as written.
    let response = section(&md, "## Response");
    for (name, after, by) in [
        ("Acknowledged", "5s", "alice"),
        ("Triaged", "8s", "bob"),
        ("Root cause identified", "12s", "alice"),
        ("Mitigated", "20s", "bob"),
    ] {
        let row = response
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name} row:\n{response}"));
        assert!(
            row.contains(&format!("| {after} |")) && row.contains(&format!("| {by} |")),
            "{row}"
        );
        assert!(!row.contains("_TODO"), "{row}");
    }
    assert!(md.contains("ROOT CAUSE: batch job holds connections"));
    // Communication: the thread, who took part, what incidentd posted; TODOs for outside.
    let communication = section(&md, "## Communication");
    for filled in [
        "`C0PAYMENTS`",
        "`1763864789.000100`",
        "alice (acknowledged, 1 note",
        "bob (2 notes",
        "carol (1 note",
        "Incident posted (root message of the thread)",
    ] {
        assert!(communication.contains(filled), "{filled}:\n{communication}");
    }
    for todo in ["**Status page:** _TODO:", "**Customer notice:** _TODO:"] {
        assert!(communication.contains(todo), "{todo}:\n{communication}");
    }
    // Action items by horizon: P1 immediate, P2 short-term; type and success criteria to fill.
    let actions = section(&md, "## Action Items");
    let immediate = &actions[..actions.find("### Short-term").expect("short-term")];
    assert!(immediate.contains("statement timeout"), "{actions}");
    assert!(actions.contains("| Type |") && actions.contains("| Success criteria |"));
    // What a machine cannot know is a TODO.
    for heading in [
        "## What Changed Before the Incident",
        "## Prevention",
        "## Sign-off",
    ] {
        assert!(section(&md, heading).contains("_TODO:"), "{heading}");
    }
    assert!(section(&md, "## Sign-off").contains("| Incident commander | _TODO:"));
    assert!(section(&md, "## Lessons Learned").contains("### Surprising findings\n\n- _TODO:"));
}

#[test]
fn without_slack_notes_or_a_severity_map_the_draft_says_so_and_leaves_todos() {
    let incident = scenario_incident();
    let evidence = scenario_evidence(&incident);
    let md = render_with(&incident, &evidence, &Communication::default(), &[]);
    assert!(md.contains("**Severity:** critical  "), "the label alone");
    let response = section(&md, "## Response");
    for name in [
        "Acknowledged",
        "Triaged",
        "Root cause identified",
        "Mitigated",
    ] {
        let row = response
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name} row"));
        assert!(row.contains("_TODO:"), "{row}");
    }
    let communication = section(&md, "## Communication");
    assert!(
        communication.contains("no Slack thread is recorded"),
        "{communication}"
    );
    assert!(
        communication.contains("_TODO: who took part_"),
        "{communication}"
    );
}

#[test]
fn timeline_offsets_use_the_drafts_one_duration_format() {
    let mut incident = scenario_incident();
    let late = incident.fired_at + chrono::Duration::seconds(759_240);
    incident.timeline.push(TimelineEvent {
        at: late,
        kind: EventKind::NoteAdded,
        actor: "alice".into(),
        text: "closing the books".into(),
    });
    let md = render(&incident, &scenario_evidence(&incident));
    assert!(!md.contains("210h"), "hours past a day read as days");
    let row = md
        .lines()
        .find(|l| l.contains("closing the books"))
        .expect("the note's row");
    assert!(row.contains("T+8d 18h"), "{row}");
}
