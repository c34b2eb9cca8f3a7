//! Per-subject containment state: window hits, escalation triggers, and the commands issued
//! (which answer both "was this just sent?" for suppression and "what is contained?" for
//! restore). State lives with its input partition (signals are keyed by subject) and is
//! written to a compacted changelog topic with the signal's outputs (`changelog`).
//!
//! Every entry carries the offset of the signal that made it. A decision at offset `o` reads
//! only entries below `o`, and applying a signal whose offset the state has already seen
//! changes nothing. State restored after a crash may be ahead of the committed position; the
//! replayed signals then decide exactly as they did the first time (same commands, same ids,
//! no window counted twice, no closed containment reopened).

pub mod changelog;
mod command_id;
mod compact;
pub mod seen;
pub mod store;
pub mod stores;

pub use command_id::CommandId;
use compact::{intern, interned, push_small};
pub use store::{Change, Shard, StateStore};
pub use stores::Stores;

use crate::emit::TargetSubject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long entries outlive their use and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Each entry is kept until its own period (window, ladder, suppression) has passed, plus
    /// this margin, so a signal replayed after a crash still sees what it saw.
    pub margin: Duration,
    /// Cap per list (hits of a rule, triggers of a rule, issued commands); the oldest go first.
    pub max_entries: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(600),
            max_entries: 1024,
        }
    }
}

/// A signal's position and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub offset: i64,
    pub at: i64,
}

/// A signal that passed a window rule's match and condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub offset: i64,
    pub at: i64,
    /// Until when (ms) the hit can matter: its time plus the window.
    pub until: i64,
    #[serde(deserialize_with = "interned")]
    pub event_type: Arc<str>,
    /// The signal that hit, so the command the window fires names every contributor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_id: Option<Box<str>>,
}

/// A firing of a rule with an escalation ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub offset: i64,
    pub at: i64,
    /// Its time plus the ladder's period.
    pub until: i64,
    /// The signal that fired it, so a later step's command names every firing behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_id: Option<Box<str>>,
}

/// One rule's hits and firings for a subject (a short list per subject, not a map: a map's
/// node allocation cost more than the entries themselves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    #[serde(deserialize_with = "interned")]
    pub rule: Arc<str>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<Hit>,
    /// Times the rule fired, for escalation ladders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
}

/// A command containd emitted for this subject that state must remember: one that holds (an
/// open containment) or one that suppresses repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub offset: i64,
    pub at: i64,
    /// Its time plus its suppression period.
    pub until: i64,
    #[serde(deserialize_with = "interned")]
    pub target: Arc<str>,
    #[serde(deserialize_with = "interned")]
    pub action: Arc<str>,
    pub command_id: CommandId,
    /// The action stays in force until restored (a disable, a quarantine), so it is an open
    /// containment until a restore closes it or it expires.
    pub holds: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Mark>,
    /// The cause: the rule that issued it, the event type and `occurred_at` of its signal,
    /// the object it concerns (a credential, device, session, incident) and the principal at
    /// the target. A restore lifts only containments whose cause it resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Cause>>,
    /// `on_expiry: restore`: containd issues the restore itself when the containment expires,
    /// naming the subject as its command did; `None` once that restore (or the decision not
    /// to) was acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_on_expiry: Option<Box<TargetSubject>>,
    /// Its restore on expiry was issued (or decided against), for `containd status`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored_on_expiry: bool,
}

/// Why a command was issued, as far as restore and suppression need to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    #[serde(deserialize_with = "interned")]
    pub rule: Arc<str>,
    #[serde(deserialize_with = "interned")]
    pub event_type: Arc<str>,
    pub occurred_at: i64,
    /// The signal that caused it (its issuer and id): the restore that lifts it cites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Box<str>>,
}

/// A signal by its issuer and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRef {
    #[serde(deserialize_with = "interned")]
    pub issuer: Arc<str>,
    pub id: Box<str>,
}

impl Cause {
    /// The copy state keeps: its names (rule, event type, issuer) shared with every other
    /// entry's rather than allocated per command.
    fn kept(&self) -> Cause {
        Cause {
            rule: intern(&self.rule),
            event_type: intern(&self.event_type),
            occurred_at: self.occurred_at,
            signal: self.signal.as_ref().map(|s| SignalRef {
                issuer: intern(&s.issuer),
                id: s.id.clone(),
            }),
            object: self.object.clone(),
            principal: self.principal.clone(),
        }
    }
}

impl Issued {
    pub fn object(&self) -> Option<&str> {
        self.cause.as_ref().and_then(|c| c.object.as_deref())
    }

    pub fn principal(&self) -> Option<&str> {
        self.cause.as_ref().and_then(|c| c.principal.as_deref())
    }

    /// Same target, action, object and principal: a newer one supersedes an older one.
    fn same_kind(&self, other: &Issued) -> bool {
        self.target == other.target
            && self.action == other.action
            && self.object() == other.object()
            && self.principal() == other.principal()
    }
}

impl Issued {
    /// Its restore on expiry is due at `now`: it expired, nothing closed it first, and the
    /// restore has not been issued yet.
    pub fn restore_due(&self, now: i64) -> bool {
        self.pending_restore() && self.expires_at.is_some_and(|e| e <= now)
    }

    /// Whether this command stands in, at `t`, for a new one of the same kind that would
    /// hold for `expires_in` (`None`: until restored). A one-shot action, or a containment
    /// without expiry, always does; an expiring one only while it is in force and when it was
    /// given at least as long (a repeat of the same rule is; an open-ended or longer
    /// containment after it is not, nor anything after it expired).
    pub fn covers(&self, t: i64, expires_in: Option<Duration>) -> bool {
        // containd lifted it already (on its own clock, which may run ahead of `t`).
        if self.restored_on_expiry {
            return false;
        }
        let Some(expires_at) = self.expires_at.filter(|_| self.holds) else {
            return true;
        };
        match expires_in {
            _ if expires_at <= t => false,
            None => false,
            Some(d) => expires_at - self.at >= d.as_millis() as i64,
        }
    }

    /// A restore on expiry is still to be issued: kept, however old, until it is.
    fn pending_restore(&self) -> bool {
        self.holds && self.restore_on_expiry.is_some() && self.closed.is_none()
    }

    /// Open as of offset `o` at time `t`: issued before `o`, not closed before `o`, not expired.
    fn open_at(&self, o: i64, t: i64) -> bool {
        self.holds
            && self.offset < o
            && self.at <= t
            && self.closed.is_none_or(|c| c.offset >= o)
            && self.expires_at.is_none_or(|e| e > t)
    }
}

/// A signal decided in the partition, remembered by (issuer, id) for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// [`crate::trust::seen_key`] of (issuer, signal id).
    pub key: CommandId,
    pub offset: i64,
    pub at: i64,
    /// Its time plus the dedup window.
    pub until: i64,
}

/// What one subject's signals have left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    /// Highest signal offset applied; a signal at or below it is a replay.
    pub applied: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issued: Vec<Issued>,
}

/// A window as a condition sees it: the hits before this signal within the duration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowView {
    pub count: usize,
    pub event_types: BTreeSet<String>,
    pub first_at: Option<i64>,
    /// The hits' signal ids, oldest first (evidence for the command the window fires).
    pub signal_ids: Vec<String>,
}

/// The changes one decision makes to its subject's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateUpdate {
    /// Window rules the signal hit.
    pub hits: Vec<NewHit>,
    /// Rules with an escalation ladder that fired: (rule id, ladder period, signal id).
    pub triggers: Vec<(String, Duration, String)>,
    /// Commands emitted that hold or suppress repeats.
    pub issued: Vec<NewIssue>,
    /// Containments closed by a restore, by command id.
    pub closed: Vec<CommandId>,
    /// The signal's (issuer, id) key and how long to remember it.
    pub seen: Option<([u8; 16], Duration)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHit {
    pub rule: String,
    pub event_type: String,
    pub within: Duration,
    pub signal_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIssue {
    pub target: String,
    pub action: String,
    pub command_id: CommandId,
    pub holds: bool,
    pub expires_at: Option<i64>,
    /// How long suppression may look back at it (the longest any rule gives the action).
    pub remember_for: Duration,
    pub cause: Cause,
    /// `on_expiry: restore`: the subject the restore will name.
    pub restore_on_expiry: Option<TargetSubject>,
}

fn plus(at: i64, d: Duration) -> i64 {
    at.saturating_add(d.as_millis() as i64)
}

impl StateUpdate {
    /// Whether the update changes the subject's own record (the seen signal is kept per
    /// partition, `seen`).
    pub fn changes_subject(&self) -> bool {
        !(self.hits.is_empty()
            && self.triggers.is_empty()
            && self.issued.is_empty()
            && self.closed.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
            && self.triggers.is_empty()
            && self.issued.is_empty()
            && self.closed.is_empty()
            && self.seen.is_none()
    }
}

impl SubjectState {
    pub fn new() -> Self {
        Self {
            applied: -1,
            ..Self::default()
        }
    }

    fn rule(&self, rule: &str) -> Option<&RuleState> {
        self.rules.iter().find(|r| &*r.rule == rule)
    }

    fn rule_mut(&mut self, rule: &str) -> &mut RuleState {
        let i = match self.rules.iter().position(|r| &*r.rule == rule) {
            Some(i) => i,
            None => {
                let rule = RuleState {
                    rule: intern(rule),
                    hits: Vec::new(),
                    triggers: Vec::new(),
                };
                push_small(&mut self.rules, rule);
                self.rules.len() - 1
            }
        };
        &mut self.rules[i]
    }

    /// The rule's window as of the signal at (`o`, `t`).
    pub fn window(&self, rule: &str, within: Duration, o: i64, t: i64) -> WindowView {
        let from = t - within.as_millis() as i64;
        let mut view = WindowView::default();
        for h in self.rule(rule).map_or(&[][..], |r| &r.hits) {
            if h.offset < o && h.at >= from && h.at <= t {
                view.count += 1;
                view.event_types.insert(h.event_type.to_string());
                view.signal_ids
                    .extend(h.signal_id.as_deref().map(str::to_string));
                view.first_at = Some(view.first_at.map_or(h.at, |f| f.min(h.at)));
            }
        }
        view
    }

    /// The rule's firings before (`o`, `t`) within the ladder's period, oldest first.
    pub fn triggers(
        &self,
        rule: &str,
        within: Duration,
        o: i64,
        t: i64,
    ) -> impl Iterator<Item = &Trigger> {
        let from = t - within.as_millis() as i64;
        self.rule(rule)
            .map_or(&[][..], |r| &r.triggers)
            .iter()
            .filter(move |m| m.offset < o && m.at >= from && m.at <= t)
    }

    /// The latest command for (target, action, object) issued before `o`, if within
    /// `period` of `t`. Another object (a second credential, another device) is not a repeat.
    pub fn recently_issued(
        &self,
        (target, action, object): (&str, &str, Option<&str>),
        period: Duration,
        o: i64,
        t: i64,
    ) -> Option<&Issued> {
        let from = t - period.as_millis() as i64;
        self.issued
            .iter()
            .rev()
            .find(|i| {
                i.offset < o
                    && i.at <= t
                    && &*i.target == target
                    && &*i.action == action
                    && i.object() == object
            })
            .filter(|i| i.at >= from)
    }

    /// Containments in force as of (`o`, `t`), in issue order.
    pub fn open(&self, o: i64, t: i64) -> impl Iterator<Item = &Issued> {
        self.issued.iter().filter(move |i| i.open_at(o, t))
    }

    /// Containments whose restore on expiry is due at `now`.
    pub fn restores_due(&self, now: i64) -> impl Iterator<Item = &Issued> {
        self.issued.iter().filter(move |i| i.restore_due(now))
    }

    /// Another containment of the same kind (target, action, object, principal) still in
    /// force at `now`: restoring `expired` would lift it too at the target.
    pub fn still_holding(&self, expired: &Issued, now: i64) -> Option<&Issued> {
        self.issued.iter().find(|i| {
            i.command_id != expired.command_id && i.same_kind(expired) && i.open_at(i64::MAX, now)
        })
    }

    /// Records that the restore on expiry of `command_id` was issued (or decided against):
    /// it is never issued again. Returns whether anything changed.
    pub fn restore_issued(&mut self, command_id: CommandId) -> bool {
        let mut changed = false;
        for i in self
            .issued
            .iter_mut()
            .filter(|i| i.command_id == command_id)
        {
            if i.restore_on_expiry.take().is_some() {
                i.restored_on_expiry = true;
                changed = true;
            }
        }
        changed
    }

    /// Applies a decision's changes made at `at`. A replay (offset already applied) or an empty
    /// update changes nothing; returns whether anything changed.
    pub fn apply(&mut self, at: Mark, update: &StateUpdate, retention: Retention) -> bool {
        if at.offset <= self.applied || !update.changes_subject() {
            return false;
        }
        self.applied = at.offset;
        for h in &update.hits {
            let hit = Hit {
                offset: at.offset,
                at: at.at,
                until: plus(at.at, h.within),
                event_type: intern(&h.event_type),
                signal_id: Some(h.signal_id.as_str().into()),
            };
            push_small(&mut self.rule_mut(&h.rule).hits, hit);
        }
        for (rule, within, signal_id) in &update.triggers {
            let trigger = Trigger {
                offset: at.offset,
                at: at.at,
                until: plus(at.at, *within),
                signal_id: Some(signal_id.as_str().into()),
            };
            push_small(&mut self.rule_mut(rule).triggers, trigger);
        }
        for id in &update.closed {
            for i in self.issued.iter_mut() {
                if i.command_id == *id && i.open_at(at.offset, at.at) {
                    i.closed = Some(at);
                }
            }
        }
        for n in &update.issued {
            let issued = Issued {
                offset: at.offset,
                at: at.at,
                until: plus(at.at, n.remember_for),
                target: intern(&n.target),
                action: intern(&n.action),
                command_id: n.command_id,
                holds: n.holds,
                expires_at: n.expires_at,
                closed: None,
                cause: Some(Box::new(n.cause.kept())),
                restore_on_expiry: n.restore_on_expiry.clone().map(Box::new),
                restored_on_expiry: false,
            };
            push_small(&mut self.issued, issued);
        }
        self.evict(at.at, retention);
        true
    }

    /// Drops what can no longer affect a decision at or after time `now`: hits, firings and
    /// settled commands whose period ended more than the margin ago. Open containments stay.
    /// Returns whether anything was dropped.
    pub fn evict(&mut self, now: i64, retention: Retention) -> bool {
        let before = self.entries();
        let from = now - retention.margin.as_millis() as i64;
        for r in self.rules.iter_mut() {
            r.hits.retain(|h| h.until >= from);
            r.triggers.retain(|m| m.until >= from);
            cap(&mut r.hits, retention.max_entries);
            cap(&mut r.triggers, retention.max_entries);
        }
        self.rules
            .retain(|r| !r.hits.is_empty() || !r.triggers.is_empty());
        // An entry followed by a newer one for the same target, action, object and principal
        // is superseded: only the newest answers suppression. Superseded entries stay only
        // while a replay could still decide before their successor.
        // Lists are short: a quadratic scan beats building a map on every change.
        let successor_at: Vec<Option<i64>> = (0..self.issued.len())
            .map(|k| {
                let i = &self.issued[k];
                self.issued[k + 1..]
                    .iter()
                    .find(|n| n.same_kind(i))
                    .map(|n| n.at)
            })
            .collect();
        let mut k = 0;
        self.issued.retain(|i| {
            let successor = successor_at[k];
            k += 1;
            if i.pending_restore() {
                return true;
            }
            if successor.is_some_and(|at| at < from) {
                return false;
            }
            let open = i.holds && i.closed.is_none() && i.expires_at.is_none_or(|e| e > now);
            let settled_at = i.closed.map_or(i.until, |c| c.at.max(i.until));
            open || settled_at >= from
        });
        if self.issued.len() > retention.max_entries {
            // Keep open containments; drop the oldest settled commands first.
            let mut excess = self.issued.len() - retention.max_entries;
            self.issued.retain(|i| {
                let open = i.holds && i.closed.is_none();
                if excess > 0 && !open && !i.pending_restore() {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.entries() != before
    }

    /// Takes in another name's state for the same identity (state kept under a raw
    /// identifier before the inventory knew it, or before state was keyed by identity): its
    /// hits, firings, commands and seen signals join this state's, in offset order.
    pub fn absorb(&mut self, other: SubjectState) {
        self.applied = self.applied.max(other.applied);
        for r in other.rules {
            let mine = self.rule_mut(&r.rule);
            mine.hits.extend(r.hits);
            mine.hits.sort_by_key(|h| h.offset);
            mine.triggers.extend(r.triggers);
            mine.triggers.sort_by_key(|m| m.offset);
        }
        self.issued.extend(other.issued);
        self.issued.sort_by_key(|i| i.offset);
    }

    /// Entries held, for the state size metric.
    pub fn entries(&self) -> usize {
        self.issued.len()
            + self
                .rules
                .iter()
                .map(|r| r.hits.len() + r.triggers.len())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.issued.is_empty()
    }
}

fn cap<T>(list: &mut Vec<T>, max: usize) {
    if list.len() > max {
        list.drain(..list.len() - max);
    }
}

#[cfg(test)]
mod tests;
