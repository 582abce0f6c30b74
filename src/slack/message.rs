//! Block Kit messages for one incident: the root message (kept current with
//! `chat.update`), the thread reply for each later event, and the resolve summary.
//!
//! Everything here is pure: the functions take an [`Incident`], the event, the
//! evidence figures known so far and the [`MessageSettings`], and return a
//! [`Message`] ready to be serialised into a `chat.postMessage`, `chat.update` or
//! incoming-webhook body. Every value that comes from labels, annotations or
//! people is escaped (`&`, `<`, `>`), and every text is cut to Block Kit's limits
//! with a visible `…` so that Slack never rejects a message for its size.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::incident::grafana_keys;
use crate::incident::{EventKind, Incident, Occurrence, Status, Timestamp};

/// Block Kit: at most 50 blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Block Kit: a section's `text` holds at most 3,000 characters.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Block Kit: each of a section's `fields` holds at most 2,000 characters.
pub const MAX_FIELD_TEXT: usize = 2000;
/// Block Kit: a section holds at most 10 fields.
pub const MAX_FIELDS: usize = 10;
/// Block Kit: a header's text holds at most 150 characters.
pub const MAX_HEADER_TEXT: usize = 150;
/// Block Kit: a button's text holds at most 75 characters.
pub const MAX_BUTTON_TEXT: usize = 75;
/// Block Kit: a button's `url` holds at most 3,000 characters.
pub const MAX_BUTTON_URL: usize = 3000;
/// Block Kit: a context block holds at most 10 elements.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Slack truncates a message's top-level `text` well past this; 4,000 is what it
/// recommends for notifications and keeps `msg_too_long` away.
pub const MAX_FALLBACK_TEXT: usize = 4000;
/// The marker that shows a text was cut.
pub const TRUNCATION_MARKER: char = '…';

/// `action_id` of the root message's "Acknowledge" button; its `value` is the incident id.
pub const ACK_ACTION_ID: &str = "incidentd_ack";
/// `action_id` of the link button to the post-mortem draft. Slack still sends an
/// interaction for link buttons; the interaction handler answers it and does nothing.
pub const DRAFT_ACTION_ID: &str = "incidentd_postmortem";
/// `action_id` of the link button to Grafana's new-silence page for the incident's firing
/// Grafana-managed alert (answered and ignored, like the draft's).
pub const SILENCE_ACTION_ID: &str = "incidentd_silence";

/// Root messages list at most this many alerts one by one; the rest are counted,
/// so that an incident with hundreds of alerts stays under [`MAX_BLOCKS`].
const MAX_ALERT_BLOCKS: usize = 20;

/// What happened to an incident that Slack should hear about. Stored in the job
/// table (serde), delivered in order per incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SlackEvent {
    /// The incident opened: post the root message.
    Opened,
    /// An alert (by fingerprint) joined the incident.
    AlertJoined { fingerprint: String },
    /// The incident's severity changed.
    SeverityChanged {
        from: Option<String>,
        to: Option<String>,
    },
    /// Someone acknowledged the incident (API, CLI or the Slack button).
    Acknowledged { by: String },
    /// Someone added a note.
    Note { by: String, text: String },
    /// An alert fired again after the incident had resolved.
    Reopened,
    /// The incident resolved: the thread gets the resolve summary.
    Resolved,
    /// New evidence figures arrived (often minutes after the resolve): the root message is
    /// brought up to date, with no reply of its own.
    EvidenceUpdated,
}

impl SlackEvent {
    /// Whether the event is told as a reply in the thread (the others only post or update
    /// the root message).
    pub fn has_reply(&self) -> bool {
        !matches!(self, SlackEvent::Opened | SlackEvent::EvidenceUpdated)
    }
}

impl SlackEvent {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SlackEvent::Opened => "opened",
            SlackEvent::AlertJoined { .. } => "alert_joined",
            SlackEvent::SeverityChanged { .. } => "severity_changed",
            SlackEvent::Acknowledged { .. } => "acknowledged",
            SlackEvent::Note { .. } => "note",
            SlackEvent::Reopened => "reopened",
            SlackEvent::Resolved => "resolved",
            SlackEvent::EvidenceUpdated => "evidence_updated",
        }
    }
}

/// One metric's figures from the evidence, already formatted with their unit
/// (e.g. `0.2%` → `38.1%`). Empty evidence simply leaves the figures out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceFigure {
    /// What was measured, e.g. `5xx error ratio`.
    pub metric: String,
    /// Typical value before the incident.
    pub baseline: String,
    /// Worst value during the incident (so far, while it is open).
    pub peak: String,
    /// What the last figure is: the value now (open), at resolution (only from data after
    /// the resolve), or not measured yet. `None` says nothing.
    #[serde(default)]
    pub last: Option<LastFigure>,
}

/// The last figure of a metric, saying what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LastFigure {
    /// The incident is open: the value at `at`.
    Now { value: String, at: Timestamp },
    /// From data at or after the resolve.
    AtResolution { value: String },
    /// Resolved, but the data after the resolve is collected at `due`.
    NotMeasuredYet { due: Option<Timestamp> },
}

/// How messages are rendered: the zone times are shown in, and the base of links.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSettings {
    /// Zone for every time shown (always with the date).
    pub timezone: Tz,
    /// `web.external_url`: links to an incident are its page, `<external_url>incidents/<ID>`.
    pub external_url: String,
    /// Show the "Acknowledge" button on open incidents. Needs the interactivity
    /// request URL and signing secret set up (bot-token mode).
    pub ack_button: bool,
}

impl MessageSettings {
    /// The incident's page, which shows the stored post-mortem draft (the same version
    /// whichever replica answers it) with a download of its Markdown.
    pub fn draft_url(&self, incident_id: &str) -> String {
        let base = self.external_url.trim_end_matches('/');
        format!("{base}/incidents/{incident_id}")
    }
}

/// A Block Kit text object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Text {
    PlainText { text: String, emoji: bool },
    Mrkdwn { text: String },
}

impl Text {
    fn plain(text: String, max: usize) -> Text {
        Text::PlainText {
            text: truncate(&text, max),
            emoji: true,
        }
    }

    fn mrkdwn(text: String, max: usize) -> Text {
        Text::Mrkdwn {
            text: truncate(&text, max),
        }
    }

    /// The text as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Text::PlainText { text, .. } | Text::Mrkdwn { text } => text,
        }
    }
}

/// A Block Kit button element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Button {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: Text,
    pub action_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<&'static str>,
}

/// The Block Kit blocks incidentd uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Header {
        text: Text,
    },
    Section {
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<Text>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fields: Vec<Text>,
    },
    Context {
        elements: Vec<Text>,
    },
    Actions {
        block_id: &'static str,
        elements: Vec<Button>,
    },
    Divider,
}

impl Block {
    fn section(text: String) -> Block {
        Block::Section {
            text: Some(Text::mrkdwn(text, MAX_SECTION_TEXT)),
            fields: Vec::new(),
        }
    }

    fn fields(fields: Vec<String>) -> Block {
        Block::Section {
            text: None,
            fields: fields
                .into_iter()
                .take(MAX_FIELDS)
                .map(|f| Text::mrkdwn(f, MAX_FIELD_TEXT))
                .collect(),
        }
    }

    fn context(text: String) -> Block {
        Block::Context {
            elements: vec![Text::mrkdwn(text, MAX_SECTION_TEXT)],
        }
    }
}

/// A message: Block Kit blocks and the plain `text` fallback that notifications,
/// screen readers and old clients show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Block>,
}

impl Message {
    fn new(text: String, mut blocks: Vec<Block>) -> Message {
        if blocks.len() > MAX_BLOCKS {
            // Builders already bound their lists; this keeps any future growth legal.
            let dropped = blocks.len() - (MAX_BLOCKS - 1);
            blocks.truncate(MAX_BLOCKS - 1);
            blocks.push(Block::context(format!(
                "{TRUNCATION_MARKER} {dropped} more blocks not shown"
            )));
        }
        Message {
            text: truncate(&text, MAX_FALLBACK_TEXT),
            blocks,
        }
    }
}

/// Escapes Slack's three control characters. Every value from labels,
/// annotations or people goes through here before it is put in a message.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A link `<url|label>`. The URL is escaped, and `|` in it percent-encoded,
/// so that an annotation cannot close the link early or inject another.
fn link(url: &str, label: &str) -> String {
    let url = escape(url).replace('|', "%7C");
    format!("<{url}|{}>", escape(label).replace('|', "¦"))
}

/// Cuts an (already escaped) text to at most `max` characters, ending with `…`.
/// It never cuts inside an entity (`&amp;`) or a `<…>` control sequence, so a
/// cut text still renders cleanly.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let mut cut: String = s.chars().take(keep).collect();
    if let Some(amp) = cut.rfind('&') {
        if !cut[amp..].contains(';') {
            cut.truncate(amp);
        }
    }
    if let Some(open) = cut.rfind('<') {
        if !cut[open..].contains('>') {
            cut.truncate(open);
        }
    }
    cut.push(TRUNCATION_MARKER);
    cut
}

/// A time in the configured zone, always with its date: `2026-11-23 02:26:28 UTC`.
pub fn format_time(t: Timestamp, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A duration as people write it: `45s`, `2m 15s`, `1h 3m`, `2d 4h`.
pub use crate::time::human_duration as format_duration;

fn status_emoji(status: Status) -> &'static str {
    match status {
        Status::Open => ":red_circle:",
        Status::Acknowledged => ":large_yellow_circle:",
        Status::Resolved => ":white_check_mark:",
    }
}

fn status_label(incident: &Incident, tz: Tz) -> String {
    match incident.status {
        Status::Open => "Open".to_string(),
        // Who and when go in their own field, kept after the incident resolves.
        Status::Acknowledged => "Acknowledged".to_string(),
        Status::Resolved => match incident.resolved_at {
            Some(at) => format!("Resolved {}", format_time(at, tz)),
            None => "Resolved".to_string(),
        },
    }
}

fn or_unknown(v: Option<&str>) -> String {
    v.map(escape).unwrap_or_else(|| "unknown".to_string())
}

fn impact_method_note(incident: &Incident) -> &'static str {
    match incident.impact_start_method {
        crate::incident::ImpactMethod::RuleReevaluation => "from the rule's expression",
        crate::incident::ImpactMethod::StartsAtMinusFor => "startsAt − for",
        crate::incident::ImpactMethod::StartsAt => "when the alert fired",
    }
}

fn annotation<'a>(o: &'a Occurrence, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| o.annotations.get(*n))
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// The silence link Grafana sent with a firing Grafana-managed alert (its new-silence page,
/// with the alert's labels as matchers). Alertmanager's alerts carry none.
fn silence_url(o: &Occurrence) -> Option<&str> {
    if o.status != crate::incident::AlertStatus::Firing {
        return None;
    }
    annotation(o, &[grafana_keys::SILENCE_URL]).map(str::trim)
}

/// One alert as mrkdwn: name, severity, state, summary, runbook and dashboard links, and for
/// Grafana-managed alerts Grafana's panel and (while firing) silence links.
fn alert_text(o: &Occurrence, tz: Tz) -> String {
    let mut text = format!(
        "{} *{}*",
        match o.status {
            crate::incident::AlertStatus::Firing => ":fire:",
            crate::incident::AlertStatus::Resolved => ":white_check_mark:",
        },
        escape(&o.alertname)
    );
    if let Some(sev) = o.severity() {
        text.push_str(&format!(" · {}", escape(sev)));
    }
    match o.ends_at {
        Some(end) if o.status == crate::incident::AlertStatus::Resolved => {
            text.push_str(&format!(" · resolved {}", format_time(end, tz)))
        }
        _ => text.push_str(&format!(" · firing since {}", format_time(o.starts_at, tz))),
    }
    if let Some(summary) = annotation(o, &["summary", "message"]) {
        text.push('\n');
        text.push_str(&escape(summary));
    }
    let mut links = Vec::new();
    if let Some(url) = annotation(o, &["runbook_url", "runbook"]) {
        links.push(link(url, "Runbook"));
    }
    if let Some(url) = annotation(
        o,
        &[
            "dashboard_url",
            "dashboard",
            "grafana_url",
            grafana_keys::DASHBOARD_URL,
        ],
    ) {
        links.push(link(url, "Dashboard"));
    }
    if let Some(url) = annotation(o, &[grafana_keys::PANEL_URL]) {
        links.push(link(url, "Panel"));
    }
    if let Some(url) = silence_url(o) {
        links.push(link(url, "Silence"));
    }
    if !links.is_empty() {
        text.push('\n');
        text.push_str(&links.join(" · "));
    }
    text
}

fn evidence_lines(evidence: &[EvidenceFigure], tz: Tz) -> String {
    let hhmm = |at: Timestamp| at.with_timezone(&tz).format("%H:%M").to_string();
    evidence
        .iter()
        .map(|f| {
            let last = match &f.last {
                Some(LastFigure::Now { value, at }) => {
                    format!(" (now {}, {} still firing)", escape(value), hhmm(*at))
                }
                Some(LastFigure::AtResolution { value }) => {
                    format!(" (at resolution {})", escape(value))
                }
                Some(LastFigure::NotMeasuredYet { due: Some(d) }) => format!(
                    " (at resolution: not measured yet, collected at {})",
                    hhmm(*d)
                ),
                Some(LastFigure::NotMeasuredYet { due: None }) => {
                    " (at resolution: not measured yet)".to_string()
                }
                None => String::new(),
            };
            format!(
                "• *{}*: {} → {}{last}",
                escape(&f.metric),
                escape(&f.baseline),
                escape(&f.peak)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn header_text(incident: &Incident) -> String {
    format!(
        "{} {}: {}",
        status_emoji(incident.status),
        escape(&incident.id),
        escape(&incident.title)
    )
}

/// The root message: the incident as it stands now. Posted with
/// `chat.postMessage` when the incident opens and replaced with `chat.update`
/// after every later event. The "Acknowledge" button shows only while the
/// incident is open (and [`MessageSettings::ack_button`] is set).
pub fn root_message(
    incident: &Incident,
    evidence: &[EvidenceFigure],
    settings: &MessageSettings,
) -> Message {
    let tz = settings.timezone;
    let mut blocks = vec![Block::Header {
        text: Text::plain(header_text(incident), MAX_HEADER_TEXT),
    }];

    let mut fields = vec![
        format!(
            "*Status*\n{} {}",
            status_emoji(incident.status),
            status_label(incident, tz)
        ),
        format!("*Severity*\n{}", or_unknown(incident.severity.as_deref())),
        format!("*Service*\n{}", or_unknown(incident.service.as_deref())),
        match incident.impact_start {
            Some(t) => format!(
                "*Impact start*\n{} ({})",
                format_time(t, tz),
                impact_method_note(incident)
            ),
            None => "*Impact start*\nunknown".to_string(),
        },
        format!("*Detected*\n{}", format_time(incident.detected_at, tz)),
        match incident.duration_seconds() {
            Some(d) => format!("*Duration*\n{}", format_duration(d)),
            None => "*Duration*\nongoing".to_string(),
        },
    ];
    if let (Some(by), Some(at)) = (&incident.acknowledged_by, incident.acknowledged_at) {
        fields.push(format!(
            "*Acknowledged*\n{} by {}",
            format_time(at, tz),
            escape(by)
        ));
    }
    blocks.push(Block::fields(fields));

    blocks.push(Block::section(format!(
        "*Alerts ({})*",
        incident.alerts.len()
    )));
    for o in incident.alerts.iter().take(MAX_ALERT_BLOCKS) {
        blocks.push(Block::section(alert_text(o, tz)));
    }
    if incident.alerts.len() > MAX_ALERT_BLOCKS {
        blocks.push(Block::context(format!(
            "{TRUNCATION_MARKER} and {} more alerts",
            incident.alerts.len() - MAX_ALERT_BLOCKS
        )));
    }

    if !evidence.is_empty() {
        blocks.push(Block::section(format!(
            "*{}*\n{}",
            if incident.status == Status::Resolved {
                "Baseline → peak"
            } else {
                "Baseline → peak so far"
            },
            evidence_lines(evidence, tz)
        )));
    }

    let mut buttons = Vec::new();
    if settings.ack_button && incident.status == Status::Open {
        buttons.push(Button {
            kind: "button",
            text: Text::plain("Acknowledge".to_string(), MAX_BUTTON_TEXT),
            action_id: ACK_ACTION_ID,
            value: Some(incident.id.clone()),
            url: None,
            style: Some("primary"),
        });
    }
    buttons.push(Button {
        kind: "button",
        text: Text::plain("Post-mortem draft".to_string(), MAX_BUTTON_TEXT),
        action_id: DRAFT_ACTION_ID,
        value: None,
        url: Some(settings.draft_url(&incident.id)),
        style: None,
    });
    if let Some(url) = silence_button_url(incident) {
        buttons.push(Button {
            kind: "button",
            text: Text::plain("Silence in Grafana".to_string(), MAX_BUTTON_TEXT),
            action_id: SILENCE_ACTION_ID,
            value: None,
            url: Some(url.to_string()),
            style: None,
        });
    }
    blocks.push(Block::Actions {
        block_id: "incidentd_actions",
        elements: buttons,
    });

    let mut context = format!("incidentd · key `{}`", escape(&incident.key));
    if incident.reopen_count > 0 {
        context.push_str(&format!(" · reopened {}×", incident.reopen_count));
    }
    blocks.push(Block::context(context));

    let text = format!(
        "[{}] {} {}: {} ({})",
        incident.status.as_str().to_uppercase(),
        escape(&incident.id),
        or_unknown(incident.severity.as_deref()),
        escape(&incident.title),
        or_unknown(incident.service.as_deref()),
    );
    Message::new(text, blocks)
}

/// The URL of the root message's "Silence in Grafana" button: while the incident is not
/// resolved and every firing alert carries the same silence link (one Grafana alert, or
/// several with the same matchers), so that the button silences what the incident is about.
/// Otherwise each Grafana alert's own "Silence" link is in its line: one button could not say
/// which alert it silences. Only an absolute http(s) URL within Block Kit's limit: Slack
/// refuses the whole message for a bad button URL.
fn silence_button_url(incident: &Incident) -> Option<&str> {
    if incident.status == Status::Resolved {
        return None;
    }
    let mut firing = incident
        .alerts
        .iter()
        .filter(|o| o.status == crate::incident::AlertStatus::Firing);
    let first = silence_url(firing.next()?)?;
    if firing.any(|o| silence_url(o) != Some(first)) {
        return None;
    }
    let absolute = first.starts_with("https://") || first.starts_with("http://");
    (absolute && first.len() <= MAX_BUTTON_URL && !first.contains(char::is_whitespace))
        .then_some(first)
}

/// When the event happened, from the incident's own record.
fn event_time(incident: &Incident, event: &SlackEvent) -> Option<Timestamp> {
    let last = |kind: EventKind| {
        incident
            .timeline
            .iter()
            .rev()
            .find(|e| e.kind == kind)
            .map(|e| e.at)
    };
    match event {
        SlackEvent::Opened => Some(incident.detected_at),
        SlackEvent::AlertJoined { fingerprint } => incident
            .alerts
            .iter()
            .filter(|o| &o.fingerprint == fingerprint)
            .map(|o| o.starts_at)
            .max(),
        SlackEvent::SeverityChanged { .. } => last(EventKind::SeverityChanged),
        SlackEvent::Acknowledged { .. } => incident.acknowledged_at,
        SlackEvent::Note { text, .. } => incident
            .timeline
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::NoteAdded && e.text == *text)
            .map(|e| e.at),
        SlackEvent::Reopened => last(EventKind::Reopened),
        SlackEvent::Resolved => incident.resolved_at,
        SlackEvent::EvidenceUpdated => None,
    }
}

/// The thread reply for an event (the resolve summary for [`SlackEvent::Resolved`]).
/// [`SlackEvent::Opened`] has no reply of its own: it yields the root message.
pub fn event_message(
    incident: &Incident,
    event: &SlackEvent,
    evidence: &[EvidenceFigure],
    settings: &MessageSettings,
) -> Message {
    let tz = settings.timezone;
    let id = escape(&incident.id);
    let (text, body): (String, String) = match event {
        SlackEvent::Opened | SlackEvent::EvidenceUpdated => {
            return root_message(incident, evidence, settings)
        }
        SlackEvent::Resolved => return resolve_summary(incident, evidence, settings),
        SlackEvent::AlertJoined { fingerprint } => {
            // The latest episode of that alert: a fingerprint may fire more than once.
            match incident
                .alerts
                .iter()
                .filter(|o| &o.fingerprint == fingerprint)
                .max_by_key(|o| o.starts_at)
            {
                Some(o) => (
                    format!("{id}: alert {} joined", escape(&o.alertname)),
                    format!(":heavy_plus_sign: Alert joined\n{}", alert_text(o, tz)),
                ),
                None => (
                    format!("{id}: alert {} joined", escape(fingerprint)),
                    format!(":heavy_plus_sign: Alert `{}` joined", escape(fingerprint)),
                ),
            }
        }
        SlackEvent::SeverityChanged { from, to } => {
            let (from, to) = (or_unknown(from.as_deref()), or_unknown(to.as_deref()));
            (
                format!("{id}: severity {from} → {to}"),
                format!(":arrow_up_down: Severity changed from *{from}* to *{to}*"),
            )
        }
        SlackEvent::Acknowledged { by } => {
            let by = escape(by);
            let tta = incident
                .tta_seconds()
                .map(|s| format!(" (TTA {})", format_duration(s)))
                .unwrap_or_default();
            (
                format!("{id}: acknowledged by {by}"),
                format!(":eyes: Acknowledged by *{by}*{tta}"),
            )
        }
        SlackEvent::Note { by, text } => {
            let (by, text) = (escape(by), escape(text));
            (
                format!("{id}: note from {by}: {text}"),
                format!(":memo: Note from *{by}*\n{text}"),
            )
        }
        SlackEvent::Reopened => (
            format!("{id}: reopened"),
            format!(
                ":repeat: Reopened: an alert fired again (reopened {}×)",
                incident.reopen_count.max(1)
            ),
        ),
    };
    let mut blocks = vec![Block::section(body)];
    if let Some(at) = event_time(incident, event) {
        blocks.push(Block::context(format!("at {}", format_time(at, tz))));
    }
    Message::new(text, blocks)
}

/// The resolve summary: duration, TTD, TTA, TTR, baseline → peak, and the link
/// to the post-mortem draft.
pub fn resolve_summary(
    incident: &Incident,
    evidence: &[EvidenceFigure],
    settings: &MessageSettings,
) -> Message {
    let tz = settings.timezone;
    let figure = |v: Option<f64>, missing: &str| {
        v.map(format_duration)
            .unwrap_or_else(|| missing.to_string())
    };
    let duration = figure(incident.duration_seconds(), "unknown");
    let mut blocks = vec![Block::section(format!(
        ":white_check_mark: *{} resolved* after {}\n{}",
        escape(&incident.id),
        duration,
        escape(&incident.title)
    ))];
    let mut fields = vec![
        format!("*Duration*\n{duration}"),
        format!("*TTD*\n{}", figure(incident.ttd_seconds(), "unknown")),
        format!(
            "*TTA*\n{}",
            figure(incident.tta_seconds(), "not acknowledged")
        ),
        format!(
            "*TTR*\n{}",
            match incident.ttr_seconds() {
                Some(s) if s < 0.0 => format!("none: resolved {}", crate::time::since_detection(s)),
                other => figure(other, "unknown"),
            }
        ),
    ];
    // Response milestones people recorded (notes, thread replies, reactions), from
    // detection like TTA; only those recorded, the draft lists the missing ones.
    let m = incident.milestones();
    for (name, milestone) in [
        ("Time to triage", &m.triaged),
        ("Time to identify", &m.identified),
        ("Time to mitigate", &m.mitigated),
    ] {
        if let Some(m) = milestone {
            fields.push(format!(
                "*{name}*\n{} (by {})",
                format_duration(incident.since_detection_seconds(m.at)),
                escape(&m.by)
            ));
        }
    }
    if let Some(at) = incident.resolved_at {
        let by = incident
            .resolved_by
            .as_deref()
            .map(|b| format!(" by {}", escape(b)))
            .unwrap_or_default();
        fields.push(format!("*Resolved*\n{}{by}", format_time(at, tz)));
    }
    blocks.push(Block::fields(fields));
    if !evidence.is_empty() {
        blocks.push(Block::section(format!(
            "*{}*\n{}",
            if incident.status == Status::Resolved {
                "Baseline → peak"
            } else {
                "Baseline → peak so far"
            },
            evidence_lines(evidence, tz)
        )));
    }
    let draft = settings.draft_url(&incident.id);
    blocks.push(Block::section(format!(
        ":memo: {}",
        link(&draft, "Post-mortem draft")
    )));
    let text = format!(
        "{} resolved after {duration}: {} — draft: {}",
        escape(&incident.id),
        escape(&incident.title),
        escape(&draft)
    );
    Message::new(text, blocks)
}

/// The message for incoming-webhook mode, where there are no threads and no
/// updates: the root message when the incident opens, otherwise the event's
/// reply with a line naming the incident first.
pub fn standalone_message(
    incident: &Incident,
    event: &SlackEvent,
    evidence: &[EvidenceFigure],
    settings: &MessageSettings,
) -> Message {
    match event {
        SlackEvent::Opened | SlackEvent::Resolved | SlackEvent::EvidenceUpdated => {
            event_message(incident, event, evidence, settings)
        }
        _ => {
            let reply = event_message(incident, event, evidence, settings);
            let mut blocks = vec![Block::context(format!(
                "*{}* · {} · {}",
                escape(&incident.id),
                escape(&incident.title),
                or_unknown(incident.severity.as_deref())
            ))];
            blocks.extend(reply.blocks);
            Message::new(reply.text, blocks)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_figure_says_whether_its_last_value_is_now_at_resolution_or_not_measured_yet() {
        let at: Timestamp = "2026-11-23T02:26:40Z".parse().expect("time");
        let fig = |last| EvidenceFigure {
            metric: "Pool".into(),
            baseline: "20%".into(),
            peak: "100%".into(),
            last,
        };
        let lines = evidence_lines(
            &[
                fig(Some(LastFigure::Now {
                    value: "97%".into(),
                    at,
                })),
                fig(Some(LastFigure::AtResolution {
                    value: "25%".into(),
                })),
                fig(Some(LastFigure::NotMeasuredYet {
                    due: Some(at + chrono::Duration::minutes(5)),
                })),
                fig(None),
            ],
            Tz::UTC,
        );
        assert_eq!(
            lines,
            "• *Pool*: 20% → 100% (now 97%, 02:26 still firing)\n\
             • *Pool*: 20% → 100% (at resolution 25%)\n\
             • *Pool*: 20% → 100% (at resolution: not measured yet, collected at 02:31)\n\
             • *Pool*: 20% → 100%"
        );
    }
    use crate::incident::{AlertStatus, ImpactMethod, LabelSet, TimelineEvent};

    fn at(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&chrono::Utc)
    }

    fn settings() -> MessageSettings {
        MessageSettings {
            timezone: chrono_tz::UTC,
            external_url: "http://incidentd.example.com:9097/".into(),
            ack_button: true,
        }
    }

    fn alert(name: &str, summary: &str) -> Occurrence {
        let mut labels = LabelSet::new();
        labels.insert("alertname".into(), name.into());
        labels.insert("severity".into(), "critical".into());
        let mut annotations = LabelSet::new();
        annotations.insert("summary".into(), summary.into());
        annotations.insert(
            "runbook_url".into(),
            "https://runbooks.example.com/a?x=1&y=2".into(),
        );
        Occurrence {
            fingerprint: format!("fp-{name}"),
            starts_at: at("2026-11-23T02:26:28Z"),
            ends_at: None,
            status: AlertStatus::Firing,
            alertname: name.into(),
            labels,
            annotations,
            generator_url: String::new(),
            group_key: String::new(),
            first_seen_at: at("2026-11-23T02:26:29Z"),
            last_seen_at: at("2026-11-23T02:26:29Z"),
            resolved_by: None,
        }
    }

    fn incident(title: &str, alerts: Vec<Occurrence>) -> Incident {
        Incident {
            id: "INC-2026-0007".into(),
            key: "service=\"payment-service\"".into(),
            title: title.into(),
            status: Status::Open,
            severity: Some("critical".into()),
            service: Some("payment-service".into()),
            impact_start: Some(at("2026-11-23T02:26:23Z")),
            impact_start_method: ImpactMethod::StartsAtMinusFor,
            fired_at: at("2026-11-23T02:26:28Z"),
            detected_at: at("2026-11-23T02:26:29Z"),
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            reopen_count: 0,
            notifications: Default::default(),
            version: 1,
            alerts,
            timeline: Vec::new(),
        }
    }

    fn all_texts(m: &Message) -> Vec<String> {
        let mut out = vec![m.text.clone()];
        let json = serde_json::to_value(&m.blocks).unwrap();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    if let Some(serde_json::Value::String(t)) = o.get("text") {
                        out.push(t.clone());
                    }
                    o.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&json, &mut out);
        out
    }

    fn ack_buttons(m: &Message) -> Vec<&Button> {
        m.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Actions { elements, .. } => Some(elements),
                _ => None,
            })
            .flatten()
            .filter(|b| b.action_id == ACK_ACTION_ID)
            .collect()
    }

    #[test]
    fn control_characters_from_labels_annotations_and_people_are_escaped() {
        let evil = "<!channel> & <https://evil.example|click>";
        let mut a = alert("Pool<High>", evil);
        a.labels.insert("severity".into(), "crit&cal".into());
        let mut inc = incident(evil, vec![a]);
        inc.service = Some("<svc>".into());
        let s = settings();
        let root = root_message(&inc, &[], &s);
        let note = event_message(
            &inc,
            &SlackEvent::Note {
                by: "<@U123>".into(),
                text: evil.into(),
            },
            &[],
            &s,
        );
        for m in [&root, &note] {
            for text in all_texts(m) {
                assert!(!text.contains("<!channel>"), "unescaped: {text}");
                assert!(!text.contains("<https://evil"), "unescaped: {text}");
                assert!(!text.contains("<@U123>"), "unescaped: {text}");
                assert!(!text.contains("<svc>"), "unescaped: {text}");
            }
        }
        let texts = all_texts(&root).join("\n");
        assert!(texts.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
        assert!(texts.contains("*Pool&lt;High&gt;*"));
        // Our own links stay links; their URLs are escaped inside.
        assert!(texts.contains("<https://runbooks.example.com/a?x=1&amp;y=2|Runbook>"));
        assert!(all_texts(&note)
            .join("\n")
            .contains("Note from *&lt;@U123&gt;*"));
    }

    #[test]
    fn a_link_url_cannot_close_the_link_early() {
        assert_eq!(
            link("https://x.example/?a=|b>c", "Runbook"),
            "<https://x.example/?a=%7Cb&gt;c|Runbook>"
        );
    }

    #[test]
    fn truncation_keeps_the_limit_and_shows_a_marker() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("ééééééé", 4).chars().count(), 4);
    }

    #[test]
    fn truncation_never_cuts_an_entity_or_a_link_in_half() {
        // Cut would land inside "&amp;": the whole entity goes.
        assert_eq!(truncate("abc&amp;def", 6), "abc…");
        assert_eq!(truncate("ab <https://x|y> tail", 8), "ab …");
    }

    #[test]
    fn long_texts_are_cut_to_block_kit_limits_with_a_visible_marker() {
        let long = "x".repeat(5000);
        let mut inc = incident(&"T".repeat(400), vec![alert("A", &long)]);
        inc.acknowledged_by = Some("y".repeat(3000));
        let s = settings();
        let root = root_message(&inc, &[], &s);
        for block in &root.blocks {
            match block {
                Block::Header { text } => {
                    assert_eq!(text.as_str().chars().count(), MAX_HEADER_TEXT);
                    assert!(text.as_str().ends_with('…'));
                }
                Block::Section { text, fields } => {
                    if let Some(t) = text {
                        assert!(t.as_str().chars().count() <= MAX_SECTION_TEXT);
                    }
                    for f in fields {
                        assert!(f.as_str().chars().count() <= MAX_FIELD_TEXT);
                    }
                }
                Block::Actions { elements, .. } => {
                    for b in elements {
                        assert!(b.text.as_str().chars().count() <= MAX_BUTTON_TEXT);
                    }
                }
                _ => {}
            }
        }
        let alert_section = root
            .blocks
            .iter()
            .find_map(|b| match b {
                Block::Section { text: Some(t), .. } if t.as_str().contains("xxx") => Some(t),
                _ => None,
            })
            .expect("alert section");
        assert_eq!(alert_section.as_str().chars().count(), MAX_SECTION_TEXT);
        assert!(alert_section.as_str().ends_with('…'));
        assert!(root.text.chars().count() <= MAX_FALLBACK_TEXT);

        let note = event_message(
            &inc,
            &SlackEvent::Note {
                by: "a".into(),
                text: "n".repeat(10_000),
            },
            &[],
            &s,
        );
        assert!(note.text.chars().count() <= MAX_FALLBACK_TEXT);
        assert!(note.text.ends_with('…'));
    }

    #[test]
    fn an_incident_with_hundreds_of_alerts_stays_under_fifty_blocks() {
        let alerts = (0..200).map(|i| alert(&format!("A{i}"), "s")).collect();
        let root = root_message(&incident("t", alerts), &[], &settings());
        assert!(root.blocks.len() <= MAX_BLOCKS, "{}", root.blocks.len());
        assert!(all_texts(&root)
            .iter()
            .any(|t| t == "… and 180 more alerts"));
        // The button survives the cut.
        assert_eq!(ack_buttons(&root).len(), 1);
    }

    #[test]
    fn the_acknowledge_button_carries_the_incident_id_and_goes_once_acknowledged() {
        let mut inc = incident("t", vec![alert("A", "s")]);
        let s = settings();
        let open = root_message(&inc, &[], &s);
        let buttons = ack_buttons(&open);
        assert_eq!(buttons.len(), 1);
        assert_eq!(buttons[0].value.as_deref(), Some("INC-2026-0007"));

        inc.status = Status::Acknowledged;
        inc.acknowledged_by = Some("alice".into());
        inc.acknowledged_at = Some(at("2026-11-23T02:27:00Z"));
        assert!(ack_buttons(&root_message(&inc, &[], &s)).is_empty());
        inc.status = Status::Resolved;
        assert!(ack_buttons(&root_message(&inc, &[], &s)).is_empty());

        inc.status = Status::Open;
        let no_button = MessageSettings {
            ack_button: false,
            ..s
        };
        assert!(ack_buttons(&root_message(&inc, &[], &no_button)).is_empty());
    }

    #[test]
    fn times_are_shown_in_the_configured_zone_with_their_date() {
        let s = MessageSettings {
            timezone: chrono_tz::Europe::Berlin,
            ..settings()
        };
        let root = root_message(&incident("t", vec![alert("A", "s")]), &[], &s);
        let texts = all_texts(&root).join("\n");
        assert!(
            texts.contains("*Impact start*\n2026-11-23 03:26:23 CET (startsAt − for)"),
            "{texts}"
        );
        assert!(texts.contains("firing since 2026-11-23 03:26:28 CET"));
        assert_eq!(
            format_time(at("2026-12-31T23:30:00Z"), chrono_tz::Asia::Tokyo),
            "2027-01-01 08:30:00 JST"
        );
    }

    #[test]
    fn durations_read_the_way_postmortems_write_them() {
        assert_eq!(format_duration(0.4), "400ms");
        assert_eq!(format_duration(45.0), "45s");
        assert_eq!(format_duration(135.0), "2m 15s");
        assert_eq!(format_duration(3780.0), "1h 3m");
        assert_eq!(format_duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2d 4h");
        assert_eq!(format_duration(-3.0), "-3s");
    }

    #[test]
    fn every_message_has_a_plain_text_fallback() {
        let mut inc = incident("Pool exhausted", vec![alert("A", "s")]);
        inc.timeline.push(TimelineEvent {
            at: at("2026-11-23T02:27:00Z"),
            kind: EventKind::NoteAdded,
            actor: "alice".into(),
            text: "restarted".into(),
        });
        let events = [
            SlackEvent::Opened,
            SlackEvent::AlertJoined {
                fingerprint: "fp-A".into(),
            },
            SlackEvent::AlertJoined {
                fingerprint: "gone".into(),
            },
            SlackEvent::SeverityChanged {
                from: Some("warning".into()),
                to: Some("critical".into()),
            },
            SlackEvent::Acknowledged { by: "alice".into() },
            SlackEvent::Note {
                by: "alice".into(),
                text: "restarted".into(),
            },
            SlackEvent::Reopened,
            SlackEvent::Resolved,
        ];
        for e in &events {
            for m in [
                event_message(&inc, e, &[], &settings()),
                standalone_message(&inc, e, &[], &settings()),
            ] {
                assert!(m.text.contains("INC-2026-0007"), "{e:?}: {}", m.text);
                assert!(!m.blocks.is_empty());
            }
        }
        let note = event_message(&inc, &events[5], &[], &settings());
        assert!(all_texts(&note).contains(&"at 2026-11-23 02:27:00 UTC".to_string()));
    }

    #[test]
    fn webhook_messages_name_the_incident_since_there_is_no_thread() {
        let inc = incident("Pool exhausted", vec![alert("A", "s")]);
        let m = standalone_message(
            &inc,
            &SlackEvent::Acknowledged { by: "alice".into() },
            &[],
            &settings(),
        );
        assert_eq!(
            all_texts(&m)[1],
            "*INC-2026-0007* · Pool exhausted · critical"
        );
    }

    #[test]
    fn events_are_stored_as_tagged_json() {
        let e = SlackEvent::Note {
            by: "alice".into(),
            text: "hi".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"kind":"note","by":"alice","text":"hi"}"#);
        assert_eq!(serde_json::from_str::<SlackEvent>(&json).unwrap(), e);
        assert_eq!(
            serde_json::from_str::<SlackEvent>(r#"{"kind":"opened"}"#).unwrap(),
            SlackEvent::Opened
        );
    }

    #[test]
    fn the_draft_link_joins_the_external_url_with_or_without_a_slash() {
        let mut s = settings();
        assert_eq!(
            s.draft_url("INC-2026-0007"),
            "http://incidentd.example.com:9097/incidents/INC-2026-0007"
        );
        s.external_url = "https://x.example/incidentd".into();
        assert_eq!(
            s.draft_url("INC-1"),
            "https://x.example/incidentd/incidents/INC-1"
        );
    }

    #[test]
    fn a_resolve_that_came_before_detection_gives_no_negative_ttr() {
        let mut inc = incident("Pool", vec![alert("PoolHigh", "Pool")]);
        inc.status = Status::Resolved;
        inc.resolved_at = Some(at("2026-11-23T02:27:02Z"));
        inc.detected_at = at("2026-11-24T04:29:02Z");
        let texts = all_texts(&resolve_summary(&inc, &[], &settings())).join("\n");
        assert!(
            texts.contains("*TTR*\nnone: resolved 1d 2h before detection"),
            "{texts}"
        );
        assert!(!texts.contains("-1d"), "{texts}");
    }

    #[test]
    fn the_resolve_summary_gives_the_milestones_people_recorded() {
        let mut inc = incident("Pool", vec![alert("PoolHigh", "Pool")]);
        inc.status = Status::Resolved;
        inc.detected_at = at("2026-11-23T02:26:29Z");
        inc.resolved_at = Some(at("2026-11-23T02:27:02Z"));
        inc.timeline.push(crate::incident::TimelineEvent {
            at: at("2026-11-23T02:26:48Z"),
            kind: EventKind::SlackMessage,
            actor: "Alice <Martin>".into(),
            text: "mitigated: killed the report query".into(),
        });
        let texts = all_texts(&resolve_summary(&inc, &[], &settings())).join("\n");
        assert!(
            texts.contains("*Time to mitigate*\n19s (by Alice &lt;Martin&gt;)"),
            "{texts}"
        );
        assert!(
            !texts.contains("Time to triage"),
            "only what was recorded: {texts}"
        );
    }

    fn grafana(name: &str, silence: &str) -> Occurrence {
        let mut a = alert(name, "Pool");
        for (k, v) in [
            (grafana_keys::VALUES, "B=0.97, C=1"),
            (grafana_keys::SILENCE_URL, silence),
            (
                grafana_keys::PANEL_URL,
                "https://grafana.example.com/d/p?orgId=1&viewPanel=2",
            ),
        ] {
            a.annotations.insert(k.into(), v.into());
        }
        a
    }

    fn silence_buttons(m: &Message) -> Vec<&Button> {
        m.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Actions { elements, .. } => Some(elements),
                _ => None,
            })
            .flatten()
            .filter(|b| b.action_id == SILENCE_ACTION_ID)
            .collect()
    }

    const SILENCE: &str =
        "https://grafana.example.com/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DPoolHigh";

    #[test]
    fn a_firing_grafana_alert_offers_its_silence_link_and_button() {
        let inc = incident("Pool", vec![grafana("PoolHigh", SILENCE)]);
        let root = root_message(&inc, &[], &settings());
        let buttons = silence_buttons(&root);
        assert_eq!(buttons.len(), 1);
        assert_eq!(buttons[0].url.as_deref(), Some(SILENCE), "the URL as sent");
        assert_eq!(buttons[0].text.as_str(), "Silence in Grafana");
        assert_eq!(buttons[0].value, None);
        let texts = all_texts(&root).join("\n");
        // In the alert's line, escaped like every link.
        assert!(
            texts.contains(&format!("<{}|Silence>", SILENCE.replace('&', "&amp;"))),
            "{texts}"
        );
        assert!(texts.contains("|Panel>"), "{texts}");
        // Every action_id in the block differs (Block Kit requires it).
        let ids: Vec<&str> = root
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Actions { elements, .. } => Some(elements),
                _ => None,
            })
            .flatten()
            .map(|b| b.action_id)
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "{ids:?}");
        // The "alert joined" reply names the link too.
        let joined = event_message(
            &inc,
            &SlackEvent::AlertJoined {
                fingerprint: "fp-PoolHigh".into(),
            },
            &[],
            &settings(),
        );
        assert!(all_texts(&joined).join("\n").contains("|Silence>"));
    }

    #[test]
    fn the_silence_button_goes_when_it_could_not_silence_the_whole_incident() {
        let s = settings();
        // Resolved: nothing to silence.
        let mut inc = incident("Pool", vec![grafana("PoolHigh", SILENCE)]);
        inc.alerts[0].status = AlertStatus::Resolved;
        inc.alerts[0].ends_at = Some(at("2026-11-23T02:27:28Z"));
        inc.status = Status::Resolved;
        inc.resolved_at = inc.alerts[0].ends_at;
        let root = root_message(&inc, &[], &s);
        assert!(silence_buttons(&root).is_empty());
        assert!(!all_texts(&root).join("\n").contains("|Silence>"));

        // Two Grafana alerts with other matchers: a link each, no button.
        let other = format!("{SILENCE}2");
        let inc = incident(
            "Pool",
            vec![grafana("PoolHigh", SILENCE), grafana("PoolHigh2", &other)],
        );
        let root = root_message(&inc, &[], &s);
        assert!(silence_buttons(&root).is_empty());
        assert_eq!(all_texts(&root).join("\n").matches("|Silence>").count(), 2);

        // A Prometheus alert beside it: Grafana's silence would not cover it.
        let inc = incident(
            "Pool",
            vec![grafana("PoolHigh", SILENCE), alert("Latency", "slow")],
        );
        assert!(silence_buttons(&root_message(&inc, &[], &s)).is_empty());

        // A URL Slack would refuse for a button (Grafana sends relative ones without a root
        // URL): the link only.
        let inc = incident(
            "Pool",
            vec![grafana("PoolHigh", "localhost:3000/alerting/silence/new")],
        );
        let root = root_message(&inc, &[], &s);
        assert!(silence_buttons(&root).is_empty());
        assert!(all_texts(&root).join("\n").contains("|Silence>"));
    }

    #[test]
    fn alertmanager_alerts_carry_no_silence_link() {
        let inc = incident("Pool", vec![alert("PoolHigh", "Pool")]);
        let root = root_message(&inc, &[], &settings());
        assert!(silence_buttons(&root).is_empty());
        assert!(!all_texts(&root).join("\n").contains("Silence"));
    }
}
