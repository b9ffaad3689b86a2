//! Tests of `check_host` against in-memory zones: results and explanations, the DNS lookup limits,
//! temporary errors.

use std::net::Ipv4Addr;

use super::*;
use crate::dns::MemoryZone;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn run(zone: &MemoryZone, ip: &str, domain: &str) -> SpfResult {
    check_host(
        v4(ip),
        domain,
        &format!("user@{domain}"),
        "mail.example.org",
        zone,
    )
    .await
}

#[tokio::test]
async fn basic_results_and_explanation() {
    let mut z = MemoryZone::new();
    z.add_txt(
        "example.com",
        "v=spf1 ip4:192.0.2.0/24 ~all exp=why.example.com",
    )
    .add_txt(
        "strict.example.com",
        "v=spf1 ip4:192.0.2.1 -all exp=why.example.com",
    )
    .add_txt("why.example.com", "%{i} may not send for %{d} (%{s})")
    .add_txt("example.com", "some other TXT");
    assert_eq!(
        run(&z, "192.0.2.7", "example.com").await.verdict,
        Verdict::Pass
    );
    assert_eq!(
        run(&z, "198.51.100.1", "example.com").await.verdict,
        Verdict::SoftFail
    );
    let fail = run(&z, "198.51.100.1", "strict.example.com").await;
    assert_eq!(fail.verdict, Verdict::Fail);
    assert_eq!(
        fail.explanation.as_deref(),
        Some("198.51.100.1 may not send for strict.example.com (user@strict.example.com)")
    );
    assert_eq!(
        run(&z, "192.0.2.1", "nothing.example.com").await.verdict,
        Verdict::None
    );
    assert_eq!(
        run(&z, "192.0.2.1", "localhost").await.verdict,
        Verdict::None
    );
}

#[tokio::test]
async fn the_tenth_dns_term_passes_the_eleventh_is_a_permerror() {
    let mut z = MemoryZone::new();
    z.add("example.com", RData::A(Ipv4Addr::new(198, 51, 100, 9)));
    let nine_a = "a ".repeat(9);
    z.add_txt(
        "ten.example.com",
        &format!("v=spf1 {nine_a}a:example.com ip4:192.0.2.1 -all"),
    );
    z.add_txt(
        "eleven.example.com",
        &format!("v=spf1 {nine_a}a:example.com a:example.com ip4:192.0.2.1 -all"),
    );
    z.add("ten.example.com", RData::A(Ipv4Addr::new(198, 51, 100, 10)));
    z.add(
        "eleven.example.com",
        RData::A(Ipv4Addr::new(198, 51, 100, 11)),
    );
    let ten = run(&z, "192.0.2.1", "ten.example.com").await;
    assert_eq!((ten.verdict, ten.dns_terms), (Verdict::Pass, 10));
    let eleven = run(&z, "192.0.2.1", "eleven.example.com").await;
    assert_eq!(eleven.verdict, Verdict::PermError);
    assert!(eleven.problem.unwrap().contains("more than 10"));
}

#[tokio::test]
async fn void_lookups_mx_and_ptr_limits() {
    let mut z = MemoryZone::new();
    z.add_txt(
        "void2.example.com",
        "v=spf1 a:nx1.example.com mx:nx2.example.com ?all",
    )
    .add_txt(
        "void3.example.com",
        "v=spf1 a:nx1.example.com mx:nx2.example.com exists:nx3.example.com ?all",
    )
    .add_txt("manymx.example.com", "v=spf1 mx -all")
    .add_txt("ptr.example.com", "v=spf1 ptr -all");
    for pref in 0..11u16 {
        z.add(
            "manymx.example.com",
            RData::Mx {
                preference: pref,
                exchange: format!("mx{pref}.example.com"),
            },
        );
    }
    for i in 0..11 {
        let name = format!("h{i}.ptr.example.com");
        z.add("1.2.0.192.in-addr.arpa", RData::Ptr(name.clone()));
        if i == 10 {
            z.add(&name, RData::A(Ipv4Addr::new(192, 0, 2, 1)));
        }
    }
    let two = run(&z, "192.0.2.1", "void2.example.com").await;
    assert_eq!((two.verdict, two.void_lookups), (Verdict::Neutral, 2));
    assert_eq!(
        run(&z, "192.0.2.1", "void3.example.com").await.verdict,
        Verdict::PermError
    );
    assert_eq!(
        run(&z, "192.0.2.1", "manymx.example.com").await.verdict,
        Verdict::PermError
    );
    // Only the first 10 PTR names are validated; the 11th would have matched.
    assert_eq!(
        run(&z, "192.0.2.1", "ptr.example.com").await.verdict,
        Verdict::Fail
    );
}

#[tokio::test]
async fn timeouts_and_servfail_are_temperrors() {
    let mut z = MemoryZone::new();
    z.add_txt("example.com", "v=spf1 a:slow.example.com -all")
        .add_txt("inc.example.com", "v=spf1 include:broken.example.com -all")
        .set_timeout("slow.example.com")
        .set_rcode("broken.example.com", Rcode::ServFail)
        .set_timeout("dead.example.com");
    assert_eq!(
        run(&z, "192.0.2.1", "example.com").await.verdict,
        Verdict::TempError
    );
    assert_eq!(
        run(&z, "192.0.2.1", "inc.example.com").await.verdict,
        Verdict::TempError
    );
    let dead = run(&z, "192.0.2.1", "dead.example.com").await;
    assert_eq!(dead.verdict, Verdict::TempError);
    assert_eq!(dead.trace.len(), 1);
    assert_eq!(
        dead.trace[0].outcome,
        LookupOutcome::Failed("DNS query timed out".into())
    );
}

#[test]
fn helpers() {
    assert_eq!(
        sender_domain("a@b@example.com", "helo.example"),
        "example.com"
    );
    assert_eq!(sender_domain("", "helo.example"), "helo.example");
    assert_eq!(reverse_name(v4("192.0.2.3")), "3.2.0.192.in-addr.arpa");
    assert!(reverse_name("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0."));
    assert!(in_network(v4("10.1.2.3"), v4("0.0.0.0"), 0));
    assert!(!in_network(v4("10.1.2.3"), v4("10.1.2.4"), 32));
    assert!(is_same_or_subdomain("a.example.com", "example.com"));
    assert!(!is_same_or_subdomain("aexample.com", "example.com"));
    assert!(!is_checkable_domain("A...example.com"));
    assert!(!is_checkable_domain("[1.2.3.5]"));
    assert!(!is_checkable_domain("A2345678"));
    assert!(is_checkable_domain("example.com."));
}
