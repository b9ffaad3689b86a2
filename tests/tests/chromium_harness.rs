//! The Chromium harness against real Debian `chromium` and `chromedriver`: a page served from
//! loopback loads, an element is waited for and clicked, the script's changes show (a new text, a
//! new table row), `execute` returns values and takes elements, typing reaches an input, a
//! `confirm()` dialog is dismissed then accepted, a wait that runs out quotes the page, the console
//! is read, a screenshot is a real PNG, and dropping the browser leaves no chromedriver or
//! Chromium process behind.
//!
//! Needs the Debian `chromium` and `chromium-driver` packages. Takes about 2 s.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mailpulse_tests::chromium::{self, Browser};
use mailpulse_tests::net::poll_until;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
/// How long the page server runs at most, whatever happens to the test.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A page with a button that changes a text and adds a row, a button behind a `confirm()`, an
/// input and an inline SVG chart.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mailpulse harness</title>
<style>
  body { font-family: sans-serif; margin: 2em; }
  td { border: 1px solid #999; padding: 4px 8px; }
</style>
</head>
<body>
<h1 id="status">waiting</h1>
<button id="add">Add a row</button>
<button id="remove">Remove the first row</button>
<input id="name" value="" placeholder="name">
<table id="rows"><tbody><tr><td>row 1</td></tr></tbody></table>
<svg id="chart" width="400" height="200" viewBox="0 0 400 200" role="img" aria-label="deliveries">
  <rect x="0" y="0" width="400" height="200" fill="#eef"/>
  <polyline points="0,180 80,120 160,140 240,60 320,90 400,20" fill="none" stroke="#c30" stroke-width="4"/>
  <circle cx="240" cy="60" r="8" fill="#36c"/>
</svg>
<script>
  let rows = 1;
  document.getElementById("add").addEventListener("click", () => {
    rows += 1;
    const row = document.createElement("tr");
    row.innerHTML = "<td>row " + rows + "</td>";
    document.querySelector("#rows tbody").appendChild(row);
    document.getElementById("status").textContent = "clicked, " + rows + " rows";
    console.log("row " + rows + " added");
  });
  document.getElementById("remove").addEventListener("click", () => {
    if (confirm("Remove the first row?")) {
      document.querySelector("#rows tr").remove();
      document.getElementById("status").textContent = "removed";
    } else {
      document.getElementById("status").textContent = "kept";
    }
  });
</script>
</body>
</html>
"##;

/// Serves [`PAGE`] at `/` (404 elsewhere) from a loopback listener on a thread of its own, until
/// dropped or `SERVER_LIFETIME` has passed.
struct PageServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the page server");
        let port = listener.local_addr().expect("its address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            while !stopped.load(Ordering::Relaxed) && start.elapsed() < SERVER_LIFETIME {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("the page server cannot accept: {e}"),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request: the page for `GET /`, 404 for anything else.
fn serve(mut stream: std::net::TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: at most 16 KiB of request head, each read at most 5 s.
    while request.len() < 16 * 1024 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    let (status, content_type, body) = if head.starts_with("GET / ") {
        ("200 OK", "text/html; charset=utf-8", PAGE)
    } else {
        ("404 Not Found", "text/plain", "not found\n")
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn drives_a_page_and_leaves_no_process_behind() {
    assert!(
        chromium::available(),
        "this test needs the Debian chromium and chromium-driver packages"
    );
    let server = PageServer::start();
    let artefacts = chromium::artefacts_dir("chromium_harness");
    let browser = Browser::start(&artefacts);

    browser.goto(&server.url());
    assert_eq!(browser.title(), "mailpulse harness");
    assert_eq!(browser.current_url(), server.url());
    assert_eq!(browser.find("#missing"), None);

    // Clicking changes the text and adds a row.
    let add = browser.wait_for("#add", WAIT);
    assert_eq!(browser.text(&add), "Add a row");
    browser.click(&add);
    let status = browser.wait_for_text("#status", "clicked", WAIT);
    assert_eq!(status, "clicked, 2 rows");
    let rows = browser.find_all("#rows tr");
    assert_eq!(rows.len(), 2, "{}", browser.source());
    assert_eq!(browser.text(&rows[1]), "row 2");

    // Scripts see the page, get arguments (elements too) and return JSON.
    let counted = browser.execute(
        "return document.querySelectorAll('#rows tr').length + arguments[0];",
        vec![json!(40)],
    );
    assert_eq!(counted, json!(42));
    let chart = browser.wait_for("#chart", WAIT);
    let size = browser.execute(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
        vec![chart.to_json()],
    );
    assert_eq!(size, json!([400, 200]), "the inline SVG is laid out");
    assert_eq!(
        browser.attribute(&chart, "viewBox").as_deref(),
        Some("0 0 400 200")
    );
    assert_eq!(browser.attribute(&chart, "data-missing"), None);
    assert!(
        browser.source().contains("<polyline"),
        "the source holds the SVG"
    );

    // Typing reaches the input.
    let name = browser.wait_for("#name", WAIT);
    browser.send_keys(&name, "postmaster@example.org");
    assert_eq!(
        browser.property(&name, "value"),
        json!("postmaster@example.org")
    );
    assert_eq!(browser.attribute(&name, "value").as_deref(), Some(""));

    // A confirm() dialog: Cancel keeps the row, OK removes it.
    let remove = browser.wait_for("#remove", WAIT);
    browser.click(&remove);
    assert_eq!(
        browser.alert_text().as_deref(),
        Some("Remove the first row?")
    );
    assert_eq!(browser.dismiss_alert(), "Remove the first row?");
    browser.wait_for_text("#status", "kept", WAIT);
    assert_eq!(browser.find_all("#rows tr").len(), 2);
    browser.click(&remove);
    assert_eq!(browser.accept_alert(), "Remove the first row?");
    browser.wait_for_text("#status", "removed", WAIT);
    assert_eq!(browser.alert_text(), None);
    let rows = browser.find_all("#rows tr");
    assert_eq!(rows.len(), 1);
    assert_eq!(browser.text(&rows[0]), "row 2");

    // A wait that runs out names the selector and quotes the page.
    let timed_out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        browser.wait_for("#never", Duration::from_millis(300))
    }));
    let message = timed_out
        .err()
        .and_then(|payload| payload.downcast::<String>().ok())
        .expect("waiting for a missing element panics with a message");
    assert!(
        message.contains("no element matches \"#never\"")
            && message.contains("title: \"mailpulse harness\"")
            && message.contains("<body>"),
        "{message}"
    );

    // The console log has the page's message, once.
    let console = browser.console_log();
    assert!(
        console
            .iter()
            .any(|e| e.level == "INFO" && e.message.contains("row 2 added")),
        "{console:?}"
    );
    assert!(
        browser
            .console_log()
            .iter()
            .all(|e| !e.message.contains("row 2 added")),
        "console messages are handed out once"
    );

    // A screenshot is a PNG of the whole 1400 px wide viewport, written to the artefacts dir.
    let shot = browser.screenshot("page");
    assert_eq!(shot, artefacts.join("page.png"));
    let png = std::fs::read(&shot).expect("read the screenshot");
    assert!(
        png.starts_with(PNG_SIGNATURE),
        "{} is not a PNG",
        shot.display()
    );
    assert!(
        png.len() > 5_000,
        "{} is only {} bytes",
        shot.display(),
        png.len()
    );
    // IHDR: the width and height follow the signature, the chunk length and its type.
    assert_eq!(&png[12..16], b"IHDR", "{}", shot.display());
    let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
    assert_eq!(width, 1400, "screenshot width");
    assert!((500..=1000).contains(&height), "screenshot height {height}");

    // Dropping the browser ends chromedriver and Chromium.
    let driver = browser.driver_pid();
    let chrome = browser
        .browser_pid()
        .expect("chromedriver reports Chromium's process id");
    assert!(alive(chrome), "Chromium runs while the session does");
    drop(browser);
    assert!(!alive(driver), "chromedriver ({driver}) still runs");
    let gone = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (!alive(chrome)).then_some(())
    });
    assert!(gone.is_ok(), "Chromium ({chrome}) still runs");
    // Nor any of its helpers (renderers, GPU, crash handler): they all name the profile dir.
    let marker = format!("mailpulse-chromium-{}-", std::process::id());
    let strays = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let strays = processes_naming(&marker);
        strays.is_empty().then_some(())
    });
    assert!(
        strays.is_ok(),
        "processes still run with the browser's temp dir: {:?}",
        processes_naming(&marker)
    );
}

/// The live processes whose command line contains `marker`: (pid, command line).
fn processes_naming(marker: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| alive(pid))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(marker).then_some((pid, cmdline))
        })
        .collect()
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}
