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
use mailpulse_collector::alerting::notify::AlertmanagerTarget;
use mailpulse_proto::v1::{Sample, sample};
use mailpulse_tests::alertmanager::{self, AlertmanagerCluster};

#[derive(serde::Deserialize)]
struct Views {
    views: Vec<mailpulse_collector::analyze::View>,
}

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

fn bounced(domain: &str, second: i64, value: f64) -> Sample {
    Sample {
        metric: "messages_bounced".into(),
        labels: support::labels(&[("domain", domain)]),
        window_start_unix_ms: second * 1000,
        window_secs: 1,
        value: Some(sample::Value::CounterDelta(value)),
    }
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
        let mut cfg = support::config(dir.path());
        cfg.store.resolution_secs = 1;
        cfg.store.fold_interval_secs = 1;
        cfg.limits.max_agent_samples_per_sec = 1_000_000;
        cfg.limits.agent_burst_samples = 1_000_000;
        cfg.detect.interval_secs = 1;
        cfg.detect.settle_secs = 0;
        cfg.detect.history_days = 1;
        cfg.detect.learning_windows = 120;
        cfg.detect.views = toml::from_str::<Views>(
            "[[views]]\nname = \"messages_bounced\"\nkind = \"volume\"\nseries = \"messages_bounced\"\nby = [\"domain\"]\n",
        )?
        .views;
        cfg.alerting.resend_interval_secs = 60;
        cfg.alerting.alertmanagers = vec![AlertmanagerTarget {
            url: ams.url(0),
            bearer_token_file: None,
            basic_auth_username: None,
            basic_auth_password_file: None,
            ca_path: None,
            timeout_secs: 2,
        }];
        let collector = support::start(cfg).await;
        let mut agent = support::AgentStream::mx1(collector.grpc_addr()).await;
        let domain = format!("run{run}.example");
        // Storms at different phases of the analyzer's one-second round.
        tokio::time::sleep(Duration::from_millis((run as u64 * 370) % 1000)).await;
        let start = now().as_secs() as i64;
        let storm = start + 6;
        let mut noise: u64 = 3 + run as u64;
        let samples: Vec<Sample> = (start - 600..storm + 1)
            .map(|s| {
                noise = noise
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let value = if s == storm {
                    2_000.0
                } else {
                    40.0 + (noise >> 61) as f64
                };
                bounced(&domain, s, value)
            })
            .collect();
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
