//! Prometheus remote write (`[remote_write]`): every `interval_secs` the collector sends what
//! `/metrics` shows — the same families, labels and values — as one remote-write request
//! (protocol 1.0: a protobuf `WriteRequest`, snappy block compression), stamped with the send
//! time and the configured external labels. Prometheus (`--web.enable-remote-write-receiver`),
//! Mimir, Thanos Receive, Cortex and VictoriaMetrics accept it; several collectors writing into
//! one of them, each with its own `collector` label, is how the fleet is seen as one.
//!
//! A failed request is counted and not retried: the next interval sends the then current values
//! (counters are cumulative, so nothing is lost, only a point of resolution). Requests are cut
//! at `max_samples_per_request`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::warn;

use crate::alerting::http::{Endpoint, TlsOptions};

/// The `[remote_write]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's write URL, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Seconds between two sends (default 15).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds one request may take (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Labels added to every series (a series' own label of the same name wins), e.g.
    /// `{ collector = "eu-1" }`.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Bearer token (first line of the file) sent as `Authorization`.
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// TLS for an https URL.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Most samples in one request (default 5 000).
    #[serde(default = "default_max_samples")]
    pub max_samples_per_request: usize,
}

fn default_interval() -> u64 {
    15
}
fn default_timeout() -> u64 {
    10
}
fn default_max_samples() -> usize {
    5_000
}

/// `prometheus.WriteRequest` (remote write 1.0).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, `__name__` among them.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: the value at a time (Unix ms).
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One sample of the text format: metric name, labels (unescaped), value.
pub type TextSample = (String, Vec<(String, String)>, f64);

/// One sample line of the Prometheus text format (as `/metrics` writes it). Comments, blank
/// lines and lines that do not parse give `None`.
pub fn parse_line(line: &str) -> Option<TextSample> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            // name="value", …}
            let (start, c) = chars.next()?;
            if c == '}' {
                break start + 1;
            }
            if c == ',' {
                continue;
            }
            let eq = body[start..].find('=')? + start;
            let label = body[start..eq].trim().to_owned();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((label, value));
        };
        rest = &body[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    if name.is_empty() {
        return None;
    }
    Some((name.to_owned(), labels, value))
}

/// The exposition `text` as remote-write requests of at most `max_samples` series each, every
/// sample at `now_ms`, with `external` labels added where a series has no label of that name.
/// Each request is protobuf, snappy-compressed.
pub fn requests(
    text: &str,
    external: &BTreeMap<String, String>,
    now_ms: i64,
    max_samples: usize,
) -> Vec<Bytes> {
    let series: Vec<TimeSeries> = text
        .lines()
        .filter_map(parse_line)
        .map(|(name, labels, value)| {
            let mut all: BTreeMap<String, String> = external.clone();
            all.extend(labels);
            all.insert("__name__".into(), name);
            TimeSeries {
                labels: all
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: vec![Sample {
                    value,
                    timestamp: now_ms,
                }],
            }
        })
        .collect();
    series
        .chunks(max_samples.max(1))
        .map(|chunk| {
            let body = WriteRequest {
                timeseries: chunk.to_vec(),
            }
            .encode_to_vec();
            Bytes::from(
                snap::raw::Encoder::new()
                    .compress_vec(&body)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Sends what `render` gives every `interval_secs` until `shutdown` turns true.
pub async fn run(
    cfg: RemoteWriteConfig,
    render: impl Fn() -> String + Send + Sync + 'static,
    stats: std::sync::Arc<crate::stats::CollectorStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let endpoint = match Endpoint::new(
        &cfg.url,
        &cfg.tls,
        Duration::from_secs(cfg.timeout_secs.max(1)),
    ) {
        Ok(e) => e,
        Err(e) => {
            warn!(url = %cfg.url, error = %e, "remote write disabled");
            return;
        }
    };
    let token = cfg.bearer_token_file.as_ref().and_then(|f| {
        std::fs::read_to_string(f)
            .map_err(|e| warn!(file = %f.display(), error = %e, "remote write token"))
            .ok()
            .map(|t| t.lines().next().unwrap_or("").trim().to_owned())
    });
    let render = std::sync::Arc::new(render);
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let r = render.clone();
        let Ok(text) = tokio::task::spawn_blocking(move || r()).await else {
            continue;
        };
        let now_ms = crate::store::unix_ms();
        let mut headers = vec![
            ("Content-Encoding", "snappy".to_owned()),
            ("X-Prometheus-Remote-Write-Version", "0.1.0".to_owned()),
        ];
        if let Some(t) = &token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        for body in requests(
            &text,
            &cfg.external_labels,
            now_ms,
            cfg.max_samples_per_request,
        ) {
            let samples_sent = body.len() as u64;
            match endpoint
                .post("application/x-protobuf", &headers, body)
                .await
            {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    stats
                        .remote_write_requests
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = samples_sent;
                }
                Ok(answer) => {
                    stats
                        .remote_write_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(url = %cfg.url, status = answer.status, body = %answer.body.trim(), "remote write refused");
                }
                Err(e) => {
                    stats
                        .remote_write_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(url = %cfg.url, error = %e, "remote write failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_parse_with_escapes() {
        assert_eq!(
            parse_line(r#"mailpulse_x_total{a="1",b="q\"uo\\te\nx"} 42"#),
            Some((
                "mailpulse_x_total".into(),
                vec![
                    ("a".into(), "1".into()),
                    ("b".into(), "q\"uo\\te\nx".into())
                ],
                42.0
            ))
        );
        assert_eq!(parse_line("up 1"), Some(("up".into(), vec![], 1.0)));
        assert_eq!(parse_line("# HELP up x"), None);
        assert_eq!(parse_line(r#"broken{a="1" 2"#), None);
        let inf = parse_line(r#"h_bucket{le="+Inf"} 3"#).expect("parses");
        assert_eq!(inf.1, vec![("le".to_owned(), "+Inf".to_owned())]);
    }

    #[test]
    fn requests_are_snappy_protobuf_with_sorted_labels_and_external_labels() {
        let text = "# TYPE a counter\na_total{z=\"1\",collector=\"own\"} 5\nb 2\nc 3\n";
        let external = BTreeMap::from([("collector".to_owned(), "eu-1".to_owned())]);
        let bodies = requests(text, &external, 1_000, 2);
        assert_eq!(bodies.len(), 2, "3 series, 2 per request");
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&bodies[0])
            .expect("snappy");
        let req = WriteRequest::decode(raw.as_slice()).expect("protobuf");
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<&str> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "collector", "z"], "sorted");
        assert_eq!(
            req.timeseries[0].labels[1].value, "own",
            "the series' own label wins"
        );
        assert_eq!(req.timeseries[1].labels[1].value, "eu-1");
        assert_eq!(req.timeseries[0].samples[0].value, 5.0);
        assert_eq!(req.timeseries[0].samples[0].timestamp, 1_000);
    }

    proptest::proptest! {
        #[test]
        fn no_line_panics(line in ".{0,200}") {
            let _ = parse_line(&line);
        }
    }
}
