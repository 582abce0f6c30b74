//! Reports across incidents: per service and per ISO week or calendar month, how many
//! incidents there were and how fast they were detected, acknowledged and resolved (MTTD,
//! MTTA, MTTR and duration: mean, p50 and p90, each with how many incidents it counts and how
//! many it leaves out), which alerts fire most and which incidents flap most.
//!
//! Pure: [`build`] computes a [`Report`] from the rows the store reads
//! ([`crate::store::Store::report_rows`]); the figures of one incident are the domain's
//! ([`crate::incident::ResponseTimes`]), never recomputed here.
//!
//! - An incident belongs to the range and to the period in which its first alert fired
//!   (`fired_at`, Alertmanager's `startsAt`): that instant never moves once known, unlike the
//!   impact start, which evidence may refine later.
//! - Periods are ISO weeks (Monday 00:00) or calendar months, in the display time zone the
//!   drafts use (`postmortem.timezone`); the first and last may be cut by the range
//!   (`partial`).
//! - A figure counts only the incidents it is known for: TTA leaves out incidents nobody
//!   acknowledged, TTR and duration those not resolved yet, TTD and duration those whose
//!   impact start is unknown. `n` says how many counted, `excluded` how many did not.
//! - Percentiles are nearest-rank: p90 is the smallest value at least 90% of the counted
//!   incidents do not exceed. Figures are exact, whatever the number of incidents.
//! - Services are listed by most incidents, at most [`TOP_SERVICES`] (over the range and in
//!   each period); the others are summed in `other_services`, which says how many they are.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

use crate::incident::{Status, Timestamp};
use crate::store::{AlertTally, IncidentSummary, ReportQuery, ReportRows};

/// How many alerts and flapping incidents a report lists.
pub const TOP: usize = 10;
/// How many alerts each service's figures list.
pub const TOP_PER_SERVICE: usize = 5;
/// How many services a report lists, most incidents first, over the range and in each
/// period; the others are summed in one row (`other_services`) that says how many they are.
pub const TOP_SERVICES: usize = 20;
/// How many services each of the top alerts names (`services_total` says how many there are).
pub const SERVICES_PER_ALERT: usize = 10;

/// The length of a report's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// ISO weeks, Monday to Monday.
    Week,
    /// Calendar months.
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The first day of the period holding `day`.
    fn first_day(self, day: NaiveDate) -> NaiveDate {
        match self {
            Period::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Period::Month => day.with_day(1).unwrap_or(day),
        }
    }

    /// The first day of the next period.
    fn next(self, first: NaiveDate) -> NaiveDate {
        match self {
            Period::Week => first + Duration::days(7),
            Period::Month => first
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(NaiveDate::MAX),
        }
    }

    /// `2026-W48` or `2026-11`.
    fn label(self, first: NaiveDate) -> String {
        match self {
            Period::Week => {
                let w = first.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Month => first.format("%Y-%m").to_string(),
        }
    }
}

/// What the figures mean, stated in every report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Definitions {
    pub period: &'static str,
    pub ttd: &'static str,
    pub tta: &'static str,
    pub ttr: &'static str,
    pub duration: &'static str,
    pub percentiles: &'static str,
}

pub const DEFINITIONS: Definitions = Definitions {
    period: "an incident counts in the period in which its first alert fired (startsAt), \
             periods in the report's time zone",
    ttd: "time to detect = detected_at - impact_start; incidents whose impact start is \
          unknown are excluded",
    tta: "time to acknowledge = acknowledged_at - detected_at; incidents nobody acknowledged \
          are excluded",
    ttr: "time to resolve = resolved_at - detected_at; incidents not resolved, or resolved \
          before incidentd was first notified (a late delivery), are excluded",
    duration: "duration = resolved_at - impact_start; incidents not resolved, or whose impact \
               start is unknown, are excluded",
    percentiles: "nearest rank over the incidents counted (n)",
};

/// One figure over a set of incidents, in seconds; `None` when no incident counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stat {
    /// Incidents the figure is known for.
    pub n: u64,
    /// Incidents left out because the figure is not known for them (yet).
    pub excluded: u64,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl Stat {
    /// The figure over `millis` (whole milliseconds, as the domain measures them), `total`
    /// incidents in all. Reorders `millis`. Exact and independent of their order:
    /// percentiles are found by selection, the mean sums whole milliseconds.
    fn of(millis: &mut [i64], total: u64) -> Stat {
        let n = millis.len();
        let seconds = |ms: i64| ms as f64 / 1000.0;
        let (p50, p90) = if n == 0 {
            (None, None)
        } else {
            let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            let (r50, r90) = (rank(0.5), rank(0.9));
            let p50 = *millis.select_nth_unstable(r50).1;
            // Everything after `r50` is at least p50: p90 is found among those.
            let p90 = match r90 - r50 {
                0 => p50,
                d => *millis[r50 + 1..].select_nth_unstable(d - 1).1,
            };
            (Some(seconds(p50)), Some(seconds(p90)))
        };
        let sum: i128 = millis.iter().map(|&ms| i128::from(ms)).sum();
        Stat {
            n: n as u64,
            excluded: total.saturating_sub(n as u64),
            mean_seconds: (n > 0).then(|| sum as f64 / n as f64 / 1000.0),
            p50_seconds: p50,
            p90_seconds: p90,
        }
    }
}

/// An incident as a report counts it, copied once from its summary into a compact row: a
/// report passes over 100,000 of these several times (the range, its periods, their
/// services), in order, with nothing to follow but the row itself.
struct Measured {
    fired_at: Timestamp,
    service: u32,
    reopen_count: u32,
    status: Status,
    /// Its four figures in whole milliseconds ([`crate::incident::ResponseTimes::millis`],
    /// in that order), [`UNMEASURED`] where not known. A negative span (an incident resolved
    /// before incidentd first heard of it, as after a delivery backlog) measured nothing:
    /// excluded, as the draft says "none".
    millis: [i64; 4],
}

/// A figure not known for an incident ([`Measured::millis`]).
const UNMEASURED: i64 = -1;

impl Measured {
    fn of(summary: &IncidentSummary) -> Measured {
        Measured {
            fired_at: summary.fired_at,
            service: summary.service,
            reopen_count: summary.reopen_count,
            status: summary.status,
            millis: summary
                .millis
                .map(|ms| ms.filter(|ms| *ms >= 0).unwrap_or(UNMEASURED)),
        }
    }
}

/// The values of the four figures of a set of incidents, kept between sets so that a report
/// allocates them once.
type Buffers = [Vec<i64>; 4];

/// The figures of a set of incidents.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub incidents: u64,
    /// Of those, how many are still open, acknowledged, resolved now.
    pub open: u64,
    pub acknowledged: u64,
    pub resolved: u64,
    /// Reopenings summed over the incidents.
    pub reopens: u64,
    pub ttd: Stat,
    pub tta: Stat,
    pub ttr: Stat,
    pub duration: Stat,
}

impl Figures {
    /// The figures of `incidents`, in one pass over them (`buffers`: any content, reused).
    fn of<'m>(incidents: impl IntoIterator<Item = &'m Measured>, buffers: &mut Buffers) -> Figures {
        let mut f = Figures::default();
        buffers.iter_mut().for_each(Vec::clear);
        for i in incidents {
            f.incidents += 1;
            match i.status {
                Status::Open => f.open += 1,
                Status::Acknowledged => f.acknowledged += 1,
                Status::Resolved => f.resolved += 1,
            }
            f.reopens += u64::from(i.reopen_count);
            for (values, ms) in buffers.iter_mut().zip(i.millis) {
                if ms != UNMEASURED {
                    values.push(ms);
                }
            }
        }
        let [ttd, tta, ttr, duration] = buffers;
        let total = f.incidents;
        f.ttd = Stat::of(ttd, total);
        f.tta = Stat::of(tta, total);
        f.ttr = Stat::of(ttr, total);
        f.duration = Stat::of(duration, total);
        f
    }
}

/// One alert's share of the incidents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    pub alertname: String,
    /// Incidents it took part in.
    pub incidents: u64,
    /// Its firing episodes (one per `startsAt`), over those incidents.
    pub firings: u64,
    /// The services of those incidents (`null`: incidents without one), those where it took
    /// part in most incidents first, at most [`SERVICES_PER_ALERT`].
    pub services: Vec<Option<String>>,
    /// How many services there are in all.
    pub services_total: u64,
}

/// An incident that reopened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlapRow {
    pub id: String,
    pub title: String,
    pub service: Option<String>,
    pub severity: Option<String>,
    pub status: Status,
    pub fired_at: Timestamp,
    /// How many times an alert fired again after every alert had resolved.
    pub reopen_count: u32,
}

/// One service's figures (`service: null`: incidents without a service).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceFigures {
    pub service: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The services a list leaves out, summed: how many, and their figures together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherServices {
    pub services: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A service over the whole range: its figures and the alerts that fire most in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceReport {
    pub service: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
    pub top_alerts: Vec<AlertRow>,
}

/// One week or month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodReport {
    /// `2026-W48` (ISO week) or `2026-11`.
    pub label: String,
    /// Its bounds, 00:00 of its first day and of the next period's, in the report's zone.
    pub start: Timestamp,
    pub end: Timestamp,
    /// Whether the range cuts it (the counts cover only the part inside the range).
    pub partial: bool,
    #[serde(flatten)]
    pub figures: Figures,
    /// Per service, services with incidents in the period only, most incidents first, at
    /// most [`TOP_SERVICES`].
    pub services: Vec<ServiceFigures>,
    /// The period's other services, summed (`null`: none left out).
    pub other_services: Option<OtherServices>,
}

/// Figures across incidents over a range of time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The range: incidents whose first alert fired in `[since, until)`.
    pub since: Timestamp,
    pub until: Timestamp,
    pub by: Period,
    /// The one service reported on, or `null` for all.
    pub service: Option<String>,
    /// The zone periods are cut in (IANA name).
    pub timezone: String,
    /// When the figures were read: open incidents' figures may still change.
    pub generated_at: Timestamp,
    pub definitions: Definitions,
    /// Every incident in the range.
    pub total: Figures,
    /// Per service over the range, most incidents first (then by name), at most
    /// [`TOP_SERVICES`].
    pub services: Vec<ServiceReport>,
    /// The other services, summed (`null`: none left out).
    pub other_services: Option<OtherServices>,
    /// Every period overlapping the range, oldest first, empty ones included.
    pub periods: Vec<PeriodReport>,
    /// The alerts that fire most, by firings then incidents.
    pub top_alerts: Vec<AlertRow>,
    /// The incidents that reopened most (reopened at least once).
    pub top_flapping: Vec<FlapRow>,
}

/// 00:00 of `day` in `zone` (the first instant of the day when a DST gap skips midnight).
fn start_of(day: NaiveDate, zone: Tz) -> Timestamp {
    let mut at = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(t) = zone.from_local_datetime(&at).earliest() {
            return t.with_timezone(&chrono::Utc);
        }
        at += Duration::minutes(30);
    }
    at.and_utc()
}

fn day_in(at: Timestamp, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// One alert name's incidents, firings, and services (index, incidents).
type NameTally = (u64, u64, Vec<(u32, u64)>);

/// The alerts of `tallies` summed by name, most firings then incidents first, at most `limit`.
fn top_alerts<'a>(
    rows: &ReportRows,
    tallies: impl Iterator<Item = &'a AlertTally>,
    limit: usize,
) -> Vec<AlertRow> {
    // Per name: incidents, firings, and its services with their incidents. Indexes, not
    // strings: an alert that fires for 100,000 services stays linear.
    let mut by_name: Vec<NameTally> = vec![Default::default(); rows.alertnames.len()];
    for t in tallies {
        let (incidents, firings, services) = &mut by_name[t.alertname as usize];
        *incidents += t.incidents;
        *firings += t.firings;
        services.push((t.service, t.incidents));
    }
    let name = |i: usize| rows.alertnames[i].as_deref().unwrap_or_default();
    let mut order: Vec<usize> = (0..by_name.len()).filter(|&i| by_name[i].0 > 0).collect();
    order.sort_by(|&a, &b| {
        (by_name[b].1, by_name[b].0)
            .cmp(&(by_name[a].1, by_name[a].0))
            .then_with(|| name(a).cmp(name(b)))
    });
    order.truncate(limit);
    order
        .into_iter()
        .map(|i| {
            let (incidents, firings, services) = &by_name[i];
            // A service appears once per name in the tallies: most incidents first.
            let total = services.len() as u64;
            let services = first_k(services.iter().copied(), SERVICES_PER_ALERT, |a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| {
                        cmp_service(
                            rows.services[a.0 as usize].as_deref(),
                            rows.services[b.0 as usize].as_deref(),
                        )
                    })
                    .is_lt()
            });
            AlertRow {
                alertname: name(i).to_string(),
                incidents: *incidents,
                firings: *firings,
                services_total: total,
                services: services
                    .iter()
                    .take(SERVICES_PER_ALERT)
                    .map(|(s, _)| service_name(rows, *s))
                    .collect(),
            }
        })
        .collect()
}

/// The name of service `i` of `rows`, as a report shows it.
fn service_name(rows: &ReportRows, i: u32) -> Option<String> {
    rows.services[i as usize].as_deref().map(str::to_string)
}

/// Services by name, incidents without one last.
fn cmp_service(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// The first `k` of `items` in the strict order `before`, in that order. One pass, each item
/// compared with the last one kept: 100,000 services with one incident each stay linear.
fn first_k<T: Copy>(
    items: impl Iterator<Item = T>,
    k: usize,
    before: impl Fn(T, T) -> bool,
) -> Vec<T> {
    let mut kept: Vec<T> = Vec::with_capacity(k + 1);
    for item in items {
        if kept.len() == k && kept.last().is_none_or(|&last| !before(item, last)) {
            continue;
        }
        let at = kept.partition_point(|&t| before(t, item));
        kept.insert(at, item);
        kept.truncate(k);
    }
    kept
}

/// Incidents per service, for one set of incidents at a time ([`Self::split`]). Its vectors
/// are as long as the services and made once per report; each set clears only the services
/// it touched, so a week of 20,000 incidents among 100,000 services costs its own 20,000.
struct ServiceCounts {
    /// Incidents per service index in the current set.
    counts: Vec<u32>,
    /// The place of a listed service among [`Split::listed`]; `u32::MAX`: not listed.
    place: Vec<u32>,
    /// The services with incidents in the current set.
    touched: Vec<u32>,
}

/// A set of incidents by service: the [`TOP_SERVICES`] with most incidents (then by name),
/// in that order, each with its incidents, and how many other services have incidents.
struct Split<'m> {
    listed: Vec<(u32, Vec<&'m Measured>)>,
    others: u64,
}

impl ServiceCounts {
    fn new(services: usize) -> ServiceCounts {
        ServiceCounts {
            counts: vec![0; services],
            place: vec![u32::MAX; services],
            touched: Vec::new(),
        }
    }

    /// `incidents` by service. Until the next call, [`Self::listed`] says which are listed.
    fn split<'m>(&mut self, rows: &ReportRows, incidents: &'m [Measured]) -> Split<'m> {
        for s in self.touched.drain(..) {
            self.counts[s as usize] = 0;
            self.place[s as usize] = u32::MAX;
        }
        for i in incidents {
            let count = &mut self.counts[i.service as usize];
            if *count == 0 {
                self.touched.push(i.service);
            }
            *count += 1;
        }
        let counts = &self.counts;
        // A strict order whatever the order of `touched`: names are unique.
        let top = first_k(self.touched.iter().copied(), TOP_SERVICES, |a, b| {
            counts[b as usize]
                .cmp(&counts[a as usize])
                .then_with(|| {
                    cmp_service(
                        rows.services[a as usize].as_deref(),
                        rows.services[b as usize].as_deref(),
                    )
                })
                .is_lt()
        });
        let mut listed: Vec<(u32, Vec<&Measured>)> = top
            .iter()
            .map(|&s| (s, Vec::with_capacity(counts[s as usize] as usize)))
            .collect();
        for (k, s) in top.iter().enumerate() {
            self.place[*s as usize] = k as u32;
        }
        for i in incidents {
            if let Some(k) = self.listed(i.service) {
                listed[k].1.push(i);
            }
        }
        Split {
            others: (self.touched.len() - top.len()) as u64,
            listed,
        }
    }

    /// The place of `service` among the last split's listed services.
    fn listed(&self, service: u32) -> Option<usize> {
        match self.place[service as usize] {
            u32::MAX => None,
            k => Some(k as usize),
        }
    }

    /// The figures of the services the last split of `incidents` left out (`None`: none).
    fn others(
        &self,
        split: &Split,
        incidents: &[Measured],
        buffers: &mut Buffers,
    ) -> Option<OtherServices> {
        (split.others > 0).then(|| OtherServices {
            services: split.others,
            figures: Figures::of(
                incidents
                    .iter()
                    .filter(|i| self.listed(i.service).is_none()),
                buffers,
            ),
        })
    }
}

/// The report over `query`'s range from the rows the store read for it.
pub fn build(
    query: &ReportQuery,
    by: Period,
    zone: Tz,
    generated_at: Timestamp,
    rows: &ReportRows,
) -> Report {
    // The store reads exactly the range, oldest first; filtering and ordering again keeps
    // `build` true to any input (checking sorted rows costs one pass).
    let wanted: Vec<bool> = rows
        .services
        .iter()
        .map(|s| query.service.is_none() || s.as_deref() == query.service.as_deref())
        .collect();
    let mut inside: Vec<Measured> = Vec::with_capacity(rows.incidents.len());
    inside.extend(
        rows.incidents
            .iter()
            .filter(|i| i.fired_at >= query.since && i.fired_at < query.until)
            .filter(|i| wanted[i.service as usize])
            .map(Measured::of),
    );
    if !inside.is_sorted_by_key(|i| i.fired_at) {
        inside.sort_by_key(|i| i.fired_at);
    }
    let mut buffers = Buffers::default();
    let mut counts = ServiceCounts::new(rows.services.len());

    let split = counts.split(rows, &inside);
    let mut alerts_of: Vec<Vec<&AlertTally>> = vec![Vec::new(); split.listed.len()];
    for t in &rows.alerts {
        if let Some(k) = counts.listed(t.service) {
            alerts_of[k].push(t);
        }
    }
    let other_services = counts.others(&split, &inside, &mut buffers);
    let services = split
        .listed
        .into_iter()
        .zip(alerts_of)
        .map(|((service, list), alerts)| ServiceReport {
            service: service_name(rows, service),
            figures: Figures::of(list, &mut buffers),
            top_alerts: top_alerts(rows, alerts.into_iter(), TOP_PER_SERVICE),
        })
        .collect();

    let mut periods = Vec::new();
    if query.since < query.until {
        let mut first = by.first_day(day_in(query.since, zone));
        let mut rest = inside.as_slice();
        while start_of(first, zone) < query.until {
            let next = by.next(first);
            let (start, end) = (start_of(first, zone), start_of(next, zone));
            let split_at = rest.partition_point(|i| i.fired_at < end);
            let (these, later) = rest.split_at(split_at);
            rest = later;
            let split = counts.split(rows, these);
            let other_services = counts.others(&split, these, &mut buffers);
            periods.push(PeriodReport {
                label: by.label(first),
                start,
                end,
                partial: start < query.since || end > query.until,
                figures: Figures::of(these, &mut buffers),
                services: split
                    .listed
                    .into_iter()
                    .map(|(service, list)| ServiceFigures {
                        service: service_name(rows, service),
                        figures: Figures::of(list, &mut buffers),
                    })
                    .collect(),
                other_services,
            });
            if next <= first {
                break;
            }
            first = next;
        }
    }

    let top_flapping = rows
        .flapping
        .iter()
        .filter(|i| i.fired_at >= query.since && i.fired_at < query.until)
        .filter(|i| query.service.is_none() || i.service == query.service)
        .filter(|i| i.reopen_count > 0)
        .take(TOP)
        .map(|i| FlapRow {
            id: i.id.clone(),
            title: i.title.clone(),
            service: i.service.clone(),
            severity: i.severity.clone(),
            status: i.status,
            fired_at: i.fired_at,
            reopen_count: i.reopen_count,
        })
        .collect();

    Report {
        since: query.since,
        until: query.until,
        by,
        service: query.service.clone(),
        timezone: zone.name().to_string(),
        generated_at,
        definitions: DEFINITIONS,
        total: Figures::of(&inside, &mut buffers),
        services,
        other_services,
        periods,
        top_alerts: top_alerts(
            rows,
            rows.alerts.iter().filter(|t| wanted[t.service as usize]),
            TOP,
        ),
        top_flapping,
    }
}

/// The longest range a report covers.
pub const MAX_RANGE_DAYS: i64 = 3 * 366;

/// A report asked for: its range and service, and the length of its periods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub query: ReportQuery,
    pub by: Period,
}

/// A moment as a report's `since` / `until` take it: a duration before `now` (`30d`, `12h`,
/// Prometheus form), an RFC 3339 time, or a date (`2026-11-01`: 00:00 in `zone`).
fn parse_moment(value: &str, now: Timestamp, zone: Tz) -> Option<Timestamp> {
    let value = value.trim();
    if let Ok(d) = crate::time::parse_prom_duration(value) {
        return Some(now - crate::time::chrono_duration(d));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .map(|d| start_of(d, zone))
}

/// Read a report's parameters as the API, the CLI and the pages take them; the error names
/// the parameter. Defaults: `since=30d`, `until` now, `by=week`, every service.
pub fn parse_request(
    since: Option<&str>,
    until: Option<&str>,
    by: Option<&str>,
    service: Option<&str>,
    now: Timestamp,
    zone: Tz,
) -> Result<Request, String> {
    let moment = |name: &str, value: Option<&str>, default: Timestamp| match value {
        None | Some("") => Ok(default),
        Some(v) => parse_moment(v, now, zone).ok_or_else(|| {
            format!(
                "{name}: {:?} is not a duration before now (30d, 12h), an RFC 3339 time or a \
                 date (YYYY-MM-DD)",
                v.chars().take(64).collect::<String>()
            )
        }),
    };
    let until_at = moment("until", until, now)?;
    let since_at = moment("since", since, now - Duration::days(30))?;
    if since_at >= until_at {
        return Err(format!(
            "since: {} is not before until ({})",
            crate::time::rfc3339(since_at),
            crate::time::rfc3339(until_at)
        ));
    }
    if until_at - since_at > Duration::days(MAX_RANGE_DAYS) {
        return Err(format!(
            "since: the range is longer than {MAX_RANGE_DAYS} days; ask for a shorter one"
        ));
    }
    let by = match by {
        None | Some("") => Period::Week,
        Some(b) => Period::parse(b).ok_or_else(|| {
            format!(
                "by: {:?} is not week or month",
                b.chars().take(64).collect::<String>()
            )
        })?,
    };
    let service = match service {
        None | Some("") => None,
        Some(s) if s.len() > 200 => return Err("service: longer than 200 bytes".into()),
        Some(s) => Some(s.to_string()),
    };
    Ok(Request {
        query: ReportQuery {
            since: since_at,
            until: until_at,
            service,
        },
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::ResponseTimes;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// An incident of a test: its id and service, and what a report reads of it.
    struct Inc {
        id: String,
        service: String,
        s: Case,
    }

    /// What a report reads of a test's incident, with its times (the summary's figures are
    /// computed from them, as a store does).
    struct Case {
        status: Status,
        fired_at: Timestamp,
        times: ResponseTimes,
        reopen_count: u32,
    }

    impl Case {
        fn summary(&self) -> IncidentSummary {
            IncidentSummary {
                service: 0,
                status: self.status,
                fired_at: self.fired_at,
                millis: self.times.millis(),
                reopen_count: self.reopen_count,
            }
        }
    }

    fn summary(id: &str, service: &str, fired: &str) -> Inc {
        let fired_at = t(fired);
        let s = Case {
            status: Status::Open,
            fired_at,
            times: ResponseTimes {
                impact_start: None,
                detected_at: fired_at + Duration::seconds(30),
                acknowledged_at: None,
                resolved_at: None,
            },
            reopen_count: 0,
        };
        Inc {
            id: id.into(),
            service: service.into(),
            s,
        }
    }

    /// The rows a store reads for `incidents` and `alerts` (service, name, incidents,
    /// firings).
    fn rows(incidents: &[Inc], alerts: &[(&str, &str, u64, u64)]) -> ReportRows {
        let mut b = crate::store::ReportRowsBuilder::new();
        for i in incidents {
            let s = &i.s;
            b.incident(
                Some(&i.service),
                s.status,
                s.fired_at,
                s.times,
                s.reopen_count,
                "",
            )
            .unwrap();
        }
        for (service, name, incidents, firings) in alerts {
            b.alerts(Some(service), name, *incidents, *firings);
        }
        let mut flapping: Vec<&Inc> = incidents.iter().filter(|i| i.s.reopen_count > 0).collect();
        flapping.sort_by(|a, b| {
            (b.s.reopen_count, b.s.fired_at).cmp(&(a.s.reopen_count, a.s.fired_at))
        });
        b.flapping(
            flapping
                .into_iter()
                .map(|i| crate::store::FlappingIncident {
                    id: i.id.clone(),
                    title: format!("{} title", i.id),
                    service: Some(i.service.clone()),
                    severity: Some("critical".into()),
                    status: i.s.status,
                    fired_at: i.s.fired_at,
                    reopen_count: i.s.reopen_count,
                })
                .collect(),
        );
        b.finish()
    }

    fn query(since: &str, until: &str) -> ReportQuery {
        ReportQuery {
            since: t(since),
            until: t(until),
            service: None,
        }
    }

    #[test]
    fn first_k_is_a_sort_cut_to_k_whatever_the_input_order() {
        // (incidents, name): most incidents first, then by name, as services are listed.
        let before = |a: (u64, u32), b: (u64, u32)| (b.0, a.1) < (a.0, b.1);
        let mut items: Vec<(u64, u32)> =
            (0..500u32).map(|i| (u64::from(i * 7919 % 13), i)).collect();
        for k in [0, 1, 3, 20, 499, 500, 600] {
            for round in 0..3 {
                items.rotate_left(round * 37);
                let mut sorted = items.clone();
                sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                sorted.truncate(k);
                assert_eq!(first_k(items.iter().copied(), k, before), sorted, "k={k}");
            }
        }
    }

    #[test]
    fn nearest_rank_percentiles_and_mean() {
        let mut v: Vec<i64> = (1..=10).map(|s| s * 1000).collect();
        let s = Stat::of(&mut v, 12);
        assert_eq!(s.n, 10);
        assert_eq!(s.excluded, 2);
        assert_eq!(s.mean_seconds, Some(5.5));
        assert_eq!(s.p50_seconds, Some(5.0));
        assert_eq!(s.p90_seconds, Some(9.0));
        let one = Stat::of(&mut [42_000], 1);
        assert_eq!((one.p50_seconds, one.p90_seconds), (Some(42.0), Some(42.0)));
        let none = Stat::of(&mut [], 3);
        assert_eq!((none.n, none.excluded, none.mean_seconds), (0, 3, None));
    }

    #[test]
    fn figures_use_the_domain_definitions_and_count_what_is_unknown() {
        let mut a = summary("INC-1", "api", "2026-11-23T10:00:00Z");
        a.s.times.impact_start = Some(t("2026-11-23T09:58:00Z"));
        a.s.times.acknowledged_at = Some(t("2026-11-23T10:05:30Z"));
        a.s.times.resolved_at = Some(t("2026-11-23T10:20:30Z"));
        a.s.status = Status::Resolved;
        let b = summary("INC-2", "api", "2026-11-24T10:00:00Z");
        let mut buffers = Buffers::default();
        let f = Figures::of(
            &[Measured::of(&a.s.summary()), Measured::of(&b.s.summary())],
            &mut buffers,
        );
        assert_eq!(f.incidents, 2);
        assert_eq!((f.open, f.resolved), (1, 1));
        // TTD = detected − impact start = 10:00:30 − 09:58:00.
        assert_eq!(f.ttd.mean_seconds, Some(150.0));
        assert_eq!((f.ttd.n, f.ttd.excluded), (1, 1));
        assert_eq!(f.tta.mean_seconds, Some(300.0));
        assert_eq!(f.ttr.mean_seconds, Some(1200.0));
        assert_eq!(f.duration.mean_seconds, Some(1350.0));
        assert_eq!((f.duration.n, f.duration.excluded), (1, 1));

        // Resolved before incidentd was notified (a replay, a delivery backlog): no TTR.
        let mut late = summary("INC-3", "api", "2026-11-25T10:00:00Z");
        late.s.times.resolved_at = Some(t("2026-11-25T09:00:00Z"));
        late.s.status = Status::Resolved;
        let f = Figures::of(
            &[
                Measured::of(&a.s.summary()),
                Measured::of(&late.s.summary()),
            ],
            &mut buffers,
        );
        assert_eq!(f.ttr.mean_seconds, Some(1200.0));
        assert_eq!((f.ttr.n, f.ttr.excluded), (1, 1));
    }

    #[test]
    fn iso_weeks_in_the_display_zone_empty_ones_included() {
        // Sunday 23:30 UTC is Monday 00:30 in Berlin: the next ISO week there.
        let rows = rows(
            &[
                summary("INC-1", "api", "2026-11-22T23:30:00Z"),
                summary("INC-2", "db", "2026-12-08T12:00:00Z"),
            ],
            &[],
        );
        let q = query("2026-11-20T00:00:00Z", "2026-12-10T00:00:00Z");
        let now = t("2026-12-10T00:00:00Z");
        let utc = build(&q, Period::Week, Tz::UTC, now, &rows);
        let labels: Vec<&str> = utc.periods.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["2026-W47", "2026-W48", "2026-W49", "2026-W50"]);
        assert_eq!(utc.periods[0].figures.incidents, 1);
        assert!(utc.periods[0].partial && !utc.periods[1].partial);
        assert_eq!(utc.periods[2].figures.incidents, 0);
        let berlin = build(&q, Period::Week, Tz::Europe__Berlin, now, &rows);
        assert_eq!(berlin.periods[0].figures.incidents, 0);
        assert_eq!(berlin.periods[1].label, "2026-W48");
        assert_eq!(berlin.periods[1].figures.incidents, 1);
        assert_eq!(berlin.periods[1].start, t("2026-11-22T23:00:00Z"));
        assert_eq!(berlin.total.incidents, 2);
        assert_eq!(berlin.services.len(), 2);
    }

    #[test]
    fn months_alerts_and_flapping() {
        let mut a = summary("INC-1", "api", "2026-10-31T12:00:00Z");
        a.s.reopen_count = 3;
        let mut b = summary("INC-2", "api", "2026-11-02T12:00:00Z");
        b.s.reopen_count = 1;
        let c = summary("INC-3", "db", "2026-11-03T12:00:00Z");
        let tallies = [
            ("api", "HighLatency", 2, 5),
            ("db", "HighLatency", 1, 1),
            ("db", "DiskFull", 1, 9),
        ];
        let q = query("2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z");
        // Rows in any order: periods still get theirs.
        let r = build(
            &q,
            Period::Month,
            Tz::UTC,
            q.until,
            &rows(&[c, b, a], &tallies),
        );
        let labels: Vec<&str> = r.periods.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["2026-10", "2026-11"]);
        assert_eq!(r.periods[1].figures.incidents, 2);
        assert_eq!(r.top_alerts[0].alertname, "DiskFull");
        assert_eq!(r.top_alerts[1].alertname, "HighLatency");
        assert_eq!((r.top_alerts[1].incidents, r.top_alerts[1].firings), (3, 6));
        let flap: Vec<(&str, u32)> = r
            .top_flapping
            .iter()
            .map(|f| (f.id.as_str(), f.reopen_count))
            .collect();
        assert_eq!(flap, [("INC-1", 3), ("INC-2", 1)]);
        assert_eq!(r.services[0].service.as_deref(), Some("api"));
        assert_eq!(r.services[0].top_alerts.len(), 1);
        assert_eq!(r.services[0].figures.reopens, 4);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["periods"][1]["ttd"]["excluded"], 2);
        assert_eq!(json["by"], "month");
    }

    #[test]
    fn many_services_list_the_busiest_and_sum_the_others_exactly() {
        // Service k has k + 1 incidents, an hour apart; alert "A" fires once in each.
        let mut incs = Vec::new();
        let mut tallies = Vec::new();
        let services: Vec<String> = (0..30).map(|k| format!("svc-{k:02}")).collect();
        for (k, service) in services.iter().enumerate() {
            for j in 0..=k {
                let at = t("2026-11-02T00:00:00Z") + Duration::minutes((k * 31 + j) as i64);
                let mut i = summary(&format!("INC-{k}-{j}"), service, &at.to_rfc3339());
                i.s.times.resolved_at = Some(at + Duration::seconds(60 * (k as i64 + 1)));
                i.s.status = Status::Resolved;
                incs.push(i);
            }
            tallies.push((service.as_str(), "A", (k + 1) as u64, (k + 1) as u64));
        }
        let q = query("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let r = build(&q, Period::Month, Tz::UTC, q.until, &rows(&incs, &tallies));
        assert_eq!(r.total.incidents, 465);
        let listed: Vec<&str> = r
            .services
            .iter()
            .map(|s| s.service.as_deref().unwrap())
            .collect();
        assert_eq!(listed.len(), TOP_SERVICES);
        assert_eq!((listed[0], listed[19]), ("svc-29", "svc-10"));
        let other = r.other_services.as_ref().unwrap();
        assert_eq!(other.services, 10);
        // svc-00 … svc-09: 1 + … + 10 incidents, TTR 1 to 10 minutes.
        assert_eq!(other.figures.incidents, 55);
        let sum: u64 = r.services.iter().map(|s| s.figures.incidents).sum();
        assert_eq!(sum + other.figures.incidents, r.total.incidents);
        assert_eq!(other.figures.ttr.n, 55);
        // TTR = resolved − detected (30 s after firing): 60 × (k + 1) − 30.
        assert_eq!(other.figures.ttr.p90_seconds, Some(570.0));
        let mean = (1..=10).map(|m| m * (60 * m - 30)).sum::<u64>() as f64 / 55.0;
        assert_eq!(other.figures.ttr.mean_seconds, Some(mean));
        let p = &r.periods[0];
        assert_eq!(p.services.len(), TOP_SERVICES);
        assert_eq!(p.other_services.as_ref().unwrap().figures.incidents, 55);
        // The alert names its services with most incidents first, and how many there are.
        let a = &r.top_alerts[0];
        assert_eq!((a.incidents, a.firings, a.services_total), (465, 465, 30));
        assert_eq!(a.services.len(), SERVICES_PER_ALERT);
        assert_eq!(a.services[0].as_deref(), Some("svc-29"));
    }

    #[test]
    fn each_period_lists_its_own_busiest_services_as_counting_it_alone_would() {
        // 40 services over three ISO weeks, each week's busiest others than the last's (a
        // count left over from the range or an earlier week would show), in no order.
        let mut incs = Vec::new();
        for n in 0..900u64 {
            let week = n % 3;
            let service = (n * 7 + week * 13) % 40 % (10 + week * 15);
            let at = t("2026-11-02T00:00:00Z")
                + Duration::days(7 * week as i64)
                + Duration::minutes((n * 37 % 9000) as i64);
            let mut i = summary(
                &format!("INC-{n}"),
                &format!("svc-{service:02}"),
                &at.to_rfc3339(),
            );
            i.s.times.resolved_at = Some(at + Duration::seconds(60 + (n * 53 % 600) as i64));
            i.s.status = Status::Resolved;
            incs.push(i);
        }
        incs.reverse();
        let q = query("2026-11-02T00:00:00Z", "2026-11-23T00:00:00Z");
        let r = build(&q, Period::Week, Tz::UTC, q.until, &rows(&incs, &[]));
        assert_eq!(r.periods.len(), 3);
        // Each set counted alone: (service, incidents, TTR p50) of the busiest, then the rest.
        let alone = |these: Vec<&Inc>| {
            let mut by: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
            for i in &these {
                by.entry(&i.service)
                    .or_default()
                    .push(i.s.times.ttr_millis().unwrap());
            }
            let mut order: Vec<(&str, Vec<i64>)> = by.into_iter().collect();
            order.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
            let rest: u64 = order
                .iter()
                .skip(TOP_SERVICES)
                .map(|s| s.1.len() as u64)
                .sum();
            let listed: Vec<(String, u64, Option<f64>)> = order
                .into_iter()
                .take(TOP_SERVICES)
                .map(|(s, mut v)| {
                    let n = v.len() as u64;
                    (s.to_string(), n, Stat::of(&mut v, n).p50_seconds)
                })
                .collect();
            (listed, rest)
        };
        let shown = |list: &[(Option<String>, &Figures)]| -> Vec<(String, u64, Option<f64>)> {
            list.iter()
                .map(|(s, f)| (s.clone().unwrap(), f.incidents, f.ttr.p50_seconds))
                .collect()
        };
        let (listed, rest) = alone(incs.iter().collect());
        let services: Vec<_> = r
            .services
            .iter()
            .map(|s| (s.service.clone(), &s.figures))
            .collect();
        assert_eq!(shown(&services), listed);
        assert_eq!(
            r.other_services.as_ref().map_or(0, |o| o.figures.incidents),
            rest
        );
        let mut tops = Vec::new();
        for p in &r.periods {
            let these = incs
                .iter()
                .filter(|i| i.s.fired_at >= p.start && i.s.fired_at < p.end)
                .collect();
            let (listed, rest) = alone(these);
            let services: Vec<_> = p
                .services
                .iter()
                .map(|s| (s.service.clone(), &s.figures))
                .collect();
            assert_eq!(shown(&services), listed, "{}", p.label);
            assert_eq!(
                p.other_services.as_ref().map_or(0, |o| o.figures.incidents),
                rest
            );
            tops.push(listed[0].0.clone());
        }
        // The weeks' busiest differ, so a leftover count would have shown.
        assert_ne!(tops[0], tops[1]);
        assert_ne!(tops[1], tops[2]);
    }

    #[test]
    fn a_tally_is_read_whatever_the_alert_names_hold() {
        let mut b = crate::store::ReportRowsBuilder::new();
        let at = t("2026-11-02T00:00:00Z");
        let times = ResponseTimes {
            impact_start: None,
            detected_at: at,
            acknowledged_at: None,
            resolved_at: None,
        };
        // Names with the separator in them, and multi-byte characters.
        let tally = "2:3:a:b1:5:Über";
        b.incident(Some("x"), Status::Open, at, times, 0, tally)
            .unwrap();
        b.incident(None, Status::Open, at, times, 0, "1:3:a:b")
            .unwrap();
        b.incident(None, Status::Open, at, times, 0, "*").unwrap();
        assert!(b
            .incident(None, Status::Open, at, times, 0, "1:9:short")
            .is_err());
        assert_eq!(b.untallied, 1);
        let rows = b.finish();
        let q = query("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let r = build(&q, Period::Month, Tz::UTC, q.until, &rows);
        let top: Vec<(&str, u64, u64)> = r
            .top_alerts
            .iter()
            .map(|a| (a.alertname.as_str(), a.incidents, a.firings))
            .collect();
        assert_eq!(top, [("a:b", 2, 3), ("Über", 1, 1)]);
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let now = t("2026-12-02T12:00:00Z");
        let r = parse_request(None, None, None, None, now, Tz::UTC).unwrap();
        assert_eq!(r.query.since, t("2026-11-02T12:00:00Z"));
        assert_eq!(
            (r.query.until, r.by, r.query.service),
            (now, Period::Week, None)
        );
        let r = parse_request(
            Some("2026-11-01"),
            Some("2026-12-01T00:00:00Z"),
            Some("month"),
            Some("api"),
            now,
            Tz::Europe__Berlin,
        )
        .unwrap();
        assert_eq!(r.query.since, t("2026-10-31T23:00:00Z"));
        assert_eq!(r.by, Period::Month);
        assert_eq!(r.query.service.as_deref(), Some("api"));
        let err = |s, u, b| parse_request(s, u, b, None, now, Tz::UTC).unwrap_err();
        assert!(err(Some("yesterday"), None, None).starts_with("since: "));
        assert!(err(None, Some("soon"), None).starts_with("until: "));
        assert!(err(None, None, Some("day")).starts_with("by: "));
        assert!(err(Some("1d"), Some("2d"), None).starts_with("since: "));
        assert!(err(Some("5000d"), None, None).contains("longer than"));
    }
}
