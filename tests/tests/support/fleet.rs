//! A collector (in process, 5-minute windows) holding what a small simulated fleet shipped over
//! its last two days, with incidents in the last hours, judged as the collector judges: what
//! the dashboards' query test and the console's browser test look at.
//!
//! The simulator's samples (log-derived signals and probe gauges) reach the collector through
//! the agent protocol, one stream per host. They are stored with detection off, then the
//! collector restarts with detection on and judges the whole history in its first round (a
//! restart refits from the store), so every window is judged once, in order, whatever the
//! speed of the feed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpulse_collector::ingest::auth::TokenSpec;
use mailpulse_collector::{CollectorConfig, RunningCollector};
use mailpulse_proto::v1::{AgentMessage, Batch, Probe, Sample, agent_message};
use mailpulse_sim::fleet::Scenario;

use super::support::{AgentStream, client, hello, start};

/// The API token approvals need.
pub const API_TOKEN: &str = "console-api-token-0123456789abcdef";
/// Window length of the collector and the feed.
pub const WINDOW_SECS: u32 = 300;
/// Hosts of the fleet.
pub const HOSTS: [&str; 3] = ["mx1", "mx2", "mx3"];

/// Playbooks: the bounce storm's throttle waits for a person's approval; the others run dry.
const PLAYBOOKS: &str = r#"
[[playbooks]]
name = "throttle-bouncing-destination"
mode = "approve"
approval_expiry_secs = 3600
trigger = { alert = "bounce_ratio" }
[[playbooks.steps]]
action = "throttle_destination"
params = { domain = "$domain", rate_delay_secs = "5" }

[[playbooks]]
name = "switch-listed-pool"
mode = "dry_run"
trigger = { alert = "dnsbl_listed" }
[[playbooks.steps]]
action = "switch_ip_pool"
params = { sender_domain = "example.org", pool = "clean" }

[[playbooks]]
name = "flush-after-deferrals"
mode = "dry_run"
trigger = { alert = "messages_deferred" }
[[playbooks.steps]]
action = "flush"
params = {}
"#;

fn token(host: &str) -> String {
    format!("token-of-{host}-0123456789abcdef")
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// RFC 3339 (UTC) of Unix seconds `t`, as the collector writes times.
fn rfc3339(t: i64) -> String {
    mailpulse_collector::alerting::content::rfc3339(t * 1000)
}

/// Two days of three hosts ending at `end` (Unix seconds, on a window boundary), with a bounce
/// storm, a blocklisted address, a compromised account, deferrals at a dead relay, a DNS
/// change seen on one authoritative server first and a filling spool in the last hours.
pub fn scenario(end: i64) -> Scenario {
    let start = end - 2 * 86_400;
    let at = |before_end_mins: i64| rfc3339(end - before_end_mins * 60);
    let text = format!(
        r#"
name = "console"
seed = 20261207
start = {start}
days = 2
# Flat over the day and the week: the incidents fall at whatever hour the tests run.
[traffic]
messages_per_day = 4800
night_factor = 1.0
weekend_factor = 1.0
noise = 0.05
# mx1 is the busy outbound host: enough mail to gmail.com that its storm is plain.
[[hosts]]
name = "mx1"
traffic = {{ messages_per_day = 12000 }}
[[hosts]]
name = "mx2"
[[hosts]]
name = "mx3"
[[incidents]]
kind = "bounce_storm"
hosts = ["mx1"]
start = {storm}
end = {end}
domain = "gmail.com"
share = 0.9
[[incidents]]
kind = "ip_blocklisted"
hosts = ["mx3"]
start = {listed}
end = {end}
[[incidents]]
kind = "compromised_account"
hosts = ["mx2"]
start = {stolen}
end = {end}
sasl_user = "j.martin@example.org"
messages_per_hour = 400
[[incidents]]
kind = "relay_down"
hosts = ["mx3"]
start = {relay}
end = {end}
relay = "gmail-smtp-in.l.google.com"
failure = "timeout"
[[incidents]]
kind = "dns_change"
hosts = ["mx1"]
start = {dns}
[[incidents]]
kind = "spool_filling"
hosts = ["mx2"]
start = {spool}
end = {end}
fill_bytes_per_hour = 2000000000
"#,
        start = rfc3339(start),
        end = rfc3339(end),
        storm = at(90),
        listed = at(120),
        stolen = at(50),
        relay = at(90),
        spool = at(180),
        dns = at(40),
    );
    Scenario::parse(Path::new("console.toml"), &text).expect("scenario")
}

/// A collector for the fleet: its store in `dir`, one token per host, the playbooks, the API
/// token, 5-minute windows judged as soon as they are stored.
pub fn config(dir: &Path, detect: bool) -> CollectorConfig {
    let mut cfg = CollectorConfig {
        grpc_listen_addr: "127.0.0.1:0".parse().expect("addr"),
        http_listen_addr: "127.0.0.1:0".parse().expect("addr"),
        ..CollectorConfig::default()
    };
    for host in HOSTS {
        cfg.auth
            .tokens
            .insert(host.into(), TokenSpec::bound(token(host), &[host]));
    }
    cfg.store.path = dir.join("collector.redb");
    cfg.store.resolution_secs = u64::from(WINDOW_SECS);
    cfg.store.fold_interval_secs = 1;
    cfg.limits.max_agent_samples_per_sec = 10_000_000;
    cfg.limits.agent_burst_samples = 10_000_000;
    cfg.limits.max_agent_bytes_per_sec = 1 << 30;
    cfg.detect.enabled = detect;
    cfg.detect.interval_secs = 1;
    cfg.detect.settle_secs = 0;
    // A day (the daily season) of learning, then verdicts alert.
    cfg.detect.learning_windows = 288;
    let playbooks = dir.join("playbooks.toml");
    std::fs::write(&playbooks, PLAYBOOKS).expect("playbooks");
    let api = dir.join("api.token");
    std::fs::write(&api, format!("{API_TOKEN}\n")).expect("token");
    cfg.remediation.playbooks_file = Some(playbooks);
    cfg.remediation.api_token_file = Some(api);
    cfg
}

/// What was fed.
#[derive(Debug, Default)]
pub struct Fed {
    pub samples: u64,
    pub probes: u64,
    pub batches: u64,
    /// The last sequence number of each host (in [`HOSTS`] order).
    pub last_seq: Vec<u64>,
}

/// One host's stream.
async fn open(grpc: SocketAddr, host: &str) -> AgentStream {
    let mut client = client(grpc).await;
    let mut stream = AgentStream::open(&mut client, Some(&token(host)))
        .await
        .expect("stream opens");
    // An agent that takes actions (`[actions]` on), so playbooks have somewhere to run.
    let mut hello = hello(host, host);
    if let Some(agent_message::Kind::Hello(h)) = &mut hello.kind {
        h.capabilities.push("actions".into());
    }
    stream.send(hello).await;
    stream
}

/// Streams the scenario to the collector at `grpc`, as each host's agent would, batch by
/// batch, each acknowledged.
pub async fn feed(grpc: SocketAddr, scenario: &Scenario) -> (Fed, Vec<AgentStream>) {
    let scenario = scenario.clone();
    let per_host = tokio::task::spawn_blocking(move || {
        let mut per_host: Vec<(String, Vec<Sample>, Vec<Probe>)> = HOSTS
            .iter()
            .map(|h| ((*h).to_owned(), Vec::new(), Vec::new()))
            .collect();
        mailpulse_sim::fleet::simulate_feed(&scenario, WINDOW_SECS, |host, samples, probes| {
            if let Some(h) = per_host.iter_mut().find(|h| h.0 == host) {
                h.1.extend(samples);
                h.2.extend(probes);
            }
        });
        per_host
    })
    .await
    .expect("simulation");
    let mut fed = Fed::default();
    let mut streams = Vec::new();
    for (host, samples, probes) in per_host {
        let mut last_seq = 0;
        let mut stream = open(grpc, &host).await;
        let mut probes = probes.into_iter();
        for (seq, chunk) in (1..).zip(samples.chunks(5_000)) {
            let probes: Vec<Probe> = probes.by_ref().take(2_000).collect();
            fed.samples += chunk.len() as u64;
            fed.probes += probes.len() as u64;
            fed.batches += 1;
            stream.send(batch(seq, chunk.to_vec(), probes)).await;
            let (acked, duplicate) = stream.next_ack().await.expect("batch acknowledged");
            assert_eq!((acked, duplicate), (seq, false), "{host}");
            last_seq = seq;
        }
        fed.last_seq.push(last_seq);
        streams.push(stream);
    }
    (fed, streams)
}

/// A batch of `samples` (and `probes`) with sequence number `seq`.
fn batch(seq: u64, samples: Vec<Sample>, probes: Vec<Probe>) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Batch(Batch {
            seq,
            created_unix_ms: now_secs() * 1000,
            samples,
            probes,
            ..Batch::default()
        })),
    }
}

/// The seeded collector: fed with detection off, restarted with it on, and its first round
/// done (an alert fires). The agents' streams stay open so they count as up.
pub struct Seeded {
    pub collector: RunningCollector,
    pub streams: Vec<AgentStream>,
    pub fed: Fed,
    /// The fleet's last window end (Unix seconds).
    pub end: i64,
}

impl Seeded {
    /// Ships `samples` from `host` now, as its agent's next batch, and waits for the ack.
    pub async fn ship(&mut self, host: &str, samples: Vec<Sample>) {
        let i = HOSTS.iter().position(|h| *h == host).expect("a fleet host");
        self.fed.last_seq[i] += 1;
        let seq = self.fed.last_seq[i];
        self.streams[i].send(batch(seq, samples, Vec::new())).await;
        let (acked, duplicate) = self.streams[i]
            .next_ack()
            .await
            .expect("batch acknowledged");
        assert_eq!((acked, duplicate), (seq, false), "{host}");
    }
}

pub async fn seeded(dir: &Path) -> Seeded {
    let end = now_secs().div_euclid(i64::from(WINDOW_SECS)) * i64::from(WINDOW_SECS);
    let scenario = scenario(end);
    let collector = start(config(dir, false)).await;
    let (fed, streams) = feed(collector.grpc_addr(), &scenario).await;
    drop(streams);
    collector.shutdown().await.expect("clean shutdown");
    let collector = start(config(dir, true)).await;
    let mut streams = Vec::new();
    for host in HOSTS {
        streams.push(open(collector.grpc_addr(), host).await);
    }
    let http = collector.http_addr();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = super::support::http_get(http, "/api/v1/alerts").await;
        if status == 200 && body.contains(r#""state":"firing""#) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no alert fires within 120 s of the restart: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Seeded {
        collector,
        streams,
        fed,
        end,
    }
}
