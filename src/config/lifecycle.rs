//! `[lifecycle]`: what happens after a command is sent — adapters' results, re-sends when a
//! target stays silent, escalation when a command fails (docs/adapters.md).

use super::Settings;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// Track every command until its target's adapter reports it done. Off by default: a
    /// deployment whose adapters write no results would see every command re-sent.
    #[serde(default)]
    pub enabled: bool,
    /// Topic adapters write results to; containd writes its own tracking records there too
    /// (sealed), so a command and its results are read in one order by one instance.
    #[serde(default = "default_results_topic")]
    pub results_topic: String,
    /// How long a target may stay silent about a command before it is sent again
    /// (`[[targets]] result_timeout` overrides it per target).
    #[serde(default = "default_result_timeout", with = "humantime_serde")]
    pub result_timeout: Duration,
    /// Sends of a command (the first included) before the silence counts as a failure and
    /// the escalation runs (`[[targets]] max_attempts` overrides it).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A file holding the key (≥ 16 bytes) that seals containd's tracking records; unset:
    /// `safety.approvals_key_file`. Required: without a seal, anyone who can write the results
    /// topic could make containd re-send a command of their own.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// What containd does when a command fails, is rejected or its target stays silent.
    #[serde(default)]
    pub escalate: Vec<Escalation>,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            results_topic: default_results_topic(),
            result_timeout: default_result_timeout(),
            max_attempts: default_max_attempts(),
            key_file: None,
            escalate: Vec::new(),
        }
    }
}

impl LifecycleSettings {
    /// The key file sealing tracking records: its own, else the approvals key.
    pub fn key_path<'a>(&'a self, settings: &'a Settings) -> Option<&'a PathBuf> {
        self.key_file
            .as_ref()
            .or(settings.safety.approvals_key_file.as_ref())
    }
}

/// `[[lifecycle.escalate]]`: when a command of `action` (at `target`, or any) ends in one of
/// `on`, containd issues `then_action` at `then_target` for the same subject, once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub action: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default = "all_triggers")]
    pub on: Vec<Trigger>,
    pub then_action: String,
    pub then_target: String,
}

/// What ends a command badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every send failed (`failed` results).
    Failed,
    /// The adapter refused it for good.
    Rejected,
    /// The target stayed silent through every send.
    Timeout,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
        }
    }
}

fn all_triggers() -> Vec<Trigger> {
    vec![Trigger::Failed, Trigger::Rejected, Trigger::Timeout]
}

fn default_results_topic() -> String {
    "containment.results.v1".into()
}

fn default_result_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_max_attempts() -> u32 {
    3
}

/// `[lifecycle]` checks: a seal key when enabled, a topic of its own, sensible limits, and
/// escalations that name targets accepting their actions.
pub(crate) fn validate(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let l = &settings.lifecycle;
    if l.enabled && l.key_path(settings).is_none() {
        problem(
            "lifecycle.key_file".into(),
            "lifecycle.enabled needs a key to seal the records containd writes to the results \
             topic (lifecycle.key_file or safety.approvals_key_file): without one, anyone who \
             can write that topic could make containd send commands"
                .into(),
        );
    }
    if let Some(path) = &l.key_file {
        if let Err(e) = crate::approvals::read_key(path) {
            // Names the file and its length, never its content.
            problem(
                "lifecycle.key_file".into(),
                format!("{}: {e}", path.display()),
            );
        }
    }
    if l.results_topic.is_empty() {
        problem("lifecycle.results_topic".into(), "must not be empty".into());
    } else if topic_taken(settings, &l.results_topic) {
        problem(
            "lifecycle.results_topic".into(),
            format!(
                "{:?} is also an input, output, approvals or target topic",
                l.results_topic
            ),
        );
    }
    if l.result_timeout.is_zero() || l.result_timeout > MAX_TIMEOUT {
        problem(
            "lifecycle.result_timeout".into(),
            "must be longer than 0 and at most 30 days".into(),
        );
    }
    if l.max_attempts == 0 {
        problem("lifecycle.max_attempts".into(), "must be at least 1".into());
    }
    for (i, t) in settings.targets.iter().enumerate() {
        if t.result_timeout
            .is_some_and(|d| d.is_zero() || d > MAX_TIMEOUT)
        {
            let field = format!("targets[{i}].result_timeout");
            problem(field, "must be longer than 0 and at most 30 days".into());
        }
        if t.max_attempts == Some(0) {
            problem(
                format!("targets[{i}].max_attempts"),
                "must be at least 1".into(),
            );
        }
    }
    for (i, e) in l.escalate.iter().enumerate() {
        escalation(settings, i, e, problem);
    }
}

/// The longest result timeout: beyond it a target is as good as absent.
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

fn topic_taken(settings: &Settings, topic: &str) -> bool {
    let named = [
        &settings.output.decisions_topic,
        &settings.output.dead_letter_topic,
        &settings.state.changelog_topic,
        &settings.safety.approvals_topic,
    ];
    named.into_iter().any(|t| t == topic)
        || settings.input.topics.iter().any(|t| t == topic)
        || settings.targets.iter().any(|t| t.topic == topic)
        || settings.inventory.topic.as_deref() == Some(topic)
}

fn escalation(
    settings: &Settings,
    i: usize,
    e: &Escalation,
    problem: &mut dyn FnMut(String, String),
) {
    let at = |f: &str| format!("lifecycle.escalate[{i}].{f}");
    let accepts = |target: &str, action: &str| {
        settings
            .targets
            .iter()
            .any(|t| t.name == target && t.actions.iter().any(|a| a == action))
    };
    let known: HashSet<&str> = settings.targets.iter().map(|t| t.name.as_str()).collect();
    if let Some(t) = &e.target {
        if !known.contains(t.as_str()) {
            problem(at("target"), format!("no [[targets]] is named {t:?}"));
        }
    }
    if !settings
        .targets
        .iter()
        .any(|t| t.actions.contains(&e.action))
    {
        problem(
            at("action"),
            format!("no target accepts {:?}: it is never sent", e.action),
        );
    }
    if !accepts(&e.then_target, &e.then_action) {
        problem(
            at("then_target"),
            format!(
                "target {:?} does not accept {:?} (or is not a [[targets]] name)",
                e.then_target, e.then_action
            ),
        );
    }
    if e.on.is_empty() {
        problem(
            at("on"),
            "lists nothing: name failed, rejected and/or timeout".into(),
        );
    }
}
