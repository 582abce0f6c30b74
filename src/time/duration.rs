//! Durations in Prometheus form (`30s`, `5m`, `1h30m`, `30d`): parsed the same way in the
//! configuration, the evidence rules and the CLI, and written as Prometheus writes them (its
//! `model.Duration`), so a duration reads the same everywhere.

use std::time::Duration;

const MS_PER_SECOND: u64 = 1000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;
const MS_PER_WEEK: u64 = 7 * MS_PER_DAY;
const MS_PER_YEAR: u64 = 365 * MS_PER_DAY;

/// Units, largest first, as Prometheus orders them.
const UNITS: [(&str, u64); 7] = [
    ("y", MS_PER_YEAR),
    ("w", MS_PER_WEEK),
    ("d", MS_PER_DAY),
    ("h", MS_PER_HOUR),
    ("m", MS_PER_MINUTE),
    ("s", MS_PER_SECOND),
    ("ms", 1),
];

/// The longest duration accepted, as Prometheus (and chrono's nanosecond arithmetic) can hold
/// it: `i64::MAX` nanoseconds, about 292 years.
const MAX_MS: u64 = (i64::MAX as u64) / 1_000_000;

/// Parses a Prometheus duration: `<n><unit>` groups with units `y w d h m s ms`, each at most
/// once, largest first (`1h30m`, `90s`, `1w`), or `0`. The error says what is wrong, without
/// repeating the input (callers add it).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    let mut previous: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after_number) = rest.split_at(digits);
        let letters = after_number
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (unit, after_unit) = after_number.split_at(letters);
        if number.is_empty() {
            return Err(match after_number.chars().next() {
                _ if !unit.is_empty() => format!("missing number before {unit:?}"),
                Some('-') => "negative durations are not allowed".to_owned(),
                Some(c) => format!("unexpected character {c:?}"),
                None => "empty duration".to_owned(),
            });
        }
        if unit.is_empty() {
            return Err(match after_number.chars().next() {
                None => format!("missing unit after {number:?}, e.g. \"{number}s\""),
                Some('.') => {
                    "fractions are not allowed; combine units instead, e.g. 1h30m".to_owned()
                }
                Some(c) => format!("unexpected character {c:?}"),
            });
        }
        let Some(rank) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit {unit:?}, expected one of y, w, d, h, m, s, ms"
            ));
        };
        if let Some(previous) = previous {
            if rank == previous {
                return Err(format!("unit {unit:?} appears twice"));
            }
            if rank < previous {
                return Err(format!(
                    "unit {unit:?} after {:?}: write units largest first, e.g. 1h30m",
                    UNITS[previous].0
                ));
            }
        }
        previous = Some(rank);
        let n: u64 = number
            .parse()
            .map_err(|_| "duration out of range".to_owned())?;
        total_ms = n
            .checked_mul(UNITS[rank].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|ms| *ms <= MAX_MS)
            .ok_or_else(|| "duration out of range (at most about 292y)".to_owned())?;
        rest = after_unit;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way Prometheus does (`1h30m`, `30s`, `0s`), the inverse of
/// [`parse_duration`]. Years and weeks are used only when they divide the whole duration
/// (`90d`, not `12w6d`); anything below a millisecond is dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, unit_ms) in UNITS {
        let unit_ms = u128::from(unit_ms);
        let whole_only = matches!(name, "y" | "w");
        if whole_only && ms % unit_ms != 0 {
            continue;
        }
        let n = ms / unit_ms;
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
            ms -= n * unit_ms;
        }
    }
    out
}

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
    parse_duration(input.trim()).map_err(|_| DurationError {
        input: input.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_accepts_prometheus_durations() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("0s", 0),
            ("0ms", 0),
            ("1ms", 1),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("90m", 5_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            (
                "1y2w3d4h5m6s7ms",
                31_536_000_000
                    + 2 * 604_800_000
                    + 3 * 86_400_000
                    + 4 * 3_600_000
                    + 5 * 60_000
                    + 6_000
                    + 7,
            ),
            ("1m500ms", 60_500),
            ("292y", 292 * 31_536_000_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(*ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_duration_rejects_malformed_durations_with_the_reason() {
        let cases = [
            ("", "empty duration"),
            (
                "5x",
                r#"unknown unit "x", expected one of y, w, d, h, m, s, ms"#,
            ),
            ("5", r#"missing unit after "5", e.g. "5s""#),
            ("1h30", r#"missing unit after "30", e.g. "30s""#),
            ("h", r#"missing number before "h""#),
            ("-5m", "negative durations are not allowed"),
            (
                "1.5h",
                "fractions are not allowed; combine units instead, e.g. 1h30m",
            ),
            (" 5m", "unexpected character ' '"),
            ("5m ", "unexpected character ' '"),
            ("5 m", "unexpected character ' '"),
            (
                "1m1h",
                r#"unit "h" after "m": write units largest first, e.g. 1h30m"#,
            ),
            ("1m1m", r#"unit "m" appears twice"#),
            (
                "5M",
                r#"unknown unit "M", expected one of y, w, d, h, m, s, ms"#,
            ),
            ("293y", "duration out of range (at most about 292y)"),
            ("99999999999999999999s", "duration out of range"),
        ];
        for (text, reason) in cases {
            assert_eq!(parse_duration(text), Err(reason.to_owned()), "{text:?}");
        }
    }

    #[test]
    fn format_duration_writes_prometheus_form() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ms"),
            (30_000, "30s"),
            (300_000, "5m"),
            (5_400_000, "1h30m"),
            (86_400_000, "1d"),
            (604_800_000, "1w"),
            (30 * 86_400_000, "30d"),
            (90 * 86_400_000, "90d"),
            (31_536_000_000, "1y"),
            (31_536_000_000 + 86_400_000, "366d"),
            (3_723_004, "1h2m3s4ms"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(*ms)), *text, "{ms}ms");
        }
        assert_eq!(format_duration(Duration::from_nanos(1_500_000)), "1ms");
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_gives_back_the_duration(ms in 0..=MAX_MS) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

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
        assert_eq!(format_duration(Duration::from_secs(754)), "12m34s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        let d = Duration::from_secs(90061);
        assert_eq!(parse_prom_duration(&format_duration(d)), Ok(d));
    }
}
