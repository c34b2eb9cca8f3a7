//! librdkafka clients' callbacks: the two contexts carry delivery acknowledgements and rebalance events into the offset tracker.

use super::offsets::{DeliveryFailure, OffsetTracker};
use super::redeliver::Redelivery;
use crate::state::Stores;
use crate::telemetry::http::Health;
use crate::telemetry::throttle::Throttle;
use crate::telemetry::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::client::{consumer_config, producer_config};

/// Commits every position that moved (`Async`: since the last call; `Sync`: all of them, for
/// shutdown). A failed commit only leaves an older position, which replays harmlessly; the
/// next commit carries the position again.
pub fn commit_positions<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    tracker: &OffsetTracker,
    mode: CommitMode,
) -> rdkafka::error::KafkaResult<()> {
    let moved = match mode {
        CommitMode::Async => tracker.take_commits(),
        CommitMode::Sync => tracker.all_positions(),
    };
    if moved.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in &moved {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, mode)
}

/// Identifies the signal an output record belongs to, carried through librdkafka as the
/// delivery opaque.
#[derive(Debug)]
pub struct AckToken {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Signal record timestamp, for the signal→command latency of command records.
    pub command_of_signal_at: Option<i64>,
    /// Counts towards the signal's commit position (everything but swept state records,
    /// which belong to no signal).
    pub tracked: bool,
    /// Times the record was produced and not acknowledged (see `redeliver`).
    pub attempts: u32,
    /// The record, to produce again (or dead-letter) when it is not acknowledged; `None` where
    /// a failure stops the pipeline instead (exactly_once aborts its transaction).
    pub record: Option<Arc<super::OutRecord>>,
    /// A restore on expiry this output belongs to (see `expiry`): told when it is
    /// acknowledged or fails.
    pub settle: Option<Arc<super::expiry::Settle>>,
}

/// Producer context: every acknowledgement goes to the offset tracker.
pub struct AckContext {
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Where outputs that were not acknowledged wait to be produced again; `None`: a failure
    /// stops the pipeline (exactly_once, whose transaction aborts and replays).
    pub redelivery: Option<Arc<Redelivery>>,
}

impl ClientContext for AckContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error.rdkafka_error_code(), Some(code) if code == rdkafka::types::RDKafkaErrorCode::Fatal)
        {
            self.health.producer_failed();
        }
        static LOG: Throttle = Throttle::per(1, crate::telemetry::throttle::CLIENT_WINDOW);
        if let Some(dropped) = LOG.allow() {
            tracing::error!(%error, reason, unlogged_before = dropped, "producer error");
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::telemetry::throttle::librdkafka_log(level, fac, message);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<AckToken>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Box<AckToken>) {
        match result {
            Ok(_) if !token.tracked => {
                if let Some(s) = &token.settle {
                    s.ack();
                }
            }
            Ok(_) => {
                self.tracker
                    .ack(&token.topic, token.partition, token.offset);
                if let Some(ts) = token.command_of_signal_at {
                    self.metrics.command_acknowledged(ts);
                }
            }
            Err((error, _)) if !token.tracked => {
                if let Some(s) = &token.settle {
                    s.fail();
                }
                // A swept record: the sweep runs again, and a rebuild evicts anyway.
                tracing::warn!(%error, "state sweep record not acknowledged");
            }
            Err((error, _)) if self.redelivery.is_some() => {
                self.metrics.delivery_failed();
                static LOG: Throttle = Throttle::new(5);
                if let Some(dropped) = LOG.allow() {
                    tracing::error!(%error, topic = %token.topic, partition = token.partition,
                        offset = token.offset, attempts = token.attempts + 1, unlogged_before = dropped,
                        "output not acknowledged; producing it again (see docs/operations.md for the policy)");
                }
                if let Some(r) = &self.redelivery {
                    r.failed(token, error);
                }
            }
            Err((error, _)) => {
                self.metrics.delivery_failed();
                tracing::error!(%error, topic = %token.topic, partition = token.partition,
                    offset = token.offset, "output not acknowledged; stopping before committing past it");
                self.tracker.fail(DeliveryFailure {
                    topic: token.topic.to_string(),
                    partition: token.partition,
                    offset: token.offset,
                    error: error.to_string(),
                });
            }
        }
    }
}

/// Consumer context: on revocation, drain the partition's in-flight outputs, commit its
/// position, then let it go; the next owner resumes exactly there.
pub struct RebalanceContext {
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub drain_timeout: Duration,
    /// exactly_once commits through transactions, so revocation only forgets.
    pub commit_on_revoke: bool,
    pub assigned: Mutex<HashSet<(String, i32)>>,
    /// Partition state: dropped on revocation, and on assignment so it is rebuilt from the
    /// changelog (another instance may have moved it on meanwhile).
    pub state: Arc<Stores>,
    /// The state changelog and its partitions.
    pub changelog: (String, usize),
    /// Set when a partition beyond the changelog's is assigned; the loop stops on it.
    pub too_narrow: Mutex<Option<crate::pipeline::changelog::StateError>>,
    pub narrow: std::sync::atomic::AtomicBool,
    /// Partitions revoked or assigned since the loop last asked: records it holds of them,
    /// fetched before the rebalance, are not decided (see `at_least_once::gather`).
    pub moved: Mutex<Vec<(String, i32)>>,
}

impl RebalanceContext {
    /// A partition was assigned that the changelog has no partition for: a deployment to fix
    /// (exit 78), taken by the loop.
    pub fn take_too_narrow(&self) -> Option<crate::pipeline::changelog::StateError> {
        // Checked once per signal: a lock only after an assignment said so.
        if !self.narrow.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.too_narrow.lock().ok()?.take()
    }

    fn check_width(&self, tpl: &TopicPartitionList) {
        let (changelog, width) = &self.changelog;
        let Some(widest) = tpl.elements().into_iter().max_by_key(|e| e.partition()) else {
            return;
        };
        if (widest.partition() as usize) < *width {
            return;
        }
        let error = crate::pipeline::changelog::StateError::TooFewPartitions {
            topic: changelog.clone(),
            partitions: *width,
            input: widest.topic().to_string(),
            input_partitions: widest.partition() as usize + 1,
        };
        if let Ok(mut slot) = self.too_narrow.lock() {
            slot.get_or_insert(error);
            self.narrow
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    /// The partitions revoked or assigned since the last call.
    pub fn take_moved(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.moved.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn note_moved(&self, tpl: &TopicPartitionList) {
        let mut moved = self.moved.lock().unwrap_or_else(|p| p.into_inner());
        moved.extend(
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition())),
        );
    }

    fn set_assigned(&self, update: impl FnOnce(&mut HashSet<(String, i32)>)) {
        let mut a = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        update(&mut a);
        self.metrics.set_assigned_partitions(a.len());
        self.health.set_assigned(a.len());
    }

    fn forget_state(&self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            let (topic, partition) = (e.topic(), e.partition());
            self.state
                .of(topic, partition)
                .remove_shard(topic, partition);
        }
    }

    fn drain_and_commit(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let deadline = Instant::now() + self.drain_timeout;
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        while parts.iter().any(|(t, p)| self.tracker.pending(t, *p) > 0) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "revoked partitions still had unacknowledged outputs after {:?}; the next owner replays them",
                    self.drain_timeout
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut commit = TopicPartitionList::new();
        for (t, p) in &parts {
            if let Some(pos) = self.tracker.position(t, *p) {
                // Adding a partition to a fresh list cannot fail for a valid offset.
                let _ = commit.add_partition_offset(t, *p, Offset::Offset(pos));
            }
        }
        if commit.count() > 0 {
            if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                tracing::warn!(error = %e, "commit on revocation failed; the next owner may replay");
            }
        }
    }
}

/// A broker that has sent nothing for this long (µs) does not count as reachable.
const SILENT_BROKER_US: i64 = 15_000_000;

impl ClientContext for RebalanceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.health.set_brokers_down(true);
        }
        static LOG: Throttle = Throttle::per(1, crate::telemetry::throttle::CLIENT_WINDOW);
        if let Some(dropped) = LOG.allow() {
            tracing::error!(%error, reason, unlogged_before = dropped, "consumer client error");
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::telemetry::throttle::librdkafka_log(level, fac, message);
    }

    fn stats(&self, stats: Statistics) {
        // Bootstrap entries aside, is any broker connected and answering? A connection the
        // network dropped without a reset stays "UP" until the socket times out; a consumer
        // fetches and heartbeats every few seconds, so silence is the earlier sign.
        let up = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP" && (0..SILENT_BROKER_US).contains(&b.rxidle));
        self.health.set_brokers_down(!up);
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .set_consumer_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            // The next commit (or the final synchronous one) carries the position again.
            tracing::warn!(error = %e, "offset commit failed");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions revoked; draining");
            self.note_moved(tpl);
            if self.commit_on_revoke {
                self.drain_and_commit(consumer, tpl);
            }
            self.set_assigned(|a| {
                for e in tpl.elements() {
                    a.remove(&(e.topic().to_string(), e.partition()));
                    self.tracker.remove(e.topic(), e.partition());
                    self.metrics.forget_consumer_lag(e.topic(), e.partition());
                }
            });
            self.forget_state(tpl);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.note_moved(tpl);
                self.check_width(tpl);
                self.set_assigned(|a| {
                    for e in tpl.elements() {
                        a.insert((e.topic().to_string(), e.partition()));
                    }
                });
                self.forget_state(tpl);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
