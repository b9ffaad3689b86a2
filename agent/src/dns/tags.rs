//! The tag-list grammar of DKIM (RFC 6376 3.2): `name=value` pairs separated by `;`, which DMARC,
//! MTA-STS, TLS-RPT and BIMI records borrow, and [`leading_version`] to pick a protocol's records
//! out of the TXT records at a name.
//!
//! Invariants: the parser takes arbitrary bytes and returns errors, never panics; tag names are
//! case-sensitive (RFC 6376 3.2).

use serde::Serialize;

/// One `name=value` of a tag-list; the value is trimmed of surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// Why a tag-list is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagListError {
    /// A byte outside printable ASCII and whitespace.
    #[error("byte {offset} (0x{byte:02x}) is not printable ASCII")]
    NotAscii { offset: usize, byte: u8 },
    /// A `;`-separated part without `=`.
    #[error("{spec:?} is not a tag=value pair")]
    MissingEquals { spec: String },
    /// A tag name that is empty or has characters outside letters, digits, `_`, `-` and `.`.
    #[error("invalid tag name {0:?}")]
    BadName(String),
    /// Whitespace-separated pieces are allowed in a value, `=` at its start is not.
    #[error("tag {name} has an invalid value {value:?}")]
    BadValue { name: String, value: String },
    /// RFC 6376 3.2: a duplicated tag makes the whole list invalid.
    #[error("tag {0} appears more than once")]
    Duplicate(String),
}

/// Parses a tag-list (RFC 6376 3.2): `name=value` pairs separated by `;`, whitespace around
/// names, `=` and values ignored, a trailing `;` allowed and empty pairs (`;;`) skipped.
///
/// Tag names start with a letter or digit and continue with letters, digits, `_`, `-` or `.`
/// (a superset of DKIM's `ALPHA *(ALPHA / DIGIT / "_")` that also covers MTA-STS and TLS-RPT
/// extension names).
pub fn parse_tag_list(text: &[u8]) -> Result<Vec<Tag>, TagListError> {
    if let Some((offset, &byte)) = text
        .iter()
        .enumerate()
        .find(|&(_, &b)| !(b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n')))
    {
        return Err(TagListError::NotAscii { offset, byte });
    }
    // Only ASCII is left, so this cannot fail; the fallback keeps it panic-free regardless.
    let text = std::str::from_utf8(text).unwrap_or_default();
    let mut tags: Vec<Tag> = Vec::new();
    for spec in text.split(';') {
        if spec.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = spec.split_once('=') else {
            return Err(TagListError::MissingEquals {
                spec: spec.trim().to_owned(),
            });
        };
        let name = name.trim();
        let value = value.trim();
        if !is_tag_name(name) {
            return Err(TagListError::BadName(name.to_owned()));
        }
        if value.starts_with('=') {
            return Err(TagListError::BadValue {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        if tags.iter().any(|t| t.name == name) {
            return Err(TagListError::Duplicate(name.to_owned()));
        }
        tags.push(Tag {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(tags)
}

/// The value of a record's first tag when that tag is `v` (`v=DMARC1; …` → `DMARC1`), used to
/// pick a protocol's records out of the TXT records at a name.
pub fn leading_version(text: &[u8]) -> Option<&str> {
    let first = text.split(|&b| b == b';').next()?;
    let first = std::str::from_utf8(first).ok()?;
    let (name, value) = first.split_once('=')?;
    (name.trim() == "v").then(|| value.trim())
}

fn is_tag_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_follow_rfc_6376_3_2() {
        let tags = parse_tag_list(b" v = DKIM1 ;k=rsa;\r\n\tp=AB CD ; ;").unwrap();
        let pairs: Vec<(&str, &str)> = tags
            .iter()
            .map(|t| (t.name.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(pairs, [("v", "DKIM1"), ("k", "rsa"), ("p", "AB CD")]);
        assert_eq!(parse_tag_list(b"").unwrap(), []);
        assert!(matches!(
            parse_tag_list(b"v=DKIM1; p"),
            Err(TagListError::MissingEquals { .. })
        ));
        assert!(matches!(
            parse_tag_list(b"p=a; p=b"),
            Err(TagListError::Duplicate(_))
        ));
        assert!(matches!(
            parse_tag_list(b"=a"),
            Err(TagListError::BadName(_))
        ));
        assert!(matches!(
            parse_tag_list("p=\u{e9}".as_bytes()),
            Err(TagListError::NotAscii { offset: 2, .. })
        ));
        assert_eq!(leading_version(b" v = DMARC1 ; p=none"), Some("DMARC1"));
        assert_eq!(leading_version(b"p=none; v=DMARC1"), None);
    }
}
