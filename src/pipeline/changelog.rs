//! The Kafka side of state: make sure the compacted changelog topic exists with enough
//! partitions, and rebuild one input partition's state by reading its changelog partition to
//! the end (read_committed, so an aborted transaction's state never comes back).

use crate::client;
use crate::config::ClientKind;
use crate::config::Settings;
use crate::state::{changelog, Shard};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state changelog topic {topic:?} has {partitions} partitions, but input topic {input:?} has {input_partitions}: give the changelog at least as many")]
    TooFewPartitions {
        topic: String,
        partitions: usize,
        input: String,
        input_partitions: usize,
    },
    #[error("state changelog topic {0:?} does not exist (create it compacted, or set state.create_changelog = true)")]
    Missing(String),
    #[error("creating state changelog topic {topic:?}: {error}")]
    Create { topic: String, error: String },
    /// The broker will not let containd create it: no retry mends that.
    #[error("creating topic {topic:?} refused: {error} (grant Create on it, or create it as docs/deploy.md says)")]
    CreateRefused { topic: String, error: String },
    #[error("rebuilding state of {topic}/{partition} from {changelog:?}: {error}")]
    Restore {
        topic: String,
        partition: i32,
        changelog: String,
        error: String,
    },
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl StateError {
    /// Topics to fix (too narrow, missing and not to be created), not a broker to wait for.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::TooFewPartitions { .. } | Self::Missing(_) | Self::CreateRefused { .. }
        )
    }

    /// Whether trying again later may succeed (the broker is unreachable), as opposed to a
    /// configuration to fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Kafka(_) | Self::Create { .. } | Self::Restore { .. }
        )
    }
}

/// Checks (and, when allowed, creates) the changelog topic; its partitions. An input partition
/// beyond them (a wider topic matching `input.topic_pattern` later) is refused on assignment.
pub async fn ensure_topic(settings: &Settings) -> Result<usize, StateError> {
    let admin: AdminClient<DefaultClientContext> =
        client::config(settings, ClientKind::Admin).create()?;
    let topic = &settings.state.changelog_topic;
    // Metadata is not Send: read what is needed before awaiting anything.
    let (widest, existing, brokers) = {
        let md = admin.inner().fetch_metadata(None, METADATA_TIMEOUT)?;
        let pattern = settings
            .input
            .topic_pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok());
        let widest = md
            .topics()
            .iter()
            .filter(|t| {
                settings.input.topics.iter().any(|n| n == t.name())
                    || pattern.as_ref().is_some_and(|p| p.is_match(t.name()))
                    || t.name() == settings.safety.approvals_topic
                    || (settings.lifecycle.enabled && t.name() == settings.lifecycle.results_topic)
            })
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .max_by_key(|(_, n)| *n);
        let existing = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len());
        (widest, existing, md.brokers().len())
    };
    match (existing, widest) {
        (Some(partitions), Some((input, input_partitions))) if partitions < input_partitions => {
            Err(StateError::TooFewPartitions {
                topic: topic.clone(),
                partitions,
                input,
                input_partitions,
            })
        }
        (Some(partitions), _) => Ok(partitions),
        (None, _) if !settings.state.create_changelog => Err(StateError::Missing(topic.clone())),
        (None, widest) => {
            let partitions = widest.map_or(1, |(_, n)| n.max(1)) as i32;
            create(&admin, topic, (partitions, brokers), true).await?;
            tracing::info!(%topic, partitions, "created the state changelog topic");
            Ok(partitions as usize)
        }
    }
}

/// Creates the approvals topic when it does not exist, with one partition (holds are few; its
/// partitions need changelog partitions of their own, so it never has more than the widest
/// input). It is a log, not compacted: a hold and its verdict share a key.
pub async fn ensure_approvals_topic(settings: &Settings) -> Result<(), StateError> {
    let topic = &settings.safety.approvals_topic;
    ensure_log_topic(settings, topic, |_| 1).await.map(|_| ())
}

/// With `[lifecycle] enabled`: creates the results topic when it does not exist, as wide as
/// the widest input (a result per command; its partitions need changelog partitions of their
/// own); returns its partitions.
pub async fn ensure_results_topic(settings: &Settings) -> Result<Option<i32>, StateError> {
    if !settings.lifecycle.enabled {
        return Ok(None);
    }
    let topic = &settings.lifecycle.results_topic;
    let n = ensure_log_topic(settings, topic, |widest_input| widest_input.max(1)).await?;
    Ok(Some(n))
}

/// Partitions of an existing topic (the decisions topic, whose evidence chains are per
/// partition); `None` when it does not exist yet.
pub async fn partitions_of(settings: &Settings, topic: &str) -> Result<Option<i32>, StateError> {
    let admin: AdminClient<DefaultClientContext> =
        client::config(settings, ClientKind::Admin).create()?;
    // Every topic's metadata: asking for this one by name would auto-create it on brokers
    // that do so, with their default partitions.
    let md = admin.inner().fetch_metadata(None, METADATA_TIMEOUT)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// A log topic containd writes and reads (not compacted), created when missing with the
/// partitions `width` gives for the widest input; returns its partitions.
async fn ensure_log_topic(
    settings: &Settings,
    topic: &str,
    width: impl Fn(i32) -> i32,
) -> Result<i32, StateError> {
    let admin: AdminClient<DefaultClientContext> =
        client::config(settings, ClientKind::Admin).create()?;
    let (existing, widest, brokers) = {
        let md = admin
            .inner()
            // Every topic's metadata: asking for this one by name would auto-create it on
            // brokers that do so, with their default partitions.
            .fetch_metadata(None, METADATA_TIMEOUT)?;
        let existing = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32);
        let widest = md
            .topics()
            .iter()
            .filter(|t| settings.input.topics.iter().any(|n| n == t.name()))
            .map(|t| t.partitions().len() as i32)
            .max()
            .unwrap_or(1);
        (existing, widest, md.brokers().len())
    };
    if let Some(n) = existing {
        return Ok(n);
    }
    let n = width(widest);
    create(&admin, topic, (n, brokers), false).await?;
    tracing::info!(%topic, partitions = n, "created topic");
    Ok(n)
}

/// Creates a topic (replication: the brokers, at most 3); one that already exists is fine.
async fn create(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    (partitions, brokers): (i32, usize),
    compact: bool,
) -> Result<(), StateError> {
    let replication = brokers.clamp(1, 3) as i32;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    if compact {
        new = new.set("cleanup.policy", "compact");
    }
    let failed = |error: String| StateError::Create {
        topic: topic.to_string(),
        error,
    };
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .map_err(|e| failed(e.to_string()))?;
    use rdkafka::types::RDKafkaErrorCode as C;
    for r in results {
        match r {
            Ok(_) | Err((_, C::TopicAlreadyExists)) => {}
            Err((_, code @ (C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed))) => {
                return Err(StateError::CreateRefused {
                    topic: topic.to_string(),
                    error: code.to_string(),
                })
            }
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(())
}

/// Rebuilds partitions' state from the changelog with one long-lived consumer (no group; a
/// partition is assigned for its rebuild only), so a rebuild costs a few round trips rather
/// than a new client.
pub struct Restorer {
    consumer: BaseConsumer,
    changelog: String,
    timeout: Duration,
    /// Changelog records that could not be read (`containd_state_records_skipped_total`).
    pub skipped: std::sync::atomic::AtomicU64,
}

impl Restorer {
    pub fn new(settings: &Settings) -> Result<Self, StateError> {
        let mut config = client::config(settings, ClientKind::Consumer);
        config
            .set(
                "group.id",
                format!("{}-state-restore", settings.input.group_id),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        Ok(Self {
            consumer: config.create()?,
            changelog: settings.state.changelog_topic.clone(),
            timeout: settings.state.restore_timeout,
            skipped: Default::default(),
        })
    }

    /// Reads the changelog partition of input partition (`topic`, `partition`) to its end and
    /// returns the rebuilt shard. Blocking: run it off the async threads.
    pub fn restore(&self, topic: &str, partition: i32) -> Result<Shard, StateError> {
        let result = self.read(topic, partition);
        // Nothing stays assigned between rebuilds.
        let _ = self.consumer.unassign();
        result
    }

    fn read(&self, topic: &str, partition: i32) -> Result<Shard, StateError> {
        let fail = |error: String| StateError::Restore {
            topic: topic.to_string(),
            partition,
            changelog: self.changelog.clone(),
            error,
        };
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.changelog, partition, METADATA_TIMEOUT)
            .map_err(|e| {
                fail(format!(
                    "no changelog partition {partition} ({e}); the changelog needs at least as many partitions as the input topic"
                ))
            })?;
        let mut shard = Shard::default();
        if high <= low {
            return Ok(shard);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.changelog, partition, Offset::Offset(low))?;
        self.consumer.assign(&tpl)?;
        let prefix = changelog::prefix(topic, partition);
        let deadline = Instant::now() + self.timeout;
        let mut last_error = None;
        loop {
            if Instant::now() >= deadline {
                let why = last_error.map_or(String::new(), |e| format!(": {e}"));
                return Err(fail(format!(
                    "not at the end ({high}) after {:?}{why}",
                    self.timeout
                )));
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = m.key().unwrap_or_default();
                    if let Err(e) = changelog::restore_record(&mut shard, &prefix, key, m.payload())
                    {
                        // One unreadable record must not keep the partition from starting:
                        // that subject starts from empty state, and it is said loudly.
                        self.skipped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::error!(error = %e, offset = m.offset(), "changelog record skipped");
                    }
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                // The broker going away mid-read: keep polling until the deadline (the
                // caller retries the whole rebuild after it).
                Some(Err(e)) => last_error = Some(e.to_string()),
                None => {
                    // Compaction or aborted transactions can leave the last offsets without a
                    // record: the position tells whether the end was reached.
                    let position = self
                        .consumer
                        .position()
                        .ok()
                        .and_then(|p| p.elements().first().map(|e| e.offset()));
                    if matches!(position, Some(Offset::Offset(o)) if o >= high) {
                        break;
                    }
                }
            }
        }
        Ok(shard)
    }
}
