//! Rules without Kafka: `containd rules test DIR` runs the YAML test cases that sit next to
//! the rules, and `containd replay` prints what the rules would decide for recorded signals.
//! Both use the same ingest and decide code as the pipeline.

use crate::codec::{AvroCodec, Format, Schemas};
use crate::config::{self, Problem, Settings};
use crate::decide::Decision;
use crate::emit::EnforcementCommand;
use crate::inventory::{IdentityRecord, Inventory};
use crate::pipeline::{retention, Incoming, OutKind, Processed, Processor};
use crate::rules::{self, RuleSet};
use crate::state::StateStore;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The settings that give rules their targets: `--config`, else `containd.toml` in the rules
/// directory or its parent.
pub fn find_config(rules_dir: &Path, explicit: Option<&Path>) -> Result<PathBuf, Vec<Problem>> {
    if let Some(p) = explicit {
        return Ok(p.into());
    }
    let candidates = [
        rules_dir.join("containd.toml"),
        rules_dir.join("..").join("containd.toml"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        vec![Problem {
            file: rules_dir.into(),
            line: None,
            field: "--config".into(),
            message: "no containd.toml in the rules directory or its parent; pass --config FILE for the targets".into(),
        }]
    })
}

/// Decides signals offline with one rule set, keeping state (windows, suppression, open
/// containments) across the signals it is given, and an inventory of its own.
pub struct OfflineDecider {
    processor: Processor,
    rules: RuleSet,
    settings: Arc<Settings>,
    inventory: Inventory,
    state: StateStore,
    /// The topic signals are taken to arrive on (sources may be bound to topics): the
    /// config's first signal topic unless a test case names one.
    topic: String,
    default_topic: String,
}

impl OfflineDecider {
    /// Loads the config at `config_path` (its targets and actions) and the rules in `rules_dir`.
    pub fn load(config_path: &Path, rules_dir: &Path) -> Result<Self, Vec<Problem>> {
        let text = config::read(config_path).map_err(|p| p.0)?;
        let mut settings: Settings = config::parse(config_path, &text).map_err(|p| p.0)?;
        settings.rules.dir = rules_dir.into();
        let rules = rules::load_dir(rules_dir, &settings.targets, &settings.extra_actions)?;
        let schemas = Schemas::bundled().map_err(|e| {
            vec![Problem {
                file: "schemas".into(),
                line: None,
                field: String::new(),
                message: e.to_string(),
            }]
        })?;
        let codec = AvroCodec::new(Arc::new(schemas), &[]);
        let trust = Arc::new(crate::trust::Trust::load(&settings, config_path)?);
        let settings = Arc::new(settings);
        let state = fresh_state(&settings);
        let topic = settings
            .input
            .topics
            .first()
            .cloned()
            .unwrap_or_else(|| "offline".into());
        Ok(Self {
            default_topic: topic.clone(),
            topic,
            processor: Processor::new(settings.clone(), codec, trust),
            rules,
            settings,
            inventory: Inventory::new(),
            state,
        })
    }

    /// Replaces the circuit breakers (`[]`: none), e.g. to measure the rest of the path alone.
    pub fn configure_breakers(&mut self, specs: &[crate::config::BreakerSettings]) {
        crate::safety::breakers::lock(&self.state.breakers).configure(specs);
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Forgets all state and inventory (each test case starts from nothing).
    pub fn reset(&mut self) {
        self.inventory = Inventory::new();
        self.state = fresh_state(&self.settings);
        self.topic = self.default_topic.clone();
    }

    pub fn add_identity(&mut self, record: IdentityRecord) {
        self.inventory.upsert(record);
    }

    /// Sets the topic the next signals arrive on (a test case's `topic`).
    pub fn set_topic(&mut self, topic: &str) {
        self.topic = topic.to_string();
    }

    /// Decides one line of a signals file: a JSON signal, or a raw SET (a compact JWS),
    /// verified exactly as on the wire.
    pub fn decide_line(&mut self, line: &[u8], position: i64) -> Result<Decision, String> {
        let format = if line.trim_ascii_start().starts_with(b"{") {
            Format::Json
        } else {
            Format::Set
        };
        self.decide_as(format, line, position)
    }

    /// Decides one signal in its JSON form at `position` (increasing: it is the offset state
    /// is kept by); `Err` carries the dead-letter reason.
    pub fn decide_json(&mut self, json: &[u8], position: i64) -> Result<Decision, String> {
        self.decide_as(Format::Json, json, position)
    }

    fn decide_as(
        &mut self,
        format: Format,
        bytes: &[u8],
        position: i64,
    ) -> Result<Decision, String> {
        let msg = Incoming {
            topic: &self.topic,
            partition: 0,
            offset: position,
            timestamp: None,
            key: None,
            payload: Some(bytes),
            format: Some(format),
            seal: None,
        };
        match self
            .processor
            .process(&self.rules, &self.inventory, &mut self.state, &msg)
        {
            (Processed::Decided(d), _) => Ok(*d),
            (Processed::DeadLettered(dl), out) => {
                debug_assert!(out.iter().all(|o| o.kind == OutKind::DeadLetter));
                Err(format!("{} ({})", dl.reason, dl.reason.kind()))
            }
            (Processed::Approval(_), _) => Err("an approvals record, not a signal".into()),
            (Processed::Result(_), _) => Err("a results record, not a signal".into()),
        }
    }
}

/// Empty state with the configured circuit breakers, so a what-if replay holds what the
/// daemon would.
fn fresh_state(settings: &Settings) -> StateStore {
    let breakers = crate::safety::breakers::Breakers::new(&settings.safety.breakers);
    StateStore::new(retention(settings)).with_breakers(Arc::new(std::sync::Mutex::new(breakers)))
}

/// A file of rule tests (`*.test.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// The topic the signals arrive on (default: the config's first signal topic), for
    /// sources bound to topics.
    #[serde(default)]
    pub topic: Option<String>,
    /// The issuer of the case's signals that name no `source` themselves.
    #[serde(default)]
    pub source: Option<String>,
    /// Signals in their JSON form, decided in order (state carries from one to the next).
    /// A signal whose `source.issuer` is not a configured source decides `untrusted`.
    pub signals: Vec<serde_json::Value>,
    /// Inventory records (their JSON form) known during the case.
    #[serde(default)]
    pub inventory: Vec<IdentityRecord>,
    pub expect: Expect,
}

impl TestCase {
    /// The case's signals as JSON, each with the case's `source` when it names none.
    pub fn signal_values(&self) -> impl Iterator<Item = serde_json::Value> + '_ {
        self.signals
            .iter()
            .map(|s| with_source(s, self.source.as_deref()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Outcome of the last signal's decision (`acted`, `no_match`, `dry_run`, …).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Outcome of every signal's decision, in order (for windows, suppression, restore).
    #[serde(default)]
    pub outcomes: Option<Vec<String>>,
    /// Rules that matched the last signal, in evaluation order.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    /// Every command the signals cause, in any order; parameters listed must match, others
    /// may be present. An empty list expects no command.
    #[serde(default)]
    pub commands: Option<Vec<ExpectedCommand>>,
    /// Every command held for an operator (approval, protection, review), as `commands`.
    #[serde(default)]
    pub held: Option<Vec<ExpectedCommand>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCommand {
    pub action: String,
    pub target: String,
    /// The principal at the target (blast radius), when given.
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// The signals the command cites (`why.signal_ids`), in order, when given.
    #[serde(default)]
    pub signal_ids: Option<Vec<String>>,
}

/// What a case's signals decided: every command, each outcome, the last decision.
struct CaseRun {
    commands: Vec<EnforcementCommand>,
    held: Vec<EnforcementCommand>,
    outcomes: Vec<&'static str>,
    last: Decision,
}

/// Result of one test case: `Ok` or the lines of its diff.
pub fn run_case(decider: &mut OfflineDecider, case: &TestCase) -> Result<(), Vec<String>> {
    let run = decide_case(decider, case)?;
    let mut diff = Vec::new();
    diff_outcomes(&case.expect, &run, &mut diff);
    if let Some(want) = &case.expect.commands {
        diff_commands(want, &run.commands, &mut diff);
    }
    if let Some(want) = &case.expect.held {
        let mut held = Vec::new();
        diff_commands(want, &run.held, &mut held);
        diff.extend(held.into_iter().map(|l| format!("held: {l}")));
    }
    if diff.is_empty() {
        Ok(())
    } else {
        Err(diff)
    }
}

/// Decides the case's signals in order from empty state, with its inventory and topic.
fn decide_case(decider: &mut OfflineDecider, case: &TestCase) -> Result<CaseRun, Vec<String>> {
    decider.reset();
    if let Some(topic) = &case.topic {
        decider.set_topic(topic);
    }
    for r in &case.inventory {
        decider.add_identity(r.clone());
    }
    let mut commands: Vec<EnforcementCommand> = Vec::new();
    let mut held: Vec<EnforcementCommand> = Vec::new();
    let mut outcomes = Vec::new();
    let mut last = None;
    for (i, s) in case.signal_values().enumerate() {
        let bytes = serde_json::to_vec(&s).map_err(|e| vec![format!("signal {i}: {e}")])?;
        let d = decider
            .decide_json(&bytes, i as i64)
            .map_err(|reason| vec![format!("signal {i} would be dead-lettered: {reason}")])?;
        commands.extend(d.commands.iter().cloned());
        held.extend(d.held_commands.iter().cloned());
        outcomes.push(d.record.outcome.name());
        last = Some(d);
    }
    let last = last.ok_or_else(|| vec!["no signals".to_string()])?;
    Ok(CaseRun {
        commands,
        held,
        outcomes,
        last,
    })
}

/// The expected outcome, outcomes and matched rules against the run.
fn diff_outcomes(expect: &Expect, run: &CaseRun, diff: &mut Vec<String>) {
    let record = &run.last.record;
    if let Some(want) = &expect.outcome {
        let got = record.outcome.name();
        if got != want {
            diff.push(format!("- outcome: {want}"));
            diff.push(format!("+ outcome: {got}"));
        }
    }
    if let Some(want) = &expect.outcomes {
        if run.outcomes != want.iter().map(String::as_str).collect::<Vec<_>>() {
            diff.push(format!("- outcomes: {want:?}"));
            diff.push(format!("+ outcomes: {:?}", run.outcomes));
        }
    }
    if let Some(want) = &expect.rules {
        let got: Vec<&str> = record
            .matched_rules
            .iter()
            .map(|r| r.rule_id.as_str())
            .collect();
        if got != want.iter().map(String::as_str).collect::<Vec<_>>() {
            diff.push(format!("- rules: {want:?}"));
            diff.push(format!("+ rules: {got:?}"));
        }
    }
}

/// Every expected command must be among the commands (in any order); the rest are extra.
fn diff_commands(
    want: &[ExpectedCommand],
    commands: &[EnforcementCommand],
    diff: &mut Vec<String>,
) {
    let mut unmatched: Vec<&EnforcementCommand> = commands.iter().collect();
    for w in want {
        let found = unmatched.iter().position(|c| {
            c.action == w.action
                && c.target == w.target
                && (w.principal_id.is_none() || c.principal_id == w.principal_id)
                && w.signal_ids
                    .as_ref()
                    .is_none_or(|ids| *ids == c.why.signal_ids)
                && w.parameters
                    .iter()
                    .all(|(k, v)| c.parameters.get(k) == Some(v))
        });
        match found {
            Some(i) => {
                unmatched.remove(i);
            }
            None => diff.push(format!(
                "- command {} → {}{} {:?}{}",
                w.action,
                w.target,
                principal(&w.principal_id),
                w.parameters,
                w.signal_ids
                    .as_ref()
                    .map_or(String::new(), |ids| format!(" citing {ids:?}"))
            )),
        }
    }
    for c in unmatched {
        diff.push(format!(
            "+ command {} → {}{} {:?} (rule {}, citing {:?})",
            c.action,
            c.target,
            principal(&c.principal_id),
            c.parameters,
            c.why.rule_id,
            c.why.signal_ids
        ));
    }
}

/// The signal with `source.issuer` = `issuer` when it names no source itself.
fn with_source(signal: &serde_json::Value, issuer: Option<&str>) -> serde_json::Value {
    let mut signal = signal.clone();
    if let (Some(issuer), Some(obj)) = (issuer, signal.as_object_mut()) {
        obj.entry("source")
            .or_insert_with(|| serde_json::json!({"issuer": issuer}));
    }
    signal
}

/// Reads inventory records, one JSON object per line; errors name the file and line.
pub fn read_inventory(path: &Path) -> Result<Vec<IdentityRecord>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn principal(p: &Option<String>) -> String {
    p.as_ref().map(|p| format!(" as {p}")).unwrap_or_default()
}

/// Test files next to the rules, in name order.
pub fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
    });
    files.sort();
    files
}

/// Parses a test file, with the YAML error's line on failure.
pub fn parse_test_file(path: &Path) -> Result<TestFile, Problem> {
    let problem = |line, message| Problem {
        file: path.into(),
        line,
        field: String::new(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| problem(None, format!("cannot read: {e}")))?;
    serde_yaml::from_str(&text).map_err(|e| problem(e.location().map(|l| l.line()), e.to_string()))
}
