//! Dead letters: input that cannot become a decision. The original key and bytes are kept
//! untouched; the reason travels in headers so the record can be replayed after a fix.

use crate::codec::DecodeError;
use crate::signal::ValidationError;

/// Header names on every dead-letter record.
pub mod headers {
    pub const REASON_KIND: &str = "containd.reason.kind";
    pub const REASON: &str = "containd.reason";
    pub const SOURCE_TOPIC: &str = "containd.source.topic";
    pub const SOURCE_PARTITION: &str = "containd.source.partition";
    pub const SOURCE_OFFSET: &str = "containd.source.offset";
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterReason {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl DeadLetterReason {
    /// Bounded set of kinds: metric label and `containd.reason.kind` header.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.kind(),
            Self::Invalid(e) => e.kind(),
        }
    }
}

/// A record bound for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
