//! What leaves containd: enforcement commands (one topic per target), decision records (one
//! per signal) and dead letters (bad input with its reason); and what comes back about the
//! commands: adapters' results.

pub mod command;
pub mod deadletter;
pub mod decision;
pub mod result;

pub use command::{CommandKey, EnforcementCommand, TargetSubject, Why, VOCABULARY};
pub use deadletter::{DeadLetter, DeadLetterReason};
pub use decision::{
    ChainLink, DecisionRecord, DisclosureRecord, Held, IdentitySummary, MatchedRule, Outcome,
    Refused, RuleError, SourcePosition, Suppressed, Timings, TrustVerdict, Verdict, WindowProgress,
};
pub use result::{CommandResult, ResultStatus};
