//! `examples/ha/`: the two-replica example the README points at stays runnable. No Docker
//! here, so what can be checked without it is: the compose file's shape (two incidentd
//! replicas with the same configuration on one PostgreSQL, an Alertmanager pair clustered
//! with each other and each sending to its own replica), `incidentd check-config` on the
//! replicas' configuration, and `amtool check-config` on both Alertmanager configurations
//! (skipped without amtool, failed under `INCIDENTD_REQUIRE_E2E=1`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ha")
        .join(file)
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(example(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_replicas_share_one_postgresql_and_each_alertmanager_feeds_its_own() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    for s in [
        "postgres",
        "incidentd-a",
        "incidentd-b",
        "alertmanager-a",
        "alertmanager-b",
    ] {
        assert!(services.get(s).is_some(), "service {s} missing");
    }
    for side in ["a", "b"] {
        let replica = &services[format!("incidentd-{side}")];
        assert_eq!(
            strings(&replica["command"]),
            ["serve", "--config.file=/etc/incidentd/incidentd.yml"],
            "incidentd-{side} runs the daemon on the shared configuration"
        );
        let volumes = strings(&replica["volumes"]);
        assert!(
            volumes.contains(&"./incidentd.yml:/etc/incidentd/incidentd.yml:ro".to_string()),
            "{volumes:?}"
        );
        assert!(replica["depends_on"]["postgres"].is_object());

        let other = if side == "a" { "b" } else { "a" };
        let am = &services[format!("alertmanager-{side}")];
        let args = strings(&am["command"]);
        assert!(
            args.contains(&format!("--cluster.peer=alertmanager-{other}:9094")),
            "alertmanager-{side} is clustered with its peer: {args:?}"
        );
        let config = yaml(&format!("alertmanager-{side}.yml"));
        let hook = &config["receivers"][0]["webhook_configs"][0];
        assert_eq!(
            hook["url"],
            format!("http://incidentd-{side}:9097/webhook/alertmanager"),
            "alertmanager-{side} sends to its own replica"
        );
        assert_eq!(hook["send_resolved"], true);
        assert_eq!(
            hook["http_config"]["authorization"]["credentials_file"],
            "/etc/alertmanager/incidentd-webhook-token"
        );
    }

    let incidentd = yaml("incidentd.yml");
    assert_eq!(incidentd["storage"]["backend"], "postgres");
    let url_file = incidentd["storage"]["postgres"]["url_file"]
        .as_str()
        .expect("the DSN comes from a file");
    let dsn = std::fs::read_to_string(example(url_file)).expect("the DSN file exists");
    assert!(
        dsn.trim().ends_with("@postgres:5432/incidentd"),
        "the DSN names the compose database: {dsn}"
    );
    let password = std::fs::read_to_string(example("secrets/postgres-password")).unwrap();
    assert!(
        dsn.contains(&format!(":{}@", password.trim())),
        "the DSN's password is the one PostgreSQL is started with"
    );
}

#[test]
fn the_replicas_configuration_passes_check_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .arg("check-config")
        .arg(example("incidentd.yml"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("example-only-change-me"),
        "the password leaked: {text}"
    );
}

#[test]
fn both_alertmanager_configurations_pass_amtool() {
    let found = Command::new("amtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("INCIDENTD_REQUIRE_E2E").is_none(),
            "amtool is required (Debian package prometheus-alertmanager)"
        );
        eprintln!("skipping: amtool not installed");
        return;
    }
    for side in ["a", "b"] {
        let out = Command::new("amtool")
            .arg("check-config")
            .arg(example(&format!("alertmanager-{side}.yml")))
            .output()
            .expect("amtool runs");
        assert!(
            out.status.success(),
            "alertmanager-{side}.yml: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
