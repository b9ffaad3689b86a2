//! Feedback-loop complaints end to end: a real agent (in process) reads ARF reports from a
//! Maildir and the collector's `/metrics` shows exactly what was delivered there — per sender,
//! sending domain, source IP and feedback type — and the refused files; every file ends in
//! `cur/`, counted once.

#[path = "support/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::time::{Duration, Instant};

use mailpulse_agent::complaints::ComplaintsConfig;

use agent::{InProcessAgent, empty_log};
use support::*;

const RFC5965_B2: &str = include_str!("../../agent/tests/fixtures/arf/rfc5965-b2.eml");

fn sum(text: &str, metric: &str, must_contain: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(must_contain))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_in_a_maildir_are_counted_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("fbl");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    // Three reports about one sender, two about another from another IP, two that are not ARF.
    for i in 0..3 {
        std::fs::write(maildir.join("new").join(format!("a{i}")), RFC5965_B2).expect("write");
    }
    let other = RFC5965_B2
        .replace("somespammer@example.net", "news@shop.test")
        .replace("Source-IP: 192.0.2.1", "Source-IP: 198.51.100.25");
    for i in 0..2 {
        std::fs::write(maildir.join("new").join(format!("b{i}")), &other).expect("write");
    }
    std::fs::write(
        maildir.join("new").join("c0"),
        "Subject: hi\n\nnot a report\n",
    )
    .expect("write");
    std::fs::write(maildir.join("new").join("c1"), vec![0u8; 2 * 1024 * 1024]).expect("write");

    let collector = start(config(dir.path())).await;
    let agent = InProcessAgent::spawn(
        collector.grpc_addr(),
        ("mx1", "mx1.example", TOKEN_MX1),
        vec![empty_log(dir.path())],
        dir.path(),
        |opts| {
            opts.complaints = Some(ComplaintsConfig {
                maildir: Some(maildir.clone()),
                interval_secs: 1,
                ..ComplaintsConfig::default()
            })
        },
    );

    let started = Instant::now();
    let text = loop {
        let text = scrape(&collector).await;
        if sum(&text, "mailpulse_complaints_total", "") == 5.0
            && sum(&text, "mailpulse_complaint_reports_refused_total", "") == 2.0
        {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        sum(
            &text,
            "mailpulse_complaints_total",
            "sender=\"somespammer@example.net\""
        ),
        3.0
    );
    assert_eq!(
        sum(&text, "mailpulse_complaints_total", "ip=\"198.51.100.25\""),
        2.0
    );
    assert_eq!(
        sum(
            &text,
            "mailpulse_complaints_total",
            "sender_domain=\"shop.test\""
        ),
        2.0
    );
    assert_eq!(
        sum(
            &text,
            "mailpulse_complaint_reports_refused_total",
            "reason=\"too_large\""
        ),
        1.0
    );
    assert_eq!(
        std::fs::read_dir(maildir.join("new")).expect("new").count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(maildir.join("cur")).expect("cur").count(),
        7
    );
    // Polled again: nothing more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let text = scrape(&collector).await;
    assert_eq!(sum(&text, "mailpulse_complaints_total", ""), 5.0);
    agent.stop().await;
    collector.shutdown().await.expect("clean shutdown");
}
