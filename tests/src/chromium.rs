//! A headless Chromium for tests of mailpulse's web pages, driven over the W3C WebDriver protocol.
//!
//! What: [`Browser::start`] runs Debian's `chromedriver` on a free loopback port (its output in a
//! log file of a temp dir), waits until `/status` says it is ready, and opens one session of
//! `/usr/bin/chromium` (`--headless=new`, a fresh profile in the same temp dir, a 1400×1000
//! window). The methods are the few WebDriver commands page tests need: navigate
//! ([`Browser::goto`]), find and wait for elements by CSS selector, read their text and
//! attributes, click, type, run a script, accept or dismiss a `confirm()` dialog, read the console
//! and take screenshots.
//!
//! The API is blocking (std sockets, HTTP/1.1 with `Connection: close`, one request per
//! connection). A `#[tokio::test]` moves the [`Browser`] into `tokio::task::spawn_blocking` (it is
//! `Send`) or drives it from a thread of its own, so the runtime keeps serving the product under
//! test.
//!
//! Artefacts: screenshots go to the directory given to [`Browser::start`]. Integration tests pass
//! [`artefacts_dir`]`("<test>")`, that is `target/test-artefacts/<test>/`, so a failed run leaves
//! its pictures next to the build. When a test panics while a [`Browser`] is alive, dropping it
//! also saves `failure.png` and `failure.html` (the page source) there.
//!
//! Invariants: loopback only; every wait is bounded (`STARTUP_TIMEOUT`, `HTTP_TIMEOUT`, the
//! session's page-load and script timeouts, and the caller's timeout in [`Browser::wait_for`]);
//! Drop ends the session (Chromium exits), kills and reaps `chromedriver`, and removes the temp
//! dir. Failures panic with the command, chromedriver's error and the tail of its log. Needs the
//! Debian `chromium` and `chromium-driver` packages.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::net::{free_port, loopback, poll_until};

/// The browser binary the session runs (Debian's launcher script).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer `/status` with `ready: true`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one WebDriver command may take; above the session's page-load timeout, so a slow
/// page is reported by chromedriver rather than by a silent socket.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long commands may take while a [`Browser`] is dropped (ending the session, failure
/// artefacts).
const DROP_TIMEOUT: Duration = Duration::from_secs(10);
/// The session's page-load timeout (`goto` fails after it) and script timeout, in milliseconds.
const PAGE_LOAD_TIMEOUT_MS: u64 = 30_000;
const SCRIPT_TIMEOUT_MS: u64 = 10_000;
/// How long [`Browser::accept_alert`] and [`Browser::dismiss_alert`] wait for a dialog to open.
const ALERT_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many ports [`Browser::start`] tries when chromedriver exits at once (the port was taken).
const START_ATTEMPTS: usize = 3;
/// How much of chromedriver's log and of a page's source a panic message quotes.
const LOG_TAIL_BYTES: usize = 4000;
const SOURCE_EXCERPT_BYTES: usize = 3000;
/// The largest answer read from chromedriver (a full-window screenshot is well below).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The key of a W3C web element reference in JSON (`{"element-6066-…": "<id>"}`).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's switches: headless, no sandbox (tests may run as root), nothing that phones home
/// or updates itself, a fixed window size. `--user-data-dir` is added per session.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
];

/// Whether the Chromium and chromedriver executables are installed.
pub fn available() -> bool {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .all(|path| executable(Path::new(path)))
}

/// `target/test-artefacts/<test>/`, created: where the integration test `test` keeps screenshots.
///
/// Found from the test executable's path (`target/<profile>/deps/<exe>`), so it follows
/// `CARGO_TARGET_DIR` like the build does.
pub fn artefacts_dir(test: &str) -> PathBuf {
    assert!(
        !test.is_empty() && !test.contains(['/', '\\']) && test != "." && test != "..",
        "an artefacts dir is named after a test, not a path: {test:?}"
    );
    let exe = std::env::current_exe().expect("the test executable knows its own path");
    // target/<profile>/deps/<test-exe> → target
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test executable lives in target/<profile>/deps/");
    let dir = target.join("test-artefacts").join(test);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create the artefacts dir {}: {e}", dir.display()));
    dir
}

/// A W3C web element reference: valid in its session until the page drops the element (commands
/// then fail with `stale element reference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElementId(String);

impl ElementId {
    /// The reference as JSON, for [`Browser::execute`]'s arguments (`arguments[i]` is the element).
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }

    fn from_json(value: &Value) -> Option<Self> {
        value[ELEMENT_KEY].as_str().map(|id| Self(id.to_string()))
    }
}

/// One browser console message (`console.log`, uncaught errors, failed loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleEntry {
    /// `DEBUG`, `INFO`, `WARNING` or `SEVERE` (`console.error` and uncaught exceptions).
    pub level: String,
    /// Where it came from and the text, e.g. `http://127.0.0.1:4000/ 12:8 "rows added"`.
    pub message: String,
}

/// A chromedriver process and one Chromium session; dropping it ends both.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Chromium's process id, as the session reported it (`goog:processID`).
    browser_pid: Option<u32>,
    artefacts: PathBuf,
    log: PathBuf,
    // The profile and chromedriver's log; removed after Drop::drop ended the session.
    dir: tempfile::TempDir,
}

/// Why a WebDriver command failed.
#[derive(Debug)]
enum Failure {
    /// chromedriver answered with a WebDriver error (`no such element`, `no such alert`, …).
    WebDriver { error: String, message: String },
    /// No answer, or not a WebDriver one.
    Transport(String),
}

impl Failure {
    fn is(&self, error: &str) -> bool {
        matches!(self, Failure::WebDriver { error: e, .. } if e == error)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // chromedriver's message repeats the error name first.
            Failure::WebDriver { error, message } if message.starts_with(error.as_str()) => {
                write!(f, "{message}")
            }
            Failure::WebDriver { error, message } => write!(f, "{error}: {message}"),
            Failure::Transport(what) => write!(f, "{what}"),
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; screenshots go to `artefacts_dir`
    /// (created if missing; integration tests pass [`artefacts_dir`]).
    ///
    /// Blocks until the session exists: about a second, at most `STARTUP_TIMEOUT` for
    /// chromedriver and `HTTP_TIMEOUT` for the session.
    pub fn start(artefacts_dir: &Path) -> Self {
        assert!(
            available(),
            "{CHROMIUM} or {CHROMEDRIVER} is missing: install the Debian chromium and \
             chromium-driver packages"
        );
        std::fs::create_dir_all(artefacts_dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the artefacts dir {}: {e}",
                artefacts_dir.display()
            )
        });
        let dir = tempfile::Builder::new()
            .prefix(&format!("mailpulse-chromium-{}-", std::process::id()))
            .tempdir()
            .expect("a temp dir for chromedriver's log and Chromium's profile");
        let log = dir.path().join("chromedriver.log");
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).expect("create Chromium's profile dir");

        let (driver, port) = spawn_driver(&log);
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            browser_pid: None,
            artefacts: artefacts_dir.to_path_buf(),
            log,
            dir,
        };
        // From here on Drop kills chromedriver, even when the session cannot be created.
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    // A dialog stays open until the test accepts or dismisses it; any other
                    // command meanwhile fails with `unexpected alert open`.
                    "unhandledPromptBehavior": "ignore",
                    "timeouts": {
                        "implicit": 0,
                        "pageLoad": PAGE_LOAD_TIMEOUT_MS,
                        "script": SCRIPT_TIMEOUT_MS,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let created = webdriver(
            browser.port,
            "POST",
            "/session",
            Some(&capabilities),
            HTTP_TIMEOUT,
        )
        .unwrap_or_else(|e| browser.fail(&format!("POST /session: {e}")));
        let Some(session) = created["sessionId"].as_str() else {
            browser.fail(&format!("POST /session: no sessionId in {created}"));
        };
        browser.session = session.to_string();
        browser.browser_pid = created["capabilities"]["goog:processID"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok());
        browser
    }

    /// Opens `url` and waits until it has loaded (`document.readyState` complete, at most the
    /// session's 30 s page-load timeout).
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The current page's URL.
    pub fn current_url(&self) -> String {
        self.string_command("GET", "/url")
    }

    /// The current page's `<title>`.
    pub fn title(&self) -> String {
        self.string_command("GET", "/title")
    }

    /// The current page's source, as the DOM serialises it now (scripts' changes included).
    pub fn source(&self) -> String {
        self.string_command("GET", "/source")
    }

    /// The first element matching the CSS selector `css`, if any (no waiting).
    pub fn find(&self, css: &str) -> Option<ElementId> {
        match self.try_find(css) {
            Ok(found) => found,
            Err(e) => self.fail(&format!("find {css:?}: {e}")),
        }
    }

    /// Every element matching the CSS selector `css`, in document order (no waiting).
    pub fn find_all(&self, css: &str) -> Vec<ElementId> {
        let found = self.command(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        found
            .as_array()
            .map(|list| list.iter().filter_map(ElementId::from_json).collect())
            .unwrap_or_else(|| self.fail(&format!("find all {css:?}: not a list: {found}")))
    }

    /// Polls every 100 ms until an element matches `css`, and returns the first; panics after
    /// `timeout` with the URL, the title and an excerpt of the page source (at once when the
    /// selector is invalid or chromedriver fails otherwise).
    pub fn wait_for(&self, css: &str, timeout: Duration) -> ElementId {
        let found = poll_until(timeout, POLL_INTERVAL, || match self.try_find(css) {
            Ok(None) => None,
            Ok(Some(element)) => Some(Ok(element)),
            Err(e) => Some(Err(e)),
        });
        match found {
            Ok(Ok(element)) => element,
            Ok(Err(e)) => self.fail_with_page(&format!("waiting for {css:?}: {e}")),
            Err(elapsed) => self.fail_with_page(&format!("no element matches {css:?} ({elapsed})")),
        }
    }

    /// Polls every 100 ms until an element matching `css` has a text containing `needle`, and
    /// returns that text; panics after `timeout` with the last text seen and a source excerpt.
    /// The element may be replaced meanwhile: the selector is looked up again on every poll.
    pub fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let mut last = String::from("no element matched");
        let found = poll_until(timeout, POLL_INTERVAL, || {
            let text = self.try_find(css).and_then(|found| match found {
                Some(element) => self
                    .try_command("GET", &format!("/element/{}/text", element.0), None)
                    .map(|v| v.as_str().map(str::to_string)),
                None => Ok(None),
            });
            match text {
                Ok(Some(text)) if text.contains(needle) => Some(Ok(text)),
                Ok(Some(text)) => {
                    last = format!("text {text:?}");
                    None
                }
                Ok(None) => {
                    last = "no element matched".to_string();
                    None
                }
                // The page replaced the element between the two commands.
                Err(e) if e.is("stale element reference") => None,
                Err(e) => Some(Err(e)),
            }
        });
        match found {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => self.fail_with_page(&format!("waiting for {needle:?} in {css:?}: {e}")),
            Err(elapsed) => self.fail_with_page(&format!(
                "no element matching {css:?} has a text containing {needle:?} ({elapsed}); \
                 last seen: {last}"
            )),
        }
    }

    /// The element's rendered text (what a user sees: hidden parts left out).
    pub fn text(&self, element: &ElementId) -> String {
        self.string_command("GET", &format!("/element/{}/text", element.0))
    }

    /// Clicks the element's centre, as a user would: it must be visible and not covered.
    pub fn click(&self, element: &ElementId) {
        self.command(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(&json!({})),
        );
    }

    /// The element's attribute `name` as the markup (or a script's `setAttribute`) set it, `None`
    /// when absent. Live state such as what was typed into an input is a property: see
    /// [`Self::property`].
    pub fn attribute(&self, element: &ElementId, name: &str) -> Option<String> {
        check_name(name);
        let value = self.command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        );
        match value {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The element's DOM property `name` (`value`, `checked`, `tagName`, …) as JSON, `null` when
    /// undefined.
    pub fn property(&self, element: &ElementId, name: &str) -> Value {
        check_name(name);
        self.command(
            "GET",
            &format!("/element/{}/property/{name}", element.0),
            None,
        )
    }

    /// Focuses the element and types `text` into it (appended to what it holds).
    pub fn send_keys(&self, element: &ElementId, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(&json!({ "text": text })),
        );
    }

    /// Runs `script` as the body of a function in the page (`arguments[i]` are `args`; pass
    /// elements with [`ElementId::to_json`]) and returns what it `return`s, as JSON (`null` for
    /// nothing; elements as references). Panics when the script throws.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Saves a PNG of the window's viewport as `<artefacts dir>/<name>.png` and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let file_name = artefact_file_name(name, "png");
        let png = self
            .try_screenshot(HTTP_TIMEOUT)
            .unwrap_or_else(|e| self.fail(&e));
        let path = self.artefacts.join(file_name);
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write the screenshot {}: {e}", path.display()));
        path
    }

    /// The text of the open `alert()`, `confirm()` or `prompt()` dialog, if one is open.
    pub fn alert_text(&self) -> Option<String> {
        match self.try_command("GET", "/alert/text", None) {
            Ok(text) => Some(text.as_str().unwrap_or_default().to_string()),
            Err(e) if e.is("no such alert") => None,
            Err(e) => self.fail(&format!("GET /alert/text: {e}")),
        }
    }

    /// Accepts the open dialog (OK of a `confirm()`), waiting up to 5 s for one to open; returns
    /// its text.
    pub fn accept_alert(&self) -> String {
        self.close_alert("accept")
    }

    /// Dismisses the open dialog (Cancel of a `confirm()`), waiting up to 5 s for one to open;
    /// returns its text.
    pub fn dismiss_alert(&self) -> String {
        self.close_alert("dismiss")
    }

    /// The browser console's messages since the previous call (chromedriver hands each out
    /// once), oldest first.
    pub fn console_log(&self) -> Vec<ConsoleEntry> {
        let entries = self.command("POST", "/se/log", Some(&json!({ "type": "browser" })));
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|entry| ConsoleEntry {
                        level: entry["level"].as_str().unwrap_or_default().to_string(),
                        message: entry["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_else(|| self.fail(&format!("the console log is not a list: {entries}")))
    }

    /// The directory screenshots are saved to.
    pub fn artefacts(&self) -> &Path {
        &self.artefacts
    }

    /// chromedriver's process id.
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// Chromium's (main) process id, when chromedriver reported it.
    pub fn browser_pid(&self) -> Option<u32> {
        self.browser_pid
    }

    /// Waits (bounded: `ALERT_TIMEOUT`) for a dialog, reads its text and closes it with `how`
    /// (`accept` or `dismiss`).
    fn close_alert(&self, how: &str) -> String {
        let path = format!("/alert/{how}");
        let closed = poll_until(ALERT_TIMEOUT, POLL_INTERVAL, || {
            // The text first: once closed, the dialog is gone.
            let text = match self.try_command("GET", "/alert/text", None) {
                Ok(text) => text.as_str().unwrap_or_default().to_string(),
                Err(e) if e.is("no such alert") => return None,
                Err(e) => return Some(Err(e)),
            };
            match self.try_command("POST", &path, Some(&json!({}))) {
                Ok(_) => Some(Ok(text)),
                Err(e) => Some(Err(e)),
            }
        });
        match closed {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => self.fail(&format!("POST {path}: {e}")),
            Err(elapsed) => {
                self.fail_with_page(&format!("POST {path}: no dialog opened ({elapsed})"))
            }
        }
    }

    fn try_find(&self, css: &str) -> Result<Option<ElementId>, Failure> {
        let found = self.try_command(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        match found {
            Ok(value) => ElementId::from_json(&value)
                .map(Some)
                .ok_or_else(|| Failure::Transport(format!("not an element reference: {value}"))),
            Err(e) if e.is("no such element") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_screenshot(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        let encoded = self
            .try_command_within("GET", "/screenshot", None, timeout)
            .map_err(|e| format!("GET /screenshot: {e}"))?;
        let encoded = encoded
            .as_str()
            .ok_or_else(|| "GET /screenshot: the answer is not a string".to_string())?;
        base64_decode(encoded).map_err(|e| format!("GET /screenshot: {e}"))
    }

    /// A session command whose answer must be a string.
    fn string_command(&self, method: &str, path: &str) -> String {
        match self.command(method, path, None) {
            Value::String(s) => s,
            other => self.fail(&format!("{method} {path}: expected a string, got {other}")),
        }
    }

    /// A session command (`path` below `/session/<id>`); its `value`, or a panic.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.try_command(method, path, body).unwrap_or_else(|e| {
            let sent = body.map(|b| format!(" {b}")).unwrap_or_default();
            self.fail(&format!("{method} {path}{sent}: {e}"))
        })
    }

    fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.try_command_within(method, path, body, HTTP_TIMEOUT)
    }

    fn try_command_within(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let full = format!("/session/{}{path}", self.session);
        webdriver(self.port, method, &full, body, timeout)
    }

    /// Panics with `what`, the current URL and title, and an excerpt of the page source.
    fn fail_with_page(&self, what: &str) -> ! {
        let page = |path: &str| match self.try_command_within("GET", path, None, DROP_TIMEOUT) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(e) => format!("({e})"),
        };
        let source = page("/source");
        let excerpt = source_excerpt(&source);
        panic!(
            "chromium: {what}\nURL: {}\ntitle: {:?}\n--- page source (excerpt) ---\n{excerpt}",
            page("/url"),
            page("/title"),
        );
    }

    /// Panics with `what` and the tail of chromedriver's log.
    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!(
            "chromium: {what}\n--- chromedriver's log ({}) ---\n{}",
            self.log.display(),
            tail(&log, LOG_TAIL_BYTES)
        );
    }

    /// SIGKILLs Chromium when the session could not be ended, if that pid still runs with this
    /// browser's profile (so a reused pid is left alone).
    fn kill_browser(&self) {
        let Some(pid) = self.browser_pid else {
            return;
        };
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| {
                let profile = self.dir.path().join("profile");
                String::from_utf8_lossy(&cmdline).contains(&*profile.to_string_lossy())
            })
            .unwrap_or(false);
        if ours {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Best effort, for a test that is panicking: the screenshot and source of the page it saw.
    fn save_failure_artefacts(&self) {
        if let Ok(png) = self.try_screenshot(DROP_TIMEOUT) {
            let _ = std::fs::write(self.artefacts.join("failure.png"), png);
        }
        if let Ok(Value::String(source)) =
            self.try_command_within("GET", "/source", None, DROP_TIMEOUT)
        {
            let _ = std::fs::write(self.artefacts.join("failure.html"), source);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            if std::thread::panicking() {
                self.save_failure_artefacts();
            }
            // Ending the session makes chromedriver quit Chromium and wait for it.
            let ended = self.try_command_within("DELETE", "", None, DROP_TIMEOUT);
            if ended.is_err() {
                self.kill_browser();
            }
        }
        let _ = self.driver.kill(); // SIGKILL
        let _ = self.driver.wait();
        // Let Chromium's processes leave the profile before the temp dir is removed.
        if let Some(pid) = self.browser_pid {
            let _ = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
                (!process_alive(pid)).then_some(())
            });
        }
    }
}

/// Spawns chromedriver on a free loopback port and waits until `/status` says it is ready;
/// tries another port when it exits at once (the port was taken meanwhile).
fn spawn_driver(log: &Path) -> (Child, u16) {
    let mut exits = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open chromedriver's log");
        let err = out.try_clone().expect("dup chromedriver's log");
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        let outcome = poll_until(STARTUP_TIMEOUT, POLL_INTERVAL, || {
            if let Ok(Some(status)) = driver.try_wait() {
                return Some(Err(status));
            }
            let ready = webdriver(port, "GET", "/status", None, Duration::from_secs(5))
                .is_ok_and(|status| status["ready"] == true);
            ready.then_some(Ok(()))
        });
        match outcome {
            Ok(Ok(())) => return (driver, port),
            Ok(Err(status)) => exits.push(format!("port {port}: {status}")),
            Err(elapsed) => {
                let _ = driver.kill();
                let _ = driver.wait();
                let text = std::fs::read_to_string(log).unwrap_or_default();
                panic!(
                    "chromedriver on port {port} was not ready ({elapsed}); its log ({}):\n{}",
                    log.display(),
                    tail(&text, LOG_TAIL_BYTES)
                );
            }
        }
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!(
        "chromedriver exited at start {START_ATTEMPTS} times ({}); its log ({}):\n{}",
        exits.join(", "),
        log.display(),
        tail(&text, LOG_TAIL_BYTES)
    );
}

/// One WebDriver request to chromedriver on `port`: the answer's `value`, or its error.
fn webdriver(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, Failure> {
    let (status, raw) = http(port, method, path, body, timeout).map_err(Failure::Transport)?;
    let answer: Value = serde_json::from_slice(&raw).map_err(|e| {
        Failure::Transport(format!(
            "HTTP {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        ))
    })?;
    let value = answer
        .get("value")
        .cloned()
        .ok_or_else(|| Failure::Transport(format!("HTTP {status}, no value: {answer}")))?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(Failure::WebDriver {
            error: error.to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        });
    }
    if status != 200 {
        return Err(Failure::Transport(format!("HTTP {status}: {answer}")));
    }
    Ok(value)
}

/// One HTTP/1.1 exchange on a fresh loopback connection (`Connection: close`): the status code
/// and the body, read up to its `Content-Length` (or to the end without one).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let io = |e: std::io::Error| format!("{method} {path} to 127.0.0.1:{port}: {e}");
    let mut stream =
        TcpStream::connect_timeout(&loopback(port), Duration::from_secs(5)).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let body = body.map(Value::to_string);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Accept: application/json\r\n"
    );
    if let Some(body) = &body {
        request.push_str(&format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.as_deref().unwrap_or_default());
    stream.write_all(request.as_bytes()).map_err(io)?;

    let mut raw = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut head_end = None;
    let mut expected = None;
    // Bounded: every read blocks at most `timeout`, and the answer at most MAX_ANSWER_BYTES.
    while raw.len() <= MAX_ANSWER_BYTES {
        if let (Some(end), Some(length)) = (head_end, expected)
            && raw.len() >= end + length
        {
            break;
        }
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if head_end.is_none()
            && let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n")
        {
            head_end = Some(at + 4);
            expected = content_length(&raw[..at]);
        }
    }
    let malformed = || {
        format!(
            "{method} {path}: malformed HTTP answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    };
    let end = head_end.ok_or_else(malformed)?;
    let status = std::str::from_utf8(&raw[..end])
        .ok()
        .and_then(|head| head.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(malformed)?;
    let mut body = raw[end..].to_vec();
    if let Some(length) = expected {
        if body.len() < length {
            return Err(format!(
                "{method} {path}: the answer ended after {} of {length} bytes",
                body.len()
            ));
        }
        body.truncate(length);
    }
    Ok((status, body))
}

/// The `Content-Length` of an HTTP head (chromedriver writes `Content-Length:N`, no space).
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// Decodes standard base64 (`A–Z a–z 0–9 + /`, `=` padding, whitespace ignored), as WebDriver
/// sends screenshots.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for (i, byte) in text.bytes().enumerate() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("not base64: byte {byte:#04x} at offset {i}")),
        };
        if padding > 0 {
            return Err(format!("base64 data after padding at offset {i}"));
        }
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // 2 or 4 leftover bits are the padding of a last group of 2 or 3 characters; 6 would be a
    // lone character, which encodes no whole byte.
    if bits >= 6 || padding > 2 {
        return Err("truncated base64".to_string());
    }
    Ok(out)
}

/// Panics unless `name` can be an attribute or property name in a URL path.
fn check_name(name: &str) {
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b)),
        "not an attribute or property name: {name:?}"
    );
}

/// `<name>.<ext>`, after checking `name` is a plain file name.
fn artefact_file_name(name: &str, ext: &str) -> String {
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.'),
        "an artefact name is letters, digits, '-', '_' and '.' (not first): {name:?}"
    );
    if name.ends_with(&format!(".{ext}")) {
        name.to_string()
    } else {
        format!("{name}.{ext}")
    }
}

/// At most `SOURCE_EXCERPT_BYTES` of a page's source, from `<body` when there is one.
fn source_excerpt(source: &str) -> &str {
    let start = source.find("<body").unwrap_or(0);
    let mut end = (start + SOURCE_EXCERPT_BYTES).min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    &source[start..end]
}

/// The last `max` bytes of `text` (cut at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut cut = text.len().saturating_sub(max);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

/// Whether `path` is a file someone may execute.
fn executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
        .unwrap_or(false)
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // pid (comm) state …: comm may hold spaces and parentheses.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_every_padding() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("iVBO\nRw0K").unwrap(), b"\x89PNG\r\n");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert!(base64_decode("Y").is_err());
        assert!(base64_decode("YQ=a").is_err());
        assert!(base64_decode("YQ!=").is_err());
    }

    #[test]
    fn content_length_ignores_case_and_spaces() {
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\nContent-Length:251\r\ncache-control:no-cache"),
            Some(251)
        );
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\ncontent-length: 7"),
            Some(7)
        );
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\nServer: x"), None);
    }

    #[test]
    fn artefact_names_are_plain_file_names() {
        assert_eq!(artefact_file_name("page", "png"), "page.png");
        assert_eq!(artefact_file_name("page.png", "png"), "page.png");
        let escape = std::panic::catch_unwind(|| artefact_file_name("../x", "png"));
        assert!(escape.is_err());
    }

    #[test]
    fn excerpts_start_at_the_body_and_stay_short() {
        let page = format!(
            "<head>{}</head><body>é{}",
            "s".repeat(50),
            "x".repeat(10_000)
        );
        let excerpt = source_excerpt(&page);
        assert!(excerpt.starts_with("<body>é"));
        assert!(excerpt.len() <= SOURCE_EXCERPT_BYTES);
        assert_eq!(tail("abcé", 2), "é");
    }
}
