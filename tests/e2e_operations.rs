//! What an SRE sees: startup waits for an input topic that does not exist yet (not ready, one
//! log line) and then sizes the changelog from it; `/metrics` in the classic text format that
//! `promtool check metrics` accepts, OpenMetrics on request, process metrics, series primed at
//! 0; `/healthz` and `/readyz` saying why; no colour codes in a log file; in JSON mode every
//! line is JSON, the fatal one too, and a changelog narrower than its input exits 78.

mod common;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn get(port: u16, path: &str, accept: Option<&str>) -> String {
    http_get_accepting(port, path, accept).await
}

fn partitions_of(topic: &str) -> usize {
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    // All topics: asking for one by name may create it.
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len())
}

async fn create(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Primed series in the classic text format with process metrics, which promtool accepts;
/// OpenMetrics on request.
async fn metrics_are_what_prometheus_reads(port: u16) {
    let text = get(port, "/metrics", None).await;
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4")
            || text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        body.contains("# TYPE containd_commands_total counter"),
        "{body}"
    );
    assert!(
        body.contains("containd_commands_total{target=\"aws\",action=\"disable_credential\"} 0"),
        "{body}"
    );
    assert!(body.contains("process_resident_memory_bytes "), "{body}");
    assert!(!body.contains("# EOF"));
    promtool_check(&body);
    let om = get(
        port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert!(om.contains("application/openmetrics-text") && om.trim_end().ends_with("# EOF"));
}

/// Waits for exactly one decision on the test's decisions topic.
fn one_decision(topics: &Topics, daemon: &Daemon) {
    let records = read_until(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(60),
        count(1),
    );
    let decided = decisions(&records, topics).len();
    assert_eq!(decided, 1, "{}", daemon.log_text());
}

async fn wait_for(mut f: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_waits_for_its_input_and_telemetry_tells_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("ops"));
    // Every topic but the input: the daemon must wait for it, not guess its width.
    let others: Vec<String> = all_topics(&topics)
        .into_iter()
        .filter(|t| *t != topics.signals && *t != topics.state)
        .collect();
    create_topics(&others).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let (code, said) = check_connect(&config);
    assert_eq!(code, Some(78), "{said}");
    assert!(
        said.contains(&format!("{} does not exist", topics.signals)),
        "{said}"
    );
    let daemon = Daemon::start(&config, "containd.log");
    let port = daemon.metrics_port;
    let waiting = wait_for(
        || daemon.log_text().contains("do not exist yet"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        waiting,
        "says it waits for the input:\n{}",
        daemon.log_text()
    );
    let ready = get(port, "/readyz", None).await;
    assert!(
        ready.contains("503") && ready.contains("not ready:"),
        "{ready}"
    );
    assert!(get(port, "/healthz", None).await.contains("200"));
    assert_eq!(
        partitions_of(&topics.state),
        0,
        "no changelog before the input exists"
    );

    metrics_are_what_prometheus_reads(port).await;

    // The input appears with 4 partitions: the changelog is created as wide, signals decided.
    create(&topics.signals, PARTITIONS).await;
    send_policy_change(&topics.signals, "ops-signal").await;
    one_decision(&topics, &daemon);
    assert_eq!(partitions_of(&topics.state), PARTITIONS as usize);
    let (code, said) = check_connect(&config);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("offsets readable"), "{said}");
    let log = daemon.log_text();
    assert_eq!(
        log.matches("do not exist yet").count(),
        1,
        "one line while waiting:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_narrower_than_its_input_exits_78_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("narrow"));
    let others: Vec<String> = all_topics(&topics)
        .into_iter()
        .filter(|t| *t != topics.state)
        .collect();
    create_topics(&others).await;
    create(&topics.state, 1).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[telemetry]\n", "[telemetry]\nlog_format = \"json\"\n");
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config, "containd.log");
    let code = daemon.wait_exit(Duration::from_secs(60));
    let log = daemon.log_text();
    assert_eq!(code, Some(78), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    assert!(log.contains("at least as many"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_inventory_keeps_the_daemon_unready_instead_of_deciding_blind() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("inv"));
    create_topics(&all_topics(&topics)).await;
    let inventory = format!("{}.inventory", topics.prefix);
    let config = write_config_with(
        dir.path(),
        &topics,
        &unique("g"),
        "",
        &format!("[inventory]\ntopic = \"{inventory}\"\n"),
    );
    let daemon = Daemon::start(&config, "containd.log");
    let port = daemon.metrics_port;
    daemon.metrics().await;
    let mut last = String::new();
    let unready = wait_for_async(port, "inventory not read yet", &mut last).await;
    assert!(unready, "{last}\n{}", daemon.log_text());
    // Signals wait: nothing is decided against an empty inventory.
    send_policy_change(&topics.signals, "inv-signal").await;
    let early = read_until_idle(
        std::slice::from_ref(&topics.decisions),
        Duration::from_secs(3),
        Duration::from_secs(5),
    );
    assert!(early.is_empty(), "decided before the inventory was read");
    // The inventory appears (empty but there): the signal is decided, the daemon ready.
    create(&inventory, 1).await;
    one_decision(&topics, &daemon);
    let ready = wait_for_async(port, "200 OK", &mut last).await;
    assert!(ready, "{last}");
}

/// Polls `/readyz` until its answer contains `needle` (30 s at most).
async fn wait_for_async(port: u16, needle: &str, last: &mut String) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        *last = get(port, "/readyz", None).await;
        if last.contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_under_the_pattern_is_noticed_and_one_too_wide_stops_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("pattern"));
    let others: Vec<String> = all_topics(&topics)
        .into_iter()
        .filter(|t| *t != topics.signals && *t != topics.state)
        .collect();
    create_topics(&others).await;
    let first = format!("{}.a", topics.signals);
    create(&first, PARTITIONS).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let pattern = format!("^{}\\\\..*", topics.signals.replace('.', "\\\\."));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("topics = [\"{}\"]", topics.signals),
        &format!("topic_pattern = \"{pattern}\""),
    );
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config, "containd.log");
    send_policy_change(&first, "pattern-a").await;
    one_decision(&topics, &daemon);
    assert_eq!(partitions_of(&topics.state), PARTITIONS as usize);

    // A wider topic under the pattern: its partitions beyond the changelog's have nowhere to
    // keep state. Noticed within seconds, and said to be a deployment to fix.
    create(&format!("{}.b", topics.signals), PARTITIONS * 2).await;
    let code = daemon.wait_exit(Duration::from_secs(60));
    let log = daemon.log_text();
    assert_eq!(code, Some(78), "{log}");
    assert!(log.contains("give the changelog at least as many"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_on_a_broker_without_transactions_exits_78_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::new(&unique("eo"));
    create_topics(&all_topics(&topics)).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[delivery]\n", "[delivery]\nmode = \"exactly_once\"\n");
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config, "containd.log");
    let code = daemon.wait_exit(Duration::from_secs(60));
    let log = daemon.log_text();
    // nisshi refuses Kafka transactions: a deployment to fix, not a crash to restart.
    assert_eq!(code, Some(78), "{log}");
    assert!(log.contains("refuses transactions"), "{log}");
}
