//! Snapshot → samples, with the state that makes gauges drop to 0 instead of going stale.
//!
//! The collector keeps the last value of a gauge series until it gets a new one, so a label set
//! that is no longer emitted would keep its old value forever. Therefore every queue is emitted on
//! every snapshot, all reason classes are, and a domain (or `source`) emitted last time but not now
//! is emitted once more with 0.

use std::collections::BTreeSet;
use std::time::Duration;

use mailpulse_proto::v1::{self as pb, sample};

use super::snapshot::{AGE_BOUNDS_SECS, DomainStats, QueueName, QueueSnapshot, SnapshotSource};
use crate::aggregate::window_start;
use crate::labels::OTHER;

/// Gauge: messages in a queue (`queue`).
pub const QUEUE_MESSAGES: &str = "queue_messages";
/// Gauge: recipients of the messages in a queue (`queue`); only from `postqueue`.
pub const QUEUE_RECIPIENTS: &str = "queue_recipients";
/// Gauge: bytes of the messages in a queue (`queue`).
pub const QUEUE_BYTES: &str = "queue_bytes";
/// Gauge: age of the oldest message in a queue (`queue`), 0 when empty.
pub const QUEUE_OLDEST_AGE_SECONDS: &str = "queue_oldest_age_seconds";
/// Gauge: messages in a queue with an age of at most `le` seconds (`queue`, `le`), cumulative.
pub const QUEUE_AGE_MESSAGES: &str = "queue_age_messages";
/// Gauge: deferred messages with recipients in a domain (`domain`).
pub const QUEUE_DEFERRED_DOMAIN_MESSAGES: &str = "queue_deferred_domain_messages";
/// Gauge: deferred recipients in a domain (`domain`).
pub const QUEUE_DEFERRED_DOMAIN_RECIPIENTS: &str = "queue_deferred_domain_recipients";
/// Gauge: age of the oldest deferred message with recipients in a domain (`domain`).
pub const QUEUE_DEFERRED_DOMAIN_OLDEST_AGE_SECONDS: &str =
    "queue_deferred_domain_oldest_age_seconds";
/// Gauge: deferred recipients by deferral reason class (`reason_class`).
pub const QUEUE_DEFERRED_REASON_RECIPIENTS: &str = "queue_deferred_reason_recipients";
/// Gauge: change of `queue_messages` per second since the previous snapshot (`queue`).
pub const QUEUE_GROWTH_MESSAGES_PER_SECOND: &str = "queue_growth_messages_per_second";
/// Gauge: wall time the snapshot of the instance took.
pub const QUEUE_SNAPSHOT_DURATION_SECONDS: &str = "queue_snapshot_duration_seconds";
/// Gauge: 1 when the snapshot succeeded (`source` = where it came from), 0 when it failed.
pub const QUEUE_SNAPSHOT_UP: &str = "queue_snapshot_up";
/// Counter: `postqueue -j` lines that were skipped as malformed.
pub const QUEUE_SNAPSHOT_MALFORMED_LINES: &str = "queue_snapshot_malformed_lines";

/// The `le` label values of [`QUEUE_AGE_MESSAGES`], matching `AGE_BOUNDS_SECS` and then `+Inf`.
pub const AGE_LE_LABELS: [&str; AGE_BOUNDS_SECS.len() + 1] = [
    "60", "300", "900", "3600", "14400", "86400", "432000", "+Inf",
];

/// What an instance's samples depend on from one poll to the next.
#[derive(Debug, Default)]
pub(crate) struct EmitState {
    /// Messages per queue of the last successful snapshot, with its time and source.
    last_counts: Option<LastCounts>,
    /// `domain` label values emitted with the last snapshot that had domains.
    emitted_domains: BTreeSet<String>,
    /// `source` label of the last `queue_snapshot_up` sample.
    last_up_source: Option<SnapshotSource>,
}

#[derive(Debug, Clone, Copy)]
struct LastCounts {
    at_unix_ms: i64,
    source: SnapshotSource,
    messages: [u64; QueueName::ALL.len()],
}

/// Where the samples of one instance go, and the labels they all carry.
pub(crate) struct SampleSink<'a> {
    pub host: &'a str,
    pub instance: &'a str,
    pub now_unix_ms: i64,
    pub window_secs: u32,
    pub out: &'a mut Vec<pb::Sample>,
}

impl SampleSink<'_> {
    fn push(&mut self, metric: &str, labels: &[(&str, &str)], value: sample::Value) {
        let start_secs = window_start(self.now_unix_ms.div_euclid(1000), self.window_secs);
        let mut all = Vec::with_capacity(2 + labels.len());
        all.push(label("host", self.host));
        all.push(label("instance", self.instance));
        all.extend(labels.iter().map(|(n, v)| label(n, v)));
        self.out.push(pb::Sample {
            metric: metric.to_owned(),
            labels: all,
            window_start_unix_ms: start_secs.saturating_mul(1000),
            window_secs: self.window_secs.max(1),
            value: Some(value),
        });
    }

    fn gauge(&mut self, metric: &str, labels: &[(&str, &str)], value: f64) {
        self.push(metric, labels, sample::Value::Gauge(value));
    }
}

fn label(name: &str, value: &str) -> pb::Label {
    pb::Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// The outcome of one poll of one instance.
pub(crate) struct PollOutcome<'a> {
    /// The snapshot, or `None` when `postqueue` and the directory scan both failed.
    pub snapshot: Option<&'a QueueSnapshot>,
    pub duration: Duration,
    pub top_k_domains: usize,
}

/// Appends the samples of one poll of one instance and updates `state`.
pub(crate) fn emit(sink: &mut SampleSink<'_>, outcome: &PollOutcome<'_>, state: &mut EmitState) {
    if let Some(snap) = outcome.snapshot {
        emit_queues(sink, snap);
        emit_growth(sink, snap, state);
        if snap.source == SnapshotSource::Postqueue {
            emit_domains(sink, snap, outcome.top_k_domains, state);
            for (class, n) in snap.deferred_reasons.iter() {
                sink.gauge(
                    QUEUE_DEFERRED_REASON_RECIPIENTS,
                    &[("reason_class", class.as_str())],
                    n as f64,
                );
            }
        }
    }
    sink.gauge(
        QUEUE_SNAPSHOT_DURATION_SECONDS,
        &[],
        outcome.duration.as_secs_f64(),
    );
    emit_up(sink, outcome.snapshot.map(|s| s.source), state);
    let malformed = outcome.snapshot.map_or(0, |s| s.malformed_lines);
    sink.push(
        QUEUE_SNAPSHOT_MALFORMED_LINES,
        &[],
        sample::Value::CounterDelta(malformed as f64),
    );
}

fn emit_queues(sink: &mut SampleSink<'_>, snap: &QueueSnapshot) {
    let queues = QueueName::ALL.map(|q| (q, snap.queue(q)));
    for (q, stats) in &queues {
        sink.gauge(
            QUEUE_MESSAGES,
            &[("queue", q.as_str())],
            stats.messages as f64,
        );
    }
    // A directory scan does not read recipients: unknown is not 0, so nothing is emitted.
    if snap.source == SnapshotSource::Postqueue {
        for (q, stats) in &queues {
            sink.gauge(
                QUEUE_RECIPIENTS,
                &[("queue", q.as_str())],
                stats.recipients as f64,
            );
        }
    }
    for (q, stats) in &queues {
        sink.gauge(QUEUE_BYTES, &[("queue", q.as_str())], stats.bytes as f64);
    }
    for (q, stats) in &queues {
        sink.gauge(
            QUEUE_OLDEST_AGE_SECONDS,
            &[("queue", q.as_str())],
            stats.oldest_age_secs as f64,
        );
    }
    for (q, stats) in &queues {
        for (le, n) in AGE_LE_LABELS.iter().zip(stats.cumulative_age_buckets()) {
            sink.gauge(
                QUEUE_AGE_MESSAGES,
                &[("queue", q.as_str()), ("le", le)],
                n as f64,
            );
        }
    }
}

/// Growth since the previous snapshot of the instance; absent on the first one and when the
/// source changed (a directory scan does not see `maildrop`, so the counts do not compare).
fn emit_growth(sink: &mut SampleSink<'_>, snap: &QueueSnapshot, state: &mut EmitState) {
    let messages = QueueName::ALL.map(|q| snap.queue(q).messages);
    if let Some(last) = state.last_counts
        && last.source == snap.source
        && sink.now_unix_ms > last.at_unix_ms
    {
        let elapsed_secs = (sink.now_unix_ms - last.at_unix_ms) as f64 / 1000.0;
        for (i, q) in QueueName::ALL.iter().enumerate() {
            let change = messages[i] as f64 - last.messages[i] as f64;
            sink.gauge(
                QUEUE_GROWTH_MESSAGES_PER_SECOND,
                &[("queue", q.as_str())],
                change / elapsed_secs,
            );
        }
    }
    state.last_counts = Some(LastCounts {
        at_unix_ms: sink.now_unix_ms,
        source: snap.source,
        messages,
    });
}

/// The `top_k` domains by recipients (ties by name) by name, the rest summed into `other`; a
/// domain emitted last time and absent now is emitted once with 0.
fn emit_domains(
    sink: &mut SampleSink<'_>,
    snap: &QueueSnapshot,
    top_k: usize,
    state: &mut EmitState,
) {
    let mut ranked: Vec<(&str, &DomainStats)> = snap
        .deferred_domains
        .iter()
        .filter(|(name, _)| name.as_str() != OTHER)
        .map(|(name, stats)| (name.as_str(), stats))
        .collect();
    ranked.sort_by(|a, b| b.1.recipients.cmp(&a.1.recipients).then(a.0.cmp(b.0)));
    let mut other = snap.deferred_other_domains;
    if let Some(stats) = snap.deferred_domains.get(OTHER) {
        other.merge(stats);
    }
    for (_, stats) in ranked.iter().skip(top_k) {
        other.merge(stats);
    }
    ranked.truncate(top_k);
    if !other.is_empty() {
        ranked.push((OTHER, &other));
    }

    let mut emitted = BTreeSet::new();
    for (name, stats) in &ranked {
        domain_gauges(sink, name, stats);
        emitted.insert((*name).to_owned());
    }
    for gone in state.emitted_domains.difference(&emitted) {
        domain_gauges(sink, gone, &DomainStats::default());
    }
    state.emitted_domains = emitted;
}

fn domain_gauges(sink: &mut SampleSink<'_>, domain: &str, stats: &DomainStats) {
    let labels = [("domain", domain)];
    sink.gauge(
        QUEUE_DEFERRED_DOMAIN_MESSAGES,
        &labels,
        stats.messages as f64,
    );
    sink.gauge(
        QUEUE_DEFERRED_DOMAIN_RECIPIENTS,
        &labels,
        stats.recipients as f64,
    );
    sink.gauge(
        QUEUE_DEFERRED_DOMAIN_OLDEST_AGE_SECONDS,
        &labels,
        stats.oldest_age_secs as f64,
    );
}

/// `queue_snapshot_up{source}`: 1 with the source that answered; 0 with `source="directory"`
/// (the last resort) when none did. The series of a previous, different source is set to 0 once,
/// so that summing over `source` always gives the current state.
fn emit_up(sink: &mut SampleSink<'_>, source: Option<SnapshotSource>, state: &mut EmitState) {
    let (label_source, value) = match source {
        Some(s) => (s, 1.0),
        None => (SnapshotSource::Directory, 0.0),
    };
    if let Some(last) = state.last_up_source
        && last != label_source
    {
        sink.gauge(QUEUE_SNAPSHOT_UP, &[("source", last.as_str())], 0.0);
    }
    sink.gauge(
        QUEUE_SNAPSHOT_UP,
        &[("source", label_source.as_str())],
        value,
    );
    state.last_up_source = Some(label_source);
}
