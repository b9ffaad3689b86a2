//! The shape of the traffic the generator writes: every probability behind a choice the engine
//! draws (who connects, how a session goes, how a delivery is logged), named in mail terms.
//!
//! [`super::SynthConfig`] holds the rates a user tunes (message mix, failure rates); this profile
//! holds the finer shape those rates leave open. [`TrafficProfile::TYPICAL`] is what the
//! generator has always used: changing a value changes every generated log.

/// Probabilities (0..1) of the engine's traffic choices, and the factors that scale the
/// configured failure rates for local delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TrafficProfile {
    // ------------------------------------------------------------ clients
    /// A submission client (home or office line) has no reverse DNS and is logged as `unknown`.
    pub(crate) submission_client_without_ptr: f64,
    /// A submission client greets with an address literal (`[192.168.1.23]`) rather than a
    /// laptop name.
    pub(crate) submission_helo_literal: f64,
    /// Inbound TLS (smtpd, submission) is negotiated as TLSv1.3 rather than TLSv1.2.
    pub(crate) inbound_tls13_share: f64,

    // ------------------------------------------------------------ port 25
    /// A port-25 message comes from the sender domain's own outbound servers rather than from an
    /// unknown host.
    pub(crate) inbound_from_sender_servers: f64,
    /// postscreen already knows the client (`PASS OLD`); otherwise it runs its after-greeting
    /// tests first (`PASS NEW`, about 6 s later).
    pub(crate) postscreen_pass_old: f64,
    /// An `unknown` client has a PTR name that does not resolve back to its address (smtpd logs
    /// `warning: hostname … does not resolve to address …`).
    pub(crate) unknown_client_has_ptr: f64,
    /// A known client of a completed or rejected port-25 session uses STARTTLS.
    pub(crate) inbound_tls_share: f64,
    /// An `unknown` client of a completed or rejected port-25 session uses STARTTLS.
    pub(crate) unknown_client_tls: f64,
    /// A session lost after EHLO or later had used STARTTLS before it was lost.
    pub(crate) lost_session_tls: f64,
    /// A port-25 session delivers a second message before QUIT.
    pub(crate) second_message_in_session: f64,
    /// A port-25 message has a single recipient (otherwise 2 to 4).
    pub(crate) inbound_single_rcpt: f64,
    /// A port-25 message from a domain without a provider-specific format is bulk mail from an
    /// email service provider (`bounces+…@emNNN.domain` envelope sender).
    pub(crate) inbound_bulk_sender: f64,
    /// A rejected session had one RCPT rejected (otherwise two).
    pub(crate) reject_single_rcpt: f64,
    /// After its RCPT was rejected the client sends RSET and QUIT, rather than dropping the
    /// connection (`lost connection after RCPT`).
    pub(crate) rejected_client_quits: f64,
    /// A client postscreen finds on Spamhaus ZEN is also listed by Barracuda.
    pub(crate) dnsbl_second_listing: f64,

    // ------------------------------------------------------------ submission and local mail
    /// A recipient of a submitted message is a local mailbox rather than a remote address.
    pub(crate) submission_local_rcpt: f64,
    /// A submission login uses SASL PLAIN rather than LOGIN.
    pub(crate) submission_sasl_plain: f64,
    /// A failed SASL login used LOGIN (`UGFzc3dvcmQ6`) rather than PLAIN.
    pub(crate) auth_failure_sasl_login: f64,
    /// A failed SASL login names the username it tried.
    pub(crate) auth_failure_names_user: f64,
    /// After a failed SASL login the client drops the connection rather than sending QUIT.
    pub(crate) auth_failure_drops_connection: f64,
    /// An application relaying through `postfix-out` sends to a single recipient (otherwise 2
    /// or 3).
    pub(crate) app_relay_single_rcpt: f64,
    /// Mail submitted through pickup (cron, scripts) goes to the local `root` alias rather than
    /// to a remote address.
    pub(crate) pickup_to_root: f64,

    // ------------------------------------------------------------ delivery
    /// A deferred recipient that does not expire is finally bounced rather than delivered.
    pub(crate) deferred_then_bounced: f64,
    /// Scales [`super::SynthConfig::deferral_rate`] for LMTP and `virtual` mailbox delivery.
    pub(crate) mailstore_defer_factor: f64,
    /// Scales [`super::SynthConfig::bounce_rate`] for LMTP and `virtual` mailbox delivery.
    pub(crate) mailstore_bounce_factor: f64,
    /// Scales [`super::SynthConfig::deferral_rate`] for `local` delivery to Unix mailboxes.
    pub(crate) unix_mailbox_defer_factor: f64,
    /// Scales [`super::SynthConfig::bounce_rate`] for `local` delivery to Unix mailboxes.
    pub(crate) unix_mailbox_bounce_factor: f64,
    /// A delivery to a domain with several MX hosts goes to the second one.
    pub(crate) second_mx_tried: f64,
    /// An SMTP delivery reuses a cached connection (`conn_use=N`, no TLS handshake logged).
    pub(crate) cached_connection_reused: f64,
    /// Outbound TLS is negotiated as TLSv1.3 rather than TLSv1.2.
    pub(crate) outbound_tls13_share: f64,
    /// An LMTP bounce is an over-quota mailbox rather than an unknown user.
    pub(crate) lmtp_bounce_over_quota: f64,
    /// `local` delivers into the mailbox file itself rather than through procmail.
    pub(crate) local_delivery_to_mailbox: f64,
}

impl TrafficProfile {
    /// The profile every generated log has used so far: a mid-sized mail server with mostly
    /// well-behaved senders.
    pub(crate) const TYPICAL: Self = Self {
        submission_client_without_ptr: 0.3,
        submission_helo_literal: 0.5,
        inbound_tls13_share: 0.8,

        inbound_from_sender_servers: 0.85,
        postscreen_pass_old: 0.8,
        unknown_client_has_ptr: 0.3,
        inbound_tls_share: 0.9,
        unknown_client_tls: 0.4,
        lost_session_tls: 0.4,
        second_message_in_session: 0.1,
        inbound_single_rcpt: 0.85,
        inbound_bulk_sender: 0.3,
        reject_single_rcpt: 0.8,
        rejected_client_quits: 0.6,
        dnsbl_second_listing: 0.5,

        submission_local_rcpt: 0.1,
        submission_sasl_plain: 0.7,
        auth_failure_sasl_login: 0.7,
        auth_failure_names_user: 0.4,
        auth_failure_drops_connection: 0.7,
        app_relay_single_rcpt: 0.9,
        pickup_to_root: 0.7,

        deferred_then_bounced: 0.1,
        mailstore_defer_factor: 0.3,
        mailstore_bounce_factor: 0.5,
        unix_mailbox_defer_factor: 0.1,
        unix_mailbox_bounce_factor: 0.0,
        second_mx_tried: 0.1,
        cached_connection_reused: 0.2,
        outbound_tls13_share: 0.85,
        lmtp_bounce_over_quota: 0.5,
        local_delivery_to_mailbox: 0.8,
    };
}

impl Default for TrafficProfile {
    fn default() -> Self {
        Self::TYPICAL
    }
}
