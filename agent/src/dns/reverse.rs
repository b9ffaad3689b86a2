//! Reverse DNS of a sending IP: its PTR names, whether each name's A/AAAA leads back to the IP
//! (forward-confirmed reverse DNS, FCrDNS), and whether a name looks like a generic ISP name.
//!
//! Why: large receivers reject or junk mail from IPs without FCrDNS, and treat generic names
//! (`dsl-192-0-2-1.pool.isp.example`) as end-user machines that should not send directly.
//!
//! Invariants: a failed forward lookup is reported as unknown, not as "not confirmed"; the
//! generic-name heuristic ([`looks_generic`]) is a warning only, because some real servers carry
//! such names.

use std::net::IpAddr;

use serde::Serialize;

use super::dnsbl::reversed_ip;
use super::finding::{Finding, Lookup, lookup};
use super::{RData, RecordType, Resolve, normalise_name};

/// The `check` of reverse DNS findings.
pub const CHECK: &str = "fcrdns";

/// Label words that mark dynamic or end-user address ranges.
const GENERIC_WORDS: &[&str] = &[
    "dynamic",
    "dyn",
    "dynip",
    "dhcp",
    "pool",
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "sdsl",
    "cable",
    "dialup",
    "dial",
    "ppp",
    "pppoe",
    "broadband",
    "customer",
    "cust",
    "client",
    "clients",
    "subscriber",
    "residential",
    "unassigned",
];

/// One PTR name and its forward confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PtrName {
    pub name: String,
    /// The name's A (for an IPv4 address) or AAAA (IPv6) records.
    pub addresses: Vec<IpAddr>,
    /// `addresses` contains the IP.
    pub confirmed: bool,
    /// The forward lookup failed (then `confirmed` is false and unknown).
    pub lookup_error: Option<String>,
    /// The name looks like a generic ISP name ([`looks_generic`]).
    pub generic: bool,
}

/// What [`check_reverse`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReverseDns {
    pub ip: IpAddr,
    /// `<reversed>.in-addr.arpa` or `<nibbles>.ip6.arpa`.
    pub ptr_query: String,
    pub names: Vec<PtrName>,
}

impl ReverseDns {
    /// At least one PTR name leads back to the IP.
    pub fn forward_confirmed(&self) -> bool {
        self.names.iter().any(|n| n.confirmed)
    }
}

/// The PTR query name of `ip`.
pub fn ptr_query_name(ip: IpAddr) -> String {
    let zone = if ip.is_ipv4() {
        "in-addr.arpa"
    } else {
        "ip6.arpa"
    };
    format!("{}.{zone}", reversed_ip(ip))
}

/// Whether `name` looks like an ISP's generic name for `ip`: it embeds the address (IPv4 octets
/// in either order, zero-padded or hex; the last four IPv6 groups) or has a label word such as
/// `dynamic`, `dhcp`, `pool` or `dsl`.
pub fn looks_generic(name: &str, ip: IpAddr) -> bool {
    let name = normalise_name(name);
    let words = name
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    if words.clone().any(|w| GENERIC_WORDS.contains(&w)) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            let octets = v4.octets();
            let numbers: Vec<u32> = name
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty() && s.len() <= 3)
                .filter_map(|s| s.parse().ok())
                .collect();
            let forward: Vec<u32> = octets.iter().map(|&o| u32::from(o)).collect();
            let backward: Vec<u32> = forward.iter().rev().copied().collect();
            let padded: String = octets.iter().map(|o| format!("{o:03}")).collect();
            let hex: String = octets.iter().map(|o| format!("{o:02x}")).collect();
            numbers.windows(4).any(|w| w == forward || w == backward)
                || name.contains(&padded)
                || name.contains(&hex)
        }
        IpAddr::V6(v6) => {
            let groups: Vec<String> = v6.segments()[4..]
                .iter()
                .map(|g| format!("{g:x}"))
                .collect();
            let runs: Vec<&str> = name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|s| !s.is_empty())
                .collect();
            runs.windows(4).any(|w| w == groups.as_slice())
        }
    }
}

/// Looks up the PTR names of `ip` and forward-confirms each.
pub async fn check_reverse<R: Resolve>(ip: IpAddr, resolver: &R) -> (ReverseDns, Vec<Finding>) {
    let ptr_query = ptr_query_name(ip);
    let mut report = ReverseDns {
        ip,
        ptr_query: ptr_query.clone(),
        names: Vec::new(),
    };
    let mut findings = Vec::new();
    let answer = match lookup(resolver, &ptr_query, RecordType::Ptr).await {
        Lookup::Failed(reason) => {
            findings.push(Finding::lookup_failed(
                CHECK,
                &ptr_query,
                RecordType::Ptr,
                &reason,
            ));
            return (report, findings);
        }
        Lookup::Empty { .. } => {
            findings.push(
                Finding::error(
                    CHECK,
                    "ptr-missing",
                    format!("{ip} has no PTR record: many receivers reject its mail"),
                )
                .with_fix(format!(
                    "Ask the owner of {ip}'s address block (hosting provider or ISP) to set its \
                     PTR to the server's HELO name, e.g. mail.<your domain>, and give that name \
                     an A/AAAA record pointing to {ip}"
                )),
            );
            return (report, findings);
        }
        Lookup::Found(answer) => answer,
    };
    let mut names: Vec<String> = answer
        .data()
        .filter_map(|d| match d {
            RData::Ptr(name) => Some(normalise_name(name)),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    if names.len() > 1 {
        findings.push(
            Finding::warning(
                CHECK,
                "ptr-multiple",
                format!(
                    "{ip} has {} PTR names ({}); receivers may use any one",
                    names.len(),
                    names.join(", ")
                ),
            )
            .with_fix("Keep one PTR record: the name the server uses in HELO"),
        );
    }
    let forward_type = if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::Aaaa
    };
    for name in names {
        let mut ptr = PtrName {
            generic: looks_generic(&name, ip),
            name,
            addresses: Vec::new(),
            confirmed: false,
            lookup_error: None,
        };
        match lookup(resolver, &ptr.name, forward_type).await {
            Lookup::Found(answer) => {
                ptr.addresses = answer
                    .data()
                    .filter_map(|d| match d {
                        RData::A(a) => Some(IpAddr::V4(*a)),
                        RData::Aaaa(a) => Some(IpAddr::V6(*a)),
                        _ => None,
                    })
                    .collect();
                ptr.confirmed = ptr.addresses.contains(&ip);
            }
            Lookup::Empty { .. } => {}
            Lookup::Failed(reason) => {
                findings.push(Finding::lookup_failed(
                    CHECK,
                    &ptr.name,
                    forward_type,
                    &reason,
                ));
                ptr.lookup_error = Some(reason);
            }
        }
        report.names.push(ptr);
    }
    let any_confirmed = report.forward_confirmed();
    for ptr in &report.names {
        if !ptr.confirmed && ptr.lookup_error.is_none() {
            let message = format!(
                "PTR {} of {ip} is not forward-confirmed: its {} records are [{}]",
                ptr.name,
                forward_type.name(),
                ptr.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let fix = format!(
                "Add {} {} {ip}, or point the PTR to a name that resolves to {ip}",
                ptr.name,
                forward_type.name()
            );
            findings.push(if any_confirmed {
                Finding::warning(CHECK, "fcrdns-not-confirmed", message).with_fix(fix)
            } else {
                Finding::error(CHECK, "fcrdns-not-confirmed", message).with_fix(fix)
            });
        }
        if ptr.generic {
            findings.push(
                Finding::warning(
                    CHECK,
                    "ptr-generic",
                    format!("PTR {} of {ip} looks like a generic ISP name", ptr.name),
                )
                .with_fix(format!(
                    "Set the PTR of {ip} to a name of your own domain that names the mail server \
                     (mail.<your domain>), with a matching A/AAAA record"
                )),
            );
        }
    }
    if let Some(ptr) = report.names.iter().find(|n| n.confirmed && !n.generic) {
        findings.push(Finding::ok(
            CHECK,
            "fcrdns-confirmed",
            format!("{ip} ↔ {} is forward-confirmed", ptr.name),
        ));
    }
    (report, findings)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn generic_names_embed_the_address_or_a_dynamic_word() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        for generic in [
            "192-0-2-1.static.isp.example",
            "host1.2.0.192.isp.example",
            "c0000201.isp.example",
            "ip192000002001.isp.example",
            "adsl123.pool.isp.example",
            "dhcp-7.isp.example",
        ] {
            assert!(looks_generic(generic, ip), "{generic} should look generic");
        }
        for specific in [
            "mail.example.com",
            "mx1.example.net",
            "smtp2.mailpool42.example",
        ] {
            assert!(
                !looks_generic(specific, ip),
                "{specific} should not look generic"
            );
        }
        let v6 = IpAddr::V6("2001:db8::a:b:c:d".parse::<Ipv6Addr>().unwrap());
        assert!(looks_generic("2001-db8-0-0-a-b-c-d.isp.example", v6));
        assert!(!looks_generic("mail.example.com", v6));
        assert_eq!(ptr_query_name(ip), "1.2.0.192.in-addr.arpa");
    }
}
