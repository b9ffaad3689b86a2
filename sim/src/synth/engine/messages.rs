//! Messages entering the queue: envelope senders and Message-IDs as real senders write them,
//! recipients with their next hop and their fate (decided up front, so a run is reproducible),
//! and cleanup's acceptance (or header-check hold/discard) before qmgr takes over.

use super::Engine;
use super::model::{Dest, Fate, Instance, Msg, Rcpt, Service, Task, Then};
use crate::synth::world::{self, Client, Health, Provider};

impl Engine {
    /// A message arriving on port 25 from `sender_domain` to `n` local recipients, with the
    /// sender and Message-ID formats of its provider (Gmail, Outlook, bulk senders).
    pub(super) fn inbound_message(&mut self, t: i64, sender_domain: usize, n: usize) -> Msg {
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
            _ if self.rng.chance(self.profile.inbound_bulk_sender) => {
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

    /// A new message with a queue id and a drawn size; counts it as received.
    pub(super) fn new_msg(
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

    /// Where mail to `addr` is delivered: LMTP or `virtual` by local domain, a Unix mailbox
    /// otherwise.
    pub(super) fn local_dest(&self, addr: &str) -> Dest {
        let domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
        match self.cfg.local_domains.iter().position(|d| d == domain) {
            Some(i) if i % 2 == 1 => Dest::Virtual,
            Some(_) => Dest::Lmtp,
            None => Dest::Mailbox,
        }
    }

    /// A recipient among the local mailboxes.
    pub(super) fn local_rcpt(&mut self) -> Rcpt {
        let addr = self.rng.pick(&self.users).clone();
        let dest = self.local_dest(&addr);
        Rcpt {
            addr,
            orig: None,
            dest,
            fate: self.fate(dest),
            done: false,
            delay_reason: None,
        }
    }

    /// A recipient at a remote domain drawn by popularity.
    pub(super) fn remote_rcpt(&mut self) -> Rcpt {
        let d = self.world.recipient_domain(&mut self.rng);
        self.remote_rcpt_at(d)
    }

    /// A recipient at domain `d` of the world table.
    pub(super) fn remote_rcpt_at(&mut self, d: usize) -> Rcpt {
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
            delay_reason: None,
        }
    }

    /// How delivery to `dest` will go: the configured failure rates scaled per destination
    /// (dead and non-existent domains fail every time).
    pub(super) fn fate(&mut self, dest: Dest) -> Fate {
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
            Dest::Lmtp | Dest::Virtual => (
                self.profile.mailstore_defer_factor,
                self.profile.mailstore_bounce_factor,
            ),
            Dest::Mailbox => (
                self.profile.unix_mailbox_defer_factor,
                self.profile.unix_mailbox_bounce_factor,
            ),
            // Our own main instance always takes a notification back.
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
        } else if r < never + self.profile.deferred_then_bounced {
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
    pub(super) fn accept(&mut self, msg: Msg, t: i64, client: Option<&Client>) {
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

    /// Puts `msg` in the queue (a free slot of `msgs`) and counts its load; returns its slot.
    pub(super) fn store(&mut self, msg: Msg) -> usize {
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
}
