//! The "nothing lost" promise when the broker refuses an output: the daemon stops with a
//! delivery error and never commits past the signal whose output was refused, so a restart
//! decides it again. Fault injection needs librdkafka's mock cluster.

use containd::pipeline::{self, PipelineError, Runtime};
use containd::telemetry::http::Health;
use containd::telemetry::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_output_stops_the_daemon_without_committing_past_its_signal() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let mut settings = containd::demo::demo_settings(&bootstrap).unwrap();
    settings.delivery.drain_timeout = Duration::from_secs(2);
    settings.shutdown.grace = Duration::from_secs(2);
    let input = settings.input.topics[0].clone();
    containd::demo::create_topics(&mock, &settings, 1).unwrap();
    // The cyberark adapter's topic refuses writes: only the PAM signal (sig-0004, offset 3)
    // has an output there.
    let refused = settings.target("cyberark").unwrap().topic.clone();
    mock.topic_error(
        &refused,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )
    .unwrap();

    let signals = containd::demo::sample_signals().unwrap();
    let pam_offset = signals.iter().position(|s| s.id == "sig-0004").unwrap() as i64;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for s in &signals {
        let payload = serde_json::to_vec(s).unwrap();
        p.send(
            FutureRecord::<str, [u8]>::to(&input)
                .key("k")
                .payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/rules");
    let rules =
        containd::rules::load_dir(&dir, &settings.targets, &settings.extra_actions).unwrap();
    let group = settings.input.group_id.clone();
    let runtime = Runtime {
        trust: Arc::new(
            containd::trust::Trust::load(&settings, std::path::Path::new("containd.toml"))
                .expect("trust"),
        ),
        rules: containd::rules::shared(rules),
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(Health::default()),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        pipeline::run(Arc::new(settings), runtime, std::future::pending()),
    )
    .await
    .expect("the pipeline stops by itself on a refused output");
    match result {
        Err(PipelineError::Delivery { topic, offset, .. }) => {
            assert_eq!(topic, input);
            assert_eq!(offset, pam_offset);
        }
        other => panic!("expected a delivery error, got {other:?}"),
    }

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&input, 0);
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let position = committed.find_partition(&input, 0).unwrap().offset();
    // Earlier signals drained and committed; the refused one and everything after it replay.
    assert_eq!(position, Offset::Offset(pam_offset));
}
