//! Opening the store, loading the writer's memory from it, and reopening it after an I/O error.
//!
//! The writer's memory (totals, last writes, agents, DNS record counts, pending windows) is
//! only ever changed after a commit returned, and [`Writer::load`] rebuilds all of it from the
//! database: at start-up, and after an I/O error once redb has been reopened. Reloading rather
//! than trusting memory also covers a commit that reported an error yet reached the disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable};
use tracing::{info, warn};

use super::aggregate::{Aggregate, decode_batch, decode_chunk};
use super::dns;
use super::pending::PendingPoints;
use super::series::{SeriesLimits, SeriesRegistry};
use super::tables::{
    AGENTS, ALERT_STATE, ANOMALIES, APPLIED_BATCHES, AUDIT_LOG, DNS_CHANGES, DNS_CHANGES_BY_TARGET,
    DNS_RECORD_META, DNS_RECORDS, META, POINTS, SCHEMA_VERSION, SERIES, SERIES_LAST_WRITTEN,
    StoredSeries, TOTALS, WEBHOOK_OUTBOX,
};
use super::writer::{UNKNOWN_WRITE, Writer, apply_total};
use super::{AtPath, LiveState, StoreConfig, StoreError, StoreShared, corrupt, unix_ms};
use crate::model::{AgentRecord, SeriesId};
use crate::stats::CollectorStats;

impl Writer {
    /// Opens the database, checks the schema, loads series/totals/agents and replays the
    /// applied-batch records left by the last run.
    pub(super) fn open(
        config: &StoreConfig,
        limits: SeriesLimits,
        stats: Arc<CollectorStats>,
    ) -> Result<(Writer, Arc<StoreShared>), StoreError> {
        let path = config.path.clone();
        let db = Arc::new(Database::create(&path).at(&path)?);
        let created_unix_ms = create_tables(&db, &path, unix_ms())?;
        let resolution_ms = (config.resolution_secs.max(1) * 1000) as i64;
        let shared = Arc::new(StoreShared {
            db: std::sync::RwLock::new(Some(db.clone())),
            resolution_ms,
            gauge_stale_after_ms: config
                .gauge_stale_after_secs
                .saturating_mul(1000)
                .min(i64::MAX as u64) as i64,
            registry: SeriesRegistry::with_limits(limits),
            live: std::sync::Mutex::new(LiveState::default()),
            healthy: AtomicBool::new(true),
            path: path.clone(),
            created_unix_ms,
        });
        let mut writer = Writer {
            db: Some(db),
            path,
            shared: shared.clone(),
            stats,
            resolution_ms,
            retention_ms: config
                .retention_days
                .saturating_mul(86_400_000)
                .min(i64::MAX as u64 / 2) as i64,
            fold_interval: Duration::from_secs(config.fold_interval_secs),
            prune_interval: Duration::from_secs(config.prune_interval_secs.max(1)),
            reopen_interval: Duration::from_secs(config.reopen_interval_secs),
            max_commit_batches: config.max_commit_batches.max(1),
            max_commit_bytes: config.max_commit_bytes.max(1),
            max_dns_records_per_agent: config.max_dns_records_per_agent,
            agents: HashMap::new(),
            dirty: Vec::new(),
            dirty_list: Vec::new(),
            pending: PendingPoints::default(),
            last_written: Vec::new(),
            retired: Vec::new(),
            retired_mark: Vec::new(),
            created: Vec::new(),
            dns_owned: HashMap::new(),
            next_record_id: 0,
            pending_records: 0,
            pending_record_bytes: 0,
            last_fold: Instant::now(),
            // Prune once soon after start.
            last_prune: Instant::now()
                .checked_sub(Duration::from_secs(config.prune_interval_secs))
                .unwrap_or_else(Instant::now),
            broken_since: None,
            record_buf: Vec::new(),
        };
        writer.load(true)?;
        Ok((writer, shared))
    }

    /// Replaces the writer's memory with what the database holds: series (restored into the
    /// registry when `first`; otherwise live ones missing on disk are persisted again),
    /// totals, last writes, agents, DNS record counts, and the replay of the applied-batch
    /// records not folded yet.
    pub(super) fn load(&mut self, first: bool) -> Result<(), StoreError> {
        let db = self.db()?;
        let path = self.path.clone();
        let path = path.as_path();
        let now = unix_ms();
        let registry = &self.shared.registry;
        let read = db.begin_read().at(path)?;

        let mut on_disk = Vec::new();
        for entry in read.open_table(SERIES).at(path)?.iter().at(path)? {
            let (id, row) = entry.at(path)?;
            let id = SeriesId(id.value());
            if first {
                let restored =
                    StoredSeries::decode(row.value()).map_err(|_| corrupt(path, "series table"))?;
                registry.restore(id, restored.def, &restored.owner, restored.other);
            }
            on_disk.push(id);
        }
        if first {
            registry.restore_done();
        } else {
            registry.persist_again_unless(&on_disk);
        }
        let ids = registry.read().len();

        let mut totals = vec![Aggregate::Empty; ids];
        for entry in read.open_table(TOTALS).at(path)?.iter().at(path)? {
            let (_, bytes) = entry.at(path)?;
            for (id, total) in decode_chunk(bytes.value()).map_err(|e| corrupt(path, e.0))? {
                let slot = totals
                    .get_mut(id as usize)
                    .ok_or_else(|| corrupt(path, "total of an unknown series"))?;
                *slot = total;
            }
        }
        let mut last_written = vec![UNKNOWN_WRITE; ids];
        for entry in read
            .open_table(SERIES_LAST_WRITTEN)
            .at(path)?
            .iter()
            .at(path)?
        {
            let (_, bytes) = entry.at(path)?;
            let bytes = bytes.value();
            if bytes.len() % 12 != 0 {
                return Err(corrupt(path, "series last write"));
            }
            for pair in bytes.chunks_exact(12) {
                let id = u32::from_le_bytes(pair[..4].try_into().expect("4 bytes")) as usize;
                let window = i64::from_le_bytes(pair[4..].try_into().expect("8 bytes"));
                if let Some(slot) = last_written.get_mut(id) {
                    *slot = window;
                }
            }
        }
        // Series persisted before last writes were kept count as written now.
        for id in &on_disk {
            if let Some(slot) = last_written.get_mut(id.index())
                && *slot == UNKNOWN_WRITE
            {
                *slot = now;
            }
        }

        let mut agents = HashMap::new();
        for entry in read.open_table(AGENTS).at(path)?.iter().at(path)? {
            let (id, bytes) = entry.at(path)?;
            let mut record: AgentRecord =
                serde_json::from_slice(bytes.value()).map_err(|_| corrupt(path, "agent record"))?;
            // Streams did not survive a restart; across a reopen they did.
            record.connected = !first
                && self
                    .agents
                    .get(id.value())
                    .is_some_and(|known| known.connected);
            agents.insert(id.value().to_string(), record);
        }
        self.dns_owned = dns::owned_records(&db, path)?;

        self.agents = agents;
        self.dirty = vec![false; ids];
        self.dirty_list.clear();
        self.pending.clear();
        self.last_written = last_written;
        self.next_record_id = 0;
        self.pending_records = 0;
        self.pending_record_bytes = 0;

        // Replay what was applied (and acknowledged) but not folded before.
        let shared = self.shared.clone();
        let mut live = shared.live();
        live.totals = totals;
        live.agents = self
            .agents
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut replayed = 0usize;
        for entry in read.open_table(APPLIED_BATCHES).at(path)?.iter().at(path)? {
            let (id, record) = entry.at(path)?;
            let record = record.value();
            decode_batch(record, |series, window, value| {
                apply_total(&mut live.totals, series, window, value);
                self.mark_point(series, window, value, now);
            })
            .map_err(|e| corrupt(path, e.0))?;
            self.next_record_id = id.value() + 1;
            self.pending_records += 1;
            self.pending_record_bytes += record.len();
            replayed += 1;
        }
        drop(live);
        if replayed > 0 {
            info!(
                store = %path.display(),
                records = replayed,
                "replayed applied batches not yet folded"
            );
        }
        Ok(())
    }

    /// While the store is broken, at most every `reopen_interval`: reopen it and reload.
    pub(super) fn try_reopen(&mut self) {
        let Some(since) = self.broken_since else {
            return;
        };
        if since.elapsed() < self.reopen_interval {
            return;
        }
        self.broken_since = Some(Instant::now());
        match self.reopen() {
            Ok(()) => {
                self.broken_since = None;
                self.shared.healthy.store(true, Ordering::Relaxed);
                CollectorStats::add(&self.stats.store_reopens, 1);
                info!(store = %self.path.display(), "store reopened; accepting batches again");
            }
            Err(e) => warn!(error = %e, "reopening the store failed; trying again later"),
        }
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        // redb locks the file: every handle has to go before it can be opened again (readers
        // hold theirs for one read; a reader still busy makes this attempt fail, not block).
        self.shared.set_db(None);
        self.db = None;
        let db = Arc::new(Database::create(&self.path).at(&self.path)?);
        create_tables(&db, &self.path, unix_ms())?;
        self.db = Some(db.clone());
        self.load(false)?;
        self.fold()?;
        self.shared.set_db(Some(db));
        Ok(())
    }
}

/// Creates missing tables, checks the schema version, brings older stores' DNS tables up to
/// date; returns the store's creation time.
pub(super) fn create_tables(db: &Database, path: &Path, now: i64) -> Result<i64, StoreError> {
    let txn = db.begin_write().at(path)?;
    let created;
    {
        let mut meta = txn.open_table(META).at(path)?;
        let version = meta.get("schema_version").at(path)?.map(|v| v.value());
        match version {
            Some(found) if found != SCHEMA_VERSION => {
                return Err(StoreError::Schema {
                    path: path.to_path_buf(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
            None => {
                meta.insert("schema_version", SCHEMA_VERSION).at(path)?;
            }
        }
        let stored = meta.get("created_unix_ms").at(path)?.map(|v| v.value());
        created = match stored {
            Some(ms) => ms as i64,
            None => {
                meta.insert("created_unix_ms", now as u64).at(path)?;
                now
            }
        };
        txn.open_table(AGENTS).at(path)?;
        txn.open_table(SERIES).at(path)?;
        txn.open_table(SERIES_LAST_WRITTEN).at(path)?;
        txn.open_table(TOTALS).at(path)?;
        txn.open_table(POINTS).at(path)?;
        txn.open_table(APPLIED_BATCHES).at(path)?;
        txn.open_table(ALERT_STATE).at(path)?;
        txn.open_table(WEBHOOK_OUTBOX).at(path)?;
        txn.open_table(AUDIT_LOG).at(path)?;
        txn.open_table(super::tables::REMEDIATION).at(path)?;
        txn.open_table(DNS_RECORDS).at(path)?;
        txn.open_table(DNS_RECORD_META).at(path)?;
        txn.open_table(DNS_CHANGES).at(path)?;
        txn.open_table(DNS_CHANGES_BY_TARGET).at(path)?;
        txn.open_table(ANOMALIES).at(path)?;
    }
    if dns::migrate(&txn, path, now)? {
        info!(store = %path.display(), "DNS record owners and the change index were added");
    }
    txn.commit().at(path)?;
    Ok(created)
}
