//! The detectors over stored series: three days of a daily-seasonal counter arrive at once
//! (as after an outage), with a bounce storm in one recent window; the collector exposes the
//! band of the latest window at /metrics and stores the storm as an anomaly with its evidence.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpulse_proto::v1::{Sample, sample};
use serde_json::Value;

use crate::support::*;

const STEP_MS: i64 = 60_000;

#[derive(serde::Deserialize)]
struct Views {
    views: Vec<mailpulse_collector::analyze::View>,
}

fn bounced(window_ms: i64, value: f64) -> Sample {
    Sample {
        metric: "messages_bounced".into(),
        labels: labels(&[("domain", "gmail.com")]),
        window_start_unix_ms: window_ms,
        window_secs: 60,
        value: Some(sample::Value::CounterDelta(value)),
    }
}

#[tokio::test]
async fn a_storm_in_seasonal_history_is_stored_and_the_band_exposed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.store.resolution_secs = 60;
    cfg.store.fold_interval_secs = 1;
    // The first round runs at once (no data yet); the next one sees the whole backlog folded.
    cfg.detect.interval_secs = 4;
    cfg.detect.history_days = 3;
    cfg.detect.settle_secs = 0;
    cfg.detect.views = vec![
        toml::from_str::<Views>(
            r#"
            [[views]]
            name = "messages_bounced"
            kind = "volume"
            series = "messages_bounced"
            by = ["domain"]
            "#,
        )
        .expect("view")
        .views
        .remove(0),
    ];
    let collector = start(cfg).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let current = now_ms.div_euclid(STEP_MS) * STEP_MS;
    let first = current - 3 * 86_400_000 + STEP_MS;
    let storm = current - 10 * STEP_MS;
    // A daily cycle of 20–60 bounces per minute with deterministic noise; 600 in the storm.
    let mut samples = Vec::new();
    let mut window = first;
    let mut noise: u64 = 7;
    while window < current {
        noise = noise
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let phase = (window % 86_400_000) as f64 / 86_400_000.0 * std::f64::consts::TAU;
        let value = if window == storm {
            600.0
        } else {
            (40.0 + 20.0 * phase.sin() + (noise >> 61) as f64).round()
        };
        samples.push(bounced(window, value));
        window += STEP_MS;
    }
    for (seq, chunk) in (1..).zip(samples.chunks(1_500)) {
        assert_eq!(
            agent.batch(seq, chunk.to_vec()).await.expect("ack"),
            (seq, false)
        );
    }

    // The storm is stored with its evidence.
    let mut found: Option<Value> = None;
    for _ in 0..120 {
        let (status, body) = http_get(collector.http_addr(), "/api/v1/anomalies?limit=50").await;
        assert_eq!(status, 200, "{body}");
        let list: Vec<Value> = serde_json::from_str(&body).expect("JSON");
        found = list
            .into_iter()
            .find(|a| a["window_start_unix_ms"] == storm && a["metric"] == "messages_bounced");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let storm_anomaly = found.expect("the storm window is stored as an anomaly");
    assert_eq!(storm_anomaly["observed"], 600.0);
    assert_eq!(storm_anomaly["direction"], "above");
    assert!(storm_anomaly["score"].as_f64().is_some_and(|s| s >= 0.95));
    assert!(
        storm_anomaly["expected"]
            .as_f64()
            .is_some_and(|e| e < 100.0)
    );
    assert!(
        storm_anomaly["labels"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p[0] == "domain" && p[1] == "gmail.com"))
    );
    // Few false alarms over three days of clean data (4 300 windows).
    let (_, body) = http_get(collector.http_addr(), "/api/v1/anomalies?limit=10000").await;
    let all: Vec<Value> = serde_json::from_str(&body).expect("JSON");
    assert!(all.len() <= 20, "{} anomalies in clean history", all.len());

    // The band of the latest window is at /metrics.
    let text = scrape(&collector).await;
    for suffix in ["expected", "lower", "upper", "anomaly_score"] {
        let name = format!("mailpulse_messages_bounced_{suffix}{{");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&name) && l.contains("domain=\"gmail.com\"")),
            "{name} missing:\n{text}"
        );
    }
    collector.shutdown().await.expect("clean shutdown");
}
