//! Splitting a byte stream into complete lines, bounded in memory.
//!
//! The tailer reads files in chunks that end anywhere; [`LineBuffer`] keeps the bytes after the last
//! newline until the rest of that line arrives, so a partial last line is never handed out.

/// One complete line cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompleteLine {
    /// The line's bytes without the newline, at most `max_line_bytes` of them.
    pub bytes: Vec<u8>,
    /// Stream offset just after this line's newline.
    pub end_offset: u64,
    /// True when the line was longer than `max_line_bytes` and its tail was dropped.
    pub truncated: bool,
}

/// Accumulates chunks and yields complete lines; a line longer than `max_line_bytes` keeps only its
/// first `max_line_bytes` bytes (the rest is dropped as it arrives, so memory stays bounded).
#[derive(Debug)]
pub(crate) struct LineBuffer {
    max_line_bytes: usize,
    /// Stream offset where the buffered (incomplete) line starts.
    line_start: u64,
    /// Stream offset of the next byte to be pushed.
    next_offset: u64,
    partial: Vec<u8>,
    overflowed: bool,
}

impl LineBuffer {
    /// A buffer positioned at `offset`, which must be the start of a line.
    pub fn new(max_line_bytes: usize, offset: u64) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            line_start: offset,
            next_offset: offset,
            partial: Vec::new(),
            overflowed: false,
        }
    }

    /// Offset just after the last complete line handed out (where a restart must resume).
    pub fn line_start(&self) -> u64 {
        self.line_start
    }

    /// Offset of the next byte expected from the stream.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Whether bytes of an incomplete line are buffered.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        self.next_offset > self.line_start
    }

    /// Forgets everything and restarts at `offset` (after a truncation).
    pub fn reset(&mut self, offset: u64) {
        self.line_start = offset;
        self.next_offset = offset;
        self.partial.clear();
        self.overflowed = false;
    }

    /// Appends `chunk` and pushes every line it completes onto `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<CompleteLine>) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.append_partial(&rest[..pos]);
            self.next_offset += pos as u64 + 1;
            let bytes = std::mem::take(&mut self.partial);
            out.push(CompleteLine {
                bytes,
                end_offset: self.next_offset,
                truncated: self.overflowed,
            });
            self.overflowed = false;
            self.line_start = self.next_offset;
            rest = &rest[pos + 1..];
        }
        self.append_partial(rest);
        self.next_offset += rest.len() as u64;
    }

    fn append_partial(&mut self, bytes: &[u8]) {
        let room = self.max_line_bytes - self.partial.len();
        if bytes.len() > room {
            self.overflowed = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(data: &[u8], cuts: &[usize], max: usize) -> (Vec<CompleteLine>, LineBuffer) {
        let mut buf = LineBuffer::new(max, 0);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts {
            let end = cut.clamp(start, data.len());
            buf.push(&data[start..end], &mut out);
            start = end;
        }
        buf.push(&data[start..], &mut out);
        (out, buf)
    }

    #[test]
    fn partial_line_is_held_until_its_newline_arrives() {
        let mut buf = LineBuffer::new(100, 10);
        let mut out = Vec::new();
        buf.push(b"hello wo", &mut out);
        assert!(out.is_empty(), "a partial line must not be returned");
        assert!(buf.has_partial());
        buf.push(b"rld\nnext", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, b"hello world");
        assert_eq!(out[0].end_offset, 10 + 12);
        assert_eq!(buf.line_start(), 22);
        assert_eq!(buf.next_offset(), 26);
    }

    #[test]
    fn long_line_is_truncated_and_flagged() {
        let (out, _) = split_all(b"abcdefgh\nxy\n", &[3, 5], 4);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes, b"abcd");
        assert!(out[0].truncated);
        assert_eq!(out[0].end_offset, 9);
        assert_eq!(out[1].bytes, b"xy");
        assert!(!out[1].truncated);
    }

    proptest! {
        /// However the stream is cut into chunks, the complete lines and their offsets equal those of
        /// a one-shot split; the trailing partial line is never emitted.
        #[test]
        fn chunking_does_not_change_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..400),
            mut cuts in proptest::collection::vec(0usize..400, 0..20),
            max in 1usize..64,
        ) {
            cuts.sort_unstable();
            let (got, buf) = split_all(&data, &cuts, max);
            let mut expected = Vec::new();
            let mut offset = 0u64;
            let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            let tail = pieces.pop().unwrap_or_default();
            for piece in pieces {
                offset += piece.len() as u64 + 1;
                expected.push(CompleteLine {
                    bytes: piece[..piece.len().min(max)].to_vec(),
                    end_offset: offset,
                    truncated: piece.len() > max,
                });
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(buf.line_start(), offset);
            prop_assert_eq!(buf.next_offset(), offset + tail.len() as u64);
        }
    }
}
