//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, started on
//! a free port on 127.0.0.1 (and a Unix socket in the same directory), with `trust`
//! authentication for the user `incidentd`. Dropping it stops the server and removes the
//! directory. Include it with `#[path = "support/postgres.rs"] mod pg;` (or
//! `#[path = "../support/postgres.rs"]` from a subdirectory).
//!
//! The binaries come from PATH, or the highest version under `/usr/lib/postgresql/*/bin`
//! (Debian's layout). initdb refuses to run as root, so as root (CI) the server runs as the
//! `postgres` system user (`runuser`). Without the binaries, [`Cluster::start_or_skip`] prints
//! a loud SKIP and returns `None`; under `INCIDENTD_REQUIRE_E2E=1` (CI) it panics instead.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set to `1` to fail instead of skipping when the binaries are missing (CI sets it).
pub const REQUIRE_ENV: &str = "INCIDENTD_REQUIRE_E2E";
/// The superuser `initdb` creates; authentication is `trust`.
pub const USER: &str = "incidentd";

/// A running (or stopped) throwaway cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// `Some(user)` when the server runs as another user (we are root).
    run_as: Option<String>,
    running: bool,
}

/// The directory holding `initdb` and `pg_ctl`, or `None`.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // Debian links /usr/bin tools to a wrapper; the real directory has pg_ctl
                // beside initdb.
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                let dir = real.parent()?.to_path_buf();
                if dir.join("pg_ctl").is_file() {
                    return Some(dir);
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

/// The cluster tests of one binary share while they overlap (each in a database of its own,
/// [`Cluster::create_database`]); stopped and removed when the last of them lets go, so no
/// server outlives the test binary.
static SHARED: std::sync::Mutex<std::sync::Weak<Cluster>> =
    std::sync::Mutex::new(std::sync::Weak::new());

/// The shared cluster (started if none is running); `None` after a loud SKIP. Tests that stop,
/// restart or reconfigure the server take their own with [`Cluster::start_or_skip`].
pub fn shared_or_skip(test: &str) -> Option<std::sync::Arc<Cluster>> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return Some(cluster);
    }
    let cluster = std::sync::Arc::new(Cluster::start_or_skip(test)?);
    *shared = std::sync::Arc::downgrade(&cluster);
    Some(cluster)
}

impl Cluster {
    /// A fresh cluster, started; `None` (after a loud SKIP) without the PostgreSQL binaries.
    pub fn start_or_skip(test: &str) -> Option<Cluster> {
        let Some(bin) = find_bin_dir() else {
            let msg = "initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin; \
                       install them with `apt-get install -y postgresql`";
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_ENV}=1 but {msg}");
            }
            // Straight to the stderr handle: libtest captures eprintln! of passing tests.
            let bang = "!".repeat(78);
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n{bang}\nSKIP {test}: {msg}\n{bang}\n"
            );
            return None;
        };
        Some(Cluster::init(bin))
    }

    fn init(bin: PathBuf) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("incidentd-pg-")
            .tempdir()
            .expect("temporary directory");
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .output()
                .expect("run chown");
            assert!(out.status.success(), "chown {user}: {out:?}");
        }
        let mut cluster = Cluster {
            bin,
            dir,
            port: 0,
            run_as,
            running: false,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.start();
        cluster
    }

    /// Runs one of the PostgreSQL tools (as the `postgres` user when we are root); panics with
    /// its output when it fails.
    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // pg_ctl's server inherits stdout/stderr: never pipe them, or output() waits for the
        // server to exit. The server writes to the log file instead.
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        assert!(
            out.success(),
            "{tool} {args:?} failed ({out}); server log:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The directory of the Unix socket (`host=` for a socket connection).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP port (fixed for the cluster's life, so restarts keep URLs valid).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://incidentd@127.0.0.1:<port>/<db>`.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The URL of the default database `postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut client =
            postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to postgres");
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create database");
        self.url_for(name)
    }

    /// Starts the server (waits until it accepts connections). The first start picks a free
    /// port; later ones reuse it.
    pub fn start(&mut self) {
        if self.running {
            return;
        }
        let first = self.port == 0;
        for attempt in 0..5 {
            if first {
                self.port = free_port();
            }
            let options = format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
                self.port,
                self.dir.path().display()
            );
            let data = self.data().display().to_string();
            let log = self.log().display().to_string();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run(
                    "pg_ctl",
                    &[
                        "start", "-w", "-t", "30", "-D", &data, "-l", &log, "-o", &options,
                    ],
                )
            }));
            match result {
                Ok(()) => {
                    self.running = true;
                    return;
                }
                // Another process took the port between our probe and the server's bind.
                Err(_) if first && attempt < 4 => continue,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }

    /// Stops the server at once (`-m immediate`: like a crash, no checkpoint).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &data]);
        self.running = false;
    }

    /// Stops and starts again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Turns TLS on with this certificate and key (PEM), restarting the server.
    pub fn enable_tls(&mut self, cert: &Path, key: &Path) {
        let data = self.data();
        std::fs::copy(cert, data.join("server.crt")).expect("copy the certificate");
        std::fs::copy(key, data.join("server.key")).expect("copy the key");
        // PostgreSQL refuses a key that others can read.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod the key");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .expect("write postgresql.conf");
        if let Some(user) = &self.run_as {
            for file in ["server.crt", "server.key"] {
                let out = Command::new("chown")
                    .arg(user)
                    .arg(data.join(file))
                    .output()
                    .expect("run chown");
                assert!(out.status.success(), "chown {user}: {out:?}");
            }
        }
        self.restart();
    }

    /// Whether the server is meant to be running.
    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            // Never panic in drop (a failing test is already unwinding).
            let data = self.data();
            let exe = self.bin.join("pg_ctl");
            let mut cmd = match &self.run_as {
                Some(user) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            };
            let _ = cmd
                .args(["stop", "-w", "-m", "immediate", "-D"])
                .arg(&data)
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The TempDir removes the directory (as root, or as the user who made it).
    }
}
