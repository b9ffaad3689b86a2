//! Matching a run's alerts to its incident labels.
//!
//! - an incident label (one incident on one host) is **detected** by an alert on the same host
//!   whose first window starts at or after the window holding the label's start and before its
//!   end plus `grace_secs` (retries of deferred mail outlast the cause), and whose labels do
//!   not contradict the label's keys (an alert on `domain="yahoo.com"` does not detect a storm
//!   at gmail.com; a host-wide alert does);
//! - its **delay** is the number of windows from the incident's start to the end of the first
//!   such alert's first window (1 = flagged in the window the incident began);
//! - an alert that detects no label is a **false alert**; alerts that opened before the scored
//!   period are warm-up alerts, counted but not scored.

use mailpulse_collector::analyze::Alert;
use serde::Serialize;

use crate::fleet::IncidentLabel;

/// One label and how it was detected.
#[derive(Debug, Clone, Serialize)]
pub struct LabelResult {
    /// The label.
    pub label: IncidentLabel,
    /// Windows from the incident's start to the end of the first detecting alert's first
    /// window; `None`: not detected.
    pub delay_windows: Option<u32>,
    /// Views whose alerts detected it.
    pub views: Vec<String>,
}

/// Labels matched against alerts.
pub struct Scored {
    /// Every label and how it was detected.
    pub labels: Vec<LabelResult>,
    /// Alerts of the scored period that detect no label.
    pub false_alerts: Vec<Alert>,
    /// Alerts that opened before the scored period.
    pub warmup_alerts: Vec<Alert>,
}

/// Matches `alerts` to `labels`; see the module documentation. Alerts that opened before
/// `scored_from_ms` are warm-up alerts.
pub fn score(
    labels: &[IncidentLabel],
    alerts: &[Alert],
    window_ms: i64,
    grace_ms: i64,
    scored_from_ms: i64,
) -> Scored {
    let mut results: Vec<LabelResult> = labels
        .iter()
        .map(|label| LabelResult {
            label: label.clone(),
            delay_windows: None,
            views: Vec::new(),
        })
        .collect();
    let mut false_alerts = Vec::new();
    let mut warmup_alerts = Vec::new();
    for alert in alerts {
        if alert.first_window_unix_ms < scored_from_ms {
            warmup_alerts.push(alert.clone());
            continue;
        }
        let mut detects_any = false;
        for result in &mut results {
            let label = &result.label;
            let start_ms = label.start_unix_secs * 1000;
            let from = start_ms.div_euclid(window_ms) * window_ms;
            let until = label.end_unix_secs * 1000 + grace_ms;
            if alert.label("host") != Some(label.host.as_str())
                || !(from..until).contains(&alert.first_window_unix_ms)
                || contradicts(alert, label)
            {
                continue;
            }
            detects_any = true;
            let end_of_window = alert.first_window_unix_ms + window_ms;
            let delay = ((end_of_window - start_ms) as f64 / window_ms as f64).ceil();
            let delay = delay.clamp(1.0, f64::from(u32::MAX)) as u32;
            result.delay_windows = Some(result.delay_windows.map_or(delay, |d| d.min(delay)));
            if !result.views.contains(&alert.name) {
                result.views.push(alert.name.clone());
            }
        }
        if !detects_any {
            false_alerts.push(alert.clone());
        }
    }
    for result in &mut results {
        result.views.sort();
    }
    Scored {
        labels: results,
        false_alerts,
        warmup_alerts,
    }
}

/// Whether an alert's labels point elsewhere than the label's keys.
fn contradicts(alert: &Alert, label: &IncidentLabel) -> bool {
    let keys = &label.keys;
    if let Some(domain) = alert.label("domain") {
        let named: Vec<&str> = keys
            .domain
            .iter()
            .chain(&keys.domains)
            .map(String::as_str)
            .collect();
        if !named.is_empty() && !named.contains(&domain) {
            return true;
        }
    }
    let pairs = [
        ("relay", keys.relay.as_deref()),
        ("user", keys.sasl_user.as_deref()),
        ("client_net", keys.client_net.as_deref()),
        ("path", keys.path.as_deref()),
    ];
    pairs.iter().any(|(name, expected)| {
        matches!((alert.label(name), expected), (Some(got), Some(want)) if got != *want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{AffectedKeys, IncidentKind};

    fn label(kind: IncidentKind, host: &str, start: i64, end: i64, domain: &str) -> IncidentLabel {
        IncidentLabel {
            id: format!("{kind}-1"),
            kind,
            host: host.into(),
            start: String::new(),
            end: String::new(),
            start_unix_secs: start,
            end_unix_secs: end,
            keys: AffectedKeys {
                domain: Some(domain.into()),
                ..AffectedKeys::default()
            },
        }
    }

    fn alert(name: &str, labels: &[(&str, &str)], first_ms: i64) -> Alert {
        Alert {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            detectors: vec!["ratio".into()],
            first_window_unix_ms: first_ms,
            last_window_unix_ms: first_ms,
            resolved_unix_ms: None,
            windows: 1,
            peak_score: 1.0,
            peak_detail: String::new(),
            last: Default::default(),
            advice: None,
        }
    }

    #[test]
    fn alerts_detect_labels_on_their_host_keys_and_time() {
        let w = 300_000;
        let labels = [label(
            IncidentKind::BounceStorm,
            "mx1",
            36_000,
            43_200,
            "gmail.com",
        )];
        let alerts = [
            // The second window of the storm: delay 2.
            alert(
                "bounce_ratio",
                &[("domain", "gmail.com"), ("host", "mx1")],
                36_000_000 + w,
            ),
            // Host-wide: detects too, but later.
            alert("messages_bounced", &[("host", "mx1")], 36_000_000 + 3 * w),
            // Another domain, another host, before the start, after the grace: false.
            alert(
                "bounce_ratio",
                &[("domain", "yahoo.com"), ("host", "mx1")],
                36_000_000,
            ),
            alert(
                "bounce_ratio",
                &[("domain", "gmail.com"), ("host", "mx2")],
                36_000_000,
            ),
            alert("messages_bounced", &[("host", "mx1")], 36_000_000 - 2 * w),
            alert(
                "messages_bounced",
                &[("host", "mx1")],
                43_200_000 + 5_400_000,
            ),
            // Warm-up.
            alert("messages_bounced", &[("host", "mx1")], 1_000),
        ];
        let scored = score(&labels, &alerts, w, 5_400_000, 10_000_000);
        assert_eq!(scored.labels[0].delay_windows, Some(2));
        assert_eq!(
            scored.labels[0].views,
            vec!["bounce_ratio".to_owned(), "messages_bounced".to_owned()]
        );
        assert_eq!(scored.false_alerts.len(), 4);
        assert_eq!(scored.warmup_alerts.len(), 1);
    }
}
