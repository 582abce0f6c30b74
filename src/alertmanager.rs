//! Webhook payloads: Alertmanager's (version 4, every release since 0.8) and Grafana-managed
//! alerting's webhook contact point (version 1, Alertmanager's fields plus Grafana's own):
//! types, decoding and validation.
//!
//! Decoding is tolerant of what a sender may add (unknown fields are ignored) and strict
//! about what incidentd relies on: every error names the field, so the 400 that the sender
//! logs tells its operator what to fix. `version` is checked before anything else.
//!
//! Alertmanager before 0.19 sends no per-alert `fingerprint`; it is computed from the labels
//! exactly as Alertmanager computes it ([`fingerprint`]), so identity and reconciliation
//! still match what Alertmanager's API reports.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::incident::{grafana_keys, AlertStatus, LabelSet, Timestamp, ValidAlert};

/// A webhook notification as Alertmanager (or Grafana) posts it.
///
/// The fields every Alertmanager has always sent are `Option` where their presence matters:
/// a body without fingerprints is accepted only when it is otherwise complete, as a real
/// Alertmanager before 0.19 sent it (see [`missing_legacy_field`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: AlertStatus,
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub group_labels: Option<LabelSet>,
    #[serde(default)]
    pub common_labels: Option<LabelSet>,
    #[serde(default)]
    pub common_annotations: Option<LabelSet>,
    #[serde(default, rename = "externalURL")]
    pub external_url: Option<String>,
    pub alerts: Vec<Alert>,
    /// Grafana-managed alerting only (with `state`, `title`, `message`).
    #[serde(default)]
    pub org_id: Option<IgnoredAny>,
    /// Grafana-managed alerting only: `alerting` or `ok`.
    #[serde(default)]
    pub state: Option<IgnoredAny>,
}

/// One alert of a notification, as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: AlertStatus,
    #[serde(deserialize_with = "unique_keys")]
    pub labels: LabelSet,
    #[serde(default, deserialize_with = "some_unique_keys")]
    pub annotations: Option<LabelSet>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Absent from Alertmanager before 0.19: computed from the labels.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Grafana-managed alerting only: the values of the rule's queries at the last evaluation.
    /// This and the fields below are read only from Grafana's bodies, and only when they have
    /// the type Grafana gives them (an object of numbers, strings); elsewhere they are
    /// unknown fields like any other.
    #[serde(default)]
    pub values: Option<serde_json::Value>,
    #[serde(default)]
    pub value_string: Option<serde_json::Value>,
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: Option<serde_json::Value>,
    #[serde(default, rename = "panelURL")]
    pub panel_url: Option<serde_json::Value>,
    #[serde(default, rename = "silenceURL")]
    pub silence_url: Option<serde_json::Value>,
    #[serde(default, rename = "imageURL")]
    pub image_url: Option<serde_json::Value>,
}

/// What the decoder needs before anything else: the version, and whether Grafana's fields
/// are there (`version: "1"` means Grafana only with them).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    version: Option<serde_json::Value>,
    #[serde(default)]
    org_id: Option<IgnoredAny>,
    #[serde(default)]
    state: Option<IgnoredAny>,
}

/// Who sent a notification, as the body tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Alertmanager's webhook, version 4.
    Alertmanager,
    /// Grafana-managed alerting's webhook contact point, version 1.
    Grafana,
}

/// A label or annotation map in which a name appears twice is malformed (Prometheus never
/// sends one); taking either value silently would hide the problem.
fn unique_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LabelSet, D::Error> {
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = LabelSet;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of names to string values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<LabelSet, A::Error> {
            let mut out = LabelSet::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!("duplicate name {k:?}")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

/// [`unique_keys`] for a field whose absence matters.
fn some_unique_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LabelSet>, D::Error> {
    unique_keys(d).map(Some)
}

/// A validated notification, ready for correlation.
#[derive(Debug, Clone)]
pub struct ValidNotification {
    pub sender: Sender,
    pub receiver: String,
    pub status: AlertStatus,
    pub group_key: String,
    pub external_url: String,
    pub truncated_alerts: u64,
    pub alerts: Vec<ValidAlert>,
}

/// Why a payload was refused. Each message names the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The body is not JSON, or a field has the wrong type or is missing.
    #[error("{0}")]
    Decode(String),
    /// `version` is neither Alertmanager's "4" nor Grafana's "1" (with Grafana's fields).
    #[error("version: unsupported webhook payload version {0:?}, expected \"4\" (Alertmanager 0.8 and later) or \"1\" with orgId and state (Grafana-managed alerting)")]
    Version(String),
    /// A field's value is out of bounds (times, empty fingerprints, ...).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// The earliest and latest times incidentd accepts: anything else is a clock or encoding bug.
const MIN_YEAR: i32 = 1970;
const MAX_YEAR: i32 = 9999;

/// Decode and validate a webhook body.
pub fn decode(body: &[u8]) -> Result<ValidNotification, PayloadError> {
    // The common case decodes directly; only a failure pays for a second look (the version
    // first, then the field path of the error).
    let notification: Notification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(plain) => {
            // Valid JSON that is not a valid notification: the version decides first (for an
            // object: serde would also read a struct from an array).
            let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            if plain.is_data() && object {
                if let Ok(head) = serde_json::from_slice::<Head>(body) {
                    sender(
                        head.version.as_ref(),
                        head.org_id.is_some() || head.state.is_some(),
                    )?;
                }
            }
            let de = &mut serde_json::Deserializer::from_slice(body);
            return Err(PayloadError::Decode(
                match serde_path_to_error::deserialize::<_, Notification>(de) {
                    Err(e) => json_error(e, "payload"),
                    Ok(_) => format!("invalid JSON payload: {plain}"),
                },
            ));
        }
    };
    validate(notification)
}

/// Which sender a body's `version` (and the presence of Grafana's fields) says it is from.
fn sender(
    version: Option<&serde_json::Value>,
    grafana_fields: bool,
) -> Result<Sender, PayloadError> {
    match version {
        None => Err(PayloadError::Invalid {
            field: "version".into(),
            reason: "missing (Alertmanager sends \"4\", Grafana-managed alerting \"1\")".into(),
        }),
        Some(serde_json::Value::String(v)) => version_sender(v, grafana_fields),
        Some(other) => Err(PayloadError::Invalid {
            field: "version".into(),
            reason: format!("must be a string such as \"4\", got {other}"),
        }),
    }
}

fn version_sender(version: &str, grafana_fields: bool) -> Result<Sender, PayloadError> {
    match version {
        "4" => Ok(Sender::Alertmanager),
        "1" if grafana_fields => Ok(Sender::Grafana),
        v => Err(PayloadError::Version(v.to_string())),
    }
}

/// A JSON decoding error as a message: syntax errors say so; data errors name the field.
pub fn json_error(e: serde_path_to_error::Error<serde_json::Error>, what: &str) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if !inner.is_data() {
        format!("invalid JSON {what}: {inner}")
    } else if path.is_empty() || path == "." {
        inner.to_string()
    } else {
        format!("{path}: {inner}")
    }
}

/// Alertmanager's fingerprint of a label set, as its API and webhooks (0.19 and later) show
/// it: prometheus/common's `model.LabelSet.Fingerprint()`, FNV-1a 64 over the label names in
/// byte order, each name and value followed by the separator byte 0xff, written as
/// `Fingerprint.String()` does (`%016x`). The empty set hashes to FNV's offset basis.
pub fn fingerprint(labels: &LabelSet) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    const SEPARATOR: u8 = 0xff;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // A BTreeMap of Strings iterates in byte order, as Go's sort of label names.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[SEPARATOR]);
        add(value.as_bytes());
        add(&[SEPARATOR]);
    }
    format!("{h:016x}")
}

/// The first field that every Alertmanager since 0.8 has sent and this body lacks, if any.
/// A body without fingerprints is taken for a real one from before 0.19 (whose fingerprints
/// are computed) only when it is otherwise complete; a hand-written body that lacks them is
/// refused instead of given an identity it never had.
fn missing_legacy_field(n: &Notification) -> Option<String> {
    let top = [
        ("receiver", n.receiver.is_none()),
        ("groupLabels", n.group_labels.is_none()),
        ("commonLabels", n.common_labels.is_none()),
        ("commonAnnotations", n.common_annotations.is_none()),
        ("externalURL", n.external_url.is_none()),
    ];
    if let Some((name, _)) = top.iter().find(|(_, missing)| *missing) {
        return Some(name.to_string());
    }
    n.alerts.iter().enumerate().find_map(|(i, a)| {
        [
            ("annotations", a.annotations.is_none()),
            ("endsAt", a.ends_at.is_none()),
            ("generatorURL", a.generator_url.is_none()),
        ]
        .iter()
        .find(|(_, missing)| *missing)
        .map(|(name, _)| format!("alerts[{i}].{name}"))
    })
}

fn validate(n: Notification) -> Result<ValidNotification, PayloadError> {
    let sender = version_sender(&n.version, n.org_id.is_some() || n.state.is_some())?;
    let legacy_gap = if n.alerts.iter().any(|a| a.fingerprint.is_none()) {
        missing_legacy_field(&n)
    } else {
        None
    };
    let mut alerts = Vec::with_capacity(n.alerts.len());
    for (i, a) in n.alerts.into_iter().enumerate() {
        alerts.push(validate_alert(i, a, sender, legacy_gap.as_deref())?);
    }
    Ok(ValidNotification {
        sender,
        receiver: n.receiver.unwrap_or_default(),
        status: n.status,
        group_key: n.group_key,
        external_url: n.external_url.unwrap_or_default(),
        truncated_alerts: n.truncated_alerts,
        alerts,
    })
}

fn invalid(i: usize, field: &str, reason: impl Into<String>) -> PayloadError {
    PayloadError::Invalid {
        field: format!("alerts[{i}].{field}"),
        reason: reason.into(),
    }
}

fn validate_alert(
    i: usize,
    a: Alert,
    sender: Sender,
    legacy_gap: Option<&str>,
) -> Result<ValidAlert, PayloadError> {
    if a.labels.is_empty() {
        return Err(invalid(i, "labels", "an alert needs at least one label"));
    }
    let fingerprint = match a.fingerprint {
        Some(f) => {
            if f.trim().is_empty() {
                return Err(invalid(i, "fingerprint", "must not be empty"));
            }
            if f.len() > 128 {
                return Err(invalid(i, "fingerprint", "longer than 128 characters"));
            }
            f
        }
        None => match legacy_gap {
            None => fingerprint(&a.labels),
            Some(gap) => {
                return Err(invalid(
                    i,
                    "fingerprint",
                    format!(
                        "missing; only a complete body from Alertmanager before 0.19 may omit it, \
                         and this one also lacks {gap}, which every Alertmanager sends"
                    ),
                ))
            }
        },
    };
    let starts_at = parse_time(&a.starts_at)
        .map_err(|r| invalid(i, "startsAt", r))?
        .ok_or_else(|| invalid(i, "startsAt", "must be set (got the zero time)"))?;
    let ends_at = match &a.ends_at {
        None => None,
        Some(s) => parse_time(s).map_err(|r| invalid(i, "endsAt", r))?,
    };
    let ends_at = match a.status {
        AlertStatus::Firing => None,
        AlertStatus::Resolved => {
            let end =
                ends_at.ok_or_else(|| invalid(i, "endsAt", "a resolved alert needs endsAt"))?;
            if end < starts_at {
                return Err(invalid(
                    i,
                    "endsAt",
                    format!(
                        "{} is before startsAt {}",
                        crate::time::rfc3339(end),
                        crate::time::rfc3339(starts_at)
                    ),
                ));
            }
            Some(end)
        }
    };
    let alertname = a
        .labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| format!("alert {fingerprint}"));
    let mut annotations = a.annotations.unwrap_or_default();
    if sender == Sender::Grafana {
        let values = match a.values {
            Some(serde_json::Value::Object(v)) if !v.is_empty() => {
                // By name, as Grafana's own message lists them.
                let sorted: BTreeMap<&String, &serde_json::Value> = v.iter().collect();
                Some(
                    sorted
                        .into_iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => format!("{k}={s}"),
                            other => format!("{k}={other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }
            _ => None,
        };
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let extra = [
            (grafana_keys::VALUES, values),
            (grafana_keys::VALUE_STRING, text(a.value_string)),
            (grafana_keys::DASHBOARD_URL, text(a.dashboard_url)),
            (grafana_keys::PANEL_URL, text(a.panel_url)),
            (grafana_keys::SILENCE_URL, text(a.silence_url)),
            (grafana_keys::IMAGE_URL, text(a.image_url)),
        ];
        for (key, value) in extra {
            // Empty fields (Grafana sends `"dashboardURL": ""`) say nothing; an annotation
            // the sender itself named so is kept as sent.
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                annotations.entry(key.to_string()).or_insert(v);
            }
        }
    }
    Ok(ValidAlert {
        status: a.status,
        alertname,
        labels: a.labels,
        annotations,
        starts_at,
        ends_at,
        generator_url: a.generator_url.unwrap_or_default(),
        fingerprint,
    })
}

/// Parse an RFC 3339 time as Go writes it. `Ok(None)` is Go's zero time (`0001-01-01T00:00:00Z`),
/// which Alertmanager uses for "not set".
///
/// Times are truncated to microseconds, the precision the store keeps: otherwise two
/// `startsAt` a few nanoseconds apart would be two occurrences to correlation but one row to
/// the store, and what correlation computed would differ from what reads back.
pub fn parse_time(s: &str) -> Result<Option<Timestamp>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("invalid RFC 3339 time {s:?}: {e}"))?
        .with_timezone(&Utc)
        .trunc_subsecs(6);
    if t.year() <= 1 {
        return Ok(None);
    }
    if !(MIN_YEAR..=MAX_YEAR).contains(&t.year()) {
        return Err(format!("time {s:?} is outside {MIN_YEAR}..{MAX_YEAR}"));
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRING: &str = include_str!(
        "../tests/fixtures/scenario-single/webhooks/01-firing-DatabaseConnectionPoolHigh.json"
    );

    #[test]
    fn a_real_alertmanager_payload_decodes() {
        let n = decode(FIRING.as_bytes()).unwrap();
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.alertname, "DatabaseConnectionPoolHigh");
        assert_eq!(a.fingerprint, "f359ea1a0f5279b1");
        assert_eq!(
            crate::time::rfc3339(a.starts_at),
            "2026-11-23T02:26:28.738Z"
        );
        assert_eq!(
            a.ends_at, None,
            "the zero endsAt of a firing alert means unset"
        );
    }

    #[test]
    fn times_keep_microseconds_the_precision_the_store_keeps() {
        // Go writes nanoseconds; the store keeps microseconds. Truncated here, the incident
        // correlation computes is the one that reads back (found by the `store` fuzz target).
        let nanos = FIRING.replace("02:26:28.738Z", "02:26:28.738123456Z");
        let a = &decode(nanos.as_bytes()).unwrap().alerts[0];
        assert_eq!(
            crate::time::rfc3339(a.starts_at),
            "2026-11-23T02:26:28.738123Z"
        );
        assert_eq!(
            parse_time("2026-11-23T02:26:28.999999999+01:00").unwrap(),
            Some("2026-11-23T01:26:28.999999Z".parse().unwrap())
        );
    }

    #[test]
    fn unknown_future_fields_do_not_break_decoding() {
        let mut v: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        v["notification_reason"] = "repeat".into();
        v["routeLabels"] = serde_json::json!({"team": "payments"});
        v["alerts"][0]["silencedBy"] = serde_json::json!([]);
        assert!(decode(v.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let mut v: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        v["alerts"][0]["startsAt"] = "yesterday".into();
        let e = decode(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(
            e.starts_with("alerts[0].startsAt: invalid RFC 3339 time"),
            "{e}"
        );

        let mut v: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        v["version"] = "3".into();
        let e = decode(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("version: unsupported"), "{e}");
    }

    fn without(body: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
        edit(&mut v);
        v.to_string().into_bytes()
    }

    fn remove(v: &mut serde_json::Value, field: &str) {
        v.as_object_mut().unwrap().remove(field);
    }

    #[test]
    fn the_version_is_checked_before_anything_else() {
        // Version 3 (Alertmanager before 0.7) has no fingerprints and a numeric groupKey:
        // the refusal names the version, not what follows from it.
        let body = without(FIRING, |v| {
            v["version"] = "3".into();
            v["groupKey"] = 42.into();
            remove(&mut v["alerts"][0], "fingerprint");
            remove(&mut v["alerts"][0], "status");
        });
        let e = decode(&body).unwrap_err().to_string();
        assert!(
            e.starts_with("version: unsupported webhook payload version \"3\""),
            "{e}"
        );

        let e = decode(&without(FIRING, |v| remove(v, "version"))).unwrap_err();
        assert!(e.to_string().starts_with("version: missing"), "{e}");
        let e = decode(&without(FIRING, |v| v["version"] = 4.into())).unwrap_err();
        assert!(
            e.to_string().starts_with("version: must be a string"),
            "{e}"
        );
        let e = decode(&without(FIRING, |v| {
            remove(v, "version");
            remove(v, "groupKey");
        }))
        .unwrap_err();
        assert!(e.to_string().starts_with("version: "), "{e}");
        // Not JSON at all: that is the error, whatever the version.
        let e = decode(b"{\"version\": \"4\", <string>}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid JSON payload"), "{e}");
    }

    #[test]
    fn version_1_is_grafana_only_with_grafana_fields() {
        let plain = without(FIRING, |v| v["version"] = "1".into());
        let e = decode(&plain).unwrap_err().to_string();
        assert!(
            e.starts_with("version: unsupported webhook payload version \"1\""),
            "{e}"
        );

        let grafana = without(FIRING, |v| {
            v["version"] = "1".into();
            v["orgId"] = 1.into();
            v["state"] = "alerting".into();
            let a = &mut v["alerts"][0];
            a["values"] = serde_json::json!({"B": 44.23943737541908, "C": 1});
            a["valueString"] = "[ var='B' value=44.2 ]".into();
            a["dashboardURL"] = "https://grafana/d/x".into();
            a["panelURL"] = "".into();
            a["silenceURL"] = "https://grafana/silence".into();
        });
        let n = decode(&grafana).unwrap();
        assert_eq!(n.sender, Sender::Grafana);
        let ann = &n.alerts[0].annotations;
        assert_eq!(ann[grafana_keys::VALUES], "B=44.23943737541908, C=1");
        assert_eq!(ann[grafana_keys::VALUE_STRING], "[ var='B' value=44.2 ]");
        assert_eq!(ann[grafana_keys::DASHBOARD_URL], "https://grafana/d/x");
        assert_eq!(ann[grafana_keys::SILENCE_URL], "https://grafana/silence");
        assert!(
            !ann.contains_key(grafana_keys::PANEL_URL),
            "empty fields say nothing"
        );
        assert_eq!(n.alerts[0].fingerprint, "f359ea1a0f5279b1", "kept as sent");

        // The same fields on an Alertmanager body are not Alertmanager's: not kept.
        let am = without(&String::from_utf8(grafana).unwrap(), |v| {
            v["version"] = "4".into();
        });
        let n = decode(&am).unwrap();
        assert_eq!(n.sender, Sender::Alertmanager);
        assert!(!n.alerts[0]
            .annotations
            .keys()
            .any(|k| k.starts_with("grafana.")));
        let odd = without(FIRING, |v| {
            v["alerts"][0]["values"] = serde_json::json!([1, 2]);
            v["alerts"][0]["panelURL"] = 7.into();
        });
        assert!(
            decode(&odd).is_ok(),
            "unknown fields to Alertmanager's bodies"
        );
    }

    #[test]
    fn fingerprints_are_alertmanagers() {
        let labels = |pairs: &[(&str, &str)]| -> LabelSet {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // The empty set is FNV-1a's offset basis, as prometheus/common's emptyLabelSignature.
        assert_eq!(fingerprint(&LabelSet::new()), "cbf29ce484222325");
        // What the real Alertmanager reported for this label set.
        let n = decode(FIRING.as_bytes()).unwrap();
        assert_eq!(fingerprint(&n.alerts[0].labels), "f359ea1a0f5279b1");
        // Byte order of names, not insertion order, and the separator keeps
        // {a="bc"} apart from {ab="c"}.
        assert_ne!(
            fingerprint(&labels(&[("a", "bc")])),
            fingerprint(&labels(&[("ab", "c")]))
        );
    }

    /// Every alert a real Alertmanager 0.25 reported, in its webhooks and in `/api/v2/alerts`:
    /// the fingerprint computed from the labels is the one it reported.
    #[test]
    fn computed_fingerprints_match_a_real_alertmanagers() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-single");
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("webhooks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with("index.json"))
            .collect();
        files.sort();
        let mut checked = 0;
        for path in &files {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            checked += check_fingerprints(&v["alerts"], &path.display().to_string());
        }
        for phase in ["alertmanager-peak", "alertmanager-recovered"] {
            let path = dir.join(phase).join("am1-api-v2-alerts.json");
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            checked += check_fingerprints(&v, &path.display().to_string());
        }
        assert!(checked >= 6, "only {checked} alerts checked");
    }

    /// Asserts that each alert's `fingerprint` is the one computed from its `labels`.
    fn check_fingerprints(alerts: &serde_json::Value, what: &str) -> usize {
        let alerts = alerts
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no alerts"));
        for (i, a) in alerts.iter().enumerate() {
            let labels: LabelSet = serde_json::from_value(a["labels"].clone()).unwrap();
            assert_eq!(
                fingerprint(&labels),
                a["fingerprint"].as_str().unwrap(),
                "{what} alerts[{i}]"
            );
        }
        alerts.len()
    }

    #[test]
    fn a_legacy_body_without_fingerprints_gets_alertmanagers() {
        let body = without(FIRING, |v| remove(&mut v["alerts"][0], "fingerprint"));
        let n = decode(&body).unwrap();
        assert_eq!(n.alerts[0].fingerprint, "f359ea1a0f5279b1");
    }

    #[test]
    fn a_body_without_fingerprints_must_otherwise_be_complete() {
        // Every Alertmanager sends these; a hand-written body that lacks one and its
        // fingerprints is not given an identity Alertmanager never gave it.
        for (field, top) in [
            ("externalURL", true),
            ("commonLabels", true),
            ("receiver", true),
            ("generatorURL", false),
            ("endsAt", false),
            ("annotations", false),
        ] {
            let body = without(FIRING, |v| {
                remove(&mut v["alerts"][0], "fingerprint");
                if top {
                    remove(v, field);
                } else {
                    remove(&mut v["alerts"][0], field);
                }
            });
            let e = decode(&body).unwrap_err().to_string();
            assert!(e.starts_with("alerts[0].fingerprint: missing"), "{e}");
            assert!(e.contains(field), "{e}");
            // With its fingerprint, the same body is accepted as before.
            let body = without(FIRING, |v| {
                if top {
                    remove(v, field);
                } else {
                    remove(&mut v["alerts"][0], field);
                }
            });
            assert!(decode(&body).is_ok(), "{field}");
        }
    }
}
