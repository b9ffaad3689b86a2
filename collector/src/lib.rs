//! mailpulse collector: everything central.
//!
//! - [`ingest`]: the gRPC `AgentService` agents stream batches to (auth, limits, validation);
//! - [`store`]: the embedded redb store and its single writer (durable before ack, dedupe by
//!   agent seq, windowed points, agent registry);
//! - [`expose`]: `/metrics`, `/healthz`, `/api/v1/agents` and the OTLP export;
//! - [`detect`]: pure anomaly detection and forecasting on series (seasonal bands, small-count
//!   ratios, level shifts, fleet outliers, capacity forecasts, the streaming scorer).
//!
//! [`run`] is what `mailpulse collector` calls; [`start`] does the same but returns at once with
//! the bound addresses (tests, benchmarks, port 0).

pub mod alerting;
pub mod analyze;
pub mod config;
pub mod detect;
pub mod expose;
pub mod ingest;
pub mod model;
pub mod net;
pub mod remediate;
pub mod stats;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use analyze::AnalyzeConfig;
pub use config::{CollectorConfig, ConfigError};
pub use expose::HttpConfig;
pub use expose::otlp::OtlpConfig;
pub use ingest::{AuthConfig, GrpcConfig, LimitsConfig, TlsConfig};
pub use store::StoreConfig;

use ingest::auth::{AuthError, TokenTable};
use ingest::liveness::Liveness;
use ingest::refusal::RefusedSamples;
use ingest::{ClientCertificates, Ingest, IngestPolicy};
use net::{ConnectionLimits, GuardedListener, ListenerStats};
use stats::CollectorStats;
use store::{StoreError, StoreHandle, WriterThread};

/// Why the collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Agent tokens are missing or invalid.
    #[error("auth: {0}")]
    Auth(#[from] AuthError),
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file named in the config could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A config value is unusable.
    #[error("config: {0}")]
    Config(String),
    /// An alerting target (Alertmanager, webhook) cannot be used.
    #[error("[alerting]: {0}")]
    Alerting(String),
    /// The configuration must not run as it is.
    #[error("config: {0}")]
    Invalid(#[from] ConfigError),
    /// The gRPC server failed (TLS setup, transport).
    #[error("gRPC server: {0}")]
    Grpc(#[source] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    /// A server task panicked or was cancelled.
    #[error("collector task failed: {0}")]
    Task(String),
}

/// How long shutdown waits for servers to drain before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the collector until `shutdown` resolves (or a server fails), then stops cleanly:
/// streams end with `UNAVAILABLE`, queued batches are committed, the store is folded.
pub async fn run(
    config: CollectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let mut collector = start(config).await?;
    tokio::select! {
        _ = shutdown => collector.shutdown().await,
        error = collector.failed() => {
            let _ = collector.shutdown().await;
            Err(error)
        }
    }
}

/// Starts the collector and returns once both listeners are bound.
pub async fn start(config: CollectorConfig) -> Result<RunningCollector, CollectorError> {
    config.validate()?;
    let tokens = TokenTable::load(&config.auth)?;
    let tls = config
        .tls
        .as_ref()
        .map(|tls| ingest::tls_config(tls, &config.grpc))
        .transpose()?;
    let grpc_listener = Arc::new(ListenerStats::default());
    let http_listener = Arc::new(ListenerStats::default());
    let (incoming, grpc_addr) =
        ingest::bind(config.grpc_listen_addr, &config.grpc, grpc_listener.clone())?;
    let http_limits = ConnectionLimits {
        max_connections: config.http.max_connections,
        // hyper's header-read timeout covers the first request and idle keep-alives.
        first_request_timeout: None,
        write_stall_timeout: Some(Duration::from_secs(
            config.http.write_stall_timeout_secs.max(1),
        )),
    };
    let http_bind_error = |source| CollectorError::Bind {
        addr: config.http_listen_addr,
        source,
    };
    let http_incoming =
        GuardedListener::bind(config.http_listen_addr, http_limits, http_listener.clone())
            .map_err(http_bind_error)?;
    let http_addr = http_incoming.local_addr().map_err(http_bind_error)?;

    let stats = Arc::new(CollectorStats::default());
    let (store, writer) = store::open(&config.store, config.limits.max_series, stats.clone())?;
    let liveness = Arc::new(Liveness::default());
    let refused = Arc::new(RefusedSamples::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let bands = Arc::new(analyze::Bands::default());

    // Remediation: playbooks (checked against the views), the action bus and its engine.
    let remediation = if config.detect.enabled {
        let views: Vec<(String, Vec<String>)> = config
            .detect
            .engine()
            .views
            .iter()
            .map(|v| (v.name.clone(), v.by.clone()))
            .collect();
        let playbooks =
            remediate::playbooks(&config.remediation, &views).map_err(CollectorError::Config)?;
        let token = match &config.remediation.api_token_file {
            Some(file) => Some(Arc::<str>::from(
                std::fs::read_to_string(file)
                    .map_err(|source| CollectorError::ReadFile {
                        path: file.clone(),
                        source,
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim(),
            )),
            None => None,
        };
        if token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(CollectorError::Config(
                "[remediation] api_token_file: the token must have at least 16 bytes".into(),
            ));
        }
        let (bus, results) = remediate::ActionBus::new();
        (!playbooks.is_empty()).then_some((playbooks, token, bus, results))
    } else {
        None
    };
    let bus = remediation.as_ref().map(|(_, _, bus, _)| bus.clone());

    let ingest = Ingest::new(
        tokens,
        IngestPolicy {
            limits: config.limits.clone(),
            grpc: config.grpc.clone(),
            client_certificates: ClientCertificates::of(config.tls.as_ref()),
            retention_secs: config.store.retention_days.saturating_mul(86_400),
            actions: bus,
        },
        store.clone(),
        stats.clone(),
        liveness.clone(),
        refused.clone(),
        shutdown_rx.clone(),
    );
    let grpc_task = tokio::spawn(ingest::serve(
        ingest,
        incoming,
        tls,
        signalled(shutdown_rx.clone()),
    ));

    let mut background = Vec::new();
    let hooks = match &remediation {
        Some(_) => alerting::notify::hooks(&config.alerting.webhooks)
            .map_err(|e| CollectorError::Alerting(e.to_string()))?,
        None => Vec::new(),
    };
    let remediation = remediation.map(|(playbooks, token, bus, results)| {
        // Handle and API token for the HTTP endpoints and the analyzer.
        let (handle, task) = remediate::engine::start(
            config.remediation.clone(),
            playbooks,
            store.clone(),
            bus,
            hooks,
            results,
            shutdown_rx.clone(),
        );
        background.push(task);
        (handle, token)
    });

    let liveness_watch = liveness.clone();
    let mut http_state = expose::HttpState::new(
        store.clone(),
        stats.clone(),
        liveness,
        Duration::from_secs(config.agent_down_after_secs),
        bands.clone(),
        refused,
        grpc_listener,
        http_listener.clone(),
        config.http.clone(),
    );
    http_state.actions = remediation
        .as_ref()
        .map(|(handle, token)| expose::actions::ActionsApi {
            remediation: handle.clone(),
            token: token.clone(),
        });
    let remediation_handle = remediation.map(|(handle, _)| handle);
    if let Some(rw) = config.remote_write.clone() {
        let state = http_state.clone();
        background.push(tokio::spawn(expose::remote_write::run(
            rw,
            move || expose::render_metrics(&state),
            stats.clone(),
            shutdown_rx.clone(),
        )));
    }
    let http_shutdown = signalled(shutdown_rx.clone());
    let http_config = config.http.clone();
    let http_task = tokio::spawn(async move {
        expose::server::serve(
            http_incoming,
            expose::router(http_state),
            &http_config,
            http_listener,
            http_shutdown,
        )
        .await;
        Ok(())
    });

    if config.detect.enabled {
        let notifier = alerting::notify::Notifier::new(
            &config.alerting.alertmanagers,
            &config.alerting.webhooks,
            config.alerting.external_url(http_addr),
            config.alerting.resend_interval_secs,
        )
        .map_err(|e| CollectorError::Alerting(e.to_string()))?;
        let rounds = notifier.has_targets().then(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let task = tokio::spawn(alerting::notify::run(
                notifier,
                store.clone(),
                stats.clone(),
                rx,
                shutdown_rx.clone(),
            ));
            (tx, task)
        });
        let (rounds, notify_task) = rounds.unzip();
        background.extend(notify_task);
        let lifecycle = alerting::Lifecycle::new(
            alerting::Rules::new(config.alerting.rules.clone()),
            config.alerting.runbook_base_url(http_addr),
            alerting::restore(&store),
        );
        background.push(tokio::spawn(analyze::run_analyzer(
            store.clone(),
            config.detect.clone(),
            config.clock.clone(),
            bands.clone(),
            lifecycle,
            analyze::Outlets {
                notifier: rounds,
                remediation: remediation_handle.clone(),
            },
            Some(analyze::AgentWatch {
                liveness: liveness_watch,
                down_after: Duration::from_secs(config.agent_down_after_secs.max(1)),
                started: std::time::Instant::now(),
            }),
            shutdown_rx.clone(),
        )));
    }
    let otlp_task = config.otlp.clone().map(|otlp| {
        tokio::spawn(expose::otlp::run_exporter(
            otlp,
            store.clone(),
            stats.clone(),
            shutdown_rx.clone(),
        ))
    });

    info!(grpc = %grpc_addr, http = %http_addr, store = %config.store.path.display(), "collector started");
    Ok(RunningCollector {
        remediation: remediation_handle,
        grpc_addr,
        http_addr,
        store,
        stats,
        shutdown_tx,
        grpc_task: Some(grpc_task),
        http_task: Some(http_task),
        otlp_task,
        background,
        writer: Some(writer),
    })
}

/// A started collector.
pub struct RunningCollector {
    remediation: Option<Arc<remediate::Remediation>>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: StoreHandle,
    stats: Arc<CollectorStats>,
    shutdown_tx: watch::Sender<bool>,
    grpc_task: Option<JoinHandle<Result<(), CollectorError>>>,
    http_task: Option<JoinHandle<Result<(), CollectorError>>>,
    otlp_task: Option<JoinHandle<()>>,
    /// The analyzer and the notifier: they hold store handles, so they end before the store.
    background: Vec<JoinHandle<()>>,
    writer: Option<WriterThread>,
}

impl RunningCollector {
    /// Where agents connect (the bound address, also with port 0 in the config).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where `/metrics`, `/healthz` and `/api/v1/agents` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The remediation engine, when playbooks are configured.
    pub fn remediation(&self) -> Option<&Arc<remediate::Remediation>> {
        self.remediation.as_ref()
    }

    /// The store (snapshot of totals, registry, health).
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// The collector's own counters.
    pub fn stats(&self) -> &Arc<CollectorStats> {
        &self.stats
    }

    /// Resolves when a server task ends on its own (an error: they only end at shutdown).
    pub async fn failed(&mut self) -> CollectorError {
        let (grpc, http) = match (self.grpc_task.as_mut(), self.http_task.as_mut()) {
            (Some(grpc), Some(http)) => (grpc, http),
            _ => return CollectorError::Task("collector already stopped".into()),
        };
        let (result, which) = tokio::select! {
            r = grpc => (r, 0),
            r = http => (r, 1),
        };
        if which == 0 {
            self.grpc_task = None;
        } else {
            self.http_task = None;
        }
        match result {
            Ok(Ok(())) => CollectorError::Task("a server stopped unexpectedly".into()),
            Ok(Err(e)) => e,
            Err(e) => CollectorError::Task(e.to_string()),
        }
    }

    /// Stops accepting, ends open streams, commits what is queued, folds the store and waits
    /// for the writer.
    pub async fn shutdown(mut self) -> Result<(), CollectorError> {
        self.stop_servers().await;
        if let Some(writer) = self.writer.take() {
            writer.join().await?;
        }
        info!("collector stopped");
        Ok(())
    }

    /// Stops the servers and the writer without the final fold and without committing what is
    /// queued — the on-disk state a `kill -9` leaves (for crash-recovery tests).
    #[doc(hidden)]
    pub async fn abandon(mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abandon().await;
        }
        self.stop_servers().await;
    }

    async fn stop_servers(&mut self) {
        let _ = self.shutdown_tx.send(true);
        for task in [self.grpc_task.take(), self.http_task.take()]
            .into_iter()
            .flatten()
        {
            let abort = task.abort_handle();
            match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!(error = %e, "server stopped with an error"),
                Ok(Err(e)) => warn!(error = %e, "server task failed"),
                Err(_) => {
                    warn!("server did not drain in time; closing connections");
                    abort.abort();
                }
            }
        }
        if let Some(task) = self.otlp_task.take() {
            let _ = task.await;
        }
        for task in self.background.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                warn!("a background task did not stop in time; aborted");
                abort.abort();
            }
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn signalled(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
