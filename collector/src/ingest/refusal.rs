//! Samples refused one by one: why ([`SampleRefusal`]), how many in one batch ([`Refusals`],
//! sent back in `Ack.refused`) and how many per agent so far ([`RefusedSamples`], exposed as
//! `mailpulse_collector_refused_samples_total{agent,reason}`).
//!
//! A refused sample is not applied and never blocks the rest of its batch: the agent gets the
//! counts in the ack and does not resend it (it would be refused again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailpulse_proto::v1::Refused;

/// Why one sample or probe of a batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleRefusal {
    /// Its bytes are not a valid `Sample` (or `Probe`): truncated, wrong wire type, repeated
    /// name, text that is not UTF-8.
    Malformed,
    /// A field this collector does not know (in `Sample`, `Label` or `Histogram`).
    UnknownField,
    /// The metric name is not `[a-z_][a-z0-9_]*` or is reserved for the collector.
    BadMetricName,
    /// A label name is not `[a-z_][a-z0-9_]*`, or is reserved (`__*`, `le` on histograms).
    BadLabelName,
    /// The same label name twice.
    DuplicateLabel,
    /// More labels than allowed (the `host` label included).
    TooManyLabels,
    /// A label value longer than allowed.
    LabelTooLong,
    /// No value, a non-finite value or a negative counter delta.
    BadValue,
    /// Histogram counts that do not match its bounds, bounds not increasing, a non-finite sum.
    BadHistogram,
    /// More histogram buckets than allowed.
    TooManyBuckets,
    /// Histogram bounds other than the ones of the existing series.
    BoundsChanged,
    /// The metric exists with another kind (counter, gauge, histogram).
    KindConflict,
    /// A negative window start or a window length of zero or over a day.
    BadWindow,
    /// A window (or probe time) before the retention period or after now plus the allowed skew.
    WindowOutOfRange,
    /// An explicit `host` label naming a host the agent's token is not bound to.
    ForeignHost,
    /// Beyond the most samples (and probes) one batch may carry.
    TooManySamples,
    /// The store accepts no new series.
    SeriesLimit,
    /// A probe with an empty, over-long or control-character field, or a bad number.
    BadProbe,
    /// A probe of a new DNS record past the agent's record cap (refused by the store).
    DnsRecordCap,
}

impl SampleRefusal {
    /// Every reason, in exposition order.
    pub const ALL: [SampleRefusal; 19] = [
        SampleRefusal::Malformed,
        SampleRefusal::UnknownField,
        SampleRefusal::BadMetricName,
        SampleRefusal::BadLabelName,
        SampleRefusal::DuplicateLabel,
        SampleRefusal::TooManyLabels,
        SampleRefusal::LabelTooLong,
        SampleRefusal::BadValue,
        SampleRefusal::BadHistogram,
        SampleRefusal::TooManyBuckets,
        SampleRefusal::BoundsChanged,
        SampleRefusal::KindConflict,
        SampleRefusal::BadWindow,
        SampleRefusal::WindowOutOfRange,
        SampleRefusal::ForeignHost,
        SampleRefusal::TooManySamples,
        SampleRefusal::SeriesLimit,
        SampleRefusal::BadProbe,
        SampleRefusal::DnsRecordCap,
    ];

    /// The `reason` text in `Ack.refused` and in the counter's label.
    pub fn as_str(self) -> &'static str {
        match self {
            SampleRefusal::Malformed => "malformed",
            SampleRefusal::UnknownField => "unknown_field",
            SampleRefusal::BadMetricName => "bad_metric_name",
            SampleRefusal::BadLabelName => "bad_label_name",
            SampleRefusal::DuplicateLabel => "duplicate_label",
            SampleRefusal::TooManyLabels => "too_many_labels",
            SampleRefusal::LabelTooLong => "label_too_long",
            SampleRefusal::BadValue => "bad_value",
            SampleRefusal::BadHistogram => "bad_histogram",
            SampleRefusal::TooManyBuckets => "too_many_buckets",
            SampleRefusal::BoundsChanged => "bounds_changed",
            SampleRefusal::KindConflict => "kind_conflict",
            SampleRefusal::BadWindow => "bad_window",
            SampleRefusal::WindowOutOfRange => "window_out_of_range",
            SampleRefusal::ForeignHost => "foreign_host",
            SampleRefusal::TooManySamples => "too_many_samples",
            SampleRefusal::SeriesLimit => "series_limit",
            SampleRefusal::BadProbe => "bad_probe",
            SampleRefusal::DnsRecordCap => "dns_record_cap",
        }
    }
}

const REASONS: usize = SampleRefusal::ALL.len();

/// One refused sample: the reason and a detail for the collector's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: SampleRefusal,
    /// What exactly (names the sample's position in the batch).
    pub detail: String,
}

/// The samples refused in one batch, by reason, with the first one's detail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    counts: [u64; REASONS],
    first: Option<String>,
}

impl Refusals {
    /// Counts one refusal (keeps the first detail only: a hostile batch may refuse thousands).
    pub fn add(&mut self, refusal: Refusal) {
        self.counts[refusal.reason as usize] += 1;
        if self.first.is_none() {
            self.first = Some(refusal.detail);
        }
    }

    /// Counts `n` refusals for `reason` without detail.
    pub fn add_many(&mut self, reason: SampleRefusal, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.counts[reason as usize] += n;
        if self.first.is_none() {
            self.first = Some(detail());
        }
    }

    /// Refused samples in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Refused samples for `reason`.
    pub fn count(&self, reason: SampleRefusal) -> u64 {
        self.counts[reason as usize]
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Detail of the first refused sample.
    pub fn first_detail(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// Reasons with their counts (non-zero only), in [`SampleRefusal::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (SampleRefusal, u64)> + '_ {
        SampleRefusal::ALL
            .into_iter()
            .map(|reason| (reason, self.counts[reason as usize]))
            .filter(|&(_, n)| n > 0)
    }

    /// What `Ack.refused` carries.
    pub fn to_proto(&self) -> Vec<Refused> {
        self.iter()
            .map(|(reason, samples)| Refused {
                reason: reason.as_str().into(),
                samples,
            })
            .collect()
    }
}

/// Refused samples per agent and reason since start. Agents come from the token table, so the
/// table is bounded by the configured agents.
#[derive(Debug, Default)]
pub struct RefusedSamples {
    agents: Mutex<HashMap<Arc<str>, [u64; REASONS]>>,
}

impl RefusedSamples {
    /// Adds a batch's refusals to `agent`'s counts.
    pub fn record(&self, agent: &Arc<str>, refusals: &Refusals) {
        if refusals.is_empty() {
            return;
        }
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let counts = agents.entry(agent.clone()).or_insert([0; REASONS]);
        for (count, add) in counts.iter_mut().zip(refusals.counts) {
            *count += add;
        }
    }

    /// Every (agent, reason, count) with a non-zero count, sorted by agent then reason order.
    pub fn snapshot(&self) -> Vec<(Arc<str>, SampleRefusal, u64)> {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(Arc<str>, SampleRefusal, u64)> = agents
            .iter()
            .flat_map(|(agent, counts)| {
                SampleRefusal::ALL
                    .into_iter()
                    .filter(|reason| counts[*reason as usize] > 0)
                    .map(|reason| (agent.clone(), reason, counts[reason as usize]))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then((a.1 as usize).cmp(&(b.1 as usize))));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_batch_and_per_agent() {
        let mut batch = Refusals::default();
        batch.add(Refusal {
            reason: SampleRefusal::LabelTooLong,
            detail: "sample 3: first".into(),
        });
        batch.add(Refusal {
            reason: SampleRefusal::LabelTooLong,
            detail: "sample 9: second".into(),
        });
        batch.add_many(SampleRefusal::TooManySamples, 2, || "never".into());
        assert_eq!(batch.total(), 4);
        assert_eq!(batch.first_detail(), Some("sample 3: first"));
        let proto = batch.to_proto();
        assert_eq!(
            proto
                .iter()
                .map(|r| (r.reason.as_str(), r.samples))
                .collect::<Vec<_>>(),
            [("label_too_long", 2), ("too_many_samples", 2)]
        );

        let agents = RefusedSamples::default();
        let mx1: Arc<str> = "mx1".into();
        agents.record(&mx1, &batch);
        agents.record(&mx1, &batch);
        agents.record(&"mx0".into(), &Refusals::default());
        assert_eq!(
            agents.snapshot(),
            [
                (mx1.clone(), SampleRefusal::LabelTooLong, 4),
                (mx1, SampleRefusal::TooManySamples, 4)
            ]
        );
    }
}
