//! Alerts reach people: a collector (in process, 1-second windows) learns ten minutes of a
//! bounce counter, then a bounce storm arrives. Both Alertmanagers of a clustered pair
//! (prometheus-alertmanager, loopback) list the alert with its labels and annotations, and it
//! resolves there after the storm; an Alertmanager stopped during the incident gets the alert
//! once it is back. A webhook receiver verifies each payload's HMAC (a tampered body is
//! refused) and sees one "firing" and one "resolved" with the same fingerprint, across a
//! restart of the collector in the middle of the incident (the state is in its store).

#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;
#[path = "support/webhook.rs"]
mod webhook;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpulse_collector::CollectorConfig;
use mailpulse_collector::alerting::notify::WebhookTarget;
use mailpulse_tests::alertmanager::{self, AlertmanagerCluster};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::*;
use webhook::{Received, receiver};

const SECRET: &str = "webhook-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn collector_config(
    dir: &std::path::Path,
    ams: &AlertmanagerCluster,
    hook: &str,
) -> CollectorConfig {
    let urls: Vec<String> = (0..ams.len()).map(|i| ams.url(i)).collect();
    let mut cfg = second_windows_config(dir, &urls);
    cfg.detect.resolve_after_windows = 3;
    cfg.alerting.resend_interval_secs = 1;
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    cfg.alerting.webhooks = vec![WebhookTarget {
        url: hook.to_owned(),
        receiver: "ops".into(),
        secret_file: secret,
        tls: Default::default(),
        timeout_secs: 2,
        max_attempts: 5,
    }];
    cfg
}

/// Polls `received` until `pred` holds (bounded by WAIT).
async fn wait_received(received: &Mutex<Received>, what: &str, pred: impl Fn(&Received) -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if pred(&received.lock().expect("lock")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = received.lock().expect("lock");
    panic!(
        "webhook: {what} not seen within {WAIT:?}: {:#?}",
        r.payloads
    );
}

fn ours(alerts: &[Value]) -> Option<&Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "messages_bounced")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_storm_reaches_both_alertmanagers_and_a_signed_webhook_once() {
    assert!(
        alertmanager::available(),
        "this test needs the Debian prometheus-alertmanager package"
    );
    let mut ams = AlertmanagerCluster::start(2, None);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = tokio::spawn(receiver(listener, SECRET.to_owned(), received.clone()));

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = collector_config(dir.path(), &ams, &hook);
    let collector = start(cfg.clone()).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;

    // Ten minutes of history, then a storm from 8 s ahead for 40 s, then ordinary traffic
    // for a minute: windows ahead of now are judged as they end.
    let now = now_secs();
    let storm = now + 8..now + 48;
    let samples = bounce_traffic("gmail.com", now - 600..now + 110, storm.clone(), 11);
    for (seq, chunk) in (1..).zip(samples.chunks(500)) {
        agent
            .batch(seq, chunk.to_vec())
            .await
            .expect("batch applied");
    }

    // Both Alertmanagers list it, with its labels and annotations.
    for i in 0..2 {
        let alerts = ams
            .wait_for(i, "the bounce alert", WAIT, |a| ours(a).is_some())
            .await;
        let alert = ours(&alerts).expect("listed");
        assert_eq!(alert["labels"]["host"], "mx1.example", "{alert}");
        assert_eq!(alert["labels"]["domain"], "gmail.com", "{alert}");
        assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
        let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.starts_with("messages_bounced gmail.com on mx1.example: 2000 in 1 s, expected"),
            "{alert}"
        );
        assert!(
            alert["annotations"]["recommendation"]
                .as_str()
                .is_some_and(|r| r.starts_with("Mail to gmail.com")),
            "{alert}"
        );
        assert!(
            alert["annotations"]["runbook_url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/runbooks/messages_bounced.md")),
            "{alert}"
        );
        assert!(
            alert["generatorURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "{alert}"
        );
    }
    let stored = ours(&ams.alerts(0).await).expect("listed").clone();
    println!("as Alertmanager stores it:\n{stored:#}");
    let fingerprint = stored["fingerprint"].clone();

    // The webhook got the firing, signed; a tampered body with that signature is refused.
    wait_received(&received, "firing", |r| {
        r.payloads.iter().any(|p| p["status"] == "firing")
    })
    .await;
    let firing = received.lock().expect("lock").payloads[0].clone();
    println!("webhook payload:\n{firing:#}");
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["receiver"], "ops");
    assert_eq!(firing["alerts"][0]["fingerprint"], fingerprint, "{firing}");
    let tampered = tamper(&hook, &firing).await;
    assert_eq!(tampered, 401, "a tampered body is refused");

    // The runbook the alert links is served by the collector.
    let (status, runbook) = http_get(collector.http_addr(), "/runbooks/messages_bounced.md").await;
    assert_eq!(status, 200);
    assert!(runbook.starts_with("# messages_bounced"), "{runbook}");

    // One Alertmanager goes down during the incident; the collector restarts (kill -9 kind:
    // nothing but the store survives) while the alert fires.
    ams.stop(1);
    drop(agent);
    collector.abandon().await;
    let collector = start(cfg.clone()).await;
    ams.restart(1).await;
    ams.wait_for(1, "the alert again after its restart", WAIT, |a| {
        ours(a).is_some()
    })
    .await;

    // The storm ends: both resolve it, and the webhook got exactly one firing and one resolved.
    for i in 0..2 {
        ams.wait_for(i, "the alert resolved", Duration::from_secs(90), |a| {
            ours(a).is_none()
        })
        .await;
    }
    wait_received(&received, "resolved", |r| {
        r.payloads.iter().any(|p| p["status"] == "resolved")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (payloads, refused) = {
        let r = received.lock().expect("lock");
        (r.payloads.clone(), r.refused)
    };
    let statuses: Vec<(&str, &str)> = payloads
        .iter()
        .map(|p| {
            (
                p["status"].as_str().unwrap_or_default(),
                p["alerts"][0]["fingerprint"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let fp = fingerprint.as_str().unwrap_or_default();
    assert_eq!(
        statuses,
        [("firing", fp), ("resolved", fp)],
        "{payloads:#?}"
    );
    assert_eq!(refused, 1, "only the tampered request");
    collector.shutdown().await.expect("clean shutdown");
    sink.abort();
}

/// POSTs `payload` with a valid signature of another body; returns the HTTP status.
async fn tamper(hook: &str, payload: &Value) -> u16 {
    let addr = hook
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let signed = serde_json::to_vec(payload).expect("json");
    let secs = now_secs();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut message = format!("{secs}.").into_bytes();
    message.extend_from_slice(&signed);
    let tag: String = ring::hmac::sign(&key, &message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut body = signed.clone();
    if let Some(i) = body.iter().position(|&b| b == b'f') {
        body[i] = b'F';
    }
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /hook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-mailpulse-signature: t={secs},v1={tag}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
