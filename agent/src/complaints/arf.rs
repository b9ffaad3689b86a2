//! Abuse Reporting Format (RFC 5965) feedback reports: what a mailbox provider's feedback loop
//! sends when one of its users clicks "this is spam" on a message from us.
//!
//! A report is a `multipart/report; report-type=feedback-report` message with (1) a
//! human-readable part, (2) a `message/feedback-report` part of header-like fields
//! (`Feedback-Type`, `User-Agent`, `Version`, `Original-Mail-From`, `Original-Rcpt-To`,
//! `Arrival-Date`, `Source-IP`, `Reported-Domain`, …) and (3) the original message or its headers
//! (`message/rfc822` or `text/rfc822-headers`). [`parse`] reads the fields the agent counts by:
//! the feedback type, the envelope sender (`Original-Mail-From`, else the original's
//! `Return-Path`), its domain (else the original `From:` domain, else `Reported-Domain`) and the
//! source IP. Pure, no I/O; every input gets an answer (a report or why not), never a panic.

use std::net::IpAddr;

/// Largest report read (bytes); the caller refuses larger files unread.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// Longest header block looked at in any part.
const MAX_HEADER_BYTES: usize = 256 * 1024;

/// What a feedback report says about the message complained about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Complaint {
    /// `abuse`, `fraud`, `virus`, `other`, `not-spam`, … (lower case).
    pub feedback_type: String,
    /// The envelope sender of the original message (lower case), if known.
    pub sender: Option<String>,
    /// The sending domain: the sender's, else the original `From:` header's, else
    /// `Reported-Domain` (lower case).
    pub sender_domain: Option<String>,
    /// The IP the provider received the original from (ours).
    pub source_ip: Option<IpAddr>,
}

/// Why a message is not a feedback report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArfError {
    #[error("the report is {0} bytes, more than {MAX_REPORT_BYTES}")]
    TooLarge(usize),
    #[error("not a multipart/report; report-type=feedback-report message")]
    NotReport,
    #[error("no boundary parameter")]
    NoBoundary,
    #[error("no message/feedback-report part")]
    NoFeedbackPart,
    #[error("no Feedback-Type field")]
    NoFeedbackType,
}

/// Header fields of a block, unfolded: (lower-case name, value).
fn headers(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
                out.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Splits a message (or part) into its header block and body at the first empty line.
fn split(message: &str) -> (&str, &str) {
    let cut = |i: usize, sep: usize| (&message[..i], &message[i + sep..]);
    match (message.find("\r\n\r\n"), message.find("\n\n")) {
        (Some(a), Some(b)) if a < b => cut(a, 4),
        (_, Some(b)) => cut(b, 2),
        (Some(a), None) => cut(a, 4),
        (None, None) => (message, ""),
    }
}

/// The media type (lower case) and a parameter of a `Content-Type` value.
fn content_type(value: &str) -> (String, impl Fn(&str) -> Option<String> + '_) {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let param = move |name: &str| {
        value.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    (media, param)
}

/// `<local@domain>` or `local@domain` (first address only), lower case; None for `<>`.
fn address(value: &str) -> Option<String> {
    let v = value.trim();
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split_whitespace().next().unwrap_or(""),
    };
    let inner = inner.trim();
    (inner.contains('@') && inner.len() <= 320 && !inner.contains(char::is_whitespace))
        .then(|| inner.to_ascii_lowercase())
}

fn domain_of(address: &str) -> Option<String> {
    let (_, d) = address.rsplit_once('@')?;
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// Parses one feedback report.
pub fn parse(raw: &[u8]) -> Result<Complaint, ArfError> {
    if raw.len() > MAX_REPORT_BYTES {
        return Err(ArfError::TooLarge(raw.len()));
    }
    let text = String::from_utf8_lossy(raw);
    let (head, body) = split(&text);
    let head = &head[..head.len().min(MAX_HEADER_BYTES)];
    let top = headers(head);
    let (media, param) = content_type(field(&top, "content-type").unwrap_or(""));
    if media != "multipart/report"
        || !param("report-type").is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"))
    {
        return Err(ArfError::NotReport);
    }
    let boundary = param("boundary").ok_or(ArfError::NoBoundary)?;
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(ArfError::NoBoundary);
    }
    let delimiter = format!("--{boundary}");
    let mut feedback: Option<Vec<(String, String)>> = None;
    let mut original: Option<Vec<(String, String)>> = None;
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.trim_start_matches(['\r', '\n']);
        let (part_head, part_body) = split(part);
        let part_headers = headers(part_head);
        let (part_media, _) = content_type(field(&part_headers, "content-type").unwrap_or(""));
        let decoded;
        let part_body = if field(&part_headers, "content-transfer-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("base64"))
        {
            decoded = crate::dns::dkim::decode_base64(part_body)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            decoded.as_str()
        } else {
            part_body
        };
        let limited = &part_body[..floor_char(part_body, MAX_HEADER_BYTES)];
        match part_media.as_str() {
            "message/feedback-report" => feedback = Some(headers(limited)),
            "message/rfc822" | "text/rfc822-headers" | "message/rfc822-headers" => {
                original = Some(headers(split(limited).0))
            }
            _ => {}
        }
    }
    let feedback = feedback.ok_or(ArfError::NoFeedbackPart)?;
    let feedback_type = field(&feedback, "feedback-type")
        .map(|t| t.to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(ArfError::NoFeedbackType)?;
    let original = original.unwrap_or_default();
    let sender = field(&feedback, "original-mail-from")
        .and_then(address)
        .or_else(|| field(&original, "return-path").and_then(address));
    let sender_domain = sender
        .as_deref()
        .and_then(domain_of)
        .or_else(|| {
            field(&original, "from")
                .and_then(address)
                .as_deref()
                .and_then(domain_of)
        })
        .or_else(|| {
            field(&feedback, "reported-domain")
                .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty() && !d.contains(char::is_whitespace))
        });
    let source_ip = field(&feedback, "source-ip").and_then(|v| v.trim().parse().ok());
    Ok(Complaint {
        feedback_type,
        sender,
        sender_domain,
        source_ip,
    })
}

fn floor_char(s: &str, max: usize) -> usize {
    let mut i = s.len().min(max);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The RFC 5965 Appendix B.2 example (tests of this crate).
#[cfg(test)]
pub(crate) fn tests_fixture() -> &'static str {
    include_str!("../../tests/fixtures/arf/rfc5965-b2.eml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5965, Appendix B.2 ("Complete Example").
    const RFC5965_B2: &str = include_str!("../../tests/fixtures/arf/rfc5965-b2.eml");

    #[test]
    fn the_rfc_example_is_read() {
        let c = parse(RFC5965_B2.as_bytes()).expect("a report");
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.sender.as_deref(), Some("somespammer@example.net"));
        assert_eq!(c.sender_domain.as_deref(), Some("example.net"));
        assert_eq!(c.source_ip, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn other_messages_are_refused_with_a_reason() {
        assert_eq!(
            parse(b"From: a@b\nSubject: hi\n\nhello\n"),
            Err(ArfError::NotReport)
        );
        assert_eq!(
            parse(b"Content-Type: multipart/report; report-type=feedback-report\n\nx"),
            Err(ArfError::NoBoundary)
        );
        let no_part = "Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhi\n--b--\n";
        assert_eq!(parse(no_part.as_bytes()), Err(ArfError::NoFeedbackPart));
        assert!(matches!(
            parse(&vec![b'a'; MAX_REPORT_BYTES + 1]),
            Err(ArfError::TooLarge(_))
        ));
    }

    #[test]
    fn a_base64_original_and_a_from_header_give_the_domain() {
        let original =
            "Return-Path: <>\r\nFrom: News <news@Shop.Example>\r\nSubject: x\r\n\r\nbody\r\n";
        let b64 = base64(original.as_bytes());
        let report = format!(
            "Content-Type: multipart/report; report-type=feedback-report;\r\n boundary=\"part\"\r\n\r\n\
             --part\r\nContent-Type: text/plain\r\n\r\nspam report\r\n\
             --part\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: Abuse\r\nUser-Agent: x/1\r\nVersion: 1\r\nSource-IP: 2001:db8::25\r\n\r\n\
             --part\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--part--\r\n"
        );
        let c = parse(report.as_bytes()).expect("a report");
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.sender, None, "<> is no sender");
        assert_eq!(c.sender_domain.as_deref(), Some("shop.example"));
        assert_eq!(c.source_ip, Some("2001:db8::25".parse().unwrap()));
    }

    fn base64(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    proptest! {
        /// Any bytes: an answer, never a panic; a report's fields are bounded.
        #[test]
        fn any_input_gets_an_answer(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(c) = parse(&raw) {
                prop_assert!(c.feedback_type.len() <= 32);
            }
        }

        /// A report with arbitrary field values still parses or refuses cleanly.
        #[test]
        fn arbitrary_field_values(value in "[ -~]{0,200}") {
            let report = format!(
                "Content-Type: multipart/report; report-type=feedback-report; boundary=b\n\n--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nOriginal-Mail-From: {value}\nSource-IP: {value}\n\n--b--\n"
            );
            let c = parse(report.as_bytes());
            prop_assert!(c.is_ok());
        }
    }
}
