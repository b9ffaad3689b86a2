//! DKIM key records (RFC 6376 3.6.1, RFC 8463): parse `<selector>._domainkey.<domain>` and lint
//! what a verifier would trip over.
//!
//! Why: a DKIM key that is missing, revoked, too short or still in testing mode silently turns
//! every signature of the selector into "fail" or "neutral", and DMARC then rests on SPF alone.
//!
//! The module also holds a minimal DER reader that finds an RSA key's modulus length
//! ([`rsa_modulus_bits`]) without a cryptography crate; the tag-list grammar the record is
//! written in is [`super::tags`].
//!
//! Invariants: parsers take arbitrary bytes and return errors, never panic; tag names are
//! case-sensitive (RFC 6376 3.2); a record is judged as a verifier would, i.e. its character
//! strings are joined before parsing.

use serde::Serialize;

use super::finding::{Finding, Lookup, long_string_finding, lookup, publish_txt_fix, txt_records};
use super::tags::{TagListError, parse_tag_list};
use super::{RecordType, Resolve};

/// The `check` of DKIM findings.
pub const CHECK: &str = "dkim";

/// A parsed DKIM key record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DkimRecord {
    /// `v=`; `DKIM1` when present.
    pub version: Option<String>,
    /// `k=`, default `rsa`.
    pub key_type: KeyType,
    /// `p=` as published, whitespace removed; empty means the key is revoked.
    pub public_key_base64: String,
    /// `p=` decoded.
    #[serde(skip)]
    pub public_key: Vec<u8>,
    /// `h=`: the hash algorithms the key may be used with (`None`: any).
    pub hash_algorithms: Option<Vec<String>>,
    /// `s=`: service types (default `*`).
    pub service_types: Vec<String>,
    /// `t=y`: the domain is testing DKIM; verifiers treat failures as if unsigned.
    pub testing: bool,
    /// `t=s`: the `i=` domain of signatures must equal `d=` exactly (no subdomains).
    pub strict_identity: bool,
    /// `n=`: notes for humans.
    pub notes: Option<String>,
}

/// The `k=` of a key record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Rsa,
    Ed25519,
    /// A type verifiers do not know; the selector cannot verify anything.
    Other(String),
}

impl KeyType {
    /// The `k=` value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
            Self::Other(s) => s,
        }
    }
}

/// Why a DKIM key record is invalid (a verifier discards it: PERMFAIL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkimParseError {
    #[error("malformed tag-list: {0}")]
    TagList(#[from] TagListError),
    /// RFC 6376 3.6.1: `v=`, when present, must come first.
    #[error("v= must be the first tag")]
    VersionNotFirst,
    #[error("v={0} is not DKIM1")]
    BadVersion(String),
    /// `p=` is required (an empty `p=` is allowed: revoked).
    #[error("p= (the public key) is missing")]
    MissingPublicKey,
    #[error("p= is not valid base64: {0}")]
    BadBase64(#[from] Base64Error),
}

/// Parses a DKIM key record (the TXT record's strings joined).
pub fn parse_dkim_record(text: &[u8]) -> Result<DkimRecord, DkimParseError> {
    let tags = parse_tag_list(text)?;
    let get = |name: &str| {
        tags.iter()
            .find(|t| t.name == name)
            .map(|t| t.value.as_str())
    };
    let version = match tags.iter().position(|t| t.name == "v") {
        None => None,
        Some(0) if tags[0].value == "DKIM1" => Some(tags[0].value.clone()),
        Some(0) => return Err(DkimParseError::BadVersion(tags[0].value.clone())),
        Some(_) => return Err(DkimParseError::VersionNotFirst),
    };
    let key_type = match get("k") {
        None | Some("rsa") => KeyType::Rsa,
        Some("ed25519") => KeyType::Ed25519,
        Some(other) => KeyType::Other(other.to_owned()),
    };
    let p = get("p").ok_or(DkimParseError::MissingPublicKey)?;
    let public_key = decode_base64(p)?;
    let public_key_base64: String = p.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let list = |value: &str| -> Vec<String> {
        value
            .split(':')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let flags = get("t").map(list).unwrap_or_default();
    Ok(DkimRecord {
        version,
        key_type,
        public_key_base64,
        public_key,
        hash_algorithms: get("h").map(list),
        service_types: get("s").map_or_else(|| vec!["*".to_owned()], list),
        testing: flags.iter().any(|f| f == "y"),
        strict_identity: flags.iter().any(|f| f == "s"),
        notes: get("n").map(str::to_owned),
    })
}

/// What the `p=` of a record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DkimKey {
    /// Empty `p=`: the key was revoked.
    Revoked,
    Rsa {
        modulus_bits: u32,
    },
    Ed25519,
    /// `k=` names a type this check (and verifiers) do not know.
    Unsupported {
        key_type: String,
    },
}

/// Why `p=` does not hold a usable key of its `k=` type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("RSA key is not valid DER: {0}")]
    Der(#[from] DerError),
    #[error("Ed25519 key is {0} bytes, not 32")]
    Ed25519Length(usize),
    /// A common mistake: the Ed25519 key published wrapped in a SubjectPublicKeyInfo.
    #[error("Ed25519 key is published as a 44-byte SubjectPublicKeyInfo, not the raw 32 bytes")]
    Ed25519Spki,
}

/// Classifies the key of `record` and measures an RSA key.
pub fn analyse_key(record: &DkimRecord) -> Result<DkimKey, KeyError> {
    if record.public_key.is_empty() {
        return Ok(DkimKey::Revoked);
    }
    match &record.key_type {
        KeyType::Rsa => Ok(DkimKey::Rsa {
            modulus_bits: rsa_modulus_bits(&record.public_key)?,
        }),
        KeyType::Ed25519 => match record.public_key.len() {
            32 => Ok(DkimKey::Ed25519),
            44 if record.public_key.starts_with(ED25519_SPKI_PREFIX) => Err(KeyError::Ed25519Spki),
            n => Err(KeyError::Ed25519Length(n)),
        },
        KeyType::Other(t) => Ok(DkimKey::Unsupported {
            key_type: t.clone(),
        }),
    }
}

/// DER SubjectPublicKeyInfo header of an Ed25519 key (RFC 8410), followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The OID 1.2.840.113549.1.1.1 (rsaEncryption), DER content bytes.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

const DER_SEQUENCE: u8 = 0x30;
const DER_INTEGER: u8 = 0x02;
const DER_BIT_STRING: u8 = 0x03;
const DER_OID: u8 = 0x06;

/// Why DER bytes are not an RSA public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    #[error("truncated")]
    Truncated,
    #[error("expected tag 0x{expected:02x}, found 0x{found:02x}")]
    UnexpectedTag { expected: u8, found: u8 },
    #[error("unsupported length encoding")]
    BadLength,
    #[error("trailing bytes after the key")]
    TrailingData,
    #[error("algorithm {0} is not rsaEncryption")]
    NotRsa(String),
    #[error("the modulus is zero or negative")]
    BadModulus,
}

/// Bit length of the modulus of an RSA public key in DER: a SubjectPublicKeyInfo (what
/// `openssl rsa -pubout` writes and DKIM records carry) or a bare PKCS#1 RSAPublicKey.
pub fn rsa_modulus_bits(der: &[u8]) -> Result<u32, DerError> {
    let (outer, rest) = read_expected(der, DER_SEQUENCE)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData);
    }
    let (tag, _, _) = read_tlv(outer)?;
    if tag == DER_INTEGER {
        return pkcs1_modulus_bits(outer);
    }
    // SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING { RSAPublicKey } }.
    let (algorithm, rest) = read_expected(outer, DER_SEQUENCE)?;
    let (oid, _parameters) = read_expected(algorithm, DER_OID)?;
    if oid != RSA_ENCRYPTION_OID {
        return Err(DerError::NotRsa(oid_to_string(oid)));
    }
    let (bits, rest) = read_expected(rest, DER_BIT_STRING)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData);
    }
    let (&unused_bits, key) = bits.split_first().ok_or(DerError::Truncated)?;
    if unused_bits != 0 {
        return Err(DerError::BadLength);
    }
    let (rsa_key, rest) = read_expected(key, DER_SEQUENCE)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData);
    }
    pkcs1_modulus_bits(rsa_key)
}

/// RSAPublicKey content: INTEGER modulus, INTEGER publicExponent.
fn pkcs1_modulus_bits(content: &[u8]) -> Result<u32, DerError> {
    let (modulus, rest) = read_expected(content, DER_INTEGER)?;
    read_expected(rest, DER_INTEGER)?;
    if modulus.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(DerError::BadModulus);
    }
    let significant: &[u8] = match modulus.iter().position(|&b| b != 0) {
        Some(i) => &modulus[i..],
        None => return Err(DerError::BadModulus),
    };
    let leading_bits = 8 - significant[0].leading_zeros();
    let bits = (significant.len() as u64 - 1) * 8 + u64::from(leading_bits);
    u32::try_from(bits).map_err(|_| DerError::BadLength)
}

/// Reads one TLV that must have tag `expected`; returns its content and what follows it.
fn read_expected(input: &[u8], expected: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (found, content, rest) = read_tlv(input)?;
    if found != expected {
        return Err(DerError::UnexpectedTag { expected, found });
    }
    Ok((content, rest))
}

/// Reads one DER tag-length-value (single-byte tags, definite lengths up to 4 length bytes).
fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError::Truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(DerError::BadLength);
    }
    let (&first, rest) = rest.split_first().ok_or(DerError::Truncated)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(DerError::BadLength);
        }
        let bytes = rest.get(..count).ok_or(DerError::Truncated)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    let content = rest.get(..len).ok_or(DerError::Truncated)?;
    Ok((tag, content, &rest[len..]))
}

fn oid_to_string(oid: &[u8]) -> String {
    oid.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Why a base64 string does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    #[error("invalid character {0:?}")]
    BadChar(char),
    #[error("data after the '=' padding")]
    DataAfterPadding,
    #[error("wrong length")]
    BadLength,
}

/// Decodes base64 (RFC 4648 alphabet) ignoring whitespace, which DKIM allows anywhere in `p=`;
/// the trailing `=` padding is optional.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut sextets = 0usize;
    let mut padding = 0usize;
    for c in text.chars().filter(|c| !c.is_ascii_whitespace()) {
        let value = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            '=' => {
                padding += 1;
                continue;
            }
            other => return Err(Base64Error::BadChar(other)),
        };
        if padding > 0 {
            return Err(Base64Error::DataAfterPadding);
        }
        acc = (acc << 6) | value;
        sextets += 1;
        if sextets.is_multiple_of(4) {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
        }
    }
    match (sextets % 4, padding) {
        (0, 0) => {}
        (2, 0 | 2) => out.push((acc >> 4) as u8),
        (3, 0 | 1) => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => return Err(Base64Error::BadLength),
    }
    Ok(out)
}

/// Whether the selector signs mail now, which decides how a missing or revoked key is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectorUsage {
    /// Signers use it: the key must be there and valid.
    InUse,
    /// Rotated out: the key should be revoked (`p=`) or gone.
    Retired,
}

/// What [`check_dkim`] found at one selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DkimReport {
    /// `<selector>._domainkey.<domain>`.
    pub name: String,
    /// TXT records at the name.
    pub records_found: usize,
    /// The first record that parses.
    pub record: Option<DkimRecord>,
    pub key: Option<DkimKey>,
    /// The answer was DNSSEC-validated.
    pub authenticated: bool,
}

/// Fetches and lints the key record of `selector` at `domain`.
pub async fn check_dkim<R: Resolve>(
    domain: &str,
    selector: &str,
    usage: SelectorUsage,
    resolver: &R,
) -> (DkimReport, Vec<Finding>) {
    let name = format!("{selector}._domainkey.{}", domain.trim_end_matches('.'));
    let mut report = DkimReport {
        name: name.clone(),
        records_found: 0,
        record: None,
        key: None,
        authenticated: false,
    };
    let mut findings = Vec::new();
    let answer = match lookup(resolver, &name, RecordType::Txt).await {
        Lookup::Failed(reason) => {
            findings.push(Finding::lookup_failed(
                CHECK,
                &name,
                RecordType::Txt,
                &reason,
            ));
            return (report, findings);
        }
        Lookup::Empty { .. } => {
            findings.push(missing_finding(&name, selector, domain, usage));
            return (report, findings);
        }
        Lookup::Found(answer) => answer,
    };
    report.authenticated = answer.authenticated;
    let records = txt_records(&answer);
    report.records_found = records.len();
    if records.len() > 1 {
        findings.push(
            Finding::error(
                CHECK,
                "dkim-multiple-records",
                format!(
                    "{name} has {} TXT records; verifiers pick one at random or fail",
                    records.len()
                ),
            )
            .with_fix(format!("Keep exactly one key record at {name}")),
        );
    }
    for strings in &records {
        findings.extend(long_string_finding(CHECK, CHECK, &name, strings));
    }
    let mut first_error = None;
    for strings in &records {
        match parse_dkim_record(&strings.concat()) {
            Ok(record) => {
                report.record = Some(record);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some(record) = &report.record else {
        let error = first_error.map_or_else(String::new, |e| e.to_string());
        findings.push(
            Finding::error(
                CHECK,
                "dkim-syntax",
                format!("the key record at {name} is invalid: {error}"),
            )
            .with_fix(format!(
                "Publish a valid key record, e.g. {}",
                publish_txt_fix(&name, "v=DKIM1; k=rsa; p=<base64 public key>")
            )),
        );
        return (report, findings);
    };
    let (key, key_findings) = lint_dkim_record(&name, record, usage);
    report.key = key;
    findings.extend(key_findings);
    (report, findings)
}

/// Lints a parsed record found at `name`; returns what its key is (`None` when it is invalid).
pub fn lint_dkim_record(
    name: &str,
    record: &DkimRecord,
    usage: SelectorUsage,
) -> (Option<DkimKey>, Vec<Finding>) {
    let mut findings = Vec::new();
    let key = match analyse_key(record) {
        Ok(key) => key,
        Err(e) => {
            findings.push(
                Finding::error(
                    CHECK,
                    "dkim-key-invalid",
                    format!("the key at {name} is unusable: {e}"),
                )
                .with_fix(
                    "Re-publish p= from the signer's public key (openssl pkey -pubout \
                     -outform DER | base64; for Ed25519 only the raw 32 bytes)",
                ),
            );
            return (None, findings);
        }
    };
    match (&key, usage) {
        (DkimKey::Revoked, SelectorUsage::InUse) => findings.push(
            Finding::error(
                CHECK,
                "dkim-key-revoked",
                format!("the key at {name} is revoked (empty p=) but the selector is in use"),
            )
            .with_fix(
                "Publish the signer's current public key in p=, or sign with another selector",
            ),
        ),
        (DkimKey::Revoked, SelectorUsage::Retired) => findings.push(Finding::ok(
            CHECK,
            "dkim-key-revoked",
            format!("the retired selector's key at {name} is revoked"),
        )),
        (_, SelectorUsage::Retired) => findings.push(
            Finding::info(
                CHECK,
                "dkim-retired-key-live",
                format!("the selector at {name} is retired but still publishes a key"),
            )
            .with_fix(publish_txt_fix(name, "v=DKIM1; p=")),
        ),
        _ => {}
    }
    match &key {
        DkimKey::Rsa { modulus_bits } => findings.push(rsa_strength_finding(name, *modulus_bits)),
        DkimKey::Ed25519 => findings.push(Finding::ok(
            CHECK,
            "dkim-key-strength",
            format!("the key at {name} is Ed25519 (many receivers verify only RSA: dual-sign)"),
        )),
        DkimKey::Unsupported { key_type } => findings.push(
            Finding::error(
                CHECK,
                "dkim-unknown-key-type",
                format!("k={key_type} at {name} is not a DKIM key type (rsa, ed25519)"),
            )
            .with_fix("Set k=rsa or k=ed25519 to match the signer's key"),
        ),
        DkimKey::Revoked => {}
    }
    if record.testing {
        findings.push(
            Finding::warning(
                CHECK,
                "dkim-testing",
                format!("t=y at {name}: verifiers treat failed signatures as unsigned"),
            )
            .with_fix("Remove y from t= once signatures verify"),
        );
    }
    if let Some(hashes) = &record.hash_algorithms {
        let usable = hashes.iter().any(|h| h == "sha256");
        if !usable {
            findings.push(
                Finding::error(
                    CHECK,
                    "dkim-hash-unusable",
                    format!(
                        "h={} at {name} excludes sha256; verifiers must reject sha1 (RFC 8301)",
                        hashes.join(":")
                    ),
                )
                .with_fix("Remove h= or set h=sha256 and sign with rsa-sha256/ed25519-sha256"),
            );
        }
    }
    if !record
        .service_types
        .iter()
        .any(|s| s == "*" || s == "email")
    {
        findings.push(
            Finding::error(
                CHECK,
                "dkim-service-type",
                format!(
                    "s={} at {name} does not include email: the key cannot verify mail",
                    record.service_types.join(":")
                ),
            )
            .with_fix("Remove s= or set s=email"),
        );
    }
    (Some(key), findings)
}

fn rsa_strength_finding(name: &str, bits: u32) -> Finding {
    let fix = "Generate an RSA-2048 key under a new selector (opendkim-genkey -b 2048), publish \
               it, switch the signer, then revoke the old selector";
    if bits < 1024 {
        Finding::error(
            CHECK,
            "dkim-key-too-short",
            format!("the RSA key at {name} has {bits} bits; verifiers reject keys under 1024"),
        )
        .with_fix(fix)
    } else if bits < 2048 {
        Finding::warning(
            CHECK,
            "dkim-key-weak",
            format!("the RSA key at {name} has {bits} bits; 2048 is the current minimum advice"),
        )
        .with_fix(fix)
    } else {
        Finding::ok(
            CHECK,
            "dkim-key-strength",
            format!("the RSA key at {name} has {bits} bits"),
        )
    }
}

fn missing_finding(name: &str, selector: &str, domain: &str, usage: SelectorUsage) -> Finding {
    match usage {
        SelectorUsage::InUse => Finding::error(
            CHECK,
            "dkim-missing",
            format!("no key record at {name}: signatures with s={selector} fail"),
        )
        .with_fix(format!(
            "Publish the signer's public key: {}",
            publish_txt_fix(name, "v=DKIM1; k=rsa; p=<base64 public key>")
        )),
        SelectorUsage::Retired => Finding::ok(
            CHECK,
            "dkim-retired-absent",
            format!("the retired selector {selector} of {domain} has no key record"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA1024: &str = include_str!("../../tests/fixtures/dns/dkim/rsa1024.spki.b64");
    const RSA2048_PKCS1: &str = include_str!("../../tests/fixtures/dns/dkim/rsa2048.pkcs1.b64");
    const ED25519: &str = include_str!("../../tests/fixtures/dns/dkim/ed25519.raw.b64");

    #[test]
    fn base64_decodes_with_whitespace_and_optional_padding() {
        assert_eq!(decode_base64("aGVs bG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("a"), Err(Base64Error::BadLength));
        assert_eq!(decode_base64("aG=k"), Err(Base64Error::DataAfterPadding));
        assert_eq!(decode_base64("a*"), Err(Base64Error::BadChar('*')));
    }

    #[test]
    fn rsa_modulus_length_from_spki_and_pkcs1() {
        let spki = decode_base64(RSA1024).unwrap();
        assert_eq!(rsa_modulus_bits(&spki), Ok(1024));
        let pkcs1 = decode_base64(RSA2048_PKCS1).unwrap();
        assert_eq!(rsa_modulus_bits(&pkcs1), Ok(2048));
        assert_eq!(
            rsa_modulus_bits(&spki[..spki.len() - 1]),
            Err(DerError::Truncated)
        );
        let ed_spki = [ED25519_SPKI_PREFIX, &[7u8; 32]].concat();
        assert!(matches!(
            rsa_modulus_bits(&ed_spki),
            Err(DerError::NotRsa(_))
        ));
    }

    #[test]
    fn records_parse_into_typed_fields() {
        let text = format!("v=DKIM1; k=ed25519; h=sha256; s=email; t=y:s; n=rotated; p={ED25519}");
        let r = parse_dkim_record(text.as_bytes()).unwrap();
        assert_eq!(r.key_type, KeyType::Ed25519);
        assert_eq!(r.public_key.len(), 32);
        assert!(r.testing && r.strict_identity);
        assert_eq!(r.hash_algorithms, Some(vec!["sha256".to_owned()]));
        assert_eq!(analyse_key(&r), Ok(DkimKey::Ed25519));
        assert_eq!(
            parse_dkim_record(b"k=rsa; v=DKIM1; p="),
            Err(DkimParseError::VersionNotFirst)
        );
        assert_eq!(
            parse_dkim_record(b"v=DKIM2; p="),
            Err(DkimParseError::BadVersion("DKIM2".into()))
        );
        assert_eq!(
            parse_dkim_record(b"v=DKIM1; k=rsa"),
            Err(DkimParseError::MissingPublicKey)
        );
        let revoked = parse_dkim_record(b"v=DKIM1; p=").unwrap();
        assert_eq!(analyse_key(&revoked), Ok(DkimKey::Revoked));
    }
}
