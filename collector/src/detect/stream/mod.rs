//! [`StreamingDetector`]: causal scoring of one series, the code path shared by the collector
//! (one detector per view series) and `mailpulse detect`.
//!
//! # Causality
//! Every point is scored against what came before it, *then* learnt. Refits of the seasonal
//! model happen on a schedule counted in points: while the history is shorter than a refit
//! interval, after it grew by a quarter (at least 8 points: cold start, cheap robust models);
//! then every `refit_every_points` (a day of windows by default), on the last
//! `max_history_points`. The score of point t therefore never depends on a point after t, and
//! appending data never changes earlier scores.
//!
//! # What is expected
//! The expected value is the seasonal model's path ([`Model::expected_at`]: daily and weekly
//! cycles and a trend, refitted once a day) plus a *local level* that follows the series between
//! refits: an exponentially smoothed residual (`level_alpha`), each step clipped to
//! `level_clip` mean absolute residuals so that one spike moves it little. At a refit the level
//! takes over what the new path moved, so the expected value stays continuous. A lasting shift
//! is followed within tens of points; a spike is not.
//!
//! # Calibrated surprise
//! A point is judged by three streams of evidence, each against the same series' own recent
//! history in a [`TailWindow`] (the last 6 144 points by default, in 24 blocks of 256 that keep
//! their 16 most extreme values per side: at most 6 KiB per window; empirical tail
//! probabilities, an exponential tail beyond the most extreme values, a floor at the series'
//! resolution):
//! - **value**: the value against the values (beyond the range the series has been in);
//! - **residual**: the distance from the expected value against earlier distances;
//! - **run**: the mean residual of the last `run_points` points against earlier runs (a shift
//!   too small for any one point, sustained);
//!
//! plus, through [`StreamingDetector::push_with`], the statistic of another test of the same
//! point (the collector's count test: −log10 of its p-value). Its p-value is the larger of its
//! own and its rank among the statistics the series had `adaptation_points` earlier: the
//! calibration tempers a test too confident for this series (bursty counts), never sharpens
//! it, and an incident that builds up over hours is not explained away by its own first
//! windows. The smallest one-sided tail
//! probability times the number of tests (Bonferroni) is the point's p-value, and
//! **surprise** = −log10 p: the same number means the same rarity on every series, so one
//! threshold works across a fleet. A noise-free, constant or quantised series has a residual
//! floor of its resolution (the smallest step between two values seen) or `relative_floor` of
//! its magnitude, so rounding is never an anomaly.
//!
//! # Episodes: alert once, then adapt
//! A surprise of `episode_surprise` or more (p ≤ 10⁻³) opens an episode and is *reported*; the
//! score then reflects only what a point adds beyond what was reported (its **novelty**), so a
//! lasting change scores high at its onset and not at every point after it. The reported
//! surprise is held while the episode's points stay surprising and decays with a half-life of
//! `adaptation_points` (50 points, about four hours at 5-minute windows: the default
//! adaptation time) once they are not; meanwhile the local level and the windows take the new
//! normal in. The score is [`evidence_score`] of the novelty: 0 below surprise 2, 0.5 at about
//! 2.9, 0.95 at 6.
//!
//! # Learning
//! Until `learning_points` slots of history (three days at 5-minute windows: a daily pattern
//! seen more than once, and same-hour baselines for the count test) a verdict is marked
//! `learning`: it is scored and shown, but the collector does not page on it.
//!
//! # Outliers and history
//! A point whose residual opens an episode enters the seasonal model's history as the expected
//! value: a bounce storm does not become part of next week's seasonal pattern; a lasting change
//! enters as observed once the local level has followed it.
//!
//! # Time
//! Points map to slots of `step_secs` (given, or learned as the median of the first 8 positive
//! timestamp gaps, appending points one slot apart until then). Skipped slots are missing values
//! (for the model's history; the streams simply see the next point). A point whose slot is not
//! after the last one (duplicate or out of order) is scored but not learnt.

use std::collections::VecDeque;

use super::math::median;
use super::seasonal::{Basis, FitConfig, Model, fit_keeping, fit_with};
use super::tails::{TailConfig, TailWindow, Tolerance};

mod evidence;
use super::{Score, Series, SeriesKind, default_periods, evidence_score};
use evidence::{LocalLevel, Tails, one_sided, winsorised};

/// Points a detector waits for before learning the step from timestamp gaps.
const STEP_LEARNING_GAPS: usize = 8;
/// Points whose residual surprise is below this are kept for the next fit's calibration.
const CALIBRATION_CUTOFF_SURPRISE: f64 = 2.0;
/// Weight of the newest point in the mean absolute residual (about 100 points).
const ERROR_SMOOTHING: f64 = 0.01;
/// One-sided tests of a point without a statistic: value, residual and run, both sides each.
const STREAM_TESTS: f64 = 6.0;

/// How a [`StreamingDetector`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Window length in seconds; `None`: learned from the first timestamp gaps.
    pub step_secs: Option<u32>,
    /// What the values are.
    pub kind: SeriesKind,
    /// How the seasonal model is fitted.
    pub fit: FitConfig,
    /// Points between two scheduled refits; `None`: the shortest candidate period (a day),
    /// within 64..=5 000.
    pub refit_every_points: Option<usize>,
    /// Most points a fit sees; `None`: two seasons of the longest candidate plus a refit
    /// interval (4 320 at 5 minutes), within 512..=50 000.
    pub max_history_points: Option<usize>,
    /// The windows values, residuals and statistics are judged against.
    pub tails: TailConfig,
    /// Smoothing factor of the local level (0..=1).
    pub level_alpha: f64,
    /// Largest step of the local level, in mean absolute residuals.
    pub level_clip: f64,
    /// Points whose mean residual is the run stream (0: no run stream).
    pub run_points: usize,
    /// Half-life, in points, of the surprise an episode reported once its points are no longer
    /// surprising: the adaptation time.
    pub adaptation_points: f64,
    /// Surprise (−log10 of the corrected p-value) from which a point opens or holds an episode.
    pub episode_surprise: f64,
    /// Surprise at which the collector pages (6: p = 10⁻⁶, score 0.95): the first point of an
    /// episode to reach it scores in full.
    pub alert_surprise: f64,
    /// Slots of history before verdicts stop being `learning`.
    pub learning_points: usize,
    /// Floor of the residual scale relative to the range of the values in the window.
    pub relative_floor: f64,
    /// Least deviation that is evidence at all, in the series' units (a view's least excess):
    /// values and residuals within it of ones seen before are not surprising.
    pub min_deviation: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            step_secs: None,
            kind: SeriesKind::Gauge,
            fit: FitConfig::default(),
            refit_every_points: None,
            max_history_points: None,
            tails: TailConfig::default(),
            level_alpha: 0.2,
            level_clip: 3.0,
            run_points: 16,
            adaptation_points: 50.0,
            episode_surprise: 3.0,
            alert_surprise: 6.0,
            learning_points: 864,
            relative_floor: 1e-3,
            min_deviation: 0.0,
        }
    }
}

/// The verdict on one streamed point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamScore {
    /// The point's timestamp.
    pub timestamp_secs: i64,
    /// The band: expected value, where a point would open an episode, and the score.
    pub score: Score,
    /// What the seasonal model rests on.
    pub basis: Basis,
    /// −log10 of the point's corrected p-value (0: unremarkable).
    pub surprise: f64,
    /// What the point adds to the surprise its episode already reported.
    pub novelty: f64,
    /// The stream the surprise comes from.
    pub source: Stream,
    /// Too little history for the verdict to page anyone.
    pub learning: bool,
    /// [`evidence_score`] of the novelty: in [0, 1], one scale for every series.
    pub anomaly_score: f64,
}

/// Which stream of evidence a surprise comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The value against the values of the window (beyond the range seen).
    Value,
    /// The residual against the residuals (far from the expected value).
    Residual,
    /// The mean residual of the last points against earlier runs (a sustained shift).
    Run,
    /// The statistic handed to [`StreamingDetector::push_with`].
    Statistic,
}

/// Causal detector of one series (see the module docs).
#[derive(Debug, Clone)]
pub struct StreamingDetector {
    config: StreamConfig,
    step: Option<u32>,
    gaps: Vec<i64>,
    history: VecDeque<f64>,
    last_timestamp: Option<i64>,
    model: Model,
    since_fit: usize,
    next_cold_fit: usize,
    /// Out-of-sample residuals of the model's path, for the next fit's calibration.
    calibration: VecDeque<f64>,
    fits: usize,
    /// The values themselves.
    values: TailWindow,
    /// The statistics handed to `push_with`, learnt `adaptation_points` late.
    statistics: TailWindow,
    /// Statistics not yet learnt, oldest first.
    pending_statistics: VecDeque<f64>,
    /// The local level and the residuals of the expected value.
    local: LocalLevel,
    /// Smallest positive step between consecutive values seen.
    resolution: f64,
    last_value: f64,
    /// Surprise the current episode reported, decaying once its points are ordinary.
    reported: f64,
    /// Slots seen (missing ones included).
    slots: usize,
}

impl StreamingDetector {
    /// A detector without history.
    pub fn new(config: StreamConfig) -> Self {
        let step = config.step_secs.map(|s| s.max(1));
        let empty = Series::new(0, step.unwrap_or(1), config.kind, Vec::new());
        let model = fit_with(&empty, &config.fit, None);
        StreamingDetector {
            values: TailWindow::new(config.tails),
            statistics: TailWindow::new(config.tails),
            pending_statistics: VecDeque::new(),
            local: LocalLevel::new(config.tails),
            config,
            step,
            gaps: Vec::new(),
            history: VecDeque::new(),
            last_timestamp: None,
            model,
            since_fit: 0,
            next_cold_fit: 8,
            calibration: VecDeque::new(),
            fits: 0,
            resolution: f64::INFINITY,
            last_value: f64::NAN,
            reported: 0.0,
            slots: 0,
        }
    }

    /// The model scoring the next point.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of fits so far.
    pub fn fits(&self) -> usize {
        self.fits
    }

    /// Points (slots, missing ones included) currently in the history.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The window length in use (`None` while it is still being learned).
    pub fn step_secs(&self) -> Option<u32> {
        self.step
    }

    /// Scores `value` observed at `timestamp_secs` against what came before, then learns it.
    pub fn push(&mut self, timestamp_secs: i64, value: f64) -> StreamScore {
        self.push_with(timestamp_secs, value, None)
    }

    /// [`StreamingDetector::push`] with the statistic of another test of the same point (a
    /// count test's surprise, say; non-finite: none): one more stream, its p-value tempered by
    /// the statistic's own history (see the module docs).
    pub fn push_with(
        &mut self,
        timestamp_secs: i64,
        value: f64,
        statistic: Option<f64>,
    ) -> StreamScore {
        let statistic = statistic.filter(|s| s.is_finite());
        let advance = self.advance(timestamp_secs);
        let basis = self.model.basis();
        let observed = self.config.kind.clean(value);
        let path = self.path_at(timestamp_secs);
        let expected = self.local.expected(path);
        let tolerance = self.tolerance();
        let noise = self.noise_scale(expected);
        let residual = (observed - expected) / noise;
        let tails = self.tails(observed, residual, tolerance, noise, statistic);
        let surprise = tails.surprise();
        let novelty = self.novelty(surprise);
        let score = self.band(observed, expected, tolerance, noise, novelty);
        let result = StreamScore {
            timestamp_secs,
            score,
            basis,
            surprise,
            novelty,
            source: tails.source(),
            learning: self.slots < self.config.learning_points,
            anomaly_score: score.anomaly_score,
        };
        if advance == 0 {
            return result;
        }
        self.last_timestamp = Some(timestamp_secs);
        self.slots = self.slots.saturating_add(advance);
        self.remember_episode(surprise, advance);
        let residual_surprise = tails.residual_surprise();
        let sample = if observed.is_finite() {
            self.learn(
                timestamp_secs,
                observed,
                path,
                tolerance.floor,
                noise,
                residual_surprise,
            )
        } else {
            None
        };
        self.values.push(observed);
        if let Some((residual, run_mean)) = sample {
            // Counts have a noise model: their residuals are in units of it, and one rare
            // enough to open an episode enters at the edge of the episode band (winsorised). A
            // misfit while the model learns, or an incident, then widens the tails by one edge
            // point, not by its own size for the whole window; noise that really grew pushes
            // the edge out point by point. Levels keep their tails as observed: heavy tails are
            // what real gauges have.
            let (residual, run_mean) = if self.config.kind == SeriesKind::Count {
                let tolerance = self.tolerance().scaled(noise);
                let p = 10f64.powf(-self.config.episode_surprise) / STREAM_TESTS;
                (
                    winsorised(&self.local.residuals, residual, p, tolerance),
                    run_mean.map(|m| winsorised(&self.local.run_means, m, p, tolerance)),
                )
            } else {
                (residual, run_mean)
            };
            self.local.residuals.push(residual);
            if let Some(mean) = run_mean {
                self.local.run_means.push(mean);
            }
        }
        // The statistic's window learns a point only `adaptation_points` later: an incident
        // that builds up over hours must not explain itself away with its own statistics, and
        // a lasting change still becomes the new normal.
        if let Some(statistic) = statistic {
            self.pending_statistics.push_back(statistic);
        }
        let delay = self.statistic_delay();
        while self.pending_statistics.len() > delay {
            if let Some(old) = self.pending_statistics.pop_front() {
                self.statistics.push(old);
            }
        }
        let capacity = self.history_capacity();
        let missing = advance.saturating_sub(1).min(capacity);
        self.history.extend(std::iter::repeat_n(f64::NAN, missing));
        // A clear outlier enters the history as what was expected, so a bounce storm does not
        // become part of next week's seasonal pattern; a lasting change is followed by the local
        // level first and stored as observed once its residuals are ordinary again.
        let stored = if residual_surprise >= self.config.episode_surprise && expected.is_finite() {
            expected
        } else {
            observed
        };
        self.history.push_back(stored);
        while self.history.len() > capacity {
            self.history.pop_front();
        }
        self.since_fit = self.since_fit.saturating_add(advance);
        self.maybe_refit(timestamp_secs);
        result
    }

    /// Points a statistic waits before its window learns it (the adaptation time).
    fn statistic_delay(&self) -> usize {
        let points = self.config.adaptation_points;
        if points.is_finite() && points > 0.0 {
            points.min(10_000.0) as usize
        } else {
            0
        }
    }

    /// What a point of `surprise` adds to its episode: the excess over what the episode
    /// reported, or all of it when it is the first to reach the alerting level (an incident that
    /// builds up over several windows is reported in full when it gets there).
    fn novelty(&self, surprise: f64) -> f64 {
        let alert = self.config.alert_surprise;
        if surprise >= alert && self.reported < alert {
            surprise
        } else {
            (surprise - self.reported).max(0.0)
        }
    }

    /// The episode's reported surprise after a point of `surprise`, `advance` slots after the
    /// last: held while points are surprising, else decaying; a surprise at the episode level
    /// raises it.
    fn remember_episode(&mut self, surprise: f64, advance: usize) {
        if surprise >= self.config.episode_surprise {
            self.reported = self.reported.max(surprise);
            return;
        }
        let half_life = self.config.adaptation_points;
        let decay = if half_life.is_finite() && half_life > 0.0 {
            0.5f64.powf(advance as f64 / half_life)
        } else {
            0.0
        };
        self.reported *= if decay.is_finite() { decay } else { 0.0 };
    }

    /// The tail probabilities of the point in every stream.
    fn tails(
        &self,
        observed: f64,
        residual: f64,
        tolerance: Tolerance,
        noise: f64,
        statistic: Option<f64>,
    ) -> Tails {
        if !observed.is_finite() {
            return Tails::NONE;
        }
        let (residual_p, run_p) =
            self.local
                .tail_p(residual, tolerance.scaled(noise), self.config.run_points);
        Tails {
            value: one_sided(&self.values, observed, tolerance),
            residual: residual_p,
            run: run_p,
            // Calibration only ever tempers the test: the p-value is the larger of its own and
            // its rank among the statistics seen (a test too confident for this series).
            statistic: statistic.map(|s| {
                let own = 10f64.powf(-s.max(0.0));
                self.statistics.upper_p(s, Tolerance::floor(0.0)).max(own)
            }),
        }
    }

    /// The band for dashboards: the expected value and where a point would open an episode.
    fn band(
        &self,
        observed: f64,
        expected: f64,
        tolerance: Tolerance,
        noise: f64,
        novelty: f64,
    ) -> Score {
        let anomaly_score = evidence_score(10f64.powf(-novelty), 1);
        if !expected.is_finite() {
            return Score {
                anomaly_score,
                ..Score::unjudged(observed, expected)
            };
        }
        let p = 10f64.powf(-self.config.episode_surprise) / STREAM_TESTS;
        let residuals = tolerance.scaled(noise);
        let upper = (expected + noise * self.local.residuals.upper_quantile(p, residuals))
            .min(self.values.upper_quantile(p, tolerance))
            .max(expected);
        let lower = (expected + noise * self.local.residuals.lower_quantile(p, residuals))
            .max(self.values.lower_quantile(p, tolerance))
            .min(expected);
        if !observed.is_finite() {
            return Score {
                lower,
                upper,
                ..Score::unjudged(observed, expected)
            };
        }
        let diff = observed - expected;
        let half = if diff >= 0.0 {
            upper - expected
        } else {
            expected - lower
        };
        let band_units = if half > 0.0 && half.is_finite() {
            diff / half
        } else {
            0.0
        };
        let band_units = if band_units.is_finite() {
            band_units
        } else {
            0.0
        };
        Score::judged(
            observed,
            (expected, lower, upper),
            band_units,
            anomaly_score,
        )
    }

    /// The model's path at `timestamp_secs` (0 without a model).
    fn path_at(&self, timestamp_secs: i64) -> f64 {
        let path = self.model.expected_at(timestamp_secs);
        if path.is_finite() { path } else { 0.0 }
    }

    /// The scale residuals are measured in: the Poisson noise `√expected` (at least 1) for
    /// counts, whose spread grows with their level (a night's 10 events and a day's 400 differ
    /// by a few units and by tens as a matter of course); 1 for levels.
    fn noise_scale(&self, expected: f64) -> f64 {
        match self.config.kind {
            SeriesKind::Count if expected.is_finite() => expected.max(1.0).sqrt(),
            _ => 1.0,
        }
    }

    /// Differences too small to count: the series' resolution (smallest step between two values
    /// seen) or `relative_floor` of the range of the values window, and `min_deviation`.
    fn tolerance(&self) -> Tolerance {
        let resolution = if self.resolution.is_finite() {
            self.resolution
        } else {
            0.0
        };
        let range = match (self.values.max(), self.values.min()) {
            (Some(hi), Some(lo)) if (hi - lo).is_finite() => hi - lo,
            _ => 0.0,
        };
        let relative = if self.config.relative_floor.is_finite() {
            self.config.relative_floor.max(0.0)
        } else {
            0.0
        };
        let floor = resolution.max(relative * range).max(f64::MIN_POSITIVE);
        let min_deviation = if self.config.min_deviation.is_finite() {
            self.config.min_deviation
        } else {
            0.0
        };
        Tolerance {
            slack: floor.max(min_deviation),
            floor,
        }
    }

    /// Learns `observed` (finite): resolution, local level, the model's calibration; returns
    /// the residual and run mean the windows are to take.
    fn learn(
        &mut self,
        timestamp_secs: i64,
        observed: f64,
        path: f64,
        floor: f64,
        noise: f64,
        residual_surprise: f64,
    ) -> Option<(f64, Option<f64>)> {
        let step = (observed - self.last_value).abs();
        if step > 0.0 && step.is_finite() {
            self.resolution = self.resolution.min(step);
        }
        self.last_value = observed;
        let alpha = if self.config.level_alpha.is_finite() {
            self.config.level_alpha.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let learnt = self.local.learn(
            (observed, path, noise),
            floor,
            (self.config.run_points, alpha, self.config.level_clip),
        );
        if residual_surprise < CALIBRATION_CUTOFF_SURPRISE && basis_judged(self.model.basis()) {
            let calibration = self.model.calibration_residual(timestamp_secs, observed);
            if calibration.is_finite() {
                self.calibration.push_back(calibration);
                while self.calibration.len() > self.calibration_capacity() {
                    self.calibration.pop_front();
                }
            }
        }
        learnt
    }

    /// Slots between the last point and `timestamp_secs` (0: not after it), learning the step.
    fn advance(&mut self, timestamp_secs: i64) -> usize {
        let Some(last) = self.last_timestamp else {
            return 1;
        };
        let gap = i128::from(timestamp_secs) - i128::from(last);
        match self.step {
            Some(step) => {
                let step = i128::from(step);
                let slots = (gap + step / 2).div_euclid(step);
                usize::try_from(slots.clamp(0, 1 << 40)).unwrap_or(0)
            }
            None if gap > 0 => {
                if let Ok(gap) = i64::try_from(gap) {
                    self.gaps.push(gap);
                }
                if self.gaps.len() >= STEP_LEARNING_GAPS {
                    let gaps: Vec<f64> = self.gaps.iter().map(|&g| g as f64).collect();
                    let step = median(&gaps)
                        .unwrap_or(1.0)
                        .round()
                        .clamp(1.0, f64::from(u32::MAX));
                    self.step = Some(step as u32);
                }
                1
            }
            None => 0,
        }
    }

    fn provisional_step(&self) -> u32 {
        self.step.unwrap_or_else(|| {
            let gaps: Vec<f64> = self.gaps.iter().map(|&g| g as f64).collect();
            median(&gaps)
                .unwrap_or(1.0)
                .round()
                .clamp(1.0, f64::from(u32::MAX)) as u32
        })
    }

    fn candidates(&self) -> Vec<usize> {
        let mut periods = self
            .config
            .fit
            .candidate_periods
            .clone()
            .unwrap_or_else(|| default_periods(self.provisional_step()));
        periods.retain(|&p| p >= 2);
        periods.sort_unstable();
        periods
    }

    fn refit_every(&self) -> usize {
        self.config
            .refit_every_points
            .unwrap_or_else(|| {
                let season = self.candidates().first().copied().unwrap_or(288);
                season.clamp(64, 5_000)
            })
            .max(1)
    }

    fn history_capacity(&self) -> usize {
        self.config
            .max_history_points
            .unwrap_or_else(|| {
                let longest = self.candidates().last().copied().unwrap_or(0);
                longest
                    .saturating_mul(2)
                    .saturating_add(self.refit_every())
                    .clamp(512, 50_000)
            })
            .max(8)
    }

    fn calibration_capacity(&self) -> usize {
        self.refit_every().saturating_mul(2).max(200)
    }

    fn maybe_refit(&mut self, last_timestamp: i64) {
        let n = self.history.len();
        let every = self.refit_every();
        let due = if n < every || self.model.basis() == Basis::Insufficient {
            n >= self.next_cold_fit
        } else {
            self.since_fit >= every
        };
        if due {
            self.refit(last_timestamp);
        }
    }

    fn refit(&mut self, last_timestamp: i64) {
        let n = self.history.len();
        let step = self.provisional_step();
        let start = last_timestamp.saturating_sub((n as i64 - 1).saturating_mul(i64::from(step)));
        let series = Series::new(
            start,
            step,
            self.config.kind,
            self.history.iter().copied().collect(),
        );
        let residuals: Vec<f64> = self.calibration.iter().copied().collect();
        let keep = self.model.periods().to_vec();
        let mut model = fit_keeping(&series, &self.config.fit, Some(&residuals), &keep);
        let same_kind =
            model.basis() == self.model.basis() && model.periods() == self.model.periods();
        if !same_kind {
            // The logged residuals belong to another kind of model: hold out points instead.
            self.calibration.clear();
            if model.calibration_size() > 0 {
                model = fit_keeping(&series, &self.config.fit, None, &keep);
            }
        }
        // The expected value stays continuous: the local level takes what the new path moved.
        let next = last_timestamp.saturating_add(i64::from(step));
        let old_path = self.path_at(next);
        self.model = model;
        let moved = old_path - self.path_at(next);
        if moved.is_finite() {
            self.local.rebase(moved);
        }
        self.fits += 1;
        self.since_fit = 0;
        self.next_cold_fit = n + (n / 4).max(8);
    }
}

fn basis_judged(basis: Basis) -> bool {
    matches!(basis, Basis::Level | Basis::Seasonal)
}

#[cfg(test)]
mod tests;
