//! The input format the `webhook` and `store` targets share: the parts of an input are
//! separated by 0xFF (a byte that never occurs in UTF-8 JSON), and its first byte picks the
//! reopen window, so merging across episodes is exercised too. Included by both targets with
//! `#[path]`; not a target of its own (fuzz/Cargo.toml lists the targets).

use chrono::{Duration, TimeZone, Utc};
use incidentd::incident::{Rules, Timestamp};

/// The separator between the parts of an input.
pub const SEPARATOR: u8 = 0xFF;

/// The correlation rules the first byte of `data` picks (reopen window 0, 15, 30 or 45
/// minutes), and the fixed time the first part is received at.
pub fn rules_and_start(data: &[u8]) -> (Rules, Timestamp) {
    let window = match data.first() {
        Some(b) => Duration::minutes(i64::from(b % 4) * 15),
        None => Duration::zero(),
    };
    let rules = Rules {
        reopen_window: window,
        ..Rules::default()
    };
    let base = Utc
        .with_ymd_and_hms(2026, 11, 23, 14, 0, 0)
        .single()
        .expect("a valid time");
    (rules, base)
}
