//! The alerting rule behind an alert, from whichever backend evaluated it:
//!
//! 1. `/api/v1/rules` of the configured URL, by name (then by labels when several rules share
//!    a name): Prometheus, Thanos/Mimir rulers, VictoriaMetrics with `-vmalert.proxyURL`;
//! 2. vmalert, found from the alert's generatorURL (`…/api/v1/alert?group_id=…&alert_id=…`,
//!    `/vmalert/` prefixed when vmalert's `-external.url` or VictoriaMetrics' proxy says so):
//!    first vmalert's own `/api/v1/rules` beside it (everything known, even once the alert
//!    is gone), then the alert JSON itself (the expression and the alert's labels);
//! 3. the `g0.expr` of a Prometheus generatorURL (the expression only).
//!
//! A rules API that answers but lists no alerting rule at all is a misconfiguration rather
//! than an answer (VictoriaMetrics without `-vmalert.proxyURL` does that): it is logged once
//! per URL and reported as the rules API's problem ([`empty_rules_problem`]).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::client::{secs_to_duration, AlertingRule, Client, Rule, RuleGroup, RulesData};
use crate::incident::LabelSet;

/// Where a [`RuleContext`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// `/api/v1/rules`: everything is known.
    RulesApi,
    /// vmalert's own `/api/v1/rules`, found from the alert's generatorURL: everything known.
    VmalertRules,
    /// vmalert's alert JSON at the alert's generatorURL: the expression and the alert's
    /// labels; `for` is unknown.
    VmalertAlert,
    /// Only the expression, from the `g0.expr` of a Prometheus generatorURL; `for` and the
    /// group are unknown.
    GeneratorUrl,
}

/// What the post-mortem and the impact-start search need to know about an alert's rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleContext {
    pub alertname: String,
    pub expr: String,
    /// The rule's `for` (zero when unknown: see `source`).
    #[serde(rename = "for", with = "secs")]
    pub for_: Duration,
    #[serde(with = "secs")]
    pub keep_firing_for: Duration,
    pub group: Option<String>,
    pub file: Option<String>,
    /// The group's evaluation interval, when Prometheus reported it.
    #[serde(with = "opt_secs")]
    pub group_interval: Option<Duration>,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub source: RuleSource,
}

impl RuleContext {
    /// The `for` when it is actually known (from a rules API).
    pub fn known_for(&self) -> Option<Duration> {
        matches!(self.source, RuleSource::RulesApi | RuleSource::VmalertRules).then_some(self.for_)
    }

    /// A context from a generatorURL alone.
    pub fn from_generator_url(alertname: &str, generator_url: &str) -> Option<RuleContext> {
        let expr = expr_from_generator_url(generator_url)?;
        Some(RuleContext {
            alertname: alertname.to_string(),
            expr,
            for_: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            group: None,
            file: None,
            group_interval: None,
            labels: LabelSet::new(),
            annotations: LabelSet::new(),
            source: RuleSource::GeneratorUrl,
        })
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// Finds the rule for an alert named `alertname` with `alert_labels` (all labels, including
/// `alertname`). Among rules of that name, a rule whose static labels the alert does not carry
/// cannot have produced it; ties go to a rule currently holding an alert with exactly these
/// labels, then to the rule with the most matching static labels, then to the first.
pub fn find_rule(
    rules: &RulesData,
    alertname: &str,
    alert_labels: &LabelSet,
) -> Option<RuleContext> {
    find_rule_in(rules.groups.iter(), alertname, alert_labels)
}

fn find_rule_in<'a>(
    groups: impl Iterator<Item = &'a RuleGroup>,
    alertname: &str,
    alert_labels: &LabelSet,
) -> Option<RuleContext> {
    let mut best: Option<((bool, usize), &AlertingRule, &RuleGroup)> = None;
    for group in groups {
        for rule in &group.rules {
            let Rule::Alerting(r) = rule else { continue };
            if r.name != alertname {
                continue;
            }
            let labels_fit = r.labels.iter().all(|(k, v)| alert_labels.get(k) == Some(v));
            if !labels_fit {
                continue;
            }
            let holds_alert = r.alerts.iter().any(|a| &a.labels == alert_labels);
            let score = (holds_alert, r.labels.len());
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, r, group));
            }
        }
    }
    let (_, r, group) = best?;
    Some(RuleContext {
        alertname: r.name.clone(),
        expr: r.query.clone(),
        for_: secs_to_duration(r.duration).unwrap_or_default(),
        keep_firing_for: secs_to_duration(r.keep_firing_for).unwrap_or_default(),
        group: Some(group.name.clone()),
        file: (!group.file.is_empty()).then(|| group.file.clone()),
        group_interval: group.interval(),
        labels: r.labels.clone(),
        annotations: r.annotations.clone(),
        source: RuleSource::RulesApi,
    })
}

/// The rule context for an alert: from `/api/v1/rules` when it was fetched and knows the
/// rule, else from the alert's generatorURL (expression only).
pub fn rule_context(
    rules: Option<&RulesData>,
    alertname: &str,
    alert_labels: &LabelSet,
    generator_url: &str,
) -> Option<RuleContext> {
    rules
        .and_then(|r| find_rule(r, alertname, alert_labels))
        .or_else(|| RuleContext::from_generator_url(alertname, generator_url))
}

/// The rule context for an alert from every backend, in order: `/api/v1/rules` of the
/// configured URL, vmalert's rules then its alert JSON (from a vmalert generatorURL), the
/// `g0.expr` of a Prometheus generatorURL. A vmalert that cannot be reached or does not know
/// the rule only costs this fallback (logged), never a retry of the whole evidence job.
pub async fn lookup_rule(
    client: &Client,
    rules: Option<&RulesData>,
    alertname: &str,
    alert_labels: &LabelSet,
    generator_url: &str,
) -> Option<RuleContext> {
    if let Some(found) = rules.and_then(|r| find_rule(r, alertname, alert_labels)) {
        return Some(found);
    }
    if let Some(vm) = VmalertUrls::parse(generator_url) {
        match client.rules_at(&vm.rules).await {
            Ok(data) => {
                let in_group = data.groups.iter().filter(|g| g.id == vm.group_id);
                if let Some(mut found) = find_rule_in(in_group, alertname, alert_labels)
                    .or_else(|| find_rule(&data, alertname, alert_labels))
                {
                    found.source = RuleSource::VmalertRules;
                    return Some(found);
                }
                tracing::debug!(alertname, url = %vm.rules, "vmalert does not list the rule");
            }
            Err(e) => {
                tracing::warn!(alertname, url = %vm.rules, error = %e, "cannot ask vmalert for the rule")
            }
        }
        match client.vmalert_alert(&vm.alert).await {
            Ok(a) if a.name == alertname && !a.expression.trim().is_empty() => {
                return Some(RuleContext {
                    alertname: a.name,
                    expr: a.expression,
                    for_: Duration::ZERO,
                    keep_firing_for: Duration::ZERO,
                    group: None,
                    file: None,
                    group_interval: None,
                    labels: LabelSet::new(),
                    annotations: a.annotations,
                    source: RuleSource::VmalertAlert,
                })
            }
            Ok(a) => {
                tracing::warn!(alertname, url = %vm.alert, got = %a.name, "vmalert's alert is another rule's")
            }
            Err(e) => {
                tracing::warn!(alertname, url = %vm.alert, error = %e, "cannot ask vmalert for the alert")
            }
        }
    }
    RuleContext::from_generator_url(alertname, generator_url)
}

/// Where vmalert answers for an alert whose generatorURL it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmalertUrls {
    /// vmalert's `/api/v1/rules` (its own, or VictoriaMetrics' `/vmalert/` proxy of it).
    pub rules: String,
    /// The alert's JSON, `…/api/v1/alert?group_id=…&alert_id=…`.
    pub alert: String,
    pub group_id: String,
}

impl VmalertUrls {
    /// From a vmalert generatorURL: `<base>/api/v1/alert?group_id=G&alert_id=A` (1.79 and
    /// later: JSON), or `<base>/alert?…` (the web UI's page; its JSON is under `/api/v1/`).
    /// `<base>` keeps whatever prefix `-external.url` gave (`/vmalert` through
    /// VictoriaMetrics' proxy). `None` for any other URL.
    pub fn parse(generator_url: &str) -> Option<VmalertUrls> {
        let url = reqwest::Url::parse(generator_url).ok()?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return None;
        }
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        };
        let (group_id, alert_id) = (param("group_id")?, param("alert_id")?);
        let path = url.path();
        let base = path
            .strip_suffix("/api/v1/alert")
            .or_else(|| path.strip_suffix("/alert"))?;
        let at = |p: &str| {
            let mut u = url.clone();
            u.set_path(&format!("{base}{p}"));
            u.set_query(None);
            u.set_fragment(None);
            u
        };
        let mut alert = at("/api/v1/alert");
        alert
            .query_pairs_mut()
            .append_pair("group_id", &group_id)
            .append_pair("alert_id", &alert_id);
        Some(VmalertUrls {
            rules: at("/api/v1/rules").to_string(),
            alert: alert.to_string(),
            group_id,
        })
    }
}

/// The problem with a rules answer that lists no alerting rule at all, logged as a warning
/// once per `url`: VictoriaMetrics answers so when `-vmalert.proxyURL` is not set, and rules
/// then come only from the alerts' generatorURLs.
pub fn empty_rules_problem(url: &str, rules: &RulesData) -> Option<String> {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let any = rules
        .groups
        .iter()
        .any(|g| g.rules.iter().any(|r| matches!(r, Rule::Alerting(_))));
    if any {
        return None;
    }
    let problem = format!(
        "the rules API at {url} lists no alerting rules at all (VictoriaMetrics answers so when \
         it runs without -vmalert.proxyURL: set it to vmalert's URL); rules come from the \
         alerts' generatorURLs instead"
    );
    let first = WARNED
        .lock()
        .map(|mut w| w.get_or_insert_with(HashSet::new).insert(url.to_string()))
        .unwrap_or(true);
    if first {
        tracing::warn!(url, "{problem}");
    }
    Some(problem)
}

/// The `g0.expr` parameter of a Prometheus generatorURL (`/graph?g0.expr=...&g0.tab=1`).
pub fn expr_from_generator_url(generator_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(generator_url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "g0.expr")
        .map(|(_, v)| v.into_owned())
        .filter(|e| !e.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::client::decode_answer;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn recorded_rules() -> RulesData {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/scenario-single/prometheus-peak/prom-api-v1-rules.json"
        ))
        .expect("fixture");
        decode_answer("rules", 200, &body).expect("rules")
    }

    #[test]
    fn the_recorded_pool_alert_finds_its_rule_with_for_and_group_interval() {
        let alert = labels(&[
            ("alertname", "DatabaseConnectionPoolHigh"),
            ("env", "e2e"),
            ("instance", "127.0.0.1:19100"),
            ("job", "payment-service"),
            ("pool", "primary"),
            ("service", "payment-service"),
            ("severity", "critical"),
            ("team", "payments"),
        ]);
        let ctx = find_rule(&recorded_rules(), "DatabaseConnectionPoolHigh", &alert).expect("rule");
        assert_eq!(
            ctx.expr,
            "db_connection_pool_active / db_connection_pool_max > 0.95"
        );
        assert_eq!(ctx.for_, Duration::from_secs(5));
        assert_eq!(ctx.known_for(), Some(Duration::from_secs(5)));
        assert_eq!(ctx.group.as_deref(), Some("payment-service.rules"));
        assert_eq!(ctx.group_interval, Some(Duration::from_secs(1)));
        assert_eq!(
            ctx.labels.get("severity").map(String::as_str),
            Some("critical")
        );
        assert!(ctx.annotations.contains_key("runbook_url"));
    }

    #[test]
    fn rules_sharing_a_name_are_told_apart_by_labels() {
        let body = br#"{"status":"success","data":{"groups":[
          {"name":"g1","file":"a.yml","interval":30,"rules":[
            {"type":"alerting","name":"HighLatency","query":"lat{svc=\"a\"} > 1","duration":60,
             "labels":{"severity":"warning"},"annotations":{},"alerts":[]},
            {"type":"alerting","name":"HighLatency","query":"lat{svc=\"a\"} > 5","duration":0,
             "labels":{"severity":"critical"},"annotations":{},"alerts":[]},
            {"type":"recording","name":"x:y","query":"sum(x)"}]}]}}"#;
        let rules: RulesData = decode_answer("rules", 200, body).expect("rules");
        let crit = labels(&[("alertname", "HighLatency"), ("severity", "critical")]);
        let warn = labels(&[("alertname", "HighLatency"), ("severity", "warning")]);
        assert_eq!(
            find_rule(&rules, "HighLatency", &crit).expect("rule").expr,
            "lat{svc=\"a\"} > 5"
        );
        let w = find_rule(&rules, "HighLatency", &warn).expect("rule");
        assert_eq!(w.for_, Duration::from_secs(60));
        assert_eq!(w.group_interval, Some(Duration::from_secs(30)));
        let other = labels(&[("alertname", "HighLatency"), ("severity", "page")]);
        assert!(find_rule(&rules, "HighLatency", &other).is_none());
        assert!(find_rule(&rules, "Nope", &crit).is_none());
    }

    #[test]
    fn vmalert_generator_urls_lead_to_its_rules_and_alert_json() {
        let direct =
            VmalertUrls::parse("http://127.0.0.1:8880/api/v1/alert?group_id=828&alert_id=330")
                .expect("vmalert");
        assert_eq!(direct.rules, "http://127.0.0.1:8880/api/v1/rules");
        assert_eq!(
            direct.alert,
            "http://127.0.0.1:8880/api/v1/alert?group_id=828&alert_id=330"
        );
        assert_eq!(direct.group_id, "828");
        // As vmalert 1.79 writes it (its source template adds vmalert/ to -external.url), and
        // through VictoriaMetrics' proxy.
        let proxied =
            VmalertUrls::parse("http://vm:8428/vmalert/api/v1/alert?group_id=828&alert_id=330")
                .expect("vmalert");
        assert_eq!(proxied.rules, "http://vm:8428/vmalert/api/v1/rules");
        let ui = VmalertUrls::parse("https://x/prefix/vmalert/alert?group_id=1&alert_id=2")
            .expect("the UI page");
        assert_eq!(
            ui.alert,
            "https://x/prefix/vmalert/api/v1/alert?group_id=1&alert_id=2"
        );
        for other in [
            "http://127.0.0.1:19090/graph?g0.expr=up&g0.tab=1",
            "http://x/api/v1/alert?group_id=1",
            "http://x/api/v1/alerts?group_id=1&alert_id=2",
            "not a url",
            "",
        ] {
            assert_eq!(VmalertUrls::parse(other), None, "{other}");
        }
    }

    #[test]
    fn vmalert_rules_decode_with_their_group_id() {
        // Recorded from vmalert 1.79.5's /api/v1/rules (also VictoriaMetrics' /api/v1/rules
        // with -vmalert.proxyURL).
        let body = br#"{"status":"success","data":{"groups":[{"name":"g","rules":[{"state":"firing","name":"UpAlert","query":"up \u003e 0","duration":2,"labels":{"severity":"critical"},"annotations":{"summary":"up"},"lastError":"","evaluationTime":0.0014,"lastEvaluation":"2026-12-01T23:02:09.463554163Z","alerts":[{"state":"firing","name":"UpAlert","value":"1","labels":{"alertgroup":"g","alertname":"UpAlert","instance":"127.0.0.1:18428","job":"self","severity":"critical"},"annotations":{"summary":"up"},"activeAt":"2026-12-01T23:02:05.449203341Z","id":"3308970180829394994","rule_id":"1143805215852593852","group_id":"8280805475443947346","expression":"up \u003e 0","source":"http://127.0.0.1:18880/vmalert/api/v1/alert?group_id=8280805475443947346\u0026alert_id=3308970180829394994","restored":false}],"health":"ok","type":"alerting","datasourceType":"prometheus","lastSamples":1,"id":"1143805215852593852","group_id":"8280805475443947346"}],"interval":1,"lastEvaluation":"2026-12-01T23:02:09.463548875Z","type":"prometheus","id":"8280805475443947346","file":"rules.yml","concurrency":1}]}}"#;
        let rules: RulesData = decode_answer("rules", 200, body).expect("rules");
        assert_eq!(rules.groups[0].id, "8280805475443947346");
        let alert = labels(&[
            ("alertgroup", "g"),
            ("alertname", "UpAlert"),
            ("instance", "127.0.0.1:18428"),
            ("job", "self"),
            ("severity", "critical"),
        ]);
        let ctx = find_rule(&rules, "UpAlert", &alert).expect("rule");
        assert_eq!(ctx.expr, "up > 0");
        assert_eq!(ctx.for_, Duration::from_secs(2));
        assert_eq!(ctx.group_interval, Some(Duration::from_secs(1)));
        assert_eq!(empty_rules_problem("http://vm:8428", &rules), None);
        // VictoriaMetrics without -vmalert.proxyURL.
        let empty: RulesData = decode_answer(
            "rules",
            200,
            br#"{"status":"success","data":{"groups":[]}}"#,
        )
        .expect("rules");
        let problem = empty_rules_problem("http://vm:8428", &empty).expect("a problem");
        assert!(problem.contains("-vmalert.proxyURL"), "{problem}");
        assert!(
            empty_rules_problem("http://vm:8428", &empty).is_some(),
            "said every time"
        );
    }

    #[test]
    fn the_vmalert_alert_json_decodes() {
        // Recorded from vmalert 1.79.5's /api/v1/alert?group_id=…&alert_id=….
        let body = br#"{"state":"firing","name":"UpAlert","value":"1","labels":{"alertgroup":"g","alertname":"UpAlert","severity":"critical"},"annotations":{"summary":"up"},"activeAt":"2026-12-01T23:02:05.449203341Z","id":"3308970180829394994","rule_id":"1143805215852593852","group_id":"8280805475443947346","expression":"up \u003e 0","source":"http://127.0.0.1:18880/vmalert/api/v1/alert?group_id=8280805475443947346\u0026alert_id=3308970180829394994","restored":false}"#;
        let a: crate::prometheus::client::VmalertAlert =
            serde_json::from_slice(body).expect("alert");
        assert_eq!(a.name, "UpAlert");
        assert_eq!(a.expression, "up > 0");
        assert_eq!(a.group_id, "8280805475443947346");
    }

    #[test]
    fn generator_url_gives_the_expression_when_the_rules_api_cannot() {
        let url = "http://127.0.0.1:19090/graph?g0.expr=db_connection_pool_active+%2F+db_connection_pool_max+%3E+0.95&g0.tab=1";
        assert_eq!(
            expr_from_generator_url(url).as_deref(),
            Some("db_connection_pool_active / db_connection_pool_max > 0.95")
        );
        let ctx = RuleContext::from_generator_url("X", url).expect("ctx");
        assert_eq!(ctx.source, RuleSource::GeneratorUrl);
        assert_eq!(ctx.known_for(), None);
        assert_eq!(expr_from_generator_url("http://x/graph?g0.tab=1"), None);
        assert_eq!(expr_from_generator_url("not a url"), None);
        let ctx =
            rule_context(Some(&recorded_rules()), "Unknown", &LabelSet::new(), url).expect("ctx");
        assert_eq!(ctx.source, RuleSource::GeneratorUrl);
    }
}
