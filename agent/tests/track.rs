//! Message lifecycle tracker: real-looking log sequences in, message events out.

use mailpulse_agent::parse::{LogFormat, Timestamp};
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::track::{EventKind, MessageEvent, TrackerConfig};

/// 2024-12-24, so that year-less October lines resolve to 2024.
const REFERENCE: Timestamp = Timestamp {
    unix_secs: 1_735_000_000,
    nanos: 0,
};

fn run(log: &str) -> (Vec<MessageEvent>, LineProcessor) {
    run_with(log, TrackerConfig::default())
}

fn run_with(log: &str, cfg: TrackerConfig) -> (Vec<MessageEvent>, LineProcessor) {
    let mut p = LineProcessor::with_tracker(LogFormat::Auto, REFERENCE, cfg);
    let mut out = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        p.process(line.trim_start(), &mut out);
    }
    assert_eq!(p.stats().unparsed, 0, "every test line must parse");
    (out, p)
}

fn kinds(events: &[MessageEvent]) -> Vec<(&str, &str, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.kind.as_str(), &*e.queue_id, e.recipient.as_deref()))
        .collect()
}

const LIFECYCLE: &str = "
    Oct 26 18:13:49 mx postfix/smtpd[100]: connect from a.example[192.0.2.1]
    Oct 26 18:13:49 mx postfix/smtpd[100]: Anonymous TLS connection established from a.example[192.0.2.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
    Oct 26 18:13:50 mx postfix/smtpd[100]: 7EE668039: client=a.example[192.0.2.1], sasl_method=PLAIN, sasl_username=alice
    Oct 26 18:13:50 mx postfix/cleanup[101]: 7EE668039: message-id=<m1@example.org>
    Oct 26 18:13:50 mx postfix/qmgr[102]: 7EE668039: from=<alice@example.org>, size=1234, nrcpt=2 (queue active)
    Oct 26 18:13:50 mx postfix/smtpd[100]: disconnect from a.example[192.0.2.1] ehlo=1 auth=1 mail=1 rcpt=2 data=1 quit=1 commands=7
    Oct 26 18:13:51 mx postfix/smtp[103]: Trusted TLS connection established to gmail-smtp-in.l.google.com[142.250.1.26]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
    Oct 26 18:13:51 mx postfix/smtp[103]: 7EE668039: to=<bob@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.26]:25, delay=1.2, delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK 1729966431 x1-20020a.123 - gsmtp)
    Oct 26 18:13:51 mx postfix/smtp[104]: 7EE668039: to=<carl@yahoo.com>, relay=mta5.am0.yahoodns.net[67.195.204.1]:25, delay=1.3, delays=0.1/0.01/0.5/0.7, dsn=4.7.0, status=deferred (host mta5.am0.yahoodns.net[67.195.204.1] said: 421 4.7.0 [TSS04] Messages from 192.0.2.9 temporarily deferred due to unexpected volume or user complaints (in reply to MAIL FROM command))
    Oct 26 18:23:51 mx postfix/qmgr[102]: 7EE668039: from=<alice@example.org>, size=1234, nrcpt=2 (queue active)
    Oct 26 18:23:52 mx postfix/smtp[104]: 7EE668039: to=<carl@yahoo.com>, relay=mta5.am0.yahoodns.net[67.195.204.1]:25, delay=602, delays=600/0.01/0.5/1.5, dsn=4.7.0, status=deferred (host mta5.am0.yahoodns.net[67.195.204.1] said: 421 4.7.0 [TSS04] try later (in reply to MAIL FROM command))
    Oct 26 18:43:52 mx postfix/qmgr[102]: 7EE668039: from=<alice@example.org>, size=1234, nrcpt=2 (queue active)
    Oct 26 18:43:53 mx postfix/smtp[104]: 7EE668039: to=<carl@yahoo.com>, relay=mta5.am0.yahoodns.net[67.195.204.1]:25, delay=1803, delays=1800/0.01/0.5/2, dsn=2.0.0, status=sent (250 ok dirdel)
    Oct 26 18:43:53 mx postfix/qmgr[102]: 7EE668039: removed
";

#[test]
fn lifecycle_received_once_across_retries() {
    let (events, _) = run(LIFECYCLE);
    assert_eq!(
        kinds(&events),
        vec![
            ("received", "7EE668039", None),
            ("delivered", "7EE668039", Some("bob@gmail.com")),
            ("deferred", "7EE668039", Some("carl@yahoo.com")),
            ("deferred", "7EE668039", Some("carl@yahoo.com")),
            ("delivered", "7EE668039", Some("carl@yahoo.com")),
        ]
    );
    let deferrals: Vec<bool> = events
        .iter()
        .filter(|e| e.kind == EventKind::Deferred)
        .map(|e| e.first_deferral)
        .collect();
    assert_eq!(
        deferrals,
        vec![true, false],
        "only the first deferral is first"
    );
}

#[test]
fn events_carry_message_context() {
    let (events, p) = run(LIFECYCLE);
    let received = &events[0];
    assert_eq!(received.sender.as_deref(), Some("alice@example.org"));
    assert_eq!(received.size, Some(1234));
    assert_eq!(received.nrcpt, Some(2));
    assert_eq!(received.sasl_user.as_deref(), Some("alice"));
    assert_eq!(received.message_id.as_deref(), Some("m1@example.org"));
    assert_eq!(received.client.as_ref().map(|c| &*c.ip), Some("192.0.2.1"));
    assert_eq!(
        received.tls.as_ref().map(|t| &*t.protocol),
        Some("TLSv1.3"),
        "inbound TLS attached to the message"
    );
    assert_eq!(received.at.to_rfc3339(), "2024-10-26T18:13:50.000000Z");

    let delivered = &events[1];
    assert_eq!(delivered.sender.as_deref(), Some("alice@example.org"));
    let relay = delivered.relay.as_ref().expect("relay");
    assert_eq!(
        relay.to_string(),
        "gmail-smtp-in.l.google.com[142.250.1.26]:25"
    );
    assert_eq!(delivered.dsn.as_deref(), Some("2.0.0"));
    assert_eq!(delivered.delay_secs, Some(1.2));
    let delays = delivered.delays.expect("delays");
    assert_eq!(
        (
            delays.before_qmgr_secs,
            delays.in_qmgr_secs,
            delays.conn_setup_secs,
            delays.transmission_secs
        ),
        (0.1, 0.01, 0.5, 0.6)
    );
    assert_eq!(
        delivered.tls.as_ref().map(|t| &*t.trust),
        Some("Trusted"),
        "outbound TLS of the same smtp process and relay"
    );
    let deferred = &events[2];
    assert!(deferred.tls.is_none(), "smtp[104] logged no TLS session");
    assert!(
        deferred
            .status_text
            .as_deref()
            .is_some_and(|t| t.contains("[TSS04]"))
    );
    assert_eq!(
        p.tracker().stats().live_messages,
        0,
        "removed ends the entry"
    );
}

#[test]
fn queue_id_seen_mid_life_still_yields_recipient_events() {
    let (events, _) = run("
        Oct 26 18:43:53 mx postfix/smtp[104]: 4KJd2L6vmtz9sQ6: to=<carl@yahoo.com>, orig_to=<c@example.org>, relay=mta5.am0.yahoodns.net[67.195.204.1]:25, delay=1803, delays=1800/0.01/0.5/2, dsn=2.0.0, status=sent (250 ok dirdel)
        Oct 26 18:43:54 mx postfix/smtp[104]: 4KJd2L6vmtz9sQ6: to=<dan@yahoo.com>, relay=mta5.am0.yahoodns.net[67.195.204.1]:25, delay=1804, delays=1800/0.01/0.5/3, dsn=5.1.1, status=bounced (host mta5.am0.yahoodns.net[67.195.204.1] said: 554 5.1.1 <dan@yahoo.com>: delivery error: dd This user doesn't have a yahoo.com account (in reply to end of DATA command))
        Oct 26 18:43:54 mx postfix/qmgr[102]: 4KJd2L6vmtz9sQ6: removed
    ");
    assert_eq!(
        kinds(&events),
        vec![
            ("delivered", "4KJd2L6vmtz9sQ6", Some("carl@yahoo.com")),
            ("bounced", "4KJd2L6vmtz9sQ6", Some("dan@yahoo.com")),
        ]
    );
    assert_eq!(events[0].orig_recipient.as_deref(), Some("c@example.org"));
    assert_eq!(events[0].sender, None, "the from= line was never seen");
}

#[test]
fn instances_and_hosts_are_separate_queues() {
    let (events, _) = run("
        Oct 26 18:00:00 mx1 postfix/qmgr[1]: ABCDE12345: from=<a@example.org>, size=10, nrcpt=1 (queue active)
        Oct 26 18:00:00 mx1 postfix-out/qmgr[2]: ABCDE12345: from=<b@example.org>, size=20, nrcpt=1 (queue active)
        Oct 26 18:00:00 mx2 postfix/qmgr[3]: ABCDE12345: from=<c@example.org>, size=30, nrcpt=1 (queue active)
        Oct 26 18:00:01 mx1 postfix-out/smtp[4]: ABCDE12345: to=<x@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, status=sent (250 ok)
    ");
    let received: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Received)
        .map(|e| (&*e.host, &*e.instance, e.size))
        .collect();
    assert_eq!(
        received,
        vec![
            ("mx1", "postfix", Some(10)),
            ("mx1", "postfix-out", Some(20)),
            ("mx2", "postfix", Some(30)),
        ]
    );
    let delivered = events.last().expect("delivered");
    assert_eq!(
        delivered.sender.as_deref(),
        Some("b@example.org"),
        "joined within postfix-out"
    );
}

#[test]
fn rejects_holds_discards_and_releases() {
    let (events, _) = run("
        Oct 26 18:00:00 mx postfix/smtpd[7]: connect from b.example[192.0.2.2]
        Oct 26 18:00:01 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from b.example[192.0.2.2]: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<s@b.example> to=<nobody@example.org> proto=ESMTP helo=<b.example>
        Oct 26 18:00:02 mx postfix/smtpd[7]: NOQUEUE: hold: RCPT from b.example[192.0.2.2]: <held@example.org>: Recipient address triggers HOLD action; from=<s@b.example> to=<held@example.org> proto=ESMTP helo=<b.example>
        Oct 26 18:00:02 mx postfix/smtpd[7]: 3A1B2C3D4E: client=b.example[192.0.2.2]
        Oct 26 18:00:03 mx postfix/smtpd[7]: 3A1B2C3D4E: reject: RCPT from b.example[192.0.2.2]: 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown; from=<s@b.example> to=<gone@example.org> proto=ESMTP helo=<b.example>
        Oct 26 18:00:04 mx postfix/cleanup[8]: 3A1B2C3D4E: message-id=<h@b.example>
        Oct 26 18:00:05 mx postfix/postsuper[9]: 3A1B2C3D4E: released from hold
        Oct 26 18:00:06 mx postfix/cleanup[8]: 5F6E7D8C9B: discard: header Subject: cheap pills from b.example[192.0.2.2]; from=<s@b.example> to=<x@example.org> proto=ESMTP helo=<b.example>: spam
        Oct 26 18:00:07 mx postfix/cleanup[8]: 6A6E7D8C9B: milter-reject: END-OF-MESSAGE from b.example[192.0.2.2]: 5.7.1 Blocked by SpamAssassin; from=<s@b.example> to=<x@example.org> proto=ESMTP helo=<b.example>
        Oct 26 18:00:08 mx postfix/postscreen[10]: NOQUEUE: reject: RCPT from [198.51.100.7]:4711: 550 5.7.1 Service unavailable; client [198.51.100.7] blocked using zen.spamhaus.org; from=<a@spam.example>, to=<u@example.org>, proto=ESMTP, helo=<spam.example>
    ");
    assert_eq!(
        kinds(&events),
        vec![
            ("rejected", "NOQUEUE", Some("nobody@example.org")),
            ("held", "3A1B2C3D4E", None),
            ("rejected", "3A1B2C3D4E", Some("gone@example.org")),
            ("released", "3A1B2C3D4E", None),
            ("discarded", "5F6E7D8C9B", Some("x@example.org")),
            ("rejected", "6A6E7D8C9B", Some("x@example.org")),
            ("rejected", "NOQUEUE", Some("u@example.org")),
        ]
    );
    assert_eq!(events[0].dsn.as_deref(), Some("5.1.1"));
    assert_eq!(events[6].service.as_ref(), "postscreen");
    assert_eq!(
        events[6].client.as_ref().map(|c| &*c.ip),
        Some("198.51.100.7")
    );
}

#[test]
fn expiry_is_one_event_per_message() {
    let (events, _) = run("
        Oct 26 18:00:00 mx postfix/qmgr[1]: 585BC3F: from=<s@example.org>, size=10, nrcpt=1 (queue active)
        Oct 26 18:00:01 mx postfix/smtp[2]: 585BC3F: to=<u@down.example>, relay=none, delay=1, delays=0.1/0/0.9/0, dsn=4.4.1, status=deferred (connect to mx.down.example[203.0.113.5]:25: Connection refused)
        Oct 31 18:00:02 mx postfix/qmgr[1]: 585BC3F: from=<s@example.org>, status=expired, returned to sender
        Oct 31 18:00:02 mx postfix/bounce[3]: 585BC3F: sender non-delivery notification: 6B7C8D9E0F
        Oct 31 18:00:02 mx postfix/qmgr[1]: 585BC3F: removed
    ");
    assert_eq!(
        kinds(&events),
        vec![
            ("received", "585BC3F", None),
            ("deferred", "585BC3F", Some("u@down.example")),
            ("expired", "585BC3F", None),
        ]
    );
    assert_eq!(
        events[1].relay.as_ref().map(|r| r.to_string()),
        Some("none".into())
    );
}

#[test]
fn memory_is_bounded_by_count_and_idle_time() {
    let mut log = String::new();
    for i in 0..5_000u32 {
        log.push_str(&format!(
            "Oct 26 18:{:02}:{:02} mx postfix/qmgr[1]: {:X}: from=<s@example.org>, size=10, nrcpt=1 (queue active)\n",
            (i / 60) % 60,
            i % 60,
            0x100000 + i
        ));
    }
    let cfg = TrackerConfig {
        max_messages: 1_000,
        ..TrackerConfig::default()
    };
    let (events, p) = run_with(&log, cfg);
    assert_eq!(events.len(), 5_000, "every new queue id is received once");
    let stats = p.tracker().stats();
    assert!(
        stats.live_messages <= 1_000,
        "live {} must stay within the bound",
        stats.live_messages
    );
    assert!(
        stats.evicted_overflow >= 4_000,
        "evicted {}",
        stats.evicted_overflow
    );
}

#[test]
fn idle_queue_ids_are_evicted_by_log_time() {
    let mut log = String::new();
    for i in 0..10u32 {
        log.push_str(&format!(
            "Oct 01 10:00:{i:02} mx postfix/qmgr[1]: {:X}: from=<s@example.org>, size=10, nrcpt=1 (queue active)\n",
            0xA00000 + i
        ));
    }
    // Ten days later one busy message keeps the tracker working past its sweep interval.
    for _ in 0..70_000u32 {
        log.push_str(
            "Oct 11 10:00:00 mx postfix/qmgr[1]: B00000: from=<s@example.org>, size=10, nrcpt=1 (queue active)\n",
        );
    }
    let (events, p) = run(&log);
    assert_eq!(events.len(), 11);
    let stats = p.tracker().stats();
    assert_eq!(
        stats.evicted_idle, 10,
        "messages idle for 10 days are dropped"
    );
    assert_eq!(stats.live_messages, 1);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Lines of every kind the tracker acts on, with a queue id and pid slot to fill.
    const TEMPLATES: &[&str] = &[
        "Oct 26 18:00:00 mx postfix/smtpd[{P}]: connect from a.example[192.0.2.1]",
        "Oct 26 18:00:00 mx postfix/smtpd[{P}]: Anonymous TLS connection established from a.example[192.0.2.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
        "Oct 26 18:00:00 mx postfix/smtpd[{P}]: {Q}: client=a.example[192.0.2.1], sasl_method=PLAIN, sasl_username=u{P}",
        "Oct 26 18:00:00 mx postfix/smtpd[{P}]: NOQUEUE: hold: RCPT from a.example[192.0.2.1]: <h@example.org>: Recipient address triggers HOLD action; from=<s@a.example> to=<h@example.org> proto=ESMTP helo=<a>",
        "Oct 26 18:00:00 mx postfix/smtpd[{P}]: {Q}: reject: RCPT from a.example[192.0.2.1]: 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown; from=<s@a.example> to=<x@example.org> proto=ESMTP helo=<a>",
        "Oct 26 18:00:00 mx postfix/smtpd[{P}]: disconnect from a.example[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        "Oct 26 18:00:00 mx postfix/cleanup[{P}]: {Q}: message-id=<{Q}@a.example>",
        "Oct 26 18:00:00 mx postfix/cleanup[{P}]: {Q}: hold: header Subject: x from a.example[192.0.2.1]; from=<s@a.example> to=<x@example.org> proto=ESMTP helo=<a>",
        "Oct 26 18:00:00 mx postfix/cleanup[{P}]: {Q}: discard: body spam from a.example[192.0.2.1]; from=<s@a.example> to=<x@example.org> proto=ESMTP helo=<a>: x",
        "Oct 26 18:00:00 mx postfix/qmgr[1]: {Q}: from=<s@a.example>, size=100, nrcpt=2 (queue active)",
        "Oct 26 18:00:00 mx postfix/qmgr[1]: {Q}: removed",
        "Oct 26 18:00:00 mx postfix/qmgr[1]: {Q}: from=<s@a.example>, status=expired, returned to sender",
        "Oct 26 18:00:00 mx postfix/smtp[{P}]: Trusted TLS connection established to mx.example.net[198.51.100.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
        "Oct 26 18:00:00 mx postfix/smtp[{P}]: {Q}: to=<r@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, status=sent (250 ok)",
        "Oct 26 18:00:00 mx postfix/smtp[{P}]: {Q}: to=<r@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=4.7.1, status=deferred (451 try later)",
        "Oct 26 18:00:00 mx postfix/smtp[{P}]: {Q}: to=<r@example.net>, relay=none, delay=1, delays=0.1/0/0.9/0, dsn=5.1.2, status=bounced (Host or domain name not found)",
        "Oct 26 18:00:00 mx postfix/postsuper[{P}]: {Q}: placed on hold",
        "Oct 26 18:00:00 mx postfix/postsuper[{P}]: {Q}: released from hold",
        "Oct 26 18:00:00 mx postfix/postsuper[{P}]: {Q}: removed",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any interleaving of lifecycle lines: no panic, every line parses, the bound holds,
        /// and a queue id is received at most once per life (between removals).
        #[test]
        fn any_interleaving_is_handled(
            steps in proptest::collection::vec((0..TEMPLATES.len(), 0u32..6, 0u32..4), 1..300),
            max_messages in 1usize..8,
        ) {
            let cfg = TrackerConfig { max_messages, ..TrackerConfig::default() };
            let mut p = LineProcessor::with_tracker(LogFormat::Bsd, REFERENCE, cfg);
            let mut out = Vec::new();
            for (t, q, pid) in steps {
                let line = TEMPLATES[t]
                    .replace("{Q}", &format!("ABCDE{q:X}"))
                    .replace("{P}", &(100 + pid).to_string());
                p.process(&line, &mut out);
                prop_assert!(p.tracker().stats().live_messages <= max_messages);
            }
            prop_assert_eq!(p.stats().unparsed, 0);
        }
    }
}
