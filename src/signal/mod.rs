//! The signal model: one normalized security event, as every input encoding decodes it.
//!
//! The Rust types mirror `schemas/signal.avsc` field for field, so the same serde derive
//! serves the Avro and the JSON form.

mod event_types;
mod lenient;
mod subject;
mod validate;

pub use event_types::{caep, is_known_caep_or_risc, risc, CAEP_PREFIX, RISC_PREFIX};
pub use subject::{SimpleSubject, Subject, SubjectFormat};
pub use validate::{validate, ValidationError};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A normalized signal. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub id: String,
    pub source: Source,
    pub event_type: String,
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub occurred_at: i64,
    /// Absent in JSON means "when the bus received it": ingest fills in the record timestamp.
    #[serde(default, deserialize_with = "timestamp::deserialize")]
    pub received_at: i64,
    pub subject: Subject,
    #[serde(default)]
    pub event: EventFields,
    #[serde(default)]
    pub txn: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Who asserted the event and who carried it onto the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub issuer: String,
    #[serde(default)]
    pub transmitter: Option<String>,
}

/// The text members of [`EventFields`] by their JSON names (`claims` is the map beside them).
pub const EVENT_TEXT_FIELDS: &[&str] = &[
    "initiating_entity",
    "reason_admin",
    "reason_user",
    "previous_status",
    "current_status",
    "namespace",
    "previous_level",
    "current_level",
    "change_direction",
    "principal",
    "risk_reason",
    "credential_type",
    "change_type",
    "friendly_name",
    "x509_issuer",
    "x509_serial",
    "fido2_aaguid",
    "reason",
    "new_value",
];

/// Event-specific fields of CAEP, RISC and the NHI extensions. All optional here; which ones
/// an event type requires is checked by [`validate`]. Each accepts the member in any JSON
/// shape the specs use (language maps, objects, lists, numbers) as text (see `lenient`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFields {
    #[serde(default, deserialize_with = "lenient::text")]
    pub initiating_entity: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub reason_admin: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub reason_user: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub previous_status: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub current_status: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub previous_level: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub current_level: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub change_direction: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub principal: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub risk_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub credential_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub change_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub friendly_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub x509_issuer: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub x509_serial: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub fido2_aaguid: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub reason: Option<String>,
    #[serde(default, alias = "new-value", deserialize_with = "lenient::text")]
    pub new_value: Option<String>,
    #[serde(default, deserialize_with = "lenient::text_map")]
    pub claims: BTreeMap<String, String>,
}

/// Timestamps arrive as epoch milliseconds (Avro timestamp-millis, JSON number) or, in JSON,
/// as RFC 3339 strings.
mod timestamp {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        struct Millis;
        impl Visitor<'_> for Millis {
            type Value = i64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("epoch milliseconds or an RFC 3339 timestamp")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_i32<E: de::Error>(self, v: i32) -> Result<i64, E> {
                Ok(i64::from(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| E::custom(format!("bad RFC 3339 timestamp {v:?}: {e}")))
            }
        }
        d.deserialize_any(Millis)
    }
}
