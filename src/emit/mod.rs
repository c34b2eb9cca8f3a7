//! What leaves containd: enforcement commands (one topic per target), decision records (one
//! per signal) and dead letters (bad input with its reason).

pub mod command;
pub mod deadletter;
pub mod decision;

pub use command::{CommandKey, EnforcementCommand, TargetSubject, Why, VOCABULARY};
pub use deadletter::{DeadLetter, DeadLetterReason};
pub use decision::{
    DecisionRecord, Held, IdentitySummary, MatchedRule, Outcome, Refused, RuleError,
    SourcePosition, Suppressed, Timings, TrustVerdict, Verdict, WindowProgress,
};
