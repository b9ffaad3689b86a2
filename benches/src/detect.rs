//! `bench-detect`: refit and scoring throughput of the anomaly detector on one core.
//!
//! ```text
//! cargo run -p mailpulse-benches --release --bin bench-detect -- [--models N] [--scores N]
//! ```
//! Series are synthetic mail volumes at 5-minute windows (business-day bump, quieter weekends,
//! noise), a different seed per series. Reported, per configuration (trend model × history):
//! - **refit**: models per second for `fit_with` with held-out calibration (two MSTL fits: the
//!   standalone path) and with provided residuals (one fit: what the streaming detector does on
//!   its schedule), and the time 10 000 such refits take on one core;
//! - **scoring**: `Model::score` calls per second, and the share of one core that scoring
//!   10 000 series once a minute takes;
//! - **stream**: `StreamingDetector::push` per second over four weeks of points, scheduled
//!   refits included (the collector's steady-state cost per series).

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use mailpulse_collector::detect::{
    FitConfig, Model, Series, SeriesKind, StreamConfig, StreamingDetector, fit_with,
};

#[derive(Debug, Parser)]
#[command(
    name = "bench-detect",
    about = "Refit and scoring throughput of the anomaly detector on one core"
)]
struct Args {
    /// Models fitted per timed configuration.
    #[arg(long, default_value_t = 100)]
    models: usize,
    /// Scores per timed run.
    #[arg(long, default_value_t = 2_000_000)]
    scores: usize,
    /// Series streamed for the streaming figure (four weeks each).
    #[arg(long, default_value_t = 4)]
    streams: usize,
}

const STEP: u32 = 300;
const DAY: usize = 288;
const WEEK: usize = 7 * DAY;
/// Monday 2024-01-01 00:00 UTC.
const START: i64 = 1_704_067_200;
/// The issue's targets.
const SERIES: f64 = 10_000.0;

fn main() -> Result<()> {
    let args = Args::parse();
    if args.models == 0 || args.scores == 0 {
        bail!("--models and --scores must be positive");
    }
    let configs = [
        ("smoothed level", FitConfig::default()),
        ("AutoETS", FitConfig::ets()),
    ];
    let histories = [("1 week", WEEK), ("2 weeks + 1 day", 2 * WEEK + DAY)];
    println!("refit (one core, 5-minute windows):");
    let mut fitted: Option<Model> = None;
    for (history_label, points) in histories {
        let series: Vec<Series> = (0..args.models)
            .map(|i| {
                Series::new(
                    START,
                    STEP,
                    SeriesKind::Count,
                    mail_series(points, i as u64),
                )
            })
            .collect();
        // Out-of-sample residuals as the streaming detector would hand them over.
        let residuals: Vec<f64> = mail_series(2 * DAY, 999)
            .iter()
            .zip(mail_series(2 * DAY, 998))
            .map(|(a, b)| a - b)
            .collect();
        for (config_label, config) in &configs {
            for (calibration_label, calibration) in [
                ("held-out", None),
                ("provided residuals", Some(&residuals[..])),
            ] {
                let started = Instant::now();
                let mut periods = Vec::new();
                for s in &series {
                    let model = fit_with(s, config, calibration);
                    periods = model.periods().to_vec();
                    fitted = Some(model);
                }
                let secs = started.elapsed().as_secs_f64();
                let per_sec = args.models as f64 / secs;
                println!(
                    "  {history_label:>15} ({points} points), {config_label:>14}, {calibration_label:>18}: \
                     {per_sec:>8.1} models/s, periods {periods:?}, 10 000 refits in {:>6.1} s",
                    SERIES / per_sec
                );
            }
        }
    }

    let Some(model) = fitted else {
        bail!("no model was fitted");
    };
    let values = mail_series(DAY, 7);
    let started = Instant::now();
    let mut checksum = 0.0;
    for i in 0..args.scores {
        let k = i % DAY;
        let t = model.next_secs() + (k as i64) * i64::from(STEP);
        checksum += model.score(t, values[k]).anomaly_score;
    }
    let secs = started.elapsed().as_secs_f64();
    let per_sec = args.scores as f64 / secs;
    println!(
        "scoring: {per_sec:.0} scores/s ({:.0} ns each); 10 000 series once a minute use {:.4} % of one core (checksum {checksum:.1})",
        1e9 / per_sec,
        100.0 * SERIES / 60.0 / per_sec
    );

    if args.streams > 0 {
        let points = 4 * WEEK;
        let series: Vec<Vec<f64>> = (0..args.streams)
            .map(|i| mail_series(points, 100 + i as u64))
            .collect();
        let started = Instant::now();
        let mut fits = 0;
        for values in &series {
            let mut detector = StreamingDetector::new(StreamConfig {
                step_secs: Some(STEP),
                kind: SeriesKind::Count,
                ..StreamConfig::default()
            });
            for (i, &v) in values.iter().enumerate() {
                detector.push(START + i as i64 * i64::from(STEP), v);
            }
            fits += detector.fits();
        }
        let secs = started.elapsed().as_secs_f64();
        let pushed = (points * args.streams) as f64;
        let per_point = secs / pushed;
        // One point per series every 5 minutes: 10 000 series push 10 000 / 300 points a second.
        println!(
            "stream: {:.0} points/s with scheduled refits ({fits} fits over {} series × 4 weeks); \
             10 000 series at 5-minute windows use {:.3} % of one core on average",
            pushed / secs,
            args.streams,
            100.0 * per_point * SERIES / f64::from(STEP)
        );
    }
    Ok(())
}

/// Seeded mail volume per 5-minute window: business-day bump, quieter weekends, noise.
fn mail_series(points: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..points)
        .map(|i| {
            let hour = (i % DAY) as f64 / 12.0;
            let weekend = (i / DAY) % 7 >= 5;
            let business = (-((hour - 13.0) / 3.5).powi(2)).exp();
            let level = (40.0 + 160.0 * business) * if weekend { 0.45 } else { 1.0 };
            let (u, v) = (uniform(), uniform());
            let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            (level + (level.sqrt() + 3.0) * normal).max(0.0)
        })
        .collect()
}
