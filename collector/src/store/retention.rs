//! Pruning: everything the store keeps expires with the retention.
//!
//! Every `prune_interval_secs`, in one transaction after a fold: stored windows older than the
//! retention; series not written within it (their definition, total and last write go; a
//! write counts at the later of its time and its window's, so their points are older than the
//! retention too and go with the windows); DNS records no
//! probe touched within it, DNS changes and anomalies recorded before it. An expired series'
//! id is freed for reuse a round later (at least [`REUSE_AFTER`]), once no batch decoded before
//! the expiry can still name it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redb::{ReadableTable, WriteTransaction};
use tracing::info;

use super::dns;
use super::tables::{ANOMALIES, CHUNK_SERIES, POINTS, SERIES};
use super::writer::{UNKNOWN_WRITE, Writer, write_series_chunks};
use super::{AtPath, StoreError, unix_ms};
use crate::model::{Anomaly, SeriesId};
use crate::stats::CollectorStats;

/// Shortest time between a series' expiry and the reuse of its id.
pub(super) const REUSE_AFTER: Duration = Duration::from_secs(10);

impl Writer {
    /// One pruning round (see the module doc).
    pub(super) fn prune(&mut self) -> Result<(), StoreError> {
        self.prune_at(unix_ms())
    }

    /// A pruning round as if the clock read `now_ms`.
    pub(super) fn prune_at(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.fold()?;
        self.free_retired();
        let db = self.db()?;
        let path = self.path.clone();
        let path = path.as_path();
        let cutoff = now_ms - self.retention_ms;

        let candidates = self
            .last_written
            .iter()
            .enumerate()
            .filter(|&(_, &window)| window != UNKNOWN_WRITE && window < cutoff)
            .map(|(i, _)| SeriesId(i as u32));
        let expired = self.shared.registry.expirable(candidates);
        let expired_set: HashSet<u32> = expired.iter().map(|id| id.0).collect();
        let mut chunks: Vec<u32> = expired.iter().map(|id| id.0 / CHUNK_SERIES).collect();
        chunks.sort_unstable();
        chunks.dedup();
        let (totals, windows) = self.encode_series_chunks(&chunks, |id| expired_set.contains(&id));

        let txn = db.begin_write().at(path)?;
        {
            let mut points = txn.open_table(POINTS).at(path)?;
            points.retain_in(..(cutoff, 0u32), |_, _| false).at(path)?;
            let mut series = txn.open_table(SERIES).at(path)?;
            for id in &expired {
                series.remove(id.0).at(path)?;
            }
        }
        write_series_chunks(&txn, path, &chunks, &totals, &windows)?;
        let dns = dns::prune(&txn, path, cutoff)?;
        let anomalies = prune_anomalies(&txn, path, cutoff)?;
        txn.commit().at(path)?;

        // Memory follows the commit.
        self.shared.registry.retire(&expired);
        {
            let mut live = self.shared.live();
            for id in &expired {
                if let Some(total) = live.totals.get_mut(id.index()) {
                    *total = super::Aggregate::Empty;
                }
            }
        }
        for id in &expired {
            let i = id.index();
            self.last_written[i] = UNKNOWN_WRITE;
            if self.retired_mark.len() <= i {
                self.retired_mark.resize(i + 1, false);
            }
            self.retired_mark[i] = true;
        }
        for (owner, n) in &dns.records_by_owner {
            if let Some(owned) = self.dns_owned.get_mut(owner) {
                *owned = owned.saturating_sub(*n);
                if *owned == 0 {
                    self.dns_owned.remove(owner);
                }
            }
        }
        let stats = &self.stats;
        CollectorStats::add(&stats.series_expired, expired.len() as u64);
        CollectorStats::add(&stats.dns_records_pruned, dns.records);
        CollectorStats::add(&stats.dns_changes_pruned, dns.changes);
        CollectorStats::add(&stats.anomalies_pruned, anomalies);
        if !expired.is_empty() || dns.records + dns.changes + anomalies > 0 {
            info!(
                series = expired.len(),
                dns_records = dns.records,
                dns_changes = dns.changes,
                anomalies,
                "pruned what is older than the retention"
            );
        }
        if !expired.is_empty() {
            self.retired.push((Instant::now(), expired));
        }
        Ok(())
    }

    /// Frees the ids of series expired by an earlier round, at least a round and
    /// [`REUSE_AFTER`] ago.
    fn free_retired(&mut self) {
        let wait = self.prune_interval.max(REUSE_AFTER);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(at, _)| at.elapsed() >= wait);
        self.retired = waiting;
        for (_, ids) in ready {
            for id in &ids {
                if let Some(mark) = self.retired_mark.get_mut(id.index()) {
                    *mark = false;
                }
            }
            self.shared.registry.free(&ids);
        }
    }
}

/// Removes anomalies of windows before `cutoff_ms`, oldest first; stops at the first newer one
/// (ids follow recording order, which follows window order but for start-up history).
fn prune_anomalies(
    txn: &WriteTransaction,
    path: &std::path::Path,
    cutoff_ms: i64,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(ANOMALIES).at(path)?;
    let mut old = Vec::new();
    for entry in table.iter().at(path)? {
        let (id, value) = entry.at(path)?;
        match serde_json::from_slice::<Anomaly>(value.value()) {
            Ok(anomaly) if anomaly.window_start_unix_ms >= cutoff_ms => break,
            // Old, or unreadable (nothing can show it).
            _ => old.push(id.value()),
        }
    }
    for &id in &old {
        table.remove(id).at(path)?;
    }
    Ok(old.len() as u64)
}
