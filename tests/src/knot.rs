//! Throw-away Knot DNS authoritative servers for tests.
//!
//! What: [`KnotServer::start`] runs `knotd -c knot.conf` in a temp dir, listening on
//! `127.0.0.1:<free port>` (UDP and TCP), serving zones given as zone-file text ([`ZoneSpec`]).
//! [`KnotServer::set_zone`] rewrites a zone file, runs `knotc zone-reload` and waits until the new
//! SOA serial is served. Knot can sign a zone (ECDSA P-256, NSEC; one CSK, or a KSK and a ZSK:
//! [`Signing`]); its DS and DNSKEY come from `keymgr` for the test's trust anchor, and
//! [`KnotServer::zone_dump`] plus [`tamper`] make a signed zone whose signature no longer matches,
//! to serve from a second, non-signing instance. Two instances are two authoritative servers of
//! one zone that can disagree.
//!
//! Why real Knot: the resolver under test must meet real wire behaviour (TC bit, EDNS, NSEC,
//! REFUSED outside its zones), not a fake of our own.
//!
//! Invariants: loopback only; every wait is bounded (`STARTUP_TIMEOUT`, `RELOAD_TIMEOUT`); Drop
//! stops knotd (`knotc stop`, then SIGKILL) and removes the temp dir. Needs the Debian `knot`
//! and `knot-dnsutils` packages (`scripts/install-deps`).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::net::{free_port, loopback, poll_until};

/// How long knotd may take to serve every zone after start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a reloaded zone may take to serve its new serial.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `knotc stop` may take before knotd is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A zone to serve: its name and zone-file text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    /// The zone's name, without the trailing dot (`example.test`).
    pub name: String,
    /// Zone-file text; its SOA must be on one line (as [`zone_text`] writes it).
    pub text: String,
    /// Whether and how Knot signs the zone.
    pub signing: Signing,
}

/// How Knot signs a zone (ECDSA P-256, NSEC, keys made on first load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Served as written (DNSSEC records in the text are served as they are).
    Off,
    /// One combined signing key (`single-type-signing: on`).
    Csk,
    /// A key-signing key for the DNSKEY RRset and a zone-signing key for the rest.
    KskZsk,
}

impl Signing {
    /// The policy id in knot.conf, if any.
    fn policy(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Csk => Some("csk"),
            Self::KskZsk => Some("kskzsk"),
        }
    }
}

impl ZoneSpec {
    /// A zone served as written (it may hold DNSSEC records of its own: they are served as is).
    pub fn unsigned(name: &str, text: &str) -> Self {
        Self {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            text: text.to_string(),
            signing: Signing::Off,
        }
    }

    /// A zone Knot signs with one CSK.
    pub fn signed(name: &str, text: &str) -> Self {
        Self::unsigned(name, text).with_signing(Signing::Csk)
    }

    /// The zone signed as `signing` says.
    pub fn with_signing(mut self, signing: Signing) -> Self {
        self.signing = signing;
        self
    }
}

/// Something went wrong starting, driving or querying knotd.
#[derive(Debug, thiserror::Error)]
pub enum KnotError {
    #[error("{program} is not installed; run scripts/install-deps as root")]
    NotInstalled { program: String },
    #[error("cannot prepare the Knot instance at {path}")]
    Setup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("zone {zone} is not configured on this instance")]
    UnknownZone { zone: String },
    #[error("zone text for {zone} has no one-line SOA record with a serial")]
    NoSerial { zone: String },
    #[error("knotd exited during start; knotd log:\n{log}")]
    Exited { log: String },
    #[error("knotd on {addr} did not serve {what}: {elapsed}; knotd log:\n{log}")]
    Wait {
        addr: SocketAddr,
        what: String,
        elapsed: crate::net::Elapsed,
        log: String,
    },
}

/// A command failed to start or exited non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("could not run {command}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
}

/// A running knotd; dropping it stops knotd and removes its temp dir.
pub struct KnotServer {
    // Removed on drop, after Drop::drop stopped knotd.
    root: tempfile::TempDir,
    config: PathBuf,
    addr: SocketAddr,
    zones: Vec<ZoneSpec>,
    child: Option<Child>,
}

impl KnotServer {
    /// Writes the configuration and zone files, starts knotd and waits until it serves the SOA
    /// of every zone.
    pub fn start(zones: &[ZoneSpec]) -> Result<Self, KnotError> {
        for program in ["knotd", "knotc", "keymgr", "kdig"] {
            if !crate::have_command(program) {
                return Err(KnotError::NotInstalled {
                    program: program.into(),
                });
            }
        }
        let root = tempfile::Builder::new()
            .prefix(&format!("mailpulse-knot-{}-", std::process::id()))
            .tempdir()
            .map_err(|source| setup_error(&std::env::temp_dir(), source))?;
        let config = root.path().join("knot.conf");
        let mut server = Self {
            addr: loopback(free_port()),
            config,
            zones: zones.to_vec(),
            child: None,
            root,
        };
        for zone in zones {
            write_file(&server.zone_path(&zone.name), &zone.text)?;
        }
        write_file(&server.config, &server.config_text())?;
        server.knotc(&["conf-check"])?;

        let log_path = server.log_path();
        let log = std::fs::File::create(&log_path).map_err(|e| setup_error(&log_path, e))?;
        let log_err = log.try_clone().map_err(|e| setup_error(&log_path, e))?;
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&server.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| CommandError::Spawn {
                command: "knotd".into(),
                source,
            })?;
        let child = server.child.insert(child);
        let addr = server.addr;
        // Some(false): knotd exited (bad config, port taken); Some(true): every zone is served.
        let started = poll_until(STARTUP_TIMEOUT, POLL_INTERVAL, || {
            if child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            zones
                .iter()
                .all(|zone| matches!(serial_at(addr, &zone.name), Ok(Some(_))))
                .then_some(true)
        });
        match started {
            Ok(true) => Ok(server),
            Ok(false) => {
                // Already reaped: nothing for Drop to stop.
                server.child = None;
                Err(KnotError::Exited { log: server.log() })
            }
            Err(elapsed) => Err(KnotError::Wait {
                addr,
                what: "the SOA of every zone".into(),
                elapsed,
                log: server.log(),
            }),
        }
    }

    /// Where knotd listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance's temp dir (config, zone files, keys, log).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// knotd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Replaces a zone's text, reloads it and waits until the SOA serial written in `text` is
    /// served (for a signed zone: that serial or a later one, since Knot may bump it on signing).
    pub fn set_zone(&mut self, name: &str, text: &str) -> Result<(), KnotError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let signed = self
            .zones
            .iter()
            .find(|z| z.name == name)
            .map(|z| z.signing != Signing::Off)
            .ok_or_else(|| KnotError::UnknownZone { zone: name.clone() })?;
        let serial = soa_serial(text).ok_or_else(|| KnotError::NoSerial { zone: name.clone() })?;
        write_file(&self.zone_path(&name), text)?;
        for zone in self.zones.iter_mut().filter(|z| z.name == name) {
            zone.text = text.to_string();
        }
        self.knotc(&["zone-reload", &name])?;
        self.wait_for(
            &format!("serial {serial} of {name}"),
            RELOAD_TIMEOUT,
            |s| match s.serial(&name) {
                Ok(Some(now)) if now == serial || (signed && now > serial) => Some(()),
                _ => None,
            },
        )
    }

    /// The SOA serial knotd serves for `zone` now (`None` when it answers without a SOA).
    pub fn serial(&self, zone: &str) -> Result<Option<u32>, KnotError> {
        serial_at(self.addr, zone)
    }

    /// `kdig @<this server> +norec +time=1 +retry=0 <args>`, stdout as text.
    pub fn kdig(&self, args: &[&str]) -> Result<String, KnotError> {
        kdig_at(self.addr, args)
    }

    /// The DS records of a signed zone (`keymgr … ds`), one per line in zone-file form.
    pub fn ds(&self, zone: &str) -> Result<String, KnotError> {
        self.keymgr(zone, "ds")
    }

    /// The DNSKEY records of a signed zone's key-signing keys (`keymgr … dnskey`).
    pub fn dnskey(&self, zone: &str) -> Result<String, KnotError> {
        self.keymgr(zone, "dnskey")
    }

    /// The zone as knotd serves it (signed: with DNSKEY, RRSIG, NSEC), as zone-file text
    /// (`knotc zone-read` without its `[zone.]` prefix).
    pub fn zone_dump(&self, zone: &str) -> Result<String, KnotError> {
        let output = self.knotc(&["zone-read", zone])?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut dump = String::new();
        for line in text.lines() {
            let record = match line.split_once("] ") {
                Some((prefix, rest)) if prefix.starts_with('[') => rest,
                _ => line,
            };
            let _ = writeln!(dump, "{record}");
        }
        Ok(dump)
    }

    /// Stops knotd (`knotc stop`, SIGKILL after `STOP_TIMEOUT`).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = self.knotc(&["stop"]);
        let exited = poll_until(STOP_TIMEOUT, POLL_INTERVAL, || {
            child.try_wait().ok().flatten().map(drop)
        });
        if exited.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    fn keymgr(&self, zone: &str, what: &str) -> Result<String, KnotError> {
        let mut command = Command::new("keymgr");
        command.arg("-c").arg(&self.config).arg(zone).arg(what);
        let output = run_checked(&mut command)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn knotc(&self, args: &[&str]) -> Result<Output, KnotError> {
        let mut command = Command::new("knotc");
        command.arg("-c").arg(&self.config).args(args);
        Ok(run_checked(&mut command)?)
    }

    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<()>,
    ) -> Result<(), KnotError> {
        poll_until(timeout, POLL_INTERVAL, || check(self)).map_err(|elapsed| KnotError::Wait {
            addr: self.addr,
            what: what.to_string(),
            elapsed,
            log: self.log(),
        })
    }

    fn zone_path(&self, zone: &str) -> PathBuf {
        self.root.path().join(format!("{zone}.zone"))
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("knotd.log")
    }

    fn config_text(&self) -> String {
        let root = self.root.path().display();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "server:\n    rundir: \"{root}\"\n    listen: {ip}@{port}\n    \
             udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: \"{root}\"\n\
             log:\n  - target: stderr\n    any: info\n\
             policy:\n  - id: csk\n    algorithm: ecdsap256sha256\n    \
             single-type-signing: on\n    nsec3: off\n  \
             - id: kskzsk\n    algorithm: ecdsap256sha256\n    \
             single-type-signing: off\n    nsec3: off\n\
             template:\n  - id: default\n    storage: \"{root}\"\n    \
             zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\
             zone:",
            ip = self.addr.ip(),
            port = self.addr.port(),
        );
        for zone in &self.zones {
            let _ = writeln!(
                text,
                "  - domain: {name}\n    file: \"{file}\"",
                name = zone.name,
                file = self.zone_path(&zone.name).display(),
            );
            if let Some(policy) = zone.signing.policy() {
                let _ = writeln!(text, "    dnssec-signing: on\n    dnssec-policy: {policy}");
            }
        }
        text
    }
}

impl Drop for KnotServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Zone-file text for `origin` with a one-line SOA of `serial` (primary `ns1.<origin>`), an NS
/// record for `ns1.<origin>` with glue 127.0.0.1, then `records` (relative or absolute owners,
/// `$TTL 300` for records without a TTL).
pub fn zone_text(origin: &str, serial: u32, records: &[&str]) -> String {
    let origin = origin.trim_end_matches('.');
    let mut text = format!(
        "$ORIGIN {origin}.\n$TTL 300\n\
         @ 3600 IN SOA ns1.{origin}. hostmaster.{origin}. {serial} 3600 600 86400 60\n\
         @ 3600 IN NS ns1.{origin}.\nns1 3600 IN A 127.0.0.1\n"
    );
    for record in records {
        let _ = writeln!(text, "{record}");
    }
    text
}

/// The serial of the first one-line SOA record in zone-file text.
pub fn soa_serial(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let line = line.split(';').next().unwrap_or_default();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let at = tokens.iter().position(|t| t.eq_ignore_ascii_case("SOA"))?;
        tokens.get(at + 3)?.parse().ok()
    })
}

/// `dump` (as [`KnotServer::zone_dump`] prints it) with the RDATA of the `rtype` record(s) of
/// `owner` replaced by `rdata`, their RRSIGs left alone — so their signatures no longer match.
/// `None` when no such record is in the dump.
pub fn tamper(dump: &str, owner: &str, rtype: &str, rdata: &str) -> Option<String> {
    let owner = format!("{}.", owner.trim_end_matches('.').to_ascii_lowercase());
    let mut changed = false;
    let mut text = String::new();
    for line in dump.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        match tokens.as_slice() {
            [name, ttl, kind, ..]
                if name.eq_ignore_ascii_case(&owner) && kind.eq_ignore_ascii_case(rtype) =>
            {
                changed = true;
                let _ = writeln!(text, "{name} {ttl} {kind} {rdata}");
            }
            _ => {
                let _ = writeln!(text, "{line}");
            }
        }
    }
    changed.then_some(text)
}

/// The SOA serial `server` answers for `zone` (`None` when the answer has no SOA).
pub fn serial_at(server: SocketAddr, zone: &str) -> Result<Option<u32>, KnotError> {
    let output = kdig_at(server, &["+short", zone, "SOA"])?;
    Ok(output
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|serial| serial.parse().ok()))
}

/// `kdig @server +norec +time=1 +retry=0 <args>`, stdout as text.
pub fn kdig_at(server: SocketAddr, args: &[&str]) -> Result<String, KnotError> {
    let mut command = Command::new("kdig");
    command
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+norec", "+time=1", "+retry=0"])
        .args(args);
    let output = run_checked(&mut command)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether the Knot tools are installed.
pub fn available() -> bool {
    ["knotd", "knotc", "keymgr", "kdig"]
        .iter()
        .all(|program| crate::have_command(program))
}

/// Runs `command`, failing on a non-zero exit with everything it printed.
pub(crate) fn run_checked(command: &mut Command) -> Result<Output, CommandError> {
    let display = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            command: display.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError::Failed {
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

fn write_file(path: &Path, text: &str) -> Result<(), KnotError> {
    std::fs::write(path, text).map_err(|e| setup_error(path, e))
}

fn setup_error(path: &Path, source: io::Error) -> KnotError {
    KnotError::Setup {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_text_has_the_serial_and_tamper_keeps_rrsigs() {
        let text = zone_text("example.test", 42, &["www 60 IN A 192.0.2.1"]);
        assert_eq!(soa_serial(&text), Some(42));
        let dump = "www.example.test. 60 A 192.0.2.1\n\
                    www.example.test. 60 RRSIG A 13 3 60 20300101000000 20200101000000 1 example.test. AAAA\n";
        let tampered = tamper(dump, "WWW.example.test", "A", "192.0.2.66").expect("record found");
        assert!(tampered.contains("www.example.test. 60 A 192.0.2.66\n"));
        assert!(tampered.contains("RRSIG A 13"));
        assert_eq!(tamper(dump, "mail.example.test", "A", "192.0.2.66"), None);
    }
}
