//! Domain types shared by ingest, store and exposition. Protobuf never gets past `ingest::pb`.

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Dense id of a series (metric + sorted labels), assigned in first-seen order and stable for
/// the life of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

impl SeriesId {
    /// Position in per-series vectors.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a metric is; fixed per metric name (Prometheus allows one type per family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Samples are non-negative increases; the total is their sum.
    Counter,
    /// Samples are levels; the total is the value of the latest window.
    Gauge,
    /// Samples are bucket counts + sum; the total is their element-wise sum.
    Histogram,
}

/// The identity of a series as agents describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDef {
    /// Metric name without the `mailpulse_` prefix and `_total` suffix.
    pub metric: Box<str>,
    /// Label pairs sorted by name, names unique.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// Kind of every sample of this series.
    pub kind: MetricKind,
    /// Histogram upper bounds (strictly increasing, finite); empty for other kinds.
    pub bounds: Box<[f64]>,
}

impl SeriesDef {
    /// Value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }
}

/// One value of one series over one agent window, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    /// Increase during the window (finite, ≥ 0).
    Counter(f64),
    /// Level at the end of the window (finite).
    Gauge(f64),
    /// Bucket counts (`bounds + 1` of them, in `IngestBatch::histogram_counts[counts]`) and sum.
    Histogram {
        /// Sum of the observations.
        sum: f64,
        /// Where the per-bucket counts of this sample are in the batch's count pool.
        counts: Range<u32>,
    },
}

/// One validated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSample {
    /// Interned series.
    pub series: SeriesId,
    /// Start of the agent's window (Unix milliseconds).
    pub window_start_ms: i64,
    /// The value.
    pub value: SampleValue,
}

/// A batch after validation: what the store writer applies (or recognises as a duplicate).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestBatch {
    /// Per-agent sequence number.
    pub seq: u64,
    /// When the agent built it (Unix milliseconds).
    pub created_unix_ms: i64,
    /// Batches the agent dropped from a full outbox before this one.
    pub dropped_batches: u64,
    /// The samples.
    pub samples: Vec<IngestSample>,
    /// Histogram bucket counts of all histogram samples, back to back (one allocation per batch
    /// instead of one per histogram sample).
    pub histogram_counts: Vec<u64>,
    /// Size of the batch on the wire (for group-commit byte bounds).
    pub encoded_bytes: usize,
    /// DNS and reputation probe results.
    pub probes: Vec<IngestProbe>,
}

/// One DNS or reputation probe result, validated (see `Probe` in the proto).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestProbe {
    pub kind: String,
    pub target: String,
    /// Who answered (authoritative server or resolver); empty for the agent's default resolver.
    pub server: String,
    pub at_unix_ms: i64,
    pub latency_secs: f64,
    pub rcode: String,
    pub answer_hash: String,
    pub ttl_secs: u32,
    pub answer: String,
}

/// A record set whose answer changed between two probes of the same (kind, target, server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsChange {
    /// Increasing id (order of recording).
    pub id: u64,
    /// Time of the probe that saw the new answer.
    pub at_unix_ms: i64,
    pub kind: String,
    pub target: String,
    pub server: String,
    /// The agent whose probe saw it.
    pub agent_id: String,
    pub old_rcode: String,
    pub old_hash: String,
    pub old_answer: String,
    /// When the old answer was first seen.
    pub old_since_unix_ms: i64,
    pub new_rcode: String,
    pub new_hash: String,
    pub new_answer: String,
    /// When the collector recorded it (Unix ms; 0 in older stores): what retention compares.
    #[serde(default)]
    pub recorded_unix_ms: i64,
}

/// A point a detector judged anomalous, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Increasing id (order of recording); 0 until stored.
    pub id: u64,
    /// The series: metric and its labels.
    pub metric: String,
    pub labels: Vec<(String, String)>,
    /// Start of the judged window (Unix ms) and its length.
    pub window_start_unix_ms: i64,
    pub window_secs: u32,
    /// Which detector (`seasonal`, `ratio`, `changepoint`, `fleet`, `forecast`).
    pub detector: String,
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// In [0, 1].
    pub score: f64,
    /// `above` or `below`.
    pub direction: String,
    /// Detector-specific evidence (p-value, band units, …) in words.
    pub detail: String,
}

/// The latest answer of one (kind, target, server), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsRecordState {
    pub rcode: String,
    pub hash: String,
    pub answer: String,
    pub ttl_secs: u32,
    /// First probe that saw this answer.
    pub since_unix_ms: i64,
    /// Latest probe.
    pub seen_unix_ms: i64,
}

/// What an agent says about itself in `Hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHello {
    /// Authenticated agent identity.
    pub agent_id: Arc<str>,
    /// Host name (default `host` label of its samples).
    pub host: String,
    /// mailpulse version of the agent.
    pub version: String,
    /// What the agent can do.
    pub capabilities: Vec<String>,
    /// Random id of the agent's state (empty from agents that send none): seq numbers count
    /// per incarnation.
    pub incarnation: Arc<str>,
}

/// The registry entry of an agent (persisted in the store, served at `/api/v1/agents`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent identity.
    pub agent_id: String,
    /// Host name from the latest Hello.
    pub host: String,
    /// Version from the latest Hello.
    pub version: String,
    /// Capabilities from the latest Hello.
    pub capabilities: Vec<String>,
    /// First Hello (Unix milliseconds).
    pub first_seen_unix_ms: i64,
    /// Latest Hello or batch (Unix milliseconds).
    pub last_seen_unix_ms: i64,
    /// Whether a stream of this agent is open (false after a collector restart until it
    /// reconnects).
    pub connected: bool,
    /// Incarnation from the latest Hello (empty for agents that send none).
    #[serde(default)]
    pub incarnation: String,
    /// Highest applied seq of the current incarnation (the dedupe high-water mark).
    pub applied_seq: u64,
    /// High-water marks of the incarnations before the current one, newest first (a few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_incarnations: Vec<IncarnationSeq>,
    /// Batches applied.
    pub batches_applied: u64,
    /// Batches acknowledged as duplicates (seq ≤ high-water mark), not applied.
    pub batches_duplicate: u64,
    /// Seq numbers skipped between applied batches (lost in the agent's outbox).
    pub batches_missing: u64,
    /// Sum of `dropped_batches` the agent reported.
    pub batches_dropped_reported: u64,
    /// Samples applied.
    pub samples_applied: u64,
    /// DNS probes of a new (kind, target, server) refused past the agent's record cap.
    #[serde(default)]
    pub dns_probes_refused: u64,
}

/// The dedupe high-water mark of one incarnation of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncarnationSeq {
    /// The incarnation id.
    pub incarnation: String,
    /// Highest seq applied in it.
    pub applied_seq: u64,
}
