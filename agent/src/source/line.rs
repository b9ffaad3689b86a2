//! What the tailer hands out and reports, shared by the tailer, the file reader and the
//! checkpoints: complete [`Line`]s, the [`StartPosition`] of each file opened at start, and
//! [`TailStats`] counters.

use std::path::Path;
use std::sync::Arc;

use super::fingerprint::FileKey;

/// One complete line read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Identity of the file the line came from; acknowledge with this key.
    pub file: FileKey,
    /// Path the file had when it was opened.
    pub path: Arc<Path>,
    /// Offset just after this line's newline (decompressed offset for gzip files).
    pub end_offset: u64,
    /// The line without its newline; invalid UTF-8 is replaced.
    pub text: String,
    /// The line was handed out before a restart and is read again only to rebuild state (see
    /// [`Tailer::with_replay`](super::Tailer::with_replay)); its effects are already durable.
    pub replay: bool,
}

/// A file the tailer opened when it started, and the offset it starts reading at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPosition {
    pub file: FileKey,
    pub path: Arc<Path>,
    /// Everything before this offset is not read: acknowledged before, or history skipped.
    pub offset: u64,
    /// Where reading really begins: earlier than `offset` when lines are replayed first (see
    /// [`Tailer::with_replay`](super::Tailer::with_replay)).
    pub read_from: u64,
}

/// Counters since the tailer was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Complete lines handed out.
    pub lines_read: u64,
    /// Bytes read (decompressed for gzip files).
    pub bytes_read: u64,
    /// Times a path started pointing at another file (rename or delete + recreate).
    pub rotations: u64,
    /// Times a file got shorter than our position or was rewritten in place.
    pub truncations: u64,
    /// Lines longer than `max_line_bytes` (handed out truncated).
    pub long_lines: u64,
    /// Files opened for reading.
    pub files_opened: u64,
    /// I/O errors that were logged and retried.
    pub io_errors: u64,
}
