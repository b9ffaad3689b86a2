//! Hostile input never panics.

use super::*;

/// Text shaped like a tag-list, so the parsers get past the first tag.
fn tag_list_like() -> impl Strategy<Value = String> {
    let version = prop::sample::select(vec![
        "v=DKIM1; ",
        "v=DMARC1; ",
        "v=STSv1; ",
        "v=TLSRPTv1; ",
        "v=BIMI1; ",
        "",
    ]);
    let name = prop::sample::select(vec![
        "p", "k", "h", "s", "t", "n", "sp", "pct", "rua", "ruf", "adkim", "aspf", "fo", "rf", "ri",
        "id", "l", "a", "x",
    ]);
    let value = "[ -:<-~]{0,40}";
    (version, prop::collection::vec((name, value), 0..8)).prop_map(|(v, tags)| {
        let body: Vec<String> = tags.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{v}{}", body.join("; "))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn record_parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_tag_list(&bytes);
        let _ = parse_dkim_record(&bytes);
        let _ = rsa_modulus_bits(&bytes);
        let _ = parse_dmarc_record(&bytes);
        let _ = parse_mta_sts_record(&bytes);
        let _ = parse_tlsrpt_record(&bytes);
        let _ = parse_bimi_record(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode_base64(&text);
        let _ = parse_policy(&text);
        let _ = parse_report_uri(&text);
        let _ = organizational_domain(&text);
        let _ = looks_generic(&text, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let _ = looks_generic(&text, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn record_parsers_never_panic_on_tag_lists(text in tag_list_like()) {
        let bytes = text.as_bytes();
        let _ = parse_dkim_record(bytes);
        let _ = parse_dmarc_record(bytes);
        let _ = parse_mta_sts_record(bytes);
        let _ = parse_tlsrpt_record(bytes);
        let _ = parse_bimi_record(bytes);
        let _ = parse_policy(&text.replace("; ", "\n").replace('=', ": "));
    }

    #[test]
    fn der_prefixes_and_corruptions_of_real_keys_never_panic(cut in 0usize..300, flip in 0usize..300, bit in 0u8..8) {
        let mut der = decode_base64(&key("rsa2048.spki.b64")).unwrap();
        if flip < der.len() {
            der[flip] ^= 1 << bit;
        }
        let _ = rsa_modulus_bits(&der[..cut.min(der.len())]);
        let _ = rsa_modulus_bits(&der);
    }

    #[test]
    fn list_answers_never_panic(octets in prop::collection::vec(any::<[u8; 4]>(), 0..4)) {
        let addresses: Vec<Ipv4Addr> = octets.into_iter().map(Ipv4Addr::from).collect();
        for codes in [ReturnCodes::SpamhausZen, ReturnCodes::Dnswl, ReturnCodes::Generic] {
            let _ = interpret_answer(codes, &addresses);
        }
        let _ = mailpulse_agent::dns::senderscore::interpret_answer(&addresses);
    }
}

#[tokio::test]
async fn checks_survive_hostile_txt_records() {
    let hostile: Vec<RData> = vec![
        RData::Txt(vec![]),
        RData::Txt(vec![vec![]]),
        RData::Txt(vec![vec![0xff, 0xfe, b'v', b'=']]),
        RData::Txt(vec![b"v=DMARC1; rua=mailto:".to_vec(), vec![0; 300]]),
        RData::Txt(vec![b"v=STSv1; id=".to_vec(), vec![b'a'; 600]]),
        RData::Txt(vec![
            b"v=DMARC1; p=reject; rua=mailto:a@b.example!999999999999999999999t".to_vec(),
        ]),
    ];
    for data in hostile {
        let mut zone = MemoryZone::new();
        for name in [
            "s._domainkey.example.com",
            "_dmarc.example.com",
            "_mta-sts.example.com",
            "_smtp._tls.example.com",
            "default._bimi.example.com",
        ] {
            zone.add(name, data.clone());
        }
        check_dkim("example.com", "s", SelectorUsage::InUse, &zone).await;
        check_dmarc("example.com", &zone).await;
        check_mta_sts("example.com", &[], &zone, &FetchDisabled).await;
        check_tlsrpt("example.com", &zone).await;
        check_bimi("example.com", &zone).await;
    }
}
