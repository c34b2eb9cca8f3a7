//! The commands tracked in one results-topic partition, and how each record moves them:
//! containd's tracking records and markers, and the adapters' results, in log order.

use super::record::{Issued, Marker, Tracking};
use crate::config::Trigger;
use crate::emit::{CommandResult, ResultStatus};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// One command's life so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// `None` while only a result has been read (it can land before the tracking record).
    #[serde(default)]
    pub issued: Option<Issued>,
    /// Every send: the first, then each re-send, with the offset of the record that caused it.
    #[serde(default)]
    pub sends: Vec<Send>,
    /// The newest result for the current attempt.
    #[serde(default)]
    pub status: Option<ResultStatus>,
    /// The target a result read before the tracking record named (checked when it arrives).
    #[serde(default)]
    pub reported_by: Option<String>,
    #[serde(default)]
    pub status_at: i64,
    #[serde(default)]
    pub accepted_at: Option<i64>,
    /// When its target first said it was done (or had nothing to do).
    #[serde(default)]
    pub confirmed_at: Option<i64>,
    /// Offset of the record that confirmed it.
    #[serde(default = "none_yet")]
    pub confirmed_offset: i64,
    #[serde(default)]
    pub ended: Option<Ended>,
    /// Offset of the newest adapter result applied: a re-read of it or anything before is a
    /// replay.
    #[serde(default = "none_yet")]
    pub result_offset: i64,
    /// When the newest record about it was read (eviction runs on it).
    #[serde(default)]
    pub touched_at: i64,
}

fn none_yet() -> i64 {
    -1
}

impl Default for Tracked {
    fn default() -> Self {
        Self {
            issued: None,
            sends: Vec::new(),
            status: None,
            reported_by: None,
            status_at: 0,
            accepted_at: None,
            confirmed_at: None,
            confirmed_offset: none_yet(),
            ended: None,
            result_offset: none_yet(),
            touched_at: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    pub attempt: u32,
    pub at: i64,
    pub offset: i64,
    /// The previous attempt's last result (`failed`), or none (silence).
    #[serde(default)]
    pub after: Option<ResultStatus>,
}

/// How a command failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub trigger: String,
    pub at: i64,
    /// The record that ended it: a re-read of it repeats the same escalation.
    pub offset: i64,
}

impl Tracked {
    fn attempt(&self) -> u32 {
        self.sends.last().map_or(0, |s| s.attempt)
    }

    /// Still waiting for its target: sent, not confirmed, not ended.
    pub fn open(&self) -> bool {
        self.issued.is_some() && self.confirmed_at.is_none() && self.ended.is_none()
    }
}

/// Limits a command is tracked under (its target's, else `[lifecycle]`'s).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_attempts: u32,
    /// How old a tracking record may be when first read (`state.replay_margin`): an older
    /// one — a copy replayed after its command was settled and forgotten — is not tracked.
    pub horizon: Duration,
}

/// What one record does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A new command tracked (or a result kept until its command's record arrives).
    Tracked,
    /// Its target confirmed it: the access path is closed. `true`: a re-read of the record
    /// that did (outputs again, metrics not again).
    Confirmed(Box<Tracked>, bool),
    /// A result that changes nothing yet (`accepted`, a failure to re-send on).
    Reported,
    /// Send the command again, as this attempt (`true`: a re-read, the same send again).
    Resend(Box<Tracked>, u32, bool),
    /// It failed for good: escalate (`true`: a re-read, the same escalation again).
    Ended(Box<Tracked>, Trigger, bool),
    /// Nothing happens, and why (a result from another target, a marker that is stale).
    Ignored(String),
    /// A record already applied (a crash re-read): no output.
    Quiet,
}

/// Most commands one results partition tracks: a result about a command not tracked yet (it
/// can precede its tracking record) is kept only below it, so a flood of results about
/// nothing cannot exhaust memory.
pub const MAX_TRACKED: usize = 100_000;

/// The tracked commands of one results partition, by command id.
#[derive(Debug, Default)]
pub struct Tracker {
    tracked: HashMap<String, Tracked>,
    /// Commands whose marker this process already wrote (each is written once per process;
    /// a duplicate after a restart is recognised when applied).
    asked: HashSet<String>,
}

impl Tracker {
    pub fn get(&self, command_id: &str) -> Option<&Tracked> {
        self.tracked.get(command_id)
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tracked> {
        self.tracked.values()
    }

    /// Adds or removes an entry read from the changelog.
    pub fn restore(&mut self, command_id: &str, tracked: Option<Tracked>) {
        match tracked {
            Some(t) => self.tracked.insert(command_id.to_string(), t),
            None => self.tracked.remove(command_id),
        };
    }

    /// Applies containd's own (sealed) record read at `offset`, `at`.
    pub fn apply(
        &mut self,
        record: Tracking,
        (offset, at): (i64, i64),
        limits: impl Fn(&str) -> Limits,
    ) -> Transition {
        match record {
            Tracking::Issued(issued) => {
                let horizon = limits(&issued.command.target).horizon;
                self.issued(*issued, (offset, at), horizon)
            }
            Tracking::Resend(m) => self.resend(m, (offset, at), limits),
            Tracking::GiveUp(m) => self.give_up(m, (offset, at)),
        }
    }

    fn issued(
        &mut self,
        issued: Issued,
        (offset, at): (i64, i64),
        horizon: Duration,
    ) -> Transition {
        let id = issued.command.command_id.clone();
        if self.tracked.get(&id).is_some_and(|t| t.issued.is_some()) {
            return Transition::Quiet;
        }
        if issued.sent_at < at - horizon.as_millis() as i64 {
            return Transition::Ignored(format!(
                "tracking record for {id} sent {} s ago, beyond the replay margin: not tracked",
                (at - issued.sent_at) / 1000
            ));
        }
        let target = issued.command.target.clone();
        let t = self.tracked.entry(id).or_default();
        t.sends = vec![Send {
            attempt: 1,
            at: issued.sent_at,
            offset,
            after: None,
        }];
        t.issued = Some(issued);
        t.touched_at = at;
        // A result read before this record counts now, if its target is the command's.
        if t.reported_by.take().is_some_and(|by| by != target) {
            t.status = None;
        }
        match t.status {
            Some(s) if s.closes() => {
                t.confirmed_at = Some(t.status_at);
                t.confirmed_offset = offset;
                Transition::Confirmed(Box::new(t.clone()), false)
            }
            Some(ResultStatus::Rejected) => end(t, Trigger::Rejected, (offset, at)),
            _ => Transition::Tracked,
        }
    }

    /// Applies an adapter's result read at `offset`.
    pub fn result(
        &mut self,
        r: &CommandResult,
        (offset, at): (i64, i64),
        limits: impl Fn(&str) -> Limits,
    ) -> Transition {
        if !self.tracked.contains_key(&r.command_id) && self.tracked.len() >= MAX_TRACKED {
            return Transition::Ignored(format!(
                "result for {} not kept: {MAX_TRACKED} commands are tracked in this partition",
                r.command_id
            ));
        }
        let t = self.tracked.entry(r.command_id.clone()).or_default();
        if let Some(replay) = replay(t, offset) {
            return replay;
        }
        if offset <= t.result_offset {
            return Transition::Quiet;
        }
        if let Some(issued) = &t.issued {
            if issued.command.target != r.target {
                return Transition::Ignored(format!(
                    "result from target {:?} for a command sent to {:?}",
                    r.target, issued.command.target
                ));
            }
        }
        t.result_offset = offset;
        t.touched_at = at;
        if t.issued.is_none() {
            t.reported_by = Some(r.target.clone());
        }
        // Only the current attempt's result (or a success of any) moves the command: a late
        // failure of an earlier attempt must not fail the one in flight.
        let current = r.attempt.max(1) as u32 >= t.attempt();
        if r.status.closes() || current {
            t.status = Some(r.status);
            t.status_at = at;
        }
        if r.status == ResultStatus::Accepted {
            t.accepted_at.get_or_insert(at);
        }
        if t.issued.is_none() || t.ended.is_some() {
            return Transition::Reported;
        }
        if r.status.closes() {
            if t.confirmed_at.is_some() {
                return Transition::Reported;
            }
            t.confirmed_at = Some(at);
            t.confirmed_offset = offset;
            return Transition::Confirmed(Box::new(t.clone()), false);
        }
        let limit = limits(&r.target).max_attempts;
        match (r.status, current && t.confirmed_at.is_none()) {
            (ResultStatus::Rejected, true) => end(t, Trigger::Rejected, (offset, at)),
            (ResultStatus::Failed, true) if t.attempt() >= limit => {
                end(t, Trigger::Failed, (offset, at))
            }
            _ => Transition::Reported,
        }
    }

    fn resend(
        &mut self,
        m: Marker,
        (offset, at): (i64, i64),
        limits: impl Fn(&str) -> Limits,
    ) -> Transition {
        self.asked.remove(&m.command_id);
        let Some(t) = self.tracked.get_mut(&m.command_id) else {
            return Transition::Ignored(format!("no command {} is tracked", m.command_id));
        };
        if let Some(replay) = replay(t, offset) {
            return replay;
        }
        let Some(issued) = &t.issued else {
            return Transition::Ignored(format!("command {} was never sent", m.command_id));
        };
        let limit = limits(&issued.command.target).max_attempts;
        if !t.open() || m.attempt != t.attempt() + 1 || m.attempt > limit {
            return Transition::Quiet;
        }
        t.sends.push(Send {
            attempt: m.attempt,
            at,
            offset,
            after: t.status,
        });
        t.status = None;
        t.touched_at = at;
        Transition::Resend(Box::new(t.clone()), m.attempt, false)
    }

    fn give_up(&mut self, m: Marker, (offset, at): (i64, i64)) -> Transition {
        self.asked.remove(&m.command_id);
        let Some(t) = self.tracked.get_mut(&m.command_id) else {
            return Transition::Ignored(format!("no command {} is tracked", m.command_id));
        };
        if let Some(replay) = replay(t, offset) {
            return replay;
        }
        if !t.open() || m.attempt != t.attempt() {
            return Transition::Quiet;
        }
        let trigger = match t.status {
            Some(ResultStatus::Failed) => Trigger::Failed,
            _ => Trigger::Timeout,
        };
        end(t, trigger, (offset, at))
    }

    /// Markers for open commands whose clock ran out at `now`: a re-send while attempts are
    /// left, else a give-up. Each command is asked once per process.
    pub fn due(
        &mut self,
        now: i64,
        partition: i32,
        limits: impl Fn(&str) -> Limits,
    ) -> Vec<Tracking> {
        let mut out = Vec::new();
        for (id, t) in &self.tracked {
            let Some(issued) = t.issued.as_ref().filter(|_| t.open()) else {
                continue;
            };
            if self.asked.contains(id) {
                continue;
            }
            let l = limits(&issued.command.target);
            // Counted from the last send: `accepted` does not stop the clock, so a target
            // that never finishes cannot keep a command open.
            let quiet_since = t.sends.last().map_or(0, |s| s.at);
            let failed = t.status == Some(ResultStatus::Failed);
            if !failed && now < quiet_since.saturating_add(l.timeout.as_millis() as i64) {
                continue;
            }
            let attempt = t.attempt();
            let marker = |attempt| Marker {
                command_id: id.clone(),
                partition,
                attempt,
            };
            out.push(match attempt < l.max_attempts {
                true => Tracking::Resend(marker(attempt + 1)),
                false => Tracking::GiveUp(marker(attempt)),
            });
        }
        self.asked
            .extend(out.iter().map(|m| m.command_id().to_string()));
        out
    }

    /// Drops entries settled (confirmed or ended) or never sent, untouched for `margin`;
    /// returns their ids.
    pub fn evict(&mut self, now: i64, margin: Duration) -> Vec<String> {
        let before = now - margin.as_millis() as i64;
        let gone: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.open() && t.touched_at < before)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.tracked.remove(id);
            self.asked.remove(id);
        }
        gone
    }
}

fn end(t: &mut Tracked, trigger: Trigger, (offset, at): (i64, i64)) -> Transition {
    t.ended = Some(Ended {
        trigger: trigger.name().into(),
        at,
        offset,
    });
    t.touched_at = at;
    Transition::Ended(Box::new(t.clone()), trigger, false)
}

/// What the record at `offset` did the first time it was applied, when it did something with
/// outputs (a re-read after a crash repeats them: the first outputs may not have landed).
fn replay(t: &Tracked, offset: i64) -> Option<Transition> {
    if let Some(s) = t.sends.iter().skip(1).find(|s| s.offset == offset) {
        return Some(Transition::Resend(Box::new(t.clone()), s.attempt, true));
    }
    if let Some(e) = t.ended.as_ref().filter(|e| e.offset == offset) {
        let trigger = trigger_named(&e.trigger);
        return Some(Transition::Ended(Box::new(t.clone()), trigger, true));
    }
    (t.confirmed_at.is_some() && t.confirmed_offset == offset)
        .then(|| Transition::Confirmed(Box::new(t.clone()), true))
}

fn trigger_named(name: &str) -> Trigger {
    match name {
        "failed" => Trigger::Failed,
        "rejected" => Trigger::Rejected,
        _ => Trigger::Timeout,
    }
}

#[cfg(test)]
mod tests;
