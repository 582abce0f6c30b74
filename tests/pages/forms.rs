//! The pages over plain HTTP: the forms' protection against cross-site requests, the actor
//! from a trusted proxy header, and the list's filters, search and paging.

use incidentd::config::Config;
use serde_json::Value;

use crate::helpers::*;

const ID: &str = "INC-2026-0001";

/// The page's CSRF cookie (`name=value`) and form token.
async fn cookie_and_token(app: &TestApp) -> (String, String) {
    let r = app
        .client
        .get(format!("{}/incidents/{ID}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let html = r.text().await.unwrap();
    let at = html
        .find("name=\"token\" value=\"")
        .expect("the form has a token")
        + 20;
    let token = html[at..at + 64].to_string();
    (cookie, token)
}

async fn post_form(
    app: &TestApp,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client
        .post(format!("{}/incidents/{ID}", app.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn forms_refuse_cross_site_posts_and_bad_tokens_and_act_like_the_api_otherwise() {
    let app = spawn_app().await;
    assert_eq!(app.post_webhook(payload(|_| {})).await.status(), 200);
    let (cookie, token) = cookie_and_token(&app).await;
    let zeros = "0".repeat(64);
    let ack = [
        ("token", token.as_str()),
        ("by", "Grace"),
        ("action", "acknowledge"),
    ];

    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Pairs, Pairs)> = vec![
        (
            "another site",
            vec![("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
            ack.to_vec(),
        ),
        (
            "another origin",
            vec![("Cookie", &cookie), ("Origin", "http://evil.example")],
            ack.to_vec(),
        ),
        (
            "no cookie",
            vec![("Sec-Fetch-Site", "same-origin")],
            ack.to_vec(),
        ),
        (
            "a wrong token",
            vec![("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
            vec![
                ("token", &zeros),
                ("by", "Grace"),
                ("action", "acknowledge"),
            ],
        ),
        (
            "another cookie",
            vec![
                ("Cookie", "incidentd_csrf=00000000000000000000000000000000"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            ack.to_vec(),
        ),
    ];
    for (name, headers, form) in cases {
        let r = post_form(&app, &headers, &form).await;
        assert_eq!(r.status(), 403, "{name}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{name}"
        );
    }
    assert_eq!(
        app.incident(ID).await["status"],
        "open",
        "nothing was acknowledged"
    );

    let r = post_form(
        &app,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        &ack,
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/incidents/{ID}#timeline").as_str()
    );
    let i = app.incident(ID).await;
    assert_eq!(i["status"], "acknowledged");
    assert_eq!(i["acknowledged_by"], "Grace");

    // No name typed: "web". A second acknowledge is a conflict, shown as a page.
    let note = [
        ("token", token.as_str()),
        ("note", "checked the pool"),
        ("action", "note"),
    ];
    let r = post_form(
        &app,
        &[
            ("Cookie", &cookie),
            ("Origin", &app.url),
            ("Host", app.url.trim_start_matches("http://")),
        ],
        &note,
    )
    .await;
    assert_eq!(r.status(), 303);
    let i = app.incident(ID).await;
    let last = i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"] == "note_added")
        .unwrap();
    assert_eq!(
        (last["actor"].as_str(), last["text"].as_str()),
        (Some("web"), Some("checked the pool"))
    );
    let r = post_form(
        &app,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        &ack,
    )
    .await;
    assert_eq!(r.status(), 409);
    let r = post_form(
        &app,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        &[("token", &token), ("action", "note")],
    )
    .await;
    assert_eq!(r.status(), 400, "an empty note is refused");
    app.stop().await;
}

#[tokio::test]
async fn the_auth_proxy_header_names_the_actor_when_configured_and_is_ignored_otherwise() {
    let mut config = Config::default();
    config.web.auth_proxy_header = Some("X-Forwarded-User".into());
    let app = spawn_app_with(config).await;
    assert_eq!(app.post_webhook(payload(|_| {})).await.status(), 200);
    let (cookie, token) = cookie_and_token(&app).await;
    let page = app
        .get_text_with(
            &format!("/incidents/{ID}"),
            &[("X-Forwarded-User", "alice@example.com")],
        )
        .await;
    assert!(
        page.contains("Acting as <strong>alice@example.com</strong> (signed in)"),
        "the form names the proxy's user"
    );
    let form = [
        ("token", token.as_str()),
        ("by", "mallory"),
        ("action", "acknowledge"),
    ];
    let headers = [
        ("Cookie", cookie.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("X-Forwarded-User", "alice@example.com"),
    ];
    assert_eq!(post_form(&app, &headers, &form).await.status(), 303);
    assert_eq!(
        app.incident(ID).await["acknowledged_by"],
        "alice@example.com"
    );
    app.stop().await;

    // Off by default: the header means nothing.
    let app = spawn_app().await;
    assert_eq!(app.post_webhook(payload(|_| {})).await.status(), 200);
    let (cookie, token) = cookie_and_token(&app).await;
    let form = [
        ("token", token.as_str()),
        ("by", "bob"),
        ("action", "acknowledge"),
    ];
    let headers = [
        ("Cookie", cookie.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("X-Forwarded-User", "alice@example.com"),
    ];
    assert_eq!(post_form(&app, &headers, &form).await.status(), 303);
    assert_eq!(app.incident(ID).await["acknowledged_by"], "bob");
    app.stop().await;
}

/// The incident ids on a list page, in order.
fn ids(html: &str) -> Vec<String> {
    html.split("<span class=\"id\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_string())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> (u16, String) {
    let r = app
        .client
        .get(format!("{}/{query}", app.url))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_list_filters_searches_and_pages_open_incidents_first() {
    let app = spawn_app().await;
    // Five incidents on five services; the second and fourth resolved, the third is another alert.
    for n in 1..=5 {
        let body = payload(|v| {
            let a = &mut v["alerts"][0];
            a["labels"]["service"] = format!("svc-{n}").into();
            a["fingerprint"] = format!("f{n}").into();
            if n == 3 {
                a["labels"]["alertname"] = "DiskAlmostFull".into();
            }
            v["groupKey"] = format!("{{}}:{{service=\"svc-{n}\"}}").into();
        });
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    assert_eq!(app.incidents().await.len(), 5);
    for id in ["INC-2026-0002", "INC-2026-0004"] {
        let r = app
            .client
            .post(format!("{}/api/v1/incidents/{id}/resolve", app.url))
            .json(&serde_json::json!({"by": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (status, html) = list(&app, "").await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&html),
        [
            "INC-2026-0005",
            "INC-2026-0003",
            "INC-2026-0001",
            "INC-2026-0004",
            "INC-2026-0002"
        ],
        "open first, then resolved, newest first"
    );

    // Paging two at a time walks the same order once.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    for _ in 0..5 {
        let (status, html) = list(&app, &query).await;
        assert_eq!(status, 200);
        seen.extend(ids(&html));
        match html
            .split("rel=\"next\"")
            .next()
            .and_then(|h| h.rsplit("href=\"").next())
        {
            Some(href) if html.contains("rel=\"next\"") => {
                query = href
                    .split('"')
                    .next()
                    .unwrap()
                    .trim_start_matches('/')
                    .replace("&amp;", "&")
                    .replace("&#x3D;", "=");
            }
            _ => break,
        }
    }
    assert_eq!(
        seen,
        [
            "INC-2026-0005",
            "INC-2026-0003",
            "INC-2026-0001",
            "INC-2026-0004",
            "INC-2026-0002"
        ]
    );

    for (query, expected) in [
        ("?status=resolved", vec!["INC-2026-0004", "INC-2026-0002"]),
        ("?status=open&service=svc-3", vec!["INC-2026-0003"]),
        ("?q=diskalmost", vec!["INC-2026-0003"]),
        ("?q=INC-2026-0004", vec!["INC-2026-0004"]),
        ("?q=%25", vec![]),
        ("?severity=nope", vec![]),
        ("?from=2999-01-01", vec![]),
    ] {
        let (status, html) = list(&app, query).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(ids(&html), expected, "{query}");
    }
    for bad in [
        "?status=closed",
        "?from=yesterday",
        "?after=zz",
        "?sevrity=x",
    ] {
        let (status, html) = list(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {html}");
    }
    let _: Option<Value> = None;
    app.stop().await;
}

#[tokio::test]
async fn with_an_api_token_the_forms_act_only_behind_an_auth_proxy() {
    let mut config = Config::default();
    config.web.api_token = Some(incidentd::config::Secret::new("t0ken"));
    let app = spawn_app_with(config).await;
    assert_eq!(app.post_webhook(payload(|_| {})).await.status(), 200);
    let page = app
        .client
        .get(format!("{}/incidents/{ID}", app.url))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("acting from the pages is off"),
        "the page says why"
    );
    assert!(!html.contains("name=\"token\""), "and shows no form");
    let r = post_form(
        &app,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        &[("token", "x"), ("action", "acknowledge")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(app.incident(ID).await["status"], "open");
    app.stop().await;
}

/// Behind `--web.config.file` with TLS and basic auth (and an API token): the cookie is
/// `Secure`, and the signed-in user acts from the page, whatever name is typed.
#[tokio::test]
async fn behind_tls_and_basic_auth_the_signed_in_user_acts_and_the_cookie_is_secure() {
    let app =
        spawn_tls_with(|c| c.web.api_token = Some(incidentd::config::Secret::new("t0ken"))).await;
    let (url, client) = (app.url.clone(), app.client.clone());
    let r = client
        .post(format!("{url}/webhook/alertmanager"))
        .basic_auth("alice", Some("s3cret"))
        .header("Content-Type", "application/json")
        .body(payload(|_| {}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{url}/incidents/{ID}"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Acting as <strong>alice</strong> (signed in)"),
        "the form names the signed-in user"
    );
    let at = html.find("name=\"token\" value=\"").unwrap() + 20;
    let token = html[at..at + 64].to_string();
    let form = [
        ("token", token.as_str()),
        ("by", "mallory"),
        ("action", "acknowledge"),
    ];
    let r = client
        .post(format!("{url}/incidents/{ID}"))
        .basic_auth("alice", Some("s3cret"))
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let i: Value = client
        .get(format!("{url}/api/v1/incidents/{ID}"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(i["acknowledged_by"], "alice");
}
