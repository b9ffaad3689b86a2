//! DKIM key checks.

use super::*;

#[tokio::test]
async fn dkim_rsa_key_lengths_are_measured_from_the_published_der() {
    let cases = [
        (
            "rsa512.spki.b64",
            512,
            Severity::Error,
            "dkim-key-too-short",
        ),
        ("rsa1024.spki.b64", 1024, Severity::Warning, "dkim-key-weak"),
        (
            "rsa1024.pkcs1.b64",
            1024,
            Severity::Warning,
            "dkim-key-weak",
        ),
        ("rsa2048.spki.b64", 2048, Severity::Ok, "dkim-key-strength"),
        ("rsa2048.pkcs1.b64", 2048, Severity::Ok, "dkim-key-strength"),
    ];
    for (file, bits, severity, code) in cases {
        let mut zone = MemoryZone::new();
        zone.add_txt(
            "s1._domainkey.example.com",
            &format!("v=DKIM1; k=rsa; p={}", key(file)),
        );
        let (report, findings) = check_dkim("example.com", "s1", SelectorUsage::InUse, &zone).await;
        assert_eq!(
            report.key,
            Some(DkimKey::Rsa { modulus_bits: bits }),
            "{file}"
        );
        assert_finding(&findings, severity, code);
    }
}

#[tokio::test]
async fn dkim_long_keys_must_be_split_into_255_byte_strings() {
    let record = format!("v=DKIM1; k=rsa; p={}", key("rsa4096.spki.b64"));
    let chunks: Vec<&str> = record
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let mut split = MemoryZone::new();
    split.add("big._domainkey.example.com", txt_parts(&chunks));
    let (report, findings) = check_dkim("example.com", "big", SelectorUsage::InUse, &split).await;
    assert_eq!(report.key, Some(DkimKey::Rsa { modulus_bits: 4096 }));
    assert_no_problems(&findings);

    let mut unsplit = MemoryZone::new();
    unsplit.add_txt("big._domainkey.example.com", &record);
    let (_, findings) = check_dkim("example.com", "big", SelectorUsage::InUse, &unsplit).await;
    assert_finding(&findings, Severity::Error, "dkim-txt-string-too-long");
}

#[tokio::test]
async fn dkim_record_lints() {
    let rsa2048 = key("rsa2048.spki.b64");
    let ed = key("ed25519.raw.b64");
    // The Ed25519 key wrapped in its SubjectPublicKeyInfo, a frequent publishing mistake.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend(decode_base64(&ed).unwrap());
    let ed_spki = base64(&spki);
    let cases: Vec<(&str, String, SelectorUsage, Severity, &str)> = vec![
        (
            "ed25519",
            format!("v=DKIM1; k=ed25519; p={ed}"),
            SelectorUsage::InUse,
            Severity::Ok,
            "dkim-key-strength",
        ),
        (
            "ed25519 as SPKI",
            format!("v=DKIM1; k=ed25519; p={ed_spki}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-key-invalid",
        ),
        (
            "revoked, in use",
            "v=DKIM1; p=".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-key-revoked",
        ),
        (
            "revoked, retired",
            "v=DKIM1; p=".into(),
            SelectorUsage::Retired,
            Severity::Ok,
            "dkim-key-revoked",
        ),
        (
            "retired but live",
            format!("v=DKIM1; p={rsa2048}"),
            SelectorUsage::Retired,
            Severity::Info,
            "dkim-retired-key-live",
        ),
        (
            "testing",
            format!("v=DKIM1; t=y; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Warning,
            "dkim-testing",
        ),
        (
            "unknown k=",
            format!("v=DKIM1; k=dsa; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-unknown-key-type",
        ),
        (
            "sha1 only",
            format!("v=DKIM1; h=sha1; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-hash-unusable",
        ),
        (
            "not for email",
            format!("v=DKIM1; s=other; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-service-type",
        ),
        (
            "v= not first",
            format!("k=rsa; v=DKIM1; p={rsa2048}"),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-syntax",
        ),
        (
            "bad base64",
            "v=DKIM1; p=MIIB*IjAN".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-syntax",
        ),
        (
            "garbage DER",
            "v=DKIM1; p=AAAAAAAA".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-key-invalid",
        ),
        (
            "no p=",
            "v=DKIM1; k=rsa".into(),
            SelectorUsage::InUse,
            Severity::Error,
            "dkim-syntax",
        ),
    ];
    for (what, record, usage, severity, code) in cases {
        let mut zone = MemoryZone::new();
        zone.add_txt("sel._domainkey.example.com", &record);
        let (_, findings) = check_dkim("example.com", "sel", usage, &zone).await;
        assert!(
            findings
                .iter()
                .any(|f| f.severity == severity && f.code == code),
            "{what}: expected {severity:?} {code}, got {:?}",
            codes(&findings)
        );
    }
}

#[tokio::test]
async fn dkim_missing_multiple_and_unreachable_selectors() {
    let zone = MemoryZone::new();
    let (_, findings) = check_dkim("example.com", "gone", SelectorUsage::InUse, &zone).await;
    assert_finding(&findings, Severity::Error, "dkim-missing");
    let (_, findings) = check_dkim("example.com", "gone", SelectorUsage::Retired, &zone).await;
    assert_finding(&findings, Severity::Ok, "dkim-retired-absent");

    let mut zone = MemoryZone::new();
    let rsa = key("rsa2048.spki.b64");
    zone.add_txt("two._domainkey.example.com", &format!("v=DKIM1; p={rsa}"))
        .add_txt("two._domainkey.example.com", "v=DKIM1; p=")
        .set_timeout("slow._domainkey.example.com");
    let (report, findings) = check_dkim("example.com", "two", SelectorUsage::InUse, &zone).await;
    assert_eq!(report.records_found, 2);
    assert_finding(&findings, Severity::Error, "dkim-multiple-records");
    let (_, findings) = check_dkim("example.com", "slow", SelectorUsage::InUse, &zone).await;
    assert_eq!(
        codes(&findings),
        [(Severity::Warning, "dkim-lookup-failed")]
    );
}
