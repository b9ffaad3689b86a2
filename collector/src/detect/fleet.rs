//! Fleet outliers: the same metric across hosts, one host bouncing while its peers do not.
//!
//! Robust z-score of every host against the fleet: `z = (x − median) / (1.4826 · MAD)`. Median
//! and MAD ignore up to half the fleet misbehaving, unlike mean and standard deviation, which
//! one extreme host inflates until it hides itself. Feed residuals (observed − each host's own
//! expected value) rather than raw values when hosts differ in size: MAD belongs on residuals.
//! DBSCAN (augurs `outlier`) was not used: its epsilon is in data units and needs tuning per
//! metric, where a robust z-score is unit-free.
//!
//! With fewer than `min_hosts` finite values nothing is judged (every score 0): the median of a
//! handful of hosts says little. When more than half the hosts share one value the MAD is 0; the
//! scale then falls back to the mean absolute deviation, then to `min_scale`, so identical hosts
//! score 0 and one different host scores high without dividing by zero.

use super::anomaly_score;
use super::math::{MAD_TO_SIGMA, median_mad};

/// Parameters of [`fleet_outliers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetConfig {
    /// Fewest hosts with a finite value for any verdict (default 5).
    pub min_hosts: usize,
    /// |robust z| above which a host is an outlier (default 3.5, Iglewicz and Hoaglin's
    /// recommendation for the modified z-score).
    pub threshold: f64,
    /// Smallest scale, in the metric's units (default 1e-9), for fleets of identical values.
    pub min_scale: f64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            min_hosts: 5,
            threshold: 3.5,
            min_scale: 1e-9,
        }
    }
}

/// The verdict on one host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetScore {
    /// Robust z-score against the fleet (0 when not judged or the value is missing).
    pub z: f64,
    /// Whether |z| exceeds the threshold.
    pub outlier: bool,
    /// Score in [0, 1]: 0 up to the threshold, then `1 − exp(−(|z| − threshold) / threshold)`.
    pub anomaly_score: f64,
}

/// Scores every value (one per host, NaN for a host without data) against the others; the
/// result has one entry per input, in order.
pub fn fleet_outliers(values: &[f64], config: &FleetConfig) -> Vec<FleetScore> {
    let unjudged = FleetScore {
        z: 0.0,
        outlier: false,
        anomaly_score: 0.0,
    };
    let finite = values.iter().filter(|v| v.is_finite()).count();
    let Some((median, mad)) = median_mad(values).filter(|_| finite >= config.min_hosts.max(2))
    else {
        return vec![unjudged; values.len()];
    };
    let mut scale = MAD_TO_SIGMA * mad;
    if !(scale.is_finite() && scale > 0.0) {
        let mean_abs = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| (v - median).abs())
            .sum::<f64>()
            / finite as f64;
        // Mean absolute deviation is about 0.8 σ for normal data.
        scale = 1.253_314 * mean_abs;
    }
    let min_scale = if config.min_scale.is_finite() && config.min_scale > 0.0 {
        config.min_scale
    } else {
        1e-9
    };
    if !(scale.is_finite() && scale >= min_scale) {
        scale = min_scale;
    }
    let threshold = if config.threshold.is_finite() && config.threshold > 0.0 {
        config.threshold
    } else {
        3.5
    };
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return unjudged;
            }
            let z = (v - median) / scale;
            let z = if z.is_finite() {
                z
            } else {
                f64::MAX.copysign(z)
            };
            let excess = (z.abs() - threshold) / threshold;
            FleetScore {
                z,
                outlier: z.abs() > threshold,
                anomaly_score: anomaly_score(excess),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_hosts_are_not_judged() {
        let scores = fleet_outliers(&[1.0, 1.0, 100.0, f64::NAN], &FleetConfig::default());
        assert!(scores.iter().all(|s| !s.outlier && s.z == 0.0));
    }

    #[test]
    fn identical_hosts_and_one_different() {
        let mut values = vec![5.0; 9];
        values.push(6.0);
        let scores = fleet_outliers(&values, &FleetConfig::default());
        assert!(scores[..9].iter().all(|s| !s.outlier));
        assert!(
            scores[9].outlier && scores[9].anomaly_score > 0.5,
            "{:?}",
            scores[9]
        );
    }
}
