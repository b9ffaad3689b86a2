//! Small numeric helpers shared by the detectors: robust location/scale, conformal quantiles,
//! gap interpolation, log-gamma, the regularised incomplete beta function and normal
//! quantiles. Everything here is total: NaN in, NaN (or a documented fallback) out, no panics.

use augurs::forecaster::transforms::interpolate::{InterpolateExt, LinearInterpolator};

/// Factor that turns a median absolute deviation into a standard deviation for normal data.
pub const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// Median of the finite values of `values`; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    median_in_place(&mut finite)
}

/// Median of `values` (all finite), reordering them; `None` when empty.
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (_, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    // The lower middle is the largest of the lower half.
    let lower = values[..mid]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    Some(lower / 2.0 + upper / 2.0)
}

/// Median and median absolute deviation of the finite values; `None` when there are none.
pub fn median_mad(values: &[f64]) -> Option<(f64, f64)> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let med = median_in_place(&mut finite)?;
    for v in &mut finite {
        *v = (*v - med).abs();
    }
    let mad = median_in_place(&mut finite)?;
    Some((med, mad))
}

/// The `q`-quantile (0..=1) of sorted finite values with the conformal finite-sample rank
/// `ceil((n + 1) q)` (clamped to `1..=n`), so a band built from the `(1-L)/2` and `(1+L)/2`
/// quantiles of `n` exchangeable residuals covers a new one with probability ≥ `L`.
pub fn conformal_quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 || !q.is_finite() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = if q >= 0.5 {
        ((n as f64 + 1.0) * q).ceil()
    } else {
        // Mirror image for the lower tail: the floor((n + 1) q)-th smallest value.
        ((n as f64 + 1.0) * q).floor()
    };
    let index = (rank as usize).clamp(1, n) - 1;
    Some(sorted[index])
}

/// Replaces non-finite values by linear interpolation between their finite neighbours (augurs
/// `LinearInterpolator`); leading and trailing gaps take the nearest finite value. Returns
/// `None` when no value is finite.
pub fn fill_gaps(values: &[f64]) -> Option<Vec<f64>> {
    let first = values.iter().copied().find(|v| v.is_finite())?;
    let last = values.iter().rev().copied().find(|v| v.is_finite())?;
    let nan_for_gaps = values
        .iter()
        .map(|&v| if v.is_finite() { v } else { f64::NAN });
    let mut filled: Vec<f64> = nan_for_gaps
        .interpolate(LinearInterpolator::new())
        .collect();
    // The interpolator leaves NaN before the first and after the last finite value.
    let lead = filled.iter().take_while(|v| v.is_nan()).count();
    for v in &mut filled[..lead] {
        *v = first;
    }
    for v in filled.iter_mut().rev().take_while(|v| v.is_nan()) {
        *v = last;
    }
    Some(filled)
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; relative error < 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if !x.is_finite() || x <= 0.0 {
        return f64::NAN;
    }
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln B(a, b)`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Regularised incomplete beta function `I_x(a, b)` (continued fraction, Lentz's method).
pub fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if !(x.is_finite() && a > 0.0 && b > 0.0) {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b)).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-14;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + even * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + even / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + odd * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + odd / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Upper-tail probability `P(F ≥ f)` of an F distribution with `(d1, d2)` degrees of freedom.
pub fn f_survival(f: f64, d1: f64, d2: f64) -> f64 {
    if f.is_nan() || d1 <= 0.0 || d2 <= 0.0 {
        return f64::NAN;
    }
    if f <= 0.0 {
        return 1.0;
    }
    if f == f64::INFINITY {
        return 0.0;
    }
    incomplete_beta(d2 / (d2 + d1 * f), d2 / 2.0, d1 / 2.0)
}

/// Quantile of the standard normal distribution (Acklam's rational approximation, relative
/// error < 1.2e-9); `p` is clamped to `(0, 1)`.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = if p.is_nan() {
        0.5
    } else {
        p.clamp(1e-300, 1.0 - 1e-16)
    };
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_non_finite_values() {
        let (med, mad) = median_mad(&[1.0, f64::NAN, 3.0, 2.0, f64::INFINITY, 10.0]).unwrap();
        assert_eq!(med, 2.5);
        assert_eq!(mad, 1.0);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn conformal_quantile_uses_the_finite_sample_rank() {
        let sorted: Vec<f64> = (1..=19).map(f64::from).collect();
        // (19 + 1) * 0.975 = 19.5 -> 20th -> clamped to the largest.
        assert_eq!(conformal_quantile(&sorted, 0.975), Some(19.0));
        // (19 + 1) * 0.025 = 0.5 -> 0 -> clamped to the smallest.
        assert_eq!(conformal_quantile(&sorted, 0.025), Some(1.0));
        assert_eq!(conformal_quantile(&sorted, 0.5), Some(10.0));
        assert_eq!(conformal_quantile(&[], 0.5), None);
    }

    #[test]
    fn gaps_are_interpolated_and_edges_held() {
        let filled = fill_gaps(&[f64::NAN, 1.0, f64::NAN, 3.0, f64::INFINITY]).unwrap();
        assert_eq!(filled, vec![1.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(fill_gaps(&[f64::NAN, f64::NAN]), None);
        assert_eq!(fill_gaps(&[]), None);
    }

    #[test]
    fn special_functions_match_known_values() {
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // I_0.5(2, 3) = 0.6875.
        assert!((incomplete_beta(0.5, 2.0, 3.0) - 0.6875).abs() < 1e-12);
        // F(6, 7) upper 1 % point is 7.19.
        assert!((f_survival(7.19, 6.0, 7.0) - 0.01).abs() < 5e-4);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-6);
    }
}
