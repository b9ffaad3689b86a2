//! qmgr: messages entering the active queue, expiring and leaving the queue.

use super::{FindLit, delivery, parse_uint, split_queue_id};
use crate::parse::record::{Qmgr, Record};

pub(super) fn parse(m: &str) -> Option<Record<'_>> {
    let (queue_id, rest) = split_queue_id(m)?;
    if rest == "removed" {
        return Some(Record::Qmgr(Qmgr::Removed { queue_id }));
    }
    if let Some(r) = rest.strip_prefix("from=<") {
        return from(queue_id, r).map(Record::Qmgr);
    }
    if rest.starts_with("to=") {
        // qmgr itself defers or bounces recipients (`delivery temporarily suspended`, ...).
        return delivery::after_queue_id(queue_id, rest);
    }
    if rest == "skipped, still being delivered" {
        return Some(Record::Qmgr(Qmgr::Note {
            queue_id: Some(queue_id),
            text: rest,
        }));
    }
    None
}

/// After `QID: from=<`: `s>, size=N, nrcpt=N (queue active)` or
/// `s>, status=expired, returned to sender`.
fn from<'a>(queue_id: &'a str, r: &'a str) -> Option<Qmgr<'a>> {
    if let Some((sender, text)) = r.rsplit_lit(">, status=expired, ") {
        return Some(Qmgr::Expired {
            queue_id,
            sender,
            text,
        });
    }
    let (sender, rest) = r.rsplit_lit(">, size=")?;
    let (size, rest) = rest.split_lit(", nrcpt=")?;
    let (nrcpt, rest) = rest.split_byte(b' ').unwrap_or((rest, ""));
    if !(rest.is_empty() || rest.starts_with("(queue ")) {
        return None;
    }
    Some(Qmgr::From {
        queue_id,
        sender,
        size_bytes: parse_uint(size)?,
        nrcpt: parse_uint(nrcpt)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_with_long_queue_id() {
        assert_eq!(
            parse(
                "4KJd2L6vmtz9sQ6: from=<bounce+x=y@example.com>, size=5360, nrcpt=3 (queue active)"
            ),
            Some(Record::Qmgr(Qmgr::From {
                queue_id: "4KJd2L6vmtz9sQ6",
                sender: "bounce+x=y@example.com",
                size_bytes: 5360,
                nrcpt: 3
            }))
        );
    }

    #[test]
    fn expired_with_null_sender() {
        assert_eq!(
            parse("585BC3F: from=<>, status=expired, returned to sender"),
            Some(Record::Qmgr(Qmgr::Expired {
                queue_id: "585BC3F",
                sender: "",
                text: "returned to sender"
            }))
        );
    }

    #[test]
    fn truncated_and_odd() {
        for m in [
            "585BC3F: from=<a@b>, size=",
            "585BC3F: from=<a@b>, size=12, nrcpt=x (queue active)",
            "585BC3F: from=<a@b",
            "585BC3F: removed soon",
        ] {
            assert_eq!(parse(m), None, "{m}");
        }
    }
}
