//! Gathering a batch while a rebalance may move partitions under it.

use super::gather_from;
use rdkafka::error::KafkaResult;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::Message;
use std::collections::VecDeque;

fn record(partition: i32, offset: i64) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"signal".to_vec()),
        None,
        "signals".into(),
        Timestamp::NotAvailable,
        partition,
        offset,
        Some(OwnedHeaders::new()),
    )
}

type Step = (Option<KafkaResult<OwnedMessage>>, Vec<(String, i32)>);

/// Gathers from `first` and the scripted polls; the (partition, offset) of what was kept.
fn gather(first: OwnedMessage, max: usize, steps: Vec<Step>) -> (Vec<(i32, i64)>, usize) {
    let mut steps: VecDeque<Step> = steps.into();
    let total = steps.len();
    let batch = gather_from(first, max, || steps.pop_front().unwrap_or((None, vec![])));
    let kept = batch.iter().map(|m| (m.partition(), m.offset())).collect();
    (kept, total - steps.len())
}

fn moved(partitions: &[i32]) -> Vec<(String, i32)> {
    partitions
        .iter()
        .map(|p| ("signals".to_string(), *p))
        .collect()
}

#[test]
fn takes_what_has_arrived_up_to_the_limit_without_waiting() {
    let steps = vec![
        (Some(Ok(record(1, 0))), vec![]),
        (Some(Ok(record(0, 6))), vec![]),
        (None, vec![]),
        (Some(Ok(record(0, 7))), vec![]),
    ];
    let (kept, polls) = gather(record(0, 5), 8, steps);
    assert_eq!(kept, vec![(0, 5), (1, 0), (0, 6)]);
    assert_eq!(polls, 3, "nothing waiting ends the batch");

    let steps = (0..10).map(|o| (Some(Ok(record(2, o))), vec![])).collect();
    let (kept, polls) = gather(record(2, 100), 4, steps);
    assert_eq!(kept.len(), 4);
    assert_eq!(polls, 3);
}

#[test]
fn a_rebalance_while_gathering_drops_the_moved_partitions_records_and_ends_the_batch() {
    // p0 and p1 gathered; then a rebalance revokes p0 during the next poll, which returns a
    // record of p1 fetched after it.
    let steps = vec![
        (Some(Ok(record(1, 10))), vec![]),
        (Some(Ok(record(0, 6))), vec![]),
        (Some(Ok(record(1, 11))), moved(&[0])),
        (Some(Ok(record(1, 12))), vec![]),
    ];
    let (kept, polls) = gather(record(0, 5), 16, steps);
    assert_eq!(kept, vec![(1, 10), (1, 11)]);
    assert_eq!(polls, 3, "the batch ends at the rebalance");

    // A partition assigned (moved in) during the poll keeps the record fetched after it.
    let steps = vec![(Some(Ok(record(3, 0))), moved(&[3]))];
    let (kept, _) = gather(record(1, 1), 16, steps);
    assert_eq!(kept, vec![(1, 1), (3, 0)]);

    // Every gathered record moved: the batch is only what came after the rebalance, or empty.
    let steps = vec![(None, moved(&[0, 1]))];
    let (kept, _) = gather(record(0, 5), 16, steps);
    assert!(kept.is_empty(), "{kept:?}");
}
