//! `dns_propagation`: the authoritative servers of a monitored domain disagree
//! (`dns_propagation_consistent{domain}` = 0): a zone change reached some of them only, or one
//! serves a stale or different zone. The evidence is each server's SOA serial.

use super::{Facts, alert};
use crate::analyze::Alert;

pub const NAME: &str = "dns_propagation";

/// One alert per (host, domain) whose latest propagation check found the servers disagreeing.
pub fn inconsistent(facts: &Facts) -> Vec<Alert> {
    facts
        .gauges
        .iter()
        .filter(|(def, value)| &*def.metric == "dns_propagation_consistent" && *value < 1.0)
        .filter_map(|(def, _)| {
            let host = def.label("host")?.to_owned();
            let domain = def.label("domain")?.to_owned();
            let mut serials: Vec<(String, u64)> = facts
                .gauges
                .iter()
                .filter(|(d, _)| {
                    &*d.metric == "dns_soa_serial"
                        && d.label("host") == Some(host.as_str())
                        && d.label("domain") == Some(domain.as_str())
                })
                .filter_map(|(d, v)| Some((d.label("server")?.to_owned(), *v as u64)))
                .collect();
            serials.sort();
            let shown: Vec<String> = serials
                .iter()
                .map(|(server, serial)| format!("{server} serial {serial}"))
                .collect();
            let distinct = serials
                .iter()
                .map(|(_, s)| *s)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let detail = if shown.is_empty() {
                format!("the authoritative servers of {domain} give different answers")
            } else if distinct > 1 {
                format!(
                    "the authoritative servers of {domain} disagree: {}",
                    shown.join(", ")
                )
            } else {
                format!(
                    "the authoritative servers of {domain} give different answers under the same \
                     serial ({})",
                    shown.join(", ")
                )
            };
            Some(alert(
                NAME,
                vec![("host", host), ("domain", domain.clone())],
                facts,
                detail,
                format!(
                    "A change to {domain}'s zone has reached some of its authoritative servers \
                     only, or one serves a stale zone: resolvers get one answer or the other \
                     (SPF, DKIM, DMARC and MX checks at receivers can fail at random). See \
                     which record changed and which server had it first \
                     (`curl -s 'http://127.0.0.1:9470/api/v1/dns/changes?target={domain}'`, \
                     the console's DNS changes), compare the servers (`dig @SERVER {domain} SOA \
                     +norec`). If the change was not meant, revert it at the primary; if it \
                     was, check the lagging secondary's zone transfer (NOTIFY, IXFR/AXFR, TSIG, \
                     refresh timer) and the primary's serial."
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::def;
    use super::*;

    #[test]
    fn disagreeing_servers_are_named_with_their_serials() {
        let consistent = |domain, v| {
            (
                def(
                    "dns_propagation_consistent",
                    &[("host", "mx1"), ("domain", domain)],
                ),
                v,
            )
        };
        let serial = |server, v| {
            (
                def(
                    "dns_soa_serial",
                    &[
                        ("host", "mx1"),
                        ("domain", "example.org"),
                        ("server", server),
                    ],
                ),
                v,
            )
        };
        let facts = Facts {
            gauges: vec![
                consistent("example.org", 0.0),
                consistent("example.net", 1.0),
                serial("ns1.example.org@192.0.2.53:53", 2026120701.0),
                serial("ns2.example.org@192.0.2.54:53", 2026120702.0),
            ],
            ..Facts::default()
        };
        let alerts = inconsistent(&facts);
        assert_eq!(alerts.len(), 1, "only the domain whose servers disagree");
        let a = &alerts[0];
        assert_eq!(a.label("domain"), Some("example.org"));
        assert_eq!(a.label("host"), Some("mx1"));
        let advice = a.advice.as_ref().expect("advice");
        assert_eq!(
            advice.summary,
            "the authoritative servers of example.org disagree: \
             ns1.example.org@192.0.2.53:53 serial 2026120701, \
             ns2.example.org@192.0.2.54:53 serial 2026120702"
        );
        assert!(advice.recommendation.contains("zone transfer"));
    }
}
