//! An alert as the domain receives it, whichever sender it came from (validated by
//! [`crate::alertmanager`]), and the key that groups alerts into one incident.

use std::collections::BTreeMap;

use super::{AlertStatus, LabelSet, Timestamp};

/// The annotation names under which Grafana-managed alerting's per-alert fields are kept.
/// The `grafana.` prefix is not a classic Prometheus name (no dots), so a clash is unlikely;
/// where the sender itself sent an annotation of that name, its own is kept.
pub mod grafana_keys {
    /// What every one of these names starts with.
    pub const PREFIX: &str = "grafana.";
    /// `values`, rendered as Grafana's own message does: `B=44.2, C=1`.
    pub const VALUES: &str = "grafana.values";
    pub const VALUE_STRING: &str = "grafana.valueString";
    pub const DASHBOARD_URL: &str = "grafana.dashboardURL";
    pub const PANEL_URL: &str = "grafana.panelURL";
    pub const SILENCE_URL: &str = "grafana.silenceURL";
    pub const IMAGE_URL: &str = "grafana.imageURL";
}

/// An alert after validation: times parsed, `endsAt` only where it means something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAlert {
    pub status: AlertStatus,
    pub alertname: String,
    pub labels: LabelSet,
    /// As sent; for Grafana's alerts with its per-alert fields under [`grafana_keys`] names.
    pub annotations: LabelSet,
    pub starts_at: Timestamp,
    /// Set for resolved alerts only (firing alerts' `endsAt` is Alertmanager's guess).
    pub ends_at: Option<Timestamp>,
    pub generator_url: String,
    /// As sent, or computed from the labels as Alertmanager does when the body has none.
    pub fingerprint: String,
}

/// The labels that `group_by` names, rendered as a correlation key; `None` when the alert has
/// none of them (the caller then falls back to Alertmanager's `groupKey`).
pub fn correlation_key(labels: &LabelSet, group_by: &[String]) -> Option<String> {
    let present: BTreeMap<&str, &str> = group_by
        .iter()
        .filter_map(|name| labels.get(name).map(|v| (name.as_str(), v.as_str())))
        .collect();
    if present.is_empty() {
        return None;
    }
    let parts: Vec<String> = group_by
        .iter()
        .filter_map(|name| present.get(name.as_str()).map(|v| format!("{name}={v:?}")))
        .collect();
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_key_uses_the_named_labels_in_order() {
        let labels: LabelSet = [("service", "pay"), ("team", "t1"), ("x", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let by = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            correlation_key(&labels, &by(&["team", "service"])).as_deref(),
            Some(r#"team="t1",service="pay""#)
        );
        assert_eq!(correlation_key(&labels, &by(&["cluster"])), None);
    }
}
