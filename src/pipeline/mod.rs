//! The consume → decide → produce → commit loop.
//!
//! `process` is the pure part (one record in, its outputs out); `kafka` holds the clients'
//! settings and callbacks; `offsets` decides what may be committed; `at_least_once` and
//! `exactly_once` are the two delivery modes over the same processing; `workers` decides a
//! batch's partitions in parallel; `sweep` runs evictions and clocks.

mod at_least_once;
pub mod changelog;
mod encode;
mod exactly_once;
pub mod expiry;
pub mod fit;
mod holds;
pub mod kafka;
mod lifecycle;
pub mod offsets;
pub mod process;
pub mod redeliver;
mod sweep;
pub mod workers;

use crate::telemetry::throttle::Throttle;
pub use process::{Incoming, OutKind, OutRecord, Processed, Processor};

use crate::codec::{AvroCodec, Schemas};
use crate::config::{DeliveryMode, Settings};
use crate::inventory::tail::{Tail, TailError};
use crate::inventory::SharedInventory;
use crate::state::{Retention, Stores};
use crate::telemetry::http::Health;
use crate::telemetry::Metrics;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    #[error("cannot start the decide workers: {0}")]
    Workers(String),
    #[error("consumer has no group metadata for the transaction")]
    NoGroupMetadata,
    #[error("shutdown grace period ran out with {0} signals in flight; they will be replayed")]
    GraceExpired(usize),
    #[error(transparent)]
    State(#[from] changelog::StateError),
    #[error(transparent)]
    Inventory(#[from] TailError),
    /// A shutdown was asked for while waiting for the broker: a clean stop.
    #[error("stopped while waiting for the broker")]
    Interrupted,
    #[error(transparent)]
    Connect(#[from] crate::client::connect::ConnectError),
    /// exactly_once on a cluster that will not give this instance a transactional producer.
    #[error("delivery.mode = \"exactly_once\": the broker refuses transactions ({0}); grant the transactional id (docs/deploy.md), use a broker with transactions, or delivery.mode = \"at_least_once\"")]
    TransactionsRefused(String),
}

impl PipelineError {
    /// `init_transactions` failing: a broker out of reach is waited for by a restart (exit 1);
    /// anything else (an authorization error, no transaction support) is the deployment's.
    pub fn from_init_transactions(e: rdkafka::error::KafkaError) -> Self {
        use rdkafka::types::RDKafkaErrorCode as C;
        match e.rdkafka_error_code() {
            Some(C::OperationTimedOut | C::BrokerTransportFailure | C::AllBrokersDown) | None => {
                Self::Kafka(e)
            }
            Some(_) => Self::TransactionsRefused(e.to_string()),
        }
    }

    /// A configuration or deployment to fix, which no restart mends: the daemon exits 78
    /// (EX_CONFIG), so `RestartPreventExitStatus=78` stops a crash loop.
    pub fn is_config(&self) -> bool {
        match self {
            Self::Connect(e) => e.is_config(),
            Self::State(e) => e.is_config(),
            Self::TransactionsRefused(_) => true,
            _ => false,
        }
    }
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

impl RunSummary {
    /// Adds a committed batch's counts.
    pub fn add(&mut self, batch: &RunSummary) {
        self.consumed += batch.consumed;
        self.decided += batch.decided;
        self.dead_lettered += batch.dead_lettered;
        self.commands += batch.commands;
    }
}

/// Everything a run needs besides the settings.
pub struct Runtime {
    pub rules: SharedRules,
    /// Sources, their authority and SET keys ([`crate::trust::Trust::load`]).
    pub trust: Arc<crate::trust::Trust>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The circuit breakers (configured from `[safety] breakers` when the run starts),
    /// shared with the `/breakers` endpoint.
    pub breakers: crate::safety::breakers::SharedBreakers,
}

/// What the loop keeps besides offsets: the inventory and the state of owned partitions.
pub(crate) struct Context {
    pub settings: Arc<Settings>,
    pub inventory: SharedInventory,
    /// One state store per decide worker, each holding its partitions.
    pub state: Arc<Stores>,
    pub workers: workers::Workers,
    pub restorer: Arc<changelog::Restorer>,
    /// Partitions of the state changelog: no input partition may be beyond them.
    pub changelog_width: usize,
}

/// How long state is kept under these rules and settings.
pub fn retention(settings: &Settings) -> Retention {
    Retention {
        margin: settings.state.replay_margin,
        max_entries: settings.state.max_entries,
    }
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
    let processor = Processor::new(settings.clone(), codec.clone(), runtime.trust.clone());
    let retention = {
        let rules = current(&runtime.rules);
        runtime
            .metrics
            .rules_activated(rules.len(), rules.version());
        retention(&settings)
    };
    crate::safety::breakers::lock(&runtime.breakers).configure(&settings.safety.breakers);
    tokio::pin!(shutdown);
    tokio::select! {
        reached = wait_for_cluster(&settings, &runtime.health) => reached?,
        _ = &mut shutdown => return Ok(RunSummary::default()),
    }
    let inventory = SharedInventory::default();
    let _tail = tokio::select! {
        tail = load_inventory(&settings, &runtime, &inventory, codec) => tail?,
        _ = &mut shutdown => return Ok(RunSummary::default()),
    };
    let mut failures = 0;
    let changelog_width = loop {
        let e = match ensure_topics(&settings, &processor).await {
            Ok(width) => break width,
            Err(e) if !e.is_transient() => return Err(e.into()),
            Err(e) => e,
        };
        failures += 1;
        tracing::error!(error = %e, attempt = failures, "cannot check the state changelog topic yet; retrying");
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1 << failures.min(5))) => {}
            _ = &mut shutdown => return Ok(RunSummary::default()),
        }
    };
    let ctx = Context {
        settings: settings.clone(),
        inventory,
        state: Arc::new(Stores::new(
            settings.decide.workers,
            retention,
            runtime.breakers.clone(),
        )),
        workers: workers::Workers::new(settings.decide.workers)
            .map_err(|e| PipelineError::Workers(e.to_string()))?,
        restorer: Arc::new(changelog::Restorer::new(&settings)?),
        changelog_width,
    };
    match settings.delivery.mode {
        DeliveryMode::AtLeastOnce => {
            at_least_once::run(&settings, processor, runtime, ctx, shutdown).await
        }
        DeliveryMode::ExactlyOnce => {
            exactly_once::run(&settings, processor, runtime, ctx, shutdown).await
        }
    }
}

/// Starts following the inventory topic (when configured) and waits until its contents are
/// read; the daemon is not ready meanwhile.
async fn load_inventory(
    settings: &Settings,
    runtime: &Runtime,
    inventory: &SharedInventory,
    codec: AvroCodec,
) -> Result<Option<Tail>, PipelineError> {
    let Some(topic) = &settings.inventory.topic else {
        return Ok(None);
    };
    let tail = Tail::start(
        settings,
        topic,
        inventory.clone(),
        codec,
        runtime.metrics.clone(),
    )?;
    if settings.inventory.required {
        tracing::info!(%topic, "waiting for the inventory (not ready until it is read)");
    }
    runtime.health.set_inventory_waiting(true);
    tail.wait_loaded().await;
    runtime.health.set_inventory_waiting(false);
    Ok(Some(tail))
}

/// Waits until the cluster answers and every input topic exists, so topic setup never
/// guesses (a changelog created before its input would be too narrow). A refused login or
/// certificate is a configuration to fix, returned at once.
async fn wait_for_cluster(settings: &Settings, health: &Health) -> Result<(), PipelineError> {
    use crate::client::connect;
    let probe = Arc::new(connect::probe(settings)?);
    let mut said = None;
    loop {
        health.beat();
        let (p, s) = (probe.clone(), settings.clone());
        let answer = tokio::task::spawn_blocking(move || {
            connect::metadata(&p, &s, std::time::Duration::from_secs(5))
        })
        .await
        .map_err(|_| PipelineError::Interrupted)?;
        let waiting = match answer {
            Err(e) if e.is_config() => return Err(PipelineError::Connect(e)),
            Err(e) => e.to_string(),
            Ok(cluster) => match cluster.missing_inputs(settings) {
                missing if missing.is_empty() => return Ok(()),
                missing => format!("input topic(s) {} do not exist yet", missing.join(", ")),
            },
        };
        // One line per change of what is awaited, not one per attempt.
        if said.as_ref() != Some(&waiting) {
            tracing::warn!(reason = %waiting, "waiting before topic setup; not ready until then");
            said = Some(waiting);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The approvals and results topics (created when missing), then the changelog (checked
/// against the inputs', approvals and results topics' partitions, created when missing and
/// allowed); the results topic's partitions go to the processor's lifecycle.
async fn ensure_topics(
    settings: &Settings,
    processor: &Processor,
) -> Result<usize, changelog::StateError> {
    changelog::ensure_approvals_topic(settings).await?;
    if let Some(n) = changelog::ensure_results_topic(settings).await? {
        if let Some(l) = processor.lifecycle() {
            l.set_partitions(n);
        }
    }
    let decisions = &settings.output.decisions_topic;
    match changelog::partitions_of(settings, decisions).await? {
        Some(n) => processor.chains.set_partitions(n),
        None => tracing::error!(topic = %decisions,
            "decisions topic missing: decision records are NOT chained (docs/evidence.md) until a restart finds it; create it before containd starts"),
    }
    tracing::info!(run = processor.chains.run(), "evidence chains of this run");
    changelog::ensure_topic(settings).await
}

/// Rebuilds a partition's state from the changelog unless this instance holds it already.
async fn ensure_shard(
    ctx: &Context,
    runtime: &Runtime,
    topic: &str,
    partition: i32,
) -> Result<(), PipelineError> {
    if ctx.state.of(topic, partition).has_shard(topic, partition) {
        return Ok(());
    }
    let started = Instant::now();
    let mut failures = 0u32;
    let shard = loop {
        match restore(ctx, topic, partition).await {
            Ok(shard) => break shard,
            Err(e) => {
                if failures == 0 {
                    runtime.health.restore_failing(true);
                }
                failures += 1;
                runtime.metrics.state_restore_failed();
                static LOG: Throttle = Throttle::new(1);
                if let Some(dropped) = LOG.allow() {
                    tracing::error!(error = %e, attempt = failures, unlogged_before = dropped,
                        "partition state cannot be rebuilt yet; retrying (not ready meanwhile)");
                }
                if !wait_to_retry(&runtime.health, failures).await {
                    runtime.health.restore_failing(false);
                    return Err(PipelineError::Interrupted);
                }
            }
        }
    };
    if failures > 0 {
        runtime.health.restore_failing(false);
    }
    let took = started.elapsed();
    runtime.metrics.state_restored(took);
    let skipped = ctx
        .restorer
        .skipped
        .swap(0, std::sync::atomic::Ordering::Relaxed);
    runtime.metrics.state_records_skipped(skipped);
    tracing::info!(
        topic,
        partition,
        subjects = shard.subjects.len(),
        took_ms = took.as_millis() as u64,
        "partition state rebuilt from the changelog"
    );
    ctx.state
        .of(topic, partition)
        .insert_shard(topic, partition, shard);
    let (shards, subjects, entries) = ctx.state.size();
    runtime.metrics.state_size(shards, subjects, entries);
    Ok(())
}

/// One rebuild of a partition's state, off the async threads.
async fn restore(
    ctx: &Context,
    topic: &str,
    partition: i32,
) -> Result<crate::state::Shard, changelog::StateError> {
    let (restorer, owned) = (ctx.restorer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || restorer.restore(&owned, partition))
        .await
        .map_err(|e| changelog::StateError::Restore {
            topic: topic.to_string(),
            partition,
            changelog: ctx.settings.state.changelog_topic.clone(),
            error: e.to_string(),
        })?
}

/// Waits before the `failures`th retry (1 s, doubling to 30 s); `false` when a shutdown
/// was asked for meanwhile.
async fn wait_to_retry(health: &Health, failures: u32) -> bool {
    let backoff = std::time::Duration::from_secs(1 << failures.min(5)).min(RETRY_MAX);
    let until = Instant::now() + backoff;
    while Instant::now() < until {
        if health.is_stopping() {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    !health.is_stopping()
}

const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            observe_outputs(metrics, summary, outputs);
            observe_decision(metrics, d);
        }
        Processed::Approval(a) => {
            if let Some(d) = &a.decision {
                metrics
                    .rails
                    .approval(d.record.outcome.name(), a.latency_ms);
            }
            observe_outputs(metrics, summary, outputs);
        }
        Processed::Result(r) => {
            lifecycle::observe(&metrics.lifecycle, r);
            observe_outputs(metrics, summary, outputs);
        }
        Processed::DeadLettered(dl) => {
            summary.dead_lettered += 1;
            metrics.dead_lettered(dl.reason.kind());
            static LOG: Throttle = Throttle::new(10);
            if let Some(dropped) = LOG.allow() {
                tracing::warn!(topic = %dl.topic, partition = dl.partition, offset = dl.offset,
                    kind = dl.reason.kind(), reason = %fit::reason(&dl.reason.to_string()),
                    unlogged_before = dropped, "dead-lettered");
            }
        }
    }
}

/// Commands produced and changelog records written for one record.
fn observe_outputs(metrics: &Metrics, summary: &mut RunSummary, outputs: &[OutRecord]) {
    let mut state_records = 0;
    for o in outputs {
        match &o.kind {
            OutKind::Command { target, action } => {
                summary.commands += 1;
                metrics.command_produced(target, action);
            }
            OutKind::State => state_records += 1,
            _ => {}
        }
    }
    if state_records > 0 {
        metrics.state_written("decision", state_records);
    }
}

/// What a decision did besides its outputs: condition errors, suppressions, holds, breakers
/// opened, trust and the identity it concerned.
fn observe_decision(metrics: &Metrics, d: &crate::decide::Decision) {
    for (rule, error) in &d.condition_errors {
        metrics.condition_failed(rule);
        static LOG: Throttle = Throttle::new(10);
        if let Some(dropped) = LOG.allow() {
            tracing::warn!(rule = %rule, error = %fit::reason(error), unlogged_before = dropped,
                "condition failed to evaluate; treated as no match");
        }
    }
    for s in d.record.matched_rules.iter().flat_map(|r| &r.suppressed) {
        metrics.command_suppressed(&s.target, &s.action);
    }
    for h in &d.record.held {
        metrics.command_held(&h.reason, &h.action);
    }
    for b in &d.tripped {
        metrics.rails.breaker_tripped(b);
    }
    observe_trust(metrics, &d.record);
    let identity = &d.record.identity;
    metrics.identity_decided(match (&identity.id, identity.ownerless) {
        (None, _) => "unknown",
        (Some(_), true) => "ownerless",
        (Some(_), false) => "known",
    });
    tracing::debug!(
        outcome = d.record.outcome.name(),
        commands = d.commands.len(),
        "decided"
    );
}

/// A consumer error (a broker unreachable, a fetch failing): librdkafka retries by itself;
/// the log says so a few times a second at most.
fn consumer_error(e: &rdkafka::error::KafkaError) {
    static LOG: Throttle = Throttle::per(1, crate::telemetry::throttle::CLIENT_WINDOW);
    if let Some(dropped) = LOG.allow() {
        tracing::warn!(error = %e, unlogged_before = dropped, "consumer error");
    }
}

/// Untrusted and duplicate signals and refused commands, in the metrics and (rate-bounded by
/// the debug level) the log.
fn observe_trust(metrics: &Metrics, record: &crate::emit::DecisionRecord) {
    use crate::emit::Verdict;
    let trust = &record.trust;
    if trust.verdict != Verdict::Trusted {
        let reason = trust.reason_kind.as_deref().unwrap_or("unknown");
        let configured = reason != "unknown_issuer";
        metrics.signal_untrusted(reason, configured.then_some(trust.issuer.as_str()));
        tracing::debug!(
            reason,
            detail = trust.reason.as_deref().unwrap_or_default(),
            "signal not acted on"
        );
    }
    for r in &record.refused {
        metrics.command_refused(&r.target, &r.action);
    }
}
