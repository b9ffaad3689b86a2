//! BIMI assertion records (draft-brand-indicators-for-message-identification):
//! `default._bimi.<domain>` TXT with `v=BIMI1; l=<logo URL>; a=<certificate URL>`.
//!
//! Why: the record is what mailbox providers read to show the brand logo; this check reports
//! whether one is published and well-formed. It checks the record only: the SVG logo, the mark
//! certificate and the DMARC enforcement BIMI requires are not fetched or judged here.
//!
//! Invariants: the parser takes arbitrary bytes and never panics; empty `l=` and `a=` are a
//! valid declination, not an error.

use serde::Serialize;

use super::finding::{Finding, long_string_finding, versioned_txt};
use super::tags::{Tag, TagListError, parse_tag_list};
use super::tlsrpt::is_https_url;
use super::{Resolve, normalise_name};

/// The `check` of BIMI findings.
pub const CHECK: &str = "bimi";

/// A parsed BIMI assertion record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BimiRecord {
    /// `l=`: the HTTPS URL of the SVG logo (`None` when absent or empty).
    pub location: Option<String>,
    /// `a=`: the HTTPS URL of the mark certificate (VMC/CMC) PEM (`None` when absent or empty).
    pub authority: Option<String>,
    /// Other tags.
    pub extensions: Vec<Tag>,
}

impl BimiRecord {
    /// Empty `l=` and no `a=`: the domain explicitly declines to show a logo.
    pub fn is_declination(&self) -> bool {
        self.location.is_none() && self.authority.is_none()
    }
}

/// Why a BIMI record is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BimiParseError {
    #[error("malformed record: {0}")]
    TagList(#[from] TagListError),
    #[error("the record does not start with v=BIMI1")]
    NotBimi,
}

/// Parses a BIMI record (the TXT record's strings joined).
pub fn parse_bimi_record(text: &[u8]) -> Result<BimiRecord, BimiParseError> {
    let mut tags = parse_tag_list(text)?.into_iter();
    match tags.next() {
        Some(t) if t.name == "v" && t.value == "BIMI1" => {}
        _ => return Err(BimiParseError::NotBimi),
    }
    let mut record = BimiRecord {
        location: None,
        authority: None,
        extensions: Vec::new(),
    };
    for tag in tags {
        let value = Some(tag.value.clone()).filter(|v| !v.is_empty());
        match tag.name.as_str() {
            "l" => record.location = value,
            "a" => record.authority = value,
            _ => record.extensions.push(tag),
        }
    }
    Ok(record)
}

/// What [`check_bimi`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BimiReport {
    /// `default._bimi.<domain>`.
    pub name: String,
    pub record: Option<BimiRecord>,
}

/// Fetches and parses the default BIMI record of `domain`.
pub async fn check_bimi<R: Resolve>(domain: &str, resolver: &R) -> (BimiReport, Vec<Finding>) {
    let name = format!("default._bimi.{}", normalise_name(domain));
    let mut report = BimiReport {
        name: name.clone(),
        record: None,
    };
    let mut findings = Vec::new();
    let (owned, authenticated) = match versioned_txt(resolver, CHECK, &name, "BIMI1").await {
        Ok(found) => found,
        Err(finding) => {
            findings.push(finding);
            return (report, findings);
        }
    };
    let _ = authenticated;
    let records: Vec<&[Vec<u8>]> = owned.iter().map(Vec::as_slice).collect();
    let record = match records.as_slice() {
        [] => {
            findings.push(Finding::info(
                CHECK,
                "bimi-missing",
                format!("no BIMI record at {name}"),
            ));
            return (report, findings);
        }
        [one] => {
            findings.extend(long_string_finding(CHECK, CHECK, &name, one));
            match parse_bimi_record(&one.concat()) {
                Ok(record) => record,
                Err(e) => {
                    findings.push(
                        Finding::error(CHECK, "bimi-invalid", format!("{name} is invalid: {e}"))
                            .with_fix("Publish v=BIMI1; l=https://<host>/logo.svg; a=https://<host>/vmc.pem"),
                    );
                    return (report, findings);
                }
            }
        }
        several => {
            findings.push(
                Finding::error(
                    CHECK,
                    "bimi-multiple-records",
                    format!(
                        "{name} has {} v=BIMI1 records; no logo is shown",
                        several.len()
                    ),
                )
                .with_fix(format!("Keep exactly one v=BIMI1 record at {name}")),
            );
            return (report, findings);
        }
    };
    for (tag, url) in [("l", &record.location), ("a", &record.authority)] {
        if let Some(url) = url
            && !is_https_url(url)
        {
            findings.push(
                Finding::error(
                    CHECK,
                    "bimi-url-not-https",
                    format!("{name}: {tag}={url} is not an https:// URL"),
                )
                .with_fix(format!("Serve the file over HTTPS and set {tag}=https://…")),
            );
        }
    }
    findings.push(if record.is_declination() {
        Finding::info(
            CHECK,
            "bimi-declined",
            format!("{name} declines BIMI (empty l=)"),
        )
    } else {
        Finding::ok(
            CHECK,
            "bimi-present",
            format!("{name} publishes a BIMI record"),
        )
    });
    report.record = Some(record);
    (report, findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_declinations() {
        let r = parse_bimi_record(
            b"v=BIMI1; l=https://example.com/logo.svg; a=https://example.com/vmc.pem",
        )
        .unwrap();
        assert_eq!(r.location.as_deref(), Some("https://example.com/logo.svg"));
        assert_eq!(r.authority.as_deref(), Some("https://example.com/vmc.pem"));
        assert!(parse_bimi_record(b"v=BIMI1; l=;").unwrap().is_declination());
        assert_eq!(
            parse_bimi_record(b"v=BIMI2; l="),
            Err(BimiParseError::NotBimi)
        );
    }
}
