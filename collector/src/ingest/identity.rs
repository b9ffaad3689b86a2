//! mTLS: which agent a client certificate vouches for.
//!
//! A certificate names an agent by a subject-alternative-name DNS entry equal to the agent id,
//! or — when it has no DNS entries at all — by its subject common name (RFC 6125's order).
//! Comparison is ASCII case-insensitive and exact: no wildcards, so one certificate cannot
//! speak for a whole family of agents.

use x509_parser::extensions::GeneralName;

/// The names a DER certificate vouches for (SAN DNS names, or else the subject CNs); empty
/// when it cannot be parsed.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let dns: Vec<String> = match certificate.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_string()),
                _ => None,
            })
            .collect(),
        // A certificate with two SAN extensions (or a broken one) vouches for nothing.
        Err(_) => return Vec::new(),
        Ok(None) => Vec::new(),
    };
    if !dns.is_empty() {
        return dns;
    }
    certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect()
}

/// Whether the certificate `der` names `agent_id`.
pub fn certifies(der: &[u8], agent_id: &str) -> bool {
    certificate_names(der)
        .iter()
        .any(|name| name.eq_ignore_ascii_case(agent_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn certificate(sans: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn san_dns_names_or_else_the_common_name_name_the_agent() {
        let both = certificate(&["mx1", "mx1.example.net"], Some("mx9"));
        assert!(certifies(&both, "mx1"));
        assert!(certifies(&both, "MX1.example.net"));
        assert!(!certifies(&both, "mx9"), "CN is ignored when SANs exist");
        assert!(!certifies(&both, "mx2"));

        let cn_only = certificate(&[], Some("mx2"));
        assert!(certifies(&cn_only, "mx2"));
        assert!(!certifies(&cn_only, "mx1"));

        let wildcard = certificate(&["*.example.net"], None);
        assert!(!certifies(&wildcard, "mx1.example.net"), "no wildcards");
        assert!(!certifies(b"not a certificate", "mx1"));
    }
}
