//! mailpulse agent: everything that runs on a mail host.
//!
//! Data flows one way: [`source`] (bytes + offsets) → [`parse`] (typed records) → [`track`]
//! (per-message lifecycle events) → [`report`] (summaries).

pub mod act;
pub mod aggregate;
pub mod capacity;
pub mod classify;
pub mod complaints;
pub mod config;
pub mod dns;
pub mod labels;
pub mod parse;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod runtime;
pub mod secret;
pub mod ship;
pub mod source;
pub mod track;
pub mod traffic;
