//! Message events → per-window samples (counter deltas and histograms) with bounded label sets.
//!
//! The [`Aggregator`] keeps, per window of `window_secs` (aligned to wall-clock multiples of it,
//! by each event's own timestamp), a counter per metric and label set and the delay and size
//! histograms. [`Aggregator::cut`] emits what accumulated since the previous cut as *deltas* and
//! starts over, so a window may be emitted in several slices (the shipper cuts every few seconds)
//! and the collector adds them up.
//!
//! Open label sets (recipient `domain`, `relay`, reject `reason`) are bounded per window and label
//! name: only the top-K values by event count keep their name, the others are folded into
//! `other`. A value that was emitted by name in an earlier slice of the same window keeps its name
//! in later slices, so a window never shows more than K named values per label.
//!
//! Memory is bounded per window in items and bytes: label values are cut to `max_label_bytes`
//! (see [`bound`]) before they are counted, and the table that ranks the values of each open
//! label holds at most `max_tracked_label_values` values and `max_tracked_label_bytes` bytes per
//! window; when it is full, the less counted half is forgotten (those values can no longer be
//! named in that window and fold into `other`). Naming state is kept for [`KEEP_WINDOWS`]
//! windows.
//!
//! Architecture invariant: folding only renames labels; the sum of the counter deltas of one kind
//! equals the number of events of that kind observed (proptest-checked).

pub mod bound;
mod labels;
mod self_metrics;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use mailpulse_proto::v1::{self as pb, sample};

use crate::classify::classify;
use crate::labels::OTHER;
use crate::track::{EventKind, MessageEvent};
use crate::traffic::{SignalKind, TrafficSignal};

pub use bound::{DEFAULT_MAX_LABEL_BYTES, bound_batch, bound_label_value};
pub use labels::{dsn_class, recipient_domain, reject_reason, relay_host};
pub use self_metrics::{SelfMetrics, SelfMetricsSnapshot};

/// Upper bounds (seconds) of the `delivery_delay_seconds` buckets.
pub const DELAY_BOUNDS_SECS: [f64; 13] = [
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Upper bounds (bytes) of the `message_size_bytes` buckets.
pub const SIZE_BOUNDS_BYTES: [f64; 10] = [
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 10485760.0, 26214400.0,
    52428800.0,
];

/// How the aggregator windows and bounds its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// Window length; windows start at multiples of it (Unix time). Zero is taken as 1.
    pub window_secs: u32,
    /// Recipient domains kept by name per window.
    pub top_k_domains: usize,
    /// Relay hosts kept by name per window.
    pub top_k_relays: usize,
    /// Reject reasons (enhanced status codes) kept by name per window.
    pub top_k_reasons: usize,
    /// Client networks (traffic signals) kept by name per window.
    pub top_k_client_nets: usize,
    /// SASL usernames (traffic signals) kept by name per window.
    pub top_k_users: usize,
    /// Longest label value in bytes; longer ones are cut with a hash suffix (see [`bound`]).
    pub max_label_bytes: usize,
    /// Most values of one open label ranked per window (the candidates for top-K).
    pub max_tracked_label_values: usize,
    /// Most bytes of ranked values (all open labels together) per window.
    pub max_tracked_label_bytes: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            top_k_domains: 50,
            top_k_relays: 20,
            top_k_reasons: 20,
            top_k_client_nets: 50,
            top_k_users: 50,
            max_label_bytes: DEFAULT_MAX_LABEL_BYTES,
            max_tracked_label_values: DEFAULT_MAX_TRACKED_LABEL_VALUES,
            max_tracked_label_bytes: DEFAULT_MAX_TRACKED_LABEL_BYTES,
        }
    }
}

/// Default of [`AggregatorConfig::max_tracked_label_values`].
pub const DEFAULT_MAX_TRACKED_LABEL_VALUES: usize = 1024;
/// Default of [`AggregatorConfig::max_tracked_label_bytes`] (256 KiB).
pub const DEFAULT_MAX_TRACKED_LABEL_BYTES: usize = 256 * 1024;

/// Counters about what the aggregator had to bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Label values cut to `max_label_bytes`.
    pub labels_truncated: u64,
    /// Ranked values forgotten because a window's table was full.
    pub label_values_forgotten: u64,
}

/// Accumulates events into windowed series; see the module documentation.
#[derive(Debug)]
pub struct Aggregator {
    cfg: AggregatorConfig,
    windows: BTreeMap<i64, Window>,
    /// Start of the newest window any event fell into.
    newest_start: Option<i64>,
    /// Windows before this start have been forgotten; an event for one of them is late.
    forgotten_before: Option<i64>,
    stats: AggregatorStats,
}

/// Windows whose naming state is kept after a cut, counting back from the newest one.
pub const KEEP_WINDOWS: i64 = 16;

impl Aggregator {
    /// An aggregator with nothing observed yet.
    pub fn new(cfg: AggregatorConfig) -> Self {
        Self {
            cfg: AggregatorConfig {
                window_secs: cfg.window_secs.max(1),
                ..cfg
            },
            windows: BTreeMap::new(),
            newest_start: None,
            forgotten_before: None,
            stats: AggregatorStats::default(),
        }
    }

    /// What had to be bounded so far.
    pub fn stats(&self) -> AggregatorStats {
        self.stats
    }

    /// Bytes of label values held in the ranking tables of all windows now (at most
    /// `max_tracked_label_bytes` per window).
    pub fn tracked_label_bytes(&self) -> usize {
        self.windows.values().map(|w| w.ranked_bytes).sum()
    }

    /// `value` cut to `max_label_bytes`, counted when cut.
    fn bound(&mut self, value: Arc<str>) -> Arc<str> {
        if value.len() <= self.cfg.max_label_bytes {
            return value;
        }
        self.stats.labels_truncated += 1;
        bound::bound_arc(&value, self.cfg.max_label_bytes).0
    }

    /// The series key of `metric` for `host` and `instance`, both bounded.
    fn key(&mut self, metric: Metric, host: &Arc<str>, instance: &Arc<str>) -> SeriesKey {
        let host = self.bound(host.clone());
        let instance = self.bound(instance.clone());
        SeriesKey::bare(metric, host, instance)
    }

    /// The limits [`Window::rank`] applies.
    fn rank_limits(&self) -> RankLimits {
        RankLimits {
            values: self.cfg.max_tracked_label_values.max(1),
            bytes: self.cfg.max_tracked_label_bytes,
        }
    }

    /// The configuration in use (window length at least 1 s).
    pub fn config(&self) -> AggregatorConfig {
        self.cfg
    }

    /// Start (Unix seconds) of the window that `unix_secs` falls into.
    pub fn window_start(&self, unix_secs: i64) -> i64 {
        window_start(unix_secs, self.cfg.window_secs)
    }

    /// Counts one event into the window of its timestamp.
    pub fn observe(&mut self, ev: &MessageEvent) {
        let start = self.window_start(ev.at.unix_secs);
        let mut key = self.key(Metric::counter_for(ev.kind), &ev.host, &ev.instance);
        let (domain, relay, reason) = match ev.kind {
            EventKind::Delivered | EventKind::Deferred | EventKind::Bounced => (
                Some(self.bound(recipient_domain(ev))),
                Some(self.bound(relay_host(ev))),
                None,
            ),
            EventKind::Rejected => (None, None, Some(self.bound(reject_reason(ev)))),
            _ => (None, None, None),
        };
        let limits = self.rank_limits();
        let window = self.window_for(start);
        let mut forgotten = 0;
        match ev.kind {
            EventKind::Delivered | EventKind::Deferred | EventKind::Bounced => {
                let (domain, relay) = (domain.unwrap_or_default(), relay.unwrap_or_default());
                forgotten += window.rank(OpenLabel::Domain, &domain, limits);
                forgotten += window.rank(OpenLabel::Relay, &relay, limits);
                if ev.kind == EventKind::Delivered
                    && let Some(delay) = ev.delay_secs
                {
                    let mut delay_key = SeriesKey {
                        metric: Metric::DeliveryDelay,
                        ..key.clone()
                    };
                    delay_key.domain = Some(domain.clone());
                    delay_key.relay = Some(relay.clone());
                    window
                        .histograms
                        .entry(delay_key)
                        .or_insert_with(|| Histogram::new(&DELAY_BOUNDS_SECS))
                        .observe(delay);
                }
                if ev.kind != EventKind::Delivered {
                    let text = ev.status_text.as_deref().unwrap_or("");
                    key.reason_class = Some(classify(ev.dsn.as_deref(), text).as_str());
                }
                key.domain = Some(domain);
                key.relay = Some(relay);
                key.dsn_class = Some(dsn_class(ev));
            }
            EventKind::Rejected => {
                let reason = reason.unwrap_or_default();
                forgotten += window.rank(OpenLabel::Reason, &reason, limits);
                key.reason = Some(reason);
            }
            EventKind::Received => {
                if let Some(size) = ev.size {
                    let size_key = SeriesKey {
                        metric: Metric::MessageSize,
                        ..key.clone()
                    };
                    window
                        .histograms
                        .entry(size_key)
                        .or_insert_with(|| Histogram::new(&SIZE_BOUNDS_BYTES))
                        .observe(size as f64);
                }
            }
            _ => {}
        }
        *window.counters.entry(key).or_insert(0) += 1;
        self.stats.label_values_forgotten += forgotten;
    }

    /// Counts one traffic signal into the window of its timestamp (gauges keep the window's last
    /// value).
    pub fn observe_signal(&mut self, sig: &TrafficSignal) {
        let start = self.window_start(sig.at.unix_secs);
        let mut key = self.key(Metric::for_signal(sig.kind), &sig.host, &sig.instance);
        let client_net = sig.client_net.clone().map(|v| self.bound(v));
        let user = sig.user.clone().map(|v| self.bound(v));
        let limits = self.rank_limits();
        let window = self.window_for(start);
        let mut forgotten = 0;
        key.tag = match sig.kind {
            SignalKind::SmtpdReject { stage } => Some(("stage", stage)),
            SignalKind::Postscreen { event } => Some(("event", event.as_str())),
            SignalKind::SessionError { kind } => Some(("kind", kind.as_str())),
            SignalKind::TlsFailure { direction } => Some(("direction", direction.as_str())),
            SignalKind::AnvilMax { stat, .. } => Some(("stat", stat)),
            SignalKind::SaslUserMessage { event } => Some(("event", event)),
            _ => None,
        };
        if let Some(net) = client_net {
            forgotten += window.rank(OpenLabel::ClientNet, &net, limits);
            key.client_net = Some(net);
        }
        if let Some(user) = &user {
            forgotten += window.rank(OpenLabel::User, user, limits);
            if sig.kind == SignalKind::SaslFailure {
                // Failures per user go to their own metric, so the per-network one stays
                // complete.
                let mut by_user = key.clone();
                by_user.metric = Metric::SaslAuthFailuresByUser;
                by_user.client_net = None;
                by_user.user = Some(user.clone());
                *window.counters.entry(by_user).or_insert(0) += 1;
            } else {
                key.user = Some(user.clone());
            }
        }
        match sig.kind {
            SignalKind::AnvilMax { value, .. } => {
                window.gauges.insert(key, value);
            }
            _ => *window.counters.entry(key).or_insert(0) += 1,
        }
        self.stats.label_values_forgotten += forgotten;
    }

    /// The window starting at `start`, created (and marked late when already forgotten) if new.
    fn window_for(&mut self, start: i64) -> &mut Window {
        self.newest_start = Some(self.newest_start.map_or(start, |n| n.max(start)));
        let late = self.forgotten_before.is_some_and(|f| start < f);
        self.windows.entry(start).or_insert_with(|| Window {
            late,
            ..Window::default()
        })
    }

    /// Number of series (before folding) waiting for the next cut: a bound on the samples it
    /// will emit.
    pub fn pending_series(&self) -> usize {
        self.windows
            .values()
            .map(|w| w.counters.len() + w.histograms.len() + w.gauges.len())
            .sum()
    }

    /// Emits everything observed since the previous cut as samples (counter deltas and histogram
    /// deltas), windows in time order, series in a stable order, and starts over. Windows more
    /// than [`KEEP_WINDOWS`] before the newest are forgotten afterwards; their names may already
    /// have been emitted, so a late event for one of them has its open labels folded to `other`.
    pub fn cut(&mut self) -> Vec<pb::Sample> {
        let window_secs = self.cfg.window_secs;
        let limits = [
            self.cfg.top_k_domains,
            self.cfg.top_k_relays,
            self.cfg.top_k_reasons,
            self.cfg.top_k_client_nets,
            self.cfg.top_k_users,
        ];
        let mut out = Vec::new();
        for (&start, window) in &mut self.windows {
            window.emit(start, window_secs, limits, &mut out);
        }
        if let Some(newest) = self.newest_start {
            let keep_from = newest - KEEP_WINDOWS * i64::from(window_secs);
            let before = self.windows.len();
            self.windows.retain(|&start, _| start >= keep_from);
            if self.windows.len() < before {
                self.forgotten_before = Some(
                    self.forgotten_before
                        .map_or(keep_from, |f| f.max(keep_from)),
                );
            }
        }
        out
    }
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Start of the window of length `window_secs` that `unix_secs` falls into (floor, also for
/// times before 1970).
pub fn window_start(unix_secs: i64, window_secs: u32) -> i64 {
    let w = i64::from(window_secs.max(1));
    unix_secs.div_euclid(w) * w
}

/// The metrics the aggregator emits (names without prefix and `_total` suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Metric {
    Received,
    Delivered,
    Deferred,
    Bounced,
    Expired,
    Rejected,
    Held,
    Released,
    Discarded,
    DeliveryDelay,
    MessageSize,
    SmtpdConnections,
    SmtpdDisconnects,
    SmtpdRejects,
    PostscreenConnections,
    PostscreenEvents,
    SaslAuthFailures,
    SaslAuthFailuresByUser,
    SaslUserMessages,
    SmtpdSessionErrors,
    TlsHandshakeFailures,
    AnvilMax,
}

impl Metric {
    fn counter_for(kind: EventKind) -> Self {
        match kind {
            EventKind::Received => Self::Received,
            EventKind::Delivered => Self::Delivered,
            EventKind::Deferred => Self::Deferred,
            EventKind::Bounced => Self::Bounced,
            EventKind::Expired => Self::Expired,
            EventKind::Rejected => Self::Rejected,
            EventKind::Held => Self::Held,
            EventKind::Released => Self::Released,
            EventKind::Discarded => Self::Discarded,
        }
    }

    fn for_signal(kind: SignalKind) -> Self {
        match kind {
            SignalKind::SmtpdConnect => Self::SmtpdConnections,
            SignalKind::SmtpdDisconnect => Self::SmtpdDisconnects,
            SignalKind::SmtpdReject { .. } => Self::SmtpdRejects,
            SignalKind::PostscreenConnect => Self::PostscreenConnections,
            SignalKind::Postscreen { .. } => Self::PostscreenEvents,
            SignalKind::SaslFailure => Self::SaslAuthFailures,
            SignalKind::SessionError { .. } => Self::SmtpdSessionErrors,
            SignalKind::TlsFailure { .. } => Self::TlsHandshakeFailures,
            SignalKind::AnvilMax { .. } => Self::AnvilMax,
            SignalKind::SaslUserMessage { .. } => Self::SaslUserMessages,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Received => "messages_received",
            Self::Delivered => "messages_delivered",
            Self::Deferred => "messages_deferred",
            Self::Bounced => "messages_bounced",
            Self::Expired => "messages_expired",
            Self::Rejected => "messages_rejected",
            Self::Held => "messages_held",
            Self::Released => "messages_released",
            Self::Discarded => "messages_discarded",
            Self::DeliveryDelay => "delivery_delay_seconds",
            Self::MessageSize => "message_size_bytes",
            Self::SmtpdConnections => "smtpd_connections",
            Self::SmtpdDisconnects => "smtpd_disconnects",
            Self::SmtpdRejects => "smtpd_rejects",
            Self::PostscreenConnections => "postscreen_connections",
            Self::PostscreenEvents => "postscreen_events",
            Self::SaslAuthFailures => "sasl_auth_failures",
            Self::SaslAuthFailuresByUser => "sasl_auth_failures_by_user",
            Self::SaslUserMessages => "sasl_user_messages",
            Self::SmtpdSessionErrors => "smtpd_session_errors",
            Self::TlsHandshakeFailures => "tls_handshake_failures",
            Self::AnvilMax => "anvil_max",
        }
    }
}

/// Name of the counter metric events of `kind` are counted in.
pub fn counter_metric(kind: EventKind) -> &'static str {
    Metric::counter_for(kind).name()
}

/// Label names whose value sets are open and therefore folded to top-K + `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenLabel {
    Domain = 0,
    Relay = 1,
    Reason = 2,
    ClientNet = 3,
    User = 4,
}

/// How many open label names there are.
const OPEN_LABELS: usize = 5;

/// One series: metric + label values (before folding).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    metric: Metric,
    host: Arc<str>,
    instance: Arc<str>,
    domain: Option<Arc<str>>,
    relay: Option<Arc<str>>,
    dsn_class: Option<&'static str>,
    reason_class: Option<&'static str>,
    reason: Option<Arc<str>>,
    client_net: Option<Arc<str>>,
    user: Option<Arc<str>>,
    /// A closed label whose name depends on the metric (`stage`, `event`, `kind`, ...).
    tag: Option<(&'static str, &'static str)>,
}

impl SeriesKey {
    fn bare(metric: Metric, host: Arc<str>, instance: Arc<str>) -> Self {
        Self {
            metric,
            host,
            instance,
            domain: None,
            relay: None,
            dsn_class: None,
            reason_class: None,
            reason: None,
            client_net: None,
            user: None,
            tag: None,
        }
    }

    /// The open label values, indexed by [`OpenLabel`].
    fn open(&self) -> [&Option<Arc<str>>; OPEN_LABELS] {
        [
            &self.domain,
            &self.relay,
            &self.reason,
            &self.client_net,
            &self.user,
        ]
    }

    fn labels(&self) -> Vec<pb::Label> {
        let mut labels = vec![label("host", &self.host), label("instance", &self.instance)];
        if let Some(v) = &self.domain {
            labels.push(label("domain", v));
        }
        if let Some(v) = &self.relay {
            labels.push(label("relay", v));
        }
        if let Some(v) = self.dsn_class {
            labels.push(label("dsn_class", v));
        }
        if let Some(v) = self.reason_class {
            labels.push(label("reason_class", v));
        }
        if let Some(v) = &self.reason {
            labels.push(label("reason", v));
        }
        if let Some((name, v)) = self.tag {
            labels.push(label(name, v));
        }
        if let Some(v) = &self.client_net {
            labels.push(label("client_net", v));
        }
        if let Some(v) = &self.user {
            labels.push(label("user", v));
        }
        labels
    }
}

fn label(name: &str, value: &str) -> pb::Label {
    pb::Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// Bucketed observations; `counts[i]` = observations `<= bounds[i]` (not cumulative), plus the
/// +Inf bucket last, as in the wire format.
#[derive(Debug, Clone, PartialEq)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, value: f64) {
        // A NaN or negative value (clock steps) counts as 0 rather than poisoning the sum.
        let value = if value.is_finite() && value > 0.0 {
            value
        } else {
            0.0
        };
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.sum += value;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }

    fn to_pb(&self) -> pb::Histogram {
        pb::Histogram {
            bounds: self.bounds.to_vec(),
            counts: self.counts.clone(),
            sum: self.sum,
        }
    }
}

/// What one window has accumulated.
#[derive(Debug, Default)]
struct Window {
    counters: HashMap<SeriesKey, u64>,
    histograms: HashMap<SeriesKey, Histogram>,
    /// Last value of each gauge in this slice.
    gauges: HashMap<SeriesKey, f64>,
    /// Events per value of each open label over the whole window (all slices), for ranking.
    ranks: [HashMap<Arc<str>, u64>; OPEN_LABELS],
    /// Values already emitted by name in an earlier slice of this window; they keep their name.
    named: [BTreeSet<Arc<str>>; OPEN_LABELS],
    /// Re-created after being forgotten: which names went out before is unknown, so none more.
    late: bool,
    /// Bytes accounted to the values in `ranks`.
    ranked_bytes: usize,
}

/// Bounds of one window's ranking tables.
#[derive(Debug, Clone, Copy)]
struct RankLimits {
    /// Values per open label.
    values: usize,
    /// Bytes of all open labels' values together.
    bytes: usize,
}

/// Bytes a ranked value is accounted for: its text plus the table entry around it.
fn ranked_cost(value: &str) -> usize {
    value.len() + 48
}

impl Window {
    /// Counts one occurrence of `value`; returns how many values were forgotten to make room.
    /// A value that finds no room even then is not ranked (it cannot be named in this window).
    fn rank(&mut self, which: OpenLabel, value: &Arc<str>, limits: RankLimits) -> u64 {
        let i = which as usize;
        if let Some(n) = self.ranks[i].get_mut(value) {
            *n += 1;
            return 0;
        }
        let cost = ranked_cost(value);
        let mut forgotten = 0;
        if self.ranks[i].len() >= limits.values || self.ranked_bytes + cost > limits.bytes {
            forgotten = self.forget_less_counted_half(i);
        }
        if self.ranks[i].len() < limits.values && self.ranked_bytes + cost <= limits.bytes {
            self.ranks[i].insert(value.clone(), 1);
            self.ranked_bytes += cost;
        }
        forgotten
    }

    /// Forgets the less counted half of open label `i`'s ranked values (values already named
    /// stay named); returns how many.
    fn forget_less_counted_half(&mut self, i: usize) -> u64 {
        let ranks = &mut self.ranks[i];
        if ranks.is_empty() {
            return 0;
        }
        let mut counts: Vec<u64> = ranks.values().copied().collect();
        let mid = counts.len() / 2;
        let (_, &mut cutoff, _) = counts.select_nth_unstable(mid);
        // At least one value goes, so a table full of ties still makes room.
        let mut budget = (ranks.len() - ranks.len() / 2).max(1);
        let (mut freed, mut removed) = (0, 0);
        ranks.retain(|v, n| {
            if budget > 0 && *n <= cutoff {
                budget -= 1;
                freed += ranked_cost(v);
                removed += 1;
                false
            } else {
                true
            }
        });
        self.ranked_bytes -= freed;
        removed
    }

    /// Folds the slice accumulated since the last cut and appends its samples; clears it.
    fn emit(
        &mut self,
        start: i64,
        window_secs: u32,
        limits: [usize; OPEN_LABELS],
        out: &mut Vec<pb::Sample>,
    ) {
        if self.counters.is_empty() && self.histograms.is_empty() && self.gauges.is_empty() {
            return;
        }
        // Which values of each open label appear in this slice.
        let mut present: [BTreeSet<Arc<str>>; OPEN_LABELS] = Default::default();
        for key in self
            .counters
            .keys()
            .chain(self.histograms.keys())
            .chain(self.gauges.keys())
        {
            for (which, value) in key.open().into_iter().enumerate() {
                if let Some(v) = value {
                    present[which].insert(v.clone());
                }
            }
        }
        for i in 0..OPEN_LABELS {
            self.choose_named(i, &present[i], limits[i]);
        }

        let fold = |named: &[BTreeSet<Arc<str>>; OPEN_LABELS], key: &SeriesKey| -> SeriesKey {
            let f = |v: &Option<Arc<str>>, i: usize| {
                v.as_ref().map(|v| {
                    if named[i].contains(v) {
                        v.clone()
                    } else {
                        Arc::from(OTHER)
                    }
                })
            };
            SeriesKey {
                domain: f(&key.domain, OpenLabel::Domain as usize),
                relay: f(&key.relay, OpenLabel::Relay as usize),
                reason: f(&key.reason, OpenLabel::Reason as usize),
                client_net: f(&key.client_net, OpenLabel::ClientNet as usize),
                user: f(&key.user, OpenLabel::User as usize),
                ..key.clone()
            }
        };
        let mut counters: BTreeMap<SeriesKey, u64> = BTreeMap::new();
        for (key, n) in self.counters.drain() {
            *counters.entry(fold(&self.named, &key)).or_insert(0) += n;
        }
        let mut histograms: BTreeMap<SeriesKey, Histogram> = BTreeMap::new();
        for (key, h) in self.histograms.drain() {
            match histograms.entry(fold(&self.named, &key)) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&h),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(h);
                }
            }
        }

        // A folded gauge keeps the largest value folded into it (gauges are maxima here).
        let mut gauges: BTreeMap<SeriesKey, f64> = BTreeMap::new();
        for (key, v) in self.gauges.drain() {
            let slot = gauges.entry(fold(&self.named, &key)).or_insert(v);
            *slot = slot.max(v);
        }

        let window_start_unix_ms = start.saturating_mul(1000);
        for (key, n) in counters {
            out.push(pb::Sample {
                metric: key.metric.name().to_owned(),
                labels: key.labels(),
                window_start_unix_ms,
                window_secs,
                value: Some(sample::Value::CounterDelta(n as f64)),
            });
        }
        for (key, v) in gauges {
            out.push(pb::Sample {
                metric: key.metric.name().to_owned(),
                labels: key.labels(),
                window_start_unix_ms,
                window_secs,
                value: Some(sample::Value::Gauge(v)),
            });
        }
        for (key, h) in histograms {
            out.push(pb::Sample {
                metric: key.metric.name().to_owned(),
                labels: key.labels(),
                window_start_unix_ms,
                window_secs,
                value: Some(sample::Value::Histogram(h.to_pb())),
            });
        }
    }

    /// Completes the named set of open label `i` up to `k` values with the values of this slice
    /// that rank highest over the window (count descending, then value ascending for ties).
    fn choose_named(&mut self, i: usize, present: &BTreeSet<Arc<str>>, k: usize) {
        let named = &mut self.named[i];
        if self.late || named.len() >= k {
            return;
        }
        let ranks = &self.ranks[i];
        let mut candidates: Vec<(u64, &Arc<str>)> = present
            .iter()
            .filter(|v| !named.contains(*v))
            .map(|v| (ranks.get(v).copied().unwrap_or(0), v))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let room = k - named.len();
        let chosen: Vec<Arc<str>> = candidates
            .into_iter()
            .take(room)
            .map(|(_, v)| v.clone())
            .collect();
        named.extend(chosen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::new(&DELAY_BOUNDS_SECS);
        h.observe(0.1);
        h.observe(0.11);
        h.observe(1e9);
        h.observe(f64::NAN);
        assert_eq!(h.counts[0], 2, "0.1 and NaN (as 0) in the first bucket");
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[DELAY_BOUNDS_SECS.len()], 1, "+Inf bucket");
    }

    #[test]
    fn window_start_floors_negative_times() {
        assert_eq!(window_start(-1, 60), -60);
        assert_eq!(window_start(59, 60), 0);
        assert_eq!(window_start(60, 60), 60);
        assert_eq!(window_start(5, 0), 5);
    }
}
