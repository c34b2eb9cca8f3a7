//! `delivery = "exactly_once"` on librdkafka's mock cluster: nisshi refuses transactions, so
//! the transactional call flow (init / begin / send_offsets_to_transaction / commit, and
//! abort + rewind on error) is exercised here.

use containd::codec::{AvroCodec, Schemas};
use containd::config::DeliveryMode;
use containd::emit::{DecisionRecord, EnforcementCommand};
use containd::pipeline::{self, Runtime, SharedRules};
use containd::telemetry::http::Health;
use containd::telemetry::Metrics;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

fn rules(settings: &containd::config::Settings) -> SharedRules {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/rules");
    let set = containd::rules::load_dir(&dir, &settings.targets, &settings.extra_actions).unwrap();
    Arc::new(RwLock::new(Arc::new(set)))
}

async fn read_committed(
    bootstrap: &str,
    topics: &[&str],
    decisions_topic: &str,
    want: usize,
) -> (Vec<DecisionRecord>, Vec<EnforcementCommand>) {
    let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[]);
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "eos-reader")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(topics).unwrap();
    let mut decisions = Vec::new();
    let mut commands = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let settled = decisions.len() >= want;
        let wait = if settled {
            tokio::time::Instant::now() + Duration::from_secs(2)
        } else {
            deadline
        };
        let Ok(m) = tokio::time::timeout_at(wait, c.recv()).await else {
            break;
        };
        let m = m.unwrap();
        if m.topic() == decisions_topic {
            decisions.push(codec.decode_decision(m.payload().unwrap()).unwrap());
        } else {
            commands.push(codec.decode_command(m.payload().unwrap()).unwrap());
        }
    }
    (decisions, commands)
}

async fn run_eos(
    fault: Option<RDKafkaApiKey>,
) -> (usize, Vec<DecisionRecord>, Vec<EnforcementCommand>, String) {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let mut settings = containd::demo::demo_settings(&bootstrap).unwrap();
    settings.delivery.mode = DeliveryMode::ExactlyOnce;
    settings.delivery.transaction_max_signals = 3;
    settings.delivery.transactional_id = Some("containd-eos-test".into());
    containd::demo::create_topics(&mock, &settings, 2).unwrap();
    if let Some(api) = fault {
        // One abortable failure: the transaction containing it must abort and be redone.
        mock.request_errors(
            api,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
        );
    }
    let signals = containd::demo::sample_signals().unwrap();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for s in &signals {
        let key = s.subject.id().unwrap();
        let payload = serde_json::to_vec(s).unwrap();
        p.send(
            FutureRecord::to(&settings.input.topics[0])
                .key(&key)
                .payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    let settings = Arc::new(settings);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = Runtime {
        trust: Arc::new(
            containd::trust::Trust::load(&settings, std::path::Path::new("containd.toml"))
                .expect("trust"),
        ),
        rules: rules(&settings),
        metrics: metrics.clone(),
        health: Arc::new(Health::default()),
        breakers: Default::default(),
    };
    let task = tokio::spawn(pipeline::run(settings.clone(), runtime, async {
        let _ = rx.await;
    }));
    let mut topics: Vec<&str> = settings.targets.iter().map(|t| t.topic.as_str()).collect();
    topics.push(&settings.output.decisions_topic);
    let (decisions, commands) = read_committed(
        &bootstrap,
        &topics,
        &settings.output.decisions_topic,
        signals.len(),
    )
    .await;
    let _ = tx.send(());
    task.await.unwrap().expect("pipeline ends cleanly");
    (signals.len(), decisions, commands, metrics.render())
}

/// Every signal decided once and every command present once. With `aborted_visible`, the
/// records of an aborted transaction may show up too: librdkafka's mock cluster always answers
/// Fetch with an empty aborted-transactions list (rdkafka_mock_handlers.c), so read_committed
/// readers see aborted records whenever they reached the mock before the abort. Those must be
/// exact copies (same command ids) of what the redone transaction committed.
fn assert_exactly_once(
    n: usize,
    decisions: &[DecisionRecord],
    commands: &[EnforcementCommand],
    aborted_visible: bool,
) {
    let mut per_signal: HashMap<&str, usize> = HashMap::new();
    for d in decisions {
        *per_signal.entry(d.signal_id.as_str()).or_default() += 1;
    }
    assert_eq!(per_signal.len(), n, "every signal decided");
    if !aborted_visible {
        assert!(
            per_signal.values().all(|c| *c == 1),
            "no committed duplicate decisions: {per_signal:?}"
        );
    }
    let mut firsts: HashMap<&str, &DecisionRecord> = HashMap::new();
    for d in decisions {
        let first = firsts.entry(d.signal_id.as_str()).or_insert(d);
        assert_eq!(first.command_ids, d.command_ids, "a redo decides the same");
    }
    let promised: usize = firsts.values().map(|d| d.command_ids.len()).sum();
    let mut by_id: HashMap<&str, &EnforcementCommand> = HashMap::new();
    for c in commands {
        if let Some(earlier) = by_id.insert(c.command_id.as_str(), c) {
            assert!(aborted_visible, "no committed duplicate commands: {c:?}");
            assert_eq!(
                earlier, c,
                "an aborted copy is identical to the committed one"
            );
        }
    }
    assert_eq!(by_id.len(), promised, "every decided command committed");
    assert_eq!(promised, 18);
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_commit_outputs_and_offsets_together() {
    let (n, decisions, commands, metrics) = run_eos(None).await;
    assert_exactly_once(n, &decisions, &commands, false);
    assert!(
        metrics.contains("containd_transactions_total{reason=\"committed\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transaction_is_aborted_rewound_and_redone() {
    let (n, decisions, commands, metrics) = run_eos(Some(RDKafkaApiKey::TxnOffsetCommit)).await;
    assert_exactly_once(n, &decisions, &commands, true);
    assert!(
        metrics.contains("containd_transactions_total{reason=\"aborted\"} 1"),
        "{metrics}"
    );
}
