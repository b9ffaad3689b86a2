//! A reinstalled agent (state wiped, seq back at 1) is a new incarnation: its batches are
//! applied, not acknowledged as duplicates; resends within an incarnation still are.

use crate::support::*;
use crate::{get_json, hello_with, open_with};

const SENT: &str = "mailpulse_messages_sent_total{domain=\"a.test\",host=\"mx1.example\"}";

fn plus_one() -> Vec<mailpulse_proto::v1::Sample> {
    vec![counter("messages_sent", &[("domain", "a.test")], 1.0)]
}

#[tokio::test]
async fn a_new_incarnation_starts_its_own_high_water_mark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let addr = collector.grpc_addr();

    let mut first = open_with(addr, TOKEN_MX1, hello_with("mx1", "mx1.example", "inc-a")).await;
    for seq in 1..=5 {
        assert_eq!(
            first.batch(seq, plus_one()).await.expect("ack"),
            (seq, false)
        );
    }
    assert_eq!(first.batch(5, plus_one()).await.expect("ack"), (5, true));
    drop(first);

    // The state directory was wiped: a new incarnation counts from 1 again.
    let mut second = open_with(addr, TOKEN_MX1, hello_with("mx1", "mx1.example", "inc-b")).await;
    for seq in 1..=3 {
        assert_eq!(
            second.batch(seq, plus_one()).await.expect("ack"),
            (seq, false),
            "seq {seq} of the new incarnation is new data"
        );
    }
    assert_eq!(
        second.batch(2, plus_one()).await.expect("ack"),
        (2, true),
        "a resend within the incarnation is a duplicate"
    );
    wait_for_value(&collector, SENT, 8.0).await;
    let agents = get_json(collector.http_addr(), "/api/v1/agents").await;
    assert_eq!(agents[0]["incarnation"], "inc-b");
    assert_eq!(agents[0]["applied_seq"], 3);
    assert_eq!(agents[0]["earlier_incarnations"][0]["incarnation"], "inc-a");
    assert_eq!(agents[0]["earlier_incarnations"][0]["applied_seq"], 5);
    assert_eq!(agents[0]["batches_duplicate"], 2);
    drop(second);

    // Agents without an incarnation (older versions) keep one mark, as before.
    let mut old = open_with(addr, TOKEN_MX2, hello_with("mx2", "mx2.example", "")).await;
    let sent_mx2 = |n| counter("messages_sent", &[("domain", "a.test")], n);
    assert_eq!(
        old.batch(1, vec![sent_mx2(1.0)]).await.expect("ack"),
        (1, false)
    );
    assert_eq!(
        old.batch(1, vec![sent_mx2(1.0)]).await.expect("ack"),
        (1, true)
    );
    drop(old);

    // The marks are durable: after a restart the resend is still a duplicate.
    collector.shutdown().await.expect("clean shutdown");
    let collector = start(config(dir.path())).await;
    let mut second = open_with(
        collector.grpc_addr(),
        TOKEN_MX1,
        hello_with("mx1", "mx1.example", "inc-b"),
    )
    .await;
    assert_eq!(second.batch(3, plus_one()).await.expect("ack"), (3, true));
    assert_eq!(second.batch(4, plus_one()).await.expect("ack"), (4, false));
    let mut mx2 = open_with(
        collector.grpc_addr(),
        TOKEN_MX2,
        hello_with("mx2", "mx2.example", ""),
    )
    .await;
    assert_eq!(
        mx2.batch(1, vec![sent_mx2(1.0)]).await.expect("ack"),
        (1, true)
    );
    wait_for_value(&collector, SENT, 9.0).await;
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_overlong_incarnation_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let long = "x".repeat(1000);
    let mut agent = open_with(
        collector.grpc_addr(),
        TOKEN_MX1,
        hello_with("mx1", "mx1.example", &long),
    )
    .await;
    let status = agent.batch(1, plus_one()).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    collector.shutdown().await.expect("clean shutdown");
}
