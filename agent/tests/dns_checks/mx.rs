//! MX records and their targets.

use super::*;
use crate::mta_sts::{ENFORCE_POLICY, StaticPolicies, mta_sts_zone};

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
