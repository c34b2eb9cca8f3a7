//! The decision record: mirrors `schemas/decision_record.avsc`. Exactly one per decoded
//! signal, including "no rule matched", so every signal has an evidence trail.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub signal_id: String,
    pub event_type: String,
    pub subject_id: String,
    pub outcome: Outcome,
    pub matched_rules: Vec<MatchedRule>,
    pub command_ids: Vec<String>,
    pub ruleset_version: String,
    pub source: SourcePosition,
    pub decided_at: i64,
    pub timings: Timings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one command was emitted.
    Acted,
    /// No rule matched.
    NoMatch,
    /// Rules matched, but every action was dry-run (per rule or globally).
    DryRun,
    /// Rules matched but none declared an action.
    MatchedNoAction,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Acted => "acted",
            Self::NoMatch => "no_match",
            Self::DryRun => "dry_run",
            Self::MatchedNoAction => "matched_no_action",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedRule {
    pub rule_id: String,
    pub dry_run: bool,
    pub command_ids: Vec<String>,
}

/// Where the signal was read, for tracing a decision back to the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub decode_micros: i64,
    pub evaluate_micros: i64,
}
