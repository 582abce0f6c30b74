//! The daemon on `storage.backend: postgres`: webhooks, the API and readiness against a real,
//! throwaway PostgreSQL (skipped loudly without the binaries, failed under
//! `INCIDENTD_REQUIRE_E2E=1`).

use std::sync::Arc;

use incidentd::config::{Config, PostgresConfig, Secret, StorageBackend};
use incidentd::store::postgres::Dsn;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::pg;

fn postgres_config(url: &str) -> Config {
    let mut config = Config::default();
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres = Some(PostgresConfig::new(Dsn::parse(url).unwrap()));
    config
}

async fn create_database(cluster: &Arc<pg::Cluster>, name: &'static str) -> String {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.create_database(name))
        .await
        .unwrap()
}

async fn ready(app: &TestApp) -> u16 {
    app.client
        .get(format!("{}/-/ready", app.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_daemon_serves_webhooks_and_the_api_on_postgresql() {
    let Some(cluster) = pg::shared_or_skip("api_on_postgres") else {
        return;
    };
    let url = create_database(&cluster, "api_on_postgres").await;
    let mut config = postgres_config(&url);
    config.web.api_token = Some(Secret::new("api-t0ken"));
    let app = spawn_app_with(config.clone()).await;
    assert_eq!(ready(&app).await, 200);
    for (file, at, body) in recorded_webhooks() {
        app.set_time(at);
        let r = app.post_webhook(body).await;
        assert_eq!(r.status().as_u16(), 200, "{file}");
    }
    let incidents = app.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let id = incidents[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "INC-2026-0001");
    let incident = app.incident(&id).await;
    assert_eq!(incident["status"], "resolved");
    assert_eq!(incident["alerts"].as_array().unwrap().len(), 3);

    let r = app
        .client
        .post(format!("{}/api/v1/incidents/{id}/notes", app.url))
        .bearer_auth("api-t0ken")
        .json(&json!({"by": "alice", "text": "pool sized up"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    let timeline = app.incident(&id).await["timeline"].to_string();
    assert!(timeline.contains("pool sized up"), "{timeline}");
    app.stop().await;

    // `incidentd render` reads the same database.
    config.postmortem.output_dir = tempfile::tempdir().unwrap().path().join("drafts");
    let markdown = incidentd::app::render_offline(&config, &id).await.unwrap();
    assert!(markdown.contains(&id), "{markdown}");
}

#[tokio::test]
async fn readiness_and_webhooks_answer_503_while_postgresql_is_down_and_recover() {
    let Some(cluster) = pg::Cluster::start_or_skip("api_postgres_down") else {
        return;
    };
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let url = {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.lock().unwrap().create_database("down"))
            .await
            .unwrap()
    };
    let app = spawn_app_with(postgres_config(&url)).await;
    let (_, at, body) = recorded_webhooks().remove(0);
    app.set_time(at);
    assert_eq!(app.post_webhook(body.clone()).await.status().as_u16(), 200);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().stop())
        .await
        .unwrap();
    assert_eq!(ready(&app).await, 503);
    assert_eq!(app.post_webhook(body.clone()).await.status().as_u16(), 503);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.lock().unwrap().start())
        .await
        .unwrap();
    assert_eq!(ready(&app).await, 200, "ready again without a restart");
    assert_eq!(app.post_webhook(body).await.status().as_u16(), 200);
    let incidents = app.incidents().await;
    assert_eq!(incidents.len(), 1);
    app.stop().await;
    drop(cluster);
}
