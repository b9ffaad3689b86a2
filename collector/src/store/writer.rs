//! The single store writer: group commit, dedupe, write-ahead records, folding, pruning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::aggregate::{
    Aggregate, ValueRef, decode_batch, decode_chunk, encode_batch, encode_chunk,
};
use super::series::SeriesRegistry;
use super::tables::{
    AGENTS, ALERT_STATE, ANOMALIES, APPLIED_BATCHES, AUDIT_LOG, CHUNK_SERIES, DNS_CHANGES,
    DNS_RECORDS, META, POINTS, SCHEMA_VERSION, SERIES, StoredSeries, TOTALS,
};
use super::{
    BatchOutcome, LiveState, StoreConfig, StoreError, StoreShared, WriterCommand, redb_error,
    unix_ms,
};
use crate::model::{AgentRecord, DnsChange, DnsRecordState, IngestProbe, SeriesId};
use crate::stats::CollectorStats;

/// Fold early when this many bytes of applied-batch records wait (bounds restart replay).
const FOLD_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Owns the write side of the database; runs on its own thread.
pub(super) struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    shared: Arc<StoreShared>,
    stats: Arc<CollectorStats>,
    resolution_ms: i64,
    retention_ms: i64,
    fold_interval: Duration,
    prune_interval: Duration,
    max_commit_batches: usize,
    max_commit_bytes: usize,
    persisted_series: usize,
    /// Authoritative registry (the shared copy follows it after each commit).
    agents: HashMap<String, AgentRecord>,
    /// Series whose total changed since the last fold.
    dirty: Vec<bool>,
    dirty_list: Vec<u32>,
    /// Contributions to stored windows since the last fold.
    dirty_points: DirtyWindows,
    next_record_id: u64,
    pending_records: usize,
    pending_record_bytes: usize,
    last_fold: Instant,
    last_prune: Instant,
    record_buf: Vec<u8>,
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

impl Writer {
    /// Opens the database, checks the schema, loads series/totals/agents and replays the
    /// applied-batch records left by the last run.
    pub(super) fn open(
        config: &StoreConfig,
        max_series: usize,
        stats: Arc<CollectorStats>,
    ) -> Result<(Writer, Arc<StoreShared>), StoreError> {
        let path = config.path.clone();
        let db = Arc::new(Database::create(&path).at(&path)?);
        let now = unix_ms();
        let created_unix_ms = create_tables(&db, &path, now)?;

        let registry = SeriesRegistry::new(max_series);
        let mut live = LiveState::default();
        let read = db.begin_read().at(&path)?;
        for (i, entry) in read
            .open_table(SERIES)
            .at(&path)?
            .iter()
            .at(&path)?
            .enumerate()
        {
            let (id, def) = entry.at(&path)?;
            let def = StoredSeries::decode(def.value())
                .ok()
                .filter(|_| id.value() as usize == i)
                .ok_or_else(|| corrupt(&path, "series table"))?;
            registry.restore(def);
        }
        let series_count = registry.read().len();
        live.totals.resize(series_count, Aggregate::Empty);
        for entry in read.open_table(TOTALS).at(&path)?.iter().at(&path)? {
            let (_, bytes) = entry.at(&path)?;
            for (id, total) in decode_chunk(bytes.value()).map_err(|e| corrupt(&path, e.0))? {
                let slot = live
                    .totals
                    .get_mut(id as usize)
                    .ok_or_else(|| corrupt(&path, "total of an unknown series"))?;
                *slot = total;
            }
        }
        let mut agents = HashMap::new();
        for entry in read.open_table(AGENTS).at(&path)?.iter().at(&path)? {
            let (id, bytes) = entry.at(&path)?;
            let mut record: AgentRecord = serde_json::from_slice(bytes.value())
                .map_err(|_| corrupt(&path, "agent record"))?;
            // Streams did not survive the restart.
            record.connected = false;
            agents.insert(id.value().to_string(), record);
        }
        live.agents = agents.iter().map(|(k, v)| (k.clone(), v.clone())).collect();

        let shared = Arc::new(StoreShared {
            db: db.clone(),
            resolution_ms: (config.resolution_secs.max(1) * 1000) as i64,
            gauge_stale_after_ms: config
                .gauge_stale_after_secs
                .saturating_mul(1000)
                .min(i64::MAX as u64) as i64,
            registry,
            live: std::sync::Mutex::new(live),
            healthy: std::sync::atomic::AtomicBool::new(true),
            path: path.clone(),
            created_unix_ms,
        });
        let mut writer = Writer {
            db,
            path: path.clone(),
            shared: shared.clone(),
            stats,
            resolution_ms: (config.resolution_secs.max(1) * 1000) as i64,
            retention_ms: (config.retention_days * 86_400_000) as i64,
            fold_interval: Duration::from_secs(config.fold_interval_secs),
            prune_interval: Duration::from_secs(config.prune_interval_secs.max(1)),
            max_commit_batches: config.max_commit_batches.max(1),
            max_commit_bytes: config.max_commit_bytes.max(1),
            persisted_series: series_count,
            agents,
            dirty: vec![false; series_count],
            dirty_list: Vec::new(),
            dirty_points: DirtyWindows::default(),
            next_record_id: 0,
            pending_records: 0,
            pending_record_bytes: 0,
            last_fold: Instant::now(),
            // Prune once soon after start.
            last_prune: Instant::now() - Duration::from_secs(config.prune_interval_secs),
            record_buf: Vec::new(),
        };

        // Replay what was applied (and acknowledged) but not folded before the last stop.
        let mut replayed = 0usize;
        for entry in read
            .open_table(APPLIED_BATCHES)
            .at(&path)?
            .iter()
            .at(&path)?
        {
            let (id, record) = entry.at(&path)?;
            let mut live = writer.shared.live();
            let totals = &mut live.totals;
            let (dirty, dirty_list, dirty_points) = (
                &mut writer.dirty,
                &mut writer.dirty_list,
                &mut writer.dirty_points,
            );
            let resolution_ms = writer.resolution_ms;
            decode_batch(record.value(), |series, window, value| {
                apply_total(totals, series, window, value);
                mark_point(
                    dirty,
                    dirty_list,
                    dirty_points,
                    resolution_ms,
                    series,
                    window,
                    value,
                );
            })
            .map_err(|e| corrupt(&path, e.0))?;
            drop(live);
            writer.next_record_id = id.value() + 1;
            writer.pending_records += 1;
            replayed += 1;
        }
        drop(read);
        if replayed > 0 {
            info!(
                store = %path.display(),
                records = replayed,
                "replayed applied batches not yet folded"
            );
        }
        Ok((writer, shared))
    }

    /// The writer loop: until every sender is gone (then fold and return) or `Abandon`.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriterCommand>) -> Result<(), StoreError> {
        if let Err(e) = self.fold() {
            error!(error = %e, "folding replayed batches failed");
            self.shared.healthy.store(false, Ordering::Relaxed);
        }
        let mut group = Vec::with_capacity(self.max_commit_batches);
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = command_bytes(&first);
            group.push(first);
            while group.len() < self.max_commit_batches && bytes < self.max_commit_bytes {
                match rx.try_recv() {
                    Ok(cmd) => {
                        bytes += command_bytes(&cmd);
                        group.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            if group.iter().any(|c| matches!(c, WriterCommand::Abandon)) {
                // Drop everything as a crash would: no replies, no fold.
                return Ok(());
            }
            let stop = group.iter().any(|c| matches!(c, WriterCommand::Shutdown));
            self.commit_group(&mut group);
            if stop {
                break;
            }
            self.maintain();
        }
        self.fold()
    }

    fn commit_group(&mut self, group: &mut Vec<WriterCommand>) {
        group.retain(|c| !matches!(c, WriterCommand::Tick | WriterCommand::Shutdown));
        if group.is_empty() {
            return;
        }
        match self.write_group(group) {
            Ok(decisions) => {
                self.shared.healthy.store(true, Ordering::Relaxed);
                CollectorStats::add(&self.stats.store_commits, 1);
                self.apply_committed(group, &decisions);
                for (cmd, decision) in group.drain(..).zip(decisions) {
                    match (cmd, decision) {
                        (WriterCommand::Hello { reply, .. }, _) => {
                            let _ = reply.send(Ok(()));
                        }
                        (WriterCommand::Batch { reply, .. }, Some(outcome)) => {
                            let _ = reply.send(Ok(outcome));
                        }
                        (WriterCommand::Anomalies { reply, .. }, _) => {
                            let _ = reply.send(Ok(()));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "store commit failed; batches not acknowledged");
                self.shared.healthy.store(false, Ordering::Relaxed);
                CollectorStats::add(&self.stats.store_commit_errors, 1);
                let message = e.to_string();
                for cmd in group.drain(..) {
                    match cmd {
                        WriterCommand::Hello { reply, .. } => {
                            let _ = reply.send(Err(StoreError::CommitFailed(message.clone())));
                        }
                        WriterCommand::Batch { reply, .. } => {
                            let _ = reply.send(Err(StoreError::CommitFailed(message.clone())));
                        }
                        WriterCommand::Anomalies { reply, .. } => {
                            let _ = reply.send(Err(StoreError::CommitFailed(message.clone())));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// One write transaction for the whole group; decides applied/duplicate per batch against
    /// the high-water seq (including earlier batches of the same group).
    fn write_group(
        &mut self,
        group: &[WriterCommand],
    ) -> Result<Vec<Option<BatchOutcome>>, StoreError> {
        let path = &self.path;
        let now = unix_ms();
        let mut touched: HashMap<String, AgentRecord> = HashMap::new();
        let mut decisions = Vec::with_capacity(group.len());
        let new_defs = self.shared.registry.defs_from(self.persisted_series);
        let mut record_id = self.next_record_id;
        let mut record_bytes = 0;
        let mut buf = std::mem::take(&mut self.record_buf);

        let txn = self.db.begin_write().at(path)?;
        {
            if !new_defs.is_empty() {
                let mut series = txn.open_table(SERIES).at(path)?;
                for (i, def) in new_defs.iter().enumerate() {
                    let id = (self.persisted_series + i) as u32;
                    series
                        .insert(id, StoredSeries::encode(def).as_slice())
                        .at(path)?;
                }
            }
            let mut records = txn.open_table(APPLIED_BATCHES).at(path)?;
            for cmd in group {
                let decision = match cmd {
                    WriterCommand::Hello { hello, .. } => {
                        let record = agent_entry(&mut touched, &self.agents, &hello.agent_id);
                        if record.first_seen_unix_ms == 0 {
                            record.first_seen_unix_ms = now;
                        }
                        record.host.clone_from(&hello.host);
                        record.version.clone_from(&hello.version);
                        record.capabilities.clone_from(&hello.capabilities);
                        record.last_seen_unix_ms = now;
                        record.connected = true;
                        None
                    }
                    WriterCommand::Batch {
                        agent_id, batch, ..
                    } => {
                        let record = agent_entry(&mut touched, &self.agents, agent_id);
                        record.last_seen_unix_ms = now;
                        if batch.seq <= record.applied_seq {
                            record.batches_duplicate += 1;
                            Some(BatchOutcome::Duplicate)
                        } else {
                            let missing = batch.seq - record.applied_seq - 1;
                            record.applied_seq = batch.seq;
                            record.batches_applied += 1;
                            record.batches_missing += missing;
                            record.batches_dropped_reported += batch.dropped_batches;
                            record.samples_applied += batch.samples.len() as u64;
                            if !batch.probes.is_empty() {
                                apply_probes(&txn, path, agent_id, &batch.probes)?;
                            }
                            if !batch.samples.is_empty() {
                                buf.clear();
                                encode_batch(batch, &mut buf);
                                records.insert(record_id, buf.as_slice()).at(path)?;
                                record_id += 1;
                                record_bytes += buf.len();
                            }
                            Some(BatchOutcome::Applied { missing })
                        }
                    }
                    WriterCommand::Disconnected { agent_id } => {
                        if self.agents.contains_key(&**agent_id)
                            || touched.contains_key(&**agent_id)
                        {
                            let record = agent_entry(&mut touched, &self.agents, agent_id);
                            record.connected = false;
                            record.last_seen_unix_ms = now;
                        }
                        None
                    }
                    WriterCommand::Anomalies { anomalies, .. } => {
                        let mut table = txn.open_table(ANOMALIES).at(path)?;
                        let first = table.last().at(path)?.map_or(1, |(k, _)| k.value() + 1);
                        for (id, anomaly) in (first..).zip(anomalies) {
                            let mut stored = anomaly.clone();
                            stored.id = id;
                            let json = serde_json::to_vec(&stored).expect("anomalies serialize");
                            table.insert(id, json.as_slice()).at(path)?;
                        }
                        None
                    }
                    WriterCommand::Tick | WriterCommand::Shutdown | WriterCommand::Abandon => None,
                };
                decisions.push(decision);
            }
            let mut agents = txn.open_table(AGENTS).at(path)?;
            for (id, record) in &touched {
                let json = serde_json::to_vec(record).expect("agent records serialize");
                agents.insert(id.as_str(), json.as_slice()).at(path)?;
            }
        }
        // Default durability (Immediate): fsync before commit returns, i.e. before any ack.
        txn.commit().at(path)?;

        self.record_buf = buf;
        self.persisted_series += new_defs.len();
        self.pending_records += (record_id - self.next_record_id) as usize;
        self.pending_record_bytes += record_bytes;
        self.next_record_id = record_id;
        for (id, record) in touched {
            self.agents.insert(id, record);
        }
        Ok(decisions)
    }

    /// After a successful commit: totals and registry in memory, dirty sets, counters.
    fn apply_committed(&mut self, group: &[WriterCommand], decisions: &[Option<BatchOutcome>]) {
        let applied = || {
            group
                .iter()
                .zip(decisions)
                .filter_map(|(cmd, decision)| match (cmd, decision) {
                    (WriterCommand::Batch { batch, .. }, Some(BatchOutcome::Applied { .. })) => {
                        Some(batch)
                    }
                    _ => None,
                })
        };
        {
            let mut live = self.shared.live();
            for batch in applied() {
                for sample in &batch.samples {
                    apply_total(
                        &mut live.totals,
                        sample.series,
                        sample.window_start_ms,
                        ValueRef::of(&sample.value, &batch.histogram_counts),
                    );
                }
            }
            for cmd in group {
                let agent_id = match cmd {
                    WriterCommand::Hello { hello, .. } => &hello.agent_id,
                    WriterCommand::Batch { agent_id, .. }
                    | WriterCommand::Disconnected { agent_id } => agent_id,
                    _ => continue,
                };
                if let Some(record) = self.agents.get(&**agent_id) {
                    live.agents.insert(record.agent_id.clone(), record.clone());
                }
            }
        }
        let mut samples = 0u64;
        for batch in applied() {
            samples += batch.samples.len() as u64;
            for sample in &batch.samples {
                mark_point(
                    &mut self.dirty,
                    &mut self.dirty_list,
                    &mut self.dirty_points,
                    self.resolution_ms,
                    sample.series,
                    sample.window_start_ms,
                    ValueRef::of(&sample.value, &batch.histogram_counts),
                );
            }
        }
        let stats = &self.stats;
        for decision in decisions.iter().flatten() {
            match decision {
                BatchOutcome::Applied { missing } => {
                    CollectorStats::add(&stats.batches_applied, 1);
                    CollectorStats::add(&stats.batches_missing, *missing);
                }
                BatchOutcome::Duplicate => CollectorStats::add(&stats.batches_duplicate, 1),
            }
        }
        CollectorStats::add(&stats.samples_applied, samples);
    }

    fn maintain(&mut self) {
        let fold_due = self.last_fold.elapsed() >= self.fold_interval
            || self.pending_record_bytes >= FOLD_RECORD_BYTES;
        if fold_due && let Err(e) = self.fold() {
            error!(error = %e, "folding applied batches failed");
            self.shared.healthy.store(false, Ordering::Relaxed);
        }
        if self.last_prune.elapsed() >= self.prune_interval {
            self.last_prune = Instant::now();
            if let Err(e) = self.prune() {
                warn!(error = %e, "pruning old windows failed");
            }
        }
    }

    /// Writes dirty totals and window chunks and deletes the applied-batch records they now
    /// contain, in one transaction.
    fn fold(&mut self) -> Result<(), StoreError> {
        self.last_fold = Instant::now();
        if self.dirty_list.is_empty()
            && self.dirty_points.windows.is_empty()
            && self.pending_records == 0
        {
            return Ok(());
        }
        let started = Instant::now();
        let path = &self.path;
        // Totals are stored per chunk of series: re-encode every chunk with a dirty series from
        // memory (under the lock, memory only), write them after.
        let mut chunks: Vec<u32> = self.dirty_list.iter().map(|id| id / CHUNK_SERIES).collect();
        chunks.sort_unstable();
        chunks.dedup();
        let mut encoded = Vec::new();
        let mut ends = Vec::with_capacity(chunks.len());
        {
            let live = self.shared.live();
            for &chunk in &chunks {
                let first = (chunk * CHUNK_SERIES) as usize;
                let last = (first + CHUNK_SERIES as usize).min(live.totals.len());
                for (i, total) in live.totals[first.min(last)..last].iter().enumerate() {
                    if *total != Aggregate::Empty {
                        encoded.extend_from_slice(&((first + i) as u32).to_le_bytes());
                        total.encode(&mut encoded);
                    }
                }
                ends.push(encoded.len());
            }
        }
        let txn = self.db.begin_write().at(path)?;
        {
            let mut totals = txn.open_table(TOTALS).at(path)?;
            let mut start = 0;
            for (&chunk, &end) in chunks.iter().zip(&ends) {
                totals.insert(chunk, &encoded[start..end]).at(path)?;
                start = end;
            }
            let mut points = txn.open_table(POINTS).at(path)?;
            let mut buf = Vec::new();
            self.dirty_points
                .windows
                .sort_unstable_by_key(|(window, _)| *window);
            for (window, series) in &self.dirty_points.windows {
                for (chunk, aggregates) in series.chunks(CHUNK_SERIES as usize).enumerate() {
                    let base = chunk as u32 * CHUNK_SERIES;
                    let mut new = aggregates
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| **a != Aggregate::Empty)
                        .map(|(i, a)| (base + i as u32, a))
                        .peekable();
                    if new.peek().is_none() {
                        continue;
                    }
                    let key = (*window, chunk as u32);
                    let stored = match points.get(key).at(path)? {
                        Some(bytes) => {
                            decode_chunk(bytes.value()).map_err(|e| corrupt(path, e.0))?
                        }
                        None => Vec::new(),
                    };
                    let merged = merge_chunk(stored, new);
                    buf.clear();
                    encode_chunk(&merged, &mut buf);
                    points.insert(key, buf.as_slice()).at(path)?;
                }
            }
        }
        // Dropping the whole table frees its pages without reading the records back.
        txn.delete_table(APPLIED_BATCHES).at(path)?;
        txn.open_table(APPLIED_BATCHES).at(path)?;
        txn.commit().at(path)?;
        debug!(
            series = self.dirty_list.len(),
            records = self.pending_records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "folded applied batches"
        );

        for &id in &self.dirty_list {
            self.dirty[id as usize] = false;
        }
        self.dirty_list.clear();
        self.dirty_points.windows.clear();
        self.pending_records = 0;
        self.pending_record_bytes = 0;
        Ok(())
    }

    /// Deletes stored windows older than the retention.
    fn prune(&mut self) -> Result<(), StoreError> {
        let cutoff = unix_ms() - self.retention_ms;
        let path = &self.path;
        let txn = self.db.begin_write().at(path)?;
        {
            let mut points = txn.open_table(POINTS).at(path)?;
            points.retain_in(..(cutoff, 0u32), |_, _| false).at(path)?;
        }
        txn.commit().at(path)
    }
}

/// Creates missing tables, checks the schema version; returns the store's creation time.
fn create_tables(db: &Database, path: &Path, now: i64) -> Result<i64, StoreError> {
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
        txn.open_table(TOTALS).at(path)?;
        txn.open_table(POINTS).at(path)?;
        txn.open_table(APPLIED_BATCHES).at(path)?;
        txn.open_table(ALERT_STATE).at(path)?;
        txn.open_table(AUDIT_LOG).at(path)?;
        txn.open_table(DNS_RECORDS).at(path)?;
        txn.open_table(DNS_CHANGES).at(path)?;
        txn.open_table(ANOMALIES).at(path)?;
    }
    txn.commit().at(path)?;
    Ok(created)
}

/// Versions each probe's answer per (kind, target, server) in the same transaction as the
/// batch: a different hash than the stored one records a [`DnsChange`]. A probe older than the
/// stored latest one (clock steps) only counts when it is newer.
fn apply_probes(
    txn: &redb::WriteTransaction,
    path: &Path,
    agent_id: &str,
    probes: &[IngestProbe],
) -> Result<(), StoreError> {
    let mut records = txn.open_table(DNS_RECORDS).at(path)?;
    let mut changes = txn.open_table(DNS_CHANGES).at(path)?;
    let mut next_id = changes.last().at(path)?.map_or(1, |(k, _)| k.value() + 1);
    for p in probes {
        let key = format!("{}\0{}\0{}", p.kind, p.target, p.server);
        let previous: Option<DnsRecordState> = records
            .get(key.as_str())
            .at(path)?
            .and_then(|v| serde_json::from_slice(v.value()).ok());
        let state = match previous {
            Some(prev) if p.at_unix_ms < prev.seen_unix_ms => continue,
            Some(mut prev) if prev.hash == p.answer_hash && prev.rcode == p.rcode => {
                prev.seen_unix_ms = p.at_unix_ms;
                prev.ttl_secs = p.ttl_secs;
                prev
            }
            Some(prev) => {
                let change = DnsChange {
                    id: next_id,
                    at_unix_ms: p.at_unix_ms,
                    kind: p.kind.clone(),
                    target: p.target.clone(),
                    server: p.server.clone(),
                    agent_id: agent_id.to_owned(),
                    old_rcode: prev.rcode,
                    old_hash: prev.hash,
                    old_answer: prev.answer,
                    old_since_unix_ms: prev.since_unix_ms,
                    new_rcode: p.rcode.clone(),
                    new_hash: p.answer_hash.clone(),
                    new_answer: p.answer.clone(),
                };
                let json = serde_json::to_vec(&change).expect("changes serialize");
                changes.insert(next_id, json.as_slice()).at(path)?;
                next_id += 1;
                new_state(p)
            }
            None => new_state(p),
        };
        let json = serde_json::to_vec(&state).expect("record states serialize");
        records.insert(key.as_str(), json.as_slice()).at(path)?;
    }
    Ok(())
}

fn new_state(p: &IngestProbe) -> DnsRecordState {
    DnsRecordState {
        rcode: p.rcode.clone(),
        hash: p.answer_hash.clone(),
        answer: p.answer.clone(),
        ttl_secs: p.ttl_secs,
        since_unix_ms: p.at_unix_ms,
        seen_unix_ms: p.at_unix_ms,
    }
}

fn agent_entry<'a>(
    touched: &'a mut HashMap<String, AgentRecord>,
    agents: &HashMap<String, AgentRecord>,
    agent_id: &str,
) -> &'a mut AgentRecord {
    touched.entry(agent_id.to_string()).or_insert_with(|| {
        agents
            .get(agent_id)
            .cloned()
            .unwrap_or_else(|| AgentRecord {
                agent_id: agent_id.to_string(),
                ..AgentRecord::default()
            })
    })
}

fn apply_total(totals: &mut Vec<Aggregate>, series: SeriesId, window: i64, value: ValueRef<'_>) {
    let i = series.index();
    if totals.len() <= i {
        totals.resize(i + 1, Aggregate::Empty);
    }
    totals[i].apply(window, value);
}

fn mark_point(
    dirty: &mut Vec<bool>,
    dirty_list: &mut Vec<u32>,
    dirty_points: &mut DirtyWindows,
    resolution_ms: i64,
    series: SeriesId,
    window: i64,
    value: ValueRef<'_>,
) {
    let i = series.index();
    if dirty.len() <= i {
        dirty.resize(i + 1, false);
    }
    if !dirty[i] {
        dirty[i] = true;
        dirty_list.push(series.0);
    }
    let stored_window = window.div_euclid(resolution_ms) * resolution_ms;
    dirty_points.entry(stored_window, i).apply(window, value);
}

/// Per stored window, the contributions of each series since the last fold, indexed by series
/// id (dense: agents report the same series every window, and the writer touches one or two
/// windows at a time, so a vector beats a hash map by far).
#[derive(Debug, Default)]
struct DirtyWindows {
    windows: Vec<(i64, Vec<Aggregate>)>,
    last: usize,
}

impl DirtyWindows {
    fn entry(&mut self, window: i64, series: usize) -> &mut Aggregate {
        if self
            .windows
            .get(self.last)
            .is_none_or(|(w, _)| *w != window)
        {
            self.last = match self.windows.iter().position(|(w, _)| *w == window) {
                Some(i) => i,
                None => {
                    self.windows.push((window, Vec::new()));
                    self.windows.len() - 1
                }
            };
        }
        let aggregates = &mut self.windows[self.last].1;
        if aggregates.len() <= series {
            aggregates.resize(series + 1, Aggregate::Empty);
        }
        &mut aggregates[series]
    }
}

/// Merges sorted new contributions into a sorted stored chunk.
fn merge_chunk<'a>(
    stored: Vec<(u32, Aggregate)>,
    new: impl Iterator<Item = (u32, &'a Aggregate)>,
) -> Vec<(u32, Aggregate)> {
    let mut out = Vec::with_capacity(stored.len());
    let mut stored = stored.into_iter().peekable();
    for (series, add) in new {
        while let Some((s, _)) = stored.peek()
            && *s < series
        {
            out.push(stored.next().expect("peeked"));
        }
        match stored.peek() {
            Some((s, _)) if *s == series => {
                let (s, mut aggregate) = stored.next().expect("peeked");
                aggregate.merge(add);
                out.push((s, aggregate));
            }
            _ => out.push((series, add.clone())),
        }
    }
    out.extend(stored);
    out
}

fn command_bytes(cmd: &WriterCommand) -> usize {
    match cmd {
        WriterCommand::Batch { batch, .. } => batch.encoded_bytes.max(1),
        _ => 1,
    }
}

fn corrupt(path: &Path, what: &'static str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        source: super::CorruptRecord(what),
    }
}
