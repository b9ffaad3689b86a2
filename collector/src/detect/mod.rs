//! Anomaly detection and capacity forecasting on stored series: pure functions, no I/O, shared by
//! the collector and `mailpulse detect`.
//!
//! # What
//! - [`seasonal`]: [`fit`] a model of one series (MSTL with daily/weekly periods detected from
//!   the data, an ETS or smoothed-level trend, a band calibrated on out-of-sample residuals) and
//!   [`score`] new points against it: how far outside the band, in band units, with direction.
//! - [`ratio`]: small-count ratios (bounce, deferral, reject rate per domain) judged by a
//!   beta-binomial test against a baseline, so 3 of 20 and 300 of 2 000 weigh their evidence.
//! - [`changepoint`]: an online two-sided CUSUM for level shifts on standardised residuals.
//! - [`fleet`]: one host against its peers, robust z-scores (median/MAD) on residuals.
//! - [`forecast`](mod@forecast): queue size, volume, disk use ahead with intervals, and
//!   "threshold crossed in 6 h" helpers.
//! - [`stream`]: [`StreamingDetector`], the causal scorer of one series that refits on a
//!   schedule.
//! - [`causal`]: the detectors the collector runs per view series, one window at a time —
//!   [`VolumeDetector`] (the streaming band, plus the small-count test of [`counts`] for
//!   counters; what `mailpulse detect` runs on a CSV), [`RatioDetector`] (the ratio test against
//!   the same hours of earlier days), [`ForecastDetector`] (ETA to a limit) — each answering with
//!   a typed [`Verdict`].
//!
//! # Why this shape
//! Mail traffic is daily and weekly seasonal: static thresholds fire every Monday morning and
//! miss a 3 a.m. bounce storm. Fitting is expensive (1–20 ms per series), scoring must be
//! cheap (10 k series a minute in a few percent of a core), so a [`Model`] is a small frozen
//! forecast (seasonal cycles, trend path, calibrated residual quantiles) and scoring a point is
//! a few array reads.
//!
//! # Data contract and edge cases
//! Series are regular grids ([`Series`]): one value per window of `step_secs`, missing windows
//! as NaN. Counter-like metrics are given as per-window deltas ([`SeriesKind::Count`]), never
//! cumulative totals (values go through `f32` inside MSTL).
//! - **Counter resets**: a negative delta of a [`SeriesKind::Count`] series is a reset, treated as
//!   a missing value (NaN); the caller computes deltas.
//! - **NaN, ±inf, gaps**: treated as missing. Fitting interpolates them linearly (augurs
//!   `LinearInterpolator`, edges held) but never calibrates on interpolated points; scoring a
//!   missing value gives [`Direction::Missing`] and score 0.
//! - **Cold start**: fewer than 8 finite values → [`Basis::Insufficient`], every score 0. Less
//!   than one season (the shortest candidate period) → [`Basis::Robust`]: median ± a MAD band
//!   widened for the small sample. One season or more (and at least 48 points) but no period
//!   with two full seasons (or none detected) → [`Basis::Level`] (trend model only). Two
//!   seasons of a detected period (before the held-out points, when the band is calibrated on
//!   held-out points) → [`Basis::Seasonal`]. At 5-minute windows: daily from 3 days of data,
//!   weekly from 2 weeks and a day.
//! - **Constant and all-zero series**: the band never gets narrower than a floor (counts: the
//!   Poisson width `z * sqrt(max(expected, 1))`; gauges: `1e-6` of the level, at least `1e-9`),
//!   so values equal to the constant score 0 and a band of ~1e-99 never happens.
//! - **Huge values**: series are centred and scaled robustly before MSTL and clipped at
//!   ±1e9 scale units, so `f32` never overflows.
//!
//! Architecture invariant: nothing in this module blocks, allocates per score beyond the
//! [`Score`] itself, reads a clock or touches the store; every function is total (no panics on
//! any input).

pub mod causal;
pub mod changepoint;
pub mod counts;
pub mod fleet;
pub mod forecast;
mod math;
pub mod ratio;
pub mod seasonal;
pub mod stream;
pub mod tails;
mod trend;

pub use causal::{
    Assessment, CountTestScope, DetectorKind, Deviation, Evidence, ForecastDetector,
    ForecastDetectorConfig, ForecastLimit, Judgement, RatioConfig, RatioDetector, Side, Verdict,
    VolumeConfig, VolumeDetector,
};
pub use changepoint::{Cusum, CusumConfig, LevelShift};
pub use counts::{CountBaseline, CountTest, count_test, dispersion};
pub use fleet::{FleetConfig, FleetScore, fleet_outliers};
pub use forecast::{
    Bound, Forecast, ForecastConfig, ForecastPoint, forecast, forecast_with, time_until_threshold,
    time_until_threshold_with,
};
pub use ratio::{RatioBaseline, RatioTest, ratio_test};
pub use seasonal::{Basis, FitConfig, Model, fit, fit_with, score};
pub use stream::{Stream, StreamConfig, StreamScore, StreamingDetector};
pub use trend::TrendKind;

/// A regular time series: one value per window of `step_secs`, the first at `start_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Unix time of the first value (window start or end; what matters is consistency).
    pub start_secs: i64,
    /// Window length in seconds (at least 1; 0 is read as 1).
    pub step_secs: u32,
    /// What the values are.
    pub kind: SeriesKind,
    /// One value per window; NaN (or ±inf) marks a missing window.
    pub values: Vec<f64>,
}

impl Series {
    /// A series of `kind` starting at `start_secs` with one value per `step_secs`.
    pub fn new(start_secs: i64, step_secs: u32, kind: SeriesKind, values: Vec<f64>) -> Self {
        Series {
            start_secs,
            step_secs,
            kind,
            values,
        }
    }

    /// The window length, at least one second.
    pub fn step(&self) -> u32 {
        self.step_secs.max(1)
    }

    /// Values with everything that is not a valid observation replaced by NaN (non-finite
    /// values; negative deltas of a count series, which are counter resets).
    pub fn cleaned(&self) -> Vec<f64> {
        self.values.iter().map(|&v| self.kind.clean(v)).collect()
    }
}

/// What the values of a [`Series`] are; decides resets and the minimum band width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeriesKind {
    /// Events per window (deltas of a counter): ≥ 0; a negative value is a counter reset and is
    /// treated as missing. The band is at least as wide as Poisson noise.
    Count,
    /// A level (queue size, disk use, a rate): any finite value.
    #[default]
    Gauge,
}

impl SeriesKind {
    /// `value` if it is a valid observation of this kind, else NaN.
    pub fn clean(self, value: f64) -> f64 {
        match self {
            _ if !value.is_finite() => f64::NAN,
            SeriesKind::Count if value < 0.0 => f64::NAN,
            _ => value,
        }
    }
}

/// Which side of the band a point fell on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Within the band.
    Inside,
    /// Above the upper bound.
    Above,
    /// Below the lower bound.
    Below,
    /// The value was missing (NaN, inf, a counter reset): not judged.
    Missing,
}

/// The verdict on one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The value judged (NaN when missing).
    pub observed: f64,
    /// What the model expected (NaN when it has too little data).
    pub expected: f64,
    /// Lower bound of the calibrated band (−inf without a model).
    pub lower: f64,
    /// Upper bound of the calibrated band (+inf without a model).
    pub upper: f64,
    /// Signed distance from `expected` in half-band units: ±1 at the band edges.
    pub band_units: f64,
    /// How far outside the band, in half-band units (0 inside).
    pub excess: f64,
    /// Which side.
    pub direction: Direction,
    /// `excess` mapped to [0, 1] by [`anomaly_score`]: 0 inside the band.
    pub anomaly_score: f64,
}

impl Score {
    /// A point that is not judged (missing value or no model): score 0.
    pub fn unjudged(observed: f64, expected: f64) -> Score {
        Score {
            observed,
            expected,
            lower: f64::NEG_INFINITY,
            upper: f64::INFINITY,
            band_units: 0.0,
            excess: 0.0,
            direction: if observed.is_finite() {
                Direction::Inside
            } else {
                Direction::Missing
            },
            anomaly_score: 0.0,
        }
    }

    /// A judged point `band_units` half-bands from `expected` (±1 at the band's edges): how far
    /// outside the band, and on which side; `anomaly_score` as given.
    pub fn judged(
        observed: f64,
        (expected, lower, upper): (f64, f64, f64),
        band_units: f64,
        anomaly_score: f64,
    ) -> Score {
        let excess = (band_units.abs() - 1.0).max(0.0);
        let direction = if excess == 0.0 {
            Direction::Inside
        } else if observed > expected {
            Direction::Above
        } else {
            Direction::Below
        };
        Score {
            observed,
            expected,
            lower,
            upper,
            band_units,
            excess,
            direction,
            anomaly_score,
        }
    }
}

/// Maps an excess over the band (in half-band units, ≥ 0) to [0, 1]: `1 - exp(-excess)`.
/// 0 inside the band, 0.5 at 1.7 half-bands from the expected value, 0.95 at 4.
pub fn anomaly_score(excess: f64) -> f64 {
    if excess.is_nan() || excess <= 0.0 {
        return 0.0;
    }
    (1.0 - (-excess).exp()).clamp(0.0, 1.0)
}

/// Maps a p-value from one of `tests` tests of the same window (Bonferroni: `tests × p`) to
/// [0, 1]: 0 while the corrected p ≥ 0.01, 0.78 at 1e-4, 0.95 at 1e-6 (the default alerting
/// level: about one false alarm per host-week over the default views' tests), 0.99 at 1e-8.
pub fn evidence_score(p_value: f64, tests: usize) -> f64 {
    let p = if p_value.is_nan() { 1.0 } else { p_value };
    let corrected = (p * tests.max(1) as f64).clamp(0.0, 1.0);
    let surprise = if corrected > 0.0 {
        (-corrected.log10()).clamp(0.0, 300.0)
    } else {
        300.0
    };
    anomaly_score(0.75 * (surprise - 2.0))
}

/// Default candidate seasonal periods, in points, for windows of `step_secs`: daily and weekly
/// where the step divides them into at least 2 points (288 and 2016 at 5 minutes).
pub fn default_periods(step_secs: u32) -> Vec<usize> {
    let step = u64::from(step_secs.max(1));
    [86_400u64, 604_800]
        .into_iter()
        .filter(|secs| secs % step == 0)
        .map(|secs| (secs / step) as usize)
        .filter(|&p| p >= 2)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_series_treat_resets_and_non_finite_as_missing() {
        let s = Series::new(
            0,
            300,
            SeriesKind::Count,
            vec![1.0, -5.0, f64::INFINITY, 2.0],
        );
        let cleaned = s.cleaned();
        assert_eq!(cleaned[0], 1.0);
        assert!(cleaned[1].is_nan() && cleaned[2].is_nan());
        let g = Series::new(0, 300, SeriesKind::Gauge, vec![-5.0]);
        assert_eq!(g.cleaned(), vec![-5.0]);
    }

    #[test]
    fn default_periods_are_daily_and_weekly() {
        assert_eq!(default_periods(300), vec![288, 2016]);
        assert_eq!(default_periods(3600), vec![24, 168]);
        assert_eq!(default_periods(86_400), vec![7]);
        assert_eq!(default_periods(1000), Vec::<usize>::new());
        assert_eq!(default_periods(0), vec![86_400, 604_800]);
    }

    #[test]
    fn evidence_scores_reach_the_alerting_level_at_one_in_a_million() {
        assert_eq!(evidence_score(0.5, 1), 0.0);
        assert_eq!(evidence_score(f64::NAN, 3), 0.0);
        assert!((evidence_score(1e-6, 1) - 0.95).abs() < 0.01);
        assert!(evidence_score(1e-6, 3) < 0.95);
        assert_eq!(evidence_score(0.0, 3), 1.0);
    }

    #[test]
    fn anomaly_score_is_monotone_in_0_1() {
        assert_eq!(anomaly_score(0.0), 0.0);
        assert_eq!(anomaly_score(f64::NAN), 0.0);
        assert!((anomaly_score(1.0_f64.ln() + 2f64.ln()) - 0.5).abs() < 1e-12);
        assert_eq!(anomaly_score(f64::INFINITY), 1.0);
    }
}
