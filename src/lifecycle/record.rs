//! What containd writes to the results topic beside the adapters' results: a tracking record
//! per command it sends, and markers for what a clock decided (send again, give up). Each is
//! JSON, keyed like the command, sealed (HMAC-SHA-256 over the payload, `containd.seal`
//! header): a record with no valid seal never makes containd send anything.

use crate::emit::EnforcementCommand;
use serde::{Deserialize, Serialize};

/// Header carrying a tracking record's seal (hex); adapters' results have none.
pub const SEAL_HEADER: &str = "containd.seal";
/// Header on every command sent: the results-topic partition its result belongs on (where
/// containd tracks it). An adapter that cannot choose partitions keys the result like the
/// command; containd picks this partition the way Kafka's default partitioner does (murmur2).
pub const PARTITION_HEADER: &str = "containd.results_partition";

/// One containd record on the results topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tracking {
    /// A command was sent (first attempt) and is tracked from now on.
    Issued(Box<Issued>),
    /// Its result timeout passed, or the current attempt failed: send it again.
    Resend(Marker),
    /// Every attempt went unanswered or failed: the command failed for good.
    GiveUp(Marker),
}

impl Tracking {
    pub fn command_id(&self) -> &str {
        match self {
            Self::Issued(i) => &i.command.command_id,
            Self::Resend(m) | Self::GiveUp(m) => &m.command_id,
        }
    }

    /// The results partition the record was sealed for.
    pub fn partition(&self) -> i32 {
        match self {
            Self::Issued(i) => i.partition,
            Self::Resend(m) | Self::GiveUp(m) => m.partition,
        }
    }
}

/// A command containd sent, with what its lifecycle needs: where to re-send it, and the
/// signal times time-to-containment is measured from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// The results partition it was written to: a sealed copy on another partition is refused.
    pub partition: i32,
    /// The target topic a re-send goes to.
    pub topic: String,
    /// The record key of the command (its results carry the same).
    pub key: String,
    /// The inventory identity, when it knew the subject (for an escalation's rails).
    #[serde(default)]
    pub identity: Option<String>,
    pub sent_at: i64,
    /// The signal's `occurred_at` and its receipt on the bus (unix ms).
    pub occurred_at: i64,
    pub received_at: i64,
    /// Set on a command containd issued as an escalation: it does not escalate again.
    #[serde(default)]
    pub escalation_of: Option<String>,
    pub command: EnforcementCommand,
}

/// A clock's decision about one command, applied when read back (so it happens once, in log
/// order with the adapter's results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub command_id: String,
    /// The results partition it was written to.
    pub partition: i32,
    /// The send this marker asks for (`resend`) or the last one made (`give_up`).
    pub attempt: u32,
}

/// Domain-separated from the approvals seal, which may use the same key.
const DOMAIN: &[u8] = b"containd.lifecycle.v1\0";

/// HMAC-SHA-256 (hex) of a record's payload under the lifecycle key.
pub fn seal(key: &[u8], payload: &[u8]) -> String {
    crate::trust::seal::seal(key, &[DOMAIN, payload])
}

/// Whether `given` (hex) is the payload's seal under `key` (constant-time comparison).
pub fn sealed_by(key: &[u8], payload: &[u8], given: &[u8]) -> bool {
    crate::trust::seal::verify(key, &[DOMAIN, payload], given)
}

/// The results partition of a command key: Kafka's default partitioner (murmur2 of the key,
/// made positive, modulo the partitions), so an adapter keying results like the command with
/// a Java client lands on the same one.
pub fn results_partition(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Kafka's `Utils.murmur2` (seed 0x9747b28c).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Vectors from Kafka's UtilsTest.testMurmur2 (signed ints there).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data) as i32, expected, "{:?}", data);
        }
        assert_eq!(results_partition(b"anything", 1), 0);
        let p = results_partition(b"svc-deploy", 8);
        assert!((0..8).contains(&p));
    }

    #[test]
    fn a_seal_verifies_only_its_payload_and_key() {
        let key = b"0123456789abcdef";
        let s = seal(key, b"{\"type\":\"resend\"}");
        assert!(sealed_by(key, b"{\"type\":\"resend\"}", s.as_bytes()));
        assert!(!sealed_by(key, b"{\"type\":\"give_up\"}", s.as_bytes()));
        assert!(!sealed_by(
            b"another key 16by",
            b"{\"type\":\"resend\"}",
            s.as_bytes()
        ));
        assert!(!sealed_by(key, b"x", b"not hex"));
    }
}
