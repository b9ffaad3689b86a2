//! The embedded store (redb) and its single writer.
//!
//! Write path: ingest handlers send [`WriterCommand`]s over a bounded channel; one writer thread
//! drains what is queued (group commit), decides per batch applied / duplicate against the
//! high-water seq of the agent's incarnation (the stream's Hello names it; a wiped agent starts
//! a new one at seq 1), writes the batch (as a compact applied-batch record) together with the
//! new high-water seq and the registry in **one** write transaction, commits (fsync), updates
//! the in-memory totals and only then replies — so an ack always means durable.
//!
//! Applied-batch records are a write-ahead log: every `fold_interval_secs` the writer folds them
//! into the per-series `totals` and the per-window `points` chunks and deletes them, in one
//! transaction. Until then their contributions wait in memory, sparse: whatever windows a batch
//! names, memory follows the samples it carries. At startup totals are loaded and the remaining
//! records replayed, so a crash at any point (kill -9) loses nothing that was acknowledged and
//! applies nothing twice.
//!
//! Limits: series per agent (past the quota new label sets fold into `other` series), DNS
//! records per agent, and a retention for everything stored (windows, idle series, DNS records
//! and changes, anomalies). After an I/O error (disk full) the writer refuses batches, reopens
//! the database and reloads its memory from it, then resumes.
//!
//! Read path: `/metrics` and OTLP read [`StoreHandle::snapshot`], a copy of the in-memory totals
//! taken under a short lock; they never touch redb or wait for a commit.

mod agents;
mod aggregate;
mod config;
mod dns;
mod pending;
mod recovery;
mod retention;
mod series;
mod tables;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

pub use aggregate::{Aggregate, CorruptRecord, ValueRef};
pub use config::StoreConfig;
pub use dns::{
    MAX_DNS_CHANGES_PER_QUERY, MAX_DNS_CHANGES_QUERY_BYTES, MAX_DNS_RECORDS_PER_QUERY,
    StoredDnsRecord,
};
pub use series::{
    InternError, KeyHasher, OTHER_LABEL_VALUE, OwnerSeries, SeriesIndex, SeriesLimits,
    SeriesRegistry, series_key,
};

use crate::model::{AgentHello, AgentRecord, IngestBatch, SeriesDef, SeriesId};
use crate::stats::CollectorStats;
use writer::Writer;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, a lock held by another process).
    #[error("store {path}: {source}")]
    Redb {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// A record does not decode.
    #[error("store {path}: {source}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Which record.
        #[source]
        source: CorruptRecord,
    },
    /// The file was written by an incompatible schema.
    #[error("store {path}: schema version {found}, this collector reads {expected}")]
    Schema {
        /// The store file.
        path: PathBuf,
        /// Version in the file.
        found: u64,
        /// Version this code writes.
        expected: u64,
    },
    /// Creating the store's directory failed.
    #[error("creating {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The writer has stopped (shutdown or an earlier fatal error).
    #[error("store writer stopped")]
    WriterStopped,
    /// The store is being reopened after an I/O error (disk full, …).
    #[error("store unavailable: reopening after an I/O error")]
    Unavailable,
    /// A commit failed; the batch was not applied (the agent will resend).
    #[error("store commit failed: {0}")]
    CommitFailed(String),
}

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Applied; `missing` seq numbers were skipped before it (agent outbox loss).
    Applied {
        /// Seq numbers between the previous high-water mark and this batch.
        missing: u64,
        /// Probes of new DNS records refused (the agent's record cap), not applied; the rest
        /// of the batch was.
        dns_probes_refused: u64,
    },
    /// seq ≤ high-water mark: acknowledged, not applied.
    Duplicate,
}

/// A pending reply of the writer.
pub type BatchReply = oneshot::Receiver<Result<BatchOutcome, StoreError>>;

/// Work for the writer thread.
#[derive(Debug)]
pub(crate) enum WriterCommand {
    Hello {
        hello: AgentHello,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Batch {
        agent_id: Arc<str>,
        /// The incarnation the stream said Hello with.
        incarnation: Arc<str>,
        batch: IngestBatch,
        reply: oneshot::Sender<Result<BatchOutcome, StoreError>>,
    },
    Disconnected {
        agent_id: Arc<str>,
    },
    /// Anomalies found by the detectors, appended durably.
    Anomalies {
        anomalies: Vec<crate::model::Anomaly>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Alert lifecycle states (by fingerprint) to store, and fingerprints to delete.
    AlertStates {
        upserts: Vec<(String, Vec<u8>)>,
        removals: Vec<String>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Entries of a table of records keyed by number (id → encoded entry) to store, and ids
    /// to delete.
    Records {
        table: RecordTable,
        upserts: Vec<(u64, Vec<u8>)>,
        removals: Vec<u64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Lets the writer fold/prune when no batches arrive.
    Tick,
    /// A pruning round as if the clock read `now_ms` (tests: time passing).
    PruneAsOf {
        now_ms: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Commit what came before and fold now (a replay advancing its clock: every window it
    /// shipped must be readable before it is judged).
    Fold {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Commit what came before, fold, stop.
    Shutdown,
    /// Stop at once without folding (tests: the on-disk state of a kill -9).
    Abandon,
}

/// The tables of records keyed by number that the collector's own modules keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTable {
    /// Webhook notifications not delivered yet.
    WebhookOutbox,
    /// Remediation audit log: every request, approval, refusal and result (append-only, the
    /// newest [`MAX_AUDIT_ENTRIES`] kept).
    AuditLog,
    /// Remediation actions waiting (for an approval, a result, a scheduled revert).
    Remediation,
}

/// Audit log entries kept; older ones are removed as new ones come.
pub const MAX_AUDIT_ENTRIES: u64 = 100_000;

impl RecordTable {
    pub(crate) fn definition(self) -> redb::TableDefinition<'static, u64, &'static [u8]> {
        match self {
            RecordTable::WebhookOutbox => tables::WEBHOOK_OUTBOX,
            RecordTable::AuditLog => tables::AUDIT_LOG,
            RecordTable::Remediation => tables::REMEDIATION,
        }
    }
}

/// In-memory state the writer keeps in sync after each commit.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Cumulative total per series id.
    pub totals: Vec<Aggregate>,
    /// Agent registry.
    pub agents: BTreeMap<String, AgentRecord>,
}

/// A consistent copy of the totals for exposition.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Series definitions, indexed by id (may be longer than `totals`).
    pub series: Vec<Arc<SeriesDef>>,
    /// Totals, indexed by id.
    pub totals: Vec<Aggregate>,
    /// Agent registry.
    pub agents: Vec<AgentRecord>,
    /// Series counts per owner (quotas).
    pub owners: Vec<OwnerSeries>,
}

impl Snapshot {
    /// Empties gauge totals whose latest window is more than `stale_after_ms` older than the
    /// newest gauge window of the same `host` label (see `gauge_stale_after_secs`).
    pub fn hide_stale_gauges(&mut self, stale_after_ms: i64) {
        let n = self.totals.len().min(self.series.len());
        let mut newest: std::collections::HashMap<Option<&str>, i64> = Default::default();
        for i in 0..n {
            if let Aggregate::Gauge {
                window_start_ms, ..
            } = self.totals[i]
            {
                let slot = newest
                    .entry(self.series[i].label("host"))
                    .or_insert(window_start_ms);
                *slot = (*slot).max(window_start_ms);
            }
        }
        let stale: Vec<usize> = (0..n)
            .filter(|&i| match self.totals[i] {
                Aggregate::Gauge {
                    window_start_ms, ..
                } => newest
                    .get(&self.series[i].label("host"))
                    .is_some_and(|&max| max.saturating_sub(window_start_ms) > stale_after_ms),
                _ => false,
            })
            .collect();
        for i in stale {
            self.totals[i] = Aggregate::Empty;
        }
    }
}

/// State shared by the writer and readers.
#[derive(Debug)]
pub struct StoreShared {
    /// Read side of the database (redb readers never block the writer); None while the writer
    /// reopens it after an I/O error.
    db: RwLock<Option<Arc<redb::Database>>>,
    resolution_ms: i64,
    /// See [`StoreConfig::gauge_stale_after_secs`].
    gauge_stale_after_ms: i64,
    /// Series interning.
    pub registry: SeriesRegistry,
    live: Mutex<LiveState>,
    healthy: AtomicBool,
    path: PathBuf,
    created_unix_ms: i64,
}

impl StoreShared {
    fn live(&self) -> MutexGuard<'_, LiveState> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database for one read.
    fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Unavailable)
    }

    fn set_db(&self, db: Option<Arc<redb::Database>>) {
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = db;
    }
}

/// Cheap, cloneable access to the store for ingest and exposition.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<WriterCommand>,
    shared: Arc<StoreShared>,
}

impl StoreHandle {
    /// Sends the command `make` builds around a reply channel and waits for the reply.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriterCommand,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Registers (or refreshes) an agent durably.
    pub async fn hello(&self, hello: AgentHello) -> Result<(), StoreError> {
        self.ask(|reply| WriterCommand::Hello { hello, reply })
            .await
    }

    /// Queues a batch of a stream opened with `incarnation` (waiting while the queue is full)
    /// and returns the pending outcome, so a stream can keep several batches in flight.
    pub async fn submit_batch(
        &self,
        agent_id: Arc<str>,
        incarnation: Arc<str>,
        batch: IngestBatch,
    ) -> Result<BatchReply, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriterCommand::Batch {
                agent_id,
                incarnation,
                batch,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(rx)
    }

    /// Marks an agent disconnected (best effort, not awaited).
    pub fn disconnected(&self, agent_id: Arc<str>) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(WriterCommand::Disconnected { agent_id }).await;
        });
    }

    /// Appends anomalies (ids are assigned by the store) and waits until they are durable.
    pub async fn record_anomalies(
        &self,
        anomalies: Vec<crate::model::Anomaly>,
    ) -> Result<(), StoreError> {
        if anomalies.is_empty() {
            return Ok(());
        }
        self.ask(|reply| WriterCommand::Anomalies { anomalies, reply })
            .await
    }

    /// Stores alert lifecycle states (`upserts`: fingerprint → encoded state) and deletes
    /// `removals`, in one commit.
    pub async fn save_alert_states(
        &self,
        upserts: Vec<(String, Vec<u8>)>,
        removals: Vec<String>,
    ) -> Result<(), StoreError> {
        if upserts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        self.ask(|reply| WriterCommand::AlertStates {
            upserts,
            removals,
            reply,
        })
        .await
    }

    /// Stores entries of `table` and deletes `removals`, in one commit.
    pub async fn save_records(
        &self,
        table: RecordTable,
        upserts: Vec<(u64, Vec<u8>)>,
        removals: Vec<u64>,
    ) -> Result<(), StoreError> {
        if upserts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        self.ask(|reply| WriterCommand::Records {
            table,
            upserts,
            removals,
            reply,
        })
        .await
    }

    /// Every entry of `table`: (id, encoded entry), oldest first.
    pub fn records(&self, table: RecordTable) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.read_all(table.definition(), |k| k)
    }

    /// The newest `limit` entries of `table`, newest first.
    pub fn newest(
        &self,
        table: RecordTable,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.scan(table.definition(), true, limit, |k| k)
    }

    /// Every stored alert lifecycle state: (fingerprint, encoded state).
    pub fn alert_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(tables::ALERT_STATE, str::to_owned)
    }

    /// Every entry of a small table of encoded values, in key order.
    fn read_all<K, T>(
        &self,
        table: redb::TableDefinition<K, &[u8]>,
        key: impl Fn(K::SelfType<'_>) -> T,
    ) -> Result<Vec<(T, Vec<u8>)>, StoreError>
    where
        K: redb::Key + 'static,
    {
        self.scan(table, false, usize::MAX, key)
    }

    /// At most `limit` entries of a table of encoded values, in key order or (`newest_first`)
    /// the other way; a table not created yet is empty.
    fn scan<K, T>(
        &self,
        table: redb::TableDefinition<K, &[u8]>,
        newest_first: bool,
        limit: usize,
        key: impl Fn(K::SelfType<'_>) -> T,
    ) -> Result<Vec<(T, Vec<u8>)>, StoreError>
    where
        K: redb::Key + 'static,
    {
        use redb::{ReadableDatabase, ReadableTable};
        let path = &self.shared.path;
        let read = self
            .shared
            .db()?
            .begin_read()
            .map_err(|e| redb_error(path, e))?;
        let table = match read.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(redb_error(path, e)),
        };
        let entries = table.iter().map_err(|e| redb_error(path, e))?;
        let entries: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(entries.rev())
        } else {
            Box::new(entries)
        };
        let mut out = Vec::new();
        for entry in entries.take(limit) {
            let (k, value) = entry.map_err(|e| redb_error(path, e))?;
            out.push((key(k.value()), value.value().to_vec()));
        }
        Ok(out)
    }

    /// Runs a pruning round as if the clock read `now_ms` and waits for it: what the retention
    /// does to a store left alone that long (tests).
    #[doc(hidden)]
    pub async fn prune_as_of(&self, now_ms: i64) -> Result<(), StoreError> {
        self.ask(|reply| WriterCommand::PruneAsOf { now_ms, reply })
            .await
    }

    /// Commits every batch acknowledged so far and folds them into the windows the detectors
    /// read, then answers (a replay driving the analyzer's clock calls it before each step).
    pub async fn fold_now(&self) -> Result<(), StoreError> {
        self.ask(|reply| WriterCommand::Fold { reply }).await
    }

    /// The newest anomalies first, at most `limit`.
    pub fn anomalies(&self, limit: usize) -> Result<Vec<crate::model::Anomaly>, StoreError> {
        self.newest_records(
            tables::ANOMALIES,
            limit,
            "anomaly is not valid JSON",
            |_| true,
        )
    }

    /// Up to `limit` JSON records of an id-keyed log table, newest first, those `keep` accepts;
    /// a table not created yet reads as empty.
    fn newest_records<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<u64, &[u8]>,
        limit: usize,
        what: &'static str,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        use redb::{ReadableDatabase, ReadableTable};
        let path = &self.shared.path;
        let read = self
            .shared
            .db()?
            .begin_read()
            .map_err(|e| redb_error(path, e))?;
        let table = match read.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(redb_error(path, e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| redb_error(path, e))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, value) = entry.map_err(|e| redb_error(path, e))?;
            let record: T =
                serde_json::from_slice(value.value()).map_err(|_| StoreError::Corrupt {
                    path: path.clone(),
                    source: aggregate::CorruptRecord(what),
                })?;
            if keep(&record) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Width of the stored windows, in ms (`resolution_secs`).
    pub fn resolution_ms(&self) -> i64 {
        self.shared.resolution_ms
    }

    /// Series interning.
    pub fn registry(&self) -> &SeriesRegistry {
        &self.shared.registry
    }

    /// A copy of totals and registry (short lock; never waits for a commit in progress to
    /// reach the disk — the writer updates memory only after its commit returned).
    pub fn snapshot(&self) -> Snapshot {
        let live = self.shared.live();
        let totals = live.totals.clone();
        let agents = live.agents.values().cloned().collect();
        drop(live);
        // Definitions after totals: an id is reused only once its total is empty, and gets its
        // new definition before its first total, so a total never meets a stale definition.
        let mut snapshot = Snapshot {
            series: self.shared.registry.all(),
            totals,
            agents,
            owners: self.shared.registry.owners(),
        };
        snapshot.hide_stale_gauges(self.shared.gauge_stale_after_ms);
        snapshot
    }

    /// The agent registry.
    pub fn agents(&self) -> Vec<AgentRecord> {
        self.shared.live().agents.values().cloned().collect()
    }

    /// True while the writer runs and its last commit succeeded.
    pub fn is_healthy(&self) -> bool {
        !self.tx.is_closed() && self.shared.healthy.load(Ordering::Relaxed)
    }

    /// Size of the store file in bytes.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Stored windows of one series with start in `from_ms..to_ms`, oldest first: the
    /// aggregate of every sample whose agent window started in that stored window
    /// (`resolution_secs` wide). Reads folded data, so the newest `fold_interval_secs` may be
    /// missing.
    pub fn series_points(
        &self,
        series: SeriesId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Aggregate)>, StoreError> {
        use redb::ReadableDatabase;
        let path = &self.shared.path;
        let chunk = series.0 / tables::CHUNK_SERIES;
        let read = self
            .shared
            .db()?
            .begin_read()
            .map_err(|e| redb_error(path, e))?;
        let points = read
            .open_table(tables::POINTS)
            .map_err(|e| redb_error(path, e))?;
        let from = from_ms.div_euclid(self.shared.resolution_ms) * self.shared.resolution_ms;
        let mut out = Vec::new();
        for entry in points
            .range((from, chunk)..(to_ms, 0))
            .map_err(|e| redb_error(path, e))?
        {
            let (key, value) = entry.map_err(|e| redb_error(path, e))?;
            let (window, entry_chunk) = key.value();
            if entry_chunk != chunk || window >= to_ms {
                continue;
            }
            let entries =
                aggregate::decode_chunk(value.value()).map_err(|source| StoreError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
            if let Ok(i) = entries.binary_search_by_key(&series.0, |(id, _)| *id) {
                out.push((window, entries[i].1.clone()));
            }
        }
        Ok(out)
    }

    /// Every stored window with start in `from_ms..to_ms`, oldest first: `visit(window, entries)`
    /// with the aggregates of all series stored in it (sorted by series id). One pass over the
    /// points table whatever the number of series, which is what the detectors need on start
    /// (weeks of history) and per round.
    pub fn for_each_window(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut visit: impl FnMut(i64, &[(u32, Aggregate)]),
    ) -> Result<(), StoreError> {
        use redb::ReadableDatabase;
        let path = &self.shared.path;
        let read = self
            .shared
            .db()?
            .begin_read()
            .map_err(|e| redb_error(path, e))?;
        let points = read
            .open_table(tables::POINTS)
            .map_err(|e| redb_error(path, e))?;
        let from = from_ms.div_euclid(self.shared.resolution_ms) * self.shared.resolution_ms;
        let mut current: Option<i64> = None;
        let mut entries: Vec<(u32, Aggregate)> = Vec::new();
        for entry in points
            .range((from, 0)..(to_ms, 0))
            .map_err(|e| redb_error(path, e))?
        {
            let (key, value) = entry.map_err(|e| redb_error(path, e))?;
            let (window, _) = key.value();
            if current.is_some_and(|c| c != window) {
                visit(current.unwrap_or(window), &entries);
                entries.clear();
            }
            current = Some(window);
            let chunk =
                aggregate::decode_chunk(value.value()).map_err(|source| StoreError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
            entries.extend(chunk);
        }
        if let Some(window) = current {
            visit(window, &entries);
        }
        Ok(())
    }

    /// The newest DNS changes first, at most `limit` (and [`MAX_DNS_CHANGES_PER_QUERY`], and
    /// about [`MAX_DNS_CHANGES_QUERY_BYTES`] of stored JSON), only those whose target is
    /// `target` or a name below it when given (`example.com` matches `_dmarc.example.com`);
    /// a target query reads the index of that name, not the whole log.
    pub fn dns_changes(
        &self,
        limit: usize,
        target: Option<&str>,
    ) -> Result<Vec<crate::model::DnsChange>, StoreError> {
        dns::changes(&*self.shared.db()?, &self.shared.path, limit, target)
    }

    /// The latest stored answers of the probe kinds `kinds` (`mx`, `a`, …), per target and
    /// server.
    pub fn dns_records(&self, kinds: &[&str]) -> Result<Vec<StoredDnsRecord>, StoreError> {
        dns::records(&*self.shared.db()?, &self.shared.path, kinds)
    }

    /// When the store was created (start of all cumulative totals), Unix ms.
    pub fn created_unix_ms(&self) -> i64 {
        self.shared.created_unix_ms
    }
}

/// The running writer thread.
#[derive(Debug)]
pub struct WriterThread {
    tx: mpsc::Sender<WriterCommand>,
    join: JoinHandle<Result<(), StoreError>>,
}

impl WriterThread {
    /// Commits what is queued, folds, stops the writer and waits for it. Handles still held
    /// elsewhere get [`StoreError::WriterStopped`] afterwards.
    pub async fn join(self) -> Result<(), StoreError> {
        let _ = self.tx.send(WriterCommand::Shutdown).await;
        drop(self.tx);
        tokio::task::spawn_blocking(move || self.join.join())
            .await
            .map_err(|_| StoreError::WriterStopped)?
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// Stops the writer without folding, leaving the file as a kill -9 would (tests).
    pub async fn abandon(self) {
        let _ = self.tx.send(WriterCommand::Abandon).await;
        let _ = tokio::task::spawn_blocking(move || self.join.join()).await;
    }
}

/// Opens (or creates) the store, recovers it and starts the writer thread.
pub fn open(
    config: &StoreConfig,
    max_series: usize,
    stats: Arc<CollectorStats>,
) -> Result<(StoreHandle, WriterThread), StoreError> {
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let limits = SeriesLimits {
        max_series,
        max_series_per_owner: config.max_series_per_agent,
        max_other_series_per_owner: config.max_other_series_per_agent,
    };
    let (writer, shared) = Writer::open(config, limits, stats)?;
    let (tx, rx) = mpsc::channel(config.queue_batches.max(1));
    let join = std::thread::Builder::new()
        .name("mailpulse-store".into())
        .spawn(move || writer.run(rx))
        .map_err(|source| StoreError::CreateDir {
            path: config.path.clone(),
            source,
        })?;
    // Ticks let the writer fold and prune while no batch arrives. A weak sender, so the ticker
    // does not keep the writer alive once every handle is gone.
    let tick_tx = tx.downgrade();
    let tick = Duration::from_secs(1);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(tx) = tick_tx.upgrade() else { break };
            if tx.try_send(WriterCommand::Tick).is_err() && tx.is_closed() {
                break;
            }
        }
    });
    let handle = StoreHandle {
        tx: tx.clone(),
        shared,
    };
    Ok((handle, WriterThread { tx, join }))
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn redb_error(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// `Result` → [`StoreError`] for any redb error type.
trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> AtPath<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| redb_error(path, e))
    }
}

fn corrupt(path: &Path, what: &'static str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        source: CorruptRecord(what),
    }
}
