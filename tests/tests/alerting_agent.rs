//! The whole alert chain from a log line: a real agent (in process) tails a Postfix log that the
//! test writes in real time, aggregates it into 1-second windows and ships them to the collector;
//! a bounce storm in the log becomes an alert that both Alertmanagers of a clustered pair
//! (prometheus-alertmanager, loopback) list with its labels, and that resolves there after the
//! storm. The collector learned the ordinary level from ten minutes of history of the same host.

#[allow(dead_code)]
#[path = "support/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpulse_agent::parse::LogFormat;
use mailpulse_tests::alertmanager::{self, AlertmanagerCluster};
use serde_json::Value;

use agent::InProcessAgent;
use support::*;

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock")
}

/// An RFC 3339 timestamp with microseconds, UTC.
fn stamp(t: Duration) -> String {
    let secs = t.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = mailpulse_tests::bsd_time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        t.subsec_micros()
    )
}

/// `n` bounce lines to gmail.com as Postfix's smtp client logs them, stamped `t`.
fn bounces(t: Duration, n: usize, next_id: &mut u64) -> String {
    let mut out = String::new();
    for _ in 0..n {
        *next_id += 1;
        out.push_str(&format!(
            "{} mx1.example postfix/smtp[4242]: {:010X}: to=<user{}@gmail.com>, \
             relay=gmail-smtp-in.l.google.com[142.250.102.27]:25, delay=0.8, \
             delays=0.1/0/0.3/0.4, dsn=5.1.1, status=bounced (host \
             gmail-smtp-in.l.google.com[142.250.102.27] said: 550-5.1.1 The email account \
             that you tried to reach does not exist. (in reply to RCPT TO command))\n",
            stamp(t),
            0xA0000 + *next_id,
            *next_id % 997
        ));
    }
    out
}

fn ours(alerts: &[Value]) -> Option<&Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "messages_bounced")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_storm_in_a_tailed_log_reaches_both_alertmanagers() {
    assert!(
        alertmanager::available(),
        "this test needs the Debian prometheus-alertmanager package"
    );
    let ams = AlertmanagerCluster::start(2, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let urls: Vec<String> = (0..ams.len()).map(|i| ams.url(i)).collect();
    let mut cfg = second_windows_config(dir.path(), &urls);
    cfg.detect.resolve_after_windows = 3;
    // The agent ships every second and the store folds every second: a window is complete
    // three seconds after it ended.
    cfg.detect.settle_secs = 3;
    cfg.alerting.resend_interval_secs = 1;
    let collector = start(cfg).await;

    // Ten minutes of this host's ordinary bounces (40 a second), up to now.
    let start = now().as_secs() as i64;
    let mut history = AgentStream::mx1(collector.grpc_addr()).await;
    let samples = bounce_traffic("gmail.com", start - 600..start, 0..0, 7);
    for (seq, chunk) in (1..).zip(samples.chunks(500)) {
        history
            .batch(seq, chunk.to_vec())
            .await
            .expect("history applied");
    }
    drop(history);

    // The agent tails the log from here on.
    let log = dir.path().join("mail.log");
    std::fs::write(&log, "").expect("log");
    let agent = InProcessAgent::spawn(
        collector.grpc_addr(),
        ("mx1", "mx1.example", TOKEN_MX1),
        vec![log.clone()],
        dir.path(),
        |opts| {
            opts.format = LogFormat::Rfc3339;
            opts.window_secs = 1;
        },
    );

    // Ordinary traffic for 8 s, a storm of 2 000 bounces a second for 3 s, then ordinary
    // traffic until both Alertmanagers have the alert and have seen it resolve (bounded).
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open log");
    let mut next_id = 0;
    let mut seen = [false, false];
    let mut resolved = [false, false];
    let mut labels: Option<Value> = None;
    let mut storm_written: Option<std::time::Instant> = None;
    for second in 0..90 {
        let n = if (8..11).contains(&second) { 2_000 } else { 40 };
        if n > 40 && storm_written.is_none() {
            storm_written = Some(std::time::Instant::now());
        }
        file.write_all(bounces(now(), n, &mut next_id).as_bytes())
            .expect("append");
        file.flush().expect("flush");
        for i in 0..2 {
            let listed = ours(&ams.alerts(i).await).cloned();
            match (&listed, seen[i]) {
                (Some(alert), false) => {
                    seen[i] = true;
                    if let Some(t) = storm_written {
                        println!(
                            "Alertmanager {i} lists the alert {:.1} s after the first storm line \
                             was written (polled every second)",
                            t.elapsed().as_secs_f64()
                        );
                    }
                    labels.get_or_insert_with(|| alert["labels"].clone());
                }
                (Some(_), true) => {}
                (None, true) => resolved[i] = true,
                (None, false) => {}
            }
        }
        if resolved.iter().all(|r| *r) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    agent.stop().await;
    assert_eq!(seen, [true, true], "both Alertmanagers listed the alert");
    assert_eq!(resolved, [true, true], "and both saw it resolve");
    let labels = labels.expect("labels");
    assert_eq!(labels["host"], "mx1.example", "{labels}");
    assert_eq!(labels["domain"], "gmail.com", "{labels}");
    assert_eq!(labels["severity"], "warning", "{labels}");
    collector.shutdown().await.expect("clean shutdown");
}
