//! `containd demo`: the seed scenarios end to end on librdkafka's in-process mock cluster,
//! through the same pipeline code as `run`. Needs nothing installed.

use crate::cli::say;
use crate::codec::{AvroCodec, Schemas};
use crate::config::{self, OutputFormat, Settings};
use crate::emit::{DecisionRecord, EnforcementCommand};
use crate::pipeline::{self, Runtime, SharedRules};
use crate::rules;
use crate::signal::Signal;
use crate::telemetry::http::Health;
use crate::telemetry::Metrics;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

mod inputs;
mod lifecycle;
mod print;

use inputs::{demo_breaker, TrustDemo};
use print::print;

const CONFIG: &str = include_str!("../../examples/containd.toml");
const SIGNALS: &str = include_str!("../../examples/signals/seed-scenarios.jsonl");
const INVENTORY: &str = include_str!("../../examples/inventory/identities.jsonl");
const RULES: &[(&str, &str)] = &[
    (
        "10-device-posture.yaml",
        include_str!("../../examples/rules/10-device-posture.yaml"),
    ),
    (
        "20-secrets.yaml",
        include_str!("../../examples/rules/20-secrets.yaml"),
    ),
    (
        "30-pam.yaml",
        include_str!("../../examples/rules/30-pam.yaml"),
    ),
    (
        "40-incident.yaml",
        include_str!("../../examples/rules/40-incident.yaml"),
    ),
    (
        "50-policy.yaml",
        include_str!("../../examples/rules/50-policy.yaml"),
    ),
];

/// Errors of the demo itself (the pipeline's own are reported as such).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("embedded example config: {0}")]
    Config(config::Problems),
    #[error("embedded rules: {0}")]
    Rules(config::Problems),
    #[error("embedded sample signals, line {line}: {error}")]
    Signals {
        line: usize,
        error: serde_json::Error,
    },
    #[error("embedded example inventory, line {line}: {error}")]
    Inventory {
        line: usize,
        error: serde_json::Error,
    },
    #[error("mock cluster: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] pipeline::PipelineError),
    #[error("bundled schemas: {0}")]
    Schema(#[from] apache_avro::Error),
    #[error("encoding a record: {0}")]
    Encode(#[from] crate::codec::EncodeError),
    #[error("only {got} of {want} decisions arrived within {secs}s")]
    Timeout { got: usize, want: usize, secs: u64 },
    #[error("output does not decode: {0}")]
    Decode(#[from] crate::codec::DecodeError),
    #[error("demo SET: {0}")]
    Set(String),
    #[error("trust: {0}")]
    Trust(config::Problems),
}

pub async fn run(json: bool) -> ExitCode {
    match demo(json).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containd demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The embedded example settings, pointed at `bootstrap`.
pub fn demo_settings(bootstrap: &str) -> Result<Settings, DemoError> {
    let mut settings =
        config::parse(Path::new("examples/containd.toml"), CONFIG).map_err(DemoError::Config)?;
    settings.kafka.set("bootstrap.servers", bootstrap);
    settings.telemetry.listen = None;
    settings.delivery.commit_interval = Duration::from_millis(100);
    Ok(settings)
}

/// Creates every topic `settings` name on the mock cluster (it has no CreateTopics, so the
/// state changelog cannot create itself): signal, changelog and output topics with
/// `partitions`, the dead-letter and inventory topics with one.
pub fn create_topics<C: rdkafka::ClientContext>(
    mock: &MockCluster<'_, C>,
    settings: &Settings,
    partitions: i32,
) -> Result<(), DemoError> {
    let wide = settings
        .input
        .topics
        .iter()
        .chain([
            &settings.state.changelog_topic,
            &settings.output.decisions_topic,
            &settings.lifecycle.results_topic,
        ])
        .chain(settings.targets.iter().map(|t| &t.topic));
    for topic in wide {
        mock.create_topic(topic, partitions, 1)?;
    }
    for topic in [
        Some(&settings.output.dead_letter_topic),
        settings.inventory.topic.as_ref(),
        Some(&settings.safety.approvals_topic),
    ]
    .into_iter()
    .flatten()
    {
        mock.create_topic(topic, 1, 1)?;
    }
    Ok(())
}

/// The embedded sample signals.
pub fn sample_signals() -> Result<Vec<Signal>, DemoError> {
    SIGNALS
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|error| DemoError::Signals { line: i + 1, error })
        })
        .collect()
}

/// The example inventory onto its topic, keyed by identity id.
async fn send_inventory(producer: &FutureProducer, topic: &str) -> Result<(), DemoError> {
    for (i, line) in INVENTORY.lines().enumerate() {
        let record: crate::inventory::IdentityRecord = serde_json::from_str(line)
            .map_err(|error| DemoError::Inventory { line: i + 1, error })?;
        producer
            .send(
                FutureRecord::to(topic).key(&record.id).payload(line),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// The seed signals onto the signal topic, keyed by subject.
async fn send_signals(
    producer: &FutureProducer,
    topic: &str,
    signals: &[Signal],
) -> Result<(), DemoError> {
    for s in signals {
        let payload =
            serde_json::to_vec(s).map_err(|error| DemoError::Signals { line: 0, error })?;
        let key = s.subject.id().unwrap_or_default();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

async fn demo(json: bool) -> Result<(), DemoError> {
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let mut settings = demo_settings(&bootstrap)?;
    let trust_demo = TrustDemo::new(&mut settings)?;
    settings.safety.breakers.push(demo_breaker());
    let lifecycle_key = lifecycle::configure(&mut settings)?;
    let ruleset = rules::load_sources(
        RULES
            .iter()
            .map(|(n, t)| (PathBuf::from("examples/rules").join(n), t.to_string()))
            .collect(),
        &settings.targets,
        &settings.extra_actions,
    )
    .map_err(|p| DemoError::Rules(config::Problems(p)))?;
    let version = ruleset.version().to_string();
    create_topics(&mock, &settings, 3)?;
    let inventory_topic = settings.inventory.topic.clone();

    let mut signals = sample_signals()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    if let Some(topic) = &inventory_topic {
        send_inventory(&producer, topic).await?;
    }
    send_signals(&producer, &settings.input.topics[0], &signals).await?;
    trust_demo.send(&producer, &settings).await?;
    signals.extend(trust_demo.signals(&settings)?);
    let trust = crate::trust::Trust::load(&settings, Path::new("examples/containd.toml"))
        .map_err(|p| DemoError::Trust(config::Problems(p)))?;
    let settings = Arc::new(settings);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shared: SharedRules = Arc::new(RwLock::new(Arc::new(ruleset)));
    let runtime = Runtime {
        trust: Arc::new(trust),
        rules: shared,
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(Health::default()),
        breakers: Default::default(),
    };
    let pipeline = tokio::spawn(pipeline::run(settings.clone(), runtime, async {
        let _ = stop_rx.await;
    }));

    let adapters = tokio::spawn(lifecycle::adapters(settings.clone(), bootstrap.clone()));
    let collected = collect(&settings, &bootstrap, signals.len()).await;
    adapters.abort();
    let _ = std::fs::remove_file(&lifecycle_key);
    let _ = stop_tx.send(());
    let summary = pipeline.await.map_err(|_| DemoError::Timeout {
        got: 0,
        want: signals.len(),
        secs: 0,
    })??;
    let (all, commands) = collected?;
    let (tracked, decisions): (Vec<_>, Vec<_>) = all.into_iter().partition(lifecycle::is_lifecycle);
    print(
        json,
        &signals,
        &decisions,
        &commands,
        &version,
        summary.dead_lettered,
    );
    if !json {
        lifecycle::print(
            &decisions
                .iter()
                .chain(&tracked)
                .cloned()
                .collect::<Vec<_>>(),
            &commands,
        );
    }
    Ok(())
}

type Collected = (Vec<DecisionRecord>, HashMap<String, EnforcementCommand>);

/// Reads decisions and commands back from the output topics until every signal is decided.
async fn collect(
    settings: &Settings,
    bootstrap: &str,
    want: usize,
) -> Result<Collected, DemoError> {
    let codec = AvroCodec::new(Arc::new(Schemas::bundled()?), &[]);
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "containd-demo-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut topics: Vec<&str> = settings.targets.iter().map(|t| t.topic.as_str()).collect();
    topics.push(&settings.output.decisions_topic);
    reader.subscribe(&topics)?;
    let mut decisions = Vec::new();
    let mut commands = HashMap::new();
    let secs = 60;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let complete = |d: &Vec<DecisionRecord>, c: &HashMap<String, EnforcementCommand>| {
        d.iter().filter(|d| !lifecycle::is_lifecycle(d)).count() >= want
            && d.iter()
                .flat_map(|d| &d.command_ids)
                .all(|id| c.contains_key(id))
            && lifecycle::settled(d)
    };
    while !complete(&decisions, &commands) {
        let msg = match tokio::time::timeout_at(deadline, reader.recv()).await {
            Ok(m) => m?,
            Err(_) => {
                return Err(DemoError::Timeout {
                    got: decisions.len(),
                    want,
                    secs,
                })
            }
        };
        let payload = msg.payload().unwrap_or_default();
        let json = settings.output.format == OutputFormat::Json;
        if msg.topic() == settings.output.decisions_topic {
            let d: DecisionRecord = if json {
                serde_json::from_slice(payload)
                    .map_err(|e| crate::codec::DecodeError::BadJson(e.to_string()))?
            } else {
                codec.decode_decision(payload)?
            };
            decisions.push(d);
        } else {
            let c: EnforcementCommand = if json {
                serde_json::from_slice(payload)
                    .map_err(|e| crate::codec::DecodeError::BadJson(e.to_string()))?
            } else {
                codec.decode_command(payload)?
            };
            commands.insert(c.command_id.clone(), c);
        }
    }
    Ok((decisions, commands))
}
