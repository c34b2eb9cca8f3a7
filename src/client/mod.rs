//! Kafka clients from `[kafka]`: one function turns settings into a client's properties,
//! and one checks them the way librdkafka will, with secrets kept out of every message.
//!
//! librdkafka's own errors quote property values (`Invalid value "…" for configuration
//! property "ssl.key.password"`); everything here reports the property's name and scrubs
//! the values of secret properties from the rest.

pub mod connect;
pub mod preflight;
pub mod snapshot;

use crate::config::kafka::{is_secret, scrub};
use crate::config::{ClientKind, Settings};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;

/// Properties containd owns: offsets follow acknowledged outputs, and the transactional id is
/// derived from `[delivery]`.
pub const MANAGED: [&str; 3] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "transactional.id",
];

/// A client's properties: the common `[kafka]` section with the kind's overrides on top.
pub fn config(settings: &Settings, kind: ClientKind) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in settings.kafka.for_kind(kind) {
        c.set(k, v);
    }
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// `max.partition.fetch.bytes` when more than one worker decides: a few hundred signals of a
/// partition per fetched chunk (librdkafka's default is 1 MiB).
const PARTITION_FETCH_BYTES: &str = "131072";

/// Consumer settings: containd owns commits (offsets follow acknowledged outputs).
pub fn consumer_config(settings: &Settings) -> ClientConfig {
    let mut c = config(settings, ClientKind::Consumer);
    c.set("group.id", &settings.input.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", "5000");
    set_default(
        &mut c,
        settings,
        ClientKind::Consumer,
        "auto.offset.reset",
        "earliest",
    );
    set_default(
        &mut c,
        settings,
        ClientKind::Consumer,
        "isolation.level",
        "read_committed",
    );
    // Fetched records arrive in chunks of one partition at a time, up to this size each:
    // smaller chunks interleave partitions in the consumer's queue, so the batches handed to
    // the decide workers hold several partitions (docs/architecture.md).
    if settings.decide.workers > 1 {
        set_default(
            &mut c,
            settings,
            ClientKind::Consumer,
            "max.partition.fetch.bytes",
            PARTITION_FETCH_BYTES,
        );
    }
    // A topic created under `input.topic_pattern` is subscribed within seconds, not after
    // librdkafka's default five minutes.
    if settings.input.topic_pattern.is_some() {
        set_default(
            &mut c,
            settings,
            ClientKind::Consumer,
            "topic.metadata.refresh.interval.ms",
            "5000",
        );
    }
    c
}

/// Producer settings: idempotent, Java-compatible key hashing so a subject's records land on
/// the partition any other client would choose.
pub fn producer_config(settings: &Settings, transactional_id: Option<&str>) -> ClientConfig {
    let mut c = config(settings, ClientKind::Producer);
    c.set("enable.idempotence", "true");
    let kind = ClientKind::Producer;
    set_default(&mut c, settings, kind, "partitioner", "murmur2_random");
    set_default(&mut c, settings, kind, "linger.ms", "5");
    match transactional_id {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms (60 s default).
        Some(id) => {
            c.set("transactional.id", id);
        }
        None => set_default(&mut c, settings, kind, "message.timeout.ms", "120000"),
    }
    c
}

fn set_default(
    c: &mut ClientConfig,
    settings: &Settings,
    kind: ClientKind,
    key: &str,
    value: &str,
) {
    if !settings.kafka.for_kind(kind).contains_key(key) {
        c.set(key, value);
    }
}

/// Every property librdkafka refuses — unknown names (`bootstrap.server`), bad values,
/// settings containd manages — as (field, message), each field named as written
/// (`kafka.consumer.fetch.max.bytes`). Values never appear.
pub fn property_problems(settings: &Settings) -> Vec<(String, String)> {
    let secrets = settings.kafka.secret_values();
    let mut problems = Vec::new();
    for (section, map) in settings.kafka.sections() {
        for (key, value) in map {
            let field = format!("{section}.{key}");
            if MANAGED.contains(&key.as_str()) {
                problems.push((
                    field,
                    "is managed by containd (offsets follow acknowledged outputs)".into(),
                ));
                continue;
            }
            let mut one = ClientConfig::new();
            one.set(key, &value.0);
            if let Err(e) = one.create_native_config() {
                problems.push((field, reason(&e, &secrets)));
            }
        }
    }
    problems
}

/// Creates a consumer and a producer from the settings without using them: librdkafka's
/// whole validation (certificate and key files, SASL mechanisms this build supports,
/// conflicting properties). Clients connect lazily, so this needs no broker.
pub fn client_problems(settings: &Settings) -> Vec<(String, String)> {
    let secrets = settings.kafka.secret_values();
    let mut problems = Vec::new();
    if let Err(e) = consumer_config(settings).create::<BaseConsumer>() {
        problems.push(("kafka.consumer".to_string(), describe(&e, &secrets)));
    }
    if let Err(e) = producer_config(settings, None).create::<BaseProducer>() {
        problems.push(("kafka.producer".to_string(), describe(&e, &secrets)));
    }
    problems
}

/// A client error as an operator reads it: the property's name and librdkafka's reason,
/// secret values scrubbed, the value itself never.
pub fn describe(error: &KafkaError, secrets: &[&str]) -> String {
    match error {
        KafkaError::ClientConfig(_, _, key, _) => format!("{key}: {}", reason(error, secrets)),
        other => scrub(&other.to_string(), secrets),
    }
}

/// librdkafka's reason alone (the property is named by the caller).
fn reason(error: &KafkaError, secrets: &[&str]) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, _value) if is_secret(key) => {
            // The description may quote the value: say what is wrong without it.
            let quoted_value = description.contains("Invalid value");
            let text = if quoted_value {
                format!("invalid value for configuration property \"{key}\"")
            } else {
                description.clone()
            };
            scrub(&text, secrets)
        }
        KafkaError::ClientConfig(_, description, _, _) => scrub(description, secrets),
        other => scrub(&other.to_string(), secrets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Settings {
        let text = format!(
            "[kafka]\n\"bootstrap.servers\" = \"127.0.0.1:9092\"\n{extra}\n[input]\ntopics = [\"s\"]\ngroup_id = \"g\"\n[rules]\ndir = \"rules\"\n"
        );
        crate::config::parse(std::path::Path::new("c.toml"), &text).unwrap()
    }

    /// Several workers need batches of several partitions: fetched chunks are kept small
    /// unless the deployment says otherwise; one worker keeps librdkafka's default.
    #[test]
    fn several_workers_fetch_smaller_partition_chunks_unless_configured() {
        let chunk = |s: &Settings| {
            consumer_config(s)
                .get("max.partition.fetch.bytes")
                .map(str::to_string)
        };
        let mut s = settings("");
        s.decide.workers = 2;
        assert_eq!(chunk(&s).as_deref(), Some(PARTITION_FETCH_BYTES));
        s.decide.workers = 1;
        assert_eq!(chunk(&s), None);
        let mut s = settings("[kafka.consumer]\n\"max.partition.fetch.bytes\" = \"1048576\"");
        s.decide.workers = 4;
        assert_eq!(chunk(&s).as_deref(), Some("1048576"));
    }
}
