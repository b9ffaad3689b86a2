//! Collector configuration (the `[collector]` TOML the CLI reads). Every field has a default;
//! unknown keys are errors; units are in the field names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything `mailpulse collector` needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Where agents connect (gRPC, `AgentService`). Port 0 picks a free port.
    pub grpc_listen_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/api/v1/agents` are served. Port 0 picks a free port.
    pub http_listen_addr: SocketAddr,
    /// An agent with no open stream, or silent for this long, is reported down.
    pub agent_down_after_secs: u64,
    /// Agent authentication (bearer tokens).
    pub auth: AuthConfig,
    /// TLS for the gRPC listener; absent = plaintext.
    pub tls: Option<TlsConfig>,
    /// Limits on what one agent may send.
    pub limits: LimitsConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Periodic OTLP export of the fleet totals; absent = off.
    pub otlp: Option<OtlpConfig>,
    /// Anomaly detection over the stored series.
    pub detect: crate::analyze::AnalyzeConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            grpc_listen_addr: SocketAddr::from(([0, 0, 0, 0], 4770)),
            http_listen_addr: SocketAddr::from(([127, 0, 0, 1], 9470)),
            agent_down_after_secs: 180,
            auth: AuthConfig::default(),
            tls: None,
            limits: LimitsConfig::default(),
            store: StoreConfig::default(),
            otlp: None,
            detect: crate::analyze::AnalyzeConfig::default(),
        }
    }
}

/// Per-agent bearer tokens: the agent sends `authorization: Bearer <token>`; the token decides
/// which `agent_id` the stream may speak for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// agent_id → token.
    pub tokens: BTreeMap<String, String>,
    /// A file of `agent_id token` lines (`#` comments, blank lines ignored), merged with `tokens`;
    /// keeps secrets out of the main config.
    pub token_file: Option<PathBuf>,
}

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

/// The embedded redb store and its write pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The redb file (created if missing).
    pub path: PathBuf,
    /// Resolution of the stored per-series windows.
    pub resolution_secs: u64,
    /// Windows older than this are pruned.
    pub retention_days: u64,
    /// How often pruning runs.
    pub prune_interval_secs: u64,
    /// How often applied batches (kept as a write-ahead log) are folded into the window and
    /// total tables; shorter = faster restart, more write amplification.
    pub fold_interval_secs: u64,
    /// Group commit: most batches in one write transaction.
    pub max_commit_batches: usize,
    /// Group commit: most encoded bytes in one write transaction.
    pub max_commit_bytes: usize,
    /// Batches waiting for the writer before ingest handlers wait (backpressure).
    pub queue_batches: usize,
    /// A gauge series is no longer exposed once the same host has reported gauges for windows
    /// this much newer than the series' latest one (a deferred domain that left the queue, a
    /// filesystem no longer watched). A silent host keeps its gauges; `mailpulse_agent_up`
    /// tells it is gone.
    pub gauge_stale_after_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/mailpulse/collector.redb"),
            resolution_secs: 300,
            retention_days: 35,
            prune_interval_secs: 3600,
            fold_interval_secs: 10,
            max_commit_batches: 128,
            max_commit_bytes: 64 * 1024 * 1024,
            queue_batches: 256,
            gauge_stale_after_secs: 900,
        }
    }
}

/// Export of the fleet totals over OTLP/gRPC (cumulative sums, gauges, explicit-bucket histograms).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// e.g. `http://127.0.0.1:4317` (or `https://…`, verified against the system roots).
    pub endpoint: String,
    /// Seconds between exports.
    #[serde(default = "default_otlp_interval_secs")]
    pub interval_secs: u64,
    /// Timeout of one export call.
    #[serde(default = "default_otlp_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_otlp_interval_secs() -> u64 {
    60
}

fn default_otlp_timeout_secs() -> u64 {
    10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses_and_unknown_keys_are_errors() {
        let text = r#"
            grpc_listen_addr = "0.0.0.0:4770"
            http_listen_addr = "127.0.0.1:9470"
            agent_down_after_secs = 120

            [auth]
            token_file = "/etc/mailpulse/agent-tokens"
            [auth.tokens]
            mx1 = "0123456789abcdef0123"

            [tls]
            cert_path = "/etc/mailpulse/collector.pem"
            key_path = "/etc/mailpulse/collector.key"
            client_ca_path = "/etc/mailpulse/agents-ca.pem"

            [limits]
            max_message_bytes = 4194304
            max_batch_samples = 20000
            max_agent_samples_per_sec = 50000
            agent_burst_samples = 200000
            max_series = 500000
            max_in_flight_batches = 4

            [store]
            path = "/var/lib/mailpulse/collector.redb"
            resolution_secs = 300
            retention_days = 35
            prune_interval_secs = 3600
            fold_interval_secs = 10
            max_commit_batches = 128
            max_commit_bytes = 67108864
            queue_batches = 256

            [otlp]
            endpoint = "http://127.0.0.1:4317"
            interval_secs = 30
        "#;
        let config: CollectorConfig = toml::from_str(text).expect("valid config");
        assert_eq!(config.agent_down_after_secs, 120);
        let tls = config.tls.expect("tls");
        assert!(
            tls.require_client_cert,
            "client certs required by default with a CA"
        );
        assert_eq!(config.otlp.expect("otlp").timeout_secs, 10);
        assert_eq!(config.limits.max_series, 500_000);

        let empty: CollectorConfig = toml::from_str("").expect("all defaults");
        assert_eq!(empty.store.resolution_secs, 300);
        assert_eq!(empty.store.retention_days, 35);

        for bad in [
            "unknown = 1",
            "[store]\nretention = 35",
            "[limits]\nmax_message_size = 1",
        ] {
            let error = toml::from_str::<CollectorConfig>(bad).expect_err(bad);
            assert!(
                error.to_string().contains("unknown field"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_shipped_configuration_parses() {
        let text = include_str!("../../packaging/collector.toml");
        let config: CollectorConfig = toml::from_str(text).expect("packaging/collector.toml");
        assert!(config.detect.enabled);
        assert_eq!(config.detect.settle_secs, 120);
    }
}
