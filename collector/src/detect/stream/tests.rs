//! The streaming detector on constructed series.

use super::*;

fn detector() -> StreamingDetector {
    StreamingDetector::new(StreamConfig {
        step_secs: Some(300),
        ..StreamConfig::default()
    })
}

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
fn a_lasting_new_level_of_a_constant_series_scores_once_then_is_normal() {
    let mut d = detector();
    let mut t = 0;
    let mut push = |d: &mut StreamingDetector, v: f64| {
        t += 300;
        d.push(t, v)
    };
    for _ in 0..600 {
        assert_eq!(push(&mut d, 40.0).anomaly_score, 0.0);
    }
    let onset = push(&mut d, 55.0);
    assert!(onset.anomaly_score > 0.95, "{onset:?}");
    let after: Vec<StreamScore> = (0..400).map(|_| push(&mut d, 55.0)).collect();
    let high = after.iter().filter(|s| s.anomaly_score >= 0.5).count();
    assert!(high <= 2, "{high} more points at ≥ 0.5 after the onset");
    let last = after.last().expect("points");
    assert!((last.score.expected - 55.0).abs() < 0.5, "{last:?}");
    assert!(last.surprise < 2.0, "{last:?}");
}

/// Gaussian-looking noise (sum of 4 uniforms from a fixed LCG), centred, variance about 1.
fn noise(n: usize) -> Vec<f64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| ((0..4).map(|_| uniform()).sum::<f64>() - 2.0) * 3f64.sqrt())
        .collect()
}

#[test]
fn scores_do_not_depend_on_the_units() {
    let run = |level: f64, scale: f64| -> Vec<f64> {
        let mut d = detector();
        noise(3_000)
            .into_iter()
            .enumerate()
            .map(|(i, z)| {
                let spike = if i == 2_500 { 8.0 } else { 0.0 };
                d.push(i as i64 * 300, level + scale * (z + spike))
                    .anomaly_score
            })
            .collect()
    };
    let small = run(10.0, 1.0);
    let large = run(1e6, 1_000.0);
    assert!(small[2_500] > 0.95, "the spike: {}", small[2_500]);
    for (i, (a, b)) in small.iter().zip(&large).enumerate() {
        assert!((a - b).abs() < 1e-6, "point {i}: {a} vs {b}");
    }
    // Score 0.5 is p of about 1e-3 after correction: a few in 2 200 ordinary points.
    let high = small[300..2_500].iter().filter(|&&s| s >= 0.5).count();
    assert!(high <= 5, "{high} ordinary points at >= 0.5");
}

#[test]
fn a_noise_free_daily_square_wave_stays_quiet() {
    // Like NAB's art_daily_no_noise: 20 at night, 80 by day, exactly, for two weeks.
    let mut d = detector();
    let mut worst: f64 = 0.0;
    for i in 0..(14 * 288) {
        let by_day = (96..216).contains(&(i % 288));
        let s = d.push(i * 300, if by_day { 80.0 } else { 20.0 });
        if i >= 288 {
            worst = worst.max(s.anomaly_score);
        }
    }
    assert!(worst < 0.5, "worst score {worst}");
}

#[test]
fn a_quantised_series_is_not_surprised_by_its_rounding() {
    let mut d = detector();
    let mut worst: f64 = 0.0;
    for (i, z) in noise(4_000).into_iter().enumerate() {
        // A level of 45 read to whole units: mostly 45, sometimes 44 or 46.
        let s = d.push(i as i64 * 300, (45.0 + 0.4 * z).round());
        if i >= 288 {
            worst = worst.max(s.anomaly_score);
        }
    }
    assert!(worst < 0.5, "worst score {worst}");
}

#[test]
fn verdicts_are_learning_for_the_configured_time() {
    let mut d = StreamingDetector::new(StreamConfig {
        step_secs: Some(300),
        learning_points: 10,
        ..StreamConfig::default()
    });
    let learning: Vec<bool> = (0..12).map(|i| d.push(i * 300, 1.0).learning).collect();
    assert!(learning[..10].iter().all(|&l| l));
    assert!(learning[10..].iter().all(|&l| !l));
}

#[test]
fn a_sustained_statistic_stays_surprising_for_the_adaptation_time() {
    let run = |adaptation_points: f64| {
        let mut d = StreamingDetector::new(StreamConfig {
            step_secs: Some(300),
            adaptation_points,
            ..StreamConfig::default()
        });
        let mut t = 0;
        for z in noise(2_000) {
            t += 300;
            d.push_with(t, 100.0 + z, Some(0.0));
        }
        // Another test says p = 1e-12 for 300 windows in a row.
        (0..300)
            .map(|_| {
                t += 300;
                d.push_with(t, 100.0, Some(12.0)).surprise
            })
            .collect::<Vec<f64>>()
    };
    let slow = run(200.0);
    assert!(slow[..200].iter().all(|&s| s >= 6.0), "{:?}", &slow[..200]);
    let fast = run(20.0);
    assert!(fast[..20].iter().all(|&s| s >= 6.0), "{:?}", &fast[..20]);
    assert!(
        fast[100..].iter().all(|&s| s < 6.0),
        "the new normal: {:?}",
        &fast[100..]
    );
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
