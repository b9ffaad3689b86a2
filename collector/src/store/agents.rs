//! Dedupe high-water marks per agent incarnation.
//!
//! An agent's seq numbers count per incarnation (a random id of its state, sent in Hello): an
//! agent whose state was wiped starts again at seq 1 under a new incarnation, and those batches
//! must not be taken for resends. The registry entry keeps the mark of the current incarnation
//! and of a few earlier ones (a stream of an earlier incarnation still open, a state restored
//! from a backup), not all of them. Agents that send no incarnation all share the empty one,
//! which behaves as a single mark per agent.

use crate::model::{AgentRecord, IncarnationSeq};

/// Incarnations whose high-water mark one agent entry keeps, the current one included.
pub(super) const KEPT_INCARNATIONS: usize = 4;

/// A Hello naming `incarnation`: it becomes the current one, with its own mark (0 when new,
/// the kept one when it comes back).
pub(super) fn say_hello(record: &mut AgentRecord, incarnation: &str) {
    if record.incarnation == incarnation {
        return;
    }
    let restored = record
        .earlier_incarnations
        .iter()
        .position(|e| e.incarnation == incarnation)
        .map(|i| record.earlier_incarnations.remove(i).applied_seq)
        .unwrap_or(0);
    let previous = IncarnationSeq {
        incarnation: std::mem::take(&mut record.incarnation),
        applied_seq: record.applied_seq,
    };
    // A brand-new entry's empty incarnation has nothing worth keeping.
    if !(previous.incarnation.is_empty() && previous.applied_seq == 0) {
        record.earlier_incarnations.insert(0, previous);
        record
            .earlier_incarnations
            .truncate(KEPT_INCARNATIONS.saturating_sub(1));
    }
    record.incarnation = incarnation.to_string();
    record.applied_seq = restored;
}

/// The high-water mark a batch sent under `incarnation` is judged against. An incarnation no
/// longer kept (more newer ones said Hello since its stream opened) becomes current again with
/// a fresh mark.
pub(super) fn high_water<'a>(record: &'a mut AgentRecord, incarnation: &str) -> &'a mut u64 {
    if record.incarnation != incarnation {
        match record
            .earlier_incarnations
            .iter()
            .position(|e| e.incarnation == incarnation)
        {
            Some(i) => return &mut record.earlier_incarnations[i].applied_seq,
            None => say_hello(record, incarnation),
        }
    }
    &mut record.applied_seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_incarnation_counts_its_own_seq_and_only_a_few_are_kept() {
        let mut record = AgentRecord::default();
        say_hello(&mut record, "");
        *high_water(&mut record, "") = 7;
        assert!(record.earlier_incarnations.is_empty());
        say_hello(&mut record, "a");
        assert_eq!((record.incarnation.as_str(), record.applied_seq), ("a", 0));
        *high_water(&mut record, "a") = 3;
        // A stream of the old incarnation still open keeps its own mark.
        assert_eq!(*high_water(&mut record, ""), 7);
        for id in ["b", "c", "d", "e"] {
            say_hello(&mut record, id);
            *high_water(&mut record, id) = 1;
        }
        assert_eq!(record.earlier_incarnations.len(), KEPT_INCARNATIONS - 1);
        assert_eq!(record.earlier_incarnations[0].incarnation, "d");
        // "a" is no longer kept: it starts over.
        say_hello(&mut record, "a");
        assert_eq!(record.applied_seq, 0);
        // "d" comes back with its mark.
        say_hello(&mut record, "d");
        assert_eq!(record.applied_seq, 1);
    }
}
