use std::collections::{BTreeMap, HashSet};

use super::*;
use mailpulse_agent::parse::{EnvelopeParser, LogFormat, ProgramName};

fn config(seed: u64, messages: u64) -> SynthConfig {
    SynthConfig {
        seed,
        messages,
        // Higher failure rates than the defaults so small runs exercise every path.
        deferral_rate: 0.15,
        bounce_rate: 0.05,
        expire_ratio: 0.2,
        hold_rate: 0.01,
        discard_rate: 0.01,
        ..SynthConfig::default()
    }
}

/// Queue id at the start of a message body (`QID: ...`), if any.
fn queue_id(message: &str) -> Option<&str> {
    let (qid, _) = message.split_once(": ")?;
    let ok = qid.len() >= 8 && qid.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok && qid != "NOQUEUE" && qid != "statistics").then_some(qid)
}

fn is_long(qid: &str) -> bool {
    qid.len() > 11 && qid.contains('z')
}

#[test]
fn same_seed_gives_byte_identical_output() {
    let (a, ta) = generate(config(42, 2_000));
    let (b, tb) = generate(config(42, 2_000));
    assert_eq!(a, b, "same seed must give the same log");
    assert_eq!(ta, tb);
    let (c, _) = generate(config(43, 2_000));
    assert_ne!(a, c, "a different seed must give a different log");
}

#[test]
fn lines_are_in_timestamp_order_and_parse_as_syslog() {
    for style in [
        TimestampStyle::Bsd,
        TimestampStyle::Rfc3339,
        TimestampStyle::Maillog,
    ] {
        let cfg = SynthConfig {
            style,
            ..config(5, 500)
        };
        let reference = mailpulse_agent::parse::Timestamp {
            unix_secs: cfg.start_unix_secs + 30 * 86_400,
            nanos: 0,
        };
        let (text, truth) = generate(cfg);
        assert_eq!(text.lines().count() as u64, truth.lines);
        let mut parser = EnvelopeParser::new(LogFormat::Auto);
        let mut last = None;
        for line in text.lines() {
            let env = parser
                .parse(line)
                .unwrap_or_else(|e| panic!("{style:?}: {e}: {line}"));
            assert_eq!(env.host, "mx1");
            assert!(env.pid.is_some(), "{line}");
            let at = env.time.resolve(reference, 0);
            if let Some(prev) = last {
                assert!(at >= prev, "out of order at {line}");
            }
            last = Some(at);
        }
    }
}

#[test]
fn both_queue_id_styles_are_present_and_unique() {
    let (text, truth) = generate(config(7, 3_000));
    let mut first_seen = HashSet::new();
    let (mut long, mut short) = (0u64, 0u64);
    for line in text.lines() {
        let message = line.split_once("]: ").unwrap().1;
        let Some(qid) = message
            .strip_suffix("(queue active)")
            .and_then(|_| queue_id(message))
        else {
            continue;
        };
        if !first_seen.insert(qid.to_string()) {
            continue;
        }
        if is_long(qid) {
            long += 1;
            // The time part may itself contain `z`; Postfix splits at the last one.
            let (time, inode) = qid.rsplit_once('z').unwrap();
            assert_eq!(time.len(), 10, "{qid}");
            assert!(!inode.is_empty(), "{qid}");
        } else {
            short += 1;
            assert!(
                qid.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "{qid}"
            );
        }
    }
    assert!(long > 500 && short > 1_000, "long {long}, short {short}");
    // Every message that reached qmgr has its own id; held/discarded ones never do.
    assert_eq!(
        first_seen.len() as u64,
        truth.received + truth.notifications - truth.held - truth.discarded
    );
    assert_eq!(
        truth.long_queue_id_messages + truth.short_queue_id_messages,
        truth.received + truth.notifications
    );
}

#[test]
fn truth_matches_a_naive_count_of_the_text() {
    let cfg = config(11, 4_000);
    let messages = cfg.messages;
    let (text, truth) = generate(cfg);
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count() as u64;
    let count_prog = |program: &str, needle: &str| {
        text.lines()
            .filter(|l| l.contains(program) && l.contains(needle))
            .count() as u64
    };

    assert_eq!(truth.received, messages);
    assert_eq!(
        truth.received,
        truth.received_smtpd
            + truth.received_submission
            + truth.received_outbound_instance
            + truth.received_pickup
    );
    assert_eq!(count(": client="), truth.received - truth.received_pickup);
    assert_eq!(count_prog("/pickup[", ": uid="), truth.received_pickup);
    assert_eq!(count(", sasl_method="), truth.received_submission);
    assert_eq!(
        count_prog("postfix-out/smtpd[", ": client="),
        truth.received_outbound_instance
    );
    assert_eq!(count("status=sent"), truth.delivered);
    assert_eq!(count("status=deferred"), truth.deferred);
    assert_eq!(count("status=bounced"), truth.bounced);
    assert_eq!(count("status=expired, returned to sender"), truth.expired);
    assert_eq!(
        count("sender non-delivery notification:"),
        truth.notifications
    );
    assert_eq!(count_prog("/smtpd[", "NOQUEUE: reject:"), truth.rejected);
    assert_eq!(
        count_prog("/postscreen[", "NOQUEUE: reject:"),
        truth.postscreen_rejected
    );
    assert_eq!(count(": hold: header "), truth.held);
    assert_eq!(count(": discard: header "), truth.discarded);
    assert_eq!(count_prog("/qmgr[", ": removed"), truth.removed);
    assert_eq!(count("]: connect from "), truth.smtpd_connections);
    assert_eq!(count("authentication failed"), truth.sasl_auth_failures);
    assert_eq!(count("]: warning: "), truth.warnings);

    // Every message that reached qmgr is removed exactly once.
    assert_eq!(
        truth.removed,
        truth.received + truth.notifications - truth.held - truth.discarded
    );
    // Every status line is counted under its recipient domain.
    let mut by_domain: BTreeMap<String, DomainCounts> = BTreeMap::new();
    let mut deferred_ids = HashSet::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(": to=<") else {
            continue;
        };
        let domain = rest[..rest.find('>').unwrap()].rsplit_once('@').unwrap().1;
        let counts = by_domain.entry(domain.to_string()).or_default();
        if line.contains("status=sent") {
            counts.sent += 1;
        } else if line.contains("status=deferred") {
            counts.deferred += 1;
            let message = line.split_once("]: ").unwrap().1;
            deferred_ids.insert(queue_id(message).unwrap().to_string());
        } else if line.contains("status=bounced") {
            counts.bounced += 1;
        }
    }
    assert_eq!(by_domain, truth.by_recipient_domain);
    assert_eq!(deferred_ids.len() as u64, truth.deferred_messages);

    // The run exercises every path.
    for (name, n) in [
        ("deferred", truth.deferred),
        ("bounced", truth.bounced),
        ("expired", truth.expired),
        ("rejected", truth.rejected),
        ("postscreen_rejected", truth.postscreen_rejected),
        ("held", truth.held),
        ("discarded", truth.discarded),
        ("sasl_auth_failures", truth.sasl_auth_failures),
    ] {
        assert!(n > 0, "expected some {name} in 4000 messages");
    }
}

#[test]
fn realistic_services_and_domains_appear() {
    let (text, truth) = generate(config(3, 3_000));
    let mut programs = HashSet::new();
    let mut parser = EnvelopeParser::new(LogFormat::Auto);
    for line in text.lines() {
        let env = parser.parse(line).unwrap();
        programs.insert(env.program.to_string());
        let p = ProgramName::split(&env.program);
        assert!(matches!(p.instance, "postfix" | "postfix-out"), "{line}");
    }
    for program in [
        "postfix/postscreen",
        "postfix/dnsblog",
        "postfix/smtpd",
        "postfix/submission/smtpd",
        "postfix/cleanup",
        "postfix/qmgr",
        "postfix/smtp",
        "postfix/lmtp",
        "postfix/virtual",
        "postfix/local",
        "postfix/bounce",
        "postfix/pickup",
        "postfix/anvil",
        "postfix/scache",
        "postfix-out/smtpd",
        "postfix-out/qmgr",
        "postfix-out/smtp",
    ] {
        assert!(programs.contains(program), "{program} never logged");
    }
    for needle in [
        "PASS OLD [",
        "PASS NEW [",
        "PREGREET ",
        "DNSBL rank ",
        "HANGUP after ",
        "Anonymous TLS connection established from ",
        "Trusted TLS connection established to ",
        "relay=gmail-smtp-in.l.google.com[",
        "- gsmtp)",
        "olc.protection.outlook.com[",
        "yahoodns.net[",
        "lost connection after ",
        "(queue active)",
        "conn_use=",
        "orig_to=<root>",
        "statistics: max connection rate ",
    ] {
        assert!(text.contains(needle), "no line contains {needle:?}");
    }
    for domain in [
        "gmail.com",
        "outlook.com",
        "yahoo.com",
        "icloud.com",
        "orange.fr",
        "gmx.de",
    ] {
        assert!(
            truth
                .by_recipient_domain
                .get(domain)
                .is_some_and(|c| c.sent > 0),
            "no mail delivered to {domain}"
        );
    }
    assert!(
        truth.by_recipient_domain.len() > 100,
        "long tail of domains: {}",
        truth.by_recipient_domain.len()
    );
}

#[test]
fn deferred_messages_are_retried_with_the_same_queue_id() {
    let (text, _) = generate(config(13, 2_000));
    let mut actives: BTreeMap<&str, u32> = BTreeMap::new();
    for line in text.lines() {
        let message = line.split_once("]: ").unwrap().1;
        if message.ends_with("(queue active)") {
            *actives.entry(queue_id(message).unwrap()).or_default() += 1;
        }
    }
    let retried = actives.values().filter(|&&n| n > 1).count();
    assert!(retried > 10, "only {retried} messages were retried");
}

#[test]
fn zero_messages_gives_an_empty_log() {
    let (text, truth) = generate(config(1, 0));
    assert!(text.is_empty());
    assert_eq!(truth, SynthTruth::default());
}
