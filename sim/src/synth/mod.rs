//! Deterministic generator of realistic Postfix logs, for `mailpulse demo`, tests and benchmarks.
//!
//! [`SynthLog`] simulates a small Postfix fleet member: port-25 traffic through postscreen and
//! smtpd delivered to local mailboxes over LMTP or `virtual`, authenticated submission relayed
//! out over SMTP to a realistic mix of recipient domains, an application relay on a second
//! instance (`postfix-out`), local cron mail through pickup, plus the noise real servers see
//! (postscreen drops, RCPT rejects, SASL brute force, lost connections, warnings, anvil and scache
//! statistics). Messages are interleaved as concurrent sessions are, deferred mail is retried with
//! Postfix's back-off until it is delivered, bounced or expired, and every bounce produces a
//! non-delivery notification with its own queue id.
//!
//! The same [`SynthConfig`] (seed included) always yields byte-identical output. [`SynthTruth`]
//! records what was written so tests can compare parser and tracker counts exactly.

mod engine;
pub(crate) mod format;
pub(crate) mod hooks;
mod profile;
mod queue_id;
pub(crate) mod rng;
pub(crate) mod world;

use std::collections::BTreeMap;

pub(crate) use engine::QueuedMessage;

use serde::Serialize;

/// Timestamp format of generated lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampStyle {
    /// `Oct  6 18:13:50` (RFC 3164, space-padded day, no year).
    #[default]
    Bsd,
    /// `2024-10-06T18:13:50.123456+00:00` (rsyslog's high-precision format).
    Rfc3339,
    /// `Oct 06 18:13:50.123456` (Postfix `maillog_file`).
    Maillog,
}

/// What to generate. Rates are probabilities (0..1) unless stated otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthConfig {
    /// Seeds every random choice; equal configs give byte-identical logs.
    pub seed: u64,
    /// Time of the first line.
    pub start_unix_secs: i64,
    /// Messages accepted into the queue by smtpd, submission, the `postfix-out` instance and
    /// pickup (equals [`SynthTruth::received`]); notifications and noise sessions come on top.
    pub messages: u64,
    /// Syslog host name (`mx1`); the server's FQDN is `{host}.{local_domains[0]}`.
    pub host: String,
    /// Domains this server delivers locally (LMTP to Dovecot for even, `virtual` for odd indexes).
    pub local_domains: Vec<String>,
    /// Share of messages given long (`enable_long_queue_ids`) queue ids instead of short hex ones.
    pub long_queue_ids_ratio: f64,
    /// Timestamp format of every line.
    pub style: TimestampStyle,
    /// Mean rate of accepted messages (before the diurnal modulation).
    pub messages_per_sec: f64,
    /// 0 = flat traffic; 0.5 = peak 1.5× and trough 0.5× the mean rate (peak at 14:00 UTC).
    pub diurnal_amplitude: f64,
    /// Share of messages received over authenticated submission (`postfix/submission/smtpd`).
    pub submission_share: f64,
    /// Share of messages relayed by application servers through the `postfix-out` instance.
    pub outbound_instance_share: f64,
    /// Share of messages submitted locally through pickup (cron, scripts).
    pub pickup_share: f64,
    /// Probability that a recipient's first delivery attempt is deferred (scaled per provider).
    pub deferral_rate: f64,
    /// Probability that a recipient is bounced on its first attempt (scaled per provider).
    pub bounce_rate: f64,
    /// Share of deferred recipients that never get through and expire.
    pub expire_ratio: f64,
    /// smtpd sessions ending in `NOQUEUE: reject: RCPT`, per accepted message.
    pub reject_rate: f64,
    /// Connections dropped by postscreen (pregreet, DNSBL, hangup), per accepted message.
    pub postscreen_drop_rate: f64,
    /// Failed SASL logins on submission, per accepted message.
    pub auth_failure_rate: f64,
    /// smtpd sessions ending in a lost connection or timeout, per accepted message.
    pub lost_connection_rate: f64,
    /// Share of port-25 messages a header check puts on hold.
    pub hold_rate: f64,
    /// Share of port-25 messages a header check discards.
    pub discard_rate: f64,
    /// Stand-alone `warning:` lines, per accepted message.
    pub warning_rate: f64,
    /// Postfix `maximal_queue_lifetime`; short by default so an hour of traffic shows expiries.
    pub max_queue_lifetime_secs: i64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_unix_secs: 1_729_958_400, // 2024-10-26T16:00:00Z
            messages: 1_000,
            host: "mx1".to_string(),
            local_domains: vec!["example.org".to_string(), "example.net".to_string()],
            long_queue_ids_ratio: 0.3,
            style: TimestampStyle::Bsd,
            messages_per_sec: 20.0,
            diurnal_amplitude: 0.5,
            submission_share: 0.25,
            outbound_instance_share: 0.2,
            pickup_share: 0.05,
            deferral_rate: 0.06,
            bounce_rate: 0.02,
            expire_ratio: 0.1,
            reject_rate: 0.08,
            postscreen_drop_rate: 0.1,
            auth_failure_rate: 0.03,
            lost_connection_rate: 0.04,
            hold_rate: 0.002,
            discard_rate: 0.002,
            warning_rate: 0.01,
            max_queue_lifetime_secs: 4 * 3600,
        }
    }
}

/// Per recipient domain: delivery status lines written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DomainCounts {
    /// `status=sent` lines.
    pub sent: u64,
    /// `status=deferred` lines (one per attempt).
    pub deferred: u64,
    /// `status=bounced` lines.
    pub bounced: u64,
}

/// What the generator wrote. Counts are of lines unless the name says messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SynthTruth {
    /// Lines written.
    pub lines: u64,
    /// Messages that got a queue id from smtpd (`client=`) or pickup (`uid=`), held and discarded
    /// ones included; equals [`SynthConfig::messages`].
    pub received: u64,
    /// Of `received`: port 25 on the main instance.
    pub received_smtpd: u64,
    /// Of `received`: authenticated submission (`postfix/submission/smtpd`).
    pub received_submission: u64,
    /// Of `received`: via `postfix-out/smtpd`.
    pub received_outbound_instance: u64,
    /// Of `received`: local submission through pickup.
    pub received_pickup: u64,
    /// Non-delivery notifications created (`sender non-delivery notification: QID`); each is a
    /// message of its own with a null sender that is then delivered.
    pub notifications: u64,
    /// `status=sent` lines (notifications' deliveries included).
    pub delivered: u64,
    /// `status=deferred` lines.
    pub deferred: u64,
    /// Distinct queue ids with at least one `status=deferred` line.
    pub deferred_messages: u64,
    /// `status=bounced` lines.
    pub bounced: u64,
    /// Messages that expired (`status=expired, returned to sender`).
    pub expired: u64,
    /// smtpd `NOQUEUE: reject:` lines.
    pub rejected: u64,
    /// postscreen `NOQUEUE: reject:` lines.
    pub postscreen_rejected: u64,
    /// Messages put on hold by cleanup (they never reach qmgr).
    pub held: u64,
    /// Messages discarded by cleanup (they never reach qmgr).
    pub discarded: u64,
    /// qmgr `removed` lines.
    pub removed: u64,
    /// smtpd `connect from` lines (all instances).
    pub smtpd_connections: u64,
    /// `SASL … authentication failed` lines.
    pub sasl_auth_failures: u64,
    /// `warning:` lines of any service (SASL failures included).
    pub warnings: u64,
    /// Messages (notifications included) given a long queue id.
    pub long_queue_id_messages: u64,
    /// Messages (notifications included) given a short hex queue id.
    pub short_queue_id_messages: u64,
    /// Delivery status lines per recipient domain.
    pub by_recipient_domain: BTreeMap<String, DomainCounts>,
}

/// The generated log, one line (without newline) per item, in timestamp order.
/// [`SynthLog::truth`] is complete once the iterator has returned `None`.
#[derive(Debug)]
pub struct SynthLog {
    engine: engine::Engine,
}

impl SynthLog {
    /// A generator for `config`; lines are produced lazily as the iterator is advanced.
    pub fn new(config: SynthConfig) -> Self {
        Self {
            engine: engine::Engine::new(config),
        }
    }

    /// A generator for one member of a simulated fleet ([`crate::fleet`]): its addresses, extra
    /// users and time-dependent [`hooks`].
    pub(crate) fn with_setup(config: SynthConfig, setup: hooks::HostSetup) -> Self {
        Self {
            engine: engine::Engine::with_setup(config, Some(setup)),
        }
    }

    /// The next line with its time (Unix microseconds).
    pub(crate) fn next_timed(&mut self) -> Option<(i64, String)> {
        self.engine.next_line_at()
    }

    /// Messages queued in the main and the `postfix-out` instance, as of the last line returned.
    pub(crate) fn queue_loads(&self) -> [hooks::QueueLoad; 2] {
        self.engine.queue_loads()
    }

    /// Every queued message, as of the last line returned.
    pub(crate) fn for_each_queued(&self, f: impl FnMut(QueuedMessage<'_>)) {
        self.engine.for_each_queued(f);
    }

    /// From now on, keeps every remote delivery until [`SynthLog::take_deliveries`] takes it.
    pub(crate) fn record_deliveries(&mut self) {
        self.engine.record_deliveries();
    }

    /// Appends the remote deliveries recorded since the last call to `out`.
    pub(crate) fn take_deliveries(&mut self, out: &mut Vec<hooks::Delivery>) {
        self.engine.take_deliveries(out);
    }

    /// Counts of what has been generated so far.
    pub fn truth(&self) -> &SynthTruth {
        self.engine.truth()
    }

    /// The counts, consuming the generator (complete once it is exhausted).
    pub fn into_truth(self) -> SynthTruth {
        self.engine.into_truth()
    }
}

impl Iterator for SynthLog {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.engine.next_line()
    }
}

/// Generates the whole log as one string (one `\n`-terminated line per entry) plus its truth.
pub fn generate(config: SynthConfig) -> (String, SynthTruth) {
    let mut log = SynthLog::new(config);
    let mut text = String::new();
    for line in log.by_ref() {
        text.push_str(&line);
        text.push('\n');
    }
    (text, log.into_truth())
}

#[cfg(test)]
mod tests;
