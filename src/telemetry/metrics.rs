//! Every metric containd exports, each updated through one method named for the event.
//! Labels are bounded: topics, targets, actions, reason kinds and rule ids come from config
//! and rules, never from signal content.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

mod handles;
mod labels;
mod prime;

use handles::Handles;
use labels::*;

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    consumed: Family<TopicLabel, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    /// The per-signal counters' handles: consumed (topic, ""), decided (topic, outcome),
    /// commands (target, action).
    per_signal: [Handles; 3],
    dead_letters: Family<ReasonLabel, Counter>,
    commands: Family<CommandLabels, Counter>,
    condition_errors: Family<RuleLabel, Counter>,
    delivery_failures: Counter,
    outputs_refused: Family<KindLabel, Counter>,
    held: Family<HeldLabels, Counter>,
    outputs_waiting: Gauge,
    state_restore_failures: Counter,
    state_records_skipped: Counter,
    backpressure_waits: Counter,
    decision_latency: Histogram,
    signal_to_command: Histogram,
    consumer_lag: Family<PartitionLabels, Gauge>,
    in_flight: Gauge,
    assigned_partitions: Gauge,
    rules_loaded: Gauge,
    rules_reload_failures: Counter,
    ruleset: Family<VersionLabel, Gauge>,
    active_version: Mutex<String>,
    transactions: Family<ReasonLabel, Counter>,
    state_shards: Gauge,
    state_subjects: Gauge,
    state_entries: Gauge,
    state_restore: Histogram,
    state_writes: Family<ReasonLabel, Counter>,
    suppressed: Family<CommandLabels, Counter>,
    inventory_identities: Gauge,
    inventory_updated: Gauge,
    ready: Gauge,
    inventory_records: Family<ReasonLabel, Counter>,
    identities_seen: Family<ReasonLabel, Counter>,
    untrusted: Family<UntrustedLabels, Counter>,
    refused: Family<CommandLabels, Counter>,
    /// Circuit breakers and approval holds.
    pub rails: super::rails::RailMetrics,
    /// Results, time to containment, re-sends and escalations.
    pub lifecycle: super::lifecycle::LifecycleMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("containd");
        let m = Self {
            consumed: Family::default(),
            decisions: Family::default(),
            per_signal: Default::default(),
            dead_letters: Family::default(),
            commands: Family::default(),
            condition_errors: Family::default(),
            delivery_failures: Counter::default(),
            outputs_refused: Family::default(),
            held: Family::default(),
            outputs_waiting: Gauge::default(),
            state_restore_failures: Counter::default(),
            state_records_skipped: Counter::default(),
            backpressure_waits: Counter::default(),
            decision_latency: Histogram::new(exponential_buckets(0.000_005, 2.0, 18)),
            signal_to_command: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            consumer_lag: Family::default(),
            in_flight: Gauge::default(),
            assigned_partitions: Gauge::default(),
            rules_loaded: Gauge::default(),
            rules_reload_failures: Counter::default(),
            ruleset: Family::default(),
            active_version: Mutex::new(String::new()),
            transactions: Family::default(),
            state_shards: Gauge::default(),
            state_subjects: Gauge::default(),
            state_entries: Gauge::default(),
            state_restore: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            state_writes: Family::default(),
            suppressed: Family::default(),
            inventory_identities: Gauge::default(),
            inventory_updated: Gauge::default(),
            ready: Gauge::default(),
            inventory_records: Family::default(),
            identities_seen: Family::default(),
            untrusted: Family::default(),
            refused: Family::default(),
            rails: Default::default(),
            lifecycle: Default::default(),
            registry: Registry::default(),
        };
        m.register_pipeline(&mut registry);
        m.register_delivery(&mut registry);
        m.register_state(&mut registry);
        m.register_rules_and_trust(&mut registry);
        m.rails.register(&mut registry);
        m.lifecycle.register(&mut registry);
        Self { registry, ..m }
    }

    /// Signals in, decisions and dead letters out, and how long deciding takes.
    fn register_pipeline(&self, registry: &mut Registry) {
        registry.register(
            "signals_consumed",
            "Signal records consumed (= decisions + dead letters)",
            self.consumed.clone(),
        );
        registry.register(
            "decisions",
            "Signals decided, by topic and outcome",
            self.decisions.clone(),
        );
        registry.register(
            "dead_letters",
            "Records sent to the dead-letter topic, by reason kind",
            self.dead_letters.clone(),
        );
        registry.register(
            "commands",
            "Enforcement commands produced, by target and action",
            self.commands.clone(),
        );
        registry.register(
            "rule_condition_errors",
            "Rule conditions that failed to evaluate (treated as no match)",
            self.condition_errors.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "Decode, validate and evaluate time per signal",
            self.decision_latency.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records behind the high watermark, per partition (librdkafka statistics)",
            self.consumer_lag.clone(),
        );
        registry.register(
            "ready",
            "1 when this instance is ready (as /readyz), 0 when not",
            self.ready.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions assigned to this instance (signal topics and the approvals topic)",
            self.assigned_partitions.clone(),
        );
    }

    /// Outputs on their way to the broker: failures, refusals, holds, in-flight signals.
    fn register_delivery(&self, registry: &mut Registry) {
        registry.register(
            "delivery_failures",
            "Output records the broker did not acknowledge",
            self.delivery_failures.clone(),
        );
        registry.register(
            "commands_held",
            "Commands decided but held, not sent, by reason (protected_identity, approval_required, breaker_open, missing_parameter) and action",
            self.held.clone(),
        );
        registry.register(
            "outputs_refused",
            "Commands and decision records the broker refused for good, dead-lettered in their place",
            self.outputs_refused.clone(),
        );
        registry.register(
            "outputs_waiting",
            "Output records waiting to be produced again after a failed delivery",
            self.outputs_waiting.clone(),
        );
        registry.register(
            "backpressure_waits",
            "Times consumption paused because too many signals were in flight",
            self.backpressure_waits.clone(),
        );
        registry.register(
            "signal_to_command_seconds",
            "From the signal's bus timestamp to the broker acknowledging its command",
            self.signal_to_command.clone(),
        );
        registry.register(
            "in_flight_signals",
            "Signals whose outputs are not yet all acknowledged",
            self.in_flight.clone(),
        );
        registry.register(
            "transactions",
            "exactly_once mode: transactions by result",
            self.transactions.clone(),
        );
    }

    /// Partition state: its size, rebuilds and changelog writes.
    fn register_state(&self, registry: &mut Registry) {
        registry.register(
            "state_restore_failures",
            "Partition state rebuilds that failed and will be retried (the broker unreachable)",
            self.state_restore_failures.clone(),
        );
        registry.register(
            "state_records_skipped",
            "Changelog records that could not be read on a rebuild (their subject starts empty)",
            self.state_records_skipped.clone(),
        );
        registry.register(
            "state_partitions",
            "Input partitions whose state this instance holds",
            self.state_shards.clone(),
        );
        registry.register(
            "state_subjects",
            "Subjects with state (windows, firings, issued commands, open containments)",
            self.state_subjects.clone(),
        );
        registry.register(
            "state_entries",
            "State entries held (window hits, firings, issued commands)",
            self.state_entries.clone(),
        );
        registry.register(
            "state_restore_seconds",
            "Time to rebuild one partition's state from the changelog",
            self.state_restore.clone(),
        );
        registry.register(
            "state_changelog_records",
            "Changelog records written, by cause (decision, sweep)",
            self.state_writes.clone(),
        );
    }

    /// Rule sets, suppression, the inventory, trust refusals and the build.
    fn register_rules_and_trust(&self, registry: &mut Registry) {
        registry.register(
            "rules_loaded",
            "Rules in the active rule set",
            self.rules_loaded.clone(),
        );
        registry.register(
            "rules_reload_failures",
            "Rule reloads refused because the new set had problems (the running set stays)",
            self.rules_reload_failures.clone(),
        );
        registry.register(
            "ruleset_active",
            "1 for the active rule-set version",
            self.ruleset.clone(),
        );
        registry.register(
            "commands_suppressed",
            "Commands not re-issued because the same action went to the target recently",
            self.suppressed.clone(),
        );
        registry.register(
            "inventory_identities",
            "Identities in the in-memory inventory",
            self.inventory_identities.clone(),
        );
        registry.register(
            "inventory_last_update_timestamp_seconds",
            "When the inventory was last loaded or changed (unix time)",
            self.inventory_updated.clone(),
        );
        registry.register(
            "inventory_records",
            "Inventory records read, by result (upserted, deleted, rejected)",
            self.inventory_records.clone(),
        );
        registry.register(
            "decided_identities",
            "Decided signals by what the inventory knew of the subject (known, unknown, ownerless)",
            self.identities_seen.clone(),
        );
        registry.register(
            "untrusted_signals",
            "Signals refused before any rule ran, by reason (unknown_issuer, topic_not_allowed, \
             event_type_not_allowed, unsigned, future_timestamp, duplicate) and configured issuer",
            self.untrusted.clone(),
        );
        registry.register(
            "commands_refused",
            "Commands matched rules wanted that the signal's source has no authority for",
            self.refused.clone(),
        );
        registry.register(
            "build",
            "containd build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            }),
        );
    }

    /// OpenMetrics text exposition, with the process metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        let at = out.rfind("# EOF").unwrap_or(out.len());
        out.insert_str(at, &super::process::render());
        out
    }

    pub fn signal_consumed(&self, topic: &str) {
        let label = || TopicLabel {
            topic: topic.into(),
        };
        let resolve = || self.consumed.get_or_create(&label()).clone();
        self.per_signal[0].inc(topic, "", resolve);
    }

    pub fn signal_decided(&self, topic: &str, outcome: &str, latency: Duration) {
        let labels = || DecisionLabels {
            topic: topic.into(),
            outcome: outcome.into(),
        };
        let resolve = || self.decisions.get_or_create(&labels()).clone();
        self.per_signal[1].inc(topic, outcome, resolve);
        self.decision_latency.observe(latency.as_secs_f64());
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn command_produced(&self, target: &str, action: &str) {
        let labels = || CommandLabels {
            target: target.into(),
            action: action.into(),
        };
        let resolve = || self.commands.get_or_create(&labels()).clone();
        self.per_signal[2].inc(target, action, resolve);
    }

    pub fn command_acknowledged(&self, signal_timestamp_ms: i64) {
        let now = chrono::Utc::now().timestamp_millis();
        let secs = (now - signal_timestamp_ms).max(0) as f64 / 1000.0;
        self.signal_to_command.observe(secs);
    }

    pub fn condition_failed(&self, rule: &str) {
        self.condition_errors
            .get_or_create(&RuleLabel { rule: rule.into() })
            .inc();
    }

    pub fn delivery_failed(&self) {
        self.delivery_failures.inc();
    }

    pub fn command_held(&self, reason: &str, action: &str) {
        self.held
            .get_or_create(&HeldLabels {
                reason: reason.into(),
                action: action.into(),
            })
            .inc();
    }

    pub fn output_refused(&self, kind: &str) {
        self.outputs_refused
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn state_restore_failed(&self) {
        self.state_restore_failures.inc();
    }

    pub fn state_records_skipped(&self, n: u64) {
        self.state_records_skipped.inc_by(n);
    }

    pub fn set_outputs_waiting(&self, n: usize) {
        self.outputs_waiting.set(n as i64);
    }

    pub fn backpressure_wait(&self) {
        self.backpressure_waits.inc();
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(n as i64);
    }

    pub fn set_assigned_partitions(&self, n: usize) {
        self.assigned_partitions.set(n as i64);
    }

    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .get_or_create(&PartitionLabels {
                topic: topic.into(),
                partition: partition.to_string(),
            })
            .set(lag);
    }

    /// A revoked partition's lag is no longer this instance's to report.
    pub fn forget_consumer_lag(&self, topic: &str, partition: i32) {
        self.consumer_lag.remove(&PartitionLabels {
            topic: topic.into(),
            partition: partition.to_string(),
        });
    }

    pub fn rules_activated(&self, count: usize, version: &str) {
        self.rules_loaded.set(count as i64);
        let mut active = self
            .active_version
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !active.is_empty() {
            self.ruleset
                .get_or_create(&VersionLabel {
                    version: active.clone(),
                })
                .set(0);
        }
        self.ruleset
            .get_or_create(&VersionLabel {
                version: version.into(),
            })
            .set(1);
        *active = version.into();
    }

    pub fn rules_reload_failed(&self) {
        self.rules_reload_failures.inc();
    }

    pub fn transaction(&self, result: &str) {
        self.transactions
            .get_or_create(&ReasonLabel {
                reason: result.into(),
            })
            .inc();
    }

    pub fn state_size(&self, shards: usize, subjects: usize, entries: usize) {
        self.state_shards.set(shards as i64);
        self.state_subjects.set(subjects as i64);
        self.state_entries.set(entries as i64);
    }

    pub fn state_restored(&self, took: Duration) {
        self.state_restore.observe(took.as_secs_f64());
    }

    pub fn state_written(&self, cause: &'static str, n: usize) {
        self.state_writes
            .get_or_create(&ReasonLabel {
                reason: cause.into(),
            })
            .inc_by(n as u64);
    }

    pub fn command_suppressed(&self, target: &str, action: &str) {
        self.suppressed
            .get_or_create(&CommandLabels {
                target: target.into(),
                action: action.into(),
            })
            .inc();
    }

    pub fn inventory_size(&self, identities: usize) {
        self.inventory_identities.set(identities as i64);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn inventory_updated(&self) {
        self.inventory_updated.set(chrono::Utc::now().timestamp());
    }

    pub fn inventory_record(&self, result: &'static str) {
        self.inventory_records
            .get_or_create(&ReasonLabel {
                reason: result.into(),
            })
            .inc();
    }

    /// `known`, `unknown` or `ownerless`, once per decided signal.
    pub fn identity_decided(&self, what: &'static str) {
        self.identities_seen
            .get_or_create(&ReasonLabel {
                reason: what.into(),
            })
            .inc();
    }

    /// A signal that may not act. `issuer` is the configured issuer, or `None` when the
    /// signal's issuer is not configured (reported as `unlisted`).
    pub fn signal_untrusted(&self, reason: &str, issuer: Option<&str>) {
        self.untrusted
            .get_or_create(&UntrustedLabels {
                reason: reason.into(),
                issuer: issuer.unwrap_or("unlisted").into(),
            })
            .inc();
    }

    pub fn command_refused(&self, target: &str, action: &str) {
        self.refused
            .get_or_create(&CommandLabels {
                target: target.into(),
                action: action.into(),
            })
            .inc();
    }
}
