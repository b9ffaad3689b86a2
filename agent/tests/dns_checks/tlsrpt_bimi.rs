//! TLS-RPT and BIMI records.

use super::*;

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
