//! Per-recipient delivery lines of smtp, lmtp, local, virtual, pipe, error, retry, discard (and
//! qmgr): `QID: to=<r>, orig_to=<o>, relay=…, delay=…, delays=a/b/c/d, dsn=…, status=… (text)`.

use super::{endpoint, seconds, split_queue_id, unbracket};
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
    loop {
        // Keys and values are short: plain byte scans beat memchr's per-call setup here.
        let eq = rest.bytes().position(|b| b == b'=')?;
        let (key, after_eq) = (rest.get(..eq)?, rest.get(eq + 1..)?);
        if key == "status" {
            let (word, text) = after_eq.split_once(' ').unwrap_or((after_eq, ""));
            d.status = status(word);
            d.status_text = status_text(text);
            break;
        }
        let (value, next) = field_value(after_eq)?;
        match key {
            "to" => {
                d.to = unbracket(value);
                seen_to = true;
            }
            "orig_to" => d.orig_to = Some(unbracket(value)),
            "relay" => d.relay = Some(relay(value)),
            "delay" => d.delay_secs = Some(seconds(value)?),
            "delays" => d.delays = Some(delays(value)?),
            "dsn" => d.dsn = Some(value),
            "conn_use" => d.conn_use = Some(value.parse().ok()?),
            "tls" => d.tls = Some(tls_features(value)),
            _ => {}
        }
        rest = next;
    }
    seen_to.then_some(d)
}

/// A `key=value, ` value: `<…>` may contain `, ` (quoted local parts), bare values may not.
fn field_value(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let end = if s.starts_with('<') {
        b.windows(3).position(|w| w == b">, ")? + 1
    } else {
        b.windows(2).position(|w| w == b", ")?
    };
    let (value, rest) = s.split_at_checked(end)?;
    Some((value, rest.get(2..)?))
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
        Ok(("", ep)) if ep.ip.contains('/') => Relay {
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
            socket: raw.contains('/').then_some(raw),
        },
    }
}

/// `0.2/0.02/0.04/3.3`: before qmgr, in qmgr, connection setup, transmission.
pub(super) fn delays(s: &str) -> Option<Delays> {
    let mut parts = s.split('/');
    let mut next = || parts.next().and_then(seconds);
    let d = Delays {
        before_qmgr_secs: next()?,
        in_qmgr_secs: next()?,
        conn_setup_secs: next()?,
        transmission_secs: next()?,
    };
    parts.next().is_none().then_some(d)
}

/// `level[?][:downgrade][/[!]requiretls[?][:downgrade]]`
pub(super) fn tls_features(raw: &str) -> TlsFeatures<'_> {
    let (level_part, requiretls_part) = match raw.split_once('/') {
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
    let (head, downgrade) = match s.split_once(':') {
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
