//! Durability: restart and crash recovery keep totals and high-water seqs.

use crate::support::*;

const SENT: &str = "mailpulse_messages_sent_total{domain=\"a.test\",host=\"mx1.example\"}";
const DELAY_COUNT: &str = "mailpulse_delivery_delay_seconds_count{host=\"mx1.example\"}";

async fn send_three_batches(collector: &mailpulse_collector::RunningCollector) {
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    for seq in 1..=3 {
        let ack = agent
            .batch(
                seq,
                vec![
                    counter("messages_sent", &[("domain", "a.test")], 2.0),
                    histogram("delivery_delay_seconds", &[1.0], &[1, 1], 3.0),
                ],
            )
            .await
            .expect("ack");
        assert_eq!(ack, (seq, false));
    }
}

async fn assert_recovered(dir: &std::path::Path) {
    let collector = start(config(dir)).await;
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, SENT),
        Some(6.0),
        "totals after reopen:\n{text}"
    );
    assert_eq!(value(&text, DELAY_COUNT), Some(6.0), "{text}");
    let record = &collector.store().agents()[0];
    assert_eq!(record.applied_seq, 3, "high-water seq after reopen");
    assert!(!record.connected, "streams do not survive a restart");

    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let resend = vec![counter("messages_sent", &[("domain", "a.test")], 2.0)];
    assert_eq!(
        agent.batch(3, resend.clone()).await.expect("ack"),
        (3, true)
    );
    assert_eq!(agent.batch(4, resend).await.expect("ack"), (4, false));
    assert_eq!(value(&scrape(&collector).await, SENT), Some(8.0));
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn reopen_after_clean_shutdown_keeps_totals_and_high_water_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    send_three_batches(&collector).await;
    collector.shutdown().await.expect("clean shutdown");
    assert_recovered(dir.path()).await;
}

#[tokio::test]
async fn reopen_after_crash_replays_acknowledged_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    // Nothing folded: everything acknowledged lives only in the write-ahead records.
    config.store.fold_interval_secs = 3600;
    let collector = start(config).await;
    send_three_batches(&collector).await;
    collector.abandon().await;
    assert_recovered(dir.path()).await;
}

#[tokio::test]
async fn reopen_after_crash_between_folds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    // Fold after every commit: totals in the tables, then more records on top.
    config.store.fold_interval_secs = 0;
    let collector = start(config).await;
    send_three_batches(&collector).await;
    collector.abandon().await;
    assert_recovered(dir.path()).await;
}

/// Set in the child process of [`kill_9_of_the_collector_loses_and_duplicates_nothing`].
const CHILD_DIR_ENV: &str = "MAILPULSE_TEST_CRASH_CHILD_DIR";
const CRASH_TEST: &str = "store::kill_9_of_the_collector_loses_and_duplicates_nothing";

/// A real `kill -9` of a collector process mid-stream: the collector runs in a child process
/// (this test binary re-executed), an agent streams with several batches in flight, the child
/// is SIGKILLed, the store is reopened. Everything acknowledged is there, once; after the agent
/// resends what was not acknowledged, the total is exact.
#[tokio::test]
async fn kill_9_of_the_collector_loses_and_duplicates_nothing() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        // Child: serve until killed (bounded, in case the parent dies first).
        let dir = std::path::PathBuf::from(dir);
        let collector = start(config(&dir)).await;
        let addr_file = dir.join("grpc_addr");
        std::fs::write(dir.join("grpc_addr.tmp"), collector.grpc_addr().to_string())
            .expect("write addr");
        std::fs::rename(dir.join("grpc_addr.tmp"), &addr_file).expect("publish addr");
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child collector");
    let addr_file = dir.path().join("grpc_addr");
    let mut addr = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            addr = Some(text.parse::<std::net::SocketAddr>().expect("address"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("child collector did not start within 10 s");
    };

    // Stream 400 batches of +1 with up to 40 in flight; SIGKILL after the 100th ack.
    const BATCHES: u64 = 400;
    let mut agent = AgentStream::mx1(addr).await;
    let mut sent = 0u64;
    let mut acked = 0u64;
    while acked < 100 {
        while sent < BATCHES && sent - acked < 40 {
            sent += 1;
            agent
                .send(batch(
                    sent,
                    vec![counter("messages_sent", &[("domain", "a.test")], 1.0)],
                ))
                .await;
        }
        let (seq, duplicate) = agent.next_ack().await.expect("ack before the kill");
        assert_eq!((seq, duplicate), (acked + 1, false));
        acked = seq;
    }
    child.kill().expect("SIGKILL the collector");
    let _ = child.wait();
    drop(agent);

    let collector = start(config(dir.path())).await;
    let applied = collector.store().agents()[0].applied_seq;
    assert!(
        (acked..=sent).contains(&applied),
        "high-water seq {applied} must cover every acked batch ({acked}) and no unsent one ({sent})"
    );
    assert_eq!(
        value(&scrape(&collector).await, SENT),
        Some(applied as f64),
        "each applied batch counted exactly once"
    );
    // The agent resends everything it has no ack for, then the rest.
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    for seq in acked + 1..=BATCHES {
        let ack = agent
            .batch(
                seq,
                vec![counter("messages_sent", &[("domain", "a.test")], 1.0)],
            )
            .await
            .expect("ack");
        assert_eq!(ack, (seq, seq <= applied), "seq {seq} after recovery");
    }
    assert_eq!(value(&scrape(&collector).await, SENT), Some(BATCHES as f64));
    eprintln!(
        "kill -9: {acked} acked, {sent} sent, {applied} durable at the kill; after resend {BATCHES} of {BATCHES}, 0 lost, 0 duplicated"
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn windows_are_stored_at_resolution_and_pruned_after_retention() {
    use mailpulse_collector::model::SeriesId;
    use mailpulse_collector::store::Aggregate;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.store.fold_interval_secs = 0;
    config.store.resolution_secs = 300;
    config.store.retention_days = 1;
    config.store.prune_interval_secs = 1;
    let collector = start(config).await;

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let stored_window = (now_ms / 300_000 - 2) * 300_000;
    let too_old = stored_window - 3 * 86_400_000;
    let at = |window_ms: i64| {
        let mut sample = counter("messages_sent", &[], 1.0);
        sample.window_start_unix_ms = window_ms;
        sample
    };
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    // Five 60 s agent windows fall into one 300 s stored window; one sample is 3 days old,
    // before the retention period: refused.
    let samples = (0..5)
        .map(|i| at(stored_window + i * 60_000))
        .chain([at(too_old)])
        .collect();
    agent.send(batch(1, samples)).await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(refused(&ack), [("window_out_of_range".to_string(), 1)]);

    let snapshot = collector.store().snapshot();
    let id = snapshot
        .series
        .iter()
        .position(|def| &*def.metric == "messages_sent")
        .map(|i| SeriesId(i as u32))
        .expect("series exists");
    let mut points = Vec::new();
    for _ in 0..100 {
        points = collector
            .store()
            .series_points(id, 0, i64::MAX)
            .expect("points readable");
        if points.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(points, vec![(stored_window, Aggregate::Counter(5.0))]);
    assert_eq!(
        value(
            &scrape(&collector).await,
            "mailpulse_messages_sent_total{host=\"mx1.example\"}"
        ),
        Some(5.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}
