//! Detection over the stored series: the collector's side of `detect`.
//!
//! Every `interval_secs` the analyzer reads the stored windows it has not judged yet — all
//! series in one pass over the store — and pushes them, in time order, into the [`Engine`],
//! which rolls them up into [views](views) (bounces per host, bounce ratio per domain, deferred
//! queue per host, spool filling, …) and runs the detector each view's kind calls for. The
//! latest judgement of every view series is kept for `/metrics`
//! (`mailpulse_<view>_{observed,expected,lower,upper,anomaly_score}`, forecasts also
//! `_eta_seconds`), anomalies are stored with their evidence (`/api/v1/anomalies`) and grouped
//! into alerts (`/api/v1/alerts`).
//!
//! On start the engine is fed `history_days` of stored windows, so a restart refits from the
//! store instead of waiting weeks. A window is judged once it ended `settle_secs` ago (agents
//! ship a window after it closes and the store folds every few seconds; judging earlier would
//! see half a window). Counters are judged per window (the increase; a window without data is
//! 0 events), gauges by their level (a window without data is a gap).
//!
//! Architecture invariant: detection is causal — a window is pushed once, after it settled,
//! and never revised; the engine does no I/O (this module does the reading).

pub mod advice;
pub mod alerts;
pub mod engine;
pub mod views;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tracing::warn;

use crate::model::{Anomaly, SeriesDef, SeriesId};
use crate::store::{Aggregate, StoreHandle, unix_ms};

use crate::alerting::{AlertState, Lifecycle};
pub use crate::detect::Judgement;
pub use alerts::{Alert, AlertFigures, AlertTracker};
pub use engine::{Band, Engine, EngineConfig, Trace, TracePoint, WindowOutcome};
pub use views::{Selector, Side, View, ViewKind, default_views};

/// The `[detect]` section of the collector configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzeConfig {
    /// Run the detectors (default true).
    pub enabled: bool,
    /// Seconds between two rounds (default 60).
    pub interval_secs: u64,
    /// A window is judged once it ended this long ago (default 120).
    pub settle_secs: u64,
    /// What is judged; empty: the built-in views ([`default_views`]).
    pub views: Vec<View>,
    /// Most view series judged (the first ones seen); default 20 000.
    pub max_series: usize,
    /// Scores at or above this are anomalies (default 0.95).
    pub score_threshold: f64,
    /// Stored history the engine starts from (default 16 days: the weekly season needs two
    /// weeks and a day).
    pub history_days: u64,
    /// Fewest hosts with data for a fleet comparison (default 5).
    pub fleet_min_hosts: usize,
    /// Windows without an anomaly before an alert resolves (default 6).
    pub resolve_after_windows: u32,
    /// Days of history a ratio baseline draws on (default 14).
    pub ratio_baseline_days: u32,
    /// Adaptation time: half-life, in windows, of a lasting change's surprise once its windows
    /// are ordinary again (default 50: about four hours at 5-minute windows). A new level
    /// alerts at its onset and becomes the normal instead of alerting for days.
    pub adaptation_windows: f64,
    /// Windows of history before a volume series' verdicts open alerts (default 864: three days
    /// at 5-minute windows). Earlier verdicts are scored and marked `learning`; absolute limits
    /// (spool full, queue limit) alert from the start.
    pub learning_windows: usize,
    /// Advice alerts (`[detect.advice]`): DNSBL listings, MX routing, failing MX targets.
    pub advice: advice::AdviceConfig,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Self {
            enabled: true,
            interval_secs: 60,
            settle_secs: 120,
            views: Vec::new(),
            max_series: engine.max_series,
            score_threshold: engine.score_threshold,
            history_days: 16,
            fleet_min_hosts: engine.fleet_min_hosts,
            resolve_after_windows: engine.resolve_after_windows,
            ratio_baseline_days: engine.ratio_baseline_days,
            adaptation_windows: engine.adaptation_windows,
            learning_windows: engine.learning_windows,
            advice: advice::AdviceConfig::default(),
        }
    }
}

impl AnalyzeConfig {
    /// The engine configuration this section describes.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            views: if self.views.is_empty() {
                default_views()
            } else {
                self.views.clone()
            },
            score_threshold: self.score_threshold,
            max_series: self.max_series,
            fleet_min_hosts: self.fleet_min_hosts,
            resolve_after_windows: self.resolve_after_windows,
            ratio_baseline_days: self.ratio_baseline_days,
            adaptation_windows: self.adaptation_windows,
            learning_windows: self.learning_windows,
        }
    }
}

/// Where the analyzer's "now" comes from: the wall clock (a round every `interval_secs`), or a
/// simulated time another task advances (a fleet replayed fast-forward): a round each time it
/// moves, and `judged` set to the time a round judged up to, so the replay can wait for it —
/// every step is judged and every alert seen, however fast the replay runs.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    Wall,
    Simulated {
        /// Unix ms, as the replay last set it.
        now: watch::Receiver<i64>,
        /// The `now` of the latest finished round.
        judged: Arc<watch::Sender<i64>>,
    },
}

impl Clock {
    /// Now (Unix ms).
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::Wall => unix_ms(),
            Clock::Simulated { now, .. } => *now.borrow(),
        }
    }
}

/// What the analyzer shares with the exposition: latest bands and alerts.
#[derive(Debug, Default)]
pub struct Bands {
    inner: RwLock<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    bands: Vec<Band>,
    /// The lifecycle's alerts: active ones, then recently resolved ones.
    alerts: Vec<AlertState>,
    /// The recent judgements of the first [`TRACED_ALERTS`] alerts' series, by fingerprint.
    traces: std::collections::HashMap<String, Trace>,
}

/// Alerts whose series' recent judgements are published for charts.
const TRACED_ALERTS: usize = 200;

/// Alerts listed by `/api/v1/alerts` at most.
const ALERTS_KEPT: usize = 10_000;

impl Bands {
    /// A copy of every band, sorted by family and labels, for one scrape.
    pub fn all(&self) -> Vec<Band> {
        self.read().bands.clone()
    }

    /// Active alerts (firing, pending, silenced), then the most recently resolved ones, at
    /// most `limit`.
    pub fn alerts(&self, limit: usize) -> Vec<AlertState> {
        self.read().alerts.iter().take(limit).cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Shared> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The alert with `fingerprint`.
    pub fn alert(&self, fingerprint: &str) -> Option<AlertState> {
        self.read()
            .alerts
            .iter()
            .find(|a| a.fingerprint == fingerprint)
            .cloned()
    }

    /// The recent judgements of the series behind the alert with `fingerprint` (a detector's
    /// alert among the latest [`TRACED_ALERTS`]; advice and `agent_down` have none).
    pub fn trace(&self, fingerprint: &str) -> Option<Trace> {
        self.read().traces.get(fingerprint).cloned()
    }

    /// Keeps the traces of the lifecycle's alerts from `engine`.
    fn publish_traces(&self, engine: &Engine, lifecycle: &Lifecycle) {
        let mut traces = std::collections::HashMap::new();
        for alert in lifecycle.alerts(TRACED_ALERTS) {
            let Some(view) = alert.labels.get("alertname") else {
                continue;
            };
            // The alert's labels carry the view key (a SASL user is `sasl_user` there).
            let key: Vec<(&str, &str)> = alert
                .labels
                .iter()
                .map(|(n, v)| {
                    let n = if n == "sasl_user" { "user" } else { n.as_str() };
                    (n, v.as_str())
                })
                .collect();
            if let Some(trace) = engine.trace(view, &key) {
                traces.insert(alert.fingerprint.clone(), trace);
            }
        }
        self.inner.write().unwrap_or_else(|e| e.into_inner()).traces = traces;
    }

    fn publish_alerts(&self, lifecycle: &Lifecycle) {
        let alerts = lifecycle.alerts(ALERTS_KEPT);
        self.inner.write().unwrap_or_else(|e| e.into_inner()).alerts = alerts;
    }

    fn publish(&self, engine: &Engine) {
        let mut bands = engine.bands();
        bands.sort_by(|a, b| {
            a.series
                .metric
                .cmp(&b.series.metric)
                .then_with(|| a.series.labels.cmp(&b.series.labels))
        });
        self.inner.write().unwrap_or_else(|e| e.into_inner()).bands = bands;
    }
}

/// The agents the collector knows, watched for silence: an agent without an open stream, or
/// silent for `down_after`, is an `agent_down` alert (after a grace of `down_after` from the
/// collector's start, while agents reconnect).
pub struct AgentWatch {
    pub liveness: Arc<crate::ingest::liveness::Liveness>,
    pub down_after: Duration,
    pub started: std::time::Instant,
}

impl AgentWatch {
    /// The `agent_down` alerts as of `now_ms`.
    fn down(&self, store: &StoreHandle, now_ms: i64) -> Vec<Alert> {
        if self.started.elapsed() < self.down_after {
            return Vec::new();
        }
        let down_ms = self.down_after.as_millis() as i64;
        store
            .agents()
            .into_iter()
            .filter(|r| !self.liveness.status(&r.agent_id, self.down_after).up)
            .map(|r| {
                let since = (r.last_seen_unix_ms + down_ms).min(now_ms);
                let silent = (now_ms - r.last_seen_unix_ms).max(0) / 1000;
                Alert {
                    name: "agent_down".into(),
                    labels: vec![
                        ("agent".into(), r.agent_id.clone()),
                        ("host".into(), r.host.clone()),
                    ],
                    detectors: vec!["liveness".into()],
                    first_window_unix_ms: since,
                    last_window_unix_ms: now_ms,
                    resolved_unix_ms: None,
                    windows: 1,
                    peak_score: 1.0,
                    peak_detail: format!(
                        "agent {} on {} has sent nothing for {silent} s (down after {} s)",
                        r.agent_id,
                        r.host,
                        self.down_after.as_secs()
                    ),
                    last: AlertFigures::default(),
                    advice: None,
                }
            })
            .collect()
    }
}

/// The stored value a detector sees: a counter's increase, a gauge's level.
pub fn point_value(aggregate: &Aggregate) -> Option<f64> {
    match aggregate {
        Aggregate::Counter(v) => Some(*v),
        Aggregate::Gauge { value, .. } => Some(*value),
        _ => None,
    }
}

/// Pushes the stored windows in `from_ms..to_ms` into `engine`, every window of the range (an
/// empty one too: silent counters are news). Returns the anomalies.
/// Synchronous (reads redb); run it off the async runtime.
fn feed(store: &StoreHandle, engine: &mut Engine, from_ms: i64, to_ms: i64) -> Vec<Anomaly> {
    let resolution_ms = store.resolution_ms();
    let defs: Vec<Arc<SeriesDef>> = store.registry().all();
    let mut anomalies = Vec::new();
    let mut next = from_ms.div_euclid(resolution_ms) * resolution_ms;
    let mut push = |engine: &mut Engine, window: i64, frame: &[(SeriesId, &SeriesDef, f64)]| {
        let outcome = engine.push_window(window, frame);
        anomalies.extend(outcome.anomalies);
    };
    let mut frame: Vec<(SeriesId, &SeriesDef, f64)> = Vec::new();
    let read = store.for_each_window(from_ms, to_ms, |window, entries| {
        // Windows the store has nothing for still count (as empty) once data exists.
        while next < window {
            push(engine, next, &[]);
            next += resolution_ms;
        }
        frame.clear();
        frame.extend(entries.iter().filter_map(|(id, aggregate)| {
            let def = defs.get(*id as usize)?;
            Some((SeriesId(*id), &**def, point_value(aggregate)?))
        }));
        push(engine, window, &frame);
        next = window + resolution_ms;
    });
    if let Err(e) = read {
        warn!(error = %e, "reading stored windows failed");
        return anomalies;
    }
    // Trailing empty windows, only once the engine has seen data at all.
    if engine.series_count() > 0 {
        while next < to_ms {
            push(engine, next, &[]);
            next += resolution_ms;
        }
    }
    anomalies
}

/// Where each round's alerts go besides the lifecycle.
#[derive(Debug, Default)]
pub struct Outlets {
    /// The notifier (Alertmanagers, webhooks).
    pub notifier: Option<tokio::sync::mpsc::Sender<crate::alerting::notify::Round>>,
    /// The remediation engine (playbooks).
    pub remediation: Option<Arc<crate::remediate::Remediation>>,
}

/// Runs rounds every `interval_secs` until `shutdown` turns true; after each round the
/// analyzer's open alerts go through `lifecycle` (stored, published). Windows are judged as
/// `clock` passes them.
#[allow(clippy::too_many_arguments)]
pub async fn run_analyzer(
    store: StoreHandle,
    cfg: AnalyzeConfig,
    clock: Clock,
    shared: Arc<Bands>,
    mut lifecycle: Lifecycle,
    outlets: Outlets,
    agents: Option<AgentWatch>,
    mut shutdown: watch::Receiver<bool>,
) {
    shared.publish_alerts(&lifecycle);
    let resolution_ms = store.resolution_ms();
    let step_secs = (resolution_ms / 1000).max(1) as u32;
    let mut engine = Some(Engine::new(cfg.engine(), step_secs));
    let history_ms = (cfg.history_days.max(1) * 86_400_000) as i64;
    let settle_ms = (cfg.settle_secs * 1000) as i64;
    let mut next_ms: Option<i64> = None;
    let mut generation = store.registry().generation();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut simulated = match &clock {
        Clock::Simulated { now, .. } => Some(now.clone()),
        Clock::Wall => None,
    };
    loop {
        match simulated.as_mut() {
            Some(now) => tokio::select! {
                changed = now.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            },
            None => tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            },
        }
        let Some(mut e) = engine.take() else { return };
        // Series expired since the last round: their ids may name other series now.
        let current = store.registry().generation();
        if current != generation {
            generation = current;
            e.forget_routes();
        }
        let now = clock.now_ms();
        // Windows that ended at least `settle_secs` ago.
        let until = (now - settle_ms).div_euclid(resolution_ms) * resolution_ms;
        let from = next_ms.unwrap_or((until - history_ms).max(0));
        let (e, anomalies) = if from >= until {
            (e, Vec::new())
        } else {
            let (store2, shared2) = (store.clone(), shared.clone());
            let joined = tokio::task::spawn_blocking(move || {
                let found = feed(&store2, &mut e, from, until);
                shared2.publish(&e);
                (e, found)
            })
            .await;
            let Ok((e, anomalies)) = joined else {
                warn!("detector round panicked; detection stops");
                return;
            };
            // Until the first data arrives, every round looks back over the whole history: an
            // agent's backlog after an outage lands in windows that are already past.
            if e.series_count() > 0 {
                next_ms = Some(until);
            }
            (e, anomalies)
        };
        // Every round, data or not: an agent that went silent is news, and so is what the
        // fleet is (listings, MX routing).
        let mut open = e.open_alerts();
        if let Some(watch) = &agents {
            open.extend(watch.down(&store, now));
        }
        if cfg.advice.enabled {
            let (store2, advice_cfg) = (store.clone(), cfg.advice.clone());
            let advised = tokio::task::spawn_blocking(move || {
                advice::advise(&advice_cfg, &advice::read_facts(&store2, &advice_cfg, now))
            })
            .await;
            match advised {
                Ok(alerts) => open.extend(alerts),
                Err(_) => warn!("advice round panicked"),
            }
        }
        let update = lifecycle.update(now, &open);
        shared.publish_traces(&e, &lifecycle);
        engine = Some(e);
        if !anomalies.is_empty()
            && let Err(e) = store.record_anomalies(anomalies).await
        {
            warn!(error = %e, "storing anomalies failed");
        }
        if let Some(notifier) = &outlets.notifier {
            let (queued, stored) = tokio::sync::oneshot::channel();
            let round = crate::alerting::notify::Round {
                firing: lifecycle.firing(),
                transitions: update.transitions.clone(),
                queued,
            };
            if notifier.send(round).await.is_ok() {
                let _ = stored.await;
            }
        }
        if let Some(remediation) = &outlets.remediation
            && !update.transitions.is_empty()
        {
            remediation
                .send(crate::remediate::Input::Transitions(
                    update.transitions.clone(),
                ))
                .await;
        }
        crate::alerting::persist(&store, &update).await;
        shared.publish_alerts(&lifecycle);
        if let Clock::Simulated { judged, .. } = &clock {
            judged.send_replace(now);
        }
    }
}
