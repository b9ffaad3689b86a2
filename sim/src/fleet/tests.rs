use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::synth::format::Ip;
use crate::synth::hooks::{ExtraSession, Forced, Hooks, RemoteAttempt};
use crate::synth::world::World;
use crate::synth::{TimestampStyle, generate};

const HEADER: &str = "seed = 9\nstart = 2024-10-07T00:00:00Z\n";

fn scenario(text: &str) -> Scenario {
    match Scenario::parse(Path::new("test.toml"), text) {
        Ok(s) => s,
        Err(e) => panic!("test scenario should be valid: {e}"),
    }
}

/// A one-host, one-day scenario at `rate` messages a day with one incident (TOML body).
fn one_incident(rate: u32, incident: &str) -> Scenario {
    scenario(&format!(
        "{HEADER}days = 1\n[traffic]\nmessages_per_day = {rate}\n[[hosts]]\nname = \"mx1\"\n[[incidents]]\nhosts = [\"mx1\"]\n{incident}"
    ))
}

fn lines(s: &Scenario) -> Vec<SimLine> {
    s.host_simulation(0)
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// Unix seconds of `2024-10-07T{hh}:00:00Z`.
fn at_hour(hh: i64) -> i64 {
    1_728_259_200 + hh * 3600
}

fn inside(line: &SimLine, from_hour: i64, to_hour: i64) -> bool {
    let secs = line.at_unix_micros / 1_000_000;
    (at_hour(from_hour)..at_hour(to_hour)).contains(&secs)
}

// ---------------------------------------------------------------- scenario file

#[test]
fn defaults_overrides_and_names() {
    let s = scenario(&format!(
        "{HEADER}days = 2\n[traffic]\nmessages_per_day = 700\n[[hosts]]\nname = \"a\"\n[[hosts]]\nname = \"b\"\nip = \"192.0.2.7\"\nlocal_domains = [\"corp.example\"]\ntraffic = {{ noise = 0.0 }}\n"
    ));
    assert_eq!(s.name(), "test", "the name defaults to the file stem");
    assert_eq!(s.host_names(), ["a", "b"]);
    assert_eq!(s.end_unix_secs() - s.start_unix_secs(), 2 * 86_400);
    assert_eq!(s.timestamp_style(), TimestampStyle::Bsd);
    assert_eq!(s.gauge_interval_secs(), 300);
    let (a, b) = (&s.hosts[0], &s.hosts[1]);
    assert_eq!(a.main_ip.to_string(), "198.51.100.10");
    assert_eq!(a.out_ip.to_string(), "198.51.100.11");
    assert_eq!(b.main_ip.to_string(), "192.0.2.7");
    assert_eq!(b.local_domains, ["corp.example"]);
    assert_eq!(
        a.traffic.messages_per_day, 700.0,
        "[traffic] applies to all"
    );
    assert_eq!(b.traffic.messages_per_day, 700.0);
    assert_eq!(b.traffic.noise, 0.0, "per-host override");
    assert_eq!(a.traffic.noise, 0.1, "built-in default");
}

#[test]
fn labels_expand_per_host_and_name_what_is_affected() {
    let s = scenario(&format!(
        "{HEADER}days = 1\n[[hosts]]\nname = \"a\"\n[[hosts]]\nname = \"b\"\n\
         [[incidents]]\nkind = \"relay_down\"\nid = \"orange-down\"\nhosts = [\"b\", \"a\"]\nstart = 2024-10-07T01:00:00Z\nend = 2024-10-07T02:00:00Z\nrelay = \"smtp-in.orange.fr\"\n\
         [[incidents]]\nkind = \"ip_blocklisted\"\nhosts = [\"a\", \"b\"]\nstart = 2024-10-07T03:00:00Z\nend = 2024-10-07T04:00:00Z\n"
    ));
    let labels = s.labels();
    let summary: Vec<(&str, &str)> = labels
        .iter()
        .map(|l| (l.id.as_str(), l.host.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("orange-down", "b"),
            ("orange-down", "a"),
            ("ip_blocklisted-2", "a"),
            ("ip_blocklisted-2", "b")
        ]
    );
    assert_eq!(labels[0].keys.relay.as_deref(), Some("smtp-in.orange.fr"));
    assert_eq!(labels[0].keys.domains, ["orange.fr", "wanadoo.fr"]);
    assert_eq!(labels[2].keys.ip.as_deref(), Some("198.51.100.10"));
    assert_eq!(
        labels[3].keys.ip.as_deref(),
        Some("198.51.100.12"),
        "each host's own address"
    );
    assert_eq!(labels[2].start, "2024-10-07T03:00:00Z");
    assert_eq!(labels[2].end_unix_secs, at_hour(4));
}

// ---------------------------------------------------------------- generator hooks

/// Hooks that never intervene.
#[derive(Debug)]
struct Inert;

impl Hooks for Inert {
    fn messages_per_sec(&mut self, _at: i64) -> Option<f64> {
        None
    }

    fn extra_sessions(&mut self, _: &World, _: i64, _: i64, _: &mut Vec<ExtraSession>) {}

    fn remote_attempt(&mut self, _: &RemoteAttempt<'_>) -> Option<Forced> {
        None
    }
}

fn inert_setup() -> crate::synth::hooks::HostSetup {
    crate::synth::hooks::HostSetup {
        main_ip: Ip::new(198, 51, 100, 25),
        out_ip: Ip::new(198, 51, 100, 26),
        extra_users: Vec::new(),
        hooks: Box::new(Inert),
    }
}

fn busy_config() -> SynthConfig {
    SynthConfig {
        seed: 77,
        messages: 3_000,
        deferral_rate: 0.2,
        bounce_rate: 0.05,
        expire_ratio: 0.2,
        ..SynthConfig::default()
    }
}

#[test]
fn inert_hooks_change_nothing() {
    let (plain, _) = generate(busy_config());
    let mut hooked = SynthLog::with_setup(busy_config(), inert_setup());
    let mut text = String::new();
    while let Some((_, line)) = hooked.next_timed() {
        text.push_str(&line);
        text.push('\n');
    }
    assert!(
        plain == text,
        "a generator with hooks that never intervene must write the same bytes"
    );
}

#[test]
fn queue_accounting_returns_to_zero_when_the_queue_drains() {
    let mut log = SynthLog::with_setup(busy_config(), inert_setup());
    let mut peak = 0;
    while log.next_timed().is_some() {
        for q in log.queue_loads() {
            assert!(
                q.deferred_messages <= q.messages && q.deferred_bytes <= q.bytes,
                "deferred is part of the queue: {q:?}"
            );
            peak = peak.max(q.messages);
        }
    }
    assert!(peak > 10, "the queue was used (peak {peak})");
    assert_eq!(
        log.queue_loads(),
        [Default::default(); 2],
        "every queued message was removed"
    );
}

// ---------------------------------------------------------------- incidents in the log

#[test]
fn dns_failure_defers_only_its_domain_only_in_its_window() {
    let s = one_incident(
        3_000,
        "kind = \"dns_failure\"\nstart = 2024-10-07T09:00:00Z\nend = 2024-10-07T12:00:00Z\ndomain = \"gmail.com\"\n",
    );
    let mut inside_count = 0;
    for line in lines(&s) {
        if line.text.contains("type=MX: Host not found, try again") {
            assert!(
                inside(&line, 9, 12),
                "DNS failures only in the window: {}",
                line.text
            );
            assert!(
                line.text.contains("@gmail.com>, relay=none,")
                    && line.text.contains("dsn=4.4.3, status=deferred"),
                "{}",
                line.text
            );
            inside_count += 1;
        }
    }
    assert!(
        inside_count > 30,
        "gmail.com deliveries fail for three office hours: {inside_count}"
    );
}

#[test]
fn greylisting_defers_first_attempts_that_then_get_through() {
    let s = one_incident(
        3_000,
        "kind = \"greylisting_wave\"\nstart = 2024-10-07T09:00:00Z\nend = 2024-10-07T13:00:00Z\ndomains = [\"gmail.com\", \"orange.fr\"]\n",
    );
    let mut greylisted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut sent: BTreeSet<(String, String)> = BTreeSet::new();
    for line in lines(&s) {
        let Some((qid, rest)) = line
            .text
            .split_once("]: ")
            .and_then(|(_, m)| m.split_once(": to=<"))
        else {
            continue;
        };
        let rcpt = rest.split('>').next().unwrap_or_default().to_string();
        if line.text.contains("dsn=4.7.1, status=deferred") && line.text.contains("Greylist") {
            assert!(inside(&line, 9, 13), "{}", line.text);
            greylisted.insert((qid.to_string(), rcpt));
        } else if line.text.contains("status=sent") {
            sent.insert((qid.to_string(), rcpt));
        }
    }
    assert!(greylisted.len() > 30, "greylisted: {}", greylisted.len());
    let through = greylisted.iter().filter(|k| sent.contains(*k)).count();
    assert!(
        through * 10 >= greylisted.len() * 9,
        "greylisted recipients get through on retry: {through} of {}",
        greylisted.len()
    );
}

#[test]
fn a_blocklisted_address_is_rejected_at_many_domains_for_the_main_instance_only() {
    let s = one_incident(
        3_000,
        "kind = \"ip_blocklisted\"\nstart = 2024-10-07T08:00:00Z\nend = 2024-10-07T16:00:00Z\n",
    );
    let mut domains = BTreeSet::new();
    for line in lines(&s) {
        if line.text.contains("blocked using zen.spamhaus.org; https")
            && line.text.contains("smtp[")
        {
            assert!(inside(&line, 8, 16), "{}", line.text);
            assert!(
                line.text.contains(" postfix/smtp[")
                    && line.text.contains("Client host [198.51.100.10]"),
                "only the main instance's address is listed: {}",
                line.text
            );
            if let Some(d) = line
                .text
                .split_once("@")
                .and_then(|(_, r)| r.split_once('>'))
            {
                domains.insert(d.0.to_string());
            }
        }
    }
    assert!(domains.len() >= 10, "rejects at many domains: {domains:?}");
}

#[test]
fn a_dead_relay_refuses_connections_and_the_mail_waits() {
    let s = one_incident(
        4_000,
        "kind = \"relay_down\"\nstart = 2024-10-07T09:00:00Z\nend = 2024-10-07T11:00:00Z\nrelay = \"smtp-in.orange.fr\"\n",
    );
    let mut refused = 0;
    let mut late_sent = 0;
    for line in lines(&s) {
        if line
            .text
            .contains("connect to smtp-in.orange.fr[193.252.22.84]:25: Connection refused")
        {
            assert!(inside(&line, 9, 11), "{}", line.text);
            assert!(
                line.text.contains("relay=none") && line.text.contains("dsn=4.4.1"),
                "{}",
                line.text
            );
            refused += 1;
        }
        // Mail queued during the outage is delivered after it, with a delay of minutes.
        if inside(&line, 11, 13)
            && line.text.contains("relay=smtp-in.orange.fr")
            && line.text.contains("status=sent")
            && line.text.contains(", delay=")
        {
            let delay = line
                .text
                .split(", delay=")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|d| d.parse::<f64>().ok())
                .unwrap_or(0.0);
            if delay > 600.0 {
                late_sent += 1;
            }
        }
    }
    assert!(refused > 10, "refused attempts: {refused}");
    assert!(
        late_sent > 3,
        "backlog delivered after the outage: {late_sent}"
    );
}

#[test]
fn a_flood_comes_from_its_network_at_its_rate() {
    let s = one_incident(
        1_000,
        "kind = \"connection_flood\"\nstart = 2024-10-07T02:00:00Z\nend = 2024-10-07T04:00:00Z\nclient_net = \"203.0.113.0/24\"\nsessions_per_hour = 600\nauth_failure_share = 0.5\n",
    );
    let mut auth_failures = 0;
    let mut postscreen = 0;
    for line in lines(&s) {
        if !line.text.contains("[203.0.113.") {
            continue;
        }
        assert!(
            inside(&line, 2, 5),
            "flood lines in the window (sessions may last minutes): {}",
            line.text
        );
        if line.text.contains("SASL") && line.text.contains("authentication failed") {
            auth_failures += 1;
        }
        if line.text.contains("postscreen[") && line.text.contains("CONNECT from") {
            postscreen += 1;
        }
    }
    // 1200 sessions, half of them password guesses: Poisson, so within a generous margin.
    assert!(
        (480..=720).contains(&auth_failures),
        "about 600 SASL failures expected, got {auth_failures}"
    );
    assert!(
        (480..=720).contains(&postscreen),
        "about 600 port-25 connections expected, got {postscreen}"
    );
}

#[test]
fn a_compromised_account_writes_to_many_new_domains() {
    let s = one_incident(
        1_000,
        "kind = \"compromised_account\"\nstart = 2024-10-07T02:00:00Z\nend = 2024-10-07T03:00:00Z\nsasl_user = \"eve@example.org\"\nclient_ip = \"192.0.2.99\"\nmessages_per_hour = 100\nrecipients_per_message = 10\n",
    );
    let all = lines(&s);
    let mut sessions = 0;
    let mut qids = BTreeSet::new();
    for line in &all {
        if line
            .text
            .contains("client=unknown[192.0.2.99], sasl_method=")
            && line.text.contains("sasl_username=eve@example.org")
        {
            assert!(inside(line, 2, 3), "{}", line.text);
            sessions += 1;
            if let Some(qid) = line
                .text
                .split("]: ")
                .nth(1)
                .and_then(|m| m.split(':').next())
            {
                qids.insert(qid.to_string());
            }
        }
    }
    let mut domains = BTreeSet::new();
    for line in &all {
        let Some(message) = line.text.split("]: ").nth(1) else {
            continue;
        };
        if let Some((qid, rest)) = message.split_once(": to=<")
            && qids.contains(qid)
            && let Some((_, domain)) = rest.split('>').next().and_then(|a| a.split_once('@'))
        {
            domains.insert(domain.to_string());
        }
    }
    assert!(
        (70..=130).contains(&sessions),
        "about 100 spam submissions expected, got {sessions}"
    );
    assert!(
        domains.len() > 200,
        "spam goes to many domains: {}",
        domains.len()
    );
}

#[test]
fn spool_filling_shows_in_the_gauges_only() {
    let text = "kind = \"spool_filling\"\nstart = 2024-10-07T06:00:00Z\nend = 2024-10-07T10:00:00Z\nfill_bytes_per_hour = 1e9\n";
    let s = one_incident(500, text);
    let plain = scenario(&format!(
        "{HEADER}days = 1\n[traffic]\nmessages_per_day = 500\n[[hosts]]\nname = \"mx1\"\n"
    ));
    let a: Vec<_> = lines(&s);
    let b: Vec<_> = lines(&plain);
    assert!(a == b, "the log does not change");
    let mut free_at: BTreeMap<i64, u64> = BTreeMap::new();
    simulate_samples(&s, 3600, |_, samples| {
        for x in samples {
            if x.metric == "filesystem_free_bytes"
                && let Some(mailpulse_proto::v1::sample::Value::Gauge(v)) = x.value
            {
                free_at.insert(x.window_start_unix_ms / 1000, v as u64);
            }
        }
    });
    let free = |h| free_at.get(&at_hour(h)).copied().unwrap_or(0);
    let used_by_fill = free(5) - free(9);
    assert!(
        (3_900_000_000..4_100_000_000).contains(&used_by_fill),
        "four hours at 1 GB/h (the 09:00 window is read at 09:59:59): {used_by_fill}"
    );
    assert!(free(11) > free(9), "freed after the incident");
}

#[test]
fn the_feed_covers_every_window_of_every_host() {
    let s = scenario(&format!(
        "{HEADER}days = 0.5\ntimestamp_format = \"rfc3339\"\n[traffic]\nmessages_per_day = 2000\n[[hosts]]\nname = \"a\"\n[[hosts]]\nname = \"b\"\n"
    ));
    let mut calls: Vec<(String, i64)> = Vec::new();
    let summary = simulate_samples(&s, 600, |host, samples| {
        let gauge_window = samples
            .iter()
            .find(|x| x.metric == "filesystem_size_bytes")
            .map_or(-1, |x| x.window_start_unix_ms / 1000);
        calls.push((host.to_string(), gauge_window));
    });
    assert_eq!(calls.len(), 2 * 72, "12 h of 10-minute windows, two hosts");
    assert_eq!(calls[0], ("a".to_string(), at_hour(0)));
    assert_eq!(calls[1], ("b".to_string(), at_hour(0)));
    assert_eq!(calls[143], ("b".to_string(), at_hour(12) - 600));
    for h in &summary.hosts {
        assert_eq!(h.unparsed, 0, "{}: every line parses", h.host);
        assert!(h.lines > 1_000 && h.messages_received > 300, "{h:?}");
        assert_eq!(h.windows, 72);
    }
}

#[test]
fn simulations_can_move_to_other_threads() {
    fn send<T: Send>(_: &T) {}
    let s = scenario(&format!("{HEADER}days = 0.1\n[[hosts]]\nname = \"a\"\n"));
    let sim = s.host_simulation(0).expect("one host");
    send(&sim);
    let lines = std::thread::spawn(move || sim.count())
        .join()
        .unwrap_or_default();
    assert!(
        lines > 10,
        "a host's simulation runs on another thread: {lines}"
    );
}

#[test]
fn a_warmup_moves_the_start_back_and_keeps_the_incidents() {
    let s = one_incident(
        500,
        "kind = \"bounce_storm\"\nstart = 2024-10-07T10:00:00Z\nend = 2024-10-07T11:00:00Z\ndomain = \"gmail.com\"\n",
    );
    let w = s.with_warmup_days(2.0);
    assert_eq!(w.start_unix_secs(), s.start_unix_secs() - 2 * 86_400);
    assert_eq!(w.end_unix_secs(), s.end_unix_secs());
    assert_eq!(w.labels(), s.labels());
    assert_eq!(s.with_warmup_days(f64::NAN), s);
    assert_eq!(s.with_warmup_days(-3.0), s);
    // Never longer than the longest scenario.
    let huge = s.with_warmup_days(1e300);
    assert!(huge.end_unix_secs() - huge.start_unix_secs() <= 400 * 86_400);
    // The warm-up is traffic before the original start.
    let first = w
        .host_simulation(0)
        .and_then(|mut h| h.next())
        .expect("a line");
    assert!(first.at_unix_micros / 1_000_000 < s.start_unix_secs());
}
