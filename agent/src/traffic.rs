//! SMTP traffic signals: what clients do to the server, from the log records.
//!
//! Message events say what happened to mail; these signals say what happened on the wire:
//! connections and disconnects, rejects, postscreen verdicts (PREGREET, DNSBL, HANGUP, ...),
//! SASL authentication failures, `too many errors`, timeouts, lost connections, TLS handshake
//! failures and anvil's per-client maxima. They are the inputs of flood and brute-force
//! detection, so they are keyed by the client's *network* (`/24` for IPv4, `/48` for IPv6): a
//! botnet spreads over addresses, a single abuser rarely leaves its network, and networks keep
//! label sets small. SASL usernames can be replaced by a keyed hash (HMAC-SHA-256) so labels do
//! not carry account names.
//!
//! [`SignalExtractor::extract`] maps one record to at most one [`TrafficSignal`]; the
//! [`Aggregator`](crate::aggregate::Aggregator) counts them into windows with top-K folding of
//! the open labels (client network, user), like the message counters.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::labels::{OTHER, UNKNOWN};
use crate::parse::Timestamp;
use crate::parse::record::{Anvil, CheckAction, Postscreen, Record, Smtp, Smtpd};
use crate::secret::Secret;
use crate::track::{EventKind, MessageEvent, RecordOrigin};

/// What the signal extractor does; the `[traffic]` section of the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficConfig {
    /// Extract traffic signals at all (default true).
    pub enabled: bool,
    /// Client networks kept by name per window and metric (default 50).
    pub top_k_client_nets: usize,
    /// SASL usernames kept by name per window (default 50).
    pub top_k_users: usize,
    /// Replace SASL usernames in labels by `u_` + 16 hex digits of HMAC-SHA-256(key, username)
    /// (default false). Needs `username_hash_key`.
    pub hash_usernames: bool,
    /// The HMAC key: any secret string, the same on every host so one account hashes alike
    /// across the fleet.
    pub username_hash_key: Option<Secret>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            top_k_client_nets: 50,
            top_k_users: 50,
            hash_usernames: false,
            username_hash_key: None,
        }
    }
}

impl TrafficConfig {
    /// Checks the options that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.hash_usernames && self.username_hash_key.as_ref().is_none_or(Secret::is_empty) {
            return Err("traffic.hash_usernames needs traffic.username_hash_key".into());
        }
        Ok(())
    }
}

/// SMTP stages as label values; anything else is `other`.
const STAGES: [&str; 10] = [
    "connect",
    "helo",
    "ehlo",
    "mail",
    "rcpt",
    "data",
    "bdat",
    "end-of-message",
    "vrfy",
    "etrn",
];

/// One traffic observation.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSignal {
    pub at: Timestamp,
    pub host: Arc<str>,
    pub instance: Arc<str>,
    pub kind: SignalKind,
    /// The client's network (`192.0.2.0/24`, `2001:db8:1::/48`, `unknown`), for client signals.
    pub client_net: Option<Arc<str>>,
    /// The SASL username (or its hash), for SASL failures; `unknown` when not logged.
    pub user: Option<Arc<str>>,
}

/// What a [`TrafficSignal`] counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignalKind {
    /// smtpd accepted a connection.
    SmtpdConnect,
    /// smtpd logged the end of a session.
    SmtpdDisconnect,
    /// smtpd rejected a command (access restrictions) at `stage`.
    SmtpdReject { stage: &'static str },
    /// postscreen accepted a connection.
    PostscreenConnect,
    /// A postscreen verdict or test result.
    Postscreen { event: PostscreenEvent },
    /// A failed SASL authentication on smtpd.
    SaslFailure,
    /// A message event (`received`, `delivered`, `deferred`, `bounced`) of a message submitted
    /// by an authenticated SASL user: the per-account volume and outcome, for compromised
    /// accounts (sudden volume, many new domains, bounces).
    SaslUserMessage { event: &'static str },
    /// smtpd ended a session on an error.
    SessionError { kind: SessionError },
    /// A TLS handshake failed.
    TlsFailure { direction: TlsDirection },
    /// anvil's maximum of `stat` in its last interval; rates per minute.
    AnvilMax { stat: &'static str, value: f64 },
}

/// Postscreen outcomes worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostscreenEvent {
    Pregreet,
    Dnsbl,
    Hangup,
    Pipelining,
    /// A protocol violation: bare newline, non-SMTP command, command time/count/length limit.
    Violation,
    Reject,
    PassNew,
    PassOld,
    Denylisted,
    Allowlisted,
}

impl PostscreenEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pregreet => "pregreet",
            Self::Dnsbl => "dnsbl",
            Self::Hangup => "hangup",
            Self::Pipelining => "pipelining",
            Self::Violation => "violation",
            Self::Reject => "reject",
            Self::PassNew => "pass_new",
            Self::PassOld => "pass_old",
            Self::Denylisted => "denylisted",
            Self::Allowlisted => "allowlisted",
        }
    }
}

/// How an smtpd session ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    TooManyErrors,
    Timeout,
    LostConnection,
}

impl SessionError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooManyErrors => "too_many_errors",
            Self::Timeout => "timeout",
            Self::LostConnection => "lost_connection",
        }
    }
}

/// Which side of a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsDirection {
    /// A client connecting to smtpd.
    Inbound,
    /// smtp/lmtp connecting to a remote server.
    Outbound,
}

impl TlsDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// Maps records to signals; keeps the shared host/instance strings and the hash key.
#[derive(Debug)]
pub struct SignalExtractor {
    key: Option<ring::hmac::Key>,
    host: Arc<str>,
    instance: Arc<str>,
}

impl SignalExtractor {
    /// `cfg` must have passed [`TrafficConfig::validate`]; a missing key disables hashing.
    pub fn new(cfg: &TrafficConfig) -> Self {
        let key = cfg
            .username_hash_key
            .as_ref()
            .filter(|k| cfg.hash_usernames && !k.is_empty())
            .map(|k| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k.expose().as_bytes()));
        Self {
            key,
            host: Arc::from(""),
            instance: Arc::from(""),
        }
    }

    /// The signal `record` carries, if any.
    pub fn extract(
        &mut self,
        origin: &RecordOrigin<'_>,
        record: &Record<'_>,
    ) -> Option<TrafficSignal> {
        let (kind, client_ip, user) = classify_record(record)?;
        if *self.host != *origin.host {
            self.host = Arc::from(origin.host);
        }
        if *self.instance != *origin.program.instance {
            self.instance = Arc::from(origin.program.instance);
        }
        let user = user.map(|u| self.user_label(u));
        Some(TrafficSignal {
            at: origin.at,
            host: self.host.clone(),
            instance: self.instance.clone(),
            kind,
            client_net: client_ip.map(|ip| Arc::from(client_net(ip))),
            user,
        })
    }

    /// The [`SignalKind::SaslUserMessage`] signal of a message event, if its message was
    /// submitted by a SASL user and the event is one that is counted per user.
    pub fn message_signal(&self, ev: &MessageEvent) -> Option<TrafficSignal> {
        let user = ev.sasl_user.as_deref().filter(|u| !u.is_empty())?;
        let event = match ev.kind {
            EventKind::Received => "received",
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounced => "bounced",
            _ => return None,
        };
        Some(TrafficSignal {
            at: ev.at,
            host: ev.host.clone(),
            instance: ev.instance.clone(),
            kind: SignalKind::SaslUserMessage { event },
            client_net: None,
            user: Some(self.user_label(Some(user))),
        })
    }

    /// The username as a label value: itself (lower-cased; usernames are case-insensitive in
    /// most SASL back ends), or its keyed hash.
    fn user_label(&self, user: Option<&str>) -> Arc<str> {
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            return Arc::from(UNKNOWN);
        };
        let user = user.to_ascii_lowercase();
        match &self.key {
            Some(key) => {
                let tag = ring::hmac::sign(key, user.as_bytes());
                let mut label = String::with_capacity(18);
                label.push_str("u_");
                for b in &tag.as_ref()[..8] {
                    label.push_str(&format!("{b:02x}"));
                }
                Arc::from(label)
            }
            None => Arc::from(user),
        }
    }
}

/// The signal kind, the client IP it concerns and (for SASL failures) the username, if the
/// record is a traffic signal.
#[allow(clippy::type_complexity)]
fn classify_record<'a>(
    record: &Record<'a>,
) -> Option<(SignalKind, Option<&'a str>, Option<Option<&'a str>>)> {
    Some(match record {
        Record::Smtpd(s) => match s {
            Smtpd::Connect { client } => (SignalKind::SmtpdConnect, Some(client.ip), None),
            Smtpd::Disconnect { client, .. } => {
                (SignalKind::SmtpdDisconnect, Some(client.ip), None)
            }
            Smtpd::Check {
                action: CheckAction::Reject,
                stage,
                client,
                ..
            } => (
                SignalKind::SmtpdReject {
                    stage: stage_label(stage),
                },
                Some(client.ip),
                None,
            ),
            Smtpd::SaslFailed {
                client,
                sasl_username,
                ..
            } => (
                SignalKind::SaslFailure,
                Some(client.ip),
                Some(*sasl_username),
            ),
            Smtpd::TooManyErrors { client, .. } => (
                SignalKind::SessionError {
                    kind: SessionError::TooManyErrors,
                },
                Some(client.ip),
                None,
            ),
            Smtpd::Timeout { client, .. } => (
                SignalKind::SessionError {
                    kind: SessionError::Timeout,
                },
                Some(client.ip),
                None,
            ),
            Smtpd::LostConnection { client, .. } => (
                SignalKind::SessionError {
                    kind: SessionError::LostConnection,
                },
                Some(client.ip),
                None,
            ),
            Smtpd::ClientEvent { kind, client, .. } if is_tls_failure(kind) => (
                SignalKind::TlsFailure {
                    direction: TlsDirection::Inbound,
                },
                Some(client.ip),
                None,
            ),
            _ => return None,
        },
        Record::Postscreen(p) => {
            let (event, client) = match p {
                Postscreen::Connect { client, .. } => {
                    return Some((SignalKind::PostscreenConnect, Some(client.ip), None));
                }
                Postscreen::Pregreet { client, .. } => (PostscreenEvent::Pregreet, client),
                Postscreen::DnsblRank { client, .. } => (PostscreenEvent::Dnsbl, client),
                Postscreen::Hangup { client, .. } => (PostscreenEvent::Hangup, client),
                Postscreen::CommandPipelining { client, .. } => {
                    (PostscreenEvent::Pipelining, client)
                }
                Postscreen::Violation { client, .. } => (PostscreenEvent::Violation, client),
                Postscreen::Reject { client, .. } => (PostscreenEvent::Reject, client),
                Postscreen::Pass { new: true, client } => (PostscreenEvent::PassNew, client),
                Postscreen::Pass { new: false, client } => (PostscreenEvent::PassOld, client),
                Postscreen::Note {
                    kind,
                    client: Some(client),
                    ..
                } => match *kind {
                    "BLACKLISTED" | "DENYLISTED" => (PostscreenEvent::Denylisted, client),
                    "WHITELISTED" | "ALLOWLISTED" => (PostscreenEvent::Allowlisted, client),
                    _ => return None,
                },
                _ => return None,
            };
            (SignalKind::Postscreen { event }, Some(client.ip), None)
        }
        Record::Smtp(Smtp::TlsFailure { .. }) => (
            SignalKind::TlsFailure {
                direction: TlsDirection::Outbound,
            },
            None,
            None,
        ),
        Record::Anvil(a) => {
            let (metric, value) = match a {
                Anvil::MaxRate {
                    metric,
                    value,
                    per_secs,
                    ..
                } => {
                    let per = f64::from(per_secs.unwrap_or(60).max(1));
                    (*metric, f64::from(*value) * 60.0 / per)
                }
                Anvil::MaxCount { metric, value, .. } => (*metric, f64::from(*value)),
                Anvil::CacheSize { .. } => return None,
            };
            let stat = anvil_stat(metric)?;
            (SignalKind::AnvilMax { stat, value }, None, None)
        }
        _ => return None,
    })
}

fn is_tls_failure(kind: &str) -> bool {
    matches!(
        kind,
        "SSL_accept error" | "TLS handshake failed" | "setting up TLS connection"
    )
}

/// anvil's `max <metric>` names as label values; unknown metrics are not signals.
fn anvil_stat(metric: &str) -> Option<&'static str> {
    Some(match metric {
        "connection rate" => "connection_rate",
        "connection count" => "connection_count",
        "message rate" => "message_rate",
        "recipient rate" => "recipient_rate",
        "newtls rate" => "newtls_rate",
        "auth rate" => "auth_rate",
        _ => return None,
    })
}

/// The SMTP stage as a bounded label value.
fn stage_label(stage: &str) -> &'static str {
    STAGES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(stage))
        .copied()
        .unwrap_or(OTHER)
}

/// The client's network: `/24` of an IPv4 address, `/48` of an IPv6 address (an IPv4-mapped
/// IPv6 address counts as IPv4), `unknown` for anything that is not an address.
pub fn client_net(ip: &str) -> String {
    let ip = ip.strip_prefix("IPv6:").unwrap_or(ip);
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4_net(v4),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_net(v4),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
                format!("{net}/48")
            }
        },
        Err(_) => UNKNOWN.to_owned(),
    }
}

fn v4_net(v4: std::net::Ipv4Addr) -> String {
    let [a, b, c, _] = v4.octets();
    format!("{a}.{b}.{c}.0/24")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(client_net("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(client_net("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(client_net("::ffff:198.51.100.9"), "198.51.100.0/24");
        assert_eq!(client_net("IPv6:2001:db8::1"), "2001:db8::/48");
        assert_eq!(client_net("unknown"), "unknown");
        assert_eq!(client_net(""), "unknown");
    }

    #[test]
    fn stages_are_bounded() {
        assert_eq!(stage_label("RCPT"), "rcpt");
        assert_eq!(stage_label("END-OF-MESSAGE"), "end-of-message");
        assert_eq!(stage_label("XCLIENT"), "other");
    }

    #[test]
    fn usernames_hash_with_the_key() {
        let cfg = TrafficConfig {
            hash_usernames: true,
            username_hash_key: Some("fleet secret".into()),
            ..TrafficConfig::default()
        };
        let a = SignalExtractor::new(&cfg);
        let label = a.user_label(Some("Alice@Example.org"));
        assert!(label.starts_with("u_") && label.len() == 18, "{label}");
        assert_eq!(label, a.user_label(Some("alice@example.org")));
        let other_key = SignalExtractor::new(&TrafficConfig {
            username_hash_key: Some("another".into()),
            ..cfg.clone()
        });
        assert_ne!(label, other_key.user_label(Some("alice@example.org")));
        let plain = SignalExtractor::new(&TrafficConfig::default());
        assert_eq!(&*plain.user_label(Some("Alice")), "alice");
        assert_eq!(&*plain.user_label(None), "unknown");
        assert!(cfg.validate().is_ok());
        let no_key = TrafficConfig {
            username_hash_key: None,
            ..cfg
        };
        assert!(no_key.validate().is_err());
    }
}
