//! The daemon's own metrics, served at `GET /metrics`, in the Prometheus text format 0.0.4 (what
//! `promtool check metrics` and every Prometheus version read), with the process metrics
//! every Prometheus client library exports (on Linux, from `/proc`).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EffectLabel {
    effect: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// An incident's service and severity, each from a bounded set (see [`IncidentLabels`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabel {
    service: String,
    severity: String,
}

/// The buckets of the per-incident figures: 10 s to 1 day.
pub const INCIDENT_BUCKETS: [f64; 14] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    43200.0, 86400.0,
];

/// At most this many services and severities get their own label value; later ones are
/// counted as `other`, so alert labels cannot grow the series without bound.
pub const MAX_SERVICES: usize = 100;
pub const MAX_SEVERITIES: usize = 10;

/// The label values seen so far, bounded.
#[derive(Default)]
struct IncidentLabels {
    services: std::collections::HashSet<String>,
    severities: std::collections::HashSet<String>,
}

impl IncidentLabels {
    fn bounded(seen: &mut std::collections::HashSet<String>, value: &str, max: usize) -> String {
        if seen.contains(value) || (seen.len() < max && seen.insert(value.to_string())) {
            value.to_string()
        } else {
            "other".to_string()
        }
    }

    fn of(&mut self, service: Option<&str>, severity: Option<&str>) -> IncidentLabel {
        IncidentLabel {
            service: Self::bounded(&mut self.services, service.unwrap_or(""), MAX_SERVICES),
            severity: Self::bounded(&mut self.severities, severity.unwrap_or(""), MAX_SEVERITIES),
        }
    }
}

/// The per-incident response figures as histograms (`incidentd_incident_*_seconds`).
///
/// Each is observed once per incident, by the replica (process) that applied the change
/// that made it known, at that moment: TTA at the first acknowledgement; TTR, duration and
/// TTD (with the impact start known then) at the incident's first resolution. Counts are
/// not restored from the database at start-up (Prometheus's counter convention: a restart
/// resets them and `rate`/`increase` handle the reset), and each replica exports only what
/// it applied, so `sum without (instance)` across replicas counts every incident once. The
/// full history, reopenings included, is in `GET /api/v1/reports`.
struct IncidentFigures {
    ttd: Family<IncidentLabel, Histogram>,
    tta: Family<IncidentLabel, Histogram>,
    ttr: Family<IncidentLabel, Histogram>,
    duration: Family<IncidentLabel, Histogram>,
    labels: Mutex<IncidentLabels>,
}

impl IncidentFigures {
    fn register(registry: &mut Registry) -> IncidentFigures {
        let family = || {
            Family::<IncidentLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(INCIDENT_BUCKETS)
            })
        };
        let (ttd, tta, ttr, duration) = (family(), family(), family(), family());
        for (name, help, f) in [
            (
                "incident_ttd_seconds",
                "Time to detect (detected_at - impact_start) of incidents, observed at their \
                 first resolution by the replica that applied it",
                &ttd,
            ),
            (
                "incident_tta_seconds",
                "Time to acknowledge (acknowledged_at - detected_at) of incidents, observed at \
                 their first acknowledgement by the replica that applied it",
                &tta,
            ),
            (
                "incident_ttr_seconds",
                "Time to resolve (resolved_at - detected_at) of incidents, observed at their \
                 first resolution by the replica that applied it",
                &ttr,
            ),
            (
                "incident_duration_seconds",
                "Duration (resolved_at - impact_start) of incidents, observed at their first \
                 resolution by the replica that applied it",
                &duration,
            ),
        ] {
            registry.register(name, help, f.clone());
        }
        IncidentFigures {
            ttd,
            tta,
            ttr,
            duration,
            labels: Mutex::new(IncidentLabels::default()),
        }
    }

    fn label(&self, incident: &crate::incident::Incident) -> IncidentLabel {
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .of(incident.service.as_deref(), incident.severity.as_deref())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
    code: String,
}

/// The metrics and their registry.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<OutcomeLabel, Counter>,
    alerts: Family<EffectLabel, Counter>,
    incidents: Family<StatusLabel, Gauge>,
    jobs_queued: Family<KindLabel, Gauge>,
    job_failures: Family<KindLabel, Counter>,
    /// The job kinds the runner runs: each has a `jobs_queued` series, 0 when idle.
    job_kinds: Mutex<Vec<&'static str>>,
    requests: Family<RouteLabel, Histogram>,
    incident_figures: IncidentFigures,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("incidentd");
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhooks_received",
            "Alertmanager webhook requests by outcome",
            webhooks.clone(),
        );
        let alerts = Family::<EffectLabel, Counter>::default();
        registry.register(
            "alerts_processed",
            "Alerts in accepted webhooks by what they did (opened, joined, duplicate, stale, ...)",
            alerts.clone(),
        );
        let incidents = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "incidents",
            "Incidents stored, by status",
            incidents.clone(),
        );
        let jobs_queued = Family::<KindLabel, Gauge>::default();
        registry.register(
            "jobs_queued",
            "Jobs pending or running, by kind (render, evidence, slack); 0 when idle",
            jobs_queued.clone(),
        );
        let job_failures = Family::<KindLabel, Counter>::default();
        registry.register(
            "job_failures",
            "Failed job attempts (each retry counts), by kind",
            job_failures.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the version label says which incidentd is running",
            build_info.clone(),
        );
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let requests = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status code",
            requests.clone(),
        );
        let incident_figures = IncidentFigures::register(&mut registry);
        Metrics {
            incident_figures,
            registry,
            webhooks,
            alerts,
            incidents,
            jobs_queued,
            job_failures,
            job_kinds: Mutex::new(Vec::new()),
            requests,
        }
    }

    /// The job kinds that run (the job runner says so when it starts): each gets its
    /// `jobs_queued` and `job_failures_total` series at 0, so an idle daemon still shows them.
    pub fn job_kinds(&self, kinds: &[&'static str]) {
        let mut known = self.job_kinds.lock().unwrap_or_else(|e| e.into_inner());
        *known = kinds.to_vec();
        known.sort_unstable();
        for kind in kinds {
            let _ = self.job_failures.get_or_create(&KindLabel {
                kind: (*kind).into(),
            });
        }
    }

    /// One failed attempt of a job of `kind` (retried or given up).
    pub fn job_failed(&self, kind: &str) {
        self.job_failures
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn webhook(&self, outcome: &str) {
        self.webhooks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn alert(&self, effect: &str) {
        self.alerts
            .get_or_create(&EffectLabel {
                effect: effect.into(),
            })
            .inc();
    }

    /// An incident was just acknowledged for the first time (by this process): its TTA.
    pub fn incident_acknowledged(&self, incident: &crate::incident::Incident) {
        let f = &self.incident_figures;
        if let Some(tta) = incident.tta_seconds().filter(|v| *v >= 0.0) {
            f.tta.get_or_create(&f.label(incident)).observe(tta);
        }
    }

    /// An incident was just resolved for the first time (by this process): its TTR, duration
    /// and TTD, those known.
    pub fn incident_resolved(&self, incident: &crate::incident::Incident) {
        let f = &self.incident_figures;
        let label = f.label(incident);
        for (family, value) in [
            (&f.ttr, incident.ttr_seconds()),
            (&f.duration, incident.duration_seconds()),
            (&f.ttd, incident.ttd_seconds()),
        ] {
            // A negative span (resolved before incidentd first heard of it) measured
            // nothing; the report leaves it out too.
            if let Some(v) = value.filter(|v| *v >= 0.0) {
                family.get_or_create(&label).observe(v);
            }
        }
    }

    pub fn observe_request(&self, route: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteLabel {
                route: route.into(),
                code: code.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    /// The exposition in the text format 0.0.4, with the incident counts by status and the
    /// queued jobs by kind as read from the store (`None`: the store could not be read; the
    /// gauges keep their last values).
    #[allow(clippy::type_complexity)]
    pub fn exposition(
        &self,
        counts: Option<(Vec<(String, i64)>, Vec<(String, i64)>)>,
    ) -> Option<String> {
        if let Some((by_status, depth)) = counts {
            for status in ["open", "acknowledged", "resolved"] {
                let n = by_status
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                self.incidents
                    .get_or_create(&StatusLabel {
                        status: status.into(),
                    })
                    .set(n);
            }
            self.jobs_queued.clear();
            let kinds = self
                .job_kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for kind in kinds {
                self.jobs_queued
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .set(0);
            }
            for (kind, n) in depth {
                self.jobs_queued.get_or_create(&KindLabel { kind }).set(n);
            }
        }
        let mut openmetrics = String::new();
        encode(&mut openmetrics, &self.registry).ok()?;
        let mut body = text_format(&openmetrics);
        process::encode(&mut body);
        Some(body)
    }
}

/// prometheus-client writes OpenMetrics; this turns its output into the text format 0.0.4.
/// The two differ, for the metric types used here (counters, gauges, histograms; no
/// exemplars, units or info metrics), only in that a counter's HELP and TYPE name carries
/// the `_total` of its samples, and in the `# EOF` line, which 0.0.4 does not have.
fn text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    let _ = writeln!(out, "{p}{name}_total {tail}");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The standard process metrics (`process_*`, as the Go and Python clients name them).
mod process {
    /// Appends the process metrics in the text format; on other systems than Linux, none.
    #[cfg(target_os = "linux")]
    pub fn encode(out: &mut String) {
        use std::fmt::Write as _;
        let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
            if let Some(v) = value {
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
                );
            }
        };
        let stat = Stat::read();
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            stat.as_ref().map(|s| (s.utime + s.stime) as f64 / USER_HZ),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            resident_bytes(),
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stat.as_ref().map(|s| s.vsize as f64),
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            stat.as_ref()
                .zip(boot_time())
                .map(|(s, boot)| boot + s.starttime as f64 / USER_HZ),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
        );
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max_fds(),
        );
    }

    #[cfg(not(target_os = "linux"))]
    pub fn encode(_out: &mut String) {}

    /// The fields of `/proc/self/stat` used here.
    #[cfg(target_os = "linux")]
    struct Stat {
        utime: u64,
        stime: u64,
        starttime: u64,
        vsize: u64,
    }

    #[cfg(target_os = "linux")]
    impl Stat {
        fn read() -> Option<Stat> {
            Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
        }

        /// proc(5): the command name (field 2) is in parentheses and may hold spaces, so
        /// fields are counted from its closing parenthesis: field 3 is the first after it.
        fn parse(text: &str) -> Option<Stat> {
            let rest = &text[text.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
            Some(Stat {
                utime: field(14)?,
                stime: field(15)?,
                starttime: field(22)?,
                vsize: field(23)?,
            })
        }
    }

    /// The unit of the CPU times in `/proc` (USER_HZ): 100 on every Linux architecture
    /// Rust targets, the value Prometheus' own procfs library assumes as well.
    #[cfg(target_os = "linux")]
    const USER_HZ: f64 = 100.0;

    /// Resident memory: `VmRSS` in `/proc/self/status` (in kB), which needs no page size.
    #[cfg(target_os = "linux")]
    fn resident_bytes() -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb * 1024.0)
    }

    /// When the system booted, seconds since the epoch (`btime` in `/proc/stat`).
    #[cfg(target_os = "linux")]
    fn boot_time() -> Option<f64> {
        std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }

    /// The soft limit on open files (`/proc/self/limits`).
    #[cfg(target_os = "linux")]
    fn max_fds() -> Option<f64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let soft = line["Max open files".len()..].split_whitespace().next()?;
        // "unlimited" has no number to report.
        soft.parse().ok()
    }

    #[cfg(all(test, target_os = "linux"))]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() {
            let text = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 \
                        250 50 0 0 20 0 8 0 1234 567890 321 18446744073709551615";
            let s = Stat::parse(text).unwrap();
            assert_eq!(
                (s.utime, s.stime, s.starttime, s.vsize),
                (250, 50, 1234, 567890)
            );
        }

        #[test]
        fn every_process_metric_is_there_on_linux() {
            let mut out = String::new();
            encode(&mut out);
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_start_time_seconds",
                "process_open_fds",
                "process_max_fds",
            ] {
                assert!(
                    out.contains(&format!("\n{name} ")),
                    "{name} missing:\n{out}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_help_and_type_and_there_is_no_eof() {
        let om = "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
                  x_requests_total{a=\"b\"} 1\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        assert_eq!(
            text_format(om),
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n\
             x_requests_total{a=\"b\"} 1\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }
}
