//! [`QueueSnapshot`]: what one look at a Postfix instance's queues found, and the bounded
//! accumulator both readers (`postqueue -j`, directory scan) fill it through.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::classify::{ReasonClass, classify};
use crate::labels::UNKNOWN;

/// Upper bounds (seconds) of the message age buckets; ages above the last one fall into the
/// overflow bucket.
pub const AGE_BOUNDS_SECS: [u64; 7] = [60, 300, 900, 3_600, 14_400, 86_400, 432_000];

/// Number of age buckets: one per bound plus the overflow bucket.
pub const AGE_BUCKETS: usize = AGE_BOUNDS_SECS.len() + 1;

/// Distinct deferred recipient domains tracked by name unless configured otherwise.
pub const DEFAULT_MAX_DOMAINS: usize = 10_000;

/// Domains longer than this are not valid DNS names; they are counted under `other` so that a
/// hostile queue cannot make the domain table hold long strings.
pub const MAX_DOMAIN_BYTES: usize = 253;

/// Postfix's queues, in the order Postfix moves mail through them (then the side queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    /// Locally submitted mail waiting for `pickup`.
    Maildrop,
    /// Mail `cleanup` is writing or has finished, not yet seen by `qmgr`.
    Incoming,
    /// Mail `qmgr` has opened for delivery.
    Active,
    /// Mail that failed temporarily and waits for a retry.
    Deferred,
    /// Mail put on hold (`postsuper -h`, access `HOLD`).
    Hold,
    /// Queue files Postfix could not read.
    Corrupt,
}

impl QueueName {
    /// Every queue, in label order.
    pub const ALL: [QueueName; 6] = [
        Self::Maildrop,
        Self::Incoming,
        Self::Active,
        Self::Deferred,
        Self::Hold,
        Self::Corrupt,
    ];

    /// The `queue` label value, which is also the queue's directory name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Maildrop => "maildrop",
            Self::Incoming => "incoming",
            Self::Active => "active",
            Self::Deferred => "deferred",
            Self::Hold => "hold",
            Self::Corrupt => "corrupt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a snapshot's numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSource {
    /// `postqueue -j`: every queue with recipients, domains and deferral reasons.
    Postqueue,
    /// A scan of the queue directory: messages, bytes and ages only.
    Directory,
}

impl SnapshotSource {
    /// The `source` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postqueue => "postqueue",
            Self::Directory => "directory",
        }
    }
}

/// Totals of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Messages in the queue.
    pub messages: u64,
    /// Recipients still to be delivered, summed over the messages (0 from a directory scan, which
    /// does not read recipients).
    pub recipients: u64,
    /// Message sizes summed: `message_size` from `postqueue`, the queue file size from a scan.
    pub bytes: u64,
    /// Age of the oldest message (now − arrival time, at least 0); 0 for an empty queue.
    pub oldest_age_secs: u64,
    /// Messages per age bucket, not cumulative: `age_buckets[i]` counts the ages in
    /// (`AGE_BOUNDS_SECS[i-1]`, `AGE_BOUNDS_SECS[i]`], the last element the ages above
    /// `AGE_BOUNDS_SECS[6]`.
    pub age_buckets: [u64; AGE_BUCKETS],
}

impl QueueStats {
    /// Messages with an age of at most each bound, then all of them (the `+Inf` bucket).
    pub fn cumulative_age_buckets(&self) -> [u64; AGE_BUCKETS] {
        let mut out = self.age_buckets;
        for i in 1..out.len() {
            out[i] = out[i].saturating_add(out[i - 1]);
        }
        out
    }

    fn observe(&mut self, age_secs: u64, size_bytes: u64, recipients: u64) {
        self.messages += 1;
        self.recipients = self.recipients.saturating_add(recipients);
        self.bytes = self.bytes.saturating_add(size_bytes);
        self.oldest_age_secs = self.oldest_age_secs.max(age_secs);
        self.age_buckets[AGE_BOUNDS_SECS.partition_point(|&b| b < age_secs)] += 1;
    }
}

/// Recipients per deferral reason class; every class is present (0 included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonCounts([u64; ReasonClass::ALL.len()]);

impl ReasonCounts {
    /// Recipients counted for `class`.
    pub fn get(&self, class: ReasonClass) -> u64 {
        self.0[reason_index(class)]
    }

    /// Every class with its count, in [`ReasonClass::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ReasonClass, u64)> + '_ {
        ReasonClass::ALL.iter().copied().zip(self.0.iter().copied())
    }

    /// Recipients over all classes.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    fn add(&mut self, class: ReasonClass) {
        let n = &mut self.0[reason_index(class)];
        *n = n.saturating_add(1);
    }

    fn merge(&mut self, other: &ReasonCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_add(b);
        }
    }
}

impl Serialize for ReasonCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (class, n) in self.iter() {
            map.serialize_entry(class.as_str(), &n)?;
        }
        map.end()
    }
}

fn reason_index(class: ReasonClass) -> usize {
    // `ALL` lists every class; the fallback only keeps a future class from panicking.
    ReasonClass::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or(ReasonClass::ALL.len() - 1)
}

/// The deferred mail of one recipient domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DomainStats {
    /// Deferred messages with at least one recipient in the domain (a message counts once per
    /// domain, however many of its recipients are there).
    pub messages: u64,
    /// Deferred recipients in the domain.
    pub recipients: u64,
    /// Age of the oldest of those messages.
    pub oldest_age_secs: u64,
    /// The domain's deferred recipients by the class of their `delay_reason`.
    pub reason_recipients: ReasonCounts,
}

impl DomainStats {
    /// Adds `other` into `self`: counts add up, the oldest age is the larger one. A message with
    /// recipients in both counts twice in `messages`.
    pub fn merge(&mut self, other: &DomainStats) {
        self.messages = self.messages.saturating_add(other.messages);
        self.recipients = self.recipients.saturating_add(other.recipients);
        self.oldest_age_secs = self.oldest_age_secs.max(other.oldest_age_secs);
        self.reason_recipients.merge(&other.reason_recipients);
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.recipients == 0
    }
}

/// What one look at an instance's queues found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSnapshot {
    /// `postqueue -j` or a directory scan.
    pub source: SnapshotSource,
    /// The time ages were computed against.
    pub taken_at_unix_secs: i64,
    /// Every queue of [`QueueName::ALL`], empty ones included.
    pub queues: BTreeMap<QueueName, QueueStats>,
    /// Deferred recipients by domain (lower case, without trailing dot; `unknown` for an address
    /// without domain). At most `max_domains` entries.
    pub deferred_domains: BTreeMap<String, DomainStats>,
    /// Deferred recipients whose domain did not fit into `max_domains` (or is longer than a DNS
    /// name can be).
    pub deferred_other_domains: DomainStats,
    /// Deferred recipients by the class of their `delay_reason`.
    pub deferred_reasons: ReasonCounts,
    /// Deferred recipients without a `delay_reason` (not tried yet); not in `deferred_reasons`.
    pub deferred_recipients_without_reason: u64,
    /// `postqueue -j` lines that were not a queue entry and were skipped (over-long ones
    /// included).
    pub malformed_lines: u64,
    /// Of the malformed lines, those longer than the line limit.
    pub overlong_lines: u64,
}

impl QueueSnapshot {
    /// The totals of one queue.
    pub fn queue(&self, name: QueueName) -> QueueStats {
        self.queues.get(&name).copied().unwrap_or_default()
    }

    /// Messages over all queues.
    pub fn total_messages(&self) -> u64 {
        self.queues
            .values()
            .fold(0u64, |a, q| a.saturating_add(q.messages))
    }
}

/// Accumulates queue entries into a [`QueueSnapshot`] with bounded memory: at most
/// `max_domains` domain entries of at most [`MAX_DOMAIN_BYTES`] each.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    source: SnapshotSource,
    now_unix_secs: i64,
    max_domains: usize,
    queues: [QueueStats; QueueName::ALL.len()],
    domains: FxHashMap<Box<str>, DomainEntry>,
    other_domains: DomainEntry,
    reasons: ReasonCounts,
    without_reason: u64,
    malformed_lines: u64,
    overlong_lines: u64,
    /// Number of the message being observed, to count a message once per domain.
    message_seq: u64,
    /// Reused for the normalised domain of each recipient.
    domain_buf: String,
}

#[derive(Debug, Default)]
struct DomainEntry {
    stats: DomainStats,
    last_message: u64,
}

impl DomainEntry {
    fn observe(&mut self, message_seq: u64, age_secs: u64, reason: Option<ReasonClass>) {
        if self.last_message != message_seq {
            self.last_message = message_seq;
            self.stats.messages += 1;
            self.stats.oldest_age_secs = self.stats.oldest_age_secs.max(age_secs);
        }
        self.stats.recipients += 1;
        if let Some(class) = reason {
            self.stats.reason_recipients.add(class);
        }
    }
}

impl SnapshotBuilder {
    pub(crate) fn new(source: SnapshotSource, now_unix_secs: i64, max_domains: usize) -> Self {
        Self {
            source,
            now_unix_secs,
            max_domains,
            queues: Default::default(),
            domains: FxHashMap::default(),
            other_domains: DomainEntry::default(),
            reasons: ReasonCounts::default(),
            without_reason: 0,
            malformed_lines: 0,
            overlong_lines: 0,
            message_seq: 0,
            domain_buf: String::new(),
        }
    }

    /// Age of a message that arrived at `arrival_unix_secs`; arrivals in the future are 0 s old.
    pub(crate) fn age_secs(&self, arrival_unix_secs: i64) -> u64 {
        u64::try_from(self.now_unix_secs.saturating_sub(arrival_unix_secs)).unwrap_or(0)
    }

    /// Counts one message without looking at recipients (directory scan).
    pub(crate) fn observe_file(&mut self, queue: QueueName, arrival_unix_secs: i64, bytes: u64) {
        let age = self.age_secs(arrival_unix_secs);
        self.queues[queue.index()].observe(age, bytes, 0);
    }

    /// Counts one message with its recipients: `(address, delay_reason)` pairs.
    pub(crate) fn observe_message<'r>(
        &mut self,
        queue: QueueName,
        arrival_unix_secs: i64,
        size_bytes: u64,
        recipients: impl ExactSizeIterator<Item = (&'r str, Option<&'r str>)>,
    ) {
        let age = self.age_secs(arrival_unix_secs);
        self.queues[queue.index()].observe(age, size_bytes, recipients.len() as u64);
        if queue != QueueName::Deferred {
            return;
        }
        self.message_seq += 1;
        let message_seq = self.message_seq;
        for (address, delay_reason) in recipients {
            let class = delay_reason.map(|text| classify(None, text));
            match class {
                Some(class) => self.reasons.add(class),
                None => self.without_reason += 1,
            }
            self.domain_entry(address).observe(message_seq, age, class);
        }
    }

    pub(crate) fn count_malformed_line(&mut self) {
        self.malformed_lines += 1;
    }

    pub(crate) fn count_overlong_line(&mut self) {
        self.malformed_lines += 1;
        self.overlong_lines += 1;
    }

    /// The entry of the recipient's domain: its own while there is room, else `other`.
    fn domain_entry(&mut self, address: &str) -> &mut DomainEntry {
        normalise_domain(address, &mut self.domain_buf);
        if self.domain_buf.len() > MAX_DOMAIN_BYTES {
            return &mut self.other_domains;
        }
        // Looked up before inserting so that the common case does not allocate.
        if self.domains.contains_key(self.domain_buf.as_str()) {
            return self
                .domains
                .get_mut(self.domain_buf.as_str())
                .unwrap_or(&mut self.other_domains);
        }
        if self.domains.len() >= self.max_domains {
            return &mut self.other_domains;
        }
        self.domains
            .entry(Box::from(self.domain_buf.as_str()))
            .or_default()
    }

    pub(crate) fn finish(self) -> QueueSnapshot {
        QueueSnapshot {
            source: self.source,
            taken_at_unix_secs: self.now_unix_secs,
            queues: QueueName::ALL
                .iter()
                .map(|&q| (q, self.queues[q.index()]))
                .collect(),
            deferred_domains: self
                .domains
                .into_iter()
                .map(|(name, entry)| (String::from(name), entry.stats))
                .collect(),
            deferred_other_domains: self.other_domains.stats,
            deferred_reasons: self.reasons,
            deferred_recipients_without_reason: self.without_reason,
            malformed_lines: self.malformed_lines,
            overlong_lines: self.overlong_lines,
        }
    }
}

/// The recipient domain as the log side labels it (`aggregate::recipient_domain`): the part after
/// the last `@`, trailing dots removed, ASCII lower case; `unknown` without one. Written into
/// `buf` so that the caller can look it up without allocating.
fn normalise_domain(address: &str, buf: &mut String) {
    buf.clear();
    let address = address.trim_matches(|c| c == '<' || c == '>');
    let domain = address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.'))
        .unwrap_or("");
    if domain.is_empty() {
        buf.push_str(UNKNOWN);
    } else {
        buf.push_str(domain);
        buf.make_ascii_lowercase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(address: &str) -> String {
        let mut buf = String::new();
        normalise_domain(address, &mut buf);
        buf
    }

    #[test]
    fn domains_are_lower_case_without_trailing_dot() {
        assert_eq!(domain("User@Example.COM."), "example.com");
        assert_eq!(domain("<a@b.org>"), "b.org");
        assert_eq!(domain("\"john \\\"x\\\" doe\"@grey.test"), "grey.test");
        assert_eq!(domain("root"), "unknown");
        assert_eq!(domain("a@"), "unknown");
        assert_eq!(domain("a@..."), "unknown");
    }

    #[test]
    fn age_buckets_are_upper_inclusive_and_cumulate() {
        let mut q = QueueStats::default();
        for age in [0, 60, 61, 432_000, 432_001, u64::MAX] {
            q.observe(age, 1, 1);
        }
        assert_eq!(q.age_buckets, [2, 1, 0, 0, 0, 0, 1, 2]);
        assert_eq!(q.cumulative_age_buckets(), [2, 3, 3, 3, 3, 3, 4, 6]);
        assert_eq!(q.oldest_age_secs, u64::MAX);
    }

    #[test]
    fn ages_clamp_at_zero_and_never_overflow() {
        let b = SnapshotBuilder::new(SnapshotSource::Postqueue, 1_000, 10);
        assert_eq!(b.age_secs(2_000), 0);
        assert_eq!(b.age_secs(i64::MIN), u64::try_from(i64::MAX).unwrap());
        let b = SnapshotBuilder::new(SnapshotSource::Postqueue, i64::MIN, 10);
        assert_eq!(b.age_secs(i64::MAX), 0);
    }

    #[test]
    fn a_message_counts_once_per_domain_and_domains_are_bounded() {
        let mut b = SnapshotBuilder::new(SnapshotSource::Postqueue, 100, 1);
        let rcpts = [
            (
                "a@x.test",
                Some("connect to x[192.0.2.1]:25: Connection refused"),
            ),
            ("b@X.test.", None),
            (
                "c@y.test",
                Some("connect to y[192.0.2.2]:25: Connection refused"),
            ),
        ];
        b.observe_message(QueueName::Deferred, 40, 10, rcpts.into_iter());
        b.observe_message(QueueName::Deferred, 90, 10, rcpts[..1].iter().copied());
        let snap = b.finish();
        let x = snap.deferred_domains["x.test"];
        assert_eq!((x.messages, x.recipients, x.oldest_age_secs), (2, 3, 60));
        assert_eq!(x.reason_recipients.get(ReasonClass::Connect), 2);
        assert_eq!(snap.deferred_domains.len(), 1, "max_domains = 1");
        let other = snap.deferred_other_domains;
        assert_eq!((other.messages, other.recipients), (1, 1));
        assert_eq!(snap.deferred_reasons.get(ReasonClass::Connect), 3);
        assert_eq!(snap.deferred_recipients_without_reason, 1);
        assert_eq!(snap.queue(QueueName::Deferred).recipients, 4);
    }

    #[test]
    fn overlong_domains_go_to_other() {
        let mut b = SnapshotBuilder::new(SnapshotSource::Postqueue, 100, 10);
        let address = format!("a@{}", "x".repeat(MAX_DOMAIN_BYTES + 1));
        b.observe_message(
            QueueName::Deferred,
            100,
            1,
            [(address.as_str(), None)].into_iter(),
        );
        let snap = b.finish();
        assert!(snap.deferred_domains.is_empty());
        assert_eq!(snap.deferred_other_domains.recipients, 1);
    }
}
