//! Memory of the store writer under hostile windows: after 20 000 series exist, one batch of
//! 40 000 samples of one series, each in a different stored window, must cost memory in
//! proportion to the batch — when it is applied and again when its write-ahead record is
//! replayed at start-up — never one value per (window × series).
//!
//! Its own test binary: a counting global allocator measures the peak heap, and refuses to go
//! past a hard ceiling so that a regression fails here instead of exhausting the machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mailpulse_collector::model::{IngestBatch, IngestSample, MetricKind, SampleValue, SeriesDef};
use mailpulse_collector::stats::CollectorStats;
use mailpulse_collector::store::{self, StoreConfig, series_key};

/// Allocations past this many live bytes fail (the process aborts): a regression to a dense
/// layout would want tens of gigabytes.
const CEILING_BYTES: usize = 2 << 30;

struct CountingAlloc {
    live: AtomicUsize,
    peak: AtomicUsize,
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !self.reserve(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            if new_size > layout.size() {
                self.live
                    .fetch_sub(new_size - layout.size(), Ordering::Relaxed);
            }
        } else if new_size < layout.size() {
            self.live
                .fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        new
    }
}

impl CountingAlloc {
    fn reserve(&self, bytes: usize) -> bool {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if live > CEILING_BYTES {
            self.live.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.peak.fetch_max(live, Ordering::Relaxed);
        true
    }

    /// Starts a new measurement; returns the live bytes now.
    fn reset_peak(&self) -> usize {
        let live = self.live.load(Ordering::Relaxed);
        self.peak.store(live, Ordering::Relaxed);
        live
    }

    /// Peak live bytes since [`Self::reset_peak`], above `base`.
    fn peak_above(&self, base: usize) -> usize {
        self.peak.load(Ordering::Relaxed).saturating_sub(base)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc {
    live: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};

const SERIES: u32 = 20_000;
const WINDOWS: i64 = 40_000;
/// Generous: the batch itself is about 1.6 MB in memory, its record under 1 MB.
const BOUND_BYTES: usize = 64 << 20;

fn counter_def(i: u32) -> (Vec<u8>, SeriesDef) {
    let value = format!("d{i}.test");
    let mut key = Vec::new();
    series_key(
        "messages_sent",
        [("domain", value.as_str()), ("host", "mx1")],
        &mut key,
    );
    let def = SeriesDef {
        metric: "messages_sent".into(),
        labels: vec![
            ("domain".into(), value.as_str().into()),
            ("host".into(), "mx1".into()),
        ]
        .into(),
        kind: MetricKind::Counter,
        bounds: Box::new([]),
    };
    (key, def)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test]
async fn a_batch_spread_over_40000_windows_costs_memory_in_proportion_to_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        path: dir.path().join("collector.redb"),
        // One stored window per sample window: 40 000 distinct stored windows, all within
        // the retention (40 000 minutes is under 28 days).
        resolution_secs: 60,
        // Nothing is folded while the test runs: the record stays in the write-ahead log.
        fold_interval_secs: 3600,
        ..StoreConfig::default()
    };
    let (store, writer) =
        store::open(&config, 1_000_000, Arc::new(CollectorStats::default())).expect("open");
    let latest = (now_ms() / 60_000 - 1) * 60_000;
    let mut ids = Vec::new();
    for i in 0..SERIES {
        let (key, def) = counter_def(i);
        ids.push(store.registry().intern("mx1", &key, def).expect("series"));
    }
    let one_each = IngestBatch {
        seq: 1,
        samples: ids
            .iter()
            .map(|&series| IngestSample {
                series,
                window_start_ms: latest,
                value: SampleValue::Counter(1.0),
            })
            .collect(),
        ..IngestBatch::default()
    };
    let reply = store
        .submit_batch("mx1".into(), "".into(), one_each)
        .await
        .expect("queued");
    reply.await.expect("reply").expect("applied");

    // The last series (the highest id) in 40 000 windows, one minute apart.
    let last = *ids.last().expect("series");
    let spread = IngestBatch {
        seq: 2,
        samples: (0..WINDOWS)
            .map(|i| IngestSample {
                series: last,
                window_start_ms: latest - i * 60_000,
                value: SampleValue::Counter(1.0),
            })
            .collect(),
        ..IngestBatch::default()
    };
    let base = ALLOC.reset_peak();
    let reply = store
        .submit_batch("mx1".into(), "".into(), spread)
        .await
        .expect("queued");
    reply.await.expect("reply").expect("applied");
    let applied_peak = ALLOC.peak_above(base);
    eprintln!("applying the spread batch: peak heap +{applied_peak} bytes");
    assert!(
        applied_peak < BOUND_BYTES,
        "applying a 40 000-window batch took {applied_peak} bytes of heap (bound {BOUND_BYTES})"
    );

    // As after a crash: the record is committed, not folded; start-up replays it.
    writer.abandon().await;
    drop(store);
    let base = ALLOC.reset_peak();
    let (store, writer) =
        store::open(&config, 1_000_000, Arc::new(CollectorStats::default())).expect("reopen");
    let replay_peak = ALLOC.peak_above(base);
    eprintln!("start-up replay: peak heap +{replay_peak} bytes");
    assert!(
        replay_peak < BOUND_BYTES,
        "replaying the 40 000-window record took {replay_peak} bytes of heap (bound {BOUND_BYTES})"
    );

    // The writer folds the replayed record first thing: every window lands in the points.
    let mut points = Vec::new();
    for _ in 0..200 {
        points = store
            .series_points(last, 0, i64::MAX)
            .expect("points readable");
        if points.len() == WINDOWS as usize {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(points.len(), WINDOWS as usize, "one point per window");
    let fold_peak = ALLOC.peak_above(base);
    eprintln!("start-up replay and fold: peak heap +{fold_peak} bytes");
    assert!(
        fold_peak < BOUND_BYTES,
        "replaying and folding the 40 000-window record took {fold_peak} bytes of heap (bound {BOUND_BYTES})"
    );
    // Old windows land in front of the stored chunks of the newest one: one page per point
    // there would make the file hundreds of megabytes.
    let file_bytes = store.file_bytes();
    eprintln!("store file after the fold: {file_bytes} bytes");
    assert!(
        file_bytes < BOUND_BYTES as u64,
        "the store file grew to {file_bytes} bytes for 40 000 points"
    );
    let snapshot = store.snapshot();
    assert_eq!(
        snapshot.totals[last.index()],
        store::Aggregate::Counter(WINDOWS as f64 + 1.0),
        "total of the spread series"
    );
    writer.join().await.expect("clean stop");
}
