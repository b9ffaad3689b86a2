//! SPF macro strings (RFC 7208 section 7): parsed once with the record, expanded per check.
//!
//! A macro string is literal text with `%{…}` expansions (`%{ir}`, `%{d2}`, `%{l-}`, …) and the
//! escapes `%%`, `%_` and `%-`. Parsing checks the syntax and which letters the context allows
//! (`c`, `r`, `t` only in explanation text); expansion is synchronous and cannot fail, so the
//! evaluator fetches what a string needs (the validated name behind `%{p}`) before expanding.
//!
//! Invariants: a [`MacroString`] only exists for text that parsed; expanding one never panics,
//! whatever the sender, HELO or transformer digits are.

use std::fmt;
use std::net::IpAddr;

/// Longest domain name in text form (RFC 7208 section 4.3 and 7.3).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;
/// Longest expansion kept. A longer one (a hostile record repeating `%{s}` for a long sender)
/// keeps its end, which is the part a domain-name query uses (RFC 7208 section 7.3).
pub const MAX_EXPANSION_BYTES: usize = 8192;

/// Where a macro string appears; this decides what is allowed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacroSyntax {
    /// The domain-spec of a mechanism, `redirect=` or `exp=`: letters `s l o d i p h v`, no
    /// spaces.
    DomainSpec,
    /// The text of an explanation TXT record: every letter, and spaces.
    Explanation,
    /// The value of an unknown modifier: every letter of the grammar, no spaces.
    ModifierValue,
}

/// One macro letter (RFC 7208 section 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacroLetter {
    /// `s`: the whole sender, `local-part@domain`.
    Sender,
    /// `l`: the sender's local-part.
    LocalPart,
    /// `o`: the sender's domain.
    SenderDomain,
    /// `d`: the domain whose record is being evaluated.
    Domain,
    /// `i`: the client address, dotted (IPv4) or dot-separated nibbles (IPv6).
    Ip,
    /// `p`: the validated domain name of the client address, or `unknown`.
    ValidatedName,
    /// `v`: `in-addr` for IPv4 clients, `ip6` for IPv6 clients.
    IpVersion,
    /// `h`: the HELO/EHLO name.
    Helo,
    /// `c`: the client address in its usual text form (explanations only).
    ClientIp,
    /// `r`: the receiving host's domain (explanations only).
    Receiver,
    /// `t`: the current time in seconds since the epoch (explanations only).
    Timestamp,
}

impl MacroLetter {
    /// The letter for a (lower-case) character.
    pub fn from_char(c: char) -> Option<Self> {
        Some(match c {
            's' => Self::Sender,
            'l' => Self::LocalPart,
            'o' => Self::SenderDomain,
            'd' => Self::Domain,
            'i' => Self::Ip,
            'p' => Self::ValidatedName,
            'v' => Self::IpVersion,
            'h' => Self::Helo,
            'c' => Self::ClientIp,
            'r' => Self::Receiver,
            't' => Self::Timestamp,
            _ => return None,
        })
    }

    /// The lower-case character of the letter.
    pub fn as_char(self) -> char {
        match self {
            Self::Sender => 's',
            Self::LocalPart => 'l',
            Self::SenderDomain => 'o',
            Self::Domain => 'd',
            Self::Ip => 'i',
            Self::ValidatedName => 'p',
            Self::IpVersion => 'v',
            Self::Helo => 'h',
            Self::ClientIp => 'c',
            Self::Receiver => 'r',
            Self::Timestamp => 't',
        }
    }

    /// Whether the letter may only appear in explanation text (RFC 7208 section 7.2).
    pub fn explanation_only(self) -> bool {
        matches!(self, Self::ClientIp | Self::Receiver | Self::Timestamp)
    }
}

/// One `%{…}` expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroExpand {
    /// What is expanded.
    pub letter: MacroLetter,
    /// The letter was upper case: URL-escape the result.
    pub url_escape: bool,
    /// Keep only this many right-hand parts (a non-zero digit transformer).
    pub keep_parts: Option<usize>,
    /// The `r` transformer: reverse the parts.
    pub reverse: bool,
    /// Characters the value is split on (`.` when empty).
    pub delimiters: String,
}

/// A piece of a macro string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroPart {
    /// Text copied as is.
    Literal(String),
    /// `%%`, `%_` or `%-`: the text they stand for (`%`, a space, `%20`).
    Escape(&'static str),
    /// A `%{…}` expansion.
    Expand(MacroExpand),
}

/// A parsed macro string; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    text: String,
    parts: Vec<MacroPart>,
}

/// Why a macro string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at offset {offset} of {text:?})")]
pub struct MacroError {
    /// The string that did not parse.
    pub text: String,
    /// Byte offset of the offending character.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// The values macros expand to, for one evaluation step.
#[derive(Debug, Clone, Copy)]
pub struct MacroVars<'a> {
    /// `local-part@domain` (with `postmaster` for an empty local-part).
    pub sender: &'a str,
    /// `%{l}`.
    pub local_part: &'a str,
    /// `%{o}`.
    pub sender_domain: &'a str,
    /// The domain being evaluated.
    pub domain: &'a str,
    /// The client address (an IPv4-mapped IPv6 address already turned into IPv4).
    pub ip: IpAddr,
    /// The validated domain name of `ip`; `None` expands to `unknown`.
    pub validated_name: Option<&'a str>,
    /// `%{h}`.
    pub helo: &'a str,
    /// The receiving host's domain (`%{r}`).
    pub receiver: &'a str,
    /// Seconds since the epoch (`%{t}`).
    pub timestamp_secs: u64,
}

impl MacroString {
    /// Parses `text` for the given context.
    pub fn parse(text: &str, syntax: MacroSyntax) -> Result<Self, MacroError> {
        let error = |offset: usize, message: String| MacroError {
            text: text.to_owned(),
            offset,
            message,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if c != '%' {
                let allowed = matches!(c, '\x21'..='\x7e')
                    || (c == ' ' && syntax == MacroSyntax::Explanation);
                if !allowed {
                    return Err(error(at, format!("character {c:?} is not allowed here")));
                }
                literal.push(c);
                continue;
            }
            let escape = match chars.next() {
                Some((_, '%')) => Some("%"),
                Some((_, '_')) => Some(" "),
                Some((_, '-')) => Some("%20"),
                Some((_, '{')) => None,
                Some((_, other)) => {
                    return Err(error(
                        at,
                        format!("'%' must be followed by '{{', '%', '_' or '-', not {other:?}"),
                    ));
                }
                None => return Err(error(at, "'%' at the end of the string".into())),
            };
            if !literal.is_empty() {
                parts.push(MacroPart::Literal(std::mem::take(&mut literal)));
            }
            match escape {
                Some(e) => parts.push(MacroPart::Escape(e)),
                None => parts.push(MacroPart::Expand(
                    parse_expand(&mut chars, syntax).map_err(|message| error(at, message))?,
                )),
            }
        }
        if !literal.is_empty() {
            parts.push(MacroPart::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The text the string was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pieces of the string.
    pub fn parts(&self) -> &[MacroPart] {
        &self.parts
    }

    /// Whether the string has at least one `%{…}` expansion.
    pub fn has_macros(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, MacroPart::Expand(_)))
    }

    /// The text when the string has no `%{…}` expansion (escapes resolved), else `None`.
    pub fn literal_text(&self) -> Option<String> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                MacroPart::Literal(s) => out.push_str(s),
                MacroPart::Escape(s) => out.push_str(s),
                MacroPart::Expand(_) => return None,
            }
        }
        Some(out)
    }

    /// Whether the string expands `letter`.
    pub fn uses(&self, letter: MacroLetter) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, MacroPart::Expand(e) if e.letter == letter))
    }

    /// Whether the string ends the way a domain-spec must (RFC 7208 section 7.1: `domain-end`):
    /// with a macro expansion, or with `.` and a valid top label, optionally followed by `.`.
    pub fn has_domain_end(&self) -> bool {
        match self.parts.last() {
            None => false,
            Some(MacroPart::Expand(_) | MacroPart::Escape(_)) => true,
            Some(MacroPart::Literal(lit)) => {
                let lit = lit.strip_suffix('.').unwrap_or(lit);
                lit.rsplit_once('.')
                    .is_some_and(|(_, top)| is_valid_top_label(top))
            }
        }
    }

    /// The expanded text (at most [`MAX_EXPANSION_BYTES`], keeping the end).
    pub fn expand(&self, vars: &MacroVars<'_>) -> String {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                MacroPart::Literal(s) => out.push_str(s),
                MacroPart::Escape(s) => out.push_str(s),
                MacroPart::Expand(e) => expand_one(e, vars, &mut out),
            }
            if out.len() > 2 * MAX_EXPANSION_BYTES {
                keep_tail(&mut out, MAX_EXPANSION_BYTES);
            }
        }
        keep_tail(&mut out, MAX_EXPANSION_BYTES);
        out
    }
}

impl fmt::Display for MacroString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Drops the start of `out` so that at most `max` bytes remain.
fn keep_tail(out: &mut String, max: usize) {
    if out.len() <= max {
        return;
    }
    let mut cut = out.len() - max;
    while !out.is_char_boundary(cut) {
        cut += 1;
    }
    out.drain(..cut);
}

/// Parses the rest of `%{letter transformers delimiters}` after the `{`.
fn parse_expand(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    syntax: MacroSyntax,
) -> Result<MacroExpand, String> {
    let Some((_, c)) = chars.next() else {
        return Err("unterminated macro".into());
    };
    let Some(letter) = MacroLetter::from_char(c.to_ascii_lowercase()) else {
        return Err(format!("unknown macro letter {c:?}"));
    };
    if letter.explanation_only() && syntax == MacroSyntax::DomainSpec {
        return Err(format!(
            "macro letter {c:?} is only allowed in explanation text"
        ));
    }
    let mut digits: Option<usize> = None;
    while let Some(&(_, d)) = chars.peek() {
        let Some(value) = d.to_digit(10) else { break };
        chars.next();
        // Saturating: any count above the number of parts keeps them all.
        digits = Some(
            digits
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(value as usize),
        );
    }
    if digits == Some(0) {
        return Err("the digit transformer must not be zero".into());
    }
    let mut reverse = false;
    if let Some(&(_, 'r' | 'R')) = chars.peek() {
        chars.next();
        reverse = true;
    }
    let mut delimiters = String::new();
    loop {
        match chars.next() {
            Some((_, '}')) => break,
            Some((_, d @ ('.' | '-' | '+' | ',' | '/' | '_' | '='))) => delimiters.push(d),
            Some((_, other)) => return Err(format!("unexpected {other:?} in macro")),
            None => return Err("unterminated macro".into()),
        }
    }
    Ok(MacroExpand {
        letter,
        url_escape: c.is_ascii_uppercase(),
        keep_parts: digits,
        reverse,
        delimiters,
    })
}

/// Appends the expansion of one macro to `out`.
fn expand_one(e: &MacroExpand, vars: &MacroVars<'_>, out: &mut String) {
    let owned;
    let value: &str = match e.letter {
        MacroLetter::Sender => vars.sender,
        MacroLetter::LocalPart => vars.local_part,
        MacroLetter::SenderDomain => vars.sender_domain,
        MacroLetter::Domain => vars.domain,
        MacroLetter::Ip => {
            owned = dotted_ip(vars.ip);
            &owned
        }
        MacroLetter::ValidatedName => vars.validated_name.unwrap_or("unknown"),
        MacroLetter::IpVersion => match vars.ip {
            IpAddr::V4(_) => "in-addr",
            IpAddr::V6(_) => "ip6",
        },
        MacroLetter::Helo => vars.helo,
        MacroLetter::ClientIp => {
            owned = vars.ip.to_string();
            &owned
        }
        MacroLetter::Receiver => vars.receiver,
        MacroLetter::Timestamp => {
            owned = vars.timestamp_secs.to_string();
            &owned
        }
    };
    let transformed;
    let value = if e.keep_parts.is_none() && !e.reverse && e.delimiters.is_empty() {
        value
    } else {
        transformed = transform(value, e);
        &transformed
    };
    if e.url_escape {
        url_escape(value, out);
    } else {
        out.push_str(value);
    }
}

/// Splits on the delimiters, reverses if asked, keeps the right-hand parts, joins with dots.
fn transform(value: &str, e: &MacroExpand) -> String {
    let delimiters = if e.delimiters.is_empty() {
        "."
    } else {
        e.delimiters.as_str()
    };
    let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
    if e.reverse {
        parts.reverse();
    }
    let skip = e
        .keep_parts
        .map_or(0, |keep| parts.len().saturating_sub(keep));
    parts[skip..].join(".")
}

/// RFC 3986 escaping of everything outside the unreserved set (RFC 7208 section 7.3).
fn url_escape(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// `%{i}`: dotted quad, or the 32 nibbles of an IPv6 address separated by dots (lower case, as in
/// the RFC 7208 section 7.4 examples).
pub fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(63);
            for byte in v6.octets() {
                for nibble in [byte >> 4, byte & 0xf] {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            s
        }
    }
}

/// The name to query for an expanded domain-spec: without the trailing dot, shortened from the
/// left to at most 253 characters (RFC 7208 section 7.3), or `None` when it cannot be a DNS name
/// (an empty or over-long label), which callers treat as a name that does not exist.
pub fn query_name(expanded: &str) -> Option<String> {
    let mut name = expanded.strip_suffix('.').unwrap_or(expanded);
    while name.len() > MAX_NAME_LEN {
        name = name.split_once('.')?.1;
    }
    let valid = !name.is_empty()
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= MAX_LABEL_LEN);
    valid.then(|| name.to_owned())
}

/// `toplabel` of RFC 7208 section 7.1: letters, digits and inner dashes, not all digits.
pub fn is_valid_top_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.iter().any(|b| !b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// The RFC 7208 section 7.4 set-up.
    fn rfc_vars(ip: IpAddr) -> MacroVars<'static> {
        MacroVars {
            sender: "strong-bad@email.example.com",
            local_part: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip,
            validated_name: Some("mx.example.org"),
            helo: "mx.example.org",
            receiver: "mx.example.net",
            timestamp_secs: 1_700_000_000,
        }
    }

    fn expand(text: &str, ip: IpAddr) -> String {
        MacroString::parse(text, MacroSyntax::DomainSpec)
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
            .expand(&rfc_vars(ip))
    }

    #[test]
    fn rfc7208_section_7_4_examples() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let cases = [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(expand(text, v4), want, "expansion of {text}");
        }
        let v6 = IpAddr::V6("2001:db8::cb01".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", v6),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn escapes_url_escaping_and_explanation_letters() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        assert_eq!(expand("a%%b%_c%-d", v4), "a%b c%20d");
        let vars = MacroVars {
            local_part: "~jack&jill=up-a_b3.c",
            ..rfc_vars(v4)
        };
        let s = MacroString::parse("l=%{L}", MacroSyntax::Explanation).unwrap();
        assert_eq!(s.expand(&vars), "l=~jack%26jill%3Dup-a_b3.c");
        let exp = MacroString::parse("%{c} %{r} %{t} %{p}", MacroSyntax::Explanation).unwrap();
        assert_eq!(
            exp.expand(&rfc_vars(v4)),
            "192.0.2.3 mx.example.net 1700000000 mx.example.org"
        );
        assert!(MacroString::parse("%{c}", MacroSyntax::DomainSpec).is_err());
        assert!(MacroString::parse("%{r}.example.com", MacroSyntax::DomainSpec).is_err());
        assert!(MacroString::parse("a b", MacroSyntax::DomainSpec).is_err());
        assert!(MacroString::parse("a b", MacroSyntax::Explanation).is_ok());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "%", "foo%", "%(ir)", "%{", "%{x}", "%{d0}", "%{d2", "%{d*}", "a\0b", "\u{e9}",
        ] {
            assert!(
                MacroString::parse(bad, MacroSyntax::DomainSpec).is_err(),
                "{bad:?} should not parse"
            );
        }
        let ok = MacroString::parse(
            "%{l2r+-}.user.%{D99999999999999999999}",
            MacroSyntax::DomainSpec,
        )
        .unwrap();
        let vars = MacroVars {
            local_part: "foo-bar+zip+quux",
            ..rfc_vars(IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        assert_eq!(ok.expand(&vars), "bar.foo.user.email.example.com");
    }

    #[test]
    fn hostile_expansions_stay_bounded_and_keep_their_end() {
        let local = "x".repeat(2000);
        let sender = format!("{local}@email.example.com");
        let vars = MacroVars {
            sender: &sender,
            local_part: &local,
            ..rfc_vars(IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        let text = format!("{}.%{{d2}}", "%{s}.".repeat(3000));
        let spec = MacroString::parse(&text, MacroSyntax::DomainSpec).unwrap();
        let expanded = spec.expand(&vars);
        assert!(expanded.len() <= MAX_EXPANSION_BYTES);
        assert!(
            expanded.ends_with("..example.com"),
            "{}",
            &expanded[expanded.len() - 40..]
        );
        assert_eq!(query_name(&expanded), None, "over-long labels");
    }

    #[test]
    fn domain_end_and_query_names() {
        let end = |s: &str| {
            MacroString::parse(s, MacroSyntax::DomainSpec)
                .unwrap()
                .has_domain_end()
        };
        assert!(end("example.com"));
        assert!(end("example.com."));
        assert!(end("foo.example.xn--zckzah"));
        assert!(end("_spfh.%{d2}"));
        assert!(!end("museum"));
        assert!(!end("museum."));
        assert!(!end("abc.123"));
        assert!(!end("example.-com"));
        assert!(!end("example.com:8080"));
        assert_eq!(query_name("a.example.com."), Some("a.example.com".into()));
        assert_eq!(query_name("mail.example...com"), None);
        assert_eq!(query_name(&format!("{}.com", "a".repeat(64))), None);
        let long = format!(
            "foobar.{}example.com",
            "somewhat.long.exp.example.com.".repeat(8)
        );
        let q = query_name(&long).unwrap();
        assert!(q.len() <= 253 && q.starts_with("somewhat."), "{q}");
    }
}
