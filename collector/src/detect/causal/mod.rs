//! Causal detectors: one state machine per judged series, fed one window at a time, each window
//! once and in time order. What the collector runs per view series and what `mailpulse detect`
//! runs on a CSV.
//!
//! - [`VolumeDetector`]: a sum or a level against the seasonal band with level shifts
//!   ([`StreamingDetector`](super::StreamingDetector)); counters judged above also get the
//!   small-count test (gamma-Poisson against the same hour of earlier days, pooled over 1, 3
//!   and 12 windows).
//! - [`RatioDetector`]: failures of attempts per window, beta-binomial against the same hours
//!   of earlier days and the last six hours.
//! - [`ForecastDetector`]: a gauge extrapolated with intervals to a limit.
//!
//! Each returns an [`Assessment`]: the band for dashboards ([`Judgement`]), a [`Verdict`] when
//! the window is an anomaly (which detector, which side, the evidence as numbers), and the value
//! a fleet comparison uses. A detector's parameters are fixed when it is made, so the window's
//! data is all a judgement takes.
//!
//! Architecture invariant: no I/O, no clock; the same windows give the same assessments.

mod count;
mod forecast;
mod ratio;
mod verdict;
mod volume;

use serde::Deserialize;

pub use forecast::{ForecastDetector, ForecastDetectorConfig, ForecastLimit};
pub use ratio::{RatioConfig, RatioDetector};
pub use verdict::{DetectorKind, Deviation, Evidence, Verdict};
pub use volume::{CountTestScope, VolumeConfig, VolumeDetector};

/// Scores at or above this are anomalies unless configured otherwise (p = 1e-6 on the
/// [`evidence_score`](super::evidence_score) scale).
pub const DEFAULT_SCORE_THRESHOLD: f64 = 0.95;
/// Days of hourly history the count and ratio baselines draw on unless configured otherwise.
pub const DEFAULT_BASELINE_DAYS: u32 = 14;
/// Least distance beyond the band edge for a volume anomaly unless configured otherwise, in the
/// series' units: a band can be narrow at night, and one message above a band of 0.4 is no
/// incident.
pub const DEFAULT_MIN_EXCESS: f64 = 3.0;

/// What a detector says about one window of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The band and score, for dashboards.
    pub judgement: Judgement,
    /// Why the window is an anomaly, if it is one.
    pub verdict: Option<Verdict>,
    /// The value one host is compared with its peers on (volume: band residual; ratio: the
    /// pooled failure rate with enough attempts); `None`: not comparable in this window.
    pub fleet_value: Option<f64>,
}

/// The band and score of one window of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The series' value in the window (a sum, a level, a rate; NaN when missing).
    pub observed: f64,
    /// What the model expected (NaN without a model).
    pub expected: f64,
    /// Lower edge of the band.
    pub lower: f64,
    /// Upper edge of the band.
    pub upper: f64,
    /// In [0, 1].
    pub score: f64,
    /// Forecasts: seconds until the limit is reached (pessimistic bound), if within the
    /// forecast horizon.
    pub eta_secs: Option<f64>,
}

/// Which side of the band counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Above the band only (failures, queue growth: fewer is good news).
    #[default]
    Above,
    /// Below only.
    Below,
    /// Either side (traffic volume: a drop to zero is an outage).
    Both,
}

impl Side {
    /// Whether a deviation to `deviation` counts on this side.
    pub fn admits(self, deviation: Deviation) -> bool {
        match self {
            Side::Above => deviation == Deviation::Above,
            Side::Below => deviation == Deviation::Below,
            Side::Both => true,
        }
    }
}

/// A rate (count or ratio) must be at least this many times the baseline's to be an anomaly.
const MIN_RATE_FACTOR: f64 = 1.5;

/// Whether an hour `age` hours back is the same hour of day ±1 h on an earlier day.
fn same_hour_of_earlier_day(age: i64) -> bool {
    let phase = (age.rem_euclid(24) + 1) % 24;
    age >= 23 && phase <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_hour_of_earlier_days_is_the_hour_and_its_neighbours() {
        let ages: Vec<i64> = (0..50).filter(|&a| same_hour_of_earlier_day(a)).collect();
        assert_eq!(ages, vec![23, 24, 25, 47, 48, 49]);
    }

    #[test]
    fn sides_admit_their_deviations() {
        assert!(Side::Above.admits(Deviation::Above) && !Side::Above.admits(Deviation::Below));
        assert!(Side::Below.admits(Deviation::Below) && !Side::Below.admits(Deviation::Above));
        assert!(Side::Both.admits(Deviation::Above) && Side::Both.admits(Deviation::Below));
    }
}
