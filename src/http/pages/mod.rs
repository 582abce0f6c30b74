//! The pages people read in a browser: the incidents list (`/`), an incident
//! (`/incidents/{id}`) with forms to acknowledge, add a note and resolve, and the reports.
//!
//! What a page shows is decided by pure functions (`list::view`, `incident::view`) over what
//! the store and the draft's context give; this module only reads, renders and answers.
//! Templates are Handlebars with HTML escaping on: every label, annotation, note and name is
//! text. The one piece of markup that is not escaped, the post-mortem draft, is Markdown
//! rendered by pulldown-cmark and cleaned by ammonia. Pages carry no script, and their
//! Content-Security-Policy allows none; everything they use is embedded in the binary.
//!
//! Forms are protected against cross-site request forgery twice: a browser's
//! `Sec-Fetch-Site`/`Origin` must say the form was posted from this site, and the form's
//! token must be the HMAC (under a secret every replica shares through the store) of the
//! nonce in the `incidentd_csrf` cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when served
//! over HTTPS).

pub mod incident;
pub mod list;
pub mod reports;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use handlebars::Handlebars;
use hmac::{Hmac, Mac};
use serde::Serialize;

use super::web_config::BasicAuthUser;
use super::{AppState, Path};
use crate::incident::Action;

/// The cookie holding the nonce that form tokens are derived from.
const CSRF_COOKIE: &str = "incidentd_csrf";
/// Why the forms do not act (see [`Pages`]).
const FORMS_OFF: &str = "acting from the pages is off: web.api_token_file guards the writing \
    API, and the pages can only act for a signed-in user (basic auth from --web.config.file, \
    or an authenticating proxy's web.auth_proxy_header); use the API with the token";

/// Who acts when neither the proxy nor the form names anyone.
pub const DEFAULT_ACTOR: &str = "web";

const STYLE: &str = include_str!("assets/style.css");
const LAYOUT: &str = include_str!("assets/layout.hbs");
const LIST: &str = include_str!("assets/list.hbs");
const INCIDENT: &str = include_str!("assets/incident.hbs");
const REPORTS: &str = include_str!("assets/reports.hbs");

/// The pages' compiled templates and the secret their form tokens are derived from.
pub struct Pages {
    templates: Handlebars<'static>,
    secret: [u8; 32],
    /// `web.auth_proxy_header`, lower-cased.
    auth_proxy_header: Option<header::HeaderName>,
    /// Served over TLS (`--web.config.file`) or `web.external_url` is `https://…`: cookies
    /// are `Secure`.
    secure_cookies: std::sync::atomic::AtomicBool,
    /// Whether the forms act for anyone. With `web.api_token_file` set the JSON writing
    /// routes need the token; the forms, which cannot carry it, then act only when who is
    /// acting is authenticated otherwise (`web.auth_proxy_header`, or basic auth from
    /// `--web.config.file`), so they are no way around it.
    forms: bool,
}

impl Pages {
    /// `secret`: what form tokens are derived from; every replica must use the same one
    /// (stored as [`SECRET_NAME`]), or a form served by one is refused by another.
    pub fn new(web: &crate::config::WebConfig, secret: [u8; 32]) -> Pages {
        let mut templates = Handlebars::new();
        templates.set_strict_mode(false);
        for (name, source) in [
            ("layout", LAYOUT),
            ("list", LIST),
            ("incident", INCIDENT),
            ("reports", REPORTS),
        ] {
            templates
                .register_template_string(name, source)
                .unwrap_or_else(|e| panic!("embedded template {name} does not compile: {e}"));
        }
        Pages {
            templates,
            secret,
            auth_proxy_header: web
                .auth_proxy_header
                .as_deref()
                .and_then(|h| header::HeaderName::from_bytes(h.as_bytes()).ok()),
            secure_cookies: web
                .external_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
                .into(),
            forms: web.api_token.is_none() || web.auth_proxy_header.is_some(),
        }
    }

    /// Served over TLS: cookies are `Secure` from now on.
    pub fn set_tls(&self) {
        self.secure_cookies
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the forms act for this request (see `forms`).
    fn forms_act(&self, headers: &HeaderMap, basic_user: Option<&str>) -> bool {
        self.forms || basic_user.is_some() || proxy_user(self, headers).is_some()
    }

    /// A page: `body` rendered from `template`, inside the layout.
    fn render<T: Serialize>(
        &self,
        template: &str,
        title: &str,
        data: &T,
    ) -> Result<String, PageError> {
        let body = self
            .templates
            .render(template, data)
            .map_err(|e| PageError::Internal(format!("rendering the {template} page: {e}")))?;
        self.templates
            .render(
                "layout",
                &serde_json::json!({ "title": title, "body": body }),
            )
            .map_err(|e| PageError::Internal(format!("rendering the layout: {e}")))
    }

    /// The form token for a nonce: hex HMAC-SHA256.
    fn token(&self, nonce: &str) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(b"incidentd form\0");
        mac.update(nonce.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn check_token(&self, nonce: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.token(nonce);
        expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// The name of the form tokens' secret in the store (shared by every replica).
pub const SECRET_NAME: &str = "pages.form_tokens";

/// 32 bytes from the kernel's random source; a hash of the time and process when it is
/// unreadable (tokens then only hold within this process, which is all they need to).
pub fn random_secret() -> [u8; 32] {
    use sha2::Digest;
    let mut buf = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return buf;
        }
    }
    let seed = format!(
        "{:?}/{}/{:p}",
        std::time::SystemTime::now(),
        std::process::id(),
        &buf
    );
    sha2::Sha256::digest(seed.as_bytes()).into()
}

/// A fresh nonce for the CSRF cookie.
fn new_nonce() -> String {
    hex::encode(&random_secret()[..16])
}

/// The CSRF nonce the browser sent, if it looks like one of ours.
fn cookie_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == CSRF_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why a page could not be shown: answered as a small HTML page.
#[derive(Debug)]
pub enum PageError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "storage failed");
        if e.is_transient() {
            PageError::Unavailable("storage is temporarily unavailable; retry later".into())
        } else {
            PageError::Internal("internal storage error".into())
        }
    }
}

impl From<super::ApiError> for PageError {
    fn from(e: super::ApiError) -> Self {
        use super::ApiError as A;
        match e {
            A::BadRequest(m) => PageError::BadRequest(m),
            A::NotFound(m) => PageError::NotFound(m),
            A::Conflict(m) => PageError::Conflict(m),
            A::Store(e) => e.into(),
            other => PageError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            PageError::Conflict(m) => (StatusCode::CONFLICT, m),
            PageError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            PageError::Internal(m) => {
                tracing::error!(error = %m, "a page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} \
             incidentd</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body>\
             <main><h1>{code}</h1><p>{}</p><p><a href=\"/\">All incidents</a></p></main>\
             </body></html>",
            handlebars::html_escape(&message),
            code = status
        );
        (status, html_headers(), body).into_response()
    }
}

/// What every page is answered with: HTML, no scripts, nothing from elsewhere, no framing.
fn html_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// A page, setting the CSRF cookie when the browser has none.
fn page(pages: &Pages, html: String, new_cookie: Option<&str>) -> Response {
    let mut response = (html_headers(), html).into_response();
    if let Some(nonce) = new_cookie {
        let secure = if pages
            .secure_cookies
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!("{CSRF_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict{secure}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    response
}

/// `GET /assets/style.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// `GET /`: the incidents list.
pub async fn list_page(
    State(state): State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, PageError> {
    let params =
        list::Params::parse(query.as_deref().unwrap_or("")).map_err(PageError::BadRequest)?;
    let settings = state.drafts.settings();
    let (filter, after) = params.to_query(settings.timezone)?;
    let found = state
        .store
        .find_incidents(filter, after, params.limit())
        .await?;
    let view = list::view(
        &params,
        &found,
        settings.timezone,
        settings.second_timezone,
        state.now(),
    );
    let html = state.pages.render("list", "Incidents", &view)?;
    Ok(page(&state.pages, html, None))
}

/// `GET /incidents/{id}`.
pub async fn incident_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    basic: Option<axum::Extension<BasicAuthUser>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let basic_user = basic.map(|axum::Extension(BasicAuthUser(u))| u);
    super::api::check_id(&id)?;
    let now = state.now();
    let (ctx, data) = match state.drafts.context(&state.store, &id, now).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(PageError::NotFound(format!("incident {id} not found"))),
        Err(crate::draft::DraftError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(PageError::Internal(e.to_string())),
    };
    let markdown = match state.store.draft(&id).await? {
        Some(d) => Some(d.markdown),
        None => state.drafts.markdown(&state.store, &id, now).await.ok(),
    };
    let (nonce, new_cookie) = match cookie_nonce(&headers) {
        Some(n) => (n, None),
        None => {
            let n = new_nonce();
            (n.clone(), Some(n))
        }
    };
    let signed_in = basic_user
        .clone()
        .or_else(|| proxy_user(&state.pages, &headers));
    let forms_act = state.pages.forms_act(&headers, basic_user.as_deref());
    let view = incident::view(incident::Inputs {
        ctx: &ctx,
        incident: &data.incident,
        evidence: &data.evidence,
        draft_markdown: markdown.as_deref(),
        token: &state.pages.token(&nonce),
        proxy_user: signed_in.as_deref(),
        forms_off: (!forms_act).then_some(FORMS_OFF),
        now,
        zone: state.drafts.settings().timezone,
        second_zone: state.drafts.settings().second_timezone,
    });
    let title = format!("{} {}", data.incident.id, data.incident.title);
    let html = state.pages.render("incident", &title, &view)?;
    Ok(page(&state.pages, html, new_cookie.as_deref()))
}

/// `GET /reports`: the figures of `GET /api/v1/reports` as tables and charts.
pub async fn reports_page(
    State(state): State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, PageError> {
    let params: reports::Params = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| PageError::BadRequest(format!("query: {e}")))?;
    let settings = state.drafts.settings();
    let (zone, second) = (settings.timezone, settings.second_timezone);
    let now = state.now();
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let request = crate::report::parse_request(
        opt(&params.since).as_deref(),
        opt(&params.until).as_deref(),
        opt(&params.by).as_deref(),
        opt(&params.service).as_deref(),
        now,
        zone,
    )
    .map_err(PageError::BadRequest)?;
    let report = state.report(&request, zone, now).await?;
    let view = reports::view(&params, &report, zone, second);
    let html = state.pages.render("reports", "Reports", &view)?;
    Ok(page(&state.pages, html, None))
}

/// The user the authenticating proxy names, when `web.auth_proxy_header` is set.
fn proxy_user(pages: &Pages, headers: &HeaderMap) -> Option<String> {
    let name = pages.auth_proxy_header.as_ref()?;
    let user = headers.get(name)?.to_str().ok()?.trim();
    (!user.is_empty()).then(|| user.to_string())
}

/// Who acts: the signed-in user (basic auth, else the proxy's header), else the name typed
/// in the form, else [`DEFAULT_ACTOR`].
pub fn actor(proxy_user: Option<&str>, typed: Option<&str>) -> String {
    proxy_user
        .or(typed.map(str::trim).filter(|t| !t.is_empty()))
        .unwrap_or(DEFAULT_ACTOR)
        .to_string()
}

/// Whether the browser says the request comes from this site: `Sec-Fetch-Site` (sent by
/// every current browser) must be `same-origin` or `none`; without it, `Origin`, when sent,
/// must name the host the request went to.
pub fn same_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin") | Ok("none"));
    }
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(origin)) => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            host.is_some() && origin_host == host
        }
        Some(Err(_)) => false,
    }
}

/// The fields of the incident page's form.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// `acknowledge`, `note` or `resolve` (the button pressed).
    #[serde(default)]
    pub action: String,
}

/// `POST /incidents/{id}`: the form's action, through the same operation as the API's
/// (a note typed with it is added after an acknowledge, before a resolve), then back to the
/// page.
pub async fn act(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    basic: Option<axum::Extension<BasicAuthUser>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    super::api::check_id(&id)?;
    let basic_user = basic.map(|axum::Extension(BasicAuthUser(u))| u);
    if !state.pages.forms_act(&headers, basic_user.as_deref()) {
        return Err(PageError::Forbidden(FORMS_OFF.into()));
    }
    if !same_site(&headers) {
        return Err(PageError::Forbidden(
            "this form was posted from another site".into(),
        ));
    }
    let form: ActionForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| PageError::BadRequest(format!("form: {e}")))?;
    let nonce = cookie_nonce(&headers);
    if !nonce.is_some_and(|n| state.pages.check_token(&n, &form.token)) {
        return Err(PageError::Forbidden(
            "the form has expired or did not come from this page: reload the page and try again"
                .into(),
        ));
    }
    let signed_in = basic_user.or_else(|| proxy_user(&state.pages, &headers));
    let by = actor(signed_in.as_deref(), form.by.as_deref());
    let note = form
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let action = match form.action.as_str() {
        "acknowledge" => Some(Action::Acknowledge),
        "resolve" => Some(Action::Resolve),
        "note" => None,
        other => {
            return Err(PageError::BadRequest(format!(
                "action: {:?} is not one of acknowledge, note, resolve",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    if action.is_none() && note.is_none() {
        return Err(PageError::BadRequest("note: write a note to add".into()));
    }
    if note
        .as_ref()
        .is_some_and(|t| t.chars().count() > super::api::MAX_NOTE)
    {
        return Err(PageError::BadRequest(format!(
            "note: longer than {} characters",
            super::api::MAX_NOTE
        )));
    }
    // The timeline reads in order: "acknowledged", then what they found; what was done,
    // then "resolved".
    let (first, then) = match action {
        Some(Action::Acknowledge) => (Some(Action::Acknowledge), note.map(Action::Note)),
        other => (note.map(Action::Note), other),
    };
    for action in [first, then].into_iter().flatten() {
        super::api::perform(&state, &id, &by, action).await?;
    }
    Ok(Redirect::to(&format!("/incidents/{id}#timeline")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_form_counts_as_this_sites_only_when_the_browser_says_so() {
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_site(&headers(&[
            ("origin", "http://h:9097"),
            ("host", "h:9097")
        ])));
        assert!(!same_site(&headers(&[
            ("origin", "http://evil"),
            ("host", "h:9097")
        ])));
        assert!(!same_site(&headers(&[
            ("origin", "null"),
            ("host", "h:9097")
        ])));
        // Neither header: not a browser's cross-site request (curl, a script with the token).
        assert!(same_site(&headers(&[])));
    }

    #[test]
    fn the_actor_is_the_proxys_user_then_the_typed_name_then_web() {
        assert_eq!(actor(Some("alice"), Some("bob")), "alice");
        assert_eq!(actor(None, Some("  bob ")), "bob");
        assert_eq!(actor(None, Some("   ")), "web");
        assert_eq!(actor(None, None), "web");
    }

    #[test]
    fn a_token_holds_for_its_nonce_only() {
        let pages = Pages::new(&crate::config::Config::default().web, random_secret());
        let nonce = new_nonce();
        let token = pages.token(&nonce);
        assert!(pages.check_token(&nonce, &token));
        assert!(!pages.check_token(&new_nonce(), &token));
        assert!(!pages.check_token(&nonce, ""));
        let other = Pages::new(&crate::config::Config::default().web, random_secret());
        assert!(
            !other.check_token(&nonce, &token),
            "another process's secret"
        );
    }
}
