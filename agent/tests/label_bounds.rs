//! Label values that come from log content stay bounded: `host` and `instance` (any local user
//! can `logger -t postfix-$RANDOM/smtpd …`) are capped per agent, the rest folded into `other`.

use std::collections::BTreeSet;

use mailpulse_agent::aggregate::{Aggregator, AggregatorConfig};
use mailpulse_agent::parse::{LogFormat, Timestamp};
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::traffic::TrafficConfig;
use mailpulse_proto::v1::Sample;

/// Runs `lines` through a processor and an aggregator; returns every sample of one cut.
fn samples_of(lines: impl Iterator<Item = String>) -> Vec<Sample> {
    let mut p = LineProcessor::new(
        LogFormat::Bsd,
        Timestamp::from_unix_micros(1_793_000_000_000_000),
    );
    p.enable_traffic(&TrafficConfig::default());
    let mut agg = Aggregator::new(AggregatorConfig::default());
    let (mut events, mut signals) = (Vec::new(), Vec::new());
    for line in lines {
        p.process_with_signals(&line, &mut events, &mut signals);
        for ev in events.drain(..) {
            agg.observe(&ev);
        }
        for sig in signals.drain(..) {
            agg.observe_signal(&sig);
        }
    }
    agg.cut()
}

fn values(samples: &[Sample], label: &str) -> BTreeSet<String> {
    samples
        .iter()
        .flat_map(|s| &s.labels)
        .filter(|l| l.name == label)
        .map(|l| l.value.clone())
        .collect()
}

#[test]
fn ten_thousand_syslog_tags_make_at_most_the_cap_of_instances() {
    let lines = (0..10_000).map(|i| {
        format!(
            "Oct 26 18:13:{:02} mx1 postfix-{i}/smtpd[{}]: connect from unknown[192.0.2.{}]",
            i % 60,
            1000 + i,
            i % 250
        )
    });
    let samples = samples_of(lines);
    let instances = values(&samples, "instance");
    assert!(
        instances.len() <= 16 + 1,
        "at most 16 instances and `other`, got {}",
        instances.len()
    );
    assert!(
        instances.contains("other"),
        "the surplus is folded into other"
    );
    let series: BTreeSet<(String, Vec<(String, String)>)> = samples
        .iter()
        .map(|s| {
            (
                s.metric.clone(),
                s.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
            )
        })
        .collect();
    assert!(
        series.len() <= 2 * 17 * 60,
        "series stay bounded: {}",
        series.len()
    );
}

#[test]
fn hosts_from_log_lines_are_capped() {
    let lines = (0..1_000).map(|i| {
        format!("Oct 26 18:13:00 host{i} postfix/smtpd[1]: connect from unknown[192.0.2.1]")
    });
    let samples = samples_of(lines);
    let hosts = values(&samples, "host");
    assert!(
        hosts.len() <= 4 + 1,
        "at most 4 hosts and `other`, got {}",
        hosts.len()
    );
}

/// A delivery to `domain` at `unix_secs`.
fn delivery(domain: &str, unix_secs: i64) -> mailpulse_agent::track::MessageEvent {
    use std::sync::Arc;
    let mut ev = mailpulse_agent::track::MessageEvent::new(
        mailpulse_agent::track::EventKind::Delivered,
        Arc::from("mx1"),
        Arc::from("postfix"),
        Arc::from("1A2B3C"),
        Timestamp {
            unix_secs,
            nanos: 0,
        },
        Arc::from("smtp"),
    );
    ev.recipient = Some(Arc::from(format!("user@{domain}")));
    ev.dsn = Some(Arc::from("2.0.0"));
    ev
}

#[test]
fn per_window_label_tables_are_bounded_in_bytes_and_keep_the_heavy_hitters() {
    let cfg = AggregatorConfig::default();
    let mut agg = Aggregator::new(cfg);
    let t0 = 1_793_000_000 - 1_793_000_000 % 60;
    let mut samples = Vec::new();
    // 40 windows, each with 3 000 distinct long domains (an attacker's recipients) and one
    // busy real domain that arrives last.
    for w in 0..40i64 {
        let at = t0 + w * 60;
        for i in 0..3_000 {
            let domain = format!("{}-{w}-{i}.example", "x".repeat(200));
            agg.observe(&delivery(&domain, at));
        }
        for _ in 0..500 {
            agg.observe(&delivery("busy.example.com", at + 30));
        }
        assert!(
            agg.tracked_label_bytes()
                <= (mailpulse_agent::aggregate::KEEP_WINDOWS as usize + 1)
                    * cfg.max_tracked_label_bytes,
            "window {w}: {} bytes ranked",
            agg.tracked_label_bytes()
        );
        samples.extend(agg.cut());
    }
    let domains = values(&samples, "domain");
    assert!(
        domains.contains("busy.example.com"),
        "the busiest domain keeps its name"
    );
    assert!(
        domains.iter().all(|d| d.len() <= cfg.max_label_bytes),
        "every domain label within {} bytes",
        cfg.max_label_bytes
    );
    assert!(agg.stats().label_values_forgotten > 0);
}
