//! Contributions to stored windows since the last fold, held in memory until the writer folds
//! them into the `points` table.
//!
//! Memory follows what the batches carried, whatever windows they name: a window is a sparse
//! map (series id → aggregate) until it holds a good share of the id space — what an agent
//! reporting every series each window produces — and only then a vector indexed by id, the fast
//! path of normal traffic. A batch of one series in 40 000 windows costs 40 000 entries, not
//! 40 000 vectors over every series id.

use std::collections::HashMap;

use super::aggregate::{Aggregate, ValueRef};
use super::series::KeyHasher;

/// A sparse window turns dense once its entries are at least this share of the vector it
/// would need (1 / 4): a dense window never costs more than four slots per entry.
const DENSE_SLOTS_PER_ENTRY: usize = 4;
/// Windows with fewer entries stay sparse whatever their ids.
const MIN_DENSE_ENTRIES: usize = 64;

/// Per stored window, the new contributions of each series.
#[derive(Debug, Default)]
pub(super) struct PendingPoints {
    windows: Vec<(i64, WindowPoints)>,
    /// Window start → position in `windows`.
    positions: HashMap<i64, usize, KeyHasher>,
    /// Position of the window touched last (samples come in runs of one window).
    last: usize,
    entries: usize,
}

#[derive(Debug)]
enum WindowPoints {
    Sparse {
        map: HashMap<u32, Aggregate, KeyHasher>,
        /// Highest id in `map`.
        max: u32,
    },
    Dense {
        values: Vec<Aggregate>,
        entries: usize,
    },
}

impl PendingPoints {
    /// Adds a sample of `series` from agent window `window_start_ms` to stored window `window`.
    pub(super) fn add(&mut self, window: i64, series: u32, window_start_ms: i64, value: ValueRef) {
        let position = self.position(window);
        let points = &mut self.windows[position].1;
        let (aggregate, new) = points.entry(series);
        aggregate.apply(window_start_ms, value);
        if new {
            self.entries += 1;
        }
    }

    /// No contributions pending.
    pub(super) fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// (window, series) pairs pending.
    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    /// Every window with its contributions sorted by series id, oldest window first.
    pub(super) fn sorted(&self) -> Vec<(i64, Vec<(u32, &Aggregate)>)> {
        let mut out: Vec<(i64, Vec<(u32, &Aggregate)>)> = self
            .windows
            .iter()
            .map(|(window, points)| (*window, points.sorted()))
            .collect();
        out.sort_unstable_by_key(|(window, _)| *window);
        out
    }

    /// Forgets everything (after a fold).
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    fn position(&mut self, window: i64) -> usize {
        if self
            .windows
            .get(self.last)
            .is_some_and(|(w, _)| *w == window)
        {
            return self.last;
        }
        let next = self.windows.len();
        let position = *self.positions.entry(window).or_insert(next);
        if position == next {
            self.windows
                .push((window, WindowPoints::sparse(HashMap::default())));
        }
        self.last = position;
        position
    }
}

impl WindowPoints {
    /// The aggregate of `series` (Empty if new) and whether it is new.
    fn entry(&mut self, series: u32) -> (&mut Aggregate, bool) {
        let i = series as usize;
        match self {
            // A far id would stretch the vector past its share: back to sparse.
            WindowPoints::Dense { values, entries }
                if i >= values.len() && (*entries + 1) * DENSE_SLOTS_PER_ENTRY < i + 1 =>
            {
                self.make_sparse()
            }
            WindowPoints::Sparse { map, max }
                if !map.contains_key(&series)
                    && map.len() + 1 >= MIN_DENSE_ENTRIES
                    && (map.len() + 1) * DENSE_SLOTS_PER_ENTRY > (*max).max(series) as usize =>
            {
                self.make_dense()
            }
            _ => {}
        }
        match self {
            WindowPoints::Dense { values, entries } => {
                if i >= values.len() {
                    values.resize(i + 1, Aggregate::Empty);
                }
                let new = values[i] == Aggregate::Empty;
                if new {
                    *entries += 1;
                }
                (&mut values[i], new)
            }
            WindowPoints::Sparse { map, max } => {
                *max = (*max).max(series);
                let new = !map.contains_key(&series);
                (map.entry(series).or_insert(Aggregate::Empty), new)
            }
        }
    }

    fn sparse(map: HashMap<u32, Aggregate, KeyHasher>) -> Self {
        let max = map.keys().copied().max().unwrap_or(0);
        WindowPoints::Sparse { map, max }
    }

    fn make_dense(&mut self) {
        let WindowPoints::Sparse { map, max } = self else {
            return;
        };
        let len = *max as usize + 1;
        let mut values = vec![Aggregate::Empty; len];
        let entries = map.len();
        for (series, aggregate) in map.drain() {
            values[series as usize] = aggregate;
        }
        *self = WindowPoints::Dense { values, entries };
    }

    fn make_sparse(&mut self) {
        let WindowPoints::Dense { values, .. } = self else {
            return;
        };
        let map = std::mem::take(values)
            .into_iter()
            .enumerate()
            .filter(|(_, a)| *a != Aggregate::Empty)
            .map(|(i, a)| (i as u32, a))
            .collect();
        *self = WindowPoints::sparse(map);
    }

    fn sorted(&self) -> Vec<(u32, &Aggregate)> {
        match self {
            WindowPoints::Dense { values, .. } => values
                .iter()
                .enumerate()
                .filter(|(_, a)| **a != Aggregate::Empty)
                .map(|(i, a)| (i as u32, a))
                .collect(),
            WindowPoints::Sparse { map, .. } => {
                let mut out: Vec<(u32, &Aggregate)> = map.iter().map(|(&s, a)| (s, a)).collect();
                out.sort_unstable_by_key(|(series, _)| *series);
                out
            }
        }
    }
}

/// Merges sorted new contributions into a sorted stored chunk.
pub(super) fn merge_chunk<'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(pending: &PendingPoints) -> Vec<(i64, Vec<(u32, Aggregate)>)> {
        pending
            .sorted()
            .into_iter()
            .map(|(w, entries)| {
                (
                    w,
                    entries.into_iter().map(|(s, a)| (s, a.clone())).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn sparse_and_dense_windows_hold_the_same_sums() {
        let mut pending = PendingPoints::default();
        // Window 0: every series (turns dense); window 1: two far apart (stays sparse).
        for round in 0..2 {
            for series in 0..1000 {
                pending.add(0, series, 0, ValueRef::Counter(1.0 + f64::from(round)));
            }
        }
        pending.add(300, 5, 300, ValueRef::Counter(1.0));
        pending.add(300, 999_999, 300, ValueRef::Counter(2.0));
        // A dense window asked for a far id goes back to sparse instead of stretching.
        pending.add(0, 4_000_000, 0, ValueRef::Counter(7.0));
        assert_eq!(pending.entries(), 1003);
        let sorted = totals(&pending);
        assert_eq!(sorted.len(), 2);
        assert_eq!(sorted[0].1.len(), 1001);
        assert!(
            sorted[0].1[..1000]
                .iter()
                .all(|(_, a)| *a == Aggregate::Counter(3.0))
        );
        assert_eq!(sorted[0].1[1000], (4_000_000, Aggregate::Counter(7.0)));
        assert_eq!(
            sorted[1].1,
            vec![
                (5, Aggregate::Counter(1.0)),
                (999_999, Aggregate::Counter(2.0))
            ]
        );
        match &pending.windows[pending.positions[&0]].1 {
            WindowPoints::Sparse { map, .. } => assert_eq!(map.len(), 1001),
            WindowPoints::Dense { .. } => panic!("a far id must not stretch a dense window"),
        }
        pending.clear();
        assert!(pending.is_empty());
    }
}
