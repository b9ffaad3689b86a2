//! The queue watcher of a real agent ([`mailpulse_agent::queue`]) on every simulated host: what
//! `postqueue -j` would list at a gauge instant, summarised and shipped as the agent ships it.
//!
//! Each host's generator knows the messages it holds: their instance, arrival time, size, whether
//! they have been deferred (the `deferred` queue; the others are in `active`, which here also
//! stands for `incoming`, as in the queue gauges of [`super::gauges`]), their recipients still to
//! be delivered, and for each of those the class of its last deferral's reply (its
//! `delay_reason`), classified by the agent's [`classify`](mailpulse_agent::classify::classify)
//! when the deferral is logged. [`HostSimulation::queues_at`](super::HostSimulation::queues_at)
//! summarises them per instance as the agent's snapshot of `postqueue -j` does: ages against the
//! instant in whole seconds, the agent's age buckets, per recipient domain (lower case,
//! `unknown` without one) a message counted once however many of its recipients are there, at
//! most `max_domains` domains by name and the rest under `other`, recipients by reason class.
//!
//! [`QueueSamples`] turns a host's summaries into the samples the agent's queue watcher ships at
//! every poll, with the metric names, labels and value kinds of [`mailpulse_agent::queue`]:
//! per instance (`postfix`, `postfix-out`; labels `host`, `instance`)
//!
//! - `queue_recipients`, `queue_oldest_age_seconds`, `queue_age_messages` (`le`: the agent's
//!   bounds, cumulative) and, from the second poll on, `queue_growth_messages_per_second`, each
//!   per `queue` (`active`, `deferred`; `queue_messages` and `queue_bytes` are the queue gauges
//!   of [`super::gauges`]);
//! - `queue_deferred_domain_messages`, `queue_deferred_domain_recipients` and
//!   `queue_deferred_domain_oldest_age_seconds` per `domain`: the agent's default top 50 domains
//!   by recipients, the rest summed into `other`, a domain shipped last time and gone now once
//!   more with 0;
//! - `queue_deferred_reason_recipients` per `reason_class`, every class on every poll;
//! - `queue_snapshot_duration_seconds` (modelled: 8 ms plus 40 µs per queued message),
//!   `queue_snapshot_up{source="postqueue"}` (1) and the counter
//!   `queue_snapshot_malformed_lines` (0).
//!
//! The agent's own sample builder is internal to it, so its rules are followed here line by
//! line; the tests compare the summaries with the agent's [`summarise_postqueue`] of the same
//! queue written as `postqueue -j` output.
//!
//! [`summarise_postqueue`]: mailpulse_agent::queue::summarise_postqueue

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;

use mailpulse_agent::aggregate::window_start;
use mailpulse_agent::classify::ReasonClass;
use mailpulse_agent::labels::{OTHER, UNKNOWN};
use mailpulse_agent::queue::{
    AGE_BOUNDS_SECS, AGE_LE_LABELS, DomainStats, MAX_DOMAIN_BYTES, QUEUE_AGE_MESSAGES,
    QUEUE_DEFERRED_DOMAIN_MESSAGES, QUEUE_DEFERRED_DOMAIN_OLDEST_AGE_SECONDS,
    QUEUE_DEFERRED_DOMAIN_RECIPIENTS, QUEUE_DEFERRED_REASON_RECIPIENTS,
    QUEUE_GROWTH_MESSAGES_PER_SECOND, QUEUE_OLDEST_AGE_SECONDS, QUEUE_RECIPIENTS,
    QUEUE_SNAPSHOT_DURATION_SECONDS, QUEUE_SNAPSHOT_MALFORMED_LINES, QUEUE_SNAPSHOT_UP,
    QueueConfig, QueueName, QueueStats, SnapshotSource,
};
use mailpulse_proto::v1::{self as pb, sample};

use crate::postqueue::push_json_string;
use crate::synth::SynthLog;

const SECOND: i64 = 1_000_000;

/// The `instance` labels of the main and the `postfix-out` instance.
pub const INSTANCES: [&str; 2] = ["postfix", "postfix-out"];

/// Number of deferral reason classes.
pub const REASON_CLASSES: usize = ReasonClass::ALL.len();

/// Modelled duration of one `postqueue -j`: a fixed part and a part per queued message.
const SNAPSHOT_BASE_SECS: f64 = 0.008;
const SNAPSHOT_SECS_PER_MESSAGE: f64 = 0.000_04;

/// One instance's queues at one instant, as the agent's snapshot of `postqueue -j` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQueues {
    /// Messages not deferred yet (`incoming` and `active`).
    pub active: QueueStats,
    /// Messages deferred at least once.
    pub deferred: QueueStats,
    /// Deferred mail by recipient domain, at most `max_domains` of them (`reason_recipients`
    /// stays empty: the agent ships the reasons of the whole queue only).
    pub deferred_domains: BTreeMap<String, DomainStats>,
    /// Deferred mail of the domains beyond `max_domains`.
    pub deferred_other_domains: DomainStats,
    /// Deferred recipients by the class of their `delay_reason`, in [`ReasonClass::ALL`] order.
    pub deferred_reasons: [u64; REASON_CLASSES],
    /// Deferred recipients without a `delay_reason`.
    pub deferred_recipients_without_reason: u64,
}

impl InstanceQueues {
    /// Deferred recipients whose `delay_reason` is of `class`.
    pub fn deferred_reason(&self, class: ReasonClass) -> u64 {
        self.deferred_reasons[reason_index(class)]
    }

    /// Messages over the queues.
    pub fn messages(&self) -> u64 {
        self.active.messages + self.deferred.messages
    }
}

/// One host's queues at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostQueues {
    /// The instant ages are computed against (Unix seconds).
    pub at_unix_secs: i64,
    /// The main instance, then `postfix-out` (as [`INSTANCES`]).
    pub instances: [InstanceQueues; 2],
}

fn reason_index(class: ReasonClass) -> usize {
    ReasonClass::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or(REASON_CLASSES - 1)
}

/// A domain's deferred mail while it is being counted.
#[derive(Debug, Default)]
struct DomainEntry {
    stats: DomainStats,
    /// Number of the last message counted, so that a message counts once per domain.
    last_message: u64,
}

impl DomainEntry {
    fn observe(&mut self, message: u64, age_secs: u64) {
        if self.last_message != message {
            self.last_message = message;
            self.stats.messages += 1;
            self.stats.oldest_age_secs = self.stats.oldest_age_secs.max(age_secs);
        }
        self.stats.recipients += 1;
    }
}

/// Summarises the queues `log` holds at `at_unix_secs`; see the module documentation.
pub(crate) fn summarise(log: &SynthLog, at_unix_secs: i64, max_domains: usize) -> HostQueues {
    let mut instances: [InstanceQueues; 2] = Default::default();
    let mut domains: [BTreeMap<String, DomainEntry>; 2] = Default::default();
    let mut others: [DomainEntry; 2] = Default::default();
    let mut message = 0u64;
    let mut buf = String::new();
    log.for_each_queued(|m| {
        let i = usize::from(m.outbound_instance);
        let q = &mut instances[i];
        let arrival = m.queued_at.div_euclid(SECOND);
        let age = u64::try_from(at_unix_secs.saturating_sub(arrival)).unwrap_or(0);
        let recipients = m.pending().count() as u64;
        let stats = if m.deferred {
            &mut q.deferred
        } else {
            &mut q.active
        };
        stats.messages += 1;
        stats.recipients += recipients;
        stats.bytes += m.size_bytes;
        stats.oldest_age_secs = stats.oldest_age_secs.max(age);
        stats.age_buckets[AGE_BOUNDS_SECS.partition_point(|&b| b < age)] += 1;
        if !m.deferred {
            return;
        }
        message += 1;
        for (address, class) in m.pending() {
            match class {
                Some(class) => q.deferred_reasons[reason_index(class)] += 1,
                None => q.deferred_recipients_without_reason += 1,
            }
            normalise_domain(address, &mut buf);
            let entry = if buf.len() > MAX_DOMAIN_BYTES {
                &mut others[i]
            } else if domains[i].contains_key(buf.as_str()) {
                domains[i].get_mut(buf.as_str()).unwrap_or(&mut others[i])
            } else if domains[i].len() >= max_domains {
                &mut others[i]
            } else {
                domains[i].entry(buf.clone()).or_default()
            };
            entry.observe(message, age);
        }
    });
    for ((q, domains), other) in instances.iter_mut().zip(domains).zip(others) {
        q.deferred_domains = domains
            .into_iter()
            .map(|(name, entry)| (name, entry.stats))
            .collect();
        q.deferred_other_domains = other.stats;
    }
    HostQueues {
        at_unix_secs,
        instances,
    }
}

/// Writes what `postqueue -j` of instance `instance` (0: main, 1: `postfix-out`) would print
/// for the queue `log` holds: one JSON object per message and line, as Postfix writes them.
pub(crate) fn write_postqueue(
    log: &SynthLog,
    instance: usize,
    out: &mut impl io::Write,
) -> io::Result<()> {
    let mut line = String::new();
    let mut result = Ok(());
    log.for_each_queued(|m| {
        if usize::from(m.outbound_instance) != instance || result.is_err() {
            return;
        }
        line.clear();
        let queue = if m.deferred {
            QueueName::Deferred
        } else {
            QueueName::Active
        };
        let _ = write!(
            line,
            "{{\"queue_name\": \"{queue}\", \"queue_id\": \"{}\", \"arrival_time\": {}, \"message_size\": {}, \"forced_expire\": false, \"sender\": ",
            m.queue_id,
            m.queued_at.div_euclid(SECOND),
            m.size_bytes
        );
        push_json_string(&mut line, m.sender);
        line.push_str(", \"recipients\": [");
        for (k, (address, reason)) in m.pending_reasons().enumerate() {
            if k > 0 {
                line.push_str(", ");
            }
            line.push_str("{\"address\": ");
            push_json_string(&mut line, address);
            if let Some((_, text)) = reason {
                line.push_str(", \"delay_reason\": ");
                push_json_string(&mut line, text);
            }
            line.push('}');
        }
        line.push_str("]}\n");
        result = out.write_all(line.as_bytes());
    });
    result
}

/// The recipient domain as the agent's snapshot labels it: after the last `@`, trailing dots
/// removed, ASCII lower case; `unknown` without one.
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

/// What one instance's samples depend on from one poll to the next.
#[derive(Debug, Default)]
struct EmitState {
    /// Time (Unix ms) and messages (`active`, `deferred`) of the previous poll.
    last_counts: Option<(i64, [u64; 2])>,
    /// `domain` label values shipped with the previous poll.
    emitted_domains: BTreeSet<String>,
}

/// The queue watcher's samples of one host, poll after poll; see the module documentation.
#[derive(Debug)]
pub struct QueueSamples {
    /// Domains shipped by name per poll (the agent's `top_k_domains`).
    top_k_domains: usize,
    state: [EmitState; 2],
}

impl Default for QueueSamples {
    fn default() -> Self {
        Self {
            top_k_domains: QueueConfig::default().top_k_domains,
            state: Default::default(),
        }
    }
}

/// Appends samples of one instance, labelled as the agent's queue watcher labels them.
struct Sink<'a> {
    host: &'a str,
    instance: &'a str,
    window_start_unix_ms: i64,
    window_secs: u32,
    out: &'a mut Vec<pb::Sample>,
}

impl Sink<'_> {
    fn push(&mut self, metric: &str, labels: &[(&str, &str)], value: sample::Value) {
        let label = |name: &str, value: &str| pb::Label {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let mut all = Vec::with_capacity(2 + labels.len());
        all.push(label("host", self.host));
        all.push(label("instance", self.instance));
        all.extend(labels.iter().map(|(n, v)| label(n, v)));
        self.out.push(pb::Sample {
            metric: metric.to_owned(),
            labels: all,
            window_start_unix_ms: self.window_start_unix_ms,
            window_secs: self.window_secs,
            value: Some(value),
        });
    }

    fn gauge(&mut self, metric: &str, labels: &[(&str, &str)], value: f64) {
        self.push(metric, labels, sample::Value::Gauge(value));
    }
}

impl QueueSamples {
    /// Appends the samples of a poll that found `queues` on `host` to `out`, in the window of
    /// `window_secs` holding the poll.
    pub fn poll(
        &mut self,
        queues: &HostQueues,
        host: &str,
        window_secs: u32,
        out: &mut Vec<pb::Sample>,
    ) {
        let window_secs = window_secs.max(1);
        let now_ms = queues.at_unix_secs.saturating_mul(1000);
        for ((instance, q), state) in INSTANCES.iter().zip(&queues.instances).zip(&mut self.state) {
            let mut sink = Sink {
                host,
                instance,
                window_start_unix_ms: window_start(queues.at_unix_secs, window_secs)
                    .saturating_mul(1000),
                window_secs,
                out,
            };
            emit_queues(&mut sink, q);
            emit_growth(&mut sink, q, now_ms, state);
            emit_domains(&mut sink, q, self.top_k_domains, state);
            for (class, n) in ReasonClass::ALL.iter().zip(q.deferred_reasons) {
                sink.gauge(
                    QUEUE_DEFERRED_REASON_RECIPIENTS,
                    &[("reason_class", class.as_str())],
                    n as f64,
                );
            }
            let duration = SNAPSHOT_BASE_SECS + SNAPSHOT_SECS_PER_MESSAGE * q.messages() as f64;
            sink.gauge(QUEUE_SNAPSHOT_DURATION_SECONDS, &[], duration);
            sink.gauge(
                QUEUE_SNAPSHOT_UP,
                &[("source", SnapshotSource::Postqueue.as_str())],
                1.0,
            );
            sink.push(
                QUEUE_SNAPSHOT_MALFORMED_LINES,
                &[],
                sample::Value::CounterDelta(0.0),
            );
        }
    }
}

/// The queues the simulator tells apart, with their stats.
fn queues(q: &InstanceQueues) -> [(QueueName, &QueueStats); 2] {
    [
        (QueueName::Active, &q.active),
        (QueueName::Deferred, &q.deferred),
    ]
}

fn emit_queues(sink: &mut Sink<'_>, q: &InstanceQueues) {
    for (name, stats) in queues(q) {
        sink.gauge(
            QUEUE_RECIPIENTS,
            &[("queue", name.as_str())],
            stats.recipients as f64,
        );
    }
    for (name, stats) in queues(q) {
        sink.gauge(
            QUEUE_OLDEST_AGE_SECONDS,
            &[("queue", name.as_str())],
            stats.oldest_age_secs as f64,
        );
    }
    for (name, stats) in queues(q) {
        for (le, n) in AGE_LE_LABELS.iter().zip(stats.cumulative_age_buckets()) {
            sink.gauge(
                QUEUE_AGE_MESSAGES,
                &[("queue", name.as_str()), ("le", le)],
                n as f64,
            );
        }
    }
}

/// Change of the messages per queue per second since the previous poll (none on the first).
fn emit_growth(sink: &mut Sink<'_>, q: &InstanceQueues, now_ms: i64, state: &mut EmitState) {
    let messages = [q.active.messages, q.deferred.messages];
    if let Some((at_ms, last)) = state.last_counts
        && now_ms > at_ms
    {
        let elapsed_secs = (now_ms - at_ms) as f64 / 1000.0;
        for (i, (name, _)) in queues(q).iter().enumerate() {
            let change = messages[i] as f64 - last[i] as f64;
            sink.gauge(
                QUEUE_GROWTH_MESSAGES_PER_SECOND,
                &[("queue", name.as_str())],
                change / elapsed_secs,
            );
        }
    }
    state.last_counts = Some((now_ms, messages));
}

/// The `top_k` domains by recipients (ties by name) by name, the rest summed into `other`; a
/// domain shipped last time and absent now is shipped once with 0.
fn emit_domains(sink: &mut Sink<'_>, q: &InstanceQueues, top_k: usize, state: &mut EmitState) {
    let mut ranked: Vec<(&str, &DomainStats)> = q
        .deferred_domains
        .iter()
        .filter(|(name, _)| name.as_str() != OTHER)
        .map(|(name, stats)| (name.as_str(), stats))
        .collect();
    ranked.sort_by(|a, b| b.1.recipients.cmp(&a.1.recipients).then(a.0.cmp(b.0)));
    let mut other = q.deferred_other_domains;
    if let Some(stats) = q.deferred_domains.get(OTHER) {
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

fn domain_gauges(sink: &mut Sink<'_>, domain: &str, stats: &DomainStats) {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mailpulse_agent::queue::{SnapshotConfig, summarise_postqueue};

    use super::*;
    use crate::fleet::{Scenario, simulate_samples};

    /// A day of one busy host with a DNS failure at outlook.com and a dead Gmail MX: deferred
    /// mail of several domains and reasons.
    fn troubled_day() -> Scenario {
        let text = r#"
seed = 5
start = 2024-10-07T00:00:00Z
days = 1
[traffic]
messages_per_day = 8000
[[hosts]]
name = "mx1"
[[incidents]]
kind = "dns_failure"
hosts = ["mx1"]
start = 2024-10-07T08:00:00Z
end = 2024-10-07T11:00:00Z
domain = "outlook.com"
[[incidents]]
kind = "relay_down"
hosts = ["mx1"]
start = 2024-10-07T09:00:00Z
end = 2024-10-07T12:00:00Z
relay = "gmail-smtp-in.l.google.com"
failure = "timeout"
"#;
        match Scenario::parse(Path::new("troubled.toml"), text) {
            Ok(s) => s,
            Err(e) => panic!("test scenario should be valid: {e}"),
        }
    }

    const HOUR: i64 = 3600;

    fn gauge(s: &pb::Sample) -> f64 {
        match s.value {
            Some(sample::Value::Gauge(v)) => v,
            _ => panic!("{} is a gauge: {s:?}", s.metric),
        }
    }

    fn label<'a>(s: &'a pb::Sample, name: &str) -> Option<&'a str> {
        s.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    #[test]
    fn summaries_are_the_agents_snapshot_of_the_same_queue() {
        let s = troubled_day();
        let mut sim = s.host_simulation(0).expect("one host");
        let start = s.start_unix_secs();
        let mut next = start + 1_800;
        let mut deferred_seen = 0;
        let mut dns_seen = false;
        while let Some(line) = sim.next() {
            if line.at_unix_micros < next * SECOND {
                continue;
            }
            let at = next - 1;
            next += 1_800;
            let queues = sim.queues_at(at);
            let gauges = sim.gauges_at(at);
            for (i, q) in queues.instances.iter().enumerate() {
                let mut text = Vec::new();
                sim.write_postqueue(i, &mut text)
                    .expect("written to memory");
                let agent = summarise_postqueue(text.as_slice(), at, &SnapshotConfig::default());
                assert_eq!(agent.malformed_lines, 0);
                assert_eq!(agent.queue(QueueName::Active), q.active, "at {at}");
                assert_eq!(agent.queue(QueueName::Deferred), q.deferred, "at {at}");
                assert_eq!(agent.deferred_domains.len(), q.deferred_domains.len());
                for (name, stats) in &agent.deferred_domains {
                    let ours = q.deferred_domains[name];
                    assert_eq!(
                        (stats.messages, stats.recipients, stats.oldest_age_secs),
                        (ours.messages, ours.recipients, ours.oldest_age_secs),
                        "{name} at {at}"
                    );
                }
                assert!(agent.deferred_other_domains.is_empty());
                assert!(q.deferred_other_domains.is_empty());
                for class in ReasonClass::ALL {
                    assert_eq!(
                        agent.deferred_reasons.get(class),
                        q.deferred_reason(class),
                        "{class:?} at {at}"
                    );
                }
                assert_eq!(
                    agent.deferred_recipients_without_reason,
                    q.deferred_recipients_without_reason
                );
                // The same queue as the queue gauges count.
                let g = gauges.queues[i];
                assert_eq!(q.deferred.messages, g.deferred_messages);
                assert_eq!(q.deferred.bytes, g.deferred_bytes);
                assert_eq!(q.active.messages, g.active_messages);
                assert_eq!(q.active.bytes, g.active_bytes);
                deferred_seen += q.deferred.messages;
                dns_seen |= q.deferred_reason(ReasonClass::Dns) > 0;
            }
        }
        assert!(
            deferred_seen > 100,
            "deferred mail was compared: {deferred_seen}"
        );
        assert!(dns_seen, "the DNS failure's deferrals are classified `dns`");
    }

    /// A summary with `n` deferred domains, domain `k` holding `k + 1` recipients.
    fn with_domains(n: usize) -> HostQueues {
        let mut q = InstanceQueues::default();
        for k in 0..n {
            let stats = DomainStats {
                messages: 1,
                recipients: k as u64 + 1,
                oldest_age_secs: 600,
                ..DomainStats::default()
            };
            q.deferred_domains.insert(format!("d{k:03}.example"), stats);
            q.deferred.messages += 1;
            q.deferred.recipients += k as u64 + 1;
            q.deferred.oldest_age_secs = 600;
            q.deferred.age_buckets[2] += 1;
        }
        HostQueues {
            at_unix_secs: 1_728_259_259,
            instances: [q, InstanceQueues::default()],
        }
    }

    #[test]
    fn samples_have_the_agents_names_labels_and_bounds() {
        let mut samples = QueueSamples::default();
        let mut out = Vec::new();
        samples.poll(&with_domains(60), "mx1", 60, &mut out);
        for s in &out {
            assert_eq!(s.window_start_unix_ms, 1_728_259_200_000, "{s:?}");
            assert_eq!(s.window_secs, 60);
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            let expected: &[&str] = match s.metric.as_str() {
                "queue_recipients"
                | "queue_oldest_age_seconds"
                | "queue_growth_messages_per_second" => &["host", "instance", "queue"],
                "queue_age_messages" => &["host", "instance", "queue", "le"],
                "queue_deferred_domain_messages"
                | "queue_deferred_domain_recipients"
                | "queue_deferred_domain_oldest_age_seconds" => &["host", "instance", "domain"],
                "queue_deferred_reason_recipients" => &["host", "instance", "reason_class"],
                "queue_snapshot_up" => &["host", "instance", "source"],
                "queue_snapshot_duration_seconds" | "queue_snapshot_malformed_lines" => {
                    &["host", "instance"]
                }
                other => panic!("unexpected metric {other}"),
            };
            assert_eq!(names, expected, "{}", s.metric);
            let counter = s.metric == "queue_snapshot_malformed_lines";
            assert_eq!(
                matches!(s.value, Some(sample::Value::CounterDelta(_))),
                counter,
                "{s:?}"
            );
        }
        let of = |out: &[pb::Sample], metric: &str, instance: &str| -> Vec<(String, f64)> {
            out.iter()
                .filter(|s| s.metric == metric && label(s, "instance") == Some(instance))
                .map(|s| {
                    let key = s.labels[2..]
                        .iter()
                        .map(|l| l.value.as_str())
                        .collect::<Vec<_>>()
                        .join(",");
                    (key, gauge(s))
                })
                .collect()
        };
        let domains = of(&out, "queue_deferred_domain_recipients", "postfix");
        assert_eq!(domains.len(), 51, "the top 50 and `other`");
        assert_eq!(domains[0], ("d059.example".to_string(), 60.0));
        assert_eq!(domains[50], ("other".to_string(), 55.0), "1 + 2 + … + 10");
        assert!(of(&out, "queue_deferred_domain_messages", "postfix-out").is_empty());
        let reasons = of(&out, "queue_deferred_reason_recipients", "postfix-out");
        assert_eq!(reasons.len(), REASON_CLASSES, "every class, 0 included");
        let ages = of(&out, "queue_age_messages", "postfix");
        assert_eq!(ages.len(), 2 * AGE_LE_LABELS.len());
        assert_eq!(ages.last(), Some(&("deferred,+Inf".to_string(), 60.0)));
        assert!(of(&out, "queue_growth_messages_per_second", "postfix").is_empty());
        assert_eq!(
            of(&out, "queue_snapshot_up", "postfix"),
            [("postqueue".to_string(), 1.0)]
        );

        // A minute later the queue is down to 40 domains: growth shows, gone domains drop to 0
        // once.
        let mut later = with_domains(40);
        later.at_unix_secs += 60;
        let mut out = Vec::new();
        samples.poll(&later, "mx1", 60, &mut out);
        assert_eq!(
            of(&out, "queue_growth_messages_per_second", "postfix"),
            [
                ("active".to_string(), 0.0),
                ("deferred".to_string(), -20.0 / 60.0)
            ]
        );
        let domains = of(&out, "queue_deferred_domain_recipients", "postfix");
        assert_eq!(
            domains.len(),
            40 + 21,
            "40 domains, 20 and `other` zeroed: {domains:?}"
        );
        assert!(domains.contains(&("other".to_string(), 0.0)));
        assert!(domains.contains(&("d059.example".to_string(), 0.0)));
        let mut out = Vec::new();
        samples.poll(&later, "mx1", 60, &mut out);
        assert_eq!(
            of(&out, "queue_deferred_domain_recipients", "postfix").len(),
            40
        );
    }

    #[test]
    fn the_feed_ships_deferred_domains_that_add_up_to_the_deferred_queue() {
        let s = troubled_day();
        let mut windows = 0;
        let mut outlook_dns = 0.0f64;
        let mut oldest = 0.0f64;
        simulate_samples(&s, 300, |_, samples| {
            for instance in INSTANCES {
                let of = |metric: &'static str| {
                    samples.iter().filter(move |x| {
                        x.metric == metric && label(x, "instance") == Some(instance)
                    })
                };
                let deferred = |metric: &'static str| {
                    of(metric)
                        .find(|x| label(x, "queue") == Some("deferred"))
                        .map(gauge)
                        .expect("every queue on every poll")
                };
                let messages = deferred("queue_messages");
                let recipients = deferred("queue_recipients");
                let age = deferred("queue_oldest_age_seconds");
                let domain_messages: f64 = of("queue_deferred_domain_messages").map(gauge).sum();
                let domain_recipients: f64 =
                    of("queue_deferred_domain_recipients").map(gauge).sum();
                let reason_recipients: f64 =
                    of("queue_deferred_reason_recipients").map(gauge).sum();
                assert_eq!(domain_recipients, recipients, "{instance}");
                assert_eq!(reason_recipients, recipients, "{instance}");
                assert!(
                    messages <= domain_messages && domain_messages <= recipients,
                    "{instance}: {messages} messages, {domain_messages} by domain, {recipients} recipients"
                );
                for x in of("queue_deferred_domain_oldest_age_seconds") {
                    assert!(gauge(x) <= age, "{x:?} is older than the queue's oldest");
                }
                if instance == "postfix" {
                    windows += 1;
                    oldest = oldest.max(age);
                    let outlook = of("queue_deferred_domain_recipients")
                        .find(|x| label(x, "domain") == Some("outlook.com"))
                        .map_or(0.0, gauge);
                    let dns = of("queue_deferred_reason_recipients")
                        .find(|x| label(x, "reason_class") == Some("dns"))
                        .map_or(0.0, gauge);
                    outlook_dns = outlook_dns.max(outlook.min(dns));
                }
            }
        });
        assert_eq!(windows, 288);
        assert!(
            outlook_dns > 20.0,
            "outlook.com's mail waits with DNS errors: {outlook_dns}"
        );
        assert!(
            oldest > 2.0 * HOUR as f64,
            "the dead relay holds mail for hours: {oldest}"
        );
    }
}
