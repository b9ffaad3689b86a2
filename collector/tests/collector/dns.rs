//! DNS probe answers are versioned per (kind, target, server); changes are listed at
//! `/api/v1/dns/changes`, exactly once, also across a collector restart.

use mailpulse_proto::v1::{AgentMessage, Batch, Probe, agent_message};
use serde_json::Value;

use crate::support::*;

fn probe(kind: &str, target: &str, server: &str, at: i64, answer: &str) -> Probe {
    Probe {
        kind: kind.into(),
        target: target.into(),
        server: server.into(),
        at_unix_ms: at,
        latency_secs: 0.002,
        rcode: "noerror".into(),
        answer_hash: format!("h-{answer}"),
        ttl_secs: 300,
        answer: answer.into(),
    }
}

fn probes_batch(seq: u64, probes: Vec<Probe>) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Batch(Batch {
            seq,
            created_unix_ms: *WINDOW_MS,
            probes,
            ..Batch::default()
        })),
    }
}

async fn changes(collector: &mailpulse_collector::RunningCollector, query: &str) -> Vec<Value> {
    let (status, body) = http_get(
        collector.http_addr(),
        &format!("/api/v1/dns/changes{query}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON array")
}

#[tokio::test]
async fn answer_changes_are_recorded_once_per_server_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let t = *WINDOW_MS;
    let ns1 = "ns1.example.com@192.0.2.53:53";
    let ns2 = "ns2.example.com@192.0.2.54:53";
    let batches = vec![
        // First sightings: no change.
        vec![
            probe("txt", "example.com", ns1, t, "v=spf1 -all"),
            probe("txt", "example.com", ns2, t, "v=spf1 -all"),
            probe("mx", "example.com", ns1, t, "10 mx.example.com"),
        ],
        // Same answers again: no change.
        vec![probe("txt", "example.com", ns1, t + 60_000, "v=spf1 -all")],
        // ns1 sees the new record first, ns2 a minute later; mx unchanged.
        vec![
            probe(
                "txt",
                "example.com",
                ns1,
                t + 120_000,
                "v=spf1 ip4:192.0.2.0/24 -all",
            ),
            probe("txt", "example.com", ns2, t + 120_000, "v=spf1 -all"),
            probe("mx", "example.com", ns1, t + 120_000, "10 mx.example.com"),
        ],
        vec![probe(
            "txt",
            "example.com",
            ns2,
            t + 180_000,
            "v=spf1 ip4:192.0.2.0/24 -all",
        )],
        // An older probe arriving late changes nothing.
        vec![probe("txt", "example.com", ns1, t + 30_000, "v=spf1 -all")],
        // Another domain.
        vec![
            probe("txt", "other.test", "", t, "a"),
            probe("txt", "other.test", "", t + 1, "b"),
        ],
    ];
    for (seq, probes) in (1..).zip(batches) {
        agent.send(probes_batch(seq, probes)).await;
        assert_eq!(agent.next_ack().await.expect("ack"), (seq, false));
    }
    // A resend of batch 3 is a duplicate: no second change.
    agent
        .send(probes_batch(
            3,
            vec![probe(
                "txt",
                "example.com",
                ns1,
                t + 120_000,
                "v=spf1 ip4:192.0.2.0/24 -all",
            )],
        ))
        .await;
    assert_eq!(agent.next_ack().await.expect("ack"), (3, true));

    let all = changes(&collector, "?target=example.com").await;
    assert_eq!(all.len(), 2, "{all:#?}");
    // Newest first: ns2 caught up after ns1 saw it first.
    assert_eq!(all[0]["server"], ns2);
    assert_eq!(all[1]["server"], ns1);
    assert_eq!(all[1]["at_unix_ms"], t + 120_000);
    assert_eq!(all[1]["old_answer"], "v=spf1 -all");
    assert_eq!(all[1]["old_since_unix_ms"], t);
    assert_eq!(all[1]["new_answer"], "v=spf1 ip4:192.0.2.0/24 -all");
    assert_eq!(all[1]["agent_id"], "mx1");
    // Sub-names match their domain; other domains do not; limits apply.
    assert_eq!(changes(&collector, "?target=other.test").await.len(), 1);
    assert_eq!(changes(&collector, "").await.len(), 3);
    assert_eq!(changes(&collector, "?limit=1").await.len(), 1);
    assert_eq!(changes(&collector, "?target=com").await.len(), 2);

    // An invalid probe is refused on its own, the rest of its batch applied.
    agent
        .send(probes_batch(
            7,
            vec![
                probe("", "x", "", t, "a"),
                probe("txt", "other.test", "", t + 2, "c"),
            ],
        ))
        .await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(refused(&ack), [("bad_probe".to_string(), 1)], "empty kind");

    collector.shutdown().await.expect("clean shutdown");
    let collector = start(config(dir.path())).await;
    assert_eq!(changes(&collector, "").await.len(), 4, "durable");
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    agent
        .send(probes_batch(
            8,
            vec![probe("txt", "other.test", "", t + 3, "d")],
        ))
        .await;
    assert_eq!(agent.next_ack().await.expect("ack"), (8, false));
    let other = changes(&collector, "?target=other.test").await;
    assert_eq!(other.len(), 3);
    assert_eq!(other[0]["old_answer"], "c", "state kept across the restart");
    collector.shutdown().await.expect("clean shutdown");
}
