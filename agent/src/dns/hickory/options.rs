//! How a [`HickoryResolver`](super::HickoryResolver) asks ([`ResolverOptions`]), why one cannot
//! be set up ([`ResolverSetupError`]), and the hickory engines built from those options.

use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::dnssec::TrustAnchors;

use super::anchor::TrustAnchor;

/// Lookups of one resolver allowed on the wire at once unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Entries of hickory's response cache when caching is on.
const CACHE_ENTRIES: u64 = 8_192;

/// How a [`HickoryResolver`](super::HickoryResolver) asks.
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

/// Our options as hickory's: everything not named here keeps hickory's default.
pub(super) fn hickory_options(options: &ResolverOptions) -> ResolverOpts {
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

/// A hickory resolver for `config` and `opts`, validating against `anchors` when given.
pub(super) fn build_engine(
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
