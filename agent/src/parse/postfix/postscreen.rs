//! postscreen: the zombie filter in front of smtpd; endpoints are `[ip]:port` without a name.

use nom::{Parser, character::complete::u32 as dec_u32};

use super::{FindLit, endpoint_then, endpoint_with_text, misc, seconds, smtpd, whole_endpoint};
use crate::parse::record::{CheckAction, Postscreen, Record};

/// `KIND from [ip]:port after STAGE[: text]` violations.
const VIOLATIONS: [&str; 5] = [
    "COMMAND TIME LIMIT",
    "COMMAND COUNT LIMIT",
    "COMMAND LENGTH LIMIT",
    "BARE NEWLINE",
    "NON-SMTP COMMAND",
];

/// Allow/deny list verdicts: `KIND [ip]:port`.
const LIST_VERDICTS: [&str; 6] = [
    "WHITELISTED",
    "BLACKLISTED",
    "ALLOWLISTED",
    "DENYLISTED",
    "WHITELIST VETO",
    "ALLOWLIST VETO",
];

pub(super) fn parse(m: &str) -> Option<Record<'_>> {
    if m.starts_with("cache ") {
        return misc::cache_cleanup(m);
    }
    postscreen(m).map(Record::Postscreen)
}

fn postscreen(m: &str) -> Option<Postscreen<'_>> {
    if let Some(r) = m.strip_prefix("CONNECT from ") {
        let (client, r) = endpoint_then(r, " to ")?;
        return Some(Postscreen::Connect {
            client,
            server: whole_endpoint(r)?,
        });
    }
    if let Some(r) = m.strip_prefix("DISCONNECT ") {
        return Some(Postscreen::Disconnect {
            client: whole_endpoint(r)?,
        });
    }
    if let Some(r) = m.strip_prefix("PASS ") {
        let (new, r) = match r.split_byte(b' ')? {
            ("NEW", r) => (true, r),
            ("OLD", r) => (false, r),
            _ => return None,
        };
        return Some(Postscreen::Pass {
            new,
            client: whole_endpoint(r)?,
        });
    }
    if let Some(r) = m.strip_prefix("DNSBL rank ") {
        let (rank, r) = r.split_lit(" for ")?;
        return Some(Postscreen::DnsblRank {
            client: whole_endpoint(r)?,
            rank: rank.parse().ok()?,
        });
    }
    if let Some(r) = m.strip_prefix("PREGREET ") {
        let (r, bytes) = dec_u32::<_, nom::error::Error<&str>>.parse(r).ok()?;
        let (after, r) = r.strip_prefix(" after ")?.split_lit(" from ")?;
        let (client, text) = endpoint_with_text(r)?;
        return Some(Postscreen::Pregreet {
            bytes,
            after_secs: seconds(after),
            client,
            text,
        });
    }
    if let Some(r) = m.strip_prefix("HANGUP after ") {
        let (after, r) = r.split_lit(" from ")?;
        let (client, stage) = endpoint_then(r, " in ")?;
        return Some(Postscreen::Hangup {
            after_secs: seconds(after),
            client,
            stage,
        });
    }
    if let Some(r) = m.strip_prefix("COMMAND PIPELINING from ") {
        let (client, r) = endpoint_then(r, " after ")?;
        let stage = r.split_byte(b':').map_or(r, |(stage, _)| stage);
        return Some(Postscreen::CommandPipelining { client, stage });
    }
    if let Some(r) = m.strip_prefix("NOQUEUE: ") {
        let (word, rest) = r.split_lit(": ")?;
        let c = smtpd::check(word, rest)?;
        if c.action != CheckAction::Reject {
            return None;
        }
        return Some(Postscreen::Reject {
            stage: c.stage,
            client: c.client,
            reply: c.reply,
            envelope: c.envelope,
        });
    }
    if let Some(kind) = VIOLATIONS.iter().find(|k| m.starts_with(**k)) {
        let r = m.get(kind.len()..)?.strip_prefix(" from ")?;
        let (client, r) = endpoint_then(r, " after ")?;
        let (stage, text) = match r.split_byte(b':') {
            Some((stage, text)) => (stage, text.strip_prefix(' ').unwrap_or(text)),
            None => (r, ""),
        };
        return Some(Postscreen::Violation {
            kind,
            client,
            stage,
            text,
        });
    }
    let kind = LIST_VERDICTS.iter().find(|k| m.starts_with(**k))?;
    let client = whole_endpoint(m.get(kind.len()..)?.strip_prefix(' ')?)?;
    Some(Postscreen::Note {
        kind,
        client: Some(client),
        text: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::record::Endpoint;

    fn p(m: &str) -> Postscreen<'_> {
        match parse(m) {
            Some(Record::Postscreen(s)) => s,
            other => panic!("expected a postscreen record for {m:?}, got {other:?}"),
        }
    }

    const CLIENT: Endpoint<'static> = Endpoint {
        host: "",
        ip: "2001:db8::7",
        port: Some(52237),
    };

    #[test]
    fn ipv6_pass_and_dnsbl() {
        assert_eq!(
            p("PASS NEW [2001:db8::7]:52237"),
            Postscreen::Pass {
                new: true,
                client: CLIENT
            }
        );
        assert_eq!(
            p("DNSBL rank 3 for [2001:db8::7]:52237"),
            Postscreen::DnsblRank {
                client: CLIENT,
                rank: 3
            }
        );
    }

    #[test]
    fn pregreet_and_hangup() {
        assert_eq!(
            p("PREGREET 11 after 0.07 from [2001:db8::7]:52237: EHLO x\\r\\n"),
            Postscreen::Pregreet {
                bytes: 11,
                after_secs: Some(0.07),
                client: CLIENT,
                text: "EHLO x\\r\\n"
            }
        );
        assert_eq!(
            p("HANGUP after 0.5 from [2001:db8::7]:52237 in tests after SMTP handshake"),
            Postscreen::Hangup {
                after_secs: Some(0.5),
                client: CLIENT,
                stage: "tests after SMTP handshake"
            }
        );
    }

    #[test]
    fn reject_without_trailer() {
        let Postscreen::Reject { stage, reply, .. } =
            p("NOQUEUE: reject: CONNECT from [1.2.3.4]:1337: too many connections")
        else {
            panic!()
        };
        assert_eq!(
            (stage, reply.text, reply.code),
            ("CONNECT", "too many connections", None)
        );
    }

    #[test]
    fn violations_and_verdicts() {
        assert_eq!(
            p("NON-SMTP COMMAND from [2001:db8::7]:52237 after CONNECT: GET / HTTP/1.1"),
            Postscreen::Violation {
                kind: "NON-SMTP COMMAND",
                client: CLIENT,
                stage: "CONNECT",
                text: "GET / HTTP/1.1"
            }
        );
        assert!(matches!(
            p("WHITELIST VETO [2001:db8::7]:52237"),
            Postscreen::Note {
                kind: "WHITELIST VETO",
                client: Some(CLIENT),
                ..
            }
        ));
        assert!(parse("PASS MAYBE [1.2.3.4]:5").is_none());
        assert!(parse("DNSBL rank x for [1.2.3.4]:5").is_none());
    }
}
