//! File identity: device + inode plus a hash of the file's first bytes.
//!
//! Device + inode alone is not enough: inode numbers are reused as soon as a file is deleted, and a
//! copy (copytruncate, gzip) has a new inode but the same content. The hash of the first bytes tells a
//! reused inode from the file we knew, and finds our file again after it was copied or compressed.
//!
//! A file shorter than the configured fingerprint length is hashed over the bytes it has, and the
//! length hashed is part of the key. The tailer upgrades the key as the file grows, so every line is
//! handed out with a key that covers at least the bytes up to that line (or the full length).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

/// Identity of one log file: where it lives on disk and what it starts with.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// Device number of the file system holding the file.
    pub dev: u64,
    /// Inode number on that device.
    pub inode: u64,
    /// FNV-1a hash of the first `fingerprint_len` bytes (decompressed bytes for gzip files).
    pub fingerprint: u64,
    /// How many bytes `fingerprint` covers: the configured length, or fewer while the file is short.
    pub fingerprint_len: u32,
}

impl FileKey {
    /// Whether `other` can be the same file: same device and inode.
    pub fn same_inode(&self, other: &FileKey) -> bool {
        self.dev == other.dev && self.inode == other.inode
    }
}

/// Stable 64-bit FNV-1a hash; stable across processes and Rust releases, which the checkpoint file
/// needs (std's `DefaultHasher` makes no such promise).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Builds a key from an inode and the prefix bytes read so far (at most `max_len` are hashed).
pub(crate) fn key_from_prefix(dev: u64, inode: u64, prefix: &[u8], max_len: usize) -> FileKey {
    let n = prefix.len().min(max_len).min(u32::MAX as usize);
    FileKey {
        dev,
        inode,
        fingerprint: fnv1a(&prefix[..n]),
        fingerprint_len: n as u32,
    }
}

/// Whether `key`'s fingerprint matches the start of `prefix` (which must hold enough bytes).
pub(crate) fn prefix_matches(key: &FileKey, prefix: &[u8]) -> bool {
    let n = key.fingerprint_len as usize;
    prefix.len() >= n && fnv1a(&prefix[..n]) == key.fingerprint
}

/// Reads up to `len` bytes from the start of an open plain file, without moving its cursor.
pub(crate) fn read_prefix(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Reads up to `len` decompressed bytes from the start of a gzip file.
pub(crate) fn read_gzip_prefix(path: &Path, len: usize) -> io::Result<Vec<u8>> {
    let mut decoder = MultiGzDecoder::new(io::BufReader::new(File::open(path)?));
    let mut buf = Vec::with_capacity(len);
    (&mut decoder).take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Device and inode of an open file.
pub(crate) fn dev_inode(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn short_prefix_key_covers_only_what_exists() {
        let key = key_from_prefix(1, 2, b"abc", 256);
        assert_eq!(key.fingerprint_len, 3);
        assert!(prefix_matches(&key, b"abcdef"));
        assert!(!prefix_matches(&key, b"ab"));
        assert!(!prefix_matches(&key, b"abX"));
    }
}
