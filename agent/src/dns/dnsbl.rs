//! DNS blocklists and allowlists: is a sending IP listed, and what does the listing mean.
//!
//! Why: a listing on a widely used blocklist gets the fleet's mail rejected or spam-foldered at
//! many receivers at once; it is usually the first visible symptom of a compromised account.
//!
//! A list is asked `<reversed IP>.<zone>` A (IPv4 octets reversed, IPv6 as 32 reversed nibbles).
//! NXDOMAIN (or NODATA) means not listed. An answer is read with the list's [`ReturnCodes`]:
//! Spamhaus ZEN sub-lists, DNSWL trust levels, or "any 127.0.0.x is a listing". Answers that
//! say the *query* was refused (Spamhaus `127.255.255.x`, DNSWL `127.0.0.255`) and answers
//! outside 127.0.0.0/8 (a resolver rewriting NXDOMAIN) are errors, never listings: the state is
//! then unknown, and reporting a listing (or a clean bill) would be wrong.
//!
//! Lists are queried concurrently through the one [`Resolve`]r; Spamhaus and most others
//! refuse queries from public resolvers, so it should be the host's own recursive resolver.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::task::Poll;

use serde::{Deserialize, Serialize};

use super::finding::{Finding, Lookup, lookup};
use super::{RData, RecordType, Resolve, normalise_name};

/// The `check` of DNSBL and DNSWL findings.
pub const CHECK: &str = "dnsbl";

/// Whether a listing is bad or good news.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    /// A blocklist (DNSBL): listed means mail is rejected.
    Block,
    /// An allowlist (DNSWL): listed means mail is trusted.
    Allow,
}

/// How a list's answers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnCodes {
    /// Spamhaus ZEN: SBL, CSS, XBL, DROP and PBL codes; 127.255.255.x are query errors.
    SpamhausZen,
    /// DNSWL: 127.0.<category>.<trust 0-3>; 127.0.0.255 is a query error.
    Dnswl,
    /// Any 127.0.0.x is a listing.
    Generic,
}

/// One DNS list to query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsList {
    /// Display name (`Spamhaus ZEN`).
    pub name: String,
    /// The DNS zone (`zen.spamhaus.org`).
    pub zone: String,
    pub kind: ListKind,
    #[serde(default = "generic_codes")]
    pub codes: ReturnCodes,
    /// The list answers for IPv6 addresses (others are not asked for them).
    #[serde(default = "yes")]
    pub ipv6: bool,
    /// Where listed addresses are looked up and removal is requested.
    #[serde(default)]
    pub removal_url: Option<String>,
}

fn generic_codes() -> ReturnCodes {
    ReturnCodes::Generic
}

fn yes() -> bool {
    true
}

/// The default lists: Spamhaus ZEN, SpamCop, Barracuda, UCEPROTECT level 1, PSBL, Mailspike
/// (blocklists) and DNSWL (allowlist). Several require registration or refuse public resolvers.
pub fn default_lists() -> Vec<DnsList> {
    let list = |name: &str, zone: &str, kind, codes, ipv6, url: &str| DnsList {
        name: name.to_owned(),
        zone: zone.to_owned(),
        kind,
        codes,
        ipv6,
        removal_url: Some(url.to_owned()),
    };
    use ListKind::{Allow, Block};
    use ReturnCodes::{Dnswl, Generic, SpamhausZen};
    vec![
        list(
            "Spamhaus ZEN",
            "zen.spamhaus.org",
            Block,
            SpamhausZen,
            true,
            "https://check.spamhaus.org/",
        ),
        list(
            "SpamCop",
            "bl.spamcop.net",
            Block,
            Generic,
            false,
            "https://www.spamcop.net/bl.shtml",
        ),
        list(
            "Barracuda",
            "b.barracudacentral.org",
            Block,
            Generic,
            false,
            "https://www.barracudacentral.org/rbl/removal-request",
        ),
        list(
            "UCEPROTECT level 1",
            "dnsbl-1.uceprotect.net",
            Block,
            Generic,
            false,
            "https://www.uceprotect.net/en/rblcheck.php",
        ),
        list(
            "PSBL",
            "psbl.surriel.com",
            Block,
            Generic,
            false,
            "https://psbl.org/",
        ),
        list(
            "Mailspike",
            "bl.mailspike.net",
            Block,
            Generic,
            false,
            "https://mailspike.org/",
        ),
        list(
            "DNSWL",
            "list.dnswl.org",
            Allow,
            Dnswl,
            true,
            "https://www.dnswl.org/",
        ),
    ]
}

/// The IP as DNS labels in reverse: `192.0.2.1` → `1.2.0.192`, IPv6 as 32 nibbles.
pub fn reversed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

/// `<reversed ip>.<zone>`.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    format!("{}.{}", reversed_ip(ip), normalise_name(zone))
}

/// One returned address and what the list says it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingCode {
    pub address: Ipv4Addr,
    pub meaning: String,
}

/// The outcome for one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ListingStatus {
    Listed {
        codes: Vec<ListingCode>,
    },
    NotListed,
    /// The list does not cover this address family; not asked.
    NotApplicable,
    /// The answer says nothing about the IP (refused query, rewritten answer, timeout).
    Error {
        reason: String,
    },
}

/// The result of one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListResult {
    pub list: String,
    pub zone: String,
    pub kind: ListKind,
    pub query_name: String,
    #[serde(flatten)]
    pub status: ListingStatus,
}

/// Reads the A records a list returned (non-empty) with the list's return codes.
pub fn interpret_answer(codes: ReturnCodes, addresses: &[Ipv4Addr]) -> ListingStatus {
    if addresses.is_empty() {
        return ListingStatus::NotListed;
    }
    if let Some(outside) = addresses.iter().find(|a| a.octets()[0] != 127) {
        return ListingStatus::Error {
            reason: format!(
                "answer {outside} is outside 127.0.0.0/8: the resolver rewrites NXDOMAIN or the \
                 list is defunct"
            ),
        };
    }
    let mut listed = Vec::new();
    for &address in addresses {
        let [_, b, c, d] = address.octets();
        let meaning = match codes {
            ReturnCodes::SpamhausZen if (b, c) == (255, 255) => {
                return ListingStatus::Error {
                    reason: spamhaus_error(d),
                };
            }
            ReturnCodes::SpamhausZen => zen_meaning(b, c, d),
            ReturnCodes::Dnswl if (b, c, d) == (0, 0, 255) => {
                return ListingStatus::Error {
                    reason: "127.0.0.255: DNSWL refused the query (query limit exceeded or \
                             access blocked)"
                        .to_owned(),
                };
            }
            ReturnCodes::Dnswl if b != 0 => {
                return ListingStatus::Error {
                    reason: format!("{address} is not a DNSWL return code"),
                };
            }
            ReturnCodes::Dnswl => dnswl_meaning(c, d),
            ReturnCodes::Generic if (b, c) == (0, 0) => "listed".to_owned(),
            ReturnCodes::Generic => format!("listed (unrecognised return code {address})"),
        };
        listed.push(ListingCode { address, meaning });
    }
    ListingStatus::Listed { codes: listed }
}

fn spamhaus_error(last: u8) -> String {
    let why = match last {
        252 => "typing error in the DNSBL name",
        254 => "queried through a public/open resolver, which Spamhaus blocks",
        255 => "excessive number of queries from this resolver",
        _ => "query refused",
    };
    format!("127.255.255.{last}: {why}")
}

fn zen_meaning(b: u8, c: u8, d: u8) -> String {
    if (b, c) != (0, 0) {
        return format!("listed (unrecognised return code 127.{b}.{c}.{d})");
    }
    match d {
        2 => "SBL: Spamhaus Block List, a verified spam source or operation".to_owned(),
        3 => "SBL CSS: snowshoe or low-reputation bulk sending".to_owned(),
        4..=7 => "XBL: exploited host (malware, botnet, open proxy)".to_owned(),
        9 => "SBL DROP: hijacked or criminal netblock".to_owned(),
        10 => "PBL (ISP maintained): end-user range that should not send to MX directly".to_owned(),
        11 => "PBL (Spamhaus maintained): end-user range that should not send to MX directly"
            .to_owned(),
        other => format!("listed (unrecognised return code 127.0.0.{other})"),
    }
}

fn dnswl_meaning(category: u8, trust: u8) -> String {
    let category = match category {
        2 => "financial services",
        3 => "email service providers",
        4 => "organisations",
        5 => "service/network providers",
        6 => "personal/private servers",
        7 => "travel/leisure industry",
        8 => "public sector/governments",
        9 => "media and tech companies",
        10 => "special cases",
        11 => "education, academic",
        12 => "healthcare",
        13 => "manufacturing/industrial",
        14 => "retail/wholesale/services",
        15 => "email marketing providers",
        20 => "added through self-service",
        _ => "unknown category",
    };
    let trust = match trust {
        0 => "none",
        1 => "low",
        2 => "medium",
        3 => "high",
        _ => "unknown",
    };
    format!("DNSWL {category}, trust {trust}")
}

/// Queries every list in `lists` for `ip` (concurrently) and reports listings.
pub async fn check_dnsbl<R: Resolve>(
    ip: IpAddr,
    lists: &[DnsList],
    resolver: &R,
) -> (Vec<ListResult>, Vec<Finding>) {
    let results = join_all(
        lists
            .iter()
            .map(|list| query_list(ip, list, resolver))
            .collect(),
    )
    .await;
    let mut findings = Vec::new();
    for (list, result) in lists.iter().zip(&results) {
        findings.extend(finding_for(ip, list, result));
    }
    let blocklists: Vec<&ListResult> = results
        .iter()
        .filter(|r| r.kind == ListKind::Block)
        .collect();
    let asked = blocklists
        .iter()
        .filter(|r| r.status != ListingStatus::NotApplicable)
        .count();
    let clean = blocklists
        .iter()
        .filter(|r| r.status == ListingStatus::NotListed)
        .count();
    if asked > 0 && clean == asked {
        findings.push(Finding::ok(
            CHECK,
            "dnsbl-clean",
            format!("{ip} is not listed on any of {asked} blocklists"),
        ));
    }
    (results, findings)
}

async fn query_list<R: Resolve>(ip: IpAddr, list: &DnsList, resolver: &R) -> ListResult {
    let name = query_name(ip, &list.zone);
    let status = if ip.is_ipv6() && !list.ipv6 {
        ListingStatus::NotApplicable
    } else {
        match lookup(resolver, &name, RecordType::A).await {
            Lookup::Empty { .. } => ListingStatus::NotListed,
            Lookup::Failed(reason) => ListingStatus::Error { reason },
            Lookup::Found(answer) => {
                let addresses: Vec<Ipv4Addr> = answer
                    .data()
                    .filter_map(|d| match d {
                        RData::A(a) => Some(*a),
                        _ => None,
                    })
                    .collect();
                interpret_answer(list.codes, &addresses)
            }
        }
    };
    ListResult {
        list: list.name.clone(),
        zone: normalise_name(&list.zone),
        kind: list.kind,
        query_name: name,
        status,
    }
}

fn finding_for(ip: IpAddr, list: &DnsList, result: &ListResult) -> Option<Finding> {
    let where_ = format!("{} ({})", list.name, result.zone);
    let lookup_url = list
        .removal_url
        .as_deref()
        .map_or_else(String::new, |url| format!(" at {url}"));
    match (&result.status, list.kind) {
        (ListingStatus::Listed { codes }, ListKind::Block) => {
            let meanings: Vec<&str> = codes.iter().map(|c| c.meaning.as_str()).collect();
            let pbl_only = codes.iter().all(|c| c.meaning.starts_with("PBL"));
            let fix = if pbl_only {
                format!(
                    "Send through a server outside end-user ranges, or (if {ip} is a real mail \
                     server with matching PTR) ask for the PBL exclusion{lookup_url}"
                )
            } else {
                format!(
                    "Find and stop the cause (compromised account, malware, open relay, bad \
                     list), then request removal{lookup_url}"
                )
            };
            Some(
                Finding::error(
                    CHECK,
                    "dnsbl-listed",
                    format!("{ip} is listed on {where_}: {}", meanings.join("; ")),
                )
                .with_fix(fix),
            )
        }
        (ListingStatus::Listed { codes }, ListKind::Allow) => {
            let meanings: Vec<&str> = codes.iter().map(|c| c.meaning.as_str()).collect();
            Some(Finding::ok(
                CHECK,
                "dnswl-listed",
                format!("{ip} is on the allowlist {where_}: {}", meanings.join("; ")),
            ))
        }
        (ListingStatus::NotListed, ListKind::Allow) => Some(
            Finding::info(
                CHECK,
                "dnswl-not-listed",
                format!("{ip} is not on the allowlist {where_}"),
            )
            .with_fix(format!("Apply for a listing{lookup_url}")),
        ),
        (ListingStatus::Error { reason }, _) => Some(
            Finding::warning(
                CHECK,
                "dnsbl-query-failed",
                format!("{where_} gave no usable answer for {ip}: {reason}"),
            )
            .with_fix(
                "Query the lists through the host's own recursive resolver (not a public one \
                 like 8.8.8.8), or register with the list (e.g. Spamhaus DQS)",
            ),
        ),
        (ListingStatus::NotListed | ListingStatus::NotApplicable, _) => None,
    }
}

/// Polls every future until all are done; outputs in input order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    #[test]
    fn query_names_reverse_octets_and_nibbles() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(
            query_name(v4, "zen.spamhaus.org."),
            "1.2.0.192.zen.spamhaus.org"
        );
        let v6 = IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            reversed_ip(v6),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn return_codes_are_read_per_list() {
        let zen = |d| interpret_answer(ReturnCodes::SpamhausZen, &[Ipv4Addr::new(127, 0, 0, d)]);
        assert!(
            matches!(zen(2), ListingStatus::Listed { ref codes } if codes[0].meaning.starts_with("SBL"))
        );
        assert!(
            matches!(zen(11), ListingStatus::Listed { ref codes } if codes[0].meaning.starts_with("PBL"))
        );
        let refused = interpret_answer(
            ReturnCodes::SpamhausZen,
            &[Ipv4Addr::new(127, 255, 255, 254)],
        );
        assert!(
            matches!(refused, ListingStatus::Error { ref reason } if reason.contains("public"))
        );
        let rewritten = interpret_answer(ReturnCodes::Generic, &[Ipv4Addr::new(198, 51, 100, 7)]);
        assert!(matches!(rewritten, ListingStatus::Error { .. }));
        let wl = interpret_answer(ReturnCodes::Dnswl, &[Ipv4Addr::new(127, 0, 15, 3)]);
        assert!(
            matches!(wl, ListingStatus::Listed { ref codes } if codes[0].meaning == "DNSWL email marketing providers, trust high")
        );
        let wl_blocked = interpret_answer(ReturnCodes::Dnswl, &[Ipv4Addr::new(127, 0, 0, 255)]);
        assert!(matches!(wl_blocked, ListingStatus::Error { .. }));
        assert_eq!(
            interpret_answer(ReturnCodes::Generic, &[]),
            ListingStatus::NotListed
        );
    }
}
