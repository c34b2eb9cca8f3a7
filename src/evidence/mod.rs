//! The evidence chain: every decision record containd writes is linked to the previous one
//! it wrote to the same decisions partition, so removing or altering a record is detectable
//! (`containd audit verify`, docs/evidence.md).
//!
//! A chain is one writer run × one decisions partition. Per run, because a kill -9 must not
//! break a chain: a restarted instance starts new chains, and a replayed signal's record —
//! identical but for its link — sits in the new chain. Per partition, because the idempotent
//! producer writes each partition in order without gaps (a record cannot land after one that
//! was lost), which across partitions no producer promises. containd picks the decisions
//! partition itself (murmur2 of the subject key, as Kafka's default partitioner), so a subject's
//! records stay on one partition.
//!
//! A record's hash covers the previous record's hash and the record with its own link's hash
//! empty; the first record of a chain has `prev` = 64 zeros. Two forms:
//! - v2, Avro output: `SHA-256("containd.evidence.v2\0" ‖ prev ‖ the record's single-object
//!   Avro encoding)`. The encoding is made for the topic anyway, so the hash costs only the
//!   SHA-256; the JSON form v1 needed was made for the hash alone (5 % of containd's CPU).
//! - v1, JSON output and every record written before v2: `SHA-256("containd.evidence.v1\0" ‖
//!   prev ‖ the record's JSON)`.
//!
//! `containd audit verify` accepts either for an Avro record and v1 for a JSON one.

pub mod audit;

use crate::emit::{ChainLink, DecisionRecord};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// The `prev` of a chain's first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// A chain's newest record: its sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: [u8; 32],
}

/// Every chain's head, by decisions partition.
pub type Heads = HashMap<i32, Head>;

/// This run's chains, one per decisions partition.
#[derive(Debug)]
pub struct Chains {
    run: String,
    /// Heads in stripes by partition: workers linking into different chains do not wait on
    /// each other.
    heads: Box<[Mutex<Heads>]>,
    /// The heads last written to the log, and those taken at the sweep before, to be written
    /// at the next (by then their records were acknowledged, or the transaction ended).
    announced: Mutex<(Heads, Heads)>,
    /// Partitions of the decisions topic, once known (0 before: records are not chained).
    partitions: AtomicI32,
}

impl Default for Chains {
    fn default() -> Self {
        Self::new()
    }
}

impl Chains {
    pub fn new() -> Self {
        Self {
            run: run_id(),
            heads: (0..STRIPES).map(|_| Mutex::default()).collect(),
            announced: Mutex::default(),
            partitions: AtomicI32::new(0),
        }
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    pub fn set_partitions(&self, n: i32) {
        self.partitions.store(n, Ordering::Relaxed);
    }

    /// The decisions partition of a record keyed `key`; `None` before the topic is known.
    pub fn partition_of(&self, key: &[u8]) -> Option<i32> {
        let n = self.partitions.load(Ordering::Relaxed);
        (n > 0).then(|| crate::lifecycle::record::results_partition(key, n))
    }

    /// Links `record` as the next of `partition`'s chain and moves the head — only when `seal`
    /// turns the record into its output. `seal` gets the record with its link set but the
    /// link's hash empty, and `prev`; it fills the hash in ([`seal_json`], [`seal_avro`]) and
    /// returns the output and the hash. The chain stays locked meanwhile, so a link is never
    /// taken back after another was made on top of it.
    pub fn link_with<T, E>(
        &self,
        partition: i32,
        record: &mut DecisionRecord,
        seal: impl FnOnce(&mut DecisionRecord, &[u8; 32]) -> Result<(T, [u8; 32]), E>,
    ) -> Result<T, E> {
        let mut heads = lock(self.stripe(partition));
        let (seq, prev) = match heads.get(&partition) {
            Some(h) => (h.seq + 1, h.hash),
            None => (0, GENESIS),
        };
        record.chain = Some(ChainLink {
            id: self.run.clone(),
            seq,
            prev: crate::codec::hex(prev),
            hash: String::new(),
        });
        let (made, hash) = seal(record, &prev)?;
        heads.insert(partition, Head { seq, hash });
        Ok(made)
    }

    /// Links `record` as the next of `partition`'s chain (hash v1) and moves the head.
    pub fn link(&self, partition: i32, record: &mut DecisionRecord) {
        let linked: Result<(), std::convert::Infallible> =
            self.link_with(partition, record, |r, prev| Ok(((), seal_json(r, prev))));
        let Ok(()) = linked;
    }

    /// Writes the chains' heads as they were one sweep ago to the log when they moved (the
    /// sweep calls it): shipped elsewhere, they anchor the chains, so cutting a chain's newest
    /// records off the topic — which the chain alone cannot show — is caught too
    /// (docs/evidence.md). One sweep late, so the records they name are on the topic.
    pub fn announce(&self) {
        let now = self.checkpoint();
        let mut guard = lock(&self.announced);
        let (announced, taken) = &mut *guard;
        let heads = std::mem::replace(taken, now);
        if *announced == heads || heads.is_empty() {
            return;
        }
        let mut list: Vec<String> = heads
            .iter()
            .map(|(p, h)| format!("{p}:{}:{}", h.seq, crate::codec::hex(h.hash)))
            .collect();
        list.sort();
        tracing::info!(run = %self.run, heads = %list.join(","), "evidence chain heads");
        *announced = heads;
    }

    /// Every chain's head, to take back what an aborted transaction linked.
    pub fn checkpoint(&self) -> Heads {
        let mut all = Heads::new();
        for stripe in &*self.heads {
            all.extend(lock(stripe).iter().map(|(p, h)| (*p, *h)));
        }
        all
    }

    pub fn rewind(&self, to: Heads) {
        // Heads taken inside the aborted transaction are not announced.
        lock(&self.announced).1 = to.clone();
        let mut stripes: Vec<_> = self.heads.iter().map(lock).collect();
        for stripe in &mut stripes {
            stripe.clear();
        }
        for (p, h) in to {
            stripes[stripe_of(p)].insert(p, h);
        }
    }

    fn stripe(&self, partition: i32) -> &Mutex<Heads> {
        &self.heads[stripe_of(partition)]
    }
}

/// Lock stripes of the heads (more than the decide workers there will be on one instance).
const STRIPES: usize = 16;

fn stripe_of(partition: i32) -> usize {
    partition.unsigned_abs() as usize % STRIPES
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The hash forms' domain separators (see the module's documentation).
const V1: &[u8] = b"containd.evidence.v1\0";
const V2: &[u8] = b"containd.evidence.v2\0";

/// Fills in the hash (v1) of a record whose link's hash is empty; returns it.
pub fn seal_json(record: &mut DecisionRecord, prev: &[u8; 32]) -> [u8; 32] {
    let digest = digest(prev, record);
    set_hash(record, digest);
    digest
}

/// Fills in the hash (v2) of a record whose link's hash is empty, over its single-object Avro
/// encoding by `encode`; returns the record's bytes with the hash in them, and the hash.
///
/// The link is the schema's last field and `prev`, `hash` its last two, so the encoding with
/// the hash empty ends in `prev` and that empty string's length (one zero byte): the hash is
/// written in its place rather than encoding the record again. An encoding that does not end
/// so (a schema changed) is made again with the hash, and
/// `the_v2_hash_is_written_in_place_as_a_full_encoding_would` fails.
pub fn seal_avro<E>(
    record: &mut DecisionRecord,
    prev: &[u8; 32],
    encode: impl Fn(&DecisionRecord) -> Result<Vec<u8>, E>,
) -> Result<(Vec<u8>, [u8; 32]), E> {
    let mut bytes = encode(record)?;
    let digest = encoded_digest(prev, &bytes);
    set_hash(record, digest);
    match &record.chain {
        Some(link) if ends_with_empty_hash(&bytes, &link.prev) => {
            bytes.pop();
            bytes.extend_from_slice(&HEX_LEN);
            bytes.extend_from_slice(link.hash.as_bytes());
        }
        _ => bytes = encode(record)?,
    }
    Ok((bytes, digest))
}

/// A 64-character Avro string's length: 64 as a zig-zag varint.
const HEX_LEN: [u8; 2] = [0x80, 0x01];

/// Whether an encoding ends as the link does with its hash empty: `prev` (hex), then the
/// empty string.
fn ends_with_empty_hash(bytes: &[u8], prev_hex: &str) -> bool {
    bytes
        .strip_suffix(&[0])
        .and_then(|rest| rest.strip_suffix(prev_hex.as_bytes()))
        .is_some_and(|rest| rest.ends_with(&HEX_LEN))
}

fn set_hash(record: &mut DecisionRecord, digest: [u8; 32]) {
    if let Some(link) = record.chain.as_mut() {
        link.hash = crate::codec::hex(digest);
    }
}

/// The record's v1 hash after `prev`, whatever its link's hash says.
pub fn hash(prev: &[u8; 32], record: &DecisionRecord) -> [u8; 32] {
    match record.chain.as_ref().is_some_and(|l| !l.hash.is_empty()) {
        true => digest(prev, &without_hash(record)),
        false => digest(prev, record),
    }
}

/// The record as it was hashed: its link's hash empty.
pub fn without_hash(record: &DecisionRecord) -> DecisionRecord {
    let mut unhashed = record.clone();
    if let Some(link) = unhashed.chain.as_mut() {
        link.hash.clear();
    }
    unhashed
}

/// The v2 hash after `prev` of a record encoded with its link's hash empty.
pub fn encoded_digest(prev: &[u8; 32], encoded: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(V2);
    h.update(prev);
    h.update(encoded);
    h.finalize().into()
}

fn digest(prev: &[u8; 32], record: &DecisionRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(V1);
    h.update(prev);
    // A struct of strings, numbers, lists and ordered maps: serialising cannot fail, and
    // gives the same bytes for the same record. Written straight into the hash.
    let _ = serde_json::to_writer(Writer(&mut h), record);
    h.finalize().into()
}

/// Feeds serialised bytes into the hash without collecting them first.
struct Writer<'a>(&'a mut Sha256);

impl std::io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 16 hex digits that differ per start: the process, the time, the host.
fn run_id() -> String {
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(std::env::var("HOSTNAME").unwrap_or_default());
    crate::codec::hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests;
