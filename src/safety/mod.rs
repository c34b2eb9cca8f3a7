//! Safety rails: what automated containment may never do on its own.
//!
//! **Protected identities** — break-glass accounts, root, the adapters' own credentials —
//! never get a drastic action (by default `disable_account`, `disable_credential`,
//! `quarantine_workload`, `revoke_access`, `block_session`) from a rule, whatever the rules
//! say: the decision holds the command (`held`, reason `protected_identity`) and says why. An
//! identity is protected when its inventory record says so, or when `[safety] protected`
//! names its inventory id or canonical subject id (exactly, or by a prefix ending in `*`).
//!
//! **Approval** — an action (`require_approval` in its rule), a target (`require_approval`
//! in `[[targets]]`) or an identity's facts (`[[safety.require_approval]]`) can require an
//! operator's approval: the command is held (`approval_required`) and published to the
//! approvals topic (see [`crate::approvals`]), as are a protected identity's held commands.
//!
//! **Circuit breakers** ([`breakers`]) hold what goes past a limit.

pub mod admin;
pub mod breakers;
pub mod cli;

use crate::config::{ApprovalPolicy, SafetySettings, TargetSettings};
use crate::inventory::Identity;

/// The rails, compiled from `[safety]` and the targets.
#[derive(Debug, Clone, Default)]
pub struct Rails {
    exact: Vec<String>,
    prefixes: Vec<String>,
    drastic: Vec<String>,
    /// Targets every command of which waits for approval.
    approval_targets: Vec<String>,
    /// Share targets: every share waits for legal and privacy review.
    share_targets: Vec<String>,
    policies: Vec<ApprovalPolicy>,
}

impl Rails {
    pub fn new(settings: &SafetySettings, targets: &[TargetSettings]) -> Self {
        let (prefixes, exact): (Vec<&String>, Vec<&String>) =
            settings.protected.iter().partition(|p| p.ends_with('*'));
        Self {
            exact: exact.into_iter().cloned().collect(),
            prefixes: prefixes
                .into_iter()
                .map(|p| p.trim_end_matches('*').to_string())
                .collect(),
            drastic: settings.drastic_actions.clone(),
            approval_targets: targets
                .iter()
                .filter(|t| t.require_approval)
                .map(|t| t.name.clone())
                .collect(),
            share_targets: targets
                .iter()
                .filter(|t| t.kind == crate::config::TargetKind::Share)
                .map(|t| t.name.clone())
                .collect(),
            policies: settings.require_approval.clone(),
        }
    }

    /// Why a command for `action` at `target` needs an operator's approval (beyond the
    /// rule's own `require_approval`), or `None`.
    pub fn approval(&self, action: &str, target: &str, identity: &Identity) -> Option<String> {
        if self.share_targets.iter().any(|t| t == target) {
            return Some(format!(
                "target {target} shares outside the organisation: every share waits for legal and privacy review"
            ));
        }
        if self.approval_targets.iter().any(|t| t == target) {
            return Some(format!(
                "target {target} requires approval for every command"
            ));
        }
        let policy = self.policies.iter().position(|p| {
            let acts = match p.actions.is_empty() {
                true => self.is_drastic(action),
                false => p.actions.iter().any(|a| a == action),
            };
            acts && facts_match(p, identity)
        })?;
        Some(format!(
            "[[safety.require_approval]] #{} holds {action} for {}",
            policy + 1,
            identity_facts(identity)
        ))
    }

    /// Why the identity is protected, or `None` when it is not.
    pub fn protection(&self, identity: &Identity, subject_id: &str) -> Option<String> {
        if identity.known() && identity.protected() {
            return Some(format!("{} is protected in the inventory", identity.id()));
        }
        let names = [identity.id(), subject_id];
        let names = names.iter().filter(|n| !n.is_empty());
        for name in names {
            if let Some(p) = self.exact.iter().find(|p| *p == name) {
                return Some(format!("{name} is protected by [safety] protected {p:?}"));
            }
            if let Some(p) = self.prefixes.iter().find(|p| name.starts_with(p.as_str())) {
                return Some(format!(
                    "{name} is protected by [safety] protected \"{p}*\""
                ));
            }
        }
        None
    }

    /// Why a command containd issues on its own (an escalation) must wait for an operator —
    /// a protected identity's drastic action, or one an approval policy covers — as (reason,
    /// detail), or `None`.
    pub fn held(
        &self,
        identity: &Identity,
        subject_id: &str,
        command: &crate::emit::EnforcementCommand,
    ) -> Option<(&'static str, String)> {
        let action = &command.action;
        if let Some(why) = self.protection(identity, subject_id) {
            if self.is_drastic(action) {
                let detail = format!("{why}: {action} is never issued automatically");
                return Some(("protected_identity", detail));
            }
        }
        self.approval(action, &command.target, identity)
            .map(|why| ("approval_required", why))
    }

    /// Whether the action is one held for a protected identity.
    pub fn is_drastic(&self, action: &str) -> bool {
        self.drastic.iter().any(|a| a == action)
    }
}

/// Whether an identity's facts satisfy a policy (each empty list = any).
fn facts_match(p: &ApprovalPolicy, identity: &Identity) -> bool {
    let criticality = identity.criticality().map(|c| c.name());
    let environment = identity.environment();
    let fits = |want: &[String], have: Option<&str>| {
        want.is_empty() || have.is_some_and(|h| want.iter().any(|w| w == h))
    };
    fits(&p.criticality, criticality) && fits(&p.environment, environment)
}

fn identity_facts(identity: &Identity) -> String {
    format!(
        "{} (criticality {}, environment {})",
        if identity.known() {
            identity.id()
        } else {
            "an unknown identity"
        },
        identity.criticality().map_or("unknown", |c| c.name()),
        identity.environment().unwrap_or("unknown"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known unless its id is empty, with nothing else set.
    fn identity(id: &str, protected: bool) -> Identity {
        if id.is_empty() {
            return (*Identity::unknown()).clone();
        }
        Identity::from_record(&crate::inventory::IdentityRecord {
            id: id.into(),
            aliases: vec![],
            kind: crate::inventory::IdentityKind::Other,
            owner: None,
            criticality: None,
            environment: None,
            access: vec![],
            protected,
        })
    }

    #[test]
    fn protection_comes_from_the_inventory_or_the_config() {
        let rails = Rails::new(
            &SafetySettings {
                protected: vec!["svc-root".into(), "breakglass-*".into()],
                ..SafetySettings::default()
            },
            &[],
        );
        assert!(rails
            .protection(&identity("svc-ci", true), "x")
            .unwrap()
            .contains("inventory"));
        assert!(rails
            .protection(&identity("svc-root", false), "x")
            .is_some());
        let by_subject = rails.protection(&identity("", false), "breakglass-eu-1");
        assert!(by_subject.unwrap().contains("\"breakglass-*\""));
        assert!(rails
            .protection(&identity("svc-app", false), "svc-app")
            .is_none());
        assert!(rails.is_drastic("disable_account") && !rails.is_drastic("require_step_up"));
    }
}
