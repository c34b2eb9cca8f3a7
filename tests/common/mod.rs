//! Test harness: a real broker (started by scripts/test, address in CONTAIND_TEST_BOOTSTRAP),
//! the built daemon started as a child process, and readers for its output topics.
#![allow(dead_code)]

use containd::codec::{AvroCodec, Schemas};
use containd::emit::{DecisionRecord, EnforcementCommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PARTITIONS: i32 = 4;

pub fn bootstrap() -> String {
    std::env::var("CONTAIND_TEST_BOOTSTRAP").expect(
        "CONTAIND_TEST_BOOTSTRAP is not set: run the suite with scripts/test, which starts a broker",
    )
}

/// A test client's properties: the broker, plus `CONTAIND_TEST_CLIENT` (`key=value;…`,
/// e.g. TLS and SASL settings for a secured broker of the test's own).
pub fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    for pair in std::env::var("CONTAIND_TEST_CLIENT")
        .unwrap_or_default()
        .split(';')
    {
        if let Some((k, v)) = pair.split_once('=') {
            c.set(k, v);
        }
    }
    c
}

/// A unique name prefix per test, so tests share one broker without seeing each other.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Topic names of one test's deployment.
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
    pub signals: String,
    pub decisions: String,
    pub dead_letter: String,
    /// The state changelog (containd creates it).
    pub state: String,
    /// Held commands and verdicts (containd creates it).
    pub approvals: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            signals: format!("{prefix}.signals"),
            decisions: format!("{prefix}.decisions"),
            dead_letter: format!("{prefix}.dead-letter"),
            state: format!("{prefix}.state"),
            approvals: format!("{prefix}.approvals"),
        }
    }

    pub fn target(&self, name: &str) -> String {
        format!("{}.commands.{name}", self.prefix)
    }
}

pub const TARGETS: &[&str] = &[
    "okta",
    "agent-gateway",
    "aws",
    "kubernetes",
    "active-directory",
    "github-actions",
    "cyberark",
    "isac",
];

pub async fn create_topics(names: &[String]) {
    let admin: AdminClient<DefaultClientContext> = client().create().expect("admin client");
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Writes a config for `topics` into `dir`, with the example targets and rules.
pub fn write_config(dir: &Path, topics: &Topics, group: &str, extra_input: &str) -> PathBuf {
    write_config_with(dir, topics, group, extra_input, "")
}

/// [`write_config`] plus `sections` (TOML tables such as `[inventory]`) at the end.
pub fn write_config_with(
    dir: &Path,
    topics: &Topics,
    group: &str,
    extra_input: &str,
    sections: &str,
) -> PathBuf {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules");
    for entry in std::fs::read_dir(examples).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, rules_dir.join(p.file_name().unwrap())).unwrap();
    }
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/containd.toml"),
    )
    .unwrap();
    // Reuse the example's targets with this test's topic names.
    let targets_at = example.find("[[targets]]").unwrap();
    let mut targets = example[targets_at..].to_string();
    for t in TARGETS {
        targets = targets.replace(
            &format!("\"containment.commands.{t}.v1\""),
            &format!("\"{}\"", topics.target(t)),
        );
    }
    let port = free_port();
    let text = format!(
        r#"[kafka]
"bootstrap.servers" = "{bootstrap}"
"topic.metadata.refresh.interval.ms" = "1000"

[input]
topics = ["{signals}"]
group_id = "{group}"
{extra_input}

[output]
decisions_topic = "{decisions}"
dead_letter_topic = "{dead_letter}"

[delivery]
commit_interval = "100ms"

[state]
changelog_topic = "{state}"

[rules]
dir = "rules"

[telemetry]
listen = "127.0.0.1:{port}"
log_level = "info,rdkafka=warn"

[shutdown]
grace = "10s"

[safety]
approvals_topic = "{approvals}"

{targets}
{sections}"#,
        bootstrap = bootstrap(),
        approvals = topics.approvals,
        signals = topics.signals,
        decisions = topics.decisions,
        dead_letter = topics.dead_letter,
        state = topics.state,
    );
    let path = dir.join("containd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn all_topics(topics: &Topics) -> Vec<String> {
    let mut v = vec![
        topics.signals.clone(),
        topics.decisions.clone(),
        topics.dead_letter.clone(),
    ];
    v.extend(TARGETS.iter().map(|t| topics.target(t)));
    v
}

/// A running daemon; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl Daemon {
    pub fn start(config: &Path, log_name: &str) -> Self {
        let log = config.parent().unwrap().join(log_name);
        let text = std::fs::read_to_string(config).unwrap();
        let metrics_port = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|p| p.trim_end_matches('"').parse().ok())
            .unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_containd"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start containd");
        Self {
            child,
            log,
            metrics_port,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    /// The exit code once the process exits within `within`; `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics page, waiting for the listener to come up.
    pub async fn metrics(&self) -> String {
        for _ in 0..100 {
            if let Ok(mut s) =
                tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await
            {
                use tokio::io::AsyncWriteExt;
                let _ = s.shutdown().await;
                return http_get(self.metrics_port, "/metrics").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("telemetry listener never came up:\n{}", self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.0 GET against the daemon's telemetry listener.
pub async fn http_get(port: u16, path: &str) -> String {
    http_get_accepting(port, path, None).await
}

/// [`http_get`] with an `Accept` header.
pub async fn http_get_accepting(port: u16, path: &str, accept: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("telemetry listener");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Sum of a metric's samples whose line starts with `name` (all label sets).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn producer() -> FutureProducer {
    client()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

pub async fn produce(p: &FutureProducer, topic: &str, key: Option<&str>, payload: &[u8]) {
    let mut r = FutureRecord::<str, [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        r = r.key(k);
    }
    p.send(r, Duration::from_secs(10)).await.expect("produce");
}

/// One record read back from an output topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads every record of `topics` from the beginning (all partitions), until `done`, called
/// once per record read, says the collection is complete, or `timeout` passes.
pub fn read_until(
    topics: &[String],
    timeout: Duration,
    done: impl FnMut(&Record) -> bool,
) -> Vec<Record> {
    read(topics, timeout, None, done)
}

/// Reads every record of `topics` from the beginning until none has come for `idle` (or
/// `max` passes).
pub fn read_until_idle(topics: &[String], idle: Duration, max: Duration) -> Vec<Record> {
    read(topics, max, Some(idle), |_| false)
}

fn read(
    topics: &[String],
    timeout: Duration,
    idle: Option<Duration>,
    mut done: impl FnMut(&Record) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = client()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline && idle.is_none_or(|i| last.elapsed() < i) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            last = Instant::now();
            let mut headers = HashMap::new();
            if let Some(h) = m.headers() {
                for i in 0..h.count() {
                    let hd = h.get(i);
                    headers.insert(
                        hd.key.to_string(),
                        String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Record {
                topic: m.topic().to_string(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
            if done(out.last().unwrap()) {
                break;
            }
        }
    }
    out
}

/// A `done` for [`read_until`] that counts records until `n`.
pub fn count(n: usize) -> impl FnMut(&Record) -> bool {
    let mut seen = 0;
    move |_| {
        seen += 1;
        seen >= n
    }
}

pub fn codec() -> AvroCodec {
    AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[])
}

pub fn decisions(records: &[Record], topics: &Topics) -> Vec<DecisionRecord> {
    let c = codec();
    records
        .iter()
        .filter(|r| r.topic == topics.decisions)
        .map(|r| c.decode_decision(&r.payload).expect("decision decodes"))
        .collect()
}

pub fn commands(records: &[Record], topics: &Topics) -> Vec<(Record, EnforcementCommand)> {
    let c = codec();
    records
        .iter()
        .filter(|r| r.topic.starts_with(&format!("{}.commands.", topics.prefix)))
        .map(|r| {
            (
                r.clone(),
                c.decode_command(&r.payload).expect("command decodes"),
            )
        })
        .collect()
}

/// The example sample signals.
pub fn sample_signals() -> Vec<containd::signal::Signal> {
    containd::demo::sample_signals().expect("sample signals parse")
}

/// A nisshi broker of a test's own (sqlite storage in `dir`, so topics and offsets survive a
/// restart on the same port): for outages. Stopped on drop.
pub struct Broker {
    child: Child,
}

impl Broker {
    pub fn start(port: u16, dir: &Path) -> Self {
        Self::start_with(port, dir, &[])
    }

    /// [`Broker::start`] with more `nisshi broker` arguments (`--cert`, `--authentication`).
    pub fn start_with(port: u16, dir: &Path, args: &[&str]) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("nisshi")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // nisshi reads the sqlite path relative to its working directory.
            .args(["--storage-engine", "sqlite://broker.db"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nisshi on PATH (scripts/test and scripts/chaos put it there)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `containd check --connect --config CONFIG`: its exit code and everything it printed.
pub fn check_connect(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(["check", "--connect", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

/// Sends the sample policy-change signal (four commands) with a fresh id, keyed `policy-1`.
pub async fn send_policy_change(topic: &str, name: &str) {
    let mut s = sample_signals()[5].clone();
    s.id = unique(name);
    let p = producer();
    produce(
        &p,
        topic,
        Some("policy-1"),
        &serde_json::to_vec(&s).unwrap(),
    )
    .await;
}

/// Sends every example sample signal to `topic`, keyed by its canonical subject id; returns
/// them.
pub async fn send_samples(topic: &str) -> Vec<containd::signal::Signal> {
    let signals = sample_signals();
    let p = producer();
    for s in &signals {
        let key = s.subject.id().unwrap();
        produce(&p, topic, Some(&key), &serde_json::to_vec(s).unwrap()).await;
    }
    signals
}

/// The reference adapter (docs/adapters.md) for one target, answering on `results`; killed
/// on drop.
pub struct Adapter(Child);

impl Adapter {
    pub fn start(config: &Path, target: &str, results: &str, failure_rate: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_containd-reference-adapter"))
            .arg("--config")
            .arg(config)
            .args(["--target", target, "--results-topic", results])
            .args(["--failure-rate", failure_rate, "--latency-ms", "0"])
            .args(["--group", &unique("adapter-group")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("reference adapter");
        Self(child)
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
