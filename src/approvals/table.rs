//! The holds of one approvals-topic partition and how each record moves them.

use super::{milder_id, sealed_by, ApprovalRecord, HoldRequest, OnTimeout, Policy, Verdict};
use crate::emit::EnforcementCommand;
use crate::state::Mark;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A held command and, once decided, how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub request: HoldRequest,
    /// Offset of its hold record.
    pub offset: i64,
    #[serde(default)]
    pub closed: Option<Closed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    /// `released` or `cancelled`.
    pub outcome: String,
    pub by: String,
    pub reason: String,
    pub at: i64,
    /// Offset of the record that closed it: a re-read of that record is a replay.
    pub offset: i64,
    /// The command released (the held one, or the milder one sent in its place).
    #[serde(default)]
    pub released: Option<String>,
}

/// What one approvals record does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A new hold, pending from now on.
    Held(Box<Hold>),
    /// Send this command to the hold's target topic.
    Release(Box<Hold>, Box<EnforcementCommand>),
    Cancel(Box<Hold>),
    /// Nothing changes; `refused` when the record may not act (a forged hold, an approver
    /// not allowed), with why.
    Ignored {
        refused: bool,
        why: String,
    },
    /// A record already applied (a redelivery of a hold, an expiry after a verdict): no
    /// output at all.
    Quiet,
}

/// The holds of one partition, by command id.
#[derive(Debug, Default)]
pub struct HoldTable {
    holds: HashMap<String, Hold>,
    /// Pending holds whose expiry marker this process has already written.
    expiry_asked: HashSet<String>,
}

impl HoldTable {
    pub fn get(&self, command_id: &str) -> Option<&Hold> {
        self.holds.get(command_id)
    }

    pub fn pending(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values().filter(|h| h.closed.is_none())
    }

    /// Adds or removes a hold read from the changelog.
    pub fn restore(&mut self, command_id: &str, hold: Option<Hold>) {
        match hold {
            Some(h) => self.holds.insert(command_id.to_string(), h),
            None => self.holds.remove(command_id),
        };
    }

    /// Pending holds past their deadline whose expiry marker was not written yet (each is
    /// returned once per process).
    pub fn due(&mut self, now: i64) -> Vec<String> {
        let due: Vec<String> = self
            .pending()
            .filter(|h| h.request.expires_at <= now)
            .map(|h| h.request.command_id.clone())
            .filter(|id| !self.expiry_asked.contains(id))
            .collect();
        self.expiry_asked.extend(due.iter().cloned());
        due
    }

    /// Drops holds closed more than `margin` before `now`; returns their ids.
    pub fn evict(&mut self, now: i64, margin: Duration) -> Vec<String> {
        let before = now - margin.as_millis() as i64;
        let gone: Vec<String> = self
            .holds
            .iter()
            .filter(|(_, h)| h.closed.as_ref().is_some_and(|c| c.at < before))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.holds.remove(id);
            self.expiry_asked.remove(id);
        }
        gone
    }

    /// Applies one approvals record read at `at`.
    pub fn apply(&mut self, record: ApprovalRecord, at: Mark, policy: &Policy) -> Transition {
        if !is_command_id(record.command_id()) {
            return refused(format!(
                "{:?} is not a command id",
                cut(record.command_id())
            ));
        }
        match record {
            ApprovalRecord::Hold(request) => self.hold(*request, at, policy),
            ApprovalRecord::Approve(v) => self.verdict(v, true, at, policy),
            ApprovalRecord::Deny(v) => self.verdict(v, false, at, policy),
            ApprovalRecord::Expire(e) => self.expire(&e.command_id, at, policy),
        }
    }

    fn hold(&mut self, request: HoldRequest, at: Mark, policy: &Policy) -> Transition {
        match &policy.key {
            Some(Ok(key)) if !sealed_by(key, &request) => {
                return refused(format!(
                "held command {} is not sealed with the approvals key: containd did not hold it",
                request.command_id
            ))
            }
            Some(Err(e)) => return refused(format!("held command not accepted: {e}")),
            _ => {}
        }
        if self.holds.contains_key(&request.command_id) {
            return Transition::Quiet;
        }
        let hold = Hold {
            request,
            offset: at.offset,
            closed: None,
        };
        self.holds
            .insert(hold.request.command_id.clone(), hold.clone());
        Transition::Held(Box::new(hold))
    }

    fn verdict(&mut self, v: Verdict, approve: bool, at: Mark, policy: &Policy) -> Transition {
        if !policy.approvers.is_empty() && !policy.approvers.contains(&v.approver) {
            return refused(format!(
                "{:?} is not one of [safety] approvers",
                cut(&v.approver)
            ));
        }
        // As of the record's offset: a hold written after it (seen when the record is re-read
        // after a crash) did not exist for it.
        let Some(hold) = self
            .holds
            .get(&v.command_id)
            .filter(|h| h.offset < at.offset)
        else {
            return Transition::Ignored {
                refused: false,
                why: format!("no held command {}", v.command_id),
            };
        };
        if let Some(c) = &hold.closed {
            if c.offset != at.offset {
                return Transition::Ignored {
                    refused: false,
                    why: format!("{} was already {} by {}", v.command_id, c.outcome, c.by),
                };
            }
        }
        match approve {
            true => {
                let mut command = hold.request.command.clone();
                let removed = crate::disclosure::redact(&mut command, &v.redact);
                let reason = match removed.is_empty() {
                    true => v.reason.clone(),
                    false => format!("{} (redacted: {} removed)", v.reason, removed.join(", ")),
                };
                self.close(
                    &v.command_id,
                    ("released", &v.approver, &reason),
                    at,
                    command,
                )
            }
            false => self.cancel(&v.command_id, (&v.approver, &v.reason), at),
        }
    }

    fn expire(&mut self, command_id: &str, at: Mark, policy: &Policy) -> Transition {
        let Some(hold) = self.holds.get(command_id).filter(|h| h.offset < at.offset) else {
            return Transition::Quiet;
        };
        match &hold.closed {
            Some(c) if c.offset != at.offset => return Transition::Quiet,
            None if at.at < hold.request.expires_at => {
                return Transition::Ignored {
                    refused: false,
                    why: format!(
                        "expiry of {command_id} read before its deadline {}",
                        hold.request.expires_at
                    ),
                }
            }
            _ => {}
        }
        let why = "no approval within the approval timeout";
        let on_timeout = OnTimeout::parse(&hold.request.on_timeout).unwrap_or(OnTimeout::Cancel);
        let held = &hold.request;
        match on_timeout {
            OnTimeout::Release(a) if policy.accepts(&held.command.target, &a) => {
                let mut command = held.command.clone();
                command.command_id = milder_id(command_id, &a);
                command.action = a.clone();
                let reason = format!("{why}: {a} released in its place");
                self.close(command_id, ("released", "containd", &reason), at, command)
            }
            OnTimeout::Release(a) => {
                let reason = format!(
                    "{why}; {} does not accept {a}, so nothing is released",
                    held.command.target
                );
                self.cancel(command_id, ("containd", &reason), at)
            }
            OnTimeout::Cancel => self.cancel(command_id, ("containd", why), at),
        }
    }

    fn close(
        &mut self,
        command_id: &str,
        (outcome, by, reason): (&str, &str, &str),
        at: Mark,
        command: EnforcementCommand,
    ) -> Transition {
        let Some(hold) = self.holds.get_mut(command_id) else {
            return Transition::Quiet;
        };
        hold.closed = Some(Closed {
            outcome: outcome.into(),
            by: by.into(),
            reason: reason.into(),
            at: at.at,
            offset: at.offset,
            released: Some(command.command_id.clone()),
        });
        Transition::Release(Box::new(hold.clone()), Box::new(command))
    }

    fn cancel(&mut self, command_id: &str, (by, reason): (&str, &str), at: Mark) -> Transition {
        let Some(hold) = self.holds.get_mut(command_id) else {
            return Transition::Quiet;
        };
        hold.closed = Some(Closed {
            outcome: "cancelled".into(),
            by: by.into(),
            reason: reason.into(),
            at: at.at,
            offset: at.offset,
            released: None,
        });
        Transition::Cancel(Box::new(hold.clone()))
    }
}

fn refused(why: String) -> Transition {
    Transition::Ignored { refused: true, why }
}

/// containd's command ids are 32 lowercase hex digits; anything else names no command.
pub fn is_command_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// At most 64 characters of an operator-supplied value, for a message.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}
