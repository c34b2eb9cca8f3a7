//! Deciding on more than one core. State and order are per partition, so a batch of consumed
//! records is split by the state store its partition belongs to ([`Stores`]): one group per
//! worker, each decided in consumption order under its own store's lock, the groups in
//! parallel. Producing, acknowledging and committing stay on the loop, in consumption order,
//! so offsets, acknowledgements and rebalances are what they were with one worker: no record
//! is inside a worker when a rebalance runs (it runs in the loop's poll, between batches).

use super::Incoming;
use crate::state::{StateStore, Stores};

/// The pool that decides a batch's groups: `workers - 1` threads beside the loop's own,
/// which decides one group itself.
pub struct Workers {
    pool: Option<rayon::ThreadPool>,
}

impl Workers {
    /// `count` workers; 1 decides on the calling thread only.
    pub fn new(count: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = match count {
            0 | 1 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n - 1)
                    .thread_name(|i| format!("containd-decide-{}", i + 1))
                    .build()?,
            ),
        };
        Ok(Self { pool })
    }

    /// Decides every record of `batch` with `decide` under its partition's store; the results
    /// in the batch's order. Records of one partition are decided in their order, by one
    /// worker.
    pub fn decide<R, F>(&self, stores: &Stores, batch: &[Incoming<'_>], decide: F) -> Vec<R>
    where
        R: Send,
        F: Fn(&mut StateStore, &Incoming<'_>) -> R + Sync,
    {
        let groups = groups(stores, batch);
        let busy = groups.iter().filter(|g| !g.is_empty()).count();
        let Some(pool) = self.pool.as_ref().filter(|_| busy > 1) else {
            return batch
                .iter()
                .map(|m| decide(&mut stores.of(m.topic, m.partition), m))
                .collect();
        };
        let run = |store: usize, members: &[usize]| -> Vec<(usize, R)> {
            let mut state = stores.at(store);
            members
                .iter()
                .map(|&i| (i, decide(&mut state, &batch[i])))
                .collect()
        };
        let mut decided: Vec<Vec<(usize, R)>> = groups.iter().map(|_| Vec::new()).collect();
        pool.in_place_scope(|scope| {
            let mut slots = groups.iter().enumerate().zip(decided.iter_mut());
            let mine = slots.find(|((_, g), _)| !g.is_empty());
            for ((store, members), slot) in slots.filter(|((_, g), _)| !g.is_empty()) {
                let run = &run;
                scope.spawn(move |_| *slot = run(store, members));
            }
            if let Some(((store, members), slot)) = mine {
                *slot = run(store, members);
            }
        });
        in_batch_order(batch.len(), decided)
    }
}

/// The batch's record indexes by store, each group in consumption order.
fn groups(stores: &Stores, batch: &[Incoming<'_>]) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); stores.len()];
    for (i, m) in batch.iter().enumerate() {
        groups[stores.index_of(m.topic, m.partition)].push(i);
    }
    groups
}

fn in_batch_order<R>(len: usize, decided: Vec<Vec<(usize, R)>>) -> Vec<R> {
    let mut slots: Vec<Option<R>> = (0..len).map(|_| None).collect();
    for (i, r) in decided.into_iter().flatten() {
        slots[i] = Some(r);
    }
    // Every index is in exactly one group, so every slot is filled.
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Retention;

    fn msg(partition: i32, offset: i64) -> Incoming<'static> {
        Incoming {
            topic: "signals",
            partition,
            offset,
            timestamp: None,
            key: None,
            payload: None,
            format: None,
            seal: None,
        }
    }

    /// Each record's store gets it, in order per partition, and results come back in the
    /// batch's order whatever order the workers finished in.
    #[test]
    fn results_in_batch_order_and_each_partition_in_order_under_its_store() {
        let stores = Stores::new(3, Retention::default(), Default::default());
        let workers = Workers::new(3).unwrap();
        let batch: Vec<_> = (0..300).map(|i| msg((i % 7) as i32, i / 7)).collect();
        let seen = std::sync::Mutex::new(Vec::new());
        let decided = workers.decide(&stores, &batch, |state, m| {
            // Mark the store: a partition's shard exists only in the store that decided it.
            if !state.has_shard(m.topic, m.partition) {
                state.insert_shard(m.topic, m.partition, Default::default());
            }
            seen.lock().unwrap().push((m.partition, m.offset));
            (m.partition, m.offset, std::thread::current().id())
        });
        let back: Vec<_> = decided.iter().map(|(p, o, _)| (*p, *o)).collect();
        let sent: Vec<_> = batch.iter().map(|m| (m.partition, m.offset)).collect();
        assert_eq!(back, sent);
        let seen = seen.into_inner().unwrap();
        for p in 0..7 {
            let offsets: Vec<_> = seen
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, o)| *o)
                .collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "partition {p} out of order"
            );
        }
        for p in 0..7 {
            let homes = stores
                .each()
                .filter(|(_, s)| s.has_shard("signals", p))
                .count();
            assert_eq!(homes, 1);
        }
        let threads: std::collections::HashSet<_> = decided.iter().map(|d| d.2).collect();
        assert!(
            threads.len() > 1,
            "three busy stores decided on more than one thread"
        );
    }

    #[test]
    fn one_worker_decides_on_the_calling_thread() {
        let stores = Stores::new(1, Retention::default(), Default::default());
        let workers = Workers::new(1).unwrap();
        let batch: Vec<_> = (0..10).map(|i| msg(i, 0)).collect();
        let me = std::thread::current().id();
        let decided = workers.decide(&stores, &batch, |_, _| std::thread::current().id());
        assert!(decided.iter().all(|t| *t == me));
    }
}
