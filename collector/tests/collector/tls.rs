//! mTLS: a client without a certificate cannot connect when one is required.

use std::path::Path;

use mailpulse_collector::TlsConfig;
use mailpulse_proto::v1::agent_service_client::AgentServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::support::*;

struct Pki {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// Writes a CA, a server certificate for localhost/127.0.0.1 and returns a client certificate.
fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailpulse test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");

    let server_key = KeyPair::generate().expect("key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .expect("server cert");

    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(vec!["mx1".to_string()]).expect("params");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params
        .signed_by(&client_key, &ca)
        .expect("client cert");

    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server_cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
    Pki {
        ca_pem: ca.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

async fn tls_client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    with_cert: bool,
) -> Result<AgentServiceClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if with_cert {
        tls = tls.identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        ));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AgentServiceClient::new(channel))
}

#[tokio::test]
async fn mtls_required_refuses_clients_without_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let mut config = config(dir.path());
    config.tls = Some(TlsConfig {
        cert_path: dir.path().join("server.pem"),
        key_path: dir.path().join("server.key"),
        client_ca_path: Some(dir.path().join("ca.pem")),
        require_client_cert: true,
    });
    let collector = start(config).await;
    let addr = collector.grpc_addr();

    // Without a client certificate: the handshake (or the first call) fails.
    let refused = match within("TLS connect without cert", tls_client(addr, &pki, false)).await {
        Err(_) => true,
        Ok(mut client) => AgentStream::open(&mut client, Some(TOKEN_MX1))
            .await
            .is_err(),
    };
    assert!(refused, "a client without certificate must not get through");

    // With one: works end to end.
    let mut client = within("TLS connect with cert", tls_client(addr, &pki, true))
        .await
        .expect("mTLS handshake");
    let mut agent = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("stream opens");
    agent.send(hello("mx1", "mx1.example")).await;
    assert_eq!(
        agent
            .batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (1, false)
    );
    // Still serving after the failed handshake.
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, "mailpulse_messages_sent_total{host=\"mx1.example\"}"),
        Some(1.0)
    );
    collector.shutdown().await.expect("clean shutdown");
}

fn mtls_config(dir: &Path) -> mailpulse_collector::CollectorConfig {
    let mut config = config(dir);
    config.tls = Some(TlsConfig {
        cert_path: dir.join("server.pem"),
        key_path: dir.join("server.key"),
        client_ca_path: Some(dir.join("ca.pem")),
        require_client_cert: true,
    });
    config
}

#[tokio::test]
async fn a_client_certificate_must_name_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let collector = start(mtls_config(dir.path())).await;
    let addr = collector.grpc_addr();

    // mx1's certificate with mx2's token: refused before anything is read.
    let mut client = within("TLS connect with cert", tls_client(addr, &pki, true))
        .await
        .expect("mTLS handshake");
    let status = match AgentStream::open(&mut client, Some(TOKEN_MX2)).await {
        Err(status) => status,
        Ok(mut stream) => {
            stream.send(hello("mx2", "mx2.example")).await;
            stream.next_ack().await.expect_err("refused")
        }
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("mx2"), "{status:?}");

    // The same certificate with its own agent's token works.
    let mut agent = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("stream opens");
    agent.send(hello("mx1", "mx1.example")).await;
    assert_eq!(
        agent
            .batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (1, false)
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_tls_handshake_that_stalls_is_abandoned_within_the_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let mut config = mtls_config(dir.path());
    config.grpc.handshake_timeout_secs = 1;
    let collector = start(config).await;
    let mut stalled = within(
        "connect",
        tokio::net::TcpStream::connect(collector.grpc_addr()),
    )
    .await
    .expect("connect");
    // A TLS record header announcing a 512-byte ClientHello, and only the first bytes of it.
    stalled
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 5 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // An agent that completed its handshake and made a request stays connected past it.
    let mut client = within(
        "TLS connect with cert",
        tls_client(collector.grpc_addr(), &pki, true),
    )
    .await
    .expect("mTLS handshake");
    let mut agent = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("stream opens");
    agent.send(hello("mx1", "mx1.example")).await;
    for seq in 1..=2 {
        let ack = agent
            .batch(seq, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack");
        assert_eq!(ack, (seq, false));
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    }
    collector.shutdown().await.expect("clean shutdown");
}
