//! One bad sample never blocks its batch: it is refused (counted per agent and reason, listed in
//! the ack) and the rest of the batch is applied.

use std::time::{SystemTime, UNIX_EPOCH};

use mailpulse_proto::v1::{Label, Sample, sample};
use prost::Message;
use tonic::Code;

use crate::support::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn refused_total(text: &str, reason: &str) -> Option<f64> {
    value(
        text,
        &format!("mailpulse_collector_refused_samples_total{{agent=\"mx1\",reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn one_over_long_label_refuses_only_its_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;

    // A failed SASL login with a 320-byte user name, among 30 good samples.
    let long_user = "u".repeat(320);
    let mut samples: Vec<Sample> = (0..30)
        .map(|i| {
            counter(
                "messages_delivered",
                &[("domain", &format!("d{i}.test"))],
                1.0,
            )
        })
        .collect();
    samples.insert(
        17,
        counter("sasl_auth_failures_by_user", &[("user", &long_user)], 1.0),
    );
    agent.send(batch(1, samples)).await;
    let ack = agent.next_full_ack().await.expect("an ack, not an error");
    assert_eq!((ack.seq, ack.duplicate), (1, false));
    assert_eq!(refused(&ack), [("label_too_long".to_string(), 1)]);

    // The next batch is not held up either.
    assert_eq!(
        agent
            .batch(
                2,
                vec![counter("messages_delivered", &[("domain", "d0.test")], 1.0)]
            )
            .await
            .expect("ack"),
        (2, false)
    );
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_collector_samples_applied_total"),
        Some(31.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "mailpulse_messages_delivered_total{domain=\"d0.test\",host=\"mx1.example\"}"
        ),
        Some(2.0)
    );
    assert_eq!(refused_total(&text, "label_too_long"), Some(1.0), "{text}");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn every_invalid_sample_is_refused_with_its_reason_and_the_rest_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let many_labels: Vec<(String, String)> = (0..17)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    let many_labels: Vec<(&str, &str)> = many_labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let long_value = "v".repeat(257);
    let mut negative_window = counter("messages_sent", &[], 1.0);
    negative_window.window_start_unix_ms = -1;
    let mut no_value = counter("messages_sent", &[], 1.0);
    no_value.value = None;
    let cases = vec![
        ("bad_metric_name", counter("Messages-Sent", &[], 1.0)),
        (
            "bad_label_name",
            counter("messages_sent", &[("Domain", "x")], 1.0),
        ),
        (
            "bad_metric_name",
            counter("collector_batches_received", &[], 1.0),
        ),
        ("bad_value", counter("messages_sent", &[], f64::NAN)),
        (
            "bad_value",
            gauge("queue_messages", &[], *WINDOW_MS, f64::INFINITY),
        ),
        ("bad_value", counter("messages_sent", &[], -1.0)),
        (
            "too_many_labels",
            counter("messages_sent", &many_labels, 1.0),
        ),
        (
            "label_too_long",
            counter("messages_sent", &[("domain", &long_value)], 1.0),
        ),
        (
            "duplicate_label",
            counter("messages_sent", &[("a", "1"), ("a", "2")], 1.0),
        ),
        (
            "bad_histogram",
            histogram("delay_seconds", &[1.0, 2.0], &[1, 2], 1.0),
        ),
        (
            "bad_histogram",
            histogram("delay_seconds", &[2.0, 1.0], &[1, 2, 3], 1.0),
        ),
        ("bad_window", negative_window),
        ("bad_value", no_value),
    ];
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    for (seq, (reason, bad)) in (1..).zip(cases) {
        // Good samples around the bad one: they are applied, the bad one is not.
        let samples = vec![
            counter("messages_sent", &[], 1.0),
            bad,
            counter("messages_sent", &[], 1.0),
        ];
        agent.send(batch(seq, samples)).await;
        let ack = agent
            .next_full_ack()
            .await
            .unwrap_or_else(|e| panic!("{reason}: expected an ack, got {e:?}"));
        assert_eq!(refused(&ack), [(reason.to_string(), 1)], "{reason}");
    }
    // A kind conflict with an existing metric is refused too.
    let ack = {
        agent
            .send(batch(
                100,
                vec![gauge("messages_sent", &[("x", "y")], *WINDOW_MS, 1.0)],
            ))
            .await;
        agent.next_full_ack().await.expect("ack")
    };
    assert_eq!(refused(&ack), [("kind_conflict".to_string(), 1)]);

    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_collector_samples_applied_total"),
        Some(26.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "mailpulse_messages_sent_total{host=\"mx1.example\"}"),
        Some(26.0)
    );
    assert_eq!(refused_total(&text, "bad_value"), Some(4.0), "{text}");
    assert_eq!(refused_total(&text, "kind_conflict"), Some(1.0), "{text}");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn windows_outside_retention_and_skew_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let now = now_ms();
    let day = 86_400_000;
    let at = |window_ms: i64| {
        let mut sample = counter("messages_sent", &[], 1.0);
        sample.window_start_unix_ms = window_ms / 60_000 * 60_000;
        sample
    };
    // Retention is 35 days, the allowed clock skew 300 s.
    let samples = vec![
        at(now - 3_600_000),
        at(now - 40 * day),
        at(now + 20 * 60_000),
        at(now + 365 * day),
        at(now - 34 * day),
    ];
    agent.send(batch(1, samples)).await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(refused(&ack), [("window_out_of_range".to_string(), 3)]);
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_messages_sent_total{host=\"mx1.example\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        refused_total(&text, "window_out_of_range"),
        Some(3.0),
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn samples_for_another_host_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let gauge_at =
        |host: &str, value: f64| gauge("queue_messages", &[("host", host)], *WINDOW_MS, value);
    agent
        .send(batch(
            1,
            vec![gauge_at("mx2.example", 99.0), gauge_at("mx1.example", 3.0)],
        ))
        .await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(refused(&ack), [("foreign_host".to_string(), 1)]);
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_queue_messages{host=\"mx1.example\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "mailpulse_queue_messages{host=\"mx2.example\"}"),
        None,
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn hello_from_a_host_the_token_is_not_bound_to_is_permission_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut client = client(collector.grpc_addr()).await;
    let mut stream = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("opens");
    stream.send(hello("mx1", "mx2.example")).await;
    let status = stream.next_ack().await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("mx2.example"), "{status:?}");
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn histograms_with_more_than_64_buckets_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let buckets = |n: usize| {
        let bounds: Vec<f64> = (1..n).map(|b| b as f64).collect();
        let mut sample = histogram("delay_seconds", &bounds, &vec![1; n], 1.0);
        sample.metric = format!("delay_{n}_seconds");
        sample
    };
    agent
        .send(batch(1, vec![buckets(64), buckets(65), buckets(100_000)]))
        .await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(refused(&ack), [("too_many_buckets".to_string(), 2)]);
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_delay_64_seconds_count{host=\"mx1.example\"}"
        ),
        Some(64.0),
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
}

/// An encoded `Sample` whose first label carries `extra` after its name and value.
fn sample_with_label_extra(metric: &str, extra: &[u8], window_ms: i64) -> Vec<u8> {
    let mut label = Label {
        name: "domain".into(),
        value: "x.test".into(),
    }
    .encode_to_vec();
    label.extend_from_slice(extra);
    let mut out = len_field(1, metric.as_bytes());
    out.extend(len_field(2, &label));
    let rest = Sample {
        window_start_unix_ms: window_ms,
        window_secs: 60,
        value: Some(sample::Value::CounterDelta(1.0)),
        ..Sample::default()
    };
    out.extend(rest.encode_to_vec());
    out
}

#[tokio::test]
async fn unknown_fields_in_samples_are_refused_not_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = RawStream::open(collector.grpc_addr(), TOKEN_MX1)
        .await
        .expect("stream");
    agent
        .send(hello("mx1", "mx1.example").encode_to_vec())
        .await;
    let good = sample_with_label_extra("messages_sent", &[], *WINDOW_MS);
    // The same series again and again, each time with different padding in an unknown field.
    for seq in 1..=3u64 {
        let padded: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let padding = format!("{seq}-{i}-{}", "p".repeat(1000));
                sample_with_label_extra(
                    "messages_sent",
                    &len_field(15, padding.as_bytes()),
                    *WINDOW_MS,
                )
            })
            .chain([good.clone()])
            .collect();
        agent.send(raw_batch(seq, &padded)).await;
        let ack = agent.next_full_ack().await.expect("ack");
        assert_eq!(
            refused(&ack),
            [("unknown_field".to_string(), 10)],
            "seq {seq}"
        );
    }
    // An unknown field on the sample itself, and a repeated metric name (padding as well).
    let mut on_sample = good.clone();
    on_sample.extend(len_field(99, b"x"));
    let mut repeated = len_field(1, b"padding_padding_padding");
    repeated.extend(&good);
    agent
        .send(raw_batch(4, &[on_sample, repeated, good.clone()]))
        .await;
    let ack = agent.next_full_ack().await.expect("ack");
    assert_eq!(
        refused(&ack),
        [
            ("malformed".to_string(), 1),
            ("unknown_field".to_string(), 1)
        ]
    );
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_messages_sent_total{domain=\"x.test\",host=\"mx1.example\"}"
        ),
        Some(4.0),
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
}
