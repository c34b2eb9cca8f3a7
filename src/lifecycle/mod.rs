//! The life of a command after containd sent it: what adapters report back
//! (`schemas/command_result.avsc`, docs/adapters.md), re-sends, escalation, and what is
//! contained for an identity now.
//!
//! The results topic is the log of every command's life, in one order per partition: containd
//! writes a sealed tracking record when it sends a command (to the partition named in the
//! command's `containd.results_partition` header), adapters write their results there, and
//! containd's clocks write sealed markers (`resend`, `give_up`) that take effect when read
//! back. containd consumes the topic beside the signal topics; a partition's tracked commands
//! are state like any other (changelog-backed, rebuilt on assignment), so timers survive
//! restarts and rebalances and fire once.

pub mod record;
pub mod simulate;
pub mod status;
pub mod tracker;

pub use record::{Issued, Marker, Tracking};
pub use tracker::{Limits, Tracked, Tracker, Transition};

use crate::config::{Escalation, Settings, Trigger};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};

/// How this instance tracks commands: on when `[lifecycle] enabled`.
pub struct Lifecycle {
    pub results_topic: std::sync::Arc<str>,
    /// Seals and verifies tracking records; `Err`: the key file could not be read, and no
    /// tracking record is written or trusted.
    key: Result<Vec<u8>, String>,
    /// Partitions of the results topic, once known (0 before).
    partitions: AtomicI32,
    defaults: Limits,
    per_target: HashMap<String, Limits>,
    escalate: Vec<Escalation>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("results_topic", &self.results_topic)
            .field("sealed", &self.key.is_ok())
            .finish()
    }
}

impl Lifecycle {
    /// `None` when lifecycle tracking is off.
    pub fn of(settings: &Settings) -> Option<Self> {
        let l = &settings.lifecycle;
        if !l.enabled {
            return None;
        }
        let key = match l.key_path(settings) {
            Some(path) => crate::approvals::read_key(path)
                .map_err(|e| format!("lifecycle key file {}: {e}", path.display())),
            None => Err("no lifecycle.key_file (or safety.approvals_key_file)".into()),
        };
        if let Err(e) = &key {
            tracing::error!(error = %e, "tracking records cannot be sealed: commands are not re-sent or escalated");
        }
        let defaults = Limits {
            timeout: l.result_timeout,
            max_attempts: l.max_attempts.max(1),
            horizon: settings.state.replay_margin,
        };
        let per_target = settings
            .targets
            .iter()
            .map(|t| {
                let limits = Limits {
                    timeout: t.result_timeout.unwrap_or(defaults.timeout),
                    max_attempts: t.max_attempts.unwrap_or(defaults.max_attempts).max(1),
                    horizon: defaults.horizon,
                };
                (t.name.clone(), limits)
            })
            .collect();
        Some(Self {
            results_topic: std::sync::Arc::from(l.results_topic.as_str()),
            key,
            partitions: AtomicI32::new(0),
            defaults,
            per_target,
            escalate: l.escalate.clone(),
        })
    }

    /// The limits commands to `target` are tracked under.
    pub fn limits(&self, target: &str) -> Limits {
        self.per_target
            .get(target)
            .copied()
            .unwrap_or(self.defaults)
    }

    /// Records how many partitions the results topic has (at startup).
    pub fn set_partitions(&self, n: i32) {
        self.partitions.store(n.max(1), Ordering::Relaxed);
    }

    /// The results partition a command with this key is tracked in, once known.
    pub fn partition_of(&self, key: &[u8]) -> Option<i32> {
        match self.partitions.load(Ordering::Relaxed) {
            0 => None,
            n => Some(record::results_partition(key, n)),
        }
    }

    /// The seal of a tracking record's payload; `None` without a usable key.
    pub fn seal(&self, payload: &[u8]) -> Option<String> {
        self.key.as_ref().ok().map(|k| record::seal(k, payload))
    }

    /// Whether a record claiming to be containd's carries its seal.
    pub fn verify(&self, payload: &[u8], seal: &[u8]) -> Result<(), String> {
        match &self.key {
            Ok(k) if record::sealed_by(k, payload, seal) => Ok(()),
            Ok(_) => Err(
                "tracking record not sealed with the lifecycle key: containd did not write it"
                    .into(),
            ),
            Err(e) => Err(format!("tracking record not accepted: {e}")),
        }
    }

    /// The escalation for a command of `action` at `target` that ended in `why`.
    pub fn escalation(&self, action: &str, target: &str, why: Trigger) -> Option<&Escalation> {
        self.escalate.iter().find(|e| {
            e.action == action
                && e.target.as_deref().is_none_or(|t| t == target)
                && e.on.contains(&why)
        })
    }
}

/// The id of the command issued as an escalation of `failed`: derived, so a re-read derives
/// the same one.
pub fn escalation_id(failed: &str, action: &str, target: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{failed}|escalate|{action}|{target}").as_bytes());
    crate::codec::hex(&digest[..16])
}
