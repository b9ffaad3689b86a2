//! The agent's own health as samples: lines read, unparsed lines, outbox fill, drops, lag.

use std::sync::Arc;

use mailpulse_proto::v1::{self as pb, sample};

use super::window_start;

/// Totals and current values the agent reports about itself, taken at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfMetricsSnapshot {
    /// Lines read from the log files since the agent started.
    pub lines_read: u64,
    /// Of those, lines no parser understood.
    pub lines_unparsed: u64,
    /// Bytes of unacknowledged batches in the outbox now.
    pub outbox_bytes: u64,
    /// Unacknowledged batches in the outbox now.
    pub outbox_batches: u64,
    /// Batches dropped from a full outbox (or found corrupt) since the agent started.
    pub dropped_batches: u64,
    /// Age of the oldest unacknowledged batch (0 when the outbox is empty): how far the
    /// collector's view is behind.
    pub lag_seconds: f64,
}

/// Turns successive [`SelfMetricsSnapshot`]s into samples: counter deltas for the totals
/// (`agent_lines_read`, `agent_lines_unparsed`, `agent_dropped_batches`) and gauges for the rest
/// (`agent_outbox_bytes`, `agent_outbox_batches`, `agent_lag_seconds`), labelled with `host`.
#[derive(Debug)]
pub struct SelfMetrics {
    host: Arc<str>,
    window_secs: u32,
    last: SelfMetricsSnapshot,
}

impl SelfMetrics {
    /// Reports for `host`, in windows of `window_secs` (as the event samples).
    pub fn new(host: &str, window_secs: u32) -> Self {
        Self {
            host: Arc::from(host),
            window_secs: window_secs.max(1),
            last: SelfMetricsSnapshot::default(),
        }
    }

    /// Samples for `now` (the wall-clock time of the cut): deltas since the previous call.
    pub fn cut(&mut self, now_unix_ms: i64, snap: SelfMetricsSnapshot) -> Vec<pb::Sample> {
        let start = window_start(now_unix_ms.div_euclid(1000), self.window_secs);
        let counter =
            |v: u64, last: u64| sample::Value::CounterDelta(v.saturating_sub(last) as f64);
        let values = [
            (
                "agent_lines_read",
                counter(snap.lines_read, self.last.lines_read),
            ),
            (
                "agent_lines_unparsed",
                counter(snap.lines_unparsed, self.last.lines_unparsed),
            ),
            (
                "agent_dropped_batches",
                counter(snap.dropped_batches, self.last.dropped_batches),
            ),
            (
                "agent_outbox_bytes",
                sample::Value::Gauge(snap.outbox_bytes as f64),
            ),
            (
                "agent_outbox_batches",
                sample::Value::Gauge(snap.outbox_batches as f64),
            ),
            ("agent_lag_seconds", sample::Value::Gauge(snap.lag_seconds)),
        ];
        self.last = snap;
        values
            .into_iter()
            .map(|(metric, value)| pb::Sample {
                metric: metric.to_owned(),
                labels: vec![pb::Label {
                    name: "host".to_owned(),
                    value: self.host.to_string(),
                }],
                window_start_unix_ms: start * 1000,
                window_secs: self.window_secs,
                value: Some(value),
            })
            .collect()
    }
}
