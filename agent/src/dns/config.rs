//! The `[dns]` section of the agent configuration: what to probe, how often, through which
//! resolvers.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// DNS and reputation probes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Probe at all (default true; nothing happens without `domains` or `sending_ips`).
    pub enabled: bool,
    /// Seconds between two rounds of one domain (default 300).
    pub interval_secs: u64,
    /// Up to this many seconds of random delay per round (default 30).
    pub jitter_secs: u64,
    /// Domains probed at the same time (default 64).
    pub max_concurrent_domains: usize,
    /// Per-query timeout in milliseconds (default 2000).
    pub timeout_ms: u64,
    /// Queries per question (default 2).
    pub attempts: usize,
    /// Lookups in flight per resolver (default 64).
    pub max_in_flight: usize,
    /// The resolvers for plain answers; empty = the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Recursive resolvers whose answers are compared with the authoritative ones (e.g. the
    /// local unbound and the ISP's resolver).
    pub compare_resolvers: Vec<SocketAddr>,
    /// DNSSEC trust anchor (DS or DNSKEY records in zone-file form, e.g. `/usr/share/dns/root.key`);
    /// with it the plain answers are validated and `dns_dnssec_authenticated{domain}` is reported.
    pub trust_anchor_file: Option<PathBuf>,
    /// The monitored domains.
    pub domains: Vec<DomainSpec>,
    /// This host's sending IPs: PTR/FCrDNS, DNS block lists, Sender Score, SPF of the domains.
    pub sending_ips: Vec<IpAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 300,
            jitter_secs: 30,
            max_concurrent_domains: 64,
            timeout_ms: 2000,
            attempts: 2,
            max_in_flight: 64,
            nameservers: Vec::new(),
            compare_resolvers: Vec::new(),
            trust_anchor_file: None,
            domains: Vec::new(),
            sending_ips: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// Whether there is anything to probe.
    pub fn active(&self) -> bool {
        self.enabled && (!self.domains.is_empty() || !self.sending_ips.is_empty())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 {
            return Err("dns.interval_secs must be at least 1".into());
        }
        if self.timeout_ms == 0 || self.attempts == 0 {
            return Err("dns.timeout_ms and dns.attempts must be at least 1".into());
        }
        for (i, d) in self.domains.iter().enumerate() {
            let name = d.domain.trim_end_matches('.');
            if name.is_empty()
                || name.len() > 253
                || name.split('.').any(|l| l.is_empty() || l.len() > 63)
            {
                return Err(format!(
                    "dns.domains[{i}].domain {:?} is not a domain name",
                    d.domain
                ));
            }
        }
        Ok(())
    }
}

/// A monitored domain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// The domain (taken as its zone's apex).
    pub domain: String,
    /// DKIM selectors in use.
    #[serde(default)]
    pub dkim_selectors: Vec<String>,
    /// Authoritative servers to ask directly; empty = those of the NS set, on port 53.
    #[serde(default)]
    pub authoritative: Vec<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_domains() {
        let cfg: DnsConfig = toml::from_str(
            r#"
            interval_secs = 60
            compare_resolvers = ["127.0.0.1:53"]
            sending_ips = ["192.0.2.10", "2001:db8::25"]
            [[domains]]
            domain = "example.com"
            dkim_selectors = ["s1", "s2"]
            [[domains]]
            domain = "example.net"
            authoritative = ["192.0.2.53:53"]
            "#,
        )
        .unwrap();
        assert!(cfg.active() && cfg.validate().is_ok());
        assert_eq!(cfg.domains[0].dkim_selectors, ["s1", "s2"]);
        assert_eq!(cfg.domains[1].authoritative.len(), 1);
        assert!(!DnsConfig::default().active());
        let bad = DnsConfig {
            domains: vec![DomainSpec {
                domain: "a..b".into(),
                dkim_selectors: Vec::new(),
                authoritative: Vec::new(),
            }],
            ..DnsConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<DnsConfig>("unknown = 1").is_err());
    }
}
