//! DNSSEC trust anchors given as text: DNSKEY and DS records in zone-file form, as `keymgr`
//! prints them or as a root anchor file holds them ([`TrustAnchor`]).

use std::path::Path;
use std::str::FromStr;

use hickory_resolver::proto::dnssec::rdata::{DNSKEY, DS};
use hickory_resolver::proto::dnssec::{
    Algorithm, DigestType, PublicKey, PublicKeyBuf, TrustAnchors,
};
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::serialize::txt::trust_anchor;

use crate::dns::normalise_name;

/// Keys a validating resolver trusts without a chain from the root: DNSKEYs given directly, and
/// DS records whose DNSKEYs are fetched (unvalidated) from the resolver's servers at first use
/// and trusted when their digest matches.
#[derive(Clone, Default)]
pub struct TrustAnchor {
    pub(super) keys: Vec<(Name, PublicKeyBuf)>,
    pub(super) ds: Vec<(Name, DS)>,
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
    pub(super) fn owners(&self) -> Vec<&Name> {
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
pub(super) mod tests {
    use super::*;

    /// A CSK of a Knot test zone (ECDSA P-256), as `keymgr … dnskey` prints it.
    pub(crate) const TEST_DNSKEY: &str = "signed.test. DNSKEY 257 3 13 \
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
    fn hex_digests_decode() {
        assert_eq!(decode_hex("0aFf"), Some(vec![10, 255]));
        assert_eq!(decode_hex("0"), None);
    }
}
