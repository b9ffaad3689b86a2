//! The engine's internal types: Postfix instances and daemons with their process ids,
//! queued messages and their recipients' fates, and the timed tasks of the event loop.

use std::cmp::Ordering;

use mailpulse_agent::classify::ReasonClass;

use crate::synth::rng::Rng;

/// A Postfix instance (its `syslog_name` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Instance {
    /// The MX and submission instance (`postfix/…`).
    Main,
    /// The application relay instance (`postfix-out/…`).
    Out,
}

/// A Postfix daemon; with the instance it gives the program name and the process pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
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

/// Number of [`Service`] variants: the size of one instance's block of pid pools.
const SERVICES: usize = 14;

impl Service {
    /// The syslog program name of this daemon in `instance` (`postfix-out/smtp`).
    pub(super) fn program(self, instance: Instance) -> &'static str {
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
    pub(super) fn is_singleton(self) -> bool {
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

/// Process ids of every daemon of both instances, drawn from one increasing counter as the
/// kernel hands them out.
#[derive(Debug, Clone)]
pub(super) struct Pids {
    /// The last pid handed out.
    next: u32,
    /// One pool per (instance, service), indexed `instance * SERVICES + service`.
    pools: Vec<PidPool>,
}

impl Pids {
    /// Empty pools; the first pid is drawn as if the host had been up for a while.
    pub(super) fn new(rng: &mut Rng) -> Self {
        Self {
            next: rng.range(900, 30_000) as u32,
            pools: vec![PidPool::default(); 2 * SERVICES],
        }
    }

    /// A pid no process of ours holds: a small random step up, wrapping like `pid_max`.
    fn fresh(&mut self, rng: &mut Rng) -> u32 {
        self.next += rng.range(1, 60) as u32;
        if self.next > 4_000_000 {
            self.next = 300 + rng.below(1000) as u32;
        }
        self.next
    }

    /// A pid of `service` that is idle at `start`, reserved until `end`.
    pub(super) fn acquire(
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
pub(super) enum Dest {
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

/// How a deferred recipient ends once its retries are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    /// Delivered on the next attempt.
    Sent,
    /// Rejected permanently on the next attempt.
    Bounce,
    /// Deferred until the message expires.
    Never,
}

/// Decided when the message is created, so a run is reproducible whatever the interleaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Delivered on the first attempt.
    Sent,
    /// Rejected permanently on the first attempt.
    Bounce,
    /// Deferred `retries` times, then ends as `then` says.
    Defer {
        /// Deferred attempts still to come.
        retries: u8,
        /// What the attempt after the last deferral gives.
        then: Then,
    },
}

/// The result of one delivery attempt of one recipient (its `status=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `status=sent`.
    Sent,
    /// `status=deferred`.
    Deferred,
    /// `status=bounced`.
    Bounced,
}

impl Fate {
    /// The outcome of the next delivery attempt; uses up one retry of a deferral.
    pub(super) fn attempt(&mut self) -> Outcome {
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

/// One recipient of a queued message.
#[derive(Debug, Clone)]
pub(super) struct Rcpt {
    /// The address delivered to (`to=`).
    pub(super) addr: String,
    /// The address before alias expansion (`orig_to=`), if it differs.
    pub(super) orig: Option<String>,
    /// Where it is delivered.
    pub(super) dest: Dest,
    /// How its delivery attempts go.
    pub(super) fate: Fate,
    /// Delivered or bounced: no further attempts.
    pub(super) done: bool,
    /// The reply of its last deferral (what `postqueue -j` shows as its `delay_reason`) with
    /// its class as the agent classifies it; `None` before any deferral.
    pub(super) delay_reason: Option<(ReasonClass, Box<str>)>,
}

impl Rcpt {
    /// The domain of [`Rcpt::addr`] (empty for a bare local part).
    pub(super) fn domain(&self) -> &str {
        self.addr.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// A message in an instance's queue, from cleanup until qmgr removes it.
#[derive(Debug, Clone)]
pub(super) struct Msg {
    /// Its queue id.
    pub(super) qid: String,
    /// The instance whose queue holds it.
    pub(super) instance: Instance,
    /// Envelope sender (empty for a notification's null sender).
    pub(super) sender: String,
    /// Where a notification to the sender is delivered.
    pub(super) sender_dest: Dest,
    /// Size as qmgr logs it (`size=`).
    pub(super) size_bytes: u64,
    /// The `Message-ID` header, angle brackets included.
    pub(super) message_id: String,
    /// Every recipient, delivered ones included.
    pub(super) rcpts: Vec<Rcpt>,
    /// When cleanup took it (Unix microseconds); delays and expiry count from here.
    pub(super) created: i64,
    /// At least one delivery attempt was deferred.
    pub(super) deferred_once: bool,
}

/// Something the event loop does at a given time.
#[derive(Debug)]
pub(super) enum Task {
    /// Write one log line.
    Line {
        /// Syslog program name (`postfix/smtpd`).
        program: &'static str,
        /// Process id of the daemon writing it.
        pid: u32,
        /// The text after `program[pid]: `.
        body: String,
    },
    /// The next accepted message arrives (with the noise sessions around it).
    Arrival,
    /// qmgr's next delivery round of the queued message at this index.
    Round(usize),
    /// anvil's periodic statistics.
    AnvilStats,
    /// scache's periodic statistics.
    ScacheStats,
}

/// A [`Task`] in the event heap.
#[derive(Debug)]
pub(super) struct Entry {
    /// When it runs (Unix microseconds).
    pub(super) at: i64,
    /// Scheduling order, which breaks ties between equal times deterministically.
    pub(super) seq: u64,
    /// What runs.
    pub(super) task: Task,
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
pub(super) enum Plan {
    /// One or two messages are accepted.
    Message,
    /// Recipients are rejected (`NOQUEUE: reject: RCPT`).
    Reject,
    /// The connection is lost or times out.
    Lost,
    /// postscreen drops the client before smtpd sees it.
    PostscreenDrop,
}
