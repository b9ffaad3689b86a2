use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::fleet::{IncidentKind, simulate_feed, simulate_samples};
use mailpulse_agent::dns::finding::Severity;

const HEADER: &str = "seed = 9\nstart = 2024-10-07T00:00:00Z\n";

fn scenario(text: &str) -> Scenario {
    match Scenario::parse(Path::new("test.toml"), text) {
        Ok(s) => s,
        Err(e) => panic!("test scenario should be valid: {e}"),
    }
}

/// Two hosts for a day, with `incidents` (TOML) added.
fn fleet(incidents: &str) -> Scenario {
    scenario(&format!(
        "{HEADER}days = 1\n[traffic]\nmessages_per_day = 300\n[[hosts]]\nname = \"mx1\"\n[[hosts]]\nname = \"mx2\"\n{incidents}"
    ))
}

/// Unix seconds of `2024-10-07T{hh}:{mm}:00Z`.
fn at(hh: i64, mm: i64) -> i64 {
    1_728_259_200 + hh * 3600 + mm * 60
}

fn label<'a>(s: &'a pb::Sample, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

fn gauge(s: &pb::Sample) -> f64 {
    match s.value {
        Some(pb::sample::Value::Gauge(v)) => v,
        _ => f64::NAN,
    }
}

/// The rounds of host `index` in `[from, to)`, in windows of `window_secs`.
fn rounds(s: &Scenario, index: usize, from: i64, to: i64, window_secs: u32) -> DnsWindow {
    let mut dns = s.host_dns(index).expect("host exists");
    dns.rounds(from, to, window_secs, true)
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(w: &DnsWindow, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&pb::Sample> = w
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(n, v)| label(s, n) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "one {metric}{labels:?}: {found:#?}");
    gauge(found[0])
}

const NS1: &str = "ns1.example.org@192.0.2.53:53";
const NS2: &str = "ns2.example.org@192.0.2.54:53";

#[test]
fn a_round_carries_the_agents_names_labels_and_shapes() {
    let s = fleet("");
    // One interval: one round of the domain and one of each address.
    let w = rounds(&s, 0, at(9, 0), at(9, 5), 60);
    let names: BTreeSet<&str> = w.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in [
        "dns_probe_latency_seconds",
        "dns_probes",
        "dns_propagation_consistent",
        "dns_soa_serial",
        "dns_resolver_agrees",
        "dns_poisoning_suspect",
        "dns_record_ttl_seconds",
        "dns_findings",
        "spf_would_fail",
        "dnsbl_listed",
        "dnswl_listed",
        "sender_score",
        "dns_fcrdns_ok",
    ] {
        assert!(names.contains(name), "{name} missing: {names:?}");
    }
    for s in &w.samples {
        assert_eq!(s.labels[0].name, "host", "host first: {s:?}");
        assert_eq!(s.labels[0].value, "mx1");
        assert_eq!(s.window_secs, 60);
        assert_eq!(s.window_start_unix_ms % 60_000, 0);
        assert!((at(9, 0) * 1000..at(9, 5) * 1000).contains(&s.window_start_unix_ms));
    }
    let domain = [("domain", "example.org")];
    assert_eq!(value(&w, "dns_propagation_consistent", &domain), 1.0);
    for server in [NS1, NS2] {
        let serial = value(
            &w,
            "dns_soa_serial",
            &[("domain", "example.org"), ("server", server)],
        );
        assert_eq!(serial, 2_024_100_701.0, "{server}");
    }
    let resolver = [("domain", "example.org"), ("resolver", RESOLVER_LABEL)];
    assert_eq!(value(&w, "dns_resolver_agrees", &resolver), 1.0);
    assert_eq!(value(&w, "dns_poisoning_suspect", &resolver), 0.0);

    // Latency histograms per kind family, with the agent's bounds, counting every probe.
    let mut counted = 0;
    let mut kinds = BTreeSet::new();
    for s in w
        .samples
        .iter()
        .filter(|s| s.metric == "dns_probe_latency_seconds")
    {
        let Some(pb::sample::Value::Histogram(h)) = &s.value else {
            panic!("a histogram: {s:?}");
        };
        assert_eq!(h.bounds, LATENCY_BOUNDS_SECS);
        assert_eq!(h.counts.len(), LATENCY_BOUNDS_SECS.len() + 1);
        let n: u64 = h.counts.iter().sum();
        assert!(n > 0 && h.sum > 0.0 && h.sum / (n as f64) < 0.05, "{h:?}");
        counted += n;
        kinds.insert(label(s, "kind").unwrap_or_default().to_owned());
    }
    assert_eq!(counted, w.probes.len() as u64);
    assert!(kinds.contains("dkim") && kinds.contains("soa") && kinds.contains("txt"));
    let probed: f64 = w
        .samples
        .iter()
        .filter(|s| s.metric == "dns_probes")
        .map(|s| match s.value {
            Some(pb::sample::Value::CounterDelta(v)) => v,
            _ => panic!("a counter: {s:?}"),
        })
        .sum();
    assert_eq!(probed, w.probes.len() as f64);

    // Findings: every severity of every check that reported, one warning (DMARC p=none), no
    // error.
    let mut findings: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for s in w.samples.iter().filter(|s| s.metric == "dns_findings") {
        assert_eq!(label(s, "domain"), Some("example.org"));
        let key = (
            label(s, "check").unwrap_or_default(),
            label(s, "severity").unwrap_or_default(),
        );
        assert!(findings.insert(key, gauge(s)).is_none(), "{key:?} twice");
    }
    let checks: BTreeSet<&str> = findings.keys().map(|(c, _)| *c).collect();
    for check in ["spf", "dkim", "dmarc"] {
        assert!(checks.contains(check), "{check}: {checks:?}");
    }
    for check in &checks {
        for severity in [
            Severity::Error,
            Severity::Warning,
            Severity::Info,
            Severity::Ok,
        ] {
            assert!(findings.contains_key(&(check, severity.as_str())));
        }
    }
    let total = |severity: &str| -> f64 {
        findings
            .iter()
            .filter(|((_, s), _)| *s == severity)
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(total("error"), 0.0, "{findings:?}");
    assert_eq!(total("warning"), 1.0, "{findings:?}");
    assert_eq!(findings[&("dmarc", "warning")], 1.0);

    // Reputation of both sending addresses: every default list, none listing.
    for ip in ["198.51.100.10", "198.51.100.11"] {
        assert_eq!(
            value(
                &w,
                "spf_would_fail",
                &[("domain", "example.org"), ("ip", ip)]
            ),
            0.0
        );
        let lists: BTreeSet<&str> = w
            .samples
            .iter()
            .filter(|s| s.metric == "dnsbl_listed" && label(s, "ip") == Some(ip))
            .inspect(|s| {
                assert_eq!(gauge(s), 0.0, "{s:?}");
                assert!(label(s, "removal_url").is_some_and(|u| u.starts_with("https://")));
            })
            .filter_map(|s| label(s, "list"))
            .collect();
        let defaults = default_lists();
        let expected: BTreeSet<&str> = defaults
            .iter()
            .filter(|l| l.kind == ListKind::Block)
            .map(|l| l.zone.as_str())
            .collect();
        assert_eq!(lists, expected);
        let score = value(&w, "sender_score", &[("ip", ip)]);
        assert!((85.0..=95.0).contains(&score), "{ip}: {score}");
        assert_eq!(value(&w, "dns_fcrdns_ok", &[("ip", ip)]), 1.0);
    }

    // Probes: every record set from the default resolver, both servers and the resolver.
    let servers: BTreeSet<&str> = w.probes.iter().map(|p| p.server.as_str()).collect();
    assert_eq!(servers, BTreeSet::from(["", NS1, NS2, RESOLVER_LABEL]));
    let spf = w
        .probes
        .iter()
        .find(|p| p.kind == "txt" && p.server == NS1)
        .expect("SPF asked of ns1");
    assert_eq!(spf.answer, "TXT \"v=spf1 ip4:198.51.100.0/24 -all\"");
    assert_eq!((spf.rcode.as_str(), spf.ttl_secs), ("noerror", 3600));
    assert_eq!(spf.answer_hash.len(), 16);
    assert!(
        w.probes
            .iter()
            .all(|p| p.at_unix_ms == w.probes[0].at_unix_ms
                && (p.latency_secs > 0.0 && p.latency_secs < 0.5))
    );
}

#[test]
fn rounds_come_once_per_interval_and_the_same_every_run() {
    let s = fleet("");
    let mut dns = s.host_dns(1).expect("mx2");
    let mut with_domain = 0;
    let mut empty = 0;
    let mut all = Vec::new();
    for m in 0..60 {
        let w = dns.rounds(at(10, m), at(10, m + 1), 60, true);
        if w.samples
            .iter()
            .any(|s| s.metric == "dns_propagation_consistent")
        {
            with_domain += 1;
            assert!(!w.probes.is_empty());
        }
        if w.samples.is_empty() {
            empty += 1;
            assert!(w.probes.is_empty());
        }
        all.push((w.samples, w.probes));
    }
    assert_eq!(with_domain, 12, "a domain round every 5 minutes");
    assert!(empty >= 24, "most minutes have no round: {empty}");
    let mut again = s.host_dns(1).expect("mx2");
    for (m, (samples, probes)) in all.into_iter().enumerate() {
        let m = m as i64;
        let w = again.rounds(at(10, m), at(10, m + 1), 60, true);
        assert!(w.samples == samples && w.probes == probes, "minute {m}");
    }
    // Without probes, the same samples.
    let mut quiet = s.host_dns(1).expect("mx2");
    let full = s
        .host_dns(1)
        .expect("mx2")
        .rounds(at(10, 0), at(11, 0), 300, true);
    let lean = quiet.rounds(at(10, 0), at(11, 0), 300, false);
    assert!(lean.probes.is_empty() && lean.samples == full.samples);
}

#[test]
fn a_dns_change_reaches_ns2_first_and_ns1_after_the_lag() {
    let s = fleet(
        "[[incidents]]\nkind = \"dns_change\"\nhosts = [\"mx1\"]\nstart = 2024-10-07T10:00:00Z\n",
    );
    let labels = s.labels();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].kind, IncidentKind::DnsChange);
    assert_eq!(labels[0].keys.domain.as_deref(), Some("example.org"));
    assert_eq!(
        (labels[0].start_unix_secs, labels[0].end_unix_secs),
        (at(10, 0), at(10, 10)),
        "the lag defaults to 10 minutes"
    );
    let domain = [("domain", "example.org")];
    let serial = |w: &DnsWindow, server| {
        value(
            w,
            "dns_soa_serial",
            &[("domain", "example.org"), ("server", server)],
        )
    };
    let answer = |w: &DnsWindow, kind: &str, server: &str| {
        let p = w
            .probes
            .iter()
            .find(|p| p.kind == kind && p.server == server)
            .unwrap_or_else(|| panic!("{kind} from {server:?}"));
        (p.answer.clone(), p.answer_hash.clone())
    };

    let before = rounds(&s, 0, at(9, 55), at(10, 0), 300);
    assert_eq!(value(&before, "dns_propagation_consistent", &domain), 1.0);
    let old_txt = answer(&before, "txt", NS1);
    let old_soa = answer(&before, "soa", NS1);
    assert_eq!(answer(&before, "txt", NS2), old_txt);

    for m in [0, 5] {
        let during = rounds(&s, 0, at(10, m), at(10, m + 5), 300);
        assert_eq!(
            value(&during, "dns_propagation_consistent", &domain),
            0.0,
            "10:{m:02}"
        );
        assert_eq!(serial(&during, NS1), 2_024_100_701.0);
        assert_eq!(serial(&during, NS2), 2_024_100_702.0);
        // ns2 serves the new records, ns1 and the resolvers the old ones.
        let new_txt = answer(&during, "txt", NS2);
        assert_ne!(new_txt.1, old_txt.1);
        assert!(new_txt.0.contains("ip4:203.0.113.0/28"), "{}", new_txt.0);
        assert_ne!(answer(&during, "soa", NS2).1, old_soa.1);
        assert_eq!(answer(&during, "txt", NS1), old_txt);
        assert_eq!(answer(&during, "soa", NS1), old_soa);
        assert_eq!(answer(&during, "txt", ""), old_txt);
        let resolver = [("domain", "example.org"), ("resolver", RESOLVER_LABEL)];
        assert_eq!(value(&during, "dns_resolver_agrees", &resolver), 1.0);
    }

    let after = rounds(&s, 0, at(10, 10), at(10, 15), 300);
    assert_eq!(value(&after, "dns_propagation_consistent", &domain), 1.0);
    assert_eq!(serial(&after, NS1), 2_024_100_702.0);
    assert_eq!(answer(&after, "txt", NS1), answer(&after, "txt", NS2));
    assert_ne!(answer(&after, "txt", "").1, old_txt.1);

    // The other host's view does not change.
    let other = rounds(&s, 1, at(10, 0), at(10, 5), 300);
    assert_eq!(value(&other, "dns_propagation_consistent", &domain), 1.0);
}

#[test]
fn a_dns_change_of_another_domain_is_monitored_and_can_lag_longer() {
    let s = fleet(
        "[[incidents]]\nkind = \"dns_change\"\nhosts = [\"mx2\"]\nstart = 2024-10-07T10:00:00Z\nend = 2024-10-07T11:00:00Z\ndomain = \"Corp.Example.\"\n",
    );
    assert_eq!(s.monitored_domains(1), ["example.org", "corp.example"]);
    assert_eq!(s.monitored_domains(0), ["example.org"]);
    assert_eq!(s.labels()[0].keys.domain.as_deref(), Some("corp.example"));
    let consistent = |hh, mm| {
        let w = rounds(&s, 1, at(hh, mm), at(hh, mm + 5), 300);
        (
            value(
                &w,
                "dns_propagation_consistent",
                &[("domain", "corp.example")],
            ),
            value(
                &w,
                "dns_propagation_consistent",
                &[("domain", "example.org")],
            ),
        )
    };
    assert_eq!(consistent(9, 55), (1.0, 1.0));
    assert_eq!(consistent(10, 30), (0.0, 1.0));
    assert_eq!(consistent(10, 55), (0.0, 1.0));
    assert_eq!(consistent(11, 0), (1.0, 1.0));
}

#[test]
fn a_blocklisted_address_is_listed_and_loses_its_score_while_active() {
    let s = fleet(
        "[[incidents]]\nkind = \"ip_blocklisted\"\nhosts = [\"mx2\"]\nstart = 2024-10-07T09:00:00Z\nend = 2024-10-07T12:00:00Z\n",
    );
    let main = "198.51.100.12";
    let out = "198.51.100.13";
    let listed = |w: &DnsWindow, ip: &str| -> BTreeMap<String, f64> {
        w.samples
            .iter()
            .filter(|s| s.metric == "dnsbl_listed" && label(s, "ip") == Some(ip))
            .map(|s| (label(s, "list").unwrap_or_default().to_owned(), gauge(s)))
            .collect()
    };
    let during = rounds(&s, 1, at(10, 0), at(10, 5), 300);
    let main_lists = listed(&during, main);
    assert_eq!(main_lists["zen.spamhaus.org"], 1.0);
    assert_eq!(main_lists.values().sum::<f64>(), 1.0, "{main_lists:?}");
    assert_eq!(listed(&during, out).values().sum::<f64>(), 0.0);
    let score = value(&during, "sender_score", &[("ip", main)]);
    assert!((35.0..=45.0).contains(&score), "{score}");
    assert!(value(&during, "sender_score", &[("ip", out)]) >= 85.0);
    for (hh, mm) in [(8, 55), (12, 0)] {
        let w = rounds(&s, 1, at(hh, mm), at(hh, mm + 5), 300);
        assert_eq!(listed(&w, main).values().sum::<f64>(), 0.0, "{hh}:{mm}");
        assert!(value(&w, "sender_score", &[("ip", main)]) >= 85.0);
    }
    // The other host is not listed.
    let other = rounds(&s, 0, at(10, 0), at(10, 5), 300);
    assert_eq!(listed(&other, "198.51.100.10").values().sum::<f64>(), 0.0);
}

#[test]
fn the_feed_appends_dns_samples_and_hands_over_the_probes() {
    let s = scenario(&format!(
        "{HEADER}days = 0.25\n[traffic]\nmessages_per_day = 300\n[[hosts]]\nname = \"mx1\"\n[[incidents]]\nkind = \"dns_change\"\nhosts = [\"mx1\"]\nstart = 2024-10-07T02:00:00Z\n"
    ));
    let mut plain: Vec<Vec<pb::Sample>> = Vec::new();
    simulate_samples(&s, 300, |_, samples| plain.push(samples));
    let mut fed: Vec<Vec<pb::Sample>> = Vec::new();
    let mut probes: Vec<pb::Probe> = Vec::new();
    let summary = simulate_feed(&s, 300, |host, samples, p| {
        assert_eq!(host, "mx1");
        fed.push(samples);
        probes.extend(p);
    });
    assert!(plain == fed, "the same samples with or without the probes");
    assert_eq!(fed.len(), 72);
    assert_eq!(summary.hosts[0].probes, probes.len() as u64);
    // Every 5-minute window has a domain round: its probes, and its samples after the gauges.
    for samples in &fed {
        let gauges = samples
            .iter()
            .position(|x| x.metric == "filesystem_up")
            .expect("gauges");
        let dns = samples
            .iter()
            .position(|x| x.metric == "dns_propagation_consistent")
            .expect("a DNS round");
        assert!(dns > gauges);
    }
    let ns2_txt: BTreeSet<&str> = probes
        .iter()
        .filter(|p| p.kind == "txt" && p.server == NS2)
        .map(|p| p.answer_hash.as_str())
        .collect();
    assert_eq!(ns2_txt.len(), 2, "one change of the SPF record");
    let first_new = |server: &str| {
        let old = probes
            .iter()
            .find(|p| p.kind == "txt" && p.server == server)
            .map(|p| p.answer_hash.clone());
        probes
            .iter()
            .find(|p| p.kind == "txt" && p.server == server && Some(&p.answer_hash) != old.as_ref())
            .map(|p| p.at_unix_ms)
    };
    let (ns2_at, ns1_at) = (first_new(NS2), first_new(NS1));
    assert!(
        ns2_at.zip(ns1_at).is_some_and(|(a, b)| a < b),
        "{ns2_at:?} {ns1_at:?}"
    );
    assert!(ns2_at.is_some_and(|t| t >= at(2, 0) * 1000 && t < at(2, 5) * 1000));
}

#[test]
fn dns_change_is_validated() {
    let base = "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 1\n[[hosts]]\nname = \"a\"\n[[incidents]]\nhosts = [\"a\"]\nstart = 2024-10-07T01:00:00Z\n";
    let error =
        |incident: &str| match Scenario::parse(Path::new("bad.toml"), &format!("{base}{incident}"))
        {
            Ok(_) => panic!("expected an error for {incident}"),
            Err(e) => e.to_string(),
        };
    let e = error("kind = \"dns_change\"\ndomain = \"not a domain\"\n");
    assert!(
        e.starts_with("bad.toml:6:1:") && e.contains("domain name"),
        "{e}"
    );
    let e = error("kind = \"dns_change\"\nshare = 0.5\n");
    assert!(e.contains("does not take `share`"), "{e}");
    let e = error("kind = \"bounce_storm\"\ndomain = \"gmail.com\"\n");
    assert!(e.contains("`end` is required"), "{e}");
    let e = error("kind = \"dns_change\"\nend = 2024-10-07T00:30:00Z\n");
    assert!(e.contains("start < end"), "{e}");
    // The default lag stops at the end of the period.
    let late = Scenario::parse(
        Path::new("late.toml"),
        "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 1\n[[hosts]]\nname = \"a\"\n[[incidents]]\nkind = \"dns_change\"\nhosts = [\"a\"]\nstart = 2024-10-07T23:55:00Z\n",
    )
    .expect("valid");
    assert_eq!(late.labels()[0].end_unix_secs, at(24, 0));
}
