//! The way actions reach agents and results come back: each agent's latest stream registers
//! a sender of actions; results read from any stream go to the remediation engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailpulse_proto::v1 as pb;
use tokio::sync::mpsc;

/// Actions waiting to be written to one stream, at most.
pub const MAX_QUEUED_ACTIONS: usize = 64;

/// Results waiting for the engine, at most; more are dropped and counted by the caller.
pub const MAX_QUEUED_RESULTS: usize = 1024;

#[derive(Debug)]
pub struct ActionBus {
    agents: Mutex<HashMap<Arc<str>, mpsc::Sender<pb::Action>>>,
    results: mpsc::Sender<(Arc<str>, pb::ActionResult)>,
}

impl ActionBus {
    /// A bus and the receiver of the results agents send.
    pub fn new() -> (Arc<Self>, mpsc::Receiver<(Arc<str>, pb::ActionResult)>) {
        let (results, rx) = mpsc::channel(MAX_QUEUED_RESULTS);
        (
            Arc::new(ActionBus {
                agents: Mutex::new(HashMap::new()),
                results,
            }),
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, mpsc::Sender<pb::Action>>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the stream `agent` just said Hello on (replacing an older one).
    pub fn register(&self, agent: &Arc<str>, actions: mpsc::Sender<pb::Action>) {
        self.lock().insert(agent.clone(), actions);
    }

    /// Hands `action` to `agent`'s stream; an error when it has none open or its queue is full.
    pub fn send(&self, agent: &str, action: pb::Action) -> Result<(), String> {
        let sender = self
            .lock()
            .get(agent)
            .cloned()
            .ok_or_else(|| format!("agent {agent} has no open stream"))?;
        sender.try_send(action).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => format!("agent {agent}'s action queue is full"),
            mpsc::error::TrySendError::Closed(_) => {
                self.lock().retain(|_, s| !s.is_closed());
                format!("agent {agent}'s stream is closed")
            }
        })
    }

    /// A result read from `agent`'s stream; false when the engine's queue is full.
    pub fn result(&self, agent: &Arc<str>, result: pb::ActionResult) -> bool {
        self.results.try_send((agent.clone(), result)).is_ok()
    }
}
