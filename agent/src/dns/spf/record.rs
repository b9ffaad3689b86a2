//! SPF record syntax (RFC 7208 sections 4.5, 4.6, 5, 6 and 7.1): text → typed terms.
//!
//! A record is `v=spf1` followed by terms separated by one or more spaces (only U+0020: a tab, CR
//! or LF inside a record is a syntax error, as the RFC 7208 test suite demands). Names of
//! mechanisms and modifiers are case-insensitive. Every term is checked before anything is
//! evaluated, so an error anywhere in a record is a permerror even when an earlier term would
//! have matched (section 4.6).
//!
//! Invariants: parsing never panics and takes time linear in the record length; a parsed
//! [`SpfRecord`] has at most one `redirect=` and one `exp=`, and every domain-spec in it has a
//! valid `domain-end`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::macros::{MacroString, MacroSyntax};

/// The version tag every SPF record starts with.
const VERSION: &[u8] = b"v=spf1";

/// A parsed SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecord {
    /// The terms in order, the version tag excluded.
    pub terms: Vec<Term>,
}

/// One term of a record, with where it stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// 1-based column of the term's first character in the record.
    pub column: usize,
    /// The term as written.
    pub text: String,
    /// What the term is.
    pub kind: TermKind,
}

/// A directive (qualifier + mechanism) or a modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermKind {
    /// A mechanism with its qualifier.
    Directive(Directive),
    /// `name=value`.
    Modifier(Modifier),
}

/// A mechanism with its qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The result when the mechanism matches.
    pub qualifier: Qualifier,
    /// What is matched against the client.
    pub mechanism: Mechanism,
}

/// The result a directive gives when its mechanism matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qualifier {
    /// `+` (the default).
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

/// A mechanism (RFC 7208 section 5). Domain-specs are kept unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `all`: always matches.
    All,
    /// `include:domain`: matches when the domain's policy passes the client.
    Include(MacroString),
    /// `a[:domain][/len][//len]`: an address of the domain (default: the current one).
    A {
        domain: Option<MacroString>,
        cidr: DualCidr,
    },
    /// `mx[:domain][/len][//len]`: an address of one of the domain's MX hosts.
    Mx {
        domain: Option<MacroString>,
        cidr: DualCidr,
    },
    /// `ptr[:domain]`: a validated reverse name of the client ends in the domain (deprecated).
    Ptr(Option<MacroString>),
    /// `ip4:network[/len]`.
    Ip4 { network: Ipv4Addr, prefix_len: u8 },
    /// `ip6:network[/len]`.
    Ip6 { network: Ipv6Addr, prefix_len: u8 },
    /// `exists:domain`: the (usually macro-built) name has an A record.
    Exists(MacroString),
}

/// The prefix lengths of `a` and `mx` (`/24//64`); 32 and 128 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DualCidr {
    /// Prefix length for IPv4 clients.
    pub ip4: u8,
    /// Prefix length for IPv6 clients.
    pub ip6: u8,
}

/// A modifier (RFC 7208 section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    /// `redirect=domain-spec`.
    Redirect(MacroString),
    /// `exp=domain-spec`.
    Explanation(MacroString),
    /// Any other `name=value`: kept, never evaluated.
    Unknown { name: String, value: MacroString },
}

/// Why a record did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based column in the record (of the offending term, or character).
    pub column: usize,
    /// What is wrong, naming the term.
    pub message: String,
}

impl SpfRecord {
    /// Whether TXT data is an SPF record: `v=spf1` (any case) followed by a space or the end
    /// (RFC 7208 section 4.5). Other TXT records of the name are none of SPF's business.
    pub fn is_spf(txt: &[u8]) -> bool {
        txt.len() >= VERSION.len()
            && txt[..VERSION.len()].eq_ignore_ascii_case(VERSION)
            && matches!(txt.get(VERSION.len()), None | Some(b' '))
    }

    /// Parses a whole record, `v=spf1` included.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if !Self::is_spf(text.as_bytes()) {
            return Err(ParseError {
                column: 1,
                message: "not an SPF record: it must start with \"v=spf1\" and a space".into(),
            });
        }
        if let Some((at, c)) = text.char_indices().find(|(_, c)| !c.is_ascii()) {
            return Err(ParseError {
                column: at + 1,
                message: format!("non-ASCII character {c:?} (SPF records are 7-bit ASCII)"),
            });
        }
        let mut terms = Vec::new();
        let mut offset = VERSION.len();
        for piece in text[VERSION.len()..].split(' ') {
            let column = offset + 1;
            offset += piece.len() + 1;
            if piece.is_empty() {
                continue;
            }
            let kind = parse_term(piece).map_err(|message| ParseError {
                column,
                message: format!("{piece:?}: {message}"),
            })?;
            terms.push(Term {
                column,
                text: piece.to_owned(),
                kind,
            });
        }
        let record = Self { terms };
        for (what, count) in [
            (
                "redirect=",
                record.count_modifiers(|m| matches!(m, Modifier::Redirect(_))),
            ),
            (
                "exp=",
                record.count_modifiers(|m| matches!(m, Modifier::Explanation(_))),
            ),
        ] {
            if count > 1 {
                let column = record
                    .terms
                    .iter()
                    .filter(|t| t.text.to_ascii_lowercase().starts_with(what))
                    .nth(1)
                    .map_or(1, |t| t.column);
                return Err(ParseError {
                    column,
                    message: format!("{what} appears {count} times (at most once)"),
                });
            }
        }
        Ok(record)
    }

    /// The directives, in order.
    pub fn directives(&self) -> impl Iterator<Item = &Directive> {
        self.terms.iter().filter_map(|t| match &t.kind {
            TermKind::Directive(d) => Some(d),
            TermKind::Modifier(_) => None,
        })
    }

    /// The modifiers, in order.
    pub fn modifiers(&self) -> impl Iterator<Item = &Modifier> {
        self.terms.iter().filter_map(|t| match &t.kind {
            TermKind::Modifier(m) => Some(m),
            TermKind::Directive(_) => None,
        })
    }

    /// The `redirect=` target.
    pub fn redirect(&self) -> Option<&MacroString> {
        self.modifiers().find_map(|m| match m {
            Modifier::Redirect(d) => Some(d),
            _ => None,
        })
    }

    /// The `exp=` target.
    pub fn explanation(&self) -> Option<&MacroString> {
        self.modifiers().find_map(|m| match m {
            Modifier::Explanation(d) => Some(d),
            _ => None,
        })
    }

    fn count_modifiers(&self, pred: impl Fn(&Modifier) -> bool) -> usize {
        self.modifiers().filter(|m| pred(m)).count()
    }
}

impl Qualifier {
    /// The qualifier character (`+`, `-`, `~`, `?`).
    pub fn as_char(self) -> char {
        match self {
            Self::Pass => '+',
            Self::Fail => '-',
            Self::SoftFail => '~',
            Self::Neutral => '?',
        }
    }
}

impl Mechanism {
    /// The mechanism's name (`all`, `include`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Include(_) => "include",
            Self::A { .. } => "a",
            Self::Mx { .. } => "mx",
            Self::Ptr(_) => "ptr",
            Self::Ip4 { .. } => "ip4",
            Self::Ip6 { .. } => "ip6",
            Self::Exists(_) => "exists",
        }
    }

    /// Whether evaluating it queries DNS, and so counts against the limit of 10 (RFC 7208
    /// section 4.6.4).
    pub fn queries_dns(&self) -> bool {
        matches!(
            self,
            Self::Include(_) | Self::A { .. } | Self::Mx { .. } | Self::Ptr(_) | Self::Exists(_)
        )
    }
}

impl Default for DualCidr {
    fn default() -> Self {
        Self { ip4: 32, ip6: 128 }
    }
}

impl fmt::Display for SpfRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=spf1")?;
        for t in &self.terms {
            write!(f, " {}", t.text)?;
        }
        Ok(())
    }
}

/// Parses one space-free term.
fn parse_term(term: &str) -> Result<TermKind, String> {
    let bytes = term.as_bytes();
    let name_len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        .count();
    if bytes.first().is_some_and(u8::is_ascii_alphabetic) && bytes.get(name_len) == Some(&b'=') {
        return parse_modifier(&term[..name_len], &term[name_len + 1..]).map(TermKind::Modifier);
    }
    let (qualifier, rest) = match bytes.first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let (name, arg) = rest.split_at(name_len);
    // Lower-cased on the stack: every mechanism name fits, longer names are unknown anyway.
    let mut lower = [0u8; 8];
    let name_lower = match lower.get_mut(..name.len()) {
        Some(buf) => {
            buf.copy_from_slice(name.as_bytes());
            buf.make_ascii_lowercase();
            std::str::from_utf8(buf).unwrap_or_default()
        }
        None => "?",
    };
    let mechanism = match name_lower {
        "all" if arg.is_empty() => Mechanism::All,
        "all" => return Err("\"all\" takes no argument".into()),
        "include" => Mechanism::Include(required_domain("include", arg)?),
        "exists" => Mechanism::Exists(required_domain("exists", arg)?),
        "a" => {
            let (domain, cidr) = domain_and_cidr("a", arg)?;
            Mechanism::A { domain, cidr }
        }
        "mx" => {
            let (domain, cidr) = domain_and_cidr("mx", arg)?;
            Mechanism::Mx { domain, cidr }
        }
        "ptr" => Mechanism::Ptr(optional_domain("ptr", arg)?),
        "ip4" => {
            let value = arg.strip_prefix(':').ok_or("ip4 needs \":address\"")?;
            let (addr, len) = split_prefix(value);
            let network =
                parse_ipv4(addr).ok_or_else(|| format!("invalid IPv4 address {addr:?}"))?;
            let prefix_len = len.map_or(Ok(32), |l| parse_cidr(l, 32))?;
            Mechanism::Ip4 {
                network,
                prefix_len,
            }
        }
        "ip6" => {
            let value = arg.strip_prefix(':').ok_or("ip6 needs \":address\"")?;
            let (addr, len) = split_prefix(value);
            let network = addr
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("invalid IPv6 address {addr:?}"))?;
            let prefix_len = len.map_or(Ok(128), |l| parse_cidr(l, 128))?;
            Mechanism::Ip6 {
                network,
                prefix_len,
            }
        }
        "" => return Err("expected a mechanism or a modifier".into()),
        "redirect" | "exp" => {
            return Err(format!(
                "{name_lower} is a modifier: write \"{name_lower}=\""
            ));
        }
        _ => return Err(format!("unknown mechanism {name:?}")),
    };
    Ok(TermKind::Directive(Directive {
        qualifier,
        mechanism,
    }))
}

fn parse_modifier(name: &str, value: &str) -> Result<Modifier, String> {
    if name.eq_ignore_ascii_case("redirect") {
        Ok(Modifier::Redirect(parse_domain_spec(value)?))
    } else if name.eq_ignore_ascii_case("exp") {
        Ok(Modifier::Explanation(parse_domain_spec(value)?))
    } else {
        Ok(Modifier::Unknown {
            name: name.to_owned(),
            value: MacroString::parse(value, MacroSyntax::ModifierValue)
                .map_err(|e| e.to_string())?,
        })
    }
}

/// A domain-spec: a macro string that ends in a top label or a macro.
fn parse_domain_spec(text: &str) -> Result<MacroString, String> {
    if text.is_empty() {
        return Err("empty domain-spec".into());
    }
    let spec = MacroString::parse(text, MacroSyntax::DomainSpec).map_err(|e| e.to_string())?;
    if !spec.has_domain_end() {
        return Err(format!(
            "{text:?} is not a domain: it must end in a top-level label (like \".com\") or a macro"
        ));
    }
    Ok(spec)
}

/// `:domain-spec`, required (include, exists).
fn required_domain(mechanism: &str, arg: &str) -> Result<MacroString, String> {
    let spec = arg
        .strip_prefix(':')
        .ok_or_else(|| format!("{mechanism} needs \":domain\""))?;
    parse_domain_spec(spec)
}

/// Nothing, or `:domain-spec` (ptr).
fn optional_domain(mechanism: &str, arg: &str) -> Result<Option<MacroString>, String> {
    if arg.is_empty() {
        return Ok(None);
    }
    let spec = arg
        .strip_prefix(':')
        .ok_or_else(|| format!("unexpected {arg:?} after {mechanism}"))?;
    parse_domain_spec(spec).map(Some)
}

/// `[:domain-spec][/ip4-len][//ip6-len]` (a, mx): the lengths are taken from the end.
fn domain_and_cidr(mechanism: &str, arg: &str) -> Result<(Option<MacroString>, DualCidr), String> {
    let mut rest = arg;
    let mut cidr = DualCidr::default();
    if let Some((head, digits)) = trailing_length(rest)
        && let Some(head) = head.strip_suffix('/')
    {
        cidr.ip6 = parse_cidr(digits, 128)?;
        rest = head;
    }
    if let Some((head, digits)) = trailing_length(rest) {
        cidr.ip4 = parse_cidr(digits, 32)?;
        rest = head;
    }
    Ok((optional_domain(mechanism, rest)?, cidr))
}

/// Splits `…/digits` into (`…`, `digits`) when the text ends in a slash and digits.
fn trailing_length(text: &str) -> Option<(&str, &str)> {
    let (head, digits) = text.rsplit_once('/')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some((head, digits))
}

/// `address[/len]` → (address, len).
fn split_prefix(value: &str) -> (&str, Option<&str>) {
    match value.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (value, None),
    }
}

/// A prefix length: decimal without leading zeros, at most `max`.
fn parse_cidr(digits: &str, max: u8) -> Result<u8, String> {
    let well_formed = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match digits.parse::<u16>() {
        Ok(n) if well_formed && n <= u16::from(max) => Ok(n as u8),
        _ => Err(format!("invalid prefix length \"/{digits}\" (0 to {max})")),
    }
}

/// A dotted quad without leading zeros (`ip4-network` of RFC 7208 section 5.6).
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
            || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SpfRecord {
        SpfRecord::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn error(text: &str) -> ParseError {
        match SpfRecord::parse(text) {
            Ok(r) => panic!("{text:?} should not parse, got {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn selection_needs_version_then_space_or_end() {
        assert!(SpfRecord::is_spf(b"v=spf1"));
        assert!(SpfRecord::is_spf(b"V=SpF1 -all"));
        assert!(!SpfRecord::is_spf(b"v=spf10"));
        assert!(!SpfRecord::is_spf(b"v=spf1mx"));
        assert!(!SpfRecord::is_spf(b"v=spf1\t-all"));
        assert!(!SpfRecord::is_spf(b"spf1"));
    }

    #[test]
    fn every_mechanism_and_modifier() {
        let r = parse(
            "v=spf1  +a -mx:mail.example.com/24//64 ~ptr ?ip4:192.0.2.0/24 ip6:2001:db8::/32 \
             include:_spf.example.net exists:%{ir}.%{v}.bl.example.org a//0 IP4:1.2.3.4 \
             redirect=_spf.example.com exp=explain.%{d} moo.cow-far_out=man:dog/cat all ",
        );
        let kinds: Vec<_> = r.terms.iter().map(|t| &t.kind).collect();
        assert_eq!(kinds.len(), 13);
        assert_eq!(
            kinds[0],
            &TermKind::Directive(Directive {
                qualifier: Qualifier::Pass,
                mechanism: Mechanism::A {
                    domain: None,
                    cidr: DualCidr::default()
                }
            })
        );
        let TermKind::Directive(Directive {
            qualifier: Qualifier::Fail,
            mechanism: Mechanism::Mx { domain, cidr },
        }) = kinds[1]
        else {
            panic!("{:?}", kinds[1]);
        };
        assert_eq!(
            domain.as_ref().map(|d| d.as_str()),
            Some("mail.example.com")
        );
        assert_eq!(*cidr, DualCidr { ip4: 24, ip6: 64 });
        assert!(matches!(
            kinds[3],
            TermKind::Directive(Directive {
                qualifier: Qualifier::Neutral,
                mechanism: Mechanism::Ip4 { prefix_len: 24, .. }
            })
        ));
        assert!(matches!(
            kinds[7],
            TermKind::Directive(Directive {
                mechanism: Mechanism::A {
                    cidr: DualCidr { ip4: 32, ip6: 0 },
                    ..
                },
                ..
            })
        ));
        assert_eq!(r.redirect().map(|d| d.as_str()), Some("_spf.example.com"));
        assert_eq!(r.explanation().map(|d| d.as_str()), Some("explain.%{d}"));
        assert!(
            matches!(kinds[11], TermKind::Modifier(Modifier::Unknown { name, .. }) if name == "moo.cow-far_out")
        );
        assert_eq!(r.terms[0].column, 9, "two spaces after the version");
        assert_eq!(
            r.to_string(),
            "v=spf1 +a -mx:mail.example.com/24//64 ~ptr ?ip4:192.0.2.0/24 ip6:2001:db8::/32 \
             include:_spf.example.net exists:%{ir}.%{v}.bl.example.org a//0 IP4:1.2.3.4 \
             redirect=_spf.example.com exp=explain.%{d} moo.cow-far_out=man:dog/cat all"
        );
        assert_eq!(parse("v=spf1").terms.len(), 0);
        assert!(matches!(
            &parse("v=spf1 a:foo:bar/baz.example.com").terms[0].kind,
            TermKind::Directive(Directive { mechanism: Mechanism::A { domain: Some(d), .. }, .. })
                if d.as_str() == "foo:bar/baz.example.com"
        ));
    }

    #[test]
    fn syntax_errors_name_the_term_and_column() {
        let e = error("v=spf1 ip4:1.2.3.4 -all moo");
        assert_eq!(e.column, 25);
        assert!(e.message.contains("unknown mechanism \"moo\""), "{e}");
        for bad in [
            "v=spf1 -all.",
            "v=spf1 -all:foobar",
            "v=spf1 -all/8",
            "v=spf1 ptr/0",
            "v=spf1 ptr:",
            "v=spf1 a:",
            "v=spf1 include",
            "v=spf1 include:",
            "v=spf1 include:ip5.example.com/24",
            "v=spf1 exists",
            "v=spf1 exists:mail.example.com/24",
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/24/64",
            "v=spf1 mx//33/2",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:01.2.3.4",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip6",
            "v=spf1 ip6:::1.1.1.1/129",
            "v=spf1 ip6:::1.1.1.1//33",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 a:example.com:8080",
            "v=spf1 a:111.222.33.44",
            "v=spf1 a:abc.123",
            "v=spf1 a:museum",
            "v=spf1 a:museum.",
            "v=spf1 a:example.-com",
            "v=spf1 a:foo.example.com\0",
            "v=spf1 a:ctrl.example.com\rptr -all",
            "v=spf1 ip4:192.0.2.5\n include:x.example.com",
            "v=spf1 moo.cow/far_out=man:dog/cat",
            "v=spf1 moo.cow:far_out=man:dog/cat",
            "v=spf1 redirect:t2.example.com",
            "v=spf1 1up=foo",
            "v=spf1 =all",
            "v=spf1 exp=",
            "v=spf1 exp=-all",
            "v=spf1 redirect=",
            "v=spf1 redirect=-all ?all",
            "v=spf1 foo=%abc",
            "v=spf1 exp=a.example.com exp=b.example.com",
            "v=spf1 redirect=a.example.com -all REDIRECT=a.example.com",
            "v=spf1 exp=%{r}.example.com",
            "v=spf1 a:%{a}.example.com",
            "v=spf1 a:\u{feff}garbage.example.net",
        ] {
            error(bad);
        }
        let e = error("v=spf1 exp=a.example.com EXP=b.example.com");
        assert_eq!(e.column, 26, "{e}");
    }

    #[test]
    fn lenient_where_the_grammar_is() {
        parse("v=spf1 a  -all ");
        parse("V=SPF1 MX:Example.COM -ALL");
        parse("v=spf1 default=pass");
        parse("v=spf1 default=+");
        parse("v=spf1 a:foo.example.xn--zckzah");
        parse("v=spf1 a:%{H}.bar -all");
        parse("v=spf1 a:macro%%percent%_%_space%-url-space.example.com");
        parse("v=spf1 include:o.spf.example.com. ~all");
        parse("v=spf1 ip6:::FFFF:1.2.3.4 ip6:Cafe:Babe:8000::/33");
    }
}
