//! Online level-shift detection: a two-sided CUSUM on standardised, de-seasonalised residuals.
//!
//! # Why CUSUM and not augurs' changepoint detectors
//! augurs' `changepoint` feature (BOCPD and autoregressive Gaussian-process detectors) is batch
//! only, adds 41 crates to the build (an older nalgebra, syn 1) and ~30 s of release build, and
//! expects the standardised, de-seasonalised input we already produce. The seasonal model turns
//! every series into residuals with a known robust scale, which is exactly the setting CUSUM is
//! optimal for (Page 1954; Moustakides 1986: minimal worst-case detection delay for a given
//! false-alarm rate), and it runs in O(1) per point with two numbers of state.
//!
//! # Parameters (defaults)
//! - `drift` k = 1.0: the statistic only grows when a residual exceeds 1 σ, so the detector is
//!   tuned to shifts of about 2 σ (k is half the shift it is best at). Residuals of a seasonal
//!   forecast a day ahead are autocorrelated; a larger k than the textbook 0.5 keeps slow
//!   wander from accumulating.
//! - `threshold` h = 8: with k = 1 the in-control average run length of i.i.d. normal residuals
//!   is beyond 10⁶ points (years at 5 minutes); the statistic must exceed h, so a 3 σ shift is
//!   flagged at its 5th point, a 2 σ shift after about 9, a 1.5 σ shift after about 17.
//! - `clip` = 4: each residual counts at most ±4 σ, so a single spike (the band detector's job)
//!   cannot trigger a level-shift alarm on its own; it takes at least 3 consecutive large ones.
//!
//! After an alarm both sums restart from zero, so a shift that persists is reported once.

/// Clip of residuals for the shift estimate (not for the statistic), in σ.
const SHIFT_CLIP: f64 = 25.0;

/// Parameters of a [`Cusum`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CusumConfig {
    /// Allowance k in σ subtracted from every standardised residual.
    pub drift: f64,
    /// Decision threshold h in σ.
    pub threshold: f64,
    /// Standardised residuals are clipped to ±clip before they are added.
    pub clip: f64,
}

impl Default for CusumConfig {
    fn default() -> Self {
        CusumConfig {
            drift: 1.0,
            threshold: 8.0,
            clip: 4.0,
        }
    }
}

/// A level shift found by [`Cusum::update`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelShift {
    /// Points since the shift is estimated to have started (1 = only the current point).
    pub points_since_start: usize,
    /// Mean standardised residual since the estimated start, in σ (signed; residuals clipped
    /// at ±25 σ for this estimate).
    pub shift_sigmas: f64,
}

/// Two-sided online CUSUM.
#[derive(Debug, Clone, PartialEq)]
pub struct Cusum {
    config: CusumConfig,
    upper: f64,
    lower: f64,
    /// Points and residual sum since each side last sat at zero.
    upper_run: (usize, f64),
    lower_run: (usize, f64),
}

impl Cusum {
    /// A detector with `config` (non-finite or negative parameters fall back to the defaults).
    pub fn new(config: CusumConfig) -> Self {
        let defaults = CusumConfig::default();
        let pick = |v: f64, d: f64| if v.is_finite() && v > 0.0 { v } else { d };
        Cusum {
            config: CusumConfig {
                drift: pick(config.drift, defaults.drift),
                threshold: pick(config.threshold, defaults.threshold),
                clip: pick(config.clip, defaults.clip),
            },
            upper: 0.0,
            lower: 0.0,
            upper_run: (0, 0.0),
            lower_run: (0, 0.0),
        }
    }

    /// Adds one standardised residual (`(observed − expected) / σ`); NaN is skipped. Returns the
    /// shift when either sum crosses the threshold, then restarts.
    pub fn update(&mut self, z: f64) -> Option<LevelShift> {
        if z.is_nan() {
            return None;
        }
        // The statistic sees clipped residuals; the shift estimate a wider clip, so a large
        // shift is not underestimated (one wild point still cannot dominate it).
        let wide = z.clamp(-SHIFT_CLIP, SHIFT_CLIP);
        let z = z.clamp(-self.config.clip, self.config.clip);
        let k = self.config.drift;
        self.upper = (self.upper + z - k).max(0.0);
        self.lower = (self.lower - z - k).max(0.0);
        self.upper_run = if self.upper > 0.0 {
            (self.upper_run.0 + 1, self.upper_run.1 + wide)
        } else {
            (0, 0.0)
        };
        self.lower_run = if self.lower > 0.0 {
            (self.lower_run.0 + 1, self.lower_run.1 + wide)
        } else {
            (0, 0.0)
        };
        let run = if self.upper > self.config.threshold {
            self.upper_run
        } else if self.lower > self.config.threshold {
            self.lower_run
        } else {
            return None;
        };
        self.reset();
        let points = run.0.max(1);
        Some(LevelShift {
            points_since_start: points,
            shift_sigmas: run.1 / points as f64,
        })
    }

    /// Current statistic: the larger of the two sums, in units of the threshold (≥ 1 alarms).
    pub fn pressure(&self) -> f64 {
        self.upper.max(self.lower) / self.config.threshold
    }

    /// Forgets the accumulated evidence.
    pub fn reset(&mut self) {
        self.upper = 0.0;
        self.lower = 0.0;
        self.upper_run = (0, 0.0);
        self.lower_run = (0, 0.0);
    }
}

impl Default for Cusum {
    fn default() -> Self {
        Cusum::new(CusumConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_spike_does_not_alarm_but_a_shift_does() {
        let mut c = Cusum::default();
        assert_eq!(c.update(50.0), None);
        for _ in 0..10 {
            assert_eq!(c.update(0.0), None);
        }
        let mut alarm = None;
        for i in 1..=20 {
            if let Some(shift) = c.update(-3.0) {
                alarm = Some((i, shift));
                break;
            }
        }
        let (delay, shift) = alarm.expect("a 3 sigma drop is detected");
        assert_eq!(delay, 5);
        assert!((shift.shift_sigmas + 3.0).abs() < 1e-9);
        // A large shift is estimated beyond the statistic's clip.
        let big = (0..5)
            .find_map(|_| c.update(10.0))
            .expect("a 10 sigma shift is detected");
        assert!((big.shift_sigmas - 10.0).abs() < 1e-9);
        assert_eq!(shift.points_since_start, 5);
        assert_eq!(c.pressure(), 0.0);
        assert_eq!(c.update(f64::NAN), None);
    }
}
