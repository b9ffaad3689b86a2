//! SPF end to end: the official RFC 7208 test suite, and evaluation of pathological zones
//! (include loops, very many includes, deep redirect chains) that must end quickly in a
//! permerror.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mailpulse_agent::dns::MemoryZone;
use mailpulse_agent::dns::spf::{Verdict, check_host, lint, run_suite};

/// Tests in `rfc7208-tests.yml` (release 2014.04 with the 2019.08 additions).
const SUITE_TESTS: usize = 203;
/// Wall-clock bound for one pathological evaluation (debug build, shared CI cores).
const PATHOLOGICAL_BOUND: Duration = Duration::from_secs(2);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spf")
        .join(name)
}

#[tokio::test]
async fn rfc7208_suite_passes_entirely() {
    let path = fixture("rfc7208-tests.yml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let report = run_suite(&yaml).await.expect("the suite file parses");
    assert_eq!(report.outcomes.len(), SUITE_TESTS, "tests in the file");
    assert_eq!(
        report.passed(),
        SUITE_TESTS,
        "expected every RFC 7208 test to pass; failures:\n{}",
        report.render()
    );
    assert_eq!(
        report.render().lines().last(),
        Some(format!("{SUITE_TESTS} passed, 0 failed").as_str())
    );
}

/// Runs one check against `zone` and asserts it ends in a permerror within the bound.
async fn assert_quick_permerror(zone: &MemoryZone, domain: &str, what: &str) {
    let started = Instant::now();
    let result = check_host(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)),
        domain,
        &format!("someone@{domain}"),
        "mail.example.org",
        zone,
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(
        result.verdict,
        Verdict::PermError,
        "{what}: expected permerror, got {} ({:?})",
        result.verdict,
        result.problem
    );
    assert!(
        elapsed < PATHOLOGICAL_BOUND,
        "{what}: took {elapsed:?}, expected under {PATHOLOGICAL_BOUND:?}"
    );
    assert!(
        result.trace.len() <= 40,
        "{what}: expected a bounded number of lookups, made {}",
        result.trace.len()
    );
}

#[tokio::test]
async fn pathological_zones_end_quickly_in_permerror() {
    let mut zone = MemoryZone::new();
    // A loop of two includes, and a record that includes itself.
    zone.add_txt("loop-a.example", "v=spf1 include:loop-b.example -all")
        .add_txt("loop-b.example", "v=spf1 include:loop-a.example -all")
        .add_txt("self.example", "v=spf1 include:self.example -all");
    // A hundred includes in one record, each with an include of its own.
    let hundred: String = (0..100)
        .map(|i| format!(" include:i{i}.wide.example"))
        .collect();
    zone.add_txt("wide.example", &format!("v=spf1{hundred} -all"));
    for i in 0..100 {
        zone.add_txt(
            &format!("i{i}.wide.example"),
            &format!("v=spf1 include:n{i}.wide.example ip4:198.51.100.{i} -all"),
        );
        zone.add_txt(&format!("n{i}.wide.example"), "v=spf1 ip4:203.0.113.1 -all");
    }
    // A redirect chain 1000 deep, and a redirect to itself.
    for i in 0..1000 {
        zone.add_txt(
            &format!("r{i}.deep.example"),
            &format!("v=spf1 ip4:198.51.100.1 redirect=r{}.deep.example", i + 1),
        );
    }
    zone.add_txt(
        "redirect-self.example",
        "v=spf1 redirect=redirect-self.example",
    );
    // Include fan-out where every level has many mx terms with many names.
    zone.add_txt(
        "mxs.example",
        "v=spf1 mx mx mx mx mx mx mx mx mx mx mx -all",
    );
    for pref in 0..10u16 {
        zone.add(
            "mxs.example",
            mailpulse_agent::dns::RData::Mx {
                preference: pref,
                exchange: format!("mx{pref}.mxs.example"),
            },
        );
        zone.add(
            &format!("mx{pref}.mxs.example"),
            mailpulse_agent::dns::RData::A(Ipv4Addr::new(198, 51, 100, 50)),
        );
    }
    assert_quick_permerror(&zone, "loop-a.example", "include loop").await;
    assert_quick_permerror(&zone, "self.example", "self include").await;
    assert_quick_permerror(&zone, "wide.example", "100 includes").await;
    assert_quick_permerror(&zone, "r0.deep.example", "1000-deep redirect chain").await;
    assert_quick_permerror(&zone, "redirect-self.example", "redirect to itself").await;
    let started = Instant::now();
    let result = check_host(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)),
        "mxs.example",
        "x@mxs.example",
        "h.example",
        &zone,
    )
    .await;
    assert_eq!(result.verdict, Verdict::PermError, "{:?}", result.problem);
    assert!(started.elapsed() < PATHOLOGICAL_BOUND);
    assert!(
        result.trace.len() <= 10 * 11 + 1,
        "lookups {}",
        result.trace.len()
    );

    // The linter walks the same zones within its bounds and reports them.
    for (domain, code) in [
        ("loop-a.example", "spf-include-loop"),
        ("wide.example", "spf-lookup-limit-exceeded"),
        ("r0.deep.example", "spf-walk-truncated"),
        ("redirect-self.example", "spf-include-loop"),
    ] {
        let started = Instant::now();
        let findings = lint(domain, &zone).await;
        assert!(
            started.elapsed() < PATHOLOGICAL_BOUND,
            "lint of {domain} took {:?}",
            started.elapsed()
        );
        assert!(
            findings.iter().any(|f| f.code == code),
            "lint of {domain}: expected {code} in {:?}",
            findings.iter().map(|f| &f.code).collect::<Vec<_>>()
        );
    }
}
