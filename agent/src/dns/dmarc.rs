//! DMARC policy records (RFC 7489): find the policy that governs a domain, parse it, lint it and
//! verify that every external report destination has agreed to receive reports.
//!
//! Why: without an enforcing DMARC policy anyone can send as the domain; with a wrong one the
//! domain's own mail is quarantined; and reports sent to an unauthorized third party are simply
//! dropped by receivers (RFC 7489 7.1), so the owner flies blind without noticing.
//!
//! The policy is looked up at `_dmarc.<domain>` and, when absent, at the organisational domain
//! ([`organizational_domain`]). Limit: the organisational domain comes from a small built-in
//! approximation of the Public Suffix List (the last two labels, or three under common
//! second-level public suffixes such as `co.uk` or `com.au`), not from the full list; domains
//! under other multi-label suffixes (`pvt.k12.ma.us`, private suffixes like `github.io`) get a
//! too-short organisational domain.
//!
//! Invariants: the parser takes arbitrary bytes and never panics; invalid tag values do not
//! fail the parse but are kept as [`TagProblem`]s, because receivers ignore such a tag and use
//! its default (RFC 7489 6.6.3), which is exactly what a linter has to show.

use serde::Serialize;

use super::finding::{Finding, Lookup, long_string_finding, lookup, publish_txt_fix, txt_records};
use super::tags::{TagListError, leading_version, parse_tag_list};
use super::{RecordType, Resolve, normalise_name};

/// The `check` of DMARC findings.
pub const CHECK: &str = "dmarc";

/// What a receiver does with mail that fails DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "quarantine" => Some(Self::Quarantine),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }

    /// The tag value (`none`, `quarantine`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Quarantine => "quarantine",
            Self::Reject => "reject",
        }
    }
}

/// Identifier alignment mode (`adkim=`, `aspf=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Alignment {
    /// Organisational domains must match (default).
    Relaxed,
    /// Domains must match exactly.
    Strict,
}

impl Alignment {
    fn describe(self) -> &'static str {
        match self {
            Self::Relaxed => "relaxed",
            Self::Strict => "strict",
        }
    }
}

/// A reporting URI of `rua=`/`ruf=` (RFC 7489 6.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportUri {
    /// The URI without the size limit.
    pub uri: String,
    /// Lower-case scheme (`mailto`).
    pub scheme: String,
    /// For `mailto:`, the mailbox (`local@domain`).
    pub mailbox: Option<String>,
    /// For `mailto:`, the mailbox's domain in lower case.
    pub domain: Option<String>,
    /// The `!size` limit in bytes.
    pub max_size_bytes: Option<u64>,
}

/// A tag whose value receivers ignore (they use the default instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagProblem {
    pub tag: String,
    pub value: String,
    pub reason: String,
}

/// A parsed DMARC record, with the defaults of RFC 7489 6.3 filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmarcRecord {
    /// `p=`; `None` when missing or invalid.
    pub policy: Option<Policy>,
    /// `sp=`: the policy for subdomains (`None`: same as `p=`).
    pub subdomain_policy: Option<Policy>,
    /// `pct=`: the percentage of failing mail the policy applies to (default 100).
    pub percent: u8,
    /// `rua=`: where aggregate reports go.
    pub aggregate_reports: Vec<ReportUri>,
    /// `ruf=`: where failure reports go.
    pub failure_reports: Vec<ReportUri>,
    /// `adkim=`.
    pub dkim_alignment: Alignment,
    /// `aspf=`.
    pub spf_alignment: Alignment,
    /// `fo=` options (`0`, `1`, `d`, `s`; default `0`).
    pub failure_options: Vec<String>,
    /// `rf=` formats (default `afrf`).
    pub report_formats: Vec<String>,
    /// `ri=`: requested aggregate report interval (default 86400).
    pub report_interval_secs: u32,
    /// Tags DMARC does not define (ignored by receivers; often typos).
    pub unknown_tags: Vec<String>,
    /// Tags with invalid values.
    pub problems: Vec<TagProblem>,
}

/// Why a TXT record is not a DMARC record at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmarcParseError {
    #[error("malformed tag-list: {0}")]
    TagList(#[from] TagListError),
    /// RFC 7489 6.3: the record must start with `v=DMARC1`.
    #[error("the record does not start with v=DMARC1")]
    NotDmarc,
    #[error("tag {0} appears more than once")]
    Duplicate(String),
}

/// Parses a DMARC record (the TXT record's strings joined).
pub fn parse_dmarc_record(text: &[u8]) -> Result<DmarcRecord, DmarcParseError> {
    let tags = parse_tag_list(text)?;
    match tags.first() {
        Some(t) if t.name.eq_ignore_ascii_case("v") && t.value == "DMARC1" => {}
        _ => return Err(DmarcParseError::NotDmarc),
    }
    let mut record = DmarcRecord {
        policy: None,
        subdomain_policy: None,
        percent: 100,
        aggregate_reports: Vec::new(),
        failure_reports: Vec::new(),
        dkim_alignment: Alignment::Relaxed,
        spf_alignment: Alignment::Relaxed,
        failure_options: vec!["0".to_owned()],
        report_formats: vec!["afrf".to_owned()],
        report_interval_secs: 86_400,
        unknown_tags: Vec::new(),
        problems: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    let mut policy_seen = false;
    for tag in &tags[1..] {
        let name = tag.name.to_ascii_lowercase();
        if seen.contains(&name) || name == "v" {
            return Err(DmarcParseError::Duplicate(name));
        }
        seen.push(name.clone());
        let value = tag.value.as_str();
        let mut problem = |reason: &str| {
            record.problems.push(TagProblem {
                tag: name.clone(),
                value: value.to_owned(),
                reason: reason.to_owned(),
            });
        };
        match name.as_str() {
            "p" => {
                policy_seen = true;
                match Policy::parse(value) {
                    Some(p) => record.policy = Some(p),
                    None => problem("must be none, quarantine or reject"),
                }
            }
            "sp" => match Policy::parse(value) {
                Some(p) => record.subdomain_policy = Some(p),
                None => problem("must be none, quarantine or reject"),
            },
            "pct" => match value.parse::<u8>() {
                Ok(n) if n <= 100 => record.percent = n,
                _ => problem("must be an integer from 0 to 100"),
            },
            "adkim" | "aspf" => {
                let mode = match value.to_ascii_lowercase().as_str() {
                    "r" => Alignment::Relaxed,
                    "s" => Alignment::Strict,
                    _ => {
                        problem("must be r (relaxed) or s (strict)");
                        continue;
                    }
                };
                if name == "adkim" {
                    record.dkim_alignment = mode;
                } else {
                    record.spf_alignment = mode;
                }
            }
            "rua" | "ruf" => {
                let mut uris = Vec::new();
                for part in value.split(',').map(str::trim) {
                    match parse_report_uri(part) {
                        Ok(uri) => uris.push(uri),
                        Err(reason) => problem(&format!("{part:?}: {reason}")),
                    }
                }
                if name == "rua" {
                    record.aggregate_reports = uris;
                } else {
                    record.failure_reports = uris;
                }
            }
            "fo" => {
                let options = colon_list(value);
                if options.is_empty()
                    || options
                        .iter()
                        .any(|o| !["0", "1", "d", "s"].contains(&o.as_str()))
                {
                    problem("must be a colon-separated list of 0, 1, d and s");
                } else {
                    record.failure_options = options;
                }
            }
            "rf" => {
                let formats = colon_list(value);
                if formats.is_empty() || formats.iter().any(|f| f != "afrf") {
                    problem("the only report format defined is afrf");
                } else {
                    record.report_formats = formats;
                }
            }
            "ri" => match value.parse::<u32>() {
                Ok(secs) => record.report_interval_secs = secs,
                Err(_) => problem("must be a number of seconds"),
            },
            _ => record.unknown_tags.push(tag.name.clone()),
        }
    }
    if !policy_seen {
        record.problems.push(TagProblem {
            tag: "p".to_owned(),
            value: String::new(),
            reason: "p= is required".to_owned(),
        });
    }
    Ok(record)
}

fn colon_list(value: &str) -> Vec<String> {
    value
        .split(':')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses one `rua=`/`ruf=` URI: `URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]`; `mailto:` URIs
/// must hold one `local@domain` mailbox. Returns the reason on failure.
pub fn parse_report_uri(text: &str) -> Result<ReportUri, String> {
    if text.is_empty() {
        return Err("empty URI".to_owned());
    }
    let (uri, max_size_bytes) = match text.rsplit_once('!') {
        Some((uri, size)) => (uri, Some(parse_size(size)?)),
        None => (text, None),
    };
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| "no scheme (expected mailto:)".to_owned())?;
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("invalid scheme {scheme:?}"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let (mut mailbox, mut domain) = (None, None);
    if scheme == "mailto" {
        let (address, host) = parse_mailto(rest)?;
        mailbox = Some(address);
        domain = Some(host);
    } else if rest.is_empty() {
        return Err("nothing after the scheme".to_owned());
    }
    Ok(ReportUri {
        uri: uri.to_owned(),
        scheme,
        mailbox,
        domain,
        max_size_bytes,
    })
}

/// The mailbox of what follows `mailto:` (headers after `?` dropped) and its domain in lower
/// case; returns the reason when it is not one `local@domain`.
pub(crate) fn parse_mailto(rest: &str) -> Result<(String, String), String> {
    let address = rest.split('?').next().unwrap_or_default();
    let (local, host) = address
        .rsplit_once('@')
        .ok_or_else(|| format!("{address:?} is not a mailbox (local@domain)"))?;
    if local.is_empty() || local.contains(|c: char| c.is_ascii_whitespace() || c == '@') {
        return Err(format!("invalid local part {local:?}"));
    }
    if !is_hostname(host) {
        return Err(format!("invalid domain {host:?}"));
    }
    Ok((address.to_owned(), normalise_name(host)))
}

fn parse_size(size: &str) -> Result<u64, String> {
    let bad = || format!("invalid size limit !{size} (digits, then k, m, g or t)");
    let (digits, shift) = match size.char_indices().last() {
        Some((i, 'k')) => (&size[..i], 10),
        Some((i, 'm')) => (&size[..i], 20),
        Some((i, 'g')) => (&size[..i], 30),
        Some((i, 't')) => (&size[..i], 40),
        _ => (size, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// A syntactically valid host name: letter-digit-hyphen labels (underscores tolerated), at least
/// two of them, at most 253 characters.
pub(crate) fn is_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Second-level public suffixes under which registrations happen at the third level. An
/// approximation of the Public Suffix List's ICANN section for the most common ccTLDs.
const SECOND_LEVEL_SUFFIXES: &[&str] = &[
    "ac.uk",
    "co.uk",
    "gov.uk",
    "ltd.uk",
    "me.uk",
    "net.uk",
    "nhs.uk",
    "org.uk",
    "plc.uk",
    "sch.uk",
    "asn.au",
    "com.au",
    "edu.au",
    "gov.au",
    "id.au",
    "net.au",
    "org.au",
    "ac.nz",
    "co.nz",
    "geek.nz",
    "govt.nz",
    "net.nz",
    "org.nz",
    "school.nz",
    "ac.jp",
    "co.jp",
    "go.jp",
    "ne.jp",
    "or.jp",
    "ac.za",
    "co.za",
    "gov.za",
    "net.za",
    "org.za",
    "com.br",
    "net.br",
    "org.br",
    "gov.br",
    "com.cn",
    "net.cn",
    "org.cn",
    "gov.cn",
    "edu.cn",
    "com.mx",
    "org.mx",
    "gob.mx",
    "co.in",
    "net.in",
    "org.in",
    "gov.in",
    "ac.in",
    "co.kr",
    "or.kr",
    "go.kr",
    "ac.kr",
    "com.tw",
    "org.tw",
    "gov.tw",
    "com.sg",
    "edu.sg",
    "gov.sg",
    "com.hk",
    "org.hk",
    "co.il",
    "org.il",
    "ac.il",
    "com.tr",
    "org.tr",
    "gov.tr",
    "com.ar",
    "gob.ar",
    "co.id",
    "or.id",
    "ac.id",
    "com.my",
    "org.my",
    "com.ph",
    "com.vn",
    "co.th",
    "ac.th",
    "in.th",
    "com.ua",
    "org.ua",
    "com.pl",
    "net.pl",
    "org.pl",
    "com.es",
    "org.es",
    "co.at",
    "or.at",
    "com.co",
    "com.pe",
    "com.sa",
    "com.eg",
    "com.ng",
    "co.ke",
];

/// The organisational domain of `domain` (RFC 7489 3.2), approximated: see the module
/// documentation for the limit. Lower case, no trailing dot.
pub fn organizational_domain(domain: &str) -> String {
    let domain = normalise_name(domain);
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() <= 2 {
        return domain;
    }
    let last_two = labels[labels.len() - 2..].join(".");
    let keep = if SECOND_LEVEL_SUFFIXES.contains(&last_two.as_str()) {
        3
    } else {
        2
    };
    labels[labels.len() - keep..].join(".")
}

/// Whether a report destination has authorized the policy domain (RFC 7489 7.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Authorization {
    /// In the policy domain's organisational domain: no authorization needed.
    SameOrganization,
    /// The destination publishes the `_report._dmarc` record.
    Authorized,
    /// No authorization record: receivers drop the reports.
    Missing,
    /// The lookup failed; unknown.
    LookupFailed(String),
}

/// One domain that receives reports for the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportDestination {
    pub domain: String,
    /// `<policy-domain>._report._dmarc.<destination>`, for external destinations.
    pub authorization_name: Option<String>,
    pub authorization: Authorization,
}

/// What [`check_dmarc`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmarcReport {
    pub domain: String,
    /// The name the policy was found at (`_dmarc.<domain>` or `_dmarc.<organisational domain>`).
    pub record_name: Option<String>,
    /// The policy is the organisational domain's (its `sp=` applies).
    pub inherited: bool,
    pub record: Option<DmarcRecord>,
    /// The policy that applies to mail from `domain` (`sp=` when inherited).
    pub effective_policy: Option<Policy>,
    /// The domains of `rua=`/`ruf=` mailboxes and whether they accept reports.
    pub destinations: Vec<ReportDestination>,
    /// The policy answer was DNSSEC-validated.
    pub authenticated: bool,
}

/// Finds, parses and lints the DMARC policy governing `domain`, checking the authorization of
/// external report destinations.
pub async fn check_dmarc<R: Resolve>(domain: &str, resolver: &R) -> (DmarcReport, Vec<Finding>) {
    let domain = normalise_name(domain);
    let mut report = DmarcReport {
        domain: domain.clone(),
        record_name: None,
        inherited: false,
        record: None,
        effective_policy: None,
        destinations: Vec::new(),
        authenticated: false,
    };
    let mut findings = Vec::new();
    let org = organizational_domain(&domain);
    let mut candidates = vec![domain.clone()];
    if org != domain {
        candidates.push(org);
    }
    let mut found = None;
    for policy_domain in candidates {
        let name = format!("_dmarc.{policy_domain}");
        match fetch_dmarc_records(resolver, &name).await {
            Err(reason) => {
                findings.push(Finding::lookup_failed(
                    CHECK,
                    &name,
                    RecordType::Txt,
                    &reason,
                ));
                return (report, findings);
            }
            Ok(fetched) if fetched.records.is_empty() => {}
            Ok(fetched) => {
                found = Some((policy_domain, name, fetched));
                break;
            }
        }
    }
    let Some((policy_domain, name, fetched)) = found else {
        findings.push(
            Finding::error(
                CHECK,
                "dmarc-missing",
                format!("no DMARC record at _dmarc.{domain} or its organisational domain"),
            )
            .with_fix(format!(
                "Start monitoring: {}",
                publish_txt_fix(
                    &format!("_dmarc.{domain}"),
                    &format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}")
                )
            )),
        );
        return (report, findings);
    };
    report.inherited = policy_domain != domain;
    report.record_name = Some(name.clone());
    report.authenticated = fetched.authenticated;
    for strings in &fetched.records {
        findings.extend(long_string_finding(CHECK, CHECK, &name, strings));
    }
    if fetched.records.len() > 1 {
        findings.push(
            Finding::error(
                CHECK,
                "dmarc-multiple",
                format!(
                    "{name} has {} DMARC records; receivers then apply no DMARC at all",
                    fetched.records.len()
                ),
            )
            .with_fix(format!("Merge them into one v=DMARC1 record at {name}")),
        );
        return (report, findings);
    }
    let record = match parse_dmarc_record(&fetched.records[0].concat()) {
        Ok(record) => record,
        Err(e) => {
            findings.push(
                Finding::error(
                    CHECK,
                    "dmarc-syntax",
                    format!("the DMARC record at {name} is invalid: {e}"),
                )
                .with_fix(publish_txt_fix(
                    &name,
                    &format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{policy_domain}"),
                )),
            );
            return (report, findings);
        }
    };
    if report.inherited {
        findings.push(Finding::info(
            CHECK,
            "dmarc-inherited",
            format!(
                "{domain} has no DMARC record of its own; the policy of {policy_domain} applies \
                 (its sp= if set)"
            ),
        ));
    }
    report.effective_policy = if report.inherited {
        record.subdomain_policy.or(record.policy)
    } else {
        record.policy
    };
    findings.extend(lint_dmarc_record(&name, &record, report.effective_policy));
    report.destinations =
        check_destinations(&policy_domain, &record, resolver, &mut findings).await;
    report.record = Some(record);
    (report, findings)
}

/// Lints a parsed record found at `name`; `effective` is the policy that applies to the checked
/// domain (see [`DmarcReport::effective_policy`]). External destinations are not checked here.
pub fn lint_dmarc_record(
    name: &str,
    record: &DmarcRecord,
    effective: Option<Policy>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for problem in &record.problems {
        let (code, message) = if problem.tag == "p" && record.policy.is_none() {
            let fallback = if record.aggregate_reports.is_empty() {
                "receivers apply no DMARC"
            } else {
                "receivers act as if p=none"
            };
            (
                "dmarc-policy-missing",
                format!(
                    "{name}: p= is missing or invalid ({}); {fallback}",
                    problem.reason
                ),
            )
        } else {
            (
                "dmarc-invalid-tag",
                format!(
                    "{name}: {}={} is ignored by receivers: {}",
                    problem.tag, problem.value, problem.reason
                ),
            )
        };
        findings.push(
            Finding::error(CHECK, code, message)
                .with_fix(format!("Correct {}= in the record at {name}", problem.tag)),
        );
    }
    for tag in &record.unknown_tags {
        findings.push(
            Finding::warning(
                CHECK,
                "dmarc-unknown-tag",
                format!("{name}: tag {tag}= is not DMARC and is ignored (a typo?)"),
            )
            .with_fix(format!("Remove {tag}= or correct its name")),
        );
    }
    match effective {
        Some(Policy::None) => findings.push(
            Finding::warning(
                CHECK,
                "dmarc-policy-none",
                format!("{name}: the policy is none: monitoring only, spoofed mail is delivered"),
            )
            .with_fix(
                "Once the rua reports show all legitimate mail passing, move to p=quarantine, \
                 then p=reject",
            ),
        ),
        Some(policy) => findings.push(Finding::ok(
            CHECK,
            "dmarc-policy-enforced",
            format!("{name}: failing mail is subject to p={}", policy.as_str()),
        )),
        None => {}
    }
    if let (Some(p), Some(sp)) = (record.policy, record.subdomain_policy)
        && sp < p
    {
        findings.push(
            Finding::warning(
                CHECK,
                "dmarc-subdomain-policy-weaker",
                format!(
                    "{name}: sp={} is weaker than p={}: subdomains can be spoofed more easily",
                    sp.as_str(),
                    p.as_str()
                ),
            )
            .with_fix(format!("Set sp={} or remove sp=", p.as_str())),
        );
    }
    if record.percent < 100 && effective.is_some_and(|p| p != Policy::None) {
        findings.push(
            Finding::warning(
                CHECK,
                "dmarc-pct-partial",
                format!(
                    "{name}: pct={} applies the policy to only part of the failing mail",
                    record.percent
                ),
            )
            .with_fix("Raise pct= step by step to 100 (or remove it)"),
        );
    }
    if record.aggregate_reports.is_empty() {
        findings.push(
            Finding::warning(
                CHECK,
                "dmarc-no-rua",
                format!("{name}: no rua=, so no aggregate reports show who sends as the domain"),
            )
            .with_fix("Add rua=mailto:<a mailbox that collects DMARC reports>"),
        );
    }
    for uri in record
        .aggregate_reports
        .iter()
        .chain(&record.failure_reports)
        .filter(|u| u.scheme != "mailto")
    {
        findings.push(
            Finding::warning(
                CHECK,
                "dmarc-uri-scheme",
                format!(
                    "{name}: {} is not mailto:; receivers send reports by mail only",
                    uri.uri
                ),
            )
            .with_fix("Use a mailto: URI"),
        );
    }
    findings.push(Finding::info(
        CHECK,
        "dmarc-alignment",
        format!(
            "{name}: DKIM alignment {} (adkim), SPF alignment {} (aspf)",
            record.dkim_alignment.describe(),
            record.spf_alignment.describe()
        ),
    ));
    findings
}

/// The TXT records at `name` that start with `v=DMARC1`.
struct DmarcRecords {
    records: Vec<Vec<Vec<u8>>>,
    authenticated: bool,
}

async fn fetch_dmarc_records<R: Resolve>(resolver: &R, name: &str) -> Result<DmarcRecords, String> {
    match lookup(resolver, name, RecordType::Txt).await {
        Lookup::Failed(reason) => Err(reason),
        Lookup::Empty { .. } => Ok(DmarcRecords {
            records: Vec::new(),
            authenticated: false,
        }),
        Lookup::Found(answer) => Ok(DmarcRecords {
            records: txt_records(&answer)
                .into_iter()
                .filter(|strings| leading_version(&strings.concat()) == Some("DMARC1"))
                .map(<[Vec<u8>]>::to_vec)
                .collect(),
            authenticated: answer.authenticated,
        }),
    }
}

/// Checks every report destination domain once (RFC 7489 7.1), adding findings.
async fn check_destinations<R: Resolve>(
    policy_domain: &str,
    record: &DmarcRecord,
    resolver: &R,
    findings: &mut Vec<Finding>,
) -> Vec<ReportDestination> {
    let policy_org = organizational_domain(policy_domain);
    let mut domains: Vec<&str> = record
        .aggregate_reports
        .iter()
        .chain(&record.failure_reports)
        .filter_map(|u| u.domain.as_deref())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let mut destinations = Vec::new();
    for domain in domains {
        if organizational_domain(domain) == policy_org {
            destinations.push(ReportDestination {
                domain: domain.to_owned(),
                authorization_name: None,
                authorization: Authorization::SameOrganization,
            });
            continue;
        }
        let name = format!("{policy_domain}._report._dmarc.{domain}");
        let authorization = match fetch_dmarc_records(resolver, &name).await {
            Err(reason) => {
                findings.push(Finding::lookup_failed(
                    CHECK,
                    &name,
                    RecordType::Txt,
                    &reason,
                ));
                Authorization::LookupFailed(reason)
            }
            Ok(fetched) if fetched.records.is_empty() => {
                findings.push(
                    Finding::error(
                        CHECK,
                        "dmarc-external-unauthorized",
                        format!(
                            "reports for {policy_domain} go to {domain}, which has not authorized \
                             them ({name} has no v=DMARC1 record): receivers drop these reports"
                        ),
                    )
                    .with_fix(format!(
                        "Ask the operator of {domain} to publish {} (or use a mailbox in \
                         {policy_org})",
                        publish_txt_fix(&name, "v=DMARC1")
                    )),
                );
                Authorization::Missing
            }
            Ok(_) => {
                findings.push(Finding::ok(
                    CHECK,
                    "dmarc-external-authorized",
                    format!("{domain} accepts reports for {policy_domain} ({name})"),
                ));
                Authorization::Authorized
            }
        };
        destinations.push(ReportDestination {
            domain: domain.to_owned(),
            authorization_name: Some(name),
            authorization,
        });
    }
    destinations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisational_domains_use_the_built_in_suffixes() {
        assert_eq!(organizational_domain("mail.Example.COM."), "example.com");
        assert_eq!(organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(
            organizational_domain("shop.example.com.au"),
            "example.com.au"
        );
        assert_eq!(organizational_domain("example.com"), "example.com");
        assert_eq!(organizational_domain("com"), "com");
    }

    #[test]
    fn report_uris_with_sizes() {
        let uri = parse_report_uri("mailto:Reports@Example.NET!10m").unwrap();
        assert_eq!(uri.mailbox.as_deref(), Some("Reports@Example.NET"));
        assert_eq!(uri.domain.as_deref(), Some("example.net"));
        assert_eq!(uri.max_size_bytes, Some(10 << 20));
        assert!(parse_report_uri("mailto:reports@example.net!x").is_err());
        assert!(parse_report_uri("mailto:example.net").is_err());
        assert!(parse_report_uri("reports@example.net").is_err());
        assert!(parse_report_uri("mailto:a@b!99999999999999999999t").is_err());
        assert_eq!(
            parse_report_uri("https://r.example/dmarc").unwrap().scheme,
            "https"
        );
    }

    #[test]
    fn records_parse_with_defaults_and_keep_invalid_values_as_problems() {
        let r = parse_dmarc_record(b"v=DMARC1; p=reject; rua=mailto:a@example.com").unwrap();
        assert_eq!(r.policy, Some(Policy::Reject));
        assert_eq!((r.percent, r.report_interval_secs), (100, 86_400));
        assert_eq!(r.dkim_alignment, Alignment::Relaxed);
        assert!(r.problems.is_empty());
        let r = parse_dmarc_record(
            b"v=DMARC1; p=rejectt; sp=none; pct=150; adkim=x; aspf=s; fo=2; ri=soon; foo=bar",
        )
        .unwrap();
        assert_eq!(r.policy, None);
        assert_eq!(r.subdomain_policy, Some(Policy::None));
        assert_eq!(r.spf_alignment, Alignment::Strict);
        let bad: Vec<&str> = r.problems.iter().map(|p| p.tag.as_str()).collect();
        assert_eq!(bad, ["p", "pct", "adkim", "fo", "ri"]);
        assert_eq!(r.unknown_tags, ["foo"]);
        assert_eq!(
            parse_dmarc_record(b"p=none; v=DMARC1"),
            Err(DmarcParseError::NotDmarc)
        );
        assert_eq!(
            parse_dmarc_record(b"v=DMARC1; p=none; P=reject"),
            Err(DmarcParseError::Duplicate("p".into()))
        );
        let missing = parse_dmarc_record(b"v=DMARC1; rua=mailto:a@example.com").unwrap();
        assert_eq!(missing.problems[0].tag, "p");
    }
}
