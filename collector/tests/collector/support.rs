//! Shared helpers: an in-process collector on 127.0.0.1:0, agent streams, HTTP GETs.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use mailpulse_collector::ingest::auth::TokenSpec;
use mailpulse_collector::{CollectorConfig, RunningCollector};
use mailpulse_proto::v1::agent_service_client::AgentServiceClient;
use mailpulse_proto::v1::{
    Ack, AgentMessage, Batch, CollectorMessage, Hello, Histogram, Label, Sample, agent_message,
    collector_message, sample,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

pub const TOKEN_MX1: &str = "token-of-mx1-0123456789abcdef";
pub const TOKEN_MX2: &str = "token-of-mx2-0123456789abcdef";
/// A window start every test uses: the start of the hour a day before the tests started
/// (inside the windows the collector accepts: the retention period up to now).
pub static WINDOW_MS: LazyLock<i64> = LazyLock::new(|| {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    (now_ms / 3_600_000 - 24) * 3_600_000
});

/// Bounds every await of a test.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A loopback config with two agents (bound to hosts `mx1.example` and `mx2.example`) and the
/// store in `dir`.
pub fn config(dir: &Path) -> CollectorConfig {
    let mut config = CollectorConfig {
        grpc_listen_addr: "127.0.0.1:0".parse().expect("addr"),
        http_listen_addr: "127.0.0.1:0".parse().expect("addr"),
        ..CollectorConfig::default()
    };
    config
        .auth
        .tokens
        .insert("mx1".into(), TokenSpec::bound(TOKEN_MX1, &["mx1.example"]));
    config
        .auth
        .tokens
        .insert("mx2".into(), TokenSpec::bound(TOKEN_MX2, &["mx2.example"]));
    config.store.path = dir.join("collector.redb");
    config
}

/// A collector judging 1-second windows every second without a settle delay, learning for two
/// minutes, with one view (`messages_bounced` per domain) alerting every Alertmanager in
/// `alertmanagers` (the alerting test and bench).
#[allow(dead_code)]
pub fn second_windows_config(dir: &Path, alertmanagers: &[String]) -> CollectorConfig {
    #[derive(serde::Deserialize)]
    struct Views {
        views: Vec<mailpulse_collector::analyze::View>,
    }
    let mut cfg = config(dir);
    cfg.store.resolution_secs = 1;
    cfg.store.fold_interval_secs = 1;
    cfg.limits.max_agent_samples_per_sec = 1_000_000;
    cfg.limits.agent_burst_samples = 1_000_000;
    cfg.detect.interval_secs = 1;
    cfg.detect.settle_secs = 0;
    cfg.detect.history_days = 1;
    cfg.detect.learning_windows = 120;
    cfg.detect.views = toml::from_str::<Views>(
        r#"
        [[views]]
        name = "messages_bounced"
        kind = "volume"
        series = "messages_bounced"
        by = ["domain"]
        "#,
    )
    .expect("view")
    .views;
    cfg.alerting.alertmanagers = alertmanagers
        .iter()
        .map(
            |url| mailpulse_collector::alerting::notify::AlertmanagerTarget {
                timeout_secs: 2,
                ..mailpulse_collector::alerting::notify::AlertmanagerTarget::at(url.as_str())
            },
        )
        .collect();
    cfg
}

/// `messages_bounced{domain}` for the 1-second windows `seconds`: 40 a second with a little
/// noise (deterministic, from `seed`), 2 000 in the `storm` seconds.
#[allow(dead_code)]
pub fn bounce_traffic(
    domain: &str,
    seconds: std::ops::Range<i64>,
    storm: std::ops::Range<i64>,
    seed: u64,
) -> Vec<Sample> {
    let mut noise = seed;
    seconds
        .map(|s| {
            noise = noise
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let value = if storm.contains(&s) {
                2_000.0
            } else {
                40.0 + (noise >> 61) as f64
            };
            Sample {
                metric: "messages_bounced".into(),
                labels: labels(&[("domain", domain)]),
                window_start_unix_ms: s * 1000,
                window_secs: 1,
                value: Some(sample::Value::CounterDelta(value)),
            }
        })
        .collect()
}

/// Starts a collector with `config`.
pub async fn start(config: CollectorConfig) -> RunningCollector {
    within("collector start", mailpulse_collector::start(config))
        .await
        .expect("collector starts")
}

/// A plaintext client of the collector's gRPC port.
pub async fn client(addr: SocketAddr) -> AgentServiceClient<Channel> {
    within(
        "gRPC connect",
        AgentServiceClient::connect(format!("http://{addr}")),
    )
    .await
    .expect("gRPC connect")
}

/// One open `AgentService.Stream`.
#[derive(Debug)]
pub struct AgentStream {
    tx: mpsc::Sender<AgentMessage>,
    responses: Streaming<CollectorMessage>,
}

impl AgentStream {
    /// Opens a stream with `token` (None: no authorization header).
    pub async fn open(
        client: &mut AgentServiceClient<Channel>,
        token: Option<&str>,
    ) -> Result<AgentStream, Status> {
        let (tx, rx) = mpsc::channel(64);
        let mut request = Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii"),
            );
        }
        let responses = within("open stream", client.stream(request))
            .await?
            .into_inner();
        Ok(AgentStream { tx, responses })
    }

    /// Opens a stream as mx1 and says Hello from host `mx1.example`.
    pub async fn mx1(addr: SocketAddr) -> AgentStream {
        let mut client = client(addr).await;
        let mut stream = AgentStream::open(&mut client, Some(TOKEN_MX1))
            .await
            .expect("stream opens");
        stream.send(hello("mx1", "mx1.example")).await;
        stream
    }

    /// Sends one message (the stream may already be closed by the server: ignored).
    pub async fn send(&mut self, message: AgentMessage) {
        let _ = self.tx.send(message).await;
    }

    /// The next ack, or the status the server ended the stream with.
    pub async fn next_ack(&mut self) -> Result<(u64, bool), Status> {
        self.next_full_ack()
            .await
            .map(|ack| (ack.seq, ack.duplicate))
    }

    /// The next ack with its refused samples, or the status the server ended the stream with.
    pub async fn next_full_ack(&mut self) -> Result<Ack, Status> {
        next_ack_of(&mut self.responses).await
    }

    /// Sends a batch and waits for its ack.
    pub async fn batch(&mut self, seq: u64, samples: Vec<Sample>) -> Result<(u64, bool), Status> {
        self.send(batch(seq, samples)).await;
        self.next_ack().await
    }
}

async fn next_ack_of(responses: &mut Streaming<CollectorMessage>) -> Result<Ack, Status> {
    match within("next response", responses.message()).await? {
        Some(CollectorMessage {
            kind: Some(collector_message::Kind::Ack(ack)),
        }) => Ok(ack),
        Some(other) => panic!("expected an Ack, got {other:?}"),
        None => Err(Status::cancelled("stream ended without status")),
    }
}

/// Refused samples of an ack by reason, sorted.
pub fn refused(ack: &Ack) -> Vec<(String, u64)> {
    let mut refused: Vec<(String, u64)> = ack
        .refused
        .iter()
        .map(|r| (r.reason.clone(), r.samples))
        .collect();
    refused.sort();
    refused
}

/// A hostile client: sends already-encoded `AgentMessage` bytes, whatever they contain.
pub struct RawStream {
    tx: mpsc::Sender<Bytes>,
    responses: Streaming<CollectorMessage>,
}

impl RawStream {
    /// Opens a stream with `token` over a new plaintext connection.
    pub async fn open(addr: SocketAddr, token: &str) -> Result<RawStream, Status> {
        let channel = within(
            "gRPC connect",
            Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect(),
        )
        .await
        .expect("gRPC connect");
        let mut grpc = tonic::client::Grpc::new(channel);
        within("channel ready", grpc.ready())
            .await
            .expect("channel ready");
        let (tx, rx) = mpsc::channel(64);
        let mut request = Request::new(ReceiverStream::new(rx));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        let responses = within(
            "open raw stream",
            grpc.streaming(
                request,
                PathAndQuery::from_static("/mailpulse.v1.AgentService/Stream"),
                RawCodec,
            ),
        )
        .await?
        .into_inner();
        Ok(RawStream { tx, responses })
    }

    /// Sends one encoded message (ignored when the server already closed the stream).
    pub async fn send(&mut self, message: impl Into<Bytes>) {
        let _ = self.tx.send(message.into()).await;
    }

    /// The next ack, or the status the server ended the stream with.
    pub async fn next_full_ack(&mut self) -> Result<Ack, Status> {
        next_ack_of(&mut self.responses).await
    }
}

/// Requests as raw bytes, responses decoded with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = CollectorMessage;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

#[derive(Debug)]
struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug)]
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = CollectorMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CollectorMessage>, Status> {
        CollectorMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// Protobuf field `tag` of wire type LEN holding `bytes`.
pub fn len_field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// An encoded `AgentMessage{batch}` built from encoded `Sample`s.
pub fn raw_batch(seq: u64, samples: &[Vec<u8>]) -> Vec<u8> {
    let mut batch = Batch {
        seq,
        created_unix_ms: *WINDOW_MS,
        ..Batch::default()
    }
    .encode_to_vec();
    for sample in samples {
        batch.extend(len_field(3, sample));
    }
    len_field(2, &batch)
}

pub fn hello(agent_id: &str, host: &str) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            agent_id: agent_id.into(),
            host: host.into(),
            version: "0.1.0".into(),
            capabilities: vec!["postfix-logs".into()],
            ..Hello::default()
        })),
    }
}

pub fn batch(seq: u64, samples: Vec<Sample>) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Batch(Batch {
            seq,
            created_unix_ms: *WINDOW_MS,
            samples,
            ..Batch::default()
        })),
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(n, v)| Label {
            name: (*n).into(),
            value: (*v).into(),
        })
        .collect()
}

pub fn counter(metric: &str, pairs: &[(&str, &str)], delta: f64) -> Sample {
    Sample {
        metric: metric.into(),
        labels: labels(pairs),
        window_start_unix_ms: *WINDOW_MS,
        window_secs: 60,
        value: Some(sample::Value::CounterDelta(delta)),
    }
}

pub fn gauge(metric: &str, pairs: &[(&str, &str)], window_ms: i64, value: f64) -> Sample {
    Sample {
        metric: metric.into(),
        labels: labels(pairs),
        window_start_unix_ms: window_ms,
        window_secs: 60,
        value: Some(sample::Value::Gauge(value)),
    }
}

pub fn histogram(metric: &str, bounds: &[f64], counts: &[u64], sum: f64) -> Sample {
    Sample {
        metric: metric.into(),
        labels: Vec::new(),
        window_start_unix_ms: *WINDOW_MS,
        window_secs: 60,
        value: Some(sample::Value::Histogram(Histogram {
            bounds: bounds.to_vec(),
            counts: counts.to_vec(),
            sum,
        })),
    }
}

/// `GET path` over HTTP/1.1; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    within("HTTP GET", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    })
    .await
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// `/metrics` text.
pub async fn scrape(collector: &RunningCollector) -> String {
    let (status, body) = http_get(collector.http_addr(), "/metrics").await;
    assert_eq!(status, 200, "/metrics status");
    body
}

/// Value of the exposition line whose name+labels are exactly `series`.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("numeric sample"))
    })
}

/// Polls `/metrics` until `series` has `expected` (bounded).
pub async fn wait_for_value(collector: &RunningCollector, series: &str, expected: f64) {
    for _ in 0..100 {
        if value(&scrape(collector).await, series) == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = scrape(collector).await;
    panic!("expected {series} = {expected}, /metrics has:\n{text}");
}
