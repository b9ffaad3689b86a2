//! The agent and the collector as real processes against hostile or unlucky input: one line an
//! outsider controls must not stall the host's pipeline, and a reinstalled agent's data must
//! not be taken for resends.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpulse_tests::bsd_time::bsd_stamp;
use mailpulse_tests::net::poll_until;
use mailpulse_tests::stack::{Proc, metric_sum, scrape, start_collector_and_agent, write_configs};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `n` delivery lines (queue ids from `first`), stamped now.
fn deliveries(first: u32, n: u32) -> String {
    let stamp = bsd_stamp(now_secs());
    (first..first + n)
        .map(|i| {
            format!(
                "{stamp} mx1 postfix/smtp[3001]: 4F1A2B{i:04X}: to=<user{i}@example.net>, \
                 relay=mx.example.net[192.0.2.25]:25, delay=1.2, delays=0.1/0/0.5/0.6, \
                 dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)\n"
            )
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log opens");
    file.write_all(text.as_bytes()).expect("log appended");
    file.flush().expect("log flushed");
}

fn delivered(http: u16) -> Option<f64> {
    metric_sum(http, "mailpulse_messages_delivered_total")
}

/// A failed SASL login with a 320-byte user name (any client can send one) used to become a
/// label over the collector's limit; the collector refused the whole batch, the agent resent it
/// forever, and every later delivery waited behind it (0 of 30 counted).
#[test]
fn a_hostile_sasl_user_name_does_not_stall_later_deliveries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let log = d.join("mail.log");
    let http = write_configs(d, &log, "");
    let user = "x".repeat(320);
    let stamp = bsd_stamp(now_secs());
    append(
        &log,
        &format!(
            "{stamp} mx1 postfix/smtpd[2101]: warning: unknown[203.0.113.79]: SASL LOGIN \
             authentication failed: authentication failure, sasl_username={user}\n"
        ),
    );
    append(&log, &deliveries(0, 30));
    let (_collector, _agent) = start_collector_and_agent(d);
    let got = poll_until(Duration::from_secs(60), Duration::from_millis(300), || {
        delivered(http).filter(|&n| n >= 30.0)
    })
    .ok();
    assert_eq!(
        got,
        Some(30.0),
        "every delivery after the hostile line is counted"
    );
    let body = scrape(http).expect("metrics");
    let label = body
        .lines()
        .filter(|l| l.starts_with("mailpulse_sasl_auth_failures_by_user_total{"))
        .find_map(|l| {
            let start = l.find("user=\"")? + "user=\"".len();
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_owned())
        })
        .expect("the SASL failure is counted per user");
    assert!(
        label.len() <= 128 && label.starts_with("xxxx") && label.contains('~'),
        "the user name is cut with a hash suffix: {label:?}"
    );
}

/// Wiping the agent's state (reinstall, new disk) starts its sequence numbers at 1 again; the
/// collector used to ack those batches as duplicates and drop them.
#[test]
fn a_reinstalled_agent_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let log = d.join("mail.log");
    let http = write_configs(d, &log, "");
    append(&log, &deliveries(0, 25));
    let (collector, mut agent) = start_collector_and_agent(d);
    let first = poll_until(Duration::from_secs(60), Duration::from_millis(300), || {
        delivered(http).filter(|&n| n >= 25.0)
    })
    .ok();
    assert_eq!(first, Some(25.0), "the first install's deliveries");
    agent.kill9();
    std::fs::remove_dir_all(d.join("state")).expect("state wiped");
    // A new log file (the reinstalled host's), read from its start.
    std::fs::remove_file(&log).expect("old log removed");
    append(&log, &deliveries(1000, 25));
    let a_conf = d.join("agent.toml");
    let _agent = Proc::start(
        &["agent", "--config", a_conf.to_str().expect("utf-8")],
        &d.join("agent-2.out"),
    );
    let total = poll_until(Duration::from_secs(60), Duration::from_millis(300), || {
        delivered(http).filter(|&n| n >= 50.0)
    })
    .ok();
    assert_eq!(
        total,
        Some(50.0),
        "the reinstalled agent's deliveries are applied, not acked as duplicates"
    );
    drop(collector);
}
