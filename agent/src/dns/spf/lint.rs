//! An SPF policy linter: walks a domain's record and everything it includes or redirects to,
//! and reports what will break evaluation or is likely to (RFC 7208 limits, failing includes,
//! over-permissive `all`, oversized records).
//!
//! Unlike [`check_host`](super::check_host) the linter has no client: it follows every include
//! (not only until a match), counts the DNS lookups a full evaluation costs, and looks up
//! macro-free `a`/`mx`/`exists` targets to find void lookups. Targets with macros depend on the
//! sender and are not followed.
//!
//! Invariants: the walk is bounded ([`MAX_RECORDS`] records, [`MAX_DEPTH`] levels, each record
//! walked once, include loops cut), so a hostile zone cannot keep it busy; findings are sorted
//! errors first and each carries a stable `code` and a `fix`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::eval::{BoxFuture, MAX_DNS_TERMS, MAX_MX_NAMES, MAX_VOID_LOOKUPS, networks_overlap};
use super::macros::{MacroString, query_name};
use super::record::{Mechanism, Modifier, Qualifier, SpfRecord, TermKind};
use crate::dns::finding::{Finding, Lookup, Severity, lookup};
use crate::dns::{RData, RecordType, Resolve, normalise_name};

/// The `check` of the findings.
const CHECK: &str = "spf";
/// Most records fetched by one lint.
pub const MAX_RECORDS: usize = 64;
/// Deepest include/redirect nesting followed.
pub const MAX_DEPTH: usize = 12;
/// Lookup counts from this on get a warning.
pub const LOOKUPS_WARN_AT: u32 = 8;
/// Records longer than this may not fit a 512-byte UDP answer with the rest of the response.
pub const RECORD_WARN_BYTES: usize = 450;
/// Longest character-string of a TXT record.
pub const TXT_STRING_MAX_BYTES: usize = 255;

/// Lints `domain`'s SPF policy; see the module documentation.
pub async fn lint<R: Resolve>(domain: &str, resolver: &R) -> Vec<Finding> {
    let domain = normalise_name(domain);
    let mut linter = Linter {
        resolver,
        findings: Vec::new(),
        summaries: HashMap::new(),
        included: HashSet::new(),
        records_walked: 0,
        truncated: false,
    };
    let mut stack = Vec::new();
    let summary = linter.walk(domain.clone(), &mut stack, true).await;
    linter.report_top(&domain, &summary);
    let mut findings = linter.findings;
    findings.sort_by_key(|f| f.severity);
    findings
}

/// What a walked record adds up to.
#[derive(Debug, Clone, Default)]
struct Summary {
    status: Status,
    /// DNS-querying terms of the record and everything under it.
    lookups: u32,
    void_lookups: u32,
    /// ip4/ip6 networks of the record and everything under it.
    networks: Vec<(IpAddr, u8)>,
}

/// Why a record could (not) be walked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Status {
    #[default]
    Ok,
    NxDomain,
    NoRecord,
    DnsError(String),
    /// Multiple records, non-ASCII or a syntax error: a permerror (already reported).
    Broken(String),
    /// The domain is already being walked further up.
    Loop,
    /// Past the walk's bounds.
    NotWalked,
}

struct Linter<'r, R> {
    resolver: &'r R,
    findings: Vec<Finding>,
    /// Records walked, by domain: each is walked once.
    summaries: HashMap<String, Summary>,
    /// Every include target seen so far.
    included: HashSet<String>,
    records_walked: usize,
    truncated: bool,
}

impl<'r, R: Resolve> Linter<'r, R> {
    fn note(
        &mut self,
        severity: Severity,
        code: &'static str,
        domain: &str,
        message: String,
        fix: &str,
    ) {
        self.findings.push(
            Finding::new(severity, CHECK, code, format!("{domain}: {message}")).with_fix(fix),
        );
    }

    /// Fetches, checks and analyses `domain`'s record.
    fn walk<'a>(
        &'a mut self,
        domain: String,
        stack: &'a mut Vec<String>,
        top: bool,
    ) -> BoxFuture<'a, Summary> {
        Box::pin(async move {
            if stack.contains(&domain) {
                return Summary {
                    status: Status::Loop,
                    ..Summary::default()
                };
            }
            if let Some(summary) = self.summaries.get(&domain) {
                return summary.clone();
            }
            if self.records_walked >= MAX_RECORDS || stack.len() >= MAX_DEPTH {
                self.truncated = true;
                return Summary {
                    status: Status::NotWalked,
                    ..Summary::default()
                };
            }
            self.records_walked += 1;
            let summary = match self.fetch_record(&domain).await {
                Ok(record) => {
                    stack.push(domain.clone());
                    let summary = self.analyse(&domain, &record, stack, top).await;
                    stack.pop();
                    summary
                }
                Err(status) => Summary {
                    status,
                    ..Summary::default()
                },
            };
            self.summaries.insert(domain, summary.clone());
            summary
        })
    }

    /// The record, after checks of count, size, encoding and syntax (reported here).
    async fn fetch_record(&mut self, domain: &str) -> Result<SpfRecord, Status> {
        let answer = match lookup(self.resolver, domain, RecordType::Txt).await {
            Lookup::Found(answer) => answer,
            Lookup::Empty { nxdomain: true } => return Err(Status::NxDomain),
            Lookup::Empty { nxdomain: false } => return Err(Status::NoRecord),
            Lookup::Failed(why) => return Err(Status::DnsError(why)),
        };
        let spf: Vec<&Vec<Vec<u8>>> = answer
            .data()
            .filter_map(|d| match d {
                RData::Txt(parts) => Some(parts),
                _ => None,
            })
            .filter(|parts| SpfRecord::is_spf(&parts.concat()))
            .collect();
        let parts = match spf.as_slice() {
            [] => return Err(Status::NoRecord),
            [one] => *one,
            many => {
                self.note(
                    Severity::Error,
                    "spf-multiple-records",
                    domain,
                    format!(
                        "{} SPF records published: evaluation is a permerror",
                        many.len()
                    ),
                    "Merge them into one TXT record starting with v=spf1.",
                );
                return Err(Status::Broken(format!(
                    "{domain} publishes {} SPF records",
                    many.len()
                )));
            }
        };
        if let Some(long) = parts.iter().find(|p| p.len() > TXT_STRING_MAX_BYTES) {
            self.note(
                Severity::Error,
                "spf-string-too-long",
                domain,
                format!(
                    "a character-string of the SPF record is {} bytes (DNS allows {TXT_STRING_MAX_BYTES})",
                    long.len()
                ),
                "Split the record into several quoted strings of at most 255 bytes each; they are \
                 joined without spaces, so break between terms or keep the space inside a string.",
            );
        }
        let joined = parts.concat();
        if joined.len() > RECORD_WARN_BYTES {
            self.note(
                Severity::Warning,
                "spf-record-too-long",
                domain,
                format!(
                    "the SPF record is {} bytes (over {RECORD_WARN_BYTES}, answers may need TCP)",
                    joined.len()
                ),
                "Shorten it: merge ip4 ranges into CIDR blocks or move parts into an include.",
            );
        }
        let text = match String::from_utf8(joined) {
            Ok(text) if text.is_ascii() => text,
            _ => {
                self.note(
                    Severity::Error,
                    "spf-non-ascii",
                    domain,
                    "the SPF record has non-ASCII characters: evaluation is a permerror".into(),
                    "Remove them (often a byte-order mark or typographic quote pasted with the record).",
                );
                return Err(Status::Broken(format!(
                    "the SPF record of {domain} has non-ASCII characters"
                )));
            }
        };
        SpfRecord::parse(&text).map_err(|e| {
            self.note(
                Severity::Error,
                "spf-syntax",
                domain,
                format!("syntax error in the SPF record, {e}: evaluation is a permerror"),
                "Fix the term: see RFC 7208 section 5 for mechanism syntax.",
            );
            Status::Broken(format!("syntax error in the SPF record of {domain}, {e}"))
        })
    }

    /// Counts, follows and judges the terms of one record.
    async fn analyse(
        &mut self,
        domain: &str,
        record: &SpfRecord,
        stack: &mut Vec<String>,
        top: bool,
    ) -> Summary {
        let mut summary = Summary::default();
        let mut includes: Vec<(String, Vec<(IpAddr, u8)>)> = Vec::new();
        let mut has_all = false;
        for term in &record.terms {
            let directive = match &term.kind {
                TermKind::Directive(d) => d,
                TermKind::Modifier(Modifier::Unknown { name, .. }) => {
                    self.note(
                        Severity::Info,
                        "spf-unknown-modifier",
                        domain,
                        format!("unknown modifier {name}= is ignored by evaluators"),
                        "Remove it unless a tool of yours reads it.",
                    );
                    continue;
                }
                TermKind::Modifier(_) => continue,
            };
            if directive.mechanism.queries_dns() {
                summary.lookups += 1;
            }
            match &directive.mechanism {
                Mechanism::All => {
                    has_all = true;
                    self.judge_all(domain, directive.qualifier, top);
                }
                Mechanism::Ip4 {
                    network,
                    prefix_len,
                } => summary.networks.push((IpAddr::V4(*network), *prefix_len)),
                Mechanism::Ip6 {
                    network,
                    prefix_len,
                } => summary.networks.push((IpAddr::V6(*network), *prefix_len)),
                Mechanism::Ptr(_) => self.note(
                    Severity::Warning,
                    "spf-ptr-deprecated",
                    domain,
                    format!("{} uses ptr, which RFC 7208 says not to use", term.text),
                    "Replace it with ip4/ip6 ranges or a:/mx: of the sending hosts.",
                ),
                Mechanism::A { domain: spec, .. } => {
                    if self
                        .is_void(
                            domain,
                            spec.as_ref(),
                            &term.text,
                            &[RecordType::A, RecordType::Aaaa],
                        )
                        .await
                    {
                        summary.void_lookups += 1;
                    }
                }
                Mechanism::Exists(spec) => {
                    if self
                        .is_void(domain, Some(spec), &term.text, &[RecordType::A])
                        .await
                    {
                        summary.void_lookups += 1;
                    }
                }
                Mechanism::Mx { domain: spec, .. } => {
                    if self
                        .is_void(domain, spec.as_ref(), &term.text, &[RecordType::Mx])
                        .await
                    {
                        summary.void_lookups += 1;
                    }
                }
                Mechanism::Include(spec) => {
                    let Some(target) = self.followable(domain, spec, &term.text) else {
                        continue;
                    };
                    if includes.iter().any(|(t, _)| *t == target) || self.included.contains(&target)
                    {
                        self.note(
                            Severity::Warning,
                            "spf-duplicate-include",
                            domain,
                            format!("include:{target} is included more than once in the policy"),
                            "Keep one include of it: every copy costs DNS lookups again.",
                        );
                    }
                    self.included.insert(target.clone());
                    let child = self.walk(target.clone(), stack, false).await;
                    self.report_target(domain, "include", &target, &child);
                    summary.lookups += child.lookups;
                    summary.void_lookups += child.void_lookups;
                    summary.networks.extend(child.networks.iter().copied());
                    self.note(
                        Severity::Info,
                        "spf-include-lookups",
                        domain,
                        format!(
                            "include:{target} costs {} DNS lookup(s), itself included",
                            child.lookups + 1
                        ),
                        "Nothing to do; large includes are candidates for flattening.",
                    );
                    includes.push((target, child.networks));
                }
            }
        }
        self.report_overlaps(domain, &includes);
        if let Some(spec) = record.redirect() {
            if has_all {
                self.note(
                    Severity::Warning,
                    "spf-redirect-ignored",
                    domain,
                    format!("redirect={spec} is ignored because the record has an all mechanism"),
                    "Remove either the redirect or the all.",
                );
            } else {
                summary.lookups += 1;
                if let Some(target) = self.followable(domain, spec, &format!("redirect={spec}")) {
                    let child = self.walk(target.clone(), stack, top).await;
                    self.report_target(domain, "redirect", &target, &child);
                    summary.lookups += child.lookups;
                    summary.void_lookups += child.void_lookups;
                    summary.networks.extend(child.networks);
                    if top {
                        self.note(
                            Severity::Info,
                            "spf-redirect",
                            domain,
                            format!("the policy is {target}'s (redirect=)"),
                            "Nothing to do.",
                        );
                    }
                }
            }
        } else if top && !has_all {
            self.note(
                Severity::Warning,
                "spf-no-all",
                domain,
                "the record has no all mechanism and no redirect: unmatched clients get neutral"
                    .into(),
                "End the record with -all (or ~all while rolling out).",
            );
        }
        summary
    }

    /// `+all` authorises everyone; `?all` says nothing.
    fn judge_all(&mut self, domain: &str, qualifier: Qualifier, top: bool) {
        match qualifier {
            Qualifier::Pass => self.note(
                Severity::Error,
                "spf-plus-all",
                domain,
                if top {
                    "+all authorises every host on the Internet to send as this domain".into()
                } else {
                    "the record ends in +all: every policy including it authorises everyone".into()
                },
                "Use -all (or ~all) and list the real senders.",
            ),
            Qualifier::Neutral if top => self.note(
                Severity::Warning,
                "spf-neutral-all",
                domain,
                "?all gives unlisted hosts neutral: receivers treat them as having no policy"
                    .into(),
                "Use ~all or -all once the listed senders are complete.",
            ),
            _ => {}
        }
    }

    /// The target name of an include or redirect, when it can be followed.
    fn followable(&mut self, domain: &str, spec: &MacroString, term: &str) -> Option<String> {
        let Some(text) = spec.literal_text() else {
            self.note(
                Severity::Info,
                "spf-macro-target",
                domain,
                format!("{term} depends on the sender (macros); not followed"),
                "Nothing to do; its lookups are not counted here.",
            );
            return None;
        };
        let target = query_name(&text).map(|t| normalise_name(&t));
        if target.is_none() {
            self.note(
                Severity::Error,
                "spf-invalid-target",
                domain,
                format!("{term} is not a valid DNS name (empty or over-long label)"),
                "Fix the domain name.",
            );
        }
        target
    }

    /// Reports what is wrong with an include's or redirect's target.
    fn report_target(&mut self, domain: &str, via: &str, target: &str, child: &Summary) {
        let (severity, code, what, fix) = match (&child.status, via) {
            (Status::Ok | Status::NotWalked, _) => return,
            (Status::Loop, _) => (
                Severity::Error,
                "spf-include-loop",
                "leads back to a record that includes it (a loop)".to_owned(),
                "Remove the include or redirect that closes the loop.",
            ),
            (Status::NxDomain, "include") => (
                Severity::Error,
                "spf-include-nxdomain",
                "does not exist (NXDOMAIN): evaluation is a permerror".to_owned(),
                "Remove the include or fix the name; vendors rename their SPF hosts.",
            ),
            (Status::NoRecord, "include") => (
                Severity::Error,
                "spf-include-no-record",
                "has no SPF record: evaluation is a permerror".to_owned(),
                "Remove the include or fix the name.",
            ),
            (Status::Broken(why), "include") => (
                Severity::Error,
                "spf-include-permerror",
                format!("is broken ({why})"),
                "Ask the owner of the included domain to fix it, or remove the include.",
            ),
            (Status::DnsError(why), "include") => (
                Severity::Warning,
                "spf-include-temperror",
                format!("could not be fetched ({why}): evaluation would be a temperror"),
                "Check the include's name servers; retry later.",
            ),
            (Status::NxDomain, _) => (
                Severity::Error,
                "spf-redirect-nxdomain",
                "does not exist (NXDOMAIN): evaluation is a permerror".to_owned(),
                "Fix the redirect target.",
            ),
            (Status::NoRecord, _) => (
                Severity::Error,
                "spf-redirect-no-record",
                "has no SPF record: evaluation is a permerror".to_owned(),
                "Fix the redirect target.",
            ),
            (Status::Broken(why), _) => (
                Severity::Error,
                "spf-redirect-permerror",
                format!("is broken ({why})"),
                "Fix the redirect target's record.",
            ),
            (Status::DnsError(why), _) => (
                Severity::Warning,
                "spf-redirect-temperror",
                format!("could not be fetched ({why}): evaluation would be a temperror"),
                "Check the target's name servers; retry later.",
            ),
        };
        self.note(
            severity,
            code,
            domain,
            format!("{via} target {target} {what}"),
            fix,
        );
    }

    /// Includes whose address ranges overlap another include's of the same record.
    fn report_overlaps(&mut self, domain: &str, includes: &[(String, Vec<(IpAddr, u8)>)]) {
        for (i, (a, nets_a)) in includes.iter().enumerate() {
            for (b, nets_b) in &includes[i + 1..] {
                if a == b {
                    continue;
                }
                let overlap = nets_a.iter().find_map(|x| {
                    nets_b
                        .iter()
                        .find(|y| networks_overlap(*x, **y))
                        .map(|y| (x, y))
                });
                if let Some(((ip_a, len_a), (ip_b, len_b))) = overlap {
                    self.note(
                        Severity::Warning,
                        "spf-overlapping-includes",
                        domain,
                        format!(
                            "include:{a} ({ip_a}/{len_a}) and include:{b} ({ip_b}/{len_b}) authorise overlapping addresses"
                        ),
                        "Check whether one include already covers the other's senders and drop it.",
                    );
                }
            }
        }
    }

    /// Whether a macro-free `a`/`mx`/`exists` target returns nothing for all `types` (a void
    /// lookup); reports it.
    async fn is_void(
        &mut self,
        domain: &str,
        spec: Option<&MacroString>,
        term: &str,
        types: &[RecordType],
    ) -> bool {
        let target = match spec.map(MacroString::literal_text) {
            None => domain.to_owned(),
            Some(Some(text)) => match query_name(&text) {
                Some(t) => t,
                None => return false,
            },
            Some(None) => return false,
        };
        let mut found = 0usize;
        for rtype in types {
            match lookup(self.resolver, &target, *rtype).await {
                Lookup::Found(answer) => {
                    found += answer.data().filter(|d| d.record_type() == *rtype).count();
                }
                Lookup::Empty { .. } => {}
                Lookup::Failed(why) => {
                    self.lookup_failed(domain, term, &target, &why);
                    return false;
                }
            }
        }
        if types == [RecordType::Mx] && found > MAX_MX_NAMES {
            self.note(
                Severity::Error,
                "spf-mx-too-many",
                domain,
                format!("{term}: {target} has {found} MX records; more than {MAX_MX_NAMES} is a permerror"),
                "List the mail hosts with ip4/ip6 or a: instead of mx.",
            );
        }
        if found > 0 {
            return false;
        }
        self.note(
            Severity::Warning,
            "spf-void-lookup",
            domain,
            format!("{term}: {target} has no {} records (a void lookup)", type_names(types)),
            "Remove the term or fix the name: more than two void lookups make evaluation a permerror.",
        );
        true
    }

    fn lookup_failed(&mut self, domain: &str, term: &str, target: &str, why: &str) {
        self.note(
            Severity::Warning,
            "spf-lookup-failed",
            domain,
            format!("{term}: looking up {target} failed ({why}): evaluation would be a temperror"),
            "Check the name servers of the target.",
        );
    }

    /// Findings about the whole policy.
    fn report_top(&mut self, domain: &str, summary: &Summary) {
        match &summary.status {
            Status::NxDomain => self.note(
                Severity::Error,
                "spf-no-record",
                domain,
                "the domain does not exist (NXDOMAIN)".into(),
                "Check the domain name.",
            ),
            Status::NoRecord => self.note(
                Severity::Error,
                "spf-no-record",
                domain,
                "no SPF record: receivers get none".into(),
                "Publish a TXT record such as \"v=spf1 mx -all\" (or \"v=spf1 -all\" for a domain that sends no mail).",
            ),
            Status::DnsError(why) => self.note(
                Severity::Error,
                "spf-dns-error",
                domain,
                format!("the TXT lookup failed ({why}): receivers get temperror"),
                "Check the domain's name servers.",
            ),
            _ => {}
        }
        if summary.status == Status::Ok {
            let n = summary.lookups;
            self.note(
                Severity::Info,
                "spf-lookup-count",
                domain,
                format!("evaluation costs {n} of {MAX_DNS_TERMS} allowed DNS lookups"),
                "Nothing to do.",
            );
            if n > MAX_DNS_TERMS {
                self.note(
                    Severity::Error,
                    "spf-lookup-limit-exceeded",
                    domain,
                    format!("{n} DNS lookups, over the limit of {MAX_DNS_TERMS}: evaluation is a permerror for senders not matched early"),
                    "Remove unused includes, replace a/mx with ip4/ip6, or flatten large includes.",
                );
            } else if n >= LOOKUPS_WARN_AT {
                self.note(
                    Severity::Warning,
                    "spf-lookup-limit-near",
                    domain,
                    format!("{n} DNS lookups, close to the limit of {MAX_DNS_TERMS}: one more vendor include may break the policy"),
                    "Remove unused includes or replace a/mx with ip4/ip6.",
                );
            }
            if summary.void_lookups > MAX_VOID_LOOKUPS {
                self.note(
                    Severity::Error,
                    "spf-void-limit-exceeded",
                    domain,
                    format!("{} void lookups, over the limit of {MAX_VOID_LOOKUPS}: evaluation is a permerror", summary.void_lookups),
                    "Remove the terms that point at names without records.",
                );
            }
        }
        if self.truncated {
            self.note(
                Severity::Info,
                "spf-walk-truncated",
                domain,
                format!("the include tree is larger than {MAX_RECORDS} records or deeper than {MAX_DEPTH}; the rest was not followed"),
                "Simplify the policy.",
            );
        }
    }
}

fn type_names(types: &[RecordType]) -> String {
    types.iter().map(|t| t.name()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::MemoryZone;

    fn codes(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(|f| f.code.clone()).collect()
    }

    #[tokio::test]
    async fn counts_nested_lookups_and_finds_broken_includes() {
        let mut z = MemoryZone::new();
        z.add_txt(
            "example.com",
            "v=spf1 mx a include:_spf.vendor.example include:gone.example include:bare.example \
             include:_spf.vendor.example include:other.example ptr ?all",
        )
        .add_txt("other.example", "v=spf1 ip4:192.0.2.200 -all")
        .add_txt(
            "_spf.vendor.example",
            "v=spf1 include:_n1.vendor.example include:_n2.vendor.example ~all",
        )
        .add_txt("_n1.vendor.example", "v=spf1 ip4:192.0.2.0/24 -all")
        .add_txt("_n2.vendor.example", "v=spf1 ip4:192.0.2.128/25 -all")
        .add("bare.example", RData::A(Ipv4Addr::new(192, 0, 2, 9)))
        .add("example.com", RData::A(Ipv4Addr::new(198, 51, 100, 1)))
        .add(
            "example.com",
            RData::Mx {
                preference: 10,
                exchange: "mx.example.com".into(),
            },
        );
        let findings = lint("example.com", &z).await;
        let c = codes(&findings);
        for want in [
            "spf-include-nxdomain",
            "spf-include-no-record",
            "spf-duplicate-include",
            "spf-ptr-deprecated",
            "spf-neutral-all",
            "spf-overlapping-includes",
            "spf-lookup-limit-exceeded",
            "spf-lookup-count",
            "spf-include-lookups",
        ] {
            assert!(c.contains(&want.to_owned()), "expected {want} in {c:?}");
        }
        let count = findings
            .iter()
            .find(|f| f.code == "spf-lookup-count")
            .unwrap();
        // mx + a + 2 × vendor (itself + 2 nested) + gone + bare + other + ptr.
        assert!(
            count.message.contains(": evaluation costs 12 "),
            "{}",
            count.message
        );
        assert_eq!(findings[0].severity, Severity::Error, "errors first");
    }

    #[tokio::test]
    async fn eight_lookups_warn() {
        let mut z = MemoryZone::new();
        z.add_txt(
            "near.example",
            "v=spf1 a a a a mx mx mx include:inc.example -all",
        )
        .add_txt("inc.example", "v=spf1 ip4:192.0.2.1 -all")
        .add("near.example", RData::A(Ipv4Addr::new(192, 0, 2, 2)))
        .add(
            "near.example",
            RData::Mx {
                preference: 0,
                exchange: "near.example".into(),
            },
        );
        let c = codes(&lint("near.example", &z).await);
        assert!(c.contains(&"spf-lookup-limit-near".to_owned()), "{c:?}");
        assert!(
            !c.contains(&"spf-lookup-limit-exceeded".to_owned()),
            "{c:?}"
        );
    }

    #[tokio::test]
    async fn plus_all_missing_all_sizes_and_syntax() {
        let mut z = MemoryZone::new();
        z.add_txt("open.example", "v=spf1 +all")
            .add_txt("noall.example", "v=spf1 ip4:192.0.2.1")
            .add_txt("bad.example", "v=spf1 ip4:192.0.2.1 -all moo")
            .add_txt("two.example", "v=spf1 -all")
            .add_txt("two.example", "v=spf1 ~all");
        let long = format!("v=spf1 {}-all", "ip4:192.0.2.1 ".repeat(40));
        z.add("long.example", RData::Txt(vec![long.into_bytes()]));
        assert!(codes(&lint("open.example", &z).await).contains(&"spf-plus-all".to_owned()));
        assert!(codes(&lint("noall.example", &z).await).contains(&"spf-no-all".to_owned()));
        assert!(codes(&lint("bad.example", &z).await).contains(&"spf-syntax".to_owned()));
        assert!(codes(&lint("two.example", &z).await).contains(&"spf-multiple-records".to_owned()));
        assert!(codes(&lint("none.example", &z).await).contains(&"spf-no-record".to_owned()));
        let c = codes(&lint("long.example", &z).await);
        assert!(
            c.contains(&"spf-record-too-long".to_owned())
                && c.contains(&"spf-string-too-long".to_owned()),
            "{c:?}"
        );
    }

    #[tokio::test]
    async fn void_lookups_and_loops() {
        let mut z = MemoryZone::new();
        z.add_txt(
            "void.example",
            "v=spf1 a:nx1.void.example a:nx2.void.example mx:nx3.void.example include:loop1.example -all",
        )
        .add_txt("loop1.example", "v=spf1 include:loop2.example -all")
        .add_txt("loop2.example", "v=spf1 include:loop1.example -all");
        let c = codes(&lint("void.example", &z).await);
        assert!(c.contains(&"spf-void-lookup".to_owned()), "{c:?}");
        assert!(c.contains(&"spf-void-limit-exceeded".to_owned()), "{c:?}");
        assert!(c.contains(&"spf-include-loop".to_owned()), "{c:?}");
    }
}
