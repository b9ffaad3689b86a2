//! Seasonal bands: [`fit`] a [`Model`] of one series, [`score`] points against it.
//!
//! # Fitting
//! 1. Clean (NaN for missing values and counter resets), centre and scale robustly (median,
//!    MAD), interpolate gaps (augurs `LinearInterpolator`).
//! 2. Pick seasonal periods among the candidates (daily and weekly for the step by default):
//!    only periods with at least two full seasons of data are eligible. augurs' periodogram
//!    proposes periods it can resolve (up to `min(n/3, 512)` points; its grid is coarse, 256 or
//!    341 for 288, so peaks are snapped to candidates within ±20 %), and every period, proposed or
//!    too long for the periodogram (weekly at 5 minutes), must pass a randomised-block ANOVA of
//!    block means by phase (cycles as blocks, so a drifting level is not mistaken for a season)
//!    at p < 0.001, both on the series minus its straight-line trend (a ramp would otherwise look
//!    like a daily sawtooth). Noise alone does not produce a seasonal model.
//! 3. Fit augurs `MSTLModel` with those periods and the configured [`TrendKind`] (a smoothed
//!    level by default, augurs AutoETS with [`FitConfig::ets`]; without a period, the trend
//!    model alone) and freeze its forecast: the last cycle of every seasonal
//!    component (smoothed along the cycle over `p / 96` phases: STL only smooths across cycles,
//!    and two weeks give every phase of a weekly cycle just two noisy points) and the trend path
//!    for `horizon_points`.
//! 4. Calibrate the band: augurs' own intervals cover only 74–92 % of clean data out of sample,
//!    so the band is built from conformal quantiles of out-of-sample residuals instead. Either the
//!    caller provides them (the streaming detector passes the residuals its previous models made
//!    on points they had not seen) or the last `calibration_points` are held out: the model is
//!    fitted once without them, its forecast errors on them are the calibration set, then it is
//!    fitted again on everything. With held-out points a period is used only when it has two
//!    seasons *before* them, so the calibrated model and the final one have the same periods.
//!    Interpolated points never enter the calibration set.
//! 5. Noise is not constant over a day (busy hours are noisier than the night), so residuals
//!    are divided by a noise profile before their quantiles are taken: the MAD of the MSTL
//!    remainder in 24 phase buckets of the shortest period, normalised to mean 1 (floored at
//!    0.2). The band is then wide at noon and narrow at 3 a.m., and still calibrated overall.
//!
//! # Scoring
//! `forecast = centre + scale · (trend[h] + Σ cycle_j[h mod p_j])`, `expected = forecast +
//! noise(h) · median residual`, band = forecast + noise(h) · (residual quantiles), floored (see
//! the module docs of `detect`). The band units are measured from `expected` to the edge on
//! the point's side, so an asymmetric band keeps its asymmetry. Beyond the stored horizon the
//! trend is held flat: refit before then.

use augurs::mstl::MSTLModel;
use augurs::mstl::TrendModel;
use augurs::prelude::*;
use augurs::seasons::PeriodogramDetector;

use super::math::{
    MAD_TO_SIGMA, conformal_quantile, f_survival, fill_gaps, median, median_mad, normal_quantile,
};
use super::trend::{Trend, TrendKind};
use super::{Score, Series, SeriesKind, anomaly_score, default_periods};

/// Fewer finite values than this: no model at all.
const MIN_POINTS: usize = 8;
/// Fewest points of a level or seasonal model (training plus held-out).
const MIN_MODEL_POINTS: usize = 48;
/// Fewest out-of-sample residuals for a calibration.
const MIN_CALIBRATION: usize = 24;
/// A periodogram peak counts when its power is this many times the median power.
const PERIODOGRAM_SIGNIFICANCE: f64 = 10.0;
/// Relative distance within which a periodogram peak is snapped to a candidate period.
const SNAP_TOLERANCE: f64 = 0.2;
/// p-value below which the phase ANOVA accepts a seasonal period.
const SEASONALITY_P_VALUE: f64 = 1e-3;
/// Normalised values are clipped here so MSTL's `f32` never overflows.
const CLIP: f64 = 1e9;

/// How a [`Model`] is fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Coverage the band is calibrated for (0.5..0.9999; default 0.95).
    pub band_level: f64,
    /// Candidate seasonal periods in points; `None`: daily and weekly for the step.
    pub candidate_periods: Option<Vec<usize>>,
    /// Trend model under the seasonal components.
    pub trend: TrendKind,
    /// How far ahead, in points, the trend path is stored (scoring further out holds it flat);
    /// `None`: the shortest candidate period (one day), at least 64.
    pub horizon_points: Option<usize>,
    /// Points held out for calibration when no residuals are provided; `None`: the horizon,
    /// at most a third of the history.
    pub calibration_points: Option<usize>,
    /// Smallest half-width of the band, in the series' units (added to the automatic floors).
    pub min_half_width: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            band_level: 0.95,
            candidate_periods: None,
            trend: TrendKind::default(),
            horizon_points: None,
            calibration_points: None,
            min_half_width: 0.0,
        }
    }
}

impl FitConfig {
    /// The default with augurs AutoETS as the trend model (on the last 576 points): the model
    /// the issue describes; slower (~25 ms per fit) and, measured, noisier than the default.
    pub fn ets() -> Self {
        FitConfig {
            trend: TrendKind::AutoEts { tail_points: 576 },
            ..FitConfig::default()
        }
    }

    fn level(&self) -> f64 {
        if self.band_level.is_finite() {
            self.band_level.clamp(0.5, 0.9999)
        } else {
            0.95
        }
    }

    fn candidates(&self, step_secs: u32) -> Vec<usize> {
        let mut periods = self
            .candidate_periods
            .clone()
            .unwrap_or_else(|| default_periods(step_secs));
        periods.retain(|&p| p >= 2);
        periods.sort_unstable();
        periods.dedup();
        periods
    }
}

/// What a [`Model`] rests on; the cold-start ladder of the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Fewer than 8 finite values: nothing is judged.
    Insufficient,
    /// Less than a season: median ± MAD band of what exists.
    Robust,
    /// Trend model without seasonal components, calibrated band.
    Level,
    /// MSTL with at least one seasonal period, calibrated band.
    Seasonal,
}

/// A fitted, frozen model of one series: cheap to score, a few KiB.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    basis: Basis,
    kind: SeriesKind,
    step_secs: u32,
    next_secs: i64,
    center: f64,
    scale: f64,
    periods: Vec<usize>,
    /// Last cycle of each seasonal component, in scaled units, phase 0 = first slot ahead.
    cycles: Vec<Vec<f32>>,
    /// Trend path in scaled units for the slots ahead (at least one value).
    trend: Vec<f32>,
    /// Relative noise level by phase of the shortest period (mean 1; empty: constant).
    noise_profile: Vec<f32>,
    /// Conformal quantiles of residuals divided by the noise profile, in series units:
    /// lower, median, upper.
    residual_lo: f64,
    residual_mid: f64,
    residual_hi: f64,
    z_level: f64,
    band_level: f64,
    min_half_width: f64,
    history_points: usize,
    calibration_size: usize,
}

/// Fits a model of `history` with the default configuration; never fails (too little data
/// gives a [`Basis::Insufficient`] or [`Basis::Robust`] model).
pub fn fit(history: &Series) -> Model {
    fit_with(history, &FitConfig::default(), None)
}

/// Scores `value` observed at `timestamp_secs` against `model`.
pub fn score(model: &Model, timestamp_secs: i64, value: f64) -> Score {
    model.score(timestamp_secs, value)
}

/// Fits a model of `history`. `calibration` are out-of-sample residuals of earlier models on
/// points they had not seen, as [`Model::calibration_residual`] gives them; with at least 24
/// finite ones they calibrate the band and no points are held out.
pub fn fit_with(history: &Series, config: &FitConfig, calibration: Option<&[f64]>) -> Model {
    fit_keeping(history, config, calibration, &[])
}

/// [`fit_with`] that keeps the candidate periods in `keep` (those of the previous model) without
/// testing them again, as long as they have two seasons of data: one odd week (an incident, a
/// holiday) must not make a detector forget its weekly pattern.
pub(crate) fn fit_keeping(
    history: &Series,
    config: &FitConfig,
    calibration: Option<&[f64]>,
    keep: &[usize],
) -> Model {
    let level = config.level();
    let z_level = normal_quantile(0.5 + level / 2.0);
    let raw = history.cleaned();
    let n = raw.len();
    let step = history.step();
    let next_secs = history
        .start_secs
        .saturating_add((n as i64).saturating_mul(i64::from(step)));
    let finite = raw.iter().filter(|v| v.is_finite()).count();
    let mut model = Model {
        basis: Basis::Insufficient,
        kind: history.kind,
        step_secs: step,
        next_secs,
        center: f64::NAN,
        scale: 1.0,
        periods: Vec::new(),
        cycles: Vec::new(),
        trend: vec![0.0],
        noise_profile: Vec::new(),
        residual_lo: f64::NEG_INFINITY,
        residual_mid: 0.0,
        residual_hi: f64::INFINITY,
        z_level,
        band_level: level,
        min_half_width: sanitize_width(config.min_half_width),
        history_points: n,
        calibration_size: 0,
    };
    let Some((center, mad)) = median_mad(&raw) else {
        return model;
    };
    model.center = center;
    if finite < MIN_POINTS {
        return model;
    }
    let scale = robust_scale(&raw, center, mad);
    model.scale = scale;

    let candidates = config.candidates(step);
    let season = candidates.first().copied().unwrap_or(0);
    if n < season || n < MIN_MODEL_POINTS {
        return robust_model(model, mad, finite);
    }
    let z: Vec<f64> = raw
        .iter()
        .map(|&v| ((v - center) / scale).clamp(-CLIP, CLIP))
        .collect();
    let Some(filled) = fill_gaps(&z) else {
        return robust_model(model, mad, finite);
    };
    let horizon = config
        .horizon_points
        .unwrap_or(season.max(64))
        .clamp(1, 1 << 20);
    let mut periods = detect_periods(&filled, &candidates);
    for &p in keep {
        if candidates.contains(&p) && 2 * p <= n && !periods.contains(&p) {
            periods.push(p);
        }
    }
    periods.sort_unstable();

    let provided: Vec<f64> = calibration
        .unwrap_or(&[])
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .collect();
    let residuals = if provided.len() >= MIN_CALIBRATION {
        provided
    } else {
        let held_out = config
            .calibration_points
            .unwrap_or(horizon)
            .clamp(MIN_CALIBRATION, (n / 3).max(MIN_CALIBRATION));
        if n < held_out + MIN_MODEL_POINTS / 2 {
            return robust_model(model, mad, finite);
        }
        let train = n - held_out;
        // The calibrated model must be the model that is used: a period needs two seasons
        // before the held-out points too (else the held-out residuals are those of a model
        // without it, e.g. weekends forecast as weekdays).
        periods.retain(|&p| 2 * p <= train);
        let Some(path) = fit_path(&filled[..train], &periods, config.trend, held_out) else {
            return robust_model(model, mad, finite);
        };
        let expected = path.expected(held_out);
        let residuals: Vec<f64> = raw[train..]
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (v, _))| v.is_finite())
            .map(|(k, (v, e))| (v - (center + scale * e)) / path.noise_at(k as i64))
            .filter(|r| r.is_finite())
            .collect();
        if residuals.len() < MIN_CALIBRATION {
            return robust_model(model, mad, finite);
        }
        residuals
    };

    let Some(path) = fit_path(&filled, &periods, config.trend, horizon) else {
        return robust_model(model, mad, finite);
    };
    model.basis = if path.periods.is_empty() {
        Basis::Level
    } else {
        Basis::Seasonal
    };
    model.periods = path.periods;
    model.cycles = path.cycles;
    model.trend = path.trend;
    model.noise_profile = path.noise_profile;
    set_band(&mut model, residuals);
    model
}

impl Model {
    /// What the model rests on.
    pub fn basis(&self) -> Basis {
        self.basis
    }

    /// Seasonal periods in points (empty unless [`Basis::Seasonal`]).
    pub fn periods(&self) -> &[usize] {
        &self.periods
    }

    /// Unix time of the first slot after the history the model was fitted on.
    pub fn next_secs(&self) -> i64 {
        self.next_secs
    }

    /// Window length in seconds.
    pub fn step_secs(&self) -> u32 {
        self.step_secs
    }

    /// Points ahead for which the trend path is stored.
    pub fn horizon_points(&self) -> usize {
        self.trend.len()
    }

    /// Number of points the model was fitted on.
    pub fn history_points(&self) -> usize {
        self.history_points
    }

    /// Number of residuals the band was calibrated on (0 for robust and insufficient models).
    pub fn calibration_size(&self) -> usize {
        self.calibration_size
    }

    /// Coverage the band is calibrated for.
    pub fn band_level(&self) -> f64 {
        self.band_level
    }

    /// Robust standard deviation of out-of-sample residuals at a typical time (noise profile
    /// 1), in series units; NaN without a model.
    pub fn residual_sigma(&self) -> f64 {
        if self.basis == Basis::Insufficient {
            return f64::NAN;
        }
        let spread = (self.residual_hi - self.residual_lo) / (2.0 * self.z_level);
        spread.max(self.min_half_width / self.z_level)
    }

    /// Standard deviation of residuals at `timestamp_secs`: [`Model::residual_sigma`] times the
    /// noise profile there.
    pub fn local_sigma(&self, timestamp_secs: i64) -> f64 {
        self.residual_sigma() * self.noise_at(self.slot(timestamp_secs))
    }

    /// Expected value at `timestamp_secs` (the band's reference point; NaN without a model).
    pub fn expected_at(&self, timestamp_secs: i64) -> f64 {
        if self.basis == Basis::Insufficient {
            return self.center;
        }
        let slot = self.slot(timestamp_secs);
        self.path_at(slot) + self.residual_mid * self.noise_at(slot)
    }

    /// The residual of `value` at `timestamp_secs` in the units the band is calibrated in:
    /// `(value − forecast) / noise profile`. What [`fit_with`] takes as calibration residuals
    /// (NaN for a missing value or without a model).
    pub fn calibration_residual(&self, timestamp_secs: i64, value: f64) -> f64 {
        let value = self.kind.clean(value);
        if self.basis == Basis::Insufficient || !value.is_finite() {
            return f64::NAN;
        }
        let slot = self.slot(timestamp_secs);
        (value - self.path_at(slot)) / self.noise_at(slot)
    }

    /// `(value − expected) / (σ · noise profile)`: the residual in local standard deviations,
    /// what [`Cusum`](super::Cusum) consumes (NaN for a missing value or without a model).
    pub fn standardised_residual(&self, timestamp_secs: i64, value: f64) -> f64 {
        let sigma = self.residual_sigma();
        let r = self.calibration_residual(timestamp_secs, value) - self.residual_mid;
        let z = r / sigma;
        if z.is_finite() { z } else { f64::NAN }
    }

    /// Scores `value` observed at `timestamp_secs`: band, distance in band units, direction
    /// and a score in [0, 1]. Missing values and [`Basis::Insufficient`] models score 0.
    pub fn score(&self, timestamp_secs: i64, value: f64) -> Score {
        let observed = self.kind.clean(value);
        if self.basis == Basis::Insufficient {
            return Score::unjudged(observed, self.center);
        }
        let slot = self.slot(timestamp_secs);
        let noise = self.noise_at(slot);
        let expected = self.path_at(slot) + self.residual_mid * noise;
        if !expected.is_finite() {
            return Score::unjudged(observed, expected);
        }
        let floor = self.floor(expected);
        let up = ((self.residual_hi - self.residual_mid) * noise).max(floor);
        let down = ((self.residual_mid - self.residual_lo) * noise).max(floor);
        let lower = expected - down;
        let upper = expected + up;
        if !observed.is_finite() {
            return Score {
                lower,
                upper,
                ..Score::unjudged(observed, expected)
            };
        }
        let diff = observed - expected;
        let band_units = if diff >= 0.0 { diff / up } else { diff / down };
        let band_units = if band_units.is_nan() { 0.0 } else { band_units };
        let score = Score::judged(observed, (expected, lower, upper), band_units, 0.0);
        Score {
            anomaly_score: anomaly_score(score.excess),
            ..score
        }
    }

    /// Slot (points after the history) of a timestamp, rounded to the nearest window.
    fn slot(&self, timestamp_secs: i64) -> i64 {
        let step = i128::from(self.step_secs.max(1));
        let delta = i128::from(timestamp_secs) - i128::from(self.next_secs);
        // Round half up, in integers: no float error for far-away timestamps.
        let slot = (delta + step / 2).div_euclid(step);
        slot.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Trend plus seasonal forecast at `slot`, in series units.
    fn path_at(&self, slot: i64) -> f64 {
        let ahead = usize::try_from(slot.max(0)).unwrap_or(usize::MAX);
        let last = self.trend.len().saturating_sub(1);
        let mut scaled = f64::from(self.trend.get(ahead.min(last)).copied().unwrap_or(0.0));
        for cycle in &self.cycles {
            let len = cycle.len() as i64;
            if len > 0 {
                let phase = slot.rem_euclid(len) as usize;
                scaled += f64::from(cycle[phase]);
            }
        }
        self.center + self.scale * scaled
    }

    fn noise_at(&self, slot: i64) -> f64 {
        noise_at(&self.noise_profile, self.periods.first().copied(), slot)
    }

    /// Smallest half-width of the band around `expected`.
    fn floor(&self, expected: f64) -> f64 {
        let automatic = match self.kind {
            SeriesKind::Count => self.z_level * expected.max(1.0).sqrt(),
            SeriesKind::Gauge => 1e-6 * expected.abs().max(self.center.abs()).max(1e-3),
        };
        automatic.max(self.min_half_width)
    }
}

/// A frozen forecast path in scaled units.
struct Path {
    periods: Vec<usize>,
    cycles: Vec<Vec<f32>>,
    trend: Vec<f32>,
    noise_profile: Vec<f32>,
}

impl Path {
    /// Relative noise level at `slot` ahead (1 without a profile).
    fn noise_at(&self, slot: i64) -> f64 {
        noise_at(&self.noise_profile, self.periods.first().copied(), slot)
    }

    /// Trend plus seasonal contributions for the first `horizon` slots ahead.
    fn expected(&self, horizon: usize) -> Vec<f64> {
        (0..horizon)
            .map(|k| {
                let trend = self.trend.get(k).or(self.trend.last()).copied();
                let seasonal: f64 = self.cycles.iter().map(|c| f64::from(c[k % c.len()])).sum();
                f64::from(trend.unwrap_or(0.0)) + seasonal
            })
            .collect()
    }
}

/// Fits MSTL (or the trend model alone without periods) on `y` and freezes `horizon` slots.
/// Falls back from AutoETS to the smoothed level, and from MSTL to the trend alone, when a fit
/// fails; `None` only when nothing could be fitted.
fn fit_path(y: &[f64], periods: &[usize], trend: TrendKind, horizon: usize) -> Option<Path> {
    let mut attempts = vec![trend];
    if trend != TrendKind::SmoothedLevel {
        attempts.push(TrendKind::SmoothedLevel);
    }
    if !periods.is_empty() {
        for &kind in &attempts {
            if let Some(path) = fit_mstl(y, periods, kind, horizon) {
                return Some(path);
            }
        }
    }
    for kind in attempts {
        let Ok(fitted) = (Trend { kind, horizon }).fit(y) else {
            continue;
        };
        let Ok(forecast) = fitted.predict(horizon, None) else {
            continue;
        };
        if let Some(trend) = to_f32_path(&forecast.point, horizon) {
            return Some(Path {
                periods: Vec::new(),
                cycles: Vec::new(),
                trend,
                noise_profile: Vec::new(),
            });
        }
    }
    None
}

fn fit_mstl(y: &[f64], periods: &[usize], kind: TrendKind, horizon: usize) -> Option<Path> {
    let fitted = MSTLModel::new(periods.to_vec(), Trend { kind, horizon })
        .fit(y)
        .ok()?;
    let forecast = fitted.predict(horizon, None).ok()?;
    let n = y.len();
    // Index 0 of each cycle is the phase of the first slot ahead: component[n - p + (k mod p)].
    let cycles: Vec<Vec<f32>> = periods
        .iter()
        .zip(fitted.fit().seasonal())
        .filter(|(p, component)| component.len() == n && **p <= n)
        .map(|(&p, component)| component[n - p..].to_vec())
        .collect();
    if cycles.len() != periods.len()
        || cycles
            .iter()
            .any(|c| c.is_empty() || c.iter().any(|v| !v.is_finite()))
    {
        return None;
    }
    let seasonal = |k: usize| -> f64 { cycles.iter().map(|c| f64::from(c[k % c.len()])).sum() };
    let trend_only: Vec<f64> = forecast
        .point
        .iter()
        .enumerate()
        .map(|(k, p)| p - seasonal(k))
        .collect();
    let trend = to_f32_path(&trend_only, horizon)?;
    let cycles = cycles.iter().map(|c| smooth_cycle(c)).collect();
    let noise_profile = noise_profile(fitted.fit().remainder(), periods[0]);
    Some(Path {
        periods: periods.to_vec(),
        cycles,
        trend,
        noise_profile,
    })
}

/// Circular moving average over `p / 96` neighbouring phases (odd, at least 1): 3 points of a
/// 5-minute day, 21 of a week. STL smooths each phase across cycles but not along the cycle, so
/// with two or three weekly cycles every phase of the weekly component carries the noise of
/// two or three points; mail traffic is smooth at that scale, the noise is not.
fn smooth_cycle(cycle: &[f32]) -> Vec<f32> {
    let p = cycle.len();
    let width = (p / 96) | 1;
    if width < 3 || p < width {
        return cycle.to_vec();
    }
    let half = width / 2;
    let mut sum: f64 = (0..width)
        .map(|j| f64::from(cycle[(j + p - half) % p]))
        .sum();
    let mut out = Vec::with_capacity(p);
    for i in 0..p {
        out.push((sum / width as f64) as f32);
        // Slide: drop phase i - half, add phase i + half + 1.
        sum += f64::from(cycle[(i + half + 1) % p]) - f64::from(cycle[(i + p - half) % p]);
    }
    out
}

fn to_f32_path(point: &[f64], horizon: usize) -> Option<Vec<f32>> {
    if point.len() < horizon.max(1) || point.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(
        point[..horizon.max(1)]
            .iter()
            .map(|&v| v.clamp(-CLIP, CLIP) as f32)
            .collect(),
    )
}

/// Buckets of the noise profile per period (hours of a day at most).
const NOISE_BUCKETS: usize = 24;
/// No bucket of the noise profile is quieter than this fraction of the mean.
const NOISE_FLOOR: f64 = 0.2;

/// Relative noise level (MAD of the MSTL remainder) by phase bucket of `period`, normalised to
/// mean 1: busy hours have wider bands than quiet ones. Index 0 of the phase is the first slot
/// after the remainder, like the seasonal cycles. Empty when it cannot be estimated.
fn noise_profile(remainder: &[f32], period: usize) -> Vec<f32> {
    let n = remainder.len();
    let buckets = NOISE_BUCKETS.min(period);
    if buckets < 2 || n < 2 * period {
        return Vec::new();
    }
    let mut by_bucket: Vec<Vec<f64>> = vec![Vec::new(); buckets];
    let shift = period - n % period;
    for (i, r) in remainder.iter().enumerate() {
        let phase = (i + shift) % period;
        by_bucket[phase * buckets / period].push(f64::from(*r));
    }
    let spreads: Vec<f64> = by_bucket
        .iter()
        .map(|b| median_mad(b).map_or(0.0, |(_, mad)| mad))
        .collect();
    let mean = spreads.iter().sum::<f64>() / buckets as f64;
    if !(mean.is_finite() && mean > 0.0) {
        return Vec::new();
    }
    spreads
        .iter()
        .map(|s| (s / mean).max(NOISE_FLOOR) as f32)
        .collect()
}

/// Noise profile value at `slot` ahead; 1 without a profile.
fn noise_at(profile: &[f32], period: Option<usize>, slot: i64) -> f64 {
    match period {
        Some(p) if !profile.is_empty() && p > 0 => {
            let phase = slot.rem_euclid(p as i64) as usize;
            f64::from(profile[(phase * profile.len() / p).min(profile.len() - 1)])
        }
        _ => 1.0,
    }
}

/// The cold-start model: median ± MAD band, widened for small samples by `1 + 1.5 / sqrt(n)`
/// (≈ a t quantile's widening, on the safe side because the MAD is a noisy scale estimate).
fn robust_model(mut model: Model, mad: f64, finite: usize) -> Model {
    let widen = 1.0 + 1.5 / (finite as f64).sqrt();
    let half = model.z_level * MAD_TO_SIGMA * mad * widen;
    model.basis = Basis::Robust;
    model.periods.clear();
    model.cycles.clear();
    model.trend = vec![0.0];
    model.noise_profile.clear();
    model.residual_lo = -half;
    model.residual_mid = 0.0;
    model.residual_hi = half;
    model.calibration_size = 0;
    model
}

fn set_band(model: &mut Model, mut residuals: Vec<f64>) {
    residuals.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - model.band_level;
    let lo = conformal_quantile(&residuals, alpha / 2.0).unwrap_or(0.0);
    let hi = conformal_quantile(&residuals, 1.0 - alpha / 2.0).unwrap_or(0.0);
    let mid = median(&residuals).unwrap_or(0.0).clamp(lo, hi);
    model.residual_lo = lo;
    model.residual_mid = mid;
    model.residual_hi = hi;
    model.calibration_size = residuals.len();
}

/// Robust scale for normalising: MAD, else mean absolute deviation, else the magnitude of the
/// centre, else 1 (constant zero series).
fn robust_scale(values: &[f64], center: f64, mad: f64) -> f64 {
    let sigma = MAD_TO_SIGMA * mad;
    if sigma.is_finite() && sigma > 0.0 {
        return sigma;
    }
    let (sum, count) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, c), v| (s + (v - center).abs(), c + 1));
    let mean_abs = if count > 0 { sum / count as f64 } else { 0.0 };
    if mean_abs.is_finite() && mean_abs > 0.0 {
        return mean_abs;
    }
    if center.is_finite() && center != 0.0 {
        return center.abs();
    }
    1.0
}

fn sanitize_width(width: f64) -> f64 {
    if width.is_finite() && width > 0.0 {
        width
    } else {
        0.0
    }
}

/// The candidates (ascending) that have two full seasons in `y` and are confirmed seasonal.
pub(crate) fn detect_periods(y: &[f64], candidates: &[usize]) -> Vec<usize> {
    let n = y.len();
    let eligible: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&p| p >= 2 && p.saturating_mul(2) <= n)
        .collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    // A ramp looks like a sawtooth to both tests (the same rise inside every cycle): remove the
    // straight line first. Slower wander is handled by the blocks of the ANOVA.
    let detrended = detrend(y);
    let y = &detrended[..];
    let reach = (n / 3).min(512);
    let proposed = if n >= 64 && eligible.iter().any(|&p| p <= reach) {
        periodogram_peaks(y, reach)
    } else {
        Vec::new()
    };
    let mut accepted: Vec<usize> = Vec::new();
    for p in eligible {
        let resolvable = p <= reach && p >= 4;
        if resolvable
            && !proposed
                .iter()
                .any(|&q| (q as f64 - p as f64).abs() <= SNAP_TOLERANCE * p as f64)
        {
            continue;
        }
        let groups = phase_groups(p, &accepted);
        if phase_anova_p_value(y, p, groups) < SEASONALITY_P_VALUE {
            accepted.push(p);
        }
    }
    accepted
}

/// `y` minus its least-squares straight line.
fn detrend(y: &[f64]) -> Vec<f64> {
    let n = y.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    let slope = if sxx > 0.0 && sxy.is_finite() {
        sxy / sxx
    } else {
        0.0
    };
    y.iter()
        .enumerate()
        .map(|(i, v)| v - mean_y - slope * (i as f64 - mean_x))
        .collect()
}

/// Periods whose periodogram power stands out from the median power.
fn periodogram_peaks(y: &[f64], max_period: usize) -> Vec<usize> {
    let detector = PeriodogramDetector::builder()
        .min_period(4)
        .max_period(max_period.max(8) as u32)
        .build();
    let periodogram = detector.periodogram(y);
    let mut powers: Vec<f64> = periodogram
        .powers
        .iter()
        .copied()
        .filter(|p| p.is_finite())
        .collect();
    let Some(median_power) = super::math::median_in_place(&mut powers) else {
        return Vec::new();
    };
    periodogram
        .periods
        .iter()
        .zip(&periodogram.powers)
        .filter(|(_, power)| **power > PERIODOGRAM_SIGNIFICANCE * median_power)
        .map(|(&period, _)| period as usize)
        .collect()
}

/// Number of phase groups for the ANOVA of period `p`: the number of shorter accepted periods
/// that fit in it (7 days in a week), else the largest divisor of `p` up to 48 (half-hour blocks
/// of a 5-minute day), else `p`.
fn phase_groups(p: usize, accepted: &[usize]) -> usize {
    if let Some(&shorter) = accepted
        .iter()
        .rev()
        .find(|&&s| s < p && p.is_multiple_of(s))
    {
        return p / shorter;
    }
    (2..=48.min(p))
        .rev()
        .find(|g| p.is_multiple_of(*g))
        .unwrap_or(p)
}

/// Randomised-block ANOVA of the most recent whole cycles of period `p`: block means of
/// `p / groups` points, cycles as blocks (removing slow level drift), phase groups as the
/// treatment. Returns the p-value of "no seasonal effect" (1 when it cannot be computed).
fn phase_anova_p_value(y: &[f64], p: usize, groups: usize) -> f64 {
    if groups < 2 || p == 0 || !p.is_multiple_of(groups) {
        return 1.0;
    }
    let cycles = y.len() / p;
    if cycles < 2 {
        return 1.0;
    }
    let block = p / groups;
    let start = y.len() - cycles * p;
    // means[c][g]: mean of block g of cycle c.
    let means: Vec<Vec<f64>> = (0..cycles)
        .map(|c| {
            (0..groups)
                .map(|g| {
                    let from = start + c * p + g * block;
                    y[from..from + block].iter().sum::<f64>() / block as f64
                })
                .collect()
        })
        .collect();
    let grand = means.iter().flatten().sum::<f64>() / (cycles * groups) as f64;
    let cycle_means: Vec<f64> = means
        .iter()
        .map(|row| row.iter().sum::<f64>() / groups as f64)
        .collect();
    let phase_means: Vec<f64> = (0..groups)
        .map(|g| means.iter().map(|row| row[g]).sum::<f64>() / cycles as f64)
        .collect();
    let ss_phase: f64 =
        phase_means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() * cycles as f64;
    let mut ss_error = 0.0;
    for (c, row) in means.iter().enumerate() {
        for (g, m) in row.iter().enumerate() {
            ss_error += (m - cycle_means[c] - phase_means[g] + grand).powi(2);
        }
    }
    let df_phase = (groups - 1) as f64;
    let df_error = ((cycles - 1) * (groups - 1)) as f64;
    if !(ss_phase.is_finite() && ss_error.is_finite()) || df_error <= 0.0 {
        return 1.0;
    }
    if ss_error <= f64::EPSILON * ss_phase.max(f64::MIN_POSITIVE) {
        // A perfectly repeating pattern (or a constant series).
        return if ss_phase > 0.0 { 0.0 } else { 1.0 };
    }
    let f = (ss_phase / df_phase) / (ss_error / df_error);
    let p_value = f_survival(f, df_phase, df_error);
    if p_value.is_nan() { 1.0 } else { p_value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Direction;

    fn noise(seed: &mut u64) -> f64 {
        // xorshift64* → sum of uniforms (approximately normal, unit variance).
        let mut acc = 0.0;
        for _ in 0..12 {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            acc += (*seed >> 11) as f64 / (1u64 << 53) as f64;
        }
        acc - 6.0
    }

    fn daily(n: usize, amplitude: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                100.0 + amplitude * phase.sin() + 3.0 * noise(&mut s)
            })
            .collect()
    }

    #[test]
    fn detects_the_daily_period_and_not_on_noise() {
        let y = daily(288 * 4, 40.0, 1);
        assert_eq!(detect_periods(&y, &[288, 2016]), vec![288]);
        let flat = daily(288 * 4, 0.0, 2);
        assert_eq!(detect_periods(&flat, &[288, 2016]), Vec::<usize>::new());
        // A random walk is not a season.
        let mut s = 3;
        let mut level = 0.0;
        let walk: Vec<f64> = (0..288 * 4)
            .map(|_| {
                level += noise(&mut s);
                level
            })
            .collect();
        assert_eq!(detect_periods(&walk, &[288]), Vec::<usize>::new());
    }

    #[test]
    fn cold_start_ladder() {
        let few = Series::new(0, 300, SeriesKind::Gauge, vec![1.0; 5]);
        assert_eq!(fit(&few).basis(), Basis::Insufficient);
        let short = Series::new(0, 300, SeriesKind::Gauge, daily(100, 10.0, 4));
        assert_eq!(fit(&short).basis(), Basis::Robust);
        let day_and_a_half = Series::new(0, 300, SeriesKind::Gauge, daily(432, 10.0, 5));
        assert_eq!(fit(&day_and_a_half).basis(), Basis::Level);
        let three_days = Series::new(0, 300, SeriesKind::Gauge, daily(864, 40.0, 6));
        let model = fit(&three_days);
        assert_eq!(model.basis(), Basis::Seasonal);
        assert_eq!(model.periods(), &[288]);
    }

    #[test]
    fn seasonal_model_scores_spikes_and_clean_points() {
        let y = daily(288 * 4, 40.0, 7);
        let history = Series::new(0, 300, SeriesKind::Gauge, y);
        let model = fit_with(&history, &FitConfig::default(), None);
        let t = model.next_secs() + 300 * 72; // a quarter day ahead: phase 72, the peak
        let expected = model.expected_at(t);
        assert!(
            (expected - 140.0).abs() < 5.0,
            "expected ≈ 140, got {expected}"
        );
        let clean = model.score(t, expected + 2.0);
        assert_eq!(clean.direction, Direction::Inside);
        assert_eq!(clean.anomaly_score, 0.0);
        let spike = model.score(t, expected + 60.0);
        assert_eq!(spike.direction, Direction::Above);
        assert!(spike.anomaly_score > 0.9, "{spike:?}");
        let drop = model.score(t, expected - 60.0);
        assert_eq!(drop.direction, Direction::Below);
        assert!(drop.band_units < -2.0);
        let missing = model.score(t, f64::NAN);
        assert_eq!(missing.direction, Direction::Missing);
        assert_eq!(missing.anomaly_score, 0.0);
    }

    #[test]
    fn constant_and_zero_series_have_a_floor() {
        for (kind, value) in [
            (SeriesKind::Gauge, 0.0),
            (SeriesKind::Count, 0.0),
            (SeriesKind::Gauge, 5.0),
        ] {
            let history = Series::new(0, 300, kind, vec![value; 2000]);
            let model = fit(&history);
            let s = model.score(model.next_secs(), value);
            assert_eq!(s.anomaly_score, 0.0, "{kind:?} {value}: {s:?}");
            assert!(s.upper - s.lower > 1e-12, "{s:?}");
        }
        let zeros = fit(&Series::new(0, 300, SeriesKind::Count, vec![0.0; 2000]));
        assert_eq!(zeros.score(zeros.next_secs(), 1.0).anomaly_score, 0.0);
        assert!(zeros.score(zeros.next_secs(), 10.0).anomaly_score > 0.9);
    }

    #[test]
    fn anova_sees_a_weekly_pattern_after_the_daily_one() {
        let mut s = 9;
        let y: Vec<f64> = (0..2016 * 2 + 300)
            .map(|i| {
                let day = (i / 288) % 7;
                let weekend = if day >= 5 { 0.4 } else { 1.0 };
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                weekend * (100.0 + 40.0 * phase.sin()) + 3.0 * noise(&mut s)
            })
            .collect();
        assert_eq!(detect_periods(&y, &[288, 2016]), vec![288, 2016]);
        let model = fit(&Series::new(0, 300, SeriesKind::Gauge, y));
        assert_eq!(model.periods(), &[288, 2016]);
    }
}
