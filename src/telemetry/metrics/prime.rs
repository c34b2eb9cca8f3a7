//! Series whose labels the configuration names start at 0, so rates and alerts see the first
//! event instead of a series appearing.

use super::{
    CommandLabels, DecisionLabels, HeldLabels, KindLabel, Metrics, ReasonLabel, TopicLabel,
};

/// Why a command is held (`commands_held_total`'s `reason`).
const HELD_REASONS: [&str; 4] = [
    "protected_identity",
    "approval_required",
    "breaker_open",
    "missing_parameter",
];

impl Metrics {
    /// Every series whose labels are known from the configuration starts at 0, so rates and
    /// alerts see the first event instead of a series appearing.
    pub fn prime(&self, settings: &crate::config::Settings) {
        use crate::emit::Outcome;
        for topic in &settings.input.topics {
            let t = TopicLabel {
                topic: topic.clone(),
            };
            let _ = self.consumed.get_or_create(&t);
            for outcome in Outcome::ALL {
                let _ = self.decisions.get_or_create(&DecisionLabels {
                    topic: topic.clone(),
                    outcome: outcome.name().into(),
                });
            }
        }
        for target in &settings.targets {
            for action in &target.actions {
                let labels = CommandLabels {
                    target: target.name.clone(),
                    action: action.clone(),
                };
                let _ = self.commands.get_or_create(&labels);
                let _ = self.suppressed.get_or_create(&labels);
                let _ = self.refused.get_or_create(&labels);
            }
        }
        for reason in crate::emit::DeadLetterReason::KINDS {
            let _ = self.dead_letters.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        let actions: std::collections::BTreeSet<&String> =
            settings.targets.iter().flat_map(|t| &t.actions).collect();
        for reason in HELD_REASONS {
            for action in &actions {
                let _ = self.held.get_or_create(&HeldLabels {
                    reason: reason.into(),
                    action: (*action).clone(),
                });
            }
        }
        for kind in ["command", "decision"] {
            let _ = self
                .outputs_refused
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        self.rails.prime(settings);
        self.lifecycle.prime(settings);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::telemetry::exposition::classic;
    use crate::telemetry::Metrics;

    fn settings() -> Settings {
        let text = std::fs::read_to_string("examples/containd.toml").unwrap();
        crate::config::parse(std::path::Path::new("examples/containd.toml"), &text).unwrap()
    }

    #[test]
    fn configured_series_exist_at_zero_and_revoked_lag_goes() {
        let m = Metrics::new();
        m.prime(&settings());
        m.set_consumer_lag("identity.signals.v1", 3, 42);
        let text = classic(&m.render());
        for line in [
            "containd_commands_total{target=\"aws\",action=\"disable_credential\"} 0",
            "containd_decisions_total{topic=\"identity.signals.v1\",outcome=\"held\"} 0",
            "containd_dead_letters_total{reason=\"oversized\"} 0",
            "containd_commands_held_total{reason=\"breaker_open\",action=\"disable_credential\"} 0",
            "containd_consumer_lag{topic=\"identity.signals.v1\",partition=\"3\"} 42",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        m.forget_consumer_lag("identity.signals.v1", 3);
        assert!(!classic(&m.render()).contains("containd_consumer_lag{"));
    }
}
