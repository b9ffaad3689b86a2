//! Collector configuration (the `[collector]` TOML the CLI reads). Every field has a default;
//! unknown keys are errors; units are in the field names.
//!
//! Each section's type is owned by the module it configures ([`StoreConfig`] by `store`,
//! [`AnalyzeConfig`] by `analyze`, auth, TLS and limits by `ingest`, [`OtlpConfig`] by
//! `expose::otlp`); this module only composes them, so configuration depends on those modules
//! and never the other way round.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::analyze::AnalyzeConfig;
use crate::expose::otlp::OtlpConfig;
use crate::ingest::{AuthConfig, LimitsConfig, TlsConfig};
use crate::store::StoreConfig;

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
    pub detect: AnalyzeConfig,
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
            detect: AnalyzeConfig::default(),
        }
    }
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
        assert_eq!(config.store.max_series_per_agent, 50_000);
        assert_eq!(config.store.max_dns_records_per_agent, 20_000);
    }
}
