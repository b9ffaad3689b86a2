//! Throw-away Prometheus Alertmanager clusters for tests.
//!
//! What: [`AlertmanagerCluster::start`] runs N `prometheus-alertmanager` processes (Debian 0.25),
//! each with its own config, storage dir and log in one temp dir, its API on
//! `127.0.0.1:<free port>` and, for N > 1, its gossip on another loopback port, every instance
//! listing every other as `--cluster.peer` (so any of them can be restarted and rejoin). All
//! alerts go to one receiver, [`RECEIVER`], optionally a webhook. [`AlertmanagerCluster::stop`],
//! [`AlertmanagerCluster::kill`] and [`AlertmanagerCluster::restart`] keep an instance's storage
//! and ports.
//!
//! What Alertmanager shares and what it does not: the cluster gossips silences and the
//! notification log (who notified what), never alerts. An alert posted to one instance is listed
//! by that instance only, as Prometheus posts every alert to every Alertmanager; and alerts live
//! in memory, so a restarted instance lists none until they are posted again. Silences come back
//! after a restart, from its storage (written on SIGTERM) or from its peers.
//!
//! Why real Alertmanager: what mailpulse pushes must be accepted, fingerprinted, grouped and
//! notified the way production does it, not the way a fake of ours believes it does.
//!
//! Invariants: loopback only; every wait is bounded (`STARTUP_TIMEOUT`, `STOP_TIMEOUT`,
//! `HTTP_TIMEOUT`, and the caller's timeout in [`AlertmanagerCluster::wait_for`]); Drop kills every
//! instance (SIGKILL) and removes the temp dir. Failures panic with what was expected and the
//! instance's log. Needs the Debian `prometheus-alertmanager` package.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::net::{free_port, loopback, poll_until};

/// The name of the one receiver every alert is routed to.
pub const RECEIVER: &str = "mailpulse-test";

const PROGRAM: &str = "prometheus-alertmanager";
/// How long instances may take to answer `/-/ready` and, clustered, to settle with every peer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an instance may take to exit after SIGTERM (it leaves the cluster first).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one HTTP exchange with an instance may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);
const ALERTS_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How much of an instance's log a panic message quotes.
const LOG_TAIL_BYTES: usize = 4000;

/// Gossip timings, far below the defaults so a loopback cluster forms, settles and spreads a
/// silence within a second or two.
const CLUSTER_FLAGS: &[&str] = &[
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
    // Settling polls every 10 gossip intervals and wants 3 quiet polls: about 2 s here.
    "--cluster.settle-timeout=2s",
    // The n-th peer (by name) waits n × this before notifying what an earlier one has not.
    "--cluster.peer-timeout=2s",
    "--cluster.probe-interval=500ms",
    "--cluster.probe-timeout=200ms",
    "--cluster.reconnect-interval=1s",
];

/// N running Alertmanager instances; dropping it kills them and removes their temp dir.
pub struct AlertmanagerCluster {
    instances: Vec<Instance>,
    // Removed on drop, after Drop::drop killed every instance.
    root: tempfile::TempDir,
}

/// One instance: where it listens, how it is started, and its process while it runs.
struct Instance {
    web: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl AlertmanagerCluster {
    /// Writes a config per instance (route everything to [`RECEIVER`]; a webhook with
    /// `send_resolved: true` when `webhook_url` is given; group by `alertname`, `group_wait` 0s,
    /// `group_interval` 1s, `repeat_interval` 1h), starts `n` instances and waits until each
    /// answers `/-/ready` and, when `n > 1`, reports a settled cluster of at least `n` peers.
    ///
    /// Blocks the calling thread for the wait (about 2 s clustered, less alone).
    pub fn start(n: usize, webhook_url: Option<&str>) -> Self {
        assert!(n > 0, "an Alertmanager cluster needs at least one instance");
        assert!(
            available(),
            "{PROGRAM} is not installed: install the Debian prometheus-alertmanager package"
        );
        let root = tempfile::Builder::new()
            .prefix(&format!("mailpulse-alertmanager-{}-", std::process::id()))
            .tempdir()
            .expect("a temp dir for the Alertmanager instances");
        let config = root.path().join("alertmanager.yml");
        std::fs::write(&config, config_text(webhook_url)).expect("write alertmanager.yml");

        let web_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let gossip_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let instances = (0..n)
            .map(|i| {
                let dir = root.path().join(format!("am{i}"));
                let storage = dir.join("data");
                std::fs::create_dir_all(&storage).expect("create the instance's storage dir");
                let mut args = vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.path={}", storage.display()),
                    format!("--web.listen-address={}", loopback(web_ports[i])),
                ];
                if n == 1 {
                    // Empty disables clustering (the default listens on 0.0.0.0:9094).
                    args.push("--cluster.listen-address=".into());
                } else {
                    let gossip = loopback(gossip_ports[i]);
                    args.push(format!("--cluster.listen-address={gossip}"));
                    args.push(format!("--cluster.advertise-address={gossip}"));
                    for (j, port) in gossip_ports.iter().enumerate() {
                        if j != i {
                            args.push(format!("--cluster.peer={}", loopback(*port)));
                        }
                    }
                    args.extend(CLUSTER_FLAGS.iter().map(|flag| flag.to_string()));
                }
                Instance {
                    web: loopback(web_ports[i]),
                    args,
                    log: dir.join("alertmanager.log"),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { instances, root };
        // From here on Drop kills whatever was started, even when start panics.
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            let outcome = poll_until(STARTUP_TIMEOUT, READY_POLL_INTERVAL, || {
                match cluster.exited(i) {
                    Some(status) => Some(Err(status)),
                    None => cluster.ready_blocking(i).then_some(Ok(())),
                }
            });
            cluster.check_started(i, outcome.map_err(|e| e.to_string()));
        }
        cluster
    }

    /// How many instances the cluster has (running or stopped).
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether the cluster has no instances (never: [`Self::start`] wants at least one).
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The base URL of instance `i`'s API (`http://127.0.0.1:PORT`).
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.instance(i).web)
    }

    /// Where instance `i`'s API listens.
    pub fn web_addr(&self, i: usize) -> SocketAddr {
        self.instance(i).web
    }

    /// Instance `i`'s log so far (every run of it, appended).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.instance(i).log).unwrap_or_default()
    }

    /// The temp dir holding the config, and per instance `am<i>/data` and `am<i>/alertmanager.log`.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// `GET /api/v2/alerts` of instance `i`: the alerts it holds that have not resolved (active,
    /// suppressed or unprocessed), each with `labels`, `annotations`, `startsAt`, `endsAt`,
    /// `fingerprint`, `status` and `receivers`. Panics when the instance does not answer.
    pub async fn alerts(&self, i: usize) -> Vec<Value> {
        self.get_list(i, "/api/v2/alerts")
            .await
            .unwrap_or_else(|e| self.fail(i, &e))
    }

    /// `POST /api/v2/alerts` to instance `i` with `alerts`, a JSON array of
    /// `{labels, annotations, startsAt, endsAt, generatorURL}` (see [`alert`]). Panics unless
    /// the instance answers 200.
    pub async fn post_alerts(&self, i: usize, alerts: &Value) {
        self.post(i, "/api/v2/alerts", alerts).await;
    }

    /// `GET /api/v2/silences` of instance `i` (expired ones included; see `status.state`).
    pub async fn silences(&self, i: usize) -> Vec<Value> {
        self.get_list(i, "/api/v2/silences")
            .await
            .unwrap_or_else(|e| self.fail(i, &e))
    }

    /// `POST /api/v2/silences` to instance `i` (`{matchers, startsAt, endsAt, createdBy,
    /// comment}`); returns the new silence's id.
    pub async fn post_silence(&self, i: usize, silence: &Value) -> String {
        let answer = self.post(i, "/api/v2/silences", silence).await;
        serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|v| v["silenceID"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.fail(i, &format!("no silenceID in the answer {answer:?}")))
    }

    /// `GET /api/v2/status` of instance `i` (`cluster.status`, `cluster.peers`, `config`, …).
    pub async fn status(&self, i: usize) -> Value {
        let body = self
            .get_ok(i, "/api/v2/status")
            .await
            .unwrap_or_else(|e| self.fail(i, &e));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| self.fail(i, &format!("status is not JSON ({e}): {body:?}")))
    }

    /// Polls [`Self::alerts`] of instance `i` every 200 ms until `pred` holds, and returns those
    /// alerts; panics naming `what` with the last answer (or error) after `timeout`.
    pub async fn wait_for<F>(&self, i: usize, what: &str, timeout: Duration, pred: F) -> Vec<Value>
    where
        F: FnMut(&[Value]) -> bool,
    {
        self.wait_for_list(i, "/api/v2/alerts", what, timeout, pred)
            .await
    }

    /// Polls [`Self::silences`] of instance `i` like [`Self::wait_for`] does alerts.
    pub async fn wait_for_silences<F>(
        &self,
        i: usize,
        what: &str,
        timeout: Duration,
        pred: F,
    ) -> Vec<Value>
    where
        F: FnMut(&[Value]) -> bool,
    {
        self.wait_for_list(i, "/api/v2/silences", what, timeout, pred)
            .await
    }

    /// Stops instance `i` gracefully (SIGTERM: it leaves the cluster and writes its silences and
    /// notification log to storage; SIGKILL after `STOP_TIMEOUT`). Storage and ports are kept for
    /// [`Self::restart`]. Blocks for the exit, about 2 s when clustered.
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.instance_mut(i).child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let exited = poll_until(STOP_TIMEOUT, Duration::from_millis(20), || {
            child.try_wait().ok().flatten()
        });
        if exited.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Kills instance `i` (SIGKILL) as a crash would: nothing is written to storage, and its
    /// peers count it as a member until they find it dead. Storage and ports are kept.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.instance_mut(i).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts stopped (or killed) instance `i` again with the same arguments, storage and ports,
    /// and waits until it is ready as in [`Self::start`]. A running instance is stopped first.
    pub async fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
        let start = Instant::now();
        let rounds = STARTUP_TIMEOUT.as_millis() / READY_POLL_INTERVAL.as_millis() + 1;
        let mut outcome = Err(format!(
            "not ready after {:.1}s",
            STARTUP_TIMEOUT.as_secs_f64()
        ));
        for _ in 0..rounds {
            if let Some(status) = self.exited(i) {
                outcome = Ok(Err(status));
                break;
            }
            if self.ready(i).await {
                outcome = Ok(Ok(()));
                break;
            }
            if start.elapsed() >= STARTUP_TIMEOUT {
                break;
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
        self.check_started(i, outcome);
    }

    fn instance(&self, i: usize) -> &Instance {
        self.instances.get(i).unwrap_or_else(|| {
            panic!(
                "no Alertmanager instance {i}: the cluster has {}",
                self.instances.len()
            )
        })
    }

    fn instance_mut(&mut self, i: usize) -> &mut Instance {
        let n = self.instances.len();
        self.instances
            .get_mut(i)
            .unwrap_or_else(|| panic!("no Alertmanager instance {i}: the cluster has {n}"))
    }

    /// Starts instance `i`'s process, its output appended to its log.
    fn spawn(&mut self, i: usize) {
        let instance = self.instance_mut(i);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&instance.log)
            .expect("open the Alertmanager log");
        let log_err = log.try_clone().expect("dup the Alertmanager log");
        let child = Command::new(PROGRAM)
            .args(&instance.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PROGRAM}: {e}"));
        instance.child = Some(child);
    }

    /// The exit status of instance `i` if its process has exited (and been reaped) since it was
    /// started; its child is forgotten then, as its pid may be reused.
    fn exited(&mut self, i: usize) -> Option<String> {
        let instance = self.instance_mut(i);
        let status = instance.child.as_mut()?.try_wait().ok().flatten()?;
        instance.child = None;
        Some(status.to_string())
    }

    /// Panics unless `outcome` says instance `i` became ready: `Err` is a wait that ran out,
    /// `Ok(Err(status))` a process that exited.
    fn check_started(&self, i: usize, outcome: Result<Result<(), String>, String>) {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(status)) => self.fail(i, &format!("exited during start ({status})")),
            Err(elapsed) => self.fail(
                i,
                &format!("not ready (/-/ready 200, cluster settled with every peer): {elapsed}"),
            ),
        }
    }

    /// Whether instance `i` is ready: `/-/ready` answers 200 and, clustered, `/api/v2/status`
    /// says the cluster settled with at least as many peers as the cluster has instances.
    fn ready_blocking(&self, i: usize) -> bool {
        let web = self.instance(i).web;
        let answer = |path| {
            exchange_blocking(web, &request("GET", path, None))
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| r.body)
        };
        answer("/-/ready").is_some()
            && (self.instances.len() == 1
                || answer("/api/v2/status")
                    .is_some_and(|body| settled(&body, self.instances.len())))
    }

    /// [`Self::ready_blocking`] without blocking the runtime.
    async fn ready(&self, i: usize) -> bool {
        let web = self.instance(i).web;
        let answer = async |path| {
            exchange(web, &request("GET", path, None))
                .await
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| r.body)
        };
        if answer("/-/ready").await.is_none() {
            return false;
        }
        self.instances.len() == 1
            || answer("/api/v2/status")
                .await
                .is_some_and(|body| settled(&body, self.instances.len()))
    }

    async fn wait_for_list<F>(
        &self,
        i: usize,
        path: &str,
        what: &str,
        timeout: Duration,
        mut pred: F,
    ) -> Vec<Value>
    where
        F: FnMut(&[Value]) -> bool,
    {
        let start = Instant::now();
        let rounds = timeout.as_millis() / ALERTS_POLL_INTERVAL.as_millis() + 1;
        let mut last = Err("never asked".to_string());
        for _ in 0..rounds {
            last = self.get_list(i, path).await;
            if let Ok(list) = &last
                && pred(list)
            {
                return last.unwrap_or_default();
            }
            if start.elapsed() >= timeout {
                break;
            }
            tokio::time::sleep(ALERTS_POLL_INTERVAL).await;
        }
        let last = match last {
            Ok(list) => serde_json::to_string_pretty(&list).unwrap_or_default(),
            Err(e) => format!("error: {e}"),
        };
        self.fail(
            i,
            &format!(
                "GET {path}: expected {what} within {:.1}s; last answer:\n{last}",
                timeout.as_secs_f64()
            ),
        )
    }

    /// The JSON array `path` of instance `i` answers with 200.
    async fn get_list(&self, i: usize, path: &str) -> Result<Vec<Value>, String> {
        let body = self.get_ok(i, path).await?;
        match serde_json::from_str(&body) {
            Ok(Value::Array(list)) => Ok(list),
            _ => Err(format!("GET {path}: expected a JSON array, got {body:?}")),
        }
    }

    /// The body `path` of instance `i` answers with 200.
    async fn get_ok(&self, i: usize, path: &str) -> Result<String, String> {
        let response = exchange(self.instance(i).web, &request("GET", path, None))
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if response.status != 200 {
            return Err(format!(
                "GET {path}: expected 200, got {}: {}",
                response.status, response.body
            ));
        }
        Ok(response.body)
    }

    /// POSTs `json` to `path` of instance `i`; the body of its 200 answer.
    async fn post(&self, i: usize, path: &str, json: &Value) -> String {
        let body = json.to_string();
        let response = exchange(self.instance(i).web, &request("POST", path, Some(&body)))
            .await
            .unwrap_or_else(|e| self.fail(i, &format!("POST {path}: {e}")));
        if response.status != 200 {
            self.fail(
                i,
                &format!(
                    "POST {path}: expected 200, got {}: {}\nposted: {body}",
                    response.status, response.body
                ),
            );
        }
        response.body
    }

    /// Panics with `what` about instance `i` and the tail of its log.
    fn fail(&self, i: usize, what: &str) -> ! {
        let log = self.log(i);
        let mut cut = log.len().saturating_sub(LOG_TAIL_BYTES);
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        panic!(
            "Alertmanager instance {i} ({}): {what}\n--- its log ({}) ---\n{}",
            self.url(i),
            self.instance(i).log.display(),
            &log[cut..]
        );
    }
}

impl Drop for AlertmanagerCluster {
    fn drop(&mut self) {
        for i in 0..self.instances.len() {
            self.kill(i);
        }
    }
}

/// Whether the Alertmanager binary is installed.
pub fn available() -> bool {
    crate::have_command(PROGRAM)
}

/// One alert as `POST /api/v2/alerts` takes it: starting now, ending `lasts` from now (it must be
/// posted again before then or it resolves), `generatorURL` `http://127.0.0.1/mailpulse-test`.
pub fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)], lasts: Duration) -> Value {
    let now = SystemTime::now();
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "labels": map(labels),
        "annotations": map(annotations),
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + lasts),
        "generatorURL": "http://127.0.0.1/mailpulse-test",
    })
}

/// A time as RFC 3339 UTC with milliseconds (`2024-10-07T09:05:00.123Z`), as Alertmanager writes
/// and reads it.
pub fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .expect("test clocks are after 1970");
    let secs = since_epoch.as_secs() as i64;
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = crate::bsd_time::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// The Alertmanager config every instance reads.
fn config_text(webhook_url: Option<&str>) -> String {
    let mut text = format!(
        "route:\n  receiver: {RECEIVER}\n  group_by: ['alertname']\n  group_wait: 0s\n  \
         group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: {RECEIVER}\n"
    );
    if let Some(url) = webhook_url {
        // A JSON string is a YAML string: no quoting rules of our own.
        let url = Value::from(url).to_string();
        let _ = write!(
            text,
            "    webhook_configs:\n      - url: {url}\n        send_resolved: true\n"
        );
    }
    text
}

/// Whether a `/api/v2/status` body says the cluster settled with at least `peers` members.
fn settled(status_body: &str, peers: usize) -> bool {
    let Ok(status) = serde_json::from_str::<Value>(status_body) else {
        return false;
    };
    let cluster = &status["cluster"];
    cluster["status"] == "ready"
        && cluster["peers"]
            .as_array()
            .is_some_and(|p| p.len() >= peers)
}

/// Something went wrong talking HTTP to an instance.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed HTTP answer: {0:?}")]
    Malformed(String),
}

/// An HTTP answer: its status code and body.
struct Response {
    status: u16,
    body: String,
}

/// An HTTP/1.0 request: the server closes the connection after one plain (never chunked) body.
fn request(method: &str, path: &str, json: Option<&str>) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(json) = json {
        let _ = write!(
            text,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            json.len()
        );
    }
    text.push_str("\r\n");
    text.push_str(json.unwrap_or_default());
    text.into_bytes()
}

fn parse_response(raw: &[u8]) -> Result<Response, HttpError> {
    let text = String::from_utf8_lossy(raw);
    let malformed = || HttpError::Malformed(text.chars().take(200).collect());
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// One request and its answer over a blocking socket (for [`AlertmanagerCluster::start`]).
fn exchange_blocking(addr: SocketAddr, request: &[u8]) -> Result<Response, HttpError> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// One request and its answer, without blocking the runtime.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Response, HttpError> {
    let talk = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, io::Error>(raw)
    };
    let raw = tokio::time::timeout(HTTP_TIMEOUT, talk)
        .await
        .map_err(|_| HttpError::Timeout(HTTP_TIMEOUT))??;
    parse_response(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(1_709_164_800_250);
        assert_eq!(rfc3339(leap_day), "2024-02-29T00:00:00.250Z");
    }

    #[test]
    fn config_quotes_the_webhook_url_and_resolves() {
        let text = config_text(Some("http://127.0.0.1:1234/hook?a=b"));
        assert!(
            text.contains("- url: \"http://127.0.0.1:1234/hook?a=b\"\n"),
            "{text}"
        );
        assert!(text.contains("send_resolved: true"), "{text}");
        assert!(!config_text(None).contains("webhook_configs"));
    }

    #[test]
    fn responses_parse_and_settling_needs_every_peer() {
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\n[]").expect("parses");
        assert_eq!((r.status, r.body.as_str()), (200, "[]"));
        assert!(parse_response(b"garbage").is_err());
        let two = r#"{"cluster":{"status":"ready","peers":[{},{}]}}"#;
        assert!(settled(two, 2));
        assert!(!settled(two, 3));
        assert!(!settled(
            r#"{"cluster":{"status":"settling","peers":[{},{}]}}"#,
            2
        ));
    }
}
