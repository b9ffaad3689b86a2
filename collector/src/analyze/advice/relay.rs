//! `relay_failing`: one MX target (relay) of a destination domain fails where the domain's
//! other targets deliver — per sending host, over the lookback, with the mean delivery delay
//! through each side beside it.
//!
//! Only failures the target itself answered are attributed to it: Postfix logs a connection
//! that failed with `relay=none`, which names no target.

use std::collections::BTreeMap;

use super::{AdviceConfig, Facts, alert};
use crate::analyze::Alert;
use crate::store::OTHER_LABEL_VALUE as OTHER;

/// The agents' value for a label they could not read.
const UNKNOWN: &str = "unknown";

pub const NAME: &str = "relay_failing";

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    attempts: f64,
    failures: f64,
    delays: u64,
    delay_sum: f64,
}

impl Tally {
    fn failure_share(&self) -> f64 {
        if self.attempts > 0.0 {
            self.failures / self.attempts
        } else {
            0.0
        }
    }

    fn add(&mut self, other: &Tally) {
        self.attempts += other.attempts;
        self.failures += other.failures;
        self.delays += other.delays;
        self.delay_sum += other.delay_sum;
    }

    fn mean_delay(&self) -> String {
        if self.delays == 0 {
            "n/a".into()
        } else {
            format!("{:.1} s", self.delay_sum / self.delays as f64)
        }
    }
}

/// (host, domain) → relay → tally.
type Table<'a> = BTreeMap<(&'a str, &'a str), BTreeMap<&'a str, Tally>>;

fn named(v: &str) -> bool {
    !v.is_empty() && v != OTHER && v != UNKNOWN && v != "none"
}

/// The (host, domain, relay) of a series, when all three are named.
fn slot(def: &crate::model::SeriesDef) -> Option<(&str, &str, &str)> {
    let (host, domain, relay) = (
        def.label("host")?,
        def.label("domain")?,
        def.label("relay")?,
    );
    (named(domain) && named(relay)).then_some((host, domain, relay))
}

/// One alert per (host, domain, relay) failing beside the domain's other relays.
pub fn failing(cfg: &AdviceConfig, facts: &Facts) -> Vec<Alert> {
    let mut table: Table = BTreeMap::new();
    for (def, value) in &facts.counts {
        let failed = match &*def.metric {
            "messages_delivered" => false,
            "messages_deferred" | "messages_bounced" => true,
            _ => continue,
        };
        let Some((host, domain, relay)) = slot(def) else {
            continue;
        };
        let t = table
            .entry((host, domain))
            .or_default()
            .entry(relay)
            .or_default();
        t.attempts += value;
        if failed {
            t.failures += value;
        }
    }
    for (def, n, sum) in &facts.histograms {
        if &*def.metric != "delivery_delay_seconds" {
            continue;
        }
        let Some((host, domain, relay)) = slot(def) else {
            continue;
        };
        let t = table
            .entry((host, domain))
            .or_default()
            .entry(relay)
            .or_default();
        t.delays += n;
        t.delay_sum += sum;
    }
    let mut out = Vec::new();
    for ((host, domain), relays) in &table {
        for (relay, t) in relays {
            let mut others = Tally::default();
            for (_, o) in relays.iter().filter(|(r, _)| *r != relay) {
                others.add(o);
            }
            if t.attempts < cfg.min_attempts
                || others.attempts < cfg.min_attempts
                || t.failure_share() < cfg.relay_failure_share
                || others.failure_share() >= cfg.relay_failure_share / 3.0
            {
                continue;
            }
            out.push(alert(
                NAME,
                vec![
                    ("host", (*host).to_owned()),
                    ("domain", (*domain).to_owned()),
                    ("relay", (*relay).to_owned()),
                ],
                facts,
                format!(
                    "{relay} failed {:.0} % of {:.0} attempts for {domain} in the last {} min, \
                     the domain's other MX targets {:.0} % of {:.0} (mean delay {} vs {})",
                    t.failure_share() * 100.0,
                    t.attempts,
                    cfg.lookback_secs / 60,
                    others.failure_share() * 100.0,
                    others.attempts,
                    t.mean_delay(),
                    others.mean_delay(),
                ),
                format!(
                    "One MX target of {domain} fails while its others deliver: the mail gets \
                     through on retry via the other targets, later. Read {relay}'s replies \
                     (`grep 'relay={relay}' /var/log/mail.log | grep -v status=sent | tail`); \
                     a block of {host}'s IP there is worth a note to {domain}'s postmaster, a \
                     rate limit calls for a slower rate (playbook throttle-destination)."
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::def;
    use super::*;

    #[test]
    fn a_failing_target_beside_healthy_ones_is_named_with_delays() {
        let labels = |relay| {
            [
                ("host", "out1"),
                ("domain", "example.org"),
                ("relay", relay),
            ]
        };
        let facts = Facts {
            counts: vec![
                (def("messages_delivered", &labels("a.mx.example.org")), 95.0),
                (def("messages_deferred", &labels("a.mx.example.org")), 5.0),
                (def("messages_delivered", &labels("b.mx.example.org")), 10.0),
                (def("messages_deferred", &labels("b.mx.example.org")), 60.0),
                (def("messages_bounced", &labels("b.mx.example.org")), 10.0),
                // Connection failures name no target.
                (def("messages_deferred", &labels("none")), 500.0),
            ],
            histograms: vec![
                (
                    def("delivery_delay_seconds", &labels("a.mx.example.org")),
                    95,
                    95.0,
                ),
                (
                    def("delivery_delay_seconds", &labels("b.mx.example.org")),
                    10,
                    400.0,
                ),
            ],
            ..Facts::default()
        };
        let alerts = failing(&AdviceConfig::default(), &facts);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.label("relay"), Some("b.mx.example.org"));
        assert_eq!(
            a.peak_detail,
            "b.mx.example.org failed 88 % of 80 attempts for example.org in the last 15 min, \
             the domain's other MX targets 5 % of 100 (mean delay 40.0 s vs 1.0 s)"
        );
    }

    #[test]
    fn a_domain_failing_everywhere_is_no_relay_advice() {
        let labels = |relay| {
            [
                ("host", "out1"),
                ("domain", "example.org"),
                ("relay", relay),
            ]
        };
        let facts = Facts {
            counts: vec![
                (def("messages_deferred", &labels("a.mx.example.org")), 50.0),
                (def("messages_deferred", &labels("b.mx.example.org")), 50.0),
            ],
            ..Facts::default()
        };
        assert!(failing(&AdviceConfig::default(), &facts).is_empty());
    }
}
