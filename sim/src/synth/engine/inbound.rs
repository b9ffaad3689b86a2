//! Port-25 connections: postscreen screens the client (and drops some), then smtpd accepts
//! one or two messages, rejects the recipients, or loses the connection. A session's lines are
//! computed when it starts; accepted messages continue in [`super::messages`].

use super::model::{Instance, Plan, Service};
use super::{Engine, SECOND};
use crate::synth::world::{self, Client};

impl Engine {
    /// A port-25 connection through postscreen to smtpd, from `client` or a drawn one.
    pub(super) fn inbound_session(&mut self, t0: i64, plan: Plan, client: Option<Client>) {
        let sender_domain = self.world.sender_domain(&mut self.rng);
        let client = match client {
            Some(client) => client,
            None if plan == Plan::Message
                && self.rng.chance(self.profile.inbound_from_sender_servers) =>
            {
                self.world.inbound_client(&mut self.rng, sender_domain)
            }
            None => self.unknown_client(),
        };
        self.remember(client.ip);
        self.note(
            t0,
            Instance::Main,
            Service::Postscreen,
            format!(
                "CONNECT from [{}]:{} to [{}]:25",
                client.ip, client.port, self.main_ip
            ),
        );
        if plan == Plan::PostscreenDrop {
            self.postscreen_drop(t0, &client);
            return;
        }
        let t = self.postscreen_pass(t0, &client);
        let mut session = self.smtpd_connect(t, &client);
        // Drawn before STARTTLS because how far a lost session got decides whether it had TLS.
        let lost_kind = self.rng.below(5);
        self.smtpd_starttls(&mut session, plan, lost_kind);
        match plan {
            Plan::Message => self.smtpd_messages(&mut session, sender_domain),
            Plan::Reject => self.smtpd_rejects(&mut session),
            Plan::Lost => self.smtpd_lost(&mut session, lost_kind),
            Plan::PostscreenDrop => unreachable!("handled above"),
        }
        self.job(Instance::Main, Service::Smtpd, session.lines);
    }

    /// postscreen lets the client through: at once if it knows the client (`PASS OLD`), after
    /// its after-greeting tests otherwise (`PASS NEW`). Returns when smtpd takes over.
    fn postscreen_pass(&mut self, mut t: i64, client: &Client) -> i64 {
        if self.rng.chance(self.profile.postscreen_pass_old) {
            t += self.ms(0, 3);
            let body = format!("PASS OLD [{}]:{}", client.ip, client.port);
            self.note(t, Instance::Main, Service::Postscreen, body);
        } else {
            t += self.ms(6000, 6400);
            let body = format!("PASS NEW [{}]:{}", client.ip, client.port);
            self.note(t, Instance::Main, Service::Postscreen, body);
        }
        t + self.ms(1, 8)
    }

    /// smtpd's `connect from`, after a reverse-DNS warning for some `unknown` clients.
    fn smtpd_connect<'a>(&mut self, t: i64, client: &'a Client) -> SmtpdSession<'a> {
        let mut lines = Vec::new();
        let ep = format!("{}[{}]", client.host, client.ip);
        if client.host == "unknown" && self.rng.chance(self.profile.unknown_client_has_ptr) {
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
        SmtpdSession {
            client,
            ep,
            t,
            ehlo: "ehlo=1",
            ehlo_cmds: 1,
            lines,
        }
    }

    /// Whether the client upgrades with STARTTLS (its odds depend on the client and on how the
    /// session ends) and, if so, smtpd's TLS line.
    fn smtpd_starttls(&mut self, s: &mut SmtpdSession<'_>, plan: Plan, lost_kind: u64) {
        let tls = match plan {
            Plan::Lost => lost_kind >= 2 && self.rng.chance(self.profile.lost_session_tls),
            _ if s.client.host == "unknown" => self.rng.chance(self.profile.unknown_client_tls),
            _ => self.rng.chance(self.profile.inbound_tls_share),
        };
        if tls {
            s.t += self.ms(60, 400);
            let body = self.inbound_tls_line(s.client);
            s.lines.push((s.t, body));
            s.ehlo = "ehlo=2 starttls=1";
            s.ehlo_cmds = 3;
        }
    }

    /// The client sends a message (now and then a second one) and quits.
    fn smtpd_messages(&mut self, s: &mut SmtpdSession<'_>, sender_domain: usize) {
        let (ep, ehlo, ehlo_cmds) = (s.ep.as_str(), s.ehlo, s.ehlo_cmds);
        let n_msgs =
            if self.arrivals_left > 0 && self.rng.chance(self.profile.second_message_in_session) {
                self.arrivals_left -= 1;
                2
            } else {
                1
            };
        let mut rcpt_total = 0;
        for _ in 0..n_msgs {
            s.t += self.ms(80, 700);
            let n = if self.rng.chance(self.profile.inbound_single_rcpt) {
                1
            } else {
                self.rng.range(2, 4) as usize
            };
            rcpt_total += n;
            let msg = self.inbound_message(s.t, sender_domain, n);
            s.lines.push((s.t, format!("{}: client={ep}", msg.qid)));
            self.truth.received_smtpd += 1;
            s.t += self.ms(30, 300) + (msg.size_bytes / 2_000) as i64 * 1000;
            self.accept(msg, s.t, Some(s.client));
        }
        s.t += self.ms(5, 150);
        s.lines.push((
            s.t,
            format!(
                "disconnect from {ep} {ehlo} mail={n_msgs} rcpt={rcpt_total} data={n_msgs} quit=1 commands={}",
                ehlo_cmds + 2 * n_msgs + rcpt_total + 1
            ),
        ));
    }

    /// Every RCPT is rejected; the client then quits or drops the connection.
    fn smtpd_rejects(&mut self, s: &mut SmtpdSession<'_>) {
        let (ep, ehlo, ehlo_cmds) = (s.ep.as_str(), s.ehlo, s.ehlo_cmds);
        let k = if self.rng.chance(self.profile.reject_single_rcpt) {
            1
        } else {
            2
        };
        for _ in 0..k {
            s.t += self.ms(150, 1500);
            let body = self.reject_line(s.client, ep);
            s.lines.push((s.t, body));
            self.truth.rejected += 1;
        }
        s.t += self.ms(10, 500);
        if self.rng.chance(self.profile.rejected_client_quits) {
            s.lines.push((
                s.t,
                format!(
                    "disconnect from {ep} {ehlo} mail=1 rcpt=0/{k} rset=1 quit=1 commands={}/{}",
                    ehlo_cmds + 3,
                    ehlo_cmds + 3 + k
                ),
            ));
        } else {
            s.lines
                .push((s.t, format!("lost connection after RCPT from {ep}")));
            s.lines.push((
                s.t,
                format!(
                    "disconnect from {ep} {ehlo} mail=1 rcpt=0/{k} commands={}/{}",
                    ehlo_cmds + 1,
                    ehlo_cmds + 1 + k
                ),
            ));
        }
    }

    /// The connection is lost or times out at the stage `lost_kind` (0..5) picks.
    fn smtpd_lost(&mut self, s: &mut SmtpdSession<'_>, lost_kind: u64) {
        let (ep, ehlo, ehlo_cmds) = (s.ep.as_str(), s.ehlo, s.ehlo_cmds);
        let (text, counts, wait) = match lost_kind {
            0 => (
                format!("lost connection after CONNECT from {ep}"),
                "commands=0/0".to_string(),
                self.ms(50, 3000),
            ),
            1 => {
                s.lines.push((
                    s.t + 1000,
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
        s.t += wait;
        if !text.is_empty() {
            s.lines.push((s.t, text));
        }
        s.lines
            .push((s.t, format!("disconnect from {ep} {counts}")));
    }

    /// One `NOQUEUE: reject: RCPT` line of the kinds a port-25 server logs most (relay
    /// denied, unknown user, DNSBL, no PTR, greylisting, unknown sender domain).
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

    /// postscreen drops the client: it talks before its turn (`PREGREET`), is listed on DNSBLs,
    /// or hangs up during the tests.
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
                if self.rng.chance(self.profile.dnsbl_second_listing) {
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
}

/// A port-25 smtpd session being written: the client, what its EHLO (and STARTTLS) add to the
/// `disconnect` counters, and the lines so far.
#[derive(Debug)]
struct SmtpdSession<'a> {
    /// The connected client.
    client: &'a Client,
    /// The client as smtpd names it, `host[ip]`.
    ep: String,
    /// Time of the latest line (Unix microseconds).
    t: i64,
    /// The EHLO part of the `disconnect` counters (`ehlo=2 starttls=1` after STARTTLS).
    ehlo: &'static str,
    /// Commands that part counts.
    ehlo_cmds: usize,
    /// The session's lines so far.
    lines: Vec<(i64, String)>,
}
