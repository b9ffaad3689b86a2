//! Crash-safe read positions per file identity.
//!
//! The consumer acknowledges a line only after it has durably handled it, then saves; the state file
//! is replaced atomically (write a temporary file, fsync, rename, fsync the directory), so after a
//! `kill -9` the file on disk is either the previous or the new state, never a torn mix.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::SourceError;
use super::fingerprint::{FileKey, prefix_matches, read_gzip_prefix, read_prefix};
use super::line::{Line, StartPosition};

/// Version of the state file layout this build reads and writes.
pub const CHECKPOINT_VERSION: u64 = 1;

/// Upper bound on remembered files, so a host that rotates often does not grow the state forever.
pub const MAX_CHECKPOINTS: usize = 10_000;

/// Acknowledged read positions, one per [`FileKey`].
#[derive(Debug, Default)]
pub struct Checkpoints {
    files: HashMap<FileKey, Checkpoint>,
    /// Bumped on every change; `save` skips the write when nothing changed since the last one.
    changes: u64,
    saved_changes: AtomicU64,
}

/// The acknowledged position in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which file.
    pub key: FileKey,
    /// Offset just after the last acknowledged line (decompressed offset for gzip files).
    pub offset: u64,
    /// Where the file was last seen, when known.
    pub path: Option<PathBuf>,
    /// When the offset was last acknowledged (seconds since the Unix epoch).
    pub updated_unix_secs: u64,
    /// When the file was last known to exist (seconds since the Unix epoch).
    pub seen_unix_secs: u64,
}

impl Checkpoints {
    /// An empty set: every file is new.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the state file at `path`. A missing file is an empty set; an unreadable, corrupt or
    /// other-version file is an error (use [`Checkpoints::discard`] to start over on purpose).
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(SourceError::CheckpointRead {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| SourceError::CheckpointCorrupt {
            path: path.to_owned(),
            reason,
        };
        let header: Header = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if header.version != CHECKPOINT_VERSION {
            return Err(SourceError::CheckpointVersion {
                path: path.to_owned(),
                found: header.version,
                expected: CHECKPOINT_VERSION,
            });
        }
        let state: StateV1 = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let mut files = HashMap::with_capacity(state.files.len());
        for record in state.files {
            let checkpoint = record.into_checkpoint().map_err(corrupt)?;
            files.insert(checkpoint.key, checkpoint);
        }
        Ok(Self {
            files,
            changes: 0,
            saved_changes: AtomicU64::new(0),
        })
    }

    /// Moves an unusable state file aside (to `<name>.corrupt-<unix secs>`) so the next
    /// [`Checkpoints::load`] starts empty; returns where it went, or `None` if there was no file.
    pub fn discard(path: &Path) -> Result<Option<PathBuf>, SourceError> {
        if !path.exists() {
            return Ok(None);
        }
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".corrupt-{}", unix_now()));
        let aside = PathBuf::from(aside);
        fs::rename(path, &aside).map_err(|source| SourceError::CheckpointWrite {
            path: path.to_owned(),
            source,
        })?;
        Ok(Some(aside))
    }

    /// Records that everything in `file` up to `end_offset` is durably handled. Offsets only move
    /// forward for the same key; call this only after the lines are durable downstream.
    pub fn ack(&mut self, file: FileKey, end_offset: u64) {
        self.ack_at(file, None, end_offset);
    }

    /// Like [`Checkpoints::ack`], also remembering the path the file was read from.
    pub fn ack_file(&mut self, file: FileKey, path: &Path, end_offset: u64) {
        self.ack_at(file, Some(path), end_offset);
    }

    /// Records the files a tailer starts reading that these checkpoints do not know yet, at the
    /// offset reading starts (see [`Tailer::start_positions`](super::Tailer::start_positions)).
    /// Returns how many were added.
    pub fn register_start(&mut self, positions: &[StartPosition]) -> usize {
        let mut added = 0;
        for p in positions {
            if self.get(&p.file).is_none() {
                self.ack_file(p.file, &p.path, p.offset);
                added += 1;
            }
        }
        added
    }

    /// Like [`Checkpoints::ack`] for `line`, and also remembers the path it was read from.
    pub fn ack_line(&mut self, line: &Line) {
        self.ack_at(line.file, Some(&line.path), line.end_offset);
    }

    fn ack_at(&mut self, file: FileKey, path: Option<&Path>, end_offset: u64) {
        let now = unix_now();
        let changes = &mut self.changes;
        let checkpoint = self.files.entry(file).or_insert_with(|| {
            *changes += 1;
            Checkpoint {
                key: file,
                offset: 0,
                path: None,
                updated_unix_secs: now,
                seen_unix_secs: now,
            }
        });
        if end_offset > checkpoint.offset {
            checkpoint.offset = end_offset;
            self.changes += 1;
        }
        if let Some(path) = path
            && checkpoint.path.as_deref() != Some(path)
        {
            checkpoint.path = Some(path.to_owned());
            self.changes += 1;
        }
        checkpoint.updated_unix_secs = now;
        checkpoint.seen_unix_secs = now;
    }

    /// The acknowledged offset for `file`, if any.
    pub fn get(&self, file: &FileKey) -> Option<u64> {
        self.files.get(file).map(|c| c.offset)
    }

    /// All checkpoints, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Checkpoint> {
        self.files.values()
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is remembered.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes the state to `path` atomically: temporary file, fsync, rename, fsync of the
    /// directory. Does nothing when nothing changed since the last save or load.
    pub fn save(&self, path: &Path) -> Result<(), SourceError> {
        if self.saved_changes.load(Ordering::Acquire) == self.changes && path.exists() {
            return Ok(());
        }
        let write_err = |source: io::Error| SourceError::CheckpointWrite {
            path: path.to_owned(),
            source,
        };
        let mut records: Vec<FileRecord> = self.files.values().map(FileRecord::from).collect();
        records.sort_by_key(|r| (r.dev, r.inode, r.fingerprint_len, r.fingerprint.clone()));
        let state = StateV1 {
            version: CHECKPOINT_VERSION,
            files: records,
        };
        let mut bytes = serde_json::to_vec_pretty(&state)
            .map_err(io::Error::other)
            .map_err(write_err)?;
        bytes.push(b'\n');

        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(write_err)?;
        let tmp = Self::tmp_path_for(path);
        let mut file = File::create(&tmp).map_err(write_err)?;
        file.write_all(&bytes).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        fs::rename(&tmp, path).map_err(write_err)?;
        // The rename is durable only once the directory entry is on disk.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
        self.saved_changes.store(self.changes, Ordering::Release);
        Ok(())
    }

    /// Where [`Checkpoints::save`] writes before the rename (`<path>.tmp`): next to the state
    /// file, so the rename stays on one file system. A leftover one is ignored by `load`.
    pub fn tmp_path_for(path: &Path) -> PathBuf {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        PathBuf::from(tmp)
    }

    /// Prunes files that have not been seen for `max_age` in the directories of `watched`, drops
    /// checkpoints superseded by a longer fingerprint of the same file, and caps the set at
    /// [`MAX_CHECKPOINTS`]. Returns how many checkpoints were removed.
    pub fn forget_missing(&mut self, watched: &[PathBuf], max_age: Duration) -> usize {
        let now = unix_now();
        let present = scan_directories(watched);
        let mut verified: Vec<FileKey> = Vec::new();
        for checkpoint in self.files.values_mut() {
            let key = checkpoint.key;
            let Some(found) = present.get(&(key.dev, key.inode)) else {
                continue;
            };
            let len = key.fingerprint_len as usize;
            let prefix = if found.extension().is_some_and(|e| e == "gz") {
                read_gzip_prefix(found, len)
            } else {
                File::open(found).and_then(|f| read_prefix(&f, len))
            };
            if prefix.is_ok_and(|p| prefix_matches(&key, &p)) {
                checkpoint.seen_unix_secs = now;
                checkpoint.path = Some(found.clone());
                verified.push(key);
            }
        }
        let before = self.files.len();

        // Of several verified keys on one inode, only the longest fingerprint is still in use.
        let mut best: HashMap<(u64, u64), FileKey> = HashMap::new();
        for key in &verified {
            let slot = best.entry((key.dev, key.inode)).or_insert(*key);
            if key.fingerprint_len > slot.fingerprint_len {
                *slot = *key;
            }
        }
        let superseded: HashSet<FileKey> = verified
            .iter()
            .filter(|k| best.get(&(k.dev, k.inode)) != Some(k))
            .copied()
            .collect();
        let max_age_secs = max_age.as_secs();
        self.files.retain(|key, c| {
            !superseded.contains(key) && now.saturating_sub(c.seen_unix_secs) <= max_age_secs
        });
        if self.files.len() > MAX_CHECKPOINTS {
            let mut by_age: Vec<(u64, FileKey)> = self
                .files
                .values()
                .map(|c| (c.seen_unix_secs, c.key))
                .collect();
            by_age.sort_unstable();
            let excess = self.files.len() - MAX_CHECKPOINTS;
            for (_, key) in by_age.into_iter().take(excess) {
                self.files.remove(&key);
            }
        }
        let removed = before - self.files.len();
        // Seen-times changed too, but they only matter together with a real change.
        if removed > 0 {
            self.changes += 1;
        }
        removed
    }
}

/// Files in the directories of `watched`, by (device, inode).
fn scan_directories(watched: &[PathBuf]) -> HashMap<(u64, u64), PathBuf> {
    let mut dirs: Vec<&Path> = watched
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut present = HashMap::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = fs::metadata(&path)
                && meta.is_file()
            {
                present.insert(super::fingerprint::dev_inode(&meta), path);
            }
        }
    }
    present
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Just the version, read first so that a file of another version gets a version error rather
/// than a confusing field error.
#[derive(Deserialize)]
struct Header {
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct StateV1 {
    version: u64,
    files: Vec<FileRecord>,
}

/// One checkpoint as stored; the fingerprint is hex so tools that read JSON numbers as doubles
/// (jq) do not mangle it.
#[derive(Serialize, Deserialize)]
struct FileRecord {
    dev: u64,
    inode: u64,
    fingerprint: String,
    fingerprint_len: u32,
    offset: u64,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    updated_unix_secs: u64,
    #[serde(default)]
    seen_unix_secs: u64,
}

impl From<&Checkpoint> for FileRecord {
    fn from(c: &Checkpoint) -> Self {
        Self {
            dev: c.key.dev,
            inode: c.key.inode,
            fingerprint: format!("{:016x}", c.key.fingerprint),
            fingerprint_len: c.key.fingerprint_len,
            offset: c.offset,
            path: c.path.clone(),
            updated_unix_secs: c.updated_unix_secs,
            seen_unix_secs: c.seen_unix_secs,
        }
    }
}

impl FileRecord {
    fn into_checkpoint(self) -> Result<Checkpoint, String> {
        let fingerprint = u64::from_str_radix(&self.fingerprint, 16)
            .map_err(|e| format!("fingerprint {:?} is not hex: {e}", self.fingerprint))?;
        Ok(Checkpoint {
            key: FileKey {
                dev: self.dev,
                inode: self.inode,
                fingerprint,
                fingerprint_len: self.fingerprint_len,
            },
            offset: self.offset,
            path: self.path,
            updated_unix_secs: self.updated_unix_secs,
            seen_unix_secs: self.seen_unix_secs,
        })
    }
}
