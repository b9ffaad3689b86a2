//! A deterministic, seeded `postqueue -j` generator for tests and benchmarks.
//!
//! The output looks like Postfix's: one object per line with `": "` separators, a realistic mix
//! of queues (mostly `deferred`), 1–5 recipients per message (mostly one), a head of
//! `common_domains` domains that receive most mail plus a long tail of rarely repeated ones, and
//! `delay_reason` texts as Postfix writes them (connection failures, DNS errors, greylisting,
//! rate limits, full mailboxes, TLS, blocklists), some with JSON escapes (quoted local parts,
//! quoted replies). The same seed gives the same bytes on every build.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::synth::rng::Rng;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthQueueConfig {
    /// Seed of the generator.
    pub seed: u64,
    /// Queue entries (lines).
    pub entries: u64,
    /// The time arrival times are generated back from.
    pub now_unix_secs: i64,
    /// Domains that most recipients go to.
    pub common_domains: u64,
    /// Recipients (per mille) whose domain comes from the long tail, nearly each one distinct.
    pub long_tail_per_mille: u64,
}

impl Default for SynthQueueConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            entries: 10_000,
            now_unix_secs: 1_700_000_000,
            common_domains: 200,
            long_tail_per_mille: 150,
        }
    }
}

/// Big mailbox providers first: the head of the domain distribution.
const PROVIDERS: [&str; 12] = [
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "hotmail.com",
    "icloud.com",
    "gmx.de",
    "web.de",
    "orange.fr",
    "aol.com",
    "mail.ru",
    "t-online.de",
    "comcast.net",
];

/// Writes `cfg.entries` lines of `postqueue -j` output to `out`; returns the bytes written.
pub fn write_synth_postqueue(cfg: &SynthQueueConfig, out: &mut impl Write) -> io::Result<u64> {
    let mut rng = Rng::new(cfg.seed);
    let mut line = String::with_capacity(2048);
    let mut written = 0u64;
    for n in 0..cfg.entries {
        line.clear();
        synth_entry(cfg, &mut rng, n, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    Ok(written)
}

fn synth_entry(cfg: &SynthQueueConfig, rng: &mut Rng, n: u64, line: &mut String) {
    let (queue, max_age_secs, reason_per_mille) = match rng.below(100) {
        0..=54 => ("deferred", 6 * 86_400, 970),
        55..=74 => ("active", 7_200, 300),
        75..=82 => ("incoming", 120, 0),
        83..=89 => ("maildrop", 300, 0),
        _ => ("hold", 10 * 86_400, 400),
    };
    let arrival = cfg.now_unix_secs - rng.below(max_age_secs) as i64;
    // Sizes are skewed: most mail is small, some carries attachments.
    let size = 600 + rng.below(4_000) * (1 + rng.below(4) * rng.below(20));
    let recipients = match rng.below(100) {
        0..=59 => 1,
        60..=79 => 2,
        80..=89 => 3,
        90..=94 => 4,
        _ => 5,
    };
    line.push_str("{\"queue_name\": \"");
    line.push_str(queue);
    let _ = write!(
        line,
        "\", \"queue_id\": \"{:011X}\", \"arrival_time\": {arrival}, \"message_size\": {size}, \"forced_expire\": {}, \"sender\": ",
        (rng.next_u64() ^ n) & 0xFFF_FFFF_FFFF,
        rng.below(500) == 0
    );
    push_json_string(
        line,
        &format!("bounce+{}@lists.example.org", rng.below(10_000)),
    );
    line.push_str(", \"recipients\": [");
    for i in 0..recipients {
        if i > 0 {
            line.push_str(", ");
        }
        let domain = synth_domain(cfg, rng);
        let local = if rng.below(200) == 0 {
            // A quoted local part, as Postfix prints it: JSON escapes in the address.
            format!("\"user {}\\\"x\"", rng.below(1_000))
        } else {
            format!("user{}", rng.below(100_000))
        };
        let address = format!("{local}@{domain}");
        line.push_str("{\"address\": ");
        push_json_string(line, &address);
        if rng.below(1000) < reason_per_mille {
            line.push_str(", \"delay_reason\": ");
            push_json_string(line, &synth_reason(rng, &domain, &address));
        }
        line.push('}');
    }
    line.push_str("]}");
}

fn synth_domain(cfg: &SynthQueueConfig, rng: &mut Rng) -> String {
    if rng.below(1000) < cfg.long_tail_per_mille {
        return format!("t{:x}.example.net", rng.next_u64() & 0xFFFF_FFFF);
    }
    // Squared uniform: low indexes (the providers) are much more frequent.
    let n = cfg.common_domains.max(1);
    let bound = rng.below(n) + 1;
    let i = rng.below(bound);
    match PROVIDERS.get(i as usize) {
        Some(p) => (*p).to_owned(),
        None => format!("mail{i}.example.com"),
    }
}

fn synth_reason(rng: &mut Rng, domain: &str, address: &str) -> String {
    let ip = format!("192.0.2.{}", rng.below(254) + 1);
    match rng.below(20) {
        0..=5 => format!("connect to mx.{domain}[{ip}]:25: Connection refused"),
        6..=8 => format!("connect to mx.{domain}[{ip}]:25: Connection timed out"),
        9..=10 => format!(
            "Host or domain name not found. Name service error for name={domain} type=MX: Host not found, try again"
        ),
        11..=12 => format!(
            "host mx.{domain}[{ip}] said: 450 4.7.1 <{address}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/{domain}.html (in reply to RCPT TO command)"
        ),
        13 => format!(
            "host mx.{domain}[{ip}] said: 421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later (in reply to end of DATA command)"
        ),
        14 => format!(
            "host mx.{domain}[{ip}] said: 452 4.2.2 <{address}>: Mailbox full (in reply to RCPT TO command)"
        ),
        15 => format!("TLS is required, but was not offered by host mx.{domain}[{ip}]"),
        16 => format!(
            "host mx.{domain}[{ip}] said: 450 4.7.1 Service unavailable; client [198.51.100.7] blocked using zen.spamhaus.org (in reply to RCPT TO command)"
        ),
        17 => format!(
            "lost connection with mx.{domain}[{ip}] while receiving the initial server greeting"
        ),
        18 => format!(
            "host mx.{domain}[{ip}] said: 451 4.3.0 \"Temporary\" local problem (in reply to MAIL FROM command)"
        ),
        _ => format!(
            "host mx.{domain}[{ip}] said: 450 4.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table (in reply to RCPT TO command)"
        ),
    }
}

pub(crate) fn push_json_string(line: &mut String, s: &str) {
    line.push('"');
    for c in s.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_valid_json() {
        let cfg = SynthQueueConfig {
            entries: 300,
            ..SynthQueueConfig::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_synth_postqueue(&cfg, &mut a).unwrap();
        write_synth_postqueue(&cfg, &mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count(), 300);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                v["recipients"]
                    .as_array()
                    .is_some_and(|r| (1..=5).contains(&r.len()))
            );
        }
    }
}
