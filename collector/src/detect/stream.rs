//! [`StreamingDetector`]: causal scoring of one series, the code path shared by the collector
//! (one detector per stored series) and `mailpulse detect`.
//!
//! # Causality
//! Every point is scored with the model fitted on earlier points only, *then* added to the
//! history. Refits happen on a schedule counted in points: while the history is shorter than a
//! refit interval, after it grew by a quarter (at least 8 points: cold start, cheap robust
//! models); then every `refit_every_points` (a day of windows by default), on the last
//! `max_history_points`. The score of point t therefore never depends on a point after t, and
//! appending data never changes earlier scores.
//!
//! # Calibration in the stream
//! Each model's residuals on the points it scores are genuinely out of sample, so the detector
//! keeps the latest ones (excluding points beyond 3 half-bands: incidents must not widen the band
//! for the week after) and hands them to the next fit as its conformal calibration set: one fit
//! per refit instead of two. When the kind of model changes (robust → level → seasonal, or the
//! periods change) the old residuals do not describe the new model, so that fit holds out points
//! instead and the log starts over.
//!
//! # Outliers
//! A point more than 3 half-bands from the expected value (after any level-shift correction)
//! is stored in the history as the expected value: spikes and short drops do not leak into the
//! next models' seasonal cycles or band. The first points of a lasting change are replaced the
//! same way until the CUSUM accepts the new level; from then on they are stored as observed, so
//! a real change (a new weekend pattern, a permanent shift) is learned at the next refit.
//!
//! # Level shifts
//! A two-sided [`Cusum`] runs on the residuals standardised by the model's residual σ. On an
//! alarm the estimated shift is added to the expected value until the next refit (the refit then
//! learns the new level), so a persisting shift is reported once instead of flagging every
//! point until the next day. The alarm point scores like a point outside the band by the size
//! of the shift: a shift of one half-band scores 0.63, of two 0.86.
//!
//! # Time
//! Points map to slots of `step_secs` (given, or learned as the median of the first 8 positive
//! timestamp gaps, appending points one slot apart until then). Skipped slots are missing values.
//! A point whose slot is not after the last one (duplicate or out of order) is scored but not
//! stored.

use std::collections::VecDeque;

use super::changepoint::{Cusum, CusumConfig, LevelShift};
use super::math::median;
use super::seasonal::{Basis, FitConfig, Model, fit_keeping, fit_with};
use super::{Score, Series, SeriesKind, anomaly_score, default_periods};

/// Points a detector waits for before learning the step from timestamp gaps.
const STEP_LEARNING_GAPS: usize = 8;
/// Residuals beyond this many half-bands are not kept for calibration.
const CALIBRATION_CUTOFF: f64 = 3.0;
/// Points beyond this many half-bands are stored in the history as the expected value.
const OUTLIER_CUTOFF: f64 = 3.0;
/// Consecutive outliers on one side after which they are a new normal: stored as observed and
/// the model refitted at once.
const ACCEPT_RUN: usize = 72;

/// How a [`StreamingDetector`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Window length in seconds; `None`: learned from the first timestamp gaps.
    pub step_secs: Option<u32>,
    /// What the values are.
    pub kind: SeriesKind,
    /// How models are fitted.
    pub fit: FitConfig,
    /// Points between two scheduled refits; `None`: the shortest candidate period (a day),
    /// within 64..=5 000.
    pub refit_every_points: Option<usize>,
    /// Most points a fit sees; `None`: two seasons of the longest candidate plus a refit
    /// interval (4 320 at 5 minutes), within 512..=50 000.
    pub max_history_points: Option<usize>,
    /// Out-of-sample residuals kept for calibration; `None`: two refit intervals, at least 200.
    pub calibration_points: Option<usize>,
    /// Level-shift detector.
    pub cusum: CusumConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            step_secs: None,
            kind: SeriesKind::Gauge,
            fit: FitConfig::default(),
            refit_every_points: None,
            max_history_points: None,
            calibration_points: None,
            cusum: CusumConfig::default(),
        }
    }
}

/// The verdict on one streamed point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamScore {
    /// The point's timestamp.
    pub timestamp_secs: i64,
    /// The band verdict (expected value includes any level-shift correction).
    pub score: Score,
    /// A level shift that the CUSUM flagged at this point.
    pub level_shift: Option<LevelShift>,
    /// What the verdict rests on.
    pub basis: Basis,
    /// Combined score in [0, 1]: the larger of the band score and the level-shift score.
    pub anomaly_score: f64,
}

/// Causal detector of one series (see the module docs).
#[derive(Debug, Clone)]
pub struct StreamingDetector {
    config: StreamConfig,
    step: Option<u32>,
    gaps: Vec<i64>,
    history: VecDeque<f64>,
    last_timestamp: Option<i64>,
    model: Model,
    since_fit: usize,
    next_cold_fit: usize,
    residuals: VecDeque<f64>,
    cusum: Cusum,
    level_offset: f64,
    fits: usize,
    /// The current run of outliers on one side: (observed, observed − expected), and the side.
    outlier_run: Vec<(f64, f64)>,
    outlier_above: bool,
}

impl StreamingDetector {
    /// A detector without history.
    pub fn new(config: StreamConfig) -> Self {
        let step = config.step_secs.map(|s| s.max(1));
        let empty = Series::new(0, step.unwrap_or(1), config.kind, Vec::new());
        let model = fit_with(&empty, &config.fit, None);
        let cusum = Cusum::new(config.cusum);
        StreamingDetector {
            config,
            step,
            gaps: Vec::new(),
            history: VecDeque::new(),
            last_timestamp: None,
            model,
            since_fit: 0,
            next_cold_fit: 8,
            residuals: VecDeque::new(),
            cusum,
            level_offset: 0.0,
            fits: 0,
            outlier_run: Vec::new(),
            outlier_above: false,
        }
    }

    /// The model scoring the next point.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of fits so far.
    pub fn fits(&self) -> usize {
        self.fits
    }

    /// Points (slots, missing ones included) currently in the history.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The window length in use (`None` while it is still being learned).
    pub fn step_secs(&self) -> Option<u32> {
        self.step
    }

    /// Scores `value` observed at `timestamp_secs` with the current model, then adds it to the
    /// history and refits when the schedule says so.
    pub fn push(&mut self, timestamp_secs: i64, value: f64) -> StreamScore {
        let advance = self.advance(timestamp_secs);
        let basis = self.model.basis();
        let score = self.shifted_score(timestamp_secs, value);
        if advance == 0 {
            return StreamScore {
                timestamp_secs,
                score,
                level_shift: None,
                basis,
                anomaly_score: score.anomaly_score,
            };
        }
        self.last_timestamp = Some(timestamp_secs);

        let mut level_shift = None;
        let mut shift_score = 0.0;
        if matches!(basis, Basis::Level | Basis::Seasonal) && score.observed.is_finite() {
            let adjusted = score.observed - self.level_offset;
            let z = self.model.standardised_residual(timestamp_secs, adjusted);
            level_shift = self.cusum.update(z);
            if let Some(shift) = level_shift {
                let shift_units = shift.shift_sigmas * self.model.local_sigma(timestamp_secs);
                if shift_units.is_finite() {
                    self.level_offset += shift_units;
                }
                let half_band = (score.upper - score.lower) / 2.0;
                let in_bands = (shift_units / half_band).abs();
                shift_score = anomaly_score(if in_bands.is_finite() { in_bands } else { 0.0 });
            }
            let residual = self.model.calibration_residual(timestamp_secs, adjusted);
            if residual.is_finite() && score.band_units.abs() <= CALIBRATION_CUTOFF {
                self.residuals.push_back(residual);
                while self.residuals.len() > self.calibration_capacity() {
                    self.residuals.pop_front();
                }
            }
        }

        let capacity = self.history_capacity();
        let missing = advance.saturating_sub(1).min(capacity);
        self.history.extend(std::iter::repeat_n(f64::NAN, missing));
        // A clear outlier enters the history as what was expected, so a bounce storm does not
        // become part of next week's seasonal pattern; a lasting change is accepted through the
        // level-shift correction (points near the shifted level are stored as they are).
        // A run of outliers that lasts is a new normal (a series that was constant and now
        // moves, a level the CUSUM cannot follow because the band is all but zero): once it is
        // ACCEPT_RUN points long its points go back into the history as observed, for the next
        // fit to learn, and until then the expected value moves by the run's median deviation.
        let outlier = score.band_units.abs() > OUTLIER_CUTOFF && score.expected.is_finite();
        let above = score.band_units > 0.0;
        if !outlier {
            self.outlier_run.clear();
        } else if self.outlier_run.is_empty() || above == self.outlier_above {
            self.outlier_above = above;
            self.outlier_run
                .push((score.observed, score.observed - score.expected));
        } else {
            self.outlier_above = above;
            self.outlier_run.clear();
            self.outlier_run
                .push((score.observed, score.observed - score.expected));
        }
        let accept = self.outlier_run.len() >= ACCEPT_RUN;
        let stored = if outlier && !accept {
            score.expected
        } else {
            score.observed
        };
        self.history.push_back(stored);
        while self.history.len() > capacity {
            self.history.pop_front();
        }
        self.since_fit = self.since_fit.saturating_add(advance);
        if accept {
            self.accept_run();
        }
        self.maybe_refit(timestamp_secs);

        StreamScore {
            timestamp_secs,
            score,
            level_shift,
            basis,
            anomaly_score: score.anomaly_score.max(shift_score),
        }
    }

    /// Slots between the last point and `timestamp_secs` (0: not after it), learning the step.
    fn advance(&mut self, timestamp_secs: i64) -> usize {
        let Some(last) = self.last_timestamp else {
            return 1;
        };
        let gap = i128::from(timestamp_secs) - i128::from(last);
        match self.step {
            Some(step) => {
                let step = i128::from(step);
                let slots = (gap + step / 2).div_euclid(step);
                usize::try_from(slots.clamp(0, 1 << 40)).unwrap_or(0)
            }
            None if gap > 0 => {
                if let Ok(gap) = i64::try_from(gap) {
                    self.gaps.push(gap);
                }
                if self.gaps.len() >= STEP_LEARNING_GAPS {
                    let gaps: Vec<f64> = self.gaps.iter().map(|&g| g as f64).collect();
                    let step = median(&gaps)
                        .unwrap_or(1.0)
                        .round()
                        .clamp(1.0, f64::from(u32::MAX));
                    self.step = Some(step as u32);
                }
                1
            }
            None => 0,
        }
    }

    fn shifted_score(&self, timestamp_secs: i64, value: f64) -> Score {
        let offset = self.level_offset;
        let mut score = self
            .model
            .score(timestamp_secs, self.config.kind.clean(value) - offset);
        if offset != 0.0 && offset.is_finite() {
            score.observed += offset;
            score.expected += offset;
            score.lower += offset;
            score.upper += offset;
        }
        score
    }

    fn provisional_step(&self) -> u32 {
        self.step.unwrap_or_else(|| {
            let gaps: Vec<f64> = self.gaps.iter().map(|&g| g as f64).collect();
            median(&gaps)
                .unwrap_or(1.0)
                .round()
                .clamp(1.0, f64::from(u32::MAX)) as u32
        })
    }

    fn candidates(&self) -> Vec<usize> {
        let mut periods = self
            .config
            .fit
            .candidate_periods
            .clone()
            .unwrap_or_else(|| default_periods(self.provisional_step()));
        periods.retain(|&p| p >= 2);
        periods.sort_unstable();
        periods
    }

    fn refit_every(&self) -> usize {
        self.config
            .refit_every_points
            .unwrap_or_else(|| {
                let season = self.candidates().first().copied().unwrap_or(288);
                season.clamp(64, 5_000)
            })
            .max(1)
    }

    fn history_capacity(&self) -> usize {
        self.config
            .max_history_points
            .unwrap_or_else(|| {
                let longest = self.candidates().last().copied().unwrap_or(0);
                longest
                    .saturating_mul(2)
                    .saturating_add(self.refit_every())
                    .clamp(512, 50_000)
            })
            .max(8)
    }

    fn calibration_capacity(&self) -> usize {
        self.config
            .calibration_points
            .unwrap_or_else(|| self.refit_every().saturating_mul(2).max(200))
            .max(1)
    }

    fn maybe_refit(&mut self, last_timestamp: i64) {
        let n = self.history.len();
        let every = self.refit_every();
        let due = if n < every || self.model.basis() == Basis::Insufficient {
            n >= self.next_cold_fit
        } else {
            self.since_fit >= every
        };
        if due {
            self.refit(last_timestamp);
        }
    }

    /// Puts the observed values of the current outlier run back into the history (its points
    /// are its last finite entries), shifts the expected value by the run's median deviation
    /// and ends the run.
    fn accept_run(&mut self) {
        let mut run = std::mem::take(&mut self.outlier_run);
        let deviations: Vec<f64> = run.iter().map(|&(_, d)| d).collect();
        if let Some(shift) = median(&deviations)
            && shift.is_finite()
        {
            self.level_offset += shift;
        }
        for slot in self.history.iter_mut().rev() {
            if run.is_empty() {
                break;
            }
            if slot.is_finite()
                && let Some((observed, _)) = run.pop()
            {
                *slot = observed;
            }
        }
    }

    fn refit(&mut self, last_timestamp: i64) {
        let n = self.history.len();
        let step = self.provisional_step();
        let start = last_timestamp.saturating_sub((n as i64 - 1).saturating_mul(i64::from(step)));
        let series = Series::new(
            start,
            step,
            self.config.kind,
            self.history.iter().copied().collect(),
        );
        let residuals: Vec<f64> = self.residuals.iter().copied().collect();
        let keep = self.model.periods().to_vec();
        let mut model = fit_keeping(&series, &self.config.fit, Some(&residuals), &keep);
        let same_kind =
            model.basis() == self.model.basis() && model.periods() == self.model.periods();
        if !same_kind {
            // The logged residuals belong to another kind of model: hold out points instead.
            self.residuals.clear();
            if model.calibration_size() > 0 {
                model = fit_keeping(&series, &self.config.fit, None, &keep);
            }
        }
        self.model = model;
        self.fits += 1;
        self.since_fit = 0;
        self.level_offset = 0.0;
        self.next_cold_fit = n + (n / 4).max(8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_step_and_fills_gaps() {
        let mut d = StreamingDetector::new(StreamConfig::default());
        for i in 0..10 {
            d.push(i * 300, 1.0);
        }
        assert_eq!(d.step_secs(), Some(300));
        assert_eq!(d.history_len(), 10);
        d.push(15 * 300, 1.0);
        assert_eq!(d.history_len(), 16);
        // A duplicate is scored, not stored.
        let s = d.push(15 * 300, 1.0);
        assert_eq!(d.history_len(), 16);
        assert_eq!(s.timestamp_secs, 4500);
    }

    #[test]
    fn a_lasting_new_level_of_a_constant_series_becomes_normal() {
        let mut d = StreamingDetector::new(StreamConfig {
            step_secs: Some(300),
            ..StreamConfig::default()
        });
        let mut t = 0;
        let mut push = |d: &mut StreamingDetector, v: f64| {
            t += 300;
            d.push(t, v)
        };
        for _ in 0..600 {
            push(&mut d, 0.0);
        }
        // A short burst is flagged and not learned.
        for _ in 0..6 {
            assert!(push(&mut d, 15.0).anomaly_score > 0.9);
        }
        assert!(push(&mut d, 0.0).anomaly_score < 0.5);
        // A lasting level is flagged for ACCEPT_RUN points, then it is expected.
        let flagged = (0..ACCEPT_RUN + 10)
            .map(|_| push(&mut d, 15.0).score)
            .filter(|s| s.anomaly_score > 0.9 && (s.observed - s.expected).abs() > 1.0)
            .count();
        assert_eq!(flagged, ACCEPT_RUN);
        let after = push(&mut d, 15.0).score;
        assert!((after.expected - 15.0).abs() < 1.0, "{after:?}");
    }

    #[test]
    fn huge_timestamp_jumps_are_bounded_by_the_history() {
        let mut d = StreamingDetector::new(StreamConfig {
            step_secs: Some(60),
            ..StreamConfig::default()
        });
        d.push(0, 1.0);
        d.push(i64::MAX, 2.0);
        assert!(d.history_len() <= 50_000);
        d.push(i64::MIN, 3.0);
    }
}
