//! A verified SET's claims as the normalized signal: id = `jti`, issuer = `iss`, event type =
//! the one key of `events`, subject from `sub_id` (SSF) or the legacy per-event `subject`
//! (RFC 9493 JSON: `{"format": "opaque", "id": "…"}`), event members into `event`, `txn` kept.
//! `occurred_at` is the event's `event_timestamp` when given (when it happened), else `iat`.
//! Unknown members are ignored, as a receiver must.

use super::set::SetError;
use crate::signal::{EventFields, Signal, SimpleSubject, Source, Subject, EVENT_TEXT_FIELDS};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

type Object = Map<String, Value>;

pub fn to_signal(mut claims: Object) -> Result<Signal, SetError> {
    let text =
        |claims: &Object, name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(id), Some(issuer)) = (text(&claims, "jti"), text(&claims, "iss")) else {
        return Err(SetError::Malformed("no jti or iss".into()));
    };
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let Some(Value::Object(events)) = claims.remove("events") else {
        return Err(SetError::Malformed("no events object".into()));
    };
    if events.len() != 1 {
        return Err(SetError::Malformed(format!(
            "events holds {} events; an SSF SET carries exactly one",
            events.len()
        )));
    }
    let Some((event_type, Value::Object(mut members))) = events.into_iter().next() else {
        return Err(SetError::Malformed("the event is not a JSON object".into()));
    };
    let subject_json = match (claims.remove("sub_id"), members.remove("subject")) {
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => return Err(SetError::Malformed("no sub_id and no event subject".into())),
    };
    let subject = subject(&subject_json)?;
    let occurred_at = members
        .get("event_timestamp")
        .and_then(Value::as_i64)
        .unwrap_or(iat)
        .saturating_mul(1000);
    Ok(Signal {
        id,
        source: Source {
            issuer,
            transmitter: None,
        },
        event_type,
        occurred_at,
        received_at: 0,
        subject,
        event: event_fields(&members),
        txn: text(&claims, "txn"),
        attributes: attributes(&members),
    })
}

/// An RFC 9493 subject identifier (or SSF complex subject) as the signal's subject.
fn subject(json: &Value) -> Result<Subject, SetError> {
    let obj = json
        .as_object()
        .ok_or_else(|| SetError::Malformed("subject is not an object".into()))?;
    let format = format_of(obj)?;
    let mut s = Subject::empty(&format);
    match format.as_str() {
        "complex" => {
            for name in Subject::MEMBER_NAMES {
                let member = match obj.get(name) {
                    Some(Value::Object(m)) => Some(simple(m)?),
                    Some(_) => {
                        return Err(SetError::Malformed(format!(
                            "subject member {name} is not an object"
                        )))
                    }
                    None => None,
                };
                *member_slot(&mut s, name) = member;
            }
        }
        "aliases" => {
            let list = obj
                .get("identifiers")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    SetError::Malformed("aliases subject has no identifiers list".into())
                })?;
            for m in list {
                let m = m
                    .as_object()
                    .ok_or_else(|| SetError::Malformed("alias is not an object".into()))?;
                s.aliases.push(simple(m)?);
            }
        }
        _ => s.identifiers = identifiers(obj),
    }
    Ok(s)
}

fn member_slot<'a>(s: &'a mut Subject, name: &str) -> &'a mut Option<SimpleSubject> {
    match name {
        "user" => &mut s.user,
        "device" => &mut s.device,
        "session" => &mut s.session,
        "application" => &mut s.application,
        "tenant" => &mut s.tenant,
        "org_unit" => &mut s.org_unit,
        _ => &mut s.group,
    }
}

fn format_of(obj: &Object) -> Result<String, SetError> {
    obj.get("format")
        .or_else(|| obj.get("subject_type"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| SetError::Malformed("subject has no format".into()))
}

fn simple(obj: &Object) -> Result<SimpleSubject, SetError> {
    Ok(SimpleSubject {
        format: format_of(obj)?,
        identifiers: identifiers(obj),
    })
}

/// The identifier members (everything but the format) as strings; lists join with `,`.
fn identifiers(obj: &Object) -> BTreeMap<String, String> {
    obj.iter()
        .filter(|(k, _)| *k != "format" && *k != "subject_type")
        .map(|(k, v)| (k.clone(), flatten(v)))
        .collect()
}

fn flatten(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Event members with a place of their own besides the text fields: they never become
/// attributes.
const OTHER_EVENT_MEMBERS: &[&str] = &["new-value", "claims", "event_timestamp"];

/// Event members beyond the schema's fields (an NHI event's `credential_id`, a PAM
/// `session_id`) as string attributes, so rules can use them as they use a normalized
/// signal's attributes. At most 64, each value at most 1 KiB.
fn attributes(members: &Object) -> BTreeMap<String, String> {
    members
        .iter()
        .filter(|(k, _)| {
            !EVENT_TEXT_FIELDS.contains(&k.as_str()) && !OTHER_EVENT_MEMBERS.contains(&k.as_str())
        })
        .take(64)
        .map(|(k, v)| {
            let mut text = flatten(v);
            if text.len() > 1024 {
                let mut end = 1024;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            (k.clone(), text)
        })
        .collect()
}

/// Event members the normalized schema has, as strings. Localised texts (`reason_admin:
/// {"en": …}`) keep the English one, else the first; `claims` values become JSON text.
fn event_fields(members: &Object) -> EventFields {
    let text = |name: &str| -> Option<String> {
        match members.get(name)? {
            Value::Object(by_lang) => by_lang
                .get("en")
                .or_else(|| by_lang.values().next())
                .map(flatten),
            Value::Null => None,
            v => Some(flatten(v)),
        }
    };
    let claims = match members.get("claims") {
        Some(Value::Object(c)) => c
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    EventFields {
        initiating_entity: text("initiating_entity"),
        reason_admin: text("reason_admin"),
        reason_user: text("reason_user"),
        previous_status: text("previous_status"),
        current_status: text("current_status"),
        namespace: text("namespace"),
        previous_level: text("previous_level"),
        current_level: text("current_level"),
        change_direction: text("change_direction"),
        principal: text("principal"),
        risk_reason: text("risk_reason"),
        credential_type: text("credential_type"),
        change_type: text("change_type"),
        friendly_name: text("friendly_name"),
        x509_issuer: text("x509_issuer"),
        x509_serial: text("x509_serial"),
        fido2_aaguid: text("fido2_aaguid"),
        reason: text("reason"),
        new_value: text("new-value").or_else(|| text("new_value")),
        claims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssf_set_maps_to_the_normalized_signal() {
        let claims = serde_json::json!({
            "iss": "https://idp.example", "jti": "j-1", "iat": 1_795_000_000, "aud": "containd",
            "txn": "t-9",
            "sub_id": {"format": "complex",
                "user": {"format": "email", "email": "ada@example.com"},
                "device": {"format": "opaque", "id": "dev-7"}},
            "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {
                "event_timestamp": 1_794_999_990,
                "reason_admin": {"en": "Landspeed policy violation", "de": "…"}}}
        });
        let s = to_signal(claims.as_object().unwrap().clone()).unwrap();
        assert_eq!(s.id, "j-1");
        assert_eq!(s.source.issuer, "https://idp.example");
        assert!(s.event_type.ends_with("session-revoked"));
        assert_eq!(s.occurred_at, 1_794_999_990_000);
        assert_eq!(s.txn.as_deref(), Some("t-9"));
        assert_eq!(s.subject.id().as_deref(), Some("ada@example.com"));
        assert_eq!(
            s.subject.device.as_ref().unwrap().identifiers["id"],
            "dev-7"
        );
        assert_eq!(
            s.event.reason_admin.as_deref(),
            Some("Landspeed policy violation")
        );
        crate::signal::validate(&s).unwrap();
    }

    #[test]
    fn legacy_risc_subject_and_bad_shapes() {
        let claims = serde_json::json!({
            "iss": "https://accounts.google.com", "jti": "j-2", "iat": 1_795_000_000,
            "events": {"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {
                "subject": {"subject_type": "iss_sub", "iss": "https://accounts.google.com", "sub": "123"},
                "reason": "hijacking"}}
        });
        let s = to_signal(claims.as_object().unwrap().clone()).unwrap();
        assert_eq!(s.subject.format, "iss_sub");
        assert_eq!(s.occurred_at, 1_795_000_000_000);
        assert_eq!(s.event.reason.as_deref(), Some("hijacking"));
        assert!(s.attributes.is_empty(), "{:?}", s.attributes);
        let nhi = serde_json::json!({"iss": "i", "jti": "j", "iat": 1,
            "sub_id": {"format": "opaque", "id": "svc"},
            "events": {"urn:acme:secrets:credential-leaked": {
                "credential_id": "AKIA-1", "locations": ["github", "pastebin"]}}});
        let s = to_signal(nhi.as_object().unwrap().clone()).unwrap();
        assert_eq!(s.attributes["credential_id"], "AKIA-1");
        assert_eq!(s.attributes["locations"], "github,pastebin");
        let two = serde_json::json!({"iss": "i", "jti": "j", "sub_id": {"format": "opaque", "id": "x"},
            "events": {"urn:a:b": {}, "urn:a:c": {}}});
        assert_eq!(
            to_signal(two.as_object().unwrap().clone())
                .unwrap_err()
                .kind(),
            "malformed_set"
        );
        let none = serde_json::json!({"iss": "i", "jti": "j", "events": {"urn:a:b": {}}});
        assert_eq!(
            to_signal(none.as_object().unwrap().clone())
                .unwrap_err()
                .kind(),
            "malformed_set"
        );
    }
}
