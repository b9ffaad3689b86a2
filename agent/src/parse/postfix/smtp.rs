//! smtp and lmtp client: delivery lines plus connection-level events (connect failures, server
//! replies, lost connections, TLS failures).

use super::{
    FindLit, delivery, endpoint_then, endpoint_with_text, reply, split_queue_id, tls_connection,
};
use crate::parse::record::{Record, Smtp};

/// TLS failures worded `KIND for|to host[ip]:port: text`.
const TLS_FAILURES: [(&str, &str); 3] = [
    ("certificate verification failed", " for "),
    ("server certificate verification failed", " for "),
    ("SSL_connect error", " to "),
];

pub(super) fn parse(m: &str) -> Option<Record<'_>> {
    let (queue_id, rest) = match split_queue_id(m) {
        Some((q, rest)) => {
            if rest.starts_with("to=") {
                return delivery::after_queue_id(q, rest);
            }
            (Some(q), rest)
        }
        None => {
            // No smtp event starts like a TLS line (`Trusted TLS connection established …`).
            if matches!(m.as_bytes().first(), Some(b'A' | b'U' | b'T' | b'V')) {
                return tls_connection(m).map(Record::Tls);
            }
            (None, m)
        }
    };
    if let Some(e) = smtp(queue_id, rest) {
        return Some(Record::Smtp(e));
    }
    if queue_id.is_none() {
        return tls_connection(m).map(Record::Tls);
    }
    None
}

fn smtp<'a>(queue_id: Option<&'a str>, m: &'a str) -> Option<Smtp<'a>> {
    if let Some(r) = m.strip_prefix("connect to ") {
        // `connect to mx[ip]:25: Connection refused`; a UNIX socket has no port.
        let (server, error) = endpoint_with_text(r)?;
        return Some(Smtp::ConnectFailed {
            queue_id,
            server,
            error,
        });
    }
    if let Some(r) = m.strip_prefix("host ") {
        if let Some((server, r)) = endpoint_then(r, " said: ") {
            let (text, in_reply_to) = match r.strip_suffix(" command)") {
                Some(r) => match r.rsplit_lit(" (in reply to ") {
                    Some((text, cmd)) => (text, Some(cmd)),
                    None => (r, None),
                },
                None => (r, None),
            };
            return Some(Smtp::ServerReply {
                queue_id,
                server,
                reply: reply(text),
                in_reply_to,
            });
        }
        let (server, r) = endpoint_then(r, " refused to talk to me: ")?;
        return Some(Smtp::RefusedToTalk {
            queue_id,
            server,
            reply: reply(r),
        });
    }
    if let Some(r) = m.strip_prefix("lost connection with ") {
        let (server, stage) = endpoint_then(r, " while ")?;
        return Some(Smtp::LostConnection {
            queue_id,
            server,
            stage,
        });
    }
    if let Some(r) = m.strip_prefix("conversation with ") {
        let (server, stage) = endpoint_then(r, " timed out while ")?;
        return Some(Smtp::Timeout {
            queue_id,
            server,
            stage,
        });
    }
    if let Some(r) = m.strip_prefix("SASL authentication failed; server ") {
        let (server, r) = endpoint_then(r, " said: ")?;
        return Some(Smtp::SaslFailed {
            queue_id,
            server,
            reply: reply(r),
        });
    }
    if let Some(r) = m.strip_prefix("enabling PIX workarounds: ") {
        let (workarounds, r) = r.rsplit_lit(" for ")?;
        let (server, rest) = endpoint_with_text(r)?;
        return rest.is_empty().then_some(Smtp::PixWorkarounds {
            queue_id,
            workarounds,
            server,
        });
    }
    let (kind, sep) = TLS_FAILURES.iter().find(|(k, _)| m.starts_with(k))?;
    let r = m.get(kind.len()..)?.strip_prefix(sep)?;
    let (server, text) = endpoint_with_text(r)?;
    Some(Smtp::TlsFailure {
        queue_id,
        kind,
        server,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::record::Endpoint;

    fn s(m: &str) -> Smtp<'_> {
        match parse(m) {
            Some(Record::Smtp(s)) => s,
            other => panic!("expected an smtp event for {m:?}, got {other:?}"),
        }
    }

    #[test]
    fn connect_refused_ipv6() {
        assert_eq!(
            s("connect to aspmx.l.google.com[2a00:1450:400b:c02::1a]:25: Network is unreachable"),
            Smtp::ConnectFailed {
                queue_id: None,
                server: Endpoint {
                    host: "aspmx.l.google.com",
                    ip: "2a00:1450:400b:c02::1a",
                    port: Some(25)
                },
                error: "Network is unreachable"
            }
        );
    }

    #[test]
    fn server_reply_with_stage() {
        let Smtp::ServerReply {
            queue_id,
            reply,
            in_reply_to,
            ..
        } = s(
            "ED59C3D: host mx.example.com[192.0.2.3] said: 450 4.7.1 <u@example.com>: \
               Recipient address rejected: Greylisted (see (this)) (in reply to RCPT TO command)",
        )
        else {
            panic!()
        };
        assert_eq!(queue_id, Some("ED59C3D"));
        assert_eq!(in_reply_to, Some("RCPT TO"));
        assert_eq!(reply.code, Some(450));
        assert_eq!(
            reply.text,
            "450 4.7.1 <u@example.com>: Recipient address rejected: Greylisted (see (this))"
        );
    }

    #[test]
    fn refused_and_lost() {
        assert!(matches!(
            s("40197AA: host mg2.egov.bg[213.91.191.86] refused to talk to me: 450 4.3.2 later"),
            Smtp::RefusedToTalk { reply, .. } if reply.code == Some(450)
        ));
        assert!(matches!(
            s(
                "B99FE3D: lost connection with mx3.hotmail.com[65.55.37.72] while receiving the \
               initial server greeting"
            ),
            Smtp::LostConnection {
                stage: "receiving the initial server greeting",
                ..
            }
        ));
        assert_eq!(
            parse("B99FE3D: lost connection with mx3.hotmail.com[65.55"),
            None
        );
        assert_eq!(parse("B99FE3D: something else"), None);
    }
}
