//! `--web.config.file` (exporter-toolkit's format) for real: TLS with a freshly generated
//! self-signed certificate, basic auth on every route but `/slack/*`, the file re-read per
//! request, and a bad file stopping `serve` with an error naming the key.

use std::path::Path;
use std::sync::{Arc, Mutex};

use incidentd::app::{App, Options};
use incidentd::config::Config;
use incidentd::http::web_config::WebConfigFile;

use crate::helpers::*;

struct Tls {
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    web_yml: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Tls {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A bcrypt hash at the lowest cost, to keep the test fast (the format is the same).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn web_yml(users: &[(&str, &str)]) -> String {
    let mut yml = "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n\
                   http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        .to_string();
    if !users.is_empty() {
        yml.push_str("basic_auth_users:\n");
        for (user, password) in users {
            yml.push_str(&format!("  {user}: '{}'\n", hash(password)));
        }
    }
    yml
}

async fn spawn_tls() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/server.crt"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("tls/server.key"),
        certified.key_pair.serialize_pem(),
    )
    .unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, web_yml(&[("alice", "s3cret")])).unwrap();
    let file = WebConfigFile::load(&web).unwrap();
    let mut config = Config::default();
    config.postmortem.output_dir = dir.path().join("drafts");
    let clock = Arc::new(Mutex::new(time("2026-11-23T14:00:00Z")));
    let app = App::build(
        config,
        Options {
            listen_address: "127.0.0.1:0".into(),
            storage_path: Some(dir.path().join("data")),
        },
        Arc::new(move || *clock.lock().unwrap()),
    )
    .await
    .unwrap()
    .with_web_config(file);
    let url = format!("https://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    Tls {
        url,
        client,
        _dir: dir,
        web_yml: web,
        stop: Some(stop),
    }
}

#[tokio::test]
async fn tls_and_basic_auth_guard_every_route_but_slacks() {
    let app = spawn_tls().await;
    let get = |path: &str, auth: Option<(&str, &str)>| {
        let mut r = app.client.get(format!("{}{path}", app.url));
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        r.send()
    };
    for path in [
        "/api/v1/incidents",
        "/metrics",
        "/-/healthy",
        "/api/v1/reports",
    ] {
        for auth in [None, Some(("alice", "wrong")), Some(("mallory", "s3cret"))] {
            let r = get(path, auth)
                .await
                .expect("TLS handshake with the generated certificate");
            assert_eq!(r.status(), 401, "{path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Basic", "{path}");
            assert_eq!(r.headers()["x-frame-options"], "deny", "{path}");
        }
        let r = get(path, Some(("alice", "s3cret"))).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["x-frame-options"], "deny", "{path}");
    }
    // Slack cannot send a password: its route answers on its own terms (here: not
    // configured), never with the basic-auth challenge.
    let r = app
        .client
        .post(format!("{}/slack/interactions", app.url))
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("www-authenticate").is_none());

    // Plain HTTP on the TLS port gets no answer.
    let plain = app.url.replace("https://", "http://");
    let answered = reqwest::get(format!("{plain}/-/healthy")).await;
    assert!(
        answered.as_ref().map_or(true, |r| r.status() != 200),
        "{answered:?}"
    );

    // The file is read per request: a new user works at once, the old one no longer does.
    std::fs::write(&app.web_yml, web_yml(&[("bob", "n3w")])).unwrap();
    assert_eq!(
        get("/api/v1/incidents", Some(("bob", "n3w")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/v1/incidents", Some(("alice", "s3cret")))
            .await
            .unwrap()
            .status(),
        401
    );
    // A file broken at run time: 500, never an open door.
    std::fs::write(&app.web_yml, "basic_auth_users:\n  bob: not-a-hash\n").unwrap();
    assert_eq!(
        get("/api/v1/incidents", Some(("bob", "n3w")))
            .await
            .unwrap()
            .status(),
        500
    );
}

fn serve_with(web: &Path, data: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args(["serve", "--web.listen-address=127.0.0.1:0"])
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!("--storage.path={}", data.display()))
        .current_dir(data.parent().unwrap())
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_bad_web_config_file_stops_serve_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let data = dir.path().join("data");
    for (yml, key) in [
        (
            "basic_auth_users:\n  alice: plain-text\n",
            "basic_auth_users.alice",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_fil: x\n",
            "tls_server_config.cert_fil",
        ),
    ] {
        std::fs::write(&web, yml).unwrap();
        let out = tokio::task::spawn_blocking({
            let (web, data) = (web.clone(), data.clone());
            move || serve_with(&web, &data)
        })
        .await
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yml}");
        assert!(
            err.contains(&format!("web config {}: {key}: ", web.display())),
            "{yml}: {err}"
        );
        let checked = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
            .arg("check-web-config")
            .arg(&web)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&checked.stdout);
        assert!(!checked.status.success(), "{said}");
        assert!(said.contains(&format!("{key}: ")), "{said}");
    }
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  alice: '{}'\n", hash("pw")),
    )
    .unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .arg("check-web-config")
        .arg(&web)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}
