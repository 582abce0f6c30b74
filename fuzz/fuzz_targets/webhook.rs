//! Fuzz target `webhook`: bytes → `alertmanager::decode` → `incident::ingest_all` into a
//! `MemoryRepo`, checking what must hold whatever arrives.
//!
//! The input is split on 0xFF (a byte that never occurs in UTF-8 JSON) into up to eight
//! notifications received a few minutes apart; the first one that decodes is delivered once
//! more at the end, as Alertmanager's `repeat_interval` would. The first byte of the input
//! picks the reopen window, so merging across episodes is exercised too.
//!
//! Invariants checked after every notification:
//! - nothing panics (decoding, correlation, derivation);
//! - every accepted occurrence (fingerprint, startsAt) belongs to exactly one incident, and no
//!   incident is empty;
//! - an incident is resolved exactly when all its members have ended, and then has a
//!   `resolved_at`; nobody acknowledges here, so it is never `acknowledged`.
#![no_main]

#[path = "input.rs"]
mod input;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use incidentd::alertmanager::{decode, ValidNotification};
use incidentd::incident::memory::MemoryRepo;
use incidentd::incident::{ingest_all, Status, Timestamp};
use libfuzzer_sys::fuzz_target;

const MAX_NOTIFICATIONS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let (rules, base) = input::rules_and_start(data);

    let mut decoded: Vec<ValidNotification> = data
        .split(|&b| b == input::SEPARATOR)
        .take(MAX_NOTIFICATIONS)
        .filter_map(|part| decode(part).ok())
        .collect();
    if let Some(first) = decoded.first().cloned() {
        decoded.push(first);
    }

    let mut repo = MemoryRepo::new();
    let mut accepted: BTreeSet<(String, Timestamp)> = BTreeSet::new();
    for (i, n) in decoded.iter().enumerate() {
        let now = base + Duration::minutes(7 * i as i64);
        let outcomes = match ingest_all(&mut repo, &rules, &n.group_key, &n.alerts, now) {
            Ok(o) => o,
            Err(never) => match never {},
        };
        assert_eq!(outcomes.len(), n.alerts.len(), "one outcome per alert");
        accepted.extend(
            n.alerts
                .iter()
                .map(|a| (a.fingerprint.clone(), a.starts_at)),
        );
        check(&repo, &accepted);
    }
});

fn check(repo: &MemoryRepo, accepted: &BTreeSet<(String, Timestamp)>) {
    let mut owner: BTreeMap<(String, Timestamp), String> = BTreeMap::new();
    for incident in repo.incidents() {
        assert!(
            !incident.alerts.is_empty(),
            "{} has no members",
            incident.id
        );
        for o in &incident.alerts {
            let key = (o.fingerprint.clone(), o.starts_at);
            if let Some(other) = owner.insert(key, incident.id.clone()) {
                panic!(
                    "occurrence {} @ {} is in both {} and {}",
                    o.fingerprint, o.starts_at, other, incident.id
                );
            }
        }
        let all_ended = incident.alerts.iter().all(|o| o.ends_at.is_some());
        match incident.status {
            Status::Resolved => {
                assert!(all_ended, "{} resolved with a firing member", incident.id);
                assert!(
                    incident.resolved_at.is_some(),
                    "{} resolved without resolved_at",
                    incident.id
                );
            }
            Status::Open => {
                assert!(!all_ended, "{} open with every member ended", incident.id);
                assert!(
                    incident.resolved_at.is_none(),
                    "{} open with resolved_at",
                    incident.id
                );
            }
            Status::Acknowledged => panic!("{} acknowledged with nobody acting", incident.id),
        }
    }
    let stored: BTreeSet<_> = owner.into_keys().collect();
    assert_eq!(
        &stored, accepted,
        "stored occurrences differ from those delivered"
    );
}
