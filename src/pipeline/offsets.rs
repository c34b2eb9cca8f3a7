//! Which signal offsets may be committed. A signal's offset becomes committable only when
//! every record it caused (commands, decision, dead letter) is acknowledged by the broker, and
//! all earlier signals of its partition are too: per partition, the commit position is the
//! lowest signal still waiting.
//!
//! Acknowledgements arrive on the producer's delivery thread; the consume loop and the
//! rebalance callback read positions. One mutex guards it all; the critical sections are a
//! few map lookups.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Partition {
    /// Signals with unacknowledged outputs, in offset order: (offset, outputs outstanding).
    pending: VecDeque<(i64, u32)>,
    /// One past the highest offset seen.
    next: i64,
    /// Last position handed out for commit.
    committed: i64,
    /// Lowest signal with a refused output: the position never passes it.
    blocked: Option<i64>,
}

impl Partition {
    fn position(&self) -> i64 {
        let position = self.pending.front().map_or(self.next, |(o, _)| *o);
        self.blocked.map_or(position, |b| b.min(position))
    }
}

/// A delivery failure: the signal at this position must not be committed past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: Mutex<HashMap<String, HashMap<i32, Partition>>>,
    in_flight: AtomicUsize,
    failure: Mutex<Option<DeliveryFailure>>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, HashMap<i32, Partition>>) -> R) -> R {
        let mut guard = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Records that the signal at `offset` caused `outputs` records; call before producing them.
    pub fn begin(&self, topic: &str, partition: i32, offset: i64, outputs: u32) {
        self.with(|parts| {
            let topic_parts = match parts.get_mut(topic) {
                Some(t) => t,
                None => parts.entry(topic.to_string()).or_default(),
            };
            let p = topic_parts.entry(partition).or_insert_with(|| Partition {
                next: offset,
                committed: offset,
                ..Partition::default()
            });
            p.next = p.next.max(offset + 1);
            if outputs > 0 {
                p.pending.push_back((offset, outputs));
                self.in_flight.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// One output of the signal at `offset` was acknowledged.
    pub fn ack(&self, topic: &str, partition: i32, offset: i64) {
        self.settle(topic, partition, offset, false);
    }

    /// One output is settled, acknowledged or refused; a refused one blocks the position.
    fn settle(&self, topic: &str, partition: i32, offset: i64, refused: bool) {
        self.with(|parts| {
            let Some(p) = parts.get_mut(topic).and_then(|t| t.get_mut(&partition)) else {
                return; // partition was revoked meanwhile; its new owner replays
            };
            if refused {
                p.blocked = Some(p.blocked.map_or(offset, |b| b.min(offset)));
            }
            let Ok(i) = p.pending.binary_search_by_key(&offset, |(o, _)| *o) else {
                return;
            };
            p.pending[i].1 = p.pending[i].1.saturating_sub(1);
            if p.pending[i].1 == 0 {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            while p.pending.front().is_some_and(|(_, n)| *n == 0) {
                p.pending.pop_front();
            }
        });
    }

    /// An output was refused: nothing at or after its signal is committed, and the loop stops.
    /// It no longer counts as in flight, so the other outputs can still drain and earlier
    /// signals' positions commit.
    pub fn fail(&self, failure: DeliveryFailure) {
        self.settle(&failure.topic, failure.partition, failure.offset, true);
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(failure);
    }

    pub fn failure(&self) -> Option<DeliveryFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Signals still pending on one partition.
    pub fn pending(&self, topic: &str, partition: i32) -> usize {
        self.with(|parts| {
            parts
                .get(topic)
                .and_then(|t| t.get(&partition))
                .map_or(0, |p| p.pending.iter().filter(|(_, n)| *n > 0).count())
        })
    }

    /// Positions that moved since the last call: (topic, partition, next offset to read).
    pub fn take_commits(&self) -> Vec<(String, i32, i64)> {
        self.with(|parts| {
            let mut out = Vec::new();
            for (topic, t) in parts.iter_mut() {
                for (partition, p) in t.iter_mut() {
                    let pos = p.position();
                    if pos > p.committed {
                        p.committed = pos;
                        out.push((topic.clone(), *partition, pos));
                    }
                }
            }
            out
        })
    }

    /// Every partition's position, moved or not (for the final synchronous commit, which
    /// also repairs an earlier asynchronous commit that failed).
    pub fn all_positions(&self) -> Vec<(String, i32, i64)> {
        self.with(|parts| {
            let mut out = Vec::new();
            for (topic, t) in parts.iter_mut() {
                for (partition, p) in t.iter_mut() {
                    p.committed = p.position();
                    out.push((topic.clone(), *partition, p.committed));
                }
            }
            out
        })
    }

    /// The commit position of one partition, if it was seen.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.with(|parts| parts.get(topic)?.get(&partition).map(Partition::position))
    }

    /// Forgets a revoked partition; its pending signals count no more.
    pub fn remove(&self, topic: &str, partition: i32) {
        self.with(|parts| {
            if let Some(t) = parts.get_mut(topic) {
                if let Some(p) = t.remove(&partition) {
                    let open = p.pending.iter().filter(|(_, n)| *n > 0).count();
                    self.in_flight.fetch_sub(open, Ordering::Relaxed);
                }
            }
        });
    }

    /// Forgets everything (exactly_once rewinds to the last committed transaction).
    pub fn clear(&self) {
        self.with(|parts| parts.clear());
        self.in_flight.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_up_to_the_lowest_unacknowledged_signal() {
        let t = OffsetTracker::new();
        t.begin("s", 0, 10, 2);
        t.begin("s", 0, 11, 1);
        t.begin("s", 0, 12, 0); // dead-end signals with no outputs still advance
        assert_eq!(t.position("s", 0), Some(10));
        t.ack("s", 0, 11);
        assert_eq!(t.position("s", 0), Some(10), "11 is acked but 10 is not");
        t.ack("s", 0, 10);
        assert_eq!(t.position("s", 0), Some(10), "10 still has one output");
        t.ack("s", 0, 10);
        assert_eq!(t.position("s", 0), Some(13));
        assert_eq!(t.take_commits(), vec![("s".into(), 0, 13)]);
        assert!(
            t.take_commits().is_empty(),
            "unchanged positions are not recommitted"
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn revoked_partition_ignores_late_acks() {
        let t = OffsetTracker::new();
        t.begin("s", 1, 5, 1);
        assert_eq!(t.in_flight(), 1);
        t.remove("s", 1);
        assert_eq!(t.in_flight(), 0);
        t.ack("s", 1, 5);
        assert_eq!(t.position("s", 1), None);
    }

    #[test]
    fn a_refused_output_blocks_its_partition_but_not_the_drain() {
        let t = OffsetTracker::new();
        t.begin("s", 0, 1, 1);
        t.begin("s", 0, 2, 2);
        t.begin("s", 0, 3, 1);
        t.fail(DeliveryFailure {
            topic: "s".into(),
            partition: 0,
            offset: 2,
            error: "refused".into(),
        });
        t.ack("s", 0, 1);
        t.ack("s", 0, 2);
        t.ack("s", 0, 3);
        assert_eq!(
            t.in_flight(),
            0,
            "the refused output is settled, not in flight"
        );
        assert_eq!(t.position("s", 0), Some(2), "never past the refused signal");
        assert_eq!(t.all_positions(), vec![("s".into(), 0, 2)]);
    }

    #[test]
    fn failure_is_sticky_and_first_wins() {
        let t = OffsetTracker::new();
        let f = |o| DeliveryFailure {
            topic: "s".into(),
            partition: 0,
            offset: o,
            error: "x".into(),
        };
        t.fail(f(1));
        t.fail(f(2));
        assert_eq!(t.failure().map(|f| f.offset), Some(1));
    }
}
