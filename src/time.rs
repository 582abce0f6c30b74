//! Time formatting shared by the API, logs and the CLI: RFC 3339 in UTC, milliseconds kept.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use crate::incident::Timestamp;

/// RFC 3339 in UTC with `Z`, sub-second digits only when present.
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Microseconds since the Unix epoch: how times are stored.
pub fn to_micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// Inverse of [`to_micros`].
pub fn from_micros(us: i64) -> Timestamp {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `std::time::Duration` as a `chrono::Duration` (saturating).
pub fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
