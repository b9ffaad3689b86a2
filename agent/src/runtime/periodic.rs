//! Periodic sources: samples that come from polling the host (queue snapshots, filesystems,
//! process counts) rather than from the logs.
//!
//! One thread polls every source when it is due and appends what it returns to the outbox as a
//! batch of its own (no file positions: nothing to checkpoint), so polled samples get the same
//! exactly-once delivery as log samples. A slow source (a `postqueue` of a huge queue) delays
//! the others but never the log reader. An outbox error (a full disk) ends [`run_periodic`];
//! the runtime supervises it and starts it again after a pause, so the gauges come back once
//! the disk has room.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailpulse_proto::v1 as pb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use crate::aggregate::unix_ms;
use crate::capacity::CapacityProbe;
use crate::queue::QueueWatcher;
use crate::ship::{Outbox, lock};

/// Something polled on a schedule.
pub trait PeriodicSource: Send {
    /// For logs.
    fn name(&self) -> &'static str;
    /// Time between two polls.
    fn interval(&self) -> Duration;
    /// One poll: samples stamped with the window of `now_unix_ms`.
    fn poll(&mut self, now_unix_ms: i64, host: &str, window_secs: u32) -> Vec<pb::Sample>;
    /// The last poll's samples are in the outbox (a source that consumes its input — moves a
    /// file — does it now, so a failed append loses nothing).
    fn committed(&mut self) {}
}

/// How often the thread looks at its cancellation token while waiting.
const STOP_TICK: Duration = Duration::from_millis(100);

/// Polls `sources` until `stop` is cancelled: each one at start and then every interval. Runs on
/// the calling thread. `healthy` is called after every poll that went through (its samples are
/// in the outbox); an outbox error ends the run.
pub(crate) fn run_periodic(
    sources: &mut [Box<dyn PeriodicSource>],
    host: &str,
    window_secs: u32,
    outbox: &Mutex<Outbox>,
    appended: &Notify,
    stop: &CancellationToken,
    healthy: &mut dyn FnMut(),
) -> Result<(), AgentError> {
    let start = Instant::now();
    let mut due: Vec<Instant> = vec![start; sources.len()];
    while !stop.is_cancelled() {
        let now = Instant::now();
        for (source, next) in sources.iter_mut().zip(due.iter_mut()) {
            if *next > now {
                continue;
            }
            let samples = source.poll(unix_ms(), host, window_secs);
            *next = now + source.interval().max(Duration::from_secs(1));
            if samples.is_empty() {
                healthy();
                continue;
            }
            let batch = pb::Batch {
                created_unix_ms: unix_ms(),
                samples,
                ..pb::Batch::default()
            };
            let seq = lock(outbox).append(batch, &[])?;
            source.committed();
            tracing::debug!(seq, source = source.name(), "polled samples appended");
            appended.notify_one();
            healthy();
        }
        let Some(earliest) = due.iter().min().copied() else {
            return Ok(());
        };
        let wait = earliest.saturating_duration_since(Instant::now());
        std::thread::sleep(wait.min(STOP_TICK));
    }
    Ok(())
}

/// Instance label and configuration directory of the default Postfix instance, for capacity
/// probes when the queue watcher does not run (or has not found the instances yet).
const DEFAULT_INSTANCE: (&str, &str) = ("postfix", "/etc/postfix");

/// The host's Postfix probes in one poll: queue snapshots, then filesystems and processes of
/// the instances the queue watcher found (each queue directory's filesystem is measured too).
pub struct HostProbes {
    queue: Option<QueueWatcher>,
    capacity: Option<CapacityProbe>,
    interval: Duration,
    /// Queue directories already handed to the capacity probe.
    measured: BTreeSet<PathBuf>,
}

impl HostProbes {
    /// `None` when there is nothing to poll.
    pub fn new(
        queue: Option<QueueWatcher>,
        capacity: Option<CapacityProbe>,
        interval: Duration,
    ) -> Option<Self> {
        (queue.is_some() || capacity.is_some()).then(|| Self {
            queue,
            capacity,
            interval,
            measured: BTreeSet::new(),
        })
    }
}

impl PeriodicSource for HostProbes {
    fn name(&self) -> &'static str {
        "postfix-host"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn poll(&mut self, now_unix_ms: i64, host: &str, window_secs: u32) -> Vec<pb::Sample> {
        let mut samples = Vec::new();
        let mut instances: Vec<(String, PathBuf)> = Vec::new();
        if let Some(queue) = &mut self.queue {
            samples.extend(queue.poll(now_unix_ms, host, window_secs));
            for status in queue.instances() {
                let config_dir = status
                    .config_directory
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_INSTANCE.1));
                instances.push((status.name.clone(), config_dir));
                if let (Some(dir), Some(capacity)) = (&status.queue_directory, &mut self.capacity)
                    && self.measured.insert(dir.clone())
                {
                    capacity.add_path(dir.clone());
                }
            }
        }
        if let Some(capacity) = &mut self.capacity {
            if instances.is_empty() {
                instances.push((DEFAULT_INSTANCE.0.into(), DEFAULT_INSTANCE.1.into()));
            }
            samples.extend(capacity.poll(now_unix_ms, host, window_secs, &instances));
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ship::OutboxConfig;

    struct Counting {
        polls: Arc<AtomicUsize>,
        interval: Duration,
        empty: bool,
    }

    impl PeriodicSource for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn interval(&self) -> Duration {
            self.interval
        }
        fn poll(&mut self, now_unix_ms: i64, host: &str, window_secs: u32) -> Vec<pb::Sample> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst);
            if self.empty {
                return Vec::new();
            }
            vec![pb::Sample {
                metric: "polled".into(),
                labels: vec![pb::Label {
                    name: "host".into(),
                    value: host.into(),
                }],
                window_start_unix_ms: crate::aggregate::window_start(
                    now_unix_ms / 1000,
                    window_secs,
                ) * 1000,
                window_secs,
                value: Some(pb::sample::Value::Gauge(n as f64)),
            }]
        }
    }

    #[test]
    fn polls_on_schedule_and_appends_non_empty_results() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Mutex::new(
            Outbox::open(
                dir.path(),
                OutboxConfig {
                    max_bytes: 1 << 20,
                    ..OutboxConfig::default()
                },
            )
            .unwrap(),
        );
        let (a, b) = (Arc::default(), Arc::default());
        let mut sources: Vec<Box<dyn PeriodicSource>> = vec![
            Box::new(Counting {
                polls: Arc::clone(&a),
                interval: Duration::from_secs(1),
                empty: false,
            }),
            Box::new(Counting {
                polls: Arc::clone(&b),
                interval: Duration::from_secs(3600),
                empty: true,
            }),
        ];
        let stop = CancellationToken::new();
        let notify = Notify::new();
        std::thread::scope(|s| {
            let stopper = stop.clone();
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(2_300));
                stopper.cancel();
            });
            run_periodic(&mut sources, "mx1", 60, &outbox, &notify, &stop, &mut || {}).unwrap();
        });
        let a = a.load(Ordering::SeqCst);
        assert!((2..=4).contains(&a), "polled at 0, 1, 2 s: {a}");
        assert_eq!(b.load(Ordering::SeqCst), 1, "hourly source polled once");
        let outbox = outbox.lock().unwrap();
        assert_eq!(
            outbox.len(),
            a,
            "one batch per non-empty poll, none for empty ones"
        );
    }
}
