//! Periodic OTLP/gRPC export of the fleet totals: counters as monotonic cumulative sums,
//! gauges as gauges, histograms as cumulative explicit-bucket histograms. Metric names are the
//! Prometheus family names without `_total` (`mailpulse_messages_delivered`); an OTLP →
//! Prometheus bridge adds the suffix back.
//!
//! One export is sent as several requests of at most `max_request_bytes` each (receivers refuse
//! messages over 4 MiB by default); a metric whose points do not fit in one request is split
//! across requests, each repeating the metric's name and type.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::Deserialize;
use tokio::sync::watch;
use tonic::transport::{ClientTlsConfig, Endpoint};
use tracing::{debug, warn};

use crate::CollectorError;
use crate::model::{MetricKind, SeriesDef};
use crate::stats::CollectorStats;
use crate::store::{Aggregate, Snapshot, StoreHandle};

/// Export of the fleet totals over OTLP/gRPC (cumulative sums, gauges, explicit-bucket histograms).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// e.g. `http://127.0.0.1:4317` (or `https://…`, verified against the system roots).
    pub endpoint: String,
    /// Seconds between exports.
    #[serde(default = "default_otlp_interval_secs")]
    pub interval_secs: u64,
    /// Timeout of one export call.
    #[serde(default = "default_otlp_timeout_secs")]
    pub timeout_secs: u64,
    /// Largest encoded request, in bytes; an export is split into as many requests as needed.
    #[serde(default = "default_otlp_max_request_bytes")]
    pub max_request_bytes: usize,
}

/// Under the 4 MiB (4 194 304 bytes) receivers accept by default, with room for gRPC framing.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4_000_000;

fn default_otlp_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

fn default_otlp_interval_secs() -> u64 {
    60
}

fn default_otlp_timeout_secs() -> u64 {
    10
}

/// Exports every `interval_secs` until `shutdown` turns true.
pub async fn run_exporter(
    config: OtlpConfig,
    store: StoreHandle,
    stats: Arc<CollectorStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let channel = match endpoint(&config) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(e) => {
            warn!(error = %e, "OTLP export disabled");
            return;
        }
    };
    let mut client = MetricsServiceClient::new(channel);
    let mut interval = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = store.snapshot();
        let requests = build_requests(
            &snapshot,
            store.created_unix_ms(),
            unix_nanos(),
            config.max_request_bytes,
        );
        let parts = requests.len();
        for (part, request) in requests.into_iter().enumerate() {
            match client.export(request).await {
                Ok(_) => {
                    CollectorStats::add(&stats.otlp_exports_ok, 1);
                    debug!(endpoint = %config.endpoint, part, parts, "OTLP export done");
                }
                Err(status) => {
                    CollectorStats::add(&stats.otlp_exports_failed, 1);
                    warn!(endpoint = %config.endpoint, part, parts, %status, "OTLP export failed");
                }
            }
        }
    }
}

fn endpoint(config: &OtlpConfig) -> Result<Endpoint, CollectorError> {
    let bad = |e: tonic::transport::Error| {
        CollectorError::Config(format!("otlp.endpoint {:?}: {e}", config.endpoint))
    };
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(bad)?
        .connect_timeout(Duration::from_secs(config.timeout_secs.max(1)))
        .timeout(Duration::from_secs(config.timeout_secs.max(1)));
    if config.endpoint.starts_with("https://") {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .map_err(bad)?;
    }
    Ok(endpoint)
}

/// Builds the export of every series' cumulative total as requests of at most
/// `max_request_bytes` each (a single data point larger than that still gets a request of its
/// own); none when there is nothing to export.
pub fn build_requests(
    snapshot: &Snapshot,
    start_unix_ms: i64,
    now_unix_nanos: u64,
    max_request_bytes: usize,
) -> Vec<ExportMetricsServiceRequest> {
    let metrics = build_request(snapshot, start_unix_ms, now_unix_nanos)
        .resource_metrics
        .pop()
        .and_then(|mut resource| resource.scope_metrics.pop())
        .map(|scope| scope.metrics)
        .unwrap_or_default();
    if metrics.is_empty() {
        return Vec::new();
    }
    // What every request carries besides its metrics.
    let envelope = request_with(Vec::new());
    let envelope_bytes = envelope.encoded_len() + 16;
    let budget = max_request_bytes.saturating_sub(envelope_bytes).max(1);

    let mut requests = Vec::new();
    let mut current: Vec<Metric> = Vec::new();
    let mut current_bytes = 0;
    for metric in metrics {
        for part in split_metric(metric, budget) {
            // Each metric is one length-delimited field of ScopeMetrics.
            let part_bytes = part.encoded_len() + 8;
            if !current.is_empty() && current_bytes + part_bytes > budget {
                requests.push(request_with(std::mem::take(&mut current)));
                current_bytes = 0;
            }
            current_bytes += part_bytes;
            current.push(part);
        }
    }
    if !current.is_empty() {
        requests.push(request_with(current));
    }
    requests
}

/// `metric` as one or more metrics of the same name and type, each of at most `budget` bytes
/// (a single point over the budget goes alone).
fn split_metric(metric: Metric, budget: usize) -> Vec<Metric> {
    if metric.encoded_len() + 8 <= budget {
        return vec![metric];
    }
    let header = Metric {
        data: None,
        ..metric.clone()
    };
    let header_bytes = header.encoded_len() + 16;
    let point_budget = budget.saturating_sub(header_bytes).max(1);
    match metric.data {
        Some(metric::Data::Sum(Sum {
            data_points,
            aggregation_temporality,
            is_monotonic,
        })) => chunks(data_points, point_budget)
            .into_iter()
            .map(|data_points| Metric {
                data: Some(metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality,
                    is_monotonic,
                })),
                ..header.clone()
            })
            .collect(),
        Some(metric::Data::Gauge(gauge)) => chunks(gauge.data_points, point_budget)
            .into_iter()
            .map(|data_points| Metric {
                data: Some(metric::Data::Gauge(Gauge { data_points })),
                ..header.clone()
            })
            .collect(),
        Some(metric::Data::Histogram(Histogram {
            data_points,
            aggregation_temporality,
        })) => chunks(data_points, point_budget)
            .into_iter()
            .map(|data_points| Metric {
                data: Some(metric::Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality,
                })),
                ..header.clone()
            })
            .collect(),
        other => vec![Metric {
            data: other,
            ..header
        }],
    }
}

/// Consecutive runs of `points` whose encodings add up to at most `budget` bytes each.
fn chunks<P: Message>(points: Vec<P>, budget: usize) -> Vec<Vec<P>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for point in points {
        let point_bytes = point.encoded_len() + 8;
        if !current.is_empty() && bytes + point_bytes > budget {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += point_bytes;
        current.push(point);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Builds one export request holding every series' cumulative total.
pub fn build_request(
    snapshot: &Snapshot,
    start_unix_ms: i64,
    now_unix_nanos: u64,
) -> ExportMetricsServiceRequest {
    let start = (start_unix_ms.max(0) as u64) * 1_000_000;
    let mut ids: Vec<usize> = (0..snapshot.totals.len().min(snapshot.series.len()))
        .filter(|&i| snapshot.totals[i] != Aggregate::Empty)
        .collect();
    ids.sort_by(|&a, &b| snapshot.series[a].metric.cmp(&snapshot.series[b].metric));

    let mut metrics: Vec<Metric> = Vec::new();
    for id in ids {
        let def = &snapshot.series[id];
        let name = format!("mailpulse_{}", def.metric);
        if metrics.last().map(|m| m.name != name).unwrap_or(true) {
            metrics.push(empty_metric(name, def.kind));
        }
        let attributes = attributes(def);
        let number = |value: f64| NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: start,
            time_unix_nano: now_unix_nanos,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..NumberDataPoint::default()
        };
        match (
            metrics.last_mut().and_then(|m| m.data.as_mut()),
            &snapshot.totals[id],
        ) {
            (Some(metric::Data::Sum(sum)), Aggregate::Counter(v)) => {
                sum.data_points.push(number(*v))
            }
            (Some(metric::Data::Gauge(gauge)), Aggregate::Gauge { value, .. }) => {
                gauge.data_points.push(number(*value));
            }
            (Some(metric::Data::Histogram(histogram)), Aggregate::Histogram { sum, counts }) => {
                histogram.data_points.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now_unix_nanos,
                    count: counts.iter().sum(),
                    sum: Some(*sum),
                    bucket_counts: counts.to_vec(),
                    explicit_bounds: def.bounds.to_vec(),
                    ..HistogramDataPoint::default()
                });
            }
            _ => {}
        }
    }
    request_with(metrics)
}

/// A request of the collector's resource and scope holding `metrics`.
fn request_with(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", "mailpulse-collector")],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "mailpulse-collector".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn empty_metric(name: String, kind: MetricKind) -> Metric {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match kind {
        MetricKind::Counter => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        MetricKind::Gauge => metric::Data::Gauge(Gauge {
            data_points: Vec::new(),
        }),
        MetricKind::Histogram => metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
        }),
    };
    Metric {
        name,
        data: Some(data),
        ..Metric::default()
    }
}

fn attributes(def: &SeriesDef) -> Vec<KeyValue> {
    def.labels
        .iter()
        .map(|(n, v)| string_attribute(n, v))
        .collect()
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fleet(series: usize) -> Snapshot {
        let mut defs = Vec::new();
        let mut totals = Vec::new();
        for i in 0..series {
            let (kind, total, bounds): (MetricKind, Aggregate, Box<[f64]>) = match i % 3 {
                0 => (
                    MetricKind::Counter,
                    Aggregate::Counter(i as f64),
                    Box::new([]),
                ),
                1 => (
                    MetricKind::Gauge,
                    Aggregate::Gauge {
                        value: 1.0,
                        window_start_ms: 0,
                    },
                    Box::new([]),
                ),
                _ => (
                    MetricKind::Histogram,
                    Aggregate::Histogram {
                        sum: 1.0,
                        counts: vec![1; 11].into(),
                    },
                    (1..=10).map(f64::from).collect(),
                ),
            };
            defs.push(Arc::new(SeriesDef {
                metric: format!("metric_{}", i % 3).into(),
                labels: vec![
                    (
                        "domain".into(),
                        format!("{i:06}.{}", "d".repeat(200)).into(),
                    ),
                    ("host".into(), "mx1".into()),
                ]
                .into(),
                kind,
                bounds,
            }));
            totals.push(total);
        }
        Snapshot {
            series: defs,
            totals,
            agents: Vec::new(),
            owners: Vec::new(),
        }
    }

    fn points(requests: &[ExportMetricsServiceRequest]) -> usize {
        requests
            .iter()
            .flat_map(|r| &r.resource_metrics[0].scope_metrics[0].metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                Some(metric::Data::Histogram(h)) => h.data_points.len(),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn an_export_over_4_mib_is_split_into_requests_under_the_limit() {
        let snapshot = fleet(30_000);
        let whole = build_request(&snapshot, 0, 1);
        assert!(whole.encoded_len() > 4 << 20, "{}", whole.encoded_len());
        let requests = build_requests(&snapshot, 0, 1, DEFAULT_MAX_REQUEST_BYTES);
        assert!(requests.len() >= 2);
        for request in &requests {
            assert!(
                request.encoded_len() <= DEFAULT_MAX_REQUEST_BYTES,
                "{}",
                request.encoded_len()
            );
        }
        assert_eq!(points(&requests), 30_000, "every point exported once");
        // Small limits too, and nothing to export means no request.
        let requests = build_requests(&fleet(300), 0, 1, 10_000);
        assert!(requests.iter().all(|r| r.encoded_len() <= 10_000));
        assert_eq!(points(&requests), 300);
        assert!(build_requests(&fleet(0), 0, 1, 10_000).is_empty());
    }
}
