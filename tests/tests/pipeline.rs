//! Agent and collector as real processes on loopback: a growing Postfix log is streamed while the
//! agent is killed with SIGKILL, the collector is killed with SIGKILL and stays down for a while;
//! afterwards the delivery counts at the collector's /metrics are exact (0 lost, 0 duplicated).

use std::io::Write;
use std::time::Duration;

use mailpulse_sim::synth::{SynthConfig, SynthLog};
use mailpulse_tests::net::poll_until;
use mailpulse_tests::prometheus::Prometheus;
use mailpulse_tests::stack::{Proc, metric_sum, start_collector_and_agent, write_configs};

#[test]
fn crashes_and_outages_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let http = write_configs(d, &d.join("mail.log"), "");

    let mut log = SynthLog::new(SynthConfig {
        seed: 11,
        messages: 3_000,
        ..SynthConfig::default()
    });
    let lines: Vec<String> = log.by_ref().collect();
    let truth = log.into_truth();
    let mut file = std::fs::File::create(d.join("mail.log")).expect("log");
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(6)).collect();
    let mut append = |i: usize| {
        for l in chunks[i] {
            writeln!(file, "{l}").expect("append");
        }
        file.flush().expect("flush");
    };

    let c_conf = d.join("collector.toml");
    let a_conf = d.join("agent.toml");
    let c_args = ["collector", "--config", c_conf.to_str().expect("utf-8")];
    let a_args = ["agent", "--config", a_conf.to_str().expect("utf-8")];
    let mut collector = Proc::start(&c_args, &d.join("collector-1.out"));
    let mut agent = Proc::start(&a_args, &d.join("agent-1.out"));
    let pause = || std::thread::sleep(Duration::from_millis(1_500));

    append(0);
    pause();
    agent.kill9(); // agent killed mid-stream
    append(1);
    agent = Proc::start(&a_args, &d.join("agent-2.out"));
    pause();
    collector.kill9(); // collector killed mid-stream, down while the agent buffers
    append(2);
    pause();
    append(3);
    pause();
    collector = Proc::start(&c_args, &d.join("collector-2.out"));
    append(4);
    pause();
    agent.kill9();
    agent = Proc::start(&a_args, &d.join("agent-3.out"));
    append(5);

    let expected = [
        ("mailpulse_messages_delivered_total", truth.delivered),
        ("mailpulse_messages_deferred_total", truth.deferred),
        ("mailpulse_messages_bounced_total", truth.bounced),
    ];
    let settled = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let got: Vec<f64> = expected
            .iter()
            .map(|(m, _)| metric_sum(http, m).unwrap_or(-1.0))
            .collect();
        expected
            .iter()
            .zip(&got)
            .all(|((_, want), got)| *got == *want as f64)
            .then_some(got)
    });
    let now: Vec<(&str, u64, Option<f64>)> = expected
        .iter()
        .map(|(m, want)| (*m, *want, metric_sum(http, m)))
        .collect();
    assert!(
        settled.is_ok(),
        "counts at /metrics never became exact (metric, expected, got): {now:?}; logs in {}",
        d.display()
    );
    // Stable: nothing more arrives later (no duplicate resend applied after the counts matched).
    std::thread::sleep(Duration::from_secs(3));
    for (m, want) in expected {
        assert_eq!(
            metric_sum(http, m),
            Some(want as f64),
            "{m} changed after settling"
        );
    }
    println!(
        "pipeline: delivered {} deferred {} bounced {}: 0 lost, 0 duplicated across 2 agent and 1 collector SIGKILLs",
        truth.delivered, truth.deferred, truth.bounced
    );
    drop(agent);
    drop(collector);
}

/// A real Prometheus (Debian package) scrapes the collector; PromQL returns the delivered count.
#[test]
fn prometheus_scrapes_the_collector() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let http = write_configs(d, &d.join("mail.log"), "");
    let mut log = SynthLog::new(SynthConfig {
        seed: 5,
        messages: 500,
        ..SynthConfig::default()
    });
    let lines: Vec<String> = log.by_ref().collect();
    let truth = log.into_truth();
    std::fs::write(d.join("mail.log"), lines.join("\n") + "\n").expect("log");
    let (_collector, _agent) = start_collector_and_agent(d);
    let mut prom = Prometheus::start(d, &[format!("127.0.0.1:{http}")]);
    let query = "sum(mailpulse_messages_delivered_total)";
    let got = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let value = prom.value(query)?;
        (value == truth.delivered as f64).then_some(value)
    });
    let last = prom.value(query);
    prom.kill();
    assert!(
        got.is_ok(),
        "PromQL {query} never returned {} (last: {last:?}); logs in {}",
        truth.delivered,
        d.display()
    );
}

/// 100 k deliveries streamed through real agent and collector processes: exact at /metrics.
#[test]
fn hundred_thousand_deliveries_are_counted_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let http = write_configs(d, &d.join("mail.log"), "");
    let mut log = SynthLog::new(SynthConfig {
        seed: 3,
        messages: 68_000,
        ..SynthConfig::default()
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(d.join("mail.log")).expect("log"));
    for line in log.by_ref() {
        writeln!(file, "{line}").expect("write log");
    }
    file.flush().expect("flush log");
    drop(file);
    let truth = log.into_truth();
    assert!(
        truth.delivered >= 100_000,
        "only {} deliveries generated",
        truth.delivered
    );
    let (_collector, _agent) = start_collector_and_agent(d);
    let name = "mailpulse_messages_delivered_total";
    let got = poll_until(Duration::from_secs(120), Duration::from_millis(500), || {
        metric_sum(http, name).filter(|v| *v == truth.delivered as f64)
    });
    assert!(
        got.is_ok(),
        "{name} never reached {} (now {:?}); logs in {}",
        truth.delivered,
        metric_sum(http, name),
        d.display()
    );
    println!("pipeline: {} deliveries exact at /metrics", truth.delivered);
}
