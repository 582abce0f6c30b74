//! `--web.config.file` (exporter-toolkit's format) for real: TLS with a freshly generated
//! self-signed certificate, basic auth on every route but `/slack/*`, the file re-read per
//! request, and a bad file stopping `serve` with an error naming the key.

use std::path::Path;

use crate::helpers::*;

#[tokio::test]
async fn tls_and_basic_auth_guard_every_route_but_slacks() {
    let app = spawn_tls_with(|_| {}).await;
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
        format!("basic_auth_users:\n  alice: '{}'\n", bcrypt_hash("pw")),
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

/// Runs the `incidentd` binary (off the runtime that serves the daemon) and returns its exit
/// status and what it printed on both streams.
async fn incidentd(args: Vec<String>) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
            .args(&args)
            .env_remove("INCIDENTD_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn incidentds_own_tokens_pass_basic_auth_where_they_guard_the_route() {
    use incidentd::config::{Secret, WebhookAuth};
    let app = spawn_tls_with(|c| {
        c.web.api_token = Some(Secret::new("api-tok"));
        c.web.webhook_auth = Some(WebhookAuth {
            bearer_token: Some(Secret::new("hook-tok")),
            basic_auth: None,
        });
    })
    .await;
    let get = |path: &str, token: &str| {
        app.client
            .get(format!("{}{path}", app.url))
            .bearer_auth(token)
            .send()
    };
    // The API token on any route, as one Authorization header cannot carry it and a password.
    for path in ["/api/v1/incidents", "/metrics", "/"] {
        assert_eq!(get(path, "api-tok").await.unwrap().status(), 200, "{path}");
        assert_eq!(get(path, "wrong").await.unwrap().status(), 401, "{path}");
        // The webhook's token is for the webhook only.
        assert_eq!(get(path, "hook-tok").await.unwrap().status(), 401, "{path}");
    }
    let post = |token: &str| {
        app.client
            .post(format!("{}/webhook/alertmanager", app.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(payload(|_| {}))
            .send()
    };
    assert_eq!(post("hook-tok").await.unwrap().status(), 200);
    assert_eq!(post("wrong").await.unwrap().status(), 401);
    // A writing route with the API token alone: past basic auth, and the token it demands.
    let ack = app
        .client
        .post(format!("{}/api/v1/incidents/INC-2026-0001/ack", app.url))
        .bearer_auth("api-tok")
        .json(&serde_json::json!({"by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200, "{:?}", ack.text().await);
}

#[tokio::test]
async fn the_client_commands_connect_with_an_http_config_file_as_amtool_does() {
    use incidentd::config::Secret;
    let app = spawn_tls_with(|c| c.web.api_token = Some(Secret::new("api-tok"))).await;
    let dir = app.dir.path();
    std::fs::write(dir.join("alice.pw"), "s3cret\n").unwrap();
    std::fs::write(dir.join("api-token"), "api-tok\n").unwrap();
    let with_auth = dir.join("http.yml");
    std::fs::write(
        &with_auth,
        "basic_auth:\n  username: alice\n  password_file: alice.pw\ntls_config:\n  ca_file: ca.crt\n",
    )
    .unwrap();
    let ca_only = dir.join("http-ca-only.yml");
    std::fs::write(&ca_only, "tls_config:\n  ca_file: ca.crt\n").unwrap();
    let run = |args: &[&str], http: Option<&std::path::Path>| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.push(format!("--url={}", app.url));
        if let Some(http) = http {
            all.push(format!("--http.config.file={}", http.display()));
        }
        incidentd(all)
    };

    // TLS: the daemon's certificate is trusted only through the file's CA.
    let (ok, said) = run(&["incidents", "list"], None).await;
    assert!(!ok && said.contains("TLS error"), "{said}");
    // Past TLS, basic auth still wants a password.
    let (ok, said) = run(&["incidents", "list"], Some(&ca_only)).await;
    assert!(!ok && said.contains("401"), "{said}");
    // With both, every reading command works.
    let (ok, said) = run(&["incidents", "list"], Some(&with_auth)).await;
    assert!(ok, "{said}");
    let (ok, said) = run(&["report", "--since=30d"], Some(&with_auth)).await;
    assert!(ok, "{said}");
    let firing = dir.join("firing.json");
    std::fs::write(&firing, payload(|_| {})).unwrap();
    let (ok, said) = run(&["replay", firing.to_str().unwrap()], Some(&with_auth)).await;
    assert!(ok, "{said}");
    // A writing command sends the API token instead of the password: the route demands it,
    // and basic auth accepts it.
    let token = format!("--api-token-file={}", dir.join("api-token").display());
    let (ok, said) = run(
        &["incidents", "ack", "INC-2026-0001", "--by=alice", &token],
        Some(&with_auth),
    )
    .await;
    assert!(ok, "{said}");
    assert!(
        said.contains("INC-2026-0001 acknowledged by alice"),
        "{said}"
    );
    // Without the token, the password gets past basic auth, and the route asks for the token.
    let (ok, said) = run(
        &["incidents", "ack", "INC-2026-0001", "--by=alice"],
        Some(&with_auth),
    )
    .await;
    assert!(!ok && said.contains("needs the API token"), "{said}");
    // A mistake in the file names the file and the key.
    std::fs::write(&ca_only, "tls_config:\n  server_name: x\n").unwrap();
    let (ok, said) = run(&["incidents", "list"], Some(&ca_only)).await;
    assert!(
        !ok && said.contains("http-ca-only.yml: tls_config"),
        "{said}"
    );
}
