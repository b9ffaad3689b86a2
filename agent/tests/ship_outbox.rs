//! Disk outbox: numbering across restarts, the byte bound, corrupt and leftover files, acks.

use std::fs;
use std::path::Path;

use mailpulse_agent::ship::{FilePosition, Outbox, OutboxConfig};
use mailpulse_agent::source::FileKey;
use mailpulse_proto::v1::{Batch, Label, Sample, sample};

fn key(inode: u64) -> FileKey {
    FileKey {
        dev: 1,
        inode,
        fingerprint: 0xfeed_0000 + inode,
        fingerprint_len: 256,
    }
}

fn pos(inode: u64, end_offset: u64) -> FilePosition {
    FilePosition {
        file: key(inode),
        end_offset,
    }
}

/// A batch of about `samples` × 60 bytes.
fn batch(samples: usize) -> Batch {
    Batch {
        created_unix_ms: 1_700_000_000_000,
        samples: (0..samples)
            .map(|i| Sample {
                metric: "messages_delivered".into(),
                labels: vec![Label {
                    name: "domain".into(),
                    value: format!("d{i}.example"),
                }],
                window_start_unix_ms: 1_700_000_000_000,
                window_secs: 60,
                value: Some(sample::Value::CounterDelta(i as f64)),
            })
            .collect(),
        ..Batch::default()
    }
}

fn open(dir: &Path, max_bytes: u64) -> Outbox {
    Outbox::open(
        dir,
        OutboxConfig {
            max_bytes,
            ..OutboxConfig::default()
        },
    )
    .expect("outbox opens")
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn seq_is_monotonic_across_reopen_and_never_reused_after_acks() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    assert_eq!(
        ob.append(batch(1), &[pos(1, 10)]).unwrap(),
        1,
        "first seq is 1"
    );
    assert_eq!(ob.append(batch(1), &[pos(1, 20)]).unwrap(), 2);
    drop(ob);

    let mut ob = open(dir.path(), u64::MAX);
    assert_eq!(ob.pending_seqs().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(ob.append(batch(1), &[pos(1, 30)]).unwrap(), 3);
    // Everything acknowledged: the next number must still not go back.
    for seq in 1..=3 {
        assert!(ob.ack(seq).unwrap().is_some());
    }
    assert!(ob.is_empty());
    drop(ob);

    let mut ob = open(dir.path(), u64::MAX);
    assert_eq!(ob.next_seq(), 4, "numbering survives an empty outbox");
    assert_eq!(ob.append(batch(1), &[]).unwrap(), 4);
    let read = ob.read(4).unwrap().expect("batch 4 pending");
    assert_eq!(read.batch.seq, 4, "the stored batch carries its seq");
}

#[test]
fn pending_reads_back_in_seq_order_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    for i in 1..=5u64 {
        ob.append(batch(i as usize), &[pos(1, i * 100), pos(2, i * 7)])
            .unwrap();
    }
    drop(ob);
    let ob = open(dir.path(), u64::MAX);
    let pending: Vec<_> = ob.pending().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        pending.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    for p in &pending {
        assert_eq!(p.batch.seq, p.seq);
        assert_eq!(p.batch.samples.len() as u64, p.seq);
        assert_eq!(p.positions, vec![pos(1, p.seq * 100), pos(2, p.seq * 7)]);
    }
    let resume = ob.resume_positions();
    assert_eq!(resume.get(&key(1)), Some(&500), "highest position per file");
    assert_eq!(resume.get(&key(2)), Some(&35));
}

#[test]
fn ack_returns_positions_and_deletes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    let seq = ob.append(batch(3), &[pos(1, 42), pos(9, 7)]).unwrap();
    assert!(ob.batch_path(seq).exists());
    assert_eq!(
        ob.ack(seq).unwrap(),
        Some(vec![pos(1, 42), pos(9, 7)]),
        "ack hands back the covered positions"
    );
    assert!(!ob.batch_path(seq).exists(), "acked batch file deleted");
    assert_eq!(ob.ack(seq).unwrap(), None, "second ack is a no-op");
    assert!(ob.resume_positions().is_empty());
    assert_eq!(ob.stats().bytes, 0);
}

#[test]
fn bound_drops_oldest_and_counts_in_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    // Measure one batch's file size first.
    let size = {
        let probe = tempfile::tempdir().unwrap();
        let mut ob = open(probe.path(), u64::MAX);
        let seq = ob.append(batch(20), &[pos(1, 1)]).unwrap();
        fs::metadata(ob.batch_path(seq)).unwrap().len()
    };
    // Room for three batches (plus slack for the dropped_batches field).
    let mut ob = open(dir.path(), size * 3 + 16);
    for i in 1..=3 {
        ob.append(batch(20), &[pos(1, i)]).unwrap();
    }
    assert_eq!(ob.stats().dropped_batches, 0, "no drop within the bound");
    let seq = ob.append(batch(20), &[pos(1, 4)]).unwrap();
    assert_eq!(seq, 4);
    assert_eq!(
        ob.pending_seqs().collect::<Vec<_>>(),
        vec![2, 3, 4],
        "oldest dropped"
    );
    assert_eq!(ob.stats().dropped_batches, 1);
    assert_eq!(
        ob.read(4).unwrap().unwrap().batch.dropped_batches,
        1,
        "the drop is reported in the next batch"
    );
    let seq = ob.append(batch(20), &[pos(1, 5)]).unwrap();
    assert_eq!(
        ob.read(seq).unwrap().unwrap().batch.dropped_batches,
        1,
        "one more drop, reported once"
    );
    assert!(ob.stats().bytes <= size * 3 + 16, "stays within the bound");
    drop(ob);

    // Drops already reported are not reported again after a restart.
    let mut ob = open(dir.path(), size * 3 + 16);
    ob.ack(3).unwrap();
    ob.ack(4).unwrap();
    let seq = ob.append(batch(20), &[pos(1, 6)]).unwrap();
    assert_eq!(seq, 6, "dropped seqs are never reused");
    assert_eq!(ob.read(seq).unwrap().unwrap().batch.dropped_batches, 0);
}

#[test]
fn corrupt_and_truncated_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    for i in 1..=4 {
        ob.append(batch(5), &[pos(1, i * 10)]).unwrap();
    }
    let p2 = ob.batch_path(2);
    let p3 = ob.batch_path(3);
    drop(ob);
    // Batch 2: a flipped byte in the payload; batch 3: cut in half.
    let mut bytes = fs::read(&p2).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&p2, bytes).unwrap();
    let bytes = fs::read(&p3).unwrap();
    fs::write(&p3, &bytes[..bytes.len() / 2]).unwrap();

    let mut ob = open(dir.path(), u64::MAX);
    assert_eq!(ob.pending_seqs().collect::<Vec<_>>(), vec![1, 4]);
    assert_eq!(ob.stats().corrupt_batches, 2);
    assert_eq!(
        ob.stats().dropped_batches,
        2,
        "corrupt batches are counted losses"
    );
    assert!(!p2.exists() && !p3.exists(), "corrupt files removed");
    assert_eq!(
        ob.resume_positions().get(&key(1)),
        Some(&40),
        "resume ignores lost batches"
    );
    let seq = ob.append(batch(1), &[]).unwrap();
    assert_eq!(seq, 5);
    assert_eq!(
        ob.read(seq).unwrap().unwrap().batch.dropped_batches,
        2,
        "the next batch reports the corrupt ones"
    );
}

#[test]
fn corrupt_count_survives_a_restart_before_it_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    ob.append(batch(5), &[]).unwrap();
    ob.append(batch(5), &[]).unwrap();
    let p1 = ob.batch_path(1);
    drop(ob);
    fs::write(&p1, b"MPOB garbage").unwrap();
    drop(open(dir.path(), u64::MAX)); // finds and removes the corrupt file, then "crashes"
    let mut ob = open(dir.path(), u64::MAX);
    let seq = ob.append(batch(1), &[]).unwrap();
    assert_eq!(ob.read(seq).unwrap().unwrap().batch.dropped_batches, 1);
}

#[test]
fn tmp_leftovers_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    ob.append(batch(2), &[pos(1, 5)]).unwrap();
    drop(ob);
    // What a crash between create and rename leaves behind.
    fs::write(
        dir.path().join("00000000000000000002.batch.tmp"),
        b"half a batch",
    )
    .unwrap();
    fs::write(dir.path().join("state.json.tmp"), b"{\"vers").unwrap();
    let ob = open(dir.path(), u64::MAX);
    assert_eq!(ob.stats().removed_tmp_files, 2);
    assert!(
        files_with_suffix(dir.path(), ".tmp").is_empty(),
        "no tmp left"
    );
    assert_eq!(ob.pending_seqs().collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        ob.next_seq(),
        2,
        "a batch that never got renamed keeps no number"
    );
}

#[test]
fn foreign_files_are_ignored_and_a_corrupt_state_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = open(dir.path(), u64::MAX);
    ob.append(batch(1), &[]).unwrap();
    drop(ob);
    fs::write(dir.path().join("README"), b"hello").unwrap();
    assert_eq!(open(dir.path(), u64::MAX).len(), 1);
    fs::write(dir.path().join("state.json"), b"not json").unwrap();
    let err = Outbox::open(dir.path(), OutboxConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("state.json"),
        "error names the state file: {err}"
    );
}
