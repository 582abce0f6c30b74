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

/// Parses Prometheus durations (`30s`, `5m`, `1h30m`, `30d`, a bare `0`): the same parser
/// as the configuration's, so a duration means the same everywhere.
pub fn parse_prom_duration(input: &str) -> Result<Duration, DurationError> {
    crate::config::parse_duration(input.trim()).map_err(|_| DurationError {
        input: input.to_string(),
    })
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
