//! The consume → decide → produce → commit loop.
//!
//! `process` is the pure part (one record in, its outputs out); `kafka` holds the clients'
//! settings and callbacks; `offsets` decides what may be committed; `at_least_once` and
//! `exactly_once` are the two delivery modes over the same processing.

mod at_least_once;
mod exactly_once;
pub mod kafka;
pub mod offsets;
pub mod process;

pub use process::{Incoming, OutKind, OutRecord, Processed, Processor};

use crate::codec::{AvroCodec, Schemas};
use crate::config::{DeliveryMode, Settings};
use crate::telemetry::http::Health;
use crate::telemetry::Metrics;
use std::future::Future;
use std::sync::Arc;

/// Errors that stop the pipeline. Bad input never does: it is dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("bundled Avro schemas: {0}")]
    Schema(#[from] apache_avro::Error),
    #[error("output for {topic}/{partition}@{offset} not acknowledged: {error}; restart resumes from the last committed position")]
    Delivery {
        topic: String,
        partition: i32,
        offset: i64,
        error: String,
    },
    #[error("consumer has no group metadata for the transaction")]
    NoGroupMetadata,
    #[error("shutdown grace period ran out with {0} signals in flight; they will be replayed")]
    GraceExpired(usize),
}

pub use crate::rules::{current, SharedRules};

/// Topic names as shared strings: the acknowledgement tokens and batch keys of every signal
/// of a topic share one allocation instead of one per signal.
#[derive(Default)]
struct TopicNames(std::collections::HashMap<String, Arc<str>>);

impl TopicNames {
    fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.0.get(topic) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(topic);
        self.0.insert(topic.to_string(), name.clone());
        name
    }
}

/// Counts at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub consumed: u64,
    pub decided: u64,
    pub dead_lettered: u64,
    pub commands: u64,
}

/// Everything a run needs besides the settings.
pub struct Runtime {
    pub rules: SharedRules,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// Runs the pipeline until `shutdown` resolves, then drains within the grace period.
pub async fn run(
    settings: Arc<Settings>,
    runtime: Runtime,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, PipelineError> {
    let codec = AvroCodec::new(
        Arc::new(Schemas::bundled()?),
        &settings.input.confluent_schema_ids,
    );
    let processor = Processor::new(settings.clone(), codec);
    {
        let rules = current(&runtime.rules);
        runtime
            .metrics
            .rules_activated(rules.len(), rules.version());
    }
    match settings.delivery.mode {
        DeliveryMode::AtLeastOnce => {
            at_least_once::run(&settings, processor, runtime, shutdown).await
        }
        DeliveryMode::ExactlyOnce => {
            exactly_once::run(&settings, processor, runtime, shutdown).await
        }
    }
}

/// Records what happened to one signal in the metrics and the log.
fn observe(
    metrics: &Metrics,
    summary: &mut RunSummary,
    topic: &str,
    processed: &Processed,
    outputs: &[OutRecord],
    latency: std::time::Duration,
) {
    metrics.signal_consumed(topic);
    summary.consumed += 1;
    match processed {
        Processed::Decided(d) => {
            summary.decided += 1;
            metrics.signal_decided(topic, d.record.outcome.name(), latency);
            for (rule, error) in &d.condition_errors {
                metrics.condition_failed(rule);
                tracing::warn!(rule = %rule, %error, "condition failed to evaluate; treated as no match");
            }
            for o in outputs {
                if let OutKind::Command { target, action } = &o.kind {
                    summary.commands += 1;
                    metrics.command_produced(target, action);
                }
            }
            tracing::debug!(
                outcome = d.record.outcome.name(),
                commands = d.commands.len(),
                "decided"
            );
        }
        Processed::DeadLettered(dl) => {
            summary.dead_lettered += 1;
            metrics.dead_lettered(dl.reason.kind());
            tracing::warn!(topic = %dl.topic, partition = dl.partition, offset = dl.offset,
                reason = %dl.reason, "dead-lettered");
        }
    }
}
