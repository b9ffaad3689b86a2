//! The agent's own health as samples: lines read, unparsed lines, outbox fill, drops, lag,
//! what had to be bounded or was refused, and the state of the background tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use mailpulse_proto::v1::{self as pb, sample};

use super::window_start;

/// Totals and current values the agent reports about itself, taken at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Batches the collector refused for good (moved to `outbox/rejected/`).
    pub rejected_batches: u64,
    /// Label values cut to the length limit.
    pub labels_truncated: u64,
    /// Lines whose `host` or `instance` was counted under `other` by the caps, per label.
    pub labels_folded: BTreeMap<&'static str, u64>,
    /// Samples the collector refused (and did not apply), per reason.
    pub refused_samples: BTreeMap<String, u64>,
    /// Failures of the agent's background tasks, per task.
    pub task_failures: BTreeMap<&'static str, u64>,
    /// Whether each background task runs (or waits to be restarted after a failure).
    pub task_up: BTreeMap<&'static str, bool>,
}

/// Turns successive [`SelfMetricsSnapshot`]s into samples: counter deltas for the totals
/// (`agent_lines_read`, `agent_lines_unparsed`, `agent_dropped_batches`,
/// `agent_rejected_batches`, `agent_labels_truncated`, `agent_labels_folded{label}`,
/// `agent_refused_samples{reason}`, `agent_task_failures{task}`) and gauges for the rest
/// (`agent_outbox_bytes`, `agent_outbox_batches`, `agent_lag_seconds`, `agent_task_up{task}`),
/// labelled with `host`.
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
        let last = &self.last;
        let mut labelled: Vec<(&str, &str, String, sample::Value)> = Vec::new();
        // Labelled counters: a series appears once it has counted something, except the task
        // failures, which are reported (as 0) for every task from the start.
        let mut deltas =
            |metric, label, now: u64, before: Option<u64>, always: bool, value: String| {
                let before = before.unwrap_or(0);
                if always || now > before {
                    labelled.push((metric, label, value, counter(now, before)));
                }
            };
        for (reason, &n) in &snap.refused_samples {
            let before = last.refused_samples.get(reason).copied();
            deltas(
                "agent_refused_samples",
                "reason",
                n,
                before,
                false,
                reason.clone(),
            );
        }
        for (&label, &n) in &snap.labels_folded {
            let before = last.labels_folded.get(label).copied();
            deltas(
                "agent_labels_folded",
                "label",
                n,
                before,
                false,
                label.to_owned(),
            );
        }
        for (&task, &n) in &snap.task_failures {
            let before = last.task_failures.get(task).copied();
            deltas(
                "agent_task_failures",
                "task",
                n,
                before,
                true,
                task.to_owned(),
            );
        }
        for (&task, &up) in &snap.task_up {
            labelled.push((
                "agent_task_up",
                "task",
                task.to_owned(),
                sample::Value::Gauge(if up { 1.0 } else { 0.0 }),
            ));
        }
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
            (
                "agent_rejected_batches",
                counter(snap.rejected_batches, self.last.rejected_batches),
            ),
            (
                "agent_labels_truncated",
                counter(snap.labels_truncated, self.last.labels_truncated),
            ),
        ];
        let host = pb::Label {
            name: "host".to_owned(),
            value: self.host.to_string(),
        };
        let sample = |metric: &str, labels: Vec<pb::Label>, value| pb::Sample {
            metric: metric.to_owned(),
            labels,
            window_start_unix_ms: start * 1000,
            window_secs: self.window_secs,
            value: Some(value),
        };
        let mut out: Vec<pb::Sample> = values
            .into_iter()
            .map(|(metric, value)| sample(metric, vec![host.clone()], value))
            .collect();
        for (metric, name, value, v) in labelled {
            let labels = vec![
                host.clone(),
                pb::Label {
                    name: name.to_owned(),
                    value,
                },
            ];
            out.push(sample(metric, labels, v));
        }
        self.last = snap;
        out
    }
}
