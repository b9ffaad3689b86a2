//! `postqueue -j` output → [`QueueSnapshot`], one line at a time.
//!
//! `postqueue -j` prints one JSON object per queued message and line. The reader keeps one line
//! buffer (at most [`MAX_LINE_BYTES`]) and deserialises each line into a struct that borrows from
//! it, so memory does not grow with the queue. A line that is not a queue entry is counted in
//! `malformed_lines` and skipped; a longer line is skipped without being buffered.

use std::borrow::Cow;
use std::io::{self, BufRead};

use serde::Deserialize;

use super::snapshot::{
    DEFAULT_MAX_DOMAINS, QueueName, QueueSnapshot, SnapshotBuilder, SnapshotSource,
};

/// Lines longer than this (without the newline) are skipped and counted as malformed.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How a snapshot bounds what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Distinct deferred recipient domains tracked by name; further ones are counted under
    /// `deferred_other_domains`.
    pub max_domains: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            max_domains: DEFAULT_MAX_DOMAINS,
        }
    }
}

/// Summarises `postqueue -j` output read from `reader`, ages relative to `now_unix_secs`. A read
/// error ends the input as if it were the end of the output; [`try_summarise_postqueue`] reports
/// it instead.
pub fn summarise_postqueue<R: BufRead>(
    reader: R,
    now_unix_secs: i64,
    cfg: &SnapshotConfig,
) -> QueueSnapshot {
    let mut builder =
        SnapshotBuilder::new(SnapshotSource::Postqueue, now_unix_secs, cfg.max_domains);
    // Documented: what was read before the error is the snapshot.
    let _ = read_entries(reader, &mut builder);
    builder.finish()
}

/// Like [`summarise_postqueue`], but a read error is returned instead of ending the input.
pub fn try_summarise_postqueue<R: BufRead>(
    reader: R,
    now_unix_secs: i64,
    cfg: &SnapshotConfig,
) -> io::Result<QueueSnapshot> {
    let mut builder =
        SnapshotBuilder::new(SnapshotSource::Postqueue, now_unix_secs, cfg.max_domains);
    read_entries(reader, &mut builder)?;
    Ok(builder.finish())
}

/// One line of `postqueue -j`; fields the snapshot does not need (`queue_id`, `sender`,
/// `forced_expire`) are not read.
#[derive(Debug, Deserialize)]
struct QueueEntry<'a> {
    queue_name: QueueName,
    arrival_time: i64,
    message_size: u64,
    #[serde(borrow)]
    recipients: Vec<RecipientEntry<'a>>,
}

#[derive(Debug, Deserialize)]
struct RecipientEntry<'a> {
    // Cow: addresses and reasons may contain JSON escapes (quoted local parts, quoted replies).
    #[serde(borrow)]
    address: Cow<'a, str>,
    #[serde(borrow, default)]
    delay_reason: Option<Cow<'a, str>>,
}

fn read_entries<R: BufRead>(mut reader: R, builder: &mut SnapshotBuilder) -> io::Result<()> {
    let mut line = Vec::new();
    while let Some(read) = read_bounded_line(&mut reader, &mut line, MAX_LINE_BYTES)? {
        match read {
            LineRead::TooLong => builder.count_overlong_line(),
            LineRead::Complete if line.iter().all(u8::is_ascii_whitespace) => {}
            LineRead::Complete => match serde_json::from_slice::<QueueEntry<'_>>(&line) {
                // Postfix stores the arrival time as an unsigned time_t; negative is not a queue
                // entry but garbage.
                Ok(entry) if entry.arrival_time < 0 => builder.count_malformed_line(),
                Ok(entry) => builder.observe_message(
                    entry.queue_name,
                    entry.arrival_time,
                    entry.message_size,
                    entry
                        .recipients
                        .iter()
                        .map(|r| (r.address.as_ref(), r.delay_reason.as_deref())),
                ),
                Err(_) => builder.count_malformed_line(),
            },
        }
    }
    Ok(())
}

/// What [`read_bounded_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRead {
    /// The line (without its newline) is in the buffer.
    Complete,
    /// The line was longer than the limit; it was consumed and the buffer is empty.
    TooLong,
}

/// Reads the next line into `line` (cleared first, newline removed) without ever holding more than
/// `max` bytes of it. `None` at the end of the input; a last line without newline counts.
fn read_bounded_line<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<LineRead>> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Complete
            }));
        }
        any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Complete
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    fn lines(input: &[u8], max: usize, capacity: usize) -> Vec<Result<String, ()>> {
        let mut reader = BufReader::with_capacity(capacity, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        while let Some(read) = read_bounded_line(&mut reader, &mut line, max).unwrap() {
            out.push(match read {
                LineRead::Complete => Ok(String::from_utf8_lossy(&line).into_owned()),
                LineRead::TooLong => Err(()),
            });
        }
        out
    }

    #[test]
    fn lines_split_on_newline_whatever_the_buffer_size() {
        for capacity in [1, 2, 3, 7, 64] {
            assert_eq!(
                lines(b"ab\n\ncd\nef", 10, capacity),
                vec![
                    Ok("ab".into()),
                    Ok("".into()),
                    Ok("cd".into()),
                    Ok("ef".into())
                ],
                "buffer capacity {capacity}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_reported_and_skipped() {
        for capacity in [1, 4, 64] {
            assert_eq!(
                lines(b"abcd\nabcdef\nxy\nabcdefgh", 4, capacity),
                vec![Ok("abcd".into()), Err(()), Ok("xy".into()), Err(())],
                "buffer capacity {capacity}"
            );
        }
    }

    #[test]
    fn an_entry_borrows_unless_escaped() {
        let line = br#"{"queue_name": "deferred", "queue_id": "A", "arrival_time": 1, "message_size": 2, "forced_expire": false, "sender": "s@x", "recipients": [{"address": "a@x.test"}, {"address": "\"q\\\"t\"@x.test", "delay_reason": "said: \"450\""}]}"#;
        let entry: QueueEntry<'_> = serde_json::from_slice(line).unwrap();
        assert!(matches!(entry.recipients[0].address, Cow::Borrowed(_)));
        assert_eq!(entry.recipients[1].address, "\"q\\\"t\"@x.test");
        assert_eq!(
            entry.recipients[1].delay_reason.as_deref(),
            Some("said: \"450\"")
        );
        assert_eq!(entry.queue_name, QueueName::Deferred);
    }
}
