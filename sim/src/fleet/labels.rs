//! The labels file: JSON Lines, one object per incident and affected host, in scenario order.
//!
//! ```json
//! {"id":"bounce_storm-1","kind":"bounce_storm","host":"mx1","start":"2024-10-08T02:00:00Z","end":"2024-10-08T04:00:00Z","start_unix_secs":1728352800,"end_unix_secs":1728360000,"keys":{"domain":"gmail.com"}}
//! ```
//!
//! `start`/`end` are when the cause is active; consequences may outlast `end` (see
//! [`super::incident`]). A DNS change's `end` is when the last authoritative server serves the
//! new records ([`super::dns`]); the change itself stays. An incident that affects several hosts gives one line per host with
//! the same `id`.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::Scenario;
use super::gauges::SPOOL_PATH;
use super::incident::{AffectedKeys, Effect, IncidentKind};
use super::scenario::relay_domains;
use crate::synth::world::World;
use mailpulse_agent::parse::time::civil_from_days;

/// One line of the labels file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentLabel {
    /// The incident's id (shared by the lines of a multi-host incident).
    pub id: String,
    pub kind: IncidentKind,
    /// The affected host.
    pub host: String,
    /// RFC 3339, UTC (`2024-10-08T02:00:00Z`).
    pub start: String,
    /// RFC 3339, UTC; exclusive.
    pub end: String,
    pub start_unix_secs: i64,
    pub end_unix_secs: i64,
    /// What the incident affects on this host.
    pub keys: AffectedKeys,
}

/// A labels file line that is not a valid label.
#[derive(Debug, thiserror::Error)]
#[error("labels line {line}: {source}")]
pub struct LabelsError {
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

impl Scenario {
    /// The labels of every incident, one per affected host, in file order.
    pub fn labels(&self) -> Vec<IncidentLabel> {
        let world = World::new();
        let mut out = Vec::new();
        for incident in &self.incidents {
            for &h in &incident.hosts {
                let host = &self.hosts[h];
                let keys = match &incident.effect {
                    Effect::BounceStorm { domain, .. } | Effect::DnsFailure { domain } => {
                        AffectedKeys {
                            domain: Some(domain.clone()),
                            ..AffectedKeys::default()
                        }
                    }
                    Effect::GreylistingWave { domains, .. } => AffectedKeys {
                        domains: domains.iter().cloned().collect(),
                        ..AffectedKeys::default()
                    },
                    Effect::IpBlocklisted { .. } => AffectedKeys {
                        ip: Some(host.main_ip.to_string()),
                        ..AffectedKeys::default()
                    },
                    Effect::CompromisedAccount {
                        sasl_user,
                        client_ip,
                        ..
                    } => AffectedKeys {
                        sasl_user: Some(sasl_user.clone()),
                        ip: Some(client_ip.to_string()),
                        ..AffectedKeys::default()
                    },
                    Effect::ConnectionFlood { net, .. } => AffectedKeys {
                        client_net: Some(format!("{}.{}.{}.0/24", net[0], net[1], net[2])),
                        ..AffectedKeys::default()
                    },
                    Effect::RelayDown { relay, .. } => AffectedKeys {
                        relay: Some(relay.clone()),
                        domains: relay_domains(&world, relay),
                        ..AffectedKeys::default()
                    },
                    Effect::SpoolFilling { .. } => AffectedKeys {
                        path: Some(SPOOL_PATH.to_string()),
                        ..AffectedKeys::default()
                    },
                    Effect::DnsChange { domain } => AffectedKeys {
                        domain: Some(self.changed_domain(domain.as_ref(), h)),
                        ..AffectedKeys::default()
                    },
                };
                let (start, end) = (
                    incident.start_us.div_euclid(1_000_000),
                    incident.end_us.div_euclid(1_000_000),
                );
                out.push(IncidentLabel {
                    id: incident.id.clone(),
                    kind: incident.kind(),
                    host: host.name.clone(),
                    start: rfc3339(start),
                    end: rfc3339(end),
                    start_unix_secs: start,
                    end_unix_secs: end,
                    keys,
                });
            }
        }
        out
    }
}

/// Writes `labels` as JSON Lines.
pub fn write_labels(mut out: impl Write, labels: &[IncidentLabel]) -> io::Result<()> {
    for label in labels {
        serde_json::to_writer(&mut out, label)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a labels file (blank lines are skipped).
pub fn parse_labels(text: &str) -> Result<Vec<IncidentLabel>, LabelsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| LabelsError {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// `2024-10-08T02:00:00Z`.
fn rfc3339(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let s = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}
