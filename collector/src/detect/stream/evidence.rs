//! The evidence a [`StreamingDetector`](super::StreamingDetector) weighs: the local level
//! and its residual and run-mean tails, one-sided tail probabilities, and their Bonferroni
//! combination into a surprise.

use std::collections::VecDeque;

use super::{ERROR_SMOOTHING, STREAM_TESTS, Stream};
use crate::detect::tails::{TailConfig, TailWindow, Tolerance};

/// The local level on top of the model's path, and the tails of its residuals.
#[derive(Debug, Clone)]
pub(super) struct LocalLevel {
    pub(super) level: Option<f64>,
    /// Mean absolute residual (exponentially weighted).
    pub(super) error: Option<f64>,
    pub(super) residuals: TailWindow,
    pub(super) run_means: TailWindow,
    /// The last `run_points − 1` residuals, newest last.
    pub(super) recent: VecDeque<f64>,
}

impl LocalLevel {
    pub(super) fn new(tails: TailConfig) -> Self {
        LocalLevel {
            level: None,
            error: None,
            residuals: TailWindow::new(tails),
            run_means: TailWindow::new(tails),
            recent: VecDeque::new(),
        }
    }

    /// The expected value where the model's path is `path` (NaN before the first value).
    pub(super) fn expected(&self, path: f64) -> f64 {
        self.level.map_or(f64::NAN, |level| path + level)
    }

    /// Tail probabilities (on the side they fall) of `residual` and of the mean residual of the
    /// run it ends.
    pub(super) fn tail_p(
        &self,
        residual: f64,
        tolerance: Tolerance,
        run_points: usize,
    ) -> (f64, f64) {
        if !residual.is_finite() {
            return (1.0, 1.0);
        }
        let run_p = match self.run_mean(residual, run_points) {
            Some(mean) => one_sided(&self.run_means, mean, tolerance),
            None => 1.0,
        };
        (one_sided(&self.residuals, residual, tolerance), run_p)
    }

    /// Mean of the last `run_points` residuals ending with `residual`.
    pub(super) fn run_mean(&self, residual: f64, run_points: usize) -> Option<f64> {
        if run_points == 0 || self.recent.len() + 1 < run_points {
            return None;
        }
        let sum = self.recent.iter().rev().take(run_points - 1).sum::<f64>() + residual;
        let mean = sum / run_points as f64;
        mean.is_finite().then_some(mean)
    }

    /// Learns `observed` (finite) where the path is `path`: the level moves towards it by
    /// `alpha` of the residual, at most `clip` mean absolute residuals; returns the residual and
    /// the mean of the run it ends (in units of `noise`), for the windows.
    pub(super) fn learn(
        &mut self,
        (observed, path, noise): (f64, f64, f64),
        floor: f64,
        (run_points, alpha, clip): (usize, f64, f64),
    ) -> Option<(f64, Option<f64>)> {
        let Some(level) = self.level else {
            let level = observed - path;
            self.level = level.is_finite().then_some(level);
            return None;
        };
        let residual = observed - path - level;
        let standardised = residual / noise;
        if !residual.is_finite() || !standardised.is_finite() {
            return None;
        }
        let run_mean = self.run_mean(standardised, run_points);
        if run_points > 1 {
            self.recent.push_back(standardised);
            while self.recent.len() >= run_points {
                self.recent.pop_front();
            }
        }
        let error = self.error.unwrap_or(residual.abs()).max(floor);
        let bound = if clip.is_finite() && clip > 0.0 {
            clip * error
        } else {
            f64::INFINITY
        };
        let next = level + alpha * residual.clamp(-bound, bound);
        if next.is_finite() {
            self.level = Some(next);
        }
        let error = (1.0 - ERROR_SMOOTHING) * error + ERROR_SMOOTHING * residual.abs();
        if error.is_finite() {
            self.error = Some(error);
        }
        Some((standardised, run_mean))
    }

    /// Keeps the expected value where the path under it moved by `moved`.
    pub(super) fn rebase(&mut self, moved: f64) {
        if let Some(level) = self.level.as_mut() {
            *level += moved;
        }
    }
}

/// `value`, or the edge of `window`'s tail at probability `p` on its side when it lies beyond
/// it (a window without tails yet takes the value as it is).
pub(super) fn winsorised(window: &TailWindow, value: f64, p: f64, tolerance: Tolerance) -> f64 {
    let upper = window.upper_quantile(p, tolerance);
    let lower = window.lower_quantile(p, tolerance);
    if upper.is_finite() && value > upper {
        upper
    } else if lower.is_finite() && value < lower {
        lower
    } else {
        value
    }
}

/// The tail probability of `value` in `window` on the side it falls.
pub(super) fn one_sided(window: &TailWindow, value: f64, tolerance: Tolerance) -> f64 {
    window
        .upper_p(value, tolerance)
        .min(window.lower_p(value, tolerance))
}

/// One point's tail probabilities, one-sided (the side each value falls on).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tails {
    pub(super) value: f64,
    pub(super) residual: f64,
    pub(super) run: f64,
    pub(super) statistic: Option<f64>,
}

impl Tails {
    pub(super) const NONE: Tails = Tails {
        value: 1.0,
        residual: 1.0,
        run: 1.0,
        statistic: None,
    };

    /// One-sided tests: two per stream, one for the statistic.
    pub(super) fn tests(&self) -> f64 {
        STREAM_TESTS + if self.statistic.is_some() { 1.0 } else { 0.0 }
    }

    /// −log10 of the smallest p-value times the number of tests (Bonferroni), at least 0.
    pub(super) fn surprise(&self) -> f64 {
        let p = self
            .value
            .min(self.residual)
            .min(self.run)
            .min(self.statistic.unwrap_or(1.0));
        bonferroni_surprise(p, self.tests())
    }

    /// The surprise of the residual streams alone.
    pub(super) fn residual_surprise(&self) -> f64 {
        bonferroni_surprise(self.residual.min(self.run), self.tests())
    }

    /// The stream with the smallest p-value.
    pub(super) fn source(&self) -> Stream {
        let mut best = (self.value, Stream::Value);
        for (p, stream) in [
            (self.residual, Stream::Residual),
            (self.run, Stream::Run),
            (self.statistic.unwrap_or(1.0), Stream::Statistic),
        ] {
            if p < best.0 {
                best = (p, stream);
            }
        }
        best.1
    }
}

/// −log10 of `p` × `tests`, within [0, 300].
pub(super) fn bonferroni_surprise(p: f64, tests: f64) -> f64 {
    let corrected = if p.is_nan() { 1.0 } else { p * tests };
    -corrected.clamp(1e-300, 1.0).log10()
}
