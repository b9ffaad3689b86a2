//! When each monitored domain is probed: every `interval`, each domain at its own phase (spread
//! over the interval by a hash of its name, so 10 000 domains do not all fire at once), plus a
//! random jitter per round; at most `max_concurrent_domains` rounds in flight (each resolver
//! also bounds its own queries).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use std::net::IpAddr;

use super::Resolve;
use super::config::DomainSpec;
use super::dnsbl::DnsList;
use super::probe::{DomainRound, ProbeOptions, Server, probe_domain};
use super::reputation::{domain_findings, ip_reputation};
use crate::aggregate::unix_ms;

/// What the prober looks at besides the record sets.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Run every domain check (SPF lint, DMARC, DKIM, …) per round: `dns_findings`, and
    /// evaluate these sending IPs against each domain's SPF: `spf_would_fail`.
    pub checks: bool,
    /// The host's sending IPs; each one also gets a reputation round of its own.
    pub sending_ips: Vec<IpAddr>,
    /// Block and allow lists for the reputation rounds.
    pub lists: Vec<DnsList>,
}

/// How rounds are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    /// Each round starts up to this much later than due (uniformly random).
    pub jitter: Duration,
    pub max_concurrent_domains: usize,
    pub options: ProbeOptions,
}

/// The phase of `domain` within `interval`: a stable hash of the name, so a restart keeps the
/// spread and two agents probing the same domain do not align.
pub fn phase(domain: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in domain.bytes() {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

/// Probes `domains` on `schedule` until `stop` is cancelled, handing every finished round to
/// `deliver`. With `once`, each domain is probed one time, as soon as possible (no phase, no
/// jitter), and the function returns when all are done (the benchmark and `mailpulse check`).
#[allow(clippy::too_many_arguments)]
pub async fn run_prober<R, F>(
    domains: Vec<DomainSpec>,
    default: Arc<R>,
    connect: F,
    resolvers: Arc<Vec<Server<Arc<R>>>>,
    schedule: Schedule,
    extras: Extras,
    host: String,
    once: bool,
    stop: CancellationToken,
    mut deliver: impl FnMut(DomainRound),
) where
    R: Resolve + 'static,
    F: Fn(SocketAddr) -> Option<Arc<R>> + Clone + Send + Sync + 'static,
{
    let start = Instant::now();
    // Targets 0..domains are domains, the rest sending IPs.
    let names: Vec<String> = domains
        .iter()
        .map(|d| d.domain.clone())
        .chain(extras.sending_ips.iter().map(ToString::to_string))
        .collect();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let at = if once {
                start
            } else {
                start + phase(name, schedule.interval)
            };
            Reverse((at, i))
        })
        .collect();
    let domains: Arc<Vec<DomainSpec>> = Arc::new(domains);
    let extras = Arc::new(extras);
    let mut running: JoinSet<(usize, DomainRound)> = JoinSet::new();
    let max = schedule.max_concurrent_domains.max(1);
    loop {
        if stop.is_cancelled() {
            running.abort_all();
            return;
        }
        // Start what is due while there is room.
        while running.len() < max {
            let Some(Reverse((at, i))) = due.peek().copied() else {
                break;
            };
            if at > Instant::now() {
                break;
            }
            due.pop();
            let (domains, default, resolvers, connect, host, extras) = (
                domains.clone(),
                default.clone(),
                resolvers.clone(),
                connect.clone(),
                host.clone(),
                extras.clone(),
            );
            running.spawn(async move {
                let now = unix_ms();
                let window_secs = schedule.options.window_secs;
                let Some(spec) = domains.get(i) else {
                    let ip = extras.sending_ips[i - domains.len()];
                    let samples =
                        ip_reputation(ip, &extras.lists, &*default, &host, now, window_secs).await;
                    return (
                        i,
                        DomainRound {
                            samples,
                            ..DomainRound::default()
                        },
                    );
                };
                let mut round = probe_domain(
                    spec,
                    &default,
                    connect,
                    &resolvers,
                    now,
                    &host,
                    schedule.options,
                )
                .await;
                if extras.checks {
                    round.samples.extend(
                        domain_findings(
                            spec,
                            &extras.sending_ips,
                            &*default,
                            &host,
                            now,
                            window_secs,
                        )
                        .await,
                    );
                }
                (i, round)
            });
        }
        if once && running.is_empty() && due.is_empty() {
            return;
        }
        let next_due = due.peek().map(|Reverse((at, _))| *at);
        let room = running.len() < max;
        tokio::select! {
            finished = running.join_next(), if !running.is_empty() => {
                if let Some(Ok((i, round))) = finished {
                    deliver(round);
                    if !once {
                        let jitter = if schedule.jitter.is_zero() {
                            Duration::ZERO
                        } else {
                            rand::rng().random_range(Duration::ZERO..schedule.jitter)
                        };
                        let last = Instant::now();
                        due.push(Reverse((last + schedule.interval + jitter, i)));
                    }
                }
            }
            _ = sleep_until(next_due), if room && next_due.is_some() => {}
            _ = stop.cancelled() => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::{MemoryZone, RData};

    fn domains(n: usize) -> Vec<DomainSpec> {
        (0..n)
            .map(|i| DomainSpec {
                domain: format!("d{i}.test"),
                dkim_selectors: Vec::new(),
                authoritative: vec!["127.0.0.1:5301".parse().unwrap()],
            })
            .collect()
    }

    fn zone(n: usize) -> Arc<MemoryZone> {
        let mut z = MemoryZone::new();
        for i in 0..n {
            z.add(&format!("d{i}.test"), RData::A(Ipv4Addr::LOCALHOST));
        }
        Arc::new(z)
    }

    #[test]
    fn phases_are_stable_and_spread() {
        let interval = Duration::from_secs(300);
        assert_eq!(
            phase("Example.COM", interval),
            phase("example.com", interval)
        );
        let mut buckets = [0usize; 10];
        for i in 0..10_000 {
            let p = phase(&format!("domain{i}.example"), interval);
            assert!(p < interval);
            buckets[(p.as_secs() / 30) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
    }

    #[tokio::test]
    async fn once_probes_every_domain_exactly_once() {
        let z = zone(50);
        let mut rounds = Vec::new();
        let connect = {
            let z = z.clone();
            move |_| Some(z.clone())
        };
        let schedule = Schedule {
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            max_concurrent_domains: 7,
            options: ProbeOptions {
                dnssec: false,
                window_secs: 60,
            },
        };
        run_prober(
            domains(50),
            z.clone(),
            connect,
            Arc::new(Vec::new()),
            schedule,
            Extras::default(),
            "mx1".into(),
            true,
            CancellationToken::new(),
            |r| rounds.push(r),
        )
        .await;
        assert_eq!(rounds.len(), 50);
        let mut targets: Vec<String> = rounds
            .iter()
            .map(|r| {
                r.probes
                    .iter()
                    .find(|p| p.kind == "soa")
                    .unwrap()
                    .target
                    .clone()
            })
            .collect();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_repeat_every_interval_until_stopped() {
        let z = zone(3);
        let stop = CancellationToken::new();
        let connect = {
            let z = z.clone();
            move |_| Some(z.clone())
        };
        let schedule = Schedule {
            interval: Duration::from_secs(60),
            jitter: Duration::from_secs(5),
            max_concurrent_domains: 2,
            options: ProbeOptions {
                dnssec: false,
                window_secs: 60,
            },
        };
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = counter.clone();
        let task = tokio::spawn(run_prober(
            domains(3),
            z.clone(),
            connect,
            Arc::new(Vec::new()),
            schedule,
            Extras::default(),
            "mx1".into(),
            false,
            stop.clone(),
            move |_| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
        ));
        // Phases < 60 s, then every 60–65 s: in 10 simulated minutes, 9 or 10 rounds each.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let n = counter.load(std::sync::atomic::Ordering::SeqCst);
        assert!((27..=30).contains(&n), "{n} rounds");
        stop.cancel();
        task.await.unwrap();
    }
}
