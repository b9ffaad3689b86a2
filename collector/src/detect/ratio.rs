//! Small-count ratios: bounce, deferral, complaint and reject rates per destination domain, relay
//! or SASL user, judged by a beta-binomial test so that the evidence, not a fixed threshold,
//! decides: 3 bounces out of 20 is weak evidence against a 1 % baseline, 300 out of 2 000 is
//! overwhelming.
//!
//! # Model
//! The baseline (past windows of the same key, ideally at the same time of day and week: the
//! "seasonal history") gives a Beta(α, β) prior for the window's failure probability:
//! - its mean is the pooled baseline rate `(Σ failures + ½) / (Σ totals + 1)` (Jeffreys-style
//!   smoothing so a baseline of zero failures does not claim a rate of exactly 0);
//! - its strength `α + β` is the baseline's effective sample size: the pooled total, capped by the
//!   dispersion seen between baseline windows (method of moments of a beta-binomial,
//!   `ρ = (observed variance / binomial variance − 1) / (n̄ − 1)`, strength `(1 − ρ) / ρ`) and by
//!   [`MAX_PRIOR_STRENGTH`]. Rates that naturally swing from window to window thus need more
//!   evidence, and one huge baseline window cannot make the prior infinitely certain.
//!
//! The p-value of a window with `k` failures out of `n` is the posterior predictive tail
//! `P(X ≥ k)` of the beta-binomial(n, α, β): the chance of at least that many failures if the
//! window behaved like the baseline. Only the upper tail is tested: fewer failures than usual is
//! not an incident.

use super::evidence_score;
use super::math::ln_beta;

/// Cap of the prior's effective sample size `α + β`.
pub const MAX_PRIOR_STRENGTH: f64 = 1e6;

/// A Beta prior for a failure probability, built from baseline windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioBaseline {
    /// Beta α (pseudo-failures), > 0.
    pub alpha: f64,
    /// Beta β (pseudo-successes), > 0.
    pub beta: f64,
}

/// The verdict on one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioTest {
    /// Failures in the window.
    pub failures: u64,
    /// Attempts in the window.
    pub total: u64,
    /// `failures / total` (NaN when `total` is 0).
    pub observed_rate: f64,
    /// The baseline's mean rate `α / (α + β)`.
    pub expected_rate: f64,
    /// `P(X ≥ failures)` under the baseline (1 when nothing was attempted).
    pub p_value: f64,
    /// `-log10(p_value)`, capped at 300.
    pub surprise: f64,
    /// Score in [0, 1]: [`super::evidence_score`] of the p-value (0.95 at p = 1e-6).
    pub anomaly_score: f64,
}

impl RatioBaseline {
    /// A prior with mean `rate` and effective sample size `strength` (both sanitised).
    pub fn from_rate(rate: f64, strength: f64) -> Self {
        let rate = if rate.is_finite() {
            rate.clamp(1e-9, 1.0 - 1e-9)
        } else {
            0.5
        };
        let strength = if strength.is_finite() {
            strength.clamp(1e-3, MAX_PRIOR_STRENGTH)
        } else {
            1.0
        };
        RatioBaseline {
            alpha: rate * strength,
            beta: (1.0 - rate) * strength,
        }
    }

    /// The prior from baseline windows `(failures, total)`; windows with `total == 0` or
    /// `failures > total` are ignored. No usable window gives the uninformative Jeffreys prior
    /// Beta(½, ½), under which nothing is significant on small counts.
    pub fn from_windows(windows: &[(u64, u64)]) -> Self {
        let usable: Vec<(f64, f64)> = windows
            .iter()
            .filter(|(k, n)| *n > 0 && k <= n)
            .map(|&(k, n)| (k as f64, n as f64))
            .collect();
        let failures: f64 = usable.iter().map(|(k, _)| k).sum();
        let total: f64 = usable.iter().map(|(_, n)| n).sum();
        if usable.is_empty() || total <= 0.0 {
            return RatioBaseline {
                alpha: 0.5,
                beta: 0.5,
            };
        }
        let rate = (failures + 0.5) / (total + 1.0);
        let mut strength = total;
        if usable.len() >= 3 {
            // Between-window dispersion (method of moments on the window rates, weighted by size).
            let mean_n = total / usable.len() as f64;
            let observed: f64 = usable
                .iter()
                .map(|(k, n)| n * (k / n - rate).powi(2))
                .sum::<f64>()
                / (usable.len() - 1) as f64;
            let binomial = rate * (1.0 - rate);
            if binomial > 0.0 && mean_n > 1.0 {
                let rho = ((observed / binomial - 1.0) / (mean_n - 1.0)).clamp(0.0, 1.0);
                if rho > 0.0 {
                    strength = strength.min((1.0 - rho) / rho);
                }
            }
        }
        RatioBaseline::from_rate(rate, strength.max(1.0))
    }

    /// The baseline's mean failure rate.
    pub fn rate(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// Tests `failures` out of `total` against this baseline.
    pub fn test(&self, failures: u64, total: u64) -> RatioTest {
        ratio_test(self, failures, total)
    }
}

/// Tests a window of `failures` out of `total` against `baseline` (see the module docs).
/// `failures > total` is read as `failures = total`.
pub fn ratio_test(baseline: &RatioBaseline, failures: u64, total: u64) -> RatioTest {
    let failures = failures.min(total);
    let (alpha, beta) = sanitize(baseline);
    let expected_rate = alpha / (alpha + beta);
    let p_value = if total == 0 || failures == 0 {
        1.0
    } else {
        upper_tail(failures, total, alpha, beta)
    };
    let surprise = if p_value > 0.0 {
        (-p_value.log10()).clamp(0.0, 300.0)
    } else {
        300.0
    };
    let observed_rate = if total == 0 {
        f64::NAN
    } else {
        failures as f64 / total as f64
    };
    RatioTest {
        failures,
        total,
        observed_rate,
        expected_rate,
        p_value,
        surprise,
        anomaly_score: evidence_score(p_value, 1),
    }
}

fn sanitize(baseline: &RatioBaseline) -> (f64, f64) {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if ok(baseline.alpha) && ok(baseline.beta) {
        (baseline.alpha, baseline.beta)
    } else {
        (0.5, 0.5)
    }
}

/// `ln P(X = x)` of beta-binomial(n, α, β).
fn ln_pmf(x: u64, n: u64, alpha: f64, beta: f64) -> f64 {
    let (x, n) = (x as f64, n as f64);
    let ln_choose = super::math::ln_gamma(n + 1.0)
        - super::math::ln_gamma(x + 1.0)
        - super::math::ln_gamma(n - x + 1.0);
    ln_choose + ln_beta(x + alpha, n - x + beta) - ln_beta(alpha, beta)
}

/// `P(X ≥ k)` for `1 ≤ k ≤ n`, summing whichever tail is shorter from its largest term until
/// the terms no longer matter (the pmf is unimodal), so large `n` costs what the tail needs.
fn upper_tail(k: u64, n: u64, alpha: f64, beta: f64) -> f64 {
    let mode = beta_binomial_mode(n, alpha, beta);
    let tail = if k > mode {
        // Upper tail, terms decreasing from k.
        sum_terms((k..=n).map(|x| ln_pmf(x, n, alpha, beta)))
    } else {
        // 1 − P(X ≤ k − 1); terms decreasing downward from k − 1.
        1.0 - sum_terms((0..k).rev().map(|x| ln_pmf(x, n, alpha, beta)))
    };
    if tail.is_nan() {
        1.0
    } else {
        tail.clamp(0.0, 1.0)
    }
}

/// Sums `exp` of log-terms that are (eventually) decreasing, stopping once they fall below
/// 1e-17 of the running sum.
fn sum_terms(mut terms: impl Iterator<Item = f64>) -> f64 {
    let Some(first) = terms.next() else {
        return 0.0;
    };
    let mut sum = 1.0; // relative to exp(first)
    let mut previous = first;
    for t in terms {
        let relative = (t - first).exp();
        sum += relative;
        if t < previous && relative < 1e-17 * sum {
            break;
        }
        previous = t;
    }
    first.exp() * sum
}

/// Mode of beta-binomial(n, α, β), clamped to `0..=n`.
fn beta_binomial_mode(n: u64, alpha: f64, beta: f64) -> u64 {
    let raw = (n as f64 + 1.0) * (alpha - 1.0) / (alpha + beta - 2.0);
    if alpha <= 1.0 || !raw.is_finite() {
        // α ≤ 1: pmf is largest at 0 (or U-shaped: 0 is on the safe side for the upper tail).
        return 0;
    }
    (raw.floor().max(0.0) as u64).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmf_sums_to_one() {
        let total: f64 = (0..=30).map(|x| ln_pmf(x, 30, 2.0, 5.0).exp()).sum();
        assert!((total - 1.0).abs() < 1e-10, "{total}");
    }

    #[test]
    fn tail_matches_the_direct_sum_on_both_sides_of_the_mode() {
        for k in 1..=40 {
            let direct: f64 = (k..=40).map(|x| ln_pmf(x, 40, 3.0, 7.0).exp()).sum();
            let fast = upper_tail(k, 40, 3.0, 7.0);
            assert!((direct - fast).abs() < 1e-10, "k={k}: {direct} vs {fast}");
        }
    }

    #[test]
    fn no_attempts_and_no_failures_are_not_significant() {
        let b = RatioBaseline::from_rate(0.01, 10_000.0);
        assert_eq!(b.test(0, 0).p_value, 1.0);
        assert_eq!(b.test(0, 100).p_value, 1.0);
        assert!(b.test(5, 0).observed_rate.is_nan());
        let nonsense = RatioBaseline {
            alpha: f64::NAN,
            beta: -1.0,
        };
        assert!(nonsense.test(3, 4).p_value <= 1.0);
    }

    #[test]
    fn dispersed_baselines_need_more_evidence() {
        let steady: Vec<(u64, u64)> = (0..50).map(|_| (10, 1000)).collect();
        let swinging: Vec<(u64, u64)> = (0..50)
            .map(|i| if i % 2 == 0 { (0, 1000) } else { (20, 1000) })
            .collect();
        let steady = RatioBaseline::from_windows(&steady);
        let swinging = RatioBaseline::from_windows(&swinging);
        assert!((steady.rate() - swinging.rate()).abs() < 1e-3);
        assert!(steady.test(25, 1000).p_value < swinging.test(25, 1000).p_value);
    }
}
