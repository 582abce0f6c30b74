//! Lost resolves: compare the firing occurrences with Alertmanager's `/api/v2/alerts` and
//! resolve those Alertmanager no longer has (its resolve notification never arrived: retries
//! ran out, the receiver was down). Runs at startup and every `alertmanager.reconcile_interval`.
//!
//! An occurrence is resolved only when two rounds in a row, at least one interval apart, miss
//! it, so a resolve notification still on its way (Alertmanager sends them at the next
//! `group_interval`) usually wins; if it arrives later, its earlier `endsAt` replaces ours.
//! Point `alertmanager.url` at the Alertmanager (cluster) that sends to incidentd: alerts that
//! reach incidentd from another one would look missing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use chrono::SubsecRound;
use serde::Deserialize;
use tokio::sync::watch;

use crate::alertmanager::parse_time;
use crate::config::AlertmanagerConfig;
use crate::core::{Core, Turn};
use crate::incident::Timestamp;

/// An occurrence's identity.
type Key = (String, Timestamp);

/// Why asking Alertmanager failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("asking Alertmanager at {url} failed: {reason}")]
    Alertmanager { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert {
    fingerprint: String,
    starts_at: String,
}

/// Which firing occurrences Alertmanager does not have. Pure.
///
/// `startsAt` is compared at milliseconds, the precision Alertmanager's API reports it with
/// (go-openapi's `strfmt.DateTime` writes `.000`, truncating), whatever precision the webhook
/// carried: vmalert sends nanoseconds, and so does Alertmanager for alerts posted without
/// `startsAt`; the store keeps microseconds. Compared as they are, every such alert would be
/// "missing" while Alertmanager still has it.
pub fn missing(firing: &[Key], active: &HashSet<Key>) -> Vec<Key> {
    let active: HashSet<(&str, Timestamp)> = active
        .iter()
        .map(|(fp, t)| (fp.as_str(), at_api_precision(*t)))
        .collect();
    firing
        .iter()
        .filter(|(fp, t)| !active.contains(&(fp.as_str(), at_api_precision(*t))))
        .cloned()
        .collect()
}

/// A time at the precision Alertmanager's API reports: milliseconds, truncated as Go does.
pub fn at_api_precision(t: Timestamp) -> Timestamp {
    // Both cut the (non-negative) nanoseconds of the second, so they agree before 1970 too.
    t.trunc_subsecs(3)
}

/// Asks Alertmanager and resolves what it lost track of.
pub struct Reconciler {
    client: reqwest::Client,
    config: AlertmanagerConfig,
    /// When each occurrence was first seen missing.
    missed_since: HashMap<Key, Timestamp>,
}

impl Reconciler {
    pub fn new(config: AlertmanagerConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Reconciler {
            client,
            config,
            missed_since: HashMap::new(),
        })
    }

    /// Alertmanager's active alerts (silenced and inhibited ones included).
    async fn active(&self) -> Result<HashSet<Key>, ReconcileError> {
        let url = format!(
            "{}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true",
            self.config.url.trim_end_matches('/')
        );
        let fail = |reason: String| ReconcileError::Alertmanager {
            url: self.config.url.clone(),
            reason,
        };
        let mut req = self.client.get(&url);
        if let Some(token) = &self.config.bearer_token {
            req = req.bearer_auth(token.expose());
        } else if let Some(b) = &self.config.basic_auth {
            let pair = format!("{}:{}", b.username, b.password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header("Authorization", format!("Basic {encoded}"));
        }
        let response = req
            .send()
            .await
            .map_err(|e| fail(crate::net_error::describe(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let alerts: Vec<GettableAlert> = response
            .json()
            .await
            .map_err(|e| fail(crate::net_error::describe(&e)))?;
        Ok(alerts
            .into_iter()
            .filter_map(|a| match parse_time(&a.starts_at) {
                Ok(Some(t)) => Some((a.fingerprint, t)),
                _ => None,
            })
            .collect())
    }

    /// One round: returns how many occurrences it resolved.
    pub async fn round(&mut self, state: &Core) -> Result<usize, ReconcileError> {
        let active = self.active().await?;
        let firing = state.store.firing_in_alertmanager().await?;
        let now = state.now();
        let gone = missing(&firing, &active);
        let still: HashSet<&Key> = gone.iter().collect();
        self.missed_since.retain(|k, _| still.contains(k));
        let mut due = Vec::new();
        for key in gone {
            match self.missed_since.get(&key) {
                Some(since) => due.push((key.clone(), *since)),
                None => {
                    self.missed_since.insert(key, now);
                }
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        let resolved = state.store.resolve_gone(due.clone(), now).await?;
        for (key, _) in &due {
            self.missed_since.remove(key);
        }
        for o in &resolved {
            tracing::warn!(
                incident = %o.incident_id,
                fingerprint = %o.fingerprint,
                "Alertmanager no longer has this firing alert; resolved it (its resolve notification was lost)"
            );
        }
        if !resolved.is_empty() {
            state.wake.notify_waiters();
        }
        state.observe_resolutions(&resolved).await;
        Ok(resolved.len())
    }
}

/// The name of the lease that makes one replica the reconciler.
pub const LEASE: &str = "reconciler";

/// Reconcile at startup and then every interval, until `stop`. Among replicas sharing a
/// database, one reconciles at a time: the holder of the `reconciler` lease, which another
/// takes over when the holder stops renewing it (it died).
pub async fn run(mut reconciler: Reconciler, state: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let mut turn = Turn::new(LEASE, reconciler.config.reconcile_interval);
    loop {
        if turn.due(&state.store).await {
            if let Err(e) = reconciler.round(&state).await {
                tracing::warn!(error = %e, "reconciliation with Alertmanager failed; will retry");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(turn.pause()) => {}
            _ = stop.changed() => break,
        }
    }
    turn.release(&state.store).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn only_occurrences_alertmanager_lacks_are_missing() {
        let t = |s| chrono::Utc.timestamp_opt(s, 0).unwrap();
        let firing = vec![
            ("a".to_string(), t(1)),
            ("b".to_string(), t(2)),
            ("a".to_string(), t(3)),
        ];
        let active: HashSet<Key> = [("a".to_string(), t(3)), ("b".to_string(), t(2))].into();
        assert_eq!(missing(&firing, &active), vec![("a".to_string(), t(1))]);
    }

    #[test]
    fn an_alert_alertmanager_lists_with_milliseconds_is_not_missing() {
        // vmalert's webhook startsAt has nanoseconds (the store keeps microseconds);
        // Alertmanager's /api/v2/alerts lists the same alert with milliseconds.
        let webhook = parse_time("2026-11-23T02:46:14.286260419Z")
            .unwrap()
            .unwrap();
        let listed = parse_time("2026-11-23T02:46:14.286Z").unwrap().unwrap();
        let active: HashSet<Key> = [("a".to_string(), listed)].into();
        assert!(missing(&[("a".to_string(), webhook)], &active).is_empty());
        // Another millisecond, another occurrence; another fingerprint, another alert.
        let other = parse_time("2026-11-23T02:46:14.287Z").unwrap().unwrap();
        let active: HashSet<Key> = [("a".to_string(), other), ("b".to_string(), listed)].into();
        assert_eq!(
            missing(&[("a".to_string(), webhook)], &active),
            vec![("a".to_string(), webhook)],
            "what is missing is the stored key, for resolve_gone to find"
        );
    }

    #[test]
    fn an_alert_alertmanager_lists_with_nanoseconds_is_not_missing() {
        // Stored times are microseconds; Alertmanager may list nanoseconds. Were they
        // compared untruncated, a firing alert would be resolved as lost.
        let stored = crate::time::from_micros(1_795_401_988_738_123);
        let listed = parse_time("2026-11-23T02:46:28.738123456Z")
            .unwrap()
            .unwrap();
        let active: HashSet<Key> = [("a".to_string(), listed)].into();
        assert!(missing(&[("a".to_string(), stored)], &active).is_empty());
    }
}
