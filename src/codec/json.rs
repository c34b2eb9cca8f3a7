//! The JSON form of a signal: the Avro record's fields by the same names (docs/json.md).

use super::DecodeError;
use crate::signal::Signal;

pub fn decode_signal(bytes: &[u8]) -> Result<Signal, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        if text.starts_with("missing field") {
            DecodeError::MissingField(text)
        } else {
            DecodeError::BadJson(text)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"id":"s1","source":{"issuer":"https://idp"},
        "event_type":"https://schemas.openid.net/secevent/caep/event-type/session-revoked",
        "occurred_at":"2026-11-23T10:00:00Z",
        "subject":{"subject_type":"opaque","identifiers":{"id":"svc-1"}}}"#;

    #[test]
    fn accepts_rfc3339_and_subject_type_alias() {
        let s = decode_signal(MINIMAL.as_bytes()).unwrap();
        assert_eq!(s.occurred_at, 1_795_428_000_000);
        assert_eq!(s.subject.format, "opaque");
        assert_eq!(
            s.received_at, 0,
            "filled in at ingest from the record timestamp"
        );
    }

    #[test]
    fn missing_required_field_is_its_own_kind() {
        let e = decode_signal(br#"{"id":"s1"}"#).unwrap_err();
        assert_eq!(e.kind(), "missing_field", "{e}");
        let e = decode_signal(b"{not json").unwrap_err();
        assert_eq!(e.kind(), "malformed_json");
    }
}
