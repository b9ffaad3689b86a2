//! Real Postfix on loopback: a known mix of mail goes through a throw-away Postfix 3.7 instance to
//! SMTP sinks that accept, tempfail or reject, and to a port where nothing listens. The log Postfix
//! writes is then summarised three ways, which must agree with each other and with what the sinks
//! saw:
//! 1. `mailpulse parse --summary json` (the code under test);
//! 2. independent line counts ([`MaillogCounts`]);
//! 3. Debian's `pflogsumm`, where its definitions coincide (mapping below).
//!
//! Needs root and the Debian `postfix` and `pflogsumm` packages (`scripts/install-deps`), and a built
//! `mailpulse` binary (`cargo build --bins`). Takes about 30 s: deferred mail must expire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mailpulse_tests::maillog::{MaillogCounts, percentile};
use mailpulse_tests::net::{free_port, poll_until};
use mailpulse_tests::pflogsumm::{self, GrandTotals};
use mailpulse_tests::postfix::{self, PostfixConfig, PostfixInstance};
use mailpulse_tests::smtp_client::{Envelope, SubmitReport, submit};
use mailpulse_tests::smtp_sink::{SinkMode, SmtpSink};
use mailpulse_tests::{fixtures_dir, mailpulse_bin};
use serde_json::Value;

const HELO: &str = "client.test";
/// Envelope sender of every test message; `sender.test` routes to the notice sink, so bounce and
/// expiry notices are delivered (and counted) like any other mail.
const SENDER: &str = "alice@sender.test";
const BLOCKED: &str = "blocked@ok.test";
const HELD: &str = "held@ok.test";

/// Messages to ok.test; every fifth has three recipients, the others one.
const OK_MESSAGES: usize = 30;
const TEMPFAIL_MESSAGES: usize = 5;
const REFUSED_MESSAGES: usize = 5;
const REJECT_MESSAGES: usize = 5;
/// Sessions whose only recipient is refused by `check_recipient_access` (NOQUEUE reject).
const BLOCKED_ATTEMPTS: usize = 3;
/// Messages held by `check_recipient_access … HOLD` (they stay in the hold queue).
const HELD_MESSAGES: usize = 2;
/// `maximal_queue_lifetime`: tempfailed and refused mail expires after one or two retries.
const QUEUE_LIFETIME: &str = "15s";

/// Every wait in this test ends within this.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The summary's top-level keys, exactly.
const SUMMARY_KEYS: [&str; 16] = [
    "lines",
    "unparsed",
    "received",
    "delivered",
    "deferred",
    "deferred_messages",
    "bounced",
    "expired",
    "rejected",
    "held",
    "discarded",
    "by_recipient_domain",
    "by_relay",
    "by_sasl_user",
    "reject_reasons",
    "delay_secs",
];

#[test]
fn real_postfix_log_summary_matches_sinks_line_counts_and_pflogsumm() {
    let started = Instant::now();
    require_environment();
    let bin = mailpulse_bin();

    let ok_sink = SmtpSink::start(SinkMode::Accept).expect("start accept sink");
    let notice_sink = SmtpSink::start(SinkMode::Accept).expect("start notice sink");
    let tempfail_sink = SmtpSink::start(SinkMode::Tempfail).expect("start tempfail sink");
    let reject_sink = SmtpSink::start(SinkMode::Reject).expect("start reject sink");
    let refused_port = free_port();

    let config = PostfixConfig::default()
        .route("ok.test", &ok_sink.nexthop())
        .route("sender.test", &notice_sink.nexthop())
        .route("tempfail.test", &tempfail_sink.nexthop())
        .route("reject.test", &reject_sink.nexthop())
        .route("refused.test", &format!("smtp:[127.0.0.1]:{refused_port}"))
        .recipient_rule(BLOCKED, "REJECT blocked by test policy")
        .recipient_rule(HELD, "HOLD held by test policy")
        .param("maximal_queue_lifetime", QUEUE_LIFETIME)
        .param("bounce_queue_lifetime", QUEUE_LIFETIME);
    let mut postfix = PostfixInstance::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let postfix_up = started.elapsed();

    let sent = submit_mix(&postfix);
    let submitted = started.elapsed();

    // Every accepted recipient reaches the sink, rejected ones bounce, tempfailed and refused ones
    // are deferred until they expire; each bounce and expiry produces one notice to the sender.
    let expected_notices = sent.rejected_rcpts + sent.deferring_messages;
    let settled = poll_until(DELIVERY_TIMEOUT, Duration::from_millis(250), || {
        let counts = MaillogCounts::from_log(&postfix.maillog());
        let queue = postfix.queue().ok()?;
        let only_held_left =
            queue.len() == HELD_MESSAGES && queue.iter().all(|m| m.queue_name == "hold");
        (ok_sink.stats().recipients == sent.ok_rcpts
            && notice_sink.stats().messages == expected_notices
            && counts.bounced == sent.rejected_rcpts
            && counts.expired == sent.deferring_messages
            && counts.deferred_messages == sent.deferring_messages
            && only_held_left)
            .then_some(())
    });
    if let Err(elapsed) = settled {
        panic!(
            "mail did not settle ({elapsed}): ok sink {:?}, notice sink {:?}, queue {:?}\n\
             last log lines:\n{}",
            ok_sink.stats(),
            notice_sink.stats(),
            postfix.queue(),
            tail(&postfix.maillog(), 40)
        );
    }
    let delivered_at = started.elapsed();
    let held_queue = postfix.queue().expect("postqueue -j");
    postfix.stop().expect("postfix stops");
    let log_path = postfix.maillog_path().to_path_buf();
    let log = postfix.maillog();
    save_fixture(&log);

    let mut checks = Checks::default();
    let held_rcpts: Vec<&str> = held_queue
        .iter()
        .flat_map(|m| m.recipients.iter().map(|r| r.address.as_str()))
        .collect();
    checks.eq(
        "postqueue -j: hold queue recipients",
        held_rcpts,
        vec![HELD; HELD_MESSAGES],
    );
    let counts = MaillogCounts::from_log(&log);
    check_log_against_ground_truth(
        &mut checks,
        &counts,
        &sent,
        &SinkCounts::of(&ok_sink, &notice_sink),
    );
    check_pflogsumm(
        &mut checks,
        &counts,
        &pflogsumm::run(&log_path).expect("pflogsumm runs"),
    );
    match run_mailpulse_summary(&bin, &log_path) {
        Ok(summary) => check_summary(
            &mut checks,
            &summary,
            &counts,
            &sent,
            &[&ok_sink, &notice_sink, &tempfail_sink, &reject_sink],
        ),
        Err(why) => checks.failures.push(why),
    }

    eprintln!(
        "timings: postfix up {:.1}s, {} sessions submitted {:.1}s, settled {:.1}s, total {:.1}s",
        postfix_up.as_secs_f64(),
        sent.sessions,
        submitted.as_secs_f64(),
        delivered_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    checks.finish(&log);
}

#[test]
fn two_instances_run_side_by_side_with_their_own_queue_and_log() {
    require_environment();
    let sink = SmtpSink::start(SinkMode::Accept).expect("start accept sink");
    // Long queue ids here (the other test has Postfix's default short ones).
    let config = PostfixConfig::default()
        .route("ok.test", &sink.nexthop())
        .param("enable_long_queue_ids", "yes");
    let mut first = PostfixInstance::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut second = PostfixInstance::start(&config).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first.smtpd_addr(), second.smtpd_addr());
    assert_ne!(first.root(), second.root());

    for (i, instance) in [&first, &second].into_iter().enumerate() {
        let envelope = Envelope {
            helo: HELO,
            from: SENDER,
            recipients: vec![format!("instance{i}@ok.test")],
        };
        let report = submit(
            instance.smtpd_addr(),
            &envelope,
            "Subject: side by side\r\n\r\nhi\r\n",
        )
        .unwrap_or_else(|e| panic!("submitting to instance {i}: {e}"));
        assert!(
            report.queue_id().is_some(),
            "instance {i} queues: {report:?}"
        );
    }
    let delivered = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        (sink.stats().recipients == 2).then_some(())
    });
    assert!(
        delivered.is_ok(),
        "both instances deliver: sink saw {:?}",
        sink.stats()
    );
    first.stop().expect("first instance stops");
    second.stop().expect("second instance stops");

    for (i, instance) in [&first, &second].into_iter().enumerate() {
        let log = instance.maillog();
        let counts = MaillogCounts::from_log(&log);
        let recipients: Vec<&str> = counts.deliveries.iter().map(|d| d.to.as_str()).collect();
        assert_eq!(
            recipients,
            [format!("instance{i}@ok.test")],
            "instance {i} logs only its own mail:\n{log}"
        );
        assert!(
            counts.deliveries.iter().all(|d| d.queue_id.contains('z')),
            "long queue ids (time, `z`, inode) in instance {i}'s log:\n{log}"
        );
        let config_line = format!("configuration {}", instance.config_dir().display());
        assert!(
            log.contains(&config_line),
            "instance {i} log names its own config dir:\n{log}"
        );
    }

    // Two logs given one after the other are read as one stream.
    let summary = run_mailpulse_summary_of(
        &mailpulse_bin(),
        &[first.maillog_path(), second.maillog_path()],
    )
    .unwrap_or_else(|why| panic!("{why}"));
    let lines = first.maillog().lines().count() + second.maillog().lines().count();
    for (key, want) in [
        ("lines", lines),
        ("unparsed", 0),
        ("received", 2),
        ("delivered", 2),
    ] {
        assert_eq!(
            summary.get(key).and_then(Value::as_u64),
            Some(want as u64),
            "summary {key} of two long-queue-id logs: {summary:#}"
        );
    }
}

/// What the test sent, as the SMTP client saw it.
#[derive(Debug, Default)]
struct Sent {
    sessions: usize,
    /// Messages Postfix queued (DATA answered `250 … queued as ID`), held ones included.
    queued_messages: usize,
    ok_rcpts: usize,
    tempfail_rcpts: usize,
    refused_rcpts: usize,
    rejected_rcpts: usize,
    /// Messages whose every recipient is deferred until it expires (tempfail + refused).
    deferring_messages: usize,
    noqueue_rejects: usize,
    held: usize,
}

fn submit_mix(postfix: &PostfixInstance) -> Sent {
    let mut sent = Sent::default();
    let mut n = 0usize;
    let mut send = |recipients: Vec<String>, sent: &mut Sent| -> SubmitReport {
        n += 1;
        sent.sessions += 1;
        let envelope = Envelope {
            helo: HELO,
            from: SENDER,
            recipients,
        };
        let body = format!(
            "From: <{SENDER}>\r\nTo: <{}>\r\nSubject: mailpulse test {n}\r\n\
             Message-ID: <mailpulse-test-{n}@sender.test>\r\n\r\nTest message {n}.\r\n.leading dot\r\n",
            envelope.recipients.join(">, <"),
        );
        let report = submit(postfix.smtpd_addr(), &envelope, &body)
            .unwrap_or_else(|e| panic!("submitting message {n}: {e}"));
        if report.queue_id().is_some() {
            sent.queued_messages += 1;
        }
        report
    };
    let expect_queued = |report: &SubmitReport, what: &str| {
        assert!(
            report.queue_id().is_some()
                && report.accepted_recipients() == report.rcpt_replies.len(),
            "Postfix should queue the {what} message with every recipient: {report:?}"
        );
    };

    for i in 0..OK_MESSAGES {
        let rcpts: Vec<String> = (0..if i % 5 == 0 { 3 } else { 1 })
            .map(|j| format!("user{i}-{j}@ok.test"))
            .collect();
        sent.ok_rcpts += rcpts.len();
        let report = send(rcpts, &mut sent);
        expect_queued(&report, "ok.test");
    }
    for (domain, count) in [
        ("tempfail.test", TEMPFAIL_MESSAGES),
        ("refused.test", REFUSED_MESSAGES),
        ("reject.test", REJECT_MESSAGES),
    ] {
        for i in 0..count {
            let report = send(vec![format!("user{i}@{domain}")], &mut sent);
            expect_queued(&report, domain);
            match domain {
                "tempfail.test" => sent.tempfail_rcpts += 1,
                "refused.test" => sent.refused_rcpts += 1,
                _ => sent.rejected_rcpts += 1,
            }
        }
    }
    sent.deferring_messages = TEMPFAIL_MESSAGES + REFUSED_MESSAGES;
    for _ in 0..BLOCKED_ATTEMPTS {
        let report = send(vec![BLOCKED.to_string()], &mut sent);
        assert_eq!(
            report.rcpt_replies[0].code, 554,
            "the access map refuses {BLOCKED}: {report:?}"
        );
        assert!(report.data_reply.is_none(), "no DATA without recipients");
        sent.noqueue_rejects += 1;
    }
    for _ in 0..HELD_MESSAGES {
        let report = send(vec![HELD.to_string()], &mut sent);
        expect_queued(&report, "held");
        sent.held += 1;
    }
    sent
}

/// What the two accepting sinks received.
struct SinkCounts {
    ok_rcpts: usize,
    ok_addrs: BTreeSet<String>,
    notice_messages: usize,
    notice_rcpts: usize,
    notice_senders: Vec<String>,
}

impl SinkCounts {
    fn of(ok: &SmtpSink, notice: &SmtpSink) -> Self {
        let (ok, notice) = (ok.stats(), notice.stats());
        Self {
            ok_rcpts: ok.recipients,
            ok_addrs: ok.recipient_addrs.iter().cloned().collect(),
            notice_messages: notice.messages,
            notice_rcpts: notice.recipients,
            notice_senders: notice.senders,
        }
    }
}

/// The log itself, counted with the simple definitions, against what was sent and received.
fn check_log_against_ground_truth(
    checks: &mut Checks,
    counts: &MaillogCounts,
    sent: &Sent,
    sinks: &SinkCounts,
) {
    let notices = sent.rejected_rcpts + sent.deferring_messages;
    checks.eq("sink: ok.test recipients", sinks.ok_rcpts, sent.ok_rcpts);
    checks.eq(
        "sink: distinct ok.test recipients",
        sinks.ok_addrs.len(),
        sent.ok_rcpts,
    );
    checks.eq(
        "sink: notices (one per bounced or expired message)",
        sinks.notice_messages,
        notices,
    );
    checks.eq(
        "sink: notices come from the null sender",
        sinks.notice_senders.iter().filter(|s| s.is_empty()).count(),
        notices,
    );
    checks.eq(
        "log: status=sent lines = recipients the sinks accepted",
        counts.delivered,
        sinks.ok_rcpts + sinks.notice_rcpts,
    );
    checks.eq(
        "log: received = queued non-held messages + notices",
        counts.received,
        sent.queued_messages - sent.held + notices,
    );
    checks.eq(
        "log: smtpd client= lines = queued messages",
        counts.smtpd_received,
        sent.queued_messages,
    );
    checks.eq("log: bounce notices", counts.bounce_notices, notices);
    checks.eq("log: bounced", counts.bounced, sent.rejected_rcpts);
    checks.eq("log: expired", counts.expired, sent.deferring_messages);
    checks.eq(
        "log: deferred_messages",
        counts.deferred_messages,
        sent.deferring_messages,
    );
    checks.ge(
        "log: deferred lines (each message at least once)",
        counts.deferred,
        sent.deferring_messages,
    );
    checks.eq(
        "log: NOQUEUE rejects",
        counts.rejected,
        sent.noqueue_rejects,
    );
    checks.eq("log: held", counts.held, sent.held);
    checks.eq("log: discarded", counts.discarded, 0);
    checks.eq(
        "log: warnings/errors/fatals",
        counts.diagnostics.clone(),
        Vec::<String>::new(),
    );
    let domain = |d: &str| {
        counts
            .by_recipient_domain
            .get(d)
            .cloned()
            .unwrap_or_default()
    };
    checks.eq(
        "log: ok.test delivered",
        domain("ok.test").delivered,
        sent.ok_rcpts,
    );
    checks.eq(
        "log: sender.test delivered",
        domain("sender.test").delivered,
        notices,
    );
    checks.eq(
        "log: reject.test bounced",
        domain("reject.test").bounced,
        sent.rejected_rcpts,
    );
    checks.ge(
        "log: tempfail.test deferred",
        domain("tempfail.test").deferred,
        sent.tempfail_rcpts,
    );
    checks.ge(
        "log: refused.test deferred",
        domain("refused.test").deferred,
        sent.refused_rcpts,
    );
}

/// pflogsumm 1.1.5 against the line counts, where the definitions coincide (see
/// `mailpulse_tests::pflogsumm` for how pflogsumm counts):
///
/// | pflogsumm            | summary / line count                    | equal here because             |
/// |----------------------|-----------------------------------------|--------------------------------|
/// | delivered            | delivered (`status=sent` lines)         | no `forwarded as` lines        |
/// | deferred             | deferred_messages                       | same definition                |
/// | (N deferrals)        | deferred (`status=deferred` lines)      | same definition                |
/// | bounced              | bounced (`status=bounced` lines)        | same; neither counts expired   |
/// | rejected             | rejected                                | only NOQUEUE smtpd rejects     |
/// | held                 | held                                    | only smtpd `hold:` lines       |
/// | discarded            | discarded                               | none                           |
/// | received             | — (differs)                             | see below                      |
///
/// pflogsumm's `received` counts smtpd `client=` lines: held messages are in, bounce notices are out.
/// The summary's `received` counts queue ids reaching qmgr: held messages are out, notices are in.
/// So `summary.received = pflogsumm.received - held + notices`, checked as such.
fn check_pflogsumm(checks: &mut Checks, counts: &MaillogCounts, totals: &GrandTotals) {
    let n = |v: usize| v as u64;
    checks.eq(
        "pflogsumm delivered = status=sent lines",
        totals.delivered,
        n(counts.delivered),
    );
    checks.eq("pflogsumm forwarded", totals.forwarded, 0);
    checks.eq(
        "pflogsumm deferred = deferred_messages",
        totals.deferred,
        n(counts.deferred_messages),
    );
    checks.eq(
        "pflogsumm deferrals = status=deferred lines",
        totals.deferrals,
        n(counts.deferred),
    );
    checks.eq("pflogsumm bounced", totals.bounced, n(counts.bounced));
    checks.eq("pflogsumm rejected", totals.rejected, n(counts.rejected));
    checks.eq("pflogsumm held", totals.held, n(counts.held));
    checks.eq("pflogsumm discarded", totals.discarded, n(counts.discarded));
    checks.eq(
        "pflogsumm received = smtpd client= lines",
        totals.received,
        n(counts.smtpd_received),
    );
    checks.eq(
        "received = pflogsumm received - held + notices",
        n(counts.received),
        (totals.received + n(counts.bounce_notices)).saturating_sub(n(counts.held)),
    );
}

/// Runs `mailpulse parse --summary json LOG`; `Err` says why there is no summary to check.
fn run_mailpulse_summary(bin: &Path, log: &Path) -> Result<Value, String> {
    run_mailpulse_summary_of(bin, &[log])
}

/// Runs `mailpulse parse --summary json LOG...`.
fn run_mailpulse_summary_of(bin: &Path, logs: &[&Path]) -> Result<Value, String> {
    let output = Command::new(bin)
        .args(["parse", "--summary", "json"])
        .args(logs)
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`mailpulse parse --summary json {:?}` failed ({}):\n{}",
            logs,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "`mailpulse parse --summary json` printed no JSON object ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `mailpulse parse --summary json` against the line counts and the sinks.
fn check_summary(
    checks: &mut Checks,
    summary: &Value,
    counts: &MaillogCounts,
    sent: &Sent,
    sinks: &[&SmtpSink],
) {
    let keys: BTreeSet<&str> = summary
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    checks.eq("summary keys", keys, SUMMARY_KEYS.into_iter().collect());

    let int = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64);
    let top = |key: &str| int(summary, key);
    let n = |v: usize| Some(v as u64);
    checks.eq("summary lines", top("lines"), n(counts.lines));
    checks.eq("summary unparsed", top("unparsed"), Some(0));
    checks.eq("summary received", top("received"), n(counts.received));
    checks.eq("summary delivered", top("delivered"), n(counts.delivered));
    checks.eq("summary deferred", top("deferred"), n(counts.deferred));
    checks.eq(
        "summary deferred_messages",
        top("deferred_messages"),
        n(counts.deferred_messages),
    );
    checks.eq("summary bounced", top("bounced"), n(counts.bounced));
    checks.eq("summary expired", top("expired"), n(counts.expired));
    checks.eq("summary rejected", top("rejected"), n(sent.noqueue_rejects));
    checks.eq("summary held", top("held"), n(sent.held));
    checks.eq("summary discarded", top("discarded"), Some(0));

    // Per recipient domain: every domain the log has, with the same three counts.
    let domains = summary.get("by_recipient_domain");
    let want_domains: BTreeMap<String, [Option<u64>; 3]> = counts
        .by_recipient_domain
        .iter()
        .map(|(d, c)| (d.clone(), [n(c.delivered), n(c.deferred), n(c.bounced)]))
        .collect();
    let got_domains: BTreeMap<String, [Option<u64>; 3]> = domains
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(d, c)| {
                    (
                        d.clone(),
                        [int(c, "delivered"), int(c, "deferred"), int(c, "bounced")],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    checks.eq(
        "summary by_recipient_domain [delivered, deferred, bounced]",
        got_domains,
        want_domains,
    );
    let ok_delivered = domains
        .and_then(|d| d.get("ok.test"))
        .and_then(|c| int(c, "delivered"));
    checks.eq(
        "summary ok.test delivered = sent",
        ok_delivered,
        n(sent.ok_rcpts),
    );
    let rejected = domains
        .and_then(|d| d.get("reject.test"))
        .and_then(|c| int(c, "bounced"));
    checks.eq(
        "summary reject.test bounced = sent",
        rejected,
        n(sent.rejected_rcpts),
    );

    // Per relay: each sink's relay exactly, with delay percentiles over its delivered recipients.
    let relays = summary.get("by_relay");
    for sink in sinks {
        let key = sink.relay();
        let got = relays.and_then(|r| r.get(&key));
        let want = counts.by_relay.get(&key).cloned().unwrap_or_default();
        let label = format!("summary by_relay[{key}] ({:?} sink)", sink.mode());
        checks.eq(
            &format!("{label} [delivered, deferred, bounced]"),
            got.map(|g| [int(g, "delivered"), int(g, "deferred"), int(g, "bounced")]),
            Some([n(want.delivered), n(want.deferred), n(want.bounced)]),
        );
        let float = |key: &str| got.and_then(|g| g.get(key)).and_then(Value::as_f64);
        checks.eq(
            &format!("{label} delay_p50_secs"),
            float("delay_p50_secs"),
            percentile(&want.sent_delays_secs, 0.50),
        );
        checks.eq(
            &format!("{label} delay_p95_secs"),
            float("delay_p95_secs"),
            percentile(&want.sent_delays_secs, 0.95),
        );
    }
    let accepted: usize = sinks
        .iter()
        .filter(|s| s.mode() == SinkMode::Accept)
        .map(|s| s.stats().recipients)
        .sum();
    checks.eq(
        "summary delivered = recipients the sinks accepted",
        top("delivered"),
        n(accepted),
    );
    // Lines with `relay=none` (refused connections, suspended destinations) still belong to one
    // relay bucket each, whatever it is called: the buckets add up to the totals.
    let relay_sum = |field: &str| -> Option<u64> {
        relays
            .and_then(Value::as_object)
            .map(|o| o.values().filter_map(|c| int(c, field)).sum())
    };
    checks.eq(
        "summary by_relay delivered sum",
        relay_sum("delivered"),
        n(counts.delivered),
    );
    checks.eq(
        "summary by_relay deferred sum",
        relay_sum("deferred"),
        n(counts.deferred),
    );
    checks.eq(
        "summary by_relay bounced sum",
        relay_sum("bounced"),
        n(counts.bounced),
    );

    checks.eq(
        "summary by_sasl_user (no SMTP AUTH in this test)",
        summary.get("by_sasl_user").cloned(),
        Some(Value::Object(Default::default())),
    );
    let reasons = summary.get("reject_reasons").and_then(Value::as_object);
    checks.eq(
        "summary reject_reasons add up to rejected",
        reasons.map(|o| o.values().filter_map(Value::as_u64).sum::<u64>()),
        n(sent.noqueue_rejects),
    );
    checks.eq(
        "summary reject_reasons: the access-map reason",
        reasons.and_then(|o| {
            o.iter()
                .find(|(k, _)| k.contains("blocked by test policy"))
                .and_then(|(_, v)| v.as_u64())
        }),
        n(sent.noqueue_rejects),
    );

    let sent_delays = counts.sent_delays_secs();
    let delay = |key: &str| {
        summary
            .get("delay_secs")
            .and_then(|d| d.get(key))
            .and_then(Value::as_f64)
    };
    for (key, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)] {
        checks.eq(
            &format!("summary delay_secs.{key} (nearest rank over status=sent delay=)"),
            delay(key),
            percentile(&sent_delays, q),
        );
    }
}

/// Collects every mismatch so one run reports all of them.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    passed: usize,
}

impl Checks {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got == want {
            self.passed += 1;
        } else {
            self.failures
                .push(format!("{what}: expected {want:?}, got {got:?}"));
        }
    }

    fn ge<T: PartialOrd + std::fmt::Debug>(&mut self, what: &str, got: T, at_least: T) {
        if got >= at_least {
            self.passed += 1;
        } else {
            self.failures.push(format!(
                "{what}: expected at least {at_least:?}, got {got:?}"
            ));
        }
    }

    fn finish(self, log: &str) {
        eprintln!(
            "{} checks passed, {} failed",
            self.passed,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n  {}\n\nlast log lines:\n{}",
            self.failures.len(),
            self.passed + self.failures.len(),
            self.failures.join("\n  "),
            tail(log, 25)
        );
    }
}

fn require_environment() {
    assert!(
        postfix::available(),
        "this test needs root and the Debian postfix package: run scripts/install-deps as root"
    );
    assert!(
        mailpulse_tests::have_command("pflogsumm"),
        "this test needs the Debian pflogsumm package: run scripts/install-deps as root"
    );
}

/// Keeps the golden copy for parser tests: written when missing, or when
/// `MAILPULSE_UPDATE_FIXTURES=1` asks for a fresh one (a run's log differs in times and ids).
fn save_fixture(log: &str) {
    let path = fixtures_dir().join("postfix-live/maillog-3.7.log");
    let update = std::env::var_os("MAILPULSE_UPDATE_FIXTURES").is_some_and(|v| v == "1");
    if path.exists() && !update {
        return;
    }
    std::fs::create_dir_all(path.parent().expect("fixture path has a parent"))
        .and_then(|()| std::fs::write(&path, log))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
