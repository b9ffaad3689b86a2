//! Protobuf → domain, once, at the edge, with validation.
//!
//! `Batch` messages are read straight from the received bytes (no per-sample allocation: names
//! and label values are borrowed from the frame, series are resolved through the interning table
//! under one read lock per batch). `Hello` and `ActionResult` are rare and decoded with prost.
//! The wire format is protobuf's; packed and unpacked repeated numbers are both accepted, last
//! value wins for the `value` oneof.
//!
//! A sample (or probe) that breaks a rule is refused on its own ([`SampleRefusal`], counted in
//! [`BatchDecoder::refusals`]) and the rest of the batch is applied: one bad value never blocks
//! its neighbours. Only a batch whose own framing is broken (or whose `seq` is 0) is refused
//! whole. Inside `Sample`, `Label` and `Histogram` (the hot path) unknown fields and repeated
//! names are refused, so that padding never reaches the per-stream series cache.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use mailpulse_proto::v1::{ActionResult, Hello, Probe};
use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use super::refusal::{Refusal, Refusals, SampleRefusal};
use crate::model::{
    AgentHello, IngestBatch, IngestProbe, IngestSample, MetricKind, SampleValue, SeriesDef,
    SeriesId,
};
use crate::stats::RejectReason;
use crate::store::{InternError, KeyHasher, SeriesRegistry, series_key};

/// Most labels on one sample (including the `host` label added from Hello).
pub const MAX_LABELS: usize = 16;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Longest metric or label name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Most buckets of one histogram (bounds + 1) unless configured otherwise.
pub const DEFAULT_MAX_HISTOGRAM_BUCKETS: usize = 64;
/// Longest window an agent may aggregate over, in seconds.
pub const MAX_WINDOW_SECS: u64 = 86_400;

/// Why a message was refused: the reason (status code, counter label) and a message for the
/// agent's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Rejection class.
    pub reason: RejectReason,
    /// Human-readable detail.
    pub message: String,
}

impl Invalid {
    fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    fn malformed(what: impl std::fmt::Display) -> Self {
        Self::new(
            RejectReason::Malformed,
            format!("malformed message: {what}"),
        )
    }

    /// The gRPC status the agent gets.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self.reason {
            RejectReason::Unauthenticated => Code::Unauthenticated,
            RejectReason::AgentMismatch => Code::PermissionDenied,
            RejectReason::NoHello => Code::FailedPrecondition,
            RejectReason::Malformed
            | RejectReason::InvalidSample
            | RejectReason::TooManySamples => Code::InvalidArgument,
            RejectReason::MessageTooLarge => Code::OutOfRange,
            RejectReason::RateLimited
            | RejectReason::SeriesLimit
            | RejectReason::TooManyStreams => Code::ResourceExhausted,
            RejectReason::HelloTimeout => Code::DeadlineExceeded,
        };
        tonic::Status::new(code, self.message.clone())
    }
}

impl From<prost::DecodeError> for Invalid {
    fn from(e: prost::DecodeError) -> Self {
        Invalid::malformed(e)
    }
}

/// One message from an agent, classified.
#[derive(Debug)]
pub enum AgentFrame<'a> {
    /// Stream opening.
    Hello(Hello),
    /// The encoded `Batch` (decoded by [`BatchDecoder`]).
    Batch(&'a [u8]),
    /// Result of an action.
    ActionResult(ActionResult),
    /// A message with no `kind` set.
    Empty,
}

/// Classifies an encoded `AgentMessage`.
pub fn parse_frame(mut buf: &[u8]) -> Result<AgentFrame<'_>, Invalid> {
    let mut frame = AgentFrame::Empty;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                frame = AgentFrame::Hello(Hello::decode(read_bytes(&mut buf)?)?);
            }
            (2, WireType::LengthDelimited) => frame = AgentFrame::Batch(read_bytes(&mut buf)?),
            (3, WireType::LengthDelimited) => {
                frame = AgentFrame::ActionResult(ActionResult::decode(read_bytes(&mut buf)?)?);
            }
            (1..=3, _) => return Err(Invalid::malformed("wrong wire type for AgentMessage.kind")),
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(frame)
}

/// Validates a Hello against the agent the token belongs to and the hosts it is bound to.
pub fn agent_hello(
    hello: Hello,
    token_agent: &Arc<str>,
    bound_hosts: &[Box<str>],
) -> Result<AgentHello, Invalid> {
    if hello.agent_id != **token_agent {
        return Err(Invalid::new(
            RejectReason::AgentMismatch,
            format!(
                "Hello.agent_id {:?} does not match the token's agent {:?}",
                hello.agent_id, token_agent
            ),
        ));
    }
    if hello.host.is_empty() || hello.host.len() > MAX_LABEL_VALUE_BYTES {
        return Err(Invalid::new(
            RejectReason::Malformed,
            format!("Hello.host must be 1..={MAX_LABEL_VALUE_BYTES} bytes"),
        ));
    }
    if !bound_hosts.iter().any(|h| **h == *hello.host) {
        return Err(Invalid::new(
            RejectReason::AgentMismatch,
            format!(
                "Hello.host {:?} is not bound to the token of agent {:?} (bound: {}); list it \
                 in the collector's token file: `{} <token> {}`",
                hello.host,
                token_agent,
                bound_hosts.join(","),
                token_agent,
                hello.host
            ),
        ));
    }
    Ok(AgentHello {
        agent_id: token_agent.clone(),
        host: hello.host,
        version: hello.version,
        capabilities: hello.capabilities,
        incarnation: checked_incarnation(hello.incarnation)?,
    })
}

/// Decodes batches of one stream; keeps its scratch buffers and series cache between batches.
///
/// Agents repeat the same label sets every window, byte for byte and usually in the same
/// order. So the encoded metric + labels of a sample (its "prefix") is first compared with the
/// prefix at the same position of the previous batch (sequential memory, no hashing), then
/// looked up in a per-stream map; only a label set never seen on this stream takes the slow
/// path (UTF-8 and name checks, sorting, the shared interning table). Per stream, because the
/// default `host` label is. The cache is bounded in entries and in bytes.
#[derive(Debug)]
pub struct BatchDecoder<'r> {
    registry: &'r SeriesRegistry,
    max_samples: usize,
    max_histogram_buckets: usize,
    host: String,
    /// Hosts an explicit `host` label may name.
    bound_hosts: Vec<Box<str>>,
    /// Accepted window starts and probe times (Unix ms); None = any.
    window_range_ms: Option<RangeInclusive<i64>>,
    refusals: Refusals,
    key: Vec<u8>,
    bounds: Vec<f64>,
    seen: HashMap<Box<[u8]>, u32, KeyHasher>,
    /// Bytes of the keys in `seen`.
    seen_bytes: usize,
    known: Vec<KnownSeries>,
    /// Distinct histogram bounds of `known` (few), shared so comparisons stay in cache.
    bounds_pool: Vec<Arc<[f64]>>,
    previous: Bytes,
    previous_prefixes: Vec<PrefixAt>,
    current_prefixes: Vec<PrefixAt>,
    /// Registry generation the cached ids belong to (expiry moves it on).
    generation: u64,
}

/// A series this stream has sent, by local slot.
#[derive(Debug)]
struct KnownSeries {
    id: SeriesId,
    kind: MetricKind,
    bounds: Arc<[f64]>,
}

/// Where a sample's prefix lies in its batch, and its slot in `known`.
#[derive(Debug, Clone, Copy)]
struct PrefixAt {
    start: usize,
    len: usize,
    slot: u32,
}

/// Most label sets remembered per stream; the cache starts over beyond it.
const MAX_KNOWN_PER_STREAM: usize = 200_000;
/// Most bytes of cached label-set encodings per stream; the cache starts over beyond it. Valid
/// label sets are bounded (names, values, label count), but one label set can be encoded in
/// many byte-different ways.
const MAX_CACHED_BYTES_PER_STREAM: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy)]
enum RawValue<'a> {
    None,
    Counter(f64),
    Gauge(f64),
    Histogram(&'a [u8]),
}

/// The fields of one `Sample`, located but not validated.
struct ScannedSample<'b> {
    metric: &'b [u8],
    labels: [&'b [u8]; MAX_LABELS],
    label_count: usize,
    window_start_ms: i64,
    window_secs: u64,
    raw: RawValue<'b>,
    /// The metric and label fields when they open the message contiguously (every normal
    /// encoder writes fields in order): the series cache key.
    prefix: Option<&'b [u8]>,
}

/// A refusal of sample `n`.
fn refuse(reason: SampleRefusal, n: usize, detail: impl std::fmt::Display) -> Refusal {
    Refusal {
        reason,
        detail: format!("sample {n}: {detail}"),
    }
}

impl<'r> BatchDecoder<'r> {
    /// A decoder for an agent on `host` (the default `host` label, and the only host an
    /// explicit `host` label may name until [`Self::bind_hosts`] says otherwise). Windows are
    /// not bounded until [`Self::set_window_range`].
    pub fn new(registry: &'r SeriesRegistry, max_samples: usize, host: &str) -> Self {
        Self {
            registry,
            max_samples,
            max_histogram_buckets: DEFAULT_MAX_HISTOGRAM_BUCKETS,
            host: host.to_string(),
            bound_hosts: vec![host.into()],
            window_range_ms: None,
            refusals: Refusals::default(),
            key: Vec::with_capacity(256),
            bounds: Vec::new(),
            seen: HashMap::default(),
            seen_bytes: 0,
            known: Vec::new(),
            bounds_pool: Vec::new(),
            previous: Bytes::new(),
            previous_prefixes: Vec::new(),
            current_prefixes: Vec::new(),
            generation: registry.generation(),
        }
    }

    /// Also accepts explicit `host` labels naming one of `hosts` (the hosts the agent's token
    /// is bound to); the stream's own host is always accepted.
    pub fn bind_hosts(mut self, hosts: &[Box<str>]) -> Self {
        for host in hosts {
            if !self.bound_hosts.contains(host) {
                self.bound_hosts.push(host.clone());
            }
        }
        self
    }

    /// Most buckets (bounds + 1) a histogram sample may have; more are refused.
    pub fn max_histogram_buckets(mut self, buckets: usize) -> Self {
        self.max_histogram_buckets = buckets.max(1);
        self
    }

    /// Samples whose window starts (and probes whose time is) outside `range` (Unix ms) are
    /// refused as `window_out_of_range`; None accepts any time.
    pub fn set_window_range(&mut self, range: Option<RangeInclusive<i64>>) {
        self.window_range_ms = range;
    }

    /// The samples and probes refused in the batch last decoded.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Decodes and validates an encoded `Batch`. Samples and probes that break a rule are
    /// left out and counted in [`Self::refusals`]; the batch is refused whole only when its own
    /// framing is broken or its `seq` is 0.
    pub fn decode(&mut self, batch_bytes: Bytes) -> Result<IngestBatch, Invalid> {
        self.refusals = Refusals::default();
        let generation = self.registry.generation();
        if self.known.len() >= MAX_KNOWN_PER_STREAM
            || self.seen_bytes >= MAX_CACHED_BYTES_PER_STREAM
            || generation != self.generation
        {
            self.generation = generation;
            self.seen.clear();
            self.seen_bytes = 0;
            self.known.clear();
            self.bounds_pool.clear();
            self.previous_prefixes.clear();
        }
        self.current_prefixes.clear();
        let base = batch_bytes.as_ptr() as usize;
        let mut buf = &batch_bytes[..];
        let mut batch = IngestBatch {
            encoded_bytes: buf.len(),
            samples: Vec::with_capacity((buf.len() / 48).min(self.max_samples)),
            ..IngestBatch::default()
        };
        // Samples and probes met so far, refused ones included.
        let mut items = 0usize;
        let mut over_limit = 0u64;
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match (tag, wire_type) {
                (1, WireType::Varint) => batch.seq = decode_varint(&mut buf)?,
                (2, WireType::Varint) => batch.created_unix_ms = decode_varint(&mut buf)? as i64,
                (3 | 5, WireType::LengthDelimited) => {
                    let encoded = read_bytes(&mut buf)?;
                    let n = items;
                    items += 1;
                    if n >= self.max_samples {
                        over_limit += 1;
                        continue;
                    }
                    if tag == 3 {
                        let start = batch.histogram_counts.len();
                        match self.decode_sample(n, base, encoded, &mut batch.histogram_counts) {
                            Ok(sample) => batch.samples.push(sample),
                            Err(refusal) => {
                                batch.histogram_counts.truncate(start);
                                self.refusals.add(refusal);
                            }
                        }
                    } else {
                        match self.decode_probe(n, encoded) {
                            Ok(probe) => batch.probes.push(probe),
                            Err(refusal) => self.refusals.add(refusal),
                        }
                    }
                }
                (6, WireType::Varint) => batch.dropped_batches = decode_varint(&mut buf)?,
                (1 | 2 | 3 | 5 | 6, _) => {
                    return Err(Invalid::malformed("wrong wire type in Batch"));
                }
                // Raw events (4) are not stored yet; unknown fields of the batch itself are
                // skipped (bounded by the message size, never kept).
                _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
            }
        }
        let max = self.max_samples;
        self.refusals
            .add_many(SampleRefusal::TooManySamples, over_limit, || {
                format!("batch has {items} samples and probes, more than {max}")
            });
        if batch.seq == 0 {
            return Err(Invalid::new(
                RejectReason::InvalidSample,
                "Batch.seq must be at least 1",
            ));
        }
        self.previous = batch_bytes;
        std::mem::swap(&mut self.previous_prefixes, &mut self.current_prefixes);
        Ok(batch)
    }

    fn decode_sample(
        &mut self,
        n: usize,
        base: usize,
        encoded: &[u8],
        pool: &mut Vec<u64>,
    ) -> Result<IngestSample, Refusal> {
        let scanned = scan_sample(n, encoded)?;
        if scanned.window_start_ms < 0 {
            return Err(refuse(
                SampleRefusal::BadWindow,
                n,
                "negative window_start_unix_ms",
            ));
        }
        if scanned.window_secs == 0 || scanned.window_secs > MAX_WINDOW_SECS {
            return Err(refuse(
                SampleRefusal::BadWindow,
                n,
                format!("window_secs must be 1..={MAX_WINDOW_SECS}"),
            ));
        }
        self.check_time(n, "window_start_unix_ms", scanned.window_start_ms)?;
        let (kind, value) = self.sample_value(n, scanned.raw, pool)?;

        let (series, series_kind, bounds_match) = match scanned.prefix {
            Some(prefix) => {
                let slot = match self.predicted(prefix) {
                    Some(slot) => slot,
                    None => match self.seen.get(prefix) {
                        Some(&slot) => slot,
                        None => {
                            let (id, def) = self.resolve_series(n, &scanned, kind)?;
                            let slot = self.known.len() as u32;
                            let bounds = self.shared_bounds(&def.bounds);
                            self.known.push(KnownSeries {
                                id,
                                kind: def.kind,
                                bounds,
                            });
                            self.seen.insert(prefix.into(), slot);
                            self.seen_bytes += prefix.len();
                            slot
                        }
                    },
                };
                self.current_prefixes.push(PrefixAt {
                    start: prefix.as_ptr() as usize - base,
                    len: prefix.len(),
                    slot,
                });
                let known = &self.known[slot as usize];
                let bounds_match = kind != MetricKind::Histogram || *known.bounds == *self.bounds;
                (known.id, known.kind, bounds_match)
            }
            None => {
                let (id, def) = self.resolve_series(n, &scanned, kind)?;
                let bounds_match = kind != MetricKind::Histogram || *def.bounds == *self.bounds;
                (id, def.kind, bounds_match)
            }
        };
        if series_kind != kind {
            return Err(refuse(
                SampleRefusal::KindConflict,
                n,
                format!("the metric is a {series_kind:?}, not a {kind:?}"),
            ));
        }
        if !bounds_match {
            return Err(refuse(
                SampleRefusal::BoundsChanged,
                n,
                "histogram bounds differ from the series' bounds",
            ));
        }
        Ok(IngestSample {
            series,
            window_start_ms: scanned.window_start_ms,
            value,
        })
    }

    /// Refuses a time outside the accepted range.
    fn check_time(&self, n: usize, field: &str, at_ms: i64) -> Result<(), Refusal> {
        match &self.window_range_ms {
            Some(range) if !range.contains(&at_ms) => Err(refuse(
                SampleRefusal::WindowOutOfRange,
                n,
                format!(
                    "{field} {at_ms} is outside the accepted range {}..={} (retention period \
                     to now plus the allowed clock skew)",
                    range.start(),
                    range.end()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn decode_probe(&self, n: usize, encoded: &[u8]) -> Result<IngestProbe, Refusal> {
        let probe = Probe::decode(encoded)
            .map_err(|e| refuse(SampleRefusal::Malformed, n, format!("probe: {e}")))?;
        let probe = validate_probe(n, probe)?;
        self.check_time(n, "probe at_unix_ms", probe.at_unix_ms)?;
        Ok(probe)
    }

    fn shared_bounds(&mut self, bounds: &[f64]) -> Arc<[f64]> {
        if let Some(shared) = self.bounds_pool.iter().find(|b| ***b == *bounds) {
            return shared.clone();
        }
        let shared: Arc<[f64]> = bounds.into();
        if self.bounds_pool.len() < 64 {
            self.bounds_pool.push(shared.clone());
        }
        shared
    }

    /// The slot of the sample at the same position (among samples with a prefix) of the
    /// previous batch, if its prefix is identical.
    fn predicted(&self, prefix: &[u8]) -> Option<u32> {
        let at = self.previous_prefixes.get(self.current_prefixes.len())?;
        let previous = self.previous.get(at.start..at.start + at.len)?;
        (previous == prefix).then_some(at.slot)
    }

    /// Validates the value; histogram bounds land in `self.bounds`, counts in `pool`.
    fn sample_value(
        &mut self,
        n: usize,
        raw: RawValue<'_>,
        pool: &mut Vec<u64>,
    ) -> Result<(MetricKind, SampleValue), Refusal> {
        Ok(match raw {
            RawValue::None => return Err(refuse(SampleRefusal::BadValue, n, "no value")),
            RawValue::Counter(v) => {
                if !v.is_finite() || v < 0.0 {
                    return Err(refuse(
                        SampleRefusal::BadValue,
                        n,
                        format!("counter delta {v} is not a finite non-negative number"),
                    ));
                }
                (MetricKind::Counter, SampleValue::Counter(v))
            }
            RawValue::Gauge(v) => {
                if !v.is_finite() {
                    return Err(refuse(
                        SampleRefusal::BadValue,
                        n,
                        format!("gauge {v} is not finite"),
                    ));
                }
                (MetricKind::Gauge, SampleValue::Gauge(v))
            }
            RawValue::Histogram(encoded) => {
                let start = pool.len();
                let sum =
                    decode_histogram(encoded, &mut self.bounds, pool, self.max_histogram_buckets)
                        .map_err(|(reason, detail)| refuse(reason, n, detail))?;
                let counts = start as u32..pool.len() as u32;
                (
                    MetricKind::Histogram,
                    SampleValue::Histogram { sum, counts },
                )
            }
        })
    }

    /// The slow path for a label set not seen on this stream: validate names and values, sort,
    /// build the canonical key, find or create the series.
    fn resolve_series(
        &mut self,
        n: usize,
        scanned: &ScannedSample<'_>,
        kind: MetricKind,
    ) -> Result<(SeriesId, Arc<SeriesDef>), Refusal> {
        let metric = std::str::from_utf8(scanned.metric)
            .map_err(|_| refuse(SampleRefusal::Malformed, n, "metric name is not UTF-8"))?;
        check_metric_name(metric).map_err(|e| refuse(SampleRefusal::BadMetricName, n, e))?;
        let mut labels: [(&str, &str); MAX_LABELS] = [("", ""); MAX_LABELS];
        for (slot, encoded) in labels
            .iter_mut()
            .zip(&scanned.labels[..scanned.label_count])
        {
            *slot = decode_label(encoded).map_err(|(reason, detail)| refuse(reason, n, detail))?;
        }
        let labels = &mut labels[..scanned.label_count];
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (i, (name, value)) in labels.iter().enumerate() {
            check_label_name(name).map_err(|e| refuse(SampleRefusal::BadLabelName, n, e))?;
            if i > 0 && labels[i - 1].0 == *name {
                return Err(refuse(
                    SampleRefusal::DuplicateLabel,
                    n,
                    format!("label {name} given twice"),
                ));
            }
            if value.len() > MAX_LABEL_VALUE_BYTES {
                return Err(refuse(
                    SampleRefusal::LabelTooLong,
                    n,
                    format!(
                        "label {name} value of {} bytes is longer than {MAX_LABEL_VALUE_BYTES}",
                        value.len()
                    ),
                ));
            }
            if *name == "le" && kind == MetricKind::Histogram {
                return Err(refuse(
                    SampleRefusal::BadLabelName,
                    n,
                    "label le is reserved for histogram buckets",
                ));
            }
        }
        // Samples without a host label get the agent's (from Hello); an explicit one must name
        // a host the agent's token is bound to.
        let explicit_host = labels.iter().find(|(name, _)| *name == "host");
        if let Some((_, host)) = explicit_host
            && !self.bound_hosts.iter().any(|bound| **bound == **host)
        {
            return Err(refuse(
                SampleRefusal::ForeignHost,
                n,
                format!(
                    "host label {host:?} names a host this agent's token is not bound to \
                     (stream host {:?})",
                    self.host
                ),
            ));
        }
        let has_host = explicit_host.is_some();
        if !has_host && labels.len() == MAX_LABELS {
            return Err(refuse(
                SampleRefusal::TooManyLabels,
                n,
                format!("more than {MAX_LABELS} labels with the host label"),
            ));
        }
        let host = self.host.as_str();
        let pos = labels.partition_point(|(name, _)| *name < "host");
        let with_host = labels[..pos]
            .iter()
            .copied()
            .chain((!has_host).then_some(("host", host)))
            .chain(labels[pos..].iter().copied());
        series_key(metric, with_host.clone(), &mut self.key);

        if let Some(id) = self.registry.read().get(&self.key) {
            return Ok((id, self.registry.read().def(id).clone()));
        }
        let def = SeriesDef {
            metric: metric.into(),
            labels: with_host.map(|(n, v)| (n.into(), v.into())).collect(),
            kind,
            bounds: if kind == MetricKind::Histogram {
                self.bounds.as_slice().into()
            } else {
                Box::new([])
            },
        };
        let interned = self.registry.intern(&self.host, &self.key, def);
        let id = interned.map_err(|e| match e {
            InternError::TooManySeries(_) => refuse(SampleRefusal::SeriesLimit, n, e),
            InternError::KindConflict { .. } => refuse(SampleRefusal::KindConflict, n, e),
        })?;
        let def = self.registry.read().def(id).clone();
        Ok((id, def))
    }
}

/// Locates the fields of a `Sample` without validating names or values. Unknown fields and a
/// repeated metric name are refused (they would only pad the series cache key).
fn scan_sample(n: usize, encoded: &[u8]) -> Result<ScannedSample<'_>, Refusal> {
    let malformed = |e: &dyn std::fmt::Display| refuse(SampleRefusal::Malformed, n, e);
    let mut scanned = ScannedSample {
        metric: &[],
        labels: [&[]; MAX_LABELS],
        label_count: 0,
        window_start_ms: 0,
        window_secs: 0,
        raw: RawValue::None,
        prefix: None,
    };
    let mut buf = encoded;
    let mut metric_seen = false;
    // Length of the leading run of metric/label fields, None once it is interrupted.
    let mut prefix_len = Some(0);
    let mut in_prefix = true;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|e| malformed(&e))?;
        let identity = matches!(tag, 1 | 2);
        if !identity {
            in_prefix = false;
        } else if !in_prefix {
            prefix_len = None;
        }
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                if metric_seen {
                    return Err(malformed(&"metric name given twice"));
                }
                metric_seen = true;
                scanned.metric = read_bytes(&mut buf).map_err(|e| malformed(&e.message))?;
            }
            (2, WireType::LengthDelimited) => {
                if scanned.label_count == MAX_LABELS {
                    return Err(refuse(
                        SampleRefusal::TooManyLabels,
                        n,
                        format!("more than {MAX_LABELS} labels"),
                    ));
                }
                scanned.labels[scanned.label_count] =
                    read_bytes(&mut buf).map_err(|e| malformed(&e.message))?;
                scanned.label_count += 1;
            }
            (3, WireType::Varint) => {
                scanned.window_start_ms = decode_varint(&mut buf).map_err(|e| malformed(&e))? as i64
            }
            (4, WireType::Varint) => {
                scanned.window_secs = decode_varint(&mut buf).map_err(|e| malformed(&e))?
            }
            (5, WireType::SixtyFourBit) => {
                scanned.raw =
                    RawValue::Counter(read_f64(&mut buf).map_err(|e| malformed(&e.message))?)
            }
            (6, WireType::SixtyFourBit) => {
                scanned.raw =
                    RawValue::Gauge(read_f64(&mut buf).map_err(|e| malformed(&e.message))?)
            }
            (7, WireType::LengthDelimited) => {
                scanned.raw =
                    RawValue::Histogram(read_bytes(&mut buf).map_err(|e| malformed(&e.message))?)
            }
            (1..=7, _) => return Err(malformed(&"wrong wire type in Sample")),
            _ => {
                return Err(refuse(
                    SampleRefusal::UnknownField,
                    n,
                    format!("unknown field {tag} in Sample"),
                ));
            }
        }
        if identity && in_prefix {
            prefix_len = prefix_len.map(|_| encoded.len() - buf.len());
        }
    }
    scanned.prefix = prefix_len.filter(|&len| len > 0).map(|len| &encoded[..len]);
    Ok(scanned)
}

/// Decodes a `Histogram`: bounds into `bounds`, counts appended to `pool`; returns the sum.
/// More than `max_buckets` counts (or bounds + 1) are refused as soon as they are seen.
fn decode_histogram(
    mut buf: &[u8],
    bounds: &mut Vec<f64>,
    pool: &mut Vec<u64>,
    max_buckets: usize,
) -> Result<f64, (SampleRefusal, String)> {
    bounds.clear();
    let start = pool.len();
    let mut sum = 0.0;
    let malformed = |e: &dyn std::fmt::Display| {
        (
            SampleRefusal::BadHistogram,
            format!("malformed histogram: {e}"),
        )
    };
    let too_many = || {
        (
            SampleRefusal::TooManyBuckets,
            format!("histogram has more than {max_buckets} buckets"),
        )
    };
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|e| malformed(&e))?;
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                let packed = read_bytes(&mut buf).map_err(|e| malformed(&e.message))?;
                if packed.len() % 8 != 0 {
                    return Err(malformed(&"bounds are not whole doubles"));
                }
                if bounds.len() + packed.len() / 8 >= max_buckets {
                    return Err(too_many());
                }
                bounds.extend(
                    packed
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
                );
            }
            (1, WireType::SixtyFourBit) => {
                if bounds.len() + 1 >= max_buckets {
                    return Err(too_many());
                }
                bounds.push(read_f64(&mut buf).map_err(|e| malformed(&e.message))?)
            }
            (2, WireType::LengthDelimited) => {
                let mut packed = read_bytes(&mut buf).map_err(|e| malformed(&e.message))?;
                while packed.has_remaining() {
                    if pool.len() - start >= max_buckets {
                        return Err(too_many());
                    }
                    pool.push(decode_varint(&mut packed).map_err(|e| malformed(&e))?);
                }
            }
            (2, WireType::Varint) => {
                if pool.len() - start >= max_buckets {
                    return Err(too_many());
                }
                pool.push(decode_varint(&mut buf).map_err(|e| malformed(&e))?)
            }
            (3, WireType::SixtyFourBit) => {
                sum = read_f64(&mut buf).map_err(|e| malformed(&e.message))?
            }
            (1..=3, _) => return Err(malformed(&"wrong wire type in Histogram")),
            _ => {
                return Err((
                    SampleRefusal::UnknownField,
                    format!("unknown field {tag} in Histogram"),
                ));
            }
        }
    }
    let counts = pool.len() - start;
    if counts != bounds.len() + 1 {
        return Err((
            SampleRefusal::BadHistogram,
            format!(
                "histogram has {} counts for {} bounds (want bounds + 1)",
                counts,
                bounds.len()
            ),
        ));
    }
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err((
            SampleRefusal::BadHistogram,
            "histogram bounds must be finite and strictly increasing".into(),
        ));
    }
    if !sum.is_finite() {
        return Err((
            SampleRefusal::BadHistogram,
            "histogram sum is not finite".into(),
        ));
    }
    Ok(sum)
}

/// Decodes a `Label`; unknown fields and a repeated name or value are refused.
fn decode_label(mut buf: &[u8]) -> Result<(&str, &str), (SampleRefusal, String)> {
    let malformed = |e: &dyn std::fmt::Display| (SampleRefusal::Malformed, format!("label: {e}"));
    let (mut name, mut value) = (None, None);
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|e| malformed(&e))?;
        let slot = match (tag, wire_type) {
            (1, WireType::LengthDelimited) => &mut name,
            (2, WireType::LengthDelimited) => &mut value,
            (1 | 2, _) => return Err(malformed(&"wrong wire type in Label")),
            _ => {
                return Err((
                    SampleRefusal::UnknownField,
                    format!("unknown field {tag} in Label"),
                ));
            }
        };
        if slot.is_some() {
            return Err(malformed(&"name or value given twice"));
        }
        *slot = Some(read_str(&mut buf).map_err(|e| malformed(&e.message))?);
    }
    Ok((name.unwrap_or(""), value.unwrap_or("")))
}

/// Longest `Hello.incarnation`, in bytes.
pub const MAX_INCARNATION_BYTES: usize = 128;

/// `Hello.incarnation`: empty (agents without one) or a short printable id.
fn checked_incarnation(incarnation: String) -> Result<Arc<str>, Invalid> {
    if incarnation.len() > MAX_INCARNATION_BYTES || incarnation.chars().any(char::is_control) {
        return Err(Invalid::new(
            RejectReason::Malformed,
            format!(
                "Hello.incarnation must be at most {MAX_INCARNATION_BYTES} bytes without control characters"
            ),
        ));
    }
    Ok(incarnation.into())
}

/// Longest probe answer kept, in bytes.
pub const MAX_PROBE_ANSWER_BYTES: usize = 64 * 1024;

/// Checks one probe: short printable identifiers, bounded answer, sane numbers.
fn validate_probe(n: usize, p: Probe) -> Result<IngestProbe, Refusal> {
    let invalid = |what: String| Refusal {
        reason: SampleRefusal::BadProbe,
        detail: format!("probe {n}: {what}"),
    };
    let short = |field: &str, value: &str, max: usize, required: bool| {
        if required && value.is_empty() {
            return Err(invalid(format!("{field} is empty")));
        }
        if value.len() > max || value.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{field} must be at most {max} bytes without control characters"
            )));
        }
        Ok(())
    };
    short("kind", &p.kind, 64, true)?;
    short("target", &p.target, MAX_LABEL_VALUE_BYTES, true)?;
    short("server", &p.server, MAX_LABEL_VALUE_BYTES, false)?;
    short("rcode", &p.rcode, 32, false)?;
    short("answer_hash", &p.answer_hash, 128, false)?;
    if p.answer.len() > MAX_PROBE_ANSWER_BYTES {
        return Err(invalid(format!(
            "answer longer than {MAX_PROBE_ANSWER_BYTES} bytes"
        )));
    }
    if p.at_unix_ms < 0 {
        return Err(invalid("negative at_unix_ms".into()));
    }
    if !p.latency_secs.is_finite() || p.latency_secs < 0.0 {
        return Err(invalid(format!(
            "latency_secs {} is not a duration",
            p.latency_secs
        )));
    }
    Ok(IngestProbe {
        kind: p.kind,
        target: p.target,
        server: p.server,
        at_unix_ms: p.at_unix_ms,
        latency_secs: p.latency_secs,
        rcode: p.rcode,
        answer_hash: p.answer_hash,
        ttl_secs: p.ttl_secs,
        answer: p.answer,
    })
}

/// `[a-z_][a-z0-9_]*`, at most [`MAX_NAME_BYTES`].
fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_BYTES
        && matches!(bytes[0], b'a'..=b'z' | b'_')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is not [a-z_][a-z0-9_]* (≤ {MAX_NAME_BYTES} bytes)"
        ))
    }
}

fn check_metric_name(name: &str) -> Result<(), String> {
    check_name("metric", name)?;
    // Names the collector exposes itself.
    if name.starts_with("collector_") || name == "agent_up" {
        return Err(format!(
            "metric name {name:?} is reserved for the collector"
        ));
    }
    Ok(())
}

fn check_label_name(name: &str) -> Result<(), String> {
    check_name("label", name)?;
    if name.starts_with("__") {
        return Err(format!("label name {name:?} is reserved"));
    }
    Ok(())
}

fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Invalid> {
    let len = decode_varint(buf)?;
    if len > buf.len() as u64 {
        return Err(Invalid::malformed("length beyond the end of the message"));
    }
    let (head, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(head)
}

fn read_str<'a>(buf: &mut &'a [u8]) -> Result<&'a str, Invalid> {
    std::str::from_utf8(read_bytes(buf)?).map_err(|_| Invalid::malformed("string is not UTF-8"))
}

fn read_f64(buf: &mut &[u8]) -> Result<f64, Invalid> {
    if buf.len() < 8 {
        return Err(Invalid::malformed("truncated double"));
    }
    let (head, rest) = buf.split_at(8);
    *buf = rest;
    Ok(f64::from_le_bytes(head.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::refusal::SampleRefusal;
    use mailpulse_proto::v1::{
        AgentMessage, Batch, Histogram, Label, Sample, agent_message, sample,
    };
    use proptest::prelude::*;

    fn sample(metric: &str, labels: &[(&str, &str)], value: sample::Value) -> Sample {
        Sample {
            metric: metric.into(),
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            window_start_unix_ms: 60_000,
            window_secs: 60,
            value: Some(value),
        }
    }

    fn encode_batch(seq: u64, samples: Vec<Sample>) -> Bytes {
        Batch {
            seq,
            samples,
            ..Batch::default()
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn batch_decodes_to_interned_samples_with_default_host() {
        let registry = SeriesRegistry::new(100);
        let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
        let samples = vec![
            sample(
                "sent",
                &[("domain", "b"), ("relay", "r")],
                sample::Value::CounterDelta(2.0),
            ),
            // Same series, labels in another order.
            sample(
                "sent",
                &[("relay", "r"), ("domain", "b")],
                sample::Value::CounterDelta(1.0),
            ),
            // The stream's own host given explicitly: the same series as without it.
            sample(
                "sent",
                &[("host", "mx1"), ("domain", "b"), ("relay", "r")],
                sample::Value::CounterDelta(1.0),
            ),
            sample(
                "delay_seconds",
                &[],
                sample::Value::Histogram(Histogram {
                    bounds: vec![1.0],
                    counts: vec![3, 4],
                    sum: 5.0,
                }),
            ),
        ];
        for _ in 0..2 {
            // Twice: the second pass takes the cached paths.
            let batch = decoder
                .decode(encode_batch(7, samples.clone()))
                .expect("valid");
            assert!(decoder.refusals().is_empty());
            assert_eq!(batch.seq, 7);
            assert_eq!(batch.samples[0].series, batch.samples[1].series);
            assert_eq!(batch.samples[0].series, batch.samples[2].series);
            assert_eq!(batch.histogram_counts, vec![3, 4]);
            let index = registry.read();
            let sent = index.def(batch.samples[0].series);
            assert_eq!(
                sent.labels
                    .iter()
                    .map(|(n, v)| (&**n, &**v))
                    .collect::<Vec<_>>(),
                vec![("domain", "b"), ("host", "mx1"), ("relay", "r")]
            );
            assert_eq!(
                index.def(batch.samples[3].series).label("host"),
                Some("mx1")
            );
            assert_eq!(index.len(), 2);
        }
    }

    #[test]
    fn an_explicit_host_label_must_be_a_bound_host() {
        let registry = SeriesRegistry::new(100);
        let gauge = |host: &str| {
            sample(
                "queue_messages",
                &[("host", host)],
                sample::Value::Gauge(1.0),
            )
        };
        let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
        let batch = decoder
            .decode(encode_batch(1, vec![gauge("mx2"), gauge("mx1")]))
            .expect("batch");
        assert_eq!(batch.samples.len(), 1);
        assert_eq!(decoder.refusals().count(SampleRefusal::ForeignHost), 1);
        assert_eq!(
            registry.read().def(batch.samples[0].series).label("host"),
            Some("mx1")
        );
        // A token bound to both hosts (one agent reading a log shared by two hosts).
        let mut decoder =
            BatchDecoder::new(&registry, 100, "mx1").bind_hosts(&["mx1".into(), "mx2".into()]);
        let batch = decoder
            .decode(encode_batch(1, vec![gauge("mx2"), gauge("mx3")]))
            .expect("batch");
        assert_eq!(batch.samples.len(), 1);
        assert_eq!(decoder.refusals().count(SampleRefusal::ForeignHost), 1);
    }

    #[test]
    fn bad_samples_are_refused_one_by_one() {
        let registry = SeriesRegistry::new(100);
        let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
        let good = || sample("sent", &[], sample::Value::CounterDelta(1.0));
        let long = "x".repeat(320);
        let histogram = |metric: &str, bounds: Vec<f64>, counts: Vec<u64>| {
            sample(
                metric,
                &[],
                sample::Value::Histogram(Histogram {
                    bounds,
                    counts,
                    sum: 1.0,
                }),
            )
        };
        let samples = vec![
            good(),
            sample("sent", &[("user", &long)], sample::Value::CounterDelta(1.0)),
            good(),
            sample("sent", &[], sample::Value::CounterDelta(f64::NAN)),
            histogram("a_seconds", vec![1.0], vec![1, 2]),
            histogram("b_seconds", (1..65).map(f64::from).collect(), vec![1; 65]),
            histogram("c_seconds", (1..64).map(f64::from).collect(), vec![3; 64]),
            histogram("d_seconds", vec![1.0, 2.0], vec![1, 2]),
            good(),
        ];
        let batch = decoder
            .decode(encode_batch(1, samples))
            .expect("the batch itself is fine");
        assert_eq!(batch.samples.len(), 5);
        // The refused histograms' counts are not left in the pool.
        let mut expected = vec![1, 2];
        expected.extend([3; 64]);
        assert_eq!(batch.histogram_counts, expected);
        let refusals = decoder.refusals();
        assert_eq!(refusals.count(SampleRefusal::LabelTooLong), 1);
        assert_eq!(refusals.count(SampleRefusal::BadValue), 1);
        assert_eq!(refusals.count(SampleRefusal::TooManyBuckets), 1);
        assert_eq!(refusals.count(SampleRefusal::BadHistogram), 1);
        assert_eq!(refusals.total(), 4);
        assert!(
            refusals
                .first_detail()
                .is_some_and(|d| d.starts_with("sample 1:")),
            "{refusals:?}"
        );
        // Beyond max_samples: refused, the first ones applied.
        let mut decoder = BatchDecoder::new(&registry, 3, "mx1");
        let batch = decoder
            .decode(encode_batch(2, (0..5).map(|_| good()).collect()))
            .expect("batch");
        assert_eq!(batch.samples.len(), 3);
        assert_eq!(decoder.refusals().count(SampleRefusal::TooManySamples), 2);
    }

    #[test]
    fn windows_outside_the_accepted_range_are_refused() {
        let registry = SeriesRegistry::new(100);
        let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
        decoder.set_window_range(Some(60_000..=120_000));
        let at = |window_ms: i64| {
            let mut s = sample("sent", &[], sample::Value::CounterDelta(1.0));
            s.window_start_unix_ms = window_ms;
            s
        };
        let batch = decoder
            .decode(encode_batch(
                1,
                vec![at(0), at(60_000), at(120_000), at(180_000)],
            ))
            .expect("batch");
        assert_eq!(batch.samples.len(), 2);
        assert_eq!(decoder.refusals().count(SampleRefusal::WindowOutOfRange), 2);
        let mut long = at(60_000);
        long.window_secs = 86_401;
        decoder.decode(encode_batch(2, vec![long])).expect("batch");
        assert_eq!(decoder.refusals().count(SampleRefusal::BadWindow), 1);
    }

    #[test]
    fn padded_labels_are_refused_and_never_cached() {
        let registry = SeriesRegistry::new(100);
        let mut decoder = BatchDecoder::new(&registry, 1000, "mx1");
        let label = Label {
            name: "domain".into(),
            value: "x".into(),
        }
        .encode_to_vec();
        for seq in 1..=20u64 {
            let mut batch = Batch {
                seq,
                ..Batch::default()
            }
            .encode_to_vec();
            for i in 0..50u64 {
                // metric, a label with an unknown field of padding, window, value.
                let mut padded = label.clone();
                prost::encoding::bytes::encode(15, &vec![(seq * 50 + i) as u8; 4096], &mut padded);
                let mut encoded = Vec::new();
                prost::encoding::string::encode(1, &"sent".to_string(), &mut encoded);
                prost::encoding::bytes::encode(2, &padded, &mut encoded);
                prost::encoding::int64::encode(3, &60_000, &mut encoded);
                prost::encoding::uint32::encode(4, &60, &mut encoded);
                prost::encoding::double::encode(5, &1.0, &mut encoded);
                prost::encoding::bytes::encode(3, &encoded, &mut batch);
            }
            let decoded = decoder.decode(Bytes::from(batch)).expect("batch");
            assert!(decoded.samples.is_empty());
            assert_eq!(decoder.refusals().count(SampleRefusal::UnknownField), 50);
        }
        assert_eq!(decoder.seen_bytes, 0, "nothing cached");
        assert!(decoder.seen.is_empty());
    }

    #[test]
    fn cached_series_still_check_kind_and_bounds() {
        let registry = SeriesRegistry::new(100);
        let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
        let histogram = |bounds: Vec<f64>| {
            let counts = vec![1; bounds.len() + 1];
            sample(
                "d",
                &[],
                sample::Value::Histogram(Histogram {
                    bounds,
                    counts,
                    sum: 1.0,
                }),
            )
        };
        decoder
            .decode(encode_batch(1, vec![histogram(vec![1.0, 2.0])]))
            .expect("valid");
        let batch = decoder
            .decode(encode_batch(2, vec![histogram(vec![1.0, 3.0])]))
            .expect("batch");
        assert!(batch.samples.is_empty());
        assert_eq!(decoder.refusals().count(SampleRefusal::BoundsChanged), 1);
        let batch = decoder
            .decode(encode_batch(
                2,
                vec![sample("d", &[], sample::Value::Gauge(1.0))],
            ))
            .expect("batch");
        assert!(batch.samples.is_empty());
        assert_eq!(decoder.refusals().count(SampleRefusal::KindConflict), 1);
    }

    #[test]
    fn frames_are_classified() {
        let hello = AgentMessage {
            kind: Some(agent_message::Kind::Hello(Hello {
                agent_id: "mx1".into(),
                host: "h".into(),
                ..Hello::default()
            })),
        }
        .encode_to_vec();
        assert!(matches!(parse_frame(&hello), Ok(AgentFrame::Hello(h)) if h.agent_id == "mx1"));
        assert!(matches!(parse_frame(&[]), Ok(AgentFrame::Empty)));
        assert_eq!(
            parse_frame(&[0x12, 0x05, 0x01])
                .map(|_| ())
                .unwrap_err()
                .reason,
            RejectReason::Malformed
        );
        let token: Arc<str> = "mx2".into();
        let hello = |agent_id: &str, host: &str| Hello {
            agent_id: agent_id.into(),
            host: host.into(),
            ..Hello::default()
        };
        let bound: [Box<str>; 1] = ["mx2.example".into()];
        assert_eq!(
            agent_hello(hello("mx1", "mx2.example"), &token, &bound)
                .unwrap_err()
                .reason,
            RejectReason::AgentMismatch
        );
        let unbound = agent_hello(hello("mx2", "mx1.example"), &token, &bound).unwrap_err();
        assert_eq!(unbound.reason, RejectReason::AgentMismatch);
        assert!(unbound.message.contains("mx1.example"), "{unbound:?}");
        assert!(agent_hello(hello("mx2", "mx2.example"), &token, &bound).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let registry = SeriesRegistry::new(1000);
            let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
            let _ = parse_frame(&bytes);
            let _ = decoder.decode(Bytes::from(bytes.clone()));
            let _ = decoder.decode(Bytes::from(bytes));
        }

        #[test]
        fn mutated_valid_batches_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = encode_batch(3, vec![
                sample("sent", &[("domain", "x")], sample::Value::CounterDelta(1.0)),
                sample("d", &[], sample::Value::Histogram(Histogram { bounds: vec![1.0], counts: vec![1, 2], sum: 3.0 })),
            ]).to_vec();
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let registry = SeriesRegistry::new(1000);
            let mut decoder = BatchDecoder::new(&registry, 100, "mx1");
            let _ = decoder.decode(Bytes::from(bytes));
        }
    }
}
