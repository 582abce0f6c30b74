//! Rules from every backend ([`lookup_rule`]) against mock servers answering as VictoriaMetrics
//! 1.79.5 and vmalert 1.79.5 answered when recorded (shapes copied from their answers):
//! VictoriaMetrics without `-vmalert.proxyURL` lists no rules; vmalert, found from the alert's
//! generatorURL, lists them (or, failing that, gives the alert JSON with the expression).
//! The real binaries are driven by `tests/e2e_vm.rs`.

use std::time::Duration;

use incidentd::incident::LabelSet;
use incidentd::prometheus::{
    empty_rules_problem, lookup_rule, Client, ClientOptions, RuleSource, RulesData,
};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GROUP_ID: &str = "549363335126134958";
const ALERT_ID: &str = "6447826609579857557";
const EXPR: &str = "db_connection_pool_active / db_connection_pool_max > 0.95";

fn labels() -> LabelSet {
    [
        ("alertgroup", "payment-service.rules"),
        ("alertname", "DatabaseConnectionPoolHigh"),
        ("env", "e2e"),
        ("instance", "127.0.0.1:19100"),
        ("job", "payment-service"),
        ("pool", "primary"),
        ("service", "payment-service"),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn vmalert_rules() -> serde_json::Value {
    serde_json::json!({"status":"success","data":{"groups":[{
        "name":"payment-service.rules","interval":1,"type":"prometheus","id":GROUP_ID,
        "file":"/tmp/rules.yml","concurrency":1,
        "rules":[{"state":"firing","name":"DatabaseConnectionPoolHigh","query":EXPR,"duration":5,
            "labels":{"severity":"critical"},"annotations":{"summary":"pool"},"lastError":"",
            "health":"ok","type":"alerting","datasourceType":"prometheus","lastSamples":1,
            "id":"1143805215852593852","group_id":GROUP_ID}]}]}})
}

fn vmalert_alert() -> serde_json::Value {
    serde_json::json!({"state":"firing","name":"DatabaseConnectionPoolHigh","value":"0.98",
        "labels":labels(),"annotations":{"summary":"pool"},
        "activeAt":"2026-12-01T23:06:52.304184Z","id":ALERT_ID,"rule_id":"1143805215852593852",
        "group_id":GROUP_ID,"expression":EXPR,"restored":false})
}

fn empty_rules() -> RulesData {
    serde_json::from_value(serde_json::json!({"groups": []})).expect("rules")
}

async fn client(url: &str) -> Client {
    Client::new(&ClientOptions {
        url: url.to_string(),
        timeout: Duration::from_secs(2),
        bearer_token: Some("prometheus-secret".into()),
        basic_auth: None,
        headers: vec![],
    })
    .expect("client")
}

fn generator_url(vmalert: &MockServer) -> String {
    format!(
        "{}/vmalert/api/v1/alert?group_id={GROUP_ID}&alert_id={ALERT_ID}",
        vmalert.uri()
    )
}

#[tokio::test]
async fn without_the_proxy_the_rule_comes_from_vmalerts_rules_with_its_for() {
    let vm = MockServer::start().await;
    let vmalert = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/vmalert/api/v1/rules"))
        .respond_with(ResponseTemplate::new(200).set_body_json(vmalert_rules()))
        .expect(1)
        .mount(&vmalert)
        .await;
    let rules = empty_rules();
    assert!(empty_rules_problem(&vm.uri(), &rules)
        .expect("VictoriaMetrics without the proxy is a problem")
        .contains("-vmalert.proxyURL"));
    let c = client(&vm.uri()).await;
    let ctx = lookup_rule(
        &c,
        Some(&rules),
        "DatabaseConnectionPoolHigh",
        &labels(),
        &generator_url(&vmalert),
    )
    .await
    .expect("the rule");
    assert_eq!(ctx.source, RuleSource::VmalertRules);
    assert_eq!(ctx.expr, EXPR);
    assert_eq!(ctx.known_for(), Some(Duration::from_secs(5)));
    assert_eq!(ctx.group.as_deref(), Some("payment-service.rules"));
    assert_eq!(ctx.group_interval, Some(Duration::from_secs(1)));
    // Prometheus's credentials stay with Prometheus's origin.
    for r in vmalert.received_requests().await.expect("recorded") {
        assert!(!r.headers.contains_key("authorization"), "{r:?}");
    }
}

#[tokio::test]
async fn when_vmalert_lists_no_rules_its_alert_json_gives_the_expression() {
    let vm = MockServer::start().await;
    let vmalert = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/vmalert/api/v1/rules"))
        .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found"))
        .mount(&vmalert)
        .await;
    Mock::given(method("GET"))
        .and(path("/vmalert/api/v1/alert"))
        .and(query_param("group_id", GROUP_ID))
        .and(query_param("alert_id", ALERT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(vmalert_alert()))
        .expect(1)
        .mount(&vmalert)
        .await;
    let c = client(&vm.uri()).await;
    let ctx = lookup_rule(
        &c,
        None,
        "DatabaseConnectionPoolHigh",
        &labels(),
        &generator_url(&vmalert),
    )
    .await
    .expect("the rule");
    assert_eq!(ctx.source, RuleSource::VmalertAlert);
    assert_eq!(ctx.expr, EXPR);
    assert_eq!(ctx.known_for(), None, "the alert JSON has no `for`");
}

#[tokio::test]
async fn an_unreachable_vmalert_leaves_the_rule_unknown_and_prometheus_urls_use_g0_expr() {
    let vm = MockServer::start().await;
    let c = client(&vm.uri()).await;
    // Nothing listens on port 9 of the loopback.
    let gone = format!("http://127.0.0.1:9/api/v1/alert?group_id={GROUP_ID}&alert_id={ALERT_ID}");
    let ctx = lookup_rule(
        &c,
        Some(&empty_rules()),
        "DatabaseConnectionPoolHigh",
        &labels(),
        &gone,
    )
    .await;
    assert_eq!(ctx, None);
    let prom = "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1";
    let ctx = lookup_rule(&c, Some(&empty_rules()), "Down", &labels(), prom)
        .await
        .expect("g0.expr");
    assert_eq!(ctx.source, RuleSource::GeneratorUrl);
    assert_eq!(ctx.expr, "up == 0");
}

#[tokio::test]
async fn a_rule_the_rules_api_lists_asks_nothing_of_vmalert() {
    let vm = MockServer::start().await;
    let vmalert = MockServer::start().await;
    let rules: RulesData = serde_json::from_value(vmalert_rules()["data"].clone()).expect("rules");
    assert_eq!(empty_rules_problem(&vm.uri(), &rules), None);
    let c = client(&vm.uri()).await;
    let ctx = lookup_rule(
        &c,
        Some(&rules),
        "DatabaseConnectionPoolHigh",
        &labels(),
        &generator_url(&vmalert),
    )
    .await
    .expect("the rule");
    assert_eq!(ctx.source, RuleSource::RulesApi);
    assert!(vmalert
        .received_requests()
        .await
        .expect("recorded")
        .is_empty());
}
