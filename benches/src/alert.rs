//! `bench-alert`: latency from the end of the window that holds a bounce storm to the alert
//! listed by a real Alertmanager (prometheus-alertmanager on loopback). An in-process collector
//! (1-second windows, analyzer every second, no settle delay) learns ten minutes of ordinary
//! bounces, the storm is sent ahead of time for a window a few seconds away, and the clock runs
//! from the end of that window until `GET /api/v2/alerts` lists the alert (polled every 10 ms).
//!
//! ```text
//! cargo run -p mailpulse-benches --release --bin bench-alert -- [--runs 5]
//! ```
//! The agent's own shipping delay (it sends a window once it closed) comes on top; the
//! collector's defaults (`[detect] settle_secs = 120`, `interval_secs = 60`) trade latency for
//! agents that ship late: this measures the alerting path itself.

#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::Parser;
use mailpulse_tests::alertmanager::{self, AlertmanagerCluster};

#[derive(Parser)]
struct Args {
    /// Storms measured (one collector each).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !alertmanager::available() {
        bail!("bench-alert needs the Debian prometheus-alertmanager package");
    }
    let ams = AlertmanagerCluster::start(1, None);
    let mut latencies = Vec::new();
    for run in 0..args.runs.max(1) {
        let dir = tempfile::tempdir()?;
        let mut cfg = support::second_windows_config(dir.path(), &[ams.url(0)]);
        cfg.alerting.resend_interval_secs = 60;
        let collector = support::start(cfg).await;
        let mut agent = support::AgentStream::mx1(collector.grpc_addr()).await;
        let domain = format!("run{run}.example");
        // Storms at different phases of the analyzer's one-second round.
        tokio::time::sleep(Duration::from_millis((run as u64 * 370) % 1000)).await;
        let start = now().as_secs() as i64;
        let storm = start + 6;
        let samples = support::bounce_traffic(
            &domain,
            start - 600..storm + 1,
            storm..storm + 1,
            3 + run as u64,
        );
        for (seq, chunk) in (1..).zip(samples.chunks(500)) {
            agent
                .batch(seq, chunk.to_vec())
                .await
                .map_err(|e| anyhow::anyhow!("batch: {e}"))?;
        }
        // The storm's window ends at storm + 1 s.
        let window_end = Duration::from_secs((storm + 1) as u64);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = None;
        while Instant::now() < deadline {
            let alerts = ams.alerts(0).await;
            if alerts
                .iter()
                .any(|a| a["labels"]["domain"] == domain.as_str())
            {
                seen = Some(now());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(seen) = seen else {
            bail!("run {run}: no alert within 30 s");
        };
        let latency = seen.saturating_sub(window_end);
        println!(
            "run {run}: alert at Alertmanager {:.0} ms after its window closed",
            latency.as_secs_f64() * 1000.0
        );
        latencies.push(latency);
        drop(agent);
        collector.shutdown().await?;
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "window close → alert at Alertmanager: median {:.0} ms, max {:.0} ms over {} runs (analyzer every 1 s, settle 0 s)",
        ms(latencies[latencies.len() / 2]),
        ms(*latencies.last().expect("runs")),
        latencies.len()
    );
    Ok(())
}
