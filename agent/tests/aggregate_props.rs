//! Aggregator properties: exact sums, top-K folding, window alignment, bounded label values.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use mailpulse_agent::aggregate::{
    Aggregator, AggregatorConfig, DELAY_BOUNDS_SECS, SelfMetrics, SelfMetricsSnapshot,
    counter_metric,
};
use mailpulse_agent::labels::OTHER;
use mailpulse_agent::parse::Timestamp;
use mailpulse_agent::track::{EventKind, MessageEvent, RelayTarget};
use mailpulse_proto::v1::{Sample, sample};
use proptest::prelude::*;

const KINDS: [EventKind; 9] = [
    EventKind::Received,
    EventKind::Delivered,
    EventKind::Deferred,
    EventKind::Bounced,
    EventKind::Expired,
    EventKind::Rejected,
    EventKind::Held,
    EventKind::Released,
    EventKind::Discarded,
];

const T0: i64 = 1_729_958_400; // a multiple of 60 and of 300

#[derive(Debug, Clone)]
struct Spec {
    kind: usize,
    at_offset_secs: i64,
    host: usize,
    domain: usize,
    upper: bool,
    relay: usize,
    dsn: usize,
    delay_ms: u32,
    size: u32,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..KINDS.len(),
        -30i64..400,
        0..2usize,
        0..12usize,
        any::<bool>(),
        0..6usize,
        0..5usize,
        0..200_000u32,
        0..5_000_000u32,
    )
        .prop_map(
            |(kind, at_offset_secs, host, domain, upper, relay, dsn, delay_ms, size)| Spec {
                kind,
                at_offset_secs,
                host,
                domain,
                upper,
                relay,
                dsn,
                delay_ms,
                size,
            },
        )
}

fn event(kind: EventKind, at_unix_secs: i64) -> MessageEvent {
    MessageEvent::new(
        kind,
        Arc::from("mx1"),
        Arc::from("postfix"),
        Arc::from("4QxyZ1abc"),
        Timestamp {
            unix_secs: at_unix_secs,
            nanos: 0,
        },
        Arc::from("smtp"),
    )
}

fn build(s: &Spec) -> MessageEvent {
    let kind = KINDS[s.kind];
    let mut ev = event(kind, T0 + s.at_offset_secs);
    ev.host = Arc::from(["mx1", "mx2"][s.host]);
    let domain = format!("d{}.example", s.domain);
    let domain = if s.upper {
        domain.to_uppercase()
    } else {
        domain
    };
    ev.recipient = Some(Arc::from(format!("user@{domain}")));
    ev.relay = (s.relay > 0).then(|| RelayTarget {
        host: Arc::from(format!("mx{}.relay.example", s.relay)),
        ip: Some(Arc::from("192.0.2.1")),
        port: Some(25),
    });
    ev.dsn = ["2.0.0", "4.4.1", "5.1.1", "5.7.1", ""][s.dsn]
        .split_whitespace()
        .next()
        .map(Arc::from);
    ev.status_text = Some(Arc::from("550 5.1.1 user unknown"));
    ev.delay_secs = Some(f64::from(s.delay_ms) / 1000.0);
    ev.size = Some(u64::from(s.size));
    ev
}

fn counter(s: &Sample) -> f64 {
    match s.value {
        Some(sample::Value::CounterDelta(v)) => v,
        _ => 0.0,
    }
}

fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

/// Feeds `specs` and cuts after each index in `cuts` (and once at the end).
fn run(cfg: AggregatorConfig, specs: &[Spec], cuts: &BTreeSet<usize>) -> Vec<Sample> {
    let mut agg = Aggregator::new(cfg);
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        agg.observe(&build(s));
        if cuts.contains(&i) {
            out.extend(agg.cut());
        }
    }
    out.extend(agg.cut());
    assert_eq!(agg.pending_series(), 0, "a cut leaves nothing pending");
    out
}

fn cfg(window_secs: u32, k: usize) -> AggregatorConfig {
    AggregatorConfig {
        window_secs,
        top_k_domains: k,
        top_k_relays: k,
        top_k_reasons: k,
        top_k_client_nets: k,
        top_k_users: k,
        ..AggregatorConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Counter deltas add up to the events of each kind, whatever the folding and the cuts.
    #[test]
    fn counter_sums_equal_event_counts(
        specs in prop::collection::vec(spec(), 0..300),
        k in prop_oneof![Just(0usize), 1..4usize, Just(1000usize)],
        window_secs in prop_oneof![Just(60u32), Just(7u32), Just(300u32)],
        cuts in prop::collection::btree_set(0..300usize, 0..6),
    ) {
        let samples = run(cfg(window_secs, k), &specs, &cuts);
        let mut expected: HashMap<&str, f64> = HashMap::new();
        for s in &specs {
            *expected.entry(counter_metric(KINDS[s.kind])).or_default() += 1.0;
        }
        let mut got: HashMap<&str, f64> = HashMap::new();
        for s in &samples {
            if let Some(sample::Value::CounterDelta(v)) = s.value {
                *got.entry(s.metric.as_str()).or_default() += v;
            }
        }
        for kind in KINDS {
            let m = counter_metric(kind);
            prop_assert_eq!(
                got.get(m).copied().unwrap_or(0.0),
                expected.get(m).copied().unwrap_or(0.0),
                "sum of {} deltas", m
            );
        }
        // Histograms: one delay observation per delivery, one size observation per receipt.
        let hist_total = |metric: &str| -> u64 {
            samples.iter().filter(|s| s.metric == metric).map(|s| match &s.value {
                Some(sample::Value::Histogram(h)) => h.counts.iter().sum::<u64>(),
                _ => 0,
            }).sum()
        };
        prop_assert_eq!(hist_total("delivery_delay_seconds"), expected.get("messages_delivered").copied().unwrap_or(0.0) as u64);
        prop_assert_eq!(hist_total("message_size_bytes"), expected.get("messages_received").copied().unwrap_or(0.0) as u64);
    }

    /// Every sample starts on a window boundary and every event lands in the window of its time.
    #[test]
    fn windows_are_aligned(
        specs in prop::collection::vec(spec(), 1..200),
        window_secs in prop_oneof![Just(60u32), Just(7u32), Just(300u32)],
        cuts in prop::collection::btree_set(0..200usize, 0..4),
    ) {
        let samples = run(cfg(window_secs, 1000), &specs, &cuts);
        let w = i64::from(window_secs);
        let mut expected: BTreeMap<i64, f64> = BTreeMap::new();
        for s in &specs {
            let at = T0 + s.at_offset_secs;
            *expected.entry(at.div_euclid(w) * w * 1000).or_default() += 1.0;
        }
        let mut got: BTreeMap<i64, f64> = BTreeMap::new();
        for s in &samples {
            prop_assert_eq!(s.window_secs, window_secs);
            prop_assert_eq!(s.window_start_unix_ms.rem_euclid(w * 1000), 0, "aligned start");
            if matches!(s.value, Some(sample::Value::CounterDelta(_))) {
                *got.entry(s.window_start_unix_ms).or_default() += counter(s);
            }
        }
        prop_assert_eq!(got, expected);
    }

    /// Per window and label name at most K values keep their name; with one cut per window, the
    /// kept ones are exactly the top K by count (ties by name), and folding moves counts to
    /// `other` without losing any.
    #[test]
    fn top_k_folding(
        specs in prop::collection::vec(spec(), 1..300),
        k in 1..6usize,
        cuts in prop::collection::btree_set(0..300usize, 0..5),
        window_secs in prop_oneof![Just(60u32), Just(7u32)],
    ) {
        // Several cuts: the bound holds per window across slices, also for events arriving
        // after their window was forgotten (7 s windows: ~60 windows, more than are kept).
        let samples = run(cfg(window_secs, k), &specs, &cuts);
        let mut named: BTreeMap<(i64, &str), BTreeSet<&str>> = BTreeMap::new();
        for s in &samples {
            for name in ["domain", "relay", "reason"] {
                if let Some(v) = label(s, name).filter(|v| *v != OTHER) {
                    named.entry((s.window_start_unix_ms, name)).or_default().insert(v);
                }
            }
        }
        for ((window, name), values) in &named {
            prop_assert!(values.len() <= k, "window {} label {}: {:?} > {}", window, name, values, k);
        }

        // One cut: compare with an independent top-K over the domain counts per window.
        let samples = run(cfg(60, k), &specs, &BTreeSet::new());
        let mut counts: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
        for s in &specs {
            if matches!(KINDS[s.kind], EventKind::Delivered | EventKind::Deferred | EventKind::Bounced) {
                let at = T0 + s.at_offset_secs;
                let domain = format!("d{}.example", s.domain);
                *counts.entry(at.div_euclid(60) * 60_000).or_default().entry(domain).or_default() += 1;
            }
        }
        for (window, by_domain) in &counts {
            let mut ranked: Vec<(&String, &u64)> = by_domain.iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let top: BTreeSet<&str> = ranked.iter().take(k).map(|(d, _)| d.as_str()).collect();
            let mut kept: BTreeSet<&str> = BTreeSet::new();
            let mut other = 0.0;
            for s in samples.iter().filter(|s| s.window_start_unix_ms == *window && s.metric.starts_with("messages_")) {
                match label(s, "domain") {
                    Some(OTHER) => other += counter(s),
                    Some(d) => { kept.insert(d); }
                    None => {}
                }
            }
            prop_assert_eq!(&kept, &top, "window {}", window);
            let folded: u64 = ranked.iter().skip(k).map(|(_, n)| **n).sum();
            prop_assert_eq!(other, folded as f64, "window {}: counts folded into other", window);
        }
    }

    /// Label values are the bounded classes: lower-case domains, relay host only, DSN classes.
    #[test]
    fn labels_are_bounded_classes(specs in prop::collection::vec(spec(), 1..100)) {
        for s in run(cfg(60, 1000), &specs, &BTreeSet::new()) {
            if let Some(d) = label(&s, "domain") {
                prop_assert!(!d.contains('@') && d == d.to_lowercase(), "domain {}", d);
            }
            if let Some(r) = label(&s, "relay") {
                prop_assert!(!r.contains('[') && !r.contains(':'), "relay {}", r);
            }
            if let Some(c) = label(&s, "dsn_class") {
                prop_assert!(["2", "4", "5", "unknown"].contains(&c), "dsn_class {}", c);
            }
            if let Some(r) = label(&s, "reason") {
                prop_assert!(["2.0.0", "4.4.1", "5.1.1", "5.7.1"].contains(&r), "reason {}", r);
            }
        }
    }
}

#[test]
fn labels_of_a_delivery_and_a_reject() {
    let mut agg = Aggregator::new(AggregatorConfig::default());
    let mut sent = event(EventKind::Delivered, T0 + 5);
    sent.recipient = Some(Arc::from("Alice@Gmail.COM"));
    sent.relay = Some(RelayTarget {
        host: Arc::from("gmail-smtp-in.l.google.com"),
        ip: Some(Arc::from("142.250.1.26")),
        port: Some(25),
    });
    sent.dsn = Some(Arc::from("2.0.0"));
    sent.delay_secs = Some(1.5);
    agg.observe(&sent);
    let mut reject = event(EventKind::Rejected, T0 + 61);
    reject.status_text = Some(Arc::from("554 5.7.1 <x@example.com>: Relay access denied"));
    agg.observe(&reject);
    let samples = agg.cut();

    let delivered = samples
        .iter()
        .find(|s| s.metric == "messages_delivered")
        .expect("a delivered counter");
    let labels: Vec<(&str, &str)> = delivered
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("host", "mx1"),
            ("instance", "postfix"),
            ("domain", "gmail.com"),
            ("relay", "gmail-smtp-in.l.google.com"),
            ("dsn_class", "2"),
        ]
    );
    assert_eq!(delivered.window_start_unix_ms, T0 * 1000);
    assert_eq!(delivered.window_secs, 60);

    let delay = samples
        .iter()
        .find(|s| s.metric == "delivery_delay_seconds")
        .expect("a delay histogram");
    let Some(sample::Value::Histogram(h)) = &delay.value else {
        panic!("delivery_delay_seconds is a histogram");
    };
    assert_eq!(h.bounds, DELAY_BOUNDS_SECS.to_vec());
    assert_eq!(h.counts[3], 1, "1.5 s falls in the (1, 2] bucket");
    assert_eq!(h.sum, 1.5);
    assert_eq!(label(delay, "domain"), Some("gmail.com"));

    let rejected = samples
        .iter()
        .find(|s| s.metric == "messages_rejected")
        .expect("a rejected counter");
    assert_eq!(
        label(rejected, "reason"),
        Some("5.7.1"),
        "reason from the reply text"
    );
    assert_eq!(rejected.window_start_unix_ms, (T0 + 60) * 1000);
}

#[test]
fn self_metrics_are_deltas_and_gauges() {
    let mut m = SelfMetrics::new("mx1", 60);
    let snap = SelfMetricsSnapshot {
        lines_read: 100,
        lines_unparsed: 3,
        outbox_bytes: 4096,
        outbox_batches: 2,
        dropped_batches: 0,
        lag_seconds: 1.5,
        ..SelfMetricsSnapshot::default()
    };
    let first = m.cut(T0 * 1000 + 1234, snap.clone());
    let second = m.cut(
        T0 * 1000 + 5000,
        SelfMetricsSnapshot {
            lines_read: 150,
            ..snap
        },
    );
    let value = |samples: &[Sample], metric: &str| {
        samples
            .iter()
            .find(|s| s.metric == metric)
            .and_then(|s| s.value.clone())
    };
    assert_eq!(
        value(&first, "agent_lines_read"),
        Some(sample::Value::CounterDelta(100.0))
    );
    assert_eq!(
        value(&second, "agent_lines_read"),
        Some(sample::Value::CounterDelta(50.0)),
        "second cut reports the increase only"
    );
    assert_eq!(
        value(&second, "agent_outbox_bytes"),
        Some(sample::Value::Gauge(4096.0))
    );
    assert_eq!(
        value(&second, "agent_lag_seconds"),
        Some(sample::Value::Gauge(1.5))
    );
    assert!(first.iter().all(|s| s.window_start_unix_ms == T0 * 1000));
}

#[test]
fn labelled_self_metrics_report_increases_per_label() {
    let mut m = SelfMetrics::new("mx1", 60);
    let mut snap = SelfMetricsSnapshot {
        refused_samples: [("label_too_long".to_owned(), 3)].into_iter().collect(),
        task_failures: [("host_probes", 0)].into_iter().collect(),
        task_up: [("host_probes", true)].into_iter().collect(),
        ..SelfMetricsSnapshot::default()
    };
    let first = m.cut(T0 * 1000, snap.clone());
    snap.task_failures.insert("host_probes", 2);
    snap.task_up.insert("host_probes", false);
    let second = m.cut(T0 * 1000 + 1000, snap);
    let find = |samples: &[Sample], metric: &str, label: (&str, &str)| {
        samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels
                        .iter()
                        .any(|l| l.name == label.0 && l.value == label.1)
            })
            .and_then(|s| s.value.clone())
    };
    let reason = ("reason", "label_too_long");
    let task = ("task", "host_probes");
    assert_eq!(
        find(&first, "agent_refused_samples", reason),
        Some(sample::Value::CounterDelta(3.0))
    );
    assert_eq!(
        find(&second, "agent_refused_samples", reason),
        None,
        "no increase, no sample"
    );
    assert_eq!(
        find(&first, "agent_task_failures", task),
        Some(sample::Value::CounterDelta(0.0)),
        "task failures are reported from the start"
    );
    assert_eq!(
        find(&second, "agent_task_failures", task),
        Some(sample::Value::CounterDelta(2.0))
    );
    assert_eq!(
        find(&second, "agent_task_up", task),
        Some(sample::Value::Gauge(0.0))
    );
}
