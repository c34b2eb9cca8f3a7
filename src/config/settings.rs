//! The configuration file's shape. Field doc comments are the user documentation
//! (docs/configuration.md follows them).

use crate::codec::Format;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// librdkafka properties for every client (`bootstrap.servers`, `security.protocol`,
    /// `sasl.*`, `ssl.*`, …), with `[kafka.consumer]` / `[kafka.producer]` overrides and
    /// secrets from files (`"sasl.password_file"`). Environment overrides use `_` for `.`:
    /// `CONTAIND__KAFKA__BOOTSTRAP_SERVERS`, `CONTAIND__KAFKA__SASL_PASSWORD_FILE`.
    #[serde(default)]
    pub kafka: super::kafka::KafkaSettings,
    pub input: InputSettings,
    #[serde(default)]
    pub output: OutputSettings,
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// How many cores decide (docs/architecture.md, "Deciding on every core").
    #[serde(default)]
    pub decide: DecideSettings,
    pub rules: RulesSettings,
    /// Enforcement targets; each gets commands on its own topic.
    #[serde(default)]
    pub targets: Vec<TargetSettings>,
    /// Actions beyond the built-in enforcement vocabulary that targets may accept.
    #[serde(default)]
    pub extra_actions: Vec<String>,
    /// Per-subject state: windows, suppression, escalation, open containments.
    #[serde(default)]
    pub state: StateSettings,
    /// The NHI inventory topic (identity enrichment and blast radius).
    #[serde(default)]
    pub inventory: InventorySettings,
    /// Systems whose signals may act, each within its authority (event types, actions,
    /// topics) and, for raw SETs, with the keys that verify them.
    #[serde(default)]
    pub sources: Vec<super::trust::SourceSettings>,
    /// Duplicates, clocks and SET verification.
    #[serde(default)]
    pub trust: super::trust::TrustSettings,
    /// The SSF push receiver (RFC 8935); unset: off.
    #[serde(default)]
    pub ssf_push: Option<super::trust::SsfPushSettings>,
    /// Protected identities and the actions held for them (docs/safety.md).
    #[serde(default)]
    pub safety: super::SafetySettings,
    /// Results from adapters, re-sends and escalation (docs/adapters.md); off by default.
    #[serde(default)]
    pub lifecycle: super::LifecycleSettings,
    /// What each target may receive about a subject (docs/disclosure.md).
    #[serde(default)]
    pub disclosure: super::DisclosureSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub shutdown: ShutdownSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Compacted changelog topic the state is written to and rebuilt from on assignment. It
    /// needs at least as many partitions as the widest input topic; containd creates it
    /// (compacted, with that many partitions) when it is missing.
    #[serde(default = "default_changelog_topic")]
    pub changelog_topic: String,
    /// Create the changelog topic at startup when it does not exist.
    #[serde(default = "default_true")]
    pub create_changelog: bool,
    /// Suppression period for actions whose rule sets none: the same action on the same
    /// target for the same subject is not re-issued within it. `0s` turns it off.
    #[serde(default, with = "humantime_serde")]
    pub suppress_for: Duration,
    /// Each state entry is kept this much longer than its own period, so signals replayed
    /// after a crash decide as they did the first time.
    #[serde(default = "default_replay_margin", with = "humantime_serde")]
    pub replay_margin: Duration,
    /// Most entries per list (window hits of a rule, firings, issued commands) per subject.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// How often expired state is evicted from subjects that receive no signals.
    #[serde(default = "default_sweep_interval", with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Longest a partition's state rebuild may take before the daemon gives up (exit 1).
    #[serde(default = "default_restore_timeout", with = "humantime_serde")]
    pub restore_timeout: Duration,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            changelog_topic: default_changelog_topic(),
            create_changelog: true,
            suppress_for: Duration::ZERO,
            replay_margin: default_replay_margin(),
            max_entries: default_max_entries(),
            sweep_interval: default_sweep_interval(),
            restore_timeout: default_restore_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySettings {
    /// Compacted topic of IdentityRecords keyed by identity id; unset: every subject is an
    /// unknown identity and blast-radius actions reach nothing.
    #[serde(default)]
    pub topic: Option<String>,
    /// Encoding of the records: `json` or `avro` (single-object).
    #[serde(default)]
    pub format: Format,
    /// With `topic` set: signals wait (the daemon is not ready) until the topic exists and
    /// its contents are read. `false`: a missing topic is an empty inventory (every subject
    /// unknown), warned about and followed once it appears.
    #[serde(default = "default_true")]
    pub required: bool,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            topic: None,
            format: Format::default(),
            required: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSettings {
    /// Signal topics to consume. Exactly one of `topics` and `topic_pattern` is set.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regex over topic names (librdkafka's `^` subscription), e.g. `^identity\.signals\..*`.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Consumer group; instances of one deployment share it and split the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Encoding of signal records unless `formats` names the topic.
    #[serde(default)]
    pub format: Format,
    /// Per-topic encoding overrides.
    #[serde(default)]
    pub formats: BTreeMap<String, Format>,
    /// Confluent Schema Registry ids under which the bundled Signal schema is registered.
    #[serde(default)]
    pub confluent_schema_ids: Vec<u32>,
    /// Larger records are dead-lettered as `oversized` without being decoded.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

impl InputSettings {
    pub fn format_of(&self, topic: &str) -> Format {
        self.formats.get(topic).copied().unwrap_or(self.format)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Avro single-object encoding of EnforcementCommand / DecisionRecord.
    #[default]
    Avro,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    /// Encoding of commands and decision records.
    #[serde(default)]
    pub format: OutputFormat,
    /// One decision record per decoded signal.
    #[serde(default = "default_decisions_topic")]
    pub decisions_topic: String,
    /// Undecodable or invalid input, with original key and bytes.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
}

impl Default for OutputSettings {
    fn default() -> Self {
        Self {
            format: OutputFormat::default(),
            decisions_topic: default_decisions_topic(),
            dead_letter_topic: default_dead_letter_topic(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Offsets committed only after every output of a signal is acknowledged; replays yield
    /// identical command ids. Works on every Kafka-compatible broker.
    #[default]
    AtLeastOnce,
    /// Outputs and offsets in one Kafka transaction per batch (needs broker transactions).
    ExactlyOnce,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    #[serde(default)]
    pub mode: DeliveryMode,
    /// Signals whose outputs are not yet acknowledged before consumption pauses.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How often acknowledged positions are committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a revoked partition's in-flight outputs may take to drain before it is given up.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// exactly_once: signals per transaction at most.
    #[serde(default = "default_transaction_max_signals")]
    pub transaction_max_signals: usize,
    /// exactly_once: a transaction commits at least this often.
    #[serde(default = "default_transaction_interval", with = "humantime_serde")]
    pub transaction_interval: Duration,
    /// exactly_once: `transactional.id`; defaults to `containd-<group_id>-<hostname>`.
    #[serde(default)]
    pub transactional_id: Option<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::default(),
            max_in_flight: default_max_in_flight(),
            commit_interval: default_commit_interval(),
            drain_timeout: default_drain_timeout(),
            transaction_max_signals: default_transaction_max_signals(),
            transaction_interval: default_transaction_interval(),
            transactional_id: None,
        }
    }
}

/// Deciding on more than one core: state and order are per input partition, so partitions
/// are spread over workers that decide in parallel; producing and committing stay in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideSettings {
    /// Workers deciding in parallel, each owning the state of the partitions hashed to it.
    /// Default: the cores this process may use. 1 decides on the pipeline's own task.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Records taken from the consumer at most per batch handed to the workers (only what
    /// has already arrived: a batch never waits to fill).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

impl Default for DecideSettings {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            max_batch: default_max_batch(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSettings {
    /// Directory of `*.yaml` rule files (relative to the config file).
    pub dir: PathBuf,
    /// Decide and record everything, emit no command.
    #[serde(default)]
    pub dry_run: bool,
    /// How often the directory is checked for changes (SIGHUP reloads at once).
    #[serde(default = "default_reload_poll", with = "humantime_serde")]
    pub reload_poll: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Cloud,
    Onprem,
    Cicd,
    Idp,
    Saas,
    Pam,
    Secrets,
    Edr,
    /// Outbound sharing: an ISAC, a partner, a community feed (docs/disclosure.md). Its
    /// commands carry minimal technical detail and wait for legal and privacy review.
    Share,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cloud => "cloud",
            Self::Onprem => "onprem",
            Self::Cicd => "cicd",
            Self::Idp => "idp",
            Self::Saas => "saas",
            Self::Pam => "pam",
            Self::Secrets => "secrets",
            Self::Edr => "edr",
            Self::Share => "share",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    /// Name rules use to address the target.
    pub name: String,
    /// Topic its adapter consumes (`containment.commands.<name>.v1` by convention).
    pub topic: String,
    pub kind: TargetKind,
    /// Actions the target's adapter can carry out.
    pub actions: Vec<String>,
    /// Every command for this target waits for an operator's approval (`[safety]`).
    #[serde(default)]
    pub require_approval: bool,
    /// How long this target's adapter may stay silent about a command before it is sent
    /// again; unset: `lifecycle.result_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub result_timeout: Option<std::time::Duration>,
    /// Sends of a command to this target before silence counts as failure; unset:
    /// `lifecycle.max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The `[[disclosure.profiles]]` governing what this target receives about a subject;
    /// unset: every field.
    #[serde(default)]
    pub disclosure: Option<String>,
    /// The target's own profile instead of a named one: the fields it gets as they are
    /// (`["principal_id", "credential_id"]`; bare names mean the parameter or identifier so
    /// named)…
    #[serde(default)]
    pub disclose: Option<Vec<String>>,
    /// …and those it gets as keyed pseudonyms.
    #[serde(default, alias = "pseudonymize")]
    pub pseudonymise: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Address of `/metrics`, `/healthz` and `/readyz`; unset disables the endpoint.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// tracing filter directive, e.g. `info` or `containd=debug,rdkafka=warn`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            log_format: LogFormat::default(),
            log_level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// On SIGTERM/SIGINT: time to finish in-flight signals and commit; a second signal exits
    /// at once.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace: default_grace(),
        }
    }
}

impl Settings {
    /// Resolves relative paths against the config file and maps environment-style librdkafka
    /// keys (`bootstrap_servers`) to their dotted names.
    pub(crate) fn normalize(&mut self, config_path: &Path) {
        if self.rules.dir.is_relative() {
            if let Some(parent) = config_path.parent() {
                self.rules.dir = parent.join(&self.rules.dir);
            }
        }
        super::trust::normalize(self, config_path);
        self.kafka.normalize(config_path.parent());
    }

    pub fn target(&self, name: &str) -> Option<&TargetSettings> {
        self.targets.iter().find(|t| t.name == name)
    }
}

fn default_changelog_topic() -> String {
    "containd.state.v1".into()
}
fn default_true() -> bool {
    true
}
fn default_replay_margin() -> Duration {
    Duration::from_secs(600)
}
fn default_max_entries() -> usize {
    1024
}
fn default_sweep_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_restore_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_reload_poll() -> Duration {
    Duration::from_secs(2)
}
fn default_group() -> String {
    "containd".into()
}
fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_decisions_topic() -> String {
    "containment.decisions.v1".into()
}
fn default_dead_letter_topic() -> String {
    "containment.dead-letter.v1".into()
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
fn default_max_batch() -> usize {
    1024
}
fn default_max_in_flight() -> usize {
    20_000
}
fn default_commit_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_transaction_max_signals() -> usize {
    1_000
}
fn default_transaction_interval() -> Duration {
    Duration::from_millis(100)
}
fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}
fn default_log_level() -> String {
    "info".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(15)
}
