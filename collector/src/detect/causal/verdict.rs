//! [`Verdict`]: why a window is an anomaly — which detector, which side, and its evidence as
//! numbers ([`Evidence`]), put into words only where an anomaly is recorded.

use std::fmt;

use crate::detect::{Basis, Stream};

/// Why one window of one series is an anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The detector that found it.
    pub detector: DetectorKind,
    /// The side of the expected value the window is on.
    pub direction: Deviation,
    /// What the detector saw.
    pub evidence: Evidence,
}

/// The detectors an anomaly can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorKind {
    /// Outside the calibrated seasonal band.
    Seasonal,
    /// A sustained shift: the mean of the last windows' residuals, rarer than any run before
    /// (each window alone may be inside the band).
    LevelShift,
    /// The small-count test of a counter.
    Counts,
    /// The beta-binomial test of a ratio.
    Ratio,
    /// A limit reached within the warning time.
    Forecast,
    /// One host against its peers.
    Fleet,
}

impl DetectorKind {
    /// The name anomalies and alerts carry.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Seasonal => "seasonal",
            DetectorKind::LevelShift => "level_shift",
            DetectorKind::Counts => "counts",
            DetectorKind::Ratio => "ratio",
            DetectorKind::Forecast => "forecast",
            DetectorKind::Fleet => "fleet",
        }
    }
}

/// The side of the expected value an anomalous window is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deviation {
    /// More than expected (or rising towards a limit above).
    Above,
    /// Less than expected (or falling towards a limit below).
    Below,
}

impl Deviation {
    /// `above` or `below`, as anomalies carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Deviation::Above => "above",
            Deviation::Below => "below",
        }
    }
}

/// What a detector saw, per detector; [`fmt::Display`] puts it in words for the anomaly's
/// detail.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// The seasonal band (and a level shift, if one was flagged).
    Band {
        /// What the verdict rests on.
        basis: Basis,
        /// Signed distance from the expected value in half-band units.
        band_units: f64,
        /// Expected value and band edges.
        expected: f64,
        /// Lower edge of the band.
        lower: f64,
        /// Upper edge of the band.
        upper: f64,
        /// −log10 of the window's corrected p-value: 6 is one in a million.
        surprise: f64,
        /// The evidence that was rarest.
        stream: Stream,
    },
    /// The small-count test.
    Counts {
        /// Events in the tested windows.
        events: f64,
        /// Windows tested (pooled).
        windows: u32,
        /// Events usual in as many windows at this hour.
        expected: f64,
        /// Gamma-Poisson p-value.
        p_value: f64,
        /// Variance over mean of the counts (≥ 1): how clustered events are.
        clustering_factor: f64,
    },
    /// The ratio test.
    Ratio {
        /// Failures in the tested windows.
        failures: u64,
        /// Attempts in the tested windows.
        attempts: u64,
        /// Failures over attempts.
        rate: f64,
        /// Windows tested (pooled).
        windows: usize,
        /// The baseline's failure rate.
        baseline_rate: f64,
        /// Beta-binomial p-value.
        p_value: f64,
    },
    /// The forecast.
    Forecast {
        /// The limit.
        limit: f64,
        /// Seconds until the pessimistic bound reaches it.
        eta_secs: f64,
        /// The latest value.
        now: f64,
        /// The value expected at the end of the warning time.
        expected: f64,
        /// The warning time.
        warn_within_secs: f64,
    },
    /// The fleet comparison.
    Fleet {
        /// Robust z-score against the peers (median/MAD).
        robust_z: f64,
        /// Hosts compared.
        hosts: usize,
    },
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Band {
                basis,
                band_units,
                expected,
                lower,
                upper,
                surprise,
                stream,
            } => {
                let rarest = match stream {
                    Stream::Value => "the value",
                    Stream::Residual => "its distance from the expected value",
                    Stream::Run => "the mean of the last windows",
                    Stream::Statistic => "the count test",
                };
                let p = if *surprise >= 300.0 {
                    "p < 1e-300".to_owned()
                } else {
                    format!("p = 1e-{surprise:.1}")
                };
                write!(
                    f,
                    "{basis:?} model; {band_units:.1} half-bands from the expected {expected:.1} \
                     (band {lower:.1}..{upper:.1}); {p} ({rarest})"
                )
            }
            Evidence::Counts {
                events,
                windows,
                expected,
                p_value,
                clustering_factor,
            } => write!(
                f,
                "{events} events in {windows} window(s) where {expected:.2} are usual at this \
                 hour (gamma-Poisson p = {p_value:.2e}, clustering factor \
                 {clustering_factor:.1})"
            ),
            Evidence::Ratio {
                failures,
                attempts,
                rate,
                windows,
                baseline_rate,
                p_value,
            } => write!(
                f,
                "{failures} of {attempts} failed ({:.1} %) over {windows} window(s) against a \
                 baseline of {:.2} %; beta-binomial p = {p_value:.2e}",
                100.0 * rate,
                100.0 * baseline_rate
            ),
            Evidence::Forecast {
                limit,
                eta_secs,
                now,
                expected,
                warn_within_secs,
            } => write!(
                f,
                "reaches the limit {limit:.0} in {:.1} h (95 % bound; now {now:.0}, \
                 {expected:.0} expected in {:.1} h)",
                eta_secs / 3600.0,
                warn_within_secs / 3600.0
            ),
            Evidence::Fleet { robust_z, hosts } => {
                write!(
                    f,
                    "robust z {robust_z:.1} against {hosts} hosts of the fleet"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_reads_as_the_anomaly_detail() {
        let cases = [
            (
                Evidence::Band {
                    basis: Basis::Seasonal,
                    band_units: 5.26,
                    expected: 10.0,
                    lower: 4.0,
                    upper: 16.0,
                    surprise: 7.04,
                    stream: Stream::Run,
                },
                "Seasonal model; 5.3 half-bands from the expected 10.0 (band 4.0..16.0); \
                 p = 1e-7.0 (the mean of the last windows)",
            ),
            (
                Evidence::Counts {
                    events: 12.0,
                    windows: 3,
                    expected: 0.5,
                    p_value: 1.5e-9,
                    clustering_factor: 1.26,
                },
                "12 events in 3 window(s) where 0.50 are usual at this hour (gamma-Poisson \
                 p = 1.50e-9, clustering factor 1.3)",
            ),
            (
                Evidence::Ratio {
                    failures: 30,
                    attempts: 200,
                    rate: 0.15,
                    windows: 1,
                    baseline_rate: 0.01,
                    p_value: 2e-12,
                },
                "30 of 200 failed (15.0 %) over 1 window(s) against a baseline of 1.00 %; \
                 beta-binomial p = 2.00e-12",
            ),
            (
                Evidence::Forecast {
                    limit: 1000.0,
                    eta_secs: 5400.0,
                    now: 400.0,
                    expected: 1500.0,
                    warn_within_secs: 7200.0,
                },
                "reaches the limit 1000 in 1.5 h (95 % bound; now 400, 1500 expected in 2.0 h)",
            ),
            (
                Evidence::Fleet {
                    robust_z: 7.06,
                    hosts: 6,
                },
                "robust z 7.1 against 6 hosts of the fleet",
            ),
        ];
        for (evidence, expected) in cases {
            assert_eq!(evidence.to_string(), expected);
        }
    }
}
