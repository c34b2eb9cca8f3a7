//! Trust: only configured sources act, and only within their authority.
//!
//! - [`authority`]: issuer → source; the topics it may publish on, the event types it may
//!   assert, the actions it may cause; future-dated signals refused;
//! - [`set`] and [`jwks`]: raw SSF SETs verified end to end (signature, algorithm allow-list,
//!   `typ`, `iss`, `aud`, `iat`, `jti`) with a maintained JOSE crate; [`set_map`] turns a
//!   verified SET into the normalized signal;
//! - duplicates: a signal's (issuer, id) is remembered in its subject's state ([`seen_key`]),
//!   so a redelivery at another position decides nothing;
//! - [`push`]: the SSF push receiver (RFC 8935) in front of the bus.

pub mod authority;
pub mod bearer;
pub mod jwks;
pub mod push;
pub mod push_tls;
pub mod seal;
pub mod set;
pub mod set_map;
pub mod signer;

pub use authority::{Authority, Source, Untrusted};
pub use set::{SetError, SetVerifier};

use crate::config::{Problem, Settings};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

/// Everything the pipeline needs to decide whether a signal may act.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub authority: Authority,
    pub sets: SetVerifier,
    pub dedup_window: Duration,
}

impl Trust {
    /// Builds trust from the settings, loading every source's keys (see [`SetVerifier::load`]).
    pub fn load(settings: &Settings, config_file: &Path) -> Result<Self, Vec<Problem>> {
        Ok(Self {
            authority: Authority::new(settings),
            sets: SetVerifier::load(settings, config_file)?,
            dedup_window: settings.trust.dedup_window,
        })
    }
}

/// The 16 bytes a signal is remembered by for duplicate detection: (issuer, id), since ids are
/// unique per issuer only.
pub fn seen_key(issuer: &str, id: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [issuer, id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// The daemon's clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
