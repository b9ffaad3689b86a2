//! Per-agent sample rate limit (token bucket). Buckets outlive streams, so reconnecting does
//! not refill them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Token buckets of all agents.
#[derive(Debug)]
pub struct RateLimiter {
    samples_per_sec: f64,
    burst_samples: f64,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `samples_per_sec` sustained, up to `burst_samples` at once.
    pub fn new(samples_per_sec: u64, burst_samples: u64) -> Self {
        Self {
            samples_per_sec: samples_per_sec as f64,
            burst_samples: burst_samples as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `samples` tokens from `agent`'s bucket; false (and nothing taken) if too few.
    pub fn try_take(&self, agent: &Arc<str>, samples: usize) -> bool {
        self.try_take_at(agent, samples, Instant::now())
    }

    fn try_take_at(&self, agent: &Arc<str>, samples: usize, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(agent.clone()).or_insert(Bucket {
            tokens: self.burst_samples,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.samples_per_sec).min(self.burst_samples);
        bucket.updated = now;
        let need = samples as f64;
        if bucket.tokens >= need {
            bucket.tokens -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limiter = RateLimiter::new(100, 200);
        let agent: Arc<str> = "mx1".into();
        let t0 = Instant::now();
        assert!(limiter.try_take_at(&agent, 150, t0));
        assert!(!limiter.try_take_at(&agent, 100, t0));
        assert!(limiter.try_take_at(&agent, 50, t0));
        assert!(!limiter.try_take_at(&agent, 1, t0));
        assert!(limiter.try_take_at(&agent, 100, t0 + Duration::from_secs(1)));
        let other: Arc<str> = "mx2".into();
        assert!(limiter.try_take_at(&other, 200, t0));
    }
}
