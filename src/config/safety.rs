//! `[safety]`: the rails that keep automated containment from taking the company down.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetySettings {
    /// Identities drastic actions are never issued for automatically, beside those the
    /// inventory marks `protected`: inventory ids or canonical subject ids, exact or a prefix
    /// ending in `*` (`"breakglass-*"`).
    #[serde(default)]
    pub protected: Vec<String>,
    /// The actions held for a protected identity.
    #[serde(default = "default_drastic")]
    pub drastic_actions: Vec<String>,
    /// Topic held commands are published to, and approvals and denials are read from.
    #[serde(default = "default_approvals_topic")]
    pub approvals_topic: String,
    /// How long a held command waits for an approval or a denial.
    #[serde(default = "default_approval_timeout", with = "humantime_serde")]
    pub approval_timeout: Duration,
    /// What happens to a held command nobody decided on in time: `cancel`, or
    /// `release:<action>` (a milder action sent in its place, e.g. `release:revoke_sessions`).
    #[serde(default = "default_on_timeout")]
    pub on_timeout: String,
    /// Who may approve or deny (the `approver` of an approval record); empty: anyone who
    /// may write the approvals topic.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// A file holding the key that seals held commands (HMAC-SHA-256): with it, a held
    /// command on the approvals topic that containd did not write is never released.
    #[serde(default)]
    pub approvals_key_file: Option<PathBuf>,
    /// Identities whose commands need an approval, by their inventory facts.
    #[serde(default)]
    pub require_approval: Vec<ApprovalPolicy>,
    /// Limits on how many commands may go out; past one, the rest are held.
    #[serde(default)]
    pub breakers: Vec<BreakerSettings>,
    /// A file holding the bearer token `POST /breakers/reset` requires; unset: no reset
    /// over HTTP (breakers close after their cooldown, or on restart).
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
}

impl Default for SafetySettings {
    fn default() -> Self {
        Self {
            protected: Vec::new(),
            drastic_actions: default_drastic(),
            approvals_topic: default_approvals_topic(),
            approval_timeout: default_approval_timeout(),
            on_timeout: default_on_timeout(),
            approvers: Vec::new(),
            approvals_key_file: None,
            require_approval: Vec::new(),
            breakers: Vec::new(),
            admin_token_file: None,
        }
    }
}

/// `[[safety.require_approval]]`: commands for identities with these facts wait for an
/// approval. Each list empty = any; an identity the inventory does not know matches only a
/// policy with both lists empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    #[serde(default)]
    pub criticality: Vec<String>,
    #[serde(default)]
    pub environment: Vec<String>,
    /// The actions it applies to; empty: the drastic actions.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// `[[safety.breakers]]`: at most `max` commands `per` period for each value of `scope`
/// (or only for the value `match`); past that the breaker opens for `cooldown`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    pub name: String,
    pub scope: BreakerScope,
    /// Only this rule, target, action or source issuer; unset: one breaker per value.
    #[serde(default, rename = "match")]
    pub only: Option<String>,
    pub max: u32,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

/// What a breaker counts commands by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerScope {
    Rule,
    Target,
    Action,
    Source,
}

fn default_drastic() -> Vec<String> {
    crate::emit::command::DRASTIC
        .iter()
        .map(|a| a.to_string())
        .collect()
}

fn default_approvals_topic() -> String {
    "containment.approvals.v1".into()
}

fn default_approval_timeout() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_on_timeout() -> String {
    "cancel".into()
}

fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}
