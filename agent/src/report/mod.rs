//! Whole-log summaries of message events: the numbers behind `mailpulse parse`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::pipeline::LineStats;
use crate::track::{EventKind, MessageEvent};

/// Most SASL users listed in a summary.
pub const TOP_SASL_USERS: usize = 100;
/// Most reject reasons listed in a summary.
pub const TOP_REJECT_REASONS: usize = 50;

/// Per recipient domain counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DomainCounts {
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

/// Per relay counters and delivery delay percentiles (over delivered recipients).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RelayCounts {
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub delay_p50_secs: Option<f64>,
    pub delay_p95_secs: Option<f64>,
}

/// Delay percentiles over delivered recipients (nearest-rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DelayPercentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// The summary of a whole log, as printed by `mailpulse parse --summary json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub lines: u64,
    pub unparsed: u64,
    /// New messages (first qmgr `from=` line of each queue id).
    pub received: u64,
    /// `status=sent` recipient lines.
    pub delivered: u64,
    /// `status=deferred` lines.
    pub deferred: u64,
    /// Distinct messages (queue ids) deferred at least once.
    pub deferred_messages: u64,
    /// `status=bounced` lines.
    pub bounced: u64,
    pub expired: u64,
    /// smtpd and postscreen reject lines, and cleanup header/body/milter rejects.
    pub rejected: u64,
    pub held: u64,
    pub discarded: u64,
    pub by_recipient_domain: BTreeMap<String, DomainCounts>,
    pub by_relay: BTreeMap<String, RelayCounts>,
    pub by_sasl_user: BTreeMap<String, u64>,
    pub reject_reasons: BTreeMap<String, u64>,
    pub delay_secs: DelayPercentiles,
}

/// Accumulates events; [`SummaryBuilder::finish`] yields the [`Summary`].
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    summary: Summary,
    delays: Vec<f64>,
    relays: HashMap<String, (RelayCounts, Vec<f64>)>,
    sasl_users: HashMap<String, u64>,
    reject_reasons: HashMap<String, u64>,
}

impl SummaryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, ev: &MessageEvent) {
        let s = &mut self.summary;
        match ev.kind {
            EventKind::Received => {
                s.received += 1;
                if let Some(user) = &ev.sasl_user {
                    *self.sasl_users.entry(user.to_string()).or_default() += 1;
                }
            }
            EventKind::Delivered => s.delivered += 1,
            EventKind::Deferred => {
                s.deferred += 1;
                s.deferred_messages += u64::from(ev.first_deferral);
            }
            EventKind::Bounced => s.bounced += 1,
            EventKind::Expired => s.expired += 1,
            EventKind::Rejected => {
                s.rejected += 1;
                let reason = ev
                    .status_text
                    .as_deref()
                    .map(reject_reason_key)
                    .unwrap_or_else(|| "(no reason logged)".to_owned());
                *self.reject_reasons.entry(reason).or_default() += 1;
            }
            EventKind::Held => s.held += 1,
            EventKind::Discarded => s.discarded += 1,
            EventKind::Released => {}
        }
        if !matches!(
            ev.kind,
            EventKind::Delivered | EventKind::Deferred | EventKind::Bounced
        ) {
            return;
        }
        let domain = ev
            .recipient
            .as_deref()
            .map(recipient_domain)
            .unwrap_or_else(|| "(none)".to_owned());
        let d = s.by_recipient_domain.entry(domain).or_default();
        let relay = ev
            .relay
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "(none)".to_owned());
        let (r, relay_delays) = self.relays.entry(relay).or_default();
        match ev.kind {
            EventKind::Delivered => {
                d.delivered += 1;
                r.delivered += 1;
                if let Some(delay) = ev.delay_secs {
                    self.delays.push(delay);
                    relay_delays.push(delay);
                }
            }
            EventKind::Deferred => {
                d.deferred += 1;
                r.deferred += 1;
            }
            _ => {
                d.bounced += 1;
                r.bounced += 1;
            }
        }
    }

    pub fn finish(mut self, stats: LineStats) -> Summary {
        let mut s = self.summary;
        s.lines = stats.lines;
        s.unparsed = stats.unparsed;
        self.delays.sort_by(f64::total_cmp);
        s.delay_secs = DelayPercentiles {
            p50: percentile(&self.delays, 0.50),
            p95: percentile(&self.delays, 0.95),
            p99: percentile(&self.delays, 0.99),
            max: self.delays.last().copied(),
        };
        s.by_relay = self
            .relays
            .into_iter()
            .map(|(relay, (mut counts, mut delays))| {
                delays.sort_by(f64::total_cmp);
                counts.delay_p50_secs = percentile(&delays, 0.50);
                counts.delay_p95_secs = percentile(&delays, 0.95);
                (relay, counts)
            })
            .collect();
        s.by_sasl_user = top_k(self.sasl_users, TOP_SASL_USERS);
        s.reject_reasons = top_k(self.reject_reasons, TOP_REJECT_REASONS);
        s
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The `k` largest counts (ties broken by name, so output is deterministic).
fn top_k(counts: HashMap<String, u64>, k: usize) -> BTreeMap<String, u64> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v.into_iter().collect()
}

/// Lower-cased domain of an address; `(local)` for a bare local part.
pub fn recipient_domain(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() => domain.to_ascii_lowercase(),
        _ => "(local)".to_owned(),
    }
}

/// Groups reject replies that differ only in addresses, client names and IPs:
/// `554 5.7.1 <x@y>: Relay access denied` → `554 5.7.1 Relay access denied`;
/// `… Client host [192.0.2.1] blocked using zen.spamhaus.org; https://…` → `… Client host [*]
/// blocked using zen.spamhaus.org`.
pub fn reject_reason_key(reply: &str) -> String {
    let mut out = String::with_capacity(reply.len().min(160));
    let mut rest = reply;
    // Keep the reply code and enhanced status code.
    for _ in 0..2 {
        if let Some((word, tail)) = rest.split_once(' ')
            && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && !word.is_empty()
        {
            out.push_str(word);
            out.push(' ');
            rest = tail;
        }
    }
    // Drop the `<address>: ` or `host[ip]: ` the reason is about.
    if let Some(colon) = rest.find(": ")
        && (rest.starts_with('<') || rest[..colon].ends_with(']'))
    {
        rest = &rest[colon + 2..];
    }
    // Cut at the first `; ` (postscreen/smtpd append `; from=<…>` and DNSBL URLs after it).
    // "Service unavailable" alone says nothing: keep the clause after it (the DNSBL hit).
    let mut cut_from = 0;
    if let Some(i) = rest.find("; ")
        && rest[..i].ends_with("Service unavailable")
    {
        cut_from = i + 2;
    }
    if let Some(i) = rest[cut_from..].find("; ") {
        rest = &rest[..cut_from + i];
    }
    let mut depth = 0;
    for c in rest.chars() {
        match c {
            '[' => {
                depth += 1;
                if depth == 1 {
                    out.push_str("[*]");
                }
            }
            ']' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            c => out.push(c),
        }
        if out.len() >= 160 {
            break;
        }
    }
    let trimmed = out.trim_end_matches([' ', ';', ',']).len();
    out.truncate(trimmed);
    out
}

impl Summary {
    /// A plain-text report in the spirit of pflogsumm.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "Grand Totals\n------------");
        let rows = [
            ("lines", self.lines),
            ("unparsed", self.unparsed),
            ("received", self.received),
            ("delivered", self.delivered),
            ("deferred", self.deferred),
            ("deferred messages", self.deferred_messages),
            ("bounced", self.bounced),
            ("expired", self.expired),
            ("rejected", self.rejected),
            ("held", self.held),
            ("discarded", self.discarded),
        ];
        for (name, n) in rows {
            let _ = writeln!(t, "{n:>10}   {name}");
        }
        let fmt_opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v}"));
        let d = &self.delay_secs;
        let _ = writeln!(
            t,
            "\nDelivery delay (s): p50 {}  p95 {}  p99 {}  max {}",
            fmt_opt(d.p50),
            fmt_opt(d.p95),
            fmt_opt(d.p99),
            fmt_opt(d.max)
        );

        let mut domains: Vec<_> = self.by_recipient_domain.iter().collect();
        domains.sort_by(|a, b| {
            let total = |c: &DomainCounts| c.delivered + c.deferred + c.bounced;
            total(b.1).cmp(&total(a.1)).then(a.0.cmp(b.0))
        });
        let _ = writeln!(t, "\nRecipients by Domain\n--------------------");
        let _ = writeln!(
            t,
            "{:>10} {:>10} {:>10}  domain",
            "delivered", "deferred", "bounced"
        );
        for (name, c) in domains.iter().take(50) {
            let _ = writeln!(
                t,
                "{:>10} {:>10} {:>10}  {name}",
                c.delivered, c.deferred, c.bounced
            );
        }

        let mut relays: Vec<_> = self.by_relay.iter().collect();
        relays.sort_by(|a, b| {
            let total = |c: &RelayCounts| c.delivered + c.deferred + c.bounced;
            total(b.1).cmp(&total(a.1)).then(a.0.cmp(b.0))
        });
        let _ = writeln!(t, "\nRelays\n------");
        let _ = writeln!(
            t,
            "{:>10} {:>10} {:>10} {:>8} {:>8}  relay",
            "delivered", "deferred", "bounced", "p50 s", "p95 s"
        );
        for (name, c) in relays.iter().take(50) {
            let _ = writeln!(
                t,
                "{:>10} {:>10} {:>10} {:>8} {:>8}  {name}",
                c.delivered,
                c.deferred,
                c.bounced,
                fmt_opt(c.delay_p50_secs),
                fmt_opt(c.delay_p95_secs)
            );
        }

        let ranked = |m: &BTreeMap<String, u64>| {
            let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        };
        let _ = writeln!(
            t,
            "\nMessages received by SASL user\n------------------------------"
        );
        for (user, n) in ranked(&self.by_sasl_user) {
            let _ = writeln!(t, "{n:>10}   {user}");
        }
        let _ = writeln!(t, "\nReject reasons\n--------------");
        for (reason, n) in ranked(&self.reject_reasons) {
            let _ = writeln!(t, "{n:>10}   {reason}");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn reject_reasons_group_by_meaning() {
        assert_eq!(
            reject_reason_key(
                "550 5.1.1 <toernooi@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
            ),
            "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table"
        );
        assert_eq!(
            reject_reason_key(
                "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.7"
            ),
            "554 5.7.1 Service unavailable; Client host [*] blocked using zen.spamhaus.org"
        );
        assert_eq!(
            reject_reason_key("454 4.7.1 <x@y.example>: Relay access denied"),
            "454 4.7.1 Relay access denied"
        );
        assert_eq!(
            reject_reason_key(
                "504 5.5.2 <aap@henk>: Sender address rejected: need fully-qualified address"
            ),
            "504 5.5.2 Sender address rejected: need fully-qualified address"
        );
    }

    #[test]
    fn domains_lowercased() {
        assert_eq!(recipient_domain("A@Gmail.COM"), "gmail.com");
        assert_eq!(recipient_domain("root"), "(local)");
    }
}
