//! One log line in, message events out: envelope → Postfix record → tracker.

use serde::Serialize;

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
}

impl LineProcessor {
    /// `reference` resolves year-less timestamps (normally now, or the file's modification time).
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
        }
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
        let program = ProgramName::split(&env.program);
        if program.syslog_name.is_empty() || !is_postfix_service(program.service) {
            return LineOutcome::Unparsed("not a Postfix program");
        }
        let record = postfix::parse(program.service, &env.message);
        if let Record::Unparsed(u) = &record {
            return LineOutcome::Unparsed(u.reason);
        }
        let origin = RecordOrigin {
            host: &env.host,
            program,
            pid: env.pid,
            at: self.resolve(&env.time),
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
