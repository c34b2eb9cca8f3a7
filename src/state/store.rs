//! The state of the partitions this instance owns: one shard per input partition, holding the
//! subjects whose signals land there. A shard is rebuilt from the changelog when its partition
//! is first seen after an assignment and dropped when the partition is revoked.

use super::seen::SeenSet;
use super::{CommandId, Mark, Retention, StateUpdate, SubjectState};
use crate::approvals::HoldTable;
use crate::safety::breakers::{self, SharedBreakers, Verdicts};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Shard {
    pub subjects: HashMap<Box<str>, SubjectState>,
    /// Signals decided in the partition, for duplicate detection.
    pub seen: SeenSet,
    /// What the circuit breakers did to the partition's signals, by offset.
    pub breaker_verdicts: BTreeMap<i64, Verdicts>,
    /// Held commands (a partition of the approvals topic).
    pub holds: HoldTable,
    /// Commands tracked until their target confirms them (a partition of the results topic).
    pub tracked: crate::lifecycle::Tracker,
    /// Newest signal time applied or restored: the clock eviction runs on.
    pub stream_time: i64,
}

impl Shard {
    pub fn entries(&self) -> usize {
        self.subjects.values().map(SubjectState::entries).sum()
    }
}

/// What applying a decision did to a subject: the changelog record to write, if any.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// The subject's new state, encoded as its changelog record.
    Updated(Vec<u8>),
    /// Nothing left for the subject: a tombstone.
    Removed,
}

/// What a changelog record is about: a subject's state, or one signal remembered as seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Subject(String),
    Seen(CommandId),
    /// The circuit breakers' verdicts on the signal at this offset.
    Breaker(i64),
    /// A held command, by command id.
    Hold(String),
    /// A tracked command (results topic), by command id.
    Track(String),
}

/// Shards by input topic, then partition (looked up per signal without allocating a key).
#[derive(Debug, Default)]
pub struct StateStore {
    shards: HashMap<String, HashMap<i32, Shard>>,
    retention: Retention,
    /// The instance's circuit breakers (they count across its partitions).
    pub breakers: SharedBreakers,
    /// This store's place among the instance's (`Stores`): (index, count); `None`: the only one.
    slot: Option<(usize, usize)>,
}

impl StateStore {
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            ..Self::default()
        }
    }

    /// The store with the instance's circuit breakers.
    pub fn with_breakers(mut self, breakers: SharedBreakers) -> Self {
        self.breakers = breakers;
        self
    }

    /// The store as number `index` of `count`, keeping only the partitions hashed to it.
    pub fn one_of(mut self, index: usize, count: usize) -> Self {
        self.slot = Some((index, count));
        self
    }

    /// Whether a partition's state belongs in this store (always, for a store of its own):
    /// work kept outside the store (expiries in flight) is settled by the store that owns it.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.slot
            .is_none_or(|(index, count)| super::stores::store_of(topic, partition, count) == index)
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    pub fn has_shard(&self, topic: &str, partition: i32) -> bool {
        self.shards
            .get(topic)
            .is_some_and(|t| t.contains_key(&partition))
    }

    pub fn insert_shard(&mut self, topic: &str, partition: i32, shard: Shard) {
        let mut counts = breakers::lock(&self.breakers);
        for verdicts in shard.breaker_verdicts.values() {
            counts.restore(verdicts);
        }
        drop(counts);
        self.shards
            .entry(topic.to_string())
            .or_default()
            .insert(partition, shard);
    }

    pub fn shard(&self, topic: &str, partition: i32) -> Option<&Shard> {
        self.shards.get(topic)?.get(&partition)
    }

    pub fn shard_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Shard> {
        self.shards.get_mut(topic)?.get_mut(&partition)
    }

    /// Forgets a partition (revoked, or to be rebuilt after an aborted transaction).
    pub fn remove_shard(&mut self, topic: &str, partition: i32) {
        let Some(shard) = self
            .shards
            .get_mut(topic)
            .and_then(|t| t.remove(&partition))
        else {
            return;
        };
        let mut counts = breakers::lock(&self.breakers);
        for verdicts in shard.breaker_verdicts.values() {
            counts.forget(verdicts);
        }
    }

    pub fn clear(&mut self) {
        let mut counts = breakers::lock(&self.breakers);
        let shards = self.shards.values().flat_map(HashMap::values);
        for verdicts in shards.flat_map(|s| s.breaker_verdicts.values()) {
            counts.forget(verdicts);
        }
        drop(counts);
        self.shards.clear();
    }

    pub fn subject(&self, topic: &str, partition: i32, subject: &str) -> Option<&SubjectState> {
        self.shards
            .get(topic)?
            .get(&partition)?
            .subjects
            .get(subject)
    }

    /// Moves the state kept under `former` names of an identity to its state key `key`;
    /// returns the changelog records that make the move durable (a tombstone per former name,
    /// the merged state under `key`). Nothing to move costs one lookup per name.
    pub fn adopt<'n>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        former: impl IntoIterator<Item = &'n str>,
    ) -> Vec<(String, Change)> {
        let Some(shard) = self.shard_mut(topic, partition) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for name in former {
            if name == key {
                continue;
            }
            if let Some(moved) = shard.subjects.remove(name) {
                shard
                    .subjects
                    .entry(key.into())
                    .or_insert_with(SubjectState::new)
                    .absorb(moved);
                changes.push((name.to_string(), Change::Removed));
            }
        }
        if let (false, Some(state)) = (changes.is_empty(), shard.subjects.get(key)) {
            changes.push((
                key.to_string(),
                Change::Updated(super::changelog::value(state)),
            ));
        }
        changes
    }

    /// Applies one decision's update to its subject.
    pub fn apply(
        &mut self,
        topic: &str,
        partition: i32,
        subject: &str,
        at: Mark,
        update: &StateUpdate,
    ) -> Change {
        let retention = self.retention;
        if !self.has_shard(topic, partition) {
            self.insert_shard(topic, partition, Shard::default());
        }
        let Some(shard) = self.shard_mut(topic, partition) else {
            return Change::Unchanged;
        };
        shard.stream_time = shard.stream_time.max(at.at);
        let state = match shard.subjects.get_mut(subject) {
            Some(s) => s,
            None if update.is_empty() => return Change::Unchanged,
            None => shard
                .subjects
                .entry(subject.into())
                .or_insert_with(SubjectState::new),
        };
        if !state.apply(at, update, retention) {
            return Change::Unchanged;
        }
        if state.is_empty() {
            shard.subjects.remove(subject);
            return Change::Removed;
        }
        Change::Updated(super::changelog::value(state))
    }

    /// When the signal with this (issuer, id) key was first decided in the partition, if
    /// before offset `o` (see [`SeenSet::first_seen`]).
    pub fn first_seen(&self, topic: &str, partition: i32, key: &[u8; 16], o: i64) -> Option<i64> {
        self.shards
            .get(topic)?
            .get(&partition)?
            .seen
            .first_seen(key, o)
    }

    /// Remembers a decided signal for the dedup `window`; the changelog record to write, if
    /// it was not remembered already.
    pub fn remember(
        &mut self,
        topic: &str,
        partition: i32,
        key: [u8; 16],
        at: Mark,
        window: Duration,
    ) -> Option<(Key, Change)> {
        if !self.has_shard(topic, partition) {
            self.insert_shard(topic, partition, Shard::default());
        }
        let seen = self
            .shard_mut(topic, partition)?
            .seen
            .record(key, at, window)?;
        let record = super::changelog::value(&seen);
        Some((Key::Seen(seen.key), Change::Updated(record)))
    }

    /// What the circuit breakers did to the signal at `offset` when it was first decided.
    pub fn breaker_verdicts(&self, topic: &str, partition: i32, offset: i64) -> Option<&Verdicts> {
        self.shard(topic, partition)?.breaker_verdicts.get(&offset)
    }

    /// Remembers what the breakers did to the signal at `offset`; the changelog record.
    pub fn record_verdicts(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        verdicts: Verdicts,
    ) -> (Key, Change) {
        if !self.has_shard(topic, partition) {
            self.insert_shard(topic, partition, Shard::default());
        }
        let record = super::changelog::value(&verdicts);
        if let Some(shard) = self.shard_mut(topic, partition) {
            shard.breaker_verdicts.insert(offset, verdicts);
        }
        (Key::Breaker(offset), Change::Updated(record))
    }

    /// Evicts expired entries in every shard by its stream time; returns the changelog records
    /// to write: (topic, partition, what the record is about, what changed).
    pub fn sweep(&mut self) -> Vec<(String, i32, Key, Change)> {
        let retention = self.retention;
        let keep_verdicts = breakers::lock(&self.breakers).longest_period() + retention.margin;
        let mut out = Vec::new();
        let shards = self
            .shards
            .iter_mut()
            .flat_map(|(t, ps)| ps.iter_mut().map(move |(p, s)| (t, p, s)));
        for (topic, partition, shard) in shards {
            let now = shard.stream_time;
            for key in shard.seen.evict(now, retention.margin) {
                out.push((topic.clone(), *partition, Key::Seen(key), Change::Removed));
            }
            let gone = evict_verdicts(&mut shard.breaker_verdicts, now, keep_verdicts);
            let wall = crate::trust::now_ms();
            let holds = shard.holds.evict(wall, retention.margin);
            let tracked = shard.tracked.evict(wall, retention.margin);
            let gone = gone.into_iter().map(Key::Breaker);
            let gone = gone.chain(holds.into_iter().map(Key::Hold));
            for key in gone.chain(tracked.into_iter().map(Key::Track)) {
                out.push((topic.clone(), *partition, key, Change::Removed));
            }
            shard.subjects.retain(|subject, state| {
                if !state.evict(now, retention) {
                    return true;
                }
                let keep = !state.is_empty();
                let change = if keep {
                    Change::Updated(super::changelog::value(state))
                } else {
                    Change::Removed
                };
                out.push((
                    topic.clone(),
                    *partition,
                    Key::Subject(subject.to_string()),
                    change,
                ));
                keep
            });
        }
        out
    }

    /// Every owned subject's containments whose restore on expiry is due at `now`, as
    /// (input topic, partition, subject, containment).
    pub fn restores_due(
        &self,
        now: i64,
    ) -> impl Iterator<Item = (&str, i32, &str, &super::Issued)> {
        self.shards.iter().flat_map(move |(t, ps)| {
            ps.iter().flat_map(move |(p, shard)| {
                shard.subjects.iter().flat_map(move |(subject, state)| {
                    state
                        .restores_due(now)
                        .map(move |i| (t.as_str(), *p, &**subject, i))
                })
            })
        })
    }

    /// Records that the restore on expiry of `command_id` was issued: the subject's change.
    pub fn restore_issued(
        &mut self,
        topic: &str,
        partition: i32,
        subject: &str,
        command_id: CommandId,
    ) -> Change {
        let Some(state) = self
            .shard_mut(topic, partition)
            .and_then(|s| s.subjects.get_mut(subject))
        else {
            return Change::Unchanged;
        };
        match state.restore_issued(command_id) {
            true => Change::Updated(super::changelog::value(state)),
            false => Change::Unchanged,
        }
    }

    /// Every owned partition's holds (the approvals topic's partitions), mutably.
    pub fn hold_tables(&mut self) -> impl Iterator<Item = (&str, i32, &mut HoldTable)> {
        self.shards.iter_mut().flat_map(|(t, ps)| {
            ps.iter_mut()
                .map(move |(p, s)| (t.as_str(), *p, &mut s.holds))
        })
    }

    /// Every owned partition's tracked commands (the results topic's partitions), mutably.
    pub fn trackers(
        &mut self,
    ) -> impl Iterator<Item = (&str, i32, &mut crate::lifecycle::Tracker)> {
        self.shards.iter_mut().flat_map(|(t, ps)| {
            ps.iter_mut()
                .map(move |(p, s)| (t.as_str(), *p, &mut s.tracked))
        })
    }

    /// Size of the largest subject's changelog record (bytes).
    pub fn largest_record(&self) -> usize {
        self.shards
            .values()
            .flat_map(HashMap::values)
            .flat_map(|s| s.subjects.values())
            .map(|s| super::changelog::value(s).len())
            .max()
            .unwrap_or(0)
    }

    /// (shards, subjects, entries) for the state size metrics.
    pub fn size(&self) -> (usize, usize, usize) {
        let shards = || self.shards.values().flat_map(HashMap::values);
        let subjects = shards().map(|s| s.subjects.len()).sum();
        let entries = shards().map(Shard::entries).sum();
        (shards().count(), subjects, entries)
    }
}

/// Drops breaker verdicts older than `keep` before `now`; returns their offsets.
fn evict_verdicts(verdicts: &mut BTreeMap<i64, Verdicts>, now: i64, keep: Duration) -> Vec<i64> {
    let before = now - keep.as_millis() as i64;
    let gone: Vec<i64> = verdicts
        .iter()
        .filter(|(_, v)| v.at < before)
        .map(|(o, _)| *o)
        .collect();
    for o in &gone {
        verdicts.remove(o);
    }
    gone
}
