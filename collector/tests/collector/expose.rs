//! Exposition: promtool-clean /metrics, OTLP export to an in-process receiver.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpulse_collector::OtlpConfig;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::support::*;

async fn populated_collector(
    config: mailpulse_collector::CollectorConfig,
) -> mailpulse_collector::RunningCollector {
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let ack = agent
        .batch(
            1,
            vec![
                counter(
                    "messages_delivered",
                    &[("domain", "gmail.com"), ("instance", "postfix")],
                    41.0,
                ),
                counter(
                    "messages_bounced",
                    &[("dsn_class", "5"), ("reason", "say \"no\"\\n")],
                    2.0,
                ),
                gauge("queue_messages", &[("queue", "deferred")], *WINDOW_MS, 12.0),
                histogram(
                    "delivery_delay_seconds",
                    &[0.1, 1.0, 10.0],
                    &[5, 3, 2, 1],
                    25.5,
                ),
            ],
        )
        .await
        .expect("ack");
    assert_eq!(ack, (1, false));
    collector
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = populated_collector(config(dir.path())).await;
    let text = scrape(&collector).await;
    collector.shutdown().await.expect("clean shutdown");

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) => {
            eprintln!("NOTE: promtool not on PATH (Debian package `prometheus`); check skipped");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[derive(Default, Clone)]
struct Receiver {
    requests: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.requests
            .lock()
            .expect("lock")
            .push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tokio::test]
async fn otlp_export_reaches_a_receiver_with_the_same_totals() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver_addr = listener.local_addr().expect("addr");
    let receiver = Receiver::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.otlp = Some(OtlpConfig {
        endpoint: format!("http://{receiver_addr}"),
        interval_secs: 1,
        timeout_secs: 5,
        max_request_bytes: mailpulse_collector::expose::otlp::DEFAULT_MAX_REQUEST_BYTES,
    });
    let collector = populated_collector(config).await;

    let mut request = None;
    for _ in 0..100 {
        if let Some(r) = receiver.requests.lock().expect("lock").last().cloned() {
            request = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request = request.expect("an OTLP export within 10 s");
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("metric {name} in {metrics:#?}"))
    };
    match &find("mailpulse_messages_delivered").data {
        Some(metric::Data::Sum(sum)) => {
            assert!(sum.is_monotonic);
            let point = &sum.data_points[0];
            assert_eq!(point.value, Some(number_data_point::Value::AsDouble(41.0)));
            let attrs: Vec<&str> = point.attributes.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(attrs, ["domain", "host", "instance"]);
        }
        other => panic!("expected a Sum, got {other:?}"),
    }
    match &find("mailpulse_queue_messages").data {
        Some(metric::Data::Gauge(gauge)) => assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(12.0))
        ),
        other => panic!("expected a Gauge, got {other:?}"),
    }
    match &find("mailpulse_delivery_delay_seconds").data {
        Some(metric::Data::Histogram(histogram)) => {
            let point = &histogram.data_points[0];
            assert_eq!(point.explicit_bounds, vec![0.1, 1.0, 10.0]);
            assert_eq!(point.bucket_counts, vec![5, 3, 2, 1]);
            assert_eq!((point.count, point.sum), (11, Some(25.5)));
        }
        other => panic!("expected a Histogram, got {other:?}"),
    }
    let text = scrape(&collector).await;
    assert!(
        value(
            &text,
            "mailpulse_collector_otlp_exports_total{result=\"ok\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
    server.abort();
}

#[tokio::test]
async fn gauges_a_host_stopped_reporting_are_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start(config(dir.path())).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let metric = "queue_deferred_domain_messages";
    let hour = 3_600_000;
    let batches = [
        vec![
            gauge(metric, &[("domain", "left.example")], *WINDOW_MS, 5.0),
            gauge(metric, &[("domain", "stays.example")], *WINDOW_MS, 7.0),
        ],
        // Ten minutes later: still within the default 15 minutes.
        vec![gauge(
            metric,
            &[("domain", "stays.example")],
            *WINDOW_MS + hour / 6,
            8.0,
        )],
    ];
    for (seq, samples) in (1..).zip(batches) {
        assert_eq!(agent.batch(seq, samples).await.expect("ack"), (seq, false));
    }
    let lines = |text: &str, domain: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("mailpulse_{metric}{{")))
            .filter(|l| l.contains(&format!("domain=\"{domain}\"")))
            .map(|l| l.rsplit_once(' ').expect("value").1.to_owned())
            .collect::<Vec<_>>()
    };
    let text = scrape(&collector).await;
    assert_eq!(
        lines(&text, "left.example"),
        ["5"],
        "not stale yet:\n{text}"
    );
    assert_eq!(lines(&text, "stays.example"), ["8"]);
    // An hour later the domain that left is no longer exposed; the other one is.
    let later = vec![gauge(
        metric,
        &[("domain", "stays.example")],
        *WINDOW_MS + hour,
        0.0,
    )];
    assert_eq!(agent.batch(3, later).await.expect("ack"), (3, false));
    let text = scrape(&collector).await;
    assert!(lines(&text, "left.example").is_empty(), "stale:\n{text}");
    assert_eq!(lines(&text, "stays.example"), ["0"]);
    collector.shutdown().await.expect("clean shutdown");
}

/// An OTLP receiver that records the encoded size of every request (tonic's default limit of
/// 4 MiB per message, as most receivers).
async fn recording_receiver() -> (std::net::SocketAddr, Receiver, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let receiver = Receiver::default();
    let server = tokio::spawn({
        let receiver = receiver.clone();
        async move {
            let _ = tonic::transport::Server::builder()
                .add_service(MetricsServiceServer::new(receiver))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        }
    });
    (addr, receiver, server)
}

/// The time of the first data point: every point of one export has it.
fn export_time(request: &ExportMetricsServiceRequest) -> u64 {
    match request.resource_metrics[0].scope_metrics[0]
        .metrics
        .first()
        .and_then(|m| m.data.as_ref())
    {
        Some(metric::Data::Sum(s)) => s.data_points.first().map_or(0, |p| p.time_unix_nano),
        Some(metric::Data::Gauge(g)) => g.data_points.first().map_or(0, |p| p.time_unix_nano),
        Some(metric::Data::Histogram(h)) => h.data_points.first().map_or(0, |p| p.time_unix_nano),
        _ => 0,
    }
}

fn data_points(request: &ExportMetricsServiceRequest) -> usize {
    request.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn an_otlp_export_over_4_mib_arrives_in_requests_the_receiver_accepts() {
    use prost::Message;

    let (receiver_addr, receiver, server) = recording_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.otlp = Some(OtlpConfig {
        endpoint: format!("http://{receiver_addr}"),
        interval_secs: 1,
        timeout_secs: 10,
        max_request_bytes: mailpulse_collector::expose::otlp::DEFAULT_MAX_REQUEST_BYTES,
    });
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    // 24 000 series with long label values: about 6 MB of data points in one export.
    const SERIES: usize = 24_000;
    for (seq, chunk) in (1..).zip((0..SERIES).collect::<Vec<_>>().chunks(6_000)) {
        let samples = chunk
            .iter()
            .map(|i| {
                counter(
                    "messages_delivered",
                    &[("domain", &format!("{i:06}.{}", "d".repeat(200)))],
                    1.0,
                )
            })
            .collect();
        assert_eq!(agent.batch(seq, samples).await.expect("ack"), (seq, false));
    }
    // One whole export: the requests whose points carry the same time; it has every series.
    let mut sizes = Vec::new();
    for _ in 0..150 {
        let requests = receiver.requests.lock().expect("lock").clone();
        let mut exports: std::collections::BTreeMap<u64, (usize, Vec<usize>)> =
            std::collections::BTreeMap::new();
        for request in &requests {
            let export = exports.entry(export_time(request)).or_default();
            export.0 += data_points(request);
            export.1.push(request.encoded_len());
        }
        if let Some((_, (points, request_sizes))) = exports
            .into_iter()
            .find(|(_, (points, _))| *points >= SERIES)
        {
            assert_eq!(points, SERIES, "each point once per export");
            sizes = request_sizes;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sizes.len() >= 2 && sizes.iter().all(|&n| n <= 4 << 20),
        "request sizes {sizes:?}; failed exports: {:?}",
        value(
            &scrape(&collector).await,
            "mailpulse_collector_otlp_exports_total{result=\"error\"}"
        )
    );
    collector.shutdown().await.expect("clean shutdown");
    server.abort();
}
