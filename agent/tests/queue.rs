//! Queue snapshots: golden `postqueue -j` fixtures (`tests/fixtures/queue/NNN.jsonl` + the
//! expected snapshot `NNN.json`; `UPDATE_GOLDEN=1` rewrites them for review), hand-counted values,
//! hostile input, a model check against a naive reference on generated queues, the directory scan
//! on hand-encoded queue files, and the watcher driving fake `postmulti`/`postconf`/`postqueue`
//! shell scripts (discovery, fallback, timeout kill, samples, zero-once for vanished domains).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Permissions};
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpulse_agent::classify::{ReasonClass, classify};
use mailpulse_agent::queue::{
    AGE_BOUNDS_SECS, AGE_LE_LABELS, InstanceConfig, MAX_LINE_BYTES, QueueConfig, QueueError,
    QueueName, QueueSnapshot, QueueStats, QueueWatcher, REC_TYPE_SIZE, REC_TYPE_TIME,
    SnapshotConfig, SnapshotSource, queue_file_arrival_time, scan_queue_directory,
    summarise_postqueue,
};
use mailpulse_proto::v1::{Sample, sample};
use mailpulse_sim::postqueue::{SynthQueueConfig, write_synth_postqueue};
use proptest::prelude::*;
use serde_json::Value;

/// The time the fixtures are summarised at.
const NOW: i64 = 1_700_100_000;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/queue")
}

fn summarise_bytes(input: &[u8], max_domains: usize) -> QueueSnapshot {
    summarise_postqueue(input, NOW, &SnapshotConfig { max_domains })
}

fn summarise_fixture(name: &str) -> QueueSnapshot {
    let path = fixtures_dir().join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    summarise_postqueue(BufReader::new(file), NOW, &SnapshotConfig::default())
}

// ---------------------------------------------------------------------------------------------
// postqueue -j

#[test]
fn golden_fixtures_summarise_into_the_expected_snapshots() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("fixtures/queue exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 2,
        "expected the queue fixtures, found {inputs:?}"
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let snapshot = summarise_fixture(&name);
        let json_path = input.with_extension("json");
        if update {
            let mut text = serde_json::to_string_pretty(&snapshot).unwrap();
            text.push('\n');
            fs::write(&json_path, text).unwrap();
            continue;
        }
        let actual = serde_json::to_value(&snapshot).unwrap();
        match fs::read_to_string(&json_path) {
            Ok(text) => {
                let expected: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", json_path.display()));
                if expected != actual {
                    failures.push(format!(
                        "{}: snapshot differs\n  expected: {expected}\n  actual:   {actual}",
                        input.display()
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "{}: expected file missing ({e}); run with UPDATE_GOLDEN=1 and review it",
                json_path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn realistic_fixture_has_the_hand_counted_values() {
    let snap = summarise_fixture("001.jsonl");
    assert_eq!(snap.source, SnapshotSource::Postqueue);
    assert_eq!(snap.taken_at_unix_secs, NOW);
    assert_eq!(
        snap.malformed_lines, 0,
        "the trailing blank line is not malformed"
    );
    let expect = |q: QueueName, messages, recipients, bytes, oldest, buckets: [u64; 8]| {
        let s = snap.queue(q);
        assert_eq!(
            (
                s.messages,
                s.recipients,
                s.bytes,
                s.oldest_age_secs,
                s.age_buckets
            ),
            (messages, recipients, bytes, oldest, buckets),
            "queue {q}: (messages, recipients, bytes, oldest age, age buckets)"
        );
    };
    expect(QueueName::Maildrop, 1, 1, 512, 5, [1, 0, 0, 0, 0, 0, 0, 0]);
    expect(QueueName::Incoming, 1, 2, 2048, 2, [1, 0, 0, 0, 0, 0, 0, 0]);
    expect(
        QueueName::Active,
        2,
        2,
        14_096,
        400,
        [1, 0, 1, 0, 0, 0, 0, 0],
    );
    // Ages 1000, 5000, 90000, 500000, 200 and 0 (an arrival 60 s in the future is clamped).
    expect(
        QueueName::Deferred,
        6,
        13,
        20_909,
        500_000,
        [1, 1, 0, 1, 1, 0, 1, 1],
    );
    // 3600 s is in the 3600 bucket: bounds are inclusive.
    expect(
        QueueName::Hold,
        2,
        2,
        7_100,
        20_000,
        [0, 0, 0, 1, 0, 1, 0, 0],
    );
    expect(QueueName::Corrupt, 0, 0, 0, 0, [0; 8]);
    assert_eq!(
        snap.queue(QueueName::Deferred).cumulative_age_buckets(),
        [1, 2, 2, 3, 4, 4, 5, 6]
    );

    let domains: BTreeMap<&str, (u64, u64, u64)> = snap
        .deferred_domains
        .iter()
        .map(|(d, s)| (d.as_str(), (s.messages, s.recipients, s.oldest_age_secs)))
        .collect();
    let expected: BTreeMap<&str, (u64, u64, u64)> = [
        // Two recipients of one message (one of them `MX-Down.Example.`) and one of another.
        ("mx-down.example", (2, 3, 90_000)),
        ("nx.example", (2, 2, 500_000)),
        ("greylist.example", (1, 1, 5_000)),
        ("mailbox.example", (1, 1, 90_000)),
        ("secure.example", (1, 1, 500_000)),
        ("bigmail.example", (1, 1, 500_000)),
        ("odd.example", (1, 1, 500_000)),
        ("slow.example", (1, 1, 200)),
        ("far.test", (1, 1, 0)),
        ("ok.test", (1, 1, 0)),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        domains, expected,
        "deferred domains: (messages, recipients, oldest age)"
    );
    assert!(snap.deferred_other_domains.is_empty());

    let reasons: BTreeMap<&str, u64> = snap
        .deferred_reasons
        .iter()
        .map(|(c, n)| (c.as_str(), n))
        .collect();
    let expected: BTreeMap<&str, u64> = [
        ("dns", 1),
        ("connect", 6),
        ("tls", 1),
        ("greylisting", 1),
        ("rate-limit", 1),
        ("mailbox", 1),
        ("policy-block", 0),
        ("user-unknown", 0),
        ("other", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(reasons, expected, "deferred recipients per reason class");
    assert_eq!(
        snap.deferred_recipients_without_reason, 1,
        "gina@nx.example"
    );
    let mx_down = snap.deferred_domains["mx-down.example"].reason_recipients;
    assert_eq!(mx_down.get(ReasonClass::Connect), 3);
    assert_eq!(mx_down.total(), 3);
}

#[test]
fn hostile_lines_are_counted_and_skipped() {
    let snap = summarise_fixture("002.jsonl");
    // Lines 2–18: garbage, truncation, huge numbers, a negative time, wrong types, an unknown
    // queue, non-objects, trailing garbage, a duplicate field, a float time, a recipient without
    // address, a negative size. Line 21 is blank.
    assert_eq!(snap.malformed_lines, 17);
    assert_eq!(snap.overlong_lines, 0);
    let deferred = snap.queue(QueueName::Deferred);
    assert_eq!(
        (deferred.messages, deferred.recipients, deferred.bytes),
        (3, 2, 112)
    );
    let hold = snap.queue(QueueName::Hold);
    assert_eq!(hold.bytes, u64::MAX, "the largest size still adds up");
    assert_eq!(hold.oldest_age_secs, NOW as u64, "arrival time 0");
    assert_eq!(snap.queue(QueueName::Active).messages, 0);
    assert!(
        snap.deferred_domains.contains_key("ctl.example"),
        "{snap:?}"
    );
}

#[test]
fn over_long_lines_are_skipped_without_being_buffered() {
    let valid = br#"{"queue_name": "active", "queue_id": "A", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{"address": "a@x.example"}]}"#;
    let mut input = Vec::new();
    input.extend_from_slice(valid);
    input.push(b'\n');
    // A 2 MiB line that starts like an entry.
    input.extend_from_slice(br#"{"queue_name": "deferred", "recipients": [{"address": ""#);
    input.resize(input.len() + 2 * 1024 * 1024, b'a');
    input.extend_from_slice(b"\"}]}\n");
    input.extend_from_slice(valid);
    input.push(b'\n');
    // A line of exactly the limit is read; one byte more is not.
    let mut exact = valid.to_vec();
    exact.resize(MAX_LINE_BYTES, b' ');
    input.extend_from_slice(&exact);
    input.push(b'\n');
    exact.push(b' ');
    input.extend_from_slice(&exact);
    input.push(b'\n');
    // And an over-long last line without newline.
    input.resize(input.len() + MAX_LINE_BYTES + 10, b'{');
    let snap = summarise_bytes(&input, 10);
    assert_eq!(snap.queue(QueueName::Active).messages, 3);
    assert_eq!(snap.overlong_lines, 3);
    assert_eq!(snap.malformed_lines, 3);
}

#[test]
fn invalid_utf8_and_crlf() {
    let mut input = br#"{"queue_name": "active", "queue_id": "A", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{"address": "a@x.example"}]}"#.to_vec();
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(br#"{"queue_name": "active", "queue_id": "B", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{"address": "a@"#);
    input.extend_from_slice(b"\xff\xfe.example\"}]}\n\x00\x01\x02\n");
    let snap = summarise_bytes(&input, 10);
    assert_eq!(snap.queue(QueueName::Active).messages, 1, "CRLF is fine");
    assert_eq!(snap.malformed_lines, 2, "invalid UTF-8 and binary garbage");
}

/// What a naive reference implementation counts: every line parsed into a `serde_json::Value`,
/// no bounds.
#[derive(Debug, Default)]
struct Reference {
    queues: BTreeMap<QueueName, QueueStats>,
    /// (messages, recipients, oldest age) per deferred domain.
    domains: BTreeMap<String, (u64, u64, u64)>,
    reasons: BTreeMap<ReasonClass, u64>,
    without_reason: u64,
}

fn reference_summary(text: &str) -> Reference {
    let mut r = Reference {
        queues: QueueName::ALL
            .iter()
            .map(|&q| (q, QueueStats::default()))
            .collect(),
        reasons: ReasonClass::ALL.iter().map(|&c| (c, 0)).collect(),
        ..Reference::default()
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let queue: QueueName = serde_json::from_value(v["queue_name"].clone()).unwrap();
        let age = (NOW - v["arrival_time"].as_i64().unwrap()).max(0) as u64;
        let rcpts = v["recipients"].as_array().unwrap();
        let q = r.queues.get_mut(&queue).unwrap();
        q.messages += 1;
        q.recipients += rcpts.len() as u64;
        q.bytes += v["message_size"].as_u64().unwrap();
        q.oldest_age_secs = q.oldest_age_secs.max(age);
        q.age_buckets[AGE_BOUNDS_SECS.iter().take_while(|&&b| b < age).count()] += 1;
        if queue != QueueName::Deferred {
            continue;
        }
        let mut seen = BTreeSet::new();
        for rcpt in rcpts {
            let address = rcpt["address"].as_str().unwrap();
            let (_, domain) = address.rsplit_once('@').unwrap();
            let domain = domain.trim_end_matches('.').to_lowercase();
            let d = r.domains.entry(domain.clone()).or_default();
            d.1 += 1;
            if seen.insert(domain) {
                d.0 += 1;
                d.2 = d.2.max(age);
            }
            match rcpt["delay_reason"].as_str() {
                Some(text) => *r.reasons.entry(classify(None, text)).or_default() += 1,
                None => r.without_reason += 1,
            }
        }
    }
    r
}

#[test]
fn generated_queues_match_a_naive_reference() {
    for seed in [1, 2, 3] {
        let mut bytes = Vec::new();
        write_synth_postqueue(
            &SynthQueueConfig {
                seed,
                entries: 3_000,
                now_unix_secs: NOW,
                ..SynthQueueConfig::default()
            },
            &mut bytes,
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let reference = reference_summary(&text);
        let snap = summarise_bytes(text.as_bytes(), usize::MAX);
        assert_eq!(snap.malformed_lines, 0, "seed {seed}");
        assert_eq!(snap.queues, reference.queues, "seed {seed}: queues");
        let domains: BTreeMap<String, (u64, u64, u64)> = snap
            .deferred_domains
            .iter()
            .map(|(d, s)| (d.clone(), (s.messages, s.recipients, s.oldest_age_secs)))
            .collect();
        assert_eq!(domains, reference.domains, "seed {seed}: domains");
        let reasons: BTreeMap<ReasonClass, u64> = snap.deferred_reasons.iter().collect();
        assert_eq!(reasons, reference.reasons, "seed {seed}: reasons");
        assert_eq!(
            snap.deferred_recipients_without_reason,
            reference.without_reason
        );
        // Every deferred recipient is counted once: by reason class or as without reason, and
        // per domain.
        let deferred = snap.queue(QueueName::Deferred).recipients;
        assert_eq!(
            snap.deferred_reasons.total() + snap.deferred_recipients_without_reason,
            deferred
        );
        let per_domain: u64 = snap.deferred_domains.values().map(|d| d.recipients).sum();
        assert_eq!(per_domain, deferred);
        assert!(
            snap.deferred_domains.len() > 500,
            "long tail of domains: {}",
            snap.deferred_domains.len()
        );

        // With a small domain table the first domains seen keep their counts, the rest add up
        // in `other`.
        let small = summarise_bytes(text.as_bytes(), 20);
        assert_eq!(small.deferred_domains.len(), 20);
        for (domain, stats) in &small.deferred_domains {
            assert_eq!(
                stats, &snap.deferred_domains[domain],
                "seed {seed}: {domain} is tracked in full"
            );
        }
        let named: u64 = small.deferred_domains.values().map(|d| d.recipients).sum();
        assert_eq!(named + small.deferred_other_domains.recipients, deferred);
        assert_eq!(small.queues, snap.queues);
        assert_eq!(small.deferred_reasons, snap.deferred_reasons);
    }
}

/// A line that is (or is close to) a queue entry: every field drawn from valid and invalid values.
fn entry_line() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let queue = prop_oneof![
        Just(("deferred", true)),
        Just(("active", true)),
        Just(("hold", true)),
        Just(("maildrop", true)),
        Just(("Deferred", false)),
        Just(("", false)),
    ];
    let arrival = prop_oneof![
        any::<i64>().prop_map(|t| (t.to_string(), t >= 0)),
        Just(("1e99".to_owned(), false)),
        Just(("\"17\"".to_owned(), false)),
    ];
    let size = prop_oneof![
        any::<u64>().prop_map(|s| (s.to_string(), true)),
        any::<i64>().prop_map(|s| (s.to_string(), s >= 0)),
        Just(("184467440737095516150".to_owned(), false)),
    ];
    let recipient = (any::<String>(), proptest::option::of(any::<String>())).prop_map(|(a, r)| {
        let mut s = format!("{{\"address\": {}", serde_json::to_string(&a).unwrap());
        if let Some(r) = r {
            s.push_str(&format!(
                ", \"delay_reason\": {}",
                serde_json::to_string(&r).unwrap()
            ));
        }
        s.push('}');
        s
    });
    (queue, arrival, size, prop::collection::vec(recipient, 0..4)).prop_map(
        |((q, q_ok), (t, t_ok), (s, s_ok), rcpts)| {
            let line = format!(
                "{{\"queue_name\": \"{q}\", \"queue_id\": \"X\", \"arrival_time\": {t}, \"message_size\": {s}, \"recipients\": [{}]}}",
                rcpts.join(", ")
            );
            (line.into_bytes(), q_ok && t_ok && s_ok)
        },
    )
}

fn any_line() -> impl Strategy<Value = (Vec<u8>, Option<bool>)> {
    prop_oneof![
        entry_line().prop_map(|(l, ok)| (l, Some(ok))),
        // Arbitrary bytes: whether they are an entry is not known in advance.
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|l| (l, None)),
        // A valid entry cut short.
        (entry_line(), any::<prop::sample::Index>()).prop_map(|((l, _), cut)| {
            let n = cut.index(l.len().max(1));
            (l[..n].to_vec(), Some(false))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the lines, nothing panics and every non-blank line is either a message or
    /// counted as malformed; generated entries are counted exactly when they are valid.
    #[test]
    fn every_line_is_a_message_or_malformed(lines in prop::collection::vec(any_line(), 0..24)) {
        let mut input = Vec::new();
        let mut non_blank = 0u64;
        let mut valid = 0u64;
        let mut known = true;
        for (line, ok) in &lines {
            let line: Vec<u8> = line.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
            if !line.iter().all(u8::is_ascii_whitespace) {
                non_blank += 1;
            }
            match ok {
                Some(true) => valid += 1,
                Some(false) => {}
                None => known = false,
            }
            input.extend_from_slice(&line);
            input.push(b'\n');
        }
        let snap = summarise_bytes(&input, 3);
        prop_assert_eq!(snap.total_messages() + snap.malformed_lines, non_blank);
        if known {
            prop_assert_eq!(snap.total_messages(), valid);
        }
        prop_assert!(snap.deferred_domains.len() <= 3);
    }
}

// ---------------------------------------------------------------------------------------------
// Directory scan

/// Encodes a queue file record: type, length in 7-bit groups (low first), data.
fn record(rec_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![rec_type];
    let mut len = data.len();
    loop {
        let more = len >> 7;
        out.push((len & 0x7f) as u8 | if more != 0 { 0x80 } else { 0 });
        len = more;
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(data);
    out
}

/// A queue file as `cleanup` writes it: `C` (fixed-width sizes), `T` (arrival), then envelope,
/// content and end records. `padding` bytes of content make the file size differ between files.
fn queue_file(arrival: i64, padding: usize) -> Vec<u8> {
    let mut out = record(
        REC_TYPE_SIZE,
        format!(
            "{:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
            padding, 200, 1, 0, padding, 0
        )
        .as_bytes(),
    );
    out.extend(record(
        REC_TYPE_TIME,
        format!("{arrival} 609010").as_bytes(),
    ));
    out.extend(record(b'A', b"create_time=1795622271"));
    out.extend(record(b'S', b"sender@example.org"));
    out.extend(record(b'R', b"rcpt@example.net"));
    out.extend(record(b'M', b""));
    out.extend(record(b'N', &vec![b'x'; padding]));
    out.extend(record(b'X', b""));
    out.extend(record(b'E', b""));
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> u64 {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    bytes.len() as u64
}

/// The bytes a scan counts for a queue file: the message size of its `C` record (what
/// `postqueue -j` reports), not the file size; `written` is the file size, for files without one.
fn sized(written: u64, message_size: u64) -> u64 {
    assert!(
        written > message_size,
        "a queue file is larger than its message"
    );
    message_size
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A queue directory with files in every scanned queue; returns the expected bytes per queue.
fn make_queue_tree(root: &Path, now: i64) -> BTreeMap<QueueName, u64> {
    let mut bytes = BTreeMap::new();
    let mut add = |q: QueueName, n: u64| *bytes.entry(q).or_insert(0) += n;
    add(
        QueueName::Incoming,
        sized(
            write_file(
                &root.join("incoming/4VbKqL0wYmz9tCR"),
                &queue_file(now - 10, 100),
            ),
            100,
        ),
    );
    add(
        QueueName::Active,
        sized(
            write_file(
                &root.join("active/3F1A02A4B5"),
                &queue_file(now - 400, 3000),
            ),
            3000,
        ),
    );
    // Hashed (hash_queue_depth 1 and 2); the mtime is the next retry time, in the future.
    let deferred = root.join("deferred/7/796079CC064");
    add(
        QueueName::Deferred,
        sized(write_file(&deferred, &queue_file(now - 1000, 50)), 50),
    );
    File::options()
        .write(true)
        .open(&deferred)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    add(
        QueueName::Deferred,
        sized(
            write_file(
                &root.join("deferred/A/B/AB12CD34EF"),
                &queue_file(now - 90_000, 700),
            ),
            700,
        ),
    );
    // Old Postfix: seconds only.
    let mut old_style = record(REC_TYPE_SIZE, b"12 34 1");
    old_style.extend(record(
        REC_TYPE_TIME,
        (now - 500_000).to_string().as_bytes(),
    ));
    add(
        QueueName::Deferred,
        sized(write_file(&root.join("deferred/C/C0FFEE"), &old_style), 12),
    );
    // Not a queue file: aged by its ctime (just now).
    add(
        QueueName::Hold,
        write_file(&root.join("hold/GARBAGE1"), b"\x00\x01garbage"),
    );
    fs::create_dir_all(root.join("corrupt")).unwrap();
    // Not scanned: maildrop (postdrop's format) and symbolic links.
    sized(
        write_file(&root.join("maildrop/MD1"), &queue_file(now - 5, 10)),
        10,
    );
    std::os::unix::fs::symlink(root.join("active/3F1A02A4B5"), root.join("deferred/7/LINK"))
        .unwrap();
    bytes
}

#[test]
fn directory_scan_counts_hand_encoded_queue_files() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let bytes = make_queue_tree(dir.path(), now);
    let snap = scan_queue_directory(dir.path(), now).unwrap();
    assert_eq!(snap.source, SnapshotSource::Directory);
    let q = |name| snap.queue(name);
    assert_eq!(
        q(QueueName::Maildrop).messages,
        0,
        "maildrop is not scanned"
    );
    assert_eq!(q(QueueName::Incoming).messages, 1);
    assert_eq!(q(QueueName::Incoming).oldest_age_secs, 10);
    assert_eq!(q(QueueName::Active).oldest_age_secs, 400);
    let deferred = q(QueueName::Deferred);
    assert_eq!(deferred.messages, 3, "the symlink is not counted");
    assert_eq!(
        deferred.oldest_age_secs, 500_000,
        "ages from T records, not mtimes"
    );
    assert_eq!(deferred.age_buckets, [0, 0, 0, 1, 0, 0, 1, 1]);
    assert!(
        q(QueueName::Hold).oldest_age_secs <= 5,
        "no T record: aged by ctime"
    );
    assert_eq!(q(QueueName::Corrupt).messages, 0);
    for (queue, expected) in bytes {
        assert_eq!(
            q(queue).bytes,
            expected,
            "bytes of {queue}: C-record message sizes (file size without one)"
        );
    }
    for queue in QueueName::ALL {
        assert_eq!(q(queue).recipients, 0, "a scan does not read recipients");
    }
    assert!(snap.deferred_domains.is_empty());
    assert_eq!(snap.deferred_reasons.total(), 0);
}

#[test]
fn directory_scan_of_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    // No queue subdirectories at all: every queue is empty.
    let snap = scan_queue_directory(dir.path(), NOW).unwrap();
    assert_eq!(snap.total_messages(), 0);
    // No queue directory: an error naming it.
    let missing = dir.path().join("nope");
    match scan_queue_directory(&missing, NOW) {
        Err(QueueError::Scan { path, .. }) => assert_eq!(path, missing),
        other => panic!(
            "expected a scan error for {}, got {other:?}",
            missing.display()
        ),
    }
    // A file where the directory should be.
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        scan_queue_directory(&file, NOW),
        Err(QueueError::Scan { .. })
    ));
}

#[test]
fn queue_file_heads_of_any_shape_do_not_panic() {
    // Every truncation of a real-shaped queue file.
    let file = queue_file(1_700_000_000, 10);
    for n in 0..file.len() {
        let t = queue_file_arrival_time(&file[..n]);
        assert!(t.is_none() || t == Some(1_700_000_000), "prefix {n}: {t:?}");
    }
    assert_eq!(queue_file_arrival_time(&file), Some(1_700_000_000));
}

// ---------------------------------------------------------------------------------------------
// Watcher with fake Postfix commands

/// Watcher tests fork; writing a script while another thread forks can leave the script open in
/// the child (ETXTBSY on exec), so they run one at a time.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

fn spawn_lock() -> MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A temp dir with fake `postmulti`, `postconf` and `postqueue` scripts that log their argv.
struct FakePostfix {
    dir: tempfile::TempDir,
}

impl FakePostfix {
    /// A fake Postfix whose `postconf` names the default instance `postfix` with a queue
    /// directory holding [`make_queue_tree`]'s files; returns it, the directory and the time.
    fn with_queue_tree() -> (Self, PathBuf, i64) {
        let fake = Self::new();
        let queue_dir = fake.path("queue");
        let now = unix_now();
        make_queue_tree(&queue_dir, now);
        fake.script(
            "postconf",
            &format!("printf 'postfix\\n{}\\n'", queue_dir.display()),
        );
        (fake, queue_dir, now)
    }

    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` as a shell script running `body` after logging `name args…`.
    fn script(&self, name: &str, body: &str) {
        let path = self.path(name);
        let text = format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
            self.path("calls.log").display()
        );
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn config(&self) -> QueueConfig {
        QueueConfig {
            postqueue: self.path("postqueue"),
            postmulti: self.path("postmulti"),
            postconf: self.path("postconf"),
            command_timeout_secs: 10,
            ..QueueConfig::default()
        }
    }
}

/// The samples of `instance` for `metric` whose own labels (after host and instance) are
/// `labels`.
fn find<'a>(
    samples: &'a [Sample],
    instance: &str,
    metric: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.metric == metric
                && s.labels.len() == 2 + labels.len()
                && s.labels[1].value == instance
                && s.labels[2..]
                    .iter()
                    .zip(labels)
                    .all(|(l, (n, v))| l.name == *n && l.value == *v)
        })
        .collect()
}

/// The value of the one gauge `metric{labels}` of `instance`.
fn gauge(samples: &[Sample], instance: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, instance, metric, labels);
    assert_eq!(
        found.len(),
        1,
        "expected one {metric}{labels:?} sample of {instance}, found {found:?}"
    );
    match found[0].value {
        Some(sample::Value::Gauge(v)) => v,
        ref other => panic!("{metric}{labels:?} is not a gauge: {other:?}"),
    }
}

#[test]
fn watcher_discovers_instances_with_postmulti_and_postconf() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let fixture = fixtures_dir().join("001.jsonl");
    let out_fixture = fixtures_dir().join("002.jsonl");
    fake.script(
        "postmulti",
        "echo '-               -               y         /etc/postfix'\n\
         echo 'postfix-out     mta             y         /etc/postfix-out'\n\
         echo 'postfix-off     -               n         /etc/postfix-off'",
    );
    fake.script(
        "postconf",
        "case \"$2\" in\n\
         /etc/postfix-out) printf 'postfix-out\\n/var/spool/postfix-out\\n' ;;\n\
         *) printf 'postfix\\n/var/spool/postfix\\n' ;;\n\
         esac",
    );
    fake.script(
        "postqueue",
        &format!(
            "case \"$2\" in\n/etc/postfix-out) cat '{}' ;;\n*) cat '{}' ;;\nesac",
            out_fixture.display(),
            fixture.display()
        ),
    );
    let mut watcher = QueueWatcher::new(fake.config());
    let samples = watcher.poll(NOW * 1000 + 500, "mx1", 60);

    let names: Vec<&str> = watcher.instances().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["postfix", "postfix-out"],
        "enabled instances by syslog_name"
    );
    assert!(
        watcher.discovery_errors().is_empty(),
        "{:?}",
        watcher.discovery_errors()
    );
    let calls = fake.calls();
    assert_eq!(
        calls,
        [
            "postmulti -l",
            "postconf -c /etc/postfix -xh syslog_name queue_directory",
            "postconf -c /etc/postfix-out -xh syslog_name queue_directory",
            "postqueue -c /etc/postfix -j",
            "postqueue -c /etc/postfix-out -j",
        ],
        "argv of every command"
    );
    let main = watcher.instance("postfix").unwrap();
    assert!(main.errors.is_empty(), "{:?}", main.errors);
    assert_eq!(
        main.queue_directory.as_deref(),
        Some(Path::new("/var/spool/postfix"))
    );
    assert_eq!(
        watcher.last_snapshot("postfix"),
        Some(&summarise_fixture("001.jsonl"))
    );
    assert_eq!(
        watcher.last_snapshot("postfix-out"),
        Some(&summarise_fixture("002.jsonl"))
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix-out",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        6.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix-out",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        3.0
    );
    let malformed = find(
        &samples,
        "postfix-out",
        "queue_snapshot_malformed_lines",
        &[],
    );
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].value, Some(sample::Value::CounterDelta(17.0)));
}

#[test]
fn watcher_uses_the_default_instance_when_postmulti_is_missing() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    fake.script("postconf", "printf 'postfix\\n/var/spool/postfix\\n'");
    fake.script(
        "postqueue",
        &format!("cat '{}'", fixtures_dir().join("001.jsonl").display()),
    );
    let mut watcher = QueueWatcher::new(fake.config());
    watcher.poll(NOW * 1000, "mx1", 60);
    assert!(
        matches!(watcher.discovery_errors(), [QueueError::Spawn { .. }]),
        "{:?}",
        watcher.discovery_errors()
    );
    assert_eq!(
        fake.calls(),
        ["postconf -xh syslog_name queue_directory", "postqueue -j"],
        "no -c for the default instance"
    );
    assert!(watcher.last_snapshot("postfix").is_some());
}

#[test]
fn configured_instances_replace_discovery() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    fake.script(
        "postqueue",
        &format!("cat '{}'", fixtures_dir().join("001.jsonl").display()),
    );
    let mut cfg = fake.config();
    cfg.instances = vec![InstanceConfig {
        name: "postfix-in".into(),
        config_directory: "/etc/postfix-in".into(),
        queue_directory: Some("/var/spool/postfix-in".into()),
    }];
    let mut watcher = QueueWatcher::new(cfg);
    let samples = watcher.poll(NOW * 1000, "mx1", 60);
    assert_eq!(fake.calls(), ["postqueue -c /etc/postfix-in -j"]);
    assert_eq!(
        gauge(
            &samples,
            "postfix-in",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        1.0
    );
}

#[test]
fn watcher_falls_back_to_the_directory_scan_when_postqueue_fails() {
    let _lock = spawn_lock();
    let (fake, queue_dir, now) = FakePostfix::with_queue_tree();
    // Output, then failure: the output must not be used.
    fake.script(
        "postqueue",
        &format!(
            "cat '{}'\necho 'postqueue: fatal: Queue report unavailable - mail system is down' >&2\nexit 69",
            fixtures_dir().join("001.jsonl").display()
        ),
    );
    let mut watcher = QueueWatcher::new(fake.config());
    let samples = watcher.poll(now * 1000, "mx1", 60);
    let status = watcher.instance("postfix").unwrap();
    match status.errors.as_slice() {
        [QueueError::Exit { stderr, status, .. }] => {
            assert!(stderr.contains("mail system is down"), "{stderr}");
            assert!(status.contains("69"), "{status}");
        }
        other => panic!("expected the postqueue exit error, got {other:?}"),
    }
    let snap = status.snapshot.as_ref().unwrap();
    assert_eq!(snap.source, SnapshotSource::Directory);
    assert_eq!(snap.queue(QueueName::Deferred).messages, 3);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        3.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "maildrop")]
        ),
        0.0
    );
    assert!(
        find(
            &samples,
            "postfix",
            "queue_recipients",
            &[("queue", "deferred")]
        )
        .is_empty(),
        "recipients are unknown to a directory scan, not 0"
    );
    assert!(find(&samples, "postfix", "queue_deferred_reason_recipients", &[]).is_empty());

    // postqueue missing and queue directory gone: nothing worked.
    fs::remove_file(fake.path("postqueue")).unwrap();
    fs::remove_dir_all(&queue_dir).unwrap();
    let samples = watcher.poll(now * 1000 + 60_000, "mx1", 60);
    let status = watcher.instance("postfix").unwrap();
    assert!(status.snapshot.is_none());
    assert!(
        matches!(
            status.errors.as_slice(),
            [QueueError::Spawn { .. }, QueueError::Scan { .. }]
        ),
        "{:?}",
        status.errors
    );
    assert_eq!(status.errors_total, 3);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        0.0
    );
    assert!(
        find(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        )
        .is_empty()
    );
}

#[test]
fn watcher_kills_a_hanging_postqueue_and_its_children() {
    let _lock = spawn_lock();
    let (fake, _queue_dir, now) = FakePostfix::with_queue_tree();
    // A child that would keep the pipe open: only killing the process group ends the read.
    fake.script(
        "postqueue",
        &format!(
            "head -n 1 '{}'\nsleep 60 &\necho $! > '{}'\nwait",
            fixtures_dir().join("001.jsonl").display(),
            fake.path("sleep.pid").display()
        ),
    );
    let mut cfg = fake.config();
    cfg.command_timeout_secs = 1;
    let mut watcher = QueueWatcher::new(cfg);
    let started = Instant::now();
    let samples = watcher.poll(now * 1000, "mx1", 60);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "poll took {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "killed before the timeout: {took:?}"
    );
    let status = watcher.instance("postfix").unwrap();
    assert!(
        matches!(status.errors.as_slice(), [QueueError::Timeout { .. }]),
        "{:?}",
        status.errors
    );
    assert_eq!(
        status.snapshot.as_ref().map(|s| s.source),
        Some(SnapshotSource::Directory),
        "the partial output is dropped for the directory scan"
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        1.0
    );
    let pid = fs::read_to_string(fake.path("sleep.pid")).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    // The killed `sleep` is gone or a zombie waiting for init (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = fs::read_to_string(&stat)
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()));
        match state {
            None | Some(Some('Z')) => break,
            Some(s) if Instant::now() > deadline => {
                panic!("the postqueue child is still running: state {s:?}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn samples_carry_names_labels_and_values() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let current = fake.path("current.jsonl");
    fs::copy(fixtures_dir().join("001.jsonl"), &current).unwrap();
    fake.script("postconf", "printf 'postfix\\n/var/spool/postfix\\n'");
    fake.script("postqueue", &format!("cat '{}'", current.display()));
    let mut cfg = fake.config();
    cfg.top_k_domains = 3;
    let mut watcher = QueueWatcher::new(cfg);
    let now_ms = NOW * 1000 + 500;
    let samples = watcher.poll(now_ms, "mx1", 60);

    for s in &samples {
        assert_eq!(s.labels[0].name, "host");
        assert_eq!(s.labels[0].value, "mx1");
        assert_eq!(s.labels[1].name, "instance");
        assert_eq!(s.labels[1].value, "postfix");
        assert_eq!(s.window_start_unix_ms, NOW / 60 * 60 * 1000, "{s:?}");
        assert_eq!(s.window_secs, 60);
    }
    let names: BTreeSet<&str> = samples.iter().map(|s| s.metric.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "queue_messages",
        "queue_recipients",
        "queue_bytes",
        "queue_oldest_age_seconds",
        "queue_age_messages",
        "queue_deferred_domain_messages",
        "queue_deferred_domain_recipients",
        "queue_deferred_domain_oldest_age_seconds",
        "queue_deferred_reason_recipients",
        "queue_snapshot_duration_seconds",
        "queue_snapshot_up",
        "queue_snapshot_malformed_lines",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected, "no growth on the first snapshot");

    // Every queue, empty ones included, for every per-queue metric.
    for metric in [
        "queue_messages",
        "queue_recipients",
        "queue_bytes",
        "queue_oldest_age_seconds",
    ] {
        for q in QueueName::ALL {
            gauge(&samples, "postfix", metric, &[("queue", q.as_str())]);
        }
    }
    let g = |metric, labels: &[(&str, &str)]| gauge(&samples, "postfix", metric, labels);
    assert_eq!(g("queue_messages", &[("queue", "corrupt")]), 0.0);
    assert_eq!(g("queue_recipients", &[("queue", "deferred")]), 13.0);
    assert_eq!(g("queue_bytes", &[("queue", "active")]), 14_096.0);
    assert_eq!(
        g("queue_oldest_age_seconds", &[("queue", "deferred")]),
        500_000.0
    );
    let cumulative = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0];
    for (le, n) in AGE_LE_LABELS.iter().zip(cumulative) {
        assert_eq!(
            g("queue_age_messages", &[("queue", "deferred"), ("le", le)]),
            n,
            "deferred messages aged <= {le}"
        );
    }
    assert_eq!(
        g("queue_age_messages", &[("queue", "hold"), ("le", "3600")]),
        1.0
    );

    // Top 3 by recipients (ties by name), the other seven domains summed.
    let domain = |metric, d| g(metric, &[("domain", d)]);
    assert_eq!(
        domain("queue_deferred_domain_recipients", "mx-down.example"),
        3.0
    );
    assert_eq!(
        domain("queue_deferred_domain_messages", "mx-down.example"),
        2.0
    );
    assert_eq!(
        domain("queue_deferred_domain_recipients", "nx.example"),
        2.0
    );
    assert_eq!(
        domain("queue_deferred_domain_recipients", "bigmail.example"),
        1.0
    );
    assert_eq!(domain("queue_deferred_domain_recipients", "other"), 7.0);
    assert_eq!(domain("queue_deferred_domain_messages", "other"), 7.0);
    assert_eq!(
        domain("queue_deferred_domain_oldest_age_seconds", "other"),
        500_000.0
    );
    assert_eq!(
        find(&samples, "postfix", "queue_deferred_domain_recipients", &[]).len(),
        0,
        "domain samples always carry a domain"
    );
    let domains = samples
        .iter()
        .filter(|s| s.metric == "queue_deferred_domain_recipients")
        .count();
    assert_eq!(domains, 4);

    let snap = watcher.last_snapshot("postfix").unwrap().clone();
    for class in ReasonClass::ALL {
        assert_eq!(
            g(
                "queue_deferred_reason_recipients",
                &[("reason_class", class.as_str())]
            ),
            snap.deferred_reasons.get(class) as f64,
            "{class}"
        );
    }
    assert_eq!(
        g(
            "queue_deferred_reason_recipients",
            &[("reason_class", "connect")]
        ),
        6.0
    );
    assert_eq!(g("queue_snapshot_up", &[("source", "postqueue")]), 1.0);
    assert!(g("queue_snapshot_duration_seconds", &[]) >= 0.0);

    // Thirty seconds later the deferred queue has lost two messages, hold gained one.
    let text = fs::read_to_string(&current).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines.retain(|l| !l.contains("\"7C4239CC01C\"") && !l.contains("\"A0B1C2D3E4\""));
    lines.push(r#"{"queue_name": "hold", "queue_id": "D1", "arrival_time": 1700100000, "message_size": 1, "forced_expire": false, "sender": "", "recipients": [{"address": "x@example.com"}]}"#);
    fs::write(&current, lines.join("\n")).unwrap();
    let samples = watcher.poll(now_ms + 30_000, "mx1", 60);
    let growth = |q| {
        gauge(
            &samples,
            "postfix",
            "queue_growth_messages_per_second",
            &[("queue", q)],
        )
    };
    assert_eq!(growth("deferred"), -2.0 / 30.0);
    assert_eq!(growth("hold"), 1.0 / 30.0);
    assert_eq!(growth("active"), 0.0);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        4.0
    );
}

#[test]
fn vanished_domains_are_emitted_once_with_zero() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let current = fake.path("current.jsonl");
    fake.script("postconf", "printf 'postfix\\n/var/spool/postfix\\n'");
    fake.script("postqueue", &format!("cat '{}'", current.display()));
    let entry = |id: &str, domain: &str| {
        format!(
            r#"{{"queue_name": "deferred", "queue_id": "{id}", "arrival_time": 1700099000, "message_size": 10, "forced_expire": false, "sender": "", "recipients": [{{"address": "u@{domain}", "delay_reason": "connect to mx.{domain}[192.0.2.1]:25: Connection refused"}}]}}"#
        )
    };
    let mut watcher = QueueWatcher::new(fake.config());
    let recipients = |samples: &[Sample]| -> BTreeMap<String, f64> {
        samples
            .iter()
            .filter(|s| s.metric == "queue_deferred_domain_recipients")
            .map(|s| match s.value {
                Some(sample::Value::Gauge(v)) => (s.labels[2].value.clone(), v),
                ref other => panic!("not a gauge: {other:?}"),
            })
            .collect()
    };
    let expect = |samples: &[Sample], want: &[(&str, f64)]| {
        let want: BTreeMap<String, f64> = want.iter().map(|(d, v)| ((*d).to_owned(), *v)).collect();
        assert_eq!(recipients(samples), want);
    };

    fs::write(
        &current,
        [entry("A", "x.example"), entry("B", "y.example")].join("\n"),
    )
    .unwrap();
    let samples = watcher.poll(NOW * 1000, "mx1", 60);
    expect(&samples, &[("x.example", 1.0), ("y.example", 1.0)]);

    fs::write(&current, entry("B", "y.example")).unwrap();
    let samples = watcher.poll(NOW * 1000 + 60_000, "mx1", 60);
    expect(&samples, &[("x.example", 0.0), ("y.example", 1.0)]);
    for metric in [
        "queue_deferred_domain_messages",
        "queue_deferred_domain_oldest_age_seconds",
    ] {
        assert_eq!(
            gauge(&samples, "postfix", metric, &[("domain", "x.example")]),
            0.0
        );
    }

    let samples = watcher.poll(NOW * 1000 + 120_000, "mx1", 60);
    expect(&samples, &[("y.example", 1.0)]);

    // An emptied queue: every domain drops to 0 once, the queues read 0.
    fs::write(&current, "").unwrap();
    let samples = watcher.poll(NOW * 1000 + 180_000, "mx1", 60);
    expect(&samples, &[("y.example", 0.0)]);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        0.0
    );
    let samples = watcher.poll(NOW * 1000 + 240_000, "mx1", 60);
    expect(&samples, &[]);
}

#[test]
fn the_up_series_of_a_former_source_drops_to_zero() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let queue_dir = fake.path("queue");
    fs::create_dir_all(&queue_dir).unwrap();
    fake.script(
        "postconf",
        &format!("printf 'postfix\\n{}\\n'", queue_dir.display()),
    );
    fake.script("postqueue", "exit 0");
    let mut watcher = QueueWatcher::new(fake.config());
    let samples = watcher.poll(NOW * 1000, "mx1", 60);
    assert_eq!(find(&samples, "postfix", "queue_snapshot_up", &[]).len(), 0);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        1.0
    );
    fake.script("postqueue", "exit 1");
    let samples = watcher.poll(NOW * 1000 + 60_000, "mx1", 60);
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "postqueue")]
        ),
        0.0
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_snapshot_up",
            &[("source", "directory")]
        ),
        1.0
    );
    assert!(
        find(
            &samples,
            "postfix",
            "queue_growth_messages_per_second",
            &[("queue", "deferred")]
        )
        .is_empty(),
        "no growth across a change of source"
    );
}

#[test]
fn queue_config_reads_toml_with_defaults() {
    let cfg: QueueConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, QueueConfig::default());
    assert_eq!(cfg.interval_secs, 60);
    assert_eq!(cfg.postqueue, Path::new("/usr/sbin/postqueue"));
    assert_eq!(cfg.command_timeout_secs, 30);
    assert_eq!((cfg.top_k_domains, cfg.max_domains), (50, 10_000));
    assert!(cfg.use_postqueue);
    let cfg: QueueConfig = toml::from_str(
        "use_postqueue = false\nqueue_directory = \"/q\"\n\
         [[instances]]\nname = \"postfix-out\"\nconfig_directory = \"/etc/postfix-out\"\n",
    )
    .unwrap();
    assert!(!cfg.use_postqueue);
    assert_eq!(cfg.instances[0].queue_directory, None);
    cfg.validate().unwrap();
    let err = toml::from_str::<QueueConfig>("interval = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let twice: QueueConfig = toml::from_str(
        "[[instances]]\nname = \"a\"\nconfig_directory = \"/a\"\n\
         [[instances]]\nname = \"a\"\nconfig_directory = \"/b\"\n",
    )
    .unwrap();
    assert!(twice.validate().is_err());
}

#[test]
fn directory_only_mode_never_runs_postqueue() {
    let _lock = spawn_lock();
    let fake = FakePostfix::new();
    let queue_dir = fake.path("queue");
    let now = unix_now();
    make_queue_tree(&queue_dir, now);
    let mut cfg = fake.config();
    cfg.use_postqueue = false;
    cfg.queue_directory = Some(queue_dir);
    let mut watcher = QueueWatcher::new(cfg);
    let samples = watcher.poll(now * 1000, "mx1", 60);
    // postmulti and postconf are missing: default instance, queue directory from the config.
    assert!(fake.calls().is_empty());
    let status = watcher.instance("postfix").unwrap();
    assert!(
        matches!(status.errors.as_slice(), [QueueError::Spawn { .. }]),
        "{:?}",
        status.errors
    );
    assert_eq!(
        gauge(
            &samples,
            "postfix",
            "queue_messages",
            &[("queue", "deferred")]
        ),
        3.0
    );
}
