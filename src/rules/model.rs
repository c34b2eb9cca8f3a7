//! The rule file format (YAML), as written by security teams. See docs/rules.md.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Higher runs first; equal priorities run in file order.
    #[serde(default)]
    pub priority: i32,
    /// Decide and record, emit nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Skip the rules after this one when it matches.
    #[serde(default)]
    pub stop: bool,
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// CEL over `signal`, `subject` and `now`; the rule matches only when it is true.
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// Fire only when enough signals for the same subject pass match and condition within a
    /// duration (the window is visible to the condition as `window`).
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Repeated firing for the same subject steps up: step N's actions are added on the Nth
    /// firing within `within` (the last step repeats).
    #[serde(default)]
    pub escalate: Option<EscalateSpec>,
    /// Default suppression for this rule's actions: the same action on the same target for the
    /// same subject is not re-issued within this period (overrides `state.suppress_for`).
    #[serde(default, with = "humantime_serde")]
    pub suppress_for: Option<Duration>,
    /// Lets a rule with a drastic action match every event type (`"*"`): refused otherwise,
    /// since such a rule acts on every signal of every source its authority allows.
    #[serde(default)]
    pub allow_broad: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(with = "humantime_serde")]
    pub within: Duration,
    /// Signals needed within the window, this one included.
    #[serde(default = "one")]
    pub count: usize,
    /// Event types that must all have been seen within the window (e.g. a session-risk
    /// change and a device non-compliance).
    #[serde(default)]
    pub event_types: Vec<String>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateSpec {
    /// Firings older than this no longer count towards the next step.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub actions: Vec<ActionSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Exact event type URIs, or a namespace prefix ending in `*`; `*` alone matches all.
    pub event_types: Vec<String>,
    /// Issuers; empty matches any.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Subject formats (`opaque`, `complex`, …); empty matches any.
    #[serde(default)]
    pub subject_formats: Vec<String>,
    /// Complex-subject members that must be present (`application`, `device`, …).
    #[serde(default)]
    pub subject_members: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub action: String,
    /// Target names, `kind:<kind>` for every target of a kind (e.g. `kind:cicd`),
    /// `where_identity_has_access` for every target the inventory lists for the identity (the
    /// blast radius), or `contained` (with `restore`) for every target holding a containment.
    pub targets: Vec<String>,
    /// Literal strings, or `{cel: "<expr>"}` evaluated over the signal (e.g. the session id).
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamSpec>,
    /// Sets the command's `expires_at` relative to its `issued_at`.
    #[serde(default, with = "humantime_serde")]
    pub expires_in: Option<Duration>,
    /// What happens when `expires_in` passes: `close` (default: the containment is no longer
    /// open; the adapter honours `expires_at`) or `restore` (containd also issues the restore
    /// itself, cause-tied, unless another open containment of the same kind still holds).
    #[serde(default)]
    pub on_expiry: OnExpiry,
    /// Suppression period for this action (overrides the rule's and `state.suppress_for`).
    #[serde(default, with = "humantime_serde")]
    pub suppress_for: Option<Duration>,
    /// Whether the action stays in force until restored (an open containment). Defaults by
    /// action: disables, blocks, quarantines, step-up and access cuts hold; revoking sessions,
    /// rotating and syncing do not.
    #[serde(default)]
    pub holds: Option<bool>,
    /// With `restore`: which containments it may lift — a list of actions, or
    /// `{actions, rules, event_types}` (each empty = any): only containments issued for those
    /// actions, by those rules, for signals of those event types.
    #[serde(default)]
    pub lifts: LiftsSpec,
    /// What the command concerns (a credential, device, session, incident), for suppression
    /// and restore; default: the first of the parameters `credential_id`, `x509_serial`,
    /// `fido2_aaguid`, `device_id`, `session_id`, `incident_id` the command has.
    #[serde(default)]
    pub object: Option<ParamSpec>,
    /// With `where_identity_has_access`: the targets (names or `kind:<kind>`) that get the
    /// command when the inventory lists no access that accepts the action, so a known
    /// identity is never left uncontained because its inventory record is incomplete.
    #[serde(default)]
    pub fallback_targets: Vec<String>,
    /// The command is never issued automatically: it is held on the approvals topic until
    /// an operator approves it (`containd approvals approve`), denies it, or it times out.
    #[serde(default)]
    pub require_approval: bool,
}

/// What a containment's expiry does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    #[default]
    Close,
    Restore,
}

/// A restore's `lifts`: a list of actions, or the full form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LiftsSpec {
    Actions(Vec<String>),
    Causes {
        #[serde(default)]
        actions: Vec<String>,
        #[serde(default)]
        rules: Vec<String>,
        #[serde(default)]
        event_types: Vec<String>,
    },
}

impl Default for LiftsSpec {
    fn default() -> Self {
        Self::Actions(Vec::new())
    }
}

impl LiftsSpec {
    pub fn into_lifts(self) -> super::Lifts {
        match self {
            Self::Actions(actions) => super::Lifts {
                actions,
                ..super::Lifts::default()
            },
            Self::Causes {
                actions,
                rules,
                event_types,
            } => super::Lifts {
                actions,
                rules,
                event_types,
            },
        }
    }
}

/// A parameter value: a literal, or a CEL expression over `signal`, `subject` and `now`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParamSpec {
    Literal(String),
    Expr { cel: String },
}
