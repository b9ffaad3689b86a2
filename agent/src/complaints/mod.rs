//! Complaints from feedback loops: ARF reports (RFC 5965, [`arf`]) that a mailbox provider
//! sends when its users mark our mail as spam, read from a Maildir.
//!
//! Every poll takes at most `max_reports_per_poll` files from `<maildir>/new/`, parses each,
//! and counts `complaints{sender, sender_domain, ip, feedback_type}` (the envelope sender and its
//! domain, the source IP; `unknown` when the report does not say) and
//! `complaint_reports_refused{reason}` for files that are not reports (too large, not ARF). A
//! file is moved to `<maildir>/cur/` (flag `S`, seen) only once the batch with its counts is
//! in the outbox, so a crash counts it again rather than never; one bad file never stops the
//! others.

pub mod arf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailpulse_proto::v1 as pb;
use serde::Deserialize;

use crate::labels::UNKNOWN;
use crate::runtime::periodic::PeriodicSource;

/// The `[complaints]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplaintsConfig {
    /// The Maildir the feedback loops deliver to (none: off).
    pub maildir: Option<PathBuf>,
    /// Seconds between two looks (default 60).
    pub interval_secs: u64,
    /// Files taken per look (default 10 000); the rest wait for the next one.
    pub max_reports_per_poll: usize,
    /// Distinct senders named per poll (default 200); the rest count as `other`.
    pub max_senders: usize,
}

impl Default for ComplaintsConfig {
    fn default() -> Self {
        ComplaintsConfig {
            maildir: None,
            interval_secs: 60,
            max_reports_per_poll: 10_000,
            max_senders: 200,
        }
    }
}

/// Counts of one poll, before they become samples.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// (sender, sender_domain, ip, feedback_type) → complaints.
    pub complaints: BTreeMap<(String, String, String, String), u64>,
    /// reason → files refused.
    pub refused: BTreeMap<&'static str, u64>,
    /// Senders named so far (at most `max_senders`; the others count as `other`).
    senders: std::collections::BTreeSet<String>,
}

impl Tally {
    /// Counts one file's content.
    pub fn add(&mut self, raw: &[u8], max_senders: usize) {
        match arf::parse(raw) {
            Ok(c) => {
                let mut sender = c.sender.unwrap_or_else(|| UNKNOWN.to_owned());
                if !self.senders.contains(&sender) {
                    if self.senders.len() < max_senders {
                        self.senders.insert(sender.clone());
                    } else {
                        sender = crate::labels::OTHER.to_owned();
                    }
                }
                let key = (
                    bounded(sender),
                    bounded(c.sender_domain.unwrap_or_else(|| UNKNOWN.to_owned())),
                    c.source_ip
                        .map_or_else(|| UNKNOWN.to_owned(), |ip| ip.to_string()),
                    c.feedback_type,
                );
                *self.complaints.entry(key).or_default() += 1;
            }
            Err(e) => {
                let reason = match e {
                    arf::ArfError::TooLarge(_) => "too_large",
                    _ => "not_arf",
                };
                *self.refused.entry(reason).or_default() += 1;
            }
        }
    }

    /// The tally as counter samples of the window of `now_ms`.
    pub fn samples(&self, host: &str, now_ms: i64, window_secs: u32) -> Vec<pb::Sample> {
        let window_ms = i64::from(window_secs.max(1)) * 1000;
        let start = now_ms.div_euclid(window_ms) * window_ms;
        let label = |n: &str, v: &str| pb::Label {
            name: n.into(),
            value: v.into(),
        };
        let sample = |metric: &str, labels: Vec<pb::Label>, n: u64| pb::Sample {
            metric: metric.into(),
            labels,
            window_start_unix_ms: start,
            window_secs: window_secs.max(1),
            value: Some(pb::sample::Value::CounterDelta(n as f64)),
        };
        let mut out: Vec<pb::Sample> = self
            .complaints
            .iter()
            .map(|((sender, domain, ip, kind), n)| {
                sample(
                    "complaints",
                    vec![
                        label("host", host),
                        label("sender", sender),
                        label("sender_domain", domain),
                        label("ip", ip),
                        label("feedback_type", kind),
                    ],
                    *n,
                )
            })
            .collect();
        out.extend(self.refused.iter().map(|(reason, n)| {
            sample(
                "complaint_reports_refused",
                vec![label("host", host), label("reason", reason)],
                *n,
            )
        }));
        out
    }
}

/// Label values are cut to what the collector takes (they are addresses and domains, short).
fn bounded(mut value: String) -> String {
    if value.len() > 200 {
        let mut cut = 200;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    value
}

/// Reads the Maildir on the periodic thread.
#[derive(Debug)]
pub struct ComplaintsReader {
    cfg: ComplaintsConfig,
    maildir: PathBuf,
    /// Files counted in the last poll, moved once their batch is in the outbox.
    counted: Vec<PathBuf>,
}

impl ComplaintsReader {
    /// A reader of `cfg.maildir` (None when it is not configured).
    pub fn new(cfg: ComplaintsConfig) -> Option<Self> {
        let maildir = cfg.maildir.clone()?;
        Some(ComplaintsReader {
            cfg,
            maildir,
            counted: Vec::new(),
        })
    }

    /// Counts up to `max_reports_per_poll` files of `new/`.
    fn read(&mut self) -> Tally {
        let mut tally = Tally::default();
        let new = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return tally;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .take(self.cfg.max_reports_per_poll)
            .collect();
        files.sort();
        for path in files {
            match read_bounded(&path, arf::MAX_REPORT_BYTES) {
                Ok(raw) => tally.add(&raw, self.cfg.max_senders),
                Err(_) => continue,
            }
            self.counted.push(path);
        }
        tally
    }
}

/// The file's bytes, one more than `max` at most (so a larger file is known to be larger).
fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

impl PeriodicSource for ComplaintsReader {
    fn name(&self) -> &'static str {
        "complaints"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.cfg.interval_secs.max(1))
    }

    fn poll(&mut self, now_unix_ms: i64, host: &str, window_secs: u32) -> Vec<pb::Sample> {
        // Files of a poll whose batch never made it stay in new/ and are counted again.
        self.counted.clear();
        self.read().samples(host, now_unix_ms, window_secs)
    }

    fn committed(&mut self) {
        let cur = self.maildir.join("cur");
        for path in self.counted.drain(..) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let seen = if name.contains(":2,") {
                name.to_owned()
            } else {
                format!("{name}:2,S")
            };
            if let Err(e) = std::fs::rename(&path, cur.join(seen)) {
                tracing::warn!(file = %path.display(), error = %e, "moving a counted report to cur/ failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maildir_is_counted_once_and_moved_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let write = |name: &str, text: &[u8]| {
            std::fs::write(dir.path().join("new").join(name), text).unwrap()
        };
        write("1.a", arf::tests_fixture().as_bytes());
        write("2.b", arf::tests_fixture().as_bytes());
        write("3.c", b"Subject: hello\n\nnot a report\n");
        let mut reader = ComplaintsReader::new(ComplaintsConfig {
            maildir: Some(dir.path().to_owned()),
            ..ComplaintsConfig::default()
        })
        .unwrap();
        let samples = reader.poll(1_000_000, "mx1", 60);
        let value = |metric: &str| -> f64 {
            samples
                .iter()
                .filter(|s| s.metric == metric)
                .map(|s| match s.value {
                    Some(pb::sample::Value::CounterDelta(v)) => v,
                    _ => 0.0,
                })
                .sum()
        };
        assert_eq!(value("complaints"), 2.0);
        assert_eq!(value("complaint_reports_refused"), 1.0);
        let labels: BTreeMap<&str, &str> = samples[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(labels["sender"], "somespammer@example.net");
        assert_eq!(labels["sender_domain"], "example.net");
        assert_eq!(labels["ip"], "192.0.2.1");
        assert_eq!(labels["feedback_type"], "abuse");
        // Not committed: the next poll counts them again (no loss).
        assert_eq!(reader.poll(1_000_000, "mx1", 60).len(), samples.len());
        reader.committed();
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("cur")).unwrap().count(),
            3
        );
        assert!(reader.poll(1_000_000, "mx1", 60).is_empty(), "counted once");
    }

    #[test]
    fn senders_beyond_the_bound_are_other() {
        let mut tally = Tally::default();
        for i in 0..5 {
            let report = arf::tests_fixture().replace("somespammer@", &format!("s{i}@"));
            tally.add(report.as_bytes(), 3);
        }
        let senders: std::collections::BTreeSet<&str> =
            tally.complaints.keys().map(|k| k.0.as_str()).collect();
        assert_eq!(senders.len(), 4, "{senders:?}");
        assert!(senders.contains("other"));
    }
}
