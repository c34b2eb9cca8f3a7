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
    /// Who asserted the signal and whether containd trusted it.
    pub trust: TrustVerdict,
    /// Commands the matched rules wanted that the source has no authority for.
    pub refused: Vec<Refused>,
    /// For a duplicate: where the signal was first read.
    pub duplicate_of: Option<SourcePosition>,
    /// Commands decided but not sent (a required parameter is missing).
    pub held: Vec<Held>,
    /// Conditions and parameters that failed to evaluate (the condition counted as no match,
    /// the parameter was left out): the evidence of what the rules could not see.
    pub errors: Vec<RuleError>,
    /// Who the inventory says the subject is (or that it does not know it).
    pub identity: IdentitySummary,
    /// Window rules this signal counted towards that have not fired yet.
    pub pending: Vec<WindowProgress>,
    /// What a reader should know: blast-radius targets skipped, restores without a target.
    pub notes: Vec<String>,
    pub timings: Timings,
    /// Per command whose target has a disclosure profile: what it was given about the subject.
    #[serde(default)]
    pub disclosures: Vec<DisclosureRecord>,
    /// Its place in the evidence chain (docs/evidence.md); `None` before the chain existed.
    #[serde(default)]
    pub chain: Option<ChainLink>,
}

/// A decision record's link in its evidence chain (`evidence`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The writer run (random per start).
    pub id: String,
    pub seq: i64,
    /// Hex SHA-256 of the previous record of the chain (64 zeros for the first).
    pub prev: String,
    /// Hex SHA-256 of this record (see `evidence::hash`).
    pub hash: String,
}

/// What one command's target was given about the subject under its disclosure profile (field
/// names, never values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureRecord {
    pub command_id: String,
    pub target: String,
    pub profile: String,
    pub disclosed: Vec<String>,
    pub pseudonymised: Vec<String>,
    pub withheld: Vec<String>,
}

/// The trust verdict on a signal: its issuer and transmitter, and why it was not acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustVerdict {
    pub issuer: String,
    pub transmitter: Option<String>,
    pub verdict: Verdict,
    /// Bounded reason kind (`unknown_issuer`, `unsigned`, `topic_not_allowed`,
    /// `event_type_not_allowed`, `future_timestamp`, `duplicate`), when not trusted.
    pub reason_kind: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Trusted,
    Untrusted,
    Duplicate,
}

/// A command the rules wanted but the signal's source may not cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub action: String,
    pub target: String,
    pub reason: String,
}

/// A complete command that was not sent, and why (`missing_parameter`: the action needs a
/// parameter the signal did not provide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub command_id: String,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub detail: String,
}

/// A rule's condition or parameter that failed to evaluate for this signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleError {
    pub rule_id: String,
    pub error: String,
}

/// The inventory facts a decision used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySummary {
    /// Inventory id; `None` when the inventory has no record for the subject.
    pub id: Option<String>,
    pub kind: String,
    pub owner_team: Option<String>,
    /// Known, but nobody owns it: flagged so a team can be assigned.
    pub ownerless: bool,
    pub criticality: Option<String>,
}

impl IdentitySummary {
    pub fn of(identity: &crate::inventory::Identity) -> Self {
        Self {
            id: identity.known().then(|| identity.id().to_string()),
            kind: if identity.known() {
                identity.kind().name().to_string()
            } else {
                "unknown".to_string()
            },
            owner_team: identity.owner_team().map(str::to_string),
            ownerless: identity.known() && !identity.has_owner(),
            criticality: identity.criticality().map(|c| c.name().to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowProgress {
    pub rule_id: String,
    /// Signals in the window, this one included.
    pub count: i32,
    pub needed: i32,
    pub missing_event_types: Vec<String>,
}

/// A command not re-issued because the same action went to the same target recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    /// The id this command would have had.
    pub command_id: String,
    pub earlier_command_id: String,
    pub action: String,
    pub target: String,
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
    /// Rules matched but none declared an action (or there was nothing to act on: no open
    /// containment to restore, no access to cut).
    MatchedNoAction,
    /// Rules matched, but every command was suppressed (sent recently).
    Suppressed,
    /// Only window rules counted the signal; none is full yet.
    Pending,
    /// The source is not configured, or asserted beyond its authority: nothing decided.
    Untrusted,
    /// The same (issuer, id) was already decided from another position: nothing decided.
    Duplicate,
    /// Rules matched, but every command was beyond the source's authority.
    Refused,
    /// Rules matched, but every command was held (e.g. a required parameter is missing).
    Held,
    /// The decision's outputs cannot be produced (too large for the producer, or do not
    /// encode): nothing was sent, the state is unchanged, the signal is dead-lettered.
    Undeliverable,
    /// An approvals-topic record released a held command (approved, or a milder action on
    /// timeout): the command went to its target.
    Released,
    /// A held command was denied, or timed out: nothing was sent.
    Cancelled,
    /// A command's target reported it done (`succeeded`, or `not_applicable`): the access
    /// path is closed (docs/adapters.md).
    Confirmed,
    /// A command's target stayed silent past its result timeout, or its attempt failed: the
    /// same command (same id) was sent again.
    Reissued,
    /// A command failed for good (every attempt failed or went unanswered, or the adapter
    /// rejected it): the configured escalation was issued.
    Escalated,
    /// A command failed for good and no escalation is configured for it: the access path
    /// may still be open.
    Unconfirmed,
    /// A containment's `expires_in` passed and its action says `on_expiry: restore`: containd
    /// issued the restore itself (cause-tied), or says why not (another containment of the
    /// same kind still holds, the target takes no restore, dry-run).
    Expired,
}

impl Outcome {
    pub const ALL: [Outcome; 18] = [
        Self::Acted,
        Self::NoMatch,
        Self::DryRun,
        Self::MatchedNoAction,
        Self::Suppressed,
        Self::Pending,
        Self::Untrusted,
        Self::Duplicate,
        Self::Refused,
        Self::Held,
        Self::Undeliverable,
        Self::Released,
        Self::Cancelled,
        Self::Confirmed,
        Self::Reissued,
        Self::Escalated,
        Self::Unconfirmed,
        Self::Expired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Acted => "acted",
            Self::NoMatch => "no_match",
            Self::DryRun => "dry_run",
            Self::MatchedNoAction => "matched_no_action",
            Self::Suppressed => "suppressed",
            Self::Pending => "pending",
            Self::Untrusted => "untrusted",
            Self::Duplicate => "duplicate",
            Self::Refused => "refused",
            Self::Held => "held",
            Self::Undeliverable => "undeliverable",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
            Self::Confirmed => "confirmed",
            Self::Reissued => "reissued",
            Self::Escalated => "escalated",
            Self::Unconfirmed => "unconfirmed",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedRule {
    pub rule_id: String,
    pub dry_run: bool,
    pub command_ids: Vec<String>,
    /// The ladder step taken (0-based), for rules with `escalate`.
    pub escalation_step: Option<i32>,
    pub suppressed: Vec<Suppressed>,
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
