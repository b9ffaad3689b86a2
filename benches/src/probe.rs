//! Probe scheduling for many monitored domains against a local Knot DNS: one round of every
//! domain (record sets through the default resolver and each authoritative server asked
//! directly), as fast as the concurrency limits allow. Prints probes/s and peak RSS.
//!
//! Needs `knotd` (Debian `knot`). Every query goes to 127.0.0.1.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use mailpulse_agent::dns::config::DomainSpec;
use mailpulse_agent::dns::hickory::{HickoryResolver, ResolverOptions};
use mailpulse_agent::dns::probe::ProbeOptions;
use mailpulse_agent::dns::schedule::{Extras, Schedule, run_prober};
use mailpulse_tests::knot::{KnotServer, ZoneSpec, zone_text};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "bench-probe",
    about = "Probes/s and memory of one probe round over many domains against a local Knot"
)]
struct Args {
    /// Monitored domains (names in one Knot zone, each with MX, SPF, DMARC and a DKIM key).
    #[arg(long, default_value_t = 10_000)]
    domains: usize,
    /// Domains probed at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Lookups in flight per resolver.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
}

const ZONE: &str = "bench.test";

fn main() -> Result<()> {
    let args = Args::parse();
    let mut records = Vec::with_capacity(args.domains * 5);
    for i in 0..args.domains {
        let d = format!("d{i}");
        records.push(format!("{d} IN MX 10 mx{}.{ZONE}.", i % 50));
        records.push(format!(
            "{d} IN TXT \"v=spf1 ip4:192.0.2.0/24 include:_spf.{ZONE} -all\""
        ));
        records.push(format!("_dmarc.{d} IN TXT \"v=DMARC1; p=reject\""));
        records.push(format!(
            "s1._domainkey.{d} IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\""
        ));
    }
    for m in 0..50 {
        records.push(format!("mx{m} IN A 192.0.2.{}", m + 1));
    }
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let text = zone_text(ZONE, 1, &refs);
    let knot = KnotServer::start(&[ZoneSpec::unsigned(ZONE, &text)]).context("starting knotd")?;
    let addr = knot.addr();
    let domains: Vec<DomainSpec> = (0..args.domains)
        .map(|i| DomainSpec {
            domain: format!("d{i}.{ZONE}"),
            dkim_selectors: vec!["s1".into()],
            authoritative: vec![addr],
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rss_before = peak_rss_mb();
    let (probes, samples, secs) = runtime.block_on(async {
        let options = ResolverOptions::default()
            .timeout(Duration::from_secs(2))
            .attempts(2)
            .cache(false)
            .max_in_flight(args.in_flight);
        let default = Arc::new(HickoryResolver::with_nameservers(&[addr], options)?);
        let authoritative = Arc::new(HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::authoritative(Duration::from_secs(2)).max_in_flight(args.in_flight),
        )?);
        let schedule = Schedule {
            interval: Duration::from_secs(300),
            jitter: Duration::ZERO,
            max_concurrent_domains: args.concurrency,
            options: ProbeOptions {
                dnssec: false,
                window_secs: 60,
            },
        };
        let (mut probes, mut samples, mut errors) = (0usize, 0usize, 0usize);
        let started = Instant::now();
        run_prober(
            domains,
            default,
            move |_| Some(authoritative.clone()),
            Arc::new(Vec::new()),
            schedule,
            Extras::default(),
            "bench".into(),
            true,
            CancellationToken::new(),
            |round| {
                errors += round
                    .probes
                    .iter()
                    .filter(|p| p.rcode == "timeout" || p.rcode == "error")
                    .count();
                probes += round.probes.len();
                samples += round.samples.len();
            },
        )
        .await;
        anyhow::ensure!(errors == 0, "{errors} probes failed");
        anyhow::Ok((probes, samples, started.elapsed().as_secs_f64()))
    })?;
    let mut line = String::new();
    let _ = write!(
        line,
        "domains={} probes={probes} samples={samples} secs={secs:.2} probes_per_sec={:.0} \
         domains_per_sec={:.0} peak_rss_mb={:.1} (before the round {:.1})",
        args.domains,
        probes as f64 / secs,
        args.domains as f64 / secs,
        peak_rss_mb(),
        rss_before
    );
    println!("{line}");
    Ok(())
}

/// VmHWM of this process in MB (0 when /proc is unavailable).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
