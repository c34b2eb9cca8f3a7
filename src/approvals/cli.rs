//! `containd approvals`: the operator's side of the approvals topic.
//!
//! `list` reads the topic to its current end and folds it as containd does — one
//! [`HoldTable`] per partition, records in offset order, under the same [`Policy`] — so what
//! it shows as pending is what containd holds. `approve` and `deny` first check that the
//! command is pending (a verdict on anything else would only be ignored), then write one
//! verdict record to the hold's own partition, where containd reads it after the hold.

use super::{is_command_id, ApprovalRecord, Closed, Hold, HoldTable, Policy, Transition, Verdict};
use crate::cli::{rfc3339, say, table};
use crate::client::snapshot::{self, ReadError, WAIT};
use crate::config::Settings;
use crate::pipeline::kafka::producer_config;
use crate::state::Mark;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Without a usable key, a forged hold could not be told from containd's own.
    #[error("safety.approvals_key_file: {0}")]
    Key(String),
    #[error("approvals topic {0:?} does not exist: nothing was held yet, or safety.approvals_topic names another topic")]
    NoTopic(String),
    #[error(transparent)]
    Read(ReadError),
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0:?} is not a command id: 32 hex digits, as `containd approvals list` shows them")]
    NotAnId(String),
    #[error("--redact: {0}")]
    Redaction(String),
    #[error("no approver: pass --approver, or set $USER")]
    NoApprover,
    #[error("--reason is empty: say why; it is recorded with the verdict")]
    NoReason,
    #[error(
        "{approver:?} is not one of [safety] approvers ({}): containd would refuse the verdict",
        allowed.join(", ")
    )]
    NotApprover {
        approver: String,
        allowed: Vec<String>,
    },
    #[error("{id} is not held on {topic:?}: an unknown command id, or its hold is past the topic's retention")]
    Unknown { id: String, topic: String },
    #[error(
        "{id} is no longer pending: already {} by {} at {} ({})",
        closed.outcome, closed.by, rfc3339(closed.at), closed.reason
    )]
    Released { id: String, closed: Box<Closed> },
    #[error("producing the verdict on {id} to {topic:?}: {source}")]
    Produce {
        id: String,
        topic: String,
        source: Box<KafkaError>,
    },
}

impl crate::cli::Failure for Error {
    fn is_config(&self) -> bool {
        matches!(self, Self::Key(_))
    }
}

/// One approvals-topic record as read.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms), which containd judges it at.
    pub at: i64,
    pub payload: Option<Vec<u8>>,
}

/// The approvals topic folded: each partition's holds, and what could not be applied.
#[derive(Debug, Default)]
pub struct Holds {
    tables: BTreeMap<i32, HoldTable>,
    /// Records that are no approvals record at all.
    pub malformed: usize,
    /// Why containd refuses the records it refuses (an unsealed hold, an approver not
    /// allowed): such a record changes nothing here either.
    pub refused: Vec<String>,
}

impl Holds {
    /// Applies the records partition by partition, in offset order.
    pub fn fold(mut records: Vec<Raw>, policy: &Policy) -> Self {
        records.sort_by_key(|r| (r.partition, r.offset));
        let mut holds = Self::default();
        for raw in records {
            let parsed = raw
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_slice::<ApprovalRecord>(p).ok());
            let Some(record) = parsed else {
                holds.malformed += 1;
                continue;
            };
            let mark = Mark {
                offset: raw.offset,
                at: raw.at,
            };
            let table = holds.tables.entry(raw.partition).or_default();
            if let Transition::Ignored { refused: true, why } = table.apply(record, mark, policy) {
                holds.refused.push(why);
            }
        }
        holds
    }

    /// The holds nobody decided on yet, oldest first.
    pub fn pending(&self) -> Vec<&Hold> {
        let mut pending: Vec<&Hold> = self.tables.values().flat_map(|t| t.pending()).collect();
        pending.sort_by(|a, b| {
            (a.request.held_at, &a.request.command_id)
                .cmp(&(b.request.held_at, &b.request.command_id))
        });
        pending
    }

    /// The hold of `command_id`, pending or closed, with its partition.
    pub fn find(&self, command_id: &str) -> Option<(i32, &Hold)> {
        self.tables
            .iter()
            .find_map(|(p, t)| t.get(command_id).map(|h| (*p, h)))
    }

    /// The pending hold of `command_id` with its partition, or why there is none.
    fn pending_hold(&self, command_id: &str, topic: &str) -> Result<(i32, &Hold), Error> {
        let (partition, hold) = self.find(command_id).ok_or_else(|| Error::Unknown {
            id: command_id.into(),
            topic: topic.into(),
        })?;
        match &hold.closed {
            Some(closed) => Err(Error::Released {
                id: command_id.into(),
                closed: Box::new(closed.clone()),
            }),
            None => Ok((partition, hold)),
        }
    }
}

/// `containd approvals list`: the pending holds, as a table or (`json`) a JSON array of
/// [`Hold`]s.
pub fn list(settings: &Settings, json: bool) -> Result<(), Error> {
    let holds = load(settings)?;
    let pending = holds.pending();
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&pending).unwrap_or_default()
        );
    } else if pending.is_empty() {
        say!(
            "no held command is pending on {}",
            settings.safety.approvals_topic
        );
    } else {
        say!("{}", render(&pending));
    }
    Ok(())
}

/// The pending holds as a table, one row each.
pub fn render(pending: &[&Hold]) -> String {
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|h| {
            let (r, c) = (&h.request, &h.request.command);
            vec![
                r.command_id.clone(),
                c.action.clone(),
                c.target.clone(),
                c.subject.id.clone(),
                r.reason.clone(),
                rfc3339(r.held_at),
                rfc3339(r.expires_at),
                r.detail.clone(),
            ]
        })
        .collect();
    let header = [
        "COMMAND ID",
        "ACTION",
        "TARGET",
        "SUBJECT",
        "REASON",
        "HELD AT",
        "EXPIRES AT",
        "DETAIL",
    ];
    table(&header, &rows)
}

/// What an operator decides about a held command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Release it to its target topic.
    Approve,
    /// Cancel it.
    Deny,
}

/// `containd approvals approve` (`redact`: fields removed from the command before its
/// release).
pub fn approve(
    settings: &Settings,
    id: &str,
    approver: Option<&str>,
    (reason, redact): (&str, &[String]),
) -> Result<(), Error> {
    decide(settings, Choice::Approve, id, approver, (reason, redact))
}

/// `containd approvals deny`.
pub fn deny(
    settings: &Settings,
    id: &str,
    approver: Option<&str>,
    reason: &str,
) -> Result<(), Error> {
    decide(settings, Choice::Deny, id, approver, (reason, &[]))
}

/// Checks the verdict and that its command is pending, then writes it next to the hold.
/// `approver` defaults to `$USER`.
pub fn decide(
    settings: &Settings,
    choice: Choice,
    id: &str,
    approver: Option<&str>,
    (reason, redact): (&str, &[String]),
) -> Result<(), Error> {
    let approver = approver
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok());
    let mut verdict = verdict(settings, id, approver, reason)?;
    verdict.redact = redact.to_vec();
    let topic = &settings.safety.approvals_topic;
    let holds = load(settings)?;
    let (partition, hold) = holds.pending_hold(&verdict.command_id, topic)?;
    redactable(hold, redact)?;
    let now = chrono::Utc::now().timestamp_millis();
    if hold.request.expires_at <= now {
        eprintln!(
            "warning: {} passed its approval timeout at {}; once containd has written its expiry, this verdict is ignored",
            verdict.command_id,
            rfc3339(hold.request.expires_at)
        );
    }
    let (summary, then) = describe(hold, choice);
    let record = match choice {
        Choice::Approve => ApprovalRecord::Approve(verdict),
        Choice::Deny => ApprovalRecord::Deny(verdict),
    };
    let (partition, offset) = send(settings, partition, &record)?;
    say!("{summary}: verdict written to {topic} partition {partition} offset {offset}; {then}");
    Ok(())
}

/// What the verdict is about, and what containd does with it.
fn describe(hold: &Hold, choice: Choice) -> (String, String) {
    let (r, c) = (&hold.request, &hold.request.command);
    let what = format!(
        "{} ({} → {}, subject {})",
        r.command_id,
        c.action,
        c.target,
        r.subject_key()
    );
    match choice {
        Choice::Approve => (
            format!("approved {what}"),
            format!("containd releases the command to {}", r.topic),
        ),
        Choice::Deny => (
            format!("denied {what}"),
            "containd cancels the command".into(),
        ),
    }
}

/// The verdict asked for, checked as containd will check it.
fn verdict(
    settings: &Settings,
    id: &str,
    approver: Option<String>,
    reason: &str,
) -> Result<Verdict, Error> {
    let command_id = id.trim().to_ascii_lowercase();
    if !is_command_id(&command_id) {
        return Err(Error::NotAnId(id.into()));
    }
    let approver = approver
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .ok_or(Error::NoApprover)?;
    let allowed = &settings.safety.approvers;
    if !allowed.is_empty() && !allowed.contains(&approver) {
        return Err(Error::NotApprover {
            approver,
            allowed: allowed.clone(),
        });
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::NoReason);
    }
    Ok(Verdict {
        command_id,
        approver,
        reason: reason.into(),
        redact: Vec::new(),
    })
}

/// A redaction removes something, and leaves the command what its action needs.
fn redactable(hold: &Hold, redact: &[String]) -> Result<(), Error> {
    if redact.is_empty() {
        return Ok(());
    }
    let mut command = hold.request.command.clone();
    let removed = crate::disclosure::redact(&mut command, redact);
    if removed.is_empty() {
        return Err(Error::Redaction(format!(
            "{redact:?} names nothing the held command carries"
        )));
    }
    let needs = crate::emit::command::requirement(&command.action)
        .and_then(|r| r.missing(&command.parameters, command.principal_id.as_deref()));
    match needs {
        Some(why) => Err(Error::Redaction(format!(
            "removing {removed:?} leaves {} unable to act ({why}): deny it instead",
            command.action
        ))),
        None => Ok(()),
    }
}

/// The topic read and folded under containd's policy; what was skipped is said on stderr.
fn load(settings: &Settings) -> Result<Holds, Error> {
    let policy = Policy::of(settings);
    if let Some(Err(why)) = &policy.key {
        return Err(Error::Key(why.clone()));
    }
    let holds = Holds::fold(read(settings)?, &policy);
    let topic = &settings.safety.approvals_topic;
    if holds.malformed > 0 {
        eprintln!("skipped {} malformed record(s) on {topic}", holds.malformed);
    }
    if let Some(last) = holds.refused.last() {
        let n = holds.refused.len();
        eprintln!("{n} record(s) on {topic} refused, as containd refuses them; the last: {last}");
    }
    Ok(holds)
}

/// Reads every partition of the approvals topic from its beginning to its end as of now.
/// read_committed (the consumer default): an aborted transaction's holds are no holds.
pub fn read(settings: &Settings) -> Result<Vec<Raw>, Error> {
    let topic = &settings.safety.approvals_topic;
    let records =
        snapshot::read(settings, topic, "containd-approvals-cli").map_err(|e| match e {
            ReadError::NoTopic(t) => Error::NoTopic(t),
            other => Error::Read(other),
        })?;
    Ok(records
        .into_iter()
        .map(|r| Raw {
            partition: r.partition,
            offset: r.offset,
            at: r.at,
            payload: r.payload,
        })
        .collect())
}

/// Produces the verdict to the hold's partition and waits for its acknowledgement (within
/// [`WAIT`]); returns where it was written.
fn send(settings: &Settings, partition: i32, record: &ApprovalRecord) -> Result<(i32, i64), Error> {
    let topic = &settings.safety.approvals_topic;
    let id = record.command_id();
    let fail = |source| Error::Produce {
        id: id.into(),
        topic: topic.clone(),
        source: Box::new(source),
    };
    let mut config = producer_config(settings, None);
    config.set("message.timeout.ms", WAIT.as_millis().to_string());
    let producer: FutureProducer = config.create().map_err(fail)?;
    let payload = record.to_json();
    let out = FutureRecord::to(topic)
        .partition(partition)
        .key(id)
        .payload(&payload);
    let delivery = producer.send_result(out).map_err(|(e, _)| fail(e))?;
    match futures::executor::block_on(delivery) {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(fail(e)),
        Err(_) => Err(fail(KafkaError::Canceled)),
    }
}

#[cfg(test)]
mod tests;
