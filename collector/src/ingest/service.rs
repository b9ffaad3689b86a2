//! The `mailpulse.v1.AgentService` gRPC service.
//!
//! Same wire contract as the generated `AgentServiceServer`, but the request codec hands over
//! each message as raw bytes (a zero-copy slice of tonic's receive buffer) so that
//! [`super::pb`] can decode batches without allocating per sample.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use mailpulse_proto::v1::{Ack, CollectorMessage, collector_message};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::auth::Credentials;
use super::pb::{self, AgentFrame, BatchDecoder, Invalid};
use super::rate::Limited;
use super::refusal::{Refusals, RefusedSamples, SampleRefusal};
use super::{ClientCertificates, Ingest, identity};
use crate::net::ConnectionInfo;
use crate::stats::{CollectorStats, RejectReason};
use crate::store::{BatchOutcome, BatchReply};

/// gRPC path of `AgentService.Stream`.
pub const STREAM_PATH: &str = "/mailpulse.v1.AgentService/Stream";

/// The tower service tonic's router serves.
#[derive(Clone)]
pub struct AgentGrpcService {
    ingest: Arc<Ingest>,
}

impl AgentGrpcService {
    pub(super) fn new(ingest: Arc<Ingest>) -> Self {
        Self { ingest }
    }
}

impl NamedService for AgentGrpcService {
    const NAME: &'static str = "mailpulse.v1.AgentService";
}

impl<B> Service<http::Request<B>> for AgentGrpcService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Any request counts: the connection's handshake deadline no longer applies.
        if let Some(info) = connection_of(req.extensions()) {
            info.request_started();
        }
        if req.uri().path() != STREAM_PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let max = ingest.limits.max_message_bytes;
            let mut grpc = Grpc::new(FrameCodec)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.streaming(StreamHandler(ingest), req).await)
        })
    }
}

/// The connection a request came on (plaintext or TLS).
fn connection_of(extensions: &http::Extensions) -> Option<&ConnectionInfo> {
    extensions.get::<ConnectionInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<ConnectionInfo>>()
            .map(|tls| tls.get_ref())
    })
}

/// The client (end-entity) certificate of the connection a request came on, DER, if any.
fn peer_certificate(extensions: &http::Extensions) -> Option<Vec<u8>> {
    let chain = extensions
        .get::<TlsConnectInfo<ConnectionInfo>>()?
        .peer_certs()?;
    chain.first().map(|der| der.to_vec())
}

struct StreamHandler(Arc<Ingest>);

impl StreamingService<Bytes> for StreamHandler {
    type Response = CollectorMessage;
    type ResponseStream = ReceiverStream<Result<CollectorMessage, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let ingest = self.0.clone();
        Box::pin(async move { ingest.open_stream(request) })
    }
}

/// An acknowledgement to send once the store answered, or a final status.
enum Pending {
    Batch {
        seq: u64,
        reply: BatchReply,
        refusals: Refusals,
    },
    Fail(Status),
}

impl Ingest {
    fn open_stream(
        self: Arc<Self>,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<ReceiverStream<Result<CollectorMessage, Status>>>, Status> {
        let Some(credentials) = self.tokens.authenticate(request.metadata()) else {
            self.stats.reject(RejectReason::Unauthenticated);
            return Err(Status::unauthenticated(
                "missing or unknown bearer token (authorization: Bearer <token>)",
            ));
        };
        self.check_client_certificate(&credentials.agent_id, request.extensions())?;
        let Some(slot) = StreamSlot::take(self.clone(), &credentials.agent_id) else {
            return Err(self.refuse(Invalid {
                reason: RejectReason::TooManyStreams,
                message: format!(
                    "agent {} already has {} streams open",
                    credentials.agent_id, self.limits.max_streams_per_agent
                ),
            }));
        };
        let inbound = request.into_inner();
        let in_flight = self.limits.max_in_flight_batches.max(1);
        let (out_tx, out_rx) = mpsc::channel(in_flight + 1);
        let (pending_tx, pending_rx) = mpsc::channel(in_flight);
        let (actions_tx, actions_rx) = mpsc::channel(crate::remediate::bus::MAX_QUEUED_ACTIONS);
        tokio::spawn(forward_acks(
            pending_rx,
            actions_rx,
            out_tx,
            credentials.agent_id.clone(),
            self.refused.clone(),
        ));
        tokio::spawn(async move {
            let _slot = slot;
            let shutdown = self.shutdown.clone();
            if let Err(status) = self
                .read_stream(&credentials, inbound, &pending_tx, actions_tx, shutdown)
                .await
            {
                let _ = pending_tx.send(Pending::Fail(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    /// With a client CA, the client certificate (required or given) must name the agent the
    /// token belongs to (and so the one Hello names).
    fn check_client_certificate(
        &self,
        agent_id: &str,
        extensions: &http::Extensions,
    ) -> Result<(), Status> {
        if self.client_certificates == ClientCertificates::Ignored {
            return Ok(());
        }
        let message = match peer_certificate(extensions) {
            Some(der) if identity::certifies(&der, agent_id) => return Ok(()),
            Some(der) => format!(
                "the client certificate names {:?}, not agent {agent_id:?}",
                identity::certificate_names(&der)
            ),
            None if self.client_certificates == ClientCertificates::Optional => return Ok(()),
            None => "a client certificate is required".to_string(),
        };
        Err(self.refuse(Invalid {
            reason: RejectReason::AgentMismatch,
            message,
        }))
    }

    /// Reads Hello, then batches, until the agent closes, a rule is broken or shutdown.
    async fn read_stream(
        &self,
        credentials: &Credentials,
        mut inbound: Streaming<Bytes>,
        pending: &mpsc::Sender<Pending>,
        actions: mpsc::Sender<mailpulse_proto::v1::Action>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Status> {
        let hello_timeout = Duration::from_secs(self.grpc.hello_timeout_secs.max(1));
        let first =
            match tokio::time::timeout(hello_timeout, self.next_frame(&mut inbound, &mut shutdown))
                .await
            {
                Ok(first) => first?,
                Err(_) => {
                    return Err(self.refuse(Invalid {
                        reason: RejectReason::HelloTimeout,
                        message: format!("no Hello within {} s", hello_timeout.as_secs()),
                    }));
                }
            };
        let Some(first) = first else {
            return Ok(());
        };
        let hello = match pb::parse_frame(&first).map_err(|e| self.refuse(e))? {
            AgentFrame::Hello(hello) => {
                pb::agent_hello(hello, &credentials.agent_id, &credentials.hosts)
                    .map_err(|e| self.refuse(e))?
            }
            _ => {
                return Err(self.refuse(Invalid {
                    reason: RejectReason::NoHello,
                    message: "the first message of a stream must be Hello".into(),
                }));
            }
        };
        let agent_id = hello.agent_id.clone();
        let incarnation = hello.incarnation.clone();
        let host = hello.host.clone();
        self.store
            .hello(hello)
            .await
            .map_err(|e| Status::unavailable(format!("store: {e}")))?;
        let _connection = Connection::open(self, &agent_id);
        info!(agent = %agent_id, %host, "agent connected");
        if let Some(bus) = &self.actions {
            bus.register(&agent_id, actions);
        }

        let mut decoder =
            BatchDecoder::new(self.store.registry(), self.limits.max_batch_samples, &host)
                .bind_hosts(&credentials.hosts)
                .max_histogram_buckets(self.limits.max_histogram_buckets);
        while let Some(frame) = self.next_frame(&mut inbound, &mut shutdown).await? {
            self.liveness.seen(&agent_id);
            match pb::parse_frame(&frame).map_err(|e| self.refuse(e))? {
                AgentFrame::Batch(encoded) => {
                    CollectorStats::add(&self.stats.batches_received, 1);
                    decoder.set_window_range(Some(self.window_range_ms()));
                    let batch = decoder
                        .decode(frame.slice_ref(encoded))
                        .map_err(|e| self.refuse(e))?;
                    let refusals = decoder.refusals().clone();
                    // Refused samples cost work too: they count against the rate.
                    let items =
                        batch.samples.len() + batch.probes.len() + refusals.total() as usize;
                    if let Err(limited) = self.rate.try_take(&agent_id, items, frame.len()) {
                        let message = match limited {
                            Limited::Samples => format!(
                                "agent {agent_id} is over {} samples/s; retry later",
                                self.limits.max_agent_samples_per_sec
                            ),
                            Limited::Bytes => format!(
                                "agent {agent_id} is over {} bytes/s; retry later",
                                self.limits.max_agent_bytes_per_sec
                            ),
                        };
                        return Err(self.refuse(Invalid {
                            reason: RejectReason::RateLimited,
                            message,
                        }));
                    }
                    if let Some(detail) = refusals.first_detail() {
                        debug!(agent = %agent_id, seq = batch.seq, refused = refusals.total(), first = detail, "samples refused");
                    }
                    let seq = batch.seq;
                    let reply = self
                        .store
                        .submit_batch(agent_id.clone(), incarnation.clone(), batch)
                        .await
                        .map_err(|e| Status::unavailable(format!("store: {e}")))?;
                    let pending_ack = Pending::Batch {
                        seq,
                        reply,
                        refusals,
                    };
                    if pending.send(pending_ack).await.is_err() {
                        // The ack side stopped (client gone or store error already sent).
                        return Ok(());
                    }
                }
                AgentFrame::Hello(_) => {
                    return Err(self.refuse(Invalid {
                        reason: RejectReason::NoHello,
                        message: "Hello was already received on this stream".into(),
                    }));
                }
                AgentFrame::ActionResult(result) => match &self.actions {
                    Some(bus) => {
                        if !bus.result(&agent_id, result) {
                            warn!(agent = %agent_id, "action result dropped: the remediation queue is full");
                        }
                    }
                    None => {
                        debug!(agent = %agent_id, action = %result.action_id, "action result ignored (remediation is off)");
                    }
                },
                AgentFrame::Empty => {}
            }
        }
        Ok(())
    }

    /// Window starts accepted now: from the start of the retention period to now plus the
    /// allowed clock skew.
    fn window_range_ms(&self) -> std::ops::RangeInclusive<i64> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let past_ms = (self.retention_secs as i64).saturating_mul(1000);
        let skew_ms = (self.limits.max_clock_skew_secs as i64).saturating_mul(1000);
        now_ms.saturating_sub(past_ms)..=now_ms.saturating_add(skew_ms)
    }

    async fn next_frame(
        &self,
        inbound: &mut Streaming<Bytes>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Bytes>, Status> {
        if *shutdown.borrow() {
            return Err(Status::unavailable("collector shutting down"));
        }
        tokio::select! {
            message = inbound.message() => message.inspect_err(|status| {
                if matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted) {
                    self.stats.reject(RejectReason::MessageTooLarge);
                }
            }),
            _ = shutdown.changed() => Err(Status::unavailable("collector shutting down")),
        }
    }

    fn refuse(&self, invalid: Invalid) -> Status {
        self.stats.reject(invalid.reason);
        warn!(reason = invalid.reason.as_str(), message = %invalid.message, "agent message refused");
        invalid.to_status()
    }
}

/// Sends acks in batch order as the store answers; ends the response with the first error.
/// Refused samples are counted once their batch is applied (a resend acked as a duplicate was
/// counted the first time).
async fn forward_acks(
    mut pending: mpsc::Receiver<Pending>,
    mut actions: mpsc::Receiver<mailpulse_proto::v1::Action>,
    out: mpsc::Sender<Result<CollectorMessage, Status>>,
    agent_id: Arc<str>,
    refused: Arc<RefusedSamples>,
) {
    loop {
        let item = tokio::select! {
            item = pending.recv() => match item {
                Some(item) => item,
                None => break,
            },
            Some(action) = actions.recv() => {
                let message = CollectorMessage {
                    kind: Some(collector_message::Kind::Action(action)),
                };
                if out.send(Ok(message)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let message = match item {
            Pending::Batch {
                seq,
                reply,
                mut refusals,
            } => match reply.await {
                Ok(Ok(outcome)) => {
                    if let BatchOutcome::Applied {
                        dns_probes_refused, ..
                    } = outcome
                    {
                        refusals.add_many(SampleRefusal::DnsRecordCap, dns_probes_refused, || {
                            format!("{dns_probes_refused} probes of new DNS records past the cap")
                        });
                    }
                    if outcome != BatchOutcome::Duplicate {
                        refused.record(&agent_id, &refusals);
                    }
                    Ok(CollectorMessage {
                        kind: Some(collector_message::Kind::Ack(Ack {
                            seq,
                            duplicate: outcome == BatchOutcome::Duplicate,
                            refused: refusals.to_proto(),
                        })),
                    })
                }
                Ok(Err(e)) => Err(Status::unavailable(format!("store: {e}"))),
                Err(_) => Err(Status::unavailable("store writer stopped")),
            },
            Pending::Fail(status) => Err(status),
        };
        let last = message.is_err();
        if out.send(message).await.is_err() || last {
            break;
        }
    }
}

/// One of an agent's `max_streams_per_agent` stream slots, given back when dropped.
struct StreamSlot {
    ingest: Arc<Ingest>,
    agent_id: Arc<str>,
}

impl StreamSlot {
    fn take(ingest: Arc<Ingest>, agent_id: &Arc<str>) -> Option<Self> {
        {
            let mut streams = ingest.streams.lock().unwrap_or_else(|e| e.into_inner());
            let open = streams.entry(agent_id.clone()).or_insert(0);
            if *open >= ingest.limits.max_streams_per_agent.max(1) {
                return None;
            }
            *open += 1;
        }
        Some(Self {
            ingest,
            agent_id: agent_id.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self
            .ingest
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(open) = streams.get_mut(&self.agent_id) {
            *open = open.saturating_sub(1);
        }
    }
}

/// An open, authenticated stream: liveness while it lasts, disconnect bookkeeping after.
struct Connection<'a> {
    ingest: &'a Ingest,
    agent_id: Arc<str>,
}

impl<'a> Connection<'a> {
    fn open(ingest: &'a Ingest, agent_id: &Arc<str>) -> Self {
        ingest.liveness.connect(agent_id);
        Self {
            ingest,
            agent_id: agent_id.clone(),
        }
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if self.ingest.liveness.disconnect(&self.agent_id) {
            info!(agent = %self.agent_id, "agent disconnected");
            self.ingest.store.disconnected(self.agent_id.clone());
        }
    }
}

/// Request frames as raw bytes, responses prost-encoded.
#[derive(Debug, Clone, Copy, Default)]
struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = CollectorMessage;
    type Decode = Bytes;
    type Encoder = FrameEncoder;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        FrameDecoder
    }
}

#[derive(Debug)]
struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = CollectorMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

#[derive(Debug)]
struct FrameDecoder;

impl Decoder for FrameDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}
