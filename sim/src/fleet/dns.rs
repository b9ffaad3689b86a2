//! The DNS and reputation probes of a real agent ([`mailpulse_agent::dns`]) on every simulated
//! host, run against a modelled DNS of the fleet.
//!
//! Each host's agent is configured as a mail administrator would configure it: it monitors the
//! host's sending domain (the first of its `local_domains`, plus any other domain a `dns_change`
//! incident of the host names) with DKIM selector `mail`, compares one recursive resolver
//! (`resolver@127.0.0.1:53`) with the authoritative servers, and checks its two sending addresses
//! (the main instance's and `postfix-out`'s) against the default DNS lists. Every
//! `interval_secs` of the agent's default DNS configuration (300 s), each domain and each address
//! gets a round at its own phase within the interval (the agent's [`phase`] of its name), so a
//! window holds a round of a target only when that phase falls into it, as with the agent.
//!
//! The rounds run the agent's own code ([`probe_domain`] and [`domain_findings`] per domain,
//! [`ip_reputation`] per address) over in-memory zones, so metric names, labels, value shapes,
//! normalised answers and their hashes are the agent's. The modelled DNS:
//!
//! - the domain's zone: SOA (serial `YYYYMMDD01` of the scenario's start, plus one per change),
//!   NS `ns1.<domain>` (192.0.2.53) and `ns2.<domain>` (192.0.2.54), MX the first two hosts that
//!   send for the domain, an A record per host and per `postfix-out` name, SPF (the `/24`s of the
//!   fleet's sending addresses, `-all`), DMARC at `p=none` with aggregate reports (the common
//!   first step of a DMARC deployment: one warning), an RSA-2048 DKIM key, a TLS-RPT address;
//! - PTR records of the sending addresses, confirmed by the A records above; Sender Score
//!   85–95 per address, moving by a point from day to day; no DNS list lists anyone.
//!
//! The agent finds the authoritative servers from the NS set, so they are labelled
//! `ns1.<domain>@192.0.2.53:53` and `ns2.<domain>@192.0.2.54:53`; the default and the compared
//! resolver answer what `ns1` serves.
//!
//! Incidents:
//! - `dns_change`: from its start `ns2` serves the next version of the zone (a new sending network
//!   in the SPF record, the serial one higher); `ns1` and the resolvers follow at its end. In
//!   between, `dns_propagation_consistent` is 0 and the servers' `dns_soa_serial` differ, and
//!   `ns2`'s `soa` and `txt` probes carry the new answers first;
//! - `ip_blocklisted`: while active, the host's main address is listed (`127.0.0.2`) on the
//!   incident's blocklist when that is one of the agent's default lists (`dnsbl_listed` 1), and
//!   its Sender Score is about 40.
//!
//! Determinism: the agent's code runs once per distinct state of a host's DNS (the versions each
//! server serves, the listings, the score) and its output is stamped with each round's time. The
//! latencies the agent measures come from a seeded model instead: about 1.5 ms for the
//! resolvers, 9 ms and 14 ms for `ns1` and `ns2`, log-normally jittered per probe; the
//! `dns_probe_latency_seconds` histograms are rebuilt from them as the agent builds them.
//!
//! [`phase`]: mailpulse_agent::dns::schedule::phase
//! [`probe_domain`]: mailpulse_agent::dns::probe::probe_domain
//! [`domain_findings`]: mailpulse_agent::dns::reputation::domain_findings
//! [`ip_reputation`]: mailpulse_agent::dns::reputation::ip_reputation

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mailpulse_agent::aggregate::window_start;
use mailpulse_agent::dns::config::{DnsConfig, DomainSpec};
use mailpulse_agent::dns::dnsbl::{DnsList, ListKind, default_lists, query_name};
use mailpulse_agent::dns::probe::{LATENCY_BOUNDS_SECS, ProbeOptions, Server, probe_domain};
use mailpulse_agent::dns::reputation::{domain_findings, ip_reputation};
use mailpulse_agent::dns::schedule::phase;
use mailpulse_agent::dns::{MemoryZone, RData, normalise_name, senderscore};
use mailpulse_agent::parse::time::civil_from_days;
use mailpulse_proto::v1 as pb;

use super::Scenario;
use super::incident::Effect;
use crate::synth::format::Ip;
use crate::synth::rng::Rng;

const SECOND: i64 = 1_000_000;

/// Addresses of the authoritative servers of every simulated domain (TEST-NET-1).
pub const NS1_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
pub const NS2_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 54);
/// Label of the recursive resolver each agent compares with the authoritative servers.
pub const RESOLVER_LABEL: &str = "resolver@127.0.0.1:53";
/// DKIM selector of every simulated domain.
pub const DKIM_SELECTOR: &str = "mail";
/// How long the second server of a `dns_change` lags when the incident gives no `end`.
pub const DNS_CHANGE_LAG_SECS: i64 = 600;

/// An RSA-2048 public key (a DKIM key of the usual size; nothing is signed with it).
const DKIM_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1NeUYYsAa9FjZH71VhxHfilYvxaeKkkHT/NAZdT0OlmcLWGaGUGTlckRVSjvQF5z9KhY7Nm/wKPQpO1LW3/AWFJMkjFCz1RWNFYvhmxPrYueWpWsIdCuXEhmZl9Oq3mA/U5lC6MHPMwzKQ4L4yfIjgNJKAuz3EZNh0xousDwslVd1R/1bYf6lk0p0lMPDKhWj27tVHxpDMADFVBlKZfUy8L7/MLvfxhbLWC+GwHWWpQNbHondwaSOPypCYnknECk7EtjnmURNU0Og++UeUkhc07FQqkQzUVvlLc/th/BqJabB29UHqMp1oO1TpBnNo95uTvskFS9zgoUwdByLz/9vQIDAQAB";

/// Median latencies (seconds) of the default and compared resolvers, `ns1` and `ns2`.
const RESOLVER_LATENCY_SECS: f64 = 0.0015;
const NS1_LATENCY_SECS: f64 = 0.009;
const NS2_LATENCY_SECS: f64 = 0.014;
/// Standard deviation of the log of a probe's latency.
const LATENCY_SIGMA: f64 = 0.35;

/// The DNS interval of the agent's default configuration, in seconds.
pub fn dns_interval_secs() -> u64 {
    DnsConfig::default().interval_secs.max(1)
}

/// One monitored domain as the fleet publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DomainZone {
    name: String,
    base_serial: u32,
    /// MX targets, most preferred first.
    mx: Vec<String>,
    /// A records (name, address).
    hosts: Vec<(String, Ipv4Addr)>,
    /// Networks (`/24`, first address) the SPF record authorises.
    networks: BTreeSet<Ipv4Addr>,
}

impl DomainZone {
    /// Adds the zone's records as of `version` (0: before any change) to `zone`.
    fn add_to(&self, zone: &mut MemoryZone, version: u32) {
        let d = &self.name;
        zone.add_with_ttl(
            d,
            3600,
            RData::Soa {
                mname: format!("ns1.{d}"),
                rname: format!("hostmaster.{d}"),
                serial: self.base_serial.wrapping_add(version),
                refresh: 7200,
                retry: 900,
                expire: 1_209_600,
                minimum: 300,
            },
        );
        for ns in ["ns1", "ns2"] {
            zone.add_with_ttl(d, 86_400, RData::Ns(format!("{ns}.{d}")));
        }
        zone.add_with_ttl(&format!("ns1.{d}"), 86_400, RData::A(NS1_ADDR))
            .add_with_ttl(&format!("ns2.{d}"), 86_400, RData::A(NS2_ADDR));
        for (i, mx) in self.mx.iter().enumerate() {
            zone.add(
                d,
                RData::Mx {
                    preference: 10 * (i as u16 + 1),
                    exchange: mx.clone(),
                },
            );
        }
        for (name, ip) in &self.hosts {
            zone.add(name, RData::A(*ip));
        }
        zone.add_txt(d, &self.spf(version))
            .add_txt(
                &format!("_dmarc.{d}"),
                &format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{d}"),
            )
            .add_txt(
                &format!("_smtp._tls.{d}"),
                &format!("v=TLSRPTv1; rua=mailto:tls-reports@{d}"),
            );
        // Longer than one character-string: split as zone files do.
        let dkim = format!("v=DKIM1; k=rsa; p={DKIM_KEY}");
        let parts = dkim
            .as_bytes()
            .chunks(250)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>();
        zone.add(
            &format!("{DKIM_SELECTOR}._domainkey.{d}"),
            RData::Txt(parts),
        );
    }

    /// The SPF record of `version`: every change adds another `/28` of 203.0.113.0/24.
    fn spf(&self, version: u32) -> String {
        let mut spf = String::from("v=spf1");
        for net in &self.networks {
            spf.push_str(&format!(" ip4:{net}/24"));
        }
        if version > 0 {
            let block = (version - 1) % 16 * 16;
            spf.push_str(&format!(" ip4:203.0.113.{block}/28"));
        }
        spf.push_str(" -all");
        spf
    }
}

/// A `dns_change` of one monitored domain as one host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    /// Index into the host's domains.
    domain: usize,
    start_us: i64,
    end_us: i64,
}

/// An `ip_blocklisted` incident of the host's main address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listing {
    zone: String,
    start_us: i64,
    end_us: i64,
}

/// What a domain round depends on: the zone versions `ns1` (and the resolvers) and `ns2` serve.
type DomainState = (usize, u32, u32);
/// What an address round depends on: the address, the lists that list it, its score.
type AddressState = (usize, Vec<String>, u8);

/// The output of the agent's code for one state, stamped again for every round.
#[derive(Debug, Clone)]
struct Template {
    samples: Vec<pb::Sample>,
    probes: Vec<pb::Probe>,
}

/// One host's DNS probes; see the module documentation.
#[derive(Debug)]
pub(crate) struct HostDns {
    host: String,
    /// Start of the scenario (µs): no round before it.
    start_us: i64,
    seed: u64,
    interval_us: i64,
    domains: Vec<DomainZone>,
    /// Per domain: the phase of its rounds within the interval (µs).
    domain_phase_us: Vec<i64>,
    changes: Vec<Change>,
    /// Main address first, then `postfix-out`'s.
    addresses: Vec<Ipv4Addr>,
    address_phase_us: Vec<i64>,
    /// Per address: the usual Sender Score.
    base_score: Vec<u8>,
    /// PTR records (reversed-address name, host name).
    ptrs: Vec<(IpAddr, String)>,
    listings: Vec<Listing>,
    lists: Vec<DnsList>,
    domain_cache: BTreeMap<DomainState, Template>,
    address_cache: BTreeMap<AddressState, Template>,
}

/// Most cached states per host; beyond that the cache starts over (states repeat rarely).
const MAX_CACHED: usize = 256;

/// The DNS name of host `host` in `domain` (`mx1` → `mx1.example.org`; a name already in the
/// domain is kept).
fn host_fqdn(host: &str, domain: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host == domain || host.ends_with(&format!(".{domain}")) {
        host
    } else {
        format!("{host}.{domain}")
    }
}

/// `YYYYMMDD01` of the day of `unix_secs`.
fn date_serial(unix_secs: i64) -> u32 {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let serial = i64::from(y) * 1_000_000 + i64::from(m) * 10_000 + i64::from(d) * 100 + 1;
    u32::try_from(serial).unwrap_or(1)
}

fn v4(ip: Ip) -> Ipv4Addr {
    Ipv4Addr::from(ip.0)
}

impl Scenario {
    /// The domains the agent on host `index` monitors: its sending domain, then the other
    /// domains its `dns_change` incidents name.
    pub(crate) fn monitored_domains(&self, index: usize) -> Vec<String> {
        let Some(host) = self.hosts.get(index) else {
            return Vec::new();
        };
        let mut out = vec![normalise_name(&host.local_domains[0])];
        for incident in self.incidents.iter().filter(|i| i.hosts.contains(&index)) {
            if let Effect::DnsChange {
                domain: Some(domain),
            } = &incident.effect
            {
                let domain = normalise_name(domain);
                if !out.contains(&domain) {
                    out.push(domain);
                }
            }
        }
        out
    }

    /// The domain a `dns_change` incident changes on host `index`: its own, else the host's
    /// sending domain.
    pub(crate) fn changed_domain(&self, own: Option<&String>, index: usize) -> String {
        match own {
            Some(domain) => normalise_name(domain),
            None => normalise_name(&self.hosts[index].local_domains[0]),
        }
    }

    /// The zone of `domain` as the fleet publishes it.
    fn domain_zone(&self, domain: &str, monitors: &[Vec<String>]) -> DomainZone {
        let senders: Vec<usize> = (0..self.hosts.len())
            .filter(|&h| monitors[h].iter().any(|d| d == domain))
            .collect();
        let mut hosts = Vec::new();
        let mut networks = BTreeSet::new();
        for &h in &senders {
            let plan = &self.hosts[h];
            let name = host_fqdn(&plan.name, domain);
            let out_name = host_fqdn(&format!("{}-out", plan.name), domain);
            for ip in [plan.main_ip, plan.out_ip] {
                networks.insert(Ipv4Addr::from(ip.0 & 0xFFFF_FF00));
            }
            hosts.push((name, v4(plan.main_ip)));
            hosts.push((out_name, v4(plan.out_ip)));
        }
        let mx = senders
            .iter()
            .take(2)
            .map(|&h| host_fqdn(&self.hosts[h].name, domain))
            .collect();
        DomainZone {
            name: domain.to_owned(),
            base_serial: date_serial(self.start_unix_secs()),
            mx,
            hosts,
            networks,
        }
    }

    /// The DNS probes of host `index` (`None` past the last host).
    pub(crate) fn host_dns(&self, index: usize) -> Option<HostDns> {
        let plan = self.hosts.get(index)?;
        let monitors: Vec<Vec<String>> = (0..self.hosts.len())
            .map(|h| self.monitored_domains(h))
            .collect();
        let names = &monitors[index];
        let domains: Vec<DomainZone> = names
            .iter()
            .map(|d| self.domain_zone(d, &monitors))
            .collect();
        let interval = Duration::from_secs(dns_interval_secs());
        let phase_us = |name: &str| phase(name, interval).as_micros() as i64;
        let mut changes = Vec::new();
        let mut listings = Vec::new();
        for incident in self.incidents.iter().filter(|i| i.hosts.contains(&index)) {
            match &incident.effect {
                Effect::DnsChange { domain } => {
                    let name = self.changed_domain(domain.as_ref(), index);
                    if let Some(d) = names.iter().position(|n| *n == name) {
                        changes.push(Change {
                            domain: d,
                            start_us: incident.start_us,
                            end_us: incident.end_us,
                        });
                    }
                }
                Effect::IpBlocklisted { blocklist, .. } => listings.push(Listing {
                    zone: normalise_name(blocklist),
                    start_us: incident.start_us,
                    end_us: incident.end_us,
                }),
                _ => {}
            }
        }
        let addresses = vec![v4(plan.main_ip), v4(plan.out_ip)];
        let mut rng = Rng::new(self.seed ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let base_score = addresses.iter().map(|_| rng.range(86, 94) as u8).collect();
        let ptrs = vec![
            (IpAddr::V4(addresses[0]), host_fqdn(&plan.name, &names[0])),
            (
                IpAddr::V4(addresses[1]),
                host_fqdn(&format!("{}-out", plan.name), &names[0]),
            ),
        ];
        Some(HostDns {
            host: plan.name.clone(),
            start_us: self.start_us,
            seed: rng.next_u64(),
            interval_us: interval.as_micros() as i64,
            domain_phase_us: names.iter().map(|d| phase_us(d)).collect(),
            domains,
            changes,
            address_phase_us: addresses.iter().map(|a| phase_us(&a.to_string())).collect(),
            addresses,
            base_score,
            ptrs,
            listings,
            lists: default_lists(),
            domain_cache: BTreeMap::new(),
            address_cache: BTreeMap::new(),
        })
    }
}

/// Samples and probes of the rounds of one window.
#[derive(Debug, Default)]
pub(crate) struct DnsWindow {
    pub(crate) samples: Vec<pb::Sample>,
    pub(crate) probes: Vec<pb::Probe>,
}

impl HostDns {
    /// The rounds that start in `[from, to)` (Unix seconds), stamped with windows of
    /// `window_secs`, in time order; the probes only `with_probes` (the samples are the same).
    pub(crate) fn rounds(
        &mut self,
        from: i64,
        to: i64,
        window_secs: u32,
        with_probes: bool,
    ) -> DnsWindow {
        let from_us = from.saturating_mul(SECOND).max(self.start_us);
        let to_us = to.saturating_mul(SECOND);
        let mut due: Vec<(i64, Target)> = Vec::new();
        for (i, &p) in self.domain_phase_us.iter().enumerate() {
            due.extend(times(from_us, to_us, self.interval_us, p).map(|t| (t, Target::Domain(i))));
        }
        for (i, &p) in self.address_phase_us.iter().enumerate() {
            due.extend(times(from_us, to_us, self.interval_us, p).map(|t| (t, Target::Address(i))));
        }
        due.sort_unstable();
        let mut out = DnsWindow::default();
        for (at_us, target) in due {
            let template = match target {
                Target::Domain(d) => {
                    let key = self.domain_state(d, at_us);
                    &self.domain_cache[&key]
                }
                Target::Address(a) => {
                    let key = self.address_state(a, at_us);
                    &self.address_cache[&key]
                }
            };
            let round = Round {
                seed: self.seed,
                at_us,
                window_secs,
            };
            round.stamp(template, with_probes, &mut out);
        }
        out
    }

    /// The versions `ns1` and `ns2` serve of domain `d` at `at` (µs).
    fn versions(&self, d: usize, at: i64) -> (u32, u32) {
        let mut v = (0, 0);
        for c in self.changes.iter().filter(|c| c.domain == d) {
            if c.end_us <= at {
                v.0 += 1;
            }
            if c.start_us <= at {
                v.1 += 1;
            }
        }
        v
    }

    /// The Sender Score of address `a` at `at` (µs).
    fn score(&self, a: usize, at: i64) -> u8 {
        let day = at.div_euclid(86_400 * SECOND) as u64;
        let mut rng = Rng::new(self.seed ^ day.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ a as u64);
        if a == 0
            && self
                .listings
                .iter()
                .any(|l| l.start_us <= at && at < l.end_us)
        {
            return rng.range(36, 44) as u8;
        }
        let step = rng.range(0, 2) as i16 - 1;
        (i16::from(self.base_score[a]) + step).clamp(0, 100) as u8
    }

    /// The state of domain `d`'s round at `at` (µs), its template computed when new.
    fn domain_state(&mut self, d: usize, at: i64) -> DomainState {
        let (v1, v2) = self.versions(d, at);
        let key = (d, v1, v2);
        if self.domain_cache.contains_key(&key) {
            return key;
        }
        let domain = &self.domains[d];
        let mut ns1 = MemoryZone::new();
        domain.add_to(&mut ns1, v1);
        let mut ns2 = MemoryZone::new();
        domain.add_to(&mut ns2, v2);
        // The resolvers answer what ns1 serves.
        let resolver = &ns1;
        let spec = DomainSpec {
            domain: domain.name.clone(),
            dkim_selectors: vec![DKIM_SELECTOR.to_owned()],
            authoritative: Vec::new(),
        };
        let ns1_addr = SocketAddr::new(IpAddr::V4(NS1_ADDR), 53);
        let ns2_addr = SocketAddr::new(IpAddr::V4(NS2_ADDR), 53);
        let connect = |addr: SocketAddr| {
            if addr == ns1_addr {
                Some(&ns1)
            } else if addr == ns2_addr {
                Some(&ns2)
            } else {
                None
            }
        };
        let resolvers = [Server {
            label: RESOLVER_LABEL.to_owned(),
            resolver,
        }];
        let options = ProbeOptions {
            dnssec: false,
            window_secs: 1,
        };
        let ips: Vec<IpAddr> = self.addresses.iter().map(|a| IpAddr::V4(*a)).collect();
        let mut round = run_ready(probe_domain(
            &spec, &resolver, connect, &resolvers, 0, &self.host, options,
        ));
        round.samples.extend(run_ready(domain_findings(
            &spec, &ips, &resolver, &self.host, 0, 1,
        )));
        let template = Template {
            samples: round.samples,
            probes: round.probes,
        };
        if self.domain_cache.len() >= MAX_CACHED {
            self.domain_cache.clear();
        }
        self.domain_cache.insert(key, template);
        key
    }

    /// The state of address `a`'s round at `at` (µs), its template computed when new.
    fn address_state(&mut self, a: usize, at: i64) -> AddressState {
        let listed: Vec<String> = if a == 0 {
            let mut zones: Vec<String> = self
                .listings
                .iter()
                .filter(|l| l.start_us <= at && at < l.end_us)
                .map(|l| l.zone.clone())
                .collect();
            zones.sort();
            zones.dedup();
            zones
        } else {
            Vec::new()
        };
        let score = self.score(a, at);
        let key = (a, listed, score);
        if self.address_cache.contains_key(&key) {
            return key;
        }
        let ip = IpAddr::V4(self.addresses[a]);
        let mut zone = MemoryZone::new();
        for domain in &self.domains {
            domain.add_to(&mut zone, 0);
        }
        for (addr, name) in &self.ptrs {
            zone.add_with_ttl(
                &mailpulse_agent::dns::reverse::ptr_query_name(*addr),
                86_400,
                RData::Ptr(name.clone()),
            );
        }
        for list in self
            .lists
            .iter()
            .filter(|l| l.kind == ListKind::Block && key.1.contains(&normalise_name(&l.zone)))
        {
            zone.add_with_ttl(
                &query_name(ip, &list.zone),
                300,
                RData::A(Ipv4Addr::new(127, 0, 0, 2)),
            );
        }
        zone.add(
            &query_name(ip, senderscore::ZONE),
            RData::A(Ipv4Addr::new(127, 0, 4, score)),
        );
        let samples = run_ready(ip_reputation(ip, &self.lists, &zone, &self.host, 0, 1));
        let template = Template {
            samples,
            probes: Vec::new(),
        };
        if self.address_cache.len() >= MAX_CACHED {
            self.address_cache.clear();
        }
        self.address_cache.insert(key.clone(), template);
        key
    }
}

/// One round of a target: when, and in windows of which length.
struct Round {
    seed: u64,
    at_us: i64,
    window_secs: u32,
}

impl Round {
    /// `template` as this round gives it: samples in the window of the round's time, probes
    /// (`with_probes`) at that time, modelled latencies and the latency histograms rebuilt from
    /// them.
    fn stamp(&self, template: &Template, with_probes: bool, out: &mut DnsWindow) {
        let at_ms = self.at_us.div_euclid(1000);
        let window_ms =
            window_start(self.at_us.div_euclid(SECOND), self.window_secs).saturating_mul(1000);
        let mut rng = Rng::new(self.seed ^ (self.at_us as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        // Disagreement evidence is no lookup of its own: the agent gives it no latency.
        let latencies: Vec<f64> = template
            .probes
            .iter()
            .map(|p| {
                if p.kind.starts_with("disagreement:") {
                    return 0.0;
                }
                let median = if p.server.starts_with("ns1.") {
                    NS1_LATENCY_SECS
                } else if p.server.starts_with("ns2.") {
                    NS2_LATENCY_SECS
                } else {
                    RESOLVER_LATENCY_SECS
                };
                rng.log_normal(median.ln(), LATENCY_SIGMA)
            })
            .collect();
        for s in &template.samples {
            let mut s = s.clone();
            s.window_start_unix_ms = window_ms;
            s.window_secs = self.window_secs;
            if s.metric == "dns_probe_latency_seconds"
                && let Some(kind) = s.labels.iter().find(|l| l.name == "kind")
            {
                s.value = Some(pb::sample::Value::Histogram(latency_histogram(
                    &template.probes,
                    &latencies,
                    &kind.value,
                )));
            }
            out.samples.push(s);
        }
        if with_probes {
            out.probes
                .extend(
                    template
                        .probes
                        .iter()
                        .zip(&latencies)
                        .map(|(p, &latency)| pb::Probe {
                            at_unix_ms: at_ms,
                            latency_secs: latency,
                            ..p.clone()
                        }),
                );
        }
    }
}

/// What a round is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Domain(usize),
    Address(usize),
}

/// The times `k * interval + phase` in `[from, to)`.
fn times(from: i64, to: i64, interval: i64, phase: i64) -> impl Iterator<Item = i64> {
    let first = (from - phase).div_euclid(interval) * interval + phase;
    let first = if first < from {
        first + interval
    } else {
        first
    };
    (0..)
        .map(move |k| first + k * interval)
        .take_while(move |&t| t < to)
}

/// The agent's latency histogram of the probes of kind family `family` (`dkim:mail` is `dkim`;
/// disagreement evidence is not a probe of its own), with `latencies` (one per probe).
fn latency_histogram(probes: &[pb::Probe], latencies: &[f64], family: &str) -> pb::Histogram {
    let mut counts = vec![0; LATENCY_BOUNDS_SECS.len() + 1];
    let mut sum = 0.0;
    for (p, &latency) in probes.iter().zip(latencies) {
        let kind = p.kind.split_once(':').map_or(p.kind.as_str(), |(f, _)| f);
        if p.kind.starts_with("disagreement:") || kind != family {
            continue;
        }
        counts[LATENCY_BOUNDS_SECS.partition_point(|&b| b < latency)] += 1;
        sum += latency;
    }
    pb::Histogram {
        bounds: LATENCY_BOUNDS_SECS.to_vec(),
        counts,
        sum,
    }
}

/// Most polls of a probe future: over in-memory zones every lookup is ready at once.
const MAX_POLLS: usize = 10_000;

/// Runs a future of the agent's DNS code over in-memory zones to completion.
///
/// Panics when it does not complete: that would mean the agent's code waits for something other
/// than the zones (a timer, a socket), which a simulation cannot give it.
fn run_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a DNS probe over in-memory zones did not complete")
}

#[cfg(test)]
mod tests;
