//! `mailpulse events --follow --state-dir` survives `kill -9`: a writer appends a Postfix log (with
//! a rename rotation in the middle) while the process is killed with SIGKILL three times at random
//! moments and restarted with the same state directory. Every delivered message must be printed at
//! least once; a message may be printed twice only if it was printed after the last checkpoint of
//! a killed process (the checkpoint is saved after stdout is flushed).
//!
//! Needs the binary: `cargo build --bins` first (or set `MAILPULSE_BIN`).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpulse_agent::source::Checkpoints;

const MESSAGES: usize = 4000;
const ROTATE_AT: usize = MESSAGES / 2;
const KILLS: usize = 3;

fn queue_id(i: usize) -> String {
    format!("{:X}", 0x1A2B3C4D5u64 + i as u64)
}

/// The log lines of message `i`: smtpd, qmgr `from=`, exactly one `status=sent`, qmgr `removed`.
fn message_lines(i: usize) -> String {
    let qid = queue_id(i);
    let secs = 18 * 3600 + 13 * 60 + i;
    let t = format!(
        "Oct 26 {:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    );
    format!(
        "{t} mx postfix/smtpd[4242]: {qid}: client=client.example.org[198.51.100.7]\n\
         {t} mx postfix/qmgr[777]: {qid}: from=<sender{i}@example.org>, size={size}, nrcpt=1 (queue active)\n\
         {t} mx postfix/smtp[123]: {qid}: to=<u{i}@example.com>, relay=mx.example.com[192.0.2.1]:25, delay=1.2, delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok)\n\
         {t} mx postfix/qmgr[777]: {qid}: removed\n",
        size = 1000 + i
    )
}

/// Tiny deterministic generator; the seed is printed so a failure can be replayed.
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

/// Appends all messages in bursts (about 6 s in all) with a rename rotation half way.
fn write_log(live: PathBuf, seed: u64) {
    let mut rng = Lcg(seed ^ 0x5eed);
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    let mut file = open(&live);
    let mut i = 0;
    while i < MESSAGES {
        let burst = (1 + rng.next(40) as usize).min(MESSAGES - i);
        for _ in 0..burst {
            if i == ROTATE_AT {
                fs::rename(&live, live.with_file_name("maillog.1")).unwrap();
                file = open(&live);
            }
            let text = message_lines(i);
            if i % 53 == 0 {
                // Torn write: the tailer may see half a line.
                let (a, b) = text.split_at(text.len() / 3);
                file.write_all(a.as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(1));
                file.write_all(b.as_bytes()).unwrap();
            } else {
                file.write_all(text.as_bytes()).unwrap();
            }
            i += 1;
        }
        thread::sleep(Duration::from_millis(10 + rng.next(50)));
    }
}

/// One run of `mailpulse events --follow`; stdout lines are collected as they come.
struct Instance {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
    stderr_path: PathBuf,
}

/// `--checkpoint-interval-ms N` when `TAIL_KILL_CHECKPOINT_MS` is set (to replay the test with
/// checkpoints that lag behind the output); the default (save after every batch) otherwise.
fn checkpoint_interval_args() -> Vec<String> {
    match std::env::var("TAIL_KILL_CHECKPOINT_MS") {
        Ok(ms) => vec!["--checkpoint-interval-ms".into(), ms],
        Err(_) => Vec::new(),
    }
}

impl Instance {
    fn start(bin: &Path, state_dir: &Path, live: &Path, work: &Path, n: usize) -> Self {
        let stderr_path = work.join(format!("stderr-{n}.log"));
        let mut child = Command::new(bin)
            .args(["events", "--follow", "--state-dir"])
            .arg(state_dir)
            .args(["--format", "auto"])
            .args(checkpoint_interval_args())
            .arg(live)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().unwrap();
        let reader = {
            let stdout = Arc::clone(&stdout);
            thread::spawn(move || {
                // Raw bytes: a killed process may leave half a line (even half a character).
                let mut pipe = BufReader::new(pipe);
                let mut buf = Vec::new();
                while pipe.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                    stdout
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    buf.clear();
                }
            })
        };
        Self {
            child,
            stdout,
            reader,
            stderr_path,
        }
    }

    /// Fails the test if the process already exited on its own.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "mailpulse exited on its own ({status}); stderr:\n{}",
                fs::read_to_string(&self.stderr_path).unwrap_or_default()
            );
        }
    }

    /// SIGKILL, then everything it printed.
    fn kill(mut self) -> Vec<String> {
        self.assert_running();
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        Arc::try_unwrap(self.stdout).unwrap().into_inner().unwrap()
    }
}

/// Queue ids whose `status=sent` line lies before the checkpointed offset of its file, per the
/// state file in `state_dir` (whatever its name) and the files now in `log_dir`.
fn acked_deliveries(state_dir: &Path, log_dir: &Path) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    let Ok(entries) = fs::read_dir(state_dir) else {
        return acked; // killed before the first save
    };
    let logs: Vec<(PathBuf, (u64, u64))> = fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let meta = fs::metadata(&p).unwrap();
            (p, (meta.dev(), meta.ino()))
        })
        .collect();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let checkpoints = Checkpoints::load(&path)
            .unwrap_or_else(|e| panic!("state file unreadable after kill -9: {e}"));
        for checkpoint in checkpoints.iter() {
            let id = (checkpoint.key.dev, checkpoint.key.inode);
            let Some((log, _)) = logs.iter().find(|(_, i)| *i == id) else {
                continue;
            };
            let content = fs::read(log).unwrap();
            let covered = &content[..(checkpoint.offset as usize).min(content.len())];
            for line in String::from_utf8_lossy(covered).lines() {
                if line.contains("status=sent") {
                    let qid = line.split(": ").nth(1).unwrap_or_default();
                    acked.insert(qid.to_owned());
                }
            }
        }
    }
    acked
}

/// Queue ids of the `delivered` events in one instance's output, in order; torn last lines are
/// skipped and counted.
fn delivered_ids(output: &[String], torn: &mut usize) -> Vec<String> {
    let mut ids = Vec::new();
    for line in output {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line.trim_end()) else {
            assert!(line.ends_with('\n') || line == output.last().unwrap());
            *torn += 1;
            continue;
        };
        for field in ["kind", "queue_id", "at"] {
            assert!(
                event.get(field).is_some(),
                "event without {field:?}: {line}"
            );
        }
        if event["kind"] == "delivered" {
            ids.push(event["queue_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    ids
}

#[test]
fn kill_9_three_times_loses_no_delivery() {
    let bin = mailpulse_tests::mailpulse_bin();
    let work = tempfile::tempdir().unwrap();
    let log_dir = work.path().join("log");
    let state_dir = work.path().join("state");
    fs::create_dir_all(&log_dir).unwrap();
    let live = log_dir.join("maillog");
    File::create(&live).unwrap();

    let seed = std::env::var("TAIL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("tail_kill seed {seed} (set TAIL_KILL_SEED to replay)");
    let mut rng = Lcg(seed);

    let writer = {
        let live = live.clone();
        thread::spawn(move || write_log(live, seed))
    };

    // Three lives that end in SIGKILL at random moments while the writer is busy.
    let mut outputs: Vec<Vec<String>> = Vec::new();
    let mut acked_at_kill: Vec<BTreeSet<String>> = Vec::new();
    for n in 0..KILLS {
        let mut instance = Instance::start(&bin, &state_dir, &live, work.path(), n);
        thread::sleep(Duration::from_millis(400 + rng.next(1400)));
        instance.assert_running();
        outputs.push(instance.kill());
        acked_at_kill.push(acked_deliveries(&state_dir, &log_dir));
    }
    let writer_was_running = !writer.is_finished();
    writer.join().unwrap();

    // The last life runs until every delivery is out (or 60 s).
    let expected: BTreeSet<String> = (0..MESSAGES).map(queue_id).collect();
    let mut last = Instance::start(&bin, &state_dir, &live, work.path(), KILLS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_before: BTreeSet<String> = BTreeSet::new();
    let mut torn = 0;
    for output in &outputs {
        seen_before.extend(delivered_ids(output, &mut torn));
    }
    loop {
        let done = {
            let out = last.stdout.lock().unwrap();
            let complete: Vec<String> = out.iter().filter(|l| l.ends_with('\n')).cloned().collect();
            let mut scratch = 0;
            let now: BTreeSet<String> =
                delivered_ids(&complete, &mut scratch).into_iter().collect();
            expected
                .iter()
                .all(|id| seen_before.contains(id) || now.contains(id))
        };
        if done || Instant::now() >= deadline {
            break;
        }
        last.assert_running();
        thread::sleep(Duration::from_millis(200));
    }
    // Give a process that would wrongly repeat old lines a moment to do so.
    thread::sleep(Duration::from_millis(700));
    outputs.push(last.kill());

    let per_instance: Vec<Vec<String>> = outputs
        .iter()
        .map(|o| delivered_ids(o, &mut torn))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for ids in &per_instance {
        for id in ids {
            *counts.entry(id.as_str()).or_default() += 1;
        }
    }
    let lost: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    let unknown: Vec<&&str> = counts
        .keys()
        .filter(|id| !expected.contains(**id))
        .collect();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    let printed: Vec<usize> = per_instance.iter().map(Vec::len).collect();
    println!(
        "tail_kill: {MESSAGES} messages, {KILLS} kills (writer still running at the last kill: \
         {writer_was_running}), deliveries printed per life {printed:?}, lost {}, duplicates \
         {duplicates}, torn output lines {torn}",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {MESSAGES} deliveries were never printed (seed {seed}), first: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        unknown.is_empty(),
        "deliveries that were never logged: {unknown:?}"
    );
    assert!(
        counts.values().all(|&c| c <= KILLS + 1),
        "a delivery printed more often than there were lives"
    );

    // Duplicates come only from the unsaved tail of a killed life: in each killed life's output,
    // the deliveries printed again later form a suffix. A repeat from the middle would mean a
    // checkpoint covered lines whose output was not yet flushed, or a resume at a wrong offset.
    for (n, ids) in per_instance.iter().enumerate().take(KILLS) {
        let later: BTreeSet<&String> = per_instance[n + 1..].iter().flatten().collect();
        let first_repeat = ids.iter().position(|id| later.contains(id));
        if let Some(start) = first_repeat {
            let not_repeated: Vec<&String> = ids[start..]
                .iter()
                .filter(|id| !later.contains(id))
                .collect();
            assert!(
                not_repeated.is_empty(),
                "life {n}: repeats start at delivery {start} of {}, but {} later ones were not \
                 repeated (e.g. {:?}): repeats are not a suffix (seed {seed})",
                ids.len(),
                not_repeated.len(),
                &not_repeated[..not_repeated.len().min(5)]
            );
        }
        let repeated_here = first_repeat.map_or(0, |start| ids.len() - start);
        println!(
            "tail_kill: life {n} printed {} deliveries, {repeated_here} of them again after the kill",
            ids.len()
        );
    }
    // What a checkpoint covered at a kill must never be printed again.
    for (n, acked) in acked_at_kill.iter().enumerate() {
        for (m, ids) in per_instance.iter().enumerate().skip(n + 1) {
            let again: Vec<&String> = ids.iter().filter(|id| acked.contains(*id)).collect();
            assert!(
                again.is_empty(),
                "life {m} printed {} deliveries that the checkpoint saved before kill {n} already \
                 covered (e.g. {:?}; seed {seed})",
                again.len(),
                &again[..again.len().min(5)]
            );
        }
        println!(
            "tail_kill: checkpoint at kill {n} covered {} deliveries",
            acked.len()
        );
    }
    // Within one life nothing may repeat.
    for (n, ids) in per_instance.iter().enumerate() {
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "life {n} printed a delivery twice (seed {seed})"
        );
    }
}
