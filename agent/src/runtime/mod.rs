//! The agent's runtime: [`run_agent`] starts the sample sources, the outbox and the shipper, and
//! stops them in order.
//!
//! Three kinds of sample sources append batches to the [`Outbox`]:
//! - the log reader thread (`reader.rs`: tailer → [`LineProcessor`] → [`Aggregator`]) cuts a
//!   [`Batch`](mailpulse_proto::v1::Batch) every `flush_interval_secs` (or when
//!   [`MAX_PENDING_SAMPLES`] are pending) together with the positions of the last line consumed
//!   per file;
//! - the host-probe thread (`periodic.rs`) polls the queues and the capacity signals;
//! - the DNS prober task (`dns.rs`) batches its rounds.
//!
//! The [`Shipper`] sends outbox batches in `seq` order and, on acknowledgement, advances and
//! saves the file checkpoints, then deletes the batch.
//!
//! On start the reader resumes each file after the higher of its checkpoint and the last position
//! a pending outbox batch covers: lines in the outbox are durable already and must not be read
//! again, lines after the checkpoint but not in the outbox were never shipped. The message
//! tracker's state is restored from `tracker.json` (saved with the positions it corresponds
//! to, see `tracker_state.rs`), and the lines between those positions and the resume positions
//! are replayed into it without producing anything, so a restart does not count a retried
//! message again.
//!
//! Background tasks are supervised (`supervise.rs`): the host probes and the DNS prober are
//! restarted after a pause when they fail (an outbox error on a full disk), the log reader keeps
//! a batch the outbox cannot take and appends it again later, and the shipper retries
//! committing acknowledgements; failures and up states are self-metrics
//! (`agent_task_failures{task}`, `agent_task_up{task}`).
//!
//! Stopping goes through one [`CancellationToken`] and its children, in order: the log reader
//! and the host probes first (the reader cuts a last batch of what it consumed), then the
//! shipper, which gets its grace period to have pending batches acknowledged, then the DNS
//! prober (it appends its pending rounds). What is not acknowledged stays in the outbox for the
//! next start. Threads look at the token with `is_cancelled`, tasks await `cancelled`.
//!
//! [`LineProcessor`]: crate::pipeline::LineProcessor
//! [`Aggregator`]: crate::aggregate::Aggregator

mod dns;
mod error;
mod options;
pub mod periodic;
mod reader;
mod supervise;
mod tracker_state;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::aggregate::AggregatorConfig;
use crate::capacity::CapacityProbe;
use crate::pipeline::OriginLimits;
use crate::queue::{QueueConfig, QueueWatcher};
use crate::ship::{Outbox, OutboxConfig, Shipper, ShipperConfig};
use crate::source::{Checkpoints, TailConfig};
use supervise::{TaskHealth, supervise, supervise_blocking, task};
use tracker_state::SavedTracker;

pub use error::AgentError;
pub use options::AgentRunOptions;
pub use periodic::{HostProbes, PeriodicSource};
pub use reader::MAX_PENDING_SAMPLES;
pub use tracker_state::TRACKER_STATE_FILE;

/// Name of the checkpoint file in the state directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";
/// Name of the outbox directory in the state directory.
pub const OUTBOX_DIR: &str = "outbox";

/// Runs the agent until `shutdown` completes: reads the logs, aggregates, makes batches durable
/// in the outbox and ships them. On shutdown the reader cuts a last batch and the shipper gets
/// 2 s to have pending batches acknowledged; what is left stays in the outbox for the next start.
pub async fn run_agent<F>(opts: AgentRunOptions, shutdown: F) -> Result<(), AgentError>
where
    F: Future<Output = ()> + Send,
{
    if opts.files.is_empty() {
        return Err(AgentError::InvalidConfig("no log files to follow".into()));
    }
    opts.traffic.validate().map_err(AgentError::InvalidConfig)?;
    if let Some(queue) = &opts.queue {
        queue.validate().map_err(AgentError::InvalidConfig)?;
    }
    if let Some(dns) = &opts.dns {
        dns.validate().map_err(AgentError::InvalidConfig)?;
    }
    std::fs::create_dir_all(&opts.state_dir).map_err(|source| AgentError::StateDir {
        path: opts.state_dir.clone(),
        source,
    })?;
    let checkpoint_path = opts.state_dir.join(CHECKPOINT_FILE);
    let mut checkpoints = Checkpoints::load(&checkpoint_path)?;
    let outbox = Outbox::open(
        &opts.state_dir.join(OUTBOX_DIR),
        OutboxConfig {
            max_bytes: opts.outbox_max_bytes,
            max_label_bytes: opts.max_label_bytes,
            max_rejected_bytes: opts.outbox_max_rejected_bytes,
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
        incarnation = outbox.incarnation(),
        "outbox opened"
    );
    let tracker_path = opts.state_dir.join(TRACKER_STATE_FILE);
    let saved = SavedTracker::load(&tracker_path);
    let saved = match saved {
        Some(saved) if saved.consistent_with(&start) => Some(saved),
        Some(_) => {
            tracing::warn!(
                "the saved tracker state is ahead of the outbox and checkpoints (batches were \
                 dropped or refused); starting with an empty tracker"
            );
            None
        }
        None => None,
    };
    let restored = saved.is_some();
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
            max_label_bytes: opts.max_label_bytes,
            max_tracked_label_values: opts.max_tracked_label_values,
            max_tracked_label_bytes: opts.max_tracked_label_bytes,
            ..AggregatorConfig::default()
        },
        flush_interval: Duration::from_secs(u64::from(opts.flush_interval_secs.max(1))),
        include_events: opts.include_events,
        traffic: opts.traffic.clone(),
        senders: senders.clone(),
        origin_limits: OriginLimits {
            max_hosts: opts.max_hosts.max(1),
            max_instances: opts.max_instances.max(1),
        },
        tracker_state: tracker_path,
        tracker_state_interval: Duration::from_secs(opts.tracker_snapshot_interval_secs.max(1)),
    };
    let health = Arc::new(TaskHealth::default());
    let mut reader = reader::Reader::new(
        reader_cfg,
        &start,
        saved,
        outbox.clone(),
        appended.clone(),
        health.clone(),
    )?;
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
    if !restored {
        reader.save_initial_tracker_state();
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
    let mut shipper = Shipper::new(ship_cfg, outbox.clone(), appended.clone(), checkpoints)?;
    if let Some(actions) = &opts.actions {
        actions
            .validate()
            .map_err(|e| AgentError::InvalidConfig(format!("[actions]: {e}")))?;
        shipper = shipper.with_actions(Arc::new(crate::act::Executor::new(
            actions.clone(),
            opts.state_dir.clone(),
        )));
    }
    reader.report_shipper(shipper.stats());

    // One token stops everything; its children stop the readers (log reader and host probes)
    // and the shipper apart, so the shipper can outlive the readers by its grace period. Leaving
    // this function any way cancels them all.
    let stop_all = CancellationToken::new();
    let _stop_all_on_return = stop_all.clone().drop_guard();
    let stop_reading = stop_all.child_token();
    let stop_shipping = stop_all.child_token();
    let reader_stop = stop_reading.clone();
    let mut reader_task = tokio::task::spawn_blocking(move || reader.run(&reader_stop));
    let mut periodic_sources: Vec<Box<dyn PeriodicSource>> = Vec::new();
    if let Some(probes) = host_probes(&opts) {
        periodic_sources.push(Box::new(probes));
    }
    if let Some(reader) = opts
        .complaints
        .clone()
        .and_then(crate::complaints::ComplaintsReader::new)
    {
        periodic_sources.push(Box::new(reader));
    }
    let probe_task = (!periodic_sources.is_empty())
        .then_some(periodic_sources)
        .map(|mut sources| {
            let (stop, outbox, appended) = (stop_reading.clone(), outbox.clone(), appended.clone());
            let (host, window_secs) = (opts.host.clone(), opts.window_secs.max(1));
            let health = health.clone();
            tokio::task::spawn_blocking(move || {
                supervise_blocking(task::HOST_PROBES, &health, &stop, |backoff| {
                    let mut healthy = || {
                        health.up(task::HOST_PROBES);
                        backoff.reset();
                    };
                    periodic::run_periodic(
                        &mut sources,
                        &host,
                        window_secs,
                        &outbox,
                        &appended,
                        &stop,
                        &mut healthy,
                    )
                });
                Ok::<(), AgentError>(())
            })
        });
    let dns_task = match opts.dns.as_ref().filter(|d| d.active()) {
        Some(cfg) => {
            let stop = stop_all.child_token();
            let (cfg, host, window_secs) =
                (cfg.clone(), opts.host.clone(), opts.window_secs.max(1));
            let (outbox, appended, senders, health) = (
                outbox.clone(),
                appended.clone(),
                senders.clone(),
                health.clone(),
            );
            // A configuration error shows at once; later failures are restarted.
            let first = dns::spawn_dns(
                &cfg,
                host.clone(),
                window_secs,
                outbox.clone(),
                appended.clone(),
                stop.clone(),
                senders.clone(),
                health.clone(),
            )?;
            let mut first = Some(first);
            Some(tokio::spawn(async move {
                let start = || match first.take() {
                    Some(task) => Ok(task),
                    None => dns::spawn_dns(
                        &cfg,
                        host.clone(),
                        window_secs,
                        outbox.clone(),
                        appended.clone(),
                        stop.clone(),
                        senders.clone(),
                        health.clone(),
                    ),
                };
                supervise(task::DNS_PROBER, &health, &stop, start).await
            }))
        }
        None => None,
    };
    let mut ship_task = tokio::spawn(shipper.run(stop_shipping.clone()));

    tokio::pin!(shutdown);
    let result = tokio::select! {
        _ = &mut shutdown => {
            stop_reading.cancel();
            let read = joined(reader_task.await);
            // The reader's last batch is in the outbox now; give the shipper its grace period.
            stop_shipping.cancel();
            let ship = joined(ship_task.await);
            read.and(ship)
        }
        r = &mut reader_task => {
            stop_shipping.cancel();
            let ship = joined(ship_task.await);
            joined(r).and(ship)
        }
        r = &mut ship_task => {
            stop_reading.cancel();
            let read = joined(reader_task.await);
            joined(r).and(read)
        }
    };
    // The host probes (when the reader ended by itself) and the DNS prober stop last.
    stop_all.cancel();
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

/// What a finished task returned, or [`AgentError::Task`] when it panicked or was cancelled.
fn joined<E: Into<AgentError>>(
    r: Result<Result<(), E>, tokio::task::JoinError>,
) -> Result<(), AgentError> {
    r.map_err(|e| AgentError::Task(e.to_string()))
        .and_then(|r| r.map_err(Into::into))
}

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
