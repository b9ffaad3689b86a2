//! The evaluation's printed report and its JSON Lines / CSV outputs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use mailpulse_collector::analyze::Alert;
use mailpulse_collector::model::Anomaly;
use serde::Serialize;

use super::score::LabelResult;
use super::{EvalFile, RunResult, Targets};
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

/// What one run, or all of them, scored.
#[derive(Default)]
struct Totals<'a> {
    by_kind: BTreeMap<IncidentKind, KindTotals>,
    all: KindTotals,
    false_by_view: BTreeMap<&'a str, usize>,
    host_weeks: f64,
    false_alerts: usize,
    warmup_host_weeks: f64,
    warmup_alerts: usize,
}

impl<'a> Totals<'a> {
    fn of(results: impl IntoIterator<Item = &'a RunResult>) -> Self {
        let mut t = Totals::default();
        for r in results {
            t.host_weeks += r.hosts as f64 * r.days / 7.0;
            t.warmup_host_weeks += r.hosts as f64 * r.warmup_days / 7.0;
            t.false_alerts += r.false_alerts.len();
            t.warmup_alerts += r.warmup_alerts.len();
            for a in &r.false_alerts {
                *t.false_by_view.entry(a.name.as_str()).or_default() += 1;
            }
            for l in &r.labels {
                for totals in [t.by_kind.entry(l.label.kind).or_default(), &mut t.all] {
                    totals.labels += 1;
                    if let Some(d) = l.delay_windows {
                        totals.detected += 1;
                        totals.delays.push(d);
                    }
                }
            }
        }
        t
    }

    fn false_per_host_week(&self) -> f64 {
        per(self.false_alerts, self.host_weeks)
    }

    fn warmup_per_host_week(&self) -> f64 {
        per(self.warmup_alerts, self.warmup_host_weeks)
    }

    /// The targets these totals miss, each line prefixed with `who`.
    fn missed(&mut self, targets: &Targets, who: &str) -> Vec<String> {
        let mut missed = Vec::new();
        let mut rows: Vec<(&str, &mut KindTotals)> = self
            .by_kind
            .iter_mut()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        rows.push(("all", &mut self.all));
        for (name, totals) in rows {
            let recall = totals.recall();
            if totals.labels > 0 && recall < targets.min_recall {
                missed.push(format!(
                    "{who}{name} recall {recall:.2} < {}",
                    targets.min_recall
                ));
            }
            let limit = if name == "all" {
                targets.max_median_delay_windows
            } else {
                targets
                    .kind_median_delay_windows
                    .get(name)
                    .copied()
                    .or(targets.max_kind_median_delay_windows)
                    .unwrap_or(targets.max_median_delay_windows)
            };
            if let Some(delay) = totals.median_delay().filter(|&d| d > limit) {
                missed.push(format!(
                    "{who}{name} median delay {delay:.1} > {limit} windows"
                ));
            }
        }
        let per_host_week = self.false_per_host_week();
        if per_host_week > targets.max_false_alerts_per_host_week {
            missed.push(format!(
                "{who}{per_host_week:.2} false alerts per host-week > {}",
                targets.max_false_alerts_per_host_week
            ));
        }
        let warmup = self.warmup_per_host_week();
        if let Some(limit) = targets
            .max_warmup_alerts_per_host_week
            .filter(|&l| warmup > l)
        {
            missed.push(format!(
                "{who}{warmup:.2} warm-up alerts per host-week > {limit}"
            ));
        }
        missed
    }
}

fn per(count: usize, host_weeks: f64) -> f64 {
    if host_weeks > 0.0 {
        count as f64 / host_weeks
    } else {
        0.0
    }
}

/// The report of `results`, judged against `eval`'s targets, every run on its own and all
/// together; `seconds` is the wall-clock time of the whole evaluation.
pub fn report(eval: &EvalFile, results: &[RunResult], seconds: f64) -> Report {
    let targets = &eval.targets;
    let mut missed = Vec::new();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<12} {:>9} {:>5} {:>5} {:>6} {:>8} {:>6} {:>8} {:>7} {:>8} {:>7} {:>6} {:>7}",
        "scenario",
        "seed",
        "hosts",
        "days",
        "labels",
        "detected",
        "recall",
        "delay",
        "false",
        "false/hw",
        "warm-up",
        "wu/hw",
        "seconds"
    );
    for r in results {
        let mut run = Totals::of([r]);
        let who = format!("{} seed {}: ", r.scenario, r.seed);
        missed.extend(run.missed(targets, &who));
        let delay = run
            .all
            .median_delay()
            .map_or("-".to_owned(), |d| format!("{d:.1}"));
        let _ = writeln!(
            text,
            "{:<12} {:>9} {:>5} {:>5.1} {:>6} {:>8} {:>6.2} {:>8} {:>7} {:>8.2} {:>7} {:>6.2} {:>7.1}",
            r.scenario,
            r.seed,
            r.hosts,
            r.days,
            run.all.labels,
            run.all.detected,
            run.all.recall(),
            delay,
            run.false_alerts,
            run.false_per_host_week(),
            run.warmup_alerts,
            run.warmup_per_host_week(),
            r.seconds
        );
    }
    let mut all = Totals::of(results);
    let _ = writeln!(
        text,
        "\n{:<20} {:>7} {:>9} {:>7} {:>22}",
        "incident (all runs)", "labels", "detected", "recall", "median delay (windows)"
    );
    let mut rows: Vec<(&str, &mut KindTotals)> = all
        .by_kind
        .iter_mut()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    rows.push(("all", &mut all.all));
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
    }
    if results.len() > 1 {
        missed.extend(all.missed(targets, "all runs: "));
    }
    let views: Vec<String> = all
        .false_by_view
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    let _ = writeln!(
        text,
        "\nfalse alerts: {} in {:.1} host-weeks = {:.2} per host-week{}",
        all.false_alerts,
        all.host_weeks,
        all.false_per_host_week(),
        if views.is_empty() {
            String::new()
        } else {
            format!(" ({})", views.join(", "))
        }
    );
    let _ = writeln!(
        text,
        "warm-up alerts (while the detectors learn): {} in {:.1} host-weeks = {:.2} per host-week; window {} s, warm-up {} days, grace {} s; {:.1} s",
        all.warmup_alerts,
        all.warmup_host_weeks,
        all.warmup_per_host_week(),
        eval.window_secs,
        eval.warmup_days,
        eval.grace_secs,
        seconds
    );
    let _ = writeln!(
        text,
        "targets, every run and all runs: recall >= {}, false alerts <= {} per host-week, median delay <= {} windows ({} per kind){}: {}",
        targets.min_recall,
        targets.max_false_alerts_per_host_week,
        targets.max_median_delay_windows,
        targets
            .max_kind_median_delay_windows
            .unwrap_or(targets.max_median_delay_windows),
        targets
            .max_warmup_alerts_per_host_week
            .map_or(String::new(), |w| format!(
                ", warm-up alerts <= {w} per host-week"
            )),
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
        let alerts = [
            ("false_alert", &r.false_alerts),
            ("warmup_alert", &r.warmup_alerts),
        ];
        for (outcome, alerts) in alerts {
            for a in alerts {
                let line = Line {
                    scenario: &r.scenario,
                    seed: r.seed,
                    outcome,
                    label: None,
                    alert: Some(a),
                };
                json_line(out, &line)?;
            }
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
