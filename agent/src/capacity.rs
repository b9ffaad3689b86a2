//! Capacity signals of a mail host as gauge samples: free space on the filesystems mail lives on,
//! and running Postfix daemons against their process limits.
//!
//! A mail host fails in two capacity ways long before a message is lost: the queue or log
//! filesystem fills up (Postfix stops accepting mail below `queue_minfree`, and a full `/var/log`
//! blinds every log-based signal), or a service runs at its `maxproc` limit (new SMTP sessions
//! wait in the listen queue, deliveries slow down). [`CapacityProbe::poll`] measures both and
//! returns gauges, labelled `host` first, in the window of the poll time:
//!
//! - per configured path, from `statvfs(2)`: `filesystem_size_bytes`, `filesystem_free_bytes`
//!   (`f_bfree`), `filesystem_avail_bytes` (`f_bavail`, what a non-root process such as Postfix
//!   can still use), `filesystem_inodes`, `filesystem_avail_inodes`, and `filesystem_up` (1, or 0
//!   when the path could not be measured; then only `filesystem_up` is sent);
//! - per Postfix instance and daemon command (`smtpd`, `smtp`, `cleanup`, …):
//!   `postfix_processes`, and where master.cf bounds it, `postfix_process_limit` and
//!   `postfix_process_utilisation` (processes / limit); per instance `postfix_limits_up` (1, or 0
//!   when `postconf` could not be read); once `postfix_process_scan_up` (0 when the process
//!   table could not be listed).
//!
//! Processes are counted from a `/proc` tree: a process counts only when its parent is a process
//! named `master` (Postfix's supervisor), under the command name the kernel reports (`comm`, from
//! `/proc/<pid>/stat`). It belongs to the instance whose config directory is its `MAIL_CONFIG`
//! (from the child's `environ`, else the master's); without `MAIL_CONFIG` to the instance
//! configured at `/etc/postfix`, else the first instance given; a `MAIL_CONFIG` matching no given
//! instance is labelled `other`. Limits come from `postconf -c DIR -M` (the 7th field of every
//! master.cf entry: `-` means `default_process_limit`, `0` unlimited) summed per command, since
//! all entries running `smtpd` (port 25, submission, …) draw processes under the same name. A
//! command with any unlimited entry has no limit. Each poll runs `postconf` twice per instance,
//! so limits follow `postfix reload`s without a restart of the agent.
//!
//! Reading another user's `environ` needs root (or `CAP_SYS_PTRACE`); an agent without it sees
//! no `MAIL_CONFIG` and counts every Postfix process under the default instance. Comm names and
//! parents (`stat`) are world-readable unless `/proc` is mounted with `hidepid`.
//!
//! Invariants: nothing here panics on what it reads (`/proc` races, garbage files, odd `postconf`
//! output); `postconf` runs with an argv (never a shell string), closed stdin and a timeout after
//! which it is killed; every failure is counted in [`CapacityErrors`] and visible as an `_up`
//! gauge of 0, and logged with `tracing` as a warning when it starts (at debug level while it
//! lasts, at info when it ends). No unsafe code: `statvfs` goes through `rustix`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mailpulse_proto::v1::{self as pb, sample};
use serde::Deserialize;

use crate::aggregate::window_start;
use crate::labels::OTHER;

/// The `[capacity]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// Measure at all (default true).
    pub enabled: bool,
    /// Filesystems to measure, by any path on them (typically the queue directory and
    /// `/var/log`). Empty: only the paths the caller adds with [`CapacityProbe::add_path`].
    pub paths: Vec<PathBuf>,
    /// Root of the process table.
    pub proc_root: PathBuf,
    /// The `postconf` binary used to read process limits.
    pub postconf: PathBuf,
    /// How long one `postconf` run may take before it is killed (at least 1).
    pub command_timeout_secs: u64,
    /// Count Postfix processes and read their limits.
    pub processes: bool,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paths: Vec::new(),
            proc_root: PathBuf::from("/proc"),
            postconf: PathBuf::from("/usr/sbin/postconf"),
            command_timeout_secs: 10,
            processes: true,
        }
    }
}

/// Why a capacity measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// `statvfs` of a configured path failed (missing path, permissions, stale mount).
    #[error("statvfs {path}: {source}")]
    Statvfs { path: PathBuf, source: io::Error },
    /// The process table could not be listed.
    #[error("reading process table {path}: {source}")]
    ProcRoot { path: PathBuf, source: io::Error },
    /// A command could not be started or waited for.
    #[error("running {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    /// A command ran longer than the timeout and was killed.
    #[error("{program} did not finish within {timeout_secs} s and was killed")]
    Timeout { program: PathBuf, timeout_secs: u64 },
    /// A command exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: PathBuf,
        status: ExitStatus,
        stderr: String,
    },
    /// A command's output was not what it should be.
    #[error("{program}: {detail}")]
    Output { program: PathBuf, detail: String },
}

/// Space and inodes of one filesystem, from `statvfs(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Total size (`f_blocks × f_frsize`).
    pub size_bytes: u64,
    /// Free space including the root reserve (`f_bfree × f_frsize`).
    pub free_bytes: u64,
    /// Free space a non-root process can use (`f_bavail × f_frsize`).
    pub avail_bytes: u64,
    /// Total inodes (`f_files`).
    pub inodes: u64,
    /// Inodes a non-root process can use (`f_favail`).
    pub avail_inodes: u64,
}

impl FsUsage {
    /// Measures the filesystem `path` lives on.
    pub fn of(path: &Path) -> Result<Self, CapacityError> {
        let st = rustix::fs::statvfs(path).map_err(|e| CapacityError::Statvfs {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(Self {
            size_bytes: st.f_blocks.saturating_mul(st.f_frsize),
            free_bytes: st.f_bfree.saturating_mul(st.f_frsize),
            avail_bytes: st.f_bavail.saturating_mul(st.f_frsize),
            inodes: st.f_files,
            avail_inodes: st.f_favail,
        })
    }
}

/// Running Postfix daemons found in one scan of the process table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    /// Processes per (instance label, command name), children of a `master` only.
    pub running: BTreeMap<(String, String), u64>,
    /// Process entries that vanished or could not be parsed during the scan (normal churn).
    pub skipped: u64,
}

impl ProcessCounts {
    /// Processes of `command` in `instance` (0 when none run).
    pub fn get(&self, instance: &str, command: &str) -> u64 {
        self.running
            .get(&(instance.to_owned(), command.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// The `maxproc` field of one master.cf entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxProc {
    /// `-`: `default_process_limit`.
    Default,
    /// `0`: no limit.
    Unlimited,
    /// A number of processes.
    Limit(u64),
}

/// One master.cf entry as `postconf -M` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    /// Service name (`smtp`, `submission`, `127.0.0.1:10025`, `relay`).
    pub service: String,
    /// Service type (`inet`, `unix`, `unix-dgram`, `fifo`, `pass`).
    pub kind: String,
    pub maxproc: MaxProc,
    /// The daemon it runs, as its process is named (`smtpd`, `trivial-rewrite`).
    pub command: String,
}

/// Process limit of one command, summed over the master.cf entries that run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessLimit {
    /// At most this many processes.
    Limited(u64),
    /// At least one entry has `maxproc` 0.
    Unlimited,
}

/// Failures counted since the probe was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapacityErrors {
    /// `statvfs` failures (one per path and poll).
    pub statvfs: u64,
    /// Process table scans that failed.
    pub proc_scan: u64,
    /// `postconf` runs that failed, timed out or printed something unusable.
    pub postconf: u64,
}

/// Measures filesystems and Postfix processes; see the module documentation.
#[derive(Debug)]
pub struct CapacityProbe {
    cfg: CapacityConfig,
    paths: Vec<PathBuf>,
    errors: CapacityErrors,
    /// What failed in the previous poll (`filesystem <path>`, `postconf <instance>`, `proc`), so
    /// a lasting failure is logged as a warning once and its recovery once.
    failing: BTreeSet<String>,
}

impl CapacityProbe {
    /// A probe for `cfg`; its `paths` are measured from the first poll on.
    pub fn new(mut cfg: CapacityConfig) -> Self {
        let paths = std::mem::take(&mut cfg.paths);
        let mut probe = Self {
            cfg,
            paths: Vec::new(),
            errors: CapacityErrors::default(),
            failing: BTreeSet::new(),
        };
        for path in paths {
            probe.add_path(path);
        }
        probe
    }

    /// Also measures the filesystem of `path` (e.g. the queue directory of each instance); a
    /// path already measured is not added twice.
    pub fn add_path(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }

    /// The paths measured, in the order they were added.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Failures so far.
    pub fn errors(&self) -> CapacityErrors {
        self.errors
    }

    /// Measures everything once. `instances` are (instance label, config directory) pairs, the
    /// default instance first; process counts and limits are reported per instance.
    pub fn poll(
        &mut self,
        now_unix_ms: i64,
        host: &str,
        window_secs: u32,
        instances: &[(String, PathBuf)],
    ) -> Vec<pb::Sample> {
        let window_secs = window_secs.max(1);
        let mut out = SampleSink {
            host,
            window_start_unix_ms: window_start(now_unix_ms.div_euclid(1000), window_secs)
                .saturating_mul(1000),
            window_secs,
            samples: Vec::new(),
        };
        self.poll_filesystems(&mut out);
        if self.cfg.processes {
            self.poll_processes(&mut out, instances);
        }
        out.samples
    }

    /// `postconf -c DIR -h default_process_limit` and `postconf -c DIR -M`, reduced to limits
    /// per command.
    pub fn read_process_limits(
        &self,
        config_dir: &Path,
    ) -> Result<BTreeMap<String, ProcessLimit>, CapacityError> {
        let program = self.cfg.postconf.as_path();
        let timeout = Duration::from_secs(self.cfg.command_timeout_secs.max(1));
        let dir = config_dir.as_os_str();
        let default_out = run_command(
            program,
            &[
                OsStr::new("-c"),
                dir,
                OsStr::new("-h"),
                OsStr::new("default_process_limit"),
            ],
            timeout,
        )?;
        let default_limit = String::from_utf8_lossy(&default_out)
            .trim()
            .parse::<u64>()
            .map_err(|_| CapacityError::Output {
                program: program.to_owned(),
                detail: format!(
                    "default_process_limit is not a number: {:?}",
                    String::from_utf8_lossy(&default_out).trim()
                ),
            })?;
        let master_out = run_command(program, &[OsStr::new("-c"), dir, OsStr::new("-M")], timeout)?;
        let entries = parse_master_entries(&String::from_utf8_lossy(&master_out));
        Ok(process_limits(&entries, default_limit))
    }

    fn poll_filesystems(&mut self, out: &mut SampleSink<'_>) {
        for path in &self.paths {
            let label = path.to_string_lossy();
            match FsUsage::of(path) {
                Ok(usage) => {
                    let labels = [("path", label.as_ref())];
                    out.gauge("filesystem_size_bytes", &labels, usage.size_bytes as f64);
                    out.gauge("filesystem_free_bytes", &labels, usage.free_bytes as f64);
                    out.gauge("filesystem_avail_bytes", &labels, usage.avail_bytes as f64);
                    out.gauge("filesystem_inodes", &labels, usage.inodes as f64);
                    out.gauge(
                        "filesystem_avail_inodes",
                        &labels,
                        usage.avail_inodes as f64,
                    );
                    out.gauge("filesystem_up", &labels, 1.0);
                    if changed(&mut self.failing, format!("filesystem {label}"), true) {
                        tracing::info!(path = %path.display(), "capacity: filesystem measured again");
                    }
                }
                Err(e) => {
                    self.errors.statvfs += 1;
                    if changed(&mut self.failing, format!("filesystem {label}"), false) {
                        tracing::warn!(path = %path.display(), error = %e, "capacity: filesystem not measured");
                    } else {
                        tracing::debug!(path = %path.display(), error = %e, "capacity: filesystem still not measured");
                    }
                    out.gauge("filesystem_up", &[("path", label.as_ref())], 0.0);
                }
            }
        }
    }

    fn poll_processes(&mut self, out: &mut SampleSink<'_>, instances: &[(String, PathBuf)]) {
        let counts = match scan_processes(&self.cfg.proc_root, instances) {
            Ok(counts) => {
                out.gauge("postfix_process_scan_up", &[], 1.0);
                if changed(&mut self.failing, "proc".to_owned(), true) {
                    tracing::info!("capacity: process table scanned again");
                }
                counts
            }
            Err(e) => {
                self.errors.proc_scan += 1;
                if changed(&mut self.failing, "proc".to_owned(), false) {
                    tracing::warn!(error = %e, "capacity: process table not scanned");
                } else {
                    tracing::debug!(error = %e, "capacity: process table still not scanned");
                }
                out.gauge("postfix_process_scan_up", &[], 0.0);
                ProcessCounts::default()
            }
        };
        let mut limits: BTreeMap<&str, BTreeMap<String, ProcessLimit>> = BTreeMap::new();
        for (instance, dir) in instances {
            match self.read_process_limits(dir) {
                Ok(l) => {
                    out.gauge("postfix_limits_up", &[("instance", instance)], 1.0);
                    if changed(&mut self.failing, format!("postconf {instance}"), true) {
                        tracing::info!(instance = %instance, "capacity: process limits read again");
                    }
                    limits.insert(instance, l);
                }
                Err(e) => {
                    self.errors.postconf += 1;
                    if changed(&mut self.failing, format!("postconf {instance}"), false) {
                        tracing::warn!(instance = %instance, config_dir = %dir.display(), error = %e, "capacity: process limits not read");
                    } else {
                        tracing::debug!(instance = %instance, error = %e, "capacity: process limits still not read");
                    }
                    out.gauge("postfix_limits_up", &[("instance", instance)], 0.0);
                }
            }
        }
        // Every command that runs or has an entry in master.cf, so idle services read 0.
        let mut series: BTreeSet<(&str, &str)> = counts
            .running
            .keys()
            .map(|(i, c)| (i.as_str(), c.as_str()))
            .collect();
        for (instance, by_command) in &limits {
            series.extend(by_command.keys().map(|c| (*instance, c.as_str())));
        }
        for (instance, command) in series {
            let running = counts.get(instance, command);
            let labels = [("instance", instance), ("service", command)];
            out.gauge("postfix_processes", &labels, running as f64);
            let limit = limits.get(instance).and_then(|l| l.get(command));
            if let Some(&ProcessLimit::Limited(limit)) = limit {
                out.gauge("postfix_process_limit", &labels, limit as f64);
                if limit > 0 {
                    out.gauge(
                        "postfix_process_utilisation",
                        &labels,
                        running as f64 / limit as f64,
                    );
                }
            }
        }
    }
}

/// Records whether `key` works now; true when that differs from the previous poll (a new
/// failure, or a recovery).
fn changed(failing: &mut BTreeSet<String>, key: String, ok: bool) -> bool {
    if ok {
        failing.remove(&key)
    } else {
        failing.insert(key)
    }
}

/// Samples of one poll: same host, same window.
struct SampleSink<'a> {
    host: &'a str,
    window_start_unix_ms: i64,
    window_secs: u32,
    samples: Vec<pb::Sample>,
}

impl SampleSink<'_> {
    fn gauge(&mut self, metric: &str, labels: &[(&str, &str)], value: f64) {
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.push(pb::Label {
            name: "host".to_owned(),
            value: self.host.to_owned(),
        });
        all.extend(labels.iter().map(|(name, value)| pb::Label {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        }));
        self.samples.push(pb::Sample {
            metric: metric.to_owned(),
            labels: all,
            window_start_unix_ms: self.window_start_unix_ms,
            window_secs: self.window_secs,
            value: Some(sample::Value::Gauge(value)),
        });
    }
}

/// The name the kernel gives Postfix's supervisor process.
const MASTER_COMM: &str = "master";

/// Postfix's compiled-in default `config_directory`, the instance of a master without
/// `MAIL_CONFIG`.
const DEFAULT_CONFIG_DIR: &str = "/etc/postfix";

/// Upper bounds on what is read from one `/proc/<pid>` file.
const STAT_MAX_BYTES: u64 = 4096;
const ENVIRON_MAX_BYTES: u64 = 256 * 1024;

/// Counts the children of Postfix `master` processes under `proc_root`, per instance and
/// command (see the module documentation for how a process finds its instance).
pub fn scan_processes(
    proc_root: &Path,
    instances: &[(String, PathBuf)],
) -> Result<ProcessCounts, CapacityError> {
    let entries = std::fs::read_dir(proc_root).map_err(|e| CapacityError::ProcRoot {
        path: proc_root.to_owned(),
        source: e,
    })?;
    let mut counts = ProcessCounts::default();
    // pid → (comm, ppid)
    let mut table: HashMap<u32, (String, u32)> = HashMap::new();
    for entry in entries {
        let Ok(entry) = entry else {
            counts.skipped += 1;
            continue;
        };
        let Some(pid) = entry.file_name().to_str().and_then(parse_pid) else {
            continue; // `self`, `sys`, `meminfo`, …
        };
        match read_capped(&entry.path().join("stat"), STAT_MAX_BYTES)
            .ok()
            .and_then(|stat| parse_stat(&stat))
        {
            Some(parsed) => {
                table.insert(pid, parsed);
            }
            None => counts.skipped += 1,
        }
    }

    let default_instance = default_instance(instances);
    let mut master_instance: HashMap<u32, String> = HashMap::new();
    for (&pid, (comm, ppid)) in &table {
        let parent_is_master = table.get(ppid).is_some_and(|(c, _)| c == MASTER_COMM);
        if !parent_is_master {
            continue;
        }
        let instance = match mail_config(proc_root, pid) {
            Some(dir) => instance_of(&dir, instances),
            None => master_instance
                .entry(*ppid)
                .or_insert_with(|| match mail_config(proc_root, *ppid) {
                    Some(dir) => instance_of(&dir, instances),
                    None => default_instance.clone(),
                })
                .clone(),
        };
        *counts.running.entry((instance, comm.clone())).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Parses a `/proc/<pid>/stat` line into (comm, ppid). The name sits between the first `(` and
/// the last `)` (it may itself contain both and spaces); state and ppid follow.
pub fn parse_stat(stat: &[u8]) -> Option<(String, u32)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    if close <= open {
        return None;
    }
    let comm = String::from_utf8_lossy(&stat[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((comm, ppid))
}

/// Parses `postconf -M` output: one entry per line, `service type private unpriv chroot wakeup
/// maxproc command [args]`. Blank lines, comments, continuation lines and lines with fewer than
/// eight fields are skipped.
pub fn parse_master_entries(text: &str) -> Vec<MasterEntry> {
    text.lines()
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            if fields.len() < 8 || fields[0].starts_with('#') {
                return None;
            }
            let maxproc = match fields[6] {
                "-" => MaxProc::Default,
                "0" => MaxProc::Unlimited,
                n => MaxProc::Limit(n.parse().ok()?),
            };
            Some(MasterEntry {
                service: fields[0].to_owned(),
                kind: fields[1].to_owned(),
                maxproc,
                command: process_name(fields[7]),
            })
        })
        .collect()
}

/// Sums `maxproc` per command; `-` counts as `default_process_limit`, and any unlimited entry
/// (0, or `-` with a default of 0) makes the command unlimited.
pub fn process_limits(
    entries: &[MasterEntry],
    default_process_limit: u64,
) -> BTreeMap<String, ProcessLimit> {
    let mut limits = BTreeMap::new();
    for entry in entries {
        let this = match entry.maxproc {
            MaxProc::Default if default_process_limit == 0 => ProcessLimit::Unlimited,
            MaxProc::Default => ProcessLimit::Limited(default_process_limit),
            MaxProc::Unlimited => ProcessLimit::Unlimited,
            MaxProc::Limit(n) => ProcessLimit::Limited(n),
        };
        let sum = match (limits.get(&entry.command), this) {
            (None, this) => this,
            (Some(ProcessLimit::Limited(a)), ProcessLimit::Limited(b)) => {
                ProcessLimit::Limited(a.saturating_add(b))
            }
            _ => ProcessLimit::Unlimited,
        };
        limits.insert(entry.command.clone(), sum);
    }
    limits
}

/// The name a daemon's process gets: the command's file name, cut to the kernel's 15 bytes
/// (`TASK_COMM_LEN` − 1).
fn process_name(command: &str) -> String {
    let base = command.rsplit('/').next().unwrap_or(command);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_owned()
}

fn parse_pid(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// `MAIL_CONFIG` from `/proc/<pid>/environ`, when readable and set.
fn mail_config(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let environ = read_capped(
        &proc_root.join(pid.to_string()).join("environ"),
        ENVIRON_MAX_BYTES,
    )
    .ok()?;
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(b"MAIL_CONFIG="))
        .filter(|dir| !dir.is_empty())
        .map(|dir| PathBuf::from(OsStr::from_bytes(dir)))
}

/// The label of the instance configured in `dir`, or [`OTHER`].
fn instance_of(dir: &Path, instances: &[(String, PathBuf)]) -> String {
    instances
        .iter()
        .find(|(_, d)| same_dir(d, dir))
        .map_or_else(|| OTHER.to_owned(), |(label, _)| label.clone())
}

/// The instance of a master without `MAIL_CONFIG`: the one at `/etc/postfix`, else the first;
/// `postfix` (the default instance's syslog name) when none is configured.
fn default_instance(instances: &[(String, PathBuf)]) -> String {
    instances
        .iter()
        .find(|(_, d)| same_dir(d, Path::new(DEFAULT_CONFIG_DIR)))
        .or(instances.first())
        .map_or_else(|| "postfix".to_owned(), |(label, _)| label.clone())
}

/// Path equality that ignores trailing slashes and `.` components (`/etc/postfix/` = `/etc/postfix`).
fn same_dir(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

fn read_capped(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(max_bytes)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Most output accepted from one command; `postconf -M` prints a few kilobytes.
const COMMAND_OUTPUT_MAX_BYTES: u64 = 1024 * 1024;

/// How long to wait for a finished command's output pipes to close.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Runs `program args…` (no shell) with stdin closed and returns its stdout; kills it after
/// `timeout`. Output beyond [`COMMAND_OUTPUT_MAX_BYTES`] is an error. The pipes are read on two
/// short-lived threads; should a killed program leave a grandchild holding them, those threads
/// end when it does, and this function does not wait for them beyond [`OUTPUT_GRACE`].
fn run_command(
    program: &Path,
    args: &[&OsStr],
    timeout: Duration,
) -> Result<Vec<u8>, CapacityError> {
    let spawn_error = |source| CapacityError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = spawn_retrying(program, args).map_err(spawn_error)?;
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        drain(stdout, Stream::Out, tx.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        drain(stderr, Stream::Err, tx);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        let now = Instant::now();
        let failure = match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if now < deadline => {
                thread::sleep((deadline - now).min(Duration::from_millis(10)));
                continue;
            }
            Ok(None) => CapacityError::Timeout {
                program: program.to_owned(),
                timeout_secs: timeout.as_secs(),
            },
            Err(e) => spawn_error(e),
        };
        // Errors here mean the child exited meanwhile; either way it is gone after wait.
        let _ = child.kill();
        let _ = child.wait();
        return Err(failure);
    };
    let (mut stdout, mut stderr) = (None, None);
    for _ in 0..2 {
        match rx.recv_timeout(OUTPUT_GRACE) {
            Ok((Stream::Out, out)) => stdout = Some(out),
            Ok((Stream::Err, out)) => stderr = Some(out),
            Err(_) => break,
        }
    }
    let output_error = |detail: &str| CapacityError::Output {
        program: program.to_owned(),
        detail: detail.to_owned(),
    };
    let stdout = stdout.ok_or_else(|| output_error("output not closed after exit"))?;
    if !status.success() {
        let stderr = stderr
            .and_then(Result::ok)
            .map(|e| String::from_utf8_lossy(&e).trim().to_owned())
            .unwrap_or_default();
        return Err(CapacityError::Failed {
            program: program.to_owned(),
            status,
            stderr,
        });
    }
    stdout.map_err(|e| output_error(&e))
}

/// Spawns, retrying briefly when the executable is busy being written (a package upgrade
/// replacing `postconf`, or a test that just created its fake).
fn spawn_retrying(program: &Path, args: &[&OsStr]) -> io::Result<std::process::Child> {
    let mut attempts = 0;
    loop {
        let result = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match result {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 5 => {
                attempts += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a full pipe) and
/// sends what it read, or why it is unusable.
fn drain(
    pipe: impl Read + Send + 'static,
    which: Stream,
    tx: mpsc::Sender<(Stream, Result<Vec<u8>, String>)>,
) {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = pipe.take(COMMAND_OUTPUT_MAX_BYTES + 1);
        let result = match limited.read_to_end(&mut buf) {
            Ok(_) if buf.len() as u64 > COMMAND_OUTPUT_MAX_BYTES => {
                // Keep draining so the child is not stuck writing, then report.
                let _ = io::copy(&mut limited.into_inner(), &mut io::sink());
                Err(format!(
                    "more than {COMMAND_OUTPUT_MAX_BYTES} bytes of output"
                ))
            }
            Ok(_) => Ok(buf),
            Err(e) => Err(format!("reading output: {e}")),
        };
        // The receiver is gone when the command timed out; nothing left to tell.
        let _ = tx.send((which, result));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_names_and_reject_garbage() {
        assert_eq!(
            parse_stat(b"1234 (smtpd) S 100 100 100 0 -1 4194560 0 0"),
            Some(("smtpd".to_owned(), 100))
        );
        assert_eq!(
            parse_stat(b"77 (a) b (c)) R 5 77 77"),
            Some(("a) b (c)".to_owned(), 5))
        );
        assert_eq!(
            parse_stat(b"9 (trivial-rewrite) S 1\n"),
            Some(("trivial-rewrite".to_owned(), 1))
        );
        for garbage in [
            &b""[..],
            b"garbage",
            b"12 (x",
            b"12 x) S 1",
            b"12 )( S 1",
            b"12 (y) S",
            b"12 (y) S notanumber",
            b"12 (y) S -1",
            b"\xff\xfe (\xff) \xff 1",
        ] {
            assert_eq!(parse_stat(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn master_entries_parse_maxproc_and_command() {
        let text = "\
# comment
smtp       inet  n       -       y       -       -       smtpd
submission inet  n       -       y       -       20      smtpd -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
dnsblog    unix  -       -       y       -       0       dnsblog
broken     unix  -       -       y       -       x       smtp
short line
relay      unix  -       -       y       -       -       /usr/lib/postfix/sbin/smtp
";
        let entries = parse_master_entries(text);
        let summary: Vec<(&str, MaxProc, &str)> = entries
            .iter()
            .map(|e| (e.service.as_str(), e.maxproc, e.command.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("smtp", MaxProc::Default, "smtpd"),
                ("submission", MaxProc::Limit(20), "smtpd"),
                ("dnsblog", MaxProc::Unlimited, "dnsblog"),
                ("relay", MaxProc::Default, "smtp"),
            ]
        );
    }

    #[test]
    fn limits_sum_per_command_and_unlimited_wins() {
        let entry = |command: &str, maxproc| MasterEntry {
            service: command.to_owned(),
            kind: "unix".to_owned(),
            maxproc,
            command: command.to_owned(),
        };
        let entries = [
            entry("smtpd", MaxProc::Default),
            entry("smtpd", MaxProc::Limit(20)),
            entry("cleanup", MaxProc::Limit(5)),
            entry("cleanup", MaxProc::Unlimited),
            entry("qmgr", MaxProc::Limit(1)),
        ];
        let limits = process_limits(&entries, 100);
        assert_eq!(limits["smtpd"], ProcessLimit::Limited(120));
        assert_eq!(limits["cleanup"], ProcessLimit::Unlimited);
        assert_eq!(limits["qmgr"], ProcessLimit::Limited(1));
        assert_eq!(
            process_limits(&entries, 0)["smtpd"],
            ProcessLimit::Unlimited,
            "default_process_limit 0 is unlimited"
        );
    }

    #[test]
    fn process_names_are_cut_like_the_kernel_does() {
        assert_eq!(process_name("trivial-rewrite"), "trivial-rewrite");
        assert_eq!(process_name("/usr/libexec/postfix/smtpd"), "smtpd");
        assert_eq!(process_name("a-very-long-daemon-name"), "a-very-long-dae");
        assert_eq!(process_name("ééééééééé"), "ééééééé");
    }

    #[test]
    fn a_lasting_failure_changes_state_once_and_recovers_once() {
        let mut failing = BTreeSet::new();
        let key = || "filesystem /var/log".to_owned();
        assert!(
            !changed(&mut failing, key(), true),
            "working from the start"
        );
        assert!(changed(&mut failing, key(), false), "starts failing");
        assert!(!changed(&mut failing, key(), false), "still failing");
        assert!(changed(&mut failing, key(), true), "recovers");
        assert!(failing.is_empty());
    }

    #[test]
    fn instances_resolve_by_config_dir() {
        let instances = vec![
            ("postfix-out".to_owned(), PathBuf::from("/etc/postfix-out")),
            ("postfix".to_owned(), PathBuf::from("/etc/postfix/")),
        ];
        assert_eq!(default_instance(&instances), "postfix");
        assert_eq!(
            instance_of(Path::new("/etc/postfix-out/"), &instances),
            "postfix-out"
        );
        assert_eq!(instance_of(Path::new("/etc/elsewhere"), &instances), OTHER);
        assert_eq!(default_instance(&instances[..1]), "postfix-out");
        assert_eq!(default_instance(&[]), "postfix");
    }
}
