//! What an adapter reports back about a command: mirrors `schemas/command_result.avsc`.
//! Adapters produce these onto the results topic, keyed like the command they answer.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a command stands at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// Taken on, not yet done.
    Accepted,
    /// The access path is closed (or the restore done).
    Succeeded,
    /// Tried and did not work; a re-send may succeed.
    Failed,
    /// Nothing to do at this target (the identity has no access there).
    NotApplicable,
    /// The adapter refuses the command and will not act on a re-send.
    Rejected,
}

impl ResultStatus {
    pub const ALL: [ResultStatus; 5] = [
        Self::Accepted,
        Self::Succeeded,
        Self::Failed,
        Self::NotApplicable,
        Self::Rejected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NotApplicable => "not_applicable",
            Self::Rejected => "rejected",
        }
    }

    /// The command needs nothing more from its target: done, or nothing to do there.
    pub fn closes(self) -> bool {
        matches!(self, Self::Succeeded | Self::NotApplicable)
    }
}

/// One adapter report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub target: String,
    pub status: ResultStatus,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default = "first_attempt")]
    pub attempt: i32,
    /// Unix millis.
    pub at: i64,
    #[serde(default)]
    pub evidence: BTreeMap<String, String>,
}

fn first_attempt() -> i32 {
    1
}

/// Header a re-sent command carries: which send this is (1 for the first; absent means 1).
pub const ATTEMPT_HEADER: &str = "containd.attempt";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_uses_the_schema_names_and_defaults() {
        let r: CommandResult = serde_json::from_str(
            r#"{"command_id":"ab12","target":"aws","status":"not_applicable","at":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(r.status, ResultStatus::NotApplicable);
        assert_eq!(r.attempt, 1);
        assert!(r.status.closes() && !ResultStatus::Failed.closes());
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["status"], "not_applicable");
        for s in ResultStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }
}
