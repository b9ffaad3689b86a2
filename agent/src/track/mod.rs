//! Message lifecycle tracking.
