//! MX records of a domain: the hosts that receive its mail, in preference order, with their
//! addresses, and the mistakes that make senders fail or fall back.
//!
//! Why: an MX that is a CNAME, an IP literal or a name without addresses is skipped or bounced
//! by strict senders; a domain without MX gets mail on its web server's address (implicit MX);
//! a null MX (RFC 7505) says the domain takes no mail at all.
//!
//! Invariants: hosts are reported sorted by preference, then name; a failed lookup is reported
//! as unknown, never as "no address".

use std::net::IpAddr;

use serde::Serialize;

use super::finding::{Finding, Lookup, Severity, lookup};
use super::{RData, RecordType, Resolve, normalise_name};

/// The `check` of MX findings.
pub const CHECK: &str = "mx";

/// How the domain receives mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MxKind {
    /// MX records.
    Explicit,
    /// No MX: senders use the domain's own A/AAAA (RFC 5321 5.1).
    Implicit,
    /// `0 .` (RFC 7505): the domain accepts no mail.
    Null,
    /// The domain does not exist (NXDOMAIN).
    NoDomain,
}

/// One MX target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxHost {
    pub preference: u16,
    /// The exchange as published, lower case without the trailing dot.
    pub exchange: String,
    /// A and AAAA addresses (found through a CNAME too).
    pub addresses: Vec<IpAddr>,
    /// The exchange is an alias of this name (not allowed for MX targets).
    pub cname_target: Option<String>,
    /// The exchange is an IP address, not a host name.
    pub ip_literal: bool,
    /// An address lookup failed.
    pub lookup_error: Option<String>,
}

/// What [`check_mx`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxReport {
    pub domain: String,
    pub kind: MxKind,
    /// Sorted by preference, then name; empty for implicit and null MX.
    pub hosts: Vec<MxHost>,
    /// For an implicit MX: the domain's own addresses.
    pub implicit_addresses: Vec<IpAddr>,
}

impl MxReport {
    /// The names senders deliver to: the MX hosts, or the domain itself for an implicit MX
    /// (what an MTA-STS policy must cover).
    pub fn delivery_hosts(&self) -> Vec<String> {
        match self.kind {
            MxKind::Explicit => self.hosts.iter().map(|h| h.exchange.clone()).collect(),
            MxKind::Implicit => vec![self.domain.clone()],
            MxKind::Null | MxKind::NoDomain => Vec::new(),
        }
    }
}

/// Checks the MX records of `domain` and the addresses of every target.
pub async fn check_mx<R: Resolve>(domain: &str, resolver: &R) -> (MxReport, Vec<Finding>) {
    let domain = normalise_name(domain);
    let mut report = MxReport {
        domain: domain.clone(),
        kind: MxKind::Explicit,
        hosts: Vec::new(),
        implicit_addresses: Vec::new(),
    };
    let mut findings = Vec::new();
    let answer = match lookup(resolver, &domain, RecordType::Mx).await {
        Lookup::Failed(reason) => {
            findings.push(Finding::lookup_failed(
                CHECK,
                &domain,
                RecordType::Mx,
                &reason,
            ));
            return (report, findings);
        }
        Lookup::Empty { nxdomain: true } => {
            report.kind = MxKind::NoDomain;
            findings.push(Finding::error(
                CHECK,
                "mx-domain-missing",
                format!("{domain} does not exist (NXDOMAIN)"),
            ));
            return (report, findings);
        }
        Lookup::Empty { nxdomain: false } => {
            report.kind = MxKind::Implicit;
            let (addresses, error) = addresses_of(&domain, resolver, &mut findings).await;
            report.implicit_addresses = addresses;
            if report.implicit_addresses.is_empty() && error.is_none() {
                findings.push(
                    Finding::error(
                        CHECK,
                        "mx-none",
                        format!("{domain} has neither MX nor address records: mail to it bounces"),
                    )
                    .with_fix(format!(
                        "Publish {domain}. IN MX 10 <mail host>., or {domain}. IN MX 0 . if it \
                         takes no mail"
                    )),
                );
            } else if error.is_none() {
                findings.push(
                    Finding::warning(
                        CHECK,
                        "mx-implicit",
                        format!(
                            "{domain} has no MX record: senders deliver to its own address (implicit MX)"
                        ),
                    )
                    .with_fix(format!(
                        "Publish an explicit MX ({domain}. IN MX 10 <mail host>.), or a null MX \
                         ({domain}. IN MX 0 .) if the domain takes no mail"
                    )),
                );
            }
            return (report, findings);
        }
        Lookup::Found(answer) => answer,
    };
    let mut records: Vec<(u16, String)> = answer
        .data()
        .filter_map(|d| match d {
            RData::Mx {
                preference,
                exchange,
            } => Some((*preference, normalise_name(exchange))),
            _ => None,
        })
        .collect();
    records.sort();
    records.dedup();
    let (null, real): (Vec<_>, Vec<_>) = records.into_iter().partition(|(_, e)| e.is_empty());
    if let Some((preference, _)) = null.first() {
        if real.is_empty() {
            report.kind = MxKind::Null;
            findings.push(Finding::info(
                CHECK,
                "mx-null",
                format!("{domain} publishes a null MX (RFC 7505): it accepts no mail"),
            ));
            if *preference != 0 {
                findings.push(
                    Finding::warning(
                        CHECK,
                        "mx-null-preference",
                        format!("the null MX of {domain} has preference {preference}, not 0"),
                    )
                    .with_fix(format!("Publish it as {domain}. IN MX 0 .")),
                );
            }
            return (report, findings);
        }
        findings.push(
            Finding::error(
                CHECK,
                "mx-null-mixed",
                format!(
                    "{domain} publishes a null MX next to real MX records (RFC 7505 forbids it)"
                ),
            )
            .with_fix("Remove the MX 0 . record if the domain takes mail, else the others"),
        );
    }
    for (preference, exchange) in real {
        let host = check_host(preference, exchange, resolver, &mut findings).await;
        report.hosts.push(host);
    }
    check_subnets(&report, &mut findings);
    if !findings.iter().any(|f| f.severity <= Severity::Warning) {
        let names: Vec<String> = report
            .hosts
            .iter()
            .map(|h| format!("{} {}", h.preference, h.exchange))
            .collect();
        findings.push(Finding::ok(
            CHECK,
            "mx-valid",
            format!("{domain} MX: {}", names.join(", ")),
        ));
    }
    (report, findings)
}

async fn check_host<R: Resolve>(
    preference: u16,
    exchange: String,
    resolver: &R,
    findings: &mut Vec<Finding>,
) -> MxHost {
    let mut host = MxHost {
        preference,
        ip_literal: exchange
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok(),
        exchange,
        addresses: Vec::new(),
        cname_target: None,
        lookup_error: None,
    };
    let name = host.exchange.clone();
    if host.ip_literal {
        findings.push(
            Finding::error(
                CHECK,
                "mx-ip-literal",
                format!("MX target {name} is an IP address; MX must name a host"),
            )
            .with_fix(format!(
                "Give the server a name (mx1.<domain>. IN A {name}) and use it as the MX target"
            )),
        );
        return host;
    }
    match lookup(resolver, &name, RecordType::Cname).await {
        Lookup::Found(answer) => {
            host.cname_target = answer.data().find_map(|d| match d {
                RData::Cname(target) => Some(normalise_name(target)),
                _ => None,
            });
        }
        Lookup::Empty { .. } => {}
        Lookup::Failed(reason) => {
            findings.push(Finding::lookup_failed(
                CHECK,
                &name,
                RecordType::Cname,
                &reason,
            ));
        }
    }
    if let Some(target) = &host.cname_target {
        findings.push(
            Finding::error(
                CHECK,
                "mx-cname",
                format!("MX target {name} is a CNAME to {target} (RFC 2181 10.3 forbids it)"),
            )
            .with_fix(format!("Point the MX at {target} directly")),
        );
    }
    let (addresses, error) = addresses_of(&name, resolver, findings).await;
    host.addresses = addresses;
    host.lookup_error = error;
    if host.addresses.is_empty() && host.lookup_error.is_none() {
        findings.push(
            Finding::error(
                CHECK,
                "mx-no-address",
                format!("MX target {name} has no A or AAAA record: senders cannot reach it"),
            )
            .with_fix(format!(
                "Add {name}. IN A <address of the mail server>, or remove the MX"
            )),
        );
    }
    if let Some(address) = host.addresses.iter().find(|a| !is_public(**a)) {
        findings.push(
            Finding::warning(
                CHECK,
                "mx-non-public-address",
                format!("MX target {name} resolves to {address}, which is not reachable from the Internet"),
            )
            .with_fix(format!("Publish the public address of {name}")),
        );
    }
    host
}

/// A and AAAA of `name`; the error of a failed lookup (also added as a finding).
async fn addresses_of<R: Resolve>(
    name: &str,
    resolver: &R,
    findings: &mut Vec<Finding>,
) -> (Vec<IpAddr>, Option<String>) {
    let mut addresses = Vec::new();
    let mut error = None;
    for rtype in [RecordType::A, RecordType::Aaaa] {
        match lookup(resolver, name, rtype).await {
            Lookup::Found(answer) => addresses.extend(answer.data().filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(*a)),
                RData::Aaaa(a) => Some(IpAddr::V6(*a)),
                _ => None,
            })),
            Lookup::Empty { .. } => {}
            Lookup::Failed(reason) => {
                findings.push(Finding::lookup_failed(CHECK, name, rtype, &reason));
                error = Some(reason);
            }
        }
    }
    (addresses, error)
}

/// Loopback, private, link-local, unspecified and unique-local addresses.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Info when two or more MX hosts all sit in one IPv4 /24: one network failure takes all down.
fn check_subnets(report: &MxReport, findings: &mut Vec<Finding>) {
    let with_v4: Vec<Vec<[u8; 3]>> = report
        .hosts
        .iter()
        .map(|h| {
            h.addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(v4) => {
                        let [a, b, c, _] = v4.octets();
                        Some([a, b, c])
                    }
                    IpAddr::V6(_) => None,
                })
                .collect::<Vec<_>>()
        })
        .filter(|nets| !nets.is_empty())
        .collect();
    let Some(first) = with_v4.first().and_then(|nets| nets.first()) else {
        return;
    };
    if with_v4.len() >= 2 && with_v4.iter().flatten().all(|net| net == first) {
        findings.push(
            Finding::info(
                CHECK,
                "mx-single-subnet",
                format!(
                    "all {} MX hosts of {} are in {}.{}.{}.0/24",
                    with_v4.len(),
                    report.domain,
                    first[0],
                    first[1],
                    first[2]
                ),
            )
            .with_fix("For redundancy, place a backup MX in another network"),
        );
    }
}
