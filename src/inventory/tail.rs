//! Follows the inventory topic into the shared inventory. Every instance reads every partition
//! from the beginning (no consumer group: each needs the whole inventory), applies records in
//! order (a null value removes the identity), and keeps following, so an inventory update is
//! in effect for the next signal decided after it arrives.
//!
//! `wait_loaded` returns once the records present at startup are applied: signals are not
//! decided against a half-read inventory.

use super::{IdentityRecord, SharedInventory};
use crate::codec::{AvroCodec, Format};
use crate::config::Settings;
use crate::telemetry::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(100);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("inventory consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// The running tail; stops when dropped.
pub struct Tail {
    loaded: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tail {
    /// Starts following `topic`. A missing topic counts as an empty inventory (and is warned
    /// about); records are followed once it appears.
    pub fn start(
        settings: &Settings,
        topic: &str,
        inventory: SharedInventory,
        codec: AvroCodec,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TailError> {
        let mut config = crate::client::config(settings, crate::config::ClientKind::Consumer);
        config
            .set("group.id", format!("{}-inventory", settings.input.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = config.create()?;
        let loaded = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let follower = Follower {
            consumer,
            topic: topic.to_string(),
            inventory,
            format: settings.inventory.format,
            required: settings.inventory.required,
            codec,
            metrics,
            loaded: loaded.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("containd-inventory".into())
            .spawn(move || follower.run())
            .map_err(|e| {
                rdkafka::error::KafkaError::ClientCreation(format!("inventory thread: {e}"))
            })?;
        Ok(Self {
            loaded,
            stop,
            thread: Some(thread),
        })
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Waits until the startup contents are applied.
    pub async fn wait_loaded(&self) {
        let mut waited = 0u32;
        while !self.is_loaded() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += 1;
            if waited.is_multiple_of(500) {
                tracing::info!("still loading the inventory");
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Follower {
    consumer: BaseConsumer,
    topic: String,
    inventory: SharedInventory,
    format: Format,
    /// `[inventory] required`: without the topic, signals wait (not ready) instead of being
    /// decided against an empty inventory.
    required: bool,
    codec: AvroCodec,
    metrics: Arc<Metrics>,
    loaded: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Follower {
    fn run(self) {
        // The high watermark of each partition at startup: loaded once every one is reached.
        let mut targets: Vec<(i32, i64)> = Vec::new();
        let mut assigned = 0usize;
        let mut checked: Option<std::time::Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            // New partitions (or the topic itself) are looked for every few seconds.
            if checked.is_none_or(|c| c.elapsed() >= METADATA_RECHECK) {
                checked = Some(std::time::Instant::now());
                let partitions = self.partitions();
                if partitions > assigned {
                    targets = self.assign(partitions, &targets);
                    assigned = partitions;
                }
            }
            if assigned == 0 {
                // No topic yet: signals wait for it, or (not required) an empty inventory,
                // followed once the topic appears.
                if !self.required {
                    self.mark_loaded(0);
                }
                std::thread::sleep(POLL);
                continue;
            }
            self.poll_batch(&mut targets);
            if targets.is_empty() {
                let n = self.inventory_len();
                self.mark_loaded(n);
            }
        }
    }

    fn mark_loaded(&self, identities: usize) {
        if !self.loaded.swap(true, Ordering::AcqRel) {
            tracing::info!(identities, topic = %self.topic, "inventory loaded");
            self.metrics.inventory_updated();
        }
    }

    fn inventory_len(&self) -> usize {
        self.inventory.read().map_or(0, |i| i.len())
    }

    /// Partitions of the topic (0 when it does not exist yet).
    fn partitions(&self) -> usize {
        match self
            .consumer
            .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
        {
            Ok(md) => md
                .topics()
                .first()
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len()),
            Err(e) => {
                static LOG: crate::telemetry::throttle::Throttle =
                    crate::telemetry::throttle::Throttle::new(1);
                if let Some(dropped) = LOG.allow() {
                    tracing::warn!(error = %e, topic = %self.topic, unlogged_before = dropped, "inventory metadata");
                }
                0
            }
        }
    }

    /// Assigns every partition from the beginning; returns the (partition, high watermark)
    /// pairs still to reach before the startup contents count as loaded.
    fn assign(&self, partitions: usize, pending: &[(i32, i64)]) -> Vec<(i32, i64)> {
        let mut tpl = TopicPartitionList::new();
        let mut targets = pending.to_vec();
        for p in 0..partitions as i32 {
            let _ = tpl.add_partition_offset(&self.topic, p, Offset::Beginning);
            if !self.loaded.load(Ordering::Acquire) {
                match self
                    .consumer
                    .fetch_watermarks(&self.topic, p, METADATA_TIMEOUT)
                {
                    Ok((low, high)) if high > low && !targets.iter().any(|(q, _)| *q == p) => {
                        targets.push((p, high))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, partition = p, "inventory watermarks"),
                }
            }
        }
        if let Err(e) = self.consumer.assign(&tpl) {
            tracing::error!(error = %e, topic = %self.topic, "cannot assign the inventory topic");
        }
        if self.partitions_unknown() {
            tracing::warn!(topic = %self.topic, "inventory topic not assigned yet");
        }
        targets
    }

    fn partitions_unknown(&self) -> bool {
        self.consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(true)
    }

    /// Reads what is there (up to a batch) and applies it under one write lock.
    fn poll_batch(&self, targets: &mut Vec<(i32, i64)>) {
        let mut batch: Vec<Polled> = Vec::new();
        let mut timeout = POLL;
        while batch.len() < 10_000 {
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                )),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "inventory consumer error");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        if batch.is_empty() {
            return;
        }
        let mut decoded = Vec::with_capacity(batch.len());
        for (partition, offset, key, value) in &batch {
            decoded.push(self.decode(key.as_deref(), value.as_deref(), *partition, *offset));
        }
        if let Ok(mut inventory) = self.inventory.write() {
            for change in decoded.into_iter().flatten() {
                match change {
                    Change::Upsert(r) => {
                        inventory.upsert(r);
                        self.metrics.inventory_record("upserted");
                    }
                    Change::Remove(id) => {
                        inventory.remove(&id);
                        self.metrics.inventory_record("deleted");
                    }
                }
            }
            self.metrics.inventory_size(inventory.len());
            self.metrics.inventory_updated();
        }
        for (partition, offset, _, _) in &batch {
            targets.retain(|(p, high)| !(p == partition && *offset + 1 >= *high));
        }
    }

    fn decode(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: i32,
        offset: i64,
    ) -> Option<Change> {
        let reject = |reason: String| {
            self.metrics.inventory_record("rejected");
            tracing::warn!(topic = %self.topic, partition, offset, %reason,
                "inventory record rejected; the identity keeps its previous record");
            None
        };
        match decode_record(self.format, &self.codec, key, value) {
            Ok(change) => Some(change),
            Err(reason) => reject(reason),
        }
    }
}

/// One inventory record as a change to the inventory: a null value removes the identity its
/// key names; anything that is not a valid record for its key is an error saying why.
fn decode_record(
    format: Format,
    codec: &AvroCodec,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Change, String> {
    let key = key
        .map(std::str::from_utf8)
        .transpose()
        .map_err(|_| "key is not UTF-8".to_string())?;
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return key
            .map(|id| Change::Remove(id.to_string()))
            .ok_or_else(|| "tombstone without a key".to_string());
    };
    let record: IdentityRecord = match format {
        Format::Avro => codec.decode_identity(value).map_err(|e| e.to_string())?,
        _ => serde_json::from_slice(value).map_err(|e| e.to_string())?,
    };
    if record.id.is_empty() {
        return Err("empty id".into());
    }
    if let Some(k) = key.filter(|k| *k != record.id) {
        // Compaction and tombstones go by key: a record under another key would never be
        // replaced or removed.
        return Err(format!("key {k:?} is not the record's id {:?}", record.id));
    }
    Ok(Change::Upsert(record))
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    Upsert(IdentityRecord),
    Remove(String),
}

/// (partition, offset, key, value) of a polled record.
type Polled = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Schemas;

    fn codec() -> AvroCodec {
        AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[])
    }

    #[test]
    fn records_tombstones_and_bad_input() {
        let c = codec();
        let json = br#"{"id": "svc-a", "kind": "workload"}"#;
        let Ok(Change::Upsert(r)) = decode_record(Format::Json, &c, Some(b"svc-a"), Some(json))
        else {
            panic!("a valid record upserts");
        };
        assert_eq!(r.id, "svc-a");
        assert_eq!(
            decode_record(Format::Json, &c, Some(b"svc-a"), None),
            Ok(Change::Remove("svc-a".into()))
        );
        let err = |key: Option<&[u8]>, value: &[u8]| {
            decode_record(Format::Json, &c, key, Some(value)).unwrap_err()
        };
        assert!(err(Some(b"svc-b"), json).contains("not the record's id"));
        assert!(err(Some(b"x"), b"{not json").contains("key must be a string"));
        assert!(err(None, br#"{"id": ""}"#).contains("empty id"));
        assert!(err(None, br#"{"id": "a", "kind": "robot"}"#).contains("unknown variant"));
        assert_eq!(
            decode_record(Format::Json, &c, None, None),
            Err("tombstone without a key".into())
        );
        let avro = c.encode_identity(&r).unwrap();
        assert_eq!(
            decode_record(Format::Avro, &c, Some(b"svc-a"), Some(&avro)),
            Ok(Change::Upsert(r))
        );
        assert!(decode_record(Format::Avro, &c, None, Some(json)).is_err());
    }
}
