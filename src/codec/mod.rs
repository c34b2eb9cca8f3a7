//! Wire encodings of the records: Avro single-object encoding, the Confluent wire format
//! (magic byte + schema id), and JSON for the same logical records.
//!
//! Decoding never panics on input; every failure is a [`DecodeError`] whose kind becomes the
//! dead-letter reason.

mod avro;
mod bounds;
pub mod canonical;
mod json;

pub use avro::{AvroCodec, BundledFingerprints, EncodeError, Fingerprints, Schemas};

use crate::signal::Signal;
use serde::{Deserialize, Serialize};

/// Lower-case hex of `bytes` (command ids, hashes, keys). Written through a table into one
/// buffer: the `hex` crate's `encode` pushes one `char` at a time, which was 2 % of
/// containd's CPU with several ids and hashes per signal (docs/benchmarks.md).
pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, the only way `encode_to_slice` fails.
    let _ = ::hex::encode_to_slice(bytes, &mut out);
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// How a topic's records are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Avro single-object encoding: `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint
    /// of the schema's Parsing Canonical Form, datum. Input may also carry the fingerprint
    /// containd 0.1.0 wrote, until 0.3.0 ([`Fingerprints`]).
    Avro,
    /// Confluent Schema Registry wire format: `00`, 4-byte big-endian schema id, datum.
    Confluent,
    /// The JSON form of the record (docs/json.md).
    #[default]
    Json,
    /// A raw SSF Security Event Token (RFC 8417): one compact JWS per record, verified
    /// against its source's keys before it becomes a signal.
    Set,
}

/// Why bytes could not become a signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {size} bytes, larger than the {limit}-byte limit")]
    Oversized { size: usize, limit: usize },
    #[error("message has no value")]
    Empty,
    #[error("not {expected}: {detail}")]
    BadFraming {
        expected: &'static str,
        detail: String,
    },
    #[error("unknown Avro schema fingerprint {0:016x}")]
    UnknownFingerprint(u64),
    #[error("unknown Confluent schema id {0}")]
    UnknownSchemaId(u32),
    #[error("Avro datum does not decode: {0}")]
    BadAvro(String),
    #[error("Avro datum has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("invalid JSON: {0}")]
    BadJson(String),
    #[error("JSON record is missing a required field: {0}")]
    MissingField(String),
    #[error(transparent)]
    Set(#[from] crate::trust::SetError),
}

impl DecodeError {
    /// Stable reason kind for the dead-letter header and metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::Empty => "empty",
            Self::BadFraming { .. } => "bad_framing",
            Self::UnknownFingerprint(_) => "unknown_schema_fingerprint",
            Self::UnknownSchemaId(_) => "unknown_schema_id",
            Self::BadAvro(_) | Self::TrailingBytes(_) => "malformed_avro",
            Self::BadJson(_) => "malformed_json",
            Self::MissingField(_) => "missing_field",
            Self::Set(e) => e.kind(),
        }
    }
}

/// Decodes signals in any of the formats with the schemas and SET keys it was built with.
#[derive(Debug, Clone)]
pub struct SignalDecoder {
    avro: AvroCodec,
    max_bytes: usize,
    sets: crate::trust::SetVerifier,
}

impl SignalDecoder {
    /// A decoder without SET keys: every SET is refused as `unknown_issuer`.
    pub fn new(avro: AvroCodec, max_bytes: usize) -> Self {
        Self {
            avro,
            max_bytes,
            sets: crate::trust::SetVerifier::default(),
        }
    }

    /// The decoder verifying SETs with these sources' keys.
    pub fn with_sets(mut self, sets: crate::trust::SetVerifier) -> Self {
        self.sets = sets;
        self
    }

    pub fn decode(&self, format: Format, bytes: Option<&[u8]>) -> Result<Signal, DecodeError> {
        self.decode_at(format, bytes, crate::trust::now_ms())
    }

    /// Decodes at wall-clock time `now_ms` (which a SET's `iat` is checked against).
    pub fn decode_at(
        &self,
        format: Format,
        bytes: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<Signal, DecodeError> {
        let bytes = bytes.filter(|b| !b.is_empty()).ok_or(DecodeError::Empty)?;
        if bytes.len() > self.max_bytes {
            return Err(DecodeError::Oversized {
                size: bytes.len(),
                limit: self.max_bytes,
            });
        }
        match format {
            Format::Avro => self.avro.decode_single_object(bytes),
            Format::Confluent => self.avro.decode_confluent(bytes),
            Format::Json => json::decode_signal(bytes),
            Format::Set => Ok(self.sets.signal(bytes, now_ms)?),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_the_hex_crates_encoding() {
        let bytes: Vec<u8> = (0..=255).collect();
        for n in [0, 1, 6, 16, 32, 256] {
            assert_eq!(
                super::hex(&bytes[..n]),
                ::hex::encode(&bytes[..n]),
                "{n} bytes"
            );
        }
        assert_eq!(super::hex([0xab, 0x01]), "ab01");
    }
}
