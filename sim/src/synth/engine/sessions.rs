//! Arrivals and the sessions other than port 25: the arrival clock (with the noise sessions
//! around each message and those the hooks add), authenticated submission and SASL password
//! guessing, applications relaying through `postfix-out`, and local mail through pickup. A
//! session's lines are computed when it starts; the messages it hands to cleanup continue in
//! [`super::messages`]; port 25 is [`super::inbound`].

use super::model::{Dest, Instance, Plan, Rcpt, Service, Task};
use super::{Engine, SECOND, compact_time};
use crate::synth::hooks::{ExtraSession, InboundEnding};
use crate::synth::world::{self, Client};

impl Engine {
    /// The next accepted message arrives, with the noise sessions (rejects, postscreen drops,
    /// lost connections, SASL failures, warnings) that fall before the one after it.
    pub(super) fn arrival(&mut self) {
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

    /// A client without reverse DNS and with a made-up HELO, as spam bots and scanners look.
    pub(super) fn unknown_client(&mut self) -> Client {
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

    /// A mail client of a local user on a home or office line (submission).
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
        let host = if self.rng.chance(self.profile.submission_client_without_ptr) {
            "unknown".to_string()
        } else {
            format!("{a}-{b}-{c}-{d}.{isp}")
        };
        Client {
            helo: if self.rng.chance(self.profile.submission_helo_literal) {
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

    /// smtpd's `Anonymous TLS connection established from …` line for `client`.
    pub(super) fn inbound_tls_line(&mut self, client: &Client) -> String {
        let (proto, cipher, extra) = if self.rng.chance(self.profile.inbound_tls13_share) {
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
                    let rcpt = if self.rng.chance(self.profile.submission_local_rcpt) {
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
        let method = if self.rng.chance(self.profile.submission_sasl_plain) {
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
        let (method, reason) = if self.rng.chance(self.profile.auth_failure_sasl_login) {
            ("LOGIN", "UGFzc3dvcmQ6")
        } else {
            ("PLAIN", "authentication failure")
        };
        let user = match forced_user {
            Some(Some(name)) => format!(", sasl_username={name}"),
            Some(None) => String::new(),
            None if self.rng.chance(self.profile.auth_failure_names_user) => {
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
        if self.rng.chance(self.profile.auth_failure_drops_connection) {
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
        let n = if self.rng.chance(self.profile.app_relay_single_rcpt) {
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
        let rcpt = if self.rng.chance(self.profile.pickup_to_root) {
            Rcpt {
                addr: format!("root@{}", self.fqdn),
                orig: Some("root".to_string()),
                dest: Dest::Mailbox,
                fate: self.fate(Dest::Mailbox),
                done: false,
                delay_reason: None,
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
}
