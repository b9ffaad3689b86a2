//! Pure parsers: syslog envelope and Postfix service messages. No I/O; never panics on any input.

pub mod postfix;
pub mod record;
pub mod syslog;
pub mod time;

pub use record::Record;
pub use syslog::{EnvelopeError, EnvelopeParser, LogFormat, ProgramName, SyslogLine};
pub use time::{LogTime, Timestamp};
