//! The directory fallback: counts, bytes and ages from the queue files themselves.
//!
//! Used when `postqueue` is missing or fails. Each of [`SCANNED_QUEUES`] is a directory under
//! `queue_directory`, hashed into one-character subdirectories for the queues listed in
//! `hash_queue_names` (`deferred/7/796079CC064` at the default `hash_queue_depth` 1); the scan
//! recurses at most [`MAX_HASH_DEPTH`] levels and never follows symbolic links.
//!
//! The age comes from the queue file's arrival time, not from its mtime: Postfix sets the mtime of
//! a deferred queue file to its next retry time. A queue file is a sequence of records (type byte;
//! length in 7-bit groups, low group first, high bit set on all but the last; data), and `cleanup`
//! writes the size record `C` first and the time record `T` (`"seconds microseconds"`, or only
//! seconds in old versions) right after it. Only the first [`HEAD_BYTES`] of a file are read; a
//! file without a readable `T` record there is aged by its ctime.
//!
//! Postfix moves and deletes queue files all the time: a file or subdirectory that vanished
//! between listing and opening is skipped without an error.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::QueueError;
use super::snapshot::{QueueName, QueueSnapshot, SnapshotBuilder, SnapshotSource};

/// The queues a directory scan covers (`maildrop` holds files of a different format, written by
/// `postdrop`, and is only readable by the `postdrop` group).
pub const SCANNED_QUEUES: [QueueName; 5] = [
    QueueName::Incoming,
    QueueName::Active,
    QueueName::Deferred,
    QueueName::Hold,
    QueueName::Corrupt,
];

/// Subdirectory levels the scan descends into below a queue directory.
pub const MAX_HASH_DEPTH: usize = 8;

/// Bytes read from the start of a queue file to find its arrival time.
pub const HEAD_BYTES: usize = 4096;

/// Queue file record type of the size record, the first record `cleanup` writes.
pub const REC_TYPE_SIZE: u8 = b'C';
/// Queue file record type of the arrival time record.
pub const REC_TYPE_TIME: u8 = b'T';
/// Queue file record type that starts the message content: no time record after it.
pub const REC_TYPE_MESG: u8 = b'M';

/// Scans the queues of one instance under `queue_directory`, ages relative to `now_unix_secs`.
/// A missing queue subdirectory counts as an empty queue; a missing or unreadable
/// `queue_directory`, or a queue subdirectory that cannot be listed, is an error.
pub fn scan_queue_directory(
    queue_directory: &Path,
    now_unix_secs: i64,
) -> Result<QueueSnapshot, QueueError> {
    let scan_error = |path: &Path, source: io::Error| QueueError::Scan {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(queue_directory).map_err(|e| scan_error(queue_directory, e))?;
    if !meta.is_dir() {
        return Err(scan_error(
            queue_directory,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut builder = SnapshotBuilder::new(SnapshotSource::Directory, now_unix_secs, 0);
    let mut head = Vec::with_capacity(HEAD_BYTES);
    for queue in SCANNED_QUEUES {
        let dir = queue_directory.join(queue.as_str());
        match scan_dir(&dir, queue, 0, &mut builder, &mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(scan_error(&dir, e)),
        }
    }
    Ok(builder.finish())
}

fn scan_dir(
    dir: &Path,
    queue: QueueName,
    depth: usize,
    builder: &mut SnapshotBuilder,
    head: &mut Vec<u8>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let path = entry.path();
        if file_type.is_dir() {
            if depth < MAX_HASH_DEPTH {
                match scan_dir(&path, queue, depth + 1, builder, head) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        } else if file_type.is_file()
            && let Some(file) = read_queue_file(&path, head)
        {
            let arrival = file.arrival_unix_secs.unwrap_or(file.ctime_unix_secs);
            builder.observe_file(
                queue,
                arrival,
                file.message_bytes.unwrap_or(file.size_bytes),
            );
        }
    }
    Ok(())
}

/// What the scan learns from one queue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueueFile {
    size_bytes: u64,
    /// The message size from the `C` record (what `postqueue -j` reports as `message_size`).
    message_bytes: Option<u64>,
    ctime_unix_secs: i64,
    arrival_unix_secs: Option<i64>,
}

/// Size, ctime and arrival time of the queue file at `path`; `None` when it is gone. A file that
/// exists but cannot be read (permissions) is still counted, aged by its ctime.
fn read_queue_file(path: &Path, head: &mut Vec<u8>) -> Option<QueueFile> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(_) => {
            let meta = fs::symlink_metadata(path).ok()?;
            return Some(QueueFile {
                size_bytes: meta.len(),
                message_bytes: None,
                ctime_unix_secs: meta.ctime(),
                arrival_unix_secs: None,
            });
        }
    };
    let meta = file.metadata().ok()?;
    head.clear();
    let (arrival_unix_secs, message_bytes) = match file.take(HEAD_BYTES as u64).read_to_end(head) {
        Ok(_) => (queue_file_arrival_time(head), queue_file_message_size(head)),
        Err(_) => (None, None),
    };
    Some(QueueFile {
        size_bytes: meta.len(),
        message_bytes,
        ctime_unix_secs: meta.ctime(),
        arrival_unix_secs,
    })
}

/// The arrival time (Unix seconds) in the `T` record among the envelope records at the start of a
/// queue file, or `None` when `head` has none before the message content (or is not a queue
/// file). Never reads past `head`.
pub fn queue_file_arrival_time(head: &[u8]) -> Option<i64> {
    envelope_record(head, REC_TYPE_TIME).and_then(parse_arrival_time)
}

/// The message size (first field of the `C` record, the number `postqueue -j` reports as
/// `message_size`), or `None` when `head` has no such record.
pub fn queue_file_message_size(head: &[u8]) -> Option<u64> {
    let data = envelope_record(head, REC_TYPE_SIZE)?;
    let text = std::str::from_utf8(data).ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// The data of the first record of type `wanted` among the envelope records at the start of
/// `head` (before the message content). Never reads past `head`.
fn envelope_record(head: &[u8], wanted: u8) -> Option<&[u8]> {
    let mut rest = head;
    loop {
        let (&rec_type, after_type) = rest.split_first()?;
        let (len, after_len) = record_length(after_type)?;
        if len > after_len.len() {
            return None;
        }
        let (data, next) = after_len.split_at(len);
        if rec_type == wanted {
            return Some(data);
        }
        if rec_type == REC_TYPE_MESG {
            return None;
        }
        rest = next;
    }
}

/// Decodes a record length: 7 bits per byte, least significant group first, high bit = more.
/// Like Postfix, refuses lengths that need more than 32 bits.
fn record_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut len: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let shift = 7 * i as u32;
        if shift >= 32 {
            return None;
        }
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((usize::try_from(len).ok()?, &bytes[i + 1..]));
        }
    }
    None
}

/// `"1795622262 609010"` or `"1795622262"` → seconds.
fn parse_arrival_time(data: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(data).ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rec_type: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![rec_type];
        let mut len = data.len();
        loop {
            let mut b = (len & 0x7f) as u8;
            len >>= 7;
            if len != 0 {
                b |= 0x80;
            }
            out.push(b);
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn arrival_time_comes_from_the_t_record() {
        // As Postfix 3.7 writes it (checked against a real deferred queue file).
        let mut head = record(
            REC_TYPE_SIZE,
            format!(
                "{:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
                269, 309, 2, 0, 269, 0
            )
            .as_bytes(),
        );
        head.extend(record(REC_TYPE_TIME, b"1795622262 609010"));
        head.extend(record(b'A', b"create_time=1795622271"));
        assert_eq!(head[1], 0x5f, "95-byte size record");
        assert_eq!(queue_file_arrival_time(&head), Some(1_795_622_262));
        assert_eq!(queue_file_message_size(&head), Some(269));
        assert_eq!(queue_file_message_size(&head[head.len() - 10..]), None);
    }

    #[test]
    fn seconds_only_and_long_records_are_read() {
        let mut head = record(b'A', &[b'x'; 300]);
        assert_eq!(&head[1..3], &[0xac, 0x02], "300 = 0b10_0101100");
        head.extend(record(REC_TYPE_TIME, b"1700000000"));
        assert_eq!(queue_file_arrival_time(&head), Some(1_700_000_000));
    }

    #[test]
    fn no_time_before_content_or_in_garbage() {
        let mut head = record(REC_TYPE_MESG, b"");
        head.extend(record(REC_TYPE_TIME, b"1700000000"));
        assert_eq!(queue_file_arrival_time(&head), None);
        assert_eq!(queue_file_arrival_time(b""), None);
        assert_eq!(queue_file_arrival_time(b"T"), None);
        assert_eq!(
            queue_file_arrival_time(b"T\x05123"),
            None,
            "record past the end"
        );
        assert_eq!(queue_file_arrival_time(b"T\xff\xff\xff\xff\xff\x01"), None);
        assert_eq!(queue_file_arrival_time(b"T\x03abc"), None);
        assert_eq!(queue_file_arrival_time(b"T\x00"), None);
        assert_eq!(queue_file_arrival_time(b"T\x02-5"), Some(-5));
    }
}
