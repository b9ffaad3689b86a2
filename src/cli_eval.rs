//! `mailpulse eval [--config FILE] [--alerts FILE.jsonl]`: simulate → agent pipeline → collector
//! detection, end to end and in process, over the scenarios of an evaluation file; prints per
//! incident kind the recall and the median detection delay, and the false alerts per host-week;
//! fails (exit 1) when a target is missed.
//!
//! For every run (a scenario and a seed) the scenario is started `warmup_days` earlier, so the
//! detectors have history when its period begins; every host's simulated log lines go through
//! its own agent pipeline (parser, tracker, traffic signals, aggregator: one batch per agent
//! window, `mailpulse_agent::sim::simulate_samples`), every batch through the collector's
//! decoder into store windows of `window_secs` and the engine the collector runs
//! (`mailpulse_collector::analyze::Replay`, configured by the file's `[detect]` section, the
//! collector's own).
//!
//! Scoring, per run, over the scenario's own period (the warm-up is reported, not scored):
//! - an incident label (one incident on one host) is **detected** by an alert on the same host
//!   whose first window starts at or after the window holding the label's start and before its
//!   end plus `grace_secs` (retries of deferred mail outlast the cause), and whose labels do
//!   not contradict the label's keys (an alert on `domain="yahoo.com"` does not detect a storm
//!   at gmail.com; a host-wide alert does);
//! - its **delay** is the number of windows from the incident's start to the end of the first
//!   such alert's first window (1 = flagged in the window the incident began);
//! - an alert that detects no label is a **false alert**; their count is divided by the
//!   host-weeks scored.
//!
//! Runs are independent and spread over the available cores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mailpulse_agent::sim::{IncidentKind, IncidentLabel, Scenario, simulate_samples};
use mailpulse_collector::analyze::{Alert, AnalyzeConfig, Band, Replay, Selector};
use mailpulse_collector::model::Anomaly;
use mailpulse_collector::store::SeriesRegistry;
use serde::{Deserialize, Serialize};

/// An evaluation file (TOML; unknown keys are errors). Paths are relative to the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalFile {
    /// What the results must reach.
    pub targets: Targets,
    /// Detection window: the collector's store resolution (default 300 s).
    #[serde(default = "default_window_secs")]
    pub window_secs: u32,
    /// The agents' window (default 60 s).
    #[serde(default = "default_agent_window_secs")]
    pub agent_window_secs: u32,
    /// Normal traffic simulated before each scenario's start (default 7 days).
    #[serde(default = "default_warmup_days")]
    pub warmup_days: f64,
    /// How long after an incident's end an alert still counts as detecting it (default 5 400 s).
    #[serde(default = "default_grace_secs")]
    pub grace_secs: i64,
    /// The collector's `[detect]` section (default: the collector's defaults).
    #[serde(default)]
    pub detect: AnalyzeConfig,
    /// Scenarios and seeds.
    pub runs: Vec<RunSpec>,
}

/// The targets of an evaluation file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Fewest detected labels per label, overall and for every incident kind.
    pub min_recall: f64,
    /// Most false alerts per host-week, overall.
    pub max_false_alerts_per_host_week: f64,
    /// Highest median delay in windows over all labels.
    pub max_median_delay_windows: f64,
    /// Highest median delay in windows of every incident kind; default: the overall target.
    /// Some incidents cannot show before their first affected message (a DNS failure of a
    /// domain that is mailed once in ten minutes), so a file may allow kinds more.
    #[serde(default)]
    pub max_kind_median_delay_windows: Option<f64>,
}

/// One `[[runs]]` entry: a scenario file and the seeds to run it with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub scenario: PathBuf,
    /// Default: the scenario's own seed.
    #[serde(default)]
    pub seeds: Vec<u64>,
}

fn default_window_secs() -> u32 {
    300
}
fn default_agent_window_secs() -> u32 {
    60
}
fn default_warmup_days() -> f64 {
    7.0
}
fn default_grace_secs() -> i64 {
    5_400
}

/// Longest warm-up accepted (days).
const MAX_WARMUP_DAYS: f64 = 60.0;

impl EvalFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: EvalFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        file.check()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(file)
    }

    fn check(&self) -> Result<()> {
        let t = &self.targets;
        if !(0.0..=1.0).contains(&t.min_recall) {
            bail!("targets.min_recall must be in 0..=1");
        }
        if !(t.max_false_alerts_per_host_week >= 0.0
            && t.max_median_delay_windows >= 0.0
            && t.max_kind_median_delay_windows.is_none_or(|d| d >= 0.0))
        {
            bail!("targets.max_* must be 0 or more");
        }
        if self.window_secs == 0 || self.agent_window_secs == 0 {
            bail!("window_secs and agent_window_secs must be at least 1");
        }
        if !self.window_secs.is_multiple_of(self.agent_window_secs) {
            bail!("window_secs must be a multiple of agent_window_secs");
        }
        if !(0.0..=MAX_WARMUP_DAYS).contains(&self.warmup_days) {
            bail!("warmup_days must be in 0..={MAX_WARMUP_DAYS}");
        }
        if self.grace_secs < 0 {
            bail!("grace_secs must be 0 or more");
        }
        if self.runs.is_empty() {
            bail!("no [[runs]]");
        }
        Ok(())
    }
}

/// What `mailpulse eval` was asked.
pub struct EvalArgs {
    /// The evaluation file.
    pub config: PathBuf,
    /// Where to write every label and false alert (JSON Lines).
    pub alerts: Option<PathBuf>,
    /// Where to write every anomaly (JSON Lines).
    pub anomalies: Option<PathBuf>,
    /// View series whose bands are traced (`view{label="value"}`).
    pub trace: Option<String>,
    /// Where to write the traced bands (CSV); default `trace.csv` when `trace` is set.
    pub trace_out: Option<PathBuf>,
}

/// One scenario with one seed, loaded.
struct Run {
    scenario: Scenario,
    file: PathBuf,
}

/// What one run gave.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub hosts: usize,
    /// Scored period (the scenario's own), in days.
    pub days: f64,
    pub labels: Vec<LabelResult>,
    /// Alerts in the scored period that detect no label.
    pub false_alerts: Vec<Alert>,
    /// Alerts that opened during the warm-up (not scored).
    pub warmup_alerts: usize,
    pub windows: u64,
    pub view_series: usize,
    pub stored_series: usize,
    pub late_samples: u64,
    pub seconds: f64,
    /// Every anomaly (for `--anomalies`).
    #[serde(skip)]
    pub anomalies: Vec<Anomaly>,
    /// The traced bands (for `--trace`).
    #[serde(skip)]
    pub traced: Vec<Band>,
}

/// One label and how it was detected.
#[derive(Debug, Clone, Serialize)]
pub struct LabelResult {
    pub label: IncidentLabel,
    /// Windows from the incident's start to the end of the first detecting alert's first
    /// window; `None`: not detected.
    pub delay_windows: Option<u32>,
    /// Views whose alerts detected it.
    pub views: Vec<String>,
}

/// Runs the evaluation file and prints the report; `alerts_out` gets every label and false
/// alert, `anomalies_out` every anomaly (JSON Lines).
pub fn run(args: &EvalArgs) -> Result<()> {
    let config = args.config.as_path();
    let eval = EvalFile::load(config)?;
    let trace = match &args.trace {
        Some(text) => Some(Selector::parse(text).map_err(|e| anyhow::anyhow!("--trace: {e}"))?),
        None => None,
    };
    let base = config.parent().unwrap_or(Path::new("."));
    let mut runs = Vec::new();
    for spec in &eval.runs {
        let file = base.join(&spec.scenario);
        let scenario = Scenario::load(&file)?;
        let seeds = if spec.seeds.is_empty() {
            vec![scenario.seed()]
        } else {
            spec.seeds.clone()
        };
        for seed in seeds {
            runs.push(Run {
                scenario: scenario.with_seed(seed),
                file: file.clone(),
            });
        }
    }
    let started = Instant::now();
    let results = run_all(&eval, &runs, trace.as_ref())?;
    let report = report(&eval, &results, started.elapsed().as_secs_f64());
    if let Some(path) = &args.alerts {
        write_alerts(path, &results)?;
    }
    if let Some(path) = &args.anomalies {
        write_anomalies(path, &results)?;
    }
    if let Some(path) = &args.trace_out {
        write_trace(path, &results)?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(report.text.as_bytes())?;
    out.flush()?;
    if !report.missed.is_empty() {
        bail!("targets missed: {}", report.missed.join("; "));
    }
    Ok(())
}

/// Runs every run, on as many threads as there are cores (at most one per run).
fn run_all(eval: &EvalFile, runs: &[Run], trace: Option<&Selector>) -> Result<Vec<RunResult>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(runs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<RunResult>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(i) else { break };
                    let result = run_one(eval, run, trace).with_context(|| {
                        format!("{} seed {}", run.file.display(), run.scenario.seed())
                    });
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Simulates, replays and scores one run.
fn run_one(eval: &EvalFile, run: &Run, trace: Option<&Selector>) -> Result<RunResult> {
    let started = Instant::now();
    let scored_from = run.scenario.start_unix_secs();
    let scored_to = run.scenario.end_unix_secs();
    let warmed = run.scenario.with_warmup_days(eval.warmup_days);
    let registry = SeriesRegistry::new(eval.detect.max_series.saturating_mul(50).max(100_000));
    let mut replay = Replay::new(
        &registry,
        eval.detect.engine(),
        eval.window_secs,
        MAX_BATCH_SAMPLES,
    );
    if let Some(selector) = trace {
        replay.trace(selector.clone());
    }
    let mut refused: Option<String> = None;
    simulate_samples(&warmed, eval.agent_window_secs, |host, samples| {
        if let Err(e) = replay.push(host, samples) {
            refused.get_or_insert(format!("{host}: {}", e.message));
        }
    });
    if let Some(e) = refused {
        bail!("the collector refused a batch: {e}");
    }
    let outcome = replay.finish();
    let labels = run.scenario.labels();
    let window_ms = i64::from(eval.window_secs) * 1000;
    let scored = score(
        &labels,
        &outcome.alerts,
        window_ms,
        eval.grace_secs * 1000,
        scored_from * 1000,
    );
    Ok(RunResult {
        scenario: run.scenario.name().to_owned(),
        seed: run.scenario.seed(),
        hosts: run.scenario.host_names().len(),
        days: (scored_to - scored_from) as f64 / 86_400.0,
        labels: scored.labels,
        false_alerts: scored.false_alerts,
        warmup_alerts: scored.warmup_alerts,
        windows: outcome.windows,
        view_series: outcome.view_series,
        stored_series: outcome.stored_series,
        late_samples: outcome.late_samples,
        seconds: started.elapsed().as_secs_f64(),
        anomalies: outcome.anomalies,
        traced: outcome.traced,
    })
}

/// Largest batch the replay accepts: one agent window of a busy host.
const MAX_BATCH_SAMPLES: usize = 200_000;

/// Labels matched against alerts.
struct Scored {
    labels: Vec<LabelResult>,
    false_alerts: Vec<Alert>,
    warmup_alerts: usize,
}

/// Matches `alerts` to `labels`; see the module documentation. Alerts that opened before
/// `scored_from_ms` are warm-up alerts.
fn score(
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
    let mut warmup_alerts = 0;
    for alert in alerts {
        if alert.first_window_unix_ms < scored_from_ms {
            warmup_alerts += 1;
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

/// The printed report and the targets it missed.
struct Report {
    text: String,
    missed: Vec<String>,
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

fn report(eval: &EvalFile, results: &[RunResult], seconds: f64) -> Report {
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
fn write_alerts(path: &Path, results: &[RunResult]) -> Result<()> {
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
    write_file(path, |out| {
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
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
            for a in &r.false_alerts {
                let line = Line {
                    scenario: &r.scenario,
                    seed: r.seed,
                    outcome: "false_alert",
                    label: None,
                    alert: Some(a),
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    })
}

/// One line per anomaly: run and anomaly.
fn write_anomalies(path: &Path, results: &[RunResult]) -> Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        scenario: &'a str,
        seed: u64,
        anomaly: &'a Anomaly,
    }
    write_file(path, |out| {
        for r in results {
            for anomaly in &r.anomalies {
                let line = Line {
                    scenario: &r.scenario,
                    seed: r.seed,
                    anomaly,
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    })
}

/// One CSV row per traced band and window.
fn write_trace(path: &Path, results: &[RunResult]) -> Result<()> {
    write_file(path, |out| {
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
    })
}

/// Creates `path`, lets `write` fill it through a buffer, and flushes it; errors name the file.
fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    write(&mut out).with_context(|| format!("writing {}", path.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpulse_agent::sim::AffectedKeys;

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
        assert_eq!(scored.warmup_alerts, 1);
        let mut none = [];
        assert_eq!(median(&mut none), None);
        assert_eq!(median(&mut [3, 1, 2]), Some(2.0));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2.5));
    }
}
