//! [`VolumeDetector`]: a per-window sum (counters: events; gauges: a level) against the causal
//! seasonal band with level shifts, plus the small-count test for counters judged above.

use std::ops::Range;

use super::count::CountDetector;
use super::{
    Assessment, DEFAULT_BASELINE_DAYS, DEFAULT_MIN_EXCESS, DEFAULT_SCORE_THRESHOLD, DetectorKind,
    Deviation, Evidence, Judgement, Side, Verdict,
};
use crate::detect::{Basis, Direction, SeriesKind, StreamConfig, StreamingDetector};

/// How a [`VolumeDetector`] judges. The defaults are the collector's for a gauge whose window
/// length is learned from the timestamps (what `mailpulse detect` runs).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    /// Window length in seconds; `None`: learned from the first timestamp gaps.
    pub step_secs: Option<u32>,
    /// Counts (events per window) or levels.
    pub kind: SeriesKind,
    /// Which side of the band is an anomaly.
    pub alert_on: Side,
    /// Least distance beyond the band edge (or the expected count), in the series' units.
    pub min_excess: f64,
    /// Scores at or above this are anomalies (0..=1).
    pub score_threshold: f64,
    /// Days of hourly history the small-count test draws on.
    pub baseline_days: u32,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            step_secs: None,
            kind: SeriesKind::Gauge,
            alert_on: Side::Above,
            min_excess: DEFAULT_MIN_EXCESS,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            baseline_days: DEFAULT_BASELINE_DAYS,
        }
    }
}

/// The band detector of one volume series, and the count test of a counter judged above.
pub struct VolumeDetector {
    band: StreamingDetector,
    /// The small-count test: counters whose anomalies are above the band.
    counts: Option<CountDetector>,
    kind: SeriesKind,
    alert_on: Side,
    min_excess: f64,
    score_threshold: f64,
}

impl VolumeDetector {
    /// A detector without history.
    pub fn new(config: VolumeConfig) -> Self {
        Self::with_silent_history(config, 0..0)
    }

    /// A detector of a counter that existed, counting nothing, during `silent_secs` (Unix
    /// secs; its host reported, the series did not): the count test starts from those hours as
    /// zeros. Needs `step_secs`; without it no silent hours are assumed.
    pub fn with_silent_history(config: VolumeConfig, silent_secs: Range<i64>) -> Self {
        let counts =
            (config.kind == SeriesKind::Count && config.alert_on != Side::Below).then(|| {
                let (step_secs, silent_secs) = match config.step_secs {
                    Some(step) => (step, silent_secs),
                    None => (1, 0..0),
                };
                CountDetector::new(
                    config.baseline_days,
                    step_secs,
                    silent_secs,
                    config.min_excess,
                    config.score_threshold,
                )
            });
        VolumeDetector {
            band: StreamingDetector::new(StreamConfig {
                step_secs: config.step_secs,
                kind: config.kind,
                ..StreamConfig::default()
            }),
            counts,
            kind: config.kind,
            alert_on: config.alert_on,
            min_excess: config.min_excess,
            score_threshold: config.score_threshold,
        }
    }

    /// Judges the window at `at_secs`; `value` is `None` when no data arrived in it: 0 events
    /// for a count (a silent counter is news when mail usually flows), a gap for a level.
    pub fn judge(&mut self, at_secs: i64, value: Option<f64>) -> Assessment {
        let value = value.unwrap_or(match self.kind {
            SeriesKind::Count => 0.0,
            SeriesKind::Gauge => f64::NAN,
        });
        let mut assessment = self.judge_band(at_secs, value);
        if let Some(counts) = &mut self.counts {
            let count = counts.judge(at_secs, value);
            assessment.judgement.score = assessment.judgement.score.max(count.score);
            if assessment.verdict.is_none() {
                assessment.verdict = count.verdict;
            }
        }
        assessment
    }

    fn judge_band(&mut self, at_secs: i64, value: f64) -> Assessment {
        let s = self.band.push(at_secs, value);
        let score = s.score;
        let judgement = Judgement {
            observed: value,
            expected: score.expected,
            lower: score.lower,
            upper: score.upper,
            score: s.anomaly_score,
            eta_secs: None,
        };
        let judged = matches!(s.basis, Basis::Level | Basis::Seasonal);
        let fleet_value = (judged && value.is_finite()).then_some(score.band_units);
        let direction = match (score.direction, s.level_shift) {
            (Direction::Above, _) => Some(Deviation::Above),
            (Direction::Below, _) => Some(Deviation::Below),
            (_, Some(shift)) if shift.shift_sigmas > 0.0 => Some(Deviation::Above),
            (_, Some(_)) => Some(Deviation::Below),
            _ => None,
        };
        let excess = match direction {
            Some(Deviation::Above) => value - score.upper.max(score.expected),
            Some(Deviation::Below) => score.lower.min(score.expected) - value,
            None => 0.0,
        };
        let shift_excess = (value - score.expected).abs();
        let verdict = match direction {
            Some(d)
                if judged
                    && s.anomaly_score >= self.score_threshold
                    && self.alert_on.admits(d)
                    && excess.max(if s.level_shift.is_some() {
                        shift_excess
                    } else {
                        0.0
                    }) >= self.min_excess =>
            {
                Some(Verdict {
                    detector: if score.anomaly_score >= self.score_threshold {
                        DetectorKind::Seasonal
                    } else {
                        DetectorKind::LevelShift
                    },
                    direction: d,
                    evidence: Evidence::Band {
                        basis: s.basis,
                        band_units: score.band_units,
                        expected: score.expected,
                        lower: score.lower,
                        upper: score.upper,
                        level_shift: s.level_shift,
                    },
                })
            }
            _ => None,
        };
        Assessment {
            judgement,
            verdict,
            fleet_value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: SeriesKind, alert_on: Side) -> VolumeConfig {
        VolumeConfig {
            step_secs: Some(300),
            kind,
            alert_on,
            ..VolumeConfig::default()
        }
    }

    #[test]
    fn a_missing_window_is_zero_events_for_counts_and_a_gap_for_levels() {
        let mut counts = VolumeDetector::new(config(SeriesKind::Count, Side::Above));
        assert_eq!(counts.judge(0, None).judgement.observed, 0.0);
        let mut levels = VolumeDetector::new(config(SeriesKind::Gauge, Side::Above));
        assert!(levels.judge(0, None).judgement.observed.is_nan());
    }

    #[test]
    fn only_counters_judged_above_get_the_count_test() {
        let has_counts = |kind, side| VolumeDetector::new(config(kind, side)).counts.is_some();
        assert!(has_counts(SeriesKind::Count, Side::Above));
        assert!(has_counts(SeriesKind::Count, Side::Both));
        assert!(!has_counts(SeriesKind::Count, Side::Below));
        assert!(!has_counts(SeriesKind::Gauge, Side::Above));
    }

    /// Four days of a daily cycle, then a spike: flagged above, and not when only drops count.
    #[test]
    fn a_spike_over_a_daily_cycle_is_flagged_on_its_side_only() {
        let run = |alert_on| {
            let mut detector = VolumeDetector::new(config(SeriesKind::Gauge, alert_on));
            let mut verdicts = Vec::new();
            for i in 0..(4 * 288 + 10) {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
                let mut value = 100.0 + 50.0 * phase.sin() + 4.0 * noise;
                if i == 4 * 288 + 5 {
                    value += 400.0;
                }
                if let Some(v) = detector.judge(i * 300, Some(value)).verdict {
                    verdicts.push((i, v));
                }
            }
            verdicts
        };
        let above = run(Side::Above);
        let spike = above
            .iter()
            .find(|(i, _)| *i == 4 * 288 + 5)
            .expect("the spike is flagged");
        assert_eq!(spike.1.direction, Deviation::Above);
        assert!(
            run(Side::Below).iter().all(|(i, _)| *i != 4 * 288 + 5),
            "a spike is no anomaly where only drops count"
        );
    }
}
