//! The collector's own counters (exposed as `mailpulse_collector_*`). Lock-free: ingest handlers
//! and the store writer bump them on their hot paths.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why an agent's request was refused; the `reason` label of the rejection counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Missing, malformed or unknown bearer token.
    Unauthenticated,
    /// Hello names another agent than the token's.
    AgentMismatch,
    /// A batch (or anything) before Hello, or a second Hello.
    NoHello,
    /// Bytes that are not a valid message.
    Malformed,
    /// A sample that breaks a validation rule.
    InvalidSample,
    /// More samples in one batch than allowed.
    TooManySamples,
    /// Message larger than `max_message_bytes`.
    MessageTooLarge,
    /// The agent's token bucket is empty.
    RateLimited,
    /// The store refuses new series (`max_series`).
    SeriesLimit,
    /// The agent already has `max_streams_per_agent` streams open.
    TooManyStreams,
    /// An authenticated stream sent no Hello within `hello_timeout_secs`.
    HelloTimeout,
}

impl RejectReason {
    /// Every reason, in exposition order.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Unauthenticated,
        RejectReason::AgentMismatch,
        RejectReason::NoHello,
        RejectReason::Malformed,
        RejectReason::InvalidSample,
        RejectReason::TooManySamples,
        RejectReason::MessageTooLarge,
        RejectReason::RateLimited,
        RejectReason::SeriesLimit,
        RejectReason::TooManyStreams,
        RejectReason::HelloTimeout,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Unauthenticated => "unauthenticated",
            RejectReason::AgentMismatch => "agent_mismatch",
            RejectReason::NoHello => "no_hello",
            RejectReason::Malformed => "malformed",
            RejectReason::InvalidSample => "invalid_sample",
            RejectReason::TooManySamples => "too_many_samples",
            RejectReason::MessageTooLarge => "message_too_large",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::SeriesLimit => "series_limit",
            RejectReason::TooManyStreams => "too_many_streams",
            RejectReason::HelloTimeout => "hello_timeout",
        }
    }
}

/// Counters of the collector itself.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Batches received from agents (before dedupe).
    pub batches_received: AtomicU64,
    /// Batches applied to the store.
    pub batches_applied: AtomicU64,
    /// Batches acknowledged as duplicates.
    pub batches_duplicate: AtomicU64,
    /// Seq numbers missing between applied batches.
    pub batches_missing: AtomicU64,
    /// Samples applied.
    pub samples_applied: AtomicU64,
    /// Store write transactions committed.
    pub store_commits: AtomicU64,
    /// Store write transactions that failed.
    pub store_commit_errors: AtomicU64,
    /// Pushes of the alerts to an Alertmanager it accepted / that failed.
    pub alertmanager_pushes: AtomicU64,
    pub alertmanager_push_errors: AtomicU64,
    /// Webhook deliveries the receiver accepted, attempts that failed (retried), and
    /// deliveries given up after the last attempt (dead letters).
    pub webhook_deliveries: AtomicU64,
    pub webhook_delivery_failures: AtomicU64,
    pub webhook_dead_letters: AtomicU64,
    /// Remote-write requests the receiver accepted, and those that failed.
    pub remote_write_requests: AtomicU64,
    pub remote_write_failures: AtomicU64,
    /// DNS probes of new records refused past an agent's record cap.
    pub dns_probes_refused: AtomicU64,
    /// Series expired (not written within the retention).
    pub series_expired: AtomicU64,
    /// DNS records pruned (not probed within the retention).
    pub dns_records_pruned: AtomicU64,
    /// DNS changes pruned (recorded before the retention).
    pub dns_changes_pruned: AtomicU64,
    /// Anomalies pruned (windows before the retention).
    pub anomalies_pruned: AtomicU64,
    /// Times the store was reopened after an I/O error.
    pub store_reopens: AtomicU64,
    /// OTLP exports that succeeded.
    pub otlp_exports_ok: AtomicU64,
    /// OTLP exports that failed.
    pub otlp_exports_failed: AtomicU64,
    rejections: [AtomicU64; RejectReason::ALL.len()],
}

impl CollectorStats {
    /// Counts one rejection.
    pub fn reject(&self, reason: RejectReason) {
        self.rejections[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections so far for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejections[reason as usize].load(Ordering::Relaxed)
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
