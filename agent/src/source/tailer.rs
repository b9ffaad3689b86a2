//! Following log files across rotation, with notify wake-ups and a poll fallback.
//!
//! Per configured path the tailer keeps the *live* file (whatever is at the path now) and a queue of
//! *draining* files, oldest first: rotated files still being read to their end, backfilled history,
//! and a copytruncate copy. Draining files are read before the live one, so lines of one file are
//! always handed out in file order. A plain rotated file is closed once it is at its end and has not
//! grown for `rotate_wait` (writers such as rsyslog keep appending to the renamed file until they are
//! told to reopen).

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::SourceError;
use super::checkpoint::Checkpoints;
use super::fingerprint::{FileKey, dev_inode, prefix_matches, read_gzip_prefix, read_prefix};
use super::line::{Line, StartPosition, TailStats};
use super::reader::{FileReader, ReadStatus, is_line_start, last_line_end};
use super::rotation::{Sibling, rotated_siblings};

/// What to tail and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailConfig {
    /// Live log files to follow (for example `/var/log/maillog`).
    pub paths: Vec<PathBuf>,
    /// How often files are checked when no notify event arrives.
    pub poll_interval: Duration,
    /// For a file without checkpoint: read it from the start (true) or only new lines (false).
    pub start_at_beginning: bool,
    /// When a path has no checkpoint at all, first read its rotated siblings (`<path>.1`,
    /// `<path>.N.gz`, `<path>-DATE`), oldest first, then the live file from its start.
    pub backfill_rotated: bool,
    /// Longest line kept; longer lines are truncated to this many bytes and counted.
    pub max_line_bytes: usize,
    /// How many leading bytes identify a file (see [`FileKey`]).
    pub fingerprint_bytes: usize,
    /// How long a rotated file that stopped growing is still watched for late writes.
    pub rotate_wait: Duration,
    /// Use file-system notifications (inotify) besides polling; polling alone works everywhere.
    pub watch_events: bool,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            poll_interval: Duration::from_millis(250),
            start_at_beginning: true,
            backfill_rotated: false,
            max_line_bytes: 1024 * 1024,
            fingerprint_bytes: 256,
            rotate_wait: Duration::from_secs(5),
            watch_events: true,
        }
    }
}

impl TailConfig {
    /// Default settings for `paths`.
    pub fn new(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Follows the configured files; see the module documentation.
pub struct Tailer {
    cfg: TailConfig,
    groups: Vec<Group>,
    ready: VecDeque<Line>,
    stats: TailStats,
    wakeup: Wakeup,
    /// Group that reads first in the next pass, so one busy file cannot starve the others.
    first_group: usize,
    /// Where each file opened at start begins; see [`Tailer::start_positions`].
    start: Vec<StartPosition>,
}

impl Tailer {
    /// Opens the configured files, resuming each at its checkpoint (found by [`FileKey`], also
    /// after rotation to a sibling name or compression) and, without checkpoints, per
    /// `start_at_beginning` and `backfill_rotated`.
    pub fn new(cfg: TailConfig, checkpoints: &Checkpoints) -> Result<Self, SourceError> {
        Self::open(cfg, checkpoints, None)
    }

    /// Like [`Tailer::new`], but each file that `replay` has an earlier position for is read
    /// from there: the lines between that position and the checkpoint come out first, marked
    /// [`Line::replay`] (already handled before a restart; a consumer rebuilds state from them
    /// without acting on them again), then new lines as usual. A replay position that does not
    /// fit the file (truncated since) is ignored.
    pub fn with_replay(
        cfg: TailConfig,
        checkpoints: &Checkpoints,
        replay: &Checkpoints,
    ) -> Result<Self, SourceError> {
        Self::open(cfg, checkpoints, Some(replay))
    }

    fn open(
        cfg: TailConfig,
        checkpoints: &Checkpoints,
        replay: Option<&Checkpoints>,
    ) -> Result<Self, SourceError> {
        validate(&cfg)?;
        let mut stats = TailStats::default();
        let mut groups = Vec::with_capacity(cfg.paths.len());
        for path in &cfg.paths {
            let mut group = Group::new(path);
            group.resume(&cfg, checkpoints, replay, &mut stats)?;
            groups.push(group);
        }
        let start = groups
            .iter()
            .flat_map(|g| g.draining.iter().chain(g.live.as_ref()))
            .map(|r| StartPosition {
                file: r.key,
                path: r.path.clone(),
                offset: r.line_start().max(r.replay_until),
                read_from: r.line_start(),
            })
            .collect();
        let wakeup = Wakeup::new(&cfg);
        Ok(Self {
            cfg,
            groups,
            ready: VecDeque::new(),
            stats,
            wakeup,
            first_group: 0,
            start,
        })
    }

    /// The files opened at start and where reading begins in each (after the lines replayed). A
    /// consumer records these in
    /// its checkpoints (for files they do not know yet) and saves *before* it reads: then a
    /// restart recognises every file it has seen, even when no line was acknowledged before a
    /// crash and the file was rotated meanwhile (without the record the rotated file would be
    /// a stranger, and its unread lines lost).
    pub fn start_positions(&self) -> &[StartPosition] {
        &self.start
    }

    /// Waits up to `timeout` for new complete lines and returns at most `max_lines` (at least 1)
    /// of them; an empty batch means nothing new arrived in time. Lines of one file come in file
    /// order; a line is returned only once its newline is written.
    pub fn next_batch(
        &mut self,
        max_lines: usize,
        timeout: Duration,
    ) -> Result<Vec<Line>, SourceError> {
        let max_lines = max_lines.max(1);
        let deadline = Instant::now() + timeout;
        loop {
            if self.ready.is_empty() {
                self.pass(max_lines);
            }
            if !self.ready.is_empty() {
                let n = self.ready.len().min(max_lines);
                return Ok(self.ready.drain(..n).collect());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            self.wakeup.wait(self.cfg.poll_interval.min(deadline - now));
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// The configured paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.cfg.paths
    }

    /// One look at every file: rotation checks, then reading until `max_lines` are waiting.
    fn pass(&mut self, max_lines: usize) {
        self.wakeup.watch_new_dirs();
        let mut out = Vec::new();
        let count = self.groups.len();
        for i in 0..count {
            if out.len() >= max_lines {
                break;
            }
            let group = &mut self.groups[(self.first_group + i) % count];
            group.poll(&self.cfg, &mut out, max_lines, &mut self.stats);
        }
        self.first_group = (self.first_group + 1) % count.max(1);
        self.ready.extend(out);
    }
}

/// At most this many rotated files per path stay open waiting for late writes.
const MAX_DRAINING: usize = 16;

/// Inodes remembered per path, to notice rotated files that were never tailed.
const MAX_KNOWN: usize = 64;

/// Reading limit for one truncation case, so a file rewritten in a loop cannot spin a pass.
const MAX_RESTARTS_PER_PASS: usize = 3;

/// Everything about one configured path.
struct Group {
    path: Arc<Path>,
    live: Option<FileReader>,
    draining: VecDeque<FileReader>,
    /// (dev, inode) of files opened for this path, newest last.
    known: VecDeque<(u64, u64)>,
}

/// A file found next to (or at) a configured path when starting.
struct Candidate {
    path: Arc<Path>,
    gzip: bool,
    id: (u64, u64),
    size: u64,
    prefix: Vec<u8>,
}

impl Group {
    fn new(path: &Path) -> Self {
        Self {
            path: Arc::from(path),
            live: None,
            draining: VecDeque::new(),
            known: VecDeque::new(),
        }
    }

    /// Decides where to start in the live file and its siblings, from the checkpoints.
    fn resume(
        &mut self,
        cfg: &TailConfig,
        checkpoints: &Checkpoints,
        replay: Option<&Checkpoints>,
        stats: &mut TailStats,
    ) -> Result<(), SourceError> {
        let prefix_len = checkpoints
            .iter()
            .chain(replay.into_iter().flat_map(Checkpoints::iter))
            .map(|c| c.key.fingerprint_len as usize)
            .max()
            .unwrap_or(0)
            .max(cfg.fingerprint_bytes);
        let siblings = rotated_siblings(&self.path).unwrap_or_else(|e| {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot list rotated files");
            stats.io_errors += 1;
            Vec::new()
        });
        let mut candidates: Vec<Candidate> = siblings
            .iter()
            .filter_map(|s| sibling_candidate(s, prefix_len, stats))
            .collect();
        let live_index = match probe_plain(&self.path, prefix_len) {
            Ok(Some(live)) => {
                candidates.retain(|c| c.id != live.id);
                candidates.push(live);
                Some(candidates.len() - 1)
            }
            Ok(None) => None,
            Err(source) => {
                return Err(SourceError::Open {
                    path: self.path.to_path_buf(),
                    source,
                });
            }
        };
        let offsets = match_checkpoints(&candidates, checkpoints, cfg.fingerprint_bytes);
        let replays = match replay {
            Some(replay) => match_checkpoints(&candidates, replay, cfg.fingerprint_bytes),
            None => vec![None; candidates.len()],
        };
        for c in &candidates {
            self.remember(c.id);
        }

        let newest_matched = offsets.iter().rposition(Option::is_some);
        let mut starts: Vec<Option<u64>> = vec![None; candidates.len()];
        match newest_matched {
            Some(newest) => {
                for (i, start) in starts.iter_mut().enumerate() {
                    // Older files without checkpoint were read before we kept one (or predate us);
                    // newer ones appeared while we were down and are read whole.
                    *start = if i <= newest { offsets[i] } else { Some(0) };
                }
            }
            None => {
                for (i, start) in starts.iter_mut().enumerate() {
                    *start = if Some(i) == live_index {
                        let from_start = cfg.start_at_beginning || cfg.backfill_rotated;
                        Some(if from_start { 0 } else { u64::MAX })
                    } else if cfg.backfill_rotated {
                        Some(0)
                    } else {
                        None
                    };
                }
            }
        }

        for (i, (candidate, start)) in candidates.into_iter().zip(starts).enumerate() {
            let Some(start) = start else { continue };
            let is_live = Some(i) == live_index;
            let replay_from = replays[i].filter(|&p| replay_fits(&candidate, p, start));
            if replay_from.is_none() && !is_live && start > 0 && fully_read(&candidate, start) {
                continue; // nothing left in a rotated file
            }
            match open_candidate(&candidate, replay_from.unwrap_or(start), cfg, stats) {
                Ok(mut reader) => {
                    if replay_from.is_some() {
                        reader.replay_until = start;
                    }
                    stats.files_opened += 1;
                    if is_live {
                        self.live = Some(reader);
                    } else {
                        self.draining.push_back(reader);
                    }
                }
                Err(source) if is_live && source.kind() != io::ErrorKind::NotFound => {
                    return Err(SourceError::Open {
                        path: candidate.path.to_path_buf(),
                        source,
                    });
                }
                Err(e) => {
                    tracing::warn!(path = %candidate.path.display(), error = %e, "cannot open rotated file");
                    stats.io_errors += 1;
                }
            }
        }
        Ok(())
    }

    /// Rotation check, then the draining files oldest first, then the live file.
    fn poll(
        &mut self,
        cfg: &TailConfig,
        out: &mut Vec<Line>,
        max_lines: usize,
        stats: &mut TailStats,
    ) {
        self.check_rotation(cfg, stats);
        if !self.read_draining(cfg, out, max_lines, stats) {
            return;
        }
        self.read_live(cfg, out, max_lines, stats);
    }

    /// Reads the draining files; returns false when `out` is full.
    fn read_draining(
        &mut self,
        cfg: &TailConfig,
        out: &mut Vec<Line>,
        max_lines: usize,
        stats: &mut TailStats,
    ) -> bool {
        let mut i = 0;
        while i < self.draining.len() {
            let reader = &mut self.draining[i];
            let retire = match reader.read_lines(out, max_lines, stats) {
                Ok(ReadStatus::Full) => return false,
                Ok(ReadStatus::Eof) => {
                    reader.is_finished_gzip()
                        || reader.last_growth.elapsed() >= cfg.rotate_wait
                        || self.draining.len() > MAX_DRAINING
                }
                Ok(ReadStatus::Truncated) => {
                    // A rotated file is not truncated in normal operation; its old content is
                    // gone, and reading the new content here would duplicate it elsewhere.
                    tracing::warn!(path = %reader.path.display(), "rotated file was truncated; closing it");
                    stats.truncations += 1;
                    true
                }
                Err(e) => {
                    tracing::warn!(path = %reader.path.display(), error = %e, "read failed; closing rotated file");
                    stats.io_errors += 1;
                    true
                }
            };
            if retire {
                self.draining.remove(i);
            } else {
                i += 1;
            }
        }
        true
    }

    fn read_live(
        &mut self,
        cfg: &TailConfig,
        out: &mut Vec<Line>,
        max_lines: usize,
        stats: &mut TailStats,
    ) {
        for _ in 0..MAX_RESTARTS_PER_PASS {
            let Some(live) = self.live.as_mut() else {
                return;
            };
            match live.read_lines(out, max_lines, stats) {
                Ok(ReadStatus::Full | ReadStatus::Eof) => return,
                Ok(ReadStatus::Truncated) => {
                    stats.truncations += 1;
                    let old_key = live.key;
                    let resume = live.line_start();
                    tracing::info!(path = %live.path.display(), offset = resume, "file truncated; reading it from the start");
                    if let Err(e) = live.restart_from_zero() {
                        tracing::warn!(path = %live.path.display(), error = %e, "cannot re-read truncated file");
                        stats.io_errors += 1;
                        return;
                    }
                    // copytruncate: the lines we had not read yet are in the copy.
                    if let Some(copy) = self.find_copy(&old_key, resume, cfg) {
                        stats.files_opened += 1;
                        self.remember(copy.dev_inode());
                        self.draining.push_back(copy);
                        if !self.read_draining(cfg, out, max_lines, stats) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %live.path.display(), error = %e, "read failed");
                    stats.io_errors += 1;
                    return;
                }
            }
        }
    }

    /// Notices that the path now names another file: the old one keeps draining, the new one is
    /// read from the start.
    fn check_rotation(&mut self, cfg: &TailConfig, stats: &mut TailStats) {
        let id = match fs::metadata(&self.path) {
            Ok(meta) => dev_inode(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot stat");
                stats.io_errors += 1;
                return;
            }
        };
        if self.live.as_ref().is_some_and(|l| l.dev_inode() == id)
            || self.draining.iter().any(|r| r.dev_inode() == id)
        {
            return;
        }
        let reader = match FileReader::open_plain(
            Arc::clone(&self.path),
            0,
            cfg.max_line_bytes,
            cfg.fingerprint_bytes,
        ) {
            Ok(reader) => reader,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot open");
                stats.io_errors += 1;
                return;
            }
        };
        stats.files_opened += 1;
        if let Some(old) = self.live.take() {
            stats.rotations += 1;
            let old_id = old.dev_inode();
            tracing::info!(path = %self.path.display(), "file rotated; draining the old one");
            self.draining.push_back(old);
            self.pick_up_missed(old_id, reader.dev_inode(), cfg, stats);
        }
        self.remember(reader.dev_inode());
        self.live = Some(reader);
    }

    /// After a rotation: rotated files newer than the one we were reading, that we never opened,
    /// were created and rotated away between two looks (several rotations in a row); read them.
    fn pick_up_missed(
        &mut self,
        old_id: (u64, u64),
        new_id: (u64, u64),
        cfg: &TailConfig,
        stats: &mut TailStats,
    ) {
        let Ok(siblings) = rotated_siblings(&self.path) else {
            return;
        };
        let plain: Vec<(&Sibling, (u64, u64))> = siblings
            .iter()
            .filter(|s| !s.gzip)
            .filter_map(|s| Some((s, dev_inode(&fs::metadata(&s.path).ok()?))))
            .collect();
        let Some(old_pos) = plain.iter().position(|(_, id)| *id == old_id) else {
            return;
        };
        for (sibling, id) in &plain[old_pos + 1..] {
            if *id == new_id || self.known.contains(id) {
                continue;
            }
            match FileReader::open_plain(
                Arc::from(sibling.path.as_path()),
                0,
                cfg.max_line_bytes,
                cfg.fingerprint_bytes,
            ) {
                Ok(reader) => {
                    tracing::warn!(path = %sibling.path.display(), "reading a rotated file that was never tailed");
                    stats.files_opened += 1;
                    self.remember(reader.dev_inode());
                    self.draining.push_back(reader);
                }
                Err(e) => {
                    tracing::warn!(path = %sibling.path.display(), error = %e, "cannot open rotated file");
                    stats.io_errors += 1;
                }
            }
        }
    }

    /// The copytruncate copy of a file we were reading as `old_key`: a plain sibling, not open,
    /// starting with the same bytes and longer than `resume`; opened at `resume`.
    fn find_copy(&self, old_key: &FileKey, resume: u64, cfg: &TailConfig) -> Option<FileReader> {
        if old_key.fingerprint_len == 0 {
            return None;
        }
        let siblings = rotated_siblings(&self.path).ok()?;
        for sibling in siblings.iter().rev().filter(|s| !s.gzip) {
            let Ok(file) = File::open(&sibling.path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            let id = dev_inode(&meta);
            if meta.len() <= resume
                || self.live.as_ref().is_some_and(|l| l.dev_inode() == id)
                || self.draining.iter().any(|r| r.dev_inode() == id)
            {
                continue;
            }
            let matches = read_prefix(&file, old_key.fingerprint_len as usize)
                .is_ok_and(|p| prefix_matches(old_key, &p));
            if !matches || !is_line_start(&file, resume).unwrap_or(false) {
                continue;
            }
            tracing::info!(path = %sibling.path.display(), offset = resume, "reading the rest from the copytruncate copy");
            return FileReader::open_plain(
                Arc::from(sibling.path.as_path()),
                resume,
                cfg.max_line_bytes,
                cfg.fingerprint_bytes,
            )
            .ok();
        }
        None
    }

    fn remember(&mut self, id: (u64, u64)) {
        if !self.known.contains(&id) {
            if self.known.len() >= MAX_KNOWN {
                self.known.pop_front();
            }
            self.known.push_back(id);
        }
    }
}

/// Checkpointed offset per candidate: first by device + inode (verified against the content, the
/// longest fingerprint wins), then, for copies and compressed files, by a full-length fingerprint.
fn match_checkpoints(
    candidates: &[Candidate],
    checkpoints: &Checkpoints,
    fingerprint_bytes: usize,
) -> Vec<Option<u64>> {
    let mut used: HashSet<FileKey> = HashSet::new();
    let mut offsets = vec![None; candidates.len()];
    for (i, c) in candidates.iter().enumerate() {
        let best = checkpoints
            .iter()
            .filter(|cp| (cp.key.dev, cp.key.inode) == c.id && prefix_matches(&cp.key, &c.prefix))
            .max_by_key(|cp| (cp.key.fingerprint_len, cp.offset));
        if let Some(cp) = best {
            used.insert(cp.key);
            offsets[i] = Some(cp.offset);
        }
    }
    for (i, c) in candidates.iter().enumerate() {
        if offsets[i].is_some() {
            continue;
        }
        let best = checkpoints
            .iter()
            .filter(|cp| {
                !used.contains(&cp.key)
                    && cp.key.fingerprint_len as usize >= fingerprint_bytes
                    && prefix_matches(&cp.key, &c.prefix)
            })
            .max_by_key(|cp| cp.offset);
        if let Some(cp) = best {
            used.insert(cp.key);
            offsets[i] = Some(cp.offset);
        }
    }
    offsets
}

fn sibling_candidate(
    sibling: &Sibling,
    prefix_len: usize,
    stats: &mut TailStats,
) -> Option<Candidate> {
    let probed = if sibling.gzip {
        fs::metadata(&sibling.path).and_then(|meta| {
            Ok(Some(Candidate {
                path: Arc::from(sibling.path.as_path()),
                gzip: true,
                id: dev_inode(&meta),
                size: meta.len(),
                prefix: read_gzip_prefix(&sibling.path, prefix_len)?,
            }))
        })
    } else {
        probe_plain(&sibling.path, prefix_len)
    };
    match probed {
        Ok(candidate) => candidate,
        Err(e) => {
            tracing::warn!(path = %sibling.path.display(), error = %e, "cannot read rotated file");
            stats.io_errors += 1;
            None
        }
    }
}

/// Whether a rotated file has nothing after `offset`. For gzip the trailer's ISIZE (decompressed
/// length mod 2^32 of the last member) tells without decompressing everything at each start; a
/// multi-member file just fails the test and gets decompressed, which is slow but correct.
/// Whether reading `c` from `replay` (to rebuild state) up to `start` works: an earlier line
/// start, within the file.
fn replay_fits(c: &Candidate, replay: u64, start: u64) -> bool {
    if replay >= start {
        return false;
    }
    if c.gzip {
        return true;
    }
    start <= c.size
        && File::open(&c.path)
            .and_then(|f| is_line_start(&f, replay))
            .unwrap_or(false)
}

fn fully_read(c: &Candidate, offset: u64) -> bool {
    if !c.gzip {
        return offset >= c.size;
    }
    let mut isize = [0u8; 4];
    c.size >= 18
        && File::open(&c.path)
            .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut isize, c.size - 4))
            .is_ok()
        && u64::from(u32::from_le_bytes(isize)) == offset & 0xffff_ffff
}

/// Identity and first bytes of a plain file; `None` if it does not exist.
fn probe_plain(path: &Path, prefix_len: usize) -> io::Result<Option<Candidate>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok(Some(Candidate {
        path: Arc::from(path),
        gzip: false,
        id: dev_inode(&meta),
        size: meta.len(),
        prefix: read_prefix(&file, prefix_len)?,
    }))
}

/// Opens a candidate at `start` (`u64::MAX`: after the last complete line). A checkpoint beyond
/// the end or not at a line start means the content changed: read from the start instead.
fn open_candidate(
    c: &Candidate,
    start: u64,
    cfg: &TailConfig,
    stats: &mut TailStats,
) -> io::Result<FileReader> {
    let path = Arc::clone(&c.path);
    if c.gzip {
        return FileReader::open_gzip(path, start, cfg.max_line_bytes, cfg.fingerprint_bytes);
    }
    let file = File::open(&path)?;
    let size = file.metadata()?.len();
    let start = if start == u64::MAX {
        last_line_end(&file, size)?
    } else if start > size || !is_line_start(&file, start)? {
        tracing::warn!(path = %path.display(), offset = start, size, "checkpoint does not fit the file; reading it from the start");
        stats.truncations += 1;
        0
    } else {
        start
    };
    FileReader::open_plain(path, start, cfg.max_line_bytes, cfg.fingerprint_bytes)
}

fn validate(cfg: &TailConfig) -> Result<(), SourceError> {
    let invalid = |what: &str| Err(SourceError::InvalidConfig(what.to_owned()));
    if cfg.paths.is_empty() {
        return invalid("no paths to tail");
    }
    if cfg.max_line_bytes == 0 {
        return invalid("max_line_bytes must be at least 1");
    }
    if cfg.fingerprint_bytes == 0 || cfg.fingerprint_bytes > u32::MAX as usize {
        return invalid("fingerprint_bytes must be between 1 and 2^32-1");
    }
    if cfg.poll_interval.is_zero() {
        return invalid("poll_interval must be positive");
    }
    Ok(())
}

/// Wake-ups from inotify on the parent directories; the poll interval is the fallback.
struct Wakeup {
    rx: Receiver<()>,
    watcher: Option<RecommendedWatcher>,
    wanted: Vec<PathBuf>,
    watched: HashSet<PathBuf>,
}

impl Wakeup {
    fn new(cfg: &TailConfig) -> Self {
        // One pending token is enough: a wake-up only means "look again".
        let (tx, rx): (SyncSender<()>, Receiver<()>) = mpsc::sync_channel(1);
        let watcher = if cfg.watch_events {
            let handler = move |event: notify::Result<notify::Event>| {
                // Our own opens (and the poll watcher's) show up as Access events; they say
                // nothing about new data.
                if let Ok(event) = &event
                    && matches!(event.kind, EventKind::Access(_))
                {
                    return;
                }
                let _ = tx.try_send(());
            };
            match notify::recommended_watcher(handler) {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    tracing::warn!(error = %e, "file notifications unavailable; polling only");
                    None
                }
            }
        } else {
            None
        };
        let mut wanted: Vec<PathBuf> = cfg
            .paths
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut wakeup = Self {
            rx,
            watcher,
            wanted,
            watched: HashSet::new(),
        };
        wakeup.watch_new_dirs();
        wakeup
    }

    /// Watches directories that did not exist (or could not be watched) before.
    fn watch_new_dirs(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for dir in &self.wanted {
            if !self.watched.contains(dir)
                && watcher.watch(dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.insert(dir.clone());
            }
        }
    }

    /// Sleeps until a notification or `max` elapsed.
    fn wait(&self, max: Duration) {
        let _ = self.rx.recv_timeout(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tailer_and_checkpoints_can_move_to_another_thread() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<Tailer>();
        send::<Checkpoints>();
        sync::<Checkpoints>();
        send::<Line>();
        sync::<Line>();
    }

    #[test]
    fn config_is_validated() {
        let ok = TailConfig::new(["/tmp/x"]);
        assert!(validate(&ok).is_ok());
        for bad in [
            TailConfig::new(Vec::<PathBuf>::new()),
            TailConfig {
                max_line_bytes: 0,
                ..ok.clone()
            },
            TailConfig {
                fingerprint_bytes: 0,
                ..ok.clone()
            },
            TailConfig {
                poll_interval: Duration::ZERO,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(SourceError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }
}
