//! The real resolver: [`HickoryResolver`] answers [`Resolve`] lookups with hickory-resolver 0.26.
//!
//! What: one resolver per set of name servers — the system's (`/etc/resolv.conf`), explicit
//! `SocketAddr`s (UDP and TCP on any port), or one authoritative server asked without recursion
//! and without a cache ([`HickoryResolver::authoritative`], what "ask every NS of the zone
//! directly" needs). Optionally it validates DNSSEC locally against a [`TrustAnchor`] loaded
//! explicitly (DNSKEY or DS records as text: a test zone's key, or the root anchor file).
//!
//! Why a wrapper: the probes and the e-mail authentication checks speak our own DNS types
//! ([`Answer`], [`RData`]) so that they run the same against [`super::MemoryZone`]; hickory
//! reports several plain DNS outcomes as errors, and this module turns them back into answers.
//!
//! Mapping (hickory 0.26 → ours), the invariants callers rely on:
//! - records of the asked type plus the CNAMEs that led to them, in answer order, names lower
//!   case without the trailing dot, TTLs as received (a validated RRset's TTL is capped by its
//!   RRSIG's original TTL, as RFC 4035 asks); DNSSEC records are never returned unless asked for;
//! - NXDOMAIN → `Answer::empty(NxDomain)`; NODATA → `Answer::empty(NoError)`; SERVFAIL, REFUSED,
//!   FORMERR, NOTIMP and other error rcodes → `Answer::empty(rcode)`, not an error;
//! - no response in time → [`LookupError::Timeout`]; socket failures → `Transport`;
//! - a DNSSEC-bogus answer → `LookupError::Protocol` whose text starts with "DNSSEC validation
//!   failed" (hickory 0.26 returns `DnsError::DnssecBogus` when any answer RRset, or the negative
//!   proof, is bogus: a bad signature, a missing signature in a signed zone, a key that does not
//!   chain to the anchor; `DnsError::Nsec` with a bogus or indeterminate proof when a negative
//!   answer cannot be proven); a validated answer has `authenticated == true`, an insecure or
//!   unvalidated one `false`. Only local validation counts: an upstream AD bit is not trusted.
//!
//! DNSSEC scope: names at or under an anchored zone are validated (a root anchor covers every
//! name); other names are answered without validation (`authenticated == false`), because
//! hickory 0.26 cannot prove them insecure without a chain from the root and would call them
//! bogus. At the first validated lookup each anchored zone's DNSKEY RRset is fetched once and,
//! when an anchored key (a DNSKEY given as text, or one matching a DS digest) signs it, all of
//! its keys become anchors — hickory 0.26 otherwise rejects a KSK/ZSK island anchored at its
//! KSK. A key rollover after that needs a new resolver.
//!
//! Known gaps of hickory's lookup path: the CNAMEs in front of an NXDOMAIN, NODATA or error
//! rcode are not returned (hickory follows the chain and reports only the last step), and the
//! special-use names `localhost.`, `*.invalid.` and `*.onion.` are answered by hickory itself
//! without a query. Names are always looked up as absolute names (no search list); `/etc/hosts`
//! is never consulted.
//!
//! Every lookup first takes a permit of the resolver's semaphore, so at most
//! [`ResolverOptions::max_in_flight`] lookups of one resolver are on the wire at once.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_resolver::proto::dnssec::{
    Algorithm, DigestType, DnssecSummary, Proof, PublicKey, PublicKeyBuf, TrustAnchors, Verifier,
};
use hickory_resolver::proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::proto::rr::{self as hrr, LowerName, Name, SerialNumber};
use hickory_resolver::proto::serialize::binary::BinEncodable;
use hickory_resolver::proto::serialize::txt::trust_anchor;
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig, TokioResolver};
use tokio::sync::{OnceCell, Semaphore};

use super::{Answer, LookupError, RData, Rcode, Record, RecordType, Resolve, normalise_name};

/// Lookups of one resolver allowed on the wire at once unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Entries of hickory's response cache when caching is on.
const CACHE_ENTRIES: u64 = 8_192;

/// A resolver backed by hickory-resolver; see the module documentation for the mapping.
pub struct HickoryResolver {
    /// Asks without validation: every name when DNSSEC is off, names outside the anchored
    /// zones when it is on.
    plain: TokioResolver,
    /// Validation state; `None` when DNSSEC is off.
    dnssec: Option<Dnssec>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// The servers asked.
    servers: Vec<SocketAddr>,
}

/// How a [`HickoryResolver`] asks.
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    /// How long one query waits for a response before it is retried or given up.
    pub timeout: Duration,
    /// Queries sent per question before giving up (at least 1).
    pub attempts: usize,
    /// Keep answers for their TTL. Off for probes of authoritative servers: every lookup must
    /// reach the server.
    pub cache: bool,
    /// Set the RD bit. Off when asking authoritative servers directly.
    pub recursion_desired: bool,
    /// Validate DNSSEC locally against this anchor.
    pub dnssec: Option<TrustAnchor>,
    /// Lookups of this resolver allowed on the wire at once (at least 1).
    pub max_in_flight: usize,
}

impl Default for ResolverOptions {
    /// A caching recursive client: 5 s × 2 attempts, no DNSSEC, 64 lookups in flight.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache: true,
            recursion_desired: true,
            dnssec: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl ResolverOptions {
    /// For asking an authoritative server directly: no recursion, no cache, one attempt.
    pub fn authoritative(timeout: Duration) -> Self {
        Self {
            timeout,
            attempts: 1,
            cache: false,
            recursion_desired: false,
            ..Self::default()
        }
    }

    /// Sets the per-query timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the attempts per question.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }

    /// Turns the response cache on or off.
    pub fn cache(mut self, cache: bool) -> Self {
        self.cache = cache;
        self
    }

    /// Sets the RD bit on or off.
    pub fn recursion_desired(mut self, recursion_desired: bool) -> Self {
        self.recursion_desired = recursion_desired;
        self
    }

    /// Validates DNSSEC against `anchor`.
    pub fn dnssec(mut self, anchor: TrustAnchor) -> Self {
        self.dnssec = Some(anchor);
        self
    }

    /// Sets the limit of lookups in flight.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }
}

/// Keys a validating resolver trusts without a chain from the root: DNSKEYs given directly, and
/// DS records whose DNSKEYs are fetched (unvalidated) from the resolver's servers at first use
/// and trusted when their digest matches.
#[derive(Clone, Default)]
pub struct TrustAnchor {
    keys: Vec<(Name, PublicKeyBuf)>,
    ds: Vec<(Name, DS)>,
}

impl std::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(name, key)| format!("{name} DNSKEY alg {}", key.algorithm()))
            .collect();
        let ds: Vec<String> = self
            .ds
            .iter()
            .map(|(name, ds)| format!("{name} DS {}", ds.key_tag()))
            .collect();
        f.debug_struct("TrustAnchor")
            .field("keys", &keys)
            .field("ds", &ds)
            .finish()
    }
}

impl TrustAnchor {
    /// Parses DNSKEY and DS records in zone-file form, one or more: `keymgr … dnskey` or `ds`
    /// output, a root anchor file (`root.key`, `root.ds`, unbound's auto-trust file). `;`
    /// comments and parenthesised multi-line records are accepted; the TTL and class are
    /// optional. Revoked keys and keys without the zone-key flag are refused.
    pub fn parse(text: &str) -> Result<Self, TrustAnchorError> {
        let mut anchor = Self::default();
        for (line_no, record) in logical_records(text) {
            let bad = |reason: String| TrustAnchorError::Parse {
                line: line_no,
                reason,
            };
            let tokens: Vec<&str> = record.split_whitespace().collect();
            let Some(type_at) = tokens
                .iter()
                .take(4)
                .position(|t| t.eq_ignore_ascii_case("DNSKEY") || t.eq_ignore_ascii_case("DS"))
                .filter(|at| *at >= 1)
            else {
                return Err(bad(format!("not a DNSKEY or DS record: {record}")));
            };
            let owner = parse_absolute_name(tokens[0]).map_err(bad)?;
            let rdata = &tokens[type_at + 1..];
            if tokens[type_at].eq_ignore_ascii_case("DS") {
                anchor.ds.push((owner, parse_ds(rdata).map_err(bad)?));
            } else {
                let key = parse_dnskey(&owner, rdata).map_err(bad)?;
                anchor.keys.push((owner, key));
            }
        }
        if anchor.is_empty() {
            return Err(TrustAnchorError::Empty);
        }
        Ok(anchor)
    }

    /// Reads and parses an anchor file (see [`TrustAnchor::parse`]).
    pub fn from_file(path: &Path) -> Result<Self, TrustAnchorError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustAnchorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The root zone's key-signing keys that hickory 0.26 ships (tags 20326 and 38696).
    pub fn iana_root() -> Self {
        let builtin = TrustAnchors::default();
        let keys = (0..builtin.len())
            .filter_map(|i| builtin.get(i).cloned())
            .map(|key| (Name::root(), key))
            .collect();
        Self {
            keys,
            ds: Vec::new(),
        }
    }

    /// Adds the keys and DS records of `other`.
    pub fn extend(&mut self, other: TrustAnchor) -> &mut Self {
        self.keys.extend(other.keys);
        self.ds.extend(other.ds);
        self
    }

    /// No keys and no DS records.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ds.is_empty()
    }

    /// The zones the anchor covers (lower case, no trailing dot; the root is "").
    pub fn zones(&self) -> Vec<String> {
        self.owners()
            .into_iter()
            .map(|name| normalise_name(&name.to_ascii()))
            .collect()
    }

    /// The owner names of the keys and DS records, sorted, each once.
    fn owners(&self) -> Vec<&Name> {
        let mut owners: Vec<&Name> = self
            .keys
            .iter()
            .map(|(name, _)| name)
            .chain(self.ds.iter().map(|(name, _)| name))
            .collect();
        owners.sort();
        owners.dedup();
        owners
    }
}

impl FromStr for TrustAnchor {
    type Err = TrustAnchorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A trust anchor could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustAnchorError {
    #[error("cannot read trust anchor file {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust anchor record at line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("the trust anchor has no DNSKEY or DS record")]
    Empty,
}

/// A resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    #[error("no name servers to ask")]
    NoNameServers,
    #[error("invalid resolver option: {0}")]
    Option(&'static str),
    #[error("hickory refused the resolver configuration: {0}")]
    Build(String),
}

impl HickoryResolver {
    /// The system resolver: name servers from `/etc/resolv.conf`, asked with `options` (the
    /// file's own timeout and attempts are replaced by `options`).
    pub fn system(options: ResolverOptions) -> Result<Self, ResolverSetupError> {
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| ResolverSetupError::SystemConfig(e.to_string()))?;
        let servers: Vec<SocketAddr> = config
            .name_servers()
            .iter()
            .map(|ns| {
                let port = ns.connections.first().map_or(53, |c| c.port);
                SocketAddr::new(ns.ip, port)
            })
            .collect();
        let config = ResolverConfig::from_name_servers(config.name_servers().to_vec());
        Self::build(config, servers, options)
    }

    /// Asks `servers` (UDP first, TCP on truncation; any port) with `options`.
    pub fn with_nameservers(
        servers: &[SocketAddr],
        options: ResolverOptions,
    ) -> Result<Self, ResolverSetupError> {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut ns.connections {
                    connection.port = addr.port();
                }
                ns
            })
            .collect();
        Self::build(
            ResolverConfig::from_name_servers(name_servers),
            servers.to_vec(),
            options,
        )
    }

    /// Asks one authoritative server directly: no recursion, no cache, one attempt of
    /// `timeout`. A name outside the server's zones answers `Refused`.
    pub fn authoritative(addr: SocketAddr, timeout: Duration) -> Result<Self, ResolverSetupError> {
        Self::with_nameservers(&[addr], ResolverOptions::authoritative(timeout))
    }

    /// The servers this resolver asks.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Whether answers are validated with DNSSEC.
    pub fn is_validating(&self) -> bool {
        self.dnssec.is_some()
    }

    /// The configured limit of lookups in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Lookups that could start now without waiting for a permit.
    pub fn available_permits(&self) -> usize {
        self.in_flight.available_permits()
    }

    fn build(
        config: ResolverConfig,
        servers: Vec<SocketAddr>,
        options: ResolverOptions,
    ) -> Result<Self, ResolverSetupError> {
        if config.name_servers().is_empty() {
            return Err(ResolverSetupError::NoNameServers);
        }
        if options.attempts == 0 {
            return Err(ResolverSetupError::Option("attempts must be at least 1"));
        }
        if options.max_in_flight == 0 {
            return Err(ResolverSetupError::Option(
                "max_in_flight must be at least 1",
            ));
        }
        if options.timeout.is_zero() {
            return Err(ResolverSetupError::Option("timeout must be positive"));
        }
        let opts = hickory_options(&options);
        let plain = build_engine(config.clone(), opts.clone(), None)?;
        let dnssec = match options.dnssec {
            Some(anchor) if anchor.is_empty() => {
                return Err(ResolverSetupError::Option(
                    "the DNSSEC trust anchor is empty",
                ));
            }
            Some(anchor) => {
                let zones = anchor.owners().into_iter().map(LowerName::from).collect();
                Some(Dnssec {
                    anchor,
                    zones,
                    config,
                    opts,
                    engine: OnceCell::new(),
                })
            }
            None => None,
        };
        Ok(Self {
            plain,
            dnssec,
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            max_in_flight: options.max_in_flight,
            servers,
        })
    }
}

impl Resolve for HickoryResolver {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Answer, LookupError> {
        let query_name = query_name(name)?;
        // The semaphore is never closed, so acquiring only fails if that invariant breaks.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| LookupError::Transport("resolver is shut down".into()))?;
        let (engine, validating) = match &self.dnssec {
            Some(dnssec) if dnssec.covers(&query_name) => (dnssec.engine().await?, true),
            _ => (&self.plain, false),
        };
        let result = engine
            .lookup(query_name, hrr::RecordType::from(rtype.code()))
            .await;
        match result {
            Ok(lookup) => Ok(answer_from_lookup(&lookup, rtype, validating)),
            Err(error) => answer_from_error(error, validating),
        }
    }
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver")
            .field("servers", &self.servers)
            .field("validating", &self.is_validating())
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// What the validating engine is built from, and the engine once built.
struct Dnssec {
    anchor: TrustAnchor,
    /// The anchored zones; a name at or under one of them is validated.
    zones: Vec<LowerName>,
    config: ResolverConfig,
    opts: ResolverOpts,
    /// Built at the first validated lookup: the anchor's DNSKEY RRsets are fetched then.
    engine: OnceCell<TokioResolver>,
}

impl Dnssec {
    /// Whether `name` is at or under an anchored zone (the root covers every name).
    fn covers(&self, name: &Name) -> bool {
        let name = LowerName::from(name);
        self.zones.iter().any(|zone| zone.zone_of(&name))
    }

    /// The validating engine, built on first use (a failed build is retried by the next lookup).
    async fn engine(&self) -> Result<&TokioResolver, LookupError> {
        self.engine
            .get_or_try_init(|| async {
                let keys = self.expanded_keys().await?;
                build_engine(
                    self.config.clone(),
                    self.opts.clone(),
                    Some(trust_anchors(&keys)),
                )
                .map_err(|e| LookupError::Protocol(format!("DNSSEC setup: {e}")))
            })
            .await
    }

    /// The keys hickory is given as anchors.
    ///
    /// hickory 0.26 trusts a non-root zone's DNSKEY RRset only when every key in it is an anchor
    /// (otherwise it looks for the zone's DS at the parent, which an island of trust has not), so
    /// a zone signed with a KSK and a ZSK would be bogus with only its KSK anchored. We therefore
    /// fetch each anchored zone's DNSKEY RRset once, find the anchored keys in it (given as
    /// DNSKEY, or vouched for by a DS digest), check the RRset's RRSIG with one of them, and then
    /// anchor every key of the RRset — the step a validator takes anyway (RFC 4035 §5.2). Keys
    /// published later (a rollover) need a new resolver.
    async fn expanded_keys(&self) -> Result<Vec<(Name, PublicKeyBuf)>, LookupError> {
        let mut keys = Vec::new();
        let pool = NameServerPool::from_config(
            self.config.name_servers().iter().cloned(),
            Arc::new(PoolContext::new(
                self.opts.clone(),
                TlsConfig::new().map_err(|e| LookupError::Protocol(e.to_string()))?,
            )),
            TokioRuntimeProvider::default(),
        );
        for zone in self.anchor.owners() {
            let given: Vec<&PublicKeyBuf> = self
                .anchor
                .keys
                .iter()
                .filter(|(name, _)| name == zone)
                .map(|(_, key)| key)
                .collect();
            let ds: Vec<&DS> = self
                .anchor
                .ds
                .iter()
                .filter(|(name, _)| name == zone)
                .map(|(_, ds)| ds)
                .collect();
            // The root's RRset needs no expansion: hickory checks it against the anchored KSK.
            if zone.is_root() && ds.is_empty() {
                keys.extend(given.into_iter().map(|key| (zone.clone(), key.clone())));
                continue;
            }
            let rrset = fetch_dnskey_rrset(&pool, zone, &self.opts).await?;
            let trusted: Vec<&DNSKEY> = rrset
                .keys()
                .filter(|dnskey| {
                    !dnskey.revoke()
                        && (given.iter().any(|key| same_key(key, dnskey.public_key()))
                            || ds.iter().any(|ds| ds.covers(zone, dnskey).unwrap_or(false)))
                })
                .collect();
            if !ds.is_empty() && trusted.is_empty() {
                return Err(LookupError::Protocol(format!(
                    "DNSSEC trust anchor: no DNSKEY of {zone} matches its DS records"
                )));
            }
            keys.extend(given.into_iter().map(|key| (zone.clone(), key.clone())));
            let vouched = if rrset.signed_by_any(zone, &trusted) {
                rrset.keys().collect()
            } else {
                trusted
            };
            keys.extend(
                vouched
                    .into_iter()
                    .filter(|dnskey| dnskey.zone_key() && !dnskey.revoke())
                    .map(|dnskey| (zone.clone(), dnskey.public_key().clone())),
            );
        }
        Ok(keys)
    }
}

/// A zone's DNSKEY RRset with its RRSIGs, as a server sent it.
struct DnskeyRrset {
    records: Vec<hrr::Record>,
    rrsigs: Vec<RRSIG>,
}

impl DnskeyRrset {
    fn keys(&self) -> impl Iterator<Item = &DNSKEY> {
        self.records.iter().filter_map(|record| match &record.data {
            hrr::RData::DNSSEC(DNSSECRData::DNSKEY(dnskey)) => Some(dnskey),
            _ => None,
        })
    }

    /// Whether a current RRSIG over the RRset verifies with one of `keys`.
    fn signed_by_any(&self, zone: &Name, keys: &[&DNSKEY]) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // RRSIG times are 32-bit serial numbers (RFC 4034 §3.1.5).
        let now = SerialNumber::new(now as u32);
        self.rrsigs.iter().any(|rrsig| {
            let input = rrsig.input();
            input.type_covered == hrr::RecordType::DNSKEY
                && &input.signer_name == zone
                && input.sig_inception <= now
                && now <= input.sig_expiration
                && keys.iter().any(|dnskey| {
                    dnskey.calculate_key_tag().ok() == Some(input.key_tag)
                        && dnskey.algorithm() == input.algorithm
                        && dnskey
                            .verify_rrsig(zone, hrr::DNSClass::IN, rrsig, self.records.iter())
                            .is_ok()
                })
        })
    }
}

/// Asks the servers for `zone`'s DNSKEY RRset with the DO bit, without validating it.
async fn fetch_dnskey_rrset(
    pool: &NameServerPool<TokioRuntimeProvider>,
    zone: &Name,
    opts: &ResolverOpts,
) -> Result<DnskeyRrset, LookupError> {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = opts.recursion_desired;
    let query = Query::query(zone.clone(), hrr::RecordType::DNSKEY);
    let response =
        pool.lookup(query, options)
            .first_answer()
            .await
            .map_err(|e| match lookup_error(e) {
                LookupError::Timeout => LookupError::Timeout,
                other => LookupError::Protocol(format!(
                    "DNSSEC trust anchor: cannot fetch the DNSKEYs of {zone}: {other}"
                )),
            })?;
    let mut records = Vec::new();
    let mut rrsigs = Vec::new();
    for record in response.answers.iter().filter(|r| &r.name == zone) {
        match &record.data {
            hrr::RData::DNSSEC(DNSSECRData::DNSKEY(_)) => records.push(record.clone()),
            hrr::RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) => rrsigs.push(rrsig.clone()),
            _ => {}
        }
    }
    Ok(DnskeyRrset { records, rrsigs })
}

fn same_key(a: &PublicKeyBuf, b: &PublicKeyBuf) -> bool {
    a.algorithm() == b.algorithm() && a.public_bytes() == b.public_bytes()
}

/// Our options as hickory's: everything not named here keeps hickory's default.
fn hickory_options(options: &ResolverOptions) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = options.timeout;
    opts.attempts = options.attempts;
    opts.cache_size = if options.cache { CACHE_ENTRIES } else { 0 };
    opts.recursion_desired = options.recursion_desired;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.preserve_intermediates = true;
    opts.edns0 = true;
    opts
}

fn build_engine(
    config: ResolverConfig,
    opts: ResolverOpts,
    anchors: Option<TrustAnchors>,
) -> Result<TokioResolver, ResolverSetupError> {
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts);
    if let Some(anchors) = anchors {
        builder = builder.with_trust_anchor(Arc::new(anchors));
    }
    builder
        .build()
        .map_err(|e| ResolverSetupError::Build(e.to_string()))
}

fn trust_anchors(keys: &[(Name, PublicKeyBuf)]) -> TrustAnchors {
    let mut anchors = TrustAnchors::empty();
    for (name, key) in keys {
        anchors.insert_with_name(key, LowerName::from(name));
    }
    anchors
}

/// `name` as an absolute hickory name (ASCII names keep underscores; others go through IDNA).
fn query_name(name: &str) -> Result<Name, LookupError> {
    let trimmed = name.trim_end_matches('.');
    let parsed = if trimmed.is_ascii() {
        Name::from_ascii(trimmed)
    } else {
        Name::from_utf8(trimmed)
    };
    let mut parsed = parsed.map_err(|_| LookupError::BadName(name.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The answer of a successful lookup: CNAMEs and records of the asked type, in order.
fn answer_from_lookup(lookup: &Lookup, rtype: RecordType, validating: bool) -> Answer {
    let asked = hrr::RecordType::from(rtype.code());
    let kept: Vec<&hrr::Record> = lookup
        .answers()
        .iter()
        .filter(|r| {
            let t = r.record_type();
            t == asked || t == hrr::RecordType::CNAME
        })
        .collect();
    let authenticated = validating
        && !kept.is_empty()
        && DnssecSummary::from_records(kept.iter().copied()) == DnssecSummary::Secure;
    let records = kept.into_iter().map(record_from_hickory).collect();
    Answer {
        rcode: rcode_from_hickory(lookup.message().metadata.response_code),
        records,
        authenticated,
    }
}

/// Errors that are really answers become answers; the rest become [`LookupError`]s.
fn answer_from_error(error: NetError, validating: bool) -> Result<Answer, LookupError> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            let mut answer = Answer::empty(rcode_from_hickory(no_records.response_code));
            answer.authenticated = validating
                && no_records.authorities.as_ref().is_some_and(|auth| {
                    !auth.is_empty()
                        && DnssecSummary::from_records(auth.iter()) == DnssecSummary::Secure
                });
            Ok(answer)
        }
        NetError::Dns(DnsError::ResponseCode(code)) => Ok(Answer::empty(rcode_from_hickory(code))),
        NetError::Dns(DnsError::DnssecBogus) => Err(LookupError::Protocol(
            "DNSSEC validation failed: the answer is bogus".into(),
        )),
        NetError::Dns(DnsError::Nsec {
            query,
            response,
            proof,
            ..
        }) => match proof {
            // A negative answer from a zone proven unsigned: an ordinary, unauthenticated answer.
            Proof::Insecure => Ok(Answer::empty(rcode_from_hickory(response.response_code))),
            proof => Err(LookupError::Protocol(format!(
                "DNSSEC validation failed: the denial of existence for {query} is {proof}"
            ))),
        },
        other => Err(lookup_error(other)),
    }
}

/// A hickory error that carries no answer.
fn lookup_error(error: NetError) -> LookupError {
    match error {
        NetError::Timeout => LookupError::Timeout,
        NetError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => LookupError::Timeout,
        error @ (NetError::Io(_)
        | NetError::NoConnections
        | NetError::Busy
        | NetError::Truncated) => LookupError::Transport(error.to_string()),
        other => LookupError::Protocol(other.to_string()),
    }
}

fn rcode_from_hickory(code: ResponseCode) -> Rcode {
    match code {
        ResponseCode::NoError => Rcode::NoError,
        ResponseCode::FormErr => Rcode::FormErr,
        ResponseCode::ServFail => Rcode::ServFail,
        ResponseCode::NXDomain => Rcode::NxDomain,
        ResponseCode::NotImp => Rcode::NotImp,
        ResponseCode::Refused => Rcode::Refused,
        other => Rcode::Other(u16::from(other)),
    }
}

fn record_from_hickory(record: &hrr::Record) -> Record {
    Record {
        name: name_string(&record.name),
        ttl: record.ttl,
        data: rdata_from_hickory(&record.data),
    }
}

fn rdata_from_hickory(data: &hrr::RData) -> RData {
    use hrr::RData as H;
    match data {
        H::A(a) => RData::A(a.0),
        H::AAAA(aaaa) => RData::Aaaa(aaaa.0),
        H::MX(mx) => RData::Mx {
            preference: mx.preference,
            exchange: name_string(&mx.exchange),
        },
        H::TXT(txt) => RData::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
        H::PTR(ptr) => RData::Ptr(name_string(&ptr.0)),
        H::CNAME(cname) => RData::Cname(name_string(&cname.0)),
        H::NS(ns) => RData::Ns(name_string(&ns.0)),
        // The SOA timers are unsigned 32-bit on the wire; hickory types some as i32.
        H::SOA(soa) => RData::Soa {
            mname: name_string(&soa.mname),
            rname: name_string(&soa.rname),
            serial: soa.serial,
            refresh: soa.refresh.cast_unsigned(),
            retry: soa.retry.cast_unsigned(),
            expire: soa.expire.cast_unsigned(),
            minimum: soa.minimum,
        },
        H::Unknown { code, rdata } if u16::from(*code) == RecordType::Spf.code() => {
            RData::Spf(character_strings(&rdata.anything))
        }
        other => RData::Other {
            rtype: u16::from(other.record_type()),
            // Encoding what was just decoded only fails for data hickory could not have parsed.
            data: other.to_bytes().unwrap_or_default(),
        },
    }
}

/// Splits TXT-style RDATA (length-prefixed strings); a truncated last string keeps what is there.
fn character_strings(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut strings = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let take = usize::from(len).min(rest.len());
        strings.push(rest[..take].to_vec());
        bytes = &rest[take..];
    }
    strings
}

fn name_string(name: &Name) -> String {
    normalise_name(&name.to_ascii())
}

fn parse_absolute_name(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("bad owner name {text:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// DS RDATA tokens: key tag, algorithm, digest type, hex digest (possibly split).
fn parse_ds(rdata: &[&str]) -> Result<DS, String> {
    let [key_tag, algorithm, digest_type, digest @ ..] = rdata else {
        return Err("DS needs key tag, algorithm, digest type and digest".into());
    };
    let key_tag: u16 = key_tag
        .parse()
        .map_err(|_| format!("bad DS key tag {key_tag:?}"))?;
    let algorithm: u8 = algorithm
        .parse()
        .map_err(|_| format!("bad DS algorithm {algorithm:?}"))?;
    let digest_type: u8 = digest_type
        .parse()
        .map_err(|_| format!("bad DS digest type {digest_type:?}"))?;
    let digest_type = DigestType::from(digest_type);
    if !digest_type.is_supported() {
        return Err(format!("unsupported DS digest type {digest_type:?}"));
    }
    let digest = decode_hex(&digest.concat()).ok_or("bad DS digest (not hex)")?;
    if digest.is_empty() {
        return Err("empty DS digest".into());
    }
    Ok(DS::new(
        key_tag,
        Algorithm::from_u8(algorithm),
        digest_type,
        digest,
    ))
}

/// DNSKEY RDATA tokens, parsed by hickory's trust-anchor parser.
fn parse_dnskey(owner: &Name, rdata: &[&str]) -> Result<PublicKeyBuf, String> {
    let line = format!("{owner} IN DNSKEY {}", rdata.join(" "));
    let entries = trust_anchor::Parser::new(line.as_str())
        .parse()
        .map_err(|e| format!("bad DNSKEY: {e}"))?;
    let Some(trust_anchor::Entry::DNSKEY(record)) = entries.into_iter().next() else {
        return Err("bad DNSKEY: no record".into());
    };
    let dnskey: &DNSKEY = record.data();
    if !dnskey.zone_key() {
        return Err("DNSKEY without the zone-key flag".into());
    }
    if dnskey.revoke() {
        return Err("revoked DNSKEY".into());
    }
    if !dnskey.public_key().algorithm().is_supported() {
        return Err(format!(
            "DNSKEY algorithm {} is not supported",
            dnskey.public_key().algorithm()
        ));
    }
    Ok(dnskey.public_key().clone())
}

/// Zone-file text as logical records: comments gone, parenthesised lines joined; each with the
/// 1-based line it starts on.
fn logical_records(text: &str) -> Vec<(usize, String)> {
    let mut records = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or_default();
        if current.is_empty() && line.trim().is_empty() {
            continue;
        }
        if current.is_empty() {
            start = i + 1;
        }
        for ch in line.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => current.push(ch),
            }
        }
        current.push(' ');
        if depth == 0 {
            records.push((start, std::mem::take(&mut current).trim().to_string()));
        }
    }
    if !current.trim().is_empty() {
        records.push((start, current.trim().to_string()));
    }
    records
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Instant;

    use hickory_resolver::proto::op::{Message, MessageType, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, CNAME, SOA, TXT};

    use super::*;

    /// A CSK of a Knot test zone (ECDSA P-256), as `keymgr … dnskey` prints it.
    const TEST_DNSKEY: &str = "signed.test. DNSKEY 257 3 13 \
        SPsZVjTDqxfPr9UfUb+dKXbDAYg7tPlQ95t7WNRb7XuCF4LMQzNjE2T6XDufclAU6rP7uma76Nlr1D4weTxN3w==";
    /// The same key's DS (SHA-256), as `keymgr … ds` prints it.
    const TEST_DS: &str = "signed.test. DS 48923 13 2 \
        e8ffeabd8e5b6335a00eb0c8b33df9c1bb50b56fdae3653224653f2f5bb19d63";

    #[test]
    fn trust_anchor_reads_dnskey_ds_comments_and_parentheses() {
        let text = format!(
            "; a comment line\n{TEST_DNSKEY} ; trailing comment\n\n\
             . 86400 IN DS 20326 8 2 (\n  E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D )\n{TEST_DS}\n"
        );
        let anchor = TrustAnchor::parse(&text).expect("DNSKEY and DS lines parse");
        assert_eq!(anchor.keys.len(), 1);
        assert_eq!(anchor.ds.len(), 2);
        assert_eq!(
            anchor.zones(),
            vec!["".to_string(), "signed.test".to_string()]
        );
        assert_eq!(anchor.ds[0].1.key_tag(), 20326);
        assert_eq!(anchor.ds[0].1.digest().len(), 32);
    }

    #[test]
    fn ds_matches_the_dnskey_it_was_made_from() {
        let anchor = TrustAnchor::parse(&format!("{TEST_DNSKEY}\n{TEST_DS}")).unwrap();
        let (name, key) = &anchor.keys[0];
        let dnskey = DNSKEY::new(true, true, false, key.clone());
        let (ds_name, ds) = &anchor.ds[0];
        assert_eq!(name, ds_name);
        assert!(ds.covers(ds_name, &dnskey).unwrap(), "DS digest of the CSK");
    }

    #[test]
    fn trust_anchor_refuses_other_records_and_empty_text() {
        assert!(matches!(
            TrustAnchor::parse("example.test. 300 IN A 192.0.2.1"),
            Err(TrustAnchorError::Parse { line: 1, .. })
        ));
        assert!(matches!(
            TrustAnchor::parse("; nothing\n"),
            Err(TrustAnchorError::Empty)
        ));
        assert!(matches!(
            TrustAnchor::parse("x.test. DS 1 13 2 zz"),
            Err(TrustAnchorError::Parse { .. })
        ));
        assert_eq!(TrustAnchor::iana_root().keys.len(), 2);
    }

    #[test]
    fn names_are_absolute_and_keep_underscores() {
        let name = query_name("_dmarc.Example.COM").unwrap();
        assert!(name.is_fqdn());
        assert_eq!(name_string(&name), "_dmarc.example.com");
        assert_eq!(
            name_string(&query_name("example.com.").unwrap()),
            "example.com"
        );
        assert!(matches!(
            query_name(&"a".repeat(300)),
            Err(LookupError::BadName(_))
        ));
    }

    #[test]
    fn rdata_kinds_map_to_ours() {
        let txt = hrr::RData::TXT(TXT::from_bytes(vec![b"v=spf1 ", b"-all"]));
        assert_eq!(
            rdata_from_hickory(&txt),
            RData::Txt(vec![b"v=spf1 ".to_vec(), b"-all".to_vec()])
        );
        let soa = hrr::RData::SOA(SOA::new(
            Name::from_ascii("NS1.Example.test.").unwrap(),
            Name::from_ascii("hostmaster.example.test.").unwrap(),
            7,
            3600,
            600,
            86400,
            60,
        ));
        assert_eq!(
            rdata_from_hickory(&soa),
            RData::Soa {
                mname: "ns1.example.test".into(),
                rname: "hostmaster.example.test".into(),
                serial: 7,
                refresh: 3600,
                retry: 600,
                expire: 86400,
                minimum: 60,
            }
        );
        assert_eq!(
            character_strings(&[3, b'a', b'b', b'c', 0, 2, b'x']),
            vec![b"abc".to_vec(), Vec::new(), b"x".to_vec()]
        );
        assert_eq!(decode_hex("0aFf"), Some(vec![10, 255]));
        assert_eq!(decode_hex("0"), None);
    }

    /// A UDP DNS server on loopback that answers each query with `respond` (or not at all when
    /// it returns `None`), for at most `max_queries` queries.
    fn fake_server(
        max_queries: usize,
        respond: impl Fn(&Message) -> Option<Message> + Send + 'static,
    ) -> SocketAddr {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            for _ in 0..max_queries {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                if let Some(response) = respond(&query)
                    && let Ok(bytes) = response.to_vec()
                {
                    let _ = socket.send_to(&bytes, peer);
                }
            }
        });
        addr
    }

    fn reply(query: &Message, rcode: ResponseCode) -> Message {
        let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.response_code = rcode;
        response.metadata.authoritative = true;
        response.add_queries(query.queries.iter().cloned());
        response
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn error_rcodes_are_answers_not_errors() {
        let addr = fake_server(8, |q| {
            let name = q.queries.first()?.name().to_ascii();
            let rcode = match name.as_str() {
                "servfail.test." => ResponseCode::ServFail,
                "refused.test." => ResponseCode::Refused,
                "nx.test." => ResponseCode::NXDomain,
                _ => ResponseCode::NoError,
            };
            Some(reply(q, rcode))
        });
        let resolver =
            HickoryResolver::authoritative(addr, Duration::from_secs(2)).expect("resolver");
        runtime().block_on(async {
            for (name, rcode) in [
                ("servfail.test", Rcode::ServFail),
                ("refused.test", Rcode::Refused),
                ("nx.test", Rcode::NxDomain),
                ("nodata.test", Rcode::NoError),
            ] {
                let answer = resolver.lookup(name, RecordType::A).await;
                assert_eq!(answer, Ok(Answer::empty(rcode)), "{name}");
            }
        });
    }

    #[test]
    fn cname_chain_and_ttls_come_through() {
        let addr = fake_server(4, |q| {
            let mut r = reply(q, ResponseCode::NoError);
            let alias = Name::from_ascii("Alias.test.").ok()?;
            let target = Name::from_ascii("target.test.").ok()?;
            r.add_answer(hrr::Record::from_rdata(
                alias,
                300,
                hrr::RData::CNAME(CNAME(target.clone())),
            ));
            r.add_answer(hrr::Record::from_rdata(
                target,
                42,
                hrr::RData::A(A::new(192, 0, 2, 7)),
            ));
            Some(r)
        });
        let resolver =
            HickoryResolver::authoritative(addr, Duration::from_secs(2)).expect("resolver");
        let answer = runtime()
            .block_on(resolver.lookup("alias.test", RecordType::A))
            .expect("answer");
        assert_eq!(
            answer.records,
            vec![
                Record {
                    name: "alias.test".into(),
                    ttl: 300,
                    data: RData::Cname("target.test".into()),
                },
                Record {
                    name: "target.test".into(),
                    ttl: 42,
                    data: RData::A(Ipv4Addr::new(192, 0, 2, 7)),
                },
            ]
        );
        assert!(!answer.authenticated);
    }

    #[test]
    fn silence_is_a_timeout_within_the_configured_time() {
        let addr = fake_server(4, |_| None);
        let resolver = HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::authoritative(Duration::from_millis(300)),
        )
        .expect("resolver");
        let started = Instant::now();
        let result = runtime().block_on(resolver.lookup("quiet.test", RecordType::A));
        assert_eq!(result, Err(LookupError::Timeout));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "expected the timeout after about 300 ms, took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn validation_covers_the_anchored_zones_only() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        let island = HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::default().dnssec(TrustAnchor::parse(TEST_DNSKEY).unwrap()),
        )
        .unwrap();
        let dnssec = island.dnssec.as_ref().expect("validating");
        assert!(dnssec.covers(&query_name("signed.test").unwrap()));
        assert!(dnssec.covers(&query_name("WWW.Signed.Test").unwrap()));
        assert!(!dnssec.covers(&query_name("unsigned.test").unwrap()));
        assert!(!dnssec.covers(&query_name("notsigned.test").unwrap()));
        let root = HickoryResolver::with_nameservers(
            &[addr],
            ResolverOptions::default().dnssec(TrustAnchor::iana_root()),
        )
        .unwrap();
        let dnssec = root.dnssec.as_ref().expect("validating");
        assert!(dnssec.covers(&query_name("example.com").unwrap()));
        assert!(matches!(
            HickoryResolver::with_nameservers(
                &[addr],
                ResolverOptions::default().dnssec(TrustAnchor::default())
            ),
            Err(ResolverSetupError::Option(_))
        ));
    }

    #[test]
    fn the_system_resolver_uses_resolv_conf() {
        let listed = std::fs::read_to_string("/etc/resolv.conf")
            .map(|text| {
                text.lines()
                    .filter(|l| l.split_whitespace().next() == Some("nameserver"))
                    .count()
            })
            .unwrap_or(0);
        match HickoryResolver::system(ResolverOptions::default()) {
            Ok(resolver) => assert_eq!(resolver.nameservers().len(), listed),
            Err(e) => assert_eq!(listed, 0, "resolv.conf lists {listed} servers, got {e}"),
        }
    }

    #[test]
    fn options_are_checked() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        assert!(matches!(
            HickoryResolver::with_nameservers(&[], ResolverOptions::default()),
            Err(ResolverSetupError::NoNameServers)
        ));
        assert!(matches!(
            HickoryResolver::with_nameservers(&[addr], ResolverOptions::default().attempts(0)),
            Err(ResolverSetupError::Option(_))
        ));
        let resolver =
            HickoryResolver::with_nameservers(&[addr], ResolverOptions::default().max_in_flight(3))
                .unwrap();
        assert_eq!(
            (resolver.max_in_flight(), resolver.available_permits()),
            (3, 3)
        );
        assert!(!resolver.is_validating());
    }
}
