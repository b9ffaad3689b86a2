//! The single store writer: group commit, dedupe, write-ahead records, folding.
//!
//! Opening, reloading and reopening after an I/O error are in `recovery.rs`; pruning and
//! series expiry in `retention.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, ReadableTableMetadata};
use tokio::sync::mpsc;
use tracing::{debug, error};

use super::aggregate::{Aggregate, ValueRef, decode_chunk, encode_batch, encode_chunk};
use super::dns::{self, RecordBudget};
use super::pending::{PendingPoints, merge_chunk};
use super::series::NewSeries;
use super::tables::{
    AGENTS, ALERT_STATE, ANOMALIES, APPLIED_BATCHES, CHUNK_SERIES, POINTS, SERIES,
    SERIES_LAST_WRITTEN, StoredSeries, TOTALS,
};
use super::{AtPath, BatchOutcome, StoreError, StoreShared, WriterCommand, agents, unix_ms};
use crate::model::{AgentRecord, SeriesId};
use crate::stats::CollectorStats;

/// Fold early when this many bytes of applied-batch records wait (bounds restart replay).
const FOLD_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// Fold early when this many (window, series) contributions wait (bounds their memory).
const FOLD_PENDING_ENTRIES: usize = 4_000_000;

/// `last_written` of an id the writer knows nothing about yet: never expires.
pub(super) const UNKNOWN_WRITE: i64 = i64::MAX;

/// Owns the write side of the database; runs on its own thread.
pub(super) struct Writer {
    /// None while the store is being reopened after an I/O error.
    pub(super) db: Option<Arc<Database>>,
    pub(super) path: PathBuf,
    pub(super) shared: Arc<StoreShared>,
    pub(super) stats: Arc<CollectorStats>,
    pub(super) resolution_ms: i64,
    pub(super) retention_ms: i64,
    pub(super) fold_interval: Duration,
    pub(super) prune_interval: Duration,
    pub(super) reopen_interval: Duration,
    pub(super) max_commit_batches: usize,
    pub(super) max_commit_bytes: usize,
    pub(super) max_dns_records_per_agent: usize,
    /// Authoritative registry (the shared copy follows it after each commit).
    pub(super) agents: HashMap<String, AgentRecord>,
    /// Series whose total changed since the last fold.
    pub(super) dirty: Vec<bool>,
    pub(super) dirty_list: Vec<u32>,
    /// Contributions to stored windows since the last fold.
    pub(super) pending: PendingPoints,
    /// Per series id: its last write, the later of when a sample was applied and its window's
    /// start (expiry compares it with the retention); [`UNKNOWN_WRITE`] for ids not persisted
    /// yet.
    pub(super) last_written: Vec<i64>,
    /// Series expired by a round, freed for reuse by a later one.
    pub(super) retired: Vec<(Instant, Vec<SeriesId>)>,
    /// Per series id: expired and not freed yet (a late sample reinstates it).
    pub(super) retired_mark: Vec<bool>,
    /// Series persisted by the last commit.
    pub(super) created: Vec<SeriesId>,
    /// DNS records each agent created.
    pub(super) dns_owned: HashMap<String, usize>,
    pub(super) next_record_id: u64,
    pub(super) pending_records: usize,
    pub(super) pending_record_bytes: usize,
    pub(super) last_fold: Instant,
    pub(super) last_prune: Instant,
    /// Set by an I/O error: when the store was last (re)opened or tried; cleared once a reopen
    /// worked.
    pub(super) broken_since: Option<Instant>,
    pub(super) record_buf: Vec<u8>,
}

impl Writer {
    /// The writer loop: until every sender is gone (then fold and return) or `Abandon`.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriterCommand>) -> Result<(), StoreError> {
        if let Err(e) = self.fold() {
            self.failed("folding replayed batches", &e);
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
            let prunes = take_prunes(&mut group);
            let folds = take_folds(&mut group);
            self.try_reopen();
            self.commit_group(&mut group);
            for reply in folds {
                let result = match self.broken_since {
                    Some(_) => Err(StoreError::Unavailable),
                    None => self.fold(),
                };
                if let Err(e) = &result {
                    self.failed("folding", e);
                }
                let _ = reply.send(result);
            }
            for (now_ms, reply) in prunes {
                let result = match self.broken_since {
                    Some(_) => Err(StoreError::Unavailable),
                    None => self.prune_at(now_ms),
                };
                if let Err(e) = &result {
                    self.failed("pruning", e);
                }
                let _ = reply.send(result);
            }
            if stop {
                break;
            }
            self.maintain();
        }
        if self.broken_since.is_some() {
            return Ok(());
        }
        self.fold()
    }

    /// The database, unless it is being reopened.
    pub(super) fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.clone().ok_or(StoreError::Unavailable)
    }

    /// An operation failed: the store is unhealthy and reopened (state reloaded from disk)
    /// before it is used again — after an I/O error redb refuses everything until then.
    pub(super) fn failed(&mut self, what: &str, e: &StoreError) {
        error!(error = %e, "{what} failed; the store will be reopened");
        self.shared.healthy.store(false, Ordering::Relaxed);
        if self.broken_since.is_none() {
            self.broken_since = Some(Instant::now());
        }
    }

    fn commit_group(&mut self, group: &mut Vec<WriterCommand>) {
        group.retain(|c| !matches!(c, WriterCommand::Tick | WriterCommand::Shutdown));
        if group.is_empty() {
            return;
        }
        if self.broken_since.is_some() {
            let message = "store is being reopened after an I/O error".to_string();
            reply_all(group, &message);
            return;
        }
        self.reinstate_late_samples(group);
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
                        (WriterCommand::Anomalies { reply, .. }, _)
                        | (WriterCommand::AlertStates { reply, .. }, _)
                        | (WriterCommand::Records { reply, .. }, _) => {
                            let _ = reply.send(Ok(()));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                CollectorStats::add(&self.stats.store_commit_errors, 1);
                self.failed("store commit; batches not acknowledged", &e);
                reply_all(group, &e.to_string());
            }
        }
    }

    /// Samples naming a series expired since their batch was decoded count for it again (or
    /// for the id its key has now).
    fn reinstate_late_samples(&mut self, group: &mut [WriterCommand]) {
        if self.retired.is_empty() {
            return;
        }
        for cmd in group.iter_mut() {
            let WriterCommand::Batch { batch, .. } = cmd else {
                continue;
            };
            for sample in &mut batch.samples {
                let i = sample.series.index();
                if self.retired_mark.get(i).copied().unwrap_or(false) {
                    let id = self.shared.registry.reinstate(sample.series);
                    if id == sample.series {
                        self.retired_mark[i] = false;
                        self.last_written[i] = UNKNOWN_WRITE;
                    }
                    debug!(series = i, now = id.0, "late sample for an expired series");
                    sample.series = id;
                }
            }
        }
    }

    /// One write transaction for the whole group; decides applied/duplicate per batch against
    /// the high-water seq of its incarnation (including earlier batches of the same group).
    fn write_group(
        &mut self,
        group: &[WriterCommand],
    ) -> Result<Vec<Option<BatchOutcome>>, StoreError> {
        let db = self.db()?;
        let path = &self.path;
        let now = unix_ms();
        let mut touched: HashMap<String, AgentRecord> = HashMap::new();
        let mut decisions = Vec::with_capacity(group.len());
        let new_series = self.shared.registry.unpersisted();
        let mut record_id = self.next_record_id;
        let mut record_bytes = 0;
        let mut buf = std::mem::take(&mut self.record_buf);
        let mut budget = RecordBudget {
            owned: &self.dns_owned,
            added: HashMap::new(),
            cap: self.max_dns_records_per_agent,
            now_ms: now,
        };
        let mut probes_refused = 0;

        let txn = db.begin_write().at(path)?;
        {
            if !new_series.is_empty() {
                let mut series = txn.open_table(SERIES).at(path)?;
                for NewSeries {
                    id,
                    def,
                    owner,
                    other,
                } in &new_series
                {
                    series
                        .insert(id.0, StoredSeries::encode(def, owner, *other).as_slice())
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
                        agents::say_hello(record, &hello.incarnation);
                        record.last_seen_unix_ms = now;
                        record.connected = true;
                        None
                    }
                    WriterCommand::Batch {
                        agent_id,
                        incarnation,
                        batch,
                        ..
                    } => {
                        let record = agent_entry(&mut touched, &self.agents, agent_id);
                        record.last_seen_unix_ms = now;
                        let high_water = agents::high_water(record, incarnation);
                        if batch.seq <= *high_water {
                            record.batches_duplicate += 1;
                            Some(BatchOutcome::Duplicate)
                        } else {
                            let missing = batch.seq - *high_water - 1;
                            *high_water = batch.seq;
                            record.batches_applied += 1;
                            record.batches_missing += missing;
                            record.batches_dropped_reported += batch.dropped_batches;
                            record.samples_applied += batch.samples.len() as u64;
                            let mut dns_probes_refused = 0;
                            if !batch.probes.is_empty() {
                                let refused = dns::apply_probes(
                                    &txn,
                                    path,
                                    agent_id,
                                    &batch.probes,
                                    &mut budget,
                                )?;
                                record.dns_probes_refused += refused;
                                probes_refused += refused;
                                dns_probes_refused = refused;
                            }
                            if !batch.samples.is_empty() {
                                buf.clear();
                                encode_batch(batch, &mut buf);
                                records.insert(record_id, buf.as_slice()).at(path)?;
                                record_id += 1;
                                record_bytes += buf.len();
                            }
                            Some(BatchOutcome::Applied {
                                missing,
                                dns_probes_refused,
                            })
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
                    WriterCommand::AlertStates {
                        upserts, removals, ..
                    } => {
                        let mut table = txn.open_table(ALERT_STATE).at(path)?;
                        for (fingerprint, state) in upserts {
                            table
                                .insert(fingerprint.as_str(), state.as_slice())
                                .at(path)?;
                        }
                        for fingerprint in removals {
                            table.remove(fingerprint.as_str()).at(path)?;
                        }
                        None
                    }
                    WriterCommand::Records {
                        table: which,
                        upserts,
                        removals,
                        ..
                    } => {
                        let mut table = txn.open_table(which.definition()).at(path)?;
                        for (id, entry) in upserts {
                            table.insert(*id, entry.as_slice()).at(path)?;
                        }
                        for id in removals {
                            table.remove(*id).at(path)?;
                        }
                        if *which == super::RecordTable::AuditLog {
                            // Capped: the oldest entries go first.
                            let len = table.len().at(path)?;
                            for _ in super::MAX_AUDIT_ENTRIES..len {
                                if table.pop_first().at(path)?.is_none() {
                                    break;
                                }
                            }
                        }
                        None
                    }
                    WriterCommand::Tick
                    | WriterCommand::Shutdown
                    | WriterCommand::Abandon
                    | WriterCommand::PruneAsOf { .. }
                    | WriterCommand::Fold { .. } => None,
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

        let added = budget.added;
        for (agent, n) in added {
            *self.dns_owned.entry(agent).or_default() += n;
        }
        CollectorStats::add(&self.stats.dns_probes_refused, probes_refused);
        self.record_buf = buf;
        self.shared.registry.mark_persisted(new_series.len());
        self.created.clear();
        self.created.extend(new_series.iter().map(|new| new.id));
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
        let now = unix_ms();
        for batch in applied() {
            samples += batch.samples.len() as u64;
            for sample in &batch.samples {
                self.mark_point(
                    sample.series,
                    sample.window_start_ms,
                    ValueRef::of(&sample.value, &batch.histogram_counts),
                    now,
                );
            }
        }
        let stats = &self.stats;
        for decision in decisions.iter().flatten() {
            match decision {
                BatchOutcome::Applied { missing, .. } => {
                    CollectorStats::add(&stats.batches_applied, 1);
                    CollectorStats::add(&stats.batches_missing, *missing);
                }
                BatchOutcome::Duplicate => CollectorStats::add(&stats.batches_duplicate, 1),
            }
        }
        CollectorStats::add(&stats.samples_applied, samples);
        // A series created without a sample counts as written now (its first batch may
        // still be on its way).
        for id in std::mem::take(&mut self.created) {
            let i = id.index();
            if self.last_written.len() <= i {
                self.last_written.resize(i + 1, UNKNOWN_WRITE);
            }
            if self.last_written[i] == UNKNOWN_WRITE {
                self.last_written[i] = now;
            }
        }
    }

    /// Records a committed sample (applied at `written_ms`) in the dirty sets, its stored
    /// window and the series' last write.
    pub(super) fn mark_point(
        &mut self,
        series: SeriesId,
        window: i64,
        value: ValueRef<'_>,
        written_ms: i64,
    ) {
        let i = series.index();
        if self.dirty.len() <= i {
            self.dirty.resize(i + 1, false);
        }
        if !self.dirty[i] {
            self.dirty[i] = true;
            self.dirty_list.push(series.0);
        }
        if self.last_written.len() <= i {
            self.last_written.resize(i + 1, UNKNOWN_WRITE);
        }
        let at = window.max(written_ms);
        let last = &mut self.last_written[i];
        *last = if *last == UNKNOWN_WRITE {
            at
        } else {
            (*last).max(at)
        };
        let stored_window = window.div_euclid(self.resolution_ms) * self.resolution_ms;
        self.pending.add(stored_window, series.0, window, value);
    }

    fn maintain(&mut self) {
        if self.broken_since.is_some() {
            return;
        }
        let fold_due = self.last_fold.elapsed() >= self.fold_interval
            || self.pending_record_bytes >= FOLD_RECORD_BYTES
            || self.pending.entries() >= FOLD_PENDING_ENTRIES;
        if fold_due && let Err(e) = self.fold() {
            self.failed("folding applied batches", &e);
            return;
        }
        if self.last_prune.elapsed() >= self.prune_interval {
            self.last_prune = Instant::now();
            if let Err(e) = self.prune() {
                self.failed("pruning", &e);
            }
        }
    }

    /// Writes dirty totals, last writes and window chunks, and deletes the applied-batch
    /// records they now contain, in one transaction. Windows older than the retention are not
    /// written (pruning would delete them next); their samples are in the totals.
    pub(super) fn fold(&mut self) -> Result<(), StoreError> {
        self.last_fold = Instant::now();
        if self.dirty_list.is_empty() && self.pending.is_empty() && self.pending_records == 0 {
            return Ok(());
        }
        let db = self.db()?;
        let started = Instant::now();
        let path = &self.path;
        let cutoff = unix_ms() - self.retention_ms;
        // Totals are stored per chunk of series: re-encode every chunk with a dirty series from
        // memory (under the lock, memory only), write them after.
        let mut chunks: Vec<u32> = self.dirty_list.iter().map(|id| id / CHUNK_SERIES).collect();
        chunks.sort_unstable();
        chunks.dedup();
        let (totals_encoded, windows_encoded) = self.encode_series_chunks(&chunks, |_| false);
        let txn = db.begin_write().at(path)?;
        {
            write_series_chunks(&txn, path, &chunks, &totals_encoded, &windows_encoded)?;
            let mut points = txn.open_table(POINTS).at(path)?;
            let mut buf = Vec::new();
            // Newest key first: redb gives every key inserted right before a leaf that holds a
            // single large value (a full chunk) a page of its own when keys come in ascending
            // order — 4 KiB per point for a backlog of old windows — not in descending order.
            for (window, entries) in self.pending.sorted().into_iter().rev() {
                if window < cutoff.div_euclid(self.resolution_ms) * self.resolution_ms {
                    continue;
                }
                let mut rest = entries.as_slice();
                while let Some(&(last, _)) = rest.last() {
                    let chunk = last / CHUNK_SERIES;
                    let start = rest.partition_point(|(series, _)| series / CHUNK_SERIES < chunk);
                    let (head, new) = rest.split_at(start);
                    rest = head;
                    let key = (window, chunk);
                    let stored = match points.get(key).at(path)? {
                        Some(bytes) => {
                            decode_chunk(bytes.value()).map_err(|e| super::corrupt(path, e.0))?
                        }
                        None => Vec::new(),
                    };
                    let merged = merge_chunk(stored, new.iter().copied());
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
            points = self.pending.entries(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "folded applied batches"
        );

        for &id in &self.dirty_list {
            self.dirty[id as usize] = false;
        }
        self.dirty_list.clear();
        self.pending.clear();
        self.pending_records = 0;
        self.pending_record_bytes = 0;
        Ok(())
    }

    /// The totals and last-write encodings of `chunks` from memory, leaving out the series
    /// `skip` names; one buffer each, with the end offset of every chunk.
    pub(super) fn encode_series_chunks(
        &self,
        chunks: &[u32],
        skip: impl Fn(u32) -> bool,
    ) -> (EncodedChunks, EncodedChunks) {
        let mut totals = EncodedChunks::default();
        let mut windows = EncodedChunks::default();
        let live = self.shared.live();
        for &chunk in chunks {
            let first = (chunk * CHUNK_SERIES) as usize;
            let end = first + CHUNK_SERIES as usize;
            let last = end.min(live.totals.len());
            for (i, total) in live.totals[first.min(last)..last].iter().enumerate() {
                let id = (first + i) as u32;
                if *total != Aggregate::Empty && !skip(id) {
                    totals.bytes.extend_from_slice(&id.to_le_bytes());
                    total.encode(&mut totals.bytes);
                }
            }
            totals.ends.push(totals.bytes.len());
            let last = end.min(self.last_written.len());
            for (i, &window) in self.last_written[first.min(last)..last].iter().enumerate() {
                let id = (first + i) as u32;
                if window != UNKNOWN_WRITE && !skip(id) {
                    windows.bytes.extend_from_slice(&id.to_le_bytes());
                    windows.bytes.extend_from_slice(&window.to_le_bytes());
                }
            }
            windows.ends.push(windows.bytes.len());
        }
        (totals, windows)
    }
}

/// Encoded values of several chunks back to back.
#[derive(Debug, Default)]
pub(super) struct EncodedChunks {
    pub(super) bytes: Vec<u8>,
    /// End offset of each chunk's value.
    pub(super) ends: Vec<usize>,
}

/// Writes the totals and last-write values of `chunks` (an empty value removes the chunk).
pub(super) fn write_series_chunks(
    txn: &redb::WriteTransaction,
    path: &std::path::Path,
    chunks: &[u32],
    totals_encoded: &EncodedChunks,
    windows_encoded: &EncodedChunks,
) -> Result<(), StoreError> {
    for (table, encoded) in [
        (TOTALS, totals_encoded),
        (SERIES_LAST_WRITTEN, windows_encoded),
    ] {
        let mut table = txn.open_table(table).at(path)?;
        let mut start = 0;
        for (&chunk, &end) in chunks.iter().zip(&encoded.ends) {
            if end == start {
                table.remove(chunk).at(path)?;
            } else {
                table.insert(chunk, &encoded.bytes[start..end]).at(path)?;
            }
            start = end;
        }
    }
    Ok(())
}

/// Takes the prune requests out of `group`.
fn take_prunes(
    group: &mut Vec<WriterCommand>,
) -> Vec<(i64, tokio::sync::oneshot::Sender<Result<(), StoreError>>)> {
    let mut prunes = Vec::new();
    let mut rest = Vec::with_capacity(group.len());
    for cmd in group.drain(..) {
        match cmd {
            WriterCommand::PruneAsOf { now_ms, reply } => prunes.push((now_ms, reply)),
            other => rest.push(other),
        }
    }
    *group = rest;
    prunes
}

/// Takes the fold requests out of `group`.
fn take_folds(
    group: &mut Vec<WriterCommand>,
) -> Vec<tokio::sync::oneshot::Sender<Result<(), StoreError>>> {
    let mut folds = Vec::new();
    let mut rest = Vec::with_capacity(group.len());
    for cmd in group.drain(..) {
        match cmd {
            WriterCommand::Fold { reply } => folds.push(reply),
            other => rest.push(other),
        }
    }
    *group = rest;
    folds
}

/// Fails every command waiting for a reply.
fn reply_all(group: &mut Vec<WriterCommand>, message: &str) {
    for cmd in group.drain(..) {
        match cmd {
            WriterCommand::Hello { reply, .. } => {
                let _ = reply.send(Err(StoreError::CommitFailed(message.to_string())));
            }
            WriterCommand::Batch { reply, .. } => {
                let _ = reply.send(Err(StoreError::CommitFailed(message.to_string())));
            }
            WriterCommand::Anomalies { reply, .. }
            | WriterCommand::AlertStates { reply, .. }
            | WriterCommand::Records { reply, .. } => {
                let _ = reply.send(Err(StoreError::CommitFailed(message.to_string())));
            }
            _ => {}
        }
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

pub(super) fn apply_total(
    totals: &mut Vec<Aggregate>,
    series: SeriesId,
    window: i64,
    value: ValueRef<'_>,
) {
    let i = series.index();
    if totals.len() <= i {
        totals.resize(i + 1, Aggregate::Empty);
    }
    totals[i].apply(window, value);
}

fn command_bytes(cmd: &WriterCommand) -> usize {
    match cmd {
        WriterCommand::Batch { batch, .. } => batch.encoded_bytes.max(1),
        _ => 1,
    }
}
