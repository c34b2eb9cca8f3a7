//! The sweep, every `state.sweep_interval`: evictions of state that outlived its use (their
//! changelog records) and the clocks of every store — restores on expiry, hold expiries,
//! re-sends and escalations — produced like any output. Shared by both delivery modes.

use super::at_least_once::{send, OutputProducer, SignalConsumer};
use super::expiry::Outgoing;
use super::kafka::AckToken;
use super::{current, ensure_shard, Context, PipelineError, Processor, Runtime};
use rdkafka::consumer::Consumer;
use std::sync::Arc;

/// Evicts expired state of subjects that got no signal lately and writes their changelog
/// records (not tied to any signal's position: a lost one is swept again, and a rebuild
/// evicts the same entries); runs the clocks (hold expiry, re-sends and escalations,
/// restores on expiry). Returns how many records it produced.
pub(super) async fn sweep(
    processor: &Processor,
    runtime: &Runtime,
    ctx: &Context,
    (consumer, producer): (&SignalConsumer, &OutputProducer),
) -> Result<usize, PipelineError> {
    for (topic, partition) in clock_partitions(consumer) {
        ensure_shard(ctx, runtime, &topic, partition).await?;
    }
    let (records, clocks) = run_clocks(processor, runtime, ctx);
    let size = ctx.state.size();
    runtime.metrics.state_size(size.0, size.1, size.2);
    runtime.metrics.state_written("sweep", records.len());
    processor.chains.announce();
    let records = records
        .into_iter()
        .filter_map(|(topic, partition, key, change)| {
            let out = processor.state_record(&topic, partition, &key, change)?;
            let topic = Arc::from(topic.as_str());
            Some(Outgoing {
                topic,
                partition,
                out,
                settle: None,
            })
        });
    let mut sent = 0;
    for o in records.chain(clocks) {
        let token = Box::new(AckToken {
            topic: o.topic,
            partition: o.partition,
            offset: -1,
            command_of_signal_at: None,
            tracked: false,
            attempts: 0,
            record: None,
            settle: o.settle,
        });
        send(producer, &o.out, token).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Each store's sweep and clocks: its evictions as (topic, partition, key, change), and the
/// records its clocks produce; the rails' and lifecycle's gauges over every store.
#[allow(clippy::type_complexity)]
fn run_clocks(
    processor: &Processor,
    runtime: &Runtime,
    ctx: &Context,
) -> (
    Vec<(String, i32, crate::state::store::Key, crate::state::Change)>,
    Vec<Outgoing>,
) {
    let rules = current(&runtime.rules);
    let inventory = ctx.inventory.read().unwrap_or_else(|p| p.into_inner());
    let metrics = &runtime.metrics;
    let (mut swept, mut clocks) = (Vec::new(), Vec::new());
    let (mut pending, mut open) = (0, super::lifecycle::OpenPaths::new());
    for (_, mut state) in ctx.state.each() {
        swept.extend(state.sweep());
        let now = crate::trust::now_ms();
        let at = (now, &metrics.lifecycle);
        clocks.extend(processor.expiries(&rules, &inventory, &mut state, at));
        let markers = super::holds::expiries(processor, &mut state, &mut pending)
            .into_iter()
            .chain(super::lifecycle::due(processor, &mut state, &mut open));
        clocks.extend(markers.map(|(topic, partition, out)| Outgoing {
            topic,
            partition,
            out,
            settle: None,
        }));
    }
    super::holds::set_gauges(&runtime.breakers, metrics, pending);
    if processor.lifecycle.is_some() {
        metrics.lifecycle.set_open(&open);
    }
    (swept, clocks)
}

/// The assigned partitions, every one of which may run clocks (inputs: restores on expiry;
/// approvals: hold expiry; results: re-sends and escalations): their state is rebuilt at the
/// first sweep after an assignment, so a clock fires after a restart even when no new record
/// reaches the partition.
fn clock_partitions(consumer: &SignalConsumer) -> Vec<(String, i32)> {
    let Ok(assigned) = consumer.assignment() else {
        return Vec::new();
    };
    assigned
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}
