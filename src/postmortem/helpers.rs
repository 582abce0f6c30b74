//! Formatting for post-mortem Markdown: the pure functions that turn seconds, instants,
//! ratios and untrusted label text into Markdown, and the Handlebars helpers that expose
//! them to templates.
//!
//! The context builder and the helpers share these functions, so a sentence generated in
//! Rust and a value formatted by a template look the same.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use serde_json::Value;

/// The one shape every placeholder has, so a reader can search for `_TODO:`.
pub fn todo(what: &str) -> String {
    format!("_TODO: {}_", inline(what))
}

/// A duration as people write it in post-mortems: `45s`, `2m 15s`, `1h 4m`, `2d 3h`.
pub use crate::time::human_duration as duration;

/// An offset from the start of the incident, in the draft's one duration format
/// ([`duration`], whole seconds): `T+2m 15s`, `T+6s`, `T-3s`, `T+8d 18h`.
pub fn offset(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "T?".to_string();
    }
    let sign = if seconds < -0.5 { '-' } else { '+' };
    format!("T{sign}{}", duration(seconds.abs().round()))
}

/// An instant in the configured zone, always with its date and zone:
/// `2026-11-23 14:23:47 UTC`, plus the second zone in brackets when one is configured.
pub fn time(at: DateTime<Utc>, zone: Tz, second: Option<Tz>) -> String {
    let main = at
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string();
    match second {
        Some(z) if z != zone => format!(
            "{main} ({})",
            at.with_timezone(&z).format("%Y-%m-%d %H:%M:%S %Z")
        ),
        _ => main,
    }
}

/// The calendar date of an instant in the configured zone: `2026-11-23`.
pub fn date(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d").to_string()
}

/// A ratio as a percentage with at most two decimals: `0.2` → `20%`, `0.01515` → `1.52%`.
pub fn percent(ratio: f64) -> String {
    format!("{}%", trimmed(ratio * 100.0, 2))
}

/// A number with thousands separators and at most two decimals: `12345.5` → `12,345.5`.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = trimmed(value.abs(), 2);
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text, None),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && (grouped != "0" || frac.is_some()) {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" {
        "0".to_string()
    } else {
        text
    }
}

/// The unit of a metric snapshot, deciding how its values print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// 0..1, printed as a percentage.
    Ratio,
    /// Printed as a duration (`4.51s`, `250ms`).
    Seconds,
    /// Printed with binary prefixes (`1.5 MiB`).
    Bytes,
    /// A rate, printed as `12.5/s`.
    PerSecond,
    /// A plain number.
    #[default]
    Plain,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ratio => "ratio",
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::PerSecond => "per_second",
            Unit::Plain => "plain",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "ratio" => Unit::Ratio,
            "seconds" => Unit::Seconds,
            "bytes" => Unit::Bytes,
            "per_second" => Unit::PerSecond,
            "plain" => Unit::Plain,
            _ => return None,
        })
    }
}

/// A metric value in its unit. Seconds keep two decimals below a minute because latency
/// figures (`4.51s` against a `1s` threshold) lose their meaning when rounded.
pub fn metric(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Ratio => percent(value),
        Unit::Seconds if value.abs() < 1.0 && value != 0.0 => {
            format!("{}ms", trimmed(value * 1000.0, 0))
        }
        Unit::Seconds if value.abs() < 60.0 => format!("{}s", trimmed(value, 2)),
        Unit::Seconds => duration(value),
        Unit::Bytes => {
            let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
            let mut v = value;
            let mut i = 0;
            while v.abs() >= 1024.0 && i < units.len() - 1 {
                v /= 1024.0;
                i += 1;
            }
            format!("{} {}", trimmed(v, 1), units[i])
        }
        Unit::PerSecond => format!("{}/s", number(value)),
        Unit::Plain => number(value),
    }
}

/// How the peak compares with the baseline: `×5.3` when it grew at least twofold,
/// `+27%` / `-40%` otherwise, `unchanged` when equal.
pub fn change(baseline: Option<f64>, peak: Option<f64>) -> String {
    match (baseline, peak) {
        (Some(b), Some(p)) if b != 0.0 && b.is_finite() && p.is_finite() => {
            let factor = p / b;
            if factor >= 2.0 {
                format!("×{}", trimmed(factor, 1))
            } else if (factor - 1.0).abs() < 0.005 {
                "unchanged".to_string()
            } else {
                let pct = trimmed((factor - 1.0) * 100.0, 0);
                if factor > 1.0 {
                    format!("+{pct}%")
                } else {
                    format!("{pct}%")
                }
            }
        }
        (Some(b), Some(p)) if b == 0.0 && p != 0.0 => "from zero".to_string(),
        (Some(_), Some(_)) => "unchanged".to_string(),
        _ => "not enough data".to_string(),
    }
}

/// Untrusted text made safe for one Markdown table cell: the row keeps its columns
/// (pipes escaped, newlines become `<br>`), and no tag, code span or heading leaks out.
pub fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            _ => push_escaped(&mut out, c, chars.peek().copied()),
        }
    }
    out.trim().to_string()
}

/// Untrusted text made safe inside a line of prose: one line, no tags, and nothing that
/// Markdown would read as a heading, quote, list or code span if it lands at a line start.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let one_line = text.split(['\r', '\n']).filter(|l| !l.trim().is_empty());
    for (i, line) in one_line.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mut chars = line.trim().chars().peekable();
        while let Some(c) = chars.next() {
            push_escaped(&mut out, c, chars.peek().copied());
        }
    }
    neutralise_line_start(out)
}

/// `next` is the character after `c`: a `<` only opens HTML (a tag, a comment, an autolink)
/// before a letter, `/`, `!` or `?`, so `p99 < 1 s` stays readable; `>` never opens anything
/// except a quote at a line start, which [`neutralise_line_start`] handles.
fn push_escaped(out: &mut String, c: char, next: Option<char>) {
    match c {
        // Backslash first, so that an input `\|` cannot turn our `\|` back into a pipe.
        '\\' => out.push_str("\\\\"),
        '|' => out.push_str("\\|"),
        '`' => out.push_str("\\`"),
        '[' => out.push_str("\\["),
        ']' => out.push_str("\\]"),
        '<' if next.is_none_or(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) => {
            out.push_str("&lt;")
        }
        '\t' => out.push(' '),
        c if c.is_control() => {}
        c => out.push(c),
    }
}

fn neutralise_line_start(text: String) -> String {
    let starts_block = match text.chars().next() {
        Some('#' | '=' | '+' | '-' | '*' | '~' | '>') => true,
        Some(c) if c.is_ascii_digit() => {
            let rest = text.trim_start_matches(|c: char| c.is_ascii_digit());
            rest.starts_with(". ") || rest.starts_with(") ")
        }
        _ => false,
    };
    if starts_block {
        format!("\\{text}")
    } else {
        text
    }
}

/// An inline code span that survives any content: the fence is one backtick longer than
/// the longest run inside, newlines become spaces, and in a table cell pipes are escaped.
pub fn code(text: &str, in_cell: bool) -> String {
    let flat: String = text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let flat = if in_cell {
        flat.replace('|', "\\|")
    } else {
        flat
    };
    let fence = "`".repeat(longest_run(&flat, '`') + 1);
    // A span that starts or ends with a backtick needs a space to keep the fence apart.
    let pad = if flat.starts_with('`') || flat.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{flat}{pad}{fence}")
}

/// A fenced code block whose fence cannot be closed by its content.
pub fn code_block(text: &str, lang: &str) -> String {
    let fence = "`".repeat((longest_run(text, '`') + 1).max(3));
    format!("{fence}{lang}\n{}\n{fence}", text.trim_end_matches('\n'))
}

fn longest_run(text: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for ch in text.chars() {
        if ch == c {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// A URL fit for a Markdown link target, or `None` when it is not http(s) (a
/// `javascript:` runbook annotation must not become a clickable link).
pub fn url(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '|' => out.push_str("%7C"),
            '`' => out.push_str("%60"),
            '"' => out.push_str("%22"),
            c if c.is_control() || c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// A Markdown link, or the address as inline code when it cannot be a safe link. When
/// the text is the address itself, an autolink `<…>` keeps the raw Markdown readable.
pub fn link(text: &str, raw_url: &str) -> String {
    match url(raw_url) {
        Some(u) if text.trim() == raw_url.trim() => format!("<{u}>"),
        Some(u) => format!("[{}]({u})", inline(text)),
        None if text.trim() == raw_url.trim() => code(raw_url, false),
        None => format!("{} ({})", inline(text), code(raw_url, false)),
    }
}

/// Parses an RFC 3339 instant from the render context.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

type HelperFn = dyn Fn(&[&Value], &BTreeMap<String, Value>) -> Result<String, String> + Send + Sync;

/// Adapts a plain function over JSON values into a Handlebars helper whose errors name it.
struct FnHelper {
    name: &'static str,
    f: Box<HelperFn>,
}

impl HelperDef for FnHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let mut params = Vec::with_capacity(h.params().len());
        for (i, p) in h.params().iter().enumerate() {
            if r.strict_mode() && p.is_value_missing() {
                return Err(RenderErrorReason::Other(format!(
                    "helper `{}`: argument {} ({}) does not exist in the context",
                    self.name,
                    i + 1,
                    p.relative_path().map(String::as_str).unwrap_or("?")
                ))
                .into());
            }
            params.push(p.value());
        }
        let hash: BTreeMap<String, Value> = h
            .hash()
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.value().clone()))
            .collect();
        let text = (self.f)(&params, &hash)
            .map_err(|e| RenderErrorReason::Other(format!("helper `{}`: {e}", self.name)))?;
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

fn register(
    reg: &mut Handlebars<'_>,
    name: &'static str,
    f: impl Fn(&[&Value], &BTreeMap<String, Value>) -> Result<String, String> + Send + Sync + 'static,
) {
    reg.register_helper(
        name,
        Box::new(FnHelper {
            name,
            f: Box::new(f),
        }),
    );
}

fn arg<'a>(params: &[&'a Value], i: usize) -> Result<&'a Value, String> {
    params
        .get(i)
        .copied()
        .ok_or_else(|| format!("needs argument {}", i + 1))
}

fn num(params: &[&Value], i: usize) -> Result<f64, String> {
    let v = arg(params, i)?;
    v.as_f64().ok_or_else(|| {
        format!(
            "argument {} must be a number, got {} (guard optional values with #if)",
            i + 1,
            kind(v)
        )
    })
}

fn text<'a>(params: &[&'a Value], i: usize) -> Result<&'a str, String> {
    let v = arg(params, i)?;
    v.as_str().ok_or_else(|| {
        format!(
            "argument {} must be text, got {} (guard optional values with #if)",
            i + 1,
            kind(v)
        )
    })
}

fn instant(params: &[&Value], i: usize) -> Result<DateTime<Utc>, String> {
    let s = text(params, i)?;
    parse_time(s).ok_or_else(|| format!("argument {} is not an RFC 3339 time: {s:?}", i + 1))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Text of a scalar for the escaping helpers: numbers and booleans print as themselves,
/// and null is an error so a template never prints `null`.
fn scalar_text(params: &[&Value], i: usize) -> Result<String, String> {
    match arg(params, i)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        v => Err(format!(
            "argument {} must be text, got {} (guard optional values with #if)",
            i + 1,
            kind(v)
        )),
    }
}

/// Registers every helper on `reg`. Times print in `zone`, and also in `second` if set.
///
/// | helper | example | output |
/// |---|---|---|
/// | `cell` | `{{cell labels.instance}}` | text safe inside a table cell |
/// | `inline` | `{{inline summary}}` | text safe inside a line of prose |
/// | `code` | `{{code expr}}`, `{{code expr cell=true}}` | an inline code span |
/// | `yaml_block` | `{{yaml_block rule}}` | a fenced YAML block of an object |
/// | `duration` | `{{duration ttd_seconds}}` | `2m 15s` |
/// | `offset` | `{{offset offset_seconds}}` | `T+2m15s` |
/// | `time` | `{{time resolved_at}}` | `2026-11-23 14:23:47 UTC` |
/// | `date` | `{{date start}}` | `2026-11-23` |
/// | `percent` | `{{percent 0.278}}` | `27.8%` |
/// | `number` | `{{number 12345}}` | `12,345` |
/// | `metric` | `{{metric peak unit}}` | value in its unit; `no data` for null |
/// | `link` | `{{link "runbook" url}}` | a Markdown link, or code when not http(s) |
/// | `todo` | `{{todo "owner"}}` | `_TODO: owner_` |
pub fn register_helpers(reg: &mut Handlebars<'_>, zone: Tz, second: Option<Tz>) {
    register(reg, "cell", |p, _| Ok(cell(&scalar_text(p, 0)?)));
    register(reg, "inline", |p, _| Ok(inline(&scalar_text(p, 0)?)));
    register(reg, "code", |p, h| {
        let in_cell = h.get("cell").and_then(Value::as_bool).unwrap_or(false);
        Ok(code(&scalar_text(p, 0)?, in_cell))
    });
    register(reg, "yaml_block", |p, _| {
        let v = arg(p, 0)?;
        if !v.is_object() {
            return Err(format!("argument 1 must be an object, got {}", kind(v)));
        }
        let yaml = serde_norway::to_string(v).map_err(|e| e.to_string())?;
        Ok(code_block(&yaml, "yaml"))
    });
    register(reg, "duration", |p, _| Ok(duration(num(p, 0)?)));
    register(reg, "offset", |p, _| Ok(offset(num(p, 0)?)));
    register(reg, "time", move |p, _| {
        Ok(time(instant(p, 0)?, zone, second))
    });
    register(reg, "date", move |p, _| Ok(date(instant(p, 0)?, zone)));
    register(reg, "percent", |p, _| Ok(percent(num(p, 0)?)));
    register(reg, "number", |p, _| Ok(number(num(p, 0)?)));
    register(reg, "metric", |p, _| {
        let unit = Unit::parse(text(p, 1)?).ok_or("argument 2 must be a unit name")?;
        match arg(p, 0)? {
            Value::Null => Ok("no data".to_string()),
            _ => Ok(metric(num(p, 0)?, unit)),
        }
    });
    register(reg, "link", |p, _| {
        Ok(link(&scalar_text(p, 0)?, &scalar_text(p, 1)?))
    });
    register(reg, "todo", |p, _| Ok(todo(&scalar_text(p, 0)?)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_examples() {
        assert_eq!(duration(135.0), "2m 15s");
        assert_eq!(duration(3840.0), "1h 4m");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(120.0), "2m");
        assert_eq!(duration(0.357), "357ms");
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(93_600.0), "1d 2h");
        assert_eq!(duration(-5.0), "-5s");
    }

    #[test]
    fn offsets_are_relative_to_the_start() {
        assert_eq!(offset(135.0), "T+2m 15s");
        assert_eq!(offset(6.36), "T+6s");
        assert_eq!(offset(0.0), "T+0s");
        assert_eq!(offset(-3.0), "T-3s");
        assert_eq!(offset(3840.0), "T+1h 4m");
        assert_eq!(offset(120.0), "T+2m");
        // The same format as every other duration in the draft, never "T+210h54m".
        assert_eq!(offset(759_240.0), format!("T+{}", duration(759_240.0)));
        assert_eq!(offset(759_240.0), "T+8d 18h");
    }

    #[test]
    fn times_carry_date_and_zone_and_the_second_zone() {
        let at = parse_time("2026-11-23T14:23:47.512Z").expect("valid time");
        assert_eq!(time(at, Tz::UTC, None), "2026-11-23 14:23:47 UTC");
        assert_eq!(
            time(at, Tz::UTC, Some(Tz::Asia__Seoul)),
            "2026-11-23 14:23:47 UTC (2026-11-23 23:23:47 KST)"
        );
        assert_eq!(
            time(at, Tz::Europe__Berlin, None),
            "2026-11-23 15:23:47 CET"
        );
    }

    #[test]
    fn numbers_and_percentages_are_grouped_and_trimmed() {
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(1234.5), "1,234.5");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(12.0), "12");
        assert_eq!(percent(0.278), "27.8%");
        assert_eq!(percent(0.999), "99.9%");
        assert_eq!(percent(0.2), "20%");
    }

    #[test]
    fn metric_values_print_in_their_unit() {
        assert_eq!(metric(0.97, Unit::Ratio), "97%");
        assert_eq!(metric(4.510869, Unit::Seconds), "4.51s");
        assert_eq!(metric(0.25, Unit::Seconds), "250ms");
        assert_eq!(metric(1_572_864.0, Unit::Bytes), "1.5 MiB");
        assert_eq!(metric(12.5, Unit::PerSecond), "12.5/s");
        assert_eq!(change(Some(0.19), Some(1.0)), "×5.3");
        assert_eq!(change(Some(0.2), Some(0.26)), "+30%");
        assert_eq!(change(Some(0.0), Some(0.2)), "from zero");
        assert_eq!(change(None, Some(0.2)), "not enough data");
    }

    #[test]
    fn a_cell_keeps_its_row_intact_whatever_the_value() {
        let nasty = "a|b\n# heading\r\n`tick` <script>x</script> \\|";
        let out = cell(nasty);
        assert!(!out.contains('\n') && !out.contains('\r'));
        assert_eq!(out.matches('|').count(), out.matches("\\|").count());
        assert!(!out.contains("<script>"));
        assert_eq!(
            out,
            "a\\|b<br># heading<br>\\`tick\\` &lt;script>x&lt;/script> \\\\\\|"
        );
    }

    #[test]
    fn inline_text_cannot_start_a_block_or_leave_its_line() {
        assert_eq!(inline("# Title\nsecond"), "\\# Title second");
        assert_eq!(inline("1. first"), "\\1. first");
        assert_eq!(inline("- item"), "\\- item");
        assert_eq!(inline("ok [x](y)"), "ok \\[x\\](y)");
        assert_eq!(inline("> quoted"), "\\> quoted");
    }

    #[test]
    fn comparisons_stay_readable_and_only_a_possible_tag_is_escaped() {
        assert_eq!(
            inline("pool > 80% and p99 < 1 s"),
            "pool > 80% and p99 < 1 s"
        );
        assert_eq!(cell("a<=b, c <5"), "a<=b, c <5");
        assert_eq!(
            inline("a<b> <!-- x --> </i> <?php"),
            "a&lt;b> &lt;!-- x --> &lt;/i> &lt;?php"
        );
        assert_eq!(inline("ends with <"), "ends with &lt;");
    }

    #[test]
    fn code_spans_outgrow_the_backticks_inside_them() {
        assert_eq!(code("rate(x[5m])", false), "`rate(x[5m])`");
        assert_eq!(code("a `b` c", false), "``a `b` c``");
        assert_eq!(code("`x`", false), "`` `x` ``");
        assert_eq!(code("a|b", true), "`a\\|b`");
        assert_eq!(code_block("x: ```", "yaml"), "````yaml\nx: ```\n````");
    }

    #[test]
    fn only_http_urls_become_links() {
        assert_eq!(
            link("runbook", "https://x.example/a b(c)"),
            "[runbook](https://x.example/a%20b%28c%29)"
        );
        assert_eq!(
            link("https://x.example/a b", "https://x.example/a b"),
            "<https://x.example/a%20b>"
        );
        assert_eq!(
            link("runbook", "javascript:alert(1)"),
            "runbook (`javascript:alert(1)`)"
        );
    }

    #[test]
    fn placeholders_all_look_the_same() {
        assert_eq!(todo("owner"), "_TODO: owner_");
    }
}
