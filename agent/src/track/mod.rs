//! Message lifecycle tracking: joins Postfix records by (host, instance, queue id) into
//! [`MessageEvent`]s.
//!
//! Postfix logs one message across several daemons (smtpd `client=`, cleanup `message-id=`, qmgr
//! `from=`, one delivery line per recipient and attempt, qmgr `removed`). The tracker keeps what it
//! has learnt about each live queue id and attaches it to the events it emits. Memory is bounded:
//! entries end with qmgr `removed`, and idle or surplus entries are evicted. A queue id first seen
//! mid-life (after a restart or eviction) still yields complete per-recipient events from what its
//! own lines carry.
//!
//! `event.rs` holds what is emitted, `state.rs` what is remembered between records (and how it is
//! bounded), `observe.rs` how a record turns into events, `snapshot.rs` the remembered state as
//! data, saved and restored across restarts.

mod event;
mod observe;
mod snapshot;
mod state;

use serde::Serialize;

use crate::parse::{ProgramName, Timestamp};

pub use event::{ClientInfo, EventKind, MessageEvent, RelayTarget, TlsInfo};
pub use snapshot::TrackerSnapshot;
use state::{Instance, ServiceTable};

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

/// Where a record came from.
#[derive(Debug, Clone, Copy)]
pub struct RecordOrigin<'a> {
    pub host: &'a str,
    pub program: ProgramName<'a>,
    pub pid: Option<u32>,
    pub at: Timestamp,
}

impl Tracker {
    /// A tracker that keeps within `config`'s limits.
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

    /// Counters so far, with the queue ids live now.
    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            live_messages: self.instances.iter().map(|i| i.state.messages.len()).sum(),
            ..self.stats
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}
