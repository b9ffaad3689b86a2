//! [`QueueConfig`]: how the queue watcher finds instances and reads their queues.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::snapshot::DEFAULT_MAX_DOMAINS;

/// Where Debian and the Postfix defaults put the default instance's queue.
pub const DEFAULT_QUEUE_DIRECTORY: &str = "/var/spool/postfix";

/// The queue snapshot settings; the `[queue]` section of the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Watch the queues at all (default true).
    pub enabled: bool,
    /// Seconds between snapshots (default 60).
    pub interval_secs: u64,
    /// The `postqueue` command (default `/usr/sbin/postqueue`).
    pub postqueue: PathBuf,
    /// The `postmulti` command, for instance discovery (default `/usr/sbin/postmulti`).
    pub postmulti: PathBuf,
    /// The `postconf` command, for each instance's `syslog_name` and `queue_directory` (default
    /// `/usr/sbin/postconf`).
    pub postconf: PathBuf,
    /// A command still running after this many seconds is killed and counts as failed
    /// (default 30).
    pub command_timeout_secs: u64,
    /// Instances to watch instead of discovering them with `postmulti -l` (default: discover).
    pub instances: Vec<InstanceConfig>,
    /// Queue directory of the default instance, instead of asking `postconf`; used by the
    /// directory scan.
    pub queue_directory: Option<PathBuf>,
    /// Deferred recipient domains reported by name (by recipients, descending); the rest are
    /// summed into `domain="other"` (default 50).
    pub top_k_domains: usize,
    /// Distinct deferred recipient domains counted by name during one snapshot; further ones go
    /// to `other` at once (default 10 000). Bounds memory whatever the queue holds.
    pub max_domains: usize,
    /// Read the queue with `postqueue -j` (default true); false scans the queue directory only
    /// (no recipients, domains or reasons then).
    pub use_postqueue: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            postqueue: PathBuf::from("/usr/sbin/postqueue"),
            postmulti: PathBuf::from("/usr/sbin/postmulti"),
            postconf: PathBuf::from("/usr/sbin/postconf"),
            command_timeout_secs: 30,
            instances: Vec::new(),
            queue_directory: None,
            top_k_domains: 50,
            max_domains: DEFAULT_MAX_DOMAINS,
            use_postqueue: true,
        }
    }
}

impl QueueConfig {
    /// Time between snapshots (at least 1 s).
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }

    /// Time a command may run (at least 1 s).
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs.max(1))
    }

    /// Checks what serde cannot: positive durations, named and distinct instances.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 {
            return Err("queue.interval_secs must be at least 1".into());
        }
        if self.command_timeout_secs == 0 {
            return Err("queue.command_timeout_secs must be at least 1".into());
        }
        for (i, instance) in self.instances.iter().enumerate() {
            if instance.name.trim().is_empty() {
                return Err(format!("queue.instances[{i}].name is empty"));
            }
            if self.instances[..i].iter().any(|o| o.name == instance.name) {
                return Err(format!(
                    "queue.instances[{i}].name {:?} is listed twice",
                    instance.name
                ));
            }
        }
        Ok(())
    }
}

/// One Postfix instance to watch, given explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The `instance` label: the instance's `syslog_name` (`postfix`, `postfix-out`), so that
    /// queue samples join the log samples.
    pub name: String,
    /// Its configuration directory (`postqueue -c`, `postconf -c`).
    pub config_directory: PathBuf,
    /// Its queue directory for the directory scan; asked from `postconf` when absent.
    #[serde(default)]
    pub queue_directory: Option<PathBuf>,
}
