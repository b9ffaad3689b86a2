//! `mailpulse agent --config FILE`: follow the mail logs and stream samples to the collector.

use std::path::Path;

use anyhow::{Context, Result};
use mailpulse_agent::config::{AgentConfig, read_token_file};
use mailpulse_agent::runtime::{AgentRunOptions, run_agent};
use mailpulse_agent::ship::ClientTls;

/// The host name, from the kernel (no DNS lookup).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub fn options(config: &AgentConfig) -> Result<AgentRunOptions> {
    let host = config.agent.host.clone().unwrap_or_else(hostname);
    let agent_id = config.agent.id.clone().unwrap_or_else(|| host.clone());
    let mut opts = AgentRunOptions::new(
        agent_id,
        host,
        config.logs.files.clone(),
        config.agent.state_dir.clone(),
        config.ship.collector_url.clone(),
    );
    opts.format = config.logs.format;
    opts.utc_offset_secs = config.logs.utc_offset_secs;
    opts.token = match &config.ship.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => None,
    };
    let s = &config.ship;
    if s.ca_file.is_some() || s.cert_file.is_some() || s.collector_url.starts_with("https://") {
        opts.tls = Some(ClientTls {
            ca_path: s.ca_file.clone(),
            cert_path: s.cert_file.clone(),
            key_path: s.key_file.clone(),
            domain: s.server_name.clone(),
        });
    }
    let a = &config.aggregate;
    opts.window_secs = a.window_secs;
    opts.flush_interval_secs = a.flush_interval_secs;
    opts.top_k_domains = a.top_k_domains;
    opts.top_k_relays = a.top_k_relays;
    opts.include_events = a.include_events;
    opts.outbox_max_bytes = config.outbox.max_bytes;
    opts.outbox_max_rejected_bytes = config.outbox.max_rejected_bytes;
    opts.max_label_bytes = a.max_label_bytes;
    opts.max_tracked_label_values = a.max_tracked_label_values;
    opts.max_tracked_label_bytes = a.max_tracked_label_bytes;
    opts.max_hosts = config.logs.max_hosts;
    opts.max_instances = config.logs.max_instances;
    opts.tracker_snapshot_interval_secs = config.agent.tracker_snapshot_interval_secs;
    opts.traffic = config.traffic.clone();
    opts.queue = Some(config.queue.clone());
    opts.capacity = Some(config.capacity.clone());
    opts.dns = Some(config.dns.clone());
    opts.actions = Some(config.actions.clone());
    opts.complaints = Some(config.complaints.clone());
    Ok(opts)
}

pub fn run(config_path: &Path) -> Result<()> {
    let config = AgentConfig::load(config_path)?;
    let opts = options(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        run_agent(opts, shutdown_signal())
            .await
            .context("agent stopped")
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
