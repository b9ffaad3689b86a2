//! [`AgentRunOptions`]: what the agent runs with, independent of how the configuration file
//! looks.

use std::path::PathBuf;

use crate::aggregate::AggregatorConfig;
use crate::capacity::CapacityConfig;
use crate::dns::config::DnsConfig;
use crate::parse::LogFormat;
use crate::queue::QueueConfig;
use crate::secret::Secret;
use crate::ship::outbox::DEFAULT_MAX_REJECTED_BYTES;
use crate::ship::{ClientTls, DEFAULT_OUTBOX_MAX_BYTES};
use crate::traffic::TrafficConfig;

/// Everything [`run_agent`] needs, independent of how the configuration file looks.
#[derive(Debug, Clone)]
pub struct AgentRunOptions {
    /// Stable identity of the agent.
    pub agent_id: String,
    /// Host name reported in `Hello` and on self-metrics.
    pub host: String,
    /// Log files to follow.
    pub files: Vec<PathBuf>,
    /// Log line format.
    pub format: LogFormat,
    /// UTC offset assumed for timestamps without one (BSD syslog, maillog_file).
    pub utc_offset_secs: i32,
    /// Holds `checkpoints.json` and `outbox/`.
    pub state_dir: PathBuf,
    /// Collector endpoint (`http://` or `https://`).
    pub collector_url: String,
    /// Bearer token for the collector (redacted in `Debug` output).
    pub token: Option<Secret>,
    /// TLS (CA, client certificate and key, server name).
    pub tls: Option<ClientTls>,
    /// Aggregation window (default 60 s).
    pub window_secs: u32,
    /// How often a batch is cut even while the window is open (default 10 s).
    pub flush_interval_secs: u32,
    /// Recipient domains kept by name per window (default 50).
    pub top_k_domains: usize,
    /// Relay hosts kept by name per window (default 20).
    pub top_k_relays: usize,
    /// Bound of the outbox in bytes (default 256 MiB).
    pub outbox_max_bytes: u64,
    /// Bound of the outbox's `rejected/` directory in bytes (default 64 MiB).
    pub outbox_max_rejected_bytes: u64,
    /// Longest label value in bytes; longer ones are cut with a hash suffix (default 128).
    pub max_label_bytes: usize,
    /// Values of one open label ranked per window (default 1024).
    pub max_tracked_label_values: usize,
    /// Bytes of ranked label values per window (default 256 KiB).
    pub max_tracked_label_bytes: usize,
    /// Distinct log hosts kept by name (default 4); further ones become `other`.
    pub max_hosts: usize,
    /// Distinct Postfix instances kept by name (default 16); further ones become `other`.
    pub max_instances: usize,
    /// How often the tracker's state is saved with the read positions (default 60 s).
    pub tracker_snapshot_interval_secs: u64,
    /// Ship raw events too (default false).
    pub include_events: bool,
    /// Most batches sent and not yet acknowledged (default 64).
    pub max_in_flight: usize,
    /// SMTP traffic signals (default on, plain usernames, top-50 networks and users).
    pub traffic: TrafficConfig,
    /// Queue snapshots (default none).
    pub queue: Option<QueueConfig>,
    /// Filesystem and process capacity signals (default none).
    pub capacity: Option<CapacityConfig>,
    /// DNS and reputation probes (default none).
    pub dns: Option<DnsConfig>,
    /// Remediation actions the collector may ask for (default none: all refused).
    pub actions: Option<crate::act::ActionsConfig>,
    /// Feedback-loop complaints read from a Maildir (default none).
    pub complaints: Option<crate::complaints::ComplaintsConfig>,
}

impl AgentRunOptions {
    /// Options with every default: auto-detected format, UTC, 60 s windows, 10 s flushes,
    /// top-50 domains and top-20 relays, 256 MiB outbox, no raw events, no token, no TLS.
    pub fn new(
        agent_id: impl Into<String>,
        host: impl Into<String>,
        files: Vec<PathBuf>,
        state_dir: impl Into<PathBuf>,
        collector_url: impl Into<String>,
    ) -> Self {
        let agg = AggregatorConfig::default();
        Self {
            agent_id: agent_id.into(),
            host: host.into(),
            files,
            format: LogFormat::Auto,
            utc_offset_secs: 0,
            state_dir: state_dir.into(),
            collector_url: collector_url.into(),
            token: None,
            tls: None,
            window_secs: agg.window_secs,
            flush_interval_secs: 10,
            top_k_domains: agg.top_k_domains,
            top_k_relays: agg.top_k_relays,
            outbox_max_bytes: DEFAULT_OUTBOX_MAX_BYTES,
            outbox_max_rejected_bytes: DEFAULT_MAX_REJECTED_BYTES,
            max_label_bytes: agg.max_label_bytes,
            max_tracked_label_values: agg.max_tracked_label_values,
            max_tracked_label_bytes: agg.max_tracked_label_bytes,
            max_hosts: crate::pipeline::DEFAULT_MAX_HOSTS,
            max_instances: crate::pipeline::DEFAULT_MAX_INSTANCES,
            tracker_snapshot_interval_secs: 60,
            include_events: false,
            max_in_flight: 64,
            traffic: TrafficConfig::default(),
            queue: None,
            capacity: None,
            dns: None,
            actions: None,
            complaints: None,
        }
    }
}
