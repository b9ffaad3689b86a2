//! An in-memory zone that answers like an authoritative server: for tests, the RFC 7208 suite
//! and benchmarks.
//!
//! A name that has records, or a descendant with records (an empty non-terminal), exists:
//! asking it for a type it lacks is NODATA (`NoError`, no records); any other name is
//! `NxDomain`. A CNAME is followed (at most 8 steps) when the asked type is not CNAME. A name can
//! be made to time out, or to answer with a given rcode (e.g. `ServFail`), for every type.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Answer, LookupError, RData, Rcode, Record, RecordType, Resolve, normalise_name};

/// Longest CNAME chain followed.
const MAX_CNAME_CHAIN: usize = 8;

/// Records by name; see the module documentation.
#[derive(Debug, Default)]
pub struct MemoryZone {
    records: HashMap<String, Vec<Record>>,
    /// Names that exist because a descendant has records.
    non_terminals: HashSet<String>,
    /// Names whose every query times out.
    timeouts: HashSet<String>,
    /// Names that answer every query with this rcode.
    rcodes: HashMap<String, Rcode>,
    /// Every lookup made, for tests that count queries.
    queries: AtomicU64,
    /// Default TTL of records added without one.
    default_ttl: u32,
}

impl MemoryZone {
    /// An empty zone (every name is NXDOMAIN); records added without a TTL get 3600 s.
    pub fn new() -> Self {
        Self {
            default_ttl: 3600,
            ..Self::default()
        }
    }

    /// Adds a record with the default TTL.
    pub fn add(&mut self, name: &str, data: RData) -> &mut Self {
        let ttl = self.default_ttl;
        self.add_with_ttl(name, ttl, data)
    }

    /// Adds a record.
    pub fn add_with_ttl(&mut self, name: &str, ttl: u32, data: RData) -> &mut Self {
        let name = normalise_name(name);
        let mut parent = name.as_str();
        while let Some((_, rest)) = parent.split_once('.') {
            self.non_terminals.insert(rest.to_owned());
            parent = rest;
        }
        self.records
            .entry(name.clone())
            .or_default()
            .push(Record { name, ttl, data });
        self
    }

    /// Adds a TXT record of one string.
    pub fn add_txt(&mut self, name: &str, text: &str) -> &mut Self {
        self.add(name, RData::Txt(vec![text.as_bytes().to_vec()]))
    }

    /// Every query for `name` times out.
    pub fn set_timeout(&mut self, name: &str) -> &mut Self {
        self.timeouts.insert(normalise_name(name));
        self
    }

    /// Every query for `name` answers `rcode` with no records.
    pub fn set_rcode(&mut self, name: &str, rcode: Rcode) -> &mut Self {
        self.rcodes.insert(normalise_name(name), rcode);
        self
    }

    /// Removes every record of `name` (of every type).
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.records.remove(&normalise_name(name));
        self
    }

    /// Lookups answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// The answer, synchronously.
    pub fn answer(&self, name: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let mut name = normalise_name(name);
        let mut chain: Vec<Record> = Vec::new();
        for _ in 0..=MAX_CNAME_CHAIN {
            if self.timeouts.contains(&name) {
                return Err(LookupError::Timeout);
            }
            if let Some(rcode) = self.rcodes.get(&name) {
                return Ok(Answer::empty(*rcode));
            }
            let Some(records) = self.records.get(&name) else {
                let rcode = if self.non_terminals.contains(&name) {
                    Rcode::NoError
                } else {
                    Rcode::NxDomain
                };
                let mut answer = Answer::empty(rcode);
                answer.records = chain;
                return Ok(answer);
            };
            let matching: Vec<Record> = records
                .iter()
                .filter(|r| r.data.record_type() == rtype)
                .cloned()
                .collect();
            if !matching.is_empty() || rtype == RecordType::Cname {
                chain.extend(matching);
                return Ok(Answer::records(chain));
            }
            match records.iter().find_map(|r| match &r.data {
                RData::Cname(target) => Some((r.clone(), normalise_name(target))),
                _ => None,
            }) {
                Some((cname, target)) => {
                    chain.push(cname);
                    name = target;
                }
                None => return Ok(Answer::records(chain)),
            }
        }
        Err(LookupError::Protocol(format!(
            "CNAME chain longer than {MAX_CNAME_CHAIN}"
        )))
    }
}

impl Resolve for MemoryZone {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        self.answer(name, rtype)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn existence_nodata_nxdomain_timeouts_and_cnames() {
        let mut z = MemoryZone::new();
        z.add("Mail.Example.COM.", RData::A(Ipv4Addr::new(192, 0, 2, 1)))
            .add_txt("example.com", "v=spf1 -all")
            .add("alias.example.com", RData::Cname("mail.example.com".into()))
            .set_timeout("slow.example.com")
            .set_rcode("broken.example.com", Rcode::ServFail);
        let a = z.answer("mail.example.com", RecordType::A).unwrap();
        assert_eq!(a.rcode, Rcode::NoError);
        assert_eq!(a.records.len(), 1);
        assert_eq!(a.records[0].name, "mail.example.com");
        let nodata = z.answer("mail.example.com", RecordType::Mx).unwrap();
        assert_eq!((nodata.rcode, nodata.records.len()), (Rcode::NoError, 0));
        let ent = z.answer("deep.a.b.example.net", RecordType::A).unwrap();
        assert_eq!(ent.rcode, Rcode::NxDomain);
        let mut z2 = MemoryZone::new();
        z2.add_txt("x.y.example.org", "t");
        assert_eq!(
            z2.answer("y.example.org", RecordType::Txt).unwrap().rcode,
            Rcode::NoError,
            "empty non-terminal"
        );
        let via = z.answer("alias.example.com", RecordType::A).unwrap();
        assert_eq!(via.records.len(), 2, "CNAME then A");
        assert_eq!(
            z.answer("slow.example.com", RecordType::A),
            Err(LookupError::Timeout)
        );
        assert_eq!(
            z.answer("broken.example.com", RecordType::A).unwrap().rcode,
            Rcode::ServFail
        );
        let mut loop_zone = MemoryZone::new();
        loop_zone
            .add("a.test", RData::Cname("b.test".into()))
            .add("b.test", RData::Cname("a.test".into()));
        assert!(loop_zone.answer("a.test", RecordType::A).is_err());
        assert_eq!(z.queries(), 6);
    }
}
