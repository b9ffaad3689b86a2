//! Remediation actions the collector asks for, run on this host's Postfix — safely.
//!
//! The agent does not trust the collector blindly (defence in depth):
//! - an `Action` is only taken from the authenticated collector stream, and only when its kind is
//!   in this agent's own `[actions] enabled` list (a dry run, which only reads, is answered for
//!   every kind the agent knows);
//! - every parameter is checked by a strict grammar ([`params`]) and refused, never escaped;
//!   instance and pool names must be ones this agent's configuration defines;
//! - commands are argv vectors of absolute paths ([`plan`]), run without a shell, with a
//!   timeout that kills the process group and bounded output ([`run`]); queue ids are chosen
//!   from `postqueue -j` by the agent itself and passed on standard input, never in argv;
//! - Postfix configuration is only changed with `postconf`, in tables and `master.cf` services
//!   mailpulse owns (`mailpulse_*`), and the original `main.cf`/`master.cf` bytes are kept to
//!   restore them exactly when the last change is reverted ([`postfix_config`]);
//! - one action runs at a time; each answer (`ActionResult`) carries the exact argv, exit
//!   statuses and output, which the collector audits.

pub mod plan;
pub mod postfix_config;
pub mod request;
pub mod run;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mailpulse_proto::v1 as pb;
use serde::{Deserialize, Serialize};

pub use mailpulse_proto::actions::params;
pub use request::{ActionKind, Checked, Request, Selector, check};

/// One sending pool: the address mail of a switched sender domain leaves from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `smtp_bind_address` (or `smtp_bind_address6`) of the pool's transport.
    pub bind_address: IpAddr,
    /// `smtp_helo_name` of the pool's transport; default: Postfix's `myhostname`.
    #[serde(default)]
    pub helo_name: Option<String>,
}

/// The `[actions]` section of the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Actions this agent runs; everything else is refused (default: none).
    pub enabled: Vec<ActionKind>,
    /// Postfix instances by name → configuration directory (`-c`); default
    /// `{ postfix = "/etc/postfix" }`. An action names its instance unless there is one.
    pub instances: BTreeMap<String, PathBuf>,
    /// Where `postqueue`, `postsuper`, `postconf`, `postmap` and `postfix` are (default
    /// `/usr/sbin`).
    pub command_directory: PathBuf,
    /// Sending pools for `switch_ip_pool`, by name (`[a-z0-9_]`, at most 32).
    pub pools: BTreeMap<String, PoolConfig>,
    /// `throttle_destination`'s delay between deliveries to a throttled destination when the
    /// action names none (default 10 s).
    pub default_rate_delay_secs: u32,
    /// The widest networks `block_client_net` takes (default /16 and /48).
    pub min_block_prefix_v4: u8,
    pub min_block_prefix_v6: u8,
    /// Seconds one command may run before its process group is killed (default 60).
    pub timeout_secs: u64,
    /// Bytes of each command's stdout and stderr kept for the answer (default 16 KiB).
    pub max_output_bytes: usize,
    /// Most queue ids one action selects (default 100 000); more is refused, not cut.
    pub max_selected: usize,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            enabled: Vec::new(),
            instances: BTreeMap::from([("postfix".to_owned(), PathBuf::from("/etc/postfix"))]),
            command_directory: PathBuf::from("/usr/sbin"),
            pools: BTreeMap::new(),
            default_rate_delay_secs: 10,
            min_block_prefix_v4: 16,
            min_block_prefix_v6: 48,
            timeout_secs: 60,
            max_output_bytes: 16 * 1024,
            max_selected: 100_000,
        }
    }
}

impl ActionsConfig {
    /// The only instance, when there is exactly one.
    pub fn default_instance(&self) -> Option<&str> {
        match self.instances.len() {
            1 => self.instances.keys().next().map(String::as_str),
            _ => None,
        }
    }

    /// Checks what serde cannot: names, paths, ranges.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 32
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        for name in self.pools.keys() {
            if !name_ok(name) {
                return Err(format!(
                    "[actions.pools]: pool name {name:?} must be 1–32 of [a-z0-9_]"
                ));
            }
        }
        for (name, pool) in &self.pools {
            if let Some(helo) = &pool.helo_name {
                params::domain("helo_name", helo)
                    .map_err(|e| format!("[actions.pools.{name}]: {e}"))?;
            }
        }
        for (name, dir) in &self.instances {
            if !name_ok(&name.replace('-', "_")) {
                return Err(format!(
                    "[actions.instances]: instance name {name:?} must be 1–32 of [a-z0-9_-]"
                ));
            }
            if !dir.is_absolute() {
                return Err(format!(
                    "[actions.instances]: {name}: {} is not an absolute path",
                    dir.display()
                ));
            }
        }
        if self.instances.is_empty() {
            return Err("[actions.instances]: at least one Postfix instance".into());
        }
        if !self.command_directory.is_absolute() {
            return Err("[actions] command_directory must be an absolute path".into());
        }
        if !(1..=3600).contains(&self.default_rate_delay_secs) {
            return Err("[actions] default_rate_delay_secs must be 1..=3600".into());
        }
        if self.min_block_prefix_v4 > 32 || self.min_block_prefix_v6 > 128 {
            return Err("[actions] min_block_prefix_v4 ≤ 32, min_block_prefix_v6 ≤ 128".into());
        }
        if self.timeout_secs == 0 || self.max_output_bytes == 0 || self.max_selected == 0 {
            return Err(
                "[actions] timeout_secs, max_output_bytes and max_selected must be > 0".into(),
            );
        }
        Ok(())
    }

    /// The configuration directory of `instance`.
    pub fn config_dir(&self, instance: &str) -> Option<&Path> {
        self.instances.get(instance).map(PathBuf::as_path)
    }

    /// The path of Postfix command `name`.
    pub fn command(&self, name: &str) -> PathBuf {
        self.command_directory.join(name)
    }
}

/// What happened to an action: the answer's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not run: unknown, not enabled, or a parameter outside its grammar.
    Refused,
    /// A dry run: the commands that would run.
    Planned,
    /// Every command exited 0.
    Ok,
    /// A command failed, timed out or could not start (the ones after it did not run).
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Refused => "refused",
            Status::Planned => "planned",
            Status::Ok => "ok",
            Status::Failed => "failed",
        }
    }
}

/// The answer's `output`: what was (or would be) run, and how it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActionKind>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// Messages the action selected from the queue (queue actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<usize>,
    pub commands: Vec<run::CommandReport>,
    /// Owned tables and configuration files written (or, in a dry run, that would be).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Runs the collector's actions, one at a time.
#[derive(Debug)]
pub struct Executor {
    cfg: ActionsConfig,
    /// Where configuration backups and the owned tables' state are kept.
    state_dir: PathBuf,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Executor {
    pub fn new(cfg: ActionsConfig, state_dir: PathBuf) -> Self {
        Executor {
            cfg,
            state_dir,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any action is enabled (the agent says `actions` in its Hello then).
    pub fn enabled(&self) -> bool {
        !self.cfg.enabled.is_empty()
    }

    /// Checks, plans and (unless a dry run) runs `action`; the answer for the collector.
    pub async fn handle(&self, action: &pb::Action) -> pb::ActionResult {
        let _turn = self.one_at_a_time.lock().await;
        let params: BTreeMap<String, String> = action
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (status, report) = match check(&action.kind, &params, &self.cfg) {
            Err(refusal) => (
                Status::Refused,
                Report {
                    error: refusal.to_string(),
                    ..Report::default()
                },
            ),
            Ok(checked) if !action.dry_run && !self.cfg.enabled.contains(&checked.kind) => (
                Status::Refused,
                Report {
                    kind: Some(checked.kind),
                    instance: checked.instance,
                    error: format!(
                        "{} is not enabled in this agent's [actions] enabled",
                        checked.kind.as_str()
                    ),
                    ..Report::default()
                },
            ),
            Ok(checked) => run::execute(&self.cfg, &self.state_dir, &checked, action.dry_run).await,
        };
        let output = serde_json::to_string(&report).unwrap_or_default();
        tracing::info!(
            id = %params::shown(&action.id),
            kind = %params::shown(&action.kind),
            dry_run = action.dry_run,
            status = status.as_str(),
            "action"
        );
        pb::ActionResult {
            action_id: action.id.clone(),
            status: status.as_str().to_owned(),
            output,
        }
    }
}
