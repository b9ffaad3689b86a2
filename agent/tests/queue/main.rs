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

mod directory;
mod postqueue;
mod watcher;

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
