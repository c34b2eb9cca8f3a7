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

const CONFIG: &str = include_str!("../examples/containd.toml");
const SIGNALS: &str = include_str!("../examples/signals/seed-scenarios.jsonl");
const INVENTORY: &str = include_str!("../examples/inventory/identities.jsonl");
const RULES: &[(&str, &str)] = &[
    (
        "10-device-posture.yaml",
        include_str!("../examples/rules/10-device-posture.yaml"),
    ),
    (
        "20-secrets.yaml",
        include_str!("../examples/rules/20-secrets.yaml"),
    ),
    ("30-pam.yaml", include_str!("../examples/rules/30-pam.yaml")),
    (
        "40-incident.yaml",
        include_str!("../examples/rules/40-incident.yaml"),
    ),
    (
        "50-policy.yaml",
        include_str!("../examples/rules/50-policy.yaml"),
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
    #[error("only {got} of {want} decisions arrived within {secs}s")]
    Timeout { got: usize, want: usize, secs: u64 },
    #[error("output does not decode: {0}")]
    Decode(#[from] crate::codec::DecodeError),
    #[error("demo SET: {0}")]
    Set(String),
    #[error("trust: {0}")]
    Trust(config::Problems),
}

/// The issuer whose SETs the demo signs and verifies, and the topic they travel on.
const SET_ISSUER: &str = "https://mdm.acme.example";
const SET_TOPIC: &str = "identity.signals.set.v1";
const SET_AUDIENCE: &str = "https://containd.acme.example";

/// The demo's transmitter: a fresh ES256 key whose JWKS the MDM source is configured with,
/// a SET it signs (device non-compliant), a JSON signal from an unlisted issuer, and a
/// rotation for a break-glass account (protected by the example's `[safety]`: held).
struct TrustDemo {
    jwks_file: PathBuf,
    set: String,
    untrusted: Vec<u8>,
    protected: Vec<u8>,
    /// A small flood of rotations, past the demo's circuit breaker.
    flood: Vec<Vec<u8>>,
}

impl TrustDemo {
    fn new(settings: &mut Settings) -> Result<Self, DemoError> {
        let signer =
            crate::trust::signer::SetSigner::generate("mdm-demo-1").map_err(DemoError::Set)?;
        let jwks_file =
            std::env::temp_dir().join(format!("containd-demo-jwks-{}.json", std::process::id()));
        std::fs::write(&jwks_file, signer.jwks()).map_err(|e| DemoError::Set(e.to_string()))?;
        if let Some(s) = settings.sources.iter_mut().find(|s| s.issuer == SET_ISSUER) {
            s.jwks_file = Some(jwks_file.clone());
            s.audience = Some(SET_AUDIENCE.into());
            // The demo's MDM feeds the bus both ways: normalized signals (the seed scenarios)
            // and signed SETs. A production source with keys would act through SETs only.
            s.require_signed = Some(false);
        }
        settings.input.topics.push(SET_TOPIC.into());
        settings
            .input
            .formats
            .insert(SET_TOPIC.into(), crate::codec::Format::Set);
        let now = crate::trust::now_ms() / 1000;
        let set = signer
            .sign(&serde_json::json!({
                "iss": SET_ISSUER, "aud": SET_AUDIENCE, "iat": now, "jti": "set-0001",
                "sub_id": {"format": "complex",
                    "device": {"format": "opaque", "id": "dev-laptop-19"},
                    "application": {"format": "opaque", "id": "agent-expense-bot"}},
                "events": {"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change": {
                    "previous_status": "compliant", "current_status": "not-compliant",
                    "event_timestamp": now}}
            }))
            .map_err(DemoError::Set)?;
        let untrusted = serde_json::to_vec(&serde_json::json!({
            "id": "sig-forged-1", "source": {"issuer": "https://attacker.example"},
            "event_type": "https://schemas.openid.net/secevent/risc/event-type/account-purged",
            "occurred_at": now * 1000,
            "subject": {"format": "opaque", "identifiers": {"id": "svc-payments-api"}}
        }))
        .map_err(|error| DemoError::Signals { line: 0, error })?;
        let protected = serde_json::to_vec(&serde_json::json!({
            "id": "sig-breakglass-1", "source": {"issuer": "https://vault.acme.example"},
            "event_type": "urn:containd:event:secrets:credential-rotated",
            "occurred_at": now * 1000,
            "subject": {"format": "opaque", "identifiers": {"id": "breakglass-admin-eu"}},
            "event": {"credential_type": "password"},
            "attributes": {"previous_credential_id": "BG-OLD-1"}
        }))
        .map_err(|error| DemoError::Signals { line: 0, error })?;
        Ok(Self {
            jwks_file,
            set,
            untrusted,
            protected,
            flood: flood(now)?,
        })
    }

    /// The demo's own inputs as signals (for the table), in the order they are sent.
    fn signals(&self, settings: &Settings) -> Result<Vec<Signal>, DemoError> {
        let verifier =
            crate::trust::SetVerifier::load(settings, Path::new("examples/containd.toml"))
                .map_err(|p| DemoError::Trust(config::Problems(p)))?;
        let set = verifier
            .signal(self.set.as_bytes(), crate::trust::now_ms())
            .map_err(|e| DemoError::Set(e.to_string()))?;
        let json = |bytes: &[u8]| {
            serde_json::from_slice(bytes).map_err(|error| DemoError::Signals { line: 0, error })
        };
        let mut out = vec![set, json(&self.untrusted)?, json(&self.protected)?];
        for f in &self.flood {
            out.push(json(f)?);
        }
        Ok(out)
    }

    async fn send(&self, producer: &FutureProducer, settings: &Settings) -> Result<(), DemoError> {
        let sends = [
            (SET_TOPIC, "agent-expense-bot", self.set.as_bytes()),
            (
                settings.input.topics[0].as_str(),
                "svc-payments-api",
                self.untrusted.as_slice(),
            ),
            (
                settings.input.topics[0].as_str(),
                "breakglass-admin-eu",
                self.protected.as_slice(),
            ),
        ];
        let input = settings.input.topics[0].as_str();
        let flood = self
            .flood
            .iter()
            .map(|f| (input, "svc-batch", f.as_slice()));
        for (topic, key, payload) in sends.into_iter().chain(flood) {
            producer
                .send(
                    FutureRecord::to(topic).key(key).payload(payload),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}

/// Four credential rotations at once from the secret scanner (three commands each): the
/// demo's breaker on that source lets six commands through a minute, so the last two
/// signals' commands are held. One key: one partition, so the order is fixed.
fn flood(now: i64) -> Result<Vec<Vec<u8>>, DemoError> {
    (1..=4)
        .map(|n| {
            serde_json::to_vec(&serde_json::json!({
                "id": format!("sig-flood-{n}"), "source": {"issuer": "https://scanner.acme.example"},
                "event_type": "urn:containd:event:secrets:credential-rotated",
                "occurred_at": now * 1000,
                "subject": {"format": "opaque", "identifiers": {"id": format!("svc-batch-{n}")}},
                "event": {"credential_type": "api-key"},
                "attributes": {"previous_credential_id": format!("AKIAFLOOD{n}")}
            }))
            .map_err(|error| DemoError::Signals { line: 0, error })
        })
        .collect()
}

/// The demo's breaker: six commands a minute from the secret scanner.
fn demo_breaker() -> crate::config::BreakerSettings {
    crate::config::BreakerSettings {
        name: "demo-scanner".into(),
        scope: crate::config::BreakerScope::Source,
        only: Some("https://scanner.acme.example".into()),
        max: 6,
        per: Duration::from_secs(60),
        cooldown: Duration::from_secs(600),
    }
}

impl Drop for TrustDemo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.jwks_file);
    }
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
    settings
        .kafka
        .insert("bootstrap.servers".into(), bootstrap.into());
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

    let collected = collect(&settings, &bootstrap, signals.len()).await;
    let _ = stop_tx.send(());
    let summary = pipeline.await.map_err(|_| DemoError::Timeout {
        got: 0,
        want: signals.len(),
        secs: 0,
    })??;
    let (decisions, commands) = collected?;
    print(
        json,
        &signals,
        &decisions,
        &commands,
        &version,
        summary.dead_lettered,
    );
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
        d.len() >= want
            && d.iter()
                .flat_map(|d| &d.command_ids)
                .all(|id| c.contains_key(id))
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

fn print(
    json: bool,
    signals: &[Signal],
    decisions: &[DecisionRecord],
    commands: &HashMap<String, EnforcementCommand>,
    version: &str,
    dead_lettered: u64,
) {
    let by_signal: HashMap<&str, &DecisionRecord> = decisions
        .iter()
        .map(|d| (d.signal_id.as_str(), d))
        .collect();
    if !json {
        say!(
            "containd demo: {} sample signals through the seed rules (rule set {version}) on an in-process cluster\n",
            signals.len()
        );
        say!(
            "{:<18} {:<22} {:<30} {:<34} RULE",
            "TARGET",
            "ACTION",
            "SUBJECT",
            "AS (inventory principal)"
        );
    }
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut printed = 0;
    for s in signals {
        let Some(d) = by_signal.get(s.id.as_str()) else {
            continue;
        };
        *outcomes.entry(d.outcome.name()).or_default() += 1;
        for id in &d.command_ids {
            let Some(c) = commands.get(id) else { continue };
            printed += 1;
            print_command(json, c, &s.id);
        }
    }
    if !json {
        print_summary(
            signals,
            decisions,
            commands,
            (&outcomes, printed, dead_lettered),
        );
    }
}

/// One command: a table row, or a JSON line with `--json`.
fn print_command(json: bool, c: &EnforcementCommand, signal_id: &str) {
    if json {
        let line = serde_json::json!({
            "target": c.target,
            "action": c.action,
            "subject_id": c.subject.id,
            "rule_id": c.why.rule_id,
            "command_id": c.command_id,
            "signal_id": signal_id,
            "principal_id": c.principal_id,
            "parameters": c.parameters,
            "expires_at": c.expires_at,
        });
        say!("{line}");
    } else {
        say!(
            "{:<18} {:<22} {:<30} {:<34} {}",
            c.target,
            c.action,
            c.subject.id,
            c.principal_id.as_deref().unwrap_or("-"),
            c.why.rule_id
        );
    }
}

/// Counts by outcome, the inventory's part, then what trust and the safety rails did.
fn print_summary(
    signals: &[Signal],
    decisions: &[DecisionRecord],
    commands: &HashMap<String, EnforcementCommand>,
    (outcomes, printed, dead_lettered): (&BTreeMap<&str, usize>, usize, u64),
) {
    let outcomes: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let targets: std::collections::BTreeSet<&str> =
        commands.values().map(|c| c.target.as_str()).collect();
    say!(
        "\nsummary: {} signals, {} decisions ({}), {} dead letters, {} commands on {} targets",
        signals.len(),
        decisions.len(),
        outcomes.join(", "),
        dead_lettered,
        printed,
        targets.len(),
    );
    let known = decisions.iter().filter(|d| d.identity.id.is_some()).count();
    let ownerless: Vec<&str> = decisions
        .iter()
        .filter(|d| d.identity.ownerless)
        .filter_map(|d| d.identity.id.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    say!(
        "identities: {known} decisions on inventory identities, {} on unknown ones; owner-less: {}",
        decisions.len() - known,
        if ownerless.is_empty() {
            "none".to_string()
        } else {
            ownerless.join(", ")
        },
    );
    print_trust(decisions);
    print_held(decisions);
}

/// What the safety rails held, and why.
fn print_held(decisions: &[DecisionRecord]) {
    for d in decisions {
        for note in d.notes.iter().filter(|n| n.starts_with("circuit breaker")) {
            say!("safety: {} {note}", d.signal_id);
        }
        for h in &d.held {
            say!(
                "safety: {} {} -> {} held ({}): {}",
                d.signal_id,
                h.action,
                h.target,
                h.reason,
                h.detail
            );
        }
    }
}

/// What trust did: SETs verified, signals refused and why.
fn print_trust(decisions: &[DecisionRecord]) {
    for d in decisions {
        match (&d.trust.verdict, d.source.topic.as_str()) {
            (crate::emit::Verdict::Trusted, SET_TOPIC) => say!(
                "trust: SET {} from {} verified (ES256, JWKS file) -> {}",
                d.signal_id,
                d.trust.issuer,
                d.outcome.name()
            ),
            (crate::emit::Verdict::Trusted, _) => {}
            _ => say!(
                "trust: {} from {} refused: {} ({}); no command, no state change",
                d.signal_id,
                d.trust.issuer,
                d.trust.reason_kind.as_deref().unwrap_or_default(),
                d.trust.reason.as_deref().unwrap_or_default()
            ),
        }
    }
}
