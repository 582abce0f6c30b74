//! The command line as a user runs it: check-config, replay, incidents, render.

use std::process::{Command, Output};

use crate::helpers::*;

fn incidentd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args(args)
        .env_remove("INCIDENTD_URL")
        .output()
        .expect("incidentd runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_config_accepts_the_documented_config_and_names_the_key_of_a_bad_one() {
    let documented = concat!(env!("CARGO_MANIFEST_DIR"), "/config/incidentd.yml");
    let ok = incidentd(&["check-config", documented]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("SUCCESS: post-mortem template (embedded default) renders"));

    let bad = fixtures().join("config/bad-duration.yml");
    let out = incidentd(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAILED")
            && text.contains("correlation.reopen_window: invalid duration \"5x\""),
        "{text}"
    );
}

#[test]
fn a_client_command_that_cannot_reach_the_daemon_says_why() {
    let out = incidentd(&["incidents", "list", "--url", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "incidentd: GET http://127.0.0.1:1/api/v1/incidents: connection refused"
    );
    let out = incidentd(&[
        "incidents",
        "list",
        "--url",
        "http://no-such-host.invalid:9097",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DNS failure: name not resolved"), "{err}");
}

/// Runs `serve` on `config` and expects it to refuse to start, saying `expected` on stderr.
fn serve_refuses(config: &std::path::Path, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args([
            "serve",
            "--web.listen-address=127.0.0.1:0",
            &format!("--config.file={}", config.display()),
            &format!("--storage.path={}", dir.path().join("data").display()),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started on a configuration check-config refuses");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(expected), "{err}");
}

#[test]
fn check_config_reports_postgres_errors_by_key_and_serve_names_an_unreachable_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("incidentd.yml");
    std::fs::write(
        &config,
        "storage:\n  backend: postgres\n  postgres:\n    url: postgres://incidentd@db/x?sslmode=verify\n    pool_size: 0\n",
    )
    .unwrap();
    let out = incidentd(&["check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "FAILED: {}: storage.postgres.url: invalid sslmode \"verify\"",
            config.display()
        )),
        "{}",
        stdout(&out)
    );

    std::fs::write(
        &config,
        "storage:\n  backend: postgres\n  postgres:\n    url: postgres://incidentd@db/x\n",
    )
    .unwrap();
    let out = incidentd(&["check-config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    // serve connects: nothing listens on port 1, so it stops with the server named (redacted).
    std::fs::write(
        &config,
        "storage:\n  backend: postgres\n  postgres:\n    url: postgres://incidentd@127.0.0.1:1/x\n",
    )
    .unwrap();
    serve_refuses(
        &config,
        "opening the PostgreSQL database incidentd@127.0.0.1:1/x",
    );
}

#[test]
fn check_config_and_serve_refuse_a_missing_rules_dir_when_prometheus_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("incidentd.yml");
    std::fs::write(&config, "prometheus:\n  url: http://127.0.0.1:9090\n").unwrap();
    let out = incidentd(&["check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "FAILED: {}: rules_dir: cannot read directory {}",
            config.display(),
            dir.path().join("rules").display()
        )),
        "{}",
        stdout(&out)
    );
    serve_refuses(&config, "rules_dir: cannot read directory");

    // Saying there are none on purpose is fine.
    std::fs::write(
        &config,
        "prometheus:\n  url: http://127.0.0.1:9090\nrules_dir: \"\"\n",
    )
    .unwrap();
    let out = incidentd(&["check-config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("NOTE: rules_dir is \"\""),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_config_and_serve_refuse_a_snapshot_margin_longer_than_the_delay() {
    let bad = fixtures().join("config/snapshot-margin-after-delay.yml");
    let out = incidentd(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "prometheus.snapshot_margin: 10m is longer than prometheus.snapshot_delay (5m)"
        ),
        "{}",
        stdout(&out)
    );
    serve_refuses(&bad, "prometheus.snapshot_margin");
}

#[test]
fn check_config_reports_every_error_on_its_own_line() {
    let bad = fixtures().join("config/several-errors.yml");
    let out = incidentd(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let failed: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.trim_start().starts_with("FAILED: "))
        .map(str::to_string)
        .collect();
    assert_eq!(failed.len(), 3, "{}", stdout(&out));
    for key in [
        "web.max_body_bytes",
        "correlation.group_by[1]",
        "prometheus.timeout",
    ] {
        assert!(
            failed
                .iter()
                .any(|l| l.contains(&format!("several-errors.yml: {key}: "))),
            "{key} in {failed:?}"
        );
    }
}

#[test]
fn a_missing_template_is_named_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("incidentd.yml");
    std::fs::write(&config, "postmortem:\n  template: no-such.md.hbs\n").unwrap();
    let out = incidentd(&["check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAILED: postmortem.template: cannot read post-mortem template"),
        "{}",
        stdout(&out)
    );
    serve_refuses(
        &config,
        "postmortem.template: cannot read post-mortem template",
    );
}

#[test]
fn check_config_fails_on_a_template_with_a_misspelt_field() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("custom.md.hbs");
    std::fs::write(&template, "# {{incident.titel}}\n").unwrap();
    let config = dir.path().join("incidentd.yml");
    std::fs::write(
        &config,
        format!("postmortem:\n  template: {}\n", template.display()),
    )
    .unwrap();
    let out = incidentd(&["check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("custom.md.hbs"), "{}", stdout(&out));
}

#[tokio::test]
async fn replay_then_list_show_note_and_render_work_against_a_daemon() {
    let app = spawn_app().await;
    let hooks = fixtures().join("scenario-single/webhooks");
    let url = app.url.clone();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            incidentd(&args)
        })
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let out = run(s(&["replay", hooks.to_str().unwrap(), "--url", &url]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("sent 6 payloads"), "{}", stdout(&out));

    let out = run(s(&["incidents", "list", "--url", &url])).await.unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("INC-2026-0001  resolved  critical  payment-service"),
        "{text}"
    );

    let out = run(s(&[
        "incidents",
        "note",
        "INC-2026-0001",
        "Pool raised to 100",
        "--by",
        "alice",
        "--url",
        &url,
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(s(&["incidents", "show", "INC-2026-0001", "--url", &url]))
        .await
        .unwrap();
    assert!(
        stdout(&out).contains("Pool raised to 100"),
        "{}",
        stdout(&out)
    );

    let data = app.dir.path().join("data");
    let out = run(s(&[
        "render",
        "INC-2026-0001",
        "--storage.path",
        data.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = stdout(&out);
    assert!(
        md.starts_with("# Post-Mortem: Database connection pool nearly exhausted"),
        "{md}"
    );
    assert!(md.contains("| Pool raised to 100 | alice |"), "{md}");

    let out = run(s(&["incidents", "show", "INC-2026-0099", "--url", &url]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INC-2026-0099 not found"));
}
