//! Postfix service message parsers: one function per daemon, dispatched on the service name.

use super::record::{Record, Unparsed};

/// Parses the message body of a line logged by Postfix service `service` (`smtpd`, `qmgr`, ...).
pub fn parse<'a>(service: &str, message: &'a str) -> Record<'a> {
    let _ = service;
    Record::Unparsed(Unparsed {
        reason: "not implemented",
        text: message,
    })
}
