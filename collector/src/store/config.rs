//! [`StoreConfig`]: the `[store]` section of the collector configuration.

use std::path::PathBuf;

use serde::Deserialize;

/// The embedded redb store and its write pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The redb file (created if missing).
    pub path: PathBuf,
    /// Resolution of the stored per-series windows.
    pub resolution_secs: u64,
    /// Windows older than this are pruned.
    pub retention_days: u64,
    /// How often pruning runs.
    pub prune_interval_secs: u64,
    /// How often applied batches (kept as a write-ahead log) are folded into the window and
    /// total tables; shorter = faster restart, more write amplification.
    pub fold_interval_secs: u64,
    /// Group commit: most batches in one write transaction.
    pub max_commit_batches: usize,
    /// Group commit: most encoded bytes in one write transaction.
    pub max_commit_bytes: usize,
    /// Batches waiting for the writer before ingest handlers wait (backpressure).
    pub queue_batches: usize,
    /// A gauge series is no longer exposed once the same host has reported gauges for windows
    /// this much newer than the series' latest one (a deferred domain that left the queue, a
    /// filesystem no longer watched). A silent host keeps its gauges; `mailpulse_agent_up`
    /// tells it is gone.
    pub gauge_stale_after_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/mailpulse/collector.redb"),
            resolution_secs: 300,
            retention_days: 35,
            prune_interval_secs: 3600,
            fold_interval_secs: 10,
            max_commit_batches: 128,
            max_commit_bytes: 64 * 1024 * 1024,
            queue_batches: 256,
            gauge_stale_after_secs: 900,
        }
    }
}
