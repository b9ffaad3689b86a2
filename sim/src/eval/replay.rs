//! Agent batches straight into the collector's [`Engine`], without network or store: the
//! collector's judgement of a fast-forwarded fleet (`mailpulse eval`, `mailpulse demo`).
//!
//! Every batch goes through the collector's own decoder and validation ([`BatchDecoder`]: the
//! agent's `host` label, series interning, kind checks) and is folded into store windows of
//! `resolution_secs` as the store folds it ([`Aggregate::apply`]: counters add up, the latest
//! gauge wins). A store window is handed to the engine once a sample of a later window
//! arrives — the replay's "settled" — with every window in between handed over empty, as the
//! analyzer does. A sample of a window already judged is counted as late and not judged
//! (the analyzer would not judge it either).

use std::collections::HashMap;

use bytes::Bytes;
use mailpulse_proto::v1 as pb;
use prost::Message;

use mailpulse_collector::analyze::{Alert, Band, Engine, EngineConfig, Selector, point_value};
use mailpulse_collector::ingest::pb::{BatchDecoder, Invalid};
use mailpulse_collector::model::{Anomaly, SeriesDef, SeriesId};
use mailpulse_collector::stats::RejectReason;
use mailpulse_collector::store::{Aggregate, SeriesRegistry, ValueRef};

/// What a replay produced.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    /// Every alert, resolved (the ones still open at the end are resolved there), in the order
    /// they resolved.
    pub alerts: Vec<Alert>,
    /// Anomalies behind them, in window order.
    pub anomalies: Vec<Anomaly>,
    /// Store windows judged.
    pub windows: u64,
    /// Samples of windows already judged (not judged).
    pub late_samples: u64,
    /// Stored series seen and view series judged.
    pub stored_series: usize,
    pub view_series: usize,
    /// Every window's band of the view series the trace selector matched.
    pub traced: Vec<Band>,
}

/// Replays batches of several agents; see the module documentation.
pub struct Replay<'r> {
    registry: &'r SeriesRegistry,
    max_batch_samples: usize,
    decoders: HashMap<String, (BatchDecoder<'r>, u64)>,
    engine: Engine,
    resolution_ms: i64,
    /// The store window being filled.
    current: Option<i64>,
    frame: HashMap<u32, Aggregate>,
    trace: Option<Selector>,
    outcome: ReplayOutcome,
}

impl<'r> Replay<'r> {
    /// A replay judging store windows of `resolution_secs` (at least 1) with `config`; series
    /// are interned in `registry`, batches larger than `max_batch_samples` refused.
    pub fn new(
        registry: &'r SeriesRegistry,
        config: EngineConfig,
        resolution_secs: u32,
        max_batch_samples: usize,
    ) -> Self {
        let resolution_secs = resolution_secs.max(1);
        Self {
            registry,
            max_batch_samples,
            decoders: HashMap::new(),
            engine: Engine::new(config, resolution_secs),
            resolution_ms: i64::from(resolution_secs) * 1000,
            current: None,
            frame: HashMap::new(),
            trace: None,
            outcome: ReplayOutcome::default(),
        }
    }

    /// Keeps the band of every window of the view series `selector` matches (view name and key
    /// labels, e.g. `deferral_ratio{domain="outlook.com"}`): why an incident was missed.
    pub fn trace(&mut self, selector: Selector) {
        self.trace = Some(selector);
    }

    /// Takes one batch of agent `host`'s samples (as the agent would send them), validated
    /// like a received batch: an invalid one is refused whole.
    pub fn push(&mut self, host: &str, samples: Vec<pb::Sample>) -> Result<(), Invalid> {
        if !self.decoders.contains_key(host) {
            let decoder = BatchDecoder::new(self.registry, self.max_batch_samples, host);
            self.decoders.insert(host.to_owned(), (decoder, 0));
        }
        let Some((decoder, seq)) = self.decoders.get_mut(host) else {
            return Ok(());
        };
        *seq += 1;
        let encoded = pb::Batch {
            seq: *seq,
            samples,
            ..pb::Batch::default()
        }
        .encode_to_vec();
        let batch = decoder.decode(Bytes::from(encoded))?;
        // The collector applies the rest of a batch and refuses the bad samples; an evaluation
        // wants to know the agent produced one at all.
        if let Some(detail) = decoder.refusals().first_detail() {
            return Err(Invalid {
                reason: RejectReason::InvalidSample,
                message: detail.to_string(),
            });
        }
        for sample in &batch.samples {
            let window = sample.window_start_ms.div_euclid(self.resolution_ms) * self.resolution_ms;
            match self.current {
                Some(current) if window < current => {
                    self.outcome.late_samples += 1;
                    continue;
                }
                Some(current) if window > current => self.settle_until(window),
                None => self.current = Some(window),
                Some(_) => {}
            }
            let value = ValueRef::of(&sample.value, &batch.histogram_counts);
            self.frame
                .entry(sample.series.0)
                .or_default()
                .apply(sample.window_start_ms, value);
        }
        Ok(())
    }

    /// Judges the window being filled and the empty ones before `window`.
    fn settle_until(&mut self, window: i64) {
        let Some(mut current) = self.current else {
            return;
        };
        while current < window {
            self.judge(current);
            current += self.resolution_ms;
        }
        self.current = Some(window);
    }

    fn judge(&mut self, window: i64) {
        // In series order: the engine creates view series in the order it meets them, and the
        // same input must give the same anomalies in the same order on every run.
        let mut defs: Vec<(SeriesId, std::sync::Arc<SeriesDef>, f64)> = {
            let index = self.registry.read();
            self.frame
                .drain()
                .filter_map(|(id, aggregate)| {
                    let id = SeriesId(id);
                    let value = point_value(&aggregate)?;
                    Some((id, index.def(id).clone(), value))
                })
                .collect()
        };
        defs.sort_unstable_by_key(|(id, _, _)| id.0);
        let frame: Vec<(SeriesId, &SeriesDef, f64)> =
            defs.iter().map(|(id, def, v)| (*id, &**def, *v)).collect();
        let outcome = self.engine.push_window(window, &frame);
        self.outcome.windows += 1;
        self.outcome.anomalies.extend(outcome.anomalies);
        self.outcome.alerts.extend(outcome.resolved);
        if let Some(selector) = &self.trace {
            let bands = self.engine.bands();
            self.outcome.traced.extend(
                bands
                    .into_iter()
                    .filter(|b| b.window_start_unix_ms == window && selector.matches(&b.series)),
            );
        }
    }

    /// Judges the last window and resolves the alerts still open.
    pub fn finish(mut self) -> ReplayOutcome {
        if let Some(current) = self.current {
            self.settle_until(current + self.resolution_ms);
        }
        let open = self.engine.finish();
        self.outcome.alerts.extend(open);
        self.outcome.stored_series = self.registry.read().len();
        self.outcome.view_series = self.engine.series_count();
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpulse_collector::analyze::View;

    fn counter(metric: &str, labels: &[(&str, &str)], window_ms: i64, value: f64) -> pb::Sample {
        pb::Sample {
            metric: metric.into(),
            labels: labels
                .iter()
                .map(|(n, v)| pb::Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            window_start_unix_ms: window_ms,
            window_secs: 60,
            value: Some(pb::sample::Value::CounterDelta(value)),
        }
    }

    fn bounced_view() -> View {
        #[derive(serde::Deserialize)]
        struct Doc {
            views: Vec<View>,
        }
        let doc: Doc = toml::from_str(
            "[[views]]\nname = \"bounced\"\nkind = \"volume\"\nseries = \"messages_bounced\"\n",
        )
        .expect("view");
        doc.views.into_iter().next().expect("one view")
    }

    /// Two weeks of minute batches from two hosts, folded into 5-minute windows; one host
    /// bounces 40× its usual volume for half an hour.
    #[test]
    fn minute_batches_fold_into_windows_and_a_storm_alerts_once() {
        let registry = SeriesRegistry::new(1000);
        let config = EngineConfig {
            views: vec![bounced_view()],
            ..EngineConfig::default()
        };
        let mut replay = Replay::new(&registry, config, 300, 1000);
        let start = 1_728_259_200_000_i64;
        let minutes = 14 * 1440;
        let storm = start + (13 * 1440 + 600) * 60_000;
        let mut noise: u64 = 3;
        for m in 0..minutes {
            let window = start + m * 60_000;
            for host in ["mx1", "mx2"] {
                noise = noise
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let hour = (m / 60) % 24;
                let base = if (8..18).contains(&hour) { 6.0 } else { 1.0 };
                let mut value = base + (noise >> 62) as f64;
                if host == "mx1" && (storm..storm + 30 * 60_000).contains(&window) {
                    value *= 40.0;
                }
                let samples = vec![counter("messages_bounced", &[], window, value)];
                replay.push(host, samples).expect("valid batch");
            }
        }
        // A late minute is counted, not judged.
        replay
            .push("mx2", vec![counter("messages_bounced", &[], start, 1.0)])
            .expect("valid batch");
        let bad = counter("messages_bounced", &[], start, f64::NAN);
        assert!(replay.push("mx1", vec![bad]).is_err(), "NaN is refused");
        let outcome = replay.finish();
        assert_eq!(outcome.windows, (minutes / 5) as u64);
        assert_eq!(outcome.late_samples, 1);
        assert_eq!(outcome.stored_series, 2, "one series per host");
        let storm_alerts: Vec<&Alert> = outcome
            .alerts
            .iter()
            .filter(|a| {
                a.label("host") == Some("mx1")
                    && (storm..storm + 30 * 60_000).contains(&a.first_window_unix_ms)
            })
            .collect();
        assert_eq!(storm_alerts.len(), 1, "{:#?}", outcome.alerts);
        assert!(storm_alerts[0].windows >= 5, "{:#?}", storm_alerts[0]);
        assert!(
            outcome.alerts.len() <= 4,
            "few alerts besides the storm: {:#?}",
            outcome.alerts
        );
    }
}
