//! Which agents have an open stream and when they last sent something (for `agent_up`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Live view of agent connections (memory only; the registry in the store is the durable one).
#[derive(Debug, Default)]
pub struct Liveness {
    agents: Mutex<HashMap<Arc<str>, LiveAgent>>,
}

#[derive(Debug, Clone)]
struct LiveAgent {
    streams: usize,
    last_message: Instant,
}

/// Whether an agent counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentStatus {
    /// At least one stream open.
    pub connected: bool,
    /// Connected and sent something within `agent_down_after_secs`.
    pub up: bool,
}

impl Liveness {
    /// A stream of `agent` opened.
    pub fn connect(&self, agent: &Arc<str>) {
        let mut agents = self.lock();
        let entry = agents.entry(agent.clone()).or_insert(LiveAgent {
            streams: 0,
            last_message: Instant::now(),
        });
        entry.streams += 1;
        entry.last_message = Instant::now();
    }

    /// `agent` sent a message.
    pub fn seen(&self, agent: &str) {
        if let Some(entry) = self.lock().get_mut(agent) {
            entry.last_message = Instant::now();
        }
    }

    /// A stream of `agent` ended; true when it was its last one.
    pub fn disconnect(&self, agent: &str) -> bool {
        match self.lock().get_mut(agent) {
            Some(entry) => {
                entry.streams = entry.streams.saturating_sub(1);
                entry.streams == 0
            }
            None => true,
        }
    }

    /// Status of `agent` given the silence after which it counts as down.
    pub fn status(&self, agent: &str, down_after: Duration) -> AgentStatus {
        match self.lock().get(agent) {
            Some(entry) if entry.streams > 0 => AgentStatus {
                connected: true,
                up: entry.last_message.elapsed() < down_after,
            },
            _ => AgentStatus {
                connected: false,
                up: false,
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, LiveAgent>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}
