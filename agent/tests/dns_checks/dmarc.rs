//! DMARC record and report-destination checks.

use super::*;

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
