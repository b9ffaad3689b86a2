//! Local DNSSEC validation: which names are validated (those at or under an anchored zone) and
//! the validating engine, built at first use with every key of each anchored zone's DNSKEY RRset
//! that an anchored key vouches for (see [`super`] for why).

use std::sync::Arc;

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_resolver::proto::dnssec::{PublicKey, PublicKeyBuf, TrustAnchors, Verifier};
use hickory_resolver::proto::op::{DnsRequestOptions, Query};
use hickory_resolver::proto::rr::{self as hrr, LowerName, Name, SerialNumber};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig, TokioResolver};
use tokio::sync::OnceCell;

use super::anchor::TrustAnchor;
use super::convert::lookup_error;
use super::options::build_engine;
use crate::dns::LookupError;

/// What the validating engine is built from, and the engine once built.
pub(super) struct Dnssec {
    anchor: TrustAnchor,
    /// The anchored zones; a name at or under one of them is validated.
    zones: Vec<LowerName>,
    config: ResolverConfig,
    opts: ResolverOpts,
    /// Built at the first validated lookup: the anchor's DNSKEY RRsets are fetched then.
    engine: OnceCell<TokioResolver>,
}

impl Dnssec {
    /// Validation against `anchor`, asking the servers of `config` with `opts`; the engine is
    /// built at the first validated lookup.
    pub(super) fn new(anchor: TrustAnchor, config: ResolverConfig, opts: ResolverOpts) -> Self {
        let zones = anchor.owners().into_iter().map(LowerName::from).collect();
        Self {
            anchor,
            zones,
            config,
            opts,
            engine: OnceCell::new(),
        }
    }

    /// Whether `name` is at or under an anchored zone (the root covers every name).
    pub(super) fn covers(&self, name: &Name) -> bool {
        let name = LowerName::from(name);
        self.zones.iter().any(|zone| zone.zone_of(&name))
    }

    /// The validating engine, built on first use (a failed build is retried by the next lookup).
    pub(super) async fn engine(&self) -> Result<&TokioResolver, LookupError> {
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

fn trust_anchors(keys: &[(Name, PublicKeyBuf)]) -> TrustAnchors {
    let mut anchors = TrustAnchors::empty();
    for (name, key) in keys {
        anchors.insert_with_name(key, LowerName::from(name));
    }
    anchors
}
