//! The message tracker's state saved with the read positions it corresponds to
//! (`tracker.json` in the state directory), so a restarted agent knows the messages it had seen:
//! a deferred message retried after the restart (qmgr logs its `from=` line again on every
//! attempt) is not counted as received again, nor deferred or held again.
//!
//! Consistency with the checkpoint: the log reader saves the state right after it appended a
//! batch to the outbox, with the positions up to which it had processed every file; so every
//! saved position is covered by a durable batch (in the outbox or acknowledged into the
//! checkpoints). On start, the state is loaded and the tailer reads each file from the saved
//! position: the lines up to where the outbox and checkpoints resume are replayed into the
//! tracker only (their events are in durable batches already), the rest is processed as usual.
//! A saved position beyond the resume position (batches dropped by the outbox bound, or set
//! aside as refused) means the state is ahead of what is durable: it is not used, the tracker
//! starts empty, as does it when the file is missing or unreadable. Written like the
//! checkpoints: temporary file, fsync, rename, fsync of the directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pipeline::OriginCaps;
use crate::source::{Checkpoints, FileKey};
use crate::track::TrackerSnapshot;

/// Name of the tracker state file in the state directory.
pub const TRACKER_STATE_FILE: &str = "tracker.json";

/// Layout version this build reads and writes.
const VERSION: u64 = 1;

/// A saved tracker state and the positions it corresponds to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SavedTracker {
    version: u64,
    /// Per file, the end of the last line processed: everything before it is in `tracker`.
    pub positions: Vec<SavedPosition>,
    /// Hosts and instances admitted by name.
    pub origins: OriginCaps,
    /// The tracker itself.
    pub tracker: TrackerSnapshot,
}

/// One file's processed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedPosition {
    pub file: FileKey,
    pub offset: u64,
}

impl SavedTracker {
    /// A state to save.
    pub fn new(
        positions: impl IntoIterator<Item = (FileKey, u64)>,
        origins: OriginCaps,
        tracker: TrackerSnapshot,
    ) -> Self {
        let mut positions: Vec<SavedPosition> = positions
            .into_iter()
            .map(|(file, offset)| SavedPosition { file, offset })
            .collect();
        positions.sort_by_key(|p| (p.file, p.offset));
        Self {
            version: VERSION,
            positions,
            origins,
            tracker,
        }
    }

    /// Loads `path`; `None` (logged) when it is missing, unreadable or of another version.
    pub fn load(path: &Path) -> Option<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the tracker state; starting with an empty tracker");
                return None;
            }
        };
        match serde_json::from_slice::<Self>(&bytes) {
            Ok(state) if state.version == VERSION => Some(state),
            Ok(state) => {
                tracing::warn!(path = %path.display(), version = state.version, "tracker state of another version; starting with an empty tracker");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "tracker state unreadable; starting with an empty tracker");
                None
            }
        }
    }

    /// Whether no saved position lies beyond where reading resumes (`resume`: checkpoints and
    /// outbox positions) for the same file. Positions of files `resume` does not know are
    /// ignored (they cannot be read again either).
    pub fn consistent_with(&self, resume: &Checkpoints) -> bool {
        let mut furthest: HashMap<(u64, u64), u64> = HashMap::new();
        for c in resume.iter() {
            let slot = furthest.entry((c.key.dev, c.key.inode)).or_insert(0);
            *slot = (*slot).max(c.offset);
        }
        self.positions.iter().all(|p| {
            furthest
                .get(&(p.file.dev, p.file.inode))
                .is_none_or(|&r| p.offset <= r)
        })
    }

    /// The saved positions as checkpoints, to hand to [`Tailer::with_replay`](crate::source::Tailer::with_replay).
    pub fn replay_from(&self) -> Checkpoints {
        let mut c = Checkpoints::new();
        for p in &self.positions {
            c.ack(p.file, p.offset);
        }
        c
    }

    /// Writes the state to `path` atomically (temporary file, fsync, rename, fsync of the
    /// directory).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(dir).and_then(|d| d.sync_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(inode: u64) -> FileKey {
        FileKey {
            dev: 1,
            inode,
            fingerprint: 7,
            fingerprint_len: 256,
        }
    }

    #[test]
    fn positions_beyond_the_resume_point_make_it_inconsistent() {
        let saved = SavedTracker::new(
            [(key(1), 100), (key(2), 50)],
            OriginCaps::default(),
            TrackerSnapshot::default(),
        );
        let mut resume = Checkpoints::new();
        resume.ack(key(1), 100);
        resume.ack(key(2), 80);
        assert!(saved.consistent_with(&resume));
        let mut behind = Checkpoints::new();
        behind.ack(key(1), 99);
        behind.ack(key(2), 80);
        assert!(!saved.consistent_with(&behind), "file 1 resumes before 100");
        let mut unknown = Checkpoints::new();
        unknown.ack(key(1), 100);
        assert!(
            saved.consistent_with(&unknown),
            "file 2 is unknown: ignored"
        );
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRACKER_STATE_FILE);
        assert!(SavedTracker::load(&path).is_none());
        let saved = SavedTracker::new(
            [(key(3), 42)],
            OriginCaps::default(),
            TrackerSnapshot::default(),
        );
        saved.save(&path).unwrap();
        let back = SavedTracker::load(&path).unwrap();
        assert_eq!(back.positions, saved.positions);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(SavedTracker::load(&path).is_none(), "corrupt: start empty");
    }
}
