//! Avro single-object and Confluent framing over the bundled schemas.
//!
//! Schemas are parsed once at startup. An incoming signal's writer schema is looked up by
//! fingerprint (single-object) or configured schema id (Confluent); both name the bundled
//! Signal schema, whose names are resolved once, so a record decodes without per-record schema
//! resolution (that was 30 % of the daemon's CPU, docs/benchmarks.md).
//!
//! Single-object headers carry the spec's fingerprint (`canonical`); the one containd 0.1.0
//! wrote is still read for a deprecation period (see [`Fingerprints`]).

use super::bounds::Bounds;
use super::canonical;
use super::DecodeError;
use crate::signal::Signal;
use apache_avro::error::Details;
use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use serde::Serialize;
use std::collections::HashMap;

use std::sync::Arc;

pub const SIGNAL_SCHEMA: &str = include_str!("../../schemas/signal.avsc");
pub const COMMAND_SCHEMA: &str = include_str!("../../schemas/enforcement_command.avsc");
pub const DECISION_SCHEMA: &str = include_str!("../../schemas/decision_record.avsc");
pub const IDENTITY_SCHEMA: &str = include_str!("../../schemas/identity_record.avsc");
pub const RESULT_SCHEMA: &str = include_str!("../../schemas/command_result.avsc");
/// The inventory record before `protected`: inventory producers still writing it are read,
/// resolved to the current schema (`protected` = false).
pub const IDENTITY_SCHEMA_V1: &str = include_str!("../../schemas/previous/identity_record.v1.avsc");

const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const CONFLUENT_MAGIC: u8 = 0;

/// The four bundled schemas, parsed, and the fingerprints their single-object headers carry.
#[derive(Debug)]
pub struct Schemas {
    pub signal: Schema,
    pub command: Schema,
    pub decision: Schema,
    pub identity: Schema,
    /// What adapters report about a command.
    pub result: Schema,
    /// The previous inventory record schema ([`IDENTITY_SCHEMA_V1`]).
    pub identity_v1: Schema,
    /// Computed from the schema text, not from the parsed `Schema`s above, whose canonical
    /// form is apache-avro's rather than the spec's.
    pub fingerprints: BundledFingerprints,
    /// The schemas containd writes, compiled for `serde_avro_fast`'s serializer.
    writers: Writers,
}

/// The command, decision and result schemas as `serde_avro_fast` writes them: serialised
/// straight from the struct in field order, about three times faster than apache-avro's
/// schema-aware serializer, which looks every field up by name (docs/benchmarks.md). The
/// bytes are the same (`fast_encode_agrees_with_apache_avro_*` in the tests).
struct Writers {
    command: serde_avro_fast::Schema,
    decision: serde_avro_fast::Schema,
    result: serde_avro_fast::Schema,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writers")
    }
}

impl Writers {
    fn bundled() -> Result<Self, apache_avro::Error> {
        let parse = |text: &str| {
            text.parse::<serde_avro_fast::Schema>().map_err(|e| {
                use serde::de::Error as _;
                let e = serde_json::Error::custom(e.to_string());
                apache_avro::Error::from(Details::ParseSchemaJson(e))
            })
        };
        Ok(Self {
            command: parse(COMMAND_SCHEMA)?,
            decision: parse(DECISION_SCHEMA)?,
            result: parse(RESULT_SCHEMA)?,
        })
    }
}

/// Why a record could not be encoded (a value the schema cannot hold).
#[derive(Debug, thiserror::Error)]
#[error("Avro encoding: {0}")]
pub struct EncodeError(String);

impl Schemas {
    /// The bundled schemas are part of the binary; failing to parse them is a build defect
    /// that the unit tests catch, so this returns the parser's error rather than panicking.
    pub fn bundled() -> Result<Self, apache_avro::Error> {
        let signal = Schema::parse_str(SIGNAL_SCHEMA)?;
        let command = Schema::parse_str(COMMAND_SCHEMA)?;
        let decision = Schema::parse_str(DECISION_SCHEMA)?;
        let identity = Schema::parse_str(IDENTITY_SCHEMA)?;
        let identity_v1 = Schema::parse_str(IDENTITY_SCHEMA_V1)?;
        let result = Schema::parse_str(RESULT_SCHEMA)?;
        let fingerprints = BundledFingerprints {
            signal: Fingerprints::of(SIGNAL_SCHEMA, &signal)?,
            command: Fingerprints::of(COMMAND_SCHEMA, &command)?,
            decision: Fingerprints::of(DECISION_SCHEMA, &decision)?,
            identity: Fingerprints::of(IDENTITY_SCHEMA, &identity)?,
            result: Fingerprints::of(RESULT_SCHEMA, &result)?,
        };
        Ok(Self {
            signal,
            command,
            decision,
            identity,
            result,
            identity_v1,
            fingerprints,
            writers: Writers::bundled()?,
        })
    }
}

/// The fingerprints of each bundled schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundledFingerprints {
    pub signal: Fingerprints,
    pub command: Fingerprints,
    pub decision: Fingerprints,
    pub identity: Fingerprints,
    pub result: Fingerprints,
}

/// The two fingerprints a bundled schema is read under.
///
/// Deprecated: `legacy` is accepted on input until containd 0.3.0, which removes it (the test
/// `legacy_fingerprints_are_removed_by_0_3` fails once the crate version gets there). containd
/// 0.1.0 wrote it, so records already on the bus and producers built against 0.1.0 carry it;
/// standard Avro readers do not know it. docs/json.md lists both per schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprints {
    /// CRC-64-AVRO of the schema's Parsing Canonical Form: what Java, fastavro and other
    /// spec-compliant writers put in the header, and the only one containd writes.
    pub spec: u64,
    /// The same CRC over apache-avro 0.21's canonical form, which keeps a logical type as
    /// `{"type":"long"}` where the spec writes `"long"`.
    pub legacy: u64,
}

impl Fingerprints {
    /// The canonical form of a bundled schema cannot fail once apache-avro parsed it (the
    /// tests check it against fastavro); if it ever does, startup fails like a parse error.
    fn of(text: &str, schema: &Schema) -> Result<Self, apache_avro::Error> {
        use serde::de::Error as _;
        let json = serde_json::from_str(text).map_err(Details::ParseSchemaJson)?;
        let pcf = canonical::parsing_canonical_form(&json).map_err(|e| {
            Details::ParseSchemaJson(serde_json::Error::custom(format!(
                "no Parsing Canonical Form: {e}"
            )))
        })?;
        Ok(Self {
            spec: canonical::fingerprint(&pcf),
            legacy: fingerprint(schema),
        })
    }
}

/// apache-avro's own fingerprint of `schema`, which is [`Fingerprints::legacy`], not the
/// spec's (the Rabin CRC is right; the canonical form it hashes is not). Returned as a
/// little-endian u64, as the single-object header carries it.
pub fn fingerprint(schema: &Schema) -> u64 {
    let fp = schema.fingerprint::<Rabin>();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&fp.bytes[..8]);
    u64::from_le_bytes(bytes)
}

/// Decodes one framing (single-object fingerprint or Confluent id) of the bundled signal
/// schema: the datum is bounds-checked (see `bounds`), then deserialised straight into
/// [`Signal`] by `serde_avro_fast` — no `apache_avro::Value` in between. Writer and reader are
/// the same bundled schema, so there is nothing to resolve.
struct FramedReader {
    fast: Arc<serde_avro_fast::Schema>,
    header_len: usize,
    bounds: Bounds,
}

impl std::fmt::Debug for FramedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FramedReader")
    }
}

impl FramedReader {
    fn new(
        schema: &Schema,
        fast: Arc<serde_avro_fast::Schema>,
        header: Vec<u8>,
    ) -> Result<Self, apache_avro::Error> {
        let header_len = header.len();
        Ok(Self {
            fast,
            header_len,
            bounds: Bounds::new(schema),
        })
    }

    /// The caller matched the header already; the datum after it is bounds-checked (see
    /// `bounds`) before anything may allocate for it.
    fn decode(&self, bytes: &[u8]) -> Result<Signal, DecodeError> {
        let datum = bytes.get(self.header_len..).unwrap_or_default();
        let used = self.bounds.length(datum).map_err(DecodeError::BadAvro)?;
        if used < datum.len() {
            return Err(DecodeError::TrailingBytes(datum.len() - used));
        }
        serde_avro_fast::from_datum_slice(datum, &self.fast)
            .map_err(|e| DecodeError::BadAvro(e.to_string()))
    }
}

/// Encoder and decoder for Avro-framed records.
#[derive(Debug, Clone)]
pub struct AvroCodec {
    schemas: Arc<Schemas>,
    signal_writers: Arc<HashMap<u64, FramedReader>>,
    confluent_ids: Arc<HashMap<u32, FramedReader>>,
    flat_bounds: Arc<FlatBounds>,
    command_header: Headers,
    decision_header: Headers,
    signal_header: Headers,
    identity_header: Headers,
    result_header: Headers,
    /// The header of records written with [`IDENTITY_SCHEMA_V1`] (no logical types: the
    /// spec's and apache-avro's fingerprints agree).
    identity_v1_header: [u8; 10],
}

/// Bounds of the records `decode_flat` reads, compiled once per codec.
#[derive(Debug)]
struct FlatBounds {
    command: Bounds,
    decision: Bounds,
    identity: Bounds,
    identity_v1: Bounds,
    result: Bounds,
}

/// The single-object header containd writes for one schema, and the legacy one it still reads.
#[derive(Debug, Clone, Copy)]
struct Headers {
    write: [u8; 10],
    legacy: [u8; 10],
}

impl Headers {
    fn of(fingerprints: Fingerprints) -> Self {
        Self {
            write: header(fingerprints.spec),
            legacy: header(fingerprints.legacy),
        }
    }

    fn reads(&self, bytes: &[u8]) -> bool {
        bytes
            .get(..10)
            .is_some_and(|h| h == self.write || h == self.legacy)
    }
}

fn header(fingerprint: u64) -> [u8; 10] {
    let mut h = [0u8; 10];
    h[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
    h[2..].copy_from_slice(&fingerprint.to_le_bytes());
    h
}

impl AvroCodec {
    /// `confluent_signal_ids` are the registry ids under which the bundled Signal schema is
    /// registered for the input topics.
    pub fn new(schemas: Arc<Schemas>, confluent_signal_ids: &[u32]) -> Self {
        let mut signal_writers = HashMap::new();
        let signal = schemas.fingerprints.signal;
        // The bundled schemas parse (checked by `Schemas::bundled` and the unit tests), so
        // their names resolve and the readers are made.
        let fast = SIGNAL_SCHEMA
            .parse::<serde_avro_fast::Schema>()
            .ok()
            .map(Arc::new);
        let reader = |h: Vec<u8>| FramedReader::new(&schemas.signal, fast.clone()?, h).ok();
        for fp in [signal.spec, signal.legacy] {
            if let Some(r) = reader(header(fp).to_vec()) {
                signal_writers.insert(fp, r);
            }
        }
        let confluent_ids = confluent_signal_ids
            .iter()
            .filter_map(|id| {
                let mut h = vec![CONFLUENT_MAGIC];
                h.extend_from_slice(&id.to_be_bytes());
                reader(h).map(|r| (*id, r))
            })
            .collect();
        let fingerprints = schemas.fingerprints;
        Self {
            command_header: Headers::of(fingerprints.command),
            decision_header: Headers::of(fingerprints.decision),
            signal_header: Headers::of(fingerprints.signal),
            identity_header: Headers::of(fingerprints.identity),
            result_header: Headers::of(fingerprints.result),
            identity_v1_header: header(fingerprint(&schemas.identity_v1)),
            flat_bounds: Arc::new(FlatBounds {
                command: Bounds::new(&schemas.command),
                decision: Bounds::new(&schemas.decision),
                identity: Bounds::new(&schemas.identity),
                identity_v1: Bounds::new(&schemas.identity_v1),
                result: Bounds::new(&schemas.result),
            }),
            schemas,
            signal_writers: Arc::new(signal_writers),
            confluent_ids: Arc::new(confluent_ids),
        }
    }

    pub fn schemas(&self) -> &Schemas {
        &self.schemas
    }

    pub fn decode_single_object(&self, bytes: &[u8]) -> Result<Signal, DecodeError> {
        if bytes.len() < 10 || bytes[..2] != SINGLE_OBJECT_MAGIC {
            return Err(DecodeError::BadFraming {
                expected: "Avro single-object encoding",
                detail: format!("{} bytes without the C3 01 marker", bytes.len()),
            });
        }
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..10]);
        let fp = u64::from_le_bytes(fp);
        self.signal_writers
            .get(&fp)
            .ok_or(DecodeError::UnknownFingerprint(fp))?
            .decode(bytes)
    }

    pub fn decode_confluent(&self, bytes: &[u8]) -> Result<Signal, DecodeError> {
        if bytes.len() < 5 || bytes[0] != CONFLUENT_MAGIC {
            return Err(DecodeError::BadFraming {
                expected: "Confluent wire format",
                detail: format!("{} bytes without the 00 magic byte", bytes.len()),
            });
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        self.confluent_ids
            .get(&id)
            .ok_or(DecodeError::UnknownSchemaId(id))?
            .decode(bytes)
    }

    /// Decodes a single-object command (adapters, tests and the demo read them back).
    pub fn decode_command<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<T, DecodeError> {
        decode_flat(
            &self.command_header,
            &self.schemas.command,
            &self.flat_bounds.command,
            bytes,
        )
    }

    /// Decodes a single-object decision record.
    pub fn decode_decision<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<T, DecodeError> {
        decode_flat(
            &self.decision_header,
            &self.schemas.decision,
            &self.flat_bounds.decision,
            bytes,
        )
    }

    /// Decodes a single-object adapter result.
    pub fn decode_result<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<T, DecodeError> {
        decode_flat(
            &self.result_header,
            &self.schemas.result,
            &self.flat_bounds.result,
            bytes,
        )
    }

    /// Single-object encoding of an adapter result.
    pub fn encode_result<T: Serialize>(&self, result: &T) -> Result<Vec<u8>, EncodeError> {
        let writer = &self.schemas.writers.result;
        encode_flat(&self.result_header.write, writer, result)
    }

    /// Single-object encoding of a command.
    pub fn encode_command<T: Serialize>(&self, command: &T) -> Result<Vec<u8>, EncodeError> {
        let writer = &self.schemas.writers.command;
        encode_flat(&self.command_header.write, writer, command)
    }

    /// Single-object encoding of a decision record.
    pub fn encode_decision<T: Serialize>(&self, decision: &T) -> Result<Vec<u8>, EncodeError> {
        let writer = &self.schemas.writers.decision;
        encode_flat(&self.decision_header.write, writer, decision)
    }

    /// Decodes a single-object inventory record.
    pub fn decode_identity(
        &self,
        bytes: &[u8],
    ) -> Result<crate::inventory::IdentityRecord, DecodeError> {
        if bytes.get(..10) == Some(&self.identity_v1_header) {
            let datum = &bytes[10..];
            self.flat_bounds
                .identity_v1
                .check(datum)
                .map_err(DecodeError::BadAvro)?;
            let (writer, reader) = (&self.schemas.identity_v1, &self.schemas.identity);
            let value = apache_avro::from_avro_datum(writer, &mut &datum[..], Some(reader))
                .map_err(|e| DecodeError::BadAvro(e.to_string()))?;
            return apache_avro::from_value(&value)
                .map_err(|e| DecodeError::BadAvro(e.to_string()));
        }
        decode_flat(
            &self.identity_header,
            &self.schemas.identity,
            &self.flat_bounds.identity,
            bytes,
        )
    }

    /// Single-object encoding of an inventory record (for inventory producers and tests).
    pub fn encode_identity(
        &self,
        record: &crate::inventory::IdentityRecord,
    ) -> Result<Vec<u8>, apache_avro::Error> {
        let value = apache_avro::to_value(record)?.resolve(&self.schemas.identity)?;
        let mut out = self.identity_header.write.to_vec();
        out.extend(apache_avro::to_avro_datum(&self.schemas.identity, value)?);
        Ok(out)
    }

    /// Single-object encoding of a signal (used by producers in tests, the demo and benches).
    pub fn encode_signal(&self, signal: &Signal) -> Result<Vec<u8>, apache_avro::Error> {
        let mut out = self.signal_header.write.to_vec();
        out.extend(self.signal_datum(signal)?);
        Ok(out)
    }

    /// Confluent framing of a signal under `schema_id`.
    pub fn encode_signal_confluent(
        &self,
        signal: &Signal,
        schema_id: u32,
    ) -> Result<Vec<u8>, apache_avro::Error> {
        let mut out = vec![CONFLUENT_MAGIC];
        out.extend_from_slice(&schema_id.to_be_bytes());
        out.extend(self.signal_datum(signal)?);
        Ok(out)
    }

    /// The signal schema refers to `SimpleSubject` by name, which the direct serializer cannot
    /// follow, so signals go through a resolved `Value`.
    fn signal_datum(&self, signal: &Signal) -> Result<Vec<u8>, apache_avro::Error> {
        let value = apache_avro::to_value(signal)?.resolve(&self.schemas.signal)?;
        apache_avro::to_avro_datum(&self.schemas.signal, value)
    }
}

/// Direct serde-to-Avro encoding of a record containd writes, after its single-object header.
fn encode_flat<T: Serialize>(
    header: &[u8; 10],
    schema: &serde_avro_fast::Schema,
    record: &T,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(header);
    let config = &mut serde_avro_fast::ser::SerializerConfig::new(schema);
    serde_avro_fast::to_datum(record, out, config).map_err(|e| EncodeError(e.to_string()))
}

/// Trailing bytes after the datum are ignored here, unlike for signals.
fn decode_flat<T: serde::de::DeserializeOwned>(
    headers: &Headers,
    schema: &Schema,
    bounds: &Bounds,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if !headers.reads(bytes) {
        return Err(DecodeError::BadFraming {
            expected: "single-object encoding of the bundled schema",
            detail: format!("{} bytes with another header", bytes.len()),
        });
    }
    bounds.check(&bytes[10..]).map_err(DecodeError::BadAvro)?;
    let value = apache_avro::from_avro_datum(schema, &mut &bytes[10..], None)
        .map_err(|e| DecodeError::BadAvro(e.to_string()))?;
    apache_avro::from_value(&value).map_err(|e| DecodeError::BadAvro(e.to_string()))
}

#[cfg(test)]
mod tests;
