//! The daemon's log as an operator reads it: in a file, journald or `docker logs` there is no
//! terminal, so no ANSI colour codes unless asked for.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `serve` on a free port with its standard error going to a pipe, until it logs that
/// it is listening; returns everything it logged up to then.
fn serve_log(extra_args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args([
            "serve",
            "--web.listen-address=127.0.0.1:0",
            &format!("--storage.path={}", dir.path().join("data").display()),
        ])
        .args(extra_args)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the incidentd binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.push_str(&line);
            log.push('\n');
            if line.contains("incidentd listening") {
                break;
            }
        }
        let _ = tx.send(log);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("incidentd logged that it listens");
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("incidentd listening"), "{log}");
    log
}

#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    let log = serve_log(&[], &[]);
    assert!(!log.contains("\x1b["), "ANSI codes in a piped log: {log:?}");
    let log = serve_log(&["--log.color=auto"], &[]);
    assert!(!log.contains("\x1b["), "ANSI codes in a piped log: {log:?}");
}

#[test]
fn log_color_always_colours_a_pipe_and_never_does_not() {
    let log = serve_log(&["--log.color=always"], &[]);
    assert!(log.contains("\x1b["), "no ANSI codes with always: {log:?}");
    // NO_COLOR only changes `auto`; an explicit flag wins.
    let log = serve_log(&["--log.color=always"], &[("NO_COLOR", "1")]);
    assert!(log.contains("\x1b["), "{log:?}");
    let log = serve_log(&["--log.color=never"], &[]);
    assert!(!log.contains("\x1b["), "{log:?}");
}
