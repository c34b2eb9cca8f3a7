//! The changelog record format. Key: `<input topic>|<input partition>|<subject id>` (topic
//! names cannot contain `|`), so one compacted changelog serves several input topics; the
//! record goes to the changelog partition with the input partition's number. Value: the
//! subject's state as JSON, or a tombstone when nothing is left.

use super::{Shard, SubjectState};

pub fn key(topic: &str, partition: i32, subject: &str) -> Vec<u8> {
    format!("{topic}|{partition}|{subject}").into_bytes()
}

/// The prefix of every key of one input partition.
pub fn prefix(topic: &str, partition: i32) -> Vec<u8> {
    format!("{topic}|{partition}|").into_bytes()
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
        return Ok(());
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
            shard.subjects.insert(subject.to_string(), state);
        }
    }
    Ok(())
}
