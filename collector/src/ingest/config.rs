//! The `[tls]` and `[limits]` sections of the collector configuration: what the agent listener
//! accepts.

use std::path::PathBuf;

use serde::Deserialize;

/// Server certificate and optional client verification (mTLS) for the gRPC listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the collector.
    pub cert_path: PathBuf,
    /// PEM private key of the collector.
    pub key_path: PathBuf,
    /// PEM CA bundle that agent client certificates must chain to; absent = no client certs.
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
    /// With `client_ca_path`: reject handshakes without a valid client certificate.
    #[serde(default = "default_true")]
    pub require_client_cert: bool,
}

fn default_true() -> bool {
    true
}

/// Limits on what one agent may send; each violation ends the stream with a gRPC status and is
/// counted in `mailpulse_collector_rejections_total{reason}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted gRPC message (decoded), in bytes.
    pub max_message_bytes: usize,
    /// Most samples in one batch.
    pub max_batch_samples: usize,
    /// Sustained samples per second per agent (token bucket).
    pub max_agent_samples_per_sec: u64,
    /// Token bucket size: samples an agent may send at once after being quiet.
    pub agent_burst_samples: u64,
    /// Distinct series the store accepts in total (cardinality guard).
    pub max_series: usize,
    /// Batches a single stream may have in flight (received, not yet acknowledged).
    pub max_in_flight_batches: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_batch_samples: 50_000,
            max_agent_samples_per_sec: 100_000,
            agent_burst_samples: 500_000,
            max_series: 1_000_000,
            max_in_flight_batches: 8,
        }
    }
}
