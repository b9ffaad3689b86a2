//! MTA-STS: DNS side and the policy fetched over HTTPS.

use super::*;

/// Policies by domain, in memory.
pub(crate) struct StaticPolicies(
    pub(crate) HashMap<&'static str, Result<&'static str, FetchError>>,
);

impl PolicyFetcher for StaticPolicies {
    async fn fetch(&self, domain: &str) -> Result<String, FetchError> {
        match self.0.get(domain) {
            Some(Ok(body)) => Ok((*body).to_owned()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(FetchError::Status(404)),
        }
    }
}

pub(crate) fn mta_sts_zone() -> MemoryZone {
    let mut zone = MemoryZone::new();
    for domain in ["example.com", "testing.example", "broken.example"] {
        zone.add_txt(
            &format!("_mta-sts.{domain}"),
            "v=STSv1; id=20250101T000000;",
        )
        .add(&format!("mta-sts.{domain}"), v4(192, 0, 2, 80));
    }
    zone
}

pub(crate) const ENFORCE_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example.net\r\nmax_age: 1209600\r\n";

#[tokio::test]
async fn mta_sts_policy_must_cover_every_mx_host() {
    let fetcher = StaticPolicies(HashMap::from([
        ("example.com", Ok(ENFORCE_POLICY)),
        (
            "testing.example",
            Ok("version: STSv1\nmode: testing\nmx: mx1.testing.example\nmax_age: 86400\n"),
        ),
        (
            "broken.example",
            Ok("version: STSv1\nmode: enforce\nmax_age: 86400\n"),
        ),
    ]));
    let zone = mta_sts_zone();
    let covered = [
        "mail.example.com".to_owned(),
        "mx2.backup.example.net.".to_owned(),
    ];
    let (report, findings) = check_mta_sts("example.com", &covered, &zone, &fetcher).await;
    assert_eq!(
        report.record.as_ref().map(|r| r.id.as_str()),
        Some("20250101T000000")
    );
    assert_eq!(report.policy.as_ref().map(|p| p.mode), Some(Mode::Enforce));
    assert_no_problems(&findings);
    assert_finding(&findings, Severity::Ok, "mta-sts-mx-covered");

    let uncovered = [
        "mail.example.com".to_owned(),
        "mx.other-provider.example".to_owned(),
    ];
    let (_, findings) = check_mta_sts("example.com", &uncovered, &zone, &fetcher).await;
    assert_finding(&findings, Severity::Error, "mta-sts-mx-not-covered");
    assert_finding(&findings, Severity::Info, "mta-sts-unused-pattern");

    let mx = ["mx2.testing.example".to_owned()];
    let (_, findings) = check_mta_sts("testing.example", &mx, &zone, &fetcher).await;
    assert_finding(&findings, Severity::Warning, "mta-sts-testing");
    assert_finding(&findings, Severity::Warning, "mta-sts-max-age-short");
    assert_finding(&findings, Severity::Warning, "mta-sts-mx-not-covered");

    let (report, findings) = check_mta_sts("broken.example", &[], &zone, &fetcher).await;
    assert!(report.policy.is_none());
    assert_finding(&findings, Severity::Error, "mta-sts-policy-invalid");
}

#[tokio::test]
async fn mta_sts_dns_side_lints() {
    let mut zone = MemoryZone::new();
    zone.add_txt("_mta-sts.nohost.example", "v=STSv1; id=1")
        .add_txt("_mta-sts.two.example", "v=STSv1; id=1")
        .add_txt("_mta-sts.two.example", "v=STSv1; id=2")
        .add_txt("_mta-sts.badid.example", "v=STSv1; id=2025-01-01")
        .add("mta-sts.badid.example", v4(192, 0, 2, 80))
        .add("mta-sts.two.example", v4(192, 0, 2, 80));
    let (_, findings) = check_mta_sts("none.example", &[], &zone, &FetchDisabled).await;
    assert_eq!(codes(&findings), [(Severity::Info, "mta-sts-missing")]);
    let (_, findings) = check_mta_sts("nohost.example", &[], &zone, &FetchDisabled).await;
    assert_finding(&findings, Severity::Error, "mta-sts-host-missing");
    assert_finding(&findings, Severity::Info, "mta-sts-policy-not-fetched");
    let (_, findings) = check_mta_sts("two.example", &[], &zone, &FetchDisabled).await;
    assert_finding(&findings, Severity::Error, "mta-sts-multiple-records");
    let (_, findings) = check_mta_sts("badid.example", &[], &zone, &FetchDisabled).await;
    assert_finding(&findings, Severity::Error, "mta-sts-record-invalid");
}

/// An HTTPS server on 127.0.0.1 with the fixture certificate for `mta-sts.example.com`, answering
/// every connection with `response` (a raw HTTP/1.1 response).
async fn https_server(response: Vec<u8>) -> SocketAddr {
    let cert = CertificateDer::from(std::fs::read(fixture("mta-sts/server.der")).unwrap());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        std::fs::read(fixture("mta-sts/server.key.der")).unwrap(),
    ));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn test_fetcher(addr: SocketAddr) -> HttpsPolicyFetcher {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            std::fs::read(fixture("mta-sts/ca.der")).unwrap(),
        ))
        .unwrap();
    HttpsPolicyFetcher::with_roots(roots, Duration::from_secs(5))
        .unwrap()
        .connect_to(addr)
}

fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[tokio::test]
async fn mta_sts_policy_is_fetched_over_validated_https() {
    let ok = https_server(http_response(
        "200 OK",
        &[("Content-Type", "text/plain; charset=utf-8")],
        ENFORCE_POLICY,
    ))
    .await;
    let fetcher = test_fetcher(ok);
    assert_eq!(
        fetcher.fetch("example.com").await.as_deref(),
        Ok(ENFORCE_POLICY)
    );
    let (report, findings) = check_mta_sts(
        "example.com",
        &["mail.example.com".to_owned()],
        &mta_sts_zone(),
        &fetcher,
    )
    .await;
    assert_eq!(report.policy.map(|p| p.max_age_secs), Some(1_209_600));
    assert_finding(&findings, Severity::Ok, "mta-sts-enforce");

    // The certificate is for mta-sts.example.com/.org only.
    let wrong_name = fetcher.fetch("example.net").await;
    assert!(
        matches!(wrong_name, Err(FetchError::Tls(_))),
        "{wrong_name:?}"
    );

    let redirect = https_server(http_response(
        "301 Moved Permanently",
        &[("Location", "https://www.example.com/mta-sts.txt")],
        "",
    ))
    .await;
    assert_eq!(
        test_fetcher(redirect).fetch("example.com").await,
        Err(FetchError::Redirect {
            status: 301,
            location: "https://www.example.com/mta-sts.txt".into()
        })
    );
    let html = https_server(http_response(
        "200 OK",
        &[("Content-Type", "text/html")],
        "<html>",
    ))
    .await;
    assert_eq!(
        test_fetcher(html).fetch("example.com").await,
        Err(FetchError::ContentType("text/html".into()))
    );
    let missing = https_server(http_response("404 Not Found", &[], "")).await;
    assert_eq!(
        test_fetcher(missing).fetch("example.com").await,
        Err(FetchError::Status(404))
    );
    let huge_body = "x".repeat(70 * 1024);
    let huge = https_server(http_response(
        "200 OK",
        &[("Content-Type", "text/plain")],
        &huge_body,
    ))
    .await;
    assert!(matches!(
        test_fetcher(huge).fetch("example.com").await,
        Err(FetchError::TooLarge { .. })
    ));
    let (_, findings) =
        check_mta_sts("example.com", &[], &mta_sts_zone(), &test_fetcher(missing)).await;
    assert_finding(&findings, Severity::Error, "mta-sts-policy-fetch-failed");
}

#[tokio::test]
async fn mta_sts_fetch_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and then never speaks TLS.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            std::fs::read(fixture("mta-sts/ca.der")).unwrap(),
        ))
        .unwrap();
    let fetcher = HttpsPolicyFetcher::with_roots(roots, Duration::from_millis(300))
        .unwrap()
        .connect_to(addr);
    let started = std::time::Instant::now();
    assert!(matches!(
        fetcher.fetch("example.com").await,
        Err(FetchError::Timeout(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timed out in time"
    );
    hold.abort();
}
