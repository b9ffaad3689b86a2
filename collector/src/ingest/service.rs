//! The `mailpulse.v1.AgentService` gRPC service.
//!
//! Same wire contract as the generated `AgentServiceServer`, but the request codec hands over
//! each message as raw bytes (a zero-copy slice of tonic's receive buffer) so that
//! [`super::pb`] can decode batches without allocating per sample.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use mailpulse_proto::v1::{Ack, CollectorMessage, collector_message};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::Ingest;
use super::pb::{self, AgentFrame, BatchDecoder, Invalid};
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
    Batch { seq: u64, reply: BatchReply },
    Fail(Status),
}

impl Ingest {
    fn open_stream(
        self: Arc<Self>,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<ReceiverStream<Result<CollectorMessage, Status>>>, Status> {
        let Some(agent_id) = self.tokens.authenticate(request.metadata()) else {
            self.stats.reject(RejectReason::Unauthenticated);
            return Err(Status::unauthenticated(
                "missing or unknown bearer token (authorization: Bearer <token>)",
            ));
        };
        let inbound = request.into_inner();
        let in_flight = self.limits.max_in_flight_batches.max(1);
        let (out_tx, out_rx) = mpsc::channel(in_flight + 1);
        let (pending_tx, pending_rx) = mpsc::channel(in_flight);
        tokio::spawn(forward_acks(pending_rx, out_tx));
        tokio::spawn(async move {
            let shutdown = self.shutdown.clone();
            if let Err(status) = self
                .read_stream(&agent_id, inbound, &pending_tx, shutdown)
                .await
            {
                let _ = pending_tx.send(Pending::Fail(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    /// Reads Hello, then batches, until the agent closes, a rule is broken or shutdown.
    async fn read_stream(
        &self,
        token_agent: &Arc<str>,
        mut inbound: Streaming<Bytes>,
        pending: &mpsc::Sender<Pending>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Status> {
        let Some(first) = self.next_frame(&mut inbound, &mut shutdown).await? else {
            return Ok(());
        };
        let hello = match pb::parse_frame(&first).map_err(|e| self.refuse(e))? {
            AgentFrame::Hello(hello) => {
                pb::agent_hello(hello, token_agent).map_err(|e| self.refuse(e))?
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

        let mut decoder =
            BatchDecoder::new(self.store.registry(), self.limits.max_batch_samples, &host);
        while let Some(frame) = self.next_frame(&mut inbound, &mut shutdown).await? {
            self.liveness.seen(&agent_id);
            match pb::parse_frame(&frame).map_err(|e| self.refuse(e))? {
                AgentFrame::Batch(encoded) => {
                    CollectorStats::add(&self.stats.batches_received, 1);
                    let batch = decoder
                        .decode(frame.slice_ref(encoded))
                        .map_err(|e| self.refuse(e))?;
                    if !self.rate.try_take(&agent_id, batch.samples.len()) {
                        return Err(self.refuse(Invalid {
                            reason: RejectReason::RateLimited,
                            message: format!(
                                "agent {agent_id} is over {} samples/s; retry later",
                                self.limits.max_agent_samples_per_sec
                            ),
                        }));
                    }
                    let seq = batch.seq;
                    let reply = self
                        .store
                        .submit_batch(agent_id.clone(), incarnation.clone(), batch)
                        .await
                        .map_err(|e| Status::unavailable(format!("store: {e}")))?;
                    if pending.send(Pending::Batch { seq, reply }).await.is_err() {
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
                AgentFrame::ActionResult(result) => {
                    debug!(agent = %agent_id, action = %result.action_id, "action result ignored (no actions yet)");
                }
                AgentFrame::Empty => {}
            }
        }
        Ok(())
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
async fn forward_acks(
    mut pending: mpsc::Receiver<Pending>,
    out: mpsc::Sender<Result<CollectorMessage, Status>>,
) {
    while let Some(item) = pending.recv().await {
        let message = match item {
            Pending::Batch { seq, reply } => match reply.await {
                Ok(Ok(outcome)) => Ok(CollectorMessage {
                    kind: Some(collector_message::Kind::Ack(Ack {
                        seq,
                        duplicate: outcome == BatchOutcome::Duplicate,
                        refused: Vec::new(),
                    })),
                }),
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
