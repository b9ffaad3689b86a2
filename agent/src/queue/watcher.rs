//! [`QueueWatcher`]: finds the Postfix instances of the host, snapshots each, emits samples.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailpulse_proto::v1 as pb;

use super::QueueError;
use super::command::{describe, run_command};
use super::config::{DEFAULT_QUEUE_DIRECTORY, QueueConfig};
use super::directory::scan_queue_directory;
use super::postqueue::{SnapshotConfig, try_summarise_postqueue};
use super::samples::{EmitState, PollOutcome, SampleSink, emit};
use super::snapshot::QueueSnapshot;

/// Instances watched at most; further ones in `postmulti -l` output are ignored (and reported).
pub const MAX_INSTANCES: usize = 64;

/// Bytes of `postmulti -l` / `postconf` output read at most.
const MAX_SMALL_OUTPUT_BYTES: u64 = 64 * 1024;

/// The `syslog_name` Postfix uses when none is configured.
const DEFAULT_SYSLOG_NAME: &str = "postfix";

/// Snapshots the queues of every Postfix instance on the host, one [`poll`](Self::poll) at a time.
/// The caller schedules the polls (every [`QueueConfig::interval`]); a poll blocks while the
/// commands run, at most `command_timeout_secs` per command.
#[derive(Debug)]
pub struct QueueWatcher {
    cfg: QueueConfig,
    instances: BTreeMap<String, InstanceStatus>,
    discovery_errors: Vec<QueueError>,
}

/// One watched instance as of the latest poll.
#[derive(Debug)]
pub struct InstanceStatus {
    /// The `instance` label: the instance's `syslog_name`.
    pub name: String,
    /// Its configuration directory; `None` for the default instance when `postmulti` could not
    /// list it (the commands then run without `-c`).
    pub config_directory: Option<PathBuf>,
    /// Its queue directory, when known (for the directory scan).
    pub queue_directory: Option<PathBuf>,
    /// The snapshot of the latest poll; `None` when that poll failed altogether.
    pub snapshot: Option<QueueSnapshot>,
    /// What went wrong during the latest poll (also when the fallback then succeeded).
    pub errors: Vec<QueueError>,
    /// Errors since the watcher started.
    pub errors_total: u64,
    emit_state: EmitState,
}

/// An instance to snapshot in this poll.
#[derive(Debug)]
struct Target {
    name: String,
    config_directory: Option<PathBuf>,
    queue_directory: Option<PathBuf>,
    errors: Vec<QueueError>,
}

impl QueueWatcher {
    /// A watcher that has not looked at anything yet.
    pub fn new(cfg: QueueConfig) -> Self {
        Self {
            cfg,
            instances: BTreeMap::new(),
            discovery_errors: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    /// Finds the instances, snapshots each (`postqueue -j`, else the directory scan) and returns
    /// their samples, labelled `host` and `instance`, in the window of `now_unix_ms`.
    pub fn poll(&mut self, now_unix_ms: i64, host: &str, window_secs: u32) -> Vec<pb::Sample> {
        let now_unix_secs = now_unix_ms.div_euclid(1000);
        let targets = self.targets();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for mut target in targets {
            if !seen.insert(target.name.clone()) {
                self.discovery_errors.push(QueueError::Discovery {
                    detail: format!(
                        "two instances are named {:?}; the second one is skipped",
                        target.name
                    ),
                });
                continue;
            }
            let started = Instant::now();
            let snapshot = self.snapshot(&mut target, now_unix_secs);
            let duration = started.elapsed();
            for error in &target.errors {
                tracing::warn!(instance = %target.name, error = %error, "queue snapshot problem");
            }
            let status = self
                .instances
                .entry(target.name.clone())
                .or_insert_with(|| InstanceStatus {
                    name: target.name.clone(),
                    config_directory: None,
                    queue_directory: None,
                    snapshot: None,
                    errors: Vec::new(),
                    errors_total: 0,
                    emit_state: EmitState::default(),
                });
            status.config_directory = target.config_directory;
            status.queue_directory = target.queue_directory;
            status.errors_total += target.errors.len() as u64;
            status.errors = target.errors;
            status.snapshot = snapshot;
            let mut sink = SampleSink {
                host,
                instance: &status.name,
                now_unix_ms,
                window_secs,
                out: &mut out,
            };
            let outcome = PollOutcome {
                snapshot: status.snapshot.as_ref(),
                duration,
                top_k_domains: self.cfg.top_k_domains,
            };
            emit(&mut sink, &outcome, &mut status.emit_state);
        }
        // The default instance stands in when discovery fails, so this is not worth a warning
        // every interval.
        for error in &self.discovery_errors {
            tracing::debug!(error = %error, "queue instance discovery problem");
        }
        self.instances.retain(|name, _| seen.contains(name));
        out
    }

    /// The instances of the latest poll, by name.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceStatus> {
        self.instances.values()
    }

    /// One instance of the latest poll.
    pub fn instance(&self, name: &str) -> Option<&InstanceStatus> {
        self.instances.get(name)
    }

    /// The snapshot of one instance from the latest poll.
    pub fn last_snapshot(&self, name: &str) -> Option<&QueueSnapshot> {
        self.instances.get(name)?.snapshot.as_ref()
    }

    /// What went wrong finding the instances in the latest poll (`postmulti` failing, say).
    pub fn discovery_errors(&self) -> &[QueueError] {
        &self.discovery_errors
    }

    /// `postqueue -j`, and the directory scan when that is off or fails.
    fn snapshot(&self, target: &mut Target, now_unix_secs: i64) -> Option<QueueSnapshot> {
        if self.cfg.use_postqueue {
            let mut args: Vec<&OsStr> = Vec::new();
            if let Some(dir) = &target.config_directory {
                args.extend([OsStr::new("-c"), dir.as_os_str()]);
            }
            args.push(OsStr::new("-j"));
            let cfg = SnapshotConfig {
                max_domains: self.cfg.max_domains,
            };
            match run_command(
                &self.cfg.postqueue,
                &args,
                self.cfg.command_timeout(),
                |reader| try_summarise_postqueue(reader, now_unix_secs, &cfg),
            ) {
                Ok(snapshot) => return Some(snapshot),
                Err(e) => target.errors.push(e),
            }
        }
        let Some(queue_directory) = &target.queue_directory else {
            target.errors.push(QueueError::NoQueueDirectory {
                instance: target.name.clone(),
            });
            return None;
        };
        match scan_queue_directory(queue_directory, now_unix_secs) {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                target.errors.push(e);
                None
            }
        }
    }

    /// The configured instances, or those `postmulti -l` lists as enabled, or the default one.
    fn targets(&mut self) -> Vec<Target> {
        self.discovery_errors.clear();
        if !self.cfg.instances.is_empty() {
            return self
                .cfg
                .instances
                .iter()
                .map(|inst| {
                    let mut target = Target {
                        name: inst.name.clone(),
                        config_directory: Some(inst.config_directory.clone()),
                        queue_directory: inst.queue_directory.clone(),
                        errors: Vec::new(),
                    };
                    if target.queue_directory.is_none() {
                        match self.postconf(Some(&inst.config_directory)) {
                            Ok(params) => target.queue_directory = Some(params.queue_directory),
                            Err(e) => target.errors.push(e),
                        }
                    }
                    target
                })
                .collect();
        }
        let listed = match self.postmulti() {
            Ok(listed) => listed,
            Err(e) => {
                self.discovery_errors.push(e);
                return vec![self.default_target(None)];
            }
        };
        let mut enabled: Vec<ListedInstance> = listed.into_iter().filter(|i| i.enabled).collect();
        if enabled.len() > MAX_INSTANCES {
            self.discovery_errors.push(QueueError::Discovery {
                detail: format!(
                    "{} enabled instances; watching the first {MAX_INSTANCES}",
                    enabled.len()
                ),
            });
            enabled.truncate(MAX_INSTANCES);
        }
        enabled
            .into_iter()
            .map(|listed| {
                if listed.name == "-" {
                    return self.default_target(Some(listed.config_directory));
                }
                let mut target = Target {
                    // Until postconf says otherwise: instance names are `postfix-…` like the
                    // syslog_name `postmulti -e create` gives them.
                    name: listed.name,
                    config_directory: Some(listed.config_directory),
                    queue_directory: None,
                    errors: Vec::new(),
                };
                match self.postconf(target.config_directory.as_deref()) {
                    Ok(params) => {
                        target.name = params.syslog_name;
                        target.queue_directory = Some(params.queue_directory);
                    }
                    Err(e) => target.errors.push(e),
                }
                target
            })
            .collect()
    }

    /// The default instance: `syslog_name` and queue directory from `postconf` (the configured
    /// `queue_directory` wins), else `postfix` and `/var/spool/postfix`.
    fn default_target(&self, config_directory: Option<PathBuf>) -> Target {
        let mut target = Target {
            name: DEFAULT_SYSLOG_NAME.to_owned(),
            config_directory,
            queue_directory: self.cfg.queue_directory.clone(),
            errors: Vec::new(),
        };
        match self.postconf(target.config_directory.as_deref()) {
            Ok(params) => {
                target.name = params.syslog_name;
                target.queue_directory.get_or_insert(params.queue_directory);
            }
            Err(e) => {
                target.errors.push(e);
                target
                    .queue_directory
                    .get_or_insert_with(|| PathBuf::from(DEFAULT_QUEUE_DIRECTORY));
            }
        }
        target
    }

    /// `postmulti -l`.
    fn postmulti(&self) -> Result<Vec<ListedInstance>, QueueError> {
        let args = [OsStr::new("-l")];
        let text = run_command(
            &self.cfg.postmulti,
            &args,
            self.cfg.command_timeout(),
            read_small,
        )?;
        let listed = parse_postmulti_list(&text);
        if listed.is_empty() {
            return Err(QueueError::BadOutput {
                command: describe(&self.cfg.postmulti, &args),
                detail: "no instance listed".into(),
            });
        }
        Ok(listed)
    }

    /// `postconf [-c DIR] -xh syslog_name queue_directory`.
    fn postconf(&self, config_directory: Option<&Path>) -> Result<InstanceParams, QueueError> {
        let mut args: Vec<&OsStr> = Vec::new();
        if let Some(dir) = config_directory {
            args.extend([OsStr::new("-c"), dir.as_os_str()]);
        }
        args.extend(["-xh", "syslog_name", "queue_directory"].map(OsStr::new));
        let text = run_command(
            &self.cfg.postconf,
            &args,
            self.cfg.command_timeout(),
            read_small,
        )?;
        parse_postconf(&text).ok_or_else(|| QueueError::BadOutput {
            command: describe(&self.cfg.postconf, &args),
            detail: format!("expected a syslog_name and an absolute queue_directory, got {text:?}"),
        })
    }
}

/// Reads a small command output to its end, keeping at most [`MAX_SMALL_OUTPUT_BYTES`].
fn read_small(reader: &mut impl BufRead) -> io::Result<String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_SMALL_OUTPUT_BYTES)
        .read_to_end(&mut bytes)?;
    // Drain the rest so that the command is not stopped by a full pipe.
    io::copy(reader, &mut io::sink())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One line of `postmulti -l`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListedInstance {
    name: String,
    enabled: bool,
    config_directory: PathBuf,
}

/// `postmulti -l` prints `name group enabled config_directory` per line (`%-15s %-15s %-9s %s`),
/// `-` for no name or group, `y`/`n` for enabled. Lines of another shape are skipped.
fn parse_postmulti_list(text: &str) -> Vec<ListedInstance> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = next_field(line)?;
            let (_group, rest) = next_field(rest)?;
            let (enabled, rest) = next_field(rest)?;
            let config_directory = rest.trim();
            let enabled = match enabled {
                "y" => true,
                "n" => false,
                _ => return None,
            };
            if !config_directory.starts_with('/') {
                return None;
            }
            Some(ListedInstance {
                name: name.to_owned(),
                enabled,
                config_directory: PathBuf::from(config_directory),
            })
        })
        .collect()
}

fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(s.split_at(s.find(char::is_whitespace).unwrap_or(s.len())))
}

/// What the watcher needs from an instance's `main.cf`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InstanceParams {
    syslog_name: String,
    queue_directory: PathBuf,
}

/// Two lines: a `syslog_name` without whitespace and an absolute `queue_directory`.
fn parse_postconf(text: &str) -> Option<InstanceParams> {
    let mut lines = text.lines();
    let syslog_name = lines.next()?.trim();
    let queue_directory = lines.next()?.trim();
    let valid_name = !syslog_name.is_empty()
        && syslog_name.len() <= 255
        && !syslog_name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    (valid_name && queue_directory.starts_with('/') && lines.all(|l| l.trim().is_empty())).then(
        || InstanceParams {
            syslog_name: syslog_name.to_owned(),
            queue_directory: PathBuf::from(queue_directory),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmulti_lines_are_parsed() {
        let text = "-               -               y         /etc/postfix\n\
                    postfix-out     mta             y         /etc/postfix-out\n\
                    postfix-null    -               n         /etc/postfix null\n\
                    garbage\n\
                    postfix-x       -               maybe     /etc/x\n";
        let listed = parse_postmulti_list(text);
        assert_eq!(
            listed,
            vec![
                ListedInstance {
                    name: "-".into(),
                    enabled: true,
                    config_directory: "/etc/postfix".into()
                },
                ListedInstance {
                    name: "postfix-out".into(),
                    enabled: true,
                    config_directory: "/etc/postfix-out".into()
                },
                ListedInstance {
                    name: "postfix-null".into(),
                    enabled: false,
                    config_directory: "/etc/postfix null".into()
                },
            ]
        );
    }

    #[test]
    fn postconf_output_is_checked() {
        assert_eq!(
            parse_postconf("postfix-out\n/var/spool/postfix-out\n"),
            Some(InstanceParams {
                syslog_name: "postfix-out".into(),
                queue_directory: "/var/spool/postfix-out".into()
            })
        );
        assert_eq!(parse_postconf("postfix\n"), None);
        assert_eq!(parse_postconf("postfix\nrelative/dir\n"), None);
        assert_eq!(parse_postconf("post fix\n/q\n"), None);
        assert_eq!(parse_postconf("postfix\n/q\nthird\n"), None);
    }
}
