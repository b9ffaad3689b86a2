//! Shared helpers: an in-process collector on 127.0.0.1:0, agent streams, HTTP GETs.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mailpulse_collector::{CollectorConfig, RunningCollector};
use mailpulse_proto::v1::agent_service_client::AgentServiceClient;
use mailpulse_proto::v1::{
    AgentMessage, Batch, CollectorMessage, Hello, Histogram, Label, Sample, agent_message,
    collector_message, sample,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

pub const TOKEN_MX1: &str = "token-of-mx1-0123456789abcdef";
pub const TOKEN_MX2: &str = "token-of-mx2-0123456789abcdef";
/// A window start every test uses (2026-01-01T00:00:00Z).
pub const WINDOW_MS: i64 = 1_767_225_600_000;

/// Bounds every await of a test.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A loopback config with two agents and the store in `dir`.
pub fn config(dir: &Path) -> CollectorConfig {
    let mut config = CollectorConfig {
        grpc_listen_addr: "127.0.0.1:0".parse().expect("addr"),
        http_listen_addr: "127.0.0.1:0".parse().expect("addr"),
        ..CollectorConfig::default()
    };
    config.auth.tokens.insert("mx1".into(), TOKEN_MX1.into());
    config.auth.tokens.insert("mx2".into(), TOKEN_MX2.into());
    config.store.path = dir.join("collector.redb");
    config
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
        match within("next response", self.responses.message()).await? {
            Some(CollectorMessage {
                kind: Some(collector_message::Kind::Ack(ack)),
            }) => Ok((ack.seq, ack.duplicate)),
            Some(other) => panic!("expected an Ack, got {other:?}"),
            None => Err(Status::cancelled("stream ended without status")),
        }
    }

    /// Sends a batch and waits for its ack.
    pub async fn batch(&mut self, seq: u64, samples: Vec<Sample>) -> Result<(u64, bool), Status> {
        self.send(batch(seq, samples)).await;
        self.next_ack().await
    }
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
            created_unix_ms: WINDOW_MS,
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
        window_start_unix_ms: WINDOW_MS,
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
        window_start_unix_ms: WINDOW_MS,
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
