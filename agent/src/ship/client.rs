//! The gRPC shipper: sends outbox batches in `seq` order and turns acknowledgements into
//! checkpoint progress.
//!
//! One `AgentService.Stream` per connection: `Hello`, then every pending outbox batch in `seq`
//! order (a bounded number in flight), then new batches as they are appended. After any stream
//! error, a missing acknowledgement (`ack_timeout`) or a failed connect, the shipper reconnects
//! with jittered exponential backoff and starts again from the oldest unacknowledged batch; a
//! batch leaves the outbox only once acknowledged (or dropped by the outbox bound).
//!
//! The collector may refuse some samples of a batch (`Ack.refused`, by reason): the rest is
//! applied, the batch is acknowledged, and the refused samples are counted
//! ([`ShipperStats::refused_samples`]) and logged, never resent (they would be refused again).
//! A batch the collector refuses as a whole with a permanent status (`INVALID_ARGUMENT`,
//! `OUT_OF_RANGE`: it cannot be decoded there) would block every later batch if it were resent
//! forever. The shipper first isolates it — the next stream sends the oldest unacknowledged
//! batch alone — and, if that single batch is refused again, moves it to the outbox's
//! `rejected/` directory, counts it and goes on with the next one. At most
//! [`MAX_REJECTED_IN_A_ROW`] batches are set aside without an acknowledgement in between: a
//! collector that refuses everything is a configuration problem, not a bad batch, and then
//! the shipper keeps retrying instead.
//!
//! Checkpoints advance in `seq` order: the positions of an acknowledged batch are acknowledged
//! into [`Checkpoints`] once every older pending batch is acknowledged too, the checkpoint file is
//! saved, and only then are the batch files deleted. So a crash at any point either resends a
//! batch (the collector answers `duplicate`) or resumes reading after lines already shipped,
//! never both and never neither.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailpulse_proto::v1::agent_service_client::AgentServiceClient;
use mailpulse_proto::v1::{
    ActionResult, AgentMessage, CollectorMessage, Hello, agent_message, collector_message,
};
use rand::Rng;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::lock;
use super::outbox::{Outbox, OutboxError};
use crate::secret::Secret;
use crate::source::{Checkpoints, SourceError};

/// TLS towards the collector (`https://` URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM bundle of the CA(s) that sign the collector's certificate; the system roots without it.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (together with `key_path`).
    pub cert_path: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_path: Option<PathBuf>,
    /// Name to verify the collector's certificate against, when it differs from the URL's host.
    pub domain: Option<String>,
}

/// Errors that stop the shipper.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The options cannot work.
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(String),
    /// A file named in the options cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Saving the checkpoints failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A blocking task of the shipper panicked or was cancelled.
    #[error("agent task failed: {0}")]
    Task(String),
}

/// Where and how the shipper connects.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Stable identity of the agent, sent in `Hello`.
    pub agent_id: String,
    /// Host name, sent in `Hello`.
    pub host: String,
    /// Collector endpoint, e.g. `https://collector.example.net:4317`.
    pub collector_url: String,
    /// Bearer token sent as `authorization` metadata (redacted in `Debug` output).
    pub token: Option<Secret>,
    /// TLS settings; required for mutual TLS or a private CA.
    pub tls: Option<ClientTls>,
    /// What the agent can do, sent in `Hello`.
    pub capabilities: Vec<String>,
    /// Most batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A batch unacknowledged this long means the stream is stuck: reconnect.
    pub ack_timeout: Duration,
    /// Limit on establishing a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// After shutdown is requested, how long to keep shipping what is pending.
    pub shutdown_grace: Duration,
    /// The checkpoint file advanced on acknowledgements.
    pub checkpoint_path: PathBuf,
    /// The tailed paths (for pruning checkpoints of files long gone).
    pub watched_paths: Vec<PathBuf>,
}

impl ShipperConfig {
    /// Defaults: 64 batches in flight, backoff 250 ms … 30 s, ack timeout 60 s, connect
    /// timeout 10 s, shutdown grace 2 s, no token, no TLS.
    pub fn new(
        agent_id: impl Into<String>,
        host: impl Into<String>,
        collector_url: impl Into<String>,
        checkpoint_path: impl Into<PathBuf>,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            host: host.into(),
            collector_url: collector_url.into(),
            token: None,
            tls: None,
            capabilities: vec!["postfix-logs".to_owned()],
            max_in_flight: 64,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
            checkpoint_path: checkpoint_path.into(),
            watched_paths: Vec::new(),
        }
    }
}

/// Most batches moved aside in a row, without an acknowledgement in between.
pub const MAX_REJECTED_IN_A_ROW: u32 = 3;

/// Most distinct refusal reasons counted by name; the rest are counted as `other`.
const MAX_REFUSAL_REASONS: usize = 32;

/// Longest refusal reason kept (the collector's text is bounded like a label value).
const MAX_REASON_BYTES: usize = 64;

/// Counters of the shipper, readable while it runs.
#[derive(Debug, Default)]
pub struct ShipperStats {
    /// Batches the collector refused for good, moved to the outbox's `rejected/`.
    pub rejected_batches: AtomicU64,
    /// Times saving the checkpoints (or deleting acknowledged batches) failed; retried.
    pub commit_failures: AtomicU64,
    /// Whether the last attempt to commit acknowledgements succeeded.
    pub commit_ok: std::sync::atomic::AtomicBool,
    /// Samples the collector refused (and did not apply), by reason.
    refused: Mutex<BTreeMap<String, u64>>,
    /// Streams established.
    pub connects: AtomicU64,
    /// Connection attempts or streams that failed.
    pub failures: AtomicU64,
    /// Batches written to a stream (resends included).
    pub batches_sent: AtomicU64,
    /// Acknowledgements received.
    pub acks: AtomicU64,
    /// Of `acks`: batches the collector already had.
    pub duplicate_acks: AtomicU64,
    /// Actions received (and rejected: actions are not enabled).
    pub actions_rejected: AtomicU64,
}

impl ShipperStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Samples the collector refused since the start, by reason.
    pub fn refused_samples(&self) -> BTreeMap<String, u64> {
        lock(&self.refused).clone()
    }

    fn add_refused(&self, reason: &str, samples: u64) {
        let reason = crate::aggregate::bound_label_value(reason, MAX_REASON_BYTES);
        let mut refused = lock(&self.refused);
        let key = if refused.contains_key(reason.as_ref()) || refused.len() < MAX_REFUSAL_REASONS {
            reason.into_owned()
        } else {
            crate::labels::OTHER.to_owned()
        };
        *refused.entry(key).or_insert(0) += samples;
    }
}

/// Ships the outbox to the collector; see the module documentation.
pub struct Shipper {
    cfg: ShipperConfig,
    endpoint: Endpoint,
    token: Option<MetadataValue<Ascii>>,
    outbox: Arc<Mutex<Outbox>>,
    appended: Arc<Notify>,
    committer: Arc<Mutex<Committer>>,
    stats: Arc<ShipperStats>,
    /// Batches in flight when the last stream failed, oldest first.
    failed_in_flight: Vec<u64>,
    /// A batch refused with a permanent status while others were in flight: the next stream
    /// sends it alone to find out whether it is the one refused.
    suspect: Option<u64>,
    /// Batches moved aside since the last acknowledgement.
    rejected_in_a_row: u32,
    /// Runs the collector's actions (None: every action is refused).
    actions: Option<Arc<crate::act::Executor>>,
    /// Action results waiting for a stream (kept across reconnects).
    results_tx: mpsc::Sender<AgentMessage>,
    results_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<AgentMessage>>>,
}

/// Action results waiting to be sent, at most (an action beyond it waits for room).
const MAX_PENDING_RESULTS: usize = 64;

/// Why a stream ended; all but `Fatal` lead to a reconnect.
#[derive(Debug)]
enum SessionError {
    Connect(tonic::transport::Error),
    Status(tonic::Status),
    Closed,
    AckTimeout(u64),
    Fatal(ShipError),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Status(s) => write!(f, "stream: {s}"),
            Self::Closed => f.write_str("stream closed by the collector"),
            Self::AckTimeout(seq) => write!(f, "no acknowledgement for batch {seq}"),
            Self::Fatal(e) => write!(f, "{e}"),
        }
    }
}

/// Shutdown as seen by the shipper: once requested, it ships what is pending until `deadline`.
struct ShutdownState {
    token: CancellationToken,
    deadline: Option<tokio::time::Instant>,
    grace: Duration,
}

impl ShutdownState {
    fn check(&mut self) {
        if self.deadline.is_none() && self.token.is_cancelled() {
            self.deadline = Some(tokio::time::Instant::now() + self.grace);
        }
    }

    fn requested(&self) -> bool {
        self.deadline.is_some()
    }

    fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Resolves when shutdown is requested, or when its grace ends.
    async fn wait(&mut self) {
        match self.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => {
                self.token.cancelled().await;
                self.check();
            }
        }
    }
}

impl Shipper {
    /// Validates the endpoint, token and TLS files. `checkpoints` is the real checkpoint state
    /// (as loaded from `cfg.checkpoint_path`); the shipper advances and saves it.
    pub fn new(
        cfg: ShipperConfig,
        outbox: Arc<Mutex<Outbox>>,
        appended: Arc<Notify>,
        checkpoints: Checkpoints,
    ) -> Result<Self, ShipError> {
        let endpoint = build_endpoint(&cfg)?;
        let token = match &cfg.token {
            Some(t) => Some(
                format!("Bearer {}", t.expose())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| {
                        ShipError::InvalidConfig(
                            "token contains characters not allowed in gRPC metadata".into(),
                        )
                    })?,
            ),
            None => None,
        };
        let (results_tx, results_rx) = mpsc::channel(MAX_PENDING_RESULTS);
        let committer = Committer {
            outbox: outbox.clone(),
            checkpoints,
            path: cfg.checkpoint_path.clone(),
            watched: cfg.watched_paths.clone(),
            acked: BTreeSet::new(),
            last_prune: Instant::now(),
            failing: false,
            failures: 0,
        };
        Ok(Self {
            cfg,
            endpoint,
            token,
            outbox,
            appended,
            committer: Arc::new(Mutex::new(committer)),
            stats: Arc::new(ShipperStats {
                commit_ok: true.into(),
                ..ShipperStats::default()
            }),
            failed_in_flight: Vec::new(),
            suspect: None,
            rejected_in_a_row: 0,
            actions: None,
            results_tx,
            results_rx: Arc::new(tokio::sync::Mutex::new(results_rx)),
        })
    }

    /// Runs the collector's actions with `executor` (and says `actions` in Hello).
    pub fn with_actions(mut self, executor: Arc<crate::act::Executor>) -> Self {
        if !self.cfg.capabilities.iter().any(|c| c == "actions") {
            self.cfg.capabilities.push("actions".to_owned());
        }
        self.actions = Some(executor);
        self
    }

    /// Counters, shared with the running shipper.
    pub fn stats(&self) -> Arc<ShipperStats> {
        self.stats.clone()
    }

    /// Ships until `shutdown` is cancelled, then keeps going for at most `shutdown_grace` while
    /// batches are unacknowledged. Returns an error only for failures that retrying cannot fix
    /// (outbox or checkpoint I/O).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ShipError> {
        let mut shutdown = ShutdownState {
            token: shutdown,
            deadline: None,
            grace: self.cfg.shutdown_grace,
        };
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_max);
        loop {
            shutdown.check();
            if shutdown.requested() && (self.all_acknowledged() || shutdown.expired()) {
                return Ok(());
            }
            self.failed_in_flight.clear();
            let error = match self.session(&mut shutdown, &mut backoff).await {
                // Stopped for a shutdown: the check above decides whether to go on.
                Ok(()) => continue,
                Err(SessionError::Fatal(e)) => return Err(e),
                Err(e) => e,
            };
            if let SessionError::Status(status) = &error
                && matches!(
                    status.code(),
                    tonic::Code::InvalidArgument | tonic::Code::OutOfRange
                )
            {
                self.permanent_refusal(status).await.map_err(|e| match e {
                    SessionError::Fatal(e) => e,
                    other => ShipError::Task(other.to_string()),
                })?;
            }
            ShipperStats::bump(&self.stats.failures);
            let delay = backoff.next_delay();
            tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "collector stream failed");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    /// After a stream ended with a permanent status: isolate the oldest batch in flight, or,
    /// when it was already sent alone and refused again, move it aside.
    async fn permanent_refusal(&mut self, status: &tonic::Status) -> Result<(), SessionError> {
        let Some(&oldest) = self.failed_in_flight.first() else {
            // Refused before any batch was in flight (Hello, authentication): not a batch's fault.
            return Ok(());
        };
        let alone = self.failed_in_flight.len() == 1;
        if self.suspect != Some(oldest) || !alone {
            tracing::warn!(seq = oldest, status = %status, "collector refused the stream for good; sending the oldest batch alone");
            self.suspect = Some(oldest);
            return Ok(());
        }
        self.suspect = None;
        if self.rejected_in_a_row >= MAX_REJECTED_IN_A_ROW {
            tracing::error!(
                seq = oldest,
                status = %status,
                "collector refuses every batch; not setting aside more batches without an acknowledgement in between, retrying"
            );
            return Ok(());
        }
        let (outbox, committer) = (self.outbox.clone(), self.committer.clone());
        let moved = tokio::task::spawn_blocking(move || {
            let moved = lock(&outbox).reject_batch(oldest)?;
            // The batches after it may be acknowledged already and wait for it.
            lock(&committer).commit();
            Ok::<_, OutboxError>(moved)
        })
        .await
        .map_err(|e| SessionError::Fatal(ShipError::Task(e.to_string())))?
        .map_err(|e| SessionError::Fatal(e.into()))?;
        if moved {
            self.rejected_in_a_row += 1;
            ShipperStats::bump(&self.stats.rejected_batches);
            tracing::error!(
                seq = oldest,
                status = %status,
                "collector refused batch for good; moved to the outbox's rejected/ directory"
            );
        }
        Ok(())
    }

    /// One connection: Hello, then batches, until an error or the end of a shutdown.
    async fn session(
        &mut self,
        shutdown: &mut ShutdownState,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let channel = tokio::select! {
            c = self.endpoint.connect() => c.map_err(SessionError::Connect)?,
            _ = shutdown.wait() => return Ok(()),
        };
        let mut client = AgentServiceClient::new(channel);
        if let Some(seq) = self.suspect
            && lock(&self.outbox).positions(seq).is_none()
        {
            self.suspect = None; // dropped by the outbox bound meanwhile
        }
        // A suspect batch goes alone, so a refusal names it.
        let window = if self.suspect.is_some() {
            1
        } else {
            self.cfg.max_in_flight.max(1)
        };
        let incarnation = lock(&self.outbox).incarnation().to_owned();
        let (tx, rx) = mpsc::channel::<AgentMessage>(window + 8);
        let hello = AgentMessage {
            kind: Some(agent_message::Kind::Hello(Hello {
                agent_id: self.cfg.agent_id.clone(),
                host: self.cfg.host.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                capabilities: self.cfg.capabilities.clone(),
                incarnation,
            })),
        };
        tx.send(hello).await.map_err(|_| SessionError::Closed)?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        let mut inbound = tokio::select! {
            r = client.stream(request) => r.map_err(SessionError::Status)?.into_inner(),
            _ = tokio::time::sleep(self.cfg.connect_timeout) => {
                return Err(SessionError::Status(tonic::Status::deadline_exceeded("no response to the stream request")));
            }
        };
        ShipperStats::bump(&self.stats.connects);
        tracing::info!(url = %self.cfg.collector_url, "connected to collector");

        let mut last_sent: Option<u64> = None;
        let mut in_flight: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
        let mut next: Option<(u64, AgentMessage)> = None;
        let mut control: VecDeque<AgentMessage> = VecDeque::new();
        // Results of actions (also of those taken on an earlier stream).
        let mut results = self.results_rx.clone().lock_owned().await;
        loop {
            shutdown.check();
            if shutdown.requested() && (self.all_acknowledged() || shutdown.expired()) {
                return Ok(());
            }
            if next.is_none() && in_flight.len() < window {
                next = self.load_next(&mut last_sent).await?;
            }
            let ack_deadline = in_flight
                .values()
                .min()
                .map(|sent| *sent + self.cfg.ack_timeout);
            let can_send = !control.is_empty() || next.is_some();
            let idle = next.is_none() && in_flight.len() < window;
            let retry_commit = lock(&self.committer).failing;
            tokio::select! {
                biased;
                msg = inbound.message() => {
                    let msg = match msg {
                        Ok(Some(msg)) => msg,
                        Ok(None) => return Err(SessionError::Closed),
                        Err(status) => {
                            self.failed_in_flight = in_flight.keys().copied().collect();
                            return Err(SessionError::Status(status));
                        }
                    };
                    self.handle(msg, &mut in_flight, &mut control, backoff).await?;
                }
                permit = tx.reserve(), if can_send => {
                    let permit = permit.map_err(|_| SessionError::Closed)?;
                    if let Some(msg) = control.pop_front() {
                        permit.send(msg);
                    } else if let Some((seq, msg)) = next.take() {
                        permit.send(msg);
                        in_flight.insert(seq, tokio::time::Instant::now());
                        ShipperStats::bump(&self.stats.batches_sent);
                    }
                }
                Some(result) = results.recv(), if control.len() < MAX_PENDING_RESULTS => {
                    control.push_back(result);
                }
                _ = self.appended.notified(), if idle => {}
                _ = tokio::time::sleep(COMMIT_RETRY), if retry_commit => {
                    self.commit().await?;
                }
                _ = sleep_until_opt(ack_deadline), if ack_deadline.is_some() => {
                    let oldest = in_flight.keys().next().copied().unwrap_or_default();
                    return Err(SessionError::AckTimeout(oldest));
                }
                _ = shutdown.wait() => {}
            }
        }
    }

    /// Reads the next batch to send after `last_sent`, skipping batches acknowledged but not yet
    /// committed and batches dropped meanwhile; a batch that turned corrupt is dropped (counted).
    async fn load_next(
        &self,
        last_sent: &mut Option<u64>,
    ) -> Result<Option<(u64, AgentMessage)>, SessionError> {
        loop {
            let seq = {
                // Lock order everywhere: committer, then outbox.
                let committer = lock(&self.committer);
                let outbox = lock(&self.outbox);
                let mut seq = outbox.next_pending_after(*last_sent);
                while let Some(s) = seq.filter(|s| committer.acked.contains(s)) {
                    seq = outbox.next_pending_after(Some(s));
                }
                seq
            };
            let Some(seq) = seq else {
                return Ok(None);
            };
            *last_sent = Some(seq);
            let outbox = self.outbox.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut outbox = lock(&outbox);
                match outbox.read(seq) {
                    Err(OutboxError::Corrupt { seq, reason }) => {
                        tracing::error!(seq, %reason, "outbox batch became unreadable; dropping it");
                        outbox.drop_batch(seq).map(|_| None)
                    }
                    other => other,
                }
            })
            .await
            .map_err(|e| SessionError::Fatal(ShipError::Task(e.to_string())))?
            .map_err(|e| SessionError::Fatal(e.into()))?;
            if let Some(pending) = read {
                let msg = AgentMessage {
                    kind: Some(agent_message::Kind::Batch(pending.batch)),
                };
                return Ok(Some((seq, msg)));
            }
        }
    }

    async fn handle(
        &mut self,
        msg: CollectorMessage,
        in_flight: &mut BTreeMap<u64, tokio::time::Instant>,
        control: &mut VecDeque<AgentMessage>,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        match msg.kind {
            Some(collector_message::Kind::Ack(ack)) => {
                in_flight.remove(&ack.seq);
                ShipperStats::bump(&self.stats.acks);
                if ack.duplicate {
                    ShipperStats::bump(&self.stats.duplicate_acks);
                }
                if self.suspect == Some(ack.seq) {
                    self.suspect = None;
                }
                self.rejected_in_a_row = 0;
                let mut refused_total = 0;
                for refused in &ack.refused {
                    self.stats.add_refused(&refused.reason, refused.samples);
                    refused_total += refused.samples;
                }
                if refused_total > 0 {
                    let reasons: Vec<&str> =
                        ack.refused.iter().map(|r| r.reason.as_str()).collect();
                    tracing::warn!(seq = ack.seq, samples = refused_total, reasons = ?reasons, "collector refused samples of a batch (the rest is applied; they are not resent)");
                }
                backoff.reset();
                let committer = self.committer.clone();
                let seq = ack.seq;
                tokio::task::spawn_blocking(move || lock(&committer).ack(seq))
                    .await
                    .map_err(|e| SessionError::Fatal(ShipError::Task(e.to_string())))?;
                self.note_commit();
            }
            Some(collector_message::Kind::Action(action)) => match &self.actions {
                Some(executor) => {
                    // Run apart, so the stream keeps shipping; the result comes back through
                    // the results channel, on this stream or the next one.
                    let (executor, results) = (executor.clone(), self.results_tx.clone());
                    tokio::spawn(async move {
                        let result = executor.handle(&action).await;
                        let _ = results
                            .send(AgentMessage {
                                kind: Some(agent_message::Kind::ActionResult(result)),
                            })
                            .await;
                    });
                }
                None => {
                    ShipperStats::bump(&self.stats.actions_rejected);
                    tracing::info!(id = %crate::act::params::shown(&action.id), kind = %crate::act::params::shown(&action.kind), "refusing action: actions are not enabled");
                    control.push_back(AgentMessage {
                        kind: Some(agent_message::Kind::ActionResult(ActionResult {
                            action_id: action.id,
                            status: "refused".to_owned(),
                            output: "{\"error\":\"actions are not enabled on this agent\"}"
                                .to_owned(),
                        })),
                    });
                }
            },
            None => {}
        }
        Ok(())
    }

    /// Retries committing acknowledgements after a failure (a full disk).
    async fn commit(&self) -> Result<(), SessionError> {
        let committer = self.committer.clone();
        tokio::task::spawn_blocking(move || lock(&committer).commit())
            .await
            .map_err(|e| SessionError::Fatal(ShipError::Task(e.to_string())))?;
        self.note_commit();
        Ok(())
    }

    /// Mirrors the committer's health into the stats.
    fn note_commit(&self) {
        let committer = lock(&self.committer);
        self.stats
            .commit_failures
            .store(committer.failures, Ordering::Relaxed);
        self.stats
            .commit_ok
            .store(!committer.failing, Ordering::Relaxed);
    }

    /// Whether every pending batch is acknowledged (nothing left to ship).
    fn all_acknowledged(&self) -> bool {
        let committer = lock(&self.committer);
        let outbox = lock(&self.outbox);
        outbox.pending_seqs().all(|s| committer.acked.contains(&s))
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies acknowledgements: checkpoint first (in `seq` order), then delete the batch files.
struct Committer {
    outbox: Arc<Mutex<Outbox>>,
    checkpoints: Checkpoints,
    path: PathBuf,
    watched: Vec<PathBuf>,
    /// Acknowledged batches still in the outbox because an older one is not acknowledged yet
    /// (or because committing them failed).
    acked: BTreeSet<u64>,
    last_prune: Instant,
    /// The last commit failed; it is retried every [`COMMIT_RETRY`].
    failing: bool,
    /// Failed commit attempts since the start.
    failures: u64,
}

/// How often checkpoints of files gone for good are pruned, and how long they are kept.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const KEEP_MISSING_FOR: Duration = Duration::from_secs(7 * 86_400);

/// How often a failed commit (a full disk) is retried while nothing else happens.
const COMMIT_RETRY: Duration = Duration::from_secs(1);

impl Committer {
    /// Records the acknowledgement of `seq` and commits what is ready. A failure to commit
    /// (the checkpoint file cannot be written) is logged and retried later: the batches stay in
    /// the outbox meanwhile, acknowledged, and are not sent again.
    fn ack(&mut self, seq: u64) {
        // Not pending: a stray ack, or dropped by the outbox bound meanwhile.
        let pending = lock(&self.outbox).positions(seq).is_some();
        if pending {
            self.acked.insert(seq);
        }
        self.commit();
    }

    /// Commits the acknowledged prefix of the outbox; see [`Committer::ack`].
    fn commit(&mut self) {
        match self.try_commit() {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("acknowledged batches committed again");
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %e, "cannot commit acknowledged batches; retrying");
                }
                self.failing = true;
                self.failures += 1;
            }
        }
    }

    fn try_commit(&mut self) -> Result<(), ShipError> {
        let mut outbox = lock(&self.outbox);
        self.acked.retain(|s| outbox.positions(*s).is_some());
        let ready: Vec<u64> = outbox
            .pending_seqs()
            .take_while(|s| self.acked.contains(s))
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        for s in &ready {
            for p in outbox.positions(*s).unwrap_or_default() {
                self.checkpoints.ack(p.file, p.end_offset);
            }
        }
        if !self.watched.is_empty() && self.last_prune.elapsed() >= PRUNE_EVERY {
            self.checkpoints
                .forget_missing(&self.watched, KEEP_MISSING_FOR);
            self.last_prune = Instant::now();
        }
        // Durable checkpoint before the batches are forgotten: a crash in between resends them.
        self.checkpoints.save(&self.path)?;
        for s in ready {
            outbox.ack(s)?;
            self.acked.remove(&s);
        }
        self.acked.retain(|s| outbox.positions(*s).is_some());
        Ok(())
    }
}

/// Jittered exponential backoff: the n-th delay is uniform in [d/2, d] with
/// d = min(max, base · 2ⁿ).
#[derive(Debug)]
struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let full = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn build_endpoint(cfg: &ShipperConfig) -> Result<Endpoint, ShipError> {
    let url = cfg.collector_url.trim();
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(ShipError::InvalidConfig(format!(
            "collector_url {url:?} must start with http:// or https://"
        )));
    }
    let invalid = |e: tonic::transport::Error| {
        ShipError::InvalidConfig(format!("collector_url {url:?}: {e}"))
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(invalid)?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let tls = match (&cfg.tls, https) {
        (Some(_), false) => {
            return Err(ShipError::InvalidConfig(format!(
                "TLS is configured but collector_url {url:?} is not https://"
            )));
        }
        (Some(tls), true) => Some(tls_config(tls)?),
        (None, true) => Some(ClientTlsConfig::new().with_native_roots()),
        (None, false) => None,
    };
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(invalid)?;
    }
    Ok(endpoint)
}

fn tls_config(tls: &ClientTls) -> Result<ClientTlsConfig, ShipError> {
    let read = |what: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| ShipError::ReadFile {
            what,
            path: path.clone(),
            source,
        })
    };
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_path {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?)),
        None => config.with_native_roots(),
    };
    match (&tls.cert_path, &tls.key_path) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("client certificate", cert)?,
                read("client key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(ShipError::InvalidConfig(
                "a client certificate needs both cert_path and key_path".into(),
            ));
        }
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut expected_full = Duration::from_millis(250);
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= expected_full / 2 && d <= expected_full,
                "delay {d:?} within [{:?}, {expected_full:?}]",
                expected_full / 2
            );
            expected_full = (expected_full * 2).min(Duration::from_secs(30));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
    }

    #[test]
    fn endpoint_validation() {
        let mut cfg = ShipperConfig::new("a", "h", "ftp://x", "/tmp/c.json");
        assert!(build_endpoint(&cfg).is_err(), "bad scheme");
        cfg.collector_url = "http://127.0.0.1:1".into();
        assert!(build_endpoint(&cfg).is_ok());
        cfg.tls = Some(ClientTls::default());
        assert!(build_endpoint(&cfg).is_err(), "TLS over http://");
    }
}
