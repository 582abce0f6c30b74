//! The top-level comparison of a PromQL expression: `A <op> B` → `(A, op, B)`, so a chart can
//! plot `A` (the measured value) against `B` (the threshold) instead of the filtered result.
//!
//! This is a scanner, not a parser: it respects strings, comments and brackets and knows
//! PromQL's precedence (comparisons bind looser than arithmetic, tighter than `and`, `or`,
//! `unless`), which is all the split needs.

/// A comparison operator of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ComparisonOp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl ComparisonOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonOp::Gt => ">",
            ComparisonOp::Ge => ">=",
            ComparisonOp::Lt => "<",
            ComparisonOp::Le => "<=",
            ComparisonOp::Eq => "==",
            ComparisonOp::Ne => "!=",
        }
    }

    /// The same comparison with its operands swapped (`1 < a` is `a > 1`).
    pub fn flipped(self) -> ComparisonOp {
        match self {
            ComparisonOp::Gt => ComparisonOp::Lt,
            ComparisonOp::Ge => ComparisonOp::Le,
            ComparisonOp::Lt => ComparisonOp::Gt,
            ComparisonOp::Le => ComparisonOp::Ge,
            other => other,
        }
    }

    /// `Some(true)` when a value above the threshold is the bad side (`>`, `>=`),
    /// `Some(false)` for `<`, `<=`, `None` for equality tests.
    pub fn higher_is_worse(self) -> Option<bool> {
        match self {
            ComparisonOp::Gt | ComparisonOp::Ge => Some(true),
            ComparisonOp::Lt | ComparisonOp::Le => Some(false),
            ComparisonOp::Eq | ComparisonOp::Ne => None,
        }
    }
}

/// `left <op> [bool] [on(..)|ignoring(..)] [group_left(..)|group_right(..)] right`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub left: String,
    pub op: ComparisonOp,
    /// The `bool` modifier was present.
    pub bool_modifier: bool,
    /// Vector matching clauses after the operator, verbatim (often empty).
    pub matching: String,
    pub right: String,
}

impl Comparison {
    /// The measured side, the operator as "measured op threshold", and the threshold, when
    /// one side is a number literal (either side: `1 < x` reads as `x > 1`).
    pub fn series_and_threshold(&self) -> Option<(&str, ComparisonOp, f64)> {
        match (parse_number(&self.left), parse_number(&self.right)) {
            (None, Some(t)) => Some((&self.left, self.op, t)),
            (Some(t), None) => Some((&self.right, self.op.flipped(), t)),
            _ => None,
        }
    }

    /// The right side as a number, when it is one: the threshold of `A > 0.95`.
    pub fn threshold(&self) -> Option<f64> {
        parse_number(&self.right)
    }
}

/// Splits `expr` at its top-level comparison. `A > B and C` (or `unless`) splits the left
/// operand of the set operator, whose values are the result's; `or` gives `None`, as does an
/// expression without a top-level comparison.
pub fn split_comparison(expr: &str) -> Option<Comparison> {
    let expr = strip_outer_parens(expr.trim());
    let tokens = top_level_tokens(expr);
    // Set operators bind loosest: only the left operand of and/unless is the result's values.
    if let Some(t) = tokens.iter().find(|t| matches!(t.kind, Kind::SetOp(_))) {
        return match t.kind {
            Kind::SetOp("or") => None,
            _ => split_comparison(&expr[..t.start]),
        };
    }
    // Comparisons are left-associative, so the last one at the top level is the root.
    let t = tokens.iter().rev().find_map(|t| match t.kind {
        Kind::Cmp(op) => Some((t, op)),
        Kind::SetOp(_) => None,
    })?;
    let (tok, op) = t;
    let left = expr[..tok.start].trim();
    let (bool_modifier, matching, right) = split_modifiers(&expr[tok.end..]);
    if left.is_empty() || right.is_empty() {
        return None;
    }
    Some(Comparison {
        left: strip_outer_parens(left).to_string(),
        op,
        bool_modifier,
        matching,
        right: strip_outer_parens(right).to_string(),
    })
}

enum Kind {
    Cmp(ComparisonOp),
    SetOp(&'static str),
}

struct Token {
    start: usize,
    end: usize,
    kind: Kind,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Operators found outside strings, comments and brackets, in order.
fn top_level_tokens(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut depth: i32 = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth != 0 => {}
            b'>' | b'<' | b'=' | b'!' => {
                let next = b.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    (b'>', Some(b'=')) => (Some(ComparisonOp::Ge), 2),
                    (b'<', Some(b'=')) => (Some(ComparisonOp::Le), 2),
                    (b'=', Some(b'=')) => (Some(ComparisonOp::Eq), 2),
                    (b'!', Some(b'=')) => (Some(ComparisonOp::Ne), 2),
                    (b'>', _) => (Some(ComparisonOp::Gt), 1),
                    (b'<', _) => (Some(ComparisonOp::Lt), 1),
                    _ => (None, 1),
                };
                if let Some(op) = op {
                    out.push(Token {
                        start: i,
                        end: i + len,
                        kind: Kind::Cmp(op),
                    });
                }
                i += len;
                continue;
            }
            _ if is_ident(c) && (i == 0 || !is_ident(b[i - 1])) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let word = &s[start..i];
                for op in ["and", "or", "unless"] {
                    if word.eq_ignore_ascii_case(op) {
                        out.push(Token {
                            start,
                            end: i,
                            kind: Kind::SetOp(op),
                        });
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Index just past the string literal that starts at `i` (or the end on an unclosed one).
fn skip_string(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'\\' && quote != b'`' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Index of the bracket closing the one at `open`, honouring strings.
fn matching_close(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn strip_outer_parens(s: &str) -> &str {
    let mut s = s.trim();
    while s.starts_with('(') && matching_close(s.as_bytes(), 0) == Some(s.len() - 1) {
        s = s[1..s.len() - 1].trim();
    }
    s
}

/// Peels `bool`, `on(..)`/`ignoring(..)` and `group_left(..)`/`group_right(..)` off the
/// right-hand side of a comparison.
fn split_modifiers(rest: &str) -> (bool, String, &str) {
    let mut rest = rest.trim_start();
    let mut bool_modifier = false;
    let mut matching = Vec::new();
    loop {
        let word_len = rest.bytes().take_while(|b| is_ident(*b)).count();
        let word = &rest[..word_len];
        let after = rest[word_len..].trim_start();
        if word.eq_ignore_ascii_case("bool") && !bool_modifier && matching.is_empty() {
            bool_modifier = true;
            rest = after;
            continue;
        }
        let is_clause = ["on", "ignoring", "group_left", "group_right"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k));
        if is_clause {
            // group_left may come without a label list; on/ignoring always have one.
            if after.starts_with('(') {
                if let Some(close) = matching_close(after.as_bytes(), 0) {
                    matching.push(format!("{word}{}", &after[..=close]));
                    rest = after[close + 1..].trim_start();
                    continue;
                }
            } else if word.starts_with("group_") || word.starts_with("GROUP_") {
                matching.push(word.to_string());
                rest = after;
                continue;
            }
        }
        break;
    }
    (bool_modifier, matching.join(" "), rest.trim())
}

/// A PromQL number literal, possibly signed or parenthesised: `0.95`, `-1`, `1e3`, `0x1f`,
/// `Inf`, `NaN`.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = strip_outer_parens(s);
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s).trim_start()),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else if body.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        body.replace('_', "").parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(e: &str) -> (String, &'static str, String) {
        let c = split_comparison(e).unwrap_or_else(|| panic!("{e:?} should split"));
        (c.left, c.op.as_str(), c.right)
    }

    #[test]
    fn the_three_real_rules_split_into_measure_and_threshold() {
        let rules = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/scenario-single/config/rules.yml"
        ))
        .expect("rules fixture");
        let doc: serde_json::Value = serde_norway::from_str(&rules).expect("yaml");
        let exprs: Vec<&str> = doc["groups"][0]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["expr"].as_str().expect("expr"))
            .collect();
        let got: Vec<_> = exprs
            .iter()
            .map(|e| {
                let c = split_comparison(e).expect("splits");
                let (series, op, t) = c.series_and_threshold().expect("threshold");
                (series.to_string(), op.as_str(), t)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "db_connection_pool_active / db_connection_pool_max".to_string(),
                    ">",
                    0.95
                ),
                (
                    r#"sum by (service) (rate(http_requests_total{service="payment-service",code=~"5.."}[10s])) / sum by (service) (rate(http_requests_total{service="payment-service"}[10s]))"#.to_string(),
                    ">",
                    0.05
                ),
                (
                    r#"histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket{service="payment-service"}[10s])))"#.to_string(),
                    ">",
                    1.0
                ),
            ]
        );
    }

    #[test]
    fn operators_inside_strings_brackets_and_comments_are_ignored() {
        assert_eq!(
            split(r#"foo{path=~"/a>b", code!="500"} >= 3"#),
            (r#"foo{path=~"/a>b", code!="500"}"#.into(), ">=", "3".into())
        );
        assert_eq!(
            split("max_over_time((a > 1)[5m:]) < 2"),
            ("max_over_time((a > 1)[5m:])".into(), "<", "2".into())
        );
        assert_eq!(
            split("# alert when x > 9\nx != 0"),
            ("# alert when x > 9\nx".into(), "!=", "0".into())
        );
        assert_eq!(
            split(r#"label_replace(up, "a", "<$1>", "b", "(.*)") == 0"#),
            (
                r#"label_replace(up, "a", "<$1>", "b", "(.*)")"#.into(),
                "==",
                "0".into()
            )
        );
        assert_eq!(split("a `b>` <= 1").1, "<=");
    }

    #[test]
    fn expressions_without_a_top_level_comparison_do_not_split() {
        for e in [
            "up",
            "a / b",
            "sum(rate(x[5m]))",
            "(a > 1)[5m:]",
            r#"x{a=">"}"#,
            "a > 1 or b > 2",
            "absent(up{job=\"x\"})",
        ] {
            assert_eq!(split_comparison(e), None, "{e:?}");
        }
    }

    #[test]
    fn modifiers_parentheses_and_set_operators_are_handled() {
        let c = split_comparison("a > bool 0.5").expect("splits");
        assert!(c.bool_modifier);
        assert_eq!(c.threshold(), Some(0.5));

        let c = split_comparison("a > on(instance) group_left(team) b").expect("splits");
        assert_eq!(c.matching, "on(instance) group_left(team)");
        assert_eq!(c.right, "b");
        assert_eq!(c.threshold(), None);

        assert_eq!(
            split("((a / b) > (0.9))"),
            ("a / b".into(), ">", "0.9".into())
        );
        assert_eq!(
            split("rate(errors[5m]) > 0.1 and on(job) up == 1"),
            ("rate(errors[5m])".into(), ">", "0.1".into())
        );
        assert_eq!(split("a > 1 unless b").0, "a");
        // Left-associative: (a > 1) < 5.
        assert_eq!(split("a > 1 < 5"), ("a > 1".into(), "<", "5".into()));
        // Label named like a set operator is not one.
        assert_eq!(split("sum by (or) (x) > 1").0, "sum by (or) (x)");
        assert_eq!(split("android_errors > 1").0, "android_errors");
    }

    #[test]
    fn a_number_on_the_left_reads_as_the_flipped_comparison() {
        let c = split_comparison("0.5 < free_ratio").expect("splits");
        assert_eq!(
            c.series_and_threshold(),
            Some(("free_ratio", ComparisonOp::Gt, 0.5))
        );
        let c = split_comparison("replication_lag_seconds >= -1e1").expect("splits");
        assert_eq!(c.threshold(), Some(-10.0));
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(parse_number("(1.5)"), Some(1.5));
        assert_eq!(parse_number("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("foo"), None);
        assert_eq!(parse_number("1m"), None);
    }
}
