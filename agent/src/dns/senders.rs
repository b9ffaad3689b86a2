//! The domains this host actually sends for, learnt from the logs: envelope sender domains of
//! deliveries that went out over the network (the relay has an IP address; local, virtual and
//! pipe deliveries do not count). The prober evaluates the host's sending IPs against these
//! domains' SPF too, so "this host sends for a domain whose SPF excludes it" is found without
//! configuring every domain.
//!
//! Bounded: at most [`MAX_TRACKED`] domains are counted between two takes; further new domains
//! are ignored until the next take (the busiest ones are usually seen first and again).

use std::collections::HashMap;

use crate::track::{EventKind, MessageEvent};

/// Most distinct sender domains counted between two takes.
pub const MAX_TRACKED: usize = 1_000;

/// Outbound sender domains and how many deliveries each had since the last take.
#[derive(Debug, Default)]
pub struct SenderDomains {
    counts: HashMap<String, u64>,
}

impl SenderDomains {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `ev` when it is an outbound delivery attempt with a sender domain.
    pub fn observe(&mut self, ev: &MessageEvent) {
        if !matches!(
            ev.kind,
            EventKind::Delivered | EventKind::Deferred | EventKind::Bounced
        ) {
            return;
        }
        if ev.relay.as_ref().is_none_or(|r| r.ip.is_none()) {
            return;
        }
        let Some(domain) = ev
            .sender
            .as_deref()
            .and_then(|s| s.trim_matches(|c| c == '<' || c == '>').rsplit_once('@'))
            .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty() && d.len() <= 253 && d.contains('.'))
        else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&domain) {
            *n += 1;
        } else if self.counts.len() < MAX_TRACKED {
            self.counts.insert(domain, 1);
        }
    }

    /// The `n` busiest domains since the last take (count descending, then name), and starts
    /// over.
    pub fn take_top(&mut self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.counts.drain().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::parse::Timestamp;
    use crate::track::RelayTarget;

    fn event(kind: EventKind, sender: &str, relay_ip: Option<&str>) -> MessageEvent {
        let mut ev = MessageEvent::new(
            kind,
            Arc::from("mx1"),
            Arc::from("postfix"),
            Arc::from("ABC"),
            Timestamp {
                unix_secs: 0,
                nanos: 0,
            },
            Arc::from("smtp"),
        );
        ev.sender = Some(Arc::from(sender));
        ev.relay = Some(RelayTarget {
            host: Arc::from("mx.example.net"),
            ip: relay_ip.map(Arc::from),
            port: Some(25),
        });
        ev
    }

    #[test]
    fn only_outbound_deliveries_count() {
        let mut s = SenderDomains::new();
        for _ in 0..3 {
            s.observe(&event(
                EventKind::Delivered,
                "a@Shop.Example.",
                Some("192.0.2.1"),
            ));
        }
        s.observe(&event(
            EventKind::Deferred,
            "b@news.example",
            Some("192.0.2.1"),
        ));
        s.observe(&event(EventKind::Delivered, "c@local.example", None));
        s.observe(&event(
            EventKind::Received,
            "d@in.example",
            Some("192.0.2.1"),
        ));
        s.observe(&event(EventKind::Delivered, "<>", Some("192.0.2.1")));
        s.observe(&event(
            EventKind::Delivered,
            "root@localhost",
            Some("192.0.2.1"),
        ));
        assert_eq!(
            s.take_top(10),
            [
                ("shop.example".to_string(), 3),
                ("news.example".to_string(), 1)
            ]
        );
        assert!(s.take_top(10).is_empty(), "a take starts over");
        for i in 0..MAX_TRACKED + 10 {
            s.observe(&event(
                EventKind::Delivered,
                &format!("x@d{i}.example"),
                Some("192.0.2.1"),
            ));
        }
        assert_eq!(s.take_top(usize::MAX).len(), MAX_TRACKED);
    }
}
