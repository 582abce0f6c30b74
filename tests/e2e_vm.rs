//! End to end with VictoriaMetrics instead of Prometheus (issue 14): the payment-service
//! exporter served by the test, a REAL VictoriaMetrics (Debian package `victoria-metrics`)
//! scraping it every second (`-promscrape.config`), a REAL vmalert evaluating
//! `examples/prometheus-rules.yml` made fast (`support::fast_rules`) against it and notifying a
//! REAL Alertmanager routed by `examples/alertmanager.yml`, which sends its webhooks to the
//! built `incidentd`, whose `prometheus.url` is VictoriaMetrics. All on free loopback ports, in
//! a temporary directory, killed when the test ends.
//!
//! Two set-ups:
//! - VictoriaMetrics with `-vmalert.proxyURL` and `-search.latencyOffset=1s`: `/api/v1/rules`
//!   of VictoriaMetrics lists vmalert's rules;
//! - VictoriaMetrics without `-vmalert.proxyURL`, at its DEFAULT `-search.latencyOffset` (30s:
//!   queries do not see the newest 30 s), with incidentd's `prometheus.query_lag: 30s` as the
//!   README documents: VictoriaMetrics lists no rules, incidentd finds them at vmalert through
//!   the alerts' generatorURL (vmalert's `-external.url`). vmalert sees the data 30 s late
//!   too, so its alerts fire and resolve 30 s after the exporter's switches, and the full
//!   snapshot runs 35 s after the resolve (`snapshot_delay`, which must exceed the lag): the
//!   only run that waits that long.
//!
//! Held to the truth: one resolved incident, resolved by Alertmanager's own resolve
//! notifications (never by the reconciler as lost while Alertmanager still had the alerts),
//! each alert's rule found with its expression and `for`, the impact start within 2 s
//! of the exporter's switch and the pool's peak at least 0.97 (the full snapshot's figures,
//! at either lag), and a draft without an unknown rule.
//!
//! Without the binaries each test prints a loud SKIP and passes, unless
//! `INCIDENTD_REQUIRE_E2E=1` (CI), in which case it fails. `INCIDENTD_E2E_KEEP=1` keeps the
//! temporary directory.

#[path = "e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use support::*;

const WEBHOOK_TOKEN: &str = "e2e-vm-webhook-token-7d21";
const INCIDENT_PHASE: Duration = Duration::from_secs(30);
const NORMAL_SCRAPES: u32 = 8;
/// The pool rule's expression as vmalert reports it (as written in the example).
const POOL_EXPR: &str = "db_connection_pool_active / db_connection_pool_max > 0.95";

struct Stack {
    http: reqwest::Client,
    exporter: Exporter,
    relay: Relay,
    vm_url: String,
    vmalert_url: String,
    incidentd_url: String,
    drafts: PathBuf,
    incidentd: Proc,
    alertmanager: Proc,
    vmalert: Proc,
    vm: Proc,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::env::var(KEEP_ENV).as_deref() == Ok("1") {
            if let Some(dir) = self.dir.take() {
                loud(&format!("kept {}", dir.keep().display()));
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// How a run is set up.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// VictoriaMetrics with `-vmalert.proxyURL`.
    proxy: bool,
    /// VictoriaMetrics at its default `-search.latencyOffset` (30s), and incidentd with
    /// `prometheus.query_lag: 30s` as the README documents for that case; otherwise
    /// `-search.latencyOffset=1s` and no `query_lag`.
    default_lag: bool,
}

/// VictoriaMetrics' default `-search.latencyOffset`, as `prometheus.query_lag`.
const VM_DEFAULT_LAG: &str = "30s";

impl Setup {
    /// How late vmalert sees the data: VictoriaMetrics' `-search.latencyOffset` (1 s is
    /// within the assertions' tolerance).
    fn vmalert_lag(self) -> Duration {
        Duration::from_secs(if self.default_lag { 30 } else { 0 })
    }
}

/// Starts exporter, Alertmanager, VictoriaMetrics (with `-vmalert.proxyURL` when `proxy`),
/// vmalert, the relay and incidentd, and waits until each is ready.
async fn start_stack(tools: &VmTools, setup: Setup) -> Stack {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let http = reqwest::Client::new();
    let exporter = Exporter::start().await;

    let incidentd_port = free_port();
    let incidentd_url = format!("http://127.0.0.1:{incidentd_port}");
    let relay = Relay::start(format!("{incidentd_url}/webhook/alertmanager")).await;
    std::fs::create_dir_all(d.join("secrets")).expect("mkdir secrets");
    write(
        &d.join("secrets/webhook-token"),
        &format!("{WEBHOOK_TOKEN}\n"),
    );

    // Alertmanager, from examples/alertmanager.yml.
    let example = std::fs::read_to_string(repo().join("examples/alertmanager.yml"))
        .expect("examples/alertmanager.yml");
    write(
        &d.join("alertmanager.yml"),
        &fast_alertmanager(&example, &relay.url, &d.join("secrets/webhook-token")),
    );
    let am_port = free_port();
    let am_url = format!("http://127.0.0.1:{am_port}");
    let alertmanager = Proc::spawn(
        "alertmanager",
        &tools.alertmanager,
        &[
            format!("--config.file={}", d.join("alertmanager.yml").display()),
            format!("--storage.path={}", d.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            format!("--web.external-url={am_url}"),
            "--cluster.listen-address=".into(),
        ],
        d,
    );

    // VictoriaMetrics, scraping the exporter.
    let vm_port = free_port();
    let vm_url = format!("http://127.0.0.1:{vm_port}");
    let vmalert_port = free_port();
    let vmalert_url = format!("http://127.0.0.1:{vmalert_port}");
    write(&d.join("scrape.yml"), &vm_scrape_config(&exporter.addr));
    let mut vm_args = vec![
        format!("-httpListenAddr=127.0.0.1:{vm_port}"),
        format!("-storageDataPath={}", d.join("vm-data").display()),
        format!("-promscrape.config={}", d.join("scrape.yml").display()),
    ];
    if !setup.default_lag {
        // Queries see data up to 1 s old (30 s by default).
        vm_args.push("-search.latencyOffset=1s".into());
    }
    if setup.proxy {
        vm_args.push(format!("-vmalert.proxyURL={vmalert_url}"));
    }
    let vm = Proc::spawn("victoria-metrics", &tools.victoria_metrics, &vm_args, d);

    // vmalert, with examples/prometheus-rules.yml made fast.
    let example = std::fs::read_to_string(repo().join("examples/prometheus-rules.yml"))
        .expect("examples/prometheus-rules.yml");
    write(&d.join("rules.yml"), &fast_rules(&example));
    let vmalert = Proc::spawn(
        "vmalert",
        &tools.vmalert,
        &[
            format!("-httpListenAddr=127.0.0.1:{vmalert_port}"),
            format!("-rule={}", d.join("rules.yml").display()),
            format!("-datasource.url={vm_url}"),
            format!("-notifier.url={am_url}"),
            "-evaluationInterval=1s".into(),
            // The alerts' generatorURL points here (the fallback source of rules).
            format!("-external.url={vmalert_url}"),
        ],
        d,
    );

    // incidentd.
    let drafts = d.join("drafts");
    // At VictoriaMetrics' default lag, `query_lag` as the README says, and a full snapshot
    // late enough for it (it must run after the lag).
    let timing = if setup.default_lag {
        format!("snapshot_delay: 35s\n  snapshot_margin: 2s\n  query_lag: {VM_DEFAULT_LAG}")
    } else {
        "snapshot_delay: 2s\n  snapshot_margin: 2s".to_string()
    };
    write(
        &d.join("incidentd.yml"),
        &format!(
            "web:\n  external_url: {incidentd_url}/\n  webhook_auth:\n    bearer_token_file: secrets/webhook-token\n\
             storage:\n  path: {data}\n\
             prometheus:\n  url: {vm_url}\n  timeout: 5s\n  {timing}\n\
             alertmanager:\n  url: {am_url}\n\
             rules_dir: {rules}\n\
             postmortem:\n  output_dir: {drafts}\n  timezone: UTC\n",
            data = d.join("data").display(),
            rules = repo().join("rules").display(),
            drafts = drafts.display(),
        ),
    );
    let incidentd = Proc::spawn(
        "incidentd",
        Path::new(env!("CARGO_BIN_EXE_incidentd")),
        &[
            "serve".into(),
            format!("--config.file={}", d.join("incidentd.yml").display()),
            format!("--web.listen-address=127.0.0.1:{incidentd_port}"),
            format!("--storage.path={}", d.join("data").display()),
            "--log.level=info,incidentd=debug".into(),
        ],
        d,
    );

    let mut stack = Stack {
        http,
        exporter,
        relay,
        vm_url,
        vmalert_url,
        incidentd_url,
        drafts,
        incidentd,
        alertmanager,
        vmalert,
        vm,
        dir: Some(dir),
    };
    let http = stack.http.clone();
    let url = format!("{}/-/ready", stack.incidentd_url);
    wait_ready(&http, "incidentd", &url, &mut [&mut stack.incidentd]).await;
    let url = format!("{am_url}/-/ready");
    wait_ready(&http, "Alertmanager", &url, &mut [&mut stack.alertmanager]).await;
    let url = format!("{}/health", stack.vm_url);
    wait_ready(&http, "VictoriaMetrics", &url, &mut [&mut stack.vm]).await;
    let url = format!("{}/health", stack.vmalert_url);
    wait_ready(&http, "vmalert", &url, &mut [&mut stack.vmalert]).await;
    stack
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Alerting rules listed by the `/api/v1/rules` at `base`.
async fn rule_count(http: &reqwest::Client, base: &str) -> Option<usize> {
    let r = get_json(http, &format!("{base}/api/v1/rules")).await?;
    Some(
        r["data"]["groups"]
            .as_array()?
            .iter()
            .map(|g| g["rules"].as_array().map_or(0, Vec::len))
            .sum(),
    )
}

struct Truth {
    incident: DateTime<Utc>,
    recovered: DateTime<Utc>,
}

/// normal → incident (30 s) → recovered; returns when incidentd holds a resolved incident.
async fn play_scenario(stack: &Stack, setup: Setup) -> (Truth, Value) {
    let proxy = setup.proxy;
    let http = &stack.http;
    wait_for(
        "vmalert to load the three rules",
        Duration::from_secs(20),
        || async { (rule_count(http, &stack.vmalert_url).await? == ALERTS.len()).then_some(()) },
    )
    .await;
    // What VictoriaMetrics' own rules API says decides which way incidentd finds the rules.
    let through_vm = rule_count(http, &stack.vm_url).await;
    if proxy {
        assert_eq!(
            through_vm,
            Some(ALERTS.len()),
            "-vmalert.proxyURL lists the rules"
        );
    } else {
        assert_eq!(through_vm, Some(0), "VictoriaMetrics alone lists no rules");
    }
    wait_for(
        "normal scrapes of the exporter",
        Duration::from_secs(30),
        || async {
            let r = get_json(
                http,
                // `nocache=1`: the newest data too, whatever `-search.latencyOffset` says.
                &format!(
                    "{}/api/v1/query?query=count_over_time(db_connection_pool_active[1m])&nocache=1",
                    stack.vm_url
                ),
            )
            .await?;
            let n: f64 = r["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
            (n >= f64::from(NORMAL_SCRAPES)).then_some(())
        },
    )
    .await;

    let incident = stack.exporter.switch(Phase::Incident);
    eprintln!("{incident}: switched to the incident phase");
    tokio::time::sleep(INCIDENT_PHASE).await;
    let recovered = stack.exporter.switch(Phase::Recovered);
    eprintln!("{recovered}: switched to the recovered phase");

    let list_url = format!("{}/api/v1/incidents", stack.incidentd_url);
    let resolved = wait_for(
        "incidentd to resolve the incident",
        Duration::from_secs(60) + setup.vmalert_lag(),
        || async {
            let list = get_json(http, &list_url).await?;
            let all = list["incidents"].as_array()?;
            (!all.is_empty() && all.iter().all(|i| i["status"] == "resolved")).then(|| list.clone())
        },
    )
    .await;
    let list = resolved["incidents"].as_array().expect("incidents");
    assert_eq!(list.len(), 1, "one incident: {resolved:#}");
    let id = list[0]["id"].as_str().expect("id").to_string();
    let incident_json = get_json(http, &format!("{list_url}/{id}"))
        .await
        .expect("the incident");
    (
        Truth {
            incident,
            recovered,
        },
        incident_json,
    )
}

async fn run(setup: Setup) {
    let Setup { proxy, default_lag } = setup;
    let what = match (proxy, default_lag) {
        (true, false) => "e2e VictoriaMetrics with -vmalert.proxyURL",
        (false, false) => "e2e VictoriaMetrics without -vmalert.proxyURL",
        (true, true) => "e2e VictoriaMetrics with -vmalert.proxyURL at the default latency offset",
        (false, true) => {
            "e2e VictoriaMetrics without -vmalert.proxyURL at the default latency offset"
        }
    };
    let Some(tools) = vm_tools_or_skip(what) else {
        return;
    };
    let stack = start_stack(&tools, setup).await;
    let (truth, incident) = play_scenario(&stack, setup).await;
    // vmalert's queries see VictoriaMetrics' data `-search.latencyOffset` late: its alerts
    // fire and resolve that much later than the exporter's switches.
    let lag = setup.vmalert_lag().as_secs_f64();
    let id = incident["id"].as_str().expect("id").to_string();
    let http = &stack.http;
    let incident_url = format!("{}/api/v1/incidents/{id}", stack.incidentd_url);
    eprintln!("{incident:#}");

    // Alertmanager's deliveries were all taken.
    let (deliveries, _) = stack.relay.deliveries();
    assert!(!deliveries.is_empty());
    for d in &deliveries {
        assert_eq!(
            d.status,
            200,
            "the delivery of {} ({:?}) was answered {}: {}",
            d.at,
            d.alerts(),
            d.status,
            d.answer
        );
    }

    // One incident, the three alerts, each resolved by Alertmanager's own notification at the
    // time vmalert resolved it: not by the reconciler as lost (vmalert's startsAt carries
    // nanoseconds, which Alertmanager's API rounds).
    assert_eq!(incident["service"], SERVICE);
    assert_eq!(incident["status"], "resolved");
    // (The incident's resolved_by names a person who resolved it by hand; here the alerts did.)
    assert_eq!(incident["resolved_by"], Value::Null, "{incident:#}");
    let alerts = incident["alerts"].as_array().expect("alerts");
    let mut names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alertname"].as_str().unwrap_or(""))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ALERTS, "each alert once: {alerts:#?}");
    for a in alerts {
        assert_eq!(a["status"], "resolved", "{a:#}");
        assert_eq!(a["resolved_by"], "alertmanager", "{a:#}");
        let ended = secs(truth.recovered, time(a, "ends_at")) - lag;
        assert!(
            (-0.5..=20.0).contains(&ended),
            "{} resolved {ended}s after the recovery (and vmalert's lag of {lag}s)",
            a["alertname"]
        );
    }
    let pool = alerts
        .iter()
        .find(|a| a["alertname"] == "DatabaseConnectionPoolHigh")
        .expect("the pool alert");
    let fired = secs(truth.incident, time(pool, "starts_at")) - lag;
    assert!(
        (4.0..=12.0).contains(&fired),
        "the pool alert fired {fired}s after the switch (for: 5s; and vmalert's lag of {lag}s)"
    );
    let resolved_at = time(&incident, "resolved_at");
    let latest_end = alerts
        .iter()
        .map(|a| time(a, "ends_at"))
        .max()
        .expect("ends");
    assert_eq!(resolved_at, latest_end, "resolved_at is the latest endsAt");

    // Rules found, from VictoriaMetrics' rules API or from vmalert: expression, `for`, group.
    // The evidence of the full snapshot is in once `evidence.collected_at` is after the
    // resolution.
    // (At the default lag the full snapshot runs 35 s after the resolve: `snapshot_delay`.)
    let incident = wait_for(
        "the full snapshot's evidence",
        Duration::from_secs(if default_lag { 75 } else { 40 }),
        || async {
            let i = get_json(http, &incident_url).await?;
            let at = i["evidence"]["collected_at"].as_str()?;
            let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
            (at > resolved_at).then_some(i)
        },
    )
    .await;
    for a in incident["alerts"].as_array().expect("alerts") {
        let rule = &a["rule"];
        assert!(
            rule["expr"].as_str().is_some_and(|e| !e.is_empty()),
            "{}: no rule in the evidence: {incident:#}",
            a["alertname"]
        );
        assert_eq!(rule["for_seconds"], 5, "{}: {rule}", a["alertname"]);
        assert_eq!(rule["group"], "payment-service.rules", "{rule}");
    }
    let pool_rule = incident["alerts"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|a| a["alertname"] == "DatabaseConnectionPoolHigh")
        })
        .map(|a| a["rule"]["expr"].clone())
        .expect("the pool alert");
    assert_eq!(pool_rule, POOL_EXPR);

    // The impact start, by re-evaluating the rule on VictoriaMetrics, near the truth.
    assert_eq!(
        incident["impact_start_method"], "rule_reevaluation",
        "{incident:#}"
    );
    let impact_start = time(&incident, "impact_start");
    let off = secs(truth.incident, impact_start);
    eprintln!("impact start {impact_start}: {off:+.3}s from the exporter's switch");
    assert!(
        off.abs() <= 2.0,
        "impact start {impact_start} is {off}s from the switch {}",
        truth.incident
    );
    let peak = find_snapshots(&incident)
        .unwrap_or_default()
        .iter()
        .filter(|s| {
            s["query"]
                .as_str()
                .is_some_and(|q| q.contains("db_connection_pool_active"))
        })
        .filter_map(|s| s["peak"].as_f64())
        .reduce(f64::max);
    assert!(
        peak.is_some_and(|p| p >= 0.97),
        "the pool's peak is {peak:?}, expected ≥ 0.97: {incident:#}"
    );

    // The draft quotes the rule and never says it is unknown.
    let path = stack.drafts.join(format!("{id}.md"));
    let draft = wait_for(
        "the resolved draft on disk",
        Duration::from_secs(20),
        || async {
            let text = std::fs::read_to_string(&path).ok()?;
            (text.contains("(the incident is resolved)") && text.contains(POOL_EXPR))
                .then_some(text)
        },
    )
    .await;
    for unknown in [
        "is unknown",
        "did not list the rule",
        "rules API was not asked",
        "no alerting rules at all",
        // vmalert's generatorURL is its rule's page, not a Prometheus graph.
        "Alert expression in Prometheus",
    ] {
        assert!(
            !draft.contains(unknown),
            "the draft says {unknown:?}:\n{draft}"
        );
    }
    assert!(
        draft.contains("**Alert rule in vmalert** (DatabaseConnectionPoolHigh)"),
        "{draft}"
    );

    if !proxy {
        // The misconfiguration is logged once, naming the likely cause.
        let log = std::fs::read_to_string(&stack.incidentd.log).unwrap_or_default();
        let warned = log
            .lines()
            .filter(|l| l.contains("lists no alerting rules at all"))
            .count();
        assert_eq!(warned, 1, "one warning about the empty rules API:\n{log}");
        assert!(log.contains("-vmalert.proxyURL"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn victoria_metrics_with_vmalert_proxy_makes_one_resolved_incident_with_its_rules() {
    run(Setup {
        proxy: true,
        default_lag: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn victoria_metrics_at_its_default_lag_without_vmalert_proxy_finds_rules_at_vmalert_and_query_lag_keeps_the_figures_right(
) {
    run(Setup {
        proxy: false,
        default_lag: true,
    })
    .await;
}
