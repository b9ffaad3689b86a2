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
    /// Series one agent (by the host it says Hello as) may create; past it, its new label sets
    /// are folded into their metric's `other` series (label values `other`, sums stay exact)
    /// and counted. Series not written within the retention expire and stop counting.
    pub max_series_per_agent: usize,
    /// `other` series (one per metric and label names) one agent may create past its quota;
    /// past both, its new series are refused.
    pub max_other_series_per_agent: usize,
    /// DNS records (kind, target, server) one agent's probes may create; probes of new ones
    /// past it are refused and counted. Records not probed within the retention are pruned.
    pub max_dns_records_per_agent: usize,
    /// After an I/O error (disk full, …) the store is reopened, and its state reloaded from
    /// disk, at most this often until it works again; meanwhile batches are refused
    /// (`UNAVAILABLE`) and stay in the agents' outboxes.
    pub reopen_interval_secs: u64,
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
            max_series_per_agent: 50_000,
            max_other_series_per_agent: 1_000,
            max_dns_records_per_agent: 20_000,
            reopen_interval_secs: 5,
        }
    }
}
