//! Checkpoint state file (round trip, corruption, versions, atomic replace, pruning) and restarts
//! of the tailer from saved checkpoints.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mailpulse_agent::source::{
    CHECKPOINT_VERSION, Checkpoints, FileKey, Line, SourceError, TailConfig, Tailer,
};

fn key(inode: u64, fingerprint: u64) -> FileKey {
    FileKey {
        dev: 7,
        inode,
        fingerprint,
        fingerprint_len: 256,
    }
}

#[test]
fn save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/checkpoints.json");
    let mut checkpoints = Checkpoints::new();
    checkpoints.ack(key(1, u64::MAX), 1234);
    checkpoints.ack(key(2, 42), 99);
    checkpoints.save(&state).unwrap();

    let loaded = Checkpoints::load(&state).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded.get(&key(1, u64::MAX)), Some(1234));
    assert_eq!(loaded.get(&key(2, 42)), Some(99));
    assert_eq!(loaded.get(&key(3, 42)), None);

    let json: serde_json::Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    assert_eq!(json["version"], CHECKPOINT_VERSION);
    assert_eq!(json["files"].as_array().map(Vec::len), Some(2));
}

#[test]
fn missing_state_file_is_an_empty_set() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = Checkpoints::load(&dir.path().join("nothing.json")).unwrap();
    assert!(loaded.is_empty());
}

#[test]
fn corrupt_state_file_is_a_clear_error_and_can_be_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("checkpoints.json");
    fs::write(&state, "{\"version\":1,\"files\":[{\"dev\":1,").unwrap();
    let err = Checkpoints::load(&state).unwrap_err();
    assert!(
        matches!(err, SourceError::CheckpointCorrupt { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("checkpoints.json") && message.contains("corrupt"),
        "{message}"
    );

    let aside = Checkpoints::discard(&state)
        .unwrap()
        .expect("file moved aside");
    assert!(aside.exists() && !state.exists());
    assert!(Checkpoints::load(&state).unwrap().is_empty());
    assert_eq!(Checkpoints::discard(&state).unwrap(), None);
}

#[test]
fn bad_fingerprint_in_state_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("checkpoints.json");
    fs::write(
        &state,
        r#"{"version":1,"files":[{"dev":1,"inode":2,"fingerprint":"zz","fingerprint_len":3,"offset":4}]}"#,
    )
    .unwrap();
    let err = Checkpoints::load(&state).unwrap_err();
    assert!(
        matches!(err, SourceError::CheckpointCorrupt { .. }),
        "{err:?}"
    );
}

#[test]
fn other_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("checkpoints.json");
    fs::write(&state, r#"{"version":2,"checkpoints":{}}"#).unwrap();
    let err = Checkpoints::load(&state).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::CheckpointVersion {
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn offsets_never_move_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("checkpoints.json");
    let mut checkpoints = Checkpoints::new();
    checkpoints.ack(key(1, 1), 500);
    checkpoints.ack(key(1, 1), 200);
    assert_eq!(checkpoints.get(&key(1, 1)), Some(500));
    checkpoints.save(&state).unwrap();
    let mut loaded = Checkpoints::load(&state).unwrap();
    loaded.ack(key(1, 1), 499);
    assert_eq!(loaded.get(&key(1, 1)), Some(500));
    loaded.ack(key(1, 1), 501);
    assert_eq!(loaded.get(&key(1, 1)), Some(501));
}

#[test]
fn save_replaces_atomically_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("checkpoints.json");
    let mut checkpoints = Checkpoints::new();
    checkpoints.ack(key(1, 1), 10);
    checkpoints.save(&state).unwrap();
    let inode_before = fs::metadata(&state).unwrap().ino();

    // A crash in the middle of an earlier save left a torn temporary file: it is ignored on
    // load and replaced by the next save.
    fs::write(Checkpoints::tmp_path_for(&state), "{\"version\":1,\"fil").unwrap();
    assert_eq!(Checkpoints::load(&state).unwrap().get(&key(1, 1)), Some(10));

    checkpoints.ack(key(1, 1), 20);
    checkpoints.save(&state).unwrap();
    assert!(
        !Checkpoints::tmp_path_for(&state).exists(),
        "temporary file left behind"
    );
    assert_ne!(
        fs::metadata(&state).unwrap().ino(),
        inode_before,
        "the state file must be replaced by rename, not rewritten in place"
    );
    assert_eq!(Checkpoints::load(&state).unwrap().get(&key(1, 1)), Some(20));
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["checkpoints.json"]);
}

#[test]
fn forget_missing_prunes_only_files_gone_for_long() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    fs::write(
        &live,
        "a line that is long enough for a short fingerprint\n",
    )
    .unwrap();
    // Learn the real key of the live file through the tailer.
    let cfg = TailConfig::new([&live]);
    let mut tailer = Tailer::new(cfg, &Checkpoints::new()).unwrap();
    let line = read_lines(&mut tailer, 1).pop().expect("one line");

    // A state file written a week ago: the live file plus a long-deleted one.
    let state = dir.path().join("checkpoints.json");
    let week_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7 * 86_400;
    let record = |k: &FileKey, offset: u64| {
        format!(
            r#"{{"dev":{},"inode":{},"fingerprint":"{:016x}","fingerprint_len":{},"offset":{offset},"updated_unix_secs":{week_ago},"seen_unix_secs":{week_ago}}}"#,
            k.dev, k.inode, k.fingerprint, k.fingerprint_len
        )
    };
    let gone = FileKey {
        inode: line.file.inode.wrapping_add(1_000_003),
        ..line.file
    };
    fs::write(
        &state,
        format!(
            r#"{{"version":1,"files":[{},{}]}}"#,
            record(&line.file, line.end_offset),
            record(&gone, 77)
        ),
    )
    .unwrap();
    let mut checkpoints = Checkpoints::load(&state).unwrap();
    assert_eq!(checkpoints.len(), 2);
    let removed =
        checkpoints.forget_missing(std::slice::from_ref(&live), Duration::from_secs(86_400));
    assert_eq!(removed, 1);
    assert_eq!(checkpoints.get(&line.file), Some(line.end_offset));
    assert_eq!(checkpoints.get(&gone), None);
}

fn line_text(n: usize) -> String {
    format!("{n:06} Oct 26 18:13:50 mx postfix/qmgr[77]: 1A2B{n:06}: removed")
}

fn numbered(range: std::ops::Range<usize>) -> String {
    range.map(|n| format!("{}\n", line_text(n))).collect()
}

fn number_of(line: &Line) -> usize {
    let n = line.text[..6].parse().expect("numbered line");
    assert_eq!(line.text, line_text(n), "line {n} came out damaged");
    n
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Reads until `want` lines came or 5 s passed, then checks that nothing more comes.
fn read_lines(tailer: &mut Tailer, want: usize) -> Vec<Line> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    while lines.len() < want && Instant::now() < deadline {
        lines.extend(
            tailer
                .next_batch(want - lines.len(), Duration::from_millis(50))
                .unwrap(),
        );
    }
    let extra = tailer.next_batch(1000, Duration::from_millis(150)).unwrap();
    assert!(extra.is_empty(), "more lines than expected: {extra:?}");
    lines
}

fn numbers(lines: &[Line]) -> Vec<usize> {
    lines.iter().map(number_of).collect()
}

/// Reads lines 0..1000, acknowledges only the first 400 and saves, then drops the tailer as a crash
/// would. Returns the state file.
fn read_ack_400_and_crash(live: &Path, state: &Path) -> TailConfig {
    append(live, &numbered(0..1000));
    let cfg = TailConfig::new([live]);
    let mut checkpoints = Checkpoints::load(state).unwrap();
    let mut tailer = Tailer::new(cfg.clone(), &checkpoints).unwrap();
    let lines = read_lines(&mut tailer, 1000);
    assert_eq!(numbers(&lines), (0..1000).collect::<Vec<_>>());
    checkpoints.ack(lines[399].file, lines[399].end_offset);
    checkpoints.save(state).unwrap();
    cfg
}

#[test]
fn restart_resends_unacknowledged_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let (live, state) = (
        dir.path().join("maillog"),
        dir.path().join("checkpoints.json"),
    );
    let cfg = read_ack_400_and_crash(&live, &state);

    let tailer_state = Checkpoints::load(&state).unwrap();
    let mut tailer = Tailer::new(cfg, &tailer_state).unwrap();
    assert_eq!(
        numbers(&read_lines(&mut tailer, 600)),
        (400..1000).collect::<Vec<_>>()
    );
}

#[test]
fn restart_after_rename_rotation_while_down_finds_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let (live, state) = (
        dir.path().join("maillog"),
        dir.path().join("checkpoints.json"),
    );
    let cfg = read_ack_400_and_crash(&live, &state);
    fs::rename(&live, dir.path().join("maillog-20241026")).unwrap();
    append(&live, &numbered(1000..1200));

    let mut tailer = Tailer::new(cfg, &Checkpoints::load(&state).unwrap()).unwrap();
    assert_eq!(
        numbers(&read_lines(&mut tailer, 800)),
        (400..1200).collect::<Vec<_>>()
    );
}

/// A crash before any line was acknowledged, then a rotation while down: the start positions
/// recorded before reading make the rotated file known, so its unread lines are read (without
/// them the restart would see two strangers and skip the history of the rotated one).
#[test]
fn crash_before_the_first_ack_then_rotation_loses_nothing() {
    for start_at_beginning in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (live, state) = (
            dir.path().join("maillog"),
            dir.path().join("checkpoints.json"),
        );
        append(&live, &numbered(0..100));
        let cfg = TailConfig {
            start_at_beginning,
            ..TailConfig::new([&live])
        };
        let mut checkpoints = Checkpoints::load(&state).unwrap();
        let mut tailer = Tailer::new(cfg.clone(), &checkpoints).unwrap();
        let first = if start_at_beginning { 0 } else { 100 };
        let positions = tailer.start_positions().to_vec();
        assert_eq!(positions.len(), 1);
        assert_eq!(positions[0].offset, numbered(0..first).len() as u64);
        assert_eq!(checkpoints.register_start(&positions), 1);
        assert_eq!(checkpoints.register_start(&positions), 0, "known now");
        checkpoints.save(&state).unwrap();
        append(&live, &numbered(100..300));
        let read = read_lines(&mut tailer, 300 - first);
        assert_eq!(numbers(&read), (first..300).collect::<Vec<_>>());
        drop(tailer); // crash: nothing acknowledged

        append(&live, &numbered(300..400));
        fs::rename(&live, dir.path().join("maillog.1")).unwrap();
        append(&live, &numbered(400..500));
        let mut tailer = Tailer::new(cfg, &Checkpoints::load(&state).unwrap()).unwrap();
        assert_eq!(
            numbers(&read_lines(&mut tailer, 500 - first)),
            (first..500).collect::<Vec<_>>(),
            "start_at_beginning = {start_at_beginning}"
        );
    }
}

#[test]
fn restart_after_two_rotations_while_down_reads_the_file_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (live, state) = (
        dir.path().join("maillog"),
        dir.path().join("checkpoints.json"),
    );
    let cfg = read_ack_400_and_crash(&live, &state);
    fs::rename(&live, dir.path().join("maillog.1")).unwrap();
    append(&live, &numbered(1000..1100));
    fs::rename(dir.path().join("maillog.1"), dir.path().join("maillog.2")).unwrap();
    fs::rename(&live, dir.path().join("maillog.1")).unwrap();
    append(&live, &numbered(1100..1200));

    let mut tailer = Tailer::new(cfg, &Checkpoints::load(&state).unwrap()).unwrap();
    assert_eq!(
        numbers(&read_lines(&mut tailer, 800)),
        (400..1200).collect::<Vec<_>>()
    );
}

#[test]
fn restart_after_copytruncate_while_down_reads_the_rest_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (live, state) = (
        dir.path().join("maillog"),
        dir.path().join("checkpoints.json"),
    );
    let cfg = read_ack_400_and_crash(&live, &state);
    fs::copy(&live, dir.path().join("maillog.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&live, &numbered(1000..1100));

    let mut tailer = Tailer::new(cfg, &Checkpoints::load(&state).unwrap()).unwrap();
    assert_eq!(
        numbers(&read_lines(&mut tailer, 700)),
        (400..1100).collect::<Vec<_>>()
    );
}

#[test]
fn checkpoint_of_a_reused_inode_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (live, state) = (
        dir.path().join("maillog"),
        dir.path().join("checkpoints.json"),
    );
    append(&live, &numbered(0..100));
    let inode = fs::metadata(&live).unwrap().ino();
    let dev = fs::metadata(&live).unwrap().dev();
    // A checkpoint left by an earlier file that had the same device and inode.
    let mut checkpoints = Checkpoints::new();
    let stale = FileKey {
        dev,
        inode,
        fingerprint: 0x1234,
        fingerprint_len: 256,
    };
    checkpoints.ack(stale, 3000);
    checkpoints.save(&state).unwrap();

    let mut tailer = Tailer::new(
        TailConfig::new([&live]),
        &Checkpoints::load(&state).unwrap(),
    )
    .unwrap();
    assert_eq!(
        numbers(&read_lines(&mut tailer, 100)),
        (0..100).collect::<Vec<_>>()
    );
}

#[test]
fn small_file_key_grows_with_the_file_and_restarts_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (live, state) = (
        dir.path().join("maillog"),
        dir.path().join("checkpoints.json"),
    );
    let cfg = TailConfig::new([&live]);
    let mut checkpoints = Checkpoints::new();

    append(&live, &numbered(0..2)); // shorter than the 256 fingerprint bytes
    let mut tailer = Tailer::new(cfg.clone(), &checkpoints).unwrap();
    let first = read_lines(&mut tailer, 2);
    assert_eq!(numbers(&first), [0, 1]);
    let short_key = first[1].file;
    assert!((short_key.fingerprint_len as usize) < 256, "{short_key:?}");
    for line in &first {
        checkpoints.ack_line(line);
    }

    append(&live, &numbered(2..20));
    let second = read_lines(&mut tailer, 18);
    assert_eq!(numbers(&second), (2..20).collect::<Vec<_>>());
    let long_key = second.last().unwrap().file;
    assert_eq!(long_key.fingerprint_len, 256);
    assert!(long_key.same_inode(&short_key));
    checkpoints.ack_line(&second[9]); // up to line 11
    checkpoints.save(&state).unwrap();
    drop(tailer);

    // Both keys are in the state; the restart must use the longer one (line 12 on), and pruning
    // keeps only that one.
    let mut loaded = Checkpoints::load(&state).unwrap();
    assert_eq!(loaded.len(), 2);
    let mut tailer = Tailer::new(cfg, &loaded).unwrap();
    assert_eq!(
        numbers(&read_lines(&mut tailer, 8)),
        (12..20).collect::<Vec<_>>()
    );
    assert_eq!(loaded.forget_missing(&[live], Duration::from_secs(3600)), 1);
    assert_eq!(loaded.get(&long_key), Some(second[9].end_offset));
}

#[test]
fn unreadable_live_file_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    File::create(&live).unwrap();
    // A directory where a file is expected cannot be read as a log.
    let as_dir = dir.path().join("adir");
    fs::create_dir(&as_dir).unwrap();
    let result = Tailer::new(TailConfig::new([&as_dir]), &Checkpoints::new());
    assert!(
        result.is_err(),
        "a directory must not be accepted as a log file"
    );
    let empty = Tailer::new(TailConfig::new(Vec::<&Path>::new()), &Checkpoints::new());
    assert!(matches!(empty, Err(SourceError::InvalidConfig(_))));
}

/// `with_replay`: lines between the replay position and the checkpoint come out first, marked
/// as replayed, then the rest as new; a rotated file is replayed too, and a replay position
/// that no longer fits the file is ignored.
#[test]
fn replay_hands_out_the_lines_between_two_positions_marked() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    append(&live, &numbered(0..100));
    let cfg = TailConfig::new([&live]);
    // Read everything once to learn the file's key and line offsets.
    let mut first = Tailer::new(cfg.clone(), &Checkpoints::new()).unwrap();
    let lines = read_lines(&mut first, 100);
    let key = lines[0].file;
    let end_of = |n: usize| lines[n].end_offset;
    drop(first);

    let mut resume = Checkpoints::new();
    resume.ack(key, end_of(69)); // lines 0..=69 are durable
    let mut replay = Checkpoints::new();
    replay.ack(key, end_of(39)); // the tracker state knows lines 0..=39
    append(&live, &numbered(100..120));
    let mut tailer = Tailer::with_replay(cfg.clone(), &resume, &replay).unwrap();
    assert_eq!(tailer.start_positions()[0].offset, end_of(69));
    assert_eq!(tailer.start_positions()[0].read_from, end_of(39));
    let got = read_lines(&mut tailer, 80);
    assert_eq!(numbers(&got), (40..120).collect::<Vec<_>>());
    let replayed: Vec<usize> = got.iter().filter(|l| l.replay).map(number_of).collect();
    assert_eq!(replayed, (40..70).collect::<Vec<_>>());
    drop(tailer);

    // Rotated meanwhile: the renamed file is replayed and drained, then the new one is read.
    fs::rename(&live, dir.path().join("maillog.1")).unwrap();
    append(&live, &numbered(120..130));
    let mut tailer = Tailer::with_replay(cfg.clone(), &resume, &replay).unwrap();
    let got = read_lines(&mut tailer, 90);
    assert_eq!(numbers(&got), (40..130).collect::<Vec<_>>());
    assert_eq!(got.iter().filter(|l| l.replay).count(), 30);
    drop(tailer);

    // A replay position in the middle of a line (the file changed): no replay.
    let mut odd = Checkpoints::new();
    odd.ack(key, end_of(39) + 3);
    let mut tailer = Tailer::with_replay(cfg, &resume, &odd).unwrap();
    let got = read_lines(&mut tailer, 60);
    assert_eq!(numbers(&got), (70..130).collect::<Vec<_>>());
    assert!(got.iter().all(|l| !l.replay));
}
