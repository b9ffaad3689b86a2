//! The e-mail authentication and reputation checks of `dns::` end to end against an in-memory
//! zone: realistic records in, typed results and findings (severity + code) out.
//!
//! Fixtures: `tests/fixtures/dns/` (see its README): DKIM keys made with OpenSSL, a test CA and
//! server certificate for the in-process MTA-STS HTTPS server, and `records.txt` →
//! `records.json`, the golden parse results of every record parser. `UPDATE_GOLDEN=1 cargo test
//! --test dns_checks` rewrites `records.json` from what the parsers do now: review the diff.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailpulse_agent::dns::bimi::{check_bimi, parse_bimi_record};
use mailpulse_agent::dns::dkim::{
    DkimKey, SelectorUsage, check_dkim, decode_base64, parse_dkim_record, rsa_modulus_bits,
};
use mailpulse_agent::dns::dmarc::{
    Authorization, Policy, check_dmarc, organizational_domain, parse_dmarc_record, parse_report_uri,
};
use mailpulse_agent::dns::dnsbl::{
    DnsList, ListKind, ListingStatus, ReturnCodes, check_dnsbl, default_lists, interpret_answer,
};
use mailpulse_agent::dns::finding::{Finding, Severity};
use mailpulse_agent::dns::mtasts::{
    FetchDisabled, FetchError, HttpsPolicyFetcher, Mode, PolicyFetcher, check_mta_sts,
    parse_mta_sts_record, parse_policy,
};
use mailpulse_agent::dns::mx::{MxKind, check_mx};
use mailpulse_agent::dns::reverse::{check_reverse, looks_generic};
use mailpulse_agent::dns::senderscore::{SenderScore, check_sender_score};
use mailpulse_agent::dns::tags::parse_tag_list;
use mailpulse_agent::dns::tlsrpt::{check_tlsrpt, parse_tlsrpt_record};
use mailpulse_agent::dns::{MemoryZone, RData, Rcode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dns")
        .join(path)
}

fn key(name: &str) -> String {
    let path = fixture(&format!("dkim/{name}"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// `(severity, code)` of every finding, for assertions that print what was there.
fn codes(findings: &[Finding]) -> Vec<(Severity, &str)> {
    findings
        .iter()
        .map(|f| (f.severity, f.code.as_str()))
        .collect()
}

#[track_caller]
fn assert_finding(findings: &[Finding], severity: Severity, code: &str) {
    assert!(
        findings
            .iter()
            .any(|f| f.severity == severity && f.code == code),
        "expected a {severity:?} finding {code}, got {:#?}",
        codes(findings)
    );
}

#[track_caller]
fn assert_no_problems(findings: &[Finding]) {
    let problems: Vec<_> = findings
        .iter()
        .filter(|f| f.severity <= Severity::Warning)
        .collect();
    assert!(
        problems.is_empty(),
        "expected no errors or warnings, got {problems:#?}"
    );
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> RData {
    RData::A(Ipv4Addr::new(a, b, c, d))
}

fn mx(preference: u16, exchange: &str) -> RData {
    RData::Mx {
        preference,
        exchange: exchange.to_owned(),
    }
}

/// A TXT record of several character-strings.
fn txt_parts(parts: &[&str]) -> RData {
    RData::Txt(parts.iter().map(|p| p.as_bytes().to_vec()).collect())
}

// ---------------------------------------------------------------------------------------------
// DKIM

#[tokio::test]
async fn dkim_rsa_key_lengths_are_measured_from_the_published_der() {
    let cases = [
        (
            "rsa512.spki.b64",
            512,
            Severity::Error,
            "dkim-key-too-short",
        ),
        ("rsa1024.spki.b64", 1024, Severity::Warning, "dkim-key-weak"),
        (
            "rsa1024.pkcs1.b64",
            1024,
            Severity::Warning,
            "dkim-key-weak",
        ),
        ("rsa2048.spki.b64", 2048, Severity::Ok, "dkim-key-strength"),
        ("rsa2048.pkcs1.b64", 2048, Severity::Ok, "dkim-key-strength"),
    ];
    for (file, bits, severity, code) in cases {
        let mut zone = MemoryZone::new();
        zone.add_txt(
            "s1._domainkey.example.com",
            &format!("v=DKIM1; k=rsa; p={}", key(file)),
        );
        let (report, findings) = check_dkim("example.com", "s1", SelectorUsage::InUse, &zone).await;
        assert_eq!(
            report.key,
            Some(DkimKey::Rsa { modulus_bits: bits }),
            "{file}"
        );
        assert_finding(&findings, severity, code);
    }
}

#[tokio::test]
async fn dkim_long_keys_must_be_split_into_255_byte_strings() {
    let record = format!("v=DKIM1; k=rsa; p={}", key("rsa4096.spki.b64"));
    let chunks: Vec<&str> = record
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let mut split = MemoryZone::new();
    split.add("big._domainkey.example.com", txt_parts(&chunks));
    let (report, findings) = check_dkim("example.com", "big", SelectorUsage::InUse, &split).await;
    assert_eq!(report.key, Some(DkimKey::Rsa { modulus_bits: 4096 }));
    assert_no_problems(&findings);

    let mut unsplit = MemoryZone::new();
    unsplit.add_txt("big._domainkey.example.com", &record);
    let (_, findings) = check_dkim("example.com", "big", SelectorUsage::InUse, &unsplit).await;
    assert_finding(&findings, Severity::Error, "dkim-txt-string-too-long");
}

#[tokio::test]
async fn dkim_record_lints() {
    let rsa2048 = key("rsa2048.spki.b64");
    let ed = key("ed25519.raw.b64");
    // The Ed25519 key wrapped in its SubjectPublicKeyInfo, a frequent publishing mistake.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend(decode_base64(&ed).unwrap());
    let ed_spki = base64(&spki);
    let cases: Vec<(&str, String, SelectorUsage, Severity, &str)> = vec![
        (
            "ed25519",
            format!("v=DKIM1; k=ed25519; p={ed}"),
            SelectorUsage::InUse,
            Severity::Ok,
            "dkim-key-strength",
        ),
        (
            "ed25519 as SPKI",
            format!("v=DKIM1; k=ed25519; p={ed_spki}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-key-invalid",
        ),
        (
            "revoked, in use",
            "v=DKIM1; p=".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-key-revoked",
        ),
        (
            "revoked, retired",
            "v=DKIM1; p=".into(),
            SelectorUsage::Retired,
            Severity::Ok,
            "dkim-key-revoked",
        ),
        (
            "retired but live",
            format!("v=DKIM1; p={rsa2048}"),
            SelectorUsage::Retired,
            Severity::Info,
            "dkim-retired-key-live",
        ),
        (
            "testing",
            format!("v=DKIM1; t=y; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Warning,
            "dkim-testing",
        ),
        (
            "unknown k=",
            format!("v=DKIM1; k=dsa; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-unknown-key-type",
        ),
        (
            "sha1 only",
            format!("v=DKIM1; h=sha1; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-hash-unusable",
        ),
        (
            "not for email",
            format!("v=DKIM1; s=other; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-service-type",
        ),
        (
            "v= not first",
            format!("k=rsa; v=DKIM1; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-syntax",
        ),
        (
            "bad base64",
            "v=DKIM1; p=MIIB*IjAN".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-syntax",
        ),
        (
            "garbage DER",
            "v=DKIM1; p=AAAAAAAA".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-key-invalid",
        ),
        (
            "no p=",
            "v=DKIM1; k=rsa".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-syntax",
        ),
    ];
    for (what, record, usage, severity, code) in cases {
        let mut zone = MemoryZone::new();
        zone.add_txt("sel._domainkey.example.com", &record);
        let (_, findings) = check_dkim("example.com", "sel", usage, &zone).await;
        assert!(
            findings
                .iter()
                .any(|f| f.severity == severity && f.code == code),
            "{what}: expected {severity:?} {code}, got {:?}",
            codes(&findings)
        );
    }
}

#[tokio::test]
async fn dkim_missing_multiple_and_unreachable_selectors() {
    let zone = MemoryZone::new();
    let (_, findings) = check_dkim("example.com", "gone", SelectorUsage::InUse, &zone).await;
    assert_finding(&findings, Severity::Error, "dkim-missing");
    let (_, findings) = check_dkim("example.com", "gone", SelectorUsage::Retired, &zone).await;
    assert_finding(&findings, Severity::Ok, "dkim-retired-absent");

    let mut zone = MemoryZone::new();
    let rsa = key("rsa2048.spki.b64");
    zone.add_txt("two._domainkey.example.com", &format!("v=DKIM1; p={rsa}"))
        .add_txt("two._domainkey.example.com", "v=DKIM1; p=")
        .set_timeout("slow._domainkey.example.com");
    let (report, findings) = check_dkim("example.com", "two", SelectorUsage::InUse, &zone).await;
    assert_eq!(report.records_found, 2);
    assert_finding(&findings, Severity::Error, "dkim-multiple-records");
    let (_, findings) = check_dkim("example.com", "slow", SelectorUsage::InUse, &zone).await;
    assert_eq!(
        codes(&findings),
        [(Severity::Warning, "dkim-lookup-failed")]
    );
}

// ---------------------------------------------------------------------------------------------
// DMARC

#[tokio::test]
async fn dmarc_external_report_destinations_need_authorization() {
    let mut zone = MemoryZone::new();
    zone.add_txt(
        "_dmarc.example.com",
        "v=DMARC1; p=reject; rua=mailto:dmarc@example.com,mailto:agg@reports.example.net!10m; \
         ruf=mailto:forensic@vendor.example.org",
    )
    // example.net authorizes example.com; vendor.example.org does not.
    .add_txt("example.com._report._dmarc.reports.example.net", "v=DMARC1");
    let (report, findings) = check_dmarc("example.com", &zone).await;
    assert_eq!(report.effective_policy, Some(Policy::Reject));
    let by_domain: HashMap<&str, &Authorization> = report
        .destinations
        .iter()
        .map(|d| (d.domain.as_str(), &d.authorization))
        .collect();
    assert_eq!(by_domain["example.com"], &Authorization::SameOrganization);
    assert_eq!(by_domain["reports.example.net"], &Authorization::Authorized);
    assert_eq!(by_domain["vendor.example.org"], &Authorization::Missing);
    assert_finding(&findings, Severity::Ok, "dmarc-external-authorized");
    assert_finding(&findings, Severity::Error, "dmarc-external-unauthorized");
    let unauthorized = findings
        .iter()
        .find(|f| f.code == "dmarc-external-unauthorized")
        .unwrap();
    assert!(
        unauthorized
            .fix
            .as_deref()
            .is_some_and(|fix| fix.contains("example.com._report._dmarc.vendor.example.org")),
        "the fix names the record to publish: {unauthorized:?}"
    );
    assert_finding(&findings, Severity::Ok, "dmarc-policy-enforced");
    assert_finding(&findings, Severity::Info, "dmarc-alignment");
}

#[tokio::test]
async fn dmarc_subdomains_inherit_the_organisational_policy() {
    let mut zone = MemoryZone::new();
    zone.add_txt(
        "_dmarc.example.co.uk",
        "v=DMARC1; p=reject; sp=none; rua=mailto:d@example.co.uk",
    );
    let (report, findings) = check_dmarc("news.shop.example.co.uk", &zone).await;
    assert!(report.inherited);
    assert_eq!(report.record_name.as_deref(), Some("_dmarc.example.co.uk"));
    assert_eq!(
        report.effective_policy,
        Some(Policy::None),
        "sp= governs subdomains"
    );
    assert_finding(&findings, Severity::Info, "dmarc-inherited");
    assert_finding(&findings, Severity::Warning, "dmarc-policy-none");
    assert_finding(
        &findings,
        Severity::Warning,
        "dmarc-subdomain-policy-weaker",
    );
    assert_eq!(
        organizational_domain("news.shop.example.co.uk"),
        "example.co.uk"
    );
}

#[tokio::test]
async fn dmarc_record_lints() {
    let cases: Vec<(&str, Vec<&str>, Severity, &str)> = vec![
        ("missing", vec![], Severity::Error, "dmarc-missing"),
        (
            "monitoring",
            vec!["v=DMARC1; p=none; rua=mailto:d@example.com"],
            Severity::Warning,
            "dmarc-policy-none",
        ),
        (
            "partial",
            vec!["v=DMARC1; p=quarantine; pct=25; rua=mailto:d@example.com"],
            Severity::Warning,
            "dmarc-pct-partial",
        ),
        (
            "no reports",
            vec!["v=DMARC1; p=reject"],
            Severity::Warning,
            "dmarc-no-rua",
        ),
        (
            "invalid value",
            vec!["v=DMARC1; p=reject; adkim=x; rua=mailto:d@example.com"],
            Severity::Error,
            "dmarc-invalid-tag",
        ),
        (
            "bad uri",
            vec!["v=DMARC1; p=reject; rua=d@example.com"],
            Severity::Error,
            "dmarc-invalid-tag",
        ),
        (
            "missing p",
            vec!["v=DMARC1; rua=mailto:d@example.com"],
            Severity::Error,
            "dmarc-policy-missing",
        ),
        (
            "typo tag",
            vec!["v=DMARC1; p=reject; rua=mailto:d@example.com; pc=100"],
            Severity::Warning,
            "dmarc-unknown-tag",
        ),
        (
            "https uri",
            vec!["v=DMARC1; p=reject; rua=https://r.example.com/"],
            Severity::Warning,
            "dmarc-uri-scheme",
        ),
        (
            "two records",
            vec!["v=DMARC1; p=none", "v=DMARC1; p=reject"],
            Severity::Error,
            "dmarc-multiple",
        ),
        (
            "duplicate tag",
            vec!["v=DMARC1; p=none; p=reject"],
            Severity::Error,
            "dmarc-syntax",
        ),
    ];
    for (what, records, severity, code) in cases {
        let mut zone = MemoryZone::new();
        zone.add_txt("_dmarc.example.com", "not a dmarc record, ignored");
        for record in records {
            zone.add_txt("_dmarc.example.com", record);
        }
        let (_, findings) = check_dmarc("example.com", &zone).await;
        assert!(
            findings
                .iter()
                .any(|f| f.severity == severity && f.code == code),
            "{what}: expected {severity:?} {code}, got {:?}",
            codes(&findings)
        );
    }
}

#[tokio::test]
async fn dmarc_lookup_failure_is_not_a_missing_record() {
    let mut zone = MemoryZone::new();
    zone.set_rcode("_dmarc.example.com", Rcode::ServFail);
    let (report, findings) = check_dmarc("example.com", &zone).await;
    assert!(report.record.is_none());
    assert_eq!(
        codes(&findings),
        [(Severity::Warning, "dmarc-lookup-failed")]
    );
}

// ---------------------------------------------------------------------------------------------
// MTA-STS

/// Policies by domain, in memory.
struct StaticPolicies(HashMap<&'static str, Result<&'static str, FetchError>>);

impl PolicyFetcher for StaticPolicies {
    async fn fetch(&self, domain: &str) -> Result<String, FetchError> {
        match self.0.get(domain) {
            Some(Ok(body)) => Ok((*body).to_owned()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(FetchError::Status(404)),
        }
    }
}

fn mta_sts_zone() -> MemoryZone {
    let mut zone = MemoryZone::new();
    for domain in ["example.com", "testing.example", "broken.example"] {
        zone.add_txt(
            &format!("_mta-sts.{domain}"),
            "v=STSv1; id=20250101T000000;",
        )
        .add(&format!("mta-sts.{domain}"), v4(192, 0, 2, 80));
    }
    zone
}

const ENFORCE_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example.net\r\nmax_age: 1209600\r\n";

#[tokio::test]
async fn mta_sts_policy_must_cover_every_mx_host() {
    let fetcher = StaticPolicies(HashMap::from([
        ("example.com", Ok(ENFORCE_POLICY)),
        (
            "testing.example",
            Ok("version: STSv1\nmode: testing\nmx: mx1.testing.example\nmax_age: 86400\n"),
        ),
        (
            "broken.example",
            Ok("version: STSv1\nmode: enforce\nmax_age: 86400\n"),
        ),
    ]));
    let zone = mta_sts_zone();
    let covered = [
        "mail.example.com".to_owned(),
        "mx2.backup.example.net.".to_owned(),
    ];
    let (report, findings) = check_mta_sts("example.com", &covered, &zone, &fetcher).await;
    assert_eq!(
        report.record.as_ref().map(|r| r.id.as_str()),
        Some("20250101T000000")
    );
    assert_eq!(report.policy.as_ref().map(|p| p.mode), Some(Mode::Enforce));
    assert_no_problems(&findings);
    assert_finding(&findings, Severity::Ok, "mta-sts-mx-covered");

    let uncovered = [
        "mail.example.com".to_owned(),
        "mx.other-provider.example".to_owned(),
    ];
    let (_, findings) = check_mta_sts("example.com", &uncovered, &zone, &fetcher).await;
    assert_finding(&findings, Severity::Error, "mta-sts-mx-not-covered");
    assert_finding(&findings, Severity::Info, "mta-sts-unused-pattern");

    let mx = ["mx2.testing.example".to_owned()];
    let (_, findings) = check_mta_sts("testing.example", &mx, &zone, &fetcher).await;
    assert_finding(&findings, Severity::Warning, "mta-sts-testing");
    assert_finding(&findings, Severity::Warning, "mta-sts-max-age-short");
    assert_finding(&findings, Severity::Warning, "mta-sts-mx-not-covered");

    let (report, findings) = check_mta_sts("broken.example", &[], &zone, &fetcher).await;
    assert!(report.policy.is_none());
    assert_finding(&findings, Severity::Error, "mta-sts-policy-invalid");
}

#[tokio::test]
async fn mta_sts_dns_side_lints() {
    let mut zone = MemoryZone::new();
    zone.add_txt("_mta-sts.nohost.example", "v=STSv1; id=1")
        .add_txt("_mta-sts.two.example", "v=STSv1; id=1")
        .add_txt("_mta-sts.two.example", "v=STSv1; id=2")
        .add_txt("_mta-sts.badid.example", "v=STSv1; id=2025-01-01")
        .add("mta-sts.badid.example", v4(192, 0, 2, 80))
        .add("mta-sts.two.example", v4(192, 0, 2, 80));
    let (_, findings) = check_mta_sts("none.example", &[], &zone, &FetchDisabled).await;
    assert_eq!(codes(&findings), [(Severity::Info, "mta-sts-missing")]);
    let (_, findings) = check_mta_sts("nohost.example", &[], &zone, &FetchDisabled).await;
    assert_finding(&findings, Severity::Error, "mta-sts-host-missing");
    assert_finding(&findings, Severity::Info, "mta-sts-policy-not-fetched");
    let (_, findings) = check_mta_sts("two.example", &[], &zone, &FetchDisabled).await;
    assert_finding(&findings, Severity::Error, "mta-sts-multiple-records");
    let (_, findings) = check_mta_sts("badid.example", &[], &zone, &FetchDisabled).await;
    assert_finding(&findings, Severity::Error, "mta-sts-record-invalid");
}

/// An HTTPS server on 127.0.0.1 with the fixture certificate for `mta-sts.example.com`, answering
/// every connection with `response` (a raw HTTP/1.1 response).
async fn https_server(response: Vec<u8>) -> SocketAddr {
    let cert = CertificateDer::from(std::fs::read(fixture("mta-sts/server.der")).unwrap());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        std::fs::read(fixture("mta-sts/server.key.der")).unwrap(),
    ));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn test_fetcher(addr: SocketAddr) -> HttpsPolicyFetcher {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            std::fs::read(fixture("mta-sts/ca.der")).unwrap(),
        ))
        .unwrap();
    HttpsPolicyFetcher::with_roots(roots, Duration::from_secs(5))
        .unwrap()
        .connect_to(addr)
}

fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[tokio::test]
async fn mta_sts_policy_is_fetched_over_validated_https() {
    let ok = https_server(http_response(
        "200 OK",
        &[("Content-Type", "text/plain; charset=utf-8")],
        ENFORCE_POLICY,
    ))
    .await;
    let fetcher = test_fetcher(ok);
    assert_eq!(
        fetcher.fetch("example.com").await.as_deref(),
        Ok(ENFORCE_POLICY)
    );
    let (report, findings) = check_mta_sts(
        "example.com",
        &["mail.example.com".to_owned()],
        &mta_sts_zone(),
        &fetcher,
    )
    .await;
    assert_eq!(report.policy.map(|p| p.max_age_secs), Some(1_209_600));
    assert_finding(&findings, Severity::Ok, "mta-sts-enforce");

    // The certificate is for mta-sts.example.com/.org only.
    let wrong_name = fetcher.fetch("example.net").await;
    assert!(
        matches!(wrong_name, Err(FetchError::Tls(_))),
        "{wrong_name:?}"
    );

    let redirect = https_server(http_response(
        "301 Moved Permanently",
        &[("Location", "https://www.example.com/mta-sts.txt")],
        "",
    ))
    .await;
    assert_eq!(
        test_fetcher(redirect).fetch("example.com").await,
        Err(FetchError::Redirect {
            status: 301,
            location: "https://www.example.com/mta-sts.txt".into()
        })
    );
    let html = https_server(http_response(
        "200 OK",
        &[("Content-Type", "text/html")],
        "<html>",
    ))
    .await;
    assert_eq!(
        test_fetcher(html).fetch("example.com").await,
        Err(FetchError::ContentType("text/html".into()))
    );
    let missing = https_server(http_response("404 Not Found", &[], "")).await;
    assert_eq!(
        test_fetcher(missing).fetch("example.com").await,
        Err(FetchError::Status(404))
    );
    let huge_body = "x".repeat(70 * 1024);
    let huge = https_server(http_response(
        "200 OK",
        &[("Content-Type", "text/plain")],
        &huge_body,
    ))
    .await;
    assert!(matches!(
        test_fetcher(huge).fetch("example.com").await,
        Err(FetchError::TooLarge { .. })
    ));
    let (_, findings) =
        check_mta_sts("example.com", &[], &mta_sts_zone(), &test_fetcher(missing)).await;
    assert_finding(&findings, Severity::Error, "mta-sts-policy-fetch-failed");
}

#[tokio::test]
async fn mta_sts_fetch_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and then never speaks TLS.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            std::fs::read(fixture("mta-sts/ca.der")).unwrap(),
        ))
        .unwrap();
    let fetcher = HttpsPolicyFetcher::with_roots(roots, Duration::from_millis(300))
        .unwrap()
        .connect_to(addr);
    let started = std::time::Instant::now();
    assert!(matches!(
        fetcher.fetch("example.com").await,
        Err(FetchError::Timeout(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timed out in time"
    );
    hold.abort();
}

// ---------------------------------------------------------------------------------------------
// TLS-RPT, BIMI

#[tokio::test]
async fn tlsrpt_and_bimi_records() {
    let mut zone = MemoryZone::new();
    zone.add_txt(
        "_smtp._tls.example.com",
        "v=TLSRPTv1; rua=mailto:tls-rpt@example.com,https://tlsrpt.example.net/v1",
    )
    .add_txt("_smtp._tls.bad.example", "v=TLSRPTv1; rua=ftp://x.example/")
    .add_txt(
        "default._bimi.example.com",
        "v=BIMI1; l=https://example.com/bimi/logo.svg; a=https://example.com/bimi/vmc.pem",
    )
    .add_txt(
        "default._bimi.plain.example",
        "v=BIMI1; l=http://plain.example/logo.svg",
    )
    .add_txt("default._bimi.decline.example", "v=BIMI1; l=;");
    let (report, findings) = check_tlsrpt("example.com", &zone).await;
    assert_eq!(report.record.map(|r| r.rua.len()), Some(2));
    assert_eq!(codes(&findings), [(Severity::Ok, "tlsrpt-valid")]);
    let (_, findings) = check_tlsrpt("bad.example", &zone).await;
    assert_finding(&findings, Severity::Error, "tlsrpt-invalid");
    let (_, findings) = check_tlsrpt("none.example", &zone).await;
    assert_finding(&findings, Severity::Info, "tlsrpt-missing");

    let (report, findings) = check_bimi("example.com", &zone).await;
    assert!(report.record.is_some_and(|r| r.authority.is_some()));
    assert_eq!(codes(&findings), [(Severity::Ok, "bimi-present")]);
    let (_, findings) = check_bimi("plain.example", &zone).await;
    assert_finding(&findings, Severity::Error, "bimi-url-not-https");
    let (_, findings) = check_bimi("decline.example", &zone).await;
    assert_finding(&findings, Severity::Info, "bimi-declined");
    let (_, findings) = check_bimi("none.example", &zone).await;
    assert_finding(&findings, Severity::Info, "bimi-missing");
}

// ---------------------------------------------------------------------------------------------
// DNSBL, Sender Score

#[tokio::test]
async fn dnsbl_answers_are_read_per_list() {
    let ip: IpAddr = "192.0.2.25".parse().unwrap();
    let mut zone = MemoryZone::new();
    zone.add("25.2.0.192.zen.spamhaus.org", v4(127, 0, 0, 4))
        .add("25.2.0.192.zen.spamhaus.org", v4(127, 0, 0, 11))
        // SpamCop: not listed (NXDOMAIN). Barracuda: the resolver rewrites NXDOMAIN.
        .add("25.2.0.192.b.barracudacentral.org", v4(198, 51, 100, 53))
        .add("25.2.0.192.dnsbl-1.uceprotect.net", v4(127, 0, 0, 2))
        .set_timeout("25.2.0.192.psbl.surriel.com")
        .add("25.2.0.192.list.dnswl.org", v4(127, 0, 5, 2));
    let (results, findings) = check_dnsbl(ip, &default_lists(), &zone).await;
    let status: HashMap<&str, &ListingStatus> = results
        .iter()
        .map(|r| (r.zone.as_str(), &r.status))
        .collect();
    let ListingStatus::Listed { codes: zen } = status["zen.spamhaus.org"] else {
        panic!(
            "expected a ZEN listing, got {:?}",
            status["zen.spamhaus.org"]
        );
    };
    let meanings: Vec<&str> = zen.iter().map(|c| c.meaning.as_str()).collect();
    assert!(
        meanings[0].starts_with("XBL") && meanings[1].starts_with("PBL"),
        "{meanings:?}"
    );
    assert_eq!(status["bl.spamcop.net"], &ListingStatus::NotListed);
    assert!(matches!(
        status["b.barracudacentral.org"],
        ListingStatus::Error { .. }
    ));
    assert!(matches!(
        status["dnsbl-1.uceprotect.net"],
        ListingStatus::Listed { .. }
    ));
    assert!(
        matches!(status["psbl.surriel.com"], ListingStatus::Error { reason } if reason == "timeout")
    );
    assert!(
        matches!(status["list.dnswl.org"], ListingStatus::Listed { codes } if codes[0].meaning.ends_with("trust medium"))
    );
    let listed = findings.iter().filter(|f| f.code == "dnsbl-listed").count();
    assert_eq!(listed, 2, "ZEN and UCEPROTECT: {:?}", codes(&findings));
    assert_finding(&findings, Severity::Warning, "dnsbl-query-failed");
    assert_finding(&findings, Severity::Ok, "dnswl-listed");
    assert!(!findings.iter().any(|f| f.code == "dnsbl-clean"));
}

#[tokio::test]
async fn spamhaus_refusals_are_query_errors_not_listings() {
    let ip: IpAddr = "192.0.2.25".parse().unwrap();
    let zen: Vec<DnsList> = default_lists().into_iter().take(1).collect();
    for (last, why) in [
        (252, "typing error"),
        (254, "public/open resolver"),
        (255, "excessive"),
    ] {
        let mut zone = MemoryZone::new();
        zone.add("25.2.0.192.zen.spamhaus.org", v4(127, 255, 255, last));
        let (results, findings) = check_dnsbl(ip, &zen, &zone).await;
        assert!(
            matches!(&results[0].status, ListingStatus::Error { reason } if reason.contains(why)),
            "127.255.255.{last}: {:?}",
            results[0].status
        );
        assert_eq!(
            codes(&findings),
            [(Severity::Warning, "dnsbl-query-failed")]
        );
    }
    let clean = MemoryZone::new();
    let (_, findings) = check_dnsbl(ip, &default_lists(), &clean).await;
    assert_finding(&findings, Severity::Ok, "dnsbl-clean");
    assert_finding(&findings, Severity::Info, "dnswl-not-listed");
}

#[tokio::test]
async fn dnsbl_ipv6_uses_nibbles_and_skips_ipv4_only_lists() {
    let ip: IpAddr = "2001:db8::25".parse().unwrap();
    let mut zone = MemoryZone::new();
    zone.add(
        "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org",
        v4(127, 0, 0, 3),
    );
    let (results, _) = check_dnsbl(ip, &default_lists(), &zone).await;
    assert!(
        matches!(&results[0].status, ListingStatus::Listed { codes } if codes[0].meaning.starts_with("SBL CSS"))
    );
    assert!(
        results
            .iter()
            .filter(|r| r.zone == "bl.spamcop.net")
            .all(|r| r.status == ListingStatus::NotApplicable)
    );
    let custom: DnsList = serde_json::from_value(json!({
        "name": "Local", "zone": "bl.local.example", "kind": "block"
    }))
    .unwrap();
    assert_eq!(
        (custom.codes, custom.ipv6, custom.kind),
        (ReturnCodes::Generic, true, ListKind::Block)
    );
}

#[tokio::test]
async fn sender_score_answers() {
    let cases: [(u8, Severity, &str); 4] = [
        (92, Severity::Ok, "senderscore-good"),
        (65, Severity::Warning, "senderscore-low"),
        (30, Severity::Error, "senderscore-poor"),
        (200, Severity::Warning, "senderscore-query-failed"),
    ];
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    for (last, severity, code) in cases {
        let mut zone = MemoryZone::new();
        zone.add("7.100.51.198.score.senderscore.com", v4(127, 0, 4, last));
        let (score, findings) = check_sender_score(ip, &zone).await;
        if last <= 100 {
            assert_eq!(score, SenderScore::Score { score: last });
        }
        assert_eq!(codes(&findings), [(severity, code)], "127.0.4.{last}");
    }
    let (score, findings) = check_sender_score(ip, &MemoryZone::new()).await;
    assert_eq!(score, SenderScore::NoScore);
    assert_eq!(codes(&findings), [(Severity::Info, "senderscore-none")]);
    let (score, findings) =
        check_sender_score(IpAddr::V6(Ipv6Addr::LOCALHOST), &MemoryZone::new()).await;
    assert_eq!((score, findings.len()), (SenderScore::NotApplicable, 0));
}

// ---------------------------------------------------------------------------------------------
// PTR / FCrDNS

#[tokio::test]
async fn reverse_dns_is_forward_confirmed() {
    let mut zone = MemoryZone::new();
    zone.add(
        "10.2.0.192.in-addr.arpa",
        RData::Ptr("mail.example.com.".into()),
    )
    .add("mail.example.com", v4(192, 0, 2, 10))
    .add(
        "11.2.0.192.in-addr.arpa",
        RData::Ptr("mail.example.com".into()),
    )
    .add(
        "12.2.0.192.in-addr.arpa",
        RData::Ptr("dsl-192-0-2-12.dyn.isp.example".into()),
    )
    .add("dsl-192-0-2-12.dyn.isp.example", v4(192, 0, 2, 12))
    .add(
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        RData::Ptr("mail6.example.com".into()),
    )
    .add(
        "mail6.example.com",
        RData::Aaaa("2001:db8::1".parse().unwrap()),
    )
    .set_timeout("14.2.0.192.in-addr.arpa");

    let (report, findings) = check_reverse("192.0.2.10".parse().unwrap(), &zone).await;
    assert!(report.forward_confirmed());
    assert_eq!(codes(&findings), [(Severity::Ok, "fcrdns-confirmed")]);

    let (report, findings) = check_reverse("192.0.2.11".parse().unwrap(), &zone).await;
    assert!(!report.forward_confirmed());
    assert_finding(&findings, Severity::Error, "fcrdns-not-confirmed");

    let (_, findings) = check_reverse("192.0.2.12".parse().unwrap(), &zone).await;
    assert_finding(&findings, Severity::Warning, "ptr-generic");

    let (_, findings) = check_reverse("192.0.2.13".parse().unwrap(), &zone).await;
    assert_eq!(codes(&findings), [(Severity::Error, "ptr-missing")]);

    let (_, findings) = check_reverse("192.0.2.14".parse().unwrap(), &zone).await;
    assert_eq!(
        codes(&findings),
        [(Severity::Warning, "fcrdns-lookup-failed")]
    );

    let (report, findings) = check_reverse("2001:db8::1".parse().unwrap(), &zone).await;
    assert!(report.forward_confirmed());
    assert_no_problems(&findings);
}

// ---------------------------------------------------------------------------------------------
// MX

#[tokio::test]
async fn mx_records_and_their_targets() {
    let mut zone = MemoryZone::new();
    zone.add("example.com", mx(20, "mx2.example.com."))
        .add("example.com", mx(10, "mx1.example.com."))
        .add("mx1.example.com", v4(192, 0, 2, 1))
        .add("mx2.example.com", v4(198, 51, 100, 2))
        .add("subnet.example", mx(10, "a.subnet.example"))
        .add("subnet.example", mx(20, "b.subnet.example"))
        .add("a.subnet.example", v4(192, 0, 2, 1))
        .add("b.subnet.example", v4(192, 0, 2, 2))
        .add("null.example", mx(0, "."))
        .add("implicit.example", v4(192, 0, 2, 3))
        .add_txt("nothing.example", "v=spf1 -all")
        .add("bad.example", mx(10, "alias.bad.example"))
        .add("bad.example", mx(20, "192.0.2.9"))
        .add("bad.example", mx(30, "noaddr.bad.example"))
        .add("alias.bad.example", RData::Cname("mx1.example.com".into()))
        .add_txt("noaddr.bad.example", "no address here")
        .add("mixed.example", mx(0, "."))
        .add("mixed.example", mx(10, "mx1.example.com"));

    let (report, findings) = check_mx("example.com", &zone).await;
    let order: Vec<(u16, &str)> = report
        .hosts
        .iter()
        .map(|h| (h.preference, h.exchange.as_str()))
        .collect();
    assert_eq!(order, [(10, "mx1.example.com"), (20, "mx2.example.com")]);
    assert_eq!(
        report.delivery_hosts(),
        ["mx1.example.com", "mx2.example.com"]
    );
    assert_eq!(codes(&findings), [(Severity::Ok, "mx-valid")]);

    let (_, findings) = check_mx("subnet.example", &zone).await;
    assert_finding(&findings, Severity::Info, "mx-single-subnet");

    let (report, findings) = check_mx("null.example", &zone).await;
    assert_eq!(report.kind, MxKind::Null);
    assert_eq!(codes(&findings), [(Severity::Info, "mx-null")]);

    let (report, findings) = check_mx("implicit.example", &zone).await;
    assert_eq!(
        (report.kind, report.delivery_hosts()),
        (MxKind::Implicit, vec!["implicit.example".to_owned()])
    );
    assert_finding(&findings, Severity::Warning, "mx-implicit");
    let (_, findings) = check_mx("nothing.example", &zone).await;
    assert_finding(&findings, Severity::Error, "mx-none");
    let (report, findings) = check_mx("nxdomain.example", &zone).await;
    assert_eq!(report.kind, MxKind::NoDomain);
    assert_finding(&findings, Severity::Error, "mx-domain-missing");

    let (report, findings) = check_mx("bad.example", &zone).await;
    assert_eq!(
        report.hosts[0].cname_target.as_deref(),
        Some("mx1.example.com")
    );
    assert!(report.hosts[1].ip_literal);
    assert_finding(&findings, Severity::Error, "mx-cname");
    assert_finding(&findings, Severity::Error, "mx-ip-literal");
    assert_finding(&findings, Severity::Error, "mx-no-address");
    assert!(!findings.iter().any(|f| f.code == "mx-valid"));

    let (_, findings) = check_mx("mixed.example", &zone).await;
    assert_finding(&findings, Severity::Error, "mx-null-mixed");
}

#[tokio::test]
async fn mx_hosts_feed_the_mta_sts_coverage_check() {
    let mut zone = mta_sts_zone();
    zone.add("example.com", mx(10, "mail.example.com"))
        .add("example.com", mx(20, "mx9.backup.example.net"))
        .add("mail.example.com", v4(192, 0, 2, 1))
        .add("mx9.backup.example.net", v4(198, 51, 100, 9));
    let (mx_report, _) = check_mx("example.com", &zone).await;
    let fetcher = StaticPolicies(HashMap::from([("example.com", Ok(ENFORCE_POLICY))]));
    let (_, findings) =
        check_mta_sts("example.com", &mx_report.delivery_hosts(), &zone, &fetcher).await;
    assert_finding(&findings, Severity::Ok, "mta-sts-mx-covered");
}

// ---------------------------------------------------------------------------------------------
// Golden parse results

/// Every line of `records.txt` is `<parser> <record>`; `records.json` holds what each parses
/// into.
#[test]
fn golden_records_parse_into_the_expected_values() {
    let input = fixture("records.txt");
    let expected_path = fixture("records.json");
    let text = std::fs::read_to_string(&input).unwrap();
    let mut actual = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (parser, record) = line.split_once(' ').unwrap_or((line, ""));
        let bytes = record.as_bytes();
        let parsed = match parser {
            "dkim" => to_json(parse_dkim_record(bytes)),
            "dmarc" => to_json(parse_dmarc_record(bytes)),
            "mta-sts" => to_json(parse_mta_sts_record(bytes)),
            // Policies are one line in the fixture, `\n` escaped.
            "policy" => match parse_policy(&record.replace("\\n", "\n")) {
                Ok(policy) => json!({ "ok": policy }),
                Err(errors) => json!({ "errors": errors }),
            },
            "tlsrpt" => to_json(parse_tlsrpt_record(bytes)),
            "bimi" => to_json(parse_bimi_record(bytes)),
            other => panic!("{}: unknown parser {other}", input.display()),
        };
        actual.push(json!({ "parser": parser, "record": record, "parsed": parsed }));
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut out = serde_json::to_string_pretty(&actual).unwrap();
        out.push('\n');
        std::fs::write(&expected_path, out).unwrap();
        return;
    }
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!("{}: {e}; run with UPDATE_GOLDEN=1", expected_path.display())
        }),
    )
    .unwrap();
    assert_eq!(
        expected.len(),
        actual.len(),
        "records.json is out of date (UPDATE_GOLDEN=1)"
    );
    for (exp, act) in expected.iter().zip(&actual) {
        assert_eq!(exp, act, "\n  expected: {exp}\n  actual:   {act}");
    }
}

fn to_json<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
    }
    out
}

#[test]
fn the_test_base64_encoder_round_trips_through_the_decoder() {
    for len in 0..40 {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(
            decode_base64(&base64(&bytes)).unwrap(),
            bytes,
            "{len} bytes"
        );
    }
    let der = decode_base64(&key("rsa4096.spki.b64")).unwrap();
    assert_eq!(rsa_modulus_bits(&der), Ok(4096));
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// Text shaped like a tag-list, so the parsers get past the first tag.
fn tag_list_like() -> impl Strategy<Value = String> {
    let version = prop::sample::select(vec![
        "v=DKIM1; ",
        "v=DMARC1; ",
        "v=STSv1; ",
        "v=TLSRPTv1; ",
        "v=BIMI1; ",
        "",
    ]);
    let name = prop::sample::select(vec![
        "p", "k", "h", "s", "t", "n", "sp", "pct", "rua", "ruf", "adkim", "aspf", "fo", "rf", "ri",
        "id", "l", "a", "x",
    ]);
    let value = "[ -:<-~]{0,40}";
    (version, prop::collection::vec((name, value), 0..8)).prop_map(|(v, tags)| {
        let body: Vec<String> = tags.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{v}{}", body.join("; "))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn record_parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_tag_list(&bytes);
        let _ = parse_dkim_record(&bytes);
        let _ = rsa_modulus_bits(&bytes);
        let _ = parse_dmarc_record(&bytes);
        let _ = parse_mta_sts_record(&bytes);
        let _ = parse_tlsrpt_record(&bytes);
        let _ = parse_bimi_record(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode_base64(&text);
        let _ = parse_policy(&text);
        let _ = parse_report_uri(&text);
        let _ = organizational_domain(&text);
        let _ = looks_generic(&text, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let _ = looks_generic(&text, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn record_parsers_never_panic_on_tag_lists(text in tag_list_like()) {
        let bytes = text.as_bytes();
        let _ = parse_dkim_record(bytes);
        let _ = parse_dmarc_record(bytes);
        let _ = parse_mta_sts_record(bytes);
        let _ = parse_tlsrpt_record(bytes);
        let _ = parse_bimi_record(bytes);
        let _ = parse_policy(&text.replace("; ", "\n").replace('=', ": "));
    }

    #[test]
    fn der_prefixes_and_corruptions_of_real_keys_never_panic(cut in 0usize..300, flip in 0usize..300, bit in 0u8..8) {
        let mut der = decode_base64(&key("rsa2048.spki.b64")).unwrap();
        if flip < der.len() {
            der[flip] ^= 1 << bit;
        }
        let _ = rsa_modulus_bits(&der[..cut.min(der.len())]);
        let _ = rsa_modulus_bits(&der);
    }

    #[test]
    fn list_answers_never_panic(octets in prop::collection::vec(any::<[u8; 4]>(), 0..4)) {
        let addresses: Vec<Ipv4Addr> = octets.into_iter().map(Ipv4Addr::from).collect();
        for codes in [ReturnCodes::SpamhausZen, ReturnCodes::Dnswl, ReturnCodes::Generic] {
            let _ = interpret_answer(codes, &addresses);
        }
        let _ = mailpulse_agent::dns::senderscore::interpret_answer(&addresses);
    }
}

#[tokio::test]
async fn checks_survive_hostile_txt_records() {
    let hostile: Vec<RData> = vec![
        RData::Txt(vec![]),
        RData::Txt(vec![vec![]]),
        RData::Txt(vec![vec![0xff, 0xfe, b'v', b'=']]),
        RData::Txt(vec![b"v=DMARC1; rua=mailto:".to_vec(), vec![0; 300]]),
        RData::Txt(vec![b"v=STSv1; id=".to_vec(), vec![b'a'; 600]]),
        RData::Txt(vec![
            b"v=DMARC1; p=reject; rua=mailto:a@b.example!999999999999999999999t".to_vec(),
        ]),
    ];
    for data in hostile {
        let mut zone = MemoryZone::new();
        for name in [
            "s._domainkey.example.com",
            "_dmarc.example.com",
            "_mta-sts.example.com",
            "_smtp._tls.example.com",
            "default._bimi.example.com",
        ] {
            zone.add(name, data.clone());
        }
        check_dkim("example.com", "s", SelectorUsage::InUse, &zone).await;
        check_dmarc("example.com", &zone).await;
        check_mta_sts("example.com", &[], &zone, &FetchDisabled).await;
        check_tlsrpt("example.com", &zone).await;
        check_bimi("example.com", &zone).await;
    }
}
