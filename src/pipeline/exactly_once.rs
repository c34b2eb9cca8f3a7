//! `delivery = "exactly_once"`: each batch's outputs and the consumed offsets go in one Kafka
//! transaction (init / begin / send_offsets_to_transaction / commit). On any error the
//! transaction is aborted and the consumer rewinds to the batch's first offsets, so the batch
//! is decided again into a fresh transaction. Needs a broker with transactions (Apache Kafka,
//! Confluent, Redpanda, MSK); adapters read with isolation.level=read_committed.

use super::at_least_once::{
    create_consumer, create_producer, gather, handle, incoming_of, subscribe, OutputProducer,
};
use super::offsets::OffsetTracker;
use super::sweep::sweep;
use super::{Context, PipelineError, Processor, RunSummary, Runtime, TopicNames};
use crate::config::Settings;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(
    settings: &Settings,
    processor: Processor,
    runtime: Runtime,
    ctx: Context,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, PipelineError> {
    let tracker = Arc::new(OffsetTracker::new());
    let consumer = create_consumer(settings, &runtime, &ctx, &tracker, false)?;
    let txn_id = transactional_id(settings);
    let producer = create_producer(settings, &runtime, &tracker, Some(&txn_id), None)?;
    producer
        .init_transactions(TXN_TIMEOUT)
        .map_err(PipelineError::from_init_transactions)?;
    subscribe(&consumer, settings)?;
    tracing::info!(transactional_id = %txn_id, "consuming (exactly_once)");

    let mut summary = RunSummary::default();
    let mut names = TopicNames::default();
    tokio::pin!(shutdown);
    let mut stopping = false;
    let mut last_sweep = tokio::time::Instant::now();
    while !stopping {
        runtime.health.beat();
        if let Some(e) = consumer.context().take_too_narrow() {
            return Err(e.into());
        }
        producer.begin_transaction()?;
        // What an abort takes back: the evidence chains' heads as the transaction began.
        let heads = processor.chains.checkpoint();
        let mut swept = 0;
        if last_sweep.elapsed() >= settings.state.sweep_interval {
            last_sweep = tokio::time::Instant::now();
            swept = sweep(&processor, &runtime, &ctx, (&consumer, &producer)).await?;
        }
        let parts = Parts {
            settings,
            processor: &processor,
            runtime: &runtime,
            ctx: &ctx,
            tracker: &tracker,
            producer: &producer,
            consumer: &consumer,
        };
        let Batch {
            positions: batch,
            summary: batch_summary,
            error: produce_error,
            stopped,
        } = fill(parts, &mut names, &mut shutdown).await;
        stopping = stopped;
        // A transaction with only the sweep's records (evictions, clock markers, restores on
        // expiry) commits them: aborted, a marker or restore written once would be lost.
        if batch.is_empty() && produce_error.is_none() && swept == 0 {
            producer.abort_transaction(TXN_TIMEOUT)?;
            continue;
        }
        let committed = match produce_error {
            Some(e) => Err(e),
            None => commit_batch(&producer, &consumer, &batch),
        };
        if end(parts, &batch, (committed, heads))? {
            summary.add(&batch_summary);
        }
        tracker.clear();
    }
    tracing::info!(
        consumed = summary.consumed,
        commands = summary.commands,
        "stopped"
    );
    Ok(summary)
}

/// What a transaction's batch is read and handled with.
#[derive(Clone, Copy)]
struct Parts<'a> {
    settings: &'a Settings,
    processor: &'a Processor,
    runtime: &'a Runtime,
    ctx: &'a Context,
    tracker: &'a Arc<OffsetTracker>,
    producer: &'a OutputProducer,
    consumer: &'a super::at_least_once::SignalConsumer,
}

/// One transaction's signals, handled.
struct Batch {
    /// Per partition: (first offset in this batch, next offset after it).
    positions: BTreeMap<(Arc<str>, i32), (i64, i64)>,
    summary: RunSummary,
    /// An output that could not be produced: the transaction aborts.
    error: Option<PipelineError>,
    /// A shutdown came while reading.
    stopped: bool,
}

/// Reads and handles signals until the batch is full, the transaction interval ends, a
/// shutdown comes, or an output fails.
async fn fill(
    p: Parts<'_>,
    names: &mut TopicNames,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Batch {
    let mut batch = Batch {
        positions: BTreeMap::new(),
        summary: RunSummary::default(),
        error: None,
        stopped: false,
    };
    let deadline = tokio::time::Instant::now() + p.settings.delivery.transaction_interval;
    let max = p.settings.delivery.transaction_max_signals;
    let mut taken = 0;
    while taken < max {
        let msg = tokio::select! {
            biased;
            _ = shutdown.as_mut() => { batch.stopped = true; break }
            _ = tokio::time::sleep_until(deadline) => break,
            m = p.consumer.recv() => m,
        };
        let m = match msg {
            Ok(m) => m,
            Err(e) => {
                super::consumer_error(&e);
                continue;
            }
        };
        let room = (max - taken).min(p.settings.decide.max_batch);
        let records = gather(p.consumer, m, room);
        taken += records.len();
        let incoming: Vec<_> = records.iter().map(incoming_of).collect();
        for m in &incoming {
            batch
                .positions
                .entry((names.get(m.topic), m.partition))
                .and_modify(|(_, next)| *next = m.offset + 1)
                .or_insert((m.offset, m.offset + 1));
        }
        let (processor, runtime, ctx) = (p.processor, p.runtime, p.ctx);
        let summary = &mut batch.summary;
        let handled = handle(
            processor, runtime, ctx, p.tracker, p.producer, summary, names, &incoming,
        );
        if let Err(e) = handled.await {
            batch.error = Some(e);
            break;
        }
    }
    batch
}

/// `delivery.transactional_id`, else one derived from the group and the host.
fn transactional_id(settings: &Settings) -> String {
    settings
        .delivery
        .transactional_id
        .clone()
        .unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            format!("containd-{}-{host}", settings.input.group_id)
        })
}

/// Ends a transaction: counted when it committed; aborted and rewound when it failed.
/// Returns whether it committed.
fn end(
    parts: Parts<'_>,
    batch: &BTreeMap<(Arc<str>, i32), (i64, i64)>,
    (committed, heads): (Result<(), PipelineError>, crate::evidence::Heads),
) -> Result<bool, PipelineError> {
    let (runtime, processor) = (parts.runtime, parts.processor);
    match committed {
        Ok(()) => {
            runtime.metrics.transaction("committed");
            processor.expiring.committed();
            Ok(true)
        }
        Err(e) => {
            processor.expiring.aborted();
            // The aborted records are not in the log: their links are taken back.
            processor.chains.rewind(heads);
            let (producer, consumer) = (parts.producer, parts.consumer);
            abort(runtime, parts.ctx, producer, consumer, batch, &e)?;
            Ok(false)
        }
    }
}

/// A failed batch: abort the transaction, drop the batch's partition state (its changes were
/// aborted with it; it is rebuilt from the changelog) and rewind the consumer to redo it.
fn abort(
    runtime: &Runtime,
    ctx: &Context,
    producer: &OutputProducer,
    consumer: &super::at_least_once::SignalConsumer,
    batch: &BTreeMap<(Arc<str>, i32), (i64, i64)>,
    error: &PipelineError,
) -> Result<(), PipelineError> {
    runtime.metrics.transaction("aborted");
    tracing::warn!(%error, "transaction failed; aborting and rewinding the batch");
    producer.abort_transaction(TXN_TIMEOUT)?;
    for (topic, partition) in batch.keys() {
        ctx.state
            .of(topic, *partition)
            .remove_shard(topic, *partition);
    }
    rewind(consumer, batch)
}

fn commit_batch(
    producer: &OutputProducer,
    consumer: &super::at_least_once::SignalConsumer,
    batch: &BTreeMap<(Arc<str>, i32), (i64, i64)>,
) -> Result<(), PipelineError> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), (_, next)) in batch {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    if !batch.is_empty() {
        let group = consumer
            .group_metadata()
            .ok_or(PipelineError::NoGroupMetadata)?;
        producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
    }
    producer.commit_transaction(TXN_TIMEOUT)?;
    Ok(())
}

/// Puts the consumer back at each partition's first offset of the aborted batch.
fn rewind(
    consumer: &super::at_least_once::SignalConsumer,
    batch: &BTreeMap<(Arc<str>, i32), (i64, i64)>,
) -> Result<(), PipelineError> {
    for ((topic, partition), (first, _)) in batch {
        if let Err(e) = consumer.seek(
            topic,
            *partition,
            Offset::Offset(*first),
            Duration::from_secs(5),
        ) {
            // The partition may have been revoked meanwhile: its new owner starts from the
            // last committed transaction, which does not include this batch.
            tracing::warn!(%topic, partition, error = %e, "rewind failed");
        }
    }
    Ok(())
}
