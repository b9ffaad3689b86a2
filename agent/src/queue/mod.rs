//! Postfix queue snapshots: what is waiting in the queues of each instance, as gauges.
//!
//! The logs say what happened to mail; the queue says what has not happened yet. A growing
//! `deferred` queue, one domain holding most of it or an old message in `active` are the first
//! signs of a delivery problem, often before any log line says so. Every `interval_secs` the
//! [`QueueWatcher`] looks at each Postfix instance of the host:
//!
//! - **Instances**: the configured ones, or those `postmulti -l` lists as enabled, or the default
//!   instance when `postmulti` is missing. `postconf -xh syslog_name queue_directory` gives each
//!   one's `instance` label (its `syslog_name`, as in the logs) and queue directory.
//! - **Snapshot**: `postqueue [-c DIR] -j`, streamed line by line into a [`QueueSnapshot`]
//!   ([`summarise_postqueue`]): per queue messages, recipients, bytes, oldest age and an age
//!   histogram; for `deferred` also per recipient domain and per deferral reason class (the
//!   shared [`classify`](crate::classify::classify)). When `postqueue` is off, missing, fails or
//!   times out, the queue directory is scanned instead ([`scan_queue_directory`]): messages,
//!   bytes and ages (from the queue files' arrival time records), no recipients.
//! - **Samples**: gauges per queue, per domain (top-K by recipients + `other`) and per reason
//!   class, growth per second, the snapshot's duration and whether it worked
//!   (`queue_snapshot_up{source}`), and a counter of malformed `postqueue` lines. Metric names are
//!   the constants in this module (`QUEUE_MESSAGES`, …).
//!
//! Architecture invariant: memory does not grow with the queue. `postqueue` output is read one
//! line at a time into one buffer of at most [`MAX_LINE_BYTES`] (longer lines are skipped), at
//! most `max_domains` domains of at most [`MAX_DOMAIN_BYTES`] are tracked by name, and the
//! directory scan holds one directory listing per level and [`HEAD_BYTES`] of one file.
//!
//! Architecture invariant: no input makes the snapshot panic; a line that is not a queue entry is
//! counted in `malformed_lines` and skipped.
//!
//! Architecture invariant: commands run from argv (never a shell), in their own process group,
//! killed with it after `command_timeout_secs`.
//!
//! Architecture invariant: a gauge label set that goes away is emitted once more with 0 (every
//! queue and reason class is always emitted; a vanished domain or `source` once), because the
//! collector keeps a gauge's last value. Values a directory scan cannot know (recipients,
//! domains, reasons) are not emitted then, rather than emitted as 0.

pub(crate) mod command;
mod config;
mod directory;
mod postqueue;
mod samples;
mod snapshot;
mod watcher;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use command::STDERR_KEEP_BYTES;
pub use config::{DEFAULT_QUEUE_DIRECTORY, InstanceConfig, QueueConfig};
pub use directory::{
    HEAD_BYTES, MAX_HASH_DEPTH, REC_TYPE_MESG, REC_TYPE_SIZE, REC_TYPE_TIME, SCANNED_QUEUES,
    queue_file_arrival_time, queue_file_message_size, scan_queue_directory,
};
pub use postqueue::{MAX_LINE_BYTES, SnapshotConfig, summarise_postqueue, try_summarise_postqueue};
pub use samples::{
    AGE_LE_LABELS, QUEUE_AGE_MESSAGES, QUEUE_BYTES, QUEUE_DEFERRED_DOMAIN_MESSAGES,
    QUEUE_DEFERRED_DOMAIN_OLDEST_AGE_SECONDS, QUEUE_DEFERRED_DOMAIN_RECIPIENTS,
    QUEUE_DEFERRED_REASON_RECIPIENTS, QUEUE_GROWTH_MESSAGES_PER_SECOND, QUEUE_MESSAGES,
    QUEUE_OLDEST_AGE_SECONDS, QUEUE_RECIPIENTS, QUEUE_SNAPSHOT_DURATION_SECONDS,
    QUEUE_SNAPSHOT_MALFORMED_LINES, QUEUE_SNAPSHOT_UP,
};
pub use snapshot::{
    AGE_BOUNDS_SECS, AGE_BUCKETS, DEFAULT_MAX_DOMAINS, DomainStats, MAX_DOMAIN_BYTES, QueueName,
    QueueSnapshot, QueueStats, ReasonCounts, SnapshotSource,
};
pub use watcher::{InstanceStatus, MAX_INSTANCES, QueueWatcher};

/// Why a command, the instance discovery or a directory scan failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The command could not be started (missing, not executable).
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// The command ran longer than `command_timeout_secs` and was killed with its process group.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout { command: String, timeout: Duration },
    /// The command exited unsuccessfully (its output, if any, is not used).
    #[error("`{command}` failed ({status}): {stderr}")]
    Exit {
        command: String,
        status: String,
        /// The first [`STDERR_KEEP_BYTES`] of its stderr.
        stderr: String,
    },
    /// Reading the command's output failed.
    #[error("reading the output of `{command}`")]
    Read {
        command: String,
        #[source]
        source: io::Error,
    },
    /// The command printed something this module does not understand.
    #[error("`{command}` printed unexpected output: {detail}")]
    BadOutput { command: String, detail: String },
    /// Finding the instances went wrong in a way that is not one command's failure.
    #[error("instance discovery: {detail}")]
    Discovery { detail: String },
    /// `postqueue` failed and the instance's queue directory is unknown, so nothing is left to try.
    #[error("no queue directory known for instance {instance}")]
    NoQueueDirectory { instance: String },
    /// The queue directory (or one of its queues) could not be scanned.
    #[error("cannot scan queue directory {}", path.display())]
    Scan {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
