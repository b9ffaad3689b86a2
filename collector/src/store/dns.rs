//! DNS record history: versioned answers per (kind, target, server), the change log and its
//! index by target, the per-agent cap on records and their pruning.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::tables::{DNS_CHANGES, DNS_CHANGES_BY_TARGET, DNS_RECORD_META, DNS_RECORDS};
use super::{AtPath, StoreError};
use crate::model::{DnsChange, DnsRecordState, IngestProbe};

/// Most changes one query returns, whatever `limit` asks.
pub const MAX_DNS_CHANGES_PER_QUERY: usize = 1_000;
/// Most stored bytes (JSON) one query returns: a change holds two answers of up to 64 KB each.
/// The newest change is returned even when it alone is larger.
pub const MAX_DNS_CHANGES_QUERY_BYTES: usize = 8 * 1024 * 1024;

/// Records per agent: how many each created, the cap, and what this transaction adds.
#[derive(Debug)]
pub(super) struct RecordBudget<'a> {
    /// Records each agent created, as of the last commit.
    pub owned: &'a HashMap<String, usize>,
    /// Records created in this transaction, per agent.
    pub added: HashMap<String, usize>,
    /// `max_dns_records_per_agent`.
    pub cap: usize,
    /// Now (Unix ms): the records' `seen` time, the changes' `recorded` time.
    pub now_ms: i64,
}

/// Versions each probe's answer per (kind, target, server) in the same transaction as the
/// batch: a different hash than the stored one records a [`DnsChange`]. A probe older than the
/// stored latest one (clock steps) only counts when it is newer. A probe of a record the agent
/// would create past its cap is refused; returns how many were.
pub(super) fn apply_probes(
    txn: &WriteTransaction,
    path: &Path,
    agent_id: &str,
    probes: &[IngestProbe],
    budget: &mut RecordBudget<'_>,
) -> Result<u64, StoreError> {
    let mut records = txn.open_table(DNS_RECORDS).at(path)?;
    let mut meta = txn.open_table(DNS_RECORD_META).at(path)?;
    let mut changes = txn.open_table(DNS_CHANGES).at(path)?;
    let mut by_target = txn.open_table(DNS_CHANGES_BY_TARGET).at(path)?;
    let mut next_id = changes.last().at(path)?.map_or(1, |(k, _)| k.value() + 1);
    let mut refused = 0;
    let mut meta_value = Vec::new();
    for p in probes {
        let key = record_key(p);
        let previous: Option<DnsRecordState> = records
            .get(key.as_str())
            .at(path)?
            .and_then(|v| serde_json::from_slice(v.value()).ok());
        let owner = match &previous {
            Some(_) => meta
                .get(key.as_str())
                .at(path)?
                .map(|v| record_owner(v.value()).to_string())
                .unwrap_or_default(),
            None => {
                let owned = budget.owned.get(agent_id).copied().unwrap_or(0)
                    + budget.added.get(agent_id).copied().unwrap_or(0);
                if owned >= budget.cap {
                    refused += 1;
                    continue;
                }
                *budget.added.entry(agent_id.to_string()).or_default() += 1;
                agent_id.to_string()
            }
        };
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
                    recorded_unix_ms: budget.now_ms,
                };
                let json = serde_json::to_vec(&change).expect("changes serialize");
                changes.insert(next_id, json.as_slice()).at(path)?;
                by_target
                    .insert((reversed_name(&p.target).as_str(), next_id), ())
                    .at(path)?;
                next_id += 1;
                new_state(p)
            }
            None => new_state(p),
        };
        let json = serde_json::to_vec(&state).expect("record states serialize");
        records.insert(key.as_str(), json.as_slice()).at(path)?;
        encode_meta(budget.now_ms, &owner, &mut meta_value);
        meta.insert(key.as_str(), meta_value.as_slice()).at(path)?;
    }
    Ok(refused)
}

/// What one pruning round removed.
#[derive(Debug, Default)]
pub(super) struct DnsPruned {
    /// Records removed, per agent that created them.
    pub records_by_owner: HashMap<String, usize>,
    /// Records removed.
    pub records: u64,
    /// Changes removed.
    pub changes: u64,
}

/// Removes records no probe touched since `cutoff_ms` and changes recorded before it. Changes
/// are removed oldest first and the scan stops at the first newer one (ids follow recording
/// time), so a round reads only what it removes.
pub(super) fn prune(
    txn: &WriteTransaction,
    path: &Path,
    cutoff_ms: i64,
) -> Result<DnsPruned, StoreError> {
    let mut pruned = DnsPruned::default();
    {
        let mut meta = txn.open_table(DNS_RECORD_META).at(path)?;
        let mut stale = Vec::new();
        for entry in meta.iter().at(path)? {
            let (key, value) = entry.at(path)?;
            if record_seen_ms(value.value()) < cutoff_ms {
                stale.push((
                    key.value().to_string(),
                    record_owner(value.value()).to_string(),
                ));
            }
        }
        let mut records = txn.open_table(DNS_RECORDS).at(path)?;
        for (key, owner) in stale {
            meta.remove(key.as_str()).at(path)?;
            records.remove(key.as_str()).at(path)?;
            *pruned.records_by_owner.entry(owner).or_default() += 1;
            pruned.records += 1;
        }
    }
    let mut changes = txn.open_table(DNS_CHANGES).at(path)?;
    let mut by_target = txn.open_table(DNS_CHANGES_BY_TARGET).at(path)?;
    let mut old = Vec::new();
    for entry in changes.iter().at(path)? {
        let (id, value) = entry.at(path)?;
        let recorded = serde_json::from_slice::<DnsChange>(value.value())
            .map(|c| (recorded_ms(&c), c.target))
            .ok();
        match recorded {
            Some((ms, _)) if ms >= cutoff_ms => break,
            Some((_, target)) => old.push((id.value(), Some(target))),
            // Unreadable: nothing can show it; drop it with its neighbours.
            None => old.push((id.value(), None)),
        }
    }
    for (id, target) in old {
        changes.remove(id).at(path)?;
        if let Some(target) = target {
            by_target
                .remove((reversed_name(&target).as_str(), id))
                .at(path)?;
        }
        pruned.changes += 1;
    }
    Ok(pruned)
}

/// Brings an older store up to date: a meta entry for every record (owner unknown: counted
/// against no agent) and the target index of every change. Returns whether it wrote anything.
pub(super) fn migrate(
    txn: &WriteTransaction,
    path: &Path,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let mut wrote = false;
    {
        let records = txn.open_table(DNS_RECORDS).at(path)?;
        let mut meta = txn.open_table(DNS_RECORD_META).at(path)?;
        let records_len = records.len().at(path)?;
        if meta.len().at(path)? < records_len {
            let mut value = Vec::new();
            let mut missing = Vec::new();
            for entry in records.iter().at(path)? {
                let (key, _) = entry.at(path)?;
                if meta.get(key.value()).at(path)?.is_none() {
                    missing.push(key.value().to_string());
                }
            }
            for key in missing {
                encode_meta(now_ms, "", &mut value);
                meta.insert(key.as_str(), value.as_slice()).at(path)?;
                wrote = true;
            }
        }
    }
    let changes = txn.open_table(DNS_CHANGES).at(path)?;
    let mut by_target = txn.open_table(DNS_CHANGES_BY_TARGET).at(path)?;
    let changes_len = changes.len().at(path)?;
    if by_target.len().at(path)? < changes_len {
        for entry in changes.iter().at(path)? {
            let (id, value) = entry.at(path)?;
            if let Ok(change) = serde_json::from_slice::<DnsChange>(value.value()) {
                by_target
                    .insert((reversed_name(&change.target).as_str(), id.value()), ())
                    .at(path)?;
                wrote = true;
            }
        }
    }
    Ok(wrote)
}

/// Records each agent created (read at start-up and after a reopen).
pub(super) fn owned_records(
    db: &redb::Database,
    path: &Path,
) -> Result<HashMap<String, usize>, StoreError> {
    let read = db.begin_read().at(path)?;
    let meta = read.open_table(DNS_RECORD_META).at(path)?;
    let mut owned: HashMap<String, usize> = HashMap::new();
    for entry in meta.iter().at(path)? {
        let (_, value) = entry.at(path)?;
        let owner = record_owner(value.value());
        if !owner.is_empty() {
            *owned.entry(owner.to_string()).or_default() += 1;
        }
    }
    Ok(owned)
}

/// The newest changes first, at most `limit` (and [`MAX_DNS_CHANGES_PER_QUERY`], and about
/// [`MAX_DNS_CHANGES_QUERY_BYTES`]), only those whose target is `target` or a name below it
/// when given (`example.com` matches `_dmarc.example.com`). With a target, only the index
/// entries of that name and the names below it are read.
pub(super) fn changes(
    db: &redb::Database,
    path: &Path,
    limit: usize,
    target: Option<&str>,
) -> Result<Vec<DnsChange>, StoreError> {
    let limit = limit.min(MAX_DNS_CHANGES_PER_QUERY);
    let read = db.begin_read().at(path)?;
    let changes = read.open_table(DNS_CHANGES).at(path)?;
    let ids: Vec<u64> = match target {
        None => {
            let mut ids = Vec::with_capacity(limit);
            for entry in changes.iter().at(path)?.rev() {
                if ids.len() >= limit {
                    break;
                }
                ids.push(entry.at(path)?.0.value());
            }
            ids
        }
        Some(target) => {
            let index = read.open_table(DNS_CHANGES_BY_TARGET).at(path)?;
            let prefix = reversed_name(target);
            let end = prefix_end(&prefix);
            // The `limit` largest ids under the prefix (names below it interleave in time).
            let mut newest: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(limit + 1);
            for entry in index
                .range((prefix.as_str(), 0)..(end.as_str(), 0))
                .at(path)?
            {
                let (key, _) = entry.at(path)?;
                newest.push(Reverse(key.value().1));
                if newest.len() > limit {
                    newest.pop();
                }
            }
            let mut ids: Vec<u64> = newest.into_iter().map(|Reverse(id)| id).collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids
        }
    };
    let mut out = Vec::with_capacity(ids.len());
    let mut bytes = 0;
    for id in ids {
        let Some(value) = changes.get(id).at(path)? else {
            continue;
        };
        let value = value.value();
        if !out.is_empty() && bytes + value.len() > MAX_DNS_CHANGES_QUERY_BYTES {
            break;
        }
        bytes += value.len();
        let change: DnsChange = serde_json::from_slice(value).map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            source: super::CorruptRecord("dns change is not valid JSON"),
        })?;
        out.push(change);
    }
    Ok(out)
}

/// One stored DNS record set: the latest answer per (kind, target, server).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDnsRecord {
    pub kind: String,
    pub target: String,
    /// The server asked (empty: the agent's usual resolver).
    pub server: String,
    pub state: DnsRecordState,
}

/// Most records one [`records`] query returns.
pub const MAX_DNS_RECORDS_PER_QUERY: usize = 100_000;

/// The stored records of the probe kinds `kinds` (at most [`MAX_DNS_RECORDS_PER_QUERY`]); a
/// record that does not decode is skipped, not fatal.
pub(super) fn records(
    db: &redb::Database,
    path: &Path,
    kinds: &[&str],
) -> Result<Vec<StoredDnsRecord>, StoreError> {
    let read = db.begin_read().at(path)?;
    let table = read.open_table(DNS_RECORDS).at(path)?;
    let mut out = Vec::new();
    for kind in kinds {
        let start = format!("{kind}\0");
        let end = format!("{kind}\u{1}");
        for entry in table.range(start.as_str()..end.as_str()).at(path)? {
            if out.len() >= MAX_DNS_RECORDS_PER_QUERY {
                return Ok(out);
            }
            let (key, value) = entry.at(path)?;
            let mut parts = key.value().splitn(3, '\0');
            let (Some(k), Some(target), Some(server)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(state) = serde_json::from_slice::<DnsRecordState>(value.value()) else {
                continue;
            };
            out.push(StoredDnsRecord {
                kind: k.to_owned(),
                target: target.to_owned(),
                server: server.to_owned(),
                state,
            });
        }
    }
    Ok(out)
}

fn record_key(p: &IngestProbe) -> String {
    format!("{}\0{}\0{}", p.kind, p.target, p.server)
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

fn recorded_ms(change: &DnsChange) -> i64 {
    if change.recorded_unix_ms > 0 {
        change.recorded_unix_ms
    } else {
        change.at_unix_ms
    }
}

fn encode_meta(seen_ms: i64, owner: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seen_ms.to_le_bytes());
    out.extend_from_slice(owner.as_bytes());
}

fn record_seen_ms(meta: &[u8]) -> i64 {
    meta.get(..8)
        .map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn record_owner(meta: &[u8]) -> &str {
    meta.get(8..)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// `_dmarc.Example.com.` → `com.example._dmarc.`: a name and the names below it share the
/// prefix of its reversed form.
pub(super) fn reversed_name(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut out = String::with_capacity(name.len() + 1);
    for label in name.rsplit('.') {
        out.push_str(label);
        out.push('.');
    }
    out
}

/// The first string after every string starting with `prefix` (which ends with `.`).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    end.pop();
    // '/' is the character after '.'.
    end.push('/');
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_and_the_names_below_it_share_a_prefix() {
        let domain = reversed_name("Example.com.");
        assert_eq!(domain, "com.example.");
        for below in ["example.com", "_dmarc.example.com", "a.b.example.com"] {
            let name = reversed_name(below);
            assert!(
                name.starts_with(&domain) && name.as_str() < prefix_end(&domain).as_str(),
                "{below}"
            );
        }
        for other in ["notexample.com", "example.co", "example.com.evil"] {
            let name = reversed_name(other);
            assert!(!name.starts_with(&domain), "{other}");
        }
    }
}
