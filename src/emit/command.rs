//! The enforcement command: mirrors `schemas/enforcement_command.avsc`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The built-in enforcement vocabulary; `extra_actions` in config extends it.
/// Actions that cut an identity off (rather than ask it to prove itself again or end what it
/// has open): a rule that takes one on every event type needs `allow_broad`.
pub const DRASTIC: &[&str] = &[
    "disable_account",
    "disable_credential",
    "quarantine_workload",
    "revoke_access",
    "block_session",
];

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
    "share_indicator",
];

/// What an action cannot be carried out without: any one of these parameters (non-empty), or
/// a principal at the target when `principal` is set. `None`: nothing required.
pub struct Requirement {
    pub any_of: &'static [&'static str],
    pub or_principal: bool,
    /// Every one of these too.
    pub all_of: &'static [&'static str],
}

/// The parameters the built-in actions need. An adapter told to disable "a credential" with
/// nothing that names it (an id, an X.509 serial, a FIDO2 AAGUID, a friendly name, a
/// `scope` such as `all`) and no principal would have to guess which one.
pub fn requirement(action: &str) -> Option<Requirement> {
    match action {
        "disable_credential" | "rotate_credential" => Some(Requirement {
            any_of: &[
                "credential_id",
                "x509_serial",
                "fido2_aaguid",
                "friendly_name",
                "scope",
            ],
            or_principal: true,
            all_of: &[],
        }),
        // An indicator is its type and value; nothing else is needed (or sent, by default).
        "share_indicator" => Some(Requirement {
            any_of: &[],
            or_principal: false,
            all_of: &["indicator_type", "indicator_value"],
        }),
        _ => None,
    }
}

impl Requirement {
    /// What is missing from `parameters` (and the principal), if anything.
    pub fn missing(
        &self,
        parameters: &BTreeMap<String, String>,
        principal: Option<&str>,
    ) -> Option<String> {
        let present = |p: &&str| parameters.get(*p).is_some_and(|v| !v.is_empty());
        if let Some(absent) = self.all_of.iter().find(|p| !present(p)) {
            return Some(format!("needs {absent}"));
        }
        let any = self.any_of.is_empty() || self.any_of.iter().any(present);
        if any || (self.or_principal && principal.is_some()) {
            return None;
        }
        let mut needs = self.any_of.join(" or ");
        if self.or_principal {
            needs.push_str(" or a principal at the target");
        }
        Some(format!("needs {needs}"))
    }
}

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

/// What a command id is derived from: the signal (issuer, id), the subject it concerns, and
/// what is done where as whom. Ids never collide across issuers (ids are unique per issuer
/// only) or subjects.
#[derive(Debug, Clone, Copy)]
pub struct CommandKey<'a> {
    pub issuer: &'a str,
    pub signal_id: &'a str,
    pub subject_id: &'a str,
    pub rule_id: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub principal: Option<&'a str>,
}

impl CommandKey<'_> {
    /// Deterministic id: the first 128 bits of SHA-256 over the length-prefixed parts, hex.
    /// A replay of the same signal yields the same id, which is what adapters deduplicate on.
    pub fn id(&self) -> String {
        crate::codec::hex(self.bytes())
    }

    /// The 16 bytes [`Self::id`] is the hex form of.
    pub fn bytes(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        let parts = [
            self.issuer,
            self.signal_id,
            self.subject_id,
            self.rule_id,
            self.action,
            self.target,
        ];
        for part in parts.into_iter().chain(self.principal) {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize()[..16]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(
        issuer: &'a str,
        signal: &'a str,
        subject: &'a str,
        target: &'a str,
        principal: Option<&'a str>,
    ) -> CommandKey<'a> {
        CommandKey {
            issuer,
            signal_id: signal,
            subject_id: subject,
            rule_id: "r1",
            action: "block_session",
            target,
            principal,
        }
    }

    #[test]
    fn id_is_deterministic_and_separates_fields() {
        let a = key("https://idp", "s1", "svc", "aws", None).id();
        assert_eq!(a, key("https://idp", "s1", "svc", "aws", None).id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, key("https://idp", "s1", "svc", "gcp", None).id());
        let p1 = key("https://idp", "s1", "svc", "aws", Some("arn:1")).id();
        assert_ne!(a, p1);
        assert_ne!(
            p1,
            key("https://idp", "s1", "svc", "aws", Some("arn:2")).id()
        );
        // Same signal id from another issuer, or about another subject: another command.
        assert_ne!(a, key("https://other", "s1", "svc", "aws", None).id());
        assert_ne!(a, key("https://idp", "s1", "svc-2", "aws", None).id());
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            key("i", "ab", "c", "x", None).id(),
            key("i", "a", "bc", "x", None).id()
        );
    }
}
