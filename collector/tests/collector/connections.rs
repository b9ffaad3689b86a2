//! Connections that hold a slot without doing anything useful are closed within their timeout —
//! silent TCP, an HTTP/2 preface and nothing more, a stream that never says Hello, HTTP clients
//! that never finish their headers —, and each listener caps its open connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::support::*;

/// Reads (and drops whatever arrives) until the peer closes; the time that took. Panics when the
/// connection is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// Whether the connection is still open after `wait` (nothing arrives, no close).
async fn still_open(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return true,
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect")
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn grpc_connections_that_send_no_request_are_closed_within_the_handshake_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.grpc.handshake_timeout_secs = 1;
    let collector = start(config).await;

    let started = Instant::now();
    let mut silent = connect(collector.grpc_addr()).await;
    let mut preface_only = connect(collector.grpc_addr()).await;
    preface_only.write_all(H2_PREFACE).await.expect("preface");
    let mut half_preface = connect(collector.grpc_addr()).await;
    half_preface
        .write_all(&H2_PREFACE[..10])
        .await
        .expect("bytes");
    for (what, stream) in [
        ("silent", &mut silent),
        ("preface only", &mut preface_only),
        ("half a preface", &mut half_preface),
    ] {
        closed_within(stream, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}"
        );
    }
    // A real agent is not affected: its first request comes at once.
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    assert_eq!(
        agent
            .batch(1, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (1, false)
    );
    // And it stays open past the handshake timeout.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        agent
            .batch(2, vec![counter("messages_sent", &[], 1.0)])
            .await
            .expect("ack"),
        (2, false)
    );
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_connections_timed_out_total{listener=\"grpc\"}"
        ),
        Some(3.0),
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_stream_that_never_says_hello_is_ended_within_the_hello_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.grpc.hello_timeout_secs = 1;
    let collector = start(config).await;
    let mut client = client(collector.grpc_addr()).await;
    let mut stream = AgentStream::open(&mut client, Some(TOKEN_MX1))
        .await
        .expect("opens");
    let started = Instant::now();
    let status = stream.next_ack().await.expect_err("ended");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = scrape(&collector).await;
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_rejections_total{reason=\"hello_timeout\"}"
        ),
        Some(1.0),
        "{text}"
    );
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_grpc_connection_cap_refuses_the_next_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.grpc.max_connections = 3;
    config.grpc.handshake_timeout_secs = 60;
    let collector = start(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(collector.grpc_addr()).await);
    }
    // Accepted in order: give the listener a moment to take the three.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect(collector.grpc_addr()).await;
    closed_within(&mut fourth, Duration::from_secs(2)).await;
    for stream in &mut held {
        assert!(still_open(stream, Duration::from_millis(100)).await);
    }
    // A slot given back is usable again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(Ok(channel)) = tokio::time::timeout(
            Duration::from_secs(2),
            tonic::transport::Channel::from_shared(format!("http://{}", collector.grpc_addr()))
                .expect("uri")
                .connect(),
        )
        .await
        else {
            continue;
        };
        let mut client =
            mailpulse_proto::v1::agent_service_client::AgentServiceClient::new(channel);
        if let Ok(mut stream) = AgentStream::open(&mut client, Some(TOKEN_MX1)).await {
            stream.send(hello("mx1", "mx1.example")).await;
            if stream
                .batch(1, vec![counter("messages_sent", &[], 1.0)])
                .await
                .is_ok()
            {
                served = true;
                break;
            }
        }
    }
    assert!(served, "a freed slot serves an agent");
    let text = scrape(&collector).await;
    let refused = value(
        &text,
        "mailpulse_collector_connections_refused_total{listener=\"grpc\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    // Connections still in their handshake would hold shutdown up to its grace period.
    drop(held);
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn http_clients_that_do_not_finish_their_headers_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.http.header_read_timeout_secs = 1;
    let collector = start(config).await;
    let started = Instant::now();
    let mut silent = connect(collector.http_addr()).await;
    let mut partial = connect(collector.http_addr()).await;
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // A keep-alive connection idle after its first answer.
    let mut idle = connect(collector.http_addr()).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    for (what, stream) in [
        ("silent", &mut silent),
        ("partial headers", &mut partial),
        ("idle keep-alive", &mut idle),
    ] {
        closed_within(stream, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}"
        );
    }
    let (status, _) = http_get(collector.http_addr(), "/healthz").await;
    assert_eq!(status, 200);
    collector.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_http_connection_cap_refuses_the_next_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.http.max_connections = 2;
    config.http.header_read_timeout_secs = 60;
    let collector = start(config).await;
    let mut held = vec![
        connect(collector.http_addr()).await,
        connect(collector.http_addr()).await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect(collector.http_addr()).await;
    closed_within(&mut third, Duration::from_secs(2)).await;
    for stream in &mut held {
        assert!(still_open(stream, Duration::from_millis(100)).await);
    }
    drop(held);
    let mut answered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut stream = connect(collector.http_addr()).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await;
        if response.starts_with(b"HTTP/1.1 200") {
            answered = true;
            break;
        }
    }
    assert!(answered, "freed slots serve again");
    let text = scrape(&collector).await;
    let refused = value(
        &text,
        "mailpulse_collector_connections_refused_total{listener=\"http\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    collector.shutdown().await.expect("clean shutdown");
}
