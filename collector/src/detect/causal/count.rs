//! [`CountDetector`]: the small-count test of a counter (gamma-Poisson,
//! [`crate::detect::counts`]) against the same hour ±1 h of earlier days. It catches what a
//! band cannot: a reason for deferrals that is normally seen once a day turning up in every
//! window. Part of [`super::VolumeDetector`] for counters judged above.

use std::collections::VecDeque;
use std::ops::Range;

use super::{
    DetectorKind, Deviation, Evidence, MIN_RATE_FACTOR, Verdict, same_hour_of_earlier_day,
};
use crate::detect::{CountBaseline, CountTest, dispersion, evidence_score};

/// Hourly event counts of one counter series, and its newest windows.
pub(super) struct CountDetector {
    /// Hourly buckets, newest last.
    hours: VecDeque<CountBucket>,
    max_hours: usize,
    /// The newest windows' events, newest last, at most the longest pool.
    recent: VecDeque<f64>,
    /// The baseline and clustering factor of the current hour (earlier hours only, so they
    /// hold for the whole hour).
    cached: Option<(i64, Option<(CountBaseline, f64)>)>,
    /// Consecutive flagged windows.
    flagged_run: usize,
    min_excess: f64,
    score_threshold: f64,
}

/// What the count test says about one window.
pub(super) struct CountScore {
    /// −log10 of the smallest p-value, times the pools (Bonferroni), of the pools with a
    /// material excess (0 without one); `None` without a baseline.
    pub(super) surprise: Option<f64>,
    pub(super) verdict: Option<Verdict>,
}

/// One hour of a counter series.
#[derive(Debug, Clone, Copy)]
struct CountBucket {
    /// Hour start, Unix secs.
    start: i64,
    events: f64,
    windows: f64,
    /// Σ events² over its windows (for the clustering factor).
    squares: f64,
}

/// Windows pooled by the count test: the window alone, a quarter of an hour, an hour (at
/// 5-minute windows). Longer pools catch a moderate rise; Bonferroni over the three.
const POOLS: [usize; 3] = [1, 3, 12];
/// Flagged windows in a row after which a count is a new normal and enters the baseline.
const COUNT_ACCEPT_RUN: usize = 72;
/// Fewest same-hour buckets (one earlier day: the hour and its neighbours) a count baseline
/// needs.
const MIN_COUNT_BUCKETS: usize = 3;

impl CountDetector {
    /// A test drawing on `baseline_days` of hours, anomalies at `score_threshold` and
    /// `min_excess` events beyond the expected count. The hours of `silent_secs` (Unix secs)
    /// start as buckets of 0 events in windows of `step_secs`: a counter that did not exist
    /// while its host reported counted nothing.
    pub(super) fn new(
        baseline_days: u32,
        step_secs: u32,
        silent_secs: Range<i64>,
        min_excess: f64,
        score_threshold: f64,
    ) -> Self {
        let max_hours = (baseline_days.max(1) as usize) * 24;
        let per_hour = (3600.0 / f64::from(step_secs.max(1))).max(1.0);
        let (origin, now) = (
            silent_secs.start.div_euclid(3600),
            silent_secs.end.div_euclid(3600),
        );
        let first = origin.max(now - max_hours as i64);
        let hours = (first..now)
            .map(|h| CountBucket {
                start: h * 3600,
                events: 0.0,
                windows: per_hour,
                squares: 0.0,
            })
            .collect();
        CountDetector {
            hours,
            max_hours,
            recent: VecDeque::new(),
            cached: None,
            flagged_run: 0,
            min_excess,
            score_threshold,
        }
    }

    /// Judges the window at `at_secs` with `value` events (non-finite: 0).
    pub(super) fn judge(&mut self, at_secs: i64, value: f64) -> CountScore {
        let events = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let judged = self.baseline(at_secs);
        self.recent.push_back(events);
        while self.recent.len() > POOLS[POOLS.len() - 1] {
            self.recent.pop_front();
        }
        let (baseline, phi) = judged.unwrap_or((CountBaseline::UNINFORMATIVE, 1.0));
        // Without a baseline nothing is tested. Only a material excess is evidence: stray
        // events in a quiet hour must not teach the band that large count surprises are usual.
        let pools: &[usize] = if judged.is_some() { &POOLS } else { &[] };
        let mut best: Option<CountTest> = None;
        for &pool in pools {
            if self.recent.len() < pool {
                break;
            }
            let sum: f64 = self.recent.iter().rev().take(pool).sum();
            let test = baseline.test(sum / phi, pool as u32);
            let test = CountTest {
                events: sum,
                expected: test.expected * phi,
                anomaly_score: evidence_score(test.p_value, POOLS.len()),
                ..test
            };
            let material = test.events - test.expected >= self.min_excess
                && test.events >= MIN_RATE_FACTOR * test.expected;
            if material && best.is_none_or(|b| test.p_value < b.p_value) {
                best = Some(test);
            }
        }
        let surprise = judged.map(|_| {
            best.map_or(0.0, |t| {
                let corrected = (t.p_value * POOLS.len() as f64).clamp(1e-300, 1.0);
                if corrected.is_nan() {
                    0.0
                } else {
                    -corrected.log10()
                }
            })
        });
        let verdict = best
            .filter(|t| t.anomaly_score >= self.score_threshold)
            .map(|t| Verdict {
                detector: DetectorKind::Counts,
                direction: Deviation::Above,
                evidence: Evidence::Counts {
                    events: t.events,
                    windows: t.windows,
                    expected: t.expected,
                    p_value: t.p_value,
                    clustering_factor: phi,
                },
            });
        // A flagged window enters the baseline as a usual one (a storm must not become normal
        // tomorrow), unless the change has lasted COUNT_ACCEPT_RUN windows.
        self.flagged_run = if verdict.is_some() {
            self.flagged_run + 1
        } else {
            0
        };
        let stored = if verdict.is_some() && self.flagged_run < COUNT_ACCEPT_RUN {
            (baseline.rate() * phi).min(events)
        } else {
            events
        };
        self.add_to_hour(at_secs, stored);
        CountScore { surprise, verdict }
    }

    /// The baseline of the hour of `at_secs` (same hour ±1 h of earlier days, counts divided
    /// by the clustering factor) and that factor (over all earlier hours); `None` before the
    /// first day of history: without a baseline nothing is judged.
    fn baseline(&mut self, at_secs: i64) -> Option<(CountBaseline, f64)> {
        let hour = at_secs.div_euclid(3600);
        if let Some((cached_hour, cached)) = self.cached
            && cached_hour == hour
        {
            return cached;
        }
        let all: Vec<(f64, f64, f64)> = self
            .hours
            .iter()
            .filter(|b| b.start.div_euclid(3600) < hour)
            .map(|b| (b.events, b.windows, b.squares))
            .collect();
        let phi = dispersion(&all);
        let buckets: Vec<(f64, f64)> = self
            .hours
            .iter()
            .filter(|b| same_hour_of_earlier_day(hour - b.start.div_euclid(3600)))
            .map(|b| (b.events / phi, b.windows))
            .collect();
        let baseline = (buckets.len() >= MIN_COUNT_BUCKETS)
            .then(|| (CountBaseline::from_buckets(&buckets), phi));
        self.cached = Some((hour, baseline));
        baseline
    }

    fn add_to_hour(&mut self, at_secs: i64, events: f64) {
        let hour = at_secs.div_euclid(3600) * 3600;
        match self.hours.back_mut() {
            Some(last) if last.start == hour => {
                last.events += events;
                last.windows += 1.0;
                last.squares += events * events;
            }
            _ => {
                self.hours.push_back(CountBucket {
                    start: hour,
                    events,
                    windows: 1.0,
                    squares: events * events,
                });
                while self.hours.len() > self.max_hours {
                    self.hours.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of one event an hour at 5-minute windows, then one window of 30.
    #[test]
    fn a_burst_over_a_quiet_day_is_flagged_above() {
        let mut counts = CountDetector::new(14, 300, 0..0, 3.0, 0.95);
        let windows = 26 * 12;
        for w in 0..windows {
            let events = if w % 12 == 0 { 1.0 } else { 0.0 };
            let judged = counts.judge(w * 300, events);
            assert!(judged.verdict.is_none(), "window {w} of a quiet day");
            assert!(
                judged.surprise.unwrap_or(0.0) == 0.0,
                "window {w}: one event is no material excess"
            );
        }
        let burst = counts.judge(windows * 300, 30.0);
        let verdict = burst
            .verdict
            .expect("a burst of 30 where 1 an hour is usual");
        assert_eq!(verdict.detector, DetectorKind::Counts);
        assert_eq!(verdict.direction, Deviation::Above);
        let surprise = burst.surprise.expect("a baseline after a day");
        assert!(surprise >= 6.0, "{surprise}");
    }

    #[test]
    fn silent_hours_start_as_zero_buckets() {
        let counts = CountDetector::new(1, 300, 0..(30 * 3600), 3.0, 0.95);
        assert_eq!(counts.hours.len(), 24, "capped at the baseline's hours");
        assert!(
            counts
                .hours
                .iter()
                .all(|b| b.events == 0.0 && b.windows == 12.0)
        );
        let none = CountDetector::new(14, 300, 7200..7200, 3.0, 0.95);
        assert!(none.hours.is_empty());
    }
}
