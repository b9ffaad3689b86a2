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

mod dkim;
mod dmarc;
mod golden;
mod hostile;
mod mta_sts;
mod mx;
mod reputation;
mod reverse;
mod tlsrpt_bimi;

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

/// Standard base64 with padding (test keys and signatures).
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
