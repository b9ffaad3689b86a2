//! The queue-directory scan on hand-encoded queue files.

use super::*;

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

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A queue directory with files in every scanned queue; returns the expected bytes per queue.
pub(crate) fn make_queue_tree(root: &Path, now: i64) -> BTreeMap<QueueName, u64> {
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
