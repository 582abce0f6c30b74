//! Prometheus duration strings (`30s`, `5m`, `1h30m`, `30d`): parsing for rules/ files and
//! formatting for PromQL range selectors (`increase(x[754s])`).

use std::time::Duration;

/// A duration string that is not in Prometheus form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a Prometheus duration such as 30s, 5m, 1h30m or 30d")]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
}

/// Parses `[0-9]+(ms|s|m|h|d|w|y)` units, concatenated from the largest to the smallest as
/// Prometheus does (`1h30m`); a bare `0` is zero.
pub fn parse_prom_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_string(),
    };
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u128 = 0;
    // Units must appear in decreasing order and at most once, like Prometheus requires.
    let mut last_rank = usize::MAX;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err());
        }
        let n: u128 = s[start..i].parse().map_err(|_| err())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let (rank, ms_per) = match &s[unit_start..i] {
            "y" => (6, 365 * 24 * 3600 * 1000),
            "w" => (5, 7 * 24 * 3600 * 1000),
            "d" => (4, 24 * 3600 * 1000),
            "h" => (3, 3600 * 1000),
            "m" => (2, 60 * 1000),
            "s" => (1, 1000),
            "ms" => (0, 1),
            _ => return Err(err()),
        };
        if rank >= last_rank {
            return Err(err());
        }
        last_rank = rank;
        total_ms = total_ms.checked_add(n * ms_per).ok_or_else(err)?;
    }
    let ms = u64::try_from(total_ms).map_err(|_| err())?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration as Prometheus reads it, largest units first (`1h30m`, `754s` → `12m34s`,
/// `1500ms` → `1s500ms`); zero is `0s`.
pub fn format_prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, per) in [
        ("d", 24 * 3600 * 1000u128),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= per {
            out.push_str(&format!("{}{}", ms / per, unit));
            ms %= per;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations_parse_including_compound_ones() {
        assert_eq!(parse_prom_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_prom_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_prom_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_prom_duration("30d"),
            Ok(Duration::from_secs(30 * 86400))
        );
        assert_eq!(parse_prom_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_prom_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "5", "m", "5x", "30m1h", "1h1h", "-5s", "1.5s"] {
            assert!(parse_prom_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations_format_back_to_prometheus_form() {
        assert_eq!(format_prom_duration(Duration::from_secs(754)), "12m34s");
        assert_eq!(format_prom_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_prom_duration(Duration::ZERO), "0s");
        let d = Duration::from_secs(90061);
        assert_eq!(parse_prom_duration(&format_prom_duration(d)), Ok(d));
    }
}
