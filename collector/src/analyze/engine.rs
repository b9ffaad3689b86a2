//! [`Engine`]: the detectors of every view series, fed one complete stored window at a time.
//!
//! The collector feeds it from the store ([`super::run_analyzer`]); `mailpulse eval` feeds it
//! from the simulator through the agent's pipeline. Both hand it *frames*: every stored
//! series' aggregate of one window, windows in time order, each once. For every window the
//! engine
//! 1. rolls the frame up into view series (sum of the matching series per key; ratios as
//!    failures and attempts; forecast gauges with their capacity);
//! 2. judges every view series with the detector its view's kind calls for (the causal
//!    detectors of [`crate::detect::causal`]; the engine only routes) — also those without
//!    data in the window: a counter that stays silent is 0 events, which is news when mail
//!    usually flows (gauges: a gap);
//! 3. compares each fleet (one view key across hosts) for outliers;
//! 4. turns anomalies into alerts ([`super::alerts`]).
//!
//! What becomes an [`Anomaly`]: a score at or above `score_threshold` on the view's side, and
//! practically significant — a volume at least `min_excess` beyond the band edge, a ratio with
//! at least `min_failures` failures at 1.5× the baseline rate. A volume model still in its
//! robust cold start (less than a season of data) does not raise anomalies: median ± MAD of a
//! few night hours would flag every morning.
//!
//! Architecture invariant: the engine does no I/O and reads no clock; the same frames give the
//! same anomalies and alerts.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::detect::causal::{
    Assessment, DEFAULT_BASELINE_DAYS, DEFAULT_SCORE_THRESHOLD, DetectorKind, Deviation, Evidence,
    ForecastDetector, ForecastDetectorConfig, ForecastLimit, Judgement, RatioConfig, RatioDetector,
    Verdict, VolumeConfig, VolumeDetector,
};
use crate::detect::{FleetConfig, SeriesKind, StreamConfig, fleet_outliers};
use crate::model::{Anomaly, MetricKind, SeriesDef, SeriesId};

use super::alerts::{Alert, AlertTracker};
use super::views::{Roles, View, ViewKind};

/// How the engine judges.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The views.
    pub views: Vec<View>,
    /// Scores at or above this are anomalies (0..=1).
    pub score_threshold: f64,
    /// Most view series judged (the first ones seen).
    pub max_series: usize,
    /// Fewest hosts with data for a fleet comparison.
    pub fleet_min_hosts: usize,
    /// Windows without an anomaly after which an alert resolves.
    pub resolve_after_windows: u32,
    /// Days of hourly history the ratio and count baselines draw on.
    pub ratio_baseline_days: u32,
    /// Half-life, in windows, of a lasting change's surprise once its windows are ordinary
    /// again: how fast a new level becomes the normal (see [`StreamConfig::adaptation_points`]).
    pub adaptation_windows: f64,
    /// Windows of history before a volume series' verdicts open alerts (see
    /// [`StreamConfig::learning_points`]).
    pub learning_windows: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            views: super::views::default_views(),
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            max_series: 20_000,
            fleet_min_hosts: 5,
            resolve_after_windows: 6,
            ratio_baseline_days: DEFAULT_BASELINE_DAYS,
            adaptation_windows: StreamConfig::default().adaptation_points,
            learning_windows: StreamConfig::default().learning_points,
        }
    }
}

/// The latest judgement of one view series, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Family name (the view's) and key labels (non-empty ones, sorted), as a series.
    pub series: Arc<SeriesDef>,
    /// The window judged.
    pub window_start_unix_ms: i64,
    /// The detector's band and score in that window.
    pub judgement: Judgement,
}

/// Judgements of one view series kept for charts: the last [`TRACE_WINDOWS`] windows.
/// Memory: 16 bytes a window, at most `max_series` × [`TRACE_WINDOWS`] of them.
pub const TRACE_WINDOWS: usize = 96;

/// The recent judgements of one view series: what it was and its band, window by window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Trace {
    /// Window length in seconds.
    pub window_secs: u32,
    /// Oldest first; consecutive windows.
    pub points: Vec<TracePoint>,
}

/// One window of a [`Trace`]. NaN (no data, no model yet) is `null` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TracePoint {
    pub window_start_unix_ms: i64,
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
}

/// A ring of the last [`TRACE_WINDOWS`] judgements (observed, expected, lower, upper) as f32.
#[derive(Debug, Default)]
struct TraceRing {
    /// Start of the newest window.
    last_ms: i64,
    values: std::collections::VecDeque<[f32; 4]>,
}

impl TraceRing {
    fn push(&mut self, window_ms: i64, step_ms: i64, j: &Judgement) {
        // A gap (the series was not judged for a while) restarts the ring: points are
        // consecutive windows.
        if !self.values.is_empty() && window_ms != self.last_ms + step_ms {
            self.values.clear();
        }
        if self.values.len() == TRACE_WINDOWS {
            self.values.pop_front();
        }
        self.values.push_back([
            j.observed as f32,
            j.expected as f32,
            j.lower as f32,
            j.upper as f32,
        ]);
        self.last_ms = window_ms;
    }

    fn trace(&self, step_secs: u32) -> Trace {
        let step_ms = i64::from(step_secs) * 1000;
        let first_ms = self.last_ms - (self.values.len() as i64 - 1) * step_ms;
        Trace {
            window_secs: step_secs,
            points: self
                .values
                .iter()
                .zip(0..)
                .map(|(v, i)| TracePoint {
                    window_start_unix_ms: first_ms + i * step_ms,
                    observed: f64::from(v[0]),
                    expected: f64::from(v[1]),
                    lower: f64::from(v[2]),
                    upper: f64::from(v[3]),
                })
                .collect(),
        }
    }
}

/// What one window produced.
#[derive(Debug, Default)]
pub struct WindowOutcome {
    /// Anomalies found in the window.
    pub anomalies: Vec<Anomaly>,
    /// Alerts that opened in the window.
    pub opened: Vec<Alert>,
    /// Alerts that resolved in the window.
    pub resolved: Vec<Alert>,
}

/// The view series a stored series feeds (by view series index) and as what.
type Route = Box<[(u32, Roles)]>;
/// A view (by index) and the values of its key labels.
type ViewKey = (u32, Box<[Box<str>]>);

/// The detectors over the views; see the module documentation.
pub struct Engine {
    config: EngineConfig,
    step_secs: u32,
    /// Per stored series (by id): the view series it feeds and as what; `None` = not routed yet.
    routes: Vec<Option<Route>>,
    series: Vec<ViewSeries>,
    index: HashMap<ViewKey, u32>,
    /// View series of the same view and key minus host: the fleets.
    fleets: HashMap<ViewKey, Vec<u32>>,
    /// View series that got data in the current window.
    touched: Vec<u32>,
    alerts: AlertTracker,
    last_window_ms: Option<i64>,
    dropped_series: u64,
    /// The first window each host (value of its `host` label) had data in, and the first window
    /// of all: a series that appears later has been silent, i.e. 0 events, since then.
    first_seen: HashMap<Box<str>, i64>,
    first_window_ms: Option<i64>,
}

/// One view series: its key, per-window accumulator and detector.
struct ViewSeries {
    view: u32,
    def: Arc<SeriesDef>,
    acc: Accumulator,
    /// `None` until data arrives: whether counters or gauges feed it is not known before.
    detector: Option<Detector>,
    band: Option<Band>,
    /// The recent judgements, for charts.
    trace: TraceRing,
    /// Residual of the current window for fleet comparison (NaN: no verdict).
    fleet_value: f64,
    /// Whether the current window already raised an anomaly (fleet adds none then).
    flagged: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Accumulator {
    touched: bool,
    value: f64,
    failures: f64,
    total: f64,
    capacity: f64,
    has_value: bool,
    has_capacity: bool,
}

/// The detector of one view series, chosen by its view's kind; each variant judges the part of
/// the accumulator its kind fills.
enum Detector {
    Volume(Box<VolumeDetector>),
    Ratio(RatioDetector),
    Forecast(ForecastDetector),
}

impl Engine {
    /// An engine for windows of `step_secs`.
    pub fn new(config: EngineConfig, step_secs: u32) -> Self {
        Engine {
            config,
            step_secs: step_secs.max(1),
            routes: Vec::new(),
            series: Vec::new(),
            index: HashMap::new(),
            fleets: HashMap::new(),
            touched: Vec::new(),
            alerts: AlertTracker::default(),
            last_window_ms: None,
            dropped_series: 0,
            first_seen: HashMap::new(),
            first_window_ms: None,
        }
    }

    /// The window length.
    pub fn step_secs(&self) -> u32 {
        self.step_secs
    }

    /// Forgets which view series each stored series id feeds: the store reuses the ids of
    /// expired series, so routes are worked out again from the definitions.
    pub fn forget_routes(&mut self) {
        self.routes.clear();
    }

    /// View series judged.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// View series not created because `max_series` was reached.
    pub fn dropped_series(&self) -> u64 {
        self.dropped_series
    }

    /// The latest judgement of every view series.
    pub fn bands(&self) -> Vec<Band> {
        self.series.iter().filter_map(|s| s.band.clone()).collect()
    }

    /// The recent judgements of the series of view `view` whose key labels are `labels`
    /// (`host` and the view's `by` labels; others are ignored), if it is judged.
    /// Views may share a name (bounces per host, and per host and reason class): the one with
    /// the most key labels, all of them in `labels`, is meant.
    pub fn trace(&self, view: &str, labels: &[(&str, &str)]) -> Option<Trace> {
        let value = |name: &str| labels.iter().find(|(n, _)| *n == name).map(|l| l.1);
        let (v, _) = self
            .config
            .views
            .iter()
            .enumerate()
            .filter(|(_, x)| x.name == view && x.key_names().all(|n| value(n).is_some()))
            .max_by_key(|(_, x)| x.by.len())?;
        let key: Box<[Box<str>]> = self.config.views[v]
            .key_names()
            .map(|name| Box::from(value(name).unwrap_or("")))
            .collect();
        let &i = self.index.get(&(v as u32, key))?;
        Some(self.series[i as usize].trace.trace(self.step_secs))
    }

    /// Alerts open now.
    pub fn open_alerts(&self) -> Vec<Alert> {
        self.alerts.open()
    }

    /// Judges the window starting at `window_start_ms` from `frame`: every stored series'
    /// value in it (counters: the increase; gauges: the level). A window at or before the last
    /// one judged is ignored (returns nothing).
    pub fn push_window(
        &mut self,
        window_start_ms: i64,
        frame: &[(SeriesId, &SeriesDef, f64)],
    ) -> WindowOutcome {
        if self
            .last_window_ms
            .is_some_and(|last| window_start_ms <= last)
        {
            return WindowOutcome::default();
        }
        self.last_window_ms = Some(window_start_ms);
        self.first_window_ms.get_or_insert(window_start_ms);
        for &(id, def, value) in frame {
            if !value.is_finite() {
                continue;
            }
            self.accumulate(id, def, value, window_start_ms);
        }
        let mut anomalies = Vec::new();
        let at_secs = window_start_ms.div_euclid(1000);
        for i in 0..self.series.len() {
            if let Some(anomaly) = self.judge(i, at_secs, window_start_ms) {
                anomalies.push(anomaly);
            }
        }
        self.judge_fleets(window_start_ms, &mut anomalies);
        for &i in &self.touched {
            self.series[i as usize].acc = Accumulator::default();
        }
        self.touched.clear();
        let (opened, resolved) = self.alerts.observe(
            window_start_ms,
            &anomalies,
            self.config.resolve_after_windows,
            self.step_secs,
        );
        WindowOutcome {
            anomalies,
            opened,
            resolved,
        }
    }

    /// Resolves every open alert (end of an evaluation run) and returns them.
    pub fn finish(&mut self) -> Vec<Alert> {
        self.alerts.close_all()
    }

    fn accumulate(&mut self, id: SeriesId, def: &SeriesDef, value: f64, window_ms: i64) {
        let origin_ms = match def.label("host") {
            Some(host) => match self.first_seen.get(host) {
                Some(&first) => first,
                None => {
                    self.first_seen.insert(host.into(), window_ms);
                    window_ms
                }
            },
            None => self.first_window_ms.unwrap_or(window_ms),
        };
        let slot = id.index();
        if slot >= self.routes.len() {
            self.routes.resize(slot + 1, None);
        }
        if self.routes[slot].is_none() {
            let routes = self.route(def);
            self.routes[slot] = Some(routes);
        }
        let Some(routes) = self.routes[slot].as_deref() else {
            return;
        };
        for &(target, roles) in routes {
            let s = &mut self.series[target as usize];
            if s.detector.is_none() {
                s.detector = Some(Detector::start(
                    &self.config.views[s.view as usize],
                    def.kind,
                    &self.config,
                    self.step_secs,
                    origin_ms.div_euclid(1000)..window_ms.div_euclid(1000),
                ));
            }
            let acc = &mut s.acc;
            if !acc.touched {
                acc.touched = true;
                self.touched.push(target);
            }
            if roles.value {
                acc.value += value;
                acc.has_value = true;
            }
            if roles.failures {
                acc.failures += value;
            }
            if roles.total {
                acc.total += value;
                acc.has_value = true;
            }
            if roles.capacity {
                acc.capacity += value;
                acc.has_capacity = true;
            }
        }
    }

    /// The view series `def` feeds, created as needed.
    fn route(&mut self, def: &SeriesDef) -> Box<[(u32, Roles)]> {
        let mut out = Vec::new();
        for (v, view) in self.config.views.iter().enumerate() {
            if def.kind == MetricKind::Histogram {
                break;
            }
            let roles = view.roles(def);
            // A series without one of the view's `by` labels is not part of it.
            if !roles.any() || view.by.iter().any(|b| def.label(b).is_none()) {
                continue;
            }
            let key = view.key(def);
            let v = v as u32;
            let target = match self.index.get(&(v, key.clone())) {
                Some(&t) => t,
                None => {
                    if self.series.len() >= self.config.max_series {
                        self.dropped_series += 1;
                        continue;
                    }
                    let t = self.series.len() as u32;
                    self.series.push(ViewSeries {
                        view: v,
                        def: Arc::new(view_def(view, &key)),
                        acc: Accumulator::default(),
                        detector: None,
                        band: None,
                        trace: TraceRing::default(),
                        fleet_value: f64::NAN,
                        flagged: false,
                    });
                    self.index.insert((v, key.clone()), t);
                    self.fleets.entry((v, key[1..].into())).or_default().push(t);
                    t
                }
            };
            out.push((target, roles));
        }
        out.into_boxed_slice()
    }

    fn judge(&mut self, i: usize, at_secs: i64, window_ms: i64) -> Option<Anomaly> {
        let step_secs = self.step_secs;
        let s = &mut self.series[i];
        s.fleet_value = f64::NAN;
        s.flagged = false;
        let Assessment {
            judgement,
            verdict,
            fleet_value,
        } = s.detector.as_mut()?.judge(at_secs, &s.acc);
        s.fleet_value = fleet_value.unwrap_or(f64::NAN);
        let anomaly = verdict.map(|v| anomaly(&s.def, window_ms, step_secs, &v, &judgement));
        s.trace
            .push(window_ms, i64::from(step_secs) * 1000, &judgement);
        s.band = Some(Band {
            series: s.def.clone(),
            window_start_unix_ms: window_ms,
            judgement,
        });
        s.flagged = anomaly.is_some();
        anomaly
    }

    /// One host against its peers, per view key: volumes by band residual, ratios by rate.
    fn judge_fleets(&mut self, window_ms: i64, anomalies: &mut Vec<Anomaly>) {
        let config = FleetConfig {
            min_hosts: self.config.fleet_min_hosts.max(3),
            ..FleetConfig::default()
        };
        let threshold = self.config.score_threshold;
        let mut groups: Vec<&Vec<u32>> = self
            .fleets
            .values()
            .filter(|members| members.len() >= config.min_hosts)
            .collect();
        // HashMap order is not stable: judge fleets in series order so runs are reproducible.
        groups.sort_by_key(|m| m[0]);
        for members in groups {
            let values: Vec<f64> = members
                .iter()
                .map(|&m| self.series[m as usize].fleet_value)
                .collect();
            let scores = fleet_outliers(&values, &config);
            for (&m, fleet) in members.iter().zip(&scores) {
                let s = &self.series[m as usize];
                let Some(band) = &s.band else { continue };
                if s.flagged || fleet.z <= 0.0 || fleet.anomaly_score < threshold {
                    continue;
                }
                let view = &self.config.views[s.view as usize];
                let j = &band.judgement;
                let significant = match &view.kind {
                    ViewKind::Volume { min_excess, .. } => j.observed - j.expected >= *min_excess,
                    // The ratio detector only offers a fleet value with enough failures.
                    ViewKind::Ratio { .. } => true,
                    ViewKind::Forecast { .. } => false,
                };
                if !significant {
                    continue;
                }
                let verdict = Verdict {
                    detector: DetectorKind::Fleet,
                    direction: Deviation::Above,
                    evidence: Evidence::Fleet {
                        robust_z: fleet.z,
                        hosts: values.iter().filter(|v| v.is_finite()).count(),
                    },
                };
                let judgement = Judgement {
                    score: fleet.anomaly_score,
                    ..j.clone()
                };
                anomalies.push(anomaly(
                    &s.def,
                    window_ms,
                    self.step_secs,
                    &verdict,
                    &judgement,
                ));
            }
        }
    }
}

impl Detector {
    /// The detector a view series of `view` gets when `kind` first feeds it, in the window
    /// starting at `silent_secs.end` (Unix secs); its host has reported since
    /// `silent_secs.start`, counted as zeros where the view's new keys start at zero.
    fn start(
        view: &View,
        kind: MetricKind,
        config: &EngineConfig,
        step_secs: u32,
        silent_secs: Range<i64>,
    ) -> Detector {
        match &view.kind {
            ViewKind::Volume {
                alert_on,
                min_excess,
                ..
            } => {
                let config = VolumeConfig {
                    step_secs: Some(step_secs),
                    kind: match kind {
                        MetricKind::Counter => SeriesKind::Count,
                        _ => SeriesKind::Gauge,
                    },
                    alert_on: *alert_on,
                    min_excess: *min_excess,
                    score_threshold: config.score_threshold,
                    baseline_days: config.ratio_baseline_days,
                    band: StreamConfig {
                        adaptation_points: config.adaptation_windows,
                        learning_points: config.learning_windows,
                        ..StreamConfig::default()
                    },
                    ..VolumeConfig::default()
                };
                Detector::Volume(Box::new(if view.new_keys_start_at_zero() {
                    VolumeDetector::with_silent_history(config, silent_secs)
                } else {
                    VolumeDetector::new(config)
                }))
            }
            ViewKind::Ratio { min_failures, .. } => {
                Detector::Ratio(RatioDetector::new(RatioConfig {
                    baseline_days: config.ratio_baseline_days,
                    min_failures: *min_failures,
                    score_threshold: config.score_threshold,
                }))
            }
            ViewKind::Forecast {
                limit,
                limit_share,
                warn_within_secs,
                history_windows,
                every_windows,
                ..
            } => Detector::Forecast(ForecastDetector::new(ForecastDetectorConfig {
                step_secs,
                limit: match limit {
                    Some(limit) => ForecastLimit::Fixed(*limit),
                    None => ForecastLimit::ShareOfCapacity(*limit_share),
                },
                warn_within_secs: *warn_within_secs,
                history_windows: *history_windows,
                every_windows: *every_windows,
            })),
        }
    }

    /// Judges the window at `at_secs` from what the view series accumulated in it.
    fn judge(&mut self, at_secs: i64, acc: &Accumulator) -> Assessment {
        let value = acc.has_value.then_some(acc.value);
        match self {
            Detector::Volume(volume) => volume.judge(at_secs, value),
            Detector::Ratio(ratio) => ratio.judge(at_secs, acc.failures, acc.total),
            Detector::Forecast(forecast) => {
                forecast.judge(at_secs, value, acc.has_capacity.then_some(acc.capacity))
            }
        }
    }
}

/// The series a view key is exposed as: the view's name, the key's non-empty labels.
fn view_def(view: &View, key: &[Box<str>]) -> SeriesDef {
    let mut labels: Vec<(Box<str>, Box<str>)> = view
        .key_names()
        .zip(key.iter())
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (Box::from(n), v.clone()))
        .collect();
    labels.sort();
    SeriesDef {
        metric: view.name.as_str().into(),
        labels: labels.into(),
        kind: MetricKind::Gauge,
        bounds: Box::new([]),
    }
}

/// The anomaly `verdict` makes of the window at `window_ms` of view series `def`.
fn anomaly(
    def: &SeriesDef,
    window_ms: i64,
    step_secs: u32,
    verdict: &Verdict,
    j: &Judgement,
) -> Anomaly {
    Anomaly {
        id: 0,
        metric: def.metric.to_string(),
        labels: def
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        window_start_unix_ms: window_ms,
        window_secs: step_secs,
        detector: verdict.detector.as_str().into(),
        observed: j.observed,
        expected: j.expected,
        lower: j.lower,
        upper: j.upper,
        score: j.score,
        direction: verdict.direction.as_str().into(),
        detail: verdict.evidence.to_string(),
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;

    fn judgement(v: f64) -> Judgement {
        Judgement {
            observed: v,
            expected: 10.0,
            lower: 5.0,
            upper: 15.0,
            score: 0.0,
            eta_secs: None,
        }
    }

    #[test]
    fn a_trace_keeps_the_last_windows_in_order_and_restarts_after_a_gap() {
        let mut ring = TraceRing::default();
        for i in 0..(TRACE_WINDOWS as i64 + 10) {
            ring.push(i * 60_000, 60_000, &judgement(i as f64));
        }
        let t = ring.trace(60);
        assert_eq!(t.points.len(), TRACE_WINDOWS);
        assert_eq!(t.points[0].observed, 10.0);
        assert_eq!(t.points[0].window_start_unix_ms, 10 * 60_000);
        let last = t.points.last().expect("points");
        assert_eq!(
            last.window_start_unix_ms,
            (TRACE_WINDOWS as i64 + 9) * 60_000
        );
        assert_eq!((last.lower, last.upper), (5.0, 15.0));
        // A window that does not follow the last one starts a new trace.
        ring.push(
            (TRACE_WINDOWS as i64 + 20) * 60_000,
            60_000,
            &judgement(1.0),
        );
        assert_eq!(ring.trace(60).points.len(), 1);
        // No model yet: NaN, which JSON shows as null.
        ring.push(
            (TRACE_WINDOWS as i64 + 21) * 60_000,
            60_000,
            &judgement(f64::NAN),
        );
        let json = serde_json::to_string(&ring.trace(60)).expect("json");
        assert!(json.contains(r#""observed":null"#), "{json}");
    }
}
