//! Per-recipient delivery lines of smtp, lmtp, local, virtual, pipe, error, retry, discard (and
//! qmgr): `QID: to=<r>, orig_to=<o>, relay=…, delay=…, delays=a/b/c/d, dsn=…, status=… (text)`.

use super::{FindLit, endpoint, find_byte, parse_uint, seconds, split_queue_id, unbracket};
use crate::parse::record::{Delays, Delivery, DeliveryStatus, Record, Relay, TlsFeatures};

pub(super) fn parse(m: &str) -> Option<Record<'_>> {
    let (queue_id, rest) = split_queue_id(m)?;
    after_queue_id(queue_id, rest)
}

/// The delivery line after `QID: `, for callers that split the queue id off already.
pub(super) fn after_queue_id<'a>(queue_id: &'a str, rest: &'a str) -> Option<Record<'a>> {
    if !rest.starts_with("to=") {
        return None;
    }
    delivery(queue_id, rest).map(Record::Delivery)
}

// Not inlined: the loop keeps its registers instead of sharing them with all of `parse`.
#[inline(never)]
fn delivery<'a>(queue_id: &'a str, mut rest: &'a str) -> Option<Delivery<'a>> {
    let mut d = Delivery {
        queue_id,
        to: "",
        orig_to: None,
        relay: None,
        delay_secs: None,
        delays: None,
        dsn: None,
        status: DeliveryStatus::Other,
        status_text: "",
        conn_use: None,
        tls: None,
    };
    let mut seen_to = false;
    // One left-to-right pass over `key=value, ` pairs up to `status=`, which ends the line.
    loop {
        let (key, value_at) = field_key(rest.as_bytes())?;
        // `value_at` is just after an ASCII `=`: a char boundary.
        let after_eq = rest.get(value_at..)?;
        if let Key::Status = key {
            let (word, text) = after_eq.split_byte(b' ').unwrap_or((after_eq, ""));
            d.status = status(word);
            d.status_text = status_text(text);
            break;
        }
        let (value, next) = field_value(after_eq)?;
        match key {
            Key::To => {
                d.to = unbracket(value);
                seen_to = true;
            }
            Key::OrigTo => d.orig_to = Some(unbracket(value)),
            Key::Relay => d.relay = Some(relay(value)),
            Key::Delay => d.delay_secs = Some(seconds(value)?),
            Key::Delays => d.delays = Some(delays(value)?),
            Key::Dsn => d.dsn = Some(value),
            Key::ConnUse => d.conn_use = Some(parse_uint(value)?),
            Key::Tls => d.tls = Some(tls_features(value)),
            Key::Status | Key::Other => {}
        }
        rest = next;
    }
    seen_to.then_some(d)
}

/// The keys of a delivery line that the record keeps.
#[derive(Debug, Clone, Copy)]
enum Key {
    To,
    OrigTo,
    Relay,
    ConnUse,
    Delay,
    Delays,
    Dsn,
    Tls,
    Status,
    Other,
}

/// The key that `b` starts with (the text before its first `=`) and where its value starts;
/// `None` when there is no `=`. Known keys are recognised by their first bytes, without a scan.
#[inline]
fn field_key(b: &[u8]) -> Option<(Key, usize)> {
    let known = match b.first()? {
        b't' if b.starts_with(b"to=") => Some((Key::To, 3)),
        b't' if b.starts_with(b"tls=") => Some((Key::Tls, 4)),
        b'o' if b.starts_with(b"orig_to=") => Some((Key::OrigTo, 8)),
        b'r' if b.starts_with(b"relay=") => Some((Key::Relay, 6)),
        b'c' if b.starts_with(b"conn_use=") => Some((Key::ConnUse, 9)),
        b'd' if b.starts_with(b"delay=") => Some((Key::Delay, 6)),
        b'd' if b.starts_with(b"delays=") => Some((Key::Delays, 7)),
        b'd' if b.starts_with(b"dsn=") => Some((Key::Dsn, 4)),
        b's' if b.starts_with(b"status=") => Some((Key::Status, 7)),
        _ => None,
    };
    match known {
        Some(k) => Some(k),
        None => Some((Key::Other, 1 + find_byte(b, b'=')?)),
    }
}

/// A `key=value, ` value: `<…>` may contain `, ` (quoted local parts), bare values may not.
fn field_value(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    // The value ends before the first `, ` (bare) or `>, ` (bracketed; the value keeps its `>`).
    let close = if b.first() == Some(&b'<') { b'>' } else { b',' };
    let mut from = 0;
    let end = loop {
        let p = from + find_byte(b.get(from..)?, close)?;
        let sep = if close == b'>' { p + 1 } else { p };
        if b.get(sep..sep + 2) == Some(b", ") {
            break sep;
        }
        from = p + 1;
    };
    // `end` is at an ASCII `,`: a char boundary, and so is `end + 2` after the space.
    Some((s.get(..end)?, s.get(end + 2..)?))
}

fn status(word: &str) -> DeliveryStatus {
    match word {
        "sent" => DeliveryStatus::Sent,
        "deferred" => DeliveryStatus::Deferred,
        "bounced" => DeliveryStatus::Bounced,
        "expired" => DeliveryStatus::Expired,
        "deliverable" => DeliveryStatus::Deliverable,
        "undeliverable" | "undeliverable-but-not-cached" => DeliveryStatus::Undeliverable,
        _ => DeliveryStatus::Other,
    }
}

/// `(text)` → `text`; the text may contain parentheses itself, so only the outer pair goes.
/// A line cut short keeps what it has.
fn status_text(s: &str) -> &str {
    let inner = s.strip_prefix('(').unwrap_or(s);
    inner.strip_suffix(')').unwrap_or(inner)
}

/// `relay=` value: `host[ip]:port`, `host[ip]`, `host[private/dovecot-lmtp]`, `local`, `none`,
/// `virtual`, `dovecot`, `private/dovecot-lmtp`.
pub(super) fn relay(raw: &str) -> Relay<'_> {
    match endpoint(raw) {
        Ok(("", ep)) if find_byte(ep.ip.as_bytes(), b'/').is_some() => Relay {
            raw,
            host: ep.host,
            ip: None,
            port: ep.port,
            socket: Some(ep.ip),
        },
        Ok(("", ep)) => Relay {
            raw,
            host: ep.host,
            ip: Some(ep.ip),
            port: ep.port,
            socket: None,
        },
        _ => Relay {
            raw,
            host: raw,
            ip: None,
            port: None,
            socket: find_byte(raw.as_bytes(), b'/').map(|_| raw),
        },
    }
}

/// `0.2/0.02/0.04/3.3`: before qmgr, in qmgr, connection setup, transmission.
pub(super) fn delays(s: &str) -> Option<Delays> {
    // Exactly four parts: a fifth would leave a `/` in the last one, which `seconds` rejects.
    let (before_qmgr, r) = split_slash(s)?;
    let (in_qmgr, r) = split_slash(r)?;
    let (conn_setup, transmission) = split_slash(r)?;
    Some(Delays {
        before_qmgr_secs: seconds(before_qmgr)?,
        in_qmgr_secs: seconds(in_qmgr)?,
        conn_setup_secs: seconds(conn_setup)?,
        transmission_secs: seconds(transmission)?,
    })
}

/// `split_once('/')` for the few bytes of a delay.
fn split_slash(s: &str) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == b'/')?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `level[?][:downgrade][/[!]requiretls[?][:downgrade]]`
pub(super) fn tls_features(raw: &str) -> TlsFeatures<'_> {
    let (level_part, requiretls_part) = match raw.split_byte(b'/') {
        Some((l, r)) => (l, Some(r)),
        None => (raw, None),
    };
    let (level, level_undecided, downgrade) = undecided_and_downgrade(level_part);
    let mut f = TlsFeatures {
        raw,
        level,
        level_undecided,
        downgrade,
        requiretls: false,
        requiretls_violated: false,
        requiretls_undecided: false,
        requiretls_downgrade: None,
    };
    if let Some(r) = requiretls_part {
        let (name, undecided, downgrade) = undecided_and_downgrade(r);
        let (violated, name) = match name.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, name),
        };
        f.requiretls = name == "requiretls";
        f.requiretls_violated = violated;
        f.requiretls_undecided = undecided;
        f.requiretls_downgrade = downgrade;
    }
    f
}

/// `word[?][:downgrade]` → (word, `?` present, downgrade).
fn undecided_and_downgrade(s: &str) -> (&str, bool, Option<&str>) {
    let (head, downgrade) = match s.split_byte(b':') {
        Some((h, d)) => (h, Some(d)),
        None => (s, None),
    };
    match head.strip_suffix('?') {
        Some(h) => (h, true, downgrade),
        None => (head, false, downgrade),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: &str) -> Delivery<'_> {
        match parse(m) {
            Some(Record::Delivery(d)) => d,
            other => panic!("expected a delivery for {m:?}, got {other:?}"),
        }
    }

    #[test]
    fn nested_parentheses_in_status_text() {
        let x = d(
            "4E74613FE76: to=<r@gmail.com>, relay=gmail-smtp-in.l.google.com[2607:f8b0:400e:c04::1b]:25, \
                   delay=1.9, delays=0.05/0/1.1/0.71, dsn=5.7.1, status=bounced (host \
                   gmail-smtp-in.l.google.com[2607:f8b0:400e:c04::1b] said: 550 5.7.1 (spam) \
                   (in reply to end of DATA command))",
        );
        assert_eq!(x.status, DeliveryStatus::Bounced);
        assert_eq!(
            x.status_text,
            "host gmail-smtp-in.l.google.com[2607:f8b0:400e:c04::1b] said: 550 5.7.1 (spam) \
             (in reply to end of DATA command)"
        );
        let relay = x.relay.unwrap();
        assert_eq!(relay.ip, Some("2607:f8b0:400e:c04::1b"));
        assert_eq!(relay.port, Some(25));
    }

    #[test]
    fn relay_none_and_large_delay() {
        let x = d("2DC5552A34: to=<user@yahoo.com>, relay=none, delay=86400, \
                   delays=86100/300/0/0, dsn=4.4.1, status=deferred (connect to \
                   mta5.am0.yahoodns.net[67.195.204.72]:25: Connection timed out)");
        assert_eq!(x.delay_secs, Some(86400.0));
        assert_eq!(
            x.relay,
            Some(Relay {
                raw: "none",
                host: "none",
                ip: None,
                port: None,
                socket: None
            })
        );
        assert_eq!(x.delays.map(|d| d.before_qmgr_secs), Some(86100.0));
    }

    #[test]
    fn local_without_brackets_and_lmtp_socket() {
        let x = d(
            "2A22C263F6: to=user@host.example.com, orig_to=root@localhost, relay=local, \
                   delay=0.07, delays=0.04/0/0/0.03, dsn=2.0.0, status=sent (delivered to \
                   command: procmail -a \"$EXTENSION\")",
        );
        assert_eq!(x.to, "user@host.example.com");
        assert_eq!(x.orig_to, Some("root@localhost"));
        assert_eq!(
            x.status_text,
            "delivered to command: procmail -a \"$EXTENSION\""
        );
        let r = relay("mail.example.com[private/dovecot-lmtp]");
        assert_eq!(
            (r.host, r.ip, r.socket),
            ("mail.example.com", None, Some("private/dovecot-lmtp"))
        );
    }

    #[test]
    fn delays_and_tls_features() {
        assert_eq!(
            delays("0.01/0/0.02/0.3"),
            Some(Delays {
                before_qmgr_secs: 0.01,
                in_qmgr_secs: 0.0,
                conn_setup_secs: 0.02,
                transmission_secs: 0.3
            })
        );
        assert_eq!(delays("0.01/0/0.02"), None);
        assert_eq!(delays("0.01/0/0.02/0.3/1"), None);
        let t = tls_features("dane/!requiretls:nostarttls");
        assert_eq!(t.level, "dane");
        assert!(t.requiretls && t.requiretls_violated && !t.requiretls_undecided);
        assert_eq!(t.requiretls_downgrade, Some("nostarttls"));
        let t = tls_features("may?");
        assert!(t.level_undecided && !t.requiretls);
    }

    #[test]
    fn conn_use_and_truncation() {
        let x = d(
            "7EE668039: to=<a@b.c>, relay=mx.b.c[192.0.2.1]:25, conn_use=3, delay=0.4, \
                   delays=0.1/0/0/0.3, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 1234",
        );
        assert_eq!(x.conn_use, Some(3));
        assert_eq!(x.status_text, "250 2.0.0 Ok: queued as 1234");
        for m in [
            "7EE668039: to=<a@b.c>, relay=mx.b.c[192.0.2.1]:25, del",
            "7EE668039: to=<a@b.c",
            "7EE668039: to=<a@b.c>, delay=abc, status=sent (x)",
            "7EE668039: relay=none, status=sent (x)",
        ] {
            assert_eq!(parse(m), None, "{m}");
        }
    }
}
