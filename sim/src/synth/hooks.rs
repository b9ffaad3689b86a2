//! Hooks that steer the generator over time without writing Postfix lines of their own.
//!
//! The fleet simulator ([`crate::fleet`]) drives one generator per host through these: the
//! arrival rate follows its seasonal model, incidents add sessions (a compromised account
//! submitting, a network flooding port 25 and guessing passwords) and decide remote delivery
//! attempts (a bounce storm, greylisting, a blocklisted IP, a DNS failure, a dead relay). Every
//! line is still written by the engine's session and delivery writers.
//!
//! Architecture invariant: a generator without hooks ([`super::SynthLog::new`]) draws the same
//! random numbers in the same order as before hooks existed, so its output is byte-identical.

use std::fmt;

use super::format::Ip;
use super::world::{Client, Domain, Mx, Reply, World};

/// Time-dependent behaviour injected into one generator. Times are Unix microseconds.
pub(crate) trait Hooks: fmt::Debug + Send {
    /// Mean rate of accepted messages at `at`; `None` keeps the configured diurnal sine.
    fn messages_per_sec(&mut self, at: i64) -> Option<f64>;

    /// Appends sessions to start in `[at, at + gap)` on top of the normal traffic (called once
    /// per arrival, `gap` being the time to the next one).
    fn extra_sessions(&mut self, world: &World, at: i64, gap: i64, out: &mut Vec<ExtraSession>);

    /// Decides one remote delivery attempt instead of the recipient's planned fate; `None`
    /// leaves it to the fate. A recipient whose attempt is forced keeps its fate for later
    /// attempts.
    fn remote_attempt(&mut self, attempt: &RemoteAttempt<'_>) -> Option<Forced>;
}

/// Who a generator is in a fleet, and its hooks.
#[derive(Debug)]
pub(crate) struct HostSetup {
    /// Address postscreen listens on and the main instance sends from.
    pub(crate) main_ip: Ip,
    /// Address the `postfix-out` instance sends from.
    pub(crate) out_ip: Ip,
    /// Local mailboxes added to the generated ones (they submit and receive mail like them).
    pub(crate) extra_users: Vec<String>,
    pub(crate) hooks: Box<dyn Hooks>,
}

/// A session added by [`Hooks::extra_sessions`].
#[derive(Debug, Clone)]
pub(crate) enum ExtraSession {
    /// Authenticated submission by `user` from `client` to one recipient at each domain (indexes
    /// into [`World::domains`]).
    Submission {
        at: i64,
        client: Client,
        user: String,
        domains: Vec<usize>,
    },
    /// A failed SASL login from `client`, naming `user` when it is `Some`.
    AuthFailure {
        at: i64,
        client: Client,
        user: Option<String>,
    },
    /// A port-25 connection from `client` that ends without a message.
    Inbound {
        at: i64,
        client: Client,
        ending: InboundEnding,
    },
}

/// How an added port-25 session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InboundEnding {
    /// smtpd rejects the recipient (`NOQUEUE: reject: RCPT`).
    Reject,
    /// The client drops or stalls the session (lost connection, timeout, too many errors).
    Lost,
    /// postscreen drops the client before smtpd (PREGREET, DNSBL, HANGUP).
    PostscreenDrop,
}

/// One remote delivery attempt, as [`Hooks::remote_attempt`] sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAttempt<'a> {
    /// When the delivery agent starts the attempt.
    pub(crate) at: i64,
    /// Time since the message was queued (0-ish on the first attempt).
    pub(crate) age: i64,
    pub(crate) domain: &'a Domain,
    /// The MX host the attempt goes to.
    pub(crate) mx: &'a Mx,
    pub(crate) sender: &'a str,
    pub(crate) rcpt: &'a str,
    /// The sending address (main or `postfix-out` instance).
    pub(crate) our_ip: Ip,
}

/// A forced outcome of a remote delivery attempt.
#[derive(Debug, Clone)]
pub(crate) enum Forced {
    /// No SMTP session (logged with `relay=none`): every recipient of the delivery is deferred
    /// with this reply.
    Unreachable(Reply),
    /// The server defers this recipient with this reply.
    Defer(Reply),
    /// The server rejects this recipient permanently with this reply.
    Bounce(Reply),
}

/// Messages and bytes in one instance's queue; deferred ones are those that have been deferred
/// at least once and are still queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueLoad {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) deferred_messages: u64,
    pub(crate) deferred_bytes: u64,
}

/// One recipient delivered to a remote domain (`status=sent` over SMTP), as recorded for the
/// fleet's feedback-loop model when [`super::SynthLog::record_deliveries`] asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Time of the `status=sent` line (Unix microseconds).
    pub(crate) at: i64,
    /// When the message was queued (Unix microseconds).
    pub(crate) queued_at: i64,
    /// Sent by the `postfix-out` instance (from its address) rather than the main one.
    pub(crate) outbound_instance: bool,
    /// Envelope sender (empty for a notification).
    pub(crate) sender: String,
    /// The recipient's address.
    pub(crate) rcpt: String,
    /// The `Message-ID` header, angle brackets included.
    pub(crate) message_id: String,
}
