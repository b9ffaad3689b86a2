//! Why a delivery was deferred or bounced, as a short class.
//!
//! One classifier serves the queue snapshot (`delay_reason` of `postqueue -j`) and the log events
//! (the status text of deferred and bounced deliveries), so a deferral reads the same in both.
//! Input is the text Postfix logs or stores: a remote server's reply (`host mx[ip] said: 450 4.7.1
//! …`), a local error (`connect to mx[ip]:25: Connection refused`, `Host or domain name not
//! found…`) or a TLS failure; plus, when known, the RFC 3463 enhanced status code.

use serde::Serialize;

/// The classes a deferral or bounce reason falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonClass {
    /// The destination does not resolve: no MX/A, NXDOMAIN, SERVFAIL, lookup timeouts.
    Dns,
    /// No SMTP session: connection refused, timed out, no route, lost connection, greeting timeout.
    Connect,
    /// TLS handshake or certificate verification failed, or TLS was required and not offered.
    Tls,
    /// The receiver asked to retry later to test the sender (451/450 4.7.1 greylisted).
    Greylisting,
    /// The receiver throttles the sender: 421 4.7.0 / 4.7.28, "too many connections/messages".
    RateLimit,
    /// The mailbox cannot take the message: full, over quota (4.2.2 / 5.2.2).
    Mailbox,
    /// The receiver refuses on policy or reputation: 5.7.1 blocked, blacklisted, listed by Spamhaus.
    PolicyBlock,
    /// The recipient does not exist (5.1.1).
    UserUnknown,
    /// Anything else.
    Other,
}

impl ReasonClass {
    /// Every class, in label order.
    pub const ALL: [ReasonClass; 9] = [
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::Greylisting,
        Self::RateLimit,
        Self::Mailbox,
        Self::PolicyBlock,
        Self::UserUnknown,
        Self::Other,
    ];

    /// The label value: `dns`, `connect`, `tls`, `greylisting`, `rate-limit`, `mailbox`,
    /// `policy-block`, `user-unknown`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Greylisting => "greylisting",
            Self::RateLimit => "rate-limit",
            Self::Mailbox => "mailbox",
            Self::PolicyBlock => "policy-block",
            Self::UserUnknown => "user-unknown",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ReasonClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a deferral or bounce reason. `dsn` is the enhanced status code when the caller has
/// it separately (a delivery line's `dsn=`); `text` is the reason text. Never panics; any input
/// that matches nothing is [`ReasonClass::Other`].
pub fn classify(dsn: Option<&str>, text: &str) -> ReasonClass {
    let lower = text.to_ascii_lowercase();
    let t = lower.as_str();
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    let code = dsn.unwrap_or("");
    if has(&["greylist", "graylist", "try again later, greylisted"]) {
        return ReasonClass::Greylisting;
    }
    if has(&[
        "host or domain name not found",
        "name service error",
        "no mx",
        "nxdomain",
        "domain not found",
        "mail for",
    ]) && !has(&["loops back to myself"])
    {
        return ReasonClass::Dns;
    }
    if has(&[
        "tls is required",
        "starttls",
        "certificate verification failed",
        "ssl_connect error",
        "tls handshake",
        "cannot start tls",
        "handshake failed",
    ]) {
        return ReasonClass::Tls;
    }
    if has(&[
        "connection refused",
        "connection timed out",
        "no route to host",
        "network is unreachable",
        "lost connection",
        "conversation with",
        "timed out while",
        "connect to",
    ]) {
        return ReasonClass::Connect;
    }
    if code == "4.7.28" || code.starts_with("4.7.0") && has(&["rate", "too many", "throttl"]) {
        return ReasonClass::RateLimit;
    }
    if has(&[
        "too many",
        "rate limit",
        "ratelimit",
        "rate-limit",
        "throttl",
        "deferred due to",
        "try again later",
    ]) && !has(&["user unknown"])
    {
        return ReasonClass::RateLimit;
    }
    if matches!(code, "4.2.2" | "5.2.2")
        || has(&["mailbox full", "over quota", "quota exceeded", "mailbox is full"])
    {
        return ReasonClass::Mailbox;
    }
    if code == "5.1.1"
        || has(&[
            "user unknown",
            "no such user",
            "does not exist",
            "recipient address rejected",
        ])
    {
        return ReasonClass::UserUnknown;
    }
    if has(&[
        "spamhaus",
        "blocked",
        "blacklist",
        "blocklist",
        "denylist",
        "policy",
        "spam",
        "reputation",
    ]) || code == "5.7.1"
    {
        return ReasonClass::PolicyBlock;
    }
    ReasonClass::Other
}
