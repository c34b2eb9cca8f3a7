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
    /// Set when the original did not fit the dead-letter topic whole: the record then holds
    /// its first bytes, and these headers its size and SHA-256 (hex).
    pub const TRUNCATED: &str = "containd.truncated";
    /// On an output the broker refused (`output_refused`): the topic it was for and its kind
    /// (`command`, `decision`).
    pub const REFUSED_TOPIC: &str = "containd.refused.topic";
    pub const REFUSED_KIND: &str = "containd.refused.kind";
    pub const ORIGINAL_SIZE: &str = "containd.original.size";
    pub const ORIGINAL_SHA256: &str = "containd.original.sha256";
    pub const ORIGINAL_KEY_SHA256: &str = "containd.original.key.sha256";
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterReason {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The signal decided, but its outputs cannot be produced: `kind` is `output_too_large`
    /// or `output_unencodable`.
    #[error("{detail}")]
    Output { kind: &'static str, detail: String },
    /// A results-topic record claiming to be containd's tracking record without its seal.
    #[error("{0}")]
    Unsealed(String),
}

impl DeadLetterReason {
    /// Every kind [`Self::kind`] returns (the decoders', the validator's, the SET
    /// verifier's and the outputs'), so the metric's series exist at 0 from the start.
    pub const KINDS: [&'static str; 24] = [
        "unsealed_tracking",
        "oversized",
        "empty",
        "bad_framing",
        "unknown_schema_fingerprint",
        "unknown_schema_id",
        "malformed_avro",
        "malformed_json",
        "missing_field",
        "malformed_set",
        "unsupported_alg",
        "unknown_issuer",
        "unknown_key",
        "bad_signature",
        "wrong_audience",
        "issued_in_future",
        "unknown_event_type",
        "unknown_subject_format",
        "invalid_subject",
        "invalid_event_fields",
        "field_too_long",
        "too_many_entries",
        "output_too_large",
        "output_unencodable",
    ];

    /// Bounded set of kinds: metric label and `containd.reason.kind` header.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.kind(),
            Self::Invalid(e) => e.kind(),
            Self::Output { kind, .. } => kind,
            Self::Unsealed(_) => "unsealed_tracking",
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
