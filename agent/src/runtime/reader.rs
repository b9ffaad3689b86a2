//! The log reader thread: tailer → line processor → aggregator → outbox batches with the file
//! positions they cover.
//!
//! A batch that cannot be appended (a full disk) is kept and appended again after a pause; no
//! line is read meanwhile, so nothing is lost and memory does not grow. Right after a batch is
//! appended, now and then, the tracker's state is saved with the positions up to which every
//! file was processed (see `tracker_state.rs`); on start, lines between those positions and the
//! resume positions are replayed into the tracker only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpulse_proto::v1 as pb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use super::supervise::{RestartBackoff, TaskHealth, sleep_unless_stopped, task};
use super::tracker_state::SavedTracker;
use crate::aggregate::{
    Aggregator, AggregatorConfig, SelfMetrics, SelfMetricsSnapshot, unix_ms, window_start,
};
use crate::dns::senders::SenderDomains;
use crate::parse::{LogFormat, Timestamp};
use crate::pipeline::{LineProcessor, OriginLimits};
use crate::ship::{FilePosition, Outbox, ShipperStats, lock, wire_event};
use crate::source::{Checkpoints, FileKey, TailConfig, Tailer};
use crate::track::{MessageEvent, Tracker, TrackerConfig};
use crate::traffic::{TrafficConfig, TrafficSignal};

/// A batch is cut early once this many samples (or raw events) are pending.
pub const MAX_PENDING_SAMPLES: usize = 5_000;

/// Most lines taken from the tailer at once.
const READ_LINES: usize = 4096;
/// How long one tailer call waits for new lines (bounds the reaction to a stop request).
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause after catching up with the files, so a busy log is read in a few wake-ups per second.
const FOLLOW_PACE: Duration = Duration::from_millis(200);
/// Files whose processed position is remembered for the tracker state (the most recently read).
const MAX_TRACKED_FILES: usize = 64;

/// What the reader needs.
pub(crate) struct ReaderConfig {
    pub tail: TailConfig,
    pub format: LogFormat,
    pub utc_offset_secs: i32,
    pub host: String,
    pub aggregator: AggregatorConfig,
    pub flush_interval: Duration,
    pub include_events: bool,
    pub traffic: TrafficConfig,
    /// Outbound sender domains for the DNS prober, when it evaluates sending IPs.
    pub senders: Option<Arc<Mutex<SenderDomains>>>,
    /// Caps on hosts and instances taken from log lines.
    pub origin_limits: OriginLimits,
    /// Where the tracker state is saved, and how often.
    pub tracker_state: PathBuf,
    pub tracker_state_interval: Duration,
}

/// Owns the tailer, the processor and the aggregator; cuts batches into the outbox.
pub(crate) struct Reader {
    tailer: Tailer,
    processor: LineProcessor,
    aggregator: Aggregator,
    self_metrics: SelfMetrics,
    outbox: Arc<Mutex<Outbox>>,
    appended: Arc<Notify>,
    flush_interval: Duration,
    include_events: bool,
    /// End of the last line consumed per file since the last cut.
    positions: HashMap<FileKey, u64>,
    events: Vec<MessageEvent>,
    signals: Vec<TrafficSignal>,
    senders: Option<Arc<Mutex<SenderDomains>>>,
    wire_events: Vec<pb::Event>,
    last_cut: Instant,
    /// Window of the last batch cut, so an idle agent still reports itself once per window.
    last_cut_window: Option<i64>,
    /// A batch the outbox could not take yet, with its positions.
    unsent: Option<(pb::Batch, Vec<FilePosition>)>,
    health: Arc<TaskHealth>,
    shipper: Option<Arc<ShipperStats>>,
    /// Per file, the end of the last line processed (replayed lines included), with when it
    /// was last updated (a counter): the positions the tracker state corresponds to.
    processed: HashMap<FileKey, (u64, u64)>,
    processed_tick: u64,
    tracker_state: PathBuf,
    tracker_state_interval: Duration,
    /// When the tracker state was last saved; `None` before the first save of this run.
    tracker_saved: Option<Instant>,
}

impl Reader {
    /// Opens the files, starting where `start` says (checkpoints merged with outbox positions).
    /// With a `saved` tracker state consistent with `start`, the tracker continues from it and
    /// the lines between its positions and `start` are replayed into it.
    pub fn new(
        cfg: ReaderConfig,
        start: &Checkpoints,
        saved: Option<SavedTracker>,
        outbox: Arc<Mutex<Outbox>>,
        appended: Arc<Notify>,
        health: Arc<TaskHealth>,
    ) -> Result<Self, AgentError> {
        let mut processor = LineProcessor::new(cfg.format, now());
        processor.set_default_offset_secs(cfg.utc_offset_secs);
        processor.enable_traffic(&cfg.traffic);
        processor.set_origin_limits(Some(cfg.origin_limits));
        let tailer = match saved {
            Some(saved) => {
                let replay = saved.replay_from();
                tracing::info!(
                    messages = saved.tracker.messages(),
                    "tracker state restored; replaying the lines read since it was saved"
                );
                processor.restore_origin_caps(saved.origins);
                processor.set_tracker(Tracker::restore(TrackerConfig::default(), saved.tracker));
                Tailer::with_replay(cfg.tail, start, &replay)?
            }
            None => Tailer::new(cfg.tail, start)?,
        };
        let processed = tailer
            .start_positions()
            .iter()
            .map(|p| (p.file, (p.read_from, 0)))
            .collect();
        let window_secs = cfg.aggregator.window_secs;
        Ok(Self {
            tailer,
            processor,
            aggregator: Aggregator::new(cfg.aggregator),
            self_metrics: SelfMetrics::new(&cfg.host, window_secs),
            outbox,
            appended,
            flush_interval: cfg.flush_interval,
            include_events: cfg.include_events,
            positions: HashMap::new(),
            events: Vec::new(),
            signals: Vec::new(),
            senders: cfg.senders,
            wire_events: Vec::new(),
            last_cut: Instant::now(),
            last_cut_window: None,
            unsent: None,
            health,
            shipper: None,
            processed,
            processed_tick: 0,
            tracker_state: cfg.tracker_state,
            tracker_state_interval: cfg.tracker_state_interval,
            tracker_saved: None,
        })
    }

    /// The files opened at start; see [`Tailer::start_positions`].
    pub fn start_positions(&self) -> &[crate::source::StartPosition] {
        self.tailer.start_positions()
    }

    /// Reports the shipper's counters (refused samples, rejected batches, commit health) in the
    /// self-metrics.
    pub fn report_shipper(&mut self, stats: Arc<ShipperStats>) {
        self.shipper = Some(stats);
    }

    /// Saves the tracker state for the positions where reading starts, when there is no usable
    /// one: a crash before the first regular save then still replays from here.
    pub fn save_initial_tracker_state(&mut self) {
        self.save_tracker_state();
    }

    /// Reads until `stop` is cancelled, then cuts a last batch of what was consumed.
    pub fn run(mut self, stop: &CancellationToken) -> Result<(), AgentError> {
        let mut backoff = RestartBackoff::new();
        self.health.up(task::LOG_READER);
        loop {
            if self.unsent.is_some() {
                // The outbox could not take the last batch: no new lines until it does.
                if sleep_unless_stopped(backoff.next_delay(), stop) {
                    return self.final_cut();
                }
                if self.append_unsent().is_ok() {
                    backoff.reset();
                }
                continue;
            }
            if stop.is_cancelled() {
                return self.final_cut();
            }
            let lines = self.tailer.next_batch(READ_LINES, READ_TIMEOUT)?;
            let caught_up = lines.len() < READ_LINES;
            let senders = self.senders.clone();
            let mut senders = senders.as_deref().map(lock);
            for line in &lines {
                self.note_processed(line.file, line.end_offset);
                if line.replay {
                    self.processor.replay(&line.text);
                    continue;
                }
                self.processor.process_with_signals(
                    &line.text,
                    &mut self.events,
                    &mut self.signals,
                );
                for sig in self.signals.drain(..) {
                    self.aggregator.observe_signal(&sig);
                }
                for ev in self.events.drain(..) {
                    self.aggregator.observe(&ev);
                    if let Some(s) = senders.as_mut() {
                        s.observe(&ev);
                    }
                    if self.include_events {
                        self.wire_events.push(wire_event(&ev));
                    }
                }
                self.positions.insert(line.file, line.end_offset);
                if self.aggregator.pending_series() + self.wire_events.len() >= MAX_PENDING_SAMPLES
                {
                    self.cut()?;
                }
            }
            drop(senders);
            if self.last_cut.elapsed() >= self.flush_interval {
                self.cut()?;
            }
            if caught_up && !lines.is_empty() && !stop.is_cancelled() {
                std::thread::sleep(FOLLOW_PACE);
            }
        }
    }

    /// The last batch before stopping, and the tracker state that goes with it. When the
    /// outbox still has no room, the error is returned: the lines of that batch were not
    /// acknowledged and are read again on the next start.
    fn final_cut(&mut self) -> Result<(), AgentError> {
        self.append_unsent()?;
        self.cut()?;
        self.append_unsent()?;
        self.save_tracker_state();
        Ok(())
    }

    /// Remembers that `file` was processed up to `end_offset` (replayed lines included).
    fn note_processed(&mut self, file: FileKey, end_offset: u64) {
        self.processed_tick += 1;
        if !self.processed.contains_key(&file) {
            // A new key for a file: a longer fingerprint, or new content after a truncation.
            self.processed.retain(|k, _| !k.same_inode(&file));
            if self.processed.len() >= MAX_TRACKED_FILES
                && let Some(oldest) = self
                    .processed
                    .iter()
                    .min_by_key(|(_, (_, tick))| *tick)
                    .map(|(k, _)| *k)
            {
                self.processed.remove(&oldest);
            }
        }
        self.processed
            .insert(file, (end_offset, self.processed_tick));
    }

    /// Appends a batch with everything consumed since the last cut, plus self-metrics. When the
    /// outbox cannot take it, the batch is kept for [`Reader::append_unsent`].
    fn cut(&mut self) -> Result<(), AgentError> {
        if self.unsent.is_some() {
            return Ok(());
        }
        self.last_cut = Instant::now();
        let now_ms = unix_ms();
        let window = window_start(
            now_ms.div_euclid(1000),
            self.aggregator.config().window_secs,
        );
        let mut samples = self.aggregator.cut();
        let idle = samples.is_empty() && self.positions.is_empty() && self.wire_events.is_empty();
        if idle && self.last_cut_window == Some(window) {
            return Ok(());
        }
        let snapshot = self.self_metrics_snapshot(now_ms);
        samples.extend(self.self_metrics.cut(now_ms, snapshot));
        let mut positions: Vec<FilePosition> = self
            .positions
            .drain()
            .map(|(file, end_offset)| FilePosition { file, end_offset })
            .collect();
        positions.sort();
        let batch = pb::Batch {
            created_unix_ms: now_ms,
            samples,
            events: std::mem::take(&mut self.wire_events),
            ..pb::Batch::default()
        };
        self.last_cut_window = Some(window);
        // Year-less timestamps resolve against the present.
        self.processor.set_reference(now());
        self.unsent = Some((batch, positions));
        let _ = self.append_unsent();
        Ok(())
    }

    /// Appends the kept batch. On success the tracker state is saved when due; on failure the
    /// batch stays kept and the failure is reported (and returned).
    fn append_unsent(&mut self) -> Result<(), AgentError> {
        let Some((batch, positions)) = self.unsent.as_mut() else {
            return Ok(());
        };
        let appended = lock(&self.outbox).append_mut(batch, positions);
        match appended {
            Ok(seq) => {
                self.unsent = None;
                tracing::debug!(seq, "batch appended to the outbox");
                self.appended.notify_one();
                self.health.up(task::LOG_READER);
                // Only when every line processed is in a durable batch (none consumed since).
                let due = self.positions.is_empty()
                    && self
                        .tracker_saved
                        .is_none_or(|t| t.elapsed() >= self.tracker_state_interval);
                if due {
                    self.save_tracker_state();
                }
                Ok(())
            }
            Err(e) => {
                self.health.failed(task::LOG_READER, &e);
                Err(e.into())
            }
        }
    }

    /// Saves the tracker with the positions processed so far. Every line before them is in a
    /// durable batch (this runs right after an append, or before reading). A failure is
    /// logged; the previous state stays valid (it only replays more).
    fn save_tracker_state(&mut self) {
        let saved = SavedTracker::new(
            self.processed.iter().map(|(k, (offset, _))| (*k, *offset)),
            self.processor.origin_caps().clone(),
            self.processor.tracker().snapshot(),
        );
        match saved.save(&self.tracker_state) {
            Ok(()) => self.tracker_saved = Some(Instant::now()),
            Err(e) => {
                tracing::warn!(path = %self.tracker_state.display(), error = %e, "cannot save the tracker state");
            }
        }
    }

    /// What the agent reports about itself now.
    fn self_metrics_snapshot(&self, now_ms: i64) -> SelfMetricsSnapshot {
        let stats = self.processor.stats();
        let origins = self.processor.origin_stats();
        let outbox = lock(&self.outbox);
        let outbox_stats = outbox.stats();
        let lag_seconds = outbox
            .oldest_created_unix_ms()
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        drop(outbox);
        if let Some(shipper) = &self.shipper {
            use std::sync::atomic::Ordering::Relaxed;
            self.health.set(
                task::CHECKPOINTS,
                shipper.commit_ok.load(Relaxed),
                shipper.commit_failures.load(Relaxed),
            );
        }
        let (task_failures, task_up) = self.health.snapshot();
        SelfMetricsSnapshot {
            lines_read: stats.lines,
            lines_unparsed: stats.unparsed,
            outbox_bytes: outbox_stats.bytes,
            outbox_batches: outbox_stats.batches,
            dropped_batches: outbox_stats.dropped_batches,
            lag_seconds,
            rejected_batches: outbox_stats.rejected_batches,
            labels_truncated: self.aggregator.stats().labels_truncated
                + outbox_stats.labels_truncated,
            labels_folded: [
                ("host", origins.hosts_folded),
                ("instance", origins.instances_folded),
            ]
            .into_iter()
            .collect(),
            refused_samples: self
                .shipper
                .as_ref()
                .map(|s| s.refused_samples())
                .unwrap_or_default(),
            task_failures,
            task_up,
        }
    }
}

fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}
