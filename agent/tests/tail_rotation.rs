//! The tailer under concurrent writers that rotate their log in every common way: every line must
//! come out exactly once, whole, and in file order.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use mailpulse_agent::source::{Checkpoints, Line, TailConfig, Tailer};

/// How the writer rotates its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    /// `mv maillog maillog.1; create maillog` (logrotate's default).
    RenameCreate,
    /// `cp maillog maillog.1; truncate maillog` (logrotate `copytruncate`).
    CopyTruncate,
    /// `truncate maillog` in place, no copy; the writer waits until the reader caught up, because
    /// unread lines are destroyed by design.
    Truncate,
    /// `rm maillog; create maillog`.
    DeleteRecreate,
    /// `mv maillog maillog.1; create maillog`, but the writer keeps appending to the renamed file
    /// for a while before it reopens (rsyslog until its HUP).
    RenameLateWrites,
}

const TOTAL_LINES: usize = 20_000;
const ROTATIONS: usize = 5;

/// The exact text of line `n`: varied lengths, unique start.
fn line_text(n: usize) -> String {
    let pad = "abcdefghij".repeat((n * 7919) % 13);
    format!(
        "{n:08} Oct 26 18:13:50 mx postfix/smtp[{}]: line {n} {pad}",
        n % 977
    )
}

fn number_of(line: &Line) -> usize {
    let n: usize = line.text[..8]
        .parse()
        .unwrap_or_else(|_| panic!("line does not start with a number: {:?}", line.text));
    assert_eq!(line.text, line_text(n), "line {n} came out damaged");
    n
}

/// Tiny deterministic generator for burst sizes and sleeps.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn shift_old_generation(live: &Path) {
    let first = rotated(live, 1);
    if first.exists() {
        fs::rename(&first, rotated(live, 2)).unwrap();
    }
}

fn rotated(live: &Path, n: u32) -> PathBuf {
    live.with_file_name(format!(
        "{}.{n}",
        live.file_name().unwrap().to_string_lossy()
    ))
}

/// Appends all lines in bursts, rotating `ROTATIONS` times; `read_count` is the reader's progress.
fn write_log(live: PathBuf, style: Rotation, read_count: Arc<AtomicUsize>) {
    let mut rng = Lcg(style as u64 + 17);
    let mut file = open_append(&live);
    let rotate_at: Vec<usize> = (1..=ROTATIONS)
        .map(|i| i * TOTAL_LINES / (ROTATIONS + 1))
        .collect();
    let mut rotations_done = 0;
    let mut n = 0;
    while n < TOTAL_LINES {
        if rotate_at.get(rotations_done).is_some_and(|&at| n >= at) {
            rotations_done += 1;
            match style {
                Rotation::RenameCreate => {
                    shift_old_generation(&live);
                    fs::rename(&live, rotated(&live, 1)).unwrap();
                    file = open_append(&live);
                }
                Rotation::CopyTruncate => {
                    shift_old_generation(&live);
                    fs::copy(&live, rotated(&live, 1)).unwrap();
                    file.set_len(0).unwrap();
                }
                Rotation::Truncate => {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while read_count.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                        thread::sleep(Duration::from_millis(2));
                    }
                    let old_size = file.metadata().unwrap().len();
                    file.set_len(0).unwrap();
                    // Refill past the old size in one write, so the reader cannot notice the
                    // truncation by size alone and must see that the content changed.
                    let mut refill = String::new();
                    while (refill.len() as u64) <= old_size + 100 && n < TOTAL_LINES {
                        refill.push_str(&line_text(n));
                        refill.push('\n');
                        n += 1;
                    }
                    file.write_all(refill.as_bytes()).unwrap();
                    continue;
                }
                Rotation::DeleteRecreate => {
                    fs::remove_file(&live).unwrap();
                    file = open_append(&live);
                }
                Rotation::RenameLateWrites => {
                    shift_old_generation(&live);
                    fs::rename(&live, rotated(&live, 1)).unwrap();
                    // logrotate `create`: the new file exists at once, the writer only switches
                    // to it later; the tailer must keep reading the old one meanwhile.
                    let new_file = open_append(&live);
                    for _ in 0..50 {
                        writeln!(file, "{}", line_text(n)).unwrap();
                        n += 1;
                        thread::sleep(Duration::from_millis(4));
                    }
                    file = new_file;
                }
            }
        }
        let burst = 1 + rng.next(120) as usize;
        for _ in 0..burst.min(TOTAL_LINES - n) {
            let text = format!("{}\n", line_text(n));
            if n % 97 == 0 {
                // A line written in two halves: the reader may see the first half alone.
                let (a, b) = text.split_at(text.len() / 2);
                file.write_all(a.as_bytes()).unwrap();
                thread::sleep(Duration::from_micros(300));
                file.write_all(b.as_bytes()).unwrap();
            } else {
                file.write_all(text.as_bytes()).unwrap();
            }
            n += 1;
            if rotate_at.get(rotations_done).is_some_and(|&at| n >= at) {
                break;
            }
        }
        thread::sleep(Duration::from_micros(rng.next(2500)));
    }
    assert_eq!(
        rotations_done, ROTATIONS,
        "the writer did not rotate as often as planned"
    );
}

/// Runs a writer with `style` against a tailer and checks exactly-once, in-order delivery.
fn run_rotation_scenario(style: Rotation, mut cfg: TailConfig) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    File::create(&live).unwrap();
    cfg.paths = vec![live.clone()];
    let mut tailer = Tailer::new(cfg, &Checkpoints::new()).unwrap();

    let read_count = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (live, read_count) = (live.clone(), Arc::clone(&read_count));
        thread::spawn(move || write_log(live, style, read_count))
    };

    let mut seen = vec![false; TOTAL_LINES];
    let mut count = 0;
    let mut last_in_file: HashMap<(u64, u64), usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut check = |lines: Vec<Line>, count: &mut usize| {
        for line in lines {
            let n = number_of(&line);
            assert!(n < TOTAL_LINES, "{style:?}: unexpected line {n}");
            assert!(
                !seen[n],
                "{style:?}: line {n} delivered twice (from {:?})",
                line.path
            );
            seen[n] = true;
            *count += 1;
            let file = (line.file.dev, line.file.inode);
            if let Some(prev) = last_in_file.insert(file, n) {
                assert!(
                    prev < n,
                    "{style:?}: line {n} came after line {prev} of the same file"
                );
            }
        }
    };
    let mut last_progress = Instant::now();
    while count < TOTAL_LINES && Instant::now() < deadline {
        let batch = tailer.next_batch(500, Duration::from_millis(100)).unwrap();
        if !batch.is_empty() {
            last_progress = Instant::now();
        }
        check(batch, &mut count);
        read_count.store(count, Ordering::SeqCst);
        if writer.is_finished() && last_progress.elapsed() > Duration::from_secs(3) {
            break; // the writer is done and nothing more comes: lines are missing
        }
    }
    writer.join().unwrap();
    // Anything still coming now is a duplicate (or a line out of thin air): the checks above fail.
    let quiet_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet_until {
        let batch = tailer.next_batch(500, Duration::from_millis(100)).unwrap();
        check(batch, &mut count);
    }
    let missing: Vec<usize> = (0..TOTAL_LINES).filter(|&n| !seen[n]).take(20).collect();
    assert!(
        missing.is_empty(),
        "{style:?}: expected all {TOTAL_LINES} lines, got {count}; first missing: {missing:?}; stats {:?}",
        tailer.stats()
    );
    let stats = tailer.stats();
    match style {
        Rotation::RenameCreate | Rotation::DeleteRecreate | Rotation::RenameLateWrites => {
            assert_eq!(stats.rotations, ROTATIONS as u64, "{style:?}: {stats:?}")
        }
        Rotation::CopyTruncate | Rotation::Truncate => {
            assert_eq!(stats.truncations, ROTATIONS as u64, "{style:?}: {stats:?}")
        }
    }
    assert_eq!(stats.lines_read, TOTAL_LINES as u64, "{style:?}: {stats:?}");
}

fn test_config() -> TailConfig {
    TailConfig {
        rotate_wait: Duration::from_secs(2),
        ..TailConfig::default()
    }
}

#[test]
fn rename_and_create_loses_and_repeats_nothing() {
    run_rotation_scenario(Rotation::RenameCreate, test_config());
}

#[test]
fn copytruncate_reads_the_rest_from_the_copy() {
    run_rotation_scenario(Rotation::CopyTruncate, test_config());
}

#[test]
fn truncate_in_place_restarts_at_zero_even_when_refilled_past_the_old_size() {
    run_rotation_scenario(Rotation::Truncate, test_config());
}

#[test]
fn delete_and_recreate_drains_the_deleted_file() {
    run_rotation_scenario(Rotation::DeleteRecreate, test_config());
}

#[test]
fn late_writes_to_the_renamed_file_are_read() {
    run_rotation_scenario(Rotation::RenameLateWrites, test_config());
}

#[test]
fn polling_alone_follows_rename_rotation() {
    let cfg = TailConfig {
        watch_events: false,
        poll_interval: Duration::from_millis(20),
        ..test_config()
    };
    run_rotation_scenario(Rotation::RenameCreate, cfg);
}

/// Reads until `want` lines arrived or `max_wait` passed.
fn read_lines(tailer: &mut Tailer, want: usize, max_wait: Duration) -> Vec<Line> {
    let deadline = Instant::now() + max_wait;
    let mut lines = Vec::new();
    while lines.len() < want && Instant::now() < deadline {
        lines.extend(
            tailer
                .next_batch(want - lines.len(), Duration::from_millis(50))
                .unwrap(),
        );
    }
    lines
}

fn texts(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

#[test]
fn partial_line_is_returned_once_whole() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    let mut file = open_append(&live);
    let mut tailer = Tailer::new(TailConfig::new([&live]), &Checkpoints::new()).unwrap();

    file.write_all(b"Oct 26 18:13:50 mx postfix/qmgr[9]: first half")
        .unwrap();
    let early = tailer.next_batch(10, Duration::from_millis(400)).unwrap();
    assert!(
        early.is_empty(),
        "a line without newline was returned: {early:?}"
    );

    file.write_all(b" and second half\n").unwrap();
    let lines = read_lines(&mut tailer, 1, Duration::from_secs(5));
    assert_eq!(
        texts(&lines),
        ["Oct 26 18:13:50 mx postfix/qmgr[9]: first half and second half"]
    );
    assert_eq!(lines[0].end_offset, fs::metadata(&live).unwrap().len());
    let later = tailer.next_batch(10, Duration::from_millis(300)).unwrap();
    assert!(later.is_empty(), "the line came twice: {later:?}");
}

#[test]
fn long_lines_are_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    let long = "x".repeat(5000);
    fs::write(&live, format!("{long}\nshort\n")).unwrap();
    let cfg = TailConfig {
        max_line_bytes: 100,
        ..TailConfig::new([&live])
    };
    let mut tailer = Tailer::new(cfg, &Checkpoints::new()).unwrap();
    let lines = read_lines(&mut tailer, 2, Duration::from_secs(5));
    assert_eq!(texts(&lines), [&long[..100], "short"]);
    assert_eq!(lines[0].end_offset, 5001);
    assert_eq!(lines[1].end_offset, 5007);
    assert_eq!(tailer.stats().long_lines, 1);
}

#[test]
fn start_at_end_skips_old_lines_but_not_the_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    fs::write(&live, "old 1\nold 2\nunfini").unwrap();
    let cfg = TailConfig {
        start_at_beginning: false,
        ..TailConfig::new([&live])
    };
    let mut tailer = Tailer::new(cfg, &Checkpoints::new()).unwrap();
    open_append(&live).write_all(b"shed\nnew\n").unwrap();
    let lines = read_lines(&mut tailer, 2, Duration::from_secs(5));
    assert_eq!(texts(&lines), ["unfinished", "new"]);
}

#[test]
fn file_created_after_start_is_read_from_its_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    let cfg = TailConfig {
        start_at_beginning: false,
        ..TailConfig::new([&live])
    };
    let mut tailer = Tailer::new(cfg, &Checkpoints::new()).unwrap();
    assert!(
        tailer
            .next_batch(10, Duration::from_millis(100))
            .unwrap()
            .is_empty()
    );
    fs::write(&live, "a\nb\n").unwrap();
    let lines = read_lines(&mut tailer, 2, Duration::from_secs(5));
    assert_eq!(texts(&lines), ["a", "b"]);
}

fn write_gzip(path: &Path, text: &str) {
    let mut encoder = GzEncoder::new(File::create(path).unwrap(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap().sync_all().unwrap();
}

fn numbered(range: std::ops::Range<usize>) -> String {
    range.map(|n| format!("{}\n", line_text(n))).collect()
}

#[test]
fn gzip_backfill_reads_generations_oldest_first_once() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    write_gzip(&dir.path().join("maillog.3.gz"), &numbered(0..100));
    write_gzip(&dir.path().join("maillog.2.gz"), &numbered(100..200));
    fs::write(dir.path().join("maillog.1"), numbered(200..300)).unwrap();
    fs::write(&live, numbered(300..400)).unwrap();
    // Not ours: another log's rotation in the same directory.
    fs::write(dir.path().join("mail.err.1"), "unrelated\n").unwrap();

    let cfg = TailConfig {
        backfill_rotated: true,
        ..TailConfig::new([&live])
    };
    let mut checkpoints = Checkpoints::new();
    let mut tailer = Tailer::new(cfg.clone(), &checkpoints).unwrap();
    let lines = read_lines(&mut tailer, 400, Duration::from_secs(10));
    let numbers: Vec<usize> = lines.iter().map(number_of).collect();
    assert_eq!(numbers, (0..400).collect::<Vec<_>>());
    assert!(
        tailer
            .next_batch(10, Duration::from_millis(200))
            .unwrap()
            .is_empty()
    );

    // Acknowledge everything, then rotate while stopped: maillog.1 is compressed to maillog.2.gz
    // (new inode, same content) and maillog moves to maillog.1. Only the new lines may come.
    for line in &lines {
        checkpoints.ack_line(line);
    }
    drop(tailer);
    fs::remove_file(dir.path().join("maillog.3.gz")).unwrap();
    fs::rename(
        dir.path().join("maillog.2.gz"),
        dir.path().join("maillog.3.gz"),
    )
    .unwrap();
    write_gzip(&dir.path().join("maillog.2.gz"), &numbered(200..300));
    fs::remove_file(dir.path().join("maillog.1")).unwrap();
    fs::rename(&live, dir.path().join("maillog.1")).unwrap();
    fs::write(&live, numbered(400..450)).unwrap();

    let mut tailer = Tailer::new(cfg, &checkpoints).unwrap();
    assert_eq!(
        tailer.stats().files_opened,
        1,
        "fully read rotated files (plain and gzip) must not even be opened again"
    );
    let lines = read_lines(&mut tailer, 50, Duration::from_secs(10));
    let numbers: Vec<usize> = lines.iter().map(number_of).collect();
    assert_eq!(numbers, (400..450).collect::<Vec<_>>());
    let extra = tailer.next_batch(1000, Duration::from_millis(300)).unwrap();
    assert!(
        extra.is_empty(),
        "already read lines came again: {:?}",
        texts(&extra)
    );
}

#[test]
fn without_backfill_rotated_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    fs::write(dir.path().join("maillog.1"), numbered(0..10)).unwrap();
    fs::write(&live, numbered(10..20)).unwrap();
    let mut tailer = Tailer::new(TailConfig::new([&live]), &Checkpoints::new()).unwrap();
    let lines = read_lines(&mut tailer, 20, Duration::from_millis(500));
    let numbers: Vec<usize> = lines.iter().map(number_of).collect();
    assert_eq!(numbers, (10..20).collect::<Vec<_>>());
}

#[test]
fn copytruncate_with_unread_lines_takes_them_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    fs::write(&live, numbered(0..100)).unwrap();
    let mut tailer = Tailer::new(TailConfig::new([&live]), &Checkpoints::new()).unwrap();
    let first: Vec<usize> = read_lines(&mut tailer, 100, Duration::from_secs(5))
        .iter()
        .map(number_of)
        .collect();
    assert_eq!(first, (0..100).collect::<Vec<_>>());

    // The tailer does not look while lines 100..200 are written and the file is copied and
    // truncated: those lines exist only in the copy now.
    open_append(&live)
        .write_all(numbered(100..200).as_bytes())
        .unwrap();
    fs::copy(&live, dir.path().join("maillog.1")).unwrap();
    let file = open_append(&live);
    file.set_len(0).unwrap();
    (&file).write_all(numbered(200..250).as_bytes()).unwrap();

    let lines = read_lines(&mut tailer, 150, Duration::from_secs(5));
    let numbers: Vec<usize> = lines.iter().map(number_of).collect();
    assert_eq!(numbers, (100..250).collect::<Vec<_>>());
    assert_eq!(tailer.stats().truncations, 1);
}

#[test]
fn truncation_hidden_by_a_refill_past_the_old_size_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    fs::write(&live, numbered(0..100)).unwrap();
    let mut tailer = Tailer::new(TailConfig::new([&live]), &Checkpoints::new()).unwrap();
    assert_eq!(
        read_lines(&mut tailer, 100, Duration::from_secs(5)).len(),
        100
    );

    // Between two looks the file is truncated and refilled beyond its old size: only the content
    // tells, not the size.
    let old_size = fs::metadata(&live).unwrap().len();
    fs::write(&live, numbered(100..300)).unwrap();
    assert!(fs::metadata(&live).unwrap().len() > old_size);

    let lines = read_lines(&mut tailer, 200, Duration::from_secs(5));
    let numbers: Vec<usize> = lines.iter().map(number_of).collect();
    assert_eq!(numbers, (100..300).collect::<Vec<_>>());
    assert_eq!(tailer.stats().truncations, 1);
}

#[test]
fn two_rotations_between_looks_still_read_the_middle_file() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("maillog");
    fs::write(&live, numbered(0..10)).unwrap();
    let mut tailer = Tailer::new(TailConfig::new([&live]), &Checkpoints::new()).unwrap();
    assert_eq!(
        read_lines(&mut tailer, 10, Duration::from_secs(5)).len(),
        10
    );

    // While the tailer does not look: A gets more lines and is rotated, B is created, written and
    // rotated too, C is created.
    open_append(&live)
        .write_all(numbered(10..20).as_bytes())
        .unwrap();
    fs::rename(&live, rotated(&live, 1)).unwrap();
    fs::write(&live, numbered(20..30)).unwrap();
    fs::rename(rotated(&live, 1), rotated(&live, 2)).unwrap();
    fs::rename(&live, rotated(&live, 1)).unwrap();
    fs::write(&live, numbered(30..40)).unwrap();

    let lines = read_lines(&mut tailer, 30, Duration::from_secs(5));
    let numbers: Vec<usize> = lines.iter().map(number_of).collect();
    assert_eq!(numbers, (10..40).collect::<Vec<_>>());
    assert!(
        tailer
            .next_batch(100, Duration::from_millis(200))
            .unwrap()
            .is_empty()
    );
}
