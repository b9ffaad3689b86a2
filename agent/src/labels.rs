//! Label values every sample source shares: what a label says when its value is missing or has
//! been folded away. The aggregator, the traffic signals, the queue snapshots and the capacity
//! probes all spell them the same, so one series name means one thing at the collector.

/// Value of a label whose source field is missing.
pub const UNKNOWN: &str = "unknown";

/// Value a label takes when top-K folding (or a bounded label set) removes its own value.
pub const OTHER: &str = "other";
