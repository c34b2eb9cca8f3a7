//! Safety rails: what automated containment may never do on its own.
//!
//! **Protected identities** — break-glass accounts, root, the adapters' own credentials —
//! never get a drastic action (by default `disable_account`, `disable_credential`,
//! `quarantine_workload`, `revoke_access`, `block_session`) from a rule, whatever the rules
//! say: the decision holds the command (`held`, reason `protected_identity`) and says why. An
//! identity is protected when its inventory record says so, or when `[safety] protected`
//! names its inventory id or canonical subject id (exactly, or by a prefix ending in `*`).

use crate::config::SafetySettings;
use crate::inventory::Identity;

/// The rails, compiled from `[safety]`.
#[derive(Debug, Clone, Default)]
pub struct Rails {
    exact: Vec<String>,
    prefixes: Vec<String>,
    drastic: Vec<String>,
}

impl Rails {
    pub fn new(settings: &SafetySettings) -> Self {
        let (prefixes, exact): (Vec<&String>, Vec<&String>) =
            settings.protected.iter().partition(|p| p.ends_with('*'));
        Self {
            exact: exact.into_iter().cloned().collect(),
            prefixes: prefixes
                .into_iter()
                .map(|p| p.trim_end_matches('*').to_string())
                .collect(),
            drastic: settings.drastic_actions.clone(),
        }
    }

    /// Why the identity is protected, or `None` when it is not.
    pub fn protection(&self, identity: &Identity, subject_id: &str) -> Option<String> {
        if identity.known && identity.protected {
            return Some(format!("{} is protected in the inventory", identity.id));
        }
        let names = [&*identity.id, subject_id];
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

    /// Whether the action is one held for a protected identity.
    pub fn is_drastic(&self, action: &str) -> bool {
        self.drastic.iter().any(|a| a == action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, protected: bool) -> Identity {
        Identity {
            id: id.into(),
            known: !id.is_empty(),
            protected,
            ..(*Identity::unknown()).clone()
        }
    }

    #[test]
    fn protection_comes_from_the_inventory_or_the_config() {
        let rails = Rails::new(&SafetySettings {
            protected: vec!["svc-root".into(), "breakglass-*".into()],
            ..SafetySettings::default()
        });
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
