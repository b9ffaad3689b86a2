//! MX routing advice for the operator's own domains: the MX sets the DNS prober stored, joined
//! with what the agent on each MX host reports.
//!
//! - `mx_host_failing`: an MX host that is published but takes nothing while its peers take
//!   mail, or refuses most of what it is offered while its peers do not → lower its priority
//!   or withdraw it until it recovers.
//! - `mx_unbalanced`: MX hosts of equal preference whose connection counts differ by
//!   `imbalance_factor` or more → rebalance (or make the difference explicit with preferences).
//! - `mx_ttl_long`: the MX set's TTL or an MX host's address TTL is above `max_ttl_secs` →
//!   lower them before planned maintenance.
//!
//! A domain is the operator's when at least one of its MX targets is the host of a known
//! agent (the same name, or the agent's short host name as the target's first label).

use std::collections::{BTreeMap, HashMap};

use super::{AdviceConfig, Facts, MxSet, alert};
use crate::analyze::Alert;
use crate::store::StoredDnsRecord;

pub const FAILING: &str = "mx_host_failing";
pub const UNBALANCED: &str = "mx_unbalanced";
pub const TTL_LONG: &str = "mx_ttl_long";

/// The MX sets (one per domain) and the longest address TTL per name, from stored records.
pub fn sets(records: &[StoredDnsRecord]) -> (Vec<MxSet>, HashMap<String, u32>) {
    let mut mx: BTreeMap<&str, MxSet> = BTreeMap::new();
    let mut ttls: HashMap<String, u32> = HashMap::new();
    for r in records.iter().filter(|r| r.state.rcode == "noerror") {
        let name = normalise(&r.target);
        match r.kind.as_str() {
            "a" | "aaaa" => {
                let ttl = ttls.entry(name).or_default();
                *ttl = (*ttl).max(r.state.ttl_secs);
            }
            "mx" => {
                let set = mx.entry(&r.target).or_insert_with(|| MxSet {
                    domain: name,
                    ttl_secs: 0,
                    targets: Vec::new(),
                });
                set.ttl_secs = set.ttl_secs.max(r.state.ttl_secs);
                // The answer of the usual resolver, else the first authoritative one.
                if r.server.is_empty() || set.targets.is_empty() {
                    set.targets = parse_mx(&r.state.answer);
                }
            }
            _ => {}
        }
    }
    let sets = mx.into_values().filter(|s| !s.targets.is_empty()).collect();
    (sets, ttls)
}

/// `MX 10 mx1.example.com` lines → sorted (preference, target); a null MX (`.`) is no target.
fn parse_mx(answer: &str) -> Vec<(u16, String)> {
    let mut out: Vec<(u16, String)> = answer
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "MX" {
                return None;
            }
            let preference = words.next()?.parse().ok()?;
            let target = normalise(words.next()?);
            (!target.is_empty()).then_some((preference, target))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The agent host serving MX target `target`.
fn host_of<'a>(target: &str, hosts: &'a [String]) -> Option<&'a str> {
    let short = target.split('.').next().unwrap_or(target);
    hosts
        .iter()
        .find(|h| normalise(h) == target)
        .or_else(|| {
            hosts
                .iter()
                .find(|h| !h.contains('.') && h.eq_ignore_ascii_case(short))
        })
        .map(String::as_str)
}

/// One MX target run by a known agent, and its traffic in the lookback.
#[derive(Debug)]
struct Member<'a> {
    preference: u16,
    target: &'a str,
    host: &'a str,
    /// Inbound connections (postscreen's when it fronts port 25, else smtpd's).
    connections: f64,
    accepted: f64,
    refused: f64,
}

impl Member<'_> {
    fn refused_share(&self) -> f64 {
        share(self.refused, self.accepted + self.refused)
    }
}

fn share(part: f64, total: f64) -> f64 {
    if total > 0.0 { part / total } else { 0.0 }
}

/// The MX advice of every monitored domain.
pub fn advice(cfg: &AdviceConfig, facts: &Facts) -> Vec<Alert> {
    let mut out = Vec::new();
    for set in &facts.mx {
        let members: Vec<Member> = set
            .targets
            .iter()
            .filter_map(|(preference, target)| {
                let host = host_of(target, &facts.hosts)?;
                let on_host = |d: &crate::model::SeriesDef| d.label("host") == Some(host);
                let screened = facts.count("postscreen_connections", on_host);
                Some(Member {
                    preference: *preference,
                    target,
                    host,
                    connections: if screened > 0.0 {
                        screened
                    } else {
                        facts.count("smtpd_connections", on_host)
                    },
                    accepted: facts.count("messages_received", on_host),
                    refused: facts.count("messages_rejected", on_host),
                })
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        out.extend(ttl_long(cfg, facts, set));
        let failing = failing(cfg, facts, set, &members);
        let mut by_preference: BTreeMap<u16, Vec<&Member>> = BTreeMap::new();
        for m in &members {
            by_preference.entry(m.preference).or_default().push(m);
        }
        for group in by_preference.values() {
            let failing_here = group
                .iter()
                .any(|m| failing.iter().any(|a| a.label("mx") == Some(m.target)));
            if !failing_here {
                out.extend(unbalanced(cfg, facts, set, group));
            }
        }
        out.extend(failing);
    }
    out
}

fn failing(cfg: &AdviceConfig, facts: &Facts, set: &MxSet, members: &[Member]) -> Vec<Alert> {
    let mut out = Vec::new();
    for m in members {
        let peers: Vec<&Member> = members.iter().filter(|p| p.host != m.host).collect();
        let peer_connections: f64 = peers.iter().map(|p| p.connections).sum();
        let peer_accepted: f64 = peers.iter().map(|p| p.accepted).sum();
        let peer_refused: f64 = peers.iter().map(|p| p.refused).sum();
        let peer_refused_share = share(peer_refused, peer_accepted + peer_refused);
        let why = if m.connections == 0.0
            && m.accepted == 0.0
            && peer_connections >= cfg.min_connections
        {
            format!(
                "took no connection in the last {} min while its peers took {peer_connections:.0}",
                cfg.lookback_secs / 60
            )
        } else if m.accepted + m.refused >= cfg.min_connections
            && m.refused_share() >= cfg.max_reject_share
            && peer_accepted + peer_refused >= cfg.min_connections
            && peer_refused_share < cfg.max_reject_share / 3.0
        {
            format!(
                "refused {:.0} % of the mail offered in the last {} min ({:.0} of {:.0}) while \
                 its peers refused {:.0} %",
                m.refused_share() * 100.0,
                cfg.lookback_secs / 60,
                m.refused,
                m.accepted + m.refused,
                peer_refused_share * 100.0
            )
        } else {
            continue;
        };
        let highest = set.targets.iter().map(|(p, _)| *p).max().unwrap_or(0);
        out.push(alert(
            FAILING,
            vec![
                ("host", m.host.to_owned()),
                ("domain", set.domain.clone()),
                ("mx", m.target.to_owned()),
            ],
            facts,
            format!("{} (MX {} of {}) {why}", m.target, m.preference, set.domain),
            format!(
                "{target} is published for {domain} but is failing: check it (`postfix \
                 status`, `postqueue -p | tail -1`, `nc -vz {target} 25` from outside, the log \
                 for `warning|fatal|reject`). If it cannot be fixed soon, lower its priority — \
                 give it a preference above the others (e.g. {bump} instead of {pref}) — or \
                 withdraw it from the MX set; senders follow within the MX TTL ({ttl} s).",
                target = m.target,
                domain = set.domain,
                bump = highest.saturating_add(10),
                pref = m.preference,
                ttl = set.ttl_secs,
            ),
        ));
    }
    out
}

fn unbalanced(cfg: &AdviceConfig, facts: &Facts, set: &MxSet, group: &[&Member]) -> Option<Alert> {
    if group.len() < 2 {
        return None;
    }
    let busiest = group
        .iter()
        .max_by(|a, b| a.connections.total_cmp(&b.connections))?;
    let quietest = group
        .iter()
        .min_by(|a, b| a.connections.total_cmp(&b.connections))?;
    if busiest.connections < cfg.min_connections
        || busiest.connections < cfg.imbalance_factor * quietest.connections.max(1.0)
    {
        return None;
    }
    let loads: Vec<String> = group
        .iter()
        .map(|m| format!("{} {:.0}", m.target, m.connections))
        .collect();
    Some(alert(
        UNBALANCED,
        vec![
            ("host", quietest.host.to_owned()),
            ("domain", set.domain.clone()),
            ("preference", busiest.preference.to_string()),
        ],
        facts,
        format!(
            "MX hosts of preference {} for {} take very unequal load in the last {} min \
             (connections: {})",
            busiest.preference,
            set.domain,
            cfg.lookback_secs / 60,
            loads.join(", ")
        ),
        format!(
            "Equal-preference MX hosts should share {domain}'s inbound mail about evenly. Check \
             that {quiet} is reachable on port 25 from outside and that its A/AAAA records are \
             right (`dig +short A {quiet}`), and its postscreen/anvil limits; if {busy} is meant \
             to take more, say so with preferences instead (a lower number for {busy}).",
            domain = set.domain,
            quiet = quietest.target,
            busy = busiest.target,
        ),
    ))
}

fn ttl_long(cfg: &AdviceConfig, facts: &Facts, set: &MxSet) -> Option<Alert> {
    let mut long: Vec<String> = Vec::new();
    if set.ttl_secs > cfg.max_ttl_secs {
        long.push(format!("MX {} s", set.ttl_secs));
    }
    for (_, target) in &set.targets {
        if let Some(&ttl) = facts.address_ttls.get(target)
            && ttl > cfg.max_ttl_secs
        {
            long.push(format!("{target} {ttl} s"));
        }
    }
    if long.is_empty() {
        return None;
    }
    Some(alert(
        TTL_LONG,
        vec![("domain", set.domain.clone())],
        facts,
        format!(
            "TTLs of {}'s MX routing are longer than {} s: {}",
            set.domain,
            cfg.max_ttl_secs,
            long.join(", ")
        ),
        format!(
            "A withdrawn or re-prioritised MX host of {} keeps getting mail until these TTLs \
             run out. Before planned maintenance, lower the MX and MX-host address TTLs (e.g. to \
             300–3600 s) at least one old TTL ahead; raise them again afterwards.",
            set.domain
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::def;
    use super::*;
    use crate::model::DnsRecordState;

    fn record(kind: &str, target: &str, server: &str, answer: &str, ttl: u32) -> StoredDnsRecord {
        StoredDnsRecord {
            kind: kind.into(),
            target: target.into(),
            server: server.into(),
            state: DnsRecordState {
                rcode: "noerror".into(),
                hash: String::new(),
                answer: answer.into(),
                ttl_secs: ttl,
                since_unix_ms: 0,
                seen_unix_ms: 0,
            },
        }
    }

    fn facts(traffic: &[(&str, f64, f64, f64)], records: &[StoredDnsRecord]) -> Facts {
        let (mx, address_ttls) = sets(records);
        let mut counts = Vec::new();
        for (host, connections, accepted, refused) in traffic {
            counts.push((def("smtpd_connections", &[("host", host)]), *connections));
            counts.push((def("messages_received", &[("host", host)]), *accepted));
            counts.push((def("messages_rejected", &[("host", host)]), *refused));
        }
        Facts {
            counts,
            mx,
            address_ttls,
            hosts: traffic.iter().map(|t| t.0.to_owned()).collect(),
            ..Facts::default()
        }
    }

    fn example_mx() -> Vec<StoredDnsRecord> {
        vec![
            record(
                "mx",
                "example.com",
                "",
                "MX 10 mx1.example.com\nMX 10 mx2.example.com\nMX 20 backup.example.net",
                3000,
            ),
            // An authoritative server gives the TTL whole.
            record(
                "mx",
                "example.com",
                "ns1.example.com@192.0.2.53:53",
                "MX 10 mx1.example.com\nMX 10 mx2.example.com\nMX 20 backup.example.net",
                3600,
            ),
            record("a", "mx1.example.com", "", "A 192.0.2.1", 3600),
            record("a", "mx2.example.com", "", "A 192.0.2.2", 3600),
        ]
    }

    #[test]
    fn stored_records_become_mx_sets() {
        let (mx, ttls) = sets(&example_mx());
        assert_eq!(
            mx,
            [MxSet {
                domain: "example.com".into(),
                ttl_secs: 3600,
                targets: vec![
                    (10, "mx1.example.com".into()),
                    (10, "mx2.example.com".into()),
                    (20, "backup.example.net".into()),
                ],
            }]
        );
        assert_eq!(ttls["mx2.example.com"], 3600);
        assert!(parse_mx("MX 0 .").is_empty(), "null MX");
    }

    #[test]
    fn healthy_balanced_mx_hosts_get_no_advice() {
        let f = facts(
            &[
                ("mx1.example.com", 400.0, 380.0, 20.0),
                ("mx2.example.com", 350.0, 330.0, 25.0),
            ],
            &example_mx(),
        );
        assert!(advice(&AdviceConfig::default(), &f).is_empty());
    }

    #[test]
    fn a_silent_published_mx_host_is_failing_not_unbalanced() {
        let f = facts(
            &[
                ("mx1.example.com", 400.0, 380.0, 20.0),
                ("mx2.example.com", 0.0, 0.0, 0.0),
            ],
            &example_mx(),
        );
        let alerts = advice(&AdviceConfig::default(), &f);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.name, FAILING);
        assert_eq!(a.label("mx"), Some("mx2.example.com"));
        assert_eq!(a.label("domain"), Some("example.com"));
        let advice = a.advice.as_ref().unwrap();
        assert!(
            advice.summary.contains("took no connection"),
            "{}",
            advice.summary
        );
        assert!(
            advice.recommendation.contains("e.g. 30 instead of 10")
                && advice.recommendation.contains("3600 s"),
            "{}",
            advice.recommendation
        );
    }

    #[test]
    fn a_refusing_mx_host_is_failing() {
        let f = facts(
            &[
                ("mx1.example.com", 400.0, 380.0, 20.0),
                ("mx2", 300.0, 30.0, 270.0),
            ],
            &example_mx(),
        );
        let alerts = advice(&AdviceConfig::default(), &f);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].label("host"), Some("mx2"), "the short host name");
        assert!(alerts[0].peak_detail.contains("refused 90 %"));
    }

    #[test]
    fn unequal_load_is_unbalanced_and_long_ttls_are_named() {
        let mut records = example_mx();
        records.push(record(
            "a",
            "mx1.example.com",
            "ns1@192.0.2.53:53",
            "A 192.0.2.1",
            86_400,
        ));
        let f = facts(
            &[
                ("mx1.example.com", 900.0, 880.0, 20.0),
                ("mx2.example.com", 100.0, 95.0, 5.0),
            ],
            &records,
        );
        let alerts = advice(&AdviceConfig::default(), &f);
        let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, [TTL_LONG, UNBALANCED]);
        assert!(alerts[0].peak_detail.contains("mx1.example.com 86400 s"));
        assert_eq!(alerts[1].label("host"), Some("mx2.example.com"));
        assert_eq!(alerts[1].label("preference"), Some("10"));
    }

    #[test]
    fn domains_without_a_known_mx_host_are_not_ours() {
        let f = facts(&[("other.host", 900.0, 0.0, 0.0)], &example_mx());
        assert!(advice(&AdviceConfig::default(), &f).is_empty());
    }
}
