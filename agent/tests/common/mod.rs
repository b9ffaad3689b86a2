//! Fixture loading shared by the integration tests: the postfix-grok corpus and the golden logs.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

/// One postfix-grok corpus file: the message body, the service it belongs to and the grok results.
pub struct Case {
    pub file: String,
    pub service: &'static str,
    pub message: String,
    pub results: Vec<(String, String)>,
}

pub fn load_cases() -> Vec<Case> {
    let dir = fixtures_dir().join("postfix-grok");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(p).expect("readable yaml");
            let (data, results) = parse_yaml(&text);
            let prefix = file
                .rsplit_once('_')
                .map(|(prefix, _)| prefix)
                .expect("NAME_NNNN.yaml");
            let (service, message) = message_for(prefix, &data);
            Case {
                file,
                service,
                message,
                results,
            }
        })
        .collect()
}

/// The service a corpus file belongs to, and the full message body. Four prefixes are not
/// services but fragments of longer lines; they are put into the line they come from.
fn message_for(prefix: &str, data: &str) -> (&'static str, String) {
    const DELIVERY_HEAD: &str =
        "7EE668039: to=<user@example.com>, relay=mx.example.com[192.0.2.1]:25";
    match prefix {
        // `disconnect from …` command counts.
        "command_counter_data" => (
            "smtpd",
            format!("disconnect from unknown[192.0.2.1] {data}"),
        ),
        // `delays=` of a delivery line.
        "delays" => (
            "smtp",
            format!(
                "{DELIVERY_HEAD}, delay=3.6, delays={data}, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
            ),
        ),
        // `relay=` of an lmtp delivery over a UNIX socket.
        "relay" => (
            "lmtp",
            format!(
                "7EE668039: to=<user@example.com>, relay={data}, delay=0.1, delays=0/0/0/0.1, \
                 dsn=2.0.0, status=sent (250 2.0.0 <user@example.com> Saved)"
            ),
        ),
        // `tls=` of an smtp delivery: some files hold the whole line, others only the value.
        "tls_features" if data.contains("to=") => ("smtp", data.to_string()),
        "tls_features" => (
            "smtp",
            format!(
                "{DELIVERY_HEAD}, delay=3.6, delays=0.08/0.02/0.85/0.14, tls={data}, dsn=2.0.0, \
                 status=sent (250 2.0.0 Ok)"
            ),
        ),
        // The program is `postfix/trivial-rewrite`.
        "trivial_rewrite" => ("trivial-rewrite", data.to_string()),
        other => (service_name(other), data.to_string()),
    }
}

fn service_name(prefix: &str) -> &'static str {
    const SERVICES: [&str; 24] = [
        "anvil",
        "bounce",
        "cleanup",
        "discard",
        "dnsblog",
        "error",
        "lmtp",
        "local",
        "master",
        "pickup",
        "pipe",
        "postdrop",
        "postmap",
        "postscreen",
        "postsuper",
        "qmgr",
        "scache",
        "script",
        "sendmail",
        "smtp",
        "smtpd",
        "tlsmgr",
        "tlsproxy",
        "verify",
    ];
    match SERVICES.iter().find(|s| **s == prefix) {
        Some(s) => s,
        None if prefix == "virtual" => "virtual",
        None => panic!("corpus file prefix {prefix:?} is neither a service nor a known fragment"),
    }
}

/// Reads `data:` and the `results:` mapping of the corpus' simple YAML.
fn parse_yaml(text: &str) -> (String, Vec<(String, String)>) {
    let mut data = None;
    let mut results = Vec::new();
    let mut in_results = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(v) = line.strip_prefix("data:") {
            data = Some(yaml_scalar(v.trim()));
            in_results = false;
        } else if line.starts_with("results:") {
            in_results = true;
        } else if in_results && line.starts_with([' ', '\t']) {
            let (k, v) = trimmed.split_once(':').expect("key: value");
            results.push((k.trim().to_string(), yaml_scalar(v.trim())));
        } else {
            in_results = false;
        }
    }
    (data.expect("a data: line"), results)
}

pub fn yaml_scalar(s: &str) -> String {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return out,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        panic!("unterminated double-quoted scalar {s:?}");
    }
    if let Some(body) = s.strip_prefix('\'') {
        return body
            .strip_suffix('\'')
            .expect("terminated single-quoted scalar")
            .replace("''", "'");
    }
    s.trim_end().to_string()
}

/// `agent/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Directories under `tests/fixtures` that are not golden fixtures.
const NOT_GOLDEN: [&str; 1] = ["postfix-grok"];

/// Every golden `tests/fixtures/<service>/NNN.log`, sorted.
pub fn golden_logs() -> Vec<PathBuf> {
    let mut logs = Vec::new();
    for dir in std::fs::read_dir(fixtures_dir()).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !dir.is_dir() || NOT_GOLDEN.contains(&name.as_str()) {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "log") {
                logs.push(f);
            }
        }
    }
    logs.sort();
    logs
}

/// The log lines of a golden .log file; blank lines and `#` comments are skipped.
pub fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}
