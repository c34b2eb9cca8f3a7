use super::audit::{verify, Read};
use super::*;
use crate::emit::{Outcome, SourcePosition};

fn record(n: i64) -> DecisionRecord {
    let mut r: DecisionRecord = serde_json::from_value(serde_json::json!({
        "signal_id": format!("s-{n}"), "event_type": "urn:e", "subject_id": "svc-1",
        "outcome": "acted", "matched_rules": [], "command_ids": ["c"], "ruleset_version": "v",
        "source": {"topic": "signals", "partition": 0, "offset": n}, "decided_at": n,
        "trust": {"issuer": "https://i", "transmitter": null, "verdict": "trusted",
                  "reason_kind": null, "reason": null},
        "refused": [], "duplicate_of": null, "held": [], "errors": [],
        "identity": {"id": null, "kind": "unknown", "owner_team": null, "ownerless": false,
                     "criticality": null},
        "pending": [], "notes": [], "timings": {"decode_micros": 1, "evaluate_micros": 2}}))
    .unwrap();
    r.source = SourcePosition {
        topic: "signals".into(),
        partition: 0,
        offset: n,
    };
    r
}

/// `n` records linked in partition 0 of one run, as read at offsets 0..n.
fn chain(n: i64) -> (Chains, Vec<Read>) {
    let chains = Chains::new();
    chains.set_partitions(1);
    let reads = (0..n)
        .map(|i| {
            let mut r = record(i);
            chains.link(0, &mut r);
            Read {
                partition: 0,
                offset: i,
                at: 0,
                record: r,
                canonical: true,
                v2: None,
            }
        })
        .collect();
    (chains, reads)
}

#[test]
fn an_intact_chain_verifies_and_a_redelivered_copy_is_not_a_break() {
    let (_, mut reads) = chain(5);
    let copy = Read {
        offset: 5,
        ..reads[4].clone()
    };
    reads.push(copy);
    let report = verify(&reads, 0, false);
    assert!(report.verified(), "{report:?}");
    assert_eq!(
        (report.chained, report.chains, report.duplicates),
        (6, 1, 1)
    );
}

#[test]
fn a_removed_record_is_named_at_the_next_position() {
    let (_, mut reads) = chain(5);
    reads.remove(2);
    let report = verify(&reads, 0, false);
    let b = &report.breaks[0];
    assert_eq!((b.partition, b.offset, b.seq), (0, 3, 3), "{report:?}");
    assert!(b.what.contains("1 record(s) removed"), "{}", b.what);
}

#[test]
fn an_edited_record_is_named_and_so_is_one_rehashed_to_hide_it() {
    let (_, mut reads) = chain(5);
    reads[1].record.outcome = Outcome::NoMatch;
    let b = &verify(&reads, 0, false).breaks[0];
    assert_eq!(b.offset, 1);
    assert!(b.what.starts_with("edited"), "{}", b.what);
    // The forger recomputes its hash: the next record no longer follows it.
    let prev = hex::decode(&reads[1].record.chain.as_ref().unwrap().prev).unwrap();
    let rehashed = hash(&prev.try_into().unwrap(), &reads[1].record);
    reads[1].record.chain.as_mut().unwrap().hash = hex::encode(rehashed);
    let b = &verify(&reads, 0, false).breaks[0];
    assert_eq!(b.offset, 2, "{b:?}");
    assert!(b.what.contains("replaced"), "{}", b.what);
}

#[test]
fn a_chain_missing_its_start_is_a_break_unless_the_window_starts_mid_chain() {
    let (_, reads) = chain(5);
    let tail = &reads[2..];
    assert!(verify(tail, 0, false).breaks[0]
        .what
        .contains("first 2 record(s) are missing"));
    assert!(verify(tail, 0, true).verified());
}

#[test]
fn a_link_whose_output_fails_leaves_no_gap_and_a_new_run_is_a_new_chain() {
    let chains = Chains::new();
    let mut a = record(0);
    chains.link(0, &mut a);
    let mut dropped = record(1);
    let failed: Result<(), &str> = chains.link_with(0, &mut dropped, |_, _| Err("too large"));
    assert!(failed.is_err());
    let mut b = record(2);
    chains.link(0, &mut b);
    assert_eq!(b.chain.as_ref().unwrap().seq, 1);
    // Another run (a restart) replays the same decision in a chain of its own.
    let restarted = Chains::new();
    let mut replay = record(2);
    restarted.link(0, &mut replay);
    assert_ne!(restarted.run(), chains.run());
    let reads: Vec<Read> = [a, b, replay]
        .into_iter()
        .enumerate()
        .map(|(i, record)| Read {
            partition: 0,
            offset: i as i64,
            at: 0,
            record,
            canonical: true,
            v2: None,
        })
        .collect();
    let report = verify(&reads, 0, false);
    assert!(report.verified(), "{report:?}");
    assert_eq!(report.chains, 2);
}

#[test]
fn the_hash_survives_the_avro_round_trip() {
    let codec = crate::codec::AvroCodec::new(
        std::sync::Arc::new(crate::codec::Schemas::bundled().unwrap()),
        &[],
    );
    let (_, reads) = chain(2);
    let bytes = codec.encode_decision(&reads[1].record).unwrap();
    let back: DecisionRecord = codec.decode_decision(&bytes).unwrap();
    assert_eq!(back, reads[1].record);
    // What `audit::read` checks: the record re-encodes to exactly the bytes read.
    assert_eq!(codec.encode_decision(&back).unwrap(), bytes);
    assert!(verify(&reads, 0, false).verified());
}

#[test]
fn a_copy_produced_again_later_is_a_duplicate_wherever_it_lands() {
    let (_, mut reads) = chain(5);
    // Record 1 delivered again after records 2..4 (a redelivery after a timeout).
    reads.push(Read {
        offset: 5,
        ..reads[1].clone()
    });
    let report = verify(&reads, 0, false);
    assert!(report.verified(), "{report:?}");
    assert_eq!(report.duplicates, 1);
    assert_eq!(report.heads[0].seq, 4);
}

#[test]
fn an_unchained_or_re_encoded_record_among_chained_ones_is_a_break() {
    let (_, mut reads) = chain(3);
    let mut forged = record(9);
    forged.chain = None;
    reads.push(Read {
        partition: 0,
        offset: 3,
        at: 0,
        record: forged,
        canonical: true,
        v2: None,
    });
    let b = &verify(&reads, 0, false).breaks[0];
    assert_eq!(b.offset, 3);
    assert!(b.what.contains("unchained"), "{}", b.what);
    // Bytes added to a record that its decoded form drops (an unknown JSON field).
    let (_, mut reads) = chain(3);
    reads[1].canonical = false;
    let b = &verify(&reads, 0, false).breaks[0];
    assert_eq!(b.offset, 1);
    assert!(
        b.what.contains("not the record's own encoding"),
        "{}",
        b.what
    );
}

/// Records sealed v2 as the pipeline writes Avro output: the hash written in place gives the
/// same bytes a full encoding of the hashed record gives; read back, they verify; an edit to
/// a field, or to the hash, is a break.
#[test]
fn the_v2_hash_is_written_in_place_as_a_full_encoding_would() {
    let codec = crate::codec::AvroCodec::new(
        std::sync::Arc::new(crate::codec::Schemas::bundled().unwrap()),
        &[],
    );
    let chains = Chains::new();
    let mut reads = Vec::new();
    for i in 0..4 {
        let mut r = record(i);
        let bytes = chains
            .link_with(0, &mut r, |r, prev| {
                seal_avro(r, prev, |r| codec.encode_decision(r))
            })
            .unwrap();
        assert_eq!(bytes, codec.encode_decision(&r).unwrap(), "record {i}");
        let back: DecisionRecord = codec.decode_decision(&bytes).unwrap();
        assert_eq!(back, r);
        let v2 = super::audit::v2_hash(&codec, &back);
        assert_eq!(
            v2.as_deref(),
            Some(back.chain.as_ref().unwrap().hash.as_str())
        );
        assert_ne!(
            hex::encode(hash(&GENESIS, &back)),
            back.chain.as_ref().unwrap().hash
        );
        reads.push(Read {
            partition: 0,
            offset: i,
            at: 0,
            record: back,
            canonical: true,
            v2,
        });
    }
    assert!(verify(&reads, 0, false).verified());
    let mut edited = reads.clone();
    edited[2].record.subject_id = "svc-2".into();
    edited[2].v2 = super::audit::v2_hash(&codec, &edited[2].record);
    let b = &verify(&edited, 0, false).breaks[0];
    assert_eq!(b.offset, 2);
    assert!(b.what.contains("does not hash"), "{}", b.what);
}

/// An encoding that does not end in the link's empty hash (another schema, another format) is
/// made again with the hash in it, never patched.
#[test]
fn an_encoding_without_the_empty_hash_at_its_end_is_made_again() {
    let chains = Chains::new();
    let mut r = record(0);
    let bytes = chains
        .link_with(0, &mut r, |r, prev| seal_avro(r, prev, serde_json::to_vec))
        .unwrap();
    assert!(!r.chain.as_ref().unwrap().hash.is_empty());
    assert_eq!(bytes, serde_json::to_vec(&r).unwrap());
}
