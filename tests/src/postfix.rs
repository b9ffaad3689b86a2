//! A throw-away Postfix instance for tests.
//!
//! Each instance has its own config, queue and data directories under one temp dir, writes its log
//! itself (`maillog_file`, through `postlogd`; no syslog daemon), listens with smtpd on
//! `127.0.0.1:<free port>` only, never resolves names, and routes every domain through
//! `transport_maps` — test domains to loopback sinks, everything else to `error:`. Several instances
//! can run at once: nothing is shared but the read-only binaries and `/etc/postfix/postfix-files`.
//!
//! Needs root (Postfix's master runs as root and drops to `mail_owner`) and the Debian `postfix`
//! package (which creates the `postfix` user and the `postdrop` group).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;

use crate::net::{free_port, loopback, poll_until};

/// Where Debian installs the Postfix commands (`command_directory`).
const COMMAND_DIRECTORY: &str = "/usr/sbin";

/// What a test instance routes and refuses.
#[derive(Debug, Clone, Default)]
pub struct PostfixConfig {
    /// `transport_maps` entries: domain (or `*`) → next hop, e.g. `ok.test` → `smtp:[127.0.0.1]:2525`.
    /// A catch-all `* error:no route in tests` is added unless a `*` entry is given.
    pub routes: Vec<(String, String)>,
    /// `check_recipient_access` entries: address → action (`REJECT text`, `HOLD text`, ...).
    pub recipient_access: Vec<(String, String)>,
    /// Extra or overriding `main.cf` parameters, written last (the last setting wins in Postfix).
    pub main_cf: Vec<(String, String)>,
    /// No catch-all `*` route: domains without a route go to `default_transport` (and
    /// `relayhost`), as on a real outbound relay.
    pub no_catch_all: bool,
}

impl PostfixConfig {
    /// Routes `domain` to `nexthop` (a transport:nexthop string).
    pub fn route(mut self, domain: &str, nexthop: &str) -> Self {
        self.routes.push((domain.into(), nexthop.into()));
        self
    }

    /// Adds a recipient access rule checked at RCPT time.
    pub fn recipient_rule(mut self, address: &str, action: &str) -> Self {
        self.recipient_access.push((address.into(), action.into()));
        self
    }

    /// Leaves out the catch-all route (see [`PostfixConfig::no_catch_all`]).
    pub fn without_catch_all(mut self) -> Self {
        self.no_catch_all = true;
        self
    }

    /// Sets a `main.cf` parameter (overrides the defaults this module writes).
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.main_cf.push((name.into(), value.into()));
        self
    }
}

/// A message in the instance's queue, as `postqueue -j` prints it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct QueuedMessage {
    /// `maildrop`, `incoming`, `active`, `deferred` or `hold`.
    pub queue_name: String,
    pub queue_id: String,
    pub arrival_time: i64,
    pub message_size: u64,
    #[serde(default)]
    pub forced_expire: bool,
    pub sender: String,
    pub recipients: Vec<QueuedRecipient>,
}

/// One recipient of a [`QueuedMessage`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct QueuedRecipient {
    pub address: String,
    /// Why the last attempt failed; absent before the first attempt.
    pub delay_reason: Option<String>,
}

/// A Postfix command or file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PostfixError {
    #[error("postfix is not installed ({path} missing); run scripts/install-deps as root")]
    NotInstalled { path: PathBuf },
    #[error("cannot prepare the test instance at {path}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not run {command}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("`postqueue -j` printed a line that is not a queue entry: {line}")]
    QueueJson {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("postfix master (pid {pid}) still running {waited:?} after stop")]
    StopTimeout { pid: u32, waited: Duration },
}

/// A running test instance. Dropping it stops Postfix (and kills the master if stopping fails) and
/// removes the temp dir.
pub struct PostfixInstance {
    // Removed when the instance is dropped, after `Drop::drop` stopped Postfix.
    root: tempfile::TempDir,
    config_dir: PathBuf,
    queue_dir: PathBuf,
    maillog: PathBuf,
    smtpd_addr: SocketAddr,
    running: bool,
}

impl PostfixInstance {
    /// Writes the configuration, runs `postfix check` and `postfix start`.
    pub fn start(config: &PostfixConfig) -> Result<Self, PostfixError> {
        let postfix = command_path("postfix");
        if !postfix.is_file() {
            return Err(PostfixError::NotInstalled { path: postfix });
        }
        let root = tempfile::Builder::new()
            .prefix(&format!("mailpulse-postfix-{}-", std::process::id()))
            .tempdir()
            .map_err(|source| setup_error(&std::env::temp_dir(), source))?;
        let base = root.path().to_path_buf();
        // Postfix daemons run as `postfix` and open some paths (data dir, maps) by absolute name.
        set_mode(&base, 0o755)?;
        let config_dir = base.join("config");
        let queue_dir = base.join("queue");
        let data_dir = base.join("data");
        for dir in [&config_dir, &queue_dir, &data_dir] {
            std::fs::create_dir(dir).map_err(|e| setup_error(dir, e))?;
            set_mode(dir, 0o755)?;
        }
        // master.lock and the caches live here; `postfix check` only warns when it is root-owned.
        chown_to_mail_owner(&data_dir)?;

        let smtpd_addr = loopback(free_port());
        let maillog = base.join("maillog");
        let mut instance = Self {
            root,
            config_dir,
            queue_dir,
            maillog,
            smtpd_addr,
            running: false,
        };
        instance.write_config(config, &data_dir)?;
        instance.postfix(&["check"])?;
        // From here on Drop stops (or kills) whatever `postfix start` got running, even on failure.
        instance.running = true;
        instance.postfix(&["start"])?;
        instance.wait_for_smtpd()?;
        Ok(instance)
    }

    /// Address of the instance's smtpd.
    pub fn smtpd_addr(&self) -> SocketAddr {
        self.smtpd_addr
    }

    /// The instance's configuration directory (pass as `-c` to Postfix commands).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The instance's queue directory.
    pub fn queue_dir(&self) -> &Path {
        &self.queue_dir
    }

    /// Path of the log Postfix writes (`maillog_file`).
    pub fn maillog_path(&self) -> &Path {
        &self.maillog
    }

    /// The log so far (empty before Postfix wrote anything).
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// The temp dir holding config, queue, data and log.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The queue as `postqueue -j` reports it.
    pub fn queue(&self) -> Result<Vec<QueuedMessage>, PostfixError> {
        let output = self.run(command_path("postqueue"), &["-j"])?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|source| PostfixError::QueueJson {
                    line: line.to_string(),
                    source,
                })
            })
            .collect()
    }

    /// Asks the queue manager to retry every deferred message now (`postqueue -f`).
    pub fn flush(&self) -> Result<(), PostfixError> {
        self.run(command_path("postqueue"), &["-f"]).map(drop)
    }

    /// Stops Postfix and waits (bounded) until the master process is gone, so the log is final.
    pub fn stop(&mut self) -> Result<(), PostfixError> {
        if !self.running {
            return Ok(());
        }
        let pid = self.master_pid();
        let result = self.postfix(&["stop"]);
        let waited = Duration::from_secs(15);
        if let Some(pid) = pid
            && poll_until(waited, Duration::from_millis(50), || {
                (!process_alive(pid)).then_some(())
            })
            .is_err()
        {
            return Err(PostfixError::StopTimeout { pid, waited });
        }
        // Children (postlogd among them) exit once the master is gone; wait for them too, so that
        // nothing appends to the log after this returns.
        let queue_dir = self.queue_dir.clone();
        let _ = poll_until(waited, Duration::from_millis(50), || {
            processes_in(&queue_dir).is_empty().then_some(())
        });
        self.running = false;
        result.map(drop)
    }

    /// Pid of the running master, from `queue/pid/master.pid`.
    pub fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.queue_dir.join("pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn write_config(&self, config: &PostfixConfig, data_dir: &Path) -> Result<(), PostfixError> {
        let base = self.root.path();
        let transport = self.config_dir.join("transport");
        let access = self.config_dir.join("recipient_access");

        let mut routes = config.routes.clone();
        if !config.no_catch_all && !routes.iter().any(|(domain, _)| domain == "*") {
            routes.push(("*".into(), "error:no route in tests".into()));
        }
        write_map(&transport, &routes)?;
        write_map(&access, &config.recipient_access)?;
        let relay_domains: Vec<&str> = config
            .routes
            .iter()
            .map(|(domain, _)| domain.as_str())
            .filter(|d| *d != "*")
            .collect();

        let mut main_cf = String::new();
        let mut param = |name: &str, value: &str| {
            let _ = writeln!(main_cf, "{name} = {value}");
        };
        param("compatibility_level", "3.6");
        param("queue_directory", &path_str(&self.queue_dir));
        param("data_directory", &path_str(data_dir));
        param("mail_owner", "postfix");
        param("setgid_group", "postdrop");
        param("myhostname", "mx.test");
        param("mydomain", "test");
        param("myorigin", "$myhostname");
        param("mydestination", "");
        param("inet_interfaces", "loopback-only");
        param("inet_protocols", "ipv4");
        param("maillog_file", &path_str(&self.maillog));
        param(
            "maillog_file_prefixes",
            &format!("/var, /dev/stdout, {}", path_str(base)),
        );
        // No local delivery, no aliases, no NIS.
        param("alias_maps", "");
        param("alias_database", "");
        param("local_recipient_maps", "");
        param("biff", "no");
        // Never resolve: the host resolver is not on loopback.
        param("smtp_dns_support_level", "disabled");
        param("smtpd_peername_lookup", "no");
        param("mynetworks", "127.0.0.0/8");
        param("relay_domains", &relay_domains.join(" "));
        param("transport_maps", &format!("hash:{}", path_str(&transport)));
        param(
            "smtpd_relay_restrictions",
            "permit_mynetworks, reject_unauth_destination",
        );
        param(
            "smtpd_recipient_restrictions",
            &format!(
                "check_recipient_access hash:{}, permit_mynetworks, reject_unauth_destination",
                path_str(&access)
            ),
        );
        param("smtpd_error_sleep_time", "0");
        param("smtpd_soft_error_limit", "1000");
        param("smtpd_hard_error_limit", "1000");
        param("minimal_backoff_time", "5s");
        param("maximal_backoff_time", "10s");
        param("queue_run_delay", "5s");
        param("smtp_connect_timeout", "5s");
        param("delay_warning_time", "0h");
        for (name, value) in &config.main_cf {
            param(name, value);
        }
        write_file(&self.config_dir.join("main.cf"), &main_cf)?;
        write_file(&self.config_dir.join("master.cf"), &self.master_cf())?;
        self.run(command_path("postmap"), &[&path_str(&transport)])?;
        self.run(command_path("postmap"), &[&path_str(&access)])?;
        Ok(())
    }

    /// Debian's master.cf minus the services tests never use, every chroot column `n`, and smtpd on
    /// the instance's own loopback port.
    fn master_cf(&self) -> String {
        let smtpd = format!("{} inet n - n - - smtpd", self.smtpd_addr);
        [
            smtpd.as_str(),
            "pickup     unix  n - n 60    1 pickup",
            "cleanup    unix  n - n -     0 cleanup",
            "qmgr       unix  n - n 300   1 qmgr",
            "tlsmgr     unix  - - n 1000? 1 tlsmgr",
            "rewrite    unix  - - n -     - trivial-rewrite",
            "bounce     unix  - - n -     0 bounce",
            "defer      unix  - - n -     0 bounce",
            "trace      unix  - - n -     0 bounce",
            "verify     unix  - - n -     1 verify",
            "flush      unix  n - n 1000? 0 flush",
            "proxymap   unix  - - n -     - proxymap",
            "proxywrite unix  - - n -     1 proxymap",
            "smtp       unix  - - n -     - smtp",
            "relay      unix  - - n -     - smtp",
            "showq      unix  n - n -     - showq",
            "error      unix  - - n -     - error",
            "retry      unix  - - n -     - error",
            "discard    unix  - - n -     - discard",
            "anvil      unix  - - n -     1 anvil",
            "scache     unix  - - n -     1 scache",
            "postlog    unix-dgram n - n - 1 postlogd",
            "",
        ]
        .join("\n")
    }

    fn wait_for_smtpd(&self) -> Result<(), PostfixError> {
        let addr = self.smtpd_addr;
        poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .ok()
                .map(drop)
        })
        .map_err(|elapsed| PostfixError::Command {
            command: format!("connect to smtpd at {addr}"),
            status: elapsed.to_string(),
            output: self.maillog(),
        })
    }

    /// `postfix -c CONFIG_DIR <args>`.
    fn postfix(&self, args: &[&str]) -> Result<Output, PostfixError> {
        self.run(command_path("postfix"), args)
    }

    /// Runs a Postfix command against this instance (`-c CONFIG_DIR` first), failing on a non-zero
    /// exit status with everything it printed.
    fn run(&self, program: PathBuf, args: &[&str]) -> Result<Output, PostfixError> {
        let mut command = Command::new(&program);
        command.arg("-c").arg(&self.config_dir).args(args);
        // Keep the instance away from any MAIL_CONFIG of the caller's environment.
        command.env_remove("MAIL_CONFIG");
        let display = format!(
            "{} -c {} {}",
            program.display(),
            self.config_dir.display(),
            args.join(" ")
        );
        let output = command.output().map_err(|source| PostfixError::Spawn {
            command: display.clone(),
            source,
        })?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(PostfixError::Command {
                command: display,
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            })
        }
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let pid = self.master_pid();
        if self.stop().is_err()
            && let Some(pid) = pid
        {
            // SIGKILL the master; its children exit when the master's pipes close.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// A Postfix command in Debian's `command_directory`.
pub fn command_path(name: &str) -> PathBuf {
    Path::new(COMMAND_DIRECTORY).join(name)
}

/// Whether Postfix is installed and we may run it (root).
pub fn available() -> bool {
    command_path("postfix").is_file() && is_root()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn process_alive(pid: u32) -> bool {
    // Gone, or a zombie waiting for its parent: either way it does no more work.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of live processes whose working directory is `dir` (Postfix daemons chdir to the queue
/// directory).
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
                && process_alive(*pid)
        })
        .collect()
}

fn write_map(path: &Path, entries: &[(String, String)]) -> Result<(), PostfixError> {
    let mut text = String::new();
    for (key, value) in entries {
        let _ = writeln!(text, "{key} {value}");
    }
    write_file(path, &text)
}

fn write_file(path: &Path, text: &str) -> Result<(), PostfixError> {
    std::fs::write(path, text).map_err(|e| setup_error(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PostfixError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| setup_error(path, e))
}

fn chown_to_mail_owner(path: &Path) -> Result<(), PostfixError> {
    let uid = mail_owner_uid().map_err(|e| setup_error(path, e))?;
    std::os::unix::fs::chown(path, Some(uid), None).map_err(|e| setup_error(path, e))
}

/// Uid of the `postfix` user, from /etc/passwd (the Debian package creates it).
fn mail_owner_uid() -> io::Result<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some("postfix"))
                .then(|| fields.nth(1))
                .flatten()
                .and_then(|uid| uid.parse().ok())
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no `postfix` user in /etc/passwd"))
}

fn setup_error(path: &Path, source: io::Error) -> PostfixError {
    PostfixError::Setup {
        path: path.to_path_buf(),
        source,
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
