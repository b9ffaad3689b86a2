//! The real Postfix log of the fixtures (deferred messages retried: qmgr repeats their `from=`
//! line on every attempt) streamed through real agent and collector processes while the agent
//! is killed with SIGKILL twice: `received`, `delivered`, `bounced`, `deferred`, `held` and
//! `expired` at the collector's /metrics are exactly what `mailpulse parse` finds in the whole
//! log. A restarted
//! agent must not take a retried message for a new one.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use mailpulse_tests::bsd_time::restamp;
use mailpulse_tests::net::poll_until;
use mailpulse_tests::stack::{Proc, metric_sum, write_configs};
use mailpulse_tests::{fixtures_dir, mailpulse_bin};
use serde_json::Value;

/// The summary `mailpulse parse` prints for a whole file.
fn parse_summary(log: &std::path::Path) -> Value {
    let out = Command::new(mailpulse_bin())
        .args(["parse", "--summary", "json", "--format", "bsd"])
        .arg(log)
        .output()
        .expect("run mailpulse parse");
    assert!(out.status.success(), "mailpulse parse failed");
    serde_json::from_slice(&out.stdout).expect("summary JSON")
}

#[test]
fn agent_killed_twice_counts_received_messages_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let fixture = std::fs::read_to_string(fixtures_dir().join("postfix-live/maillog-3.7.log"))
        .expect("golden log");
    let raw: Vec<&str> = fixture.lines().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // The log spans minutes; it ends well before now, within the collector's retention.
    let lines = restamp(&raw, now - 3 * 3600);

    let whole = d.join("whole.log");
    std::fs::write(&whole, lines.join("\n") + "\n").expect("whole log");
    let summary = parse_summary(&whole);
    let n = |key: &str| summary[key].as_f64().unwrap_or(-1.0);
    let expected = [
        ("mailpulse_messages_received_total", n("received")),
        ("mailpulse_messages_delivered_total", n("delivered")),
        ("mailpulse_messages_deferred_total", n("deferred")),
        ("mailpulse_messages_bounced_total", n("bounced")),
        ("mailpulse_messages_held_total", n("held")),
        ("mailpulse_messages_expired_total", n("expired")),
    ];
    assert!(n("received") >= 50.0 && n("deferred") >= 20.0, "{summary}");

    let log = d.join("mail.log");
    let http = write_configs(d, &log, "");
    let mut file = std::fs::File::create(&log).expect("log");
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(6)).collect();
    assert_eq!(chunks.len(), 6);
    let mut written = 0usize;
    let mut append = |i: usize| {
        for l in chunks[i] {
            writeln!(file, "{l}").expect("append");
        }
        file.flush().expect("flush");
        written += chunks[i].len();
        written
    };
    // Waits until the collector has every line written so far (the agent read and shipped it).
    let shipped = |lines: usize| {
        let done = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            metric_sum(http, "mailpulse_agent_lines_read_total").filter(|v| *v >= lines as f64)
        });
        assert!(
            done.is_ok(),
            "the collector never saw {lines} lines read (now {:?}); logs in {}",
            metric_sum(http, "mailpulse_agent_lines_read_total"),
            d.display()
        );
    };

    let c_conf = d.join("collector.toml");
    let a_conf = d.join("agent.toml");
    let c_args = ["collector", "--config", c_conf.to_str().expect("utf-8")];
    let a_args = ["agent", "--config", a_conf.to_str().expect("utf-8")];
    let _collector = Proc::start(&c_args, &d.join("collector.out"));
    let mut agent = Proc::start(&a_args, &d.join("agent-1.out"));

    shipped(append(0));
    shipped(append(1));
    agent.kill9(); // after its lines are shipped
    agent = Proc::start(&a_args, &d.join("agent-2.out"));
    shipped(append(2));
    let total = append(3);
    std::thread::sleep(Duration::from_millis(400));
    agent.kill9(); // while it may still be reading and shipping
    agent = Proc::start(&a_args, &d.join("agent-3.out"));
    shipped(total);
    shipped(append(4));
    shipped(append(5));

    let exact = || {
        expected
            .iter()
            .all(|(m, want)| metric_sum(http, m) == Some(*want))
    };
    let settled = poll_until(Duration::from_secs(30), Duration::from_millis(300), || {
        exact().then_some(())
    });
    let got: Vec<(&str, f64, Option<f64>)> = expected
        .iter()
        .map(|(m, want)| (*m, *want, metric_sum(http, m)))
        .collect();
    assert!(
        settled.is_ok(),
        "counts at /metrics are not exact after two SIGKILLs (metric, expected, got): {got:?}; \
         logs in {}",
        d.display()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(exact(), "counts changed after settling");
    println!("agent_restarts: exact after two SIGKILLs: {got:?}");
    drop(agent);
}
