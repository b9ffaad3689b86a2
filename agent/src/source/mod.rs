//! Log sources.
