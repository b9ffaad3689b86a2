//! Periodic OTLP/gRPC export of the fleet totals: counters as monotonic cumulative sums,
//! gauges as gauges, histograms as cumulative explicit-bucket histograms. Metric names are the
//! Prometheus family names without `_total` (`mailpulse_messages_delivered`); an OTLP →
//! Prometheus bridge adds the suffix back.

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
        let request = build_request(&snapshot, store.created_unix_ms(), unix_nanos());
        if request.resource_metrics[0].scope_metrics[0]
            .metrics
            .is_empty()
        {
            continue;
        }
        match client.export(request).await {
            Ok(_) => {
                CollectorStats::add(&stats.otlp_exports_ok, 1);
                debug!(endpoint = %config.endpoint, "OTLP export done");
            }
            Err(status) => {
                CollectorStats::add(&stats.otlp_exports_failed, 1);
                warn!(endpoint = %config.endpoint, %status, "OTLP export failed");
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
