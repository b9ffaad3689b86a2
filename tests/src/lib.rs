//! Test support for mailpulse integration tests: real processes on loopback only.
//!
//! - [`bsd_time`]: BSD syslog timestamps, and re-stamping a recorded log to end near now;
//! - [`postfix`]: a throw-away Postfix instance (own config, queue, data dir and `maillog_file`);
//! - [`smtp_sink`]: SMTP servers that accept, tempfail or reject every recipient, and count;
//! - [`smtp_client`]: a small SMTP client that submits test messages with an explicit HELO name;
//! - [`maillog`]: independent line counts over a Postfix log, to cross-check `mailpulse parse`;
//! - [`pflogsumm`]: runs Debian's `pflogsumm` and reads its "Grand Totals";
//! - [`stack`]: `mailpulse collector` and `mailpulse agent` as processes, and their /metrics;
//! - [`knot`]: throw-away Knot DNS authoritative servers (zones from text, reload, DNSSEC signing);
//! - [`unbound`]: a throw-away unbound recursive resolver (local data, stub zones to Knot);
//! - [`alertmanager`]: throw-away Prometheus Alertmanager clusters (webhook receiver, restarts);
//! - [`chromium`]: a headless Chromium over WebDriver (chromedriver) for tests of web pages;
//! - [`mailpulse_bin`]: the path of the built `mailpulse` binary.
//!
//! Everything here talks to 127.0.0.1 only, and every wait is bounded in count and time.

pub mod alertmanager;
pub mod bsd_time;
pub mod chromium;
pub mod knot;
pub mod maillog;
pub mod net;
pub mod pflogsumm;
pub mod postfix;
pub mod prometheus;
pub mod smtp_client;
pub mod smtp_sink;
pub mod stack;
pub mod unbound;

use std::path::PathBuf;

/// Path of the `mailpulse` binary the integration tests run.
///
/// `MAILPULSE_BIN` wins when set; otherwise `target/<profile>/mailpulse` next to the test executable
/// (which lives in `target/<profile>/deps/`). Panics with a hint when the binary has not been built,
/// because `cargo test` does not build the root package's binary for this crate.
pub fn mailpulse_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MAILPULSE_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "MAILPULSE_BIN={} is not a file; unset it or point it at a built mailpulse binary",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable knows its own path");
    // target/<profile>/deps/<test-exe> → target/<profile>/mailpulse
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps/");
    let bin = profile_dir.join(format!("mailpulse{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "expected the mailpulse binary at {}: run `cargo build --bins` first (or set MAILPULSE_BIN)",
        bin.display()
    );
    bin
}

/// Directory of committed test fixtures (`tests/fixtures/`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Whether a command is on `PATH` (as `command -v` would find it).
pub fn have_command(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(name);
        candidate.is_file()
            && std::fs::metadata(&candidate)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                .unwrap_or(false)
    })
}
