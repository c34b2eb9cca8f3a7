//! The bench's own Kafka clients: topic setup, the preload and paced signal producers, the
//! high-watermark watcher, and the reader that takes command timestamps back off the broker.

use crate::workload::{Record, INDEX_HEADER};
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};
use std::time::{Duration, Instant};

pub struct Kafka {
    pub bootstrap: String,
    pub partitions: i32,
    watcher: BaseConsumer,
}

impl Kafka {
    pub fn new(bootstrap: &str, partitions: i32) -> Result<Self> {
        let watcher: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "containd-bench-watcher")
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            bootstrap: bootstrap.into(),
            partitions,
            watcher,
        })
    }

    /// Creates topics; with `log_append_time` the broker stamps each record when it stores
    /// it, which is the command timestamp the latency is measured to.
    pub async fn create_topics(&self, names: &[String], log_append_time: bool) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| {
                let t = NewTopic::new(n, self.partitions, TopicReplication::Fixed(1));
                if log_append_time {
                    t.set("message.timestamp.type", "LogAppendTime")
                } else {
                    t
                }
            })
            .collect();
        for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
            r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// Sum of the high watermarks of `topic`'s partitions (topics start empty, so this is
    /// the record count).
    pub fn count(&self, topic: &str) -> Result<u64> {
        Ok(self.watermarks(topic)?.iter().sum::<i64>() as u64)
    }

    pub fn watermarks(&self, topic: &str) -> Result<Vec<i64>> {
        (0..self.partitions)
            .map(|p| {
                self.watcher
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .with_context(|| format!("watermarks of {topic}/{p}"))
            })
            .collect()
    }

    /// A producer for signals: idempotent like containd's, lingering 1 ms so the harness adds
    /// little to the latency it measures.
    pub fn signal_producer(
        &self,
        linger_ms: u32,
    ) -> Result<ThreadedProducer<DefaultProducerContext>> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", linger_ms.to_string())
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "1000000")
            .create()?)
    }

    /// Reads `topics` from `start` (per topic, per partition) up to `end`, returning the
    /// records' broker timestamps with a value taken from each record by `id`.
    pub fn read_back<T>(
        &self,
        topics: &[String],
        start: &[Vec<i64>],
        end: &[Vec<i64>],
        mut id: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Option<T>,
    ) -> Result<(Vec<(T, i64)>, u64)> {
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "containd-bench-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        let mut left = 0i64;
        for (t, topic) in topics.iter().enumerate() {
            for p in 0..self.partitions as usize {
                if end[t][p] > start[t][p] {
                    tpl.add_partition_offset(topic, p as i32, Offset::Offset(start[t][p]))?;
                    left += end[t][p] - start[t][p];
                }
            }
        }
        let mut out = Vec::with_capacity(left as usize);
        let mut unmatched = 0;
        if left == 0 {
            return Ok((out, 0));
        }
        reader.assign(&tpl)?;
        let mut idle = Instant::now();
        while left > 0 {
            let Some(m) = reader.poll(Duration::from_millis(200)) else {
                if idle.elapsed() > Duration::from_secs(30) {
                    bail!("read-back stalled with {left} records to go");
                }
                continue;
            };
            idle = Instant::now();
            let m = m?;
            let t = topics.iter().position(|x| x == m.topic()).unwrap_or(0);
            if m.offset() >= end[t][m.partition() as usize] {
                continue;
            }
            left -= 1;
            let ts = match m.timestamp() {
                Timestamp::LogAppendTime(ts) | Timestamp::CreateTime(ts) => ts,
                Timestamp::NotAvailable => continue,
            };
            match id(&m) {
                Some(v) => out.push((v, ts)),
                None => unmatched += 1,
            }
        }
        Ok((out, unmatched))
    }
}

/// Sends one signal, tagged with its workload index, at `timestamp`.
pub fn send_signal(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    i: u64,
    rec: &Record,
    timestamp: i64,
) -> Result<()> {
    let index = i.to_le_bytes();
    let headers = OwnedHeaders::new().insert(Header {
        key: INDEX_HEADER,
        value: Some(&index[..]),
    });
    let mut record = BaseRecord::to(topic)
        .key(rec.key.as_bytes())
        .payload(&rec.payload[..])
        .headers(headers)
        .timestamp(timestamp);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("produce signal"),
        }
    }
}

/// Produces `records` to `topic` at `rate` per second (1 ms pacing), each stamped with the
/// time it was handed to the producer. Returns the stamps and the achieved rate.
pub fn produce_paced(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    first: u64,
    records: &[Record],
    rate: u64,
) -> Result<(Vec<i64>, f64)> {
    let mut stamps = Vec::with_capacity(records.len());
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < records.len() {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize).min(records.len());
        while sent < due {
            let now = chrono::Utc::now().timestamp_millis();
            send_signal(producer, topic, first + sent as u64, &records[sent], now)?;
            stamps.push(now);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let achieved = records.len() as f64 / started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(30))?;
    Ok((stamps, achieved))
}

/// The `containd.command_id` header value, for the copier's commands.
pub fn header_value<'a>(
    m: &'a rdkafka::message::BorrowedMessage<'_>,
    key: &str,
) -> Option<&'a [u8]> {
    let h = m.headers()?;
    (0..h.count()).find_map(|j| {
        let h = h.get(j);
        (h.key == key).then_some(h.value).flatten()
    })
}
