//! Why a delivery was deferred or bounced, as a short class.
//!
//! One classifier serves the queue snapshot (`delay_reason` of `postqueue -j`) and the log events
//! (the status text of deferred and bounced deliveries), so a deferral reads the same in both.
//! Input is the text Postfix logs or stores: a remote server's reply (`host mx[ip] said: 450 4.7.1
//! …`), a local error (`connect to mx[ip]:25: Connection refused`, `Host or domain name not
//! found…`) or a TLS failure; plus, when known, the RFC 3463 enhanced status code (`dsn=`).
//!
//! # How a reason is read
//!
//! The text is first *normalised* into a fixed stack buffer (no allocation; it runs per deferred
//! or bounced event): ASCII letters are lower-cased, punctuation becomes a single space,
//! apostrophes vanish (`doesn't` → `doesnt`) and dots survive only between digits (`5.1.1`).
//! Whole whitespace-separated chunks that name a party rather than say something are *masked*
//! (dropped): addresses (`<blocked@example.com>`, anything with `@`), host names with an address
//! (`mx.example.com[192.0.2.1]:25`), dotted names (`spamhaus-free.example`, `name=quota.example`),
//! URLs and absolute paths. So a recipient called `quota@…`, a relay called `block.example` or a
//! `…/blocked.html` link never decides a class; the words of the reply do. Only the first 2 KiB of
//! the normalised text is read; a reply's meaning is in its first lines.
//!
//! Postfix prefixes a remote reply with `host X said:` (or `host X refused to talk to me:`). The
//! part before it is the *local* part, the rest the *reply*; a text that starts with a reply code
//! is all reply, any other text (a local error) is both. The enhanced code is the first `d.d.d`
//! token of the reply, else the `dsn` argument.
//!
//! # Precedence (first match wins)
//!
//! 1. **Local failures** in the local part: TLS (`TLS is required…`, `Cannot start TLS`, certificate
//!    and TLSA failures) before routing loops before DNS (`Host or domain name not found`,
//!    `nullMX`) before connect (`Connection refused`/`timed out`, `lost connection`,
//!    `conversation … timed out`). TLS comes first because a session that dies in the TLS
//!    handshake is a TLS failure: the network worked, TLS did not.
//! 2. **Greylisting** words. Greylisting replies say "try again later" and carry 4.7.1, which would
//!    otherwise read as rate limiting or policy.
//! 3. **Enhanced codes that name their cause** beat the words around them: X.2.2 is `mailbox` even
//!    when the text says "try again later" (a full mailbox is retried for its own reason); Gmail's
//!    authentication and PTR codes X.7.20–X.7.27, X.7.30, X.7.32, X.7.40 are `policy-block` even
//!    when the text says "rate limited" (slowing down does not help, fixing SPF/DKIM/DMARC/PTR
//!    does); X.7.10, X.7.11, X.7.29 (encryption needed) are `tls`; 4.7.28 is `rate-limit` and
//!    5.7.28 `policy-block`; Microsoft's 4.7.500–4.7.899 (temporary IP throttling, `ASxxx`/`S775`)
//!    are `rate-limit` and 5.7.500–5.7.799 (banned IP, DMARC reject, tenant blocks)
//!    `policy-block`.
//! 4. **Reply words**, in this order: TLS (`TLS required`, `must issue a STARTTLS`), a dropped
//!    session (`connection expired`), rate limiting (`rate limited`, `too many connections`,
//!    `receiving mail too quickly`, `unexpected volume`), mailbox (`over quota`, `mailbox full`),
//!    DNS (`domain not found`), user unknown (`user unknown`, `does not exist`), policy (`blocked`,
//!    `spamhaus`, `spam`, `policy`, `denied`). Rate limiting comes before policy because throttle
//!    texts justify themselves with policy words ("unusual rate of unsolicited mail … to protect
//!    our users from spam … temporarily rate limited"); mailbox before user unknown because Orange
//!    sends "Recipient overquota" with 5.1.1; user unknown before policy because unknown-recipient
//!    replies often explain themselves with "rejected" or "denied".
//! 5. **Codes alone**: X.1.1, X.1.6, X.2.1 `user-unknown`; X.1.2 `dns`; 4.7.1 with "try again
//!    later" and nothing else is `greylisting` (rspamd's greylisting reply); `421 4.7.0` with nothing
//!    else is `rate-limit` (Gmail's "Try again later, closing connection"); X.7.4/X.7.5 `tls`;
//!    other X.7.x `policy-block`; for local errors only, Postfix's own X.4.1/X.4.2 are `connect`
//!    and X.4.3/X.4.4 `dns` (remote servers reuse X.4.x for their own troubles).
//! 6. Anything else is `other`.
//!
//! # Decisions
//!
//! - `mail for example.com loops back to myself` is `other`: the MX lookup worked and pointed at
//!   this host, which is a routing or `mydestination` mistake, not a name that fails to resolve.
//! - DMARC/SPF/DKIM rejections (5.7.26, Microsoft 5.7.509) are `policy-block`.
//! - Microsoft's `550 5.5.0 Requested action not taken: mailbox unavailable` (outlook.com for a
//!   mailbox that does not exist) and `550 5.4.1 Recipient address rejected: Access denied`
//!   (Exchange Online directory-based edge blocking: no such recipient in the tenant) are
//!   `user-unknown`; "mailbox unavailable" counts only on a permanent (5xx) reply, since a 450
//!   says the mailbox is busy, and "Recipient address rejected: Access denied" only with 5.4.1,
//!   since with 5.7.1 it is Postfix's access-table reject (`policy-block`).
//! - A disabled, inactive or deleted account (X.2.1, "is inactive", "no longer valid") is
//!   `user-unknown`: the remedy, removing the address, is the same.
//! - Yahoo's `[TSS04] … temporarily deferred due to unexpected volume or user complaints` and
//!   Gmail's "temporarily rate limited" are `rate-limit`; "permanently deferred" (Yahoo TSS09) and
//!   "blocked" are `policy-block`. Mimecast's `451 Internal resource temporarily unavailable` is
//!   its greylisting reply and so `greylisting`.
//! - A lost or timed-out session during the TLS handshake, a TLSA lookup failure (DANE) and a
//!   certificate that fails verification are `tls`.
//!
//! Invariants: `classify` never panics (proptest-checked over arbitrary text, fragment soup and
//! cut real replies) and never allocates (the buffer lives on the stack); every input that
//! matches nothing is [`ReasonClass::Other`]; the names of hosts and addresses never change a
//! class (proptest-checked by renaming the parties of every table row).

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
/// that matches nothing is [`ReasonClass::Other`]. See the module documentation for the rules.
pub fn classify(dsn: Option<&str>, text: &str) -> ReasonClass {
    let normalized = Normalized::new(text);
    let view = View::new(normalized.as_str());
    let code = view
        .code
        .or_else(|| dsn.and_then(|d| Enhanced::parse(d.trim())));

    if let Some(class) = local_failure(view.local) {
        return class;
    }
    let reply = view.reply;
    if has(reply, GREYLISTING) {
        return ReasonClass::Greylisting;
    }
    if let Some(class) = code.and_then(Enhanced::decisive) {
        return class;
    }
    let by_words = [
        (TLS_REPLY, ReasonClass::Tls),
        (SESSION_REPLY, ReasonClass::Connect),
        (RATE_LIMIT, ReasonClass::RateLimit),
        (MAILBOX, ReasonClass::Mailbox),
        (DNS_REPLY, ReasonClass::Dns),
        (USER_UNKNOWN, ReasonClass::UserUnknown),
    ];
    if let Some((_, class)) = by_words.iter().find(|(needles, _)| has(reply, needles)) {
        return *class;
    }
    let permanent = view.reply_code.is_some_and(|c| c >= 500) || code.is_some_and(|c| c.class == 5);
    if (permanent && has(reply, USER_UNKNOWN_IF_PERMANENT)) || is_directory_edge_block(code, reply)
    {
        return ReasonClass::UserUnknown;
    }
    if has(reply, POLICY) {
        return ReasonClass::PolicyBlock;
    }
    code.map_or(ReasonClass::Other, |c| c.fallback(&view))
}

/// Exchange Online's directory-based edge blocking: `550 5.4.1 Recipient address rejected: Access
/// denied` means the tenant has no such recipient. With any other code the same words are an
/// access-table reject (Postfix's `check_recipient_access … REJECT`), i.e. policy.
fn is_directory_edge_block(code: Option<Enhanced>, reply: &str) -> bool {
    code == Some(Enhanced {
        class: 5,
        subject: 4,
        detail: 1,
    }) && reply.contains(" recipient address rejected access denied")
}

/// Local failures, checked in the part before `host X said:` (see precedence step 1).
fn local_failure(local: &str) -> Option<ReasonClass> {
    if has(local, LOCAL_TLS) {
        Some(ReasonClass::Tls)
    } else if has(local, ROUTING_LOOP) {
        Some(ReasonClass::Other)
    } else if has(local, LOCAL_DNS) {
        Some(ReasonClass::Dns)
    } else if has(local, LOCAL_CONNECT) {
        Some(ReasonClass::Connect)
    } else {
        None
    }
}

// Needles match normalised text: lower case, words separated by one space, the whole text padded
// with a space on each side. A leading space anchors a needle at a word start; without a trailing
// space it is a prefix (` block` matches "blocked", "blocklisted", "block list").

const LOCAL_TLS: &[&str] = &[
    " tls is required",
    " cannot start tls",
    " server certificate not",
    " certificate verification failed",
    " tlsa lookup error",
    " tls handshake",
    " ssl_connect error",
    " untrusted issuer",
];

const ROUTING_LOOP: &[&str] = &[" loops back to myself"];

const LOCAL_DNS: &[&str] = &[
    " host or domain name not found",
    " name service error",
    " nullmx",
    " name server reply",
    " name or service not known",
    " temporary failure in name resolution",
];

const LOCAL_CONNECT: &[&str] = &[
    " connect to ",
    " connection refused",
    " connection timed out",
    " connection reset",
    " no route to host",
    " network is unreachable",
    " host is unreachable",
    " host is down",
    " lost connection with",
    " conversation with",
    " timed out while",
];

const GREYLISTING: &[&str] = &[
    " greylist",
    " graylist",
    " grey list",
    " gray list",
    " postgrey",
    " internal resource temporarily unavailable",
    " internal resources are temporarily unavailable",
];

const TLS_REPLY: &[&str] = &[
    " tls required",
    " tls is required",
    " requires tls",
    " must issue a starttls",
    " starttls",
    " tls not available",
    " requires encryption",
    " encryption required",
    " encryption needed",
    " tls version",
    " mta sts",
];

/// Remote replies that end the session for a reason of its own, not a policy.
const SESSION_REPLY: &[&str] = &[" connection expired", " timeout closing connection"];

const RATE_LIMIT: &[&str] = &[
    " rate limit",
    " ratelimit",
    " throttl",
    " too many connections",
    " too many concurrent",
    " too many simultaneous",
    " too many sessions",
    " too many messages",
    " too many recipients",
    " concurrent connections",
    " connection limit",
    " connection rate",
    " too quickly",
    " at a rate that prevents",
    " unusual rate",
    " unexpected volume",
    " excessive volume",
    " user complaints",
    " excessive unknown recipients",
    " max message per connection",
    " thread limit",
    " relay limit exceeded",
    " sending limit exceeded",
    " quota for sending",
    " per transaction exceeded",
    " sending quota",
    " limits for how many",
    " slow down",
    " server busy",
    " too busy",
];

const MAILBOX: &[&str] = &[
    " mailbox full",
    " mailbox is full",
    " mailbox has exceeded",
    " mailbox size limit",
    " full mailbox",
    " inbox is full",
    " over quota",
    " overquota",
    " quota exceeded",
    " quota limit",
    " disk quota",
    " exceeded storage",
    " storage allocation",
    " out of storage",
    " user is over",
    " file too large",
    " boite du destinataire pleine",
];

const DNS_REPLY: &[&str] = &[
    " domain not found",
    " domain does not exist",
    " no such domain",
    " unknown domain",
    " find the recipient domain",
    " host unknown",
];

const USER_UNKNOWN: &[&str] = &[
    " user unknown",
    " unknown user",
    " unknown recipient",
    " recipient unknown",
    " unknown or illegal alias",
    " no such user",
    " no such recipient",
    " no such mailbox",
    " invalid recipient",
    " invalid mailbox",
    " recipient not found",
    " mailbox not found",
    " user not found",
    " does not exist",
    " doesnt exist",
    " doesnt have a ",
    " no mailbox",
    " not a valid mailbox",
    " no longer valid",
    " no longer on server",
    " mailbox is disabled",
    " mailbox disabled",
    " account is disabled",
    " account has been disabled",
    " inactive",
    " bad destination mailbox",
    " not listed in domino directory",
    " not listed in public name",
];

/// "Mailbox unavailable" is RFC 5321's text for 550 (not found, no access) and for 450 (busy);
/// only the permanent one says the recipient is gone.
const USER_UNKNOWN_IF_PERMANENT: &[&str] = &[" mailbox unavailable"];

const POLICY: &[&str] = &[
    " block",
    " blacklist",
    " black list",
    " denylist",
    " deny list",
    " banned",
    " listed",
    " spamhaus",
    " spamcop",
    " barracuda",
    " sorbs",
    " dnsbl",
    " rbl ",
    " cloudmark",
    " reputation",
    " spam",
    " unsolicited",
    " phish",
    " spoof",
    " virus",
    " malware",
    " policy",
    " policies",
    " dmarc",
    " spf ",
    " dkim",
    " unauthenticated",
    " authentication checks",
    " authenticate with",
    " not authorized",
    " not allowed",
    " not permitted",
    " prohibit",
    " denied",
    " refuse",
    " whitelist",
    " allowlist",
    " permanently deferred",
    " will not be accepted",
    " not accepted from",
    " not accepting",
    " mail rejected",
    " message rejected",
    " content rejected",
    " rejected due to",
    " rejected by",
    " client host rejected",
    " sender address rejected",
    " reverse dns",
    " reverse hostname",
    " ptr record",
    " dynamic ip",
    " dynamically assigned",
    " open relay",
];

/// A 4.7.1 deferral that only asks to come back later is a greylisting reply.
const RETRY_LATER: &[&str] = &[
    " try again later",
    " try later",
    " retry later",
    " come back later",
    " come back in",
];

fn has(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Enhanced {
    class: u8,
    subject: u16,
    detail: u16,
}

impl Enhanced {
    /// `4.7.1` → code; anything else (IPs, `4.16.55.1`, `5.x`) → `None`.
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let class = match parts.next()? {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        let number = |p: &str| -> Option<u16> {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let subject = number(parts.next()?)?;
        let detail = number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            class,
            subject,
            detail,
        })
    }

    /// Codes specific enough to beat the words around them (precedence step 3).
    fn decisive(self) -> Option<ReasonClass> {
        match (self.class, self.subject, self.detail) {
            (4 | 5, 2, 2) => Some(ReasonClass::Mailbox),
            (4, 7, 28) => Some(ReasonClass::RateLimit),
            (5, 7, 28) => Some(ReasonClass::PolicyBlock),
            (4 | 5, 7, 20..=27 | 30 | 32 | 40) => Some(ReasonClass::PolicyBlock),
            (4 | 5, 7, 10 | 11 | 29) => Some(ReasonClass::Tls),
            (4, 7, 500..=899) => Some(ReasonClass::RateLimit),
            (5, 7, 500..=799) => Some(ReasonClass::PolicyBlock),
            _ => None,
        }
    }

    /// What the code says when no words did (precedence step 5).
    fn fallback(self, view: &View<'_>) -> ReasonClass {
        match (self.class, self.subject, self.detail) {
            (_, 1, 1 | 6) | (_, 2, 1) => ReasonClass::UserUnknown,
            (_, 1, 2) => ReasonClass::Dns,
            (4, 7, 1) if has(view.reply, RETRY_LATER) => ReasonClass::Greylisting,
            (4, 7, 0) if view.reply_code == Some(421) => ReasonClass::RateLimit,
            (_, 7, 4 | 5) => ReasonClass::Tls,
            (_, 7, _) => ReasonClass::PolicyBlock,
            (_, 4, 1 | 2) if !view.remote => ReasonClass::Connect,
            (_, 4, 3 | 4) if !view.remote => ReasonClass::Dns,
            _ => ReasonClass::Other,
        }
    }
}

/// The normalised text split into its local and reply parts, with the codes found in the reply.
struct View<'a> {
    /// Postfix's own words (before `host X said:`); `" "` for a bare reply.
    local: &'a str,
    /// The remote reply, or the whole text for a local error.
    reply: &'a str,
    /// The basic SMTP reply code when the reply starts with one.
    reply_code: Option<u16>,
    /// The first enhanced status code in the reply.
    code: Option<Enhanced>,
    /// Whether the text carries a remote server's reply at all.
    remote: bool,
}

impl<'a> View<'a> {
    const REPLY_MARKERS: [&'static str; 2] = [" said ", " refused to talk to me "];

    fn new(text: &'a str) -> Self {
        let split = Self::REPLY_MARKERS
            .iter()
            .filter_map(|m| text.find(m).map(|at| (at, m.len())))
            .min();
        let (local, reply) = match split {
            // Both halves keep a space at their edges so anchored needles still match.
            Some((at, len)) => (&text[..=at], &text[at + len - 1..]),
            None if reply_code(first_token(text)).is_some() => (" ", text),
            None => (text, text),
        };
        let reply_code = reply_code(first_token(reply));
        Self {
            local,
            reply,
            reply_code,
            code: reply.split(' ').find_map(Enhanced::parse),
            remote: split.is_some() || reply_code.is_some(),
        }
    }
}

fn first_token(text: &str) -> &str {
    text.split(' ').find(|t| !t.is_empty()).unwrap_or("")
}

fn reply_code(token: &str) -> Option<u16> {
    let b = token.as_bytes();
    if b.len() == 3 && matches!(b[0], b'2'..=b'5') && b.iter().all(u8::is_ascii_digit) {
        token.parse().ok()
    } else {
        None
    }
}

/// Capacity of the normalisation buffer; longer texts are read up to here.
const NORMALIZED_CAP: usize = 2048;

/// Normalised reason text on the stack: see the module documentation.
struct Normalized {
    buf: [u8; NORMALIZED_CAP],
    len: usize,
}

impl Normalized {
    fn new(text: &str) -> Self {
        let mut n = Self {
            buf: [0; NORMALIZED_CAP],
            len: 0,
        };
        n.push(b' ');
        for chunk in text.split_ascii_whitespace() {
            if n.len + 1 >= NORMALIZED_CAP {
                break;
            }
            if !is_masked(chunk) {
                n.push_chunk(chunk.as_bytes());
            }
            n.separate();
        }
        n.separate();
        n
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes are ever pushed, so this is always valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or(" ")
    }

    /// Appends a byte, keeping the last slot free for the closing space.
    fn push(&mut self, b: u8) {
        if self.len + 1 < NORMALIZED_CAP {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    /// Ends the current word (one space, never two).
    fn separate(&mut self) {
        if self.len < NORMALIZED_CAP && self.len > 0 && self.buf[self.len - 1] != b' ' {
            self.buf[self.len] = b' ';
            self.len += 1;
        }
    }

    fn push_chunk(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() {
            match chunk[i] {
                b @ (b'a'..=b'z' | b'0'..=b'9' | b'_') => self.push(b),
                b @ b'A'..=b'Z' => self.push(b.to_ascii_lowercase()),
                b'.' if self.last_is_digit()
                    && chunk.get(i + 1).is_some_and(u8::is_ascii_digit) =>
                {
                    self.push(b'.')
                }
                b'\'' => {}
                // U+2019 RIGHT SINGLE QUOTATION MARK, the typographic apostrophe.
                0xE2 if chunk.get(i + 1..i + 3) == Some(&[0x80, 0x99][..]) => i += 2,
                _ => self.separate(),
            }
            i += 1;
        }
    }

    fn last_is_digit(&self) -> bool {
        self.len > 0 && self.buf[self.len - 1].is_ascii_digit()
    }
}

/// Whether a whitespace-separated chunk names a party (address, host, URL, path) rather than
/// saying something; such chunks never take part in matching.
fn is_masked(chunk: &str) -> bool {
    let b = chunk.as_bytes();
    if b.contains(&b'@') || chunk.contains("://") {
        return true;
    }
    if chunk
        .trim_start_matches(['(', '<', '"', '\''])
        .starts_with('/')
    {
        return true;
    }
    // `mx.example.com[192.0.2.1]:25`, `unknown[192.0.2.1]`; a leading `[TSS04]` stays.
    if let Some(at) = chunk.find('[')
        && at > 0
        && b[at - 1].is_ascii_alphanumeric()
    {
        return true;
    }
    // A dotted name: a dot with a letter somewhere before it and somewhere after it
    // (`example.com`, `name=quota.example`), but not `4.7.1`, `192.0.2.1` or `TLSv1.2`.
    let first_letter = b.iter().position(u8::is_ascii_alphabetic);
    let last_letter = b.iter().rposition(u8::is_ascii_alphabetic);
    match (first_letter, last_letter) {
        (Some(first), Some(last)) => b[first..last].contains(&b'.'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(text: &str) -> String {
        Normalized::new(text).as_str().to_owned()
    }

    #[test]
    fn normalisation_keeps_words_and_codes_and_masks_parties() {
        assert_eq!(
            normalized(
                "host mx.block.example[192.0.2.1] said: 550-5.1.1 <quota@example.com>: \
                 Recipient doesn't exist; see https://example.com/blocked (in reply to RCPT TO)"
            ),
            " host said 550 5.1.1 recipient doesnt exist see in reply to rcpt to "
        );
        assert_eq!(
            normalized("name=spamhaus-free.example type=MX: [TSS04] 4.16.55.1; S3150"),
            " type mx tss04 4.16.55.1 s3150 "
        );
        assert_eq!(normalized("It’s TLSv1.2"), " its tlsv1.2 ");
        assert_eq!(normalized(""), " ");
        assert_eq!(normalized("   \t "), " ");
    }

    #[test]
    fn long_text_is_cut_at_the_buffer_without_losing_the_closing_space() {
        let text = "word ".repeat(2000);
        let n = Normalized::new(&text);
        assert!(n.len <= NORMALIZED_CAP);
        assert!(n.as_str().ends_with(' '), "closing space kept");
        let unbroken = "x".repeat(5000);
        assert!(Normalized::new(&unbroken).as_str().ends_with(' '));
    }

    #[test]
    fn view_splits_local_and_reply_and_finds_codes() {
        let n = Normalized::new("host mx[192.0.2.1] said: 451 4.7.1 Try again later");
        let v = View::new(n.as_str());
        assert_eq!(v.local, " host ");
        assert_eq!(v.reply, " 451 4.7.1 try again later ");
        assert_eq!(v.reply_code, Some(451));
        assert_eq!(v.code, Enhanced::parse("4.7.1"));
        assert!(v.remote);

        let n = Normalized::new("550 5.1.1 user unknown");
        let v = View::new(n.as_str());
        assert_eq!(v.local, " ");
        assert_eq!(v.reply_code, Some(550));

        let n = Normalized::new("connect to mx[192.0.2.1]:25: Connection refused");
        let v = View::new(n.as_str());
        assert_eq!(v.local, v.reply);
        assert!(!v.remote);
    }

    #[test]
    fn enhanced_codes_parse_strictly() {
        assert_eq!(
            Enhanced::parse("4.7.650"),
            Some(Enhanced {
                class: 4,
                subject: 7,
                detail: 650
            })
        );
        for bad in [
            "",
            "4",
            "4.7",
            "4.7.",
            "3.1.1",
            "4.16.55.1",
            "4.x.1",
            "4.7.1000",
            "45.1.1",
        ] {
            assert_eq!(Enhanced::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn code_precedence_examples_from_the_module_doc() {
        use ReasonClass::*;
        let cases = [
            (None, "452 4.2.2 Mailbox full, try again later", Mailbox),
            (
                None,
                "421 4.7.26 This email has been rate limited because it is unauthenticated.",
                PolicyBlock,
            ),
            (
                None,
                "421 4.7.29 Your email has been rate limited because you're not using a TLS connection.",
                Tls,
            ),
            (
                None,
                "552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]",
                Mailbox,
            ),
            (Some("5.1.1"), "", UserUnknown),
            (
                Some("4.4.1"),
                "connect to mx.example.com[192.0.2.1]:25: Operation not permitted",
                Connect,
            ),
            (
                Some("4.4.4"),
                "host mx[192.0.2.1] said: 451 4.4.4 Temporary server error",
                Other,
            ),
            (None, "451 4.7.1 Try again later", Greylisting),
            (
                None,
                "421 4.7.0 Try again later, closing connection.",
                RateLimit,
            ),
            (
                None,
                "450 Requested mail action not taken: mailbox unavailable",
                Other,
            ),
            (
                None,
                "550 Requested action not taken: mailbox unavailable",
                UserUnknown,
            ),
            (None, "mail for example.com loops back to myself", Other),
        ];
        for (dsn, text, want) in cases {
            assert_eq!(classify(dsn, text), want, "{dsn:?} {text:?}");
        }
    }
}
