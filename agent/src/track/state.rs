//! What the tracker keeps between records: per live queue id ([`MessageState`]), per daemon
//! process ([`SessionState`]), per Postfix instance ([`InstanceState`]), the interned texts events
//! share, and the eviction that keeps all of it bounded.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::Tracker;
use super::event::{ClientInfo, RelayTarget, TlsInfo};
use crate::parse::record::TlsConnection;

/// One Postfix instance on one host: its live queue ids and daemon sessions.
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) host: Arc<str>,
    pub(super) instance: Arc<str>,
    pub(super) state: InstanceState,
}

/// What the tracker keeps about one instance, apart from its name (which events borrow while the
/// state changes).
#[derive(Debug)]
pub(super) struct InstanceState {
    pub(super) messages: FxHashMap<Arc<str>, MessageState>,
    /// Keyed by (service id, pid): TLS and hold state of an smtpd/smtp process's current session.
    pub(super) sessions: FxHashMap<(u16, u32), SessionState>,
    /// Relay targets by their raw `relay=` text: a host talks to few relays, so events share them.
    pub(super) relays: Interner<RelayTarget>,
    /// DSN codes (`2.0.0`, `4.7.1`, ...), shared the same way.
    pub(super) dsns: Interner<Arc<str>>,
    /// TLS parameters of recent handshakes: a host uses a handful, so sessions share them.
    recent_tls: Vec<TlsInfo>,
}

impl InstanceState {
    /// No messages, no sessions.
    pub(super) fn empty() -> Self {
        Self {
            messages: FxHashMap::default(),
            sessions: FxHashMap::default(),
            relays: Interner::new(),
            dsns: Interner::new(),
            recent_tls: Vec::new(),
        }
    }

    /// The session of process `key`, created when new, marked seen at `now`; at most
    /// `max_sessions` are kept.
    pub(super) fn session_mut(
        &mut self,
        key: (u16, u32),
        now: i64,
        max_sessions: usize,
    ) -> &mut SessionState {
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
    pub(super) fn with_message<R>(
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
    pub(super) fn touch(&mut self, queue_id: &str, now: i64) -> Option<&MessageState> {
        let m = self.messages.get_mut(queue_id)?;
        m.last_seen_secs = now;
        Some(m)
    }

    /// TLS parameters of a handshake, shared with recent handshakes that had the same.
    pub(super) fn tls_info(&mut self, t: &TlsConnection<'_>) -> TlsInfo {
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

/// What is known of one live queue id.
#[derive(Debug)]
pub(super) struct MessageState {
    /// The queue id, shared with the key of the map the state is in and with its events.
    pub(super) queue_id: Arc<str>,
    pub(super) last_seen_secs: i64,
    pub(super) received: bool,
    pub(super) deferred: bool,
    pub(super) held: bool,
    pub(super) sender: Option<Arc<str>>,
    pub(super) size: Option<u64>,
    pub(super) nrcpt: Option<u32>,
    pub(super) client: Option<ClientInfo>,
    pub(super) sasl_user: Option<Arc<str>>,
    pub(super) tls: Option<TlsInfo>,
    pub(super) message_id: Option<Arc<str>>,
}

impl MessageState {
    pub(super) fn new(queue_id: Arc<str>, now: i64) -> Self {
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

/// The current SMTP session of one smtpd/smtp process.
#[derive(Debug, Default)]
pub(super) struct SessionState {
    pub(super) last_seen_secs: i64,
    /// Peer IP and parameters of the TLS connection this process logged last.
    pub(super) tls: Option<(PeerAddr, TlsInfo)>,
    /// An smtpd `NOQUEUE: hold` waiting for the queue id its session will get.
    pub(super) pending_hold: bool,
}

/// A peer address kept without a heap allocation when it fits (every IPv4 and IPv6 address
/// does): one is stored for each TLS handshake.
#[derive(Debug, Clone)]
pub(super) enum PeerAddr {
    Inline {
        len: u8,
        bytes: [u8; PeerAddr::INLINE],
    },
    Heap(Box<str>),
}

impl PeerAddr {
    /// Longest inline address: an IPv6 address with an IPv4 tail has 45 characters.
    const INLINE: usize = 46;

    pub(super) fn new(addr: &str) -> Self {
        let mut bytes = [0; Self::INLINE];
        match (bytes.get_mut(..addr.len()), u8::try_from(addr.len())) {
            (Some(prefix), Ok(len)) => {
                prefix.copy_from_slice(addr.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(addr.into()),
        }
    }

    /// The address as text.
    pub(super) fn as_str(&self) -> &str {
        match self {
            Self::Inline { len, bytes } => bytes
                .get(..usize::from(*len))
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or(""),
            Self::Heap(s) => s,
        }
    }

    pub(super) fn is(&self, addr: &str) -> bool {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)) == Some(addr.as_bytes()),
            Self::Heap(s) => **s == *addr,
        }
    }
}

/// A bounded cache of values built from log text, so repeated texts share one allocation.
#[derive(Debug)]
pub(super) struct Interner<T> {
    map: FxHashMap<Box<str>, T>,
}

impl<T: Clone> Interner<T> {
    /// Most distinct texts kept; beyond it the cache starts over (values stay valid).
    const MAX: usize = 4096;

    pub(super) fn new() -> Self {
        Self {
            map: FxHashMap::default(),
        }
    }

    pub(super) fn get(&mut self, key: &str, make: impl FnOnce() -> T) -> T {
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

/// Interned service names. The id of a name is its index, used in session keys.
#[derive(Debug, Default)]
pub(super) struct ServiceTable {
    ids: FxHashMap<Box<str>, u16>,
    pub(super) names: Vec<Arc<str>>,
}

impl ServiceTable {
    /// Service names come from the log: the table is bounded, surplus names share this id.
    pub(super) const OVERFLOW_ID: u16 = 1023;

    /// The id of `name`, registering it when new; `None` for a surplus name.
    pub(super) fn id(&mut self, name: &str) -> Option<u16> {
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

impl Tracker {
    /// The index of the (host, instance) entry, created when new; the last one used is checked
    /// first, since consecutive lines nearly always share it.
    pub(super) fn instance_index(&mut self, host: &str, instance: &str) -> usize {
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
                    state: InstanceState::empty(),
                });
                self.instances.len() - 1
            }
        };
        self.last_instance = idx;
        idx
    }

    /// Drops queue ids idle for longer than `max_idle_secs` of log time.
    pub(super) fn sweep(&mut self, now_secs: i64) {
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
    pub(super) fn evict_overflow(&mut self) {
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
