//! What a check found: one [`Finding`] per observation, with a severity, a stable code and a
//! concrete fix.
//!
//! Every e-mail authentication and reputation check (DKIM, DMARC, MTA-STS, TLS-RPT, BIMI, DNSBL,
//! Sender Score, PTR, MX) reports in this one shape, so the collector, the CLI and alerts treat
//! them alike. Codes are stable identifiers (`dkim-key-too-short`): dashboards and silences key
//! on them, so a code never changes meaning once shipped.
//!
//! The module also holds [`lookup`], the one place where a DNS outcome is sorted into "records",
//! "no such records" and "the lookup failed": a check must never mistake a SERVFAIL or a timeout
//! for a missing record.

use serde::Serialize;

use super::tags::leading_version;
use super::{Answer, LookupError, RData, Rcode, RecordType, Resolve};

/// Longest character-string a TXT record can carry (RFC 1035 3.3).
pub const MAX_TXT_STRING_BYTES: usize = 255;

/// How much a finding matters. Sorts most severe first (`Error < Warning < Info < Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Broken: mail is rejected, unauthenticated or unprotected because of it.
    Error,
    /// Works, but weaker than it should be, or about to break.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
    /// Checked and fine.
    Ok,
}

impl Severity {
    /// The lower-case name (`error`, `warning`, `info`, `ok`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
            Self::Ok => "ok",
        }
    }
}

/// One observation of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The check that made it (`dkim`, `dmarc`, `mta-sts`, …).
    pub check: &'static str,
    /// Short stable identifier (`dkim-key-too-short`).
    pub code: String,
    /// What was found, for a human, naming the record or host concerned.
    pub message: String,
    /// How to fix it, concretely; `None` when there is nothing to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A finding without a fix.
    pub fn new(
        severity: Severity,
        check: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            check,
            code: code.into(),
            message: message.into(),
            fix: None,
        }
    }

    /// An [`Severity::Error`] finding.
    pub fn error(check: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, check, code, message)
    }

    /// A [`Severity::Warning`] finding.
    pub fn warning(
        check: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Warning, check, code, message)
    }

    /// An [`Severity::Info`] finding.
    pub fn info(check: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, check, code, message)
    }

    /// An [`Severity::Ok`] finding.
    pub fn ok(check: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Ok, check, code, message)
    }

    /// The same finding with a fix.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// The finding for a lookup that got no usable answer: a warning, because the state of the
    /// record is unknown, not known to be wrong.
    pub fn lookup_failed(check: &'static str, name: &str, rtype: RecordType, reason: &str) -> Self {
        Self::warning(
            check,
            format!("{check}-lookup-failed"),
            format!(
                "{} lookup of {name} failed ({reason}); the check is incomplete",
                rtype.name()
            ),
        )
        .with_fix(format!(
            "Check that the authoritative servers of {name} answer (dig {} {name}) and retry",
            rtype.name()
        ))
    }
}

/// The most severe severity among `findings` (`None` when empty).
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).min()
}

/// A DNS outcome sorted the way every check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The name has records of the asked type (the answer may also hold the CNAMEs followed).
    Found(Answer),
    /// The name has no records of the asked type: NODATA, or NXDOMAIN when `nxdomain`.
    Empty { nxdomain: bool },
    /// No usable answer (timeout, SERVFAIL, REFUSED, …): nothing is known about the records.
    Failed(String),
}

/// Asks `resolver` and sorts the outcome; see [`Lookup`].
pub(crate) async fn lookup<R: Resolve>(resolver: &R, name: &str, rtype: RecordType) -> Lookup {
    match resolver.lookup(name, rtype).await {
        Err(e) => Lookup::Failed(describe_error(&e)),
        Ok(answer) => match answer.rcode {
            Rcode::NoError if answer.records.iter().any(|r| r.data.record_type() == rtype) => {
                Lookup::Found(answer)
            }
            Rcode::NoError => Lookup::Empty { nxdomain: false },
            Rcode::NxDomain => Lookup::Empty { nxdomain: true },
            Rcode::Other(code) => Lookup::Failed(format!("rcode {code}")),
            other => Lookup::Failed(other.as_str().to_ascii_uppercase()),
        },
    }
}

fn describe_error(e: &LookupError) -> String {
    match e {
        LookupError::Timeout => "timeout".to_owned(),
        other => other.to_string(),
    }
}

/// The TXT records of an answer, each as its list of character-strings.
pub(crate) fn txt_records(answer: &Answer) -> Vec<&[Vec<u8>]> {
    answer
        .data()
        .filter_map(|d| match d {
            RData::Txt(parts) => Some(parts.as_slice()),
            _ => None,
        })
        .collect()
}

/// The TXT records at `name` whose tag list starts with `v=<version>` (each as its strings) and
/// whether the answer was DNSSEC-authenticated; a failed lookup becomes its finding.
pub(crate) async fn versioned_txt<R: Resolve>(
    resolver: &R,
    check: &'static str,
    name: &str,
    version: &str,
) -> Result<(Vec<Vec<Vec<u8>>>, bool), Finding> {
    let answer = match lookup(resolver, name, RecordType::Txt).await {
        Lookup::Failed(reason) => {
            return Err(Finding::lookup_failed(
                check,
                name,
                RecordType::Txt,
                &reason,
            ));
        }
        Lookup::Empty { .. } => return Ok((Vec::new(), false)),
        Lookup::Found(answer) => answer,
    };
    let records = txt_records(&answer)
        .into_iter()
        .filter(|strings| leading_version(&strings.concat()) == Some(version))
        .map(<[Vec<u8>]>::to_vec)
        .collect();
    Ok((records, answer.authenticated))
}

/// The fix text for "publish this TXT record", with the zone-file line to add.
pub(crate) fn publish_txt_fix(name: &str, value: &str) -> String {
    format!("Publish the TXT record: {name}. IN TXT \"{value}\"")
}

/// Findings for character-strings longer than a TXT record can hold: such a record was
/// published unsplit and a DNS server truncates or refuses it. Shared by the TXT-based checks.
pub(crate) fn long_string_finding(
    check: &'static str,
    prefix: &str,
    name: &str,
    strings: &[Vec<u8>],
) -> Option<Finding> {
    let longest = strings.iter().map(Vec::len).max()?;
    (longest > MAX_TXT_STRING_BYTES).then(|| {
        Finding::error(
            check,
            format!("{prefix}-txt-string-too-long"),
            format!(
                "a TXT string at {name} is {longest} bytes; one string holds at most \
                 {MAX_TXT_STRING_BYTES}"
            ),
        )
        .with_fix(
            "Split the value into quoted strings of at most 255 bytes in one record: \
             \"part1\" \"part2\" (verifiers join them)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::MemoryZone;

    #[test]
    fn severities_sort_most_severe_first_and_serialise_in_lower_case() {
        let findings = [
            Finding::ok("mx", "mx-ok", "fine"),
            Finding::warning("mx", "mx-implicit", "no MX"),
            Finding::info("mx", "mx-null", "null MX"),
        ];
        assert_eq!(worst(&findings), Some(Severity::Warning));
        assert_eq!(worst(&[]), None);
        let json = serde_json::to_value(Finding::error("dkim", "c", "m").with_fix("f")).unwrap();
        assert_eq!(json["severity"], "error");
        assert_eq!(json["fix"], "f");
        let json = serde_json::to_value(Finding::ok("dkim", "c", "m")).unwrap();
        assert!(json.get("fix").is_none(), "no fix key when there is no fix");
    }

    #[tokio::test]
    async fn lookup_tells_missing_records_from_failed_lookups() {
        let mut zone = MemoryZone::new();
        zone.add_txt("a.example", "x")
            .set_rcode("fail.example", Rcode::ServFail)
            .set_timeout("slow.example");
        assert!(matches!(
            lookup(&zone, "a.example", RecordType::Txt).await,
            Lookup::Found(_)
        ));
        assert_eq!(
            lookup(&zone, "a.example", RecordType::Mx).await,
            Lookup::Empty { nxdomain: false }
        );
        assert_eq!(
            lookup(&zone, "b.example", RecordType::Txt).await,
            Lookup::Empty { nxdomain: true }
        );
        assert_eq!(
            lookup(&zone, "fail.example", RecordType::Txt).await,
            Lookup::Failed("SERVFAIL".into())
        );
        assert_eq!(
            lookup(&zone, "slow.example", RecordType::Txt).await,
            Lookup::Failed("timeout".into())
        );
    }
}
