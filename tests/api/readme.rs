//! The README's quick start, run as written (only the port differs, and `cargo run --release --`
//! is the binary this test suite built).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// The shell block of the quick start that posts the first webhook.
fn quick_start_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Quick start")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let block = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("curl"))
        .expect("a quick-start block with curl");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.split("   #").next().unwrap().trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        if !line.ends_with('\\') {
            commands.push(std::mem::take(&mut current));
        }
    }
    commands
}

#[tokio::test]
async fn the_readme_quick_start_works_as_written() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // `cargo run --release -- serve`, from the repository, on a free port and a scratch copy of
    // the places it writes to (./data and ./drafts).
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args(["serve", &format!("--web.listen-address=127.0.0.1:{port}")])
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{url}/-/ready")).await.is_err() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let commands = quick_start_commands();
    assert!(commands.len() >= 5, "{commands:?}");
    for command in commands {
        let shell = command
            .replace("http://127.0.0.1:9097", &url)
            .replace("cargo run --release --", env!("CARGO_BIN_EXE_incidentd"));
        let cwd = if shell.starts_with("cat drafts/") {
            dir.path().to_path_buf()
        } else {
            repo.into()
        };
        if shell.starts_with("cat drafts/") {
            wait_for(&cwd.join(shell.trim_start_matches("cat ")));
        }
        let out = tokio::task::spawn_blocking({
            let (shell, url) = (shell.clone(), url.clone());
            move || {
                Command::new("sh")
                    .args(["-c", &shell])
                    .current_dir(cwd)
                    .env("INCIDENTD_URL", url)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        if command.starts_with("curl") {
            assert_eq!(
                stdout.trim(),
                r#"{"alerts":1,"incidents":["INC-2026-0001"],"status":"success"}"#
            );
        }
        if command.contains("incidents show") || command.starts_with("cat") {
            assert!(
                stdout.contains("Database connection pool nearly exhausted"),
                "{command}: {stdout}"
            );
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

fn wait_for(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
