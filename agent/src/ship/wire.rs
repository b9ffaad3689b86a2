//! Agent values as the wire's messages: a [`MessageEvent`] as a raw `Event` of a batch.

use std::sync::Arc;

use mailpulse_proto::v1 as pb;

use crate::track::MessageEvent;

/// A [`MessageEvent`] as the wire's raw `Event` (the host is the agent's, in `Hello`).
pub fn wire_event(ev: &MessageEvent) -> pb::Event {
    let text = |v: &Option<Arc<str>>| v.as_deref().unwrap_or_default().to_owned();
    pb::Event {
        kind: ev.kind.as_str().to_owned(),
        instance: ev.instance.to_string(),
        queue_id: ev.queue_id.to_string(),
        at_unix_ms: ev.at.unix_secs.saturating_mul(1000) + i64::from(ev.at.nanos / 1_000_000),
        sender: text(&ev.sender),
        recipient: text(&ev.recipient),
        relay: ev
            .relay
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        dsn: text(&ev.dsn),
        status_text: text(&ev.status_text),
        delay_secs: ev.delay_secs.unwrap_or_default(),
        client_ip: ev
            .client
            .as_ref()
            .map(|c| c.ip.to_string())
            .unwrap_or_default(),
        sasl_user: text(&ev.sasl_user),
    }
}
