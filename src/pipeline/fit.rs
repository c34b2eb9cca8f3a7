//! Outputs sized to fit what the producer accepts. librdkafka refuses any record larger than
//! `message.max.bytes` (1,000,000 by default) on the client, and a record never acknowledged
//! holds back its signal's offset: one oversized output used to stop the pipeline and, being
//! replayed, stop it again on every restart. So every output is measured before it is
//! produced: a decision whose commands or record do not fit is not acted on (it becomes a
//! dead letter, see `Processor::process`), and a dead letter that does not fit whole is cut to
//! a bounded record that still identifies the original.

use super::{OutKind, OutRecord};
use crate::config::Settings;
use crate::emit::deadletter::headers;
use sha2::{Digest, Sha256};

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;
/// Room for the record's own framing and the producer's batch overhead.
const FRAMING: usize = 1024;
/// Longest dead-letter reason (a decoder's message may quote the input it rejects).
pub const MAX_REASON_BYTES: usize = 512;
/// Longest key kept on a dead letter; a longer one is replaced by its SHA-256.
const MAX_KEY_BYTES: usize = 1024;
/// How much of an original too large to keep whole a dead letter keeps.
const KEPT_BYTES: usize = 64 * 1024;

/// The largest record the producer accepts, from `kafka."message.max.bytes"` (which `check`
/// validates) or librdkafka's default.
pub fn max_record_bytes(settings: &Settings) -> usize {
    settings
        .kafka
        .for_kind(crate::config::ClientKind::Producer)
        .get("message.max.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_RECORD_BYTES)
}

/// What the record costs against `message.max.bytes`: key, value, headers and framing.
pub fn size(out: &OutRecord) -> usize {
    let headers: usize = out.headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    out.key.as_ref().map_or(0, Vec::len) + out.payload.len() + headers + FRAMING
}

/// `text` cut to [`MAX_REASON_BYTES`] at a character boundary, saying how long it was.
pub fn reason(text: &str) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text.to_string();
    }
    let mut end = MAX_REASON_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// The first output of `outs` (a command or the decision record) that does not fit, as a
/// reason: which output, its size and the limit.
pub fn oversized(outs: &[OutRecord], limit: usize) -> Option<String> {
    let out = outs.iter().find(|o| size(o) > limit)?;
    let what = match &out.kind {
        OutKind::Command { target, action } => format!("the {action} command for {target}"),
        OutKind::Decision => "the decision record".to_string(),
        OutKind::DeadLetter => "the dead letter".to_string(),
        OutKind::State => "the state record".to_string(),
        OutKind::Hold => "the approvals record".to_string(),
        OutKind::Tracking => "the tracking record".to_string(),
    };
    Some(format!(
        "{what} would be {} bytes; the producer accepts at most {limit} (kafka.\"message.max.bytes\")",
        size(out)
    ))
}

/// A dead letter that fits: unchanged when it does; else its key (when long) replaced by its
/// SHA-256 and its payload by the first [`KEPT_BYTES`] (less if the limit is small), with the
/// original's size and SHA-256 in headers. Never dropped: the position headers still say
/// where the whole original is.
pub fn dead_letter(mut out: OutRecord, limit: usize) -> OutRecord {
    if size(&out) <= limit {
        return out;
    }
    if let Some(key) = out.key.take_if(|k| k.len() > MAX_KEY_BYTES) {
        out.headers
            .push((headers::ORIGINAL_KEY_SHA256, sha256_hex(&key).into_bytes()));
    }
    let original = std::mem::take(&mut out.payload);
    out.headers.push((headers::TRUNCATED, b"true".to_vec()));
    out.headers.push((
        headers::ORIGINAL_SIZE,
        original.len().to_string().into_bytes(),
    ));
    out.headers
        .push((headers::ORIGINAL_SHA256, sha256_hex(&original).into_bytes()));
    let room = limit.saturating_sub(size(&out));
    out.payload = original[..original.len().min(KEPT_BYTES).min(room)].to_vec();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::codec::hex(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn dead(key: usize, payload: usize) -> OutRecord {
        OutRecord {
            topic: Arc::from("dlq"),
            partition: None,
            key: Some(vec![b'k'; key]),
            payload: (0..payload).map(|i| i as u8).collect(),
            headers: vec![(headers::REASON_KIND, b"oversized".to_vec())],
            kind: OutKind::DeadLetter,
        }
    }

    fn header<'a>(out: &'a OutRecord, name: &str) -> Option<&'a [u8]> {
        out.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn a_dead_letter_that_fits_is_unchanged() {
        let out = dead(10, 5000);
        assert_eq!(dead_letter(out.clone(), 1_000_000).payload, out.payload);
        assert!(header(&dead_letter(out, 1_000_000), headers::TRUNCATED).is_none());
    }

    #[test]
    fn a_dead_letter_too_large_keeps_its_head_size_and_digest() {
        let original = dead(400_000, 900_000);
        let out = dead_letter(original.clone(), 1_000_000);
        assert!(size(&out) <= 1_000_000);
        assert_eq!(out.payload, original.payload[..KEPT_BYTES]);
        assert!(out.key.is_none(), "a 400 KB key is replaced by its digest");
        assert_eq!(header(&out, headers::ORIGINAL_SIZE), Some(&b"900000"[..]));
        let digest = crate::codec::hex(Sha256::digest(&original.payload));
        assert_eq!(
            header(&out, headers::ORIGINAL_SHA256),
            Some(digest.as_bytes())
        );
        assert_eq!(header(&out, headers::TRUNCATED), Some(&b"true"[..]));
        // A small producer limit keeps less, never more than fits.
        let small = dead_letter(dead(10, 900_000), 20_000);
        assert!(size(&small) <= 20_000 && !small.payload.is_empty());
    }

    #[test]
    fn reasons_are_bounded_at_a_character_boundary() {
        let long = "é".repeat(1000);
        let r = reason(&long);
        assert!(r.len() <= MAX_REASON_BYTES + 32, "{}", r.len());
        assert!(r.ends_with("(2000 bytes)"), "{r}");
        assert_eq!(reason("short"), "short");
    }
}
