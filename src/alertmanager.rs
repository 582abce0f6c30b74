//! Alertmanager's webhook payload (version 4): types, decoding and validation.
//!
//! Decoding is tolerant of what Alertmanager may add (unknown fields are ignored) and
//! strict about what incidentd relies on: every error names the field, so the 400 that
//! Alertmanager logs tells its operator what to fix.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::Deserialize;

use crate::incident::{AlertStatus, LabelSet, Timestamp};

/// A webhook notification as Alertmanager posts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: AlertStatus,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: LabelSet,
    #[serde(default)]
    pub common_labels: LabelSet,
    #[serde(default)]
    pub common_annotations: LabelSet,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a notification, as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: AlertStatus,
    #[serde(deserialize_with = "unique_keys")]
    pub labels: LabelSet,
    #[serde(default, deserialize_with = "unique_keys")]
    pub annotations: LabelSet,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
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

/// An alert after validation: times parsed, `endsAt` only where it means something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAlert {
    pub status: AlertStatus,
    pub alertname: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: Timestamp,
    /// Set for resolved alerts only (firing alerts' `endsAt` is Alertmanager's guess).
    pub ends_at: Option<Timestamp>,
    pub generator_url: String,
    pub fingerprint: String,
}

/// A validated notification, ready for correlation.
#[derive(Debug, Clone)]
pub struct ValidNotification {
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
    /// `version` is not "4".
    #[error("version: unsupported webhook payload version {0:?}, expected \"4\"")]
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
    // The common case decodes directly; only a failure pays for tracking the field path.
    let notification: Notification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(plain) => {
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

fn validate(n: Notification) -> Result<ValidNotification, PayloadError> {
    if n.version != "4" {
        return Err(PayloadError::Version(n.version));
    }
    let mut alerts = Vec::with_capacity(n.alerts.len());
    for (i, a) in n.alerts.into_iter().enumerate() {
        alerts.push(validate_alert(i, a)?);
    }
    Ok(ValidNotification {
        receiver: n.receiver,
        status: n.status,
        group_key: n.group_key,
        external_url: n.external_url,
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

fn validate_alert(i: usize, a: Alert) -> Result<ValidAlert, PayloadError> {
    if a.fingerprint.trim().is_empty() {
        return Err(invalid(i, "fingerprint", "must not be empty"));
    }
    if a.fingerprint.len() > 128 {
        return Err(invalid(i, "fingerprint", "longer than 128 characters"));
    }
    if a.labels.is_empty() {
        return Err(invalid(i, "labels", "an alert needs at least one label"));
    }
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
        .unwrap_or_else(|| format!("alert {}", a.fingerprint));
    Ok(ValidAlert {
        status: a.status,
        alertname,
        labels: a.labels,
        annotations: a.annotations,
        starts_at,
        ends_at,
        generator_url: a.generator_url,
        fingerprint: a.fingerprint,
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

/// The labels that `group_by` names, rendered as a correlation key; `None` when the alert has
/// none of them (the caller then falls back to Alertmanager's `groupKey`).
pub fn correlation_key(labels: &LabelSet, group_by: &[String]) -> Option<String> {
    let present: BTreeMap<&str, &str> = group_by
        .iter()
        .filter_map(|name| labels.get(name).map(|v| (name.as_str(), v.as_str())))
        .collect();
    if present.is_empty() {
        return None;
    }
    let parts: Vec<String> = group_by
        .iter()
        .filter_map(|name| present.get(name.as_str()).map(|v| format!("{name}={v:?}")))
        .collect();
    Some(parts.join(","))
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
        v["alerts"][0]
            .as_object_mut()
            .unwrap()
            .remove("fingerprint");
        let e = decode(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.contains("alerts[0]") && e.contains("fingerprint"), "{e}");

        let mut v: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        v["version"] = "3".into();
        let e = decode(v.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("version: unsupported"), "{e}");
    }

    #[test]
    fn correlation_key_uses_the_named_labels_in_order() {
        let labels: LabelSet = [("service", "pay"), ("team", "t1"), ("x", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let by = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            correlation_key(&labels, &by(&["team", "service"])).as_deref(),
            Some(r#"team="t1",service="pay""#)
        );
        assert_eq!(correlation_key(&labels, &by(&["cluster"])), None);
    }
}
