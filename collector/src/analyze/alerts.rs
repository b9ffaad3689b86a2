//! Anomalies → alerts: what an operator is told.
//!
//! An alert is one view series (view name + key labels, so one host) being anomalous: it opens
//! at the first anomalous window, stays open while anomalies keep coming and resolves after
//! `resolve_after_windows` windows without one. A bounce storm that scores high for forty
//! windows is one alert, not forty; a series that flaps inside the resolve delay stays one alert.
//! Every detector that fired on the series (seasonal band, level shift, ratio, fleet, forecast)
//! is listed in the alert.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::Anomaly;

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The view (`bounce_ratio`, `messages_deferred`, `spool_full`, …).
    pub name: String,
    /// The view key: `host` and the view's `by` labels (non-empty ones).
    pub labels: Vec<(String, String)>,
    /// Detectors that fired, sorted.
    pub detectors: Vec<String>,
    /// Start of the first and of the latest anomalous window (Unix ms).
    pub first_window_unix_ms: i64,
    pub last_window_unix_ms: i64,
    /// When it resolved (start of the window that closed it), if it did.
    pub resolved_unix_ms: Option<i64>,
    /// Anomalous windows (counted once per window, whatever the number of detectors).
    pub windows: u32,
    /// Highest score seen.
    pub peak_score: f64,
    /// The evidence of the highest-scoring anomaly.
    pub peak_detail: String,
    /// The latest anomalous window's figures (its highest-scoring anomaly).
    pub last: AlertFigures,
    /// An advice alert's own summary and recommendation (none for a detector's alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<super::advice::Advice>,
}

/// What one anomalous window of an alert's series looked like.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertFigures {
    /// Window length in seconds.
    pub window_secs: u32,
    /// The value in the window.
    pub observed: f64,
    /// What was expected, and the band around it.
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// `above` or `below` the band.
    pub direction: String,
    /// The anomaly's score.
    pub score: f64,
}

impl Alert {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type AlertKey = (String, Vec<(String, String)>);

/// Open alerts by key; see the module documentation.
#[derive(Debug, Default)]
pub struct AlertTracker {
    open: BTreeMap<AlertKey, (Alert, BTreeSet<String>)>,
}

impl AlertTracker {
    /// Takes the anomalies of the window starting at `window_ms` (windows in time order);
    /// returns the alerts that opened in it and those that resolved.
    pub fn observe(
        &mut self,
        window_ms: i64,
        anomalies: &[Anomaly],
        resolve_after_windows: u32,
        step_secs: u32,
    ) -> (Vec<Alert>, Vec<Alert>) {
        let mut opened_keys = Vec::new();
        for a in anomalies {
            let key = (a.metric.clone(), a.labels.clone());
            let (alert, detectors) = self.open.entry(key.clone()).or_insert_with(|| {
                opened_keys.push(key);
                (
                    Alert {
                        name: a.metric.clone(),
                        labels: a.labels.clone(),
                        detectors: Vec::new(),
                        first_window_unix_ms: window_ms,
                        last_window_unix_ms: window_ms,
                        resolved_unix_ms: None,
                        windows: 0,
                        peak_score: 0.0,
                        peak_detail: String::new(),
                        last: AlertFigures::default(),
                        advice: None,
                    },
                    BTreeSet::new(),
                )
            });
            if alert.windows == 0 || alert.last_window_unix_ms != window_ms {
                alert.windows += 1;
                alert.last = AlertFigures::default();
            }
            if alert.last.direction.is_empty() || a.score > alert.last.score {
                alert.last = AlertFigures {
                    window_secs: a.window_secs,
                    observed: a.observed,
                    expected: a.expected,
                    lower: a.lower,
                    upper: a.upper,
                    direction: a.direction.clone(),
                    score: a.score,
                };
            }
            alert.last_window_unix_ms = window_ms;
            detectors.insert(a.detector.clone());
            alert.detectors = detectors.iter().cloned().collect();
            if a.score > alert.peak_score || alert.peak_detail.is_empty() {
                alert.peak_score = a.score;
                alert.peak_detail = a.detail.clone();
            }
        }
        let opened = opened_keys
            .iter()
            .filter_map(|k| self.open.get(k).map(|(a, _)| a.clone()))
            .collect();
        let quiet_ms = i64::from(resolve_after_windows.max(1)) * i64::from(step_secs) * 1000;
        let stale: Vec<AlertKey> = self
            .open
            .iter()
            .filter(|(_, (a, _))| window_ms - a.last_window_unix_ms >= quiet_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let resolved = stale
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .map(|(mut a, _)| {
                a.resolved_unix_ms = Some(window_ms);
                a
            })
            .collect();
        (opened, resolved)
    }

    /// The alerts open now, sorted by name and labels.
    pub fn open(&self) -> Vec<Alert> {
        self.open.values().map(|(a, _)| a.clone()).collect()
    }

    /// Takes every open alert out (unresolved).
    pub fn close_all(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.open)
            .into_values()
            .map(|(a, _)| a)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly(metric: &str, host: &str, window_ms: i64, detector: &str, score: f64) -> Anomaly {
        Anomaly {
            id: 0,
            metric: metric.into(),
            labels: vec![("host".into(), host.into())],
            window_start_unix_ms: window_ms,
            window_secs: 300,
            detector: detector.into(),
            observed: 1.0,
            expected: 0.0,
            lower: 0.0,
            upper: 0.5,
            score,
            direction: "above".into(),
            detail: format!("{detector} {score}"),
        }
    }

    #[test]
    fn consecutive_anomalies_are_one_alert_until_quiet() {
        let mut t = AlertTracker::default();
        let w = |i: i64| i * 300_000;
        let (opened, _) = t.observe(w(0), &[anomaly("b", "mx1", w(0), "ratio", 0.96)], 3, 300);
        assert_eq!(opened.len(), 1);
        // Two detectors in one window count once; a gap shorter than the resolve delay keeps it.
        let (opened, resolved) = t.observe(
            w(1),
            &[
                anomaly("b", "mx1", w(1), "seasonal", 0.99),
                anomaly("b", "mx1", w(1), "fleet", 0.97),
            ],
            3,
            300,
        );
        assert!(opened.is_empty() && resolved.is_empty());
        t.observe(w(3), &[anomaly("b", "mx1", w(3), "ratio", 0.95)], 3, 300);
        let (_, resolved) = t.observe(w(5), &[], 3, 300);
        assert!(resolved.is_empty());
        let (_, resolved) = t.observe(w(6), &[anomaly("b", "mx2", w(6), "ratio", 0.95)], 3, 300);
        assert_eq!(resolved.len(), 1);
        let a = &resolved[0];
        assert_eq!(a.windows, 3);
        assert_eq!(a.detectors, ["fleet", "ratio", "seasonal"]);
        assert_eq!(
            (a.first_window_unix_ms, a.last_window_unix_ms),
            (w(0), w(3))
        );
        assert_eq!(a.resolved_unix_ms, Some(w(6)));
        assert_eq!(a.peak_score, 0.99);
        assert_eq!(a.peak_detail, "seasonal 0.99");
        assert_eq!(t.open().len(), 1, "mx2's alert is open");
        assert_eq!(t.close_all()[0].label("host"), Some("mx2"));
    }
}
