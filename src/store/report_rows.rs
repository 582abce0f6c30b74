//! What a report reads from the store ([`ReportRows`]) and how a backend collects it.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::incident::{self, Timestamp};

/// What a report reads: incidents whose first alert fired in `[since, until)`, of one
/// service or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub since: Timestamp,
    pub until: Timestamp,
    pub service: Option<String>,
}

/// One incident as a report reads it (`crate::report`): only the numbers its figures need.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    /// Its service, as an index into [`ReportRows::services`].
    pub service: u32,
    pub status: incident::Status,
    /// When its first alert fired (Alertmanager's `startsAt`): what places it in a period.
    pub fired_at: Timestamp,
    /// Its four figures as [`incident::ResponseTimes::millis`] gives them (the domain's one
    /// definition), computed once when read.
    pub millis: incident::ResponseMillis,
    pub reopen_count: u32,
}

/// How often one alert fired in one service's incidents: `incidents` it took part in,
/// `firings` (occurrences: each firing episode once). Service and name are indexes into
/// [`ReportRows::services`] and [`ReportRows::alertnames`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTally {
    pub service: u32,
    pub alertname: u32,
    pub incidents: u64,
    pub firings: u64,
}

/// An incident that reopened, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlappingIncident {
    pub id: String,
    pub title: String,
    pub service: Option<String>,
    pub severity: Option<String>,
    pub status: incident::Status,
    pub fired_at: Timestamp,
    pub reopen_count: u32,
}

/// What a report is built from (`crate::report::build`): every incident of the range as
/// numbers, the tallies of their alerts, and the few incidents that reopened most. Services
/// and alert names are stored once each and referred to by index, so 100,000 incidents cost
/// no string each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportRows {
    /// The services (`None`: incidents without one): every one an incident or a tally
    /// refers to, and possibly others (a backend may share one list between reports).
    pub services: Arc<Vec<Option<Arc<str>>>>,
    /// The incidents, oldest first.
    pub incidents: Vec<IncidentSummary>,
    /// The alert names, as [`Self::services`].
    pub alertnames: Arc<Vec<Option<Arc<str>>>>,
    /// Per service and alert name.
    pub alerts: Vec<AlertTally>,
    /// The incidents that reopened at least once, most reopenings first, then the latest:
    /// at most as many as asked for.
    pub flapping: Vec<FlappingIncident>,
}

/// The decimal number that starts `s`, ended by `:`, and what follows the `:`. Byte by byte:
/// a report reads 100,000 of these, and `str::split_once` costs a call per `:` found.
fn number_before_colon(s: &str) -> Option<(u64, &str)> {
    let mut n: u64 = 0;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'0'..=b'9' => n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b':' if i > 0 => return Some((n, &s[i + 1..])),
            _ => return None,
        }
    }
    None
}

/// Reads an incident's `alert_tally` (kept by triggers on `occurrences` in both backends,
/// migration 11): for each alert name, in any order, `<firings>:<bytes>:<alertname>`
/// (`<bytes>` the name's length in UTF-8 bytes, so any name parses), nothing between entries;
/// or `*` when that would be longer than 1,000 bytes, and the backend then tallies those
/// incidents' alerts from `occurrences`. Calls `each` per name; `Ok(false)` for `*`.
pub(crate) fn read_alert_tally(
    alert_tally: &str,
    mut each: impl FnMut(&str, u64),
) -> Result<bool, String> {
    if alert_tally == "*" {
        return Ok(false);
    }
    let bad = || format!("incidents.alert_tally: cannot read {alert_tally:?}");
    let mut rest = alert_tally;
    while !rest.is_empty() {
        let (firings, after) = number_before_colon(rest).ok_or_else(bad)?;
        let (bytes, after) = number_before_colon(after).ok_or_else(bad)?;
        let bytes = usize::try_from(bytes).map_err(|_| bad())?;
        let name = after.get(..bytes).ok_or_else(bad)?;
        rest = &after[bytes..];
        each(name, firings);
    }
    Ok(true)
}

/// Names stored once each and referred to by index (`None`: no name, as an incident without
/// a service). The list is shared, not copied, by the [`ReportRows`] made from it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    index: FxHashMap<Arc<str>, u32>,
    none: Option<u32>,
    names: Arc<Vec<Option<Arc<str>>>>,
}

impl Names {
    pub fn index(&mut self, name: Option<&str>) -> u32 {
        if let Some(i) = self.find(name) {
            return i;
        }
        let next = self.names.len() as u32;
        // Copies the list only if a report still holds it.
        let names = Arc::make_mut(&mut self.names);
        match name {
            None => {
                names.push(None);
                self.none = Some(next);
            }
            Some(s) => {
                let s: Arc<str> = Arc::from(s);
                names.push(Some(s.clone()));
                self.index.insert(s, next);
            }
        }
        next
    }

    pub fn find(&self, name: Option<&str>) -> Option<u32> {
        match name {
            None => self.none,
            Some(s) => self.index.get(s).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn list(&self) -> Arc<Vec<Option<Arc<str>>>> {
        self.names.clone()
    }
}

/// Alerts summed per service and name, as [`ReportRows::alerts`] lists them.
///
/// Each service's tallies are a list through [`Tally::next`]: its first, by service index
/// (`u32::MAX`: none). A service has few alert names, and 100,000 services cost no hashing:
/// these only grow at their ends.
#[derive(Debug, Default)]
pub(crate) struct AlertTallies {
    first: Vec<u32>,
    tallies: Vec<Tally>,
}

/// One service's count of one alert name (in [`AlertTallies`]).
#[derive(Debug)]
struct Tally {
    alertname: u32,
    incidents: u64,
    firings: u64,
    /// The service's next tally (`u32::MAX`: none).
    next: u32,
}

impl AlertTallies {
    /// Room for `services` services and `tallies` tallies: a report over 100,000 incidents
    /// would otherwise copy its lists each time they double.
    pub fn with_capacity(services: usize, tallies: usize) -> AlertTallies {
        AlertTallies {
            first: Vec::with_capacity(services),
            tallies: Vec::with_capacity(tallies),
        }
    }

    pub fn add(&mut self, service: u32, alertname: u32, incidents: u64, firings: u64) {
        let service = service as usize;
        if self.first.len() <= service {
            self.first.resize(service + 1, u32::MAX);
        }
        let mut at = self.first[service];
        while at != u32::MAX {
            let t = &mut self.tallies[at as usize];
            if t.alertname == alertname {
                t.incidents += incidents;
                t.firings += firings;
                return;
            }
            at = t.next;
        }
        self.tallies.push(Tally {
            alertname,
            incidents,
            firings,
            next: self.first[service],
        });
        self.first[service] = (self.tallies.len() - 1) as u32;
    }

    /// One row per service and name, by service then name index.
    pub fn finish(self) -> Vec<AlertTally> {
        let mut alerts: Vec<AlertTally> = Vec::with_capacity(self.tallies.len());
        for (service, first) in self.first.iter().enumerate() {
            let mut at = *first;
            while at != u32::MAX {
                let t = &self.tallies[at as usize];
                alerts.push(AlertTally {
                    service: service as u32,
                    alertname: t.alertname,
                    incidents: t.incidents,
                    firings: t.firings,
                });
                at = t.next;
            }
        }
        alerts.sort_by_key(|t| (t.service, t.alertname));
        alerts
    }
}

/// Collects [`ReportRows`] as a backend reads them, row by row.
#[derive(Debug, Default)]
pub struct ReportRowsBuilder {
    incidents: Vec<IncidentSummary>,
    services: Names,
    alertnames: Names,
    tallies: AlertTallies,
    flapping: Vec<FlappingIncident>,
    /// Incidents whose tally is `*` ([`read_alert_tally`]): the backend tallies their
    /// alerts from `occurrences` ([`Self::alerts`]).
    pub untallied: usize,
}

impl ReportRowsBuilder {
    pub fn new() -> ReportRowsBuilder {
        ReportRowsBuilder::default()
    }

    /// One incident, in the order read (oldest first), with its `alert_tally`.
    pub fn incident(
        &mut self,
        service: Option<&str>,
        status: incident::Status,
        fired_at: Timestamp,
        times: incident::ResponseTimes,
        reopen_count: u32,
        alert_tally: &str,
    ) -> Result<(), String> {
        let service = self.services.index(service);
        self.incidents.push(IncidentSummary {
            service,
            status,
            fired_at,
            millis: times.millis(),
            reopen_count,
        });
        let (names, tallies) = (&mut self.alertnames, &mut self.tallies);
        let tallied = read_alert_tally(alert_tally, |name, firings| {
            tallies.add(service, names.index(Some(name)), 1, firings)
        })?;
        if !tallied {
            self.untallied += 1;
        }
        Ok(())
    }

    /// Alerts tallied apart (the incidents whose `alert_tally` is `*`; tests).
    pub fn alerts(&mut self, service: Option<&str>, alertname: &str, incidents: u64, firings: u64) {
        let service = self.services.index(service);
        let alertname = self.alertnames.index(Some(alertname));
        self.tallies.add(service, alertname, incidents, firings);
    }

    pub fn flapping(&mut self, flapping: Vec<FlappingIncident>) {
        self.flapping = flapping;
    }

    pub fn finish(self) -> ReportRows {
        ReportRows {
            services: self.services.list(),
            incidents: self.incidents,
            alertnames: self.alertnames.list(),
            alerts: self.tallies.finish(),
            flapping: self.flapping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_tally_reads_any_name_and_refuses_what_it_cannot_read() {
        assert_eq!(number_before_colon("12:rest"), Some((12, "rest")));
        assert_eq!(number_before_colon(":12"), None);
        assert_eq!(number_before_colon("12"), None);
        assert_eq!(number_before_colon("1x:"), None);
        assert_eq!(number_before_colon("99999999999999999999:"), None);

        let times = incident::ResponseTimes {
            impact_start: None,
            detected_at: chrono::Utc::now(),
            acknowledged_at: None,
            resolved_at: None,
        };
        let mut b = ReportRowsBuilder::new();
        let open = incident::Status::Open;
        // A name holding the separator and a multi-byte character; two services.
        b.incident(
            Some("api"),
            open,
            times.detected_at,
            times,
            0,
            "3:3:a:b2:5:Dé:j",
        )
        .unwrap();
        b.incident(Some("db"), open, times.detected_at, times, 0, "1:3:a:b")
            .unwrap();
        b.incident(Some("api"), open, times.detected_at, times, 0, "2:3:a:b")
            .unwrap();
        for bad in ["3", "3:", "3:9:short", "x:1:a", "1:1:a2"] {
            let err = ReportRowsBuilder::new()
                .incident(None, open, times.detected_at, times, 0, bad)
                .unwrap_err();
            assert!(err.contains("alert_tally"), "{bad}: {err}");
        }
        let rows = b.finish();
        let name = |t: &AlertTally| {
            (
                rows.services[t.service as usize].as_deref(),
                rows.alertnames[t.alertname as usize].as_deref().unwrap(),
                t.incidents,
                t.firings,
            )
        };
        let mut got: Vec<_> = rows.alerts.iter().map(name).collect();
        got.sort();
        assert_eq!(
            got,
            [
                (Some("api"), "Dé:j", 1, 2),
                (Some("api"), "a:b", 2, 5),
                (Some("db"), "a:b", 1, 1)
            ]
        );
    }
}
