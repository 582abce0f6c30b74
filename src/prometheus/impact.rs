//! The true impact start: when an alert's condition first became true, as opposed to
//! `startsAt`, when it *fired* (`for` later, plus evaluation lag).
//!
//! The rule's expression is re-evaluated over a range ending at `startsAt`, at the rule
//! group's evaluation interval; the start of the unbroken run of non-empty results that reaches
//! `startsAt` is the impact start ([`run_start`], pure), then narrowed by re-evaluating the
//! step before it at a tenth of the step. When that cannot be had, the fallbacks
//! are `startsAt − for`, then `startsAt`, and [`ImpactStart::method`] says which was used.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::client::{step_for_range, Client, Error, RangeSeries};
use super::rule::RuleContext;
use crate::incident::{ImpactMethod, LabelSet};

/// Knobs for the re-evaluation.
#[derive(Debug, Clone)]
pub struct ImpactOptions {
    /// A fixed resolution; overrides the rule group's interval.
    pub resolution: Option<Duration>,
    /// The step when neither `resolution` nor the group interval is known.
    pub default_step: Duration,
    /// First lookback is `for` + this (at least 10 steps).
    pub margin: Duration,
    /// The lookback doubles while the condition was true over all of it, up to this.
    pub max_lookback: Duration,
}

impl Default for ImpactOptions {
    fn default() -> Self {
        ImpactOptions {
            resolution: None,
            default_step: Duration::from_secs(15),
            margin: Duration::from_secs(300),
            max_lookback: Duration::from_secs(6 * 3600),
        }
    }
}

/// The answer: when, and how it was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpactStart {
    pub at: DateTime<Utc>,
    pub method: ImpactMethod,
    /// The step of the re-evaluation (its precision), when one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<f64>,
    /// The condition was already true at the start of the longest lookback: the impact began
    /// at `at` or earlier.
    pub at_or_before: bool,
    /// Why a fallback was used, for the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ImpactStart {
    /// `startsAt − for` when `for` is known, else `startsAt`.
    pub fn fallback(starts_at: DateTime<Utc>, rule_for: Option<Duration>) -> ImpactStart {
        match rule_for.and_then(|f| chrono::Duration::from_std(f).ok()) {
            Some(f) => ImpactStart {
                at: starts_at - f,
                method: ImpactMethod::StartsAtMinusFor,
                step_seconds: None,
                at_or_before: false,
                note: None,
            },
            None => ImpactStart {
                at: starts_at,
                method: ImpactMethod::StartsAt,
                step_seconds: None,
                at_or_before: false,
                note: None,
            },
        }
    }

    fn with_note(mut self, note: impl Into<String>) -> ImpactStart {
        self.note = Some(note.into());
        self
    }
}

/// The first timestamp of the unbroken run of samples that reaches `until`.
///
/// `true_at` are the times the condition held (sample timestamps of the comparison's result,
/// any order); on a grid of `step`, a gap of more than one step means the condition was false
/// (or absent) in between. The run "reaches" `until` when its last sample at or before `until`
/// is less than one step before it. `None` when no run reaches `until`.
pub fn run_start(
    true_at: &[DateTime<Utc>],
    until: DateTime<Utc>,
    step: Duration,
) -> Option<DateTime<Utc>> {
    let step = chrono::Duration::from_std(step).ok()?;
    // Half a step of slack absorbs millisecond rounding of grid timestamps.
    let max_gap = step + step / 2;
    let mut times: Vec<DateTime<Utc>> = true_at.iter().copied().filter(|t| *t <= until).collect();
    times.sort_unstable();
    times.dedup();
    let last = *times.last()?;
    if until - last >= max_gap {
        return None;
    }
    let mut start = last;
    for t in times.iter().rev().skip(1) {
        if start - *t >= max_gap {
            break;
        }
        start = *t;
    }
    Some(start)
}

/// Whether `series` (from the rule's expression) is the one behind an alert with
/// `alert_labels`: every label it has matches, except those the rule itself sets or overrides
/// and the metric name, which alerts drop.
fn series_matches_alert(
    series: &LabelSet,
    rule_labels: &LabelSet,
    alert_labels: &LabelSet,
) -> bool {
    series
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__" && !rule_labels.contains_key(*k))
        .all(|(k, v)| alert_labels.get(k) == Some(v))
}

/// The alert's own series among the results; a lone series is taken as it is.
fn alert_series<'a>(
    results: &'a [RangeSeries],
    rule: &RuleContext,
    alert_labels: &LabelSet,
) -> Option<&'a RangeSeries> {
    let mut matching = results
        .iter()
        .filter(|s| series_matches_alert(&s.metric, &rule.labels, alert_labels));
    match (matching.next(), results) {
        (Some(s), _) => Some(s),
        (None, [only]) => Some(only),
        _ => None,
    }
}

/// Re-evaluates `rule.expr` before `starts_at` and returns the impact start. A failed query
/// is an `Err` (ask [`Error::is_retryable`]; when giving up, use [`ImpactStart::fallback`]);
/// results that do not show the condition reaching `starts_at` give the fallback with a note.
pub async fn find_impact_start(
    client: &Client,
    rule: &RuleContext,
    alert_labels: &LabelSet,
    starts_at: DateTime<Utc>,
    options: &ImpactOptions,
) -> Result<ImpactStart, Error> {
    let fallback = ImpactStart::fallback(starts_at, rule.known_for());
    let wanted_step = options
        .resolution
        .or(rule.group_interval)
        .unwrap_or(options.default_step)
        .max(Duration::from_millis(1));
    let max_lookback = options.max_lookback.max(wanted_step);
    let mut lookback = (rule.for_ + options.margin)
        .max(wanted_step * 10)
        .min(max_lookback);
    loop {
        // Align the grid on starts_at so the last point is the firing evaluation itself.
        let n = lookback.as_millis().div_ceil(wanted_step.as_millis()) as u32;
        let range = chrono::Duration::from_std(wanted_step * n).unwrap_or(chrono::Duration::zero());
        let start = starts_at - range;
        let step = step_for_range(start, starts_at, wanted_step);
        let results = client
            .query_range(&rule.expr, start, starts_at, step)
            .await?;
        let Some(series) = alert_series(&results, rule, alert_labels) else {
            return Ok(fallback.with_note(format!(
                "re-evaluating the rule found no series for this alert ({} series)",
                results.len()
            )));
        };
        let times: Vec<DateTime<Utc>> = series.values.iter().map(|p| p.at).collect();
        let Some(at) = run_start(&times, starts_at, step) else {
            return Ok(fallback
                .with_note("re-evaluating the rule did not show the condition true at startsAt"));
        };
        let chrono_step = chrono::Duration::from_std(step).unwrap_or(chrono::Duration::zero());
        // Prometheus held the alert pending for `for`, so the condition was true by
        // startsAt − for; a later run start means the re-evaluation saw different data.
        if let Some(f) = rule
            .known_for()
            .and_then(|f| chrono::Duration::from_std(f).ok())
        {
            if at > starts_at - f + chrono_step {
                return Ok(fallback.with_note(format!(
                    "re-evaluation puts the start at {at}, after startsAt − for; using startsAt − for"
                )));
            }
        }
        let reaches_range_start = at - start < chrono_step / 2;
        if reaches_range_start && lookback < max_lookback {
            lookback = (lookback * 2).min(max_lookback);
            continue;
        }
        let (at, step) = if reaches_range_start {
            (at, step)
        } else {
            refine(client, rule, alert_labels, at, step).await
        };
        return Ok(ImpactStart {
            at,
            method: ImpactMethod::RuleReevaluation,
            step_seconds: Some(step.as_secs_f64()),
            at_or_before: reaches_range_start,
            note: None,
        });
    }
}

/// Narrows a run start found at `step` by re-evaluating the one step before it at a tenth of
/// the step (at least 100 ms): the condition became true somewhere in that step, and a finer
/// grid finds the first scrape that made it true. Any failure keeps the coarse answer.
async fn refine(
    client: &Client,
    rule: &RuleContext,
    alert_labels: &LabelSet,
    at: DateTime<Utc>,
    step: Duration,
) -> (DateTime<Utc>, Duration) {
    let fine = (step / 10).max(Duration::from_millis(100));
    let Ok(chrono_step) = chrono::Duration::from_std(step) else {
        return (at, step);
    };
    if fine >= step {
        return (at, step);
    }
    let Ok(results) = client
        .query_range(&rule.expr, at - chrono_step, at, fine)
        .await
    else {
        return (at, step);
    };
    let Some(series) = alert_series(&results, rule, alert_labels) else {
        return (at, step);
    };
    let times: Vec<DateTime<Utc>> = series.values.iter().map(|p| p.at).collect();
    match run_start(&times, at, fine) {
        Some(refined) if refined <= at => (refined, fine),
        _ => (at, step),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("test time")
    }

    fn grid(from: &str, n: i64, step_ms: i64) -> Vec<DateTime<Utc>> {
        (0..n)
            .map(|i| t(from) + chrono::Duration::milliseconds(i * step_ms))
            .collect()
    }

    #[test]
    fn the_run_reaching_the_end_starts_after_the_last_gap() {
        let mut times = grid("2026-01-01T00:00:00Z", 5, 1000); // 00..04
        times.extend(grid("2026-01-01T00:00:10Z", 8, 1000)); // 10..17
        let got = run_start(&times, t("2026-01-01T00:00:17Z"), Duration::from_secs(1));
        assert_eq!(got, Some(t("2026-01-01T00:00:10Z")));
    }

    #[test]
    fn a_run_that_ended_before_the_end_does_not_count() {
        let times = grid("2026-01-01T00:00:00Z", 5, 1000); // 00..04
        assert_eq!(
            run_start(&times, t("2026-01-01T00:00:06Z"), Duration::from_secs(1)),
            None
        );
        assert_eq!(
            run_start(&[], t("2026-01-01T00:00:06Z"), Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn samples_after_the_end_are_ignored_and_off_grid_ends_are_tolerated() {
        // Samples on a .381 grid, end at .738: last sample 0.357 s before the end.
        let times = grid("2026-01-01T00:00:03.381Z", 20, 1000);
        let got = run_start(
            &times,
            t("2026-01-01T00:00:08.738Z"),
            Duration::from_secs(1),
        );
        assert_eq!(got, Some(t("2026-01-01T00:00:03.381Z")));
    }

    #[test]
    fn unsorted_and_duplicated_input_gives_the_same_answer() {
        let mut times = grid("2026-01-01T00:01:00Z", 10, 15_000);
        times.reverse();
        times.push(times[3]);
        let got = run_start(&times, t("2026-01-01T00:03:15Z"), Duration::from_secs(15));
        assert_eq!(got, Some(t("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn a_single_missing_point_breaks_the_run() {
        let mut times = grid("2026-01-01T00:00:00Z", 10, 1000);
        times.remove(6); // 00:00:06 false
        let got = run_start(&times, t("2026-01-01T00:00:09Z"), Duration::from_secs(1));
        assert_eq!(got, Some(t("2026-01-01T00:00:07Z")));
    }

    #[test]
    fn fallback_uses_for_when_known_else_starts_at() {
        let s = t("2026-11-23T02:26:28.738Z");
        let f = ImpactStart::fallback(s, Some(Duration::from_secs(5)));
        assert_eq!(f.at, t("2026-11-23T02:26:23.738Z"));
        assert_eq!(f.method, ImpactMethod::StartsAtMinusFor);
        let f = ImpactStart::fallback(s, None);
        assert_eq!(f.at, s);
        assert_eq!(f.method, ImpactMethod::StartsAt);
    }

    #[test]
    fn the_alerts_series_is_chosen_by_labels_ignoring_rule_labels_and_name() {
        let ls = |pairs: &[(&str, &str)]| -> LabelSet {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let rule_labels = ls(&[("severity", "critical")]);
        let alert = ls(&[
            ("alertname", "X"),
            ("instance", "b"),
            ("severity", "critical"),
        ]);
        assert!(series_matches_alert(
            &ls(&[("__name__", "up"), ("instance", "b"), ("severity", "info")]),
            &rule_labels,
            &alert
        ));
        assert!(!series_matches_alert(
            &ls(&[("instance", "a")]),
            &rule_labels,
            &alert
        ));
    }
}
