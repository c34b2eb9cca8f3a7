//! A broker outage longer than the consumer's session timeout, on a broker of this test's own
//! (nisshi with sqlite storage, so its topics and offsets survive the restart): the daemon
//! reports not-ready while the broker is gone, does not exit, and once the broker is back it
//! decides the signals sent meanwhile with nothing lost.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_broker_outage_is_ridden_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // This binary holds this one test: the harness's broker address can be this broker's.
    std::env::set_var("CONTAIND_TEST_BOOTSTRAP", format!("127.0.0.1:{port}"));
    let db = dir.path();
    let mut broker = Broker::start(port, db);

    let topics = Topics::new(&unique("outage"));
    create_topics(&all_topics(&topics)).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"topic.metadata.refresh.interval.ms\" = \"1000\"",
        "\"topic.metadata.refresh.interval.ms\" = \"1000\"\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"",
    );
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config, "containd.log");

    let send = |id: &str| {
        let mut s = sample_signals()[5].clone(); // policy change: 4 commands
        s.id = id.into();
        s.subject
            .identifiers
            .insert("id".into(), format!("policy-{id}"));
        serde_json::to_vec(&s).unwrap()
    };
    let p = producer();
    produce(&p, &topics.signals, Some("before"), &send("before")).await;
    let outputs = [topics.decisions.clone()];
    let first = read_until(&outputs, Duration::from_secs(60), count(1));
    assert_eq!(decisions(&first, &topics).len(), 1, "{}", daemon.log_text());
    assert!(
        http_get(daemon.metrics_port, "/readyz")
            .await
            .contains("200"),
        "ready before the outage"
    );

    // Down for well over the session timeout: the group forgets the daemon.
    broker.kill();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(daemon.is_running(), "{}", daemon.log_text());
    let ready = http_get(daemon.metrics_port, "/readyz").await;
    assert!(
        !ready.contains("200"),
        "not ready while the broker is gone: {ready}"
    );
    let _broker = Broker::start(port, db);

    // Back: the daemon rejoins, rebuilds its partitions' state and decides what comes next.
    let p = producer();
    produce(&p, &topics.signals, Some("after"), &send("after")).await;
    let records = read_until(&outputs, Duration::from_secs(90), count(2));
    let ids: Vec<String> = decisions(&records, &topics)
        .into_iter()
        .map(|d| d.signal_id)
        .collect();
    assert!(
        ids.contains(&"after".to_string()),
        "{ids:?}\n{}",
        daemon.log_text()
    );
    assert!(daemon.is_running(), "{}", daemon.log_text());
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
}
