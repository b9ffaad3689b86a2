//! The log reader thread: tailer → line processor → aggregator → outbox batches with the file
//! positions they cover.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpulse_proto::v1 as pb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use crate::aggregate::{
    Aggregator, AggregatorConfig, SelfMetrics, SelfMetricsSnapshot, unix_ms, window_start,
};
use crate::dns::senders::SenderDomains;
use crate::parse::{LogFormat, Timestamp};
use crate::pipeline::LineProcessor;
use crate::ship::{FilePosition, Outbox, lock, wire_event};
use crate::source::{Checkpoints, FileKey, TailConfig, Tailer};
use crate::track::MessageEvent;
use crate::traffic::{TrafficConfig, TrafficSignal};

/// A batch is cut early once this many samples (or raw events) are pending.
pub const MAX_PENDING_SAMPLES: usize = 5_000;

/// Most lines taken from the tailer at once.
const READ_LINES: usize = 4096;
/// How long one tailer call waits for new lines (bounds the reaction to a stop request).
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause after catching up with the files, so a busy log is read in a few wake-ups per second.
const FOLLOW_PACE: Duration = Duration::from_millis(200);

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
}

impl Reader {
    /// Opens the files, starting where `start` says (checkpoints merged with outbox positions).
    pub fn new(
        cfg: ReaderConfig,
        start: &Checkpoints,
        outbox: Arc<Mutex<Outbox>>,
        appended: Arc<Notify>,
    ) -> Result<Self, AgentError> {
        let tailer = Tailer::new(cfg.tail, start)?;
        let mut processor = LineProcessor::new(cfg.format, now());
        processor.set_default_offset_secs(cfg.utc_offset_secs);
        processor.enable_traffic(&cfg.traffic);
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
        })
    }

    /// The files opened at start; see [`Tailer::start_positions`].
    pub fn start_positions(&self) -> &[crate::source::StartPosition] {
        self.tailer.start_positions()
    }

    /// Reads until `stop` is cancelled, then cuts a last batch of what was consumed.
    pub fn run(mut self, stop: &CancellationToken) -> Result<(), AgentError> {
        loop {
            if stop.is_cancelled() {
                return self.cut();
            }
            let lines = self.tailer.next_batch(READ_LINES, READ_TIMEOUT)?;
            let caught_up = lines.len() < READ_LINES;
            let senders = self.senders.clone();
            let mut senders = senders.as_deref().map(lock);
            for line in &lines {
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

    /// Appends a batch with everything consumed since the last cut, plus self-metrics.
    fn cut(&mut self) -> Result<(), AgentError> {
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
        let stats = self.processor.stats();
        let mut outbox = lock(&self.outbox);
        let outbox_stats = outbox.stats();
        let lag_seconds = outbox
            .oldest_created_unix_ms()
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        samples.extend(self.self_metrics.cut(
            now_ms,
            SelfMetricsSnapshot {
                lines_read: stats.lines,
                lines_unparsed: stats.unparsed,
                outbox_bytes: outbox_stats.bytes,
                outbox_batches: outbox_stats.batches,
                dropped_batches: outbox_stats.dropped_batches,
                lag_seconds,
            },
        ));
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
        let seq = outbox.append(batch, &positions)?;
        drop(outbox);
        tracing::debug!(seq, "batch appended to the outbox");
        self.last_cut_window = Some(window);
        self.appended.notify_one();
        // Year-less timestamps resolve against the present.
        self.processor.set_reference(now());
        Ok(())
    }
}

fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}
