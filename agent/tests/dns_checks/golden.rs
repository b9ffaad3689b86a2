//! Golden parse results.

use super::*;

/// Every line of `records.txt` is `<parser> <record>`; `records.json` holds what each parses
/// into.
#[test]
fn golden_records_parse_into_the_expected_values() {
    let input = fixture("records.txt");
    let expected_path = fixture("records.json");
    let text = std::fs::read_to_string(&input).unwrap();
    let mut actual = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (parser, record) = line.split_once(' ').unwrap_or((line, ""));
        let bytes = record.as_bytes();
        let parsed = match parser {
            "dkim" => to_json(parse_dkim_record(bytes)),
            "dmarc" => to_json(parse_dmarc_record(bytes)),
            "mta-sts" => to_json(parse_mta_sts_record(bytes)),
            // Policies are one line in the fixture, `\n` escaped.
            "policy" => match parse_policy(&record.replace("\\n", "\n")) {
                Ok(policy) => json!({ "ok": policy }),
                Err(errors) => json!({ "errors": errors }),
            },
            "tlsrpt" => to_json(parse_tlsrpt_record(bytes)),
            "bimi" => to_json(parse_bimi_record(bytes)),
            other => panic!("{}: unknown parser {other}", input.display()),
        };
        actual.push(json!({ "parser": parser, "record": record, "parsed": parsed }));
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut out = serde_json::to_string_pretty(&actual).unwrap();
        out.push('\n');
        std::fs::write(&expected_path, out).unwrap();
        return;
    }
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!("{}: {e}; run with UPDATE_GOLDEN=1", expected_path.display())
        }),
    )
    .unwrap();
    assert_eq!(
        expected.len(),
        actual.len(),
        "records.json is out of date (UPDATE_GOLDEN=1)"
    );
    for (exp, act) in expected.iter().zip(&actual) {
        assert_eq!(exp, act, "\n  expected: {exp}\n  actual:   {act}");
    }
}

fn to_json<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

#[test]
fn the_test_base64_encoder_round_trips_through_the_decoder() {
    for len in 0..40 {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(
            decode_base64(&base64(&bytes)).unwrap(),
            bytes,
            "{len} bytes"
        );
    }
    let der = decode_base64(&key("rsa4096.spki.b64")).unwrap();
    assert_eq!(rsa_modulus_bits(&der), Ok(4096));
}
