//! DNS probes cannot fill the disk: (kind, target, server) records are capped per agent,
//! records, changes and anomalies expire with the retention; `?target=` reads an index, and a
//! query is bounded in changes and bytes.

use mailpulse_collector::model::Anomaly;
use mailpulse_proto::v1::{AgentMessage, Batch, Probe, agent_message};
use serde_json::Value;

use crate::support::*;
use crate::{get_json, now_ms};

const DAY_MS: i64 = 86_400_000;

fn probe(target: &str, server: &str, at: i64, answer: &str) -> Probe {
    Probe {
        kind: "txt".into(),
        target: target.into(),
        server: server.into(),
        at_unix_ms: at,
        latency_secs: 0.002,
        rcode: "noerror".into(),
        answer_hash: match answer.len() {
            0..=100 => format!("h-{answer}"),
            n => format!("h-{n}-{}", &answer[..1]),
        },
        ttl_secs: 300,
        answer: answer.into(),
    }
}

fn probes_batch(seq: u64, probes: Vec<Probe>) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Batch(Batch {
            seq,
            created_unix_ms: now_ms(),
            probes,
            ..Batch::default()
        })),
    }
}

async fn changes(collector: &mailpulse_collector::RunningCollector, query: &str) -> Vec<Value> {
    match get_json(
        collector.http_addr(),
        &format!("/api/v1/dns/changes{query}"),
    )
    .await
    {
        Value::Array(list) => list,
        other => panic!("expected an array, got {other}"),
    }
}

async fn send(agent: &mut AgentStream, seq: u64, probes: Vec<Probe>) {
    agent.send(probes_batch(seq, probes)).await;
    assert_eq!(agent.next_ack().await.expect("ack"), (seq, false));
}

#[tokio::test]
async fn dns_records_are_capped_per_agent_and_expire_with_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.store.max_dns_records_per_agent = 5;
    config.store.retention_days = 1;
    let collector = start(config).await;
    let mut mx1 = AgentStream::mx1(collector.grpc_addr()).await;
    let t = now_ms();
    // Eight records asked of eight servers: five are kept, three refused.
    let servers: Vec<String> = (0..8).map(|i| format!("ns{i}.example.net")).collect();
    send(
        &mut mx1,
        1,
        servers
            .iter()
            .map(|s| probe("example.com", s, t, "a"))
            .collect(),
    )
    .await;
    // The same eight with a new answer: only the kept five record a change.
    send(
        &mut mx1,
        2,
        servers
            .iter()
            .map(|s| probe("example.com", s, t + 1, "b"))
            .collect(),
    )
    .await;
    assert_eq!(changes(&collector, "?target=example.com").await.len(), 5);
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_collector_dns_probes_refused_total"),
        Some(6.0)
    );
    let agents = get_json(collector.http_addr(), "/api/v1/agents").await;
    assert_eq!(agents[0]["dns_probes_refused"], 6);

    // Another agent has its own cap.
    let mut client = client(collector.grpc_addr()).await;
    let mut mx2 = AgentStream::open(&mut client, Some(TOKEN_MX2))
        .await
        .expect("stream opens");
    mx2.send(hello("mx2", "mx2.example")).await;
    send(&mut mx2, 1, vec![probe("other.test", "", t, "a")]).await;
    send(&mut mx2, 2, vec![probe("other.test", "", t + 1, "b")]).await;
    assert_eq!(changes(&collector, "?target=other.test").await.len(), 1);

    // Anomalies are stored the same way and expire the same way.
    let anomaly = Anomaly {
        id: 0,
        metric: "messages_bounced".into(),
        labels: vec![("host".into(), "mx1.example".into())],
        window_start_unix_ms: t - t % 300_000,
        window_secs: 300,
        detector: "seasonal".into(),
        observed: 10.0,
        expected: 1.0,
        lower: 0.0,
        upper: 2.0,
        score: 0.99,
        direction: "above".into(),
        detail: "test".into(),
    };
    collector
        .store()
        .record_anomalies(vec![anomaly])
        .await
        .expect("anomaly stored");
    assert_eq!(collector.store().anomalies(10).expect("anomalies").len(), 1);

    // Two days later nothing was probed within the retention: records, changes and anomalies
    // are gone, and the agents' caps are free again.
    collector
        .store()
        .prune_as_of(now_ms() + 2 * DAY_MS)
        .await
        .expect("prune");
    assert!(changes(&collector, "").await.is_empty(), "changes pruned");
    assert!(
        collector
            .store()
            .anomalies(10)
            .expect("anomalies")
            .is_empty(),
        "anomalies pruned"
    );
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_collector_dns_records_pruned_total"),
        Some(6.0)
    );
    assert_eq!(
        value(&text, "mailpulse_collector_dns_changes_pruned_total"),
        Some(6.0)
    );
    assert_eq!(
        value(&text, "mailpulse_collector_anomalies_pruned_total"),
        Some(1.0)
    );
    // A pruned record is a first sighting again (no change against the forgotten answer), and
    // the three servers refused before now fit under the cap.
    send(
        &mut mx1,
        3,
        servers[3..]
            .iter()
            .map(|s| probe("example.com", s, t + 2, "c"))
            .collect(),
    )
    .await;
    send(
        &mut mx1,
        4,
        servers[3..]
            .iter()
            .map(|s| probe("example.com", s, t + 3, "d"))
            .collect(),
    )
    .await;
    assert_eq!(changes(&collector, "?target=example.com").await.len(), 5);
    assert_eq!(
        value(
            &scrape(&collector).await,
            "mailpulse_collector_dns_probes_refused_total"
        ),
        Some(6.0),
        "nothing refused after the prune"
    );
    collector.shutdown().await.expect("clean shutdown");
}

/// The stored JSON of change `id` replaced by bytes no reader can decode.
fn corrupt_change(store: &std::path::Path, id: u64) {
    let db = redb::Database::create(store).expect("open store");
    let txn = db.begin_write().expect("write");
    {
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("dns_changes");
        let mut changes = txn.open_table(table).expect("dns_changes");
        changes
            .insert(id, b"not json".as_slice())
            .expect("overwrite");
    }
    txn.commit().expect("commit");
}

#[tokio::test]
async fn a_target_query_reads_its_index_and_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.limits.max_agent_samples_per_sec = 10_000_000;
    cfg.limits.agent_burst_samples = 10_000_000;
    // The API's own cap above the store's, so the store's hard maximum is what is measured.
    cfg.http.max_dns_changes = 10_000;
    let collector = start(cfg.clone()).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let t = now_ms();
    // 1 500 changes of names under other.test, then 2 of example.com and its _dmarc.
    let mut seq = 0;
    for round in 0..3 {
        seq += 1;
        let probes = (0..500)
            .flat_map(|i| {
                let name = format!("n{i}.other.test");
                [
                    probe(&name, "", t + 2 * round, &format!("{round}-a")),
                    probe(&name, "", t + 2 * round + 1, &format!("{round}-b")),
                ]
            })
            .collect();
        send(&mut agent, seq, probes).await;
    }
    seq += 1;
    send(
        &mut agent,
        seq,
        vec![
            probe("example.com", "", t, "a"),
            probe("_dmarc.example.com", "", t, "a"),
            probe("example.com", "", t + 1, "b"),
            probe("_dmarc.example.com", "", t + 1, "b"),
        ],
    )
    .await;
    assert_eq!(changes(&collector, "?target=example.com").await.len(), 2);

    // At most 1 000 changes per query, whatever limit asks.
    let all = changes(&collector, "?limit=10000").await;
    assert_eq!(all.len(), 1_000, "hard maximum");
    assert_eq!(
        changes(&collector, "?target=other.test&limit=10000")
            .await
            .len(),
        1_000
    );

    // A target query does not read the other targets' changes: one of them unreadable does
    // not disturb it (a scan of the whole log would fail on it).
    drop(agent);
    collector.shutdown().await.expect("clean shutdown");
    corrupt_change(&cfg.store.path, 10);
    let collector = start(cfg.clone()).await;
    let mine = changes(&collector, "?target=Example.COM.").await;
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert_eq!(mine[0]["target"], "_dmarc.example.com", "newest first");
    assert_eq!(mine[1]["target"], "example.com");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_query_returns_a_bounded_number_of_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.limits.max_agent_samples_per_sec = 10_000_000;
    cfg.limits.agent_burst_samples = 10_000_000;
    let collector = start(cfg).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let t = now_ms();
    // 160 changes of two 60 KB answers each: about 19 MB stored.
    let big = |c: char| c.to_string().repeat(60_000);
    for seq in 1..=20u64 {
        let i = seq as i64;
        let probes = (0..8)
            .flat_map(|n| {
                let name = format!("big{n}.example.com");
                [
                    probe(
                        &name,
                        "",
                        t + 2 * i,
                        &big(if i % 2 == 0 { 'a' } else { 'b' }),
                    ),
                    probe(
                        &name,
                        "",
                        t + 2 * i + 1,
                        &big(if i % 2 == 0 { 'b' } else { 'a' }),
                    ),
                ]
            })
            .collect();
        send(&mut agent, seq, probes).await;
    }
    let (status, body) = http_get(
        collector.http_addr(),
        "/api/v1/dns/changes?target=example.com&limit=1000",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.len() < 10 * 1024 * 1024,
        "a query answered {} bytes",
        body.len()
    );
    let list: Vec<Value> = serde_json::from_str(&body).expect("JSON");
    assert!(
        !list.is_empty() && list.len() < 160,
        "{} changes",
        list.len()
    );
    collector.shutdown().await.expect("clean shutdown");
}
