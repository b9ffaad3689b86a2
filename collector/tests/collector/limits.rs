//! Per-agent limits counted in bytes as well as items: probes count against the sample rate,
//! encoded bytes against a byte rate, and one agent has at most `max_streams_per_agent`
//! streams open.

use mailpulse_proto::v1::{AgentMessage, Batch, Probe, agent_message};
use tonic::Code;

use crate::support::*;

fn probes_batch(seq: u64, probes: usize) -> AgentMessage {
    let probes = (0..probes)
        .map(|i| Probe {
            kind: "txt".into(),
            target: format!("d{i}.example.com"),
            at_unix_ms: *WINDOW_MS,
            rcode: "noerror".into(),
            answer_hash: "h".into(),
            answer: "v=spf1 -all".into(),
            ..Probe::default()
        })
        .collect();
    AgentMessage {
        kind: Some(agent_message::Kind::Batch(Batch {
            seq,
            created_unix_ms: *WINDOW_MS,
            probes,
            ..Batch::default()
        })),
    }
}

#[tokio::test]
async fn probes_count_against_the_rate_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.limits.max_batch_samples = 100;
    config.limits.max_agent_samples_per_sec = 10;
    config.limits.agent_burst_samples = 100;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    agent.send(probes_batch(1, 100)).await;
    assert_eq!(agent.next_ack().await.expect("within burst"), (1, false));
    agent.send(probes_batch(2, 100)).await;
    let status = agent.next_ack().await.expect_err("over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bytes_count_against_their_own_rate_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.limits.max_message_bytes = 64 * 1024;
    config.limits.max_agent_bytes_per_sec = 1024;
    config.limits.agent_burst_bytes = 64 * 1024;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    // Few samples, many bytes: long (but valid) label values.
    let big = |i: usize| {
        (0..150)
            .map(|j| {
                counter(
                    "messages_sent",
                    &[("domain", &format!("{i}-{j}-{}", "d".repeat(200)))],
                    1.0,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        agent.batch(1, big(1)).await.expect("within burst"),
        (1, false)
    );
    let status = agent
        .batch(2, big(2))
        .await
        .expect_err("over the byte rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("bytes/s"), "{status:?}");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_agent_has_at_most_four_streams_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut open = Vec::new();
    for seq in 1..=4 {
        let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
        assert_eq!(
            agent
                .batch(seq, vec![counter("messages_sent", &[], 1.0)])
                .await
                .expect("ack"),
            (seq, false)
        );
        open.push(agent);
    }
    // The fifth stream of the same agent, on a new connection, is refused.
    let mut fifth_client = client(collector.grpc_addr()).await;
    let fifth = match AgentStream::open(&mut fifth_client, Some(TOKEN_MX1)).await {
        Err(status) => status,
        Ok(mut stream) => {
            stream.send(hello("mx1", "mx1.example")).await;
            stream.next_ack().await.expect_err("refused")
        }
    };
    assert_eq!(fifth.code(), Code::ResourceExhausted, "{fifth:?}");
    // Another agent is not affected, and a closed stream frees its slot.
    let mut mx2_client = client(collector.grpc_addr()).await;
    let mut mx2 = AgentStream::open(&mut mx2_client, Some(TOKEN_MX2))
        .await
        .expect("mx2 opens");
    mx2.send(hello("mx2", "mx2.example")).await;
    assert!(
        mx2.batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .is_ok()
    );
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
        if agent
            .batch(5, vec![counter("messages_sent", &[], 1.0)])
            .await
            .is_ok()
        {
            again = Some(agent);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a slot frees when a stream closes");
    let text = scrape(&collector).await;
    let refused = value(
        &text,
        "mailpulse_collector_rejections_total{reason=\"too_many_streams\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    collector.shutdown().await.expect("clean shutdown");
}
