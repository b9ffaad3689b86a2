//! `check_host()` of RFC 7208 sections 4 to 6: evaluates a domain's SPF policy for a client.
//!
//! One `Evaluator` lives for one check: it owns the counters that RFC 7208 section 4.6.4 puts
//! on the whole evaluation (10 DNS-querying terms across includes and redirects, 2 void
//! lookups), the cached validated name for `%{p}` and the trace of lookups. `include` and
//! `redirect` recurse through a boxed future; the term limit bounds the depth to 10.
//!
//! DNS outcomes map to results as the RFC says: a record lookup that times out or gets an rcode
//! other than NOERROR/NXDOMAIN is a temperror, as is a failed lookup of `a`, `mx` or `exists`; the
//! `ptr` mechanism and `%{p}` skip what fails (section 5.5); an `exp=` that cannot be fetched is
//! ignored (section 6.2). A name that cannot be queried (empty or over-long label) is treated as
//! one that does not exist.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::macros::{MacroLetter, MacroString, MacroSyntax, MacroVars, query_name};
use super::record::{DualCidr, Mechanism, Qualifier, SpfRecord, TermKind};
use crate::dns::{LookupError, RData, Rcode, RecordType, Resolve, normalise_name};

/// Most DNS-querying terms (include, a, mx, ptr, exists, redirect) per check.
pub const MAX_DNS_TERMS: u32 = 10;
/// Most lookups that return no records (NODATA or NXDOMAIN) per check.
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// Most MX names one `mx` mechanism may look up; more is a permerror.
pub const MAX_MX_NAMES: usize = 10;
/// Most PTR names one `ptr` mechanism (or `%{p}`) validates; the rest are ignored.
pub const MAX_PTR_NAMES: usize = 10;

/// The result of a check (RFC 7208 section 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No SPF record, or the domain is not a usable domain name.
    None,
    /// The policy says nothing about the client (`?`, or no term matched).
    Neutral,
    /// The client is authorised (`+`).
    Pass,
    /// The client is not authorised (`-`).
    Fail,
    /// Probably not authorised (`~`).
    SoftFail,
    /// A transient DNS failure.
    TempError,
    /// The published policy is broken (syntax, limits, missing include target).
    PermError,
}

impl Verdict {
    /// The RFC's lower-case name (`pass`, `softfail`, `permerror`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Neutral => "neutral",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::SoftFail => "softfail",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Qualifier> for Verdict {
    fn from(q: Qualifier) -> Self {
        match q {
            Qualifier::Pass => Self::Pass,
            Qualifier::Fail => Self::Fail,
            Qualifier::SoftFail => Self::SoftFail,
            Qualifier::Neutral => Self::Neutral,
        }
    }
}

/// What [`check_host`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpfResult {
    /// The result.
    pub verdict: Verdict,
    /// The domain's explanation (`exp=`), for a fail, when it could be fetched.
    pub explanation: Option<String>,
    /// Why the verdict is none, permerror or temperror, in words.
    pub problem: Option<String>,
    /// DNS-querying terms evaluated (the limit is [`MAX_DNS_TERMS`]).
    pub dns_terms: u32,
    /// Void lookups seen (the limit is [`MAX_VOID_LOOKUPS`]).
    pub void_lookups: u32,
    /// Every DNS lookup made, in order.
    pub trace: Vec<LookupTrace>,
}

/// One lookup of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookupTrace {
    /// The domain whose record was being evaluated.
    pub domain: String,
    /// Why: `record`, the term (`include:…`, `mx`), `exp=…` or `%{p}`.
    pub purpose: String,
    /// The name asked.
    pub name: String,
    /// The type asked.
    pub rtype: RecordType,
    /// How it ended.
    pub outcome: LookupOutcome,
}

/// How a traced lookup ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupOutcome {
    /// NOERROR with this many records of the asked type.
    Records(usize),
    /// NOERROR without records of the asked type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Another rcode.
    Rcode(Rcode),
    /// No answer (timeout, transport or protocol error).
    Failed(String),
}

/// Settings of a check beyond its inputs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The receiving host's domain, for `%{r}` in explanations.
    pub receiver: String,
    /// The time for `%{t}`; now when `None`.
    pub timestamp_secs: Option<u64>,
    /// DNS-querying terms allowed ([`MAX_DNS_TERMS`] by default).
    pub max_dns_terms: u32,
    /// Void lookups allowed ([`MAX_VOID_LOOKUPS`] by default).
    pub max_void_lookups: u32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            receiver: "unknown".into(),
            timestamp_secs: None,
            max_dns_terms: MAX_DNS_TERMS,
            max_void_lookups: MAX_VOID_LOOKUPS,
        }
    }
}

/// The domain SPF checks for an SMTP transaction (RFC 7208 sections 2.3 and 2.4): the part
/// after the last `@` of the MAIL FROM address, or the HELO name when MAIL FROM is empty (a
/// bounce), or the whole MAIL FROM when it has no `@`.
pub fn sender_domain<'a>(mail_from: &'a str, helo: &'a str) -> &'a str {
    if mail_from.is_empty() {
        return helo;
    }
    mail_from.rsplit_once('@').map_or(mail_from, |(_, d)| d)
}

/// `check_host(ip, domain, sender)` with the default options; see [`check_host_with`].
pub async fn check_host<R: Resolve>(
    ip: IpAddr,
    domain: &str,
    sender: &str,
    helo: &str,
    resolver: &R,
) -> SpfResult {
    check_host_with(ip, domain, sender, helo, resolver, &CheckOptions::default()).await
}

/// Evaluates `domain`'s SPF policy for a client at `ip` that said `helo` and gave `sender` as
/// MAIL FROM (empty for a bounce: `postmaster@helo` is used). An IPv4-mapped IPv6 address is
/// checked as IPv4 (RFC 7208 section 5).
pub async fn check_host_with<R: Resolve>(
    ip: IpAddr,
    domain: &str,
    sender: &str,
    helo: &str,
    resolver: &R,
    options: &CheckOptions,
) -> SpfResult {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let (local_part, sender_domain) = if sender.is_empty() {
        ("postmaster", helo)
    } else {
        match sender.rsplit_once('@') {
            Some(("", d)) => ("postmaster", d),
            Some((l, d)) => (l, d),
            None => ("postmaster", sender),
        }
    };
    let timestamp_secs = options.timestamp_secs.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let mut evaluator = Evaluator {
        resolver,
        ip,
        sender: format!("{local_part}@{sender_domain}"),
        local_part: local_part.to_owned(),
        sender_domain: sender_domain.to_owned(),
        helo: helo.to_owned(),
        receiver: options.receiver.clone(),
        timestamp_secs,
        max_dns_terms: options.max_dns_terms,
        max_void_lookups: options.max_void_lookups,
        dns_terms: 0,
        void_lookups: 0,
        validated_names: None,
        trace: Vec::new(),
    };
    let domain = domain.strip_suffix('.').unwrap_or(domain).to_owned();
    let outcome = evaluator.check(domain, true).await;
    SpfResult {
        verdict: outcome.verdict,
        explanation: outcome.explanation,
        problem: outcome.problem,
        dns_terms: evaluator.dns_terms,
        void_lookups: evaluator.void_lookups,
        trace: evaluator.trace,
    }
}

/// Whether `domain` can start a check (RFC 7208 section 4.3): at least two labels, none empty
/// or longer than 63, at most 253 characters, no spaces or control characters, not an address
/// literal. Otherwise the result is none.
pub fn is_checkable_domain(domain: &str) -> bool {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() || name.len() > 253 || name.starts_with('[') {
        return false;
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((_, top)) = name.rsplit_once('.') else {
        return false;
    };
    name.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && !top.bytes().all(|b| b.is_ascii_digit())
}

/// A check that cannot go on.
enum Abort {
    Perm(String),
    Temp(String),
}

/// The result of evaluating one domain's record.
struct Outcome {
    verdict: Verdict,
    explanation: Option<String>,
    problem: Option<String>,
}

impl Outcome {
    fn of(verdict: Verdict) -> Self {
        Self {
            verdict,
            explanation: None,
            problem: None,
        }
    }

    fn problem(verdict: Verdict, problem: String) -> Self {
        Self {
            verdict,
            explanation: None,
            problem: Some(problem),
        }
    }
}

impl From<Abort> for Outcome {
    fn from(abort: Abort) -> Self {
        match abort {
            Abort::Perm(p) => Self::problem(Verdict::PermError, p),
            Abort::Temp(p) => Self::problem(Verdict::TempError, p),
        }
    }
}

/// A lookup's answer, reduced to what SPF distinguishes.
enum Fetched {
    /// Records of the asked type (never empty).
    Records(Vec<RData>),
    /// NXDOMAIN, NODATA or an unqueryable name.
    Void,
}

/// The future of a recursive step (include, redirect, a linter walk).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The state of one check; see the module documentation.
struct Evaluator<'r, R> {
    resolver: &'r R,
    ip: IpAddr,
    sender: String,
    local_part: String,
    sender_domain: String,
    helo: String,
    receiver: String,
    timestamp_secs: u64,
    max_dns_terms: u32,
    max_void_lookups: u32,
    dns_terms: u32,
    void_lookups: u32,
    /// The client's validated names, fetched once for `%{p}`.
    validated_names: Option<Vec<String>>,
    trace: Vec<LookupTrace>,
}

impl<'r, R: Resolve> Evaluator<'r, R> {
    /// check_host() for one domain. `want_explanation` is false under `include`, whose
    /// explanations are never used.
    fn check(&mut self, domain: String, want_explanation: bool) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            if !is_checkable_domain(&domain) {
                return Outcome::problem(
                    Verdict::None,
                    format!("{domain:?} is not a domain name SPF can check"),
                );
            }
            let text = match self.fetch_record(&domain).await {
                Ok(Some(text)) => text,
                Ok(None) => {
                    return Outcome::problem(Verdict::None, format!("{domain} has no SPF record"));
                }
                Err(abort) => return abort.into(),
            };
            let record = match SpfRecord::parse(&text) {
                Ok(record) => record,
                Err(e) => {
                    return Outcome::problem(
                        Verdict::PermError,
                        format!("SPF record of {domain}: {e}"),
                    );
                }
            };
            match self.evaluate(&domain, &record, want_explanation).await {
                Ok(outcome) => outcome,
                Err(abort) => abort.into(),
            }
        })
    }

    /// Runs the directives, then `redirect=` (RFC 7208 sections 4.6.2 and 6.1).
    async fn evaluate(
        &mut self,
        domain: &str,
        record: &SpfRecord,
        want_explanation: bool,
    ) -> Result<Outcome, Abort> {
        for term in &record.terms {
            let TermKind::Directive(directive) = &term.kind else {
                continue;
            };
            if !self
                .matches(&directive.mechanism, domain, &term.text)
                .await?
            {
                continue;
            }
            let verdict = Verdict::from(directive.qualifier);
            let explanation = match record.explanation() {
                Some(spec) if verdict == Verdict::Fail && want_explanation => {
                    self.explain(spec, domain).await
                }
                _ => None,
            };
            return Ok(Outcome {
                verdict,
                explanation,
                problem: None,
            });
        }
        let Some(spec) = record.redirect() else {
            return Ok(Outcome::of(Verdict::Neutral));
        };
        let purpose = format!("redirect={spec}");
        self.count_dns_term(domain, &purpose)?;
        let Some(target) = self.target_name(spec, domain).await else {
            return Err(Abort::Perm(format!(
                "{domain}: {purpose} does not expand to a usable domain name"
            )));
        };
        let outcome = self.check(target.clone(), want_explanation).await;
        if outcome.verdict == Verdict::None {
            return Err(Abort::Perm(format!(
                "{domain}: {purpose}: {target} has no SPF record"
            )));
        }
        Ok(outcome)
    }

    /// Whether a mechanism matches the client.
    async fn matches(
        &mut self,
        mechanism: &Mechanism,
        domain: &str,
        term: &str,
    ) -> Result<bool, Abort> {
        if mechanism.queries_dns() {
            self.count_dns_term(domain, term)?;
        }
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4 {
                network,
                prefix_len,
            } => Ok(in_network(self.ip, IpAddr::V4(*network), *prefix_len)),
            Mechanism::Ip6 {
                network,
                prefix_len,
            } => Ok(in_network(self.ip, IpAddr::V6(*network), *prefix_len)),
            Mechanism::A { domain: spec, cidr } => {
                let Some(target) = self.optional_target(spec.as_ref(), domain).await else {
                    return Ok(false);
                };
                let rtype = self.address_type();
                let addresses = self.fetch_counted(&target, rtype, domain, term).await?;
                Ok(addresses.iter().any(|a| self.address_matches(a, *cidr)))
            }
            Mechanism::Mx { domain: spec, cidr } => {
                let Some(target) = self.optional_target(spec.as_ref(), domain).await else {
                    return Ok(false);
                };
                let exchanges: Vec<String> = self
                    .fetch_counted(&target, RecordType::Mx, domain, term)
                    .await?
                    .into_iter()
                    .filter_map(|d| match d {
                        RData::Mx { exchange, .. } => Some(normalise_name(&exchange)),
                        _ => None,
                    })
                    .collect();
                if exchanges.len() > MAX_MX_NAMES {
                    return Err(Abort::Perm(format!(
                        "{domain}: {term}: {target} has {} MX records (at most {MAX_MX_NAMES})",
                        exchanges.len()
                    )));
                }
                let rtype = self.address_type();
                for exchange in exchanges.iter().filter(|e| !e.is_empty()) {
                    let addresses = match self.fetch(exchange, rtype, domain, term).await {
                        Ok(Fetched::Records(a)) => a,
                        Ok(Fetched::Void) => continue,
                        Err(e) => {
                            return Err(Abort::Temp(format!("{domain}: {term}: {e}")));
                        }
                    };
                    if addresses.iter().any(|a| self.address_matches(a, *cidr)) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let Some(target) = self.optional_target(spec.as_ref(), domain).await else {
                    return Ok(false);
                };
                let target = normalise_name(&target);
                let names = self.validated_names(domain, term, true).await?;
                Ok(names.iter().any(|n| is_same_or_subdomain(n, &target)))
            }
            Mechanism::Exists(spec) => {
                let Some(target) = self.target_name(spec, domain).await else {
                    return Ok(false);
                };
                let found = self
                    .fetch_counted(&target, RecordType::A, domain, term)
                    .await?;
                Ok(!found.is_empty())
            }
            Mechanism::Include(spec) => {
                let Some(target) = self.target_name(spec, domain).await else {
                    return Err(Abort::Perm(format!(
                        "{domain}: {term} does not expand to a usable domain name"
                    )));
                };
                let outcome = self.check(target.clone(), false).await;
                let problem = || outcome.problem.clone().unwrap_or_default();
                match outcome.verdict {
                    Verdict::Pass => Ok(true),
                    Verdict::Fail | Verdict::SoftFail | Verdict::Neutral => Ok(false),
                    Verdict::TempError => Err(Abort::Temp(problem())),
                    Verdict::PermError => Err(Abort::Perm(problem())),
                    Verdict::None => Err(Abort::Perm(format!(
                        "{domain}: {term}: {target} has no SPF record"
                    ))),
                }
            }
        }
    }

    /// Counts a DNS-querying term against the limit.
    fn count_dns_term(&mut self, domain: &str, term: &str) -> Result<(), Abort> {
        self.dns_terms += 1;
        if self.dns_terms > self.max_dns_terms {
            return Err(Abort::Perm(format!(
                "{domain}: {term}: more than {} DNS-querying terms (include, a, mx, ptr, exists, \
                 redirect) in the evaluation",
                self.max_dns_terms
            )));
        }
        Ok(())
    }

    /// A lookup that a mechanism depends on: a failure is a temperror, an empty answer counts
    /// as a void lookup.
    async fn fetch_counted(
        &mut self,
        name: &str,
        rtype: RecordType,
        domain: &str,
        term: &str,
    ) -> Result<Vec<RData>, Abort> {
        match self.fetch(name, rtype, domain, term).await {
            Ok(Fetched::Records(records)) => Ok(records),
            Ok(Fetched::Void) => {
                self.void_lookups += 1;
                if self.void_lookups > self.max_void_lookups {
                    return Err(Abort::Perm(format!(
                        "{domain}: {term}: more than {} lookups returned nothing",
                        self.max_void_lookups
                    )));
                }
                Ok(Vec::new())
            }
            Err(e) => Err(Abort::Temp(format!("{domain}: {term}: {e}"))),
        }
    }

    /// One traced lookup; `Err` describes a failure (timeout, SERVFAIL, …).
    async fn fetch(
        &mut self,
        name: &str,
        rtype: RecordType,
        domain: &str,
        purpose: &str,
    ) -> Result<Fetched, String> {
        let answer = self.resolver.lookup(name, rtype).await;
        let (outcome, result) = match answer {
            Ok(answer) => match answer.rcode {
                Rcode::NoError => {
                    let records: Vec<RData> = answer
                        .records
                        .into_iter()
                        .map(|r| r.data)
                        .filter(|d| d.record_type() == rtype)
                        .collect();
                    if records.is_empty() {
                        (LookupOutcome::NoData, Ok(Fetched::Void))
                    } else {
                        (
                            LookupOutcome::Records(records.len()),
                            Ok(Fetched::Records(records)),
                        )
                    }
                }
                Rcode::NxDomain => (LookupOutcome::NxDomain, Ok(Fetched::Void)),
                rcode => (
                    LookupOutcome::Rcode(rcode),
                    Err(format!("{} {name}: {}", rtype.name(), rcode.as_str())),
                ),
            },
            // A name the resolver refuses to send is one that cannot exist.
            Err(LookupError::BadName(n)) => (
                LookupOutcome::Failed(format!("invalid name {n:?}")),
                Ok(Fetched::Void),
            ),
            Err(e) => (
                LookupOutcome::Failed(e.to_string()),
                Err(format!("{} {name}: {e}", rtype.name())),
            ),
        };
        self.trace.push(LookupTrace {
            domain: domain.to_owned(),
            purpose: purpose.to_owned(),
            name: name.to_owned(),
            rtype,
            outcome,
        });
        result
    }

    /// The domain's SPF record (RFC 7208 section 4.4 and 4.5): `None` when there is none.
    async fn fetch_record(&mut self, domain: &str) -> Result<Option<String>, Abort> {
        let txt = match self.fetch(domain, RecordType::Txt, domain, "record").await {
            Ok(Fetched::Records(records)) => records,
            Ok(Fetched::Void) => return Ok(None),
            Err(e) => return Err(Abort::Temp(format!("looking up the SPF record: {e}"))),
        };
        let mut spf: Vec<Vec<u8>> = txt
            .iter()
            .filter_map(RData::txt_joined)
            .filter(|t| SpfRecord::is_spf(t))
            .collect();
        if spf.len() > 1 {
            return Err(Abort::Perm(format!(
                "{domain} has {} SPF records (exactly one allowed)",
                spf.len()
            )));
        }
        let Some(bytes) = spf.pop() else {
            return Ok(None);
        };
        match String::from_utf8(bytes) {
            Ok(text) if text.is_ascii() => Ok(Some(text)),
            Ok(text) => {
                let column = text.find(|c: char| !c.is_ascii()).map_or(0, |i| i + 1);
                Err(Abort::Perm(format!(
                    "SPF record of {domain}: column {column}: non-ASCII character (SPF records \
                     are 7-bit ASCII)"
                )))
            }
            Err(e) => Err(Abort::Perm(format!(
                "SPF record of {domain}: column {}: non-ASCII byte (SPF records are 7-bit ASCII)",
                e.utf8_error().valid_up_to() + 1
            ))),
        }
    }

    /// The explanation of `exp=` (RFC 7208 section 6.2); `None` whenever anything is wrong with
    /// it. Its lookup is not counted against any limit.
    async fn explain(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        let name = self.target_name(spec, domain).await?;
        let purpose = format!("exp={spec}");
        let Ok(Fetched::Records(records)) =
            self.fetch(&name, RecordType::Txt, domain, &purpose).await
        else {
            return None;
        };
        let [record] = records.as_slice() else {
            return None;
        };
        let text = String::from_utf8(record.txt_joined()?).ok()?;
        if !text.is_ascii() {
            return None;
        }
        let template = MacroString::parse(&text, MacroSyntax::Explanation).ok()?;
        Some(self.expand(&template, domain).await)
    }

    /// The name a domain-spec points at, or the current domain when there is none.
    async fn optional_target(
        &mut self,
        spec: Option<&MacroString>,
        domain: &str,
    ) -> Option<String> {
        match spec {
            Some(spec) => self.target_name(spec, domain).await,
            None => Some(domain.to_owned()),
        }
    }

    /// The expanded domain-spec as a query name; `None` when it cannot be one.
    async fn target_name(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        match spec.literal_text() {
            Some(text) => query_name(&text),
            None => query_name(&self.expand(spec, domain).await),
        }
    }

    /// Expands a macro string, fetching the validated name first when it uses `%{p}`.
    async fn expand(&mut self, template: &MacroString, domain: &str) -> String {
        let validated = if template.uses(MacroLetter::ValidatedName) {
            self.validated_name(domain).await
        } else {
            None
        };
        let vars = MacroVars {
            sender: &self.sender,
            local_part: &self.local_part,
            sender_domain: &self.sender_domain,
            domain,
            ip: self.ip,
            validated_name: validated.as_deref(),
            helo: &self.helo,
            receiver: &self.receiver,
            timestamp_secs: self.timestamp_secs,
        };
        template.expand(&vars)
    }

    /// `%{p}` (RFC 7208 section 7.3): a validated name equal to `domain`, else one under it,
    /// else any; `None` (→ `unknown`) when no name validates.
    async fn validated_name(&mut self, domain: &str) -> Option<String> {
        let names = match &self.validated_names {
            Some(names) => names,
            None => {
                let names = self
                    .validated_names(domain, "%{p}", false)
                    .await
                    .unwrap_or_default();
                self.validated_names.insert(names)
            }
        };
        let domain = normalise_name(domain);
        names
            .iter()
            .find(|n| **n == domain)
            .or_else(|| names.iter().find(|n| is_same_or_subdomain(n, &domain)))
            .or_else(|| names.first())
            .cloned()
    }

    /// The client's validated domain names (RFC 7208 section 5.5): PTR names (the first 10)
    /// whose addresses include the client. Failed lookups are skipped; with `count_void` (the
    /// `ptr` mechanism) an empty PTR answer counts as a void lookup.
    async fn validated_names(
        &mut self,
        domain: &str,
        purpose: &str,
        count_void: bool,
    ) -> Result<Vec<String>, Abort> {
        let reverse = reverse_name(self.ip);
        let ptr_names: Vec<String> = if count_void {
            match self
                .fetch_counted(&reverse, RecordType::Ptr, domain, purpose)
                .await
            {
                Ok(records) => ptr_targets(records),
                Err(Abort::Temp(_)) => return Ok(Vec::new()),
                Err(perm) => return Err(perm),
            }
        } else {
            match self.fetch(&reverse, RecordType::Ptr, domain, purpose).await {
                Ok(Fetched::Records(records)) => ptr_targets(records),
                _ => return Ok(Vec::new()),
            }
        };
        let rtype = self.address_type();
        let mut validated = Vec::new();
        for name in ptr_names.into_iter().take(MAX_PTR_NAMES) {
            if name.is_empty() {
                continue;
            }
            if let Ok(Fetched::Records(addresses)) = self.fetch(&name, rtype, domain, purpose).await
                && addresses
                    .iter()
                    .any(|a| self.address_matches(a, DualCidr::default()))
            {
                validated.push(name);
            }
        }
        Ok(validated)
    }

    /// A for IPv4 clients, AAAA for IPv6 clients.
    fn address_type(&self) -> RecordType {
        match self.ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::Aaaa,
        }
    }

    fn address_matches(&self, data: &RData, cidr: DualCidr) -> bool {
        match *data {
            RData::A(a) => in_network(self.ip, IpAddr::V4(a), cidr.ip4),
            RData::Aaaa(a) => in_network(self.ip, IpAddr::V6(a), cidr.ip6),
            _ => false,
        }
    }
}

/// Whether `ip` is in `network/prefix_len` (different families never match).
fn in_network(ip: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `name` is `target` or ends in `.target` (both normalised).
fn is_same_or_subdomain(name: &str, target: &str) -> bool {
    name == target
        || (name.len() > target.len()
            && name.ends_with(target)
            && name.as_bytes()[name.len() - target.len() - 1] == b'.')
}

fn ptr_targets(records: Vec<RData>) -> Vec<String> {
    records
        .into_iter()
        .filter_map(|d| match d {
            RData::Ptr(name) => Some(normalise_name(&name)),
            _ => None,
        })
        .collect()
}

/// The reverse-lookup name of an address (`4.3.2.1.in-addr.arpa`, nibbles `….ip6.arpa`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0xf, byte >> 4] {
                    name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    name.push('.');
                }
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// Networks overlap when one contains the other (used by the linter).
pub(crate) fn networks_overlap(a: (IpAddr, u8), b: (IpAddr, u8)) -> bool {
    let shorter = a.1.min(b.1);
    in_network(a.0, b.0, shorter)
}

#[cfg(test)]
mod tests;
