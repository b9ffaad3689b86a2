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

impl MessageEvent {
    /// An event with its identity set and every optional field empty.
    pub fn new(
        kind: EventKind,
        host: Arc<str>,
        instance: Arc<str>,
        queue_id: Arc<str>,
        at: Timestamp,
        service: Arc<str>,
    ) -> Self {
        Self {
            kind,
            host,
            instance,
            queue_id,
            at,
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
            service,
        }
    }
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

#[derive(Debug)]
struct MessageState {
    /// The queue id, shared with the key of the map the state is in and with its events.
    queue_id: Arc<str>,
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

impl MessageState {
    fn new(queue_id: Arc<str>, now: i64) -> Self {
        Self {
            queue_id,
            last_seen_secs: now,
            received: false,
            deferred: false,
            held: false,
            sender: None,
            size: None,
            nrcpt: None,
            client: None,
            sasl_user: None,
            tls: None,
            message_id: None,
        }
    }
}

#[derive(Debug, Default)]
struct SessionState {
    last_seen_secs: i64,
    /// Peer IP and parameters of the TLS connection this process logged last.
    tls: Option<(PeerAddr, TlsInfo)>,
    /// An smtpd `NOQUEUE: hold` waiting for the queue id its session will get.
    pending_hold: bool,
}

/// A peer address kept without a heap allocation when it fits (every IPv4 and IPv6 address
/// does): one is stored for each TLS handshake.
#[derive(Debug, Clone)]
enum PeerAddr {
    Inline {
        len: u8,
        bytes: [u8; PeerAddr::INLINE],
    },
    Heap(Box<str>),
}

impl PeerAddr {
    /// Longest inline address: an IPv6 address with an IPv4 tail has 45 characters.
    const INLINE: usize = 46;

    fn new(addr: &str) -> Self {
        let mut bytes = [0; Self::INLINE];
        match (bytes.get_mut(..addr.len()), u8::try_from(addr.len())) {
            (Some(prefix), Ok(len)) => {
                prefix.copy_from_slice(addr.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(addr.into()),
        }
    }

    fn is(&self, addr: &str) -> bool {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)) == Some(addr.as_bytes()),
            Self::Heap(s) => **s == *addr,
        }
    }
}

/// One Postfix instance on one host: its live queue ids and daemon sessions.
#[derive(Debug)]
struct Instance {
    host: Arc<str>,
    instance: Arc<str>,
    state: InstanceState,
}

/// What the tracker keeps about one instance, apart from its name (which events borrow while the
/// state changes).
#[derive(Debug)]
struct InstanceState {
    messages: FxHashMap<Arc<str>, MessageState>,
    /// Keyed by (service id, pid): TLS and hold state of an smtpd/smtp process's current session.
    sessions: FxHashMap<(u16, u32), SessionState>,
    /// Relay targets by their raw `relay=` text: a host talks to few relays, so events share them.
    relays: Interner<RelayTarget>,
    /// DSN codes (`2.0.0`, `4.7.1`, ...), shared the same way.
    dsns: Interner<Arc<str>>,
    /// TLS parameters of recent handshakes: a host uses a handful, so sessions share them.
    recent_tls: Vec<TlsInfo>,
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
    services: ServiceTable,
}

/// Interned service names. The id of a name is its index, used in session keys.
#[derive(Debug, Default)]
struct ServiceTable {
    ids: FxHashMap<Box<str>, u16>,
    names: Vec<Arc<str>>,
}

impl ServiceTable {
    /// Service names come from the log: the table is bounded, surplus names share this id.
    const OVERFLOW_ID: u16 = 1023;

    /// The id of `name`, registering it when new; `None` for a surplus name.
    fn id(&mut self, name: &str) -> Option<u16> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let id = u16::try_from(self.names.len()).ok()?;
        if id >= Self::OVERFLOW_ID {
            return None;
        }
        self.ids.insert(name.into(), id);
        self.names.push(Arc::from(name));
        Some(id)
    }
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
            services: ServiceTable::default(),
        }
    }

    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            live_messages: self.instances.iter().map(|i| i.state.messages.len()).sum(),
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
        let idx = self.instance_index(origin.host, origin.program.instance);
        let surplus_name;
        let (service, service_id) = match self.services.id(origin.program.service) {
            Some(id) => (&self.services.names[usize::from(id)], id),
            None => {
                surplus_name = Arc::from(origin.program.service);
                (&surplus_name, ServiceTable::OVERFLOW_ID)
            }
        };
        let now = origin.at.unix_secs;
        let max_sessions = self.config.max_sessions;
        let Instance {
            host,
            instance,
            state: inst,
        } = &mut self.instances[idx];
        let ctx = Ctx {
            host,
            instance,
            at: origin.at,
            service,
        };
        let session_key = origin.pid.map(|pid| (service_id, pid));
        match record {
            Record::Qmgr(q) => observe_qmgr(inst, &ctx, q, out),
            Record::Delivery(d) => {
                // Outbound TLS is logged by the same smtp/lmtp process just before the delivery,
                // for the connection to the relay the delivery line names.
                let relay_ip = d.relay.as_ref().and_then(|r| r.ip);
                let tls = session_key
                    .and_then(|k| inst.sessions.get(&k))
                    .and_then(|s| s.tls.as_ref())
                    .filter(|(peer_ip, _)| relay_ip.is_some_and(|ip| peer_ip.is(ip)))
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
                    let tls = inst.tls_info(t);
                    let s = inst.session_mut(key, now, max_sessions);
                    s.tls = Some((PeerAddr::new(t.peer.ip), tls));
                }
            }
            _ => {}
        }
        if inst.messages.len() > self.config.max_messages {
            self.evict_overflow();
        }
    }

    fn instance_index(&mut self, host: &str, instance: &str) -> usize {
        if let Some(i) = self.instances.get(self.last_instance)
            && same_text(&i.host, host)
            && same_text(&i.instance, instance)
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
                    state: InstanceState {
                        messages: FxHashMap::default(),
                        sessions: FxHashMap::default(),
                        relays: Interner::new(),
                        dsns: Interner::new(),
                        recent_tls: Vec::new(),
                    },
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
            let inst = &mut inst.state;
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
            .flat_map(|i| i.state.messages.values().map(|m| m.last_seen_secs))
            .collect();
        let drop = (ages.len() / 10).max(1);
        let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut budget = drop;
        for inst in &mut self.instances {
            inst.state.messages.retain(|_, m| {
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

/// `a == b` for the short names compared on every record (host, instance, service) in a few
/// word loads, without the call to `bcmp` that `==` makes.
#[inline(always)]
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Two loads that cover all `n` bytes, overlapping in the middle.
    let same = |i: usize, w: usize| a.get(i..i + w) == b.get(i..i + w);
    match n {
        0 => true,
        1..=3 => same(0, 1) && same(n / 2, 1) && same(n - 1, 1),
        4..=7 => same_word::<4>(a, b, 0) && same_word::<4>(a, b, n - 4),
        8..=16 => same_word::<8>(a, b, 0) && same_word::<8>(a, b, n - 8),
        _ => a == b,
    }
}

/// Whether `a` and `b` have the same `W` bytes at `i`, compared as one array.
#[inline(always)]
fn same_word<const W: usize>(a: &[u8], b: &[u8], i: usize) -> bool {
    let word = |s: &[u8]| -> Option<[u8; W]> { s.get(i..i + W)?.try_into().ok() };
    word(a) == word(b)
}

impl InstanceState {
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

    /// Runs `f` on the state of `queue_id`, created when missing, and marks it seen at `now`.
    /// A closure rather than a returned `&mut`: that way a known id costs one hash lookup.
    fn with_message<R>(
        &mut self,
        queue_id: &str,
        now: i64,
        f: impl FnOnce(&mut MessageState) -> R,
    ) -> R {
        if let Some(m) = self.messages.get_mut(queue_id) {
            m.last_seen_secs = now;
            return f(m);
        }
        let id: Arc<str> = Arc::from(queue_id);
        let m = self
            .messages
            .entry(id.clone())
            .or_insert_with(|| MessageState::new(id, now));
        f(m)
    }

    /// Marks a known queue id seen at `now`; returns its state.
    fn touch(&mut self, queue_id: &str, now: i64) -> Option<&MessageState> {
        let m = self.messages.get_mut(queue_id)?;
        m.last_seen_secs = now;
        Some(m)
    }

    /// TLS parameters of a handshake, shared with recent handshakes that had the same.
    fn tls_info(&mut self, t: &TlsConnection<'_>) -> TlsInfo {
        /// Distinct parameter sets kept: enough for the few a host negotiates.
        const RECENT: usize = 8;
        let known = self.recent_tls.iter().position(|k| {
            same_text(&k.trust, t.trust)
                && same_text(&k.protocol, t.protocol)
                && same_text(&k.cipher, t.cipher)
        });
        match known {
            Some(i) => self.recent_tls[i].clone(),
            None => {
                let info = TlsInfo {
                    trust: Arc::from(t.trust),
                    protocol: Arc::from(t.protocol),
                    cipher: Arc::from(t.cipher),
                };
                if self.recent_tls.len() >= RECENT {
                    self.recent_tls.pop();
                }
                self.recent_tls.insert(0, info.clone());
                info
            }
        }
    }
}

/// What every event of one record shares. Borrows the instance's names: events clone them, lines
/// without events cost no reference counting.
struct Ctx<'t> {
    host: &'t Arc<str>,
    instance: &'t Arc<str>,
    at: Timestamp,
    service: &'t Arc<str>,
}

impl Ctx<'_> {
    fn event(&self, kind: EventKind, queue_id: &str, shared: Option<&Arc<str>>) -> MessageEvent {
        MessageEvent::new(
            kind,
            self.host.clone(),
            self.instance.clone(),
            shared.map_or_else(|| Arc::from(queue_id), Arc::clone),
            self.at,
            self.service.clone(),
        )
    }

    /// An event for a known queue id, carrying what the tracker knows of the message.
    fn message_event(
        &self,
        kind: EventKind,
        queue_id: &str,
        m: Option<&MessageState>,
    ) -> MessageEvent {
        let mut ev = self.event(kind, queue_id, m.map(|m| &m.queue_id));
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

fn observe_qmgr(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    q: &Qmgr<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match q {
        Qmgr::From {
            queue_id,
            sender,
            size_bytes,
            nrcpt,
        } => inst.with_message(queue_id, now, |m| {
            if m.sender.as_deref() != Some(*sender) {
                m.sender = Some(Arc::from(*sender));
            }
            m.size = Some(*size_bytes);
            m.nrcpt = Some(*nrcpt);
            if !m.received {
                m.received = true;
                out.push(ctx.message_event(EventKind::Received, queue_id, Some(m)));
            }
        }),
        Qmgr::Expired {
            queue_id,
            sender,
            text,
        } => {
            let m = inst.touch(queue_id, now);
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
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    d: &Delivery<'_>,
    session_tls: Option<TlsInfo>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    let kind = match d.status {
        DeliveryStatus::Sent => EventKind::Delivered,
        DeliveryStatus::Deferred => EventKind::Deferred,
        DeliveryStatus::Bounced => EventKind::Bounced,
        // `status=expired` on a recipient line is logged by some versions instead of the qmgr line.
        DeliveryStatus::Expired => EventKind::Expired,
        // Address verification probes (`sendmail -bv`, verify(8)) deliver nothing.
        DeliveryStatus::Deliverable | DeliveryStatus::Undeliverable | DeliveryStatus::Other => {
            inst.touch(d.queue_id, now);
            return;
        }
    };
    let mut ev = if kind == EventKind::Deferred {
        inst.with_message(d.queue_id, now, |m| {
            let first_deferral = !std::mem::replace(&mut m.deferred, true);
            let mut ev = ctx.message_event(kind, d.queue_id, Some(m));
            ev.first_deferral = first_deferral;
            ev
        })
    } else {
        let m = inst.touch(d.queue_id, now);
        ctx.message_event(kind, d.queue_id, m)
    };
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
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
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
            inst.with_message(queue_id, now, |m| {
                m.client = Some(client_info(client));
                m.sasl_user = sasl_username.map(Arc::from);
                m.tls = tls;
                if pending_hold && !m.held {
                    m.held = true;
                    out.push(ctx.message_event(EventKind::Held, queue_id, Some(m)));
                }
            });
        }
        Smtpd::Check {
            queue_id,
            action,
            client,
            reply,
            envelope,
            ..
        } => {
            let Some(kind) = check_event_kind(*action) else {
                return;
            };
            match (kind, queue_id) {
                (EventKind::Held, None) => {
                    // The queue file does not exist yet; the session's next `client=` names it.
                    if let Some(key) = session_key {
                        inst.session_mut(key, now, max_sessions).pending_hold = true;
                    }
                }
                (EventKind::Held, Some(q)) => inst.with_message(q, now, |m| {
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
                }),
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

fn observe_cleanup(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    c: &Cleanup<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match c {
        Cleanup::MessageId {
            queue_id,
            message_id,
        } => inst.with_message(queue_id, now, |m| {
            m.message_id = Some(Arc::from(*message_id));
        }),
        Cleanup::Check {
            queue_id,
            action,
            client,
            reply,
            envelope,
            ..
        } => {
            let Some(kind) = check_event_kind(*action) else {
                return;
            };
            let ev = inst.with_message(queue_id, now, |m| {
                if kind == EventKind::Held {
                    if m.held {
                        return None;
                    }
                    m.held = true;
                }
                Some(ctx.message_event(kind, queue_id, Some(m)))
            });
            let Some(mut ev) = ev else {
                return;
            };
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
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    p: &Postsuper<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match p {
        Postsuper::Held { queue_id } => inst.with_message(queue_id, now, |m| {
            m.held = true;
            out.push(ctx.message_event(EventKind::Held, queue_id, Some(m)));
        }),
        Postsuper::Released { queue_id } => inst.with_message(queue_id, now, |m| {
            m.held = false;
            out.push(ctx.message_event(EventKind::Released, queue_id, Some(m)));
        }),
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

/// The event an access, header/body or milter action produces; warn, filter, redirect and the
/// header edits change nothing in the message's fate.
fn check_event_kind(action: CheckAction) -> Option<EventKind> {
    match action {
        CheckAction::Reject => Some(EventKind::Rejected),
        CheckAction::Discard => Some(EventKind::Discarded),
        CheckAction::Hold => Some(EventKind::Held),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_inline_and_long() {
        for addr in [
            "192.0.2.1",
            "",
            "0000:0000:0000:0000:0000:ffff:255.255.255.255",
        ] {
            let p = PeerAddr::new(addr);
            assert!(matches!(p, PeerAddr::Inline { .. }), "{addr} fits inline");
            assert!(p.is(addr));
            assert!(!p.is("192.0.2.10"));
        }
        let long = "x".repeat(PeerAddr::INLINE + 1);
        let p = PeerAddr::new(&long);
        assert!(matches!(p, PeerAddr::Heap(_)));
        assert!(p.is(&long) && !p.is(&long[1..]));
    }

    #[test]
    fn service_ids_are_bounded() {
        let mut t = ServiceTable::default();
        assert_eq!(t.id("smtpd"), Some(0));
        assert_eq!(t.id("qmgr"), Some(1));
        assert_eq!(t.id("smtpd"), Some(0));
        for i in 2..ServiceTable::OVERFLOW_ID {
            assert_eq!(t.id(&format!("svc{i}")), Some(i));
        }
        assert_eq!(
            t.id("one-too-many"),
            None,
            "surplus names share the overflow id"
        );
        assert_eq!(t.id("qmgr"), Some(1));
    }
}
