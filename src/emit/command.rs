//! The enforcement command: mirrors `schemas/enforcement_command.avsc`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The built-in enforcement vocabulary; `extra_actions` in config extends it.
pub const VOCABULARY: &[&str] = &[
    "revoke_sessions",
    "require_step_up",
    "block_session",
    "disable_credential",
    "rotate_credential",
    "disable_account",
    "quarantine_workload",
    "revoke_access",
    "shorten_access_window",
    "sync_policy",
    "restore",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementCommand {
    pub command_id: String,
    pub action: String,
    pub target: String,
    /// The identity as this target knows it, from the inventory (blast radius).
    pub principal_id: Option<String>,
    pub subject: TargetSubject,
    pub parameters: BTreeMap<String, String>,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub why: Why,
}

/// The subject as the target knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSubject {
    pub id: String,
    pub format: String,
    pub identifiers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Why {
    pub rule_id: String,
    pub ruleset_version: String,
    pub signal_ids: Vec<String>,
    pub event_type: String,
    pub description: Option<String>,
}

/// Deterministic command id: the first 128 bits of SHA-256 over (signal id, rule id, action,
/// target, and the principal when the command names one), hex. A replay of the same signal
/// yields the same id, which is what adapters deduplicate on.
pub fn command_id(
    signal_id: &str,
    rule_id: &str,
    action: &str,
    target: &str,
    principal: Option<&str>,
) -> String {
    hex::encode(command_id_bytes(
        signal_id, rule_id, action, target, principal,
    ))
}

/// The 16 bytes [`command_id`] is the hex form of.
pub fn command_id_bytes(
    signal_id: &str,
    rule_id: &str,
    action: &str,
    target: &str,
    principal: Option<&str>,
) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [signal_id, rule_id, action, target]
        .into_iter()
        .chain(principal)
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_deterministic_and_separates_fields() {
        let a = command_id("s1", "r1", "block_session", "aws", None);
        assert_eq!(a, command_id("s1", "r1", "block_session", "aws", None));
        assert_eq!(a.len(), 32);
        assert_ne!(a, command_id("s1", "r1", "block_session", "gcp", None));
        let p1 = command_id("s1", "r1", "block_session", "aws", Some("arn:1"));
        assert_ne!(a, p1);
        assert_ne!(
            p1,
            command_id("s1", "r1", "block_session", "aws", Some("arn:2"))
        );
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            command_id("ab", "c", "x", "y", None),
            command_id("a", "bc", "x", "y", None)
        );
    }
}
