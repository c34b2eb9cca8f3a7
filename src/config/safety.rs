//! `[safety]`: the rails that keep automated containment from taking the company down.

use serde::Deserialize;

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
}

impl Default for SafetySettings {
    fn default() -> Self {
        Self {
            protected: Vec::new(),
            drastic_actions: default_drastic(),
        }
    }
}

fn default_drastic() -> Vec<String> {
    crate::emit::command::DRASTIC
        .iter()
        .map(|a| a.to_string())
        .collect()
}
