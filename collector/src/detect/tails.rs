//! [`TailWindow`]: the extremes of a sliding window of values, and how surprising a new value is
//! against them — the calibrated tail probabilities behind the streaming detector's scores.
//!
//! # Why empirical tails
//! Residuals of real series are heavy-tailed, and the shape of the tail differs from series to
//! series (Poisson-like counts, bursty tweets, a CPU that idles at 0 % and jumps): "k σ from the
//! expected value" is one in ten thousand on one series and one in twenty on the next, so no
//! single threshold serves a fleet. The probability of a value at least this extreme *in the
//! series' own recent history* means the same on every series. Up to the `tail_points`-th most
//! extreme value of the window it is counted (the conformal rank p-value `(c + 1) / (n + 1)`,
//! with `c` the values at least as extreme); beyond it the tail is extrapolated as exponential
//! (peaks over a threshold, shape 0), its scale the mean excess of the `tail_points` most
//! extreme values over the threshold. A value within `floor` of one already seen counts as seen,
//! and the exponential scale is at least `floor`: a noise-free or quantised series, whose
//! extremes are all equal, does not turn every rounding step into an impossibility.
//!
//! # Memory
//! Only the extremes are needed, so values arrive in blocks of `block_points`, each block keeps
//! its `keep` largest and smallest values, and the window is the last `blocks` blocks (the
//! oldest leaves whole). The merged extremes of the window are kept up to date as values arrive
//! and recomputed from the blocks when a block leaves: O(`keep`) per value, a few KiB per window.
//! Counts beyond the `keep` most extreme values are not known: a value less extreme than all of
//! them is in the bulk of the window and gets p = 1.

use std::collections::VecDeque;

/// Shape of a [`TailWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailConfig {
    /// Values per block (at least 1).
    pub block_points: usize,
    /// Blocks in the window (at least 1): the window holds up to `block_points × blocks`.
    pub blocks: usize,
    /// Extremes kept per side and block (at least `tail_points`).
    pub keep: usize,
    /// Extremes the exponential tail is fitted on (at least 2).
    pub tail_points: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            block_points: 256,
            blocks: 24,
            keep: 16,
            tail_points: 10,
        }
    }
}

impl TailConfig {
    /// Values the window holds when full.
    pub fn capacity(&self) -> usize {
        self.block_points.max(1).saturating_mul(self.blocks.max(1))
    }

    fn sanitized(self) -> TailConfig {
        let tail_points = self.tail_points.max(2);
        TailConfig {
            block_points: self.block_points.max(1),
            blocks: self.blocks.max(1),
            keep: self.keep.max(tail_points),
            tail_points,
        }
    }
}

/// The extremes of the last values of one stream (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TailWindow {
    config: TailConfig,
    blocks: VecDeque<Block>,
    /// Largest values of the window, descending, at most `keep`.
    high: Vec<f64>,
    /// Smallest values of the window, ascending, at most `keep`.
    low: Vec<f64>,
    len: usize,
}

/// One block: its number of values and its extremes.
#[derive(Debug, Clone, PartialEq, Default)]
struct Block {
    len: usize,
    /// Descending.
    high: Vec<f64>,
    /// Ascending.
    low: Vec<f64>,
}

/// Fewest values before any p-value below 1 is given.
const MIN_VALUES: usize = 16;

/// Differences too small to count, in the units of the values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// A value within `slack` of one already seen counts as seen.
    pub slack: f64,
    /// Smallest scale of the extrapolated tail.
    pub floor: f64,
}

impl Tolerance {
    /// Slack and floor both `floor`.
    pub fn floor(floor: f64) -> Self {
        Tolerance {
            slack: floor,
            floor,
        }
    }

    /// The same tolerance in units `scale` times larger (a positive, finite `scale`; else
    /// unchanged).
    pub fn scaled(self, scale: f64) -> Self {
        if scale.is_finite() && scale > 0.0 {
            Tolerance {
                slack: self.slack / scale,
                floor: self.floor / scale,
            }
        } else {
            self
        }
    }

    fn sanitized(self) -> (f64, f64) {
        let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        (clean(self.slack), clean(self.floor))
    }
}

impl TailWindow {
    /// An empty window.
    pub fn new(config: TailConfig) -> Self {
        TailWindow {
            config: config.sanitized(),
            blocks: VecDeque::new(),
            high: Vec::new(),
            low: Vec::new(),
            len: 0,
        }
    }

    /// Values in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The largest value in the window.
    pub fn max(&self) -> Option<f64> {
        self.high.first().copied()
    }

    /// The smallest value in the window.
    pub fn min(&self) -> Option<f64> {
        self.low.first().copied()
    }

    /// Adds `value` (non-finite values are ignored), dropping the oldest block when the window
    /// is full.
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let keep = self.config.keep;
        if self
            .blocks
            .back()
            .is_none_or(|b| b.len >= self.config.block_points)
        {
            self.blocks.push_back(Block::default());
            if self.blocks.len() > self.config.blocks {
                if let Some(old) = self.blocks.pop_front() {
                    self.len -= old.len;
                }
                self.merge();
            }
        }
        if let Some(block) = self.blocks.back_mut() {
            block.len += 1;
            insert_descending(&mut block.high, value, keep);
            insert_ascending(&mut block.low, value, keep);
        }
        insert_descending(&mut self.high, value, keep);
        insert_ascending(&mut self.low, value, keep);
        self.len += 1;
    }

    /// Probability of a value at least as large as `value` (see the module docs); 1 while the
    /// window holds fewer than 16 values or for a non-finite `value` below +inf.
    pub fn upper_p(&self, value: f64, tolerance: Tolerance) -> f64 {
        tail_p(
            &self.high,
            self.len,
            value,
            tolerance,
            self.config.tail_points,
            1.0,
        )
    }

    /// Probability of a value at least as small as `value`.
    pub fn lower_p(&self, value: f64, tolerance: Tolerance) -> f64 {
        tail_p(
            &self.low,
            self.len,
            value,
            tolerance,
            self.config.tail_points,
            -1.0,
        )
    }

    /// The value above which [`TailWindow::upper_p`] falls below `p` (+inf without enough
    /// values).
    pub fn upper_quantile(&self, p: f64, tolerance: Tolerance) -> f64 {
        tail_quantile(
            &self.high,
            self.len,
            p,
            tolerance,
            self.config.tail_points,
            1.0,
        )
    }

    /// The value below which [`TailWindow::lower_p`] falls below `p` (−inf without enough
    /// values).
    pub fn lower_quantile(&self, p: f64, tolerance: Tolerance) -> f64 {
        tail_quantile(
            &self.low,
            self.len,
            p,
            tolerance,
            self.config.tail_points,
            -1.0,
        )
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.high.clear();
        self.low.clear();
        self.len = 0;
    }

    fn merge(&mut self) {
        let keep = self.config.keep;
        self.high.clear();
        self.low.clear();
        for block in &self.blocks {
            for &v in &block.high {
                insert_descending(&mut self.high, v, keep);
            }
            for &v in &block.low {
                insert_ascending(&mut self.low, v, keep);
            }
        }
    }
}

/// The tail p-value of `value` against `extremes` (most extreme first) of a window of `n`
/// values; `sign` 1 for the upper tail, −1 for the lower (values are mirrored).
fn tail_p(
    extremes: &[f64],
    n: usize,
    value: f64,
    tolerance: Tolerance,
    k: usize,
    sign: f64,
) -> f64 {
    if n < MIN_VALUES || extremes.len() < k || value.is_nan() {
        return 1.0;
    }
    let (slack, floor) = tolerance.sanitized();
    let v = sign * value;
    let total = (n + 1) as f64;
    // Values within the slack of `value` count as at least as extreme.
    let seen = extremes
        .iter()
        .take_while(|&&e| sign * e >= v - slack)
        .count();
    if seen >= extremes.len() && n > extremes.len() {
        // Beyond the kept extremes: in the bulk, not in the tail.
        return 1.0;
    }
    if seen >= k {
        return ((seen + 1) as f64 / total).min(1.0);
    }
    // Past the slack the tail counts in full: the slack is a dead band, not a discount.
    let (threshold, scale) = exponential_tail(extremes, k, sign, floor);
    let p = (k as f64 / total) * (-(v - floor - threshold) / scale).exp();
    if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) }
}

/// The inverse of [`tail_p`] in the extrapolated tail: the value whose p-value is `p`.
fn tail_quantile(
    extremes: &[f64],
    n: usize,
    p: f64,
    tolerance: Tolerance,
    k: usize,
    sign: f64,
) -> f64 {
    if n < MIN_VALUES || extremes.len() < k || !(p > 0.0 && p < 1.0) {
        return sign * f64::INFINITY;
    }
    let (slack, floor) = tolerance.sanitized();
    let total = (n + 1) as f64;
    let (threshold, scale) = exponential_tail(extremes, k, sign, floor);
    let excess = floor + scale * (k as f64 / (total * p)).ln().max(0.0);
    sign * (threshold + excess.max(slack))
}

/// The threshold (the `k`-th most extreme value, mirrored) and scale (mean excess over it, at
/// least `floor`) of the exponential tail.
fn exponential_tail(extremes: &[f64], k: usize, sign: f64, floor: f64) -> (f64, f64) {
    let threshold = sign * extremes[k - 1];
    let mean_excess = extremes[..k]
        .iter()
        .map(|&e| sign * e - threshold)
        .sum::<f64>()
        / k as f64;
    (threshold, mean_excess.max(floor).max(f64::MIN_POSITIVE))
}

fn insert_descending(values: &mut Vec<f64>, value: f64, keep: usize) {
    if values.len() >= keep && values.last().is_some_and(|&l| value <= l) {
        return;
    }
    let at = values.partition_point(|&v| v >= value);
    values.insert(at, value);
    values.truncate(keep);
}

fn insert_ascending(values: &mut Vec<f64>, value: f64, keep: usize) {
    if values.len() >= keep && values.last().is_some_and(|&l| value >= l) {
        return;
    }
    let at = values.partition_point(|&v| v <= value);
    values.insert(at, value);
    values.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(values: impl IntoIterator<Item = f64>, config: TailConfig) -> TailWindow {
        let mut w = TailWindow::new(config);
        for v in values {
            w.push(v);
        }
        w
    }

    #[test]
    fn ranks_inside_the_window_and_extrapolates_beyond() {
        let w = window((0..1000).map(f64::from), TailConfig::default());
        assert_eq!(w.len(), 1000);
        assert_eq!(w.max(), Some(999.0));
        assert_eq!(w.min(), Some(0.0));
        // The 15th largest: 15 values ≥ it (ranked, past the 10 the tail is fitted on).
        assert!((w.upper_p(985.0, Tolerance::floor(0.0)) - 16.0 / 1001.0).abs() < 1e-12);
        // The 5th largest: inside the fitted tail (threshold 990, mean excess 4.5).
        let expected = 10.0 / 1001.0 * (-5.0f64 / 4.5).exp();
        assert!((w.upper_p(995.0, Tolerance::floor(0.0)) - expected).abs() < 1e-12);
        // Beyond the maximum the p-value keeps falling.
        let beyond = w.upper_p(1010.0, Tolerance::floor(0.0));
        let far = w.upper_p(1100.0, Tolerance::floor(0.0));
        assert!(beyond < 10.0 / 1001.0 && far < beyond && far > 0.0);
        assert!((w.lower_p(-50.0, Tolerance::floor(0.0))) < 1e-3);
        assert_eq!(w.upper_p(f64::NAN, Tolerance::floor(0.0)), 1.0);
        assert_eq!(w.upper_p(f64::INFINITY, Tolerance::floor(0.0)), 0.0);
    }

    #[test]
    fn a_constant_window_is_not_surprised_within_its_floor() {
        let w = window(std::iter::repeat_n(45.0, 500), TailConfig::default());
        assert!(w.upper_p(45.0, Tolerance::floor(0.0)) > 0.9);
        assert!(w.upper_p(45.0 + 1e-9, Tolerance::floor(0.01)) > 0.9);
        assert!(w.upper_p(45.1, Tolerance::floor(0.01)) < 1e-3);
        assert!(w.lower_p(44.0, Tolerance::floor(0.01)) < w.lower_p(44.9, Tolerance::floor(0.01)));
    }

    #[test]
    fn the_oldest_block_leaves_and_the_extremes_follow() {
        let config = TailConfig {
            block_points: 10,
            blocks: 3,
            keep: 4,
            tail_points: 2,
        };
        let mut w = window((0..30).map(|i| if i == 3 { 1e6 } else { 1.0 }), config);
        assert_eq!(w.max(), Some(1e6));
        w.push(2.0);
        assert_eq!(w.len(), 21);
        assert_eq!(w.max(), Some(2.0));
    }

    #[test]
    fn quantiles_invert_the_extrapolated_tail() {
        let w = window((0..2000).map(|i| f64::from(i % 97)), TailConfig::default());
        // Its extremes are ties (about 20 of each value): the floor gives the tail its scale.
        let tolerance = Tolerance::floor(1.0);
        for p in [1e-4, 1e-6] {
            let q = w.upper_quantile(p, tolerance);
            assert!(q > 97.0, "{p}: {q}");
            assert!((w.upper_p(q, tolerance) - p).abs() / p < 1e-6, "{p}: {q}");
            let q = w.lower_quantile(p, tolerance);
            assert!(q < -1.0, "{p}: {q}");
            assert!((w.lower_p(q, tolerance) - p).abs() / p < 1e-6, "{p}: {q}");
        }
    }
}
