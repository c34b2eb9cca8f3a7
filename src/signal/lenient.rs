//! Event members as the specs shape them, read into the normalized schema's strings: CAEP's
//! `reason_admin`/`reason_user` are language maps (`{"en": "…"}`), `token-claims-change`'s
//! `claims` hold any JSON (`{"groups": ["a", "b"]}`), producers send numbers and booleans.
//! A language map keeps its English text (else the first); a list joins with `,`; any other
//! value becomes its JSON text. Nothing here fails on a JSON type: a spec-shaped event is a
//! signal, not a dead letter.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// An optional member of any JSON type, as text.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(Text)
}

/// A map of members of any JSON type (`claims`): strings as they are, other values as their
/// JSON text (`["a","b"]`, `false`); `null` values are left out.
pub fn text_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    // Through a JSON value: JSON's null and Avro's map both read with `deserialize_any`.
    let serde_json::Value::Object(map) = serde::Deserialize::deserialize(d)? else {
        return Ok(BTreeMap::new());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

/// One value of any JSON type as text (`None` for null).
struct AnyText(Option<String>);

impl<'de> serde::Deserialize<'de> for AnyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Text).map(AnyText)
    }
}

/// The visitor behind every value: strings as they are, the rest as described above.
struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Text)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(AnyText(item)) = seq.next_element()? {
            items.extend(item);
        }
        Ok(Some(items.join(",")))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // A language map (`{"en": "…", "de": "…"}`) keeps the English text, else the first;
        // another object keeps its members as `k=v` pairs.
        let mut entries: Vec<(String, String)> = Vec::new();
        while let Some((k, AnyText(v))) = map.next_entry::<String, AnyText>()? {
            if let Some(v) = v {
                entries.push((k, v));
            }
        }
        if let Some((_, en)) = entries.iter().find(|(k, _)| k == "en") {
            return Ok(Some(en.clone()));
        }
        let language_map = entries.iter().all(|(k, _)| is_language_tag(k));
        match entries.first() {
            None => Ok(None),
            Some((_, first)) if language_map => Ok(Some(first.clone())),
            Some(_) => Ok(Some(
                entries
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )),
        }
    }
}

/// `en`, `de-CH`, `zh-Hant-TW`: letters and hyphens, starting with a 2–3 letter language.
fn is_language_tag(k: &str) -> bool {
    let lang = k.split('-').next().unwrap_or_default();
    (2..=3).contains(&lang.len()) && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use crate::signal::Signal;

    #[test]
    fn spec_shaped_caep_members_decode() {
        let s: Signal = serde_json::from_str(
            r#"{"id":"s","source":{"issuer":"i"},"occurred_at":1,
            "event_type":"https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
            "subject":{"format":"opaque","identifiers":{"id":"x"}},
            "event":{"reason_admin":{"de":"Richtlinie","en":"Policy violation"},
                     "reason_user":{"fr":"Violation"},
                     "claims":{"groups":["a","b"],"trusted_network":false,"role":"admin","gone":null},
                     "current_level":3,"initiating_entity":null}}"#,
        )
        .unwrap();
        let e = &s.event;
        assert_eq!(e.reason_admin.as_deref(), Some("Policy violation"));
        assert_eq!(e.reason_user.as_deref(), Some("Violation"));
        assert_eq!(e.claims["groups"], r#"["a","b"]"#);
        assert_eq!(e.claims["trusted_network"], "false");
        assert_eq!(e.claims["role"], "admin");
        assert!(!e.claims.contains_key("gone"));
        assert_eq!(e.current_level.as_deref(), Some("3"));
        assert_eq!(e.initiating_entity, None);
    }
}
