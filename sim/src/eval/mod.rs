//! The detection evaluation: simulate → agent pipeline → collector detection, end to end and in
//! process, over the scenarios of an evaluation file (`mailpulse eval`).
//!
//! For every run (a scenario and a seed) the scenario is started `warmup_days` earlier, so the
//! detectors have history when its period begins; every host's simulated log lines go through
//! its own agent pipeline (parser, tracker, traffic signals, aggregator: one batch per agent
//! window, [`simulate_samples`]), every batch through the collector's decoder into store windows
//! of `window_secs` and the engine the collector runs ([`Replay`], configured by the file's
//! `[detect]` section, the collector's own).
//!
//! Scoring ([`score`]) matches the alerts of a run's own period to its incident labels;
//! [`report`] prints recall and median delay per incident kind and false alerts per host-week,
//! and names the targets missed. Runs are independent and spread over the available cores.

mod replay;
pub mod report;
pub mod score;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mailpulse_collector::analyze::{Alert, AnalyzeConfig, Band, Selector};
use mailpulse_collector::model::Anomaly;
use mailpulse_collector::store::SeriesRegistry;
use serde::{Deserialize, Serialize};

use crate::fleet::{IncidentKind, Scenario, SimError, simulate_samples};
pub use replay::{Replay, ReplayOutcome};
pub use report::{Report, write_alerts, write_anomalies, write_trace};
pub use score::LabelResult;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The evaluation file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The evaluation file is not valid TOML or has unknown keys.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error (with line and column).
        #[source]
        source: toml::de::Error,
    },
    /// A value of the evaluation file is out of range.
    #[error("checking {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A scenario named by the file could not be loaded.
    #[error(transparent)]
    Scenario(#[from] SimError),
    /// The collector's decoder refused a simulated batch (the simulator and the collector
    /// disagree on the wire contract).
    #[error("{scenario} seed {seed}: the collector refused a batch: {message}")]
    Refused {
        /// The run's scenario file.
        scenario: PathBuf,
        /// The run's seed.
        seed: u64,
        /// The first refusal.
        message: String,
    },
}

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
    /// Highest median delay in windows of one incident kind, by kind name, where it differs
    /// from `max_kind_median_delay_windows`.
    #[serde(default)]
    pub kind_median_delay_windows: BTreeMap<String, f64>,
    /// Most alerts per host-week while the detectors learn (the warm-up): a new installation
    /// must not page its operators while it learns. Default: no target.
    #[serde(default)]
    pub max_warmup_alerts_per_host_week: Option<f64>,
}

/// One `[[runs]]` entry: a scenario file and the seeds to run it with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The scenario file, relative to the evaluation file.
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

/// Largest batch the replay accepts: one agent window of a busy host.
const MAX_BATCH_SAMPLES: usize = 200_000;

impl EvalFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: EvalFile = toml::from_str(&text).map_err(|source| EvalError::Parse {
            path: path.to_owned(),
            source,
        })?;
        file.check().map_err(|message| EvalError::Invalid {
            path: path.to_owned(),
            message: message.to_owned(),
        })?;
        Ok(file)
    }

    fn check(&self) -> Result<(), &'static str> {
        let t = &self.targets;
        if !(0.0..=1.0).contains(&t.min_recall) {
            return Err("targets.min_recall must be in 0..=1");
        }
        if !(t.max_false_alerts_per_host_week >= 0.0
            && t.max_median_delay_windows >= 0.0
            && t.max_kind_median_delay_windows.is_none_or(|d| d >= 0.0)
            && t.max_warmup_alerts_per_host_week.is_none_or(|d| d >= 0.0)
            && t.kind_median_delay_windows.values().all(|&d| d >= 0.0))
        {
            return Err("targets.max_* must be 0 or more");
        }
        if self.window_secs == 0 || self.agent_window_secs == 0 {
            return Err("window_secs and agent_window_secs must be at least 1");
        }
        if !self.window_secs.is_multiple_of(self.agent_window_secs) {
            return Err("window_secs must be a multiple of agent_window_secs");
        }
        if !(0.0..=MAX_WARMUP_DAYS).contains(&self.warmup_days) {
            return Err("warmup_days must be in 0..=60");
        }
        if self.grace_secs < 0 {
            return Err("grace_secs must be 0 or more");
        }
        if self.runs.is_empty() {
            return Err("no [[runs]]");
        }
        if t.kind_median_delay_windows
            .keys()
            .any(|k| !IncidentKind::ALL.iter().any(|kind| kind.as_str() == k))
        {
            return Err("targets.kind_median_delay_windows names an unknown incident kind");
        }
        Ok(())
    }

    /// Loads every run's scenario (relative to `base`, the file's directory), once per seed.
    pub fn runs(&self, base: &Path) -> Result<Vec<Run>, EvalError> {
        let mut runs = Vec::new();
        for spec in &self.runs {
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
        Ok(runs)
    }
}

/// One scenario with one seed, loaded.
#[derive(Debug, Clone)]
pub struct Run {
    /// The scenario, with the run's seed.
    pub scenario: Scenario,
    /// The file it came from.
    pub file: PathBuf,
}

/// What one run gave.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The scenario's name.
    pub scenario: String,
    /// The run's seed.
    pub seed: u64,
    /// Hosts simulated.
    pub hosts: usize,
    /// Scored period (the scenario's own), in days.
    pub days: f64,
    /// Every label and how it was detected.
    pub labels: Vec<LabelResult>,
    /// Alerts in the scored period that detect no label.
    pub false_alerts: Vec<Alert>,
    /// Alerts that opened during the warm-up (not scored as false alerts; counted against
    /// the warm-up target).
    pub warmup_alerts: Vec<Alert>,
    /// Warm-up simulated before the scored period, in days.
    pub warmup_days: f64,
    /// Store windows judged.
    pub windows: u64,
    /// View series judged.
    pub view_series: usize,
    /// Stored series interned.
    pub stored_series: usize,
    /// Samples of windows already judged (not judged).
    pub late_samples: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Every anomaly (for `--anomalies`).
    #[serde(skip)]
    pub anomalies: Vec<Anomaly>,
    /// The traced bands (for `--trace`).
    #[serde(skip)]
    pub traced: Vec<Band>,
}

/// Runs every run, on as many threads as there are cores (at most one per run); results in
/// the order of `runs`.
pub fn run_all(
    eval: &EvalFile,
    runs: &[Run],
    trace: Option<&Selector>,
) -> Result<Vec<RunResult>, EvalError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(runs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<RunResult, EvalError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(i) else { break };
                    let result = run_one(eval, run, trace);
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
pub fn run_one(
    eval: &EvalFile,
    run: &Run,
    trace: Option<&Selector>,
) -> Result<RunResult, EvalError> {
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
    if let Some(message) = refused {
        return Err(EvalError::Refused {
            scenario: run.file.clone(),
            seed: run.scenario.seed(),
            message,
        });
    }
    let outcome = replay.finish();
    let labels = run.scenario.labels();
    let window_ms = i64::from(eval.window_secs) * 1000;
    let scored = score::score(
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
        warmup_days: eval.warmup_days,
        windows: outcome.windows,
        view_series: outcome.view_series,
        stored_series: outcome.stored_series,
        late_samples: outcome.late_samples,
        seconds: started.elapsed().as_secs_f64(),
        anomalies: outcome.anomalies,
        traced: outcome.traced,
    })
}
