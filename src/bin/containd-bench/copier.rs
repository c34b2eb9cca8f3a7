//! The baseline: raw Kafka I/O with containd's delivery discipline and none of its work.
//!
//! It consumes the same signal topic in its own group with containd's consumer settings,
//! and for every signal produces the records containd produces for it (same count, sizes,
//! keys and headers, from the spec) with containd's producer settings: idempotent,
//! asynchronous acknowledgements, offsets committed by containd's own `OffsetTracker` only
//! after every output of a signal is acknowledged, on containd's commit interval. It does no
//! decoding, evaluation or encoding. Runs as its own process (`containd-bench copy`) so its
//! CPU and memory are measured exactly like the daemon's.

use crate::spec::Spec;
use crate::workload::INDEX_HEADER;
use anyhow::{Context, Result};
use containd::pipeline::kafka::{commit_positions, consumer_config, producer_config};
use containd::pipeline::offsets::{DeliveryFailure, OffsetTracker};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest payload any output needs; outputs are slices of it.
static FILLER: [u8; 1 << 16] = [b'x'; 1 << 16];

struct Token {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

struct AckContext {
    tracker: Arc<OffsetTracker>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Box<Token>) {
        match result {
            Ok(_) => self
                .tracker
                .ack(&token.topic, token.partition, token.offset),
            Err((error, _)) => self.tracker.fail(DeliveryFailure {
                topic: token.topic.to_string(),
                partition: token.partition,
                offset: token.offset,
                error: error.to_string(),
            }),
        }
    }
}

/// Runs the copier until SIGTERM/SIGINT: `config` is containd's (its librdkafka settings,
/// input topics, delivery settings), `group` the copier's own consumer group.
pub async fn run(config: &Path, spec: &Path, group: &str, inputs: &[String]) -> Result<()> {
    let settings = containd::config::load(config).map_err(|p| anyhow::anyhow!("{p}"))?;
    let spec = Spec::read(spec)?;
    let topics: Vec<Arc<str>> = spec.topics.iter().map(|t| Arc::from(t.as_str())).collect();
    let command_header = b"containd.command_id";
    let tracker = Arc::new(OffsetTracker::new());
    let mut cc = consumer_config(&settings);
    cc.set("group.id", group);
    let consumer: StreamConsumer = cc.create()?;
    let producer: ThreadedProducer<AckContext> = producer_config(&settings, None)
        .create_with_context(AckContext {
            tracker: tracker.clone(),
        })?;
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs)?;
    let names: std::collections::HashMap<String, Arc<str>> = inputs
        .iter()
        .map(|t| (t.to_string(), Arc::from(*t)))
        .collect();

    let mut tick = tokio::time::interval(settings.delivery.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut unknown = 0u64;
    loop {
        if let Some(f) = tracker.failure() {
            anyhow::bail!(
                "output of {}/{}@{} not acknowledged: {}",
                f.topic,
                f.partition,
                f.offset,
                f.error
            );
        }
        if tracker.in_flight() >= settings.delivery.max_in_flight {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => commit(&consumer, &tracker, CommitMode::Async),
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let Some(i) = index(&m) else {
                        unknown += 1;
                        continue;
                    };
                    let outs = spec.outputs(i);
                    let Some(topic) = names.get(m.topic()) else { continue };
                    tracker.begin(m.topic(), m.partition(), m.offset(), outs.len() as u32);
                    // Commands carry the signal's index where containd puts the command id
                    // (same length), so the latency reader can match them.
                    let id = format!("{i:032}");
                    for o in outs {
                        let token = Box::new(Token {
                            topic: topic.clone(),
                            partition: m.partition(),
                            offset: m.offset(),
                        });
                        let headers = o.command.then(|| {
                            OwnedHeaders::new().insert(Header {
                                key: std::str::from_utf8(command_header).unwrap_or_default(),
                                value: Some(id.as_bytes()),
                            })
                        });
                        send(&producer, &topics[o.topic as usize], m.key(), &FILLER[..o.len as usize], headers, token).await?;
                    }
                }
                Err(e) => eprintln!("copier: consumer error: {e}"),
            },
        }
    }
    let deadline = Instant::now() + settings.shutdown.grace;
    while tracker.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    commit(&consumer, &tracker, CommitMode::Sync);
    let _ = producer.flush(Duration::from_secs(1));
    if unknown > 0 {
        eprintln!("copier: {unknown} records without the {INDEX_HEADER} header were skipped");
    }
    Ok(())
}

/// The workload index from the record's header.
pub fn index(m: &BorrowedMessage<'_>) -> Option<usize> {
    let h = m.headers()?;
    (0..h.count()).find_map(|j| {
        let h = h.get(j);
        if h.key != INDEX_HEADER {
            return None;
        }
        let v: [u8; 8] = h.value?.try_into().ok()?;
        Some(u64::from_le_bytes(v) as usize)
    })
}

async fn send(
    producer: &ThreadedProducer<AckContext>,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: Option<OwnedHeaders>,
    mut token: Box<Token>,
) -> Result<()> {
    loop {
        let mut record =
            BaseRecord::<[u8], [u8], Box<Token>>::with_opaque_to(topic, token).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = &headers {
            record = record.headers(h.clone());
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                token = r.delivery_opaque;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => return Err(e).context("produce"),
        }
    }
}

fn commit(consumer: &StreamConsumer, tracker: &OffsetTracker, mode: CommitMode) {
    // The same commit as containd's own.
    if let Err(e) = commit_positions(consumer, tracker, mode) {
        eprintln!("copier: commit failed: {e}");
    }
}
