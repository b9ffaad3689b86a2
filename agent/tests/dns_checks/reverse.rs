//! PTR and forward-confirmed reverse DNS.

use super::*;

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
