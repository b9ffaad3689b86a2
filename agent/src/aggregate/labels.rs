//! Label values derived from a [`MessageEvent`]: short, bounded classes instead of raw text.
//!
//! Series keys must stay bounded, so a label never carries an address, an IP or free text: the
//! recipient becomes its domain, a relay its host name, a DSN its class, a reject its enhanced
//! status code.

use std::sync::Arc;

use crate::labels::UNKNOWN;
use crate::track::MessageEvent;

/// The recipient's domain in lower case (`User@Example.COM.` → `example.com`); [`UNKNOWN`]
/// without a recipient or without a domain part.
pub fn recipient_domain(ev: &MessageEvent) -> Arc<str> {
    ev.recipient
        .as_deref()
        .and_then(domain_of)
        .unwrap_or_else(|| Arc::from(UNKNOWN))
}

/// The relay's host name in lower case, without IP and port (`mx.example.com[192.0.2.1]:25` →
/// `mx.example.com`; `none`, `local`, `private/dovecot-lmtp` stay as they are).
pub fn relay_host(ev: &MessageEvent) -> Arc<str> {
    match &ev.relay {
        Some(relay) if !relay.host.is_empty() => lower(&relay.host),
        _ => Arc::from(UNKNOWN),
    }
}

/// The DSN class: `"2"`, `"4"` or `"5"` from the first digit of the DSN, else [`UNKNOWN`].
pub fn dsn_class(ev: &MessageEvent) -> &'static str {
    match ev.dsn.as_deref().and_then(|d| d.bytes().next()) {
        Some(b'2') => "2",
        Some(b'4') => "4",
        Some(b'5') => "5",
        _ => UNKNOWN,
    }
}

/// Why a mail was rejected, as a short class: the enhanced status code (`5.7.1`) from the DSN or,
/// failing that, from the reply text; then the three-digit reply code; else [`UNKNOWN`].
pub fn reject_reason(ev: &MessageEvent) -> Arc<str> {
    if let Some(code) = ev.dsn.as_deref().and_then(enhanced_status_code) {
        return Arc::from(code);
    }
    let text = ev.status_text.as_deref().unwrap_or("");
    for word in text.split(|c: char| c.is_ascii_whitespace() || c == ';' || c == ':') {
        if let Some(code) = enhanced_status_code(word) {
            return Arc::from(code);
        }
    }
    match text.split_ascii_whitespace().next() {
        Some(code) if is_reply_code(code) => Arc::from(code),
        _ => Arc::from(UNKNOWN),
    }
}

/// `class.subject.detail` per RFC 3463: class 2, 4 or 5, then 1–3 and 1–3 digits. Returns the
/// code itself, so trailing punctuation around it is not part of the label.
fn enhanced_status_code(word: &str) -> Option<&str> {
    let word = word.trim_matches(|c: char| !c.is_ascii_digit());
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3);
    ok.then_some(word)
}

fn is_reply_code(s: &str) -> bool {
    s.len() == 3
        && matches!(s.as_bytes()[0], b'2' | b'4' | b'5')
        && s.bytes().all(|b| b.is_ascii_digit())
}

fn domain_of(address: &str) -> Option<Arc<str>> {
    let address = address.trim_matches(|c| c == '<' || c == '>');
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() {
        return None;
    }
    Some(lower(domain))
}

/// Lower-cases without allocating twice in the common, already lower-case, case.
fn lower(s: &str) -> Arc<str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Arc::from(s.to_ascii_lowercase())
    } else {
        Arc::from(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_found_and_trimmed() {
        assert_eq!(enhanced_status_code("5.7.1"), Some("5.7.1"));
        assert_eq!(enhanced_status_code("(5.7.1)"), Some("5.7.1"));
        assert_eq!(enhanced_status_code("4.2.100"), Some("4.2.100"));
        assert_eq!(enhanced_status_code("3.1.1"), None);
        assert_eq!(enhanced_status_code("5.7"), None);
        assert_eq!(enhanced_status_code("5.7.1.1"), None);
        assert_eq!(enhanced_status_code("192.0.2.1"), None);
    }

    #[test]
    fn domains_are_lower_case_without_trailing_dot() {
        assert_eq!(
            domain_of("User@Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_of("<a@b.org>").as_deref(), Some("b.org"));
        assert_eq!(domain_of("root"), None);
        assert_eq!(domain_of("a@"), None);
    }
}
