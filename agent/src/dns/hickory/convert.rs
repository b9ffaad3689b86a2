//! hickory's types → ours: query names, answers (records, rcodes, the authenticated flag) and
//! errors, per the mapping described in [`super`].

use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{DnssecSummary, Proof};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{self as hrr, Name};
use hickory_resolver::proto::serialize::binary::BinEncodable;

use crate::dns::{Answer, LookupError, RData, Rcode, Record, RecordType, normalise_name};

/// `name` as an absolute hickory name (ASCII names keep underscores; others go through IDNA).
pub(super) fn query_name(name: &str) -> Result<Name, LookupError> {
    let trimmed = name.trim_end_matches('.');
    let parsed = if trimmed.is_ascii() {
        Name::from_ascii(trimmed)
    } else {
        Name::from_utf8(trimmed)
    };
    let mut parsed = parsed.map_err(|_| LookupError::BadName(name.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The answer of a successful lookup: CNAMEs and records of the asked type, in order.
pub(super) fn answer_from_lookup(lookup: &Lookup, rtype: RecordType, validating: bool) -> Answer {
    let asked = hrr::RecordType::from(rtype.code());
    let kept: Vec<&hrr::Record> = lookup
        .answers()
        .iter()
        .filter(|r| {
            let t = r.record_type();
            t == asked || t == hrr::RecordType::CNAME
        })
        .collect();
    let authenticated = validating
        && !kept.is_empty()
        && DnssecSummary::from_records(kept.iter().copied()) == DnssecSummary::Secure;
    let records = kept.into_iter().map(record_from_hickory).collect();
    Answer {
        rcode: rcode_from_hickory(lookup.message().metadata.response_code),
        records,
        authenticated,
    }
}

/// Errors that are really answers become answers; the rest become [`LookupError`]s.
pub(super) fn answer_from_error(error: NetError, validating: bool) -> Result<Answer, LookupError> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            let mut answer = Answer::empty(rcode_from_hickory(no_records.response_code));
            answer.authenticated = validating
                && no_records.authorities.as_ref().is_some_and(|auth| {
                    !auth.is_empty()
                        && DnssecSummary::from_records(auth.iter()) == DnssecSummary::Secure
                });
            Ok(answer)
        }
        NetError::Dns(DnsError::ResponseCode(code)) => Ok(Answer::empty(rcode_from_hickory(code))),
        NetError::Dns(DnsError::DnssecBogus) => Err(LookupError::Protocol(
            "DNSSEC validation failed: the answer is bogus".into(),
        )),
        NetError::Dns(DnsError::Nsec {
            query,
            response,
            proof,
            ..
        }) => match proof {
            // A negative answer from a zone proven unsigned: an ordinary, unauthenticated answer.
            Proof::Insecure => Ok(Answer::empty(rcode_from_hickory(response.response_code))),
            proof => Err(LookupError::Protocol(format!(
                "DNSSEC validation failed: the denial of existence for {query} is {proof}"
            ))),
        },
        other => Err(lookup_error(other)),
    }
}

/// A hickory error that carries no answer.
pub(super) fn lookup_error(error: NetError) -> LookupError {
    match error {
        NetError::Timeout => LookupError::Timeout,
        NetError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => LookupError::Timeout,
        error @ (NetError::Io(_)
        | NetError::NoConnections
        | NetError::Busy
        | NetError::Truncated) => LookupError::Transport(error.to_string()),
        other => LookupError::Protocol(other.to_string()),
    }
}

fn rcode_from_hickory(code: ResponseCode) -> Rcode {
    match code {
        ResponseCode::NoError => Rcode::NoError,
        ResponseCode::FormErr => Rcode::FormErr,
        ResponseCode::ServFail => Rcode::ServFail,
        ResponseCode::NXDomain => Rcode::NxDomain,
        ResponseCode::NotImp => Rcode::NotImp,
        ResponseCode::Refused => Rcode::Refused,
        other => Rcode::Other(u16::from(other)),
    }
}

fn record_from_hickory(record: &hrr::Record) -> Record {
    Record {
        name: name_string(&record.name),
        ttl: record.ttl,
        data: rdata_from_hickory(&record.data),
    }
}

fn rdata_from_hickory(data: &hrr::RData) -> RData {
    use hrr::RData as H;
    match data {
        H::A(a) => RData::A(a.0),
        H::AAAA(aaaa) => RData::Aaaa(aaaa.0),
        H::MX(mx) => RData::Mx {
            preference: mx.preference,
            exchange: name_string(&mx.exchange),
        },
        H::TXT(txt) => RData::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
        H::PTR(ptr) => RData::Ptr(name_string(&ptr.0)),
        H::CNAME(cname) => RData::Cname(name_string(&cname.0)),
        H::NS(ns) => RData::Ns(name_string(&ns.0)),
        // The SOA timers are unsigned 32-bit on the wire; hickory types some as i32.
        H::SOA(soa) => RData::Soa {
            mname: name_string(&soa.mname),
            rname: name_string(&soa.rname),
            serial: soa.serial,
            refresh: soa.refresh.cast_unsigned(),
            retry: soa.retry.cast_unsigned(),
            expire: soa.expire.cast_unsigned(),
            minimum: soa.minimum,
        },
        H::Unknown { code, rdata } if u16::from(*code) == RecordType::Spf.code() => {
            RData::Spf(character_strings(&rdata.anything))
        }
        other => RData::Other {
            rtype: u16::from(other.record_type()),
            // Encoding what was just decoded only fails for data hickory could not have parsed.
            data: other.to_bytes().unwrap_or_default(),
        },
    }
}

/// Splits TXT-style RDATA (length-prefixed strings); a truncated last string keeps what is there.
fn character_strings(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut strings = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let take = usize::from(len).min(rest.len());
        strings.push(rest[..take].to_vec());
        bytes = &rest[take..];
    }
    strings
}

fn name_string(name: &Name) -> String {
    normalise_name(&name.to_ascii())
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::rr::rdata::{SOA, TXT};

    use super::*;

    #[test]
    fn names_are_absolute_and_keep_underscores() {
        let name = query_name("_dmarc.Example.COM").unwrap();
        assert!(name.is_fqdn());
        assert_eq!(name_string(&name), "_dmarc.example.com");
        assert_eq!(
            name_string(&query_name("example.com.").unwrap()),
            "example.com"
        );
        assert!(matches!(
            query_name(&"a".repeat(300)),
            Err(LookupError::BadName(_))
        ));
    }

    #[test]
    fn rdata_kinds_map_to_ours() {
        let txt = hrr::RData::TXT(TXT::from_bytes(vec![b"v=spf1 ", b"-all"]));
        assert_eq!(
            rdata_from_hickory(&txt),
            RData::Txt(vec![b"v=spf1 ".to_vec(), b"-all".to_vec()])
        );
        let soa = hrr::RData::SOA(SOA::new(
            Name::from_ascii("NS1.Example.test.").unwrap(),
            Name::from_ascii("hostmaster.example.test.").unwrap(),
            7,
            3600,
            600,
            86400,
            60,
        ));
        assert_eq!(
            rdata_from_hickory(&soa),
            RData::Soa {
                mname: "ns1.example.test".into(),
                rname: "hostmaster.example.test".into(),
                serial: 7,
                refresh: 3600,
                retry: 600,
                expire: 86400,
                minimum: 60,
            }
        );
        assert_eq!(
            character_strings(&[3, b'a', b'b', b'c', 0, 2, b'x']),
            vec![b"abc".to_vec(), Vec::new(), b"x".to_vec()]
        );
    }
}
