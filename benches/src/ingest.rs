//! `bench-ingest`: collector ingest throughput and batch ack latency. An in-process collector
//! (real store on disk, fsync per commit) and N simulated agents in the same process, each on
//! its own loopback gRPC connection, streaming batches (by default each agent waits for the ack
//! of its batch before sending the next; `--in-flight N` pipelines).
//!
//! ```text
//! cargo run -p mailpulse-benches --release --bin bench-ingest -- [--agents 8] [--secs 10] [--in-flight 1]
//! ```
//! Ack latency includes the first batch of every agent, which creates its 5 000 series (the
//! `max` figure).
//! Agents send pre-encoded batches (as a real agent resends its outbox: the batch is already
//! protobuf on disk), so the client side costs little more than the copy into the socket and the
//! figures are the collector's. Each agent reports the same series every window (one batch =
//! one 60 s window of `--batch-samples` series: counters, gauges and 8-bucket histograms), the
//! window advancing per batch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use mailpulse_collector::CollectorConfig;
use mailpulse_collector::ingest::auth::TokenSpec;
use mailpulse_proto::v1::{
    AgentMessage, CollectorMessage, Hello, Histogram, Label, Sample, agent_message,
    collector_message, sample,
};
use prost::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

#[derive(Debug, Parser)]
#[command(
    name = "bench-ingest",
    about = "Collector ingest throughput over loopback gRPC"
)]
struct Args {
    /// Simulated agents (one connection each).
    #[arg(long, default_value_t = 8)]
    agents: usize,
    /// Samples per batch (= series per agent).
    #[arg(long, default_value_t = 5_000)]
    batch_samples: usize,
    /// Seconds of streaming.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Batches each agent keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Group commit: most batches per store transaction.
    #[arg(long, default_value_t = 128)]
    max_commit_batches: usize,
}

/// Distinct windows per agent; batches cycle through them (window start advances by 60 s).
const WINDOWS: usize = 16;
const WINDOW_MS: i64 = 60_000;
/// The first window: an hour ago, on a whole hour (the collector accepts windows of its
/// retention period only).
fn base_ms() -> i64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    (now_ms / 3_600_000 - 1) * 3_600_000
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.agents == 0 || args.batch_samples == 0 || args.secs == 0 || args.in_flight == 0 {
        bail!("--agents, --batch-samples, --secs and --in-flight must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut config = CollectorConfig {
        grpc_listen_addr: "127.0.0.1:0".parse()?,
        http_listen_addr: "127.0.0.1:0".parse()?,
        ..CollectorConfig::default()
    };
    config.store.path = dir.path().join("collector.redb");
    config.store.max_commit_batches = args.max_commit_batches;
    config.limits.max_batch_samples = args.batch_samples;
    config.limits.max_message_bytes = 64 * 1024 * 1024;
    config.limits.max_agent_samples_per_sec = u64::MAX / 4;
    config.limits.agent_burst_samples = u64::MAX / 4;
    config.limits.max_in_flight_batches = args.in_flight;
    for agent in 0..args.agents {
        config.auth.tokens.insert(
            agent_id(agent),
            TokenSpec::bound(token(agent), &[host(agent).as_str()]),
        );
    }
    let collector = mailpulse_collector::start(config)
        .await
        .context("starting the collector")?;
    let addr = collector.grpc_addr();

    eprintln!(
        "bench-ingest: {} agents × {} samples/batch, {} in flight each, {} s",
        args.agents, args.batch_samples, args.in_flight, args.secs
    );
    let blocks: Vec<Vec<Bytes>> = (0..args.agents)
        .map(|agent| window_blocks(agent, args.batch_samples))
        .collect();
    let batch_bytes = blocks[0][0].len();

    let cpu_start = process_cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for (agent, blocks) in blocks.into_iter().enumerate() {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024));
        let channel = endpoint.connect().await.context("connecting")?;
        tasks.push(tokio::spawn(simulate_agent(
            agent,
            channel,
            blocks,
            args.in_flight,
            deadline,
        )));
    }
    let mut latencies = Vec::new();
    let mut batches = 0u64;
    for task in tasks {
        let report = task.await.context("agent task")??;
        batches += report.batches;
        latencies.extend(report.latencies);
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu_secs() - cpu_start;

    let samples = batches * args.batch_samples as u64;
    let applied =
        mailpulse_collector::stats::CollectorStats::get(&collector.stats().samples_applied);
    let commits = mailpulse_collector::stats::CollectorStats::get(&collector.stats().store_commits);
    let store_bytes = collector.store().file_bytes();
    collector.shutdown().await.context("collector shutdown")?;
    if applied != samples {
        bail!("acked {samples} samples but the store applied {applied}");
    }

    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let rate = samples as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    println!(
        "batches acked:   {batches} ({} kB each on the wire)",
        batch_bytes / 1024
    );
    println!(
        "samples applied: {samples} in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!("throughput:      {:.2} M samples/s", rate / 1e6);
    println!("ack latency:     p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    println!(
        "process CPU:     {cpu:.2} core-s = {:.2} cores busy, {:.0} ns/sample (collector + simulated agents)",
        cpu / elapsed.as_secs_f64(),
        cpu * 1e9 / samples.max(1) as f64
    );
    println!(
        "store:           {commits} commits ({:.1} batches each), file {:.1} MB",
        batches as f64 / commits.max(1) as f64,
        store_bytes as f64 / 1e6
    );
    println!(
        "targets:         ≥ 2 M samples/s {}, p99 ack < 50 ms {}",
        if rate >= 2e6 { "met" } else { "MISSED" },
        if p99 < 50.0 { "met" } else { "MISSED" }
    );
    println!("bench-ingest: ok");
    Ok(())
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, 100 ticks/s).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

struct AgentReport {
    batches: u64,
    latencies: Vec<Duration>,
}

/// Streams batches until the deadline, then waits for the outstanding acks.
async fn simulate_agent(
    agent: usize,
    channel: Channel,
    blocks: Vec<Bytes>,
    in_flight: usize,
    deadline: Instant,
) -> Result<AgentReport> {
    let (tx, rx) = mpsc::channel::<Bytes>(in_flight + 1);
    let mut request = Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", token(agent)).parse()?);
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.context("channel ready")?;
    let hello = AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            agent_id: agent_id(agent),
            host: host(agent),
            version: "bench".into(),
            ..Hello::default()
        })),
    };
    tx.send(hello.encode_to_vec().into()).await?;
    let mut responses = grpc
        .streaming(
            request,
            PathAndQuery::from_static("/mailpulse.v1.AgentService/Stream"),
            RawCodec,
        )
        .await
        .context("opening the stream")?
        .into_inner();

    let window = Arc::new(Semaphore::new(in_flight));
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let sender = {
        let window = window.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                window.acquire().await.expect("semaphore open").forget();
                seq += 1;
                let frame = batch_frame(seq, &blocks[(seq as usize - 1) % blocks.len()]);
                sent_at.lock().expect("lock").push_back(Instant::now());
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
            seq
        })
    };

    let mut latencies = Vec::new();
    let mut acked = 0u64;
    let mut sender = Some(sender);
    let mut sent_total: Option<u64> = None;
    while sent_total.is_none_or(|total| acked < total) {
        tokio::select! {
            sent = async { sender.as_mut().expect("sender running").await }, if sender.is_some() => {
                sent_total = Some(sent.context("sender task")?);
                sender = None;
            }
            message = responses.message() => {
                let message = message.map_err(|s| anyhow::anyhow!("agent {agent}: {s}"))?;
                let Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) }) = message else {
                    bail!("agent {agent}: stream ended after {acked} acks");
                };
                if ack.duplicate || ack.seq != acked + 1 {
                    bail!("agent {agent}: unexpected ack {ack:?} after {acked}");
                }
                acked += 1;
                let sent = sent_at.lock().expect("lock").pop_front().context("ack without send")?;
                latencies.push(sent.elapsed());
                window.add_permits(1);
            }
        }
    }
    Ok(AgentReport {
        batches: acked,
        latencies,
    })
}

/// `AgentMessage{batch: Batch{seq, samples…}}` around a pre-encoded block of samples.
fn batch_frame(seq: u64, samples: &[u8]) -> Bytes {
    let mut inner_len = 1 + prost::encoding::encoded_len_varint(seq);
    inner_len += samples.len();
    let mut frame = BytesMut::with_capacity(inner_len + 8);
    frame.put_u8(0x12); // field 2 (batch), length-delimited
    prost::encoding::encode_varint(inner_len as u64, &mut frame);
    frame.put_u8(0x08); // Batch.seq, varint
    prost::encoding::encode_varint(seq, &mut frame);
    frame.put_slice(samples);
    frame.freeze()
}

/// Encoded `Batch.samples` fields of one agent, one block per window.
fn window_blocks(agent: usize, series: usize) -> Vec<Bytes> {
    let base_ms = base_ms();
    (0..WINDOWS)
        .map(|w| {
            let window_start = base_ms + w as i64 * WINDOW_MS;
            let mut block = Vec::new();
            for i in 0..series {
                let sample = bench_sample(agent, i, window_start);
                prost::encoding::message::encode(3, &sample, &mut block);
            }
            Bytes::from(block)
        })
        .collect()
}

fn bench_sample(agent: usize, i: usize, window_start: i64) -> Sample {
    let label = |name: &str, value: String| Label {
        name: name.into(),
        value,
    };
    let mut labels = vec![
        label("domain", format!("d{}.example.com", i / 4)),
        label("host", host(agent)),
        label("instance", "postfix".into()),
        label("relay", format!("mx{}.relay.example.net", i % 7)),
    ];
    let value = match i % 10 {
        8 => sample::Value::Gauge((i % 100) as f64),
        9 => sample::Value::Histogram(Histogram {
            bounds: vec![0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0],
            counts: vec![3, 5, 2, 1, 0, 0, 1, 0, 0],
            sum: 400.5,
        }),
        _ => {
            labels.push(label("dsn_class", format!("{}", 2 + i % 3)));
            sample::Value::CounterDelta((1 + i % 5) as f64)
        }
    };
    let metric = match i % 10 {
        8 => "queue_messages",
        9 => "delivery_delay_seconds",
        k => [
            "messages_delivered",
            "messages_deferred",
            "messages_bounced",
        ][k % 3],
    };
    Sample {
        metric: metric.into(),
        labels,
        window_start_unix_ms: window_start,
        window_secs: 60,
        value: Some(value),
    }
}

fn agent_id(agent: usize) -> String {
    format!("bench-agent-{agent}")
}

fn host(agent: usize) -> String {
    format!("mx{agent}.bench.example")
}

fn token(agent: usize) -> String {
    format!("bench-token-{agent:04}-0123456789abcdef")
}

/// Requests are already-encoded `AgentMessage`s; responses are decoded with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = CollectorMessage;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        AckDecoder
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
struct AckDecoder;

impl Decoder for AckDecoder {
    type Item = CollectorMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CollectorMessage>, Status> {
        CollectorMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
