//! Message lifecycle tracking: joins Postfix records by (host, instance, queue id) into
//! [`MessageEvent`]s.
//!
//! Postfix logs one message across several daemons (smtpd `client=`, cleanup `message-id=`, qmgr
//! `from=`, one delivery line per recipient and attempt, qmgr `removed`). The tracker keeps what it
//! has learnt about each live queue id and attaches it to the events it emits. Memory is bounded:
//! entries end with qmgr `removed`, and idle or surplus entries are evicted. A queue id first seen
//! mid-life (after a restart or eviction) still yields complete per-recipient events from what its
//! own lines carry.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::parse::record::{
    CheckAction, Cleanup, Delays, Delivery, DeliveryStatus, Endpoint, Postscreen, Postsuper, Qmgr,
    Record, Reply, Smtpd, TlsConnection,
};
use crate::parse::{ProgramName, Timestamp};

/// What happened to a message (or, for `Rejected`, to a delivery attempt that never got queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new message entered the queue (first qmgr `from=` line of a queue id).
    Received,
    /// A recipient was delivered (`status=sent`).
    Delivered,
    /// A delivery attempt was deferred (`status=deferred`).
    Deferred,
    /// A recipient bounced (`status=bounced`).
    Bounced,
    /// The message reached `maximal_queue_lifetime` and was returned to the sender.
    Expired,
    /// smtpd, postscreen or cleanup (header/body/milter checks) rejected the mail.
    Rejected,
    /// Placed in the hold queue (access/header check `HOLD`, or `postsuper -h`).
    Held,
    /// Released from the hold queue (`postsuper -H`).
    Released,
    /// Silently discarded by an access or header/body check `DISCARD`.
    Discarded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Held => "held",
            Self::Released => "released",
            Self::Discarded => "discarded",
        }
    }
}

/// A delivery target as `host[ip]:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RelayTarget {
    pub host: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl std::fmt::Display for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host)?;
        if let Some(ip) = &self.ip {
            write!(f, "[{ip}]")?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// The SMTP client that handed the message to Postfix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub host: Arc<str>,
    pub ip: Arc<str>,
}

/// TLS parameters of the connection a message arrived on or was delivered over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    pub trust: Arc<str>,
    pub protocol: Arc<str>,
    pub cipher: Arc<str>,
}

/// One step in the life of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent {
    pub kind: EventKind,
    pub host: Arc<str>,
    pub instance: Arc<str>,
    pub queue_id: Arc<str>,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "serialize_at")]
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_recipient: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dsn: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_text: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delays: Option<Delays>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nrcpt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_user: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Arc<str>>,
    /// For `Deferred`: true on the first deferral the tracker has seen for this queue id.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub first_deferral: bool,
    /// Which daemon produced the event (`smtpd`, `postscreen`, `cleanup`, `smtp`, `qmgr`, ...).
    pub service: Arc<str>,
}

fn serialize_at<S: serde::Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339())
}

/// Limits on the tracker's memory.
#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    /// Most queue ids kept at once; the least recently active are evicted beyond it.
    pub max_messages: usize,
    /// A queue id idle this long (log time) is evicted. Default: 7 days, above Postfix's
    /// default `maximal_queue_lifetime` of 5 days.
    pub max_idle_secs: i64,
    /// Most open SMTP sessions (per daemon process) whose TLS/SASL state is remembered.
    pub max_sessions: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_messages: 200_000,
            max_idle_secs: 7 * 86_400,
            max_sessions: 16_384,
        }
    }
}

/// Counters about the tracker's own state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TrackerStats {
    pub live_messages: usize,
    pub evicted_idle: u64,
    pub evicted_overflow: u64,
    pub removed: u64,
}

#[derive(Debug, Default)]
struct MessageState {
    queue_id: Option<Arc<str>>,
    last_seen_secs: i64,
    received: bool,
    deferred: bool,
    held: bool,
    sender: Option<Arc<str>>,
    size: Option<u64>,
    nrcpt: Option<u32>,
    client: Option<ClientInfo>,
    sasl_user: Option<Arc<str>>,
    tls: Option<TlsInfo>,
    message_id: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct SessionState {
    last_seen_secs: i64,
    /// Peer IP and parameters of the TLS connection this process logged last.
    tls: Option<(Arc<str>, TlsInfo)>,
    /// An smtpd `NOQUEUE: hold` waiting for the queue id its session will get.
    pending_hold: bool,
}

/// One Postfix instance on one host: its live queue ids and daemon sessions.
#[derive(Debug)]
struct Instance {
    host: Arc<str>,
    instance: Arc<str>,
    messages: FxHashMap<Box<str>, MessageState>,
    /// Keyed by (service id, pid): TLS and hold state of an smtpd/smtp process's current session.
    sessions: FxHashMap<(u16, u32), SessionState>,
    /// Relay targets by their raw `relay=` text: a host talks to few relays, so events share them.
    relays: Interner<RelayTarget>,
    /// DSN codes (`2.0.0`, `4.7.1`, ...), shared the same way.
    dsns: Interner<Arc<str>>,
}

/// A bounded cache of values built from log text, so repeated texts share one allocation.
#[derive(Debug)]
struct Interner<T> {
    map: FxHashMap<Box<str>, T>,
}

impl<T: Clone> Interner<T> {
    /// Most distinct texts kept; beyond it the cache starts over (values stay valid).
    const MAX: usize = 4096;

    fn new() -> Self {
        Self {
            map: FxHashMap::default(),
        }
    }

    fn get(&mut self, key: &str, make: impl FnOnce() -> T) -> T {
        if let Some(v) = self.map.get(key) {
            return v.clone();
        }
        if self.map.len() >= Self::MAX {
            self.map.clear();
        }
        let v = make();
        self.map.insert(key.into(), v.clone());
        v
    }
}

/// Joins records into message events. Feed every record of a log in order with [`Tracker::observe`].
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    instances: Vec<Instance>,
    last_instance: usize,
    observed: u64,
    stats: TrackerStats,
    /// Interned service names; the index is the service id used in session keys.
    services: FxHashMap<Box<str>, (Arc<str>, u16)>,
}

/// Where a record came from.
#[derive(Debug, Clone, Copy)]
pub struct RecordOrigin<'a> {
    pub host: &'a str,
    pub program: ProgramName<'a>,
    pub pid: Option<u32>,
    pub at: Timestamp,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            instances: Vec::new(),
            last_instance: 0,
            observed: 0,
            stats: TrackerStats::default(),
            services: FxHashMap::default(),
        }
    }

    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            live_messages: self.instances.iter().map(|i| i.messages.len()).sum(),
            ..self.stats
        }
    }

    /// Takes one record and appends the events it completes to `out`.
    pub fn observe(
        &mut self,
        origin: RecordOrigin<'_>,
        record: &Record<'_>,
        out: &mut Vec<MessageEvent>,
    ) {
        self.observed += 1;
        if self.observed.is_multiple_of(65_536) {
            self.sweep(origin.at.unix_secs);
        }
        let (service, service_id) = self.service_name(origin.program.service);
        let idx = self.instance_index(origin.host, origin.program.instance);
        let now = origin.at.unix_secs;
        let max_sessions = self.config.max_sessions;
        let inst = &mut self.instances[idx];
        let ctx = Ctx {
            host: inst.host.clone(),
            instance: inst.instance.clone(),
            at: origin.at,
            service,
        };
        let session_key = origin.pid.map(|pid| (service_id, pid));
        match record {
            Record::Qmgr(q) => observe_qmgr(inst, &ctx, q, out),
            Record::Delivery(d) => {
                // Outbound TLS is logged by the same smtp/lmtp process just before the delivery,
                // for the connection to the relay the delivery line names.
                let tls = session_key
                    .and_then(|k| inst.sessions.get(&k))
                    .and_then(|s| s.tls.as_ref())
                    .filter(|(peer_ip, _)| d.relay.as_ref().and_then(|r| r.ip) == Some(&**peer_ip))
                    .map(|(_, tls)| tls.clone());
                observe_delivery(inst, &ctx, d, tls, out);
            }
            Record::Smtpd(s) => observe_smtpd(inst, &ctx, session_key, s, max_sessions, out),
            Record::Postscreen(Postscreen::Reject {
                client,
                reply,
                envelope,
                ..
            }) => {
                let mut ev = ctx.event(EventKind::Rejected, "NOQUEUE", None);
                fill_reject(
                    &mut ev,
                    Some(client),
                    Some(reply),
                    envelope.from,
                    envelope.to,
                );
                out.push(ev);
            }
            Record::Cleanup(c) => observe_cleanup(inst, &ctx, c, out),
            Record::Postsuper(p) => observe_postsuper(inst, &ctx, p, out),
            Record::Tls(t) => {
                if let Some(key) = session_key {
                    let s = inst.session_mut(key, now, max_sessions);
                    s.tls = Some((Arc::from(t.peer.ip), tls_info(t)));
                }
            }
            _ => {}
        }
        if let Some(q) = record_queue_id(record)
            && let Some(m) = inst.messages.get_mut(q)
        {
            m.last_seen_secs = now;
        }
        if inst.messages.len() > self.config.max_messages {
            self.evict_overflow();
        }
    }

    fn service_name(&mut self, service: &str) -> (Arc<str>, u16) {
        if let Some(s) = self.services.get(service) {
            return s.clone();
        }
        let s: Arc<str> = Arc::from(service);
        // Service names come from the log: bound the table; surplus names share one id.
        let id = u16::try_from(self.services.len())
            .unwrap_or(u16::MAX)
            .min(1023);
        if self.services.len() < 1023 {
            self.services.insert(service.into(), (s.clone(), id));
        }
        (s, id)
    }

    fn instance_index(&mut self, host: &str, instance: &str) -> usize {
        if let Some(i) = self.instances.get(self.last_instance)
            && &*i.host == host
            && &*i.instance == instance
        {
            return self.last_instance;
        }
        let idx = match self
            .instances
            .iter()
            .position(|i| &*i.host == host && &*i.instance == instance)
        {
            Some(idx) => idx,
            None => {
                self.instances.push(Instance {
                    host: Arc::from(host),
                    instance: Arc::from(instance),
                    messages: FxHashMap::default(),
                    sessions: FxHashMap::default(),
                    relays: Interner::new(),
                    dsns: Interner::new(),
                });
                self.instances.len() - 1
            }
        };
        self.last_instance = idx;
        idx
    }

    /// Drops queue ids idle for longer than `max_idle_secs` of log time.
    fn sweep(&mut self, now_secs: i64) {
        let cutoff = now_secs.saturating_sub(self.config.max_idle_secs);
        for inst in &mut self.instances {
            let before = inst.messages.len();
            inst.messages.retain(|_, m| m.last_seen_secs >= cutoff);
            self.stats.evicted_idle += (before - inst.messages.len()) as u64;
            inst.sessions
                .retain(|_, s| s.last_seen_secs >= now_secs.saturating_sub(3600));
        }
    }

    /// Over the count bound: drop the least recently active tenth of all queue ids.
    fn evict_overflow(&mut self) {
        let mut ages: Vec<i64> = self
            .instances
            .iter()
            .flat_map(|i| i.messages.values().map(|m| m.last_seen_secs))
            .collect();
        let drop = (ages.len() / 10).max(1);
        let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut budget = drop;
        for inst in &mut self.instances {
            inst.messages.retain(|_, m| {
                if budget > 0 && m.last_seen_secs <= cutoff {
                    budget -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.stats.evicted_overflow += (drop - budget) as u64;
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

impl Instance {
    fn session_mut(&mut self, key: (u16, u32), now: i64, max_sessions: usize) -> &mut SessionState {
        if self.sessions.len() >= max_sessions {
            // Keep memory bounded: a mail host has at most a few hundred concurrent sessions, so
            // this only triggers on pathological input; dropping stale TLS state is harmless.
            self.sessions.retain(|_, s| s.last_seen_secs >= now - 600);
            if self.sessions.len() >= max_sessions {
                self.sessions.clear();
            }
        }
        let s = self.sessions.entry(key).or_default();
        s.last_seen_secs = now;
        s
    }

    fn message_mut(&mut self, queue_id: &str, now: i64) -> &mut MessageState {
        if !self.messages.contains_key(queue_id) {
            let state = MessageState {
                queue_id: Some(Arc::from(queue_id)),
                ..MessageState::default()
            };
            self.messages.insert(queue_id.into(), state);
        }
        let m = self
            .messages
            .get_mut(queue_id)
            .expect("inserted above when missing");
        m.last_seen_secs = now;
        m
    }
}

struct Ctx {
    host: Arc<str>,
    instance: Arc<str>,
    at: Timestamp,
    service: Arc<str>,
}

impl Ctx {
    fn event(&self, kind: EventKind, queue_id: &str, shared: Option<Arc<str>>) -> MessageEvent {
        MessageEvent {
            kind,
            host: self.host.clone(),
            instance: self.instance.clone(),
            queue_id: shared.unwrap_or_else(|| Arc::from(queue_id)),
            at: self.at,
            sender: None,
            recipient: None,
            orig_recipient: None,
            relay: None,
            dsn: None,
            status_text: None,
            delay_secs: None,
            delays: None,
            size: None,
            nrcpt: None,
            tls: None,
            sasl_user: None,
            client: None,
            message_id: None,
            first_deferral: false,
            service: self.service.clone(),
        }
    }

    /// An event for a known queue id, carrying what the tracker knows of the message.
    fn message_event(
        &self,
        kind: EventKind,
        queue_id: &str,
        m: Option<&MessageState>,
    ) -> MessageEvent {
        let mut ev = self.event(kind, queue_id, m.and_then(|m| m.queue_id.clone()));
        if let Some(m) = m {
            ev.sender = m.sender.clone();
            ev.size = m.size;
            ev.nrcpt = m.nrcpt;
            ev.client = m.client.clone();
            ev.sasl_user = m.sasl_user.clone();
            ev.tls = m.tls.clone();
            ev.message_id = m.message_id.clone();
        }
        ev
    }
}

fn observe_qmgr(inst: &mut Instance, ctx: &Ctx, q: &Qmgr<'_>, out: &mut Vec<MessageEvent>) {
    let now = ctx.at.unix_secs;
    match q {
        Qmgr::From {
            queue_id,
            sender,
            size_bytes,
            nrcpt,
        } => {
            let m = inst.message_mut(queue_id, now);
            if m.sender.as_deref() != Some(*sender) {
                m.sender = Some(Arc::from(*sender));
            }
            m.size = Some(*size_bytes);
            m.nrcpt = Some(*nrcpt);
            if !m.received {
                m.received = true;
                out.push(ctx.message_event(EventKind::Received, queue_id, Some(m)));
            }
        }
        Qmgr::Expired {
            queue_id,
            sender,
            text,
        } => {
            let m = inst.messages.get(*queue_id);
            let mut ev = ctx.message_event(EventKind::Expired, queue_id, m);
            if ev.sender.is_none() {
                ev.sender = Some(Arc::from(*sender));
            }
            ev.status_text = Some(Arc::from(*text));
            out.push(ev);
        }
        Qmgr::Removed { queue_id } => {
            inst.messages.remove(*queue_id);
        }
        Qmgr::Note { .. } => {}
    }
}

fn observe_delivery(
    inst: &mut Instance,
    ctx: &Ctx,
    d: &Delivery<'_>,
    session_tls: Option<TlsInfo>,
    out: &mut Vec<MessageEvent>,
) {
    let kind = match d.status {
        DeliveryStatus::Sent => EventKind::Delivered,
        DeliveryStatus::Deferred => EventKind::Deferred,
        DeliveryStatus::Bounced => EventKind::Bounced,
        // `status=expired` on a recipient line is logged by some versions instead of the qmgr line.
        DeliveryStatus::Expired => EventKind::Expired,
        // Address verification probes (`sendmail -bv`, verify(8)) deliver nothing.
        DeliveryStatus::Deliverable | DeliveryStatus::Undeliverable | DeliveryStatus::Other => {
            return;
        }
    };
    let now = ctx.at.unix_secs;
    let first_deferral = if kind == EventKind::Deferred {
        let m = inst.message_mut(d.queue_id, now);
        !std::mem::replace(&mut m.deferred, true)
    } else {
        false
    };
    let m = inst.messages.get(d.queue_id);
    let mut ev = ctx.message_event(kind, d.queue_id, m);
    ev.first_deferral = first_deferral;
    ev.recipient = Some(Arc::from(d.to));
    ev.orig_recipient = d.orig_to.map(Arc::from);
    ev.relay = d.relay.as_ref().map(|r| {
        inst.relays.get(r.raw, || RelayTarget {
            host: Arc::from(r.host),
            ip: r.ip.map(Arc::from),
            port: r.port,
        })
    });
    ev.dsn = d.dsn.map(|dsn| inst.dsns.get(dsn, || Arc::from(dsn)));
    ev.status_text = (!d.status_text.is_empty()).then(|| Arc::from(d.status_text));
    ev.delay_secs = d.delay_secs;
    ev.delays = d.delays;
    // The delivery's own (outbound) TLS session replaces the inbound TLS of the message.
    ev.tls = session_tls;
    out.push(ev);
}

fn observe_smtpd(
    inst: &mut Instance,
    ctx: &Ctx,
    session_key: Option<(u16, u32)>,
    s: &Smtpd<'_>,
    max_sessions: usize,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match s {
        Smtpd::Connect { .. } => {
            if let Some(key) = session_key {
                let st = inst.session_mut(key, now, max_sessions);
                st.tls = None;
                st.pending_hold = false;
            }
        }
        Smtpd::Disconnect { .. } => {
            if let Some(key) = session_key {
                inst.sessions.remove(&key);
            }
        }
        Smtpd::Client {
            queue_id,
            client,
            sasl_username,
            ..
        } => {
            let (tls, pending_hold) = match session_key {
                Some(key) => {
                    let st = inst.session_mut(key, now, max_sessions);
                    (
                        st.tls.as_ref().map(|(_, tls)| tls.clone()),
                        std::mem::take(&mut st.pending_hold),
                    )
                }
                None => (None, false),
            };
            let m = inst.message_mut(queue_id, now);
            m.client = Some(client_info(client));
            m.sasl_user = sasl_username.map(Arc::from);
            m.tls = tls;
            if pending_hold && !m.held {
                m.held = true;
                out.push(ctx.message_event(EventKind::Held, queue_id, Some(m)));
            }
        }
        Smtpd::Check {
            queue_id,
            action,
            client,
            reply,
            envelope,
            ..
        } => {
            let kind = match action {
                CheckAction::Reject => EventKind::Rejected,
                CheckAction::Discard => EventKind::Discarded,
                CheckAction::Hold => EventKind::Held,
                _ => return,
            };
            match (kind, queue_id) {
                (EventKind::Held, None) => {
                    // The queue file does not exist yet; the session's next `client=` names it.
                    if let Some(key) = session_key {
                        inst.session_mut(key, now, max_sessions).pending_hold = true;
                    }
                }
                (EventKind::Held, Some(q)) => {
                    let m = inst.message_mut(q, now);
                    if !m.held {
                        m.held = true;
                        let mut ev = ctx.message_event(kind, q, Some(m));
                        fill_reject(
                            &mut ev,
                            Some(client),
                            Some(reply),
                            envelope.from,
                            envelope.to,
                        );
                        out.push(ev);
                    }
                }
                _ => {
                    let q = queue_id.unwrap_or("NOQUEUE");
                    let m = queue_id.and_then(|q| inst.messages.get(q));
                    let mut ev = ctx.message_event(kind, q, m);
                    fill_reject(
                        &mut ev,
                        Some(client),
                        Some(reply),
                        envelope.from,
                        envelope.to,
                    );
                    out.push(ev);
                }
            }
        }
        _ => {}
    }
}

fn observe_cleanup(inst: &mut Instance, ctx: &Ctx, c: &Cleanup<'_>, out: &mut Vec<MessageEvent>) {
    let now = ctx.at.unix_secs;
    match c {
        Cleanup::MessageId {
            queue_id,
            message_id,
        } => {
            inst.message_mut(queue_id, now).message_id = Some(Arc::from(*message_id));
        }
        Cleanup::Check {
            queue_id,
            action,
            client,
            reply,
            envelope,
            ..
        } => {
            let kind = match action {
                CheckAction::Reject => EventKind::Rejected,
                CheckAction::Discard => EventKind::Discarded,
                CheckAction::Hold => EventKind::Held,
                _ => return,
            };
            let m = inst.message_mut(queue_id, now);
            if kind == EventKind::Held {
                if m.held {
                    return;
                }
                m.held = true;
            }
            let mut ev = ctx.message_event(kind, queue_id, Some(m));
            fill_reject(
                &mut ev,
                client.as_ref(),
                reply.as_ref(),
                envelope.from,
                envelope.to,
            );
            out.push(ev);
            if kind != EventKind::Held {
                // A rejected or discarded message never reaches qmgr: forget it now.
                inst.messages.remove(*queue_id);
            }
        }
        Cleanup::Note { .. } => {}
    }
}

fn observe_postsuper(
    inst: &mut Instance,
    ctx: &Ctx,
    p: &Postsuper<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match p {
        Postsuper::Held { queue_id } => {
            let m = inst.message_mut(queue_id, now);
            m.held = true;
            out.push(ctx.message_event(EventKind::Held, queue_id, Some(m)));
        }
        Postsuper::Released { queue_id } => {
            let m = inst.message_mut(queue_id, now);
            m.held = false;
            out.push(ctx.message_event(EventKind::Released, queue_id, Some(m)));
        }
        Postsuper::Removed { queue_id } => {
            inst.messages.remove(*queue_id);
        }
        Postsuper::Requeued { .. } | Postsuper::Summary { .. } => {}
    }
}

fn fill_reject(
    ev: &mut MessageEvent,
    client: Option<&Endpoint<'_>>,
    reply: Option<&Reply<'_>>,
    from: Option<&str>,
    to: Option<&str>,
) {
    if let Some(c) = client {
        ev.client = Some(client_info(c));
    }
    if let Some(r) = reply {
        ev.dsn = r.dsn.map(Arc::from);
        ev.status_text = Some(Arc::from(r.text));
    }
    if ev.sender.is_none() {
        ev.sender = from.map(Arc::from);
    }
    ev.recipient = to.map(Arc::from);
}

fn client_info(c: &Endpoint<'_>) -> ClientInfo {
    ClientInfo {
        host: Arc::from(c.host),
        ip: Arc::from(c.ip),
    }
}

fn tls_info(t: &TlsConnection<'_>) -> TlsInfo {
    TlsInfo {
        trust: Arc::from(t.trust),
        protocol: Arc::from(t.protocol),
        cipher: Arc::from(t.cipher),
    }
}

/// The queue id a record refers to, if any.
fn record_queue_id<'r>(record: &'r Record<'_>) -> Option<&'r str> {
    match record {
        Record::Qmgr(Qmgr::From { queue_id, .. } | Qmgr::Expired { queue_id, .. }) => {
            Some(queue_id)
        }
        Record::Delivery(d) => Some(d.queue_id),
        Record::Smtpd(Smtpd::Client { queue_id, .. }) => Some(queue_id),
        Record::Cleanup(Cleanup::MessageId { queue_id, .. }) => Some(queue_id),
        _ => None,
    }
}
