//! The instance's state split into one store per decide worker. Every input, approvals and
//! results partition belongs to exactly one store (its topic and number hashed), so workers
//! deciding different partitions never wait on each other's lock, and everything about one
//! partition — subjects, seen signals, breaker verdicts, holds, tracked commands — stays in
//! one place as before.

use super::{Retention, StateStore};
use crate::safety::breakers::SharedBreakers;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
pub struct Stores {
    stores: Box<[Mutex<StateStore>]>,
}

impl Stores {
    /// `count` stores (at least one), sharing the instance's circuit breakers.
    pub fn new(count: usize, retention: Retention, breakers: SharedBreakers) -> Self {
        let count = count.max(1);
        let stores = (0..count)
            .map(|i| {
                let store = StateStore::new(retention).with_breakers(breakers.clone());
                Mutex::new(store.one_of(i, count))
            })
            .collect();
        Self { stores }
    }

    pub fn len(&self) -> usize {
        self.stores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Which store keeps a partition: stable for the process, spread evenly over a topic's
    /// partitions.
    pub fn index_of(&self, topic: &str, partition: i32) -> usize {
        store_of(topic, partition, self.stores.len())
    }

    /// The store of a partition, locked.
    pub fn of(&self, topic: &str, partition: i32) -> MutexGuard<'_, StateStore> {
        self.at(self.index_of(topic, partition))
    }

    /// Store `index`, locked.
    pub fn at(&self, index: usize) -> MutexGuard<'_, StateStore> {
        let store = &self.stores[index % self.stores.len()];
        store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each store in turn, locked one at a time, with its index.
    pub fn each(&self) -> impl Iterator<Item = (usize, MutexGuard<'_, StateStore>)> {
        (0..self.stores.len()).map(|i| (i, self.at(i)))
    }

    /// Partitions, subjects and entries over every store.
    pub fn size(&self) -> (usize, usize, usize) {
        self.each().fold((0, 0, 0), |(a, b, c), (_, s)| {
            let (x, y, z) = s.size();
            (a + x, b + y, c + z)
        })
    }
}

/// Which of `count` stores keeps a partition: stable for the process, spread evenly over a
/// topic's partitions.
pub fn store_of(topic: &str, partition: i32, count: usize) -> usize {
    // FNV-1a over the topic name: different topics start at different stores.
    let topic = topic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let at = topic.wrapping_add(u64::from(partition.unsigned_abs()));
    (at % count.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_one_store_and_a_topic_spreads_over_all() {
        let stores = Stores::new(4, Retention::default(), Default::default());
        let mut used = [0; 4];
        for p in 0..32 {
            let i = stores.index_of("signals", p);
            assert_eq!(i, stores.index_of("signals", p), "stable");
            used[i] += 1;
        }
        assert_eq!(used, [8; 4], "consecutive partitions go round the stores");
    }

    #[test]
    fn one_store_keeps_everything() {
        let stores = Stores::new(0, Retention::default(), Default::default());
        assert_eq!(stores.len(), 1);
        assert_eq!(stores.index_of("approvals", 7), 0);
    }

    #[test]
    fn a_shard_lives_in_its_partitions_store_only() {
        let stores = Stores::new(2, Retention::default(), Default::default());
        stores
            .of("signals", 3)
            .insert_shard("signals", 3, Default::default());
        let home = stores.index_of("signals", 3);
        for (i, store) in stores.each() {
            assert_eq!(store.has_shard("signals", 3), i == home);
        }
        assert_eq!(stores.size().0, 1);
        for (i, store) in stores.each() {
            assert_eq!(store.owns("signals", 3), i == home);
        }
    }
}
