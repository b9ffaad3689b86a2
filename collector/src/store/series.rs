//! Series interning: canonical key (metric + sorted labels) → dense [`SeriesId`], with a quota
//! per owner (the host an agent said Hello as) and expiry.
//!
//! Ingest handlers resolve ids themselves (a read lock per batch, no allocation for known
//! series); the store writer persists the definitions of new ids in the same transaction as the
//! first batch that uses them, so ids are stable across restarts.
//!
//! Quotas: an owner's first `max_series_per_owner` series are its own. Past that, a new label set
//! is folded into its metric's *other* series — same metric and label names, every value but
//! `host` replaced by `other` — so sums over the metric stay exact; an owner may create at most
//! `max_other_series_per_owner` such series, and `max_series` bounds the whole table as a last
//! resort. One agent minting label sets therefore fills its own quota, never the fleet's.
//!
//! Expiry: the writer retires series not written within the retention (their key is forgotten,
//! the generation moves on so per-stream caches start over), and frees their ids for reuse one
//! round later, once no batch decoded before the retirement can still be in flight.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::model::{MetricKind, SeriesDef, SeriesId};

/// The label value of folded label sets (the agent's own top-K uses the same word).
pub const OTHER_LABEL_VALUE: &str = "other";

/// The interning table, shared by ingest handlers and the store writer.
#[derive(Debug)]
pub struct SeriesRegistry {
    index: RwLock<SeriesIndex>,
    limits: SeriesLimits,
    /// Bumped whenever a key stops resolving to its id (expiry); see [`Self::generation`].
    generation: AtomicU64,
}

/// How many series the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Live series in total (the last resort: past it, new series are refused).
    pub max_series: usize,
    /// Series one owner may create before its new label sets fold into `other` series.
    pub max_series_per_owner: usize,
    /// `other` series one owner may create on top of its quota.
    pub max_other_series_per_owner: usize,
}

impl SeriesLimits {
    /// At most `max_series` in total, no quota per owner.
    pub fn total(max_series: usize) -> Self {
        Self {
            max_series,
            max_series_per_owner: usize::MAX,
            max_other_series_per_owner: usize::MAX,
        }
    }
}

/// The table itself; read through [`SeriesRegistry::read`].
#[derive(Debug, Default)]
pub struct SeriesIndex {
    by_key: HashMap<Box<[u8]>, SeriesId, KeyHasher>,
    defs: Vec<Arc<SeriesDef>>,
    slots: Vec<Slot>,
    metric_kinds: HashMap<Box<str>, MetricUse>,
    owners: HashMap<Arc<str>, OwnerUse>,
    /// Ids freed by expiry, reused before new ones.
    free: Vec<SeriesId>,
    live: usize,
    /// Ids whose definition the writer has not persisted yet, in creation order.
    unpersisted: Vec<SeriesId>,
}

/// What the registry knows of one id besides its definition.
#[derive(Debug, Clone)]
struct Slot {
    owner: Arc<str>,
    state: SlotState,
    /// An `other` series (counts against `max_other_series_per_owner`).
    other: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Live,
    /// Expired: the key no longer resolves here; a late sample may still reinstate it.
    Retired,
    /// On the free list.
    Free,
}

#[derive(Debug, Clone, Copy)]
struct MetricUse {
    kind: MetricKind,
    live_series: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct OwnerUse {
    series: usize,
    other_series: usize,
    folded: u64,
}

/// Series counts of one owner, for exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSeries {
    /// The owner (the host its agent said Hello as).
    pub owner: Arc<str>,
    /// Live series it created (its quota counts these).
    pub series: usize,
    /// Live `other` series it created.
    pub other_series: usize,
    /// Label sets folded into an `other` series since start (once per stream that sent them).
    pub folded: u64,
}

/// A definition the writer has to persist.
#[derive(Debug, Clone)]
pub struct NewSeries {
    /// Its id.
    pub id: SeriesId,
    /// Its definition.
    pub def: Arc<SeriesDef>,
    /// Who created it.
    pub owner: Arc<str>,
    /// Whether it is an `other` series.
    pub other: bool,
}

/// Why a new series was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InternError {
    /// The metric already exists with another kind.
    #[error("metric {metric} is a {existing:?}, not a {requested:?}")]
    KindConflict {
        /// Metric name.
        metric: String,
        /// Kind it was first seen with.
        existing: MetricKind,
        /// Kind of the refused sample.
        requested: MetricKind,
    },
    /// `max_series` reached, or the owner's quota and its `other` series are used up.
    #[error("series limit of {0} reached")]
    TooManySeries(usize),
}

impl SeriesIndex {
    /// Id of the series with canonical key `key` (see [`series_key`]).
    pub fn get(&self, key: &[u8]) -> Option<SeriesId> {
        self.by_key.get(key).copied()
    }

    /// Definition of `id` (of an expired id: its last definition).
    pub fn def(&self, id: SeriesId) -> &Arc<SeriesDef> {
        &self.defs[id.index()]
    }

    /// Number of ids handed out (live, expired and free ones).
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// True when no id was handed out.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Live series.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Whether `id` is a live series (not expired, not free).
    pub fn is_live(&self, id: SeriesId) -> bool {
        self.slots
            .get(id.index())
            .is_some_and(|s| s.state == SlotState::Live)
    }

    fn owner_mut(&mut self, owner: &str) -> (Arc<str>, &mut OwnerUse) {
        let name = match self.owners.get_key_value(owner) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = owner.into();
                self.owners.insert(name.clone(), OwnerUse::default());
                name
            }
        };
        let usage = self.owners.get_mut(owner).expect("inserted above");
        (name, usage)
    }

    /// Puts a new live series at `id` (a free id, or the next one).
    fn insert(
        &mut self,
        id: SeriesId,
        key: &[u8],
        def: Arc<SeriesDef>,
        owner: Arc<str>,
        other: bool,
    ) {
        let i = id.index();
        if i >= self.defs.len() {
            let placeholder = def.clone();
            self.defs.resize(i + 1, placeholder);
            self.slots.resize(
                i + 1,
                Slot {
                    owner: owner.clone(),
                    state: SlotState::Free,
                    other: false,
                },
            );
        }
        self.count(&def, &owner, other, 1);
        self.by_key.insert(key.into(), id);
        self.defs[i] = def;
        self.slots[i] = Slot {
            owner,
            state: SlotState::Live,
            other,
        };
        self.live += 1;
    }

    /// Adds `delta` (±1) to the counts a live series contributes to.
    fn count(&mut self, def: &SeriesDef, owner: &str, other: bool, delta: isize) {
        let metric = self
            .metric_kinds
            .entry(def.metric.clone())
            .or_insert(MetricUse {
                kind: def.kind,
                live_series: 0,
            });
        metric.live_series = metric.live_series.saturating_add_signed(delta);
        if metric.live_series == 0 {
            self.metric_kinds.remove(&def.metric);
        }
        let (_, usage) = self.owner_mut(owner);
        if other {
            usage.other_series = usage.other_series.saturating_add_signed(delta);
        } else {
            usage.series = usage.series.saturating_add_signed(delta);
        }
        if usage.series == 0 && usage.other_series == 0 && usage.folded == 0 {
            self.owners.remove(owner);
        }
    }

    fn next_id(&mut self) -> SeriesId {
        self.free.pop().unwrap_or(SeriesId(self.defs.len() as u32))
    }
}

impl SeriesRegistry {
    /// An empty registry refusing more than `max_series` series, without quotas per owner.
    pub fn new(max_series: usize) -> Self {
        Self::with_limits(SeriesLimits::total(max_series))
    }

    /// An empty registry with these limits.
    pub fn with_limits(limits: SeriesLimits) -> Self {
        Self {
            index: RwLock::new(SeriesIndex::default()),
            limits,
            generation: AtomicU64::new(0),
        }
    }

    /// Read access for resolving many samples under one lock.
    pub fn read(&self) -> RwLockReadGuard<'_, SeriesIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SeriesIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever a key that resolved to an id stops doing so (expiry): whoever caches
    /// key → id (a stream's decoder, the analyzer's routes) starts over when it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Returns the id of `key` for a sample `owner` sent, creating the series from `def` if it
    /// is new — or, past the owner's quota (or `max_series`), the id of the metric's `other`
    /// series (see the module doc).
    pub fn intern(&self, owner: &str, key: &[u8], def: SeriesDef) -> Result<SeriesId, InternError> {
        let mut index = self.write();
        if let Some(id) = index.get(key) {
            return Ok(id);
        }
        if let Some(existing) = index.metric_kinds.get(&def.metric)
            && existing.kind != def.kind
        {
            return Err(InternError::KindConflict {
                metric: def.metric.into(),
                existing: existing.kind,
                requested: def.kind,
            });
        }
        let limits = self.limits;
        let (owner, usage) = index.owner_mut(owner);
        let own_quota_left = usage.series < limits.max_series_per_owner;
        if own_quota_left && index.live < limits.max_series {
            let id = index.next_id();
            index.insert(id, key, Arc::new(def), owner, false);
            index.unpersisted.push(id);
            return Ok(id);
        }
        // Folded into the metric's `other` series.
        let other = other_def(&def);
        let mut other_key = Vec::with_capacity(key.len());
        series_key(
            &other.metric,
            other.labels.iter().map(|(n, v)| (&**n, &**v)),
            &mut other_key,
        );
        let found = index.get(&other_key);
        let (_, usage) = index.owner_mut(&owner);
        let others_left = usage.other_series < limits.max_other_series_per_owner;
        let id = match found {
            Some(id) => id,
            None if others_left && index.live < limits.max_series => {
                let id = index.next_id();
                index.insert(id, &other_key, Arc::new(other), owner.clone(), true);
                index.unpersisted.push(id);
                id
            }
            None => return Err(InternError::TooManySeries(limits.max_series)),
        };
        let (_, usage) = index.owner_mut(&owner);
        usage.folded += 1;
        Ok(id)
    }

    /// Re-creates a persisted series at startup.
    pub(crate) fn restore(&self, id: SeriesId, def: SeriesDef, owner: &str, other: bool) {
        let mut key = Vec::new();
        series_key(
            &def.metric,
            def.labels.iter().map(|(n, v)| (&**n, &**v)),
            &mut key,
        );
        let mut index = self.write();
        let owner = index.owner_mut(owner).0;
        index.insert(id, &key, Arc::new(def), owner, other);
    }

    /// After the persisted series are restored: ids below the highest one that no series holds
    /// go on the free list.
    pub(crate) fn restore_done(&self) {
        let mut index = self.write();
        let holes: Vec<SeriesId> = (0..index.slots.len())
            .filter(|&i| index.slots[i].state == SlotState::Free)
            .map(|i| SeriesId(i as u32))
            .rev()
            .collect();
        index.free = holes;
    }

    /// Series the writer has not persisted yet, in creation order.
    pub(crate) fn unpersisted(&self) -> Vec<NewSeries> {
        let index = self.read();
        index
            .unpersisted
            .iter()
            .map(|&id| NewSeries {
                id,
                def: index.defs[id.index()].clone(),
                owner: index.slots[id.index()].owner.clone(),
                other: index.slots[id.index()].other,
            })
            .collect()
    }

    /// The first `n` of [`Self::unpersisted`] are durable now.
    pub(crate) fn mark_persisted(&self, n: usize) {
        let mut index = self.write();
        let n = n.min(index.unpersisted.len());
        index.unpersisted.drain(..n);
    }

    /// Live series of `ids` that are persisted and may expire (the writer's candidates).
    pub(crate) fn expirable(&self, ids: impl IntoIterator<Item = SeriesId>) -> Vec<SeriesId> {
        let index = self.read();
        let unpersisted: std::collections::HashSet<SeriesId> =
            index.unpersisted.iter().copied().collect();
        ids.into_iter()
            .filter(|&id| index.is_live(id) && !unpersisted.contains(&id))
            .collect()
    }

    /// After a reload from disk: live series missing from `on_disk` are persisted again.
    pub(crate) fn persist_again_unless(&self, on_disk: &[SeriesId]) {
        let mut index = self.write();
        let known: std::collections::HashSet<SeriesId> = on_disk
            .iter()
            .chain(index.unpersisted.iter())
            .copied()
            .collect();
        let missing: Vec<SeriesId> = (0..index.slots.len())
            .map(|i| SeriesId(i as u32))
            .filter(|id| index.is_live(*id) && !known.contains(id))
            .collect();
        index.unpersisted.extend(missing);
    }

    /// Expires live series: their keys stop resolving (the generation moves on) and they stop
    /// counting against quotas. Their definitions stay until [`Self::free`].
    pub(crate) fn retire(&self, ids: &[SeriesId]) {
        if ids.is_empty() {
            return;
        }
        let mut index = self.write();
        let mut key = Vec::new();
        for &id in ids {
            if !index.is_live(id) {
                continue;
            }
            let def = index.defs[id.index()].clone();
            let Slot { owner, other, .. } = index.slots[id.index()].clone();
            series_key(
                &def.metric,
                def.labels.iter().map(|(n, v)| (&**n, &**v)),
                &mut key,
            );
            if index.by_key.get(key.as_slice()) == Some(&id) {
                index.by_key.remove(key.as_slice());
            }
            index.count(&def, &owner, other, -1);
            index.slots[id.index()].state = SlotState::Retired;
            index.live -= 1;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A sample for a retired series arrived (decoded just before the expiry): the id it should
    /// count for — the same id made live again, or the id its key has meanwhile.
    pub(crate) fn reinstate(&self, id: SeriesId) -> SeriesId {
        let mut index = self.write();
        match index.slots.get(id.index()).map(|s| s.state) {
            Some(SlotState::Retired) => {}
            _ => return id,
        }
        let def = index.defs[id.index()].clone();
        let mut key = Vec::new();
        series_key(
            &def.metric,
            def.labels.iter().map(|(n, v)| (&**n, &**v)),
            &mut key,
        );
        if let Some(current) = index.get(&key) {
            return current;
        }
        let Slot { owner, other, .. } = index.slots[id.index()].clone();
        index.insert(id, &key, def, owner, other);
        index.unpersisted.push(id);
        id
    }

    /// Retired series become free ids (reused by later series).
    pub(crate) fn free(&self, ids: &[SeriesId]) {
        let mut index = self.write();
        for &id in ids {
            if let Some(slot) = index.slots.get_mut(id.index())
                && slot.state == SlotState::Retired
            {
                slot.state = SlotState::Free;
                index.free.push(id);
            }
        }
        // Whoever cached routes per id (the analyzer) must not carry them to the next series.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// All definitions, indexed by id (expired and free ids keep their last one).
    pub fn all(&self) -> Vec<Arc<SeriesDef>> {
        self.read().defs.clone()
    }

    /// Series counts per owner, sorted by owner.
    pub fn owners(&self) -> Vec<OwnerSeries> {
        let index = self.read();
        let mut out: Vec<OwnerSeries> = index
            .owners
            .iter()
            .map(|(owner, usage)| OwnerSeries {
                owner: owner.clone(),
                series: usage.series,
                other_series: usage.other_series,
                folded: usage.folded,
            })
            .collect();
        out.sort_by(|a, b| a.owner.cmp(&b.owner));
        out
    }
}

/// The `other` series a label set folds into: same metric, kind and bounds, every label value
/// but `host` replaced by [`OTHER_LABEL_VALUE`].
fn other_def(def: &SeriesDef) -> SeriesDef {
    SeriesDef {
        metric: def.metric.clone(),
        labels: def
            .labels
            .iter()
            .map(|(name, value)| {
                let value = if &**name == "host" {
                    value.clone()
                } else {
                    OTHER_LABEL_VALUE.into()
                };
                (name.clone(), value)
            })
            .collect(),
        kind: def.kind,
        bounds: def.bounds.clone(),
    }
}

/// Hashing for series keys on the ingest hot path: a word-at-a-time multiply-rotate hash (as
/// rustc's FxHash) seeded per process, several times faster than SipHash on 100–200 byte keys.
/// Keys come from authenticated agents only, and the seed keeps collisions unpredictable.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    seed: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x6d61_696c_7075_6c73_u64));
        Self { seed }
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = WordHasher;

    fn build_hasher(&self) -> WordHasher {
        WordHasher { hash: self.seed }
    }
}

/// The hasher of [`KeyHasher`].
#[derive(Debug, Clone, Copy)]
pub struct WordHasher {
    hash: u64,
}

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Final mix so the top bits (SwissTable's control byte) depend on every input bit.
        let h = self.hash ^ (self.hash >> 29);
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

/// Writes the canonical key of a series into `out` (cleared first): metric, then per label
/// (already sorted by name) the name, a 0 byte, the value length (u16) and the value. Names
/// cannot contain 0 bytes, values are length-prefixed, so distinct series never share a key.
pub fn series_key<'a>(
    metric: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(metric.as_bytes());
    for (name, value) in labels {
        out.push(0);
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(metric: &str, kind: MetricKind) -> SeriesDef {
        SeriesDef {
            metric: metric.into(),
            labels: Box::new([]),
            kind,
            bounds: Box::new([]),
        }
    }

    /// A counter `metric{domain, host}` and its key.
    fn labelled(metric: &str, domain: &str, host: &str) -> (Vec<u8>, SeriesDef) {
        let mut key = Vec::new();
        series_key(metric, [("domain", domain), ("host", host)], &mut key);
        let def = SeriesDef {
            metric: metric.into(),
            labels: vec![
                ("domain".into(), domain.into()),
                ("host".into(), host.into()),
            ]
            .into(),
            kind: MetricKind::Counter,
            bounds: Box::new([]),
        };
        (key, def)
    }

    #[test]
    fn interning_is_stable_and_kinds_are_fixed_per_metric() {
        let registry = SeriesRegistry::new(2);
        let mut key = Vec::new();
        series_key("sent", [("host", "a")], &mut key);
        let id = registry
            .intern("a", &key, def("sent", MetricKind::Counter))
            .expect("new series");
        assert_eq!(
            registry.intern("a", &key, def("sent", MetricKind::Counter)),
            Ok(id)
        );
        assert_eq!(registry.read().get(&key), Some(id));

        series_key("sent", [("host", "b")], &mut key);
        assert!(matches!(
            registry.intern("b", &key, def("sent", MetricKind::Gauge)),
            Err(InternError::KindConflict { .. })
        ));
        registry
            .intern("b", &key, def("sent", MetricKind::Counter))
            .expect("second series");
        series_key("sent", [("host", "c")], &mut key);
        assert_eq!(
            registry.intern("c", &key, def("sent", MetricKind::Counter)),
            Err(InternError::TooManySeries(2))
        );
    }

    #[test]
    fn one_owner_minting_a_million_series_leaves_room_for_the_others() {
        let registry = SeriesRegistry::with_limits(SeriesLimits {
            max_series: 1_000_000,
            max_series_per_owner: 50_000,
            max_other_series_per_owner: 3,
        });
        let mut ids = std::collections::HashSet::new();
        for i in 0..1_000_000 {
            let (key, def) = labelled("sent", &format!("d{i}.test"), "mx1");
            ids.insert(registry.intern("mx1", &key, def).expect("own or folded"));
        }
        // 50 000 own series and one `other` series hold every label set.
        assert_eq!(ids.len(), 50_001);
        let (other_key, _) = labelled("sent", OTHER_LABEL_VALUE, "mx1");
        let other = registry
            .read()
            .get(&other_key)
            .expect("other series exists");
        assert!(ids.contains(&other));
        assert_eq!(
            registry.read().def(other).label("domain"),
            Some(OTHER_LABEL_VALUE)
        );
        // Another owner still creates series of its own.
        let (key, def) = labelled("sent", "a.test", "mx2");
        let id = registry.intern("mx2", &key, def).expect("mx2's new series");
        assert!(!ids.contains(&id));
        // Past its `other` series too, the owner is refused; the others are not.
        for metric in ["deferred", "bounced"] {
            let (key, def) = labelled(metric, "x.test", "mx1");
            registry
                .intern("mx1", &key, def)
                .expect("second and third `other`");
        }
        let (key, def) = labelled("expired", "x.test", "mx1");
        assert!(matches!(
            registry.intern("mx1", &key, def),
            Err(InternError::TooManySeries(_))
        ));
        let (key, def) = labelled("expired", "x.test", "mx2");
        registry.intern("mx2", &key, def).expect("mx2 unaffected");
        let owners = registry.owners();
        assert_eq!(owners[0].owner.as_ref(), "mx1");
        assert_eq!(
            (owners[0].series, owners[0].other_series),
            (50_000, 3),
            "{owners:?}"
        );
        assert_eq!(owners[0].folded, 1_000_000 - 50_000 + 2);
    }

    #[test]
    fn expired_series_are_forgotten_and_their_ids_reused() {
        let registry = SeriesRegistry::with_limits(SeriesLimits {
            max_series: 10,
            max_series_per_owner: 3,
            max_other_series_per_owner: 1,
        });
        let (a, a_def) = labelled("sent", "a.test", "mx1");
        let (b, b_def) = labelled("sent", "b.test", "mx1");
        let id_a = registry.intern("mx1", &a, a_def.clone()).expect("a");
        let id_b = registry.intern("mx1", &b, b_def.clone()).expect("b");
        assert_eq!(registry.unpersisted().len(), 2);
        registry.mark_persisted(2);
        assert_eq!(registry.expirable([id_a, id_b]), vec![id_a, id_b]);

        let generation = registry.generation();
        registry.retire(&[id_a]);
        assert_ne!(registry.generation(), generation, "caches must start over");
        assert_eq!(registry.read().get(&a), None);
        assert!(!registry.read().is_live(id_a));
        // The quota counts live series only: a new label set is the owner's own again.
        let (c, c_def) = labelled("sent", "c.test", "mx1");
        let id_c = registry.intern("mx1", &c, c_def).expect("c");
        assert_ne!(id_c, id_a, "a retired id is not reused before it is freed");
        // A late sample of `a` (decoded before the expiry) reinstates it…
        assert_eq!(registry.reinstate(id_a), id_a);
        assert_eq!(registry.read().get(&a), Some(id_a));
        // A late sample for a retired series whose key came back under another id counts there.
        registry.retire(&[id_b]);
        let id_b2 = registry.intern("mx1", &b, b_def).expect("b again");
        assert_ne!(id_b2, id_b);
        assert_eq!(registry.reinstate(id_b), id_b2);
        // Once freed, a retired id goes to the next new series.
        registry.retire(&[id_a]);
        registry.free(&[id_a, id_b]);
        let (d, d_def) = labelled("sent", "d.test", "mx1");
        let id_d = registry.intern("mx1", &d, d_def).expect("d");
        assert!([id_a, id_b].contains(&id_d), "a freed id is reused");
        assert_eq!(registry.read().def(id_d).label("domain"), Some("d.test"));
    }

    #[test]
    fn keys_do_not_collide_across_label_boundaries() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        series_key("m", [("a", "x\0b")], &mut a);
        series_key("m", [("a", "x"), ("b", "")], &mut b);
        assert_ne!(a, b);
    }
}
