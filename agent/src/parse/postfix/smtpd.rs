//! smtpd: client sessions, queue-file creation (`client=`), access-restriction decisions.

use super::{
    FindLit, check_action, endpoint, endpoint_then, endpoint_with_text, find_byte2, parse_uint,
    reply, split_queue_id, split_trailer, tls_connection, whole_endpoint,
};
use crate::parse::record::{CheckAction, CommandCount, Endpoint, Envelope, Record, Reply, Smtpd};

/// Per-client events worded `KIND [after STAGE ]from host[ip][: text]`.
const CLIENT_EVENTS: [&str; 6] = [
    "improper command pipelining",
    "bare <LF> received",
    "SSL_accept error",
    "setting up TLS connection",
    "TLS handshake failed",
    "non-SMTP command",
];

pub(super) fn parse(m: &str) -> Option<Record<'_>> {
    // TLS handshakes are frequent: try them first when the line can be one (their first words
    // start no other smtpd line), rather than after every other shape or in the shared fallback.
    if matches!(m.as_bytes().first(), Some(b'A' | b'U' | b'T' | b'V'))
        && let Some(t) = tls_connection(m)
    {
        return Some(Record::Tls(t));
    }
    smtpd(m).map(Record::Smtpd)
}

fn smtpd(m: &str) -> Option<Smtpd<'_>> {
    // Dispatch on the first byte; the shapes that share one keep their order.
    match m.as_bytes().first()? {
        b'c' => {
            if let Some(r) = m.strip_prefix("connect from ") {
                return Some(Smtpd::Connect {
                    client: whole_endpoint(r)?,
                });
            }
        }
        b'd' => {
            if let Some(r) = m.strip_prefix("disconnect from ") {
                return disconnect(r);
            }
            if m.starts_with("discarding EHLO keywords: ") {
                return Some(Smtpd::Note { text: m });
            }
        }
        b'N' => {
            if let Some(r) = m.strip_prefix("NOQUEUE: ") {
                return check_or_proxy(None, r);
            }
        }
        b'l' => {
            if let Some(r) = m.strip_prefix("lost connection after ") {
                let (after, bytes, client) = after_from(r)?;
                return Some(Smtpd::LostConnection {
                    after,
                    bytes,
                    client,
                });
            }
        }
        b't' => {
            if let Some(r) = m.strip_prefix("timeout after ") {
                let (after, _, client) = after_from(r)?;
                return Some(Smtpd::Timeout { after, client });
            }
            if let Some(r) = m.strip_prefix("too many errors after ") {
                let (after, _, client) = after_from(r)?;
                return Some(Smtpd::TooManyErrors { after, client });
            }
        }
        b'w' => {
            if let Some(r) = m.strip_prefix("warning: ") {
                return sasl_failed(r);
            }
        }
        b'p' if m.starts_with("proxy-") => return check_or_proxy(None, m),
        _ => {}
    }
    if let Some((queue_id, rest)) = split_queue_id(m) {
        return match rest.strip_prefix("client=") {
            Some(r) => client(queue_id, r),
            None => check_or_proxy(Some(queue_id), rest),
        };
    }
    client_event(m)
}

/// `host[ip] ehlo=1 mail=1 rcpt=0/1 data=0/1 quit=1 commands=3/5` (counts absent before 3.0).
// Not inlined: its loops keep their registers instead of sharing them with all of `parse`.
#[inline(never)]
fn disconnect(r: &str) -> Option<Smtpd<'_>> {
    let (rest, client) = endpoint(r).ok()?;
    // Postfix logs up to eight counts: one allocation for all of them.
    let mut commands = if rest.is_empty() {
        Vec::new()
    } else {
        Vec::with_capacity(8)
    };
    // One pass over the space-separated `name=ok[/total]` items.
    let b = rest.as_bytes();
    let mut p = 0;
    while p < b.len() {
        if b[p] == b' ' {
            p += 1;
            continue;
        }
        let (count, next) = command_count(rest, p)?;
        commands.push(count);
        p = next;
    }
    Some(Smtpd::Disconnect { client, commands })
}

/// The `name=ok[/total]` item of a disconnect line that starts at `start` (not a space), and
/// where it ends. The first `=` ends the name, the first `/` after it splits the counts, and the
/// counts parse like `str::parse::<u32>`: plain digits are read on the way, anything else (a
/// `+`, a huge number, junk that fails) goes through `parse_uint`.
fn command_count(rest: &str, start: usize) -> Option<(CommandCount<'_>, usize)> {
    let b = rest.as_bytes();
    let eq = start + find_byte2(b.get(start..)?, b'=', b' ')?;
    if b[eq] != b'=' {
        return None;
    }
    // Every index below is at an ASCII byte or the end: a char boundary.
    let name = rest.get(start..eq)?;
    let (ok_end, ok) = digits(b, eq + 1);
    let (end, counts) = match b.get(ok_end) {
        None | Some(b' ') => (ok_end, ok.map(|n| (n, n))),
        Some(b'/') => {
            let (total_end, total) = digits(b, ok_end + 1);
            match b.get(total_end) {
                None | Some(b' ') => (total_end, ok.zip(total)),
                _ => (total_end, None),
            }
        }
        _ => (ok_end, None),
    };
    let (end, (ok, total)) = match counts {
        Some(counts) => (end, counts),
        None => {
            // The slow, exact way.
            let end = end
                + b.get(end..)?
                    .iter()
                    .position(|&c| c == b' ')
                    .unwrap_or(b.len() - end);
            let counts = rest.get(eq + 1..end)?;
            let counts = match counts.split_byte(b'/') {
                Some((ok, total)) => (parse_uint(ok)?, parse_uint(total)?),
                None => {
                    let n = parse_uint(counts)?;
                    (n, n)
                }
            };
            (end, counts)
        }
    };
    Some((CommandCount { name, ok, total }, end))
}

/// The run of ASCII digits at `from`: where it ends, and its value when it has 1 to 9 digits.
#[inline]
fn digits(b: &[u8], from: usize) -> (usize, Option<u32>) {
    let mut p = from;
    let mut v: u32 = 0;
    while let Some(&c) = b.get(p) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add(u32::from(d));
        p += 1;
    }
    (p, (1..=9).contains(&(p - from)).then_some(v))
}

/// `STAGE [(N bytes) ]from host[ip]` → (stage, bytes, client).
fn after_from(r: &str) -> Option<(&str, Option<u64>, Endpoint<'_>)> {
    let (stage, client) = r.split_lit(" from ")?;
    let client = whole_endpoint(client)?;
    let (stage, bytes) = match stage.split_lit(" (") {
        Some((s, b)) => (s, Some(parse_uint(b.strip_suffix(" bytes)")?)?)),
        None => (stage, None),
    };
    Some((stage, bytes, client))
}

/// `host[ip]: SASL LOGIN authentication failed: reason[, sasl_username=user]`
fn sasl_failed(r: &str) -> Option<Smtpd<'_>> {
    let (client, rest) = endpoint_then(r, ": SASL ")?;
    let (method, reason) = rest.split_lit(" authentication failed")?;
    let reason = reason.strip_prefix(':').unwrap_or(reason).trim_start();
    let (reason, sasl_username) = match reason.rsplit_lit(", sasl_username=") {
        Some((reason, user)) => (reason, Some(user)),
        None => (reason, None),
    };
    Some(Smtpd::SaslFailed {
        client,
        method,
        reason,
        sasl_username,
    })
}

/// After `QID: client=`: `host[ip][:port][, sasl_method=M, sasl_username=U, sasl_sender=S]
/// [, orig_queue_id=Q, orig_client=host[ip]]`.
fn client<'a>(queue_id: &'a str, r: &'a str) -> Option<Smtpd<'a>> {
    let (mut rest, client) = endpoint(r).ok()?;
    let (mut orig_queue_id, mut orig_client) = (None, None);
    let (mut sasl_method, mut sasl_username, mut sasl_sender) = (None, None, None);
    while let Some(item) = rest.strip_prefix(", ") {
        let (key, value_and_rest) = item.split_byte(b'=')?;
        let (value, next) = match value_and_rest.find_lit(", ") {
            Some(i) => value_and_rest.split_at_checked(i)?,
            None => (value_and_rest, ""),
        };
        match key {
            "sasl_method" => sasl_method = Some(value),
            "sasl_username" => sasl_username = Some(value),
            "sasl_sender" => sasl_sender = Some(value),
            "orig_queue_id" => orig_queue_id = Some(value),
            "orig_client" => orig_client = Some(whole_endpoint(value)?),
            _ => {}
        }
        rest = next;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Smtpd::Client {
        queue_id,
        client,
        orig_queue_id,
        orig_client,
        sasl_method,
        sasl_username,
        sasl_sender,
    })
}

/// After the queue id (or `NOQUEUE`): `ACTION: STAGE from host[ip]: REPLY; from=<…> …` or
/// `proxy-accept|proxy-reject: STAGE: REPLY; from=<…> …`.
fn check_or_proxy<'a>(queue_id: Option<&'a str>, r: &'a str) -> Option<Smtpd<'a>> {
    let (word, rest) = r.split_lit(": ")?;
    let accepted = match word {
        "proxy-accept" => Some(true),
        "proxy-reject" => Some(false),
        _ => None,
    };
    if let Some(accepted) = accepted {
        let (stage, rest) = rest.split_byte(b':')?;
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (text, envelope) = reply_and_envelope(rest);
        return Some(Smtpd::Proxy {
            queue_id,
            accepted,
            stage,
            reply: reply(text),
            envelope,
        });
    }
    let c = check(word, rest)?;
    Some(Smtpd::Check {
        queue_id,
        action: c.action,
        stage: c.stage,
        client: c.client,
        reply: c.reply,
        envelope: c.envelope,
    })
}

/// An access decision as smtpd and postscreen log it.
pub(super) struct CheckLine<'a> {
    pub action: CheckAction,
    pub stage: &'a str,
    pub client: Endpoint<'a>,
    pub reply: Reply<'a>,
    pub envelope: Envelope<'a>,
}

/// The part shared with postscreen: `STAGE from host[ip]: REPLY[; from=<…> …]` after `ACTION: `.
pub(super) fn check<'a>(action_word: &str, rest: &'a str) -> Option<CheckLine<'a>> {
    let action = check_action(action_word)?;
    let (stage, rest) = rest.split_lit(" from ")?;
    if stage.is_empty() || stage.as_bytes().contains(&b' ') {
        return None;
    }
    let (client, rest) = endpoint_then(rest, ":")?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (text, envelope) = reply_and_envelope(rest);
    Some(CheckLine {
        action,
        stage,
        client,
        reply: reply(text),
        envelope,
    })
}

/// `REPLY[; from=<…> …]` → the reply text and the envelope (empty when there is no trailer).
pub(super) fn reply_and_envelope(s: &str) -> (&str, Envelope<'_>) {
    match split_trailer(s) {
        Some((text, envelope, _)) => (text, envelope),
        None => (s, Envelope::default()),
    }
}

/// `improper command pipelining after EHLO from h[ip]: …`, `SSL_accept error from h[ip]: …`, ...
fn client_event(m: &str) -> Option<Smtpd<'_>> {
    let kind = CLIENT_EVENTS.iter().find(|k| m.starts_with(**k))?;
    let rest = m.get(kind.len()..)?;
    let (after, rest) = match rest.strip_prefix(" after ") {
        Some(r) => {
            let (stage, r) = r.split_lit(" from ")?;
            (Some(stage), r)
        }
        None => (None, rest.strip_prefix(" from ")?),
    };
    let (client, text) = endpoint_with_text(rest)?;
    Some(Smtpd::ClientEvent {
        kind,
        after,
        client,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: &str) -> Smtpd<'_> {
        match parse(m) {
            Some(Record::Smtpd(s)) => s,
            other => panic!("expected an smtpd record for {m:?}, got {other:?}"),
        }
    }

    #[test]
    fn connect_with_port_and_ipv6() {
        assert_eq!(
            p("connect from unknown[2001:db8::25]:41234"),
            Smtpd::Connect {
                client: Endpoint {
                    host: "unknown",
                    ip: "2001:db8::25",
                    port: Some(41234)
                }
            }
        );
    }

    #[test]
    fn disconnect_counts() {
        let Smtpd::Disconnect { commands, .. } =
            p("disconnect from a[1.2.3.4] ehlo=1 mail=1 rcpt=0/1 data=0/1 quit=1 commands=3/5")
        else {
            panic!()
        };
        assert_eq!(commands.len(), 6);
        assert_eq!(
            commands[2],
            CommandCount {
                name: "rcpt",
                ok: 0,
                total: 1
            }
        );
        assert_eq!(
            commands[5],
            CommandCount {
                name: "commands",
                ok: 3,
                total: 5
            }
        );
        assert!(parse("disconnect from a[1.2.3.4] ehlo=x").is_none());
    }

    #[test]
    fn recipient_reject_with_real_queue_id() {
        let s = p(
            "4KJd2L6vmtz9sQ6: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 \
                   <u@example.org>: Recipient address rejected: Greylisted; from=<s@example.net> \
                   to=<u@example.org> proto=ESMTP helo=<mail.example.net>",
        );
        let Smtpd::Check {
            queue_id,
            action,
            stage,
            reply,
            envelope,
            ..
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(queue_id, Some("4KJd2L6vmtz9sQ6"));
        assert_eq!(action, CheckAction::Reject);
        assert_eq!(stage, "RCPT");
        assert_eq!((reply.code, reply.dsn), (Some(450), Some("4.2.0")));
        assert_eq!(envelope.to, Some("u@example.org"));
    }

    #[test]
    fn hold_is_not_a_reject() {
        let Smtpd::Check { action, reply, .. } = p(
            "NOQUEUE: hold: RCPT from a[1.2.3.4]: <a@b>: Sender address triggers HOLD action; \
             from=<a@b> to=<c@d> proto=ESMTP helo=<x>",
        ) else {
            panic!()
        };
        assert_eq!(action, CheckAction::Hold);
        assert_eq!(reply.code, None);
    }

    #[test]
    fn sasl_failure_with_username() {
        assert_eq!(
            p(
                "warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: authentication \
               failure, sasl_username=info@example.com"
            ),
            Smtpd::SaslFailed {
                client: Endpoint {
                    host: "unknown",
                    ip: "203.0.113.9",
                    port: None
                },
                method: "LOGIN",
                reason: "authentication failure",
                sasl_username: Some("info@example.com"),
            }
        );
        // Other warnings are diagnostics, handled by the shared fallback.
        assert!(parse("warning: hostname x does not resolve to address 1.2.3.4").is_none());
    }

    #[test]
    fn lost_connection_bytes() {
        assert_eq!(
            p("lost connection after DATA (7774180 bytes) from unknown[72.13.58.7]"),
            Smtpd::LostConnection {
                after: "DATA",
                bytes: Some(7_774_180),
                client: Endpoint {
                    host: "unknown",
                    ip: "72.13.58.7",
                    port: None
                }
            }
        );
    }

    #[test]
    fn client_with_sasl_and_orig() {
        let s = p(
            "3zBZ8B1GCfzKmMx: client=localhost[127.0.0.1]:51234, orig_queue_id=7EE668039, \
                   orig_client=mail.example.com[192.0.2.10]",
        );
        let Smtpd::Client {
            orig_queue_id,
            orig_client,
            client,
            ..
        } = s
        else {
            panic!()
        };
        assert_eq!(client.port, Some(51234));
        assert_eq!(orig_queue_id, Some("7EE668039"));
        assert_eq!(orig_client.map(|c| c.ip), Some("192.0.2.10"));
        let Smtpd::Client {
            sasl_method,
            sasl_username,
            ..
        } = p("7EE668039: client=unknown[192.0.2.4], sasl_method=PLAIN, sasl_username=u@x")
        else {
            panic!()
        };
        assert_eq!((sasl_method, sasl_username), (Some("PLAIN"), Some("u@x")));
    }

    #[test]
    fn proxy_reject_with_empty_reply() {
        assert_eq!(
            p("proxy-reject: END-OF-MESSAGE: ; from=<a@b> to=<c@d> proto=ESMTP helo=<h>"),
            Smtpd::Proxy {
                queue_id: None,
                accepted: false,
                stage: "END-OF-MESSAGE",
                reply: Reply {
                    code: None,
                    dsn: None,
                    text: ""
                },
                envelope: Envelope {
                    from: Some("a@b"),
                    to: Some("c@d"),
                    proto: Some("ESMTP"),
                    helo: Some("h")
                },
            }
        );
    }

    #[test]
    fn truncated_lines_are_not_understood() {
        for m in [
            "connect from",
            "connect from a[1.2",
            "NOQUEUE: reject: RCPT from a[1.2.3.4",
            "lost connection after DATA (12 by",
            "7EE668039: client=",
            "7EE668039: client=a[1.2.3.4], sasl_method",
        ] {
            assert!(smtpd(m).is_none(), "{m:?}");
        }
    }
}
