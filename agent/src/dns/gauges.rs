//! A builder of samples stamped with one host and window, for the DNS prober's gauges, latency
//! histograms and counters.

use mailpulse_proto::v1 as pb;

use crate::aggregate::window_start;

/// Builds samples (gauges, or any value with `push_value`) stamped with one window.
pub(crate) struct Gauges<'a> {
    host: &'a str,
    window_start_unix_ms: i64,
    window_secs: u32,
    pub(crate) out: Vec<pb::Sample>,
}

impl Gauges<'_> {
    /// A gauge with the host label first, then `labels`.
    pub(crate) fn push(&mut self, metric: &str, labels: &[(&str, &str)], value: f64) {
        self.push_value(metric, labels, pb::sample::Value::Gauge(value));
    }

    /// A sample of any kind (counter delta, histogram) with the same labels and window.
    pub(crate) fn push_value(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
        value: pb::sample::Value,
    ) {
        self.out.push(pb::Sample {
            metric: metric.to_owned(),
            labels: std::iter::once(("host", self.host))
                .chain(labels.iter().copied())
                .map(|(name, value)| pb::Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
            window_start_unix_ms: self.window_start_unix_ms,
            window_secs: self.window_secs,
            value: Some(value),
        });
    }
}

/// A gauge builder for `host` at the window of `now_ms`.
pub(crate) fn gauges(host: &str, now_ms: i64, window_secs: u32) -> Gauges<'_> {
    Gauges {
        host,
        window_start_unix_ms: window_start(now_ms.div_euclid(1000), window_secs) * 1000,
        window_secs,
        out: Vec::new(),
    }
}
