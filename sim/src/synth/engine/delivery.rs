//! qmgr's delivery rounds: each round groups a message's pending recipients by next hop, runs
//! one delivery-agent job per group (smtp to remote MX hosts, lmtp to Dovecot, `virtual`,
//! `local`, or `postfix-out` back to the main instance), writes the `status=` lines, and then
//! retries, expires or removes the message. Bounces and expiries produce a notification.

use std::fmt::Write as _;
use std::sync::Arc;

use mailpulse_agent::classify::classify;

use super::model::{Dest, Fate, Instance, Msg, Outcome, Rcpt, Service, Task};
use super::{Engine, MAXIMAL_BACKOFF, MINIMAL_BACKOFF, SECOND, compact_time};
use crate::synth::format::{Delay, Ip};
use crate::synth::hooks::{Delivery, Forced, RemoteAttempt};
use crate::synth::profile::TrafficProfile;
use crate::synth::rng::Rng;
use crate::synth::world::{self, Domain, Health, Mx, Reply, ReplyContext};

impl Engine {
    /// qmgr moves the message to the active queue and delivers every pending recipient once.
    pub(super) fn round(&mut self, idx: usize) {
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
        let mut lines: Vec<(i64, String)> = Vec::with_capacity(members.len() + 2);
        let mut attempt = match dest {
            Dest::Remote(d) => self.smtp_attempt(msg, start, d, members, &mut lines),
            Dest::Lmtp => self.lmtp_attempt(msg, members),
            Dest::Virtual => virtual_attempt(msg, members),
            Dest::Mailbox => self.mailbox_attempt(msg, members),
            Dest::Hub => self.hub_attempt(msg, members),
        };
        let bounced = self.log_statuses(msg, round_start, start, members, &mut attempt, &mut lines);
        lines.sort_by_key(|(at, _)| *at);
        let end = lines.last().map_or(start, |(at, _)| *at);
        self.job(msg.instance, attempt.service, lines);
        (end, bounced)
    }

    /// SMTP to domain `d`: the MX is chosen, the hooks may force outcomes, then either the
    /// connection fails for the whole group or the server answers each recipient. Connection
    /// lines (a timed-out backup MX, the TLS handshake) go to `lines`.
    fn smtp_attempt(
        &mut self,
        msg: &mut Msg,
        start: i64,
        d: usize,
        members: &[usize],
        lines: &mut Vec<(i64, String)>,
    ) -> Attempt {
        let world = Arc::clone(&self.world);
        let domain = &world.domains[d];
        let our_ip = if msg.instance == Instance::Out {
            self.out_ip
        } else {
            self.main_ip
        };
        // The MX is chosen before the outcomes (which draw no random numbers) so that the hooks
        // see it; the order of random draws is the same as without hooks.
        let mx_idx =
            usize::from(domain.mx.len() > 1 && self.rng.chance(self.profile.second_mx_tried));
        let fallback_mx = Mx {
            host: domain.name.clone(),
            ip: Ip(0),
        };
        let mx = domain.mx.get(mx_idx).unwrap_or(&fallback_mx);
        let forced = self.hook_verdicts(msg, start, domain, mx, our_ip, members);
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
        let msg = &*msg;
        let mut job = SmtpJob {
            domain,
            mx_idx,
            cx: ReplyContext {
                rcpt: "",
                our_ip,
                unix_secs: start / SECOND,
                size_bytes: msg.size_bytes,
                message_id: msg.message_id.trim_matches(['<', '>']),
                mx,
            },
            forced,
            start,
        };
        let first_rcpt = msg.rcpts[members[0]].addr.as_str();
        let (relay, conn_setup, replies) =
            match self.group_failure(&job, unreachable, &outcomes, first_rcpt) {
                Some(reply) => self.unconnected(&job, reply, members.len(), lines),
                None => self.smtp_session(&mut job, msg, members, &outcomes, lines),
            };
        Attempt {
            service: Service::Smtp,
            relay,
            conn_setup,
            outcomes,
            replies,
        }
    }

    /// What the hooks force for each member of an SMTP job (empty without hooks).
    fn hook_verdicts(
        &mut self,
        msg: &Msg,
        start: i64,
        domain: &Domain,
        mx: &Mx,
        our_ip: Ip,
        members: &[usize],
    ) -> Vec<Option<Forced>> {
        let Some(hooks) = self.hooks.as_mut() else {
            return Vec::new();
        };
        members
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
            .collect()
    }

    /// A connection-level failure that ends the whole job with one reply (`relay=none`): the
    /// hooks' unreachable server, a domain that does not exist, or, when every recipient is to
    /// be deferred, a connection failure among the domain's deferral replies.
    fn group_failure(
        &mut self,
        job: &SmtpJob<'_>,
        unreachable: Option<Reply>,
        outcomes: &[Outcome],
        first_rcpt: &str,
    ) -> Option<Reply> {
        if unreachable.is_some() {
            return unreachable;
        }
        if job.any_forced() {
            return None;
        }
        let cx = ReplyContext {
            rcpt: first_rcpt,
            ..job.cx
        };
        if job.domain.health == Health::NxDomain {
            Some(world::bounce_reply(&mut self.rng, job.domain, &cx).0)
        } else if outcomes.iter().all(|o| *o == Outcome::Deferred) {
            match world::defer_reply(&mut self.rng, job.domain, &cx) {
                (reply, false) => Some(reply),
                _ => None,
            }
        } else {
            None
        }
    }

    /// No SMTP session: a connection timeout (after the backup MX timed out too, when there is
    /// one) or a quick failure. Returns relay `none`, the setup time and `reply` for all `n`
    /// members.
    fn unconnected(
        &mut self,
        job: &SmtpJob<'_>,
        reply: Reply,
        n: usize,
        lines: &mut Vec<(i64, String)>,
    ) -> (String, i64, Vec<Reply>) {
        let domain = job.domain;
        let timeout = reply.text.contains("timed out");
        // A forced failure names its MX itself; the backup MX is not tried.
        if timeout && !job.any_forced() && domain.mx.len() > 1 && job.mx_idx == 0 {
            let other = &domain.mx[1];
            lines.push((
                job.start + 30 * SECOND,
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
        ("none".to_string(), setup, vec![reply; n])
    }

    /// An SMTP session with the MX: each member's reply, then the TLS handshake or a cached
    /// connection. Returns the relay, the setup time and the replies.
    fn smtp_session(
        &mut self,
        job: &mut SmtpJob<'_>,
        msg: &Msg,
        members: &[usize],
        outcomes: &[Outcome],
        lines: &mut Vec<(i64, String)>,
    ) -> (String, i64, Vec<Reply>) {
        let replies = self.connected_replies(job, msg, members, outcomes);
        let setup = self.ms(30, 700);
        let mx = job.cx.mx;
        let reused = self.rng.chance(self.profile.cached_connection_reused);
        if let (false, Some(trust)) = (reused, job.domain.tls) {
            let cipher = if self.rng.chance(self.profile.outbound_tls13_share) {
                "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256"
            } else {
                "TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits)"
            };
            lines.push((
                job.start + setup,
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
    }

    /// Each member's reply from a connected server: the one the hooks force, else one drawn for
    /// its outcome (connection-level texts are redrawn).
    fn connected_replies(
        &mut self,
        job: &mut SmtpJob<'_>,
        msg: &Msg,
        members: &[usize],
        outcomes: &[Outcome],
    ) -> Vec<Reply> {
        let domain = job.domain;
        members
            .iter()
            .zip(outcomes)
            .enumerate()
            .map(|(k, (&i, outcome))| {
                if let Some(Some(Forced::Defer(reply) | Forced::Bounce(reply))) =
                    job.forced.get_mut(k).map(Option::take)
                {
                    return reply;
                }
                let cx = ReplyContext {
                    rcpt: msg.rcpts[i].addr.as_str(),
                    ..job.cx
                };
                match outcome {
                    Outcome::Sent => world::sent_reply(&mut self.rng, domain.provider, &cx),
                    Outcome::Deferred => {
                        connected_reply(&mut self.rng, |rng| world::defer_reply(rng, domain, &cx))
                    }
                    Outcome::Bounced => {
                        connected_reply(&mut self.rng, |rng| world::bounce_reply(rng, domain, &cx))
                    }
                }
            })
            .collect()
    }

    /// LMTP to Dovecot: recipients of a message go in one transaction.
    fn lmtp_attempt(&mut self, msg: &mut Msg, members: &[usize]) -> Attempt {
        let outcomes = attempt_fates(msg, members);
        let relay = format!("{}[private/dovecot-lmtp]", self.fqdn);
        let replies = members
            .iter()
            .zip(&outcomes)
            .map(|(&i, o)| lmtp_reply(&mut self.rng, &self.profile, &relay, &msg.rcpts[i].addr, *o))
            .collect();
        Attempt {
            service: Service::Lmtp,
            relay,
            conn_setup: self.ms(0, 5),
            outcomes,
            replies,
        }
    }

    /// `local` delivery to a Unix mailbox.
    fn mailbox_attempt(&mut self, msg: &mut Msg, members: &[usize]) -> Attempt {
        let outcomes = attempt_fates(msg, members);
        let replies = members
            .iter()
            .zip(&outcomes)
            .map(|(&i, o)| mailbox_reply(&mut self.rng, &self.profile, &msg.rcpts[i].addr, *o))
            .collect();
        Attempt {
            service: Service::Local,
            relay: "local".to_string(),
            conn_setup: 0,
            outcomes,
            replies,
        }
    }

    /// `postfix-out` hands a notification back to the main instance over SMTP.
    fn hub_attempt(&mut self, msg: &mut Msg, members: &[usize]) -> Attempt {
        let outcomes = attempt_fates(msg, members);
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
        Attempt {
            service: Service::Smtp,
            relay,
            conn_setup: self.ms(1, 10),
            outcomes,
            replies,
        }
    }

    /// Writes the job's `status=` line for each member and counts it. Returns whether a
    /// recipient bounced.
    fn log_statuses(
        &mut self,
        msg: &mut Msg,
        round_start: i64,
        start: i64,
        members: &[usize],
        attempt: &mut Attempt,
        lines: &mut Vec<(i64, String)>,
    ) -> bool {
        let (relay, conn_setup) = (attempt.relay.as_str(), attempt.conn_setup);
        let mut at = start + conn_setup;
        let mut bounced = false;
        let connected = relay != "none";
        let outcomes = attempt.outcomes.iter();
        for ((&i, outcome), reply) in members.iter().zip(outcomes).zip(&mut attempt.replies) {
            // smtp moves the message over the network; the mailbox agents write it locally.
            let xfer = match (connected, attempt.service) {
                (false, _) => 0,
                (true, Service::Smtp) => self.ms(60, 900) + (msg.size_bytes / 400) as i64,
                (true, _) => self.ms(5, 120),
            };
            let status_at = at + xfer;
            let rcpt = &msg.rcpts[i];
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
            match outcome {
                // What `postqueue -j` would show as the recipient's `delay_reason`, classified
                // as the agent's queue snapshot classifies it.
                Outcome::Deferred => {
                    let class = classify(None, &reply.text);
                    msg.rcpts[i].delay_reason = Some((class, Box::from(reply.text.as_str())));
                }
                Outcome::Sent => self.record_delivery(msg, i, status_at),
                Outcome::Bounced => {}
            }
            body.push_str(&std::mem::take(&mut reply.text));
            body.push(')');
            lines.push((status_at, body));
            bounced |= self.count_status(msg, i, *outcome);
            at = status_at + self.ms(0, 20);
        }
        bounced
    }

    /// Keeps a remote delivery of recipient `i` for [`Engine::take_deliveries`] when they are
    /// recorded.
    fn record_delivery(&mut self, msg: &Msg, i: usize, at: i64) {
        let Some(deliveries) = self.deliveries.as_mut() else {
            return;
        };
        let rcpt = &msg.rcpts[i];
        if !matches!(rcpt.dest, Dest::Remote(_)) {
            return;
        }
        deliveries.push(Delivery {
            at,
            queued_at: msg.created,
            outbound_instance: msg.instance == Instance::Out,
            sender: msg.sender.clone(),
            rcpt: rcpt.addr.clone(),
            message_id: msg.message_id.clone(),
        });
    }

    /// Counts one status line and marks the recipient done, or the message as deferred once.
    /// Returns whether the recipient bounced.
    fn count_status(&mut self, msg: &mut Msg, i: usize, outcome: Outcome) -> bool {
        let rcpt = &mut msg.rcpts[i];
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
                false
            }
            Outcome::Bounced => {
                counts.bounced += 1;
                self.truth.bounced += 1;
                rcpt.done = true;
                true
            }
            Outcome::Deferred => {
                counts.deferred += 1;
                self.truth.deferred += 1;
                if !msg.deferred_once {
                    msg.deferred_once = true;
                    self.truth.deferred_messages += 1;
                }
                false
            }
        }
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
            delay_reason: None,
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

/// How one delivery-agent job went, before its status lines are written.
#[derive(Debug)]
struct Attempt {
    /// The delivery agent that ran the job.
    service: Service,
    /// The `relay=` field; `none` when no connection was made.
    relay: String,
    /// Connection setup time (the third `delays=` figure), in microseconds.
    conn_setup: i64,
    /// Per member of the job: this attempt's outcome.
    outcomes: Vec<Outcome>,
    /// Per member of the job: the reply logged in parentheses.
    replies: Vec<Reply>,
}

/// An SMTP delivery job being worked out: where it goes and what the hooks force.
#[derive(Debug)]
struct SmtpJob<'a> {
    /// The recipients' domain.
    domain: &'a Domain,
    /// Index in `domain.mx` of the MX tried (0 = the preferred one).
    mx_idx: usize,
    /// Reply context shared by the members (`rcpt` is set per recipient); it names the MX.
    cx: ReplyContext<'a>,
    /// Per member: the outcome the hooks force, if any (empty without hooks).
    forced: Vec<Option<Forced>>,
    /// When the job starts (Unix microseconds).
    start: i64,
}

impl SmtpJob<'_> {
    /// The hooks force the outcome of at least one member.
    fn any_forced(&self) -> bool {
        self.forced.iter().any(Option::is_some)
    }
}

/// This attempt's outcome for each member, from its fate.
fn attempt_fates(msg: &mut Msg, members: &[usize]) -> Vec<Outcome> {
    members
        .iter()
        .map(|&i| msg.rcpts[i].fate.attempt())
        .collect()
}

/// `virtual` delivery into the maildirs of a virtual mailbox domain.
fn virtual_attempt(msg: &mut Msg, members: &[usize]) -> Attempt {
    let outcomes = attempt_fates(msg, members);
    let replies = members
        .iter()
        .zip(&outcomes)
        .map(|(&i, o)| virtual_reply(&msg.rcpts[i].addr, *o))
        .collect();
    Attempt {
        service: Service::Virtual,
        relay: "virtual".to_string(),
        conn_setup: 0,
        outcomes,
        replies,
    }
}

/// Dovecot's LMTP reply for `rcpt` (over quota or unknown user when it fails).
fn lmtp_reply(
    rng: &mut Rng,
    profile: &TrafficProfile,
    relay: &str,
    rcpt: &str,
    outcome: Outcome,
) -> Reply {
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
        Outcome::Bounced if rng.chance(profile.lmtp_bounce_over_quota) => Reply {
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

/// The `virtual` agent's status text for `rcpt` (maildir quota when it fails).
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

/// The `local` agent's status text for `rcpt` (a locked mailbox when it fails).
fn mailbox_reply(rng: &mut Rng, profile: &TrafficProfile, rcpt: &str, outcome: Outcome) -> Reply {
    let user = rcpt.split_once('@').map_or(rcpt, |(u, _)| u);
    match outcome {
        Outcome::Sent if rng.chance(profile.local_delivery_to_mailbox) => Reply {
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
