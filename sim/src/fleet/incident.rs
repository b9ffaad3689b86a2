//! Injected incidents and the generator hooks that make one host live through them.
//!
//! An `Incident` has a kind, a time window, the hosts it affects and its parameters. Each host's
//! generator gets a `HostHooks`: it sets the arrival rate from the host's `RateModel`, adds
//! the sessions of active incidents (a compromised account submitting, a network flooding port 25
//! and guessing passwords) as Poisson processes independent of normal traffic, and decides remote
//! delivery attempts that an active incident affects (bounce storm, greylisting, blocklisted IP,
//! DNS failure, dead relay). The spool-filling incident has no log lines; [`super::gauges`]
//! models it. Neither has the DNS change; [`super::dns`] models it (and the blocklisted IP's
//! listing and Sender Score).
//!
//! Effects start and stop with the window, but their consequences may outlast it: deferred mail
//! is retried with Postfix's back-off (up to about 70 minutes) after a DNS failure or a dead relay
//! ends, and notifications of bounces are delivered shortly after.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::seasonal::RateModel;
use crate::synth::format::Ip;
use crate::synth::hooks::{ExtraSession, Forced, Hooks, InboundEnding, RemoteAttempt};
use crate::synth::rng::Rng;
use crate::synth::world::{self, Client, Health, Provider, Reply, ReplyContext, World};

const SECOND: i64 = 1_000_000;

/// Which kind of incident; the `kind` of a scenario incident and of a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// One destination domain rejects most recipients permanently.
    BounceStorm,
    /// Several destination domains greylist (4.7.1) first delivery attempts.
    GreylistingWave,
    /// A host's sending IP is on a DNS blocklist: 5.7.1 policy rejects at many domains.
    IpBlocklisted,
    /// A domain's MX cannot be resolved: every delivery is deferred with a DNS error.
    DnsFailure,
    /// A SASL account submits a sudden volume of mail to many domains it never wrote to.
    CompromisedAccount,
    /// One /24 floods port 25 with connections and guesses SASL passwords.
    ConnectionFlood,
    /// One next-hop MX refuses or times out connections; deferred mail piles up.
    RelayDown,
    /// The spool filesystem fills up (gauges only; logs have no disk lines).
    SpoolFilling,
    /// A record change of a monitored domain reaches one authoritative server before the other
    /// (DNS probes only; logs have no DNS lines).
    DnsChange,
}

impl IncidentKind {
    /// Every kind, in declaration order.
    pub const ALL: [IncidentKind; 9] = [
        Self::BounceStorm,
        Self::GreylistingWave,
        Self::IpBlocklisted,
        Self::DnsFailure,
        Self::CompromisedAccount,
        Self::ConnectionFlood,
        Self::RelayDown,
        Self::SpoolFilling,
        Self::DnsChange,
    ];

    /// The name used in scenario and label files (`bounce_storm`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BounceStorm => "bounce_storm",
            Self::GreylistingWave => "greylisting_wave",
            Self::IpBlocklisted => "ip_blocklisted",
            Self::DnsFailure => "dns_failure",
            Self::CompromisedAccount => "compromised_account",
            Self::ConnectionFlood => "connection_flood",
            Self::RelayDown => "relay_down",
            Self::SpoolFilling => "spool_filling",
            Self::DnsChange => "dns_change",
        }
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The keys an incident affects on one host: what a detector should point at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffectedKeys {
    /// The recipient domain (bounce storm, DNS failure), or the monitored domain whose records
    /// change (DNS change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Recipient domains (greylisting wave; the domains a dead relay serves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The next-hop MX host name (dead relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// The host's blocklisted sending IP, or the client IP of a compromised account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The SASL username of a compromised account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_user: Option<String>,
    /// The client network of a flood (`203.0.113.0/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_net: Option<String>,
    /// The filesystem that fills (its mount path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// How a dead relay fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayFailure {
    Refused,
    Timeout,
}

/// What an incident does, with its validated parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    BounceStorm {
        domain: String,
        share: f64,
    },
    GreylistingWave {
        domains: BTreeSet<String>,
        share: f64,
    },
    IpBlocklisted {
        blocklist: String,
        share: f64,
    },
    DnsFailure {
        domain: String,
    },
    CompromisedAccount {
        sasl_user: String,
        client_ip: Ip,
        messages_per_hour: f64,
        recipients_per_message: u32,
        /// Share of its spam delivered at feedback-loop providers that recipients report.
        complaint_rate: f64,
    },
    ConnectionFlood {
        /// The first three octets of the /24.
        net: [u8; 3],
        sessions_per_hour: f64,
        auth_failure_share: f64,
    },
    RelayDown {
        relay: String,
        failure: RelayFailure,
    },
    SpoolFilling {
        fill_bytes_per_hour: f64,
    },
    /// `domain`: the monitored domain that changes; `None`: each host's sending domain.
    DnsChange {
        domain: Option<String>,
    },
}

impl Effect {
    pub(crate) fn kind(&self) -> IncidentKind {
        match self {
            Self::BounceStorm { .. } => IncidentKind::BounceStorm,
            Self::GreylistingWave { .. } => IncidentKind::GreylistingWave,
            Self::IpBlocklisted { .. } => IncidentKind::IpBlocklisted,
            Self::DnsFailure { .. } => IncidentKind::DnsFailure,
            Self::CompromisedAccount { .. } => IncidentKind::CompromisedAccount,
            Self::ConnectionFlood { .. } => IncidentKind::ConnectionFlood,
            Self::RelayDown { .. } => IncidentKind::RelayDown,
            Self::SpoolFilling { .. } => IncidentKind::SpoolFilling,
            Self::DnsChange { .. } => IncidentKind::DnsChange,
        }
    }

    /// Mean sessions per second the incident adds while active (0 for those that add none).
    fn sessions_per_sec(&self) -> f64 {
        match self {
            Self::CompromisedAccount {
                messages_per_hour, ..
            } => messages_per_hour / 3600.0,
            Self::ConnectionFlood {
                sessions_per_hour, ..
            } => sessions_per_hour / 3600.0,
            _ => 0.0,
        }
    }
}

/// A validated incident of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incident {
    pub(crate) id: String,
    /// Indexes of the affected hosts in the scenario.
    pub(crate) hosts: Vec<usize>,
    pub(crate) start_us: i64,
    pub(crate) end_us: i64,
    pub(crate) effect: Effect,
}

impl Incident {
    pub(crate) fn kind(&self) -> IncidentKind {
        self.effect.kind()
    }

    fn active(&self, at: i64) -> bool {
        self.start_us <= at && at < self.end_us
    }
}

/// An incident as one host's hooks run it, with the state of its session process.
#[derive(Debug, Clone)]
struct HostIncident {
    incident: Incident,
    /// Time of the next added session (Poisson process), for incidents that add sessions.
    next_session: i64,
}

/// The generator hooks of one host: seasonal rate plus the incidents that affect it.
#[derive(Debug)]
pub(crate) struct HostHooks {
    rate: RateModel,
    incidents: Vec<HostIncident>,
    rng: Rng,
    local_domain: String,
    /// The main instance's sending address (the one a blocklist lists).
    main_ip: Ip,
    /// World domains that accept mail (a compromised account writes to them uniformly); filled
    /// from the generator's world on first use.
    normal_domains: Vec<usize>,
}

impl HostHooks {
    /// Hooks for a host with `rate` and the incidents (already filtered to the host).
    pub(crate) fn new(
        rate: RateModel,
        incidents: Vec<Incident>,
        seed: u64,
        local_domain: String,
        main_ip: Ip,
    ) -> Self {
        let mut rng = Rng::new(seed ^ 0x1BAD_C0DE_5EED_0001);
        let incidents = incidents
            .into_iter()
            .map(|incident| {
                let per_sec = incident.effect.sessions_per_sec();
                let next_session = if per_sec > 0.0 {
                    incident.start_us + (rng.exponential(SECOND as f64 / per_sec)) as i64
                } else {
                    i64::MAX
                };
                HostIncident {
                    incident,
                    next_session,
                }
            })
            .collect();
        Self {
            rate,
            incidents,
            rng,
            local_domain,
            main_ip,
            normal_domains: Vec::new(),
        }
    }

    /// The sessions of one incident's process in `[at, at + gap)`.
    fn sessions_of(&mut self, k: usize, at: i64, gap: i64, out: &mut Vec<ExtraSession>) {
        let HostIncident {
            incident,
            next_session,
        } = &mut self.incidents[k];
        let until = at.saturating_add(gap).min(incident.end_us);
        let per_sec = incident.effect.sessions_per_sec();
        let place = Place {
            local_domain: &self.local_domain,
            normal_domains: &self.normal_domains,
        };
        while *next_session < until {
            let at = (*next_session).max(at);
            out.extend(session(&mut self.rng, &place, &incident.effect, at));
            let step = (self.rng.exponential(SECOND as f64 / per_sec) as i64).max(1);
            *next_session += step;
        }
    }
}

impl Hooks for HostHooks {
    fn messages_per_sec(&mut self, at: i64) -> Option<f64> {
        Some(self.rate.messages_per_sec(at))
    }

    fn extra_sessions(&mut self, world: &World, at: i64, gap: i64, out: &mut Vec<ExtraSession>) {
        if self.normal_domains.is_empty() {
            self.normal_domains = world
                .domains
                .iter()
                .enumerate()
                .filter(|(_, d)| d.health == Health::Normal)
                .map(|(i, _)| i)
                .collect();
        }
        for k in 0..self.incidents.len() {
            if self.incidents[k].next_session != i64::MAX {
                self.sessions_of(k, at, gap, out);
            }
        }
    }

    fn remote_attempt(&mut self, a: &RemoteAttempt<'_>) -> Option<Forced> {
        for k in 0..self.incidents.len() {
            if !self.incidents[k].incident.active(a.at) {
                continue;
            }
            let forced = match &self.incidents[k].incident.effect {
                Effect::BounceStorm { domain, share } if *domain == a.domain.name => self
                    .rng
                    .chance(*share)
                    .then(|| Forced::Bounce(permanent_reply(&mut self.rng, a))),
                Effect::GreylistingWave { domains, share }
                    if a.age < GREYLIST_DELAY && domains.contains(&a.domain.name) =>
                {
                    self.rng
                        .chance(*share)
                        .then(|| Forced::Defer(greylisting_reply(a)))
                }
                Effect::IpBlocklisted { blocklist, share } if a.our_ip == self.main_ip => {
                    blocklist_reply(a, blocklist)
                        .filter(|_| self.rng.chance(*share))
                        .map(Forced::Bounce)
                }
                Effect::DnsFailure { domain } if *domain == a.domain.name => {
                    Some(Forced::Unreachable(Reply {
                        dsn: "4.4.3",
                        text: format!(
                            "Host or domain name not found. Name service error for name={domain} type=MX: Host not found, try again"
                        ),
                    }))
                }
                Effect::RelayDown { relay, failure } if *relay == a.mx.host => {
                    let what = match failure {
                        RelayFailure::Refused => "Connection refused",
                        RelayFailure::Timeout => "Connection timed out",
                    };
                    Some(Forced::Unreachable(Reply {
                        dsn: "4.4.1",
                        text: format!("connect to {}[{}]:25: {what}", a.mx.host, a.mx.ip),
                    }))
                }
                // Harvested and made-up addresses: many do not exist.
                Effect::CompromisedAccount { sasl_user, .. } if *sasl_user == a.sender => self
                    .rng
                    .chance(COMPROMISED_BOUNCE_SHARE)
                    .then(|| Forced::Bounce(permanent_reply(&mut self.rng, a))),
                _ => None,
            };
            if forced.is_some() {
                return forced;
            }
        }
        None
    }
}

/// What an added session needs to know about its host and the world.
struct Place<'a> {
    local_domain: &'a str,
    /// World domains that accept mail.
    normal_domains: &'a [usize],
}

/// One session of an incident that adds sessions (`None` for the other kinds).
fn session(rng: &mut Rng, place: &Place<'_>, effect: &Effect, at: i64) -> Option<ExtraSession> {
    match effect {
        Effect::CompromisedAccount {
            sasl_user,
            client_ip,
            recipients_per_message,
            ..
        } if !place.normal_domains.is_empty() => {
            let n = rng.range(
                u64::from(recipients_per_message / 2).max(1),
                u64::from(*recipients_per_message) * 3 / 2,
            );
            let domains = (0..n).map(|_| *rng.pick(place.normal_domains)).collect();
            let client = Client {
                host: "unknown".to_string(),
                ip: *client_ip,
                port: rng.range(1024, 65000) as u16,
                helo: format!("[{client_ip}]"),
            };
            Some(ExtraSession::Submission {
                at,
                client,
                user: sasl_user.clone(),
                domains,
            })
        }
        Effect::ConnectionFlood {
            net,
            auth_failure_share,
            ..
        } => {
            let ip = Ip::new(net[0], net[1], net[2], rng.range(1, 254) as u8);
            let helo = match rng.below(4) {
                0 => "User".to_string(),
                1 => format!("[{ip}]"),
                2 => "localhost".to_string(),
                _ => format!("WIN-{}", world::alnum(rng, 11)),
            };
            let client = Client {
                host: "unknown".to_string(),
                ip,
                port: rng.range(1024, 65000) as u16,
                helo,
            };
            if rng.chance(*auth_failure_share) {
                let name = *rng.pick(&[
                    "admin",
                    "info",
                    "test",
                    "office",
                    "sales",
                    "support",
                    "postmaster",
                    "webmaster",
                    "contact",
                    "scanner",
                ]);
                let user = match rng.below(5) {
                    0..=2 => Some(format!("{name}@{}", place.local_domain)),
                    3 => Some(name.to_string()),
                    _ => None,
                };
                Some(ExtraSession::AuthFailure { at, client, user })
            } else {
                let ending = match rng.below(20) {
                    0..=8 => InboundEnding::PostscreenDrop,
                    9..=15 => InboundEnding::Lost,
                    _ => InboundEnding::Reject,
                };
                Some(ExtraSession::Inbound { at, client, ending })
            }
        }
        _ => None,
    }
}

/// Greylisting defers a triplet for this long; Postfix's first retry (after at least
/// `minimal_backoff_time`, 300 s) gets through.
const GREYLIST_DELAY: i64 = 300 * SECOND;

/// Share of a compromised account's recipients that bounce.
const COMPROMISED_BOUNCE_SHARE: f64 = 0.15;

/// The provider's own permanent-failure text for the recipient (user unknown, mailbox
/// unavailable, policy), as in normal traffic.
fn permanent_reply(rng: &mut Rng, a: &RemoteAttempt<'_>) -> Reply {
    let cx = ReplyContext {
        rcpt: a.rcpt,
        our_ip: a.our_ip,
        unix_secs: a.at.div_euclid(SECOND),
        size_bytes: 0,
        message_id: "",
        mx: a.mx,
    };
    world::bounce_reply(rng, a.domain, &cx).0
}

fn greylisting_reply(a: &RemoteAttempt<'_>) -> Reply {
    let reply = match a.domain.provider {
        Provider::Postfix => format!(
            "450 4.7.1 <{}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/{}.html",
            a.rcpt, a.domain.name
        ),
        Provider::Exim => "451 4.7.1 Greylisted, please try again in 5 minutes".to_string(),
        _ => "451 4.7.1 Greylisting in action, please come back later".to_string(),
    };
    let mut text = String::with_capacity(reply.len() + 80);
    world::said(&mut text, a.mx, &reply, "RCPT TO");
    Reply { dsn: "4.7.1", text }
}

/// The reject a domain that consults `blocklist` sends a listed client; `None` for providers
/// that rely on their own reputation data instead.
fn blocklist_reply(a: &RemoteAttempt<'_>, blocklist: &str) -> Option<Reply> {
    let ip = a.our_ip;
    let reply = match a.domain.provider {
        // Postfix's reject_rbl_client text, with the list's own reply when it has one.
        Provider::Postfix | Provider::Orange | Provider::Free | Provider::TOnline
            if blocklist.contains("spamhaus") =>
        {
            format!(
                "554 5.7.1 Service unavailable; Client host [{ip}] blocked using {blocklist}; https://www.spamhaus.org/query/ip/{ip}"
            )
        }
        Provider::Postfix | Provider::Orange | Provider::Free | Provider::TOnline => {
            format!("554 5.7.1 Service unavailable; Client host [{ip}] blocked using {blocklist}")
        }
        Provider::Exim | Provider::UnitedInternet => {
            format!("550 5.7.1 Rejected because {ip} is in a black list at {blocklist}")
        }
        Provider::Microsoft => format!(
            "550 5.7.1 Unfortunately, messages from [{ip}] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."
        ),
        Provider::Google | Provider::Yahoo | Provider::Apple | Provider::Proton => return None,
    };
    let mut text = String::with_capacity(reply.len() + 80);
    world::said(&mut text, a.mx, &reply, "RCPT TO");
    Some(Reply { dsn: "5.7.1", text })
}
