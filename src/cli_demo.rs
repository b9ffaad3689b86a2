//! `mailpulse demo`: a small fleet's day, fast-forwarded, through a real collector.
//!
//! An embedded collector (its store in a temporary directory) and one simulated agent per host:
//! the simulator's samples and DNS probe answers (what `mailpulse simulate` writes as logs,
//! through the agent's own pipeline) reach the collector over the agent protocol, window by
//! window. The analyzer judges on the simulated time: the day before is fed at full speed (the
//! detectors learn the daily pattern), then the day of the incidents at `--speed`. Each agent
//! answers the playbooks' actions as a real agent does in a dry run: the agent's own executor
//! plans the commands against a Postfix configuration of its own (nothing runs). New alerts
//! and the actions they triggered are printed as they happen; the console and `/metrics` are
//! served throughout and `--linger` seconds after. The end is a table: each incident, when it
//! was detected, the false alerts and the actions proposed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mailpulse_collector::CollectorConfig;
use mailpulse_collector::alerting::http::Endpoint;
use mailpulse_collector::analyze::Clock;
use mailpulse_collector::ingest::auth::TokenSpec;
use mailpulse_proto::v1 as pb;
use mailpulse_proto::v1::agent_service_client::AgentServiceClient;
use mailpulse_sim::fleet::{IncidentLabel, Scenario};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// What `mailpulse demo` takes.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub seed: u64,
    pub hosts: usize,
    /// Simulated seconds per real second during the day of the incidents.
    pub speed: f64,
    /// Seconds the console stays up after the day.
    pub linger: u64,
    /// The console's and `/metrics`' address (port taken: any free one).
    pub listen: SocketAddr,
    /// Fail (exit status 1) when fewer incidents were detected.
    pub min_detected: usize,
}

const WINDOW_SECS: u32 = 300;
const DAY: i64 = 86_400;
/// Days before the day of the incidents, fed at full speed: the detectors' history.
const WARMUP_DAYS: i64 = 7;

/// The day of the incidents: the last whole UTC day; the day before teaches the detectors.
fn scenario(seed: u64, hosts: usize, live_start: i64) -> Result<Scenario> {
    let at = |hour: f64| rfc3339(live_start + (hour * 3600.0) as i64);
    let mut text = format!(
        r#"name = "demo"
seed = {seed}
start = {start}
days = {days}
# No weekly pattern: a week teaches the detectors the daily one.
[traffic]
messages_per_day = 6000
night_factor = 0.25
weekend_factor = 1.0
noise = 0.08
"#,
        start = rfc3339(live_start - WARMUP_DAYS * DAY),
        days = WARMUP_DAYS + 1,
    );
    for i in 1..=hosts {
        let per_day = 4000 + 1500 * (i % 3);
        text.push_str(&format!(
            "[[hosts]]\nname = \"mx{i}\"\ntraffic = {{ messages_per_day = {per_day} }}\n"
        ));
    }
    let last = format!("mx{hosts}");
    text.push_str(&format!(
        r#"
[[incidents]]
kind = "bounce_storm"
hosts = ["mx1"]
start = {storm}
end = {storm_end}
domain = "gmail.com"
share = 0.85

[[incidents]]
kind = "ip_blocklisted"
hosts = ["mx2"]
start = {listed}
end = {listed_end}

[[incidents]]
kind = "compromised_account"
hosts = ["mx3"]
start = {stolen}
end = {stolen_end}
sasl_user = "j.martin@example.org"
messages_per_hour = 300

[[incidents]]
kind = "dns_change"
hosts = ["mx1"]
start = {dns}
end = {dns_end}

[[incidents]]
kind = "spool_filling"
hosts = ["{last}"]
start = {spool}
end = {spool_end}
fill_bytes_per_hour = 4000000000
"#,
        storm = at(9.0),
        storm_end = at(10.5),
        listed = at(11.0),
        listed_end = at(14.0),
        stolen = at(15.0),
        stolen_end = at(16.5),
        dns = at(17.0),
        dns_end = at(18.0),
        spool = at(19.0),
        spool_end = at(22.0),
    ));
    Scenario::parse(Path::new("demo.toml"), &text).context("the demo scenario")
}

/// Dry-run playbooks for what the incidents call for (and the built-in ones).
const PLAYBOOKS: &str = r#"
[[playbooks]]
name = "throttle-bouncing-destination"
trigger = { alert = "bounce_ratio" }
[[playbooks.steps]]
action = "throttle_destination"
params = { domain = "$domain", rate_delay_secs = "5" }

[[playbooks]]
name = "move-listed-domain-to-clean-pool"
trigger = { alert = "dnsbl_listed" }
[[playbooks.steps]]
action = "switch_ip_pool"
params = { sender_domain = "example.org", pool = "clean" }

[[playbooks]]
name = "flush-after-deferrals"
trigger = { alert = "messages_deferred" }
[[playbooks.steps]]
action = "flush"
params = {}
"#;

fn token(host: &str) -> String {
    format!("demo-token-of-{host}-0123456789")
}

fn config(dir: &Path, args: &DemoArgs, clock: Clock) -> Result<CollectorConfig> {
    let mut cfg = CollectorConfig {
        grpc_listen_addr: "127.0.0.1:0".parse()?,
        http_listen_addr: args.listen,
        clock,
        ..CollectorConfig::default()
    };
    for i in 1..=args.hosts {
        let host = format!("mx{i}");
        cfg.auth.tokens.insert(
            host.clone(),
            TokenSpec::bound(token(&host), &[host.as_str()]),
        );
    }
    cfg.store.path = dir.join("collector.redb");
    cfg.store.resolution_secs = u64::from(WINDOW_SECS);
    cfg.store.fold_interval_secs = 1;
    cfg.limits.max_agent_samples_per_sec = 10_000_000;
    cfg.limits.agent_burst_samples = 10_000_000;
    cfg.limits.max_agent_bytes_per_sec = 1 << 30;
    cfg.detect.interval_secs = 1;
    cfg.detect.settle_secs = 0;
    cfg.agent_down_after_secs = 3600;
    let playbooks = dir.join("playbooks.toml");
    std::fs::write(&playbooks, PLAYBOOKS)?;
    cfg.remediation.playbooks_file = Some(playbooks);
    cfg.remediation.cooldown_secs = 1800;
    Ok(cfg)
}

/// A Postfix configuration for one simulated host's dry runs.
fn postfix_dir(dir: &Path, host: &str) -> Result<std::path::PathBuf> {
    let d = dir.join(host).join("postfix");
    std::fs::create_dir_all(&d)?;
    std::fs::write(
        d.join("main.cf"),
        format!(
            "myhostname = {host}.example.org\nmydomain = example.org\ninet_interfaces = all\n\
             smtpd_banner = $myhostname ESMTP\nrelay_domains =\nqueue_directory = {}\n",
            dir.join(host).join("spool").display()
        ),
    )?;
    std::fs::write(
        d.join("master.cf"),
        "smtp      inet  n       -       y       -       -       smtpd\n\
         pickup    unix  n       -       y       60      1       pickup\n\
         cleanup   unix  n       -       y       -       0       cleanup\n\
         qmgr      unix  n       -       n       300     1       qmgr\n\
         smtp      unix  -       -       y       -       -       smtp\n",
    )?;
    Ok(d)
}

/// One simulated agent: its stream, acknowledgements back, actions answered by the agent's own
/// executor in a dry run.
struct DemoAgent {
    tx: mpsc::Sender<pb::AgentMessage>,
    acks: mpsc::Receiver<pb::Ack>,
    seq: u64,
}

impl DemoAgent {
    async fn connect(grpc: SocketAddr, host: &str, dir: &Path) -> Result<DemoAgent> {
        let mut client = AgentServiceClient::connect(format!("http://{grpc}")).await?;
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(64);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", token(host)).parse()?);
        tx.send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
                agent_id: host.into(),
                host: host.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                capabilities: vec!["postfix-logs".into(), "actions".into()],
                ..pb::Hello::default()
            })),
        })
        .await?;
        let mut responses = client.stream(request).await?.into_inner();
        let mut actions_cfg = mailpulse_agent::act::ActionsConfig::default();
        actions_cfg
            .instances
            .insert("postfix".into(), postfix_dir(dir, host)?);
        actions_cfg.pools.insert(
            "clean".into(),
            mailpulse_agent::act::PoolConfig {
                bind_address: "198.51.100.200".parse()?,
                helo_name: None,
            },
        );
        let executor = std::sync::Arc::new(mailpulse_agent::act::Executor::new(
            actions_cfg,
            dir.join(host).join("state"),
        ));
        let (ack_tx, acks) = mpsc::channel(64);
        let answers = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = responses.message().await {
                match message.kind {
                    Some(pb::collector_message::Kind::Ack(ack)) => {
                        let delivered = ack_tx.send(ack).await;
                        if delivered.is_err() {
                            return;
                        }
                    }
                    Some(pb::collector_message::Kind::Action(action)) => {
                        let executor = executor.clone();
                        let answers = answers.clone();
                        tokio::spawn(async move {
                            let result = executor.handle(&action).await;
                            let _ = answers
                                .send(pb::AgentMessage {
                                    kind: Some(pb::agent_message::Kind::ActionResult(result)),
                                })
                                .await;
                        });
                    }
                    _ => {}
                }
            }
        });
        Ok(DemoAgent { tx, acks, seq: 0 })
    }

    async fn ship(&mut self, samples: Vec<pb::Sample>, probes: Vec<pb::Probe>) -> Result<()> {
        self.seq += 1;
        self.tx
            .send(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Batch(pb::Batch {
                    seq: self.seq,
                    created_unix_ms: unix_ms(),
                    samples,
                    probes,
                    ..pb::Batch::default()
                })),
            })
            .await
            .context("the collector closed the stream")?;
        let ack = tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
            .await
            .context("no acknowledgement within 30 s")?
            .context("the collector closed the stream")?;
        if ack.seq != self.seq {
            bail!("acknowledged {} instead of {}", ack.seq, self.seq);
        }
        Ok(())
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 (UTC) of Unix seconds.
fn rfc3339(t: i64) -> String {
    mailpulse_collector::alerting::content::rfc3339(t * 1000)
}

/// `HH:MM` of Unix ms (UTC).
fn hhmm(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(DAY);
    format!("{:02}:{:02}", s / 3600, s / 60 % 60)
}

/// What the run printed and counts for the table.
#[derive(Default)]
struct Seen {
    alerts: BTreeMap<String, Value>,
    audit: BTreeSet<u64>,
    proposed: BTreeMap<String, u64>,
}

/// Prints the alerts that fired and the actions' dry runs since the last call.
async fn report_news(http: &Endpoint, seen: &mut Seen, out: &mut impl Write) {
    if let Ok(answer) = http.join("/api/v1/alerts?limit=1000").get().await
        && let Ok(Value::Array(alerts)) = serde_json::from_str::<Value>(&answer.body)
    {
        for a in alerts {
            let fp = a["fingerprint"].as_str().unwrap_or_default().to_owned();
            if a["state"] != "firing" || seen.alerts.contains_key(&fp) {
                continue;
            }
            let text = |k: &str| a["annotations"][k].as_str().unwrap_or_default().to_owned();
            let _ = writeln!(
                out,
                "\n[{}] ALERT {} ({})\n  {}\n  evidence: {}\n  do: {}",
                hhmm(a["active_since_unix_ms"].as_i64().unwrap_or_default()),
                a["labels"]["alertname"].as_str().unwrap_or_default(),
                a["labels"]["severity"].as_str().unwrap_or_default(),
                text("summary"),
                text("description"),
                text("recommendation"),
            );
            seen.alerts.insert(fp, a);
        }
    }
    if let Ok(answer) = http.join("/api/v1/audit?limit=1000").get().await
        && let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(&answer.body)
    {
        for e in entries.iter().rev() {
            let seq = e["seq"].as_u64().unwrap_or_default();
            if !seen.audit.insert(seq) || e["event"] != "result" {
                continue;
            }
            let playbook = e["playbook"].as_str().unwrap_or_default();
            *seen.proposed.entry(playbook.to_owned()).or_default() += 1;
            let report: Value =
                serde_json::from_str(e["detail"].as_str().unwrap_or("{}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  → playbook {playbook} on {} ({}): {}",
                e["host"].as_str().unwrap_or_default(),
                e["status"].as_str().unwrap_or_default(),
                e["kind"].as_str().unwrap_or_default(),
            );
            for c in report["commands"].as_array().into_iter().flatten() {
                let argv: Vec<&str> = c["argv"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let _ = writeln!(out, "      would run: {argv:?}");
            }
            for f in report["files"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "      would write: {}", f.as_str().unwrap_or_default());
            }
            if let Some(err) = report["error"].as_str().filter(|e| !e.is_empty()) {
                let _ = writeln!(out, "      {err}");
            }
        }
    }
}

/// Runs the demo; see the module documentation.
pub fn run(args: DemoArgs) -> Result<()> {
    if !(1..=12).contains(&args.hosts) || args.hosts < 3 {
        bail!("--hosts takes 3 to 12");
    }
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(demo(args))
}

async fn demo(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let live_start = unix_ms().div_euclid(1000).div_euclid(DAY) * DAY - DAY;
    let scenario = scenario(args.seed, args.hosts, live_start)?;
    let (clock, clock_rx) = watch::channel((live_start - WARMUP_DAYS * DAY) * 1000);
    let (judged_tx, mut judged) = watch::channel(i64::MIN);
    let analyzer_clock = Clock::Simulated {
        now: clock_rx,
        judged: std::sync::Arc::new(judged_tx),
    };
    let collector = match mailpulse_collector::start(config(
        dir.path(),
        &args,
        analyzer_clock.clone(),
    )?)
    .await
    {
        Ok(c) => c,
        Err(_) => {
            // The address is taken: any free port.
            let mut any = args.clone();
            any.listen.set_port(0);
            mailpulse_collector::start(config(dir.path(), &any, analyzer_clock)?).await?
        }
    };
    let http_addr = collector.http_addr();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "mailpulse demo: {} hosts, seed {}; the week before {} teaches the detectors, then that day \
         at {}× with incidents.\n  console: http://{http_addr}/console/\n  metrics: http://{http_addr}/metrics",
        args.hosts,
        args.seed,
        &rfc3339(live_start)[..10],
        args.speed
    )?;
    let mut agents = Vec::new();
    for i in 1..=args.hosts {
        agents
            .push(DemoAgent::connect(collector.grpc_addr(), &format!("mx{i}"), dir.path()).await?);
    }
    let http = Endpoint::new(
        &format!("http://{http_addr}"),
        &Default::default(),
        Duration::from_secs(10),
    )?;

    // The simulator runs on its own thread, a few windows ahead of the feed.
    let (tx, mut rx) = mpsc::channel::<(String, Vec<pb::Sample>, Vec<pb::Probe>)>(args.hosts * 8);
    let sim = scenario.clone();
    let producer = tokio::task::spawn_blocking(move || {
        mailpulse_sim::fleet::simulate_feed(&sim, WINDOW_SECS, |host, samples, probes| {
            let _ = tx.blocking_send((host.to_owned(), samples, probes));
        })
    });
    let hosts = scenario.host_names().len();
    let windows = ((WARMUP_DAYS + 1) * DAY / i64::from(WINDOW_SECS)) as usize;
    let live_window = (WARMUP_DAYS * DAY / i64::from(WINDOW_SECS)) as usize;
    let pace = Duration::from_secs_f64(f64::from(WINDOW_SECS) / args.speed);
    let progress = std::io::stderr().is_terminal();
    let mut seen = Seen::default();
    let mut window = 0usize;
    let mut in_window = 0usize;
    let mut next_tick = Instant::now();
    while let Some((host, samples, probes)) = rx.recv().await {
        let i = host
            .strip_prefix("mx")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=hosts).contains(n))
            .context("a host of the scenario")?;
        agents[i - 1].ship(samples, probes).await?;
        in_window += 1;
        if in_window < hosts {
            continue;
        }
        in_window = 0;
        window += 1;
        let now_ms =
            (live_start - WARMUP_DAYS * DAY) * 1000 + window as i64 * i64::from(WINDOW_SECS) * 1000;
        // The window is readable before the analyzer's clock passes it.
        // The week of history is judged a day at a time; the day of the incidents window by
        // window, each judged before the next (no alert opens and closes unseen).
        if window < live_window && !window.is_multiple_of(288) {
            continue;
        }
        collector.store().fold_now().await?;
        let _ = clock.send(now_ms);
        tokio::time::timeout(Duration::from_secs(60), judged.wait_for(|j| *j >= now_ms))
            .await
            .context("the analyzer did not judge the step within 60 s")?
            .context("the analyzer stopped")?;
        if window >= live_window {
            if progress {
                let done = (window - live_window) as f64 / (windows - live_window) as f64;
                let bar = (done * 40.0) as usize;
                eprint!(
                    "\r  {} [{}{}] {:>3.0} %  ",
                    hhmm(now_ms),
                    "#".repeat(bar),
                    "-".repeat(40 - bar.min(40)),
                    done * 100.0
                );
            }
            report_news(&http, &mut seen, &mut out).await;
            next_tick += pace;
            tokio::time::sleep_until(next_tick.into()).await;
        } else {
            next_tick = Instant::now();
        }
    }
    producer.await.context("the simulator stopped")?;
    // The analyzer's last rounds, then what they raised.
    tokio::time::sleep(Duration::from_secs(3)).await;
    report_news(&http, &mut seen, &mut out).await;
    if progress {
        eprintln!();
    }
    let detected = table(&scenario.labels(), &seen, live_start, &mut out)?;
    writeln!(
        out,
        "\n{:.0} s. The console stays up at http://{http_addr}/console/ for {} s (--linger).",
        started.elapsed().as_secs_f64(),
        args.linger
    )?;
    tokio::time::sleep(Duration::from_secs(args.linger)).await;
    drop(agents);
    collector.shutdown().await?;
    if detected < args.min_detected {
        bail!(
            "{detected} incidents detected, fewer than --min-detected {}",
            args.min_detected
        );
    }
    Ok(())
}

/// The final table: each incident and its detection, false alerts, actions proposed. Returns
/// the incidents detected.
fn table(
    labels: &[IncidentLabel],
    seen: &Seen,
    live_start: i64,
    out: &mut impl Write,
) -> Result<usize> {
    use mailpulse_collector::analyze::{Alert, AlertFigures};
    let alerts: Vec<Alert> = seen
        .alerts
        .values()
        .map(|a| Alert {
            name: a["labels"]["alertname"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            labels: a["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let k = if k == "sasl_user" { "user" } else { k.as_str() };
                    (k.to_owned(), v.as_str().unwrap_or_default().to_owned())
                })
                .collect(),
            detectors: Vec::new(),
            first_window_unix_ms: a["active_since_unix_ms"].as_i64().unwrap_or_default(),
            last_window_unix_ms: a["last_window_unix_ms"].as_i64().unwrap_or_default(),
            resolved_unix_ms: None,
            windows: 0,
            peak_score: 0.0,
            peak_detail: String::new(),
            last: AlertFigures::default(),
            advice: None,
        })
        .collect();
    let window_ms = i64::from(WINDOW_SECS) * 1000;
    let scored = mailpulse_sim::eval::score::score(
        labels,
        &alerts,
        window_ms,
        90 * 60_000,
        live_start * 1000,
    );
    writeln!(
        out,
        "\n{:<22} {:<6} {:<6} {:<10} by",
        "incident", "host", "start", "detected"
    )?;
    for r in &scored.labels {
        let detected = match r.delay_windows {
            Some(d) => format!("{} min", d * WINDOW_SECS / 60),
            None => "missed".to_owned(),
        };
        writeln!(
            out,
            "{:<22} {:<6} {:<6} {:<10} {}",
            r.label.kind.as_str(),
            r.label.host,
            hhmm(r.label.start_unix_secs * 1000),
            detected,
            r.views.join(", ")
        )?;
    }
    let detected = scored
        .labels
        .iter()
        .filter(|r| r.delay_windows.is_some())
        .count();
    writeln!(
        out,
        "\nincidents injected {}, detected {detected}; false alerts {}; alerts while learning {}",
        scored.labels.len(),
        scored.false_alerts.len(),
        scored.warmup_alerts.len()
    )?;
    for a in &scored.false_alerts {
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| k != "alertname" && k != "severity")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(
            out,
            "  false alert: {} {} at {}",
            a.name,
            labels.join(" "),
            hhmm(a.first_window_unix_ms)
        )?;
    }
    let proposed: u64 = seen.proposed.values().sum();
    writeln!(out, "actions proposed (dry run): {proposed}")?;
    for (playbook, n) in &seen.proposed {
        writeln!(out, "  {playbook}: {n}")?;
    }
    Ok(detected)
}
