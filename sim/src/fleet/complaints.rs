//! Feedback-loop complaints on every simulated host, read as a real agent reads them
//! ([`mailpulse_agent::complaints`]).
//!
//! Mailbox providers with a feedback loop send an ARF report (RFC 5965) for every message one
//! of their users marks as spam; each host's agent reads the reports from its Maildir every
//! interval and counts `complaints{host, sender, sender_domain, ip, feedback_type}`. Here:
//!
//! - the generator records its remote deliveries; each recipient delivered at a provider with a
//!   feedback loop (Microsoft, Yahoo and AOL, GMX and WEB.DE, Comcast, Mail.ru) draws a
//!   complaint with the host's `complaint_rate` (traffic key, default 0.1 %): about one a day
//!   on a host of 5 000 messages a day, spread over its senders. Notifications (null sender)
//!   draw none;
//! - mail a `compromised_account` incident sends (the account's mail queued while it is
//!   active) draws complaints with the incident's `complaint_rate` (default 25 %) instead: a
//!   burst on the account's address;
//! - a report arrives a minute plus an exponential delay (mean 20 minutes, at most 3 hours)
//!   after the delivery, time for the recipient to open the message and the provider to send
//!   the report. It is read by the poll of the window it arrives in.
//!
//! Each report is written as the provider would send it (`Feedback-Type: abuse`, the envelope
//! sender, the recipient, the host's sending address of the instance that delivered it as
//! `Source-IP`, the original headers) and counted by the agent's own [`Tally`], so labels and
//! bounds (at most `max_senders` senders by name per poll) are the agent's. The choices come
//! from a random stream of their own per host, seeded from the scenario's seed: the logs stay as
//! they are, and the same scenario gives the same complaints.

use std::collections::BTreeMap;

use mailpulse_agent::complaints::{ComplaintsConfig, Tally};
use mailpulse_agent::parse::time::civil_from_days;
use mailpulse_proto::v1 as pb;

use super::incident::Effect;
use super::{HostSimulation, Scenario};
use crate::synth::format::Ip;
use crate::synth::hooks::Delivery;
use crate::synth::rng::Rng;

const SECOND: i64 = 1_000_000;

/// Shortest time from a delivery to its complaint's report.
const MIN_DELAY: i64 = 60 * SECOND;
/// Mean of the exponential part of that time.
const MEAN_EXTRA_DELAY: f64 = 1_200.0 * SECOND as f64;
/// Longest time from a delivery to its report.
const MAX_DELAY: i64 = 3 * 3600 * SECOND;

/// A provider's feedback loop: the domains it reports for and how its reports look.
#[derive(Debug)]
struct FeedbackLoop {
    domains: &'static [&'static str],
    /// Address the reports come from.
    from: &'static str,
    user_agent: &'static str,
    /// `Reporting-MTA` host.
    mta: &'static str,
}

const FEEDBACK_LOOPS: &[FeedbackLoop] = &[
    FeedbackLoop {
        domains: &["outlook.com", "hotmail.com", "live.com", "hotmail.fr"],
        from: "staff@hotmail.com",
        user_agent: "Microsoft JMRP/1.0",
        mta: "hotmail.com",
    },
    FeedbackLoop {
        domains: &["yahoo.com", "yahoo.fr", "aol.com"],
        from: "feedbackloop@comply.yahoo.net",
        user_agent: "Yahoo!-Mail-Feedback/2.0",
        mta: "mta.yahoo.com",
    },
    FeedbackLoop {
        domains: &["gmx.de", "web.de", "gmx.net"],
        from: "fbl@fbl.gmx.net",
        user_agent: "UI-Feedback-Loop/1.0",
        mta: "mx.gmx.net",
    },
    FeedbackLoop {
        domains: &["comcast.net"],
        from: "feedbackloop@comcast.net",
        user_agent: "Comcast-FBL/1.0",
        mta: "mx.comcast.net",
    },
    FeedbackLoop {
        domains: &["mail.ru"],
        from: "fbl@corp.mail.ru",
        user_agent: "Mail.Ru-FBL/1.0",
        mta: "mx.mail.ru",
    },
];

/// The feedback loop that reports for the recipient's domain, if any.
fn feedback_loop(rcpt: &str) -> Option<&'static FeedbackLoop> {
    let domain = rcpt.rsplit_once('@')?.1;
    FEEDBACK_LOOPS
        .iter()
        .find(|fbl| fbl.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
}

/// What a compromised account sends while its incident is active.
#[derive(Debug, Clone)]
struct Campaign {
    sender: String,
    start_us: i64,
    end_us: i64,
    complaint_rate: f64,
}

/// A complaint on its way: the delivery complained about and the provider reporting it.
#[derive(Debug, Clone)]
struct Complaint {
    delivery: Delivery,
    fbl: &'static FeedbackLoop,
}

/// One host's feedback-loop complaints; see the module documentation.
#[derive(Debug)]
pub(crate) struct HostComplaints {
    rng: Rng,
    complaint_rate: f64,
    campaigns: Vec<Campaign>,
    main_ip: Ip,
    out_ip: Ip,
    /// Where the feedback loops send their reports (`fbl@<sending domain>`).
    report_to: String,
    max_senders: usize,
    /// Reports not read yet, by (arrival Unix µs, sequence).
    pending: BTreeMap<(i64, u64), Complaint>,
    seq: u64,
    deliveries: Vec<Delivery>,
}

impl Scenario {
    /// The complaints of the host at `index`, or `None` past the last host.
    pub(crate) fn host_complaints(&self, index: usize) -> Option<HostComplaints> {
        let plan = self.hosts.get(index)?;
        let campaigns = self
            .incidents
            .iter()
            .filter(|i| i.hosts.contains(&index))
            .filter_map(|i| match &i.effect {
                Effect::CompromisedAccount {
                    sasl_user,
                    complaint_rate,
                    ..
                } => Some(Campaign {
                    sender: sasl_user.clone(),
                    start_us: i.start_us,
                    end_us: i.end_us,
                    complaint_rate: *complaint_rate,
                }),
                _ => None,
            })
            .collect();
        Some(HostComplaints {
            rng: Rng::new(self.seed ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            complaint_rate: plan.traffic.complaint_rate,
            campaigns,
            main_ip: plan.main_ip,
            out_ip: plan.out_ip,
            report_to: format!("fbl@{}", plan.local_domains[0]),
            max_senders: ComplaintsConfig::default().max_senders,
            pending: BTreeMap::new(),
            seq: 0,
            deliveries: Vec::new(),
        })
    }
}

impl HostComplaints {
    /// Takes the deliveries `sim` made since the last poll, draws their complaints, and returns
    /// the samples of the reports that arrived before `until_unix_secs` (the agent's poll at
    /// its last second), in the window of `window_secs` holding that poll; empty when none did.
    pub(crate) fn poll(
        &mut self,
        sim: &mut HostSimulation,
        until_unix_secs: i64,
        window_secs: u32,
    ) -> Vec<pb::Sample> {
        sim.take_deliveries(&mut self.deliveries);
        let mut deliveries = std::mem::take(&mut self.deliveries);
        for delivery in deliveries.drain(..) {
            self.consider(delivery);
        }
        self.deliveries = deliveries;
        let until = until_unix_secs.saturating_mul(SECOND);
        let mut tally = Tally::default();
        let mut read = false;
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 >= until {
                break;
            }
            let arrived = entry.key().0;
            let complaint = entry.remove();
            let report = self.report(&complaint, arrived);
            tally.add(report.as_bytes(), self.max_senders);
            read = true;
        }
        if !read {
            return Vec::new();
        }
        let now_ms = (until_unix_secs - 1).saturating_mul(1000);
        tally.samples(sim.host(), now_ms, window_secs)
    }

    /// Draws whether `delivery` is complained about and, if so, when the report arrives.
    fn consider(&mut self, delivery: Delivery) {
        if delivery.sender.is_empty() {
            return;
        }
        let Some(fbl) = feedback_loop(&delivery.rcpt) else {
            return;
        };
        let rate = self
            .campaigns
            .iter()
            .find(|c| {
                c.sender == delivery.sender && (c.start_us..c.end_us).contains(&delivery.queued_at)
            })
            .map_or(self.complaint_rate, |c| c.complaint_rate);
        if !self.rng.chance(rate) {
            return;
        }
        let delay = MIN_DELAY + self.rng.exponential(MEAN_EXTRA_DELAY) as i64;
        let at = delivery.at.saturating_add(delay.min(MAX_DELAY));
        self.seq += 1;
        self.pending
            .insert((at, self.seq), Complaint { delivery, fbl });
    }

    /// The ARF report of `c`, arrived at `arrived` (Unix µs), as the provider sends it.
    fn report(&self, c: &Complaint, arrived: i64) -> String {
        let d = &c.delivery;
        let ip = if d.outbound_instance {
            self.out_ip
        } else {
            self.main_ip
        };
        let boundary = format!("fbl_{:x}_{:x}", arrived, d.at);
        let received = rfc2822(d.at.div_euclid(SECOND));
        format!(
            "From: <{from}>\r\n\
             Date: {date}\r\n\
             Subject: FW: complaint about a message from {sender}\r\n\
             To: <{to}>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report;\r\n\
             \tboundary=\"{boundary}\"\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             \r\n\
             This is an email abuse report for an email message received from IP {ip} on {received}.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: message/feedback-report\r\n\
             \r\n\
             Feedback-Type: abuse\r\n\
             User-Agent: {user_agent}\r\n\
             Version: 1\r\n\
             Original-Mail-From: <{sender}>\r\n\
             Original-Rcpt-To: <{rcpt}>\r\n\
             Arrival-Date: {received}\r\n\
             Reporting-MTA: dns; {mta}\r\n\
             Source-IP: {ip}\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             Return-Path: <{sender}>\r\n\
             From: <{sender}>\r\n\
             To: <{rcpt}>\r\n\
             Message-ID: {message_id}\r\n\
             Date: {queued}\r\n\
             \r\n\
             --{boundary}--\r\n",
            from = c.fbl.from,
            date = rfc2822(arrived.div_euclid(SECOND)),
            sender = d.sender,
            to = self.report_to,
            user_agent = c.fbl.user_agent,
            rcpt = d.rcpt,
            mta = c.fbl.mta,
            message_id = d.message_id,
            queued = rfc2822(d.queued_at.div_euclid(SECOND)),
        )
    }
}

/// `Sat, 12 Oct 2024 01:23:45 +0000`.
fn rfc2822(unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = unix_secs.rem_euclid(86_400);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m as usize).clamp(1, 12) - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use mailpulse_agent::complaints::arf;
    use mailpulse_proto::v1::sample;

    use super::*;
    use crate::fleet::simulate_samples;

    fn scenario(text: &str) -> Scenario {
        match Scenario::parse(Path::new("complaints.toml"), text) {
            Ok(s) => s,
            Err(e) => panic!("test scenario should be valid: {e}"),
        }
    }

    /// Two busy days of one host; a compromised account sends spam on the second night.
    const TWO_DAYS: &str = r#"
seed = 3
start = 2024-10-07T00:00:00Z
days = 2
[traffic]
messages_per_day = 6000
[[hosts]]
name = "mx1"
[[incidents]]
kind = "compromised_account"
hosts = ["mx1"]
start = 2024-10-08T01:00:00Z
end = 2024-10-08T03:00:00Z
sasl_user = "j.martin@example.org"
"#;

    /// (window start, sender, sender_domain, ip, feedback_type, count) of every complaint
    /// sample of the feed, checking that each carries the agent's labels as a counter.
    fn complaints(s: &Scenario, window_secs: u32) -> Vec<(i64, [String; 4], f64)> {
        let mut out = Vec::new();
        simulate_samples(s, window_secs, |host, samples| {
            for x in samples.iter().filter(|x| x.metric == "complaints") {
                let names: Vec<&str> = x.labels.iter().map(|l| l.name.as_str()).collect();
                assert_eq!(
                    names,
                    ["host", "sender", "sender_domain", "ip", "feedback_type"]
                );
                assert_eq!(x.labels[0].value, host);
                let Some(sample::Value::CounterDelta(n)) = x.value else {
                    panic!("complaints is a counter: {x:?}");
                };
                let labels = [1, 2, 3, 4].map(|i| x.labels[i].value.clone());
                out.push((x.window_start_unix_ms / 1000, labels, n));
            }
        });
        out
    }

    #[test]
    fn a_compromised_account_draws_a_burst_of_complaints_on_its_sender() {
        let s = scenario(TWO_DAYS);
        let all = complaints(&s, 300);
        let incident_start = 1_728_349_200; // 2024-10-08T01:00:00Z
        let incident_end = incident_start + 2 * 3600;
        let mut spam = 0.0;
        let mut baseline = 0.0;
        let mut senders = BTreeMap::new();
        for (at, [sender, domain, ip, kind], n) in &all {
            assert_eq!(kind, "abuse");
            if sender == "j.martin@example.org"
                && (incident_start..incident_end + 3 * 3600).contains(at)
            {
                spam += n;
                assert_eq!(domain, "example.org");
                assert_eq!(ip, "198.51.100.10", "sent by the main instance");
            } else {
                baseline += n;
                *senders.entry(sender.clone()).or_insert(0.0) += n;
                assert!(
                    ip == "198.51.100.10" || ip == "198.51.100.11",
                    "one of the host's sending addresses: {ip}"
                );
            }
        }
        assert!(spam >= 20.0, "a burst on the stolen account: {spam}");
        assert!(
            (1.0..=8.0).contains(&baseline),
            "one or two complaints a day otherwise: {baseline} from {senders:?}"
        );
        let during: f64 = all
            .iter()
            .filter(|(at, _, _)| (incident_start..incident_end).contains(at))
            .map(|(_, _, n)| n)
            .sum();
        assert!(
            during >= 0.6 * spam,
            "most of the burst comes while the spam goes out: {during} of {spam}"
        );
    }

    #[test]
    fn complaints_are_the_same_whatever_the_window() {
        let s = scenario(TWO_DAYS);
        let per_day = |window_secs| -> BTreeMap<(i64, [String; 4]), f64> {
            let mut out = BTreeMap::new();
            for (at, labels, n) in complaints(&s, window_secs) {
                *out.entry((at.div_euclid(3600), labels)).or_insert(0.0) += n;
            }
            out
        };
        let a = per_day(300);
        assert!(!a.is_empty());
        assert_eq!(a, per_day(600), "the same reports, read per hour");
        assert_eq!(a, per_day(300), "and the same again");
    }

    #[test]
    fn reports_are_read_by_the_agents_parser() {
        let s = scenario(TWO_DAYS);
        let complaints = s.host_complaints(0).expect("one host");
        let delivery = Delivery {
            at: 1_728_300_000 * SECOND,
            queued_at: 1_728_299_990 * SECOND,
            outbound_instance: true,
            sender: "newsletter@example.org".into(),
            rcpt: "someone@hotmail.com".into(),
            message_id: "<abc@example.org>".into(),
        };
        let fbl = feedback_loop(&delivery.rcpt).expect("Microsoft has a feedback loop");
        let report = complaints.report(&Complaint { delivery, fbl }, 1_728_301_000 * SECOND);
        let c = arf::parse(report.as_bytes()).expect("a feedback report");
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.sender.as_deref(), Some("newsletter@example.org"));
        assert_eq!(c.sender_domain.as_deref(), Some("example.org"));
        assert_eq!(
            c.source_ip.map(|ip| ip.to_string()).as_deref(),
            Some("198.51.100.11")
        );
        assert!(
            report.contains("Date: Mon, 7 Oct 2024 11:36:40 +0000"),
            "{report}"
        );
        assert!(feedback_loop("a@gmail.com").is_none());
        assert!(feedback_loop("a@AOL.com").is_some());
    }
}
