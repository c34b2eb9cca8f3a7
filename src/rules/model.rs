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
    /// Target names, or `kind:<kind>` for every target of a kind (e.g. `kind:cicd`).
    pub targets: Vec<String>,
    /// Literal strings, or `{cel: "<expr>"}` evaluated over the signal (e.g. the session id).
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamSpec>,
    /// Sets the command's `expires_at` relative to its `issued_at`.
    #[serde(default, with = "humantime_serde")]
    pub expires_in: Option<Duration>,
}

/// A parameter value: a literal, or a CEL expression over `signal`, `subject` and `now`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParamSpec {
    Literal(String),
    Expr { cel: String },
}
