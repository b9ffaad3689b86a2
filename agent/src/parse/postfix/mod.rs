//! Postfix service message parsers: one module per daemon group, dispatched on the service name.
//!
//! Each parser gets the message body after `program[pid]: ` and returns a [`Record`] borrowing
//! from it. Cheap prefix checks (`strip_prefix`, `find`) pick the shape of a line; small nom
//! grammars in this module parse the pieces every daemon shares: queue ids, `host[ip]:port`
//! endpoints, SMTP replies and the `from=<…> to=<…> proto=… helo=<…>` trailer. Nothing here
//! allocates (except the command counts of smtpd `disconnect`), does I/O or panics: a line no
//! parser understands becomes [`Record::Unparsed`].

mod cleanup;
mod delivery;
mod misc;
mod postscreen;
mod qmgr;
mod smtp;
mod smtpd;

use nom::{
    IResult, Parser,
    bytes::complete::take_while_m_n,
    character::complete::{char, one_of},
    combinator::{opt, recognize},
    sequence::preceded,
};

use super::record::{
    CheckAction, Diagnostic, Endpoint, Envelope, Record, Reply, Severity, TlsConnection,
    TlsDirection, Unparsed,
};

/// Parses the message body of a line logged by Postfix service `service` (`smtpd`, `qmgr`, ...).
///
/// `service` is the last component of the syslog program name, so `postfix/submission/smtpd` and
/// `postfix-out/smtp` are parsed as `smtpd` and `smtp`.
pub fn parse<'a>(service: &str, message: &'a str) -> Record<'a> {
    if message.is_empty() {
        return unparsed("empty message", message);
    }
    let specific = match service {
        "smtpd" => smtpd::parse(message),
        "postscreen" => postscreen::parse(message),
        "cleanup" => cleanup::parse(message),
        "qmgr" | "nqmgr" | "oqmgr" => qmgr::parse(message),
        "smtp" | "lmtp" => smtp::parse(message),
        "local" | "virtual" | "pipe" | "error" | "retry" | "discard" => delivery::parse(message),
        "bounce" | "defer" | "trace" => misc::notification(message),
        "pickup" => misc::pickup(message),
        "anvil" => misc::anvil(message),
        "postsuper" => misc::postsuper(message),
        "master" => misc::master(message),
        "scache" => misc::scache(message),
        "dnsblog" => misc::dnsblog(message),
        "verify" => misc::cache_cleanup(message),
        "tlsproxy" => misc::tlsproxy(message),
        "postfix-script" => misc::postfix_script(message),
        _ => None,
    };
    specific
        .or_else(|| shared_shapes(message))
        .unwrap_or_else(|| unparsed(unrecognised(service), message))
}

/// Shapes any daemon may log: diagnostics, TLS handshakes (smtp, lmtp, smtpd, tlsproxy) and
/// per-recipient delivery lines (also logged by qmgr and cleanup).
fn shared_shapes(message: &str) -> Option<Record<'_>> {
    if let Some(d) = diagnostic(message) {
        return Some(Record::Diagnostic(d));
    }
    if let Some(t) = tls_connection(message) {
        return Some(Record::Tls(t));
    }
    delivery::parse(message)
}

fn unparsed<'a>(reason: &'static str, text: &'a str) -> Record<'a> {
    Record::Unparsed(Unparsed { reason, text })
}

/// Why a line of `service` was not understood; unknown services are told apart from unknown lines.
fn unrecognised(service: &str) -> &'static str {
    match service {
        "smtpd" => "unrecognised smtpd message",
        "postscreen" => "unrecognised postscreen message",
        "cleanup" => "unrecognised cleanup message",
        "qmgr" | "nqmgr" | "oqmgr" => "unrecognised qmgr message",
        "smtp" | "lmtp" => "unrecognised smtp/lmtp message",
        "local" | "virtual" | "pipe" | "error" | "retry" | "discard" => {
            "unrecognised delivery agent message"
        }
        "bounce" | "defer" | "trace" => "unrecognised bounce message",
        "pickup" => "unrecognised pickup message",
        "anvil" => "unrecognised anvil message",
        "postsuper" => "unrecognised postsuper message",
        "master" => "unrecognised master message",
        "scache" => "unrecognised scache message",
        "dnsblog" => "unrecognised dnsblog message",
        "verify" => "unrecognised verify message",
        "tlsproxy" => "unrecognised tlsproxy message",
        "tlsmgr" | "trivial-rewrite" | "trivial_rewrite" | "postmap" | "postalias" | "postdrop"
        | "sendmail" | "postfix-script" | "postqueue" | "postlog" | "postlogd" | "proxymap"
        | "flush" | "showq" | "spawn" | "postconf" | "postmulti" | "script" | "bounce-notify" => {
            "unrecognised message"
        }
        _ => "unknown service",
    }
}

/// Literal substring search tuned for log lines.
///
/// `str::find(&str)` sets up a Two-Way searcher on every call, which costs more than the search
/// itself on a 100-byte line. These jump between occurrences of one anchor byte of the needle
/// (the first that is not a space; `str::find(char)` is memchr) and compare the rest. Needles are
/// ASCII literals, so every match starts on a char boundary.
trait FindLit {
    fn find_lit(&self, needle: &str) -> Option<usize>;
    fn rfind_lit(&self, needle: &str) -> Option<usize>;
    /// `split_once` on a literal.
    fn split_lit(&self, needle: &str) -> Option<(&str, &str)>;
    /// `rsplit_once` on a literal.
    fn rsplit_lit(&self, needle: &str) -> Option<(&str, &str)>;
}

impl FindLit for str {
    fn find_lit(&self, needle: &str) -> Option<usize> {
        let Some((off, anchor)) = anchor(needle) else {
            return self.find(needle);
        };
        let bytes = self.as_bytes();
        let mut from = 0;
        loop {
            let p = from + self.get(from..)?.find(anchor)?;
            if let Some(start) = p.checked_sub(off)
                && bytes.get(start..start + needle.len()) == Some(needle.as_bytes())
            {
                return Some(start);
            }
            from = p + 1;
        }
    }

    fn rfind_lit(&self, needle: &str) -> Option<usize> {
        let Some((off, anchor)) = anchor(needle) else {
            return self.rfind(needle);
        };
        let bytes = self.as_bytes();
        let mut end = self.len();
        loop {
            let p = self.get(..end)?.rfind(anchor)?;
            if let Some(start) = p.checked_sub(off)
                && bytes.get(start..start + needle.len()) == Some(needle.as_bytes())
            {
                return Some(start);
            }
            end = p;
        }
    }

    fn split_lit(&self, needle: &str) -> Option<(&str, &str)> {
        let i = self.find_lit(needle)?;
        Some((self.get(..i)?, self.get(i + needle.len()..)?))
    }

    fn rsplit_lit(&self, needle: &str) -> Option<(&str, &str)> {
        let i = self.rfind_lit(needle)?;
        Some((self.get(..i)?, self.get(i + needle.len()..)?))
    }
}

/// Offset and value of the first non-space byte of an ASCII needle.
fn anchor(needle: &str) -> Option<(usize, char)> {
    needle
        .bytes()
        .enumerate()
        .find(|(_, b)| *b != b' ' && b.is_ascii())
        .filter(|_| needle.is_ascii())
        .map(|(i, b)| (i, char::from(b)))
}

/// Result of the small grammars in this module.
type PResult<'a, T> = IResult<&'a str, T>;

fn verify_error(i: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify))
}

/// A Postfix queue id: short (`7EE668039`, 5+ uppercase hex digits) or long
/// (`enable_long_queue_ids`: `4KJd2L6vmtz9sQ6`, base-52 time, `z`, inode).
fn queue_id(i: &str) -> PResult<'_, &str> {
    // Bytes, not chars: this runs on nearly every line. Ids are at most 32 bytes long.
    let end = i
        .bytes()
        .take(33)
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(i.len());
    match i.split_at_checked(end) {
        Some((id, rest)) if is_queue_id(id) => Ok((rest, id)),
        _ => Err(verify_error(i)),
    }
}

/// Whether `s` is a short or long Postfix queue id.
pub fn is_queue_id(s: &str) -> bool {
    let b = s.as_bytes();
    if !(5..=32).contains(&b.len()) {
        return false;
    }
    // One pass: this runs on nearly every line.
    let (mut upper_hex, mut digit, mut z_after_first) = (true, false, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => digit = true,
            b'A'..=b'F' => {}
            b'z' => {
                upper_hex = false;
                z_after_first |= i > 0;
            }
            b'G'..=b'Z' | b'a'..=b'y' => upper_hex = false,
            _ => return false,
        }
    }
    // Long ids: 6 base-52 digits of seconds, 4 of microseconds, `z`, the inode number. Requiring
    // a digit and a `z` past the first character keeps words like `Warning` out.
    upper_hex || (b.len() >= 10 && digit && z_after_first)
}

/// `QID: rest` → (`QID`, `rest`).
fn split_queue_id(m: &str) -> Option<(&str, &str)> {
    let (rest, id) = queue_id(m).ok()?;
    Some((id, rest.strip_prefix(": ")?))
}

/// `host[ip]`, `host[ip]:port`, `[ip]:port`, `unknown[unknown]`, `[2001:db8::1]:25`,
/// `host[private/dovecot-lmtp]`.
fn endpoint(i: &str) -> PResult<'_, Endpoint<'_>> {
    // memchr for the brackets; neither the name nor the address contains a space.
    let (host, rest) = i.split_once('[').ok_or_else(|| verify_error(i))?;
    let (ip, rest) = rest.split_once(']').ok_or_else(|| verify_error(i))?;
    if ip.is_empty() || host.contains(' ') || ip.contains(' ') {
        return Err(verify_error(i));
    }
    let (rest, port) = opt(preceded(char(':'), nom::character::complete::u16)).parse(rest)?;
    Ok((rest, Endpoint { host, ip, port }))
}

/// An endpoint that is the whole of `s`.
fn whole_endpoint(s: &str) -> Option<Endpoint<'_>> {
    match endpoint(s) {
        Ok(("", ep)) => Some(ep),
        _ => None,
    }
}

/// An endpoint followed by `sep`: returns the endpoint and what follows `sep`.
fn endpoint_then<'a>(s: &'a str, sep: &str) -> Option<(Endpoint<'a>, &'a str)> {
    let (rest, ep) = endpoint(s).ok()?;
    Some((ep, rest.strip_prefix(sep)?))
}

/// `ENDPOINT` alone or `ENDPOINT: text` → (endpoint, text); text is empty when absent.
fn endpoint_with_text(s: &str) -> Option<(Endpoint<'_>, &str)> {
    let (rest, ep) = endpoint(s).ok()?;
    if rest.is_empty() {
        return Some((ep, ""));
    }
    let text = rest.strip_prefix(':')?;
    Some((ep, text.strip_prefix(' ').unwrap_or(text)))
}

/// Three-digit SMTP reply code followed by a space, a dash (multi-line) or the end.
fn reply_code(i: &str) -> PResult<'_, u16> {
    let (rest, digits) =
        recognize((one_of("2345"), one_of("0123456789"), one_of("0123456789"))).parse(i)?;
    if !(rest.is_empty() || rest.starts_with([' ', '-'])) {
        return Err(verify_error(i));
    }
    let code = digits.parse().map_err(|_| verify_error(i))?;
    Ok((rest.get(1..).unwrap_or(rest), code))
}

/// RFC 3463 enhanced status code `class.subject.detail`, e.g. `5.1.1`, `4.7.0`, `5.12.345`.
fn enhanced_code(i: &str) -> PResult<'_, &str> {
    let digits = |i| take_while_m_n(1, 3, |c: char| c.is_ascii_digit()).parse(i);
    let (rest, dsn) = recognize((one_of("245"), char('.'), digits, char('.'), digits)).parse(i)?;
    if rest.is_empty() || rest.starts_with([' ', ';', ',']) {
        Ok((rest, dsn))
    } else {
        Err(verify_error(i))
    }
}

/// An SMTP reply as logged: `550 5.1.1 <x>: …`, `550-5.7.1 …`, `5.7.1 …` (milter) or bare text.
fn reply(text: &str) -> Reply<'_> {
    let (after_code, code) = match reply_code(text) {
        Ok((rest, code)) => (rest, Some(code)),
        Err(_) => (text, None),
    };
    let dsn = enhanced_code(after_code).ok().map(|(_, d)| d);
    Reply { code, dsn, text }
}

/// Splits `text; from=<…> to=<…> proto=… helo=<…>[: tail]` at its envelope trailer.
///
/// Returns the text before the trailer, the envelope and the tail after it (without `: `), or
/// `None` when there is no trailer. The trailer is searched from the end because reply texts
/// contain `;` themselves (`Service unavailable; client [1.2.3.4] blocked using …`).
fn split_trailer(s: &str) -> Option<(&str, Envelope<'_>, &str)> {
    let start = ["; from=<", "; to=<", "; proto=", "; helo=<"]
        .iter()
        .find_map(|key| s.rfind_lit(key))?;
    let (text, trailer) = s.split_at_checked(start)?;
    let (envelope, rest) = envelope(trailer.get(2..)?);
    let rest = rest.trim_start_matches([',', ' ']);
    let tail = rest.strip_prefix(':').unwrap_or(rest);
    Some((text, envelope, tail.strip_prefix(' ').unwrap_or(tail)))
}

/// `from=<a> to=<b> proto=ESMTP helo=<h>` (also comma-separated, as postscreen writes it):
/// returns the envelope and the unparsed rest.
fn envelope(mut s: &str) -> (Envelope<'_>, &str) {
    let mut env = Envelope::default();
    while let Some((key, after_eq)) = s.split_once('=') {
        let slot = match key {
            "from" => &mut env.from,
            "to" => &mut env.to,
            "proto" => &mut env.proto,
            "helo" => &mut env.helo,
            _ => break,
        };
        let Some((value, rest)) = envelope_value(after_eq) else {
            break;
        };
        *slot = Some(value);
        s = rest;
        let next = s.trim_start_matches([',', ' ']);
        if next.len() == s.len() {
            break;
        }
        s = next;
    }
    (env, s)
}

/// `<addr>` (brackets removed) or a bare word, ending at a space, comma, colon or the end.
fn envelope_value(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('<') {
        let (inner, rest) = angle_value(s)?;
        return Some((inner, rest));
    }
    let end = s.find([' ', ',', ':']).unwrap_or(s.len());
    s.split_at_checked(end)
}

/// `<…>` followed by a space, comma, colon or the end: returns the inside and the rest. The first
/// `>` that is so followed ends the value, so `<a>b> x` yields `a>b`.
fn angle_value(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('<')?;
    let mut from = 0;
    while let Some(pos) = body.get(from..)?.find('>') {
        let end = from + pos;
        let rest = body.get(end + 1..)?;
        if rest.is_empty() || rest.starts_with([' ', ',', ':']) {
            return Some((body.get(..end)?, rest));
        }
        from = end + 1;
    }
    None
}

/// Strips `<…>` around an address when both brackets are there.
fn unbracket(s: &str) -> &str {
    s.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(s)
}

/// The action word of an access restriction or header/body/milter check.
fn check_action(word: &str) -> Option<CheckAction> {
    let word = word.strip_prefix("milter-").unwrap_or(word);
    Some(match word {
        "reject" => CheckAction::Reject,
        "reject_warning" | "warn" | "warning" => CheckAction::Warn,
        "hold" => CheckAction::Hold,
        "discard" => CheckAction::Discard,
        "filter" => CheckAction::Filter,
        "redirect" => CheckAction::Redirect,
        "info" => CheckAction::Info,
        "replace" => CheckAction::Replace,
        "prepend" => CheckAction::Prepend,
        "bcc" | "strip" | "dunno" | "tempfail" => CheckAction::Other,
        _ => return None,
    })
}

/// `warning: …`, `error: …`, `fatal: …`, `panic: …`, with an optional leading queue id.
fn diagnostic(m: &str) -> Option<Diagnostic<'_>> {
    let (severity, text) = if let Some(t) = m.strip_prefix("warning:") {
        (Severity::Warning, t)
    } else if let Some(t) = m.strip_prefix("error:") {
        (Severity::Error, t)
    } else if let Some(t) = m.strip_prefix("fatal:") {
        (Severity::Fatal, t)
    } else if let Some(t) = m.strip_prefix("panic:") {
        (Severity::Panic, t)
    } else {
        return None;
    };
    let text = text.strip_prefix(' ').unwrap_or(text);
    let (queue_id, text) = match split_queue_id(text) {
        Some((q, t)) => (Some(q), t),
        None => (None, text),
    };
    Some(Diagnostic {
        severity,
        queue_id,
        text,
    })
}

/// `Trusted TLS connection established to mx[ip]:25: TLSv1.3 with cipher X (256/256 bits) …`
fn tls_connection(m: &str) -> Option<TlsConnection<'_>> {
    let (trust, rest) = m.split_once(' ')?;
    if !matches!(trust, "Anonymous" | "Untrusted" | "Trusted" | "Verified") {
        return None;
    }
    let rest = rest.strip_prefix("TLS connection established ")?;
    let (direction, rest) = if let Some(r) = rest.strip_prefix("to ") {
        (TlsDirection::To, r)
    } else {
        (TlsDirection::From, rest.strip_prefix("from ")?)
    };
    let (peer, rest) = endpoint_then(rest, ": ")?;
    let (protocol, rest) = rest.split_lit(" with cipher ")?;
    let (cipher, rest) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    let (bits, extra) = match rest.strip_prefix('(').and_then(|r| r.split_lit(" bits)")) {
        Some((b, e)) => (Some(b), e.trim_start()),
        None => (None, rest),
    };
    Some(TlsConnection {
        trust,
        direction,
        peer,
        protocol,
        cipher,
        bits,
        extra,
    })
}

/// A decimal number of seconds as Postfix prints delays (`0.2`, `63495`, `.05`); rejects the
/// `inf`/`NaN`/exponents/signs that `f64::from_str` would accept.
fn seconds(s: &str) -> Option<f64> {
    // Parsed by hand: `f64::from_str` is several times slower and every delivery line has five
    // of these. With at most 15 significant digits both `mantissa` and `10^scale` are exact
    // doubles, so the division is correctly rounded: the same value `from_str` gives.
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (mut mantissa, mut scale, mut digits, mut dot) = (0u64, 0usize, 0u32, false);
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                digits += 1;
                scale += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    match digits {
        0 => None,
        // Only the bytes are checked above; too many digits for the fast path.
        16.. => s.parse().ok(),
        _ => Some(mantissa as f64 / POW10.get(scale)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_search_agrees_with_std() {
        let hays = [
            "",
            " from ",
            "a from b from c",
            "é from ü[1.2.3.4] from x",
            "from",
            "  from  from ",
            "x; from=<a> to=<b>; from=<c>",
            "ééé; from=<",
            ">, >,, >, x",
        ];
        let needles = [" from ", "from", "; from=<", ">, ", ", ", " ", "é", "  "];
        for hay in hays {
            for needle in needles {
                assert_eq!(hay.find_lit(needle), hay.find(needle), "{hay:?} {needle:?}");
                assert_eq!(
                    hay.rfind_lit(needle),
                    hay.rfind(needle),
                    "{hay:?} {needle:?}"
                );
                assert_eq!(hay.split_lit(needle), hay.split_once(needle));
                assert_eq!(hay.rsplit_lit(needle), hay.rsplit_once(needle));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn seconds_agree_with_std(s in "[0-9]{0,12}[.]?[0-9]{0,8}") {
            proptest::prop_assert_eq!(seconds(&s), s.parse::<f64>().ok());
        }

        #[test]
        fn literal_search_matches_std_on_random_text(
            hay in "[ a-c;=<>,é]{0,40}",
            needle in "[ a-c;=<>,]{1,4}",
        ) {
            proptest::prop_assert_eq!(hay.find_lit(&needle), hay.find(&needle));
            proptest::prop_assert_eq!(hay.rfind_lit(&needle), hay.rfind(&needle));
        }
    }

    #[test]
    fn queue_ids_short_and_long() {
        for id in [
            "7EE668039",
            "0F5383D",
            "ED06590130AA1C9D6D862",
            "4KJd2L6vmtz9sQ6",
            "3zBZ8B1GCfzKmMx",
            "48rT2v1hQrz1J0N",
        ] {
            assert!(is_queue_id(id), "{id} should be a queue id");
        }
        for word in [
            "NOQUEUE",
            "warning",
            "Authorization",
            "ABC",
            "connect",
            "7ee668039",
            "dict_ldap",
        ] {
            assert!(!is_queue_id(word), "{word} is not a queue id");
        }
        assert_eq!(
            split_queue_id("4KJd2L6vmtz9sQ6: removed"),
            Some(("4KJd2L6vmtz9sQ6", "removed"))
        );
        assert_eq!(split_queue_id("4KJd2L6vmtz9sQ6:removed"), None);
    }

    #[test]
    fn endpoints() {
        let ep = |host, ip, port| Endpoint { host, ip, port };
        assert_eq!(
            whole_endpoint("mx.example.com[192.0.2.1]:25"),
            Some(ep("mx.example.com", "192.0.2.1", Some(25)))
        );
        assert_eq!(
            whole_endpoint("[2001:db8::1]:25"),
            Some(ep("", "2001:db8::1", Some(25)))
        );
        assert_eq!(
            whole_endpoint("unknown[1.2.3.4]"),
            Some(ep("unknown", "1.2.3.4", None))
        );
        assert_eq!(
            whole_endpoint("unknown[unknown]"),
            Some(ep("unknown", "unknown", None))
        );
        assert_eq!(
            endpoint_with_text("unknown[72.13.58.7]: Connection timed out"),
            Some((ep("unknown", "72.13.58.7", None), "Connection timed out"))
        );
        // A port that overflows u16 is not a port.
        assert_eq!(whole_endpoint("h[1.2.3.4]:99999"), None);
        for bad in ["", "[", "h[1.2.3.4", "h[]", "h 1.2.3.4", "h[1.2.3.4]x"] {
            assert_eq!(whole_endpoint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replies() {
        let r = reply("550 5.1.1 <x@example.com>: Recipient address rejected");
        assert_eq!((r.code, r.dsn), (Some(550), Some("5.1.1")));
        let r = reply("550-5.7.1 [2607:4100::2      12] Our system");
        assert_eq!((r.code, r.dsn), (Some(550), Some("5.7.1")));
        let r = reply("5.7.1 Blocked by SpamAssassin");
        assert_eq!((r.code, r.dsn), (None, Some("5.7.1")));
        let r = reply("550 5.12.345 odd");
        assert_eq!(r.dsn, Some("5.12.345"));
        let r = reply("too many connections");
        assert_eq!((r.code, r.dsn), (None, None));
        let r = reply("5501 not a code");
        assert_eq!(r.code, None);
        let r = reply("250");
        assert_eq!((r.code, r.dsn), (Some(250), None));
    }

    #[test]
    fn trailers() {
        let (text, env, tail) = split_trailer(
            "550 5.7.1 Service unavailable; client [1.2.3.4] blocked using zen.spamhaus.org; \
             from=<a@b>, to=<c@d>, proto=ESMTP, helo=<e>",
        )
        .unwrap();
        assert_eq!(
            text,
            "550 5.7.1 Service unavailable; client [1.2.3.4] blocked using zen.spamhaus.org"
        );
        assert_eq!(
            env,
            Envelope {
                from: Some("a@b"),
                to: Some("c@d"),
                proto: Some("ESMTP"),
                helo: Some("e"),
            }
        );
        assert_eq!(tail, "");
        let (_, env, tail) =
            split_trailer("x; from=<> to=<t@example.com> proto=ESMTP helo=<[1.2.3.4]>: a@b")
                .unwrap();
        assert_eq!(env.from, Some(""));
        assert_eq!(env.helo, Some("[1.2.3.4]"));
        assert_eq!(tail, "a@b");
        let (text, env, _) = split_trailer("554 5.7.1 go away; proto=SMTP").unwrap();
        assert_eq!(
            (text, env.proto, env.from),
            ("554 5.7.1 go away", Some("SMTP"), None)
        );
        assert_eq!(split_trailer("no trailer here"), None);
        // Truncated inside a bracketed value: the envelope stops there, no panic.
        let (_, env, _) = split_trailer("x; from=<a@b").unwrap();
        assert_eq!(env.from, None);
    }

    #[test]
    fn delay_seconds() {
        assert_eq!(seconds("0.2"), Some(0.2));
        assert_eq!(seconds("86400"), Some(86400.0));
        for bad in [
            "",
            ".",
            "inf",
            "NaN",
            "1e+02",
            "1.2.3",
            "-1",
            "+1",
            "1 ",
            "12345678901234567e5",
        ] {
            assert_eq!(seconds(bad), None, "{bad:?}");
        }
        for good in [
            "0",
            "0.02",
            ".05",
            "5.",
            "3.3",
            "0.1",
            "63495",
            "0.3",
            "431990",
            "9.8",
            "1.1",
            "0.000001",
            "123456789012345",
            "1234567890.12345",
            "12345678901234567890.5",
        ] {
            assert_eq!(seconds(good), good.parse().ok(), "{good}");
        }
    }

    #[test]
    fn tls_lines() {
        let t = tls_connection(
            "Verified TLS connection established to mail.sys4.de[2001:1578:400:111::7]:25: \
             TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 \
             server-signature ECDSA (P-256) server-digest SHA256",
        )
        .unwrap();
        assert_eq!(t.direction, TlsDirection::To);
        assert_eq!(t.peer.ip, "2001:1578:400:111::7");
        assert_eq!(t.peer.port, Some(25));
        assert_eq!(t.bits, Some("256/256"));
        assert_eq!(
            t.extra,
            "key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256"
        );
        assert!(tls_connection("Bogus TLS connection established to a[1.2.3.4]:25: x").is_none());
        assert!(tls_connection("Trusted TLS connection established to a[1.2").is_none());
    }

    #[test]
    fn unknown_service_and_empty() {
        assert!(matches!(
            parse("nosuchd", "hello"),
            Record::Unparsed(Unparsed {
                reason: "unknown service",
                ..
            })
        ));
        assert!(matches!(
            parse("nosuchd", "warning: x"),
            Record::Diagnostic(_)
        ));
        assert!(matches!(
            parse("smtpd", ""),
            Record::Unparsed(Unparsed {
                reason: "empty message",
                ..
            })
        ));
    }
}
