//! Collector configuration (the `[collector]` TOML the CLI reads). Every field has a default;
//! unknown keys are errors; units are in the field names.
//!
//! Each section's type is owned by the module it configures ([`StoreConfig`] by `store`,
//! [`AnalyzeConfig`] by `analyze`, auth, TLS and limits by `ingest`, [`OtlpConfig`] by
//! `expose::otlp`); this module only composes them, so configuration depends on those modules
//! and never the other way round.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::alerting::AlertingConfig;
use crate::analyze::AnalyzeConfig;
use crate::expose::HttpConfig;
use crate::expose::otlp::OtlpConfig;
use crate::ingest::{AuthConfig, GrpcConfig, LimitsConfig, TlsConfig};
use crate::store::StoreConfig;

/// Everything `mailpulse collector` needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Where agents connect (gRPC, `AgentService`). Port 0 picks a free port. Without `[tls]`
    /// only a loopback address is accepted (bearer tokens would cross the network in clear),
    /// unless `allow_plaintext_grpc` says otherwise.
    pub grpc_listen_addr: SocketAddr,
    /// Serve agents without TLS on a non-loopback `grpc_listen_addr` (tokens and data in
    /// clear: only behind a tunnel or on a trusted network).
    pub allow_plaintext_grpc: bool,
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
    /// Connections and timeouts of the gRPC listener.
    pub grpc: GrpcConfig,
    /// Connections, timeouts and response sizes of the HTTP listener.
    pub http: HttpConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Periodic OTLP export of the fleet totals; absent = off.
    pub otlp: Option<OtlpConfig>,
    /// Prometheus remote write of what `/metrics` shows; absent = off.
    pub remote_write: Option<crate::expose::remote_write::RemoteWriteConfig>,
    /// Anomaly detection over the stored series.
    pub detect: AnalyzeConfig,
    /// What the alerts say, when they fire, whom they reach.
    pub alerting: AlertingConfig,
    /// Playbooks, guards, audit (`[remediation]`).
    pub remediation: crate::remediate::RemediationConfig,
    /// The analyzer's clock (not configurable: the wall clock, or a replay's simulated time).
    #[serde(skip)]
    pub clock: crate::analyze::Clock,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            grpc_listen_addr: SocketAddr::from(([127, 0, 0, 1], 4770)),
            allow_plaintext_grpc: false,
            http_listen_addr: SocketAddr::from(([127, 0, 0, 1], 9470)),
            agent_down_after_secs: 180,
            auth: AuthConfig::default(),
            tls: None,
            limits: LimitsConfig::default(),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            otlp: None,
            remote_write: None,
            detect: AnalyzeConfig::default(),
            alerting: AlertingConfig::default(),
            remediation: crate::remediate::RemediationConfig::default(),
            clock: crate::analyze::Clock::Wall,
        }
    }
}

/// A configuration that parses but must not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Agents would send their tokens in clear over the network.
    #[error(
        "grpc_listen_addr {addr} is not a loopback address and [tls] is not configured: agent \
         tokens and data would cross the network in clear. Configure [tls] (cert_path, \
         key_path), listen on 127.0.0.1, or set allow_plaintext_grpc = true"
    )]
    PlaintextGrpc {
        /// The listen address.
        addr: SocketAddr,
    },
}

impl CollectorConfig {
    /// Checks what parsing cannot: the collector refuses to start (and `mailpulse config
    /// check` fails) on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls.is_none()
            && !self.grpc_listen_addr.ip().is_loopback()
            && !self.allow_plaintext_grpc
        {
            return Err(ConfigError::PlaintextGrpc {
                addr: self.grpc_listen_addr,
            });
        }
        Ok(())
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
            max_agent_bytes_per_sec = 4194304
            agent_burst_bytes = 33554432
            max_streams_per_agent = 2
            max_histogram_buckets = 32
            max_clock_skew_secs = 120

            [grpc]
            max_connections = 512
            handshake_timeout_secs = 5
            hello_timeout_secs = 5
            keepalive_interval_secs = 20
            keepalive_timeout_secs = 10
            max_streams_per_connection = 4

            [http]
            max_connections = 64
            header_read_timeout_secs = 5
            request_timeout_secs = 20
            write_stall_timeout_secs = 20
            max_concurrent_metrics_renders = 1
            metrics_queue_timeout_secs = 2
            max_list_items = 500
            max_dns_changes = 100
            max_response_bytes = 8388608

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
            max_request_bytes = 1000000
        "#;
        let config: CollectorConfig = toml::from_str(text).expect("valid config");
        assert_eq!(config.agent_down_after_secs, 120);
        let tls = config.tls.expect("tls");
        assert!(
            tls.require_client_cert,
            "client certs required by default with a CA"
        );
        let otlp = config.otlp.expect("otlp");
        assert_eq!((otlp.timeout_secs, otlp.max_request_bytes), (10, 1_000_000));
        assert_eq!(config.limits.max_series, 500_000);
        assert_eq!(config.limits.max_streams_per_agent, 2);
        assert_eq!(config.grpc.hello_timeout_secs, 5);
        assert_eq!(config.http.max_dns_changes, 100);

        let empty: CollectorConfig = toml::from_str("").expect("all defaults");
        assert!(empty.grpc_listen_addr.ip().is_loopback());
        assert_eq!(empty.limits.max_histogram_buckets, 64);
        assert_eq!(empty.limits.max_clock_skew_secs, 300);
        assert_eq!(empty.http.max_concurrent_metrics_renders, 2);
        assert_eq!(empty.store.resolution_secs, 300);
        assert_eq!(empty.store.retention_days, 35);

        for bad in [
            "unknown = 1",
            "[store]\nretention = 35",
            "[limits]\nmax_message_size = 1",
            "[grpc]\nhandshake_timeout = 1",
            "[http]\nmax_conns = 1",
        ] {
            let error = toml::from_str::<CollectorConfig>(bad).expect_err(bad);
            assert!(
                error.to_string().contains("unknown field"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_shipped_configuration_parses_and_uses_tls() {
        let text = include_str!("../../packaging/collector.toml");
        let config: CollectorConfig = toml::from_str(text).expect("packaging/collector.toml");
        assert!(config.detect.enabled);
        assert_eq!(config.detect.settle_secs, 120);
        // The shipped file states the defaults of the detectors' adaptation and learning.
        let defaults = crate::analyze::AnalyzeConfig::default();
        assert_eq!(
            config.detect.adaptation_windows,
            defaults.adaptation_windows
        );
        assert_eq!(config.detect.learning_windows, defaults.learning_windows);
        assert_eq!(config.store.max_series_per_agent, 50_000);
        assert_eq!(config.store.max_dns_records_per_agent, 20_000);
        assert!(
            config.tls.is_some(),
            "the packaged collector serves agents over TLS"
        );
        assert!(!config.allow_plaintext_grpc);
        config.validate().expect("valid");
    }

    #[test]
    fn plaintext_grpc_is_refused_off_loopback_unless_allowed() {
        let parse = |text: &str| toml::from_str::<CollectorConfig>(text).expect("parses");
        parse("")
            .validate()
            .expect("the default listens on loopback");
        parse("grpc_listen_addr = \"[::1]:4770\"")
            .validate()
            .expect("IPv6 loopback");
        for addr in ["0.0.0.0:4770", "192.0.2.1:4770", "[::]:4770"] {
            let config = parse(&format!("grpc_listen_addr = \"{addr}\""));
            let error = config.validate().expect_err(addr);
            assert!(
                error.to_string().contains("allow_plaintext_grpc"),
                "{error}"
            );
            parse(&format!(
                "grpc_listen_addr = \"{addr}\"\nallow_plaintext_grpc = true"
            ))
            .validate()
            .expect("explicitly allowed");
            parse(&format!(
                "grpc_listen_addr = \"{addr}\"\n[tls]\ncert_path = \"c\"\nkey_path = \"k\""
            ))
            .validate()
            .expect("TLS");
        }
    }
}
