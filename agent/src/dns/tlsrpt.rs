//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls.<domain>` TXT record that tells senders where
//! to report TLS failures towards the domain's MX hosts.
//!
//! Why: with MTA-STS or DANE, TLS failures make mail bounce or (in testing mode) go unprotected;
//! TLS-RPT reports are the only way the domain owner learns of them.
//!
//! Invariants: the parser takes arbitrary bytes and never panics; a record with any invalid
//! `rua` URI is invalid as a whole, as senders treat it (RFC 8460 3).

use serde::Serialize;

use super::dmarc::{is_hostname, parse_mailto};
use super::finding::{Finding, long_string_finding, publish_txt_fix, versioned_txt};
use super::tags::{Tag, TagListError, parse_tag_list};
use super::{Resolve, normalise_name};

/// The `check` of TLS-RPT findings.
pub const CHECK: &str = "tlsrpt";

/// Where reports go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "scheme")]
pub enum ReportDestination {
    /// By mail.
    Mailto { mailbox: String, domain: String },
    /// By HTTPS POST.
    Https { url: String },
}

/// A parsed TLS-RPT record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRptRecord {
    /// `rua=`, in order.
    pub rua: Vec<ReportDestination>,
    /// Other tags, ignored by senders.
    pub extensions: Vec<Tag>,
}

/// Why a TLS-RPT record is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRptParseError {
    #[error("malformed record: {0}")]
    TagList(#[from] TagListError),
    #[error("the record does not start with v=TLSRPTv1")]
    NotTlsRpt,
    #[error("rua= is missing or empty")]
    MissingRua,
    #[error("rua URI {uri:?}: {reason}")]
    BadUri { uri: String, reason: String },
}

/// Parses a TLS-RPT record (the TXT record's strings joined).
pub fn parse_tlsrpt_record(text: &[u8]) -> Result<TlsRptRecord, TlsRptParseError> {
    let mut tags = parse_tag_list(text)?.into_iter();
    match tags.next() {
        Some(t) if t.name == "v" && t.value == "TLSRPTv1" => {}
        _ => return Err(TlsRptParseError::NotTlsRpt),
    }
    let (rua, extensions): (Vec<Tag>, Vec<Tag>) = tags.partition(|t| t.name == "rua");
    let rua = rua.into_iter().next().ok_or(TlsRptParseError::MissingRua)?;
    let mut destinations = Vec::new();
    for uri in rua.value.split(',').map(str::trim) {
        if uri.is_empty() {
            continue;
        }
        let bad = |reason: &str| TlsRptParseError::BadUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = uri.split_once(':').ok_or_else(|| bad("no scheme"))?;
        if scheme.eq_ignore_ascii_case("mailto") {
            let (mailbox, domain) = parse_mailto(rest).map_err(|reason| bad(&reason))?;
            destinations.push(ReportDestination::Mailto { mailbox, domain });
        } else if scheme.eq_ignore_ascii_case("https") {
            if !is_https_url(uri) {
                return Err(bad("not an https://host/path URL"));
            }
            destinations.push(ReportDestination::Https {
                url: uri.to_owned(),
            });
        } else {
            return Err(bad("only mailto: and https: are allowed"));
        }
    }
    if destinations.is_empty() {
        return Err(TlsRptParseError::MissingRua);
    }
    Ok(TlsRptRecord {
        rua: destinations,
        extensions,
    })
}

/// Whether `url` is `https://<host>[:port][/path]` with a valid host name.
pub(crate) fn is_https_url(url: &str) -> bool {
    let Some(rest) = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        Some(_) => return false,
        None => authority,
    };
    is_hostname(host) && !url.contains(|c: char| c.is_ascii_whitespace())
}

/// What [`check_tlsrpt`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRptReport {
    /// `_smtp._tls.<domain>`.
    pub name: String,
    pub record: Option<TlsRptRecord>,
    /// The answer was DNSSEC-validated.
    pub authenticated: bool,
}

/// Fetches and lints the TLS-RPT record of `domain`.
pub async fn check_tlsrpt<R: Resolve>(domain: &str, resolver: &R) -> (TlsRptReport, Vec<Finding>) {
    let name = format!("_smtp._tls.{}", normalise_name(domain));
    let mut report = TlsRptReport {
        name: name.clone(),
        record: None,
        authenticated: false,
    };
    let mut findings = Vec::new();
    let (owned, authenticated) = match versioned_txt(resolver, CHECK, &name, "TLSRPTv1").await {
        Ok(found) => found,
        Err(finding) => {
            findings.push(finding);
            return (report, findings);
        }
    };
    report.authenticated = authenticated;
    let records: Vec<&[Vec<u8>]> = owned.iter().map(Vec::as_slice).collect();
    let example = format!(
        "v=TLSRPTv1; rua=mailto:tls-reports@{}",
        normalise_name(domain)
    );
    match records.as_slice() {
        [] => findings.push(
            Finding::info(
                CHECK,
                "tlsrpt-missing",
                format!("no TLS-RPT record at {name}: TLS failures towards the MX go unreported"),
            )
            .with_fix(publish_txt_fix(&name, &example)),
        ),
        [one] => {
            findings.extend(long_string_finding(CHECK, CHECK, &name, one));
            match parse_tlsrpt_record(&one.concat()) {
                Ok(record) => {
                    findings.push(Finding::ok(
                        CHECK,
                        "tlsrpt-valid",
                        format!(
                            "{name} sends TLS reports to {} destination(s)",
                            record.rua.len()
                        ),
                    ));
                    report.record = Some(record);
                }
                Err(e) => findings.push(
                    Finding::error(
                        CHECK,
                        "tlsrpt-invalid",
                        format!("{name} is invalid ({e}); senders send no reports"),
                    )
                    .with_fix(publish_txt_fix(&name, &example)),
                ),
            }
        }
        several => findings.push(
            Finding::error(
                CHECK,
                "tlsrpt-multiple-records",
                format!(
                    "{name} has {} v=TLSRPTv1 records; senders then send no reports",
                    several.len()
                ),
            )
            .with_fix("Merge them into one record; rua= takes a comma-separated list"),
        ),
    }
    (report, findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_mailto_and_https_destinations() {
        let r = parse_tlsrpt_record(
            b"v=TLSRPTv1; rua=mailto:tls@example.com, https://report.example.net:8443/tlsrpt",
        )
        .unwrap();
        assert_eq!(
            r.rua,
            [
                ReportDestination::Mailto {
                    mailbox: "tls@example.com".into(),
                    domain: "example.com".into()
                },
                ReportDestination::Https {
                    url: "https://report.example.net:8443/tlsrpt".into()
                }
            ]
        );
        assert_eq!(
            parse_tlsrpt_record(b"v=TLSRPTv1;"),
            Err(TlsRptParseError::MissingRua)
        );
        assert!(matches!(
            parse_tlsrpt_record(b"v=TLSRPTv1; rua=http://report.example.net/"),
            Err(TlsRptParseError::BadUri { .. })
        ));
        assert_eq!(
            parse_tlsrpt_record(b"rua=mailto:a@b.example; v=TLSRPTv1"),
            Err(TlsRptParseError::NotTlsRpt)
        );
        assert!(!is_https_url("https://"));
        assert!(!is_https_url("https://host.example:x/"));
    }
}
