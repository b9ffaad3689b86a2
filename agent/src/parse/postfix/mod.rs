//! Postfix service message parsers: one module per daemon group, dispatched on the service name.
//!
//! Each parser gets the message body after `program[pid]: ` and returns a [`Record`] borrowing
//! from it. Cheap prefix checks (`strip_prefix`, first-byte dispatch) pick the shape of a line;
//! small nom grammars and byte-level helpers in this module parse the pieces every daemon shares:
//! queue ids, `host[ip]:port` endpoints, SMTP replies and the `from=<…> to=<…> proto=… helo=<…>`
//! trailer. Searches go through [`FindLit`], which scans eight bytes at a time. Nothing here
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
    combinator::recognize,
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
    // Plain `if let`s rather than `Option` combinators: a `Record` is a few hundred bytes, and
    // each combinator moved it once more.
    if let Some(record) = specific {
        return record;
    }
    if let Some(record) = shared_shapes(message) {
        return record;
    }
    unparsed(unrecognised(service), message)
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

/// Literal and byte search tuned for log lines.
///
/// `str::find(&str)` sets up a Two-Way searcher on every call, and `str::find(char)` goes through
/// the generic `CharSearcher` and `memchr`, whose setup costs more than the search itself on the
/// 10–60 byte spans searched here. These scan eight bytes at a time ([`find_byte`]), jump between
/// occurrences of one anchor byte of the needle (the first that is not a space) and compare the
/// rest. A byte-wise match of a UTF-8 needle in UTF-8 text always starts and ends on a char
/// boundary, so the results are those of `str::find` and friends. All of this is inlined, so that
/// the anchor of a literal needle is chosen at compile time.
trait FindLit {
    fn find_lit(&self, needle: &str) -> Option<usize>;
    fn rfind_lit(&self, needle: &str) -> Option<usize>;
    /// `split_once` on a literal.
    fn split_lit(&self, needle: &str) -> Option<(&str, &str)>;
    /// `rsplit_once` on a literal.
    fn rsplit_lit(&self, needle: &str) -> Option<(&str, &str)>;
    /// `split_once` on an ASCII byte.
    fn split_byte(&self, b: u8) -> Option<(&str, &str)>;
    /// `rsplit_once` on an ASCII byte.
    fn rsplit_byte(&self, b: u8) -> Option<(&str, &str)>;
}

impl FindLit for str {
    #[inline(always)]
    fn find_lit(&self, needle: &str) -> Option<usize> {
        let Some(off) = anchor(needle.as_bytes()) else {
            return self.find(needle);
        };
        let (hay, n) = (self.as_bytes(), needle.as_bytes());
        let anchor = *n.get(off)?;
        // An anchor before `off` cannot start a match.
        let mut from = off;
        loop {
            let p = from + find_byte(hay.get(from..)?, anchor)?;
            let start = p - off;
            if hay.get(start..start + n.len()) == Some(n) {
                return Some(start);
            }
            from = p + 1;
        }
    }

    #[inline(always)]
    fn rfind_lit(&self, needle: &str) -> Option<usize> {
        let Some(off) = anchor(needle.as_bytes()) else {
            return self.rfind(needle);
        };
        let (hay, n) = (self.as_bytes(), needle.as_bytes());
        let anchor = *n.get(off)?;
        let mut end = hay.len();
        loop {
            let p = rfind_byte(hay.get(..end)?, anchor)?;
            if let Some(start) = p.checked_sub(off)
                && hay.get(start..start + n.len()) == Some(n)
            {
                return Some(start);
            }
            end = p;
        }
    }

    #[inline(always)]
    fn split_lit(&self, needle: &str) -> Option<(&str, &str)> {
        let i = self.find_lit(needle)?;
        Some((self.get(..i)?, self.get(i + needle.len()..)?))
    }

    #[inline(always)]
    fn rsplit_lit(&self, needle: &str) -> Option<(&str, &str)> {
        let i = self.rfind_lit(needle)?;
        Some((self.get(..i)?, self.get(i + needle.len()..)?))
    }

    #[inline(always)]
    fn split_byte(&self, b: u8) -> Option<(&str, &str)> {
        debug_assert!(b.is_ascii());
        let i = find_byte(self.as_bytes(), b)?;
        Some((self.get(..i)?, self.get(i + 1..)?))
    }

    #[inline(always)]
    fn rsplit_byte(&self, b: u8) -> Option<(&str, &str)> {
        debug_assert!(b.is_ascii());
        let i = rfind_byte(self.as_bytes(), b)?;
        Some((self.get(..i)?, self.get(i + 1..)?))
    }
}

/// `0x01` in every byte lane.
const LANES: u64 = u64::from_le_bytes([1; 8]);
/// `0x7f` in every byte lane.
const LOW7: u64 = LANES * 0x7f;

/// `0x80` in each byte lane of `w` that is zero and `0` in every other lane (exact, no borrows
/// between lanes).
#[inline(always)]
fn zero_lanes(w: u64) -> u64 {
    !((w & LOW7).wrapping_add(LOW7) | w | LOW7)
}

/// Eight bytes of `chunk` (which has exactly eight) as one little-endian word.
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    chunk.try_into().map_or(0, u64::from_le_bytes)
}

/// Index of the first `x` in `hay`: eight bytes per step, no setup. `x` must be ASCII for the
/// index to be a char boundary of the `str` the bytes come from.
#[inline(always)]
fn find_byte(hay: &[u8], x: u8) -> Option<usize> {
    let pattern = LANES * u64::from(x);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let hits = zero_lanes(word(chunk) ^ pattern);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    let tail = chunks.remainder();
    tail.iter().position(|&b| b == x).map(|i| base + i)
}

/// Index of the first `x` or `y` in `hay`, like [`find_byte`].
#[inline(always)]
fn find_byte2(hay: &[u8], x: u8, y: u8) -> Option<usize> {
    let (px, py) = (LANES * u64::from(x), LANES * u64::from(y));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let w = word(chunk);
        let hits = zero_lanes(w ^ px) | zero_lanes(w ^ py);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| b == x || b == y)
        .map(|i| base + i)
}

/// Index of the last `x` in `hay`, like [`find_byte`].
#[inline(always)]
fn rfind_byte(hay: &[u8], x: u8) -> Option<usize> {
    let pattern = LANES * u64::from(x);
    let mut chunks = hay.rchunks_exact(8);
    let mut end = hay.len();
    for chunk in &mut chunks {
        end -= 8;
        let hits = zero_lanes(word(chunk) ^ pattern);
        if hits != 0 {
            return Some(end + 7 - (hits.leading_zeros() / 8) as usize);
        }
    }
    let head = chunks.remainder();
    head.iter().rposition(|&b| b == x)
}

/// Offset of the first non-space byte of a needle (`None` for an empty or all-space needle:
/// search with `std` instead). Literals start with at most one space, so this folds to a constant.
#[inline(always)]
fn anchor(n: &[u8]) -> Option<usize> {
    match (n.first(), n.get(1)) {
        (Some(&b), _) if b != b' ' => Some(0),
        (Some(_), Some(&b)) if b != b' ' => Some(1),
        _ => n.iter().position(|&b| b != b' '),
    }
}

/// Parses a run of ASCII digits like `str::parse` does, which also accepts a leading `+`; the
/// common all-digit case without overflow is done by hand.
#[inline]
fn parse_uint<T: std::str::FromStr + TryFrom<u64>>(s: &str) -> Option<T> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 19 && b.iter().all(u8::is_ascii_digit) {
        let v = b.iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
        return T::try_from(v).ok();
    }
    s.parse().ok()
}

/// Result of the small grammars in this module.
type PResult<'a, T> = IResult<&'a str, T>;

fn verify_error(i: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify))
}

/// Whether `s` is a Postfix queue id: short (`7EE668039`, 5+ uppercase hex digits) or long
/// (`enable_long_queue_ids`: `4KJd2L6vmtz9sQ6`, base-52 time, `z`, inode).
pub fn is_queue_id(s: &str) -> bool {
    queue_id_len(s.as_bytes()) == Some(s.len())
}

/// Length of the queue id that `b` starts with: its leading ASCII alphanumerics when they form
/// one. One table-driven pass over at most 33 bytes: this runs on nearly every line.
fn queue_id_len(b: &[u8]) -> Option<usize> {
    let first = QUEUE_ID_CLASS[usize::from(*b.first()?)];
    if first == 0 {
        return None;
    }
    // Classes of the bytes after the first: a `z` only counts there.
    let mut rest = 0;
    let mut len = 1;
    while let Some(&c) = b.get(len) {
        let class = QUEUE_ID_CLASS[usize::from(c)];
        if class == 0 {
            break;
        }
        rest |= class;
        len += 1;
        if len > 32 {
            return None;
        }
    }
    let all = first | rest;
    let upper_hex = all & ID_NOT_HEX == 0;
    // Long ids: 6 base-52 digits of seconds, 4 of microseconds, `z`, the inode number. Requiring
    // a digit and a `z` past the first character keeps words like `Warning` out.
    let long = len >= 10 && all & ID_DIGIT != 0 && rest & ID_Z != 0;
    (len >= 5 && (upper_hex || long)).then_some(len)
}

/// Queue id byte classes: any of these bits marks an ASCII alphanumeric.
const ID_ALNUM: u8 = 1;
const ID_DIGIT: u8 = 2;
/// Not an uppercase hex digit (so not a short id).
const ID_NOT_HEX: u8 = 4;
const ID_Z: u8 = 8;

const QUEUE_ID_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'0'..=b'9' => ID_ALNUM | ID_DIGIT,
            b'A'..=b'F' => ID_ALNUM,
            b'z' => ID_ALNUM | ID_NOT_HEX | ID_Z,
            b'G'..=b'Z' | b'a'..=b'y' => ID_ALNUM | ID_NOT_HEX,
            _ => 0,
        };
        c += 1;
    }
    t
};

/// `QID: rest` → (`QID`, `rest`).
fn split_queue_id(m: &str) -> Option<(&str, &str)> {
    let len = queue_id_len(m.as_bytes())?;
    match m.as_bytes().get(len..len + 2) {
        // All bytes up to `len + 2` are ASCII: both are char boundaries.
        Some(b": ") => Some((m.get(..len)?, m.get(len + 2..)?)),
        _ => None,
    }
}

/// `host[ip]`, `host[ip]:port`, `[ip]:port`, `unknown[unknown]`, `[2001:db8::1]:25`,
/// `host[private/dovecot-lmtp]`.
fn endpoint(i: &str) -> PResult<'_, Endpoint<'_>> {
    // Neither the name nor the address contains a space.
    let b = i.as_bytes();
    let open = match find_byte2(b, b'[', b' ') {
        Some(open) if b[open] == b'[' => open,
        _ => return Err(verify_error(i)),
    };
    let close = match find_byte2(&b[open + 1..], b']', b' ') {
        Some(len) if len > 0 && b[open + 1 + len] == b']' => open + 1 + len,
        _ => return Err(verify_error(i)),
    };
    // `[` and `]` are ASCII: every index here is a char boundary.
    let (Some(host), Some(ip), Some(rest)) =
        (i.get(..open), i.get(open + 1..close), i.get(close + 1..))
    else {
        return Err(verify_error(i));
    };
    let (rest, port) = match rest.as_bytes().first() {
        Some(b':') => match port(&rest.as_bytes()[1..]) {
            Some((digits, port)) => (rest.get(1 + digits..).unwrap_or(rest), Some(port)),
            None => (rest, None),
        },
        _ => (rest, None),
    };
    Ok((rest, Endpoint { host, ip, port }))
}

/// Leading decimal digits as a port, the way nom's `u16` reads them: at least one digit, and
/// overflow is no port at all. Returns the digit count and the value.
fn port(b: &[u8]) -> Option<(usize, u16)> {
    let mut v: u16 = 0;
    let mut n = 0;
    while let Some(&c) = b.get(n) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u16::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((n, v))
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
    let rest = skip_separators(rest);
    let tail = rest.strip_prefix(':').unwrap_or(rest);
    Some((text, envelope, tail.strip_prefix(' ').unwrap_or(tail)))
}

/// `from=<a> to=<b> proto=ESMTP helo=<h>` (also comma-separated, as postscreen writes it):
/// returns the envelope and the unparsed rest.
fn envelope(mut s: &str) -> (Envelope<'_>, &str) {
    let mut env = Envelope::default();
    while let Some((key, after_eq)) = s.split_byte(b'=') {
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
        let next = skip_separators(s);
        if next.len() == s.len() {
            break;
        }
        s = next;
    }
    (env, s)
}

/// `s` without its leading commas and spaces.
fn skip_separators(s: &str) -> &str {
    let n = s
        .bytes()
        .position(|b| b != b',' && b != b' ')
        .unwrap_or(s.len());
    // Only ASCII bytes were skipped.
    s.get(n..).unwrap_or(s)
}

/// `<addr>` (brackets removed) or a bare word, ending at a space, comma, colon or the end.
fn envelope_value(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('<') {
        let (inner, rest) = angle_value(s)?;
        return Some((inner, rest));
    }
    let end = s
        .bytes()
        .position(|b| matches!(b, b' ' | b',' | b':'))
        .unwrap_or(s.len());
    s.split_at_checked(end)
}

/// `<…>` followed by a space, comma, colon or the end: returns the inside and the rest. The first
/// `>` that is so followed ends the value, so `<a>b> x` yields `a>b`.
fn angle_value(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('<')?.as_bytes();
    let mut from = 0;
    while let Some(pos) = find_byte(body.get(from..)?, b'>') {
        let end = from + pos;
        if matches!(body.get(end + 1), None | Some(b' ' | b',' | b':')) {
            // `>` is ASCII: `end` and `end + 1` are char boundaries of `s[1..]`.
            return Some((s.get(1..1 + end)?, s.get(end + 2..)?));
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
    let trust_len = match m.as_bytes().first()? {
        b'A' if m.starts_with("Anonymous ") => 9,
        b'U' if m.starts_with("Untrusted ") => 9,
        b'T' if m.starts_with("Trusted ") => 7,
        b'V' if m.starts_with("Verified ") => 8,
        _ => return None,
    };
    // The trust word and the space after it are ASCII.
    let (trust, rest) = (m.get(..trust_len)?, m.get(trust_len + 1..)?);
    let rest = rest.strip_prefix("TLS connection established ")?;
    let (direction, rest) = if let Some(r) = rest.strip_prefix("to ") {
        (TlsDirection::To, r)
    } else {
        (TlsDirection::From, rest.strip_prefix("from ")?)
    };
    let (peer, rest) = endpoint_then(rest, ": ")?;
    let (protocol, rest) = rest.split_lit(" with cipher ")?;
    let (cipher, rest) = rest.split_byte(b' ').unwrap_or((rest, ""));
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
#[inline]
fn seconds(s: &str) -> Option<f64> {
    // Parsed by hand: `f64::from_str` is several times slower and every delivery line has five
    // of these. With at most 15 significant digits both `mantissa` and `10^scale` are exact
    // doubles, so the division is correctly rounded: the same value `from_str` gives.
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let b = s.as_bytes();
    let mut mantissa = 0u64;
    let mut i = 0;
    // Integer digits, then `.` and fraction digits: `scale` of them.
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let mut digits = i;
    let mut scale = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        scale = i - start;
        digits += scale;
    }
    match digits {
        _ if i != b.len() => None,
        0 => None,
        // Too many digits for the fast path: `mantissa` wrapped or `10^scale` is not exact.
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

    /// `is_queue_id` as it was written before the table-driven scan: the reference.
    fn is_queue_id_reference(s: &str) -> bool {
        let b = s.as_bytes();
        if !(5..=32).contains(&b.len()) {
            return false;
        }
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
        upper_hex || (b.len() >= 10 && digit && z_after_first)
    }

    proptest::proptest! {
        #[test]
        fn seconds_agree_with_std(s in "[0-9]{0,12}[.]?[0-9]{0,8}") {
            proptest::prop_assert_eq!(seconds(&s), s.parse::<f64>().ok());
        }

        /// The delays Postfix writes: `0`, `11`, `1803`, `0.23`, `3.6`, `0.000001`, ….
        #[test]
        fn postfix_delays_agree_with_std(int in 0u64..100_000_000, frac in "[0-9]{0,6}") {
            for s in [int.to_string(), format!("{int}.{frac}"), format!(".{frac}")] {
                proptest::prop_assert_eq!(seconds(&s), s.parse::<f64>().ok(), "{}", s);
            }
        }

        #[test]
        fn unsigned_numbers_parse_like_std(s in "[+]?[0-9]{0,25}|[0-9+a ]{0,4}") {
            proptest::prop_assert_eq!(parse_uint::<u16>(&s), s.parse::<u16>().ok());
            proptest::prop_assert_eq!(parse_uint::<u32>(&s), s.parse::<u32>().ok());
            proptest::prop_assert_eq!(parse_uint::<u64>(&s), s.parse::<u64>().ok());
        }

        #[test]
        fn literal_search_matches_std_on_random_text(
            hay in "[ a-c;=<>,é]{0,40}",
            needle in "[ a-c;=<>,é]{1,4}",
        ) {
            proptest::prop_assert_eq!(hay.find_lit(&needle), hay.find(&needle));
            proptest::prop_assert_eq!(hay.rfind_lit(&needle), hay.rfind(&needle));
        }

        #[test]
        fn byte_search_matches_std(hay in "[ a-c\\[\\]/é\u{0}]{0,40}", x in "[ a-c\\[\\]/\u{0}]") {
            let x = x.as_bytes()[0];
            let y = b'/';
            let b = hay.as_bytes();
            proptest::prop_assert_eq!(find_byte(b, x), b.iter().position(|&c| c == x));
            proptest::prop_assert_eq!(rfind_byte(b, x), b.iter().rposition(|&c| c == x));
            proptest::prop_assert_eq!(
                find_byte2(b, x, y),
                b.iter().position(|&c| c == x || c == y)
            );
            proptest::prop_assert_eq!(hay.split_byte(x), hay.split_once(char::from(x)));
            proptest::prop_assert_eq!(hay.rsplit_byte(x), hay.rsplit_once(char::from(x)));
        }

        #[test]
        fn queue_ids_agree_with_the_reference(s in "[0-9A-Fa-z]{0,36}|[0-9A-Z]{3,14}z?[0-9a-y]{0,12}") {
            proptest::prop_assert_eq!(is_queue_id(&s), is_queue_id_reference(&s), "{}", s);
            let line = format!("{s}: removed");
            let expected = is_queue_id_reference(&s).then_some((s.as_str(), "removed"));
            proptest::prop_assert_eq!(split_queue_id(&line), expected);
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
