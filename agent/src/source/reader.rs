//! Reading one open file: plain (can grow, can be truncated) or gzip (read once, never grows).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flate2::read::MultiGzDecoder;

use super::fingerprint::{
    FileKey, dev_inode, key_from_prefix, prefix_matches, read_gzip_prefix, read_prefix,
};
use super::line::{Line, TailStats};
use super::line_buffer::{CompleteLine, LineBuffer};

/// Bytes read per `read` call.
const CHUNK_BYTES: usize = 64 * 1024;

/// How reading went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStatus {
    /// Stopped because enough lines are waiting; call again.
    Full,
    /// Read everything there was.
    Eof,
    /// The file is shorter than our position or starts with other bytes than when we opened it:
    /// it was truncated (and perhaps rewritten). Nothing was read.
    Truncated,
}

/// An open log file and our position in it.
pub(crate) struct FileReader {
    pub path: Arc<Path>,
    pub key: FileKey,
    body: Body,
    lines: LineBuffer,
    fingerprint_bytes: usize,
    /// When the file last had new bytes (or was opened); rotated files retire after a quiet spell.
    pub last_growth: Instant,
    chunk: Vec<u8>,
    complete: Vec<CompleteLine>,
    /// Lines ending at or before this offset are handed out as replayed (0: none).
    pub replay_until: u64,
}

enum Body {
    Plain(File),
    Gzip {
        decoder: Box<MultiGzDecoder<BufReader<File>>>,
        finished: bool,
    },
}

impl FileReader {
    /// Opens a plain file positioned at `offset` (the start of a line).
    pub fn open_plain(
        path: Arc<Path>,
        offset: u64,
        max_line_bytes: usize,
        fingerprint_bytes: usize,
    ) -> io::Result<Self> {
        let file = File::open(&path)?;
        let (dev, inode) = dev_inode(&file.metadata()?);
        let prefix = read_prefix(&file, fingerprint_bytes)?;
        Ok(Self {
            key: key_from_prefix(dev, inode, &prefix, fingerprint_bytes),
            path,
            body: Body::Plain(file),
            lines: LineBuffer::new(max_line_bytes, offset),
            fingerprint_bytes,
            last_growth: Instant::now(),
            chunk: vec![0; CHUNK_BYTES],
            complete: Vec::new(),
            replay_until: 0,
        })
    }

    /// Opens a gzip file and skips `offset` decompressed bytes.
    pub fn open_gzip(
        path: Arc<Path>,
        offset: u64,
        max_line_bytes: usize,
        fingerprint_bytes: usize,
    ) -> io::Result<Self> {
        let file = File::open(&path)?;
        let (dev, inode) = dev_inode(&file.metadata()?);
        let prefix = read_gzip_prefix(&path, fingerprint_bytes)?;
        let mut decoder = Box::new(MultiGzDecoder::new(BufReader::new(file)));
        let skipped = io::copy(&mut (&mut decoder).take(offset), &mut io::sink())?;
        Ok(Self {
            key: key_from_prefix(dev, inode, &prefix, fingerprint_bytes),
            path,
            body: Body::Gzip {
                decoder,
                finished: false,
            },
            lines: LineBuffer::new(max_line_bytes, skipped),
            fingerprint_bytes,
            last_growth: Instant::now(),
            chunk: vec![0; CHUNK_BYTES],
            complete: Vec::new(),
            replay_until: 0,
        })
    }

    /// Device and inode of the open file.
    pub fn dev_inode(&self) -> (u64, u64) {
        (self.key.dev, self.key.inode)
    }

    /// Whether this is a gzip file that has been read to its end.
    pub fn is_finished_gzip(&self) -> bool {
        matches!(self.body, Body::Gzip { finished: true, .. })
    }

    /// Offset just after the last line handed out.
    pub fn line_start(&self) -> u64 {
        self.lines.line_start()
    }

    /// Reads new bytes and appends complete lines to `out` until `out` holds `max_lines` or the
    /// file has nothing more.
    pub fn read_lines(
        &mut self,
        out: &mut Vec<Line>,
        max_lines: usize,
        stats: &mut TailStats,
    ) -> io::Result<ReadStatus> {
        while out.len() < max_lines {
            let n = match &mut self.body {
                Body::Plain(file) => {
                    let pos = self.lines.next_offset();
                    if file.metadata()?.len() < pos {
                        return Ok(ReadStatus::Truncated);
                    }
                    let n = read_at_retrying(file, &mut self.chunk, pos)?;
                    if n == 0 {
                        return Ok(ReadStatus::Eof);
                    }
                    // Check after reading: if the file was truncated and rewritten meanwhile, the
                    // bytes we got may belong to either version, so drop them.
                    let want = self
                        .fingerprint_bytes
                        .max(self.key.fingerprint_len as usize);
                    let prefix = read_prefix(file, want)?;
                    if !prefix_matches(&self.key, &prefix) {
                        return Ok(ReadStatus::Truncated);
                    }
                    if (self.key.fingerprint_len as usize) < self.fingerprint_bytes
                        && prefix.len() > self.key.fingerprint_len as usize
                    {
                        self.key = key_from_prefix(
                            self.key.dev,
                            self.key.inode,
                            &prefix,
                            self.fingerprint_bytes,
                        );
                    }
                    n
                }
                Body::Gzip { decoder, finished } => {
                    if *finished {
                        return Ok(ReadStatus::Eof);
                    }
                    let n = read_retrying(decoder, &mut self.chunk)?;
                    if n == 0 {
                        *finished = true;
                        return Ok(ReadStatus::Eof);
                    }
                    n
                }
            };
            self.last_growth = Instant::now();
            stats.bytes_read += n as u64;
            self.lines.push(&self.chunk[..n], &mut self.complete);
            for line in self.complete.drain(..) {
                stats.lines_read += 1;
                if line.truncated {
                    stats.long_lines += 1;
                }
                out.push(Line {
                    file: self.key,
                    path: Arc::clone(&self.path),
                    end_offset: line.end_offset,
                    text: String::from_utf8_lossy(&line.bytes).into_owned(),
                    replay: line.end_offset <= self.replay_until,
                });
            }
        }
        Ok(ReadStatus::Full)
    }

    /// Starts over at offset 0 after a truncation, with the identity of the new content.
    pub fn restart_from_zero(&mut self) -> io::Result<()> {
        if let Body::Plain(file) = &self.body {
            let prefix = read_prefix(file, self.fingerprint_bytes)?;
            self.key = key_from_prefix(
                self.key.dev,
                self.key.inode,
                &prefix,
                self.fingerprint_bytes,
            );
        }
        self.lines.reset(0);
        self.last_growth = Instant::now();
        // New content: nothing of it was handed out before.
        self.replay_until = 0;
        Ok(())
    }
}

fn read_at_retrying(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, pos) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Offset just after the last newline in the first `size` bytes of `file` (0 when there is none):
/// where to start when skipping existing content without cutting a line in half.
pub(crate) fn last_line_end(file: &File, size: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(CHUNK_BYTES as u64);
        let want = (end - start) as usize;
        let mut filled = 0;
        while filled < want {
            let n = read_at_retrying(file, &mut buf[filled..want], start + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if let Some(pos) = buf[..filled].iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Whether `offset` is the start of a line in `file` (offset 0, or just after a newline).
pub(crate) fn is_line_start(file: &File, offset: u64) -> io::Result<bool> {
    if offset == 0 {
        return Ok(true);
    }
    let mut byte = [0u8; 1];
    Ok(read_at_retrying(file, &mut byte, offset - 1)? == 1 && byte[0] == b'\n')
}
