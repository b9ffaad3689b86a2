//! `bench-spf`: SPF evaluations per second on one core against the in-memory zone.
//!
//! ```text
//! cargo run -p mailpulse-benches --release --bin bench-spf -- [--evaluations N]
//! ```
//! The policy is shaped like a real sender's: `mx`, `a`, ip4/ip6 lists and two includes, one of
//! them three levels deep (as large mail providers publish theirs), 6 DNS-querying terms in all.
//! Clients rotate through four cases: matched by the domain's own ip4, by the deepest include,
//! by the second include, and by nothing (a fail after the whole policy was evaluated). The
//! zone answers from memory, so the figure is the evaluator's own cost: parsing every record it
//! fetches, macro-free target handling, CIDR matching, the trace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use mailpulse_agent::dns::spf::{Verdict, check_host};
use mailpulse_agent::dns::{MemoryZone, RData};

#[derive(Debug, Parser)]
#[command(
    name = "bench-spf",
    about = "SPF check_host evaluations per second against an in-memory zone"
)]
struct Args {
    /// Evaluations per timed run.
    #[arg(long, default_value_t = 200_000)]
    evaluations: u64,
    /// Timed runs; the best one is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

const DOMAIN: &str = "example.com";

/// Client addresses and the verdict each must get.
const CLIENTS: [(IpAddr, Verdict); 4] = [
    (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)), Verdict::Pass),
    (IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200)), Verdict::Pass),
    (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 140)), Verdict::Pass),
    (IpAddr::V4(Ipv4Addr::new(100, 64, 9, 9)), Verdict::Fail),
];

fn main() -> Result<()> {
    let args = Args::parse();
    if args.evaluations == 0 || args.runs == 0 {
        bail!("--evaluations and --runs must be positive");
    }
    let zone = realistic_zone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut best_secs = f64::INFINITY;
    for _ in 0..args.runs {
        let started = Instant::now();
        let mismatches = runtime.block_on(evaluate(&zone, args.evaluations));
        let secs = started.elapsed().as_secs_f64();
        if mismatches > 0 {
            bail!("{mismatches} evaluations got an unexpected verdict");
        }
        best_secs = best_secs.min(secs);
    }
    println!(
        "evaluations={} secs={best_secs:.3} per_sec={:.0}",
        args.evaluations,
        args.evaluations as f64 / best_secs
    );
    Ok(())
}

/// Runs `n` checks over the client mix; returns how many got an unexpected verdict.
async fn evaluate(zone: &MemoryZone, n: u64) -> u64 {
    let mut mismatches = 0;
    for i in 0..n {
        let (ip, want) = CLIENTS[(i % CLIENTS.len() as u64) as usize];
        let result = check_host(
            ip,
            DOMAIN,
            "newsletter@example.com",
            "mta1.example.com",
            zone,
        )
        .await;
        if result.verdict != want {
            mismatches += 1;
        }
    }
    mismatches
}

fn realistic_zone() -> MemoryZone {
    let mut z = MemoryZone::new();
    z.add_txt(
        DOMAIN,
        "v=spf1 mx a ip4:192.0.2.0/25 ip4:198.51.100.16/28 ip4:198.51.100.64/27 \
         ip6:2001:db8:10::/48 ip6:2001:db8:20::/48 include:_spf.mailhost.example \
         include:spf.crm.example -all",
    )
    .add_txt(DOMAIN, "google-site-verification=0123456789abcdef")
    .add(DOMAIN, RData::A(Ipv4Addr::new(192, 0, 2, 10)))
    .add(
        DOMAIN,
        RData::Aaaa(Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 10)),
    )
    .add(
        DOMAIN,
        RData::Mx {
            preference: 10,
            exchange: "mx1.example.com".into(),
        },
    )
    .add(
        DOMAIN,
        RData::Mx {
            preference: 20,
            exchange: "mx2.example.com".into(),
        },
    )
    .add("mx1.example.com", RData::A(Ipv4Addr::new(192, 0, 2, 25)))
    .add("mx2.example.com", RData::A(Ipv4Addr::new(192, 0, 2, 26)))
    .add_txt(
        "_spf.mailhost.example",
        "v=spf1 include:_netblocks.mailhost.example ip4:203.0.113.0/28 ~all",
    )
    .add_txt(
        "_netblocks.mailhost.example",
        "v=spf1 ip4:203.0.113.16/28 ip4:203.0.113.32/28 ip6:2001:db8:100::/40 \
         include:_netblocks2.mailhost.example ~all",
    )
    .add_txt(
        "_netblocks2.mailhost.example",
        "v=spf1 ip4:203.0.113.64/26 ip4:203.0.113.128/25 ip6:2001:db8:200::/40 \
         ip6:2001:db8:300::/40 ~all",
    )
    .add_txt(
        "spf.crm.example",
        "v=spf1 ip4:198.51.100.128/27 ip4:198.51.100.160/27 ip4:198.51.100.192/26 \
         ip6:2001:db8:400::/44 -all",
    );
    z
}
