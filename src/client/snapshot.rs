//! A topic read to its current end, without a group position: what the operator commands
//! (`containd approvals`, `containd status`) read. A throwaway group that never commits, so
//! reading moves nobody's offsets; read_committed, so an aborted transaction's records are
//! not there.

use crate::config::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The bound on reading a topic to its end.
pub const WAIT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

/// One record as read.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms).
    pub at: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The `containd.seal` header, on containd's own results-topic records.
    pub seal: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("topic {0:?} does not exist")]
    NoTopic(String),
    #[error(
        "topic {topic:?}: partition {partition} not read to its end (offset {end}) within {waited:?}: is a broker down, or a transaction open on it?{}",
        last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    Incomplete {
        topic: String,
        partition: i32,
        end: i64,
        waited: Duration,
        last: Option<Box<KafkaError>>,
    },
    #[error("topic {topic:?}: cannot learn its partitions from the brokers: {source}; are the kafka \"bootstrap.servers\" reachable?")]
    Brokers {
        topic: String,
        source: Box<KafkaError>,
    },
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
}

/// Every partition of `topic` from its beginning to its end as of now; the consumer's group
/// is `<group_prefix>-<pid>-<µs>`.
pub fn read(
    settings: &Settings,
    topic: &str,
    group_prefix: &str,
) -> Result<Vec<Record>, ReadError> {
    let consumer = reader(settings, group_prefix)?;
    let ends = ends(&consumer, topic)?;
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    for partition in ends.keys() {
        tpl.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    drain(&consumer, topic, ends)
}

fn reader(settings: &Settings, group_prefix: &str) -> Result<BaseConsumer, ReadError> {
    let mut config = super::consumer_config(settings);
    let nonce = chrono::Utc::now().timestamp_micros();
    config
        .set(
            "group.id",
            format!("{group_prefix}-{}-{nonce}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    Ok(config.create()?)
}

/// The end (high watermark) of each partition that has records.
fn ends(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, ReadError> {
    let brokers = |source| ReadError::Brokers {
        topic: topic.into(),
        source: Box::new(source),
    };
    // Every topic's metadata: asking for this one by name may create it.
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(brokers)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(ReadError::NoTopic(topic.into()));
    }
    let mut ends = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(brokers)?;
        if high > low {
            ends.insert(partition, high);
        }
    }
    Ok(ends)
}

/// Polls until every partition of `ends` is read to its end, within [`WAIT`].
fn drain(
    consumer: &BaseConsumer,
    topic: &str,
    mut ends: BTreeMap<i32, i64>,
) -> Result<Vec<Record>, ReadError> {
    let deadline = Instant::now() + WAIT;
    let mut records = Vec::new();
    let mut last = None;
    while let Some((&partition, &end)) = ends.first_key_value() {
        if Instant::now() >= deadline {
            return Err(ReadError::Incomplete {
                topic: topic.into(),
                partition,
                end,
                waited: WAIT,
                last,
            });
        }
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                let (partition, offset) = (m.partition(), m.offset());
                records.push(Record {
                    partition,
                    offset,
                    at: m.timestamp().to_millis().unwrap_or_default(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    seal: seal_of(&m),
                });
                if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
                    ends.remove(&partition);
                }
            }
            // A broker going away mid-read: keep polling until the deadline.
            Some(Err(e)) => last = Some(Box::new(e)),
            None => drop_reached(consumer, &mut ends),
        }
    }
    Ok(records)
}

/// Drops the partitions whose position is at their end: transaction markers (or
/// compaction) can leave the last offsets without a record to read.
fn drop_reached(consumer: &BaseConsumer, ends: &mut BTreeMap<i32, i64>) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for e in positions.elements() {
        if let Offset::Offset(position) = e.offset() {
            if ends.get(&e.partition()).is_some_and(|end| position >= *end) {
                ends.remove(&e.partition());
            }
        }
    }
}

fn seal_of(m: &impl Message) -> Option<Vec<u8>> {
    let headers = m.headers()?;
    let seal = headers
        .iter()
        .find(|h| h.key == crate::lifecycle::record::SEAL_HEADER)?;
    seal.value.map(<[u8]>::to_vec)
}
