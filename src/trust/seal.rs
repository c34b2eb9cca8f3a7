//! HMAC-SHA-256 seals over the records containd writes to topics others may write too (held
//! commands on the approvals topic, tracking records on the results topic): only a holder of
//! the key writes one that verifies. One mechanism for both; each caller chooses the parts
//! (a domain prefix keeps one kind's seal from verifying as another's under a shared key).

use hmac::Mac;

/// The seal (hex) of `parts`, concatenated, under `key`.
pub fn seal(key: &[u8], parts: &[&[u8]]) -> String {
    crate::codec::hex(mac(key, parts).finalize().into_bytes())
}

/// Whether `given` (hex) is the seal of `parts` under `key` (constant-time comparison).
pub fn verify(key: &[u8], parts: &[&[u8]], given: &[u8]) -> bool {
    let Some(given) = std::str::from_utf8(given)
        .ok()
        .and_then(|s| hex::decode(s).ok())
    else {
        return false;
    };
    mac(key, parts).verify_slice(&given).is_ok()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> hmac::SimpleHmac<sha2::Sha256> {
    // HMAC accepts a key of any length.
    let mut mac = hmac::SimpleHmac::<sha2::Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}
