//! Ingest: acks, dedupe, auth, limits, validation, garbage, liveness.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn batches_are_applied_and_totals_are_exact_at_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;

    let delivered = |n| counter("messages_delivered", &[("domain", "gmail.com")], n);
    assert_eq!(
        agent.batch(1, vec![delivered(3.0)]).await.expect("ack"),
        (1, false)
    );
    assert_eq!(
        agent
            .batch(
                2,
                vec![
                    delivered(4.0),
                    counter(
                        "messages_deferred",
                        &[("host", "other-host"), ("domain", "x.test")],
                        1.0
                    ),
                    gauge("queue_messages", &[], *WINDOW_MS + 60_000, 7.0),
                    histogram("delivery_delay_seconds", &[0.5, 2.0], &[1, 2, 3], 20.0),
                ]
            )
            .await
            .expect("ack"),
        (2, false)
    );
    assert_eq!(
        agent
            .batch(
                3,
                vec![
                    // An older window does not replace the gauge.
                    gauge("queue_messages", &[], *WINDOW_MS, 99.0),
                    histogram("delivery_delay_seconds", &[0.5, 2.0], &[1, 0, 0], 0.25),
                ]
            )
            .await
            .expect("ack"),
        (3, false)
    );

    // Acked means applied: visible at once, no polling.
    let text = scrape(&collector).await;
    let expect = |series: &str, v: f64| {
        assert_eq!(value(&text, series), Some(v), "{series} in:\n{text}");
    };
    expect(
        "mailpulse_messages_delivered_total{domain=\"gmail.com\",host=\"mx1.example\"}",
        7.0,
    );
    // A host label naming a host the agent's token is not bound to is refused.
    assert_eq!(
        value(
            &text,
            "mailpulse_messages_deferred_total{domain=\"x.test\",host=\"other-host\"}"
        ),
        None,
        "{text}"
    );
    expect("mailpulse_queue_messages{host=\"mx1.example\"}", 7.0);
    expect(
        "mailpulse_delivery_delay_seconds_bucket{host=\"mx1.example\",le=\"0.5\"}",
        2.0,
    );
    expect(
        "mailpulse_delivery_delay_seconds_bucket{host=\"mx1.example\",le=\"2\"}",
        4.0,
    );
    expect(
        "mailpulse_delivery_delay_seconds_bucket{host=\"mx1.example\",le=\"+Inf\"}",
        7.0,
    );
    expect(
        "mailpulse_delivery_delay_seconds_count{host=\"mx1.example\"}",
        7.0,
    );
    expect(
        "mailpulse_delivery_delay_seconds_sum{host=\"mx1.example\"}",
        20.25,
    );
    expect(
        "mailpulse_agent_up{agent=\"mx1\",host=\"mx1.example\"}",
        1.0,
    );
    expect("mailpulse_collector_batches_applied_total", 3.0);
    expect("mailpulse_collector_samples_applied_total", 6.0);
    expect(
        "mailpulse_collector_refused_samples_total{agent=\"mx1\",reason=\"foreign_host\"}",
        1.0,
    );

    let (status, agents) = http_get(collector.http_addr(), "/api/v1/agents").await;
    assert_eq!(status, 200);
    let agents: serde_json::Value = serde_json::from_str(&agents).expect("JSON");
    assert_eq!(agents[0]["agent_id"], "mx1");
    assert_eq!(agents[0]["host"], "mx1.example");
    assert_eq!(agents[0]["applied_seq"], 3);
    assert_eq!(agents[0]["connected"], true);
    assert_eq!(agents[0]["up"], true);
    assert_eq!(agents[0]["capabilities"][0], "postfix-logs");

    let (status, body) = http_get(collector.http_addr(), "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn pipelined_batches_are_acked_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    for seq in 1..=40 {
        agent
            .send(batch(seq, vec![counter("messages_received", &[], 1.0)]))
            .await;
    }
    for seq in 1..=40 {
        assert_eq!(agent.next_ack().await.expect("ack"), (seq, false));
    }
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_messages_received_total{host=\"mx1.example\"}"
        ),
        Some(40.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn resent_seq_is_acked_as_duplicate_and_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let series = "mailpulse_messages_sent_total{host=\"mx1.example\"}";
    let sample = || vec![counter("messages_sent", &[], 5.0)];

    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert_eq!(agent.batch(1, sample()).await.expect("ack"), (1, false));
    assert_eq!(agent.batch(1, sample()).await.expect("ack"), (1, true));
    // Also across a reconnect (the outbox resend case).
    drop(agent);
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert_eq!(agent.batch(1, sample()).await.expect("ack"), (1, true));
    assert_eq!(agent.batch(2, sample()).await.expect("ack"), (2, false));

    let text = scrape(&collector).await;
    assert_eq!(value(&text, series), Some(10.0), "{text}");
    assert_eq!(
        value(&text, "mailpulse_collector_batches_duplicate_total"),
        Some(2.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn seq_going_backwards_is_not_applied_and_gaps_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert_eq!(
        agent
            .batch(5, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (5, false)
    );
    assert_eq!(
        agent
            .batch(3, vec![counter("messages_sent", &[], 100.0)])
            .await
            .expect("ack"),
        (3, true)
    );
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_messages_sent_total{host=\"mx1.example\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "mailpulse_collector_batches_missing_total"),
        Some(4.0)
    );
    let record = &collector.store().agents()[0];
    assert_eq!((record.applied_seq, record.batches_missing), (5, 4));
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn wrong_or_missing_token_is_unauthenticated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut client = client(collector.grpc_addr()).await;
    for token in [Some("token-of-nobody-0123456789abcdef"), None] {
        let status = AgentStream::open(&mut client, token)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_rejections_total{reason=\"unauthenticated\"}"
        ),
        Some(2.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn hello_for_another_agent_is_permission_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut client = client(collector.grpc_addr()).await;
    let mut stream = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("opens");
    stream.send(hello("mx2", "mx2.example")).await;
    let status = stream.next_ack().await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn batch_before_hello_is_failed_precondition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut client = client(collector.grpc_addr()).await;
    let mut stream = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("opens");
    stream
        .send(batch(1, vec![counter("messages_sent", &[], 1.0)]))
        .await;
    let status = stream.next_ack().await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_collector_batches_applied_total"),
        Some(0.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversize_message_is_refused_and_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.limits.max_message_bytes = 16 * 1024;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let big: Vec<_> = (0..2000)
        .map(|i| counter("messages_sent", &[("domain", &format!("d{i}.test"))], 1.0))
        .collect();
    let status = agent.batch(1, big).await.expect_err("refused");
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert_eq!(
        agent
            .batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (1, false)
    );
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_rejections_total{reason=\"message_too_large\"}"
        ),
        Some(1.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn samples_beyond_the_batch_limit_are_refused_and_the_rest_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.limits.max_batch_samples = 10;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let samples = (0..11)
        .map(|_| counter("messages_sent", &[], 1.0))
        .collect();
    agent.send(batch(1, samples)).await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(refused(&ack), [("too_many_samples".to_string(), 1)]);
    assert_eq!(
        value(
            &scrape(&collector).await,
            "mailpulse_messages_sent_total{host=\"mx1.example\"}"
        ),
        Some(10.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rate_limit_is_resource_exhausted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.limits.max_batch_samples = 100;
    config.limits.max_agent_samples_per_sec = 10;
    config.limits.agent_burst_samples = 100;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let samples = || {
        (0..100)
            .map(|_| counter("messages_sent", &[], 1.0))
            .collect()
    };
    assert_eq!(
        agent.batch(1, samples()).await.expect("within burst"),
        (1, false)
    );
    let status = agent.batch(2, samples()).await.expect_err("over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The bucket is per agent, not per stream: reconnecting does not refill it.
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let status = agent
        .batch(2, samples())
        .await
        .expect_err("still over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_rejections_total{reason=\"rate_limited\"}"
        ),
        Some(2.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn garbage_bytes_on_the_port_do_not_stop_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let junk: Vec<Vec<u8>> = vec![
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // HTTP/2 preface, then a frame header claiming a huge frame, then noise.
        [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(),
            &[0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
            &[0xAB; 512],
        ]
        .concat(),
        vec![0u8; 1],
    ];
    for bytes in junk {
        let mut stream = within(
            "junk connect",
            tokio::net::TcpStream::connect(collector.grpc_addr()),
        )
        .await
        .expect("connect");
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert_eq!(
        agent
            .batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (1, false)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn agent_is_down_when_its_stream_ends_or_it_goes_silent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.agent_down_after_secs = 1;
    let collector = start(config).await;
    let up = "mailpulse_agent_up{agent=\"mx1\",host=\"mx1.example\"}";

    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert!(
        agent
            .batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .is_ok()
    );
    assert_eq!(value(&scrape(&collector).await, up), Some(1.0));
    // Connected but silent for longer than agent_down_after_secs.
    wait_for_value(&collector, up, 0.0).await;
    assert!(
        agent
            .batch(2, vec![counter("messages_sent", &[], 1.0)])
            .await
            .is_ok()
    );
    assert_eq!(value(&scrape(&collector).await, up), Some(1.0));
    // Stream gone.
    drop(agent);
    wait_for_value(&collector, up, 0.0).await;
    wait_for_value(&collector, "mailpulse_collector_agents_connected", 0.0).await;
    collector.shutdown().await.expect("clean shutdown");
}
