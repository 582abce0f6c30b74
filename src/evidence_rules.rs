//! The `rules/` directory: YAML files whose entries match alerts by labels and say which
//! queries to snapshot and chart for them, which impact figures to compute, the SLO the
//! service is held to, and the action items humans usually write for that failure mode.
//!
//! ```yaml
//! rules:
//!   - name: connection-pool-exhaustion
//!     matchers: ['alertname=~"DatabaseConnectionPool.*"']
//!     queries:
//!       - name: pool_utilisation
//!         title: Connection pool utilisation
//!         query: db_connection_pool_active{service="{{labels.service}}"} / db_connection_pool_max{service="{{labels.service}}"}
//!         unit: ratio
//!         direction: higher_is_worse
//!     impact:
//!       - name: failed_requests
//!         query: sum(increase(http_requests_total{service="{{labels.service}}",code=~"5.."}[{{range}}]))
//!         unit: count
//!     slo: {target: 99.9, window: 30d}
//!     actions:
//!       - "Check the pool's size"                  # always, priority medium
//!       - action: Set a statement timeout on the service's database connections
//!         priority: high                           # high | medium | low
//!         crossed: pool_utilisation                # only if that query crossed its threshold
//!         longer_than: 5m                          # only if the incident lasted this long
//! ```
//!
//! Loading is strict (unknown keys, bad units, bad regexes, unknown placeholders are errors
//! naming the file and the entry); matching and rendering are pure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::incident::LabelSet;
use crate::time::{format_duration, parse_prom_duration};

/// The unit of a query's values, which decides how they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Values already in percent (97 means 97 %).
    #[serde(rename = "percent")]
    Percent,
    /// Values in 0..1, printed as percent (0.97 → 97 %).
    #[serde(rename = "ratio")]
    Ratio,
    #[serde(rename = "seconds")]
    Seconds,
    /// Printed with binary prefixes (1.2 GiB).
    #[serde(rename = "bytes")]
    Bytes,
    #[serde(rename = "requests/s")]
    RequestsPerSecond,
    /// A plain number (connections, errors, queries).
    #[serde(rename = "count")]
    Count,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Percent => "percent",
            Unit::Ratio => "ratio",
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::RequestsPerSecond => "requests/s",
            Unit::Count => "count",
        }
    }
}

/// Which way is bad: decides what "peak" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsWorse,
    LowerIsWorse,
}

/// Why `rules/` could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The directory or a file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not fit the format (unknown key, wrong type, bad unit...).
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    /// An entry is well-formed YAML but wrong (bad matcher, regex, placeholder, SLO...).
    #[error("{}: rule {entry:?}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        entry: String,
        message: String,
    },
}

/// A query could not be rendered for an alert (a label it uses is missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query {query:?} of rule {entry:?} uses label {label:?}, which the alert does not have")]
pub struct RenderError {
    pub entry: String,
    pub query: String,
    pub label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    #[serde(default)]
    description: Option<String>,
    matchers: Vec<String>,
    #[serde(default)]
    alert_unit: Option<Unit>,
    #[serde(default)]
    queries: Vec<RawQuery>,
    #[serde(default)]
    impact: Vec<RawQuery>,
    #[serde(default)]
    slo: Option<RawSlo>,
    #[serde(default)]
    actions: Vec<RawAction>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAction {
    Text(String),
    Full(RawActionSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActionSpec {
    action: String,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    crossed: Option<String>,
    #[serde(default)]
    longer_than: Option<String>,
}

/// How urgent a suggested action item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Medium,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

/// A suggested action item and when it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionSpec {
    pub action: String,
    pub priority: Priority,
    /// Only when this query (of the entry, with a threshold) crossed its threshold.
    pub crossed: Option<String>,
    /// Only when the incident lasted at least this long.
    pub longer_than: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    name: String,
    #[serde(default)]
    title: Option<String>,
    query: String,
    unit: Unit,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    threshold: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    target: f64,
    window: String,
}

/// A label matcher, Alertmanager style: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Matcher {
    /// Parses `name op value`; the value may be double-quoted (with `\"` escapes) or bare.
    /// Regexes are anchored like Prometheus's.
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let s = s.trim();
        let name_len = s
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len == 0 || s.as_bytes()[0].is_ascii_digit() {
            return Err(format!("matcher {s:?}: expected a label name first"));
        }
        let name = s[..name_len].to_string();
        let rest = s[name_len..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(format!(
                "matcher {s:?}: expected =, !=, =~ or !~ after {name:?}"
            ));
        };
        let rest = rest.trim();
        let value = if let Some(q) = rest.strip_prefix('"') {
            let inner = q
                .strip_suffix('"')
                .ok_or_else(|| format!("matcher {s:?}: unterminated quoted value"))?;
            unescape(inner)
        } else {
            rest.to_string()
        };
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher {s:?}: bad regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// A missing label matches as the empty string, as in Prometheus and Alertmanager.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One piece of a query template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Label(String),
    Range,
}

/// A query with `{{labels.NAME}}` and `{{range}}` placeholders, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {source:?}"))?;
            let name = after[..close].trim();
            if name == "range" {
                pieces.push(Piece::Range);
            } else if let Some(label) = name.strip_prefix("labels.") {
                let valid = !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(format!("bad label name in {{{{{name}}}}}"));
                }
                pieces.push(Piece::Label(label.to_string()));
            } else {
                return Err(format!(
                    "unknown placeholder {{{{{name}}}}}: use {{{{labels.NAME}}}} or {{{{range}}}}"
                ));
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            pieces,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fills the placeholders. Label values are escaped for a double-quoted PromQL string
    /// (the usual place: `{service="{{labels.service}}"}`); `range` is a Prometheus duration.
    /// `Err(label)` names a missing label.
    pub fn render(&self, labels: &LabelSet, range: Duration) -> Result<String, String> {
        let mut out = String::with_capacity(self.source.len());
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Range => out.push_str(&format_duration(range.max(Duration::from_secs(1)))),
                Piece::Label(name) => {
                    let v = labels.get(name).ok_or_else(|| name.clone())?;
                    out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\""));
                }
            }
        }
        Ok(out)
    }
}

/// A named query of an entry.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub name: String,
    pub title: Option<String>,
    pub query: Template,
    pub unit: Unit,
    pub direction: Direction,
    pub threshold: Option<f64>,
}

impl QuerySpec {
    /// The title, or the name when none was given.
    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }
}

/// A service level objective: `target` percent good over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    pub target: f64,
    #[serde(serialize_with = "ser_secs")]
    pub window: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Slo {
    /// The error budget as time: `(1 − target) × window` (43.2 min for 99.9 % over 30 d).
    pub fn budget(&self) -> Duration {
        self.window.mul_f64((1.0 - self.target / 100.0).max(0.0))
    }

    /// Share of the budget a full outage of `downtime` used (0.28 = 28 %).
    pub fn budget_used_by_downtime(&self, downtime: Duration) -> f64 {
        let budget = self.budget().as_secs_f64();
        if budget <= 0.0 {
            return f64::INFINITY;
        }
        downtime.as_secs_f64() / budget
    }

    /// Share of the budget `failed` requests used, given all requests over the SLO window.
    pub fn budget_used_by_requests(&self, failed: f64, total_in_window: f64) -> Option<f64> {
        let allowed = total_in_window * (1.0 - self.target / 100.0);
        (allowed > 0.0).then(|| failed / allowed)
    }
}

/// One entry of a rules/ file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub matchers: Vec<Matcher>,
    /// The unit of the alert expression's measured side (`A` in `A > B`), when known.
    pub alert_unit: Option<Unit>,
    pub queries: Vec<QuerySpec>,
    pub impact: Vec<QuerySpec>,
    pub slo: Option<Slo>,
    pub actions: Vec<ActionSpec>,
}

impl Entry {
    /// All matchers hold for `labels`.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// All entries of a rules/ directory, in file then entry order.
#[derive(Debug, Clone, Default)]
pub struct EvidenceRules {
    pub entries: Vec<Entry>,
}

impl EvidenceRules {
    /// Loads every `*.yaml` / `*.yml` in `dir`, in file-name order. Entry names must be
    /// unique across the directory.
    pub fn load_dir(dir: &Path) -> Result<EvidenceRules, RulesError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RulesError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml") | Some("yml")
                    )
            })
            .collect();
        files.sort();
        let mut rules = EvidenceRules::default();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(io(&file))?;
            for entry in parse_file(&file, &text)? {
                if let Some(prev) = rules.entries.iter().find(|e| e.name == entry.name) {
                    return Err(RulesError::Invalid {
                        file: file.clone(),
                        entry: entry.name.clone(),
                        message: format!("name already used in {}", prev.file.display()),
                    });
                }
                rules.entries.push(entry);
            }
        }
        Ok(rules)
    }

    /// Entries whose matchers all hold for the alert's labels.
    pub fn matching<'a>(&'a self, labels: &'a LabelSet) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.matches(labels))
    }
}

/// Parses one file's text; `file` is only used in errors.
pub fn parse_file(file: &Path, text: &str) -> Result<Vec<Entry>, RulesError> {
    let de = serde_norway::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| RulesError::Parse {
        file: file.to_path_buf(),
        message: format!("at {}: {}", e.path(), e.inner()),
    })?;
    let mut out: Vec<Entry> = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let name = if r.name.trim().is_empty() {
            format!("#{}", i + 1)
        } else {
            r.name.clone()
        };
        let invalid = |message: String| RulesError::Invalid {
            file: file.to_path_buf(),
            entry: name.clone(),
            message,
        };
        if r.name.trim().is_empty() {
            return Err(invalid("name must not be empty".into()));
        }
        if out.iter().any(|e| e.name == r.name) {
            return Err(invalid("name used twice in this file".into()));
        }
        if r.matchers.is_empty() {
            return Err(invalid(
                "needs at least one matcher (use alertname=~\".+\" to match every alert)".into(),
            ));
        }
        let matchers = r
            .matchers
            .iter()
            .map(|m| Matcher::parse(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let queries = convert_queries(r.queries, "queries").map_err(invalid)?;
        let impact = convert_queries(r.impact, "impact").map_err(invalid)?;
        if let Some(q) = queries
            .iter()
            .find(|q| impact.iter().any(|i| i.name == q.name))
        {
            return Err(invalid(format!(
                "query name {:?} used in both queries and impact",
                q.name
            )));
        }
        let slo = match r.slo {
            None => None,
            Some(s) => {
                if !(s.target > 0.0 && s.target < 100.0) {
                    return Err(invalid(format!(
                        "slo.target {} must be a percentage strictly between 0 and 100 (e.g. 99.9)",
                        s.target
                    )));
                }
                let window = parse_prom_duration(&s.window)
                    .map_err(|e| invalid(format!("slo.window: {e}")))?;
                if window.is_zero() {
                    return Err(invalid("slo.window must be positive".into()));
                }
                Some(Slo {
                    target: s.target,
                    window,
                })
            }
        };
        let mut actions = Vec::with_capacity(r.actions.len());
        for a in r.actions {
            let spec = match a {
                RawAction::Text(action) => RawActionSpec {
                    action,
                    priority: None,
                    crossed: None,
                    longer_than: None,
                },
                RawAction::Full(spec) => spec,
            };
            if spec.action.trim().is_empty() {
                return Err(invalid("actions must not contain empty items".into()));
            }
            if let Some(q) = &spec.crossed {
                if !queries
                    .iter()
                    .any(|s| &s.name == q && s.threshold.is_some())
                {
                    return Err(invalid(format!(
                        "action {:?}: crossed: {q} names no query of this entry with a threshold",
                        spec.action
                    )));
                }
            }
            let longer_than =
                match &spec.longer_than {
                    Some(d) => Some(parse_prom_duration(d).map_err(|e| {
                        invalid(format!("action {:?}: longer_than: {e}", spec.action))
                    })?),
                    None => None,
                };
            actions.push(ActionSpec {
                action: spec.action,
                priority: spec.priority.unwrap_or(Priority::Medium),
                crossed: spec.crossed,
                longer_than,
            });
        }
        out.push(Entry {
            name: r.name,
            file: file.to_path_buf(),
            description: r.description,
            matchers,
            alert_unit: r.alert_unit,
            queries,
            impact,
            slo,
            actions,
        });
    }
    Ok(out)
}

fn convert_queries(raw: Vec<RawQuery>, section: &str) -> Result<Vec<QuerySpec>, String> {
    let mut out: Vec<QuerySpec> = Vec::with_capacity(raw.len());
    for q in raw {
        let valid_name = !q.name.is_empty()
            && q.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            // Names become chart file names, so keep them URL- and file-safe.
            return Err(format!(
                "{section}: name {:?} must be letters, digits, '_' or '-'",
                q.name
            ));
        }
        if out.iter().any(|o| o.name == q.name) {
            return Err(format!("{section}: name {:?} used twice", q.name));
        }
        if q.query.trim().is_empty() {
            return Err(format!("{section}.{}: query must not be empty", q.name));
        }
        let query = Template::parse(&q.query).map_err(|e| format!("{section}.{}: {e}", q.name))?;
        out.push(QuerySpec {
            name: q.name,
            title: q.title,
            query,
            unit: q.unit,
            direction: q.direction.unwrap_or(Direction::HigherIsWorse),
            threshold: q.threshold,
        });
    }
    Ok(out)
}

/// Renders `spec` for an alert; the error names the entry, the query and the missing label.
pub fn render_query(
    entry: &Entry,
    spec: &QuerySpec,
    labels: &LabelSet,
    range: Duration,
) -> Result<String, RenderError> {
    spec.query
        .render(labels, range)
        .map_err(|label| RenderError {
            entry: entry.name.clone(),
            query: spec.name.clone(),
            label,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> Result<Vec<Entry>, RulesError> {
        parse_file(Path::new("rules/test.yaml"), text)
    }

    const GOOD: &str = r#"
rules:
  - name: pool
    matchers: ['alertname=~"DatabaseConnectionPool.*"', 'service!=""']
    alert_unit: ratio
    queries:
      - name: pool_ratio
        title: Pool utilisation
        query: 'db_connection_pool_active{service="{{labels.service}}"} / db_connection_pool_max{service="{{ labels.service }}"}'
        unit: ratio
        direction: higher_is_worse
        threshold: 0.95
    impact:
      - name: failed_requests
        query: 'sum(increase(http_requests_total{service="{{labels.service}}",code=~"5.."}[{{range}}]))'
        unit: count
    slo: {target: 99.9, window: 30d}
    actions: [Add a statement timeout]
"#;

    #[test]
    fn a_good_file_loads_and_matches_by_equality_and_regex() {
        let entries = parse(GOOD).expect("loads");
        let e = &entries[0];
        assert_eq!(e.queries[0].display_title(), "Pool utilisation");
        assert_eq!(e.impact[0].direction, Direction::HigherIsWorse);
        assert!(e.matches(&labels(&[
            ("alertname", "DatabaseConnectionPoolHigh"),
            ("service", "payment-service")
        ])));
        // Regexes are anchored.
        assert!(!e.matches(&labels(&[
            ("alertname", "XDatabaseConnectionPoolHigh"),
            ("service", "payment-service")
        ])));
        // service!="" fails when the label is missing.
        assert!(!e.matches(&labels(&[("alertname", "DatabaseConnectionPoolHigh")])));
    }

    #[test]
    fn action_items_carry_a_priority_and_the_conditions_under_which_they_apply() {
        let text = GOOD.replace(
            "    actions: [Add a statement timeout]",
            "    actions:\n      - Plain\n      - action: Timeout\n        priority: high\n        crossed: pool_ratio\n        longer_than: 5m\n",
        );
        let e = &parse(&text).expect("loads")[0];
        assert_eq!(
            e.actions,
            [
                ActionSpec {
                    action: "Plain".into(),
                    priority: Priority::Medium,
                    crossed: None,
                    longer_than: None,
                },
                ActionSpec {
                    action: "Timeout".into(),
                    priority: Priority::High,
                    crossed: Some("pool_ratio".into()),
                    longer_than: Some(Duration::from_secs(300)),
                },
            ]
        );
        for (bad, says) in [
            (
                "crossed: nothing",
                "names no query of this entry with a threshold",
            ),
            ("longer_than: soon", "longer_than"),
            ("priority: urgent", "unknown"),
        ] {
            let text = GOOD.replace(
                "    actions: [Add a statement timeout]",
                &format!("    actions:\n      - action: X\n        {bad}\n"),
            );
            let err = parse(&text).map(|_| ()).expect_err(bad).to_string();
            assert!(
                err.contains(says) || bad.starts_with("priority"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn queries_render_with_escaped_labels_and_the_window_as_a_duration() {
        let entries = parse(GOOD).expect("loads");
        let e = &entries[0];
        let l = labels(&[("service", r#"pay"ment"#)]);
        let q = render_query(e, &e.impact[0], &l, Duration::from_secs(754)).expect("renders");
        assert_eq!(
            q,
            r#"sum(increase(http_requests_total{service="pay\"ment",code=~"5.."}[12m34s]))"#
        );
        let q = render_query(e, &e.queries[0], &l, Duration::ZERO).expect("renders");
        assert!(
            q.ends_with(r#"db_connection_pool_max{service="pay\"ment"}"#),
            "{q}"
        );
        let err = render_query(e, &e.queries[0], &LabelSet::new(), Duration::ZERO).unwrap_err();
        assert_eq!(err.label, "service");
        assert!(err.to_string().contains("pool_ratio"));
    }

    #[test]
    fn unknown_keys_and_bad_units_are_errors_naming_the_file_and_place() {
        let err = parse(&GOOD.replace("unit: count", "unit: counts"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("rules/test.yaml: at rules[0].impact[0].unit"),
            "{err}"
        );
        let err = parse(&GOOD.replace("direction: higher_is_worse", "directon: higher_is_worse"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rules[0].queries[0]") && err.contains("directon"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_name_the_entry() {
        let cases = [
            (
                GOOD.replace(r#"=~"DatabaseConnectionPool.*""#, r#"=~"(""#),
                "bad regex",
            ),
            (
                GOOD.replace("{{range}}", "{{window}}"),
                "unknown placeholder",
            ),
            (GOOD.replace("target: 99.9", "target: 100"), "slo.target"),
            (GOOD.replace("window: 30d", "window: 30 days"), "slo.window"),
            (
                GOOD.replace("name: pool_ratio", "name: pool ratio"),
                "must be letters",
            ),
            (
                GOOD.replace("name: failed_requests", "name: pool_ratio"),
                "both",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, RulesError::Invalid { .. }), "{msg}");
            assert!(msg.starts_with("rules/test.yaml: rule \"pool\": "), "{msg}");
            assert!(msg.contains(want), "{msg} should contain {want}");
        }
        let err = parse("rules:\n  - name: x\n    matchers: []\n").unwrap_err();
        assert!(err.to_string().contains("at least one matcher"));
    }

    #[test]
    fn matchers_parse_alertmanager_style() {
        let m = Matcher::parse(r#"severity =~ "critical|page""#).expect("parses");
        assert_eq!((m.op, m.value.as_str()), (MatchOp::Regex, "critical|page"));
        assert!(m.matches(&labels(&[("severity", "page")])));
        let m = Matcher::parse("team=payments").expect("bare value");
        assert!(m.matches(&labels(&[("team", "payments")])));
        let m = Matcher::parse(r#"x!~"a.*""#).expect("parses");
        assert!(m.matches(&LabelSet::new()));
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse("a>b").is_err());
        assert!(Matcher::parse(r#"a="unterminated"#).is_err());
    }

    #[test]
    fn slo_budget_is_the_allowed_bad_time_or_requests() {
        let slo = Slo {
            target: 99.9,
            window: Duration::from_secs(30 * 86400),
        };
        assert_eq!(slo.budget().as_secs(), 2592); // 43.2 minutes
        let used = slo.budget_used_by_downtime(Duration::from_secs(12 * 60));
        assert!((used - 0.2777).abs() < 0.001, "{used}");
        let used = slo
            .budget_used_by_requests(1200.0, 1_000_000.0)
            .expect("traffic");
        assert!((used - 1.2).abs() < 1e-9, "{used}");
        assert_eq!(slo.budget_used_by_requests(1.0, 0.0), None);
    }

    #[test]
    fn the_shipped_rules_directory_loads_and_covers_the_examples_failure_modes() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"));
        let rules = EvidenceRules::load_dir(dir).expect("shipped rules/ load");
        let service =
            |alertname: &str| labels(&[("alertname", alertname), ("service", "payment-service")]);
        for alert in [
            "DatabaseConnectionPoolHigh",
            "HighErrorRate",
            "HighRequestLatency",
            "SlowQueries",
            "ReplicationLagHigh",
        ] {
            let l = service(alert);
            let matched: Vec<&Entry> = rules.matching(&l).collect();
            assert!(!matched.is_empty(), "no rules/ entry matches {alert}");
            for e in matched {
                assert!(!e.queries.is_empty() && !e.actions.is_empty(), "{}", e.name);
                for q in e.queries.iter().chain(&e.impact) {
                    let mut l = l.clone();
                    // Entries may use more labels than these; give them the common ones.
                    for k in ["instance", "job", "namespace", "pool", "datname"] {
                        l.entry(k.to_string()).or_insert_with(|| "x".to_string());
                    }
                    let r = render_query(e, q, &l, Duration::from_secs(600));
                    let rendered = r.unwrap_or_else(|err| panic!("{err}"));
                    assert!(!rendered.contains("{{"), "{rendered}");
                }
            }
        }
    }
}
