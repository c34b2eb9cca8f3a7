//! Command ids as state keeps them.

use serde::{Deserialize, Serialize};

/// A command id kept as its 16 bytes (the hex string is 32 characters plus an allocation);
/// serialised as the hex string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandId([u8; 16]);

impl CommandId {
    /// From the 32-hex-digit form.
    pub fn parse(hex_id: &str) -> Option<Self> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(hex_id, &mut b).ok()?;
        Some(Self(b))
    }
}

impl From<[u8; 16]> for CommandId {
    fn from(b: [u8; 16]) -> Self {
        Self(b)
    }
}

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::codec::hex(self.0))
    }
}

impl std::fmt::Debug for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for CommandId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CommandId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("command id is not 32 hex digits"))
    }
}
