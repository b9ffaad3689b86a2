//! The agent's DNS prober end to end: two Knot instances are the authoritative servers of
//! `example.test`, an unbound resolver answers a "poisoned" A record for its MX host, and
//! `mailpulse agent` (probing every second) ships to `mailpulse collector`. Asserted at the
//! collector: propagation consistency and SOA serials per server, the resolver's disagreement and
//! poisoning flag, and the change events (which server saw a new SPF record first) at
//! `/api/v1/dns/changes` when the zone changes on one server, then on the other.
//!
//! Needs the Debian `knot`, `knot-dnsutils` and `unbound` packages (`scripts/install-deps`) and a
//! built `mailpulse` binary. Takes about 15 s.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mailpulse_tests::knot::{self, KnotServer, ZoneSpec, zone_text};
use mailpulse_tests::net::poll_until;
use mailpulse_tests::stack::{metric_value, start_collector_and_agent, write_configs};
use mailpulse_tests::unbound::{self, UnboundConfig, UnboundServer};
use serde_json::Value;

const ZONE: &str = "example.test";
const WAIT: Duration = Duration::from_secs(45);

fn records(spf: &str) -> Vec<String> {
    vec![
        "@ IN MX 10 mx".into(),
        "mx 3600 IN A 192.0.2.25".into(),
        format!("@ IN TXT \"{spf}\""),
        "_dmarc IN TXT \"v=DMARC1; p=reject; rua=mailto:dmarc@example.test\"".into(),
        "news IN TXT \"v=spf1 ip4:198.51.100.0/24 -all\"".into(),
        "s1._domainkey IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"".into(),
    ]
}

fn zone(serial: u32, spf: &str) -> String {
    let records = records(spf);
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    zone_text(ZONE, serial, &refs)
}

fn http_json(port: u16, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (_, json) = body.split_once("\r\n\r\n")?;
    serde_json::from_str(json).ok()
}

fn wait_value(http: u16, name: &str, labels: &[(&str, &str)], want: f64, logs: &std::path::Path) {
    let got = poll_until(WAIT, Duration::from_millis(250), || {
        metric_value(http, name, labels).filter(|v| *v == want)
    });
    assert!(
        got.is_ok(),
        "{name}{labels:?}: want {want}, have {:?}; logs in {}",
        metric_value(http, name, labels),
        logs.display()
    );
}

#[test]
fn propagation_disagreement_and_changes_reach_the_collector() {
    assert!(
        knot::available() && unbound::available(),
        "this test needs the Debian knot, knot-dnsutils and unbound packages: run scripts/install-deps"
    );
    let spf_old = "v=spf1 mx -all";
    let spf_new = "v=spf1 mx ip4:192.0.2.0/24 -all";
    let mut ns1 =
        KnotServer::start(&[ZoneSpec::unsigned(ZONE, &zone(1, spf_old))]).expect("knot 1");
    let mut ns2 =
        KnotServer::start(&[ZoneSpec::unsigned(ZONE, &zone(1, spf_old))]).expect("knot 2");
    // The resolver knows the zone from ns1 but answers its own (poisoned) MX address, with a
    // TTL far above the zone's.
    let resolver = UnboundServer::start(
        &UnboundConfig::default()
            .stub_zone(ZONE, &[ns1.addr()])
            .local_data("mx.example.test. 86400 IN A 203.0.113.66")
            .server_line("cache-max-ttl: 0"),
    )
    .expect("unbound");

    let work = tempfile::tempdir().expect("temp dir");
    let d = work.path();
    // One outbound delivery for a sender domain that is not monitored: the prober learns it
    // from the log and evaluates the sending IPs against its SPF.
    std::fs::write(
        d.join("mail.log"),
        "Oct 26 18:13:50 mx1 postfix/qmgr[1]: 1A2B3C4D5E: from=<alice@news.example.test>, size=1234, nrcpt=1 (queue active)\n\
         Oct 26 18:13:51 mx1 postfix/smtp[2]: 1A2B3C4D5E: to=<bob@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.27]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK)\n",
    )
    .expect("log");
    let extra = format!(
        "[queue]\nenabled = false\n[capacity]\nenabled = false\n\
         [dns]\ninterval_secs = 1\njitter_secs = 0\ntimeout_ms = 1000\nattempts = 1\n\
         nameservers = [\"{ns1}\"]\ncompare_resolvers = [\"{resolver}\"]\n\
         sending_ips = [\"192.0.2.10\", \"198.51.100.7\"]\n\
         [[dns.domains]]\ndomain = \"{ZONE}\"\ndkim_selectors = [\"s1\"]\n\
         authoritative = [\"{ns1}\", \"{ns2}\"]\n",
        ns1 = ns1.addr(),
        ns2 = ns2.addr(),
        resolver = resolver.addr(),
    );
    let http = write_configs(d, &d.join("mail.log"), &extra);
    let (_collector, _agent) = start_collector_and_agent(d);
    let domain = [("domain", ZONE)];
    let resolver_label = format!("resolver@{}", resolver.addr());
    let at_resolver = [("domain", ZONE), ("resolver", resolver_label.as_str())];

    // 1. Both servers alike; the resolver disagrees on the MX address and looks poisoned.
    wait_value(
        http,
        "mailpulse_dns_propagation_consistent",
        &domain,
        1.0,
        d,
    );
    wait_value(http, "mailpulse_dns_resolver_agrees", &at_resolver, 0.0, d);
    wait_value(
        http,
        "mailpulse_dns_poisoning_suspect",
        &at_resolver,
        1.0,
        d,
    );
    let ns1_label = ns1.addr().to_string();
    let ns2_label = ns2.addr().to_string();
    wait_value(
        http,
        "mailpulse_dns_soa_serial",
        &[("domain", ZONE), ("server", &ns1_label)],
        1.0,
        d,
    );
    // The sending IPs against `mx -all`: both would fail; the findings count it; neither has
    // a PTR in this world.
    for ip in ["192.0.2.10", "198.51.100.7"] {
        wait_value(
            http,
            "mailpulse_spf_would_fail",
            &[("domain", ZONE), ("ip", ip)],
            1.0,
            d,
        );
        wait_value(http, "mailpulse_dns_fcrdns_ok", &[("ip", ip)], 0.0, d);
    }
    let news = "news.example.test";
    wait_value(
        http,
        "mailpulse_spf_would_fail",
        &[("domain", news), ("ip", "192.0.2.10")],
        1.0,
        d,
    );
    wait_value(
        http,
        "mailpulse_spf_would_fail",
        &[("domain", news), ("ip", "198.51.100.7")],
        0.0,
        d,
    );
    wait_value(
        http,
        "mailpulse_sender_domain_deliveries",
        &[("domain", news)],
        1.0,
        d,
    );
    let spf_errors = [("domain", ZONE), ("check", "spf"), ("severity", "error")];
    wait_value(http, "mailpulse_dns_findings", &spf_errors, 2.0, d);

    // 2. The SPF record changes on ns1 only: inconsistent, serials 2 and 1.
    ns1.set_zone(ZONE, &zone(2, spf_new)).expect("update ns1");
    wait_value(
        http,
        "mailpulse_dns_propagation_consistent",
        &domain,
        0.0,
        d,
    );
    wait_value(
        http,
        "mailpulse_dns_soa_serial",
        &[("domain", ZONE), ("server", &ns1_label)],
        2.0,
        d,
    );
    wait_value(
        http,
        "mailpulse_dns_soa_serial",
        &[("domain", ZONE), ("server", &ns2_label)],
        1.0,
        d,
    );

    // The new record covers 192.0.2.10 (the agent's resolver is ns1).
    wait_value(
        http,
        "mailpulse_spf_would_fail",
        &[("domain", ZONE), ("ip", "192.0.2.10")],
        0.0,
        d,
    );
    wait_value(http, "mailpulse_dns_findings", &spf_errors, 1.0, d);

    // 3. ns2 catches up: consistent again, and the change log says ns1 saw it first.
    ns2.set_zone(ZONE, &zone(2, spf_new)).expect("update ns2");
    wait_value(
        http,
        "mailpulse_dns_propagation_consistent",
        &domain,
        1.0,
        d,
    );
    let spf_changes = |changes: &Value| -> Vec<Value> {
        changes
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["kind"] == "txt" && c["target"] == ZONE)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let changes = poll_until(WAIT, Duration::from_millis(250), || {
        let all = http_json(http, "/api/v1/dns/changes?target=example.test&limit=1000")?;
        let spf = spf_changes(&all);
        let servers: Vec<&str> = spf.iter().filter_map(|c| c["server"].as_str()).collect();
        (servers.contains(&ns1_label.as_str()) && servers.contains(&ns2_label.as_str()))
            .then_some(spf)
    })
    .unwrap_or_else(|_| {
        panic!(
            "no SPF change from both servers: {:?}; logs in {}",
            http_json(http, "/api/v1/dns/changes?target=example.test"),
            d.display()
        )
    });
    let first = |server: &str| {
        changes
            .iter()
            .filter(|c| c["server"] == server)
            .map(|c| c["at_unix_ms"].as_i64().unwrap_or(i64::MAX))
            .min()
            .unwrap_or(i64::MAX)
    };
    assert!(
        first(&ns1_label) < first(&ns2_label),
        "ns1 first: {changes:#?}"
    );
    let c = changes
        .iter()
        .find(|c| c["server"] == ns1_label.as_str())
        .expect("ns1 change");
    assert_eq!(c["old_answer"], format!("TXT \"{spf_old}\""));
    assert_eq!(c["new_answer"], format!("TXT \"{spf_new}\""));
    assert_eq!(c["agent_id"], "mx1");
    // Each authoritative server changed exactly once (no flapping, no duplicates); the agent's
    // own resolver and the compared resolver saw the change too, as their own servers.
    for server in [&ns1_label, &ns2_label] {
        let n = changes
            .iter()
            .filter(|c| c["server"] == server.as_str())
            .count();
        assert_eq!(n, 1, "{server}: {changes:#?}");
    }
    assert!(
        changes
            .iter()
            .any(|c| c["server"] == resolver_label.as_str()),
        "{changes:#?}"
    );
    println!(
        "dns: propagation 1 → 0 → 1, ns1 saw the SPF change {} ms before ns2, resolver poisoning flagged",
        first(&ns2_label) - first(&ns1_label)
    );
}

/// `mailpulse check` against a signed zone on Knot, with the zone's DS as trust anchor: SPF
/// verdicts per IP, the "would fail" finding with its fix, DNSSEC validated, exit status 1.
#[test]
fn check_command_reports_findings_for_a_signed_zone() {
    assert!(
        knot::available(),
        "this test needs the Debian knot and knot-dnsutils packages: run scripts/install-deps"
    );
    let text = zone(1, "v=spf1 ip4:192.0.2.0/24 -all");
    let server = KnotServer::start(&[ZoneSpec::signed(ZONE, &text)]).expect("knot");
    let work = tempfile::tempdir().expect("temp dir");
    let anchor = work.path().join("anchor.txt");
    std::fs::write(&anchor, server.ds(ZONE).expect("DS of the zone")).expect("anchor");
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(mailpulse_tests::mailpulse_bin());
        cmd.args(["check", ZONE, "--ip", "192.0.2.10", "--ip", "198.51.100.7"])
            .args(["--selector", "s1", "--timeout-ms", "1000"])
            .args(["--resolver", &server.addr().to_string()])
            .arg("--trust-anchor")
            .arg(&anchor)
            .args(extra);
        cmd.output().expect("run mailpulse check")
    };
    let out = run(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "an error finding: exit 1");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["domain"], ZONE);
    assert_eq!(report["spf"][0]["verdict"], "pass");
    assert_eq!(report["spf"][1]["verdict"], "fail");
    assert_eq!(report["dnssec_authenticated"], true, "{report:#}");
    let findings = report["findings"].as_array().expect("findings");
    let would_fail = findings
        .iter()
        .find(|f| f["code"] == "spf-ip-would-fail")
        .expect("would-fail finding");
    assert!(
        would_fail["message"]
            .as_str()
            .is_some_and(|m| m.contains("198.51.100.7"))
    );
    assert!(would_fail["fix"].is_string());
    assert_eq!(findings[0]["severity"], "error", "most severe first");

    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SPF for 198.51.100.7: fail"), "{text}");
    assert!(
        text.contains("DNSSEC: validated") && text.contains("fix: "),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour when not on a terminal");
    assert!(
        text.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.contains("errors"))
    );
}

/// DNS block lists served by a local Knot: a listed IPv4 address (Spamhaus-style codes, two
/// listings), the 127.255.255.254 "public resolver" refusal as an error, an unlisted address, and
/// an IPv6 address by nibbles.
#[test]
fn block_lists_served_by_knot() {
    use mailpulse_agent::dns::dnsbl::{DnsList, ListKind, ListingStatus, ReturnCodes, check_dnsbl};
    use mailpulse_agent::dns::hickory::{HickoryResolver, ResolverOptions};

    assert!(knot::available(), "needs the Debian knot package");
    let records = [
        "10.2.0.192 IN A 127.0.0.4",
        "10.2.0.192 IN A 127.0.0.11",
        "11.2.0.192 IN A 127.255.255.254",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 IN A 127.0.0.2",
    ];
    let server = KnotServer::start(&[ZoneSpec::unsigned(
        "bl.test",
        &zone_text("bl.test", 1, &records),
    )])
    .expect("knot");
    let list = DnsList {
        name: "Local ZEN".into(),
        zone: "bl.test".into(),
        kind: ListKind::Block,
        codes: ReturnCodes::SpamhausZen,
        ipv6: true,
        removal_url: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let resolver = HickoryResolver::with_nameservers(
        &[server.addr()],
        ResolverOptions::default()
            .timeout(Duration::from_secs(1))
            .attempts(1),
    )
    .expect("resolver");
    let status = |ip: &str| {
        let ip = ip.parse().expect("ip");
        let (results, findings) =
            runtime.block_on(check_dnsbl(ip, std::slice::from_ref(&list), &resolver));
        (results[0].status.clone(), findings)
    };
    match status("192.0.2.10") {
        (ListingStatus::Listed { codes }, findings) => {
            assert_eq!(codes.len(), 2, "{codes:?}");
            assert!(
                findings
                    .iter()
                    .any(|f| f.severity == mailpulse_agent::dns::finding::Severity::Error)
            );
        }
        other => panic!("listed expected: {other:?}"),
    }
    assert!(
        matches!(status("192.0.2.11").0, ListingStatus::Error { .. }),
        "127.255.255.254 is an error"
    );
    assert_eq!(status("192.0.2.12").0, ListingStatus::NotListed);
    assert!(matches!(
        status("2001:db8::1").0,
        ListingStatus::Listed { .. }
    ));
}
