//! Signals decided in one partition, by (issuer, id), for duplicate detection. Kept per
//! partition rather than inside each subject's record: a subject receiving thousands of
//! signals used to rewrite (and re-serialise, ~100 KB) its whole changelog record per signal
//! because the record carried every signal seen within the dedup window; now each signal
//! writes one small record of its own (`changelog::seen_key`). It also catches a redelivery
//! that names another subject, as long as it lands in the same partition.

use super::{CommandId, Mark, Seen};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// At most this many signals are remembered per partition; the oldest go first.
pub const MAX_PER_PARTITION: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SeenSet {
    /// What a replay check and eviction need of each entry (the entry's time is only
    /// written to the changelog): 32 bytes a slot rather than 56, with one entry per signal
    /// for the whole dedup window.
    by_key: HashMap<CommandId, Remembered>,
    /// Keys in the order they were first recorded, for eviction.
    order: VecDeque<CommandId>,
}

#[derive(Debug, Clone, Copy)]
struct Remembered {
    offset: i64,
    until: i64,
}

impl SeenSet {
    /// The offset at which the signal with this key was first decided, when that was before
    /// `o`: a later read of the same signal is a duplicate; the record at `o` itself (a
    /// re-read after a crash) is not.
    pub fn first_seen(&self, key: &[u8; 16], o: i64) -> Option<i64> {
        self.by_key
            .get(&CommandId::from(*key))
            .map(|s| s.offset)
            .filter(|offset| *offset < o)
    }

    /// Remembers the signal decided at `at` for `window`; `None` when it was already
    /// remembered (a replay), else the entry to write to the changelog.
    pub fn record(&mut self, key: [u8; 16], at: Mark, window: Duration) -> Option<Seen> {
        let key = CommandId::from(key);
        if self.by_key.contains_key(&key) {
            return None;
        }
        let seen = Seen {
            key,
            offset: at.offset,
            at: at.at,
            until: at.at.saturating_add(window.as_millis() as i64),
        };
        self.restore(seen);
        Some(seen)
    }

    /// Adds an entry read from the changelog (or migrated from a subject's record).
    pub fn restore(&mut self, seen: Seen) {
        let kept = Remembered {
            offset: seen.offset,
            until: seen.until,
        };
        if self.by_key.insert(seen.key, kept).is_none() {
            self.order.push_back(seen.key);
        }
    }

    pub fn remove(&mut self, key: &CommandId) {
        self.by_key.remove(key);
    }

    /// Drops entries whose window ended more than `margin` before `now`, and the oldest past
    /// [`MAX_PER_PARTITION`]; returns the keys dropped (their changelog records become
    /// tombstones).
    pub fn evict(&mut self, now: i64, margin: Duration) -> Vec<CommandId> {
        let from = now - margin.as_millis() as i64;
        let mut dropped = Vec::new();
        while let Some(key) = self.order.front().copied() {
            let expired = self.by_key.get(&key).is_none_or(|s| s.until < from);
            if !expired && self.by_key.len() <= MAX_PER_PARTITION {
                break;
            }
            self.order.pop_front();
            if self.by_key.remove(&key).is_some() {
                dropped.push(key);
            }
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_seen_replays_and_eviction() {
        let mut s = SeenSet::default();
        let w = Duration::from_secs(60);
        assert!(s.record([1; 16], Mark { offset: 5, at: 0 }, w).is_some());
        assert!(
            s.record([1; 16], Mark { offset: 5, at: 0 }, w).is_none(),
            "a replay"
        );
        assert_eq!(
            s.first_seen(&[1; 16], 5),
            None,
            "the record itself is no duplicate"
        );
        assert_eq!(s.first_seen(&[1; 16], 9), Some(5));
        assert_eq!(s.first_seen(&[2; 16], 9), None);
        s.record(
            [2; 16],
            Mark {
                offset: 6,
                at: 50_000,
            },
            w,
        );
        let dropped = s.evict(61_000, Duration::ZERO);
        assert_eq!(dropped, vec![CommandId::from([1; 16])]);
        assert_eq!((s.len(), s.first_seen(&[2; 16], 9)), (1, Some(6)));
    }
}
