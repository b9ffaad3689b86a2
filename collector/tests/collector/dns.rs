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

#[tokio::test]
async fn change_lists_are_bounded_in_entries_and_bytes_and_say_when_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.http.max_response_bytes = 256 * 1024;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let t = *WINDOW_MS;
    // 300 changes of one record, each answer 1 KiB.
    for seq in 1..=3u64 {
        let probes = (0..100)
            .map(|i| {
                let n = seq as i64 * 100 + i;
                let answer = format!("{n:04}{}", "x".repeat(1020));
                Probe {
                    answer_hash: format!("h-{n}"),
                    ..probe("txt", "big.test", "", t + n, &answer)
                }
            })
            .collect();
        agent.send(probes_batch(seq, probes)).await;
        let ack = agent.next_full_ack().await.expect("ack");
        assert_eq!((ack.seq, refused(&ack)), (seq, vec![]));
    }
    let get = |query: &'static str| {
        let addr = collector.http_addr();
        async move {
            within("HTTP GET", async {
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let request = format!(
                    "GET /api/v1/dns/changes{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
                    .await
                    .expect("write");
                let mut raw = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw)
                    .await
                    .expect("read");
                let text = String::from_utf8(raw).expect("UTF-8");
                let (head, body) = text.split_once("\r\n\r\n").expect("head");
                let truncated = head
                    .to_ascii_lowercase()
                    .contains("x-mailpulse-truncated: true");
                let body = if head.to_ascii_lowercase().contains("chunked") {
                    dechunked(body)
                } else {
                    body.to_string()
                };
                (body, truncated)
            })
            .await
        }
    };
    // Asking for everything gets at most max_dns_changes (200) — and at most 256 KiB.
    let (body, truncated) = get("?limit=100000").await;
    let list: Vec<Value> = serde_json::from_str(&body).expect("valid JSON even when cut");
    assert!(truncated, "a cut list says so");
    assert!(body.len() <= 256 * 1024, "{} bytes", body.len());
    assert!(
        !list.is_empty() && list.len() < 200,
        "{} entries",
        list.len()
    );
    // A small list is whole and says nothing.
    let (body, truncated) = get("?limit=5").await;
    let list: Vec<Value> = serde_json::from_str(&body).expect("JSON");
    assert_eq!((list.len(), truncated), (5, false));
    collector.shutdown().await.expect("clean shutdown");
}

fn dechunked(mut body: &str) -> String {
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
