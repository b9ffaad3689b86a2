//! The discrete-event simulation behind [`super::SynthLog`].
//!
//! A min-heap of timed tasks drives everything. SMTP sessions are short and self-contained, so
//! their lines are computed when the session starts and queued as timed `Line` tasks; a message
//! lives longer (retries, expiry), so each of its delivery rounds is a `Round` task that computes
//! that round's lines and schedules the next round. Popping the heap in (time, sequence) order
//! yields lines in timestamp order; the sequence number makes ties deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::format::{Clock, Delay, Ip, bsd_time};
use super::hooks::{
    ExtraSession, Forced, Hooks, HostSetup, InboundEnding, QueueLoad, RemoteAttempt,
};
use super::queue_id::QueueIdGen;
use super::rng::Rng;
use super::world::{self, Client, Health, Mx, Provider, Reply, ReplyContext, World};
use super::{SynthConfig, SynthTruth};

/// Default public address of the main instance (postscreen/smtpd listen here, smtp sends from
/// here).
const MAIN_IP: Ip = Ip::new(198, 51, 100, 25);
/// Default source address of the `postfix-out` instance.
const OUT_IP: Ip = Ip::new(198, 51, 100, 26);

const SECOND: i64 = 1_000_000;
const MINIMAL_BACKOFF: i64 = 300 * SECOND;
const MAXIMAL_BACKOFF: i64 = 4000 * SECOND;
const STATS_INTERVAL: i64 = 600 * SECOND;

/// A Postfix instance (its `syslog_name` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instance {
    Main,
    Out,
}

/// A Postfix daemon; with the instance it gives the program name and the process pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Smtpd,
    Submission,
    Postscreen,
    Dnsblog,
    Cleanup,
    Qmgr,
    Smtp,
    Lmtp,
    Local,
    Virtual,
    Bounce,
    Pickup,
    Anvil,
    Scache,
}

const SERVICES: usize = 14;

impl Service {
    fn program(self, instance: Instance) -> &'static str {
        match (instance, self) {
            (Instance::Main, Service::Smtpd) => "postfix/smtpd",
            (Instance::Main, Service::Submission) => "postfix/submission/smtpd",
            (Instance::Main, Service::Postscreen) => "postfix/postscreen",
            (Instance::Main, Service::Dnsblog) => "postfix/dnsblog",
            (Instance::Main, Service::Cleanup) => "postfix/cleanup",
            (Instance::Main, Service::Qmgr) => "postfix/qmgr",
            (Instance::Main, Service::Smtp) => "postfix/smtp",
            (Instance::Main, Service::Lmtp) => "postfix/lmtp",
            (Instance::Main, Service::Local) => "postfix/local",
            (Instance::Main, Service::Virtual) => "postfix/virtual",
            (Instance::Main, Service::Bounce) => "postfix/bounce",
            (Instance::Main, Service::Pickup) => "postfix/pickup",
            (Instance::Main, Service::Anvil) => "postfix/anvil",
            (Instance::Main, Service::Scache) => "postfix/scache",
            (Instance::Out, Service::Smtpd) => "postfix-out/smtpd",
            (Instance::Out, Service::Submission) => "postfix-out/submission/smtpd",
            (Instance::Out, Service::Postscreen) => "postfix-out/postscreen",
            (Instance::Out, Service::Dnsblog) => "postfix-out/dnsblog",
            (Instance::Out, Service::Cleanup) => "postfix-out/cleanup",
            (Instance::Out, Service::Qmgr) => "postfix-out/qmgr",
            (Instance::Out, Service::Smtp) => "postfix-out/smtp",
            (Instance::Out, Service::Lmtp) => "postfix-out/lmtp",
            (Instance::Out, Service::Local) => "postfix-out/local",
            (Instance::Out, Service::Virtual) => "postfix-out/virtual",
            (Instance::Out, Service::Bounce) => "postfix-out/bounce",
            (Instance::Out, Service::Pickup) => "postfix-out/pickup",
            (Instance::Out, Service::Anvil) => "postfix-out/anvil",
            (Instance::Out, Service::Scache) => "postfix-out/scache",
        }
    }

    /// Daemons that run as one long-lived process per instance.
    fn is_singleton(self) -> bool {
        matches!(
            self,
            Service::Qmgr
                | Service::Pickup
                | Service::Postscreen
                | Service::Anvil
                | Service::Scache
        )
    }
}

/// Process ids of one daemon: a process serves one session or delivery at a time, so a pid is
/// reused only once its previous job has ended.
#[derive(Debug, Clone, Default)]
struct PidPool {
    /// (pid, busy until)
    slots: Vec<(u32, i64)>,
}

#[derive(Debug, Clone)]
struct Pids {
    next: u32,
    pools: Vec<PidPool>,
}

impl Pids {
    fn new(rng: &mut Rng) -> Self {
        Self {
            next: rng.range(900, 30_000) as u32,
            pools: vec![PidPool::default(); 2 * SERVICES],
        }
    }

    fn fresh(&mut self, rng: &mut Rng) -> u32 {
        self.next += rng.range(1, 60) as u32;
        if self.next > 4_000_000 {
            self.next = 300 + rng.below(1000) as u32;
        }
        self.next
    }

    /// A pid of `service` that is idle at `start`, reserved until `end`.
    fn acquire(
        &mut self,
        rng: &mut Rng,
        instance: Instance,
        service: Service,
        start: i64,
        end: i64,
    ) -> u32 {
        let idx = instance as usize * SERVICES + service as usize;
        if service.is_singleton() {
            if let Some(&(pid, _)) = self.pools[idx].slots.first() {
                return pid;
            }
            let pid = self.fresh(rng);
            self.pools[idx].slots.push((pid, i64::MAX));
            return pid;
        }
        let free = self.pools[idx]
            .slots
            .iter()
            .filter(|&&(_, busy)| busy <= start)
            .count();
        if free == 0 {
            let pid = self.fresh(rng);
            self.pools[idx].slots.push((pid, end));
            return pid;
        }
        let mut k = rng.below(free as u64) as usize;
        for slot in &mut self.pools[idx].slots {
            if slot.1 <= start {
                if k == 0 {
                    slot.1 = end;
                    return slot.0;
                }
                k -= 1;
            }
        }
        unreachable!("a free slot was counted")
    }
}

/// Where a recipient is delivered; recipients with equal `Dest` share a delivery where Postfix
/// would batch them (same SMTP next hop, the LMTP socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// SMTP to a domain of the world table.
    Remote(usize),
    /// LMTP to Dovecot (even local domains).
    Lmtp,
    /// `virtual` mailbox delivery (odd local domains); one recipient per delivery.
    Virtual,
    /// `local` delivery to a Unix mailbox; one recipient per delivery.
    Mailbox,
    /// `postfix-out` relaying a notification back to the main instance.
    Hub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Sent,
    Bounce,
    /// Deferred until the message expires.
    Never,
}

/// Decided when the message is created, so a run is reproducible whatever the interleaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    Bounce,
    Defer { retries: u8, then: Then },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Deferred,
    Bounced,
}

impl Fate {
    fn attempt(&mut self) -> Outcome {
        match self {
            Fate::Sent => Outcome::Sent,
            Fate::Bounce => Outcome::Bounced,
            Fate::Defer { retries, then } => {
                if *retries > 0 {
                    *retries -= 1;
                    return Outcome::Deferred;
                }
                match then {
                    Then::Sent => Outcome::Sent,
                    Then::Bounce => Outcome::Bounced,
                    Then::Never => Outcome::Deferred,
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rcpt {
    addr: String,
    orig: Option<String>,
    dest: Dest,
    fate: Fate,
    done: bool,
}

impl Rcpt {
    fn domain(&self) -> &str {
        self.addr.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

#[derive(Debug, Clone)]
struct Msg {
    qid: String,
    instance: Instance,
    sender: String,
    /// Where a notification to the sender is delivered.
    sender_dest: Dest,
    size_bytes: u64,
    message_id: String,
    rcpts: Vec<Rcpt>,
    created: i64,
    deferred_once: bool,
}

#[derive(Debug)]
enum Task {
    Line {
        program: &'static str,
        pid: u32,
        body: String,
    },
    Arrival,
    Round(usize),
    AnvilStats,
    ScacheStats,
}

#[derive(Debug)]
struct Entry {
    at: i64,
    seq: u64,
    task: Task,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed so `BinaryHeap` (a max-heap) pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What an inbound port-25 session ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Message,
    Reject,
    Lost,
    PostscreenDrop,
}

#[derive(Debug)]
pub(crate) struct Engine {
    cfg: SynthConfig,
    fqdn: String,
    rng: Rng,
    world: Arc<World>,
    clock: Clock,
    ids: QueueIdGen,
    pids: Pids,
    heap: BinaryHeap<Entry>,
    seq: u64,
    stats_tasks: usize,
    now: i64,
    arrivals_left: u64,
    msgs: Vec<Option<Msg>>,
    free_msgs: Vec<usize>,
    /// Local mailboxes (addresses at the local domains).
    users: Vec<String>,
    recent_ips: Vec<Ip>,
    truth: SynthTruth,
    main_ip: Ip,
    out_ip: Ip,
    /// Queued messages per instance (indexed by [`Instance`]).
    queue: [QueueLoad; 2],
    hooks: Option<Box<dyn Hooks>>,
    /// Scratch buffer for [`Hooks::extra_sessions`].
    extras: Vec<ExtraSession>,
}

impl Engine {
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
            cfg,
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

    pub(crate) fn truth(&self) -> &SynthTruth {
        &self.truth
    }

    pub(crate) fn into_truth(self) -> SynthTruth {
        self.truth
    }

    /// Messages queued in the main and the `postfix-out` instance, as of the last line returned.
    pub(crate) fn queue_loads(&self) -> [QueueLoad; 2] {
        self.queue
    }

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

    fn schedule(&mut self, at: i64, task: Task) {
        debug_assert!(at >= self.now, "scheduled in the past");
        self.seq += 1;
        self.heap.push(Entry {
            at: at.max(self.now),
            seq: self.seq,
            task,
        });
    }

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

    fn ms(&mut self, lo: u64, hi: u64) -> i64 {
        self.rng.millis_us(lo, hi)
    }

    fn count(&mut self, rate: f64) -> u64 {
        let rate = rate.max(0.0);
        let whole = rate.floor();
        whole as u64 + u64::from(self.rng.chance(rate - whole))
    }

    fn remember(&mut self, ip: Ip) {
        if self.recent_ips.len() < 16 {
            self.recent_ips.push(ip);
        } else {
            let i = self.rng.below(16) as usize;
            self.recent_ips[i] = ip;
        }
    }

    fn new_qid(&mut self, at: i64) -> String {
        let long = self.rng.chance(self.cfg.long_queue_ids_ratio);
        if long {
            self.truth.long_queue_id_messages += 1;
        } else {
            self.truth.short_queue_id_messages += 1;
        }
        self.ids.next(&mut self.rng, at, long)
    }

    // ---------------------------------------------------------------- arrivals and sessions

    fn arrival(&mut self) {
        let t = self.now;
        self.arrivals_left -= 1;
        let r = self.rng.unit();
        let c = &self.cfg;
        let (sub, out, pick) = (
            c.submission_share,
            c.submission_share + c.outbound_instance_share,
            c.submission_share + c.outbound_instance_share + c.pickup_share,
        );
        if r < sub {
            self.submission_session(t, None);
        } else if r < out {
            self.out_session(t);
        } else if r < pick {
            self.pickup(t);
        } else {
            self.inbound_session(t, Plan::Message, None);
        }
        let gap = self.interarrival(t);
        let noise = [
            (self.cfg.reject_rate, Some(Plan::Reject)),
            (self.cfg.postscreen_drop_rate, Some(Plan::PostscreenDrop)),
            (self.cfg.lost_connection_rate, Some(Plan::Lost)),
            (self.cfg.auth_failure_rate, None),
        ];
        for (rate, plan) in noise {
            for _ in 0..self.count(rate) {
                let at = t + self.rng.below(gap as u64) as i64;
                match plan {
                    Some(plan) => self.inbound_session(at, plan, None),
                    None => self.auth_failure_session(at, None),
                }
            }
        }
        for _ in 0..self.count(self.cfg.warning_rate) {
            let at = t + self.rng.below(gap as u64) as i64;
            self.standalone_warning(at);
        }
        self.extra_sessions(t, gap);
        if self.arrivals_left > 0 {
            self.schedule(t + gap, Task::Arrival);
        }
    }

    /// Starts the sessions the hooks add in `[t, t + gap)`.
    fn extra_sessions(&mut self, t: i64, gap: i64) {
        let Some(hooks) = self.hooks.as_mut() else {
            return;
        };
        let mut extras = std::mem::take(&mut self.extras);
        hooks.extra_sessions(&self.world, t, gap, &mut extras);
        for extra in extras.drain(..) {
            match extra {
                ExtraSession::Submission {
                    at,
                    client,
                    user,
                    domains,
                } => self.submission_session(at.max(t), Some((client, user, domains))),
                ExtraSession::AuthFailure { at, client, user } => {
                    self.auth_failure_session(at.max(t), Some((client, user)));
                }
                ExtraSession::Inbound { at, client, ending } => {
                    let plan = match ending {
                        InboundEnding::Reject => Plan::Reject,
                        InboundEnding::Lost => Plan::Lost,
                        InboundEnding::PostscreenDrop => Plan::PostscreenDrop,
                    };
                    self.inbound_session(at.max(t), plan, Some(client));
                }
            }
        }
        self.extras = extras;
    }

    /// Time to the next accepted message: exponential around the diurnally modulated rate (or
    /// the rate the hooks give).
    fn interarrival(&mut self, t: i64) -> i64 {
        let hooked = self.hooks.as_mut().and_then(|h| h.messages_per_sec(t));
        let rate = match hooked {
            Some(rate) => rate,
            None => {
                let hour = t.rem_euclid(86_400 * SECOND) as f64 / (3600 * SECOND) as f64;
                let phase = (hour - 8.0) / 24.0 * std::f64::consts::TAU;
                self.cfg.messages_per_sec * (1.0 + self.cfg.diurnal_amplitude * phase.sin())
            }
        };
        let mean_us = SECOND as f64 / rate.max(1e-6);
        (self.rng.exponential(mean_us) as i64).clamp(1, 3600 * SECOND)
    }

    fn unknown_client(&mut self) -> Client {
        let ip = world::public_ip(&mut self.rng);
        let helo = match self.rng.below(5) {
            0 => format!("WIN-{}", world::alnum(&mut self.rng, 11)),
            1 => "User".to_string(),
            2 => format!("[{ip}]"),
            3 => "localhost".to_string(),
            _ => format!(
                "{}.com",
                world::remote_local_part(&mut self.rng).replace('.', "")
            ),
        };
        Client {
            host: "unknown".to_string(),
            ip,
            port: self.rng.range(1024, 65000) as u16,
            helo,
        }
    }

    fn residential_client(&mut self) -> Client {
        let ip = world::public_ip(&mut self.rng);
        let [a, b, c, d] = ip.octets();
        let isp = *self.rng.pick(&[
            "dsl.telefonica.es",
            "dyn.telefonica.de",
            "abo.wanadoo.fr",
            "cable.virginm.net",
            "fbx.proxad.net",
            "customer.bouyguestelecom.fr",
            "pool.telekom.hu",
            "static.kpn.net",
        ]);
        let host = if self.rng.chance(0.3) {
            "unknown".to_string()
        } else {
            format!("{a}-{b}-{c}-{d}.{isp}")
        };
        Client {
            helo: if self.rng.chance(0.5) {
                "[192.168.1.23]".to_string()
            } else {
                format!(
                    "{}-laptop",
                    world::person_local_part(&mut self.rng).replace('.', "")
                )
            },
            host,
            ip,
            port: self.rng.range(1024, 65000) as u16,
        }
    }

    fn inbound_tls_line(&mut self, client: &Client) -> String {
        let (proto, cipher, extra) = if self.rng.chance(0.8) {
            (
                "TLSv1.3",
                "TLS_AES_256_GCM_SHA384",
                " key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
            )
        } else {
            ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", "")
        };
        format!(
            "Anonymous TLS connection established from {}[{}]: {proto} with cipher {cipher} (256/256 bits){extra}",
            client.host, client.ip
        )
    }

    /// A port-25 connection through postscreen to smtpd, from `client` or a drawn one.
    fn inbound_session(&mut self, t0: i64, plan: Plan, client: Option<Client>) {
        let sender_domain = self.world.sender_domain(&mut self.rng);
        let client = match client {
            Some(client) => client,
            None if plan == Plan::Message && self.rng.chance(0.85) => {
                self.world.inbound_client(&mut self.rng, sender_domain)
            }
            None => self.unknown_client(),
        };
        self.remember(client.ip);
        let mut t = t0;
        self.note(
            t,
            Instance::Main,
            Service::Postscreen,
            format!(
                "CONNECT from [{}]:{} to [{}]:25",
                client.ip, client.port, self.main_ip
            ),
        );
        if plan == Plan::PostscreenDrop {
            self.postscreen_drop(t, &client);
            return;
        }
        if self.rng.chance(0.8) {
            t += self.ms(0, 3);
            let body = format!("PASS OLD [{}]:{}", client.ip, client.port);
            self.note(t, Instance::Main, Service::Postscreen, body);
        } else {
            t += self.ms(6000, 6400);
            let body = format!("PASS NEW [{}]:{}", client.ip, client.port);
            self.note(t, Instance::Main, Service::Postscreen, body);
        }
        t += self.ms(1, 8);

        let mut lines = Vec::new();
        let ep = format!("{}[{}]", client.host, client.ip);
        if client.host == "unknown" && self.rng.chance(0.3) {
            let [a, b, c, d] = client.ip.octets();
            lines.push((
                t,
                format!(
                    "warning: hostname {d}-{c}-{b}-{a}.static.isp-{}.net does not resolve to address {}: Name or service not known",
                    a % 7,
                    client.ip
                ),
            ));
            self.truth.warnings += 1;
        }
        lines.push((t, format!("connect from {ep}")));
        self.truth.smtpd_connections += 1;
        let lost_kind = self.rng.below(5);
        let tls = match plan {
            Plan::Lost => lost_kind >= 2 && self.rng.chance(0.4),
            _ if client.host == "unknown" => self.rng.chance(0.4),
            _ => self.rng.chance(0.9),
        };
        if tls {
            t += self.ms(60, 400);
            let body = self.inbound_tls_line(&client);
            lines.push((t, body));
        }
        let ehlo = if tls { "ehlo=2 starttls=1" } else { "ehlo=1" };
        let ehlo_cmds = if tls { 3 } else { 1 };
        match plan {
            Plan::Message => {
                let n_msgs = if self.arrivals_left > 0 && self.rng.chance(0.1) {
                    self.arrivals_left -= 1;
                    2
                } else {
                    1
                };
                let mut rcpt_total = 0;
                for _ in 0..n_msgs {
                    t += self.ms(80, 700);
                    let n = if self.rng.chance(0.85) {
                        1
                    } else {
                        self.rng.range(2, 4) as usize
                    };
                    rcpt_total += n;
                    let msg = self.inbound_message(t, sender_domain, n);
                    lines.push((t, format!("{}: client={ep}", msg.qid)));
                    self.truth.received_smtpd += 1;
                    t += self.ms(30, 300) + (msg.size_bytes / 2_000) as i64 * 1000;
                    self.accept(msg, t, Some(&client));
                }
                t += self.ms(5, 150);
                lines.push((
                    t,
                    format!(
                        "disconnect from {ep} {ehlo} mail={n_msgs} rcpt={rcpt_total} data={n_msgs} quit=1 commands={}",
                        ehlo_cmds + 2 * n_msgs + rcpt_total + 1
                    ),
                ));
            }
            Plan::Reject => {
                let k = if self.rng.chance(0.8) { 1 } else { 2 };
                for _ in 0..k {
                    t += self.ms(150, 1500);
                    let body = self.reject_line(&client, &ep);
                    lines.push((t, body));
                    self.truth.rejected += 1;
                }
                t += self.ms(10, 500);
                if self.rng.chance(0.6) {
                    lines.push((
                        t,
                        format!(
                            "disconnect from {ep} {ehlo} mail=1 rcpt=0/{k} rset=1 quit=1 commands={}/{}",
                            ehlo_cmds + 3,
                            ehlo_cmds + 3 + k
                        ),
                    ));
                } else {
                    lines.push((t, format!("lost connection after RCPT from {ep}")));
                    lines.push((
                        t,
                        format!(
                            "disconnect from {ep} {ehlo} mail=1 rcpt=0/{k} commands={}/{}",
                            ehlo_cmds + 1,
                            ehlo_cmds + 1 + k
                        ),
                    ));
                }
            }
            Plan::Lost => {
                let (text, counts, wait) = match lost_kind {
                    0 => (
                        format!("lost connection after CONNECT from {ep}"),
                        "commands=0/0".to_string(),
                        self.ms(50, 3000),
                    ),
                    1 => {
                        lines.push((
                            t + 1000,
                            format!("warning: non-SMTP command from {ep}: GET / HTTP/1.1"),
                        ));
                        self.truth.warnings += 1;
                        (String::new(), "unknown=0/1 commands=0/1".to_string(), 2000)
                    }
                    2 => (
                        format!("lost connection after EHLO from {ep}"),
                        format!("{ehlo} commands={ehlo_cmds}"),
                        self.ms(100, 2000),
                    ),
                    3 => (
                        format!(
                            "timeout after DATA ({} bytes) from {ep}",
                            self.rng.range(0, 60_000)
                        ),
                        format!(
                            "{ehlo} mail=1 rcpt=1 data=0/1 commands={}/{}",
                            ehlo_cmds + 2,
                            ehlo_cmds + 3
                        ),
                        300 * SECOND,
                    ),
                    _ => (
                        format!("too many errors after RCPT from {ep}"),
                        format!(
                            "{ehlo} mail=1 rcpt=0/20 commands={}/{}",
                            ehlo_cmds + 1,
                            ehlo_cmds + 21
                        ),
                        self.ms(2000, 20_000),
                    ),
                };
                t += wait;
                if !text.is_empty() {
                    lines.push((t, text));
                }
                lines.push((t, format!("disconnect from {ep} {counts}")));
            }
            Plan::PostscreenDrop => unreachable!("handled above"),
        }
        self.job(Instance::Main, Service::Smtpd, lines);
    }

    fn reject_line(&mut self, client: &Client, ep: &str) -> String {
        let local_domain = self.rng.pick(&self.cfg.local_domains).clone();
        let sender = format!(
            "{}@{}",
            world::remote_local_part(&mut self.rng),
            self.world.domains[self.world.sender_domain(&mut self.rng)].name
        );
        let some_user = self.rng.pick(&self.users).clone();
        let local_rcpt = || some_user.clone();
        let (reply, rcpt) = match self.rng.below(6) {
            0 => {
                let d = self.world.recipient_domain(&mut self.rng);
                let rcpt = format!(
                    "{}@{}",
                    world::remote_local_part(&mut self.rng),
                    self.world.domains[d].name
                );
                (format!("554 5.7.1 <{rcpt}>: Relay access denied"), rcpt)
            }
            1 => {
                let rcpt = format!("{}@{local_domain}", world::person_local_part(&mut self.rng));
                (
                    format!(
                        "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
                    ),
                    rcpt,
                )
            }
            2 => (
                format!(
                    "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}",
                    ip = client.ip
                ),
                local_rcpt(),
            ),
            3 if client.host == "unknown" => (
                format!(
                    "450 4.7.25 Client host rejected: cannot find your hostname, [{}]",
                    client.ip
                ),
                local_rcpt(),
            ),
            4 => {
                let rcpt = self.rng.pick(&self.users).clone();
                (
                    format!(
                        "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/{local_domain}.html"
                    ),
                    rcpt,
                )
            }
            _ => (
                format!("450 4.1.8 <{sender}>: Sender address rejected: Domain not found"),
                local_rcpt(),
            ),
        };
        format!(
            "NOQUEUE: reject: RCPT from {ep}: {reply}; from=<{sender}> to=<{rcpt}> proto=ESMTP helo=<{}>",
            client.helo
        )
    }

    fn postscreen_drop(&mut self, mut t: i64, client: &Client) {
        let peer = format!("[{}]:{}", client.ip, client.port);
        match self.rng.below(3) {
            0 => {
                t += self.ms(20, 900);
                let greeting = format!("EHLO {}", client.helo);
                let body = format!(
                    "PREGREET {} after {:.2} from {peer}: {greeting}\\r\\n",
                    greeting.len() + 2,
                    self.rng.unit() * 0.9
                );
                self.note(t, Instance::Main, Service::Postscreen, body);
            }
            1 => {
                t += self.ms(5, 80);
                let code = *self.rng.pick(&[2u8, 3, 4, 9, 10, 11]);
                let body = format!(
                    "addr {} listed by domain zen.spamhaus.org as 127.0.0.{code}",
                    client.ip
                );
                self.note(t, Instance::Main, Service::Dnsblog, body);
                if self.rng.chance(0.5) {
                    let body = format!(
                        "addr {} listed by domain b.barracudacentral.org as 127.0.0.2",
                        client.ip
                    );
                    self.note(t, Instance::Main, Service::Dnsblog, body);
                }
                t += self.ms(100, 6000);
                let body = format!("DNSBL rank {} for {peer}", self.rng.range(3, 6));
                self.note(t, Instance::Main, Service::Postscreen, body);
                t += self.ms(300, 3000);
                let rcpt = self.rng.pick(&self.users).clone();
                let sender = format!(
                    "{}@{}",
                    world::person_local_part(&mut self.rng),
                    self.world.domains[self.world.sender_domain(&mut self.rng)].name
                );
                let body = format!(
                    "NOQUEUE: reject: RCPT from {peer}: 550 5.7.1 Service unavailable; client [{}] blocked using zen.spamhaus.org; from=<{sender}>, to=<{rcpt}>, proto=ESMTP, helo=<{}>",
                    client.ip, client.helo
                );
                self.note(t, Instance::Main, Service::Postscreen, body);
                self.truth.postscreen_rejected += 1;
            }
            _ => {
                let after = self.rng.unit() * 5.0;
                t += (after * SECOND as f64) as i64;
                let body =
                    format!("HANGUP after {after:.1} from {peer} in tests before SMTP handshake");
                self.note(t, Instance::Main, Service::Postscreen, body);
            }
        }
        t += self.ms(0, 5);
        self.note(
            t,
            Instance::Main,
            Service::Postscreen,
            format!("DISCONNECT {peer}"),
        );
    }

    /// Authenticated submission from a mail client of a local user; `forced` gives the client,
    /// the user and the recipient domains instead of drawing them.
    fn submission_session(&mut self, t0: i64, forced: Option<(Client, String, Vec<usize>)>) {
        let (client, forced) = match forced {
            Some((client, user, domains)) => (client, Some((user, domains))),
            None => (self.residential_client(), None),
        };
        self.remember(client.ip);
        let ep = format!("{}[{}]", client.host, client.ip);
        let mut t = t0;
        let mut lines = vec![(t, format!("connect from {ep}"))];
        self.truth.smtpd_connections += 1;
        t += self.ms(40, 300);
        let body = self.inbound_tls_line(&client);
        lines.push((t, body));
        t += self.ms(100, 900);
        let (user, rcpts) = match forced {
            Some((user, domains)) => {
                let rcpts: Vec<Rcpt> = domains
                    .into_iter()
                    .map(|d| self.remote_rcpt_at(d))
                    .collect();
                (user, rcpts)
            }
            None => {
                let user = self.rng.pick(&self.users).clone();
                let n = match self.rng.below(20) {
                    0..=11 => 1,
                    12..=18 => self.rng.range(2, 4) as usize,
                    _ => self.rng.range(5, 30) as usize,
                };
                let mut rcpts = Vec::with_capacity(n);
                for _ in 0..n {
                    let rcpt = if self.rng.chance(0.1) {
                        self.local_rcpt()
                    } else {
                        self.remote_rcpt()
                    };
                    rcpts.push(rcpt);
                }
                (user, rcpts)
            }
        };
        let n = rcpts.len();
        let sender_dest = self.local_dest(&user);
        let message_id = format!(
            "<{}-{}-{}-{}-{}@{}>",
            world::hex(&mut self.rng, 8),
            world::hex(&mut self.rng, 4),
            world::hex(&mut self.rng, 4),
            world::hex(&mut self.rng, 4),
            world::hex(&mut self.rng, 12),
            user.rsplit_once('@').map_or("", |(_, d)| d)
        );
        let msg = self.new_msg(
            t,
            Instance::Main,
            user.clone(),
            sender_dest,
            message_id,
            rcpts,
        );
        let method = if self.rng.chance(0.7) {
            "PLAIN"
        } else {
            "LOGIN"
        };
        lines.push((
            t,
            format!(
                "{}: client={ep}, sasl_method={method}, sasl_username={user}",
                msg.qid
            ),
        ));
        self.truth.received_submission += 1;
        t += self.ms(50, 500) + (msg.size_bytes / 1_000) as i64 * 1000;
        self.accept(msg, t, None);
        t += self.ms(5, 100);
        lines.push((
            t,
            format!(
                "disconnect from {ep} ehlo=2 starttls=1 auth=1 mail=1 rcpt={n} data=1 quit=1 commands={}",
                n + 6
            ),
        ));
        self.job(Instance::Main, Service::Submission, lines);
    }

    /// Password guessing against submission; `forced` gives the client and the username tried.
    fn auth_failure_session(&mut self, t0: i64, forced: Option<(Client, Option<String>)>) {
        let (client, forced_user) = match forced {
            Some((client, user)) => (client, Some(user)),
            None => (self.unknown_client(), None),
        };
        self.remember(client.ip);
        let ep = format!("{}[{}]", client.host, client.ip);
        let mut t = t0;
        let mut lines = vec![(t, format!("connect from {ep}"))];
        self.truth.smtpd_connections += 1;
        t += self.ms(50, 400);
        let body = self.inbound_tls_line(&client);
        lines.push((t, body));
        t += self.ms(500, 4000);
        let (method, reason) = if self.rng.chance(0.7) {
            ("LOGIN", "UGFzc3dvcmQ6")
        } else {
            ("PLAIN", "authentication failure")
        };
        let user = match forced_user {
            Some(Some(name)) => format!(", sasl_username={name}"),
            Some(None) => String::new(),
            None if self.rng.chance(0.4) => {
                let domain = self.rng.pick(&self.cfg.local_domains).clone();
                let name = *self.rng.pick(&["admin", "info", "test", "office", "sales"]);
                format!(", sasl_username={name}@{domain}")
            }
            None => String::new(),
        };
        lines.push((
            t,
            format!("warning: {ep}: SASL {method} authentication failed: {reason}{user}"),
        ));
        self.truth.sasl_auth_failures += 1;
        self.truth.warnings += 1;
        t += self.ms(10, 3000);
        if self.rng.chance(0.7) {
            lines.push((t, format!("lost connection after AUTH from {ep}")));
            lines.push((
                t,
                format!("disconnect from {ep} ehlo=2 starttls=1 auth=0/1 commands=3/4"),
            ));
        } else {
            lines.push((
                t,
                format!("disconnect from {ep} ehlo=2 starttls=1 auth=0/1 quit=1 commands=4/5"),
            ));
        }
        self.job(Instance::Main, Service::Submission, lines);
    }

    /// Application servers relaying transactional mail through the `postfix-out` instance.
    fn out_session(&mut self, t0: i64) {
        let app = self.rng.range(1, 6);
        let ep = format!("app{app}.internal[10.20.0.{}]", 10 + app);
        let mut t = t0;
        let mut lines = vec![(t, format!("connect from {ep}"))];
        self.truth.smtpd_connections += 1;
        t += self.ms(2, 40);
        let n = if self.rng.chance(0.9) {
            1
        } else {
            self.rng.range(2, 3) as usize
        };
        let rcpts = (0..n).map(|_| self.remote_rcpt()).collect();
        let local = self.cfg.local_domains[0].clone();
        let sender = format!(
            "{}@{local}",
            self.rng.pick(&[
                "no-reply",
                "notifications",
                "billing",
                "alerts",
                "newsletter"
            ])
        );
        let message_id = format!("<{}@{local}>", world::hex(&mut self.rng, 32));
        let msg = self.new_msg(t, Instance::Out, sender, Dest::Hub, message_id, rcpts);
        lines.push((t, format!("{}: client={ep}", msg.qid)));
        self.truth.received_outbound_instance += 1;
        t += self.ms(5, 120);
        self.accept(msg, t, None);
        t += self.ms(1, 20);
        lines.push((
            t,
            format!(
                "disconnect from {ep} ehlo=1 mail=1 rcpt={n} data=1 quit=1 commands={}",
                n + 4
            ),
        ));
        self.job(Instance::Out, Service::Smtpd, lines);
    }

    /// Local submission (cron, scripts) through sendmail/pickup.
    fn pickup(&mut self, t: i64) {
        let (uid, user) = *self.rng.pick(&[
            (0, "root"),
            (0, "root"),
            (33, "www-data"),
            (1000, "deploy"),
            (112, "logcheck"),
        ]);
        let sender = format!("{user}@{}", self.fqdn);
        let rcpt = if self.rng.chance(0.7) {
            Rcpt {
                addr: format!("root@{}", self.fqdn),
                orig: Some("root".to_string()),
                dest: Dest::Mailbox,
                fate: self.fate(Dest::Mailbox),
                done: false,
            }
        } else {
            self.remote_rcpt()
        };
        let message_id = String::new();
        let mut msg = self.new_msg(
            t,
            Instance::Main,
            sender,
            Dest::Mailbox,
            message_id,
            vec![rcpt],
        );
        msg.message_id = format!("<{}.{}@{}>", compact_time(t), msg.qid, self.fqdn);
        msg.size_bytes = msg.size_bytes.min(20_000);
        self.note(
            t,
            Instance::Main,
            Service::Pickup,
            format!("{}: uid={uid} from=<{user}>", msg.qid),
        );
        self.truth.received_pickup += 1;
        let at = t + self.ms(1, 20);
        self.accept(msg, at, None);
    }

    // ---------------------------------------------------------------- messages

    fn inbound_message(&mut self, t: i64, sender_domain: usize, n: usize) -> Msg {
        let domain = &self.world.domains[sender_domain];
        let (sender, message_id) = match domain.provider {
            Provider::Google if domain.name.contains("gmail") => (
                format!(
                    "{}@{}",
                    world::person_local_part(&mut self.rng),
                    domain.name
                ),
                format!(
                    "<CA+{}@mail.gmail.com>",
                    world::base64ish(&mut self.rng, 44).replace('/', "_")
                ),
            ),
            Provider::Microsoft
                if domain.name.contains("outlook") || domain.name.contains("hotmail") =>
            {
                let srv = format!(
                    "AM{}PR0{}MB{}",
                    self.rng.range(0, 9),
                    self.rng.range(1, 9),
                    self.rng.range(1000, 9999)
                );
                (
                    format!(
                        "{}@{}",
                        world::person_local_part(&mut self.rng),
                        domain.name
                    ),
                    format!(
                        "<{srv}{}@{srv}.eurprd0{}.prod.outlook.com>",
                        world::alnum(&mut self.rng, 28),
                        self.rng.range(1, 9)
                    ),
                )
            }
            _ if self.rng.chance(0.3) => {
                let sender = format!(
                    "bounces+{}-{}@em{}.{}",
                    self.rng.range(100_000, 9_999_999),
                    world::hex(&mut self.rng, 4),
                    self.rng.range(100, 9999),
                    domain.name
                );
                (
                    sender,
                    format!(
                        "<{}.{}@{}>",
                        world::hex(&mut self.rng, 16),
                        world::hex(&mut self.rng, 8),
                        domain.name
                    ),
                )
            }
            _ => (
                format!(
                    "{}@{}",
                    world::remote_local_part(&mut self.rng),
                    domain.name
                ),
                format!(
                    "<{}.{}@{}>",
                    world::hex(&mut self.rng, 16),
                    world::hex(&mut self.rng, 8),
                    domain.name
                ),
            ),
        };
        let rcpts = (0..n).map(|_| self.local_rcpt()).collect();
        self.new_msg(
            t,
            Instance::Main,
            sender,
            Dest::Remote(sender_domain),
            message_id,
            rcpts,
        )
    }

    fn new_msg(
        &mut self,
        t: i64,
        instance: Instance,
        sender: String,
        sender_dest: Dest,
        message_id: String,
        rcpts: Vec<Rcpt>,
    ) -> Msg {
        let size = self.rng.log_normal(9.6, 1.1).clamp(600.0, 35_000_000.0) as u64;
        self.truth.received += 1;
        Msg {
            qid: self.new_qid(t),
            instance,
            sender,
            sender_dest,
            size_bytes: size,
            message_id,
            rcpts,
            created: t,
            deferred_once: false,
        }
    }

    fn local_dest(&self, addr: &str) -> Dest {
        let domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
        match self.cfg.local_domains.iter().position(|d| d == domain) {
            Some(i) if i % 2 == 1 => Dest::Virtual,
            Some(_) => Dest::Lmtp,
            None => Dest::Mailbox,
        }
    }

    fn local_rcpt(&mut self) -> Rcpt {
        let addr = self.rng.pick(&self.users).clone();
        let dest = self.local_dest(&addr);
        Rcpt {
            addr,
            orig: None,
            dest,
            fate: self.fate(dest),
            done: false,
        }
    }

    fn remote_rcpt(&mut self) -> Rcpt {
        let d = self.world.recipient_domain(&mut self.rng);
        self.remote_rcpt_at(d)
    }

    /// A recipient at domain `d` of the world table.
    fn remote_rcpt_at(&mut self, d: usize) -> Rcpt {
        let addr = format!(
            "{}@{}",
            world::remote_local_part(&mut self.rng),
            self.world.domains[d].name
        );
        let dest = Dest::Remote(d);
        Rcpt {
            addr,
            orig: None,
            dest,
            fate: self.fate(dest),
            done: false,
        }
    }

    fn fate(&mut self, dest: Dest) -> Fate {
        let (defer_factor, bounce_factor) = match dest {
            Dest::Remote(d) => {
                let domain = &self.world.domains[d];
                match domain.health {
                    Health::Dead => {
                        return Fate::Defer {
                            retries: 0,
                            then: Then::Never,
                        };
                    }
                    Health::NxDomain => return Fate::Bounce,
                    Health::Normal => (domain.defer_factor, domain.bounce_factor),
                }
            }
            Dest::Lmtp | Dest::Virtual => (0.3, 0.5),
            Dest::Mailbox => (0.1, 0.0),
            Dest::Hub => (0.0, 0.0),
        };
        if self.rng.chance(self.cfg.bounce_rate * bounce_factor) {
            return Fate::Bounce;
        }
        if !self.rng.chance(self.cfg.deferral_rate * defer_factor) {
            return Fate::Sent;
        }
        let r = self.rng.unit();
        let never = self.cfg.expire_ratio;
        let then = if r < never {
            Then::Never
        } else if r < never + 0.1 {
            Then::Bounce
        } else {
            Then::Sent
        };
        let retries = match self.rng.below(20) {
            0..=10 => 1,
            11..=15 => 2,
            _ => self.rng.range(3, 6) as u8,
        };
        Fate::Defer { retries, then }
    }

    /// cleanup takes the message: message-id, maybe a header-check hold/discard, then qmgr.
    fn accept(&mut self, msg: Msg, t: i64, client: Option<&Client>) {
        let instance = msg.instance;
        let body = format!("{}: message-id={}", msg.qid, msg.message_id);
        self.note(t, instance, Service::Cleanup, body);
        if let Some(client) = client {
            let action = if self.rng.chance(self.cfg.hold_rate) {
                Some(("hold", "quarantined for review"))
            } else if self.rng.chance(self.cfg.discard_rate) {
                Some(("discard", "known spam campaign"))
            } else {
                None
            };
            if let Some((action, reason)) = action {
                let subject = *self.rng.pick(&[
                    "Your invoice is ready",
                    "URGENT: payment overdue",
                    "You have won a prize!!!",
                    "Re: business proposal",
                    "Action required: verify your account",
                ]);
                let body = format!(
                    "{}: {action}: header Subject: {subject} from {}[{}]; from=<{}> to=<{}> proto=ESMTP helo=<{}>: {reason}",
                    msg.qid, client.host, client.ip, msg.sender, msg.rcpts[0].addr, client.helo
                );
                self.note(t, instance, Service::Cleanup, body);
                if action == "hold" {
                    self.truth.held += 1;
                } else {
                    self.truth.discarded += 1;
                }
                return;
            }
        }
        let at = t + self.ms(1, 40);
        let idx = self.store(msg);
        self.schedule(at, Task::Round(idx));
    }

    fn store(&mut self, msg: Msg) -> usize {
        let load = &mut self.queue[msg.instance as usize];
        load.messages += 1;
        load.bytes += msg.size_bytes;
        match self.free_msgs.pop() {
            Some(i) => {
                self.msgs[i] = Some(msg);
                i
            }
            None => {
                self.msgs.push(Some(msg));
                self.msgs.len() - 1
            }
        }
    }

    /// qmgr moves the message to the active queue and delivers every pending recipient once.
    fn round(&mut self, idx: usize) {
        let Some(mut msg) = self.msgs[idx].take() else {
            return;
        };
        let t = self.now;
        let instance = msg.instance;
        // Counted as deferred in `queue` since an earlier round left it in the queue.
        let was_deferred = msg.deferred_once;
        let body = format!(
            "{}: from=<{}>, size={}, nrcpt={} (queue active)",
            msg.qid,
            msg.sender,
            msg.size_bytes,
            msg.rcpts.len()
        );
        self.note(t, instance, Service::Qmgr, body);

        let mut groups: Vec<(Dest, Vec<usize>)> = Vec::new();
        for (i, r) in msg.rcpts.iter().enumerate().filter(|(_, r)| !r.done) {
            let batched = matches!(r.dest, Dest::Remote(_) | Dest::Lmtp | Dest::Hub);
            match groups.iter_mut().find(|(d, _)| batched && *d == r.dest) {
                Some((_, members)) => members.push(i),
                None => groups.push((r.dest, vec![i])),
            }
        }
        let mut end = t;
        let mut bounced = false;
        for (dest, members) in groups {
            let start = t + self.ms(1, 60);
            let (group_end, group_bounced) = self.deliver(&mut msg, t, start, dest, &members);
            end = end.max(group_end);
            bounced |= group_bounced;
        }

        let te = end + self.ms(0, 4);
        let pending = msg.rcpts.iter().any(|r| !r.done);
        let expired = pending && te - msg.created >= self.cfg.max_queue_lifetime_secs * SECOND;
        if expired {
            let body = format!(
                "{}: from=<{}>, status=expired, returned to sender",
                msg.qid, msg.sender
            );
            self.note(te, instance, Service::Qmgr, body);
            self.truth.expired += 1;
        }
        if (bounced || expired) && !msg.sender.is_empty() {
            self.notify_sender(te, &msg);
        }
        if pending && !expired {
            let age = te - msg.created;
            let backoff =
                age.clamp(MINIMAL_BACKOFF, MAXIMAL_BACKOFF) + self.rng.millis_us(0, 120_000);
            if !was_deferred && msg.deferred_once {
                let load = &mut self.queue[instance as usize];
                load.deferred_messages += 1;
                load.deferred_bytes += msg.size_bytes;
            }
            self.msgs[idx] = Some(msg);
            self.schedule(te + backoff, Task::Round(idx));
        } else {
            let load = &mut self.queue[instance as usize];
            load.messages = load.messages.saturating_sub(1);
            load.bytes = load.bytes.saturating_sub(msg.size_bytes);
            if was_deferred {
                load.deferred_messages = load.deferred_messages.saturating_sub(1);
                load.deferred_bytes = load.deferred_bytes.saturating_sub(msg.size_bytes);
            }
            self.note(te, instance, Service::Qmgr, format!("{}: removed", msg.qid));
            self.truth.removed += 1;
            self.free_msgs.push(idx);
        }
    }

    /// One delivery-agent job for `members` (recipient indexes of `msg`) starting at `start`.
    /// Returns when it ended and whether a recipient bounced.
    fn deliver(
        &mut self,
        msg: &mut Msg,
        round_start: i64,
        start: i64,
        dest: Dest,
        members: &[usize],
    ) -> (i64, bool) {
        let world = Arc::clone(&self.world);
        let instance = msg.instance;
        let our_ip = if instance == Instance::Out {
            self.out_ip
        } else {
            self.main_ip
        };
        // The MX is chosen before the outcomes (which draw no random numbers) so that the hooks
        // see it; the order of random draws is the same as without hooks.
        let mx_idx = match dest {
            Dest::Remote(d) => {
                let domain = &world.domains[d];
                usize::from(domain.mx.len() > 1 && self.rng.chance(0.1))
            }
            _ => 0,
        };
        let fallback_mx = match dest {
            Dest::Remote(d) => Mx {
                host: world.domains[d].name.clone(),
                ip: Ip(0),
            },
            _ => Mx {
                host: String::new(),
                ip: Ip(0),
            },
        };
        let mut forced: Vec<Option<Forced>> = Vec::new();
        if let (Dest::Remote(d), Some(hooks)) = (dest, self.hooks.as_mut()) {
            let domain = &world.domains[d];
            let mx = domain.mx.get(mx_idx).unwrap_or(&fallback_mx);
            forced = members
                .iter()
                .map(|&i| {
                    hooks.remote_attempt(&RemoteAttempt {
                        at: start,
                        age: start - msg.created,
                        domain,
                        mx,
                        sender: &msg.sender,
                        rcpt: &msg.rcpts[i].addr,
                        our_ip,
                    })
                })
                .collect();
        }
        let unreachable = forced.iter().find_map(|f| match f {
            Some(Forced::Unreachable(reply)) => Some(reply.clone()),
            _ => None,
        });
        let outcomes: Vec<Outcome> = members
            .iter()
            .enumerate()
            .map(|(k, &i)| match forced.get(k) {
                _ if unreachable.is_some() => Outcome::Deferred,
                Some(Some(Forced::Defer(_) | Forced::Unreachable(_))) => Outcome::Deferred,
                Some(Some(Forced::Bounce(_))) => Outcome::Bounced,
                _ => msg.rcpts[i].fate.attempt(),
            })
            .collect();
        let mut lines: Vec<(i64, String)> = Vec::with_capacity(members.len() + 2);
        let (service, relay, conn_setup, mut replies) = match dest {
            Dest::Remote(d) => {
                let domain = &world.domains[d];
                let mx = domain.mx.get(mx_idx).unwrap_or(&fallback_mx);
                let base = ReplyContext {
                    rcpt: "",
                    our_ip,
                    unix_secs: start / SECOND,
                    size_bytes: msg.size_bytes,
                    message_id: msg.message_id.trim_matches(['<', '>']),
                    mx,
                };
                let cx_base = |rcpt| ReplyContext { rcpt, ..base };
                let all_deferred = outcomes.iter().all(|o| *o == Outcome::Deferred);
                let any_forced = forced.iter().any(Option::is_some);
                // Connection-level failure: one reply for the whole group, relay=none.
                let group_failure = if unreachable.is_some() {
                    unreachable
                } else if any_forced {
                    None
                } else if domain.health == Health::NxDomain {
                    let cx = cx_base(msg.rcpts[members[0]].addr.as_str());
                    Some(world::bounce_reply(&mut self.rng, domain, &cx).0)
                } else if all_deferred {
                    let cx = cx_base(msg.rcpts[members[0]].addr.as_str());
                    match world::defer_reply(&mut self.rng, domain, &cx) {
                        (reply, false) => Some(reply),
                        _ => None,
                    }
                } else {
                    None
                };
                let (relay, conn_setup, replies) = if let Some(reply) = group_failure {
                    let timeout = reply.text.contains("timed out");
                    // A forced failure names its MX itself; the backup MX is not tried.
                    if timeout && !any_forced && domain.mx.len() > 1 && mx_idx == 0 {
                        let other = &domain.mx[1];
                        lines.push((
                            start + 30 * SECOND,
                            format!(
                                "connect to {}[{}]:25: Connection timed out",
                                other.host, other.ip
                            ),
                        ));
                    }
                    let setup = if timeout {
                        30 * SECOND * if domain.mx.len() > 1 { 2 } else { 1 }
                    } else {
                        self.ms(5, 300)
                    };
                    ("none".to_string(), setup, vec![reply; members.len()])
                } else {
                    let replies = members
                        .iter()
                        .zip(&outcomes)
                        .enumerate()
                        .map(|(k, (&i, outcome))| {
                            if let Some(Some(Forced::Defer(reply) | Forced::Bounce(reply))) =
                                forced.get_mut(k).map(Option::take)
                            {
                                return reply;
                            }
                            let cx = cx_base(msg.rcpts[i].addr.as_str());
                            match outcome {
                                Outcome::Sent => {
                                    world::sent_reply(&mut self.rng, domain.provider, &cx)
                                }
                                Outcome::Deferred => connected_reply(&mut self.rng, |rng| {
                                    world::defer_reply(rng, domain, &cx)
                                }),
                                Outcome::Bounced => connected_reply(&mut self.rng, |rng| {
                                    world::bounce_reply(rng, domain, &cx)
                                }),
                            }
                        })
                        .collect();
                    let setup = self.ms(30, 700);
                    let reused = self.rng.chance(0.2);
                    if let (false, Some(trust)) = (reused, domain.tls) {
                        let cipher = if self.rng.chance(0.85) {
                            "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256"
                        } else {
                            "TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits)"
                        };
                        lines.push((
                            start + setup,
                            format!(
                                "{trust} TLS connection established to {}[{}]:25: {cipher}",
                                mx.host, mx.ip
                            ),
                        ));
                    }
                    let relay = if reused {
                        format!(
                            "{}[{}]:25, conn_use={}",
                            mx.host,
                            mx.ip,
                            self.rng.range(2, 6)
                        )
                    } else {
                        format!("{}[{}]:25", mx.host, mx.ip)
                    };
                    (relay, setup, replies)
                };
                (Service::Smtp, relay, conn_setup, replies)
            }
            Dest::Lmtp => {
                let relay = format!("{}[private/dovecot-lmtp]", self.fqdn);
                let replies = members
                    .iter()
                    .zip(&outcomes)
                    .map(|(&i, o)| lmtp_reply(&mut self.rng, &relay, &msg.rcpts[i].addr, *o))
                    .collect();
                (Service::Lmtp, relay, self.ms(0, 5), replies)
            }
            Dest::Virtual => {
                let replies = members
                    .iter()
                    .zip(&outcomes)
                    .map(|(&i, o)| virtual_reply(&msg.rcpts[i].addr, *o))
                    .collect();
                (Service::Virtual, "virtual".to_string(), 0, replies)
            }
            Dest::Mailbox => {
                let replies = members
                    .iter()
                    .zip(&outcomes)
                    .map(|(&i, o)| mailbox_reply(&mut self.rng, &msg.rcpts[i].addr, *o))
                    .collect();
                (Service::Local, "local".to_string(), 0, replies)
            }
            Dest::Hub => {
                let replies = members
                    .iter()
                    .map(|_| Reply {
                        dsn: "2.0.0",
                        text: format!(
                            "250 2.0.0 Ok: queued as {:05X}{:X}",
                            self.rng.below(1_000_000),
                            self.rng.range(0x1000, 0xFFFFF)
                        ),
                    })
                    .collect();
                let relay = format!("{}[{}]:25", self.fqdn, self.main_ip);
                (Service::Smtp, relay, self.ms(1, 10), replies)
            }
        };

        let mut at = start + conn_setup;
        let mut bounced = false;
        let connected = relay != "none";
        for ((&i, outcome), reply) in members.iter().zip(&outcomes).zip(replies.iter_mut()) {
            let xfer = if connected {
                match dest {
                    Dest::Remote(_) | Dest::Hub => self.ms(60, 900) + (msg.size_bytes / 400) as i64,
                    _ => self.ms(5, 120),
                }
            } else {
                0
            };
            let status_at = at + xfer;
            let rcpt = &mut msg.rcpts[i];
            let status = match outcome {
                Outcome::Sent => "sent",
                Outcome::Deferred => "deferred",
                Outcome::Bounced => "bounced",
            };
            let mut body = String::with_capacity(160 + reply.text.len());
            let _ = write!(body, "{}: to=<{}>, ", msg.qid, rcpt.addr);
            if let Some(orig) = &rcpt.orig {
                let _ = write!(body, "orig_to=<{orig}>, ");
            }
            let _ = write!(
                body,
                "relay={relay}, delay={}, delays={}/{}/{}/{}, dsn={}, status={status} (",
                Delay(status_at - msg.created),
                Delay(round_start - msg.created),
                Delay(start - round_start),
                Delay(conn_setup),
                Delay(status_at - start - conn_setup),
                reply.dsn,
            );
            body.push_str(&std::mem::take(&mut reply.text));
            body.push(')');
            lines.push((status_at, body));

            let counts = self
                .truth
                .by_recipient_domain
                .entry(rcpt.domain().to_string())
                .or_default();
            match outcome {
                Outcome::Sent => {
                    counts.sent += 1;
                    self.truth.delivered += 1;
                    rcpt.done = true;
                }
                Outcome::Bounced => {
                    counts.bounced += 1;
                    self.truth.bounced += 1;
                    rcpt.done = true;
                    bounced = true;
                }
                Outcome::Deferred => {
                    counts.deferred += 1;
                    self.truth.deferred += 1;
                    if !msg.deferred_once {
                        msg.deferred_once = true;
                        self.truth.deferred_messages += 1;
                    }
                }
            }
            at = status_at + self.ms(0, 20);
        }
        lines.sort_by_key(|(at, _)| *at);
        let end = lines.last().map_or(start, |(at, _)| *at);
        self.job(instance, service, lines);
        (end, bounced)
    }

    /// bounce creates a non-delivery notification: a new message from `<>` to the sender.
    fn notify_sender(&mut self, t: i64, msg: &Msg) {
        let instance = msg.instance;
        let qid = self.new_qid(t);
        let body = format!(
            "{qid}: message-id=<{}.{qid}@{}>",
            compact_time(t),
            self.fqdn
        );
        self.note(t, instance, Service::Cleanup, body);
        let body = format!("{}: sender non-delivery notification: {qid}", msg.qid);
        self.note(t, instance, Service::Bounce, body);
        self.truth.notifications += 1;
        let rcpt = Rcpt {
            addr: msg.sender.clone(),
            orig: None,
            dest: msg.sender_dest,
            fate: Fate::Sent,
            done: false,
        };
        let ndr = Msg {
            message_id: format!("<{}.{qid}@{}>", compact_time(t), self.fqdn),
            qid,
            instance,
            sender: String::new(),
            sender_dest: Dest::Mailbox,
            size_bytes: self.rng.range(2_500, 9_000) + msg.size_bytes.min(4_000),
            rcpts: vec![rcpt],
            created: t,
            deferred_once: false,
        };
        let at = t + self.ms(1, 30);
        let idx = self.store(ndr);
        self.schedule(at, Task::Round(idx));
    }

    // ---------------------------------------------------------------- periodic and noise

    fn keep_ticking(&self) -> bool {
        self.arrivals_left > 0 || self.heap.len() > self.stats_tasks
    }

    fn anvil_stats(&mut self) {
        if !self.keep_ticking() {
            return;
        }
        let t = self.now;
        if !self.recent_ips.is_empty() {
            let ip = *self.rng.pick(&self.recent_ips);
            let at = bsd_time(t - self.ms(1000, 590_000));
            let rate = self.rng.range(1, 12);
            let body =
                format!("statistics: max connection rate {rate}/60s for (smtp:{ip}) at {at}");
            self.note(t, Instance::Main, Service::Anvil, body);
            let ip = *self.rng.pick(&self.recent_ips);
            let at = bsd_time(t - self.ms(1000, 590_000));
            let count = self.rng.range(1, 4);
            let body = format!("statistics: max connection count {count} for (smtp:{ip}) at {at}");
            self.note(t, Instance::Main, Service::Anvil, body);
            let at = bsd_time(t - self.ms(1000, 590_000));
            let size = self.rng.range(2, 30);
            let body = format!("statistics: max cache size {size} at {at}");
            self.note(t, Instance::Main, Service::Anvil, body);
        }
        self.stats_tasks += 1;
        self.schedule(t + STATS_INTERVAL, Task::AnvilStats);
    }

    fn scache_stats(&mut self) {
        if !self.keep_ticking() {
            return;
        }
        let t = self.now;
        let start = bsd_time(t - STATS_INTERVAL);
        self.note(
            t,
            Instance::Main,
            Service::Scache,
            format!("statistics: start interval {start}"),
        );
        let (hits, miss) = (self.rng.range(0, 400), self.rng.range(20, 900));
        let body = format!(
            "statistics: domain lookup hits={hits} miss={miss} success={}%",
            hits * 100 / (hits + miss)
        );
        self.note(t, Instance::Main, Service::Scache, body);
        let (hits, miss) = (self.rng.range(0, 50), self.rng.range(20, 900));
        let body = format!(
            "statistics: address lookup hits={hits} miss={miss} success={}%",
            hits * 100 / (hits + miss)
        );
        self.note(t, Instance::Main, Service::Scache, body);
        let body = format!(
            "statistics: max simultaneous domains={} addresses={} connection={}",
            self.rng.range(1, 8),
            self.rng.range(1, 10),
            self.rng.range(1, 12)
        );
        self.note(t, Instance::Main, Service::Scache, body);
        self.stats_tasks += 1;
        self.schedule(t + STATS_INTERVAL, Task::ScacheStats);
    }

    fn standalone_warning(&mut self, t: i64) {
        let (instance, service, body) = match self.rng.below(5) {
            0 => (
                Instance::Main,
                Service::Smtp,
                "warning: TLS library problem: error:0A000126:SSL routines::unexpected eof while reading:../ssl/record/rec_layer_s3.c:322:".to_string(),
            ),
            1 => (
                Instance::Main,
                Service::Cleanup,
                "warning: milter unix:/run/opendkim/opendkim.sock: can't read SMFIC_OPTNEG reply packet header: Connection reset by peer".to_string(),
            ),
            2 => (
                Instance::Main,
                Service::Postscreen,
                "warning: getpeername: Transport endpoint is not connected -- dropping this connection".to_string(),
            ),
            3 => {
                let [a, b, c, d] = world::public_ip(&mut self.rng).octets();
                let name = format!("{d}.{c}.{b}.{a}.zen.spamhaus.org");
                (
                    Instance::Main,
                    Service::Dnsblog,
                    format!(
                        "warning: dnsblog_query: lookup error for DNS query {name}: Host or domain name not found. Name service error for name={name} type=A: Host not found, try again"
                    ),
                )
            }
            _ => {
                let d = self.world.recipient_domain(&mut self.rng);
                (
                    Instance::Out,
                    Service::Smtp,
                    format!(
                        "warning: no MX host for {} has a valid address record",
                        self.world.domains[d].name
                    ),
                )
            }
        };
        self.truth.warnings += 1;
        self.note(t, instance, service, body);
    }
}

/// Draws a reply that comes from an established SMTP session (the group already connected):
/// connection-level texts are redrawn (bounded; they are a small minority).
fn connected_reply(rng: &mut Rng, mut draw: impl FnMut(&mut Rng) -> (Reply, bool)) -> Reply {
    let mut reply = draw(rng);
    for _ in 0..16 {
        if reply.1 {
            break;
        }
        reply = draw(rng);
    }
    reply.0
}

fn lmtp_reply(rng: &mut Rng, relay: &str, rcpt: &str, outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Sent => Reply {
            dsn: "2.0.0",
            text: format!("250 2.0.0 <{rcpt}> {} Saved", world::base64ish(rng, 22)),
        },
        Outcome::Deferred => Reply {
            dsn: "4.2.2",
            text: format!(
                "host {relay} said: 452 4.2.2 <{rcpt}> Quota exceeded (mailbox for user is full) (in reply to end of DATA command)"
            ),
        },
        Outcome::Bounced if rng.chance(0.5) => Reply {
            dsn: "5.2.2",
            text: format!(
                "host {relay} said: 552 5.2.2 <{rcpt}> Quota exceeded (mailbox for user is full) (in reply to end of DATA command)"
            ),
        },
        Outcome::Bounced => Reply {
            dsn: "5.1.1",
            text: format!(
                "host {relay} said: 550 5.1.1 <{rcpt}> User doesn't exist: {rcpt} (in reply to RCPT TO command)"
            ),
        },
    }
}

fn virtual_reply(rcpt: &str, outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Sent => Reply {
            dsn: "2.0.0",
            text: "delivered to maildir".to_string(),
        },
        Outcome::Deferred => {
            let (user, domain) = rcpt.split_once('@').unwrap_or((rcpt, ""));
            Reply {
                dsn: "4.2.0",
                text: format!(
                    "maildir delivery failed: create maildir file /var/mail/vhosts/{domain}/{user}/tmp: Disk quota exceeded"
                ),
            }
        }
        Outcome::Bounced => Reply {
            dsn: "5.1.1",
            text: format!("unknown user: \"{rcpt}\""),
        },
    }
}

fn mailbox_reply(rng: &mut Rng, rcpt: &str, outcome: Outcome) -> Reply {
    let user = rcpt.split_once('@').map_or(rcpt, |(u, _)| u);
    match outcome {
        Outcome::Sent if rng.chance(0.8) => Reply {
            dsn: "2.0.0",
            text: "delivered to mailbox".to_string(),
        },
        Outcome::Sent => Reply {
            dsn: "2.0.0",
            text: "delivered to command: /usr/bin/procmail".to_string(),
        },
        Outcome::Deferred => Reply {
            dsn: "4.2.0",
            text: format!(
                "cannot update mailbox /var/mail/{user} for user {user}. unable to lock for exclusive access: Resource temporarily unavailable"
            ),
        },
        Outcome::Bounced => Reply {
            dsn: "5.1.1",
            text: format!("unknown user: \"{user}\""),
        },
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
