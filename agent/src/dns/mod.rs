//! DNS for probes and e-mail authentication checks.
//!
//! Everything that asks DNS goes through the [`Resolve`] trait, with record types of our own
//! ([`RecordType`], [`RData`]) instead of a resolver library's: the SPF evaluator, the record
//! linters and the prober then run the same against a real resolver (hickory) and against an
//! in-memory zone ([`MemoryZone`]), which is what tests, the RFC 7208 suite and benchmarks use.
//!
//! Names are compared case-insensitively and without the trailing dot.

pub mod bimi;
pub mod check;
pub mod config;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod finding;
pub(crate) mod gauges;
pub mod hickory;
pub mod mtasts;
pub mod mx;
pub mod probe;
pub mod reputation;
pub mod reverse;
pub mod schedule;
pub mod senders;
pub mod senderscore;
pub mod spf;
pub mod tags;
pub mod tlsrpt;
pub mod zone;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

pub use zone::MemoryZone;

/// The record types the probes ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RecordType {
    A,
    Aaaa,
    Mx,
    Txt,
    Ptr,
    Cname,
    Ns,
    Soa,
    /// The obsolete SPF record type (99); RFC 7208 says not to query it, the test suite has it.
    Spf,
    /// Any other type, by number.
    Other(u16),
}

impl RecordType {
    /// The type's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Ns => 2,
            Self::Cname => 5,
            Self::Soa => 6,
            Self::Ptr => 12,
            Self::Mx => 15,
            Self::Txt => 16,
            Self::Aaaa => 28,
            Self::Spf => 99,
            Self::Other(n) => n,
        }
    }

    /// The type for a number.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::A,
            2 => Self::Ns,
            5 => Self::Cname,
            6 => Self::Soa,
            12 => Self::Ptr,
            15 => Self::Mx,
            16 => Self::Txt,
            28 => Self::Aaaa,
            99 => Self::Spf,
            n => Self::Other(n),
        }
    }

    /// The mnemonic (`A`, `AAAA`, `MX`, …, `TYPE1234`).
    pub fn name(self) -> String {
        match self {
            Self::A => "A".into(),
            Self::Aaaa => "AAAA".into(),
            Self::Mx => "MX".into(),
            Self::Txt => "TXT".into(),
            Self::Ptr => "PTR".into(),
            Self::Cname => "CNAME".into(),
            Self::Ns => "NS".into(),
            Self::Soa => "SOA".into(),
            Self::Spf => "SPF".into(),
            Self::Other(n) => format!("TYPE{n}"),
        }
    }
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// The character-strings of one TXT record, as bytes (TXT is not necessarily UTF-8).
    Txt(Vec<Vec<u8>>),
    Ptr(String),
    Cname(String),
    Ns(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// Type 99, same layout as TXT.
    Spf(Vec<Vec<u8>>),
    Other {
        rtype: u16,
        data: Vec<u8>,
    },
}

impl RData {
    /// The type of this data.
    pub fn record_type(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::Aaaa,
            Self::Mx { .. } => RecordType::Mx,
            Self::Txt(_) => RecordType::Txt,
            Self::Ptr(_) => RecordType::Ptr,
            Self::Cname(_) => RecordType::Cname,
            Self::Ns(_) => RecordType::Ns,
            Self::Soa { .. } => RecordType::Soa,
            Self::Spf(_) => RecordType::Spf,
            Self::Other { rtype, .. } => RecordType::Other(*rtype),
        }
    }

    /// TXT/SPF strings joined without separator (how SPF, DKIM and DMARC read a record).
    pub fn txt_joined(&self) -> Option<Vec<u8>> {
        match self {
            Self::Txt(parts) | Self::Spf(parts) => Some(parts.concat()),
            _ => None,
        }
    }
}

/// One resource record of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Owner name (lower case, no trailing dot).
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// The response code of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u16),
}

impl Rcode {
    /// The lower-case mnemonic used in labels (`noerror`, `nxdomain`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "noerror",
            Self::FormErr => "formerr",
            Self::ServFail => "servfail",
            Self::NxDomain => "nxdomain",
            Self::NotImp => "notimp",
            Self::Refused => "refused",
            Self::Other(_) => "other",
        }
    }
}

/// What a server answered. `records` holds the answer section's records of the asked type
/// (after following CNAMEs); NODATA is `NoError` with no records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub rcode: Rcode,
    pub records: Vec<Record>,
    /// The resolver validated the answer with DNSSEC (AD bit / local validation).
    pub authenticated: bool,
}

impl Answer {
    /// An answer with records.
    pub fn records(records: Vec<Record>) -> Self {
        Self {
            rcode: Rcode::NoError,
            records,
            authenticated: false,
        }
    }

    /// An answer with no records and `rcode`.
    pub fn empty(rcode: Rcode) -> Self {
        Self {
            rcode,
            records: Vec::new(),
            authenticated: false,
        }
    }

    /// The records' data.
    pub fn data(&self) -> impl Iterator<Item = &RData> {
        self.records.iter().map(|r| &r.data)
    }

    /// Smallest TTL of the answer (None without records).
    pub fn min_ttl(&self) -> Option<u32> {
        self.records.iter().map(|r| r.ttl).min()
    }
}

/// A lookup that got no answer at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No response in time.
    #[error("DNS query timed out")]
    Timeout,
    /// Sending or receiving failed.
    #[error("DNS transport error: {0}")]
    Transport(String),
    /// The response could not be understood (or failed DNSSEC validation).
    #[error("DNS protocol error: {0}")]
    Protocol(String),
    /// The name is not a valid domain name.
    #[error("invalid domain name {0:?}")]
    BadName(String),
}

/// Something that answers DNS questions.
pub trait Resolve: Send + Sync {
    /// Asks for the `rtype` records of `name`.
    fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> impl Future<Output = Result<Answer, LookupError>> + Send;
}

impl<R: Resolve> Resolve for &R {
    fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> impl Future<Output = Result<Answer, LookupError>> + Send {
        (**self).lookup(name, rtype)
    }
}

impl<R: Resolve> Resolve for std::sync::Arc<R> {
    fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> impl Future<Output = Result<Answer, LookupError>> + Send {
        (**self).lookup(name, rtype)
    }
}

/// `name` in lower case without the trailing dot (the form names are compared in).
pub fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
