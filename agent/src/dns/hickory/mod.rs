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

mod anchor;
mod convert;
mod dnssec;
mod options;
mod resolver;

pub use anchor::{TrustAnchor, TrustAnchorError};
pub use options::{DEFAULT_MAX_IN_FLIGHT, ResolverOptions, ResolverSetupError};
pub use resolver::HickoryResolver;
