//! Queue snapshots of a real Postfix on loopback: mail to a greylisting sink and to a port where
//! nothing listens fills the deferred queue, one message is held. The snapshot (through
//! `postqueue -j` and through the queue directories) must match the submissions, and the whole
//! chain — `mailpulse agent` with its queue watcher, capacity probes and traffic signals, shipping
//! to `mailpulse collector` — must show the same numbers at /metrics.
//!
//! Needs root and the Debian `postfix` package (`scripts/install-deps`) and a built `mailpulse`
//! binary. Takes about 15 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpulse_agent::classify::ReasonClass;
use mailpulse_agent::queue::{
    InstanceConfig, QueueConfig, QueueName, QueueWatcher, SnapshotSource, scan_queue_directory,
};
use mailpulse_tests::net::{free_port, poll_until};
use mailpulse_tests::postfix::{self, PostfixConfig, PostfixInstance, QueuedMessage};
use mailpulse_tests::smtp_client::{Envelope, submit};
use mailpulse_tests::smtp_sink::{SinkMode, SmtpSink};
use mailpulse_tests::stack::{metric_sum, metric_value, start_collector_and_agent, write_configs};

const SENDER: &str = "alice@sender.test";
/// Messages to the greylisting sink; the first has two recipients.
const GREYLISTED: usize = 4;
/// Messages to a port where nothing listens.
const REFUSED: usize = 3;
/// Messages delivered at once.
const DELIVERED: usize = 2;
const HELD: &str = "held@ok.test";
const WAIT: Duration = Duration::from_secs(60);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Per queue name: (messages, message bytes), from `postqueue -j` as the harness reads it.
fn by_queue(queue: &[QueuedMessage]) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for m in queue {
        let e = out.entry(m.queue_name.clone()).or_default();
        e.0 += 1;
        e.1 += m.message_size;
    }
    out
}

#[test]
fn real_queue_snapshot_matches_the_submissions_and_reaches_the_collector() {
    assert!(
        postfix::available(),
        "this test needs root and the Debian postfix package: run scripts/install-deps as root"
    );
    let greylist_sink = SmtpSink::start(SinkMode::Tempfail).expect("tempfail sink");
    let ok_sink = SmtpSink::start(SinkMode::Accept).expect("accept sink");
    let refused_port = free_port();
    let config = PostfixConfig::default()
        .route("greylist.test", &greylist_sink.nexthop())
        .route("down.test", &format!("smtp:[127.0.0.1]:{refused_port}"))
        .route("ok.test", &ok_sink.nexthop())
        .route("sender.test", &ok_sink.nexthop())
        .recipient_rule(HELD, "HOLD held for review")
        .param("maximal_queue_lifetime", "1d")
        .param("bounce_queue_lifetime", "1d");
    let instance = PostfixInstance::start(&config).expect("postfix starts");

    // The agent and collector run from the start, so the traffic counters see every session.
    let work = tempfile::tempdir().expect("temp dir");
    let d = work.path();
    let agent_extra = format!(
        "[queue]\ninterval_secs = 1\n\
         [[queue.instances]]\nname = \"postfix\"\nconfig_directory = \"{}\"\n",
        instance.config_dir().display()
    );
    let http = write_configs(d, instance.maillog_path(), &agent_extra);
    let (_collector, _agent) = start_collector_and_agent(d);

    let started = unix_now();
    let clock = Instant::now();
    let mut sessions = 0;
    let mut send = |recipients: Vec<String>| {
        let envelope = Envelope {
            helo: "client.test",
            from: SENDER,
            recipients,
        };
        let report = submit(
            instance.smtpd_addr(),
            &envelope,
            "Subject: queue test\n\nhello\n",
        )
        .expect("submission");
        assert!(report.queue_id().is_some(), "accepted: {report:?}");
        sessions += 1;
    };
    for i in 0..GREYLISTED {
        let mut rcpts = vec![format!("user{i}@greylist.test")];
        if i == 0 {
            rcpts.push("second@greylist.test".into());
        }
        send(rcpts);
    }
    for i in 0..REFUSED {
        send(vec![format!("user{i}@down.test")]);
    }
    for i in 0..DELIVERED {
        send(vec![format!("user{i}@ok.test")]);
    }
    send(vec![HELD.to_string()]);

    // Settled: every deferred recipient has a reason, the held message is held, nothing active.
    let settled = poll_until(WAIT, Duration::from_millis(200), || {
        let queue = instance.queue().ok()?;
        let deferred: Vec<&QueuedMessage> = queue
            .iter()
            .filter(|m| m.queue_name == "deferred")
            .collect();
        let reasons_known = deferred
            .iter()
            .all(|m| m.recipients.iter().all(|r| r.delay_reason.is_some()));
        let held = queue.iter().filter(|m| m.queue_name == "hold").count();
        (deferred.len() == GREYLISTED + REFUSED
            && reasons_known
            && held == 1
            && queue.len() == GREYLISTED + REFUSED + 1)
            .then_some(queue)
    });
    let queue = settled.unwrap_or_else(|_| {
        panic!(
            "queue never settled: {:?}\nlog:\n{}",
            instance.queue(),
            instance.maillog()
        )
    });
    let elapsed = (unix_now() - started) as u64;

    // 1. postqueue -j through the watcher, against what was submitted.
    let mut watcher = QueueWatcher::new(QueueConfig {
        instances: vec![InstanceConfig {
            name: "postfix".into(),
            config_directory: instance.config_dir().to_path_buf(),
            queue_directory: None,
        }],
        ..QueueConfig::default()
    });
    let samples = watcher.poll(unix_now() * 1000, "mx1", 60);
    assert!(!samples.is_empty());
    let snap = watcher.last_snapshot("postfix").expect("snapshot").clone();
    assert_eq!(snap.source, SnapshotSource::Postqueue);
    assert_eq!(snap.malformed_lines, 0);
    let deferred = snap.queue(QueueName::Deferred);
    assert_eq!(deferred.messages, (GREYLISTED + REFUSED) as u64);
    assert_eq!(deferred.recipients, (GREYLISTED + 1 + REFUSED) as u64);
    assert!(
        deferred.oldest_age_secs <= elapsed + 1,
        "{deferred:?} vs {elapsed} s"
    );
    assert_eq!(
        deferred.age_buckets[0], deferred.messages,
        "all younger than a minute"
    );
    assert_eq!(snap.queue(QueueName::Hold).messages, 1);
    assert_eq!(snap.queue(QueueName::Active).messages, 0);
    let grey = &snap.deferred_domains["greylist.test"];
    assert_eq!(
        (grey.messages, grey.recipients),
        (GREYLISTED as u64, GREYLISTED as u64 + 1)
    );
    let down = &snap.deferred_domains["down.test"];
    assert_eq!(
        (down.messages, down.recipients),
        (REFUSED as u64, REFUSED as u64)
    );
    assert_eq!(snap.deferred_domains.len(), 2);
    assert_eq!(
        snap.deferred_reasons.get(ReasonClass::Greylisting),
        GREYLISTED as u64 + 1
    );
    assert_eq!(
        snap.deferred_reasons.get(ReasonClass::Connect),
        REFUSED as u64
    );
    assert_eq!(
        snap.deferred_reasons.total(),
        (GREYLISTED + 1 + REFUSED) as u64
    );
    // Bytes agree with the sizes postqueue reports, read independently by the harness.
    let expected = by_queue(&queue);
    for (name, (messages, bytes)) in &expected {
        let q = QueueName::ALL
            .into_iter()
            .find(|q| q.as_str() == name)
            .expect("known queue");
        assert_eq!(
            (snap.queue(q).messages, snap.queue(q).bytes),
            (*messages, *bytes),
            "{name}"
        );
    }

    // 2. The directory scan (the fallback) sees the same messages, bytes and ages.
    let scanned = scan_queue_directory(instance.queue_dir(), unix_now()).expect("scan");
    for q in [QueueName::Deferred, QueueName::Hold, QueueName::Active] {
        let (a, b) = (snap.queue(q), scanned.queue(q));
        assert_eq!((a.messages, a.bytes), (b.messages, b.bytes), "{q:?}");
        assert!(
            a.oldest_age_secs.abs_diff(b.oldest_age_secs) <= 2,
            "{q:?}: {a:?} vs {b:?}"
        );
    }

    // 3. The agent's samples at the collector: queue gauges, reason classes, traffic, capacity.
    let expect_value = |name: &str, labels: &[(&str, &str)], want: f64| {
        let got = poll_until(WAIT, Duration::from_millis(250), || {
            metric_value(http, name, labels).filter(|v| *v == want)
        });
        assert!(
            got.is_ok(),
            "{name}{labels:?}: want {want}, have {:?}; logs in {}",
            metric_value(http, name, labels),
            d.display()
        );
    };
    let deferred_queue = [("instance", "postfix"), ("queue", "deferred")];
    expect_value("mailpulse_queue_messages", &deferred_queue, 7.0);
    expect_value(
        "mailpulse_queue_messages",
        &[("instance", "postfix"), ("queue", "hold")],
        1.0,
    );
    expect_value(
        "mailpulse_queue_deferred_domain_recipients",
        &[("domain", "greylist.test")],
        (GREYLISTED + 1) as f64,
    );
    expect_value(
        "mailpulse_queue_deferred_reason_recipients",
        &[("reason_class", "connect")],
        REFUSED as f64,
    );
    // Our sessions plus the harness's readiness probes: count the log's own connect lines.
    let connects = instance
        .maillog()
        .lines()
        .filter(|l| l.contains("/smtpd[") && l.contains(": connect from "))
        .count();
    assert!(
        connects > sessions,
        "{connects} connects, {sessions} sessions"
    );
    expect_value(
        "mailpulse_smtpd_connections_total",
        &[("client_net", "127.0.0.0/24")],
        connects as f64,
    );
    expect_value(
        "mailpulse_messages_deferred_total",
        &[("domain", "greylist.test"), ("reason_class", "greylisting")],
        (GREYLISTED + 1) as f64,
    );
    expect_value(
        "mailpulse_messages_deferred_total",
        &[("domain", "down.test"), ("reason_class", "connect")],
        REFUSED as f64,
    );
    let queue_dir = instance.queue_dir().display().to_string();
    let avail = metric_value(
        http,
        "mailpulse_filesystem_avail_bytes",
        &[("path", &queue_dir)],
    );
    assert!(
        avail.is_some_and(|v| v > 0.0),
        "spool filesystem measured: {avail:?}"
    );
    let smtpd = metric_sum(http, "mailpulse_postfix_processes");
    assert!(
        smtpd.is_some_and(|v| v >= 1.0),
        "Postfix processes counted: {smtpd:?}"
    );
    println!(
        "queue: {} deferred ({} greylisting, {} connect), 1 held, {sessions} sessions; \
         watcher, directory scan and collector agree ({:.1} s)",
        deferred.messages,
        GREYLISTED + 1,
        REFUSED,
        clock.elapsed().as_secs_f64()
    );
}
