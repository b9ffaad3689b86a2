//! `mailpulse config check` on agent files, as a real process: bearer tokens never travel in
//! clear to another host unless the file says so, token files only their owner can read, and
//! the packaged agent and collector configurations agree (TLS, same port).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use mailpulse_tests::mailpulse_bin;

/// Writes an agent file shipping to `url` (with `extra` lines in `[ship]`) and a token file with
/// `mode`; returns the path of the agent file.
fn agent_file(dir: &Path, url: &str, extra: &str, mode: u32) -> std::path::PathBuf {
    let token = dir.join("agent.token");
    std::fs::write(&token, "0123456789abcdef0123456789\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let log = dir.join("mail.log");
    std::fs::write(&log, "").expect("log");
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nid = \"mx1\"\nstate_dir = \"{}\"\n[logs]\nfiles = [\"{}\"]\n\
             [ship]\ncollector_url = \"{url}\"\ntoken_file = \"{}\"\n{extra}",
            dir.join("state").display(),
            log.display(),
            token.display()
        ),
    )
    .expect("agent config");
    path
}

/// Exit success and stdout + stderr of `mailpulse config check FILE`.
fn check(file: &Path) -> (bool, String) {
    let out = Command::new(mailpulse_bin())
        .args(["config", "check"])
        .arg(file)
        .output()
        .expect("run mailpulse");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn token_over_plain_http_to_another_host_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (ok, text) = check(&agent_file(d, "http://192.0.2.10:4770", "", 0o600));
    assert!(!ok, "plain-text token to 192.0.2.10 accepted: {text}");
    assert!(
        text.contains("allow_plaintext_token"),
        "the error names the option: {text}"
    );
    for host in ["collector.example.net", "[2001:db8::1]", "127.example.net"] {
        let (ok, text) = check(&agent_file(d, &format!("http://{host}:4770"), "", 0o600));
        assert!(!ok, "plain-text token to {host} accepted: {text}");
    }

    let allowed = "allow_plaintext_token = true\n";
    let (ok, text) = check(&agent_file(d, "http://192.0.2.10:4770", allowed, 0o600));
    assert!(ok, "explicitly allowed: {text}");
    for url in [
        "http://127.0.0.1:4770",
        "http://127.1.2.3:4770",
        "http://localhost:4770",
        "http://[::1]:4770",
        "https://collector.example.net:4770",
    ] {
        let (ok, text) = check(&agent_file(d, url, "", 0o600));
        assert!(ok, "{url}: {text}");
    }
}

#[test]
fn group_or_world_readable_token_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let (ok, text) = check(&agent_file(
            d,
            "https://collector.example.net:4770",
            "",
            mode,
        ));
        assert!(!ok, "token file mode {mode:o} accepted: {text}");
        assert!(
            text.contains("agent.token") && text.contains("chmod"),
            "the error names the file and the fix: {text}"
        );
    }
    for mode in [0o600, 0o400] {
        let (ok, text) = check(&agent_file(
            d,
            "https://collector.example.net:4770",
            "",
            mode,
        ));
        assert!(ok, "token file mode {mode:o} refused: {text}");
    }
}

/// The packaged agent file ships over TLS to the port the packaged collector listens on.
#[test]
fn packaged_agent_config_uses_tls_to_the_collector_port() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let agent = std::fs::read_to_string(root.join("packaging/agent.toml")).expect("agent.toml");
    let collector =
        std::fs::read_to_string(root.join("packaging/collector.toml")).expect("collector.toml");
    let value = |text: &str, key: &str| -> String {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=').map(str::trim))
            .unwrap_or_else(|| panic!("{key} not set"))
            .trim_matches('"')
            .to_owned()
    };
    let url = value(&agent, "collector_url");
    assert!(url.starts_with("https://"), "agent ships over TLS: {url}");
    let listen = value(&collector, "grpc_listen_addr");
    let port = listen.rsplit(':').next().expect("port");
    assert!(
        url.ends_with(&format!(":{port}")),
        "agent URL {url} uses the collector's gRPC port {port}"
    );
}

/// The packaged agent file (every setting, with its default) passes `config check` once its
/// paths point at files that exist.
#[test]
fn packaged_agent_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("packaging/agent.toml")).expect("agent.toml");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let token = d.join("agent.token");
    std::fs::write(&token, "0123456789abcdef0123456789\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(d.join("mail.log"), "").expect("log");
    let text = text
        .replace("/var/lib/mailpulse", &d.join("state").display().to_string())
        .replace(
            "/var/log/mail.log",
            &d.join("mail.log").display().to_string(),
        )
        .replace("/etc/mailpulse/agent.token", &token.display().to_string());
    let path = d.join("agent.toml");
    std::fs::write(&path, text).expect("agent config");
    let (ok, out) = check(&path);
    assert!(ok, "packaged agent.toml: {out}");
}
