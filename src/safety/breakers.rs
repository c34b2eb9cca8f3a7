//! Circuit breakers: at most `max` commands `per` period for each rule, target, action or
//! source; past that the breaker opens and every further command it governs is held (never
//! dropped: each goes to the approvals topic, `breaker_open`) until the cooldown ends or an
//! operator resets it.
//!
//! Counts are the instance's (every partition it owns), in decision time (the signals' bus
//! time). What a breaker did to a signal is written to that signal's partition state (a
//! [`Verdicts`] record per signal, `<topic>|<partition>#breaker#<offset>`) so that a signal
//! re-read after a crash is held or admitted exactly as the first time, and the counts are
//! rebuilt from those records when a partition is assigned.

use crate::config::{BreakerScope, BreakerSettings};
use crate::emit::EnforcementCommand;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// What the breakers did to one signal's commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdicts {
    /// Decision time of the signal.
    pub at: i64,
    /// Breakers that counted one admitted command each (a key per command).
    #[serde(default)]
    pub counted: Vec<String>,
    /// Commands held, with the breaker that held each.
    #[serde(default)]
    pub held: Vec<(String, String)>,
}

/// One breaker's view, for `/breakers` and `containd breakers list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub breaker: String,
    pub max: u32,
    pub per_secs: u64,
    /// Commands admitted in the current period.
    pub count: usize,
    pub open: bool,
    /// Decision time it opened at and closes at (ms), while open.
    pub opened_at: Option<i64>,
    pub closes_at: Option<i64>,
    /// Commands held since it opened.
    pub held: u64,
}

#[derive(Debug, Default)]
struct Breaker {
    /// Decision times of the commands admitted within the period, oldest first.
    admitted: VecDeque<i64>,
    open: Option<(i64, i64)>,
    held: u64,
}

/// The instance's breakers, shared by the pipeline and the `/breakers` endpoint.
pub type SharedBreakers = std::sync::Arc<std::sync::Mutex<Breakers>>;

/// Locks the shared breakers (a panic elsewhere does not lose them).
pub fn lock(b: &SharedBreakers) -> std::sync::MutexGuard<'_, Breakers> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// The configured breakers and their counts.
#[derive(Debug, Default)]
pub struct Breakers {
    specs: Vec<BreakerSettings>,
    state: HashMap<String, Breaker>,
    /// Breakers that opened since the last call to [`Breakers::opened`], with why.
    opened: Vec<(String, String)>,
}

impl Breakers {
    pub fn new(specs: &[BreakerSettings]) -> Self {
        Self {
            specs: specs.to_vec(),
            ..Self::default()
        }
    }

    /// Replaces the configured limits (counts of breakers still configured are kept).
    pub fn configure(&mut self, specs: &[BreakerSettings]) {
        self.specs = specs.to_vec();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        self.state
            .retain(|key, _| key.split(':').next().is_some_and(|n| names.contains(&n)));
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The breakers governing a command from a signal of `issuer`: `<name>:<value>` each.
    pub fn keys(&self, command: &EnforcementCommand, issuer: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let value = match spec.scope {
                BreakerScope::Rule => &command.why.rule_id,
                BreakerScope::Target => &command.target,
                BreakerScope::Action => &command.action,
                BreakerScope::Source => issuer,
            };
            if spec.only.as_ref().is_none_or(|o| o == value) {
                out.push((i, format!("{}:{value}", spec.name)));
            }
        }
        out
    }

    /// Admits the commands of one signal decided at `at`, or holds those a breaker stops;
    /// `None` when no breaker governs any of them.
    pub fn admit(
        &mut self,
        commands: &[EnforcementCommand],
        issuer: &str,
        at: i64,
    ) -> Option<Verdicts> {
        let mut verdicts = Verdicts {
            at,
            ..Verdicts::default()
        };
        for command in commands {
            let keys = self.keys(command, issuer);
            if keys.is_empty() {
                continue;
            }
            match keys.iter().find(|(i, key)| !self.allows(*i, key, at)) {
                Some((_, key)) => {
                    self.state.entry(key.clone()).or_default().held += 1;
                    verdicts
                        .held
                        .push((command.command_id.clone(), key.clone()));
                }
                None => {
                    for (_, key) in keys {
                        self.state
                            .entry(key.clone())
                            .or_default()
                            .admitted
                            .push_back(at);
                        verdicts.counted.push(key);
                    }
                }
            }
        }
        (!verdicts.counted.is_empty() || !verdicts.held.is_empty()).then_some(verdicts)
    }

    /// Re-applies the counts of a signal decided earlier (its partition's state rebuilt).
    pub fn restore(&mut self, verdicts: &Verdicts) {
        for key in &verdicts.counted {
            let admitted = &mut self.state.entry(key.clone()).or_default().admitted;
            let at = admitted.partition_point(|t| *t <= verdicts.at);
            admitted.insert(at, verdicts.at);
        }
    }

    /// Takes back the counts of a signal whose partition this instance no longer owns (its
    /// new owner counts them), so a partition assigned back is not counted twice.
    pub fn forget(&mut self, verdicts: &Verdicts) {
        for key in &verdicts.counted {
            if let Some(b) = self.state.get_mut(key) {
                if let Some(i) = b.admitted.iter().position(|t| *t == verdicts.at) {
                    b.admitted.remove(i);
                }
            }
        }
    }

    /// Whether breaker `key` (spec `i`) lets one more command through at `at`; opens it
    /// when the period is full.
    fn allows(&mut self, i: usize, key: &str, at: i64) -> bool {
        let spec = &self.specs[i];
        let b = self.state.entry(key.to_string()).or_default();
        if let Some((_, closes)) = b.open {
            if at < closes {
                return false;
            }
            // Cooled down: closed, and counting starts afresh.
            b.open = None;
            b.admitted.clear();
            b.held = 0;
        }
        let from = at - spec.per.as_millis() as i64;
        while b.admitted.front().is_some_and(|t| *t < from) {
            b.admitted.pop_front();
        }
        if b.admitted.len() < spec.max as usize {
            return true;
        }
        let closes = at.saturating_add(spec.cooldown.as_millis() as i64);
        b.open = Some((at, closes));
        self.opened.push((
            key.to_string(),
            format!(
                "{} commands within {}; further commands are held for {}",
                spec.max,
                humantime::format_duration(spec.per),
                humantime::format_duration(spec.cooldown)
            ),
        ));
        false
    }

    /// Breakers opened since the last call (for the log and the metrics).
    pub fn opened(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.opened)
    }

    /// Closes every breaker whose key is `name` or starts with `name:`; returns how many.
    pub fn reset(&mut self, name: &str) -> usize {
        let mut n = 0;
        for (key, b) in &mut self.state {
            if key == name || key.strip_prefix(name).is_some_and(|r| r.starts_with(':')) {
                n += usize::from(b.open.is_some());
                *b = Breaker::default();
            }
        }
        n
    }

    /// Every breaker with a count or open, as of `now` (ms).
    pub fn list(&self, now: i64) -> Vec<View> {
        let mut out: Vec<View> = self
            .state
            .iter()
            .filter_map(|(key, b)| {
                let name = key.split(':').next()?;
                let spec = self.specs.iter().find(|s| s.name == name)?;
                Some(View {
                    breaker: key.clone(),
                    max: spec.max,
                    per_secs: spec.per.as_secs(),
                    count: b.admitted.len(),
                    open: b.open.is_some_and(|(_, closes)| now < closes),
                    opened_at: b.open.map(|o| o.0),
                    closes_at: b.open.map(|o| o.1),
                    held: b.held,
                })
            })
            .collect();
        out.sort_by(|a, b| a.breaker.cmp(&b.breaker));
        out
    }

    /// How many breakers are open at `now` (ms).
    pub fn open_count(&self, now: i64) -> usize {
        let open = |b: &&Breaker| b.open.is_some_and(|(_, closes)| now < closes);
        self.state.values().filter(open).count()
    }

    /// The longest period any breaker counts over: how long verdicts are worth keeping.
    pub fn longest_period(&self) -> Duration {
        self.specs.iter().map(|s| s.per).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::{TargetSubject, Why};

    fn command(n: usize) -> EnforcementCommand {
        EnforcementCommand {
            command_id: format!("{n:032x}"),
            action: "disable_credential".into(),
            target: "aws".into(),
            principal_id: None,
            subject: TargetSubject {
                id: format!("key-{n}"),
                format: "opaque".into(),
                identifiers: Default::default(),
            },
            parameters: Default::default(),
            issued_at: 0,
            expires_at: None,
            why: Why {
                rule_id: "leak".into(),
                ruleset_version: "v".into(),
                signal_ids: vec![],
                event_type: "e".into(),
                description: None,
            },
        }
    }

    fn per_source(max: u32) -> Breakers {
        Breakers::new(&[BreakerSettings {
            name: "source".into(),
            scope: BreakerScope::Source,
            only: None,
            max,
            per: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
        }])
    }

    /// Admits one command per signal from `issuer` at `at`; how many were held.
    fn flood(b: &mut Breakers, issuer: &str, n: usize, at: i64) -> usize {
        (0..n)
            .filter_map(|i| b.admit(&[command(i)], issuer, at))
            .filter(|v| !v.held.is_empty())
            .count()
    }

    #[test]
    fn a_flood_past_the_limit_is_held_and_other_sources_are_untouched() {
        let mut b = per_source(100);
        assert_eq!(flood(&mut b, "https://leaks", 10_000, 1_000), 9_900);
        let opened = b.opened();
        assert_eq!(opened.len(), 1, "{opened:?}");
        assert_eq!(opened[0].0, "source:https://leaks");
        assert_eq!(flood(&mut b, "https://mdm", 10, 2_000), 0);
        assert_eq!(b.open_count(2_000), 1);
        let view = b.list(2_000);
        let leaks = view.iter().find(|v| v.breaker == "source:https://leaks");
        assert!(leaks.is_some_and(|v| v.open && v.held == 9_900 && v.count == 100));
        // Still open within the cooldown, even once the period has passed.
        assert_eq!(flood(&mut b, "https://leaks", 1, 200_000), 1);
        // Closed after the cooldown, counting afresh.
        assert_eq!(flood(&mut b, "https://leaks", 100, 301_001), 0);
        assert_eq!(flood(&mut b, "https://leaks", 1, 301_002), 1);
    }

    #[test]
    fn an_operator_reset_closes_it_and_counts_survive_a_rebuild() {
        let mut b = per_source(2);
        assert_eq!(flood(&mut b, "https://leaks", 3, 1_000), 1);
        assert_eq!(b.reset("source"), 1);
        assert_eq!(b.open_count(1_000), 0);
        assert_eq!(flood(&mut b, "https://leaks", 2, 1_001), 0);
        // A new instance rebuilding the partition's verdicts counts what was admitted.
        let mut rebuilt = per_source(2);
        let verdicts = Verdicts {
            at: 1_000,
            counted: vec!["source:https://leaks".into(); 2],
            held: vec![],
        };
        rebuilt.restore(&verdicts);
        assert_eq!(flood(&mut rebuilt, "https://leaks", 1, 1_500), 1);
        // The partition moves away: its counts go with it.
        rebuilt.forget(&verdicts);
        assert_eq!(rebuilt.list(1_500)[0].count, 0);
    }

    #[test]
    fn a_breaker_with_a_match_governs_only_that_value() {
        let mut b = Breakers::new(&[BreakerSettings {
            name: "disables".into(),
            scope: BreakerScope::Action,
            only: Some("disable_account".into()),
            max: 1,
            per: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
        }]);
        assert!(b.admit(&[command(1)], "i", 0).is_none());
        assert!(b.keys(&command(1), "i").is_empty());
    }
}
