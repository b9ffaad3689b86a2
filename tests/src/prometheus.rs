//! A throw-away Prometheus (the Debian package) on loopback, and its HTTP query API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::net::{free_port, poll_until};
use crate::stack::Proc;

/// A running Prometheus; dropping it (or [`Prometheus::kill`]) stops it.
pub struct Prometheus {
    port: u16,
    process: Proc,
}

/// The installed `prometheus` binary.
pub fn binary() -> &'static str {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("prometheus is installed by scripts/install-deps")
}

impl Prometheus {
    /// Starts Prometheus with its data and logs in `dir`, scraping `targets` (host:port, every
    /// second, `honor_labels` so the samples' own `instance` label is kept), and waits until
    /// it answers queries (bounded: 30 s).
    pub fn start(dir: &Path, targets: &[String]) -> Self {
        let mut config = "global:\n  scrape_interval: 1s\n".to_owned();
        if !targets.is_empty() {
            let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            config.push_str(&format!(
                "scrape_configs:\n  - job_name: mailpulse\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
        let port = free_port();
        let process = Proc(
            Command::new(binary())
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                .stdout(std::fs::File::create(dir.join("prometheus.out")).expect("log"))
                .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("log"))
                .spawn()
                .expect("start prometheus"),
        );
        let prometheus = Prometheus { port, process };
        let ready = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            prometheus.query("1").filter(|v| v["status"] == "success")
        });
        assert!(
            ready.is_ok(),
            "prometheus did not answer; logs in {}",
            dir.display()
        );
        prometheus
    }

    /// Where remote-write clients send (the receiver is on: `--web.enable-remote-write-receiver`).
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// `GET /api/v1/query?query=…`: Prometheus' whole JSON answer (errors included).
    pub fn query(&self, query: &str) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let q: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        write!(
            s,
            "GET /api/v1/query?query={q} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        serde_json::from_str(body.split("\r\n\r\n").nth(1)?).ok()
    }

    /// The value of a query's first result.
    pub fn value(&self, query: &str) -> Option<f64> {
        self.query(query)?["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Stops it now.
    pub fn kill(&mut self) {
        self.process.kill9();
    }
}
