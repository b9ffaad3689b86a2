//! The agent's DNS prober task: [`run_prober`] over hickory resolvers, its rounds batched into
//! the outbox (probes + gauges, no file positions) like every other sample source.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpulse_proto::v1 as pb;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use super::supervise::{TaskHealth, task};
use crate::aggregate::unix_ms;
use crate::dns::config::DnsConfig;
use crate::dns::dnsbl::default_lists;
use crate::dns::gauges::gauges;
use crate::dns::hickory::{HickoryResolver, ResolverOptions, TrustAnchor};
use crate::dns::normalise_name;
use crate::dns::probe::{DomainRound, ProbeOptions, Server};
use crate::dns::schedule::{Extras, Schedule, run_prober};
use crate::dns::senders::SenderDomains;
use crate::dns::spf::{Verdict, check_host};
use crate::ship::{Outbox, lock};

/// Rounds are appended at least this often while they come in.
const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// …or once this many probes are waiting.
const FLUSH_PROBES: usize = 2_000;

/// Starts the prober and its batcher; both end when `stop` is cancelled, or on an outbox error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_dns(
    cfg: &DnsConfig,
    host: String,
    window_secs: u32,
    outbox: Arc<Mutex<Outbox>>,
    appended: Arc<Notify>,
    stop: CancellationToken,
    senders: Option<Arc<Mutex<SenderDomains>>>,
    health: Arc<TaskHealth>,
) -> Result<JoinHandle<Result<(), AgentError>>, AgentError> {
    let setup = |e: &dyn std::fmt::Display| AgentError::InvalidConfig(format!("dns: {e}"));
    let mut options = ResolverOptions::default()
        .timeout(cfg.timeout())
        .attempts(cfg.attempts)
        .cache(false)
        .max_in_flight(cfg.max_in_flight);
    let dnssec = match &cfg.trust_anchor_file {
        Some(path) => {
            options = options.dnssec(TrustAnchor::from_file(path).map_err(|e| setup(&e))?);
            true
        }
        None => false,
    };
    let default = if cfg.nameservers.is_empty() {
        HickoryResolver::system(options)
    } else {
        HickoryResolver::with_nameservers(&cfg.nameservers, options)
    }
    .map_err(|e| setup(&e))?;
    let compare = ResolverOptions::default()
        .timeout(cfg.timeout())
        .attempts(cfg.attempts)
        .cache(false)
        .max_in_flight(cfg.max_in_flight);
    let mut resolvers = Vec::new();
    for addr in &cfg.compare_resolvers {
        let resolver =
            HickoryResolver::with_nameservers(&[*addr], compare.clone()).map_err(|e| setup(&e))?;
        resolvers.push(Server {
            label: format!("resolver@{addr}"),
            resolver: Arc::new(resolver),
        });
    }
    let timeout = cfg.timeout();
    let authoritative: Arc<Mutex<HashMap<SocketAddr, Arc<HickoryResolver>>>> = Arc::default();
    let connect = move |addr: SocketAddr| {
        let mut known = lock(&authoritative);
        if let Some(r) = known.get(&addr) {
            return Some(r.clone());
        }
        let r = Arc::new(HickoryResolver::authoritative(addr, timeout).ok()?);
        known.insert(addr, r.clone());
        Some(r)
    };
    let schedule = Schedule {
        interval: cfg.interval(),
        jitter: Duration::from_secs(cfg.jitter_secs),
        max_concurrent_domains: cfg.max_concurrent_domains,
        options: ProbeOptions {
            dnssec,
            window_secs,
        },
    };
    let domains = cfg.domains.clone();
    let (tx, rx) = mpsc::unbounded_channel::<DomainRound>();
    let default = Arc::new(default);
    let mut helpers = Vec::new();
    if let Some(senders) = senders {
        let configured: Vec<String> = domains.iter().map(|d| normalise_name(&d.domain)).collect();
        helpers.push(tokio::spawn(evaluate_sender_domains(
            senders,
            configured,
            cfg.sending_ips.clone(),
            default.clone(),
            cfg.interval(),
            host.clone(),
            window_secs,
            tx.clone(),
            stop.clone(),
        )));
    }
    helpers.push(tokio::spawn(run_prober(
        domains,
        default,
        connect,
        Arc::new(resolvers),
        schedule,
        Extras {
            checks: true,
            sending_ips: cfg.sending_ips.clone(),
            lists: default_lists(),
        },
        host,
        false,
        stop.clone(),
        move |round| {
            let _ = tx.send(round);
        },
    )));
    Ok(tokio::spawn(batch_rounds(
        rx,
        outbox,
        appended,
        stop,
        AbortOnDrop(helpers),
        health,
    )))
}

/// Aborts the prober and its helper tasks when the batcher ends, however it ends: a batcher
/// that failed (and is restarted by the supervisor) must not leave probes running for nobody.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Most sender domains from the logs evaluated per interval (the busiest).
const SENDER_DOMAINS_PER_ROUND: usize = 20;

/// Every `interval`: the busiest outbound sender domains seen in the logs (not configured as
/// monitored domains) get the sending IPs evaluated against their SPF: `spf_would_fail{domain,ip}`
/// and `sender_domain_deliveries{domain}` (outbound delivery attempts since the last round).
#[allow(clippy::too_many_arguments)]
async fn evaluate_sender_domains(
    senders: Arc<Mutex<SenderDomains>>,
    configured: Vec<String>,
    ips: Vec<IpAddr>,
    resolver: Arc<HickoryResolver>,
    interval: Duration,
    host: String,
    window_secs: u32,
    tx: mpsc::UnboundedSender<DomainRound>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first take after one interval of log
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let top = lock(&senders).take_top(SENDER_DOMAINS_PER_ROUND + configured.len());
        let mut g = gauges(&host, unix_ms(), window_secs);
        for (domain, deliveries) in top
            .into_iter()
            .filter(|(d, _)| !configured.contains(d))
            .take(SENDER_DOMAINS_PER_ROUND)
        {
            g.push(
                "sender_domain_deliveries",
                &[("domain", &domain)],
                deliveries as f64,
            );
            for ip in &ips {
                let result = check_host(
                    *ip,
                    &domain,
                    &format!("postmaster@{domain}"),
                    &domain,
                    &*resolver,
                )
                .await;
                let fails = matches!(result.verdict, Verdict::Fail | Verdict::SoftFail);
                g.push(
                    "spf_would_fail",
                    &[("domain", &domain), ("ip", &ip.to_string())],
                    if fails { 1.0 } else { 0.0 },
                );
            }
        }
        let samples = g.out;
        if !samples.is_empty()
            && tx
                .send(DomainRound {
                    samples,
                    ..DomainRound::default()
                })
                .is_err()
        {
            return;
        }
    }
}

/// Collects rounds and appends them to the outbox every [`FLUSH_EVERY`] (or
/// [`FLUSH_PROBES`]); a last batch on stop. An outbox error ends it (and the prober); the
/// runtime restarts both after a pause.
async fn batch_rounds(
    mut rx: mpsc::UnboundedReceiver<DomainRound>,
    outbox: Arc<Mutex<Outbox>>,
    appended: Arc<Notify>,
    stop: CancellationToken,
    _prober: AbortOnDrop,
    health: Arc<TaskHealth>,
) -> Result<(), AgentError> {
    let mut pending = pb::Batch::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            round = rx.recv() => match round {
                Some(round) => {
                    pending.probes.extend(round.probes);
                    pending.samples.extend(round.samples);
                    if pending.probes.len() < FLUSH_PROBES {
                        continue;
                    }
                    false
                }
                None => true,
            },
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        if !pending.probes.is_empty() || !pending.samples.is_empty() {
            let mut batch = std::mem::take(&mut pending);
            batch.created_unix_ms = unix_ms();
            let outbox = outbox.clone();
            let seq = tokio::task::spawn_blocking(move || lock(&outbox).append(batch, &[]))
                .await
                .map_err(|e| AgentError::Task(e.to_string()))??;
            tracing::debug!(seq, "DNS probes appended");
            health.up(task::DNS_PROBER);
            appended.notify_one();
        }
        if stopping || stop.is_cancelled() {
            return Ok(());
        }
    }
}
