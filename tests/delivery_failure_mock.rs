//! An output the broker refuses for good (here: not authorised for the cyberark adapter's
//! topic) follows the per-kind policy: the command is tried a few times, then the refused
//! command itself is dead-lettered with the refusal, and the stream goes on — the daemon
//! neither stops nor commits past the signal before the dead letter is acknowledged. Fault
//! injection needs librdkafka's mock cluster (nisshi accepts every topic).

use containd::pipeline::{self, Runtime};
use containd::telemetry::http::Health;
use containd::telemetry::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_command_is_dead_lettered_and_the_stream_goes_on() {
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
        breakers: Default::default(),
        health: Arc::new(Health::default()),
    };
    let metrics = runtime.metrics.clone();
    let dead_letters = settings.output.dead_letter_topic.clone();
    let end = signals.len() as i64;
    let reader = |group: &str| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", group)
            .create()
            .unwrap()
    };
    let committed = {
        let c = reader(&group);
        let input = input.clone();
        move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&input, 0);
            let committed = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
            let offset = committed.find_partition(&input, 0)?.offset();
            offset.to_raw()
        }
    };
    // Stop once every signal is committed (or after a minute).
    let done = async move {
        for _ in 0..600 {
            if committed() == Some(end) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        pipeline::run(Arc::new(settings), runtime, done),
    )
    .await
    .expect("the pipeline stops when asked");
    assert!(result.is_ok(), "the pipeline keeps going: {result:?}");

    // The refused command, whole, on the dead-letter topic, naming the topic and the signal.
    let c = reader("dlq-reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dead_letters, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let m = loop {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => break m.detach(),
            Some(Err(_)) => continue,
            None => panic!("no dead letter"),
        }
    };
    let header = |name: &str| {
        use rdkafka::message::Headers;
        let h = m.headers().unwrap();
        (0..h.count())
            .map(|i| h.get(i))
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        header("containd.reason.kind").as_deref(),
        Some("output_refused")
    );
    assert_eq!(header("containd.refused.topic"), Some(refused));
    assert_eq!(
        header("containd.source.offset"),
        Some(pam_offset.to_string())
    );
    assert!(header("containd.reason").unwrap().contains("uthoriz"));
    let codec = containd::codec::AvroCodec::new(
        Arc::new(containd::codec::Schemas::bundled().unwrap()),
        &[],
    );
    let command: containd::emit::EnforcementCommand =
        codec.decode_command(m.payload().unwrap()).unwrap();
    assert_eq!(command.target, "cyberark");
    let text = metrics.render();
    assert!(
        text.contains("containd_outputs_refused_total{kind=\"command\"} 1"),
        "{text}"
    );
}
