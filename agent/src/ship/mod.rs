//! Shipping to the collector, exactly once: disk outbox, gRPC shipper, ack-driven checkpoints.
//!
//! Every sample source of the agent appends its batches to the [`Outbox`], each with the file
//! positions it covers; the [`Shipper`] sends outbox batches in
//! `seq` order and, on acknowledgement, advances and saves the file checkpoints, then deletes the
//! batch.
//!
//! Architecture invariant: a batch is in the outbox before it is sent; a checkpoint moves only to
//! positions covered by acknowledged batches, in `seq` order, and is saved before the batch files
//! are deleted.

mod client;
pub mod outbox;
mod wire;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use client::{
    ClientTls, MAX_REJECTED_IN_A_ROW, ShipError, Shipper, ShipperConfig, ShipperStats,
};
pub use outbox::{
    DEFAULT_OUTBOX_MAX_BYTES, FilePosition, Outbox, OutboxConfig, OutboxError, OutboxStats,
    PendingBatch,
};
pub use wire::wire_event;

/// Locks a mutex shared between the reader and the shipper. A panic in the other holder does not
/// leave the outbox or checkpoints half-changed in memory (every change is one call), so the
/// poison is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
