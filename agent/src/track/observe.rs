//! Records → events: [`Tracker::observe`] dispatches each record to the handler of its daemon
//! group, which updates the instance's state and emits the [`MessageEvent`]s the record completes.

use std::sync::Arc;

use super::event::{ClientInfo, EventKind, MessageEvent, RelayTarget, TlsInfo};
use super::state::{Instance, InstanceState, MessageState, PeerAddr, ServiceTable};
use super::{RecordOrigin, Tracker};
use crate::parse::Timestamp;
use crate::parse::record::{
    CheckAction, Cleanup, Delivery, DeliveryStatus, Endpoint, Postscreen, Postsuper, Qmgr, Record,
    Reply, Smtpd,
};

impl Tracker {
    /// Takes one record and appends the events it completes to `out`.
    pub fn observe(
        &mut self,
        origin: RecordOrigin<'_>,
        record: &Record<'_>,
        out: &mut Vec<MessageEvent>,
    ) {
        self.observed += 1;
        if self.observed.is_multiple_of(65_536) {
            self.sweep(origin.at.unix_secs);
        }
        let idx = self.instance_index(origin.host, origin.program.instance);
        let surplus_name;
        let (service, service_id) = match self.services.id(origin.program.service) {
            Some(id) => (&self.services.names[usize::from(id)], id),
            None => {
                surplus_name = Arc::from(origin.program.service);
                (&surplus_name, ServiceTable::OVERFLOW_ID)
            }
        };
        let now = origin.at.unix_secs;
        let max_sessions = self.config.max_sessions;
        let Instance {
            host,
            instance,
            state: inst,
        } = &mut self.instances[idx];
        let ctx = Ctx {
            host,
            instance,
            at: origin.at,
            service,
        };
        let session_key = origin.pid.map(|pid| (service_id, pid));
        match record {
            Record::Qmgr(q) => observe_qmgr(inst, &ctx, q, out),
            Record::Delivery(d) => {
                // Outbound TLS is logged by the same smtp/lmtp process just before the delivery,
                // for the connection to the relay the delivery line names.
                let relay_ip = d.relay.as_ref().and_then(|r| r.ip);
                let tls = session_key
                    .and_then(|k| inst.sessions.get(&k))
                    .and_then(|s| s.tls.as_ref())
                    .filter(|(peer_ip, _)| relay_ip.is_some_and(|ip| peer_ip.is(ip)))
                    .map(|(_, tls)| tls.clone());
                observe_delivery(inst, &ctx, d, tls, out);
            }
            Record::Smtpd(s) => observe_smtpd(inst, &ctx, session_key, s, max_sessions, out),
            Record::Postscreen(Postscreen::Reject {
                client,
                reply,
                envelope,
                ..
            }) => {
                let mut ev = ctx.event(EventKind::Rejected, "NOQUEUE", None);
                fill_reject(
                    &mut ev,
                    Some(client),
                    Some(reply),
                    envelope.from,
                    envelope.to,
                );
                out.push(ev);
            }
            Record::Cleanup(c) => observe_cleanup(inst, &ctx, c, out),
            Record::Postsuper(p) => observe_postsuper(inst, &ctx, p, out),
            Record::Tls(t) => {
                if let Some(key) = session_key {
                    let tls = inst.tls_info(t);
                    let s = inst.session_mut(key, now, max_sessions);
                    s.tls = Some((PeerAddr::new(t.peer.ip), tls));
                }
            }
            _ => {}
        }
        if inst.messages.len() > self.config.max_messages {
            self.evict_overflow();
        }
    }
}

/// What every event of one record shares. Borrows the instance's names: events clone them, lines
/// without events cost no reference counting.
struct Ctx<'t> {
    host: &'t Arc<str>,
    instance: &'t Arc<str>,
    at: Timestamp,
    service: &'t Arc<str>,
}

impl Ctx<'_> {
    fn event(&self, kind: EventKind, queue_id: &str, shared: Option<&Arc<str>>) -> MessageEvent {
        MessageEvent::new(
            kind,
            self.host.clone(),
            self.instance.clone(),
            shared.map_or_else(|| Arc::from(queue_id), Arc::clone),
            self.at,
            self.service.clone(),
        )
    }

    /// An event for a known queue id, carrying what the tracker knows of the message.
    fn message_event(
        &self,
        kind: EventKind,
        queue_id: &str,
        m: Option<&MessageState>,
    ) -> MessageEvent {
        let mut ev = self.event(kind, queue_id, m.map(|m| &m.queue_id));
        if let Some(m) = m {
            ev.sender = m.sender.clone();
            ev.size = m.size;
            ev.nrcpt = m.nrcpt;
            ev.client = m.client.clone();
            ev.sasl_user = m.sasl_user.clone();
            ev.tls = m.tls.clone();
            ev.message_id = m.message_id.clone();
        }
        ev
    }
}

fn observe_qmgr(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    q: &Qmgr<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match q {
        Qmgr::From {
            queue_id,
            sender,
            size_bytes,
            nrcpt,
        } => inst.with_message(queue_id, now, |m| {
            if m.sender.as_deref() != Some(*sender) {
                m.sender = Some(Arc::from(*sender));
            }
            m.size = Some(*size_bytes);
            m.nrcpt = Some(*nrcpt);
            if !m.received {
                m.received = true;
                out.push(ctx.message_event(EventKind::Received, queue_id, Some(m)));
            }
        }),
        Qmgr::Expired {
            queue_id,
            sender,
            text,
        } => {
            let m = inst.touch(queue_id, now);
            let mut ev = ctx.message_event(EventKind::Expired, queue_id, m);
            if ev.sender.is_none() {
                ev.sender = Some(Arc::from(*sender));
            }
            ev.status_text = Some(Arc::from(*text));
            out.push(ev);
        }
        Qmgr::Removed { queue_id } => {
            inst.messages.remove(*queue_id);
        }
        Qmgr::Note { .. } => {}
    }
}

fn observe_delivery(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    d: &Delivery<'_>,
    session_tls: Option<TlsInfo>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    let kind = match d.status {
        DeliveryStatus::Sent => EventKind::Delivered,
        DeliveryStatus::Deferred => EventKind::Deferred,
        DeliveryStatus::Bounced => EventKind::Bounced,
        // `status=expired` on a recipient line is logged by some versions instead of the qmgr line.
        DeliveryStatus::Expired => EventKind::Expired,
        // Address verification probes (`sendmail -bv`, verify(8)) deliver nothing.
        DeliveryStatus::Deliverable | DeliveryStatus::Undeliverable | DeliveryStatus::Other => {
            inst.touch(d.queue_id, now);
            return;
        }
    };
    let mut ev = if kind == EventKind::Deferred {
        inst.with_message(d.queue_id, now, |m| {
            let first_deferral = !std::mem::replace(&mut m.deferred, true);
            let mut ev = ctx.message_event(kind, d.queue_id, Some(m));
            ev.first_deferral = first_deferral;
            ev
        })
    } else {
        let m = inst.touch(d.queue_id, now);
        ctx.message_event(kind, d.queue_id, m)
    };
    ev.recipient = Some(Arc::from(d.to));
    ev.orig_recipient = d.orig_to.map(Arc::from);
    ev.relay = d.relay.as_ref().map(|r| {
        inst.relays.get(r.raw, || RelayTarget {
            host: Arc::from(r.host),
            ip: r.ip.map(Arc::from),
            port: r.port,
        })
    });
    ev.dsn = d.dsn.map(|dsn| inst.dsns.get(dsn, || Arc::from(dsn)));
    ev.status_text = (!d.status_text.is_empty()).then(|| Arc::from(d.status_text));
    ev.delay_secs = d.delay_secs;
    ev.delays = d.delays;
    // The delivery's own (outbound) TLS session replaces the inbound TLS of the message.
    ev.tls = session_tls;
    out.push(ev);
}

fn observe_smtpd(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    session_key: Option<(u16, u32)>,
    s: &Smtpd<'_>,
    max_sessions: usize,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match s {
        Smtpd::Connect { .. } => {
            if let Some(key) = session_key {
                let st = inst.session_mut(key, now, max_sessions);
                st.tls = None;
                st.pending_hold = false;
            }
        }
        Smtpd::Disconnect { .. } => {
            if let Some(key) = session_key {
                inst.sessions.remove(&key);
            }
        }
        Smtpd::Client {
            queue_id,
            client,
            sasl_username,
            ..
        } => {
            let (tls, pending_hold) = match session_key {
                Some(key) => {
                    let st = inst.session_mut(key, now, max_sessions);
                    (
                        st.tls.as_ref().map(|(_, tls)| tls.clone()),
                        std::mem::take(&mut st.pending_hold),
                    )
                }
                None => (None, false),
            };
            inst.with_message(queue_id, now, |m| {
                m.client = Some(client_info(client));
                m.sasl_user = sasl_username.map(Arc::from);
                m.tls = tls;
                if pending_hold && !m.held {
                    m.held = true;
                    out.push(ctx.message_event(EventKind::Held, queue_id, Some(m)));
                }
            });
        }
        Smtpd::Check {
            queue_id,
            action,
            client,
            reply,
            envelope,
            ..
        } => {
            let Some(kind) = check_event_kind(*action) else {
                return;
            };
            match (kind, queue_id) {
                (EventKind::Held, None) => {
                    // The queue file does not exist yet; the session's next `client=` names it.
                    if let Some(key) = session_key {
                        inst.session_mut(key, now, max_sessions).pending_hold = true;
                    }
                }
                (EventKind::Held, Some(q)) => inst.with_message(q, now, |m| {
                    if !m.held {
                        m.held = true;
                        let mut ev = ctx.message_event(kind, q, Some(m));
                        fill_reject(
                            &mut ev,
                            Some(client),
                            Some(reply),
                            envelope.from,
                            envelope.to,
                        );
                        out.push(ev);
                    }
                }),
                _ => {
                    let q = queue_id.unwrap_or("NOQUEUE");
                    let m = queue_id.and_then(|q| inst.messages.get(q));
                    let mut ev = ctx.message_event(kind, q, m);
                    fill_reject(
                        &mut ev,
                        Some(client),
                        Some(reply),
                        envelope.from,
                        envelope.to,
                    );
                    out.push(ev);
                }
            }
        }
        _ => {}
    }
}

fn observe_cleanup(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    c: &Cleanup<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match c {
        Cleanup::MessageId {
            queue_id,
            message_id,
        } => inst.with_message(queue_id, now, |m| {
            m.message_id = Some(Arc::from(*message_id));
        }),
        Cleanup::Check {
            queue_id,
            action,
            client,
            reply,
            envelope,
            ..
        } => {
            let Some(kind) = check_event_kind(*action) else {
                return;
            };
            let ev = inst.with_message(queue_id, now, |m| {
                if kind == EventKind::Held {
                    if m.held {
                        return None;
                    }
                    m.held = true;
                }
                Some(ctx.message_event(kind, queue_id, Some(m)))
            });
            let Some(mut ev) = ev else {
                return;
            };
            fill_reject(
                &mut ev,
                client.as_ref(),
                reply.as_ref(),
                envelope.from,
                envelope.to,
            );
            out.push(ev);
            if kind != EventKind::Held {
                // A rejected or discarded message never reaches qmgr: forget it now.
                inst.messages.remove(*queue_id);
            }
        }
        Cleanup::Note { .. } => {}
    }
}

fn observe_postsuper(
    inst: &mut InstanceState,
    ctx: &Ctx<'_>,
    p: &Postsuper<'_>,
    out: &mut Vec<MessageEvent>,
) {
    let now = ctx.at.unix_secs;
    match p {
        Postsuper::Held { queue_id } => inst.with_message(queue_id, now, |m| {
            m.held = true;
            out.push(ctx.message_event(EventKind::Held, queue_id, Some(m)));
        }),
        Postsuper::Released { queue_id } => inst.with_message(queue_id, now, |m| {
            m.held = false;
            out.push(ctx.message_event(EventKind::Released, queue_id, Some(m)));
        }),
        Postsuper::Removed { queue_id } => {
            inst.messages.remove(*queue_id);
        }
        Postsuper::Requeued { .. } | Postsuper::Summary { .. } => {}
    }
}

fn fill_reject(
    ev: &mut MessageEvent,
    client: Option<&Endpoint<'_>>,
    reply: Option<&Reply<'_>>,
    from: Option<&str>,
    to: Option<&str>,
) {
    if let Some(c) = client {
        ev.client = Some(client_info(c));
    }
    if let Some(r) = reply {
        ev.dsn = r.dsn.map(Arc::from);
        ev.status_text = Some(Arc::from(r.text));
    }
    if ev.sender.is_none() {
        ev.sender = from.map(Arc::from);
    }
    ev.recipient = to.map(Arc::from);
}

fn client_info(c: &Endpoint<'_>) -> ClientInfo {
    ClientInfo {
        host: Arc::from(c.host),
        ip: Arc::from(c.ip),
    }
}

/// The event an access, header/body or milter action produces; warn, filter, redirect and the
/// header edits change nothing in the message's fate.
fn check_event_kind(action: CheckAction) -> Option<EventKind> {
    match action {
        CheckAction::Reject => Some(EventKind::Rejected),
        CheckAction::Discard => Some(EventKind::Discarded),
        CheckAction::Hold => Some(EventKind::Held),
        _ => None,
    }
}
