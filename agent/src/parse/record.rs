//! Typed Postfix log records.
//!
//! Every record borrows from the log line it was parsed from (zero-copy); the tracker copies only
//! what it keeps. A record is produced for every line: what no parser understands becomes
//! [`Record::Unparsed`], which callers count.

use serde::Serialize;

/// One parsed message body of a Postfix program.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record<'a> {
    Smtpd(Smtpd<'a>),
    Postscreen(Postscreen<'a>),
    Cleanup(Cleanup<'a>),
    Qmgr(Qmgr<'a>),
    /// A per-recipient delivery attempt by smtp, lmtp, local, virtual, pipe, error, retry or discard.
    Delivery(Delivery<'a>),
    /// smtp/lmtp client events other than per-recipient deliveries: connection failures, server
    /// replies, lost connections, TLS failures.
    Smtp(Smtp<'a>),
    /// bounce/defer/trace: a notification message was created for a queue id.
    Notification(Notification<'a>),
    Pickup(Pickup<'a>),
    Anvil(Anvil<'a>),
    Tls(TlsConnection<'a>),
    Postsuper(Postsuper<'a>),
    Master(Master<'a>),
    /// scache (shared connection cache) statistics.
    Scache(Scache<'a>),
    /// dnsblog: a DNS block or allow list reported an address.
    Dnsbl(DnsblListing<'a>),
    /// postscreen or verify cache cleanup statistics.
    CacheCleanup(CacheCleanup<'a>),
    /// Any other service line that is understood but carries no message-lifecycle meaning
    /// (master, scache, dnsblog, verify, tlsmgr, postmap, ...).
    Service(ServiceNote<'a>),
    /// `warning:`, `error:`, `fatal:` and `panic:` lines of any service.
    Diagnostic(Diagnostic<'a>),
    Unparsed(Unparsed<'a>),
}

/// A client or server endpoint as Postfix logs it: `host[ip]` or `host[ip]:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub ip: &'a str,
    pub port: Option<u16>,
}

/// An SMTP reply as logged by Postfix: `550 5.1.1 <x@y>: Recipient address rejected: ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reply<'a> {
    /// Three-digit SMTP reply code, when the text starts with one.
    pub code: Option<u16>,
    /// RFC 3463 enhanced status code (`5.1.1`), when present.
    pub dsn: Option<&'a str>,
    /// The full reply text, code and enhanced code included.
    pub text: &'a str,
}

/// `from=<…> to=<…> proto=… helo=<…>` trailer of smtpd/cleanup reject lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Envelope<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub proto: Option<&'a str>,
    pub helo: Option<&'a str>,
}

/// What an access restriction, header/body check or milter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckAction {
    Reject,
    Warn,
    Hold,
    Discard,
    Filter,
    Redirect,
    Info,
    Replace,
    Prepend,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Smtpd<'a> {
    Connect {
        client: Endpoint<'a>,
    },
    Disconnect {
        client: Endpoint<'a>,
        /// `ehlo=1 mail=1 rcpt=0/1 data=0 quit=1 commands=2/3` as (name, ok, total).
        commands: Vec<CommandCount<'a>>,
    },
    /// `QID: client=host[ip]` optionally with sasl_method/sasl_username/sasl_sender.
    Client {
        queue_id: &'a str,
        client: Endpoint<'a>,
        orig_queue_id: Option<&'a str>,
        orig_client: Option<Endpoint<'a>>,
        sasl_method: Option<&'a str>,
        sasl_username: Option<&'a str>,
        sasl_sender: Option<&'a str>,
    },
    /// `NOQUEUE: reject: RCPT from …: 550 …; from=<…> to=<…> proto=… helo=<…>` and the
    /// warn/hold/discard/filter/redirect variants, with or without a real queue id.
    Check {
        queue_id: Option<&'a str>,
        action: CheckAction,
        /// SMTP stage: CONNECT, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY, ETRN, ...
        stage: &'a str,
        client: Endpoint<'a>,
        reply: Reply<'a>,
        envelope: Envelope<'a>,
    },
    /// `lost connection after DATA (1234 bytes) from host[ip]`: `after` is the SMTP stage
    /// (`DATA`), `bytes` the byte count Postfix adds after DATA/BDAT.
    LostConnection {
        after: &'a str,
        bytes: Option<u64>,
        client: Endpoint<'a>,
    },
    Timeout {
        after: &'a str,
        client: Endpoint<'a>,
    },
    TooManyErrors {
        after: &'a str,
        client: Endpoint<'a>,
    },
    /// `warning: host[ip]: SASL LOGIN authentication failed: reason`
    SaslFailed {
        client: Endpoint<'a>,
        method: &'a str,
        reason: &'a str,
        sasl_username: Option<&'a str>,
    },
    /// `proxy-accept: END-OF-MESSAGE: 250 2.0.0 …; from=<…> …` and `proxy-reject: …` of a
    /// before-queue content filter (`smtpd_proxy_filter`).
    Proxy {
        queue_id: Option<&'a str>,
        accepted: bool,
        stage: &'a str,
        reply: Reply<'a>,
        envelope: Envelope<'a>,
    },
    /// Other per-client events: `improper command pipelining after EHLO from h[ip]: …`,
    /// `bare <LF> received after DATA from h[ip]`, `SSL_accept error from h[ip]: …`.
    ClientEvent {
        /// The event as Postfix words it, e.g. `improper command pipelining`.
        kind: &'a str,
        /// SMTP stage after which it happened, when logged.
        after: Option<&'a str>,
        client: Endpoint<'a>,
        /// Text after `host[ip]: `, empty when none.
        text: &'a str,
    },
    /// Other smtpd lines that are understood (e.g. `improper command pipelining`, `proxy-accept`).
    Note {
        text: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CommandCount<'a> {
    pub name: &'a str,
    pub ok: u32,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Postscreen<'a> {
    Connect {
        client: Endpoint<'a>,
        server: Endpoint<'a>,
    },
    Disconnect {
        client: Endpoint<'a>,
    },
    Pass {
        new: bool,
        client: Endpoint<'a>,
    },
    DnsblRank {
        client: Endpoint<'a>,
        rank: i32,
    },
    Pregreet {
        bytes: u32,
        after_secs: Option<f64>,
        client: Endpoint<'a>,
        text: &'a str,
    },
    Hangup {
        after_secs: Option<f64>,
        client: Endpoint<'a>,
        stage: &'a str,
    },
    CommandPipelining {
        client: Endpoint<'a>,
        stage: &'a str,
    },
    /// `COMMAND TIME LIMIT`, `COMMAND COUNT LIMIT`, `COMMAND LENGTH LIMIT`, `BARE NEWLINE`,
    /// `NON-SMTP COMMAND`: `KIND from [ip]:port after STAGE[: text]`.
    Violation {
        kind: &'a str,
        client: Endpoint<'a>,
        stage: &'a str,
        text: &'a str,
    },
    Reject {
        stage: &'a str,
        client: Endpoint<'a>,
        reply: Reply<'a>,
        envelope: Envelope<'a>,
    },
    /// Other understood postscreen lines: `WHITELISTED`, `BLACKLISTED`, `ALLOWLISTED`,
    /// `DENYLISTED`, `WHITELIST VETO`, `ALLOWLIST VETO` (kind = that word, client set).
    Note {
        kind: &'a str,
        client: Option<Endpoint<'a>>,
        text: &'a str,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Cleanup<'a> {
    MessageId {
        queue_id: &'a str,
        message_id: &'a str,
    },
    /// header/body check or milter action: `QID: reject: header Subject: … from …; from=<…> …: text`
    /// or `QID: milter-reject: END-OF-MESSAGE from …: 5.7.1 …; from=<…> …`.
    Check {
        queue_id: &'a str,
        action: CheckAction,
        /// `header`, `body`, `milter` (stage in `stage`), `mime-header`, `nested-header`, ...
        source: &'a str,
        stage: Option<&'a str>,
        client: Option<Endpoint<'a>>,
        /// The rejection text: the tail after the envelope of a header/body `reject`, or the
        /// reply of a `milter-reject`.
        reply: Option<Reply<'a>>,
        envelope: Envelope<'a>,
        /// What was checked: the header or body line (`Subject: win big`), empty for milter
        /// stage actions.
        detail: &'a str,
        /// The action's own text when it is not a rejection: the redirect target, the prepended or
        /// replacement header, a warn/hold/discard/info comment.
        argument: Option<&'a str>,
    },
    /// Other understood cleanup lines (e.g. `resent-message-id=`).
    Note {
        queue_id: Option<&'a str>,
        text: &'a str,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Qmgr<'a> {
    /// `QID: from=<s>, size=N, nrcpt=N (queue active)`
    From {
        queue_id: &'a str,
        sender: &'a str,
        size_bytes: u64,
        nrcpt: u32,
    },
    Removed {
        queue_id: &'a str,
    },
    /// `QID: from=<s>, status=expired, returned to sender`
    Expired {
        queue_id: &'a str,
        sender: &'a str,
        text: &'a str,
    },
    /// `QID: skipped, still being delivered` and other understood qmgr lines.
    Note {
        queue_id: Option<&'a str>,
        text: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Deferred,
    Bounced,
    Expired,
    Deliverable,
    Undeliverable,
    Other,
}

/// `delays=a/b/c/d`: before qmgr, in qmgr, connection setup, transmission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Delays {
    pub before_qmgr_secs: f64,
    pub in_qmgr_secs: f64,
    pub conn_setup_secs: f64,
    pub transmission_secs: f64,
}

/// `relay=host[ip]:port`, `relay=local`, `relay=none`, `relay=dovecot`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Relay<'a> {
    /// The raw `relay=` value.
    pub raw: &'a str,
    pub host: &'a str,
    pub ip: Option<&'a str>,
    pub port: Option<u16>,
    /// UNIX-domain socket of an lmtp relay: `host[private/dovecot-lmtp]` (then `ip` is `None`).
    pub socket: Option<&'a str>,
}

/// `tls=` of a delivery line: `level[?][:downgrade][/[!]requiretls[?][:downgrade]]`, e.g.
/// `dane`, `may?`, `may:none`, `dane/requiretls`, `dane/!requiretls:nostarttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TlsFeatures<'a> {
    pub raw: &'a str,
    /// TLS security level (`none`, `may`, `encrypt`, `dane`, `verify`, `secure`, ...).
    pub level: &'a str,
    /// `?`: the policy was not decided yet.
    pub level_undecided: bool,
    /// The level the connection was downgraded to (`:none`).
    pub downgrade: Option<&'a str>,
    pub requiretls: bool,
    /// `!requiretls`: REQUIRETLS was requested but not met.
    pub requiretls_violated: bool,
    pub requiretls_undecided: bool,
    pub requiretls_downgrade: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery<'a> {
    pub queue_id: &'a str,
    pub to: &'a str,
    pub orig_to: Option<&'a str>,
    pub relay: Option<Relay<'a>>,
    pub delay_secs: Option<f64>,
    pub delays: Option<Delays>,
    pub dsn: Option<&'a str>,
    pub status: DeliveryStatus,
    /// Text in parentheses after the status, e.g. `250 2.0.0 Ok: queued as 1234`.
    pub status_text: &'a str,
    /// `conn_use=N` when a cached connection was reused.
    pub conn_use: Option<u32>,
    /// `tls=` TLS features of the delivery (newer Postfix).
    pub tls: Option<TlsFeatures<'a>>,
}

/// Client-side events of smtp and lmtp that are not per-recipient deliveries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Smtp<'a> {
    /// `connect to mx[ip]:25: Connection refused` (also timed out, no route, unreachable).
    ConnectFailed {
        queue_id: Option<&'a str>,
        server: Endpoint<'a>,
        error: &'a str,
    },
    /// `QID: lost connection with mx[ip] while sending RCPT TO`
    LostConnection {
        queue_id: Option<&'a str>,
        server: Endpoint<'a>,
        /// What the client was doing (`receiving the initial server greeting`, `sending RCPT TO`).
        stage: &'a str,
    },
    /// `QID: conversation with mx[ip] timed out while receiving the initial server greeting`
    Timeout {
        queue_id: Option<&'a str>,
        server: Endpoint<'a>,
        stage: &'a str,
    },
    /// `QID: host mx[ip] said: 450 4.7.1 … (in reply to RCPT TO command)`
    ServerReply {
        queue_id: Option<&'a str>,
        server: Endpoint<'a>,
        reply: Reply<'a>,
        /// The command the reply answered (`RCPT TO`, `end of DATA`, `MAIL FROM`).
        in_reply_to: Option<&'a str>,
    },
    /// `QID: host mx[ip] refused to talk to me: 554 5.7.1 …` (rejected greeting).
    RefusedToTalk {
        queue_id: Option<&'a str>,
        server: Endpoint<'a>,
        reply: Reply<'a>,
    },
    /// `QID: SASL authentication failed; server mx[ip] said: 535 5.7.8 …`
    SaslFailed {
        queue_id: Option<&'a str>,
        server: Endpoint<'a>,
        reply: Reply<'a>,
    },
    /// `certificate verification failed for mx[ip]:25: …`, `SSL_connect error to mx[ip]:25: …`,
    /// `server certificate verification failed for …`.
    TlsFailure {
        queue_id: Option<&'a str>,
        /// The failure as Postfix words it, e.g. `certificate verification failed`.
        kind: &'a str,
        server: Endpoint<'a>,
        text: &'a str,
    },
    /// `QID: enabling PIX workarounds: disable_esmtp delay_dotcrlf for mx[ip]:25`
    PixWorkarounds {
        queue_id: Option<&'a str>,
        workarounds: &'a str,
        server: Endpoint<'a>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification<'a> {
    pub queue_id: &'a str,
    /// `sender non-delivery notification`, `sender delay notification`, ...
    pub kind: &'a str,
    pub notice_queue_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pickup<'a> {
    pub queue_id: &'a str,
    pub uid: Option<u32>,
    pub from: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Anvil<'a> {
    /// `statistics: max connection rate 1/60s for (smtp:1.2.3.4) at Oct 26 18:13:50`
    MaxRate {
        metric: &'a str,
        value: u32,
        per_secs: Option<u32>,
        service: Option<&'a str>,
        client: Option<&'a str>,
        at: &'a str,
    },
    /// `statistics: max connection count 1 for (smtp:1.2.3.4) at …` and other `max … count` lines.
    MaxCount {
        metric: &'a str,
        value: u32,
        service: Option<&'a str>,
        client: Option<&'a str>,
        at: &'a str,
    },
    /// `statistics: max cache size 1 at …`
    CacheSize { value: u32, at: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsDirection {
    /// Inbound: `… established from host[ip]`.
    From,
    /// Outbound: `… established to host[ip]:port`.
    To,
}

/// `Trusted TLS connection established to mx[ip]:25: TLSv1.3 with cipher X (256/256 bits)`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsConnection<'a> {
    /// Anonymous, Untrusted, Trusted or Verified.
    pub trust: &'a str,
    pub direction: TlsDirection,
    pub peer: Endpoint<'a>,
    pub protocol: &'a str,
    pub cipher: &'a str,
    pub bits: Option<&'a str>,
    /// Everything after the cipher bits (key exchange, server signature, ...).
    pub extra: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Postsuper<'a> {
    Held {
        queue_id: &'a str,
    },
    Released {
        queue_id: &'a str,
    },
    Requeued {
        queue_id: &'a str,
    },
    Removed {
        queue_id: &'a str,
    },
    /// `Deleted: 115 messages`, `Placed on hold: 67 messages`, ...
    Summary {
        action: &'a str,
        count: u64,
    },
}

/// master daemon lifecycle: restarts and reloads are worth seeing next to queue anomalies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Master<'a> {
    /// `daemon started -- version 3.8.6, configuration /etc/postfix`
    Started {
        version: &'a str,
        config_dir: &'a str,
    },
    /// `reload -- version 3.8.6, configuration /etc/postfix`
    Reloaded {
        version: &'a str,
        config_dir: &'a str,
    },
    /// `terminating on signal 15`
    Terminating { signal: u32 },
}

/// scache `statistics:` lines, logged every `connection_cache_status_update_time`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Scache<'a> {
    /// `statistics: start interval Dec  6 21:20:35`
    StartInterval { at: &'a str },
    /// `statistics: domain lookup hits=0 miss=1 success=0%` (`kind` is `domain` or `address`).
    Lookups {
        kind: &'a str,
        hits: u64,
        misses: u64,
        success_pct: u32,
    },
    /// `statistics: max simultaneous domains=1 addresses=1 connection=1`
    MaxSimultaneous {
        domains: u64,
        addresses: u64,
        connections: u64,
    },
}

/// dnsblog: `addr 1.2.3.4 listed by domain zen.spamhaus.org as 127.0.0.2`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DnsblListing<'a> {
    pub addr: &'a str,
    pub domain: &'a str,
    /// The A record the list answered with.
    pub reply: &'a str,
}

/// `cache btree:/var/lib/postfix/postscreen_cache full cleanup: retained=242 dropped=7 entries`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheCleanup<'a> {
    /// The cache table, e.g. `btree:/var/lib/postfix/verify_cache`.
    pub table: &'a str,
    /// `full` or `partial`.
    pub scope: &'a str,
    pub retained: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
    Fatal,
    Panic,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic<'a> {
    pub severity: Severity,
    pub queue_id: Option<&'a str>,
    pub text: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceNote<'a> {
    /// Short machine-readable kind, e.g. `tlsproxy_connect`, `postfix_script`.
    pub kind: &'a str,
    pub queue_id: Option<&'a str>,
    /// The remote endpoint the line is about, when it names one.
    pub peer: Option<Endpoint<'a>>,
    pub text: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unparsed<'a> {
    /// Why the line was not understood (e.g. `unknown service`, `smtpd: unrecognised message`).
    pub reason: &'static str,
    pub text: &'a str,
}
