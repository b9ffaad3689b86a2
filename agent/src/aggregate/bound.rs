//! Bounded label values: one function every sample source's labels go through before a batch
//! becomes durable ([`bound_batch`], called by the outbox, which also bounds the text fields of
//! raw events), and the same rule applied early by the [`Aggregator`](super::Aggregator) so its
//! per-window tables only hold bounded values.
//!
//! A value longer than the limit keeps its first bytes (cut at a UTF-8 boundary) and gets `~`
//! and 8 hex digits of its SHA-256 as a suffix: `aaaa…aaa~3f2a9c1b`. The suffix is stable (the
//! same value always gives the same label, on every host) and keeps distinct long values apart,
//! so one long user name or domain can neither exceed the collector's limit nor merge with
//! another.

use std::borrow::Cow;
use std::sync::Arc;

use mailpulse_proto::v1 as pb;

/// Default longest label value, in bytes: well under the collector's 256-byte limit.
pub const DEFAULT_MAX_LABEL_BYTES: usize = 128;

/// Shortest limit the agent accepts: room for a useful prefix besides the suffix.
pub const MIN_MAX_LABEL_BYTES: usize = 32;

/// `~` and 8 hex digits.
const SUFFIX_BYTES: usize = 9;

/// `value` when it has at most `max_bytes` bytes, else its bounded form (see the module
/// documentation). `max_bytes` below [`MIN_MAX_LABEL_BYTES`] is taken as that.
pub fn bound_label_value(value: &str, max_bytes: usize) -> Cow<'_, str> {
    let max_bytes = max_bytes.max(MIN_MAX_LABEL_BYTES);
    if value.len() <= max_bytes {
        return Cow::Borrowed(value);
    }
    let mut cut = max_bytes - SUFFIX_BYTES;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let mut out = String::with_capacity(cut + SUFFIX_BYTES);
    out.push_str(&value[..cut]);
    out.push('~');
    for b in &digest.as_ref()[..4] {
        out.push_str(&format!("{b:02x}"));
    }
    Cow::Owned(out)
}

/// [`bound_label_value`] for a shared value; the same `Arc` when it fits.
pub(crate) fn bound_arc(value: &Arc<str>, max_bytes: usize) -> (Arc<str>, bool) {
    match bound_label_value(value, max_bytes) {
        Cow::Borrowed(_) => (value.clone(), false),
        Cow::Owned(bounded) => (Arc::from(bounded), true),
    }
}

/// Longest text field of a raw event (`include_events`): status texts are long, but a log line
/// of a megabyte must not make a batch the collector refuses.
pub const MAX_EVENT_FIELD_BYTES: usize = 1024;

/// Bounds every label value of every sample in `batch` to `max_bytes`, and every text field of
/// its raw events to [`MAX_EVENT_FIELD_BYTES`]; returns how many values were shortened.
pub fn bound_batch(batch: &mut pb::Batch, max_bytes: usize) -> u64 {
    let mut shortened = 0;
    let mut bound = |value: &mut String, max: usize| {
        if let Cow::Owned(bounded) = bound_label_value(value, max) {
            *value = bounded;
            shortened += 1;
        }
    };
    for label in batch.samples.iter_mut().flat_map(|s| s.labels.iter_mut()) {
        bound(&mut label.value, max_bytes);
    }
    for ev in &mut batch.events {
        for field in [
            &mut ev.kind,
            &mut ev.instance,
            &mut ev.queue_id,
            &mut ev.sender,
            &mut ev.recipient,
            &mut ev.relay,
            &mut ev.dsn,
            &mut ev.status_text,
            &mut ev.client_ip,
            &mut ev.sasl_user,
        ] {
            bound(field, MAX_EVENT_FIELD_BYTES);
        }
    }
    shortened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept() {
        assert!(matches!(
            bound_label_value("example.com", 128),
            Cow::Borrowed(_)
        ));
        let exact = "x".repeat(128);
        assert_eq!(bound_label_value(&exact, 128), exact.as_str());
    }

    #[test]
    fn long_values_are_cut_with_a_stable_distinct_suffix() {
        let a = "a".repeat(300) + "@example.org";
        let b = "a".repeat(300) + "@example.net";
        let (ba, bb) = (bound_label_value(&a, 128), bound_label_value(&b, 128));
        assert_eq!(ba.len(), 128);
        assert!(ba.starts_with(&"a".repeat(119)) && ba.as_bytes()[119] == b'~');
        assert_ne!(ba, bb, "distinct long values stay distinct");
        assert_eq!(ba, bound_label_value(&a, 128), "stable");
        assert!(ba[120..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn cuts_at_character_boundaries() {
        let v = "é".repeat(200);
        for max in [32, 33, 64, 127, 128, 255] {
            let out = bound_label_value(&v, max);
            assert!(out.len() <= max, "{max}: {}", out.len());
            assert!(
                out.len() >= max - 1,
                "at most one byte lost to the boundary"
            );
        }
        let floor = bound_label_value(&v, 0).len();
        assert!((MIN_MAX_LABEL_BYTES - 1..=MIN_MAX_LABEL_BYTES).contains(&floor));
    }

    #[test]
    fn batches_are_bounded_in_place() {
        let label = |v: &str| pb::Label {
            name: "user".into(),
            value: v.into(),
        };
        let mut batch = pb::Batch {
            samples: vec![pb::Sample {
                labels: vec![label("short"), label(&"u".repeat(400))],
                ..pb::Sample::default()
            }],
            ..pb::Batch::default()
        };
        batch.events.push(pb::Event {
            status_text: "x".repeat(1 << 20),
            recipient: "r@example.com".into(),
            ..pb::Event::default()
        });
        assert_eq!(bound_batch(&mut batch, 128), 2);
        assert_eq!(batch.samples[0].labels[0].value, "short");
        assert_eq!(batch.samples[0].labels[1].value.len(), 128);
        assert_eq!(batch.events[0].status_text.len(), MAX_EVENT_FIELD_BYTES);
        assert_eq!(batch.events[0].recipient, "r@example.com");
        assert_eq!(bound_batch(&mut batch, 128), 0, "idempotent");
    }
}
