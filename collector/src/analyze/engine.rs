//! [`Engine`]: the detectors of every view series, fed one complete stored window at a time.
//!
//! The collector feeds it from the store ([`super::run_analyzer`]); `mailpulse eval` feeds it
//! from the simulator through the agent's pipeline. Both hand it *frames*: every stored
//! series' aggregate of one window, windows in time order, each once. For every window the
//! engine
//! 1. rolls the frame up into view series (sum of the matching series per key; ratios as
//!    failures and attempts; forecast gauges with their capacity);
//! 2. judges every view series — also those without data in the window: a counter that stays
//!    silent is 0 events, which is news when mail usually flows (gauges: a gap);
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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::detect::{
    Basis, Direction, FleetConfig, ForecastConfig, Series, SeriesKind, StreamConfig,
    StreamingDetector, fleet_outliers, forecast_with, time_until_threshold,
};
use crate::detect::{
    CountBaseline, CountTest, RatioBaseline, RatioTest, dispersion, evidence_score,
};
use crate::model::{Anomaly, MetricKind, SeriesDef, SeriesId};

use super::alerts::{Alert, AlertTracker};
use super::views::{Roles, Side, View, ViewKind};

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
    /// Days of hourly history a ratio baseline draws on.
    pub ratio_baseline_days: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            views: super::views::default_views(),
            score_threshold: 0.95,
            max_series: 20_000,
            fleet_min_hosts: 5,
            resolve_after_windows: 6,
            ratio_baseline_days: 14,
        }
    }
}

/// The latest judgement of one view series, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Family name (the view's) and key labels (non-empty ones, sorted), as a series.
    pub series: Arc<SeriesDef>,
    pub window_start_unix_ms: i64,
    pub judgement: Judgement,
}

/// What a detector says about one window of one view series.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The view's value in the window (a sum, a level, a rate; NaN when missing).
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// In [0, 1].
    pub score: f64,
    /// Forecast views: seconds until the limit is reached (pessimistic bound), if within the
    /// forecast horizon.
    pub eta_secs: Option<f64>,
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

/// One view series: its key, per-window accumulator and detector state.
struct ViewSeries {
    view: u32,
    def: Arc<SeriesDef>,
    acc: Accumulator,
    state: State,
    band: Option<Band>,
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

enum State {
    /// Not yet known whether counters or gauges feed it (no data yet).
    Pending,
    Volume {
        detector: Box<StreamingDetector>,
        kind: SeriesKind,
        /// The small-count test of counter views judged on their upper side.
        counts: Option<Box<CountState>>,
    },
    Ratio(RatioState),
    Forecast(ForecastState),
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
            if let State::Pending = s.state {
                s.state = State::start(
                    &self.config.views[s.view as usize],
                    def.kind,
                    self.step_secs,
                    self.config.ratio_baseline_days,
                    (origin_ms.div_euclid(1000), window_ms.div_euclid(1000)),
                );
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
                        state: State::Pending,
                        band: None,
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
        let threshold = self.config.score_threshold;
        let step_secs = self.step_secs;
        let s = &mut self.series[i];
        let view = &self.config.views[s.view as usize];
        let acc = s.acc;
        s.fleet_value = f64::NAN;
        s.flagged = false;
        let verdict = match (&mut s.state, &view.kind) {
            (State::Pending, _) => return None,
            (
                State::Volume {
                    detector,
                    kind,
                    counts,
                },
                ViewKind::Volume {
                    alert_on,
                    min_excess,
                    ..
                },
            ) => {
                let value = match (acc.has_value, kind) {
                    (true, _) => acc.value,
                    (false, SeriesKind::Count) => 0.0,
                    (false, SeriesKind::Gauge) => f64::NAN,
                };
                let mut verdict =
                    judge_volume(detector, at_secs, value, *alert_on, *min_excess, threshold);
                if let Some(counts) = counts {
                    let count = counts.judge(at_secs, value, *min_excess, threshold);
                    verdict.judgement.score = verdict.judgement.score.max(count.score);
                    if verdict.anomaly.is_none() {
                        verdict.anomaly = count.anomaly;
                    }
                }
                verdict
            }
            (State::Ratio(state), ViewKind::Ratio { min_failures, .. }) => {
                state.judge(at_secs, &acc, *min_failures, threshold)
            }
            (
                State::Forecast(state),
                ViewKind::Forecast {
                    limit,
                    limit_share,
                    warn_within_secs,
                    history_windows,
                    every_windows,
                    ..
                },
            ) => {
                let limit = match limit {
                    Some(l) => Some(*l),
                    None => acc.has_capacity.then(|| acc.capacity * limit_share),
                };
                let value = if acc.has_value { acc.value } else { f64::NAN };
                state.judge(
                    at_secs,
                    value,
                    limit,
                    *warn_within_secs,
                    *history_windows,
                    *every_windows,
                    step_secs,
                )
            }
            _ => return None,
        };
        s.fleet_value = verdict.fleet_value;
        s.band = Some(Band {
            series: s.def.clone(),
            window_start_unix_ms: window_ms,
            judgement: verdict.judgement.clone(),
        });
        let anomaly = verdict.anomaly.map(|(detector, direction, detail)| {
            anomaly(
                &s.def,
                window_ms,
                step_secs,
                detector,
                &verdict.judgement,
                direction,
                detail,
            )
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
                    // The ratio state only offers a fleet value with enough failures.
                    ViewKind::Ratio { .. } => true,
                    ViewKind::Forecast { .. } => false,
                };
                if !significant {
                    continue;
                }
                let detail = format!(
                    "robust z {:.1} against {} hosts of the fleet",
                    fleet.z,
                    values.iter().filter(|v| v.is_finite()).count()
                );
                let judgement = Judgement {
                    score: fleet.anomaly_score,
                    ..j.clone()
                };
                anomalies.push(anomaly(
                    &s.def,
                    window_ms,
                    self.step_secs,
                    "fleet",
                    &judgement,
                    "above",
                    detail,
                ));
            }
        }
    }
}

impl State {
    /// The detector state of a view series first fed at `span.1` (Unix secs) by a host seen
    /// since `span.0` (counted as zeros where the view's new keys start at zero).
    fn start(
        view: &View,
        kind: MetricKind,
        step_secs: u32,
        ratio_baseline_days: u32,
        span: (i64, i64),
    ) -> State {
        match &view.kind {
            ViewKind::Volume { alert_on, .. } => {
                let kind = match kind {
                    MetricKind::Counter => SeriesKind::Count,
                    _ => SeriesKind::Gauge,
                };
                let span = if view.new_keys_start_at_zero() {
                    span
                } else {
                    (span.1, span.1)
                };
                let counts = (kind == SeriesKind::Count && *alert_on != Side::Below)
                    .then(|| Box::new(CountState::new(ratio_baseline_days, step_secs, span)));
                State::Volume {
                    detector: Box::new(StreamingDetector::new(StreamConfig {
                        step_secs: Some(step_secs),
                        kind,
                        ..StreamConfig::default()
                    })),
                    kind,
                    counts,
                }
            }
            ViewKind::Ratio { .. } => State::Ratio(RatioState::new(ratio_baseline_days)),
            ViewKind::Forecast { .. } => State::Forecast(ForecastState::default()),
        }
    }
}

/// A detector's verdict on one window: the band, an anomaly (detector, direction, evidence)
/// if any, and the value the fleet comparison uses.
struct Verdict {
    judgement: Judgement,
    anomaly: Option<(&'static str, &'static str, String)>,
    fleet_value: f64,
}

fn judge_volume(
    detector: &mut StreamingDetector,
    at_secs: i64,
    value: f64,
    side: Side,
    min_excess: f64,
    threshold: f64,
) -> Verdict {
    let s = detector.push(at_secs, value);
    let score = s.score;
    let judgement = Judgement {
        observed: value,
        expected: score.expected,
        lower: score.lower,
        upper: score.upper,
        score: s.anomaly_score,
        eta_secs: None,
    };
    let judged = matches!(s.basis, Basis::Level | Basis::Seasonal);
    let fleet_value = if judged && value.is_finite() {
        score.band_units
    } else {
        f64::NAN
    };
    let direction = match (score.direction, s.level_shift) {
        (Direction::Above, _) => Some("above"),
        (Direction::Below, _) => Some("below"),
        (_, Some(shift)) if shift.shift_sigmas > 0.0 => Some("above"),
        (_, Some(_)) => Some("below"),
        _ => None,
    };
    let wanted = |d: &str| match side {
        Side::Above => d == "above",
        Side::Below => d == "below",
        Side::Both => true,
    };
    let excess = match direction {
        Some("above") => value - score.upper.max(score.expected),
        Some(_) => score.lower.min(score.expected) - value,
        None => 0.0,
    };
    let shift_excess = (value - score.expected).abs();
    let anomaly = match direction {
        Some(d)
            if judged
                && s.anomaly_score >= threshold
                && wanted(d)
                && excess.max(if s.level_shift.is_some() {
                    shift_excess
                } else {
                    0.0
                }) >= min_excess =>
        {
            let detector = if score.anomaly_score >= threshold {
                "seasonal"
            } else {
                "level_shift"
            };
            let mut detail = format!(
                "{:?} model; {:.1} half-bands from the expected {:.1} (band {:.1}..{:.1})",
                s.basis, score.band_units, score.expected, score.lower, score.upper
            );
            if let Some(shift) = s.level_shift {
                detail.push_str(&format!(
                    "; level shift of {:.1} σ over the last {} windows",
                    shift.shift_sigmas, shift.points_since_start
                ));
            }
            Some((detector, d, detail))
        }
        _ => None,
    };
    Verdict {
        judgement,
        anomaly,
        fleet_value,
    }
}

/// Hourly event counts of one counter view series, and its newest windows: the small-count
/// test (gamma-Poisson, [`crate::detect::counts`]) against the same hour ±1 h of earlier days.
/// It catches what a band cannot: a reason for deferrals that is normally seen once a day
/// turning up in every window.
struct CountState {
    /// Hourly buckets, newest last.
    hours: VecDeque<CountBucket>,
    max_hours: usize,
    /// The newest windows' events, newest last, at most the longest pool.
    recent: VecDeque<f64>,
    /// The baseline and clustering factor of the current hour (earlier hours only, so they
    /// hold for the whole hour).
    cached: Option<(i64, Option<(CountBaseline, f64)>)>,
    /// Consecutive flagged windows.
    flagged_run: usize,
}

/// One hour of a counter view series.
#[derive(Debug, Clone, Copy)]
struct CountBucket {
    /// Hour start, Unix secs.
    start: i64,
    events: f64,
    windows: f64,
    /// Σ events² over its windows (for the clustering factor).
    squares: f64,
}

/// Windows pooled by the count test: the window alone, a quarter of an hour, an hour (at
/// 5-minute windows). Longer pools catch a moderate rise; Bonferroni over the three.
const POOLS: [usize; 3] = [1, 3, 12];
/// Flagged windows in a row after which a count is a new normal and enters the baseline.
const COUNT_ACCEPT_RUN: usize = 72;
/// Fewest same-hour buckets (one earlier day: the hour and its neighbours) a count baseline
/// needs.
const MIN_COUNT_BUCKETS: usize = 3;

impl CountState {
    /// A series first seen at `span.1` whose host has had data since `span.0`: the hours in
    /// between are buckets of 0 events (a counter that did not exist counted nothing).
    fn new(baseline_days: u32, step_secs: u32, span: (i64, i64)) -> Self {
        let max_hours = (baseline_days.max(1) as usize) * 24;
        let per_hour = (3600.0 / f64::from(step_secs.max(1))).max(1.0);
        let (origin, now) = (span.0.div_euclid(3600), span.1.div_euclid(3600));
        let first = origin.max(now - max_hours as i64);
        let hours = (first..now)
            .map(|h| CountBucket {
                start: h * 3600,
                events: 0.0,
                windows: per_hour,
                squares: 0.0,
            })
            .collect();
        CountState {
            hours,
            max_hours,
            recent: VecDeque::new(),
            cached: None,
            flagged_run: 0,
        }
    }

    /// The baseline of the hour of `at_secs` (same hour ±1 h of earlier days, counts divided
    /// by the clustering factor) and that factor (over all earlier hours); `None` before the
    /// first day of history: without a baseline nothing is judged.
    fn baseline(&mut self, at_secs: i64) -> Option<(CountBaseline, f64)> {
        let hour = at_secs.div_euclid(3600);
        if let Some((cached_hour, cached)) = self.cached
            && cached_hour == hour
        {
            return cached;
        }
        let all: Vec<(f64, f64, f64)> = self
            .hours
            .iter()
            .filter(|b| b.start.div_euclid(3600) < hour)
            .map(|b| (b.events, b.windows, b.squares))
            .collect();
        let phi = dispersion(&all);
        let buckets: Vec<(f64, f64)> = self
            .hours
            .iter()
            .filter(|b| same_hour_of_earlier_day(hour - b.start.div_euclid(3600)))
            .map(|b| (b.events / phi, b.windows))
            .collect();
        let baseline = (buckets.len() >= MIN_COUNT_BUCKETS)
            .then(|| (CountBaseline::from_buckets(&buckets), phi));
        self.cached = Some((hour, baseline));
        baseline
    }

    fn judge(&mut self, at_secs: i64, value: f64, min_excess: f64, threshold: f64) -> CountVerdict {
        let events = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let judged = self.baseline(at_secs);
        self.recent.push_back(events);
        while self.recent.len() > POOLS[POOLS.len() - 1] {
            self.recent.pop_front();
        }
        let mut best: Option<CountTest> = None;
        let (baseline, phi) = judged.unwrap_or((CountBaseline::UNINFORMATIVE, 1.0));
        // Without a baseline nothing is tested.
        let pools: &[usize] = if judged.is_some() { &POOLS } else { &[] };
        for &pool in pools {
            if self.recent.len() < pool {
                break;
            }
            let sum: f64 = self.recent.iter().rev().take(pool).sum();
            let test = baseline.test(sum / phi, pool as u32);
            let test = CountTest {
                events: sum,
                expected: test.expected * phi,
                anomaly_score: evidence_score(test.p_value, POOLS.len()),
                ..test
            };
            if best.is_none_or(|b| test.anomaly_score > b.anomaly_score) {
                best = Some(test);
            }
        }
        let score = best.map_or(0.0, |t| t.anomaly_score);
        let anomaly = best
            .filter(|t| {
                t.anomaly_score >= threshold
                    && t.events - t.expected >= min_excess
                    && t.events >= MIN_RATE_FACTOR * t.expected
            })
            .map(|t| {
                (
                    "counts",
                    "above",
                    format!(
                        "{} events in {} window(s) where {:.2} are usual at this hour \
                         (gamma-Poisson p = {:.2e}, clustering factor {phi:.1})",
                        t.events, t.windows, t.expected, t.p_value
                    ),
                )
            });
        // A flagged window enters the baseline as a usual one (a storm must not become normal
        // tomorrow), unless the change has lasted COUNT_ACCEPT_RUN windows.
        self.flagged_run = if anomaly.is_some() {
            self.flagged_run + 1
        } else {
            0
        };
        let stored = if anomaly.is_some() && self.flagged_run < COUNT_ACCEPT_RUN {
            (baseline.rate() * phi).min(events)
        } else {
            events
        };
        let hour = at_secs.div_euclid(3600) * 3600;
        match self.hours.back_mut() {
            Some(last) if last.start == hour => {
                last.events += stored;
                last.windows += 1.0;
                last.squares += stored * stored;
            }
            _ => {
                self.hours.push_back(CountBucket {
                    start: hour,
                    events: stored,
                    windows: 1.0,
                    squares: stored * stored,
                });
                while self.hours.len() > self.max_hours {
                    self.hours.pop_front();
                }
            }
        }
        CountVerdict { score, anomaly }
    }
}

/// What the count test says about one window.
struct CountVerdict {
    score: f64,
    anomaly: Option<(&'static str, &'static str, String)>,
}

/// Whether an hour `age` hours back is the same hour of day ±1 h on an earlier day.
fn same_hour_of_earlier_day(age: i64) -> bool {
    let phase = (age.rem_euclid(24) + 1) % 24;
    age >= 23 && phase <= 2
}

/// Hourly (failures, attempts) of one ratio key, and the newest windows.
struct RatioState {
    /// Hourly buckets, newest last: (hour start Unix secs, failures, attempts).
    hours: VecDeque<(i64, f64, f64)>,
    max_hours: usize,
    /// The newest windows (failures, attempts), newest last, at most [`POOLED_WINDOWS`].
    recent: VecDeque<(f64, f64)>,
    /// The baseline of the current hour (it draws on earlier hours only, so it holds for the
    /// whole hour).
    cached: Option<(i64, RatioBaseline)>,
}

/// Windows pooled for the slow test (a moderate rise accumulates evidence over them).
const POOLED_WINDOWS: usize = 3;
/// Least attempts in a window (or pooled windows) for a fleet comparison of rates.
const FLEET_MIN_ATTEMPTS: f64 = 20.0;
/// A rate must be at least this many times the baseline's to be an anomaly.
const MIN_RATE_FACTOR: f64 = 1.5;

impl RatioState {
    fn new(baseline_days: u32) -> Self {
        RatioState {
            hours: VecDeque::new(),
            max_hours: (baseline_days.max(1) as usize) * 24,
            recent: VecDeque::new(),
            cached: None,
        }
    }

    /// The seasonal baseline at `at_secs`: the same hour of day ±1 h on earlier days, plus the
    /// last six hours (recent level), from the hourly buckets.
    fn baseline(&mut self, at_secs: i64) -> RatioBaseline {
        let hour = at_secs.div_euclid(3600);
        if let Some((cached_hour, baseline)) = self.cached
            && cached_hour == hour
        {
            return baseline;
        }
        let windows: Vec<(u64, u64)> = self
            .hours
            .iter()
            .filter(|(start, _, _)| {
                let age = hour - start.div_euclid(3600);
                (1..=6).contains(&age) || same_hour_of_earlier_day(age)
            })
            .map(|&(_, k, n)| (k.round() as u64, n.round() as u64))
            .collect();
        let baseline = RatioBaseline::from_windows(&windows);
        self.cached = Some((hour, baseline));
        baseline
    }

    fn judge(
        &mut self,
        at_secs: i64,
        acc: &Accumulator,
        min_failures: u64,
        threshold: f64,
    ) -> Verdict {
        let (k, n) = (acc.failures.max(0.0), acc.total.max(0.0));
        let baseline = self.baseline(at_secs);
        self.recent.push_back((k, n));
        while self.recent.len() > POOLED_WINDOWS {
            self.recent.pop_front();
        }
        let (kp, np) = self
            .recent
            .iter()
            .fold((0.0, 0.0), |(a, b), &(k, n)| (a + k, b + n));
        let single = baseline.test(k.round() as u64, n.round() as u64);
        let pooled = baseline.test(kp.round() as u64, np.round() as u64);
        // Two tests per window: Bonferroni, each at half the level.
        let best = |t: &RatioTest| RatioTest {
            anomaly_score: evidence_score(t.p_value, 2),
            ..*t
        };
        let (single, pooled) = (best(&single), best(&pooled));
        let (test, windows) = if pooled.anomaly_score > single.anomaly_score {
            (pooled, self.recent.len())
        } else {
            (single, 1)
        };
        let expected = baseline.rate();
        let observed = if n > 0.0 { k / n } else { f64::NAN };
        let significant = test.failures >= min_failures
            && test.observed_rate >= expected * MIN_RATE_FACTOR
            && test.anomaly_score >= threshold;
        let upper = upper_rate(&baseline, n);
        let judgement = Judgement {
            observed,
            expected,
            lower: 0.0,
            upper,
            score: test.anomaly_score,
            eta_secs: None,
        };
        let fleet_value = if np >= FLEET_MIN_ATTEMPTS && kp >= min_failures as f64 {
            kp / np
        } else {
            f64::NAN
        };
        let anomaly = significant.then(|| {
            (
                "ratio",
                "above",
                format!(
                    "{} of {} failed ({:.1} %) over {} window(s) against a baseline of {:.2} %; \
                     beta-binomial p = {:.2e}",
                    test.failures,
                    test.total,
                    100.0 * test.observed_rate,
                    windows,
                    100.0 * expected,
                    test.p_value
                ),
            )
        });
        // Flagged windows stay out of the baseline: a storm must not become normal.
        if anomaly.is_none() {
            self.add_to_hour(at_secs, k, n);
        }
        Verdict {
            judgement,
            anomaly,
            fleet_value,
        }
    }

    fn add_to_hour(&mut self, at_secs: i64, k: f64, n: f64) {
        let hour = at_secs.div_euclid(3600) * 3600;
        match self.hours.back_mut() {
            Some(last) if last.0 == hour => {
                last.1 += k;
                last.2 += n;
            }
            _ => {
                self.hours.push_back((hour, k, n));
                while self.hours.len() > self.max_hours {
                    self.hours.pop_front();
                }
            }
        }
    }
}

/// The rate a window of `n` attempts stays under with 99 % probability under `baseline`
/// (normal approximation of the beta-binomial; for the band on dashboards).
fn upper_rate(baseline: &RatioBaseline, n: f64) -> f64 {
    let p = baseline.rate();
    if n.is_nan() || n <= 0.0 || !p.is_finite() {
        return f64::NAN;
    }
    let strength = baseline.alpha + baseline.beta;
    let variance = n * p * (1.0 - p) * (strength + n) / (strength + 1.0);
    // The standard normal's 99 % quantile.
    let z = 2.326_347_874_040_841;
    ((n * p + z * variance.sqrt()) / n).clamp(0.0, 1.0)
}

/// Recent levels of a forecast gauge and the latest forecast.
#[derive(Default)]
struct ForecastState {
    /// (window start secs, value), newest last.
    history: VecDeque<(i64, f64)>,
    since: usize,
    last: Option<Judgement>,
}

/// Fewest finite values a forecast is made from.
const FORECAST_MIN_POINTS: usize = 24;

impl ForecastState {
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        at_secs: i64,
        value: f64,
        limit: Option<f64>,
        warn_within_secs: u64,
        history_windows: usize,
        every_windows: usize,
        step_secs: u32,
    ) -> Verdict {
        self.history.push_back((at_secs, value));
        while self.history.len() > history_windows.max(8) {
            self.history.pop_front();
        }
        self.since += 1;
        let finite = self.history.iter().filter(|(_, v)| v.is_finite()).count();
        let due = self.since >= every_windows.max(1) || self.last.is_none();
        let mut anomaly = None;
        if due && finite >= FORECAST_MIN_POINTS.min(history_windows) {
            self.since = 0;
            let start = self.history.front().map_or(at_secs, |(t, _)| *t);
            let series = Series::new(
                start,
                step_secs,
                SeriesKind::Gauge,
                self.history.iter().map(|(_, v)| *v).collect(),
            );
            let horizon =
                (warn_within_secs.div_ceil(u64::from(step_secs.max(1))) as usize).clamp(1, 10_000);
            let forecast = forecast_with(
                &series,
                horizon,
                &ForecastConfig {
                    // Capacity ramps are not seasonal over a few hours of history.
                    candidate_periods: Some(Vec::new()),
                    ..ForecastConfig::default()
                },
            );
            let end = forecast.points.last();
            let eta = limit.and_then(|l| time_until_threshold(&forecast, l));
            let eta_secs = eta.map(|d| d.as_secs_f64());
            let warn = warn_within_secs.max(1) as f64;
            let score = match eta_secs {
                Some(e) if e <= warn => 1.0 - 0.05 * (e / warn),
                _ => 0.0,
            };
            let judgement = Judgement {
                observed: value,
                expected: end.map_or(f64::NAN, |p| p.point),
                lower: end.map_or(f64::NAN, |p| p.lower),
                upper: end.map_or(f64::NAN, |p| p.upper),
                score,
                eta_secs,
            };
            if let (Some(e), Some(l)) = (eta_secs, limit)
                && e <= warn
            {
                anomaly = Some((
                    "forecast",
                    if l < forecast.last_value {
                        "below"
                    } else {
                        "above"
                    },
                    format!(
                        "reaches the limit {l:.0} in {:.1} h (95 % bound; now {:.0}, {:.0} \
                         expected in {:.1} h)",
                        e / 3600.0,
                        forecast.last_value,
                        judgement.expected,
                        warn / 3600.0
                    ),
                ));
            }
            self.last = Some(judgement);
        } else if let Some(last) = &mut self.last {
            last.observed = value;
        }
        let judgement = self.last.clone().unwrap_or(Judgement {
            observed: value,
            expected: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            score: 0.0,
            eta_secs: None,
        });
        Verdict {
            judgement,
            anomaly,
            fleet_value: f64::NAN,
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

fn anomaly(
    def: &SeriesDef,
    window_ms: i64,
    step_secs: u32,
    detector: &str,
    j: &Judgement,
    direction: &str,
    detail: String,
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
        detector: detector.into(),
        observed: j.observed,
        expected: j.expected,
        lower: j.lower,
        upper: j.upper,
        score: j.score,
        direction: direction.into(),
        detail,
    }
}
