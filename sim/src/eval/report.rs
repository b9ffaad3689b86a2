//! The evaluation's printed report and its JSON Lines / CSV outputs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use mailpulse_collector::analyze::Alert;
use mailpulse_collector::model::Anomaly;
use serde::Serialize;

use super::score::LabelResult;
use super::{EvalFile, RunResult};
use crate::fleet::IncidentKind;

/// The printed report and the targets it missed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The tables, as printed.
    pub text: String,
    /// One line per target missed (empty: all met).
    pub missed: Vec<String>,
}

/// Totals of one incident kind (or of all).
#[derive(Default)]
struct KindTotals {
    labels: usize,
    detected: usize,
    delays: Vec<u32>,
}

impl KindTotals {
    fn recall(&self) -> f64 {
        if self.labels == 0 {
            f64::NAN
        } else {
            self.detected as f64 / self.labels as f64
        }
    }

    fn median_delay(&mut self) -> Option<f64> {
        median(&mut self.delays)
    }
}

fn median(values: &mut [u32]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        f64::from(values[n / 2])
    } else {
        (f64::from(values[n / 2 - 1]) + f64::from(values[n / 2])) / 2.0
    })
}

/// The report of `results`, judged against `eval`'s targets; `seconds` is the wall-clock time
/// of the whole evaluation.
pub fn report(eval: &EvalFile, results: &[RunResult], seconds: f64) -> Report {
    let mut by_kind: BTreeMap<IncidentKind, KindTotals> = BTreeMap::new();
    let mut all = KindTotals::default();
    let mut false_by_view: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut host_weeks, mut false_alerts, mut warmup_alerts) = (0.0, 0usize, 0usize);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<12} {:>6} {:>5} {:>5} {:>7} {:>11} {:>7} {:>6} {:>7}",
        "scenario", "seed", "hosts", "days", "labels", "detected", "false", "series", "seconds"
    );
    for r in results {
        host_weeks += r.hosts as f64 * r.days / 7.0;
        false_alerts += r.false_alerts.len();
        warmup_alerts += r.warmup_alerts;
        for a in &r.false_alerts {
            *false_by_view.entry(a.name.as_str()).or_default() += 1;
        }
        let detected = r
            .labels
            .iter()
            .filter(|l| l.delay_windows.is_some())
            .count();
        let _ = writeln!(
            text,
            "{:<12} {:>6} {:>5} {:>5.1} {:>7} {:>11} {:>7} {:>6} {:>7.1}",
            r.scenario,
            r.seed,
            r.hosts,
            r.days,
            r.labels.len(),
            detected,
            r.false_alerts.len(),
            r.view_series,
            r.seconds
        );
        for l in &r.labels {
            for totals in [by_kind.entry(l.label.kind).or_default(), &mut all] {
                totals.labels += 1;
                if let Some(d) = l.delay_windows {
                    totals.detected += 1;
                    totals.delays.push(d);
                }
            }
        }
    }
    let t = &eval.targets;
    let mut missed = Vec::new();
    let _ = writeln!(
        text,
        "\n{:<20} {:>7} {:>9} {:>7} {:>22}",
        "incident", "labels", "detected", "recall", "median delay (windows)"
    );
    let mut rows: Vec<(String, &mut KindTotals)> = by_kind
        .iter_mut()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect();
    rows.push(("all".to_owned(), &mut all));
    for (name, totals) in rows {
        let recall = totals.recall();
        let delay = totals.median_delay();
        let _ = writeln!(
            text,
            "{:<20} {:>7} {:>9} {:>7.2} {:>22}",
            name,
            totals.labels,
            totals.detected,
            recall,
            delay.map_or("-".to_owned(), |d| format!("{d:.1}"))
        );
        if totals.labels > 0 && recall < t.min_recall {
            missed.push(format!("{name} recall {recall:.2} < {}", t.min_recall));
        }
        let limit = if name == "all" {
            t.max_median_delay_windows
        } else {
            t.max_kind_median_delay_windows
                .unwrap_or(t.max_median_delay_windows)
        };
        if delay.is_some_and(|d| d > limit) {
            missed.push(format!(
                "{name} median delay {:.1} > {limit} windows",
                delay.unwrap_or_default(),
            ));
        }
    }
    let per_host_week = if host_weeks > 0.0 {
        false_alerts as f64 / host_weeks
    } else {
        0.0
    };
    let views: Vec<String> = false_by_view
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    let _ = writeln!(
        text,
        "\nfalse alerts: {false_alerts} in {host_weeks:.1} host-weeks = {per_host_week:.2} per host-week{}",
        if views.is_empty() {
            String::new()
        } else {
            format!(" ({})", views.join(", "))
        }
    );
    let _ = writeln!(
        text,
        "warm-up alerts (not scored): {warmup_alerts}; window {} s, warm-up {} days, grace {} s; {:.1} s",
        eval.window_secs, eval.warmup_days, eval.grace_secs, seconds
    );
    if per_host_week > t.max_false_alerts_per_host_week {
        missed.push(format!(
            "{per_host_week:.2} false alerts per host-week > {}",
            t.max_false_alerts_per_host_week
        ));
    }
    let _ = writeln!(
        text,
        "targets: recall >= {}, false alerts <= {} per host-week, median delay <= {} windows: {}",
        t.min_recall,
        t.max_false_alerts_per_host_week,
        t.max_median_delay_windows,
        if missed.is_empty() { "met" } else { "MISSED" }
    );
    Report { text, missed }
}

/// One line per alert: run, whether it detected a label, the alert.
pub fn write_alerts(out: &mut impl Write, results: &[RunResult]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        scenario: &'a str,
        seed: u64,
        outcome: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<&'a LabelResult>,
        #[serde(skip_serializing_if = "Option::is_none")]
        alert: Option<&'a Alert>,
    }
    for r in results {
        for l in &r.labels {
            let outcome = if l.delay_windows.is_some() {
                "detected"
            } else {
                "missed"
            };
            let line = Line {
                scenario: &r.scenario,
                seed: r.seed,
                outcome,
                label: Some(l),
                alert: None,
            };
            json_line(out, &line)?;
        }
        for a in &r.false_alerts {
            let line = Line {
                scenario: &r.scenario,
                seed: r.seed,
                outcome: "false_alert",
                label: None,
                alert: Some(a),
            };
            json_line(out, &line)?;
        }
    }
    Ok(())
}

/// One line per anomaly: run and anomaly.
pub fn write_anomalies(out: &mut impl Write, results: &[RunResult]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        scenario: &'a str,
        seed: u64,
        anomaly: &'a Anomaly,
    }
    for r in results {
        for anomaly in &r.anomalies {
            let line = Line {
                scenario: &r.scenario,
                seed: r.seed,
                anomaly,
            };
            json_line(out, &line)?;
        }
    }
    Ok(())
}

/// One CSV row per traced band and window.
pub fn write_trace(out: &mut impl Write, results: &[RunResult]) -> io::Result<()> {
    writeln!(
        out,
        "scenario,seed,window_start_unix_ms,series,observed,expected,lower,upper,score"
    )?;
    for r in results {
        for band in &r.traced {
            let labels: Vec<String> = band
                .series
                .labels
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            let j = &band.judgement;
            writeln!(
                out,
                "{},{},{},{}{{{}}},{},{},{},{},{:.4}",
                r.scenario,
                r.seed,
                band.window_start_unix_ms,
                band.series.metric,
                labels.join(";"),
                j.observed,
                j.expected,
                j.lower,
                j.upper,
                j.score
            )?;
        }
    }
    Ok(())
}

/// `value` as one line of JSON.
fn json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        let mut none = [];
        assert_eq!(median(&mut none), None);
        assert_eq!(median(&mut [3, 1, 2]), Some(2.0));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2.5));
    }
}
