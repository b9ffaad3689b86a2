//! [`ForecastDetector`]: a gauge extrapolated with intervals to a limit ("spool full in 5 h",
//! "deferred queue above 10 000 in 2 h"), refitted every few windows on the recent ones.

use std::collections::VecDeque;

use super::{Assessment, DetectorKind, Deviation, Evidence, Judgement, Verdict};
use crate::detect::{ForecastConfig, Series, SeriesKind, forecast_with, time_until_threshold};

/// How a [`ForecastDetector`] judges (named apart from [`ForecastConfig`], the forecaster's
/// own settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastDetectorConfig {
    /// Window length in seconds.
    pub step_secs: u32,
    /// The level that must not be reached.
    pub limit: ForecastLimit,
    /// Reaching the limit within this many seconds (pessimistic bound) is an anomaly.
    pub warn_within_secs: u64,
    /// Windows of history a forecast is fitted on (at least 8 are kept).
    pub history_windows: usize,
    /// Windows between two forecasts.
    pub every_windows: usize,
}

/// The limit of a forecast gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ForecastLimit {
    /// A fixed level in the gauge's units.
    Fixed(f64),
    /// This share of a capacity gauge of the same key (e.g. 0.0 of the free bytes, 0.9 of a
    /// process limit); no limit in a window without the capacity.
    ShareOfCapacity(f64),
}

/// Recent levels of a forecast gauge and the latest forecast.
pub struct ForecastDetector {
    config: ForecastDetectorConfig,
    /// (window start secs, value), newest last.
    history: VecDeque<(i64, f64)>,
    /// Windows since the latest forecast.
    since: usize,
    last: Option<Judgement>,
}

/// Fewest finite values a forecast is made from.
const FORECAST_MIN_POINTS: usize = 24;

impl ForecastDetector {
    /// A detector without history.
    pub fn new(config: ForecastDetectorConfig) -> Self {
        ForecastDetector {
            config,
            history: VecDeque::new(),
            since: 0,
            last: None,
        }
    }

    /// Judges the window at `at_secs`: `value` is the gauge (`None`: no data, a gap) and
    /// `capacity` the capacity gauge, if any. Between two forecasts the latest one stands.
    pub fn judge(&mut self, at_secs: i64, value: Option<f64>, capacity: Option<f64>) -> Assessment {
        let value = value.unwrap_or(f64::NAN);
        let config = self.config;
        let limit = match config.limit {
            ForecastLimit::Fixed(limit) => Some(limit),
            ForecastLimit::ShareOfCapacity(share) => capacity.map(|c| c * share),
        };
        self.history.push_back((at_secs, value));
        while self.history.len() > config.history_windows.max(8) {
            self.history.pop_front();
        }
        self.since += 1;
        let finite = self.history.iter().filter(|(_, v)| v.is_finite()).count();
        let due = self.since >= config.every_windows.max(1) || self.last.is_none();
        let mut verdict = None;
        if due && finite >= FORECAST_MIN_POINTS.min(config.history_windows) {
            self.since = 0;
            let start = self.history.front().map_or(at_secs, |(t, _)| *t);
            let series = Series::new(
                start,
                config.step_secs,
                SeriesKind::Gauge,
                self.history.iter().map(|(_, v)| *v).collect(),
            );
            let horizon = (config
                .warn_within_secs
                .div_ceil(u64::from(config.step_secs.max(1))) as usize)
                .clamp(1, 10_000);
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
            let warn = config.warn_within_secs.max(1) as f64;
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
                verdict = Some(Verdict {
                    detector: DetectorKind::Forecast,
                    direction: if l < forecast.last_value {
                        Deviation::Below
                    } else {
                        Deviation::Above
                    },
                    evidence: Evidence::Forecast {
                        limit: l,
                        eta_secs: e,
                        now: forecast.last_value,
                        expected: judgement.expected,
                        warn_within_secs: warn,
                    },
                });
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
        Assessment {
            judgement,
            verdict,
            fleet_value: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Free spool space falling by 1 GB a window towards 0, with the limit a share of nothing.
    #[test]
    fn a_falling_gauge_warns_before_it_reaches_the_limit() {
        let mut spool = ForecastDetector::new(ForecastDetectorConfig {
            step_secs: 300,
            limit: ForecastLimit::ShareOfCapacity(0.0),
            warn_within_secs: 6 * 3600,
            history_windows: 72,
            every_windows: 3,
        });
        let gb = 1e9;
        let mut first_warning = None;
        for w in 0..60 {
            let free = 100.0 * gb - f64::from(w) * gb;
            let judged = spool.judge(i64::from(w) * 300, Some(free), Some(500.0 * gb));
            if let Some(verdict) = judged.verdict {
                assert_eq!(verdict.direction, Deviation::Below);
                assert!(judged.judgement.eta_secs.is_some());
                first_warning.get_or_insert(w);
            }
        }
        let w = first_warning.expect("a warning before the spool is full");
        assert!((23..60).contains(&w), "first warning at window {w}");
    }

    #[test]
    fn without_the_capacity_there_is_no_limit() {
        let mut spool = ForecastDetector::new(ForecastDetectorConfig {
            step_secs: 300,
            limit: ForecastLimit::ShareOfCapacity(0.0),
            warn_within_secs: 6 * 3600,
            history_windows: 72,
            every_windows: 3,
        });
        for w in 0..40 {
            let judged = spool.judge(w * 300, Some(1e9 - w as f64 * 1e8), None);
            assert!(judged.verdict.is_none() && judged.judgement.eta_secs.is_none());
        }
    }
}
