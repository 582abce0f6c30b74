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
