//! DNSBL and Sender Score answers.

use super::*;

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
