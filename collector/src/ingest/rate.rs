//! Per-agent rate limits: token buckets over samples (probes included) and over bytes. Buckets
//! outlive streams, so reconnecting does not refill them; there is one per agent in the token
//! table, so their number is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which bucket ran dry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Too many samples and probes.
    Samples,
    /// Too many bytes.
    Bytes,
}

/// Token buckets of all agents.
#[derive(Debug)]
pub struct RateLimiter {
    samples: Rate,
    bytes: Rate,
    buckets: Mutex<HashMap<Arc<str>, Buckets>>,
}

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_sec: f64,
    burst: f64,
}

#[derive(Debug)]
struct Buckets {
    samples: f64,
    bytes: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `samples_per_sec` and `bytes_per_sec` sustained, up to `burst_samples` and `burst_bytes`
    /// at once.
    pub fn new(
        samples_per_sec: u64,
        burst_samples: u64,
        bytes_per_sec: u64,
        burst_bytes: u64,
    ) -> Self {
        Self {
            samples: Rate {
                per_sec: samples_per_sec as f64,
                burst: burst_samples as f64,
            },
            bytes: Rate {
                per_sec: bytes_per_sec as f64,
                burst: burst_bytes as f64,
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `samples` and `bytes` from `agent`'s buckets; nothing is taken when either has
    /// too few.
    pub fn try_take(&self, agent: &Arc<str>, samples: usize, bytes: usize) -> Result<(), Limited> {
        self.try_take_at(agent, samples, bytes, Instant::now())
    }

    fn try_take_at(
        &self,
        agent: &Arc<str>,
        samples: usize,
        bytes: usize,
        now: Instant,
    ) -> Result<(), Limited> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(agent.clone()).or_insert(Buckets {
            samples: self.samples.burst,
            bytes: self.bytes.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.samples = (bucket.samples + elapsed * self.samples.per_sec).min(self.samples.burst);
        bucket.bytes = (bucket.bytes + elapsed * self.bytes.per_sec).min(self.bytes.burst);
        bucket.updated = now;
        let (samples, bytes) = (samples as f64, bytes as f64);
        if bucket.samples < samples {
            return Err(Limited::Samples);
        }
        if bucket.bytes < bytes {
            return Err(Limited::Bytes);
        }
        bucket.samples -= samples;
        bucket.bytes -= bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limiter = RateLimiter::new(100, 200, u64::MAX, u64::MAX);
        let agent: Arc<str> = "mx1".into();
        let t0 = Instant::now();
        assert!(limiter.try_take_at(&agent, 150, 0, t0).is_ok());
        assert_eq!(
            limiter.try_take_at(&agent, 100, 0, t0),
            Err(Limited::Samples)
        );
        assert!(limiter.try_take_at(&agent, 50, 0, t0).is_ok());
        assert!(limiter.try_take_at(&agent, 1, 0, t0).is_err());
        assert!(
            limiter
                .try_take_at(&agent, 100, 0, t0 + Duration::from_secs(1))
                .is_ok()
        );
        let other: Arc<str> = "mx2".into();
        assert!(limiter.try_take_at(&other, 200, 0, t0).is_ok());
    }

    #[test]
    fn bytes_are_limited_too_and_a_refusal_takes_nothing() {
        let limiter = RateLimiter::new(1_000, 1_000, 1_000, 4_000);
        let agent: Arc<str> = "mx1".into();
        let t0 = Instant::now();
        assert!(limiter.try_take_at(&agent, 1, 3_000, t0).is_ok());
        assert_eq!(
            limiter.try_take_at(&agent, 1, 2_000, t0),
            Err(Limited::Bytes)
        );
        // The refused call took no samples either.
        assert!(limiter.try_take_at(&agent, 999, 1_000, t0).is_ok());
        assert!(
            limiter
                .try_take_at(&agent, 0, 2_000, t0 + Duration::from_secs(2))
                .is_ok()
        );
    }
}
