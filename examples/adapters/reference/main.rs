//! A reference enforcement adapter: what docs/adapters.md asks of one, in one file.
//!
//! It consumes one target's command topic, de-duplicates by `command_id`, "enforces" each
//! command (simulated: a configurable latency and failure rate, decided per command id and
//! attempt so a replay answers the same), and writes results (`schemas/command_result.avsc`)
//! to the results topic, keyed like the command and on the partition its
//! `containd.results_partition` header names, where containd tracks it. Offsets are committed only after the results are acknowledged.
//!
//! ```text
//! containd-reference-adapter --config examples/containd.toml --target aws \
//!     [--results-topic containment.results.v1] [--group G] [--failure-rate 0.1]
//!     [--latency-ms 50] [--silent]
//! ```

use containd::codec::{AvroCodec, Schemas};
use containd::config::{ClientKind, OutputFormat, Settings};
use containd::emit::result::ATTEMPT_HEADER;
use containd::emit::{CommandResult, EnforcementCommand};
use containd::lifecycle::record::PARTITION_HEADER;
use containd::lifecycle::simulate;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the adapter is told on its command line.
struct Options {
    config: PathBuf,
    target: String,
    results_topic: String,
    /// Consumer group; default `containd-adapter-<target>`.
    group: Option<String>,
    failure_rate: f64,
    latency: Duration,
    /// Never answer: a target whose adapter is down, for re-issue and escalation tests.
    silent: bool,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        config: PathBuf::from("examples/containd.toml"),
        target: String::new(),
        results_topic: "containment.results.v1".into(),
        group: None,
        failure_rate: 0.0,
        latency: Duration::ZERO,
        silent: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => o.config = value()?.into(),
            "--target" => o.target = value()?,
            "--results-topic" => o.results_topic = value()?,
            "--group" => o.group = Some(value()?),
            "--failure-rate" => o.failure_rate = value()?.parse().map_err(|e| format!("{e}"))?,
            "--latency-ms" => {
                o.latency = Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--silent" => o.silent = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.target.is_empty() {
        return Err("--target NAME is required".into());
    }
    Ok(o)
}

/// The adapter's memory of what it did: the last attempt answered per command id. A real adapter keeps
/// this durable (or relies on its target's idempotent API); in memory, a restarted adapter
/// enforces a replayed command again, which the target must tolerate.
#[derive(Default)]
struct Seen(HashMap<String, i32>);

struct Adapter {
    options: Options,
    format: OutputFormat,
    codec: AvroCodec,
    producer: FutureProducer,
    seen: Seen,
}

impl Adapter {
    /// Answers one command record: decodes it, skips what it already answered for this or a
    /// later attempt (a redelivery), enforces, and produces the result. An undecodable record
    /// has no command id to answer: it is skipped with a log line.
    async fn handle(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        attempt: i32,
        partition: Option<i32>,
    ) -> Result<(), String> {
        let command: EnforcementCommand = match self.format {
            OutputFormat::Avro => self
                .codec
                .decode_command(payload)
                .map_err(|e| e.to_string()),
            OutputFormat::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
        }
        .map_err(|e| format!("undecodable command skipped: {e}"))?;
        if let Some(answered) = self.seen.0.get(&command.command_id) {
            if *answered >= attempt {
                return Ok(());
            }
        }
        tokio::time::sleep(self.options.latency).await;
        let status = simulate::enforce(&command.command_id, attempt, self.options.failure_rate);
        self.seen.0.insert(command.command_id.clone(), attempt);
        let result = CommandResult {
            command_id: command.command_id.clone(),
            target: command.target.clone(),
            status,
            detail: Some(format!(
                "simulated {} at {}",
                command.action, command.target
            )),
            attempt,
            at: chrono::Utc::now().timestamp_millis(),
            evidence: [("adapter".to_string(), "reference".to_string())].into(),
        };
        self.produce(key, partition, &result).await
    }

    async fn produce(
        &self,
        key: Option<&[u8]>,
        partition: Option<i32>,
        result: &CommandResult,
    ) -> Result<(), String> {
        let payload = match self.format {
            OutputFormat::Avro => self
                .codec
                .encode_result(result)
                .map_err(|e| e.to_string())?,
            OutputFormat::Json => serde_json::to_vec(result).map_err(|e| e.to_string())?,
        };
        let mut record =
            FutureRecord::<[u8], [u8]>::to(&self.options.results_topic).payload(&payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        // Where containd tracks the command (docs/adapters.md); else by key.
        if let Some(p) = partition {
            record = record.partition(p);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("result not acknowledged: {e}"))
    }
}

/// The send this record is (`containd.attempt`), 1 when the header is absent.
fn attempt_of(m: &impl Message) -> i32 {
    header_number(m, ATTEMPT_HEADER).unwrap_or(1)
}

/// A header holding a number, when the record has it.
fn header_number(m: &impl Message, name: &str) -> Option<i32> {
    m.headers()
        .and_then(|h| h.iter().find(|h| h.key == name))
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

fn clients(settings: &Settings, group: &str) -> Result<(StreamConsumer, FutureProducer), String> {
    let mut consumer = containd::client::config(settings, ClientKind::Consumer);
    consumer
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let mut producer = containd::client::config(settings, ClientKind::Producer);
    producer
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random");
    Ok((
        consumer.create().map_err(|e| e.to_string())?,
        producer.create().map_err(|e| e.to_string())?,
    ))
}

async fn run(options: Options) -> Result<(), String> {
    let settings = containd::config::load(&options.config).map_err(|p| p.to_string())?;
    let target = settings.target(&options.target).ok_or(format!(
        "no target {:?} in {}",
        options.target,
        options.config.display()
    ))?;
    let topic = target.topic.clone();
    let group = (options.group.clone()).unwrap_or(format!("containd-adapter-{}", options.target));
    let (consumer, producer) = clients(&settings, &group)?;
    consumer.subscribe(&[&topic]).map_err(|e| e.to_string())?;
    eprintln!(
        "reference adapter: {} ({topic}) → {}",
        options.target, options.results_topic
    );
    let schemas = Arc::new(Schemas::bundled().map_err(|e| e.to_string())?);
    let mut adapter = Adapter {
        format: settings.output.format,
        codec: AvroCodec::new(schemas, &[]),
        producer,
        seen: Seen::default(),
        options,
    };
    loop {
        let m = consumer.recv().await.map_err(|e| e.to_string())?;
        if !adapter.options.silent {
            let attempt = attempt_of(&m);
            let partition = header_number(&m, PARTITION_HEADER);
            let payload = m.payload().unwrap_or_default();
            if let Err(e) = adapter.handle(m.key(), payload, attempt, partition).await {
                eprintln!("reference adapter: {e}");
            }
        }
        consumer
            .commit_message(&m, CommitMode::Async)
            .map_err(|e| e.to_string())?;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("containd-reference-adapter: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    match run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containd-reference-adapter: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
