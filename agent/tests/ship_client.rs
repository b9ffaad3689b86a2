//! The shipper against an in-process fake collector on 127.0.0.1: ordering, reconnects, resends,
//! buffering while the collector is down, checkpoints that follow acknowledgements, and the whole
//! agent (`run_agent`) shipping a log exactly once across a restart.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpulse_agent::parse::{LogFormat, Timestamp};
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::runtime::{AgentRunOptions, run_agent};
use mailpulse_agent::ship::{
    FilePosition, Outbox, OutboxConfig, Shipper, ShipperConfig, ShipperStats,
};
use mailpulse_agent::source::{Checkpoints, FileKey};
use mailpulse_agent::track::MessageEvent;
use mailpulse_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use mailpulse_proto::v1::{
    Ack, Action, AgentMessage, Batch, CollectorMessage, Hello, Refused, agent_message,
    collector_message, sample,
};
use mailpulse_sim::synth::{SynthConfig, generate};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

// ---------------------------------------------------------------------------------------------
// Fake collector

/// How the fake misbehaves.
#[derive(Debug, Clone, Default)]
struct Behavior {
    /// Seqs whose first receipt is not acknowledged.
    drop_ack_once: HashSet<u64>,
    /// Never acknowledge anything.
    never_ack: bool,
    /// Close the first stream with an error on receiving its n-th batch (before acking it).
    close_first_stream_after: Option<usize>,
    /// Send this action right after Hello.
    action: Option<Action>,
    /// Seqs answered with a permanent INVALID_ARGUMENT stream error, every time they arrive.
    refuse_permanently: HashSet<u64>,
    /// Every ack says this many samples of the batch were refused, for this reason.
    refuse_samples: Option<(String, u64)>,
}

/// What the fake saw. Acks are recorded *before* they are sent.
#[derive(Debug, Default)]
struct Record {
    hellos: Vec<Hello>,
    authorization: Vec<Option<String>>,
    /// (stream number, seq) per batch received, in arrival order.
    received: Vec<(usize, u64)>,
    acked: BTreeSet<u64>,
    /// Seqs applied (first receipt that was acked), as a real collector's dedupe would.
    applied: BTreeSet<u64>,
    /// Sums of counter deltas per metric over applied batches.
    totals: BTreeMap<String, f64>,
    action_results: Vec<(String, String, String)>,
    /// Seqs received again after the fake had acknowledged them.
    resent_after_ack: Vec<u64>,
    streams: usize,
    dropped_acks_done: HashSet<u64>,
    /// Seqs answered with a permanent error, once per receipt.
    refused_permanently: Vec<u64>,
    /// Every applied batch, for tests that look at labels.
    batches: Vec<Batch>,
    /// Sum of `agent_lines_read` over the first receipt of every seq (acknowledged or not).
    lines_seen: f64,
    seen: HashSet<u64>,
}

#[derive(Clone)]
struct FakeCollector {
    behavior: Behavior,
    record: Arc<Mutex<Record>>,
    kill: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl AgentService for FakeCollector {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let record = self.record.clone();
        let behavior = self.behavior.clone();
        let mut kill = self.kill.clone();
        let stream_no = {
            let mut r = record.lock().unwrap();
            r.streams += 1;
            r.authorization.push(auth);
            r.streams
        };
        tokio::spawn(async move {
            let mut batches_on_stream = 0usize;
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => Some(m),
                    _ = kill.wait_for(|k| *k) => None,
                };
                let Some(msg) = msg else {
                    let _ = tx
                        .send(Err(Status::unavailable("collector stopping")))
                        .await;
                    return;
                };
                let Ok(Some(msg)) = msg else { return };
                match msg.kind {
                    Some(agent_message::Kind::Hello(h)) => {
                        record.lock().unwrap().hellos.push(h);
                        if let Some(a) = &behavior.action {
                            let _ = tx
                                .send(Ok(CollectorMessage {
                                    kind: Some(collector_message::Kind::Action(a.clone())),
                                }))
                                .await;
                        }
                    }
                    Some(agent_message::Kind::ActionResult(r)) => {
                        record.lock().unwrap().action_results.push((
                            r.action_id,
                            r.status,
                            r.output,
                        ));
                    }
                    Some(agent_message::Kind::Batch(b)) => {
                        batches_on_stream += 1;
                        let ack = {
                            let mut r = record.lock().unwrap();
                            r.received.push((stream_no, b.seq));
                            if r.seen.insert(b.seq) {
                                r.lines_seen += lines_read(&b);
                            }
                            if r.acked.contains(&b.seq) {
                                r.resent_after_ack.push(b.seq);
                            }
                            if behavior.refuse_permanently.contains(&b.seq) {
                                r.refused_permanently.push(b.seq);
                                Err(Status::invalid_argument(format!(
                                    "batch {}: malformed message",
                                    b.seq
                                )))
                            } else if stream_no == 1
                                && behavior.close_first_stream_after == Some(batches_on_stream)
                            {
                                Err(Status::unavailable("closing mid-way"))
                            } else if behavior.never_ack
                                || (behavior.drop_ack_once.contains(&b.seq)
                                    && r.dropped_acks_done.insert(b.seq))
                            {
                                Ok(None)
                            } else {
                                let duplicate = !r.applied.insert(b.seq);
                                if !duplicate {
                                    apply(&mut r.totals, &b);
                                    r.batches.push(b.clone());
                                }
                                r.acked.insert(b.seq);
                                let refused = behavior
                                    .refuse_samples
                                    .iter()
                                    .map(|(reason, samples)| Refused {
                                        reason: reason.clone(),
                                        samples: *samples,
                                    })
                                    .collect();
                                Ok(Some(Ack {
                                    seq: b.seq,
                                    duplicate,
                                    refused,
                                }))
                            }
                        };
                        match ack {
                            Err(status) => {
                                let _ = tx.send(Err(status)).await;
                                return;
                            }
                            Ok(None) => {}
                            Ok(Some(ack)) => {
                                let msg = CollectorMessage {
                                    kind: Some(collector_message::Kind::Ack(ack)),
                                };
                                if tx.send(Ok(msg)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    None => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn lines_read(b: &Batch) -> f64 {
    b.samples
        .iter()
        .filter(|s| s.metric == "agent_lines_read")
        .map(|s| match s.value {
            Some(sample::Value::CounterDelta(v)) => v,
            _ => 0.0,
        })
        .sum()
}

fn apply(totals: &mut BTreeMap<String, f64>, b: &Batch) {
    for s in &b.samples {
        if let Some(sample::Value::CounterDelta(v)) = s.value {
            *totals.entry(s.metric.clone()).or_default() += v;
        }
    }
}

/// A running fake collector; `stop` kills its streams and closes the port.
struct Running {
    addr: SocketAddr,
    kill: watch::Sender<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl Running {
    async fn start(addr: SocketAddr, behavior: Behavior, record: Arc<Mutex<Record>>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind fake collector");
        let addr = listener.local_addr().unwrap();
        let (kill, kill_rx) = watch::channel(false);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let service = FakeCollector {
            behavior,
            record,
            kill: kill_rx,
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        Self {
            addr,
            kill,
            shutdown: Some(shutdown),
            server,
        }
    }

    async fn stop(mut self) {
        let _ = self.kill.send(true);
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn key() -> FileKey {
    FileKey {
        dev: 7,
        inode: 42,
        fingerprint: 0xabcdef,
        fingerprint_len: 256,
    }
}

/// Position batch `seq` covers in the test's one log file.
fn offset_of(seq: u64) -> u64 {
    seq * 100
}

fn append(outbox: &Mutex<Outbox>, appended: &Notify) -> u64 {
    let mut ob = outbox.lock().unwrap();
    let seq = ob.next_seq();
    let batch = Batch {
        created_unix_ms: 1,
        samples: vec![mailpulse_proto::v1::Sample {
            metric: "messages_delivered".into(),
            labels: vec![],
            window_start_unix_ms: 0,
            window_secs: 60,
            value: Some(sample::Value::CounterDelta(1.0)),
        }],
        ..Batch::default()
    };
    let got = ob
        .append(
            batch,
            &[FilePosition {
                file: key(),
                end_offset: offset_of(seq),
            }],
        )
        .unwrap();
    assert_eq!(got, seq);
    drop(ob);
    appended.notify_one();
    seq
}

struct Agent {
    outbox: Arc<Mutex<Outbox>>,
    appended: Arc<Notify>,
    checkpoint_path: PathBuf,
    stop: CancellationToken,
    task: JoinHandle<Result<(), mailpulse_agent::ship::ShipError>>,
    violations: Arc<Mutex<Vec<String>>>,
    watcher: JoinHandle<()>,
    stats: Arc<ShipperStats>,
}

/// Starts a shipper on an outbox in `dir` (with `preloaded` batches appended first) plus a
/// watcher that reads the checkpoint file every few milliseconds and records any moment it
/// covers a batch the collector has not acknowledged.
fn start_shipper(
    dir: &Path,
    url: String,
    preloaded: u64,
    record: Arc<Mutex<Record>>,
    tune: impl FnOnce(&mut ShipperConfig),
) -> Agent {
    let outbox = Outbox::open(&dir.join("outbox"), OutboxConfig::default()).unwrap();
    let outbox = Arc::new(Mutex::new(outbox));
    let appended = Arc::new(Notify::new());
    for _ in 0..preloaded {
        append(&outbox, &appended);
    }
    let checkpoint_path = dir.join("checkpoints.json");
    let mut cfg = ShipperConfig::new("agent-1", "mx1", url, &checkpoint_path);
    cfg.token = Some("s3cret".into());
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.connect_timeout = Duration::from_secs(2);
    tune(&mut cfg);
    let shipper = Shipper::new(
        cfg,
        outbox.clone(),
        appended.clone(),
        Checkpoints::load(&checkpoint_path).unwrap(),
    )
    .unwrap();
    let stats = shipper.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(shipper.run(stop.clone()));

    let violations = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let violations = violations.clone();
        let path = checkpoint_path.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                // Checkpoint first, then the acks: every ack behind this checkpoint is recorded.
                let ckpt = saved_offset(&path);
                let acked = record.lock().unwrap().acked.clone();
                let first_unacked = (1..).find(|s| !acked.contains(s)).unwrap();
                if ckpt >= offset_of(first_unacked) && violations.lock().unwrap().len() < 10 {
                    violations.lock().unwrap().push(format!(
                        "checkpoint {ckpt} covers unacknowledged batch {first_unacked}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    Agent {
        outbox,
        appended,
        checkpoint_path,
        stop,
        task,
        violations,
        watcher,
        stats,
    }
}

impl Agent {
    fn pending(&self) -> usize {
        self.outbox.lock().unwrap().len()
    }

    async fn finish(self) -> Vec<String> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("shipper stops within its grace period")
            .unwrap()
            .expect("shipper ends without error");
        let _ = self.watcher.await;
        self.violations.lock().unwrap().clone()
    }
}

fn saved_offset(path: &Path) -> u64 {
    Checkpoints::load(path)
        .ok()
        .and_then(|c| c.get(&key()))
        .unwrap_or(0)
}

/// Polls `cond` every 10 ms for at most `secs` seconds.
async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..secs * 100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

fn first_receipts(record: &Record) -> Vec<u64> {
    let mut seen = HashSet::new();
    record
        .received
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| seen.insert(*s))
        .collect()
}

fn assert_in_order_per_stream(record: &Record) {
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for (stream, seq) in &record.received {
        if let Some(prev) = last.insert(*stream, *seq) {
            assert!(
                seq > &prev,
                "stream {stream}: seq {seq} after {prev}, expected increasing"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_in_order_and_checkpoints_follow_acks() {
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let behavior = Behavior {
        action: Some(Action {
            id: "a-1".into(),
            kind: "FlushQueue".into(),
            params: Default::default(),
            dry_run: true,
        }),
        ..Behavior::default()
    };
    let fake = Running::start("127.0.0.1:0".parse().unwrap(), behavior, record.clone()).await;
    let agent = start_shipper(dir.path(), fake.url(), 40, record.clone(), |c| {
        c.max_in_flight = 8;
    });
    // New batches while the backlog is being sent.
    for _ in 0..40 {
        append(&agent.outbox, &agent.appended);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_until(10, "outbox drained", || agent.pending() == 0).await;
    assert_eq!(saved_offset(&agent.checkpoint_path), offset_of(80));
    let violations = agent.finish().await;
    fake.stop().await;

    let r = record.lock().unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        r.received.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        (1..=80).collect::<Vec<_>>(),
        "every batch once, in seq order"
    );
    assert_eq!(r.streams, 1);
    assert_eq!(r.hellos.len(), 1);
    assert_eq!(r.hellos[0].agent_id, "agent-1");
    assert_eq!(r.hellos[0].host, "mx1");
    assert_eq!(r.authorization, vec![Some("Bearer s3cret".to_owned())]);
    assert_eq!(
        r.action_results,
        vec![(
            "a-1".to_owned(),
            "refused".to_owned(),
            "{\"error\":\"actions are not enabled on this agent\"}".to_owned()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_stream_reconnects_and_resends_only_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let behavior = Behavior {
        drop_ack_once: [5, 17].into_iter().collect(),
        close_first_stream_after: Some(10),
        ..Behavior::default()
    };
    let fake = Running::start("127.0.0.1:0".parse().unwrap(), behavior, record.clone()).await;
    let agent = start_shipper(dir.path(), fake.url(), 30, record.clone(), |c| {
        // 17's ack never comes on the second stream: the ack timeout must recover it.
        c.ack_timeout = Duration::from_millis(500);
    });
    wait_until(15, "outbox drained", || agent.pending() == 0).await;
    let checkpoint = saved_offset(&agent.checkpoint_path);
    let violations = agent.finish().await;
    fake.stop().await;

    let r = record.lock().unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(checkpoint, offset_of(30), "checkpoint at the last batch");
    assert!(
        r.streams >= 3,
        "reconnected after the kill and the ack timeout"
    );
    assert_eq!(first_receipts(&r), (1..=30).collect::<Vec<_>>());
    assert_in_order_per_stream(&r);
    assert!(
        r.resent_after_ack.is_empty(),
        "acknowledged batches were resent: {:?}",
        r.resent_after_ack
    );
    let resent: BTreeSet<u64> = {
        let mut seen = HashSet::new();
        r.received
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| !seen.insert(*s))
            .collect()
    };
    assert!(
        resent.contains(&5) && resent.contains(&10) && resent.contains(&17),
        "the unacknowledged batches 5, 10 and 17 were resent: {resent:?}"
    );
    assert_eq!(r.applied, (1..=30).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_outbox_grows_then_drains_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    // A free port with nothing listening on it.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let agent = start_shipper(
        dir.path(),
        format!("http://{addr}"),
        0,
        record.clone(),
        |_| {},
    );
    for _ in 0..20 {
        append(&agent.outbox, &agent.appended);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        agent.pending(),
        20,
        "the outbox keeps everything while the collector is down"
    );
    assert_eq!(
        saved_offset(&agent.checkpoint_path),
        0,
        "no checkpoint without acks"
    );

    let fake = Running::start(addr, Behavior::default(), record.clone()).await;
    wait_until(10, "outbox drained after the collector came up", || {
        agent.pending() == 0
    })
    .await;
    assert_eq!(saved_offset(&agent.checkpoint_path), offset_of(20));
    fake.stop().await;

    // Down again: buffer, then the collector restarts on the same port.
    for _ in 0..10 {
        append(&agent.outbox, &agent.appended);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.pending(), 10);
    let fake = Running::start(addr, Behavior::default(), record.clone()).await;
    wait_until(10, "outbox drained after the restart", || {
        agent.pending() == 0
    })
    .await;
    let checkpoint = saved_offset(&agent.checkpoint_path);
    let violations = agent.finish().await;
    fake.stop().await;

    let r = record.lock().unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(checkpoint, offset_of(30));
    assert_eq!(first_receipts(&r), (1..=30).collect::<Vec<_>>());
    assert_in_order_per_stream(&r);
    assert!(r.resent_after_ack.is_empty());
}

/// Per kind, the events a fresh processor finds in `lines`.
fn count_events(lines: &[&str], into: &mut BTreeMap<String, f64>) {
    let mut p = LineProcessor::new(
        LogFormat::Auto,
        Timestamp::from_unix_micros(1_730_000_000_000_000),
    );
    let mut events: Vec<MessageEvent> = Vec::new();
    for line in lines {
        p.process(line, &mut events);
    }
    for ev in events {
        let metric = mailpulse_agent::aggregate::counter_metric(ev.kind);
        *into.entry(metric.to_owned()).or_default() += 1.0;
    }
}

fn totals(record: &Mutex<Record>) -> BTreeMap<String, f64> {
    record.lock().unwrap().totals.clone()
}

/// Sum of `agent_lines_read` over every batch received (applied or not).
fn lines_shipped(record: &Mutex<Record>) -> f64 {
    record
        .lock()
        .unwrap()
        .totals
        .get("agent_lines_read")
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_agent_ships_a_log_exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    let state = dir.path().join("state");
    let (text, _) = generate(SynthConfig {
        messages: 300,
        ..SynthConfig::default()
    });
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let first: String = lines[..half].iter().map(|l| format!("{l}\n")).collect();
    let second: String = lines[half..].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, &first).unwrap();

    // Run 1: the collector receives but never acknowledges; everything stays in the outbox.
    let record1 = Arc::new(Mutex::new(Record::default()));
    let fake1 = Running::start(
        "127.0.0.1:0".parse().unwrap(),
        Behavior {
            never_ack: true,
            ..Behavior::default()
        },
        record1.clone(),
    )
    .await;
    let mut opts = AgentRunOptions::new("agent-1", "mx1", vec![log.clone()], &state, fake1.url());
    opts.flush_interval_secs = 1;
    opts.format = LogFormat::Bsd;
    let (stop1, stop1_rx) = oneshot::channel::<()>();
    let agent1 = tokio::spawn(run_agent(opts.clone(), async {
        let _ = stop1_rx.await;
    }));
    wait_until(10, "run 1 read the first half", || {
        received_lines(&record1) == half as f64
    })
    .await;
    let _ = stop1.send(());
    tokio::time::timeout(Duration::from_secs(8), agent1)
        .await
        .expect("run 1 stops")
        .unwrap()
        .expect("run 1 ends cleanly");
    fake1.stop().await;
    // Nothing was acknowledged, so the checkpoint only records the file where reading began.
    let saved = Checkpoints::load(&state.join("checkpoints.json")).unwrap();
    let offsets: Vec<u64> = saved.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [0], "one file, recorded at its start offset only");

    // Run 2: more log lines; the collector acknowledges. The outbox is resent, the first half
    // is not read again, the second half is read once.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, second.as_bytes()))
        .unwrap();
    let record2 = Arc::new(Mutex::new(Record::default()));
    let fake2 = Running::start(
        "127.0.0.1:0".parse().unwrap(),
        Behavior::default(),
        record2.clone(),
    )
    .await;
    opts.collector_url = fake2.url();
    let (stop2, stop2_rx) = oneshot::channel::<()>();
    let agent2 = tokio::spawn(run_agent(opts, async {
        let _ = stop2_rx.await;
    }));
    let outbox_dir = state.join("outbox");
    wait_until(
        15,
        "run 2 shipped every line and drained the outbox",
        || lines_shipped(&record2) == lines.len() as f64 && batch_files(&outbox_dir) == 0,
    )
    .await;
    let _ = stop2.send(());
    tokio::time::timeout(Duration::from_secs(8), agent2)
        .await
        .expect("run 2 stops")
        .unwrap()
        .expect("run 2 ends cleanly");
    fake2.stop().await;

    // One processor over the whole log: the restart must not count a message retried after it
    // (qmgr repeats its `from=` line) as received again.
    let mut expected = BTreeMap::new();
    count_events(&lines, &mut expected);
    let got = totals(&record2);
    for (metric, n) in &expected {
        assert_eq!(got.get(metric), Some(n), "{metric}: 0 lost, 0 duplicated");
    }
    assert!(expected.get("messages_delivered").copied().unwrap_or(0.0) > 100.0);
    assert_eq!(
        got.get("agent_lines_read"),
        Some(&(lines.len() as f64)),
        "every line read exactly once over both runs"
    );
    let ckpt = Checkpoints::load(&state.join("checkpoints.json")).unwrap();
    let file_len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(
        ckpt.iter().map(|c| c.offset).max(),
        Some(file_len),
        "checkpoint at the end of the log once everything is acknowledged"
    );
    let r1 = record1.lock().unwrap();
    let r2 = record2.lock().unwrap();
    let run1: BTreeSet<u64> = r1.received.iter().map(|(_, s)| *s).collect();
    let run2_first = first_receipts(&r2);
    assert!(!run1.is_empty(), "run 1 sent batches");
    assert_eq!(
        run2_first
            .iter()
            .take(run1.len())
            .copied()
            .collect::<BTreeSet<_>>(),
        run1,
        "run 2 resends run 1's batches first"
    );
    assert_eq!(
        run2_first,
        (1..=run2_first.len() as u64).collect::<Vec<_>>(),
        "seqs continue across the restart without reuse"
    );
}

/// Sum of `agent_lines_read` over batches received (not necessarily applied) — the fake applies
/// nothing when it never acknowledges, so count from the raw receipts.
fn received_lines(record: &Mutex<Record>) -> f64 {
    record.lock().unwrap().lines_seen
}

fn batch_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
                .count()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Refusals, incarnations, bounded labels

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanently_refused_batch_is_set_aside_and_later_batches_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let behavior = Behavior {
        refuse_permanently: [3].into_iter().collect(),
        ..Behavior::default()
    };
    let fake = Running::start("127.0.0.1:0".parse().unwrap(), behavior, record.clone()).await;
    let agent = start_shipper(dir.path(), fake.url(), 10, record.clone(), |c| {
        c.max_in_flight = 4;
    });
    for _ in 0..10 {
        append(&agent.outbox, &agent.appended);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_until(
        15,
        "every batch after the refused one acknowledged and the outbox empty",
        || record.lock().unwrap().acked.len() == 19 && agent.pending() == 0,
    )
    .await;
    let checkpoint = saved_offset(&agent.checkpoint_path);
    let stats = agent.stats.clone();
    let _ = agent.finish().await;
    fake.stop().await;

    let r = record.lock().unwrap();
    assert_eq!(
        r.acked,
        (1..=20).filter(|s| *s != 3).collect::<BTreeSet<u64>>(),
        "every batch but the refused one delivered"
    );
    assert!(
        (1..=3).contains(&r.refused_permanently.len()),
        "the refused batch is not resent forever: sent {} times",
        r.refused_permanently.len()
    );
    assert_eq!(checkpoint, offset_of(20), "checkpoints move past it");
    let rejected: Vec<String> = std::fs::read_dir(dir.path().join("outbox/rejected"))
        .expect("rejected batches are kept aside")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(rejected, [format!("{:020}.batch", 3)], "batch 3 set aside");
    assert_eq!(
        stats
            .rejected_batches
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// A collector that refuses every batch is misconfigured, not fed bad batches: only a few are
/// set aside, the rest stay in the outbox and are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_refusing_everything_does_not_empty_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let behavior = Behavior {
        refuse_permanently: (1..=10).collect(),
        ..Behavior::default()
    };
    let fake = Running::start("127.0.0.1:0".parse().unwrap(), behavior, record.clone()).await;
    let agent = start_shipper(dir.path(), fake.url(), 10, record.clone(), |_| {});
    wait_until(10, "the shipper gave up setting batches aside", || {
        record.lock().unwrap().refused_permanently.len() >= 12
    })
    .await;
    let pending = agent.pending();
    let stats = agent.stats.clone();
    let _ = agent.finish().await;
    fake.stop().await;
    let set_aside = stats
        .rejected_batches
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        set_aside,
        u64::from(mailpulse_agent::ship::MAX_REJECTED_IN_A_ROW),
        "at most a few batches set aside in a row"
    );
    assert_eq!(
        pending,
        10 - set_aside as usize,
        "the rest stays in the outbox"
    );
}

/// The labelled counter `metric{label=value}` summed over every applied batch.
fn labelled_total(record: &Mutex<Record>, metric: &str, label: (&str, &str)) -> f64 {
    let r = record.lock().unwrap();
    r.batches
        .iter()
        .flat_map(|b| &b.samples)
        .filter(|s| s.metric == metric)
        .filter(|s| {
            s.labels
                .iter()
                .any(|l| l.name == label.0 && l.value == label.1)
        })
        .map(|s| match s.value {
            Some(sample::Value::CounterDelta(v)) => v,
            _ => 0.0,
        })
        .sum()
}

/// Starts `run_agent` on `log` with state in `state`; returns its stop switch and task.
fn spawn_agent(
    opts: AgentRunOptions,
) -> (
    oneshot::Sender<()>,
    JoinHandle<Result<(), mailpulse_agent::runtime::AgentError>>,
) {
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_agent(opts, async {
        let _ = stop_rx.await;
    }));
    (stop, task)
}

async fn stop_agent(
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), mailpulse_agent::runtime::AgentError>>,
) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(8), task)
        .await
        .expect("the agent stops")
        .unwrap()
        .expect("the agent ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_samples_are_counted_per_reason_and_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    let (text, _) = generate(SynthConfig {
        messages: 50,
        ..SynthConfig::default()
    });
    std::fs::write(&log, &text).unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let behavior = Behavior {
        refuse_samples: Some(("label_too_long".into(), 2)),
        ..Behavior::default()
    };
    let fake = Running::start("127.0.0.1:0".parse().unwrap(), behavior, record.clone()).await;
    let mut opts = AgentRunOptions::new(
        "agent-1",
        "mx1",
        vec![log.clone()],
        dir.path().join("state"),
        fake.url(),
    );
    opts.flush_interval_secs = 1;
    // An idle agent reports itself once per window: short windows report the refusals soon.
    opts.window_secs = 1;
    let (stop, task) = spawn_agent(opts);
    wait_until(15, "refused samples reported as a self-metric", || {
        labelled_total(
            &record,
            "agent_refused_samples",
            ("reason", "label_too_long"),
        ) >= 2.0
    })
    .await;
    stop_agent(stop, task).await;
    fake.stop().await;
    let r = record.lock().unwrap();
    assert!(
        r.resent_after_ack.is_empty(),
        "a batch with refused samples is not resent: {:?}",
        r.resent_after_ack
    );
}

fn is_incarnation(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incarnation_survives_restarts_and_changes_with_a_wiped_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    std::fs::write(&log, "").unwrap();
    let state = dir.path().join("state");
    let record = Arc::new(Mutex::new(Record::default()));
    let fake = Running::start(
        "127.0.0.1:0".parse().unwrap(),
        Behavior::default(),
        record.clone(),
    )
    .await;
    let opts = AgentRunOptions::new("agent-1", "mx1", vec![log.clone()], &state, fake.url());
    let mut incarnations = Vec::new();
    for life in 0..3 {
        if life == 2 {
            std::fs::remove_dir_all(&state).unwrap();
        }
        let (stop, task) = spawn_agent(opts.clone());
        wait_until(10, "Hello received", || {
            record.lock().unwrap().hellos.len() > life
        })
        .await;
        stop_agent(stop, task).await;
        incarnations.push(record.lock().unwrap().hellos[life].incarnation.clone());
    }
    fake.stop().await;
    assert!(
        incarnations.iter().all(|i| is_incarnation(i)),
        "16 random bytes in hex: {incarnations:?}"
    );
    assert_eq!(
        incarnations[0], incarnations[1],
        "the incarnation survives a restart"
    );
    assert_ne!(
        incarnations[1], incarnations[2],
        "a wiped state directory is a new incarnation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_with_a_long_user_name_gives_a_bounded_label() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    let user = "a".repeat(300) + "@example.org";
    assert_eq!(user.len(), 312);
    let other = "b".repeat(300) + "@example.org";
    let now = Timestamp::from_unix_micros(mailpulse_agent::aggregate::unix_ms() * 1000);
    let stamp = bsd_stamp(now.unix_secs);
    std::fs::write(
        &log,
        format!(
            "{stamp} mx1 postfix/smtpd[21650]: warning: unknown[203.0.113.79]: SASL LOGIN authentication failed: authentication failure, sasl_username={user}\n\
             {stamp} mx1 postfix/smtpd[21650]: warning: unknown[203.0.113.79]: SASL LOGIN authentication failed: authentication failure, sasl_username={other}\n"
        ),
    )
    .unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let fake = Running::start(
        "127.0.0.1:0".parse().unwrap(),
        Behavior::default(),
        record.clone(),
    )
    .await;
    let mut opts = AgentRunOptions::new(
        "agent-1",
        "mx1",
        vec![log.clone()],
        dir.path().join("state"),
        fake.url(),
    );
    opts.flush_interval_secs = 1;
    opts.format = LogFormat::Bsd;
    let (stop, task) = spawn_agent(opts);
    let users = |record: &Mutex<Record>| -> BTreeSet<String> {
        let r = record.lock().unwrap();
        r.batches
            .iter()
            .flat_map(|b| &b.samples)
            .filter(|s| s.metric == "sasl_auth_failures_by_user")
            .flat_map(|s| &s.labels)
            .filter(|l| l.name == "user")
            .map(|l| l.value.clone())
            .collect()
    };
    wait_until(15, "SASL failures per user shipped", || {
        users(&record).len() == 2
    })
    .await;
    stop_agent(stop, task).await;
    fake.stop().await;
    let r = record.lock().unwrap();
    let longest = r
        .batches
        .iter()
        .flat_map(|b| &b.samples)
        .flat_map(|s| &s.labels)
        .map(|l| l.value.len())
        .max()
        .unwrap_or(0);
    assert!(
        longest <= 128,
        "every label value within 128 bytes, the longest has {longest}"
    );
    drop(r);
    let users = users(&record);
    assert!(
        users.iter().all(|u| u.contains('~')),
        "long names end in a hash suffix: {users:?}"
    );
}

/// `Mon DD HH:MM:SS` (BSD syslog, space-padded day) of a Unix time, UTC.
fn bsd_stamp(unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn debug_output_never_shows_the_token() {
    let token = "s3cret-token-0123456789";
    let mut opts = AgentRunOptions::new("a", "mx1", vec![], "/tmp/x", "https://c:4770");
    opts.token = Some(token.into());
    opts.traffic.username_hash_key = Some("hash-key-secret".into());
    let mut ship = ShipperConfig::new("a", "mx1", "https://c:4770", "/tmp/x/c.json");
    ship.token = Some(token.into());
    for text in [format!("{opts:?}"), format!("{ship:?}")] {
        assert!(!text.contains(token), "token in Debug output: {text}");
        assert!(
            !text.contains("hash-key-secret"),
            "key in Debug output: {text}"
        );
    }
}

/// Offsets saved with the tracker state in `path` (one log file: one offset).
fn tracker_state_offsets(path: &Path) -> Vec<u64> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("tracker state")).expect("JSON");
    v["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect()
}

/// A crash between two saves of the tracker state leaves it behind the outbox and checkpoints:
/// the restarted agent replays the lines in between into the tracker only, and a message
/// retried afterwards is still not counted as received again. The crash is simulated by putting
/// back the state saved after the first batch once the run has gone further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replays_the_lines_since_the_saved_tracker_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("maillog");
    let state = dir.path().join("state");
    let (text, _) = generate(SynthConfig {
        messages: 300,
        ..SynthConfig::default()
    });
    let lines: Vec<&str> = text.lines().collect();
    let thirds = [lines.len() / 3, 2 * lines.len() / 3, lines.len()];
    let write = |upto: usize| {
        let body: String = lines[..upto].iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&log, body).unwrap();
    };
    let record = Arc::new(Mutex::new(Record::default()));
    let fake = Running::start(
        "127.0.0.1:0".parse().unwrap(),
        Behavior::default(),
        record.clone(),
    )
    .await;
    let mut opts = AgentRunOptions::new("agent-1", "mx1", vec![log.clone()], &state, fake.url());
    opts.flush_interval_secs = 1;
    opts.format = LogFormat::Bsd;
    opts.tracker_snapshot_interval_secs = 3600;
    let tracker_path = state.join(mailpulse_agent::runtime::TRACKER_STATE_FILE);

    write(thirds[0]);
    let (stop, task) = spawn_agent(opts.clone());
    wait_until(15, "the first third shipped", || {
        lines_shipped(&record) == thirds[0] as f64
    })
    .await;
    let early = std::fs::read(&tracker_path).expect("tracker state after the first batch");
    // The file only grows: appending keeps the agent's file identity.
    let more: String = lines[thirds[0]..thirds[1]]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, more.as_bytes()))
        .unwrap();
    wait_until(15, "the second third shipped", || {
        lines_shipped(&record) == thirds[1] as f64
    })
    .await;
    stop_agent(stop, task).await;
    std::fs::write(&tracker_path, &early).unwrap();
    let resume = Checkpoints::load(&state.join("checkpoints.json"))
        .unwrap()
        .iter()
        .map(|c| c.offset)
        .max()
        .unwrap_or(0);
    let saved = tracker_state_offsets(&tracker_path);
    assert!(
        saved.iter().all(|&o| o < resume),
        "the put-back state ({saved:?}) is behind the checkpoint ({resume}): lines to replay"
    );

    let rest: String = lines[thirds[1]..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, rest.as_bytes()))
        .unwrap();
    let (stop, task) = spawn_agent(opts);
    wait_until(15, "everything shipped", || {
        lines_shipped(&record) == lines.len() as f64 && batch_files(&state.join("outbox")) == 0
    })
    .await;
    stop_agent(stop, task).await;
    fake.stop().await;

    let mut expected = BTreeMap::new();
    count_events(&lines, &mut expected);
    let got = totals(&record);
    for (metric, n) in &expected {
        assert_eq!(
            got.get(metric),
            Some(n),
            "{metric}: exact across the restart"
        );
    }
    assert_eq!(
        got.get("agent_lines_read"),
        Some(&(lines.len() as f64)),
        "replayed lines are not counted as read again"
    );
}
