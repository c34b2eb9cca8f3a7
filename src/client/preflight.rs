//! `containd check --connect`: what a deployment needs from the cluster, checked before the
//! first start — the cluster answers with these credentials, every topic containd reads or
//! writes exists (or is one containd creates) with the partitions the state needs, and the
//! group's offsets can be read (the group ACL), without joining the group.

use super::connect::{self, Cluster, ConnectError};
use crate::config::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long `--connect` waits for the cluster.
const REACH: Duration = Duration::from_secs(15);

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    /// Field (config path) and what is wrong.
    Problem(String, String),
}

/// The report, or why the cluster could not be asked.
pub fn check(settings: &Settings) -> Result<Vec<Finding>, ConnectError> {
    let probe = connect::probe(settings).map_err(|e| ConnectError::Tls(e.to_string()))?;
    let cluster = connect::metadata(&probe, settings, REACH)?;
    let mut out = vec![Finding::Ok(format!(
        "reached {} broker(s) at {}",
        cluster.brokers,
        settings.kafka.get("bootstrap.servers").unwrap_or_default()
    ))];
    inputs(settings, &cluster, &mut out);
    changelog(settings, &cluster, &mut out);
    outputs(settings, &cluster, &mut out);
    group(settings, &cluster, &mut out);
    Ok(out)
}

fn inputs(settings: &Settings, cluster: &Cluster, out: &mut Vec<Finding>) {
    for missing in cluster.missing_inputs(settings) {
        out.push(Finding::Problem(
            "input".into(),
            format!("{missing} does not exist: containd would wait for it, not ready"),
        ));
    }
    for (topic, partitions) in cluster.inputs(settings) {
        out.push(Finding::Ok(format!(
            "input {topic}: {partitions} partition(s)"
        )));
    }
}

/// The changelog (and the approvals topic, which has state of its own) needs at least as
/// many partitions as the widest input.
fn changelog(settings: &Settings, cluster: &Cluster, out: &mut Vec<Finding>) {
    let approvals = &settings.safety.approvals_topic;
    let results = settings
        .lifecycle
        .enabled
        .then_some(&settings.lifecycle.results_topic);
    let widest = cluster
        .inputs(settings)
        .into_values()
        .chain(cluster.topics.get(approvals).copied())
        .chain(results.and_then(|r| cluster.topics.get(r).copied()))
        .max()
        .unwrap_or(0);
    let topic = &settings.state.changelog_topic;
    match cluster.topics.get(topic) {
        Some(&n) if n < widest => out.push(Finding::Problem(
            "state.changelog_topic".into(),
            format!(
                "{topic} has {n} partition(s), the widest input {widest}: give it at least as many"
            ),
        )),
        Some(&n) => out.push(Finding::Ok(format!(
            "state changelog {topic}: {n} partition(s)"
        ))),
        None if settings.state.create_changelog => out.push(Finding::Ok(format!(
            "state changelog {topic}: will be created compacted with {} partition(s)",
            widest.max(1)
        ))),
        None => out.push(Finding::Problem(
            "state.changelog_topic".into(),
            format!("{topic} does not exist and state.create_changelog is false"),
        )),
    }
    if !cluster.topics.contains_key(approvals) {
        out.push(Finding::Ok(format!(
            "approvals {approvals}: will be created with 1 partition"
        )));
    }
    match results.map(|r| (r, cluster.topics.get(r))) {
        Some((r, Some(n))) => out.push(Finding::Ok(format!("results {r}: {n} partition(s)"))),
        Some((r, None)) => out.push(Finding::Ok(format!(
            "results {r}: will be created as wide as the widest input"
        ))),
        None => {}
    }
}

/// Topics containd only writes: they must exist (containd does not create them).
fn outputs(settings: &Settings, cluster: &Cluster, out: &mut Vec<Finding>) {
    let mut named = vec![
        (
            "output.decisions_topic".to_string(),
            settings.output.decisions_topic.clone(),
        ),
        (
            "output.dead_letter_topic".to_string(),
            settings.output.dead_letter_topic.clone(),
        ),
    ];
    for (i, t) in settings.targets.iter().enumerate() {
        named.push((format!("targets[{i}].topic"), t.topic.clone()));
    }
    if let Some(inv) = &settings.inventory.topic {
        named.push(("inventory.topic".into(), inv.clone()));
    }
    let mut present = 0;
    for (field, topic) in named {
        if cluster.topics.contains_key(&topic) {
            present += 1;
        } else {
            out.push(Finding::Problem(field, format!("{topic} does not exist")));
        }
    }
    out.push(Finding::Ok(format!(
        "{present} output/inventory topic(s) exist"
    )));
}

/// Reads the group's committed offsets of the inputs (an OffsetFetch, which needs the group
/// ACL) without joining the group, so a running deployment is not rebalanced.
fn group(settings: &Settings, cluster: &Cluster, out: &mut Vec<Finding>) {
    let group = &settings.input.group_id;
    let consumer: BaseConsumer = match super::consumer_config(settings).create() {
        Ok(c) => c,
        Err(e) => {
            let secrets = settings.kafka.secret_values();
            out.push(Finding::Problem(
                "kafka.consumer".into(),
                super::describe(&e, &secrets),
            ));
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in cluster.inputs(settings) {
        for p in 0..partitions as i32 {
            let _ = tpl.add_partition_offset(topic, p, Offset::Invalid);
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(committed) => {
            let with = committed
                .elements()
                .iter()
                .filter(|e| matches!(e.offset(), Offset::Offset(_)))
                .count();
            out.push(Finding::Ok(format!(
                "group {group}: offsets readable ({with} of {} partition(s) committed)",
                committed.count()
            )));
        }
        Err(e) => out.push(Finding::Problem(
            "input.group_id".into(),
            format!("group {group}: cannot read its offsets: {e}"),
        )),
    }
}
