//! Per-round checks beyond the raw record sets: the findings of [`check_domain`] per monitored
//! domain (with the host's sending IPs evaluated against the domain's SPF: "would fail"), and
//! each sending IP's reputation (PTR/FCrDNS, DNS block and allow lists, Sender Score), as gauges.

use std::net::IpAddr;

use mailpulse_proto::v1 as pb;

use super::Resolve;
use super::check::{CheckInput, check_domain};
use super::config::DomainSpec;
use super::dnsbl::{DnsList, ListKind, ListingStatus, check_dnsbl};
use super::finding::Severity;
use super::gauges::gauges;
use super::mtasts::FetchDisabled;
use super::reverse::check_reverse;
use super::senderscore::{SenderScore, check_sender_score};
use super::spf::Verdict;

/// `dns_findings{domain,check,severity}` (counts; every severity of a check that reported
/// anything, 0 included) and `spf_would_fail{domain,ip}` per sending IP.
pub async fn domain_findings<R: Resolve>(
    spec: &DomainSpec,
    sending_ips: &[IpAddr],
    resolver: &R,
    host: &str,
    now_ms: i64,
    window_secs: u32,
) -> Vec<pb::Sample> {
    let input = CheckInput {
        domain: spec.domain.clone(),
        ips: sending_ips.to_vec(),
        dkim_selectors: spec.dkim_selectors.clone(),
        lists: Vec::new(),
        ip_reputation: false,
    };
    let report = check_domain(&input, resolver, &FetchDisabled).await;
    let mut g = gauges(host, now_ms, window_secs);
    let mut checks: Vec<&'static str> = report.findings.iter().map(|f| f.check).collect();
    checks.sort_unstable();
    checks.dedup();
    for check in checks {
        for severity in [
            Severity::Error,
            Severity::Warning,
            Severity::Info,
            Severity::Ok,
        ] {
            let n = report
                .findings
                .iter()
                .filter(|f| f.check == check && f.severity == severity)
                .count();
            g.push(
                "dns_findings",
                &[
                    ("domain", &report.domain),
                    ("check", check),
                    ("severity", severity.as_str()),
                ],
                n as f64,
            );
        }
    }
    for outcome in &report.spf {
        let fails = matches!(outcome.verdict, Verdict::Fail | Verdict::SoftFail);
        g.push(
            "spf_would_fail",
            &[("domain", &report.domain), ("ip", &outcome.ip.to_string())],
            if fails { 1.0 } else { 0.0 },
        );
    }
    g.out
}

/// `dnsbl_listed{ip,list,removal_url}` (1 listed, 0 not; `removal_url` when the list has one,
/// which the collector's `dnsbl_listed` alert names; lists that errored or do not cover the family
/// are left out), `dnswl_listed{ip,list}`, `sender_score{ip}` when scored, and
/// `dns_fcrdns_ok{ip}`.
pub async fn ip_reputation<R: Resolve>(
    ip: IpAddr,
    lists: &[DnsList],
    resolver: &R,
    host: &str,
    now_ms: i64,
    window_secs: u32,
) -> Vec<pb::Sample> {
    let mut g = gauges(host, now_ms, window_secs);
    let ip_text = ip.to_string();
    let (results, _) = check_dnsbl(ip, lists, resolver).await;
    for (list, r) in lists.iter().zip(&results) {
        let listed = match r.status {
            ListingStatus::Listed { .. } => 1.0,
            ListingStatus::NotListed => 0.0,
            ListingStatus::NotApplicable | ListingStatus::Error { .. } => continue,
        };
        let mut labels = vec![("ip", ip_text.as_str()), ("list", r.zone.as_str())];
        let metric = match r.kind {
            ListKind::Block => {
                if let Some(url) = &list.removal_url {
                    labels.push(("removal_url", url.as_str()));
                }
                "dnsbl_listed"
            }
            _ => "dnswl_listed",
        };
        g.push(metric, &labels, listed);
    }
    if let (SenderScore::Score { score }, _) = check_sender_score(ip, resolver).await {
        g.push("sender_score", &[("ip", &ip_text)], f64::from(score));
    }
    let (reverse, _) = check_reverse(ip, resolver).await;
    g.push(
        "dns_fcrdns_ok",
        &[("ip", &ip_text)],
        if reverse.forward_confirmed() {
            1.0
        } else {
            0.0
        },
    );
    g.out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::RData;
    use crate::dns::dnsbl::default_lists;
    use crate::dns::zone::MemoryZone;

    #[tokio::test]
    async fn listings_carry_the_list_and_its_removal_page() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mut zone = MemoryZone::new();
        zone.add(
            "7.2.0.192.bl.spamcop.net",
            RData::A(Ipv4Addr::new(127, 0, 0, 2)),
        );
        let samples = ip_reputation(ip, &default_lists(), &zone, "mx1", 0, 300).await;
        let listed: Vec<(&str, Option<&str>, f64)> = samples
            .iter()
            .filter(|s| s.metric == "dnsbl_listed")
            .map(|s| {
                let label = |n: &str| {
                    s.labels
                        .iter()
                        .find(|l| l.name == n)
                        .map(|l| l.value.as_str())
                };
                let value = match s.value {
                    Some(pb::sample::Value::Gauge(v)) => v,
                    _ => f64::NAN,
                };
                (label("list").unwrap_or(""), label("removal_url"), value)
            })
            .collect();
        let spamcop = listed
            .iter()
            .find(|(list, ..)| *list == "bl.spamcop.net")
            .expect("spamcop asked");
        assert_eq!(
            (spamcop.1, spamcop.2),
            (Some("https://www.spamcop.net/bl.shtml"), 1.0)
        );
        let clean = listed.iter().filter(|(.., v)| *v == 0.0).count();
        assert!(clean >= 3, "the other lists answer not listed: {listed:?}");
    }
}
