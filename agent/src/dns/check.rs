//! One complete check of a mail domain (and optionally of sending IPs): what `mailpulse check`
//! prints and what the prober counts per round.
//!
//! Runs every check module over one resolver: MX, SPF (lint, and `check_host` for each given IP
//! as if it sent for the domain: "would fail"), DMARC, DKIM (given selectors, or common ones),
//! MTA-STS, TLS-RPT, BIMI, DNSSEC of the apex; per IP: PTR/FCrDNS, DNS block and allow lists,
//! Sender Score. Findings come back sorted most severe first.

use std::net::IpAddr;

use serde::Serialize;

use super::dkim::{SelectorUsage, check_dkim};
use super::dmarc::check_dmarc;
use super::dnsbl::{DnsList, check_dnsbl};
use super::finding::{Finding, Severity};
use super::mtasts::{PolicyFetcher, check_mta_sts};
use super::mx::check_mx;
use super::reverse::check_reverse;
use super::senderscore::check_sender_score;
use super::spf::{Verdict, check_host, lint};
use super::tlsrpt::check_tlsrpt;
use super::{RecordType, Resolve, normalise_name};

/// Selectors tried when none are given (the big providers' and common defaults).
pub const COMMON_SELECTORS: [&str; 8] = [
    "default",
    "selector1",
    "selector2",
    "google",
    "s1",
    "s2",
    "k1",
    "mail",
];

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInput {
    pub domain: String,
    /// Sending IPs: SPF is evaluated for each, and their reputation is checked.
    pub ips: Vec<IpAddr>,
    /// DKIM selectors in use; empty = try [`COMMON_SELECTORS`] and report what exists.
    pub dkim_selectors: Vec<String>,
    /// Block and allow lists for the IPs.
    pub lists: Vec<DnsList>,
    /// Check the IPs' PTR, list listings and Sender Score too (the prober does that per IP,
    /// not per domain).
    pub ip_reputation: bool,
}

/// The SPF verdict for one sending IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpfOutcome {
    pub ip: IpAddr,
    pub verdict: Verdict,
    pub problem: Option<String>,
}

/// Everything one check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub domain: String,
    /// Most severe first, then by check.
    pub findings: Vec<Finding>,
    pub spf: Vec<SpfOutcome>,
    /// The apex SOA answer was DNSSEC-authenticated (only meaningful with a validating
    /// resolver).
    pub dnssec_authenticated: bool,
}

impl CheckReport {
    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).min()
    }

    /// Number of findings per (check, severity).
    pub fn counts(&self) -> Vec<(&'static str, Severity, usize)> {
        let mut out: Vec<(&'static str, Severity, usize)> = Vec::new();
        for f in &self.findings {
            match out
                .iter_mut()
                .find(|(c, s, _)| *c == f.check && *s == f.severity)
            {
                Some(entry) => entry.2 += 1,
                None => out.push((f.check, f.severity, 1)),
            }
        }
        out
    }
}

/// Runs every check for `input` through `resolver` (and `fetcher` for the MTA-STS policy).
pub async fn check_domain<R: Resolve, F: PolicyFetcher>(
    input: &CheckInput,
    resolver: &R,
    fetcher: &F,
) -> CheckReport {
    let domain = normalise_name(&input.domain);
    let mut findings = Vec::new();

    let (mx, f) = check_mx(&domain, resolver).await;
    findings.extend(f);
    findings.extend(lint(&domain, resolver).await);
    let mut spf = Vec::new();
    for ip in &input.ips {
        let result = check_host(
            *ip,
            &domain,
            &format!("postmaster@{domain}"),
            &domain,
            resolver,
        )
        .await;
        let f = match result.verdict {
            Verdict::Pass => Finding::ok(
                "spf",
                "spf-ip-passes",
                format!("{ip} passes {domain}'s SPF policy"),
            ),
            Verdict::Fail | Verdict::SoftFail => Finding::error(
                "spf",
                "spf-ip-would-fail",
                format!(
                    "mail from {ip} for {domain} would get SPF {} (receivers will reject or junk it)",
                    result.verdict
                ),
            )
            .with_fix(format!(
                "add {ip} to {domain}'s SPF record (ip4:/ip6: or an include that covers it), or stop sending for {domain} from this host"
            )),
            Verdict::Neutral | Verdict::None => Finding::warning(
                "spf",
                "spf-ip-not-authorised",
                format!("{ip} gets SPF {} for {domain}: not authorised either way", result.verdict),
            )
            .with_fix(format!("publish an SPF record for {domain} that lists {ip}")),
            Verdict::TempError | Verdict::PermError => Finding::error(
                "spf",
                "spf-ip-error",
                format!(
                    "SPF for {ip} at {domain} is {}: {}",
                    result.verdict,
                    result.problem.as_deref().unwrap_or("no detail")
                ),
            ),
        };
        findings.push(f);
        spf.push(SpfOutcome {
            ip: *ip,
            verdict: result.verdict,
            problem: result.problem,
        });
    }
    findings.extend(check_dmarc(&domain, resolver).await.1);
    if input.dkim_selectors.is_empty() {
        let mut found = Vec::new();
        for selector in COMMON_SELECTORS {
            let (report, f) = check_dkim(&domain, selector, SelectorUsage::Retired, resolver).await;
            if report.records_found > 0 {
                found.push(selector);
                findings.extend(f.into_iter().filter(|f| f.severity != Severity::Ok));
            }
        }
        findings.push(if found.is_empty() {
            Finding::info(
                "dkim",
                "dkim-no-common-selector",
                format!("no DKIM key at the common selectors of {domain}"),
            )
            .with_fix("give the selectors your signers use (--selector NAME) to check their keys")
        } else {
            Finding::info(
                "dkim",
                "dkim-selectors-found",
                format!("DKIM keys found at selectors: {}", found.join(", ")),
            )
        });
    } else {
        for selector in &input.dkim_selectors {
            findings.extend(
                check_dkim(&domain, selector, SelectorUsage::InUse, resolver)
                    .await
                    .1,
            );
        }
    }
    findings.extend(
        check_mta_sts(&domain, &mx.delivery_hosts(), resolver, fetcher)
            .await
            .1,
    );
    findings.extend(check_tlsrpt(&domain, resolver).await.1);
    findings.extend(super::bimi::check_bimi(&domain, resolver).await.1);
    let dnssec_authenticated = resolver
        .lookup(&domain, RecordType::Soa)
        .await
        .is_ok_and(|a| a.authenticated);
    for ip in input.ips.iter().filter(|_| input.ip_reputation) {
        findings.extend(check_reverse(*ip, resolver).await.1);
        findings.extend(check_dnsbl(*ip, &input.lists, resolver).await.1);
        findings.extend(check_sender_score(*ip, resolver).await.1);
    }
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then(a.check.cmp(b.check)));
    CheckReport {
        domain,
        findings,
        spf,
        dnssec_authenticated,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::mtasts::FetchDisabled;
    use crate::dns::{MemoryZone, RData};

    #[tokio::test]
    async fn a_domain_with_a_sending_ip_outside_its_spf() {
        let mut z = MemoryZone::new();
        z.add(
            "example.test",
            RData::Mx {
                preference: 10,
                exchange: "mx.example.test".into(),
            },
        )
        .add("mx.example.test", RData::A(Ipv4Addr::new(192, 0, 2, 25)))
        .add_txt("example.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .add_txt("_dmarc.example.test", "v=DMARC1; p=none");
        let input = CheckInput {
            domain: "Example.Test.".into(),
            ips: vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            ],
            dkim_selectors: Vec::new(),
            lists: Vec::new(),
            ip_reputation: true,
        };
        let report = check_domain(&input, &z, &FetchDisabled).await;
        assert_eq!(report.domain, "example.test");
        let verdicts: Vec<Verdict> = report.spf.iter().map(|s| s.verdict).collect();
        assert_eq!(verdicts, [Verdict::Pass, Verdict::Fail]);
        let would_fail: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.code == "spf-ip-would-fail")
            .collect();
        assert_eq!(would_fail.len(), 1);
        assert!(would_fail[0].message.contains("198.51.100.7"));
        assert!(would_fail[0].fix.is_some());
        assert_eq!(report.worst(), Some(Severity::Error));
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.code == "dkim-no-common-selector")
        );
        assert!(
            report
                .findings
                .windows(2)
                .all(|w| w[0].severity <= w[1].severity),
            "sorted most severe first"
        );
        let counts = report.counts();
        assert!(
            counts
                .iter()
                .any(|(c, s, n)| *c == "spf" && *s == Severity::Error && *n >= 1)
        );
        assert!(!report.dnssec_authenticated);
    }
}
