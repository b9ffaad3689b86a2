//! Shipping to the collector, exactly once: disk outbox, gRPC shipper, ack-driven checkpoints.
//!
//! [`run_agent`] wires the whole agent: a reader thread (tailer → [`LineProcessor`] →
//! [`Aggregator`]) cuts a [`Batch`](mailpulse_proto::v1::Batch) every `flush_interval_secs` (or
//! when 5 000 samples are pending) together with the positions of the last line consumed per file,
//! and appends it to the [`Outbox`]; the [`Shipper`] sends outbox batches in `seq` order and, on
//! acknowledgement, advances and saves the file checkpoints, then deletes the batch.
//!
//! On start the reader resumes each file after the higher of its checkpoint and the last position
//! a pending outbox batch covers: lines in the outbox are durable already and must not be read
//! again, lines after the checkpoint but not in the outbox were never shipped.
//!
//! Architecture invariant: a batch is in the outbox before it is sent; a checkpoint moves only to
//! positions covered by acknowledged batches, in `seq` order, and is saved before the batch files
//! are deleted.
//!
//! [`LineProcessor`]: crate::pipeline::LineProcessor
//! [`Aggregator`]: crate::aggregate::Aggregator

mod client;
mod dns;
pub mod outbox;
mod periodic;
mod reader;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::aggregate::AggregatorConfig;
use crate::capacity::{CapacityConfig, CapacityProbe};
use crate::dns::config::DnsConfig;
use crate::parse::LogFormat;
use crate::queue::{QueueConfig, QueueWatcher};
use crate::source::{Checkpoints, SourceError, TailConfig};
use crate::traffic::TrafficConfig;

pub use client::{ClientTls, Shipper, ShipperConfig, ShipperStats};
pub use outbox::{
    DEFAULT_OUTBOX_MAX_BYTES, FilePosition, Outbox, OutboxConfig, OutboxError, OutboxStats,
    PendingBatch,
};
pub use periodic::{HostProbes, PeriodicSource};
pub use reader::wire_event;

/// Name of the checkpoint file in the state directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";
/// Name of the outbox directory in the state directory.
pub const OUTBOX_DIR: &str = "outbox";
/// A batch is cut early once this many samples (or raw events) are pending.
pub const MAX_PENDING_SAMPLES: usize = 5_000;

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
    /// Bearer token for the collector.
    pub token: Option<String>,
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
            include_events: false,
            max_in_flight: 64,
            traffic: TrafficConfig::default(),
            queue: None,
            capacity: None,
            dns: None,
        }
    }
}

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The options cannot work.
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(String),
    /// A file named in the options cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The state directory cannot be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Tailing or checkpointing failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A task of the agent panicked or was cancelled.
    #[error("agent task failed: {0}")]
    Task(String),
}

/// Runs the agent until `shutdown` completes: reads the logs, aggregates, makes batches durable
/// in the outbox and ships them. On shutdown the reader cuts a last batch and the shipper gets
/// 2 s to have pending batches acknowledged; what is left stays in the outbox for the next start.
pub async fn run_agent<F>(opts: AgentRunOptions, shutdown: F) -> Result<(), ShipError>
where
    F: Future<Output = ()> + Send,
{
    if opts.files.is_empty() {
        return Err(ShipError::InvalidConfig("no log files to follow".into()));
    }
    opts.traffic.validate().map_err(ShipError::InvalidConfig)?;
    if let Some(queue) = &opts.queue {
        queue.validate().map_err(ShipError::InvalidConfig)?;
    }
    if let Some(dns) = &opts.dns {
        dns.validate().map_err(ShipError::InvalidConfig)?;
    }
    std::fs::create_dir_all(&opts.state_dir).map_err(|source| ShipError::StateDir {
        path: opts.state_dir.clone(),
        source,
    })?;
    let checkpoint_path = opts.state_dir.join(CHECKPOINT_FILE);
    let mut checkpoints = Checkpoints::load(&checkpoint_path)?;
    let outbox = Outbox::open(
        &opts.state_dir.join(OUTBOX_DIR),
        OutboxConfig {
            max_bytes: opts.outbox_max_bytes,
        },
    )?;
    // Where reading starts: after the checkpoint, or after what the outbox already holds. This
    // copy is only handed to the tailer, never saved: the real checkpoint waits for acks.
    let mut start = Checkpoints::load(&checkpoint_path)?;
    for (file, offset) in outbox.resume_positions() {
        start.ack(file, offset);
    }
    tracing::info!(
        pending_batches = outbox.len(),
        next_seq = outbox.next_seq(),
        "outbox opened"
    );
    let outbox = Arc::new(Mutex::new(outbox));
    let appended = Arc::new(Notify::new());
    // Sender domains from the logs, for the prober's SPF evaluation of the sending IPs.
    let senders = opts
        .dns
        .as_ref()
        .filter(|d| d.active() && !d.sending_ips.is_empty())
        .map(|_| Arc::new(Mutex::new(crate::dns::senders::SenderDomains::new())));
    let reader_cfg = reader::ReaderConfig {
        tail: TailConfig::new(opts.files.clone()),
        format: opts.format,
        utc_offset_secs: opts.utc_offset_secs,
        host: opts.host.clone(),
        aggregator: AggregatorConfig {
            window_secs: opts.window_secs.max(1),
            top_k_domains: opts.top_k_domains,
            top_k_relays: opts.top_k_relays,
            top_k_client_nets: opts.traffic.top_k_client_nets,
            top_k_users: opts.traffic.top_k_users,
            ..AggregatorConfig::default()
        },
        flush_interval: Duration::from_secs(u64::from(opts.flush_interval_secs.max(1))),
        include_events: opts.include_events,
        traffic: opts.traffic.clone(),
        senders: senders.clone(),
    };
    let reader = reader::Reader::new(reader_cfg, &start, outbox.clone(), appended.clone())?;
    // Files neither the checkpoints nor the outbox know are recorded at their start offset and
    // saved before the first line is read (see `Tailer::start_positions`).
    let unknown: Vec<_> = reader
        .start_positions()
        .iter()
        .filter(|p| start.get(&p.file).is_none())
        .cloned()
        .collect();
    if checkpoints.register_start(&unknown) > 0 {
        checkpoints.save(&checkpoint_path)?;
    }

    let mut ship_cfg = ShipperConfig::new(
        opts.agent_id.clone(),
        opts.host.clone(),
        opts.collector_url.clone(),
        checkpoint_path,
    );
    ship_cfg.token = opts.token.clone();
    ship_cfg.tls = opts.tls.clone();
    ship_cfg.max_in_flight = opts.max_in_flight.max(1);
    ship_cfg.watched_paths = opts.files.clone();
    let shipper = Shipper::new(ship_cfg, outbox.clone(), appended.clone(), checkpoints)?;

    let stop = Arc::new(AtomicBool::new(false));
    let reader_stop = stop.clone();
    let mut reader_task = tokio::task::spawn_blocking(move || reader.run(&reader_stop));
    let probes = host_probes(&opts);
    let probe_task = probes.map(|probes| {
        let (stop, outbox, appended) = (stop.clone(), outbox.clone(), appended.clone());
        let (host, window_secs) = (opts.host.clone(), opts.window_secs.max(1));
        tokio::task::spawn_blocking(move || {
            let sources: Vec<Box<dyn PeriodicSource>> = vec![Box::new(probes)];
            periodic::run_periodic(sources, &host, window_secs, &outbox, &appended, &stop)
        })
    });
    let (dns_stop, dns_rx) = watch::channel(false);
    let dns_task = match opts.dns.as_ref().filter(|d| d.active()) {
        Some(cfg) => Some(dns::spawn_dns(
            cfg,
            opts.host.clone(),
            opts.window_secs.max(1),
            outbox.clone(),
            appended.clone(),
            dns_rx,
            senders.clone(),
        )?),
        None => None,
    };
    let (ship_stop, ship_rx) = watch::channel(false);
    let mut ship_task = tokio::spawn(shipper.run(ship_rx));

    let joined = |r: Result<Result<(), ShipError>, tokio::task::JoinError>| {
        r.map_err(|e| ShipError::Task(e.to_string()))
            .and_then(|r| r)
    };
    tokio::pin!(shutdown);
    let result = tokio::select! {
        _ = &mut shutdown => {
            stop.store(true, Ordering::Release);
            let read = joined(reader_task.await);
            // The reader's last batch is in the outbox now; give the shipper its grace period.
            let _ = ship_stop.send(true);
            let ship = joined(ship_task.await);
            read.and(ship)
        }
        r = &mut reader_task => {
            let _ = ship_stop.send(true);
            let ship = joined(ship_task.await);
            joined(r).and(ship)
        }
        r = &mut ship_task => {
            stop.store(true, Ordering::Release);
            let read = joined(reader_task.await);
            joined(r).and(read)
        }
    };
    stop.store(true, Ordering::Release);
    let _ = dns_stop.send(true);
    let dns_done = match dns_task {
        Some(task) => match tokio::time::timeout(PROBE_STOP_GRACE, task).await {
            Ok(r) => joined(r),
            Err(_) => Ok(()),
        },
        None => Ok(()),
    };
    let probed = match probe_task {
        // A poll in progress (a slow `postqueue`) is not waited for beyond a moment: whatever it
        // appends later stays in the outbox for the next start.
        Some(task) => match tokio::time::timeout(PROBE_STOP_GRACE, task).await {
            Ok(r) => joined(r),
            Err(_) => Ok(()),
        },
        None => Ok(()),
    };
    result.and(probed).and(dns_done)
}

/// How long a stopping agent waits for a poll of the host probes to finish.
const PROBE_STOP_GRACE: Duration = Duration::from_secs(2);

/// The host probes the options ask for, if any.
fn host_probes(opts: &AgentRunOptions) -> Option<HostProbes> {
    let queue = opts
        .queue
        .clone()
        .filter(|q| q.enabled)
        .map(QueueWatcher::new);
    let interval = opts
        .queue
        .as_ref()
        .map_or(Duration::from_secs(60), QueueConfig::interval);
    let capacity = opts.capacity.clone().filter(|c| c.enabled).map(|c| {
        let mut probe = CapacityProbe::new(c);
        probe.add_path(opts.state_dir.clone());
        for file in &opts.files {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                probe.add_path(dir.to_path_buf());
            }
        }
        probe
    });
    HostProbes::new(queue, capacity, interval)
}

/// Locks a mutex shared between the reader and the shipper. A panic in the other holder does not
/// leave the outbox or checkpoints half-changed in memory (every change is one call), so the
/// poison is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
