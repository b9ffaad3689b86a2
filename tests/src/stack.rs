//! A collector and an agent as real `mailpulse` processes on loopback, configured in a temp dir.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mailpulse_bin;
use crate::net::free_port;

pub const TOKEN: &str = "0123456789abcdef0123456789";

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn start(args: &[&str], log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("process log");
        let child = Command::new(mailpulse_bin())
            .args(args)
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn mailpulse");
        Self(child)
    }

    pub fn kill9(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sum of every series of a counter at /metrics (None when the collector does not answer).
pub fn metric_sum(http_port: u16, name: &str) -> Option<f64> {
    let body = scrape(http_port)?;
    Some(
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Writes collector.toml, agent.toml (with `agent_extra` TOML appended: more sections) and the
/// token into `d`; the agent follows `log`. Returns the collector's HTTP port.
pub fn write_configs(d: &Path, log: &Path, agent_extra: &str) -> u16 {
    let (grpc, http) = (free_port(), free_port());
    std::fs::write(d.join("token"), TOKEN).expect("token");
    // The agent refuses a token file other users could read.
    std::fs::set_permissions(
        d.join("token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("token mode");
    std::fs::write(
        d.join("collector.toml"),
        format!(
            // The agent's host is mx1; the real Postfix instances log as `mx`. Synthetic logs
            // have BSD timestamps (no year) up to a year back: the retention covers them.
            "grpc_listen_addr = \"127.0.0.1:{grpc}\"\nhttp_listen_addr = \"127.0.0.1:{http}\"\n\
             [auth]\ntokens = {{ mx1 = {{ token = \"{TOKEN}\", hosts = [\"mx1\", \"mx\"] }} }}\n\
             [store]\npath = \"{}\"\nfold_interval_secs = 1\nretention_days = 400\n",
            d.join("collector.redb").display()
        ),
    )
    .expect("collector config");
    std::fs::write(
        d.join("agent.toml"),
        format!(
            "[agent]\nid = \"mx1\"\nhost = \"mx1\"\nstate_dir = \"{}\"\n\
             [logs]\nfiles = [\"{}\"]\n\
             [ship]\ncollector_url = \"http://127.0.0.1:{grpc}\"\ntoken_file = \"{}\"\n\
             [aggregate]\nflush_interval_secs = 1\n{agent_extra}",
            d.join("state").display(),
            log.display(),
            d.join("token").display()
        ),
    )
    .expect("agent config");
    http
}

/// Starts `mailpulse collector` and `mailpulse agent` with the configs of [`write_configs`].
pub fn start_collector_and_agent(d: &Path) -> (Proc, Proc) {
    let c_conf = d.join("collector.toml");
    let a_conf = d.join("agent.toml");
    let collector = Proc::start(
        &["collector", "--config", c_conf.to_str().expect("utf-8")],
        &d.join("collector.out"),
    );
    let agent = Proc::start(
        &["agent", "--config", a_conf.to_str().expect("utf-8")],
        &d.join("agent.out"),
    );
    (collector, agent)
}

/// The value of the exposition line whose name and labels contain every `name="value"` pair
/// of `labels` (None when no line matches or the collector does not answer).
pub fn metric_value(http_port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let body = scrape(http_port)?;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            labels
                .iter()
                .all(|(n, v)| l.contains(&format!("{n}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// The body of `GET /metrics`, if the collector answers 200.
pub fn scrape(http_port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    if !body.starts_with("HTTP/1.0 200") && !body.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(body)
}
