//! The Alertmanager harness against real `prometheus-alertmanager` (Debian 0.25): a two-node
//! cluster on loopback gossips silences but not alerts, keeps alerts in memory only (a restarted
//! instance lists none until they are posted again) and gets its silences back after a graceful
//! stop or a crash; a single instance notifies its webhook of a firing, then a resolved alert.
//!
//! Needs the Debian `prometheus-alertmanager` package. Takes about 15 s.

use std::time::{Duration, SystemTime};

use mailpulse_tests::alertmanager::{self, AlertmanagerCluster, RECEIVER, alert, rfc3339};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
/// Alertmanager's fingerprint of {alertname="harness", severity="info"}, as 0.25 reported it:
/// FNV-1a 64 over the labels sorted by name, each as name 0xff value 0xff, in 16 hex digits.
const HARNESS_FINGERPRINT: &str = "b82152f6f61cb19b";

fn harness_alert() -> Value {
    let now = SystemTime::now();
    json!([{
        "labels": {"alertname": "harness", "severity": "info"},
        "annotations": {"summary": "x"},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + Duration::from_secs(300)),
        "generatorURL": "http://127.0.0.1/x",
    }])
}

fn is_harness(alert: &Value) -> bool {
    alert["labels"] == json!({"alertname": "harness", "severity": "info"})
}

fn silenced(alerts: &[Value], silence: &str) -> bool {
    alerts.iter().any(|a| {
        is_harness(a)
            && a["status"]["state"] == "suppressed"
            && a["status"]["silencedBy"] == json!([silence])
    })
}

fn has_silence(silences: &[Value], id: &str) -> bool {
    silences
        .iter()
        .any(|s| s["id"] == id && s["status"]["state"] == "active")
}

#[tokio::test]
async fn cluster_gossips_silences_not_alerts_and_survives_restarts() {
    assert!(
        alertmanager::available(),
        "this test needs the Debian prometheus-alertmanager package"
    );
    let mut cluster = AlertmanagerCluster::start(2, None);
    for i in 0..2 {
        let peers = cluster.status(i).await["cluster"]["peers"].clone();
        assert_eq!(
            peers.as_array().map(Vec::len),
            Some(2),
            "instance {i} should see both peers: {peers}"
        );
    }

    cluster.post_alerts(0, &harness_alert()).await;
    let alerts = cluster
        .wait_for(0, "the harness alert", WAIT, |a| a.iter().any(is_harness))
        .await;
    let listed = alerts.iter().find(|a| is_harness(a)).expect("just found");
    assert_eq!(listed["fingerprint"], HARNESS_FINGERPRINT, "{listed}");
    assert_eq!(listed["annotations"], json!({"summary": "x"}), "{listed}");
    assert_eq!(listed["status"]["state"], "active", "{listed}");
    assert_eq!(listed["receivers"], json!([{"name": RECEIVER}]), "{listed}");

    // A silence made on instance 0 reaches instance 1 by gossip...
    let now = SystemTime::now();
    let silence = cluster
        .post_silence(
            0,
            &json!({
                "matchers": [{"name": "alertname", "value": "harness", "isRegex": false, "isEqual": true}],
                "startsAt": rfc3339(now),
                "endsAt": rfc3339(now + Duration::from_secs(300)),
                "createdBy": "mailpulse-tests",
                "comment": "harness",
            }),
        )
        .await;
    cluster
        .wait_for_silences(1, "the silence made on instance 0", WAIT, |s| {
            has_silence(s, &silence)
        })
        .await;
    // ...but the alert posted to instance 0 before it did not: alerts are never gossiped.
    assert_eq!(
        cluster.alerts(1).await,
        Vec::<Value>::new(),
        "instance 1 should list no alert: only instance 0 was sent one"
    );

    // Posted to instance 1 too (as Prometheus posts to every Alertmanager), the alert has the same
    // fingerprint there and the gossiped silence suppresses it.
    cluster.post_alerts(1, &harness_alert()).await;
    let alerts = cluster
        .wait_for(1, "the harness alert, silenced", WAIT, |a| {
            silenced(a, &silence)
        })
        .await;
    assert_eq!(alerts[0]["fingerprint"], HARNESS_FINGERPRINT);

    // A graceful stop writes the silences to storage; the restarted instance lists no alert
    // (they live in memory) until it is sent them again, and its silence is back.
    cluster.stop(1);
    let snapshot = cluster.root().join("am1/data/silences");
    assert!(
        std::fs::metadata(&snapshot).is_ok_and(|m| m.len() > 0),
        "a stopped instance should have written {}",
        snapshot.display()
    );
    cluster.restart(1).await;
    assert_eq!(
        cluster.alerts(1).await,
        Vec::<Value>::new(),
        "a restarted instance should hold no alerts"
    );
    cluster
        .wait_for_silences(1, "the silence after a restart", WAIT, |s| {
            has_silence(s, &silence)
        })
        .await;
    cluster.post_alerts(1, &harness_alert()).await;
    cluster
        .wait_for(1, "the re-sent harness alert, silenced", WAIT, |a| {
            silenced(a, &silence)
        })
        .await;

    // The seed instance crashes (nothing written) and rejoins: it gets the silence from its peer.
    cluster.kill(0);
    cluster.restart(0).await;
    cluster
        .wait_for_silences(0, "the silence from its peer after a crash", WAIT, |s| {
            has_silence(s, &silence)
        })
        .await;
    assert_eq!(cluster.alerts(0).await, Vec::<Value>::new());
}

#[tokio::test]
async fn single_instance_notifies_the_webhook_of_firing_then_resolved() {
    assert!(
        alertmanager::available(),
        "this test needs the Debian prometheus-alertmanager package"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("local addr"));
    let (tx, mut notifications) = mpsc::unbounded_channel();
    let sink = tokio::spawn(async move {
        // Bounded: this test expects two notifications; Alertmanager may repeat one.
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if let Some(body) = read_post(stream).await
                && tx.send(body).is_err()
            {
                return;
            }
        }
    });
    let cluster = AlertmanagerCluster::start(1, Some(&hook));
    assert_eq!(cluster.status(0).await["cluster"]["status"], "disabled");

    let labels = [("alertname", "webhooked"), ("severity", "warning")];
    let firing = alert(&labels, &[("summary", "y")], Duration::from_secs(300));
    cluster.post_alerts(0, &json!([firing])).await;
    let first = next_notification(&mut notifications, "firing").await;
    assert_eq!(first["version"], "4", "{first}");
    assert_eq!(first["receiver"], RECEIVER, "{first}");
    assert_eq!(first["alerts"][0]["labels"]["alertname"], "webhooked");
    let fingerprint = first["alerts"][0]["fingerprint"].clone();
    assert!(
        fingerprint.as_str().is_some_and(|f| f.len() == 16),
        "{first}"
    );

    // Resolving is sending the alert again with endsAt = now.
    let mut resolved = firing.clone();
    resolved["endsAt"] = Value::from(rfc3339(SystemTime::now()));
    cluster.post_alerts(0, &json!([resolved])).await;
    let last = next_notification(&mut notifications, "resolved").await;
    assert_eq!(last["alerts"][0]["fingerprint"], fingerprint, "{last}");
    cluster
        .wait_for(0, "no unresolved alert", WAIT, <[Value]>::is_empty)
        .await;
    sink.abort();
}

/// The next webhook payload whose `status` is `status` (earlier ones, repeats, are skipped).
async fn next_notification(rx: &mut mpsc::UnboundedReceiver<Value>, status: &str) -> Value {
    let wanted = async {
        while let Some(payload) = rx.recv().await {
            if payload["status"] == status {
                return Some(payload);
            }
        }
        None
    };
    tokio::time::timeout(WAIT, wanted)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("expected a {status:?} webhook notification within {WAIT:?}"))
}

/// Reads one HTTP request (head, then a Content-Length body), answers 200 and returns the body.
async fn read_post(mut stream: TcpStream) -> Option<Value> {
    let read = async {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        // Bounded: a webhook payload here is a few kB.
        for _ in 0..256 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })?;
                if body.len() >= length {
                    return serde_json::from_str(body).ok();
                }
            }
        }
        None
    };
    let payload = tokio::time::timeout(WAIT, read).await.ok().flatten();
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    payload
}
