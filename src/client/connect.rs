//! Reaching the cluster before any work, and telling a configuration to fix (wrong password,
//! untrusted certificate) from a broker that is not there yet.
//!
//! librdkafka retries a failed SASL handshake forever and reports it only through the client's
//! error callback; metadata requests just time out. [`Watch`] listens to that callback, so a
//! wrong password stops startup with its reason instead of looking like an outage.

use crate::config::kafka::scrub;
use crate::config::{ClientKind, Settings};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why the cluster cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("kafka: authentication failed for sasl.username {user:?}: {reason} (check sasl.password or sasl.password_file, and sasl.mechanism)")]
    Authentication { user: String, reason: String },
    #[error("kafka: TLS handshake failed: {0} (check ssl.ca.location and the broker's certificate, and security.protocol)")]
    Tls(String),
    #[error("kafka: no broker answers at {bootstrap}")]
    Unreachable { bootstrap: String },
}

impl ConnectError {
    /// A configuration to fix (exit 78), not a broker to wait for.
    pub fn is_config(&self) -> bool {
        !matches!(self, Self::Unreachable { .. })
    }
}

/// Topics the cluster has, with their partition counts.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub brokers: usize,
    pub topics: BTreeMap<String, usize>,
}

/// Client context that keeps the first authentication or TLS failure librdkafka reports.
pub struct Watch {
    refused: Mutex<Option<ConnectError>>,
    user: String,
    secrets: Vec<String>,
}

impl Watch {
    fn new(settings: &Settings) -> Self {
        let kafka = &settings.kafka;
        Self {
            refused: Mutex::new(None),
            user: kafka.get("sasl.username").unwrap_or_default().to_string(),
            secrets: kafka
                .secret_values()
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    fn refused(&self) -> Option<ConnectError> {
        self.refused.lock().ok()?.clone()
    }
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let reason = scrub(reason, &secrets);
        let refusal = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                ConnectError::Authentication {
                    user: self.user.clone(),
                    reason,
                }
            }
            Some(RDKafkaErrorCode::SSL) => ConnectError::Tls(reason),
            _ => return,
        };
        if let Ok(mut slot) = self.refused.lock() {
            slot.get_or_insert(refusal);
        }
    }

    /// librdkafka reports a failed certificate check in a log line only (the error event, if
    /// any, is a plain transport failure); its lines are otherwise what [`ConnectError`] says.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, message: &str) {
        if let Some(at) = message.find("SSL handshake failed") {
            let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
            let reason = scrub(&message[at..], &secrets);
            if let Ok(mut slot) = self.refused.lock() {
                slot.get_or_insert(ConnectError::Tls(reason));
            }
        }
    }
}

impl rdkafka::producer::ProducerContext for Watch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// A client that watches for refusals: a producer, whose `poll` serves librdkafka's error
/// events (an admin client's are never served). It sends nothing.
pub type Probe = BaseProducer<Watch>;

pub fn probe(settings: &Settings) -> Result<Probe, KafkaError> {
    crate::client::config(settings, ClientKind::Producer).create_with_context(Watch::new(settings))
}

/// The cluster's brokers and topics, asking every second until `within` passes. A refusal
/// (authentication, TLS) ends the wait at once.
pub fn metadata(
    probe: &Probe,
    settings: &Settings,
    within: Duration,
) -> Result<Cluster, ConnectError> {
    let started = Instant::now();
    loop {
        let answer = probe.client().fetch_metadata(None, Duration::from_secs(1));
        probe.poll(Duration::ZERO);
        if let Some(refused) = probe.context().refused() {
            return Err(refused);
        }
        if let Ok(md) = answer {
            return Ok(Cluster {
                brokers: md.brokers().len(),
                topics: md
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| (t.name().to_string(), t.partitions().len()))
                    .collect(),
            });
        }
        if started.elapsed() >= within {
            return Err(ConnectError::Unreachable {
                bootstrap: settings
                    .kafka
                    .get("bootstrap.servers")
                    .unwrap_or_default()
                    .to_string(),
            });
        }
    }
}

impl Cluster {
    /// The input topics that exist, with their partitions: the named ones, or those the
    /// pattern matches.
    pub fn inputs(&self, settings: &Settings) -> BTreeMap<&str, usize> {
        let pattern = settings
            .input
            .topic_pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok());
        self.topics
            .iter()
            .filter(|(name, _)| {
                settings.input.topics.contains(name)
                    || pattern.as_ref().is_some_and(|p| p.is_match(name))
            })
            .map(|(name, n)| (name.as_str(), *n))
            .collect()
    }

    /// What the inputs lack before topic setup may proceed: named topics that do not exist,
    /// or a pattern nothing matches yet. Empty: every input is there.
    pub fn missing_inputs(&self, settings: &Settings) -> Vec<String> {
        if let Some(p) = &settings.input.topic_pattern {
            return if self.inputs(settings).is_empty() {
                vec![format!("a topic matching {p}")]
            } else {
                Vec::new()
            };
        }
        settings
            .input
            .topics
            .iter()
            .filter(|t| !self.topics.contains_key(*t))
            .cloned()
            .collect()
    }
}
