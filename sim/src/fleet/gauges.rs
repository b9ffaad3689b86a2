//! Gauges a real agent reads from probes rather than from the log, computed from the
//! simulator's state: queue sizes (as `postqueue` snapshots give them, [`mailpulse_agent::queue`]) and the
//! spool filesystem (as `statvfs` gives it, [`mailpulse_agent::capacity`]).
//!
//! The log has no disk lines, so the spool-filling incident exists only here: the spool's used
//! bytes are a fixed base (Postfix's own files, other data on the filesystem), a small daily
//! sawtooth (files that grow during the day and are rotated at midnight), the bytes of the
//! queued messages the generator holds, and, while a spool-filling incident is active, its
//! growth since the incident started. When the incident ends the space is freed (the operator
//! removed the culprit). Used bytes never exceed the filesystem's size. Postfix's reaction to a
//! full disk (`queue_minfree` rejects) is not simulated.
//!
//! Inodes: one per 16 KiB of the filesystem (the ext4 default), 2 % used by the base, one per
//! queued message (its queue file) and one more per deferred message (its defer log). A spool
//! filling incident writes large files: the inodes stay flat.

use mailpulse_proto::v1::{self as pb, sample};

use crate::synth::hooks::QueueLoad;

/// Mount path of the simulated spool filesystem (the `path` label of its gauges).
pub const SPOOL_PATH: &str = "/var/spool/postfix";

/// Share of the filesystem reserved for root (not available to Postfix).
const RESERVED_SHARE: f64 = 0.05;
/// How much the daily sawtooth adds by midnight, as a share of the filesystem.
const DAILY_GROWTH_SHARE: f64 = 0.005;
/// Queue files take a little more than the message (envelope records, block rounding).
const QUEUE_FILE_OVERHEAD: f64 = 1.08;
/// Bytes of filesystem per inode.
const BYTES_PER_INODE: u64 = 16 * 1024;
/// Share of the inodes in use without queued mail.
const BASE_INODE_SHARE: f64 = 0.02;

const DAY_US: i64 = 86_400 * 1_000_000;

/// Messages and bytes in one Postfix instance's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauge {
    /// `postfix` or `postfix-out`.
    pub instance: &'static str,
    /// Queued and not yet deferred (incoming and active queues).
    pub active_messages: u64,
    pub active_bytes: u64,
    /// Deferred at least once and still queued.
    pub deferred_messages: u64,
    pub deferred_bytes: u64,
}

/// One host's probe gauges at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct HostGauges {
    /// When they were taken (Unix seconds).
    pub at_unix_secs: i64,
    /// The main instance, then `postfix-out`.
    pub queues: [QueueGauge; 2],
    pub spool_size_bytes: u64,
    /// Free bytes (`f_bfree`).
    pub spool_free_bytes: u64,
    /// Bytes available to non-root processes such as Postfix (`f_bavail`).
    pub spool_avail_bytes: u64,
    /// Inodes of the filesystem (`f_files`).
    pub spool_inodes: u64,
    /// Inodes available to non-root processes (`f_favail`).
    pub spool_avail_inodes: u64,
}

impl HostGauges {
    /// Bytes in use on the spool filesystem.
    pub fn spool_used_bytes(&self) -> u64 {
        self.spool_size_bytes - self.spool_free_bytes
    }

    /// The gauges as the agent ships them: `queue_messages` and `queue_bytes` (labels `host`,
    /// `instance`, `queue` = `active` | `deferred`), and `filesystem_size_bytes`,
    /// `filesystem_free_bytes`, `filesystem_avail_bytes`, `filesystem_inodes`,
    /// `filesystem_avail_inodes`, `filesystem_up` (labels `host`, `path`), all in the window
    /// starting at `window_start_unix_secs`.
    pub fn to_samples(
        &self,
        host: &str,
        window_start_unix_secs: i64,
        window_secs: u32,
    ) -> Vec<pb::Sample> {
        let gauge = |metric: &str, labels: &[(&str, &str)], value: f64| pb::Sample {
            metric: metric.to_owned(),
            labels: labels
                .iter()
                .map(|(name, value)| pb::Label {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
            window_start_unix_ms: window_start_unix_secs.saturating_mul(1000),
            window_secs,
            value: Some(sample::Value::Gauge(value)),
        };
        let mut out = Vec::with_capacity(14);
        for q in &self.queues {
            for (queue, messages, bytes) in [
                ("active", q.active_messages, q.active_bytes),
                ("deferred", q.deferred_messages, q.deferred_bytes),
            ] {
                let labels = [("host", host), ("instance", q.instance), ("queue", queue)];
                out.push(gauge("queue_messages", &labels, messages as f64));
                out.push(gauge("queue_bytes", &labels, bytes as f64));
            }
        }
        let labels = [("host", host), ("path", SPOOL_PATH)];
        out.push(gauge(
            "filesystem_size_bytes",
            &labels,
            self.spool_size_bytes as f64,
        ));
        out.push(gauge(
            "filesystem_free_bytes",
            &labels,
            self.spool_free_bytes as f64,
        ));
        out.push(gauge(
            "filesystem_avail_bytes",
            &labels,
            self.spool_avail_bytes as f64,
        ));
        out.push(gauge(
            "filesystem_inodes",
            &labels,
            self.spool_inodes as f64,
        ));
        out.push(gauge(
            "filesystem_avail_inodes",
            &labels,
            self.spool_avail_inodes as f64,
        ));
        out.push(gauge("filesystem_up", &labels, 1.0));
        out
    }
}

/// The spool filesystem of one host; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct SpoolModel {
    size_bytes: u64,
    base_used_bytes: u64,
    /// Active fills: (start µs, end µs, bytes per second).
    fills: Vec<(i64, i64, f64)>,
}

impl SpoolModel {
    pub(crate) fn new(size_bytes: u64, base_used_share: f64, fills: Vec<(i64, i64, f64)>) -> Self {
        Self {
            size_bytes,
            base_used_bytes: (size_bytes as f64 * base_used_share) as u64,
            fills,
        }
    }

    /// The gauges at `at` (µs) with the generator's queues as they are then.
    pub(crate) fn gauges(&self, at: i64, queues: [QueueLoad; 2]) -> HostGauges {
        let size = self.size_bytes as f64;
        let day_share = at.rem_euclid(DAY_US) as f64 / DAY_US as f64;
        let queued: u64 = queues.iter().map(|q| q.bytes).sum();
        let filled: f64 = self
            .fills
            .iter()
            .filter(|(start, end, _)| *start <= at && at < *end)
            .map(|(start, _, per_sec)| per_sec * (at - start) as f64 / 1e6)
            .sum();
        let used = self.base_used_bytes as f64
            + size * DAILY_GROWTH_SHARE * day_share
            + queued as f64 * QUEUE_FILE_OVERHEAD
            + filled;
        let used = used.clamp(0.0, size) as u64;
        let free = self.size_bytes - used;
        let reserved = (size * RESERVED_SHARE) as u64;
        let inodes = (self.size_bytes / BYTES_PER_INODE).max(1);
        let queue_files: u64 = queues
            .iter()
            .map(|q| q.messages + q.deferred_messages)
            .sum();
        let used_inodes = ((inodes as f64 * BASE_INODE_SHARE) as u64 + queue_files).min(inodes);
        let queue = |instance, q: &QueueLoad| QueueGauge {
            instance,
            active_messages: q.messages - q.deferred_messages.min(q.messages),
            active_bytes: q.bytes - q.deferred_bytes.min(q.bytes),
            deferred_messages: q.deferred_messages,
            deferred_bytes: q.deferred_bytes,
        };
        HostGauges {
            at_unix_secs: at.div_euclid(1_000_000),
            queues: [
                queue("postfix", &queues[0]),
                queue("postfix-out", &queues[1]),
            ],
            spool_size_bytes: self.size_bytes,
            spool_free_bytes: free,
            spool_avail_bytes: free.saturating_sub(reserved),
            spool_inodes: inodes,
            spool_avail_inodes: inodes - used_inodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_grows_while_active_and_is_freed_after() {
        let hour = 3_600_000_000;
        let model = SpoolModel::new(100_000_000_000, 0.3, vec![(hour, 3 * hour, 1_000_000.0)]);
        let free = |at| model.gauges(at, [QueueLoad::default(); 2]).spool_free_bytes;
        let before = free(hour - 1);
        let during = free(3 * hour - 1);
        let after = free(3 * hour);
        let grew = before - during;
        assert!(
            (7_100_000_000..7_300_000_000).contains(&grew),
            "two hours at 1 MB/s fill about 7.2 GB, got {grew}"
        );
        assert!(
            after > during && before - after < 100_000_000,
            "freed after the end"
        );
    }

    #[test]
    fn inodes_follow_the_queue_not_the_fill() {
        let hour = 3_600_000_000;
        let model = SpoolModel::new(16 * 1024 * 100_000, 0.3, vec![(0, 2 * hour, 1e9)]);
        let queued = QueueLoad {
            messages: 50,
            bytes: 5_000_000,
            deferred_messages: 20,
            deferred_bytes: 2_000_000,
        };
        let idle = model.gauges(3 * hour, [QueueLoad::default(); 2]);
        let filling = model.gauges(hour, [QueueLoad::default(); 2]);
        let busy = model.gauges(3 * hour, [queued, QueueLoad::default()]);
        assert_eq!(idle.spool_inodes, 100_000);
        assert_eq!(idle.spool_avail_inodes, 98_000);
        assert_eq!(filling.spool_avail_inodes, idle.spool_avail_inodes);
        assert_eq!(busy.spool_avail_inodes, 98_000 - 70);
        let samples = busy.to_samples("mx1", 0, 60);
        let value = |metric: &str| {
            samples
                .iter()
                .find(|s| s.metric == metric)
                .and_then(|s| match s.value {
                    Some(sample::Value::Gauge(v)) => Some(v),
                    _ => None,
                })
        };
        assert_eq!(value("filesystem_inodes"), Some(100_000.0));
        assert_eq!(value("filesystem_avail_inodes"), Some(97_930.0));
    }

    #[test]
    fn used_never_exceeds_the_size() {
        let model = SpoolModel::new(1_000, 0.9, vec![(0, i64::MAX, 1e9)]);
        let g = model.gauges(10_000_000, [QueueLoad::default(); 2]);
        assert_eq!(g.spool_free_bytes, 0);
        assert_eq!(g.spool_avail_bytes, 0);
        assert_eq!(g.spool_used_bytes(), 1_000);
    }
}
