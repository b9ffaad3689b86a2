//! The tracker's state as data ([`TrackerSnapshot`]): what it knows of every live queue id and
//! of every open daemon session, to be saved with the read positions it corresponds to and
//! restored after a restart, so a message retried after the restart (qmgr logs its `from=` line
//! again) is not counted as received twice, nor deferred or held twice.
//!
//! Caches (relay and DSN interning, recent TLS parameters) are not part of it: they only share
//! allocations.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::event::{ClientInfo, TlsInfo};
use super::state::{Instance, InstanceState, MessageState, PeerAddr, SessionState};
use super::{Tracker, TrackerConfig};

/// Everything the tracker remembers between records, as plain data (serde).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackerSnapshot {
    /// Service names in the order of their ids (sessions refer to them by id).
    services: Vec<Arc<str>>,
    instances: Vec<InstanceSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InstanceSnapshot {
    host: Arc<str>,
    instance: Arc<str>,
    messages: Vec<MessageSnapshot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sessions: Vec<SessionSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MessageSnapshot {
    id: Arc<str>,
    seen: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    received: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    deferred: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    held: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nrcpt: Option<u32>,
    /// Client host and IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<(Arc<str>, Arc<str>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sasl_user: Option<Arc<str>>,
    /// Trust, protocol, cipher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<TlsTuple>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SessionSnapshot {
    service: u16,
    pid: u32,
    seen: i64,
    /// Peer IP, then trust, protocol, cipher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<(String, TlsTuple)>,
    #[serde(default, skip_serializing_if = "is_false")]
    pending_hold: bool,
}

/// TLS trust, protocol and cipher.
type TlsTuple = (Arc<str>, Arc<str>, Arc<str>);

fn is_false(b: &bool) -> bool {
    !*b
}

fn tls_tuple(t: &TlsInfo) -> TlsTuple {
    (t.trust.clone(), t.protocol.clone(), t.cipher.clone())
}

fn tls_info((trust, protocol, cipher): TlsTuple) -> TlsInfo {
    TlsInfo {
        trust,
        protocol,
        cipher,
    }
}

impl TrackerSnapshot {
    /// Live queue ids in the snapshot.
    pub fn messages(&self) -> usize {
        self.instances.iter().map(|i| i.messages.len()).sum()
    }
}

impl Tracker {
    /// What the tracker knows now, as data (in a stable order).
    pub fn snapshot(&self) -> TrackerSnapshot {
        let mut instances: Vec<InstanceSnapshot> = self
            .instances
            .iter()
            .map(|i| InstanceSnapshot {
                host: i.host.clone(),
                instance: i.instance.clone(),
                messages: i
                    .state
                    .messages
                    .values()
                    .map(|m| MessageSnapshot {
                        id: m.queue_id.clone(),
                        seen: m.last_seen_secs,
                        received: m.received,
                        deferred: m.deferred,
                        held: m.held,
                        sender: m.sender.clone(),
                        size: m.size,
                        nrcpt: m.nrcpt,
                        client: m.client.as_ref().map(|c| (c.host.clone(), c.ip.clone())),
                        sasl_user: m.sasl_user.clone(),
                        tls: m.tls.as_ref().map(tls_tuple),
                        message_id: m.message_id.clone(),
                    })
                    .collect(),
                sessions: i
                    .state
                    .sessions
                    .iter()
                    .map(|(&(service, pid), s)| SessionSnapshot {
                        service,
                        pid,
                        seen: s.last_seen_secs,
                        tls: s
                            .tls
                            .as_ref()
                            .map(|(peer, t)| (peer.as_str().to_owned(), tls_tuple(t))),
                        pending_hold: s.pending_hold,
                    })
                    .collect(),
            })
            .collect();
        for i in &mut instances {
            i.messages.sort_by(|a, b| a.id.cmp(&b.id));
            i.sessions.sort_by_key(|s| (s.service, s.pid));
        }
        TrackerSnapshot {
            services: self.services.names.clone(),
            instances,
        }
    }

    /// A tracker with `config`'s limits that knows what `snapshot` says.
    pub fn restore(config: TrackerConfig, snapshot: TrackerSnapshot) -> Self {
        let mut tracker = Tracker::new(config);
        for name in &snapshot.services {
            // Ids follow the order, as when they were registered.
            tracker.services.id(name);
        }
        for i in snapshot.instances {
            let mut state = InstanceState::empty();
            for m in i.messages {
                let mut ms = MessageState::new(m.id.clone(), m.seen);
                ms.received = m.received;
                ms.deferred = m.deferred;
                ms.held = m.held;
                ms.sender = m.sender;
                ms.size = m.size;
                ms.nrcpt = m.nrcpt;
                ms.client = m.client.map(|(host, ip)| ClientInfo { host, ip });
                ms.sasl_user = m.sasl_user;
                ms.tls = m.tls.map(tls_info);
                ms.message_id = m.message_id;
                state.messages.insert(m.id, ms);
            }
            let mut sessions = FxHashMap::default();
            for s in i.sessions {
                sessions.insert(
                    (s.service, s.pid),
                    SessionState {
                        last_seen_secs: s.seen,
                        tls: s.tls.map(|(peer, t)| (PeerAddr::new(&peer), tls_info(t))),
                        pending_hold: s.pending_hold,
                    },
                );
            }
            state.sessions = sessions;
            tracker.instances.push(Instance {
                host: i.host,
                instance: i.instance,
                state,
            });
        }
        tracker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{LogFormat, Timestamp};
    use crate::pipeline::LineProcessor;
    use crate::track::MessageEvent;

    const LOG: &str = "\
Oct 26 18:13:50 mx postfix/smtpd[10]: connect from c.example[192.0.2.7]
Oct 26 18:13:50 mx postfix/smtpd[10]: NOQUEUE: hold: RCPT from c.example[192.0.2.7]: <a@b.c>: Recipient address triggers HOLD action; from=<s@x.y> to=<a@b.c> proto=ESMTP helo=<c>
Oct 26 18:13:51 mx postfix/smtpd[10]: 1A2B3C4D5E: client=c.example[192.0.2.7], sasl_method=PLAIN, sasl_username=u1
Oct 26 18:13:51 mx postfix/qmgr[20]: 1A2B3C4D5E: from=<s@x.y>, size=100, nrcpt=1 (queue active)
Oct 26 18:13:52 mx postfix/smtpd[11]: 2B3C4D5E6F: client=d.example[192.0.2.8]
Oct 26 18:13:52 mx postfix/qmgr[20]: 2B3C4D5E6F: from=<t@x.y>, size=200, nrcpt=1 (queue active)
Oct 26 18:13:53 mx postfix/smtp[30]: 2B3C4D5E6F: to=<r@example.com>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to example.com[192.0.2.9]:25: Connection refused)
";
    const LATER: &str = "\
Oct 26 18:23:52 mx postfix/qmgr[20]: 2B3C4D5E6F: from=<t@x.y>, size=200, nrcpt=1 (queue active)
Oct 26 18:23:53 mx postfix/smtp[30]: 2B3C4D5E6F: to=<r@example.com>, relay=none, delay=601, delays=600/0/1/0, dsn=4.4.1, status=deferred (connect to example.com[192.0.2.9]:25: Connection refused)
Oct 26 18:33:53 mx postfix/smtp[30]: 2B3C4D5E6F: to=<r@example.com>, relay=example.com[192.0.2.9]:25, delay=1201, delays=1200/0/1/0, dsn=2.0.0, status=sent (250 ok)
Oct 26 18:33:53 mx postfix/qmgr[20]: 2B3C4D5E6F: removed
";

    fn events(p: &mut LineProcessor, text: &str) -> Vec<MessageEvent> {
        let mut out = Vec::new();
        for line in text.lines() {
            p.process(line, &mut out);
        }
        out
    }

    fn summary(evs: &[MessageEvent]) -> Vec<(&'static str, bool, Option<String>)> {
        evs.iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.first_deferral,
                    e.sasl_user.as_deref().map(str::to_owned),
                )
            })
            .collect()
    }

    #[test]
    fn a_restored_tracker_continues_like_the_original() {
        let reference = Timestamp::from_unix_micros(1_700_000_000_000_000);
        let mut original = LineProcessor::new(LogFormat::Bsd, reference);
        events(&mut original, LOG);
        let snapshot = original.tracker().snapshot();
        assert_eq!(snapshot.messages(), 2);
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: TrackerSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);

        let mut restored = LineProcessor::new(LogFormat::Bsd, reference);
        restored.set_tracker(Tracker::restore(TrackerConfig::default(), back));
        let mut fresh = LineProcessor::new(LogFormat::Bsd, reference);
        let (a, b, c) = (
            events(&mut original, LATER),
            events(&mut restored, LATER),
            events(&mut fresh, LATER),
        );
        assert_eq!(summary(&a), summary(&b), "restored = never stopped");
        assert!(
            !a.iter().any(|e| e.kind.as_str() == "received"),
            "a retry is not a new message"
        );
        assert!(
            c.iter().any(|e| e.kind.as_str() == "received"),
            "a fresh tracker takes the retry for a new message"
        );
        assert_eq!(restored.tracker().snapshot(), original.tracker().snapshot());
    }
}
