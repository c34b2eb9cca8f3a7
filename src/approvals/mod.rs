//! Approval holds: commands automated containment may not issue on its own (a protected
//! identity's drastic action, an action, target or identity that requires approval, a command
//! past an open circuit breaker) wait for an operator.
//!
//! The approvals topic is the log of every hold and every verdict, keyed by command id so a
//! command's hold and its verdicts share a partition, in order:
//!
//! * `hold` — containd publishes the complete command, with its final `command_id`, the
//!   evidence and (with `[safety] approvals_key_file`) an HMAC seal;
//! * `approve` / `deny` — an operator (`containd approvals approve|deny`) releases exactly that
//!   command to its target topic, or cancels it;
//! * `expire` — containd's own marker that the approval timeout passed: the hold is cancelled
//!   or a milder action is released in its place.
//!
//! containd consumes the topic beside the signal topics; the partition's holds are state like
//! any other (changelog-backed, rebuilt on assignment), so a hold survives restarts and
//! rebalances, and a verdict re-read after a crash re-sends the identical release instead of
//! deciding again. Every transition is a decision record.

pub mod cli;
mod table;

pub use table::{is_command_id, Closed, Hold, HoldTable, Transition};

use crate::emit::{EnforcementCommand, SourcePosition};
use serde::{Deserialize, Serialize};

/// One record of the approvals topic (JSON; key: the command id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApprovalRecord {
    Hold(Box<HoldRequest>),
    Approve(Verdict),
    Deny(Verdict),
    Expire(Expiry),
}

impl ApprovalRecord {
    pub fn command_id(&self) -> &str {
        match self {
            Self::Hold(h) => &h.command_id,
            Self::Approve(v) | Self::Deny(v) => &v.command_id,
            Self::Expire(e) => &e.command_id,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs with string keys always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A held command, as containd publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub command_id: String,
    /// `protected_identity`, `approval_required` or `breaker_open`.
    pub reason: String,
    pub detail: String,
    pub held_at: i64,
    /// When `on_timeout` applies if nobody approved or denied it.
    pub expires_at: i64,
    /// `cancel` or `release:<action>`, as configured when it was held.
    pub on_timeout: String,
    /// The target topic a release goes to.
    pub topic: String,
    pub command: EnforcementCommand,
    /// The subject as containd keys it: the command may carry only a pseudonym, or nothing,
    /// under its target's disclosure profile (docs/disclosure.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_key: Option<String>,
    pub evidence: Evidence,
    /// HMAC-SHA-256 (hex) of the record without the seal, under `approvals_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl HoldRequest {
    /// The subject's key: the one recorded at hold time, else (holds written before it was)
    /// the command's subject id.
    pub fn subject_key(&self) -> &str {
        self.subject_key
            .as_deref()
            .unwrap_or(&self.command.subject.id)
    }
}

/// Why the command was decided: enough to judge it without reading other topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub signal_id: String,
    pub issuer: String,
    pub event_type: String,
    pub rule_id: String,
    /// Where the signal was read.
    pub source: SourcePosition,
    /// The inventory identity, when it knows the subject.
    #[serde(default)]
    pub identity: Option<String>,
}

/// An operator's verdict on one held command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub command_id: String,
    pub approver: String,
    pub reason: String,
    /// An approval that releases less: these fields are removed from the held command first
    /// (a legal or privacy reviewer's redaction; names as in docs/disclosure.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expiry {
    pub command_id: String,
}

/// What happens to a hold nobody decided on in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnTimeout {
    Cancel,
    /// Release this (milder) action in the held command's place.
    Release(String),
}

impl OnTimeout {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "cancel" => Ok(Self::Cancel),
            Some(("release", a)) if !a.is_empty() => Ok(Self::Release(a.to_string())),
            _ => Err(format!(
                "{s:?} is neither \"cancel\" nor \"release:<action>\""
            )),
        }
    }
}

/// What the partition's holds are judged by.
#[derive(Clone, Default)]
pub struct Policy {
    /// Seals held commands; with it, an unsealed or wrongly sealed hold is refused. `Err`:
    /// the key file could not be read, and every hold is refused (never released unsealed).
    pub key: Option<Result<Vec<u8>, String>>,
    /// Who may approve or deny; empty: anyone who may write the topic.
    pub approvers: Vec<String>,
    /// Targets and the actions they accept, for a milder release on timeout.
    pub accepts: Vec<(String, Vec<String>)>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("sealed", &self.key.is_some())
            .field("approvers", &self.approvers)
            .finish()
    }
}

impl Policy {
    pub fn of(settings: &crate::config::Settings) -> Self {
        let key = settings.safety.approvals_key_file.as_ref().map(|path| {
            read_key(path).map_err(|e| {
                let why = format!("approvals key file {}: {e}", path.display());
                tracing::error!(error = %why, "held commands cannot be sealed or released");
                why
            })
        });
        Self {
            key,
            approvers: settings.safety.approvers.clone(),
            accepts: settings
                .targets
                .iter()
                .map(|t| (t.name.clone(), t.actions.clone()))
                .collect(),
        }
    }

    pub fn accepts(&self, target: &str, action: &str) -> bool {
        self.accepts
            .iter()
            .any(|(t, actions)| t == target && actions.iter().any(|a| a == action))
    }
}

/// Reads a key file: its bytes without a trailing newline, at least 16 of them.
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut key = std::fs::read(path).map_err(|e| e.to_string())?;
    while key.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        key.pop();
    }
    match key.len() {
        0..16 => Err(format!(
            "holds {} bytes; a key needs at least 16",
            key.len()
        )),
        _ => Ok(key),
    }
}

/// Seals a hold: HMAC-SHA-256 over its JSON without the seal.
pub fn seal(key: &[u8], hold: &HoldRequest) -> String {
    crate::trust::seal::seal(key, &[&unsealed(hold)])
}

/// Whether a hold carries the seal `key` gives it (constant-time comparison).
pub fn sealed_by(key: &[u8], hold: &HoldRequest) -> bool {
    let Some(given) = hold.seal.as_deref() else {
        return false;
    };
    crate::trust::seal::verify(key, &[&unsealed(hold)], given.as_bytes())
}

/// The hold's JSON without its seal: what the seal covers.
fn unsealed(hold: &HoldRequest) -> Vec<u8> {
    let mut unsealed = hold.clone();
    unsealed.seal = None;
    serde_json::to_vec(&unsealed).unwrap_or_default()
}

/// The id of the milder command released in a held command's place: derived from the held
/// id and the action, so a replay derives the same one.
pub fn milder_id(held: &str, action: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{held}|timeout|{action}").as_bytes());
    crate::codec::hex(&digest[..16])
}

#[cfg(test)]
mod tests;
