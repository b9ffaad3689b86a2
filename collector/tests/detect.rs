//! Detection quality on synthetic mail-like series (seeded): injected incidents are found with
//! high scores and short delays, clean data stays quiet, calibrated bands cover what they
//! claim; plus the small-count, changepoint, fleet and forecast detectors, and "never panics".
//!
//! The measured numbers are printed (`cargo test -p mailpulse-collector --test detect --
//! --nocapture`).

use std::time::Duration;

use mailpulse_collector::detect::{
    Basis, Bound, Cusum, CusumConfig, Direction, FitConfig, FleetConfig, RatioBaseline, Series,
    SeriesKind, StreamConfig, StreamingDetector, fit, fit_with, fleet_outliers, forecast,
    time_until_threshold, time_until_threshold_with,
};
use proptest::prelude::*;

const STEP: u32 = 300;
const DAY: usize = 288;
const WEEK: usize = 7 * DAY;
/// Monday 2024-01-01 00:00 UTC.
const START: i64 = 1_704_067_200;

/// Seeded xorshift64* with normal deviates (Box–Muller).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Expected messages per 5-minute window: a business-day bump and quieter weekends.
fn mail_level(i: usize) -> f64 {
    let hour = (i % DAY) as f64 / 12.0;
    let weekday = (i / DAY) % 7;
    let business = (-((hour - 13.0) / 3.5).powi(2)).exp();
    let evening = 0.4 * (-((hour - 20.0) / 2.0).powi(2)).exp();
    let base = 40.0 + 160.0 * business + 60.0 * evening;
    if weekday >= 5 { 0.45 * base } else { base }
}

/// Clean series: level plus noise of about `sqrt(level) + 3` (overdispersed counts).
fn mail_series(points: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..points)
        .map(|i| {
            let level = mail_level(i);
            (level + (level.sqrt() + 3.0) * rng.normal()).max(0.0)
        })
        .collect()
}

fn sigma_at(i: usize) -> f64 {
    mail_level(i).sqrt() + 3.0
}

/// An injected incident: affected points `start..end`, with the detection it must get.
struct Incident {
    name: &'static str,
    start: usize,
    end: usize,
    /// Most windows from the start until a score ≥ ALERT.
    max_delay: usize,
    /// Least peak score inside the incident.
    min_peak: f64,
}

fn inject(values: &mut [f64]) -> Vec<Incident> {
    let mut incidents = Vec::new();
    // Bounce storm at 3 a.m. on a Wednesday: a spike of 10 sigma for 3 windows.
    let s = 2 * WEEK + 2 * DAY + 36;
    for (k, v) in values[s..s + 3].iter_mut().enumerate() {
        *v += 10.0 * sigma_at(s + k);
    }
    incidents.push(Incident {
        name: "night spike (+10 sigma, 15 min)",
        start: s,
        end: s + 3,
        max_delay: 0,
        min_peak: 0.8,
    });
    // Traffic drop at Thursday noon (a relay dies): 20 % of normal for 2 hours.
    let s = 2 * WEEK + 3 * DAY + 144;
    for v in &mut values[s..s + 24] {
        *v *= 0.2;
    }
    incidents.push(Incident {
        name: "midday drop (to 20 %, 2 h)",
        start: s,
        end: s + 24,
        max_delay: 0,
        min_peak: 0.9,
    });
    // Moderate level shift on Monday 10:00: +3 sigma of the local noise for a day: inside the
    // band point by point (p of about 1e-3 each), found by the run of residuals. The local level
    // takes most of a shift in within a few windows, so the run needs its 16 windows and more:
    // a weak shift is told late, not never.
    let s = 3 * WEEK + 120;
    for (k, v) in values[s..s + DAY].iter_mut().enumerate() {
        *v += 3.0 * sigma_at(s + k);
    }
    incidents.push(Incident {
        name: "level shift (+3 sigma, 1 day)",
        start: s,
        end: s + DAY,
        max_delay: 30,
        min_peak: 0.5,
    });
    // Volume doubles on Thursday 09:00 for a day (a compromised account).
    let s = 3 * WEEK + 3 * DAY + 108;
    for (k, v) in values[s..s + DAY].iter_mut().enumerate() {
        *v += mail_level(s + k);
    }
    incidents.push(Incident {
        name: "volume doubles (1 day)",
        start: s,
        end: s + DAY,
        max_delay: 12,
        min_peak: 0.5,
    });
    incidents
}

struct Run {
    scores: Vec<f64>,
    directions: Vec<Direction>,
    bases: Vec<Basis>,
    /// Number of seasonal periods of the model that scored each point.
    periods: Vec<usize>,
}

fn stream(values: &[f64], config: StreamConfig) -> Run {
    let mut detector = StreamingDetector::new(config);
    let mut run = Run {
        scores: Vec::new(),
        directions: Vec::new(),
        bases: Vec::new(),
        periods: Vec::new(),
    };
    for (i, &v) in values.iter().enumerate() {
        run.periods.push(detector.model().periods().len());
        let s = detector.push(START + i as i64 * i64::from(STEP), v);
        run.scores.push(s.anomaly_score);
        run.directions.push(s.score.direction);
        run.bases.push(s.basis);
    }
    run
}

fn stream_config(fit: FitConfig) -> StreamConfig {
    StreamConfig {
        step_secs: Some(STEP),
        kind: SeriesKind::Count,
        fit,
        ..StreamConfig::default()
    }
}

const ALERT: f64 = 0.5;
/// A second threshold, reported only.
const STRONG_ALERT: f64 = 0.8;

/// Streams four weeks with injected incidents for each seed; checks every incident's delay and
/// peak and the false-alert rate over all seeds once the weekly period is in the model.
fn evaluate(label: &str, fit_config: &FitConfig, seeds: &[u64], max_fp_rate: f64) {
    // Until two weeks are in, the weekly pattern cannot be modelled: weekends look like drops.
    // Both phases are measured; the bound applies once the weekly period is in the model.
    let mut clean = [0usize; 2];
    let mut false_alerts = [0usize; 2];
    let mut strong_false_alerts = [0usize; 2];
    let mut missed = Vec::new();
    for &seed in seeds {
        let mut values = mail_series(4 * WEEK, seed);
        let incidents = inject(&mut values);
        let run = stream(&values, stream_config(fit_config.clone()));
        let first_seasonal = run
            .bases
            .iter()
            .position(|b| *b == Basis::Seasonal)
            .expect("the detector reaches a seasonal model");
        assert!(
            first_seasonal <= 4 * DAY,
            "seasonal model only from point {first_seasonal}"
        );
        let first_weekly = run
            .periods
            .iter()
            .position(|p| *p >= 2)
            .expect("the detector learns the weekly period");
        // Clean points: outside incidents and the day after each.
        for i in first_seasonal..values.len() {
            let near = incidents
                .iter()
                .any(|inc| i >= inc.start && i < inc.end + DAY);
            if near {
                continue;
            }
            let phase = usize::from(i >= first_weekly);
            clean[phase] += 1;
            false_alerts[phase] += usize::from(run.scores[i] >= ALERT);
            strong_false_alerts[phase] += usize::from(run.scores[i] >= STRONG_ALERT);
        }
        for inc in &incidents {
            let window = &run.scores[inc.start..inc.end];
            let peak = window.iter().copied().fold(0.0, f64::max);
            let delay = window.iter().position(|s| *s >= ALERT);
            println!(
                "[{label}] seed {seed}, {}: peak score {peak:.3}, delay {delay:?} windows",
                inc.name
            );
            if peak < inc.min_peak {
                missed.push(format!(
                    "seed {seed}, {}: peak score {peak} < {}",
                    inc.name, inc.min_peak
                ));
            }
            let delay = delay.unwrap_or(usize::MAX);
            if delay > inc.max_delay {
                missed.push(format!(
                    "seed {seed}, {}: detected after {delay} windows, expected ≤ {}",
                    inc.name, inc.max_delay
                ));
            }
        }
    }
    for (phase, what) in ["daily model only", "daily + weekly"].iter().enumerate() {
        let weeks = clean[phase].max(1) as f64 / WEEK as f64;
        println!(
            "[{label}] {what}: clean points {}, alerts ≥ {ALERT}: {} (rate {:.4}, {:.2} per week), ≥ {STRONG_ALERT}: {} ({:.2} per week)",
            clean[phase],
            false_alerts[phase],
            false_alerts[phase] as f64 / clean[phase].max(1) as f64,
            false_alerts[phase] as f64 / weeks,
            strong_false_alerts[phase],
            strong_false_alerts[phase] as f64 / weeks,
        );
    }
    assert!(missed.is_empty(), "{missed:#?}");
    let fp_rate = false_alerts[1] as f64 / clean[1].max(1) as f64;
    assert!(
        fp_rate <= max_fp_rate,
        "false-alert rate {fp_rate} on clean points, expected ≤ {max_fp_rate}"
    );
}

#[test]
fn streaming_detects_injected_incidents_with_few_false_alerts() {
    evaluate(
        "smoothed level (default)",
        &FitConfig::default(),
        &[1, 2, 3, 4, 5, 6],
        0.005,
    );
}

#[test]
fn streaming_with_autoets_detects_too() {
    evaluate("AutoETS", &FitConfig::ets(), &[11], 0.005);
}

#[test]
fn calibrated_bands_cover_what_they_claim_out_of_sample() {
    // Standalone fits (held-out calibration): fit on two weeks and a day (the weekly period
    // needs two seasons before the held-out day), score the next day.
    let mut inside = 0usize;
    let mut total = 0usize;
    for seed in 0..6u64 {
        let values = mail_series(2 * WEEK + 3 * DAY, 100 + seed);
        let offset = (seed as usize) * 40;
        let train_end = offset + 2 * WEEK + DAY;
        let history = Series::new(
            START,
            STEP,
            SeriesKind::Count,
            values[offset..train_end].to_vec(),
        );
        let model = fit(&history);
        assert_eq!(model.basis(), Basis::Seasonal);
        assert_eq!(model.periods(), &[DAY, WEEK]);
        for (k, &v) in values[train_end..train_end + DAY].iter().enumerate() {
            let s = model.score(model.next_secs() + k as i64 * i64::from(STEP), v);
            total += 1;
            inside += usize::from(s.direction == Direction::Inside);
        }
    }
    let fit_coverage = inside as f64 / total as f64;

    // The streaming detector (calibrated on its own out-of-sample residuals), clean data.
    let values = mail_series(4 * WEEK, 7);
    let run = stream(&values, stream_config(FitConfig::default()));
    let judged: Vec<&Direction> = run.directions[2 * WEEK..].iter().collect();
    let stream_coverage =
        judged.iter().filter(|d| ***d == Direction::Inside).count() as f64 / judged.len() as f64;
    println!(
        "coverage of the 95 % band of standalone fits {fit_coverage:.3} ({total} points), of the stream's episode band {stream_coverage:.4} ({} points)",
        judged.len()
    );
    assert!(
        (0.9..=0.99).contains(&fit_coverage),
        "fit: coverage {fit_coverage} outside [0.9, 0.99]"
    );
    // The stream's band is where a point would open an episode (p = 1e-3 over six one-sided
    // tests, so about 1 point in 3 000 outside on clean data), and it is finite: some clean
    // points do fall outside it.
    assert!(
        (0.995..1.0).contains(&stream_coverage),
        "stream: coverage {stream_coverage} outside [0.995, 1)"
    );
}

#[test]
fn beta_binomial_weighs_evidence() {
    // Baseline: a steady 1 % bounce rate over 200 windows of 500 messages.
    let windows: Vec<(u64, u64)> = (0..200).map(|i| (4 + i % 3, 500)).collect();
    let baseline = RatioBaseline::from_windows(&windows);
    assert!(
        (baseline.rate() - 0.01).abs() < 0.001,
        "{}",
        baseline.rate()
    );
    let small = baseline.test(3, 20);
    let large = baseline.test(300, 2000);
    let one = baseline.test(1, 20);
    println!(
        "p-values against 1 %: 3/20 {:.2e}, 300/2000 {:.2e}, 1/20 {:.3}",
        small.p_value, large.p_value, one.p_value
    );
    assert!(
        large.p_value < small.p_value,
        "300/2000 is more significant than 3/20"
    );
    assert!(small.p_value < 0.01, "3/20 at 1 % is unlikely: {small:?}");
    assert!(large.p_value < 1e-100, "{large:?}");
    assert!(one.p_value > 0.1, "1/20 is not flagged: {one:?}");
    assert_eq!(one.anomaly_score, 0.0);
    assert!(large.anomaly_score > 0.99);
    assert!(small.anomaly_score > 0.0 && small.anomaly_score < large.anomaly_score);
}

#[test]
fn cusum_detects_level_shifts_fast_and_stays_quiet_on_noise() {
    let mut rng = Rng(42);
    let mut cusum = Cusum::new(CusumConfig::default());
    let mut alarms = 0;
    for _ in 0..200_000 {
        alarms += usize::from(cusum.update(rng.normal()).is_some());
    }
    println!("CUSUM: {alarms} alarms on 200 000 points of stationary noise");
    assert_eq!(alarms, 0, "alarms on stationary noise");

    for (shift, bound) in [(3.0, 8), (2.0, 16), (1.5, 30)] {
        let mut delays = Vec::new();
        for seed in 0..200 {
            let mut rng = Rng(1000 + seed);
            let mut cusum = Cusum::default();
            for _ in 0..500 {
                cusum.update(rng.normal());
            }
            let delay = (1..=200).find(|_| cusum.update(rng.normal() + shift).is_some());
            delays.push(delay.unwrap_or(usize::MAX));
        }
        delays.sort_unstable();
        let median = delays[delays.len() / 2];
        let p95 = delays[delays.len() * 95 / 100];
        println!("CUSUM: {shift} sigma shift detected after median {median}, p95 {p95} points");
        assert!(p95 <= bound, "{shift} sigma: p95 delay {p95} > {bound}");
    }
}

#[test]
fn mad_flags_the_one_host_of_ten() {
    let mut rng = Rng(5);
    let mut bounce_rates: Vec<f64> = (0..10).map(|_| 0.01 + 0.002 * rng.normal()).collect();
    bounce_rates[6] = 0.08;
    let scores = fleet_outliers(&bounce_rates, &FleetConfig::default());
    let flagged: Vec<usize> = (0..10).filter(|&i| scores[i].outlier).collect();
    assert_eq!(flagged, vec![6], "{scores:?}");
    assert!(scores[6].z > 10.0);
}

#[test]
fn forecast_of_a_ramp_predicts_the_time_to_threshold() {
    // Spool disk: 40 GB used, +0.05 GB per 5 minutes (0.6 GB/h), small noise; full at 100 GB.
    let mut rng = Rng(9);
    let values: Vec<f64> = (0..2 * DAY)
        .map(|i| 40.0 + 0.05 * i as f64 + 0.05 * rng.normal())
        .collect();
    let last = 40.0 + 0.05 * (2 * DAY - 1) as f64;
    let history = Series::new(START, STEP, SeriesKind::Gauge, values);
    let f = forecast(&history, 3 * DAY);
    assert_eq!(f.points.len(), 3 * DAY);
    let truth = Duration::from_secs_f64((100.0 - last) / 0.05 * f64::from(STEP));
    let point = time_until_threshold_with(&f, 100.0, Bound::Point).expect("reaches 100 GB");
    let pessimistic = time_until_threshold(&f, 100.0).expect("upper bound reaches 100 GB");
    println!(
        "disk full: truth {:.2} h, point forecast {:.2} h, upper bound {:.2} h",
        truth.as_secs_f64() / 3600.0,
        point.as_secs_f64() / 3600.0,
        pessimistic.as_secs_f64() / 3600.0
    );
    for (what, got) in [("point", point), ("upper", pessimistic)] {
        let error = (got.as_secs_f64() - truth.as_secs_f64()).abs() / truth.as_secs_f64();
        assert!(error <= 0.1, "{what}: {got:?} vs {truth:?} ({error:.3})");
    }
    assert!(pessimistic <= point, "the upper bound crosses first");
    // Falling: free space drops below 10 GB (lower bound).
    let free: Vec<f64> = (0..2 * DAY).map(|i| 60.0 - 0.05 * i as f64).collect();
    let f = forecast(&Series::new(START, STEP, SeriesKind::Gauge, free), 3 * DAY);
    let t = time_until_threshold(&f, 10.0).expect("free space falls below 10 GB");
    let truth = (60.0 - 0.05 * (2 * DAY - 1) as f64 - 10.0) / 0.05 * f64::from(STEP);
    assert!(
        (t.as_secs_f64() - truth).abs() / truth <= 0.1,
        "{t:?} vs {truth}"
    );
}

#[test]
fn counter_resets_and_gaps_are_missing_not_anomalies() {
    let mut values = mail_series(3 * WEEK, 3);
    // Gaps of a few hours and a counter reset (negative delta).
    for v in &mut values[2 * WEEK + 100..2 * WEEK + 130] {
        *v = f64::NAN;
    }
    values[2 * WEEK + 200] = -5000.0;
    let run = stream(&values, stream_config(FitConfig::default()));
    assert_eq!(run.directions[2 * WEEK + 200], Direction::Missing);
    assert_eq!(run.scores[2 * WEEK + 200], 0.0);
    assert!(
        run.scores[2 * WEEK + 100..2 * WEEK + 130]
            .iter()
            .all(|s| *s == 0.0)
    );
}

fn special_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -1e3f64..1e3,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::MAX),
        1 => Just(-f64::MAX),
        1 => Just(0.0),
        1 => Just(f64::MIN_POSITIVE),
        1 => any::<f64>(),
    ]
}

fn series_values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(special_f64(), 0..80),
        prop::collection::vec(special_f64(), 280..620),
        (special_f64(), 0usize..700).prop_map(|(v, n)| vec![v; n]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fit_score_stream_and_forecast_never_panic(
        values in series_values(),
        probe in special_f64(),
        step in prop_oneof![Just(300u32), Just(0u32), Just(1u32), any::<u32>()],
        start in prop_oneof![Just(START), any::<i64>()],
        count in any::<bool>(),
    ) {
        let kind = if count { SeriesKind::Count } else { SeriesKind::Gauge };
        let series = Series::new(start, step, kind, values.clone());
        for config in [FitConfig::default(), FitConfig::ets()] {
            let model = fit_with(&series, &config, None);
            for t in [start, model.next_secs(), i64::MIN, i64::MAX] {
                let s = model.score(t, probe);
                prop_assert!((0.0..=1.0).contains(&s.anomaly_score), "{s:?}");
            }
        }
        let mut detector = StreamingDetector::new(StreamConfig {
            step_secs: (step > 0).then_some(step),
            kind,
            fit: FitConfig::default(),
            ..StreamConfig::default()
        });
        for (i, &v) in values.iter().enumerate() {
            let t = start.saturating_add((i as i64).saturating_mul(i64::from(step)));
            let s = detector.push(t, v);
            prop_assert!((0.0..=1.0).contains(&s.anomaly_score), "{s:?}");
        }
        let f = forecast(&series, 12);
        let _ = time_until_threshold(&f, probe);
    }
}
