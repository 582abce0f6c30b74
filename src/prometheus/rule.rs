//! The alerting rule behind an alert: found in `/api/v1/rules` by name (then by labels when
//! several rules share a name), or, failing that, the `g0.expr` of the alert's generatorURL.

use std::time::Duration;

use serde::Serialize;

use super::client::{secs_to_duration, AlertingRule, Rule, RulesData};
use crate::incident::LabelSet;

/// Where a [`RuleContext`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// `/api/v1/rules`: everything is known.
    RulesApi,
    /// Only the expression, from the alert's generatorURL; `for` and the group are unknown.
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
    /// The `for` when it is actually known (from the rules API).
    pub fn known_for(&self) -> Option<Duration> {
        (self.source == RuleSource::RulesApi).then_some(self.for_)
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
    let mut best: Option<((bool, usize), &AlertingRule, &super::client::RuleGroup)> = None;
    for group in &rules.groups {
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
