//! The discrete-event simulation behind [`super::SynthLog`].
//!
//! A min-heap of timed tasks drives everything. SMTP sessions are short and self-contained, so
//! their lines are computed when the session starts and queued as timed `Line` tasks; a message
//! lives longer (retries, expiry), so each of its delivery rounds is a `Round` task that computes
//! that round's lines and schedules the next round. Popping the heap in (time, sequence) order
//! yields lines in timestamp order; the sequence number makes ties deterministic.
//!
//! This file holds the engine's state and the event loop; the work is split by concern:
//! [`sessions`] schedules arrivals and writes submission, `postfix-out` and pickup sessions,
//! [`inbound`] writes port-25 sessions through postscreen and smtpd, [`messages`] creates
//! messages and their recipients' fates up to qmgr, [`delivery`] runs qmgr's delivery rounds,
//! [`ambient`] adds the background lines of a busy server, and [`model`] holds the internal
//! types. Every random choice reads its probability from [`TrafficProfile`].

mod ambient;
mod delivery;
mod inbound;
mod messages;
mod model;
mod sessions;

use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::Arc;

use mailpulse_agent::classify::ReasonClass;

use self::model::{Entry, Instance, Msg, Pids, Rcpt, Service, Task};
use super::format::{Clock, Ip};
use super::hooks::{Delivery, ExtraSession, Hooks, HostSetup, QueueLoad};
use super::profile::TrafficProfile;
use super::queue_id::QueueIdGen;
use super::rng::Rng;
use super::world::{self, World};
use super::{SynthConfig, SynthTruth};

/// Default public address of the main instance (postscreen/smtpd listen here, smtp sends from
/// here).
const MAIN_IP: Ip = Ip::new(198, 51, 100, 25);
/// Default source address of the `postfix-out` instance.
const OUT_IP: Ip = Ip::new(198, 51, 100, 26);

/// One second in the engine's time unit (microseconds).
const SECOND: i64 = 1_000_000;
/// Postfix `minimal_backoff_time`: the shortest wait before a deferred message is retried.
const MINIMAL_BACKOFF: i64 = 300 * SECOND;
/// Postfix `maximal_backoff_time`: the longest wait before a deferred message is retried.
const MAXIMAL_BACKOFF: i64 = 4000 * SECOND;
/// How often anvil and scache log their statistics.
const STATS_INTERVAL: i64 = 600 * SECOND;

/// The simulated Postfix host: its configuration, random stream, queues and pending events.
#[derive(Debug)]
pub(crate) struct Engine {
    /// What to generate (normalised by [`Engine::with_setup`]).
    cfg: SynthConfig,
    /// Probabilities of every traffic choice.
    profile: TrafficProfile,
    /// `{host}.{local_domains[0]}`.
    fqdn: String,
    /// The one random stream; every draw happens in a fixed order for a given config.
    rng: Rng,
    /// Remote domains, their MX hosts and the clients sending from them.
    world: Arc<World>,
    /// Writes timestamps in the configured style.
    clock: Clock,
    /// Queue id generator.
    ids: QueueIdGen,
    /// Process ids of every daemon.
    pids: Pids,
    /// Pending tasks, earliest first.
    heap: BinaryHeap<Entry>,
    /// Sequence number of the last scheduled task.
    seq: u64,
    /// anvil and scache statistics tasks in `heap` (they alone do not keep the run going).
    stats_tasks: usize,
    /// Time of the task being run (Unix microseconds).
    now: i64,
    /// Accepted messages still to arrive.
    arrivals_left: u64,
    /// Queued messages; `None` marks a free slot (or a message in its delivery round).
    msgs: Vec<Option<Msg>>,
    /// Free slots of `msgs`.
    free_msgs: Vec<usize>,
    /// Local mailboxes (addresses at the local domains).
    users: Vec<String>,
    /// Up to 16 recent client addresses, for anvil's statistics.
    recent_ips: Vec<Ip>,
    /// What has been written so far.
    truth: SynthTruth,
    /// Address of the main instance.
    main_ip: Ip,
    /// Source address of the `postfix-out` instance.
    out_ip: Ip,
    /// Queued messages per instance (indexed by [`Instance`]).
    queue: [QueueLoad; 2],
    /// A fleet member's time-dependent changes (incidents, extra sessions).
    hooks: Option<Box<dyn Hooks>>,
    /// Scratch buffer for [`Hooks::extra_sessions`].
    extras: Vec<ExtraSession>,
    /// Remote deliveries since the last [`Engine::take_deliveries`]; `None`: not recorded.
    deliveries: Option<Vec<Delivery>>,
}

impl Engine {
    /// A stand-alone generator with the default addresses and no hooks.
    pub(crate) fn new(cfg: SynthConfig) -> Self {
        Self::with_setup(cfg, None)
    }

    /// A generator for a fleet member: its addresses, extra users and hooks.
    pub(crate) fn with_setup(mut cfg: SynthConfig, setup: Option<HostSetup>) -> Self {
        if cfg.local_domains.is_empty() {
            cfg.local_domains.push("example.org".to_string());
        }
        if cfg.messages_per_sec.is_nan() || cfg.messages_per_sec <= 0.0 {
            cfg.messages_per_sec = 1.0;
        }
        cfg.diurnal_amplitude = cfg.diurnal_amplitude.clamp(0.0, 0.95);
        let mut rng = Rng::new(cfg.seed);
        let ids = QueueIdGen::new(&mut rng);
        let mut pids = Pids::new(&mut rng);
        // master starts the long-lived daemons first, so they have the oldest pids.
        for instance in [Instance::Main, Instance::Out] {
            for service in [
                Service::Postscreen,
                Service::Qmgr,
                Service::Pickup,
                Service::Anvil,
                Service::Scache,
            ] {
                pids.acquire(&mut rng, instance, service, 0, 0);
            }
        }
        let mut users: Vec<String> = (0..240)
            .map(|i| {
                let domain = &cfg.local_domains[i % cfg.local_domains.len()];
                format!("{}@{domain}", world::person_local_part(&mut rng))
            })
            .collect();
        let (main_ip, out_ip, hooks) = match setup {
            Some(setup) => {
                users.extend(setup.extra_users);
                (setup.main_ip, setup.out_ip, Some(setup.hooks))
            }
            None => (MAIN_IP, OUT_IP, None),
        };
        let start = cfg.start_unix_secs.saturating_mul(SECOND);
        let mut engine = Self {
            fqdn: format!("{}.{}", cfg.host, cfg.local_domains[0]),
            clock: Clock::new(cfg.style),
            rng,
            world: Arc::new(World::new()),
            ids,
            pids,
            heap: BinaryHeap::new(),
            seq: 0,
            stats_tasks: 0,
            now: start,
            arrivals_left: cfg.messages,
            msgs: Vec::new(),
            free_msgs: Vec::new(),
            users,
            recent_ips: Vec::new(),
            truth: SynthTruth::default(),
            main_ip,
            out_ip,
            queue: [QueueLoad::default(); 2],
            hooks,
            extras: Vec::new(),
            deliveries: None,
            cfg,
            profile: TrafficProfile::default(),
        };
        if engine.arrivals_left > 0 {
            engine.schedule(start, Task::Arrival);
            let next_tick = start - start.rem_euclid(STATS_INTERVAL) + STATS_INTERVAL;
            engine.schedule(next_tick, Task::AnvilStats);
            engine.schedule(next_tick + 7 * SECOND, Task::ScacheStats);
            engine.stats_tasks = 2;
        }
        engine
    }

    /// Counts of what has been written so far.
    pub(crate) fn truth(&self) -> &SynthTruth {
        &self.truth
    }

    /// The counts, consuming the engine.
    pub(crate) fn into_truth(self) -> SynthTruth {
        self.truth
    }

    /// Messages queued in the main and the `postfix-out` instance, as of the last line returned.
    pub(crate) fn queue_loads(&self) -> [QueueLoad; 2] {
        self.queue
    }

    /// Every queued message (both instances), in slot order, as of the last line returned.
    pub(crate) fn for_each_queued(&self, mut f: impl FnMut(QueuedMessage<'_>)) {
        for msg in self.msgs.iter().flatten() {
            f(QueuedMessage {
                queue_id: &msg.qid,
                sender: &msg.sender,
                outbound_instance: msg.instance == Instance::Out,
                queued_at: msg.created,
                size_bytes: msg.size_bytes,
                deferred: msg.deferred_once,
                rcpts: &msg.rcpts,
            });
        }
    }

    /// From now on, keeps every remote delivery until [`Engine::take_deliveries`] takes it (the
    /// caller must take them regularly: they are held until then).
    pub(crate) fn record_deliveries(&mut self) {
        self.deliveries.get_or_insert_with(Vec::new);
    }

    /// Appends the remote deliveries recorded since the last call to `out`, in the order their
    /// delivery rounds ran.
    pub(crate) fn take_deliveries(&mut self, out: &mut Vec<Delivery>) {
        if let Some(deliveries) = self.deliveries.as_mut() {
            out.append(deliveries);
        }
    }

    /// The next line, or `None` once every message has left the queue.
    pub(crate) fn next_line(&mut self) -> Option<String> {
        self.next_line_at().map(|(_, line)| line)
    }

    /// The next line with its time (Unix microseconds).
    pub(crate) fn next_line_at(&mut self) -> Option<(i64, String)> {
        loop {
            let entry = self.heap.pop()?;
            self.now = entry.at;
            match entry.task {
                Task::Line { program, pid, body } => {
                    return Some((entry.at, self.render(entry.at, program, pid, &body)));
                }
                Task::Arrival => self.arrival(),
                Task::Round(idx) => self.round(idx),
                Task::AnvilStats => {
                    self.stats_tasks -= 1;
                    self.anvil_stats();
                }
                Task::ScacheStats => {
                    self.stats_tasks -= 1;
                    self.scache_stats();
                }
            }
        }
    }

    /// The full syslog line: timestamp, host, `program[pid]: ` and the body.
    fn render(&mut self, at: i64, program: &str, pid: u32, body: &str) -> String {
        let mut line = String::with_capacity(body.len() + program.len() + self.cfg.host.len() + 48);
        self.clock.write(&mut line, at);
        line.push(' ');
        line.push_str(&self.cfg.host);
        line.push(' ');
        line.push_str(program);
        let _ = write!(line, "[{pid}]: ");
        line.push_str(body);
        self.truth.lines += 1;
        line
    }

    /// Queues `task` to run at `at` (never before the current time).
    fn schedule(&mut self, at: i64, task: Task) {
        debug_assert!(at >= self.now, "scheduled in the past");
        self.seq += 1;
        self.heap.push(Entry {
            at: at.max(self.now),
            seq: self.seq,
            task,
        });
    }

    /// Queues one log line.
    fn line(&mut self, at: i64, program: &'static str, pid: u32, body: String) {
        self.schedule(at, Task::Line { program, pid, body });
    }

    /// A line of a daemon whose process is busy only for this one line.
    fn note(&mut self, at: i64, instance: Instance, service: Service, body: String) {
        let pid = self
            .pids
            .acquire(&mut self.rng, instance, service, at, at + 2_000);
        self.line(at, service.program(instance), pid, body);
    }

    /// Lines of one process-exclusive job (an smtpd session): one pid for all of them.
    fn job(&mut self, instance: Instance, service: Service, lines: Vec<(i64, String)>) {
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return;
        };
        let pid = self
            .pids
            .acquire(&mut self.rng, instance, service, first.0, last.0 + 1);
        for (at, body) in lines {
            self.line(at, service.program(instance), pid, body);
        }
    }

    /// A random duration of `lo..hi` milliseconds, in microseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> i64 {
        self.rng.millis_us(lo, hi)
    }

    /// How many events happen for a mean `rate`: its whole part, plus one with the probability
    /// of its fraction.
    fn count(&mut self, rate: f64) -> u64 {
        let rate = rate.max(0.0);
        let whole = rate.floor();
        whole as u64 + u64::from(self.rng.chance(rate - whole))
    }

    /// Keeps `ip` among the recent client addresses (a random one is replaced once full).
    fn remember(&mut self, ip: Ip) {
        if self.recent_ips.len() < 16 {
            self.recent_ips.push(ip);
        } else {
            let i = self.rng.below(16) as usize;
            self.recent_ips[i] = ip;
        }
    }

    /// A queue id for a message created at `at`, long or short per the configured ratio.
    fn new_qid(&mut self, at: i64) -> String {
        let long = self.rng.chance(self.cfg.long_queue_ids_ratio);
        if long {
            self.truth.long_queue_id_messages += 1;
        } else {
            self.truth.short_queue_id_messages += 1;
        }
        self.ids.next(&mut self.rng, at, long)
    }
}

/// A message in the queue, as `postqueue -j` would list it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueuedMessage<'a> {
    pub(crate) queue_id: &'a str,
    /// Envelope sender (empty for a notification).
    pub(crate) sender: &'a str,
    /// In the `postfix-out` instance's queue rather than the main one's.
    pub(crate) outbound_instance: bool,
    /// When cleanup queued it (Unix microseconds; `postqueue`'s `arrival_time` in seconds).
    pub(crate) queued_at: i64,
    /// `message_size`.
    pub(crate) size_bytes: u64,
    /// Deferred at least once: in the `deferred` queue (else `incoming`/`active`).
    pub(crate) deferred: bool,
    rcpts: &'a [Rcpt],
}

impl<'a> QueuedMessage<'a> {
    /// The recipients still to be delivered (those `postqueue -j` lists) with the class of
    /// their `delay_reason` (`None`: not deferred yet).
    pub(crate) fn pending(self) -> impl Iterator<Item = (&'a str, Option<ReasonClass>)> {
        self.pending_reasons()
            .map(|(addr, reason)| (addr, reason.map(|(class, _)| class)))
    }

    /// [`QueuedMessage::pending`] with the text of each `delay_reason`.
    pub(crate) fn pending_reasons(
        self,
    ) -> impl Iterator<Item = (&'a str, Option<(ReasonClass, &'a str)>)> {
        self.rcpts.iter().filter(|r| !r.done).map(|r| {
            let reason = r.delay_reason.as_ref().map(|(c, text)| (*c, &**text));
            (r.addr.as_str(), reason)
        })
    }
}

/// `20241026181350` (UTC), as Postfix uses in the Message-ID of messages it creates.
fn compact_time(unix_micros: i64) -> String {
    let secs = unix_micros.div_euclid(SECOND);
    let (y, m, d) = mailpulse_agent::parse::time::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}
