//! Disk outbox: every batch is durable here, under its final `seq`, before it is sent.
//!
//! Layout of the directory:
//! - `state.json`: `{"version":1,"next_seq":N,"pending_drops":M,"carried_by_seq":S,
//!   "incarnation":"<32 hex digits>"}`, replaced atomically. `next_seq` is persisted *before* a
//!   batch with the previous number is written, so a number is never handed out twice, even
//!   when every batch has been acknowledged and deleted. The incarnation is 16 random bytes from
//!   the operating system, made with the state: sequence numbers count per incarnation, so a
//!   wiped state directory (numbering again from 1) is a new incarnation to the collector, not a
//!   resend of batches it already has;
//! - `<seq, 20 digits>.batch`: one batch per file, written to `<name>.tmp`, fsynced, renamed,
//!   then the directory fsynced. A crash mid-write leaves only the `.tmp` file, removed on open;
//! - `rejected/<seq>.batch`: batches the collector refused for good (the batch itself cannot be
//!   decoded there), moved out of the way so the batches after them are delivered, and kept for
//!   inspection within `max_rejected_bytes` (oldest deleted first).
//!
//! Every batch's label values are bounded ([`bound_batch`]) before it is written: this is the
//! one place every sample source's batches go through.
//!
//! A batch file is a small header followed by the prost-encoded [`Batch`] and a checksum:
//!
//! ```text
//! magic "MPOB" | version u16 = 1 | reserved u16 | seq u64 | created_unix_ms i64
//! | positions u32 | positions × (dev u64, inode u64, fingerprint u64, fingerprint_len u32,
//!   end_offset u64) | payload_len u32 | payload | FNV-1a 64 of everything before it
//! ```
//! (all integers little-endian). The positions are where the batch's lines end in each file: the
//! reader must resume after them, and the checkpoint may advance to them once the batch is
//! acknowledged.
//!
//! The outbox is bounded in bytes: appending past the bound deletes the oldest batches first and
//! counts them; the count goes out in the `dropped_batches` field of the batch being appended.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mailpulse_proto::v1::Batch;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::aggregate::{DEFAULT_MAX_LABEL_BYTES, bound_batch};
use crate::source::FileKey;

/// Default bound on the bytes of unacknowledged batches (256 MiB).
pub const DEFAULT_OUTBOX_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Default bound on the bytes of batches kept in `rejected/` (64 MiB).
pub const DEFAULT_MAX_REJECTED_BYTES: u64 = 64 * 1024 * 1024;

/// Subdirectory of batches the collector refused for good.
pub const REJECTED_DIR: &str = "rejected";

const MAGIC: &[u8; 4] = b"MPOB";
const FORMAT_VERSION: u16 = 1;
const STATE_VERSION: u64 = 1;
const STATE_FILE: &str = "state.json";
const BATCH_SUFFIX: &str = ".batch";
const TMP_SUFFIX: &str = ".tmp";
/// Fixed part of the header before the positions: magic, version, reserved, seq, created, count.
const FIXED_HEADER: usize = 4 + 2 + 2 + 8 + 8 + 4;
const POSITION_BYTES: usize = 8 + 8 + 8 + 4 + 8;

/// Outbox settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Most bytes of batch files kept; older batches are dropped (and counted) beyond it. A single
    /// batch larger than the bound is still kept, alone.
    pub max_bytes: u64,
    /// Longest label value written; longer ones are cut with a hash suffix.
    pub max_label_bytes: usize,
    /// Most bytes of refused batches kept in `rejected/`; the oldest go first.
    pub max_rejected_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_OUTBOX_MAX_BYTES,
            max_label_bytes: DEFAULT_MAX_LABEL_BYTES,
            max_rejected_bytes: DEFAULT_MAX_REJECTED_BYTES,
        }
    }
}

/// The end of the last line of one file that a batch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePosition {
    /// Which file.
    pub file: FileKey,
    /// Offset just after the line.
    pub end_offset: u64,
}

/// One unacknowledged batch read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBatch {
    /// Its sequence number (also in `batch.seq`).
    pub seq: u64,
    /// File positions it covers.
    pub positions: Vec<FilePosition>,
    /// The batch as it is sent.
    pub batch: Batch,
}

/// Counters about the outbox since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Bytes of batch files now.
    pub bytes: u64,
    /// Batch files now.
    pub batches: u64,
    /// Batches deleted to stay within the bound, plus corrupt ones (both are counted losses).
    pub dropped_batches: u64,
    /// Of `dropped_batches`: files found corrupt or truncated.
    pub corrupt_batches: u64,
    /// Leftover temporary files removed when opening.
    pub removed_tmp_files: u64,
    /// Batches the collector refused for good, moved to `rejected/`.
    pub rejected_batches: u64,
    /// Label values cut to `max_label_bytes` on append.
    pub labels_truncated: u64,
}

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Reading or writing a file of the outbox failed.
    #[error("outbox I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The state file cannot be used; without it sequence numbers could be reused.
    #[error(
        "outbox state file {path} is unusable ({reason}); fix or remove it (a removed state file restarts numbering after the pending batches, which the collector may take as duplicates)"
    )]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A batch file that was valid when the outbox was opened no longer is.
    #[error("outbox batch {seq} is corrupt: {reason}")]
    Corrupt {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random number generator failed (making the incarnation).
    #[error("cannot make the outbox incarnation: {0}")]
    Random(String),
}

/// The disk outbox; see the module documentation. Not thread-safe: share it behind a mutex.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    cfg: OutboxConfig,
    next_seq: u64,
    /// Drops not yet reported in a batch's `dropped_batches`.
    pending_drops: u64,
    entries: BTreeMap<u64, Entry>,
    stats: OutboxStats,
    /// This state's incarnation; empty for a state written before incarnations existed that
    /// still has batches pending (they keep the numbering the collector knows).
    incarnation: String,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    created_unix_ms: i64,
    positions: Vec<FilePosition>,
}

#[derive(Serialize, Deserialize)]
struct State {
    version: u64,
    next_seq: u64,
    pending_drops: u64,
    /// The batch written right after this state that carries `pending_drops` in its
    /// `dropped_batches`; if that batch exists on disk, the drops are already reported.
    #[serde(default)]
    carried_by_seq: Option<u64>,
    /// 32 hex digits; missing in states written before incarnations existed.
    #[serde(default)]
    incarnation: Option<String>,
}

impl Outbox {
    /// Opens (creating if needed) the outbox in `dir`: removes temporary leftovers, verifies every
    /// batch file and drops (and counts) corrupt or truncated ones.
    pub fn open(dir: &Path, cfg: OutboxConfig) -> Result<Self, OutboxError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let state = read_state(&dir.join(STATE_FILE))?;
        let mut outbox = Self {
            dir: dir.to_owned(),
            cfg,
            next_seq: state.as_ref().map_or(1, |s| s.next_seq.max(1)),
            pending_drops: state.as_ref().map_or(0, |s| s.pending_drops),
            entries: BTreeMap::new(),
            stats: OutboxStats::default(),
            incarnation: state
                .as_ref()
                .and_then(|s| s.incarnation.clone())
                .unwrap_or_default(),
        };

        let mut corrupt = Vec::new();
        let mut removed_tmp = false;
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(TMP_SUFFIX) {
                fs::remove_file(&path).map_err(io_err(&path))?;
                outbox.stats.removed_tmp_files += 1;
                removed_tmp = true;
                continue;
            }
            let Some(seq) = name
                .strip_suffix(BATCH_SUFFIX)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            match decode_file(&bytes, seq) {
                Ok(file) => {
                    outbox.entries.insert(
                        seq,
                        Entry {
                            size: bytes.len() as u64,
                            created_unix_ms: file.created_unix_ms,
                            positions: file.positions,
                        },
                    );
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "dropping corrupt outbox batch");
                    corrupt.push(path);
                }
            }
        }

        // A crash right after appending a batch that reported the drops: they went out with it.
        if let Some(carrier) = state.as_ref().and_then(|s| s.carried_by_seq)
            && outbox.entries.contains_key(&carrier)
        {
            outbox.pending_drops = 0;
        }
        if let Some((&last, _)) = outbox.entries.last_key_value() {
            if state.is_none() {
                tracing::warn!(dir = %dir.display(), "outbox state file missing; numbering continues after the pending batches");
            }
            if last >= outbox.next_seq {
                outbox.next_seq = last + 1;
            }
        }
        outbox.stats.bytes = outbox.entries.values().map(|e| e.size).sum();
        outbox.stats.batches = outbox.entries.len() as u64;
        if !corrupt.is_empty() {
            // Count the loss durably before the evidence is deleted.
            outbox.pending_drops += corrupt.len() as u64;
            outbox.stats.dropped_batches += corrupt.len() as u64;
            outbox.stats.corrupt_batches += corrupt.len() as u64;
            outbox.write_state(outbox.next_seq, None)?;
            for path in &corrupt {
                fs::remove_file(path).map_err(io_err(path))?;
            }
        }
        if removed_tmp || !corrupt.is_empty() {
            sync_dir(dir)?;
        }
        // A new state gets its incarnation now. A state from before incarnations keeps the
        // numbering the collector knows while batches of it are pending, and gets one once none
        // is (nothing can be resent under the old numbering then).
        if outbox.incarnation.is_empty() && (state.is_none() || outbox.entries.is_empty()) {
            outbox.incarnation = new_incarnation()?;
            outbox.write_state(outbox.next_seq, None)?;
            tracing::info!(incarnation = %outbox.incarnation, "new outbox incarnation");
        }
        Ok(outbox)
    }

    /// This state's incarnation (32 hex digits), sent in `Hello`: sequence numbers count per
    /// incarnation.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Makes `batch` durable under the next sequence number and returns that number. Sets the
    /// batch's `seq` and `dropped_batches` (drops not reported yet, including the ones this
    /// append makes to stay within the bound). `positions` are the ends of the last lines, per
    /// file, whose events the batch contains.
    pub fn append(
        &mut self,
        mut batch: Batch,
        positions: &[FilePosition],
    ) -> Result<u64, OutboxError> {
        self.append_mut(&mut batch, positions)
    }

    /// [`Outbox::append`] that leaves the batch with the caller, to append it again after an
    /// error (a full disk).
    pub fn append_mut(
        &mut self,
        batch: &mut Batch,
        positions: &[FilePosition],
    ) -> Result<u64, OutboxError> {
        self.stats.labels_truncated += bound_batch(batch, self.cfg.max_label_bytes);
        let seq = self.next_seq;
        batch.seq = seq;
        // Room for the final `dropped_batches` value, which is known only after dropping.
        batch.dropped_batches = u64::MAX;
        let estimate = file_len(positions.len(), batch.encoded_len()) as u64;
        self.make_room(estimate)?;

        batch.dropped_batches = self.pending_drops;
        let carrier = (self.pending_drops > 0).then_some(seq);
        self.write_state(seq + 1, carrier)?;
        self.next_seq = seq + 1;

        let bytes = encode_file(batch, positions);
        let path = self.batch_path(seq);
        let tmp = self
            .dir
            .join(format!("{seq:020}{BATCH_SUFFIX}{TMP_SUFFIX}"));
        if let Err(e) = write_synced(&tmp, &bytes).and_then(|()| {
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(&self.dir)
        }) {
            // A full disk: leave no partial file behind, it would only take more space. The
            // number is used up (the state says so); the collector accepts the gap.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.entries.insert(
            seq,
            Entry {
                size: bytes.len() as u64,
                created_unix_ms: batch.created_unix_ms,
                positions: positions.to_vec(),
            },
        );
        self.stats.bytes += bytes.len() as u64;
        self.stats.batches += 1;
        if self.pending_drops > 0 {
            // Reported now; persisting the zero keeps a restart from reporting them again.
            self.pending_drops = 0;
            self.write_state(self.next_seq, None)?;
        }
        Ok(seq)
    }

    /// Reads every pending batch back, in sequence order. A batch deleted in the meantime is
    /// skipped.
    pub fn pending(&self) -> impl Iterator<Item = Result<PendingBatch, OutboxError>> + '_ {
        self.entries
            .keys()
            .filter_map(move |&seq| self.read(seq).transpose())
    }

    /// Sequence numbers of the pending batches, ascending.
    pub fn pending_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.keys().copied()
    }

    /// The first pending sequence number greater than `after` (the first of all for `None`).
    pub fn next_pending_after(&self, after: Option<u64>) -> Option<u64> {
        match after {
            None => self.entries.keys().next().copied(),
            Some(after) => self
                .entries
                .range(after.saturating_add(1)..)
                .next()
                .map(|(&s, _)| s),
        }
    }

    /// Reads batch `seq` from disk; `None` when it is not (or no longer) pending.
    pub fn read(&self, seq: u64) -> Result<Option<PendingBatch>, OutboxError> {
        if !self.entries.contains_key(&seq) {
            return Ok(None);
        }
        let path = self.batch_path(seq);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(OutboxError::Io { path, source }),
        };
        let file =
            decode_file(&bytes, seq).map_err(|reason| OutboxError::Corrupt { seq, reason })?;
        let batch = Batch::decode(file.payload).map_err(|e| OutboxError::Corrupt {
            seq,
            reason: format!("batch does not decode: {e}"),
        })?;
        Ok(Some(PendingBatch {
            seq,
            positions: file.positions,
            batch,
        }))
    }

    /// File positions covered by pending batch `seq`.
    pub fn positions(&self, seq: u64) -> Option<&[FilePosition]> {
        self.entries.get(&seq).map(|e| e.positions.as_slice())
    }

    /// Removes batch `seq` after the collector acknowledged it; returns the positions it covered
    /// (`None` when it was not pending, e.g. dropped meanwhile).
    pub fn ack(&mut self, seq: u64) -> Result<Option<Vec<FilePosition>>, OutboxError> {
        let Some(entry) = self.remove(seq)? else {
            return Ok(None);
        };
        Ok(Some(entry.positions))
    }

    /// Deletes pending batch `seq` as lost (it turned out corrupt) and counts it as dropped.
    pub fn drop_batch(&mut self, seq: u64) -> Result<bool, OutboxError> {
        if !self.entries.contains_key(&seq) {
            return Ok(false);
        }
        self.pending_drops += 1;
        self.stats.dropped_batches += 1;
        self.write_state(self.next_seq, None)?;
        self.remove(seq)?;
        Ok(true)
    }

    /// Moves pending batch `seq` to `rejected/` because the collector refused it for good; keeps
    /// that directory within `max_rejected_bytes` (oldest first). Returns whether it was pending.
    pub fn reject_batch(&mut self, seq: u64) -> Result<bool, OutboxError> {
        if !self.entries.contains_key(&seq) {
            return Ok(false);
        }
        let dir = self.dir.join(REJECTED_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let from = self.batch_path(seq);
        let to = dir.join(format!("{seq:020}{BATCH_SUFFIX}"));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(OutboxError::Io { path: from, source }),
        }
        sync_dir(&self.dir)?;
        self.remove(seq)?;
        self.stats.rejected_batches += 1;
        prune_oldest(&dir, self.cfg.max_rejected_bytes);
        Ok(true)
    }

    /// Per file, the highest position any pending batch covers: those lines are durable here, so
    /// the reader resumes after them.
    pub fn resume_positions(&self) -> HashMap<FileKey, u64> {
        let mut out: HashMap<FileKey, u64> = HashMap::new();
        for p in self.entries.values().flat_map(|e| &e.positions) {
            let slot = out.entry(p.file).or_insert(p.end_offset);
            *slot = (*slot).max(p.end_offset);
        }
        out
    }

    /// The number the next appended batch gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The oldest pending sequence number.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// When the oldest pending batch was built (Unix milliseconds).
    pub fn oldest_created_unix_ms(&self) -> Option<i64> {
        self.entries.values().next().map(|e| e.created_unix_ms)
    }

    /// Number of pending batches.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no batch is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters since opening.
    pub fn stats(&self) -> OutboxStats {
        self.stats
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the file of batch `seq`.
    pub fn batch_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{BATCH_SUFFIX}"))
    }

    /// Drops the oldest batches until `incoming` more bytes fit under the bound. The loss is
    /// counted durably before any file is deleted.
    fn make_room(&mut self, incoming: u64) -> Result<(), OutboxError> {
        let mut bytes = self.stats.bytes;
        let mut victims = Vec::new();
        for (&seq, entry) in &self.entries {
            if bytes + incoming <= self.cfg.max_bytes {
                break;
            }
            victims.push(seq);
            bytes -= entry.size;
        }
        if victims.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            batches = victims.len(),
            oldest = victims[0],
            max_bytes = self.cfg.max_bytes,
            "outbox full; dropping the oldest batches"
        );
        self.pending_drops += victims.len() as u64;
        self.stats.dropped_batches += victims.len() as u64;
        self.write_state(self.next_seq, None)?;
        for seq in victims {
            self.remove(seq)?;
        }
        Ok(())
    }

    fn remove(&mut self, seq: u64) -> Result<Option<Entry>, OutboxError> {
        let Some(entry) = self.entries.remove(&seq) else {
            return Ok(None);
        };
        let path = self.batch_path(seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                self.entries.insert(seq, entry);
                return Err(OutboxError::Io { path, source });
            }
        }
        // No directory fsync: if the deletion is lost in a crash, the batch is resent and the
        // collector answers it as a duplicate.
        self.stats.bytes -= entry.size;
        self.stats.batches -= 1;
        Ok(Some(entry))
    }

    fn write_state(&self, next_seq: u64, carried_by_seq: Option<u64>) -> Result<(), OutboxError> {
        let state = State {
            version: STATE_VERSION,
            next_seq,
            pending_drops: self.pending_drops,
            carried_by_seq,
            incarnation: (!self.incarnation.is_empty()).then(|| self.incarnation.clone()),
        };
        let mut bytes = serde_json::to_vec(&state).unwrap_or_default();
        bytes.push(b'\n');
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}{TMP_SUFFIX}"));
        write_synced(&tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)
    }
}

/// 16 random bytes from the operating system, in hex.
fn new_incarnation() -> Result<String, OutboxError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| OutboxError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Deletes the files of `dir` with the lowest names until the rest fit in `max_bytes`.
/// Best effort: a file that cannot be deleted is left.
fn prune_oldest(dir: &Path, max_bytes: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|(_, len)| len).sum();
    for (path, len) in files {
        if total <= max_bytes {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            tracing::warn!(path = %path.display(), "rejected batch deleted (rejected/ is full)");
            total -= len;
        }
    }
}

fn read_state(path: &Path) -> Result<Option<State>, OutboxError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OutboxError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| OutboxError::State {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if state.version != STATE_VERSION {
        return Err(OutboxError::State {
            path: path.to_owned(),
            reason: format!(
                "version {} (this build reads {STATE_VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

/// A batch file taken apart (payload not decoded).
struct DecodedFile<'a> {
    created_unix_ms: i64,
    positions: Vec<FilePosition>,
    payload: &'a [u8],
}

fn file_len(positions: usize, payload: usize) -> usize {
    FIXED_HEADER + positions * POSITION_BYTES + 4 + payload + 8
}

fn encode_file(batch: &Batch, positions: &[FilePosition]) -> Vec<u8> {
    let payload_len = batch.encoded_len();
    let mut out = Vec::with_capacity(file_len(positions.len(), payload_len));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&batch.seq.to_le_bytes());
    out.extend_from_slice(&batch.created_unix_ms.to_le_bytes());
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for p in positions {
        out.extend_from_slice(&p.file.dev.to_le_bytes());
        out.extend_from_slice(&p.file.inode.to_le_bytes());
        out.extend_from_slice(&p.file.fingerprint.to_le_bytes());
        out.extend_from_slice(&p.file.fingerprint_len.to_le_bytes());
        out.extend_from_slice(&p.end_offset.to_le_bytes());
    }
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    batch
        .encode(&mut out)
        .expect("a Vec grows as needed, encoding cannot run out of space");
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn decode_file(bytes: &[u8], expected_seq: u64) -> Result<DecodedFile<'_>, String> {
    let mut r = Cursor { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err("not an outbox batch (bad magic)".into());
    }
    let version = r.u16()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    r.u16()?;
    let seq = r.u64()?;
    if seq != expected_seq {
        return Err(format!(
            "file name says seq {expected_seq}, header says {seq}"
        ));
    }
    let created_unix_ms = r.u64()? as i64;
    let count = r.u32()? as usize;
    if count > bytes.len() / POSITION_BYTES {
        return Err("truncated (position list)".into());
    }
    let mut positions = Vec::with_capacity(count);
    for _ in 0..count {
        let file = FileKey {
            dev: r.u64()?,
            inode: r.u64()?,
            fingerprint: r.u64()?,
            fingerprint_len: r.u32()?,
        };
        positions.push(FilePosition {
            file,
            end_offset: r.u64()?,
        });
    }
    let payload_len = r.u32()? as usize;
    let payload = r.take(payload_len)?;
    let body_end = r.at;
    let sum = r.u64()?;
    if r.at != bytes.len() {
        return Err("trailing bytes after the checksum".into());
    }
    if fnv1a(&bytes[..body_end]) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(DecodedFile {
        created_unix_ms,
        positions,
        payload,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.bytes.len()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// 64-bit FNV-1a: catches torn and bit-flipped files; not a defence against tampering.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    let mut file = File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Makes renames and new entries in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_detects_flips() {
        let batch = Batch {
            seq: 7,
            created_unix_ms: 1234,
            ..Batch::default()
        };
        let pos = [FilePosition {
            file: FileKey {
                dev: 1,
                inode: 2,
                fingerprint: 3,
                fingerprint_len: 4,
            },
            end_offset: 99,
        }];
        let bytes = encode_file(&batch, &pos);
        assert_eq!(bytes.len(), file_len(1, batch.encoded_len()));
        let f = decode_file(&bytes, 7).expect("valid file decodes");
        assert_eq!(f.positions, pos);
        assert_eq!(f.created_unix_ms, 1234);
        assert_eq!(Batch::decode(f.payload).unwrap(), batch);
        assert!(decode_file(&bytes, 8).is_err(), "seq mismatch");
        for cut in 0..bytes.len() {
            assert!(decode_file(&bytes[..cut], 7).is_err(), "truncated at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[FIXED_HEADER + 3] ^= 1;
        assert!(decode_file(&flipped, 7).is_err(), "bit flip detected");
    }
}
