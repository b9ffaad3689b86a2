//! [`RatioDetector`]: failures of attempts per window (bounces of deliveries to one domain),
//! beta-binomial against the key's seasonal baseline, so 3 of 20 and 300 of 2 000 weigh their
//! evidence.

use std::collections::VecDeque;

use super::{
    Assessment, DetectorKind, Deviation, Evidence, Judgement, MIN_RATE_FACTOR, Verdict,
    same_hour_of_earlier_day,
};
use crate::detect::{RatioBaseline, RatioTest, evidence_score};

/// How a [`RatioDetector`] judges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioConfig {
    /// Days of hourly history the baseline draws on.
    pub baseline_days: u32,
    /// Fewest failures in the tested windows for an anomaly.
    pub min_failures: u64,
    /// Scores at or above this are anomalies (0..=1).
    pub score_threshold: f64,
}

/// Hourly (failures, attempts) of one ratio series, and the newest windows.
pub struct RatioDetector {
    /// Hourly buckets, newest last: (hour start Unix secs, failures, attempts).
    hours: VecDeque<(i64, f64, f64)>,
    max_hours: usize,
    /// The newest windows (failures, attempts), newest last, at most [`POOLED_WINDOWS`].
    recent: VecDeque<(f64, f64)>,
    /// The baseline of the current hour (it draws on earlier hours only, so it holds for the
    /// whole hour).
    cached: Option<(i64, RatioBaseline)>,
    min_failures: u64,
    score_threshold: f64,
}

/// Windows pooled for the slow test (a moderate rise accumulates evidence over them).
const POOLED_WINDOWS: usize = 3;
/// Least attempts in a window (or pooled windows) for a fleet comparison of rates.
const FLEET_MIN_ATTEMPTS: f64 = 20.0;

impl RatioDetector {
    /// A detector without history.
    pub fn new(config: RatioConfig) -> Self {
        RatioDetector {
            hours: VecDeque::new(),
            max_hours: (config.baseline_days.max(1) as usize) * 24,
            recent: VecDeque::new(),
            cached: None,
            min_failures: config.min_failures,
            score_threshold: config.score_threshold,
        }
    }

    /// Judges the window at `at_secs` with `failures` of `attempts` (negative: 0). The window
    /// alone and pooled with the previous ones are tested (Bonferroni over the two); a flagged
    /// window stays out of the baseline, so a storm does not become normal.
    pub fn judge(&mut self, at_secs: i64, failures: f64, attempts: f64) -> Assessment {
        let (k, n) = (failures.max(0.0), attempts.max(0.0));
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
        let significant = test.failures >= self.min_failures
            && test.observed_rate >= expected * MIN_RATE_FACTOR
            && test.anomaly_score >= self.score_threshold;
        let judgement = Judgement {
            observed,
            expected,
            lower: 0.0,
            upper: upper_rate(&baseline, n),
            score: test.anomaly_score,
            eta_secs: None,
        };
        let fleet_value =
            (np >= FLEET_MIN_ATTEMPTS && kp >= self.min_failures as f64).then_some(kp / np);
        let verdict = significant.then_some(Verdict {
            detector: DetectorKind::Ratio,
            direction: Deviation::Above,
            evidence: Evidence::Ratio {
                failures: test.failures,
                attempts: test.total,
                rate: test.observed_rate,
                windows,
                baseline_rate: expected,
                p_value: test.p_value,
            },
        });
        if verdict.is_none() {
            self.add_to_hour(at_secs, k, n);
        }
        Assessment {
            judgement,
            verdict,
            fleet_value,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two days of 1 bounce in 100 deliveries per window, then 30 in 100.
    #[test]
    fn a_bounce_storm_is_flagged_and_kept_out_of_the_baseline() {
        let mut ratio = RatioDetector::new(RatioConfig {
            baseline_days: 14,
            min_failures: 5,
            score_threshold: 0.95,
        });
        let windows = 2 * 288;
        for w in 0..windows {
            let judged = ratio.judge(w * 300, 1.0, 100.0);
            assert!(judged.verdict.is_none(), "window {w} of a usual day");
        }
        let storm = ratio.judge(windows * 300, 30.0, 100.0);
        let verdict = storm.verdict.expect("30 % where 1 % is usual");
        assert_eq!(verdict.detector, DetectorKind::Ratio);
        assert!(storm.judgement.upper < 0.3, "{:?}", storm.judgement);
        assert_eq!(storm.fleet_value, Some((30.0 + 2.0) / 300.0));
        let newest = ratio.hours.back().expect("hourly buckets");
        assert_eq!(
            newest.0,
            47 * 3600,
            "the storm's hour is not in the baseline"
        );
    }

    #[test]
    fn no_attempts_has_no_rate_and_no_band() {
        let baseline = RatioBaseline::from_windows(&[(1, 100)]);
        assert!(upper_rate(&baseline, 0.0).is_nan());
        let mut ratio = RatioDetector::new(RatioConfig {
            baseline_days: 1,
            min_failures: 5,
            score_threshold: 0.95,
        });
        let judged = ratio.judge(0, 0.0, 0.0);
        assert!(judged.judgement.observed.is_nan() && judged.verdict.is_none());
        assert_eq!(judged.fleet_value, None);
    }
}
