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

/// Limits on what one agent may send. A sample that breaks a rule is refused on its own
/// (counted in `mailpulse_collector_refused_samples_total{agent,reason}`); a limit on the
/// stream or the rate ends the stream with a gRPC status and is counted in
/// `mailpulse_collector_rejections_total{reason}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted gRPC message (decoded), in bytes.
    pub max_message_bytes: usize,
    /// Most samples (and probes) in one batch; the ones beyond are refused.
    pub max_batch_samples: usize,
    /// Sustained samples (and probes) per second per agent (token bucket).
    pub max_agent_samples_per_sec: u64,
    /// Token bucket size: samples an agent may send at once after being quiet.
    pub agent_burst_samples: u64,
    /// Sustained bytes per second per agent (token bucket over encoded batches).
    pub max_agent_bytes_per_sec: u64,
    /// Token bucket size in bytes (at least `max_message_bytes`).
    pub agent_burst_bytes: u64,
    /// Distinct series the store accepts in total (cardinality guard).
    pub max_series: usize,
    /// Batches a single stream may have in flight (received, not yet acknowledged).
    pub max_in_flight_batches: usize,
    /// Streams one agent may have open at once (over all its connections).
    pub max_streams_per_agent: usize,
    /// Most buckets (bounds + 1) of one histogram sample.
    pub max_histogram_buckets: usize,
    /// How far in the future (by the collector's clock) a window may start; windows before
    /// the store's retention period are refused as well.
    pub max_clock_skew_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_batch_samples: 50_000,
            max_agent_samples_per_sec: 100_000,
            agent_burst_samples: 500_000,
            max_agent_bytes_per_sec: 8 * 1024 * 1024,
            agent_burst_bytes: 64 * 1024 * 1024,
            max_series: 1_000_000,
            max_in_flight_batches: 8,
            max_streams_per_agent: 4,
            max_histogram_buckets: 64,
            max_clock_skew_secs: 300,
        }
    }
}

/// Connections on the gRPC listener: how many, and how long one may take before it is useful.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Open connections at most; the ones beyond are closed at once.
    pub max_connections: usize,
    /// From accept to the first request (TLS handshake, HTTP/2 preface and headers included):
    /// a connection that has not sent a request by then is closed.
    pub handshake_timeout_secs: u64,
    /// An authenticated stream that has not sent Hello by then is ended.
    pub hello_timeout_secs: u64,
    /// HTTP/2 pings on an idle connection, every this many seconds.
    pub keepalive_interval_secs: u64,
    /// A ping not answered within this many seconds closes the connection.
    pub keepalive_timeout_secs: u64,
    /// Concurrent streams on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_connection: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout_secs: 10,
            hello_timeout_secs: 10,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 20,
            max_streams_per_connection: 8,
        }
    }
}
