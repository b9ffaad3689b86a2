//! SMTP traffic signals: log lines → signals → windowed samples, counted independently.

use std::collections::BTreeMap;

use mailpulse_agent::aggregate::{Aggregator, AggregatorConfig};
use mailpulse_agent::parse::{LogFormat, Timestamp};
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::traffic::{TrafficConfig, client_net};
use mailpulse_proto::v1::{Sample, sample};
use proptest::prelude::*;

/// Runs `lines` through the processor and an aggregator; returns the samples.
fn samples(lines: &[String], traffic: &TrafficConfig, cfg: AggregatorConfig) -> Vec<Sample> {
    let reference = Timestamp {
        unix_secs: 1_729_970_000, // 2024-10-26
        nanos: 0,
    };
    let mut p = LineProcessor::new(LogFormat::Bsd, reference);
    p.enable_traffic(traffic);
    let mut agg = Aggregator::new(cfg);
    let (mut events, mut signals) = (Vec::new(), Vec::new());
    for line in lines {
        p.process_with_signals(line, &mut events, &mut signals);
        for s in signals.drain(..) {
            agg.observe_signal(&s);
        }
        for e in events.drain(..) {
            agg.observe(&e);
        }
    }
    agg.cut()
}

fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

fn counter(s: &Sample) -> f64 {
    match s.value {
        Some(sample::Value::CounterDelta(v)) => v,
        _ => panic!("{} is not a counter", s.metric),
    }
}

/// Sum of `metric` over samples whose labels include all of `with`.
fn sum(samples: &[Sample], metric: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| with.iter().all(|(n, v)| label(s, n) == Some(*v)))
        .map(counter)
        .sum()
}

#[test]
fn postscreen_fixture_signals() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/postscreen/001.log"
    ))
    .unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let s = samples(
        &lines,
        &TrafficConfig::default(),
        AggregatorConfig::default(),
    );
    assert_eq!(sum(&s, "postscreen_connections", &[]), 2.0);
    assert_eq!(
        sum(
            &s,
            "postscreen_connections",
            &[("client_net", "2001:db8:3::/48")]
        ),
        1.0
    );
    for (event, n) in [
        ("pregreet", 1.0),
        ("dnsbl", 1.0),
        ("hangup", 1.0),
        ("pipelining", 1.0),
        ("violation", 3.0),
        ("reject", 2.0),
        ("pass_new", 1.0),
        ("pass_old", 1.0),
        ("denylisted", 1.0),
        ("allowlisted", 1.0),
    ] {
        assert_eq!(
            sum(&s, "postscreen_events", &[("event", event)]),
            n,
            "{event}"
        );
    }
    assert_eq!(
        sum(
            &s,
            "postscreen_events",
            &[("event", "pregreet"), ("client_net", "203.0.113.0/24")]
        ),
        1.0
    );
}

#[test]
fn smtpd_fixture_signals() {
    let lines: Vec<String> = [
        "Oct 26 18:16:40 mx1 postfix/smtpd[21602]: connect from unknown[203.0.113.77]",
        "Oct 26 18:16:40 mx1 postfix/smtpd[21602]: timeout after DATA (18432 bytes) from unknown[203.0.113.77]",
        "Oct 26 18:16:41 mx1 postfix/smtpd[21602]: too many errors after AUTH from unknown[203.0.113.77]",
        "Oct 26 18:16:41 mx1 postfix/smtpd[21602]: disconnect from unknown[203.0.113.77] ehlo=1 auth=0/3 commands=1/4",
        "Oct 26 18:17:10 mx1 postfix/smtpd[21650]: warning: unknown[203.0.113.78]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
        "Oct 26 18:17:11 mx1 postfix/smtpd[21650]: warning: unknown[203.0.113.79]: SASL PLAIN authentication failed: authentication failure, sasl_username=Admin@example.org",
        "Oct 26 18:17:12 mx1 postfix/smtpd[21650]: lost connection after AUTH from unknown[2001:db8:77::1]",
        "Oct 26 18:17:13 mx1 postfix/smtpd[21650]: NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 5.7.1 <x@example.org>: Relay access denied; from=<a@b.example> to=<x@example.org> proto=ESMTP helo=<b>",
        "Oct 26 18:17:14 mx1 postfix/smtpd[21650]: SSL_accept error from unknown[192.0.2.14]:61010: lost connection",
        "Oct 26 18:17:15 mx1 postfix/smtp[2000]: SSL_connect error to mx.example.net[198.51.100.1]:25: -1",
        "Oct 26 18:23:02 mx1 postfix/anvil[1300]: statistics: max connection rate 12/60s for (smtp:203.0.113.45) at Oct 26 18:20:02",
        "Oct 26 18:23:02 mx1 postfix/anvil[1300]: statistics: max connection count 3 for (smtp:2001:db8:3:25::1b) at Oct 26 18:20:05",
        "Oct 26 18:23:02 mx1 postfix/anvil[1300]: statistics: max auth rate 30/120s for (submission:198.51.100.200) at Oct 26 18:13:50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let s = samples(
        &lines,
        &TrafficConfig::default(),
        AggregatorConfig::default(),
    );
    assert_eq!(
        sum(&s, "smtpd_connections", &[("client_net", "203.0.113.0/24")]),
        1.0
    );
    assert_eq!(sum(&s, "smtpd_disconnects", &[]), 1.0);
    for kind in ["timeout", "too_many_errors"] {
        assert_eq!(sum(&s, "smtpd_session_errors", &[("kind", kind)]), 1.0);
    }
    assert_eq!(
        sum(
            &s,
            "smtpd_session_errors",
            &[
                ("kind", "lost_connection"),
                ("client_net", "2001:db8:77::/48")
            ]
        ),
        1.0
    );
    assert_eq!(sum(&s, "sasl_auth_failures", &[]), 2.0);
    assert_eq!(
        sum(
            &s,
            "sasl_auth_failures_by_user",
            &[("user", "admin@example.org")]
        ),
        1.0
    );
    assert_eq!(
        sum(&s, "sasl_auth_failures_by_user", &[("user", "unknown")]),
        1.0
    );
    assert_eq!(
        sum(
            &s,
            "smtpd_rejects",
            &[("stage", "rcpt"), ("client_net", "198.51.100.0/24")]
        ),
        1.0
    );
    assert_eq!(
        sum(&s, "tls_handshake_failures", &[("direction", "inbound")]),
        1.0
    );
    assert_eq!(
        sum(&s, "tls_handshake_failures", &[("direction", "outbound")]),
        1.0
    );
    let gauge = |stat: &str| {
        s.iter()
            .find(|x| x.metric == "anvil_max" && label(x, "stat") == Some(stat))
            .and_then(|x| match x.value {
                Some(sample::Value::Gauge(v)) => Some(v),
                _ => None,
            })
    };
    assert_eq!(gauge("connection_rate"), Some(12.0));
    assert_eq!(gauge("connection_count"), Some(3.0));
    assert_eq!(gauge("auth_rate"), Some(15.0), "per minute");

    // Hashed usernames: no plain name in any label.
    let hashed = TrafficConfig {
        hash_usernames: true,
        username_hash_key: Some("k".into()),
        ..TrafficConfig::default()
    };
    let s = samples(&lines, &hashed, AggregatorConfig::default());
    let users: Vec<&str> = s
        .iter()
        .filter(|x| x.metric == "sasl_auth_failures_by_user")
        .filter_map(|x| label(x, "user"))
        .collect();
    assert_eq!(users.len(), 2);
    assert!(
        users.contains(&"unknown"),
        "no username logged stays unknown: {users:?}"
    );
    assert!(
        users.iter().any(|u| u.starts_with("u_") && u.len() == 18),
        "{users:?}"
    );
    assert!(!users.iter().any(|u| u.contains("admin")), "{users:?}");
}

/// What a generated line should count, for the property test.
#[derive(Debug, Clone)]
enum Line {
    Connect(u8, u8),
    SaslFail(u8, u8, Option<u8>),
    Reject(u8, u8),
    Pregreet(u8, u8),
}

fn ip(net: u8, hostpart: u8) -> String {
    if net % 4 == 3 {
        format!("2001:db8:{net:x}:{hostpart:x}::1")
    } else {
        format!("10.{net}.{}.{hostpart}", net / 2)
    }
}

fn render(line: &Line, second: u32) -> String {
    let ts = format!("Oct 26 18:{:02}:{:02} mx1", second / 60 % 60, second % 60);
    match line {
        Line::Connect(n, h) => {
            format!(
                "{ts} postfix/smtpd[1]: connect from unknown[{}]",
                ip(*n, *h)
            )
        }
        Line::SaslFail(n, h, user) => {
            let tail = user.map_or(String::new(), |u| format!(", sasl_username=user{u}"));
            format!(
                "{ts} postfix/smtpd[1]: warning: unknown[{}]: SASL LOGIN authentication failed: authentication failure{tail}",
                ip(*n, *h)
            )
        }
        Line::Reject(n, h) => format!(
            "{ts} postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[{}]: 550 5.1.1 <u@example.org>: Recipient address rejected: User unknown; from=<a@b.example> to=<u@example.org> proto=ESMTP helo=<x>",
            ip(*n, *h)
        ),
        Line::Pregreet(n, h) => format!(
            "{ts} postfix/postscreen[2]: PREGREET 11 after 0.07 from [{}]:50312: EHLO User\\r\\n",
            ip(*n, *h)
        ),
    }
}

fn arb_line() -> impl Strategy<Value = Line> {
    let net = 0u8..12;
    let host = any::<u8>();
    prop_oneof![
        (net.clone(), host).prop_map(|(n, h)| Line::Connect(n, h)),
        (net.clone(), host, proptest::option::of(0u8..9))
            .prop_map(|(n, h, u)| Line::SaslFail(n, h, u)),
        (net.clone(), host).prop_map(|(n, h)| Line::Reject(n, h)),
        (net, host).prop_map(|(n, h)| Line::Pregreet(n, h)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every signal is counted once under its network, whatever the top-K folding; with room for
    /// every network, each network's count is exact.
    #[test]
    fn counts_per_network_are_exact(lines in proptest::collection::vec(arb_line(), 0..300), k in 1usize..6) {
        let text: Vec<String> = lines.iter().enumerate().map(|(i, l)| render(l, i as u32 * 7)).collect();
        let mut expected: BTreeMap<(&str, String), f64> = BTreeMap::new();
        let mut users: BTreeMap<String, f64> = BTreeMap::new();
        for l in &lines {
            let (metric, n, h) = match l {
                Line::Connect(n, h) => ("smtpd_connections", n, h),
                Line::SaslFail(n, h, u) => {
                    let user = u.map_or("unknown".to_string(), |u| format!("user{u}"));
                    *users.entry(user).or_default() += 1.0;
                    ("sasl_auth_failures", n, h)
                }
                Line::Reject(n, h) => ("smtpd_rejects", n, h),
                Line::Pregreet(n, h) => ("postscreen_events", n, h),
            };
            *expected.entry((metric, client_net(&ip(*n, *h)))).or_default() += 1.0;
        }
        let wide = AggregatorConfig { top_k_client_nets: 1000, top_k_users: 1000, ..AggregatorConfig::default() };
        let s = samples(&text, &TrafficConfig::default(), wide);
        for ((metric, net), n) in &expected {
            prop_assert_eq!(sum(&s, metric, &[("client_net", net)]), *n, "{} {}", metric, net);
        }
        for (user, n) in &users {
            prop_assert_eq!(sum(&s, "sasl_auth_failures_by_user", &[("user", user)]), *n);
        }
        let narrow = AggregatorConfig { top_k_client_nets: k, top_k_users: k, ..AggregatorConfig::default() };
        let s = samples(&text, &TrafficConfig::default(), narrow);
        for metric in ["smtpd_connections", "sasl_auth_failures", "smtpd_rejects", "postscreen_events"] {
            let total: f64 = expected.iter().filter(|((m, _), _)| *m == metric).map(|(_, n)| n).sum();
            prop_assert_eq!(sum(&s, metric, &[]), total, "{}", metric);
        }
        prop_assert_eq!(sum(&s, "sasl_auth_failures_by_user", &[]), users.values().sum::<f64>());
        // Per window, at most k named networks (plus `other`) per metric.
        let mut named: BTreeMap<(i64, &str), std::collections::BTreeSet<&str>> = BTreeMap::new();
        for x in &s {
            if let Some(net) = label(x, "client_net").filter(|n| *n != "other") {
                named.entry((x.window_start_unix_ms, "net")).or_default().insert(net);
            }
        }
        for set in named.values() {
            prop_assert!(set.len() <= k, "{:?}", set);
        }
    }
}

#[test]
fn messages_of_sasl_users_are_counted_per_user_and_outcome() {
    let lines: Vec<String> = [
        "Oct 26 18:20:00 mx1 postfix/submission/smtpd[3001]: connect from client.example.net[192.0.2.10]",
        "Oct 26 18:20:01 mx1 postfix/submission/smtpd[3001]: 3F2A1B4C5D: client=client.example.net[192.0.2.10], sasl_method=PLAIN, sasl_username=J.Martin@example.org",
        "Oct 26 18:20:01 mx1 postfix/cleanup[3002]: 3F2A1B4C5D: message-id=<a1@example.org>",
        "Oct 26 18:20:01 mx1 postfix/qmgr[900]: 3F2A1B4C5D: from=<j.martin@example.org>, size=1200, nrcpt=3 (queue active)",
        "Oct 26 18:20:02 mx1 postfix/smtp[3003]: 3F2A1B4C5D: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.26]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK)",
        "Oct 26 18:20:02 mx1 postfix/smtp[3003]: 3F2A1B4C5D: to=<b@web.de>, relay=mx-ha03.web.de[212.227.15.17]:25, delay=1.3, delays=0.1/0/0.5/0.7, dsn=5.1.1, status=bounced (host mx-ha03.web.de[212.227.15.17] said: 550 5.1.1 user unknown (in reply to RCPT TO command))",
        "Oct 26 18:20:02 mx1 postfix/smtp[3003]: 3F2A1B4C5D: to=<c@orange.fr>, relay=smtp-in.orange.fr[80.12.24.81]:25, delay=1.4, delays=0.1/0/0.5/0.8, dsn=4.7.1, status=deferred (host smtp-in.orange.fr[80.12.24.81] said: 421 4.7.1 try again later (in reply to RCPT TO command))",
        // Not authenticated: not counted per user.
        "Oct 26 18:21:00 mx1 postfix/smtpd[3010]: 3F2A1B4C5E: client=mail.example.com[198.51.100.7]",
        "Oct 26 18:21:00 mx1 postfix/qmgr[900]: 3F2A1B4C5E: from=<x@example.com>, size=900, nrcpt=1 (queue active)",
        "Oct 26 18:21:01 mx1 postfix/local[3011]: 3F2A1B4C5E: to=<u@example.org>, relay=local, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (delivered to mailbox)",
    ]
    .map(String::from)
    .to_vec();
    let s = samples(
        &lines,
        &TrafficConfig::default(),
        AggregatorConfig::default(),
    );
    let user = [("user", "j.martin@example.org")];
    for (event, n) in [
        ("received", 1.0),
        ("delivered", 1.0),
        ("bounced", 1.0),
        ("deferred", 1.0),
    ] {
        assert_eq!(
            sum(&s, "sasl_user_messages", &[user[0], ("event", event)]),
            n,
            "{event}"
        );
    }
    assert_eq!(
        sum(&s, "sasl_user_messages", &[]),
        4.0,
        "only the SASL user's"
    );
    assert_eq!(sum(&s, "messages_received", &[]), 2.0);

    let hashed = TrafficConfig {
        hash_usernames: true,
        username_hash_key: Some("k".into()),
        ..TrafficConfig::default()
    };
    let s = samples(&lines, &hashed, AggregatorConfig::default());
    let users: BTreeMap<&str, f64> =
        s.iter()
            .filter(|x| x.metric == "sasl_user_messages")
            .fold(BTreeMap::new(), |mut m, x| {
                *m.entry(label(x, "user").unwrap_or("")).or_default() += counter(x);
                m
            });
    assert_eq!(users.len(), 1, "{users:?}");
    let (name, n) = users.iter().next().unwrap();
    assert!(name.starts_with("u_") && name.len() == 18, "{name}");
    assert_eq!(*n, 4.0);
}
