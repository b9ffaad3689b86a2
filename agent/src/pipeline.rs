//! One log line in, message events out: envelope → Postfix record → tracker.
//!
//! The host and the Postfix instance of a line come from the line itself, and any local user can
//! log under any name (`logger -t postfix-$RANDOM/smtpd …`). By default a processor keeps at most
//! [`DEFAULT_MAX_HOSTS`] hosts and [`DEFAULT_MAX_INSTANCES`] instances by name (the first ones
//! seen; a name idle for a day of log time makes room) and counts the lines of any further one
//! under `other` ([`OriginStats`]), so neither the tracker nor the series built from its events
//! grow with such lines. Whole-file tools that must report every host turn this off
//! ([`LineProcessor::set_origin_limits`]).

use serde::{Deserialize, Serialize};

use crate::labels::OTHER;
use crate::parse::record::Record;
use crate::parse::time::TimeResolver;
use crate::parse::{EnvelopeParser, LogFormat, LogTime, ProgramName, Timestamp, postfix};
use crate::track::{MessageEvent, RecordOrigin, Tracker, TrackerConfig};
use crate::traffic::{SignalExtractor, TrafficConfig, TrafficSignal};

/// Counters of what the processor has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LineStats {
    pub lines: u64,
    /// Lines that produced no typed record: bad envelope, a non-Postfix program, or a Postfix
    /// message no parser understands.
    pub unparsed: u64,
    pub bytes: u64,
}

/// Default of [`OriginLimits::max_hosts`].
pub const DEFAULT_MAX_HOSTS: usize = 4;
/// Default of [`OriginLimits::max_instances`].
pub const DEFAULT_MAX_INSTANCES: usize = 16;

/// A name not seen for this long (log time) leaves its place to a new one.
const NAME_IDLE_SECS: i64 = 86_400;

/// How many hosts and Postfix instances a processor keeps by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginLimits {
    /// Distinct syslog hosts.
    pub max_hosts: usize,
    /// Distinct Postfix instances, over all hosts.
    pub max_instances: usize,
}

impl Default for OriginLimits {
    fn default() -> Self {
        Self {
            max_hosts: DEFAULT_MAX_HOSTS,
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }
}

/// Lines whose host or instance was counted under `other`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginStats {
    /// Lines of a host beyond the cap.
    pub hosts_folded: u64,
    /// Lines of an instance beyond the cap.
    pub instances_folded: u64,
}

/// The names admitted under one cap, with when each was last seen (log time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameCap {
    names: Vec<(Box<str>, i64)>,
    #[serde(skip)]
    last: usize,
}

impl NameCap {
    /// `name` when it is (or now becomes) one of at most `max` admitted names, else `None`.
    fn admit<'n>(&mut self, name: &'n str, now: i64, max: usize) -> Option<&'n str> {
        if let Some((known, seen)) = self.names.get_mut(self.last)
            && **known == *name
        {
            *seen = now;
            return Some(name);
        }
        if let Some(i) = self.names.iter().position(|(n, _)| **n == *name) {
            self.names[i].1 = now;
            self.last = i;
            return Some(name);
        }
        if self.names.len() < max {
            self.names.push((name.into(), now));
            self.last = self.names.len() - 1;
            return Some(name);
        }
        let (i, &(_, seen)) = self
            .names
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, seen))| *seen)?;
        if now.saturating_sub(seen) <= NAME_IDLE_SECS {
            return None;
        }
        self.names[i] = (name.into(), now);
        self.last = i;
        Some(name)
    }
}

/// The host and instance caps of a processor and what they admitted; saved with the tracker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginCaps {
    /// Admitted hosts.
    pub hosts: NameCap,
    /// Admitted instances.
    pub instances: NameCap,
}

/// What became of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    Parsed,
    Unparsed(&'static str),
}

/// Parses and tracks the lines of one log stream (one file, or several files of one host read in
/// order). Not thread-safe; one per stream.
#[derive(Debug)]
pub struct LineProcessor {
    envelope: EnvelopeParser,
    tracker: Tracker,
    time: TimeResolver,
    /// The last timestamp resolved: a busy log has hundreds of lines per second.
    last_time: Option<(LogTime, Timestamp)>,
    stats: LineStats,
    /// Traffic signal extraction, when enabled.
    traffic: Option<SignalExtractor>,
    /// Caps on hosts and instances by name, when enabled.
    limits: Option<OriginLimits>,
    caps: OriginCaps,
    origin_stats: OriginStats,
}

impl LineProcessor {
    /// `reference` resolves year-less timestamps (normally now, or the file's modification time).
    /// Hosts and instances are capped at their defaults ([`OriginLimits`]).
    pub fn new(format: LogFormat, reference: Timestamp) -> Self {
        Self::with_tracker(format, reference, TrackerConfig::default())
    }

    pub fn with_tracker(format: LogFormat, reference: Timestamp, tracker: TrackerConfig) -> Self {
        Self {
            envelope: EnvelopeParser::new(format),
            tracker: Tracker::new(tracker),
            time: TimeResolver::new(reference, 0),
            last_time: None,
            stats: LineStats::default(),
            traffic: None,
            limits: Some(OriginLimits::default()),
            caps: OriginCaps::default(),
            origin_stats: OriginStats::default(),
        }
    }

    /// Caps hosts and instances at `limits`, or keeps every name (`None`: for whole-file reports
    /// of a trusted log).
    pub fn set_origin_limits(&mut self, limits: Option<OriginLimits>) {
        self.limits = limits;
    }

    /// Lines counted under `other` by the host and instance caps.
    pub fn origin_stats(&self) -> OriginStats {
        self.origin_stats
    }

    /// The names the host and instance caps admitted (saved with the tracker's state).
    pub fn origin_caps(&self) -> &OriginCaps {
        &self.caps
    }

    /// Restores what [`origin_caps`](Self::origin_caps) returned.
    pub fn restore_origin_caps(&mut self, caps: OriginCaps) {
        self.caps = caps;
    }

    /// Replaces the tracker (restoring a saved state).
    pub fn set_tracker(&mut self, tracker: Tracker) {
        self.tracker = tracker;
    }

    /// The UTC offset assumed for timestamps that carry none (BSD syslog, maillog_file).
    pub fn set_default_offset_secs(&mut self, offset: i32) {
        self.time.set_default_offset_secs(offset);
        self.last_time = None;
    }

    /// Sets the reference time for year-less timestamps (e.g. when switching to another file).
    pub fn set_reference(&mut self, reference: Timestamp) {
        self.time.set_reference(reference);
        self.last_time = None;
    }

    /// Extracts traffic signals too (see [`crate::traffic`]), collected by
    /// [`process_with_signals`](Self::process_with_signals).
    pub fn enable_traffic(&mut self, cfg: &TrafficConfig) {
        self.traffic = cfg.enabled.then(|| SignalExtractor::new(cfg));
    }

    pub fn stats(&self) -> LineStats {
        self.stats
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The format in use (what auto-detection found, once it has).
    pub fn format(&self) -> LogFormat {
        self.envelope.format()
    }

    /// Processes one line (trailing newline optional) and appends the events it completes.
    pub fn process(&mut self, line: &str, out: &mut Vec<MessageEvent>) -> LineOutcome {
        self.process_inner(line, out, None)
    }

    /// Processes a line again only to rebuild the tracker's state (it was processed before a
    /// restart and its events are durable): no events, no signals, not counted.
    pub fn replay(&mut self, line: &str) {
        let (stats, origin_stats) = (self.stats, self.origin_stats);
        let mut events = Vec::new();
        let _ = self.process_line(line, &mut events, None);
        self.origin_stats = origin_stats;
        self.stats = stats;
    }

    /// [`process`](Self::process), also appending the line's traffic signal (if traffic
    /// extraction is enabled and the line carries one).
    pub fn process_with_signals(
        &mut self,
        line: &str,
        out: &mut Vec<MessageEvent>,
        signals: &mut Vec<TrafficSignal>,
    ) -> LineOutcome {
        self.process_inner(line, out, Some(signals))
    }

    fn process_inner(
        &mut self,
        line: &str,
        out: &mut Vec<MessageEvent>,
        signals: Option<&mut Vec<TrafficSignal>>,
    ) -> LineOutcome {
        self.stats.lines += 1;
        self.stats.bytes += line.len() as u64 + 1;
        let outcome = self.process_line(line, out, signals);
        if matches!(outcome, LineOutcome::Unparsed(_)) {
            self.stats.unparsed += 1;
        }
        outcome
    }

    fn process_line(
        &mut self,
        line: &str,
        out: &mut Vec<MessageEvent>,
        signals: Option<&mut Vec<TrafficSignal>>,
    ) -> LineOutcome {
        let env = match self.envelope.parse(line) {
            Ok(env) => env,
            Err(_) => return LineOutcome::Unparsed("no syslog envelope"),
        };
        let mut program = ProgramName::split(&env.program);
        if program.syslog_name.is_empty() || !is_postfix_service(program.service) {
            return LineOutcome::Unparsed("not a Postfix program");
        }
        let record = postfix::parse(program.service, &env.message);
        if let Record::Unparsed(u) = &record {
            return LineOutcome::Unparsed(u.reason);
        }
        let at = self.resolve(&env.time);
        let mut host: &str = &env.host;
        if let Some(limits) = self.limits {
            host = self
                .caps
                .hosts
                .admit(host, at.unix_secs, limits.max_hosts)
                .unwrap_or_else(|| {
                    self.origin_stats.hosts_folded += 1;
                    OTHER
                });
            program.instance = self
                .caps
                .instances
                .admit(program.instance, at.unix_secs, limits.max_instances)
                .unwrap_or_else(|| {
                    self.origin_stats.instances_folded += 1;
                    OTHER
                });
        }
        let origin = RecordOrigin {
            host,
            program,
            pid: env.pid,
            at,
        };
        let first_new = out.len();
        self.tracker.observe(origin, &record, out);
        if let (Some(signals), Some(traffic)) = (signals, self.traffic.as_mut()) {
            if let Some(signal) = traffic.extract(&origin, &record) {
                signals.push(signal);
            }
            signals.extend(
                out[first_new..]
                    .iter()
                    .filter_map(|ev| traffic.message_signal(ev)),
            );
        }
        LineOutcome::Parsed
    }

    /// [`TimeResolver::resolve`], which depends on nothing but its input between reference and
    /// offset changes, skipped for a line stamped like the one before.
    fn resolve(&mut self, time: &LogTime) -> Timestamp {
        if let Some((last, at)) = self.last_time
            && last == *time
        {
            return at;
        }
        let at = self.time.resolve(time);
        self.last_time = Some((*time, at));
        at
    }
}

/// Postfix programs log as `<syslog_name>/<service>`; these are the services Postfix 3.x has,
/// the busiest first (the match tries them in this order).
fn is_postfix_service(service: &str) -> bool {
    matches!(
        service,
        "smtpd"
            | "qmgr"
            | "postscreen"
            | "cleanup"
            | "smtp"
            | "lmtp"
            | "virtual"
            | "local"
            | "pickup"
            | "bounce"
            | "dnsblog"
            | "anvil"
            | "pipe"
            | "error"
            | "defer"
            | "trace"
            | "discard"
            | "postsuper"
            | "master"
            | "scache"
            | "verify"
            | "tlsproxy"
            | "flush"
            | "nqmgr"
            | "oqmgr"
            | "postalias"
            | "postcat"
            | "postconf"
            | "postdrop"
            | "postfix"
            | "postfix-script"
            | "postkick"
            | "postlock"
            | "postlog"
            | "postlogd"
            | "postmap"
            | "postmulti"
            | "postqueue"
            | "proxymap"
            | "qmqpd"
            | "retry"
            | "sendmail"
            | "showq"
            | "spawn"
            | "tlsmgr"
            | "trivial-rewrite"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_caps_admit_the_first_and_make_room_after_a_day() {
        let mut cap = NameCap::default();
        assert_eq!(cap.admit("a", 0, 2), Some("a"));
        assert_eq!(cap.admit("b", 10, 2), Some("b"));
        assert_eq!(cap.admit("c", 20, 2), None, "full");
        assert_eq!(cap.admit("a", 30, 2), Some("a"), "known names stay");
        assert_eq!(
            cap.admit("c", 10 + NAME_IDLE_SECS + 1, 2),
            Some("c"),
            "b idled out"
        );
        assert_eq!(cap.admit("b", 10 + NAME_IDLE_SECS + 2, 2), None);
    }

    #[test]
    fn cached_time_follows_the_reference() {
        let at = |unix_secs| Timestamp {
            unix_secs,
            nanos: 0,
        };
        let t = LogTime {
            year: None,
            month: 10,
            day: 26,
            hour: 18,
            minute: 13,
            second: 50,
            nanos: 0,
            offset_secs: None,
        };
        let (ref_2024, ref_2020) = (at(1_735_000_000), at(1_600_000_000));
        let mut p = LineProcessor::new(LogFormat::Bsd, ref_2024);
        assert_eq!(p.resolve(&t), TimeResolver::new(ref_2024, 0).resolve(&t));
        assert_eq!(p.resolve(&t), TimeResolver::new(ref_2024, 0).resolve(&t));
        p.set_reference(ref_2020);
        assert_eq!(p.resolve(&t), TimeResolver::new(ref_2020, 0).resolve(&t));
        p.set_default_offset_secs(3600);
        assert_eq!(p.resolve(&t), TimeResolver::new(ref_2020, 3600).resolve(&t));
    }
}
