//! The changelog record format. Key: `<input topic>|<input partition>|<subject id>` (topic
//! names cannot contain `|`), so one compacted changelog serves several input topics; the
//! record goes to the changelog partition with the input partition's number. Value: the
//! subject's state (or the seen signal, breaker verdicts, hold, tracked command) as a
//! MessagePack map with field names ([`value`]), or a tombstone when nothing is left.
//!
//! Why MessagePack: the value is written on every state change of every signal, and JSON's
//! string escaping made writing it 6 % of containd's CPU (docs/benchmarks.md). A map keeps the
//! field names, so a record stays readable by any MessagePack tool and fields can be added
//! with defaults, as with JSON. Records of earlier releases are JSON and are still read
//! ([`read`]): a JSON value starts with `{`, a MessagePack map never does.

use super::{CommandId, Issued, RuleState, Seen, Shard, SubjectState};
use serde::Deserialize;

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

/// The key of the circuit breakers' verdicts on the signal at `offset`:
/// `<topic>|<partition>#breaker#<offset>`.
pub fn breaker_key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    format!("{topic}|{partition}#breaker#{offset}").into_bytes()
}

/// The key of a tracked command (a results-topic partition): `<topic>|<partition>#track#<id>`.
pub fn track_key(topic: &str, partition: i32, command_id: &str) -> Vec<u8> {
    format!("{topic}|{partition}#track#{command_id}").into_bytes()
}

/// The key of a held command (an approvals-topic partition): `<topic>|<partition>#hold#<id>`.
pub fn hold_key(topic: &str, partition: i32, command_id: &str) -> Vec<u8> {
    format!("{topic}|{partition}#hold#{command_id}").into_bytes()
}

/// A changelog value: the record as a MessagePack map with field names.
pub fn value<T: serde::Serialize>(record: &T) -> Vec<u8> {
    // Serialising plain structs with string keys into a Vec cannot fail.
    rmp_serde::to_vec_named(record).unwrap_or_default()
}

/// Reads a changelog value written by [`value`], or as JSON by an earlier release.
pub fn read<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        _ => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

/// A subject's record as read. Releases that kept duplicate detection per subject wrote its
/// seen signals in it too; those move to the partition's set and are never written again, so
/// the state kept in memory has no place for them.
#[derive(Deserialize)]
struct SubjectRecord {
    applied: i64,
    #[serde(default)]
    rules: Vec<RuleState>,
    #[serde(default)]
    issued: Vec<Issued>,
    #[serde(default)]
    seen: Vec<Seen>,
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
            let record: SubjectRecord = read(bytes).map_err(|reason| BadRecord {
                key: subject.to_string(),
                reason,
            })?;
            // Records of releases that kept duplicate detection per subject.
            for seen in record.seen {
                shard.seen.restore(seen);
            }
            // Every field named: a field added to the state cannot be left out here.
            let state = SubjectState {
                applied: record.applied,
                rules: record.rules,
                issued: record.issued,
            };
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
            shard.subjects.insert(subject.into(), state);
        }
    }
    Ok(())
}

/// A seen-signal, breaker-verdict, hold or tracked-command record of this partition (other keys are skipped).
fn restore_seen(
    shard: &mut Shard,
    prefix: &[u8],
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), BadRecord> {
    // `prefix` is `<topic>|<partition>|`: these keys share all of it but the last byte.
    let base = &prefix[..prefix.len() - 1];
    let Some(rest) = key.strip_prefix(base) else {
        return Ok(());
    };
    let bad = |reason: String| BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let value = value.filter(|v| !v.is_empty());
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_string);
    if let Some(hex_key) = rest.strip_prefix(b"#seen#".as_slice()) {
        let id = text(hex_key)
            .ok()
            .and_then(|h| CommandId::parse(&h))
            .ok_or_else(|| bad("not a seen key".into()))?;
        match value {
            None => shard.seen.remove(&id),
            Some(bytes) => shard.seen.restore(entry(bytes, key)?),
        }
    } else if let Some(offset) = rest.strip_prefix(b"#breaker#".as_slice()) {
        let offset: i64 = text(offset)
            .ok()
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| bad("not a breaker key".into()))?;
        match value {
            None => shard.breaker_verdicts.remove(&offset),
            Some(bytes) => shard.breaker_verdicts.insert(offset, entry(bytes, key)?),
        };
    } else if let Some(id) = rest.strip_prefix(b"#hold#".as_slice()) {
        let id = text(id).map_err(|e| bad(e.to_string()))?;
        let hold = value.map(|v| entry(v, key)).transpose()?;
        shard.holds.restore(&id, hold);
    } else if let Some(id) = rest.strip_prefix(b"#track#".as_slice()) {
        let id = text(id).map_err(|e| bad(e.to_string()))?;
        let tracked = value.map(|v| entry(v, key)).transpose()?;
        shard.tracked.restore(&id, tracked);
    }
    Ok(())
}

fn entry<T: serde::de::DeserializeOwned>(bytes: &[u8], key: &[u8]) -> Result<T, BadRecord> {
    read(bytes).map_err(|reason| BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    })
}
