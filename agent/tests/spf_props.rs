//! Property tests for SPF: arbitrary record text and macro strings never panic, a parsed record
//! prints back to text that parses to the same terms, and `check_host` on an arbitrary record
//! always ends with some verdict.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mailpulse_agent::dns::spf::macros::query_name;
use mailpulse_agent::dns::spf::suite::parse_suite;
use mailpulse_agent::dns::spf::{MacroString, MacroSyntax, MacroVars, SpfRecord, check_host};
use mailpulse_agent::dns::{MemoryZone, RData};
use proptest::prelude::*;

/// Text built from SPF's alphabet (so parsing gets deep), with some arbitrary characters.
fn spf_like_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("v=spf1 ".to_owned()),
        Just(" ".to_owned()),
        Just("include:".to_owned()),
        Just("a".to_owned()),
        Just("mx".to_owned()),
        Just("ptr".to_owned()),
        Just("ip4:".to_owned()),
        Just("ip6:".to_owned()),
        Just("exists:".to_owned()),
        Just("all".to_owned()),
        Just("redirect=".to_owned()),
        Just("exp=".to_owned()),
        Just("%{".to_owned()),
        Just("}".to_owned()),
        Just("%%".to_owned()),
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just(":".to_owned()),
        Just("=".to_owned()),
        "[-+~?0-9a-zA-Z.:/%{}_=,]{0,6}",
        any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|parts| parts.concat())
}

fn macro_like_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("%{".to_owned()),
        Just("}".to_owned()),
        Just("%%".to_owned()),
        Just("%_".to_owned()),
        Just("%-".to_owned()),
        Just("%".to_owned()),
        "[slodipvhcrtSLODIPVHCRTxX]",
        "[0-9]{1,25}",
        "[rR]",
        "[.+,/_=-]{1,3}",
        "[a-z.]{0,8}",
        any::<String>().prop_map(|s| s.chars().take(3).collect()),
    ];
    prop::collection::vec(piece, 0..20).prop_map(|parts| parts.concat())
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn record_parsing_never_panics_and_round_trips(text in spf_like_text()) {
        if let Ok(record) = SpfRecord::parse(&text) {
            let printed = record.to_string();
            let again = SpfRecord::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) should parse: {e}"));
            let texts = |r: &SpfRecord| r.terms.iter().map(|t| t.text.clone()).collect::<Vec<_>>();
            prop_assert_eq!(texts(&record), texts(&again));
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = SpfRecord::parse(&text);
        let _ = SpfRecord::parse(&format!("v=spf1 {text}"));
        for syntax in [MacroSyntax::DomainSpec, MacroSyntax::Explanation, MacroSyntax::ModifierValue] {
            let _ = MacroString::parse(&text, syntax);
        }
        let _ = query_name(&text);
    }

    #[test]
    fn macro_expansion_never_panics(
        text in macro_like_text(),
        local in any::<String>(),
        domain in "[a-zA-Z0-9.-]{0,300}",
        helo in any::<String>(),
        ip in any_ip(),
    ) {
        for syntax in [MacroSyntax::DomainSpec, MacroSyntax::Explanation, MacroSyntax::ModifierValue] {
            if let Ok(m) = MacroString::parse(&text, syntax) {
                let sender = format!("{local}@{domain}");
                let vars = MacroVars {
                    sender: &sender,
                    local_part: &local,
                    sender_domain: &domain,
                    domain: &domain,
                    ip,
                    validated_name: None,
                    helo: &helo,
                    receiver: "mx.example.net",
                    timestamp_secs: u64::MAX,
                };
                let expanded = m.expand(&vars);
                if let Some(name) = query_name(&expanded) {
                    prop_assert!(name.len() <= 253);
                }
            }
        }
    }
}

/// Text shaped like a suite file: YAML structure with the suite's keys and record types.
fn suite_like_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("---\n".to_owned()),
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("tests:".to_owned()),
        Just("zonedata:".to_owned()),
        Just("result: ".to_owned()),
        Just("host: 192.0.2.1".to_owned()),
        Just("helo: h.example".to_owned()),
        Just("[0, mx.example]".to_owned()),
        Just("[ ]".to_owned()),
        Just("{}".to_owned()),
        Just("TIMEOUT".to_owned()),
        Just("NONE".to_owned()),
        "(A|AAAA|MX|TXT|SPF|PTR|CNAME|X): ",
        "\"[a-z\\\\x0-9 ]{0,6}\"",
        "[a-z0-9.:]{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn suite_parsing_never_panics(text in suite_like_text()) {
        let _ = parse_suite(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn check_host_on_arbitrary_records_ends(
        record in spf_like_text(),
        included in spf_like_text(),
        ip in any_ip(),
        local in "[a-zA-Z0-9._%+-]{0,20}",
    ) {
        let mut zone = MemoryZone::new();
        zone.add_txt("example.com", &format!("v=spf1 {record}"))
            .add_txt("inc.example.com", &format!("v=spf1 {included}"))
            .add_txt("a.example.com", &included)
            .add("example.com", RData::A(Ipv4Addr::new(192, 0, 2, 1)));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let result = runtime.block_on(check_host(
            ip,
            "example.com",
            &format!("{local}@example.com"),
            "mail.example.com",
            &zone,
        ));
        prop_assert!(result.dns_terms <= 11, "{result:?}");
        prop_assert!(result.trace.len() <= 200, "{}", result.trace.len());
    }
}
