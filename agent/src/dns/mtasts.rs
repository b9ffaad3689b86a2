//! MTA-STS (RFC 8461): the `_mta-sts.<domain>` TXT record, the HTTPS policy at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, and whether the policy's `mx` patterns
//! cover the domain's real MX hosts.
//!
//! Why: MTA-STS makes senders insist on authenticated TLS to the listed MX hosts. A policy in
//! `enforce` mode that does not list an MX host makes senders refuse to deliver to that host; a
//! broken policy host silently switches the protection off.
//!
//! The policy parser and linter work on text ([`parse_policy`], [`lint_policy`]); fetching goes
//! through [`PolicyFetcher`]. [`HttpsPolicyFetcher`] is a small HTTPS/1.1 client (hyper over
//! rustls with the system's root certificates) that follows RFC 8461 3.3: no redirects, status
//! 200 only, `text/plain`, at most [`MAX_POLICY_BYTES`]. Fetching is off by default
//! ([`MtaStsConfig::fetch_policy`]); with it off, pass [`FetchDisabled`].
//!
//! Invariants: parsers take arbitrary input and never panic; a policy is either fully valid or
//! rejected with every reason (senders ignore an invalid policy as a whole).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::dmarc::is_hostname;
use super::finding::{
    Finding, Lookup, long_string_finding, lookup, publish_txt_fix, versioned_txt,
};
use super::tags::{Tag, TagListError, parse_tag_list};
use super::{RecordType, Resolve, normalise_name};

/// The `check` of MTA-STS findings.
pub const CHECK: &str = "mta-sts";

/// Largest policy body accepted (RFC 8461 3.3 suggests 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Largest `max_age` allowed (RFC 8461 3.2: one year).
pub const MAX_MAX_AGE_SECS: u64 = 31_557_600;

/// `max_age` under this draws a warning: RFC 8461 recommends weeks or more.
pub const SHORT_MAX_AGE_SECS: u64 = 7 * 86_400;

/// The `[mta_sts]` settings of the checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaStsConfig {
    /// Fetch the HTTPS policy (default false: only DNS is checked).
    pub fetch_policy: bool,
    /// Time allowed for connecting, the TLS handshake and the whole response.
    pub fetch_timeout_secs: u64,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        Self {
            fetch_policy: false,
            fetch_timeout_secs: 10,
        }
    }
}

/// The `_mta-sts` TXT record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtaStsRecord {
    /// `id=`: changes whenever the policy changes (1 to 32 letters and digits).
    pub id: String,
    /// Other tags (extensions), ignored by senders.
    pub extensions: Vec<Tag>,
}

/// Why a `_mta-sts` TXT record is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtaStsRecordError {
    #[error("malformed record: {0}")]
    TagList(#[from] TagListError),
    #[error("the record does not start with v=STSv1")]
    NotStsV1,
    #[error("id= is missing")]
    MissingId,
    #[error("id={0:?} is not 1 to 32 letters and digits")]
    BadId(String),
}

/// Parses a `_mta-sts` TXT record (RFC 8461 3.1).
pub fn parse_mta_sts_record(text: &[u8]) -> Result<MtaStsRecord, MtaStsRecordError> {
    let tags = parse_tag_list(text)?;
    let mut tags = tags.into_iter();
    match tags.next() {
        Some(t) if t.name == "v" && t.value == "STSv1" => {}
        _ => return Err(MtaStsRecordError::NotStsV1),
    }
    let (ids, extensions): (Vec<Tag>, Vec<Tag>) = tags.partition(|t| t.name == "id");
    let id = ids
        .into_iter()
        .next()
        .ok_or(MtaStsRecordError::MissingId)?
        .value;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(MtaStsRecordError::BadId(id));
    }
    Ok(MtaStsRecord { id, extensions })
}

/// What senders do when TLS to an MX host cannot be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Do not deliver.
    Enforce,
    /// Deliver anyway, report through TLS-RPT.
    Testing,
    /// The policy is withdrawn.
    None,
}

/// An `mx:` pattern: a host name, or `*.` and a domain matching exactly one more label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MxPattern(pub String);

impl MxPattern {
    /// Whether the MX host `host` matches (case-insensitive, trailing dot ignored).
    pub fn matches(&self, host: &str) -> bool {
        let host = normalise_name(host);
        let pattern = normalise_name(&self.0);
        match pattern.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => host == pattern,
        }
    }
}

/// A parsed MTA-STS policy (RFC 8461 3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtaStsPolicy {
    pub mode: Mode,
    pub max_age_secs: u64,
    pub mx: Vec<MxPattern>,
    /// Unknown keys and their values, ignored by senders.
    pub extensions: Vec<(String, String)>,
    /// Keys other than `mx` that appear more than once (the first value counts).
    pub repeated_keys: Vec<String>,
}

/// Why a policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum PolicyError {
    #[error("version: is missing")]
    MissingVersion,
    #[error("version: {0} is not STSv1")]
    BadVersion(String),
    #[error("mode: is missing")]
    MissingMode,
    #[error("mode: {0} is not enforce, testing or none")]
    BadMode(String),
    #[error("max_age: is missing")]
    MissingMaxAge,
    #[error("max_age: {0} is not a number of seconds up to 31557600")]
    BadMaxAge(String),
    #[error("no mx: line, but the mode needs at least one")]
    MissingMx,
    #[error("mx: {0} is not a host name or *.domain")]
    BadMxPattern(String),
    #[error("line {line} is not key: value: {text:?}")]
    BadLine { line: usize, text: String },
}

/// Parses a policy body: `key: value` lines ended by CRLF (bare LF accepted). Returns every
/// problem when the policy is invalid.
pub fn parse_policy(text: &str) -> Result<MtaStsPolicy, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    let mut extensions = Vec::new();
    let mut repeated_keys: Vec<String> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':').filter(|(key, _)| is_policy_key(key)) else {
            errors.push(PolicyError::BadLine {
                line: index + 1,
                text: line.chars().take(80).collect(),
            });
            continue;
        };
        let value = value.trim_start_matches([' ', '\t']);
        let slot = match key {
            "version" => &mut version,
            "mode" => &mut mode,
            "max_age" => &mut max_age,
            "mx" => {
                mx.push(value.to_owned());
                continue;
            }
            _ => {
                extensions.push((key.to_owned(), value.to_owned()));
                continue;
            }
        };
        if slot.is_some() {
            if !repeated_keys.iter().any(|k| k == key) {
                repeated_keys.push(key.to_owned());
            }
        } else {
            *slot = Some(value.to_owned());
        }
    }
    match version.as_deref() {
        None => errors.push(PolicyError::MissingVersion),
        Some("STSv1") => {}
        Some(other) => errors.push(PolicyError::BadVersion(other.to_owned())),
    }
    let mode = match mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => {
            errors.push(PolicyError::MissingMode);
            None
        }
        Some("enforce") => Some(Mode::Enforce),
        Some("testing") => Some(Mode::Testing),
        Some("none") => Some(Mode::None),
        Some(_) => {
            errors.push(PolicyError::BadMode(mode.unwrap_or_default()));
            None
        }
    };
    let max_age_secs = match max_age {
        None => {
            errors.push(PolicyError::MissingMaxAge);
            None
        }
        Some(value) => match value.parse::<u64>() {
            Ok(secs)
                if secs <= MAX_MAX_AGE_SECS
                    && value.len() <= 10
                    && value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(secs)
            }
            _ => {
                errors.push(PolicyError::BadMaxAge(value));
                None
            }
        },
    };
    for pattern in &mx {
        let host = pattern.strip_prefix("*.").unwrap_or(pattern);
        if !is_hostname(host) {
            errors.push(PolicyError::BadMxPattern(pattern.clone()));
        }
    }
    if mx.is_empty() && matches!(mode, Some(Mode::Enforce | Mode::Testing)) {
        errors.push(PolicyError::MissingMx);
    }
    match (mode, max_age_secs) {
        (Some(mode), Some(max_age_secs)) if errors.is_empty() => Ok(MtaStsPolicy {
            mode,
            max_age_secs,
            mx: mx.into_iter().map(MxPattern).collect(),
            extensions,
            repeated_keys,
        }),
        _ => Err(errors),
    }
}

fn is_policy_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Lints a valid policy for `domain` against the domain's MX hosts (`mx_hosts`, as published;
/// empty skips the coverage check).
pub fn lint_policy(domain: &str, policy: &MtaStsPolicy, mx_hosts: &[String]) -> Vec<Finding> {
    let url = policy_url(domain);
    let mut findings = Vec::new();
    match policy.mode {
        Mode::Enforce => findings.push(Finding::ok(
            CHECK,
            "mta-sts-enforce",
            format!("{url}: mode enforce, senders require authenticated TLS"),
        )),
        Mode::Testing => findings.push(
            Finding::warning(
                CHECK,
                "mta-sts-testing",
                format!("{url}: mode testing, TLS failures are reported but mail still flows"),
            )
            .with_fix(
                "When TLS-RPT reports show no failures, set mode: enforce and change the \
                 _mta-sts id=",
            ),
        ),
        Mode::None => findings.push(Finding::warning(
            CHECK,
            "mta-sts-mode-none",
            format!("{url}: mode none, the policy is withdrawn"),
        )),
    }
    if policy.max_age_secs < SHORT_MAX_AGE_SECS && policy.mode != Mode::None {
        findings.push(
            Finding::warning(
                CHECK,
                "mta-sts-max-age-short",
                format!(
                    "{url}: max_age {} s is under a week; a downgrade attacker only has to wait \
                     for the cached policy to expire",
                    policy.max_age_secs
                ),
            )
            .with_fix("Set max_age: 1209600 (two weeks) or more once the policy is stable"),
        );
    }
    for key in &policy.repeated_keys {
        findings.push(
            Finding::warning(
                CHECK,
                "mta-sts-repeated-key",
                format!("{url}: {key}: appears more than once; senders may use either"),
            )
            .with_fix(format!("Keep one {key}: line")),
        );
    }
    if mx_hosts.is_empty() || policy.mode == Mode::None {
        return findings;
    }
    let uncovered: Vec<&String> = mx_hosts
        .iter()
        .filter(|host| !policy.mx.iter().any(|p| p.matches(host)))
        .collect();
    for host in &uncovered {
        let message = format!("MX host {host} matches no mx: pattern of {url}");
        let fix = format!(
            "Add mx: {} to the policy and change the _mta-sts id=",
            normalise_name(host)
        );
        findings.push(if policy.mode == Mode::Enforce {
            Finding::error(
                CHECK,
                "mta-sts-mx-not-covered",
                format!("{message}: senders refuse to deliver to it"),
            )
            .with_fix(fix)
        } else {
            Finding::warning(
                CHECK,
                "mta-sts-mx-not-covered",
                format!("{message}: enforcing this policy would block it"),
            )
            .with_fix(fix)
        });
    }
    if uncovered.is_empty() {
        findings.push(Finding::ok(
            CHECK,
            "mta-sts-mx-covered",
            format!(
                "every MX host of {} matches the policy",
                normalise_name(domain)
            ),
        ));
    }
    for pattern in &policy.mx {
        if !mx_hosts.iter().any(|h| pattern.matches(h)) {
            findings.push(Finding::info(
                CHECK,
                "mta-sts-unused-pattern",
                format!("mx: {} of {url} matches no current MX host", pattern.0),
            ));
        }
    }
    findings
}

/// Where the policy of `domain` is published.
pub fn policy_url(domain: &str) -> String {
    format!(
        "https://mta-sts.{}/.well-known/mta-sts.txt",
        normalise_name(domain)
    )
}

/// Why a policy could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Fetching is switched off in the configuration.
    #[error("policy fetching is disabled")]
    Disabled,
    #[error("no trusted root certificates: {0}")]
    NoRoots(String),
    #[error("{0} is not a valid host name")]
    BadHost(String),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("HTTP failed: {0}")]
    Http(String),
    /// RFC 8461 3.3: redirects must not be followed.
    #[error("HTTP {status} redirect to {location:?}, which senders do not follow")]
    Redirect { status: u16, location: String },
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("Content-Type {0:?} is not text/plain")]
    ContentType(String),
    #[error("the policy is larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    #[error("the policy is not UTF-8 text")]
    NotText,
    #[error("no complete response within {0} s")]
    Timeout(u64),
}

/// Something that fetches the policy body of a domain.
pub trait PolicyFetcher: Send + Sync {
    /// The body of `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    fn fetch(&self, domain: &str) -> impl Future<Output = Result<String, FetchError>> + Send;
}

/// The fetcher used when fetching is disabled: always [`FetchError::Disabled`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchDisabled;

impl PolicyFetcher for FetchDisabled {
    async fn fetch(&self, _domain: &str) -> Result<String, FetchError> {
        Err(FetchError::Disabled)
    }
}

/// Fetches policies over HTTPS/1.1 with certificate validation (see the module documentation).
#[derive(Clone)]
pub struct HttpsPolicyFetcher {
    tls: TlsConnector,
    timeout: Duration,
    connect_to: Option<SocketAddr>,
}

impl std::fmt::Debug for HttpsPolicyFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsPolicyFetcher")
            .field("timeout", &self.timeout)
            .field("connect_to", &self.connect_to)
            .finish_non_exhaustive()
    }
}

impl HttpsPolicyFetcher {
    /// A fetcher trusting the system's root certificates.
    pub fn new(config: &MtaStsConfig) -> Result<Self, FetchError> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let reasons: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            return Err(FetchError::NoRoots(if reasons.is_empty() {
                "none found".to_owned()
            } else {
                reasons.join("; ")
            }));
        }
        Self::with_roots(roots, Duration::from_secs(config.fetch_timeout_secs.max(1)))
    }

    /// A fetcher trusting `roots` only.
    pub fn with_roots(roots: RootCertStore, timeout: Duration) -> Result<Self, FetchError> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            connect_to: None,
        })
    }

    /// Connects to `addr` instead of resolving `mta-sts.<domain>` (the certificate is still
    /// checked against `mta-sts.<domain>`); for tests and pinned set-ups.
    pub fn connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect_to = Some(addr);
        self
    }

    async fn fetch_unbounded(&self, domain: &str) -> Result<String, FetchError> {
        let host = format!("mta-sts.{}", normalise_name(domain));
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| FetchError::BadHost(host.clone()))?;
        let tcp = match self.connect_to {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((host.as_str(), 443)).await,
        }
        .map_err(|e| FetchError::Connect(e.to_string()))?;
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| FetchError::Tls(e.to_string()))?;
        let http_error = |e: hyper::Error| FetchError::Http(e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_error)?;
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let request = Request::get("/.well-known/mta-sts.txt")
            .header(HOST, host.as_str())
            .header(USER_AGENT, concat!("mailpulse/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, "text/plain")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        if status.is_redirection() {
            return Err(FetchError::Redirect {
                status: status.as_u16(),
                location: header(LOCATION).unwrap_or_default(),
            });
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("text/plain") {
            return Err(FetchError::ContentType(content_type));
        }
        let too_large = FetchError::TooLarge {
            limit_bytes: MAX_POLICY_BYTES,
        };
        if header(CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > MAX_POLICY_BYTES as u64)
        {
            return Err(too_large);
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(http_error)?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > MAX_POLICY_BYTES {
                    return Err(too_large);
                }
                bytes.extend_from_slice(data);
            }
        }
        String::from_utf8(bytes).map_err(|_| FetchError::NotText)
    }
}

impl PolicyFetcher for HttpsPolicyFetcher {
    async fn fetch(&self, domain: &str) -> Result<String, FetchError> {
        tokio::time::timeout(self.timeout, self.fetch_unbounded(domain))
            .await
            .map_err(|_| FetchError::Timeout(self.timeout.as_secs()))?
    }
}

/// Stops the HTTP connection task when the fetch ends or is dropped (e.g. by the timeout).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What [`check_mta_sts`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtaStsReport {
    pub domain: String,
    /// The `_mta-sts` record, when valid.
    pub record: Option<MtaStsRecord>,
    /// The policy, when fetched and valid.
    pub policy: Option<MtaStsPolicy>,
    /// Why there is no policy: fetch failure, parse errors, or fetching disabled.
    pub policy_error: Option<String>,
    /// The `_mta-sts` answer was DNSSEC-validated.
    pub authenticated: bool,
}

/// Checks the `_mta-sts` record, the policy host's address, and (through `fetcher`) the policy
/// against `mx_hosts` (the domain's MX host names).
pub async fn check_mta_sts<R: Resolve, F: PolicyFetcher>(
    domain: &str,
    mx_hosts: &[String],
    resolver: &R,
    fetcher: &F,
) -> (MtaStsReport, Vec<Finding>) {
    let domain = normalise_name(domain);
    let mut report = MtaStsReport {
        domain: domain.clone(),
        record: None,
        policy: None,
        policy_error: None,
        authenticated: false,
    };
    let mut findings = Vec::new();
    let name = format!("_mta-sts.{domain}");
    let (owned, authenticated) = match versioned_txt(resolver, CHECK, &name, "STSv1").await {
        Ok(found) => found,
        Err(finding) => {
            findings.push(finding);
            return (report, findings);
        }
    };
    report.authenticated = authenticated;
    let records: Vec<&[Vec<u8>]> = owned.iter().map(Vec::as_slice).collect();
    match records.as_slice() {
        [] => {
            findings.push(
                Finding::info(
                    CHECK,
                    "mta-sts-missing",
                    format!(
                        "{domain} publishes no MTA-STS record: senders may deliver without TLS"
                    ),
                )
                .with_fix(format!(
                    "Serve a policy at {} and then {}",
                    policy_url(&domain),
                    publish_txt_fix(&name, "v=STSv1; id=<policy version, e.g. 20250101T000000>")
                )),
            );
            return (report, findings);
        }
        [one] => {
            findings.extend(long_string_finding(CHECK, CHECK, &name, one));
            match parse_mta_sts_record(&one.concat()) {
                Ok(record) => report.record = Some(record),
                Err(e) => findings.push(
                    Finding::error(
                        CHECK,
                        "mta-sts-record-invalid",
                        format!("{name} is invalid ({e}); senders ignore MTA-STS"),
                    )
                    .with_fix(publish_txt_fix(&name, "v=STSv1; id=20250101T000000")),
                ),
            }
        }
        several => findings.push(
            Finding::error(
                CHECK,
                "mta-sts-multiple-records",
                format!(
                    "{name} has {} v=STSv1 records; senders then ignore MTA-STS",
                    several.len()
                ),
            )
            .with_fix(format!("Keep exactly one v=STSv1 record at {name}")),
        ),
    }
    check_policy_host(&domain, resolver, &mut findings).await;
    match fetcher.fetch(&domain).await {
        Err(FetchError::Disabled) => {
            report.policy_error = Some(FetchError::Disabled.to_string());
            findings.push(Finding::info(
                CHECK,
                "mta-sts-policy-not-fetched",
                format!(
                    "policy fetching is disabled; {} was not checked",
                    policy_url(&domain)
                ),
            ));
        }
        Err(e) => {
            report.policy_error = Some(e.to_string());
            findings.push(
                Finding::error(
                    CHECK,
                    "mta-sts-policy-fetch-failed",
                    format!(
                        "{}: {e}; senders treat the domain as without MTA-STS",
                        policy_url(&domain)
                    ),
                )
                .with_fix(
                    "Serve the policy over HTTPS with a valid certificate for mta-sts.<domain>, \
                     status 200, Content-Type text/plain, without redirects",
                ),
            );
        }
        Ok(body) => match parse_policy(&body) {
            Ok(policy) => {
                findings.extend(lint_policy(&domain, &policy, mx_hosts));
                report.policy = Some(policy);
            }
            Err(errors) => {
                let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                report.policy_error = Some(reasons.join("; "));
                findings.push(
                    Finding::error(
                        CHECK,
                        "mta-sts-policy-invalid",
                        format!("{} is invalid: {}", policy_url(&domain), reasons.join("; ")),
                    )
                    .with_fix(
                        "Serve lines version: STSv1, mode: enforce|testing|none, mx: <host>, \
                         max_age: <seconds>",
                    ),
                );
            }
        },
    }
    (report, findings)
}

/// `mta-sts.<domain>` must have an address, or no sender can fetch the policy.
async fn check_policy_host<R: Resolve>(domain: &str, resolver: &R, findings: &mut Vec<Finding>) {
    let host = format!("mta-sts.{domain}");
    let mut failure = None;
    for rtype in [RecordType::A, RecordType::Aaaa] {
        match lookup(resolver, &host, rtype).await {
            Lookup::Found(_) => return,
            Lookup::Empty { .. } => {}
            Lookup::Failed(reason) => failure = Some((rtype, reason)),
        }
    }
    findings.push(match failure {
        Some((rtype, reason)) => Finding::lookup_failed(CHECK, &host, rtype, &reason),
        None => Finding::error(
            CHECK,
            "mta-sts-host-missing",
            format!("{host} has no address, so senders cannot fetch the policy"),
        )
        .with_fix(format!(
            "Add A/AAAA records for {host} pointing at the HTTPS server of the policy"
        )),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records_need_version_first_and_a_short_alphanumeric_id() {
        let r = parse_mta_sts_record(b"v=STSv1; id=20160831085700Z;").unwrap();
        assert_eq!(r.id, "20160831085700Z");
        assert_eq!(
            parse_mta_sts_record(b"id=1; v=STSv1"),
            Err(MtaStsRecordError::NotStsV1)
        );
        assert_eq!(
            parse_mta_sts_record(b"v=STSv1"),
            Err(MtaStsRecordError::MissingId)
        );
        assert!(matches!(
            parse_mta_sts_record(b"v=STSv1; id=2016-08-31"),
            Err(MtaStsRecordError::BadId(_))
        ));
    }

    #[test]
    fn mx_patterns_match_one_label_under_a_wildcard() {
        let wildcard = MxPattern("*.example.net".into());
        assert!(wildcard.matches("MX1.example.net."));
        assert!(!wildcard.matches("a.b.example.net"));
        assert!(!wildcard.matches("example.net"));
        assert!(MxPattern("mail.example.com".into()).matches("mail.example.com"));
    }

    #[test]
    fn policies_parse_with_crlf_or_lf_and_report_every_error() {
        let p = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n\
             max_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(
            (p.mode, p.max_age_secs, p.mx.len()),
            (Mode::Enforce, 604_800, 2)
        );
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").unwrap();
        assert_eq!(none.mode, Mode::None);
        let errors =
            parse_policy("version: STSv2\nmode: strict\nmax_age: 99999999999\nmx: -bad-\nnonsense")
                .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors.contains(&PolicyError::BadVersion("STSv2".into())));
        assert_eq!(
            parse_policy("version: STSv1\nmode: enforce\nmax_age: 86400").unwrap_err(),
            [PolicyError::MissingMx]
        );
    }
}
