//! Advice alerts from what agents report: a blocklisted sending IP (with the list's removal
//! page), an MX host that is published but takes nothing while its peer takes mail, and MX TTLs
//! too long to move quickly; they resolve when the facts change.

use std::time::Duration;

use mailpulse_proto::v1::{AgentMessage, Batch, Probe, Sample, agent_message, sample};
use serde_json::Value;

use crate::support::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn sample(metric: &str, pairs: &[(&str, &str)], value: sample::Value) -> Sample {
    Sample {
        metric: metric.into(),
        labels: labels(pairs),
        window_start_unix_ms: now_ms() / 1000 * 1000,
        window_secs: 1,
        value: Some(value),
    }
}

fn batch_with(seq: u64, samples: Vec<Sample>, probes: Vec<Probe>) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Batch(Batch {
            seq,
            created_unix_ms: now_ms(),
            samples,
            probes,
            ..Batch::default()
        })),
    }
}

/// mx1's inbound traffic of one second, and its listing on bl.spamcop.net (1 or 0).
fn mx1_second(listed: f64) -> Vec<Sample> {
    use sample::Value::{CounterDelta, Gauge};
    vec![
        sample("smtpd_connections", &[], CounterDelta(40.0)),
        sample("messages_received", &[], CounterDelta(38.0)),
        sample(
            "dnsbl_listed",
            &[
                ("ip", "192.0.2.7"),
                ("list", "bl.spamcop.net"),
                ("removal_url", "https://www.spamcop.net/bl.shtml"),
            ],
            Gauge(listed),
        ),
    ]
}

async fn alerts(collector: &mailpulse_collector::RunningCollector) -> Vec<Value> {
    let (status, body) = http_get(collector.http_addr(), "/api/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn find<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

#[tokio::test]
async fn listings_and_mx_routing_are_advice_until_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.store.resolution_secs = 1;
    cfg.store.fold_interval_secs = 1;
    cfg.detect.interval_secs = 1;
    cfg.detect.settle_secs = 0;
    cfg.detect.advice.lookback_secs = 3;
    let collector = start(cfg).await;
    let mut mx1 = AgentStream::mx1(collector.grpc_addr()).await;
    let mut client2 = client(collector.grpc_addr()).await;
    let mut mx2 = AgentStream::open(&mut client2, Some(TOKEN_MX2))
        .await
        .expect("mx2 stream");
    mx2.send(hello("mx2", "mx2.example")).await;
    let mx = Probe {
        kind: "mx".into(),
        target: "example.com".into(),
        server: String::new(),
        at_unix_ms: now_ms(),
        latency_secs: 0.002,
        rcode: "noerror".into(),
        answer_hash: "h1".into(),
        ttl_secs: 86_400,
        answer: "MX 10 mx1.example\nMX 10 mx2.example".into(),
    };
    mx1.send(batch_with(1, mx1_second(1.0), vec![mx])).await;
    within("ack", mx1.next_ack()).await.expect("ack");

    // mx1 takes mail every second and is listed; mx2 is connected and takes nothing.
    let mut seq = 2;
    let mut found = None;
    for _ in 0..40 {
        mx1.send(batch_with(seq, mx1_second(1.0), Vec::new())).await;
        mx1.next_ack().await.expect("ack");
        seq += 1;
        let now = alerts(&collector).await;
        if ["dnsbl_listed", "mx_host_failing", "mx_ttl_long"]
            .iter()
            .all(|n| find(&now, n).is_some_and(|a| a["state"] == "firing"))
        {
            found = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let Some(now) = found else {
        panic!("advice never fired: {:#?}", alerts(&collector).await);
    };
    let listed = find(&now, "dnsbl_listed").expect("listed");
    assert_eq!(listed["labels"]["ip"], "192.0.2.7", "{listed}");
    assert_eq!(listed["labels"]["list"], "bl.spamcop.net", "{listed}");
    assert_eq!(listed["labels"]["host"], "mx1.example", "{listed}");
    assert_eq!(listed["labels"]["severity"], "warning", "{listed}");
    let text = listed["annotations"]["recommendation"]
        .as_str()
        .unwrap_or("");
    assert!(
        text.contains("https://www.spamcop.net/bl.shtml") && text.contains("switch-ip-pool"),
        "{listed}"
    );
    assert!(
        listed["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/runbooks/dnsbl_listed.md")),
        "{listed}"
    );
    let failing = find(&now, "mx_host_failing").expect("failing");
    assert_eq!(failing["labels"]["host"], "mx2.example", "{failing}");
    assert_eq!(failing["labels"]["mx"], "mx2.example", "{failing}");
    assert_eq!(failing["labels"]["domain"], "example.com", "{failing}");
    assert!(
        failing["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("took no connection")),
        "{failing}"
    );
    assert!(
        find(&now, "mx_unbalanced").is_none(),
        "a failing host is not also an imbalance"
    );
    let ttl = find(&now, "mx_ttl_long").expect("ttl");
    assert_eq!(ttl["labels"]["severity"], "info", "{ttl}");
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_alerts{alertname=\"dnsbl_listed\",severity=\"warning\",state=\"firing\"}"
        ),
        Some(1.0),
        "{text}"
    );

    // mx2 takes its share and the listing is gone: both resolve.
    let mut resolved = false;
    for _ in 0..40 {
        mx1.send(batch_with(seq, mx1_second(0.0), Vec::new())).await;
        mx1.next_ack().await.expect("ack");
        let mx2_second = vec![
            sample("smtpd_connections", &[], sample::Value::CounterDelta(40.0)),
            sample("messages_received", &[], sample::Value::CounterDelta(39.0)),
        ];
        mx2.send(batch_with(seq, mx2_second, Vec::new())).await;
        mx2.next_ack().await.expect("ack");
        seq += 1;
        let now = alerts(&collector).await;
        if ["dnsbl_listed", "mx_host_failing"]
            .iter()
            .all(|n| find(&now, n).is_some_and(|a| a["state"] == "resolved"))
        {
            resolved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        resolved,
        "advice never resolved: {:#?}",
        alerts(&collector).await
    );
    collector.shutdown().await.expect("clean shutdown");
}
