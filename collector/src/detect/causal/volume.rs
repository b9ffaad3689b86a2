//! [`VolumeDetector`]: a per-window sum (counters: events; gauges: a level) judged by the
//! causal [`StreamingDetector`], plus the small-count test for counters judged above (or, for
//! `mailpulse detect --kind auto`, for any series while its values are whole numbers ≥ 0). The
//! count test's surprise is one more stream of the band's evidence, calibrated against its own
//! history and reported once per episode like the others, so both share one score.

use std::ops::Range;

use super::count::CountDetector;
use super::{
    Assessment, DEFAULT_BASELINE_DAYS, DEFAULT_MIN_EXCESS, DEFAULT_SCORE_THRESHOLD, DetectorKind,
    Deviation, Evidence, Judgement, Side, Verdict,
};
use crate::detect::{
    Basis, Direction, SeriesKind, Stream, StreamConfig, StreamScore, StreamingDetector,
    evidence_score,
};

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
    /// Which series get the small-count test.
    pub count_test: CountTestScope,
    /// How the band judges (its step, kind and least deviation are the ones above).
    pub band: StreamConfig,
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
            count_test: CountTestScope::default(),
            band: StreamConfig::default(),
        }
    }
}

/// Which series a [`VolumeDetector`] runs the small-count test on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountTestScope {
    /// Counters ([`SeriesKind::Count`]) whose anomalies count above the band: the collector's
    /// volume views.
    #[default]
    Counters,
    /// Any series, as long as every value so far is a whole number ≥ 0 (the first other value
    /// ends the test for good): `mailpulse detect --kind auto`.
    WhileWholeNumbers,
}

/// The band detector of one volume series, and the count test of a counter judged above.
pub struct VolumeDetector {
    band: StreamingDetector,
    /// The small-count test (see [`CountTestScope`]).
    counts: Option<CountDetector>,
    /// The test stops at the first value that is not a whole number ≥ 0.
    whole_numbers_only: bool,
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
        let tested = match config.count_test {
            CountTestScope::Counters => {
                config.kind == SeriesKind::Count && config.alert_on != Side::Below
            }
            CountTestScope::WhileWholeNumbers => true,
        };
        let counts = tested.then(|| {
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
                min_deviation: config.min_excess,
                ..config.band
            }),
            counts,
            whole_numbers_only: config.count_test == CountTestScope::WhileWholeNumbers,
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
        if self.whole_numbers_only && value.is_finite() && (value < 0.0 || value.fract() != 0.0) {
            self.counts = None;
        }
        let count = self.counts.as_mut().map(|c| c.judge(at_secs, value));
        let statistic = count.as_ref().and_then(|c| c.surprise);
        let s = self.band.push_with(at_secs, value, statistic);
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
        // The score reports an episode once; the alarm holds while its windows stay as rare as
        // the threshold asks, so an alert lasts as long as the storm (and a lasting change
        // stops alarming once the windows have taken it in: the adaptation time).
        let window_score = evidence_score(10f64.powf(-s.surprise), 1);
        let alarm = !s.learning && window_score.max(s.anomaly_score) >= self.score_threshold;
        let verdict = if !alarm {
            None
        } else if s.source == Stream::Statistic {
            count.and_then(|c| c.verdict)
        } else {
            self.band_verdict(&s, value)
        };
        Assessment {
            judgement,
            verdict,
            fleet_value,
        }
    }

    /// The band's verdict on an alarming window: on an admitted side, far enough out.
    fn band_verdict(&self, s: &StreamScore, value: f64) -> Option<Verdict> {
        let score = s.score;
        let direction = match score.direction {
            Direction::Above => Deviation::Above,
            Direction::Below => Deviation::Below,
            _ if value > score.expected => Deviation::Above,
            _ if value < score.expected => Deviation::Below,
            _ => return None,
        };
        let distance = (value - score.expected).abs();
        (self.alert_on.admits(direction) && distance >= self.min_excess).then_some(Verdict {
            detector: match s.source {
                Stream::Run => DetectorKind::LevelShift,
                _ => DetectorKind::Seasonal,
            },
            direction,
            evidence: Evidence::Band {
                basis: s.basis,
                band_units: score.band_units,
                expected: score.expected,
                lower: score.lower,
                upper: score.upper,
                surprise: s.surprise,
                stream: s.source,
            },
        })
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

    /// A sparse count: about one event an hour for four days, then a burst of 12.
    fn sparse_counts_then_a_burst(detector: &mut VolumeDetector) -> (f64, f64) {
        let mut quiet_max: f64 = 0.0;
        for i in 0..(4 * 288) {
            let events = if (i * 7919) % 12 == 0 { 1.0 } else { 0.0 };
            let score = detector.judge(i * 300, Some(events)).judgement.score;
            if i >= 288 {
                quiet_max = quiet_max.max(score);
            }
        }
        let burst = detector.judge(4 * 288 * 300, Some(12.0)).judgement.score;
        (quiet_max, burst)
    }

    #[test]
    fn whole_numbers_get_the_count_test_until_a_fraction_appears() {
        let auto = VolumeConfig {
            step_secs: Some(300),
            count_test: CountTestScope::WhileWholeNumbers,
            min_excess: 0.0,
            ..VolumeConfig::default()
        };
        let mut detector = VolumeDetector::new(auto.clone());
        assert!(detector.counts.is_some());
        let (quiet, burst) = sparse_counts_then_a_burst(&mut detector);
        assert!(quiet < 0.5, "ordinary sparse counts score {quiet}");
        assert!(burst >= 0.95, "a burst of 12 scores {burst}");
        detector.judge(4 * 288 * 300 + 300, Some(0.5));
        assert!(detector.counts.is_none(), "a fraction ends the count test");
        let mut negative = VolumeDetector::new(auto);
        negative.judge(0, Some(-1.0));
        assert!(negative.counts.is_none(), "so does a negative value");
    }

    #[test]
    fn learning_verdicts_open_nothing() {
        let learning = VolumeConfig {
            band: StreamConfig {
                learning_points: 100_000,
                ..StreamConfig::default()
            },
            ..config(SeriesKind::Count, Side::Above)
        };
        let mut detector = VolumeDetector::new(learning);
        let mut verdicts = 0;
        for i in 0..(4 * 288) {
            let events = if (i * 7919) % 12 == 0 { 1.0 } else { 0.0 };
            verdicts += usize::from(detector.judge(i * 300, Some(events)).verdict.is_some());
        }
        let burst = detector.judge(4 * 288 * 300, Some(40.0));
        assert!(
            burst.judgement.score >= 0.95,
            "scored: {}",
            burst.judgement.score
        );
        assert!(burst.verdict.is_none() && verdicts == 0, "but not an alert");
        // The same burst after the learning time is one.
        let mut learnt = VolumeDetector::new(config(SeriesKind::Count, Side::Above));
        for i in 0..(4 * 288) {
            let events = if (i * 7919) % 12 == 0 { 1.0 } else { 0.0 };
            learnt.judge(i * 300, Some(events));
        }
        let verdict = learnt
            .judge(4 * 288 * 300, Some(40.0))
            .verdict
            .expect("a burst of 40 where one an hour is usual");
        assert_eq!(verdict.direction, Deviation::Above);
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
