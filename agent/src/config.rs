//! The agent's TOML configuration file.
//!
//! Every table rejects unknown keys, so a typo is an error with its line number instead of a
//! silently ignored setting. Units are part of the key names (`window_secs`, `max_bytes`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::capacity::CapacityConfig;
use crate::dns::config::DnsConfig;
use crate::parse::LogFormat;
use crate::queue::QueueConfig;
use crate::secret::Secret;
use crate::traffic::TrafficConfig;

/// `/etc/mailpulse/agent.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub agent: AgentSection,
    pub logs: LogsSection,
    pub ship: ShipSection,
    #[serde(default)]
    pub aggregate: AggregateSection,
    #[serde(default)]
    pub outbox: OutboxSection,
    /// SMTP traffic signals (connections, rejects, postscreen, SASL failures per network).
    #[serde(default)]
    pub traffic: TrafficConfig,
    /// Postfix queue snapshots (`postqueue -j`, or the queue directories).
    #[serde(default)]
    pub queue: QueueConfig,
    /// Filesystem space and inodes, Postfix process counts against their limits.
    #[serde(default)]
    pub capacity: CapacityConfig,
    /// DNS, e-mail authentication and reputation probes of the monitored domains and sending IPs.
    #[serde(default)]
    pub dns: DnsConfig,
    /// Remediation actions this agent runs for the collector (default: none).
    #[serde(default)]
    pub actions: crate::act::ActionsConfig,
    /// Feedback-loop complaints (ARF reports in a Maildir).
    #[serde(default)]
    pub complaints: crate::complaints::ComplaintsConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Stable identity towards the collector; defaults to the host name.
    #[serde(default)]
    pub id: Option<String>,
    /// Host label of every sample; defaults to the host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Checkpoints and the outbox live here.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How often the message tracker's state is saved with the read positions, so a restart
    /// does not count retried messages again (default 60).
    #[serde(default = "default_tracker_snapshot_interval_secs")]
    pub tracker_snapshot_interval_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Mail log files to follow (rotated siblings are found automatically).
    pub files: Vec<PathBuf>,
    #[serde(default)]
    pub format: LogFormat,
    /// UTC offset of timestamps that carry none (BSD syslog, maillog_file).
    #[serde(default)]
    pub utc_offset_secs: i32,
    /// Most distinct hosts (the syslog host field) kept by name; lines of further hosts are
    /// counted under `other` (default 4).
    #[serde(default = "default_max_hosts")]
    pub max_hosts: usize,
    /// Most distinct Postfix instances (syslog names, `postfix-out/smtp` → `postfix-out`) kept
    /// by name: any local user can log under any name. Further ones are counted under `other`
    /// (default 16).
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipSection {
    /// Collector gRPC endpoint, e.g. `https://collector.example.net:7443`.
    pub collector_url: String,
    /// File holding this agent's bearer token (first line). Only its owner may read it
    /// (mode 0600 or 0400): a token file other users can read is refused.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Send the bearer token over plain `http://` to a host that is not loopback. Off by
    /// default: the token would travel in clear; use `https://` instead.
    #[serde(default)]
    pub allow_plaintext_token: bool,
    /// CA bundle that signed the collector's certificate (enables TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mTLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify in the collector's certificate (default: the URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateSection {
    pub window_secs: u32,
    /// How often a batch is cut even while the window is still open.
    pub flush_interval_secs: u32,
    pub top_k_domains: usize,
    pub top_k_relays: usize,
    /// Ship raw message events as well as aggregated samples.
    pub include_events: bool,
    /// Longest label value in bytes (32–256); longer values (a 300-byte SASL user name) keep
    /// their start and get `~` and a hash (default 128).
    pub max_label_bytes: usize,
    /// Most values of one open label (domain, relay, reason, client network, user) ranked per
    /// window for top-K (default 1024).
    pub max_tracked_label_values: usize,
    /// Most bytes of ranked label values per window, all open labels together (default 256 KiB).
    pub max_tracked_label_bytes: usize,
}

impl Default for AggregateSection {
    fn default() -> Self {
        let agg = crate::aggregate::AggregatorConfig::default();
        Self {
            window_secs: 60,
            flush_interval_secs: 10,
            top_k_domains: 50,
            top_k_relays: 20,
            include_events: false,
            max_label_bytes: agg.max_label_bytes,
            max_tracked_label_values: agg.max_tracked_label_values,
            max_tracked_label_bytes: agg.max_tracked_label_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSection {
    /// Bound of the on-disk outbox; past it the oldest batches are dropped and counted.
    pub max_bytes: u64,
    /// Bound of `outbox/rejected/`, where batches the collector refused for good are kept for
    /// inspection; past it the oldest are deleted (default 64 MiB).
    pub max_rejected_bytes: u64,
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_rejected_bytes: crate::ship::outbox::DEFAULT_MAX_REJECTED_BYTES,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/mailpulse")
}

fn default_tracker_snapshot_interval_secs() -> u64 {
    60
}

fn default_max_hosts() -> usize {
    crate::pipeline::DEFAULT_MAX_HOSTS
}

fn default_max_instances() -> usize {
    crate::pipeline::DEFAULT_MAX_INSTANCES
}

/// A configuration error, with the line and column it was found at when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Parses TOML text into `T`, turning the error's byte span into a 1-based line and column.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl AgentConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = parse_toml(path, &text)?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &std::path::Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.logs.files.is_empty() {
            return Err(invalid(
                "logs.files: at least one log file is needed".into(),
            ));
        }
        if self.aggregate.window_secs == 0 || 86_400 % self.aggregate.window_secs != 0 {
            return Err(invalid(format!(
                "aggregate.window_secs = {}: must divide a day (e.g. 10, 60, 300)",
                self.aggregate.window_secs
            )));
        }
        if self.aggregate.flush_interval_secs == 0 {
            return Err(invalid(
                "aggregate.flush_interval_secs must be positive".into(),
            ));
        }
        self.traffic.validate().map_err(invalid)?;
        self.queue.validate().map_err(invalid)?;
        self.dns.validate().map_err(invalid)?;
        self.actions.validate().map_err(invalid)?;
        if !(self.ship.collector_url.starts_with("http://")
            || self.ship.collector_url.starts_with("https://"))
        {
            return Err(invalid(format!(
                "ship.collector_url = {:?}: must start with http:// or https://",
                self.ship.collector_url
            )));
        }
        if self.ship.token_file.is_some()
            && !self.ship.allow_plaintext_token
            && let Some(host) = plaintext_remote_host(&self.ship.collector_url)
        {
            return Err(invalid(format!(
                "ship.collector_url = {:?}: the bearer token (ship.token_file) would travel in \
                 clear to {host}, which is not a loopback address; use https:// (with \
                 ship.ca_file), or set ship.allow_plaintext_token = true to accept that",
                self.ship.collector_url
            )));
        }
        if self.ship.cert_file.is_some() != self.ship.key_file.is_some() {
            return Err(invalid(
                "ship.cert_file and ship.key_file go together (client certificate for mTLS)".into(),
            ));
        }
        if self.outbox.max_bytes < 1 << 20 {
            return Err(invalid("outbox.max_bytes must be at least 1 MiB".into()));
        }
        let a = &self.aggregate;
        if !(crate::aggregate::bound::MIN_MAX_LABEL_BYTES..=256).contains(&a.max_label_bytes) {
            return Err(invalid(format!(
                "aggregate.max_label_bytes = {}: must be 32 to 256 (the collector refuses longer \
                 values)",
                a.max_label_bytes
            )));
        }
        if a.max_tracked_label_values == 0 || a.max_tracked_label_bytes < 4096 {
            return Err(invalid(
                "aggregate.max_tracked_label_values must be positive and \
                 aggregate.max_tracked_label_bytes at least 4096"
                    .into(),
            ));
        }
        if self.logs.max_hosts == 0 || self.logs.max_instances == 0 {
            return Err(invalid(
                "logs.max_hosts and logs.max_instances must be positive".into(),
            ));
        }
        if self.agent.tracker_snapshot_interval_secs == 0 {
            return Err(invalid(
                "agent.tracker_snapshot_interval_secs must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The host of an `http://` URL when it is not a loopback address (`localhost`, 127.0.0.0/8,
/// `::1`); `None` for `https://` URLs and loopback hosts.
fn plaintext_remote_host(url: &str) -> Option<String> {
    let rest = url.trim().strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_owned())
}

/// Reads the bearer token from the first line of `path`. Refuses a file that anyone but its
/// owner can read or write (group or other permission bits), and an empty token.
pub fn read_token_file(path: &std::path::Path) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let read = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(invalid(format!(
            "token file has mode {:04o}: other users can read or change it; make it readable \
             by the agent's user only (chmod 600 {})",
            mode & 0o7777,
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(invalid("token file is empty".into()));
    }
    Ok(Secret::from(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SAMPLE: &str = r#"
[agent]
id = "mx1"
state_dir = "/var/lib/mailpulse"

[logs]
files = ["/var/log/mail.log"]
format = "bsd"

[ship]
collector_url = "https://collector.example.net:7443"
token_file = "/etc/mailpulse/token"
"#;

    #[test]
    fn sample_parses_with_defaults() {
        let c: AgentConfig = parse_toml(Path::new("a.toml"), SAMPLE).unwrap();
        assert_eq!(c.agent.id.as_deref(), Some("mx1"));
        assert_eq!(c.logs.format, LogFormat::Bsd);
        assert_eq!(c.aggregate, AggregateSection::default());
        assert_eq!(c.outbox.max_bytes, 256 << 20);
        c.validate(Path::new("a.toml")).unwrap();
    }

    #[test]
    fn unknown_key_reports_its_line() {
        let text = SAMPLE.replace("format = \"bsd\"", "format = \"bsd\"\nfromat = 1");
        let err = parse_toml::<AgentConfig>(Path::new("a.toml"), &text).unwrap_err();
        match err {
            ConfigError::Syntax { line, message, .. } => {
                assert_eq!(line, 9, "{message}");
                assert!(message.contains("fromat"), "{message}");
            }
            other => panic!("expected a syntax error, got {other}"),
        }
    }

    #[test]
    fn invalid_values_are_explained() {
        let text = SAMPLE.replace("https://", "ftp://");
        let c: AgentConfig = parse_toml(Path::new("a.toml"), &text).unwrap();
        let err = c.validate(Path::new("a.toml")).unwrap_err().to_string();
        assert!(err.contains("ship.collector_url"), "{err}");
    }

    #[test]
    fn plaintext_tokens_go_only_to_loopback() {
        for url in [
            "http://127.0.0.1:4770",
            "http://127.9.0.1",
            "http://localhost:4770/",
            "http://[::1]:4770",
            "https://collector.example.net:4770",
        ] {
            assert_eq!(plaintext_remote_host(url), None, "{url}");
        }
        for (url, host) in [
            ("http://192.0.2.1:4770", "192.0.2.1"),
            ("http://collector.example.net", "collector.example.net"),
            ("http://[2001:db8::1]:4770", "2001:db8::1"),
            ("http://user@127.example.net:1", "127.example.net"),
        ] {
            assert_eq!(plaintext_remote_host(url).as_deref(), Some(host), "{url}");
        }
        let text = SAMPLE.replace("https://collector.example.net", "http://192.0.2.1");
        let c: AgentConfig = parse_toml(Path::new("a.toml"), &text).unwrap();
        let err = c.validate(Path::new("a.toml")).unwrap_err().to_string();
        assert!(err.contains("allow_plaintext_token"), "{err}");
        let text = text.replace("[ship]", "[ship]\nallow_plaintext_token = true");
        let c: AgentConfig = parse_toml(Path::new("a.toml"), &text).unwrap();
        c.validate(Path::new("a.toml")).unwrap();
    }

    #[test]
    fn token_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-0123456789abcdef\n").unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let got = read_token_file(&path);
            assert_eq!(got.is_ok(), ok, "mode {mode:o}: {got:?}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_token_file(&path).unwrap().expose(),
            "tok-0123456789abcdef"
        );
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab\ncd", 99), (2, 3));
    }
}
