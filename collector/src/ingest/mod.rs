//! Agent ingest: the gRPC server agents stream to.
//!
//! Per connection: at most `grpc.max_connections` open, a first request within
//! `grpc.handshake_timeout_secs` (TLS handshake included), HTTP/2 keepalive pings. Per stream:
//! bearer token → agent (and the hosts it is bound to; with mTLS the client certificate must
//! name the same agent); at most `limits.max_streams_per_agent` streams per agent; the first
//! message must be `Hello` for that agent and a bound host, within `grpc.hello_timeout_secs`;
//! then batches, each decoded and validated at the edge ([`pb`]: bad samples are refused one by
//! one and listed in the ack), rate-limited in samples and bytes, queued to the store writer,
//! and acknowledged in order once durable (several may be in flight). A broken stream rule ends
//! the stream with a gRPC status and bumps `mailpulse_collector_rejections_total{reason}`; the
//! server itself keeps serving.

pub mod auth;
mod config;
pub mod identity;
pub mod liveness;
pub mod pb;
pub mod rate;
pub mod refusal;
mod service;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use auth::AuthConfig;
pub use config::{GrpcConfig, LimitsConfig, TlsConfig};
pub use service::{AgentGrpcService, STREAM_PATH};

use crate::CollectorError;
use crate::net::{ConnectionLimits, GuardedListener, ListenerStats};
use crate::stats::CollectorStats;
use crate::store::StoreHandle;
use auth::TokenTable;
use liveness::Liveness;
use rate::RateLimiter;
use refusal::RefusedSamples;

/// What the listener asks of client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// No client CA: certificates are not looked at.
    Ignored,
    /// A certificate, when given, must name the agent the token belongs to.
    Optional,
    /// A certificate naming the agent the token belongs to is required.
    Required,
}

impl ClientCertificates {
    /// The policy a `[tls]` section (or its absence) sets.
    pub fn of(tls: Option<&TlsConfig>) -> Self {
        match tls {
            Some(tls) if tls.client_ca_path.is_some() => {
                if tls.require_client_cert {
                    Self::Required
                } else {
                    Self::Optional
                }
            }
            _ => Self::Ignored,
        }
    }
}

/// Everything the ingest needs besides the store and the counters.
#[derive(Debug, Clone)]
pub struct IngestPolicy {
    /// Per-agent limits.
    pub limits: LimitsConfig,
    /// Connection and stream timeouts.
    pub grpc: GrpcConfig,
    /// Client certificate checks.
    pub client_certificates: ClientCertificates,
    /// The store's retention: windows older than this are refused.
    pub retention_secs: u64,
    /// Actions to agents and their results (none: results are dropped).
    pub actions: Option<Arc<crate::remediate::ActionBus>>,
}

/// Shared state of all agent streams.
pub struct Ingest {
    pub(crate) tokens: TokenTable,
    pub(crate) limits: LimitsConfig,
    pub(crate) grpc: GrpcConfig,
    pub(crate) client_certificates: ClientCertificates,
    pub(crate) retention_secs: u64,
    pub(crate) store: StoreHandle,
    pub(crate) stats: Arc<CollectorStats>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) rate: RateLimiter,
    pub(crate) refused: Arc<RefusedSamples>,
    /// Open streams per agent (authenticated, Hello or not).
    pub(crate) streams: Mutex<HashMap<Arc<str>, usize>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Where actions for agents come from and their results go (none: results are dropped).
    pub(crate) actions: Option<Arc<crate::remediate::ActionBus>>,
}

impl Ingest {
    /// Ingest state; `shutdown` turning true ends every open stream.
    pub fn new(
        tokens: TokenTable,
        policy: IngestPolicy,
        store: StoreHandle,
        stats: Arc<CollectorStats>,
        liveness: Arc<Liveness>,
        refused: Arc<RefusedSamples>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let limits = policy.limits;
        // A bucket smaller than one full batch would refuse that batch forever.
        let burst_samples = limits
            .agent_burst_samples
            .max(limits.max_batch_samples as u64);
        let burst_bytes = limits
            .agent_burst_bytes
            .max(limits.max_message_bytes as u64);
        let rate = RateLimiter::new(
            limits.max_agent_samples_per_sec,
            burst_samples,
            limits.max_agent_bytes_per_sec,
            burst_bytes,
        );
        Arc::new(Self {
            tokens,
            limits,
            grpc: policy.grpc,
            client_certificates: policy.client_certificates,
            retention_secs: policy.retention_secs,
            store,
            stats,
            liveness,
            rate,
            refused,
            streams: Mutex::new(HashMap::new()),
            shutdown,
            actions: policy.actions,
        })
    }
}

/// Binds the gRPC listener (so the caller learns the port before serving).
pub fn bind(
    addr: SocketAddr,
    grpc: &GrpcConfig,
    stats: Arc<ListenerStats>,
) -> Result<(GuardedListener, SocketAddr), CollectorError> {
    let limits = ConnectionLimits {
        max_connections: grpc.max_connections,
        first_request_timeout: Some(Duration::from_secs(grpc.handshake_timeout_secs.max(1))),
        // HTTP/2 pings find peers that stopped reading.
        write_stall_timeout: None,
    };
    let listener = GuardedListener::bind(addr, limits, stats)
        .map_err(|source| CollectorError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| CollectorError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Reads the TLS material named in the config; handshakes taking longer than
/// `handshake_timeout_secs` are abandoned.
pub fn tls_config(tls: &TlsConfig, grpc: &GrpcConfig) -> Result<ServerTlsConfig, CollectorError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| CollectorError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let identity = Identity::from_pem(read(&tls.cert_path)?, read(&tls.key_path)?);
    let mut config = ServerTlsConfig::new()
        .identity(identity)
        .timeout(Duration::from_secs(grpc.handshake_timeout_secs.max(1)));
    if let Some(ca) = &tls.client_ca_path {
        config = config
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(!tls.require_client_cert);
    }
    Ok(config)
}

/// Serves `AgentService` on `incoming` until `shutdown` resolves.
pub async fn serve(
    ingest: Arc<Ingest>,
    incoming: GuardedListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let grpc = ingest.grpc.clone();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(CollectorError::Grpc)?;
    }
    builder
        // Batches are large (hundreds of kB): big windows avoid stalls waiting for updates.
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(256 * 1024))
        .max_concurrent_streams(Some(grpc.max_streams_per_connection.max(1)))
        .http2_max_header_list_size(Some(16 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(
            grpc.keepalive_interval_secs.max(1),
        )))
        .http2_keepalive_timeout(Some(Duration::from_secs(
            grpc.keepalive_timeout_secs.max(1),
        )))
        .add_service(AgentGrpcService::new(ingest))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(CollectorError::Grpc)
}
