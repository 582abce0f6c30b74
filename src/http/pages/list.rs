//! The incidents list (`/`): what its query means and what each row shows. Pure: no I/O.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

use crate::incident::{Incident, Status, Timestamp};
use crate::postmortem::format_time;
use crate::store::{Cursor, IncidentFilter, IncidentPage};
use crate::time::human_duration;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;
/// Longest search, service or severity accepted.
const MAX_TEXT: usize = 200;

/// The list's query string, as typed in its form (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Params {
    pub status: String,
    pub service: String,
    pub severity: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`, in the drafts' time zone.
    pub from: String,
    pub until: String,
    pub q: String,
    pub after: String,
    pub limit: String,
}

impl Params {
    /// Reads a query string; unknown parameters are refused so a typo does not silently
    /// show everything.
    pub fn parse(query: &str) -> Result<Params, String> {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            if v.chars().count() > MAX_TEXT {
                return Err(format!("{k}: longer than {MAX_TEXT} characters"));
            }
            let slot = match k.as_ref() {
                "status" => &mut p.status,
                "service" => &mut p.service,
                "severity" => &mut p.severity,
                "from" => &mut p.from,
                "until" => &mut p.until,
                "q" => &mut p.q,
                "after" => &mut p.after,
                "limit" => &mut p.limit,
                other => {
                    return Err(format!(
                        "{:?} is not a filter (status, service, severity, from, until, q, after, limit)",
                        other.chars().take(40).collect::<String>()
                    ))
                }
            };
            *slot = v;
        }
        Ok(p)
    }

    pub fn limit(&self) -> u32 {
        self.limit
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .unwrap_or(DEFAULT_LIMIT)
    }

    /// The store's filter and the page's start; times are read in `zone`.
    pub fn to_query(&self, zone: Tz) -> Result<(IncidentFilter, Option<Cursor>), super::PageError> {
        let bad = super::PageError::BadRequest;
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let status = match self.status.as_str() {
            "" | "any" => None,
            s => Some(Status::parse(s).ok_or_else(|| {
                bad(format!(
                    "status: {s:?} is not one of open, acknowledged, resolved"
                ))
            })?),
        };
        let filter = IncidentFilter {
            status,
            service: text(&self.service),
            severity: text(&self.severity),
            fired_from: parse_time("from", &self.from, zone).map_err(bad)?,
            fired_until: parse_time("until", &self.until, zone).map_err(bad)?,
            search: text(&self.q),
        };
        let after = match self.after.as_str() {
            "" => None,
            a => Some(
                a.parse::<Cursor>()
                    .map_err(|e| bad(format!("after: {e}")))?,
            ),
        };
        Ok((filter, after))
    }

    /// This query with another start, as a link.
    fn link_after(&self, after: Option<&Cursor>) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("service", &self.service),
            ("severity", &self.severity),
            ("from", &self.from),
            ("until", &self.until),
            ("q", &self.q),
            ("limit", &self.limit),
        ] {
            if !v.is_empty() {
                ser.append_pair(k, v);
            }
        }
        if let Some(a) = after {
            ser.append_pair("after", &a.to_string());
        }
        let q = ser.finish();
        if q.is_empty() {
            "/".to_string()
        } else {
            format!("/?{q}")
        }
    }
}

/// A date (`YYYY-MM-DD`, its midnight) or a minute (`YYYY-MM-DDTHH:MM`, as a browser's
/// `datetime-local` field sends it) in `zone`.
fn parse_time(field: &str, s: &str, zone: Tz) -> Result<Option<Timestamp>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(Default::default()))
        })
        .map_err(|_| {
            format!("{field}: {s:?} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM)")
        })?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| Some(t.with_timezone(&chrono::Utc)))
        .ok_or_else(|| format!("{field}: {s:?} does not exist in {zone}"))
}

/// One row of the list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub id: String,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub service: String,
    pub started: String,
    pub duration: String,
    pub ttd: String,
    pub tta: String,
    pub ttr: String,
    pub reopen_count: u32,
}

/// What the list page shows.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub params: Params,
    pub rows: Vec<Row>,
    /// When the figures of open incidents were measured.
    pub measured_at: String,
    pub next: Option<String>,
    /// Not on the first page: a link back to it.
    pub first: Option<String>,
    pub filtered: bool,
    pub status_options: Vec<(String, bool)>,
}

pub fn view(
    params: &Params,
    page: &IncidentPage,
    zone: Tz,
    second: Option<Tz>,
    now: Timestamp,
) -> View {
    let statuses = ["open", "acknowledged", "resolved"];
    View {
        rows: page
            .incidents
            .iter()
            .map(|i| row(i, zone, second, now))
            .collect(),
        measured_at: format_time(now, zone, second),
        next: page.next.as_ref().map(|c| params.link_after(Some(c))),
        first: (!params.after.is_empty()).then(|| params.link_after(None)),
        filtered: params.link_after(None) != "/",
        status_options: statuses
            .iter()
            .map(|s| (s.to_string(), params.status == *s))
            .collect(),
        params: params.clone(),
    }
}

/// A figure in seconds, or how long before detection for the negative ones.
pub fn seconds_text(s: f64) -> String {
    if s < 0.0 {
        crate::time::since_detection(s)
    } else {
        human_duration(s)
    }
}

/// The figures of an incident in words; unknown ones say why.
pub struct FigureTexts {
    pub duration: String,
    pub ttd: String,
    pub tta: String,
    pub ttr: String,
}

pub fn figures(i: &Incident, now: Timestamp) -> FigureTexts {
    let resolved = i.status == Status::Resolved;
    FigureTexts {
        duration: match (i.duration_seconds(), i.impact_start) {
            (Some(s), _) => seconds_text(s),
            (None, Some(start)) if !resolved => format!(
                "ongoing, {} so far",
                human_duration((now - start).num_milliseconds() as f64 / 1000.0)
            ),
            _ => "unknown (impact start not found)".into(),
        },
        ttd: i
            .ttd_seconds()
            .map(seconds_text)
            .unwrap_or_else(|| "unknown (impact start not found)".into()),
        tta: match i.tta_seconds() {
            Some(s) => seconds_text(s),
            None if resolved => "never acknowledged".into(),
            None => "not yet acknowledged".into(),
        },
        ttr: i
            .ttr_seconds()
            .map(seconds_text)
            .unwrap_or_else(|| "not yet resolved".into()),
    }
}

fn row(i: &Incident, zone: Tz, second: Option<Tz>, now: Timestamp) -> Row {
    let f = figures(i, now);
    Row {
        id: i.id.clone(),
        title: i.title.clone(),
        status: i.status.as_str().to_string(),
        severity: i.severity.clone().unwrap_or_else(|| "none".into()),
        service: i.service.clone().unwrap_or_else(|| "none".into()),
        started: format_time(
            i.impact_start.unwrap_or(i.fired_at).min(i.fired_at),
            zone,
            second,
        ),
        duration: f.duration,
        ttd: f.ttd,
        tta: f.tta,
        ttr: f.ttr,
        reopen_count: i.reopen_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_reads_back_as_its_filter_and_links_keep_it() {
        let p = Params::parse("status=open&service=pay%20api&q=%3Cb%3E&from=2026-03-01&after=r42")
            .expect("valid");
        let (f, after) = p.to_query(Tz::Europe__Berlin).expect("valid");
        assert_eq!(f.status, Some(Status::Open));
        assert_eq!(f.service.as_deref(), Some("pay api"));
        assert_eq!(f.search.as_deref(), Some("<b>"));
        assert_eq!(
            f.fired_from.map(crate::time::rfc3339).as_deref(),
            Some("2026-02-28T23:00:00Z")
        );
        assert_eq!(
            after,
            Some(Cursor {
                resolved: true,
                seq: 42
            })
        );
        let next = p.link_after(Some(&Cursor {
            resolved: true,
            seq: 7,
        }));
        assert_eq!(
            next,
            "/?status=open&service=pay+api&from=2026-03-01&q=%3Cb%3E&after=r7"
        );
    }

    #[test]
    fn bad_filters_are_refused_with_their_name() {
        assert!(Params::parse("sevrity=x").unwrap_err().contains("sevrity"));
        let p = Params::parse("from=yesterday").expect("parses");
        assert!(p.to_query(Tz::UTC).is_err());
        let p = Params::parse("after=x1").expect("parses");
        assert!(p.to_query(Tz::UTC).is_err());
    }
}
