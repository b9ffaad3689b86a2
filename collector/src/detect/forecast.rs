//! Capacity forecasting: queue size, message volume, spool disk use ahead with intervals, and
//! "disk full in 6 h" / "queue exceeds N in 2 h" from them.
//!
//! The series is cleaned, centred and scaled like for [`fit`](super::fit), gaps interpolated,
//! seasonal periods detected the same way; then augurs MSTL (or, without a period, ETS alone)
//! with AutoETS restricted to additive errors and an *undamped* trend (`AZN`, damped = false:
//! ANN or AAN by AICc). Capacity questions are about extrapolating a ramp: a damped trend
//! flattens out and would promise that the disk never fills. Intervals are augurs' ETS intervals
//! (plus the seasonal cycle) at the configured level; they are known to be optimistic out of
//! sample, which is why [`time_until_threshold`] reads the pessimistic bound.
//!
//! Too little data (fewer than 8 finite values) gives a forecast without points; a series where
//! ETS finds no model (a constant one) gets a flat forecast at the smoothed level.

use std::time::Duration;

use augurs::ets::AutoETS;
use augurs::mstl::{FittedTrendModel, MSTLModel, TrendModel};
use augurs::prelude::*;

use super::math::{fill_gaps, median_mad};
use super::seasonal::detect_periods;
use super::trend::SmoothedLevel;
use super::{Series, default_periods};

/// How a forecast is made.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastConfig {
    /// Coverage of the intervals (default 0.95).
    pub level: f64,
    /// Candidate seasonal periods in points; `None`: daily and weekly for the step.
    pub candidate_periods: Option<Vec<usize>>,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            level: 0.95,
            candidate_periods: None,
        }
    }
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPoint {
    /// Unix time of the window.
    pub timestamp_secs: i64,
    /// Point forecast.
    pub point: f64,
    /// Lower bound of the interval.
    pub lower: f64,
    /// Upper bound of the interval.
    pub upper: f64,
}

/// A forecast of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Unix time of the last window of the history.
    pub last_timestamp_secs: i64,
    /// Last finite value of the history (NaN when there is none).
    pub last_value: f64,
    /// Coverage of the intervals.
    pub level: f64,
    /// Seasonal periods used, in points.
    pub periods: Vec<usize>,
    /// One entry per window ahead (empty when there was too little data).
    pub points: Vec<ForecastPoint>,
}

/// Which part of a forecast a threshold is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The point forecast.
    Point,
    /// The lower bound (pessimistic for falling series: free space, capacity left).
    Lower,
    /// The upper bound (pessimistic for rising series: disk use, queue size).
    Upper,
}

/// Forecasts `horizon` windows of `series` with the default configuration.
pub fn forecast(series: &Series, horizon: usize) -> Forecast {
    forecast_with(series, horizon, &ForecastConfig::default())
}

/// Forecasts `horizon` windows of `series`.
pub fn forecast_with(series: &Series, horizon: usize, config: &ForecastConfig) -> Forecast {
    let level = if config.level.is_finite() {
        config.level.clamp(0.5, 0.9999)
    } else {
        0.95
    };
    let raw = series.cleaned();
    let step = series.step();
    let n = raw.len();
    let last_timestamp_secs = series
        .start_secs
        .saturating_add((n.saturating_sub(1) as i64).saturating_mul(i64::from(step)));
    let mut out = Forecast {
        last_timestamp_secs,
        last_value: raw
            .iter()
            .rev()
            .copied()
            .find(|v| v.is_finite())
            .unwrap_or(f64::NAN),
        level,
        periods: Vec::new(),
        points: Vec::new(),
    };
    let finite = raw.iter().filter(|v| v.is_finite()).count();
    let horizon = horizon.min(1 << 20);
    let Some((center, mad)) = median_mad(&raw) else {
        return out;
    };
    if finite < 8 || horizon == 0 {
        return out;
    }
    // Scale by the spread of the values, not of their changes: a ramp must stay well within f32.
    let scale = {
        let s = 1.482_6 * mad;
        if s.is_finite() && s > 0.0 {
            s
        } else if center != 0.0 && center.is_finite() {
            center.abs()
        } else {
            1.0
        }
    };
    let z: Vec<f64> = raw
        .iter()
        .map(|&v| ((v - center) / scale).clamp(-1e9, 1e9))
        .collect();
    let Some(filled) = fill_gaps(&z) else {
        return out;
    };
    let candidates = config
        .candidate_periods
        .clone()
        .unwrap_or_else(|| default_periods(step));
    let periods = detect_periods(&filled, &candidates);
    let Some((points, used)) = forecast_scaled(&filled, &periods, horizon, level) else {
        return out;
    };
    out.periods = used;
    out.points = points
        .into_iter()
        .enumerate()
        .map(|(k, (p, lo, hi))| ForecastPoint {
            timestamp_secs: last_timestamp_secs
                .saturating_add(((k as i64) + 1).saturating_mul(i64::from(step))),
            point: center + scale * p,
            lower: center + scale * lo,
            upper: center + scale * hi,
        })
        .collect();
    out
}

type Triple = (f64, f64, f64);

fn forecast_scaled(
    y: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
) -> Option<(Vec<Triple>, Vec<usize>)> {
    let ets = || {
        AutoETS::new(1, "AZN")
            .and_then(|m| m.damped(false))
            .map(AutoETS::into_trend_model)
    };
    if !periods.is_empty()
        && let Ok(trend) = ets()
        && let Ok(fitted) = MSTLModel::new(periods.to_vec(), trend).fit(y)
        && let Ok(f) = fitted.predict(horizon, level)
        && let Some(triples) = triples(&f, horizon)
    {
        return Some((triples, periods.to_vec()));
    }
    if let Ok(trend) = ets()
        && let Ok(fitted) = trend.fit(y)
        && let Ok(f) = fitted.predict(horizon, Some(level))
        && let Some(triples) = triples(&f, horizon)
    {
        return Some((triples, Vec::new()));
    }
    let fitted = SmoothedLevel::fit(y, horizon).ok()?;
    let f = fitted.predict(horizon, Some(level)).ok()?;
    triples(&f, horizon).map(|t| (t, Vec::new()))
}

fn triples(f: &augurs::Forecast, horizon: usize) -> Option<Vec<Triple>> {
    let intervals = f.intervals.as_ref()?;
    if f.point.len() < horizon || intervals.lower.len() < horizon || intervals.upper.len() < horizon
    {
        return None;
    }
    let out: Vec<Triple> = (0..horizon)
        .map(|k| {
            let (p, lo, hi) = (f.point[k], intervals.lower[k], intervals.upper[k]);
            (p, lo.min(p), hi.max(p))
        })
        .collect();
    out.iter()
        .all(|(p, lo, hi)| p.is_finite() && lo.is_finite() && hi.is_finite())
        .then_some(out)
}

/// Time from the end of the history until the series reaches `threshold`, reading the
/// pessimistic bound: the upper bound when the threshold is above the last value (disk use,
/// queue size rising to a limit), the lower bound when it is below (free space falling).
/// `Some(0)` when the last value is already at the threshold; `None` when the forecast does not
/// reach it within its horizon (or there is no forecast).
pub fn time_until_threshold(forecast: &Forecast, threshold: f64) -> Option<Duration> {
    let bound = if threshold >= forecast.last_value {
        Bound::Upper
    } else {
        Bound::Lower
    };
    time_until_threshold_with(forecast, threshold, bound)
}

/// Like [`time_until_threshold`] with an explicit bound: the first time the chosen bound
/// reaches `threshold` moving away from the last value, linearly interpolated between windows.
pub fn time_until_threshold_with(
    forecast: &Forecast,
    threshold: f64,
    bound: Bound,
) -> Option<Duration> {
    let last = forecast.last_value;
    if !(threshold.is_finite() && last.is_finite()) {
        return None;
    }
    if threshold == last {
        return Some(Duration::ZERO);
    }
    let rising = threshold > last;
    let reached = |v: f64| {
        if rising {
            v >= threshold
        } else {
            v <= threshold
        }
    };
    let mut previous = (forecast.last_timestamp_secs, last);
    for p in &forecast.points {
        let value = match bound {
            Bound::Point => p.point,
            Bound::Lower => p.lower,
            Bound::Upper => p.upper,
        };
        if reached(value) {
            let (t0, v0) = previous;
            let span = (p.timestamp_secs - t0) as f64;
            let fraction = if (value - v0).abs() > 0.0 && !reached(v0) {
                ((threshold - v0) / (value - v0)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let at = t0 as f64 + fraction * span;
            let secs = (at - forecast.last_timestamp_secs as f64).max(0.0);
            return Some(Duration::from_secs_f64(secs));
        }
        previous = (p.timestamp_secs, value);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::SeriesKind;
    use super::*;

    #[test]
    fn too_little_data_gives_no_points() {
        let f = forecast(&Series::new(0, 60, SeriesKind::Gauge, vec![1.0, 2.0]), 10);
        assert!(f.points.is_empty());
        assert_eq!(time_until_threshold(&f, 5.0), None);
        let f = forecast(&Series::new(0, 60, SeriesKind::Gauge, vec![]), 10);
        assert!(f.points.is_empty());
    }

    #[test]
    fn constant_series_never_reach_another_value() {
        let f = forecast(&Series::new(0, 60, SeriesKind::Gauge, vec![3.0; 200]), 50);
        assert_eq!(f.points.len(), 50);
        assert_eq!(time_until_threshold(&f, 3.0), Some(Duration::ZERO));
        assert_eq!(time_until_threshold_with(&f, 10.0, Bound::Point), None);
    }

    #[test]
    fn interpolates_between_windows() {
        let f = Forecast {
            last_timestamp_secs: 1000,
            last_value: 0.0,
            level: 0.95,
            periods: Vec::new(),
            points: vec![
                ForecastPoint {
                    timestamp_secs: 1060,
                    point: 1.0,
                    lower: 0.5,
                    upper: 2.0,
                },
                ForecastPoint {
                    timestamp_secs: 1120,
                    point: 2.0,
                    lower: 1.0,
                    upper: 4.0,
                },
            ],
        };
        assert_eq!(
            time_until_threshold_with(&f, 1.5, Bound::Point),
            Some(Duration::from_secs(90))
        );
        assert_eq!(time_until_threshold(&f, 3.0), Some(Duration::from_secs(90)));
        assert_eq!(time_until_threshold(&f, f64::NAN), None);
    }
}
