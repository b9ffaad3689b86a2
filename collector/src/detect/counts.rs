//! Small event counts: deferrals for one reason, bounces of one class, messages of one SASL
//! user. A seasonal band (even a calibrated one) judges them badly: at 0.02 events per window
//! the band is ±2 events wide, so a rise to one event in every window — fifty times the usual
//! rate — never leaves it. This module judges the *evidence* instead, with the count analogue of
//! [`super::ratio`]'s beta-binomial.
//!
//! # Model
//! The baseline (earlier buckets of the same key, ideally at the same time of day: the seasonal
//! history, each bucket `c` events in `w` windows) gives a Gamma(a, b) prior for the
//! per-window event rate λ:
//! - its mean `a / b` is the pooled rate `(Σ c + ½) / Σ w` (Jeffreys-style smoothing, so a
//!   baseline of zero events does not claim a rate of exactly 0);
//! - its strength `b` is the baseline's effective number of windows: the pooled `Σ w`, capped by
//!   the dispersion seen between buckets (method of moments of a gamma-Poisson mixture: the
//!   between-bucket variance of the rates beyond their Poisson variance, `v`, gives `b = λ / v`)
//!   and by [`MAX_PRIOR_WINDOWS`]. Counts that naturally come in bursts thus need more evidence.
//!
//! The p-value of `k` events in `m` windows is the posterior predictive tail `P(X ≥ k)` of the
//! negative binomial with `r = a` and success probability `b / (b + m)`, i.e. the regularised
//! incomplete beta `I_{m / (b + m)}(k, a)`: the chance of at least that many events if the
//! windows behaved like the baseline. Only the upper tail is tested; fewer events than usual is
//! the band's business.

use super::evidence_score;
use super::math::incomplete_beta;

/// Cap of the prior's effective number of windows `b`.
pub const MAX_PRIOR_WINDOWS: f64 = 1e6;

/// A Gamma prior for a per-window event rate, built from baseline buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountBaseline {
    /// Gamma shape (pseudo-events), > 0.
    pub shape: f64,
    /// Gamma rate (pseudo-windows), > 0.
    pub windows: f64,
}

/// The verdict on `events` in `windows` windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountTest {
    /// Events tested (after any clustering correction).
    pub events: f64,
    pub windows: u32,
    /// Events the baseline expects in those windows.
    pub expected: f64,
    /// `P(X ≥ events)` under the baseline (1 for 0 events).
    pub p_value: f64,
    /// `-log10(p_value)`, capped at 300.
    pub surprise: f64,
    /// Score in [0, 1]: [`super::evidence_score`] of the p-value (0.95 at p = 1e-6).
    pub anomaly_score: f64,
}

impl CountBaseline {
    /// The uninformative prior: half an event in one window.
    pub const UNINFORMATIVE: CountBaseline = CountBaseline {
        shape: 0.5,
        windows: 1.0,
    };

    /// A prior with mean `rate` per window and effective number of windows `windows` (both
    /// sanitised).
    pub fn from_rate(rate: f64, windows: f64) -> Self {
        let windows = if windows.is_finite() {
            windows.clamp(1e-3, MAX_PRIOR_WINDOWS)
        } else {
            1.0
        };
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.5 / windows
        };
        CountBaseline {
            shape: (rate * windows).max(1e-6),
            windows,
        }
    }

    /// The prior from baseline buckets `(events, windows)`; buckets with no windows or with
    /// non-finite or negative values are ignored. No usable bucket gives
    /// [`Self::UNINFORMATIVE`], under which nothing small is significant.
    pub fn from_buckets(buckets: &[(f64, f64)]) -> Self {
        let usable: Vec<(f64, f64)> = buckets
            .iter()
            .copied()
            .filter(|(c, w)| c.is_finite() && w.is_finite() && *c >= 0.0 && *w > 0.0)
            .collect();
        let events: f64 = usable.iter().map(|(c, _)| c).sum();
        let windows: f64 = usable.iter().map(|(_, w)| w).sum();
        if usable.is_empty() || windows <= 0.0 {
            return CountBaseline::UNINFORMATIVE;
        }
        let rate = (events + 0.5) / windows;
        let mut strength = windows;
        if usable.len() >= 3 {
            // Variance of the bucket rates (weighted by size) beyond what Poisson noise explains.
            let observed = usable
                .iter()
                .map(|(c, w)| w * (c / w - rate).powi(2))
                .sum::<f64>()
                / (usable.len() - 1) as f64;
            // For Poisson buckets `observed` estimates λ; a Gamma-distributed rate with
            // variance λ / b adds w̄ λ / b (E[w (c/w − λ)²] = λ + w λ / b).
            let mean_w = windows / usable.len() as f64;
            let excess = (observed - rate) / mean_w;
            if excess > 0.0 {
                strength = strength.min(rate / excess);
            }
        }
        CountBaseline::from_rate(rate, strength.max(1e-3))
    }

    /// The baseline's mean rate per window.
    pub fn rate(&self) -> f64 {
        self.shape / self.windows
    }

    /// Tests `events` in `windows` windows against this baseline.
    pub fn test(&self, events: f64, windows: u32) -> CountTest {
        count_test(self, events, windows)
    }
}

/// Tests `events` observed over `windows` windows against `baseline` (see the module docs).
/// `events` need not be whole: a count divided by its clustering factor (see
/// [`dispersion`]) is tested as that many independent events.
pub fn count_test(baseline: &CountBaseline, events: f64, windows: u32) -> CountTest {
    let events = if events.is_finite() {
        events.max(0.0)
    } else {
        0.0
    };
    let ok = |v: f64| v.is_finite() && v > 0.0;
    let b = if ok(baseline.shape) && ok(baseline.windows) {
        *baseline
    } else {
        CountBaseline::UNINFORMATIVE
    };
    let m = f64::from(windows.max(1));
    let p_value = if events <= 0.0 || windows == 0 {
        1.0
    } else {
        let tail = incomplete_beta(m / (b.windows + m), events, b.shape);
        if tail.is_nan() {
            1.0
        } else {
            tail.clamp(0.0, 1.0)
        }
    };
    let surprise = if p_value > 0.0 {
        (-p_value.log10()).clamp(0.0, 300.0)
    } else {
        300.0
    };
    CountTest {
        events,
        windows,
        expected: b.rate() * m,
        p_value,
        surprise,
        anomaly_score: evidence_score(p_value, 1),
    }
}

/// The clustering factor φ ≥ 1 of per-window counts: their variance within each bucket (so
/// the time-of-day profile does not count) over their mean, from buckets of `(events, windows,
/// Σ events²)`. Events that come in bursts — a person sending five messages in a minute, a
/// stuck message deferred at every retry — are φ times less informative than independent ones;
/// the counts are divided by φ before the test (quasi-Poisson). No usable data gives 1; at most
/// `MAX_DISPERSION`.
pub fn dispersion(buckets: &[(f64, f64, f64)]) -> f64 {
    let (mut events, mut windows, mut within, mut dof) = (0.0, 0.0, 0.0, 0.0);
    for &(c, w, sq) in buckets {
        if !(c.is_finite() && w.is_finite() && sq.is_finite() && c >= 0.0 && w >= 2.0) {
            continue;
        }
        events += c;
        windows += w;
        within += (sq - c * c / w).max(0.0);
        dof += w - 1.0;
    }
    if events <= 0.0 || dof <= 0.0 {
        return 1.0;
    }
    let phi = (within / dof) / (events / windows);
    if phi.is_finite() {
        phi.clamp(1.0, MAX_DISPERSION)
    } else {
        1.0
    }
}

/// Cap of [`dispersion`].
pub const MAX_DISPERSION: f64 = 1e3;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::math::ln_gamma;
    use proptest::prelude::*;

    /// `P(X ≥ k)` of the negative binomial by summing its pmf directly.
    fn direct_tail(k: u64, r: f64, p: f64) -> f64 {
        let ln_pmf = |x: f64| {
            ln_gamma(x + r) - ln_gamma(r) - ln_gamma(x + 1.0) + r * p.ln() + x * (1.0 - p).ln()
        };
        1.0 - (0..k).map(|x| ln_pmf(x as f64).exp()).sum::<f64>()
    }

    #[test]
    fn tail_matches_the_negative_binomial_sum() {
        let b = CountBaseline {
            shape: 2.5,
            windows: 40.0,
        };
        for k in 1..30 {
            for m in [1u32, 3, 12] {
                let p = b.windows / (b.windows + f64::from(m));
                let direct = direct_tail(k, b.shape, p);
                let fast = b.test(k as f64, m).p_value;
                assert!(
                    (direct - fast).abs() < 1e-9,
                    "k={k} m={m}: {direct} vs {fast}"
                );
            }
        }
    }

    #[test]
    fn a_rare_event_becoming_regular_is_significant_and_noise_is_not() {
        // Two weeks of same-hour buckets with about one event a day at this hour.
        let buckets: Vec<(f64, f64)> = (0..42)
            .map(|i| (if i % 3 == 0 { 1.0 } else { 0.0 }, 12.0))
            .collect();
        let b = CountBaseline::from_buckets(&buckets);
        assert!((b.rate() - (14.5 / 504.0)).abs() < 1e-9, "{}", b.rate());
        assert!(b.test(1.0, 1).anomaly_score < 0.5);
        assert!(b.test(2.0, 3).anomaly_score < 0.5);
        // One event in each of twelve windows: 35 times the usual hour.
        assert!(
            b.test(12.0, 12).anomaly_score > 0.95,
            "{:?}",
            b.test(12.0, 12)
        );
    }

    #[test]
    fn never_seen_events_need_several_to_be_news() {
        let zeros: Vec<(f64, f64)> = (0..42).map(|_| (0.0, 12.0)).collect();
        let b = CountBaseline::from_buckets(&zeros);
        assert!(b.test(1.0, 1).anomaly_score < 0.95);
        assert!(b.test(5.0, 3).anomaly_score > 0.95, "{:?}", b.test(5.0, 3));
        // Without any history nothing small is significant.
        let none = CountBaseline::from_buckets(&[]);
        assert_eq!(none, CountBaseline::UNINFORMATIVE);
        assert!(none.test(5.0, 3).anomaly_score < 0.5);
    }

    #[test]
    fn bursty_baselines_need_more_evidence() {
        let steady: Vec<(f64, f64)> = (0..42).map(|_| (12.0, 12.0)).collect();
        let bursty: Vec<(f64, f64)> = (0..42)
            .map(|i| (if i % 6 == 0 { 72.0 } else { 0.0 }, 12.0))
            .collect();
        let steady = CountBaseline::from_buckets(&steady);
        let bursty = CountBaseline::from_buckets(&bursty);
        assert!((steady.rate() - bursty.rate()).abs() < 1e-2);
        assert!(steady.test(30.0, 12).p_value < bursty.test(30.0, 12).p_value);
    }

    #[test]
    fn bursts_within_windows_raise_the_dispersion_and_the_daily_profile_does_not() {
        // Independent events: one per window by day, none by night.
        let day = (12.0, 12.0, 12.0);
        let night = (0.0, 12.0, 0.0);
        assert_eq!(dispersion(&[day, night, day, night]), 1.0);
        // The same number of events, five at a time.
        let bursty = (10.0, 12.0, 50.0);
        let phi = dispersion(&[bursty, night, bursty, night]);
        assert!(phi > 3.0, "{phi}");
        assert_eq!(dispersion(&[]), 1.0);
        assert_eq!(dispersion(&[(f64::NAN, 1.0, 2.0), (3.0, 1.0, 9.0)]), 1.0);
    }

    proptest! {
        #[test]
        fn hostile_inputs_give_probabilities(
            buckets in proptest::collection::vec((any::<f64>(), any::<f64>()), 0..20),
            events in any::<f64>(),
            windows in any::<u32>(),
        ) {
            let t = CountBaseline::from_buckets(&buckets).test(events, windows);
            prop_assert!((0.0..=1.0).contains(&t.p_value), "{t:?}");
            prop_assert!((0.0..=1.0).contains(&t.anomaly_score), "{t:?}");
        }

        #[test]
        fn more_events_are_never_less_surprising(
            rate in 0.0f64..50.0, strength in 0.1f64..1000.0, k in 1u64..200, m in 1u32..24,
        ) {
            let b = CountBaseline::from_rate(rate, strength);
            let (k, k1) = (k as f64, (k + 1) as f64);
            prop_assert!(b.test(k1, m).p_value <= b.test(k, m).p_value + 1e-12);
        }
    }
}
