//! The scenario file (TOML): period, seed, hosts, base rates and incidents.
//!
//! ```toml
//! name = "small"
//! seed = 7
//! start = 2024-10-07T00:00:00Z     # a TOML date-time with an offset
//! days = 7
//! timestamp_format = "bsd"         # bsd (default) | rfc3339 | maillog
//! gauge_interval_secs = 300        # rows of the gauge files the CLI writes
//!
//! [traffic]                        # defaults for every host; all keys optional
//! messages_per_day = 1500          # accepted messages on a weekday
//!
//! [[hosts]]
//! name = "mx1"                     # letters, digits, '.', '-', '_' (it names the log file)
//! ip = "198.51.100.10"             # optional; postfix-out sends from the next address
//! local_domains = ["example.org"]  # optional
//! traffic = { messages_per_day = 3000 }   # optional per-host overrides of [traffic]
//!
//! [[incidents]]
//! kind = "bounce_storm"
//! hosts = ["mx1"]
//! start = 2024-10-08T02:00:00Z
//! end = 2024-10-08T04:00:00Z
//! domain = "gmail.com"
//! ```
//!
//! Every table rejects unknown keys, and an incident rejects keys its kind does not use; errors
//! carry the line and column of the offending key or table. Incident keys by kind (defaults in
//! parentheses):
//!
//! | kind | keys |
//! |---|---|
//! | `bounce_storm` | `domain`, `share` (0.8) |
//! | `greylisting_wave` | `domains`, `share` (0.9, of first attempts) |
//! | `ip_blocklisted` | `blocklist` ("zen.spamhaus.org"), `share` (0.9, at domains that use it) |
//! | `dns_failure` | `domain` |
//! | `compromised_account` | `sasl_user`, `client_ip` (derived), `messages_per_hour` (120), `recipients_per_message` (20), `complaint_rate` (0.25, of its spam delivered at feedback-loop providers) |
//! | `connection_flood` | `client_net` (`a.b.c.0/24`), `sessions_per_hour` (1800), `auth_failure_share` (0.6) |
//! | `relay_down` | `relay` (an MX host name), `failure` ("refused" or "timeout") |
//! | `spool_filling` | `fill_bytes_per_hour` |
//! | `dns_change` | `domain` (the host's sending domain) |
//!
//! Domains and relays must exist in the generator's world table (a typo would make an invisible
//! incident), except a `dns_change`'s `domain`: one of the fleet's own domains, which the hosts
//! the incident names monitor besides their sending domain (see [`super::dns`]). Every incident
//! also takes an optional `id` (default `<kind>-<n>`). `end` is required, except for
//! `dns_change`: there it is when the lagging authoritative server catches up, by default 10
//! minutes after `start` (within the scenario's period).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::value::{Datetime, Offset};

use super::SimError;
use super::dns::DNS_CHANGE_LAG_SECS;
use super::incident::{Effect, Incident, IncidentKind, RelayFailure};
use crate::synth::TimestampStyle;
use crate::synth::format::Ip;
use crate::synth::world::{Health, World};
use mailpulse_agent::config::{ConfigError, line_column, parse_toml};
use mailpulse_agent::parse::time::days_from_civil;

const SECOND: i64 = 1_000_000;

/// A validated scenario: what [`super::HostSimulation`] and [`super::simulate_samples`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) start_us: i64,
    pub(crate) end_us: i64,
    pub(crate) style: TimestampStyle,
    pub(crate) gauge_interval_secs: u32,
    pub(crate) hosts: Vec<HostPlan>,
    pub(crate) incidents: Vec<Incident>,
}

/// One host of a scenario, with its traffic resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostPlan {
    pub(crate) name: String,
    pub(crate) main_ip: Ip,
    pub(crate) out_ip: Ip,
    pub(crate) local_domains: Vec<String>,
    pub(crate) traffic: Traffic,
}

/// Declares the traffic keys once: the optional form read from the file, the resolved form with
/// defaults, and the overlay of one on the other.
macro_rules! traffic_keys {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, )*) => {
        /// `[traffic]` and `hosts.traffic` as written.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TrafficSpec {
            $( $name: Option<$ty>, )*
        }

        /// The traffic of one host, defaults applied.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct Traffic {
            $( $(#[doc = $doc])* pub(crate) $name: $ty, )*
        }

        impl Default for Traffic {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        impl Traffic {
            fn overlay(&mut self, spec: &TrafficSpec) {
                $( if let Some(v) = &spec.$name { self.$name = v.clone(); } )*
            }
        }
    };
}

traffic_keys! {
    /// Accepted messages on a weekday (without trend and noise).
    messages_per_day: f64 = 1_500.0,
    /// A weekend day's messages as a share of a weekday's.
    weekend_factor: f64 = 0.3,
    /// The nightly minimum as a share of the office-hours peak.
    night_factor: f64 = 0.08,
    /// Offset of the users' local time (office hours) from UTC.
    utc_offset_hours: f64 = 0.0,
    /// Linear growth per week (0.02 = +2 % per week).
    trend_per_week: f64 = 0.0,
    /// Standard deviation of the log of the hourly noise factor.
    noise: f64 = 0.1,
    /// Probability that a recipient's first attempt is deferred (scaled per provider).
    deferral_rate: f64 = 0.03,
    /// Probability that a recipient bounces (scaled per provider).
    bounce_rate: f64 = 0.008,
    /// Share of deferred recipients that never get through and expire.
    expire_ratio: f64 = 0.02,
    /// smtpd `NOQUEUE: reject` sessions per accepted message.
    reject_rate: f64 = 0.08,
    /// Connections postscreen drops, per accepted message.
    postscreen_drop_rate: f64 = 0.1,
    /// Failed SASL logins, per accepted message.
    auth_failure_rate: f64 = 0.03,
    /// Share of messages submitted by authenticated users.
    submission_share: f64 = 0.25,
    /// Share of messages relayed by applications through `postfix-out`.
    outbound_instance_share: f64 = 0.2,
    /// Share of messages submitted locally (pickup).
    pickup_share: f64 = 0.03,
    /// Postfix `maximal_queue_lifetime`.
    max_queue_lifetime_hours: f64 = 120.0,
    /// Size of the spool filesystem.
    spool_size_bytes: u64 = 20 * 1024 * 1024 * 1024,
    /// Share of the spool filesystem in use without queued mail.
    spool_used_share: f64 = 0.3,
    /// Share of the recipients delivered at mailbox providers with a feedback loop (Microsoft,
    /// Yahoo and AOL, GMX and WEB.DE, Comcast, Mail.ru) who report the message as spam.
    complaint_rate: f64 = 0.001,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    seed: u64,
    start: Spanned<Datetime>,
    days: Spanned<f64>,
    timestamp_format: Option<StyleName>,
    gauge_interval_secs: Option<Spanned<u32>>,
    traffic: Option<Spanned<TrafficSpec>>,
    hosts: Spanned<Vec<Spanned<HostSpec>>>,
    #[serde(default)]
    incidents: Vec<Spanned<IncidentSpec>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StyleName {
    Bsd,
    Rfc3339,
    Maillog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSpec {
    name: String,
    ip: Option<String>,
    local_domains: Option<Vec<String>>,
    traffic: Option<TrafficSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FailureName {
    Refused,
    Timeout,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentSpec {
    kind: IncidentKind,
    id: Option<String>,
    hosts: Vec<String>,
    start: Spanned<Datetime>,
    end: Option<Spanned<Datetime>>,
    domain: Option<String>,
    domains: Option<Vec<String>>,
    share: Option<f64>,
    blocklist: Option<String>,
    sasl_user: Option<String>,
    client_ip: Option<String>,
    messages_per_hour: Option<f64>,
    recipients_per_message: Option<u32>,
    client_net: Option<String>,
    sessions_per_hour: Option<f64>,
    auth_failure_share: Option<f64>,
    relay: Option<String>,
    failure: Option<FailureName>,
    fill_bytes_per_hour: Option<f64>,
    complaint_rate: Option<f64>,
}

impl IncidentSpec {
    /// The kind-specific keys present in the file.
    fn present(&self) -> Vec<&'static str> {
        let keys = [
            ("domain", self.domain.is_some()),
            ("domains", self.domains.is_some()),
            ("share", self.share.is_some()),
            ("blocklist", self.blocklist.is_some()),
            ("sasl_user", self.sasl_user.is_some()),
            ("client_ip", self.client_ip.is_some()),
            ("messages_per_hour", self.messages_per_hour.is_some()),
            (
                "recipients_per_message",
                self.recipients_per_message.is_some(),
            ),
            ("client_net", self.client_net.is_some()),
            ("sessions_per_hour", self.sessions_per_hour.is_some()),
            ("auth_failure_share", self.auth_failure_share.is_some()),
            ("relay", self.relay.is_some()),
            ("failure", self.failure.is_some()),
            ("fill_bytes_per_hour", self.fill_bytes_per_hour.is_some()),
            ("complaint_rate", self.complaint_rate.is_some()),
        ];
        keys.into_iter()
            .filter(|(_, p)| *p)
            .map(|(k, _)| k)
            .collect()
    }
}

/// The kind-specific keys each kind accepts.
fn allowed_keys(kind: IncidentKind) -> &'static [&'static str] {
    match kind {
        IncidentKind::BounceStorm => &["domain", "share"],
        IncidentKind::GreylistingWave => &["domains", "share"],
        IncidentKind::IpBlocklisted => &["blocklist", "share"],
        IncidentKind::DnsFailure => &["domain"],
        IncidentKind::CompromisedAccount => &[
            "sasl_user",
            "client_ip",
            "messages_per_hour",
            "recipients_per_message",
            "complaint_rate",
        ],
        IncidentKind::ConnectionFlood => &["client_net", "sessions_per_hour", "auth_failure_share"],
        IncidentKind::RelayDown => &["relay", "failure"],
        IncidentKind::SpoolFilling => &["fill_bytes_per_hour"],
        IncidentKind::DnsChange => &["domain"],
    }
}

/// Most hosts and incidents a scenario may have (file names and memory stay reasonable).
const MAX_HOSTS: usize = 1_000;
const MAX_INCIDENTS: usize = 10_000;
/// Longest simulated period.
const MAX_DAYS: f64 = 400.0;

impl Scenario {
    /// Reads and validates the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates scenario text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SimError> {
        let file: ScenarioFile = parse_toml(path, text)?;
        Validator {
            path,
            text,
            world: World::new(),
        }
        .scenario(file)
    }

    /// The scenario's name (its `name`, else the file stem given to [`parse`](Self::parse)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The seed every random choice derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The same scenario with another seed (other traffic, same incidents).
    pub fn with_seed(&self, seed: u64) -> Self {
        Self {
            seed,
            ..self.clone()
        }
    }

    /// The same scenario starting `days` earlier (whole seconds; negative or NaN: 0): normal
    /// traffic before the first incident, so detectors have history when it starts. Incidents
    /// keep their times; the period stays within the longest a scenario may have.
    pub fn with_warmup_days(&self, days: f64) -> Self {
        let longest = (MAX_DAYS * 86_400.0) as i64 * SECOND - (self.end_us - self.start_us);
        let warmup = if days.is_finite() && days > 0.0 {
            ((days.min(MAX_DAYS) * 86_400.0) as i64 * SECOND).min(longest.max(0))
        } else {
            0
        };
        Self {
            start_us: self.start_us - warmup,
            ..self.clone()
        }
    }

    /// Start of the simulated period (Unix seconds).
    pub fn start_unix_secs(&self) -> i64 {
        self.start_us.div_euclid(SECOND)
    }

    /// End of the simulated period (Unix seconds, exclusive).
    pub fn end_unix_secs(&self) -> i64 {
        self.end_us.div_euclid(SECOND)
    }

    /// Host names in file order.
    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// Timestamp format of the generated lines.
    pub fn timestamp_style(&self) -> TimestampStyle {
        self.style
    }

    /// Overrides the file's `timestamp_format`.
    pub fn set_timestamp_style(&mut self, style: TimestampStyle) {
        self.style = style;
    }

    /// Spacing of the rows of gauge files (`gauge_interval_secs`, default 300).
    pub fn gauge_interval_secs(&self) -> u32 {
        self.gauge_interval_secs
    }

    /// Number of incidents (before expansion to one label per host).
    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }
}

/// Turns the file into a [`Scenario`], reporting errors at their place in the text.
struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    world: World,
}

impl Validator<'_> {
    fn error(&self, at: usize, message: impl Into<String>) -> SimError {
        let (line, column) = line_column(self.text, at);
        SimError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    fn scenario(&self, file: ScenarioFile) -> Result<Scenario, SimError> {
        let start_us = self.instant(&file.start)?;
        let days = *file.days.get_ref();
        if !(days > 0.0 && days <= MAX_DAYS) {
            return Err(self.error(
                file.days.span().start,
                format!("days must be in (0, {MAX_DAYS}], got {days}"),
            ));
        }
        let end_us = start_us + (days * 86_400.0 * SECOND as f64) as i64;
        let gauge_interval_secs = match &file.gauge_interval_secs {
            Some(g) if *g.get_ref() == 0 => {
                return Err(self.error(g.span().start, "gauge_interval_secs must be at least 1"));
            }
            Some(g) => *g.get_ref(),
            None => 300,
        };
        let mut defaults = Traffic::default();
        if let Some(spec) = &file.traffic {
            defaults.overlay(spec.get_ref());
            self.check_traffic(&defaults, spec.span().start)?;
        }

        let host_specs = file.hosts.get_ref();
        if host_specs.is_empty() || host_specs.len() > MAX_HOSTS {
            return Err(self.error(
                file.hosts.span().start,
                format!("a scenario needs 1 to {MAX_HOSTS} hosts"),
            ));
        }
        let mut hosts: Vec<HostPlan> = Vec::with_capacity(host_specs.len());
        for (i, spec) in host_specs.iter().enumerate() {
            let plan = self.host(i, spec, &defaults)?;
            if hosts.iter().any(|h| h.name == plan.name) {
                return Err(self.error(
                    spec.span().start,
                    format!("host {:?} is listed twice", plan.name),
                ));
            }
            hosts.push(plan);
        }

        if file.incidents.len() > MAX_INCIDENTS {
            return Err(self.error(0, format!("at most {MAX_INCIDENTS} incidents")));
        }
        let mut incidents: Vec<Incident> = Vec::with_capacity(file.incidents.len());
        for (n, spec) in file.incidents.iter().enumerate() {
            let incident = self.incident(n, spec, &hosts, start_us, end_us, file.seed)?;
            if incidents.iter().any(|i| i.id == incident.id) {
                return Err(self.error(
                    spec.span().start,
                    format!("incident id {:?} is used twice", incident.id),
                ));
            }
            incidents.push(incident);
        }
        let name = match file.name {
            Some(name) => name,
            None => self.path.file_stem().map_or_else(
                || "scenario".to_string(),
                |s| s.to_string_lossy().into_owned(),
            ),
        };
        Ok(Scenario {
            name,
            seed: file.seed,
            start_us,
            end_us,
            style: match file.timestamp_format {
                None | Some(StyleName::Bsd) => TimestampStyle::Bsd,
                Some(StyleName::Rfc3339) => TimestampStyle::Rfc3339,
                Some(StyleName::Maillog) => TimestampStyle::Maillog,
            },
            gauge_interval_secs,
            hosts,
            incidents,
        })
    }

    /// A TOML offset date-time as Unix microseconds.
    fn instant(&self, value: &Spanned<Datetime>) -> Result<i64, SimError> {
        let at = value.span().start;
        let dt = value.get_ref();
        let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
            return Err(self.error(
                at,
                "expected a date-time with an offset, e.g. 2024-10-07T00:00:00Z",
            ));
        };
        let offset_secs = match offset {
            Offset::Z => 0,
            Offset::Custom { minutes } => i64::from(minutes) * 60,
        };
        let days = days_from_civil(i32::from(date.year), date.month, date.day);
        let secs = days * 86_400
            + i64::from(time.hour) * 3600
            + i64::from(time.minute) * 60
            + i64::from(time.second.unwrap_or(0))
            - offset_secs;
        let micros = i64::from(time.nanosecond.unwrap_or(0) / 1_000);
        Ok(secs * SECOND + micros)
    }

    fn check_traffic(&self, t: &Traffic, at: usize) -> Result<(), SimError> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        // Every check is a range, so NaN fails it too.
        let checks: [(&str, bool); 17] = [
            (
                "messages_per_day must be in (0, 10000000]",
                t.messages_per_day > 0.0 && t.messages_per_day <= 1e7,
            ),
            (
                "weekend_factor must be in [0, 2]",
                (0.0..=2.0).contains(&t.weekend_factor),
            ),
            ("night_factor must be in [0, 1]", unit(t.night_factor)),
            (
                "utc_offset_hours must be in [-14, 14]",
                (-14.0..=14.0).contains(&t.utc_offset_hours),
            ),
            (
                "trend_per_week must be in [-0.5, 1]",
                (-0.5..=1.0).contains(&t.trend_per_week),
            ),
            ("noise must be in [0, 1]", unit(t.noise)),
            ("deferral_rate must be in [0, 1]", unit(t.deferral_rate)),
            ("bounce_rate must be in [0, 1]", unit(t.bounce_rate)),
            ("expire_ratio must be in [0, 1]", unit(t.expire_ratio)),
            (
                "reject_rate must be in [0, 10]",
                (0.0..=10.0).contains(&t.reject_rate),
            ),
            (
                "postscreen_drop_rate must be in [0, 10]",
                (0.0..=10.0).contains(&t.postscreen_drop_rate),
            ),
            (
                "auth_failure_rate must be in [0, 10]",
                (0.0..=10.0).contains(&t.auth_failure_rate),
            ),
            (
                "submission_share, outbound_instance_share and pickup_share must be in [0, 1] and sum to at most 1",
                unit(t.submission_share)
                    && unit(t.outbound_instance_share)
                    && unit(t.pickup_share)
                    && t.submission_share + t.outbound_instance_share + t.pickup_share <= 1.0,
            ),
            (
                "max_queue_lifetime_hours must be in [1, 2400]",
                (1.0..=2400.0).contains(&t.max_queue_lifetime_hours),
            ),
            (
                "spool_size_bytes must be at least 1 MiB",
                t.spool_size_bytes >= 1 << 20,
            ),
            (
                "spool_used_share must be in [0, 1]",
                unit(t.spool_used_share),
            ),
            ("complaint_rate must be in [0, 1]", unit(t.complaint_rate)),
        ];
        match checks.into_iter().find(|(_, ok)| !ok) {
            Some((message, _)) => Err(self.error(at, message)),
            None => Ok(()),
        }
    }

    fn host(
        &self,
        index: usize,
        spec: &Spanned<HostSpec>,
        defaults: &Traffic,
    ) -> Result<HostPlan, SimError> {
        let at = spec.span().start;
        let h = spec.get_ref();
        let name_ok = !h.name.is_empty()
            && h.name.len() <= 64
            && !h.name.starts_with('.')
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !name_ok {
            return Err(self.error(
                at,
                format!(
                    "host name {:?} must be 1 to 64 letters, digits, '.', '-' or '_' (not starting with '.')",
                    h.name
                ),
            ));
        }
        let main_ip = match &h.ip {
            Some(ip) => self.ipv4(ip, at)?,
            // 198.51.100.10, .12, … (TEST-NET-2 and up); postfix-out on the odd neighbour.
            None => Ip(u32::from(Ipv4Addr::new(198, 51, 100, 10)) + 2 * index as u32),
        };
        let local_domains = h
            .local_domains
            .clone()
            .unwrap_or_else(|| vec!["example.org".to_string(), "example.net".to_string()]);
        let domain_ok = |d: &String| {
            !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        };
        if local_domains.is_empty() || !local_domains.iter().all(domain_ok) {
            return Err(self.error(
                at,
                "local_domains must list at least one domain name (letters, digits, '.', '-')",
            ));
        }
        let mut traffic = defaults.clone();
        if let Some(spec) = &h.traffic {
            traffic.overlay(spec);
            self.check_traffic(&traffic, at)?;
        }
        Ok(HostPlan {
            name: h.name.clone(),
            main_ip,
            out_ip: Ip(main_ip.0.wrapping_add(1)),
            local_domains,
            traffic,
        })
    }

    fn ipv4(&self, text: &str, at: usize) -> Result<Ip, SimError> {
        text.parse::<Ipv4Addr>()
            .map(|ip| Ip(u32::from(ip)))
            .map_err(|_| self.error(at, format!("{text:?} is not an IPv4 address")))
    }

    /// A recipient domain that exists in the world table and accepts mail.
    fn world_domain(&self, name: &str, at: usize) -> Result<String, SimError> {
        match self.world.domains.iter().find(|d| d.name == name) {
            Some(d) if d.health == Health::Normal => Ok(d.name.clone()),
            Some(_) => Err(self.error(
                at,
                format!("{name:?} never accepts mail in the simulated world; pick a working domain"),
            )),
            None => Err(self.error(
                at,
                format!(
                    "unknown domain {name:?}; the simulated world has e.g. gmail.com, outlook.com, hotmail.com, yahoo.com, icloud.com, orange.fr, web.de, gmx.de, t-online.de, free.fr"
                ),
            )),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn incident(
        &self,
        n: usize,
        spec: &Spanned<IncidentSpec>,
        hosts: &[HostPlan],
        scenario_start: i64,
        scenario_end: i64,
        seed: u64,
    ) -> Result<Incident, SimError> {
        let at = spec.span().start;
        let s = spec.get_ref();
        let kind = s.kind;
        let allowed = allowed_keys(kind);
        if let Some(extra) = s.present().into_iter().find(|k| !allowed.contains(k)) {
            return Err(self.error(
                at,
                format!(
                    "{kind} does not take `{extra}` (its keys: {})",
                    allowed.join(", ")
                ),
            ));
        }
        let start_us = self.instant(&s.start)?;
        let end_us = match (&s.end, kind) {
            (Some(end), _) => self.instant(end)?,
            (None, IncidentKind::DnsChange) => {
                (start_us + DNS_CHANGE_LAG_SECS * SECOND).min(scenario_end)
            }
            (None, _) => return Err(self.error(at, format!("{kind}: `end` is required"))),
        };
        if !(scenario_start <= start_us && start_us < end_us && end_us <= scenario_end) {
            return Err(self.error(
                at,
                format!("{kind}: needs start < end, both inside the scenario's period"),
            ));
        }
        if s.hosts.is_empty() {
            return Err(self.error(at, format!("{kind}: `hosts` must name at least one host")));
        }
        let mut host_ids = Vec::with_capacity(s.hosts.len());
        for name in &s.hosts {
            match hosts.iter().position(|h| h.name == *name) {
                Some(i) if !host_ids.contains(&i) => host_ids.push(i),
                Some(_) => {
                    return Err(self.error(at, format!("{kind}: host {name:?} is listed twice")));
                }
                None => {
                    return Err(self.error(at, format!("{kind}: no host is named {name:?}")));
                }
            }
        }
        let share = |default: f64| -> Result<f64, SimError> {
            let v = s.share.unwrap_or(default);
            if v > 0.0 && v <= 1.0 {
                Ok(v)
            } else {
                Err(self.error(at, format!("{kind}: share must be in (0, 1], got {v}")))
            }
        };
        let required = |key: &str| self.error(at, format!("{kind}: `{key}` is required"));
        let effect = match kind {
            IncidentKind::BounceStorm => Effect::BounceStorm {
                domain: self
                    .world_domain(s.domain.as_deref().ok_or_else(|| required("domain"))?, at)?,
                share: share(0.8)?,
            },
            IncidentKind::GreylistingWave => {
                let names = s.domains.as_ref().ok_or_else(|| required("domains"))?;
                if names.is_empty() {
                    return Err(required("domains"));
                }
                let domains = names
                    .iter()
                    .map(|d| self.world_domain(d, at))
                    .collect::<Result<BTreeSet<_>, _>>()?;
                Effect::GreylistingWave {
                    domains,
                    share: share(0.9)?,
                }
            }
            IncidentKind::IpBlocklisted => Effect::IpBlocklisted {
                blocklist: s
                    .blocklist
                    .clone()
                    .unwrap_or_else(|| "zen.spamhaus.org".to_string()),
                share: share(0.9)?,
            },
            IncidentKind::DnsFailure => Effect::DnsFailure {
                domain: self
                    .world_domain(s.domain.as_deref().ok_or_else(|| required("domain"))?, at)?,
            },
            IncidentKind::CompromisedAccount => {
                let sasl_user = s.sasl_user.clone().ok_or_else(|| required("sasl_user"))?;
                if !sasl_user.contains('@') || sasl_user.chars().any(|c| c.is_whitespace()) {
                    return Err(self.error(
                        at,
                        format!("{kind}: sasl_user must be an address like anna@example.org"),
                    ));
                }
                let client_ip = match &s.client_ip {
                    Some(ip) => self.ipv4(ip, at)?,
                    // A public address derived from the seed and the incident's position.
                    None => {
                        let h = seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        Ip::new(185, 220, (h >> 8) as u8, ((h & 0xFF) as u8).clamp(1, 254))
                    }
                };
                let messages_per_hour = s.messages_per_hour.unwrap_or(120.0);
                let recipients_per_message = s.recipients_per_message.unwrap_or(20);
                let complaint_rate = s.complaint_rate.unwrap_or(0.25);
                let valid = messages_per_hour > 0.0
                    && messages_per_hour <= 100_000.0
                    && (1..=500).contains(&recipients_per_message)
                    && (0.0..=1.0).contains(&complaint_rate);
                if !valid {
                    return Err(self.error(
                        at,
                        format!(
                            "{kind}: messages_per_hour must be in (0, 100000], recipients_per_message in [1, 500] and complaint_rate in [0, 1]"
                        ),
                    ));
                }
                Effect::CompromisedAccount {
                    sasl_user,
                    client_ip,
                    messages_per_hour,
                    recipients_per_message,
                    complaint_rate,
                }
            }
            IncidentKind::ConnectionFlood => {
                let net = s
                    .client_net
                    .as_deref()
                    .ok_or_else(|| required("client_net"))?;
                let octets = net
                    .strip_suffix("/24")
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                    .map(|ip| ip.octets())
                    .filter(|o| o[3] == 0)
                    .ok_or_else(|| {
                        self.error(
                            at,
                            format!(
                                "{kind}: client_net must be a /24 like 203.0.113.0/24, got {net:?}"
                            ),
                        )
                    })?;
                let sessions_per_hour = s.sessions_per_hour.unwrap_or(1_800.0);
                let auth_failure_share = s.auth_failure_share.unwrap_or(0.6);
                let valid = sessions_per_hour > 0.0
                    && sessions_per_hour <= 1_000_000.0
                    && (0.0..=1.0).contains(&auth_failure_share);
                if !valid {
                    return Err(self.error(
                        at,
                        format!(
                            "{kind}: sessions_per_hour must be in (0, 1000000] and auth_failure_share in [0, 1]"
                        ),
                    ));
                }
                Effect::ConnectionFlood {
                    net: [octets[0], octets[1], octets[2]],
                    sessions_per_hour,
                    auth_failure_share,
                }
            }
            IncidentKind::RelayDown => {
                let relay = s.relay.clone().ok_or_else(|| required("relay"))?;
                if relay_domains(&self.world, &relay).is_empty() {
                    return Err(self.error(
                        at,
                        format!(
                            "{kind}: no working domain uses {relay:?} as MX; e.g. gmail-smtp-in.l.google.com, mta5.am0.yahoodns.net, smtp-in.orange.fr, mx00.t-online.de"
                        ),
                    ));
                }
                Effect::RelayDown {
                    relay,
                    failure: match s.failure {
                        None | Some(FailureName::Refused) => RelayFailure::Refused,
                        Some(FailureName::Timeout) => RelayFailure::Timeout,
                    },
                }
            }
            IncidentKind::SpoolFilling => {
                let rate = s
                    .fill_bytes_per_hour
                    .ok_or_else(|| required("fill_bytes_per_hour"))?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err(
                        self.error(at, format!("{kind}: fill_bytes_per_hour must be positive"))
                    );
                }
                Effect::SpoolFilling {
                    fill_bytes_per_hour: rate,
                }
            }
            IncidentKind::DnsChange => {
                let domain = match &s.domain {
                    Some(d) => {
                        let name = d.trim_end_matches('.').to_ascii_lowercase();
                        let valid = name.contains('.')
                            && name.len() <= 253
                            && name.split('.').all(|l| {
                                !l.is_empty()
                                    && l.len() <= 63
                                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            });
                        if !valid {
                            return Err(self.error(
                                at,
                                format!("{kind}: domain must be a domain name like example.org, got {d:?}"),
                            ));
                        }
                        Some(name)
                    }
                    None => None,
                };
                Effect::DnsChange { domain }
            }
        };
        Ok(Incident {
            id: s.id.clone().unwrap_or_else(|| format!("{kind}-{}", n + 1)),
            hosts: host_ids,
            start_us,
            end_us,
            effect,
        })
    }
}

/// Working domains with `relay` among their MX hosts, in world order.
pub(crate) fn relay_domains(world: &World, relay: &str) -> Vec<String> {
    world
        .domains
        .iter()
        .filter(|d| d.health == Health::Normal && d.mx.iter().any(|mx| mx.host == relay))
        .map(|d| d.name.clone())
        .collect()
}
