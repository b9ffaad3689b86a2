//! Advice: alerts that come from what the fleet *is* rather than from a detector's verdict on a
//! series — a sending IP on a DNS blocklist, an MX host that is published but failing, MX hosts
//! of equal preference with very unequal load, MX records whose TTLs are too long to move
//! quickly, a destination's MX target that fails where the domain's other targets deliver.
//!
//! Every analyzer round reads the [`Facts`] — the current gauge levels, the counters and delay
//! histograms of the last `lookback_secs`, the MX sets and address TTLs the DNS prober stored for
//! the operator's own domains, and the agents' hosts — and [`advise`] turns them into
//! [`Alert`]s with their own summary and recommendation ([`Advice`]). An alert lasts as long as
//! its condition holds; the lifecycle resolves it when a round no longer finds it.
//!
//! Architecture invariant: [`advise`] is pure (no I/O, no clock); [`read_facts`] does the
//! reading, bounded by the store's own caps (series, DNS records per agent).

mod dns;
mod dnsbl;
mod mx;
mod relay;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Alert, AlertFigures};
use crate::model::SeriesDef;
use crate::store::{Aggregate, StoreHandle};

/// The alert names advice raises, besides the detection views (rules may name them).
pub const NAMES: &[&str] = &[
    dnsbl::NAME,
    dns::NAME,
    mx::FAILING,
    mx::UNBALANCED,
    mx::TTL_LONG,
    relay::NAME,
];

/// The `[detect.advice]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceConfig {
    /// Raise advice alerts at all (default true).
    pub enabled: bool,
    /// Seconds of traffic the load and failure comparisons look at (default 900).
    pub lookback_secs: u64,
    /// Fewest inbound connections an MX host's peers must have had in the lookback before a
    /// silent MX host counts as failing, and per host before loads are compared (default 20).
    pub min_connections: f64,
    /// Share of its connections an MX host refuses (`messages_rejected` against accepted
    /// plus refused) above which it counts as failing while its peers refuse less than a third
    /// of that (default 0.5).
    pub max_reject_share: f64,
    /// Equal-preference MX hosts are unbalanced when the busiest took this many times the
    /// connections of the quietest (default 4).
    pub imbalance_factor: f64,
    /// MX and MX-host address TTLs above this are too long to move traffic quickly (default
    /// 14 400 s: four hours).
    pub max_ttl_secs: u32,
    /// Fewest delivery attempts to one MX target of a destination, and to its other targets
    /// together, before they are compared (default 20).
    pub min_attempts: f64,
    /// Share of failed attempts (deferred or bounced) at one MX target above which it counts as
    /// failing while the domain's other targets fail less than a third as often (default 0.5).
    pub relay_failure_share: f64,
}

impl Default for AdviceConfig {
    fn default() -> Self {
        AdviceConfig {
            enabled: true,
            lookback_secs: 900,
            min_connections: 20.0,
            max_reject_share: 0.5,
            imbalance_factor: 4.0,
            max_ttl_secs: 14_400,
            min_attempts: 20.0,
            relay_failure_share: 0.5,
        }
    }
}

/// What an advice alert says in its own words (a detector alert's summary and recommendation
/// are written from its figures and view instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// What was found: "listed on zen.spamhaus.org since …".
    pub summary: String,
    /// What to do, with the commands and playbooks.
    pub recommendation: String,
}

/// One MX record set of a monitored domain, as the DNS prober last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxSet {
    pub domain: String,
    /// The longest TTL any server gave (a caching resolver counts the TTL down; the
    /// authoritative servers give it whole).
    pub ttl_secs: u32,
    /// (preference, target), sorted.
    pub targets: Vec<(u16, String)>,
}

/// Everything [`advise`] judges.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Now (Unix ms): the alerts' times.
    pub now_ms: i64,
    /// Current gauge levels (stale ones left out).
    pub gauges: Vec<(Arc<SeriesDef>, f64)>,
    /// Counter increases over the lookback.
    pub counts: Vec<(Arc<SeriesDef>, f64)>,
    /// Histogram (count, sum) over the lookback.
    pub histograms: Vec<(Arc<SeriesDef>, u64, f64)>,
    /// MX sets of the monitored domains.
    pub mx: Vec<MxSet>,
    /// Longest TTL of the A/AAAA sets per name (lower case, no trailing dot).
    pub address_ttls: HashMap<String, u32>,
    /// Hosts of the known agents.
    pub hosts: Vec<String>,
}

impl Facts {
    /// Sum of the counter `metric` over the lookback for the series `keep` accepts.
    fn count(&self, metric: &str, keep: impl Fn(&SeriesDef) -> bool) -> f64 {
        self.counts
            .iter()
            .filter(|(d, _)| &*d.metric == metric && keep(d))
            .map(|(_, v)| v)
            .sum()
    }
}

/// The advice alerts `facts` call for.
pub fn advise(cfg: &AdviceConfig, facts: &Facts) -> Vec<Alert> {
    if !cfg.enabled {
        return Vec::new();
    }
    let mut out = dnsbl::listings(facts);
    out.extend(dns::inconsistent(facts));
    out.extend(mx::advice(cfg, facts));
    out.extend(relay::failing(cfg, facts));
    out
}

/// An alert found by advice at `facts.now_ms`.
fn alert(
    name: &str,
    labels: Vec<(&str, String)>,
    facts: &Facts,
    detail: String,
    recommendation: String,
) -> Alert {
    let mut labels: Vec<(String, String)> =
        labels.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
    labels.sort();
    Alert {
        name: name.to_owned(),
        labels,
        detectors: vec!["advice".into()],
        first_window_unix_ms: facts.now_ms,
        last_window_unix_ms: facts.now_ms,
        resolved_unix_ms: None,
        windows: 1,
        peak_score: 1.0,
        peak_detail: detail.clone(),
        last: AlertFigures::default(),
        advice: Some(Advice {
            summary: detail,
            recommendation,
        }),
    }
}

/// Reads the facts as of `now_ms` (synchronous: reads redb; run it off the async runtime).
pub fn read_facts(store: &StoreHandle, cfg: &AdviceConfig, now_ms: i64) -> Facts {
    let since_ms = now_ms - (cfg.lookback_secs.max(1) * 1000) as i64;
    let snapshot = store.snapshot();
    // A gauge's latest level as of `now_ms`: from the lookback's windows, else its latest
    // value if that is not newer than `now_ms` (an agent ahead of the analyzer's clock, as a
    // replay is, must not show the future).
    let mut levels: HashMap<u32, f64> = snapshot
        .totals
        .iter()
        .enumerate()
        .filter_map(|(id, total)| match total {
            Aggregate::Gauge {
                value,
                window_start_ms,
            } if *window_start_ms <= now_ms => Some((id as u32, *value)),
            _ => None,
        })
        .collect();
    let defs = &snapshot.series;
    let mut counts: HashMap<u32, f64> = HashMap::new();
    let mut histograms: HashMap<u32, (u64, f64)> = HashMap::new();
    let read = store.for_each_window(since_ms, now_ms, |_, entries| {
        for (id, aggregate) in entries {
            match aggregate {
                Aggregate::Gauge { value, .. } => {
                    levels.insert(*id, *value);
                }
                Aggregate::Counter(v) => *counts.entry(*id).or_default() += v,
                Aggregate::Histogram { sum, counts: c } => {
                    let slot = histograms.entry(*id).or_default();
                    slot.0 += c.iter().sum::<u64>();
                    slot.1 += sum;
                }
                _ => {}
            }
        }
    });
    if let Err(e) = read {
        tracing::warn!(error = %e, "reading recent windows for advice failed");
    }
    let def = |id: u32| defs.get(id as usize).cloned();
    let mut levels: Vec<(u32, f64)> = levels.into_iter().collect();
    levels.sort_by_key(|(id, _)| *id);
    let mut facts = Facts {
        now_ms,
        gauges: levels
            .into_iter()
            .filter_map(|(id, v)| Some((def(id)?, v)))
            .collect(),
        counts: counts
            .into_iter()
            .filter_map(|(id, v)| Some((def(id)?, v)))
            .collect(),
        histograms: histograms
            .into_iter()
            .filter_map(|(id, (n, s))| Some((def(id)?, n, s)))
            .collect(),
        hosts: snapshot.agents.iter().map(|a| a.host.clone()).collect(),
        ..Facts::default()
    };
    match store.dns_records(&["mx", "a", "aaaa"]) {
        Ok(records) => {
            let (mx, ttls) = mx::sets(&records);
            facts.mx = mx;
            facts.address_ttls = ttls;
        }
        Err(e) => tracing::warn!(error = %e, "reading DNS records for advice failed"),
    }
    facts
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::MetricKind;

    /// A series definition for tests.
    pub fn def(metric: &str, labels: &[(&str, &str)]) -> Arc<SeriesDef> {
        let mut labels: Vec<(Box<str>, Box<str>)> = labels
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect();
        labels.sort();
        Arc::new(SeriesDef {
            metric: metric.into(),
            labels: labels.into(),
            kind: MetricKind::Counter,
            bounds: Box::new([]),
        })
    }

    #[test]
    fn disabled_advice_says_nothing() {
        let facts = Facts {
            gauges: vec![(
                def(
                    "dnsbl_listed",
                    &[("host", "mx1"), ("ip", "192.0.2.1"), ("list", "x")],
                ),
                1.0,
            )],
            ..Facts::default()
        };
        assert_eq!(advise(&AdviceConfig::default(), &facts).len(), 1);
        let off = AdviceConfig {
            enabled: false,
            ..AdviceConfig::default()
        };
        assert!(advise(&off, &facts).is_empty());
    }
}
