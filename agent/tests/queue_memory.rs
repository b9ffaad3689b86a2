//! The queue snapshot's memory does not grow with the queue: a counting global allocator measures
//! the peak live heap while a generated `postqueue -j` output of 50 000 entries (~20 MB, tens of
//! thousands of distinct domains) is summarised from a file. One test per binary, so that no other
//! test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use mailpulse_agent::queue::{QueueName, SnapshotConfig, summarise_postqueue};
use mailpulse_sim::postqueue::{SynthQueueConfig, write_synth_postqueue};

/// Counts live heap bytes and their peak.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE_BYTES.fetch_add(by, Ordering::SeqCst) + by;
    PEAK_BYTES.fetch_max(live, Ordering::SeqCst);
}

fn shrank(by: usize) {
    LIVE_BYTES.fetch_sub(by, Ordering::SeqCst);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are only
// updated after it succeeded.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const NOW: i64 = 1_700_000_000;
const ENTRIES: u64 = 50_000;

/// Peak heap bytes (above what was live before) while summarising `path` with `max_domains`.
fn peak_while_summarising(path: &std::path::Path, max_domains: usize) -> (usize, u64, usize) {
    let reader = BufReader::with_capacity(64 * 1024, File::open(path).unwrap());
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    PEAK_BYTES.store(before, Ordering::SeqCst);
    let snap = summarise_postqueue(reader, NOW, &SnapshotConfig { max_domains });
    let peak = PEAK_BYTES.load(Ordering::SeqCst) - before;
    assert_eq!(snap.malformed_lines, 0);
    assert_eq!(snap.total_messages(), ENTRIES);
    let named: u64 = snap.deferred_domains.values().map(|d| d.recipients).sum();
    assert_eq!(
        named + snap.deferred_other_domains.recipients,
        snap.queue(QueueName::Deferred).recipients,
        "every deferred recipient is counted by name or in other"
    );
    (
        peak,
        snap.deferred_other_domains.recipients,
        snap.deferred_domains.len(),
    )
}

#[test]
fn summarising_a_large_queue_keeps_the_heap_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postqueue.jsonl");
    let mut out = BufWriter::new(File::create(&path).unwrap());
    let file_bytes = write_synth_postqueue(
        &SynthQueueConfig {
            seed: 7,
            entries: ENTRIES,
            now_unix_secs: NOW,
            common_domains: 200,
            // About 20 000 distinct long-tail domains among the deferred recipients.
            long_tail_per_mille: 300,
        },
        &mut out,
    )
    .unwrap();
    out.flush().unwrap();
    drop(out);
    assert!(file_bytes > 12_000_000, "generated only {file_bytes} bytes");

    // A small domain table: most of the long tail goes to `other`.
    let (peak, other, named) = peak_while_summarising(&path, 1_000);
    assert_eq!(named, 1_000);
    assert!(other > 10_000, "the long tail went to other: {other}");
    println!("max_domains 1000: peak heap {peak} bytes for a {file_bytes}-byte queue");
    assert!(
        peak < 4 * 1024 * 1024,
        "peak heap {peak} bytes while summarising {file_bytes} bytes (max_domains 1000); expected < 4 MiB"
    );

    // The default table of 10 000 domains, full: still a fraction of the input.
    let (peak, other, named) = peak_while_summarising(&path, 10_000);
    assert_eq!(named, 10_000);
    assert!(other > 0);
    println!("max_domains 10000: peak heap {peak} bytes for a {file_bytes}-byte queue");
    assert!(
        peak < 8 * 1024 * 1024,
        "peak heap {peak} bytes while summarising {file_bytes} bytes (max_domains 10000); expected < 8 MiB"
    );
}
