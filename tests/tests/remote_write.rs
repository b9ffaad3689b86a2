//! Prometheus remote write: two collectors (in process), each with its own agent and its own
//! `collector` external label, write into one real Prometheus started with
//! `--web.enable-remote-write-receiver` (the protocol Mimir, Thanos Receive and VictoriaMetrics
//! accept). PromQL gives back each collector's exact delivered counts and the fleet's sum, as
//! the dashboards' fleet queries see it, and the collectors count their requests.

#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::time::{Duration, Instant};

use mailpulse_collector::expose::remote_write::RemoteWriteConfig;
use mailpulse_tests::prometheus::Prometheus;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_write_into_one_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("dir");
    let prom = tokio::task::spawn_blocking(move || Prometheus::start(&prom_dir, &[]))
        .await
        .expect("prometheus");
    let write_url = prom.write_url();

    // Two collectors, one agent each: mx1 delivers 120 messages, mx2 45.
    let mut collectors = Vec::new();
    for (name, host_token, delivered) in [("eu-1", "mx1", 120.0), ("eu-2", "mx2", 45.0)] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        let mut cfg = config(&d);
        cfg.detect.enabled = false;
        cfg.remote_write = Some(RemoteWriteConfig {
            url: write_url.clone(),
            interval_secs: 1,
            timeout_secs: 5,
            external_labels: [("collector".to_owned(), name.to_owned())].into(),
            bearer_token_file: None,
            tls: Default::default(),
            max_samples_per_request: 100,
        });
        let collector = start(cfg).await;
        let mut client = client(collector.grpc_addr()).await;
        let (token, host) = match host_token {
            "mx1" => (TOKEN_MX1, "mx1.example"),
            _ => (TOKEN_MX2, "mx2.example"),
        };
        let mut stream = AgentStream::open(&mut client, Some(token))
            .await
            .expect("stream");
        stream.send(hello(host_token, host)).await;
        let samples = vec![counter(
            "messages_delivered",
            &[
                ("host", host),
                ("domain", "gmail.com"),
                ("instance", "postfix"),
            ],
            delivered,
        )];
        assert_eq!(stream.batch(1, samples).await.expect("ack"), (1, false));
        collectors.push((collector, stream));
    }

    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let got = mailpulse_tests::net::poll_until(
            Duration::from_secs(60),
            Duration::from_millis(500),
            || {
                let eu1 =
                    prom.value(r#"sum(mailpulse_messages_delivered_total{collector="eu-1"})"#)?;
                let eu2 =
                    prom.value(r#"sum(mailpulse_messages_delivered_total{collector="eu-2"})"#)?;
                let fleet = prom.value("sum(mailpulse_messages_delivered_total)")?;
                (eu1 == 120.0 && eu2 == 45.0 && fleet == 165.0).then_some((eu1, eu2, fleet))
            },
        );
        let hosts =
            prom.query(r#"count by (collector, host) (mailpulse_messages_delivered_total)"#);
        (got, hosts, prom)
    })
    .await
    .expect("query");
    let (got, hosts, prom) = answer;
    assert!(
        got.is_ok(),
        "the written values never matched; by collector and host: {hosts:?}"
    );
    println!(
        "remote write: {:?} (eu-1, eu-2, fleet) queried back after {:.1} s",
        got.ok(),
        started.elapsed().as_secs_f64()
    );
    for (collector, _) in &collectors {
        let (_, metrics) = http_get(collector.http_addr(), "/metrics").await;
        let sent = metrics
            .lines()
            .find(|l| l.starts_with("mailpulse_collector_remote_write_requests_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(sent >= 1.0, "no remote write request counted:\n{metrics}");
    }
    drop(prom);
    for (collector, stream) in collectors {
        drop(stream);
        collector.shutdown().await.expect("clean shutdown");
    }
}
