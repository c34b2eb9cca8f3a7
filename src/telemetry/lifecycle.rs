//! Metrics of the command lifecycle: time to containment, access paths still open, results,
//! re-sends and escalations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TtcLabels {
    target: String,
    /// `occurred` (the event at its source) or `received` (the signal on the bus).
    from: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    target: String,
    action: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndedLabels {
    target: String,
    action: String,
    trigger: &'static str,
    escalated: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    target: String,
    age: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiredLabels {
    target: String,
    action: String,
    result: &'static str,
}

/// The age buckets of open access paths, as (label, upper bound in seconds).
pub const AGES: [(&str, i64); 4] = [
    ("under_1m", 60),
    ("1m_to_5m", 300),
    ("5m_to_1h", 3600),
    ("over_1h", i64::MAX),
];

pub struct LifecycleMetrics {
    ttc: Family<TtcLabels, Histogram>,
    results: Family<ResultLabels, Counter>,
    resent: Family<TargetLabel, Counter>,
    ended: Family<EndedLabels, Counter>,
    open: Family<OpenLabels, Gauge>,
    /// Targets the open-path gauge has series for.
    open_targets: std::sync::Mutex<std::collections::BTreeSet<String>>,
    ignored: Counter,
    expired: Family<ExpiredLabels, Counter>,
}

impl Default for LifecycleMetrics {
    fn default() -> Self {
        Self {
            // 50 ms to ~14 h.
            ttc: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 21))
            }),
            results: Family::default(),
            resent: Family::default(),
            ended: Family::default(),
            open: Family::default(),
            open_targets: Default::default(),
            ignored: Counter::default(),
            expired: Family::default(),
        }
    }
}

impl LifecycleMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "time_to_containment_seconds",
            "From the signal (its occurred_at, or its receipt on the bus) to its command's first succeeded result, by target",
            self.ttc.clone(),
        );
        registry.register(
            "command_results",
            "Adapter results applied, by target, action and status",
            self.results.clone(),
        );
        registry.register(
            "commands_resent",
            "Commands sent again (same command id) after a silent result timeout or a failed attempt, by target",
            self.resent.clone(),
        );
        registry.register(
            "commands_failed",
            "Commands that failed for good, by target, action, trigger (failed, rejected, timeout) and whether an escalation was issued",
            self.ended.clone(),
        );
        registry.register(
            "open_access_paths",
            "Commands sent and not yet confirmed by their target, by target and age (this instance's results partitions)",
            self.open.clone(),
        );
        registry.register(
            "results_ignored",
            "Results not applied: from another target than the command's, or about no command sent",
            self.ignored.clone(),
        );
        registry.register(
            "containments_expired",
            "Containments whose expires_in passed with on_expiry: restore, by target, action and result (restored; held for approval; not_restored: another containment of the same kind still holds, the target takes no restore, or dry-run)",
            self.expired.clone(),
        );
    }

    /// Every target's series start at 0.
    pub fn prime(&self, settings: &crate::config::Settings) {
        if !settings.lifecycle.enabled {
            return;
        }
        for t in &settings.targets {
            self.open_targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(t.name.clone());
            let _ = self.resent.get_or_create(&TargetLabel {
                target: t.name.clone(),
            });
        }
        self.set_open(&Default::default());
    }

    pub fn confirmed(&self, target: &str, from_occurred: f64, from_received: f64) {
        for (from, seconds) in [("occurred", from_occurred), ("received", from_received)] {
            self.ttc
                .get_or_create(&TtcLabels {
                    target: target.into(),
                    from,
                })
                .observe(seconds.max(0.0));
        }
    }

    pub fn result(&self, target: &str, action: &str, status: crate::emit::ResultStatus) {
        self.results
            .get_or_create(&ResultLabels {
                target: target.into(),
                action: action.into(),
                status: status.name(),
            })
            .inc();
    }

    pub fn resent(&self, target: &str) {
        self.resent
            .get_or_create(&TargetLabel {
                target: target.into(),
            })
            .inc();
    }

    pub fn failed(&self, target: &str, action: &str, trigger: &'static str, escalated: bool) {
        self.ended
            .get_or_create(&EndedLabels {
                target: target.into(),
                action: action.into(),
                trigger,
                escalated: if escalated { "true" } else { "false" },
            })
            .inc();
    }

    /// A containment expired and its restore on expiry was issued (or held, or not sent).
    pub fn expired(&self, target: &str, action: &str, result: &'static str) {
        self.expired
            .get_or_create(&ExpiredLabels {
                target: target.into(),
                action: action.into(),
                result,
            })
            .inc();
    }

    pub fn ignored(&self) {
        self.ignored.inc();
    }

    /// Sets the open access paths: counts by (target, age bucket index); a target seen
    /// before and absent now goes back to 0.
    pub fn set_open(&self, counts: &std::collections::HashMap<(String, usize), i64>) {
        let mut seen = self.open_targets.lock().unwrap_or_else(|p| p.into_inner());
        seen.extend(counts.keys().map(|(t, _)| t.clone()));
        for target in seen.iter() {
            for (i, (age, _)) in AGES.iter().enumerate() {
                let labels = OpenLabels {
                    target: target.clone(),
                    age,
                };
                let n = counts.get(&(target.clone(), i)).copied().unwrap_or(0);
                self.open.get_or_create(&labels).set(n);
            }
        }
    }
}
