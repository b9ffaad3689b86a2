//! What the commands that talk to a collector share: a GET of its JSON API.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use mailpulse_collector::alerting::http::Endpoint;
use serde::de::DeserializeOwned;

/// A current-thread runtime for one request.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `GET <collector><path>` decoded from JSON; an error names the URL and the answer.
pub fn get_json<T: DeserializeOwned>(collector: &str, path: &str) -> Result<T> {
    let endpoint = Endpoint::new(collector, &Default::default(), Duration::from_secs(10))
        .with_context(|| format!("collector URL {collector}"))?
        .join(path);
    let answer = runtime()?
        .block_on(endpoint.get())
        .with_context(|| format!("GET {}", endpoint.url()))?;
    if answer.status != 200 {
        bail!(
            "GET {}: HTTP {}: {}",
            endpoint.url(),
            answer.status,
            answer.body.trim()
        );
    }
    serde_json::from_str(&answer.body)
        .with_context(|| format!("GET {}: not the JSON expected", endpoint.url()))
}
