//! Independent counts over a Postfix log, written with plain string matching.
//!
//! This deliberately shares no code with the agent's parsers: it is the second opinion the
//! integration tests compare `mailpulse parse --summary json` against. Definitions follow the
//! summary's documented ones:
//! - `received`: distinct queue ids with a qmgr `from=<…>` line (the line repeats on every retry);
//! - `delivered` / `deferred` / `bounced`: delivery-agent lines with `status=sent|deferred|bounced`;
//! - `deferred_messages`: distinct queue ids with at least one `status=deferred` line;
//! - `expired`: qmgr `status=expired` lines (one per message);
//! - `rejected`: smtpd/postscreen `NOQUEUE: reject:` lines;
//! - `held`: smtpd/cleanup `hold:` lines (`NOQUEUE: hold:` when the first recipient is held).

use std::collections::{BTreeMap, BTreeSet};

/// Counts by outcome, for one recipient domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainCounts {
    pub delivered: usize,
    pub deferred: usize,
    pub bounced: usize,
}

/// Counts by outcome and the `delay=` values of delivered recipients, for one relay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayCounts {
    pub delivered: usize,
    pub deferred: usize,
    pub bounced: usize,
    /// `delay=` of the `status=sent` lines, in log order.
    pub sent_delays_secs: Vec<f64>,
}

/// One delivery-agent recipient line: `QID: to=<…>, relay=…, delay=…, …, status=…`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryLine {
    pub service: String,
    pub queue_id: String,
    pub to: String,
    pub relay: String,
    pub delay_secs: f64,
    pub status: String,
}

/// What a Postfix log contains, counted line by line.
#[derive(Debug, Clone, Default)]
pub struct MaillogCounts {
    pub lines: usize,
    pub received: usize,
    pub delivered: usize,
    pub deferred: usize,
    pub deferred_messages: usize,
    pub bounced: usize,
    pub expired: usize,
    pub rejected: usize,
    pub held: usize,
    pub discarded: usize,
    /// smtpd `QID: client=…` lines: messages that came in over SMTP (pflogsumm's "received").
    pub smtpd_received: usize,
    /// bounce daemon `QID: sender non-delivery notification: NEWQID` lines.
    pub bounce_notices: usize,
    /// `warning:`, `error:`, `fatal:`, `panic:` lines, verbatim.
    pub diagnostics: Vec<String>,
    pub by_recipient_domain: BTreeMap<String, DomainCounts>,
    pub by_relay: BTreeMap<String, RelayCounts>,
    pub deliveries: Vec<DeliveryLine>,
}

impl MaillogCounts {
    /// Counts every line of `log`.
    pub fn from_log(log: &str) -> Self {
        let mut counts = Self::default();
        let mut received_ids = BTreeSet::new();
        let mut deferred_ids = BTreeSet::new();
        for line in log.lines() {
            counts.lines += 1;
            let Some((service, message)) = split_line(line) else {
                continue;
            };
            counts.count_message(service, message, &mut received_ids, &mut deferred_ids);
        }
        counts.received = received_ids.len();
        counts.deferred_messages = deferred_ids.len();
        counts
    }

    /// `delay=` of every `status=sent` line.
    pub fn sent_delays_secs(&self) -> Vec<f64> {
        self.deliveries
            .iter()
            .filter(|d| d.status == "sent")
            .map(|d| d.delay_secs)
            .collect()
    }

    fn count_message<'a>(
        &mut self,
        service: &str,
        message: &'a str,
        received_ids: &mut BTreeSet<&'a str>,
        deferred_ids: &mut BTreeSet<&'a str>,
    ) {
        if ["warning: ", "error: ", "fatal: ", "panic: "]
            .iter()
            .any(|p| message.starts_with(p))
        {
            self.diagnostics.push(message.to_string());
            return;
        }
        let (queue_id, rest) = match message.split_once(": ") {
            Some((id, rest)) if is_queue_id(id) || id == "NOQUEUE" => (id, rest),
            _ => return,
        };
        let smtpd_like = matches!(service, "smtpd" | "postscreen");
        if smtpd_like && queue_id == "NOQUEUE" && rest.starts_with("reject: ") {
            self.rejected += 1;
        }
        if matches!(service, "smtpd" | "cleanup") && rest.starts_with("hold: ") {
            self.held += 1;
        }
        if matches!(service, "smtpd" | "cleanup") && rest.starts_with("discard: ") {
            self.discarded += 1;
        }
        if service == "smtpd" && rest.starts_with("client=") {
            self.smtpd_received += 1;
        }
        if service == "bounce" && rest.starts_with("sender non-delivery notification: ") {
            self.bounce_notices += 1;
        }
        if service == "qmgr" && rest.starts_with("from=<") {
            if rest.contains(", status=expired") {
                self.expired += 1;
            } else {
                received_ids.insert(queue_id);
            }
        }
        if let Some(delivery) = delivery_line(service, queue_id, rest) {
            let domain = delivery
                .to
                .rsplit_once('@')
                .map_or("", |(_, d)| d)
                .to_ascii_lowercase();
            let by_domain = self.by_recipient_domain.entry(domain).or_default();
            let by_relay = self.by_relay.entry(delivery.relay.clone()).or_default();
            match delivery.status.as_str() {
                "sent" => {
                    self.delivered += 1;
                    by_domain.delivered += 1;
                    by_relay.delivered += 1;
                    by_relay.sent_delays_secs.push(delivery.delay_secs);
                }
                "deferred" => {
                    self.deferred += 1;
                    by_domain.deferred += 1;
                    by_relay.deferred += 1;
                    deferred_ids.insert(queue_id);
                }
                "bounced" => {
                    self.bounced += 1;
                    by_domain.bounced += 1;
                    by_relay.bounced += 1;
                }
                _ => {}
            }
            self.deliveries.push(delivery);
        }
    }
}

/// `Mmm dd hh:mm:ss host postfix/service[pid]: message` → (`service`, `message`).
///
/// Also accepts `postfix/postfix-script[pid]:` and multi-part syslog names
/// (`postfix-out/smtp[pid]:` gives `smtp`).
pub fn split_line(line: &str) -> Option<(&str, &str)> {
    let (head, message) = line.split_once("]: ")?;
    let tag = head.rsplit_once(' ')?.1;
    let (program, _pid) = tag.split_once('[')?;
    let service = program.rsplit_once('/').map_or(program, |(_, s)| s);
    Some((service, message))
}

/// Postfix short (hex) or long (base-52 + `z` + inode) queue ids.
fn is_queue_id(id: &str) -> bool {
    (6..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn delivery_line(service: &str, queue_id: &str, rest: &str) -> Option<DeliveryLine> {
    let to = rest.strip_prefix("to=<")?.split_once('>')?.0;
    let field = |name: &str| -> Option<&str> {
        let start = rest.find(&format!(", {name}="))? + name.len() + 3;
        let value = &rest[start..];
        Some(value.split([',', ' ']).next().unwrap_or(value))
    };
    Some(DeliveryLine {
        service: service.to_string(),
        queue_id: queue_id.to_string(),
        to: to.to_string(),
        relay: field("relay")?.to_string(),
        delay_secs: field("delay")?.parse().ok()?,
        status: field("status")?.to_string(),
    })
}

/// Nearest-rank percentile (`q` in 0..=1) of `values`; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
Nov 25 13:11:29 mx postfix/master[7126]: daemon started -- version 3.7.11, configuration /tmp/x
Nov 25 13:11:32 mx postfix/smtpd[7150]: 9926998C19C: client=unknown[127.0.0.1]
Nov 25 13:11:32 mx postfix/qmgr[7128]: 9926998C19C: from=<s@sender.test>, size=421, nrcpt=1 (queue active)
Nov 25 13:11:32 mx postfix/smtp[7153]: 9926998C19C: to=<a@refused.test>, relay=none, delay=0.03, delays=0.01/0.01/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:25993: Connection refused)
Nov 25 13:11:42 mx postfix/qmgr[7128]: 9926998C19C: from=<s@sender.test>, size=421, nrcpt=1 (queue active)
Nov 25 13:11:42 mx postfix/smtp[7153]: 9926998C19C: to=<a@refused.test>, relay=none, delay=10, delays=10/0.01/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:25993: Connection refused)
Nov 25 13:11:45 mx postfix/qmgr[7128]: 9926998C19C: from=<s@sender.test>, status=expired, returned to sender
Nov 25 13:11:32 mx postfix/smtpd[7150]: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <blocked@ok.test>: Recipient address rejected: blocked by test policy; from=<s@sender.test> to=<blocked@ok.test> proto=ESMTP helo=<client.test>
Nov 25 13:11:32 mx postfix/smtpd[7150]: NOQUEUE: hold: RCPT from unknown[127.0.0.1]: <hold@ok.test>: Recipient address held by test policy; from=<s@sender.test> to=<hold@ok.test> proto=ESMTP helo=<client.test>
Nov 25 13:11:33 mx postfix/smtp[7154]: A1B2C3D4E5: to=<x@ok.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SINK000001)
";

    #[test]
    fn counts_follow_the_summary_definitions() {
        let c = MaillogCounts::from_log(LOG);
        assert_eq!(c.lines, 10);
        assert_eq!(c.received, 1, "qmgr from= counted once per queue id");
        assert_eq!((c.deferred, c.deferred_messages), (2, 1));
        assert_eq!((c.expired, c.rejected, c.held, c.delivered), (1, 1, 1, 1));
        assert_eq!(c.smtpd_received, 1);
        assert_eq!(c.by_recipient_domain["refused.test"].deferred, 2);
        assert_eq!(
            c.by_relay["127.0.0.1[127.0.0.1]:2525"].sent_delays_secs,
            [0.2]
        );
        assert_eq!(c.by_relay["none"].deferred, 2);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.95), Some(5.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
