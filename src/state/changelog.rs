//! The changelog record format. Key: `<input topic>|<input partition>|<subject id>` (topic
//! names cannot contain `|`), so one compacted changelog serves several input topics; the
//! record goes to the changelog partition with the input partition's number. Value: the
//! subject's state as JSON, or a tombstone when nothing is left.

use super::{CommandId, Seen, Shard, SubjectState};

pub fn key(topic: &str, partition: i32, subject: &str) -> Vec<u8> {
    format!("{topic}|{partition}|{subject}").into_bytes()
}

/// The prefix of every subject key of one input partition.
pub fn prefix(topic: &str, partition: i32) -> Vec<u8> {
    format!("{topic}|{partition}|").into_bytes()
}

/// The key of a signal remembered as seen in an input partition: `<topic>|<partition>#seen#`
/// then the (issuer, id) key in hex. `#` cannot follow the partition in a subject key, and
/// topic names cannot contain it.
pub fn seen_key(topic: &str, partition: i32, key: &CommandId) -> Vec<u8> {
    format!("{topic}|{partition}#seen#{key}").into_bytes()
}

pub fn encode(state: &SubjectState) -> Vec<u8> {
    // Serialising plain structs with string keys cannot fail.
    serde_json::to_vec(state).unwrap_or_default()
}

/// Why a changelog record could not be restored.
#[derive(Debug, thiserror::Error)]
#[error("changelog record {key:?}: {reason}")]
pub struct BadRecord {
    pub key: String,
    pub reason: String,
}

/// Applies one changelog record (in log order) to a shard being rebuilt. Records of other
/// input topics sharing the partition are skipped by the caller via [`prefix`].
pub fn restore_record(
    shard: &mut Shard,
    prefix: &[u8],
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), BadRecord> {
    let Some(subject) = key.strip_prefix(prefix) else {
        return restore_seen(shard, prefix, key, value);
    };
    let subject = std::str::from_utf8(subject).map_err(|e| BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })?;
    match value.filter(|v| !v.is_empty()) {
        None => {
            shard.subjects.remove(subject);
        }
        Some(bytes) => {
            let state: SubjectState = serde_json::from_slice(bytes).map_err(|e| BadRecord {
                key: subject.to_string(),
                reason: e.to_string(),
            })?;
            let newest = state
                .issued
                .iter()
                .map(|i| i.closed.map_or(i.at, |c| c.at.max(i.at)))
                .chain(state.rules.iter().flat_map(|r| {
                    r.hits
                        .iter()
                        .map(|h| h.at)
                        .chain(r.triggers.iter().map(|t| t.at))
                }))
                .max()
                .unwrap_or(0);
            shard.stream_time = shard.stream_time.max(newest);
            let mut state = state;
            // Records of releases that kept duplicate detection per subject.
            for seen in std::mem::take(&mut state.seen) {
                shard.seen.restore(seen);
            }
            shard.subjects.insert(subject.to_string(), state);
        }
    }
    Ok(())
}

/// A seen-signal record of this partition (other keys are skipped).
fn restore_seen(
    shard: &mut Shard,
    prefix: &[u8],
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), BadRecord> {
    // `prefix` is `<topic>|<partition>|`: the seen keys share all of it but the last byte.
    let seen_prefix = [&prefix[..prefix.len() - 1], b"#seen#"].concat();
    let Some(hex_key) = key.strip_prefix(seen_prefix.as_slice()) else {
        return Ok(());
    };
    let bad = |reason: String| BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let id = std::str::from_utf8(hex_key)
        .ok()
        .and_then(CommandId::parse)
        .ok_or_else(|| bad("not a seen key".into()))?;
    match value.filter(|v| !v.is_empty()) {
        None => shard.seen.remove(&id),
        Some(bytes) => {
            let seen: Seen = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
            shard.seen.restore(seen);
        }
    }
    Ok(())
}
