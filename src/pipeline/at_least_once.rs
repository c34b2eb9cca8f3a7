//! Default delivery: outputs are produced asynchronously; a signal's offset is committed
//! only once all its outputs are acknowledged (see `offsets`). A crash replays from the last
//! committed position, and deterministic command ids make the replay harmless.

use super::kafka::{
    commit_positions, consumer_config, producer_config, AckContext, AckToken, RebalanceContext,
};
use super::offsets::OffsetTracker;
use super::redeliver::{self, Next, Redelivery};
use super::sweep::sweep;
use super::{
    current, ensure_shard, observe, Context, Incoming, OutKind, OutRecord, PipelineError,
    Processor, RunSummary, Runtime, TopicNames,
};
use crate::config::Settings;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type SignalConsumer = StreamConsumer<RebalanceContext>;
pub type OutputProducer = ThreadedProducer<AckContext>;

pub async fn run(
    settings: &Settings,
    processor: Processor,
    runtime: Runtime,
    ctx: Context,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, PipelineError> {
    let tracker = Arc::new(OffsetTracker::new());
    let consumer = create_consumer(settings, &runtime, &ctx, &tracker, true)?;
    let redelivery = Arc::new(Redelivery::default());
    let producer = create_producer(settings, &runtime, &tracker, None, Some(redelivery))?;
    subscribe(&consumer, settings)?;
    tracing::info!(group = %settings.input.group_id, "consuming");

    let mut summary = RunSummary::default();
    let mut names = TopicNames::default();
    let mut commit_tick = ticker(settings.delivery.commit_interval);
    let mut redrive_tick = ticker(Duration::from_millis(250));
    let mut sweep_tick = ticker(settings.state.sweep_interval);
    tokio::pin!(shutdown);
    let result = loop {
        if let Err(e) = stopped_by(&tracker, &consumer) {
            break Err(e);
        }
        runtime.metrics.set_in_flight(tracker.in_flight());
        if tracker.in_flight() >= settings.delivery.max_in_flight {
            runtime.metrics.backpressure_wait();
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(1)) => continue,
            }
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = commit_tick.tick() => {
                runtime.health.beat();
                commit(&consumer, &tracker, CommitMode::Async)
            }
            _ = redrive_tick.tick() => {
                if let Err(e) = redrive(&processor, &runtime, &producer).await {
                    break Err(e);
                }
            }
            _ = sweep_tick.tick() => {
                if let Err(e) = sweep(&processor, &runtime, &ctx, (&consumer, &producer)).await {
                    break Err(e);
                }
            }
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let room = settings.delivery.max_in_flight.saturating_sub(tracker.in_flight());
                    let batch = gather(&consumer, m, settings.decide.max_batch.min(room).max(1));
                    let incoming: Vec<_> = batch.iter().map(incoming_of).collect();
                    if let Err(e) = handle(&processor, &runtime, &ctx, &tracker, &producer, &mut summary, &mut names, &incoming).await {
                        break Err(e);
                    }
                }
                Err(e) => super::consumer_error(&e),
            },
        }
    };

    finish(
        settings, &processor, &runtime, &tracker, consumer, producer, summary, result,
    )
    .await
}

/// What stops the loop besides a shutdown: an output the broker would not take, or a
/// partition assigned that the changelog is too narrow for.
fn stopped_by(tracker: &OffsetTracker, consumer: &SignalConsumer) -> Result<(), PipelineError> {
    if let Some(f) = tracker.failure() {
        return Err(PipelineError::Delivery {
            topic: f.topic,
            partition: f.partition,
            offset: f.offset,
            error: f.error,
        });
    }
    match consumer.context().take_too_narrow() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// After the loop: drain and commit, leave the group, and say how it ended (a stop while
/// waiting for the broker is a clean stop; signals left in flight are replayed).
#[allow(clippy::too_many_arguments)]
async fn finish(
    settings: &Settings,
    processor: &Processor,
    runtime: &Runtime,
    tracker: &OffsetTracker,
    consumer: SignalConsumer,
    producer: OutputProducer,
    summary: RunSummary,
    result: Result<(), PipelineError>,
) -> Result<RunSummary, PipelineError> {
    let result = match result {
        Err(PipelineError::Interrupted) => Ok(()),
        other => other,
    };
    let left = drain(settings, processor, runtime, tracker, &producer).await;
    commit(&consumer, tracker, CommitMode::Sync);
    // Closing leaves the group; revocation (drain and commit) runs before we return.
    drop(consumer);
    let _ = producer.flush(Duration::from_secs(1));
    result?;
    if left > 0 {
        return Err(PipelineError::GraceExpired(left));
    }
    tracing::info!(
        consumed = summary.consumed,
        decided = summary.decided,
        dead_lettered = summary.dead_lettered,
        commands = summary.commands,
        "stopped"
    );
    Ok(summary)
}

/// A consumed record as the processor takes it.
pub(super) fn incoming_of<M: Message>(m: &M) -> Incoming<'_> {
    Incoming {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key(),
        payload: m.payload(),
        format: None,
        seal: seal_of(m),
    }
}

/// The `containd.seal` header's value, if the record carries one.
fn seal_of<M: Message>(m: &M) -> Option<&[u8]> {
    use rdkafka::message::Headers;
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == crate::lifecycle::record::SEAL_HEADER)
        .and_then(|h| h.value)
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for outstanding acknowledgements within the grace period, producing again what is
/// due meanwhile; returns how many signals are still in flight.
async fn drain(
    settings: &Settings,
    processor: &Processor,
    runtime: &Runtime,
    tracker: &OffsetTracker,
    producer: &OutputProducer,
) -> usize {
    let deadline = Instant::now() + settings.shutdown.grace;
    while tracker.in_flight() > 0 && Instant::now() < deadline {
        if redrive(processor, runtime, producer).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left = tracker.in_flight();
    runtime.metrics.set_in_flight(left);
    left
}

pub(super) fn create_consumer(
    settings: &Settings,
    runtime: &Runtime,
    ctx: &Context,
    tracker: &Arc<OffsetTracker>,
    commit_on_revoke: bool,
) -> Result<SignalConsumer, PipelineError> {
    Ok(
        consumer_config(settings).create_with_context(RebalanceContext {
            tracker: tracker.clone(),
            metrics: runtime.metrics.clone(),
            health: runtime.health.clone(),
            drain_timeout: settings.delivery.drain_timeout,
            commit_on_revoke,
            assigned: Mutex::default(),
            state: ctx.state.clone(),
            changelog: (settings.state.changelog_topic.clone(), ctx.changelog_width),
            too_narrow: Mutex::default(),
            narrow: Default::default(),
            moved: Mutex::default(),
        })?,
    )
}

/// The output producer; with `redelivery`, outputs that are not acknowledged are produced
/// again or dead-lettered (`redeliver`), else the first one stops the pipeline (the
/// transactional producer).
pub(super) fn create_producer(
    settings: &Settings,
    runtime: &Runtime,
    tracker: &Arc<OffsetTracker>,
    transactional_id: Option<&str>,
    redelivery: Option<Arc<Redelivery>>,
) -> Result<OutputProducer, PipelineError> {
    Ok(
        producer_config(settings, transactional_id).create_with_context(AckContext {
            tracker: tracker.clone(),
            metrics: runtime.metrics.clone(),
            health: runtime.health.clone(),
            redelivery,
        })?,
    )
}

/// Produces again the outputs whose time has come; dead-letters the refused ones the policy
/// gives up on (see `redeliver`).
async fn redrive(
    processor: &Processor,
    runtime: &Runtime,
    producer: &OutputProducer,
) -> Result<(), PipelineError> {
    let Some(redelivery) = &producer.context().redelivery else {
        return Ok(());
    };
    for next in redelivery.due(Instant::now()) {
        let (token, out) = match next {
            Next::Again(token) => {
                let Some(out) = token.record.clone() else {
                    continue;
                };
                (token, out)
            }
            Next::DeadLetter(token, error) => {
                let Some(refused) = token.record.clone() else {
                    continue;
                };
                runtime.metrics.output_refused(refused.kind.name());
                let at = (&*token.topic, token.partition, token.offset);
                let dead = Arc::new(processor.refused_output(&refused, &error, at));
                (redeliver::replace(token, dead.clone()), dead)
            }
        };
        send(producer, &out, token).await?;
    }
    runtime.metrics.set_outputs_waiting(redelivery.waiting());
    Ok(())
}

pub(super) fn subscribe(
    consumer: &SignalConsumer,
    settings: &Settings,
) -> Result<(), PipelineError> {
    match &settings.input.topic_pattern {
        Some(p) => {
            let pattern = if p.starts_with('^') {
                p.clone()
            } else {
                format!("^{p}")
            };
            let mut topics = vec![pattern.as_str()];
            topics.extend(own_topics(settings));
            consumer.subscribe(&topics)?;
        }
        None => {
            let mut topics: Vec<&str> = settings.input.topics.iter().map(String::as_str).collect();
            topics.extend(own_topics(settings));
            consumer.subscribe(&topics)?;
        }
    }
    Ok(())
}

/// The topics containd consumes beside the signals: approvals, and results when tracking.
fn own_topics(settings: &Settings) -> impl Iterator<Item = &str> {
    let results = settings
        .lifecycle
        .enabled
        .then_some(&settings.lifecycle.results_topic);
    std::iter::once(&settings.safety.approvals_topic)
        .chain(results)
        .map(String::as_str)
}

/// The record just received and those already waiting behind it, up to `max`: a batch never
/// waits to fill. A rebalance served while gathering (it runs inside the consumer's poll) moves
/// partitions: their records fetched before it are left out — the partition's new owner, or
/// this instance after a reassignment, reads them again from the committed position.
pub(super) fn gather<'c>(
    consumer: &'c SignalConsumer,
    first: BorrowedMessage<'c>,
    max: usize,
) -> Vec<BorrowedMessage<'c>> {
    // A rebalance before `first` arrived does not concern it.
    consumer.context().take_moved();
    gather_from(first, max, || {
        let next = consumer.recv().now_or_never();
        (next, consumer.context().take_moved())
    })
}

/// [`gather`]'s rule over any source of records: `next` gives what has already arrived (if
/// anything) and the partitions moved by a rebalance served while getting it. Records of moved
/// partitions gathered before are left out, and the batch ends there: what the rebalance
/// delivered after itself belongs to the new assignment.
pub(super) fn gather_from<M: Message>(
    first: M,
    max: usize,
    mut next: impl FnMut() -> (Option<KafkaResult<M>>, Vec<(String, i32)>),
) -> Vec<M> {
    let mut batch = vec![first];
    while batch.len() < max {
        let (next, moved) = next();
        if !moved.is_empty() {
            batch.retain(|m| {
                !moved
                    .iter()
                    .any(|(t, p)| t == m.topic() && *p == m.partition())
            });
        }
        match next {
            Some(Ok(m)) => batch.push(m),
            Some(Err(e)) => {
                super::consumer_error(&e);
                break;
            }
            None => break,
        }
        if !moved.is_empty() {
            break;
        }
    }
    batch
}

/// Decides a batch of records — in parallel by partition (`decide.workers`, see `workers`) —
/// and produces their outputs in consumption order, each carrying an acknowledgement token for
/// the offset tracker. Shared by both delivery modes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn handle(
    processor: &Processor,
    runtime: &Runtime,
    ctx: &Context,
    tracker: &OffsetTracker,
    producer: &OutputProducer,
    summary: &mut RunSummary,
    names: &mut TopicNames,
    batch: &[Incoming<'_>],
) -> Result<(), PipelineError> {
    // A batch holds a few partitions: each is checked once, not once per record.
    let mut partitions: Vec<(&str, i32)> = Vec::new();
    for msg in batch {
        if !partitions.contains(&(msg.topic, msg.partition)) {
            partitions.push((msg.topic, msg.partition));
            ensure_shard(ctx, runtime, msg.topic, msg.partition).await?;
        }
    }
    let rules = current(&runtime.rules);
    let decided = {
        let inventory = ctx.inventory.read().unwrap_or_else(|p| p.into_inner());
        ctx.workers.decide(&ctx.state, batch, |state, msg| {
            let span = tracing::debug_span!(
                "signal",
                topic = msg.topic,
                partition = msg.partition,
                offset = msg.offset,
                id = tracing::field::Empty
            );
            let _entered = span.enter();
            let started = Instant::now();
            let (processed, outputs) = processor.process(&rules, &inventory, state, msg);
            if let super::Processed::Decided(d) = &processed {
                span.record("id", d.record.signal_id.as_str());
            }
            // Counted (and the decision dropped) by the worker, not the loop.
            let mut counted = RunSummary::default();
            let took = started.elapsed();
            observe(
                &runtime.metrics,
                &mut counted,
                msg.topic,
                &processed,
                &outputs,
                took,
            );
            (counted, outputs)
        })
    };
    for (msg, (counted, outputs)) in batch.iter().zip(decided) {
        summary.add(&counted);
        produce(producer, tracker, names.get(msg.topic), msg, outputs).await?;
    }
    Ok(())
}

/// Produces one record's outputs, registered with the offset tracker first.
async fn produce(
    producer: &OutputProducer,
    tracker: &OffsetTracker,
    topic: Arc<str>,
    msg: &Incoming<'_>,
    outputs: Vec<OutRecord>,
) -> Result<(), PipelineError> {
    tracker.begin(msg.topic, msg.partition, msg.offset, outputs.len() as u32);
    let redelivers = producer.context().redelivery.is_some();
    for out in outputs {
        let token = Box::new(AckToken {
            topic: topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            command_of_signal_at: match out.kind {
                OutKind::Command { .. } => msg.timestamp,
                _ => None,
            },
            tracked: true,
            attempts: 0,
            record: None,
            settle: None,
        });
        // Kept with its token only where a failed output is produced again.
        let out = Arc::new(out);
        let token = match redelivers {
            true => redeliver::replace(token, out.clone()),
            false => token,
        };
        send(producer, &out, token).await?;
    }
    Ok(())
}

/// Produces one record, waiting while librdkafka's queue is full (backpressure).
pub(super) async fn send(
    producer: &OutputProducer,
    out: &OutRecord,
    mut token: Box<AckToken>,
) -> Result<(), PipelineError> {
    loop {
        let mut record = BaseRecord::<[u8], [u8], Box<AckToken>>::with_opaque_to(&out.topic, token);
        // An empty changelog record is a tombstone: no value at all, so compaction drops it.
        if !(out.kind == OutKind::State && out.payload.is_empty()) {
            record = record.payload(out.payload.as_slice());
        }
        if let Some(k) = &out.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        if !out.headers.is_empty() {
            record = record.headers(headers(out));
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                token = record.delivery_opaque;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Refused before it left (e.g. a topic name the client rejects): the same policy
            // as a refusal from the broker.
            Err((e, record)) => match &producer.context().redelivery {
                Some(r) if record.delivery_opaque.record.is_some() => {
                    r.failed(record.delivery_opaque, &e);
                    return Ok(());
                }
                _ => return Err(e.into()),
            },
        }
    }
}

fn headers(out: &OutRecord) -> OwnedHeaders {
    out.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        })
    })
}

fn commit(consumer: &SignalConsumer, tracker: &OffsetTracker, mode: CommitMode) {
    if let Err(e) = commit_positions(consumer, tracker, mode) {
        tracing::warn!(error = %e, "offset commit failed; will retry with the next position");
    }
}

#[cfg(test)]
mod tests;
