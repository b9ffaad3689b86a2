//! `HickoryResolver` against real DNS servers on loopback: Knot DNS as the authoritative server
//! (one or two instances, signed or not) and unbound as a recursive resolver with a poisoned view.
//!
//! Checks that answers reach our types exactly (record data, TTLs, CNAME chains, long TXT over
//! TCP), that NXDOMAIN, NODATA and REFUSED stay apart, that an uncached resolver sees a zone change
//! at once, that two servers of one zone can be told apart, and that DNSSEC validation with an
//! explicitly loaded trust anchor authenticates good answers and refuses a tampered signature.
//!
//! Needs the Debian `knot`, `knot-dnsutils` and `unbound` packages (`scripts/install-deps`).
//! Each test starts its own servers; the whole file takes a few seconds.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailpulse_agent::dns::hickory::{HickoryResolver, ResolverOptions, TrustAnchor};
use mailpulse_agent::dns::{Answer, LookupError, RData, Rcode, Record, RecordType, Resolve};
use mailpulse_tests::knot::{self, KnotServer, Signing, ZoneSpec, tamper, zone_text};
use mailpulse_tests::net::{free_port, loopback};
use mailpulse_tests::unbound::{self, UnboundConfig, UnboundServer};

/// Per-query timeout against loopback servers: generous, nothing here should come near it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const ZONE: &str = "example.test";
const SIGNED: &str = "signed.test";

/// 6 strings of 250 bytes: 1.5 kB of TXT, more than a 1232-byte EDNS UDP answer holds, so the
/// answer comes truncated over UDP and whole over TCP.
fn long_txt_strings() -> Vec<Vec<u8>> {
    (0..6u8)
        .map(|i| vec![b'a' + i; 250])
        .collect::<Vec<Vec<u8>>>()
}

fn example_zone(serial: u32, www: Ipv4Addr) -> String {
    let long_txt: Vec<String> = long_txt_strings()
        .iter()
        .map(|s| format!("\"{}\"", String::from_utf8_lossy(s)))
        .collect();
    zone_text(
        ZONE,
        serial,
        &[
            "@ 3600 IN NS ns2.example.test.",
            "ns2 3600 IN A 127.0.0.2",
            &format!("www 120 IN A {www}"),
            "www 120 IN AAAA 2001:db8::10",
            "@ 300 IN MX 10 mx1.example.test.",
            "@ 300 IN MX 20 MX2.Example.Test.",
            "mx1 300 IN A 192.0.2.25",
            "@ 600 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"",
            "split 900 IN TXT \"v=DKIM1; k=rsa; \" \"p=MIIBIjANBg\"",
            &format!("long 900 IN TXT {}", long_txt.join(" ")),
            "alias 400 IN CNAME www.example.test.",
            "alias2 500 IN CNAME alias.example.test.",
            "mail 300 IN A 192.0.2.30",
        ],
    )
}

fn reverse_zone() -> String {
    let mut text = zone_text("2.0.192.in-addr.arpa", 1, &[]);
    text.push_str("10 700 IN PTR www.example.test.\n");
    text
}

fn require_environment() {
    assert!(
        knot::available(),
        "this test needs the Debian knot and knot-dnsutils packages: run scripts/install-deps as root"
    );
    assert!(
        unbound::available(),
        "this test needs the Debian unbound package: run scripts/install-deps as root"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime builds")
}

fn start_knot(zones: &[ZoneSpec]) -> KnotServer {
    KnotServer::start(zones).unwrap_or_else(|e| panic!("knotd should start: {e}"))
}

fn record(name: &str, ttl: u32, data: RData) -> Record {
    Record {
        name: name.into(),
        ttl,
        data,
    }
}

async fn ask(resolver: &HickoryResolver, name: &str, rtype: RecordType) -> Answer {
    match resolver.lookup(name, rtype).await {
        Ok(answer) => answer,
        Err(e) => panic!("expected an answer for {name} {rtype:?}, got error {e}"),
    }
}

async fn soa_serial(resolver: &HickoryResolver, zone: &str) -> u32 {
    let answer = ask(resolver, zone, RecordType::Soa).await;
    match answer.records.as_slice() {
        [
            Record {
                data: RData::Soa { serial, .. },
                ..
            },
        ] => *serial,
        other => panic!("expected one SOA record for {zone}, got {other:?}"),
    }
}

#[test]
fn knot_answers_reach_our_types_exactly() {
    require_environment();
    let knot = start_knot(&[
        ZoneSpec::unsigned(ZONE, &example_zone(1, Ipv4Addr::new(192, 0, 2, 10))),
        ZoneSpec::unsigned("2.0.192.in-addr.arpa", &reverse_zone()),
    ]);
    let resolver = HickoryResolver::authoritative(knot.addr(), QUERY_TIMEOUT).expect("resolver");
    runtime().block_on(async {
        let started = Instant::now();
        let a = ask(&resolver, "WWW.Example.Test.", RecordType::A).await;
        let latency = started.elapsed();
        assert_eq!(
            a,
            Answer::records(vec![record(
                "www.example.test",
                120,
                RData::A(Ipv4Addr::new(192, 0, 2, 10))
            )])
        );
        assert!(
            latency < Duration::from_secs(1),
            "a loopback lookup took {latency:?}"
        );

        let aaaa = ask(&resolver, "www.example.test", RecordType::Aaaa).await;
        assert_eq!(
            aaaa.records,
            vec![record(
                "www.example.test",
                120,
                RData::Aaaa("2001:db8::10".parse::<Ipv6Addr>().unwrap())
            )]
        );

        let mut mx = ask(&resolver, ZONE, RecordType::Mx).await.records;
        mx.sort_by(|a, b| a.data.cmp(&b.data));
        assert_eq!(
            mx,
            vec![
                record(
                    ZONE,
                    300,
                    RData::Mx {
                        preference: 10,
                        exchange: "mx1.example.test".into()
                    }
                ),
                record(
                    ZONE,
                    300,
                    RData::Mx {
                        preference: 20,
                        exchange: "mx2.example.test".into()
                    }
                ),
            ],
            "MX exchanges lower-cased, without the trailing dot"
        );

        let spf = ask(&resolver, ZONE, RecordType::Txt).await;
        assert_eq!(
            spf.records,
            vec![record(
                ZONE,
                600,
                RData::Txt(vec![b"v=spf1 ip4:192.0.2.0/24 -all".to_vec()])
            )]
        );
        let split = ask(&resolver, "split.example.test", RecordType::Txt).await;
        assert_eq!(
            split.records,
            vec![record(
                "split.example.test",
                900,
                RData::Txt(vec![b"v=DKIM1; k=rsa; ".to_vec(), b"p=MIIBIjANBg".to_vec()])
            )],
            "TXT character-strings kept apart"
        );
        let long = ask(&resolver, "long.example.test", RecordType::Txt).await;
        assert_eq!(
            long.records,
            vec![record(
                "long.example.test",
                900,
                RData::Txt(long_txt_strings())
            )],
            "a 1.5 kB TXT arrives whole (over TCP after a truncated UDP answer)"
        );

        let mut ns = ask(&resolver, ZONE, RecordType::Ns).await.records;
        ns.sort_by(|a, b| a.data.cmp(&b.data));
        assert_eq!(
            ns,
            vec![
                record(ZONE, 3600, RData::Ns("ns1.example.test".into())),
                record(ZONE, 3600, RData::Ns("ns2.example.test".into())),
            ]
        );

        let soa = ask(&resolver, ZONE, RecordType::Soa).await;
        assert_eq!(
            soa.records,
            vec![record(
                ZONE,
                3600,
                RData::Soa {
                    mname: "ns1.example.test".into(),
                    rname: "hostmaster.example.test".into(),
                    serial: 1,
                    refresh: 3600,
                    retry: 600,
                    expire: 86400,
                    minimum: 60,
                }
            )]
        );

        let ptr = ask(&resolver, "10.2.0.192.in-addr.arpa", RecordType::Ptr).await;
        assert_eq!(
            ptr.records,
            vec![record(
                "10.2.0.192.in-addr.arpa",
                700,
                RData::Ptr("www.example.test".into())
            )]
        );

        let chain = ask(&resolver, "alias2.example.test", RecordType::A).await;
        assert_eq!(
            chain.records,
            vec![
                record(
                    "alias2.example.test",
                    500,
                    RData::Cname("alias.example.test".into())
                ),
                record(
                    "alias.example.test",
                    400,
                    RData::Cname("www.example.test".into())
                ),
                record(
                    "www.example.test",
                    120,
                    RData::A(Ipv4Addr::new(192, 0, 2, 10))
                ),
            ],
            "the CNAME chain, then the address"
        );
        let cname = ask(&resolver, "alias.example.test", RecordType::Cname).await;
        assert_eq!(
            cname.records,
            vec![record(
                "alias.example.test",
                400,
                RData::Cname("www.example.test".into())
            )],
            "asking for the CNAME itself does not follow it"
        );

        assert_eq!(
            ask(&resolver, "nope.example.test", RecordType::A).await,
            Answer::empty(Rcode::NxDomain)
        );
        assert_eq!(
            ask(&resolver, "www.example.test", RecordType::Mx).await,
            Answer::empty(Rcode::NoError),
            "NODATA: the name exists, the type does not"
        );
        assert_eq!(
            ask(&resolver, "www.elsewhere.test", RecordType::A).await,
            Answer::empty(Rcode::Refused),
            "a name outside the server's zones"
        );
    });
}

#[test]
fn an_uncached_resolver_sees_a_zone_change_at_once() {
    require_environment();
    let mut knot = start_knot(&[ZoneSpec::unsigned(
        ZONE,
        &example_zone(1, Ipv4Addr::new(192, 0, 2, 10)),
    )]);
    let uncached = HickoryResolver::authoritative(knot.addr(), QUERY_TIMEOUT).expect("resolver");
    let cached = HickoryResolver::with_nameservers(
        &[knot.addr()],
        ResolverOptions::authoritative(QUERY_TIMEOUT).cache(true),
    )
    .expect("resolver");
    let rt = runtime();
    rt.block_on(async {
        assert_eq!(soa_serial(&uncached, ZONE).await, 1);
        assert_eq!(soa_serial(&cached, ZONE).await, 1);
        assert_eq!(
            ask(&cached, "www.example.test", RecordType::A)
                .await
                .records[0]
                .data,
            RData::A(Ipv4Addr::new(192, 0, 2, 10))
        );
    });

    knot.set_zone(ZONE, &example_zone(2, Ipv4Addr::new(192, 0, 2, 20)))
        .unwrap_or_else(|e| panic!("zone reload: {e}"));

    rt.block_on(async {
        assert_eq!(soa_serial(&uncached, ZONE).await, 2, "new serial at once");
        assert_eq!(
            ask(&uncached, "www.example.test", RecordType::A)
                .await
                .records,
            vec![record(
                "www.example.test",
                120,
                RData::A(Ipv4Addr::new(192, 0, 2, 20))
            )]
        );
        assert_eq!(
            soa_serial(&cached, ZONE).await,
            1,
            "the caching resolver still holds the old SOA (TTL 3600)"
        );
    });
}

#[test]
fn two_authoritative_servers_can_disagree() {
    require_environment();
    let first = start_knot(&[ZoneSpec::unsigned(
        ZONE,
        &example_zone(10, Ipv4Addr::new(192, 0, 2, 10)),
    )]);
    let second = start_knot(&[ZoneSpec::unsigned(
        ZONE,
        &example_zone(11, Ipv4Addr::new(192, 0, 2, 11)),
    )]);
    let ask_first = HickoryResolver::authoritative(first.addr(), QUERY_TIMEOUT).expect("resolver");
    let ask_second =
        HickoryResolver::authoritative(second.addr(), QUERY_TIMEOUT).expect("resolver");
    runtime().block_on(async {
        assert_eq!(soa_serial(&ask_first, ZONE).await, 10);
        assert_eq!(soa_serial(&ask_second, ZONE).await, 11);
        assert_ne!(
            ask(&ask_first, "www.example.test", RecordType::A).await,
            ask(&ask_second, "www.example.test", RecordType::A).await
        );
    });
}

#[test]
fn unbound_serves_the_poisoned_record_while_knot_serves_the_real_one() {
    require_environment();
    let knot = start_knot(&[ZoneSpec::unsigned(
        ZONE,
        &example_zone(1, Ipv4Addr::new(192, 0, 2, 10)),
    )]);
    let unbound = UnboundServer::start(
        &UnboundConfig::default()
            .stub_zone(ZONE, &[knot.addr()])
            .local_data("www.example.test. 300 IN A 203.0.113.66"),
    )
    .unwrap_or_else(|e| panic!("unbound should start: {e}"));
    let recursive = HickoryResolver::with_nameservers(
        &[unbound.addr()],
        ResolverOptions::default()
            .timeout(QUERY_TIMEOUT)
            .cache(false),
    )
    .expect("resolver");
    let authoritative =
        HickoryResolver::authoritative(knot.addr(), QUERY_TIMEOUT).expect("resolver");
    runtime().block_on(async {
        assert_eq!(
            ask(&recursive, "www.example.test", RecordType::A)
                .await
                .records,
            vec![record(
                "www.example.test",
                300,
                RData::A(Ipv4Addr::new(203, 0, 113, 66))
            )],
            "unbound answers its local data"
        );
        assert_eq!(
            ask(&authoritative, "www.example.test", RecordType::A)
                .await
                .records,
            vec![record(
                "www.example.test",
                120,
                RData::A(Ipv4Addr::new(192, 0, 2, 10))
            )],
            "Knot answers the published record"
        );
        let mail = ask(&recursive, "mail.example.test", RecordType::A).await;
        assert_eq!(
            mail.data().collect::<Vec<_>>(),
            vec![&RData::A(Ipv4Addr::new(192, 0, 2, 30))],
            "other names go through the stub zone to Knot"
        );
        assert_eq!(
            ask(&recursive, "nope.example.test", RecordType::A).await,
            Answer::empty(Rcode::NxDomain),
            "NXDOMAIN through the recursive resolver"
        );
    });
}

#[test]
fn unbound_with_a_dead_stub_answers_servfail() {
    require_environment();
    let dead = loopback(free_port());
    let unbound = UnboundServer::start(
        &UnboundConfig::default()
            .stub_zone("dead.test", &[dead])
            .server_line("outbound-msg-retry: 1"),
    )
    .unwrap_or_else(|e| panic!("unbound should start: {e}"));
    let recursive = HickoryResolver::with_nameservers(
        &[unbound.addr()],
        ResolverOptions::default()
            .timeout(Duration::from_secs(20))
            .attempts(1)
            .cache(false),
    )
    .expect("resolver");
    let answer = runtime().block_on(recursive.lookup("www.dead.test", RecordType::A));
    assert_eq!(answer, Ok(Answer::empty(Rcode::ServFail)));
}

/// A signed zone (and the unsigned `example.test`) on one Knot, the same signed zone with one
/// record changed under its old signature on another.
struct SignedPair {
    signer: KnotServer,
    tampered: KnotServer,
}

fn signed_zone() -> String {
    zone_text(
        SIGNED,
        1,
        &[
            "www 120 IN A 192.0.2.10",
            "mail 300 IN A 192.0.2.30",
            "@ 600 IN TXT \"v=spf1 -all\"",
        ],
    )
}

fn signed_pair() -> SignedPair {
    let signer = start_knot(&[
        ZoneSpec::signed(SIGNED, &signed_zone()),
        ZoneSpec::unsigned(ZONE, &example_zone(1, Ipv4Addr::new(192, 0, 2, 10))),
    ]);
    let dump = signer
        .zone_dump(SIGNED)
        .unwrap_or_else(|e| panic!("zone-read of the signed zone: {e}"));
    assert!(
        dump.contains(" RRSIG ") && dump.contains(" DNSKEY "),
        "expected Knot to have signed {SIGNED}, got:\n{dump}"
    );
    let tampered_text = tamper(&dump, "www.signed.test", "A", "192.0.2.66")
        .unwrap_or_else(|| panic!("no www A record in the dump:\n{dump}"));
    let tampered = start_knot(&[ZoneSpec::unsigned(SIGNED, &tampered_text)]);
    SignedPair { signer, tampered }
}

fn anchor_from(text: &str) -> TrustAnchor {
    TrustAnchor::parse(text).unwrap_or_else(|e| panic!("trust anchor {text:?}: {e}"))
}

fn validating(server: SocketAddr, anchor: TrustAnchor) -> HickoryResolver {
    HickoryResolver::with_nameservers(
        &[server],
        ResolverOptions::authoritative(QUERY_TIMEOUT).dnssec(anchor),
    )
    .expect("validating resolver")
}

#[test]
fn dnssec_validates_with_an_explicit_anchor_and_refuses_a_tampered_signature() {
    require_environment();
    let pair = signed_pair();
    let dnskey = pair.signer.dnskey(SIGNED).expect("keymgr dnskey");
    let ds = pair.signer.ds(SIGNED).expect("keymgr ds");
    let by_key = validating(pair.signer.addr(), anchor_from(&dnskey));
    let by_ds = validating(pair.signer.addr(), anchor_from(&ds));
    let on_tampered = validating(pair.tampered.addr(), anchor_from(&dnskey));
    let unvalidated =
        HickoryResolver::authoritative(pair.signer.addr(), QUERY_TIMEOUT).expect("resolver");

    runtime().block_on(async {
        for resolver in [&by_key, &by_ds] {
            let www = ask(resolver, "www.signed.test", RecordType::A).await;
            assert!(
                www.authenticated,
                "a signed answer validated with the anchor: {www:?}"
            );
            assert_eq!(
                www.records,
                vec![record(
                    "www.signed.test",
                    120,
                    RData::A(Ipv4Addr::new(192, 0, 2, 10))
                )],
                "only the asked type: RRSIGs stay out"
            );
            let txt = ask(resolver, SIGNED, RecordType::Txt).await;
            assert!(txt.authenticated, "{txt:?}");
            let nx = ask(resolver, "nope.signed.test", RecordType::A).await;
            assert_eq!(nx.rcode, Rcode::NxDomain);
            assert!(nx.authenticated, "NSEC proves the NXDOMAIN: {nx:?}");
        }

        let plain = ask(&unvalidated, "www.signed.test", RecordType::A).await;
        assert_eq!(plain.records.len(), 1);
        assert!(
            !plain.authenticated,
            "without validation nothing is authenticated"
        );
        let unsigned = ask(&by_key, "www.example.test", RecordType::A).await;
        assert_eq!(
            unsigned,
            Answer::records(vec![record(
                "www.example.test",
                120,
                RData::A(Ipv4Addr::new(192, 0, 2, 10))
            )]),
            "a name outside the anchored zone: answered, not authenticated"
        );

        match on_tampered.lookup("www.signed.test", RecordType::A).await {
            Err(LookupError::Protocol(message)) => assert!(
                message.contains("DNSSEC"),
                "expected a DNSSEC failure, got {message}"
            ),
            other => panic!("expected the tampered record to fail validation, got {other:?}"),
        }
        let untouched = ask(&on_tampered, "mail.signed.test", RecordType::A).await;
        assert!(
            untouched.authenticated,
            "records whose signatures still match validate on the tampered server: {untouched:?}"
        );
    });
}

#[test]
fn a_ksk_zsk_zone_validates_with_only_its_ksk_anchored() {
    require_environment();
    let knot =
        start_knot(&[ZoneSpec::signed(SIGNED, &signed_zone()).with_signing(Signing::KskZsk)]);
    let ksk = knot.dnskey(SIGNED).expect("keymgr dnskey");
    let published = knot
        .kdig(&["+short", SIGNED, "DNSKEY"])
        .expect("kdig DNSKEY");
    assert_eq!(
        published.lines().count(),
        2,
        "expected a KSK and a ZSK in the DNSKEY RRset, got:\n{published}"
    );
    assert_eq!(ksk.lines().count(), 1, "keymgr lists the KSK only: {ksk}");
    let by_ksk = validating(knot.addr(), anchor_from(&ksk));
    let by_ds = validating(
        knot.addr(),
        anchor_from(&knot.ds(SIGNED).expect("keymgr ds")),
    );
    runtime().block_on(async {
        for resolver in [&by_ksk, &by_ds] {
            let www = ask(resolver, "www.signed.test", RecordType::A).await;
            assert!(
                www.authenticated,
                "signed by the ZSK, which the KSK vouches for: {www:?}"
            );
            let nodata = ask(resolver, "www.signed.test", RecordType::Mx).await;
            assert_eq!(nodata.rcode, Rcode::NoError);
            assert!(nodata.authenticated, "NSEC proves the NODATA: {nodata:?}");
        }
    });
}

#[test]
fn a_key_that_is_not_the_anchor_does_not_validate() {
    require_environment();
    // Two signers of the same zone make two different keys; trust only the first one's.
    let first = start_knot(&[ZoneSpec::signed(SIGNED, &signed_zone())]);
    let second = start_knot(&[ZoneSpec::signed(SIGNED, &signed_zone())]);
    let anchor = anchor_from(&first.dnskey(SIGNED).expect("keymgr dnskey"));
    let resolver = validating(second.addr(), anchor);
    let result = runtime().block_on(resolver.lookup("www.signed.test", RecordType::A));
    match result {
        Err(LookupError::Protocol(message)) => assert!(message.contains("DNSSEC"), "{message}"),
        other => panic!("expected a DNSSEC failure with a foreign key, got {other:?}"),
    }
}

#[test]
fn silence_is_a_timeout_and_the_wait_is_bounded() {
    // A bound socket that never answers: the query is sent and nothing comes back.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback UDP socket");
    let addr = silent.local_addr().expect("local address");
    let resolver =
        HickoryResolver::authoritative(addr, Duration::from_millis(500)).expect("resolver");
    let started = Instant::now();
    let result = runtime().block_on(resolver.lookup("www.example.test", RecordType::A));
    let took = started.elapsed();
    assert_eq!(result, Err(LookupError::Timeout));
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "expected the 500 ms timeout to end the lookup, took {took:?}"
    );

    // Nothing bound at all: UDP gets no answer, TCP is refused; hickory reports the timeout.
    let closed = loopback(free_port());
    let resolver =
        HickoryResolver::authoritative(closed, Duration::from_millis(500)).expect("resolver");
    let started = Instant::now();
    let result = runtime().block_on(resolver.lookup("www.example.test", RecordType::A));
    let took = started.elapsed();
    assert_eq!(result, Err(LookupError::Timeout));
    assert!(
        took < Duration::from_secs(3),
        "expected the lookup to a closed port to end within 3 s, took {took:?}"
    );
}

#[test]
fn concurrent_lookups_respect_the_in_flight_limit() {
    require_environment();
    let knot = start_knot(&[ZoneSpec::unsigned(
        ZONE,
        &example_zone(1, Ipv4Addr::new(192, 0, 2, 10)),
    )]);
    let resolver = Arc::new(
        HickoryResolver::with_nameservers(
            &[knot.addr()],
            ResolverOptions::authoritative(QUERY_TIMEOUT).max_in_flight(4),
        )
        .expect("resolver"),
    );
    runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let resolver = Arc::clone(&resolver);
            tasks.spawn(async move {
                let name = if i % 2 == 0 {
                    "www.example.test"
                } else {
                    "mail.example.test"
                };
                resolver.lookup(name, RecordType::A).await
            });
        }
        let mut answered = 0;
        while let Some(joined) = tasks.join_next().await {
            let answer = joined.expect("lookup task").expect("lookup answer");
            assert_eq!(answer.records.len(), 1);
            answered += 1;
        }
        assert_eq!(answered, 40);
    });
    assert_eq!(
        resolver.available_permits(),
        4,
        "every permit is back after the lookups"
    );
}
