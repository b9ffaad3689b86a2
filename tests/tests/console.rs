//! The web console in a real browser: headless Chromium (Debian `chromium` + `chromium-driver`,
//! over WebDriver) loads `/console/` from a collector holding two days of a simulated fleet
//! with incidents (`support/fleet.rs`). The fleet's agents are listed up; the bounce storm's
//! alert is listed, and selecting it shows its evidence, recommendation and a chart of its
//! series with the band; the approval its playbook waits for is refused without the API token,
//! then approved by a click once the token is given, and the approval shows in the audit log;
//! the DNS change the fleet saw is listed. Screenshots are kept in
//! `target/test-artefacts/console/`. A cross-origin POST with the right token is refused.

#[allow(dead_code)]
#[path = "support/fleet.rs"]
mod fleet;
#[allow(dead_code)]
#[path = "../../collector/tests/collector/support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use mailpulse_tests::chromium::{self, Browser};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = support::http_get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// POSTs to `path` with the API token and `origin`; returns the status.
async fn post_from(addr: SocketAddr, path: &str, origin: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        fleet::API_TOKEN
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_an_alert_with_its_chart_and_approves_an_action() {
    assert!(
        chromium::available(),
        "this test needs the Debian chromium and chromium-driver packages"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let seeded = fleet::seeded(dir.path()).await;
    let http = seeded.collector.http_addr();

    // What the page should show, from the API.
    let alerts = json(http, "/api/v1/alerts?limit=200").await;
    let storm = alerts
        .as_array()
        .and_then(|a| {
            a.iter().find(|a| {
                a["labels"]["alertname"] == "bounce_ratio" && a["labels"]["domain"] == "gmail.com"
            })
        })
        .unwrap_or_else(|| panic!("no bounce alert for gmail.com: {alerts:#}"))
        .clone();
    let fingerprint = storm["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let trace = json(http, &format!("/api/v1/alerts/{fingerprint}/series")).await;
    let points = trace["points"].as_array().map_or(0, Vec::len);
    assert!(points >= 12, "the alert's series: {trace}");
    let mut waiting = Value::Null;
    for _ in 0..60 {
        waiting = json(http, "/api/v1/actions").await["awaiting_approval"].clone();
        if waiting.as_array().is_some_and(|w| !w.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let run = waiting
        .as_array()
        .and_then(|w| {
            w.iter()
                .find(|r| r["playbook"] == "throttle-bouncing-destination")
        })
        .unwrap_or_else(|| panic!("no approval waits: {waiting:#}"))
        .clone();
    let id = run["id"].as_u64().expect("run id");

    // A page of another origin cannot approve, even with the token.
    let forged = post_from(
        http,
        &format!("/api/v1/actions/{id}/approve"),
        "http://evil.example",
    )
    .await;
    assert_eq!(forged, 403, "a cross-origin approval is refused");

    let url = format!("http://{http}/console/");
    let shots = chromium::artefacts_dir("console");
    let checked = tokio::task::spawn_blocking(move || {
        let browser = Browser::start(&shots);
        browser.goto(&url);
        browser.wait_for("body[data-loaded='true']", WAIT);
        assert_eq!(browser.title(), "mailpulse console");

        // Fleet: the three agents, up.
        browser.wait_for("#fleet tbody tr[data-agent='mx3']", WAIT);
        let fleet = browser.text(&browser.wait_for("#fleet tbody", WAIT));
        for host in fleet::HOSTS {
            assert!(fleet.contains(host), "{fleet}");
        }
        assert_eq!(fleet.matches("up").count(), 3, "{fleet}");

        // The alert, its evidence and its chart.
        let row = browser.wait_for(
            &format!("#alerts tr[data-fingerprint='{fingerprint}']"),
            WAIT,
        );
        assert!(
            browser.text(&row).contains("firing"),
            "{}",
            browser.text(&row)
        );
        browser.click(&row);
        browser.wait_for(
            &format!(
                "#alert-detail[data-fingerprint='{fingerprint}'] #chart svg.chart polygon.band"
            ),
            WAIT,
        );
        browser.wait_for("#chart svg.chart path.observed", WAIT);
        browser.wait_for("#chart svg.chart path.expected", WAIT);
        let outside = browser.execute(
            "return document.querySelectorAll('#chart svg.chart circle.outside').length",
            vec![],
        );
        assert!(
            outside.as_u64().is_some_and(|n| n >= 1),
            "the storm's windows are outside the band: {outside}"
        );
        let summary = browser.text(&browser.wait_for("#detail-summary", WAIT));
        assert!(summary.contains("gmail.com"), "{summary}");
        let recommendation = browser.text(&browser.wait_for("#detail-recommendation", WAIT));
        assert!(
            recommendation.starts_with("Mail to gmail.com"),
            "{recommendation}"
        );
        let caption = browser.text(&browser.wait_for("#chart-caption", WAIT));
        assert!(caption.contains("windows of 300 s"), "{caption}");
        browser.execute(
            "document.getElementById('alert-detail').scrollIntoView()",
            vec![],
        );
        let alert_shot = browser.screenshot("console-alert.png");

        // Approving without the token is refused by the page; with it, the click approves.
        let approve = format!("#pending button.approve[data-id='{id}']");
        browser.click(&browser.wait_for(&approve, WAIT));
        browser.wait_for_text("#decision", "Enter the API token", WAIT);
        let token = browser.wait_for("#token", WAIT);
        browser.send_keys(&token, fleet::API_TOKEN);
        browser.click(&browser.wait_for("#token-save", WAIT));
        browser.wait_for_text("#token-state", "token set", WAIT);
        browser.click(&browser.wait_for(&approve, WAIT));
        browser.wait_for_text("#decision", &format!("Action {id}: approved"), WAIT);
        let audit = browser.wait_for(
            &format!("#audit tbody tr[data-event='approved'][data-action='{id}']"),
            WAIT,
        );
        let audit_text = browser.text(&audit);
        assert!(audit_text.contains("throttle_destination"), "{audit_text}");
        assert!(
            browser.find(&approve).is_none(),
            "still waiting after approval"
        );

        // The DNS change history.
        let dns = browser.wait_for("#dns tbody tr", WAIT);
        let dns_text = browser.text(&dns);
        browser.execute(
            "document.getElementById('actions').scrollIntoView()",
            vec![],
        );
        let audit_shot = browser.screenshot("console-approved.png");
        (alert_shot, audit_shot, audit_text, dns_text)
    })
    .await
    .expect("browser");
    println!(
        "screenshots: {} {}\naudit: {}\ndns: {}",
        checked.0.display(),
        checked.1.display(),
        checked.2,
        checked.3
    );

    // The approval is in the audit log the API serves too.
    let audit = json(http, "/api/v1/audit?limit=200").await;
    let approved = audit.as_array().is_some_and(|a| {
        a.iter().any(|e| {
            e["event"] == "approved"
                && e["action_id"].as_str() == Some(id.to_string().as_str())
                && e["actor"] == "api"
        })
    });
    assert!(approved, "{audit:#}");
    drop(seeded.streams);
    seeded.collector.shutdown().await.expect("clean shutdown");
}
