//! Agent and collector as real processes on loopback: a growing Postfix log is streamed while the
//! agent is killed with SIGKILL, the collector is killed with SIGKILL and stays down for a while;
//! afterwards the delivery counts at the collector's /metrics are exact (0 lost, 0 duplicated).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mailpulse_sim::synth::{SynthConfig, SynthLog};
use mailpulse_tests::net::{free_port, poll_until};
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
    let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("prometheus is installed by scripts/install-deps");
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
    let prom_port = free_port();
    // honor_labels keeps the samples' own `instance` (the Postfix instance) label.
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mailpulse\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n"
        ),
    )
    .expect("prometheus config");
    let mut prom = Proc(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::fs::File::create(d.join("prometheus.out")).expect("log"))
            .stderr(std::fs::File::create(d.join("prometheus.err")).expect("log"))
            .spawn()
            .expect("start prometheus"),
    );
    let query = "sum(mailpulse_messages_delivered_total)";
    let got = poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let value = promql(prom_port, query)?;
        (value == truth.delivered as f64).then_some(value)
    });
    let last = promql(prom_port, query);
    prom.kill9();
    assert!(
        got.is_ok(),
        "PromQL {query} never returned {} (last: {last:?}); logs in {}",
        truth.delivered,
        d.display()
    );
}

/// The value of a scalar-like instant query (first result), via Prometheus' HTTP API.
fn promql(port: u16, query: &str) -> Option<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    write!(
        s,
        "GET /api/v1/query?query={q} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let json = body.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
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
