//! The simulated Internet: recipient domains with their mail providers, MX hosts, client hosts,
//! names, and the reply texts each provider really sends.
//!
//! The domain table is built from a fixed seed so every generator run (whatever its own seed)
//! sees the same domains; only the traffic differs.

use std::fmt::Write as _;

use super::format::Ip;
use super::rng::{Rng, Weighted};

/// Which mail platform answers for a domain; decides MX names, client names and reply texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Google,
    Microsoft,
    Yahoo,
    Apple,
    Orange,
    UnitedInternet,
    TOnline,
    Free,
    Proton,
    /// A self-hosted Postfix server.
    Postfix,
    /// A self-hosted Exim server.
    Exim,
}

/// How a domain's mail servers behave for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Normal,
    /// MX does not answer: every attempt times out until the message expires.
    Dead,
    /// The domain does not exist (typos like `gmial.com`): bounced with a DNS error.
    NxDomain,
}

#[derive(Debug, Clone)]
pub(crate) struct Mx {
    pub(crate) host: String,
    pub(crate) ip: Ip,
}

#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub(crate) name: String,
    pub(crate) provider: Provider,
    pub(crate) mx: Vec<Mx>,
    pub(crate) health: Health,
    /// Multiplies the configured deferral rate (rate limiting at Yahoo/Outlook, greylisting).
    pub(crate) defer_factor: f64,
    pub(crate) bounce_factor: f64,
    /// TLS trust level logged by the smtp client, `None` when the MX offers no STARTTLS.
    pub(crate) tls: Option<&'static str>,
}

/// A remote endpoint as Postfix logs it.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) host: String,
    pub(crate) ip: Ip,
    pub(crate) port: u16,
    pub(crate) helo: String,
}

/// Static data plus the weighted tables the engine samples from.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) domains: Vec<Domain>,
    recipient_mix: Weighted,
    sender_mix: Weighted,
}

/// Big consumer mailbox providers and their share of recipients (percent of all remote mail).
const CONSUMER: &[(&str, Provider, f64)] = &[
    ("gmail.com", Provider::Google, 27.0),
    ("googlemail.com", Provider::Google, 0.8),
    ("outlook.com", Provider::Microsoft, 6.0),
    ("hotmail.com", Provider::Microsoft, 5.0),
    ("live.com", Provider::Microsoft, 1.5),
    ("hotmail.fr", Provider::Microsoft, 1.0),
    ("yahoo.com", Provider::Yahoo, 5.0),
    ("yahoo.fr", Provider::Yahoo, 0.8),
    ("aol.com", Provider::Yahoo, 1.0),
    ("icloud.com", Provider::Apple, 3.0),
    ("me.com", Provider::Apple, 0.7),
    ("orange.fr", Provider::Orange, 3.0),
    ("wanadoo.fr", Provider::Orange, 1.0),
    ("free.fr", Provider::Free, 1.5),
    ("sfr.fr", Provider::Postfix, 0.7),
    ("laposte.net", Provider::Postfix, 0.8),
    ("gmx.de", Provider::UnitedInternet, 2.5),
    ("web.de", Provider::UnitedInternet, 2.5),
    ("gmx.net", Provider::UnitedInternet, 0.8),
    ("t-online.de", Provider::TOnline, 1.5),
    ("proton.me", Provider::Proton, 0.6),
    ("comcast.net", Provider::Postfix, 0.5),
    ("libero.it", Provider::Postfix, 0.4),
    ("seznam.cz", Provider::Postfix, 0.3),
    ("mail.ru", Provider::Postfix, 0.4),
    ("yandex.ru", Provider::Postfix, 0.3),
];

/// Misspelt domains that do not exist; a small share of recipients end up there.
const TYPOS: &[(&str, f64)] = &[
    ("gmial.com", 0.05),
    ("gmail.co", 0.04),
    ("hotmial.com", 0.03),
    ("yahoo.con", 0.02),
    ("orange.fe", 0.01),
];

/// Share (percent) of remote recipients at corporate domains (the long tail).
const CORPORATE_SHARE: f64 = 30.0;
const CORPORATE_DOMAINS: usize = 400;

const CORP_PREFIX: &[&str] = &[
    "acme", "nord", "blue", "bright", "alpen", "atlas", "cedar", "delta", "ember", "fjord",
    "granite", "harbor", "iron", "juniper", "kestrel", "lumen", "maple", "nova", "orbit",
    "pioneer", "quartz", "river", "summit", "terra", "ultra", "vertex", "willow", "zenith",
    "polar", "helios", "argo", "sable", "cobalt", "linden", "meridian", "oak",
];
const CORP_SUFFIX: &[&str] = &[
    "tech",
    "works",
    "labs",
    "group",
    "systems",
    "logistics",
    "consulting",
    "media",
    "foods",
    "energy",
    "bank",
    "health",
    "legal",
    "design",
    "motors",
    "finance",
    "retail",
    "software",
    "partners",
    "solutions",
];
const CORP_TLD: &[&str] = &[
    "com", "com", "com", "de", "fr", "co.uk", "nl", "it", "es", "io", "net", "ch", "be", "at",
    "se", "org",
];

pub(crate) const FIRST_NAMES: &[&str] = &[
    "anna", "john", "marie", "pierre", "thomas", "julia", "lukas", "sophie", "david", "laura",
    "michael", "emma", "paul", "lea", "jan", "nina", "marco", "giulia", "carlos", "lucia", "peter",
    "sarah", "max", "claire", "olivier", "isabel", "stefan", "katarina", "ahmed", "fatima", "wei",
    "yuki", "ravi", "priya", "tom", "alice", "bob", "eve", "hugo", "ines",
];
pub(crate) const LAST_NAMES: &[&str] = &[
    "smith", "muller", "martin", "bernard", "schmidt", "rossi", "garcia", "dubois", "weber",
    "meyer", "fischer", "moreau", "laurent", "wagner", "becker", "lefebvre", "ferrari", "lopez",
    "novak", "jansen", "peeters", "nielsen", "kowalski", "santos", "silva", "brown", "wilson",
    "taylor", "keller", "roux",
];
const ROLES: &[&str] = &[
    "info", "contact", "sales", "support", "billing", "hr", "jobs", "office", "admin", "accounts",
    "invoices", "team", "hello", "press",
];

impl World {
    pub(crate) fn new() -> Self {
        // Fixed seed: the domain universe is part of the generator's definition, not of a run.
        let mut rng = Rng::new(0x00D0_4A1E);
        let mut domains = Vec::new();
        let mut weights = Vec::new();
        for &(name, provider, w) in CONSUMER {
            domains.push(consumer_domain(&mut rng, name, provider));
            weights.push(w);
        }
        for &(name, w) in TYPOS {
            domains.push(Domain {
                name: name.to_string(),
                provider: Provider::Postfix,
                mx: Vec::new(),
                health: Health::NxDomain,
                defer_factor: 0.0,
                bounce_factor: 0.0,
                tls: None,
            });
            weights.push(w);
        }
        // Zipf-like long tail of corporate domains.
        let mut seen = std::collections::HashSet::new();
        let harmonic: f64 = (1..=CORPORATE_DOMAINS)
            .map(|k| 1.0 / (k as f64).powf(1.1))
            .sum();
        let mut k = 0;
        while k < CORPORATE_DOMAINS {
            let name = format!(
                "{}{}.{}",
                rng.pick(CORP_PREFIX),
                rng.pick(CORP_SUFFIX),
                rng.pick(CORP_TLD)
            );
            if !seen.insert(name.clone()) {
                continue;
            }
            k += 1;
            domains.push(corporate_domain(&mut rng, name, k));
            weights.push(CORPORATE_SHARE / (k as f64).powf(1.1) / harmonic);
        }
        let sender_weights: Vec<f64> = domains
            .iter()
            .zip(&weights)
            .map(|(d, &w)| if d.health == Health::Normal { w } else { 0.0 })
            .collect();
        Self {
            recipient_mix: Weighted::new(weights),
            sender_mix: Weighted::new(sender_weights),
            domains,
        }
    }

    /// A remote recipient domain, weighted by the realistic mix.
    pub(crate) fn recipient_domain(&self, rng: &mut Rng) -> usize {
        self.recipient_mix.sample(rng)
    }

    /// A remote sender domain for inbound mail (never a broken one).
    pub(crate) fn sender_domain(&self, rng: &mut Rng) -> usize {
        self.sender_mix.sample(rng)
    }

    /// The host an inbound message from `domain` arrives from.
    pub(crate) fn inbound_client(&self, rng: &mut Rng, domain: usize) -> Client {
        let d = &self.domains[domain];
        let n = rng.range(1, 250) as u8;
        let (host, ip) = match d.provider {
            Provider::Google => {
                let pre = rng.pick(&["wr1", "ej1", "lf1", "pl1", "qt1", "yb1", "ed1", "wm1"]);
                (
                    format!("mail-{pre}-f{n}.google.com"),
                    Ip::new(209, 85, rng.range(128, 255) as u8, n),
                )
            }
            Provider::Microsoft => {
                let region = rng.pick(&["db8eur05", "am6eur05", "eur01", "eur04", "fra01"]);
                let ip = Ip::new(40, *rng.pick(&[92u8, 107]), rng.range(0, 255) as u8, n);
                let [_, b, c, dd] = ip.octets();
                (
                    format!(
                        "mail-{region}on2{:03}.outbound.protection.outlook.com",
                        (u32::from(b) + u32::from(c) + u32::from(dd)) % 1000
                    ),
                    ip,
                )
            }
            Provider::Yahoo => (
                format!(
                    "sonic{}-{}.consmr.mail.{}.yahoo.com",
                    rng.range(300, 330),
                    rng.range(1, 60),
                    rng.pick(&["ne1", "bf2", "gq1"])
                ),
                Ip::new(66, 163, rng.range(184, 191) as u8, n),
            ),
            Provider::Apple => (
                format!("st43p00im-ztfb1006{:04}.me.com", rng.range(1000, 9999)),
                Ip::new(17, 58, 63, n),
            ),
            Provider::Orange => (
                format!("smtp{:02}.smtpout.orange.fr", rng.range(1, 30)),
                Ip::new(80, 12, 242, n),
            ),
            Provider::UnitedInternet => {
                let host = if d.name == "web.de" {
                    "mout.web.de"
                } else {
                    "mout.gmx.net"
                };
                (host.to_string(), Ip::new(212, 227, 17, n))
            }
            Provider::TOnline => (
                format!("mailout{:02}.t-online.de", rng.range(1, 12)),
                Ip::new(194, 25, 134, n),
            ),
            Provider::Free => (
                format!("smtp{}-g21.free.fr", rng.range(1, 6)),
                Ip::new(212, 27, 42, n),
            ),
            Provider::Proton => (
                format!("mail-{}.protonmail.ch", rng.range(4000, 4400)),
                Ip::new(185, 70, 43, n),
            ),
            Provider::Postfix | Provider::Exim => {
                let ip = d.mx.first().map_or_else(|| public_ip(rng), |m| m.ip);
                (format!("mail.{}", d.name), Ip(ip.0 ^ 1))
            }
        };
        Client {
            helo: host.clone(),
            host,
            ip,
            port: rng.range(32768, 60999) as u16,
        }
    }
}

fn consumer_domain(rng: &mut Rng, name: &str, provider: Provider) -> Domain {
    let mx = match provider {
        Provider::Google => vec![
            mx("gmail-smtp-in.l.google.com", Ip::new(142, 250, 102, 27)),
            mx(
                "alt1.gmail-smtp-in.l.google.com",
                Ip::new(142, 250, 153, 27),
            ),
        ],
        Provider::Microsoft => {
            let label = name.replace('.', "-");
            vec![mx(
                &format!("{label}.olc.protection.outlook.com"),
                Ip::new(52, 101, rng.range(40, 90) as u8, rng.range(1, 60) as u8),
            )]
        }
        Provider::Yahoo => vec![
            mx("mta5.am0.yahoodns.net", Ip::new(67, 195, 204, 72)),
            mx("mta6.am0.yahoodns.net", Ip::new(98, 136, 96, 91)),
        ],
        Provider::Apple => vec![mx("mx01.mail.icloud.com", Ip::new(17, 57, 154, 33))],
        Provider::Orange => vec![mx("smtp-in.orange.fr", Ip::new(193, 252, 22, 84))],
        Provider::UnitedInternet if name == "web.de" => {
            vec![mx("mx-ha03.web.de", Ip::new(212, 227, 15, 41))]
        }
        Provider::UnitedInternet => vec![mx("mx00.emig.gmx.net", Ip::new(212, 227, 15, 9))],
        Provider::TOnline => vec![mx("mx00.t-online.de", Ip::new(194, 25, 134, 8))],
        Provider::Free => vec![mx("mx1.free.fr", Ip::new(212, 27, 48, 6))],
        Provider::Proton => vec![mx("mail.protonmail.ch", Ip::new(185, 70, 42, 128))],
        Provider::Postfix | Provider::Exim => vec![mx(&format!("mx1.{name}"), public_ip(rng))],
    };
    let (defer_factor, bounce_factor) = match provider {
        Provider::Yahoo => (2.5, 1.2),
        Provider::Microsoft => (1.8, 1.0),
        Provider::Orange => (1.5, 1.0),
        Provider::UnitedInternet => (1.2, 1.3),
        Provider::Google => (0.8, 0.8),
        _ => (1.0, 1.0),
    };
    Domain {
        name: name.to_string(),
        provider,
        mx,
        health: Health::Normal,
        defer_factor,
        bounce_factor,
        tls: Some(if provider == Provider::Postfix {
            "Untrusted"
        } else {
            "Trusted"
        }),
    }
}

fn corporate_domain(rng: &mut Rng, name: String, rank: usize) -> Domain {
    let label = name.replace('.', "-");
    let (provider, mx) = match rng.below(10) {
        0..=3 => (
            Provider::Google,
            vec![
                mx("aspmx.l.google.com", Ip::new(142, 250, 27, 26)),
                mx("alt1.aspmx.l.google.com", Ip::new(142, 250, 153, 26)),
            ],
        ),
        4..=6 => (
            Provider::Microsoft,
            vec![mx(
                &format!("{label}.mail.protection.outlook.com"),
                Ip::new(52, 101, rng.range(0, 255) as u8, rng.range(1, 254) as u8),
            )],
        ),
        7 | 8 => (
            Provider::Postfix,
            vec![
                mx(&format!("mx1.{name}"), public_ip(rng)),
                mx(&format!("mx2.{name}"), public_ip(rng)),
            ],
        ),
        _ => (
            Provider::Exim,
            vec![mx(&format!("mail.{name}"), public_ip(rng))],
        ),
    };
    // A few small domains have a dead MX; their mail sits in the queue until it expires.
    let health = if rank > 40 && rng.chance(0.02) {
        Health::Dead
    } else {
        Health::Normal
    };
    let self_hosted = matches!(provider, Provider::Postfix | Provider::Exim);
    Domain {
        name,
        provider,
        mx,
        health,
        // Self-hosted servers greylist and have more unknown users.
        defer_factor: if self_hosted { 2.0 } else { 1.0 },
        bounce_factor: if self_hosted { 1.8 } else { 1.2 },
        tls: match (provider, rng.below(10)) {
            (Provider::Google | Provider::Microsoft, _) => Some("Trusted"),
            (_, 0) => None,
            (_, 1..=6) => Some("Untrusted"),
            _ => Some("Verified"),
        },
    }
}

fn mx(host: &str, ip: Ip) -> Mx {
    Mx {
        host: host.to_string(),
        ip,
    }
}

/// A plausible public unicast IPv4 address (no private, loopback or multicast ranges).
pub(crate) fn public_ip(rng: &mut Rng) -> Ip {
    loop {
        let a = rng.range(5, 223) as u8;
        if matches!(a, 10 | 127 | 169 | 172 | 192 | 100) {
            continue;
        }
        return Ip::new(
            a,
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.range(1, 254) as u8,
        );
    }
}

/// A person's mailbox local part: `anna.schmidt`, `jsmith`, `lucia42`, ...
pub(crate) fn person_local_part(rng: &mut Rng) -> String {
    let first = *rng.pick(FIRST_NAMES);
    let last = *rng.pick(LAST_NAMES);
    match rng.below(6) {
        0 | 1 => format!("{first}.{last}"),
        2 => format!("{}{last}", &first[..1]),
        3 => format!("{first}{}", rng.range(1, 99)),
        4 => format!("{first}_{last}"),
        _ => format!("{first}.{last}{}", rng.range(1, 9)),
    }
}

/// A recipient local part at a remote domain: mostly people, some role addresses.
pub(crate) fn remote_local_part(rng: &mut Rng) -> String {
    if rng.chance(0.15) {
        rng.pick(ROLES).to_string()
    } else {
        person_local_part(rng)
    }
}

/// Upper-case letters and digits, e.g. for provider-internal ids.
pub(crate) fn alnum(rng: &mut Rng, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len).map(|_| *rng.pick(CHARS) as char).collect()
}

pub(crate) fn hex(rng: &mut Rng, len: usize) -> String {
    const CHARS: &[u8] = b"0123456789abcdef";
    (0..len).map(|_| *rng.pick(CHARS) as char).collect()
}

pub(crate) fn base64ish(rng: &mut Rng, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len).map(|_| *rng.pick(CHARS) as char).collect()
}

/// What happened to one recipient in one delivery attempt, as logged after `status=`.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) dsn: &'static str,
    /// The parenthesised text after the status.
    pub(crate) text: String,
}

/// Context a reply text may quote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyContext<'a> {
    pub(crate) rcpt: &'a str,
    pub(crate) our_ip: Ip,
    pub(crate) unix_secs: i64,
    pub(crate) size_bytes: u64,
    pub(crate) message_id: &'a str,
    pub(crate) mx: &'a Mx,
}

/// Appends `host MX[IP] said: REPLY (in reply to COMMAND command)`, as Postfix quotes a remote
/// server's reply.
pub(crate) fn said(out: &mut String, mx: &Mx, reply: &str, command: &str) {
    let _ = write!(
        out,
        "host {}[{}] said: {reply} (in reply to {command} command)",
        mx.host, mx.ip
    );
}

/// The 2xx reply a provider sends after accepting a message.
pub(crate) fn sent_reply(rng: &mut Rng, provider: Provider, cx: &ReplyContext<'_>) -> Reply {
    let (dsn, text) = match provider {
        Provider::Google => (
            "2.0.0",
            format!(
                "250 2.0.0 OK  {} {}-{}si{}{}.{} - gsmtp",
                cx.unix_secs,
                hex(rng, 13),
                hex(rng, 11),
                rng.range(1_000_000, 9_999_999),
                (b'a' + rng.below(26) as u8) as char,
                rng.range(1, 999)
            ),
        ),
        Provider::Microsoft => {
            let srv = format!(
                "AM{}PR0{}MB{}",
                rng.range(0, 9),
                rng.range(1, 9),
                rng.range(1000, 9999)
            );
            (
                "2.6.0",
                format!(
                    "250 2.6.0 <{}> [InternalId={}, Hostname={srv}.eurprd0{}.prod.outlook.com] {} bytes in {}.{:03}, {}.{:03} KB/sec Queued mail for delivery -> 250 2.1.5",
                    cx.message_id,
                    rng.range(10_000_000_000, 99_999_999_999),
                    rng.range(1, 9),
                    cx.size_bytes + rng.range(500, 3000),
                    rng.below(2),
                    rng.below(1000),
                    rng.range(20, 900),
                    rng.below(1000)
                ),
            )
        }
        Provider::Yahoo => ("2.0.0", "250 ok dirdel".to_string()),
        Provider::Apple => (
            "2.0.0",
            format!("250 2.0.0 Ok: queued as {}", alnum(rng, 12)),
        ),
        Provider::Orange => (
            "2.0.0",
            format!(
                "250 2.0.0 {} mail accepted for delivery",
                base64ish(rng, 14).replace('/', "x").replace('+', "y")
            ),
        ),
        Provider::UnitedInternet => (
            "2.0.0",
            format!(
                "250 Requested mail action okay, completed: id={}-{}-{}",
                alnum(rng, 6),
                base64ish(rng, 10).replace('/', "a").replace('+', "b"),
                alnum(rng, 5)
            ),
        ),
        Provider::TOnline => (
            "2.0.0",
            "250 2.0.0 Message accepted for delivery".to_string(),
        ),
        Provider::Free => (
            "2.0.0",
            format!("250 2.0.0 Ok: queued as {}", alnum(rng, 11)),
        ),
        Provider::Proton => (
            "2.0.0",
            format!(
                "250 2.0.0 Ok: queued as 4{}",
                base64ish(rng, 13).replace('/', "k").replace('+', "Q")
            ),
        ),
        Provider::Postfix => (
            "2.0.0",
            format!(
                "250 2.0.0 Ok: queued as {:05X}{:X}",
                rng.below(1_000_000),
                rng.range(0x1000, 0xFFFFF)
            ),
        ),
        Provider::Exim => (
            "2.0.0",
            format!(
                "250 OK id=1t{}-000{}-{}",
                alnum(rng, 4),
                alnum(rng, 3),
                alnum(rng, 2)
            ),
        ),
    };
    Reply { dsn, text }
}

/// A temporary failure. `connected` is false when no SMTP session was established
/// (logged with `relay=none`).
pub(crate) fn defer_reply(rng: &mut Rng, domain: &Domain, cx: &ReplyContext<'_>) -> (Reply, bool) {
    let mut text = String::with_capacity(200);
    let mx = cx.mx;
    let ip = cx.our_ip;
    if domain.health == Health::Dead || rng.chance(0.12) {
        let _ = write!(
            text,
            "connect to {}[{}]:25: Connection timed out",
            mx.host, mx.ip
        );
        return (Reply { dsn: "4.4.1", text }, false);
    }
    let dsn = match (domain.provider, rng.below(3)) {
        (Provider::Google, 0) => {
            said(
                &mut text,
                mx,
                &format!(
                    "450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 prevents additional messages from being delivered. Please resend your 450-4.2.1 message at a later date. If the user is able to receive mail at that 450-4.2.1 time, your message will be delivered. For more information, go to 450 4.2.1  https://support.google.com/mail/?p=ReceivingRate {}-{}si{}.{} - gsmtp",
                    hex(rng, 13),
                    hex(rng, 11),
                    rng.range(100_000, 999_999),
                    rng.range(1, 999)
                ),
                "RCPT TO",
            );
            "4.2.1"
        }
        (Provider::Google, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "421-4.7.28 [{ip}      15] Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address. To protect our 421-4.7.28 users from spam, mail sent from your IP address has been temporarily 421-4.7.28 rate limited. For more information, go to 421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to 421 4.7.28 review our Bulk Email Senders Guidelines. {}-{}si{}.{} - gsmtp",
                    hex(rng, 13),
                    hex(rng, 11),
                    rng.range(100_000, 999_999),
                    rng.range(1, 999)
                ),
                "end of DATA",
            );
            "4.7.28"
        }
        (Provider::Microsoft, 0) => {
            said(
                &mut text,
                mx,
                "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel",
                "MAIL FROM",
            );
            "4.3.2"
        }
        (Provider::Microsoft, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "451 4.7.650 The mail server [{ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775) [Name=Protocol Filter Agent][AGT=PFA][MxId={}] [{}.eurprd0{}.prod.outlook.com {} {}]",
                    alnum(rng, 16),
                    alnum(rng, 15),
                    rng.range(1, 9),
                    rfc3339_ms(cx.unix_secs, rng),
                    alnum(rng, 16)
                ),
                "MAIL FROM",
            );
            "4.7.650"
        }
        (Provider::Yahoo, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
                ),
                "MAIL FROM",
            );
            "4.7.0"
        }
        (Provider::Orange, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "421 mwinf5c{} ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR005_104 [104]",
                    rng.range(10, 99)
                ),
                "end of DATA",
            );
            "4.0.0"
        }
        (Provider::UnitedInternet, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "421-gmx.net (mxgmx{:03}) Nemesis ESMTP Service not available 421-Service unavailable 421-Reject due to policy restrictions. 421 For explanation visit https://postmaster.gmx.net/en/case?c=hi&i=ip&v={ip}&r={}",
                    rng.range(1, 120),
                    alnum(rng, 16)
                ),
                "RCPT TO",
            );
            "4.0.0"
        }
        (_, 0) => {
            let _ = write!(
                text,
                "lost connection with {}[{}] while receiving the initial server greeting",
                mx.host, mx.ip
            );
            "4.4.2"
        }
        (Provider::Exim, _) => {
            said(
                &mut text,
                mx,
                "451 Temporary local problem - please try later",
                "RCPT TO",
            );
            "4.0.0"
        }
        (_, 1) => {
            said(
                &mut text,
                mx,
                &format!(
                    "450 4.2.0 <{}>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/{}.html",
                    cx.rcpt, domain.name
                ),
                "RCPT TO",
            );
            "4.2.0"
        }
        _ => {
            said(
                &mut text,
                mx,
                &format!("452 4.2.2 <{}>: Mailbox full", cx.rcpt),
                "RCPT TO",
            );
            "4.2.2"
        }
    };
    (Reply { dsn, text }, true)
}

/// A permanent failure. `connected` as for [`defer_reply`].
pub(crate) fn bounce_reply(rng: &mut Rng, domain: &Domain, cx: &ReplyContext<'_>) -> (Reply, bool) {
    let mut text = String::with_capacity(200);
    let mx = cx.mx;
    let rcpt = cx.rcpt;
    if domain.health == Health::NxDomain {
        let _ = write!(
            text,
            "Host or domain name not found. Name service error for name={} type=MX: Host not found",
            domain.name
        );
        return (Reply { dsn: "5.4.4", text }, false);
    }
    let dsn = match (domain.provider, rng.below(4)) {
        (Provider::Google, 0) => {
            said(
                &mut text,
                mx,
                &format!(
                    "550-5.7.26 Unauthenticated email from {} is not accepted due to domain's 550-5.7.26 DMARC policy. Please contact the administrator of {} domain 550-5.7.26 if this was a legitimate mail. To learn about the DMARC initiative, 550-5.7.26 go to 550 5.7.26  https://support.google.com/mail/?p=DmarcRejection {}-{}si{}.{} - gsmtp",
                    sender_domain_hint(rcpt),
                    sender_domain_hint(rcpt),
                    hex(rng, 13),
                    hex(rng, 11),
                    rng.range(100_000, 999_999),
                    rng.range(1, 999)
                ),
                "end of DATA",
            );
            "5.7.26"
        }
        (Provider::Google, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. For more information, go to 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {}-{}si{}.{} - gsmtp",
                    hex(rng, 13),
                    hex(rng, 11),
                    rng.range(100_000, 999_999),
                    rng.range(1, 999)
                ),
                "RCPT TO",
            );
            "5.1.1"
        }
        (Provider::Microsoft, 0) => {
            said(
                &mut text,
                mx,
                &format!(
                    "550 5.7.1 Unfortunately, messages from [{}] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [{}.eurprd0{}.prod.outlook.com {}]",
                    cx.our_ip,
                    alnum(rng, 15),
                    rng.range(1, 9),
                    rfc3339_ms(cx.unix_secs, rng)
                ),
                "MAIL FROM",
            );
            "5.7.1"
        }
        (Provider::Microsoft, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [{}.eurprd0{}.prod.outlook.com {} {}]",
                    alnum(rng, 15),
                    rng.range(1, 9),
                    rfc3339_ms(cx.unix_secs, rng),
                    alnum(rng, 16)
                ),
                "RCPT TO",
            );
            "5.5.0"
        }
        (Provider::Yahoo, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "554 delivery error: dd This user doesn't have a {} account ({rcpt}) [0] - mta{}.mail.gq1.yahoo.com",
                    sender_domain_hint(rcpt),
                    rng.range(1000, 9999)
                ),
                "end of DATA",
            );
            "5.0.0"
        }
        (Provider::Apple, _) => {
            said(
                &mut text,
                mx,
                &format!("550 5.1.1 <{rcpt}>: user does not exist"),
                "RCPT TO",
            );
            "5.1.1"
        }
        (Provider::Orange, _) => {
            said(
                &mut text,
                mx,
                &format!(
                    "550 5.1.1 <{rcpt}>: Recipient address rejected: Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]"
                ),
                "RCPT TO",
            );
            "5.1.1"
        }
        (Provider::UnitedInternet, _) => {
            said(
                &mut text,
                mx,
                "550 Requested action not taken: mailbox unavailable",
                "RCPT TO",
            );
            "5.0.0"
        }
        (Provider::Exim, _) => {
            said(&mut text, mx, "550 Unrouteable address", "RCPT TO");
            "5.0.0"
        }
        (_, 0) => {
            said(
                &mut text,
                mx,
                &format!("552 5.2.2 <{rcpt}>: Recipient address rejected: Mailbox full"),
                "RCPT TO",
            );
            "5.2.2"
        }
        _ => {
            said(
                &mut text,
                mx,
                &format!(
                    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
                ),
                "RCPT TO",
            );
            "5.1.1"
        }
    };
    (Reply { dsn, text }, true)
}

/// The domain part of an address (for texts that name it).
fn sender_domain_hint(addr: &str) -> &str {
    addr.rsplit_once('@').map_or(addr, |(_, d)| d)
}

/// `2024-10-26T18:13:50.123Z`, as Microsoft quotes its server time.
fn rfc3339_ms(unix_secs: i64, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(28);
    super::format::Clock::new(super::TimestampStyle::Rfc3339).write(&mut s, unix_secs * 1_000_000);
    // `…T18:13:50.000000+00:00` → `…T18:13:50.123Z`
    s.truncate(19);
    let _ = write!(s, ".{:03}Z", rng.below(1000));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_table_is_fixed_and_realistic() {
        let a = World::new();
        let b = World::new();
        assert_eq!(a.domains.len(), b.domains.len());
        assert!(
            a.domains
                .iter()
                .zip(&b.domains)
                .all(|(x, y)| x.name == y.name)
        );
        let names: std::collections::HashSet<_> =
            a.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), a.domains.len(), "domain names are unique");
        for want in [
            "gmail.com",
            "outlook.com",
            "yahoo.com",
            "icloud.com",
            "orange.fr",
            "gmx.de",
        ] {
            assert!(names.contains(want), "{want} missing");
        }
        let mut rng = Rng::new(1);
        let gmail = (0..10_000)
            .filter(|_| a.domains[a.recipient_domain(&mut rng)].name == "gmail.com")
            .count();
        assert!((2_000..3_500).contains(&gmail), "gmail share {gmail}/10000");
    }
}
