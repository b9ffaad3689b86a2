//! Why the agent stops: [`AgentError`].

use std::io;
use std::path::PathBuf;

use crate::ship::{OutboxError, ShipError};
use crate::source::SourceError;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The options cannot work.
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(String),
    /// The state directory cannot be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Tailing or checkpointing failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The shipper cannot be set up or failed for good.
    #[error(transparent)]
    Ship(#[from] ShipError),
    /// A task of the agent panicked or was cancelled.
    #[error("agent task failed: {0}")]
    Task(String),
}
