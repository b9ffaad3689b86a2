//! Runs the detectors over the stored series: every `interval_secs`, each watched series gets its
//! newest complete windows (stored at `resolution_secs`) pushed, in time order, into its own
//! causal scorer; the latest judgement of every series is kept for `/metrics`
//! (`…_expected`, `…_lower`, `…_upper`, `…_anomaly_score`, so Grafana can draw the band), and
//! points scored at or above `score_threshold` are stored as [`Anomaly`]s with their evidence.
//!
//! A series starts with `history_days` of stored windows, so a collector restart refits from the
//! store instead of waiting weeks. Counters are judged per window (the increase in the window;
//! a window without data is 0: no events); gauges by their level (a window without data is a
//! gap, NaN, which the scorer interpolates or skips).
//!
//! Architecture invariant: scorers are causal — a window is pushed once, after it is complete
//! (older than the current window), and never revised.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tracing::warn;

use crate::model::{Anomaly, MetricKind, SeriesDef, SeriesId};
use crate::store::{Aggregate, StoreHandle, unix_ms};

/// The `[detect]` section of the collector configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzeConfig {
    /// Run the detectors (default true).
    pub enabled: bool,
    /// Seconds between two rounds (default 60).
    pub interval_secs: u64,
    /// Metrics whose series are watched (counters and gauges).
    pub metrics: Vec<String>,
    /// Most series watched (the first ones registered); default 5 000.
    pub max_series: usize,
    /// Points scored at or above this are stored as anomalies (default 0.95).
    pub score_threshold: f64,
    /// Stored history a new scorer starts from (default 14 days).
    pub history_days: u64,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            metrics: [
                "messages_received",
                "messages_delivered",
                "messages_deferred",
                "messages_bounced",
                "messages_rejected",
                "queue_messages",
                "smtpd_connections",
                "sasl_auth_failures",
            ]
            .map(String::from)
            .to_vec(),
            max_series: 5_000,
            score_threshold: 0.95,
            history_days: 14,
        }
    }
}

/// What a scorer says about one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// In [0, 1]; 0 inside the band.
    pub score: f64,
    /// `above`, `below` or `inside`.
    pub direction: &'static str,
    /// Evidence in words (band units, model, …).
    pub detail: String,
}

/// A causal scorer of one series: points come in time order, once each.
pub trait PointScorer: Send {
    /// Judges the point of the window starting at `at_secs` and learns from it.
    fn push(&mut self, at_secs: i64, value: f64) -> Judgement;
}

/// Makes the scorer of a series (`step_secs` = the stored resolution).
pub type ScorerFactory = Arc<dyn Fn(&SeriesDef, u32) -> Box<dyn PointScorer> + Send + Sync>;

impl PointScorer for crate::detect::StreamingDetector {
    fn push(&mut self, at_secs: i64, value: f64) -> Judgement {
        use crate::detect::Direction;
        let s = crate::detect::StreamingDetector::push(self, at_secs, value);
        let direction = match s.score.direction {
            Direction::Above => "above",
            Direction::Below => "below",
            Direction::Inside | Direction::Missing => "inside",
        };
        let mut detail = format!(
            "{:?} model, {:.2} half-bands from the expected value",
            s.basis, s.score.band_units
        );
        if let Some(shift) = s.level_shift {
            detail.push_str(&format!("; level shift {shift:?}"));
        }
        Judgement {
            expected: s.score.expected,
            lower: s.score.lower,
            upper: s.score.upper,
            score: s.anomaly_score,
            direction,
            detail,
        }
    }
}

/// The production scorers: a [`crate::detect::StreamingDetector`] per series (seasonal band
/// with calibrated intervals, plus level shifts), counters as counts.
pub fn streaming_factory() -> ScorerFactory {
    Arc::new(|def: &SeriesDef, step_secs: u32| {
        let kind = match def.kind {
            MetricKind::Counter => crate::detect::SeriesKind::Count,
            _ => crate::detect::SeriesKind::Gauge,
        };
        Box::new(crate::detect::StreamingDetector::new(
            crate::detect::StreamConfig {
                step_secs: Some(step_secs),
                kind,
                ..crate::detect::StreamConfig::default()
            },
        )) as Box<dyn PointScorer>
    })
}

/// The latest judgement of a series.
#[derive(Debug, Clone)]
pub struct Band {
    pub series: Arc<SeriesDef>,
    pub window_start_unix_ms: i64,
    pub observed: f64,
    pub judgement: Judgement,
}

/// Latest judgements, shared with the exposition.
#[derive(Debug, Default)]
pub struct Bands {
    inner: RwLock<HashMap<SeriesId, Band>>,
}

impl Bands {
    /// A copy of every band, for one scrape.
    pub fn all(&self) -> Vec<Band> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut bands: Vec<Band> = map.values().cloned().collect();
        bands.sort_by(|a, b| {
            a.series
                .metric
                .cmp(&b.series.metric)
                .then_with(|| a.series.labels.cmp(&b.series.labels))
        });
        bands
    }

    fn set(&self, id: SeriesId, band: Band) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, band);
    }
}

/// Per-series state between rounds.
struct Watched {
    scorer: Box<dyn PointScorer>,
    /// First window not pushed yet (Unix ms).
    next_window_ms: i64,
}

/// Scores every watched series once: pushes its complete windows not seen yet. Returns the
/// anomalies found. Synchronous (reads redb); run it off the async runtime.
fn round(
    store: &StoreHandle,
    cfg: &AnalyzeConfig,
    factory: &ScorerFactory,
    bands: &Bands,
    state: &mut HashMap<SeriesId, Watched>,
    now_ms: i64,
) -> Vec<Anomaly> {
    let resolution_ms = store.resolution_ms();
    let step_secs = (resolution_ms / 1000).max(1) as u32;
    // Only complete windows: those that ended before the current one began.
    let current = now_ms.div_euclid(resolution_ms) * resolution_ms;
    let history_ms = (cfg.history_days.max(1) * 86_400_000) as i64;
    let mut anomalies = Vec::new();
    let registry = store.registry().all();
    let watched = registry
        .iter()
        .enumerate()
        .filter(|(_, def)| {
            def.kind != MetricKind::Histogram && cfg.metrics.iter().any(|m| *m == *def.metric)
        })
        .take(cfg.max_series);
    for (index, def) in watched {
        let id = SeriesId(index as u32);
        let entry = state.entry(id).or_insert_with(|| Watched {
            scorer: factory(def, step_secs),
            next_window_ms: (current - history_ms).max(0),
        });
        if entry.next_window_ms >= current {
            continue;
        }
        let points = match store.series_points(id, entry.next_window_ms, current) {
            Ok(points) => points,
            Err(e) => {
                warn!(error = %e, metric = %def.metric, "reading series points failed");
                continue;
            }
        };
        // Skip the empty stretch before a series' first point.
        let Some(&(first, _)) = points.first() else {
            continue;
        };
        let mut window = entry.next_window_ms.max(first);
        let mut points = points.into_iter().peekable();
        while window < current {
            let value = match points.peek() {
                Some((at, _)) if *at == window => {
                    let (_, aggregate) = points.next().expect("peeked");
                    match aggregate {
                        Aggregate::Counter(v) => v,
                        Aggregate::Gauge { value, .. } => value,
                        _ => f64::NAN,
                    }
                }
                _ if def.kind == MetricKind::Counter => 0.0,
                _ => f64::NAN,
            };
            let judgement = entry.scorer.push(window / 1000, value);
            if judgement.score >= cfg.score_threshold && value.is_finite() {
                anomalies.push(Anomaly {
                    id: 0,
                    metric: def.metric.to_string(),
                    labels: def
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    window_start_unix_ms: window,
                    window_secs: step_secs,
                    detector: "seasonal".into(),
                    observed: value,
                    expected: judgement.expected,
                    lower: judgement.lower,
                    upper: judgement.upper,
                    score: judgement.score,
                    direction: judgement.direction.into(),
                    detail: judgement.detail.clone(),
                });
            }
            bands.set(
                id,
                Band {
                    series: def.clone(),
                    window_start_unix_ms: window,
                    observed: value,
                    judgement,
                },
            );
            window += resolution_ms;
        }
        entry.next_window_ms = current;
    }
    anomalies
}

/// Runs rounds every `interval_secs` until `shutdown` turns true.
pub async fn run_analyzer(
    store: StoreHandle,
    cfg: AnalyzeConfig,
    factory: ScorerFactory,
    bands: Arc<Bands>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state: Option<HashMap<SeriesId, Watched>> = Some(HashMap::new());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(mut s) = state.take() else { return };
        let (store2, cfg2, factory2, bands2) =
            (store.clone(), cfg.clone(), factory.clone(), bands.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let found = round(&store2, &cfg2, &factory2, &bands2, &mut s, unix_ms());
            (s, found)
        })
        .await;
        let Ok((s, anomalies)) = joined else {
            warn!("detector round panicked; detection stops");
            return;
        };
        state = Some(s);
        if let Err(e) = store.record_anomalies(anomalies).await {
            warn!(error = %e, "storing anomalies failed");
        }
    }
}
