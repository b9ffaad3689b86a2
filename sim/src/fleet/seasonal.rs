//! The traffic model of one host: accepted messages per second as a function of time.
//!
//! rate(t) = peak × profile(local weekday, local time) × trend(t) × noise(t), where
//!
//! - the *weekday profile* follows office hours (ramp from 07:00, plateau 09:00–17:00 with a
//!   lunch dip, evening tail) and never drops below `night_factor` of the peak;
//! - the *weekend profile* is flatter (late start, midday plateau) and scaled so that a weekend
//!   day carries `weekend_factor` of a weekday's messages;
//! - the *trend* grows (or shrinks) linearly by `trend_per_week` per week since the start;
//! - the *noise* is a smooth multiplicative factor with mean 1: a log-normal value per local
//!   hour, interpolated log-linearly in between, drawn from a hash of the seed and the hour so it
//!   needs no state and is the same whatever order the model is asked in.
//!
//! `peak` is chosen so that a weekday without trend and noise carries `messages_per_day`.

use crate::synth::rng::Rng;

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;

/// Share of the peak per local hour (value at the middle of the hour), Monday to Friday.
const WEEKDAY_SHAPE: [f64; 24] = [
    0.02, 0.0, 0.0, 0.0, 0.02, 0.06, 0.18, 0.42, 0.78, 0.97, 1.0, 0.95, 0.72, 0.82, 0.93, 0.92,
    0.82, 0.62, 0.42, 0.32, 0.27, 0.2, 0.12, 0.06,
];

/// Share of the weekend peak per local hour, Saturday and Sunday.
const WEEKEND_SHAPE: [f64; 24] = [
    0.05, 0.02, 0.0, 0.0, 0.0, 0.02, 0.06, 0.14, 0.28, 0.45, 0.6, 0.66, 0.62, 0.58, 0.6, 0.6, 0.56,
    0.5, 0.45, 0.42, 0.38, 0.3, 0.2, 0.1,
];

/// The parameters of [`RateModel`]; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seasonality {
    pub(crate) messages_per_day: f64,
    pub(crate) night_factor: f64,
    pub(crate) weekend_factor: f64,
    pub(crate) utc_offset_secs: i64,
    pub(crate) trend_per_week: f64,
    pub(crate) noise: f64,
}

/// Accepted messages per second over time for one host.
#[derive(Debug, Clone)]
pub(crate) struct RateModel {
    params: Seasonality,
    /// Rate at the weekday peak (before trend and noise).
    peak_per_sec: f64,
    /// Multiplies the raw weekend profile so a weekend day carries `weekend_factor` of a weekday.
    weekend_scale: f64,
    start_us: i64,
    noise_seed: u64,
}

impl RateModel {
    pub(crate) fn new(params: Seasonality, start_us: i64, noise_seed: u64) -> Self {
        let night = params.night_factor;
        let mean = |shape: &[f64; 24]| {
            // Mean over a day in one-minute steps.
            (0..1440)
                .map(|m| night + (1.0 - night) * interpolate(shape, m as f64 / 60.0))
                .sum::<f64>()
                / 1440.0
        };
        let weekday_mean = mean(&WEEKDAY_SHAPE);
        let weekend_mean = mean(&WEEKEND_SHAPE);
        Self {
            peak_per_sec: params.messages_per_day / 86_400.0 / weekday_mean.max(1e-9),
            weekend_scale: params.weekend_factor * weekday_mean / weekend_mean.max(1e-9),
            params,
            start_us,
            noise_seed,
        }
    }

    /// Mean accepted messages per second at `at` (Unix microseconds).
    pub(crate) fn messages_per_sec(&self, at: i64) -> f64 {
        let local = at + self.params.utc_offset_secs * SECOND;
        let trend =
            1.0 + self.params.trend_per_week * (at - self.start_us) as f64 / (7 * DAY) as f64;
        self.peak_per_sec * self.profile(local) * trend.max(0.05) * self.noise(local)
    }

    /// The seasonal profile at local time `local` (µs), relative to the weekday peak.
    pub(crate) fn profile(&self, local: i64) -> f64 {
        let hour = local.rem_euclid(DAY) as f64 / HOUR as f64;
        let night = self.params.night_factor;
        if is_weekend(local) {
            self.weekend_scale * (night + (1.0 - night) * interpolate(&WEEKEND_SHAPE, hour))
        } else {
            night + (1.0 - night) * interpolate(&WEEKDAY_SHAPE, hour)
        }
    }

    /// The noise factor at local time `local`: log-linear between per-hour log-normal knots.
    fn noise(&self, local: i64) -> f64 {
        let sigma = self.params.noise;
        if sigma <= 0.0 {
            return 1.0;
        }
        let hours = local.div_euclid(HOUR);
        let frac = local.rem_euclid(HOUR) as f64 / HOUR as f64;
        let knot = |k: i64| {
            let mut rng =
                Rng::new(self.noise_seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Mean 1: E[exp(N(-σ²/2, σ))] = 1.
            rng.log_normal(-sigma * sigma / 2.0, sigma).ln()
        };
        (knot(hours) * (1.0 - frac) + knot(hours + 1) * frac).exp()
    }
}

/// Monday = 0 … Sunday = 6 of local time `local` (µs); 1970-01-01 was a Thursday.
pub(crate) fn weekday(local: i64) -> i64 {
    (local.div_euclid(DAY) + 3).rem_euclid(7)
}

pub(crate) fn is_weekend(local: i64) -> bool {
    weekday(local) >= 5
}

/// Linear interpolation between hourly values taken at the middle of each hour, wrapping
/// around midnight.
fn interpolate(shape: &[f64; 24], hour: f64) -> f64 {
    let x = hour - 0.5;
    let i = x.floor();
    let frac = x - i;
    let a = shape[(i as i64).rem_euclid(24) as usize];
    let b = shape[(i as i64 + 1).rem_euclid(24) as usize];
    a + (b - a) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(noise: f64) -> RateModel {
        RateModel::new(
            Seasonality {
                messages_per_day: 2_000.0,
                night_factor: 0.1,
                weekend_factor: 0.3,
                utc_offset_secs: 0,
                trend_per_week: 0.0,
                noise,
            },
            0,
            7,
        )
    }

    /// Integral of the rate over `[from, from + len)` in one-minute steps.
    fn volume(m: &RateModel, from: i64, len: i64) -> f64 {
        (0..len / (60 * SECOND))
            .map(|k| m.messages_per_sec(from + k * 60 * SECOND) * 60.0)
            .sum()
    }

    #[test]
    fn a_weekday_carries_messages_per_day_and_a_weekend_day_its_share() {
        let m = model(0.0);
        let monday = 4 * DAY; // 1970-01-05
        assert_eq!(weekday(monday), 0);
        let weekday_volume = volume(&m, monday, DAY);
        assert!(
            (weekday_volume - 2_000.0).abs() < 5.0,
            "expected 2000 messages on a weekday, got {weekday_volume}"
        );
        let saturday = monday + 5 * DAY;
        let weekend_volume = volume(&m, saturday, DAY);
        assert!(
            (weekend_volume - 600.0).abs() < 5.0,
            "expected 600 messages on a weekend day, got {weekend_volume}"
        );
    }

    #[test]
    fn office_hours_dominate_nights() {
        let m = model(0.0);
        let monday = 4 * DAY;
        let office = volume(&m, monday + 9 * HOUR, 8 * HOUR) / 8.0;
        let night = volume(&m, monday, 5 * HOUR) / 5.0;
        assert!(
            office >= 5.0 * night,
            "office {office}/h vs night {night}/h"
        );
    }

    #[test]
    fn noise_is_smooth_deterministic_and_mean_one() {
        let m = model(0.2);
        let a = m.messages_per_sec(4 * DAY + 10 * HOUR);
        assert_eq!(a, model(0.2).messages_per_sec(4 * DAY + 10 * HOUR));
        let b = m.messages_per_sec(4 * DAY + 10 * HOUR + SECOND);
        assert!((a - b).abs() / a < 0.001, "continuous: {a} vs {b}");
        let mean: f64 = (0..5_000).map(|h| m.noise(h * HOUR)).sum::<f64>() / 5_000.0;
        assert!((mean - 1.0).abs() < 0.02, "noise mean {mean}");
    }
}
