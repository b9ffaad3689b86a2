//! A throw-away unbound recursive resolver for tests.
//!
//! What: [`UnboundServer::start`] runs `unbound -d -c unbound.conf` in a temp dir on
//! `127.0.0.1:<free port>` (UDP and TCP). It can answer chosen names from `local-data` (a
//! "poisoned" view: a record that differs from what the authoritative server says) and forward
//! test zones to Knot instances with `stub-zone` (`do-not-query-localhost: no`). It runs the
//! iterator module only — no validator, no trust anchor, no remote control — so what it answers
//! is exactly what the stubs and the local data say.
//!
//! Why: the probes compare what a recursive resolver tells mail servers with what the
//! authoritative servers publish; this is the recursive side.
//!
//! Invariants: loopback only; the configuration passes `unbound-checkconf` before start; every
//! wait is bounded; Drop stops unbound (SIGTERM through `kill`, then SIGKILL) and removes the temp
//! dir. Needs the Debian `unbound` package (`scripts/install-deps`).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::knot::{CommandError, run_checked};
use crate::net::{free_port, loopback, poll_until};

/// How long unbound may take to accept connections after start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long unbound may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What the resolver answers from where.
#[derive(Debug, Clone, Default)]
pub struct UnboundConfig {
    /// `local-data` records in zone-file form (`"www.example.test. 300 IN A 192.0.2.66"`): unbound
    /// answers these itself, for that name and type, instead of asking anyone.
    pub local_data: Vec<String>,
    /// `stub-zone`s: zone name → authoritative servers asked for it (no recursion).
    pub stub_zones: Vec<(String, Vec<SocketAddr>)>,
    /// Extra `server:` lines, written last.
    pub server_lines: Vec<String>,
}

impl UnboundConfig {
    /// Adds a `local-data` record.
    pub fn local_data(mut self, record: &str) -> Self {
        self.local_data.push(record.into());
        self
    }

    /// Sends questions for `zone` to `servers`.
    pub fn stub_zone(mut self, zone: &str, servers: &[SocketAddr]) -> Self {
        self.stub_zones.push((zone.into(), servers.to_vec()));
        self
    }

    /// Adds a raw `server:` clause line (`"cache-max-ttl: 0"`).
    pub fn server_line(mut self, line: &str) -> Self {
        self.server_lines.push(line.into());
        self
    }
}

/// Something went wrong starting unbound.
#[derive(Debug, thiserror::Error)]
pub enum UnboundError {
    #[error("{program} is not installed; run scripts/install-deps as root")]
    NotInstalled { program: String },
    #[error("cannot prepare the unbound instance at {path}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("unbound exited during start; its log:\n{log}")]
    Exited { log: String },
    #[error("unbound on {addr} did not accept connections: {elapsed}; its log:\n{log}")]
    Wait {
        addr: SocketAddr,
        elapsed: crate::net::Elapsed,
        log: String,
    },
}

/// A running unbound; dropping it stops unbound and removes its temp dir.
pub struct UnboundServer {
    // Removed on drop, after Drop::drop stopped unbound.
    root: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl UnboundServer {
    /// Writes and checks the configuration, starts unbound in the foreground and waits until it
    /// accepts TCP connections.
    pub fn start(config: &UnboundConfig) -> Result<Self, UnboundError> {
        for program in ["unbound", "unbound-checkconf"] {
            if !crate::have_command(program) {
                return Err(UnboundError::NotInstalled {
                    program: program.into(),
                });
            }
        }
        let root = tempfile::Builder::new()
            .prefix(&format!("mailpulse-unbound-{}-", std::process::id()))
            .tempdir()
            .map_err(|source| setup_error(&std::env::temp_dir(), source))?;
        let addr = loopback(free_port());
        let conf = root.path().join("unbound.conf");
        std::fs::write(&conf, config_text(root.path(), addr, config))
            .map_err(|e| setup_error(&conf, e))?;
        run_checked(Command::new("unbound-checkconf").arg(&conf))?;

        let log_path = root.path().join("unbound.log");
        let log = std::fs::File::create(&log_path).map_err(|e| setup_error(&log_path, e))?;
        let log_err = log.try_clone().map_err(|e| setup_error(&log_path, e))?;
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| CommandError::Spawn {
                command: "unbound".into(),
                source,
            })?;
        let mut server = Self {
            root,
            addr,
            child: None,
        };
        // From here on Drop stops whatever was started, even when start fails.
        let child = server.child.insert(child);
        // Some(false): unbound exited (and was reaped); Some(true): it accepts connections.
        let started = poll_until(STARTUP_TIMEOUT, POLL_INTERVAL, || {
            if child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .ok()
                .map(|_| true)
        });
        match started {
            Ok(true) => Ok(server),
            Ok(false) => {
                // Already reaped: nothing for Drop to stop, and its pid may be reused.
                server.child = None;
                Err(UnboundError::Exited { log: server.log() })
            }
            Err(elapsed) => Err(UnboundError::Wait {
                addr,
                elapsed,
                log: server.log(),
            }),
        }
    }

    /// Where unbound listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// unbound's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("unbound.log")).unwrap_or_default()
    }

    /// Stops unbound: SIGTERM, then SIGKILL after `STOP_TIMEOUT`.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let exited = poll_until(STOP_TIMEOUT, POLL_INTERVAL, || {
            child.try_wait().ok().flatten().map(drop)
        });
        if exited.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for UnboundServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether unbound is installed.
pub fn available() -> bool {
    crate::have_command("unbound") && crate::have_command("unbound-checkconf")
}

fn config_text(root: &Path, addr: SocketAddr, config: &UnboundConfig) -> String {
    let root = root.display();
    let mut text = String::new();
    let mut server = |line: &str| {
        let _ = writeln!(text, "    {line}");
    };
    server("verbosity: 1");
    server(&format!("interface: {}", addr.ip()));
    server(&format!("port: {}", addr.port()));
    server("do-ip6: no");
    server("do-daemonize: no");
    server("username: \"\"");
    server("chroot: \"\"");
    server(&format!("directory: \"{root}\""));
    server(&format!("pidfile: \"{root}/unbound.pid\""));
    server("use-syslog: no");
    server("logfile: \"\"");
    server("num-threads: 1");
    server("so-reuseport: no");
    server("outgoing-range: 64");
    server("num-queries-per-thread: 32");
    server("access-control: 127.0.0.0/8 allow");
    // The stubs are Knot instances on loopback.
    server("do-not-query-localhost: no");
    // Iterator only: no DNSSEC validation, hence no trust anchor to maintain.
    server("module-config: \"iterator\"");
    server("qname-minimisation: no");
    // unbound answers `test.` (RFC 6761) itself with NXDOMAIN by default; the test zones live there.
    server("local-zone: \"test.\" nodefault");
    for record in &config.local_data {
        server(&format!("local-data: \"{record}\""));
    }
    for line in &config.server_lines {
        server(line);
    }
    let mut full = format!("server:\n{text}");
    for (zone, servers) in &config.stub_zones {
        let _ = writeln!(full, "stub-zone:\n    name: \"{zone}\"");
        for addr in servers {
            let _ = writeln!(full, "    stub-addr: {}@{}", addr.ip(), addr.port());
        }
    }
    full
}

fn setup_error(path: &Path, source: io::Error) -> UnboundError {
    UnboundError::Setup {
        path: path.to_path_buf(),
        source,
    }
}
