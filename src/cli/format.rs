//! How the command line shows times, durations and tables.
//!
//! Times are always shown with their date and zone (`2026-11-23 02:26:28 UTC`), durations
//! the way post-mortems quote them (`2m 15s`), and anything unknown as `—`.

use chrono::{DateTime, Datelike, Utc};

/// Shown for a time, duration or field the daemon does not know (yet).
pub const UNKNOWN: &str = "—";

/// `2026-11-23 02:26:28 UTC`, or `—`. Alertmanager's "no time" (`0001-01-01T00:00:00Z`)
/// counts as unknown, in case a daemon passes it through.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) if t.year() > 1 => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        _ => UNKNOWN.to_string(),
    }
}

/// A number of seconds as `45s`, `2m 15s`, `1h 5m`, `2d 3h`, or `—`. Rounded to the second
/// because the inputs (scrape and evaluation intervals) are not more precise than that;
/// below ten seconds one decimal is kept so a 0.4 s acknowledgement does not read as `0s`.
pub fn duration(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite()) else {
        return UNKNOWN.to_string();
    };
    // A negative figure comes from clocks that disagree; show it rather than hide it.
    let sign = if seconds < 0.0 { "-" } else { "" };
    let abs = seconds.abs();
    if abs < 10.0 {
        let tenths = (abs * 10.0).round() / 10.0;
        if tenths == tenths.trunc() {
            return format!("{sign}{}s", tenths as u64);
        }
        return format!("{sign}{tenths:.1}s");
    }
    crate::time::human_duration(seconds)
}

/// `value` or `—` when absent or empty.
pub fn or_unknown(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => UNKNOWN.to_string(),
    }
}

/// A plain-text table: a header row and left-aligned columns separated by two spaces.
/// The last column is not padded so long titles do not leave trailing blanks.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells beyond the header's width are dropped, missing ones left empty.
    /// Line breaks in a cell would break the table, so they become spaces.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .take(self.header.len())
            .map(|c| c.replace(['\n', '\r', '\t'], " "))
            .collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_post_mortem() {
        assert_eq!(duration(Some(135.0)), "2m 15s");
        assert_eq!(duration(Some(585.0)), "9m 45s");
        assert_eq!(duration(Some(720.0)), "12m");
        assert_eq!(duration(Some(39.0)), "39s");
        assert_eq!(duration(Some(32.995)), "33s");
        assert_eq!(duration(Some(6.005)), "6s");
        assert_eq!(duration(Some(0.4)), "0.4s");
        assert_eq!(duration(Some(0.0)), "0s");
        assert_eq!(duration(Some(3_900.0)), "1h 5m");
        assert_eq!(duration(Some(2.0 * 86_400.0 + 3.0 * 3_600.0)), "2d 3h");
        assert_eq!(duration(Some(-12.0)), "-12s");
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(f64::NAN)), "—");
    }

    #[test]
    fn times_show_date_and_zone_and_alertmanagers_zero_time_is_unknown() {
        let t: DateTime<Utc> = "2026-11-23T02:26:28.738Z".parse().unwrap();
        assert_eq!(time(Some(t)), "2026-11-23 02:26:28 UTC");
        let zero: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(time(Some(zero)), "—");
        assert_eq!(time(None), "—");
    }

    #[test]
    fn tables_align_columns_by_characters_not_bytes() {
        let mut table = Table::new(&["ID", "TTD", "TITLE"]);
        table.row(vec![
            "INC-2026-0001".into(),
            "—".into(),
            "Pool\nexhausted".into(),
        ]);
        table.row(vec!["INC-2026-0002".into(), "2m 15s".into()]);
        assert_eq!(
            table.render(),
            "ID             TTD     TITLE\n\
             INC-2026-0001  —       Pool exhausted\n\
             INC-2026-0002  2m 15s\n"
        );
    }
}
