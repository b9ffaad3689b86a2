//! The DNS prober: the record sets a mail domain depends on, asked of the usual resolver, of
//! every authoritative server directly, and of each configured recursive resolver.
//!
//! Per monitored domain and round ([`probe_domain`]):
//! - **record sets**: SOA, NS, MX, the apex TXT (SPF), `_dmarc`, each configured DKIM
//!   selector, `_mta-sts`, `_smtp._tls` (TLS-RPT), `default._bimi`, and A/AAAA of every MX
//!   target. Each answer becomes a [`pb::Probe`] (kind, name, server, latency, rcode, TTL, the
//!   normalised answer and its hash); the collector versions them and records changes.
//! - **propagation**: the same sets from every authoritative server (found from the NS set, or
//!   configured), without recursion and without cache; `dns_propagation_consistent{domain}` is 1
//!   when every server gave the same answer (rcode included) for every set, and
//!   `dns_soa_serial{domain,server}` shows each server's serial.
//! - **resolver disagreement and poisoning**: each configured recursive resolver's answer is
//!   compared with the set of authoritative answers. An answer no authoritative server gives is a
//!   disagreement (`dns_resolver_agrees{domain,resolver}` 0, and a `disagreement:<kind>` probe
//!   whose answer holds both sides with TTLs, so the collector records when it starts and ends);
//!   one that also carries a TTL above every authoritative TTL for that set is a poisoning suspect
//!   (`dns_poisoning_suspect{domain,resolver}`).
//!
//! Architecture invariant: a probe never fails the round; every error becomes a probe with rcode
//! `timeout`/`error` and counts against consistency.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use mailpulse_proto::v1 as pb;

use super::config::DomainSpec;
use super::gauges::{Gauges, gauges};
use super::{Answer, LookupError, RData, RecordType, Resolve, normalise_name};

/// One record set of a domain: what it is called in probes, the name and the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    pub kind: String,
    pub name: String,
    pub rtype: RecordType,
}

/// The record sets probed for `spec` (MX targets' addresses are added once the MX is known).
pub fn record_sets(spec: &DomainSpec) -> Vec<RecordSet> {
    let d = normalise_name(&spec.domain);
    let set = |kind: &str, name: String, rtype| RecordSet {
        kind: kind.to_owned(),
        name,
        rtype,
    };
    let mut sets = vec![
        set("soa", d.clone(), RecordType::Soa),
        set("ns", d.clone(), RecordType::Ns),
        set("mx", d.clone(), RecordType::Mx),
        set("txt", d.clone(), RecordType::Txt),
        set("dmarc", format!("_dmarc.{d}"), RecordType::Txt),
        set("mta-sts", format!("_mta-sts.{d}"), RecordType::Txt),
        set("tls-rpt", format!("_smtp._tls.{d}"), RecordType::Txt),
        set("bimi", format!("default._bimi.{d}"), RecordType::Txt),
    ];
    for selector in &spec.dkim_selectors {
        sets.push(set(
            &format!("dkim:{selector}"),
            format!("{}._domainkey.{d}", normalise_name(selector)),
            RecordType::Txt,
        ));
    }
    sets
}

/// An answer in a canonical text form — one record per line, sorted, names in lower case, no
/// TTLs — and the hash of that text (16 hex digits of SHA-256).
pub fn normalise(answer: &Answer) -> (String, String) {
    let mut lines: Vec<String> = answer
        .records
        .iter()
        .map(|r| format!("{} {}", r.data.record_type().name(), rdata_text(&r.data)))
        .collect();
    lines.sort();
    lines.dedup();
    let text = lines.join("\n");
    let hash = hash_text(&format!("{}\n{text}", answer.rcode.as_str()));
    (text, hash)
}

fn hash_text(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Record data as zone-file-like text (TXT strings quoted, bytes outside printable ASCII
/// escaped as `\DDD`).
pub fn rdata_text(data: &RData) -> String {
    let name = |n: &str| normalise_name(n);
    match data {
        RData::A(ip) => ip.to_string(),
        RData::Aaaa(ip) => ip.to_string(),
        RData::Mx {
            preference,
            exchange,
        } => format!("{preference} {}", name(exchange)),
        RData::Txt(parts) | RData::Spf(parts) => parts
            .iter()
            .map(|p| format!("\"{}\"", escape(p)))
            .collect::<Vec<_>>()
            .join(" "),
        RData::Ptr(n) | RData::Cname(n) | RData::Ns(n) => name(n),
        RData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => format!(
            "{} {} {serial} {refresh} {retry} {expire} {minimum}",
            name(mname),
            name(rname)
        ),
        RData::Other { rtype, data } => format!("TYPE{rtype} \\# {}", data.len()),
    }
}

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out
}

/// Who answered a probe.
#[derive(Debug)]
pub struct Server<R> {
    /// Label in probes and samples (`ns1.example.com@192.0.2.53:53`, `resolver@127.0.0.1:53`).
    pub label: String,
    pub resolver: R,
}

/// One answer (or failure) of one server for one record set.
#[derive(Debug, Clone)]
struct Observed {
    rcode: String,
    text: String,
    hash: String,
    ttl: Option<u32>,
}

async fn ask<R: Resolve>(
    resolver: &R,
    set: &RecordSet,
    server: &str,
    now_ms: i64,
    probes: &mut Vec<pb::Probe>,
) -> (Observed, Option<Answer>) {
    let started = Instant::now();
    let result = resolver.lookup(&set.name, set.rtype).await;
    let latency_secs = started.elapsed().as_secs_f64();
    let (observed, answer) = match result {
        Ok(answer) => {
            let (text, hash) = normalise(&answer);
            (
                Observed {
                    rcode: answer.rcode.as_str().to_owned(),
                    text,
                    hash,
                    ttl: answer.min_ttl(),
                },
                Some(answer),
            )
        }
        Err(e) => {
            let rcode = match e {
                LookupError::Timeout => "timeout",
                _ => "error",
            };
            let text = e.to_string();
            (
                Observed {
                    rcode: rcode.to_owned(),
                    hash: hash_text(&format!("{rcode}\n")),
                    text,
                    ttl: None,
                },
                None,
            )
        }
    };
    probes.push(pb::Probe {
        kind: set.kind.clone(),
        target: set.name.clone(),
        at_unix_ms: now_ms,
        latency_secs,
        rcode: observed.rcode.clone(),
        answer_hash: observed.hash.clone(),
        ttl_secs: observed.ttl.unwrap_or(0),
        answer: observed.text.clone(),
        server: server.to_owned(),
    });
    (observed, answer)
}

/// What one round found for a domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainRound {
    pub probes: Vec<pb::Probe>,
    pub samples: Vec<pb::Sample>,
    /// Every authoritative server answered every set alike.
    pub consistent: bool,
    /// Per resolver label: agrees with the authoritative answers for every set.
    pub resolver_agrees: Vec<(String, bool)>,
    /// Per resolver label: gave an answer no authoritative server gives with a TTL above theirs.
    pub poisoning_suspect: Vec<(String, bool)>,
    /// Per authoritative server label: SOA serial (None when it did not answer one).
    pub serials: Vec<(String, Option<u32>)>,
    /// With a validating default resolver: the SOA answer was DNSSEC-authenticated (a bogus
    /// signature is a failed lookup, so `false` too).
    pub dnssec_authenticated: Option<bool>,
}

/// How [`probe_domain`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The default resolver validates DNSSEC: report `dns_dnssec_authenticated{domain}`.
    pub dnssec: bool,
    pub window_secs: u32,
}

/// Probes one domain: `default` for the plain answers and discovery, `authoritative` (when
/// empty: the NS set's servers, built with `connect`; `None` from it counts as a server that
/// failed) asked directly, `resolvers` compared.
pub async fn probe_domain<R, F>(
    spec: &DomainSpec,
    default: &R,
    connect: F,
    resolvers: &[Server<R>],
    now_ms: i64,
    host: &str,
    options: ProbeOptions,
) -> DomainRound
where
    R: Resolve,
    F: Fn(SocketAddr) -> Option<R>,
{
    let window_secs = options.window_secs;
    let domain = normalise_name(&spec.domain);
    let mut round = DomainRound {
        consistent: true,
        ..DomainRound::default()
    };
    let mut sets = record_sets(spec);

    // Plain answers through the default resolver; MX targets' addresses join the sets.
    let mut ns_names = Vec::new();
    let mut i = 0;
    while i < sets.len() {
        let set = sets[i].clone();
        let (observed, answer) = ask(default, &set, "", now_ms, &mut round.probes).await;
        if set.rtype == RecordType::Soa && options.dnssec {
            round.dnssec_authenticated = Some(
                answer.as_ref().is_some_and(|a| a.authenticated) && observed.rcode == "noerror",
            );
        }
        if let Some(answer) = answer {
            for data in answer.data() {
                match (set.rtype, data) {
                    (RecordType::Mx, RData::Mx { exchange, .. }) => {
                        let target = normalise_name(exchange);
                        if !target.is_empty() && sets.iter().all(|s| s.name != target) {
                            for (kind, rtype) in [("a", RecordType::A), ("aaaa", RecordType::Aaaa)]
                            {
                                sets.push(RecordSet {
                                    kind: kind.to_owned(),
                                    name: target.clone(),
                                    rtype,
                                });
                            }
                        }
                    }
                    (RecordType::Ns, RData::Ns(ns)) => ns_names.push(normalise_name(ns)),
                    _ => {}
                }
            }
        }
        i += 1;
    }
    // MX targets outside the zone are not the zone's servers' business.
    let in_zone = |name: &str| name == domain || name.ends_with(&format!(".{domain}"));

    let mut servers: Vec<Server<R>> = Vec::new();
    let mut unreachable: Vec<String> = Vec::new();
    if spec.authoritative.is_empty() {
        ns_names.sort();
        ns_names.dedup();
        for ns in &ns_names {
            for rtype in [RecordType::A, RecordType::Aaaa] {
                let Ok(answer) = default.lookup(ns, rtype).await else {
                    continue;
                };
                for data in answer.data() {
                    let ip = match data {
                        RData::A(ip) => std::net::IpAddr::V4(*ip),
                        RData::Aaaa(ip) => std::net::IpAddr::V6(*ip),
                        _ => continue,
                    };
                    let addr = SocketAddr::new(ip, 53);
                    let label = format!("{ns}@{addr}");
                    match connect(addr) {
                        Some(resolver) => servers.push(Server { label, resolver }),
                        None => unreachable.push(label),
                    }
                }
            }
        }
    } else {
        for addr in &spec.authoritative {
            match connect(*addr) {
                Some(resolver) => servers.push(Server {
                    label: addr.to_string(),
                    resolver,
                }),
                None => unreachable.push(addr.to_string()),
            }
        }
    }
    if !unreachable.is_empty() {
        round.consistent = false;
        for label in unreachable {
            round.serials.push((label, None));
        }
    }

    let mut agrees = vec![true; resolvers.len()];
    let mut suspect = vec![false; resolvers.len()];
    for set in sets.iter().filter(|s| in_zone(&s.name)) {
        let mut auth: Vec<Observed> = Vec::with_capacity(servers.len());
        for server in &servers {
            let (observed, answer) = ask(
                &server.resolver,
                set,
                &server.label,
                now_ms,
                &mut round.probes,
            )
            .await;
            if set.rtype == RecordType::Soa {
                let serial = answer.and_then(|a| {
                    a.data().find_map(|d| match d {
                        RData::Soa { serial, .. } => Some(*serial),
                        _ => None,
                    })
                });
                round.serials.push((server.label.clone(), serial));
            }
            auth.push(observed);
        }
        if auth.windows(2).any(|w| w[0].hash != w[1].hash) {
            round.consistent = false;
        }
        let hashes: BTreeSet<&str> = auth.iter().map(|o| o.hash.as_str()).collect();
        let max_auth_ttl = auth.iter().filter_map(|o| o.ttl).max();
        for (r, resolver) in resolvers.iter().enumerate() {
            let (observed, _) = ask(
                &resolver.resolver,
                set,
                &resolver.label,
                now_ms,
                &mut round.probes,
            )
            .await;
            if auth.is_empty() || hashes.contains(observed.hash.as_str()) {
                continue;
            }
            agrees[r] = false;
            let poisoned = observed.rcode == "noerror"
                && !observed.text.is_empty()
                && observed.ttl.zip(max_auth_ttl).is_some_and(|(t, a)| t > a);
            suspect[r] |= poisoned;
            let auth_side: Vec<String> = auth
                .iter()
                .map(|o| format!("{} ttl {}: {}", o.rcode, o.ttl.unwrap_or(0), o.text))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let text = format!(
                "resolver {} ttl {}: {}\nauthoritative {}{}",
                observed.rcode,
                observed.ttl.unwrap_or(0),
                observed.text,
                auth_side.join("\nauthoritative "),
                if poisoned { "\npoisoning suspect" } else { "" }
            );
            round.probes.push(pb::Probe {
                kind: format!("disagreement:{}", set.kind),
                target: set.name.clone(),
                at_unix_ms: now_ms,
                latency_secs: 0.0,
                rcode: observed.rcode.clone(),
                answer_hash: hash_text(&text),
                ttl_secs: observed.ttl.unwrap_or(0),
                answer: text,
                server: resolver.label.clone(),
            });
        }
    }
    round.resolver_agrees = resolvers
        .iter()
        .zip(&agrees)
        .map(|(r, a)| (r.label.clone(), *a))
        .collect();
    round.poisoning_suspect = resolvers
        .iter()
        .zip(&suspect)
        .map(|(r, s)| (r.label.clone(), *s))
        .collect();

    let mut g = gauges(host, now_ms, window_secs);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    if let Some(ok) = round.dnssec_authenticated {
        g.push("dns_dnssec_authenticated", &[("domain", &domain)], flag(ok));
    }
    if !round.serials.is_empty() {
        g.push(
            "dns_propagation_consistent",
            &[("domain", &domain)],
            flag(round.consistent),
        );
    }
    for (server, serial) in &round.serials {
        if let Some(serial) = serial {
            g.push(
                "dns_soa_serial",
                &[("domain", &domain), ("server", server)],
                f64::from(*serial),
            );
        }
    }
    probe_samples(&round.probes, &domain, &mut g);
    for ((resolver, agrees), (_, suspect)) in
        round.resolver_agrees.iter().zip(&round.poisoning_suspect)
    {
        let labels = [("domain", domain.as_str()), ("resolver", resolver.as_str())];
        g.push("dns_resolver_agrees", &labels, flag(*agrees));
        g.push("dns_poisoning_suspect", &labels, flag(*suspect));
    }
    round.samples = g.out;
    round
}

/// Upper bounds (seconds) of the `dns_probe_latency_seconds` buckets.
pub const LATENCY_BOUNDS_SECS: [f64; 10] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Per round: latency histograms and rcode counters per probe kind (`dkim:*` as `dkim`), and
/// the TTL of each record set as the default resolver sees it.
fn probe_samples(probes: &[pb::Probe], domain: &str, g: &mut Gauges<'_>) {
    use std::collections::BTreeMap;
    let family = |kind: &str| -> String {
        kind.split_once(':')
            .map_or(kind, |(family, _)| family)
            .to_owned()
    };
    let mut latency: BTreeMap<String, (Vec<u64>, f64)> = BTreeMap::new();
    let mut rcodes: BTreeMap<(String, String), u64> = BTreeMap::new();
    for p in probes
        .iter()
        .filter(|p| !p.kind.starts_with("disagreement:"))
    {
        let kind = family(&p.kind);
        let (counts, sum) = latency
            .entry(kind.clone())
            .or_insert_with(|| (vec![0; LATENCY_BOUNDS_SECS.len() + 1], 0.0));
        let i = LATENCY_BOUNDS_SECS.partition_point(|&b| b < p.latency_secs);
        counts[i] += 1;
        *sum += p.latency_secs;
        *rcodes.entry((kind, p.rcode.clone())).or_insert(0) += 1;
        if p.server.is_empty() && p.rcode == "noerror" && p.ttl_secs > 0 && p.target == domain {
            g.push(
                "dns_record_ttl_seconds",
                &[("domain", domain), ("kind", &p.kind)],
                f64::from(p.ttl_secs),
            );
        }
    }
    for ((kind, rcode), n) in rcodes {
        g.push_value(
            "dns_probes",
            &[("kind", &kind), ("rcode", &rcode)],
            pb::sample::Value::CounterDelta(n as f64),
        );
    }
    for (kind, (counts, sum)) in latency {
        g.push_value(
            "dns_probe_latency_seconds",
            &[("kind", &kind)],
            pb::sample::Value::Histogram(pb::Histogram {
                bounds: LATENCY_BOUNDS_SECS.to_vec(),
                counts,
                sum,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::dns::MemoryZone;

    fn zone(serial: u32, spf: &str) -> MemoryZone {
        let mut z = MemoryZone::new();
        z.add(
            "example.test",
            RData::Soa {
                mname: "ns1.example.test".into(),
                rname: "hostmaster.example.test".into(),
                serial,
                refresh: 3600,
                retry: 600,
                expire: 86400,
                minimum: 300,
            },
        )
        .add("example.test", RData::Ns("ns1.example.test".into()))
        .add(
            "example.test",
            RData::Mx {
                preference: 10,
                exchange: "mx.example.test".into(),
            },
        )
        .add("mx.example.test", RData::A(Ipv4Addr::new(192, 0, 2, 25)))
        .add_txt("example.test", spf)
        .add_txt("_dmarc.example.test", "v=DMARC1; p=reject");
        z
    }

    const OPTS: ProbeOptions = ProbeOptions {
        dnssec: false,
        window_secs: 60,
    };

    fn spec() -> DomainSpec {
        DomainSpec {
            domain: "Example.Test.".into(),
            dkim_selectors: vec!["s1".into()],
            authoritative: vec![
                "127.0.0.1:5301".parse().unwrap(),
                "127.0.0.1:5302".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn normalised_answers_ignore_order_case_and_ttl() {
        let mut a = MemoryZone::new();
        a.add_with_ttl("x.test", 60, RData::A(Ipv4Addr::new(192, 0, 2, 2)))
            .add_with_ttl("x.test", 60, RData::A(Ipv4Addr::new(192, 0, 2, 1)));
        let mut b = MemoryZone::new();
        b.add_with_ttl("X.TEST", 999, RData::A(Ipv4Addr::new(192, 0, 2, 1)))
            .add_with_ttl("x.test", 999, RData::A(Ipv4Addr::new(192, 0, 2, 2)));
        let na = normalise(&a.answer("x.test", RecordType::A).unwrap());
        let nb = normalise(&b.answer("x.test", RecordType::A).unwrap());
        assert_eq!(na, nb);
        assert_eq!(na.0, "A 192.0.2.1\nA 192.0.2.2");
        let nx = normalise(&a.answer("y.test", RecordType::A).unwrap());
        assert_ne!(
            nx.1,
            normalise(&Answer::empty(super::super::Rcode::NoError)).1
        );
        let txt = RData::Txt(vec![b"v=spf1 \"q\"".to_vec(), vec![0x96]]);
        assert_eq!(rdata_text(&txt), "\"v=spf1 \\\"q\\\"\" \"\\150\"");
    }

    #[tokio::test]
    async fn consistent_servers_and_an_agreeing_resolver() {
        let z = Arc::new(zone(7, "v=spf1 -all"));
        let resolvers = [Server {
            label: "resolver@127.0.0.1:53".into(),
            resolver: z.clone(),
        }];
        let round = probe_domain(
            &spec(),
            &z,
            |_| Some(z.clone()),
            &resolvers,
            1_000_000,
            "mx1",
            OPTS,
        )
        .await;
        assert!(round.consistent);
        assert_eq!(
            round.resolver_agrees,
            [("resolver@127.0.0.1:53".into(), true)]
        );
        assert_eq!(
            round.poisoning_suspect,
            [("resolver@127.0.0.1:53".into(), false)]
        );
        assert_eq!(
            round.serials,
            [
                ("127.0.0.1:5301".into(), Some(7)),
                ("127.0.0.1:5302".into(), Some(7))
            ]
        );
        // 9 sets + MX target A/AAAA = 11, asked of default, 2 servers and 1 resolver.
        assert_eq!(round.probes.len(), 11 * 4);
        let spf = round
            .probes
            .iter()
            .find(|p| p.kind == "txt" && p.server.is_empty())
            .unwrap();
        assert_eq!(spf.answer, "TXT \"v=spf1 -all\"");
        let dkim = round.probes.iter().find(|p| p.kind == "dkim:s1").unwrap();
        assert_eq!(
            (dkim.target.as_str(), dkim.rcode.as_str()),
            ("s1._domainkey.example.test", "nxdomain")
        );
        let probes_counted: f64 = round
            .samples
            .iter()
            .filter(|s| s.metric == "dns_probes")
            .map(|s| match s.value {
                Some(pb::sample::Value::CounterDelta(v)) => v,
                _ => 0.0,
            })
            .sum();
        assert_eq!(probes_counted, round.probes.len() as f64);
        let latency_counts: u64 = round
            .samples
            .iter()
            .filter(|s| s.metric == "dns_probe_latency_seconds")
            .map(|s| match &s.value {
                Some(pb::sample::Value::Histogram(h)) => h.counts.iter().sum::<u64>(),
                _ => 0,
            })
            .sum();
        assert_eq!(latency_counts, round.probes.len() as u64);
        assert!(
            round
                .samples
                .iter()
                .any(|s| s.metric == "dns_probes" && s.labels.iter().any(|l| l.value == "dkim"))
        );
        let ttl = round
            .samples
            .iter()
            .find(|s| {
                s.metric == "dns_record_ttl_seconds" && s.labels.iter().any(|l| l.value == "txt")
            })
            .unwrap();
        assert_eq!(ttl.value, Some(pb::sample::Value::Gauge(3600.0)));
        let consistent = round
            .samples
            .iter()
            .find(|s| s.metric == "dns_propagation_consistent")
            .unwrap();
        assert_eq!(consistent.value, Some(pb::sample::Value::Gauge(1.0)));
        assert_eq!(consistent.window_start_unix_ms, 960_000);
    }

    #[tokio::test]
    async fn a_lagging_server_and_a_poisoned_resolver() {
        let fresh = Arc::new(zone(8, "v=spf1 ip4:192.0.2.0/24 -all"));
        let stale = Arc::new(zone(7, "v=spf1 -all"));
        let mut poisoned = zone(8, "v=spf1 ip4:192.0.2.0/24 -all");
        poisoned.remove("mx.example.test").add_with_ttl(
            "mx.example.test",
            86_400,
            RData::A(Ipv4Addr::new(203, 0, 113, 66)),
        );
        let resolvers = [
            Server {
                label: "good".into(),
                resolver: fresh.clone(),
            },
            Server {
                label: "evil".into(),
                resolver: Arc::new(poisoned),
            },
        ];
        let connect = |addr: SocketAddr| {
            Some(if addr.port() == 5301 {
                fresh.clone()
            } else {
                stale.clone()
            })
        };
        let round = probe_domain(&spec(), &fresh, connect, &resolvers, 0, "mx1", OPTS).await;
        assert!(!round.consistent, "serials 8 and 7 differ");
        assert_eq!(
            round.serials,
            [
                ("127.0.0.1:5301".into(), Some(8)),
                ("127.0.0.1:5302".into(), Some(7))
            ]
        );
        assert_eq!(
            round.resolver_agrees,
            [("good".into(), true), ("evil".into(), false)]
        );
        assert_eq!(
            round.poisoning_suspect,
            [("good".into(), false), ("evil".into(), true)]
        );
        let evidence = round
            .probes
            .iter()
            .find(|p| p.kind == "disagreement:a" && p.server == "evil")
            .expect("disagreement probe");
        assert!(
            evidence
                .answer
                .contains("resolver noerror ttl 86400: A 203.0.113.66")
                && evidence
                    .answer
                    .contains("authoritative noerror ttl 3600: A 192.0.2.25")
                && evidence.answer.ends_with("poisoning suspect"),
            "{}",
            evidence.answer
        );
        // The fresh resolver matches one authoritative server (the new one): no disagreement.
        assert!(
            !round
                .probes
                .iter()
                .any(|p| p.kind.starts_with("disagreement") && p.server == "good")
        );
    }

    #[tokio::test]
    async fn servers_are_discovered_from_ns_and_failures_are_probes() {
        let mut z = zone(1, "v=spf1 -all");
        z.add("ns1.example.test", RData::A(Ipv4Addr::new(127, 0, 0, 1)));
        let z = Arc::new(z);
        let mut dead = MemoryZone::new();
        dead.set_timeout("example.test");
        let dead = Arc::new(dead);
        let mut spec = spec();
        spec.authoritative.clear();
        let round = probe_domain(&spec, &z, |_| Some(dead.clone()), &[], 0, "mx1", OPTS).await;
        assert_eq!(
            round.serials,
            [("ns1.example.test@127.0.0.1:53".into(), None)]
        );
        let soa = round
            .probes
            .iter()
            .find(|p| p.kind == "soa" && !p.server.is_empty())
            .unwrap();
        assert_eq!(soa.rcode, "timeout");
        assert!(round.consistent, "one server agrees with itself");
    }
}
