//! The events the tracker emits: one [`MessageEvent`] per step in the life of a message, with
//! what is known of the message at that step.

use std::sync::Arc;

use serde::Serialize;

use crate::parse::Timestamp;
use crate::parse::record::Delays;

/// What happened to a message (or, for `Rejected`, to a delivery attempt that never got queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new message entered the queue (first qmgr `from=` line of a queue id).
    Received,
    /// A recipient was delivered (`status=sent`).
    Delivered,
    /// A delivery attempt was deferred (`status=deferred`).
    Deferred,
    /// A recipient bounced (`status=bounced`).
    Bounced,
    /// The message reached `maximal_queue_lifetime` and was returned to the sender.
    Expired,
    /// smtpd, postscreen or cleanup (header/body/milter checks) rejected the mail.
    Rejected,
    /// Placed in the hold queue (access/header check `HOLD`, or `postsuper -h`).
    Held,
    /// Released from the hold queue (`postsuper -H`).
    Released,
    /// Silently discarded by an access or header/body check `DISCARD`.
    Discarded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Held => "held",
            Self::Released => "released",
            Self::Discarded => "discarded",
        }
    }
}

/// A delivery target as `host[ip]:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RelayTarget {
    pub host: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl std::fmt::Display for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host)?;
        if let Some(ip) = &self.ip {
            write!(f, "[{ip}]")?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// The SMTP client that handed the message to Postfix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub host: Arc<str>,
    pub ip: Arc<str>,
}

/// TLS parameters of the connection a message arrived on or was delivered over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    pub trust: Arc<str>,
    pub protocol: Arc<str>,
    pub cipher: Arc<str>,
}

/// One step in the life of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent {
    pub kind: EventKind,
    pub host: Arc<str>,
    pub instance: Arc<str>,
    pub queue_id: Arc<str>,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "serialize_at")]
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_recipient: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dsn: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_text: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delays: Option<Delays>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nrcpt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_user: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Arc<str>>,
    /// For `Deferred`: true on the first deferral the tracker has seen for this queue id.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub first_deferral: bool,
    /// Which daemon produced the event (`smtpd`, `postscreen`, `cleanup`, `smtp`, `qmgr`, ...).
    pub service: Arc<str>,
}

impl MessageEvent {
    /// An event with its identity set and every optional field empty.
    pub fn new(
        kind: EventKind,
        host: Arc<str>,
        instance: Arc<str>,
        queue_id: Arc<str>,
        at: Timestamp,
        service: Arc<str>,
    ) -> Self {
        Self {
            kind,
            host,
            instance,
            queue_id,
            at,
            sender: None,
            recipient: None,
            orig_recipient: None,
            relay: None,
            dsn: None,
            status_text: None,
            delay_secs: None,
            delays: None,
            size: None,
            nrcpt: None,
            tls: None,
            sasl_user: None,
            client: None,
            message_id: None,
            first_deferral: false,
            service,
        }
    }
}

fn serialize_at<S: serde::Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339())
}
