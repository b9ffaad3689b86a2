//! Agent ingest: the gRPC server agents stream to.
//!
//! Per stream: bearer token → agent; first message must be `Hello` for that agent; then
//! batches, each decoded and validated at the edge ([`pb`]), rate-limited, queued to the store
//! writer, and acknowledged in order once durable (several may be in flight). Any rule broken
//! ends the stream with a gRPC status and bumps `mailpulse_collector_rejections_total{reason}`;
//! the server itself keeps serving.

pub mod auth;
mod config;
pub mod liveness;
pub mod pb;
pub mod rate;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use auth::AuthConfig;
pub use config::{LimitsConfig, TlsConfig};
pub use service::{AgentGrpcService, STREAM_PATH};

use crate::CollectorError;
use crate::stats::CollectorStats;
use crate::store::StoreHandle;
use auth::TokenTable;
use liveness::Liveness;
use rate::RateLimiter;

/// Shared state of all agent streams.
pub struct Ingest {
    pub(crate) tokens: TokenTable,
    pub(crate) limits: LimitsConfig,
    pub(crate) store: StoreHandle,
    pub(crate) stats: Arc<CollectorStats>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) rate: RateLimiter,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Ingest {
    /// Ingest state; `shutdown` turning true ends every open stream.
    pub fn new(
        tokens: TokenTable,
        limits: LimitsConfig,
        store: StoreHandle,
        stats: Arc<CollectorStats>,
        liveness: Arc<Liveness>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        // A bucket smaller than one full batch would refuse that batch forever.
        let burst = limits
            .agent_burst_samples
            .max(limits.max_batch_samples as u64);
        let rate = RateLimiter::new(limits.max_agent_samples_per_sec, burst);
        Arc::new(Self {
            tokens,
            limits,
            store,
            stats,
            liveness,
            rate,
            shutdown,
        })
    }
}

/// Binds the gRPC listener (so the caller learns the port before serving).
pub fn bind(addr: SocketAddr) -> Result<(TcpIncoming, SocketAddr), CollectorError> {
    let incoming = TcpIncoming::bind(addr)
        .map_err(|source| CollectorError::Bind { addr, source })?
        .with_nodelay(Some(true));
    let local = incoming
        .local_addr()
        .map_err(|source| CollectorError::Bind { addr, source })?;
    Ok((incoming, local))
}

/// Reads the TLS material named in the config.
pub fn tls_config(tls: &TlsConfig) -> Result<ServerTlsConfig, CollectorError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| CollectorError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let identity = Identity::from_pem(read(&tls.cert_path)?, read(&tls.key_path)?);
    let mut config = ServerTlsConfig::new().identity(identity);
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
    incoming: TcpIncoming,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(CollectorError::Grpc)?;
    }
    builder
        // Batches are large (hundreds of kB): big windows avoid stalls waiting for updates.
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(256 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(AgentGrpcService::new(ingest))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(CollectorError::Grpc)
}
