//! mailpulse simulator: everything that makes mail traffic instead of observing it.
//!
//! - [`synth`]: a deterministic, seeded Postfix log generator (`mailpulse synth-log`, tests,
//!   benchmarks);
//! - [`fleet`]: a fleet simulator on top of it — scenarios (TOML), daily and weekly seasonality,
//!   labelled incidents, per-host logs and probe gauges (`mailpulse simulate`), and the
//!   fast-forward feed through the agent's pipeline, with the agent's queue watcher samples,
//!   feedback-loop complaints and DNS and reputation probes;
//! - [`postqueue`]: a deterministic `postqueue -j` output generator (queue tests, benchmarks);
//! - [`eval`]: the detection evaluation — simulated fleets through the agent pipeline and the
//!   collector's decoder and detectors, scored per incident kind (`mailpulse eval`).
//!
//! Architecture invariant: the agent and the collector never depend on this crate (their
//! tests may); it depends on both, to drive their real code.

pub mod eval;
pub mod fleet;
pub mod postqueue;
pub mod synth;
