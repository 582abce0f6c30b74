//! A Prometheus answering with the recorded answers of scenario-single
//! (`tests/fixtures/scenario-single/prometheus-recovered`), for the tests that run the daemon
//! with evidence (`tests/api`, `tests/pages`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use incidentd::prometheus::split_comparison;
use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Serves the recorded answers of `prometheus-recovered`, or `failure` while one is set.
#[derive(Clone)]
pub struct RecordedPrometheus {
    rules: Vec<u8>,
    alerts: Vec<u8>,
    ranges: BTreeMap<String, Vec<u8>>,
    failure: Arc<Mutex<Option<ResponseTemplate>>>,
}

impl RecordedPrometheus {
    pub fn new() -> RecordedPrometheus {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/scenario-single/prometheus-recovered");
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let rules = read("prom-api-v1-rules.json");
        let parsed: Value = serde_json::from_slice(&rules).unwrap();
        let mut ranges = BTreeMap::new();
        for r in parsed["data"]["groups"][0]["rules"].as_array().unwrap() {
            let (name, expr) = (r["name"].as_str().unwrap(), r["query"].as_str().unwrap());
            let body = read(&format!("prom-api-v1-query_range-{name}.json"));
            // Only whole expressions were recorded; they stand in for their measured side.
            if let Some(c) = split_comparison(expr) {
                ranges.insert(c.left.clone(), body.clone());
            }
            ranges.insert(expr.to_string(), body);
        }
        ranges.insert(
            "db_connection_pool_active / db_connection_pool_max".into(),
            read("prom-api-v1-query_range-pool-ratio.json"),
        );
        RecordedPrometheus {
            rules,
            alerts: read("prom-api-v1-alerts.json"),
            ranges,
            failure: Arc::new(Mutex::new(None)),
        }
    }

    pub fn fail_with(&self, failure: Option<ResponseTemplate>) {
        *self.failure.lock().unwrap() = failure;
    }
}

fn form_param(req: &Request, key: &str) -> Option<String> {
    let body = String::from_utf8_lossy(&req.body).into_owned();
    form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn json_body(body: &[u8]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_vec(), "application/json")
}

impl Respond for RecordedPrometheus {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(f) = self.failure.lock().unwrap().clone() {
            return f;
        }
        match req.url.path() {
            "/api/v1/rules" => json_body(&self.rules),
            "/api/v1/alerts" => json_body(&self.alerts),
            "/api/v1/query_range" => {
                let expr = form_param(req, "query").unwrap_or_default();
                match self.ranges.get(&expr) {
                    Some(body) => json_body(body),
                    None => json_body(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#),
                }
            }
            "/api/v1/query" => json_body(
                br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795400837.535,"512"]}]}}"#,
            ),
            _ => ResponseTemplate::new(404),
        }
    }
}

pub async fn mount(server: &MockServer, prometheus: &RecordedPrometheus) {
    Mock::given(wiremock::matchers::any())
        .respond_with(prometheus.clone())
        .mount(server)
        .await;
}
