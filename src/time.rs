//! Time: the clock everything reads, and the formats shared by the API, logs and the CLI
//! (RFC 3339 in UTC, milliseconds kept; durations in Prometheus form).

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

mod duration;
pub use duration::{format_duration, parse_duration, parse_prom_duration, DurationError};

/// A point in time, UTC: the domain's `incident::Timestamp` (this module sits below the
/// domain, so it names the type itself).
type Timestamp = DateTime<Utc>;

/// A clock: the real one in production, a fixed or scripted one in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock at the store's precision (microseconds), so that a time computed in memory
/// is the time read back.
pub fn system_clock() -> Clock {
    use chrono::SubsecRound;
    Arc::new(|| Utc::now().trunc_subsecs(6))
}

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

/// A duration as people write it (drafts, Slack, the CLI): `45s`, `2m 15s`, `1h 4m`, `2d 3h`.
/// Below one second it keeps milliseconds (`357ms`) because TTD parts can be that small.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "unknown".to_string();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let abs = seconds.abs();
    if abs > 0.0 && abs < 0.9995 {
        return format!("{sign}{}ms", (abs * 1000.0).round() as u64);
    }
    let total = abs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        (total % 86_400) / 3_600,
        (total % 3_600) / 60,
        total % 60,
    );
    let body = if d > 0 {
        join_units(&[(d, "d"), (h, "h")])
    } else if h > 0 {
        join_units(&[(h, "h"), (m, "m")])
    } else if m > 0 {
        join_units(&[(m, "m"), (s, "s")])
    } else {
        format!("{s}s")
    };
    format!("{sign}{body}")
}

/// A time relative to detection, in words: `34s after detection`, or `1d 2h before
/// detection` when the incident was over before its first notification reached incidentd
/// (incidentd was down, or the first notification Alertmanager sent was already a resolve).
/// A negative TTR printed as `-1d 2h` reads as a bug; this reads as what happened.
pub fn since_detection(seconds: f64) -> String {
    if seconds < 0.0 {
        format!("{} before detection", human_duration(-seconds))
    } else {
        format!("{} after detection", human_duration(seconds))
    }
}

fn join_units(parts: &[(u64, &str); 2]) -> String {
    // "2m" rather than "2m 0s": the zero adds nothing.
    if parts[1].0 == 0 {
        format!("{}{}", parts[0].0, parts[0].1)
    } else {
        format!("{}{} {}{}", parts[0].0, parts[0].1, parts[1].0, parts[1].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolve_before_detection_reads_as_such_not_as_a_negative_duration() {
        assert_eq!(since_detection(34.0), "34s after detection");
        assert_eq!(since_detection(-93_600.0), "1d 2h before detection");
        assert_eq!(since_detection(0.0), "0s after detection");
    }
}
