//! A webhook receiver on loopback that checks each request's `X-Mailpulse-Signature`
//! (HMAC-SHA256 over "<t>.<body>" with the shared secret, t within 5 minutes): 200 and kept when
//! it verifies, 401 and counted when not.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// What the webhook receiver took: verified payloads, and refusals.
#[derive(Default)]
pub struct Received {
    pub payloads: Vec<Value>,
    pub refused: usize,
}

/// Checks `t=<secs>,v1=<hex>` against HMAC-SHA256(SECRET, "<secs>.<body>") and the time.
pub fn verified(secret: &str, signature: &str, body: &[u8]) -> bool {
    let mut parts = signature.split(',');
    let (Some(t), Some(v1)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else {
        return false;
    };
    let Ok(secs) = t.parse::<i64>() else {
        return false;
    };
    if (now_secs() - secs).abs() > 300 {
        return false;
    }
    let Some(tag) = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(v1.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{secs}.").into_bytes();
    message.extend_from_slice(body);
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

/// Serves the webhook: 200 for a verified payload, 401 otherwise (bounded: 200 requests).
pub async fn receiver(listener: TcpListener, secret: String, received: Arc<Mutex<Received>>) {
    for _ in 0..200 {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        handle(stream, &secret, &received).await;
    }
}

async fn handle(mut stream: TcpStream, secret: &str, received: &Mutex<Received>) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut request = None;
    // Bounded: payloads are a few kB.
    for _ in 0..256 {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&chunk[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if raw.len() >= end + 4 + length {
            let body = raw[end + 4..end + 4 + length].to_vec();
            request = Some((header("x-mailpulse-signature").unwrap_or_default(), body));
            break;
        }
    }
    let Some((signature, body)) = request else {
        return;
    };
    let ok = verified(secret, &signature, &body);
    {
        let mut r = received.lock().expect("lock");
        match serde_json::from_slice::<Value>(&body) {
            Ok(payload) if ok => r.payloads.push(payload),
            _ => r.refused += 1,
        }
    }
    let status = if ok { "200 OK" } else { "401 Unauthorized" };
    let _ = stream
        .write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
}
