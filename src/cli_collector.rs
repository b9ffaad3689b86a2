//! `mailpulse collector --config FILE`: ingest agent streams, store, expose.

use std::path::Path;

use anyhow::{Context, Result};
use mailpulse_collector::CollectorConfig;
use mailpulse_collector::ingest::auth::TokenTable;

/// Loads and checks a collector configuration file: what parsing cannot see (plaintext gRPC
/// off loopback), and its agent tokens (a token file others may read is refused).
pub fn load(path: &Path) -> Result<CollectorConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: CollectorConfig = mailpulse_agent::config::parse_toml(path, &text)?;
    config
        .validate()
        .with_context(|| format!("{}", path.display()))?;
    TokenTable::load(&config.auth).with_context(|| format!("{}: [auth]", path.display()))?;
    Ok(config)
}

pub fn run(path: &Path) -> Result<()> {
    let config = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        mailpulse_collector::run(config, crate::cli_agent::shutdown_signal())
            .await
            .context("collector stopped")
    })
}
